"""Alembic, driven from code with the migrations shipped inside the package.

Every entry point first checks that the store's recorded revision is one this tstore ships: a
store migrated by a newer tstore is refused before anything runs, so an older tstore never
"upgrades" or "downgrades" a schema it does not know.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from taxonomy_store.errors import InvalidValue, SchemaBroken, SchemaOutdated, SchemaTooNew
from taxonomy_store.paths import package_dir


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(package_dir("migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    # The shipped migrations do not change while tstore runs: read them once.
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None  # the package ships its migrations
    return head


def known_revisions() -> list[str]:
    """The revisions this tstore ships, oldest first."""
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


def _recorded_revisions(engine: Engine) -> tuple[str, ...]:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_heads()


def current_revision(engine: Engine) -> str | None:
    refuse_unknown_revision(engine)
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def refuse_unknown_revision(engine: Engine) -> None:
    """SchemaTooNew when the database records a revision this tstore does not ship."""
    known = set(known_revisions())
    for revision in _recorded_revisions(engine):
        if revision not in known:
            raise SchemaTooNew(
                f"this store was written by a newer tstore (revision {revision}); upgrade tstore",
                "pip install --upgrade taxonomy-store, then run the command again (nothing was changed)",
            )


# How to tell each revision's schema from its tables, newest first: (revision, probe). A new
# migration adds its entry here, so a store whose alembic_version was lost can be told which
# revision to stamp. Revisions that change nothing a dialect can see share the older probe.
def _has_column(table: str, column: str):
    return lambda conn, insp: table in insp.get_table_names() and column in {c["name"] for c in insp.get_columns(table)}


def _has_trigger(name: str, dialect: str):
    def probe(conn, insp) -> bool:
        if conn.dialect.name != dialect:
            return False
        sql = ("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = :n" if dialect == "sqlite"
               else "SELECT 1 FROM pg_trigger WHERE tgname = :n")
        return conn.execute(text(sql), {"n": name}).first() is not None
    return probe


_PROBES = [
    ("0007", _has_column("encoders", "vectors_revision")),
    ("0006", lambda conn, insp: "ix_embeddings_encoder_id_embedded_at" in {i["name"] for i in insp.get_indexes("embeddings")}),
    ("0005", lambda conn, insp: "crosswalk_rows" in insp.get_table_names()),
    ("0004", lambda conn, insp: _has_trigger("audit_log_no_replace", "sqlite")(conn, insp)
     or (conn.dialect.name == "postgresql" and _has_column("encoders", "adapted_from")(conn, insp))),
    ("0003", _has_column("encoders", "adapted_from")),
    ("0002", lambda conn, insp: conn.dialect.name == "sqlite" or _has_trigger("audit_log_no_truncate", "postgresql")(conn, insp)),
    ("0001", lambda conn, insp: "audit_log" in insp.get_table_names()),
]


def guess_revision(engine: Engine) -> str | None:
    """The revision the database's tables look like (None: no tstore tables)."""
    with engine.connect() as conn:
        insp = inspect(conn)
        if "prompts" not in insp.get_table_names():
            return None
        for revision, probe in _PROBES:
            if probe(conn, insp):
                return revision
    return None


def _refuse_lost_revision(engine: Engine) -> None:
    """SchemaOutdated when tstore's tables are there but no revision is recorded (alembic_version
    emptied or dropped): `db upgrade` would try to create them again and fail half-way."""
    if current_revision(engine) is not None:
        return
    guess = guess_revision(engine)
    if guess is None:
        return
    raise SchemaOutdated(
        "the database holds tstore's tables but records no schema revision (its alembic_version table was emptied or dropped)",
        f"its tables look like revision {guess}: record it with `tstore db stamp {guess}`, then `tstore db upgrade`",
    )


def check_schema(engine: Engine, *, require_head: bool = True) -> None:
    """Refuse a schema from a newer tstore; with `require_head`, also one this tstore must upgrade first."""
    refuse_unknown_revision(engine)
    if require_head:
        _refuse_lost_revision(engine)
        current, head = current_revision(engine), head_revision()
        if current != head:
            raise SchemaOutdated(
                f"the store's database is at schema {current or 'none'}, this tstore needs {head}",
                "run `tstore db upgrade`",
            )


def resolve_revision(revision: str) -> str | None:
    """A revision id (or 'base' / 'head') as an exact revision; None for base. InvalidValue if unknown."""
    if revision == "base":
        return None
    try:
        script = _scripts().get_revision(revision)
    except (CommandError, RevisionError):
        script = None
    if script is None:
        raise InvalidValue(
            f"no schema revision {revision!r}",
            f"one of: base, {', '.join(known_revisions())}, head (see `tstore db current`)",
        )
    return script.revision


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for a migration. On SQLite, foreign keys are off while it runs: a batch-mode
    table rebuild drops and re-creates a table, and with them on, that DROP cascades to every child
    row (a downgrade that only removes a column emptied embeddings and metric runs). The pragma only
    takes effect outside a transaction; the keys are checked before the commit instead."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                yield conn
                if sqlite:
                    dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if dangling:
                        raise SchemaBroken(
                            f"the migration would leave {len(dangling)} rows pointing at missing rows "
                            f"(first: table {dangling[0][0]}, row {dangling[0][1]}); nothing was changed",
                            "report this with `tstore db current`'s output",
                        )
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    refuse_unknown_revision(engine)
    _refuse_lost_revision(engine)
    with _migrating(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def stamp(engine: Engine, revision: str) -> None:
    """Record `revision` as the database's schema without running any migration (for a database
    whose alembic_version was lost; `guess_revision` says which one its tables are at)."""
    refuse_unknown_revision(engine)
    resolve_revision(revision)
    with _migrating(engine) as conn:
        command.stamp(alembic_config(conn), revision, purge=True)


def downgrade(engine: Engine, revision: str) -> None:
    refuse_unknown_revision(engine)
    resolve_revision(revision)
    with _migrating(engine) as conn:
        command.downgrade(alembic_config(conn), revision)
