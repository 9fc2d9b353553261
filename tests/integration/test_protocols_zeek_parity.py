"""dns/http/ssl documents scored with ../shared/tools/zeek_parity.py's own scorers on Zeek's baselines.

Every manifest (MANIFEST.tsv and the later MANIFEST-*.tsv batches) is read once; each test checks one
class of Zeek semantics on the traces that exercise it, and the overall rates hold the issue's target.
"""

from __future__ import annotations

import importlib.util

import pytest

from collectors.protocols import extract_metadata
from tests.support import SHARED, TESTDATA

pytestmark = pytest.mark.integration
DATA = TESTDATA / "zeek"
KINDS = ("dns", "http", "ssl")


def load_parity():
    spec = importlib.util.spec_from_file_location("zeek_parity", SHARED / "tools/zeek_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scores():
    """(parity module, {trace: {kind: Score}}) over every manifest row with a dns/http/ssl baseline."""
    parity = load_parity()
    out: dict[str, dict] = {}
    for row in parity.manifest_rows(str(DATA), parity.all_manifests(str(DATA))):
        trace = row["trace_file"]
        logs = {}
        for b in row["baseline_files"].split():
            kind = b.rsplit("/", 1)[-1].split(".")[0].split("-")[0]
            if kind in KINDS and kind not in logs:
                rows = parity.read_zeek_log(str(DATA / b))
                if rows and "id.orig_h" in rows[0]:
                    logs[kind] = rows
        if not logs or not (DATA / trace).exists() or trace in out:
            continue
        docs = list(extract_metadata(DATA / trace))
        out[trace] = {kind: parity.SCORERS[kind](rows, docs, False, trace) for kind, rows in logs.items()}
    return parity, out


def exact(scores, kind: str, *traces: str) -> tuple[int, int]:
    """(exact, total) records of ``kind`` over the traces whose path contains one of ``traces``."""
    parity, per_trace = scores
    total = parity.Score()
    for trace, by_kind in per_trace.items():
        if kind in by_kind and (not traces or any(t in trace for t in traces)):
            total.merge(by_kind[kind])
    return total.rate({"ssl": "tls"}.get(kind, kind) + ".exact")


@pytest.mark.parametrize("kind", KINDS)
def test_parity_with_zeek_reaches_95_percent(scores, kind):
    ok, n = exact(scores, kind)
    assert n > 0 and ok >= 0.95 * n, (kind, ok, n)


def test_dns_answers_of_every_record_type_render_as_zeek(scores):
    # DNSSEC (RRSIG, DNSKEY, DS, NSEC/NSEC3 bitmaps), LOC, SSHFP, TXT, lower-cased names
    assert exact(scores, "dns", "dnssec/", "loc-29", "sshfp", "dns-txt-multiple") == (14, 14)


def test_dns_multicast_name_services_are_not_paired(scores):
    assert exact(scores, "dns", "mdns-no-assoc") == (6, 6)


def test_dns_update_and_dns_over_tcp(scores):
    assert exact(scores, "dns", "dynamic-update", "dns/tkey") == (3, 3)


def test_tls13_established_and_starttls(scores):
    # TLS 1.3 without ChangeCipherSpec; STARTTLS after POP3, XMPP and LDAP
    assert exact(scores, "ssl", "tls13_wolfssl", "ldap-starttls", "pop3-starttls", "xmpp-starttls") == (4, 4)
    assert exact(scores, "ssl", "tls13draft23", "tls_experiment") == (2, 2)  # Zeek's names of draft versions


def test_dtls_and_tls_under_other_dissectors(scores):
    assert exact(scores, "ssl", "dtls1_0") == (1, 1)
    assert exact(scores, "ssl", "rdp-to-ssl") == (2, 2)  # RDP negotiating TLS on 3389
    # WebRTC: STUN (ICE) opens the UDP flow, the other side sends the ClientHello (RFC 7983)
    assert exact(scores, "ssl", "webrtc-stun") == (1, 1)


def test_http_request_lines_and_bodies_as_zeek_reads_them(scores):
    # odd request lines (empty URI, missing version = HTTP/0.9, a method alone), bodies by Content-Length
    ok, n = exact(scores, "http", "http/methods")
    assert n == 49 and ok >= 48  # the one left: Zeek's TSV writes the empty URI as "(empty)"
    assert exact(scores, "http", "pipelined-requests", "concurrent-range", "connect-with-smtp",
                 "http-desync", "websocket") == (17, 17)
    assert exact(scores, "http", "http-lower-case-nonstandard-port") == (1, 1)
    assert exact(scores, "http", "http/http_09")[0] >= 2  # both 0.9 requests; Zeek adds two empty rows


def test_http_inside_tunnels_and_stacked_headers(scores):
    assert exact(scores, "http", "tunnels/", "nflog-http", "snap-tcp", "tcp-http-with-padding") == (11, 11)
