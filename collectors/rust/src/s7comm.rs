//! S7comm over natively read TCP connections (see `collectors.protocols.s7comm_native`): `s7comm_wire.S7commReader`
//! (TPKT, COTP with its reassembly, tshark's heuristics, the S7comm header and parameter head) and
//! `S7commAnalyzer.handle` (one document per frame, from the first value of each field tshark would print for it)
//! in one, each document written as JSON.
//!
//! The reader is a line-for-line port of the Python one (its docstrings say what tshark 4.0.17 does and why); the
//! fields of a frame are kept as the analyzer reads them: the first value of each, already as a number.

use crate::Map;
use crate::document::{iso, write_doc, CidCache, DocError, Flow, Spec, Value};

const KEEP: usize = 65824; // bytes of a reassembled TSDU kept
const MAX_REASSEMBLIES: usize = 4; // COTP reassemblies under way per direction
const CLASS0: u32 = 0x10000; // class 0 reassemblies are numbered apart from class 2-4 destination references
const T125: u8 = 0;
const SES: u8 = 1;
const S7: u8 = 2;
const REJECT: i64 = -1;
const RAISE: i64 = -2;
const SES_REJECT: u8 = 0;
const SES_ACCEPT: u8 = 1;
const SES_RAISE: u8 = 2;

const SPEC: Spec<'static> = Spec { dataset: "secops.s7comm", transport: "tcp", protocol: "s7comm", keep_empty: &[] };
const SERVER_PORT: u16 = 102; // S7commAnalyzer.PORTS

fn ses_type(b: u8) -> bool {
    matches!(
        b,
        0x01 | 0x02 | 0x05 | 0x07 | 0x08 | 0x09 | 0x0A | 0x0C | 0x0D | 0x0E | 0x0F | 0x10 | 0x15 | 0x16 | 0x19 | 0x1A
            | 0x1D | 0x21 | 0x22 | 0x29 | 0x2A | 0x2D | 0x30 | 0x31 | 0x32 | 0x35 | 0x39 | 0x3A | 0x3D | 0x3E | 0x40
    )
}

fn ses_param(b: u8) -> bool {
    matches!(
        b,
        0x01 | 0x05 | 0x09 | 0x0A | 0x0B | 0x0C | 0x0F | 0x10 | 0x11 | 0x13 | 0x14 | 0x15 | 0x16 | 0x17 | 0x18 | 0x19
            | 0x1A | 0x1B | 0x21 | 0x29 | 0x2A | 0x31 | 0x32 | 0x33 | 0x34 | 0x35 | 0x36 | 0x37 | 0x38 | 0x39 | 0x3A
            | 0x3C | 0xC1 | 0xC2
    )
}

fn dr_reason(b: u8) -> bool {
    matches!(b, 0 | 1 | 2 | 3 | 128 | 129 | 130 | 131 | 132 | 133 | 135 | 136 | 138)
}

/// A byte the callers have checked is there (0 where it is not: never reached).
fn at(p: &[u8], i: i64) -> u8 {
    usize::try_from(i).ok().and_then(|i| p.get(i)).copied().unwrap_or(0)
}

fn be16(p: &[u8], i: usize) -> usize {
    (usize::from(p.get(i).copied().unwrap_or(0)) << 8) | usize::from(p.get(i + 1).copied().unwrap_or(0))
}

/// Python's `p[start:]` / `p[start:end]` (bounds clamped).
fn tail(p: &[u8], start: usize) -> &[u8] {
    p.get(start..).unwrap_or(&[])
}

fn slice(p: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(p.len());
    p.get(start.min(end)..end).unwrap_or(&[])
}

/// `S7commStats`: what the reader met and dropped.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub tpkts: u64,
    pub pdus: u64,
    pub bad_versions: u64,
    pub bad_lengths: u64,
    pub cotp_rejected: u64,
    pub not_s7: u64,
    pub ses_claimed: u64,
    pub holes: u64,
    pub dropped_bytes: u64,
    pub evicted: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.tpkts += o.tpkts;
        self.pdus += o.pdus;
        self.bad_versions += o.bad_versions;
        self.bad_lengths += o.bad_lengths;
        self.cotp_rejected += o.cotp_rejected;
        self.not_s7 += o.not_s7;
        self.ses_claimed += o.ses_claimed;
        self.holes += o.holes;
        self.dropped_bytes += o.dropped_bytes;
        self.evicted += o.evicted;
    }

    /// `native_tcp.ics_damage` of an S7comm reader.
    pub fn damage(&self) -> u64 {
        self.bad_versions + self.bad_lengths + self.evicted
    }
}

/// A COTP reassembly under way: its first KEEP bytes and its whole size.
#[derive(Default)]
struct Tsdu {
    kept: Vec<u8>,
    size: usize,
}

impl Tsdu {
    fn add(&mut self, data: &[u8]) {
        self.size += data.len();
        if self.kept.len() < KEEP && !data.is_empty() {
            let room = KEEP - self.kept.len();
            self.kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
}

/// One direction: the TPKT under reassembly and the COTP reassemblies under way (in insertion order).
#[derive(Default)]
struct Side {
    pending: Vec<u8>,
    need: usize,
    tsdus: Vec<(u32, Tsdu)>,
}

/// The first value of each field tshark prints for a frame, as the analyzer reads it.
#[derive(Default)]
struct Fields {
    rosctr: Option<u8>,
    pduref: Option<u16>,
    errcls: Option<u8>,
    errcod: Option<u8>,
    func: Option<u8>,
    ud_type: Option<u8>,
    ud_group: Option<u8>,
    ud_subfunc: Option<u8>,
    param_errcod: Option<u16>,
    servicename: Option<String>,
}

fn first<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// `ascii_text`: cut at the first NUL, bytes above 0x7F as U+FFFD.
fn ascii_text(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    raw[..end].iter().map(|&b| if b < 0x80 { char::from(b) } else { '\u{fffd}' }).collect()
}

fn ses_heuristic(data: &[u8], size: usize) -> u8 {
    if size < 2 {
        return SES_REJECT;
    }
    let mut kind = at(data, 0);
    if !ses_type(kind) {
        return SES_REJECT;
    }
    if size >= 4 && kind == 0x01 {
        kind = at(data, 2);
        if !ses_type(kind) {
            return SES_REJECT;
        }
    }
    if kind == 0x32 && size >= 3 && !ses_param(at(data, 2)) {
        return SES_REJECT;
    }
    let (mut length, mut length_len) = (usize::from(at(data, 1)), 1);
    if length == 0xFF {
        if size < 4 {
            return SES_RAISE;
        }
        length = be16(data, 2);
        length_len = 3;
    }
    length += length_len;
    if size < length {
        return SES_REJECT;
    }
    if size > 1 + length && !ses_type(at(data, (1 + length) as i64)) {
        return SES_REJECT;
    }
    SES_ACCEPT
}

fn t125_per_choice(b: u8) -> bool {
    matches!(b, 1 | 8 | 10 | 11 | 14 | 15 | 25 | 26)
}

fn t125_heuristic(data: &[u8], size: usize) -> bool {
    let first = at(data, 0);
    if first & 0xC0 == 0x40 && first & 0x1F == 0x1F {
        let end = size.min(data.len());
        let found = (1..end).find(|&i| data[i] < 0x80);
        let stop = found.map(|i| i + 1).unwrap_or(end);
        let mut tag: u32 = 0;
        for &byte in slice(data, stop.saturating_sub(5).max(1), stop) {
            tag = (tag << 7) | u32::from(byte & 0x7F);
        }
        if (101..=104).contains(&tag) {
            return true;
        }
    }
    t125_per_choice(first >> 2)
}

/// `var_part_ok`: whether tshark walks a COTP variable part of `left` bytes at `off` without throwing.
fn var_part_ok(p: &[u8], off: i64, left: i64) -> bool {
    let n = p.len() as i64;
    let (mut off, mut left) = (off, left);
    while left != 0 {
        if off >= n {
            return false;
        }
        let code = at(p, off);
        off += 1;
        left -= 1;
        if left == 0 {
            break;
        }
        if off >= n {
            return false;
        }
        let length = i64::from(at(p, off));
        off += 1;
        left -= 1;
        let mut step = length;
        let mut need = length;
        match code {
            0x86 => {
                need = 3;
                step = 3;
            }
            0x87 | 0x8A | 0x8B | 0xC3 => need = 2,
            0x88 | 0x8C => {
                need = 8;
                step = 8;
            }
            0x89 => {
                need = if (length - 12) & 0xFF == 0 { 12 } else { 24 };
                step = need;
            }
            0xC0 | 0xC4 | 0xC6 => need = 1,
            0x85 | 0xF2 if length == 0 => return false,
            0xF0 if !(1..=4).contains(&length) => return off + length <= n,
            _ => {}
        }
        if off + need > n {
            return false;
        }
        off += step;
        left -= step;
    }
    true
}

fn tpdu_tail(p: &[u8], off: i64, li: i64, head: i64) -> i64 {
    let left = (li + 1 - head) & 0xFF;
    if var_part_ok(p, off + head, left) {
        off + head + left
    } else {
        RAISE
    }
}

fn ak(p: &[u8], off: i64, li: i64) -> i64 {
    if li > 27 {
        return REJECT;
    }
    let head = if li % 2 == 0 { 5 } else { 10 };
    if off + head > p.len() as i64 {
        return RAISE;
    }
    tpdu_tail(p, off, li, head)
}

fn ea(p: &[u8], off: i64, li: i64) -> i64 {
    let head = checksummed_head(p, off, li, true);
    if head < 0 {
        head
    } else {
        tpdu_tail(p, off, li, head)
    }
}

fn checksummed_head(p: &[u8], off: i64, li: i64, checksum_length: bool) -> i64 {
    let n = p.len() as i64;
    if li == 8 || li == 11 {
        let var = off + li - 3;
        if var + 1 > n {
            return RAISE;
        }
        if at(p, var) != 0xC3 {
            return REJECT;
        }
        if checksum_length {
            if var + 2 > n {
                return RAISE;
            }
            if at(p, var + 1) != 2 {
                return REJECT;
            }
        }
    } else if li != 4 && li != 7 {
        return REJECT;
    }
    let head = if li == 4 || li == 8 { 5 } else { 8 };
    if off + head > n {
        RAISE
    } else {
        head
    }
}

fn rj(p: &[u8], off: i64, li: i64) -> i64 {
    if li != 4 && li != 9 {
        return REJECT;
    }
    if off + li + 1 > p.len() as i64 {
        RAISE
    } else {
        off + li + 1
    }
}

fn er(p: &[u8], off: i64, li: i64) -> i64 {
    if li > 8 {
        return REJECT;
    }
    if off + 5 > p.len() as i64 {
        return RAISE;
    }
    if at(p, off + 4) > 3 {
        return REJECT;
    }
    tpdu_tail(p, off, li, 5)
}

fn dc(p: &[u8], off: i64, li: i64) -> i64 {
    if li > 9 {
        return REJECT;
    }
    if off + 6 > p.len() as i64 {
        RAISE
    } else {
        tpdu_tail(p, off, li, 6)
    }
}

fn dr(p: &[u8], off: i64, li: i64) -> i64 {
    if li < 6 {
        return REJECT;
    }
    if off + 7 > p.len() as i64 {
        return RAISE;
    }
    if !dr_reason(at(p, off + 6)) {
        return REJECT;
    }
    user_data(p, tpdu_tail(p, off, li, 7))
}

fn ed(p: &[u8], off: i64, li: i64) -> i64 {
    let head = checksummed_head(p, off, li, false);
    if head < 0 {
        return head;
    }
    if at(p, off + 4) & 0x80 == 0 {
        return REJECT;
    }
    user_data(p, tpdu_tail(p, off, li, head))
}

fn ud(p: &[u8], off: i64, li: i64) -> i64 {
    user_data(p, tpdu_tail(p, off, li, 2))
}

fn user_data(p: &[u8], start: i64) -> i64 {
    if start > p.len() as i64 {
        RAISE
    } else {
        start
    }
}

fn param_data_ok(data: &[u8], size: usize, rosctr: u8, pos: usize, plength: usize) -> bool {
    let func = at(data, pos as i64);
    if func == 0xF0 {
        return pos + 8 <= size;
    }
    if func == 0x04 || func == 0x05 {
        return pos + 2 <= size;
    }
    if (0x1A..=0x1F).contains(&func) || (func == 0x28 && rosctr == 1) {
        return true;
    }
    if func == 0x28 {
        return plength < 2 || pos + 2 <= size;
    }
    let end = pos + plength;
    let dlength = be16(data, 8);
    end <= size && (dlength == 0 || end + dlength <= size)
}

/// The reader's state beside its two directions.
struct State {
    stats: Stats,
    fields: Fields,
    cotp_ref: u32,
    frame_eots: u32,
    last_fragment: bool,
    order: [u8; 3],
    raised: bool,
}

/// `S7commReader`: one TPKT/COTP/S7comm connection, both directions.
pub struct Reader {
    sides: [Side; 2],
    st: State,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            sides: [Side::default(), Side::default()],
            st: State {
                stats: Stats::default(),
                fields: Fields::default(),
                cotp_ref: 0,
                frame_eots: 0,
                last_fragment: false,
                order: [T125, SES, S7],
                raised: false,
            },
        }
    }
}

impl Reader {
    /// `feed`: one segment's reassembled bytes in one direction (None: a hole).
    pub fn feed(&mut self, from_client: bool, chunk: Option<&[u8]>) {
        let side = &mut self.sides[if from_client { 0 } else { 1 }];
        let st = &mut self.st;
        let Some(chunk) = chunk else {
            st.stats.holes += 1;
            st.stats.dropped_bytes += side.pending.len() as u64;
            side.pending = Vec::new();
            side.need = 0;
            return;
        };
        if chunk.is_empty() {
            return;
        }
        if side.pending.is_empty() {
            st.segment(side, chunk, 0);
            return;
        }
        side.pending.extend_from_slice(chunk);
        if side.pending.len() < side.need {
            return;
        }
        let data = std::mem::take(&mut side.pending);
        let whole = if side.need > 4 { side.need } else { 0 };
        side.need = 0;
        st.segment(side, &data, whole);
    }

    /// `take`: ends the frame (tshark's end-of-frame COTP bookkeeping); the frame's fields.
    fn take(&mut self) -> Fields {
        let st = &mut self.st;
        if st.frame_eots != 0 {
            if !st.last_fragment {
                st.cotp_ref = st.cotp_ref.wrapping_sub(st.frame_eots) & 0xFFFF;
            }
            st.frame_eots = 0;
        }
        std::mem::take(&mut st.fields)
    }

    pub fn stats(&self) -> &Stats {
        &self.st.stats
    }
}

impl State {
    fn segment(&mut self, side: &mut Side, data: &[u8], whole: usize) {
        let size = data.len();
        let mut pos = 0usize;
        self.raised = false;
        while pos < size {
            if whole != 0 && pos == whole {
                self.raised = false;
            }
            if data[pos] != 3 {
                self.stats.bad_versions += 1;
                self.stats.dropped_bytes += (size - pos) as u64;
                return;
            }
            if size - pos < 4 {
                break;
            }
            let length = be16(data, pos + 2);
            if length < 3 {
                self.stats.bad_lengths += 1;
                self.stats.dropped_bytes += (size - pos) as u64;
                return;
            }
            if length == 3 {
                self.stats.tpkts += 1;
                self.cotp(side, tail(data, pos + 4));
                pos += 3;
                continue;
            }
            if size - pos < length {
                if !self.raised {
                    break;
                }
                self.stats.tpkts += 1;
                self.cotp(side, tail(data, pos + 4));
                return;
            }
            self.stats.tpkts += 1;
            self.cotp(side, slice(data, pos + 4, pos + length));
            pos += length;
        }
        if pos < size {
            let rest = &data[pos..];
            if self.raised {
                self.stats.dropped_bytes += rest.len() as u64;
                return;
            }
            side.pending = rest.to_vec();
            side.need = if rest.len() < 4 { 4 } else { be16(rest, 2) };
        }
    }

    fn cotp(&mut self, side: &mut Side, p: &[u8]) {
        let n = p.len() as i64;
        let mut off: i64 = 0;
        while off < n {
            let li = i64::from(at(p, off));
            if li == 0 {
                break;
            }
            if off + 1 >= n {
                off = RAISE;
                break;
            }
            let kind = at(p, off + 1) >> 4;
            match kind {
                0xF => {
                    self.dt(side, p, off, li);
                    return;
                }
                0xE | 0xD => {
                    self.cr_cc(p, off, li);
                    return;
                }
                0x6 => off = ak(p, off, li),
                0x2 => off = ea(p, off, li),
                0x5 => off = rj(p, off, li),
                0x7 => off = er(p, off, li),
                0xC => off = dc(p, off, li),
                0x8 => {
                    off = dr(p, off, li);
                    break;
                }
                0x1 => {
                    off = ed(p, off, li);
                    break;
                }
                0x4 => {
                    off = ud(p, off, li);
                    break;
                }
                _ => break,
            }
            if off < 0 {
                break;
            }
        }
        self.stats.cotp_rejected += 1;
        if off == RAISE {
            self.raised = true;
        }
    }

    fn cr_cc(&mut self, p: &[u8], off: i64, li: i64) {
        let n = p.len() as i64;
        if off + 7 > n {
            self.reject(true);
            return;
        }
        if at(p, off + 6) >> 4 > 4 {
            self.reject(false);
            return;
        }
        let left = (li - 6) & 0xFF;
        let end = off + 7 + left;
        if end > n || !var_part_ok(p, off + 7, left) {
            self.reject(true);
            return;
        }
        self.heuristics(tail(p, end as usize), (n - end) as usize);
    }

    fn reject(&mut self, raised: bool) {
        self.stats.cotp_rejected += 1;
        if raised {
            self.raised = true;
        }
    }

    fn dt(&mut self, side: &mut Side, p: &[u8], off: i64, li: i64) {
        let n = p.len() as i64;
        let fragment;
        let ident;
        if li == 2 {
            if off + 3 > n {
                self.reject(true);
                return;
            }
            fragment = at(p, off + 2) & 0x80 == 0;
            self.last_fragment = fragment;
            ident = CLASS0 | self.cotp_ref;
            if !fragment {
                self.cotp_ref = (self.cotp_ref + 1) & 0xFFFF;
                self.frame_eots += 1;
            }
        } else if li == 4 || li == 7 {
            if off + li + 1 > n {
                self.reject(true);
                return;
            }
            fragment = at(p, off + 4) & 0x80 == 0;
            ident = (u32::from(at(p, off + 2)) << 8) | u32::from(at(p, off + 3));
        } else if li == 8 || li == 11 {
            let var = off + li - 3;
            if var >= n {
                self.reject(true);
                return;
            }
            if at(p, var) != 0xC3 {
                self.reject(false);
                return;
            }
            if !var_part_ok(p, var, 4) || off + li + 1 > n {
                self.reject(true);
                return;
            }
            fragment = at(p, off + 4) & 0x80 == 0;
            ident = (u32::from(at(p, off + 2)) << 8) | u32::from(at(p, off + 3));
        } else {
            self.reject(false);
            return;
        }
        let user = tail(p, (off + 1 + li) as usize);
        let found = side.tsdus.iter().position(|(k, _)| *k == ident);
        if fragment {
            let idx = match found {
                Some(i) => i,
                None => {
                    if ident & CLASS0 != 0 {
                        let before = side.tsdus.len();
                        side.tsdus.retain(|(k, _)| k & CLASS0 == 0);
                        self.stats.evicted += (before - side.tsdus.len()) as u64;
                    }
                    if side.tsdus.len() >= MAX_REASSEMBLIES {
                        side.tsdus.remove(0);
                        self.stats.evicted += 1;
                    }
                    side.tsdus.push((ident, Tsdu::default()));
                    side.tsdus.len() - 1
                }
            };
            if let Some((_, tsdu)) = side.tsdus.get_mut(idx) {
                tsdu.add(user);
            }
            return;
        }
        match found {
            None => self.heuristics(user, user.len()),
            Some(i) => {
                let (_, mut tsdu) = side.tsdus.remove(i);
                tsdu.add(user);
                self.heuristics(&tsdu.kept, tsdu.size);
            }
        }
    }

    fn heuristics(&mut self, data: &[u8], size: usize) {
        if size == 0 {
            return;
        }
        let s7 = size >= 10 && at(data, 0) == 0x32 && (1..=7).contains(&at(data, 1));
        let order = self.order;
        for (i, &which) in order.iter().enumerate() {
            if which == S7 {
                if !s7 {
                    continue;
                }
                if !self.s7(data, size) {
                    self.raised = true;
                    return;
                }
            } else if which == SES {
                let verdict = ses_heuristic(data, size);
                if verdict == SES_REJECT {
                    continue;
                }
                if s7 {
                    self.stats.ses_claimed += 1;
                }
                if verdict == SES_RAISE {
                    self.raised = true;
                    return;
                }
            } else if !t125_heuristic(data, size) {
                continue;
            }
            if which != S7 {
                self.stats.not_s7 += 1;
            }
            if i != 0 {
                self.order[..=i].rotate_right(1);
            }
            return;
        }
        self.stats.not_s7 += 1;
    }

    fn s7(&mut self, data: &[u8], size: usize) -> bool {
        self.stats.pdus += 1;
        let f = &mut self.fields;
        let rosctr = at(data, 1);
        first(&mut f.rosctr, rosctr);
        first(&mut f.pduref, be16(data, 4) as u16);
        let plength = be16(data, 6);
        let mut pos = 10usize;
        if rosctr == 2 || rosctr == 3 {
            if size < 12 {
                return false;
            }
            let (cls, cod) = (at(data, 10), at(data, 11));
            first(&mut f.errcls, cls);
            first(&mut f.errcod, cod);
            if cls != 0 || cod != 0 {
                first(&mut f.param_errcod, be16(data, 10) as u16);
            }
            pos = 12;
        }
        if rosctr == 1 || rosctr == 3 {
            if plength == 0 {
                return true;
            }
            if pos >= size {
                return false;
            }
            let func = at(data, pos as i64);
            first(&mut f.func, func);
            if rosctr == 1 && func == 0x28 {
                return self.pi_service(data, size, pos, plength);
            }
            if rosctr == 1 && func == 0x29 {
                return self.name(data, size, pos + 6);
            }
            return param_data_ok(data, size, rosctr, pos, plength);
        }
        if rosctr == 7 {
            if pos + 5 >= size {
                return false;
            }
            let kind = at(data, (pos + 5) as i64);
            let group = kind & 0x0F;
            first(&mut f.ud_type, kind >> 4);
            first(&mut f.ud_group, group);
            if pos + 6 >= size {
                return false;
            }
            let sub = at(data, (pos + 6) as i64);
            if group != 0 {
                first(&mut f.ud_subfunc, sub);
            }
            if plength >= 12 {
                if pos + 12 > size {
                    return false;
                }
                first(&mut f.param_errcod, be16(data, pos + 10) as u16);
            }
            return be16(data, 8) < 4 || pos + plength + 4 <= size;
        }
        true
    }

    fn pi_service(&mut self, data: &[u8], size: usize, start: usize, plength: usize) -> bool {
        if start + 8 > size {
            return false;
        }
        if plength <= 8 {
            return true;
        }
        if start + 10 > size {
            return false;
        }
        self.name(data, size, start + 10 + be16(data, start + 8))
    }

    fn name(&mut self, data: &[u8], size: usize, pos: usize) -> bool {
        if pos >= size {
            return false;
        }
        let end = pos + 1 + usize::from(at(data, pos as i64));
        if end > size {
            return false;
        }
        first(&mut self.fields.servicename, ascii_text(slice(data, pos + 1, end)));
        true
    }
}

// -- S7commAnalyzer ---------------------------------------------------------------------------------------------

fn rosctr_name(code: u8) -> String {
    match code {
        1 => "Job-Request".into(),
        2 => "ACK".into(),
        3 => "ACK-Data".into(),
        7 => "User-Data".into(),
        _ => format!("unknown-{}", code),
    }
}

fn job_function(func: u8) -> String {
    match func {
        0x00 => "CPU Services".into(),
        0xF0 => "Setup Communication".into(),
        0x04 => "Read Variable".into(),
        0x05 => "Write Variable".into(),
        0x1A => "Request Download".into(),
        0x1B => "Download Block".into(),
        0x1C => "Download Ended".into(),
        0x1D => "Start Upload".into(),
        0x1E => "Upload".into(),
        0x1F => "End Upload".into(),
        0x28 => "PLC Control".into(),
        0x29 => "PLC Stop".into(),
        _ => format!("unknown-{}", func),
    }
}

fn ud_type_name(kind: u8) -> String {
    match kind {
        0 => "Push".into(),
        4 => "Request".into(),
        8 => "Response".into(),
        3 => "NC Push".into(),
        7 => "NC Request".into(),
        11 => "NC Response".into(),
        _ => kind.to_string(),
    }
}

fn ud_group_name(group: u8) -> String {
    match group {
        0 => "Mode-transition".into(),
        1 => "Programmer commands".into(),
        2 => "Cyclic data".into(),
        3 => "Block Functions".into(),
        4 => "CPU Functions".into(),
        5 => "Security".into(),
        6 => "PBC BSEND/BRECV".into(),
        7 => "Time Functions".into(),
        15 => "NC Programming".into(),
        _ => group.to_string(),
    }
}

fn ud_subfunction(group: u8, sub: u8) -> String {
    let name = match (group, sub) {
        (3, 1) => "List Blocks",
        (3, 2) => "List Blocks of Type",
        (3, 3) => "Get Block Info",
        (4, 1) => "Read SZL",
        (4, 2) => "Message Service",
        (4, 3) => "Diagnostic Message",
        (4, 5) => "ALARM_8 Indication",
        (4, 6) => "NOTIFY Indication",
        (4, 7) => "ALARM_8 Lock",
        (4, 8) => "ALARM_8 Unlock",
        (4, 11) => "ALARM Ack",
        (4, 12) => "ALARM Ack Indication",
        (4, 13) => "ALARM Lock Indication",
        (4, 14) => "ALARM Unlock Indication",
        (4, 17) => "ALARM_SQ Indication",
        (4, 18) => "ALARM_S Indication",
        (4, 19) => "ALARM Query",
        (4, 22) => "NOTIFY_8 Indication",
        (7, 1) => "Read Clock",
        (7, 2) => "Set Clock",
        (7, 3) => "Read Clock (following)",
        (7, 4) => "Set Clock 2",
        (5, 1) => "PLC Password",
        (5, 2) => "Clean Session",
        (1, 1) => "Request Diag Data (Type 1)",
        (1, 2) => "VarTab",
        (1, 12) => "Erase",
        (1, 14) => "Read Diag Data",
        (1, 15) => "Remove Diag Data",
        (1, 16) => "Forces",
        (1, 19) => "Request Diag Data (Type 2)",
        _ => return format!("unknown-{}", sub),
    };
    name.into()
}

fn pi_service_name(service: &str) -> String {
    match service {
        "_MODU" => "PLC Copy Ram to Rom",
        "_GARB" => "Compress PLC memory",
        "P_PROGRAM" => "PLC Start / Stop",
        "_INSE" => "Activate downloaded block",
        "_DELE" => "Delete block",
        "_EXE" => "Execute",
        "_N_" => "NC program",
        other => other,
    }
    .into()
}

fn error_class(code: u8) -> String {
    match code {
        0x00 => "No error".into(),
        0x81 => "Application relationship".into(),
        0x82 => "Object definition".into(),
        0x83 => "No resources available".into(),
        0x84 => "Error on service processing".into(),
        0x85 => "Error on supplies".into(),
        0x87 => "Access error".into(),
        _ => format!("0x{:02x}", code),
    }
}

fn program_change(func: u8) -> bool {
    matches!(func, 0x1A | 0x1B | 0x1C | 0x28 | 0x29)
}

/// `S7commAnalyzer.handle`'s fields of a frame (`is_orig` as `flow_by_server_port` orients it).
fn document_fields(f: Fields, rosctr: u8, is_orig: bool) -> Vec<(&'static str, Value)> {
    let mut out: Vec<(&'static str, Value)> = Vec::with_capacity(10);
    out.push(("secops.s7comm.is_orig", Value::Bool(is_orig)));
    out.push(("secops.s7comm.rosctr_code", Value::Int(i64::from(rosctr))));
    out.push(("secops.s7comm.rosctr", Value::Str(rosctr_name(rosctr))));
    if let Some(r) = f.pduref {
        out.push(("secops.s7comm.pdu_reference", Value::Int(i64::from(r))));
    }
    let mut program = false;
    if rosctr == 7 {
        let (kind, group, sub) = (f.ud_type, f.ud_group, f.ud_subfunc);
        if let (Some(k), Some(g)) = (kind, group) {
            out.push(("secops.s7comm.function_code", Value::Str(format!("0x{:02x}", (u32::from(k) << 4) | u32::from(g)))));
            out.push(("secops.s7comm.function", Value::Str(format!("{}: {}", ud_type_name(k), ud_group_name(g)))));
        }
        if let Some(s) = sub {
            out.push(("secops.s7comm.subfunction_code", Value::Str(format!("0x{:02x}", s))));
            out.push(("secops.s7comm.subfunction", Value::Str(ud_subfunction(group.unwrap_or(0), s))));
        }
        if let (Some(err), Some(8)) = (f.param_errcod, kind) {
            out.push(("secops.s7comm.error_code", Value::Str(format!("0x{:04x}", err))));
            let class = if err == 0 { "No error" } else { "Parameter Error" };
            out.push(("secops.s7comm.error_class", Value::Str(class.into())));
        }
    } else {
        if let Some(func) = f.func {
            out.push(("secops.s7comm.function_code", Value::Str(format!("0x{:02x}", func))));
            out.push(("secops.s7comm.function", Value::Str(job_function(func))));
            out.push(("secops.s7comm.is_program_change", Value::Bool(rosctr == 1 && program_change(func))));
            program = true;
            if let Some(service) = f.servicename.filter(|s| func == 0x28 && !s.is_empty()) {
                let name = pi_service_name(&service);
                out.push(("secops.s7comm.subfunction_code", Value::Str(service)));
                out.push(("secops.s7comm.subfunction", Value::Str(name)));
            }
        }
        if let Some(cls) = f.errcls {
            out.push(("secops.s7comm.error_class", Value::Str(error_class(cls))));
            out.push(("secops.s7comm.error_code", Value::Str(format!("0x{:02x}", f.errcod.unwrap_or(0)))));
        }
    }
    if !program {
        out.push(("secops.s7comm.is_program_change", Value::Bool(false)));
    }
    out
}

struct Conn {
    orig: (String, u16),
    resp: (String, u16),
    reader: Reader,
}

/// One run's S7comm connections.
#[derive(Default)]
pub struct Engine {
    conns: Map<u64, Conn>,
    closed: Stats,
    cids: CidCache,
    pub cut_values: u64,
}

impl Engine {
    pub fn open(&mut self, conn_id: u64, orig: (String, u16), resp: (String, u16)) {
        if let Some(old) = self.conns.insert(conn_id, Conn { orig, resp, reader: Reader::default() }) {
            self.closed.add(old.reader.stats());
        }
    }

    /// One frame's chunks in one direction, then its document (if it completed an S7comm PDU).
    pub fn feed(
        &mut self,
        conn_id: u64,
        from_client: bool,
        chunks: &[Option<&[u8]>],
        ts: f64,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, DocError> {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Err(DocError(format!("no S7comm connection {}", conn_id)));
        };
        for chunk in chunks {
            conn.reader.feed(from_client, *chunk);
        }
        let fields = conn.reader.take();
        let Some(rosctr) = fields.rosctr else { return Ok(None) };
        let (src, dst) = if from_client { (&conn.orig, &conn.resp) } else { (&conn.resp, &conn.orig) };
        // flow_by_server_port with S7commAnalyzer.PORTS
        let mut sender_serves = src.1 == SERVER_PORT && dst.1 != SERVER_PORT;
        if !sender_serves && dst.1 != SERVER_PORT && src.1 < dst.1 {
            sender_serves = true;
        }
        let (o, r) = if sender_serves { (dst, src) } else { (src, dst) };
        let flow = Flow { orig_h: o.0.clone(), orig_p: o.1, resp_h: r.0.clone(), resp_p: r.1, stream: String::new() };
        let cid = self.cids.get_proto(6, &flow)?;
        let tail = format!("s7comm\x1f{}:{}\x1f", src.1, seq);
        let (doc, cut) = write_doc(&SPEC, &cid, &flow, (ts, &iso(ts)?), &tail, document_fields(fields, rosctr, !sender_serves))?;
        self.cut_values += cut as u64;
        Ok(Some(doc))
    }

    /// What the connection's reader skipped as damaged so far.
    pub fn damage(&self, conn_id: u64) -> u64 {
        self.conns.get(&conn_id).map(|c| c.reader.stats().damage()).unwrap_or(0)
    }

    /// The connection's reader dropped (its counters stay in the run's).
    pub fn end(&mut self, conn_id: u64) {
        if let Some(conn) = self.conns.remove(&conn_id) {
            self.closed.add(conn.reader.stats());
        }
    }

    /// The run's counters: the closed connections' and the open ones'.
    pub fn stats(&self) -> Stats {
        let mut total = self.closed;
        for conn in self.conns.values() {
            total.add(conn.reader.stats());
        }
        total
    }

    pub fn has(&self, conn_id: u64) -> bool {
        self.conns.contains_key(&conn_id)
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }
}
