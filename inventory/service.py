"""The inventory's public operations (used by its Celery tasks, its CLI and other contexts' CLIs).

merge_scan: a scan/import result (secops.contracts.ScanResult, or its JSON payload) -> assets.
merge_observations: passive secops.observation documents since a checkpoint -> assets.
mark_stale: assets unseen for inventory.stale_days -> asset_gone (once).
tag_asset: add tags to the asset holding an address (audited).

Each reads assets, changes them and writes them back, so they run one at a time under the "inventory"
lease (secops.es.lease): a scan merge and the scheduled observation merge touching the same asset at the
same moment would otherwise lose one of the two updates.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch, helpers

from inventory.changes import change_doc
from inventory.learning import ZoneLearning
from inventory.merge import Merger
from inventory.model import add_unique, asset_part
from inventory.store import AssetStore
from secops.audit import write_audit
from secops.config import Settings
from secops.contracts.observation import OBSERVATION_DATASET, Observation
from secops.contracts.scan import ScanResult
from secops.ecs import iso, parse_time, utcnow
from secops.es.bulk import BulkWriter
from secops.es.lease import Lease
from secops.es.store import Store
from secops.es.templates import index_for

CHECKPOINT_KEY = "inventory.merge_observations"
RENEW_EVERY = 5000  # observations merged between lease renewals


def inventory_lease(es: Elasticsearch, settings: Settings) -> Lease:
    return Store.from_settings(es, settings).lease("inventory")


def _store(es: Elasticsearch, settings: Settings) -> AssetStore:
    return AssetStore(es, settings.elasticsearch.index_prefix)


def _merger(store: Store, settings: Settings, writer: BulkWriter, now: datetime | None) -> Merger:
    """A merge run over the stored inventory, with the zones' learning periods."""
    assets = _store(store.es, settings)
    now = now or utcnow()
    learning = ZoneLearning(store, assets, settings.inventory.learning_hours, now)
    return Merger(assets, writer, settings.inventory, now, learning)


def merge_scan(es: Elasticsearch, settings: Settings, result: ScanResult | dict[str, Any],
               now: datetime | None = None) -> dict[str, Any]:
    store = Store.from_settings(es, settings)
    with store.lease("inventory"), store.writer() as writer:
        merger = _merger(store, settings, writer, now)
        merger.merge_scan(ScanResult.coerce(result))
        summary = merger.close().as_dict()
    es.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-asset*")
    return summary


def merge_observations(es: Elasticsearch, settings: Settings, since_iso: str | None = None,
                       now: datetime | None = None) -> dict[str, Any]:
    """Merge observations newer than since_iso (default: the stored checkpoint) and advance the checkpoint."""
    store = Store.from_settings(es, settings)
    with store.lease("inventory") as lease:
        since = since_iso or store.read_checkpoint(CHECKPOINT_KEY)
        result, latest = _merge_observations_since(store, settings, since, now, lease)
        if latest:
            store.write_checkpoint(CHECKPOINT_KEY, latest)
    result["checkpoint"] = latest
    return result


def _merge_observations_since(store: Store, settings: Settings, since: str | None, now: datetime | None,
                              lease: Lease) -> tuple[dict[str, Any], str | None]:
    es, pattern = store.es, store.pattern(OBSERVATION_DATASET)
    query: dict[str, Any] = {"bool": {"filter": [{"term": {"event.dataset": OBSERVATION_DATASET}}]}}
    if since:
        # Cut on arrival time, not event time: a capture imported today may hold year-old observations.
        query["bool"]["filter"].append({"range": {"event.ingested": {"gt": since}}})
    latest = since
    with store.writer() as writer:
        merger = _merger(store, settings, writer, now)
        if es.indices.exists(index=pattern, allow_no_indices=False, ignore_unavailable=True):
            es.indices.refresh(index=pattern)
            hits = helpers.scan(es, index=pattern, query={"query": query, "sort": ["event.ingested"]},
                                preserve_order=True, size=2000)
            for n, hit in enumerate(hits, 1):
                if not n % RENEW_EVERY:
                    lease.renew()
                obs = Observation.from_doc(hit["_source"])
                merger.merge_observation(obs)
                if obs.ingested and (latest is None or parse_time(obs.ingested) > parse_time(latest)):
                    latest = obs.ingested
        return merger.close().as_dict(), latest


def mark_stale(es: Elasticsearch, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """asset_gone for every active asset whose last_seen is older than inventory.stale_days."""
    now = now or utcnow()
    store = _store(es, settings)
    cutoff = iso(now - timedelta(days=settings.inventory.stale_days))
    if not es.indices.exists(index=store.index):
        return {"gone": 0, "asset_ids": []}
    query = {"bool": {"filter": [{"range": {"secops.asset.last_seen": {"lt": cutoff}}}],
                      "must_not": [{"term": {"secops.asset.state": "gone"}}]}}
    gone = []
    at = iso(now)
    with inventory_lease(es, settings):
        with Store.from_settings(es, settings).writer() as writer:
            for hit in helpers.scan(es, index=store.index, query={"query": query}):
                asset = hit["_source"]
                asset_part(asset)["state"] = "gone"
                writer.add(change_doc(asset, "asset_gone", at, old=asset_part(asset).get("last_seen")))
                store.save(writer, asset)
                gone.append(asset_part(asset)["id"])
        store.refresh()  # before the lease goes: the next holder reads what we wrote
    return {"gone": len(gone), "asset_ids": gone}


def tag_asset(es: Elasticsearch, settings: Settings, ip: str, tags: list[str], actor: str) -> str | None:
    """Add tags to the asset that holds this address; returns its id (None when no asset has it)."""
    store = _store(es, settings)
    try:
        hits = store.find_by("host.ip", ip, 1)
    except BadRequestError as exc:  # a malformed address is a 400 from the ip field
        raise ValueError(f"not an IP address: {ip!r}") from exc
    prefix = settings.elasticsearch.index_prefix
    if not hits:
        write_audit(es, prefix, "inventory.tag_asset", ip, "not_found", actor=actor, details={"tags": tags})
        return None
    with inventory_lease(es, settings):
        asset = store.get(asset_part(hits[0])["id"]) or hits[0]  # as it is now that we hold the lease
        asset["tags"] = add_unique(asset.get("tags") or [], *[str(t) for t in tags])
        aid = asset_part(asset)["id"]
        es.index(index=store.index, id=aid, document={**asset, "event": {**asset["event"], "ingested": iso()}},
                 refresh="wait_for")
    write_audit(es, prefix, "inventory.tag_asset", aid, "success", actor=actor, details={"ip": ip, "tags": tags})
    return aid


class _MemoryStore(AssetStore):
    """An empty inventory held in memory: what a scan would create, without touching Elasticsearch."""

    def __init__(self, prefix: str):
        self.index, self.saved = index_for(prefix, "secops.asset"), []

    def find(self, mac: str | None, ip: str | None, zone: str) -> dict[str, Any] | None:
        return None

    def save(self, writer: Any, asset: dict[str, Any]) -> None:
        self.saved.append({"_id": asset_part(asset)["id"], **asset})

    def refresh(self) -> None:
        return None


class _Discard:
    def add(self, doc: dict[str, Any], **_: Any) -> None:
        return None

    def flush(self) -> None:
        return None


def assets_from_scan(settings: Settings, result: ScanResult | dict[str, Any], now: datetime | None = None
                     ) -> list[dict[str, Any]]:
    """The asset documents a scan result describes (one per live host), standalone (no inventory lookup)."""
    store = _MemoryStore(settings.elasticsearch.index_prefix)
    merger = Merger(store, _Discard(), settings.inventory, now)  # type: ignore[arg-type]
    merger.merge_scan(ScanResult.coerce(result))
    merger.close()
    return store.saved
