"""mypy over the package as it ships (tui/ and migrations/ inside taxonomy_store/), with the
configuration in pyproject.toml: clean. The TUI is typed against `facade.StoreFacade`, so a screen
that reaches past the facade (to the database, say) fails here; the second test plants one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_architecture import REPO, shipped_copy

# One cache for both tests and later runs: a warm run rechecks only what changed.
CACHE = REPO / ".mypy_cache"


def mypy(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--cache-dir", str(CACHE),
         "-p", "taxonomy_store"],
        cwd=root, capture_output=True, text=True, timeout=900,
    )


def test_mypy_is_clean(tmp_path):
    result = mypy(shipped_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
    # the TUI was checked as the package ships it
    checked = int(result.stdout.split(" in ")[-1].split()[0])
    assert checked > 100


def test_a_screen_reaching_past_the_facade_fails(tmp_path):
    root = shipped_copy(tmp_path)
    screen = root / "taxonomy_store" / "tui" / "screens" / "query.py"
    screen.write_text(screen.read_text(encoding="utf-8") + (
        "\n\ndef _reach(screen: QueryScreen) -> None:\n"
        "    screen.store.db.session()\n"
    ), encoding="utf-8")
    result = mypy(root)
    assert result.returncode == 1
    assert '"StoreFacade" has no attribute "db"' in result.stdout, result.stdout
