"""JA4 TLS client fingerprint (FoxIO JA4 spec) from ClientHello fields; tshark 4.0 has JA3 only.

``t13d1516h2_8daaf6152771_e5627efa2ab1``: protocol (t tcp, q quic), highest offered version,
SNI present (d) or not (i), cipher and extension counts, first+last character of the first
ALPN value; then truncated SHA-256 of the sorted cipher list and of the sorted extension list
(without SNI and ALPN) followed by the signature algorithms in offered order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
            0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}
EMPTY = "000000000000"


def is_grease(value: int) -> bool:
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def _hash12(items: Sequence[str]) -> str:
    if not items:
        return EMPTY
    return hashlib.sha256(",".join(items).encode()).hexdigest()[:12]


def _alpn(value: str | None) -> str:
    if not value:
        return "00"
    first, last = value[0], value[-1]
    if first.isascii() and first.isalnum() and last.isascii() and last.isalnum():
        return first + last
    raw = value.encode("utf-8", "replace").hex()
    return raw[0] + raw[-1]


def ja4(*, quic: bool, legacy_version: int | None, supported_versions: Sequence[int], ciphers: Sequence[int],
        extensions: Sequence[int], signature_algorithms: Sequence[int], alpn_first: str | None) -> str:
    """JA4 fingerprint string of one ClientHello."""
    ciphers = [c for c in ciphers if not is_grease(c)]
    extensions = [e for e in extensions if not is_grease(e)]
    offered = [v for v in supported_versions if not is_grease(v)]
    version = max(offered) if offered else legacy_version
    head = "{}{}{}{:02d}{:02d}{}".format(
        "q" if quic else "t", VERSIONS.get(version or 0, "00"), "d" if 0 in extensions else "i",
        min(len(ciphers), 99), min(len(extensions), 99), _alpn(alpn_first))
    cipher_hash = _hash12(sorted(f"{c:04x}" for c in ciphers))
    ext_list = sorted(f"{e:04x}" for e in extensions if e not in (0x0000, 0x0010))
    sigs = [f"{s:04x}" for s in signature_algorithms if not is_grease(s)]
    if not ext_list:
        ext_hash = EMPTY
    else:
        text = ",".join(ext_list) + ("_" + ",".join(sigs) if sigs else "")
        ext_hash = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{head}_{cipher_hash}_{ext_hash}"
