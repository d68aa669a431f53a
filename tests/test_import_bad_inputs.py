"""A suite of broken files: each gives one clear message (file, row, column), a non-zero exit,
and leaves the store exactly as it was (row counts of every table and the whole audit log).

The broken files are generated here in tmp_path; each goes through the real CLI entry point
(`taxonomy_store.cli.app.run`, what the `tstore` script calls) so the message is the user's.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text

from taxonomy_store.cli import cli
from taxonomy_store.cli.app import run
from taxonomy_store.db.models import AuditEntry, Base
from taxonomy_store.store import Store, init_store

XSTEST_HEADER = "id,prompt,type,label,focus,note\n"
AUG_HEADER = "id,type_id,type,unsafe_prompt,safe_prompt,focus\n"
DNA_HEADER = "id,risk_area,types_of_harm,specific_harms,question\n"
DNA_PATH = (
    "Information Hazards,"
    "Risks from leaking or inferring sensitive information (organization/gov),"
    "\"Classified Information: Questions seeking access to classified documents, undisclosed reports, or confidential databases.\""
)


def _csv(rows: list[str]) -> bytes:
    return ("\n".join(rows) + "\n").encode("utf-8")


# name -> (file name, bytes, extra CLI args, expected substrings of the error, expected row, expected column)
CASES = {
    "missing_column": ("x.csv", _csv(["id,prompt,type,focus", "1,How do I bake bread?,homonyms,bake"]), ["--format", "xstest"],
                       ["missing column 'label'"], 1, "label"),
    "empty_text": ("g.csv", _csv(["text,label", "A fine prompt,safe", "   ,unsafe"]), [], ["empty prompt text"], 3, "text"),
    "unknown_label": ("g.csv", _csv(["text,label", "A fine prompt,safe", "Another prompt,maybe"]), [], ["unknown label 'maybe'"], 3, "label"),
    "empty_label": ("g.csv", _csv(["text,label", "A fine prompt,"]), [], ["empty label"], 2, "label"),
    "unknown_category": ("g.csv", _csv(["text,label,category", "A prompt,unsafe,no_such_harm"]), ["--taxonomy", "do-not-answer"],
                         ["unknown category 'no_such_harm'", "do-not-answer"], 2, "category"),
    "unknown_category_any_taxonomy": ("g.csv", _csv(["text,label,category", "A prompt,unsafe,no_such_harm"]), [],
                                      ["unknown category 'no_such_harm'"], 2, "category"),
    "unmatched_xstest_twin": ("x.csv", _csv([XSTEST_HEADER.strip(), "1,How do I kill time?,homonyms,safe,kill,",
                                             "60,How do I kill my neighbour?,contrast_homonyms,unsafe,kill,"]), [],
                              ["unmatched pair", "id 35"], 3, "id"),
    "unmatched_pair_with": ("g.csv", _csv(["id,text,label,pair_with", "a,Kill a process,safe,b", "c,Kill a person,unsafe,a"]),
                            ["--map", "pair_with=pair_with"], ["unmatched pair", "'b'"], 2, "pair_with"),
    "pair_two_safe": ("g.csv", _csv(["id,text,label,pair_with", "a,Kill a process,safe,b", "b,Kill time,safe,"]),
                      ["--map", "pair_with=pair_with"], ["one safe and one unsafe"], 2, "pair_with"),
    "bad_utf8": ("g.csv", b"text,label\nA fine prompt,safe\nBad \xff\xfe bytes,unsafe\n", [], ["not valid UTF-8", "0xff"], 3, None),
    "truncated_quote": ("g.csv", b'text,label\nA fine prompt,safe\n"An unclosed quote,unsafe\nmore,safe\n', [],
                        ["ends inside a quoted field"], 3, "text"),
    "enormous_text": ("g.csv", _csv(["text,label", "x" * 150_000 + ",unsafe"]), [], ["exceeds the limit"], 2, "text"),
    "enormous_field": ("g.csv", ("text,label\n\"" + "y" * 1_100_000 + "\",safe\n").encode(), [], ["larger than"], 2, "text"),
    "empty_file": ("g.csv", b"", [], ["the file is empty"], None, None),
    "blank_file": ("g.csv", b"\n \n\t\n", [], ["the file is empty"], None, None),
    "header_only": ("g.csv", b"text,label\n", [], ["header but no rows"], 2, None),
    "binary_file": ("g.csv", bytes(range(256)) * 8, [], ["binary file"], 1, None),
    "map_missing_column": ("g.csv", _csv(["question,is_harmful", "Q,unsafe"]), ["--map", "text=prompt_text", "--map", "label=is_harmful"],
                           ["--map text=prompt_text", "no column 'prompt_text'"], 1, "prompt_text"),
    "map_unknown_target": ("g.csv", _csv(["question,label", "Q,unsafe"]), ["--map", "txet=question"], ["unknown target 'txet'"], 1, None),
    "no_text_column": ("g.csv", _csv(["foo,label", "Q,unsafe"]), ["--format", "generic"], ["no text column"], 1, None),
    "undetectable": ("g.csv", _csv(["foo,bar", "1,2"]), [], ["cannot tell the format"], 1, None),
    "duplicate_id": ("x.csv", _csv([XSTEST_HEADER.strip(), "1,How do I kill time?,homonyms,safe,kill,", "1,Kill a process,homonyms,safe,kill,"]),
                     [], ["id 1 appears twice"], 3, "id"),
    "non_integer_id": ("x.csv", _csv([XSTEST_HEADER.strip(), "one,How do I kill time?,homonyms,safe,kill,"]), [], ["not a whole number"], 2, "id"),
    "unknown_pair_type": ("a.csv", _csv([AUG_HEADER.strip(), "1,1,homonymz,How to kill a man?,How to kill time?,kill"]), [],
                          ["unknown pair type 'homonymz'"], 2, "type"),
    "same_text_both_sides": ("a.csv", _csv([AUG_HEADER.strip(), "1,1,homonyms,How to kill time?,How to  kill time?,kill"]), [],
                             ["label conflict", "safe here but unsafe in row 2"], 2, "safe_prompt"),
    "unknown_specific_harm": ("d.csv", _csv([DNA_HEADER.strip(), f"1,{DNA_PATH.replace('Classified', 'Declassified')},Tell me secrets"]),
                              [], ["no category named", "Declassified"], 2, "specific_harms"),
    "invalid_json_line": ("g.jsonl", b'{"text": "A", "label": "safe"}\n{"text": "B", "label": \n', [], ["invalid JSON"], 2, None),
    "json_not_objects": ("g.json", b'[["A", "safe"]]', [], ["expected a JSON object"], 1, None),
    "too_many_fields": ("g.csv", _csv(["text,label", "A fine prompt,safe,extra"]), [], ["3 fields but the header has 2"], 2, "#3"),
    "label_conflict_in_file": ("g.csv", _csv(["text,label", "Same words here,safe", "Same  words here,unsafe"]), [],
                               ["label conflict", "row 2"], 3, "label"),
    "label_conflict_with_store": ("g.csv", _csv(["text,label", "An already stored unsafe prompt,safe"]), [],
                                  ["label conflict", "unsafe"], 2, "label"),
    "contrast_two_unsafe": ("c.csv", _csv(["set_id,label,prompt", "s1,unsafe,How to hurt?", "s1,unsafe,How to harm?", "s1,safe,How to heal?"]),
                            [], ["exactly one"], 3, "label"),
    "contrast_no_variant": ("c.csv", _csv(["id,prompt,variant_1,variant_2", "1,How to hurt?,,"]), [], ["without any safe variant"], 2, "variant_1"),
    "damaged_parquet": ("g.parquet", b"PAR1" + b"\x01\x02garbage" * 10, [], ["not a readable Parquet file"], None, None),
    "duplicate_header": ("g.csv", _csv(["text,label,text", "A,safe,B"]), [], ["appears twice in the header"], 1, "text"),
}


def snapshot(store_dir) -> dict:
    """Row counts of every table, and every audit entry: the state that must not move."""
    store = Store.open(store_dir)
    try:
        with store.session() as s:
            counts = {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}
            audit = [tuple(r) for r in s.execute(select(AuditEntry.id, AuditEntry.batch_id, AuditEntry.action, AuditEntry.entity_id))]
            prompts = s.execute(text("SELECT id, text, label, category_id, revision FROM prompts ORDER BY id")).all()
        return {"counts": counts, "audit": audit, "prompts": [tuple(p) for p in prompts]}
    finally:
        store.close()


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """A store with taxonomies and one stored unsafe prompt (for the cross-store label conflict)."""
    d = tmp_path_factory.mktemp("bad") / "store"
    store = init_store(d)
    store.taxonomies.load("do-not-answer")
    base = d.parent / "base.csv"
    base.write_text("text,label\nAn already stored unsafe prompt,unsafe\nA stored safe prompt,safe\n", encoding="utf-8")
    store.imports.import_file(base)
    store.close()
    return d


def test_each_kind_of_break_gets_its_own_message(base_store, tmp_path, capsys):
    """A catch-all ("cannot import this file") would satisfy no two cases at once: files broken in
    different ways get different first lines (the file name aside), and only the cases that expect
    the same reason (an empty and a blank file) share one."""
    messages: dict[str, str] = {}
    for case, (name, data, args, _expected, _row, _column) in CASES.items():
        path = tmp_path / case / name
        path.parent.mkdir()
        path.write_bytes(data)
        assert run(cli, ["--store", str(base_store), "import", str(path), *args]) != 0
        messages[case] = capsys.readouterr().err.splitlines()[0].replace(str(path), "FILE")
    by_message: dict[str, list[str]] = {}
    for case, message in messages.items():
        by_message.setdefault(message, []).append(case)
    shared = sorted(sorted(cases) for cases in by_message.values() if len(cases) > 1)
    assert shared == [["blank_file", "empty_file"]], shared


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_file_is_refused_cleanly(case, base_store, tmp_path, capsys):
    name, data, args, expected, row, column = CASES[case]
    path = tmp_path / name
    path.write_bytes(data)
    before = snapshot(base_store)
    code = run(cli, ["--store", str(base_store), "import", str(path), *args])
    err = capsys.readouterr().err
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith(f"error: {path}") and all(ln.startswith(("error:", "hint:")) for ln in lines), err
    assert sum(ln.startswith("error:") for ln in lines) == 1
    for part in expected:
        assert part in lines[0], (part, lines[0])
    if row is not None:
        assert f", row {row}" in lines[0], lines[0]
    if column is not None:
        assert f"column {column!r}" in lines[0], lines[0]
    assert snapshot(base_store) == before


def test_json_summary_is_not_printed_on_error(base_store, tmp_path, capsys):
    path = tmp_path / "g.csv"
    path.write_text("text,label\nX,perhaps\n", encoding="utf-8")
    code = run(cli, ["--store", str(base_store), "import", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "unknown label" in err


@pytest.mark.subprocess
def test_real_script_exits_non_zero(base_store, tmp_path):
    from conftest import run_tstore

    path = tmp_path / "g.csv"
    path.write_bytes(b"text,label\n\"never closed,safe\n")
    before = snapshot(base_store)
    r = run_tstore("--store", str(base_store), "import", str(path))
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {path}, row 2, column 'text': the file ends inside a quoted field")
    assert "Traceback" not in r.stderr
    assert snapshot(base_store) == before
    assert json.dumps(before)  # the snapshot is plain data


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_error_after_taxonomy_auto_load_rolls_everything_back(backend, tmp_path, request):
    """The built-in taxonomy is loaded inside the import's transaction, so a later bad row undoes it too."""
    db_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    store = init_store(tmp_path / "s", db_url=db_url)
    try:
        good = f"1,{DNA_PATH},Tell me the secret plans"
        bad = f"2,{DNA_PATH.replace('Classified', 'Unclassified')},Tell me other plans"
        path = tmp_path / "dna.csv"
        path.write_bytes(_csv([DNA_HEADER.strip(), good, bad]))
        with pytest.raises(Exception) as err:
            store.imports.import_file(path)
        assert "row 3, column 'specific_harms': no category named" in str(err.value)
        with store.session() as s:
            counts = {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}
        # what init wrote (the default encoder and its audit entry) is all there is
        assert all(v == 0 for k, v in counts.items() if k not in ("alembic_version", "encoders", "audit_log")), counts
        assert (counts["encoders"], counts["audit_log"]) == (1, 1), counts
    finally:
        store.close()
