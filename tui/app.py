"""The tstore curator app: screens (modes) over one `Store` facade, workers for every blocking call."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.worker import Worker, WorkerState

from taxonomy_store.errors import TStoreError
from taxonomy_store.vocabulary import DEFAULT_ENCODER, DEFAULT_TAXONOMY, choose_level

from .commands import TStoreCommands
from .screens.metrics import MetricsScreen
from .screens.modals import ErrorModal
from .screens.pairs import PairsScreen
from .screens.prompts import PromptsScreen
from .screens.query import QueryScreen
from .screens.suspects import SuspectsScreen
from .screens.taxonomy import TaxonomyScreen



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
    }
    BINDINGS = [
        Binding("1", "switch_mode('taxonomy')", "Taxonomy", id="goto.taxonomy"),
        Binding("2", "switch_mode('prompts')", "Prompts", id="goto.prompts"),
        Binding("3", "switch_mode('pairs')", "Pairs", id="goto.pairs"),
        Binding("4", "switch_mode('suspects')", "Suspects", id="goto.suspects"),
        Binding("5", "switch_mode('metrics')", "Metrics", id="goto.metrics"),
        Binding("6", "switch_mode('query')", "Query", id="goto.query"),
        Binding("f2", "next_encoder", "Encoder", id="app.next_encoder"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
    ]

    # The encoder whose scores, neighbours and similarities the screens show.
    encoder: reactive[str | None] = reactive(None, init=False)

    def __init__(self, store: Any, *, encoder: str | None = None, taxonomy: str = DEFAULT_TAXONOMY,
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

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        self.load_context()

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

    # -- errors ---------------------------------------------------------------------------
    def report_error(self, error: BaseException | None, where: str | None = None) -> None:
        """The one place worker failures go: an error modal with the message and hint."""
        if error is None:
            return
        self.errors.append(error)
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


def make_app(store: Any, *, encoder: str | None = None, taxonomy: str = DEFAULT_TAXONOMY,
             start: str = "taxonomy") -> TStoreApp:
    """The app over an open store; shared by `tstore tui` and the tests."""
    return TStoreApp(store, encoder=encoder, taxonomy=taxonomy, start=start)
