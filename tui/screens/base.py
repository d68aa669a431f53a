"""What every store-backed screen shares: the facade, the header and screen bar, leaving inputs,
and turning its own workers' failures into a modal on this screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Input, Select, TextArea
from textual.worker import NoActiveWorker, Worker, WorkerState, get_current_worker

from taxonomy_store.text import inert

from taxonomy_store.tui.edits import Edit, prompt_change
from taxonomy_store.tui.widgets import ScreenBar
from taxonomy_store.tui.widgets.fit_table import Sortable

if TYPE_CHECKING:
    from taxonomy_store.facade import StoreFacade
    from taxonomy_store.tui.host import StoreHost


class WorkerResult(Message):
    """What a read worker found, posted back to its screen.

    A newer read of the same exclusive group cancels the older worker, but a thread cannot be
    stopped: the older one still finishes and posts, possibly after the newer one. Its result is
    then `stale`, and the handler drops it instead of drawing old data over new.
    (Results of writes are not WorkerResults: a write that happened is always reported.)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            self.worker: Worker | None = get_current_worker()
        except NoActiveWorker:
            self.worker = None

    @property
    def stale(self) -> bool:
        return self.worker is not None and self.worker.is_cancelled


class StoreScreen(Screen):
    """A screen that reads and writes only through `self.store` (the facade), always in workers.

    Worker methods are `@work(thread=True, exclusive=True, exit_on_error=False, group=...)`;
    they post a message back with their result, and a failure lands in `on_worker_state_changed`,
    which hands it to the app's single error handler: a modal on this screen (held back until the
    curator comes back here when another screen is showing).
    """

    app: "StoreHost"  # type: ignore[assignment]
    MODE = ""  # the app mode this screen is shown under
    TITLE = ""

    def __init__(self) -> None:
        super().__init__()
        self.pending_errors: list[tuple[BaseException, str | None]] = []
        self.seen_revision: tuple | None = None  # the app's revision token when this screen last read the store

    @property
    def store(self) -> "StoreFacade":
        return self.app.store

    @property
    def encoder(self) -> str | None:
        return self.app.encoder

    def chrome(self) -> ComposeResult:
        """The header (encoder, taxonomy) and the screen bar every screen starts with."""
        yield Header()
        yield ScreenBar(self.MODE, id="screen-bar")

    # -- worker failures -------------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.worker_failed(event.worker)
            self.app.report_error(event.worker.error, where=event.worker.group, screen=self)
        self.app.worker_changed(event.worker, event.state)

    def worker_failed(self, worker: Worker) -> None:
        """Hook: put the screen back in a usable state after one of its workers failed."""

    def on_screen_resume(self) -> None:
        while self.pending_errors:
            error, where = self.pending_errors.pop(0)
            self.app.report_error(error, where=where, screen=self)
        revision = getattr(self.app, "revision", None)
        moved = self.seen_revision is not None and revision != self.seen_revision
        self.seen_revision = revision
        self.resumed(moved)
        # a write the periodic poll has not seen yet (this app's, on another screen): read the token
        # now; if it moved, the app reloads this screen (`data_changed`) when the answer comes
        poll = getattr(self.app, "poll_revision", None)
        if poll is not None and not moved:
            poll()

    def resumed(self, data_moved: bool) -> None:
        """Shown again: reload when the store changed since this screen last read it."""
        if data_moved:
            self.refresh_data()

    def data_changed(self, reload: bool = True) -> None:
        """The app saw the store change while this screen shows (reload=False: this screen's own
        write, which reloads it already)."""
        self.seen_revision = getattr(self.app, "revision", None)
        if reload:
            self.refresh_data()

    # -- focus ------------------------------------------------------------------------------
    def main_widget(self) -> Any | None:
        """The widget the number keys and one-key actions work from (the screen's table or tree)."""
        return None

    def leave_input(self) -> bool:
        """Escape inside a text field: move focus to the main widget so 1–6 and q work again."""
        if isinstance(self.focused, (Input, TextArea, Select)):
            target = self.main_widget()
            if target is not None:
                target.focus()
            else:
                self.set_focus(None)
            return True
        return False

    def action_leave_input(self) -> None:
        self.leave_input()

    def action_sort(self) -> None:
        """`o`: sort the focused table (else the screen's main one) by its next column."""
        table = self.focused if isinstance(self.focused, Sortable) else self.main_widget()
        if isinstance(table, Sortable):
            table.sort_next()
            self.toast(table.sort_label() or "unsorted")

    def on_mount(self) -> None:
        self.watch(self.app, "encoder", self._encoder_changed, init=False)  # type: ignore[arg-type]  # the app is a DOMNode
        self.seen_revision = getattr(self.app, "revision", None)
        self.refresh_data()

    def _encoder_changed(self, _old: str | None, _new: str | None) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        """Reload what the screen shows (in a worker)."""

    def action_refresh(self) -> None:
        self.reopen_index()

    @work(thread=True, exclusive=True, exit_on_error=False, group="screen.reopen")
    def reopen_index(self) -> None:
        """F5: reopen the embedded Chroma client first, so vectors another process wrote are seen."""
        self.store.embeddings.reopen()
        self.app.call_from_thread(self.refresh_data)

    def follow(self, entity: str, entity_id: int) -> None:
        """Move the cursor to this prompt or pair (after an undo) and reload."""
        self.refresh_data()

    def edited(self, entity: str, view: Any, what: str) -> Edit | None:
        """In a write worker: the view a write returned as one of this run's undoable edits
        (None when the write changed nothing, so `u` never reaches someone else's batch)."""
        return Edit(view.batch, what, self.MODE, entity, view.id) if view.batch else None

    def update_prompt(self, prompt_id: int, changes: dict[str, Any]) -> Edit | None:
        """In a write worker: change a prompt's text, label or category, as one undoable edit."""
        curation = self.store.curation
        old = curation.get_prompt(prompt_id)
        return self.edited("prompt", curation.update_prompt(prompt_id, **changes), prompt_change(old, changes))

    def create_pair(self, unsafe_id: int, changes: dict[str, Any]) -> Edit | None:
        """In a write worker: a new pair from an unsafe prompt and a written safe variant."""
        pair = self.store.curation.create_pair(unsafe_id, safe_text=changes["safe_text"],
                                               pair_type=changes.get("pair_type"))
        return self.edited("pair", pair, f"pair #{pair.id} created: prompt #{unsafe_id} ↔ prompt #{pair.safe_prompt_id}")

    def written(self, edit: Edit | None, fallback: str) -> None:
        """Back on the screen after a write: keep the edit for `u` and say what was done."""
        self.app.record_edit(edit)
        self.toast(edit.what if edit else fallback)

    def toast(self, message: str | Text, *, severity: str = "information", timeout: float | None = None) -> None:
        """A notification whose text may hold prompt text or category names: never parsed as markup."""
        plain = inert(message.plain if isinstance(message, Text) else message)
        self.app.notify(plain, severity=severity, markup=False, timeout=timeout)
