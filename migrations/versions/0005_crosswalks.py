"""crosswalk rows: categories of one taxonomy mapped onto another's

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-06
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'crosswalk_rows',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source_node_id', sa.Integer(), nullable=False),
        sa.Column('target_node_id', sa.Integer(), nullable=False),
        sa.Column('weight', sa.Float(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('proposed', 'accepted', 'rejected')", name=op.f('ck_crosswalk_rows_status_known')),
        sa.CheckConstraint('source_node_id <> target_node_id', name=op.f('ck_crosswalk_rows_distinct_nodes')),
        sa.ForeignKeyConstraint(['source_node_id'], ['taxonomy_nodes.id'],
                                name=op.f('fk_crosswalk_rows_source_node_id_taxonomy_nodes'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['target_node_id'], ['taxonomy_nodes.id'],
                                name=op.f('fk_crosswalk_rows_target_node_id_taxonomy_nodes'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_crosswalk_rows')),
        sa.UniqueConstraint('source_node_id', 'target_node_id', name=op.f('uq_crosswalk_rows_source_node_id_target_node_id')),
    )
    op.create_index(op.f('ix_crosswalk_rows_target_node_id'), 'crosswalk_rows', ['target_node_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_crosswalk_rows_target_node_id'), table_name='crosswalk_rows')
    op.drop_table('crosswalk_rows')
