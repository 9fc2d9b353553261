"""The ``secops`` command's entry point: what must happen before the command line's imports.

``secops ingest`` on a large file starts its analyzer processes here (``collectors.prespawn``), so that their imports
run on the core the command line's own imports leave idle (about 0.2 s: typer, the configuration's models). Only
light modules are imported before that; then :func:`secops.cli.main` runs the command.
"""

from __future__ import annotations

import sys


def command_at(args: list[str]) -> int | None:
    """Where the top-level command is in a command line (the first word after the root's options)."""
    i = 0
    while i < len(args):
        if args[i] in ("--config", "-c"):
            i += 1
        elif not args[i].startswith("-"):
            return i
        i += 1
    return None


def command_name(args: list[str]) -> str | None:
    """The top-level command a command line names."""
    at = command_at(args)
    return None if at is None else args[at]


def main() -> None:
    args = sys.argv[1:]
    at = command_at(args)
    if at is not None and args[at] == "ingest":
        from collectors import prespawn

        if prespawn.wanted(args[at + 1:]):
            prespawn.start()
    from secops.cli import main as cli_main

    cli_main()
