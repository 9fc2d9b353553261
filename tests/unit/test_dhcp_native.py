"""Native DHCP reading (collectors/protocols/dhcp_wire.py through native.py) against tshark, the differential oracle.

Messages written here, well-formed and damaged in every way the reader has a rule for (cut at every fixed field
and inside options, wrong option lengths, strings with NULs and bytes past ASCII, other hardware types, no magic
cookie, repeated options), give the fields tshark prints for them. The shared DHCP trace gives the same documents
with the deep path reading DHCP itself and with tshark reading it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from scapy.layers.inet import IP, UDP
from scapy.utils import wrpcap

from collectors.ingest import Pipeline
from collectors.protocols import native
from collectors.protocols.dhcp import DhcpAnalyzer
from collectors.protocols.dhcp_wire import dhcp_fields, dhcp_port
from collectors.protocols.tshark import ek_key
from tests.support import TESTDATA
from tests.support.frames import eth

COOKIE = b"\x63\x82\x53\x63"


def option(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def bootp(op: int = 1, htype: int = 1, hlen: int = 6, xid: int = 0x3903F326, ciaddr: bytes = b"\0" * 4,
          yiaddr: bytes = b"\0" * 4, chaddr: bytes = bytes.fromhex("00053c04871a"), options: bytes = b"",
          cookie: bytes = COOKIE, sname: bytes = b"", file: bytes = b"") -> bytes:
    fixed = bytes([op, htype, hlen, 0]) + xid.to_bytes(4, "big") + b"\0\0\0\0" + ciaddr + yiaddr + b"\0" * 8
    fixed += chaddr.ljust(16, b"\0") + sname.ljust(64, b"\0") + file.ljust(128, b"\0")
    return fixed + cookie + options


def overloaded(flags: int) -> bytes:
    """Options in sname, in file and in the options field, option 52 saying which of the first two hold some."""
    return bootp(sname=option(12, b"in-sname") + option(53, b"\x02") + b"\xff",
                 file=option(12, b"in-file") + option(53, b"\x03") + b"\0\0" + option(60, b"v") + b"\xff",
                 options=option(52, bytes([flags])) + option(12, b"in-options") + option(53, b"\x01") + b"\xff")


DISCOVER = bootp(options=option(53, b"\x01") + option(12, b"laptop-7") + option(60, b"MSFT 5.0")
                 + option(50, bytes([198, 18, 0, 20])) + option(55, b"\x01\x03\x06") + b"\xff")
ACK = bootp(op=2, yiaddr=bytes([198, 18, 0, 20]), options=option(53, b"\x05") + option(54, bytes([198, 18, 0, 1]))
            + option(51, (86400).to_bytes(4, "big")) + option(1, b"\xff\xff\xff\0") + b"\0\0" + b"\xff")
MESSAGES = [
    DISCOVER, ACK,
    bootp(options=option(12, b"a\0b") + option(60, bytes([0x41, 0x80, 0xFF, 0x01, 0x09, 0x22, 0x5C, 0x7F]))),
    bootp(options=option(12, b"first") + option(12, b"second") + option(53, b"\x03") + option(53, b"\x07")),
    bootp(options=option(50, b"\1\2\3") + option(51, b"\0\1") + option(53, b"\1\2") + option(54, b"\1\2\3\4\5")),
    bootp(options=option(12, b"") + option(53, b"\x00") + b"\xff" + option(12, b"after-end")),
    bootp(options=option(53, b"\x09") + b"\x0c\x20short"),  # an option running past the end
    bootp(options=option(53, b"\xff") + b"\x0c"),  # an option code without its length
    bootp(cookie=b"\x63\x82\x53\x64", options=option(53, b"\x01")),
    bootp(htype=6, options=option(53, b"\x08")),
    bootp(htype=1, hlen=8, options=option(53, b"\x08")),
    bootp(htype=32, hlen=6, options=option(53, b"\x08")),
    *(bootp(htype=1, hlen=hlen, options=option(53, b"\x01"))[:cut]
      for hlen in (0, 8, 20, 255) for cut in (19, 20, 35, 36, 47, 48, 300)),
    bootp(options=b"\0" * 20 + option(53, b"\x04")),
    *(DISCOVER[:cut] for cut in (0, 3, 7, 8, 15, 16, 19, 20, 33, 34, 100, 236, 239, 240, 241, 242, 243, 250)),
    *(overloaded(flags) for flags in (0, 1, 2, 3, 4)),
    bootp(file=option(12, b"unread"), options=option(52, b"\x02") + option(12, b"read") + b"\xff"),
]
PORT_PAIRS = [(68, 67), (67, 68), (40000, 67)]


def tshark_fields(pcap: Path) -> list[dict[str, list[str]]]:
    """Per frame, the DhcpAnalyzer fields tshark prints (keyed as in its ``-T ek`` output)."""
    cmd = ["tshark", "-n", "-r", str(pcap), "-T", "ek"]
    for name in DhcpAnalyzer.FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    keys = {ek_key(name) for name in DhcpAnalyzer.FIELDS}
    frames = []
    for line in out.splitlines():
        record = orjson.loads(line)
        if "layers" in record:
            frames.append({k: v for k, v in record["layers"].items() if k in keys})
    return frames


def test_written_messages_give_tshark_s_fields(tmp_path: Path) -> None:
    frames, expected = [], []
    for sport, dport in PORT_PAIRS:
        for message in MESSAGES:
            frames.append(eth() / IP(src="198.18.0.20", dst="198.18.0.1") / UDP(sport=sport, dport=dport) / message)
            expected.append(message)
    pcap = tmp_path / "dhcp.pcap"
    wrpcap(str(pcap), frames)
    seen = tshark_fields(pcap)
    assert len(seen) == len(expected)
    for message, printed in zip(expected, seen, strict=True):
        assert dhcp_fields(message) == printed, message.hex()


def test_a_damaged_option_in_an_overloaded_field_is_left_to_tshark() -> None:
    assert dhcp_fields(bootp(sname=b"\x0c\x7fname", options=option(52, b"\x02") + b"\xff")) is None
    assert dhcp_fields(bootp(sname=b"\x0c\x7fname", options=option(52, b"\x01") + b"\xff")) is not None


def test_ports_as_tshark_decides_them() -> None:
    assert dhcp_port(68, 67) and dhcp_port(67, 40000)
    assert not dhcp_port(53, 67)  # the lower port's dissector (DNS) reads it
    assert not dhcp_port(4011, 50000) and not dhcp_port(68, 4011)  # PXE: tshark reads only what passes its check
    assert not dhcp_port(546, 547)  # DHCPv6: another protocol


def test_the_shared_trace_gives_the_same_documents_read_natively(monkeypatch: pytest.MonkeyPatch) -> None:
    path = TESTDATA / "zeek" / "traces" / "dhcp" / "dhcp.pcap"

    def documents() -> list[dict]:
        docs: list[dict] = []
        pipe = Pipeline(docs.append)
        pipe.process_file(path)
        pipe.finish()
        return sorted((d for d in docs if d["event"]["dataset"] != "secops.conn"), key=lambda d: d["_id"])

    read_here = documents()
    monkeypatch.setattr(native, "READ_DHCP", False)
    assert read_here == documents()
    assert any(d["event"]["dataset"] == "secops.dhcp" for d in read_here)
