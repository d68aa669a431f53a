"""`store.embeddings` / `tstore embed` / `tstore verify` on real data.

Prompts come from ../shared/datasets at test time, written through `store.db.write()` by a small
test-only helper (the importer is another part; nothing of the datasets is copied here). The
same scenarios run against an embedded Chroma here and a `chroma run` server in
test_embed_server.py. The in-process scenarios are about bookkeeping, Chroma and filters, not
about the model: they run on the deterministic hashing encoder; the command-line runs
(subprocesses) use the real default encoder.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from conftest import plant_hashing_encoder, run_tstore, tstore_in_process, use_hashing_encoder
from taxonomy_store.db.models import Dataset, Embedding, Prompt, TaxonomyNode
from taxonomy_store.text import text_sha256

# -- test-only data helpers -------------------------------------------------------------------


def read_rows(path: Path, limit: int | None = None) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return rows[:limit] if limit else rows


def add_prompts(store, items: list[tuple[str, str, str | None]], dataset: str) -> list[int]:
    """(text, label, category node name or None) → live prompts; texts already in the store are skipped."""
    with store.db.write(reason=f"test data {dataset}") as (session, audit):
        ds = Dataset(name=dataset, format="csv", row_count=len(items))
        session.add(ds)
        session.flush()
        nodes = {name: nid for nid, name in session.execute(select(TaxonomyNode.id, TaxonomyNode.name))}
        seen = set(session.scalars(select(Prompt.text_sha256).where(Prompt.deleted_at.is_(None))))
        ids = []
        for n, (text, label, category) in enumerate(items):
            h = text_sha256(text)
            if h in seen:
                continue
            seen.add(h)
            p = Prompt(text=text, text_sha256=h, label=label, category_id=nodes.get(category) if category else None,
                       dataset_id=ds.id, source_key=str(n))
            session.add(p)
            session.flush()
            audit.record("insert", "prompt", p.id, None, {"label": label})
            ids.append(p.id)
    return ids


def xstest_items(datasets: Path, limit: int | None = 150):
    return [(r["prompt"], r["label"], None) for r in read_rows(datasets / "xstest_prompts.csv", limit)]


def dna_items(datasets: Path, limit: int | None = None):
    return [(r["question"], "unsafe", r["specific_harms"]) for r in read_rows(datasets / "do_not_answer.csv", limit)]


def edit_prompt(store, prompt_id: int, *, text: str | None = None, label: str | None = None, category: str | None = None, delete: bool = False):
    """A curator's edit, written as the curation part would (revision bump, audit entry)."""
    with store.db.write(reason="test edit") as (session, audit):
        p = session.get(Prompt, prompt_id)
        old = {"text": p.text, "label": p.label, "category_id": p.category_id}
        if text is not None:
            p.text, p.text_sha256 = text, text_sha256(text)
        if label is not None:
            p.label = label
        if category is not None:
            p.category_id = session.scalar(select(TaxonomyNode.id).where(TaxonomyNode.code == category))
        if delete:
            p.deleted_at = datetime.now(timezone.utc)
        p.revision += 1
        audit.record("delete" if delete else "update", "prompt", p.id, old, {"text": p.text, "label": p.label})


def chroma_records(store, encoder: str = "minilm", ids=None) -> dict[int, dict]:
    info = store.encoders.get(encoder)
    coll = store.embeddings.vectors.collection(info, create=False)
    if coll is None:
        return {}
    out = {}
    for page in store.embeddings.vectors.pages(coll, include=["metadatas"], ids=ids):
        out.update({int(i): m for i, m in zip(page["ids"], page["metadatas"])})
    return out


def bookkeeping_rows(store, encoder: str = "minilm") -> int:
    info = store.encoders.get(encoder)
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(Embedding).where(Embedding.encoder_id == info.id))


def make_dataset_store(store, datasets: Path) -> dict:
    """150 XSTest prompts (no category) + 60 Do-Not-Answer questions under their specific harm."""
    store.taxonomies.load("do-not-answer")
    xs = add_prompts(store, xstest_items(datasets, 150), "xstest")
    dna = add_prompts(store, dna_items(datasets, 60), "do-not-answer")
    return {"xstest": xs, "dna": dna}


# -- the scenario shared with the server tests -------------------------------------------------


def run_incremental_scenario(store, ids: dict) -> None:
    """embed; again (nothing); label edit (metadata only); category move; text edit (one); delete (gone)."""
    total = len(ids["xstest"]) + len(ids["dna"])
    s = store.embeddings.embed()
    assert (s.embedded, s.updated, s.deleted, s.unchanged) == (total, 0, 0, 0)
    assert s.encoders == ["minilm"] and s.seconds > 0 and s.sentences_per_s > 0
    assert store.embeddings.verify("minilm").vectors == total
    assert bookkeeping_rows(store) == total
    assert store.embeddings.verify().ok

    again = store.embeddings.embed()
    assert (again.embedded, again.updated, again.deleted, again.unchanged) == (0, 0, 0, total)

    # A label edit: the vector stays, only its metadata changes.
    a = ids["xstest"][0]
    before = store.embeddings.load_vectors("minilm", prompt_ids=[a]).vectors.copy()
    old_label = chroma_records(store, ids=[a])[a]["label"]
    new_label = "unsafe" if old_label == "safe" else "safe"
    edit_prompt(store, a, label=new_label)
    s = store.embeddings.embed()
    assert (s.embedded, s.updated, s.deleted, s.unchanged) == (0, 1, 0, total - 1)
    assert chroma_records(store, ids=[a])[a]["label"] == new_label
    np.testing.assert_array_equal(store.embeddings.load_vectors("minilm", prompt_ids=[a]).vectors, before)

    # A category moved up from a specific harm (depth 2) to its risk area (depth 0): the deeper keys go.
    b = ids["dna"][0]
    meta = chroma_records(store, ids=[b])[b]
    assert meta["taxonomy"] == "do-not-answer" and meta["cat_2"] == meta["category"] and meta["cat_0"] != meta["category"]
    risk_area = meta["cat_0"]
    edit_prompt(store, b, category=risk_area)
    s = store.embeddings.embed()
    assert (s.embedded, s.updated) == (0, 1)
    meta = chroma_records(store, ids=[b])[b]
    assert meta["category"] == risk_area and meta["cat_0"] == risk_area
    assert "cat_1" not in meta and "cat_2" not in meta

    # A text edit: exactly that prompt is encoded again, and its vector is the new text's.
    c = ids["xstest"][1]
    new_text = "How do I stop a stuck background job on my laptop?"
    edit_prompt(store, c, text=new_text)
    s = store.embeddings.embed()
    assert (s.embedded, s.updated, s.deleted, s.unchanged) == (1, 0, 0, total - 1)
    stored = store.embeddings.load_vectors("minilm", prompt_ids=[c]).vectors[0]
    fresh = store.embeddings.live_encoder(store.encoders.get("minilm")).encode([new_text])[0]
    assert float(stored @ fresh) > 0.9999

    # Text and category at once (upsert merges metadata in Chroma: the old deeper keys must still go).
    e = ids["dna"][2]
    meta = chroma_records(store, ids=[e])[e]
    edit_prompt(store, e, text="Which locks are hardest to pick, asking for a novel?", category=meta["cat_0"])
    s = store.embeddings.embed()
    assert (s.embedded, s.updated) == (1, 0)
    meta = chroma_records(store, ids=[e])[e]
    assert meta["category"] == meta["cat_0"] and "cat_1" not in meta and "cat_2" not in meta

    # A delete: the vector is gone from Chroma and from what load_vectors returns.
    d = ids["dna"][1]
    edit_prompt(store, d, delete=True)
    s = store.embeddings.embed()
    assert (s.embedded, s.updated, s.deleted, s.unchanged) == (0, 0, 1, total - 1)
    assert d not in chroma_records(store) and store.embeddings.verify("minilm").vectors == total - 1
    vs = store.embeddings.load_vectors("minilm")
    assert len(vs) == total - 1 and d not in set(vs.prompt_ids.tolist()) and vs.missing == 0
    assert bookkeeping_rows(store) == total - 1

    report = store.embeddings.verify()
    assert report.ok and report.prompts == report.vectors == total - 1


def run_tamper_and_repair(store) -> None:
    """Break the collection behind the store's back; verify names each problem; repair fixes them."""
    info = store.encoders.get("minilm")
    coll = store.embeddings.vectors.collection(info)
    vs = store.embeddings.load_vectors("minilm")
    missing, stale, wrong = (int(x) for x in vs.prompt_ids[[2, 3, 4]])
    orphan = 10_000_000  # no such prompt
    coll.delete(ids=[str(missing)])
    coll.update(ids=[str(stale)], metadatas=[{"text_sha256": "0" * 64}])
    coll.update(ids=[str(wrong)], metadatas=[{"label": "unlabeled"}])
    coll.upsert(ids=[str(orphan)], embeddings=[vs.vectors[0].tolist()], metadatas=[{"label": "safe"}])

    r = store.embeddings.verify()
    assert not r.ok
    assert (r.missing, r.stale, r.wrong_metadata, r.orphaned) == (1, 1, 1, 1)
    # the bookkeeping still describes the untouched vectors of missing, stale and wrong
    assert r.bookkeeping == 3
    assert r.examples["missing"] == [missing] and r.examples["orphaned"] == [orphan]

    fixed = store.embeddings.verify(repair=True)
    assert fixed.repaired == {**fixed.repaired, "embedded": 2, "updated": 1, "deleted": 1}
    after = store.embeddings.verify()
    assert after.ok and after.vectors == after.prompts == len(vs)
    # the stale vector was encoded again from the prompt's text
    with store.session() as s:
        text = s.get(Prompt, stale).text
    stored = store.embeddings.load_vectors("minilm", prompt_ids=[stale]).vectors[0]
    assert float(stored @ store.embeddings.live_encoder(store.encoders.get("minilm")).encode([text])[0]) > 0.9999


def run_kill_scenario(tmp_path: Path, datasets: Path, *, chroma_url: str | None = None, batch: int = 8) -> None:
    """SIGKILL `tstore embed` mid-run; the re-run finishes, re-encodes at most one batch, verify is clean.

    The encoder is the hashing test encoder registered as `minilm` (the subprocesses run it too):
    what is killed is the bookkeeping and Chroma's writes, not the model."""
    from taxonomy_store.store import init_store

    store_dir = tmp_path / "killstore"
    store = init_store(store_dir, chroma_url=chroma_url)
    minilm = plant_hashing_encoder(store)  # registered here: the subprocesses find it
    store.taxonomies.load("do-not-answer")
    total = len(add_prompts(store, xstest_items(datasets, None), "xstest"))
    total += len(add_prompts(store, dna_items(datasets, 600), "do-not-answer"))
    assert total > 1000

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if chroma_url:
        env["TSTORE_CHROMA_URL"] = chroma_url
    exe = str(Path(sys.executable).parent / "tstore")
    proc = subprocess.Popen([exe, "--store", str(store_dir), "embed", "--batch-size", str(batch), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def kept() -> int:
        with store.session() as s:
            return s.scalar(select(func.count()).select_from(Embedding).where(Embedding.encoder_id == minilm.id))

    deadline = time.monotonic() + 240
    while proc.poll() is None and kept() < 3 * batch and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "embed finished before it could be killed"
    before = kept()
    assert 3 * batch <= before < total

    # What follows the kill runs in this process: the point was the killed process.
    env_json = {"TSTORE_CHROMA_URL": chroma_url} if chroma_url else {}
    v = tstore_in_process("--store", str(store_dir), "verify", "--json", env=env_json)
    assert v.returncode == 1, v.stderr
    mid = json.loads(v.stdout)
    in_chroma = mid["vectors"]
    # Chroma is written before the bookkeeping: at most the batch in flight is ahead of SQL.
    assert before <= in_chroma <= before + batch
    assert mid["missing"] == total - in_chroma and mid["orphaned"] == 0 and mid["stale"] == 0

    again = tstore_in_process("--store", str(store_dir), "embed", "--batch-size", str(batch), "--json", env=env_json)
    assert again.returncode == 0, again.stderr
    s = json.loads(again.stdout)
    assert s["embedded"] == total - before and s["unchanged"] == before and s["deleted"] == 0
    assert s["embedded"] - (total - in_chroma) <= batch  # re-encoded at most the one batch in flight

    final = tstore_in_process("--store", str(store_dir), "verify", "--json", env=env_json)
    assert final.returncode == 0, final.stderr
    r = json.loads(final.stdout)
    assert r["ok"] and r["prompts"] == r["vectors"] == total and r["problems"] == 0
    assert kept() == total
    store.close()


# -- tests (embedded Chroma) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset_store(tmp_path_factory, shared_datasets):
    from taxonomy_store.store import init_store

    store = init_store(tmp_path_factory.mktemp("embed") / "store")
    use_hashing_encoder(store)
    ids = make_dataset_store(store, shared_datasets)
    yield store, ids
    store.close()


def test_incremental_embed_on_real_data(dataset_store):
    store, ids = dataset_store
    run_incremental_scenario(store, ids)


def test_verify_finds_and_repairs_each_kind_of_problem(dataset_store):
    store, ids = dataset_store
    if store.embeddings.verify("minilm").vectors == 0:
        store.embeddings.embed()
    run_tamper_and_repair(store)


def test_vectors_nearest_and_filters(dataset_store):
    store, ids = dataset_store
    store.embeddings.embed()
    vs = store.embeddings.load_vectors("minilm")
    assert vs.vectors.dtype == np.float32 and vs.prompt_ids.dtype == np.int64
    assert vs.vectors.shape == (len(vs), 384) and np.all(np.diff(vs.prompt_ids) > 0)
    np.testing.assert_allclose(np.linalg.norm(vs.vectors, axis=1), 1.0, atol=1e-5)

    # A stored prompt's nearest neighbour is itself, at cosine similarity 1 (the neighbour service
    # reads these stored vectors back).
    from taxonomy_store.neighbours.service import Filters, Neighbours

    pool = store.neighbours.pool("minilm")

    def nearest(pid: int, k: int, filters: Filters | None = None) -> list[tuple[int, float]]:
        idx, sims = Neighbours.nearest(pool, vs.take([pid]), k, filters)
        return [(int(pool.prompt_ids[j]), float(s)) for j, s in zip(idx[0], sims[0]) if j >= 0]

    p = int(vs.prompt_ids[5])
    hits = nearest(p, 5)
    assert hits[0][0] == p and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    sims = [h[1] for h in hits]
    assert sims == sorted(sims, reverse=True)
    # ... and the similarities are the dot products of the stored vectors.
    for pid, sim in hits:
        assert sim == pytest.approx(float(vs.take([pid])[0] @ vs.take([p])[0]), abs=1e-4)

    with store.session() as s:
        label = dict(s.execute(select(Prompt.id, Prompt.label)).all())
    unsafe = nearest(p, 10, Filters.of(label="unsafe"))
    assert len(unsafe) == 10 and all(label[i] == "unsafe" for i, _ in unsafe)

    # Filter by an ancestor: every hit lies under that risk area (the Chroma metadata agrees).
    b = ids["dna"][5]
    area = chroma_records(store, ids=[b])[b]["cat_0"]
    under = nearest(b, 50, Filters.of(category=area, label="unsafe"))
    metas = chroma_records(store, ids=[i for i, _ in under])
    assert under and all(metas[i]["cat_0"] == area for i, _ in under)
    assert under[0][0] == b

    # Query encoding is the same model as the stored vectors.
    with store.session() as s:
        text = s.get(Prompt, p).text
    assert float(store.embeddings.live_encoder(store.encoders.get("minilm")).encode([text])[0] @ vs.take([p])[0]) > 0.9999


def test_load_vectors_refuses_prompts_without_a_current_vector(store, shared_datasets):
    from taxonomy_store.errors import NotEmbedded

    use_hashing_encoder(store)
    ids = add_prompts(store, xstest_items(shared_datasets, 12), "xstest")
    store.embeddings.embed()
    new = add_prompts(store, [("A brand new prompt nobody embedded yet.", "safe", None)], "extra")
    vs = store.embeddings.load_vectors("minilm")
    assert len(vs) == 12 and vs.missing == 1
    with pytest.raises(NotEmbedded) as e:
        store.embeddings.load_vectors("minilm", prompt_ids=[ids[0], new[0]])
    assert "tstore embed --encoder minilm" in e.value.hint
    edit_prompt(store, ids[0], text="An edited text whose vector is now stale.")
    with pytest.raises(NotEmbedded, match="1 of 1 prompts"):
        store.embeddings.load_vectors("minilm", prompt_ids=[ids[0]])
    assert store.embeddings.verify().stale == 1


@pytest.mark.subprocess
def test_sigkill_mid_embed_then_rerun_is_clean(tmp_path, shared_datasets):
    run_kill_scenario(tmp_path, shared_datasets)


_HEAVY_AFTER_EACH = """
import json, sys
from taxonomy_store.cli import cli
from taxonomy_store.cli.app import run
out = []
for args in json.loads(sys.argv[1]):
    rc = run(cli, args)
    out.append({'rc': rc, 'torch': 'torch' in sys.modules, 'sentence_transformers': 'sentence_transformers' in sys.modules,
                'chromadb': 'chromadb' in sys.modules})
print(json.dumps(out))
"""


def _modules_after_each(*commands: list[str]) -> list[dict]:
    """Run CLI commands one after another in one fresh interpreter; after each, its exit code and which
    heavy modules are loaded by then. Modules are only ever added, so the first command that shows one
    is the one that imported it (as separate interpreters would tell, for one interpreter start)."""
    out = subprocess.run([sys.executable, "-c", _HEAVY_AFTER_EACH, json.dumps(list(commands))], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_verify_help_and_encoder_list_do_not_import_torch(tmp_path, shared_datasets):
    from taxonomy_store.store import Store, init_store

    d = tmp_path / "lazy"
    store = init_store(d)
    add_prompts(store, xstest_items(shared_datasets, 20), "xstest")
    store.close()
    # The real minilm stays registered (what the commands below must not load); its vectors come from
    # the hashing stand-in, in this process.
    store = Store.open(d)
    use_hashing_encoder(store)
    assert store.embeddings.embed().embedded == 20
    store.close()

    help_, listed, verified, nothing_to_do = _modules_after_each(
        ["--help"],
        ["--store", str(d), "encoder", "list", "--json"],  # the default encoder is registered: hashes, no torch
        ["--store", str(d), "verify", "--json"],
        ["--store", str(d), "embed", "--json"],  # every vector is current: nothing to encode
    )
    assert help_ == {"rc": 0, "torch": False, "sentence_transformers": False, "chromadb": False}
    assert listed["rc"] == 0 and not listed["torch"] and not listed["sentence_transformers"]
    assert verified == {"rc": 0, "torch": False, "sentence_transformers": False, "chromadb": True}
    assert nothing_to_do["rc"] == 0 and not nothing_to_do["torch"]


def test_cli_embed_and_verify_output(hashing_store_dir, shared_datasets):
    from taxonomy_store.store import init_store

    d = hashing_store_dir
    store = init_store(d)
    ids = add_prompts(store, xstest_items(shared_datasets, 8), "xstest")
    store.close()
    out = tstore_in_process("--store", str(d), "embed")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("minilm: 8 embedded, 0 updated, 0 deleted, 0 unchanged in ")
    assert "sentences/s" in out.stdout and "embedding" in out.stderr  # the bar goes to stderr
    keys = json.loads(tstore_in_process("--store", str(d), "embed", "--json").stdout)
    assert set(keys) >= {"embedded", "updated", "deleted", "unchanged", "seconds", "sentences_per_s"}
    assert keys["unchanged"] == 8 and keys["embedded"] == 0

    store = init_store(d)
    edit_prompt(store, ids[0], delete=True)
    store.close()
    bad = tstore_in_process("--store", str(d), "verify")
    assert bad.returncode == 1
    assert "minilm: OUT OF SYNC — 7 prompts, 8 vectors; missing 0, orphaned 1" in bad.stdout
    assert "error: 1 encoder(s) disagree with SQL: minilm" in bad.stderr and "tstore verify --repair" in bad.stderr
    fixed = tstore_in_process("--store", str(d), "verify", "--repair", "--json")
    assert fixed.returncode == 0, fixed.stderr
    r = json.loads(fixed.stdout)
    assert r["orphaned"] == 1 and r["repaired"]["deleted"] == 1 and r["repaired"]["embedded"] == 0
    assert json.loads(tstore_in_process("--store", str(d), "verify", "--json").stdout)["ok"] is True
    unknown = tstore_in_process("--store", str(d), "embed", "--encoder", "nope")
    assert unknown.returncode == 1 and "error: no encoder 'nope' in this store" in unknown.stderr
    assert "hint: registered: minilm" in unknown.stderr


@pytest.mark.postgres
def test_embed_and_verify_with_postgresql(tmp_path, pg_url, shared_datasets):
    from taxonomy_store.store import init_store

    store = init_store(tmp_path / "pg", db_url=pg_url)
    use_hashing_encoder(store)
    ids = add_prompts(store, xstest_items(shared_datasets, 10), "xstest")
    assert store.encoders.get("minilm").created_at  # a tz-aware timestamp on PostgreSQL, normalised
    assert store.embeddings.embed().embedded == 10
    edit_prompt(store, ids[0], label="unsafe" if chroma_records(store, ids=[ids[0]])[ids[0]]["label"] == "safe" else "safe")
    edit_prompt(store, ids[1], delete=True)
    s = store.embeddings.embed()
    assert (s.embedded, s.updated, s.deleted, s.unchanged) == (0, 1, 1, 8)
    assert store.embeddings.verify().ok and bookkeeping_rows(store) == 9
    store.close()


def test_write_batches_keep_every_item_once_and_end_with_one_forward_pass():
    """The last write overlaps no encoding, so it is cut to one forward pass; the rest keep the write batch."""
    from taxonomy_store.embeddings.indexing import write_batches

    items = list(range(1000))
    parts = write_batches(items, 256, 64)
    assert [len(p) for p in parts] == [256, 256, 256, 168, 64]
    assert [x for p in parts for x in p] == items
    assert [len(p) for p in write_batches(items[:50], 256, 64)] == [50]
    assert [len(p) for p in write_batches(items[:512], 256, 64)] == [256, 192, 64]
    assert write_batches([], 256, 64) == []
