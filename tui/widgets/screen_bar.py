"""The screen bar: one line naming every screen with its key, the current one highlighted."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widgets import Static

# (mode, key, title) in the order of the number keys
SCREENS = (
    ("taxonomy", "1", "Taxonomy"),
    ("prompts", "2", "Prompts"),
    ("pairs", "3", "Pairs"),
    ("suspects", "4", "Suspects"),
    ("metrics", "5", "Metrics"),
    ("query", "6", "Query"),
)
CURRENT = "bold reverse"
OTHER = "dim"


def bar_text(current: str) -> tuple[Text, list[tuple[int, int, str]]]:
    """The bar's text and the (start, end, mode) span of each screen's tab, for mouse clicks."""
    text, spans = Text(no_wrap=True, overflow="ellipsis"), []
    for mode, key, title in SCREENS:
        start = len(text)
        text.append(f" {key} {title} ", style=CURRENT if mode == current else OTHER)
        spans.append((start, len(text), mode))
        text.append(" ")
    text.append(" ? keys", style="dim italic")
    return text, spans


class ScreenBar(Static):
    """Tabs for the six screens; the current one in reverse video. A click switches screen."""

    DEFAULT_CSS = """
    ScreenBar {
        height: 1;
        background: $boost;
    }
    """

    def __init__(self, current: str, **kwargs):
        text, self.spans = bar_text(current)
        super().__init__(text, **kwargs)
        self.current = current

    def on_click(self, event: events.Click) -> None:
        for start, end, mode in self.spans:
            if start <= event.x < end and mode != self.current:
                self.app.switch_mode(mode)
