"""Migrations and models agree, and round-trip, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from taxonomy_store.db import migrate
from taxonomy_store.db.engine import make_engine
from taxonomy_store.db.models import Base

TABLES = {
    "taxonomies", "taxonomy_nodes", "datasets", "prompts", "prompt_sources", "pair_sets", "pairs",
    "encoders", "embeddings", "metric_runs", "metric_values", "audit_log",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'schema.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    eng = make_engine(url)
    yield eng
    eng.dispose()


def test_single_head():
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert len(heads) == 1


def test_upgrade_downgrade_upgrade(engine):
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    migrate.downgrade(engine, "base")
    assert not (set(inspect(engine).get_table_names()) & TABLES)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_models_match_migrations(engine):
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def _seed(conn):
    conn.execute(text("INSERT INTO datasets (id, name, row_count, prompt_count, pair_count, options) VALUES (1, 'd', 0, 0, 0, '{}')"))
    for pid, t in ((101, "a"), (102, "b")):
        conn.execute(
            text(
                "INSERT INTO prompts (id, text, text_sha256, label, dataset_id, source_key, created_at, updated_at, revision) "
                "VALUES (:id, :t, :h, 'unsafe', 1, :k, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"
            ),
            dict(id=pid, t=t, h=t * 64, k=str(pid)),
        )
    conn.execute(text("INSERT INTO pair_sets (id, name, kind, created_at) VALUES (1, 's', 'challenging', CURRENT_TIMESTAMP)"))


def test_constraints_hold(engine):
    migrate.upgrade(engine)
    with engine.begin() as conn:
        _seed(conn)
    # A pair never links a prompt to itself.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO pairs (pair_set_id, unsafe_prompt_id, safe_prompt_id, status, created_at) VALUES (1, 101, 101, 'accepted', CURRENT_TIMESTAMP)"))
    # One live prompt per normalised text.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO prompts (text, text_sha256, label, created_at, updated_at, revision) VALUES ('a', :h, 'safe', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"), dict(h="a" * 64))
    # ...but a soft-deleted one does not block it.
    with engine.begin() as conn:
        conn.execute(text("UPDATE prompts SET deleted_at = CURRENT_TIMESTAMP WHERE id = 101"))
        conn.execute(text("INSERT INTO prompts (text, text_sha256, label, created_at, updated_at, revision) VALUES ('a', :h, 'safe', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"), dict(h="a" * 64))
    # Labels are one of three.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO prompts (text, text_sha256, label, created_at, updated_at, revision) VALUES ('c', :h, 'maybe', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"), dict(h="c" * 64))
    # No two prompts from the same dataset row.
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO prompt_sources (dataset_id, source_key, prompt_id, extra) VALUES (1, 'row-1', 102, '{}')"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO prompt_sources (dataset_id, source_key, prompt_id, extra) VALUES (1, 'row-1', 102, '{}')"))


def test_audit_log_is_append_only(engine):
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (at, actor, batch_id, action, entity) VALUES (CURRENT_TIMESTAMP, 't', 'b', 'insert', 'prompt')"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'x'"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    if engine.dialect.name == "postgresql":  # SQLite has no TRUNCATE
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_log")).scalars().all() == ["t"]


def test_sqlite_pragmas(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with eng.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
