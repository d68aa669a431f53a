"""Sessions and writes: the only way parts reach SQL.

Reads go through `db.session()` (rolled back at the end); writes through
`with db.write(reason) as (session, audit):` — one transaction plus an audit batch, all of it
commits or none of it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from taxonomy_store.audit import AuditBatch, data_revision
from taxonomy_store.db.engine import redact


class Database:
    def __init__(self, engine: Engine, *, actor: str | None = None):
        # actor: who the audit log names for every write (None: the login name)
        self.engine = engine
        self.actor = actor
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return redact(self.engine.url.render_as_string(hide_password=False))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-only unit of work (rolled back at the end)."""
        with self._sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self, reason: str | None = None) -> Iterator[tuple[Session, AuditBatch]]:
        """One transaction with its audit batch: all of it commits, or none of it."""
        with self._sessions() as session:
            audit = AuditBatch(session, actor=self.actor, reason=reason)
            try:
                yield session, audit
                audit.flush()
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def connect(self) -> Connection:
        """A raw connection, for readers that keep one open per thread."""
        return self.engine.connect()

    def data_revision(self) -> int:
        with self.session() as s:
            return data_revision(s)

    def dispose(self) -> None:
        self.engine.dispose()
