"""`store.crosswalks`: crosswalk proposals, the stored mapping rows, their review, files and undo.

Rows live in `crosswalk_rows` (source node, target node, weight, status, note). Every change is
one transaction with an audit batch whose reason starts "crosswalk: "; `undo` writes a batch's
old values back, like curation's undo, and refuses while a later crosswalk batch changed the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
import builtins
from typing import Any, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import aliased

from taxonomy_store.backend.database import Database
from taxonomy_store.crosswalks import files
from taxonomy_store.crosswalks.proposals import CrosswalkReport, propose
from taxonomy_store.db.models import AuditEntry, CrosswalkRow, Taxonomy, TaxonomyNode, utcnow
from taxonomy_store.errors import InputFileError, InvalidValue, NotFound, UndoConflict
from taxonomy_store.metrics.crosswalk import NO_COUNTERPART
from taxonomy_store.vocabulary import PAIR_STATUSES

REASON = "crosswalk: "
STATUSES = PAIR_STATUSES  # proposed / accepted / rejected
_FIELDS = ("weight", "status", "note", "decided_at")


@dataclass
class CrosswalkRowView:
    id: int
    source_taxonomy: str
    source: str
    target_taxonomy: str
    target: str
    weight: float
    status: str
    note: str | None
    batch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _from_json(k: str, v: Any) -> Any:
    return datetime.fromisoformat(v) if k == "decided_at" and isinstance(v, str) else v


def parse_decision(value: str) -> tuple[str, str | None]:
    """'SRC' or 'SRC=TGT' -> (source code, target code or None)."""
    src, _, tgt = value.partition("=")
    if not src.strip() or (_ and not tgt.strip()):
        raise InvalidValue(f"cannot read {value!r} as SOURCE_CATEGORY or SOURCE_CATEGORY=TARGET_CATEGORY")
    return src.strip(), tgt.strip() or None


class Crosswalks:
    def __init__(self, db: Database, encoders, neighbours):
        # encoders: the registry (the default encoder's name); neighbours: the exact neighbour service.
        self.db = db
        self._encoders = encoders
        self._neighbours = neighbours

    # -- proposals -------------------------------------------------------------------------
    def propose(self, source: str, target: str, *, level: str | None = None, source_level: str | None = None,
                encoder: str | None = None, k: int = 10) -> CrosswalkReport:
        """Proposals for every SOURCE category, with the status of any stored row beside each target."""
        pool = self._neighbours.pool(encoder or self._encoders.default_name())
        report = propose(pool, self._neighbours.nearest, source, target, source_level=source_level, target_level=level, k=k)
        stored = {(r.source, r.target): r.status for r in self.list(source=source, target=target)}
        for p in report.proposals:
            p.status = {t: s for (src, t), s in stored.items() if src == p.source}
        return report

    def decide(self, report: CrosswalkReport, *, accept: Sequence[str] = (), reject: Sequence[str] = (), save: bool = False,
               note: str | None = None) -> list[CrosswalkRowView]:
        """Accept / reject proposals ('SRC' = what the proposal names, or 'SRC=TGT'), and with `save` store the
        remaining proposals as proposed rows: one audited transaction."""
        by_source = {p.source: p for p in report.proposals}
        wanted: dict[tuple[str, str], tuple[str, float]] = {}
        if save:
            for each in report.proposals:
                for t in each.targets:
                    wanted[(each.source, t)] = ("proposed", _share(each, t))
        for status, values in (("accepted", accept), ("rejected", reject)):
            for value in values:
                src, tgt = parse_decision(value)
                p = by_source.get(src)
                if tgt is None:
                    if p is None or not p.targets:
                        reading = p.reading if p else "no prompts"
                        raise InvalidValue(f"{src!r} has no proposed target ({reading})", f"name one: --{status[:6]} {src}=TARGET_CATEGORY")
                    for t in p.targets:
                        wanted[(src, t)] = (status, _share(p, t))
                else:
                    wanted[(src, tgt)] = (status, _share(p, tgt) if p else 1.0)
        if not wanted:
            return []
        what = ", ".join(f"{s} {src}->{t}" for (src, t), (s, _w) in wanted.items())
        with self.db.write(reason=f"{REASON}{report.source} -> {report.target}: {what}"[:500]) as (s, audit):
            ids = [self._upsert(s, audit, report.source, src, report.target, t, w, st, note) for (src, t), (st, w) in wanted.items()]
            batch = audit.batch_id if audit.count else None
        views = self.list(ids=ids)
        for v in views:
            v.batch = batch
        return views

    # -- rows --------------------------------------------------------------------------------
    def _node(self, s, taxonomy: str, code: str) -> int:
        nid = s.scalar(
            select(TaxonomyNode.id).join(Taxonomy, Taxonomy.id == TaxonomyNode.taxonomy_id)
            .where(Taxonomy.name == taxonomy, TaxonomyNode.code == code)
        )
        if nid is None:
            raise NotFound(f"no category {code!r} in taxonomy {taxonomy!r}", f"see `tstore taxonomy show {taxonomy}`")
        return nid

    def _upsert(self, s, audit, source_tax, source, target_tax, target, weight, status, note) -> int:
        if status not in STATUSES:
            raise InvalidValue(f"unknown crosswalk status {status!r}", f"one of {', '.join(STATUSES)}")
        src, tgt = self._node(s, source_tax, source), self._node(s, target_tax, target)
        row = s.scalar(select(CrosswalkRow).where(CrosswalkRow.source_node_id == src, CrosswalkRow.target_node_id == tgt))
        values = {"weight": float(weight), "status": status}
        if note is not None:
            values["note"] = note
        if row is None:
            values.setdefault("note", None)
            row = CrosswalkRow(source_node_id=src, target_node_id=tgt, created_at=utcnow(),
                               decided_at=None if status == "proposed" else utcnow(), **values)
            s.add(row)
            s.flush()
            audit.record("insert", "crosswalk", row.id, None, dict(source_node_id=src, target_node_id=tgt, **values))
            return row.id
        if status == row.status and all(getattr(row, k) == v for k, v in values.items()):
            return row.id
        if status != row.status:
            values["decided_at"] = None if status == "proposed" else utcnow()
        old = {k: _jsonable(getattr(row, k)) for k in values}
        for k, v in values.items():
            setattr(row, k, v)
        s.flush()
        audit.record("update", "crosswalk", row.id, old, {k: _jsonable(v) for k, v in values.items()})
        return row.id

    def list(self, *, source: str | None = None, target: str | None = None, status: str | None = None,
             ids: list[int] | None = None) -> list[CrosswalkRowView]:
        """Stored rows, by source taxonomy / target taxonomy / status."""
        sn, tn, st, tt = aliased(TaxonomyNode), aliased(TaxonomyNode), aliased(Taxonomy), aliased(Taxonomy)
        q = (
            select(CrosswalkRow.id, st.name, sn.code, tt.name, tn.code, CrosswalkRow.weight, CrosswalkRow.status, CrosswalkRow.note)
            .join(sn, sn.id == CrosswalkRow.source_node_id).join(st, st.id == sn.taxonomy_id)
            .join(tn, tn.id == CrosswalkRow.target_node_id).join(tt, tt.id == tn.taxonomy_id)
            .order_by(st.name, tt.name, sn.position, sn.code, CrosswalkRow.weight.desc(), tn.code)
        )
        if status is not None and status not in STATUSES:
            raise InvalidValue(f"unknown crosswalk status {status!r}", f"one of {', '.join(STATUSES)}")
        for col, value in ((st.name, source), (tt.name, target), (CrosswalkRow.status, status)):
            if value is not None:
                q = q.where(col == value)
        if ids is not None:
            q = q.where(CrosswalkRow.id.in_(ids))
        with self.db.session() as s:
            return [CrosswalkRowView(*r) for r in s.execute(q).all()]

    def accepted(self, target: str) -> dict[int, builtins.list[tuple[int, float]]]:
        """Accepted rows onto `target`: source node id -> [(target node id, weight)]; {} when none."""
        tn = aliased(TaxonomyNode)
        q = (
            select(CrosswalkRow.source_node_id, CrosswalkRow.target_node_id, CrosswalkRow.weight)
            .join(tn, tn.id == CrosswalkRow.target_node_id).join(Taxonomy, Taxonomy.id == tn.taxonomy_id)
            .where(CrosswalkRow.status == "accepted", Taxonomy.name == target)
            .order_by(CrosswalkRow.source_node_id, CrosswalkRow.weight.desc(), CrosswalkRow.target_node_id)
        )
        out: dict[int, list[tuple[int, float]]] = {}
        with self.db.session() as s:
            for src, tgt, w in s.execute(q).all():
                out.setdefault(int(src), []).append((int(tgt), float(w)))
        return out

    # -- files -------------------------------------------------------------------------------
    def export(self, path: str, *, fmt: str | None = None, source: str | None = None, target: str | None = None,
               status: str | None = None) -> int:
        """Write the rows to a CSV or JSON file ('-': return nothing, the caller prints `dumps`); the row count."""
        rows = [v.to_dict() for v in self.list(source=source, target=target, status=status)]
        text = files.dumps(rows, files.format_of(path, fmt))
        Path(path).write_text(text, encoding="utf-8")
        return len(rows)

    def dumps(self, fmt: str, **filters) -> str:
        return files.dumps([v.to_dict() for v in self.list(**filters)], fmt)

    def import_file(self, path: str, *, fmt: str | None = None) -> builtins.list[CrosswalkRowView]:
        """Rows from a CSV / JSON file written by `export` (or by hand): all of them in one audited transaction, or none."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(str(path), f"cannot read: {exc}") from None
        rows = files.parse(path, text, files.format_of(path, fmt))
        with self.db.write(reason=f"{REASON}import {Path(path).name}") as (s, audit):
            ids = []
            for n, r in enumerate(rows, start=1):
                try:
                    ids.append(self._upsert(s, audit, r["source_taxonomy"], r["source"], r["target_taxonomy"], r["target"],
                                            r["weight"], r["status"], r["note"]))
                except NotFound as exc:
                    raise InputFileError(str(path), exc.message, row=n + (0 if files.format_of(path, fmt) == "json" else 1),
                                         hint=exc.hint) from None
            batch = audit.batch_id if audit.count else None
        views = self.list(ids=ids)
        for v in views:
            v.batch = batch
        return views

    # -- undo --------------------------------------------------------------------------------
    def undo(self, batch_id: str | None = None) -> dict[str, Any]:
        """Undo a crosswalk batch (default: the newest not undone), while no later crosswalk batch changed its rows."""
        with self.db.write() as (s, audit):
            undone = {r[5:] for r in s.scalars(select(AuditEntry.reason).where(AuditEntry.action == "undo")) if r and r.startswith("undo ")}
            batch_id = _pick(s, batch_id, undone)
            entries = s.scalars(select(AuditEntry).where(AuditEntry.batch_id == batch_id).order_by(AuditEntry.id.desc())).all()
            touched = sorted({e.entity_id for e in entries if e.entity == "crosswalk" and e.entity_id is not None})
            later = s.execute(
                select(AuditEntry.batch_id).where(
                    AuditEntry.id > max(e.id for e in entries), AuditEntry.entity == "crosswalk",
                    AuditEntry.entity_id.in_(touched), AuditEntry.action != "undo")
            ).scalars().all()
            later = [b for b in later if b not in undone and b != batch_id]
            if later:
                raise UndoConflict(f"batch {batch_id} cannot be undone alone: the later batch {later[-1]} changed the same rows",
                                   f"undo the later batch first: `tstore crosswalk undo --batch {later[-1]}`")
            audit.reason = f"undo {batch_id}"
            changed = [_undo_entry(s, audit, e) for e in entries if e.entity == "crosswalk"]
            if not any(changed):
                audit.record("undo", "batch", None, None, {"batch_id": batch_id})
            return {"undone_batch": batch_id, "undo_batch": audit.batch_id, "changes": sum(changed)}



def _pick(s, batch_id: str | None, undone: set[str]) -> str:
    if batch_id is None:
        rows = s.execute(
            select(AuditEntry.batch_id).where(AuditEntry.reason.like(f"{REASON}%"))
            .group_by(AuditEntry.batch_id).order_by(func.max(AuditEntry.id).desc())
        ).scalars().all()
        batch_id = next((b for b in rows if b not in undone), None)
        if batch_id is None:
            raise NotFound("no crosswalk change to undo", "accept or reject a proposal first: `tstore crosswalk SOURCE TARGET --accept CATEGORY`")
        return batch_id
    reason = s.scalar(select(AuditEntry.reason).where(AuditEntry.batch_id == batch_id).limit(1))
    if reason is None:
        raise NotFound(f"no audit batch {batch_id}", "give a batch id as `tstore crosswalk` printed it")
    if not reason.startswith(REASON):
        raise InvalidValue(f"batch {batch_id} ({reason}) is not a crosswalk change", "curation edits are undone with `tstore prompt undo`")
    if batch_id in undone:
        raise InvalidValue(f"batch {batch_id} is already undone")
    return batch_id


def _undo_entry(s, audit, e) -> int:
    row = s.get(CrosswalkRow, e.entity_id)
    if row is None:
        return 0
    if e.action == "insert":
        old = {k: _jsonable(getattr(row, k)) for k in ("source_node_id", "target_node_id", "weight", "status", "note")}
        s.execute(delete(CrosswalkRow).where(CrosswalkRow.id == row.id))
        audit.record("undo", "crosswalk", e.entity_id, old, None)
        return 1
    values = {k: _from_json(k, v) for k, v in (e.old or {}).items() if k in _FIELDS}
    old = {k: _jsonable(getattr(row, k)) for k in values}
    for k, v in values.items():
        setattr(row, k, v)
    s.flush()
    audit.record("undo", "crosswalk", row.id, old, {k: _jsonable(v) for k, v in values.items()})
    return 1


def _share(p, target: str) -> float:
    for t in p.shares:
        if t.code == target:
            return round(t.share, 6)
    return 1.0 if p.reading != NO_COUNTERPART else 0.0
