"""The ``campro-bench`` command line (typer + rich)."""
