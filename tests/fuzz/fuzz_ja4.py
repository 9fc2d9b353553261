"""JA4 client fingerprints (``collectors.protocols.ja4``) from ClientHello values taken from fuzzed bytes.

Input: flags (QUIC, SNI), the legacy version, then lists of 16-bit values (supported versions, ciphers,
extensions, signature algorithms) each after a count byte, then the first ALPN value as UTF-8. Contract: no
exception, and the fingerprint has JA4's shape: a 10-character head, two 12-hex-digit hashes, '_' between.
"""

from __future__ import annotations

import atheris

from collectors.protocols.ja4 import ja4

HEX = frozenset("0123456789abcdef")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    quic = fdp.ConsumeBool()
    legacy = fdp.ConsumeIntInRange(-1, 0xFFFF)
    lists = [[fdp.ConsumeIntInRange(0, 0xFFFF) for _ in range(fdp.ConsumeIntInRange(0, 120))] for _ in range(4)]
    alpn = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 16)) if fdp.ConsumeBool() else None
    text = ja4(quic=quic, legacy_version=None if legacy < 0 else legacy, supported_versions=lists[0],
               ciphers=lists[1], extensions=lists[2], signature_algorithms=lists[3], alpn_first=alpn)
    head, ciphers, extensions = text.split("_")
    assert len(head) == 10 and head[0] in "qt" and head[3] in "di" and head[4:8].isdigit()
    assert len(ciphers) == len(extensions) == 12 and set(ciphers) <= HEX and set(extensions) <= HEX


def seeds() -> list[bytes]:
    return [bytes(range(64)), b"\x01" * 200, bytes(range(255, 0, -1))]
