"""Actions against real things: enrich on real asset/alert/conn documents, pcap extraction from a real
capture spool, nftables revert on failure and the iptables backend's self-expiring blocks in a namespace."""

from __future__ import annotations

import json
import os
import time

import pytest
from scapy.all import IP, TCP, wrpcap

from playbooks.blocking import Blocker
from playbooks.runner import Runner
from playbooks.store import PlaybookRunStore
from secops.config import PlaybookSettings, load_settings
from secops.ecs import iso
from secops.es.client import make_client
from secops.es.templates import index_for
from tests.integration.test_playbook_runner import Inline
from tests.support.frames import eth
from tests.support.netns import Lab
from tests.support.playbook_lab import (
    audit_actions,
    celery_client,
    config_for,
    playbook_settings,
    put_alert,
    run_for_alert,
    wait_for,
)
from tests.support.services import CeleryWorker

pytestmark = pytest.mark.integration

EVIDENCE = """
name: evidence
trigger: {tags: [t.evidence]}
steps:
  - name: look
    action: enrich
    params: {address: "{{ alert.source.ip }}"}
  - name: pcap
    action: pcap
    params: {address: "{{ alert.source.ip }}", peer: "{{ alert.destination.ip }}", port: "{{ alert.destination.port }}"}
"""

REVERT = """
name: revert
trigger: {tags: [t.revert]}
steps:
  - name: block
    action: contain
    params: {address: "{{ alert.source.ip }}", ttl_seconds: 300}
  - name: tell
    action: notify
    params: {channel: webhook, url: "http://127.0.0.1:9/not-allowed", message: "x"}
    on_failure: revert
"""


def test_enrich_and_pcap_on_real_documents_and_capture(settings, redis_server, tmp_path):
    spool = tmp_path / "pcap"
    spool.mkdir()
    pkts = [eth() / IP(src="198.18.0.20", dst="198.18.0.21") / TCP(sport=40000 + i, dport=22) for i in range(5)]
    pkts += [eth() / IP(src="198.18.0.20", dst="198.18.0.22") / TCP(dport=80) for _ in range(3)]
    pkts += [eth() / IP(src="198.18.0.23", dst="198.18.0.21") / TCP(dport=22) for _ in range(4)]
    now_ns = time.time_ns()
    wrpcap(str(spool / f"chunk-{now_ns - 10**9}-000002.pcap"), pkts)
    # an older chunk with the same connection, outside the alert's window, and one still being written
    old = spool / f"chunk-{now_ns - 7200 * 10**9}-000001.pcap"
    wrpcap(str(old), pkts[:5])
    os.utime(old, (time.time() - 7000, time.time() - 7000))
    wrpcap(str(spool / f"chunk-{now_ns}-000003.pcap.part"), pkts[:5])
    s = playbook_settings(settings, tmp_path, {"evidence": EVIDENCE})
    data = s.model_dump(mode="json", exclude_none=True)
    data["paths"]["pcap_dir"] = str(spool)
    s = load_settings(None, **data)
    es = make_client(s)
    prefix = s.elasticsearch.index_prefix
    es.index(index=index_for(prefix, "secops.asset"), id="asset-20", refresh=True, document={
        "event": {"dataset": "secops.asset"}, "host": {"ip": ["198.18.0.20"], "hostname": "ws-20"},
        "secops": {"asset": {"id": "asset-20", "criticality": "high", "zone": "office",
                             "services": [{"port": 22, "transport": "tcp", "name": "ssh"}]}}})
    now = iso()
    for i, port in enumerate([22, 22, 445]):
        es.index(index=index_for(prefix, "secops.conn", now), id=f"c{i}", document={
            "@timestamp": now, "event": {"dataset": "secops.conn"}, "source": {"ip": "198.18.0.20", "bytes": 100},
            "destination": {"ip": "198.18.0.21", "port": port, "bytes": 1000}, "secops": {"conn": {"state": "SF"}}})
    es.indices.refresh(index=f"{prefix}-conn-*")
    put_alert(es, prefix, "ev", source="198.18.0.20", destination="198.18.0.21", port=22, tags=["t.evidence"])
    inline = Inline()
    r = Runner(s, es, inline)
    run_id = r.on_alert("ev")[0]
    assert inline.drain(r) == ["done", "done"]
    steps = PlaybookRunStore.on(es, prefix).get(run_id).to_doc()["secops"]["playbook"]["steps"]
    look, pcap = json.loads(steps[0]["result"]), json.loads(steps[1]["result"])
    assert look["asset"]["hostname"] == "ws-20" and look["asset"]["criticality"] == "high"
    assert look["asset"]["services"] == ["22/tcp ssh"]
    assert look["alerts"]["count"] == 1 and look["alerts"]["recent"][0]["id"] == "ev"
    assert look["connections"] == {"count": 3, "bytes_out": 300, "bytes_in": 3000, "top_ports": {"22": 2, "445": 1},
                                   "top_peers": {"198.18.0.21": 3}, "states": {"SF": 3}}
    assert pcap["status"] == "attached" and pcap["packets"] == 5 and pcap["files_scanned"] == 1
    # without a spool the step degrades with a recorded reason instead of failing
    data["paths"]["pcap_dir"] = str(tmp_path / "nowhere")
    r2 = Runner(load_settings(None, **data), es, inline)
    put_alert(es, prefix, "ev2", source="198.18.0.20", destination="198.18.0.21", port=22, tags=["t.evidence"])
    run2 = r2.on_alert("ev2")[0]
    inline.drain(r2)
    result = json.loads(PlaybookRunStore.on(es, prefix).get(run2).to_doc()["secops"]["playbook"]["steps"][1]["result"])
    assert result["status"] == "unavailable" and "no pcap spool" in result["reason"]


def test_failure_policy_revert_lifts_the_block(settings, redis_server, tmp_path):
    with Lab() as lab:
        victim = lab.add_host("rv")
        s = playbook_settings(settings, tmp_path, {"revert": REVERT}, block_netns=victim.name)
        es, inline = make_client(s), Inline()
        r = Runner(s, es, inline)
        put_alert(es, s.elasticsearch.index_prefix, "rv", source="198.18.0.99", tags=["t.revert"])
        run_id = r.on_alert("rv")[0]
        assert inline.drain(r) == ["done", "failed"]
        pb = PlaybookRunStore.on(es, s.elasticsearch.index_prefix).get(run_id).to_doc()["secops"]["playbook"]
        assert pb["status"] == "failed" and "webhook_allow" in pb["steps"][1]["error"]
        assert not Blocker(s.playbooks).is_blocked("198.18.0.99")
        actions = [a["action"] for a in audit_actions(es, s.elasticsearch.index_prefix, run_id)]
        assert actions.count("playbook.step.acted") == 1 and "playbook.step.reverted" in actions


def test_iptables_backend_blocks_and_housekeeping_expires():
    with Lab() as lab:
        victim = lab.add_host("ipt")
        b = Blocker(PlaybookSettings(block_backend="iptables", block_netns=victim.name))
        assert b.block("198.18.0.98", 2) == {"backend": "iptables", "already_blocked": False}
        assert b.block("198.18.0.98", 2)["already_blocked"] is True
        assert "198.18.0.98/32" in victim.run("iptables", "-S", "INPUT").stdout
        assert b.expire_iptables() == []
        time.sleep(2.5)
        assert b.expire_iptables() == ["198.18.0.98"]
        assert not b.is_blocked("198.18.0.98")
        assert b.block("198.18.0.97", 60)["already_blocked"] is False
        assert b.unblock("198.18.0.97") == {"backend": "iptables", "removed": True}
        assert "secops-block" not in victim.run("iptables", "-S", "INPUT").stdout


TAG = """
name: tag-it
trigger: {tags: [t.tag]}
steps:
  - name: tag
    action: tag
    params: {address: "{{ alert.source.ip }}", tags: [suspected-attacker, "playbook-tagged"]}
"""


def test_tag_reaches_the_inventory_through_its_task_by_name(settings, redis_server, tmp_path):
    s = playbook_settings(settings, tmp_path, {"tag": TAG})
    es, prefix = make_client(s), s.elasticsearch.index_prefix
    es.index(index=index_for(prefix, "secops.asset"), id="asset-61", refresh=True, document={
        "@timestamp": iso(), "event": {"dataset": "secops.asset", "kind": "state"}, "host": {"ip": ["198.18.0.61"]},
        "tags": ["existing"], "secops": {"asset": {"id": "asset-61", "sources": ["scan"]}}})
    worker = CeleryWorker(config_for(s, tmp_path), tmp_path / "worker.log").start()
    try:
        put_alert(es, prefix, "tg", source="198.18.0.61", tags=["t.tag"])
        celery_client(s).send_task("playbooks.on_alert", args=["tg"])
        run = wait_for(lambda: (r := run_for_alert(es, prefix, "tg")) and r["status"] == "completed" and r, 30,
                       what="tag run completed")
        tags = wait_for(lambda: set(es.get(index=index_for(prefix, "secops.asset"), id="asset-61")["_source"]["tags"])
                        - {"existing"}, 30, what="asset tagged by inventory.tag_asset")
    finally:
        worker.stop()
    assert tags == {"suspected-attacker", "playbook-tagged"}
    assert json.loads(run["steps"][0]["result"])["task"] == "inventory.tag_asset"
