"""FTP data channels: the connections PASV/EPSV replies and PORT/EPRT commands announce are logged with service
ftp-data, as in Zeek's conn.log for the same traces (its own test baselines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.ingest import Pipeline
from collectors.protocols.expected import EXPECT_SECONDS, ExpectedConnections

ZEEK = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "zeek"


def zeek_services(baseline: Path) -> dict[tuple[str, int, str, int], str]:
    fields: list[str] = []
    out = {}
    for line in baseline.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif fields and not line.startswith("#") and line.strip():
            row = dict(zip(fields, line.split("\t"), strict=False))
            key = (row["id.orig_h"], int(row["id.orig_p"]), row["id.resp_h"], int(row["id.resp_p"]))
            out[key] = row["service"]
    return out


@pytest.mark.parametrize(("trace", "baseline"), [
    ("ftp/ipv4.pcap", "scripts.base.protocols.ftp.ftp-ipv4"),
    ("ftp/ipv6.pcap", "scripts.base.protocols.ftp.ftp-ipv6"),
])
def test_data_channels_are_ftp_data_as_zeek_logs_them(trace: str, baseline: str):
    want = zeek_services(ZEEK / "baselines" / baseline / "conn.log")
    docs: list[dict] = []
    pipe = Pipeline(docs.append)
    pipe.process_file(ZEEK / "traces" / trace)
    pipe.finish()
    got = {(d["source"]["ip"], d["source"]["port"], d["destination"]["ip"], d["destination"]["port"]):
           ",".join(d["network"].get("protocol") or ["-"]) for d in docs if d["event"]["dataset"] == "secops.conn"}
    assert want and got == want
    assert sum(1 for v in want.values() if v == "ftp-data") >= 4  # passive and active channels both


def test_an_announcement_is_claimed_once_and_expires():
    expected = ExpectedConnections()
    expected.expect("198.18.0.1", "198.18.0.2", 40000, "ftp-data", 100.0)
    assert expected.claim("198.18.0.1", "198.18.0.2", 40001, 101.0) is None
    assert expected.claim("198.18.0.1", "198.18.0.2", 40000, 101.0) == "ftp-data"
    assert expected.claim("198.18.0.1", "198.18.0.2", 40000, 101.0) is None  # once
    expected.expect("2001:db8::1", "2001:db8:0::2", 40000, "ftp-data", 100.0)
    assert expected.claim("2001:db8::1", "2001:db8::2", 40000, 100.0 + EXPECT_SECONDS + 1) is None  # too late
    expected.expect("not an address", "198.18.0.2", 1, "ftp-data", 0.0)  # ignored, no error
    assert expected.claim("not an address", "198.18.0.2", 1, 0.0) is None
