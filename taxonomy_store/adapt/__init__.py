"""`tstore adapt`: tune an encoder on the store's own curated data (data, objective, trainers, report)."""
