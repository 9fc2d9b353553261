"""`secops ingest`, `secops sensor`, `secops pcap`: traffic in, documents out."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the capture commands to the root app."""
