"""Issue 20 item 8: on SQLite, REPLACE INTO / INSERT OR REPLACE cannot rewrite an audit row."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from taxonomy_store.db import migrate
from taxonomy_store.db.engine import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = make_engine(url)
    migrate.upgrade(eng)
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (at, actor, batch_id, action, entity) "
                          "VALUES (CURRENT_TIMESTAMP, 't', 'b', 'insert', 'prompt')"))  # gets id 1
    yield eng
    eng.dispose()


REWRITES = {
    "sqlite": [
        "REPLACE INTO audit_log (id, at, actor, batch_id, action, entity) VALUES (1, CURRENT_TIMESTAMP, 'x', 'b', 'insert', 'prompt')",
        "INSERT OR REPLACE INTO audit_log (id, at, actor, batch_id, action, entity) VALUES (1, CURRENT_TIMESTAMP, 'x', 'b', 'insert', 'prompt')",
    ],
    "postgresql": [
        "INSERT INTO audit_log (id, at, actor, batch_id, action, entity) VALUES (1, CURRENT_TIMESTAMP, 'x', 'b', 'insert', 'prompt') "
        "ON CONFLICT (id) DO UPDATE SET actor = EXCLUDED.actor",
    ],
}


def test_replacing_an_audit_row_is_refused(engine):
    for statement in REWRITES[engine.dialect.name]:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    # A new row still goes in; the old one is as it was.
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (at, actor, batch_id, action, entity) VALUES (CURRENT_TIMESTAMP, 'u', 'c', 'insert', 'prompt')"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, actor FROM audit_log ORDER BY id")).all() == [(1, "t"), (2, "u")]


def test_sqlite_refuses_replace_before_0004_is_gone(tmp_path):
    """Downgrading past 0004 drops the trigger again (and only it)."""
    eng = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    migrate.upgrade(eng)
    with eng.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
    assert names == {"audit_log_no_update", "audit_log_no_delete", "audit_log_no_replace"}
    migrate.downgrade(eng, "0003")
    with eng.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
    assert names == {"audit_log_no_update", "audit_log_no_delete"}
    eng.dispose()
