"""Every shipped Lens chart has data to draw: its aggregation, reproduced from its columns, run on a real node.

The node is loaded the way an operator's would be: the demo's synthetic capture plus small public ICS and TLS
captures go through `secops ingest`, `secops detect run`, `secops alerts assign`, `secops assets merge` and
`secops scan import` (a real nmap XML with OS detection);
a sensor's health document comes from the real Sensor's counters after it processed the demo capture; playbook
runs and a block are written through the playbook store with the contract records (a run that waits for an
approval needs a worker and a person, which this test does not stage).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from collectors.ingest import Pipeline
from collectors.sensor import Sensor
from detections import kibana_lens as lens
from detections.kibana import DASHBOARDS
from playbooks.store import PlaybookRunStore
from secops.contracts.playbook import Approval, PlaybookRun, RunStatus, StepRecord
from secops.devstack.demo_traffic import write_demo_pcap
from secops.ecs import iso
from secops.es.templates import index_pattern
from tests.integration.detect_support import write
from tests.support import TESTDATA
from tests.support.services import write_config

SHARED_CAPTURES = [TESTDATA / "attacks/ics/dnp3/dnp3_select_operate.pcap", TESTDATA / "attacks/ics/s7comm/snap7.pcap",
                   *(TESTDATA / "zeek/traces/tls" / name for name in ("certificate-request-failed.pcap", "dhe.pcap",
                                                                     "tls13draft23-chrome67.0.3368.0-canary.pcap",
                                                                     "webrtc-stun.pcap"))]  # a self-signed peer
NMAP_XML = TESTDATA / "nmap-xml/libnmap/os_scan5.xml"  # a real nmap -O scan: operating systems and services
CHARTS = [(board.title, chart) for board in DASHBOARDS for chart in board.charts]


def secops(config, *args: str) -> None:
    env = dict(os.environ, SECOPS_CONFIG=str(config))
    proc = subprocess.run([sys.executable, "-m", "secops", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"secops {' '.join(args)}: {proc.stderr[-2000:]}"


def _runs(es, settings) -> None:
    store = PlaybookRunStore.on(es, settings.elasticsearch.index_prefix)
    now = iso()
    for n, (status, approval) in enumerate([(RunStatus.COMPLETED, None), (RunStatus.FAILED, None),
                                            (RunStatus.WAITING_APPROVAL, Approval(step="block", deadline=iso(
                                                time.time() + 3600)))]):
        store.create(PlaybookRun(run_id=f"kibana-test-{n}", name="contain-attacker", alert_id=f"a{n}",
                                 dry_run=False, status=status, created=now, updated=now, actor="test",
                                 steps=[StepRecord(name="block", action="block_ip", action_key=f"k{n}")], step="block",
                                 approval=approval))
    store.record_block("198.18.0.66", 3600, "kibana-test-2", "nftables")


@pytest.fixture
def loaded(redis_server, settings, es, tmp_path):
    """The test node loaded with secops data of every kind the dashboards chart (Redis takes the alert triggers)."""
    data = settings.model_dump(mode="json", exclude_none=True)
    data["inventory"] = {**data.get("inventory", {}), "zones": {"demo-lab": ["198.18.0.0/15"]}}
    config = write_config(settings, tmp_path / "secops.yaml")
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "inventory": data["inventory"]}))
    pcap = tmp_path / "demo.pcap"
    write_demo_pcap(pcap, time.time() - 3600)
    secops(config, "ingest", str(pcap))
    secops(config, "detect", "run")  # before the shared captures: their years-old times would widen every window
    es.indices.refresh(index=index_pattern(settings.elasticsearch.index_prefix, "secops.alert"))
    alert = es.search(index=index_pattern(settings.elasticsearch.index_prefix, "secops.alert"), size=1)
    secops(config, "alerts", "assign", alert["hits"]["hits"][0]["_id"], "analyst1")
    secops(config, "ingest", *map(str, SHARED_CAPTURES))
    secops(config, "assets", "merge")
    secops(config, "scan", "import", str(NMAP_XML))
    # the sensor's own counters document, its packets read by a pipeline as a worker reads a chunk (no capture
    # ring runs here, so the captured count is what was read); the flow documents are already in from `ingest`
    pipeline = Pipeline(lambda _doc: None, observer="kibana-test-sensor")
    pipeline.process_file(pcap)
    stats = pipeline.finish()
    sensor = Sensor(settings, "lo", observer="kibana-test-sensor")
    sensor.counters.processed, sensor.counters.conns, sensor.counters.chunks = stats.packets, stats.conns, 1
    doc = sensor.counters_doc()
    doc["secops"]["sensor"]["packets_captured"] = stats.packets
    write(es, settings, [doc])
    _runs(es, settings)
    es.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")
    return settings


def test_every_chart_has_buckets_and_alerts_fit_external_alerts(loaded, es):
    prefix = loaded.elasticsearch.index_prefix
    empty = []
    for board, chart in CHARTS:
        body = lens.es_request(chart, interval="1m")
        res = es.search(index=index_pattern(prefix, chart.dataset), **body, allow_no_indices=True)
        found = lens.buckets_of(chart, res.body)
        if found == 0:
            empty.append(f"{board} / {chart.title}")
    _secops_alerts_carry_what_external_alerts_needs(es, prefix)
    assert empty == [], f"charts with nothing to draw: {empty}"


# Elastic's prebuilt "External Alerts" rule (rule_id eb079c62-4481-4d6e-9643-3ca499df7aaa): query, overrides and
# the event.severity values its severity mapping equals (low 21, medium 47, high 73, critical 99).
EXTERNAL_ALERTS_QUERY = {"bool": {"filter": [{"term": {"event.kind": "alert"}}],
                                  "must_not": [{"terms": {"event.module": ["endgame", "endpoint", "cloud_defend"]}}]}}
EXTERNAL_ALERTS_SEVERITIES = {21: "low", 47: "medium", 73: "high", 99: "critical"}


def _secops_alerts_carry_what_external_alerts_needs(es, prefix: str) -> None:
    index = index_pattern(prefix, "secops.alert")
    alerts = [h["_source"] for h in es.search(index=index, size=1000)["hits"]["hits"]]
    assert alerts, "detections raised no alert from the demo capture"
    assert es.count(index=index, query=EXTERNAL_ALERTS_QUERY)["count"] == len(alerts)
    for a in alerts:
        event = a["event"]
        assert event["severity"] in EXTERNAL_ALERTS_SEVERITIES, event  # severity_mapping matches exactly
        assert EXTERNAL_ALERTS_SEVERITIES[event["severity"]] == {"informational": "low"}.get(
            a["rule"]["severity"], a["rule"]["severity"])
        assert a["message"].startswith(a["rule"]["name"])  # rule_name_override = message
        assert event["ingested"] and a["@timestamp"]  # timestamp_override = event.ingested
