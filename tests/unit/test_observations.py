"""Passive observations: which MAC identifies an address (routers, dual-stack hosts), services, dedup."""

from __future__ import annotations

import ipaddress

from collectors.conn import ROUTER_MAC_ADDRESSES, Observations, conn_doc
from collectors.flows import ConnRecord

ROUTER = bytes.fromhex("020000000001")
HOST = bytes.fromhex("001b1b000002")  # Siemens OUI
LOCAL = "198.18.0.10"


def udp_answered(src: str, dst: str, src_mac: bytes, dst_mac: bytes, start: int = 10**18) -> ConnRecord:
    o, r = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    return ConnRecord(17, o, 40000, r, 53, False, start, start + 1000, 1, 60, 1, 90, 32, 62, "SF", "Dd", 0, "",
                      src_mac, dst_mac, True, "1:x")


def observe(obs: Observations, records: list[ConnRecord]) -> list[dict]:
    for rec in records:
        obs.from_conn(rec, conn_doc(rec)["network"].get("protocol"))
    return obs.drain()


def macs_by_ip(docs: list[dict], kind: str = "address") -> dict[str, str | None]:
    return {d["host"]["ip"]: d["host"].get("mac") for d in docs if d["secops"]["observation"]["kind"] == kind}


def test_router_mac_identifies_no_address_behind_it_even_the_first() -> None:
    remote = [f"198.18.{i}.1" for i in range(1, ROUTER_MAC_ADDRESSES + 2)]  # other subnets, behind the router
    docs = observe(Observations(), [udp_answered(LOCAL, ip, HOST, ROUTER) for ip in remote])
    macs = macs_by_ip(docs)
    assert macs[LOCAL] == "00:1b:1b:00:00:02"
    assert all(macs[ip] is None for ip in remote)
    assert all(d["host"].get("mac") is None for d in docs if d["secops"]["observation"]["kind"] == "service")
    local = next(d for d in docs if d["host"]["ip"] == LOCAL)
    assert "siemens" in local["secops"]["observation"]["vendor"].lower()


def test_dual_stack_host_keeps_its_mac() -> None:
    addresses = [LOCAL, "fe80::21b:1bff:fe00:2", "fd00::2", "fd00::1234:5678"]  # v4 + 3 v6: not a router
    docs = observe(Observations(), [udp_answered(ip, "198.18.0.1" if "." in ip else "fd00::1", HOST, ROUTER)
                                    for ip in addresses])
    macs = macs_by_ip(docs)
    assert all(macs[ip] == "00:1b:1b:00:00:02" for ip in addresses)


def test_each_identity_once_per_run_across_drains() -> None:
    obs = Observations("sensor-1")
    rec = udp_answered(LOCAL, "198.18.0.20", HOST, HOST[:5] + b"\x09")
    first = observe(obs, [rec, rec])
    assert sorted(d["secops"]["observation"]["kind"] for d in first) == ["address", "address", "service"]
    assert observe(obs, [rec]) == []
    assert len({d["_id"] for d in first}) == 3 and all(d["observer"]["name"] == "sensor-1" for d in first)


def test_the_rust_writer_writes_orjsons_bytes() -> None:
    """``drain(texts=True)``: each observation's JSON text is orjson's of the dict ``drain()`` gives, byte for byte
    (addresses with and without MACs and vendors, services named and not, an observer or none, odd strings), and
    the text's time, dataset and id are the document's."""
    import random

    import orjson
    import pytest

    from collectors import conn
    from collectors.protocols.document_text import DocumentText

    if conn.WRITE_OBSERVATION is None:
        pytest.skip("collectors._rs is not built")
    rng = random.Random(5)
    for observer in (None, "sensor-1", 'sens"or\\ \u00e9\u2028'):
        candidates = []
        for i in range(300):
            ts = rng.choice([0, 10**18 + i * 7_654_321, 253_402_300_799_999_999, 1_700_000_000_123_456_789])
            mac = rng.choice([None, "00:1b:1b:00:00:%02x" % (i % 256), "02:00:00:00:00:01"])
            ip = rng.choice([f"198.18.{i % 256}.{i // 256}", f"fd00::{i:x}"])
            extra = None
            if rng.random() < 0.5:
                extra = {"port": rng.randrange(65536), "transport": rng.choice(["tcp", "udp"])}
                if rng.random() < 0.7:
                    extra["service"] = rng.choice(["http", "dns", "ftp-data", "\u00fcber\"x"])
            candidates.append((ts + i, ip, mac, extra))
        drained = []
        for texts in (True, False):
            obs = Observations(observer)
            for ts, ip, mac, extra in candidates:
                if extra is None:
                    obs.address(ts, ip, mac)
                else:
                    obs._candidate(("service", ip, extra["port"], extra["transport"]), ts, "service", ip, mac,
                                   dict(extra))
            drained.append(obs.drain(texts=texts))
        written, dicts = drained
        assert len(written) == len(dicts) > 200
        for text, doc in zip(written, dicts, strict=True):
            assert isinstance(text, DocumentText) and isinstance(doc, dict)
            assert text.text == orjson.dumps(doc)
            assert (text.timestamp, text.dataset, text.doc_id) == (doc["@timestamp"], doc["event"]["dataset"],
                                                                   doc["_id"])
            assert orjson.loads(text.source("2026-12-01T00:00:00.000000Z"))["event"]["ingested"]


def test_a_time_the_writer_does_not_model_falls_back_to_the_dict() -> None:
    obs = Observations()
    obs.address(10**18, LOCAL, None)
    obs.address(-1, "198.18.0.99", None)  # before 1970: no text, the dict (which can still be written)
    kinds = sorted(type(d).__name__ for d in obs.drain(texts=True))
    assert kinds == ["DocumentText", "dict"]
