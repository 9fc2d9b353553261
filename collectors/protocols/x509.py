"""The server certificate of a TLS session as ECS fields: validity, names, and whether it signed itself.

The TLS analyzer hands over the leaf certificate's DER from the handshake's Certificate message (tshark's
``tls.handshake.certificate``); it is parsed with ``cryptography``'s X.509 parser (Rust, memory-safe). Names are
written as Zeek's x509.log writes them: RFC 4514 strings, most specific attribute first, with OpenSSL's short
attribute names (``street``, ``postalCode``, ``emailAddress``, ...). A certificate is
self-signed when its issuer is its subject and its own public key verifies its signature (when the signature
algorithm is one ``cryptography`` will not check, such as SHA-1, MD5 or ML-DSA, the name test alone decides);
it is expired when the session happened after its notAfter.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from secops.ecs import iso

# OpenSSL's short names (what Zeek prints) where cryptography's RFC 4514 output differs (it prints STREET or the
# dotted OID); CN, O, OU, L, ST, C, DC and UID are the same in both.
OPENSSL_NAMES = {
    NameOID.STREET_ADDRESS: "street", NameOID.POSTAL_CODE: "postalCode", NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber", NameOID.SURNAME: "SN", NameOID.GIVEN_NAME: "GN", NameOID.TITLE: "title",
    NameOID.INITIALS: "initials", NameOID.PSEUDONYM: "pseudonym", NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.DN_QUALIFIER: "dnQualifier", NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC", NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: "jurisdictionST",
    NameOID.JURISDICTION_LOCALITY_NAME: "jurisdictionL", NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.UNSTRUCTURED_NAME: "unstructuredName",
}


# Certificates in the wild break RFC 5280 (a zero or negative serial number): they are logged as they are, and the
# library's deprecation notice about them would be one stderr line per session.
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive",
                        category=CryptographyDeprecationWarning)
# Likewise a country name that is not two letters (found by fuzzing, tests/fuzz/fuzz_x509.py): the name is logged as
# it is, and the library's UserWarning about it would reach the sensor's stderr.
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
# And a certificate policy whose notice text breaks its string type (found by the compiled readers' fuzz replay):
# the policies are not logged, and the library's deprecation notice would reach stderr.
warnings.filterwarnings("ignore", message="Invalid ASN.1", category=CryptographyDeprecationWarning)


class CertificateError(ValueError):
    """The DER is not a certificate this parser reads (one line, for the analyzer's warning)."""


def distinguished_name(name: x509.Name) -> str:
    """The name as Zeek's x509.log prints it (OpenSSL's RFC 2253 form)."""
    return name.rfc4514_string(OPENSSL_NAMES)


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def _alternative_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _serial(number: int) -> str:
    """Upper-case hex of the serial's bytes, as Zeek prints it (a serial of 1 is "01")."""
    text = format(number, "X")
    return text.rjust(len(text) + len(text) % 2, "0")


def self_signed(cert: x509.Certificate) -> bool:
    """Issuer == subject, and (where the algorithm is supported) the certificate's own key verifies it."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):  # an algorithm the library will not verify (SHA-1, MD5,
        return True  # ML-DSA, ...): the names, already equal, decide
    return True


# Parsed certificates by their DER, as Zeek's X.509 analyzer caches the ones it sees often: a network's sessions
# meet the same few server certificates again and again, and parsing one and checking its signature took about
# 5% of an analyzer process's time on the 1M-packet benchmark. Values: the fields but expiry, and notAfter; or the
# error's message.
CACHED_CERTIFICATES = 1024
_parsed: dict[bytes, tuple[dict[str, Any], float] | str] = {}


def server_certificate_fields(der: bytes, session_ts: float) -> dict[str, Any]:
    """Dotted ECS (``tls.server.*``) and secops fields of the leaf certificate seen at ``session_ts``."""
    parsed = _parsed.get(der)
    if parsed is None:
        try:
            parsed = _parse(der)
        except CertificateError as exc:
            parsed = str(exc)
        if len(_parsed) >= CACHED_CERTIFICATES:
            _parsed.clear()
        _parsed[der] = parsed
    if isinstance(parsed, str):
        raise CertificateError(parsed)
    fields, not_after = parsed
    return {**fields, "secops.tls.cert_expired": session_ts > not_after}


def _parse(der: bytes) -> tuple[dict[str, Any], float]:
    """(the certificate's fields but ``secops.tls.cert_expired``, its notAfter as epoch seconds)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        not_before: datetime = cert.not_valid_before_utc
        not_after: datetime = cert.not_valid_after_utc
        subject, issuer = distinguished_name(cert.subject), distinguished_name(cert.issuer)
        fields: dict[str, Any] = {
            "tls.server.not_before": iso(not_before),
            "tls.server.not_after": iso(not_after),
            "tls.server.subject": subject,
            "tls.server.issuer": issuer,
            "tls.server.x509.not_before": iso(not_before),
            "tls.server.x509.not_after": iso(not_after),
            "tls.server.x509.subject.distinguished_name": subject,
            "tls.server.x509.subject.common_name": _common_name(cert.subject),
            "tls.server.x509.issuer.distinguished_name": issuer,
            "tls.server.x509.issuer.common_name": _common_name(cert.issuer),
            "tls.server.x509.serial_number": _serial(cert.serial_number),
            "tls.server.x509.alternative_names": _alternative_names(cert),
            "secops.tls.self_signed": self_signed(cert),
        }
    except Exception as exc:  # hostile bytes: any failure of the parser means "no readable certificate"
        # not DER, not a certificate, or a malformed name, time or extension in it (cryptography raises ValueError,
        # its own x509 errors, and on some damaged times a KeyError)
        raise CertificateError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return fields, not_after.timestamp()
