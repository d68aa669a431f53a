"""The curators' Textual app (`tstore tui`): a thin client of the `Store` facade.

Import `taxonomy_store.tui.make_app` from the CLI and the tests; importing this package loads
textual, so the library and the CLI's other commands never import it at module top.
"""

from __future__ import annotations

from taxonomy_store.tui.app import TStoreApp, make_app

__all__ = ["TStoreApp", "make_app"]
