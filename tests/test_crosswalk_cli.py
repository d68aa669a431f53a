"""`tstore crosswalk`, `tstore coverage` and `tstore overlap` in-process, on the crosswalk test store."""

from __future__ import annotations

import json

import pytest

from taxonomy_store.cli import cli
from taxonomy_store.cli.app import run
from taxonomy_store.store import Store, init_store
from test_crosswalks import build


@pytest.fixture(scope="module")
def store_opts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cwcli")
    store = init_store(tmp / "store")
    build(store, tmp)
    store.close()
    return ["--store", str(tmp / "store")]


def tstore(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(cli, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_crosswalk_table_json_accept_list_export_undo(store_opts, capsys, tmp_path):
    code, out, _ = tstore(capsys, *store_opts, "crosswalk", "bench", "house")
    assert code == 0
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert "maps to weapons" in lines["bombs"] and "no counterpart" in lines["lyrics"] and "splits into" in lines["mixed"]
    code, out, _ = tstore(capsys, *store_opts, "crosswalk", "bench", "house", "--json", "--k", "5")
    d = json.loads(out)
    assert d["k"] == 5 and {p["source"]: p["label"] for p in d["proposals"]}["phishing"] == "maps to fraud"
    code, out, err = tstore(capsys, *store_opts, "crosswalk", "bench", "house", "--accept", "bombs", "--reject", "mixed=fraud")
    assert code == 0 and "accepted: bombs -> weapons" in err and "rejected: mixed -> fraud" in err
    code, out, _ = tstore(capsys, *store_opts, "crosswalk", "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [("bombs", "weapons", "accepted"), ("mixed", "fraud", "rejected")]
    code, out, _ = tstore(capsys, *store_opts, "crosswalk", "export", "--status", "accepted")
    assert out.splitlines()[1].startswith("bench,bombs,house,weapons,")
    path = tmp_path / "cw.json"
    assert tstore(capsys, *store_opts, "crosswalk", "export", "-o", str(path))[0] == 0
    assert len(json.loads(path.read_text())) == 2
    code, out, _ = tstore(capsys, *store_opts, "crosswalk", "undo")
    assert code == 0 and out.startswith("undid batch") and "(2 rows)" in out
    assert tstore(capsys, *store_opts, "crosswalk", "list")[1] == ""
    code, out, _ = tstore(capsys, *store_opts, "crosswalk", "import", str(path))
    assert code == 0 and out.startswith("imported 2 crosswalk rows")
    assert tstore(capsys, *store_opts, "crosswalk", "undo")[0] == 0


def test_crosswalk_errors(store_opts, capsys):
    code, _, err = tstore(capsys, *store_opts, "crosswalk", "bench", "nowhere")
    assert code == 1 and "error: no target taxonomy 'nowhere' in this store" in err
    code, _, err = tstore(capsys, *store_opts, "crosswalk", "bench", "house", "--accept", "lyrics")
    assert code == 2 and "error: 'lyrics' has no proposed target (no counterpart)" in err
    assert "hint: name one: --accept lyrics=TARGET_CATEGORY" in err
    code, _, err = tstore(capsys, *store_opts, "crosswalk", "undo")
    assert code == 1 and "no crosswalk change to undo" in err


def test_coverage_of_a_covered_and_an_uncovered_category(store_opts, capsys, tmp_path):
    png = tmp_path / "cov.png"
    code, out, err = tstore(capsys, *store_opts, "coverage", "--dataset", "bench", "--json", "--png", str(png))
    assert code == 0 and png.stat().st_size > 1000
    d = json.loads(out)
    cats = {c["category"]: c for c in d["categories"]}
    assert set(cats) == {"bombs", "phishing", "mixed", "lyrics"}
    assert cats["bombs"]["covered"] == 1.0 and cats["bombs"]["verdicts"]["unsafe"] == 1.0
    assert cats["lyrics"]["near_unsafe"] == 0.0 and cats["lyrics"]["verdicts"].get("unsafe", 0.0) == 0.0
    assert d["overall"]["prompts"] == 40
    assert all(u["category"] == "lyrics" for u in d["uncovered"])
    code, _, err = tstore(capsys, *store_opts, "coverage")
    assert code == 2 and "give a FILE or --dataset NAME" in err


def test_overlap_counts_exact_and_near(store_opts, capsys, tmp_path):
    # "bench" bombs prompts repeat house's weapons prompts with one word added: near, not exact
    code, out, _ = tstore(capsys, *store_opts, "overlap", "--json", "--threshold", "0.9")
    d = json.loads(out)
    pairs = {(p["a"], p["b"]): (p["exact"], p["near"]) for p in d["pairs"]}
    assert pairs[("bench", "house")][0] == 0 and pairs[("bench", "house")][1] >= 10
    assert pairs[("everyday", "house")] == (0, 0)
    code, out, _ = tstore(capsys, *store_opts, "overlap", "--exact-only", "--dataset", "bench", "--dataset", "house", "--json")
    assert json.loads(out)["pairs"] == [dict(a="bench", b="bench", exact=0, near=0), dict(a="house", b="house", exact=0, near=0),
                                        dict(a="bench", b="house", exact=0, near=0)]
    code, _, err = tstore(capsys, *store_opts, "overlap", "--dataset", "nope")
    assert code == 1 and "no dataset 'nope'" in err
