"""TLS server certificates (``collectors.protocols.x509.server_certificate_fields``) from DER bytes.

Input: the DER. Contract: any bytes give either the fields or ``CertificateError`` with a one-line message
(never another exception), no warning reaches stderr (the module silences the library's notices about damaged
certificates it reads anyway), and the fields serialise with orjson (a certificate may well end before it starts).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections import defaultdict

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from collectors.protocols.x509 import CertificateError, server_certificate_fields
from tests.fuzz.seeds import TRACES, payloads

SESSION = 1_700_000_000.0


def TestOneInput(data: bytes) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", append=True)  # after the module's own filters: what they let through
        try:
            fields = server_certificate_fields(data, SESSION)
        except CertificateError as exc:
            assert "\n" not in str(exc)
            fields = {}
    assert not caught, [str(w.message) for w in caught]
    if not fields:
        return
    orjson.dumps(fields)
    assert all(isinstance(fields[f"tls.server.{k}"], str) for k in ("not_before", "not_after", "subject", "issuer"))
    assert isinstance(fields["secops.tls.self_signed"], bool)


def _made() -> list[bytes]:
    """Certificates made here: EC and Ed25519 keys, many name attributes, SANs, self-signed and issued."""
    names = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz.example"),
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fuzz, Inc."),
                       x509.NameAttribute(NameOID.STREET_ADDRESS, "1 Road"),
                       x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@fuzz.example"),
                       x509.NameAttribute(NameOID.COUNTRY_NAME, "NL")])
    out = []
    for key, algorithm in ((ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()),
                           (ed25519.Ed25519PrivateKey.generate(), None)):
        builder = (x509.CertificateBuilder().subject_name(names).issuer_name(names).public_key(key.public_key())
                   .serial_number(1).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
                   .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("fuzz.example"),
                                                               x509.DNSName("*.fuzz.example")]), critical=False))
        out.append(builder.sign(key, algorithm).public_bytes(serialization_der()))
    return out


def serialization_der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _captured() -> list[bytes]:
    """DER certificates found in the TLS captures' server streams (a SEQUENCE that parses as a certificate)."""
    streams: dict[tuple[int, int], bytearray] = defaultdict(bytearray)
    names = [str(p.relative_to(TRACES)) for p in sorted((TRACES / "tls").glob("*.pcap"))]
    for sport, dport, payload in payloads(names, 6, per_file=40):
        streams[sport, dport] += payload
    out: dict[bytes, None] = {}
    for data in streams.values():
        at = data.find(b"\x30\x82")
        while at >= 0 and len(out) < 12:
            der = bytes(data[at:at + 4 + int.from_bytes(data[at + 2:at + 4], "big")])
            try:
                x509.load_der_x509_certificate(der)
                out.setdefault(der)
            except ValueError:
                pass
            at = data.find(b"\x30\x82", at + 1)
    return list(out)


def seeds() -> list[bytes]:
    return _made() + _captured()
