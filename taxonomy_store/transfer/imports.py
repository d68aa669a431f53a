"""Importing data files: parse (importers/) then write in ONE transaction, all rows or none.

The transaction, under the store's import lock (import_lock.py): prepare (datasets, categories
via import_categories.py, what the store holds), plan (import_plan.py: pure, no SQL), apply
(bulk inserts, links, updates, pairs, the dataset row, each with its audit entries).

Keys and semantics (the rules themselves live in import_plan.py):
- Each file row is a `PromptSource` keyed by (dataset, source key). Re-importing the same bytes
  with the same options is detected by the dataset's sha256 and writes nothing. A changed file
  updates the rows whose content changed (text, label, category; an edited text bumps the
  prompt's revision and text hash) and leaves the others — and any curation edits — alone.
- The same normalised text is one live prompt: a row whose text is already stored (from any
  dataset) gets a new source on the existing prompt ("linked"), never a second prompt. A label
  conflict (safe vs unsafe) is an error unless one side is unlabeled.
- Exact duplicate texts inside one file are reported; each row keeps its own source.
- tstore's own exports match existing prompts by text (that is what makes export → import a
  no-op on the same store).
- Every change goes to the audit log. `dry_run` does all the work and rolls it back.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import func, insert, select, update

from taxonomy_store.backend.database import Database
from taxonomy_store.db.models import Dataset, Pair, PairSet, Prompt, PromptSource, utcnow, table_of
from taxonomy_store.transfer.import_categories import CategoryResolver
from taxonomy_store.transfer.import_lock import hold_import_lock
from taxonomy_store.transfer.import_plan import (
    PAIR_FIELDS, ImportPlan, PairPlan, PromptRef, RowFacts, SourceUpdate, StoredState, plan_import, plan_pairs,
)
from taxonomy_store.importers import ParsedFile, PromptRecord, parse_file, read_file_bytes
from taxonomy_store.text import inert, text_sha256

if TYPE_CHECKING:
    from taxonomy_store.taxonomy.trees import Taxonomies

Progress = Callable[[str, int, int], None]
_IN_BATCH = 900


@dataclass
class ImportSummary:
    dataset: str
    format: str
    path: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_in_file: int = 0
    linked_existing: int = 0
    pairs_added: int = 0
    pairs_updated: int = 0
    pairs_unchanged: int = 0
    # All or nothing: a bad row aborts the whole import with an error, so a summary never has
    # rejected rows; the field is kept so scripts can rely on the key.
    rejected: int = 0
    not_in_file: int = 0  # sources of this dataset that the file no longer has (kept)
    categories_created: int = 0
    taxonomies_loaded: list[str] = field(default_factory=list)
    unchanged_file: bool = False
    dry_run: bool = False
    sha256: str = ""
    changes: list[str] = field(default_factory=list)  # the first few changed rows, for people
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        # The dataset name comes from the user (file name or --dataset): printed inert.
        if self.unchanged_file:
            return inert(f"{self.dataset}: unchanged ({self.rows} rows, same file as the last import; nothing written)")
        head = "dry run, nothing written: " if self.dry_run else ""
        parts = [
            f"{self.added} added", f"{self.updated} updated", f"{self.unchanged} unchanged",
            f"{self.linked_existing} linked to existing prompts", f"{self.duplicates_in_file} duplicate texts in file",
            f"pairs {self.pairs_added} added/{self.pairs_updated} updated/{self.pairs_unchanged} unchanged",
            f"{self.rejected} rejected",
        ]
        if self.categories_created:
            parts.append(f"{self.categories_created} categories created")
        return inert(f"{head}{self.dataset} ({self.format}, {self.rows} rows): " + ", ".join(parts) + f" in {self.seconds:.2f}s")


class _DryRun(Exception):
    def __init__(self, summary: ImportSummary):
        self.summary = summary


def _row_sha(rec: PromptRecord, taxonomy: str | None) -> str:
    """What the file said about a row; a different hash on re-import means the row changed."""
    category = "\x1e".join(rec.category) if isinstance(rec.category, tuple) else (rec.category or "")
    extra = json.dumps(sorted(rec.extra.items()), ensure_ascii=False, default=str) if rec.extra else ""
    payload = "\x1f".join((rec.text, rec.label, rec.taxonomy or taxonomy or "", category, extra))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _chunks(seq: list, n: int = _IN_BATCH):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class Imports:
    def __init__(self, db: Database, taxonomies: "Taxonomies"):
        self.db = db
        self.taxonomies = taxonomies

    def import_file(
        self,
        path: str | Path,
        *,
        format: str | None = None,
        dataset: str | None = None,
        taxonomy: str | None = None,
        mapping: dict[str, str] | None = None,
        label: str | None = None,
        create_categories: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> ImportSummary:
        """Import one file in one transaction. `on_wait` is called if another import of this
        store is running: this one waits for it (see import_lock)."""
        started = time.perf_counter()
        path = Path(path)
        data = read_file_bytes(path)
        if progress:
            progress("read", 0, 1)
        parsed = parse_file(path, format=format, mapping=mapping, label=label, data=data)
        if dataset:  # every row goes to that one dataset: an export's other memberships do not apply
            parsed.prompts = [r for r in parsed.prompts if not r.membership]
        if progress:
            progress("read", 1, 1)
        summary = ImportSummary(
            dataset=dataset or path.stem, format=parsed.format, path=str(path), rows=sum(not r.membership for r in parsed.prompts),
            sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run, notes=list(parsed.notes),
        )
        options = {"format": parsed.format, "taxonomy": taxonomy, "mapping": dict(mapping or {}), "label": label}
        # Hundreds of thousands of small dicts: the cyclic GC would rescan them over and over.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with self.db.write(reason=f"import {path.name} into {summary.dataset}") as (session, audit):
                hold_import_lock(session, on_wait)
                self._write(session, audit, parsed, summary, dataset, taxonomy, options, create_categories, progress)
                if dry_run:
                    raise _DryRun(summary)
        except _DryRun:
            pass
        finally:
            if gc_was_enabled:
                gc.enable()
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary

    # -- the one transaction: prepare, plan, apply ------------------------------------------
    def _write(self, session, audit, parsed: ParsedFile, summary: ImportSummary, dataset_arg, taxonomy, options, create, progress):
        taxonomy = taxonomy or parsed.taxonomy
        if _same_file_again(session, parsed, summary, options):
            return
        cats = CategoryResolver(session, audit, self.taxonomies, create, parsed.path)
        datasets = _Datasets(session, audit, parsed)
        main_id, rec_ds = datasets.for_rows(summary, per_row=parsed.match_by_text and not dataset_arg)
        # Resolve categories and hashes up front (errors name the row).
        facts = RowFacts(
            hashes=[text_sha256(r.text) for r in parsed.prompts], datasets=rec_ds,
            categories=[cats.resolve(r, taxonomy) for r in parsed.prompts],
            row_shas=[_row_sha(r, taxonomy) for r in parsed.prompts],
        )
        summary.taxonomies_loaded, summary.categories_created = list(cats.loaded), cats.created
        stored = _load_stored(session, facts)
        if not parsed.match_by_text:
            file_keys = {(d, r.key) for d, r in zip(rec_ds, parsed.prompts)}
            summary.not_in_file = sum(1 for k in stored.sources if k[0] == main_id and k not in file_keys)
        plan = plan_import(parsed.prompts, facts, stored, match_by_text=parsed.match_by_text, progress=progress)
        if plan.conflicts:
            raise plan.conflicts[0].error(parsed.path)
        for name in ("added", "updated", "unchanged", "linked_existing", "duplicates_in_file"):
            setattr(summary, name, getattr(plan, name))
        summary.changes = list(plan.changes)
        now = utcnow()
        key_pid = _apply_plan(session, audit, plan, datasets, stored, now, progress)
        pair_count = self._write_pairs(session, audit, parsed, summary, key_pid, main_id)
        if main_id is not None:
            _record_dataset(session, audit, parsed, summary, options, main_id, pair_count, now)

    def _write_pairs(self, session, audit, parsed: ParsedFile, summary: ImportSummary, key_pid: dict[str, int], main_id: int | None) -> int:
        if not parsed.pairs:
            return 0
        sets: dict[str, int] = {}
        default_set = summary.dataset if main_id is not None else parsed.path.stem
        wanted = [
            (_pair_set_id(session, audit, sets, p.pair_set or default_set, p.kind or parsed.pair_kind, main_id), p)
            for p in parsed.pairs
        ]
        set_ids = sorted(set(sets.values()))
        stored = [dict(zip(PAIR_FIELDS, row)) for row in session.execute(
            select(*[getattr(Pair, f) for f in PAIR_FIELDS]).where(Pair.pair_set_id.in_(set_ids))
        )]
        plan = plan_pairs(wanted, key_pid, stored, match_by_text=parsed.match_by_text, path=parsed.path)
        _apply_pairs(session, audit, plan, set_ids)
        summary.pairs_added += len(plan.inserts)
        summary.pairs_updated += len(plan.updates)
        summary.pairs_unchanged += plan.unchanged
        if default_set in sets:
            return session.scalar(select(func.count(Pair.id)).where(Pair.pair_set_id == sets[default_set])) or 0
        return len(parsed.pairs)


def _pair_set_id(session, audit, sets: dict[str, int], name: str, kind: str, main_id: int | None) -> int:
    """The pair set of that name (created, for this import's dataset, when missing)."""
    if name not in sets:
        ps = session.scalar(select(PairSet).where(PairSet.name == name))
        if ps is None:
            values = dict(name=name, kind=kind, dataset_id=main_id)  # None for tstore exports
            sets[name] = session.execute(insert(PairSet).returning(PairSet.id), [values]).scalar_one()
            audit.record("insert", "pair_set", sets[name], None, values)
        else:
            sets[name] = ps.id
    return sets[name]


def _apply_pairs(session, audit, plan: PairPlan, set_ids: list[int]) -> None:
    for pair_id, old, new in plan.updates:
        session.execute(update(Pair).where(Pair.id == pair_id).values(**new))
        audit.record("update", "pair", pair_id, old, new)
    if not plan.inserts:
        return
    now = utcnow()
    session.execute(table_of(Pair).insert(), [dict(v, created_at=now, decided_at=None) for v in plan.inserts])
    by_ids = {
        (ps, u, s): pid
        for pid, ps, u, s in session.execute(
            select(Pair.id, Pair.pair_set_id, Pair.unsafe_prompt_id, Pair.safe_prompt_id).where(Pair.pair_set_id.in_(set_ids))
        )
    }
    audited = ("pair_set_id", "unsafe_prompt_id", "safe_prompt_id", "pair_type", "source_key", "status")
    for values in plan.inserts:
        pid = by_ids[(values["pair_set_id"], values["unsafe_prompt_id"], values["safe_prompt_id"])]
        audit.record("insert", "pair", pid, None, {k: values[k] for k in audited})


# -- preparing the plan's inputs ---------------------------------------------------------------
def _same_file_again(session, parsed: ParsedFile, summary: ImportSummary, options: dict[str, Any]) -> bool:
    """The same bytes with the same options as the dataset's last import: nothing to write."""
    main_ds = session.scalar(select(Dataset).where(Dataset.name == summary.dataset))
    if (
        main_ds is None
        or parsed.match_by_text
        or main_ds.sha256 != summary.sha256
        or (main_ds.options or {}) != options
    ):
        return False
    summary.unchanged_file = True
    summary.unchanged = len(parsed.prompts)
    summary.pairs_unchanged = len(parsed.pairs)
    summary.duplicates_in_file = len(parsed.prompts) - len({text_sha256(r.text) for r in parsed.prompts})
    return True


class _Datasets:
    """Dataset ids for the rows: one per import, or (tstore exports) the dataset each row names.
    A dataset that only an export row names gets a negative placeholder, and is created when a
    new prompt needs it (`real`)."""

    def __init__(self, session, audit, parsed: ParsedFile):
        self.session, self.audit, self.parsed = session, audit, parsed
        self.ids: dict[str, int] = {}
        self.known: dict[str, int] = {}
        self.placeholders: dict[int, str] = {}

    def for_rows(self, summary: ImportSummary, *, per_row: bool) -> tuple[int | None, list[int]]:
        """(the import's own dataset id or None, each row's dataset id or placeholder)."""
        self.known = dict(self.session.execute(select(Dataset.name, Dataset.id)).all())
        if not per_row:
            main_id = self.get_or_create(summary.dataset)
            return main_id, [main_id] * len(self.parsed.prompts)
        rows = [self.ref(rec.dataset or summary.dataset) for rec in self.parsed.prompts]
        used = set(rows)
        summary.dataset = ", ".join(sorted(n for n, i in self.known.items() if i in used))
        return None, rows

    def get_or_create(self, name: str) -> int:
        if name not in self.ids:
            ds = self.session.scalar(select(Dataset).where(Dataset.name == name))
            if ds is None:
                values = dict(name=name, source_uri=str(self.parsed.path.resolve()), format=self.parsed.format, options={}, row_count=0)
                ds_id = self.session.execute(insert(Dataset).returning(Dataset.id), [values]).scalar_one()
                self.audit.record("insert", "dataset", ds_id, None, {"name": name, "format": self.parsed.format, "source_uri": values["source_uri"]})
            else:
                ds_id = ds.id
            self.ids[name] = ds_id
        return self.ids[name]

    def ref(self, name: str) -> int:
        if name not in self.known:
            ref = -(len(self.placeholders) + 1)
            self.placeholders[ref] = name
            self.known[name] = ref
        return self.known[name]

    def real(self, ref: int) -> int:
        return self.get_or_create(self.placeholders[ref]) if ref < 0 else ref


_PROMPT_COLUMNS = ("id", "text", "text_sha256", "label", "category_id", "revision")


def _load_stored(session, facts: RowFacts) -> StoredState:
    """The sources of the rows' datasets, and the live prompts with the rows' texts (plus the
    prompts those sources point at)."""
    sources: dict[tuple[int, str], tuple[int, int, str | None]] = {}
    for sid, ds_id, key, pid, rsha in session.execute(
        select(PromptSource.id, PromptSource.dataset_id, PromptSource.source_key, PromptSource.prompt_id, PromptSource.row_sha256)
        .where(PromptSource.dataset_id.in_(sorted(set(facts.datasets))))
    ):
        sources[(ds_id, key)] = (sid, pid, rsha)
    cols = [getattr(Prompt, c) for c in _PROMPT_COLUMNS]
    live: dict[str, dict[str, Any]] = {}
    by_id: dict[int, dict[str, Any]] = {}
    wanted = list(set(facts.hashes))
    live_count = session.scalar(select(func.count(Prompt.id)).where(Prompt.deleted_at.is_(None))) or 0
    if live_count:
        # A small store is read whole; a big one only at the file's text hashes.
        if live_count <= 4 * len(wanted):
            queries = [select(*cols).where(Prompt.deleted_at.is_(None))]
        else:
            queries = [select(*cols).where(Prompt.deleted_at.is_(None), Prompt.text_sha256.in_(c)) for c in _chunks(wanted)]
        for q in queries:
            for row in session.execute(q):
                p = dict(zip(_PROMPT_COLUMNS, row))
                live[p["text_sha256"]] = p
                by_id[p["id"]] = p
    src_pids = [v[1] for v in sources.values() if v[1] not in by_id]
    for c in _chunks(src_pids):
        for row in session.execute(select(*cols).where(Prompt.id.in_(c))):
            p = dict(zip(_PROMPT_COLUMNS, row))
            by_id[p["id"]] = p

    def count_sources(pid: int) -> int:
        return session.scalar(select(func.count()).select_from(PromptSource).where(PromptSource.prompt_id == pid)) or 0

    return StoredState(sources, live, by_id, count_sources)


# -- applying the plan ---------------------------------------------------------------------------
def _apply_plan(session, audit, plan: ImportPlan, datasets: _Datasets, stored: StoredState, now, progress) -> dict[str, int]:
    """Write the plan: new prompts (bulk), their sources, source and prompt updates. Returns
    each file key's prompt id (what the pairs refer to)."""
    for row in plan.inserts:  # placeholders become datasets in the order new prompts first use them
        row.update(dataset_id=datasets.real(row["dataset_id"]), created_at=now, updated_at=now)
    new_ids = _insert_prompts(session, audit, plan.inserts, progress)

    def pid_of(ref: PromptRef) -> int:
        return new_ids[ref[1]] if isinstance(ref, tuple) else ref

    _insert_links(session, audit, plan, datasets, pid_of)
    _update_sources(session, audit, plan.source_updates, pid_of)
    _update_prompts(session, audit, plan.prompt_updates, stored.by_id, now)
    return {k: pid_of(ref) for k, ref in plan.key_refs.items()}


def _insert_prompts(session, audit, rows: list[dict[str, Any]], progress) -> list[int]:
    """Plain executemany, then the ids back by text hash (unique among live prompts): RETURNING
    with a guaranteed order falls back to one statement per row on SQLite."""
    done = 0
    for c in _chunks(rows, 5000):
        session.execute(table_of(Prompt).insert(), c)
        done += len(c)
        if progress:
            progress("write", done, len(rows))
    id_by_hash: dict[str, int] = {}
    for c in _chunks([p["text_sha256"] for p in rows]):
        id_by_hash.update(
            session.execute(select(Prompt.text_sha256, Prompt.id).where(Prompt.deleted_at.is_(None), Prompt.text_sha256.in_(c))).all()
        )
    new_ids = [id_by_hash[p["text_sha256"]] for p in rows]
    for pid, values in zip(new_ids, rows):
        audit.record("insert", "prompt", pid, None, {k: values[k] for k in ("text", "label", "category_id", "dataset_id", "source_key")})
    return new_ids


def _insert_links(session, audit, plan: ImportPlan, datasets: _Datasets, pid_of: Callable[[PromptRef], int]) -> None:
    rows = [
        dict(dataset_id=datasets.real(s.dataset), source_key=s.key, prompt_id=pid_of(s.prompt), row_sha256=s.row_sha256, extra=s.extra)
        for s in plan.links
    ]
    if rows:
        session.execute(table_of(PromptSource).insert(), rows)
    for link, row in zip(plan.links, rows):
        if isinstance(link.prompt, tuple):
            own = plan.inserts[link.prompt[1]]
            if (own["dataset_id"], own["source_key"]) == (row["dataset_id"], row["source_key"]):
                continue  # the new prompt's own row: its insert entry names dataset and source key
        # A link to a stored prompt, or a duplicate row of this file.
        audit.record("insert", "prompt_source", None, None, {k: row[k] for k in ("dataset_id", "source_key", "prompt_id")})


def _update_sources(session, audit, updates: list[SourceUpdate], pid_of: Callable[[PromptRef], int]) -> None:
    for su in updates:
        old: dict[str, Any] = {"row_sha256": su.old_row_sha256}
        new: dict[str, Any] = {"row_sha256": su.row_sha256}
        values: dict[str, Any] = dict(row_sha256=su.row_sha256, extra=su.extra)
        if su.prompt is not None:
            values["prompt_id"] = new["prompt_id"] = pid_of(su.prompt)
            old["prompt_id"] = su.old_prompt
        session.execute(update(PromptSource).where(PromptSource.id == su.source_id).values(**values))
        audit.record("update", "prompt_source", su.source_id, old, new)


def _update_prompts(session, audit, updates: dict[int, dict[str, tuple[Any, Any]]], by_id: dict[int, dict[str, Any]], now) -> None:
    for pid, fields in updates.items():
        values = {k: new for k, (_old, new) in fields.items()}
        values["revision"] = by_id[pid]["revision"] + 1
        values["updated_at"] = now
        session.execute(update(Prompt).where(Prompt.id == pid).values(**values))
        audit.record("update", "prompt", pid, {k: old for k, (old, _new) in fields.items()}, {k: new for k, (_o, new) in fields.items()})


def _record_dataset(session, audit, parsed: ParsedFile, summary: ImportSummary, options, main_id: int, pair_count: int, now) -> None:
    """The dataset row: what the file was, so an identical re-import is a no-op."""
    ds = session.get(Dataset, main_id)
    prompt_count = session.scalar(select(func.count(func.distinct(PromptSource.prompt_id))).where(PromptSource.dataset_id == main_id))
    new = dict(
        sha256=summary.sha256 if not parsed.match_by_text else None, format=parsed.format,
        row_count=len(parsed.prompts), prompt_count=prompt_count or 0, pair_count=pair_count,
        options=options, source_uri=str(parsed.path.resolve()),
    )
    old = {k: getattr(ds, k) for k in new}
    if old != new:
        session.execute(update(Dataset).where(Dataset.id == main_id).values(imported_at=now, **new))
        audit.record("update", "dataset", main_id, old, new)
