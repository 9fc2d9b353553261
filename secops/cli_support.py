"""What every CLI command shares: the loaded settings, consoles, clean one-line errors, writers.

Context CLIs (collectors/detections/inventory/playbooks ``cli.py``) import from here; they expose
``register(app)`` and the composition root ``secops.cli`` calls it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from elasticsearch import Elasticsearch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from secops.config import ConfigError, Settings, load_settings
from secops.es.bulk import BulkWriter
from secops.es.client import check_reachable, make_client
from secops.es.store import Store

console = Console()
err_console = Console(stderr=True)


class CliError(Exception):
    """An expected failure: printed as one line, exit status 2."""


class _State:
    config_path: str | None = None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


state = _State()


def settings() -> Settings:
    return state.settings()


def fail(message: str) -> NoReturn:
    raise CliError(message)


def es_client(check: bool = True) -> Elasticsearch:
    es = make_client(settings())
    if check:
        check_reachable(es)
    return es


def store(es: Elasticsearch | None = None) -> Store:
    """The store handle on the configured node."""
    return Store.from_settings(es or es_client(), settings())


@contextmanager
def writer(es: Elasticsearch | None = None, install: bool = True) -> Iterator[BulkWriter]:
    """A BulkWriter on the configured node, templates installed (``install``) or checked, closed (flushed) on exit."""
    w = store(es).writer(install=install)
    try:
        yield w
    finally:
        w.close()


def progress(transient: bool = False) -> Progress:
    """The standard progress bar for long work (writes to stderr so stdout stays clean for data)."""
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=transient)


__all__ = ["CliError", "ConfigError", "console", "err_console", "es_client", "fail", "progress", "settings",
           "state", "store", "typer", "writer"]
