"""TLS heartbeat abuse (issue 12): a scapy-crafted capture read by the whole ingest path (flow core, deep
selection, tshark, the TLS analyzer) into the real node, then both heartbeat rules. Four sessions: the
heartbleed read before the handshake completes, an encrypted leak after it, a well-formed early heartbeat
(a scan) and negotiated encrypted keep-alives (the near miss that must stay quiet)."""

from __future__ import annotations

import pytest
from scapy.utils import wrpcap

from detections.engine import run_rule
from tests.integration.test_detect_captures import ingest
from tests.integration.test_detect_hardening import builtin
from tests.support import tls_heartbeat as craft

pytestmark = pytest.mark.integration
HEARTBLEED = "5a0eb268-b4f2-4182-88b8-b1dc13317251"
OUT_OF_SEQUENCE = "6c43f5b7-ecf4-4a12-9011-0f33b263c384"
SERVER = "198.18.50.10"
EVER = ("1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z")


def test_heartbleed_and_encrypted_leak_high_early_heartbeat_medium_keepalives_quiet(es, config_file, tmp_path):
    sessions = {"198.18.50.1": craft.heartbleed, "198.18.50.2": craft.early_heartbeat,
                "198.18.50.3": craft.keepalive, "198.18.50.4": craft.encrypted_leak}
    packets = [p for n, (client, make) in enumerate(sessions.items())
               for p in make(client, SERVER, 40_001 + n, craft.T0 + n)]
    capture = tmp_path / "heartbeats.pcap"
    wrpcap(str(capture), packets)
    ingest(config_file, [capture])
    es.indices.refresh(index="secops-*")

    docs = {h["_source"]["source"]["ip"]: h["_source"]["secops"]["tls"]["heartbeat"]
            for h in es.search(index="secops-tls-*", size=10)["hits"]["hits"]}
    assert docs["198.18.50.1"]["overclaimed"] and docs["198.18.50.1"]["max_payload_length"] == craft.LEAK
    assert docs["198.18.50.3"] == {"records": 4, "overclaimed": False, "oversized": False, "leaked": False,
                                   "before_handshake": False, "unsolicited": False}
    assert docs["198.18.50.4"]["leaked"] and not docs["198.18.50.4"]["before_handshake"]

    high = run_rule(es, "secops", builtin(HEARTBLEED), *EVER)
    assert sorted(m.fields.get("source.ip") or m.group.get("source.ip") for m in high) == \
        ["198.18.50.1", "198.18.50.4"]
    medium = run_rule(es, "secops", builtin(OUT_OF_SEQUENCE), *EVER)
    assert [m.fields.get("source.ip") or m.group.get("source.ip") for m in medium] == ["198.18.50.2"]
