"""The fuzz harnesses of tests/fuzz run in CI: each one briefly under atheris (coverage-guided, in a subprocess of
its own), from the seeds it makes and the committed inputs that once failed it (tests/fuzz/corpus/TARGET).

A real campaign runs one target for minutes: ``python3 -m tests.fuzz.run TARGET CORPUS -max_total_time=300``
(tests/fuzz/run.py); the native flow core under AddressSanitizer: ``bash tests/support/asan_flowcore.sh --fuzz``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.run import CORPUS, TARGETS
from tests.support import REPO

# fewer runs for the slower harnesses; 1000 for the others
RUNS = {"flowcore": 300, "decode": 600, "pcapio": 600, "http_wire": 150, "http_rs": 200, "tls_wire": 200, "tls_rs": 200,
        "s7comm_rs": 300, "native_tcp": 200, "ftp_rs": 300}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_harness_runs_under_atheris_with_coverage(target: str, tmp_path: Path) -> None:
    """Seeds written, the committed regression inputs read, coverage seen (the target's modules were instrumented:
    run from their source), the runs done, no crash; then the corpus it grew replayed on the compiled readers."""
    runs = RUNS.get(target, 1000)
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, str(tmp_path / "corpus"), f"-runs={runs}", "-seed=1",
         "-timeout=30", f"-artifact_prefix={tmp_path}/"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert re.search(r"#seeds [1-9]\d* written", output), output[-3000:]
    regressions = CORPUS / target
    if regressions.is_dir():
        assert f"files found in {regressions}" in output, output[-3000:]
    done = re.search(r"DONE\s+cov: (\d+) ft: (\d+)", output)
    assert done and int(done[1]) > 10, output[-3000:]
    assert f"Done {runs} runs" in output, output[-3000:]
    assert not list(tmp_path.glob("crash-*"))
    replayed = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, "--replay", "1", str(tmp_path / "corpus")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, (replayed.stdout + replayed.stderr)[-3000:]
    assert "no failure" in replayed.stdout


@pytest.mark.filterwarnings("ignore:Attribute's length must be")  # the certificate made here
def test_a_country_name_that_is_not_two_letters_is_read_without_a_warning(tmp_path: Path) -> None:
    """fuzz_x509 found: a certificate whose country name is not two letters made cryptography print a UserWarning
    on stderr; the certificate is read and its name logged as it is, silently. In a process of its own: pytest
    restores the warning filters after each test, so the module's filters hold only in the test that imported it."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "Netherlands", _validate=False),
                      x509.NameAttribute(NameOID.COMMON_NAME, "c.example")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(5).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.der").write_bytes(cert.public_bytes(Encoding.DER))
    script = ("import sys; from collectors.protocols.x509 import server_certificate_fields as f; "
              "import pathlib; print(f(pathlib.Path(sys.argv[1]).read_bytes(), 1.7e9)['tls.server.subject'])")
    result = subprocess.run([sys.executable, "-W", "default", "-c", script, str(tmp_path / "cert.der")], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "CN=c.example,C=Netherlands\n", "")


def test_an_http_09_reply_is_counted_to_where_its_message_ended_however_the_stream_was_cut() -> None:
    """fuzz_http_wire found: the reply to an HTTP/0.9 request was counted as every byte the server had sent when its
    message ended, and the reader counted a whole segment before reading it: bytes after the message in the same
    segment were counted or not depending on how TCP cut the stream. The count now ends where the message ends."""
    from collectors.protocols.documents import Flow
    from collectors.protocols.http import HttpAnalyzer, HttpConnection
    from collectors.protocols.http_wire import WireStats

    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    counts = []
    for cut in (len(reply), len(reply) - 3, 10):
        analyzer = HttpAnalyzer(lambda _text: None)
        conn = HttpConnection(analyzer, Flow("tcp", "198.18.0.1", 40000, "198.18.0.2", 80, "s"), WireStats())
        conn.feed(True, b"GET /old\r\n\r\n", 1.0)  # HTTP/0.9: no version (Zeek reads its headers)
        stream = reply + b"trailing bytes of the next segment"
        for start in range(0, len(stream), cut):
            conn.feed(False, stream[start:start + cut], 2.0)
        conn.end(3.0)
        docs = conn.take_docs() + list(analyzer.finish())
        counts.append([d["http"]["response"]["body"]["bytes"] for d in docs])
    assert counts == [[len(reply)]] * 3, counts


def test_a_uri_escaping_bytes_that_are_not_utf8_makes_a_document_that_serialises() -> None:
    """fuzz_http_wire found: ``GET /a%AA`` was logged with the byte decoded to a lone surrogate, which orjson (the
    bulk writer) refuses, so the document could not be indexed. Such bytes are written \\xHH, as Zeek's logs do."""
    from collectors.protocols.documents import Flow
    from collectors.protocols.http import HttpAnalyzer, HttpConnection
    from collectors.protocols.http_wire import WireStats
    from secops.es.bulk import dumps

    analyzer = HttpAnalyzer(lambda _text: None)
    conn = HttpConnection(analyzer, Flow("tcp", "198.18.0.1", 40000, "198.18.0.2", 80, "s"), WireStats())
    conn.feed(True, b"GET /a%AAb%c3%a9 HTTP/1.1\r\nHost: h\r\n\r\n", 1.0)
    conn.feed(False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2.0)
    conn.end(3.0)
    docs = conn.take_docs() + list(analyzer.finish())
    assert [d["url"]["original"] for d in docs] == ["/a\\xaab\u00e9"]
    assert [d["secops"]["http"]["uri_raw"] for d in docs] == ["/a%AAb%c3%a9"]
    dumps(docs[0])


@pytest.mark.parametrize(("segments", "stream"), [
    ([(5, b"AAAA"), (3, b"BBBB"), (0, b"xyz")], b"xyzBBAAAA"),  # a later segment overlapping a waiting one
    ([(3, b"BB"), (0, b"xyzwvu")], b"xyzBBu"),  # the in-order segment that fills the hole and overlaps what waits
    ([(3, b"BB"), (3, b"CCCC"), (0, b"xyz")], b"xyzBBCC"),  # a longer copy at the same sequence number
])
def test_reassembly_first_copy_wins_behind_a_hole(segments: list[tuple[int, bytes]], stream: bytes) -> None:
    """fuzz_native_tcp found: out-of-order segments waiting behind a hole were replaced or overridden by later copies
    (a longer one at the same sequence number, or the segment that filled the hole), so the bytes read depended
    on which copy came last. The first copy of every byte wins, as Zeek's reassembler keeps it."""
    from collectors.protocols.tcp_reassembly import Direction

    direction = Direction()
    direction.syn(999)
    out = [chunk for offset, data in segments for chunk in direction.add(1000 + offset, data)] + direction.flush()
    assert (b"".join(out), direction.delivered, direction.waiting, direction.waiting_bytes) == (
        stream, len(stream), {}, 0)


def test_a_deflate_body_is_read_the_same_however_tcp_cut_its_first_two_bytes() -> None:
    """The compiled readers' fuzz replay found: a deflate body was taken for raw deflate when its first segment held
    one byte (the zlib header check needs two), so the decoded length depended on where TCP cut the body."""
    import zlib

    from collectors.protocols.http_wire import Body, WireStats

    data = zlib.compress(b"x" * 1800)
    lengths = []
    for first in (0, 1, 2):
        stats, body = WireStats(), Body("deflate")
        for part in (data[:first], data[first:]):
            body.add(part, stats)
        lengths.append((body.length(), stats.undecodable))
    assert lengths == [(1800, 0)] * 3


def test_a_content_length_of_unicode_digits_is_no_length() -> None:
    """The compiled readers' fuzz replay found: ``Content-Length: 9¹`` (a Latin-1 superscript one) passed
    ``str.isdigit()`` and made ``int()`` raise out of the HTTP reader. Only ASCII digits are a length."""
    from collectors.protocols.http_wire import MessageReader, WireStats

    messages: list = []
    reader = MessageReader(True, messages.append, WireStats())
    reader.feed("POST / HTTP/1.1\r\nContent-Length: 9\xb9\r\n\r\nGET /next HTTP/1.1\r\n\r\n".encode("latin-1"), 1.0)
    assert [m.start for m in messages][:1] == [b"POST / HTTP/1.1"]
    assert messages[0].headers["content-length"] == "9\xb9"


def test_an_smb2_body_shorter_than_the_byte_read_from_it_is_damage() -> None:
    """fuzz_smb_wire found: a TREE_CONNECT response (success, to a request the reader had seen) whose body stopped
    before its share type raised IndexError out of the SMB reader; so did a SET_INFO request as short (seen in the
    code next to it). Both are malformed (tshark stops there and remembers no tree): counted in ``damaged``, the next
    message read."""
    from collectors.protocols.smb_wire import SmbReader, SmbSessions
    from tests.unit import smb_sessions as s

    sessions = SmbSessions()
    reader = SmbReader(sessions)
    for from_client, message in [(s.C, s.tree_connect(4, "\\\\srv\\IPC$")),
                                 (s.S, s.smb2(3, 4, b"\x10\0", response=True, tid=5)),
                                 (s.C, s.smb2(17, 5, b"\x21\0", tid=5)),
                                 (s.C, s.create(6, "svcctl", 5))]:
        reader.feed(from_client, s.nbss(message))
    assert (reader.damaged, sessions.trees) == (2, {})
    assert reader.take() == {"smb2_cmd": ["3", "3", "17", "5"], "smb2_msg_id": ["4", "4", "5", "6"],
                             "smb2_tree": ["\\\\srv\\IPC$"], "smb2_nt_status": ["0x00000000"],
                             "smb2_filename": ["svcctl"]}
