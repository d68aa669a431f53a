"""an index on embeddings (encoder_id, embedded_at): the neighbour pool's revision token in O(log n)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Every query reads a token (newest audit entry, the encoder's vector count and newest
`embedded_at`) to know whether its in-memory pool is still current. Without this index the newest
`embedded_at` of an encoder scanned every embedding row: 39 ms per query at 100,000 prompts on
SQLite, growing with the store. With it the token costs ~4 ms there (the count reads the index).
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_embeddings_encoder_id_embedded_at'), ['encoder_id', 'embedded_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_embeddings_encoder_id_embedded_at'))
