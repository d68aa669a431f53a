"""Taxonomies: load definitions into SQL, list them, read their trees with prompt counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taxonomy_store.backend.database import Database
from taxonomy_store.db.models import Prompt, Taxonomy, TaxonomyNode
from taxonomy_store.errors import NotFound, UnknownTaxonomy
from taxonomy_store.importers.taxonomy_files import TaxonomyDef, locate, read_taxonomy_file


@dataclass
class LoadResult:
    name: str
    created: bool
    nodes_added: int
    nodes_updated: int
    nodes_unchanged: int
    nodes_kept: int  # in the store but no longer in the file: kept, since prompts may point at them


@dataclass
class TreeNode:
    id: int
    code: str
    name: str
    short_name: str | None
    description: str | None
    depth: int
    level: str | None
    direct_prompts: int = 0
    prompts: int = 0  # this node and everything below it
    children: list["TreeNode"] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "short_name": self.short_name,
            "level": self.level,
            "prompts": self.prompts,
            "direct_prompts": self.direct_prompts,
            "children": [c.to_dict() for c in self.children],
        }

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass
class TaxonomyTree:
    name: str
    title: str
    levels: list[str]
    roots: list[TreeNode]

    def walk(self):
        for r in self.roots:
            yield from r.walk()

    def count_by_depth(self) -> list[int]:
        counts: dict[int, int] = {}
        for n in self.walk():
            counts[n.depth] = counts.get(n.depth, 0) + 1
        return [counts[d] for d in sorted(counts)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "levels": self.levels,
            "prompts": sum(r.prompts for r in self.roots),
            "children": [r.to_dict() for r in self.roots],
        }


def get_taxonomy(session: Session, name: str) -> Taxonomy:
    tax = session.scalar(select(Taxonomy).where(Taxonomy.name == name))
    if tax is None:
        known = session.scalars(select(Taxonomy.name).order_by(Taxonomy.name)).all()
        raise UnknownTaxonomy(
            f"no taxonomy {name!r} in this store",
            f"loaded: {', '.join(known)}" if known else f"load one with `tstore taxonomy load {name}`",
        )
    return tax


def level_depth(taxonomy: Taxonomy, level: str | int) -> int:
    """`harm_type` → 1 for Do-Not-Answer; integers pass through."""
    return depth_of_level(taxonomy.name, taxonomy.levels, level)


def depth_of_level(taxonomy: str, levels: list[str] | None, level: str | int) -> int:
    """The depth a level name (or a depth given as a number) stands for in a taxonomy with these levels."""
    levels = list(levels or [])
    if isinstance(level, int) or str(level).isdigit():
        return int(level)
    if level in levels:
        return levels.index(level)
    raise NotFound(f"taxonomy {taxonomy!r} has no level {level!r}", f"levels: {', '.join(levels) or 'none named'}")


def _put(session: Session, audit, entity: str, row, make, values: dict[str, Any], key: dict[str, Any]):
    """Insert the row `make()` builds when `row` is None, else bring `row` to `values`; audited.
    Returns (row, "insert" | "update" | None when nothing changed)."""
    if row is None:
        row = make()
        session.add(row)
        session.flush()
        audit.record("insert", entity, row.id, None, {**key, **values})
        return row, "insert"
    old = {k: getattr(row, k) for k in values}
    if old == values:
        return row, None
    for k, v in values.items():
        setattr(row, k, v)
    audit.record("update", entity, row.id, old, values)
    return row, "update"


class Taxonomies:
    def __init__(self, db: Database):
        self.db = db

    def load(self, name_or_file: str) -> LoadResult:
        definition = read_taxonomy_file(locate(name_or_file))
        with self.db.write(reason=f"taxonomy load {name_or_file}") as (session, audit):
            return self.upsert(session, audit, definition)

    def upsert(self, session: Session, audit, definition: TaxonomyDef) -> LoadResult:
        """Load a definition inside the caller's transaction (an import that needs a built-in taxonomy)."""
        tax = session.scalar(select(Taxonomy).where(Taxonomy.name == definition.name))
        created = tax is None
        header = dict(title=definition.title, description=definition.description, source=definition.source, levels=definition.levels)
        tax, _ = _put(session, audit, "taxonomy", tax, lambda: Taxonomy(name=definition.name, **header), header, {"name": definition.name})
        existing = {n.code: n for n in session.scalars(select(TaxonomyNode).where(TaxonomyNode.taxonomy_id == tax.id))}
        counts = {"insert": 0, "update": 0, None: 0}
        seen: set[str] = set()

        def visit(nodes, parent: TaxonomyNode | None, depth: int) -> None:
            for position, nd in enumerate(nodes):
                seen.add(nd.code)
                values = dict(
                    name=nd.name,
                    short_name=nd.short_name,
                    description=nd.description,
                    parent_id=parent.id if parent else None,
                    depth=depth,
                    position=position,
                    attributes=nd.extra,
                )
                node, action = _put(session, audit, "taxonomy_node", existing.get(nd.code),
                                    lambda: TaxonomyNode(taxonomy_id=tax.id, code=nd.code, **values), values, {"code": nd.code})
                counts[action] += 1
                visit(nd.children, node, depth + 1)

        visit(definition.nodes, None, 0)
        return LoadResult(definition.name, created, counts["insert"], counts["update"], counts[None], len(set(existing) - seen))

    def list(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.execute(
                select(Taxonomy.name, Taxonomy.title, Taxonomy.levels, func.count(TaxonomyNode.id))
                .join(TaxonomyNode, TaxonomyNode.taxonomy_id == Taxonomy.id, isouter=True)
                .group_by(Taxonomy.id)
                .order_by(Taxonomy.name)
            ).all()
            return [dict(name=n, title=t, levels=lv, nodes=c) for n, t, lv, c in rows]

    def tree(self, name: str) -> TaxonomyTree:
        with self.db.session() as s:
            tax = get_taxonomy(s, name)
            nodes = s.scalars(
                select(TaxonomyNode).where(TaxonomyNode.taxonomy_id == tax.id).order_by(TaxonomyNode.depth, TaxonomyNode.position)
            ).all()
            counts = dict(
                s.execute(
                    select(Prompt.category_id, func.count(Prompt.id))
                    .join(TaxonomyNode, TaxonomyNode.id == Prompt.category_id)
                    .where(TaxonomyNode.taxonomy_id == tax.id, Prompt.deleted_at.is_(None))
                    .group_by(Prompt.category_id)
                ).all()
            )
            by_id: dict[int, TreeNode] = {}
            roots: list[TreeNode] = []
            for n in nodes:
                tn = TreeNode(
                    n.id, n.code, n.name, n.short_name, n.description, n.depth,
                    tax.levels[n.depth] if n.depth < len(tax.levels) else None,
                    direct_prompts=counts.get(n.id, 0),
                )
                by_id[n.id] = tn
                (by_id[n.parent_id].children if n.parent_id in by_id else roots).append(tn)

            def total(t: TreeNode) -> int:
                t.prompts = t.direct_prompts + sum(total(c) for c in t.children)
                return t.prompts

            for r in roots:
                total(r)
            return TaxonomyTree(tax.name, tax.title, list(tax.levels), roots)
