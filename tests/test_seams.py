"""The seams between the parts: settings read once where the store opens, scorers in one registry,
and the typed facade the TUI and the server are written against."""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy import select

from taxonomy_store.db.models import AuditEntry
from taxonomy_store.store import Store, init_store

REPO = Path(__file__).resolve().parent.parent
# The domain packages and the backend: they receive settings, they never read the environment.
PARTS = ("adapt", "backend", "crosswalks", "curation", "embeddings", "guard", "measurement", "neighbours",
         "serve", "taxonomy", "transfer", "workflows")


def environment_reads(path: Path) -> list[str]:
    """`os.environ.get(...)`, `os.environ[...]` and `os.getenv(...)` in a module (setdefault, a write, is not a read)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if f.attr == "getenv" or (f.attr == "get" and ast.unparse(f.value) == "os.environ"):
                target = ast.unparse(f)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" and isinstance(node.ctx, ast.Load):
            target = "os.environ[...]"
        if target:
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {target}")
    return found


def test_no_part_reads_the_environment():
    reads = [r for part in PARTS for p in sorted((REPO / "taxonomy_store" / part).rglob("*.py")) for r in environment_reads(p)]
    reads += environment_reads(REPO / "taxonomy_store" / "audit.py")
    assert reads == []
    # the scan sees a read where there is one
    assert environment_reads(REPO / "taxonomy_store" / "store.py")


def test_settings_are_read_once_where_the_store_opens(tmp_path, monkeypatch):
    for name in ("TSTORE_ENCODER", "TSTORE_ACTOR", "TSTORE_DB_URL", "TSTORE_CHROMA_URL", "TSTORE_CHROMA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    init_store(tmp_path / "s").close()
    monkeypatch.setenv("TSTORE_ENCODER", "preferred")
    monkeypatch.setenv("TSTORE_ACTOR", "alice")
    with Store.open(tmp_path / "s") as store:
        monkeypatch.setenv("TSTORE_ENCODER", "changed-later")
        monkeypatch.setenv("TSTORE_ACTOR", "bob")
        assert store.encoders.default_name() == "preferred"
        store.encoders.set_baseline("minilm", 0.2, {"source": "test"})
        with store.db.session() as s:
            last = s.execute(select(AuditEntry.actor, AuditEntry.entity).order_by(AuditEntry.id.desc()).limit(1)).one()
        assert tuple(last) == ("alice", "encoder")
    monkeypatch.delenv("TSTORE_ENCODER")
    with Store.open(tmp_path / "s") as store:
        assert store.encoders.default_name() == "minilm"
