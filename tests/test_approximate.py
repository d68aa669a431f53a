"""Approximate neighbours (faiss HNSW, re-ranked exactly) above TSTORE_APPROX_FROM rows.

The store tests use a generated store of a few thousand prompts (`benchmarks/_generated.realistic`:
templates and topic words per Do-Not-Answer harm, planted duplicates) on the hashing encoder,
with the threshold set low so the approximate path runs; the paper tables stay exact at the
default threshold (tests/test_metrics_store.py and the reproduce tests check them unchanged).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from taxonomy_store.errors import InvalidValue
from taxonomy_store.metrics.similarity import knn, knn_query
from taxonomy_store.neighbours.approximate import APPROX_FROM, EF_START, MAX_EF, AnnIndex, NeighbourSettings, approx_from_setting, recall_at_k, self_knn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _generated  # noqa: E402

from tests.conftest import tstore_in_process  # noqa: E402

ROWS = 3000
LOW = "500"  # TSTORE_APPROX_FROM for these tests: every set of the store is "large"


def _clustered(n: int = 6000, d: int = 64, clusters: int = 60, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(clusters, size=n)] + 0.35 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _keys(ids) -> np.ndarray:
    return np.array([f"{i}:h".encode() for i in ids], dtype="S")


def _tuned(n: int) -> tuple[np.ndarray, AnnIndex]:
    """A clustered set of n rows and its index, tuned (row i = prompt id i)."""
    x = _clustered(n)
    ids = np.arange(len(x), dtype=np.int64)
    ann = AnnIndex.build(ids, _keys(ids), x)
    ann.tune(x)
    return x, ann


def _count_walks(ann: AnnIndex, seen: list) -> None:
    """Record each faiss walk of the index in `seen`: (filtered or not, how many queries)."""
    real = ann.candidates
    ann.candidates = lambda qq, kc, allowed=None, ef=None: seen.append((allowed is not None, len(qq))) or real(qq, kc, allowed, ef)


def test_index_recall_on_a_clustered_set_and_exact_similarities():
    x = _clustered()
    ids = np.arange(len(x), dtype=np.int64) * 3 + 7  # prompt ids, not rows
    ann = AnnIndex.build(ids, _keys(ids), x)
    r = ann.tune(x)
    assert r["recall"] >= 0.99 and r["recall_queries"] == 1000 and ann.params["efSearch"] <= MAX_EF
    idx, sims = self_knn(ann, x, 10)
    ei, es = knn(x, 10, assume_normalised=True)
    assert recall_at_k(sims, es) >= 0.99
    # the similarities reported are the exact path's for the neighbours found, bit for bit
    same = idx == ei
    assert same.mean() > 0.95 and np.array_equal(sims[same], es[same])
    assert not (idx == np.arange(len(x))[:, None]).any()  # never itself


def test_filtered_search_keeps_to_the_mask():
    x, ann = _tuned(3000)
    allowed = np.arange(len(x)) % 3 == 0
    idx, sims = ann.search(x[:200], x, 5, allowed=allowed)
    assert allowed[idx[idx >= 0]].all()
    ei, es = knn_query(x[:200], x[allowed], 5, assume_normalised=True)
    assert recall_at_k(sims, es) >= 0.97


def test_masks_filtered_after_one_walk_match_exact_and_short_rows_walk_again():
    x, ann = _tuned(4000)
    half = np.arange(len(x)) % 2 == 0
    third = np.arange(len(x)) % 3 == 0
    rare = np.zeros(len(x), dtype=bool)
    rare[::50] = True  # 2 % of the rows: below FILTER_AFTER_SHARE, its own filtered walk
    q = np.arange(300)
    walks: list = []
    _count_walks(ann, walks)
    found = ann.search_masks(x[q], x, 10, [half, third, None, rare], exclude=q)
    filtered = [f for f, _n in walks]
    assert filtered[0] is False and filtered.count(False) == 1  # one unfiltered walk serves half, third and every row
    assert True in filtered  # the rare mask (and any row left short) walked under its filter
    for mask, (idx, sims) in zip([half, third, np.ones(len(x), bool), rare], found):
        assert mask[idx[idx >= 0]].all() and not (idx == q[:, None]).any()
        rows = np.flatnonzero(mask)
        ex = np.array([np.searchsorted(rows, r) if mask[r] else -1 for r in q])
        _ei, es = knn_query(x[q], x[rows], 10, exclude=ex, assume_normalised=True)
        assert recall_at_k(sims, es) >= 0.99
    # a row whose walk holds fewer than k rows of a mask is searched again under the mask: k found
    side = x[:, 0] > np.quantile(x[:, 0], 0.7)  # 30 % of the rows, on one side of the space
    low = np.argsort(x[:, 0])[:50]  # queries on the other side: their walks hold none of them
    ((walk_only, _s),) = ann.search_masks(x[low], x, 10, [None])
    assert not side[walk_only].any()
    ((idx, sims),) = ann.search_masks(x[low], x, 10, [side])
    assert (idx >= 0).all() and side[idx].all()
    fi, fs = ann.search(x[low], x, 10, allowed=side)  # what a walk under the mask alone finds
    assert np.array_equal(idx, fi) and np.array_equal(sims, fs)


def test_a_second_graph_of_the_same_rows_walks_no_more():
    from taxonomy_store.neighbours.graphs import self_knn_within

    x, ann = _tuned(3000)
    members = np.flatnonzero(np.arange(len(x)) % 3 != 0)
    walks: list = []
    _count_walks(ann, walks)
    ef = int(ann.params["efSearch"]) * 2
    a_i, a_s = self_knn_within(ann, x, members, 10, ef=ef)
    assert sum(n for _f, n in walks) >= len(members)
    walks.clear()
    fewer = members[members % 2 == 0]
    b_i, b_s = self_knn_within(ann, x, fewer, 10, ef=ef // 2)  # a walk at a higher efSearch stands in
    assert sum(n for _f, n in walks) <= len(fewer) // 20  # only rows short of members walk again
    _ei, es = knn_query(x[fewer], x[fewer], 10, exclude=np.arange(len(fewer)), assume_normalised=True)
    assert recall_at_k(b_s, es) >= 0.99


def test_index_update_matches_a_rebuild_and_a_damaged_file_is_rebuilt(tmp_path):
    from taxonomy_store.neighbours.graphs import index_for

    x = _clustered(4000)
    ids = np.arange(len(x), dtype=np.int64)
    path = tmp_path / "a.faiss"
    ann, st = index_for(path, ids, _keys(ids), x)
    assert st["index_source"] == "built" and path.is_file()
    # an edit (row 5's text and vector change), a deletion (row 9) and an addition (a new id)
    x2 = np.concatenate([x, _clustered(1, seed=9)])
    x2[5] = _clustered(1, seed=8)[0]
    ids2 = np.append(ids, 5000)
    keys2 = _keys(ids2)
    keys2[5] = b"5:changed"
    keep = ids2 != 9
    ids2, keys2, x2 = ids2[keep], keys2[keep], np.ascontiguousarray(x2[keep])
    upd, st = index_for(path, ids2, keys2, x2)
    assert st == {"index_source": "incremental", "index_added": 2, "index_removed": 2}
    # HNSW cannot remove: the removed and the changed row are tombstones, left out of every search
    assert upd.tombstones == 2 and upd.index.ntotal == len(ids2) + 2 and upd.params["recall"] >= 0.99
    fresh = AnnIndex.build(ids2, keys2, x2)
    fresh.params["efSearch"] = upd.params["efSearch"]
    a_i, a_s = upd.search(x2[:300], x2, 10, exclude=np.arange(300))
    b_i, b_s = fresh.search(x2[:300], x2, 10, exclude=np.arange(300))
    e_i, e_s = knn_query(x2[:300], x2, 10, exclude=np.arange(300), assume_normalised=True)
    assert recall_at_k(a_s, e_s) >= 0.99 and recall_at_k(b_s, e_s) >= 0.99
    assert 5 in set(upd.search(x2[5:6], x2, 1)[0].ravel().tolist())  # the changed row is found by its new vector
    old5 = x[5:6]  # its old vector is a tombstone: never a candidate, nor is the removed row 9
    cand = upd.candidates(np.concatenate([old5, x[9:10]]), 50)
    assert (upd.ids[cand[cand >= 0]] != 9).all()
    assert AnnIndex.load(path).tombstones == 2  # the labels travel with the file
    # a truncated index file is not trusted: it is rebuilt
    path.write_bytes(path.read_bytes()[:100])
    assert AnnIndex.load(path) is None
    again, st = index_for(path, ids2, keys2, x2)
    assert st["index_source"] == "built" and again.index.ntotal == len(ids2)


def test_an_index_of_the_earlier_float32_kind_is_rebuilt_and_the_graph_walks_float16(tmp_path):
    import faiss

    from taxonomy_store.neighbours.graphs import index_for

    x = _clustered(2000)
    ids = np.arange(2000, dtype=np.int64)
    keys = _keys(ids)
    path = tmp_path / "ann.faiss"
    built, st = index_for(path, ids, keys, x)
    assert st["index_source"] == "built" and built.params["index"] == "HNSW,SQfp16"
    storage = faiss.downcast_index(built.index.storage)
    assert isinstance(built.index, faiss.IndexHNSWSQ) and storage.code_size == 2 * x.shape[1]  # float16
    # an index file of the earlier kind (HNSWFlat, float32 vectors) beside a matching sidecar
    old = faiss.IndexHNSWFlat(x.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    old.add(x)
    faiss.write_index(old, str(path))
    side = path.with_name(path.name + ".npz")
    params = dict(built.params, index="HNSWFlat")
    np.savez(side, ids=ids, keys=keys, labels=np.arange(2000), params=np.array(json.dumps(params)))
    assert AnnIndex.load(path) is None
    again, st = index_for(path, ids, keys, x)
    assert st["index_source"] == "built" and isinstance(again.index, faiss.IndexHNSWSQ)


def test_an_index_with_too_many_tombstones_is_rebuilt(tmp_path):
    from taxonomy_store.neighbours.approximate import REBUILD_SHARE
    from taxonomy_store.neighbours.graphs import index_for

    x = _clustered(2000)
    ids = np.arange(len(x), dtype=np.int64)
    path = tmp_path / "a.faiss"
    index_for(path, ids, _keys(ids), x)
    few = int(REBUILD_SHARE * len(x)) // 2  # under the share: tombstones kept
    ann, st = index_for(path, ids[few:], _keys(ids[few:]), np.ascontiguousarray(x[few:]))
    assert st["index_source"] == "incremental" and ann.tombstones == few
    many = few + int(REBUILD_SHARE * len(x))  # past it: the graph is built again, without them
    ann, st = index_for(path, ids[many:], _keys(ids[many:]), np.ascontiguousarray(x[many:]))
    assert st["index_source"] == "built" and ann.tombstones == 0 and ann.index.ntotal == len(x) - many


def test_threshold_setting():
    assert approx_from_setting(None) == APPROX_FROM == 200_000
    assert approx_from_setting("1000") == 1000
    with pytest.raises(InvalidValue, match="TSTORE_APPROX_FROM"):
        approx_from_setting("lots")
    s = NeighbourSettings(approx_from=1000)
    assert not s.approximate(999) and s.approximate(1000)
    s.exact = True
    assert not s.approximate(10**7)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """A generated store of ROWS prompts on the hashing encoder (its `minilm`), embedded."""
    from taxonomy_store.store import init_store
    from tests.conftest import plant_hashing_encoder

    root = tmp_path_factory.mktemp("approx")
    csv = _generated.write_rows(root / "gen.csv", _generated.realistic(ROWS, seed=3))
    path = root / "store"
    with init_store(path) as s:
        plant_hashing_encoder(s)
        s.taxonomies.load("do-not-answer")
        s.imports.import_file(csv, taxonomy="do-not-answer")
        s.embeddings.embed("minilm")
    return path


@pytest.fixture(autouse=True)
def _decline_when_asked(request, monkeypatch):
    """The test of the declined path lowers the most the index may search below where tuning starts."""
    from taxonomy_store.neighbours import approximate

    if "declined" in request.node.name:
        monkeypatch.setattr(approximate, "MAX_EF", approximate.EF_START // 2)


def _cli(store: Path, *args: str, approx_from: str | None = LOW):
    env = {"TSTORE_HOME": str(store)}
    if approx_from is not None:
        env["TSTORE_APPROX_FROM"] = approx_from
    r = tstore_in_process(*args, env=env)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_metrics_say_exact_false_with_parameters_and_recall_and_exact_forces_exact(big_store):
    (approx,) = _cli(big_store, "metrics", "cp", "--json")
    g = approx["details"]["graph"]
    assert g["exact"] is False and g["index"]["index"] == "HNSW,SQfp16" and g["index"]["recall"] >= 0.99, str(g["index"])
    assert {"M", "efConstruction", "efSearch", "recall_queries", "recall_k"} <= set(g["index"])
    (exact,) = _cli(big_store, "metrics", "cp", "--exact", "--json")
    ge = exact["details"]["graph"]
    assert ge["exact"] is True and "index" not in ge
    a, e = approx["values"]["cp@10_macro"], exact["values"]["cp@10_macro"]
    assert abs(a - e) < 0.005, (a, e)
    # below the threshold (the default): exact, as before
    (default,) = _cli(big_store, "metrics", "cp", "--json", approx_from=None)
    assert default["details"]["graph"]["exact"] is True
    assert default["values"]["cp@10_macro"] == e


def test_evaluate_says_how_neighbours_were_found_and_people_read_it_too(big_store):
    (run,) = _cli(big_store, "evaluate", "--holdout", "gen", "--fraction", "0.1", "--json")
    (split,) = run["details"]["splits"]
    assert split["neighbour_search"]["exact"] is False and split["neighbour_search"]["index"]["recall"] >= 0.99
    (exact,) = _cli(big_store, "evaluate", "--holdout", "gen", "--fraction", "0.1", "--exact", "--json")
    assert exact["details"]["splits"][0]["neighbour_search"] == {"exact": True}
    assert split["prompts"] == exact["details"]["splits"][0]["prompts"]
    assert abs(split["auroc"] - exact["details"]["splits"][0]["auroc"]) < 0.01
    env = {"TSTORE_HOME": str(big_store), "TSTORE_APPROX_FROM": LOW}
    for args in (("evaluate", "--holdout", "gen", "--fraction", "0.1"), ("calibrate",)):
        text = tstore_in_process(*args, env=env)
        assert text.returncode == 0, text.stderr
        assert "neighbours: approximate (faiss HNSW,SQfp16, efSearch" in text.stdout and "--exact forces exact" in text.stdout
        text = tstore_in_process(*args, "--exact", env=env)
        assert text.returncode == 0 and "neighbours: approximate" not in text.stdout


def test_an_index_that_would_scan_too_much_is_declined_and_the_figure_stays_exact(big_store, tmp_path):
    import shutil

    store = Path(shutil.copytree(big_store, tmp_path / "store"))
    for f in (store / "cache").glob("knn_*"):
        f.unlink()  # no cached graph: the approximate path is tried
    (run,) = _cli(store, "metrics", "cp", "--json")
    g = run["details"]["graph"]
    assert g["exact"] is True and "a walk visits as much as an exact scan" in g["approximate_declined"]["reason"]
    assert g["approximate_declined"]["efSearch"] > EF_START // 2
    (q,) = _cli(store, "query", "how do I report a scam to the bank", "--json")
    assert q["neighbour_search"] == {"exact": True}


def test_query_and_calibrate_say_how_neighbours_were_found(big_store):
    text = "how do I report a scam to the bank"
    (q,) = _cli(big_store, "query", text, "--json")
    assert q["neighbour_search"]["exact"] is False and q["neighbour_search"]["index"]["recall"] >= 0.99
    (qe,) = _cli(big_store, "query", text, "--exact", "--json")
    assert qe["neighbour_search"] == {"exact": True}
    # approximate neighbours are the exact ones here (recall >= 0.99): same ids, bit-equal similarities
    got = [(n["prompt_id"], n["similarity"]) for n in q["neighbours"]]
    want = [(n["prompt_id"], n["similarity"]) for n in qe["neighbours"]]
    assert got == want
    (cal,) = _cli(big_store, "calibrate", "--json")
    assert cal["neighbour_search"]["exact"] is False
    (cal_e,) = _cli(big_store, "calibrate", "--exact", "--json")
    assert cal_e["neighbour_search"] == {"exact": True}
    assert abs(cal["auroc"] - cal_e["auroc"]) < 0.01


def test_graph_after_an_edit_is_updated_in_place_and_matches_a_rebuild(big_store, tmp_path):
    import shutil

    from taxonomy_store.store import Store

    path = Path(shutil.copytree(big_store, tmp_path / "store"))
    _cli(path, "metrics", "detect", "--json")  # builds the approximate detection graph and its index
    with Store.open(path) as s:
        s.neighbours.settings.approx_from = int(LOW)
        pool = s.neighbours.pool("minilm")
        labeled = pool.prompt_ids[np.isin(pool.labels(), ["safe", "unsafe"])]
        s.curation.delete_prompt(int(labeled[10]))  # a deletion and an import: one row out, one in
        added = _generated.write_rows(tmp_path / "one.csv", [["new1", "how do I report a scam to the bank quickly", "safe", ""]])
        s.imports.import_file(added)
        s.embeddings.embed("minilm")
        pool = s.neighbours.pool("minilm")
        member = np.isin(pool.labels(), ["safe", "unsafe"])
        ids, g = s.neighbours.pool_graph(pool, "detect", member, 10)
        assert g.stats["exact"] is False and g.stats["index_source"] == "incremental"
        assert g.stats["source"] == "incremental" and g.stats["index_added"] == 1 and g.stats["index_removed"] == 1
        x = np.ascontiguousarray(pool.vectors[member])
        ei, es = knn(x, 10, assume_normalised=True)
        assert recall_at_k(g.sims[:, :10], es) >= 0.99
        row = len(ids) - 1  # the imported prompt has the highest id: its row is searched exactly
        assert np.array_equal(g.idx[row, :10], ei[row])
        # the graph was searched in the pool's index (one index per pool, no index of its own)
        assert "shared" in g.stats["index"] and not list(s.neighbours.graphs.cache_dir.glob("knn_*detect*.faiss"))
        for f in s.neighbours.graphs.cache_dir.glob("knn_*"):
            f.unlink()
    with Store.open(path) as s:  # a rebuild (the graph and index files removed) agrees as well
        s.neighbours.settings.approx_from = int(LOW)
        pool = s.neighbours.pool("minilm")
        _ids, g2 = s.neighbours.pool_graph(pool, "detect", member, 10)
        assert g2.stats["index_source"] == "built" and recall_at_k(g2.sims[:, :10], es) >= 0.99


@pytest.fixture(scope="module")
def real_model_store_dir(tmp_path_factory, shared_datasets):
    """The paper's data (Do-Not-Answer, XSTest) embedded with the real minilm (the `model` tier)."""
    from taxonomy_store.store import init_store

    path = tmp_path_factory.mktemp("approx_real") / "store"
    with init_store(path) as s:
        for name in ("do_not_answer.csv", "xstest_prompts.csv"):
            s.imports.import_file(shared_datasets / name)
        s.embeddings.embed("minilm")
    return path


def test_real_minilm_approximate_agrees_with_exact_on_the_paper_data(real_model_store_dir):
    """minilm on the paper's prompts, the threshold forced low: the approximate graphs find the exact
    neighbours (recall >= 0.99), so CP@10 and detection match the exact figures."""
    for metric, key in (("cp", "cp@10_macro"), ("detect", "detect_auroc@10")):
        (approx,) = _cli(real_model_store_dir, "metrics", metric, "--json", approx_from="100")
        (exact,) = _cli(real_model_store_dir, "metrics", metric, "--exact", "--json", approx_from="100")
        ga, ge = approx["details"]["graph"], exact["details"]["graph"]
        assert ga["exact"] is False and ga["index"]["recall"] >= 0.99 and ge["exact"] is True
        assert abs(approx["values"][key] - exact["values"][key]) <= 0.005, (metric, approx["values"][key], exact["values"][key])
    (q,) = _cli(real_model_store_dir, "query", "how do I pick a lock", "--json", approx_from="100")
    (qe,) = _cli(real_model_store_dir, "query", "how do I pick a lock", "--exact", "--json", approx_from="100")
    assert q["neighbour_search"]["exact"] is False
    assert [n["prompt_id"] for n in q["neighbours"]] == [n["prompt_id"] for n in qe["neighbours"]]
