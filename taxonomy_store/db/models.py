"""Typed SQLAlchemy 2 models: the source of truth.

The MetaData carries a naming convention so constraint names are the same on SQLite and
PostgreSQL, which keeps Alembic migrations portable.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from taxonomy_store.vocabulary import UNLABELED

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def table_of(model: type["Base"]) -> Table:
    """The model's Core table, for bulk inserts (`__table__` reads as a FromClause to type checkers)."""
    return model.__table__  # type: ignore[return-value]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Taxonomy(Base):
    __tablename__ = "taxonomies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[Optional[str]] = mapped_column(Text)
    source: Mapped[Optional[str]] = mapped_column(Text)
    # Names of the tree's levels from the root down, e.g. ["risk_area", "harm_type", "specific_harm"].
    levels: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    nodes: Mapped[list["TaxonomyNode"]] = relationship(back_populates="taxonomy", cascade="all, delete-orphan")


class TaxonomyNode(Base):
    __tablename__ = "taxonomy_nodes"
    __table_args__ = (
        UniqueConstraint("taxonomy_id", "code"),
        Index(None, "taxonomy_id", "name"),
        Index(None, "parent_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    taxonomy_id: Mapped[int] = mapped_column(ForeignKey("taxonomies.id", ondelete="CASCADE"))
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("taxonomy_nodes.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(Text)
    short_name: Mapped[Optional[str]] = mapped_column(String(100))
    description: Mapped[Optional[str]] = mapped_column(Text)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Extra keys from the definition file (e.g. the XSTest types a pair type stands for).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    taxonomy: Mapped[Taxonomy] = relationship(back_populates="nodes")
    parent: Mapped[Optional["TaxonomyNode"]] = relationship(remote_side="TaxonomyNode.id")


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source_uri: Mapped[Optional[str]] = mapped_column(Text)
    format: Mapped[Optional[str]] = mapped_column(String(50))
    sha256: Mapped[Optional[str]] = mapped_column(String(64))
    imported_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    prompt_count: Mapped[int] = mapped_column(Integer, default=0)
    pair_count: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Prompt(Base):
    """One prompt text. The same text met in several datasets is one prompt with several sources."""

    __tablename__ = "prompts"
    __table_args__ = (
        CheckConstraint("label IN ('safe', 'unsafe', 'unlabeled')", name="label_known"),
        # One live prompt per normalised text; soft-deleted rows keep their history.
        Index(
            "uq_prompts_live_text_sha256",
            "text_sha256",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(None, "category_id"),
        Index(None, "label"),
        # The (dataset, source key) uniqueness lives on prompt_sources, the import key.
        Index(None, "dataset_id", "source_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(10), default=UNLABELED)
    category_id: Mapped[Optional[int]] = mapped_column(ForeignKey("taxonomy_nodes.id", ondelete="SET NULL"))
    # Where the prompt was first seen; every occurrence is in prompt_sources.
    dataset_id: Mapped[Optional[int]] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    source_key: Mapped[Optional[str]] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    revision: Mapped[int] = mapped_column(Integer, default=1)

    category: Mapped[Optional[TaxonomyNode]] = relationship()
    dataset: Mapped[Optional[Dataset]] = relationship()


class PromptSource(Base):
    """A row of a dataset file that maps to a prompt (the import's idempotency key)."""

    __tablename__ = "prompt_sources"
    __table_args__ = (UniqueConstraint("dataset_id", "source_key"), Index(None, "prompt_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    source_key: Mapped[str] = mapped_column(String(200))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    # The row as the file gave it (label, category, extra columns), to detect changes on re-import.
    row_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PairSet(Base):
    __tablename__ = "pair_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # "challenging" (one safe twin per unsafe prompt) or "contrast" (several safe variants).
    kind: Mapped[str] = mapped_column(String(20), default="challenging")
    dataset_id: Mapped[Optional[int]] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    description: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Pair(Base):
    __tablename__ = "pairs"
    __table_args__ = (
        CheckConstraint("unsafe_prompt_id <> safe_prompt_id", name="distinct_prompts"),
        CheckConstraint("status IN ('proposed', 'accepted', 'rejected')", name="status_known"),
        UniqueConstraint("pair_set_id", "unsafe_prompt_id", "safe_prompt_id"),
        Index(None, "unsafe_prompt_id"),
        Index(None, "safe_prompt_id"),
        Index(None, "pair_set_id", "pair_type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_set_id: Mapped[int] = mapped_column(ForeignKey("pair_sets.id", ondelete="CASCADE"))
    unsafe_prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    safe_prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    pair_type: Mapped[Optional[str]] = mapped_column(String(100))
    source_key: Mapped[Optional[str]] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="accepted")
    note: Mapped[Optional[str]] = mapped_column(Text)
    decided_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    pair_set: Mapped[PairSet] = relationship()
    unsafe_prompt: Mapped[Prompt] = relationship(foreign_keys=[unsafe_prompt_id])
    safe_prompt: Mapped[Prompt] = relationship(foreign_keys=[safe_prompt_id])


class Encoder(Base):
    __tablename__ = "encoders"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    model_ref: Mapped[str] = mapped_column(Text)
    dimension: Mapped[Optional[int]] = mapped_column(Integer)
    fingerprint: Mapped[Optional[str]] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(20), default="cpu")
    batch_size: Mapped[int] = mapped_column(Integer, default=64)
    baseline: Mapped[Optional[float]] = mapped_column(Float)
    baseline_provenance: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # Threshold chosen by `tstore calibrate`, with its precision/recall/FPR and data revision.
    calibration: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # `tstore adapt`: the encoder this one was tuned from (by name, kept when that one is
    # removed) and how (objective, data sizes, held-out split, FROM/NEW figures).
    adapted_from: Mapped[Optional[str]] = mapped_column(String(100))
    adaptation: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Bumped in the same transaction as every write of the encoder's embedding bookkeeping: the
    # neighbour pool's token reads it on every query, where counting the rows grew with the store
    # (4 ms at 100,000 vectors, ~40 ms at a million; migration 0007).
    vectors_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Embedding(Base):
    """Bookkeeping: which text (by hash) and metadata an encoder's collection holds for a prompt."""

    __tablename__ = "embeddings"
    # an encoder's newest vectors first (migration 0006; the pool token read it until 0007)
    __table_args__ = (Index(None, "encoder_id", "embedded_at"),)

    encoder_id: Mapped[int] = mapped_column(ForeignKey("encoders.id", ondelete="CASCADE"), primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True)
    text_sha256: Mapped[str] = mapped_column(String(64))
    meta_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    embedded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MetricRun(Base):
    __tablename__ = "metric_runs"
    __table_args__ = (Index(None, "encoder_id", "metric", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    encoder_id: Mapped[Optional[int]] = mapped_column(ForeignKey("encoders.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The store's data revision (highest audit-log id) the run saw.
    data_revision: Mapped[int] = mapped_column(Integer, default=0)
    primary_name: Mapped[Optional[str]] = mapped_column(String(200))
    primary_value: Mapped[Optional[float]] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    duration_s: Mapped[Optional[float]] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    values: Mapped[list["MetricValue"]] = relationship(back_populates="run", cascade="all, delete-orphan")


class MetricValue(Base):
    __tablename__ = "metric_values"

    run_id: Mapped[int] = mapped_column(ForeignKey("metric_runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[Optional[float]] = mapped_column(Float)

    run: Mapped[MetricRun] = relationship(back_populates="values")


class AuditEntry(Base):
    """Append-only log of every edit: enough to undo it (old → new per field)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "entity", "entity_id"), Index(None, "batch_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    # One user action (an import, an edit, an undo) shares a batch id.
    batch_id: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(20))  # insert | update | delete | undo
    entity: Mapped[str] = mapped_column(String(30))  # prompt | pair | taxonomy | dataset | encoder | ...
    entity_id: Mapped[Optional[int]] = mapped_column(Integer)
    old: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    new: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    reason: Mapped[Optional[str]] = mapped_column(Text)


class CrosswalkRow(Base):
    """One mapping of a category of one taxonomy onto a category of another (`tstore crosswalk`).

    Proposed rows come from the neighbours of the source category's prompts; a curator accepts
    or rejects them. Accepted rows let query votes and CP count a source-labeled prompt under its
    target category. Every change is audited (entity "crosswalk") and undoable."""

    __tablename__ = "crosswalk_rows"
    __table_args__ = (
        CheckConstraint("status IN ('proposed', 'accepted', 'rejected')", name="status_known"),
        CheckConstraint("source_node_id <> target_node_id", name="distinct_nodes"),
        UniqueConstraint("source_node_id", "target_node_id"),
        Index(None, "target_node_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_node_id: Mapped[int] = mapped_column(ForeignKey("taxonomy_nodes.id", ondelete="CASCADE"))
    target_node_id: Mapped[int] = mapped_column(ForeignKey("taxonomy_nodes.id", ondelete="CASCADE"))
    # The proposal's vote share (or the weight a reviewed file gave): how much of the source maps here.
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    status: Mapped[str] = mapped_column(String(10), default="proposed")
    note: Mapped[Optional[str]] = mapped_column(Text)
    decided_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
