"""Deep path on the labelled attack/ICS captures, checked against the baselines shipped with them.

Oracles: the Zeek / icsnpp logs next to each capture (ftp.log, notice.log, dnp3.log, modbus.log,
s7comm.log) and the labels of ../shared/testdata/attacks/README.md. Real tshark, no mocks.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from collectors.protocols import extract_metadata
from secops.ecs import get
from tests.support import TESTDATA

pytestmark = pytest.mark.integration
ATTACKS = TESTDATA / "attacks"


def zeek_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a Zeek TSV log (btest header and comment lines skipped)."""
    fields, rows = None, []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#") and fields:
            rows.append(dict(zip(fields, line.split("\t"), strict=False)))
    return rows


def docs_of(pcap: Path, dataset: str | None = None) -> list[dict]:
    warnings: list[str] = []
    docs = list(extract_metadata(pcap, on_warning=warnings.append))
    assert warnings == [], warnings
    for d in docs:
        assert d["_id"] and d["@timestamp"] and d["event"]["kind"] == "event"
    return [d for d in docs if dataset is None or d["event"]["dataset"] == dataset]


def test_iodine_tunnel_queries_are_null_records_under_pirate_sea():
    docs = docs_of(ATTACKS / "dns-tunnel/dns-tunnel-iodine.pcap", "secops.dns")
    names = [get(d, "dns.question.name") for d in docs if get(d, "dns.question.name")]
    assert names and all(n.endswith("pirate.sea") for n in names)
    qtypes = Counter(get(d, "dns.question.type") for d in docs)
    assert qtypes["NULL"] > len(docs) / 2, qtypes
    null_docs = [d for d in docs if get(d, "dns.question.type") == "NULL"]
    assert max(get(d, "secops.dns.label_max_len") for d in null_docs) > 50  # encoded payload labels
    assert all(get(d, "network.protocol") == "dns" and get(d, "destination.port") == 53 for d in docs)


@pytest.mark.parametrize(("capture", "transport", "ops"), [
    ("empire_smbexec_dcerpc_smb_svcctl_WORKSTATION5_2020-09-20025716.pcap", "smb",
     ["OpenSCManagerW", "CreateServiceW", "StartServiceW", "DeleteService"]),
    ("empire_psexec_dcerpc_tcp_svcctl_WORKSTATION5_2020-09-20121608.pcap", "tcp",
     ["CreateServiceA", "OpenServiceA", "StartServiceA", "DeleteService"]),
])
def test_empire_lateral_movement_svcctl_calls(capture, transport, ops):
    docs = docs_of(ATTACKS / "lateral-movement" / capture)
    rpc = [d for d in docs if get(d, "secops.dcerpc.endpoint") == "svcctl"]
    seen = [get(d, "secops.dcerpc.operation") for d in rpc]
    assert [op for op in seen if op in ops] == ops  # the service is created, started, deleted in order
    for d in rpc:
        assert d["event"]["dataset"] == "secops.smb"
        if transport == "smb":
            assert get(d, "network.protocol") == ["smb", "dce_rpc"]
            assert get(d, "secops.smb.pipe") == "svcctl" and get(d, "destination.port") == 445
        else:
            assert get(d, "network.protocol") == "dce_rpc" and get(d, "destination.port") not in (139, 445)
    if transport == "smb":
        creates = [d for d in docs if get(d, "secops.smb.command") == "CREATE"]
        assert [get(d, "secops.smb.pipe") for d in creates] == ["svcctl"]
        setup = [d for d in docs if get(d, "secops.smb.command") == "SESSION_SETUP" and get(d, "user.name")]
        assert [(get(d, "user.domain"), get(d, "user.name"), get(d, "event.outcome")) for d in setup] == [
            ("theshire", "pgustavo", "success")]
    # the README's second label: Empire C2 beacons over HTTP to 10.10.10.5:80
    beacons = {get(d, "url.original") for d in docs if d["event"]["dataset"] == "secops.http"
               and get(d, "destination.ip") == "10.10.10.5" and get(d, "destination.port") == 80}
    assert beacons & {"/admin/get.php", "/news.php", "/login/process.php"}


@pytest.mark.parametrize("capture", sorted((ATTACKS / "lateral-movement").glob("*.pcap")), ids=lambda p: p.name[:20])
def test_the_smb_filter_prints_only_what_the_analyzer_reads(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tshark prints the logged SMB commands and DCE-RPC requests only: the same documents as printing every SMB
    packet (READ, WRITE, CLOSE, IOCTL, ... included), in the same order."""
    from collectors.protocols.smb import SmbAnalyzer

    narrow = docs_of(capture)
    monkeypatch.setattr(SmbAnalyzer, "FILTER", "smb or smb2 or dcerpc.pkt_type == 0")
    broad = docs_of(capture)
    assert any(d["event"]["dataset"] == "secops.smb" for d in narrow)
    assert narrow == broad


def test_ftp_bruteforce_matches_zeek_ftp_log_and_notice():
    base = ATTACKS / "bruteforce"
    docs = docs_of(base / "ftp-bruteforce.pcap", "secops.ftp")
    zeek = zeek_rows(base / "zeek-baseline-ftp-bruteforce/ftp.log")
    key = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "user", "command", "reply_code")
    want = Counter(tuple(r[k] for k in key) for r in zeek)
    ours = Counter((get(d, "source.ip"), str(get(d, "source.port")), get(d, "destination.ip"),
                    str(get(d, "destination.port")), get(d, "user.name"), get(d, "secops.ftp.command"),
                    str(get(d, "secops.ftp.reply_code"))) for d in docs)
    assert want and all(ours[k] >= n for k, n in want.items())  # every Zeek record is there
    notice = zeek_rows(base / "zeek-baseline-ftp-bruteforce/notice.log")[0]
    attacker, threshold = notice["src"], int(re.search(r"had (\d+) failed logins", notice["msg"]).group(1))
    failed = [d for d in docs if get(d, "source.ip") == attacker and get(d, "event.action") == "ftp-login"
              and get(d, "event.outcome") == "failure"]
    assert len(failed) >= threshold
    assert all(get(d, "secops.ftp.reply_code") == 530 and get(d, "secops.ftp.arg") is None for d in failed)


@pytest.mark.parametrize(("capture", "baseline"), [
    ("dnp3.pcap", "zeek-baseline-dnp3-events"),
    ("dnp3_select_operate.pcap", "zeek-baseline-dnp3-select-operate"),
])
def test_dnp3_matches_zeek_dnp3_log(capture, baseline):
    base = ATTACKS / "ics/dnp3"
    docs = docs_of(base / capture, "secops.dnp3")
    zeek = zeek_rows(base / baseline / "dnp3.log")
    want = Counter((r["id.orig_p"], r["fc_request"], r["fc_reply"], r["iin"]) for r in zeek)
    ours = Counter((str(get(d, "source.port")), get(d, "secops.dnp3.fc_request") or "-",
                    get(d, "secops.dnp3.fc_reply") or "-", str(get(d, "secops.dnp3.iin", "-"))) for d in docs)
    assert ours == want
    controls = [get(d, "secops.dnp3.fc_request") for d in docs if get(d, "secops.dnp3.is_control")]
    assert controls == [r["fc_request"] for r in zeek if r["fc_request"] in ("SELECT", "OPERATE", "DIRECT_OPERATE")]


def test_modbus_fuzzed_flow_against_zeek_modbus_log():
    base = ATTACKS / "ics/modbus"
    docs = docs_of(base / "fuzz-72.pcap", "secops.modbus")
    zeek = zeek_rows(base / "zeek-baseline-modbus-exception/modbus.log")
    ours = {(str(get(d, "secops.modbus.transaction_id")), str(get(d, "secops.modbus.unit_id")),
             get(d, "secops.modbus.function"), get(d, "secops.modbus.pdu_type"),
             get(d, "secops.modbus.exception") or "-") for d in docs}
    want = [(r["tid"], r["unit"], r["func"], r["pdu_type"], r["exception"]) for r in zeek]
    found = [w for w in want if w in ours]
    # a fuzzed stream: Zeek's and tshark's parsers resynchronise differently on garbage; the exception
    # response and most records must agree
    assert ("0", "1", "unknown-160", "RESP", "ILLEGAL_FUNCTION") in found
    assert len(found) >= len(want) * 2 // 3, set(want) - ours


def test_modbus_eit_encapsulated_interface_transport():
    docs = docs_of(ATTACKS / "ics/modbus/modbus-eit.pcap", "secops.modbus")
    assert {get(d, "secops.modbus.function_code") for d in docs} == {43}
    assert [get(d, "secops.modbus.pdu_type") for d in docs] == ["REQ", "RESP", "REQ", "RESP"]
    # the second read device identification is refused by the device
    assert [get(d, "secops.modbus.exception") for d in docs] == [None, None, None, "SLAVE_DEVICE_FAILURE"]
    assert get(docs[-1], "secops.modbus.function") == "ENCAP_INTERFACE_TRANSPORT_EXCEPTION"
    assert not any(get(d, "secops.modbus.is_write") for d in docs)


@pytest.mark.parametrize("capture", ["snap7", "s7comm_plus"])
def test_s7comm_matches_icsnpp_s7comm_log(capture):
    base = ATTACKS / "ics/s7comm"
    docs = docs_of(base / f"{capture}.pcap", "secops.s7comm")
    rows = zeek_rows(base / f"baseline/analyzer.{capture}/s7comm.log")

    def key(is_orig, rosctr, func, sub):
        return (is_orig, rosctr, func.lower(), (sub or "-").lower())

    want = Counter(key(r["is_orig"] == "T", r["rosctr_name"], r["function_code"], r["subfunction_code"])
                   for r in rows)
    ours = Counter(key(get(d, "secops.s7comm.is_orig"), get(d, "secops.s7comm.rosctr"),
                       get(d, "secops.s7comm.function_code", "-"), get(d, "secops.s7comm.subfunction_code"))
                   for d in docs)
    missing = want - ours
    assert not missing, missing
    names = {r["function_name"] for r in rows}
    assert names <= {get(d, "secops.s7comm.function") for d in docs} | {
        n for n in names if ":" in n}  # user-data names are composed ("Request: CPU Functions")
    if capture == "snap7":
        uploads = [d for d in docs if get(d, "secops.s7comm.function") == "Start Upload"
                   and get(d, "secops.s7comm.is_orig")]
        assert len(uploads) == sum(1 for r in rows if r["function_name"] == "Start Upload" and r["is_orig"] == "T")
        assert not any(get(d, "secops.s7comm.is_program_change") for d in uploads)


def test_dvwa_sql_injection_uris_match_zeek_http_log():
    base = ATTACKS / "web"
    docs = docs_of(base / "cooper-grill-dvwa.pcapng", "secops.http")
    rows = [line.split("\t") for line in (base / "zeek-baseline-sqli/http.log.cut").read_text().splitlines()[2:]]
    want = [(method, host, uri) for _uid, method, host, uri, tags in rows if "URI_SQLI" in tags]
    ours = [(get(d, "http.request.method"), get(d, "url.domain"), get(d, "url.original")) for d in docs]
    assert want and all(w in ours for w in want)


def test_nmap_version_probes_are_http_requests():
    docs = docs_of(ATTACKS / "scans/nmap_80_w_service_detection.pcap", "secops.http")
    uris = {(get(d, "http.request.method"), get(d, "url.original")) for d in docs}
    assert ("POST", "/sdk") in uris and ("GET", "/evox/about") in uris
    assert any(u.startswith("/nmaplowercheck") for _m, u in uris)
    assert all(get(d, "destination.port") == 80 for d in docs)
