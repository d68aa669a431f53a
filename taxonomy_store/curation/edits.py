"""Curation: read, edit, soft-delete and restore prompts; review and create pairs; undo.

Every method is one transaction through `db.write`, and every change is audited with its
old and new values, which is what `undo` replays backwards. Curation batches carry a reason
starting with "curation:"; an undo batch carries "undo <batch id>" and action "undo".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select

from taxonomy_store.audit import AuditBatch
from taxonomy_store.backend.database import Database
from taxonomy_store.catalog import node_index
from taxonomy_store.db.models import (
    AuditEntry, Dataset, Pair, PairSet, Prompt, PromptSource, Taxonomy, TaxonomyNode, utcnow,
)
from taxonomy_store.errors import InvalidValue, NotFound, UndoConflict
from taxonomy_store.text import check_text_length, normalise, text_sha256
from taxonomy_store.vocabulary import LABELS, PAIR_STATUSES

CURATED_DATASET = "curated"
_DATES = ("deleted_at", "decided_at", "updated_at")


@dataclass
class PromptView:
    id: int
    text: str
    label: str
    category_code: str | None
    category_path: tuple[str, ...]
    taxonomy: str | None
    dataset: str | None
    revision: int
    deleted: bool
    # Set by a write method only: the audit batch it wrote (None: the call changed nothing).
    # `tstore prompt undo --batch` and the TUI's undo take it from here.
    batch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["category_path"] = list(self.category_path)
        return d


@dataclass
class PairView:
    id: int
    pair_set: str
    kind: str
    pair_type: str | None
    status: str
    note: str | None
    unsafe_prompt_id: int
    safe_prompt_id: int
    unsafe_text: str
    safe_text: str
    # Set by a write method only: the audit batch it wrote (None: the call changed nothing).
    batch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class UndoResult:
    undone_batch: str
    undo_batch: str
    changes: int
    entities: list[str] = field(default_factory=list)
    # Later batches undone first with --cascade, newest first.
    cascaded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _written(view, audit) -> Any:
    """A view returned by a write: with the batch it wrote, or None when it recorded nothing."""
    view.batch = audit.batch_id if audit.count else None
    return view


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _from_json(k: str, v: Any) -> Any:
    if k in _DATES and isinstance(v, str):
        return datetime.fromisoformat(v)
    return v


class Curation:
    def __init__(self, db: Database):
        self.db = db

    # -- reading -----------------------------------------------------------------------
    def _views(self, s, q) -> list[PromptView]:
        nodes = node_index(s)
        out = []
        for pid, text, label, cat, ds, rev, deleted_at in s.execute(q):
            info = nodes.get(cat) if cat is not None else None
            out.append(
                PromptView(
                    pid, text, label, info.code if info else None, info.path if info else (), info.taxonomy if info else None,
                    ds, rev, deleted_at is not None,
                )
            )
        return out

    def _query(self, s, *, search=None, label=None, category=None, taxonomy=None, dataset=None, include_deleted=False):
        q = select(
            Prompt.id, Prompt.text, Prompt.label, Prompt.category_id, Dataset.name, Prompt.revision, Prompt.deleted_at
        ).join(Dataset, Dataset.id == Prompt.dataset_id, isouter=True)
        if not include_deleted:
            q = q.where(Prompt.deleted_at.is_(None))
        if search:
            q = q.where(func.lower(Prompt.text).contains(search.lower(), autoescape=True))
        if label:
            if label not in LABELS:
                raise InvalidValue(f"unknown label {label!r}", f"one of {', '.join(LABELS)}")
            q = q.where(Prompt.label == label)
        if category:
            root = self._node(s, category, taxonomy)
            ids = [n.id for n in node_index(s).values() if root in n.id_path]
            q = q.where(Prompt.category_id.in_(ids))
        elif taxonomy:
            tax_id = s.scalar(select(Taxonomy.id).where(Taxonomy.name == taxonomy))
            if tax_id is None:
                raise NotFound(f"no taxonomy {taxonomy!r} in this store", "see `tstore taxonomy list`")
            q = q.where(Prompt.category_id.in_(select(TaxonomyNode.id).where(TaxonomyNode.taxonomy_id == tax_id)))
        if dataset:
            ds_id = s.scalar(select(Dataset.id).where(Dataset.name == dataset))
            if ds_id is None:
                raise NotFound(f"no dataset {dataset!r} in this store")
            q = q.where(Prompt.id.in_(select(PromptSource.prompt_id).where(PromptSource.dataset_id == ds_id)))
        return q

    def get_prompt(self, prompt_id: int) -> PromptView:
        with self.db.session() as s:
            views = self._views(s, self._query(s, include_deleted=True).where(Prompt.id == prompt_id))
            if not views:
                raise NotFound(f"no prompt {prompt_id}", "see `tstore prompt list`")
            return views[0]

    def list_prompts(self, *, limit: int | None = None, offset: int = 0, **filters) -> list[PromptView]:
        with self.db.session() as s:
            q = self._query(s, **filters).order_by(Prompt.id).offset(offset)
            if limit is not None:
                q = q.limit(limit)
            return self._views(s, q)

    def count_prompts(self, **filters) -> int:
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(self._query(s, **filters).subquery())) or 0

    def _node(self, s, category: str, taxonomy: str | None) -> int:
        q = select(TaxonomyNode.id, Taxonomy.name).join(Taxonomy, Taxonomy.id == TaxonomyNode.taxonomy_id)
        if taxonomy:
            q = q.where(Taxonomy.name == taxonomy)
        hits = s.execute(q.where(TaxonomyNode.code == category)).all() or s.execute(q.where(TaxonomyNode.name == category)).all()
        if not hits:
            where = f" in taxonomy {taxonomy!r}" if taxonomy else ""
            raise NotFound(f"no category {category!r}{where}", "use a node code from `tstore taxonomy show NAME`")
        if len(hits) > 1:
            raise InvalidValue(f"category {category!r} is in several taxonomies ({', '.join(sorted(t for _, t in hits))})", "add --taxonomy")
        return hits[0][0]

    # -- prompt edits --------------------------------------------------------------------
    def _prompt(self, s, prompt_id: int) -> Prompt:
        p = s.get(Prompt, prompt_id)
        if p is None:
            raise NotFound(f"no prompt {prompt_id}", "see `tstore prompt list`")
        return p

    def _set_prompt(self, s, audit, p: Prompt, values: dict[str, Any], action: str = "update") -> None:
        old = {k: _jsonable(getattr(p, k)) for k in values}
        new = {k: _jsonable(v) for k, v in values.items()}
        if old == new:
            return
        if "text_sha256" in values or ("deleted_at" in values and values["deleted_at"] is None):
            h = values.get("text_sha256", p.text_sha256)
            other = s.scalar(select(Prompt.id).where(Prompt.text_sha256 == h, Prompt.deleted_at.is_(None), Prompt.id != p.id))
            if other is not None:
                raise InvalidValue(f"prompt {other} already has this text", f"edit or delete prompt {other} instead")
        for k, v in values.items():
            setattr(p, k, v)
        p.revision = (p.revision or 1) + 1
        p.updated_at = utcnow()
        s.flush()
        audit.record(action, "prompt", p.id, old, new)

    def update_prompt(
        self, prompt_id: int, *, text: str | None = None, label: str | None = None, category: str | None = None,
        taxonomy: str | None = None,
    ) -> PromptView:
        with self.db.write(reason=f"curation: edit prompt {prompt_id}") as (s, audit):
            p = self._prompt(s, prompt_id)
            if p.deleted_at is not None:
                raise InvalidValue(f"prompt {prompt_id} is deleted", f"restore it first with `tstore prompt restore {prompt_id}`")
            values: dict[str, Any] = {}
            if text is not None:
                clean = text.strip()
                if not clean:
                    raise InvalidValue("the new text is empty")
                check_text_length(clean, "the new text")
                if normalise(clean) != normalise(p.text) or clean != p.text:
                    values.update(text=clean, text_sha256=text_sha256(clean))
            if label is not None:
                if label not in LABELS:
                    raise InvalidValue(f"unknown label {label!r}", f"one of {', '.join(LABELS)}")
                values["label"] = label
            if category is not None:
                values["category_id"] = None if category in ("", "none") else self._node(s, category, taxonomy)
            self._set_prompt(s, audit, p, values)
        return _written(self.get_prompt(prompt_id), audit)

    def update_prompts(self, changes: dict[int, dict[str, Any]]) -> list[PromptView]:
        """Several prompts' labels and categories (`{prompt id: {"label": ..., "category": ...,
        "taxonomy": ...}}`) in one audit batch: one undo takes them all back. Views in the order given."""
        with self.db.write(reason=f"curation: edit {len(changes)} prompts") as (s, audit):
            for prompt_id, change in changes.items():
                p = self._prompt(s, prompt_id)
                if p.deleted_at is not None:
                    raise InvalidValue(f"prompt {prompt_id} is deleted", f"restore it first with `tstore prompt restore {prompt_id}`")
                values: dict[str, Any] = {}
                if change.get("label") is not None:
                    if change["label"] not in LABELS:
                        raise InvalidValue(f"unknown label {change['label']!r}", f"one of {', '.join(LABELS)}")
                    values["label"] = change["label"]
                if change.get("category") is not None:
                    category = change["category"]
                    values["category_id"] = None if category in ("", "none") else self._node(s, category, change.get("taxonomy"))
                self._set_prompt(s, audit, p, values)
        return [_written(self.get_prompt(i), audit) for i in changes]

    def delete_prompt(self, prompt_id: int) -> PromptView:
        with self.db.write(reason=f"curation: delete prompt {prompt_id}") as (s, audit):
            p = self._prompt(s, prompt_id)
            if p.deleted_at is not None:
                raise InvalidValue(f"prompt {prompt_id} is already deleted")
            self._set_prompt(s, audit, p, {"deleted_at": utcnow()}, action="delete")
        return _written(self.get_prompt(prompt_id), audit)

    def restore_prompt(self, prompt_id: int) -> PromptView:
        with self.db.write(reason=f"curation: restore prompt {prompt_id}") as (s, audit):
            p = self._prompt(s, prompt_id)
            if p.deleted_at is None:
                raise InvalidValue(f"prompt {prompt_id} is not deleted")
            self._set_prompt(s, audit, p, {"deleted_at": None})
        return _written(self.get_prompt(prompt_id), audit)

    # -- pairs ---------------------------------------------------------------------------
    def list_pairs(
        self, *, status: str | None = None, pair_type: str | None = None, pair_set: str | None = None, limit: int | None = None,
        _pair_id: int | None = None,
    ) -> list[PairView]:
        from sqlalchemy.orm import aliased

        u, sp = aliased(Prompt), aliased(Prompt)
        with self.db.session() as s:
            q = (
                select(Pair.id, PairSet.name, PairSet.kind, Pair.pair_type, Pair.status, Pair.note, u.id, sp.id, u.text, sp.text)
                .join(PairSet, PairSet.id == Pair.pair_set_id)
                .join(u, u.id == Pair.unsafe_prompt_id)
                .join(sp, sp.id == Pair.safe_prompt_id)
                .order_by(Pair.id)
            )
            if status:
                if status not in PAIR_STATUSES:
                    raise InvalidValue(f"unknown pair status {status!r}", f"one of {', '.join(PAIR_STATUSES)}")
                q = q.where(Pair.status == status)
            if pair_type:
                q = q.where(Pair.pair_type == pair_type)
            if pair_set:
                q = q.where(PairSet.name == pair_set)
            if _pair_id is not None:
                q = q.where(Pair.id == _pair_id)
            if limit:
                q = q.limit(limit)
            return [PairView(*r) for r in s.execute(q)]

    def get_pair(self, pair_id: int) -> PairView:
        for v in self.list_pairs(_pair_id=pair_id):
            return v
        raise NotFound(f"no pair {pair_id}", "see `tstore pair list`")

    def _set_pair(self, s, audit, pair: Pair, values: dict[str, Any]) -> None:
        old = {k: _jsonable(getattr(pair, k)) for k in values}
        new = {k: _jsonable(v) for k, v in values.items()}
        if old == new:
            return
        for k, v in values.items():
            setattr(pair, k, v)
        s.flush()
        audit.record("update", "pair", pair.id, old, new)

    def decide_pair(self, pair_id: int, status: str, note: str | None = None) -> PairView:
        if status not in PAIR_STATUSES:
            raise InvalidValue(f"unknown pair status {status!r}", f"one of {', '.join(PAIR_STATUSES)}")
        with self.db.write(reason=f"curation: {status} pair {pair_id}") as (s, audit):
            pair = s.get(Pair, pair_id)
            if pair is None:
                raise NotFound(f"no pair {pair_id}", "see `tstore pair list`")
            # deciding what is already decided changes nothing: no audit entry, nothing for undo to take
            values: dict[str, Any] = {"status": status, "decided_at": utcnow()} if pair.status != status else {}
            if note is not None and note != pair.note:
                values["note"] = note
            if values:
                self._set_pair(s, audit, pair, values)
        return _written(self.get_pair(pair_id), audit)

    def create_pair(
        self, unsafe_prompt_id: int, *, safe_prompt_id: int | None = None, safe_text: str | None = None,
        pair_type: str | None = None, pair_set: str = "curated", kind: str = "challenging",
    ) -> PairView:
        if (safe_prompt_id is None) == (safe_text is None):
            raise InvalidValue("give either a safe prompt id or a safe text")
        with self.db.write(reason=f"curation: new pair for prompt {unsafe_prompt_id}") as (s, audit):
            unsafe = self._prompt(s, unsafe_prompt_id)
            if unsafe.deleted_at is not None or unsafe.label != "unsafe":
                raise InvalidValue(f"prompt {unsafe_prompt_id} is not a live unsafe prompt (label {unsafe.label})")
            if safe_text is not None:
                clean = safe_text.strip()
                if not clean:
                    raise InvalidValue("the safe text is empty")
                check_text_length(clean, "the safe text")
                h = text_sha256(clean)
                safe = s.scalar(select(Prompt).where(Prompt.text_sha256 == h, Prompt.deleted_at.is_(None)))
                if safe is None:
                    safe = self._new_prompt(s, audit, clean, h)
            else:
                assert safe_prompt_id is not None  # one of the two was checked above
                safe = self._prompt(s, safe_prompt_id)
            if safe.deleted_at is not None or safe.label != "safe":
                raise InvalidValue(f"prompt {safe.id} is not a live safe prompt (label {safe.label})")
            if safe.id == unsafe.id:
                raise InvalidValue("a pair needs two different prompts")
            ps = s.scalar(select(PairSet).where(PairSet.name == pair_set))
            if ps is None:
                ps = PairSet(name=pair_set, kind=kind)
                s.add(ps)
                s.flush()
                audit.record("insert", "pair_set", ps.id, None, {"name": pair_set, "kind": kind})
            dup = s.scalar(
                select(Pair.id).where(Pair.pair_set_id == ps.id, Pair.unsafe_prompt_id == unsafe.id, Pair.safe_prompt_id == safe.id)
            )
            if dup is not None:
                raise InvalidValue(f"pair {dup} already joins these prompts in {pair_set!r}")
            values = dict(
                pair_set_id=ps.id, unsafe_prompt_id=unsafe.id, safe_prompt_id=safe.id, pair_type=pair_type,
                source_key=f"{unsafe.id}|{safe.id}", status="proposed",
            )
            pair_id = s.execute(insert(Pair).returning(Pair.id), [dict(values, created_at=utcnow())]).scalar_one()
            audit.record("insert", "pair", pair_id, None, values)
        return _written(self.get_pair(pair_id), audit)

    def _new_prompt(self, s, audit, text: str, h: str) -> Prompt:
        ds = s.scalar(select(Dataset).where(Dataset.name == CURATED_DATASET))
        if ds is None:
            ds = Dataset(name=CURATED_DATASET, format="curated", options={})
            s.add(ds)
            s.flush()
            audit.record("insert", "dataset", ds.id, None, {"name": CURATED_DATASET})
        p = Prompt(text=text, text_sha256=h, label="safe", dataset_id=ds.id, revision=1)
        s.add(p)
        s.flush()
        p.source_key = f"prompt-{p.id}"
        s.add(PromptSource(dataset_id=ds.id, source_key=p.source_key, prompt_id=p.id, extra={}))
        s.flush()
        audit.record("insert", "prompt", p.id, None, {"text": text, "label": "safe", "dataset_id": ds.id, "source_key": p.source_key})
        return p

    # -- undo ----------------------------------------------------------------------------
    def undo(self, batch_id: str | None = None, *, cascade: bool = False) -> UndoResult:
        """Undo a curation batch (default: the newest not undone yet), restoring the old values it recorded.

        A batch is undone only while its new values are still current: when a later batch changed
        one of its rows, the undo is refused (UndoConflict names the later batch), or, with
        cascade=True, the later curation batches are undone with it, newest first, in the same
        transaction. A later import that changed the row cannot be undone, so it always refuses.
        """
        with self.db.write() as (s, audit):
            undone = _undone_batches(s)
            batch_id = self._pick_batch(s, batch_id, undone)
            later = _later_batches(s, batch_id, undone)
            if later and not cascade:
                b, (reason, entity, entity_id) = next(iter(later.items()))
                raise UndoConflict(
                    f"batch {batch_id} cannot be undone alone: the later batch {b} ({reason}) changed {entity} {entity_id} after it",
                    f"undo the later batch first (`tstore prompt undo --batch {b}`), or both at once with "
                    f"`tstore prompt undo --batch {batch_id} --cascade`",
                )
            fixed = [(b, r) for b, (r, _e, _i) in later.items() if not (r or "").startswith("curation: ")]
            if fixed:
                b, reason = fixed[0]
                raise UndoConflict(
                    f"batch {batch_id} cannot be undone: the later batch {b} ({reason}) changed the same rows and is not a curation edit",
                    "imports are not undone; edit the prompt or pair instead (`tstore prompt edit`, `tstore pair ...`)",
                )
            cascaded: list[str] = []
            for b in later:  # newest first
                inner = AuditBatch(s, actor=audit.actor, reason=f"undo {b}")
                self._undo_batch(s, inner, b)
                inner.flush()
                cascaded.append(b)
            audit.reason = f"undo {batch_id}"
            entities = self._undo_batch(s, audit, batch_id)
            return UndoResult(batch_id, audit.batch_id, len(entities), entities, cascaded)

    def _pick_batch(self, s, batch_id: str | None, undone: set[str]) -> str:
        if batch_id is None:
            rows = s.execute(
                select(AuditEntry.batch_id, func.max(AuditEntry.id).label("last"))
                .where(AuditEntry.reason.like("curation: %"))
                .group_by(AuditEntry.batch_id)
                .order_by(func.max(AuditEntry.id).desc())
            ).all()
            batch_id = next((b for b, _ in rows if b not in undone), None)
            if batch_id is None:
                raise NotFound("nothing to undo", "only curation edits (prompt/pair edits, deletes, decisions) can be undone")
            return batch_id
        reason = s.scalar(select(AuditEntry.reason).where(AuditEntry.batch_id == batch_id).limit(1))
        if reason is None:
            raise NotFound(f"no audit batch {batch_id}", "give a batch id as printed by `tstore prompt undo` or the TUI's history")
        if not reason.startswith("curation: "):
            # Refusals of undo are one kind (exit 1), like "a later batch changed it" and "no such batch".
            raise UndoConflict(
                f"batch {batch_id} ({reason}) is not a curation edit",
                "imports are reversed by importing the previous file again",
            )
        if batch_id in undone:
            raise UndoConflict(f"batch {batch_id} is already undone", "nothing to do: its changes are reverted already")
        return batch_id

    def _undo_batch(self, s, audit, batch_id: str) -> list[str]:
        """Write back the old values of one batch's entries (newest first); the entities touched."""
        entries = s.scalars(select(AuditEntry).where(AuditEntry.batch_id == batch_id).order_by(AuditEntry.id.desc())).all()
        entities = []
        for e in entries:
            if e.entity == "prompt":
                p = self._prompt(s, e.entity_id)
                if e.action == "insert":
                    values = {"deleted_at": utcnow()} if p.deleted_at is None else {}
                else:
                    values = {k: _from_json(k, v) for k, v in (e.old or {}).items()}
                old = {k: _jsonable(getattr(p, k)) for k in values}
                if values:
                    self._set_prompt(s, _Silent(), p, values)
                    audit.record("undo", "prompt", p.id, old, {k: _jsonable(v) for k, v in values.items()})
                    entities.append(f"prompt {p.id}")
            elif e.entity == "pair":
                pair = s.get(Pair, e.entity_id)
                if pair is None:
                    continue
                if e.action == "insert":
                    old = {k: getattr(pair, k) for k in ("pair_set_id", "unsafe_prompt_id", "safe_prompt_id", "pair_type", "status")}
                    s.execute(delete(Pair).where(Pair.id == pair.id))
                    audit.record("undo", "pair", e.entity_id, old, None)
                else:
                    values = {k: _from_json(k, v) for k, v in (e.old or {}).items()}
                    old = {k: _jsonable(getattr(pair, k)) for k in values}
                    for k, v in values.items():
                        setattr(pair, k, v)
                    s.flush()
                    audit.record("undo", "pair", pair.id, old, {k: _jsonable(v) for k, v in values.items()})
                entities.append(f"pair {e.entity_id}")
        if not entities:
            # Still record the undo, so the batch is not offered again.
            audit.record("undo", "batch", None, None, {"batch_id": batch_id})
        return entities


# Rows an undo writes back; a later change to one of them makes an out-of-order undo unsafe.
_UNDOABLE_ENTITIES = ("prompt", "pair")


def _undone_batches(s) -> set[str]:
    return {r[5:] for r in s.scalars(select(AuditEntry.reason).where(AuditEntry.action == "undo")) if r and r.startswith("undo ")}


def _later_batches(s, batch_id: str, undone: set[str]) -> dict[str, tuple[str, str, int]]:
    """Batches after this one (and after those, transitively) that changed a row it changed and are
    not undone: {batch id: (reason, entity, entity id)}, newest first."""
    found: dict[str, tuple[str, str, int, int]] = {}
    todo = [batch_id]
    while todo:
        b = todo.pop()
        rows = s.execute(
            select(AuditEntry.entity, AuditEntry.entity_id, AuditEntry.id).where(
                AuditEntry.batch_id == b, AuditEntry.entity.in_(_UNDOABLE_ENTITIES), AuditEntry.entity_id.is_not(None)
            )
        ).all()
        if not rows:
            continue
        last = max(r.id for r in rows)
        touched = {(r.entity, r.entity_id) for r in rows}
        later = s.execute(
            select(AuditEntry.batch_id, AuditEntry.reason, AuditEntry.entity, AuditEntry.entity_id, AuditEntry.id)
            .where(
                AuditEntry.id > last, AuditEntry.action != "undo", AuditEntry.entity.in_(_UNDOABLE_ENTITIES),
                AuditEntry.entity_id.in_(sorted({i for _e, i in touched})),
            )
            .order_by(AuditEntry.id)
        ).all()
        for r in later:
            if (r.entity, r.entity_id) in touched and r.batch_id not in undone and r.batch_id != batch_id and r.batch_id not in found:
                found[r.batch_id] = (r.reason or "", r.entity, r.entity_id, r.id)
                todo.append(r.batch_id)
    newest_first = sorted(found.items(), key=lambda kv: -_last_id(s, kv[0]))
    return {b: (reason, entity, eid) for b, (reason, entity, eid, _id) in newest_first}


def _last_id(s, batch_id: str) -> int:
    return s.scalar(select(func.max(AuditEntry.id)).where(AuditEntry.batch_id == batch_id)) or 0


class _Silent:
    """An audit sink for the inner write of an undo, whose own 'undo' entry is recorded instead."""

    def record(self, *args, **kwargs) -> None:
        pass
