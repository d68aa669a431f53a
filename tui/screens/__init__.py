"""One module per screen; each screen is an app mode."""
