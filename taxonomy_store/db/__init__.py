"""SQL layer: models, engine, migrations. Only the facade (taxonomy_store.store) writes through it."""
