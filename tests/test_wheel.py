"""The built wheel works outside the checkout: migrations, seeds and TUI styles ship inside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, text=True,
    )
    (path,) = out.glob("taxonomy_store-*.whl")
    return path


def _expected_modules() -> set[str]:
    """Every .py file of the checkout's packages, under the name it has inside the wheel."""
    mapping = {"taxonomy_store": "taxonomy_store", "migrations": "taxonomy_store/migrations", "seeds": "taxonomy_store/seeds", "tui": "taxonomy_store/tui"}
    out = set()
    for src, dst in mapping.items():
        for path in (REPO / src).rglob("*.py"):
            if "__pycache__" not in path.parts:
                out.add(f"{dst}/{path.relative_to(REPO / src).as_posix()}")
    return out


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _expected_modules() <= names, sorted(_expected_modules() - names)
    assert "taxonomy_store/tui/app.tcss" in names
    assert {"taxonomy_store/seeds/demo/prompts.csv", "taxonomy_store/seeds/demo/pairs.csv", "taxonomy_store/seeds/demo/contrast.jsonl"} <= names
    assert {"taxonomy_store/seeds/everyday/requests.txt", "taxonomy_store/seeds/everyday/README.md"} <= names
    assert "taxonomy_store/migrations/env.py" in names
    assert "taxonomy_store/migrations/script.py.mako" in names
    assert any(n.startswith("taxonomy_store/migrations/versions/0001_") for n in names)
    for seed in ("do-not-answer", "xstest-pair-types", "ailuminate-v1"):
        assert f"taxonomy_store/seeds/taxonomies/{seed}.yaml" in names
    assert "taxonomy_store/tui/__init__.py" in names
    assert not any(n.startswith(("tests/", "migrations/", "seeds/", "tui/")) for n in names)


@pytest.mark.subprocess
def test_installed_wheel_outside_checkout(wheel, tmp_path):
    """A fresh virtual environment holding only the wheel (its dependencies borrowed from ours)."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    # Dependencies come from the test's own environment, appended after the fresh site-packages (all
    # of its site-packages folders: a venv layered on another one has two).
    ours = [sysconfig.get_paths()["purelib"]] + [p for p in sys.path if p.rstrip("/").endswith("site-packages") and Path(p).is_dir()]
    Path(site, "zz_deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)], check=True, capture_output=True)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TSTORE_HOME", "TSTORE_DB_URL")}

    def tstore(*args):
        code = "import sys; from taxonomy_store.cli import main; sys.argv[0] = 'tstore'; main(sys.argv[1:])"
        return subprocess.run([str(py), "-c", code, *args], cwd=work, env=env, capture_output=True, text=True)

    where = subprocess.run([str(py), "-c", "import taxonomy_store; print(taxonomy_store.__file__)"], cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(site), where
    for args in (("--store", "X", "init"), ("--store", "X", "taxonomy", "load", "do-not-answer")):
        r = tstore(*args)
        assert r.returncode == 0, r.stderr
    r = tstore("--store", "X", "taxonomy", "show", "do-not-answer")
    assert r.returncode == 0, r.stderr
    assert "5 risk_area / 12 harm_type / 61 specific_harm" in r.stdout
    tree = json.loads(tstore("--store", "X", "taxonomy", "show", "do-not-answer", "--json").stdout)
    assert [len(tree["children"]), sum(len(r["children"]) for r in tree["children"])] == [5, 12]
    assert (work / "X" / "tstore.db").is_file()
    # The TUI (screens, widgets, styles) imports from the installed package.
    tui = subprocess.run([str(py), "-c", "import taxonomy_store.tui.app as a, pathlib; print(a.__file__)"], cwd=work, env=env, capture_output=True, text=True)
    assert tui.returncode == 0 and tui.stdout.startswith(site), tui.stderr
    # `adapt --everyday` reads its requests from the installed package
    code = "from taxonomy_store.adapt.data import everyday_texts; print(len(everyday_texts()))"
    everyday = subprocess.run([str(py), "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert everyday.returncode == 0 and everyday.stdout.strip() == "320", everyday.stderr
