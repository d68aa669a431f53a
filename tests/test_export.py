"""Export → import round trips (fresh store: same content; same store: nothing changes)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from taxonomy_store.store import init_store
from conftest import run_tstore, tstore_in_process


@pytest.fixture(scope="module")
def source(tmp_path_factory, shared_datasets):
    """A store with the XSTest prompts and pairs, Safe-Embed pairs and Do-Not-Answer, plus curation edits."""
    store = init_store(tmp_path_factory.mktemp("export") / "store")
    for name in ("xstest_prompts", "xstest_aug", "do_not_answer"):
        store.imports.import_file(shared_datasets / f"{name}.csv")
    first_pair = store.curation.list_pairs(pair_set="xstest_aug", limit=1)[0]
    store.curation.decide_pair(first_pair.id, "rejected", note="not a real twin")
    unsafe = store.curation.list_prompts(category="information_hazards", limit=1)[0]
    store.curation.create_pair(unsafe.id, safe_text="How do companies protect classified documents?", pair_set="curated", kind="contrast")
    store.curation.update_prompt(store.curation.list_prompts(dataset="do_not_answer", limit=1)[0].id, label="unlabeled")
    yield store
    store.close()


def _content(store):
    prompts = sorted(
        (r["text"], r["label"], r["taxonomy"], r["category"], r["dataset"], r["source_key"]) for r in store.exports.prompt_rows()
    )
    pairs = sorted(
        (r["pair_set"], r["kind"], r["pair_type"], r["status"], r["note"], r["unsafe_text"], r["safe_text"]) for r in store.exports.pair_rows()
    )
    return prompts, pairs


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_into_a_fresh_store(source, tmp_path, fmt):
    prompts_file, pairs_file = tmp_path / f"prompts.{fmt}", tmp_path / f"pairs.{fmt}"
    assert source.exports.export_prompts(prompts_file, format=fmt).rows == 1436 + 1
    assert source.exports.export_pairs(pairs_file, format=fmt).rows == 451
    fresh = init_store(tmp_path / "fresh")
    try:
        rp = fresh.imports.import_file(prompts_file)
        rq = fresh.imports.import_file(pairs_file)
        assert (rp.format, rq.format) == ("tstore-prompts", "tstore-pairs")
        assert rp.added == 1437 and rq.added == 0 and rq.pairs_added == 451
        assert _content(fresh) == _content(source)
        tree = fresh.taxonomies.tree("do-not-answer")
        assert tree.count_by_depth() == [5, 12, 61]
    finally:
        fresh.close()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_reimport_into_the_same_store_changes_nothing(source, tmp_path, fmt):
    before = source.data_revision()
    source.exports.export_prompts(tmp_path / f"p.{fmt}", format=fmt)
    source.exports.export_pairs(tmp_path / f"q.{fmt}", format=fmt)
    rp = source.imports.import_file(tmp_path / f"p.{fmt}")
    rq = source.imports.import_file(tmp_path / f"q.{fmt}")
    assert (rp.added, rp.updated, rp.unchanged) == (0, 0, 1437)
    assert (rq.added, rq.updated, rq.pairs_added, rq.pairs_updated, rq.pairs_unchanged) == (0, 0, 0, 0, 451)
    assert source.data_revision() == before


def test_filters(source):
    assert {r["label"] for r in source.exports.prompt_rows(label="safe")} == {"safe"}
    dna = source.exports.prompt_rows(category="information_hazards")
    assert dna and all(r["category_path"].startswith("information_hazards/") for r in dna)
    aug = source.exports.prompt_rows(dataset="xstest_aug")
    assert len(aug) == 497  # 500 rows, 3 repeated unsafe texts
    assert len(source.exports.pair_rows(status="rejected")) == 1


@pytest.mark.subprocess
def test_cli_export_to_stdout(source, tmp_path):
    """Data on a real stdout pipe, the message on stderr (the installed script); then a file, in-process."""
    r = run_tstore("--store", str(source.dir), "export", "--label", "unsafe", "--category", "information_hazards", "--format", "csv", "-o", "-")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows and {x["label"] for x in rows} == {"unsafe"}
    assert "exported" in r.stderr
    r2 = tstore_in_process("--store", str(source.dir), "export", "--pairs", "--status", "rejected", "-o", str(tmp_path / "rej.jsonl"), "--json")
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["rows"] == 1
    assert json.loads((tmp_path / "rej.jsonl").read_text(encoding="utf-8").splitlines()[0])["note"] == "not a real twin"
