"""Writing prompts and pairs out as CSV, JSON lines or Parquet (to a file or stdout).

The column sets are what `tstore import` detects as tstore's own exports ("tstore-prompts",
"tstore-pairs"), which match prompts by text: export → import into a fresh store gives the same
prompts, labels, categories and pairs; re-importing into the same store changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from taxonomy_store.backend.database import Database
from taxonomy_store.catalog import node_index
from taxonomy_store.db.models import Dataset, Pair, PairSet, Prompt, PromptSource, Taxonomy, TaxonomyNode
from taxonomy_store.errors import InvalidValue, NotFound
from taxonomy_store.paths import atomic_write
from taxonomy_store.text import inert
from taxonomy_store.vocabulary import EXPORT_FORMATS

# also_in: the prompt's other dataset rows (JSON list of [dataset, source_key]), so that an import
# restores every membership, not only the dataset the prompt came from first.
PROMPT_COLUMNS = ["id", "text", "label", "taxonomy", "category", "category_path", "dataset", "source_key", "also_in"]
PAIR_COLUMNS = ["pair_set", "kind", "pair_type", "status", "note", "unsafe_text", "safe_text", "unsafe_id", "safe_id"]


@dataclass
class ExportResult:
    what: str
    format: str
    rows: int
    path: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _write(rows: list[dict[str, Any]], columns: list[str], fmt: str, out: str | Path | IO | None) -> str:
    if fmt not in EXPORT_FORMATS:
        raise InvalidValue(f"unknown export format {fmt!r}", f"one of {', '.join(EXPORT_FORMATS)}")
    to_stdout = out is None or str(out) == "-"
    if fmt == "parquet":
        return _write_parquet(rows, columns, out, to_stdout)
    tty = to_stdout and sys.stdout.isatty()
    text = _csv_text(rows, columns) if fmt == "csv" else _jsonl_text(rows, columns, ascii_only=tty)
    if to_stdout:
        # Prompt text is untrusted: on a terminal its escape sequences (ESC, OSC, BEL, CR, bidi
        # overrides) are shown as visible escapes instead of acting. Files and pipes get it as is.
        sys.stdout.write(inert(text, keep_newlines=True) if tty else text)
        sys.stdout.flush()
        return "-"
    if out is not None and not isinstance(out, (str, Path)):
        out.write(text)
        return getattr(out, "name", "<stream>")
    # All or nothing: a failure half-way leaves an earlier file at this path as it was.
    assert out is not None  # None means stdout, written above
    with atomic_write(out, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return str(out)


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in columns})
    return buf.getvalue()


def _jsonl_text(rows: list[dict[str, Any]], columns: list[str], *, ascii_only: bool) -> str:
    # ensure_ascii on a terminal (as `emit_json` does): C1 controls and bidi overrides become \uXXXX.
    return "".join(json.dumps({k: r.get(k) for k in columns}, ensure_ascii=ascii_only) + "\n" for r in rows)


def _write_parquet(rows: list[dict[str, Any]], columns: list[str], out: str | Path | IO | None, to_stdout: bool) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.int64() if c.endswith("id") else pa.string()) for c in columns]))
    if to_stdout:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return "-"
    if hasattr(out, "write"):
        pq.write_table(table, out)
        return getattr(out, "name", "<stream>")
    buf = io.BytesIO()  # in memory first: a FIFO cannot seek, as pyarrow's writer may want to
    pq.write_table(table, buf)
    assert out is not None  # None means stdout, written above
    with atomic_write(out, "wb") as f:
        f.write(buf.getvalue())
    return str(out)


class Exports:
    def __init__(self, db: Database):
        self.db = db

    def prompt_rows(
        self, *, dataset: str | None = None, label: str | None = None, category: str | None = None, taxonomy: str | None = None
    ) -> list[dict[str, Any]]:
        with self.db.session() as s:
            nodes = node_index(s)
            q = (
                select(Prompt.id, Prompt.text, Prompt.label, Prompt.category_id, Dataset.name, Prompt.source_key)
                .join(Dataset, Dataset.id == Prompt.dataset_id, isouter=True)
                .where(Prompt.deleted_at.is_(None))
                .order_by(Prompt.id)
            )
            if label:
                q = q.where(Prompt.label == label)
            if dataset:
                ds_id = s.scalar(select(Dataset.id).where(Dataset.name == dataset))
                if ds_id is None:
                    raise NotFound(f"no dataset {dataset!r} in this store", "see `tstore prompt list --json` for dataset names")
                q = q.where(Prompt.id.in_(select(PromptSource.prompt_id).where(PromptSource.dataset_id == ds_id)))
            node_id = None
            if category:
                node_id = _find_node(s, category, taxonomy)
            memberships = _memberships(s)
            rows = []
            for pid, text, lab, cat_id, ds, key in s.execute(q):
                info = nodes.get(cat_id) if cat_id is not None else None
                if node_id is not None and (info is None or node_id not in info.id_path):
                    continue
                rows.append(
                    dict(
                        id=pid, text=text, label=lab, taxonomy=info.taxonomy if info else None,
                        category=info.code if info else None, category_path="/".join(info.path) if info else None,
                        dataset=ds, source_key=key,
                        also_in=_also_in(memberships.get(pid, []), ds, key),
                    )
                )
            return rows

    def pair_rows(self, *, pair_set: str | None = None, status: str | None = None, pair_type: str | None = None) -> list[dict[str, Any]]:
        u, sp = aliased(Prompt), aliased(Prompt)
        with self.db.session() as s:
            q = (
                select(PairSet.name, PairSet.kind, Pair.pair_type, Pair.status, Pair.note, u.text, sp.text, u.id, sp.id)
                .join(PairSet, PairSet.id == Pair.pair_set_id)
                .join(u, u.id == Pair.unsafe_prompt_id)
                .join(sp, sp.id == Pair.safe_prompt_id)
                .where(u.deleted_at.is_(None), sp.deleted_at.is_(None))
                .order_by(Pair.id)
            )
            if pair_set:
                q = q.where(PairSet.name == pair_set)
            if status:
                q = q.where(Pair.status == status)
            if pair_type:
                q = q.where(Pair.pair_type == pair_type)
            return [dict(zip(PAIR_COLUMNS, r)) for r in s.execute(q)]

    def export_prompts(self, out: str | Path | IO | None, *, format: str = "csv", **filters) -> ExportResult:
        rows = self.prompt_rows(**filters)
        return ExportResult("prompts", format, len(rows), _write(rows, PROMPT_COLUMNS, format, out))

    def export_pairs(self, out: str | Path | IO | None, *, format: str = "csv", **filters) -> ExportResult:
        rows = self.pair_rows(**filters)
        return ExportResult("pairs", format, len(rows), _write(rows, PAIR_COLUMNS, format, out))


def _memberships(session) -> dict[int, list[tuple[str, str]]]:
    """Every prompt's dataset rows, (dataset name, source key), in a stable order."""
    q = (select(PromptSource.prompt_id, Dataset.name, PromptSource.source_key)
         .join(Dataset, Dataset.id == PromptSource.dataset_id).order_by(PromptSource.id))
    out: dict[int, list[tuple[str, str]]] = {}
    for pid, name, key in session.execute(q):
        out.setdefault(pid, []).append((name, key))
    return out


def _also_in(rows: list[tuple[str, str]], dataset: str | None, key: str | None) -> str | None:
    others = [[d, k] for d, k in rows if (d, k) != (dataset, key)]
    return json.dumps(others, ensure_ascii=False) if others else None


def _find_node(session, category: str, taxonomy: str | None) -> int:
    """A node by code or exact name, in the given taxonomy or the only one that has it."""
    q = select(TaxonomyNode.id, Taxonomy.name).join(Taxonomy, Taxonomy.id == TaxonomyNode.taxonomy_id)
    if taxonomy:
        q = q.where(Taxonomy.name == taxonomy)
    hits = session.execute(q.where(TaxonomyNode.code == category)).all() or session.execute(q.where(TaxonomyNode.name == category)).all()
    if not hits:
        raise NotFound(f"no category {category!r}" + (f" in taxonomy {taxonomy!r}" if taxonomy else ""), "see `tstore taxonomy show NAME`")
    if len(hits) > 1:
        raise InvalidValue(f"category {category!r} is ambiguous ({', '.join(sorted({t for _, t in hits}))})", "add --taxonomy")
    return hits[0][0]
