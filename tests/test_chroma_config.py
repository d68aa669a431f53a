"""Chroma stores the vectors; tstore never asks it for neighbours (neighbours/ searches the stored
vectors). So the search index Chroma builds of every collection is kept as small as Chroma allows
(`vector_index.CHROMA_HNSW`): most of an upsert's cost was that index (benchmarks/embed.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _generated  # noqa: E402


def test_collections_are_created_with_a_minimal_chroma_index_and_vectors_read_back_exactly(tmp_path):
    import chromadb

    from taxonomy_store.backend.hashing_encoder import HashingEncoder
    from taxonomy_store.backend.vector_index import CHROMA_HNSW
    from taxonomy_store.store import init_store
    from tests.conftest import plant_hashing_encoder

    rows = _generated.realistic(300, seed=5)
    csv = _generated.write_rows(tmp_path / "gen.csv", rows)
    with init_store(tmp_path / "store") as s:
        plant_hashing_encoder(s, model="hashing:32")
        s.taxonomies.load("do-not-answer")
        s.imports.import_file(csv, taxonomy="do-not-answer")
        s.embeddings.embed("minilm")
        pool = s.neighbours.pool("minilm")
        texts = {int(i): pool.rows[int(i)].text for i in pool.prompt_ids}
        vectors = pool.vectors.copy()
    client = chromadb.PersistentClient(path=str(tmp_path / "store" / "chroma"))
    (coll,) = client.list_collections()
    hnsw = coll.configuration_json["hnsw"]
    assert hnsw["ef_construction"] == CHROMA_HNSW["ef_construction"] == 8
    assert hnsw["max_neighbors"] == CHROMA_HNSW["max_neighbors"] == 4 and hnsw["space"] == "cosine"
    # the vectors are stored as they were: what the pool read is the encoder's output
    want = HashingEncoder(32).encode([texts[int(i)] for i in sorted(texts)]).astype(np.float32)
    assert vectors.shape == want.shape and np.allclose(vectors, want, atol=1e-6)
