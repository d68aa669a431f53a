"""Pair review queue: keyboard-first accept / reject / skip / edit / note / undo, side by side.

Each pair shows both prompts, their cosine similarity under every encoder, and the nearest
stored neighbours of each side (under the current encoder).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, Static

from taxonomy_store.text import inert
from taxonomy_store.vocabulary import DEFAULT_TAXONOMY

from taxonomy_store.tui.widgets import FitTable, PromptCard, heat, safe_text
from taxonomy_store.tui.widgets.prompt_card import LABEL_STYLES
from taxonomy_store.tui.keys import keys
from taxonomy_store.tui.screens.base import StoreScreen, WorkerResult
from taxonomy_store.tui.edits import Edit, pair_change
from taxonomy_store.tui.screens.modals import ConfirmModal, EditPromptModal, NewPairModal, TextInputModal

STATUSES = ("proposed", "accepted", "rejected", None)
MINE_LIMIT = 20  # proposals per `m`: a screenful of review, not a flood
STATUS_STYLES = {"proposed": "bold yellow", "accepted": "bold green", "rejected": "bold red"}


def side_id(pair: Any, side: str) -> int:
    """The prompt id of one side of a pair view ("unsafe" or "safe")."""
    for name in (f"{side}_prompt_id", f"{side}_id"):
        if getattr(pair, name, None) is not None:
            return int(getattr(pair, name))
    return int(getattr(pair, side).id)


class NeighbourTable(FitTable):
    """The nearest stored prompts of one side; narrow (half of 80 columns): cos, label, text."""

    DEFAULT_CSS = """
    NeighbourTable { height: 1fr; border-top: solid $primary-darken-2; border-title-color: $text-muted; }
    """
    COLUMNS = ("cos", "label", "category", "text")
    NARROW = ("cos", "label", "text")
    WIDE_AT = 70

    def on_mount(self) -> None:
        self.border_title = "nearest stored prompts"
        super().on_mount()

    def cells(self, n: Any, narrow: bool, text_width: int) -> list[Text]:
        cells = [heat(n.similarity, 0.2, 1.0, digits=2), Text(n.label, style=LABEL_STYLES.get(n.label, ""))]
        if not narrow:
            cells.append(safe_text(n.category or "", "cyan", limit=28))
        return cells + [safe_text(n.text, limit=text_width)]


class PairsScreen(StoreScreen):
    MODE, TITLE = "pairs", "Pairs"
    BINDINGS = keys("pairs", """
        a  | decide('accepted') | Accept        | accept
        r  | decide('rejected') | Reject        | reject
        s  | skip               | Skip          | skip
        b  | back               | Back          | back        | hidden
        e  | edit('unsafe')     | Edit unsafe   | edit_unsafe | hidden
        E  | edit('safe')       | Edit safe     | edit_safe   | hidden
        n  | note               | Note          | note        | hidden
        u  | app.undo           | Undo          | undo
        c  | new_pair           | New pair      | new         | hidden
        m  | mine               | Propose pairs | mine
        slash | search          | Search        | search      | hidden
        f  | cycle_status       | Status filter | status      | hidden
        t  | cycle_type         | Type filter   | type        | hidden
        f5 | refresh            | Reload        | reload      | hidden
    """)

    @dataclass
    class Loaded(WorkerResult):
        pairs: list[Any]
        types: list[str]
        counts: dict[str, int]

    @dataclass
    class Details(WorkerResult):
        pair_id: int
        unsafe: Any
        safe: Any
        similarities: dict[str, float | None]
        unsafe_neighbours: list[Any]
        safe_neighbours: list[Any]
        trees: dict[str, Any]  # the taxonomy trees of the two prompts, for the edit modal's category picker

    @dataclass
    class Changed(Message):
        edit: Edit | None
        what: str
        same_label: str | None = None  # both sides of the pair now carry this label

    @dataclass
    class Mined(Message):
        edit: Edit | None
        proposed: int
        first: int | None

    @dataclass
    class MiningProgress(Message):
        stage: str
        done: int
        total: int

    def __init__(self, status: str | None = "proposed"):
        super().__init__()
        self.status = status
        self.pair_type: str | None = None
        self.pairs: list[Any] = []
        self.types: list[str] = []
        self.pos = 0
        self.follow_id: int | None = None  # after a reload, land on this pair if it is still listed
        self.shown: "PairsScreen.Details | None" = None
        self.counts: dict[str, int] = {}
        # An imported store often holds only accepted pairs: then the queue opens on all of them.
        self._first_load = True
        self.mining = False
        self.search = ""  # `/`: only pairs whose texts hold this

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        yield Static(id="pair-status", classes="status-line")
        yield Static(id="pair-sims", classes="status-line")
        with Horizontal(id="pair-sides"):
            with Vertical(classes="pair-side"):
                yield PromptCard(id="pair-unsafe")
                yield NeighbourTable(id="pair-unsafe-nn")
            with Vertical(classes="pair-side"):
                yield PromptCard(id="pair-safe")
                yield NeighbourTable(id="pair-safe-nn")
        yield Footer(show_command_palette=False)

    def follow(self, entity: str, entity_id: int) -> None:
        if entity == "pair":
            self.follow_id = entity_id
        elif self.current is not None:
            self.follow_id = self.current.id
        self.refresh_data()

    def resumed(self, data_moved: bool) -> None:
        # an embed or edit elsewhere changes the neighbour panes: read the shown pair again on return
        if data_moved:
            if self.current is not None:
                self.follow_id = self.current.id
            self.refresh_data()
        elif self.is_mounted and self.current is not None:
            self.show_current()

    @property
    def current(self) -> Any | None:
        return self.pairs[self.pos] if 0 <= self.pos < len(self.pairs) else None

    # -- loading ------------------------------------------------------------------------------
    def refresh_data(self) -> None:
        if self.follow_id is None and self.current is not None:
            self.follow_id = self.current.id  # a reload keeps the pair on screen when it is still listed
        self.load(self.status, self.pair_type, self.search)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pairs.load")
    def load(self, status: str | None, pair_type: str | None, search: str = "") -> None:
        curation = self.store.curation
        every = curation.list_pairs()
        counts: dict[str, int] = {}
        types: set[str] = set()
        for p in every:
            counts[p.status] = counts.get(p.status, 0) + 1
            if p.pair_type:
                types.add(p.pair_type)
        needle = search.casefold()
        pairs = [p for p in every if (status is None or p.status == status) and (pair_type is None or p.pair_type == pair_type)
                 and (not needle or needle in p.unsafe_text.casefold() or needle in p.safe_text.casefold())]
        self.post_message(self.Loaded(pairs, sorted(types), counts))

    def on_pairs_screen_loaded(self, msg: Loaded) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        first, self._first_load = self._first_load, False
        if first and self.status == "proposed" and not msg.pairs and any(msg.counts.values()):
            self.status = None
            self.load(None, self.pair_type, self.search)
            return
        self.pairs, self.types = msg.pairs, msg.types
        self.app.pair_types = sorted(set(self.app.pair_types) | set(msg.types))
        ids = [p.id for p in self.pairs]
        # on the same pair, or at the top: never on whatever pair now has the old position
        self.pos = ids.index(self.follow_id) if self.follow_id in ids else 0
        self.follow_id = None
        self.counts = msg.counts
        self._render_status()
        self.show_current()

    def _render_status(self) -> None:
        status = Text()
        status.append(f"pair {self.pos + 1 if self.pairs else 0}/{len(self.pairs)}", style="bold")
        status.append(f"  status: {self.status or 'all'}  type: ", style="")
        status.append_text(safe_text(self.pair_type or "all", "cyan"))
        if self.search:
            status.append("  search: ")
            status.append_text(safe_text(self.search, "cyan"))
        status.append("   ")
        for name in ("proposed", "accepted", "rejected"):
            status.append(f"{name} {self.counts.get(name, 0)}  ", style=STATUS_STYLES[name])
        self.query_one("#pair-status", Static).update(status)

    def show_current(self) -> None:
        pair = self.current
        if pair is None:
            self.query_one("#pair-unsafe", PromptCard).show(None, "unsafe")
            self.query_one("#pair-safe", PromptCard).show(None, "safe")
            self.query_one("#pair-sims", Static).update(Text("no pairs match the filters", style="dim"))
            for t in self.query(NeighbourTable):
                t.show([])  # not clear(): a resize would draw the kept rows of the pair before again
                t.border_title = "nearest stored prompts"
            self.shown = None
            return
        self.load_details(pair, self.encoder)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pairs.details")
    def load_details(self, pair: Any, encoder: str | None) -> None:
        uid, sid = side_id(pair, "unsafe"), side_id(pair, "safe")
        unsafe = self.store.curation.get_prompt(uid)
        safe = self.store.curation.get_prompt(sid)
        review = self.store.review
        sims = review.pair_similarities(uid, sid)
        nu = review.neighbours(uid, encoder=encoder, k=5) if encoder else []
        ns = review.neighbours(sid, encoder=encoder, k=5) if encoder else []
        trees = {t: self.store.taxonomies.tree(t) for t in {unsafe.taxonomy, safe.taxonomy} if t}
        self.post_message(self.Details(pair.id, unsafe, safe, sims, nu, ns, trees))

    def on_pairs_screen_details(self, msg: Details) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        pair = self.current
        if pair is None or pair.id != msg.pair_id:
            return
        self.shown = msg
        head = Text.assemble(f"pair #{pair.id} ", (pair.status, STATUS_STYLES.get(pair.status, "")))
        if pair.pair_type:
            head.append("  ")
            head.append_text(safe_text(pair.pair_type, "cyan"))
        self.query_one("#pair-unsafe", PromptCard).show(msg.unsafe, "unsafe")
        self.query_one("#pair-safe", PromptCard).show(msg.safe, "safe")
        sims = Text()
        sims.append_text(head)
        sims.append("   cos ")
        for name, value in msg.similarities.items():
            sims.append(f" {name} ")
            sims.append_text(heat(value, 0.0, 1.0, digits=3))
        note = getattr(pair, "note", None)
        if note:
            sims.append("   note: ", style="bold")
            sims.append_text(safe_text(note, "italic"))
        self.query_one("#pair-sims", Static).update(sims)
        for side, neighbours, prompt in (("unsafe", msg.unsafe_neighbours, msg.unsafe), ("safe", msg.safe_neighbours, msg.safe)):
            table = self.query_one(f"#pair-{side}-nn", NeighbourTable)
            table.show(neighbours)
            table.border_title = ("nearest stored prompts" if neighbours or msg.similarities.get(self.encoder or "") is not None
                                  else f"#{prompt.id} not embedded yet under {self.encoder} — press 5, then e")

    # -- navigation and filters ------------------------------------------------------------------
    def action_skip(self) -> None:
        if self.pos < len(self.pairs) - 1:
            self.pos += 1
            self._render_status()
            self.show_current()

    def action_back(self) -> None:
        if self.pos > 0:
            self.pos -= 1
            self._render_status()
            self.show_current()

    def action_cycle_status(self) -> None:
        self.status = STATUSES[(STATUSES.index(self.status) + 1) % len(STATUSES)]
        self.pos = 0
        self.refresh_data()

    def action_search(self) -> None:
        def done(text: str | None) -> None:
            if text is not None:
                current = self.current
                self.search, self.pos = text.strip(), 0
                self.follow_id = current.id if current is not None else None
                self.refresh_data()

        self.app.push_screen(TextInputModal("Search pairs (either side's text; empty: all)", inert(self.search)), done)

    def action_cycle_type(self) -> None:
        order: list[str | None] = [None, *self.types]
        self.pair_type = order[(order.index(self.pair_type) + 1) % len(order)] if self.pair_type in order else None
        self.pos = 0
        self.refresh_data()

    # -- decisions and edits ---------------------------------------------------------------------
    def _next_id(self) -> int | None:
        return self.pairs[self.pos + 1].id if self.pos + 1 < len(self.pairs) else None

    def action_decide(self, status: str) -> None:
        pair = self.current
        if pair is None:
            return
        if pair.status == status:  # nothing to change: no edit, nothing for undo to take
            self.toast(f"pair #{pair.id} is already {status}")
            return
        self.follow_id = self._next_id()
        if self.follow_id is None:
            self.follow_id = pair.id
        self.write("decide", pair.id, {"status": status, "pair": pair})
        # on to the next pair at once: a key pressed before the reload ends acts on the pair shown next,
        # never again on this one
        decided = dataclasses.replace(pair, status=status)
        if self.status is not None and self.status != status:
            del self.pairs[self.pos]
        else:
            self.pairs[self.pos] = decided
            self.pos = min(self.pos + 1, len(self.pairs) - 1)
        self.pos = max(0, min(self.pos, len(self.pairs) - 1))
        self.counts = {**self.counts, pair.status: self.counts.get(pair.status, 1) - 1, status: self.counts.get(status, 0) + 1}
        self._render_status()
        self.show_current()

    def action_note(self) -> None:
        pair = self.current
        if pair is None:
            return

        def done(note: str | None) -> None:
            if note is not None:
                self.follow_id = pair.id
                self.write("decide", pair.id, {"status": pair.status, "note": note, "pair": pair})

        self.app.push_screen(TextInputModal(f"Note on pair #{pair.id}", inert(getattr(pair, "note", None) or "")), done)

    def action_edit(self, side: str) -> None:
        pair, shown = self.current, self.shown
        if pair is None or shown is None or shown.pair_id != pair.id:
            return
        prompt = shown.unsafe if side == "unsafe" else shown.safe

        def done(changes: dict | None) -> None:
            if changes:
                self.follow_id = pair.id
                self.write("edit", prompt.id, changes)

        self.app.push_screen(EditPromptModal(prompt, shown.trees.get(prompt.taxonomy or "")), done)

    def offer_reject(self, label: str) -> None:
        """After an edit left both sides with one label: the pair no longer contrasts; offer to reject it."""
        pair = self.current
        if pair is None or pair.status == "rejected":
            return
        question = Text.assemble(("Both sides of ", "bold"), (f"pair #{pair.id}", "bold"), (f" are now {label}.\n", "bold"),
                                 "A pair whose sides share a label measures nothing; reject it?")
        self.app.push_screen(ConfirmModal(question, yes="Reject pair"),
                             lambda yes: yes and self.write("decide", pair.id, {"status": "rejected", "pair": pair}))

    def action_new_pair(self) -> None:
        pair, shown = self.current, self.shown
        if pair is None or shown is None or shown.pair_id != pair.id:
            return

        def done(value: dict | None) -> None:
            if value:
                self.follow_id = pair.id
                self.write("pair", shown.unsafe.id, value)

        self.app.push_screen(NewPairModal(shown.unsafe, self.types, pair.pair_type), done)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pairs.write")
    def write(self, what: str, target: int, args: dict[str, Any]) -> None:
        curation, same = self.store.curation, None
        if what == "decide":
            pair = args.get("pair") or curation.get_pair(target)
            decided = curation.decide_pair(target, args["status"], note=args.get("note"))
            edit = self.edited("pair", decided, pair_change(pair, args["status"], args.get("note")))
        elif what == "edit":
            edit = self.update_prompt(target, args)
            pair = self.current
            if pair is not None and "label" in args:
                other = curation.get_prompt(side_id(pair, "safe") if target == side_id(pair, "unsafe") else side_id(pair, "unsafe"))
                same = args["label"] if other.label == args["label"] else None
        else:
            edit = self.create_pair(target, args)
        self.post_message(self.Changed(edit, what, same))

    def on_pairs_screen_changed(self, msg: Changed) -> None:
        self.written(msg.edit, f"{msg.what} saved")
        if msg.same_label:
            self.toast(f"both sides of the pair are now {msg.same_label}", severity="warning")
            self.offer_reject(msg.same_label)
        self.refresh_data()

    # -- pair mining: the queue fills itself ------------------------------------------------------
    def action_mine(self) -> None:
        if self.mining:
            self.toast("pair mining is already running", severity="warning")
            return
        if not self.encoder:
            return
        self.mining = True
        self.query_one("#pair-sims", Static).update(Text("mining pairs: reading vectors…", style="bold yellow"))
        levels = getattr(self.app, "levels", {})
        taxonomy = DEFAULT_TAXONOMY if DEFAULT_TAXONOMY in levels else self.app.taxonomy
        self.mine(self.encoder, taxonomy)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pairs.mine")
    def mine(self, encoder: str, taxonomy: str) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            self.post_message(self.MiningProgress(stage, done, total))

        proposals = self.store.pair_mining.propose(encoder=encoder, taxonomy=taxonomy, limit=MINE_LIMIT, progress=progress)
        edit = None
        if proposals and proposals[0].batch:
            edit = Edit(proposals[0].batch, f"{len(proposals)} mined pairs proposed", self.MODE, "pair", proposals[0].pair_id or 0)
        self.post_message(self.Mined(edit, len(proposals), proposals[0].pair_id if proposals else None))

    def on_pairs_screen_mining_progress(self, msg: MiningProgress) -> None:
        if self.mining:
            self.query_one("#pair-sims", Static).update(
                Text(f"mining pairs: {msg.stage} ({msg.done}/{msg.total})", style="bold yellow"))

    def on_pairs_screen_mined(self, msg: Mined) -> None:
        self.mining = False
        self.written(msg.edit, "no new pairs to propose: every near twin is paired already")
        if msg.proposed:
            self.status, self.pos, self.follow_id = "proposed", 0, msg.first
        self.refresh_data()

    def worker_failed(self, worker: Any) -> None:
        if worker.group == "pairs.mine":
            self.mining = False
