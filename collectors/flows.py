"""Flow table with Zeek conn.log semantics.

Follows Zeek's TCP session adapter closely (endpoint states INACTIVE/SYN_SENT/SYN_ACK_SENT/PARTIAL/
ESTABLISHED/CLOSED/RESET, sequence-number based payload sizes, the history alphabet with scaled repeats,
retransmission and gap detection, flips by likely server ports or on an ACK after a first SYN-ACK) and its timers
(attempt 5 s, close/reset delay 5 s, TCP inactivity 5 min, UDP/ICMP 1 min), so the
records read like conn.log. Memory is bounded by ``max_flows``: the oldest flow is
evicted (and emitted) when the table is full, counted in ``evicted``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from collectors.community_id import community_id
from collectors.decode import ACK, BUF, CAPLEN, DST, FLAGS, IPLEN, L4OFF, MAC, ONEWAY, PLEN, PROTO, SEQ, TUNNEL
from collectors.flowconst import (
    ATTEMPT_DELAY,
    CLOSE_DELAY,
    CLOSED,
    ESTABLISHED,
    F_ACK,
    F_FIN,
    F_RST,
    F_SYN,
    HISTORY_MAX,
    ICMP,
    ICMP6,
    ICMP_INACTIVITY,
    INACTIVE,
    PARTIAL,
    REPROBES,
    RESET,
    RESET_DELAY,
    SWEEP_EVERY,
    SYN_ACK_SENT,
    SYN_SENT,
    TCP,
    TCP_INACTIVITY,
    TOO_LARGE_SEQ_DELTA,
    UDP,
    UDP_INACTIVITY,
)
from collectors.selection import DEEP_BYTES_PER_DIRECTION, FrameSelection

IPV4_BROADCAST = b"\xff\xff\xff\xff"
PROBE_BYTES = 512  # payload bytes handed to the protocol probe (collectors.protocols.detect, the C core alike)
PROBE_MIN = 8  # shorter first payloads are kept and probed again together with what follows
Probe = Callable[[int, bool, bytes, int], tuple[int, int]]  # (proto, from_orig, payload, length) -> (service, sel)

# Zeek's likely_server_ports with the default analyzers loaded (ports the analyzers register).
LIKELY_SERVER_PORTS = {
    TCP: frozenset({21, 22, 23, 25, 53, 80, 81, 88, 102, 110, 111, 135, 139, 143, 179, 389, 443, 445, 502, 512,
                    513, 514, 563, 585, 587, 614, 631, 636, 989, 990, 992, 993, 994, 995, 1080, 1433, 1723, 1883,
                    2049, 2404, 2811, 3128, 3268, 3306, 3389, 5060, 5222, 5223, 5269, 5432, 5900, 6379, 6666, 6667,
                    6668, 6669, 8000, 8080, 8443, 8883, 8888, 20000, 44818}),
    UDP: frozenset({53, 67, 69, 88, 111, 123, 137, 138, 161, 162, 443, 500, 514, 1812, 1813, 2123, 2152, 3544,
                    3478, 4500, 4789, 5060, 5072, 5353, 5355, 6081, 20000, 47808}),
}


class ConnRecord(NamedTuple):
    """A finished connection, as both flow-table cores (this module and ``collectors._flowcore``) emit it."""

    proto: int
    o_ip: bytes
    o_port: int
    r_ip: bytes
    r_port: int
    one_way: bool
    start: int  # ns
    last: int  # ns
    o_pkts: int
    o_bytes: int  # IP bytes
    r_pkts: int
    r_bytes: int
    orig_bytes: int  # payload bytes (TCP: by sequence numbers)
    resp_bytes: int
    state: str  # Zeek conn_state
    history: str
    missed: int
    tunnel: str
    o_mac: bytes | None
    r_mac: bytes | None
    answered: bool  # the responder answered (TCP: SYN-ACK seen; UDP: a packet back): a service is there
    community_id: str
    service: str = ""  # detected from the payload (collectors.protocols.detect), "" when nothing matched
    deep_cut: int = 0  # TCP payload bytes kept from the deep path: a direction went over its byte cap


def seq_delta(a: int, b: int) -> int:
    """Signed 32-bit difference a - b (sequence space)."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d & 0x80000000 else d


class Endpoint:
    """One side of a TCP connection; sequence numbers are kept unwrapped (64-bit) relative to nothing."""

    __slots__ = ("ack_seq", "did_close", "fin_cnt", "fin_rel", "gap_cnt", "gap_thresh", "hist_last_fin",
                 "hist_last_rst",
                 "hist_last_syn", "last_seq", "prev_state", "rx_end", "rxmt_cnt", "rxmt_thresh", "start_seq",
                 "state")

    def __init__(self) -> None:
        self.state = self.prev_state = INACTIVE
        self.start_seq = self.last_seq = self.ack_seq = 0  # unwrapped
        self.fin_cnt = 0
        self.did_close = False
        self.hist_last_syn = self.hist_last_fin = self.hist_last_rst = -1
        self.rxmt_cnt = self.gap_cnt = 0
        self.rxmt_thresh = self.gap_thresh = 1
        self.rx_end = 1  # end of contiguous data delivered, relative seq (for gaps / missed bytes)
        self.fin_rel = 0

    def set_state(self, s: int) -> None:
        if s != self.state:
            self.prev_state = self.state
            self.state = s

    def init_seqs(self, seq: int, last: int) -> None:
        self.start_seq = seq
        self.ack_seq = seq
        self.last_seq = seq + seq_delta(last, seq)

    def unwrap(self, seq32: int, ref: int) -> int:
        """Map a 32-bit sequence number to the unwrapped value nearest to ``ref``."""
        return ref + seq_delta(seq32, ref & 0xFFFFFFFF)

    def size(self, peer: Endpoint) -> int:
        if self.prev_state == SYN_SENT and self.state == RESET and peer.state == INACTIVE and \
                self.ack_seq != self.start_seq:
            return 0
        size = max(self.last_seq, self.ack_seq) - self.start_seq
        if size < 0:
            return 0
        if size:
            size -= 1
        if self.fin_cnt and size:
            size -= 1
        return size


class Flow:
    """One connection. ``o``/``r`` are the TCP endpoints (orig/resp); other protocols use the counters only."""

    __slots__ = (
        "bad_sums",
        "bad_thresh",
        "deep",
        "deep_cut",
        "expire",
        "hist",
        "hist_seen",
        "key",
        "last",
        "missed",
        "o",
        "o_bytes",
        "o_ip",
        "o_mac",
        "o_pkts",
        "o_port",
        "o_size",
        "one_way",
        "pre",
        "probed",
        "proto",
        "r",
        "r_bytes",
        "r_ip",
        "r_mac",
        "r_pkts",
        "r_port",
        "r_size",
        "reprobes",
        "sel",
        "start",
        "svc",
        "svc2",
        "syn",
        "syn_frames",
        "synack_first",
        "tunnel",
    )

    def __init__(self, key: tuple, proto: int, src: bytes, sport: int, dst: bytes, dport: int, ts: int,
                 one_way: bool, tunnel: str) -> None:
        self.key = key
        self.proto = proto
        self.o_ip, self.o_port, self.r_ip, self.r_port = src, sport, dst, dport
        self.start = self.last = ts
        self.o_pkts = self.o_bytes = self.r_pkts = self.r_bytes = 0
        self.o_size = self.r_size = -1  # payload bytes for UDP/ICMP (-1: endpoint never active)
        self.hist: list[str] = []
        self.hist_seen: set[str] = set()
        self.missed = 0
        self.one_way = one_way
        self.tunnel = tunnel
        self.expire = ts
        self.o = self.r = None
        self.o_mac = self.r_mac = None
        self.bad_sums = [0, 0]  # per direction, scaled history letters C/c
        self.bad_thresh = [1, 1]
        self.synack_first = False  # began with a SYN-ACK from the originator: the next packet may flip it
        self.svc = 0  # detected service (index into the probe's service names), 0 = none yet
        self.svc2 = 0  # the service it upgraded to (STARTTLS: ssl), 0 = none
        self.reprobes = 0  # later payloads still probed for that upgrade
        self.probed = 0  # 1: the originator's first payload was probed, 2: the responder's
        self.sel = 0  # payload packets still selected for the deep path: -1 all, 0 none
        self.pre: list[bytes] | None = None  # per side: short first payloads not matched yet
        self.syn: list[bytes] | None = None  # SYN / SYN-ACK frames kept until detection decides
        self.syn_frames = 0
        self.deep = [0, 0]  # per side (orig, resp): TCP payload bytes selected so far (collectors.selection)
        self.deep_cut = 0

    # -- history helpers (Connection::CheckHistory / AddHistory / ScaledHistoryEntry) -------------------
    def check_history(self, mask: str, code: str) -> bool:
        """Add ``code`` the first time ``mask`` is seen; True if it had been seen before."""
        if mask in self.hist_seen:
            return True
        self.hist_seen.add(mask)
        self.add_history(code)
        return False

    def add_history(self, code: str) -> None:
        if len(self.hist) < HISTORY_MAX:
            self.hist.append(code)

    def flip(self, *, from_start: bool = False) -> None:
        """Swap originator and responder; ``from_start``: as if it had been flipped before the first packet."""
        self.o_ip, self.r_ip = self.r_ip, self.o_ip
        self.o_port, self.r_port = self.r_port, self.o_port
        self.o_pkts, self.r_pkts = self.r_pkts, self.o_pkts
        self.o_bytes, self.r_bytes = self.r_bytes, self.o_bytes
        self.o_size, self.r_size = self.r_size, self.o_size
        self.o_mac, self.r_mac = self.r_mac, self.o_mac
        self.bad_sums.reverse()
        self.bad_thresh.reverse()
        self.deep.reverse()
        self.hist = [c.swapcase() for c in self.hist]
        self.hist_seen = {m.swapcase() for m in self.hist_seen}
        if from_start:
            self.hist.insert(0, "^")
            del self.hist[HISTORY_MAX:]
        else:
            self.add_history("^")
        if self.o is not None:
            self.o, self.r = self.r, self.o

    # -- results ---------------------------------------------------------------------------------
    def record(self, services: tuple[str, ...] = ("",)) -> ConnRecord:
        history = "".join(self.hist)
        orig_bytes, resp_bytes = self.payload_sizes()
        answered = (self.proto == TCP and self.r.state != INACTIVE and "h" in history) or \
                   (self.proto == UDP and self.r_pkts > 0)
        return ConnRecord(self.proto, self.o_ip, self.o_port, self.r_ip, self.r_port, self.one_way, self.start,
                          self.last, self.o_pkts, self.o_bytes, self.r_pkts, self.r_bytes, orig_bytes, resp_bytes,
                          self.state(history), history, self.missed, self.tunnel, self.o_mac, self.r_mac, answered,
                          community_id(self.proto, self.o_ip, self.r_ip, self.o_port, self.r_port,
                                       one_way=self.one_way),
                          services[self.svc] + (f",{services[self.svc2]}" if self.svc2 else ""), self.deep_cut)

    def payload_sizes(self) -> tuple[int, int]:
        if self.proto == TCP:
            return self.o.size(self.r), self.r.size(self.o)
        return max(self.o_size, 0), max(self.r_size, 0)

    def state(self, history: str) -> str:
        if self.proto == TCP:
            return tcp_conn_state(self.o.state, self.r.state, self.payload_sizes(), history)
        if self.proto == UDP:
            if self.o_size >= 0:
                return "SF" if self.r_size >= 0 else "S0"
            return "SHR" if self.r_size >= 0 else "OTH"
        return "OTH"


def tcp_conn_state(os: int, rs: int, sizes: tuple[int, int], history: str) -> str:
    """Zeek's conn_state() for TCP (base/protocols/conn/main.zeek)."""
    o_inactive = os in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os in (SYN_SENT, SYN_ACK_SENT) or (os == RESET and sizes == (0, 0)):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os == RESET:
        if r_inactive:
            h = history[1:] if history.startswith("^") else history
            if h.startswith("S"):
                i = 1
                while i < len(h) and h[i] not in "HAFGIQR":
                    i += 1
                if i < len(h) and h[i] == "R":
                    return "RSTOS0"
            return "OTH"
        return "RSTO"
    if rs == CLOSED and os == CLOSED:
        return "SF"
    if os == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


class FlowTable:
    """Feed decoded packets with :meth:`add`; finished flows go to ``emit`` as :class:`ConnRecord`.

    The reference implementation: ``collectors._flowcore`` is its C port for the hot path, and
    tests/unit/test_flowcore.py holds the two to identical output."""

    def __init__(self, emit: Callable[[ConnRecord], None], max_flows: int = 500_000,
                 likely_server_ports: dict[int, frozenset[int]] | None = None, probe: Probe | None = None,
                 services: tuple[str, ...] = ("",), selection: FrameSelection | None = None,
                 deep_bytes_max: int = DEEP_BYTES_PER_DIRECTION, upgrades: tuple[int, ...] | None = None) -> None:
        if not 1 <= deep_bytes_max <= 0xFFFFFFFF:  # the C core's bound on lengths
            raise ValueError("deep_bytes_max must be at least 1")
        if upgrades is not None and (len(upgrades) != len(services) or
                                     not all(0 <= to < len(services) for to in upgrades)):
            raise ValueError("upgrades must name services by index, one per service")
        self.upgrades = upgrades or (0,) * len(services)  # per service: the service it may upgrade to, 0 none
        self.flows: dict[tuple, Flow] = {}
        self.services = services
        self.probe = probe
        self.probes = 0
        self.deep_bytes_max = deep_bytes_max
        self.deep_cut_bytes = self.deep_cut_sides = 0  # payload bytes / flow directions over the cap
        self.selection = selection  # where kept SYN frames go when their flow is selected
        self.frame: tuple | None = None  # (linktype, ts, buf, offset, caplen, wirelen) of the frame being added
        self._emit = emit
        self.max_flows = max_flows
        self.evicted = 0
        self.next_sweep = 0
        self.lsp = likely_server_ports or LIKELY_SERVER_PORTS

    def _done(self, f: Flow) -> None:
        self._emit(f.record(self.services))

    # -- packet entry point ------------------------------------------------------------------------
    def add(self, p: tuple, ts: int) -> bool:
        """Track one decoded packet; True when the deep path selected it (see :meth:`_select`)."""
        src, dst, proto, sport, dport, _iplen, flags, _seq, _ack, length, one_way, _, _, _, _caplen, _mac, bad = p
        if proto != TCP and proto != UDP and proto != ICMP and proto != ICMP6:
            sport = dport = 0
        if one_way:
            key = (proto, src, sport, dst, dport, 1)
        elif src < dst or (src == dst and sport <= dport):
            key = (proto, src, sport, dst, dport)
        else:
            key = (proto, dst, dport, src, sport)
        flows = self.flows
        f = flows.get(key)
        if f is not None and (ts > f.expire or (proto == TCP and flags & F_SYN and self._is_reuse(f, p))):
            del flows[key]
            self._done(f)
            f = None
        if f is None:
            if len(flows) >= self.max_flows:
                self._evict()
            f = self._new(key, p, proto, src, sport, dst, dport, ts)
            flows[key] = f
        elif f.synack_first:
            # Zeek flips a connection that began with a SYN-ACK when the next packet is an ACK or data, not a
            # RST (a stealth scan's answer): the SYN-ACK's receiver is the client
            f.synack_first = False
            if not bad and (flags & F_ACK or length) and not flags & F_RST:
                f.flip(from_start=True)
                f.r.state = ESTABLISHED  # the SYN-ACK came from the responder (TCPSessionAdapter)
        is_orig = sport == f.o_port and src == f.o_ip
        if bad:  # Zeek: the connection exists, the packet is not counted, history shows C/c
            side = 0 if is_orig else 1
            f.bad_sums[side] += 1
            if f.bad_sums[side] == f.bad_thresh[side]:
                f.add_history("C" if is_orig else "c")
                f.bad_thresh[side] *= 10
            f.expire = max(f.expire, ts + (TCP_INACTIVITY if proto == TCP else UDP_INACTIVITY))
        elif proto == TCP:
            self._tcp(f, p, is_orig, ts)
        else:
            self._other(f, p, is_orig, ts)
        selected = self.probe is not None and not bad and proto in (TCP, UDP) and \
            self._select(f, p, is_orig)
        if ts >= self.next_sweep:
            self.sweep(ts)
        return selected

    def _select(self, f: Flow, p: tuple, is_orig: bool) -> bool:
        """Probe the first payload of each direction once (protocol detection on any port); once a service
        is detected, count down the payload packets its analyzers need (-1: all of them)."""
        proto, plen, buf, l4 = p[PROTO], p[PLEN], p[BUF], p[L4OFF]
        if not f.svc and proto == TCP and p[FLAGS] & F_SYN and plen <= 0 and self.selection is not None and \
                self.frame is not None and f.syn_frames < 2 and f.o_port < f.r_port:
            # tshark tries the lower port's dissector first unless the handshake names the server
            linktype, ts, fbuf, off, caplen, wirelen = self.frame
            block = self.selection.block(linktype, ts, fbuf[off:off + caplen], wirelen)
            if block is not None:
                f.syn = [*(f.syn or ()), block]
                f.syn_frames += 1
            return False
        if proto == TCP:
            start = l4 + (buf[l4 + 12] >> 4) * 4 if l4 + 20 <= len(buf) else len(buf)
            cap = p[CAPLEN]
        else:
            start, cap = l4 + 8, p[CAPLEN] - 8
        cap = min(cap, plen, len(buf) - start)
        if plen <= 0 or cap <= 0:
            return False
        if not f.svc:
            bit = 1 if is_orig else 2
            if f.probed & bit:
                return False
            self.probes += 1
            pre = f.pre[0 if is_orig else 1] if f.pre else b""
            data = (pre + bytes(buf[start:start + min(cap, PROBE_BYTES)]))[:PROBE_BYTES]
            svc, sel = self.probe(proto, is_orig, data, plen + len(pre))
            if not 0 <= svc < len(self.services) or sel < -1:
                raise ValueError("probe must return (service index, selection)")
            if not svc:
                if len(data) < PROBE_MIN and cap == plen:  # short and whole: probe again with what follows,
                    f.pre = f.pre or [b"", b""]  # and keep its frame in case the flow is detected then
                    f.pre[0 if is_orig else 1] = data
                    return self._within_cap(f, proto, is_orig, plen)
                f.probed |= bit
                if f.probed == 3:
                    self._release_syn(f, False)
                return False
            f.probed |= bit
            f.svc, f.sel = svc, sel
            f.reprobes = REPROBES if self.upgrades[svc] else 0
            self._release_syn(f, sel != 0)
        elif f.reprobes > 0:  # STARTTLS and the like: does a later payload open the upgraded protocol?
            f.reprobes -= 1
            svc, sel = self.probe(proto, is_orig, bytes(buf[start:start + min(cap, PROBE_BYTES)]), plen)
            if not 0 <= svc < len(self.services) or sel < -1:
                raise ValueError("probe must return (service index, selection)")
            if svc == self.upgrades[f.svc]:
                f.svc2, f.reprobes = svc, 0
                if f.sel != -1 and (sel == -1 or sel > f.sel):
                    f.sel = sel
        if not f.sel or not self._within_cap(f, proto, is_orig, plen):
            return False
        if f.sel > 0:
            f.sel -= 1
        return True

    def _within_cap(self, f: Flow, proto: int, is_orig: bool, plen: int) -> bool:
        """A TCP direction hands the deep path at most ``deep_bytes_max`` payload bytes: tshark's reassembly of
        one endless message (a 10 MB header line) costs time quadratic in its length. The first packet that does
        not fit cuts the direction for good (tshark would only see a gap); every byte cut is counted. Datagrams
        are dissected one by one, at linear cost: they are not capped."""
        if proto != TCP:
            return True
        side = 0 if is_orig else 1
        used = f.deep[side]
        if used + plen <= self.deep_bytes_max:
            f.deep[side] = used + plen
            return True
        if used <= self.deep_bytes_max:  # the first cut of this direction (above the cap: cut before)
            f.deep[side] = self.deep_bytes_max + 1
            self.deep_cut_sides += 1
        f.deep_cut += plen
        self.deep_cut_bytes += plen
        return False

    def _release_syn(self, f: Flow, keep: bool) -> None:
        """Detection decided: the kept handshake frames go first if the flow is selected, else they are dropped."""
        if keep and f.syn and self.selection is not None:
            self.selection.add_blocks(f.syn)
        f.syn, f.syn_frames = None, 2

    def _new(self, key, p, proto, src, sport, dst, dport, ts) -> Flow:
        """Zeek's NewConn: the first packet's sender is the originator unless the ports say otherwise
        (WantConnection), never towards the IPv4 broadcast address."""
        f = Flow(key, proto, src, sport, dst, dport, ts, p[ONEWAY], p[TUNNEL])
        flip = False
        if proto == TCP:
            f.o, f.r = Endpoint(), Endpoint()
            flags = p[FLAGS]
            if not (flags & F_SYN) or (flags & F_ACK):  # a partial connection: guess the server by its port
                lsp = self.lsp[TCP]
                if sport in lsp:
                    flip = dport not in lsp or (not flags & F_SYN and sport < dport)
                f.synack_first = not flip and flags & (F_SYN | F_ACK | F_RST) == F_SYN | F_ACK and not p[-1]
        elif proto == UDP:
            lsp = self.lsp[UDP]
            flip = sport in lsp and dport not in lsp
        if flip and p[DST] != IPV4_BROADCAST:
            f.flip()
        return f

    def _is_reuse(self, f: Flow, p: tuple) -> bool:
        """A SYN that starts a new connection on this tuple (Zeek's TCPSessionAdapter::IsReuse): any SYN once
        either side closed, else a SYN whose sequence number is not the originator's initial one."""
        flags = p[FLAGS]
        o, r = f.o, f.r
        ep = o
        if flags & F_ACK:
            if o.state != INACTIVE:
                return False  # a SYN-ACK only starts a new connection where the originator never spoke
            ep = r
        if o.did_close or r.did_close:
            return True
        seq = p[SEQ] & 0xFFFFFFFF
        if seq == ep.start_seq & 0xFFFFFFFF:
            return False
        # a SYN answering an earlier SYN-ACK (the two swapped in the capture) is the handshake, not a reuse
        return flags & F_ACK or ep.state != SYN_ACK_SENT or r.state != INACTIVE or seq != r.start_seq & 0xFFFFFFFF

    # -- non-TCP -----------------------------------------------------------------------------------
    def _other(self, f: Flow, p: tuple, is_orig: bool, ts: int) -> None:
        proto = f.proto
        plen = p[PLEN]
        if is_orig:
            f.o_pkts += 1
            f.o_bytes += p[IPLEN]
            f.o_size = plen if f.o_size < 0 else f.o_size + plen
            if f.o_mac is None:
                f.o_mac = p[MAC]
            if proto == UDP:
                f.check_history("D", "D")
        else:
            f.r_pkts += 1
            f.r_bytes += p[IPLEN]
            f.r_size = plen if f.r_size < 0 else f.r_size + plen
            if f.r_mac is None:
                f.r_mac = p[MAC]
            if proto == UDP:
                f.check_history("d", "d")
        f.last = ts
        f.expire = ts + (UDP_INACTIVITY if proto == UDP else ICMP_INACTIVITY)

    # -- TCP (TCPSessionAdapter::Process) --------------------------------------------------------------
    def _tcp(self, f: Flow, p: tuple, is_orig: bool, ts: int) -> None:
        flags, seq, ack, length = p[FLAGS], p[SEQ], p[ACK], p[PLEN]
        syn, fin, rst, ackf = flags & F_SYN, flags & F_FIN, flags & F_RST, flags & F_ACK
        if is_orig:
            ep, peer = f.o, f.r
            f.o_pkts += 1
            f.o_bytes += p[IPLEN]
            if f.o_mac is None:
                f.o_mac = p[MAC]
        else:
            ep, peer = f.r, f.o
            f.r_pkts += 1
            f.r_bytes += p[IPLEN]
            if f.r_mac is None:
                f.r_mac = p[MAC]

        seg_len = length + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= length
        # init_endpoint
        st = ep.state
        if st == INACTIVE:
            if syn:
                ep.init_seqs(seq, seq + seg_len)
            else:
                ep.init_seqs(seq - 1, seq)
        elif syn and (
            (st in (SYN_SENT, SYN_ACK_SENT) and (seq & 0xFFFFFFFF) != (ep.start_seq & 0xFFFFFFFF))
            or st in (ESTABLISHED, PARTIAL)
            or (st == RESET and ep.prev_state == INACTIVE)
        ):
            ep.init_seqs(seq, seq + seg_len)
        useq = ep.unwrap(seq, ep.last_seq)
        rel_seq = useq - ep.start_seq

        # update_history
        nbits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        up = is_orig
        if nbits > 1:
            if fin and rst:
                f.check_history("I" if up else "i", "I" if up else "i")
            else:
                f.check_history("Q" if up else "q", "Q" if up else "q")
        elif nbits == 1:
            if syn:
                code = "H" if ackf else "S"
                code = code if up else code.lower()
                if f.check_history("S" if up else "s", code) and rel_seq != ep.hist_last_syn:
                    f.add_history(code)
                ep.hist_last_syn = rel_seq
            elif fin:
                code = "F" if up else "f"
                if f.check_history(code, code) and rel_seq + length != ep.hist_last_fin:
                    f.add_history(code)
                ep.hist_last_fin = rel_seq + length
            else:
                code = "R" if up else "r"
                if f.check_history(code, code) and rel_seq != ep.hist_last_rst:
                    f.add_history(code)
                ep.hist_last_rst = rel_seq
        elif length:
            f.check_history("D" if up else "d", "D" if up else "d")
        elif ackf:
            f.check_history("A" if up else "a", "A" if up else "a")

        o, r = f.o, f.r
        if not o.did_close or not r.did_close:
            f.last = ts
        if fin:
            ep.fin_cnt += 1
            ep.fin_rel = rel_seq + seg_len

        if ackf:
            if peer.state == INACTIVE:
                peer.init_seqs(ack - 1, ack - 1)
            elif not rst:
                uack = peer.unwrap(ack, peer.ack_seq)
                if not (ack == 0 and uack - peer.ack_seq > TOO_LARGE_SEQ_DELTA) and uack > peer.ack_seq:
                    peer.ack_seq = uack

        # update_last_seq
        last = useq + seg_len
        delta_last = last - ep.last_seq
        if (syn or rst) and (delta_last > TOO_LARGE_SEQ_DELTA or delta_last < -TOO_LARGE_SEQ_DELTA):
            pass
        elif fin and ep.last_seq == ep.start_seq + 1:
            ep.last_seq = last
        elif ep.state == RESET:
            pass
        elif delta_last > 0:
            ep.last_seq = last
        elif length > 0:
            self._scaled(f, ep, "T" if up else "t", "rxmt")

        do_close = self._state_machine(f, ep, peer, is_orig, flags, length, useq, ack)

        # content delivery: track contiguous data and gaps the peer acknowledged (missed bytes)
        if length > 0 and not rst:
            dstart = rel_seq + (1 if syn else 0)
            if dstart <= ep.rx_end < dstart + length and p[CAPLEN] >= length:  # whole payload captured
                ep.rx_end = dstart + length
        if ackf and not rst and peer.state != INACTIVE:
            rel_ack = peer.unwrap(ack, peer.ack_seq) - peer.start_seq
            if peer.fin_cnt and rel_ack >= peer.fin_rel:
                rel_ack = peer.fin_rel - 1
            if rel_ack > peer.rx_end:
                f.missed += rel_ack - peer.rx_end
                peer.rx_end = rel_ack
                self._scaled(f, peer, "G" if peer is f.o else "g", "gap")
        if do_close:
            ep.did_close = True
        f.expire = self._tcp_expire(f, ts)

    @staticmethod
    def _scaled(f: Flow, ep: Endpoint, code: str, kind: str) -> None:
        if kind == "rxmt":
            ep.rxmt_cnt += 1
            if ep.rxmt_cnt == ep.rxmt_thresh:
                f.add_history(code)
                ep.rxmt_thresh *= 10
        else:
            ep.gap_cnt += 1
            if ep.gap_cnt == ep.gap_thresh:
                f.add_history(code)
                ep.gap_thresh *= 10

    def _state_machine(self, f: Flow, ep: Endpoint, peer: Endpoint, is_orig: bool, flags: int, length: int,
                       useq: int, ack: int) -> bool:
        syn, fin, rst, ackf = flags & F_SYN, flags & F_FIN, flags & F_RST, flags & F_ACK
        do_close = False
        st = ep.state
        if st == INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(SYN_ACK_SENT if ackf else SYN_SENT)
                else:
                    if not ackf and peer.state == SYN_ACK_SENT and useq == ep.start_seq:
                        f.flip()  # SYN/SYN-ACK reversal (the endpoints keep their identity)
                        peer.set_state(ESTABLISHED)
                    if peer.state == SYN_SENT:
                        peer.set_state(ESTABLISHED)
                    ep.set_state(ESTABLISHED)
            if fin:
                ep.set_state(CLOSED)
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
            if ep.state == INACTIVE:
                if not is_orig and length == 0 and f.o.state == SYN_SENT:
                    pass
                elif ackf and peer.state == ESTABLISHED:
                    ep.set_state(ESTABLISHED)
                else:
                    ep.set_state(PARTIAL)
        elif st in (SYN_SENT, SYN_ACK_SENT):
            if fin:
                ep.set_state(CLOSED)
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
        elif st in (ESTABLISHED, PARTIAL):
            if syn and st == PARTIAL and peer.state == INACTIVE and not ackf:
                ep.set_state(SYN_SENT)
            if fin and not rst:
                ep.set_state(CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    peer.set_state(CLOSED)
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
        elif st == CLOSED and rst and peer.state != CLOSED:
            ep.set_state(RESET)
            if not ep.did_close:
                do_close = True
        return do_close

    def _tcp_expire(self, f: Flow, ts: int) -> int:
        o, r = f.o, f.r
        if o.state == RESET or r.state == RESET:
            return f.last + RESET_DELAY
        if o.did_close and r.did_close:
            return f.last + CLOSE_DELAY
        if o.did_close or r.did_close:
            # half closed: Zeek's expire timer removes it after the linger time only if one side never spoke
            if o.state == INACTIVE or r.state == INACTIVE:
                return f.last + CLOSE_DELAY
            return f.last + TCP_INACTIVITY
        if o.state in (SYN_SENT, SYN_ACK_SENT) and r.state == INACTIVE:
            return f.start + ATTEMPT_DELAY
        return f.last + TCP_INACTIVITY

    # -- expiry ------------------------------------------------------------------------------------
    def sweep(self, now: int) -> None:
        """Emit flows whose timers have run out (called as packet time advances)."""
        self.next_sweep = now + SWEEP_EVERY
        flows = self.flows
        done = [k for k, f in flows.items() if f.expire < now]
        for k in done:
            self._done(flows.pop(k))

    def _evict(self) -> None:
        key = next(iter(self.flows))
        self.evicted += 1
        self._done(self.flows.pop(key))

    def flush(self) -> None:
        """Emit every remaining flow (end of input), in flow-key order so the output is reproducible."""
        flows, self.flows = self.flows, {}
        for key in sorted(flows):
            self._done(flows[key])
