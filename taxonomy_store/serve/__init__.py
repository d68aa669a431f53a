"""`tstore serve`: the guard over HTTP (an entry point beside the CLI and the TUI; it reaches the store only through its facade)."""
