"""Issue 20 ("nothing lost, round two"): exports that never delete their target, memberships
that survive a round trip, adapt that never replaces a folder, FIFOs, one text limit, terminals."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from taxonomy_store.store import init_store

from conftest import use_hashing_encoder

TSTORE = str(Path(sys.executable).parent / "tstore")


@pytest.fixture(scope="module")
def source(tmp_path_factory, shared_datasets):
    """XSTest prompts, Safe-Embed pairs (which share many prompts with them) and Do-Not-Answer."""
    store = init_store(tmp_path_factory.mktemp("nolost") / "store")
    for name in ("xstest_prompts", "xstest_aug", "do_not_answer"):
        store.imports.import_file(shared_datasets / f"{name}.csv")
    yield store
    store.close()


def _memberships(store) -> dict[str, int]:
    from sqlalchemy import func, select

    from taxonomy_store.db.models import Dataset, PromptSource

    with store.session() as s:
        q = select(Dataset.name, func.count(PromptSource.id)).join(PromptSource, PromptSource.dataset_id == Dataset.id).group_by(Dataset.name)
        return dict(s.execute(q).all())


# -- item 4: export -> import restores every dataset membership ------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_keeps_every_dataset_membership(source, tmp_path, fmt):
    out = tmp_path / f"prompts.{fmt}"
    source.exports.export_prompts(out, format=fmt)
    fresh = init_store(tmp_path / "fresh")
    try:
        summary = fresh.imports.import_file(out)
        assert summary.rows == 1436  # one row per prompt; the memberships ride along
        assert len(fresh.exports.prompt_rows(dataset="xstest_aug")) == len(source.exports.prompt_rows(dataset="xstest_aug")) == 497
        assert _memberships(fresh) == _memberships(source)
        assert _memberships(source)["do_not_answer"] == 939
        # ...and importing the same export again adds nothing.
        before = fresh.data_revision()
        again = fresh.imports.import_file(out)
        assert (again.added, again.updated) == (0, 0) and fresh.data_revision() == before
    finally:
        fresh.close()


def test_also_in_that_is_not_json_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,label,taxonomy,category,category_path,dataset,source_key,also_in\n1,hello there,safe,,,,d,1,[oops\n",
                   encoding="utf-8")
    s = init_store(tmp_path / "s")
    try:
        from taxonomy_store.errors import InputFileError

        with pytest.raises(InputFileError, match=r"also_in is not a JSON list") as err:
            s.imports.import_file(bad)
        assert "row 2" in str(err.value) or err.value.row == 2
        assert s.exports.prompt_rows() == []
    finally:
        s.close()
