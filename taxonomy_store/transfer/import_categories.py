"""Category references of an import's rows (a node code, an exact node name, or a path of names)
resolved to taxonomy node ids, inside the import's transaction.

A built-in taxonomy that the store lacks is loaded with the import; with `create`, unknown
categories are added to the named taxonomy. Every problem names the row and the column.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from taxonomy_store.db.models import Taxonomy, TaxonomyNode
from taxonomy_store.errors import InputFileError
from taxonomy_store.importers import PromptRecord

if TYPE_CHECKING:
    from taxonomy_store.taxonomy.trees import Taxonomies


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")[:90] or "category"


class CategoryResolver:
    """Resolves category references (code, exact name, or a path of names) to node ids."""

    def __init__(self, session, audit, taxonomies: "Taxonomies", create: bool, path: Path):
        self.session, self.audit, self.taxonomies = session, audit, taxonomies
        self.loaded: list[str] = []  # built-in taxonomies this import loaded
        self.created = 0  # categories this import created (--create-categories)
        self.create, self.path = create, path
        self.known: dict[str, dict[str, Any]] = {}  # taxonomy name -> its nodes, by code and by name
        self.cache: dict[tuple, tuple[int, str | None, str]] = {}

    def taxonomy(self, name: str, *, row: int | None = None, column: str | None = None) -> dict[str, Any]:
        if name in self.known:
            return self.known[name]
        tax = self.session.scalar(select(Taxonomy).where(Taxonomy.name == name))
        if tax is None:
            from taxonomy_store.importers.taxonomy_files import builtin_names, locate, read_taxonomy_file

            if name in builtin_names():
                self.taxonomies.upsert(self.session, self.audit, read_taxonomy_file(locate(name)))
                self.loaded.append(name)
                tax = self.session.scalar(select(Taxonomy).where(Taxonomy.name == name))
            elif self.create:
                tax = Taxonomy(name=name, title=name, levels=[])
                self.session.add(tax)
                self.session.flush()
                self.audit.record("insert", "taxonomy", tax.id, None, {"name": name, "title": name})
            else:
                known = self.session.scalars(select(Taxonomy.name).order_by(Taxonomy.name)).all()
                raise InputFileError(
                    self.path, f"unknown taxonomy {name!r}", row=row, column=column,
                    hint=f"loaded: {', '.join(known) or 'none'}; load one with `tstore taxonomy load`, or add --create-categories",
                )
        nodes = self.session.execute(
            select(TaxonomyNode.id, TaxonomyNode.code, TaxonomyNode.name, TaxonomyNode.parent_id).where(
                TaxonomyNode.taxonomy_id == tax.id
            )
        ).all()
        info = {"id": tax.id, "name": name, "by_code": {}, "by_name": {}, "by_parent_name": {}}
        for nid, code, nname, parent in nodes:
            info["by_code"][code] = nid
            info["by_name"].setdefault(nname, []).append(nid)
            info["by_parent_name"][(parent, nname)] = nid
        info["codes"] = {nid: code for code, nid in info["by_code"].items()}
        self.known[name] = info
        return info

    def _builtin_hits(self, ref: str) -> list[str]:
        from taxonomy_store.importers.taxonomy_files import builtin_names, locate, read_taxonomy_file

        if not hasattr(self, "_builtins"):
            self._builtins = {}
            for name in builtin_names():
                if name in self.known:
                    continue
                nodes = [n for n, _ in read_taxonomy_file(locate(name)).walk()]
                names: dict[str, int] = {}
                for n in nodes:
                    names[n.name] = names.get(n.name, 0) + 1
                self._builtins[name] = ({n.code for n in nodes}, {k for k, v in names.items() if v == 1})
        return [name for name, (codes, names) in self._builtins.items() if ref in codes or ref in names]

    def _all_taxonomy_names(self) -> list[str]:
        return list(self.session.scalars(select(Taxonomy.name).order_by(Taxonomy.name)))

    def resolve(self, rec: PromptRecord, taxonomy: str | None) -> int | None:
        ref = rec.category
        if ref is None or ref == "":
            return None
        tax_name = rec.taxonomy or taxonomy
        key = (tax_name, ref)
        if key in self.cache:
            return self.cache[key][0]
        if isinstance(ref, tuple):
            if tax_name is None:
                raise InputFileError(self.path, "a category path names no taxonomy", row=rec.row, column=rec.category_column,
                                     hint="give the taxonomy with --taxonomy")
            t = self.taxonomy(tax_name, row=rec.row, column=rec.category_column)
            parent = None
            for depth, part in enumerate(ref):
                nid = t["by_parent_name"].get((parent, part))
                if nid is None:
                    where = f" under {ref[depth - 1]!r}" if depth else " at the top level"
                    raise InputFileError(
                        self.path, f"no category named {part!r}{where} in taxonomy {tax_name!r}", row=rec.row,
                        column=rec.category_column, hint="names must match the taxonomy's node names exactly",
                    )
                parent = nid
            assert parent is not None  # a path has at least one part (checked by the parser)
            self.cache[key] = (parent, tax_name, t["codes"][parent])
            return parent
        if tax_name is None:
            hits = []
            for name in self._all_taxonomy_names():
                t = self.taxonomy(name)
                if ref in t["by_code"] or len(t["by_name"].get(ref, [])) == 1:
                    hits.append(name)
            if not hits:
                hits = self._builtin_hits(ref)  # a built-in taxonomy not loaded yet: load it with this import
            if len(hits) > 1:
                raise InputFileError(
                    self.path, f"category {ref!r} exists in several taxonomies ({', '.join(hits)})", row=rec.row,
                    column=rec.category_column, hint="choose one with --taxonomy",
                )
            if not hits:
                raise InputFileError(
                    self.path, f"unknown category {ref!r} (no taxonomy in the store has it)", row=rec.row,
                    column=rec.category_column,
                    hint="load its taxonomy, or give --taxonomy NAME --create-categories to add it",
                )
            tax_name = hits[0]
        t = self.taxonomy(tax_name, row=rec.row, column=rec.category_column)
        nid = t["by_code"].get(ref)
        if nid is None:
            named = t["by_name"].get(ref, [])
            if len(named) > 1:
                raise InputFileError(
                    self.path, f"category name {ref!r} matches {len(named)} nodes of {tax_name!r}", row=rec.row,
                    column=rec.category_column, hint="use the node's code instead",
                )
            nid = named[0] if named else None
        if nid is None:
            if not self.create:
                raise InputFileError(
                    self.path, f"unknown category {ref!r} in taxonomy {tax_name!r}", row=rec.row, column=rec.category_column,
                    hint="use a node code or exact node name (`tstore taxonomy show`), or add --create-categories",
                )
            nid = self._create(t, ref)
        self.cache[key] = (nid, tax_name, t["codes"][nid])
        return nid

    def _create(self, t: dict[str, Any], value: str) -> int:
        code, n = _slug(value), 2
        while code in t["by_code"]:
            code, n = f"{_slug(value)}_{n}", n + 1
        position = len([1 for (p, _), _ in t["by_parent_name"].items() if p is None])
        values = dict(taxonomy_id=t["id"], parent_id=None, code=code, name=value, depth=0, position=position, attributes={})
        nid = self.session.execute(insert(TaxonomyNode).returning(TaxonomyNode.id), [values]).scalar_one()
        self.audit.record("insert", "taxonomy_node", nid, None, {k: v for k, v in values.items() if k != "taxonomy_id"})
        t["by_code"][code] = nid
        t["by_name"].setdefault(value, []).append(nid)
        t["by_parent_name"][(None, value)] = nid
        t["codes"][nid] = code
        self.created += 1
        return nid
