"""Fewer, better alerts on the demo capture (issue 12): one incident per attacking host, no resolver beaconing,
no brute force reported again as beaconing; individual alerts stay queryable."""

from __future__ import annotations

import time

import pytest

from detections.incidents import IncidentStore
from secops.devstack.demo_traffic import ATTACKER, C2, RESOLVER, SERVER, WORKSTATION, write_demo_pcap
from tests.integration.test_detect_captures import detect, ingest

pytestmark = pytest.mark.integration


def test_demo_ftp_brute_force_is_one_incident_and_the_resolver_no_beacon(settings, es, config_file, tmp_path):
    pcap = tmp_path / "demo.pcap"
    write_demo_pcap(pcap, time.time() - 3600)
    ingest(config_file, [pcap])
    alerts = detect(settings, es)
    beacons = [a for a in alerts if a["rule"]["id"] == "secops-analytic-beaconing"]
    assert not [a for a in beacons if a["destination"]["ip"] == RESOLVER]  # DNS to the resolver is infrastructure
    pairs = {(a["source"]["ip"], a["destination"]["ip"]) for a in beacons}
    assert (WORKSTATION, C2) in pairs  # the C2 beacon is still found
    assert (ATTACKER, SERVER) not in pairs  # the FTP brute force explains its regular series
    ftp = [a for a in alerts if a["source"]["ip"] == ATTACKER and a["destination"].get("ip") == SERVER
           and "T1110" in a["threat"]["technique"]["id"]]
    assert {a["rule"]["name"] for a in ftp} == {"FTP Brute Force", "FTP Brute Force (Connection Rate)"}
    incidents = IncidentStore(es, settings.elasticsearch.index_prefix).list()
    by_host = {i["secops"]["incident"]["host"]: i["secops"]["incident"] for i in incidents}
    assert len(incidents) == len(by_host)  # one incident per host in this hour-long capture
    attacker = by_host[ATTACKER]
    assert {"FTP Brute Force", "FTP Brute Force (Connection Rate)"} <= set(attacker["rules"])
    assert attacker["severity"] == "high"
    mine = [a for a in alerts if a.get("source", {}).get("ip") == ATTACKER]
    assert attacker["alert_count"] == len(mine) and {a["secops"]["alert"]["incident_id"] for a in mine} == {
        attacker["id"]}
    print({h: (i["alert_count"], i["severity"], i["rules"]) for h, i in by_host.items()})
