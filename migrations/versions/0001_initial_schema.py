"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


APPEND_ONLY_SQLITE = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
]
APPEND_ONLY_POSTGRES = [
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
]


def _append_only_audit_log() -> None:
    """The audit log can only grow: the database refuses UPDATE and DELETE on it."""
    dialect = op.get_bind().dialect.name
    for statement in APPEND_ONLY_SQLITE if dialect == "sqlite" else APPEND_ONLY_POSTGRES:
        op.execute(statement)


def _drop_append_only_audit_log() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('batch_id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('entity', sa.String(length=30), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=True),
    sa.Column('old', sa.JSON(), nullable=True),
    sa.Column('new', sa.JSON(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_entity_entity_id'), ['entity', 'entity_id'], unique=False)

    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('source_uri', sa.Text(), nullable=True),
    sa.Column('format', sa.String(length=50), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('prompt_count', sa.Integer(), nullable=False),
    sa.Column('pair_count', sa.Integer(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('name', name=op.f('uq_datasets_name'))
    )
    op.create_table('encoders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('model_ref', sa.Text(), nullable=False),
    sa.Column('dimension', sa.Integer(), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=True),
    sa.Column('device', sa.String(length=20), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('baseline', sa.Float(), nullable=True),
    sa.Column('baseline_provenance', sa.JSON(), nullable=True),
    sa.Column('calibration', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_encoders')),
    sa.UniqueConstraint('name', name=op.f('uq_encoders_name'))
    )
    op.create_table('taxonomies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('levels', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_taxonomies')),
    sa.UniqueConstraint('name', name=op.f('uq_taxonomies_name'))
    )
    op.create_table('metric_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('encoder_id', sa.Integer(), nullable=True),
    sa.Column('metric', sa.String(length=50), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('data_revision', sa.Integer(), nullable=False),
    sa.Column('primary_name', sa.String(length=200), nullable=True),
    sa.Column('primary_value', sa.Float(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['encoder_id'], ['encoders.id'], name=op.f('fk_metric_runs_encoder_id_encoders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_runs'))
    )
    with op.batch_alter_table('metric_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metric_runs_encoder_id_metric_created_at'), ['encoder_id', 'metric', 'created_at'], unique=False)

    op.create_table('pair_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_pair_sets_dataset_id_datasets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pair_sets')),
    sa.UniqueConstraint('name', name=op.f('uq_pair_sets_name'))
    )
    op.create_table('taxonomy_nodes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('taxonomy_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('code', sa.String(length=100), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('short_name', sa.String(length=100), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['taxonomy_nodes.id'], name=op.f('fk_taxonomy_nodes_parent_id_taxonomy_nodes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['taxonomy_id'], ['taxonomies.id'], name=op.f('fk_taxonomy_nodes_taxonomy_id_taxonomies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_taxonomy_nodes')),
    sa.UniqueConstraint('taxonomy_id', 'code', name=op.f('uq_taxonomy_nodes_taxonomy_id_code'))
    )
    with op.batch_alter_table('taxonomy_nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_taxonomy_nodes_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_taxonomy_nodes_taxonomy_id_name'), ['taxonomy_id', 'name'], unique=False)

    op.create_table('metric_values',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['metric_runs.id'], name=op.f('fk_metric_values_run_id_metric_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'name', name=op.f('pk_metric_values'))
    )
    op.create_table('prompts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('text_sha256', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=10), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=True),
    sa.Column('dataset_id', sa.Integer(), nullable=True),
    sa.Column('source_key', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.CheckConstraint("label IN ('safe', 'unsafe', 'unlabeled')", name=op.f('ck_prompts_label_known')),
    sa.ForeignKeyConstraint(['category_id'], ['taxonomy_nodes.id'], name=op.f('fk_prompts_category_id_taxonomy_nodes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_prompts_dataset_id_datasets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompts'))
    )
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prompts_category_id'), ['category_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_prompts_dataset_id_source_key'), ['dataset_id', 'source_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_prompts_label'), ['label'], unique=False)
        batch_op.create_index('uq_prompts_live_text_sha256', ['text_sha256'], unique=True, sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))

    op.create_table('embeddings',
    sa.Column('encoder_id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('text_sha256', sa.String(length=64), nullable=False),
    sa.Column('meta_sha256', sa.String(length=64), nullable=True),
    sa.Column('embedded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['encoder_id'], ['encoders.id'], name=op.f('fk_embeddings_encoder_id_encoders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_embeddings_prompt_id_prompts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('encoder_id', 'prompt_id', name=op.f('pk_embeddings'))
    )
    op.create_table('pairs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pair_set_id', sa.Integer(), nullable=False),
    sa.Column('unsafe_prompt_id', sa.Integer(), nullable=False),
    sa.Column('safe_prompt_id', sa.Integer(), nullable=False),
    sa.Column('pair_type', sa.String(length=100), nullable=True),
    sa.Column('source_key', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('proposed', 'accepted', 'rejected')", name=op.f('ck_pairs_status_known')),
    sa.CheckConstraint('unsafe_prompt_id <> safe_prompt_id', name=op.f('ck_pairs_distinct_prompts')),
    sa.ForeignKeyConstraint(['pair_set_id'], ['pair_sets.id'], name=op.f('fk_pairs_pair_set_id_pair_sets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['safe_prompt_id'], ['prompts.id'], name=op.f('fk_pairs_safe_prompt_id_prompts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['unsafe_prompt_id'], ['prompts.id'], name=op.f('fk_pairs_unsafe_prompt_id_prompts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pairs')),
    sa.UniqueConstraint('pair_set_id', 'unsafe_prompt_id', 'safe_prompt_id', name=op.f('uq_pairs_pair_set_id_unsafe_prompt_id_safe_prompt_id'))
    )
    with op.batch_alter_table('pairs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pairs_pair_set_id_pair_type'), ['pair_set_id', 'pair_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_pairs_safe_prompt_id'), ['safe_prompt_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pairs_unsafe_prompt_id'), ['unsafe_prompt_id'], unique=False)

    op.create_table('prompt_sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('source_key', sa.String(length=200), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('row_sha256', sa.String(length=64), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_prompt_sources_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_prompt_sources_prompt_id_prompts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_sources')),
    sa.UniqueConstraint('dataset_id', 'source_key', name=op.f('uq_prompt_sources_dataset_id_source_key'))
    )
    with op.batch_alter_table('prompt_sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prompt_sources_prompt_id'), ['prompt_id'], unique=False)
    _append_only_audit_log()


def downgrade() -> None:
    _drop_append_only_audit_log()
    with op.batch_alter_table('prompt_sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prompt_sources_prompt_id'))

    op.drop_table('prompt_sources')
    with op.batch_alter_table('pairs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pairs_unsafe_prompt_id'))
        batch_op.drop_index(batch_op.f('ix_pairs_safe_prompt_id'))
        batch_op.drop_index(batch_op.f('ix_pairs_pair_set_id_pair_type'))

    op.drop_table('pairs')
    op.drop_table('embeddings')
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.drop_index('uq_prompts_live_text_sha256', sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_prompts_label'))
        batch_op.drop_index(batch_op.f('ix_prompts_dataset_id_source_key'))
        batch_op.drop_index(batch_op.f('ix_prompts_category_id'))

    op.drop_table('prompts')
    op.drop_table('metric_values')
    with op.batch_alter_table('taxonomy_nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_taxonomy_nodes_taxonomy_id_name'))
        batch_op.drop_index(batch_op.f('ix_taxonomy_nodes_parent_id'))

    op.drop_table('taxonomy_nodes')
    op.drop_table('pair_sets')
    with op.batch_alter_table('metric_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metric_runs_encoder_id_metric_created_at'))

    op.drop_table('metric_runs')
    op.drop_table('taxonomies')
    op.drop_table('encoders')
    op.drop_table('datasets')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_entity_entity_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_batch_id'))

    op.drop_table('audit_log')
