"""CLI commands of the inventory context (registered by secops.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this context's commands to the root app."""
