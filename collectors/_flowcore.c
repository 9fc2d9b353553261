/* The flow path's native core: classic-pcap record walk, header decoder and flow table in one C type.
 *
 * A line-by-line port of collectors/decode.py (Decoder) and collectors/flows.py (FlowTable), which stay the
 * readable reference: tests/unit/test_flowcore.py feeds both the Zeek traces, the attack captures and fuzzed
 * frames and requires identical records. Measured on 1M packets of the shared traces (benchmarks/flow_path.py):
 * the Python decoder + flow table cost 5.3 s, this core 0.3 s.
 *
 * Frames the core does not decode itself are handed to the Python decoder (the ``fallback`` callable) and its
 * packets are fed into this flow table: IP fragments (reassembly state lives in Python), ARP (passive asset
 * evidence is collected there) and link types other than the common ones. Finished flows are built as
 * ``record_type`` instances (collectors.flows.ConnRecord) and collected until ``drain()``.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t u8;
typedef int64_t i64;

#define NS 1000000000LL
#define TCP_INACTIVITY (300 * NS)
#define UDP_INACTIVITY (60 * NS)
#define ICMP_INACTIVITY (60 * NS)
#define ATTEMPT_DELAY (5 * NS)
#define CLOSE_DELAY (5 * NS)
#define RESET_DELAY (5 * NS)
#define SWEEP_EVERY (10 * NS)
#define TOO_LARGE_SEQ_DELTA 1048576
#define MAX_TS (INT64_MAX - TCP_INACTIVITY)  /* packet times up to here keep ts + every timer delay in int64 */
#define MAX_DEPTH 4
#define MAX_PKTS 16
#define MAX_PACKET 262144
#define MAX_RECORD (256 * 1024 * 1024)
#define HISTORY_MAX 1023  /* letters kept per connection, as collectors.flows.HISTORY_MAX */
#define MAX_FIELD 0xFFFFFFFFLL   /* |length| accepted in a packet tuple from Python */
#define PROBE_BYTES 512          /* payload bytes handed to the probe, as collectors.protocols.detect */
#define PROBE_MIN 8              /* shorter first payloads are kept and probed again with what follows */
#define REPROBES 32              /* payloads after detection probed for an upgrade (STARTTLS), as flowconst */
#define DEEP_BYTES_PER_DIRECTION (1 << 20) /* as collectors.selection (FlowCore(deep_bytes_max=...)) */
#define MAX_IFACES 64            /* distinct link types in one selection stream */

/* The values of collectors/flowconst.py; FlowCore.constants() returns them for the test that holds the two equal */
enum { P_ICMP = 1, P_TCP = 6, P_UDP = 17, P_ICMP6 = 58, P_SCTP = 132 };
enum { F_FIN = 0x01, F_SYN = 0x02, F_RST = 0x04, F_PSH = 0x08, F_ACK = 0x10 };
enum { INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET };
enum { VXLAN_PORT = 4789, GENEVE_PORT = 6081, TEREDO_PORT = 3544, GTPU_PORT = 2152, AYIYA_PORT = 5072,
       GRE_UDP_PORT = 4754 };
enum { T_NONE, T_IPIP, T_GENEVE, T_GTPV1, T_TEREDO, T_GRE, T_AYIYA, T_COUNT };
static const char *TUNNEL_NAMES[T_COUNT] = {"", "ip-in-ip", "geneve", "gtpv1", "teredo", "gre", "ayiya"};

/* decode errors, named as collectors.decode counts them */
enum {
    E_TRUNCATED_LINK, E_TRUNCATED_ETHERNET, E_TRUNCATED_VLAN, E_TRUNCATED_MPLS, E_TRUNCATED_PPP, E_TRUNCATED_IP,
    E_BAD_IP_VERSION, E_BAD_IP_HEADER, E_TRUNCATED_IPV6_EXT, E_TRUNCATED_TCP, E_BAD_TCP_HEADER, E_TRUNCATED_UDP,
    E_TRUNCATED_ICMP, E_TRUNCATED_GRE, E_BAD_GRE_VERSION, E_OVERSIZED, E_TRUNCATED_PBB, E_TRUNCATED_802_11,
    E_TRUNCATED_AYIYA, E_COUNT
};
static const char *ERROR_NAMES[E_COUNT] = {
    "truncated_link", "truncated_ethernet", "truncated_vlan", "truncated_mpls", "truncated_ppp", "truncated_ip",
    "bad_ip_version", "bad_ip_header", "truncated_ipv6_ext", "truncated_tcp", "bad_tcp_header", "truncated_udp",
    "truncated_icmp", "truncated_gre", "bad_gre_version", "oversized_packet", "truncated_pbb", "truncated_802_11",
    "truncated_ayiya"};

/* ---------------------------------------------------------------------------------------------------------- */
/* decoded packet (collectors.decode.Pkt)                                                                      */

typedef struct {
    const u8 *src, *dst;
    int alen;
    int proto, sport, dport;
    i64 iplen;
    int flags;
    i64 seq, ack;  /* 0 .. 2^32-1 */
    i64 plen;
    int one_way;
    i64 caplen;
    const u8 *mac;  /* 6 bytes or NULL */
    int bad;
    int tunnel;
    const u8 *payload;  /* TCP/UDP payload (selection hook); NULL when none was captured */
} pkt_t;

/* a growable byte buffer (selected frames as pcapng blocks) */
typedef struct {
    u8 *b;
    size_t len, cap;
} bytebuf_t;

typedef struct {
    pkt_t p[MAX_PKTS];
    int n;
    int delegate;  /* hand the whole frame to the Python decoder */
} dec_t;

/* ---------------------------------------------------------------------------------------------------------- */
/* flow table entries                                                                                          */

typedef struct {
    int state, prev_state;
    i64 start_seq, last_seq, ack_seq;
    i64 fin_cnt, fin_rel;
    int did_close;
    i64 hist_last_syn, hist_last_fin, hist_last_rst;
    i64 rxmt_cnt, gap_cnt, rxmt_thresh, gap_thresh;
    i64 rx_end;
} ep_t;

typedef struct {
    u8 proto, alen, one_way, pad;
    uint16_t ap, bp;
    u8 a[16], b[16];
} flowkey_t;

typedef struct flow {
    struct flow *hnext, *prev, *next;
    uint64_t hash;
    flowkey_t key;
    int proto, alen, one_way, tunnel;
    u8 o_ip[16], r_ip[16];
    int o_port, r_port;
    i64 start, last, expire;
    i64 o_pkts, o_bytes, r_pkts, r_bytes, o_size, r_size, missed;
    u8 o_mac[6], r_mac[6];
    int has_o_mac, has_r_mac;
    i64 bad_sums[2], bad_thresh[2];
    uint32_t hist_seen;
    int hist_len, hist_cap;
    int synack_first;  /* began with the originator's SYN-ACK: the next packet may flip it (FlowTable.add) */
    char *hist;
    char hist_inline[32];
    ep_t eps[2];
    int o_idx;  /* orig endpoint = eps[o_idx]; a flip toggles it, endpoints keep their identity */
    int svc;    /* detected service: index into Core.services, 0 = none (yet) */
    int svc2;   /* the service it upgraded to (STARTTLS: ssl), 0 = none */
    int reprobes; /* later payloads still probed for that upgrade */
    int probed; /* 1: the originator's first payload was probed, 2: the responder's */
    i64 sel;    /* payload packets still selected for the deep path: -1 all, 0 none */
    u8 pre[2][PROBE_MIN];  /* per side (0 orig, 1 resp): short first payloads not yet matched */
    int prelen[2];
    bytebuf_t syn;   /* its SYN / SYN-ACK frames, kept until detection decides (tshark learns the server) */
    int syn_frames;
    i64 deep[2];     /* per side (0 orig, 1 resp): TCP payload bytes selected; deep_max + 1 once cut */
    i64 deep_cut;    /* TCP payload bytes kept from the deep path (over the cap) */
} flow_t;

#define O(f) (&(f)->eps[(f)->o_idx])
#define R(f) (&(f)->eps[1 - (f)->o_idx])

typedef struct {
    PyObject_HEAD
    PyObject *record_type;
    int record_is_tuple; /* a tuple subclass (NamedTuple): built in place, not through its Python-level __new__ */
    PyObject *fallback;
    PyObject *emitted;  /* list of records since the last drain() */
    int verify;
    uint32_t lsp_tcp[65536 / 32 + 1];
    uint32_t lsp_udp[65536 / 32 + 1];
    /* table */
    flow_t **buckets;
    size_t nbuckets, count, max_flows;
    flow_t *head, *tail;  /* insertion order: eviction takes head, sweep walks head to tail */
    i64 next_sweep;
    /* counters */
    i64 evicted, bad_checksums, packets, bytes, undecoded, delegated;
    i64 errors[E_COUNT];
    int failed;  /* a Python error is pending */
    /* protocol detection and deep-path selection (collectors.protocols.detect) */
    PyObject *probe;     /* probe(proto, from_orig, payload, length) -> (service index, selection) or NULL */
    PyObject *services;  /* tuple of service names, index 0 = "" */
    int *upgrade_to;     /* per service index: the service it may upgrade to (0: none), or NULL */
    int collect;         /* copy selected frames into sel (pcapng enhanced packet blocks) */
    bytebuf_t sel;
    /* with shares > 1 the selected frames go to one buffer per analyzer process instead of sel, each frame to the
     * share of its host pair (collectors.protocols.deep_fanout.HostPairRouter.share; share_fn for the frames not
     * read here) */
    int shares;
    PyObject *share_fn;
    bytebuf_t *parts;
    i64 *part_frames;
    i64 sel_taken;  /* selected when sel was last taken */
    int if_link[MAX_IFACES];  /* pcapng interface id -> link type */
    int n_if;
    i64 selected, probes;
    i64 deep_max;                    /* TCP payload bytes per flow direction the deep path gets at most */
    i64 deep_cut_bytes, deep_cut_sides;
    /* the frame being processed (NULL while packets come from add()) */
    const u8 *cur_frame;
    Py_ssize_t cur_caplen;
    int cur_link;
    i64 cur_wirelen, cur_ts;
} Core;

/* ---------------------------------------------------------------------------------------------------------- */
/* decoder                                                                                                     */

static inline int rd16(const u8 *b) { return (b[0] << 8) | b[1]; }
static inline i64 rd32(const u8 *b) { return ((i64)b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]; }

static inline int is_tunnel_port(int p) {
    return p == VXLAN_PORT || p == GENEVE_PORT || p == TEREDO_PORT || p == GTPU_PORT || p == AYIYA_PORT ||
           p == GRE_UDP_PORT;
}

static void dec_ether(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth);
static int ether_header(Core *c, const u8 *b, Py_ssize_t *off, Py_ssize_t end, int *etype, const u8 **mac);
static void dec_ethertype(Core *c, dec_t *d, int etype, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth,
                          const u8 *mac);
static void dec_ip(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth, int tunnel,
                   const u8 *mac);
static void dec_ip6(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth, int tunnel,
                    const u8 *mac);

static inline void err(Core *c, int e) { c->errors[e]++; }

static pkt_t *emit_pkt(dec_t *d) {
    if (d->n >= MAX_PKTS) return NULL;
    pkt_t *p = &d->p[d->n++];
    memset(p, 0, sizeof(*p));
    return p;
}

/* internet checksum: the ones' complement sum is 0 mod 0xFFFF (collectors.decode.Decoder._checksum_ok) */
static int checksum_ok(Core *c, const u8 *src, const u8 *dst, int alen, int proto, const u8 *data, i64 len,
                       int pseudo) {
    uint64_t sum = 0;
    i64 i;
    if (pseudo) {
        for (i = 0; i < alen; i += 2) sum += (uint64_t)rd16(src + i) + (uint64_t)rd16(dst + i);
        if (alen == 4) {
            sum += (uint64_t)proto + (uint64_t)(len & 0xFFFF);
        } else {
            sum += (uint64_t)(len >> 16) + (uint64_t)(len & 0xFFFF) + (uint64_t)proto;
        }
    }
    for (i = 0; i + 1 < len; i += 2) sum += (uint64_t)rd16(data + i);
    if (len & 1) sum += (uint64_t)data[len - 1] << 8;
    if (sum % 0xFFFF == 0) return 1;
    c->bad_checksums++;
    return 0;
}

/* ICMP type -> counterpart type, as Zeek and the Community ID spec pair them (collectors.decode.ICMP*_PAIRS) */
static const int ICMP4_PAIRS[][2] = {{8, 0}, {13, 14}, {15, 16}, {10, 9}, {17, 18}};
static const int ICMP6_PAIRS[][2] = {{128, 129}, {130, 131}, {133, 134}, {135, 136}, {139, 140}, {144, 145}};

static void icmp_ports(int proto, int itype, int code, int *sp, int *dp, int *one_way) {
    const int (*pairs)[2] = proto == P_ICMP ? ICMP4_PAIRS : ICMP6_PAIRS;
    int n = proto == P_ICMP ? (int)(sizeof ICMP4_PAIRS / sizeof *ICMP4_PAIRS)
                            : (int)(sizeof ICMP6_PAIRS / sizeof *ICMP6_PAIRS);
    int other = -1;
    for (int i = 0; i < n && other < 0; i++) {
        if (pairs[i][0] == itype) other = pairs[i][1];
        else if (pairs[i][1] == itype) other = pairs[i][0];
    }
    *sp = itype;
    *dp = other < 0 ? code : other;
    *one_way = other < 0;
}

static void dec_gre(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth);
static void dec_udp_tunnel(Core *c, dec_t *d, int sport, int dport, const u8 *b, Py_ssize_t off, Py_ssize_t end,
                           int depth);

static void dec_l4(Core *c, dec_t *d, int proto, const u8 *src, const u8 *dst, int alen, const u8 *b, Py_ssize_t l4,
                   Py_ssize_t l4end, i64 total, i64 l4len, int depth, int tunnel, const u8 *mac) {
    i64 avail = l4end - l4;
    pkt_t *p;
    if (proto == P_TCP) {
        if (avail < 20) {
            err(c, E_TRUNCATED_TCP);
            return;
        }
        int thl = (b[l4 + 12] >> 4) * 4;
        if (thl < 20 || thl > l4len) {
            err(c, E_BAD_TCP_HEADER);
            return;
        }
        int bad = c->verify && avail >= l4len && !checksum_ok(c, src, dst, alen, P_TCP, b + l4, l4len, 1);
        if (!(p = emit_pkt(d))) return;
        p->proto = P_TCP;
        p->sport = rd16(b + l4);
        p->dport = rd16(b + l4 + 2);
        p->seq = rd32(b + l4 + 4);
        p->ack = rd32(b + l4 + 8);
        p->flags = b[l4 + 13];
        p->plen = l4len - thl;
        p->caplen = avail - thl;
        p->bad = bad;
        p->payload = avail > thl ? b + l4 + thl : NULL;
    } else if (proto == P_UDP) {
        if (avail < 8) {
            err(c, E_TRUNCATED_UDP);
            return;
        }
        int sport = rd16(b + l4), dport = rd16(b + l4 + 2);
        i64 ulen = rd16(b + l4 + 4);
        if (ulen < 8) ulen = l4len;
        int bad = c->verify && avail >= l4len && (alen == 16 || b[l4 + 6] || b[l4 + 7]) &&
                  !checksum_ok(c, src, dst, alen, P_UDP, b + l4, l4len, 1);
        if (!(p = emit_pkt(d))) return;
        p->proto = P_UDP;
        p->sport = sport;
        p->dport = dport;
        p->plen = ulen - 8;
        p->caplen = avail;
        p->bad = bad;
        p->payload = avail > 8 ? b + l4 + 8 : NULL;
        p->src = src, p->dst = dst, p->alen = alen, p->iplen = total, p->tunnel = tunnel, p->mac = mac;
        if (!bad && depth < MAX_DEPTH && (is_tunnel_port(sport) || is_tunnel_port(dport)))
            dec_udp_tunnel(c, d, sport, dport, b, l4 + 8, l4end, depth + 1);
        return;
    } else if (proto == P_ICMP || proto == P_ICMP6) {
        if (avail < 4) {
            err(c, E_TRUNCATED_ICMP);
            return;
        }
        int sp, dp, one_way;
        icmp_ports(proto, b[l4], b[l4 + 1], &sp, &dp, &one_way);
        int bad = c->verify && avail >= l4len &&
                  !checksum_ok(c, src, dst, alen, proto, b + l4, l4len, proto == P_ICMP6);
        if (!(p = emit_pkt(d))) return;
        p->proto = proto;
        p->sport = sp;
        p->dport = dp;
        p->one_way = one_way;
        p->plen = l4len - 8 > 0 ? l4len - 8 : 0;
        p->caplen = avail;
        p->bad = bad;
    } else if (proto == P_SCTP && avail >= 4) {
        if (!(p = emit_pkt(d))) return;
        p->proto = proto;
        p->sport = rd16(b + l4);
        p->dport = rd16(b + l4 + 2);
        p->caplen = avail;
    } else {
        if (depth < MAX_DEPTH) {
            if (proto == 47) {
                dec_gre(c, d, b, l4, l4end, depth + 1);
                return;
            }
            if (proto == 4 || proto == 41) {
                dec_ip(c, d, b, l4, l4end, depth + 1, T_IPIP, NULL);
                return;
            }
        }
        if (!(p = emit_pkt(d))) return;
        p->proto = proto;
        p->caplen = avail;
    }
    p->src = src, p->dst = dst, p->alen = alen, p->iplen = total, p->tunnel = tunnel, p->mac = mac;
}

static void dec_ip4(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth, int tunnel,
                    const u8 *mac) {
    if (end - off < 20) {
        err(c, E_TRUNCATED_IP);
        return;
    }
    int hl = (b[off] & 0x0F) * 4;
    i64 total = rd16(b + off + 2);
    int frag = rd16(b + off + 6);
    int proto = b[off + 9];
    if (total == 0) total = (end - off) < 0xFFFF ? (end - off) : 0xFFFF;
    if (hl < 20 || total < hl || end - off < hl) {
        err(c, E_BAD_IP_HEADER);
        return;
    }
    if (frag & 0x3FFF) {
        d->delegate = 1;  /* fragment: reassembly lives in the Python decoder */
        return;
    }
    Py_ssize_t l4end = end < off + total ? end : off + total;
    dec_l4(c, d, proto, b + off + 12, b + off + 16, 4, b, off + hl, l4end, total, total - hl, depth, tunnel, mac);
}

static int ipv6_ext(int nh) {
    return nh == 0 || nh == 43 || nh == 60 || nh == 135 || nh == 139 || nh == 140 || nh == 253 || nh == 254;
}

static void dec_ip6(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth, int tunnel,
                    const u8 *mac) {
    if (end - off < 40) {
        err(c, E_TRUNCATED_IP);
        return;
    }
    i64 total = rd16(b + off + 4) + 40;
    int nh = b[off + 6];
    const u8 *src = b + off + 8, *dst = b + off + 24;
    Py_ssize_t l4 = off + 40;
    Py_ssize_t limit = end < off + total ? end : off + total;
    while (ipv6_ext(nh) || nh == 44 || nh == 51) {
        if (l4 + 8 > limit) {
            err(c, E_TRUNCATED_IPV6_EXT);
            return;
        }
        if (nh == 44) {
            d->delegate = 1;
            return;
        }
        Py_ssize_t hlen = nh == 51 ? (b[l4 + 1] + 2) * 4 : (b[l4 + 1] + 1) * 8;
        nh = b[l4];
        l4 += hlen;
    }
    if (nh == 59) {
        pkt_t *p = emit_pkt(d);
        if (!p) return;
        p->src = src, p->dst = dst, p->alen = 16, p->proto = 59, p->iplen = total, p->tunnel = tunnel, p->mac = mac;
        return;
    }
    dec_l4(c, d, nh, src, dst, 16, b, l4, limit, total, total - (l4 - off), depth, tunnel, mac);
}

static void dec_ip(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth, int tunnel,
                   const u8 *mac) {
    if (off >= end) {
        err(c, E_TRUNCATED_IP);
        return;
    }
    int ver = b[off] >> 4;
    if (ver == 4)
        dec_ip4(c, d, b, off, end, depth, tunnel, mac);
    else if (ver == 6)
        dec_ip6(c, d, b, off, end, depth, tunnel, mac);
    else
        err(c, E_BAD_IP_VERSION);
}

static void dec_mpls(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth, const u8 *mac) {
    for (;;) {
        if (end - off < 4) {
            err(c, E_TRUNCATED_MPLS);
            return;
        }
        int bottom = b[off + 2] & 1;
        off += 4;
        if (bottom) break;
    }
    if (off >= end) {
        err(c, E_TRUNCATED_MPLS);
        return;
    }
    if ((b[off] >> 4) == 4 || (b[off] >> 4) == 6) dec_ip(c, d, b, off, end, depth, T_NONE, mac);
}

static void dec_ppp_proto(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth) {
    if (end - off < 2) {
        err(c, E_TRUNCATED_PPP);
        return;
    }
    int proto = rd16(b + off);
    if (proto == 0x0021 || proto == 0x0057) dec_ip(c, d, b, off + 2, end, depth, T_NONE, NULL);
}

static void dec_ppp(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth) {
    if (end - off >= 2 && b[off] == 0xFF && b[off + 1] == 0x03) off += 2;
    dec_ppp_proto(c, d, b, off, end, depth);
}

static void dec_ethertype(Core *c, dec_t *d, int etype, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth,
                          const u8 *mac) {
    for (;;) {
        if (etype == 0x0800 || etype == 0x86DD) {
            dec_ip(c, d, b, off, end, depth, T_NONE, mac);
            return;
        }
        if (etype == 0x8100 || etype == 0x88A8 || etype == 0x9100) {
            if (end - off < 4) {
                err(c, E_TRUNCATED_VLAN);
                return;
            }
            etype = rd16(b + off + 2);
            off += 4;
            continue;
        }
        if (etype == 0x8847 || etype == 0x8848) {
            dec_mpls(c, d, b, off, end, depth, mac);
            return;
        }
        if (etype == 0x8864) {
            dec_ppp_proto(c, d, b, off + 6, end, depth);
            return;
        }
        if (etype <= 1500) {
            if (end - off >= 8 && b[off] == 0xAA && b[off + 1] == 0xAA && b[off + 2] == 3) {
                etype = rd16(b + off + 6);
                off += 8;
                continue;
            }
            return;
        }
        if (etype == 0x88E7) {  /* 802.1ah PBB: I-TAG, then the customer's Ethernet header */
            if (end - off < 18) {
                err(c, E_TRUNCATED_PBB);
                return;
            }
            etype = rd16(b + off + 16);
            mac = b + off + 10;
            off += 18;
            continue;
        }
        if (etype == 0x6558) {  /* a whole Ethernet frame: looped, not recursed (a frame can nest ~18000) */
            if (!ether_header(c, b, &off, end, &etype, &mac)) return;
            continue;
        }
        if (etype == 0x0806) {
            d->delegate = 1;  /* ARP: the Python decoder keeps the address bindings */
            return;
        }
        return;
    }
}

/* An 802.11 data frame carrying LLC/SNAP (collectors.decode.Decoder._ieee802_11) */
static void dec_ieee802_11(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end) {
    if (end - off <= 24) {
        err(c, E_TRUNCATED_802_11);
        return;
    }
    int fc = b[off], flags = b[off + 1];
    if (!((fc >> 2) & 0x02) || ((fc >> 4) & 0x04)) return;
    Py_ssize_t hlen = (flags & 0x03) == 0x03 ? 30 : 24;
    if ((fc >> 4) & 0x08) {
        if (end - off <= hlen || (b[off + hlen] & 0x80)) return;
        hlen += (flags & 0x80) ? 6 : 2;
    }
    static const int SRC_OFF[4] = {10, 10, 16, 24};
    int src = SRC_OFF[flags & 0x03];
    if (end - off <= hlen + 8) {
        err(c, E_TRUNCATED_802_11);
        return;
    }
    Py_ssize_t llc = off + hlen;
    if (b[llc] != 0xAA || b[llc + 1] != 0xAA || b[llc + 2] != 3) return;
    dec_ethertype(c, d, rd16(b + llc + 6), b, llc + 8, end, 0, b + off + src);
}

/* The Ethernet header at *off: its ethertype and source MAC, *off moved past it; 0 if truncated. */
static int ether_header(Core *c, const u8 *b, Py_ssize_t *off, Py_ssize_t end, int *etype, const u8 **mac) {
    Py_ssize_t o = *off;
    if (end - o < 14) {
        err(c, E_TRUNCATED_ETHERNET);
        return 0;
    }
    *etype = rd16(b + o + 12);
    *mac = b + o + 6;
    if (*etype == 0x8903) {  /* Cisco FabricPath */
        o += 16;
        if (end - o < 14) {
            err(c, E_TRUNCATED_ETHERNET);
            return 0;
        }
        *etype = rd16(b + o + 12);
        *mac = b + o + 6;
    }
    *off = o + 14;
    return 1;
}

static void dec_ether(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth) {
    int etype;
    const u8 *mac;
    if (ether_header(c, b, &off, end, &etype, &mac)) dec_ethertype(c, d, etype, b, off, end, depth, mac);
}

static void dec_gtpu(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth) {
    Py_ssize_t n = end - off;
    if (n < 8) return;
    int flags = b[off], mtype = b[off + 1], glen = rd16(b + off + 2);
    if ((flags >> 5) != 1 || !(flags & 0x10) || mtype != 0xFF || glen + 8 != n) return;
    Py_ssize_t pos = off + 8;
    if (flags & 0x07) {
        if (n < 12) return;
        int ext = b[pos + 3];
        pos += 4;
        while ((flags & 0x04) && ext) {
            if (pos >= end) return;
            Py_ssize_t elen = b[pos] * 4;
            if (elen == 0 || pos + elen > end) return;
            ext = b[pos + elen - 1];
            pos += elen;
        }
    }
    if (pos < end && ((b[pos] >> 4) == 4 || (b[pos] >> 4) == 6)) dec_ip(c, d, b, pos, end, depth, T_GTPV1, NULL);
}

static void dec_teredo(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth) {
    Py_ssize_t pos = off;
    if (end - pos >= 2 && b[pos] == 0 && b[pos + 1] == 1) {
        if (end - pos < 4) return;
        pos += 13 + b[pos + 2] + b[pos + 3];
    }
    if (end - pos >= 2 && b[pos] == 0 && b[pos + 1] == 0) pos += 8;
    if (end - pos < 40 || (b[pos] >> 4) != 6 || rd16(b + pos + 4) + 40 != end - pos) return;
    dec_ip6(c, d, b, pos, end, depth, T_TEREDO, NULL);
}

/* AYIYA forward message: IPv4/IPv6 after identity and signature (collectors.decode.Decoder._ayiya) */
static void dec_ayiya(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth) {
    if (end - off < 8) return;
    Py_ssize_t pos = off + 8 + ((Py_ssize_t)1 << (b[off] >> 4)) + (b[off + 1] >> 4) * 4;
    if ((b[off + 2] & 0x0F) != 1 || (b[off + 3] != 4 && b[off + 3] != 41)) return;
    if (end - pos < 20) {
        err(c, E_TRUNCATED_AYIYA);
        return;
    }
    dec_ip(c, d, b, pos, end, depth, T_AYIYA, NULL);
}

static void dec_udp_tunnel(Core *c, dec_t *d, int sport, int dport, const u8 *b, Py_ssize_t off, Py_ssize_t end,
                           int depth) {
    Py_ssize_t n = end - off;
    if (sport == 4789 || dport == 4789) {
        if (n >= 8 + 14 && (b[off] & 0x08)) dec_ether(c, d, b, off + 8, end, depth);
        return;
    }
    if (sport == 2152 || dport == 2152) {
        dec_gtpu(c, d, b, off, end, depth);
        return;
    }
    if (sport == 3544 || dport == 3544) {
        dec_teredo(c, d, b, off, end, depth);
        return;
    }
    if (sport == AYIYA_PORT || dport == AYIYA_PORT) {
        dec_ayiya(c, d, b, off, end, depth);
        return;
    }
    if (sport == GRE_UDP_PORT || dport == GRE_UDP_PORT) {
        dec_gre(c, d, b, off, end, depth);
        return;
    }
    if ((sport == 6081 || dport == 6081) && n >= 8 && (b[off] >> 6) == 0) {
        Py_ssize_t hlen = 8 + (b[off] & 0x3F) * 4;
        int ptype = rd16(b + off + 2);
        if (n > hlen && ptype == 0x6558)
            dec_ether(c, d, b, off + hlen, end, depth);
        else if (n > hlen && (ptype == 0x0800 || ptype == 0x86DD))
            dec_ip(c, d, b, off + hlen, end, depth, T_GENEVE, NULL);
    }
}

static void dec_gre(Core *c, dec_t *d, const u8 *b, Py_ssize_t off, Py_ssize_t end, int depth) {
    if (end - off < 4) {
        err(c, E_TRUNCATED_GRE);
        return;
    }
    int flags = rd16(b + off), ptype = rd16(b + off + 2);
    int version = flags & 0x7;
    Py_ssize_t pos = off + 4;
    if (version == 0) {
        pos += 4 * (!!(flags & 0x8000) + !!(flags & 0x2000) + !!(flags & 0x1000));
    } else if (version == 1) {
        pos += 4 + 4 * (!!(flags & 0x1000) + !!(flags & 0x0080));
    } else {
        err(c, E_BAD_GRE_VERSION);
        return;
    }
    if (pos > end) {
        err(c, E_TRUNCATED_GRE);
        return;
    }
    if (ptype == 0x0800 || ptype == 0x86DD)
        dec_ip(c, d, b, pos, end, depth, T_GRE, NULL);
    else if (ptype == 0x6558)
        dec_ether(c, d, b, pos, end, depth);
    else if (ptype == 0x88BE)
        dec_ether(c, d, b, pos + 8, end, depth);
    else if (ptype == 0x22EB) {
        int extra = (end - pos > 12 && (b[pos + 11] & 1)) ? 8 : 0;
        dec_ether(c, d, b, pos + 12 + extra, end, depth);
    } else if (ptype == 0x880B)
        dec_ppp(c, d, b, pos, end, depth);
    else if (ptype == 0x8847 || ptype == 0x8848)
        dec_mpls(c, d, b, pos, end, depth, NULL);
}

/* Decode one frame; returns 0 when the frame must go to the Python decoder instead. */
static int decode_frame(Core *c, dec_t *d, int linktype, const u8 *b, Py_ssize_t off, Py_ssize_t caplen) {
    Py_ssize_t end = off + caplen;
    d->n = 0;
    d->delegate = 0;
    switch (linktype) {
        case 1:
            dec_ether(c, d, b, off, end, 0);
            break;
        case 101: case 12: case 14: case 228: case 229:
            dec_ip(c, d, b, off, end, 0, T_NONE, NULL);
            break;
        case 113:
            if (caplen < 16) {
                err(c, E_TRUNCATED_LINK);
                break;
            }
            dec_ethertype(c, d, rd16(b + off + 14), b, off + 16, end, 0, b + off + 6);
            break;
        case 276:
            if (caplen < 20) {
                err(c, E_TRUNCATED_LINK);
                break;
            }
            dec_ethertype(c, d, rd16(b + off), b, off + 20, end, 0, b + off + 12);
            break;
        case 0: case 108:
            if (caplen < 4) {
                err(c, E_TRUNCATED_LINK);
                break;
            }
            dec_ip(c, d, b, off + 4, end, 0, T_NONE, NULL);
            break;
        case 9:
            dec_ppp(c, d, b, off, end, 0);
            break;
        case 127: {  /* radiotap, then 802.11 */
            Py_ssize_t rtlen = caplen >= 4 ? (b[off + 2] | b[off + 3] << 8) : 0;
            if (caplen < 4 || rtlen >= caplen) {
                err(c, E_TRUNCATED_LINK);
                break;
            }
            dec_ieee802_11(c, d, b, off + rtlen, end);
            break;
        }
        case 105:
            dec_ieee802_11(c, d, b, off, end);
            break;
        default:
            return 0;  /* the Python decoder names the unsupported link type in its error counts */
    }
    return !d->delegate;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* flow table                                                                                                  */

static inline i64 seq_delta(i64 a, i64 b) {
    i64 dlt = (a - b) & 0xFFFFFFFFLL;
    return (dlt & 0x80000000LL) ? dlt - 0x100000000LL : dlt;
}

static inline i64 unwrap(i64 seq32, i64 ref) { return ref + seq_delta(seq32, ref & 0xFFFFFFFFLL); }

static void ep_init(ep_t *e) {
    memset(e, 0, sizeof(*e));
    e->hist_last_syn = e->hist_last_fin = e->hist_last_rst = -1;
    e->rxmt_thresh = e->gap_thresh = 1;
    e->rx_end = 1;
}

static inline void set_state(ep_t *e, int s) {
    if (s != e->state) {
        e->prev_state = e->state;
        e->state = s;
    }
}

static inline void init_seqs(ep_t *e, i64 seq, i64 last) {
    e->start_seq = seq;
    e->ack_seq = seq;
    e->last_seq = seq + seq_delta(last, seq);
}

static i64 ep_size(const ep_t *e, const ep_t *peer) {
    if (e->prev_state == SYN_SENT && e->state == RESET && peer->state == INACTIVE && e->ack_seq != e->start_seq)
        return 0;
    i64 size = (e->last_seq > e->ack_seq ? e->last_seq : e->ack_seq) - e->start_seq;
    if (size < 0) return 0;
    if (size) size -= 1;
    if (e->fin_cnt && size) size -= 1;
    return size;
}

/* history letters tracked by Connection::CheckHistory: one bit per (letter, direction) */
static int hist_bit(char m) {
    static const char letters[] = "ADFIQRS";
    int lower = m >= 'a';
    const char *p = strchr(letters, lower ? m - 32 : m);
    return (int)(p - letters) + (lower ? 7 : 0);
}

static int hist_append(Core *c, flow_t *f, char code) {
    if (f->hist_len >= HISTORY_MAX) return 0;  /* bounded: a pathological flow stops growing its history */
    if (f->hist_len + 1 >= f->hist_cap) {
        int cap = f->hist_cap * 2;
        char *h = f->hist == f->hist_inline ? PyMem_Malloc(cap) : PyMem_Realloc(f->hist, cap);
        if (!h) {
            PyErr_NoMemory();
            c->failed = 1;
            return -1;
        }
        if (f->hist == f->hist_inline) memcpy(h, f->hist_inline, f->hist_len);
        f->hist = h;
        f->hist_cap = cap;
    }
    f->hist[f->hist_len++] = code;
    return 0;
}

/* Add ``code`` the first time ``mask`` is seen; 1 if it had been seen before. */
static int check_history(Core *c, flow_t *f, char mask, char code) {
    uint32_t bit = 1u << hist_bit(mask);
    if (f->hist_seen & bit) return 1;
    f->hist_seen |= bit;
    hist_append(c, f, code);
    return 0;
}

static inline char up_lo(int up, char upper) { return up ? upper : (char)(upper + 32); }

/* Swap originator and responder; from_start: as if flipped before the first packet ('^' leads the history). */
static void flow_flip(Core *c, flow_t *f, int from_start) {
    u8 tmp[16];
    memcpy(tmp, f->o_ip, 16), memcpy(f->o_ip, f->r_ip, 16), memcpy(f->r_ip, tmp, 16);
    int t = f->o_port; f->o_port = f->r_port; f->r_port = t;
    i64 x;
    x = f->o_pkts; f->o_pkts = f->r_pkts; f->r_pkts = x;
    x = f->o_bytes; f->o_bytes = f->r_bytes; f->r_bytes = x;
    x = f->o_size; f->o_size = f->r_size; f->r_size = x;
    u8 m[6];
    memcpy(m, f->o_mac, 6), memcpy(f->o_mac, f->r_mac, 6), memcpy(f->r_mac, m, 6);
    t = f->has_o_mac; f->has_o_mac = f->has_r_mac; f->has_r_mac = t;
    x = f->bad_sums[0]; f->bad_sums[0] = f->bad_sums[1]; f->bad_sums[1] = x;
    x = f->bad_thresh[0]; f->bad_thresh[0] = f->bad_thresh[1]; f->bad_thresh[1] = x;
    x = f->deep[0]; f->deep[0] = f->deep[1]; f->deep[1] = x;
    for (int i = 0; i < f->hist_len; i++) {
        char ch = f->hist[i];
        if (ch >= 'a' && ch <= 'z') f->hist[i] = (char)(ch - 32);
        else if (ch >= 'A' && ch <= 'Z') f->hist[i] = (char)(ch + 32);
    }
    f->hist_seen = ((f->hist_seen & 0x7F) << 7) | ((f->hist_seen >> 7) & 0x7F);
    if (from_start) {
        if (hist_append(c, f, '^') == 0 && f->hist_len > 0) {  /* grows the buffer; then rotate '^' to the front */
            memmove(f->hist + 1, f->hist, (size_t)f->hist_len - 1);
            f->hist[0] = '^';
        }
    } else {
        hist_append(c, f, '^');
    }
    if (f->proto == P_TCP) f->o_idx = 1 - f->o_idx;
}

static const char *tcp_conn_state(const flow_t *f, i64 osz, i64 rsz) {
    int os = O(f)->state, rs = R(f)->state;
    int o_inactive = os == INACTIVE || os == PARTIAL, r_inactive = rs == INACTIVE || rs == PARTIAL;
    if (rs == RESET) {
        if (os == SYN_SENT || os == SYN_ACK_SENT || (os == RESET && osz == 0 && rsz == 0)) return "REJ";
        return o_inactive ? "RSTRH" : "RSTR";
    }
    if (os == RESET) {
        if (r_inactive) {
            const char *h = f->hist;
            int n = f->hist_len;
            if (n && h[0] == '^') h++, n--;
            if (n && h[0] == 'S') {
                int i = 1;
                while (i < n && !strchr("HAFGIQR", h[i])) i++;
                if (i < n && h[i] == 'R') return "RSTOS0";
            }
            return "OTH";
        }
        return "RSTO";
    }
    if (rs == CLOSED && os == CLOSED) return "SF";
    if (os == CLOSED) return r_inactive ? "SH" : "S2";
    if (rs == CLOSED) return o_inactive ? "SHR" : "S3";
    if (os == SYN_SENT && rs == INACTIVE) return "S0";
    if (os == ESTABLISHED && rs == ESTABLISHED) return "S1";
    return "OTH";
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Community ID v1 (SHA-1, base64), as collectors.community_id computes it                                    */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const u8 *msg, size_t len, u8 out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    u8 block[64];
    size_t total = ((len + 8) / 64 + 1) * 64;  /* message + 0x80 + length, padded to whole blocks */
    for (size_t off = 0; off < total; off += 64) {
        for (int i = 0; i < 64; i++) {
            size_t pos = off + i;
            block[i] = pos < len ? msg[pos] : pos == len ? 0x80 : 0;
        }
        if (off + 64 == total) {
            uint64_t bits = (uint64_t)len * 8;
            for (int i = 0; i < 8; i++) block[63 - i] = (u8)(bits >> (8 * i));
        }
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16) |
                   ((uint32_t)block[4 * i + 2] << 8) | block[4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 5; i++)
        out[4 * i] = (u8)(h[i] >> 24), out[4 * i + 1] = (u8)(h[i] >> 16), out[4 * i + 2] = (u8)(h[i] >> 8),
        out[4 * i + 3] = (u8)h[i];
}

static PyObject *community_id(const flow_t *f) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const u8 *src = f->o_ip, *dst = f->r_ip;
    int sport = f->o_port, dport = f->r_port, n = f->alen;
    int cmp = memcmp(src, dst, n);
    if (!f->one_way && (cmp > 0 || (cmp == 0 && sport > dport))) {
        const u8 *t = src; src = dst; dst = t;
        int p = sport; sport = dport; dport = p;
    }
    u8 msg[2 + 32 + 6], digest[20];
    size_t len = 0;
    msg[len++] = 0, msg[len++] = 0;  /* seed 0 */
    memcpy(msg + len, src, n), len += n;
    memcpy(msg + len, dst, n), len += n;
    msg[len++] = (u8)f->proto, msg[len++] = 0;
    if (f->proto == P_ICMP || f->proto == P_TCP || f->proto == P_UDP || f->proto == P_ICMP6 || f->proto == P_SCTP) {
        msg[len++] = (u8)(sport >> 8), msg[len++] = (u8)sport, msg[len++] = (u8)(dport >> 8), msg[len++] = (u8)dport;
    }
    sha1(msg, len, digest);
    char out[2 + 28];
    out[0] = '1', out[1] = ':';
    for (int i = 0, j = 2; i < 21; i += 3, j += 4) {  /* 20 bytes: six full groups and one padded */
        uint32_t v = (uint32_t)digest[i] << 16 | (i + 1 < 20 ? (uint32_t)digest[i + 1] << 8 : 0) |
                     (i + 2 < 20 ? digest[i + 2] : 0);
        out[j] = b64[v >> 18 & 63], out[j + 1] = b64[v >> 12 & 63];
        out[j + 2] = i + 1 < 20 ? b64[v >> 6 & 63] : '=';
        out[j + 3] = i + 2 < 20 ? b64[v & 63] : '=';
    }
    return PyUnicode_FromStringAndSize(out, sizeof(out));
}

static PyObject *addr_bytes(const u8 *a, int alen) { return PyBytes_FromStringAndSize((const char *)a, alen); }

static PyObject *flow_record(Core *c, flow_t *f) {
    i64 osz, rsz;
    const char *state;
    if (f->proto == P_TCP) {
        osz = ep_size(O(f), R(f));
        rsz = ep_size(R(f), O(f));
        state = tcp_conn_state(f, osz, rsz);
    } else {
        osz = f->o_size > 0 ? f->o_size : 0;
        rsz = f->r_size > 0 ? f->r_size : 0;
        if (f->proto == P_UDP)
            state = f->o_size >= 0 ? (f->r_size >= 0 ? "SF" : "S0") : (f->r_size >= 0 ? "SHR" : "OTH");
        else
            state = "OTH";
    }
    int answered = (f->proto == P_TCP && R(f)->state != INACTIVE && memchr(f->hist, 'h', f->hist_len)) ||
                   (f->proto == P_UDP && f->r_pkts > 0);
    PyObject *args[24];
    args[0] = PyLong_FromLong(f->proto);
    args[1] = addr_bytes(f->o_ip, f->alen);
    args[2] = PyLong_FromLong(f->o_port);
    args[3] = addr_bytes(f->r_ip, f->alen);
    args[4] = PyLong_FromLong(f->r_port);
    args[5] = PyBool_FromLong(f->one_way);
    args[6] = PyLong_FromLongLong(f->start);
    args[7] = PyLong_FromLongLong(f->last);
    args[8] = PyLong_FromLongLong(f->o_pkts);
    args[9] = PyLong_FromLongLong(f->o_bytes);
    args[10] = PyLong_FromLongLong(f->r_pkts);
    args[11] = PyLong_FromLongLong(f->r_bytes);
    args[12] = PyLong_FromLongLong(osz);
    args[13] = PyLong_FromLongLong(rsz);
    args[14] = PyUnicode_FromString(state);
    args[15] = PyUnicode_FromStringAndSize(f->hist, f->hist_len);
    args[16] = PyLong_FromLongLong(f->missed);
    args[17] = PyUnicode_FromString(TUNNEL_NAMES[f->tunnel]);
    if (f->has_o_mac) {
        args[18] = PyBytes_FromStringAndSize((const char *)f->o_mac, 6);
    } else {
        args[18] = Py_None;
        Py_INCREF(Py_None);
    }
    if (f->has_r_mac) {
        args[19] = PyBytes_FromStringAndSize((const char *)f->r_mac, 6);
    } else {
        args[19] = Py_None;
        Py_INCREF(Py_None);
    }
    args[20] = PyBool_FromLong(answered);
    args[21] = community_id(f);
    if (c->services && f->svc2) {
        args[22] = PyUnicode_FromFormat("%U,%U", PyTuple_GET_ITEM(c->services, f->svc),
                                        PyTuple_GET_ITEM(c->services, f->svc2));
    } else {
        args[22] = c->services ? PyTuple_GET_ITEM(c->services, f->svc) : PyUnicode_FromString("");
        if (c->services) Py_INCREF(args[22]);
    }
    args[23] = PyLong_FromLongLong(f->deep_cut);
    PyObject *rec = NULL;
    int ok = 1;
    for (int i = 0; i < 24; i++) ok &= args[i] != NULL;
    if (ok && c->record_is_tuple) {
        /* what a NamedTuple's generated __new__ does (tuple.__new__ of its fields), without running it: that
         * Python-level call was 7% of the main process's samples on the 1M-packet benchmark */
        PyTypeObject *type = (PyTypeObject *)c->record_type;
        rec = type->tp_alloc(type, 24);
        if (rec) {
            for (int i = 0; i < 24; i++) PyTuple_SET_ITEM(rec, i, args[i]);  /* the record owns them now */
            return rec;
        }
    } else if (ok) {
        rec = PyObject_Vectorcall(c->record_type, args, 24, NULL);
    }
    for (int i = 0; i < 24; i++) Py_XDECREF(args[i]);
    return rec;
}

static void flow_free(flow_t *f) {
    if (f->hist != f->hist_inline) PyMem_Free(f->hist);
    PyMem_Free(f->syn.b);
    PyMem_Free(f);
}

static uint64_t key_hash(const flowkey_t *k) {
    uint64_t w[sizeof(flowkey_t) / 8];
    memcpy(w, k, sizeof(w));
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < sizeof(flowkey_t) / 8; i++) {
        h ^= w[i];
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    return h;
}

static void unlink_flow(Core *c, flow_t *f) {
    flow_t **pp = &c->buckets[f->hash & (c->nbuckets - 1)];
    while (*pp != f) pp = &(*pp)->hnext;
    *pp = f->hnext;
    if (f->prev) f->prev->next = f->next; else c->head = f->next;
    if (f->next) f->next->prev = f->prev; else c->tail = f->prev;
    c->count--;
}

/* Remove, record and free one flow. */
static void emit_flow(Core *c, flow_t *f) {
    unlink_flow(c, f);
    if (!c->failed) {
        PyObject *rec = flow_record(c, f);
        if (!rec || PyList_Append(c->emitted, rec) < 0) c->failed = 1;
        Py_XDECREF(rec);
    }
    flow_free(f);
}

static int grow(Core *c) {
    size_t n = c->nbuckets * 2;
    flow_t **nb = PyMem_Calloc(n, sizeof(flow_t *));
    if (!nb) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < c->nbuckets; i++) {
        flow_t *f = c->buckets[i];
        while (f) {
            flow_t *next = f->hnext;
            f->hnext = nb[f->hash & (n - 1)];
            nb[f->hash & (n - 1)] = f;
            f = next;
        }
    }
    PyMem_Free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
    return 0;
}

static void sweep(Core *c, i64 now) {
    c->next_sweep = now + SWEEP_EVERY;
    flow_t *f = c->head;
    while (f) {
        flow_t *next = f->next;
        if (f->expire < now) emit_flow(c, f);
        f = next;
    }
}

/* FlowTable._is_reuse (Zeek's TCPSessionAdapter::IsReuse) */
static int is_reuse(const flow_t *f, const pkt_t *p) {
    if (!(p->flags & F_SYN)) return 0;
    const ep_t *o = O(f), *r = R(f), *e = o;
    if (p->flags & F_ACK) {
        if (o->state != INACTIVE) return 0;
        e = r;
    }
    if (o->did_close || r->did_close) return 1;
    i64 seq = p->seq & 0xFFFFFFFFLL;
    if (seq == (e->start_seq & 0xFFFFFFFFLL)) return 0;
    return (p->flags & F_ACK) || e->state != SYN_ACK_SENT || r->state != INACTIVE ||
           seq != (r->start_seq & 0xFFFFFFFFLL);
}

static inline int bit_test(const uint32_t *bits, int port) { return (bits[port >> 5] >> (port & 31)) & 1; }

static flow_t *new_flow(Core *c, const flowkey_t *k, uint64_t h, const pkt_t *p, int sport, int dport, i64 ts) {
    flow_t *f = PyMem_Calloc(1, sizeof(flow_t));
    if (!f) {
        PyErr_NoMemory();
        return NULL;
    }
    f->key = *k;
    f->hash = h;
    f->proto = p->proto;
    f->alen = p->alen;
    f->one_way = p->one_way;
    f->tunnel = p->tunnel;
    memcpy(f->o_ip, p->src, p->alen);
    memcpy(f->r_ip, p->dst, p->alen);
    f->o_port = sport;
    f->r_port = dport;
    f->start = f->last = f->expire = ts;
    f->o_size = f->r_size = -1;
    f->bad_thresh[0] = f->bad_thresh[1] = 1;
    f->hist = f->hist_inline;
    f->hist_cap = sizeof(f->hist_inline);
    ep_init(&f->eps[0]);
    ep_init(&f->eps[1]);
    int flip = 0;  /* FlowTable._new (Zeek's NewConn / WantConnection) */
    if (p->proto == P_TCP) {
        int flags = p->flags;
        if (!(flags & F_SYN) || (flags & F_ACK)) {
            if (bit_test(c->lsp_tcp, sport))
                flip = !bit_test(c->lsp_tcp, dport) || (!(flags & F_SYN) && sport < dport);
            f->synack_first = !flip && (flags & (F_SYN | F_ACK | F_RST)) == (F_SYN | F_ACK) && !p->bad;
        }
    } else if (p->proto == P_UDP) {
        flip = bit_test(c->lsp_udp, sport) && !bit_test(c->lsp_udp, dport);
    }
    static const u8 BROADCAST4[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    if (flip && !(p->alen == 4 && memcmp(p->dst, BROADCAST4, 4) == 0)) flow_flip(c, f, 0);
    /* insert */
    size_t bi = h & (c->nbuckets - 1);
    f->hnext = c->buckets[bi];
    c->buckets[bi] = f;
    f->prev = c->tail;
    if (c->tail) c->tail->next = f; else c->head = f;
    c->tail = f;
    c->count++;
    if (c->count > c->nbuckets && grow(c) < 0) return NULL;
    return f;
}

static void scaled(Core *c, flow_t *f, ep_t *e, char code, int rxmt) {
    if (rxmt) {
        if (++e->rxmt_cnt == e->rxmt_thresh) {
            hist_append(c, f, code);
            e->rxmt_thresh *= 10;
        }
    } else {
        if (++e->gap_cnt == e->gap_thresh) {
            hist_append(c, f, code);
            e->gap_thresh *= 10;
        }
    }
}

/* FIN closes, RST resets (both: RESET, with CLOSED as the previous state, as Zeek has it). */
static int close_or_reset(ep_t *ep, int fin, int rst) {
    if (fin) set_state(ep, CLOSED);
    if (rst) set_state(ep, RESET);
    return fin || rst;
}

static int state_machine(Core *c, flow_t *f, ep_t *ep, ep_t *peer, int is_orig, int flags, i64 length, i64 useq) {
    int syn = flags & F_SYN, fin = flags & F_FIN, rst = flags & F_RST, ackf = flags & F_ACK;
    int do_close = 0;
    int st = ep->state;
    if (st == INACTIVE) {
        if (syn) {
            if (is_orig) {
                set_state(ep, ackf ? SYN_ACK_SENT : SYN_SENT);
            } else {
                if (!ackf && peer->state == SYN_ACK_SENT && useq == ep->start_seq) {
                    flow_flip(c, f, 0);
                    set_state(peer, ESTABLISHED);
                }
                if (peer->state == SYN_SENT) set_state(peer, ESTABLISHED);
                set_state(ep, ESTABLISHED);
            }
        }
        do_close = close_or_reset(ep, fin, rst);
        if (ep->state == INACTIVE) {
            if (!is_orig && length == 0 && O(f)->state == SYN_SENT) {
                /* a bare ACK from the responder to a SYN: stays inactive */
            } else if (ackf && peer->state == ESTABLISHED) {
                set_state(ep, ESTABLISHED);
            } else {
                set_state(ep, PARTIAL);
            }
        }
    } else if (st == SYN_SENT || st == SYN_ACK_SENT) {
        do_close = close_or_reset(ep, fin, rst);
    } else if (st == ESTABLISHED || st == PARTIAL) {
        if (syn && st == PARTIAL && peer->state == INACTIVE && !ackf) set_state(ep, SYN_SENT);
        if (fin && !rst) {
            set_state(ep, CLOSED);
            if (peer->state == RESET && peer->prev_state == CLOSED) set_state(peer, CLOSED);
            do_close = 1;
        }
        if (rst) {
            set_state(ep, RESET);
            do_close = 1;
        }
    } else if (st == CLOSED && rst && peer->state != CLOSED) {
        set_state(ep, RESET);
        if (!ep->did_close) do_close = 1;
    }
    return do_close;
}

static i64 tcp_expire(flow_t *f) {
    ep_t *o = O(f), *r = R(f);
    if (o->state == RESET || r->state == RESET) return f->last + RESET_DELAY;
    if (o->did_close && r->did_close) return f->last + CLOSE_DELAY;
    if (o->did_close || r->did_close) {
        if (o->state == INACTIVE || r->state == INACTIVE) return f->last + CLOSE_DELAY;
        return f->last + TCP_INACTIVITY;
    }
    if ((o->state == SYN_SENT || o->state == SYN_ACK_SENT) && r->state == INACTIVE) return f->start + ATTEMPT_DELAY;
    return f->last + TCP_INACTIVITY;
}

static void set_mac(flow_t *f, int is_orig, const u8 *mac) {
    if (!mac) return;
    if (is_orig && !f->has_o_mac) {
        memcpy(f->o_mac, mac, 6);
        f->has_o_mac = 1;
    } else if (!is_orig && !f->has_r_mac) {
        memcpy(f->r_mac, mac, 6);
        f->has_r_mac = 1;
    }
}

/* TCPSessionAdapter::Process (collectors.flows.FlowTable._tcp) */
static void tcp_packet(Core *c, flow_t *f, const pkt_t *p, int is_orig, i64 ts) {
    int flags = p->flags;
    i64 seq = p->seq, ack = p->ack, length = p->plen;
    int syn = flags & F_SYN, fin = flags & F_FIN, rst = flags & F_RST, ackf = flags & F_ACK;
    ep_t *ep, *peer;
    if (is_orig) {
        ep = O(f), peer = R(f);
        f->o_pkts++;
        f->o_bytes += p->iplen;
    } else {
        ep = R(f), peer = O(f);
        f->r_pkts++;
        f->r_bytes += p->iplen;
    }
    set_mac(f, is_orig, p->mac);
    i64 seg_len = length + (syn ? 1 : 0) + (fin ? 1 : 0);
    if (rst) seg_len -= length;
    int st = ep->state;
    if (st == INACTIVE) {
        if (syn) init_seqs(ep, seq, seq + seg_len);
        else init_seqs(ep, seq - 1, seq);
    } else if (syn && (((st == SYN_SENT || st == SYN_ACK_SENT) && (seq & 0xFFFFFFFFLL) != (ep->start_seq & 0xFFFFFFFFLL)) ||
                       st == ESTABLISHED || st == PARTIAL || (st == RESET && ep->prev_state == INACTIVE))) {
        init_seqs(ep, seq, seq + seg_len);
    }
    i64 useq = unwrap(seq, ep->last_seq);
    i64 rel_seq = useq - ep->start_seq;

    int up = is_orig;
    int nbits = !!syn + !!fin + !!rst;
    if (nbits > 1) {
        if (fin && rst) check_history(c, f, up_lo(up, 'I'), up_lo(up, 'I'));
        else check_history(c, f, up_lo(up, 'Q'), up_lo(up, 'Q'));
    } else if (nbits == 1) {
        if (syn) {
            char code = up_lo(up, ackf ? 'H' : 'S');
            if (check_history(c, f, up_lo(up, 'S'), code) && rel_seq != ep->hist_last_syn) hist_append(c, f, code);
            ep->hist_last_syn = rel_seq;
        } else if (fin) {
            char code = up_lo(up, 'F');
            if (check_history(c, f, code, code) && rel_seq + length != ep->hist_last_fin) hist_append(c, f, code);
            ep->hist_last_fin = rel_seq + length;
        } else {
            char code = up_lo(up, 'R');
            if (check_history(c, f, code, code) && rel_seq != ep->hist_last_rst) hist_append(c, f, code);
            ep->hist_last_rst = rel_seq;
        }
    } else if (length) {
        check_history(c, f, up_lo(up, 'D'), up_lo(up, 'D'));
    } else if (ackf) {
        check_history(c, f, up_lo(up, 'A'), up_lo(up, 'A'));
    }

    if (!O(f)->did_close || !R(f)->did_close) f->last = ts;
    if (fin) {
        ep->fin_cnt++;
        ep->fin_rel = rel_seq + seg_len;
    }
    if (ackf) {
        if (peer->state == INACTIVE) {
            init_seqs(peer, ack - 1, ack - 1);
        } else if (!rst) {
            i64 uack = unwrap(ack, peer->ack_seq);
            if (!(ack == 0 && uack - peer->ack_seq > TOO_LARGE_SEQ_DELTA) && uack > peer->ack_seq) peer->ack_seq = uack;
        }
    }
    i64 last = useq + seg_len;
    i64 delta_last = last - ep->last_seq;
    if ((syn || rst) && (delta_last > TOO_LARGE_SEQ_DELTA || delta_last < -TOO_LARGE_SEQ_DELTA)) {
        /* implausible jump on SYN/RST: ignored */
    } else if (fin && ep->last_seq == ep->start_seq + 1) {
        ep->last_seq = last;
    } else if (ep->state == RESET) {
        /* nothing */
    } else if (delta_last > 0) {
        ep->last_seq = last;
    } else if (length > 0) {
        scaled(c, f, ep, up_lo(up, 'T'), 1);
    }

    int do_close = state_machine(c, f, ep, peer, is_orig, flags, length, useq);

    if (length > 0 && !rst) {
        i64 dstart = rel_seq + (syn ? 1 : 0);
        if (dstart <= ep->rx_end && ep->rx_end < dstart + length && p->caplen >= length) ep->rx_end = dstart + length;
    }
    if (ackf && !rst && peer->state != INACTIVE) {
        i64 rel_ack = unwrap(ack, peer->ack_seq) - peer->start_seq;
        if (peer->fin_cnt && rel_ack >= peer->fin_rel) rel_ack = peer->fin_rel - 1;
        if (rel_ack > peer->rx_end) {
            f->missed += rel_ack - peer->rx_end;
            peer->rx_end = rel_ack;
            scaled(c, f, peer, peer == O(f) ? 'G' : 'g', 0);
        }
    }
    if (do_close) ep->did_close = 1;
    f->expire = tcp_expire(f);
}

static inline void wr32le(u8 *b, uint32_t v) {
    b[0] = (u8)v, b[1] = (u8)(v >> 8), b[2] = (u8)(v >> 16), b[3] = (u8)(v >> 24);
}

static int buf_reserve(bytebuf_t *o, size_t more) {
    if (o->len + more <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + more) cap *= 2;
    u8 *nb = PyMem_Realloc(o->b, cap);
    if (!nb) {
        PyErr_NoMemory();
        return -1;
    }
    o->b = nb, o->cap = cap;
    return 0;
}

/* Append one frame as a pcapng enhanced packet block (little-endian, nanosecond timestamps; interface id = slot
 * of its link type, see linktypes()). Returns 1 if appended, 0 if its link type has no slot left, -1 on memory
 * failure. */
static int epb_append(Core *c, bytebuf_t *o, int linktype, const u8 *frame, Py_ssize_t caplen, i64 wirelen, i64 ts) {
    int ifid = 0;
    while (ifid < c->n_if && c->if_link[ifid] != linktype) ifid++;
    if (ifid == c->n_if) {
        if (c->n_if == MAX_IFACES) return 0;  /* more link types than a stream carries: not selected */
        c->if_link[c->n_if++] = linktype;
    }
    size_t padded = ((size_t)caplen + 3) & ~(size_t)3, total = 32 + padded;
    if (buf_reserve(o, total) < 0) return -1;
    u8 *w = o->b + o->len;
    uint64_t t = (uint64_t)ts;
    wr32le(w, 6), wr32le(w + 4, (uint32_t)total), wr32le(w + 8, (uint32_t)ifid);
    wr32le(w + 12, (uint32_t)(t >> 32)), wr32le(w + 16, (uint32_t)t);
    wr32le(w + 20, (uint32_t)caplen), wr32le(w + 24, (uint32_t)(wirelen < caplen ? caplen : wirelen));
    memcpy(w + 28, frame, (size_t)caplen);
    memset(w + 28 + caplen, 0, padded - (size_t)caplen);
    wr32le(w + 28 + padded, (uint32_t)total);
    o->len += total;
    return 1;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* host-pair routing of selected frames (collectors.protocols.deep_fanout)                                      */

/* Whether a frame of this link type gets (or has) an interface id in the selection stream (epb_append). */
static int has_slot(Core *c, int linktype) {
    for (int i = 0; i < c->n_if; i++)
        if (c->if_link[i] == linktype) return 1;
    return c->n_if < MAX_IFACES;
}

static uint32_t CRC_TABLE[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t v = i;
        for (int k = 0; k < 8; k++) v = (v >> 1) ^ (0xEDB88320u & (0u - (v & 1)));
        CRC_TABLE[i] = v;
    }
}

static uint32_t crc32_update(uint32_t crc, const u8 *b, size_t n) {
    for (size_t i = 0; i < n; i++) crc = CRC_TABLE[(crc ^ b[i]) & 0xFF] ^ (crc >> 8);
    return crc;
}

static inline uint32_t rd32le(const u8 *b) {
    return ((uint32_t)b[3] << 24) | ((uint32_t)b[2] << 16) | ((uint32_t)b[1] << 8) | b[0];
}

static inline int is_dhcp_port(int p) { return p == 67 || p == 68 || p == 546 || p == 547; }

/* outer_ip.ip_offset: the ethertype (0x0800 / 0x86DD) of the outermost IP header of the frame b[0:end] and
 * its offset in *off, where it is at a place read here (as the decoder's link types); else 0. */
static int route_ip_offset(int linktype, const u8 *b, Py_ssize_t end, Py_ssize_t *off) {
    int etype = 0, version;
    Py_ssize_t o = 0;
    switch (linktype) {
        case 1:
            if (end < 14) return 0;
            etype = rd16(b + 12), o = 14;
            while ((etype == 0x8100 || etype == 0x88A8 || etype == 0x9100) && end - o >= 4)
                etype = rd16(b + o + 2), o += 4;
            break;
        case 113:
            if (end < 16) return 0;
            etype = rd16(b + 14), o = 16;
            break;
        case 276:
            if (end < 20) return 0;
            etype = rd16(b), o = 20;
            break;
        case 0: case 108: case 101: case 12: case 14: case 228: case 229:
            o = linktype == 0 || linktype == 108 ? 4 : 0;
            version = o < end ? b[o] >> 4 : 0;
            etype = version == 4 ? 0x0800 : version == 6 ? 0x86DD : 0;
            break;
        default:
            return 0;
    }
    *off = o;
    return etype == 0x0800 || etype == 0x86DD ? etype : 0;
}

/* HostPairRouter.share for a frame deep_fanout.plain_pair reads (the outermost IP header carries TCP, or UDP off the
 * tunnel ports): the share, or -1 when the Python router must decide (IP fragments, which go where their datagram's
 * first fragment went, and whatever its decoder reads). */
static int plain_share(int shares, int linktype, const u8 *b, Py_ssize_t end) {
    Py_ssize_t off;
    int etype = route_ip_offset(linktype, b, end, &off);
    if (!etype) return -1;
    int proto, fragment, alen;
    Py_ssize_t l4;
    if (etype == 0x0800) {
        if (end - off < 20) return -1;
        proto = b[off + 9], l4 = off + (b[off] & 0x0F) * 4, alen = 4;
        fragment = rd16(b + off + 6) & 0x3FFF;
    } else {
        if (end - off < 40) return -1;
        proto = b[off + 6], l4 = off + 40, alen = 16;
        fragment = proto == 44;
    }
    const u8 *a = b + off + (alen == 4 ? 12 : 8), *z = a + alen;
    if (fragment) return -1;
    if (proto != P_TCP) {
        if (proto != P_UDP || end - l4 < 4) return -1;
        int sport = rd16(b + l4), dport = rd16(b + l4 + 2);
        if (is_tunnel_port(sport) || is_tunnel_port(dport)) return -1;
        if (is_dhcp_port(sport) || is_dhcp_port(dport)) return 0;
    }
    if (memcmp(a, z, (size_t)alen) > 0) {
        const u8 *t = a;
        a = z, z = t;
    }
    uint32_t crc = crc32_update(crc32_update(0xFFFFFFFFu, a, (size_t)alen), z, (size_t)alen) ^ 0xFFFFFFFFu;
    return (int)(crc % (uint32_t)shares);
}

/* The share of a selected frame: read here, or asked of share_fn(linktype, frame, 0, caplen). -1 on error. */
static int route_frame(Core *c, int linktype, const u8 *frame, Py_ssize_t caplen) {
    int share = plain_share(c->shares, linktype, frame, caplen);
    if (share >= 0) return share;
    const char *bytes = caplen ? (const char *)frame : "";
    PyObject *r = PyObject_CallFunction(c->share_fn, "iy#in", linktype, bytes, caplen, 0, caplen);
    if (!r) return -1;
    long v = PyLong_Check(r) ? PyLong_AsLong(r) : -1;
    Py_DECREF(r);
    if (v < 0 || v >= c->shares) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "share must return a share index below shares");
        return -1;
    }
    return (int)v;
}

/* The kept blocks of one flow (release_syn), each into its share's buffer. Returns 0, or -1 on error. */
static int route_blocks(Core *c, const bytebuf_t *kept) {
    size_t pos = 0;
    while (kept->len - pos >= 32) {  /* blocks epb_append wrote: checked all the same */
        const u8 *block = kept->b + pos;
        uint32_t len = rd32le(block + 4), ifid = rd32le(block + 8), caplen = rd32le(block + 20);
        if (len < 32 || len > kept->len - pos || caplen > len - 32 || ifid >= (uint32_t)c->n_if) {
            PyErr_SetString(PyExc_SystemError, "damaged kept frame");
            return -1;
        }
        int share = route_frame(c, c->if_link[ifid], block + 28, (Py_ssize_t)caplen);
        if (share < 0) return -1;
        bytebuf_t *o = &c->parts[share];
        if (buf_reserve(o, len) < 0) return -1;
        memcpy(o->b + o->len, block, len);
        o->len += len;
        c->part_frames[share]++;
        pos += len;
    }
    return 0;
}

/* The current frame into the selection stream. */
static int select_frame(Core *c, int linktype, const u8 *frame, Py_ssize_t caplen, i64 wirelen, i64 ts) {
    bytebuf_t *o = &c->sel;
    int share = 0;
    if (c->shares > 1) {  /* its share's buffer; a frame without an interface slot is not selected, nor routed */
        if (!has_slot(c, linktype)) return 0;
        share = route_frame(c, linktype, frame, caplen);
        if (share < 0) return -1;
        o = &c->parts[share];
    }
    int r = epb_append(c, o, linktype, frame, caplen, wirelen, ts);
    if (r > 0) c->selected++;
    if (r > 0 && c->shares > 1) c->part_frames[share]++;
    return r < 0 ? -1 : 0;
}

/* Detection decided: the kept SYN / SYN-ACK frames go first when the flow is selected, else they are dropped. */
static int release_syn(Core *c, flow_t *f, int keep) {
    int r = 0;
    if (keep && f->syn.len && c->shares > 1) {
        r = route_blocks(c, &f->syn);
        if (r == 0) c->selected += f->syn_frames;
    } else if (keep && f->syn.len) {
        if (buf_reserve(&c->sel, f->syn.len) < 0) {
            r = -1;
        } else {
            memcpy(c->sel.b + c->sel.len, f->syn.b, f->syn.len);
            c->sel.len += f->syn.len;
            c->selected += f->syn_frames;
        }
    }
    PyMem_Free(f->syn.b);
    memset(&f->syn, 0, sizeof(f->syn));
    f->syn_frames = 2;  /* nothing more is kept */
    return r;
}

/* FlowTable._within_cap: a TCP direction hands the deep path at most deep_max payload bytes; the first packet
 * that does not fit cuts the direction for good, and every byte cut is counted. Datagrams are not capped. */
static int within_cap(Core *c, flow_t *f, const pkt_t *p, int is_orig) {
    if (p->proto != P_TCP) return 1;
    int side = is_orig ? 0 : 1;
    i64 used = f->deep[side];
    if (used + p->plen <= c->deep_max) {  /* used <= deep_max + 1 and plen <= MAX_FIELD: no overflow */
        f->deep[side] = used + p->plen;
        return 1;
    }
    if (used <= c->deep_max) {  /* the first cut of this direction */
        f->deep[side] = c->deep_max + 1;
        c->deep_cut_sides++;
    }
    f->deep_cut += p->plen;
    c->deep_cut_bytes += p->plen;
    return 0;
}

/* One call of the Python probe: 0 with (*idx, *mode) set, -1 with an exception pending. */
static int call_probe(Core *c, const pkt_t *p, int is_orig, const u8 *data, int n, i64 length, long *idx,
                      long long *mode) {
    PyObject *r = PyObject_CallFunction(c->probe, "iNy#L", p->proto, PyBool_FromLong(is_orig), (const char *)data,
                                        (Py_ssize_t)n, (long long)length);
    if (!r) return -1;
    *idx = -1;
    *mode = -2;
    if (PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 2) {
        *idx = PyLong_AsLong(PyTuple_GET_ITEM(r, 0));
        *mode = PyLong_AsLongLong(PyTuple_GET_ITEM(r, 1));
    }
    Py_DECREF(r);
    if (PyErr_Occurred() || *idx < 0 || *idx >= PyTuple_GET_SIZE(c->services) || *mode < -1 || *mode > MAX_FIELD) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "probe must return (service index, selection)");
        return -1;
    }
    return 0;
}

/* FlowTable._select: probe the first payload of each direction once; count down the selection. */
static int select_packet(Core *c, flow_t *f, const pkt_t *p, int is_orig) {
    /* tshark tries the lower port's dissector first unless the handshake named the server: keep the SYNs of
     * flows whose client port is the lower one */
    if (!f->svc && p->proto == P_TCP && (p->flags & F_SYN) && p->plen <= 0 && c->collect && c->cur_frame &&
        f->syn_frames < 2 && f->o_port < f->r_port) {
        int r = epb_append(c, &f->syn, c->cur_link, c->cur_frame, c->cur_caplen, c->cur_wirelen, c->cur_ts);
        if (r < 0) c->failed = 1;
        f->syn_frames += r > 0;
        return 0;
    }
    i64 cap = p->proto == P_TCP ? p->caplen : p->caplen - 8;
    if (cap > p->plen) cap = p->plen;
    if (p->plen <= 0 || cap <= 0 || !p->payload) return 0;
    if (!f->svc) {
        int bit = is_orig ? 1 : 2, side = is_orig ? 0 : 1;
        if (f->probed & bit) return 0;
        c->probes++;
        u8 data[PROBE_MIN + PROBE_BYTES];
        int pre = f->prelen[side], n = (int)(cap < PROBE_BYTES ? cap : PROBE_BYTES);
        memcpy(data, f->pre[side], (size_t)pre);
        memcpy(data + pre, p->payload, (size_t)n);
        n = pre + n < PROBE_BYTES ? pre + n : PROBE_BYTES;
        long idx;
        long long mode;
        if (call_probe(c, p, is_orig, data, n, p->plen + pre, &idx, &mode) < 0) {
            c->failed = 1;
            return 0;
        }
        if (!idx) {
            if (n < PROBE_MIN && cap == p->plen) {  /* a short, whole payload: probe again with what follows, */
                memcpy(f->pre[side], data, (size_t)n);  /* and keep its frame in case the flow is detected then */
                f->prelen[side] = n;
                return within_cap(c, f, p, is_orig);
            }
            f->probed |= bit;
            if (f->probed == 3 && release_syn(c, f, 0) < 0) c->failed = 1;
            return 0;
        }
        f->probed |= bit;
        f->svc = (int)idx;
        f->sel = mode;
        f->reprobes = c->upgrade_to && c->upgrade_to[idx] ? REPROBES : 0;
        if (release_syn(c, f, mode != 0) < 0) c->failed = 1;
    } else if (f->reprobes > 0) {  /* STARTTLS and the like: does a later payload open the upgraded protocol? */
        f->reprobes--;
        long idx;
        long long mode;
        if (call_probe(c, p, is_orig, p->payload, (int)(cap < PROBE_BYTES ? cap : PROBE_BYTES), p->plen, &idx,
                       &mode) < 0) {
            c->failed = 1;
            return 0;
        }
        if (idx == c->upgrade_to[f->svc]) {
            f->svc2 = (int)idx;
            f->reprobes = 0;
            if (f->sel != -1 && (mode == -1 || mode > f->sel)) f->sel = mode;
        }
    }
    if (!f->sel || !within_cap(c, f, p, is_orig)) return 0;
    if (f->sel > 0) f->sel--;
    return 1;
}

/* FlowTable.add; returns whether the deep path selected the packet */
static int add_packet(Core *c, const pkt_t *p, i64 ts) {
    int proto = p->proto, sport = p->sport, dport = p->dport, flags = p->flags;
    if (proto != P_TCP && proto != P_UDP && proto != P_ICMP && proto != P_ICMP6) sport = dport = 0;
    flowkey_t k;
    memset(&k, 0, sizeof(k));
    k.proto = (u8)proto;
    k.alen = (u8)p->alen;
    int cmp = memcmp(p->src, p->dst, p->alen);
    if (p->one_way || cmp < 0 || (cmp == 0 && sport <= dport)) {
        memcpy(k.a, p->src, p->alen), memcpy(k.b, p->dst, p->alen);
        k.ap = (uint16_t)sport, k.bp = (uint16_t)dport;
        k.one_way = (u8)p->one_way;
    } else {
        memcpy(k.a, p->dst, p->alen), memcpy(k.b, p->src, p->alen);
        k.ap = (uint16_t)dport, k.bp = (uint16_t)sport;
    }
    uint64_t h = key_hash(&k);
    flow_t *f = c->buckets[h & (c->nbuckets - 1)];
    while (f && (f->hash != h || memcmp(&f->key, &k, sizeof(k)) != 0)) f = f->hnext;
    if (f && (ts > f->expire || (proto == P_TCP && (flags & F_SYN) && is_reuse(f, p)))) {
        emit_flow(c, f);
        f = NULL;
    }
    if (!f) {
        if (c->count >= c->max_flows && c->head) {
            c->evicted++;
            emit_flow(c, c->head);
        }
        f = new_flow(c, &k, h, p, sport, dport, ts);
        if (!f) {
            c->failed = 1;
            return 0;
        }
    } else if (f->synack_first) {  /* an ACK or data after a first SYN-ACK flips it (FlowTable.add) */
        f->synack_first = 0;
        if (!p->bad && ((flags & F_ACK) || p->plen) && !(flags & F_RST)) {
            flow_flip(c, f, 1);
            R(f)->state = ESTABLISHED;
        }
    }
    int is_orig = sport == f->o_port && memcmp(p->src, f->o_ip, p->alen) == 0;
    int selected = 0;
    if (p->bad) {
        int side = is_orig ? 0 : 1;
        if (++f->bad_sums[side] == f->bad_thresh[side]) {
            hist_append(c, f, is_orig ? 'C' : 'c');
            f->bad_thresh[side] *= 10;
        }
        i64 e = ts + (proto == P_TCP ? TCP_INACTIVITY : UDP_INACTIVITY);
        if (e > f->expire) f->expire = e;
    } else if (proto == P_TCP) {
        tcp_packet(c, f, p, is_orig, ts);
    } else {
        i64 plen = p->plen;
        if (is_orig) {
            f->o_pkts++;
            f->o_bytes += p->iplen;
            f->o_size = f->o_size < 0 ? plen : f->o_size + plen;
        } else {
            f->r_pkts++;
            f->r_bytes += p->iplen;
            f->r_size = f->r_size < 0 ? plen : f->r_size + plen;
        }
        set_mac(f, is_orig, p->mac);
        if (proto == P_UDP) check_history(c, f, up_lo(is_orig, 'D'), up_lo(is_orig, 'D'));
        f->last = ts;
        f->expire = ts + (proto == P_UDP ? UDP_INACTIVITY : ICMP_INACTIVITY);
    }
    if (c->probe && !p->bad && (proto == P_TCP || proto == P_UDP)) selected = select_packet(c, f, p, is_orig);
    if (ts >= c->next_sweep) sweep(c, ts);
    return selected;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* packets in                                                                                                  */

static int tunnel_code(PyObject *s) {
    for (int i = 0; i < T_COUNT; i++)
        if (PyUnicode_CompareWithASCIIString(s, TUNNEL_NAMES[i]) == 0) return i;
    return T_NONE;
}

/* Methods that touch the table need __init__ to have run (FlowCore.__new__ alone leaves it NULL). */
static int ready(Core *c) {
    if (c->buckets) return 1;
    PyErr_SetString(PyExc_RuntimeError, "FlowCore is not initialised");
    return 0;
}

/* Packet times beyond MAX_TS (a hostile pcapng timestamp or offset) would overflow the timer arithmetic. */
static int ts_ok(i64 ts) {
    if (ts <= MAX_TS) return 1;
    PyErr_Format(PyExc_ValueError, "packet timestamp %lld ns out of range", (long long)ts);
    return 0;
}

/* Integer field i of a Pkt tuple, which must lie in [lo, hi] (ports index the server-port bitsets). */
static int pkt_field(PyObject *t, int i, i64 lo, i64 hi, i64 *out) {
    long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "packet field %d out of range: %lld", i, v);
        return -1;
    }
    *out = v;
    return 0;
}

/* The payload of a Python-decoded TCP/UDP packet: Pkt.buf (item 12) from Pkt.l4_offset (item 11) on. The view
 * is held by the caller until the packet is processed; p->payload stays NULL when anything does not fit. */
static int python_payload(PyObject *t, pkt_t *p, Py_buffer *view) {
    i64 l4;
    if (pkt_field(t, 11, 0, PY_SSIZE_T_MAX, &l4) < 0) return -1;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(t, 12), view, PyBUF_SIMPLE) < 0) return -1;
    const u8 *b = view->buf;
    i64 len = view->len, start = -1;
    if (p->proto == P_TCP && l4 + 20 <= len) start = l4 + (b[l4 + 12] >> 4) * 4;
    else if (p->proto == P_UDP) start = l4 + 8;
    if (start >= 0 && start < len) {
        i64 room = len - start;  /* never read past the buffer, whatever the tuple's caplen says */
        i64 have = p->proto == P_TCP ? p->caplen : p->caplen - 8;
        if (have > room) p->caplen = p->proto == P_TCP ? room : room + 8;
        p->payload = b + start;
    }
    return 0;
}

/* Feed the packets of a collectors.decode.Pkt list (the Python decoder's answer for a delegated frame); returns
 * how many the deep path selected, -1 on error. */
static int add_python_packets(Core *c, PyObject *list, i64 ts) {
    if (!ready(c) || !ts_ok(ts)) return -1;
    int selected = 0;
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "fallback decoder must return a list");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *t = PyList_GET_ITEM(list, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 17) {
            PyErr_SetString(PyExc_TypeError, "fallback decoder returned a malformed packet");
            return -1;
        }
        pkt_t p;
        memset(&p, 0, sizeof(p));
        PyObject *src = PyTuple_GET_ITEM(t, 0), *dst = PyTuple_GET_ITEM(t, 1), *mac = PyTuple_GET_ITEM(t, 15);
        if (!PyBytes_Check(src) || !PyBytes_Check(dst) || PyBytes_GET_SIZE(src) != PyBytes_GET_SIZE(dst) ||
            (PyBytes_GET_SIZE(src) != 4 && PyBytes_GET_SIZE(src) != 16)) {
            PyErr_SetString(PyExc_TypeError, "fallback decoder returned bad addresses");
            return -1;
        }
        p.src = (const u8 *)PyBytes_AS_STRING(src);
        p.dst = (const u8 *)PyBytes_AS_STRING(dst);
        p.alen = (int)PyBytes_GET_SIZE(src);
        i64 proto, sport, dport, flags;
        if (pkt_field(t, 2, 0, 255, &proto) < 0 || pkt_field(t, 3, 0, 65535, &sport) < 0 ||
            pkt_field(t, 4, 0, 65535, &dport) < 0 || pkt_field(t, 5, -MAX_FIELD, MAX_FIELD, &p.iplen) < 0 ||
            pkt_field(t, 6, 0, 255, &flags) < 0 || pkt_field(t, 7, 0, 0xFFFFFFFFLL, &p.seq) < 0 ||
            pkt_field(t, 8, 0, 0xFFFFFFFFLL, &p.ack) < 0 || pkt_field(t, 9, -MAX_FIELD, MAX_FIELD, &p.plen) < 0 ||
            pkt_field(t, 14, -MAX_FIELD, MAX_FIELD, &p.caplen) < 0)
            return -1;
        p.proto = (int)proto, p.sport = (int)sport, p.dport = (int)dport, p.flags = (int)flags;
        if (!PyUnicode_Check(PyTuple_GET_ITEM(t, 13))) {
            PyErr_SetString(PyExc_TypeError, "fallback decoder returned a non-str tunnel");
            return -1;
        }
        p.one_way = PyObject_IsTrue(PyTuple_GET_ITEM(t, 10));
        p.tunnel = tunnel_code(PyTuple_GET_ITEM(t, 13));
        p.mac = (PyBytes_Check(mac) && PyBytes_GET_SIZE(mac) == 6) ? (const u8 *)PyBytes_AS_STRING(mac) : NULL;
        p.bad = PyObject_IsTrue(PyTuple_GET_ITEM(t, 16));
        if (PyErr_Occurred()) return -1;
        Py_buffer view = {0};
        int has_view = 0;
        if (c->probe && (p.proto == P_TCP || p.proto == P_UDP)) {
            if (python_payload(t, &p, &view) < 0) return -1;
            has_view = 1;
        }
        selected += add_packet(c, &p, ts);
        if (has_view) PyBuffer_Release(&view);
        if (c->failed) return -1;
    }
    return selected;
}

/* One frame through decoder and flow table; buf_obj is handed to the fallback for delegated frames. */
static int frame_packets(Core *c, PyObject *buf_obj, const u8 *b, int linktype, Py_ssize_t off, Py_ssize_t caplen,
                         i64 wirelen, i64 ts) {
    int selected = 0;
    c->packets++;
    if (caplen > MAX_PACKET) {
        c->errors[E_OVERSIZED]++;
        return 0;
    }
    dec_t d;
    if (decode_frame(c, &d, linktype, b, off, caplen)) {
        if (!d.n) {
            c->undecoded++;
            return c->collect ? select_frame(c, linktype, b + off, caplen, wirelen, ts) : 0;
        }
        for (int i = 0; i < d.n; i++) {
            selected += add_packet(c, &d.p[i], ts);
            if (c->failed) return -1;
        }
        return selected && c->collect ? select_frame(c, linktype, b + off, caplen, wirelen, ts) : 0;
    }
    c->delegated++;
    PyObject *pkts = PyObject_CallFunction(c->fallback, "iOnnL", linktype, buf_obj, off, caplen, (long long)ts);
    if (!pkts) return -1;
    int r = add_python_packets(c, pkts, ts);
    Py_ssize_t npkts = PyList_GET_SIZE(pkts);
    if (r == 0 && npkts == 0) c->undecoded++;
    Py_DECREF(pkts);
    if (r < 0) return -1;
    /* selected, or a frame without a flow of its own (an IP fragment awaiting the rest, ARP, a link type
     * the decoders do not know): tshark gets it. b stays valid: the caller holds buf_obj's view */
    if (c->collect && (r > 0 || npkts == 0)) return select_frame(c, linktype, b + off, caplen, wirelen, ts);
    return 0;
}

/* frame_packets with the frame known to the selection (kept SYNs) for exactly its duration */
static int process_frame(Core *c, PyObject *buf_obj, const u8 *b, int linktype, Py_ssize_t off, Py_ssize_t caplen,
                         i64 wirelen, i64 ts) {
    c->cur_frame = b + off, c->cur_caplen = caplen, c->cur_link = linktype, c->cur_wirelen = wirelen, c->cur_ts = ts;
    int r = frame_packets(c, buf_obj, b, linktype, off, caplen, wirelen, ts);
    c->cur_frame = NULL;
    return r;
}

static inline uint32_t rd32x(const u8 *b, int big) {
    return big ? ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3]
               : ((uint32_t)b[3] << 24) | ((uint32_t)b[2] << 16) | ((uint32_t)b[1] << 8) | b[0];
}

PyDoc_STRVAR(feed_pcap_doc,
"feed_pcap(buf, pos, linktype, big_endian, ns_mult, snaplen) -> (pos, corrupt_caplen, packets)\n\n"
"Process every whole classic-pcap record in buf[pos:]; stops at a record that is not all there (pos points at\n"
"it, corrupt_caplen is -1) or at a corrupt record length (corrupt_caplen is that length).");

static PyObject *Core_feed_pcap(Core *c, PyObject *args) {
    PyObject *buf_obj;
    Py_ssize_t pos;
    int linktype, big;
    long long ns_mult, snaplen;
    if (!PyArg_ParseTuple(args, "OnipLL", &buf_obj, &pos, &linktype, &big, &ns_mult, &snaplen)) return NULL;
    if (!ready(c)) return NULL;
    if (ns_mult < 1 || ns_mult > 1000) {  /* 1000 (us) or 1 (ns): keeps every record time under MAX_TS */
        PyErr_SetString(PyExc_ValueError, "ns_mult must be 1 or 1000");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(buf_obj, &view, PyBUF_SIMPLE) < 0) return NULL;
    const u8 *b = view.buf;
    Py_ssize_t len = view.len;
    long long limit = snaplen > MAX_PACKET ? snaplen : MAX_PACKET;
    long long corrupt = -1;
    i64 n = 0;
    int failed = 0;
    if (pos < 0) pos = 0;
    while (pos <= len - 16) {  /* not pos + 16: pos comes from the caller and may be near PY_SSIZE_T_MAX */
        uint32_t sec = rd32x(b + pos, big), frac = rd32x(b + pos + 4, big);
        uint32_t caplen = rd32x(b + pos + 8, big), wirelen = rd32x(b + pos + 12, big);
        if (caplen > MAX_RECORD || (caplen > limit && caplen > wirelen)) {
            corrupt = caplen;
            break;
        }
        if ((Py_ssize_t)caplen > len - pos - 16) break;
        n++;
        c->bytes += wirelen;
        if (process_frame(c, buf_obj, b, linktype, pos + 16, caplen, wirelen, (i64)sec * NS + (i64)frac * ns_mult) < 0) {
            failed = 1;
            break;
        }
        pos += 16 + caplen;
    }
    PyBuffer_Release(&view);
    if (failed || c->failed) {
        c->failed = 0;
        return NULL;
    }
    return Py_BuildValue("nLL", pos, corrupt, (long long)n);
}

PyDoc_STRVAR(feed_doc, "feed(linktype, buf, offset, caplen, wirelen, ts_ns): one frame (pcapng, live capture).");

static PyObject *Core_feed(Core *c, PyObject *args) {
    PyObject *buf_obj;
    int linktype;
    Py_ssize_t off, caplen;
    long long wirelen, ts;
    if (!PyArg_ParseTuple(args, "iOnnLL", &linktype, &buf_obj, &off, &caplen, &wirelen, &ts)) return NULL;
    if (!ready(c) || !ts_ok(ts)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(buf_obj, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (off < 0 || caplen < 0 || off > view.len || caplen > view.len - off) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "frame outside the buffer");
        return NULL;
    }
    c->bytes += wirelen;
    int r = process_frame(c, buf_obj, view.buf, linktype, off, caplen, wirelen, ts);
    PyBuffer_Release(&view);
    if (r < 0 || c->failed) {
        c->failed = 0;
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(add_doc, "add(packets, ts_ns): decoded packets (collectors.decode.Pkt tuples) of one frame.");

static PyObject *Core_add(Core *c, PyObject *args) {
    PyObject *pkts;
    long long ts;
    if (!PyArg_ParseTuple(args, "O!L", &PyList_Type, &pkts, &ts)) return NULL;
    if (add_python_packets(c, pkts, ts) < 0 || c->failed) {  /* no frame here: nothing to select */
        c->failed = 0;
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* results out                                                                                                 */

static PyObject *Core_drain(Core *c, PyObject *Py_UNUSED(ignored)) {
    if (!ready(c)) return NULL;
    PyObject *out = c->emitted;
    PyObject *fresh = PyList_New(0);
    if (!fresh) return NULL;
    c->emitted = fresh;
    return out;
}

/* Python tuple order of collectors.flows keys: (proto, a, a_port, b, b_port[, 1]) */
static int key_cmp(const void *x, const void *y) {
    const flowkey_t *a = &(*(flow_t *const *)x)->key, *b = &(*(flow_t *const *)y)->key;
    if (a->proto != b->proto) return a->proto < b->proto ? -1 : 1;
    int n = a->alen < b->alen ? a->alen : b->alen, r;
    if ((r = memcmp(a->a, b->a, n))) return r;
    if (a->alen != b->alen) return a->alen < b->alen ? -1 : 1;
    if (a->ap != b->ap) return a->ap < b->ap ? -1 : 1;
    if ((r = memcmp(a->b, b->b, n))) return r;
    if (a->bp != b->bp) return a->bp < b->bp ? -1 : 1;
    return a->one_way - b->one_way;
}

static PyObject *Core_flush(Core *c, PyObject *Py_UNUSED(ignored)) {
    size_t n = c->count, i = 0;
    flow_t **all = PyMem_Malloc((n ? n : 1) * sizeof(flow_t *));
    if (!all) return PyErr_NoMemory();
    for (flow_t *f = c->head; f; f = f->next) all[i++] = f;
    qsort(all, n, sizeof(flow_t *), key_cmp);
    for (i = 0; i < n; i++) emit_flow(c, all[i]);
    PyMem_Free(all);
    if (c->failed) {
        c->failed = 0;
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Core_sweep(Core *c, PyObject *args) {
    long long now;
    if (!PyArg_ParseTuple(args, "L", &now)) return NULL;
    sweep(c, (i64)now);
    if (c->failed) {
        c->failed = 0;
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Core_error_counts(Core *c, PyObject *Py_UNUSED(ignored)) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int i = 0; i < E_COUNT; i++) {
        if (!c->errors[i]) continue;
        PyObject *v = PyLong_FromLongLong(c->errors[i]);
        if (!v || PyDict_SetItemString(d, ERROR_NAMES[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *Core_counters(Core *c, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("{sLsLsLsLsLsLsnsLsLsLsL}", "packets", (long long)c->packets, "bytes", (long long)c->bytes,
                         "undecoded", (long long)c->undecoded, "evicted", (long long)c->evicted,
                         "bad_checksums", (long long)c->bad_checksums, "delegated",
                         (long long)c->delegated, "flows", (Py_ssize_t)c->count, "selected", (long long)c->selected,
                         "probes", (long long)c->probes, "deep_cut_bytes", (long long)c->deep_cut_bytes,
                         "deep_cut_sides", (long long)c->deep_cut_sides);
}

static PyObject *Core_take_selected(Core *c, PyObject *Py_UNUSED(ignored)) {
    if (c->shares > 1) {
        PyErr_SetString(PyExc_RuntimeError, "the selection is routed to shares: take_shares()");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)c->sel.b, (Py_ssize_t)c->sel.len);
    if (out) c->sel.len = 0, c->sel_taken = c->selected;
    return out;
}

static void free_parts(Core *c) {
    for (int i = 0; c->parts && i < c->shares; i++) PyMem_Free(c->parts[i].b);
    PyMem_Free(c->parts);
    PyMem_Free(c->part_frames);
    c->parts = NULL, c->part_frames = NULL;
}

PyDoc_STRVAR(set_shares_doc,
"set_shares(shares, share=None): route every frame selected from now on to one of ``shares`` buffers (take_shares),\n"
"by collectors.protocols.deep_fanout.HostPairRouter's rule; ``share(linktype, frame, 0, caplen) -> index`` decides\n"
"the frames not read here. 1 (the default) keeps one selection stream (take_selected). The selection so far must\n"
"have been taken.");

static PyObject *Core_set_shares(Core *c, PyObject *args) {
    int shares;
    PyObject *share_fn = Py_None;
    if (!PyArg_ParseTuple(args, "i|O", &shares, &share_fn)) return NULL;
    if (shares < 1 || shares > 1024 || (shares > 1 && !PyCallable_Check(share_fn))) {
        PyErr_SetString(PyExc_ValueError, "shares must be 1 to 1024, and above 1 with a callable share");
        return NULL;
    }
    int pending = c->sel.len > 0;
    for (int i = 0; c->parts && i < c->shares; i++) pending |= c->parts[i].len > 0;
    if (pending) {
        PyErr_SetString(PyExc_ValueError, "take the selected frames before changing the shares");
        return NULL;
    }
    free_parts(c);
    Py_CLEAR(c->share_fn);
    c->shares = 1;
    if (shares > 1) {
        c->parts = PyMem_Calloc((size_t)shares, sizeof(bytebuf_t));
        c->part_frames = PyMem_Calloc((size_t)shares, sizeof(i64));
        if (!c->parts || !c->part_frames) {
            free_parts(c);
            return PyErr_NoMemory();
        }
        Py_INCREF(share_fn);
        c->share_fn = share_fn;
        c->shares = shares;
    }
    Py_RETURN_NONE;
}

static PyObject *Core_take_shares(Core *c, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(c->shares);
    if (!out) return NULL;
    for (int i = 0; i < c->shares; i++) {
        const bytebuf_t *o = c->shares > 1 ? &c->parts[i] : &c->sel;
        i64 frames = c->shares > 1 ? c->part_frames[i] : c->selected - c->sel_taken;
        PyObject *item = Py_BuildValue("(y#L)", o->b ? (const char *)o->b : "", (Py_ssize_t)o->len, (long long)frames);
        if (!item) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    for (int i = 0; c->parts && i < c->shares; i++) c->parts[i].len = 0, c->part_frames[i] = 0;
    c->sel.len = 0, c->sel_taken = c->selected;
    return out;
}

static PyObject *Core_linktypes(Core *c, PyObject *Py_UNUSED(ignored)) {
    PyObject *t = PyTuple_New(c->n_if);
    if (!t) return NULL;
    for (int i = 0; i < c->n_if; i++) {
        PyObject *v = PyLong_FromLong(c->if_link[i]);
        if (!v) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* type                                                                                                        */

static int fill_ports(PyObject *ports, uint32_t *bits) {
    memset(bits, 0, sizeof(uint32_t) * (65536 / 32 + 1));
    PyObject *it = PyObject_GetIter(ports);
    if (!it) return -1;
    PyObject *item;
    while ((item = PyIter_Next(it))) {
        long port = PyLong_AsLong(item);
        Py_DECREF(item);
        if (port < 0 || port > 65535) {
            Py_DECREF(it);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "port out of range");
            return -1;
        }
        bits[port >> 5] |= 1u << (port & 31);
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

static int Core_init(Core *c, PyObject *args, PyObject *kw) {
    static char *names[] = {"record_type", "fallback", "likely_tcp", "likely_udp", "max_flows", "verify_checksums",
                            "probe", "services", "collect", "deep_bytes_max", "upgrades", NULL};
    PyObject *record_type, *fallback, *ltcp, *ludp, *probe = Py_None, *services = Py_None, *upgrades = Py_None;
    Py_ssize_t max_flows = 500000;
    int verify = 0, collect = 0;
    long long deep_max = DEEP_BYTES_PER_DIRECTION;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|npOOpLO", names, &record_type, &fallback, &ltcp, &ludp, &max_flows,
                                     &verify, &probe, &services, &collect, &deep_max, &upgrades))
        return -1;
    if (deep_max < 1 || deep_max > MAX_FIELD) {
        PyErr_SetString(PyExc_ValueError, "deep_bytes_max must be at least 1");  /* and at most MAX_FIELD */
        return -1;
    }
    if (probe != Py_None && (!PyCallable_Check(probe) || !PyTuple_Check(services) || PyTuple_GET_SIZE(services) < 1)) {
        PyErr_SetString(PyExc_TypeError, "probe must be callable and services a non-empty tuple of names");
        return -1;
    }
    if (probe != Py_None) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(services); i++) {
            if (!PyUnicode_Check(PyTuple_GET_ITEM(services, i))) {
                PyErr_SetString(PyExc_TypeError, "service names must be str");
                return -1;
            }
        }
    }
    if (c->buckets) {
        PyErr_SetString(PyExc_RuntimeError, "FlowCore is already initialised");
        return -1;
    }
    if (upgrades != Py_None) {
        Py_ssize_t n = probe != Py_None ? PyTuple_GET_SIZE(services) : -1;
        if (!PyTuple_Check(upgrades) || PyTuple_GET_SIZE(upgrades) != n) {
            PyErr_SetString(PyExc_TypeError, "upgrades must be a tuple of service indices, one per service");
            return -1;
        }
        c->upgrade_to = PyMem_Calloc((size_t)n, sizeof(int));
        if (!c->upgrade_to) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            long to = PyLong_AsLong(PyTuple_GET_ITEM(upgrades, i));
            if (PyErr_Occurred() || to < 0 || to >= n) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "upgrades must name services by index");
                return -1;
            }
            c->upgrade_to[i] = (int)to;
        }
    }
    if (max_flows < 1) {
        PyErr_SetString(PyExc_ValueError, "max_flows must be at least 1");
        return -1;
    }
    if (fill_ports(ltcp, c->lsp_tcp) < 0 || fill_ports(ludp, c->lsp_udp) < 0) return -1;
    Py_INCREF(record_type);
    Py_INCREF(fallback);
    c->record_type = record_type;
    c->record_is_tuple = PyType_Check(record_type) && PyType_IsSubtype((PyTypeObject *)record_type, &PyTuple_Type);
    c->fallback = fallback;
    c->emitted = PyList_New(0);
    c->nbuckets = 4096;
    c->buckets = PyMem_Calloc(c->nbuckets, sizeof(flow_t *));
    if (!c->emitted || !c->buckets) {
        PyErr_NoMemory();
        return -1;
    }
    c->max_flows = (size_t)max_flows;
    c->shares = 1;
    c->verify = verify;
    c->deep_max = deep_max;
    if (probe != Py_None) {
        Py_INCREF(probe);
        Py_INCREF(services);
        c->probe = probe;
        c->services = services;
        c->collect = collect;
    }
    return 0;
}

/* The core holds Python callables (the decoder's fallback, the probe, the share function) whose owners hold the
 * core: the cycle collector must see these references, or a dropped flow path is never freed. */
static int Core_traverse(Core *c, visitproc visit, void *arg) {
    Py_VISIT(c->record_type);
    Py_VISIT(c->fallback);
    Py_VISIT(c->emitted);
    Py_VISIT(c->probe);
    Py_VISIT(c->services);
    Py_VISIT(c->share_fn);
    return 0;
}

static int Core_clear(Core *c) {
    Py_CLEAR(c->record_type);
    Py_CLEAR(c->fallback);
    Py_CLEAR(c->emitted);
    Py_CLEAR(c->probe);
    Py_CLEAR(c->services);
    Py_CLEAR(c->share_fn);
    return 0;
}

static void Core_dealloc(Core *c) {
    PyObject_GC_UnTrack(c);
    flow_t *f = c->head;
    while (f) {
        flow_t *next = f->next;
        flow_free(f);
        f = next;
    }
    PyMem_Free(c->buckets);
    Core_clear(c);
    PyMem_Free(c->upgrade_to);
    PyMem_Free(c->sel.b);
    free_parts(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef Core_methods[] = {
    {"feed_pcap", (PyCFunction)Core_feed_pcap, METH_VARARGS, feed_pcap_doc},
    {"feed", (PyCFunction)Core_feed, METH_VARARGS, feed_doc},
    {"add", (PyCFunction)Core_add, METH_VARARGS, add_doc},
    {"drain", (PyCFunction)Core_drain, METH_NOARGS, "Records of the flows finished since the last drain."},
    {"flush", (PyCFunction)Core_flush, METH_NOARGS, "Finish every open flow (end of input), in flow-key order."},
    {"sweep", (PyCFunction)Core_sweep, METH_VARARGS,
     "sweep(now_ns): finish the flows whose timers ran out by now_ns (live capture: no earlier packet is to come)."},
    {"error_counts", (PyCFunction)Core_error_counts, METH_NOARGS, "Damaged frames by reason."},
    {"counters", (PyCFunction)Core_counters, METH_NOARGS, "Packets, bytes, undecoded, evicted ... so far."},
    {"take_selected", (PyCFunction)Core_take_selected, METH_NOARGS,
     "The frames selected for the deep path since the last call (pcapng enhanced packet blocks)."},
    {"set_shares", (PyCFunction)Core_set_shares, METH_VARARGS, set_shares_doc},
    {"take_shares", (PyCFunction)Core_take_shares, METH_NOARGS,
     "(blocks, frames) per share since the last take (one entry, the selection stream, with one share)."},
    {"linktypes", (PyCFunction)Core_linktypes, METH_NOARGS,
     "Link type of each pcapng interface id used by the selected frames, in id order."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collectors._flowcore.FlowCore",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_doc = "Decoder and flow table with Zeek conn.log semantics (the C port of collectors.flows.FlowTable).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
};

/* The compiled-in constants by their collectors.flowconst names (a test holds the two tables equal). */
static PyObject *module_constants(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    static const struct { const char *name; long long value; } TABLE[] = {
        {"ICMP", P_ICMP}, {"TCP", P_TCP}, {"UDP", P_UDP}, {"ICMP6", P_ICMP6}, {"SCTP", P_SCTP},
        {"F_FIN", F_FIN}, {"F_SYN", F_SYN}, {"F_RST", F_RST}, {"F_PSH", F_PSH}, {"F_ACK", F_ACK},
        {"INACTIVE", INACTIVE}, {"SYN_SENT", SYN_SENT}, {"SYN_ACK_SENT", SYN_ACK_SENT}, {"PARTIAL", PARTIAL},
        {"ESTABLISHED", ESTABLISHED}, {"CLOSED", CLOSED}, {"RESET", RESET},
        {"NS", NS}, {"TCP_INACTIVITY", TCP_INACTIVITY}, {"UDP_INACTIVITY", UDP_INACTIVITY},
        {"ICMP_INACTIVITY", ICMP_INACTIVITY}, {"ATTEMPT_DELAY", ATTEMPT_DELAY}, {"CLOSE_DELAY", CLOSE_DELAY},
        {"RESET_DELAY", RESET_DELAY}, {"SWEEP_EVERY", SWEEP_EVERY}, {"TOO_LARGE_SEQ_DELTA", TOO_LARGE_SEQ_DELTA},
        {"HISTORY_MAX", HISTORY_MAX}, {"REPROBES", REPROBES}, {"MAX_DEPTH", MAX_DEPTH},
        {"VXLAN_PORT", VXLAN_PORT}, {"GENEVE_PORT", GENEVE_PORT}, {"TEREDO_PORT", TEREDO_PORT},
        {"GTPU_PORT", GTPU_PORT}, {"AYIYA_PORT", AYIYA_PORT}, {"GRE_UDP_PORT", GRE_UDP_PORT},
    };
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (size_t i = 0; i < sizeof TABLE / sizeof *TABLE; i++) {
        PyObject *v = PyLong_FromLongLong(TABLE[i].value);
        if (!v || PyDict_SetItemString(d, TABLE[i].name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyMethodDef module_methods[] = {
    {"constants", module_constants, METH_NOARGS, "The core's compiled-in constants, by collectors.flowconst names."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_flowcore", "Native flow-path core.", -1,
                                    module_methods};

PyMODINIT_FUNC PyInit__flowcore(void) {
    crc_init();
    if (PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "FlowCore", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
