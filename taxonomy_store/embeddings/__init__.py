"""Embeddings: the encoder registry and the vector index (embed, verify, read vectors back)."""
