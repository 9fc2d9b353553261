"""The TLS analyzer's server-certificate fields: validity (ECS tls.server.not_before/not_after), names, and the
self-signed and expired flags; on certificates made here with `cryptography` and on shared captures read through
the deep path (its frame selection keeps the Certificate message)."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collectors.ingest import Pipeline
from collectors.protocols import x509 as x509_module
from collectors.protocols.x509 import CertificateError, server_certificate_fields
from tests.support import TESTDATA

TLS_TRACES = TESTDATA / "zeek/traces/tls"
UTC = dt.UTC


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "T")])


def certificate(subject: str, issuer: str, signer: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey,
                not_before: dt.datetime, not_after: dt.datetime, sans: tuple[str, ...] = ()) -> bytes:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(0x1F2E3D).not_valid_before(not_before)
               .not_valid_after(not_after))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


START, END = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2025, 1, 1, tzinfo=UTC)


def test_self_signed_expired_certificate_gives_validity_names_and_both_flags(keys):
    key, _ = keys
    der = certificate("srv.example", "srv.example", key, key, START, END, sans=("srv.example", "alt.example"))
    after_expiry = dt.datetime(2025, 6, 1, tzinfo=UTC).timestamp()
    f = server_certificate_fields(der, after_expiry)
    assert f["tls.server.not_before"] == "2024-01-01T00:00:00.000000Z" == f["tls.server.x509.not_before"]
    assert f["tls.server.not_after"] == "2025-01-01T00:00:00.000000Z" == f["tls.server.x509.not_after"]
    assert f["tls.server.subject"] == "O=T,CN=srv.example" == f["tls.server.issuer"]
    assert f["tls.server.x509.subject.common_name"] == "srv.example"
    assert f["tls.server.x509.alternative_names"] == ["srv.example", "alt.example"]
    assert f["tls.server.x509.serial_number"] == "1F2E3D"
    assert f["secops.tls.self_signed"] is True and f["secops.tls.cert_expired"] is True
    within = server_certificate_fields(der, dt.datetime(2024, 6, 1, tzinfo=UTC).timestamp())
    assert within["secops.tls.cert_expired"] is False


def test_issued_certificate_and_a_forged_self_issued_one_are_not_self_signed(keys):
    key, ca = keys
    at = dt.datetime(2024, 6, 1, tzinfo=UTC).timestamp()
    issued = server_certificate_fields(certificate("leaf.example", "Test CA", ca, key, START, END), at)
    assert issued["secops.tls.self_signed"] is False
    assert issued["tls.server.x509.issuer.common_name"] == "Test CA"
    # issuer == subject, but another key signed it: its own key does not verify it
    forged = server_certificate_fields(certificate("same.example", "same.example", ca, key, START, END), at)
    assert forged["secops.tls.self_signed"] is False


def test_a_certificate_seen_again_is_read_from_the_cache_and_the_cache_is_bounded(keys, monkeypatch):
    key, _ = keys
    monkeypatch.setattr(x509_module, "_parsed", {})
    monkeypatch.setattr(x509_module, "CACHED_CERTIFICATES", 3)
    der = certificate("cache.example", "cache.example", key, key, START, END)
    first = server_certificate_fields(der, START.timestamp())
    first["tls.server.subject"] = "changed by a caller"  # a caller's copy: the cache is not touched
    again = server_certificate_fields(der, END.timestamp() + 1)
    assert again["tls.server.subject"] == "O=T,CN=cache.example"
    assert (first["secops.tls.cert_expired"], again["secops.tls.cert_expired"]) == (False, True)
    assert list(x509_module._parsed) == [der]
    for damaged in (b"\x30\x03\x02\x01\x00", b"\x30\x00"):  # errors are remembered too, and raised each time
        for _ in range(2):
            with pytest.raises(CertificateError):
                server_certificate_fields(damaged, 0.0)
    assert len(x509_module._parsed) == 3
    server_certificate_fields(certificate("next.example", "next.example", key, key, START, END), 0.0)
    assert len(x509_module._parsed) == 1


def test_bytes_that_are_no_certificate_raise_a_one_line_error(keys):
    with pytest.raises(CertificateError) as err:
        server_certificate_fields(b"\x30\x03\x02\x01\x00", 0.0)
    assert "\n" not in str(err.value)
    key, _ = keys
    der = certificate("srv.example", "srv.example", key, key, START, END, sans=("srv.example",))
    rng = random.Random(7)
    for _ in range(2000):  # damaged certificates: fields or the one clear error, never another exception
        damaged = bytearray(der)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        with contextlib.suppress(CertificateError):
            server_certificate_fields(bytes(damaged), 0.0)


def tls_docs(pcap: Path) -> list[dict]:
    docs: list[dict] = []
    pipe = Pipeline(docs.append)
    pipe.process_file(pcap)
    pipe.finish()
    return [d for d in docs if d["event"]["dataset"] == "secops.tls"]


def leaf_fingerprints_in_full_capture(pcap: Path) -> set[str]:
    """Every Certificate message's first certificate, as tshark reads it from the whole capture."""
    import hashlib

    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tls.handshake.type == 11 or dtls.handshake.type == 11",
                          "-T", "fields", "-E", "occurrence=f", "-e", "tls.handshake.certificate",
                          "-e", "dtls.handshake.certificate"], capture_output=True, text=True, check=True).stdout
    return {hashlib.sha256(bytes.fromhex(v.replace(":", ""))).hexdigest().upper()
            for line in out.splitlines() for v in line.split("\t") if v}


# (capture, server CN, self-signed): a self-signed DTLS peer (WebRTC), a self-signed DTLS server whose SHA-1
# signature the parser will not verify (name test), an ML-DSA self-signed certificate, and a CA-issued one
SHARED = [("webrtc-stun.pcap", "a", True), ("dtls1_0.pcap", "bro", True),
          ("ml-dsa-44-cert.pcap", "ml-dsa.example.com", True), ("tls1.2.pcap", "*.taleo.net", False)]


@pytest.mark.parametrize(("name", "cn", "self_signed"), SHARED, ids=[s[0] for s in SHARED])
def test_shared_captures_certificates_through_the_deep_path(name, cn, self_signed):
    pcap = TLS_TRACES / name
    docs = [d for d in tls_docs(pcap) if d["tls"].get("server", {}).get("hash")]
    assert docs, f"{name}: no session with a server certificate"
    assert {d["tls"]["server"]["hash"]["sha256"] for d in docs} <= leaf_fingerprints_in_full_capture(pcap)
    for d in docs:
        server = d["tls"]["server"]
        assert server["x509"]["subject"]["common_name"] == cn
        assert server["not_before"] < server["not_after"]
        assert d["secops"]["tls"]["self_signed"] is self_signed
        assert d["secops"]["tls"]["cert_expired"] is (d["@timestamp"] > server["not_after"])


# Zeek's own x509.log for two shared traces (its btest baselines): the same certificate, field by field
ZEEK_X509 = [("tls1.2.pcap", "scripts.base.protocols.ssl.tls-1.2"),
             ("tls-conn-with-extensions.pcap", "scripts.base.protocols.ssl.basic")]


def zeek_x509(baseline: str) -> dict[str, dict[str, str]]:
    lines = (TESTDATA / "zeek/baselines" / baseline / "x509.log").read_text().splitlines()
    names = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    rows = [dict(zip(names, line.split("\t"), strict=True)) for line in lines if not line.startswith("#")]
    return {r["fingerprint"]: r for r in rows}


@pytest.mark.parametrize(("name", "baseline"), ZEEK_X509, ids=[z[0] for z in ZEEK_X509])
def test_server_certificate_fields_equal_zeeks_x509_log(name, baseline):
    zeek = zeek_x509(baseline)
    docs = [d for d in tls_docs(TLS_TRACES / name) if d["tls"].get("server", {}).get("hash")]
    assert docs
    for d in docs:
        server = d["tls"]["server"]
        row = zeek[server["hash"]["sha256"].lower()]
        assert server["subject"] == row["certificate.subject"]
        assert server["issuer"] == row["certificate.issuer"]
        assert server["x509"]["serial_number"] == row["certificate.serial"]
        for ours, theirs in (("not_before", "certificate.not_valid_before"),
                             ("not_after", "certificate.not_valid_after")):
            when = dt.datetime.strptime(server[ours], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            assert when.timestamp() == float(row[theirs])
        sans = row["san.dns"].split(",") if row["san.dns"] != "-" else []
        assert server["x509"].get("alternative_names", []) == sans
        assert d["secops"]["tls"]["self_signed"] is False


def test_unreadable_server_certificate_keeps_the_session_and_warns():
    from collectors.protocols.documents import Flow
    from collectors.protocols.tls import Session, TlsAnalyzer

    warnings: list[str] = []
    analyzer = TlsAnalyzer(warnings.append)
    junk = b"\x30\x82\x01\x00" + b"\xff" * 16
    s = Session(Flow("tcp", "198.18.0.1", 40000, "198.18.0.2", 443, "7"), 1_700_000_000.0, version=0x0303,
                certs=["ab" * 32], leaf_der=junk)
    doc = analyzer.emit(s)
    assert doc["tls"]["server"]["hash"]["sha256"] == "AB" * 32  # the session and its fingerprint are kept
    assert "not_after" not in doc["tls"]["server"] and "self_signed" not in doc["secops"]["tls"]
    assert len(warnings) == 1 and "198.18.0.2:443" in warnings[0] and "not readable" in warnings[0]
