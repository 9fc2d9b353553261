"""DNS messages read from their bytes (RFC 1035 4.1, 3596, 4034, 2136; mDNS RFC 6762, LLMNR RFC 4795).

The native counterpart of the tshark fields ``collectors.protocols.dns`` reads: :func:`parse` turns one UDP
payload into a :class:`~collectors.protocols.dns.DnsMessage`, and the same analyzer pairs, renders and emits it.
Values are given as tshark gives them (names with its escapes, ``<Root>``, ``<Name too long>``, ``<Name contains a
pointer that loops>``; addresses as text), and a message is read as tshark reads it: up to the first field that
does not fit, keeping what came before (a truncated reply still has its header and first records).

Hostile input: every read is bounds-checked against the message; a name follows at most ``MAX_POINTERS``
compression pointers and grows to at most ``MAX_NAME_CHARS`` characters, and a message has at most
``MAX_RECORDS`` records read, so a datagram costs time in proportion to its length. Nothing here raises:
damage ends the message where it starts and is counted (``WireStats``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from collectors.protocols.dns import (
    NSEC,
    OPCODE_UPDATE,
    DnsMessage,
    Question,
    Record,
    _name,
    render,
    render_txt,
)

MAX_NAME_CHARS = 253  # longer names are "<Name too long>" (tshark's 255-byte buffer with its terminator)
MAX_POINTERS = 255  # compression pointers one name may follow before it is taken for a loop
MAX_LABEL_STEPS = 4096  # labels walked for one name at most (pointers can lead through the same ones again)
MAX_RECORDS = 4096  # records read from one message at most (a 64 KB datagram holds at most ~5.9k)
LOOPS = "<Name contains a pointer that loops>"
TOO_LONG = "<Name too long>"
ROOT = "<Root>"
OPT = 41
CLASS_MDNS_MASK = 0x7FFF  # mDNS uses the top class bit for "unicast response" / "cache flush"

# transports tshark decodes as DNS on these UDP ports, and what it calls them
PORT_KINDS = {53: "dns", 5353: "mdns", 5355: "llmnr"}


class _End(Exception):
    """The message ends before a field it announces (tshark's bounds exception): stop, keep what was read."""


class _Partial(_End):
    """A TXT record cut inside its strings: the ones read whole are kept (tshark has their fields)."""

    def __init__(self, strings: list[tuple[int, str]]) -> None:
        super().__init__()
        self.strings = strings


@dataclass
class WireStats:
    """Messages read natively and the damage found in them (warnings are counted, not raised)."""

    messages: int = 0
    truncated: int = 0  # messages that ended before their last announced field
    too_short: int = 0  # payloads without a transaction id and flags (no message)
    records_cut: int = 0  # messages with more than MAX_RECORDS records
    errors: dict[str, int] = field(default_factory=dict)


_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}


def display_text(raw: bytes) -> str:
    """Bytes of a name as tshark shows them (``format_text``): UTF-8 sequences kept, control characters
    escaped (``\\t``, ``\\001``), and each broken sequence one U+FFFD (a lead byte with the continuation bytes
    that follow it, up to the first that does not continue it)."""
    if raw.isascii():
        text = raw.decode("ascii")
        return text if text.isprintable() else text.translate(_CONTROL_SHOWN)
    out: list[str] = []
    pos, end = 0, len(raw)
    while pos < end:
        byte = raw[pos]
        if byte < 0x80:
            out.append(_CONTROL_SHOWN.get(byte) or chr(byte))
            pos += 1
            continue
        follow = _FOLLOWERS[byte]
        start = pos
        pos += 1
        if follow < 0:  # a continuation byte without its lead, or 0xFE/0xFF
            out.append("\ufffd")
            continue
        while follow and pos < end and raw[pos] & 0xC0 == 0x80:
            pos += 1
            follow -= 1
        if follow:
            out.append("\ufffd")
            continue
        try:
            out.append(raw[start:pos].decode("utf-8"))
        except UnicodeDecodeError:  # a whole sequence that is no character (overlong, surrogate, too large)
            out.append("\ufffd")
    return "".join(out)


# control characters as tshark shows them (``\t``, ``\001``); a translation table, not a call per character (a
# tunnel's binary labels made that call the DNS reader's most frequent)
_CONTROL_SHOWN = {code: _ESCAPES.get(code) or f"\\{code:03o}" for code in (*range(0x20), 0x7F)}


# continuation bytes a UTF-8 lead byte announces (by its bit pattern, as tshark reads it); -1: no lead byte
_FOLLOWERS = [0] * 0x80 + [-1] * 0x40 + [1] * 0x20 + [2] * 0x10 + [3] * 0x08 + [4] * 0x04 + [5] * 0x02 + [-1] * 2


def string_text(raw: bytes) -> str:
    """A character-string as tshark's ASCII strings give it: cut at the first NUL, bytes above 0x7F as U+FFFD."""
    raw = raw.split(b"\0", 1)[0]
    if raw.isascii():
        return raw.decode("ascii")
    return "".join("\ufffd" if b > 0x7F else chr(b) for b in raw)


class Runs:
    """Runs of labels in one message: from a position, how many labels follow one after the other (each within the
    message) and their bytes of text, counted once a message. A name past its first pointer and past
    ``MAX_NAME_CHARS`` keeps nothing of its labels but their count and size, so it goes over a run at once: walked
    label by label, every name of a datagram pointing at one long name could take ``MAX_LABEL_STEPS`` steps (26
    million a datagram, a second here)."""

    def __init__(self) -> None:
        self.table: dict[int, tuple[int, int]] = {}

    def at(self, data: bytes, pos: int) -> tuple[int, int]:
        """(labels, bytes of text) of the run of labels starting at ``pos``."""
        table = self.table
        end = len(data)
        chain: list[int] = []
        p = pos
        while p not in table and p < end:
            length = data[p]
            if length == 0 or length & 0xC0 or p + 1 + length > end:
                break
            chain.append(p)
            p += 1 + length
        count, text = table.get(p, (0, 0))
        for at in reversed(chain):
            count += 1
            text += data[at]
            table[at] = (count, text)
        return count, text


def read_name(data: bytes, pos: int, runs: Runs | None = None) -> tuple[str, int]:
    """(name as tshark shows it, bytes it takes at ``pos``) of a possibly compressed domain name.

    tshark follows up to 255 pointers (a pointer two bytes past its own end counts as a loop at once); a pointer
    to a place already jumped to is a loop it would follow to that limit, so it ends here. At most
    ``MAX_LABEL_STEPS`` labels are walked (the same name through many pointers) before a name is taken for a loop.
    With ``runs`` (the message's), the labels a name no longer keeps are gone over a run at a time: the same result.
    """
    end = len(data)
    parts: list[bytes] = []
    size = 0  # characters so far, dots included
    consumed = -1
    pointers = 0
    steps = 0
    targets: set[int] = set()
    start = pos
    while True:
        if runs is not None and consumed >= 0 and size > MAX_NAME_CHARS:
            count, text = runs.at(data, pos)
            if count:
                if steps + count > MAX_LABEL_STEPS:
                    return LOOPS, consumed
                steps += count
                size += text + count
                pos += text + count
        if pos >= end:
            raise _End
        length = data[pos]
        pos += 1
        if length == 0:
            break
        kind = length & 0xC0
        if kind == 0:
            if pos + length > end:
                raise _End
            steps += 1
            if steps > MAX_LABEL_STEPS:
                return LOOPS, consumed if consumed >= 0 else pos - start
            if size <= MAX_NAME_CHARS:
                parts.append(data[pos:pos + length])
            size += length + (1 if size else 0)
            pos += length
        elif kind == 0xC0:
            if pos >= end:
                raise _End
            target = (length & 0x3F) << 8 | data[pos]
            pos += 1
            pointers += 1
            if consumed < 0:
                consumed = pos - start
            if target == pos + 2 or pointers > MAX_POINTERS or target in targets:
                return LOOPS, consumed
            targets.add(target)
            pos = target
        else:  # extended (RFC 2673) and reserved label types: tshark stops the message here
            raise _End
    if consumed < 0:
        consumed = pos - start
    if size > MAX_NAME_CHARS:
        return TOO_LONG, consumed
    if not parts:
        return ROOT, consumed
    return display_text(b".".join(parts)), consumed


def _need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise _End


def _u16(data: bytes, pos: int) -> int:
    _need(data, pos, 2)
    return data[pos] << 8 | data[pos + 1]


def _rdata_values(data: bytes, rtype: int, pos: int, rdlen: int,
                  runs: Runs) -> list[str] | list[tuple[int, str]] | None:
    """The values tshark reads from one record's data (its fields for the rendering), or None for a type
    rendered without them. Like tshark, fields are read from the message, not bounded by ``rdlen``."""
    if rtype == 1:
        _need(data, pos, 4)
        return [socket.inet_ntop(socket.AF_INET, data[pos:pos + 4])]
    if rtype == 28:
        _need(data, pos, 16)
        return [socket.inet_ntop(socket.AF_INET6, data[pos:pos + 16])]
    if rtype in (2, 5, 12, 6):  # NS, CNAME, PTR, SOA (its mname)
        return [read_name(data, pos, runs)[0]]
    if rtype == 15:  # MX: preference, exchange
        _need(data, pos, 2)
        return [read_name(data, pos + 2, runs)[0]]
    if rtype == 33:  # SRV: priority, weight, port, target
        _need(data, pos, 6)
        return [read_name(data, pos + 6, runs)[0]]
    if rtype == 38:  # A6: prefix length, address suffix, prefix name
        _need(data, pos, 1)
        prefix = data[pos]
        if prefix > 128:
            raise _End
        octets = (128 - prefix + 7) // 8
        _need(data, pos + 1, octets)
        suffix = bytes(16 - octets) + data[pos + 1:pos + 1 + octets]
        if prefix > 0:
            read_name(data, pos + 1 + octets, runs)
        return [socket.inet_ntop(socket.AF_INET6, suffix)]
    if rtype == 46:  # RRSIG: type covered, algorithm, labels, TTL, expiration, inception, key tag, signer
        type_covered = _u16(data, pos)
        _need(data, pos, 18)
        return [str(type_covered), read_name(data, pos + 18, runs)[0]]
    if rtype == 48:  # DNSKEY: flags, protocol, algorithm
        _need(data, pos, 4)
        return [str(data[pos + 3])]
    if rtype == 43:  # DS: key tag, algorithm, digest type
        _need(data, pos, 4)
        return [str(data[pos + 2]), str(data[pos + 3])]
    if rtype == 44:  # SSHFP: algorithm, fingerprint type, fingerprint (the rest of the data)
        _need(data, pos, 2)
        if rdlen <= 2:
            return None
        _need(data, pos + 2, rdlen - 2)
        return [data[pos + 2:pos + rdlen].hex()]
    if rtype == 29:  # LOC version 0: size, horizontal and vertical precision
        _need(data, pos, 1)
        if data[pos] != 0:
            return None
        _need(data, pos, 16)
        return [str(data[pos + 1]), str(data[pos + 2]), str(data[pos + 3])]
    if rtype == NSEC:
        return [read_name(data, pos, runs)[0]]
    if rtype in (16, 99):  # TXT, SPF: character-strings until the data length is used up (tshark's loop)
        strings: list[tuple[int, str]] = []
        left = rdlen
        while left != 0:
            if pos + 1 > len(data) or pos + 1 + data[pos] > len(data) or len(strings) > MAX_RECORDS:
                raise _Partial(strings)
            size = data[pos]
            strings.append((size, string_text(data[pos + 1:pos + 1 + size])))
            pos += 1 + size
            left -= 1 + size
        return strings
    return None


def _record(data: bytes, pos: int, section: int, mdns: bool, runs: Runs) -> tuple[Record, int, bool]:
    """(record, position after it, whether it was read whole) at ``pos``."""
    name, used = read_name(data, pos, runs)
    pos += used
    _need(data, pos, 10)
    rtype = data[pos] << 8 | data[pos + 1]
    rclass = data[pos + 2] << 8 | data[pos + 3]
    ttl = int.from_bytes(data[pos + 4:pos + 8], "big")
    rdlen = data[pos + 8] << 8 | data[pos + 9]
    pos += 10
    _need(data, pos, rdlen)  # tshark adds nothing of a record whose data the message does not hold
    if mdns:
        rclass &= CLASS_MDNS_MASK
    if rtype == OPT:  # EDNS (RFC 6891): payload size and extended flags where class and TTL would be
        rclass_out: int | None = None
        ttl_out: int | None = None
    else:
        rclass_out, ttl_out = rclass, ttl
    owner = _name(name)
    values: list[str] | list[tuple[int, str]] | None = None
    whole = True
    if rdlen:  # like tshark, a record without data has no data fields
        try:
            values = _rdata_values(data, rtype, pos, rdlen, runs)
        except _Partial as cut:
            values, whole = cut.strings, False
        except _End:
            whole = False
    data_text = render_txt(rtype, values or []) if rtype in (16, 99) else render(rtype, owner, values)  # type: ignore[arg-type]
    return Record(section, owner, rtype, rclass_out, ttl_out, rdlen, data_text), pos + rdlen, whole


def parse(payload: bytes, kind: str = "dns", stats: WireStats | None = None) -> DnsMessage | None:
    """The message in one UDP payload as tshark reads it (``kind``: dns, mdns or llmnr, from the port), or
    None when it has no transaction id and flags. Never raises."""
    stats = stats if stats is not None else WireStats()
    data = bytes(payload)
    if len(data) < 4:
        stats.too_short += 1
        return None
    stats.messages += 1
    tid = data[0] << 8 | data[1]
    flags = data[2] << 8 | data[3]
    response = bool(flags & 0x8000)
    opcode = flags >> 11 & 0xF
    llmnr = kind == "llmnr"
    msg = DnsMessage(
        tid=tid, response=response, opcode=opcode, rcode=(flags & 0xF) if response else None,
        aa=bool(flags & 0x0400) and response and not llmnr, tc=bool(flags & 0x0200),
        rd=bool(flags & 0x0100) and not llmnr, ra=bool(flags & 0x0080) and response and not llmnr)
    counts = []
    for pos in (4, 6, 8, 10):
        if pos + 2 > len(data):
            break
        counts.append(data[pos] << 8 | data[pos + 1])
    update = opcode == OPCODE_UPDATE
    if len(counts) > 1 and not update:
        msg.n_answers = counts[1]
    if len(counts) > 2 and not update:
        msg.n_auth = counts[2]
    if len(counts) > 3:
        msg.n_additional = counts[3]
    if len(counts) < 4:
        stats.truncated += 1
        return msg
    mdns = kind == "mdns"
    pos = 12
    runs = Runs()
    try:
        for _ in range(min(counts[0], MAX_RECORDS)):
            name, used = read_name(data, pos, runs)
            pos += used
            _need(data, pos, 4)
            qclass = data[pos + 2] << 8 | data[pos + 3]
            question = Question(name, data[pos] << 8 | data[pos + 1], qclass & CLASS_MDNS_MASK if mdns else qclass)
            if msg.question is None:
                msg.question = question
            pos += 4
        total = counts[1] + counts[2] + counts[3]
        if total > MAX_RECORDS:
            stats.records_cut += 1
        for i in range(min(total, MAX_RECORDS)):
            section = 0 if i < counts[1] else 1 if i < counts[1] + counts[2] else 2
            record, pos, whole = _record(data, pos, section, mdns, runs)
            msg.records.append(record)
            if not whole:
                raise _End
    except _End:
        stats.truncated += 1
    return msg
