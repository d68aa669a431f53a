"""Planning an import: file rows + what the store holds -> the changes to make. No SQL here.

The rules, each a method of `Planner` (tests/test_import_plan.py drives them with plain data):
- a row whose source (dataset, key) is stored and whose row hash is unchanged: nothing to do;
- a changed row updates its prompt (label, category, text) in place — unless the new text is
  already a prompt (this file's earlier row, or a stored prompt): the source moves there; or
  the prompt is shared with other sources: editing it would edit them too, so the row *forks*
  a new prompt of its own (`edit_target`);
- the same text twice in one file: one prompt, one source per row (`repeat_row`);
- tstore's exports list a prompt's other dataset rows (`also_in`): each is linked unless stored
  (`membership_row`);
- a text already stored (from any dataset) is *linked*: a new source on that prompt, never a
  second prompt (`stored_text_row`); tstore's own exports instead set label and category;
- labels merge: unlabeled takes the other side's label; safe against unsafe is a *conflict*
  (`merge_label`), and any conflict refuses the whole file;
- a new prompt's source key stays the file's key unless a stored source of that dataset has it
  (`unique_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from taxonomy_store.errors import InputFileError
from taxonomy_store.importers import PairRecord, PromptRecord

# A new prompt, by its index in ImportPlan.inserts; a stored prompt is its id (int).
NewRef = tuple[str, int]
PromptRef = Union[int, NewRef]
Progress = Callable[[str, int, int], None]


@dataclass
class StoredState:
    """What the store holds that the file's rows can meet, as plain data.

    The planner updates `live` and `by_id` as it plans (an edited text moves in `live`, a merged
    label shows in `by_id`), so later rows see the earlier rows' effect."""

    # (dataset id, source key) -> (source id, prompt id, row hash) for the datasets of the file
    sources: dict[tuple[int, str], tuple[int, int, str | None]]
    live: dict[str, dict[str, Any]]  # text hash -> live prompt (id, text, text_sha256, label, category_id, revision)
    by_id: dict[int, dict[str, Any]]  # prompt id -> the same dicts (live ones and the sources' prompts)
    count_sources: Callable[[int], int]  # how many sources a stored prompt has


@dataclass
class RowFacts:
    """Per file row (parallel to the records): its text hash, dataset, category and row hash.

    A dataset is its id, or a negative placeholder for one created when first used."""

    hashes: list[str]
    datasets: list[int]
    categories: list[int | None]
    row_shas: list[str]


@dataclass(slots=True)
class Link:
    """A new source row: (dataset, key) of the file, pointing at a prompt."""

    dataset: int
    key: str
    row_sha256: str
    extra: dict[str, Any]
    prompt: PromptRef


@dataclass(slots=True)
class SourceUpdate:
    """A stored source whose row changed; `prompt` is set when the row moves to another prompt."""

    source_id: int
    row_sha256: str
    extra: dict[str, Any]
    old_row_sha256: str | None
    prompt: PromptRef | None = None
    old_prompt: int | None = None


@dataclass
class Conflict:
    """One text labeled safe in one place and unsafe in another."""

    row: int
    column: str | None
    label: str
    other_label: str
    where: str

    def error(self, path: Path | str) -> InputFileError:
        return InputFileError(
            path, f"label conflict: this text is {self.label} here but {self.other_label} in {self.where}", row=self.row,
            column=self.column, hint="fix the label in the file, or relabel the stored prompt with `tstore prompt edit ID --label`",
        )


@dataclass
class ImportPlan:
    inserts: list[dict[str, Any]] = field(default_factory=list)  # new prompts (dataset_id may be a placeholder)
    links: list[Link] = field(default_factory=list)
    source_updates: list[SourceUpdate] = field(default_factory=list)
    prompt_updates: dict[int, dict[str, tuple[Any, Any]]] = field(default_factory=dict)  # id -> field -> (old, new)
    forks: list[int] = field(default_factory=list)  # indices into inserts forked off a shared prompt
    conflicts: list[Conflict] = field(default_factory=list)
    key_refs: dict[str, PromptRef] = field(default_factory=dict)  # file key -> its prompt (for pairs)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    linked_existing: int = 0
    duplicates_in_file: int = 0
    changes: list[str] = field(default_factory=list)  # the first few changed rows, for people

    def note_change(self, line: str) -> None:
        if len(self.changes) < 20:
            self.changes.append(line)


def plan_import(
    records: list[PromptRecord], facts: RowFacts, stored: StoredState, *, match_by_text: bool = False,
    progress: Progress | None = None,
) -> ImportPlan:
    """The plan for these rows; conflicts are collected in `plan.conflicts`, not raised."""
    planner = Planner(records, facts, stored, match_by_text=match_by_text)
    n = len(records)
    for i in range(n):
        if progress and i % 5000 == 0:
            progress("check", i, n)
        planner.plan_row(i)
    if progress:
        progress("check", n, n)
    return planner.plan


class Planner:
    def __init__(self, records: list[PromptRecord], facts: RowFacts, stored: StoredState, *, match_by_text: bool = False):
        self.records, self.facts, self.stored = records, facts, stored
        self.match_by_text = match_by_text
        self.plan = ImportPlan()
        self.seen_text: dict[str, tuple[PromptRef, int]] = {}  # text hash -> (its prompt, first row index)
        self.taken_keys: set[tuple[int, str]] = set(stored.sources)
        self._source_counts: dict[int, int] = {}

    # -- one row -------------------------------------------------------------------------
    def plan_row(self, i: int) -> None:
        rec, h = self.records[i], self.facts.hashes[i]
        if rec.membership:
            self.membership_row(i)
            return
        first = self.seen_text.get(h)
        if first is not None:
            self.repeated_text(rec, first)
        src = None if self.match_by_text else self.stored.sources.get((self.facts.datasets[i], rec.key))
        if src is not None:
            self.known_row(i, src, first)
        elif first is not None:
            self.repeat_row(i, first[0])
        elif h in self.stored.live:
            self.stored_text_row(i, self.stored.live[h])
        else:
            self.new_row(i)

    def repeated_text(self, rec: PromptRecord, first: tuple[PromptRef, int]) -> None:
        """The same text earlier in this file: counted, and its labels must agree."""
        self.plan.duplicates_in_file += 1
        first_rec = self.records[first[1]]
        if "unlabeled" not in (rec.label, first_rec.label) and rec.label != first_rec.label:
            self.conflict(rec, first_rec.label, f"row {first_rec.row} of this file")

    def known_row(self, i: int, src: tuple[int, int, str | None], first: tuple[PromptRef, int] | None) -> None:
        """A row whose (dataset, key) is stored: unchanged, updated in place, or moved/forked."""
        rec, h, cat = self.records[i], self.facts.hashes[i], self.facts.categories[i]
        sid, pid, old_sha = src
        self.plan.key_refs[rec.key] = pid
        if old_sha == self.facts.row_shas[i]:
            self.seen_text.setdefault(h, (pid, i))
            self.plan.unchanged += 1
            return
        fields: dict[str, Any] = {"label": rec.label, "category_id": cat}
        target = self.edit_target(i, pid, first, fields)
        update = SourceUpdate(sid, self.facts.row_shas[i], rec.extra or {}, old_sha)
        self.plan.source_updates.append(update)
        if target != pid:
            self.move_row(i, update, pid, target)
            return
        self.seen_text.setdefault(h, (pid, i))
        before = dict(self.plan.prompt_updates.get(pid, {}))
        self.change(pid, fields)
        if self.plan.prompt_updates.get(pid, {}) != before:
            self.plan.updated += 1
            self.plan.note_change(f"row {rec.row} ({rec.key}): " + ", ".join(sorted(self.plan.prompt_updates[pid])))
        else:
            self.plan.unchanged += 1

    def edit_target(self, i: int, pid: int, first: tuple[PromptRef, int] | None, fields: dict[str, Any]) -> PromptRef:
        """Where a changed row's text goes: its own prompt (edited in place: `fields` gains the
        text), this file's earlier row with that text, a stored prompt with that text, or — when
        other sources share the prompt — a new prompt forked off it."""
        rec, h = self.records[i], self.facts.hashes[i]
        p = self.stored.by_id[pid]
        if p["text"] == rec.text:
            return pid
        other = self.stored.live.get(h)
        if first is not None:  # the new text is an earlier row's text in this file
            return first[0]
        if other is not None and other["id"] != pid:  # ... or an already stored prompt's
            return other["id"]
        if self.shared(pid):  # other rows or datasets keep the old text: this row forks
            ref = self.add_new(i)
            self.plan.forks.append(ref[1])
            return ref
        fields.update(text=rec.text, text_sha256=h)
        self.stored.live.pop(p["text_sha256"], None)
        self.stored.live[h] = p
        return pid

    def move_row(self, i: int, update: SourceUpdate, pid: int, target: PromptRef) -> None:
        """The row's source now points at another prompt (an existing one, or a fork)."""
        rec, h, cat = self.records[i], self.facts.hashes[i], self.facts.categories[i]
        update.prompt, update.old_prompt = target, pid
        if not isinstance(target, tuple):
            self.merge_label(rec, target, f"prompt {target}")
            if self.stored.by_id[target]["category_id"] is None and cat is not None:
                self.change(target, {"category_id": cat})
        self.plan.key_refs[rec.key] = target
        self.seen_text.setdefault(h, (target, i))
        self.plan.updated += 1
        self.plan.note_change(f"row {rec.row} ({rec.key}): text (now a prompt of its own text)")

    def repeat_row(self, i: int, ref: PromptRef) -> None:
        """A new row whose text an earlier row of this file has: its own source on that prompt."""
        rec = self.records[i]
        self.plan.key_refs[rec.key] = ref
        if rec.label != "unlabeled":  # an unlabeled first occurrence takes this row's label
            if isinstance(ref, tuple):
                if self.plan.inserts[ref[1]]["label"] == "unlabeled":
                    self.plan.inserts[ref[1]]["label"] = rec.label
            else:
                self.merge_label(rec, ref, f"prompt {ref}")
        if not self.match_by_text:
            self.plan.links.append(Link(self.facts.datasets[i], rec.key, self.facts.row_shas[i], rec.extra or {}, ref))

    def stored_text_row(self, i: int, existing: dict[str, Any]) -> None:
        """A new row whose text is stored: linked to that prompt (tstore exports: set its label and category)."""
        rec, cat = self.records[i], self.facts.categories[i]
        pid = existing["id"]
        self.plan.key_refs[rec.key] = pid
        self.seen_text[self.facts.hashes[i]] = (pid, i)
        if self.match_by_text:
            # tstore's own export: the file is the curated truth for label and category.
            before = set(self.plan.prompt_updates.get(pid, {}))
            fields: dict[str, Any] = {"label": rec.label}
            if rec.category_column is not None:  # a pair export says nothing about categories
                fields["category_id"] = cat
            self.change(pid, fields)
            if set(self.plan.prompt_updates.get(pid, {})) != before:
                self.plan.updated += 1
            else:
                self.plan.unchanged += 1
            return
        self.merge_label(rec, pid, f"prompt {pid}")
        if existing["category_id"] is None and cat is not None:
            self.change(pid, {"category_id": cat})
        self.plan.linked_existing += 1
        self.plan.links.append(Link(self.facts.datasets[i], rec.key, self.facts.row_shas[i], rec.extra or {}, pid))

    def new_row(self, i: int) -> None:
        rec = self.records[i]
        ref = self.add_new(i)
        self.plan.key_refs[rec.key] = ref
        self.seen_text[self.facts.hashes[i]] = (ref, i)
        own_key = self.plan.inserts[-1]["source_key"]
        self.plan.links.append(Link(self.facts.datasets[i], own_key, self.facts.row_shas[i], rec.extra or {}, ref))

    def membership_row(self, i: int) -> None:
        """tstore exports: one more dataset row of the prompt the line above made or matched. Linked
        unless that (dataset, key) is stored already (re-importing into the same store adds nothing)."""
        rec, ds = self.records[i], self.facts.datasets[i]
        ref = self.seen_text[self.facts.hashes[i]][0]
        if (ds, rec.key) in self.taken_keys:
            return
        self.taken_keys.add((ds, rec.key))
        self.plan.links.append(Link(ds, rec.key, self.facts.row_shas[i], {}, ref))

    # -- the rules the rows share ----------------------------------------------------------
    def add_new(self, i: int) -> NewRef:
        rec, h = self.records[i], self.facts.hashes[i]
        ds = self.facts.datasets[i]
        key = self.unique_key(ds, rec.key, h)
        self.plan.inserts.append(
            dict(text=rec.text, text_sha256=h, label=rec.label, category_id=self.facts.categories[i], dataset_id=ds,
                 source_key=key, revision=1)
        )
        self.plan.added += 1
        return ("new", len(self.plan.inserts) - 1)

    def unique_key(self, ds: int, key: str, h: str) -> str:
        """A new prompt's source key: the file's, unless taken in that dataset by another row
        (a stored source of this very row keeps it: that source is moved, not duplicated)."""
        if (ds, key) in self.taken_keys and not ((ds, key) in self.stored.sources and not self.match_by_text):
            key = f"{key}#{h[:12]}"
        self.taken_keys.add((ds, key))
        return key

    def merge_label(self, rec: PromptRecord, pid: int, where: str) -> None:
        existing = self.stored.by_id[pid]["label"]
        if rec.label == existing or rec.label == "unlabeled":
            return
        if existing == "unlabeled":
            self.change(pid, {"label": rec.label})
            return
        self.conflict(rec, existing, where)

    def change(self, pid: int, fields: dict[str, Any]) -> None:
        """Record field changes of a stored prompt, keeping the value it had before the import."""
        p = self.stored.by_id[pid]
        for k, v in fields.items():
            if p[k] != v:
                pending = self.plan.prompt_updates.setdefault(pid, {})
                old = pending[k][0] if k in pending else p[k]
                pending[k] = (old, v)
                p[k] = v

    def shared(self, pid: int) -> bool:
        if pid not in self._source_counts:
            self._source_counts[pid] = self.stored.count_sources(pid)
        return self._source_counts[pid] > 1

    def conflict(self, rec: PromptRecord, other_label: str, where: str) -> None:
        self.plan.conflicts.append(Conflict(rec.row, rec.label_column or rec.text_column, rec.label, other_label, where))


# -- pairs ----------------------------------------------------------------------------------------
PAIR_FIELDS = ("id", "pair_set_id", "unsafe_prompt_id", "safe_prompt_id", "pair_type", "source_key", "status", "note")


@dataclass
class PairPlan:
    inserts: list[dict[str, Any]] = field(default_factory=list)  # new pairs (without timestamps)
    updates: list[tuple[int, dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (pair id, old, new)
    unchanged: int = 0


def plan_pairs(
    wanted: list[tuple[int, PairRecord]], key_pid: dict[str, int], stored: list[dict[str, Any]], *, match_by_text: bool,
    path: Path | str,
) -> PairPlan:
    """The file's pairs (each with its pair set id) against the stored pairs of those sets.

    A pair matches a stored one by its source key in the set, else by its two prompts (tstore
    exports: only by its two prompts, and they also set status and note); the same two prompts
    twice in one file count once; a pair whose two sides are one prompt is refused."""
    by_key = {(e["pair_set_id"], e["source_key"]): e for e in stored}
    by_ids = {(e["pair_set_id"], e["unsafe_prompt_id"], e["safe_prompt_id"]): e for e in stored}
    plan, seen = PairPlan(), set()
    for ps_id, p in wanted:
        u, s = key_pid[p.unsafe_key], key_pid[p.safe_key]
        if u == s:
            raise InputFileError(path, "the unsafe and the safe side of this pair are the same text", row=p.row)
        ids = (ps_id, u, s)
        if ids in seen:
            plan.unchanged += 1
            continue
        seen.add(ids)
        e = by_ids.get(ids) if match_by_text else (by_key.get((ps_id, p.key)) or by_ids.get(ids))
        if e is None:
            plan.inserts.append(dict(pair_set_id=ps_id, unsafe_prompt_id=u, safe_prompt_id=s, pair_type=p.pair_type,
                                     source_key=p.key, status=p.status, note=p.note))
            continue
        values = {"unsafe_prompt_id": u, "safe_prompt_id": s, "pair_type": p.pair_type}
        if match_by_text:
            values.update(status=p.status, note=p.note)
        old = {k: e[k] for k in values if e[k] != values[k]}
        if old:
            plan.updates.append((e["id"], old, {k: values[k] for k in old}))
        else:
            plan.unchanged += 1
    return plan
