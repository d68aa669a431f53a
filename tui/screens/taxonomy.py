"""Taxonomy: the tree with prompt counts and CP@k per category; selecting a node lists its prompts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static

from taxonomy_store.tui.widgets import CategoryTree, PromptCard, PromptTable, safe_text
from taxonomy_store.tui.keys import keys
from taxonomy_store.tui.screens.base import StoreScreen, WorkerResult


class TaxonomyScreen(StoreScreen):
    MODE, TITLE = "taxonomy", "Taxonomy"
    BINDINGS = keys("taxonomy", """
        t  | next_taxonomy | Next taxonomy | next
        f5 | refresh       | Reload        | reload
    """)

    @dataclass
    class TreeLoaded(WorkerResult):
        tree: Any
        scores: dict[str, float]
        taxonomies: list[str]

    @dataclass
    class PromptsLoaded(WorkerResult):
        code: str
        prompts: list[Any]
        total: int

    def __init__(self):
        super().__init__()
        self.taxonomies: list[str] = []
        self.selected: str | None = None
        self.nodes: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        with Horizontal():
            with Vertical(id="tax-left"):
                yield Static(id="tax-title", classes="section-title")
                yield CategoryTree(id="tax-tree")
            with Vertical(id="tax-right"):
                yield Static(Text("select a category", style="dim"), id="tax-node-title", classes="section-title")
                yield PromptTable(id="tax-prompts", compact=True)
                yield PromptCard(id="tax-card")
        yield Footer(show_command_palette=False)

    # -- loading ----------------------------------------------------------------------------
    def refresh_data(self) -> None:
        self.load_tree(self.app.taxonomy, self.encoder)

    @work(thread=True, exclusive=True, exit_on_error=False, group="taxonomy.tree")
    def load_tree(self, name: str, encoder: str | None) -> None:
        taxonomies = [t["name"] for t in self.store.taxonomies.list()]
        tree = self.store.taxonomies.tree(name)
        scores = self.store.review.category_scores(encoder, taxonomy=name) if encoder else {}
        self.post_message(self.TreeLoaded(tree, scores, taxonomies))

    def on_taxonomy_screen_tree_loaded(self, msg: TreeLoaded) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        self.taxonomies = msg.taxonomies
        self.tax_tree = msg.tree
        total = sum(r.prompts for r in msg.tree.roots)
        title = Text.assemble((msg.tree.title, "bold"), f"  {total} prompts")
        levels = msg.tree.levels or []
        scored = [lvl for d, lvl in enumerate(levels) if any(n.code in msg.scores for n in msg.tree.walk() if n.depth == d)]
        if msg.scores:
            title.append(f"  CP@10 under {self.encoder}", style="dim")
            if len(scored) < len(levels):
                title.append(f"\nno CP at {', '.join(lvl for lvl in levels if lvl not in scored)} yet: press 5 then r",
                             style="yellow")
        elif self.encoder:
            title.append("\nno CP run for this encoder yet: press 5 then r", style="yellow")
        self.query_one("#tax-title", Static).update(title)
        self.nodes = {n.code: n for n in msg.tree.walk()}
        widget = self.query_one(CategoryTree)
        line = widget.cursor_line
        widget.load(msg.tree, msg.scores)
        widget.focus()
        widget.cursor_line = max(line, 0)

    @on(CategoryTree.NodeHighlighted, "#tax-tree")
    @on(CategoryTree.NodeSelected, "#tax-tree")
    def _node_chosen(self, event: CategoryTree.NodeSelected) -> None:
        code = event.node.data
        if code and code != self.selected:
            self.selected = code
            self.load_prompts(self.app.taxonomy, code)

    @work(thread=True, exclusive=True, exit_on_error=False, group="taxonomy.prompts")
    def load_prompts(self, taxonomy: str, code: str) -> None:
        prompts = self.store.curation.list_prompts(taxonomy=taxonomy, category=code, limit=300)
        total = self.store.curation.count_prompts(taxonomy=taxonomy, category=code)
        self.post_message(self.PromptsLoaded(code, prompts, total))

    def on_taxonomy_screen_prompts_loaded(self, msg: PromptsLoaded) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        if msg.code != self.selected:
            return
        title = Text.assemble((msg.code, "bold cyan"), f"  {msg.total} prompts")
        if msg.total > len(msg.prompts):
            title.append(f" (first {len(msg.prompts)} shown)", style="dim")
        node = self.nodes.get(msg.code)
        if node is not None:  # the full name (the tree cuts long ones) and the description, wrapped
            title.append("\n")
            title.append_text(safe_text(node.name, "bold"))
            if node.level:
                title.append(f"  ({node.level})", style="dim")
            if node.description:
                title.append("\n")
                title.append_text(safe_text(node.description, "italic dim", limit=300))
        self.query_one("#tax-node-title", Static).update(title)
        table = self.query_one(PromptTable)
        table.show(msg.prompts)
        self.query_one(PromptCard).show(table.current(), "prompt")

    @on(PromptTable.RowHighlighted, "#tax-prompts")
    def _row(self) -> None:
        self.query_one(PromptCard).show(self.query_one(PromptTable).current(), "prompt")

    def action_next_taxonomy(self) -> None:
        if not self.taxonomies:
            return
        names = self.taxonomies
        i = names.index(self.app.taxonomy) if self.app.taxonomy in names else -1
        self.app.taxonomy = names[(i + 1) % len(names)]
        self.app.update_subtitle()
        self.selected = None
        # the right panel belongs to the old taxonomy's node: empty it until a node is chosen
        self.query_one("#tax-node-title", Static).update(Text("select a category", style="dim"))
        self.query_one(PromptTable).show([])
        self.query_one(PromptCard).show(None, "prompt")
        self.refresh_data()
