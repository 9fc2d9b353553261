"""What every CLI command shares: the loaded settings, consoles, clean one-line errors, writers.

Context CLIs (``collectors.capture_cli``, ``collectors.scanning.cli``, detections/inventory/playbooks ``cli.py``)
import from here; they expose ``register(app)`` and the composition root ``secops.cli`` calls it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from secops.cells import strip_controls

if TYPE_CHECKING:  # the store's modules load the Elasticsearch client (0.4 s): commands that write import them
    from elasticsearch import Elasticsearch

    from secops.config import Settings
    from secops.es.bulk import BulkWriter
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
            from secops.config import load_settings  # pydantic: 0.14 s the command line spends only when a command asks

            self._settings = load_settings(self.config_path)
        return self._settings


state = _State()


def settings() -> Settings:
    return state.settings()


def inert(value: object, limit: int | None = None) -> Text:
    """A value from a document (hostname, banner, rule field) as terminal text that cannot act: no Rich markup
    (``[link=...]``, a stray ``[/]`` that would crash the table), no escape sequences (ESC, BEL, OSC 8 links)."""
    text = strip_controls("-" if value is None or value == "" else str(value))
    return Text(text[:limit] if limit else text)


def inert_markup(value: object) -> str:
    """The same for a value placed inside a markup string: cleaned and markup-escaped."""
    return escape(strip_controls(str(value)))


def fail(message: str) -> NoReturn:
    raise CliError(message)


def es_client(check: bool = True) -> Elasticsearch:
    from secops.es.client import check_reachable, make_client

    es = make_client(settings())
    if check:
        check_reachable(es)
    return es


def store(es: Elasticsearch | None = None) -> Store:
    """The store handle on the configured node."""
    from secops.es.store import Store

    return Store.from_settings(es or es_client(), settings())


OFFLINE_CHECK_SECONDS = 5.0  # how long an offline-capable writer's check waits to learn whether the store answers


def _warn_if_unreachable(es: Elasticsearch) -> None:
    from secops.es.client import StoreUnavailable, check_reachable

    wait = min(OFFLINE_CHECK_SECONDS, settings().elasticsearch.request_timeout)
    try:
        check_reachable(es.options(request_timeout=wait))
    except StoreUnavailable as exc:
        err_console.print(f"[yellow]warning:[/] {exc}; documents are spooled in {settings().paths.spool()} "
                          "and sent when it answers", highlight=False, soft_wrap=True)


@contextmanager
def writer(es: Elasticsearch | None = None, install: bool = True, offline: bool = False) -> Iterator[BulkWriter]:
    """A BulkWriter on the configured node, templates installed (``install``) or checked, closed (flushed) on exit.
    ``offline``: an unreachable store is a warning, not an error: the documents are spooled and the templates
    installed when it answers (a sensor or an ingest at a site whose link is down). The check runs beside the
    work: a link that drops packets silently must not hold a sensor's capture back while it waits."""
    check = None
    if es is None and offline:
        es = es_client(check=False)
        check = threading.Thread(target=_warn_if_unreachable, args=(es,), name="store-check", daemon=True)
        check.start()
    w = store(es).writer(install=install)
    try:
        yield w
    finally:
        w.close()
        if check is not None:
            check.join()


def progress(transient: bool = False) -> Progress:
    """The standard progress bar for long work (writes to stderr so stdout stays clean for data)."""
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=transient)


__all__ = ["CliError", "console", "err_console", "es_client", "fail", "inert", "inert_markup",
           "progress", "settings", "state", "store", "typer", "writer"]
