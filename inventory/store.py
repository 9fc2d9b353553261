"""Reading and writing asset documents in the secops-asset index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch, NotFoundError, helpers

from secops.es.bulk import BulkWriter
from secops.es.templates import index_for


class AssetStore:
    """Lookups by MAC / address / hostname, bulk saves through the BulkWriter, full iteration."""

    def __init__(self, es: Elasticsearch, prefix: str):
        self.es, self.prefix = es, prefix
        self.index = index_for(prefix, "secops.asset")

    def _search(self, query: dict[str, Any], size: int = 10) -> list[dict[str, Any]]:
        try:
            res = self.es.search(index=self.index, query=query, size=size, sort=[{"secops.asset.first_seen": "asc"}])
        except NotFoundError:
            return []
        return [h["_source"] for h in res["hits"]["hits"]]

    def find(self, mac: str | None, ip: str | None, zone: str) -> dict[str, Any] | None:
        """The asset a sighting belongs to: same MAC, else same address in the same zone."""
        if mac:
            hits = self._search({"term": {"host.mac": mac}}, 1)
            if hits:
                return hits[0]
        if ip:
            hits = self._search({"bool": {"filter": [{"term": {"host.ip": ip}},
                                                     {"term": {"secops.asset.zone": zone}}]}}, 1)
            if hits:
                return hits[0]
        return None

    def find_by(self, field: str, value: str, size: int = 100) -> list[dict[str, Any]]:
        return self._search({"term": {field: value}}, size)

    def get(self, aid: str) -> dict[str, Any] | None:
        try:
            return self.es.get(index=self.index, id=aid)["_source"]
        except NotFoundError:
            return None

    def lookup(self, key: str) -> dict[str, Any] | None:
        """An asset by id, address, MAC or hostname (the CLI's `assets show`)."""
        found = self.get(key)
        if found:
            return found
        for field in ("host.ip", "host.mac", "host.hostname"):
            try:
                hits = self.find_by(field, key.lower() if field == "host.mac" else key, 1)
            except BadRequestError:  # a non-IP key against the ip field: try the next field
                continue
            if hits:
                return hits[0]
        return None

    def save(self, writer: BulkWriter, asset: dict[str, Any]) -> None:
        doc = dict(asset)
        doc["event"] = {k: v for k, v in asset.get("event", {}).items() if k != "ingested"}
        writer.add(doc, index=self.index, doc_id=asset["secops"]["asset"]["id"])

    def refresh(self) -> None:
        if self.es.indices.exists(index=self.index):
            self.es.indices.refresh(index=self.index)

    def iter_all(self, zone: str | None = None, batch: int = 2000) -> Iterator[dict[str, Any]]:
        """Every asset (optionally of one zone), streamed with a scroll."""
        if not self.es.indices.exists(index=self.index):
            return
        query: dict[str, Any] = {"term": {"secops.asset.zone": zone}} if zone else {"match_all": {}}
        for hit in helpers.scan(self.es, index=self.index, query={"query": query}, size=batch,
                                preserve_order=False):
            yield hit["_source"]

    def count(self, zone: str | None = None) -> int:
        if not self.es.indices.exists(index=self.index):
            return 0
        query: dict[str, Any] = {"term": {"secops.asset.zone": zone}} if zone else {"match_all": {}}
        return int(self.es.count(index=self.index, query=query)["count"])
