"""CLI commands of the collectors context (registered by secops.cli): capture/ingest and scanning."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this context's commands to the root app."""
    from collectors import capture_cli
    from collectors.scanning import cli as scanning_cli

    capture_cli.register(app)
    scanning_cli.register(app)
