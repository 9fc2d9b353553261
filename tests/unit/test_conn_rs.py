"""``collectors._rs.write_conn`` writes ``orjson.dumps(conn_doc(f, observer, services))`` byte for byte (every
connection of every shared capture, and generated records), ``conn_text`` hands it on as a ``DocumentText``, and an
ingest with a text sink ships the same documents, in the same order, as one without."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.conn import WRITE_CONN, conn_doc, conn_text
from collectors.flows import ConnRecord
from collectors.ingest import Pipeline
from collectors.protocols.document_text import DocumentText
from tests.support import TESTDATA

pytestmark = pytest.mark.skipif(WRITE_CONN is None, reason="collectors._rs is not built")

INGESTED = "2026-11-30T20:00:00.000000Z"


class _Recording(Pipeline):
    def __init__(self) -> None:
        super().__init__(lambda doc: None, deep=False, on_warning=lambda msg: None)
        self.records: list[ConnRecord] = []

    def _flow_done(self, f: ConnRecord) -> None:
        self.records.append(f)
        super()._flow_done(f)


_MAGIC = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a",
          b"\x1f\x8b")


def _capture(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4).startswith(_MAGIC)


@pytest.fixture(scope="module")
def shared_records() -> list[ConnRecord]:
    records: list[ConnRecord] = []
    pcaps = sorted(p for p in TESTDATA.rglob("*") if p.is_file() and _capture(p))
    assert len(pcaps) > 100
    for path in pcaps:
        pipe = _Recording()
        with contextlib.suppress(Exception):  # an unreadable capture holds no records; the others still count
            pipe.process_file(path)
        pipe.finish()
        records.extend(pipe.records)
    assert len(records) > 400
    return records


def _same(f: ConnRecord, observer: str | None, services: list[str] | None) -> bytes:
    written = WRITE_CONN(f, observer, services)
    assert written is not None, f
    want = orjson.dumps(conn_doc(f, observer, services))
    assert written == want, (f, observer, services)
    return written


def test_every_shared_connection_is_written_byte_for_byte(shared_records: list[ConnRecord]) -> None:
    families = set()
    for f in shared_records:
        services = f.service.split(",") if f.service else None
        _same(f, None, services)
        _same(f, "sensor-7", services)
        _same(f, None, ["http", "ftp-data"])
        families.add(len(f.o_ip))
    assert families == {4, 16}


def test_the_document_text_reads_its_time_dataset_and_id_and_elasticsearch_source(
        shared_records: list[ConnRecord]) -> None:
    for f in shared_records[::7]:
        for observer in (None, "sensor-7"):
            doc = conn_doc(f, observer, f.service.split(",") if f.service else None)
            kept = conn_text(f, observer, f.service.split(",") if f.service else None)
            assert isinstance(kept, DocumentText)
            assert kept.text == orjson.dumps(doc)
            assert (kept.dataset, kept.timestamp, kept.doc_id) == ("secops.conn", doc["@timestamp"], doc["_id"])
            assert kept.parse() == doc
            want = {k: v for k, v in doc.items() if k != "_id"}
            want["event"] = {"ingested": INGESTED, **doc["event"]}
            source = kept.source(INGESTED)
            assert orjson.loads(source) == want
            assert source.startswith(b'{"@timestamp":"') and b'"_id"' not in source


# -- generated records ----------------------------------------------------------------------------------------------
_V4 = st.one_of(st.binary(min_size=4, max_size=4), st.sampled_from(
    [bytes(4), b"\xff" * 4, bytes([10, 0, 0, 1]), bytes([169, 254, 1, 2])]))
_V6_SPECIAL = [ipaddress.ip_address(a).packed for a in (
    "::", "::1", "::ffff:1.2.3.4", "::ffff:0.0.0.0", "::1.2.3.4", "::ffff:0:1.2.3.4", "fe80::1", "fe80::1:0:0:1",
    "2001:db8::", "2001:db8:0:1::1", "1::", "1:0:0:2::3", "0:0:1::", "64:ff9b::1.2.3.4", "ff02::fb",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:ffff:ffff", "0:1:0:1:0:1:0:1", "1:0:1:0:1:0:1:0")]
_V6 = st.one_of(st.binary(min_size=16, max_size=16), st.sampled_from(_V6_SPECIAL),
                st.lists(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\xff\xff", b"\x12\x34"]), min_size=8,
                         max_size=8).map(b"".join))
_COUNT = st.one_of(st.sampled_from([0, 1, 2**31, 2**32, 2**63 - 1, 2**62]), st.integers(0, 2**63 - 1))
_PORT = st.one_of(st.sampled_from([0, 1, 65535]), st.integers(0, 65535))
_TEXT = st.one_of(st.just(""), st.text(max_size=12), st.text(alphabet='"\\\x00\x1f\x7f/<>é\u2028\U0001f600',
                                                              max_size=8))
_HISTORY = st.text(alphabet="ShADadFfRrCcTtWwIiQqGgXx^", max_size=30)
_MAC = st.one_of(st.none(), st.just(b""), st.binary(min_size=6, max_size=6), st.binary(min_size=1, max_size=9))
_NS = st.one_of(st.integers(0, 2**62), st.sampled_from([0, 999, 10**9 - 1, 10**9, 1_700_000_000_999_999_999]),
                st.integers(253_402_300_700 * 10**9, 253_402_300_900 * 10**9))


@st.composite
def records(draw: st.DrawFn) -> ConnRecord:
    v6 = draw(st.booleans())
    o_ip, r_ip = draw(_V6 if v6 else _V4), draw(_V6 if v6 else _V4)
    if draw(st.integers(0, 9)) == 0:
        r_ip = draw(_V4 if v6 else _V6)  # mixed families: the document says what the source is
    start = draw(_NS)
    last = start + draw(st.one_of(st.integers(-10**12, 10**15), st.sampled_from([0, -1, 1])))
    return ConnRecord(
        draw(st.one_of(st.sampled_from([6, 17, 1, 58, 0, 47, 132, 255]), st.integers(0, 255))),
        o_ip, draw(_PORT), r_ip, draw(_PORT), draw(st.booleans()), start, last,
        draw(_COUNT), draw(_COUNT), draw(_COUNT), draw(_COUNT), draw(_COUNT), draw(_COUNT),
        draw(st.sampled_from(["SF", "S0", "REJ", "OTH", "RSTO", "SH", ""]) | _TEXT), draw(_HISTORY | _TEXT),
        draw(_COUNT), draw(st.sampled_from(["", "gre", "vxlan", "ip6in4"]) | _TEXT), draw(_MAC), draw(_MAC),
        draw(st.booleans()), draw(st.sampled_from(["1:wCb3OG7yAFWelaUydu0D+125CLM=", ""]) | _TEXT),
        draw(st.sampled_from(["", "http", "dns,mdns"])), draw(st.one_of(st.just(0), _COUNT, st.integers(-5, 5))))


_OBSERVER = st.one_of(st.none(), st.just(""), st.just("sensor-7"), _TEXT)
_SERVICES = st.one_of(st.none(), st.just([]), st.lists(st.one_of(st.sampled_from(["http", "ftp-data"]), _TEXT),
                                                       min_size=1, max_size=3))


def _reference(f: ConnRecord, observer: str | None, services: list[str] | None) -> bytes | None:
    try:
        return orjson.dumps(conn_doc(f, observer, services))
    except (orjson.JSONEncodeError, ValueError, OverflowError, OSError):
        return None


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), _OBSERVER, _SERVICES)
def test_generated_records_are_written_byte_for_byte_or_left_to_the_dict(
        f: ConnRecord, observer: str | None, services: list[str] | None) -> None:
    written = WRITE_CONN(f, observer, services)
    want = _reference(f, observer, services)
    if written is not None:
        assert written == want
        return
    # the writer declines only what it does not model: a time outside 1970-9999, an int or sum beyond i64
    ints = (f.o_bytes + f.r_bytes, f.o_pkts + f.r_pkts, f.last - f.start, *(v for v in f if type(v) is int))
    in_range = all(0 <= t < 253_402_300_800 * 10**9 for t in (f.start, f.last))
    assert not in_range or any(not -2**63 <= v < 2**63 for v in ints), f


@pytest.mark.parametrize("bad", [
    lambda f: f._replace(o_ip=b"\x01\x02\x03"),  # neither IPv4 nor IPv6
    lambda f: f._replace(o_port=2**64),  # beyond 64 bits
    lambda f: f._replace(history="\ud800"),  # a lone surrogate (orjson refuses it)
    lambda f: f._replace(o_mac=bytearray(b"\x01" * 6)),  # not bytes
    lambda f: (*f, 1),  # not a ConnRecord
])
def test_values_it_does_not_model_are_left_to_the_dict(bad) -> None:  # type: ignore[no-untyped-def]
    f = ConnRecord(6, bytes(4), 1, bytes(4), 2, False, 10**18, 10**18 + 5, 1, 40, 1, 40, 0, 0, "S0", "S", 0, "",
                   None, None, False, "1:x")
    assert WRITE_CONN(bad(f)) is None
    assert WRITE_CONN(f) == orjson.dumps(conn_doc(f))


# -- the pipeline ---------------------------------------------------------------------------------------------------
CAPTURES = [TESTDATA / c for c in (
    "zeek/traces/ftp/ipv4.pcap", "zeek/traces/http/get.pcap", "zeek/traces/tls/tls-conn-with-extensions.pcap",
    "zeek/traces/dns-txt-multiple.pcap", "attacks/ics/modbus/modbus-eit.pcap",
    "attacks/lateral-movement/empire_smbexec_dcerpc_smb_svcctl_WORKSTATION5_2020-09-20025716.pcap")]


def _ingest(path: Path, observer: str | None, text: bool) -> tuple[list[bytes], int]:
    """Every document in the order the sinks got them, as JSON, and how many came as text."""
    shipped: list[bytes] = []
    texts = [0]

    def text_sink(doc: DocumentText) -> None:
        texts[0] += 1
        shipped.append(doc.text)

    pipe = Pipeline(lambda d: shipped.append(orjson.dumps(d)), observer=observer,
                    text_sink=text_sink if text else None)
    pipe.process_file(path)
    stats = pipe.finish()
    assert stats.conns == sum(b'"dataset":"secops.conn"' in d for d in shipped)
    return shipped, texts[0]


@pytest.mark.parametrize("observer", [None, "sensor-7"])
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name[:30])
def test_an_ingest_with_a_text_sink_ships_the_same_documents_in_the_same_order(path: Path,
                                                                               observer: str | None) -> None:
    want, _ = _ingest(path, observer, text=False)
    got, texts = _ingest(path, observer, text=True)
    assert texts > 0 or "ftp" in path.parts  # an FTP capture's connections may all be data channels to claim
    assert [orjson.loads(d)["_id"] for d in got] == [orjson.loads(d)["_id"] for d in want]
    assert {orjson.loads(d)["_id"]: orjson.loads(d) for d in got} == {orjson.loads(d)["_id"]: orjson.loads(d)
                                                                     for d in want}
    conns = [d for d in got if b'"dataset":"secops.conn"' in d]
    assert conns == [d for d in want if b'"dataset":"secops.conn"' in d]  # byte for byte


@pytest.mark.parametrize("max_parked", [None, 0])
def test_ftp_data_channels_keep_their_claim_on_the_text_path(monkeypatch: pytest.MonkeyPatch,
                                                              max_parked: int | None) -> None:
    """Parked or not (``MAX_PARKED`` 0: every data channel ends with the file, its announcement already read), a data
    channel is claimed as the dict path claims it."""
    if max_parked is not None:
        monkeypatch.setattr("collectors.ingest.MAX_PARKED", max_parked)
    path = TESTDATA / "zeek/traces/ftp/ipv4.pcap"
    want, _ = _ingest(path, None, text=False)
    got, _ = _ingest(path, None, text=True)
    assert got == want
    protocols = [orjson.loads(d)["network"].get("protocol") for d in got if b'"dataset":"secops.conn"' in d]
    assert any(p and "ftp-data" in p for p in protocols)


def test_without_the_rust_writer_the_dicts_ship_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pure-Python build (``built_rust`` None): ``conn_text`` gives None and every connection (and observation)
    goes as a dict."""
    monkeypatch.setattr("collectors.conn.WRITE_CONN", None)
    monkeypatch.setattr("collectors.conn.WRITE_OBSERVATION", None)
    path = TESTDATA / "zeek/traces/http/get.pcap"
    got, texts = _ingest(path, None, text=True)
    monkeypatch.undo()
    want, _ = _ingest(path, None, text=False)
    assert texts == 0 and got == want
