"""docs/CLI.md is the generated --help of every command: regenerate it when a command changes."""

from pathlib import Path

from taxonomy_store.cli.reference import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "CLI.md"


def test_cli_reference_is_in_sync():
    assert DOC.read_text(encoding="utf-8") == render(), "run: python -m taxonomy_store.cli.reference > docs/CLI.md"


def test_reference_covers_the_main_commands():
    text = DOC.read_text(encoding="utf-8")
    for command in ("tstore init", "tstore import", "tstore export", "tstore embed", "tstore verify", "tstore query",
                    "tstore calibrate", "tstore metrics", "tstore demo", "tstore reproduce safe-embed", "tstore tui",
                    "tstore encoder install", "tstore taxonomy show"):
        assert f"## `{command}`" in text, command
