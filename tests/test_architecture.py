"""The shape of the code: the import rule of pyproject.toml's import-linter contracts, and short functions.

`lint-imports` runs on a copy laid out as the package ships (tui/ and migrations/ inside
taxonomy_store/), since in a checkout they sit beside it. Imports under TYPE_CHECKING and
inside functions count: the second test plants one of each and expects the contracts to break.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80
LAYERS = "Layers only point down: cli, tui, workflows, store.py, parts (| = independent), backend, foundations"
NO_CYCLES = "No import cycles among sibling modules"


def shipped_copy(dest: Path) -> Path:
    """taxonomy_store/ with tui/ and migrations/ where the wheel puts them; returns the folder to put on sys.path."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "taxonomy_store", dest / "taxonomy_store", ignore=ignore)
    shutil.copytree(REPO / "tui", dest / "taxonomy_store" / "tui", ignore=ignore)
    shutil.copytree(REPO / "migrations", dest / "taxonomy_store" / "migrations", ignore=ignore)
    return dest


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    # Run from the copy, so that it (not the checkout) is the `taxonomy_store` import-linter reads.
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(exe), "--no-cache", str(REPO / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold(tmp_path):
    result = lint_imports(shipped_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = " ".join(result.stdout.split())
    assert f"{LAYERS} KEPT" in summary and f"{NO_CYCLES} KEPT" in summary
    assert "Contracts: 6 kept, 0 broken." in summary
    # tui/ was part of the graph (a layer of its own in the contract).
    assert "module taxonomy_store.tui does not exist" not in result.stdout


def test_every_module_has_a_layer():
    """A module missing from the layers contract would escape the rule: each one is named."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    layers = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.replace("|", ":").split(":")}
    shipped = {f"taxonomy_store.{p.stem}" for p in (REPO / "taxonomy_store").glob("*.py") if p.stem != "__init__"}
    shipped |= {f"taxonomy_store.{p.name}" for p in (REPO / "taxonomy_store").iterdir() if (p / "__init__.py").is_file()}
    shipped |= {"taxonomy_store.tui", "taxonomy_store.migrations"}
    assert shipped - named == set()


@pytest.mark.parametrize(
    "module, planted, broken",
    [
        # a part naming the composition root for type checkers only
        ("embeddings/encoders.py", "\nimport typing\nif typing.TYPE_CHECKING:\n    from taxonomy_store.store import Store\n", LAYERS),
        # the backend reaching up into a part from inside a function
        ("backend/database.py", "\ndef _late():\n    from taxonomy_store.embeddings.indexing import Embeddings\n    return Embeddings\n", LAYERS),
        # two parts of one floor that must stay independent
        ("neighbours/service.py", "\ndef _late():\n    from taxonomy_store.transfer.imports import Imports\n    return Imports\n", LAYERS),
        # a cycle between two parts through a function-level import
        ("guard/scorers.py", "\ndef _late():\n    from taxonomy_store.guard.querying import Guard\n    return Guard\n", NO_CYCLES),
    ],
)
def test_contracts_count_type_checking_and_function_level_imports(tmp_path, module, planted, broken):
    root = shipped_copy(tmp_path)
    with open(root / "taxonomy_store" / module, "a", encoding="utf-8") as f:
        f.write(planted)
    result = lint_imports(root)
    assert result.returncode != 0
    summary = " ".join(result.stdout.split())  # contract names wrap in the report
    assert f"{broken} BROKEN" in summary, result.stdout


def long_functions() -> list[str]:
    found = []
    for folder in ("taxonomy_store", "tui"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_80_lines():
    assert long_functions() == []


def test_the_length_check_sees_a_long_function(tmp_path, monkeypatch):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "taxonomy_store").mkdir()
    (tmp_path / "tui").mkdir()
    (tmp_path / "taxonomy_store" / "long.py").write_text(f"def too_long():\n{body}\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert long_functions() == ["taxonomy_store/long.py:1 too_long (81 lines)"]


def test_no_benchmark_script_shadows_an_installed_module():
    """Tests put benchmarks/ on sys.path (the generated stores); a script named like a package
    (benchmarks/ray.py did) then replaces that package for every later test in the process."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    saved = sys.path[:]
    try:
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != bench]
        clashes = [f.stem for f in bench.glob("*.py")
                   if f.stem not in sys.modules and importlib.util.find_spec(f.stem) is not None
                   or f.stem in sys.modules and Path(getattr(sys.modules[f.stem], "__file__", "") or "").parent != bench]
    finally:
        sys.path[:] = saved
    assert clashes == []
