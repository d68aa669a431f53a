"""Undo in the wrong order: an older batch whose rows a later batch changed is refused (the later
batch named) or, with --cascade, undone together with the later ones, newest first; a plain undo
afterwards restores only values that were current. On SQLite and PostgreSQL.

The CLI cases go through `taxonomy_store.cli.app.run` (what the `tstore` script calls).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taxonomy_store.cli import cli
from taxonomy_store.cli.app import run
from taxonomy_store.errors import NotFound, UndoConflict
from taxonomy_store.store import Store, init_store

from conftest import export_bytes


@pytest.fixture(params=["sqlite", "postgresql"])
def base(request, tmp_path, shared_datasets) -> list[str]:
    """A store holding XSTest's prompts and pairs; returns the global CLI options that reach it."""
    db_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    store_dir = tmp_path / "store"
    store = init_store(store_dir, db_url=db_url)
    try:
        store.imports.import_file(shared_datasets / "xstest_prompts.csv")
    finally:
        store.close()
    return ["--store", str(store_dir)] + (["--db-url", db_url] if db_url else [])


def open_store(options: list[str]) -> Store:
    return Store.open(options[1], db_url=options[3] if len(options) > 2 else None)


def exported(options: list[str]) -> bytes:
    with open_store(options) as store:
        return export_bytes(store, Path(options[1]).parent)


def edit(options: list[str], prompt_id: int, label: str) -> str:
    """Edit a prompt's label; the batch id of the edit."""
    with open_store(options) as store:
        store.curation.update_prompt(prompt_id, label=label)
        return _newest_batch(store)


def _newest_batch(store: Store) -> str:
    from sqlalchemy import select

    from taxonomy_store.db.models import AuditEntry

    with store.session() as s:
        return s.scalar(select(AuditEntry.batch_id).order_by(AuditEntry.id.desc()).limit(1))


def labels(options: list[str], *ids: int) -> list[str]:
    with open_store(options) as store:
        return [store.curation.get_prompt(i).label for i in ids]


def test_older_batch_is_refused_naming_the_later_one(base, capsys):
    assert labels(base, 1, 2) == ["safe", "safe"]
    a = edit(base, 1, "unlabeled")
    b = edit(base, 1, "unsafe")
    before = exported(base)
    code = run(cli, [*base, "prompt", "undo", "--batch", a])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert [ln.split(":")[0] for ln in lines] == ["error", "hint"], err
    assert f"batch {a} cannot be undone alone: the later batch {b} (curation: edit prompt 1) changed prompt 1 after it" in lines[0]
    assert f"tstore prompt undo --batch {a} --cascade" in lines[1]
    assert exported(base) == before
    assert labels(base, 1) == ["unsafe"]


def test_cascade_undoes_the_later_batches_newest_first_then_plain_undo_restores_current_values(base, capsys):
    a = edit(base, 1, "unlabeled")  # prompt 1: safe -> unlabeled
    b = edit(base, 1, "unsafe")  # prompt 1: unlabeled -> unsafe
    b3 = edit(base, 3, "unsafe")  # prompt 3: safe -> unsafe
    c = edit(base, 3, "unlabeled")  # prompt 3 again
    d = edit(base, 2, "unsafe")  # prompt 2: the newest batch
    capsys.readouterr()

    code = run(cli, [*base, "prompt", "undo", "--batch", a, "--cascade", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    assert (r["undone_batch"], r["cascaded"]) == (a, [b])  # b3 and c touch prompt 3 only, not prompt 1
    assert labels(base, 1, 2, 3) == ["safe", "unsafe", "unlabeled"]

    code = run(cli, [*base, "prompt", "undo", "--batch", b3])
    out, err = capsys.readouterr()
    assert code == 1 and f"the later batch {c}" in err and "Traceback" not in err
    code = run(cli, [*base, "prompt", "undo", "--batch", b3, "--cascade"])
    out, err = capsys.readouterr()
    assert code == 0 and out.splitlines() == [f"undid later batch {c}", f"undid batch {b3}: prompt 3"], out + err
    assert labels(base, 1, 2, 3) == ["safe", "unsafe", "safe"]

    # A plain undo now takes the newest batch not undone (d), and restores the value d replaced.
    code = run(cli, [*base, "prompt", "undo"])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip() == f"undid batch {d}: prompt 2", err
    assert labels(base, 1, 2, 3) == ["safe", "safe", "safe"]
    with open_store(base) as store, pytest.raises(NotFound, match="nothing to undo"):
        store.curation.undo()


def test_undo_after_a_later_undo_and_a_batch_of_two_rows(base):
    with open_store(base) as store:
        c = store.curation
        c.update_prompt(1, label="unlabeled")
        a = _newest_batch(store)
        c.update_prompt(1, label="unsafe")
        b = _newest_batch(store)
        # b undone by itself (it is the newest): a's values are current again, so a undoes alone.
        assert c.undo().undone_batch == b
        r = c.undo(a)
        assert (r.undone_batch, r.cascaded) == (a, [])
        assert c.get_prompt(1).label == "safe"

        # One batch that writes two rows (a new safe prompt and its pair); later batches change each.
        pairs_before = len(c.list_pairs())
        pair = c.create_pair(_unsafe_id(c), safe_text="A new safe variant written by a curator")
        p = _newest_batch(store)
        new_prompt = pair.safe_prompt_id
        c.update_prompt(new_prompt, label="unlabeled")
        q = _newest_batch(store)
        c.decide_pair(pair.id, "accepted", note="looks right")
        r_ = _newest_batch(store)
        with pytest.raises(UndoConflict, match=f"later batch {r_} .*changed pair {pair.id}"):
            c.undo(p)
        res = c.undo(p, cascade=True)
        assert (res.undone_batch, res.cascaded) == (p, [r_, q])
        assert len(c.list_pairs()) == pairs_before
        v = c.get_prompt(new_prompt)
        assert (v.deleted, v.label) == (True, "safe")
        with pytest.raises(NotFound, match="nothing to undo"):
            c.undo()


def _unsafe_id(c) -> int:
    return c.list_prompts(label="unsafe", limit=1)[0].id


