"""Passive observations describe hosts that showed themselves, not every address someone probed."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from secops.devstack.demo_traffic import ATTACKER, ROUTER_MAC, SERVER, write_demo_pcap

pytestmark = pytest.mark.integration


def test_only_endpoints_that_sent_packets_are_observed(tmp_path):
    pcap = tmp_path / "demo.pcap"
    write_demo_pcap(pcap, time.time() - 3600)
    out = subprocess.run([sys.executable, "-m", "collectors.ingest", str(pcap)], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    obs = [json.loads(line) for line in out.splitlines() if '"secops.observation"' in line]
    addresses = {o["host"]["ip"] for o in obs if o["secops"]["observation"]["kind"] == "address"}
    swept = {f"198.18.1.{n}" for n in range(1, 255)}
    answered = {f"198.18.1.{n}" for n in range(16, 255, 16)}  # the sweep's only echo replies
    assert addresses & swept == answered, "silent sweep targets must not become assets"
    assert {ATTACKER, SERVER} <= addresses
    services = {(o["host"]["ip"], o["secops"]["observation"]["port"]) for o in obs
                if o["secops"]["observation"]["kind"] == "service"}
    # the port scan found 22 and 80 open on the server; the 298 closed ports are not services
    assert {(SERVER, 22), (SERVER, 80)} <= services
    assert not {p for ip, p in services if ip == SERVER} - {21, 22, 80, 8080}
    # the 16 sweep responders and the C2 server all arrive behind one router MAC: it must become the
    # identity of none of them, not even of the first ones seen (the MAC is decided at the end of the file)
    assert not [o for o in obs if o["host"].get("mac") == ROUTER_MAC]
    assert all(o["host"].get("mac") for o in obs if o["host"]["ip"] in {ATTACKER, SERVER})
