"""encoders remember the encoder they were tuned from

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('encoders') as batch:
        batch.add_column(sa.Column('adapted_from', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('adaptation', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('encoders') as batch:
        batch.drop_column('adaptation')
        batch.drop_column('adapted_from')
