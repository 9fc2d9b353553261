"""C2 over QUIC matched by TLS client fingerprint (issue 12): a real aioquic client beaconing to a QUIC server in
a namespace, captured on the lab bridge, ingested by `secops ingest`; an operator fingerprint file names the
client's JA4 (the offline list updated from a file) and the match takes its entry's severity. The same
library with another ALPN (a different JA4: the near miss) and the shipped list alone raise nothing."""

from __future__ import annotations

import pytest

from detections.analytics import analytic_rules
from detections.engine import run_rule
from detections.fingerprints import load_fingerprints
from tests.integration.test_detect_captures import ingest
from tests.support.quic_lab import quic_capture

pytestmark = pytest.mark.integration
EVER = ("1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z")


def fingerprint_rule(fingerprints):
    return next(r for r in analytic_rules(fingerprints=fingerprints) if r.id == "secops-analytic-c2-fingerprint")


def test_quic_c2_client_matched_from_an_operator_list_not_its_h3_sibling(es, config_file, tmp_path):
    capture = tmp_path / "quic.pcap"
    (tmp_path / "lab").mkdir()
    server = quic_capture(capture, tmp_path / "lab", {"c2": 3, "h3": 1})
    ingest(config_file, [capture])
    es.indices.refresh(index="secops-*")
    sessions = [h["_source"] for h in es.search(index="secops-tls-*", size=20)["hits"]["hits"]]
    by_alpn = {s["tls"]["client"]["ja4"] for s in sessions if s["tls"]["client"]["ja4"].startswith("q13d0307c2")}
    assert len(sessions) == 4 and len(by_alpn) == 1
    c2_ja4 = by_alpn.pop()

    assert run_rule(es, "secops", fingerprint_rule(load_fingerprints()), *EVER) == []  # shipped list: a near miss
    update = tmp_path / "site-c2.csv"
    update.write_text(f"# site list\n{c2_ja4},lab QUIC implant,high,seen beaconing over QUIC\nnot-a-hash,x,high\n")
    listed = load_fingerprints([update])
    assert len(listed) == len(load_fingerprints()) + 1 and len(listed.errors) == 1
    matches = run_rule(es, "secops", fingerprint_rule(listed), *EVER)
    assert [(m.group["destination.ip"], m.group["tls.client.ja4"], m.count, m.severity) for m in matches] == \
        [(server, c2_ja4, 3, "high")]
    assert "lab QUIC implant" in matches[0].reason
