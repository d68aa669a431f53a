"""The tstore curator app: screens (modes) over one `Store` facade, workers for every blocking call."""

from __future__ import annotations

import time
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.worker import Worker, WorkerState

from taxonomy_store.errors import TStoreError
from taxonomy_store.facade import StoreFacade
from taxonomy_store.text import inert
from taxonomy_store.vocabulary import DEFAULT_ENCODER, DEFAULT_TAXONOMY, choose_level

from taxonomy_store.tui.commands import TStoreCommands
from taxonomy_store.tui.edits import Edit
from taxonomy_store.tui.screens.base import StoreScreen
from taxonomy_store.tui.screens.crosswalk import CrosswalkScreen
from taxonomy_store.tui.screens.metrics import MetricsScreen
from taxonomy_store.tui.screens.modals import ErrorModal, KeysModal
from taxonomy_store.tui.screens.pairs import PairsScreen
from taxonomy_store.tui.screens.prompts import PromptsScreen
from taxonomy_store.tui.screens.query import QueryScreen
from taxonomy_store.tui.screens.suspects import SuspectsScreen
from taxonomy_store.tui.screens.taxonomy import TaxonomyScreen
from taxonomy_store.tui.widgets import SCREENS

SCREEN_KEYS = {mode: key for mode, key, _ in SCREENS}
POLL_S = 2.0  # how often the app looks for data changed under its screens


def binding_rows(bindings: list[Any]) -> list[tuple[str, str]]:
    """(keys, description) for the keys list: every binding with a description, hidden ones too."""
    rows = []
    for b in bindings:
        if isinstance(b, Binding) and b.description:
            keys = ", ".join(b.key_display if b.key_display and "," not in b.key else k for k in b.key.split(","))
            rows.append((keys.replace("question_mark", "?").replace("slash", "/")
                         .replace("right_square_bracket", "]").replace("left_square_bracket", "["), b.description))
    return rows


def encoder_name(e: Any) -> str:
    if isinstance(e, str):
        return e
    if isinstance(e, dict):
        return e["name"]
    return e.name


class TStoreApp(App):
    """Curators' tool: taxonomy, prompts, pair review, suspects, metrics, query."""

    CSS_PATH = "app.tcss"
    TITLE = "tstore"
    ENABLE_COMMAND_PALETTE = True
    NOTIFICATION_TIMEOUT = 10  # toasts name the change made: long enough to read a prompt's text change
    COMMANDS = App.COMMANDS | {TStoreCommands}

    SCREEN_TITLES = {
        "taxonomy": "Taxonomy",
        "prompts": "Prompts",
        "pairs": "Pairs",
        "suspects": "Suspects",
        "metrics": "Metrics",
        "query": "Query",
    }
    MODES = {
        "taxonomy": TaxonomyScreen,
        "prompts": PromptsScreen,
        "pairs": PairsScreen,
        "suspects": SuspectsScreen,
        "metrics": MetricsScreen,
        "query": QueryScreen,
        "crosswalk": CrosswalkScreen,  # reached by `tstore tui --screen crosswalk` (not on the 1–6 bar)
    }
    # The screen bar shows 1–6; the footer keeps to the keys a curator needs most, so it fits 80 columns.
    BINDINGS = [
        *(Binding(str(n), f"switch_mode('{mode}')", title, id=f"goto.{mode}", show=False)
          for n, (mode, title) in enumerate(SCREEN_TITLES.items(), start=1)),
        Binding("u", "undo", "Undo", id="app.undo", show=False),
        Binding("f2", "next_encoder", "Next encoder", id="app.next_encoder", show=False),
        Binding("question_mark,f1", "show_keys", "Keys", id="app.keys", key_display="?"),
        Binding("q", "quit", "Quit", id="app.q"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False),
    ]

    # The encoder whose scores, neighbours and similarities the screens show.
    encoder: reactive[str | None] = reactive(None, init=False)

    def __init__(self, store: StoreFacade, *, encoder: str | None = None, taxonomy: str = DEFAULT_TAXONOMY,
                 start: str = "taxonomy"):
        super().__init__()
        self.store = store
        self.taxonomy = taxonomy
        self.start_mode = start
        self.encoder_names: list[str] = [encoder] if encoder else []
        self.set_reactive(TStoreApp.encoder, encoder)
        self.errors: list[BaseException] = []
        self.pair_types: list[str] = []
        self.levels: dict[str, list[str]] = {}
        # The audit batches this run of the app wrote, oldest first: `u` undoes only these.
        self.edits: list[Edit] = []
        # the store's revision token as last polled (None before the first poll): screens compare theirs
        self.revision: tuple | None = None
        self.last_write = 0.0
        self.last_write_screen: object | None = None  # the screen that made the last write (it reloads itself)

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        self.load_context()
        # the first token is read at once, not on the first tick: a write made before that tick
        # (another terminal, right after start) must count as a change, not as the starting point
        self.poll_revision()
        self.set_interval(POLL_S, self.poll_revision)

    # -- data changed under the screens (another process, or this app on another screen) ----------
    @work(thread=True, exclusive=True, exit_on_error=False, group="app.poll")
    def poll_revision(self) -> None:
        self.call_from_thread(self._revision_seen, self.store.review.revision())

    def _revision_seen(self, token: tuple) -> None:
        old, self.revision = self.revision, token
        if old is None or old == token or not isinstance(self.screen, StoreScreen):
            return  # other screens compare the token when they show again
        # a screen reloads itself after its own write; anything else (another process) reloads it here
        own = self.screen is self.last_write_screen and time.monotonic() - self.last_write <= 1.5 * POLL_S
        self.screen.data_changed(reload=not own)

    # -- encoders and taxonomies ---------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="app.context")
    def load_context(self) -> None:
        names = [encoder_name(e) for e in self.store.encoders.list()]
        levels = {t["name"]: list(t["levels"] or []) for t in self.store.taxonomies.list()}
        self.call_from_thread(self._context_loaded, names, levels)

    def level_for(self, taxonomy: str) -> str:
        """The level categories are voted and scored at: harm_type for Do-Not-Answer, else the deepest."""
        return choose_level(self.levels.get(taxonomy))

    def _context_loaded(self, names: list[str], levels: dict[str, list[str]]) -> None:
        self.encoder_names = names
        self.levels = levels
        if self.encoder is None and names:
            self.encoder = DEFAULT_ENCODER if DEFAULT_ENCODER in names else names[0]
        self.update_subtitle()

    def use_encoder(self, name: str) -> None:
        self.encoder = name

    def action_next_encoder(self) -> None:
        if not self.encoder_names:
            return
        i = self.encoder_names.index(self.encoder) if self.encoder in self.encoder_names else -1
        self.encoder = self.encoder_names[(i + 1) % len(self.encoder_names)]

    def watch_encoder(self, _value: str | None) -> None:
        self.update_subtitle()

    def update_subtitle(self) -> None:
        self.sub_title = f"encoder {self.encoder or '—'} · taxonomy {self.taxonomy}"

    # -- keys -----------------------------------------------------------------------------
    def action_show_keys(self) -> None:
        screen = self.screen
        if not isinstance(screen, StoreScreen):
            return
        everywhere = binding_rows(self.BINDINGS) + [("ctrl+p", "Command palette: every screen, encoder and action")]
        self.push_screen(KeysModal(screen.TITLE, binding_rows(screen.BINDINGS), everywhere))

    # -- undo, scoped to this run ------------------------------------------------------------
    def record_edit(self, edit: "Edit | None") -> None:
        self.last_write, self.last_write_screen = time.monotonic(), self.screen
        if edit is not None:
            self.edits.append(edit)

    def action_undo(self) -> None:
        todo = [e for e in self.edits if not e.undone]
        if not todo:
            self.notify("nothing to undo: no edit made in this run of the app "
                        "(`tstore prompt undo` undoes earlier batches)", severity="warning", markup=False)
            return
        self.undo_edit(todo[-1])

    @work(thread=True, exclusive=True, exit_on_error=False, group="app.undo")
    def undo_edit(self, edit: "Edit") -> None:
        self.store.curation.undo(edit.batch_id)
        self.call_from_thread(self._undone, edit)

    def _undone(self, edit: "Edit") -> None:
        self.last_write, self.last_write_screen = time.monotonic(), self.screen
        edit.undone = True
        self.notify(inert(f"undone: {edit.what}"), markup=False)
        if self.current_mode != edit.mode:
            self.switch_mode(edit.mode)
        screen = self.screen
        if isinstance(screen, StoreScreen):
            screen.follow(edit.entity, edit.entity_id)

    # -- errors ---------------------------------------------------------------------------
    def report_error(self, error: BaseException | None, where: str | None = None, screen: Any = None) -> None:
        """The one place worker failures go: an error modal with the message and hint, on the
        screen whose worker failed (held until that screen shows again if another is current)."""
        if error is None:
            return
        if error not in self.errors:
            self.errors.append(error)
        if isinstance(screen, StoreScreen) and screen not in self.screen_stack:
            screen.pending_errors.append((error, where))
            self.notify(f"an error on the {screen.TITLE} screen: press {SCREEN_KEYS.get(screen.MODE, '')} to see it",
                        severity="error", markup=False)
            return
        self.log.error(f"worker {where} failed: {error!r}")
        if isinstance(error, TStoreError):
            modal = ErrorModal("Error", error.message, error.hint)
        else:
            modal = ErrorModal(f"Unexpected error in {where or 'a worker'}", f"{type(error).__name__}: {error}")
        self.push_screen(modal)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.report_error(event.worker.error, where=event.worker.group)
        self.worker_changed(event.worker, event.state)

    def worker_changed(self, worker: Worker, state: WorkerState) -> None:
        """Hook for tests and the status line: called for every worker state change."""


def make_app(store: StoreFacade, *, encoder: str | None = None, taxonomy: str | None = None,
             start: str = "taxonomy") -> TStoreApp:
    """The app over an open store; shared by `tstore tui` and the tests. Without a taxonomy:
    Do-Not-Answer when the store holds it, else the store's first taxonomy by name."""
    if taxonomy is None:
        names = sorted(t["name"] for t in store.taxonomies.list())
        taxonomy = DEFAULT_TAXONOMY if DEFAULT_TAXONOMY in names or not names else names[0]
    return TStoreApp(store, encoder=encoder, taxonomy=taxonomy, start=start)
