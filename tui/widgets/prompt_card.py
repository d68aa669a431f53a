"""One prompt shown safely: a header line (id, label, category, dataset) and its text."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from taxonomy_store.vocabulary import SAFE, UNLABELED, UNSAFE

from taxonomy_store.tui.widgets.safe_text import safe_text

LABEL_STYLES = {UNSAFE: "bold red", SAFE: "bold green", UNLABELED: "bold yellow"}


def prompt_header(p: Any) -> Text:
    head = Text()
    head.append(f"#{p.id} ", style="bold")
    head.append(p.label, style=LABEL_STYLES.get(p.label, ""))
    if getattr(p, "category_code", None):
        head.append("  ")
        head.append_text(safe_text(p.category_code, "cyan"))
    if getattr(p, "dataset", None):
        head.append("  ")
        head.append_text(safe_text(p.dataset, "dim"))
    if getattr(p, "deleted", False):
        head.append("  deleted", style="bold magenta")
    return head


class PromptCard(Static):
    """A prompt's header and full text; untrusted text never reaches Rich markup or the terminal raw."""

    DEFAULT_CSS = """
    PromptCard {
        height: auto;
        padding: 0 1;
        border: round $primary-darken-2;
    }
    """

    def show(self, prompt: Any | None, title: str = "") -> None:
        self.border_title = title
        if prompt is None:
            self.update(Text("—", style="dim"))
            return
        body = prompt_header(prompt)
        body.append("\n")
        body.append_text(safe_text(prompt.text, keep_newlines=True))
        self.update(body)
