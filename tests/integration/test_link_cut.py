"""A site whose link to Elasticsearch is down: `secops ingest` and `secops sensor run` start anyway, spool what
they produce, and once the store answers install the index templates and replay; the live sensor keeps
capturing through a 60 s cut of its link (the veth on its path to the store set down: packets silently dropped,
so requests hang until their timeouts) and afterwards every connection the lab made is in Elasticsearch
exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from elasticsearch import ApiError, Elasticsearch
from elasticsearch.helpers import scan

from secops.config import Settings, load_settings
from secops.ecs import parse_time
from secops.es.bulk import dumps
from secops.es.client import make_client
from secops.es.spool import Spool
from secops.es.store import Store
from secops.es.templates import index_for
from tests.integration.test_elasticsearch_layer import conn_doc
from tests.integration.test_sites import reference_ids
from tests.support import TESTDATA
from tests.support.netns import Lab
from tests.support.relay import TcpRelay
from tests.support.sensor import TCP_SINK, SensorProcess
from tests.support.services import write_config
from tests.support.silent_link import SilentLink

pytestmark = pytest.mark.integration

PREFIX = "linkcut"
CUT_SECONDS = 60  # the link cut
PCAPS = (TESTDATA / "zeek/traces/globus-url-copy.pcap", TESTDATA / "zeek/traces/http/pipelined-requests.pcap")


def site_settings(tmp_path: Path, url: str, request_timeout: float = 10) -> Settings:
    es = {"hosts": [url], "index_prefix": PREFIX, "request_timeout": request_timeout}
    return load_settings(None, elasticsearch=es,
                         paths={"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")},
                         sensor={"stats_seconds": 2},
                         bulk={"backoff_seconds": 0.05, "max_retries": 1, "probe_seconds": 1.0, "flush_seconds": 0.5})


@pytest.fixture
def store(es_node) -> Elasticsearch:
    """The session node, with no index or template of this test's prefix (a site that never shipped)."""
    es = Elasticsearch(es_node.url, request_timeout=30)
    es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True, expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{PREFIX}-*")
    return es


def cut_link(es_node) -> TcpRelay:
    """The site's link, cut: its port refuses connections until ``restore``."""
    port = int(es_node.url.rsplit(":", 1)[1])
    relay = TcpRelay("127.0.0.1", ("127.0.0.1", port))
    relay.close()
    return relay


def restore(relay: TcpRelay) -> TcpRelay:
    return TcpRelay("127.0.0.1", relay.target, port=relay.address[1])


def ids_of(es: Elasticsearch, observer: str, dataset: str | None = None) -> list[str]:
    es.indices.refresh(index=f"{PREFIX}-*", allow_no_indices=True)
    terms = [{"term": {"observer.name": observer}}] + ([{"term": {"event.dataset": dataset}}] if dataset else [])
    hits = scan(es, index=f"{PREFIX}-*", query={"query": {"bool": {"filter": terms}}}, _source=False)
    return [h["_id"] for h in hits]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "secops", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, SECOPS_CONFIG=str(config)), check=False)


def test_ingest_starts_with_the_store_unreachable_and_replays_into_templated_indices(store, es_node, tmp_path):
    expected = [reference_ids(pcap, "site-a") for pcap in PCAPS]
    relay = cut_link(es_node)
    s = site_settings(tmp_path, f"http://127.0.0.1:{relay.address[1]}")
    config = write_config(s, tmp_path / "site-a.yaml")

    out = cli(config, "ingest", "--no-deep", "--observer", "site-a", str(PCAPS[0]))
    assert out.returncode == 0, out.stderr
    assert "Elasticsearch unreachable" in out.stderr and "documents are spooled" in out.stderr
    spool = sorted((tmp_path / "state").rglob("spool/*.ndjson"))
    assert sum(len(p.read_bytes().splitlines()) - 1 for p in spool) == len(expected[0]), "all of it spooled"
    assert not store.indices.exists_index_template(name=f"{PREFIX}-conn"), "nothing reached the store"

    relay = restore(relay)
    try:  # the next run on the site replays the spool first (templates before the first document), then ships
        out = cli(config, "ingest", "--no-deep", "--observer", "site-a", str(PCAPS[1]))
        assert out.returncode == 0, out.stderr
        assert "unreachable" not in out.stderr
    finally:
        relay.close()
    assert store.indices.exists_index_template(name=f"{PREFIX}-conn")
    got = ids_of(store, "site-a")
    assert len(got) == len(set(got)) and set(got) == expected[0] | expected[1]
    mapping = store.indices.get_mapping(index=f"{PREFIX}-conn-*")
    for index in mapping.values():  # written under the template's mappings, not guessed ones
        assert index["mappings"]["properties"]["source"]["properties"]["ip"]["type"] == "ip"
    assert not list((tmp_path / "state").rglob("spool/*.ndjson"))


CLIENT = textwrap.dedent("""
    import socket, sys, time
    ip, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c = socket.create_connection((ip, port), timeout=5)
        c.sendall(b"q" * 200)
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
        print(c.getsockname()[1], flush=True)
        c.close()
        time.sleep(0.25)
""")


@pytest.mark.root
def test_live_sensor_starts_cut_off_and_captures_through_a_60_s_cut_every_connection_once(store, es_node, tmp_path):
    made: list[int] = []

    def traffic(host, ip: str, seconds: float) -> None:
        out = host.run(sys.executable, "-c", CLIENT, ip, "9200", str(seconds), timeout=seconds + 60).stdout
        made.extend(int(p) for p in out.split())

    def conn_ports() -> list[int]:
        q = {"query": {"bool": {"filter": [{"term": {"observer.name": "cut-site"}},
                                           {"term": {"destination.port": 9200}}]}}}
        try:
            store.indices.refresh(index=f"{PREFIX}-*", allow_no_indices=True)
            return [h["_source"]["source"]["port"] for h in
                    scan(store, index=f"{PREFIX}-conn-*", query=q, _source=["source.port"])]
        except ApiError as exc:  # the index the sensor just created has no started shard yet
            if exc.meta.status != 503:
                raise
            return []

    def stats_times() -> list[float]:
        """When the sensor's supervisor wrote each of its periodic reports (once every stats_seconds)."""
        store.indices.refresh(index=f"{PREFIX}-*", allow_no_indices=True)
        q = {"query": {"term": {"observer.name": "cut-site"}}}
        return sorted(parse_time(h["_source"]["@timestamp"]).timestamp() for h in
                      scan(store, index=f"{PREFIX}-sensor*", query=q, _source=["@timestamp"]))

    port = int(es_node.url.rsplit(":", 1)[1])
    with Lab() as lab, SilentLink(("127.0.0.1", port), tag=f"{lab.tag}u") as link:
        s = site_settings(tmp_path, link.url, request_timeout=3)  # a request into the silence ends after 3 s
        config = write_config(s, tmp_path / "sensor.yaml")
        srv, cli_host = lab.add_host("srv"), lab.add_host("cli")
        srv.popen(sys.executable, "-c", TCP_SINK, srv.ip, "9200", "300")
        link.cut()  # silently: the sensor's packets to the store are dropped, nothing answers or refuses
        sensor = SensorProcess(config, "--interface", lab.bridge, "--observer", "cut-site", "--workers", "1",
                               "--no-deep")
        try:
            sensor.wait_ready()  # starts although the store has never been reachable, without waiting on it
            traffic(cli_host, srv.ip, 5)
            first = len(made)
            time.sleep(3)
            sensor.wait_for(lambda: "Elasticsearch unreachable" in sensor.err, 30, "the unreachable warning")
            assert conn_ports() == [] and not store.indices.exists_index_template(name=f"{PREFIX}-conn")
            link.restore()  # the link comes up: templates, then the spool, without new traffic
            sensor.wait_for(lambda: sorted(conn_ports()) == sorted(made), 60, "the first connections")
            assert store.indices.exists_index_template(name=f"{PREFIX}-conn")

            link.cut()  # the link goes silent while the sensor ships
            cut_at = time.time()
            traffic(cli_host, srv.ip, CUT_SECONDS - 10)
            time.sleep(max(0.0, CUT_SECONDS - (time.time() - cut_at)))
            assert len(conn_ports()) == first, "nothing arrives while the link is cut"
            link.restore()
            back_at = time.time()
            traffic(cli_host, srv.ip, 3)
            sensor.wait_for(lambda: sorted(conn_ports()) == sorted(made), 90, "every connection after the cut")
            caught_up = time.time() - back_at
        finally:
            assert sensor.stop() == 0, sensor.err
    ports = conn_ports()
    # the supervisor's housekeeping (worker restarts, disk budget, reports) never waited on a hanging write
    during = [t for t in stats_times() if cut_at <= t <= back_at]
    gaps = [round(b - a, 1) for a, b in zip([cut_at, *during], [*during, back_at], strict=True)]
    print(f"{len(made)} connections made ({first} before the store was ever reachable), {len(ports)} in "
          f"Elasticsearch after a {CUT_SECONDS} s silent cut, all in {caught_up:.1f} s after the link came back; "
          f"{len(during)} sensor reports during the cut, "
          f"longest gap {max(gaps)} s")
    # a multiset comparison: the client can reuse a source port once its earlier connection has left TIME_WAIT
    # (CI saw 2 of 227 ports twice), so each port must appear as often as the client made it, no more
    assert len(made) > first > 5 and sorted(ports) == sorted(made)
    assert max(gaps) < 3 * s.sensor.stats_seconds, gaps
    assert not [p for p in (tmp_path / "state").rglob("spool/**/*.ndjson")], "every spool replayed"


@pytest.mark.root
def test_replay_into_a_silent_link_waits_one_probe_not_every_retry_of_a_bulk_request(store, es_node, tmp_path):
    """A spool replay while the link drops packets: the writer learns the store is away within ``probe_seconds``
    (before, the replay's bulk request waited out its timeout on every retry: 4 x 3 s + 3.5 s of backoff here,
    157.5 s with the default settings), keeps the spool, and replays it once the link is back."""
    port = int(es_node.url.rsplit(":", 1)[1])
    with SilentLink(("127.0.0.1", port), tag=f"{os.getpid() % 100000:05d}r") as link:
        s = load_settings(None, elasticsearch={"hosts": [link.url], "index_prefix": PREFIX, "request_timeout": 3},
                          paths={"state_dir": str(tmp_path / "state")},
                          bulk={"max_retries": 3, "backoff_seconds": 0.5, "probe_seconds": 1.0})
        writer = Store.from_settings(make_client(s), s).writer()
        docs = [conn_doc(i) for i in range(11)]
        writer.add(docs.pop())  # a writer that has shipped (templates checked) when the link goes
        writer.flush()
        assert writer.stats.written == 1
        writer.spool.append([Spool.encode(index_for(PREFIX, "secops.conn", d["@timestamp"]), d.pop("_id"), dumps(d))
                             for d in docs])
        link.cut()
        started = time.monotonic()
        assert writer.replay() == 0 and writer.spool.pending() == 1
        waited = time.monotonic() - started
        link.restore()
        # the client may still hold a connection opened through the silent link, or keep the node on its dead
        # timeout for a moment: the writer pauses again and replays at its next turn, which is what a sensor does
        replayed, deadline = 0, time.monotonic() + 30
        while writer.spool.pending() and time.monotonic() < deadline:
            replayed += writer.replay()
            if writer.spool.pending():
                time.sleep(0.5)
        assert replayed == 10 and writer.spool.pending() == 0 and writer.stats.rejected == 0
    print(f"replay into a silent link gave up after {waited:.1f} s")
    assert waited < 2.5, waited
