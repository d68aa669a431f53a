"""Reusable widgets; each carries its own DEFAULT_CSS."""

from .safe_text import safe_text, safe_label
from .heat import heat, fmt_value
from .prompt_card import PromptCard
from .category_tree import CategoryTree
from .prompt_table import PromptTable

__all__ = ["safe_text", "safe_label", "heat", "fmt_value", "PromptCard", "CategoryTree", "PromptTable"]
from .screen_bar import SCREENS, ScreenBar

__all__ += ["SCREENS", "ScreenBar"]
from .fit_table import FitTable

__all__ += ["FitTable"]
