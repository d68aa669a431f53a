"""Reusable widgets; each carries its own DEFAULT_CSS."""

from taxonomy_store.tui.widgets.safe_text import safe_text, safe_label
from taxonomy_store.tui.widgets.heat import heat, fmt_value
from taxonomy_store.tui.widgets.prompt_card import PromptCard
from taxonomy_store.tui.widgets.category_tree import CategoryTree
from taxonomy_store.tui.widgets.prompt_table import PromptTable

__all__ = ["safe_text", "safe_label", "heat", "fmt_value", "PromptCard", "CategoryTree", "PromptTable"]
from taxonomy_store.tui.widgets.screen_bar import SCREENS, ScreenBar

__all__ += ["SCREENS", "ScreenBar"]
from taxonomy_store.tui.widgets.fit_table import FitTable

__all__ += ["FitTable"]
