//! DNP3 over natively read TCP connections: `dnp3_wire.Dnp3Reader` (link frames, CRCs, transport-segment
//! reassembly as tshark 4.0.17 does it, its bounds and damage counters) and `dnp3.Dnp3Analyzer` (one record per
//! request/reply exchange, Zeek's dnp3.log) in one, each document written as JSON by `document::write_doc`.
//! A literal port: every quirk of the reference (tshark's) is kept, see collectors/protocols/dnp3_wire.py.

use crate::Map;
use crate::document::{write_doc, CidCache, Flow, Spec, Value};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyLong, PyTuple};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const HEADER: usize = 10;
const BLOCK: usize = 16;
const ONE_MORE: i64 = -1;
const MAX_SEGMENTS_BACK: i64 = 60;
const MAX_AGE: i64 = 64;
const MAX_MESSAGE_BYTES: i64 = 16 * 1024;
const MAX_MESSAGE_SEGMENTS: usize = 128;
const MAX_TABLE_BYTES: i64 = 64 * 1024;
const MAX_OPEN_RECORDS: usize = 100_000; // base.MAX_OPEN_RECORDS
const DNP3_PORT: u16 = 20000;

const CRC_TABLE: [u16; 256] = crc_table();

const fn crc_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u16;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA6BC } else { crc >> 1 };
            k += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// Whether the CRC stored at `data[end..end + 2]` covers `data[start..end]` (false when out of bounds).
fn crc_ok(data: &[u8], start: usize, end: usize) -> bool {
    let (Some(covered), Some(lo), Some(hi)) = (data.get(start..end), data.get(end), data.get(end + 1)) else {
        return false;
    };
    let mut crc: u16 = 0;
    for &b in covered {
        crc = (crc >> 8) ^ CRC_TABLE[usize::from((crc as u8) ^ b)];
    }
    (crc ^ 0xFFFF) == u16::from(*lo) | u16::from(*hi) << 8
}

fn frame_length(length: u8) -> usize {
    let length = usize::from(length);
    if length <= 5 {
        return length + 5;
    }
    length + 5 + 2 * ((length - 5).div_ceil(BLOCK))
}

fn header_accepted(data: &[u8]) -> bool {
    let n = data.len();
    if data.first() != Some(&0x05) || (n > 1 && data.get(1) != Some(&0x64)) {
        return false;
    }
    n < HEADER || crc_ok(data, 0, 8)
}

/// `Dnp3Stats`.
#[derive(Default, Clone, Copy)]
pub struct Stats {
    frames: u64,
    messages: u64,
    bad_header_crc: u64,
    crc_failures: u64,
    malformed: u64,
    rejected_segments: u64,
    rejected_bytes: u64,
    hole_bytes: u64,
    hunted_bytes: u64,
    table_segments_dropped: u64,
    table_bytes_dropped: u64,
}

struct Segment {
    offset: i64,
    data: Vec<u8>,
    frame: i64,
}

struct Message {
    segments: Vec<Segment>,
    last: i64,
    updated: i64,
    size: i64,
}

impl Message {
    fn new() -> Self {
        Message { segments: Vec::new(), last: -1, updated: 0, size: 0 }
    }
}

fn latest(segments: &[Segment]) -> i64 {
    segments.iter().map(|s| s.frame).fold(0, i64::max)
}

fn size_of(segments: &[Segment]) -> i64 {
    segments.iter().map(|s| s.data.len() as i64).sum()
}

/// `_merge`: two runs merged by offset, staying on the current run at equal offsets.
fn merge(ours: Vec<Segment>, theirs: Vec<Segment>) -> Vec<Segment> {
    if theirs.is_empty() {
        return ours;
    }
    let total = ours.len() + theirs.len();
    let mut lists: [Vec<Option<Segment>>; 2] =
        [ours.into_iter().map(Some).collect(), theirs.into_iter().map(Some).collect()];
    let (mut cur, mut i, mut j) = (0usize, 0usize, 0usize);
    let mut out = Vec::with_capacity(total);
    let offset = |l: &[Option<Segment>], k: usize| l.get(k).and_then(|s| s.as_ref()).map(|s| s.offset);
    while i < lists[cur].len() {
        let other = 1 - cur;
        if let (Some(o), Some(c)) = (offset(&lists[other], j), offset(&lists[cur], i)) {
            if o < c {
                cur = other;
                std::mem::swap(&mut i, &mut j);
            }
        }
        if let Some(s) = lists[cur].get_mut(i).and_then(Option::take) {
            out.push(s);
        }
        i += 1;
    }
    let rest = &mut lists[1 - cur];
    out.extend(rest.iter_mut().skip(j).filter_map(Option::take));
    out
}

/// `Dnp3Fragments`: messages in reassembly for one direction, keyed by the sequence number of their first segment.
/// Messages live in an arena so that one the table let go of can still be held by the call in progress (as a
/// Python reference would be); released slots are reused once `add` returns.
#[derive(Default)]
struct Fragments {
    keys: HashMap<i64, usize>,
    slab: Vec<Message>,
    free: Vec<usize>,
    released: Vec<usize>,
    bytes: i64,
}

impl Fragments {
    fn insert_new(&mut self, key: i64) -> usize {
        let id = match self.free.pop() {
            Some(id) => {
                self.slab[id] = Message::new();
                id
            }
            None => {
                self.slab.push(Message::new());
                self.slab.len() - 1
            }
        };
        if let Some(old) = self.keys.insert(key, id) {
            self.released.push(old);
        }
        id
    }

    fn remove(&mut self, key: i64) -> Option<usize> {
        let id = self.keys.remove(&key)?;
        self.released.push(id);
        Some(id)
    }

    fn drop_key(&mut self, key: i64) {
        if let Some(id) = self.remove(key) {
            self.bytes -= self.slab[id].size;
        }
    }

    fn release(&mut self) {
        for id in std::mem::take(&mut self.released) {
            self.slab[id] = Message::new();
            self.free.push(id);
        }
    }

    /// A transport segment; the message it completes. Err(key): the reference's KeyError (a message it let go of
    /// completed).
    fn add(
        &mut self,
        seq: i64,
        data: Vec<u8>,
        first: bool,
        last: bool,
        frame: i64,
        stats: &mut Stats,
    ) -> Result<Option<Vec<u8>>, i64> {
        if first && last && self.keys.is_empty() {
            return Ok(Some(data));
        }
        let (msg, offset, base);
        if first {
            let mut m = self.keys.get(&seq).copied();
            if let Some(id) = m {
                if self.slab[id].updated + MAX_AGE < frame {
                    self.drop_key(seq);
                    m = None;
                }
            }
            let id = match m {
                Some(id) => id,
                None => self.insert_new(seq),
            };
            self.take_back(seq, id);
            msg = id;
            offset = 0;
            base = seq;
        } else {
            let mut found = None;
            let mut off = 1;
            for back in 1..MAX_SEGMENTS_BACK {
                let mut cand = self.keys.get(&(seq - back)).copied();
                if let Some(id) = cand {
                    if self.slab[id].updated + MAX_AGE < frame {
                        self.drop_key(seq - back);
                        cand = None;
                    }
                }
                if let Some(id) = cand {
                    let l = self.slab[id].last;
                    if l < 0 || l >= back {
                        found = Some(id);
                        off = back;
                    }
                    break;
                }
            }
            let id = match found {
                Some(id) => id,
                None => {
                    off = 1;
                    self.drop_key(seq - 1);
                    self.insert_new(seq - 1)
                }
            };
            msg = id;
            offset = off;
            base = seq - off;
        }
        if last {
            self.pass_on(seq, offset, msg);
        } else {
            self.join_next(base, offset + 1);
        }
        let out = self.link(base, msg, Segment { offset, data, frame }, last, stats);
        self.release();
        out
    }

    fn take_back(&mut self, seq: i64, msg: usize) {
        for back in 1..MAX_SEGMENTS_BACK {
            let Some(&old) = self.keys.get(&(seq - back)) else { continue };
            let mut kept = std::mem::take(&mut self.slab[old].segments);
            let cut = kept.iter().position(|s| s.offset >= back).unwrap_or(kept.len());
            let mut moved = kept.split_off(cut);
            self.slab[old].updated = latest(&kept);
            let none_kept = kept.is_empty();
            self.slab[old].segments = kept;
            if !moved.is_empty() {
                for s in moved.iter_mut() {
                    s.offset -= back;
                    if s.frame > self.slab[msg].updated {
                        self.slab[msg].updated = s.frame;
                    }
                }
                let size = size_of(&moved);
                self.slab[old].size -= size;
                self.slab[msg].size += size;
                let ours = std::mem::take(&mut self.slab[msg].segments);
                self.slab[msg].segments = merge(ours, moved);
                if self.slab[old].last >= back {
                    self.slab[msg].last = self.slab[old].last - back;
                    self.slab[old].last = -1;
                }
                if none_kept {
                    self.remove(seq - back);
                }
            }
            return;
        }
    }

    fn pass_on(&mut self, seq: i64, offset: i64, msg: usize) {
        let mut kept = std::mem::take(&mut self.slab[msg].segments);
        let Some(cut) = kept.iter().position(|s| s.offset > offset) else {
            self.slab[msg].segments = kept;
            return;
        };
        let mut beyond = kept.split_off(cut);
        self.slab[msg].updated = latest(&kept);
        self.slab[msg].segments = kept;
        let mut size = size_of(&beyond);
        self.slab[msg].size -= size;
        let skip = beyond.iter().take_while(|s| s.offset == offset + 1).count();
        if skip > 0 {
            let dropped = size_of(&beyond[..skip]);
            self.bytes -= dropped;
            size -= dropped;
            beyond.drain(..skip);
        }
        let (Some(first_frame), Some(_)) = (beyond.first().map(|s| s.frame), beyond.last()) else { return };
        let nxt = match self.keys.get(&(seq + 1)) {
            Some(&id) => id,
            None => self.insert_new(seq + 1),
        };
        for s in beyond.iter_mut() {
            s.offset -= offset + 1;
        }
        if first_frame > self.slab[nxt].updated {
            self.slab[nxt].updated = first_frame;
        }
        self.slab[nxt].size += size;
        let tail = beyond.last().map_or(0, |s| s.offset);
        let ours = std::mem::take(&mut self.slab[nxt].segments);
        self.slab[nxt].segments = merge(ours, beyond);
        if self.slab[msg].last > offset {
            self.slab[nxt].last = self.slab[msg].last - (offset + 1);
            self.slab[msg].last = -1;
        } else {
            self.join_next(seq + 1, tail);
        }
    }

    fn join_next(&mut self, base: i64, offset: i64) {
        if offset == 0 {
            return;
        }
        let Some(&m) = self.keys.get(&base) else { return };
        let l = self.slab[m].last;
        if 0 <= l && l <= offset {
            return;
        }
        let Some(&n) = self.keys.get(&(base + offset)) else { return };
        match self.slab[n].segments.first() {
            None => return,
            Some(s) if s.offset == 0 => return,
            _ => {}
        }
        let mut segs = std::mem::take(&mut self.slab[n].segments);
        for s in segs.iter_mut() {
            s.offset += offset;
            if s.frame > self.slab[m].updated {
                self.slab[m].updated = s.frame;
            }
        }
        self.slab[m].segments.extend(segs);
        self.slab[m].size += self.slab[n].size;
        if self.slab[n].last >= 0 {
            self.slab[m].last = self.slab[n].last + offset;
        }
        self.remove(base + offset);
    }

    fn link(&mut self, base: i64, msg: usize, seg: Segment, last: bool, stats: &mut Stats) -> Result<Option<Vec<u8>>, i64> {
        let len = seg.data.len() as i64;
        {
            let m = &mut self.slab[msg];
            if seg.frame > m.updated {
                m.updated = seg.frame;
            }
            if last && m.last < 0 {
                m.last = seg.offset;
            }
            let at = m.segments.iter().position(|s| seg.offset < s.offset).unwrap_or(m.segments.len());
            m.segments.insert(at, seg);
            m.size += len;
        }
        self.bytes += len;
        let (size, count) = (self.slab[msg].size, self.slab[msg].segments.len());
        if size > MAX_MESSAGE_BYTES || count > MAX_MESSAGE_SEGMENTS {
            stats.table_segments_dropped += count as u64;
            stats.table_bytes_dropped += size as u64;
            self.drop_key(base);
            return Ok(None);
        }
        if self.bytes > MAX_TABLE_BYTES {
            let held: usize = self.keys.values().map(|&id| self.slab[id].segments.len()).sum();
            stats.table_segments_dropped += held as u64;
            stats.table_bytes_dropped += self.bytes as u64;
            let ids: Vec<usize> = self.keys.drain().map(|(_, id)| id).collect();
            self.released.extend(ids);
            self.bytes = 0;
            return Ok(None);
        }
        let m = &self.slab[msg];
        if m.last < 0 {
            return Ok(None);
        }
        let mut have = 0;
        for s in &m.segments {
            if s.offset == have {
                have += 1;
            }
        }
        if have <= m.last {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(size as usize);
        let mut prev = -1;
        for s in &m.segments {
            if s.offset != prev {
                out.extend_from_slice(&s.data);
            }
            prev = s.offset;
        }
        if self.remove(base).is_none() {
            return Err(base);
        }
        self.bytes -= size;
        Ok(Some(out))
    }
}

struct Direction {
    pending: Vec<u8>,
    need: i64,
    hunting: bool,
}

/// One connection: `Dnp3Reader` and the oriented flows of its two directions for the analyzer.
struct Conn {
    dirs: [Direction; 2],
    tables: [Fragments; 2],
    stats: Stats,
    frame: i64,
    funcs: Vec<i64>,
    iins: Vec<i64>,
    stream: String,
    flows: [Arc<Flow>; 2], // the flow `flow_by_server_port` gives a frame from the client, from the server
}

/// `flow_by_server_port(pkt, {20000})` of a frame sent from (src, sport) to (dst, dport).
fn oriented(src: &(String, u16), dst: &(String, u16), stream: &str) -> Flow {
    let (sport, dport) = (src.1, dst.1);
    let sender_serves = dport != DNP3_PORT && (sport == DNP3_PORT || sport < dport);
    let (o, r) = if sender_serves { (dst, src) } else { (src, dst) };
    Flow { orig_h: o.0.clone(), orig_p: o.1, resp_h: r.0.clone(), resp_p: r.1, stream: stream.to_string() }
}

impl Conn {
    fn feed(&mut self, side: usize, chunk: Option<&[u8]>, hole: u64) -> Result<(), i64> {
        let Some(chunk) = chunk else {
            let d = &mut self.dirs[side];
            self.stats.hole_bytes += hole;
            self.stats.hunted_bytes += d.pending.len() as u64;
            d.pending.clear();
            d.need = 0;
            d.hunting = true;
            return Ok(());
        };
        if chunk.is_empty() {
            return Ok(());
        }
        let hunted;
        let chunk = if self.dirs[side].hunting {
            hunted = self.hunt(side, chunk);
            if hunted.is_empty() {
                return Ok(());
            }
            &hunted[..]
        } else {
            chunk
        };
        let need = self.dirs[side].need;
        if need > 0 {
            let missing = (need as usize).saturating_sub(self.dirs[side].pending.len());
            if chunk.len() < missing {
                self.dirs[side].pending.extend_from_slice(chunk);
                return Ok(());
            }
            let mut pdu = std::mem::take(&mut self.dirs[side].pending);
            pdu.extend_from_slice(&chunk[..missing]);
            self.dirs[side].need = 0;
            self.walk(side, &pdu)?;
            if chunk.len() > missing {
                self.walk(side, &chunk[missing..])?;
            }
        } else if need == ONE_MORE {
            let mut data = std::mem::take(&mut self.dirs[side].pending);
            data.extend_from_slice(chunk);
            self.dirs[side].need = 0;
            self.walk(side, &data)?;
        } else {
            self.walk(side, chunk)?;
        }
        Ok(())
    }

    fn hunt(&mut self, side: usize, chunk: &[u8]) -> Vec<u8> {
        let d = &mut self.dirs[side];
        let mut data = std::mem::take(&mut d.pending);
        data.extend_from_slice(chunk);
        let n = data.len();
        let mut from = 0;
        while let Some(at) = data.get(from..).and_then(|s| s.windows(2).position(|w| w == [0x05, 0x64])).map(|p| p + from) {
            if at + HEADER > n {
                break;
            }
            if crc_ok(&data, at, at + 8) {
                d.hunting = false;
                self.stats.hunted_bytes += at as u64;
                data.drain(..at);
                return data;
            }
            from = at + 1;
        }
        let keep = n.saturating_sub(HEADER - 1);
        self.stats.hunted_bytes += keep as u64;
        d.pending = data.split_off(keep);
        Vec::new()
    }

    fn walk(&mut self, side: usize, data: &[u8]) -> Result<(), i64> {
        if !header_accepted(data) {
            self.stats.rejected_segments += 1;
            self.stats.rejected_bytes += data.len() as u64;
            return Ok(());
        }
        let n = data.len();
        let mut off = 0;
        while off < n {
            let Some(&length) = data.get(off + 2).filter(|_| n - off >= HEADER) else {
                self.dirs[side].pending = data[off..].to_vec();
                self.dirs[side].need = ONE_MORE;
                return Ok(());
            };
            let size = frame_length(length);
            if size < HEADER {
                self.stats.malformed += 1;
                self.stats.rejected_bytes += (n - off) as u64;
                return Ok(());
            }
            if n - off < size {
                self.dirs[side].pending = data[off..].to_vec();
                self.dirs[side].need = size as i64;
                return Ok(());
            }
            self.frame(side, &data[off..off + size])?;
            off += size;
        }
        Ok(())
    }

    fn frame(&mut self, side: usize, f: &[u8]) -> Result<(), i64> {
        let stats = &mut self.stats;
        stats.frames += 1;
        if !crc_ok(f, 0, 8) {
            stats.bad_header_crc += 1;
        }
        if matches!(f.get(3).map(|c| c & 0x0F), Some(0 | 9 | 11)) {
            return Ok(());
        }
        let size = f.len();
        if size == HEADER {
            stats.malformed += 1;
            return Ok(());
        }
        let mut pos = HEADER;
        let mut user: Vec<u8> = Vec::with_capacity(size);
        while pos < size {
            let stop = (pos + BLOCK).min(size.saturating_sub(2));
            if !crc_ok(f, pos, stop) {
                stats.crc_failures += 1;
                return Ok(());
            }
            user.extend_from_slice(&f[pos..stop]);
            pos = stop + 2;
        }
        let Some(&tr) = user.first() else { return Ok(()) };
        user.remove(0);
        let done = self.tables[side].add(
            i64::from(tr & 0x3F),
            user,
            tr & 0x40 != 0,
            tr & 0x80 != 0,
            self.frame,
            &mut self.stats,
        )?;
        if let Some(al) = done {
            self.stats.messages += 1;
            if al.len() < 2 {
                self.stats.malformed += 1;
                return Ok(());
            }
            let func = al[1];
            self.funcs.push(i64::from(func));
            if (func == 129 || func == 130) && al.len() >= 4 {
                self.iins.push(i64::from(al[2]) << 8 | i64::from(al[3]));
            }
        }
        Ok(())
    }

    fn damage(&self) -> u64 {
        let s = &self.stats;
        s.crc_failures + s.malformed + s.rejected_segments + s.table_segments_dropped
    }
}

struct Exchange {
    flow: Arc<Flow>,
    ts: f64,
    request: Option<i64>,
    reply: Option<i64>,
    iin: Option<i64>,
    order: u64,
}

fn function_name(code: i64) -> String {
    const NAMES: [&str; 34] = [
        "CONFIRM", "READ", "WRITE", "SELECT", "OPERATE", "DIRECT_OPERATE", "DIRECT_OPERATE_NR", "IMMED_FREEZE",
        "IMMED_FREEZE_NR", "FREEZE_CLEAR", "FREEZE_CLEAR_NR", "FREEZE_AT_TIME", "FREEZE_AT_TIME_NR", "COLD_RESTART",
        "WARM_RESTART", "INITIALIZE_DATA", "INITIALIZE_APPL", "START_APPL", "STOP_APPL", "SAVE_CONFIG",
        "ENABLE_UNSOLICITED", "DISABLE_UNSOLICITED", "ASSIGN_CLASS", "DELAY_MEASURE", "RECORD_CURRENT_TIME",
        "OPEN_FILE", "CLOSE_FILE", "DELETE_FILE", "GET_FILE_INFO", "AUTHENTICATE_FILE", "ABORT_FILE",
        "ACTIVATE_CONFIG", "AUTHENTICATE_REQ", "AUTHENTICATE_ERR",
    ];
    match code {
        0..=33 => NAMES[code as usize].to_string(),
        129 => "RESPONSE".to_string(),
        130 => "UNSOLICITED_RESPONSE".to_string(),
        131 => "AUTHENTICATE_RESP".to_string(),
        _ => format!("unknown-{}", code),
    }
}

fn opt_text(v: Option<i64>) -> String {
    v.map_or_else(|| "None".to_string(), |v| v.to_string())
}

/// One run's natively read DNP3 connections (see `collectors.protocols.dnp3_native`): a `Dnp3Reader` per
/// connection and one `Dnp3Analyzer`, each document as JSON bytes.
#[pyclass(module = "collectors._rs")]
pub struct Dnp3Engine {
    conns: Map<u64, Conn>,
    open: Map<String, Exchange>, // by the connection's stream, as Dnp3Analyzer.open is keyed
    order: BTreeMap<u64, String>,    // the open exchanges in insertion order (evict_oldest)
    next_order: u64,
    max_open: usize,
    cids: CidCache,
    #[pyo3(get, set)]
    cut_values: u64,
}

impl Dnp3Engine {
    fn emit(&mut self, ex: &Exchange, out: &mut Vec<Vec<u8>>) -> PyResult<()> {
        let code = ex.request.or(ex.reply);
        let mut fields: Vec<(&'static str, Value)> = Vec::with_capacity(6);
        if let Some(r) = ex.request {
            fields.push(("secops.dnp3.fc_request", Value::Str(function_name(r))));
        }
        if let Some(r) = ex.reply {
            fields.push(("secops.dnp3.fc_reply", Value::Str(function_name(r))));
        }
        if let Some(c) = code {
            fields.push(("secops.dnp3.function_code", Value::Int(c)));
            fields.push(("secops.dnp3.function", Value::Str(function_name(c))));
        }
        if let Some(i) = ex.iin {
            fields.push(("secops.dnp3.iin", Value::Int(i)));
        }
        fields.push(("secops.dnp3.is_control", Value::Bool(matches!(ex.request, Some(3..=6)))));
        let cid = self.cids.get_proto(6, &ex.flow).map_err(|e| PyValueError::new_err(e.0))?;
        let spec = Spec { dataset: "secops.dnp3", transport: "tcp", protocol: "dnp3", keep_empty: &[] };
        let timestamp = crate::document::iso(ex.ts).map_err(|e| PyValueError::new_err(e.0))?;
        let tail = format!("dnp3\x1f{}\x1f{}\x1f", opt_text(ex.request), opt_text(ex.reply));
        let (doc, cuts) =
            write_doc(&spec, &cid, &ex.flow, (ex.ts, &timestamp), &tail, fields).map_err(|e| PyValueError::new_err(e.0))?;
        self.cut_values += cuts as u64;
        out.push(doc);
        Ok(())
    }

    fn take_open(&mut self, stream: &str) -> Option<Exchange> {
        let ex = self.open.remove(stream)?;
        self.order.remove(&ex.order);
        Some(ex)
    }

    /// `Dnp3Analyzer.handle` of one frame's `dnp3.al.func`/`dnp3.al.iin` values.
    fn handle(&mut self, stream: &str, flow: &Arc<Flow>, funcs: &[i64], iins: &[i64], ts: f64, out: &mut Vec<Vec<u8>>) -> PyResult<()> {
        let mut iin_at = 0;
        for &code in funcs {
            if code < 129 {
                if let Some(ex) = self.open.get_mut(stream) {
                    ex.request = Some(code);
                } else {
                    let order = self.next_order;
                    self.next_order += 1;
                    self.open.insert(
                        stream.to_string(),
                        Exchange { flow: flow.clone(), ts, request: Some(code), reply: None, iin: None, order },
                    );
                    self.order.insert(order, stream.to_string());
                }
                while self.open.len() > self.max_open {
                    let Some((_, oldest)) = self.order.pop_first() else { break };
                    if let Some(stale) = self.open.remove(&oldest) {
                        self.emit(&stale, out)?;
                    }
                }
                continue;
            }
            let mut ex = self.take_open(stream).unwrap_or(Exchange {
                flow: flow.clone(),
                ts,
                request: None,
                reply: None,
                iin: None,
                order: 0,
            });
            ex.reply = Some(code);
            ex.iin = iins.get(iin_at).copied();
            iin_at += 1;
            self.emit(&ex, out)?;
        }
        Ok(())
    }

    /// `feed` with the chunks as (bytes, or None and a hole's size): the documents as JSON bytes (also the
    /// connection table's way in, `crate::tcp`).
    pub(crate) fn feed_parts(
        &mut self,
        conn_id: u64,
        from_client: bool,
        parts: &[(Option<&[u8]>, u64)],
        ts: f64,
    ) -> PyResult<Vec<Vec<u8>>> {
        crate::finite(ts)?;
        let side = if from_client { 0 } else { 1 };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Err(PyKeyError::new_err(conn_id));
        };
        for &(data, hole) in parts {
            if let Err(key) = conn.feed(side, data, hole) {
                self.conns.remove(&conn_id);
                return Err(PyKeyError::new_err(key));
            }
        }
        conn.frame += 1;
        if conn.funcs.is_empty() {
            return Ok(Vec::new());
        }
        let funcs = std::mem::take(&mut conn.funcs);
        let iins = std::mem::take(&mut conn.iins);
        let stream = conn.stream.clone();
        let flow = conn.flows[side].clone();
        let mut out = Vec::new();
        self.handle(&stream, &flow, &funcs, &iins, ts, &mut out)?;
        Ok(out)
    }

    pub(crate) fn conn_damage(&self, conn_id: u64) -> u64 {
        self.conns.get(&conn_id).map_or(0, Conn::damage)
    }

    pub(crate) fn drop_conn(&mut self, conn_id: u64) {
        self.conns.remove(&conn_id);
    }

    fn to_py(py: Python<'_>, docs: Vec<Vec<u8>>) -> Vec<PyObject> {
        docs.iter().map(|d| PyBytes::new_bound(py, d).into_any().unbind()).collect()
    }
}

#[pymethods]
impl Dnp3Engine {
    #[new]
    #[pyo3(signature = (max_open = None))]
    fn new(max_open: Option<usize>) -> Self {
        Dnp3Engine {
            conns: Map::default(),
            open: Map::default(),
            order: BTreeMap::new(),
            next_order: 0,
            max_open: max_open.unwrap_or(MAX_OPEN_RECORDS),
            cids: CidCache::default(),
            cut_values: 0,
        }
    }

    /// A connection read as DNP3 from now on (`flow`'s fields spelled out, client first).
    fn open(&mut self, conn_id: u64, orig_h: String, orig_p: u16, resp_h: String, resp_p: u16, stream: String) {
        let client = (orig_h, orig_p);
        let server = (resp_h, resp_p);
        let flows = [Arc::new(oriented(&client, &server, &stream)), Arc::new(oriented(&server, &client, &stream))];
        let new_dir = || Direction { pending: Vec::new(), need: 0, hunting: false };
        self.conns.insert(
            conn_id,
            Conn {
                dirs: [new_dir(), new_dir()],
                tables: [Fragments::default(), Fragments::default()],
                stats: Stats::default(),
                frame: 1,
                funcs: Vec::new(),
                iins: Vec::new(),
                stream,
                flows,
            },
        );
    }

    /// One frame of a direction: its reassembled chunks (bytes, or an int for a hole) through the reader, then one
    /// analyzer step over the messages they completed (`Dnp3Reader.feed`s, `take`, `Dnp3Analyzer.handle`). KeyError
    /// where the reference raises one (the connection is then forgotten).
    fn feed(
        &mut self,
        py: Python<'_>,
        conn_id: u64,
        from_client: bool,
        chunks: &Bound<'_, PyList>,
        ts: f64,
    ) -> PyResult<Vec<PyObject>> {
        let items: Vec<Bound<'_, PyAny>> = chunks.iter().collect();
        let mut parts = Vec::with_capacity(items.len());
        for item in &items {
            if let Ok(b) = item.downcast::<PyBytes>() {
                parts.push((Some(b.as_bytes()), 0));
            } else if item.downcast::<PyLong>().is_ok() {
                parts.push((None, item.extract::<u64>()?));
            } else {
                return Err(PyTypeError::new_err("a chunk is bytes or an int (a hole)"));
            }
        }
        Ok(Self::to_py(py, self.feed_parts(conn_id, from_client, &parts, ts)?))
    }

    /// `ics_damage` of the connection's reader (0 for one not open).
    fn damage(&self, conn_id: u64) -> u64 {
        self.conn_damage(conn_id)
    }

    /// The connection's `Dnp3Stats` as a tuple in the order of `dnp3_native.STATS`.
    fn stats<'py>(&self, py: Python<'py>, conn_id: u64) -> Bound<'py, PyTuple> {
        let s = self.conns.get(&conn_id).map_or(Stats::default(), |c| c.stats);
        PyTuple::new_bound(
            py,
            [
                s.bad_header_crc,
                s.crc_failures,
                s.frames,
                s.hole_bytes,
                s.hunted_bytes,
                s.malformed,
                s.messages,
                s.rejected_bytes,
                s.rejected_segments,
                s.table_bytes_dropped,
                s.table_segments_dropped,
            ],
        )
    }

    /// The connection's reader dropped (its open exchange stays until answered or finish, as the analyzer's).
    fn end(&mut self, conn_id: u64) {
        self.drop_conn(conn_id);
    }

    /// `Dnp3Analyzer.finish()` without its warning: the exchanges never answered, by time (the caller reports
    /// `cut_values`).
    fn finish(&mut self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let mut rest: Vec<Exchange> = self.open.drain().map(|(_, ex)| ex).collect();
        self.order.clear();
        rest.sort_by(|a, b| a.ts.partial_cmp(&b.ts).unwrap_or(std::cmp::Ordering::Equal).then(a.order.cmp(&b.order)));
        let mut out = Vec::new();
        for ex in &rest {
            self.emit(ex, &mut out)?;
        }
        Ok(Self::to_py(py, out))
    }

    /// Connections held.
    #[getter]
    fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Exchanges waiting for their reply.
    #[getter]
    fn exchanges(&self) -> usize {
        self.open.len()
    }
}
