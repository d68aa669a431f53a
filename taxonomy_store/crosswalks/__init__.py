"""Crosswalks between taxonomies, coverage of a dataset by the store, overlap between datasets."""
