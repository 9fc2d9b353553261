"""DNS: one record per query/response transaction, as Zeek's dns.log.

A query opens a transaction (per connection and transaction id, first in first out); the reply
closes it (answers, TTLs, rcode, rtt). Replies without a query are logged on their own, queries
that never got a reply are logged when the capture ends.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collectors.protocols.base import Analyzer, Doc, Flow, RunContext, Warn, flow_of, make_doc
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
# answer type -> tshark field holding its data (one occurrence per record)
DATA_FIELD = {1: "dns.a", 28: "dns.aaaa", 5: "dns.cname", 2: "dns.ns", 12: "dns.ptr.domain_name",
              15: "dns.mx.mail_exchange", 6: "dns.soa.mname", 33: "dns.srv.target", 39: "dns.dname"}
TXT_TYPES = {16: "dns.txt", 99: "dns.spf"}


QUERY_TIMEOUT = 60.0  # seconds: Zeek's udp_inactivity_timeout ends the "connection" a query belongs to
MAX_FLOWS = 100_000


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


@dataclass
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


def _answers(pkt: Packet) -> list[dict[str, Any]]:
    """Answer-section records; data comes from per-type field queues consumed in record order."""
    count = pkt.int("dns.count.answers", 0) or 0
    types = [to_int(t) for t in pkt.values("dns.resp.type")]
    ttls, names, lens = pkt.values("dns.resp.ttl"), pkt.values("dns.resp.name"), pkt.values("dns.resp.len")
    cursor: dict[str, int] = defaultdict(int)
    txt_lens = {f: pkt.values(f + ".length") for f in TXT_TYPES.values()}
    out = []
    for i, rtype in enumerate(types):
        if rtype is None:
            continue
        data: str | None = None
        if rtype in DATA_FIELD:
            fname = DATA_FIELD[rtype]
            vals = pkt.values(fname)
            if cursor[fname] < len(vals):
                data = vals[cursor[fname]]
            cursor[fname] += 1
        elif rtype in TXT_TYPES:
            fname = TXT_TYPES[rtype]
            vals, sizes = pkt.values(fname), txt_lens[fname]
            rdlen = to_int(lens[i] if i < len(lens) else None, 0) or 0
            parts, used = [], 0
            while used < rdlen and cursor[fname] < len(vals):
                j = cursor[fname]
                size = to_int(sizes[j] if j < len(sizes) else None, len(vals[j])) or 0
                parts.append(f"TXT {size} {vals[j]}")
                used += size + 1
                cursor[fname] += 1
            data = " ".join(parts)
        if i >= count:
            continue  # authority / additional sections: keep consuming queues, do not log
        ans: dict[str, Any] = {"type": QTYPES.get(rtype, str(rtype))}
        if i < len(names):
            ans["name"] = names[i]
        if i < len(ttls):
            ans["ttl"] = to_int(ttls[i])
        if data is not None:
            ans["data"] = data
        out.append(ans)
    return out


class DnsAnalyzer(Analyzer):
    DATASET = "secops.dns"
    SERVICE = "dns"
    LAYERS = frozenset({"dns", "mdns", "llmnr"})
    FILTER = "dns or mdns or llmnr"
    FIELDS = (
        "dns.id", "dns.flags.response", "dns.flags.opcode", "dns.flags.rcode", "dns.flags.authoritative",
        "dns.flags.truncated", "dns.flags.recdesired", "dns.flags.recavail", "dns.qry.name", "dns.qry.type",
        "dns.qry.class", "dns.count.queries", "dns.count.answers", "dns.count.auth_rr", "dns.count.add_rr",
        "dns.resp.name", "dns.resp.type", "dns.resp.ttl", "dns.resp.len",
        *DATA_FIELD.values(), *TXT_TYPES.values(), *(f + ".length" for f in TXT_TYPES.values()),
    )

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.flows: dict[tuple[str, str], Flow] = {}
        self.pending: dict[tuple[tuple[str, str], int], deque[Txn]] = defaultdict(deque)

    def _flow(self, pkt: Packet, is_reply: bool) -> Flow | None:
        probe = flow_of(pkt, not is_reply)
        if probe is None:
            return None
        known = self.flows.get(probe.key())
        if known is not None and {(known.orig_h, known.orig_p), (known.resp_h, known.resp_p)} == {
                (probe.orig_h, probe.orig_p), (probe.resp_h, probe.resp_p)}:
            return known
        self.flows[probe.key()] = probe
        return probe

    def handle(self, pkt: Packet) -> Iterable[Doc]:
        tid = pkt.int("dns.id")
        if tid is None:
            return
        is_reply = bool(pkt.flag("dns.flags.response"))
        flow = self._flow(pkt, is_reply)
        if flow is None:
            return
        key = (flow.key(), tid)
        if not is_reply:
            txn = Txn(flow, pkt.ts, tid)
            self._fill_question(txn, pkt)
            if pkt.flag("dns.flags.recdesired"):
                txn.flags.append("RD")
            self.pending[key].append(txn)
            return
        queue = self.pending.get(key)
        if queue:
            txn = queue.popleft()
            if not queue:
                del self.pending[key]
        else:
            txn = Txn(flow, pkt.ts, tid, query_seen=False)
            self._fill_question(txn, pkt)
            if pkt.flag("dns.flags.recdesired"):
                txn.flags.append("RD")
        if txn.query is None:
            self._fill_question(txn, pkt)
        txn.reply_ts = pkt.ts
        txn.rcode = pkt.int("dns.flags.rcode")
        for flag, name in (("dns.flags.authoritative", "AA"), ("dns.flags.truncated", "TC"),
                           ("dns.flags.recavail", "RA")):
            if pkt.flag(flag):
                txn.flags.append(name)
        txn.answers = _answers(pkt)
        counts = [pkt.int(f, 0) for f in ("dns.count.answers", "dns.count.auth_rr", "dns.count.add_rr")]
        txn.rejected = bool(txn.rcode) or not any(counts)
        yield self.emit(txn)

    @staticmethod
    def _fill_question(txn: Txn, pkt: Packet) -> None:
        name = pkt.first("dns.qry.name")
        if name is not None:
            txn.query = "" if name == "<Root>" else name.lower()  # Zeek logs names lower-cased
            txn.qtype = pkt.int("dns.qry.type")
            txn.qclass = pkt.int("dns.qry.class")
        txn.opcode = pkt.int("dns.flags.opcode")

    def emit(self, txn: Txn) -> Doc:
        fields: dict[str, Any] = {
            "dns.id": txn.trans_id,
            "dns.type": "answer" if txn.reply_ts is not None else "query",
            "dns.op_code": OPCODES.get(txn.opcode, str(txn.opcode)) if txn.opcode is not None else None,
            "dns.header_flags": sorted(set(txn.flags)),
            "dns.question.name": txn.query,
            "dns.question.type": qtype_name(txn.qtype),
            "dns.question.class": CLASSES.get(txn.qclass, str(txn.qclass)) if txn.qclass is not None else None,
            "secops.dns.qtype": txn.qtype,
        }
        if txn.query:
            longest, entropy = label_stats(txn.query)
            fields["secops.dns.label_max_len"] = longest
            fields["secops.dns.label_entropy"] = entropy
        if txn.reply_ts is not None:
            fields.update({
                "dns.response_code": RCODES.get(txn.rcode, str(txn.rcode)) if txn.rcode is not None else None,
                "secops.dns.rcode": txn.rcode,
                "dns.answers": txn.answers,
                "dns.resolved_ip": [a["data"] for a in txn.answers if a.get("type") in ("A", "AAAA") and "data" in a],
                "secops.dns.rejected": txn.rejected,
            })
            if txn.query_seen:
                fields["secops.dns.rtt"] = round(txn.reply_ts - txn.ts, 6)
        return make_doc(self.DATASET, txn.flow, txn.ts, ("dns", txn.trans_id, txn.reply_ts), fields, self.SERVICE)

    def expire(self, now: float) -> Iterable[Doc]:
        """Queries unanswered for longer than Zeek's UDP inactivity timeout are logged without reply."""
        old = [key for key, q in self.pending.items() if q[-1].ts < now - QUERY_TIMEOUT]
        rest = sorted((t for key in old for t in self.pending.pop(key)), key=lambda t: t.ts)
        for txn in rest:
            yield self.emit(txn)
        if len(self.flows) > MAX_FLOWS:
            self.flows.clear()  # orientation memo only; open transactions keep their own flow

    def finish(self) -> Iterable[Doc]:
        rest = sorted((t for q in self.pending.values() for t in q), key=lambda t: t.ts)
        self.pending.clear()
        for txn in rest:
            yield self.emit(txn)
