"""Read-only views of the store's prompts that several parts share (index metadata, metrics, query).

Plain functions over a session; nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from taxonomy_store.db.models import Dataset, Prompt, Taxonomy, TaxonomyNode


@dataclass(frozen=True)
class NodeInfo:
    id: int
    taxonomy: str
    code: str
    name: str
    short_name: str | None
    depth: int
    # Codes from the root down to this node, this node last.
    path: tuple[str, ...]
    # Node ids from the root down to this node, this node last.
    id_path: tuple[int, ...]

    def at_depth(self, depth: int) -> int | None:
        """The id of this node's ancestor (or itself) at `depth`, None if the node is shallower."""
        return self.id_path[depth] if depth < len(self.id_path) else None


@dataclass(frozen=True)
class PromptRow:
    id: int
    text: str
    text_sha256: str
    label: str
    category_id: int | None
    dataset: str | None
    revision: int


def node_index(session: Session) -> dict[int, NodeInfo]:
    """Every taxonomy node with its ancestor path, by id."""
    rows = session.execute(
        select(
            TaxonomyNode.id, TaxonomyNode.parent_id, TaxonomyNode.code, TaxonomyNode.name,
            TaxonomyNode.short_name, TaxonomyNode.depth, Taxonomy.name,
        ).join(Taxonomy, Taxonomy.id == TaxonomyNode.taxonomy_id)
    ).all()
    raw = {r[0]: r for r in rows}
    out: dict[int, NodeInfo] = {}

    def build(node_id: int) -> NodeInfo:
        if node_id in out:
            return out[node_id]
        nid, parent, code, name, short, depth, tax = raw[node_id]
        if parent is not None and parent in raw:
            p = build(parent)
            path, id_path = p.path + (code,), p.id_path + (nid,)
        else:
            path, id_path = (code,), (nid,)
        info = NodeInfo(nid, tax, code, name, short, depth, path, id_path)
        out[node_id] = info
        return info

    for node_id in raw:
        build(node_id)
    return out


def live_prompts(session: Session, ids: list[int] | None = None) -> list[PromptRow]:
    """Live (not soft-deleted) prompts, ordered by id; optionally only those ids."""
    q = (
        select(Prompt.id, Prompt.text, Prompt.text_sha256, Prompt.label, Prompt.category_id, Dataset.name, Prompt.revision)
        .join(Dataset, Dataset.id == Prompt.dataset_id, isouter=True)
        .where(Prompt.deleted_at.is_(None))
        .order_by(Prompt.id)
    )
    if ids is not None:
        q = q.where(Prompt.id.in_(ids))
    return [PromptRow(*r) for r in session.execute(q).all()]
