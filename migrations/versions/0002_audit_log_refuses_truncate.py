"""the audit log refuses TRUNCATE as well as UPDATE and DELETE

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

PostgreSQL's row triggers of 0001 do not fire on TRUNCATE, so `TRUNCATE audit_log` emptied the
history undo replays. A statement-level trigger closes that door. SQLite has no TRUNCATE (its
DELETE without WHERE is refused by the row trigger), so there is nothing to do there.
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Reuses 0001's trigger function, which raises 'audit_log is append-only'.
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
