"""Metric runs: compute the Safe-Embed metrics from stored vectors, store and revisit them."""
