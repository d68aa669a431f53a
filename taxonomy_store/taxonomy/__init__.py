"""Taxonomies: the stored trees (loading definitions, listing, prompt counts)."""
