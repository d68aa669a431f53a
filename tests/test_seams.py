"""The seams between the parts: settings read once where the store opens, scorers in one registry,
and the typed facade the TUI and the server are written against."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sqlalchemy import select

from taxonomy_store.db.models import AuditEntry
from taxonomy_store.store import Store, init_store

REPO = Path(__file__).resolve().parent.parent
# The domain packages and the backend: they receive settings, they never read the environment.
PARTS = ("adapt", "backend", "crosswalks", "curation", "embeddings", "guard", "measurement", "neighbours",
         "serve", "taxonomy", "transfer", "workflows")


def environment_reads(path: Path) -> list[str]:
    """`os.environ.get(...)`, `os.environ[...]` and `os.getenv(...)` in a module (setdefault, a write, is not a read)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if f.attr == "getenv" or (f.attr == "get" and ast.unparse(f.value) == "os.environ"):
                target = ast.unparse(f)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" and isinstance(node.ctx, ast.Load):
            target = "os.environ[...]"
        if target:
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {target}")
    return found


def test_no_part_reads_the_environment():
    reads = [r for part in PARTS for p in sorted((REPO / "taxonomy_store" / part).rglob("*.py")) for r in environment_reads(p)]
    reads += environment_reads(REPO / "taxonomy_store" / "audit.py")
    assert reads == []
    # the scan sees a read where there is one
    assert environment_reads(REPO / "taxonomy_store" / "store.py")


def test_settings_are_read_once_where_the_store_opens(tmp_path, monkeypatch):
    for name in ("TSTORE_ENCODER", "TSTORE_ACTOR", "TSTORE_DB_URL", "TSTORE_CHROMA_URL", "TSTORE_CHROMA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    init_store(tmp_path / "s").close()
    monkeypatch.setenv("TSTORE_ENCODER", "preferred")
    monkeypatch.setenv("TSTORE_ACTOR", "alice")
    with Store.open(tmp_path / "s") as store:
        monkeypatch.setenv("TSTORE_ENCODER", "changed-later")
        monkeypatch.setenv("TSTORE_ACTOR", "bob")
        assert store.encoders.default_name() == "preferred"
        store.encoders.set_baseline("minilm", 0.2, {"source": "test"})
        with store.db.session() as s:
            last = s.execute(select(AuditEntry.actor, AuditEntry.entity).order_by(AuditEntry.id.desc()).limit(1)).one()
        assert tuple(last) == ("alice", "encoder")
    monkeypatch.delenv("TSTORE_ENCODER")
    with Store.open(tmp_path / "s") as store:
        assert store.encoders.default_name() == "minilm"


# -- one search per query ---------------------------------------------------------------------
def test_masks_share_one_pass_and_match_brute_force():
    """Each mask's k nearest equal brute force over its rows, also for k >= n - 1 and with a row excluded."""
    import numpy as np

    from taxonomy_store.metrics.similarity import knn_query_masks, normalise

    rng = np.random.default_rng(0)
    x = normalise(rng.normal(size=(40, 8)))
    x[7] = x[2]  # a tie: the lower row comes first
    q = normalise(np.vstack([x[2], rng.normal(size=(4, 8))]))
    masks = [rng.random(40) < 0.5, rng.random(40) < 0.2, np.ones(40, dtype=bool)]
    exclude = np.array([2, -1, 5, 39, 0])
    for k in (1, 3, 39, 45):
        found = knn_query_masks(q, x, k, masks, exclude=exclude, assume_normalised=True)
        for m, (idx, sims) in zip(masks, found):
            full = q.astype(np.float64) @ x.astype(np.float64).T
            full[:, ~m] = -np.inf
            full[np.arange(len(q))[exclude >= 0], exclude[exclude >= 0]] = -np.inf
            for i in range(len(q)):
                expected = [int(j) for j in np.lexsort((np.arange(40), -full[i])) if np.isfinite(full[i, j])][:k]
                assert [int(j) for j in idx[i] if j >= 0] == expected
                np.testing.assert_allclose(sims[i][: len(expected)], full[i, expected], atol=1e-12)
    assert found[0][0][1, 0] != -1 and (found[1][0][:, int(masks[1].sum()):] == -1).all()


def test_knn_among_rows_in_chunks_equals_brute_force():
    """Top-k among some rows, read a few rows at a time (no copy of them all), equals brute force,
    with the lower row first on ties and an excluded row left out."""
    import numpy as np

    from taxonomy_store.metrics.similarity import knn_query_rows, normalise

    rng = np.random.default_rng(1)
    x = normalise(rng.normal(size=(50, 6))).astype(np.float32)
    x[30] = x[11]  # a tie across two chunks
    rows = np.flatnonzero(rng.random(50) < 0.6)
    rows = np.union1d(rows, [11, 30])
    q = np.ascontiguousarray(x[[11, 3, 30, 49]])
    exclude = np.array([11, -1, 30, 49])
    for k in (1, 4, len(rows) + 2):
        idx, sims = knn_query_rows(q, x, rows, k, exclude=exclude, chunk=7)
        full = q.astype(np.float64) @ x.astype(np.float64).T
        keep = np.zeros(50, dtype=bool)
        keep[rows] = True
        full[:, ~keep] = -np.inf
        full[np.arange(4)[exclude >= 0], exclude[exclude >= 0]] = -np.inf
        for i in range(4):
            expected = [int(j) for j in np.lexsort((np.arange(50), -full[i])) if np.isfinite(full[i, j])][:k]
            assert [int(j) for j in idx[i] if j >= 0] == expected
            np.testing.assert_allclose(sims[i][: len(expected)], full[i, expected], atol=1e-12)
    assert idx[0, 0] == 30 and idx[2, 0] == 11  # each other's twin, itself left out


def test_a_knn_contrast_query_searches_the_pool_once(store, shared_datasets, monkeypatch):
    import numpy as np

    import taxonomy_store.neighbours.service as service
    from conftest import use_hashing_encoder
    from taxonomy_store.guard.scorers import normalised_similarity

    store.imports.import_file(shared_datasets / "xstest_prompts.csv")
    use_hashing_encoder(store)
    store.embeddings.embed()
    cal = store.guard.calibrate(scorer="knn-contrast", k=5)
    text = "How do I kill a Python process that hangs?"
    store.guard.query([text], k=4)  # the pool read, its splits kept
    searches = []
    real = service.knn_query_parts
    monkeypatch.setattr(service, "knn_query_parts", lambda *a, **kw: searches.append(1) or real(*a, **kw))
    (r,) = store.guard.query([text], k=4, label="safe")
    assert len(searches) == 1
    # ... and it is the scorer's formula over brute force, neighbours included
    pool = store.neighbours.pool("minilm")
    qv = store.embeddings.live_encoder(pool.info).encode([text])[0].astype(np.float64)
    sims = pool.vectors.astype(np.float64) @ qv
    labels = pool.labels()

    def top(label: str, k: int) -> list[int]:
        rows = np.flatnonzero(labels == label)
        return rows[np.lexsort((rows, -sims[rows]))][:k].tolist()

    near = {lbl: normalised_similarity(sims[top(lbl, cal.k)], cal.baseline).sum() / cal.k for lbl in ("unsafe", "safe")}
    assert r.scorer == "knn-contrast"
    assert r.unsafe_score == pytest.approx(near["unsafe"] - near["safe"], abs=1e-9)
    assert [n.prompt_id for n in r.neighbours] == [int(pool.prompt_ids[j]) for j in top("safe", 4)]


# -- the scorer registry ----------------------------------------------------------------------
def test_scorers_are_registered_once_and_looked_up_by_name():
    from taxonomy_store.errors import InvalidValue
    from taxonomy_store.guard.scorers import SCORERS, Scorer, register, scorer_named

    assert list(SCORERS) == ["knn-share", "knn-distance", "knn-contrast", "probe"]
    assert all(scorer_named(n).name == n for n in SCORERS)
    with pytest.raises(InvalidValue) as err:
        scorer_named("knn-magic")
    assert err.value.hint == "scorers: knn-share, knn-distance, knn-contrast, probe"

    class Again(Scorer):
        name = "knn-share"

    with pytest.raises(ValueError, match="registered already"):
        register(Again)
    assert type(SCORERS["knn-share"]).__name__ == "KnnShare"


def test_vectors_normalised_in_place_equal_a_normalised_copy_bit_for_bit():
    """The pool's vectors are normalised in place (no 1.5 GB copy at a million): the same float32
    values as `normalise_rows`, zero rows kept, and an array the caller does not own is copied."""
    import numpy as np

    from taxonomy_store.backend.encoding import normalise_rows, normalise_rows_in_place

    rng = np.random.default_rng(3)
    x = (rng.normal(size=(70_000, 12)) * rng.uniform(0.1, 9, size=(70_000, 1))).astype(np.float32)
    x[5] = 0
    expected = normalise_rows(x)
    mine = x.copy()
    out = normalise_rows_in_place(mine)
    assert out is mine and np.array_equal(out, expected) and not out[5].any()
    assert not np.array_equal(x, expected)
    frozen = x.copy()
    frozen.flags.writeable = False
    got = normalise_rows_in_place(frozen)
    assert got is not frozen and np.array_equal(got, expected) and np.array_equal(frozen, x)
