"""The inventory lease against a real Elasticsearch node: mutual exclusion, takeover of a dead holder's lease,
and inventory writers that no longer lose each other's updates."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from inventory import service
from secops.ecs import iso, utcnow
from secops.es.lease import Lease, LeaseTimeout
from tests.integration.test_inventory_merge import assets, payload, write_observations

pytestmark = pytest.mark.integration


def test_lease_excludes_concurrent_read_modify_write(es):
    """3 threads x 10 unprotected read-increment-write cycles on one document lose no increment."""
    es.index(index="secops-state", id="counter", document={"secops": {"state": {"key": "counter", "value": "0"}}},
             refresh=True)

    def work() -> None:
        for _ in range(10):
            with Lease(es, "secops", "counter-test", poll=0.01):
                value = int(es.get(index="secops-state", id="counter")["_source"]["secops"]["state"]["value"])
                time.sleep(0.005)  # widen the window a missing lock would lose updates in
                es.index(index="secops-state", id="counter",
                         document={"secops": {"state": {"key": "counter", "value": str(value + 1)}}})

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert es.get(index="secops-state", id="counter")["_source"]["secops"]["state"]["value"] == "30"


def test_dead_holders_lease_is_taken_over_once_and_live_one_waited_for(es):
    dead = Lease(es, "secops", "inventory", ttl=-1, holder="worker-that-died")  # expired the moment it is taken
    dead.acquire()
    taker = Lease(es, "secops", "inventory", wait=5, holder="new-worker")
    t0 = time.monotonic()
    taker.acquire()
    assert time.monotonic() - t0 < 2
    dead.release()  # its lease was taken over: releasing must not free the new holder's
    waiting = Lease(es, "secops", "inventory", wait=0.5, holder="third")
    with pytest.raises(LeaseTimeout, match="held by new-worker"):
        waiting.acquire()
    taker.release()
    waiting.wait = 5
    waiting.acquire()
    waiting.release()


def test_merge_waits_for_the_lease_and_then_runs(es, settings):
    write_observations(es, settings, [{"@timestamp": iso(utcnow() - timedelta(minutes=1)),
                                       "host": {"ip": "198.18.41.5", "mac": "02:42:ac:11:00:05"},
                                       "secops": {"observation": {"kind": "address"}}}])
    holder = Lease(es, "secops", "inventory", holder="test")
    holder.acquire()
    done: list[dict] = []
    merge = threading.Thread(target=lambda: done.append(service.merge_observations(es, settings, None)))
    merge.start()
    merge.join(1.5)
    assert merge.is_alive() and not done
    holder.release()
    merge.join(30)
    assert done and done[0]["assets_created"] == 1


def test_concurrent_inventory_writers_keep_every_update(es, settings, testdata):
    """A scan re-merge, an observation merge and four tag requests on the same asset, all at once: the asset
    ends with the passive source and every tag (before the lease, the last writer's stale copy won)."""
    service.merge_scan(es, settings, payload(testdata, "1_host_ping.xml"))
    asset = assets(es)[0]
    ip, mac = asset["host"]["ip"][0], asset["host"]["mac"][0]
    write_observations(es, settings, [{"@timestamp": iso(), "host": {"ip": ip, "mac": mac, "hostname": "hmi-3"},
                                       "secops": {"observation": {"kind": "dhcp"}}}])
    errors: list[BaseException] = []

    def run(fn, *args) -> None:
        try:
            fn(es, settings, *args)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    jobs = [(service.merge_scan, payload(testdata, "1_host_ping.xml")), (service.merge_observations, None),
            *[(service.tag_asset, ip, [f"tag-{i}"], "analyst") for i in range(4)]]
    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    (final,) = assets(es)
    assert {f"tag-{i}" for i in range(4)} <= set(final.get("tags") or [])
    assert set(final["secops"]["asset"]["sources"]) == {"import", "passive"}
