"""Prompts: a searchable, filterable table; edit text/label/category through the facade; undo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Input, Select, Static

from taxonomy_store.vocabulary import REVIEW_ORDER

from taxonomy_store.tui.widgets import PromptCard, PromptTable, safe_text
from taxonomy_store.tui.keys import keys
from taxonomy_store.tui.screens.base import StoreScreen, WorkerResult
from taxonomy_store.tui.edits import Edit, prompt_change
from taxonomy_store.tui.screens.modals import BulkEditModal, CategoryPicker, ConfirmModal, EditPromptModal, NewPairModal

PAGE = 200
SHOWN = 6  # changes a bulk edit's toast (and the undo's) names one by one


class PromptsScreen(StoreScreen):
    MODE, TITLE = "prompts", "Prompts"
    BINDINGS = keys("prompts", """
        slash                | focus_search    | Search                      | search
        e                    | edit            | Edit                        | edit
        space                | mark            | Mark                        | mark
        M                    | clear_marks     | Clear marks                 | clear_marks   | hidden
        o  | sort         | Sort by next column  | sort    | hidden
        c                    | filter_category | Category filter             | category      | hidden
        l                    | cycle_label     | Label filter                | label
        right_square_bracket | page(1)         | Next page                   | next_page     | hidden
        left_square_bracket  | page(-1)        | Previous page               | previous_page | hidden
        d                    | cycle_dataset   | Dataset filter              | dataset       | hidden
        x                    | toggle_deleted  | Show deleted                | deleted       | hidden
        p                    | new_pair        | New pair                    | new_pair      | hidden
        delete               | delete          | Delete (asks)               | delete        | hidden
        u                    | app.undo        | Undo                        | undo
        escape               | clear_filters   | Leave input / clear filters | clear         | hidden
        f5                   | refresh         | Reload                      | reload        | hidden
    """)

    @dataclass
    class Page(WorkerResult):
        prompts: list[Any]

    @dataclass
    class Loaded(WorkerResult):
        prompts: list[Any]
        total: int
        trees: dict[str, Any]
        datasets: list[str]

    @dataclass
    class Changed(Message):
        edit: Edit | None
        what: str
        prompt_id: int | None
        note: str = ""  # said after the edit (a bulk edit: the marked prompts it skipped)

    def __init__(self):
        super().__init__()
        self.search = ""
        self.label: str | None = None
        self.category: str | None = None
        self.dataset: str | None = None
        self.datasets: list[str] = []
        self.include_deleted = False
        self.page_offset = 0
        self.total = 0
        self.tax_tree: Any = None
        self.trees: dict[str, Any] = {}
        self.follow_id: int | None = None
        self.status = Text("")

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        with Horizontal(id="prompt-filters", classes="filters"):
            yield Input(placeholder="search text (/)", id="prompt-search")
            yield Select([(x, x) for x in REVIEW_ORDER], prompt="any label", id="prompt-label")
        yield Static(id="prompt-status", classes="status-line")
        yield PromptTable(id="prompt-table")
        yield PromptCard(id="prompt-card")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(PromptTable).focus()

    def main_widget(self) -> Any:
        return self.query_one(PromptTable)

    def follow(self, entity: str, entity_id: int) -> None:
        if entity == "prompt":
            self.follow_id = entity_id
        self.refresh_data(keep_page=True)

    # -- loading ------------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        return dict(
            search=self.search or None,
            label=self.label,
            category=self.category,
            taxonomy=self.app.taxonomy if self.category else None,
            dataset=self.dataset,
            include_deleted=self.include_deleted,
        )

    def refresh_data(self, *, keep_page: bool = False) -> None:
        if not keep_page:
            self.page_offset = 0
        self.load(self.filters(), self.app.taxonomy, self.page_offset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="prompts.load")
    def load(self, filters: dict[str, Any], taxonomy: str, offset: int) -> None:
        # the page first (one indexed read); the count, the trees and the datasets (seconds at 100,000 prompts) after it
        prompts = self.store.curation.list_prompts(**filters, limit=PAGE, offset=offset)
        self.post_message(self.Page(prompts))
        total = self.store.curation.count_prompts(**filters)
        trees = {t["name"]: self.store.taxonomies.tree(t["name"]) for t in self.store.taxonomies.list()}
        self.post_message(self.Loaded(prompts, total, trees, self.store.review.datasets()))

    def on_prompts_screen_page(self, msg: Page) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        self.query_one(PromptTable).show(msg.prompts, self.follow_id)
        self.follow_id = None
        self._status_line(None, len(msg.prompts))
        self._show_card()

    def on_prompts_screen_loaded(self, msg: Loaded) -> None:
        if msg.stale:
            return
        self.trees, self.datasets = msg.trees, msg.datasets
        self.tax_tree = msg.trees.get(self.app.taxonomy)
        self.total = msg.total
        self._status_line(msg.total, len(msg.prompts))

    def _status_line(self, total: int | None, shown: int) -> None:
        """`N prompts (first–last)` and the filters; `counting…` until the count is in."""
        status = Text(f"{total} prompts", style="bold") if total is not None else Text("counting prompts…", style="bold yellow")
        if shown and (total is None or total > shown):
            status.append(f" ({self.page_offset + 1}–{self.page_offset + shown})", style="dim")
        for name, value in (("search", self.search), ("label", self.label), ("category", self.category), ("dataset", self.dataset)):
            if value:
                status.append(f"  {name}: ")
                status.append_text(safe_text(value, "cyan"))
        if self.include_deleted:
            status.append("  +deleted", style="magenta")
        self.status = status
        self._render_status()

    def _render_status(self) -> None:
        status = self.status.copy()
        marked = len(self.query_one(PromptTable).marked)
        if marked:
            status.append(f"\n{marked} marked: e edits all of them as one edit (one u undoes it) · M clears",
                          style="bold magenta")
        self.query_one("#prompt-status", Static).update(status)

    @on(PromptTable.RowHighlighted)
    def _show_card(self) -> None:
        self.query_one(PromptCard).show(self.query_one(PromptTable).current(), "prompt")

    # -- filters ------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt-search")
    def _search(self, event: Input.Submitted) -> None:
        self.search = event.value.strip()
        self.query_one(PromptTable).focus()
        self.refresh_data()

    @on(Select.Changed, "#prompt-label")
    def _label(self, event: Select.Changed) -> None:
        value = None if event.value is Select.NULL else str(event.value)
        if value != self.label:
            self.label = value
            self.refresh_data()

    def action_focus_search(self) -> None:
        self.query_one("#prompt-search", Input).focus()

    def action_cycle_label(self) -> None:
        order = [None, *REVIEW_ORDER]
        nxt = order[(order.index(self.label) + 1) % len(order)]
        select = self.query_one("#prompt-label", Select)
        if nxt is None:
            select.clear()
        else:
            select.value = nxt

    def action_page(self, step: int) -> None:
        offset = self.page_offset + step * PAGE
        if 0 <= offset < max(self.total, 1):
            self.page_offset = offset
            self.refresh_data(keep_page=True)

    def action_cycle_dataset(self) -> None:
        order: list[str | None] = [None, *self.datasets]
        self.dataset = order[(order.index(self.dataset) + 1) % len(order)] if self.dataset in order else None
        self.refresh_data()

    def action_toggle_deleted(self) -> None:
        self.include_deleted = not self.include_deleted
        self.refresh_data()

    def action_filter_category(self) -> None:
        if self.tax_tree is None:
            return

        def chosen(code: str | None) -> None:
            if code:
                self.category = code
                self.refresh_data()

        self.app.push_screen(CategoryPicker(self.tax_tree, self.category), chosen)

    def action_clear_filters(self) -> None:
        if self.leave_input():
            return
        self.search, self.label, self.category, self.dataset, self.include_deleted = "", None, None, None, False
        self.query_one("#prompt-search", Input).value = ""
        self.query_one("#prompt-label", Select).clear()
        self.query_one(PromptTable).focus()
        self.refresh_data()

    # -- edits (all through the facade, in workers) -------------------------------------------
    def action_edit(self) -> None:
        if self.query_one(PromptTable).marked:
            self.bulk_edit()
            return
        prompt = self.query_one(PromptTable).current()
        if prompt is None:
            return

        def done(changes: dict | None) -> None:
            if changes:
                self.write("update", prompt.id, changes)

        tree = self.trees.get(prompt.taxonomy or "") or self.tax_tree
        self.app.push_screen(EditPromptModal(prompt, tree), done)

    def action_delete(self) -> None:
        prompt = self.query_one(PromptTable).current()
        if prompt is None or prompt.deleted:
            return
        question = Text.assemble(("Delete prompt ", "bold"), (f"#{prompt.id}", "bold"), ("?\n\n", "bold"),
                                 safe_text(prompt.text, limit=200),
                                 ("\n\nA soft delete: u (or `tstore prompt restore`) brings it back.", "dim"))
        self.app.push_screen(ConfirmModal(question, yes="Delete"),
                             lambda yes: yes and self.write("delete", prompt.id, {}))

    def action_new_pair(self) -> None:
        prompt = self.query_one(PromptTable).current()
        if prompt is None:
            return
        if prompt.label != "unsafe":
            self.notify("pick an unsafe prompt to write a safe variant of", severity="warning")
            return
        types = [n.code for n in self.tax_tree.walk()] if self.tax_tree and self.app.taxonomy == "xstest-pair-types" else []
        self.app.push_screen(NewPairModal(prompt, self.app.pair_types or types),
                             lambda v: v and self.write("pair", prompt.id, v))

    @work(thread=True, exclusive=True, exit_on_error=False, group="prompts.write")
    def write(self, what: str, prompt_id: int, changes: dict[str, Any]) -> None:
        if what == "update":
            edit = self.update_prompt(prompt_id, changes)
        elif what == "delete":
            deleted = self.store.curation.delete_prompt(prompt_id)
            edit = self.edited("prompt", deleted, f"prompt #{prompt_id} live → deleted")
        else:
            edit = self.create_pair(prompt_id, changes)
        self.post_message(self.Changed(edit, what, prompt_id))

    # -- several marked prompts: one edit, one audit batch, one undo ---------------------------
    def action_mark(self) -> None:
        table = self.query_one(PromptTable)
        prompt = table.current()
        if prompt is None:
            return
        if prompt.deleted and prompt.id not in table.marked:
            self.toast(f"prompt #{prompt.id} is deleted: restore it (u) before editing it", severity="warning")
            return
        table.toggle_mark(prompt.id)
        table.move_cursor(row=min(table.cursor_row + 1, table.row_count - 1))
        self._render_status()

    def action_clear_marks(self) -> None:
        self.query_one(PromptTable).clear_marks()
        self._render_status()

    def bulk_edit(self) -> None:
        """`e` with marks: one label and/or category for every marked prompt, asked, then confirmed with the count."""
        marked = sorted(self.query_one(PromptTable).marked)
        tree = self.tax_tree

        def confirmed(changes: dict[str, Any], yes: bool | None) -> None:
            if yes:
                self.write_bulk(marked, changes)

        def chosen(changes: dict | None) -> None:
            if not changes:
                return
            what = ", ".join(f"{k} → {v}" for k, v in changes.items() if k != "taxonomy")
            listed = sum(1 for pid in marked if pid in self.query_one(PromptTable).prompts)
            question = Text.assemble(("Change ", "bold"), (f"{len(marked)} marked prompts", "bold magenta"),
                                     (": ", "bold"), safe_text(what, "bold cyan"), ("?\n\n", "bold"),
                                     f"{listed} of them on this page, {len(marked) - listed} elsewhere "
                                     f"(ids {self._ids(marked)}).\n",
                                     ("One audit batch: one u undoes all of it.", "dim"))
            self.app.push_screen(ConfirmModal(question, yes=f"Change {len(marked)}"), lambda yes: confirmed(changes, yes))

        self.app.push_screen(BulkEditModal(len(marked), tree), chosen)

    @staticmethod
    def _ids(ids: list[int], shown: int = 8) -> str:
        return ", ".join(f"#{i}" for i in ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")

    @work(thread=True, exclusive=True, exit_on_error=False, group="prompts.write")
    def write_bulk(self, marked: list[int], changes: dict[str, Any]) -> None:
        """One `update_prompts` call (one audit batch) for every marked prompt the change changes."""
        curation = self.store.curation
        old = {pid: curation.get_prompt(pid) for pid in marked}
        todo: dict[int, dict[str, Any]] = {}
        for pid, p in old.items():
            change = {k: v for k, v in changes.items()
                      if k == "taxonomy" or v != (p.label if k == "label" else p.category_code)}
            if not p.deleted and set(change) - {"taxonomy"}:
                todo[pid] = change
        deleted = [pid for pid, p in old.items() if p.deleted]
        same = len(marked) - len(todo) - len(deleted)
        note = (f"; {same} marked already so" if same else "") + (f"; {len(deleted)} deleted, left alone" if deleted else "")
        edit = None
        if todo:
            views = curation.update_prompts(todo)
            batch = next((v.batch for v in views if v.batch), None)
            parts = [prompt_change(old[pid], c)[len("prompt "):] for pid, c in todo.items()]
            what = f"{len(todo)} prompts: " + "; ".join(parts[:SHOWN]) + (f"; and {len(parts) - SHOWN} more" if len(parts) > SHOWN else "")
            edit = Edit(batch, what, self.MODE, "prompt", next(iter(todo))) if batch else None
        self.post_message(self.Changed(edit, "bulk", next(iter(todo), None), note))

    def on_prompts_screen_changed(self, msg: Changed) -> None:
        if msg.what == "bulk":
            self.query_one(PromptTable).clear_marks()
            self.written(msg.edit, "no marked prompt needed the change")
            if msg.note:
                self.toast(msg.note.lstrip("; "))
            self.refresh_data(keep_page=True)
            return
        self.written(msg.edit, f"{msg.what}: prompt #{msg.prompt_id}")
        self.follow_id = msg.prompt_id if msg.what == "update" else None
        self.refresh_data(keep_page=True)
