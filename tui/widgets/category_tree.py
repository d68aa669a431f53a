"""A taxonomy tree: node name, prompt count and (optionally) a per-category score, colour-coded."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree

from taxonomy_store.tui.widgets.heat import heat
from taxonomy_store.tui.widgets.safe_text import safe_text


NAME_WIDTH = 40


class CategoryTree(Tree[str]):
    """Nodes carry the category code as data; labels are Text (never markup)."""

    DEFAULT_CSS = """
    CategoryTree {
        min-width: 30;
    }
    """

    def __init__(self, *args, **kwargs):
        super().__init__("taxonomy", *args, **kwargs)
        self.show_root = False
        self.guide_depth = 3

    def load(self, tree: Any | None, scores: dict[str, float] | None = None, *, expand_depth: int = 1,
             only: str = "") -> None:
        """Rebuild from a `TaxonomyTree`; `scores` maps node code → value in [0, 1] (e.g. CP@k);
        `only`: just the nodes whose code or name holds it (case-insensitive), with their ancestors."""
        self.clear()
        if tree is None:
            return
        self.root.label = safe_text(tree.title or tree.name)
        self.root.data = None
        scores = scores or {}

        def label_for(n: Any) -> Text:
            # The count and CP come first, so a narrow tree cuts the name, never the numbers;
            # the full name is in the right panel.
            label = Text(f"{n.prompts:>4} ", style="dim")
            if scores:
                label.append_text(heat(scores.get(n.code), 0.0, 1.0, digits=2))
                label.append(" " if n.code in scores else "    ")
            label.append_text(safe_text(n.name.split(":")[0] if ":" in n.name[:60] else n.name, limit=NAME_WIDTH))
            if n.code != n.name:
                label.append_text(safe_text(f" {n.code}", "dim cyan"))  # the code every table names it by
            return label

        needle = only.casefold()

        def wanted(node: Any) -> bool:
            return not needle or needle in node.code.casefold() or needle in node.name.casefold() \
                or any(wanted(c) for c in node.children)

        def add(parent, node: Any) -> None:
            if not wanted(node):
                return
            if node.children and any(wanted(c) for c in node.children):
                branch = parent.add(label_for(node), data=node.code, expand=bool(needle) or node.depth < expand_depth)
                for c in node.children:
                    add(branch, c)
            else:
                parent.add_leaf(label_for(node), data=node.code)

        for r in tree.roots:
            add(self.root, r)
        self.root.expand()
