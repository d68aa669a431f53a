"""`tstore init`, `db` and `taxonomy`: the command line in-process (real SQLite and PostgreSQL), and
in real subprocesses where the process is the point (the installed script, exit codes, imports)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_tstore, tstore_in_process


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


def _one_line_error(result, *needles: str):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _nodes_by_depth(tree: dict) -> list[int]:
    counts: dict[int, int] = {}

    def walk(node, depth):
        for child in node["children"]:
            counts[depth] = counts.get(depth, 0) + 1
            walk(child, depth + 1)

    walk(tree, 0)
    return [counts[d] for d in sorted(counts)]


@pytest.mark.subprocess
def test_init_load_show(tmp_path):
    """init and load in-process; show through the installed console script, in real processes."""
    store = str(tmp_path / "s")
    _ok(tstore_in_process("--store", store, "init"))
    _ok(tstore_in_process("--store", store, "taxonomy", "load", "do-not-answer"))
    tree = json.loads(_ok(run_tstore("--store", store, "taxonomy", "show", "do-not-answer", "--json")).stdout)
    assert _nodes_by_depth(tree) == [5, 12, 61]
    assert tree["levels"] == ["risk_area", "harm_type", "specific_harm"]
    names = {c["name"] for c in tree["children"]}
    assert "Information Hazards" in names
    adult = [h for r in tree["children"] for h in r["children"] if h["code"] == "adult_content"][0]
    assert adult["name"] == "Adult Content" and all(c["children"] == [] for c in adult["children"])
    text = _ok(run_tstore("--store", store, "taxonomy", "show", "do-not-answer")).stdout
    assert "5 risk_area / 12 harm_type / 61 specific_harm" in text


def test_taxonomy_load_is_idempotent_and_audited(store):
    from sqlalchemy import func, select

    from taxonomy_store.db.models import AuditEntry

    def taxonomy_entries() -> int:
        with store.session() as s:
            return s.scalar(select(func.count()).where(AuditEntry.entity.in_(("taxonomy", "taxonomy_node"))))

    first = store.taxonomies.load("do-not-answer")
    rev = store.data_revision()
    second = store.taxonomies.load("do-not-answer")
    assert (first.created, first.nodes_added) == (True, 78)
    assert (second.created, second.nodes_added, second.nodes_updated, second.nodes_unchanged) == (False, 0, 0, 78)
    assert taxonomy_entries() == 79  # one audit entry for the taxonomy, one per node
    assert rev > 0
    assert store.data_revision() == rev


def test_all_builtin_taxonomies(store):
    for name, per_level in (("xstest-pair-types", [10]), ("ailuminate-v1", [3, 12]), ("do-not-answer", [5, 12, 61])):
        store.taxonomies.load(name)
        assert store.taxonomies.tree(name).count_by_depth() == per_level
    group = next(n for n in store.taxonomies.tree("xstest-pair-types").walk() if n.code == "group")
    assert group.name == "Discrimination (nonsense group)"


def test_taxonomy_names_match_do_not_answer_csv(store, shared_datasets):
    import csv

    store.taxonomies.load("do-not-answer")
    tree = store.taxonomies.tree("do-not-answer")
    names_by_depth = {0: set(), 1: set(), 2: set()}
    for node in tree.walk():
        names_by_depth[node.depth].add(node.name)
    with open(shared_datasets / "do_not_answer.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["risk_area"] for r in rows} == names_by_depth[0]
    assert {r["types_of_harm"] for r in rows} == names_by_depth[1]
    assert {r["specific_harms"] for r in rows} == names_by_depth[2]


def _store_files(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else []


def test_unknown_taxonomy(tmp_path):
    store = tmp_path / "s"
    _ok(tstore_in_process("--store", str(store), "init"))
    before = _store_files(store)
    line = _one_line_error(tstore_in_process("--store", str(store), "taxonomy", "load", "no-such-taxonomy"), "unknown taxonomy 'no-such-taxonomy'")
    assert line
    _one_line_error(tstore_in_process("--store", str(store), "taxonomy", "show", "do-not-answer"), "no taxonomy 'do-not-answer'")
    assert _store_files(store) == before
    con = sqlite3.connect(store / "tstore.db")
    assert con.execute("select count(*) from taxonomies").fetchone() == (0,)
    # init registered the default encoder: its audit rows are the only ones
    assert con.execute("select count(*) from audit_log where entity <> 'encoder'").fetchone() == (0,)


@pytest.mark.parametrize(
    "content,needle",
    [
        ("name: x\nnodes: [\n", "invalid YAML"),
        ("name: x\nnodes:\n  - code: a\n", "nodes[0]: missing 'name'"),
        ("name: x\nnodes:\n  - {code: a, name: A}\n  - {code: a, name: B}\n", "code 'a' is already used"),
        ("nodes:\n  - {code: a, name: A}\n", "missing 'name'"),
        ("name: x\nnodes: []\n", "'nodes' must be a non-empty list"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: x\nnodes:\n  - {code: a, name: A, children: 3}\n", "'children' must be a list"),
    ],
)
def test_malformed_taxonomy_file(tmp_path, content, needle):
    store = tmp_path / "s"
    _ok(tstore_in_process("--store", str(store), "init"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(content, encoding="utf-8")
    line = _one_line_error(tstore_in_process("--store", str(store), "taxonomy", "load", str(bad)), str(bad), needle)
    assert line
    con = sqlite3.connect(store / "tstore.db")
    assert con.execute("select count(*) from taxonomy_nodes").fetchone() == (0,)
    # init registered the default encoder: its audit rows are the only ones
    assert con.execute("select count(*) from audit_log where entity <> 'encoder'").fetchone() == (0,)


@pytest.mark.subprocess
def test_not_a_store(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    _one_line_error(run_tstore("--store", str(plain), "taxonomy", "list"), "is not a tstore store")
    _one_line_error(tstore_in_process("--store", str(plain), "init"), "is not empty and is not a tstore store")
    _one_line_error(tstore_in_process("--store", str(tmp_path / "missing"), "taxonomy", "list"), "does not exist")
    assert sorted(p.name for p in plain.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "missing").exists()


def test_unreachable_database(tmp_path):
    store = tmp_path / "s"
    # Nothing listens on port 1 of loopback.
    result = tstore_in_process("--store", str(store), "--db-url", "postgresql://nobody@127.0.0.1:1/none", "init")
    _one_line_error(result, "cannot connect to postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert not store.exists()


def test_env_store_location(tmp_path):
    store = tmp_path / "from-env"
    _ok(tstore_in_process("init", env={"TSTORE_HOME": str(store)}))
    assert (store / "tstore-store.json").is_file()
    out = _ok(tstore_in_process("taxonomy", "list", env={"TSTORE_HOME": str(store)})).stdout
    assert "no taxonomies yet" in out


def test_default_store_location(tmp_path):
    _ok(tstore_in_process("init", env={"TSTORE_HOME": "", "XDG_DATA_HOME": str(tmp_path / "xdg")}))
    assert (tmp_path / "xdg" / "tstore" / "tstore-store.json").is_file()


def test_outdated_schema_is_refused(tmp_path):
    store = tmp_path / "s"
    _ok(tstore_in_process("--store", str(store), "init"))
    _ok(tstore_in_process("--store", str(store), "db", "downgrade", "base", "--yes"))
    _one_line_error(tstore_in_process("--store", str(store), "taxonomy", "list"), "schema none")
    assert "tstore db upgrade" in tstore_in_process("--store", str(store), "taxonomy", "list").stderr
    _ok(tstore_in_process("--store", str(store), "db", "upgrade"))
    current = json.loads(_ok(tstore_in_process("--store", str(store), "db", "current", "--json")).stdout)
    assert current["current"] == current["head"]


@pytest.mark.postgres
def test_postgres_store(tmp_path, pg_url):
    store = str(tmp_path / "pg")
    _ok(tstore_in_process("--store", store, "--db-url", pg_url, "init"))
    # The store remembers its database: later commands need no --db-url.
    _ok(tstore_in_process("--store", store, "taxonomy", "load", "do-not-answer", env={"TSTORE_DB_URL": ""}))
    tree = json.loads(_ok(tstore_in_process("--store", store, "taxonomy", "show", "do-not-answer", "--json", env={"TSTORE_DB_URL": ""})).stdout)
    assert _nodes_by_depth(tree) == [5, 12, 61]
    assert not (tmp_path / "pg" / "tstore.db").exists()


HEAVY = ("torch", "sentence_transformers", "transformers", "chromadb", "textual")
_REPORT_HEAVY = "import sys; print('HEAVY=' + ','.join(m for m in {mods!r} if m in sys.modules))"


def _core_modules() -> list[str]:
    """Every module of taxonomy_store outside the CLI and the TUI, found on disk (a new one is covered by itself)."""
    import taxonomy_store

    root = Path(taxonomy_store.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] in ("cli", "tui", "migrations", "seeds"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(("taxonomy_store",) + parts))
    return names


def test_core_module_list_is_complete():
    names = _core_modules()
    assert {"taxonomy_store", "taxonomy_store.store", "taxonomy_store.db.models", "taxonomy_store.metrics"} <= set(names)
    assert not any(n.startswith(("taxonomy_store.cli", "taxonomy_store.tui")) for n in names)


_IMPORT_EACH = """
import importlib, json, sys
heavy = {heavy!r}
found = {{}}
for name in {modules!r}:
    importlib.import_module(name)
    found[name] = [m for m in heavy if m in sys.modules]
    if found[name]:
        break  # the first module that loads one is the culprit; the rest cannot be told apart any more
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def heavy_after_import() -> dict[str, list[str]]:
    """One fresh interpreter imports every core module in turn and reports, after each, which heavy
    modules are loaded. Modules are only ever added to sys.modules, so the first import that loads a
    heavy one names the culprit, as separate interpreters would, at the cost of one start."""
    code = _IMPORT_EACH.format(heavy=HEAVY + ("rich",), modules=_core_modules())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.subprocess
@pytest.mark.parametrize("module", _core_modules())
def test_core_module_imports_no_model_vector_store_or_ui(module, heavy_after_import):
    """Importing any library module loads no torch, encoders, Chroma, Textual or rich: the heavy ones
    load inside the functions that need them, and the core never depends on the UI."""
    assert module in heavy_after_import, f"not reached: an earlier module loaded {list(heavy_after_import.values())[-1]}"
    assert heavy_after_import[module] == [], module


@pytest.mark.subprocess
def test_tstore_help_imports_no_model_vector_store_or_ui():
    code = (
        "import sys\n"
        "from taxonomy_store.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        + _REPORT_HEAVY.format(mods=HEAVY)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Commands:" in out
    assert out.strip().splitlines()[-1] == "HEAVY="


@pytest.mark.subprocess
def test_tstore_script_help_is_quick_to_load():
    """The installed console script itself (what a user runs) answers --help without the heavy modules."""
    exe = Path(sys.executable).parent / "tstore"
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{str(exe)!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(exe)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        + _REPORT_HEAVY.format(mods=HEAVY)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage: tstore" in out
    assert out.strip().splitlines()[-1] == "HEAVY="


def test_command_modules_share_only_public_helpers():
    """Command modules print through `render`, share options from `options`, and never import each
    other (nor anyone's private names): a new command group is one new module."""
    import ast

    import taxonomy_store.cli as cli_package

    cli_dir = Path(cli_package.__file__).parent
    command_modules = sorted(p.stem for p in cli_dir.glob("*_cmds.py"))
    assert {"db_cmds", "import_cmds", "export_cmds", "prompt_cmds", "pair_cmds", "encoder_cmds", "metrics_cmds"} <= set(command_modules)
    for name in command_modules:
        tree = ast.parse((cli_dir / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module not in command_modules, f"{name} imports {node.module}"
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{name} imports private {private} from .{node.module}"
    # `encoder estimate-baseline` lives with the other encoder commands.
    from taxonomy_store.cli import encoder_cmds

    assert encoder_cmds.encoder.commands["estimate-baseline"].callback.__module__ == encoder_cmds.__name__
