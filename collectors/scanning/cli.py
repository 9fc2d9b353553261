"""`secops scan`: scope-checked nmap scans and nmap XML import."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the scan commands to the root app."""
