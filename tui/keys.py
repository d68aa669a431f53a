"""One screen's key table, written as a small text table: `key | action | description | name`,
and `| hidden` for a key kept off the footer (the keys screen still lists it)."""

from __future__ import annotations

from textual.binding import Binding, BindingType


def keys(mode: str, table: str) -> list[BindingType]:
    """The bindings of one table, in its order; each id is `mode.name`, so the keys screen and the
    tests find a binding by what it does."""
    bindings: list[BindingType] = []
    for line in table.strip().splitlines():
        key, action, description, name, *rest = (cell.strip() for cell in line.split("|"))
        bindings.append(Binding(key, action, description, id=f"{mode}.{name}", show=rest != ["hidden"]))
    return bindings
