"""Native DTLS and STUN reading (collectors/protocols/dtls_wire.py through native.py) against tshark, the differential
oracle.

Real DTLS handshakes (OpenSSL's s_server in a lab namespace, s_client from the root namespace, captured on the lab
bridge): DTLS 1.2 with a HelloVerifyRequest, a certificate cut into fragments across datagrams (a 300-byte MTU) and
ALPN; DTLS 1.2 in whole datagrams; DTLS 1.0, which this OpenSSL refuses with an alert. Per datagram, the fields the
native reader gives equal those tshark prints for ``TlsAnalyzer``, but for the ones it does not read (named in
``UNREAD``); the documents of these captures and of the shared DTLS and WebRTC traces are the same read natively or
by tshark.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from collectors.flowconst import UDP
from collectors.ingest import Pipeline
from collectors.protocols import native, tshark_command
from collectors.protocols.dtls_wire import MAX_DONE, MAX_PENDING, DtlsFlow, stun_binding_request
from collectors.protocols.native import NativeFrames
from collectors.protocols.tls_wire import MAX_HANDSHAKE_BYTES, Frame, TlsStats
from collectors.protocols.tshark import ek_key
from tests.fuzz.seeds import payloads
from tests.support import TESTDATA
from tests.support.netns import Lab

SHARED = [TESTDATA / "zeek" / "traces" / "tls" / name for name in ("dtls1_0.pcap", "webrtc-stun.pcap")]
PORTS = {"dtls12-fragments": (4433, ["-dtls1_2", "-mtu", "300"], ["-dtls1_2", "-mtu", "300", "-alpn", "webrtc"]),
         "dtls12-whole": (4434, ["-dtls1_2", "-listen"], ["-dtls1_2"]),
         "dtls10-refused": (4435, ["-dtls1"], ["-dtls1"])}
TYPES, CIPHER = ek_key("dtls.handshake.type"), ek_key("_ws.col.secopsDtlsCipher")
# what tshark prints and the analyzer never reads: the signature algorithm of a ServerKeyExchange (it reads the
# ClientHello's), a client's certificates (it reads the server's), the cipher column of a frame without ServerHello
UNREAD = {ek_key("dtls.handshake.sig_hash_alg"), ek_key("dtls.handshake.certificate"), CIPHER}


@pytest.fixture(scope="module")
def openssl_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("dtls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=dtls.example", "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
                   check=True, capture_output=True)
    path = tmp / "dtls.pcapng"
    with Lab() as lab:
        srv = lab.add_host("dtls")
        servers = [srv.popen("openssl", "s_server", *args, "-alpn", "webrtc", "-accept", str(port), "-cert",
                             str(tmp / "cert.pem"), "-key", str(tmp / "key.pem"), "-quiet", stdin=subprocess.PIPE)
                   for port, args, _client in PORTS.values()]
        cap = subprocess.Popen(["dumpcap", "-q", "-P", "-i", lab.bridge, "-f", "udp portrange 4433-4435", "-w",
                                str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        for port, _server, args in PORTS.values():
            subprocess.run(["openssl", "s_client", *args, "-connect", f"{srv.ip}:{port}", "-servername",
                            "dtls.example", "-no_ign_eof"], input=b"hello\n", capture_output=True, timeout=30)
        time.sleep(1)
        cap.terminate()
        cap.wait(timeout=10)
        for server in servers:
            server.kill()
    return path


def tshark_frames(path: Path) -> dict[int, dict[str, list[str]]]:
    """Per frame number, the DTLS fields tshark prints for the analyzer (its deep-path command)."""
    out = subprocess.run(tshark_command(path, "tshark"), capture_output=True, check=True).stdout
    frames = {}
    for line in out.splitlines():
        layers = orjson.loads(line).get("layers")
        if layers:
            frames[int(layers["frame_number"][0])] = {
                k: v for k, v in layers.items() if k.startswith("dtls_") or k == CIPHER}
    return frames


def native_frames(path: Path) -> dict[int, dict[str, list[str]]]:
    """Per frame number, the fields ``DtlsFlow`` gives (one flow per port pair, oriented by its first sender)."""
    flows: dict[tuple[int, int], tuple[DtlsFlow, int]] = {}
    out = {}
    for number, (sport, dport, payload) in enumerate(payloads([str(path)], UDP, per_file=10_000), 1):
        key = (min(sport, dport), max(sport, dport))
        flow, first = flows.setdefault(key, (DtlsFlow(TlsStats()), sport))
        frame = Frame("dtls")
        flow.feed(sport == first, payload, frame)
        out[number] = frame.fields
    return out


def read(fields: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in fields.items() if k not in UNREAD or (k == CIPHER and "2" in fields.get(TYPES, []))}


def test_every_datagram_gives_tshark_s_fields(openssl_capture: Path) -> None:
    for path in [openssl_capture, *SHARED]:
        theirs, mine = tshark_frames(path), native_frames(path)
        assert len(mine) >= 9
        for number, fields in mine.items():
            assert read(fields) == read(theirs.get(number, {})), (path.name, number)
    kinds = [t for fields in native_frames(openssl_capture).values() for t in fields.get(TYPES, [])]
    assert {"1", "3", "2", "11", "12", "14"} <= set(kinds)  # HelloVerifyRequest and the fragmented flight read


@pytest.mark.parametrize("which", ["openssl", *(p.name for p in SHARED)])
def test_documents_are_the_same_read_natively(which: str, openssl_capture: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = openssl_capture if which == "openssl" else SHARED[[p.name for p in SHARED].index(which)]
    taken: list[int] = []
    original = NativeFrames.finish

    def finish(self: NativeFrames) -> list:
        taken.append(self.dtls_frames)
        return original(self)

    monkeypatch.setattr(NativeFrames, "finish", finish)

    def documents() -> list[dict]:
        docs: list[dict] = []
        pipe = Pipeline(docs.append, on_warning=lambda _m: None)
        pipe.process_file(path)
        pipe.finish()
        return sorted((d for d in docs if d["event"]["dataset"] != "secops.conn"), key=lambda d: d["_id"])

    read_here = documents()
    assert sum(taken) >= 9
    monkeypatch.setattr(native, "READ_DTLS", False)
    assert read_here == documents()
    tls = [d for d in read_here if d["event"]["dataset"] == "secops.tls"]
    assert len(tls) >= (3 if which == "openssl" else 1)


def handshake_record(kind: int, message: bytes, seq: int, offset: int, size: int, epoch: int = 0) -> bytes:
    fragment = bytes((kind,)) + len(message).to_bytes(3, "big") + seq.to_bytes(2, "big") + \
        offset.to_bytes(3, "big") + size.to_bytes(3, "big") + message[offset:offset + size]
    return b"\x16\xfe\xfd" + epoch.to_bytes(2, "big") + bytes(6) + len(fragment).to_bytes(2, "big") + fragment


def test_fragments_in_any_order_and_retransmitted_are_read_once() -> None:
    flow = DtlsFlow(TlsStats())
    message = bytes(range(200))
    pieces = [(0, 60), (120, 80), (60, 60)]
    frames = []
    for offset, size in [*pieces, (0, 60)]:  # the last one: a retransmission after the message was whole
        frame = Frame("dtls")
        flow.feed(False, handshake_record(11, message, 3, offset, size), frame)
        frames.append(frame.fields.get(TYPES))
    assert frames == [["11"]] * 4  # every fragment names its type; the completing one is the message's
    assert not flow.sides[1].pending and 3 in flow.sides[1].done


def test_hostile_datagrams_raise_nothing_and_stay_bounded() -> None:
    rng = random.Random(7)
    flow = DtlsFlow(TlsStats())
    for i in range(3000):
        seq, length = rng.randrange(200), rng.choice([0, 1, 50, MAX_HANDSHAKE_BYTES, MAX_HANDSHAKE_BYTES + 1])
        record = handshake_record(rng.choice([1, 2, 11, 12]), bytes(length), seq, rng.randrange(length + 1),
                                  rng.randrange(80), epoch=rng.choice([0, 0, 1]))
        datagram = record[:rng.randrange(len(record) + 1)] if i % 3 == 0 else record + rng.randbytes(rng.randrange(40))
        flow.feed(bool(i & 1), datagram, Frame("dtls"))
    for side in flow.sides:
        assert len(side.pending) <= MAX_PENDING and len(side.done) <= MAX_DONE
        assert all(len(p.data) <= MAX_HANDSHAKE_BYTES for p in side.pending.values())
    assert flow.stats.malformed + flow.stats.oversized > 0


def test_stun_binding_requests_and_other_datagrams() -> None:
    request = b"\x00\x01\x00\x04" + b"\x21\x12\xa4\x42" + bytes(12) + b"\x80\x22\x00\x00"
    assert stun_binding_request(request)
    assert not stun_binding_request(b"\x01\x01" + request[2:])  # a binding response
    assert not stun_binding_request(request + b"\0")  # its length does not cover the datagram
    flow = DtlsFlow(TlsStats())
    assert flow.feed(True, request, Frame("dtls"))
    frame = Frame("dtls")
    assert not flow.feed(True, b"\x80" + bytes(40), frame) and not frame  # SRTP (RFC 7983): passed over
