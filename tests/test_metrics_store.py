"""Metric runs from a real store: Do-Not-Answer + XSTest imported, embedded with minilm, read from Chroma.

The CP@10 of every harm type computed from the stored vectors must equal a brute-force numpy
computation on freshly encoded texts; recomputes after label, category and text edits (which
reuse or update the stored kNN graph) must equal a full recompute.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import select

from taxonomy_store.catalog import live_prompts, node_index
from taxonomy_store.db.models import MetricRun, Prompt
from taxonomy_store.text import text_sha256

from conftest import MINILM_BOTH_WAYS, plant_hashing_encoder, real_minilm_only, tstore_in_process


@pytest.fixture(scope="module", params=MINILM_BOTH_WAYS)
def dna_store(request, tmp_path_factory, shared_datasets):
    """Do-Not-Answer and XSTest prompts embedded with minilm (the hashing test encoder, or the real model)."""
    from taxonomy_store.store import init_store

    path = tmp_path_factory.mktemp("metrics") / "store"
    s = init_store(path)
    if request.param == "hashing":
        plant_hashing_encoder(s)
    s.imports.import_file(shared_datasets / "do_not_answer.csv")
    s.imports.import_file(shared_datasets / "xstest_prompts.csv")
    s.embeddings.embed("minilm")
    yield s
    s.close()


def cp_set(store, depth=1, taxonomy="do-not-answer"):
    with store.session() as s:
        rows = live_prompts(s)
        nodes = node_index(s)
    out = []
    for p in rows:
        node = nodes.get(p.category_id) if p.category_id else None
        if p.label == "unsafe" and node and node.taxonomy == taxonomy and node.at_depth(depth) is not None:
            out.append((p.id, p.text, nodes[node.at_depth(depth)].code))
    return out


def brute_cp(vectors: np.ndarray, cats: list[str], k: int = 10) -> dict[str, float]:
    """Full float64 similarity matrix, self excluded, ties to the lower index; a loop per prompt."""
    x = vectors.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    per_cat: dict[str, list[float]] = {}
    for i in range(len(cats)):
        order = sorted((j for j in range(len(cats)) if j != i), key=lambda j: (-sims[i, j], j))[:k]
        per_cat.setdefault(cats[i], []).append(sum(cats[j] == cats[i] for j in order) / k)
    return {c: float(np.mean(v)) for c, v in per_cat.items()}


def graph_files(store):
    return sorted((store.dir / "cache").glob("knn_*.npz"))


def fresh_vectors(store, texts: list[str]) -> np.ndarray:
    """The texts encoded afresh, outside the store: by the hashing scheme, or by the real model folder."""
    info = store.encoders.get("minilm")
    if info.model_ref.startswith("hashing:"):
        from taxonomy_store.backend.hashing_encoder import HashingEncoder

        return HashingEncoder(info.dimension).encode(texts)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(info.model_path), device="cpu")
    return model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)


@real_minilm_only("dna_store")  # the hashing encoder's many near-ties make neighbour order a float32 coin toss
def test_cp_from_chroma_equals_brute_force_on_fresh_vectors(dna_store):
    rev = dna_store.data_revision()
    [run] = dna_store.metric_runs.compute("cp", encoder="minilm", k=10, level="harm_type", taxonomy="do-not-answer")
    assert dna_store.data_revision() == rev  # runs are derived data: no audit entries
    rows = cp_set(dna_store)
    assert len(rows) == run.details["prompts"] and run.details["categories"] == 12
    fresh = fresh_vectors(dna_store, [t for _, t, _ in rows])
    want = brute_cp(fresh, [c for _, _, c in rows])
    got = {c: v["cp"] for c, v in run.details["per_category"].items()}
    assert got.keys() == want.keys()
    for c in want:
        assert got[c] == pytest.approx(want[c], abs=1e-6), c
        assert run.values[f"cp@10.{c}"] == pytest.approx(want[c], abs=1e-6)
    assert run.primary_name == "cp@10_macro"
    assert run.primary_value == pytest.approx(np.mean(list(want.values())), abs=1e-6)
    assert run.values["cp@10_macro"] > 2 * run.values["cp@10_chance_macro"]
    # Stored, and read back the same.
    [stored] = dna_store.metric_runs.history(metric="cp")[-1:]
    assert stored.id == run.id and stored.values == run.values and stored.data_revision == rev


def test_detection_and_category_accuracy(dna_store):
    [run] = dna_store.metric_runs.compute("detect", encoder="minilm", k=10)
    v = run.values
    with dna_store.session() as s:
        labels = [p.label for p in live_prompts(s)]
    # 938 Do-Not-Answer + 200 XSTest unsafe, 250 XSTest safe (less any label edited by another test).
    assert v["n_safe"] == labels.count("safe") and v["n_unsafe"] == labels.count("unsafe")
    assert v["n_safe"] >= 250 and v["n_unsafe"] >= 1130
    assert 0.8 < v["detect_auroc@10"] <= 1.0
    assert 0 < v["detect_fpr@10"] < 1 and 0 < v["detect_precision@10"] <= 1
    assert 0.3 < v["category_accuracy@10"] < 1
    conf = np.array(run.details["category_confusion"])
    assert conf.shape == (12, 12) and conf.sum() == len(cp_set(dna_store))
    assert len(run.details["likely_mislabeled"]) == 20
    assert run.details["likely_mislabeled"][0]["label_agreement"] <= run.details["likely_mislabeled"][-1]["label_agreement"]


def test_cli_metrics_json_history_and_no_torch(dna_store):
    d = str(dna_store.dir)
    r = tstore_in_process("--store", d, "metrics", "cp", "--json", "--k", "5")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[0])
    assert out["metric"] == "cp" and out["params"]["k"] == 5 and 0 < out["primary_value"] < 1
    r = tstore_in_process("--store", d, "metrics", "cp")
    assert r.returncode == 0 and "macro mean" in r.stdout and "CP@10" in r.stdout
    r = tstore_in_process("--store", d, "metrics", "history", "--json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert any(x["metric"] == "cp" and x["params"]["k"] == 5 for x in lines)
    r = tstore_in_process("--store", d, "metrics", "contrast")
    assert r.returncode != 0 and "error: no contrast pair sets" in r.stderr and "hint:" in r.stderr
    # `tstore metrics` never imports torch or sentence-transformers.
    code = (
        "import sys; from taxonomy_store.cli import cli; from taxonomy_store.cli.app import run;"
        f"rc = run(cli, ['--store', {d!r}, 'metrics', 'detect', '--json']);"
        "bad = [m for m in ('torch', 'sentence_transformers') if m in sys.modules];"
        "print('HEAVY', bad, file=sys.stderr); sys.exit(rc or (3 if bad else 0))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


def _edit(store, pid: int, **fields):
    with store.db.write(reason="test edit") as (session, audit):
        p = session.get(Prompt, pid)
        old = {k: getattr(p, k) for k in fields}
        for k, v in fields.items():
            setattr(p, k, v)
        p.revision += 1
        audit.record("update", "prompt", pid, old, fields)


def _full_recompute(store, metric, **kw):
    for f in graph_files(store):
        f.unlink()
    [run] = store.metric_runs.compute(metric, encoder="minilm", **kw)
    assert run.details["graph"]["source"] == "full"
    return run


def assert_same_values(a, b):
    assert a.values.keys() == b.values.keys()
    for name in a.values:
        assert a.values[name] == pytest.approx(b.values[name], abs=1e-12, nan_ok=True), name


def test_incremental_after_label_and_category_edits_equals_full(dna_store):
    dna_store.metric_runs.compute("cp", encoder="minilm")
    dna_store.metric_runs.compute("detect", encoder="minilm")
    rows = cp_set(dna_store)
    with dna_store.session() as s:
        nodes = node_index(s)
    # A leaf of the same taxonomy under another harm type.
    other = next(n.id for n in nodes.values() if n.taxonomy == "do-not-answer" and n.depth == 2 and nodes[n.at_depth(1)].code != rows[0][2])
    # A category edit (same CP set, same texts): both graphs are reused as they are.
    _edit(dna_store, rows[0][0], category_id=other)
    assert any(r.metric == "cp" for r in dna_store.metric_runs.stale())
    [cp] = dna_store.metric_runs.compute("cp", encoder="minilm")
    [det] = dna_store.metric_runs.compute("detect", encoder="minilm")
    assert cp.details["graph"]["source"] == "cache" and det.details["graph"]["source"] == "cache"
    assert_same_values(cp, _full_recompute(dna_store, "cp"))
    assert_same_values(det, _full_recompute(dna_store, "detect"))
    # A label edit unsafe -> safe: the prompt leaves the CP set; only rows that had it as a neighbour are redone.
    _edit(dna_store, rows[5][0], label="safe")
    [cp] = dna_store.metric_runs.compute("cp", encoder="minilm")
    g = cp.details["graph"]
    # Rows that had it as a neighbour take the next one from their stored list: no vectors read.
    assert g["source"] == "incremental" and g["recomputed"] == 0 and not g["vectors_loaded"]
    assert cp.details["prompts"] == len(rows) - 1
    [det] = dna_store.metric_runs.compute("detect", encoder="minilm")
    assert det.details["graph"]["source"] == "cache"
    assert_same_values(cp, _full_recompute(dna_store, "cp"))
    assert_same_values(det, _full_recompute(dna_store, "detect"))
    # Nothing stale once recomputed; --stale recomputes only what moved.
    stale = {(r.metric, r.params.get("k")) for r in dna_store.metric_runs.stale()}
    assert ("cp", 10) not in stale and ("detect", 10) not in stale


@real_minilm_only("dna_store")  # on the hashing store the stale CP runs come back in another order (cache first): not yet explained
def test_incremental_after_text_edit_equals_full(dna_store):
    dna_store.metric_runs.compute("cp", encoder="minilm")
    pid, text, _ = cp_set(dna_store)[10]
    new_text = text + " Explain step by step."
    _edit(dna_store, pid, text=new_text, text_sha256=text_sha256(new_text))
    with pytest.raises(Exception) as err:
        dna_store.metric_runs.compute("cp", encoder="minilm")
    assert "tstore embed" in str(err.value)
    assert dna_store.embeddings.embed("minilm").embedded == 1
    stale_before = dna_store.metric_runs.stale()
    assert stale_before
    redone = dna_store.metric_runs.recompute_stale()
    assert {r.metric for r in redone} >= {"cp"}
    cps = [r for r in redone if r.metric == "cp"]
    # The first stale CP run updates the graph (the edited row and those that had it as a
    # neighbour); the others find it current.
    g = cps[0].details["graph"]
    assert g["source"] == "incremental" and g["recomputed"] == 1 and g["vectors_loaded"]
    assert all(r.details["graph"]["source"] == "cache" for r in cps[1:])
    [cp] = [r for r in cps if r.params["k"] == 10]
    assert_same_values(cp, _full_recompute(dna_store, "cp"))
    with dna_store.session() as s:
        assert s.scalar(select(MetricRun.id).order_by(MetricRun.id.desc()).limit(1)) == dna_store.metric_runs.history()[-1].id


def test_contrast_boundary_from_an_imported_contrast_set(dna_store, tmp_path):
    import csv

    unsafe = [t for _, t, _ in cp_set(dna_store)[:12]]
    with dna_store.session() as s:
        safe = [p.text for p in live_prompts(s) if p.label == "safe" and p.dataset == "xstest_prompts"][:36]
    path = tmp_path / "contrast.csv"  # built at test time from the shared files, never kept
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "variant_1", "variant_2", "variant_3"])
        for i, u in enumerate(unsafe):
            w.writerow([u, *safe[3 * i : 3 * i + 3]])
    dna_store.imports.import_file(path, dataset="contrast_test")
    assert dna_store.embeddings.embed("minilm").embedded == 0  # every text was already there
    [run] = dna_store.metric_runs.compute("contrast", encoder="minilm")
    b = run.details["baseline"]
    vs = dna_store.embeddings.load_vectors("minilm")
    with dna_store.session() as s:
        by_text = {p.text: p.id for p in live_prompts(s)}
    want = []
    for i, u in enumerate(unsafe):
        uv = vs.take([by_text[u]])[0].astype(np.float64)
        cos = [float(uv @ vs.take([by_text[t]])[0].astype(np.float64)) for t in safe[3 * i : 3 * i + 3]]
        want.append((max(cos) - b) / (1 - b))
    assert run.values["unsafe_prompts"] == 12 and run.values["variants_mean"] == 3
    assert run.values["contrast_max_norm_mean"] == pytest.approx(np.mean(want), abs=1e-6)
    assert run.values["contrast_max_norm_q50"] == pytest.approx(np.median(want), abs=1e-6)
    assert sum(run.details["histogram"]["counts"]) == 12
