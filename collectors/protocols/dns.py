"""DNS and the name services Zeek logs with it (mDNS, LLMNR, NetBIOS name service): one record per
query/response transaction, as Zeek's dns.log.

A query opens a transaction (per connection and transaction id, first in first out); the reply
closes it (answers, TTLs, rcode, rtt). Replies without a query are logged on their own, queries
that never got a reply are logged when the capture ends. Messages sent to a multicast group
(mDNS 224.0.0.251 / ff02::fb, LLMNR) are never paired: each is its own record, as Zeek does.
Answers are rendered as Zeek renders them (``RRSIG 1 upenn.edu``, ``DNSKEY 5``, ``TXT 5 hello``);
DNS UPDATE messages log their prerequisites and updates (``pre: NoRRSet CNAME name``,
``del: RRSet A``, ``add: A name 192.0.2.1``).

A message reaches the analyzer as a :class:`DnsMessage`, from tshark's fields (:func:`message_from_packet`: DNS over
TCP, NetBIOS-NS, ``extract_metadata``) or from its bytes (``dns_wire.parse``: DNS/mDNS/LLMNR over UDP in the
ingest pipeline); pairing, rendering (:func:`render`) and documents are the same code for both.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from collectors.protocols.base import Analyzer, RunContext, Warn
from collectors.protocols.documents import Flow, Written, flow_of
from collectors.protocols.tshark import Packet, to_int

QTYPES = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR", 10: "NULL", 11: "WKS",
    12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN",
    21: "RT", 22: "NSAP", 23: "NSAP-PTR", 24: "SIG", 25: "KEY", 26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC",
    30: "NXT", 31: "EID", 32: "NIMLOC", 33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6",
    39: "DNAME", 40: "SINK", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG",
    47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP",
    59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS", 99: "SPF",
    249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB", 254: "MAILA", 255: "*", 256: "URI",
    257: "CAA", 32768: "TA", 32769: "DLV",
}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
          7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS"}
OPCODES = {0: "query", 1: "iquery", 2: "status", 4: "notify", 5: "update"}
CLASSES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
# Zeek's dns.log rendering of an answer record (scripts/base/protocols/dns/main.zeek): the tshark
# fields each type reads (one occurrence per record of that type, in message order) and the text.
# Names are lower-cased as Zeek's DNS analyzer extracts them.
RENDERED: dict[int, tuple[tuple[str, ...], Callable[[list[str]], str]]] = {
    1: (("dns.a",), lambda v: v[0]),
    28: (("dns.aaaa",), lambda v: v[0]),
    38: (("dns.a6.address_suffix",), lambda v: v[0]),
    2: (("dns.ns",), lambda v: _name(v[0])),
    5: (("dns.cname",), lambda v: _name(v[0])),
    12: (("dns.ptr.domain_name",), lambda v: _name(v[0])),
    15: (("dns.mx.mail_exchange",), lambda v: _name(v[0])),
    6: (("dns.soa.mname",), lambda v: _name(v[0])),
    33: (("dns.srv.target",), lambda v: _name(v[0])),
    46: (("dns.rrsig.type_covered", "dns.rrsig.signers_name"), lambda v: f"RRSIG {v[0]} {_name(v[1]) or '<Root>'}"),
    48: (("dns.dnskey.algorithm",), lambda v: f"DNSKEY {v[0]}"),
    43: (("dns.ds.algorithm", "dns.ds.digest_type"), lambda v: f"DS {v[0]} {v[1]}"),
    44: (("dns.sshfp.fingerprint",), lambda v: "SSHFP: " + v[0].replace(":", "").lower()),
    29: (("dns.loc.size", "dns.loc.horizontal_precision", "dns.loc.vertical_precision"),
         lambda v: f"LOC:  {v[0]} {v[1]} {v[2]}"),
}
NSEC, NSEC3 = 47, 50
NSEC_NEXT = "dns.nsec.next_domain_name"
TXT_TYPES = {16: ("dns.txt", "TXT"), 99: ("dns.spf", "SPF")}
FIXED_TEXT = {50: "NSEC3", 51: "NSEC3PARAM", 65534: "BIND9 signing signal"}
# types Zeek's analyzer parses but its script logs nothing for (EDNS, TSIG, NetBIOS NB/NBSTAT, ...)
NOT_LOGGED = frozenset({11, 13, 32, 35, 41, 64, 65, 249, 250, 257})
DATA_FIELDS = tuple(dict.fromkeys(
    [f for fields, _ in RENDERED.values() for f in fields] + [NSEC_NEXT]
    + [f for f, _ in TXT_TYPES.values()] + [f + ".length" for f, _ in TXT_TYPES.values()]))
# RFC 2136 (DNS UPDATE): class of a prerequisite / update record says what it asks for
CLASS_ANY, CLASS_NONE = 255, 254
NETBIOS_PORT = 137

QUERY_TIMEOUT = 60.0  # seconds: Zeek's udp_inactivity_timeout ends the "connection" a query belongs to
MAX_FLOWS = 100_000
# queries waiting for their reply in all connections together: the timeout alone let a flood of queries, each of its
# own flow, hold ~1.1 kB each for every query of the last minute (400,000 a second on a 1 Gb/s link: 26 GB); past it
# the oldest connection's queries are logged unanswered, as at their timeout. The Rust engine reads it here.
MAX_OPEN_QUERIES = 100_000


def qtype_name(code: int | None) -> str | None:
    return None if code is None else QTYPES.get(code, f"query-{code}")


def label_stats(name: str) -> tuple[int, float]:
    """Longest label and Shannon entropy (bits/char) of the labels below the registered domain."""
    labels = [x for x in name.split(".") if x]
    if not labels:
        return 0, 0.0
    sub = "".join(labels[:-2]) if len(labels) > 2 else ""
    entropy = 0.0
    if sub:
        counts = Counter(sub)
        entropy = -sum(c / len(sub) * math.log2(c / len(sub)) for c in counts.values())
    return max(len(x) for x in labels), round(entropy, 3)


def _name(text: str | None) -> str:
    """A domain name as Zeek logs it: lower-case, the root as empty."""
    if not text or text == "<Root>":
        return ""
    return text.lower()


def netbios_name(encoded: str) -> str:
    """The NetBIOS name of an NBNS question (tshark shows ``NAME<1d>``): Zeek's decode_netbios_name
    keeps the first 15 bytes up to the first blank or control byte and drops the suffix byte."""
    plain = encoded.split("<", 1)[0]
    out = []
    for ch in plain[:15]:
        if not (ch.isalnum() or (ch.isascii() and ch.isprintable() and not ch.isspace())):
            break
        out.append(ch)
    return "".join(out)


@lru_cache(maxsize=4096)
def is_multicast(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_multicast
    except ValueError:
        return False


@dataclass(slots=True, unsafe_hash=True, init=False)
class Record:
    """One resource record of a message, with Zeek's rendering of its data (None: Zeek logs none)."""

    section: int  # 0 answer (or UPDATE prerequisite), 1 authority (UPDATE update), 2 additional
    name: str
    rtype: int
    rclass: int | None
    ttl: int | None
    rdlen: int
    data: str | None

    def __init__(self, section: int, name: str, rtype: int, rclass: int | None, ttl: int | None, rdlen: int,
                 data: str | None) -> None:
        self.section = section
        self.name = name
        self.rtype = rtype
        self.rclass = rclass
        self.ttl = ttl
        self.rdlen = rdlen
        self.data = data


def _record_types(types: list[int | None], count: int) -> list[int | None]:
    """The type of each of ``count`` records: tshark also reports NSEC/NSEC3 bitmap entries as
    ``dns.resp.type``; they follow their record in ascending order and are skipped here."""
    extras = len(types) - count
    out: list[int | None] = []
    pos = 0
    while pos < len(types) and len(out) < count:
        rtype = types[pos]
        out.append(rtype)
        pos += 1
        if rtype in (NSEC, NSEC3):
            last = -1
            while extras > 0 and pos < len(types) and (types[pos] or 0) > last:
                last = types[pos] or 0
                pos += 1
                extras -= 1
    return out


def render(rtype: int, owner: str, values: list[str] | None) -> str | None:
    """Zeek's rendering of one record's data from the values of its fields (as tshark gives them: names
    before lower-casing, numbers as text), None when Zeek logs no data for it or the values are missing."""
    if rtype in RENDERED:
        return None if values is None else RENDERED[rtype][1](values)
    if rtype == NSEC:
        return None if values is None else f"NSEC {owner} {_name(values[0])}"
    if rtype in FIXED_TEXT:
        return FIXED_TEXT[rtype]
    if rtype in NOT_LOGGED:
        return None
    return f"<unknown type={rtype}>"


def render_txt(rtype: int, strings: list[tuple[int, str]]) -> str:
    """``TXT 5 hello TXT 5 world``: every (length, text) character-string of one TXT or SPF record."""
    label = TXT_TYPES[rtype][1]
    return " ".join(f"{label} {size} {text}" for size, text in strings)


def _records(pkt: Packet) -> list[Record]:
    """Every resource record of the message with its section and Zeek's rendering."""
    names = pkt.values("dns.resp.name")
    types = _record_types([to_int(t) for t in pkt.values("dns.resp.type")], len(names))
    classes, ttls, lens = pkt.values("dns.resp.class"), pkt.values("dns.resp.ttl"), pkt.values("dns.resp.len")
    n_answer = pkt.int("dns.count.answers")
    if n_answer is None:
        n_answer = pkt.int("dns.count.prerequisites", 0) or 0
    n_auth = pkt.int("dns.count.auth_rr")
    if n_auth is None:
        n_auth = pkt.int("dns.count.updates", 0) or 0
    seen: dict[int, int] = defaultdict(int)  # records of each type so far (index into its fields)
    txt_pos: dict[str, int] = defaultdict(int)
    out = []
    for i, rtype in enumerate(types):
        if rtype is None:
            continue
        rdlen = to_int(lens[i] if i < len(lens) else None, 0) or 0
        k = seen[rtype]
        if rdlen:  # records without data (UPDATE deletions, prerequisites) have no fields to consume
            seen[rtype] += 1
        name = _name(names[i]) if i < len(names) else ""
        data: str | None
        if rtype in TXT_TYPES:
            data = render_txt(rtype, _txt(pkt, rtype, rdlen, txt_pos))
        else:
            fields = RENDERED[rtype][0] if rtype in RENDERED else (NSEC_NEXT,) if rtype == NSEC else ()
            columns = [pkt.values(f) for f in fields]
            values = [v[k] for v in columns] if rdlen and all(k < len(v) for v in columns) else None
            data = render(rtype, name, values)
        section = 0 if i < n_answer else 1 if i < n_answer + n_auth else 2
        out.append(Record(section, name, rtype, to_int(classes[i]) if i < len(classes) else None,
                          to_int(ttls[i]) if i < len(ttls) else None, rdlen, data))
    return out


def _txt(pkt: Packet, rtype: int, rdlen: int, cursor: dict[str, int]) -> list[tuple[int, str]]:
    """The (length, text) character-strings of one record (its data length decides how many are its own)."""
    fname = TXT_TYPES[rtype][0]
    vals, sizes = pkt.values(fname), pkt.values(fname + ".length")
    parts, used = [], 0
    while used < rdlen and cursor[fname] < len(vals):
        j = cursor[fname]
        size = to_int(sizes[j] if j < len(sizes) else None, len(vals[j])) or 0
        parts.append((size, vals[j]))
        used += size + 1
        cursor[fname] += 1
    return parts


def _answers(records: list[Record]) -> list[dict[str, Any]]:
    """Answer-section records as ECS ``dns.answers`` entries, data as Zeek renders it; like Zeek's
    dns.log, records of types it renders nothing for (TKEY, OPT, NB, ...) are left out."""
    return [{"type": QTYPES.get(rec.rtype, str(rec.rtype)), "name": rec.name, "ttl": rec.ttl, "data": rec.data}
            for rec in records if rec.section == 0 and rec.data is not None]


def update_entries(records: list[Record]) -> list[dict[str, Any]]:
    """A DNS UPDATE's prerequisites and updates (RFC 2136 sections 2.4 and 2.5) as Zeek logs them."""
    out = []
    for rec in records:
        if rec.section > 1:
            continue
        rtype = QTYPES.get(rec.rtype, str(rec.rtype))
        wildcard = rec.rtype == 255
        if rec.section == 0:  # prerequisites
            if rec.rclass == CLASS_ANY:
                text = f"pre: NameInUse {rec.name}" if wildcard else f"pre: RRSet {rtype} {rec.name}"
            elif rec.rclass == CLASS_NONE:
                text = f"pre: NoName {rec.name}" if wildcard else f"pre: NoRRSet {rtype} {rec.name}"
            else:
                text = f"pre: RRSet {rtype} {rec.name} {rec.data or ''}".rstrip()
        elif rec.rclass == CLASS_ANY:  # updates
            text = "del: AllRRSets" if wildcard else f"del: RRSet {rtype}"
        elif rec.rclass == CLASS_NONE:
            text = f"del: RR {rtype} {rec.name} {rec.data or ''}".rstrip()
        else:
            text = f"add: {rtype} {rec.name} {rec.data or ''}".rstrip()
        out.append({"type": rtype, "name": rec.name, "ttl": rec.ttl, "data": text})
    return out


@dataclass(slots=True, unsafe_hash=True, init=False)
class Question:
    """The first question of a message: its name as read (tshark's text, before lower-casing), type, class."""

    name: str
    qtype: int | None
    qclass: int | None

    def __init__(self, name: str, qtype: int | None, qclass: int | None) -> None:
        self.name = name
        self.qtype = qtype
        self.qclass = qclass


@dataclass(slots=True, init=False)
class DnsMessage:
    """One DNS-format message, whichever reader extracted it (tshark's fields or ``dns_wire`` from the bytes).

    Flags absent from a message's kind (LLMNR has no AA/RD/RA; queries carry no AA/RA/rcode) are False/None.
    """

    tid: int
    response: bool
    opcode: int | None
    rcode: int | None = None
    aa: bool = False
    tc: bool = False
    rd: bool = False
    ra: bool = False
    question: Question | None = None
    records: list[Record] = field(default_factory=list)
    # ANCOUNT/NSCOUNT/ARCOUNT as logged for "rejected" (an UPDATE's sections have other names: 0 here)
    n_answers: int = 0
    n_auth: int = 0
    n_additional: int = 0

    def __init__(self, tid: int, response: bool, opcode: int | None, rcode: int | None = None, aa: bool = False,
                 tc: bool = False, rd: bool = False, ra: bool = False, question: Question | None = None,
                 records: list[Record] | None = None, n_answers: int = 0, n_auth: int = 0,
                 n_additional: int = 0) -> None:
        self.tid = tid
        self.response = response
        self.opcode = opcode
        self.rcode = rcode
        self.aa = aa
        self.tc = tc
        self.rd = rd
        self.ra = ra
        self.question = question
        self.records = [] if records is None else records
        self.n_answers = n_answers
        self.n_auth = n_auth
        self.n_additional = n_additional


def message_from_packet(pkt: Packet) -> DnsMessage | None:
    """The DNS message of a tshark-dissected packet (None without a transaction id)."""
    tid = pkt.int("dns.id")
    if tid is None:
        return None
    name = pkt.first("dns.qry.name")
    question = None if name is None else Question(name, pkt.int("dns.qry.type"), pkt.int("dns.qry.class"))
    return DnsMessage(
        tid=tid, response=bool(pkt.flag("dns.flags.response")), opcode=pkt.int("dns.flags.opcode"),
        rcode=pkt.int("dns.flags.rcode"), aa=bool(pkt.flag("dns.flags.authoritative")),
        tc=bool(pkt.flag("dns.flags.truncated")), rd=bool(pkt.flag("dns.flags.recdesired")),
        ra=bool(pkt.flag("dns.flags.recavail")), question=question, records=_records(pkt),
        n_answers=pkt.int("dns.count.answers", 0) or 0, n_auth=pkt.int("dns.count.auth_rr", 0) or 0,
        n_additional=pkt.int("dns.count.add_rr", 0) or 0)


@dataclass(init=False)
class Txn:
    flow: Flow
    ts: float
    trans_id: int
    query: str | None = None
    qtype: int | None = None
    qclass: int | None = None
    opcode: int | None = None
    flags: list[str] = field(default_factory=list)
    reply_ts: float | None = None
    rcode: int | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)
    rejected: bool = False
    query_seen: bool = True

    def __init__(self, flow: Flow, ts: float, trans_id: int, query: str | None = None, qtype: int | None = None,
                 qclass: int | None = None, opcode: int | None = None, flags: list[str] | None = None,
                 reply_ts: float | None = None, rcode: int | None = None, answers: list[dict[str, Any]] | None = None,
                 rejected: bool = False, query_seen: bool = True) -> None:
        self.flow = flow
        self.ts = ts
        self.trans_id = trans_id
        self.query = query
        self.qtype = qtype
        self.qclass = qclass
        self.opcode = opcode
        self.flags = [] if flags is None else flags
        self.reply_ts = reply_ts
        self.rcode = rcode
        self.answers = [] if answers is None else answers
        self.rejected = rejected
        self.query_seen = query_seen


OPCODE_UPDATE = 5


def reverse(flow: Flow) -> Flow:
    return Flow(flow.transport, flow.resp_h, flow.resp_p, flow.orig_h, flow.orig_p, flow.stream)


class DnsAnalyzer(Analyzer):
    DATASET = "secops.dns"
    SERVICE = "dns"
    LAYERS = frozenset({"dns", "mdns", "llmnr", "nbns"})
    FILTER = "dns or mdns or llmnr or nbns"
    FIELDS = (
        "dns.id", "dns.flags.response", "dns.flags.opcode", "dns.flags.rcode", "dns.flags.authoritative",
        "dns.flags.truncated", "dns.flags.recdesired", "dns.flags.recavail", "dns.qry.name", "dns.qry.type",
        "dns.qry.class", "dns.count.queries", "dns.count.answers", "dns.count.auth_rr", "dns.count.add_rr",
        "dns.count.zones", "dns.count.prerequisites", "dns.count.updates",
        "dns.resp.name", "dns.resp.type", "dns.resp.class", "dns.resp.ttl", "dns.resp.len", *DATA_FIELDS,
        "nbns.id", "nbns.flags.response", "nbns.flags.opcode", "nbns.flags.rcode", "nbns.flags.authoritative",
        "nbns.flags.truncated", "nbns.flags.recdesired", "nbns.flags.recavail", "nbns.count.queries",
        "nbns.count.answers", "nbns.count.auth_rr", "nbns.count.add_rr", "nbns.name", "nbns.type", "nbns.class",
    )

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.flows: dict[tuple[str, str], Flow] = {}
        self.pending: dict[tuple[tuple[str, str], int], deque[Txn]] = defaultdict(deque)
        self.waiting = 0  # the transactions in ``pending``

    def _flow(self, sender: Flow, is_reply: bool) -> Flow:
        """The message's connection oriented like Zeek's, from the flow with its sender as originator."""
        if is_multicast(sender.resp_h):
            return sender  # a message to a group: its sender is the originator (Zeek's connection)
        probe = reverse(sender) if is_reply else sender
        known = self.flows.get(probe.key())
        if known is not None and {(known.orig_h, known.orig_p), (known.resp_h, known.resp_p)} == {
                (probe.orig_h, probe.orig_p), (probe.resp_h, probe.resp_p)}:
            return known
        self.flows[probe.key()] = probe
        return probe

    def handle(self, pkt: Packet) -> Iterable[Written]:
        if "nbns" in pkt.protocols and "dns" not in pkt.protocols:
            yield from self._netbios(pkt)
            return
        msg = message_from_packet(pkt)
        sender = flow_of(pkt, True)
        if msg is not None and sender is not None:
            yield from self.handle_message(msg, sender, pkt.ts)

    def handle_message(self, msg: DnsMessage, sender: Flow, ts: float) -> Iterable[Written]:
        """One message sent by ``sender`` (its flow with the sender as originator) at ``ts``: a query opens a
        transaction, a reply closes the oldest open one of its connection and id (or stands alone)."""
        tid, is_reply, opcode = msg.tid, msg.response, msg.opcode
        flow = self._flow(sender, is_reply)
        unpaired = is_multicast(flow.resp_h)
        key = (flow.key(), tid)
        if not is_reply:
            txn = Txn(flow, ts, tid)
            self._fill_question(txn, msg)
            if msg.rd:
                txn.flags.append("RD")
            if opcode == OPCODE_UPDATE:
                txn.answers = update_entries(msg.records)
            if unpaired:
                yield self.emit(txn)
            else:
                yield from self._wait(key, txn)
            return
        queue = None if unpaired else self.pending.get(key)
        if queue:
            txn = queue.popleft()
            self.waiting -= 1
            if not queue:
                del self.pending[key]
        else:
            txn = Txn(flow, ts, tid, query_seen=False)
            self._fill_question(txn, msg)
            if msg.rd:
                txn.flags.append("RD")
        if txn.query is None:
            self._fill_question(txn, msg)
        txn.reply_ts = ts
        txn.rcode = msg.rcode
        for flag, name in ((msg.aa, "AA"), (msg.tc, "TC"), (msg.ra, "RA")):
            if flag:
                txn.flags.append(name)
        records = msg.records
        if opcode == OPCODE_UPDATE:
            txn.answers = txn.answers or update_entries(records)
        else:
            txn.answers = _answers(records)
        if txn.query is None:  # Zeek: a reply without a question is about its first answer's name
            first = next((r for r in records if r.section == 0), None)
            txn.query = first.name if first is not None else None
        txn.rejected = bool(txn.rcode) or not (msg.n_answers or msg.n_auth or msg.n_additional)
        yield self.emit(txn)

    def _netbios(self, pkt: Packet) -> Iterable[Written]:
        """NetBIOS name service (udp/137), logged in dns.log as Zeek does: the decoded name as query,
        NBSTAT for type 33, no answer data (Zeek's analyzer does not render NB records)."""
        tid = pkt.int("nbns.id")
        sender = flow_of(pkt, True)
        if tid is None or sender is None:
            return
        is_reply = bool(pkt.flag("nbns.flags.response"))
        flow = self._flow(sender, is_reply)
        n_questions = pkt.int("nbns.count.queries", 0) or 0
        names, types, classes = pkt.values("nbns.name"), pkt.values("nbns.type"), pkt.values("nbns.class")
        key = (flow.key(), tid)
        queue = None if not is_reply or flow.resp_p != NETBIOS_PORT else self.pending.get(key)
        if not is_reply or not queue:
            txn = Txn(flow, pkt.ts, tid, query_seen=not is_reply, opcode=pkt.int("nbns.flags.opcode"))
            if n_questions and names:
                txn.query = netbios_name(names[0])
                txn.qtype = to_int(types[0]) if types else None
                txn.qclass = to_int(classes[0]) if classes else None
            if pkt.flag("nbns.flags.recdesired"):
                txn.flags.append("RD")
        else:
            txn = queue.popleft()
            self.waiting -= 1
            if not queue:
                del self.pending[key]
        if not is_reply:
            yield from self._wait(key, txn)
            return
        txn.reply_ts = pkt.ts
        txn.rcode = pkt.int("nbns.flags.rcode")
        if pkt.flag("nbns.flags.authoritative"):
            txn.flags.append("AA")
        if pkt.flag("nbns.flags.recavail"):
            txn.flags.append("RA")
        if txn.query is None and len(names) > n_questions:
            txn.query = netbios_name(names[n_questions])
        yield self.emit(txn)

    @staticmethod
    def _fill_question(txn: Txn, msg: DnsMessage) -> None:
        txn.opcode = msg.opcode
        if txn.opcode == OPCODE_UPDATE:
            return  # the zone section is not a question: Zeek logs the first record's name, no qtype
        if msg.question is not None:
            txn.query = _name(msg.question.name)  # Zeek logs names lower-cased
            txn.qtype = msg.question.qtype
            txn.qclass = msg.question.qclass

    def emit(self, txn: Txn) -> Written:
        if txn.opcode == OPCODE_UPDATE and txn.query is None and txn.answers:
            txn.query = txn.answers[0]["name"]
        qtype = qtype_name(txn.qtype)
        if qtype == "SRV" and txn.flow.resp_p == NETBIOS_PORT:
            qtype = "NBSTAT"
        fields: dict[str, Any] = {
            "dns.id": txn.trans_id,
            "dns.type": "answer" if txn.reply_ts is not None else "query",
            "dns.op_code": OPCODES.get(txn.opcode, str(txn.opcode)) if txn.opcode is not None else None,
            "dns.header_flags": sorted(set(txn.flags)),
            "dns.question.name": txn.query,
            "dns.question.type": qtype,
            "dns.question.class": CLASSES.get(txn.qclass, str(txn.qclass)) if txn.qclass is not None else None,
            "secops.dns.qtype": txn.qtype,
        }
        if txn.query:
            longest, entropy = label_stats(txn.query)
            fields["secops.dns.label_max_len"] = longest
            fields["secops.dns.label_entropy"] = entropy
        if txn.reply_ts is not None or txn.answers:
            fields.update({
                "dns.answers": txn.answers,
                "dns.resolved_ip": [a["data"] for a in txn.answers if a.get("type") in ("A", "AAAA") and "data" in a],
            })
        if txn.reply_ts is not None:
            fields.update({
                "dns.response_code": RCODES.get(txn.rcode, str(txn.rcode)) if txn.rcode is not None else None,
                "secops.dns.rcode": txn.rcode,
                "secops.dns.rejected": txn.rejected,
            })
            if txn.query_seen:
                fields["secops.dns.rtt"] = round(txn.reply_ts - txn.ts, 6)
        return self.document(txn.flow, txn.ts, ("dns", txn.trans_id, txn.reply_ts), fields, self.SERVICE)

    def _wait(self, key: tuple[tuple[str, str], int], txn: Txn) -> Iterable[Written]:
        """A query waits for its reply; past MAX_OPEN_QUERIES the oldest connection's queries are logged."""
        self.pending[key].append(txn)
        self.waiting += 1
        while self.waiting > MAX_OPEN_QUERIES and self.pending:
            oldest = self.pending.pop(next(iter(self.pending)))
            self.waiting -= len(oldest)
            for old in sorted(oldest, key=lambda t: t.ts):
                yield self.emit(old)

    def expire(self, now: float) -> Iterable[Written]:
        """Queries unanswered for longer than Zeek's UDP inactivity timeout are logged without reply."""
        old = [key for key, q in self.pending.items() if q[-1].ts < now - QUERY_TIMEOUT]
        self.waiting -= sum(len(self.pending[key]) for key in old)
        rest = sorted((t for key in old for t in self.pending.pop(key)), key=lambda t: t.ts)
        for txn in rest:
            yield self.emit(txn)
        if len(self.flows) > MAX_FLOWS:
            self.flows.clear()  # orientation memo only; open transactions keep their own flow

    def finish(self) -> Iterable[Written]:
        rest = sorted((t for q in self.pending.values() for t in q), key=lambda t: t.ts)
        self.pending.clear()
        self.waiting = 0
        for txn in rest:
            yield self.emit(txn)
        self.report_cuts()
