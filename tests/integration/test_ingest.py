"""`secops ingest` end to end: every labelled attack capture into the real Elasticsearch node, ndjson mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import TESTDATA

pytestmark = pytest.mark.integration

ATTACKS = sorted(p for p in (TESTDATA / "attacks").rglob("*") if p.suffix in (".pcap", ".pcapng"))


def secops(config_file: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, SECOPS_CONFIG=str(config_file), **(env or {}))
    return subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=600, check=False)


def test_every_attack_capture_ingests_into_elasticsearch(es, config_file: Path, settings) -> None:
    assert len(ATTACKS) >= 13
    out = secops(config_file, "ingest", *map(str, ATTACKS), "--output", "es")
    assert out.returncode == 0, out.stderr
    assert "error" not in out.stderr.lower()
    prefix = settings.elasticsearch.index_prefix
    es.indices.refresh(index=f"{prefix}-*")
    conns = es.count(index=f"{prefix}-conn-*")["count"]
    obs = es.count(index=f"{prefix}-observation-*")["count"]
    assert conns >= 80 and obs > 0, out.stderr
    # every conn carries the contract fields; protocol names come from the deep path
    hits = es.search(index=f"{prefix}-conn-*", size=500, query={"match_all": {}})["hits"]["hits"]
    for h in hits:
        s = h["_source"]
        assert s["network"]["community_id"].startswith("1:")
        assert s["secops"]["conn"]["state"] and "packets" in s["source"] and "bytes" in s["destination"]
    protos = {p for h in hits for p in h["_source"]["network"].get("protocol", [])}
    assert {"dns", "http", "smb", "modbus", "dnp3"} <= protos, protos
    # the iodine tunnel: one UDP/53 connection with hundreds of packets
    iodine = es.search(index=f"{prefix}-conn-*", query={"range": {"source.packets": {"gte": 200}}})["hits"]["hits"]
    assert any(h["_source"]["destination"]["port"] == 53 for h in iodine)
    # a replay is idempotent (deterministic _id)
    assert secops(config_file, "ingest", str(ATTACKS[0]), "--output", "es").returncode == 0
    es.indices.refresh(index=f"{prefix}-*")
    assert es.count(index=f"{prefix}-conn-*")["count"] == conns


def test_analyzer_processes_index_what_the_reading_process_writes(es, config_file: Path, settings) -> None:
    """Large files run their analyzers in processes of their own, whose documents reach Elasticsearch as the JSON text
    the child wrote (``BulkWriter.add_text``: ``event.ingested`` put in, ``_id`` taken out). Forced for the attack
    captures (``SECOPS_DEEP_PROCESS_MIN_BYTES=0``), Elasticsearch holds the documents the in-process NDJSON run
    writes."""
    from elasticsearch.helpers import scan

    env = {"SECOPS_DEEP_PROCESS_MIN_BYTES": "0"}
    out = secops(config_file, "ingest", *map(str, ATTACKS), "--output", "es", env=env)
    assert out.returncode == 0, out.stderr
    reference = secops(config_file, "ingest", *map(str, ATTACKS), "--output", "ndjson")
    want = {d.pop("_id"): d for d in map(json.loads, reference.stdout.splitlines())}
    prefix = settings.elasticsearch.index_prefix
    es.indices.refresh(index=f"{prefix}-*")
    got = {}
    for hit in scan(es, index=f"{prefix}-*", query={"query": {"match_all": {}}}):
        assert hit["_source"]["event"].pop("ingested")
        got[hit["_id"]] = hit["_source"]
    assert len(want) > 500 and {d["event"]["dataset"] for d in want.values()} >= {"secops.conn", "secops.dns",
                                                                                 "secops.smb", "secops.modbus"}
    assert got == want


def test_ndjson_output_and_bad_file(config_file: Path, tmp_path: Path) -> None:
    get = TESTDATA / "zeek" / "traces" / "http" / "get.pcap"
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"definitely not a pcap")
    out = secops(config_file, "ingest", str(get), str(junk), "--output", "ndjson")
    assert out.returncode == 2  # the bad file is an error, the good one is still fully processed
    docs = [json.loads(line) for line in out.stdout.splitlines()]
    conn = [d for d in docs if d["event"]["dataset"] == "secops.conn"]
    assert len(conn) == 1 and conn[0]["secops"]["conn"]["state"] == "SF"
    assert conn[0]["network"]["protocol"] == ["http"]
    assert any(d["event"]["dataset"] == "secops.http" for d in docs)
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "junk.pcap" in errors[0] and "not a pcap" in errors[0]
