"""Colour-coded numbers for metric tables (a heat scale from red through yellow to green)."""

from __future__ import annotations

import math

from rich.text import Text

# Low → high; reversed when lower is better.
_SCALE = ("#d7301f", "#fc8d59", "#fdcc8a", "#d9ef8b", "#91cf60", "#1a9850")


def fmt_value(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def heat(value: float | None, lo: float = 0.0, hi: float = 1.0, *, higher_is_better: bool = True,
         digits: int = 3, suffix: str = "") -> Text:
    """`value` formatted and coloured by where it falls between lo and hi."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Text("—", style="dim")
    span = (hi - lo) or 1.0
    frac = min(max((value - lo) / span, 0.0), 1.0)
    if not higher_is_better:
        frac = 1.0 - frac
    colour = _SCALE[min(int(frac * len(_SCALE)), len(_SCALE) - 1)]
    return Text(fmt_value(value, digits) + suffix, style=f"bold {colour}")
