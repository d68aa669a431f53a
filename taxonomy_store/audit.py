"""The append-only audit log: every write of the facade records old → new here."""

from __future__ import annotations

import getpass
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taxonomy_store.db.models import AuditEntry, table_of


def current_actor() -> str:
    """The login name: the actor of a write when the store was opened without one ($TSTORE_ACTOR)."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def new_batch_id() -> str:
    return str(uuid.uuid4())


class AuditBatch:
    """The entries of one user action (an import, an edit, an undo) under one batch id."""

    def __init__(self, session: Session, actor: str | None = None, reason: str | None = None):
        self.session = session
        self.actor = actor or current_actor()
        self.batch_id = new_batch_id()
        self.reason = reason
        self.count = 0
        self._pending: list[dict[str, Any]] = []

    def record(
        self,
        action: str,
        entity: str,
        entity_id: int | None,
        old: dict[str, Any] | None = None,
        new: dict[str, Any] | None = None,
    ) -> None:
        self._pending.append(
            dict(
                actor=self.actor,
                batch_id=self.batch_id,
                action=action,
                entity=entity,
                entity_id=entity_id,
                old=old,
                new=new,
                reason=self.reason,
            )
        )
        self.count += 1
        if len(self._pending) >= 5000:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.session.execute(table_of(AuditEntry).insert(), self._pending)
            self._pending = []


# Audit entries that change no prompt, label, category, pair or taxonomy: registering an encoder,
# setting its baseline or calibration, reviewing a crosswalk. They do not move the data revision,
# so they make no metric run or calibration stale (a run that used a baseline checks the baseline
# itself; a crosswalk decision changes no prompt the guard or a plain metric reads).
NON_DATA_ENTITIES = ("encoder", "calibration", "metric_run", "crosswalk")


def data_revision(session: Session) -> int:
    """The store's data revision: the id of the newest audit entry about data (0 for an empty store)."""
    return session.scalar(
        select(func.coalesce(func.max(AuditEntry.id), 0)).where(AuditEntry.entity.not_in(NON_DATA_ENTITIES))
    ) or 0
