"""encoders.vectors_revision: bumped with every write of an encoder's embedding bookkeeping

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Every query reads a token to know whether its in-memory neighbour pool is still current. It
counted the encoder's embedding rows, which costs a scan of its index: 4 ms per query at 100,000
vectors on SQLite and about ten times that at a million, against a 50 ms budget for the whole
query. The counter is read in O(1); every bookkeeping write (embed, verify --repair, a drop of
stale rows) bumps it in its own transaction.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('encoders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vectors_revision', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('encoders', schema=None) as batch_op:
        batch_op.drop_column('vectors_revision')
