"""the audit log refuses REPLACE INTO / INSERT OR REPLACE of an existing row on SQLite

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

SQLite's REPLACE conflict resolution deletes the old row without firing DELETE triggers (unless
recursive_triggers is on), so `REPLACE INTO audit_log` with an existing id rewrote history that
0001's UPDATE/DELETE triggers protect. A BEFORE INSERT trigger refuses an insert whose id is
already taken. PostgreSQL has no REPLACE: `INSERT ... ON CONFLICT DO UPDATE` fires 0001's UPDATE
trigger, so there is nothing to do there.
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
            "WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_replace")
