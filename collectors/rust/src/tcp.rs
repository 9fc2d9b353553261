//! The natively read TCP connections of one analyzer process, frame in, documents out: what
//! `collectors.protocols.native_tcp.TcpNative` and `tcp_reassembly.Direction` do in Python, for a run whose readers
//! are all Rust engines (HTTP, TLS, FTP, DNP3, S7comm). Per frame that Python path cost a decoded tuple, a dict
//! lookup, a reassembly object and a call into each engine's face (about 5 us a frame, 0.75 s of an analyzer
//! process's 1.2 s of native reading on the 1M-packet benchmark); here the frame's bytes are read in place.
//!
//! Python still decides, once per connection, who reads it (`decide`: the flow path's probes), opens the engines'
//! connections, reads Modbus/TCP and IEC-104 (`ics_feed`), and expires the engines' open exchanges on sweeps
//! (`expire`). Everything else (the connection table in Python's dict order, reassembly, FIN/RST, port reuse, idle
//! sweeps, the hand-back to tshark, closing) follows `native_tcp` line for line; `tests/unit/test_tcp_table.py`
//! holds the two equal, document for document and counter for counter.

use crate::Map;
use std::collections::{BTreeMap, HashMap};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::dnp3::Dnp3Engine;
use crate::{FtpEngine, HttpEngine, S7commEngine, TlsEngine};

// native_tcp's constants (tests/unit/test_tcp_table.py checks they agree)
pub const MAX_CONNECTIONS: usize = 65_536;
pub const IDLE_SECONDS: f64 = 300.0;
pub const SWEEP_SECONDS: f64 = 60.0;
pub const CLOSE_DELAY_SECONDS: f64 = 5.0;
pub const REUSE_DISTANCE: i64 = 64 << 20;
// tcp_reassembly's
pub const MAX_WAITING_BYTES: usize = 256 * 1024;
pub const MAX_WAITING_SEGMENTS: usize = 512;
// the table's budget for what waits behind holes, all connections together (native_tcp.MAX_HELD_BYTES), each
// waiting segment charged its bytes and SEGMENT_OVERHEAD (what a one-byte segment costs held: measured ~110 bytes)
pub const MAX_HELD_BYTES: usize = 64 << 20;
pub const SEGMENT_OVERHEAD: usize = 128;

const FTP: u8 = 1;
const HTTP: u8 = 2;
const TLS: u8 = 3;
const MODBUS: u8 = 4;
const DNP3: u8 = 5;
const S7COMM: u8 = 6;
const IEC104: u8 = 7;
const SMB: u8 = 8; // SMB2 and DCE-RPC over TCP, read by Python's `smb_wire`
const F_FIN: u8 = 0x01;
const F_SYN: u8 = 0x02;
const F_RST: u8 = 0x04;
const F_ACK: u8 = 0x10;

/// Verdicts of `frame`.
const TSHARK_READS: u8 = 0;
const TAKEN: u8 = 1;
const DECODE_IN_PYTHON: u8 = 2;

/// `a - b` in TCP sequence space (signed 32-bit).
fn distance(a: u32, b: u32) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

/// A direction's reassembled bytes, or a hole of that many bytes.
#[derive(Debug, Clone)]
enum Chunk {
    Data(Vec<u8>),
    Hole(i64),
}

/// `tcp_reassembly.Budget`: what the directions of one table hold behind holes together, against its limit, and
/// the holes skipped early to stay within it.
#[derive(Default)]
struct Budget {
    limit: usize,
    held: usize,
    holes: u64,
    hole_bytes: i64,
}

/// `tcp_reassembly.Direction`: one side's bytes in sequence order, first copy wins, holes counted and skipped.
#[derive(Default)]
struct Direction {
    next_seq: Option<u32>,
    waiting: HashMap<u32, Vec<u8>>,
    waiting_bytes: usize,
    gap_bytes: i64,
}

impl Direction {
    fn syn(&mut self, seq: u32) {
        if self.next_seq.is_none() {
            self.next_seq = Some(seq.wrapping_add(1));
        }
    }

    fn acked(&mut self, ack: u32) {
        if self.next_seq.is_none() {
            self.next_seq = Some(ack);
        }
    }

    fn advance(&mut self, n: i64) {
        if let Some(next) = self.next_seq {
            self.next_seq = Some((next as i64).wrapping_add(n) as u32);
        }
    }

    /// What the direction holds against its table's budget: each waiting segment's bytes and SEGMENT_OVERHEAD.
    fn held(&self) -> usize {
        self.waiting_bytes + SEGMENT_OVERHEAD * self.waiting.len()
    }

    /// A segment's captured payload and its length on the wire; past the budget (the table's directions together),
    /// this direction's holes are skipped until it fits again or nothing waits here (`Direction.add`).
    fn add(&mut self, seq: u32, data: &[u8], length: usize, budget: &mut Budget) -> Vec<Chunk> {
        let before = self.held();
        let elsewhere = budget.held - before;
        let mut out = self.add_wire(seq, data, length);
        while !self.waiting.is_empty() && elsewhere + self.held() > budget.limit {
            let skipped = self.skip_hole();
            if let Some(Chunk::Hole(hole)) = skipped.first() {
                budget.holes += 1;
                budget.hole_bytes += hole;
            }
            out.extend(skipped);
        }
        budget.held = elsewhere + self.held();
        out
    }

    fn add_wire(&mut self, seq: u32, data: &[u8], length: usize) -> Vec<Chunk> {
        let mut out = self.add_captured(seq, data);
        if length > data.len() {
            if let Some(next) = self.next_seq {
                if distance(next, seq.wrapping_add(data.len() as u32)) == 0 {
                    let hole = (length - data.len()) as i64;
                    self.gap_bytes += hole;
                    self.advance(hole);
                    out.push(Chunk::Hole(hole));
                    if !self.waiting.is_empty() {
                        out.extend(self.drain());
                    }
                }
            }
        }
        out
    }

    fn add_captured(&mut self, seq: u32, data: &[u8]) -> Vec<Chunk> {
        if data.is_empty() {
            return Vec::new();
        }
        let next = *self.next_seq.get_or_insert(seq);
        let mut ahead = distance(seq, next);
        let mut data = data;
        if -ahead >= data.len() as i64 {
            return Vec::new();
        }
        if ahead < 0 {
            data = &data[(-ahead) as usize..];
            ahead = 0;
        }
        if self.waiting.is_empty() && ahead == 0 {
            self.advance(data.len() as i64);
            return vec![Chunk::Data(data.to_vec())];
        }
        for (offset, piece) in self.uncovered(next, ahead, data) {
            self.waiting_bytes += piece.len();
            self.waiting.insert((next as i64 + offset) as u32, piece);
        }
        let mut out = self.drain();
        if self.waiting_bytes > MAX_WAITING_BYTES || self.waiting.len() > MAX_WAITING_SEGMENTS {
            out.extend(self.skip_hole());
        }
        out
    }

    /// The parts of `data` (`ahead` bytes past `next`) no waiting segment holds yet: (offset past `next`, bytes).
    fn uncovered(&self, next: u32, ahead: i64, data: &[u8]) -> Vec<(i64, Vec<u8>)> {
        let mut held: Vec<(i64, i64)> =
            self.waiting.iter().map(|(&s, d)| (distance(s, next), d.len() as i64)).collect();
        held.sort_unstable();
        let mut out = Vec::new();
        let (mut cur, end) = (ahead, ahead + data.len() as i64);
        for (start, size) in held {
            if start + size <= cur {
                continue;
            }
            if start >= end {
                break;
            }
            if start > cur {
                out.push((cur, data[(cur - ahead) as usize..(start - ahead) as usize].to_vec()));
            }
            cur = start + size;
            if cur >= end {
                break;
            }
        }
        if cur < end {
            out.push((cur, data[(cur - ahead) as usize..].to_vec()));
        }
        out
    }

    /// Waiting segments that now continue the stream.
    fn drain(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        let Some(start) = self.next_seq else { return out };
        let mut order: Vec<(i64, u32)> = self.waiting.keys().map(|&s| (distance(s, start), s)).collect();
        order.sort_unstable();
        for (_, seq) in order {
            let Some(next) = self.next_seq else { break };
            let behind = -distance(seq, next);
            if behind < 0 {
                break;
            }
            let Some(data) = self.waiting.remove(&seq) else { continue };
            self.waiting_bytes -= data.len();
            if behind >= data.len() as i64 {
                continue;
            }
            let data = if behind > 0 { data[behind as usize..].to_vec() } else { data };
            self.advance(data.len() as i64);
            out.push(Chunk::Data(data));
        }
        // a map emptied keeps its buckets: 512 segments that waited leave ~30 kB a direction (65,536 connections:
        // 4 GB the budget no longer sees), so what outgrew what waits is given back
        if self.waiting.is_empty() {
            if self.waiting.capacity() > 16 {
                self.waiting = HashMap::new();
            }
        } else if self.waiting.capacity() > 64 && self.waiting.len() * 4 < self.waiting.capacity() {
            self.waiting.shrink_to_fit();
        }
        out
    }

    /// Give up on the hole before the earliest waiting segment: count it, hand on what follows it.
    fn skip_hole(&mut self) -> Vec<Chunk> {
        let Some(next) = self.next_seq else { return Vec::new() };
        let Some(&first) = self.waiting.keys().min_by_key(|&&s| distance(s, next)) else { return Vec::new() };
        let hole = distance(first, next);
        self.gap_bytes += hole;
        self.next_seq = Some(first);
        let mut out = vec![Chunk::Hole(hole)];
        out.extend(self.drain());
        out
    }

    /// The connection ended: every waiting segment, holes skipped.
    fn flush(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        while !self.waiting.is_empty() {
            out.extend(self.skip_hole());
        }
        out
    }
}

/// Both endpoints, the lower (address, port) first.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: [u8; 16],
    a_len: u8,
    a_port: u16,
    b: [u8; 16],
    b_len: u8,
    b_port: u16,
}

fn address(bytes: &[u8]) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    let n = bytes.len().min(16);
    out[..n].copy_from_slice(&bytes[..n]);
    (out, n as u8)
}

impl Key {
    fn of(src: &[u8], sport: u16, dst: &[u8], dport: u16) -> Key {
        let ((a, a_port), (b, b_port)) = if (src, sport) < (dst, dport) { ((src, sport), (dst, dport)) } else { ((dst, dport), (src, sport)) };
        let (a, a_len) = address(a);
        let (b, b_len) = address(b);
        Key { a, a_len, a_port, b, b_len, b_port }
    }
}

/// A natively read connection (`native_tcp.Connection`).
struct Conn {
    kind: u8,
    id: u64,
    client: ([u8; 16], u8, u16),
    dirs: [Direction; 2],
    last_ts: f64,
    fins: u8,
    ended: Option<f64>,
}

impl Conn {
    fn held(&self) -> usize {
        self.dirs[0].held() + self.dirs[1].held()
    }
}

enum Slot {
    Tshark,
    Native(Box<Conn>),
}

/// One TCP segment as the table reads it.
struct Segment<'a> {
    src: &'a [u8],
    dst: &'a [u8],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &'a [u8],
    plen: usize,
    ts: f64,
}

/// Counters `native_tcp.Stats` takes from the table.
#[derive(Default)]
struct Counts {
    frames: u64,
    handed_back: u64,
    gaps: u64,
    gap_bytes: i64,
    reused: u64,
    ics_damaged: u64,
}

/// What a table slot's connection held behind holes (released when it leaves the table).
fn slot_held(slot: &Slot) -> usize {
    match slot {
        Slot::Native(conn) => conn.held(),
        Slot::Tshark => 0,
    }
}

/// The connection table of one deep-path run over Rust engines (see the module's doc).
#[pyclass(module = "collectors._rs")]
pub struct TcpTable {
    http: Py<HttpEngine>,
    tls: Py<TlsEngine>,
    ftp: Py<FtpEngine>,
    dnp3: Py<Dnp3Engine>,
    s7comm: Py<S7commEngine>,
    owner: Option<PyObject>,
    wrap: Option<PyObject>,
    conns: Map<Key, (u64, Slot)>,
    // the keys in Python's dict order (insertion; a key set again keeps its place), the connections read here and
    // tshark's decisions apart: an idle sweep walks only the former, and only as many of the latter as it drops
    natives: BTreeMap<u64, Key>,
    decisions: BTreeMap<u64, Key>,
    next_order: u64,
    next_sweep: Option<f64>,
    max_connections: usize,
    counts: Counts,
    budget: Budget,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl TcpTable {
    fn insert(&mut self, key: Key, slot: Slot) {
        let native = matches!(slot, Slot::Native(_));
        let order = match self.conns.get_mut(&key) {
            Some(entry) => {
                let order = entry.0;
                self.budget.held -= slot_held(&entry.1);
                entry.1 = slot;
                self.natives.remove(&order);
                self.decisions.remove(&order);
                order
            }
            None => {
                let order = self.next_order;
                self.next_order += 1;
                self.conns.insert(key, (order, slot));
                order
            }
        };
        if native {
            self.natives.insert(order, key);
        } else {
            self.decisions.insert(order, key);
        }
    }

    fn pop(&mut self, key: &Key) -> Option<Slot> {
        let (order, slot) = self.conns.remove(key)?;
        self.budget.held -= slot_held(&slot);
        self.natives.remove(&order);
        self.decisions.remove(&order);
        Some(slot)
    }

    /// The first key in the table's order (the oldest), for eviction.
    fn oldest(&self) -> Option<Key> {
        match (self.natives.first_key_value(), self.decisions.first_key_value()) {
            (Some((a, ka)), Some((b, kb))) => Some(if a < b { *ka } else { *kb }),
            (Some((_, k)), None) | (None, Some((_, k))) => Some(*k),
            (None, None) => None,
        }
    }

    fn owner<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyAny>> {
        self.owner.as_ref().map(|o| o.bind(py)).ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("table cleared"))
    }

    fn push_docs(&self, py: Python<'_>, docs: &Bound<'_, PyList>, written: Vec<Vec<u8>>) -> PyResult<()> {
        let Some(wrap) = &self.wrap else { return Ok(()) };
        for doc in written {
            docs.append(wrap.call1(py, (PyBytes::new_bound(py, &doc),))?)?;
        }
        Ok(())
    }

    fn push_objects(&self, py: Python<'_>, docs: &Bound<'_, PyList>, written: Vec<PyObject>) -> PyResult<()> {
        let Some(wrap) = &self.wrap else { return Ok(()) };
        for doc in written {
            if doc.bind(py).is_instance_of::<PyBytes>() {
                docs.append(wrap.call1(py, (doc,))?)?;
            } else {
                docs.append(doc)?;
            }
        }
        Ok(())
    }

    /// `TcpNative.take`: a reader's failure forgets the connection and gives its later frames to tshark.
    fn take_segment(&mut self, py: Python<'_>, key: Key, seg: &Segment<'_>, docs: &Bound<'_, PyList>)
                    -> PyResult<bool> {
        match self.take_inner(py, key, seg, docs) {
            Ok(taken) => Ok(taken),
            Err(err) => {
                if let Some((_, Slot::Native(conn))) = self.conns.get(&key) {
                    let (kind, id) = (conn.kind, conn.id);
                    self.forget(py, kind, id)?;
                }
                self.failed(py, err, "its later frames go to tshark")?;
                self.insert(key, Slot::Tshark);
                Ok(false)
            }
        }
    }

    fn failed(&self, py: Python<'_>, err: PyErr, then: &str) -> PyResult<()> {
        self.owner(py)?.call_method1("_failed", (err.into_value(py), then))?;
        Ok(())
    }

    fn take_inner(&mut self, py: Python<'_>, key: Key, seg: &Segment<'_>, docs: &Bound<'_, PyList>) -> PyResult<bool> {
        if self.next_sweep.is_none_or(|next| seg.ts >= next) {
            self.next_sweep = Some(seg.ts + SWEEP_SECONDS);
            self.sweep_into(py, seg.ts - IDLE_SECONDS, docs)?;
        }
        if matches!(self.conns.get(&key), Some((_, Slot::Tshark))) {
            return Ok(false);
        }
        if !self.conns.contains_key(&key) {
            let decided = self.decide(py, key, seg)?;
            if self.conns.len() > self.max_connections {
                if let Some(oldest) = self.oldest() {
                    self.close(py, oldest, docs)?;
                }
            }
            if !decided {
                return Ok(false);
            }
        }
        let step = match self.conns.get_mut(&key) {
            Some((_, Slot::Native(conn))) => segment_step(conn, seg, &mut self.budget),
            _ => return Ok(false),
        };
        let Some((kind, id, from_client, chunks)) = step else {
            // the same endpoints, a new connection: the old one ends here
            self.counts.reused += 1;
            self.close(py, key, docs)?;
            return self.take_inner(py, key, seg, docs);
        };
        if let Some(chunks) = chunks {
            let keep = if is_ics(kind) {
                self.read_ics(py, kind, id, from_client, seg.ts, seg.seq as u64, &chunks, docs)?
            } else {
                self.read(py, kind, id, from_client, seg.ts, &chunks, docs)?
            };
            if !keep {
                if kind == HTTP {
                    self.http.bind(py).borrow_mut().engine.forget(id);
                }
                if kind == FTP {
                    self.ftp.bind(py).borrow_mut().engine.forget(id);
                }
                if kind == SMB {
                    self.counts.ics_damaged += self.damage(py, kind, id)?; // skipped before tshark took over
                    self.forget(py, kind, id)?;
                }
                self.counts.handed_back += 1;
                self.insert(key, Slot::Tshark);
                return Ok(false);
            }
        }
        self.counts.frames += 1;
        Ok(true)
    }

    /// Python's `_decide` (the probes, the engines' `open`): whether the connection is decided now (as tshark's or
    /// read here); it is in the table then.
    fn decide(&mut self, py: Python<'_>, key: Key, seg: &Segment<'_>) -> PyResult<bool> {
        let got = self.owner(py)?.call_method1(
            "_table_decide",
            (PyBytes::new_bound(py, seg.src), PyBytes::new_bound(py, seg.dst), seg.sport, seg.dport, seg.flags,
             PyBytes::new_bound(py, seg.payload), seg.ts),
        )?;
        if got.is_none() {
            return Ok(false);
        }
        let Ok(decided) = got.downcast::<PyTuple>() else {
            self.insert(key, Slot::Tshark);
            return Ok(true);
        };
        let (kind, sender_is_client, id): (u8, bool, u64) = decided.extract()?;
        let (client, port) = if sender_is_client { (seg.src, seg.sport) } else { (seg.dst, seg.dport) };
        let (addr, len) = address(client);
        let conn = Conn {
            kind,
            id,
            client: (addr, len, port),
            dirs: [Direction::default(), Direction::default()],
            last_ts: seg.ts,
            fins: 0,
            ended: None,
        };
        self.insert(key, Slot::Native(Box::new(conn)));
        Ok(true)
    }

    /// A frame's chunks through the connection's reader; false when the connection goes back to tshark.
    #[allow(clippy::too_many_arguments)]
    fn read(&mut self, py: Python<'_>, kind: u8, id: u64, from_client: bool, ts: f64, chunks: &[Chunk],
            docs: &Bound<'_, PyList>) -> PyResult<bool> {
        if kind == TLS {
            self.count_holes(chunks);
            let parts: Vec<Option<&[u8]>> = chunks.iter().map(|c| match c {
                Chunk::Data(d) => Some(d.as_slice()),
                Chunk::Hole(_) => None,
            }).collect();
            let mut out = Vec::new();
            self.tls.bind(py).borrow_mut().engine.feed(py, id, from_client, &parts, ts, &mut out)?;
            self.push_objects(py, docs, out)?;
            return Ok(true);
        }
        for chunk in chunks {
            let (data, hole) = match chunk {
                Chunk::Data(d) => (Some(d.as_slice()), 0),
                Chunk::Hole(h) => {
                    self.counts.gaps += 1;
                    (None, (*h).max(0) as u64)
                }
            };
            if kind == HTTP {
                let written = self.http.bind(py).borrow_mut().engine.feed(py, id, from_client, data, hole, ts)?;
                self.push_docs(py, docs, written)?;
                if self.http.bind(py).borrow().engine.switched(id) {
                    return Ok(false);
                }
            } else if kind == FTP {
                let written = self.ftp.bind(py).borrow_mut().engine.feed(py, id, from_client, data, ts)?;
                self.push_docs(py, docs, written)?;
                if self.ftp.bind(py).borrow().engine.switched(id) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn count_holes(&mut self, chunks: &[Chunk]) {
        self.counts.gaps += chunks.iter().filter(|c| matches!(c, Chunk::Hole(_))).count() as u64;
    }

    /// A frame's chunks through an ICS (or SMB) reader (the frame's raw sequence number places its documents);
    /// false when the connection goes back to tshark (an SMB reader met SMB1 past the negotiation).
    #[allow(clippy::too_many_arguments)]
    fn read_ics(&mut self, py: Python<'_>, kind: u8, id: u64, from_client: bool, ts: f64, seq: u64, chunks: &[Chunk],
                docs: &Bound<'_, PyList>) -> PyResult<bool> {
        self.count_holes(chunks);
        match kind {
            DNP3 => {
                let parts: Vec<(Option<&[u8]>, u64)> = chunks.iter().map(|c| match c {
                    Chunk::Data(d) => (Some(d.as_slice()), 0),
                    Chunk::Hole(h) => (None, (*h).max(0) as u64),
                }).collect();
                let written = self.dnp3.bind(py).borrow_mut().feed_parts(id, from_client, &parts, ts)?;
                self.push_docs(py, docs, written)?;
                Ok(true)
            }
            S7COMM => {
                let parts: Vec<Option<&[u8]>> = chunks.iter().map(|c| match c {
                    Chunk::Data(d) => Some(d.as_slice()),
                    Chunk::Hole(_) => None,
                }).collect();
                crate::finite(ts)?;
                let mut engine = self.s7comm.bind(py).borrow_mut();
                if !engine.engine.has(id) {
                    return Err(pyo3::exceptions::PyKeyError::new_err(id));
                }
                let written = engine.engine.feed(id, from_client, &parts, ts, seq)
                    .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.0))?;
                drop(engine);
                self.push_docs(py, docs, written.into_iter().collect())?;
                Ok(true)
            }
            _ => {
                let items = PyList::empty_bound(py);
                for chunk in chunks {
                    match chunk {
                        Chunk::Data(d) => items.append(PyBytes::new_bound(py, d))?,
                        Chunk::Hole(h) => items.append(*h)?,
                    }
                }
                let got = self.owner(py)?.call_method1("_table_ics_feed", (id, from_client, items, ts, seq))?;
                let (written, keep): (Bound<'_, PyList>, bool) = got.extract()?;
                for doc in written.iter() {
                    docs.append(doc)?;
                }
                Ok(keep)
            }
        }
    }

    /// What a connection's ICS or SMB reader skipped as damaged so far.
    fn damage(&self, py: Python<'_>, kind: u8, id: u64) -> PyResult<u64> {
        Ok(match kind {
            DNP3 => self.dnp3.bind(py).borrow().conn_damage(id),
            S7COMM => self.s7comm.bind(py).borrow().engine.damage(id),
            MODBUS | IEC104 | SMB => self.owner(py)?.call_method1("_table_ics_damage", (id,))?.extract()?,
            _ => 0,
        })
    }

    /// `TcpNative._forget`: what the readers hold for a connection dropped without reading on.
    fn forget(&self, py: Python<'_>, kind: u8, id: u64) -> PyResult<()> {
        match kind {
            FTP => self.ftp.bind(py).borrow_mut().engine.forget(id),
            HTTP => self.http.bind(py).borrow_mut().engine.forget(id),
            TLS => self.tls.bind(py).borrow_mut().engine.close(id),
            DNP3 => self.dnp3.bind(py).borrow_mut().drop_conn(id),
            S7COMM => self.s7comm.bind(py).borrow_mut().engine.end(id),
            _ => {
                self.owner(py)?.call_method1("_table_ics_drop", (id,))?;
            }
        }
        Ok(())
    }

    /// `TcpNative._close`: the connection forgotten, what waited behind holes read, partial lines ended. Should a
    /// reader fail on it, what the readers hold for it is dropped all the same, and the failure raised.
    fn close(&mut self, py: Python<'_>, key: Key, docs: &Bound<'_, PyList>) -> PyResult<()> {
        let Some(Slot::Native(mut conn)) = self.pop(&key) else { return Ok(()) };
        let result = self.end(py, &mut conn, docs);
        if result.is_err() {
            self.forget(py, conn.kind, conn.id)?;
        }
        result
    }

    fn close_quietly(&mut self, py: Python<'_>, key: Key, docs: &Bound<'_, PyList>) -> PyResult<()> {
        if let Err(err) = self.close(py, key, docs) {
            self.failed(py, err, "what it had read is lost")?;
        }
        Ok(())
    }

    fn end(&mut self, py: Python<'_>, conn: &mut Conn, docs: &Bound<'_, PyList>) -> PyResult<()> {
        let (kind, id) = (conn.kind, conn.id);
        self.counts.ics_damaged += self.damage(py, kind, id)?;
        for side in 0..2 {
            let rest = conn.dirs[side].flush();
            if is_ics(kind) {
                if !rest.is_empty() {
                    let seq = conn.dirs[side].next_seq.unwrap_or(0) as u64;
                    self.read_ics(py, kind, id, side == 0, conn.last_ts, seq, &rest, docs)?; // nothing follows
                }
                self.counts.gap_bytes += conn.dirs[side].gap_bytes;
                continue;
            }
            if !rest.is_empty() || kind != TLS {
                self.read(py, kind, id, side == 0, conn.last_ts, &rest, docs)?;
            }
            self.counts.gap_bytes += conn.dirs[side].gap_bytes;
            if kind == FTP {
                let written = self.ftp.bind(py).borrow_mut().engine.end(py, id, side == 0, conn.last_ts)?;
                self.push_docs(py, docs, written)?;
            }
        }
        if kind != HTTP {
            return self.forget(py, kind, id); // nothing else waits in them once the directions are read
        }
        crate::finite(conn.last_ts)?;
        let written = self.http.bind(py).borrow_mut().engine.end(py, id, conn.last_ts)?;
        self.push_docs(py, docs, written)
    }

    /// `TcpNative.sweep`: connections idle since `idle_before` closed, tshark's decisions forgotten under pressure,
    /// then the engines' own expiry (Python's `_expire_readers`).
    fn sweep_into(&mut self, py: Python<'_>, idle_before: f64, docs: &Bound<'_, PyList>) -> PyResult<()> {
        // Python walks every key in order: the idle connections are closed, and under pressure tshark's decisions
        // are dropped while the table is more than half full. Decisions are dropped from the oldest on, so those
        // visited are always the first ones left: merged with the idle connections by order, the walk costs what
        // it closes and drops, not the table's size (a capture whose clock jumps a minute a frame sweeps each one).
        let pressure = self.conns.len() > self.max_connections / 2;
        let idle: Vec<(u64, Key)> = self
            .natives
            .iter()
            .filter(|(_, key)| matches!(self.conns.get(key), Some((_, Slot::Native(c))) if c.last_ts < idle_before))
            .map(|(&order, &key)| (order, key))
            .collect();
        let mut next_idle = idle.into_iter().peekable();
        loop {
            let decision = if pressure && self.conns.len() > self.max_connections / 2 {
                self.decisions.first_key_value().map(|(&order, &key)| (order, key))
            } else {
                None
            };
            match (next_idle.peek().copied(), decision) {
                (Some((idle_order, _)), Some((order, key))) if order < idle_order => {
                    self.pop(&key);
                }
                (Some((_, key)), _) => {
                    next_idle.next();
                    self.close_quietly(py, key, docs)?;
                }
                (None, Some((_, key))) => {
                    self.pop(&key);
                }
                (None, None) => break,
            }
        }
        let expired = self.owner(py)?.call_method1("_expire_readers", (idle_before,))?;
        for doc in expired.iter()? {
            docs.append(doc?)?;
        }
        Ok(())
    }
}

/// A segment's bookkeeping on its connection (`TcpNative._take`): None when it starts a new connection on the same
/// endpoints (`_reused`: after both FINs or a RST, a SYN or a segment later than Zeek keeps a closed connection's
/// state; or a sequence number too far from its direction's stream); else (kind, id, from the client, the chunks
/// reassembly handed on when it carries payload).
fn segment_step(conn: &mut Conn, seg: &Segment<'_>, budget: &mut Budget) -> Option<(u8, u64, bool, Option<Vec<Chunk>>)> {
    let (src, _) = address(seg.src);
    let from_client = conn.client == (src, seg.src.len() as u8, seg.sport);
    let side = if from_client { 0 } else { 1 };
    let closed_before =
        conn.ended.is_some_and(|ended| seg.ts - ended > CLOSE_DELAY_SECONDS || seg.flags & (F_SYN | F_ACK) == F_SYN);
    let far = conn.dirs[side].next_seq.is_some_and(|next| distance(seg.seq, next).abs() > REUSE_DISTANCE);
    if closed_before || far {
        return None;
    }
    if seg.flags & F_SYN != 0 && seg.flags & F_RST == 0 {
        conn.dirs[side].syn(seg.seq);
    } else if seg.flags & F_ACK != 0 {
        conn.dirs[1 - side].acked(seg.ack);
    }
    conn.last_ts = seg.ts;
    if seg.flags & (F_FIN | F_RST) != 0 && conn.ended.is_none() {
        conn.fins |= if seg.flags & F_RST != 0 { 3 } else { 1 << side };
        if conn.fins == 3 {
            conn.ended = Some(seg.ts);
        }
    }
    let chunks = (seg.plen > 0).then(|| conn.dirs[side].add(seg.seq, seg.payload, seg.plen, budget));
    Some((conn.kind, conn.id, from_client, chunks))
}

fn is_ics(kind: u8) -> bool {
    matches!(kind, MODBUS | DNP3 | S7COMM | IEC104 | SMB)
}

#[pymethods]
impl TcpTable {
    /// `owner`: the `TcpNative` whose `_table_decide`, `_table_ics_feed`, `_table_ics_damage`, `_table_ics_drop`,
    /// `_expire_readers` and `_failed` the table calls; `wrap` turns an engine's JSON bytes into a run's document;
    /// `max_connections`: connections and decisions held before the oldest is closed; `max_held_bytes`: what may
    /// wait behind holes in all connections together (each segment charged its bytes and SEGMENT_OVERHEAD).
    #[new]
    #[pyo3(signature = (http, tls, ftp, dnp3, s7comm, owner, wrap, max_connections = MAX_CONNECTIONS,
                        max_held_bytes = MAX_HELD_BYTES))]
    #[allow(clippy::too_many_arguments)]
    fn new(http: Py<HttpEngine>, tls: Py<TlsEngine>, ftp: Py<FtpEngine>, dnp3: Py<Dnp3Engine>,
           s7comm: Py<S7commEngine>, owner: PyObject, wrap: PyObject, max_connections: usize,
           max_held_bytes: usize) -> Self {
        TcpTable {
            http,
            tls,
            ftp,
            dnp3,
            s7comm,
            owner: Some(owner),
            wrap: Some(wrap),
            conns: Map::default(),
            natives: BTreeMap::new(),
            decisions: BTreeMap::new(),
            next_order: 0,
            next_sweep: None,
            max_connections,
            counts: Counts::default(),
            budget: Budget { limit: max_held_bytes, ..Budget::default() },
        }
    }

    /// One captured Ethernet frame at `off` of `buf` (`caplen` bytes): 0 when tshark reads it, 1 when it was read
    /// here (its documents appended to `docs`), 2 when it is no plain IPv4 TCP frame (Python decodes it and calls
    /// `take`). Plain: the decoder's fast path (no VLAN, IPv4 without options or fragmentation, a sane TCP header).
    fn frame(&mut self, py: Python<'_>, buf: &[u8], off: usize, caplen: usize, ts: f64,
             docs: &Bound<'_, PyList>) -> PyResult<u8> {
        let Some(f) = off.checked_add(caplen).and_then(|end| buf.get(off..end)) else { return Ok(DECODE_IN_PYTHON) };
        if caplen < 54 || f[12] != 8 || f[13] != 0 || f[14] != 0x45 || f[23] != 6 || f[20] & 0x3F != 0 || f[21] != 0 {
            return Ok(DECODE_IN_PYTHON);
        }
        let (src, dst, sport, dport) = (&f[26..30], &f[30..34], be16(f, 34), be16(f, 36));
        let key = Key::of(src, sport, dst, dport);
        if matches!(self.conns.get(&key), Some((_, Slot::Tshark))) {
            return Ok(TSHARK_READS);
        }
        let total = be16(f, 16) as usize;
        let thl = (f[46] >> 4) as usize * 4;
        if total < 28 || thl < 20 || thl > total - 20 {
            return Ok(DECODE_IN_PYTHON);
        }
        let plen = total - 20 - thl;
        let captured = (caplen.min(14 + total) - 34).saturating_sub(thl).min(plen);
        let start = 34 + thl;
        let payload = if plen > 0 && captured > 0 { &f[start..start + captured] } else { &f[..0] };
        let seg = Segment { src, dst, sport, dport, flags: f[47], seq: be32(f, 38), ack: be32(f, 42), payload, plen, ts };
        Ok(if self.take_segment(py, key, &seg, docs)? { TAKEN } else { TSHARK_READS })
    }

    /// A TCP segment Python decoded (tunnels, VLANs, IPv6, fragments): whether it is read here.
    #[allow(clippy::too_many_arguments)]
    fn take(&mut self, py: Python<'_>, src: &[u8], dst: &[u8], sport: u16, dport: u16, flags: u8, seq: u32, ack: u32,
            payload: &[u8], plen: usize, ts: f64, docs: &Bound<'_, PyList>) -> PyResult<bool> {
        let seg = Segment { src, dst, sport, dport, flags, seq, ack, payload, plen, ts };
        self.take_segment(py, Key::of(src, sport, dst, dport), &seg, docs)
    }

    /// Whether tshark reads the connection of these endpoints.
    fn tshark_reads(&self, src: &[u8], dst: &[u8], sport: u16, dport: u16) -> bool {
        matches!(self.conns.get(&Key::of(src, sport, dst, dport)), Some((_, Slot::Tshark)))
    }

    /// `TcpNative.sweep(idle_before)`.
    fn sweep(&mut self, py: Python<'_>, idle_before: f64, docs: &Bound<'_, PyList>) -> PyResult<()> {
        self.sweep_into(py, idle_before, docs)
    }

    /// The end of the run: every connection closed, in the table's order.
    fn close_all(&mut self, py: Python<'_>, docs: &Bound<'_, PyList>) -> PyResult<()> {
        let mut keys: Vec<(u64, Key)> = self.natives.iter().chain(self.decisions.iter()).map(|(&o, &k)| (o, k)).collect();
        keys.sort_unstable_by_key(|&(order, _)| order);
        for (_, key) in keys {
            self.close_quietly(py, key, docs)?;
        }
        Ok(())
    }

    /// (frames, handed_back, gaps, gap_bytes, reused, ics_damaged, budget_holes, budget_hole_bytes):
    /// `native_tcp.Stats`' counters kept here.
    #[getter]
    fn counts(&self) -> (u64, u64, u64, i64, u64, u64, u64, i64) {
        let c = &self.counts;
        (c.frames, c.handed_back, c.gaps, c.gap_bytes, c.reused, c.ics_damaged, self.budget.holes,
         self.budget.hole_bytes)
    }

    /// What the table's connections hold behind holes now, as the budget counts it.
    #[getter]
    fn held_bytes(&self) -> usize {
        self.budget.held
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.http)?;
        visit.call(&self.tls)?;
        visit.call(&self.ftp)?;
        visit.call(&self.dnp3)?;
        visit.call(&self.s7comm)?;
        if let Some(o) = &self.owner {
            visit.call(o)?;
        }
        if let Some(w) = &self.wrap {
            visit.call(w)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.owner = None;
        self.wrap = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(chunks: &[Chunk]) -> Vec<u8> {
        chunks.iter().flat_map(|c| match c {
            Chunk::Data(d) => d.clone(),
            Chunk::Hole(_) => Vec::new(),
        }).collect()
    }

    #[test]
    fn reorders_and_first_copy_wins() {
        let mut d = Direction::default();
        d.syn(99);
        assert!(d.add_wire(105, b"world", 5).is_empty());
        assert_eq!(data(&d.add_wire(100, b"hello", 5)), b"helloworld");
        assert!(d.add_wire(100, b"HELLO", 5).is_empty());
    }

    #[test]
    fn wraps_around() {
        let mut d = Direction::default();
        d.syn(u32::MAX - 2);
        assert_eq!(data(&d.add_wire(u32::MAX - 1, b"abcd", 4)), b"abcd");
        assert_eq!(data(&d.add_wire(2, b"ef", 2)), b"ef");
    }

    #[test]
    fn snap_cut_is_a_hole() {
        let mut d = Direction::default();
        d.syn(0);
        let out = d.add_wire(1, b"ab", 10);
        assert!(matches!(out.last(), Some(Chunk::Hole(8))));
        assert_eq!(d.gap_bytes, 8);
        assert_eq!(d.next_seq, Some(11));
    }

    #[test]
    fn past_the_budget_a_direction_skips_its_holes() {
        let mut budget = Budget { limit: 2 * (SEGMENT_OVERHEAD + 5), ..Budget::default() };
        let (mut a, mut b) = (Direction::default(), Direction::default());
        a.syn(99);
        b.syn(999);
        assert!(a.add(110, b"later", 5, &mut budget).is_empty());
        assert!(b.add(1010, b"later", 5, &mut budget).is_empty());
        assert_eq!(budget.held, 2 * (SEGMENT_OVERHEAD + 5));
        // a third waiting segment would pass the budget: its direction gives up its hole
        let out = a.add(120, b"after", 5, &mut budget);
        assert!(matches!(out[0], Chunk::Hole(10)));
        assert_eq!(data(&out), b"later");
        assert_eq!((budget.holes, budget.hole_bytes, budget.held), (1, 10, 2 * (SEGMENT_OVERHEAD + 5)));
        assert_eq!(a.next_seq, Some(115));
    }
}
