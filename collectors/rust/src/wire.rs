//! `dns_wire.parse`: one UDP payload read as tshark reads it (bounds-checked, never panics).

use crate::document::hex;
use crate::render::{render, render_txt, Record, NSEC, OPCODE_UPDATE};
use crate::text::{display_text, ntop4, ntop6, string_text, zeek_name};

pub const MAX_NAME_CHARS: usize = 253;
pub const MAX_POINTERS: u32 = 255;
pub const MAX_LABEL_STEPS: u32 = 4096;
pub const MAX_RECORDS: usize = 4096;
pub const LOOPS: &str = "<Name contains a pointer that loops>";
pub const TOO_LONG: &str = "<Name too long>";
pub const ROOT: &str = "<Root>";
const OPT: u16 = 41;
const CLASS_MDNS_MASK: u16 = 0x7FFF;

/// `WireStats` (its counters).
#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub messages: u64,
    pub truncated: u64,
    pub too_short: u64,
    pub records_cut: u64,
}

#[derive(Clone, Debug)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// `dns.DnsMessage` as `parse` fills it.
#[derive(Clone, Debug, Default)]
pub struct Message {
    pub tid: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: Option<u8>,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub question: Option<Question>,
    pub records: Vec<Record>,
    pub n_answers: u16,
    pub n_auth: u16,
    pub n_additional: u16,
}

/// The message ends before a field it announces (`_End`).
struct End;

/// Why reading a record's data stopped: the message ended, or a TXT record was cut inside its strings.
enum Cut {
    End,
    Partial(Vec<(u8, String)>),
}

impl From<End> for Cut {
    fn from(_: End) -> Cut {
        Cut::End
    }
}

enum Values {
    Texts(Vec<String>),
    Strings(Vec<(u8, String)>),
}

fn need(data: &[u8], pos: usize, n: usize) -> Result<(), End> {
    if pos.saturating_add(n) > data.len() {
        Err(End)
    } else {
        Ok(())
    }
}

fn byte(data: &[u8], pos: usize) -> Result<u8, End> {
    data.get(pos).copied().ok_or(End)
}

fn u16_at(data: &[u8], pos: usize) -> Result<u16, End> {
    Ok((byte(data, pos)? as u16) << 8 | byte(data, pos + 1)? as u16)
}

/// The pointer targets one name has followed (the reference's set): a short list, then (past `SHORT` of them) a
/// bitmap of the 14-bit offsets, so that 255 pointers cost 255 steps, not 255 * 255 / 2 comparisons.
#[derive(Default)]
struct Targets {
    short: Vec<usize>,
    bits: Option<Box<[u64; 256]>>,
}

impl Targets {
    const SHORT: usize = 8;

    /// Whether `target` was followed before; it is noted as followed now.
    fn seen(&mut self, target: usize) -> bool {
        let (word, bit) = ((target >> 6) & 0xFF, 1u64 << (target & 63));
        if let Some(bits) = self.bits.as_mut() {
            let was = bits[word] & bit != 0;
            bits[word] |= bit;
            return was;
        }
        if self.short.contains(&target) {
            return true;
        }
        self.short.push(target);
        if self.short.len() > Self::SHORT {
            let mut bits = Box::new([0u64; 256]);
            for &t in &self.short {
                bits[(t >> 6) & 0xFF] |= 1u64 << (t & 63);
            }
            self.bits = Some(bits);
        }
        false
    }
}

/// Runs of labels in one message: from a position, how many labels follow one after the other (each in the
/// message) and their bytes of text. A name past its first pointer and past MAX_NAME_CHARS keeps nothing of its labels
/// but their count and size, so it goes over a run at once: the reference's bounds let every name walk 4096 labels
/// (8,000 names of a datagram pointing at one long name: 26 million steps, 60 ms a datagram) where a run is now
/// walked once a message. Filled lazily (most messages never need it).
#[derive(Default)]
pub struct Runs {
    table: Vec<Option<(u32, u32)>>, // (labels, bytes of text) from each position where they were counted
}

impl Runs {
    /// (labels, bytes of text) of the run of labels starting at `pos`.
    fn at(&mut self, data: &[u8], pos: usize) -> (u32, u32) {
        if self.table.is_empty() {
            self.table = vec![None; data.len() + 1];
        }
        let known = |table: &[Option<(u32, u32)>], p: usize| table.get(p).copied().flatten();
        let mut chain: Vec<usize> = Vec::new();
        let mut p = pos;
        while known(&self.table, p).is_none() {
            let Some(&length) = data.get(p) else { break };
            let length = usize::from(length);
            if length == 0 || length & 0xC0 != 0 || p + 1 + length > data.len() {
                break;
            }
            chain.push(p);
            p += 1 + length;
        }
        let (mut count, mut text) = known(&self.table, p).unwrap_or((0, 0));
        for &at in chain.iter().rev() {
            count += 1;
            text += u32::from(data[at]);
            if let Some(slot) = self.table.get_mut(at) {
                *slot = Some((count, text));
            }
        }
        (count, text)
    }
}

/// `read_name`: (name as tshark shows it, bytes it takes at `pos`).
fn read_name(data: &[u8], mut pos: usize, runs: &mut Runs) -> Result<(String, usize), End> {
    let end = data.len();
    let mut parts: Vec<(usize, usize)> = Vec::new();
    let mut size = 0usize;
    let mut consumed: Option<usize> = None;
    let mut pointers = 0u32;
    let mut steps = 0u32;
    let mut targets = Targets::default();
    let start = pos;
    loop {
        if let (Some(used), true) = (consumed, size > MAX_NAME_CHARS) {
            // nothing more to keep of the labels here: their count and size, the whole run at once
            let (count, text) = runs.at(data, pos);
            if count > 0 {
                if steps + count > MAX_LABEL_STEPS {
                    return Ok((LOOPS.to_string(), used));
                }
                steps += count;
                size += (text + count) as usize;
                pos += (text + count) as usize;
            }
        }
        let length = byte(data, pos)? as usize;
        pos += 1;
        if length == 0 {
            break;
        }
        let kind = length & 0xC0;
        if kind == 0 {
            if pos + length > end {
                return Err(End);
            }
            steps += 1;
            if steps > MAX_LABEL_STEPS {
                return Ok((LOOPS.to_string(), consumed.unwrap_or(pos.saturating_sub(start))));
            }
            if size <= MAX_NAME_CHARS {
                parts.push((pos, pos + length));
            }
            size += length + usize::from(size > 0);
            pos += length;
        } else if kind == 0xC0 {
            let low = byte(data, pos)? as usize;
            let target = (length & 0x3F) << 8 | low;
            pos += 1;
            pointers += 1;
            let used = *consumed.get_or_insert(pos.saturating_sub(start));
            if target == pos + 2 || pointers > MAX_POINTERS || targets.seen(target) {
                return Ok((LOOPS.to_string(), used));
            }
            pos = target;
        } else {
            return Err(End);
        }
    }
    let used = consumed.unwrap_or(pos.saturating_sub(start));
    if size > MAX_NAME_CHARS {
        return Ok((TOO_LONG.to_string(), used));
    }
    if parts.is_empty() {
        return Ok((ROOT.to_string(), used));
    }
    let mut raw = Vec::with_capacity(size);
    for (i, &(a, b)) in parts.iter().enumerate() {
        if i > 0 {
            raw.push(b'.');
        }
        raw.extend_from_slice(data.get(a..b).unwrap_or(&[]));
    }
    Ok((display_text(&raw), used))
}

fn addr6(data: &[u8], pos: usize) -> Result<String, End> {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(data.get(pos..pos + 16).ok_or(End)?);
    Ok(ntop6(&octets))
}

/// `_rdata_values`: the field values tshark reads from one record's data (None: rendered without them).
fn rdata_values(data: &[u8], rtype: u16, pos: usize, rdlen: usize, runs: &mut Runs) -> Result<Option<Values>, Cut> {
    let one = |s: String| Ok(Some(Values::Texts(vec![s])));
    match rtype {
        1 => {
            need(data, pos, 4)?;
            one(ntop4(&data[pos..pos + 4]))
        }
        28 => {
            need(data, pos, 16)?;
            one(addr6(data, pos)?)
        }
        2 | 5 | 12 | 6 | NSEC => one(read_name(data, pos, runs)?.0),
        15 => {
            need(data, pos, 2)?;
            one(read_name(data, pos + 2, runs)?.0)
        }
        33 => {
            need(data, pos, 6)?;
            one(read_name(data, pos + 6, runs)?.0)
        }
        38 => {
            let prefix = byte(data, pos)? as usize;
            if prefix > 128 {
                return Err(Cut::End);
            }
            let octets = (128 - prefix).div_ceil(8);
            need(data, pos + 1, octets)?;
            let mut suffix = [0u8; 16];
            suffix[16 - octets..].copy_from_slice(data.get(pos + 1..pos + 1 + octets).ok_or(End)?);
            if prefix > 0 {
                read_name(data, pos + 1 + octets, runs)?;
            }
            one(ntop6(&suffix))
        }
        46 => {
            let covered = u16_at(data, pos)?;
            need(data, pos, 18)?;
            Ok(Some(Values::Texts(vec![covered.to_string(), read_name(data, pos + 18, runs)?.0])))
        }
        48 => {
            need(data, pos, 4)?;
            one(data[pos + 3].to_string())
        }
        43 => {
            need(data, pos, 4)?;
            Ok(Some(Values::Texts(vec![data[pos + 2].to_string(), data[pos + 3].to_string()])))
        }
        44 => {
            need(data, pos, 2)?;
            if rdlen <= 2 {
                return Ok(None);
            }
            need(data, pos + 2, rdlen - 2)?;
            one(hex(&data[pos + 2..pos + rdlen]))
        }
        29 => {
            if byte(data, pos)? != 0 {
                return Ok(None);
            }
            need(data, pos, 16)?;
            Ok(Some(Values::Texts(vec![data[pos + 1].to_string(), data[pos + 2].to_string(), data[pos + 3].to_string()])))
        }
        16 | 99 => {
            let mut strings: Vec<(u8, String)> = Vec::new();
            let mut left = rdlen as i64;
            let mut pos = pos;
            while left != 0 {
                let fits = pos < data.len() && pos + 1 + data[pos] as usize <= data.len();
                if !fits || strings.len() > MAX_RECORDS {
                    return Err(Cut::Partial(strings));
                }
                let size = data[pos];
                strings.push((size, string_text(&data[pos + 1..pos + 1 + size as usize])));
                pos += 1 + size as usize;
                left -= 1 + size as i64;
            }
            Ok(Some(Values::Strings(strings)))
        }
        _ => Ok(None),
    }
}

/// `_record`: (record, position after it, whether it was read whole).
fn record(data: &[u8], pos: usize, section: u8, mdns: bool, runs: &mut Runs) -> Result<(Record, usize, bool), End> {
    let (name, used) = read_name(data, pos, runs)?;
    let mut pos = pos + used;
    need(data, pos, 10)?;
    let rtype = u16_at(data, pos)?;
    let mut rclass = u16_at(data, pos + 2)?;
    let ttl = (u16_at(data, pos + 4)? as u32) << 16 | u16_at(data, pos + 6)? as u32;
    let rdlen = u16_at(data, pos + 8)? as usize;
    pos += 10;
    need(data, pos, rdlen)?;
    if mdns {
        rclass &= CLASS_MDNS_MASK;
    }
    let (rclass_out, ttl_out) = if rtype == OPT { (None, None) } else { (Some(rclass), Some(ttl)) };
    let owner = zeek_name(&name);
    let mut values: Option<Values> = None;
    let mut whole = true;
    if rdlen > 0 {
        match rdata_values(data, rtype, pos, rdlen, runs) {
            Ok(v) => values = v,
            Err(Cut::Partial(strings)) => {
                values = Some(Values::Strings(strings));
                whole = false;
            }
            Err(Cut::End) => whole = false,
        }
    }
    let text = if rtype == 16 || rtype == 99 {
        match &values {
            Some(Values::Strings(s)) => Some(render_txt(rtype, s)),
            _ => Some(render_txt(rtype, &[])),
        }
    } else {
        match &values {
            Some(Values::Texts(v)) => render(rtype, &owner, Some(v)),
            Some(Values::Strings(_)) | None => render(rtype, &owner, None),
        }
    };
    let rec = Record { section, name: owner, rtype, rclass: rclass_out, ttl: ttl_out, data: text };
    Ok((rec, pos + rdlen, whole))
}

/// `parse`: the message of one payload (`kind`: dns, mdns or llmnr), None without a header.
pub fn parse(data: &[u8], kind: &str, stats: &mut Stats) -> Option<Message> {
    if data.len() < 4 {
        stats.too_short += 1;
        return None;
    }
    stats.messages += 1;
    let tid = (data[0] as u16) << 8 | data[1] as u16;
    let flags = (data[2] as u16) << 8 | data[3] as u16;
    let response = flags & 0x8000 != 0;
    let opcode = (flags >> 11 & 0xF) as u8;
    let llmnr = kind == "llmnr";
    let mut msg = Message {
        tid,
        response,
        opcode,
        rcode: if response { Some((flags & 0xF) as u8) } else { None },
        aa: flags & 0x0400 != 0 && response && !llmnr,
        tc: flags & 0x0200 != 0,
        rd: flags & 0x0100 != 0 && !llmnr,
        ra: flags & 0x0080 != 0 && response && !llmnr,
        ..Message::default()
    };
    let mut counts: Vec<u16> = Vec::with_capacity(4);
    for pos in [4usize, 6, 8, 10] {
        if pos + 2 > data.len() {
            break;
        }
        counts.push((data[pos] as u16) << 8 | data[pos + 1] as u16);
    }
    let update = opcode == OPCODE_UPDATE;
    if counts.len() > 1 && !update {
        msg.n_answers = counts[1];
    }
    if counts.len() > 2 && !update {
        msg.n_auth = counts[2];
    }
    if counts.len() > 3 {
        msg.n_additional = counts[3];
    }
    if counts.len() < 4 {
        stats.truncated += 1;
        return Some(msg);
    }
    if read_sections(data, &counts, kind == "mdns", &mut msg, stats).is_err() {
        stats.truncated += 1;
    }
    Some(msg)
}

fn read_sections(data: &[u8], counts: &[u16], mdns: bool, msg: &mut Message, stats: &mut Stats) -> Result<(), End> {
    let mut pos = 12usize;
    let mut runs = Runs::default();
    for _ in 0..(counts[0] as usize).min(MAX_RECORDS) {
        let (name, used) = read_name(data, pos, &mut runs)?;
        pos += used;
        need(data, pos, 4)?;
        let qtype = u16_at(data, pos)?;
        let qclass = u16_at(data, pos + 2)?;
        if msg.question.is_none() {
            let qclass = if mdns { qclass & CLASS_MDNS_MASK } else { qclass };
            msg.question = Some(Question { name, qtype, qclass });
        }
        pos += 4;
    }
    let (an, ns) = (counts[1] as usize, counts[2] as usize);
    let total = an + ns + counts[3] as usize;
    if total > MAX_RECORDS {
        stats.records_cut += 1;
    }
    for i in 0..total.min(MAX_RECORDS) {
        let section = if i < an { 0 } else if i < an + ns { 1 } else { 2 };
        let (rec, next, whole) = record(data, pos, section, mdns, &mut runs)?;
        pos = next;
        msg.records.push(rec);
        if !whole {
            return Err(End);
        }
    }
    Ok(())
}
