"""The bulk spool under pressure (issue 17 items 10 and 11), against the real Elasticsearch node:

- Elasticsearch goes down at the first bulk request and the spool lives on a 2 MB tmpfs: ingest stops with one
  line that accounts for every document (in Elasticsearch, in the spool, not kept), leaves no partial file, and
  a replay plus a rerun of the same input end with every document stored exactly once;
- ``secops es spool`` without ``--replay`` only lists: no replay, no deletion, no template install.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from secops.config import BulkSettings
from secops.es.bulk import BulkWriter, DeliveryFailed
from secops.es.spool import Spool
from tests.support.outage import OutageRelay, small_tmpfs

pytestmark = pytest.mark.integration
FLOWS = 6000  # one UDP packet each: 6000 conn + 6000 observation documents, about 5.8 MB of JSON


def udp_flood_pcap(path: Path, flows: int = FLOWS) -> None:
    """One single-packet UDP flow per source address in 198.18.0.0/15 (classic pcap, Ethernet)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(flows):
        src = bytes([198, 18 + (i >> 16 & 1), i >> 8 & 255, i & 255])
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 29, i & 0xFFFF, 0, 64, 17, 0, src, bytes([198, 19, 255, 1]))
        csum = sum(struct.unpack("!10H", ip))
        csum = ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF
        ip = ip[:10] + struct.pack("!H", csum) + ip[12:]
        frame = (b"\x02\x00\x00\x00\xff\x01" + b"\x02\x00" + struct.pack("!I", i) + b"\x08\x00" + ip
                 + struct.pack("!HHHH", 10000 + i % 50000, 9999, 9, 0) + b"x")
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def secops(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SECOPS_CONFIG=str(config), COLUMNS="400")
    return subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def write_config(path: Path, hosts: list[str], spool_dir: Path, prefix: str, state: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "elasticsearch": {"hosts": hosts, "index_prefix": prefix},
        "paths": {"state_dir": str(state), "spool_dir": str(spool_dir)},
        "bulk": {"batch_docs": 500, "backoff_seconds": 0.1, "probe_seconds": 1.0}}))
    return path


def count(es, prefix: str) -> int:
    if not es.indices.exists(index=f"{prefix}-*", allow_no_indices=False, expand_wildcards="all"):
        return 0
    es.indices.refresh(index=f"{prefix}-*")
    return es.count(index=f"{prefix}-*")["count"]


def test_full_spool_disk_with_store_down_is_one_exact_line_and_loses_nothing(es_node, tmp_path: Path) -> None:
    prefix = "fulldisk"
    es = Elasticsearch(es_node.url, request_timeout=60)
    es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
    pcap = tmp_path / "flood.pcap"
    udp_flood_pcap(pcap)
    with small_tmpfs("2m") as spool_dir, OutageRelay(es_node.url) as relay:
        cfg = write_config(tmp_path / "down.yaml", [relay.url], spool_dir, prefix, tmp_path / "state")
        out = secops(cfg, "ingest", str(pcap), "--no-deep")
        assert relay.down.is_set()
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and "OSError" not in out.stderr and "Errno" not in out.stderr
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out.stderr
        m = re.search(r"Kept: (\d+) documents in Elasticsearch, (\d+) in the spool \((\d+) files.*"
                      r"Not kept: (\d+) documents", errors[0])
        assert m and "No space left on device" in errors[0], errors[0]
        in_es, in_spool, files, not_kept = map(int, m.groups())
        summary = Spool(spool_dir).summary()
        assert (summary.pending_documents, summary.pending_files, summary.partial_files) == (in_spool, files, 0)
        assert not list(spool_dir.glob(".*.tmp"))
        assert in_es == count(es, prefix) == 0 and in_spool > 0 and not_kept > 0
        assert in_spool + not_kept < 2 * FLOWS  # the input stopped: the rest was never produced, and said so

        # Listing changes nothing, even with the store back (item 11) ...
        up = write_config(tmp_path / "up.yaml", [es_node.url], spool_dir, prefix, tmp_path / "state")
        listing = secops(up, "es", "spool")
        assert listing.returncode == 0, listing.stderr
        assert f"{files} pending files ({in_spool} documents" in listing.stdout and "0 partial" in listing.stdout
        assert Spool(spool_dir).summary() == summary and count(es, prefix) == 0
        # ... --replay sends it, and running the same input again completes the store without duplicates.
        replay = secops(up, "es", "spool", "--replay")
        assert replay.returncode == 0 and f"replayed {in_spool} documents; 0 files still pending" in replay.stdout
        assert count(es, prefix) == in_spool
        rerun = secops(up, "ingest", str(pcap), "--no-deep")
        assert rerun.returncode == 0, rerun.stderr
        assert count(es, prefix) == 2 * FLOWS
    es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")


def test_writer_refuses_input_after_a_failed_spool_write(tmp_path: Path) -> None:
    """BulkWriter level: no node listening and a full disk; every later add() raises the same account."""
    free = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{free.getsockname()[1]}"
    free.close()  # nothing listens there now: connection refused
    with small_tmpfs("256k") as spool_dir:
        writer = BulkWriter(Elasticsearch(url, max_retries=0, request_timeout=5), spool_dir,
                            BulkSettings(batch_docs=100, batch_bytes=1 << 30, flush_seconds=3600, max_retries=0,
                                         backoff_seconds=0, probe_seconds=60))
        added = 0
        with pytest.raises(DeliveryFailed) as first:
            for i in range(100_000):
                writer.add({"_id": f"d{i}", "_index": "x", "pad": "p" * 1000})
                added += 1
        summary = Spool(spool_dir).summary()
        assert f"{summary.pending_documents} in the spool ({summary.pending_files} files" in str(first.value)
        assert summary.partial_files == 0
        assert summary.pending_documents + writer.stats.not_kept == added + 1
        with pytest.raises(DeliveryFailed, match=f"Not kept: {writer.stats.not_kept + 1} documents"):
            writer.add({"_id": "late", "_index": "x"})
        writer.close()  # no further attempt, no exception: the account above stays exact
        assert Spool(spool_dir).summary() == summary


def test_spool_listing_changes_nothing(settings, es, tmp_path: Path) -> None:
    """Item 11: `es spool` without --replay neither replays, deletes nor installs templates; works with ES down."""
    prefix = "spoollist"
    es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-*")
    spool_dir = tmp_path / "spool"
    Spool(spool_dir).append([Spool.encode(f"{prefix}-conn-2026.11.29", f"id{i}", b'{"a":1}') for i in range(3)])
    (spool_dir / ".00000000000000000001-999999999-000001.ndjson.tmp").write_bytes(b'{"i":"x"')  # a crashed writer
    before = sorted((p.name, p.stat().st_mtime_ns) for p in spool_dir.rglob("*"))
    cfg = write_config(tmp_path / "c.yaml", settings.elasticsearch.hosts, spool_dir, prefix, tmp_path / "state")
    out = secops(cfg, "es", "spool")
    assert out.returncode == 0, out.stderr
    assert "1 pending files (3 documents" in out.stdout and "1 partial" in out.stdout
    assert sorted((p.name, p.stat().st_mtime_ns) for p in spool_dir.rglob("*")) == before
    assert count(es, prefix) == 0
    assert not es.options(ignore_status=404).indices.get_index_template(name=f"{prefix}-*").get("index_templates")
    down = write_config(tmp_path / "d.yaml", ["http://127.0.0.1:9"], spool_dir, prefix, tmp_path / "state")
    assert secops(down, "es", "spool").returncode == 0  # listing needs no node
    replay = secops(cfg, "es", "spool", "--replay")
    assert "removed 1 partial files" in replay.stdout and "replayed 3 documents; 0 files still pending" in replay.stdout
    assert count(es, prefix) == 3
    es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
