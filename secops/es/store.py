"""The store handle every context shares: one Elasticsearch client and one index prefix.

It names indices, builds the BulkWriter (with the index templates in place first, so no writer ever
creates an index with guessed mappings), hands out leases and keeps named checkpoints. Context stores
(AssetStore, AlertStore, PlaybookRunStore) are built on it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from secops.config import BulkSettings, Settings
from secops.ecs import doc_id, iso
from secops.es.bulk import BulkWriter
from secops.es.lease import Lease
from secops.es.templates import DATASETS, index_for, index_pattern, install_templates

STATE_DATASET = "secops.state"


class Store:
    """Elasticsearch plus an index prefix, and where writers spool when the store is away."""

    def __init__(self, es: Elasticsearch, prefix: str, *, spool_dir: Path | None = None,
                 bulk: BulkSettings | None = None, replicas: int | None = None) -> None:
        self.es, self.prefix, self.replicas = es, prefix, replicas
        self.spool_dir, self.bulk = spool_dir, bulk or BulkSettings()
        self._templates_checked = False

    @classmethod
    def from_settings(cls, es: Elasticsearch, settings: Settings) -> Store:
        return cls(es, settings.elasticsearch.index_prefix, spool_dir=settings.paths.spool(), bulk=settings.bulk,
                   replicas=settings.elasticsearch.replicas)

    # -- names -----------------------------------------------------------------------------
    def index(self, dataset: str, timestamp: Any = None) -> str:
        return index_for(self.prefix, dataset, timestamp)

    def pattern(self, dataset: str) -> str:
        return index_pattern(self.prefix, dataset)

    @property
    def state_index(self) -> str:
        return self.index(STATE_DATASET)

    # -- templates and writers -------------------------------------------------------------
    def install_templates(self) -> list[str]:
        names = install_templates(self.es, self.prefix, self.replicas)
        self._templates_checked = True
        return names

    def ensure_templates(self) -> None:
        """Install the index templates unless every dataset's template is already there (checked once)."""
        if self._templates_checked:
            return
        wanted = {f"{self.prefix}-{ds.short}" for ds in DATASETS.values()}
        try:
            got = self.es.indices.get_index_template(name=f"{self.prefix}-*")
            present = {t["name"] for t in got["index_templates"]}
        except NotFoundError:
            present = set()
        if wanted - present:
            install_templates(self.es, self.prefix, self.replicas)
        self._templates_checked = True

    def writer(self, *, install: bool = False, background_flush: bool = False,
               on_flush: Callable[[int], None] | None = None, spool: str | None = None) -> BulkWriter:
        """A BulkWriter on this store (spooling into ``spool``, a subdirectory, when given). Templates are
        checked (``install``: updated) before its first document is sent; a store unreachable until then
        only means the documents are spooled, so a sensor or an ingest can start while its link is down."""
        if self.spool_dir is None:
            raise ValueError("this store handle has no spool directory: build it with Store.from_settings")
        prepare = self.install_templates if install else self.ensure_templates
        return BulkWriter(self.es, self.spool_dir / spool if spool else self.spool_dir, self.bulk, prefix=self.prefix,
                          background_flush=background_flush, on_flush=on_flush, prepare=prepare)

    # -- coordination ----------------------------------------------------------------------
    def lease(self, name: str, **options: Any) -> Lease:
        """A named mutual-exclusion lease (see secops.es.lease)."""
        return Lease(self.es, self.prefix, name, **options)

    def read_checkpoint(self, key: str) -> str | None:
        try:
            doc = self.es.get(index=self.state_index, id=doc_id("state", key))["_source"]
        except NotFoundError:
            return None
        checkpoint: str | None = doc.get("secops", {}).get("state", {}).get("checkpoint")
        return checkpoint

    def write_checkpoint(self, key: str, at: str) -> None:
        self.es.index(index=self.state_index, id=doc_id("state", key), refresh="wait_for", document={
            "@timestamp": iso(), "event": {"dataset": STATE_DATASET, "ingested": iso()},
            "secops": {"state": {"key": key, "checkpoint": at}}})
