"""Untrusted prompt text made inert for the terminal.

Prompts come from public datasets and curators: they may hold escape sequences ("\\x1b[31m",
"\\x1b]0;title\\x07") or Rich markup ("[bold]"). Everything shown goes through
`taxonomy_store.text.inert` (controls become visible escapes) and into a `rich.text.Text`
built without markup parsing, so neither the terminal nor Rich interprets it.
"""

from __future__ import annotations

from rich.text import Text

from taxonomy_store.text import inert


def safe_text(value: object, style: str = "", *, keep_newlines: bool = False, limit: int | None = None) -> Text:
    """A Text renderable of `value` with controls neutralised and no markup interpretation."""
    s = "" if value is None else inert(str(value), keep_newlines=keep_newlines)
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)] + "…"
    return Text(s, style=style, no_wrap=False)


def safe_label(*parts: tuple[object, str] | str) -> Text:
    """Join pieces into one Text: plain strings are trusted labels, (value, style) pairs are made inert."""
    out = Text()
    for part in parts:
        if isinstance(part, tuple):
            out.append_text(safe_text(part[0], part[1]))
        else:
            out.append(part)
    return out
