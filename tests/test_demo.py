"""The README's main job: `make demo` from an empty directory with a fresh virtual environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _cp_table(stdout: str) -> tuple[dict[str, float], float, float]:
    """Per-category CP@10, macro mean and chance level from the demo's printed CP table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Categorical Purity CP@10" in line)
    per_category, macro, chance = {}, None, None
    for line in lines[start:]:
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if not cells:
            continue
        if cells[0] == "macro mean":
            macro = float(cells[-1])
        elif cells[0] == "chance (macro)":
            chance = float(cells[-1])
            break
        elif len(cells) == 4 and re.fullmatch(r"[a-z_]+", cells[0]) and re.fullmatch(r"\d+", cells[2]):
            per_category[cells[0]] = float(cells[3])
    return per_category, macro, chance


def test_build_demo_store_twice_changes_nothing(tmp_path):
    """On the hashing test encoder registered as `minilm` first (the README demo below runs the real one)."""
    from conftest import plant_hashing_encoder
    from taxonomy_store.store import init_store
    from taxonomy_store.workflows.demo import build_demo_store

    with init_store(tmp_path / "demo") as s:
        plant_hashing_encoder(s)
    first = build_demo_store(tmp_path / "demo")
    assert [s.added for s in first.imports] == [300, 200, 120]
    assert first.embed.embedded == 620
    first.store.close()
    again = build_demo_store(tmp_path / "demo")
    assert all(s.unchanged_file for s in again.imports)
    assert (again.embed.embedded, again.embed.updated, again.embed.unchanged) == (0, 0, 620)
    tree = again.store.taxonomies.tree("do-not-answer")
    assert [n.prompts for n in tree.roots if n.code == "information_hazards"] == [40 + 2]  # 40 prompts + 2 contrast sets
    again.store.close()


def _venv_borrowing_our_packages(venv: Path) -> None:
    """A fresh virtual environment whose installed packages are ours (a .pth after its own
    site-packages), so `make demo`'s pip steps find torch and the rest already satisfied and only
    install tstore itself. Installing the dependencies from nothing is what `.ci/run`'s
    `make setup-sbert` does on every clean clone; this test is about the demo path."""
    import sysconfig

    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in sys.path if p.rstrip("/").endswith("site-packages") and Path(p).is_dir()]
    ours = [sysconfig.get_paths()["purelib"]] + [p for p in ours if p != sysconfig.get_paths()["purelib"]]
    Path(purelib, "zz_borrowed.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.subprocess
def test_readme_demo_in_fresh_venv_outside_checkout(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^make demo\b", readme, re.M), "the README's main-job command changed; update this test"
    empty = tmp_path / "empty"
    empty.mkdir()
    venv = tmp_path / "venv"
    _venv_borrowing_our_packages(venv)
    result = subprocess.run(
        ["make", "-f", str(REPO / "Makefile"), "demo", f"VENV={venv}", f"PYTHON={sys._base_executable}"],
        cwd=empty, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (venv / "bin" / "tstore").exists()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import taxonomy_store; print(taxonomy_store.__file__)"],
                           cwd=empty, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(REPO)), where  # the editable install of this checkout, made by `make demo`
    assert (empty / "tstore-demo" / "tstore.db").is_file()
    per_category, macro, chance = _cp_table(result.stdout)
    assert len(per_category) == 12
    assert all(0.0 <= v <= 1.0 for v in per_category.values())
    # Random neighbours would give about 1/12 for 12 balanced categories.
    assert chance == pytest.approx(1 / 12, abs=0.02)
    assert macro > 2 * chance
    assert "sample query:" in result.stdout and "verdict:" in result.stdout
