//! `documents.make_doc` for the engines' datasets (DNS, HTTP), written straight to JSON: `iso`, `doc_id`, Community ID,
//! values cut at MAX_KEYWORD_CHARS code points with their `secops.truncated` entries.

use crate::render::Answer;
use crate::text::{float_repr, json_float, json_list, json_str};
use base64::Engine as _;
use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use sha1::Sha1;
use sha2::Sha256;
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const MAX_KEYWORD_CHARS: usize = 4096;
const DATASET: &str = "secops.dns";

/// A flow oriented like Zeek (`documents.Flow`, transport udp).
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub orig_h: String,
    pub orig_p: u16,
    pub resp_h: String,
    pub resp_p: u16,
    pub stream: String,
}

/// A field value of a document (None is never stored: the caller leaves the field out).
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    StrList(Vec<String>),
    Answers(Vec<Answer>),
    Truncs(Vec<Trunc<'static>>),
}

pub struct Trunc<'a> {
    pub field: &'a str,
    pub length: usize,
    pub sha256: String,
}

impl Trunc<'_> {
    /// The entry as orjson writes `documents.truncation`'s dict.
    pub fn write(&self, out: &mut String) {
        out.push_str("{\"field\":");
        json_str(out, self.field);
        let _ = write!(out, ",\"length\":{},\"sha256\":\"{}\"}}", self.length, self.sha256);
    }
}

#[derive(Debug)]
pub struct DocError(pub String);

/// Python's `len()` of a string: code points.
pub fn chars(text: &str) -> usize {
    text.chars().count()
}

/// `text[:MAX_KEYWORD_CHARS]`: the first MAX_KEYWORD_CHARS code points.
pub fn clip_at(text: &str) -> &str {
    match text.char_indices().nth(MAX_KEYWORD_CHARS) {
        Some((at, _)) => text.get(..at).unwrap_or(text),
        None => text,
    }
}

fn clip_str(text: &str) -> String {
    clip_at(text).to_string()
}

fn write_answer(out: &mut String, a: &Answer) {
    out.push_str("{\"type\":");
    json_str(out, &a.rtype);
    out.push_str(",\"name\":");
    json_str(out, &a.name);
    out.push_str(",\"ttl\":");
    match a.ttl {
        Some(t) => {
            let _ = write!(out, "{}", t);
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"data\":");
    json_str(out, &a.data);
    out.push('}');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Int(i) => {
            let _ = write!(out, "{}", i);
        }
        Value::Float(f) => json_float(out, *f),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Str(s) => json_str(out, s),
        Value::StrList(items) => json_list(out, items, |out, s| json_str(out, s)),
        Value::Answers(items) => json_list(out, items, write_answer),
        Value::Truncs(items) => json_list(out, items, |out, t| t.write(out)),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `truncation`: field, length in code points and SHA-256 of the original (lists as orjson's text).
fn truncation(field: &'static str, value: &Value) -> Trunc<'static> {
    let text = match value {
        Value::Str(s) => s.clone(),
        other => {
            let mut t = String::new();
            write_value(&mut t, other);
            t
        }
    };
    Trunc { field, length: chars(&text), sha256: sha256_hex(text.as_bytes()) }
}

/// `hashlib.sha256(data).hexdigest()`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// `len(s) > MAX_KEYWORD_CHARS` (code points), the byte length checked first.
pub fn long(s: &str) -> bool {
    s.len() > MAX_KEYWORD_CHARS && chars(s) > MAX_KEYWORD_CHARS
}

/// `len(value) > MAX` for a string, `not fits(value)` for a list.
fn needs_cut(value: &Value) -> bool {
    match value {
        Value::Str(s) => long(s),
        Value::StrList(items) => items.iter().any(|s| long(s)),
        Value::Answers(items) => items.iter().any(|a| long(&a.rtype) || long(&a.name) || long(&a.data)),
        _ => false,
    }
}

/// `clip`: every string in the value cut at MAX_KEYWORD_CHARS code points.
fn clip(value: Value) -> Value {
    match value {
        Value::Str(s) => Value::Str(clip_str(&s)),
        Value::StrList(items) => Value::StrList(items.iter().map(|s| clip_str(s)).collect()),
        Value::Answers(items) => Value::Answers(
            items
                .iter()
                .map(|a| Answer { rtype: clip_str(&a.rtype), name: clip_str(&a.name), ttl: a.ttl, data: clip_str(&a.data) })
                .collect(),
        ),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Str(s) => s.is_empty(),
        Value::StrList(v) => v.is_empty(),
        Value::Answers(v) => v.is_empty(),
        Value::Truncs(v) => v.is_empty(),
        _ => false,
    }
}

/// Nested objects built by `put` (dotted paths), in insertion order.
enum Node {
    Obj(Vec<(&'static str, Node)>),
    Leaf(Value),
}

fn put(tree: &mut Vec<(&'static str, Node)>, dotted: &'static str, value: Value) {
    let mut cur = tree;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            match cur.iter_mut().find(|(k, _)| *k == part) {
                Some(slot) => slot.1 = Node::Leaf(value),
                None => cur.push((part, Node::Leaf(value))),
            }
            return;
        }
        let idx = match cur.iter().position(|(k, _)| *k == part) {
            Some(i) => i,
            None => {
                cur.push((part, Node::Obj(Vec::new())));
                cur.len() - 1
            }
        };
        if !matches!(cur[idx].1, Node::Obj(_)) {
            cur[idx].1 = Node::Obj(Vec::new());
        }
        cur = match &mut cur[idx].1 {
            Node::Obj(children) => children,
            Node::Leaf(_) => return,
        };
    }
}

fn write_members(out: &mut String, members: &[(&'static str, Node)]) {
    for (key, node) in members {
        out.push(',');
        json_str(out, key);
        out.push(':');
        match node {
            Node::Leaf(v) => write_value(out, v),
            Node::Obj(children) => {
                out.push('{');
                let mark = out.len();
                write_members(out, children);
                if out.len() > mark {
                    out.remove(mark); // the first member's comma
                }
                out.push('}');
            }
        }
    }
}

/// Python's `f"{ts:.6f}"` (both round the exact value half to even).
pub fn fixed6(ts: f64) -> String {
    fixed6_exact(ts).unwrap_or_else(|| format!("{:.6}", ts))
}

/// `fixed6` in integers for the common timestamps: the exact value times 10^6, rounded half to even.
fn fixed6_exact(ts: f64) -> Option<String> {
    let bits = ts.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exp) = if biased == 0 { (fraction, -1074) } else { (fraction | (1u64 << 52), biased - 1075) };
    if !(-120..=0).contains(&exp) || biased == 0x7ff {
        return None;
    }
    let scaled = u128::from(mantissa) * 1_000_000;
    let shift = exp.unsigned_abs();
    let mut micros = scaled >> shift;
    if shift > 0 {
        let rest = scaled & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        if rest > half || (rest == half && micros & 1 == 1) {
            micros += 1;
        }
    }
    let mut out = String::with_capacity(24);
    if bits >> 63 == 1 {
        out.push('-');
    }
    let _ = write!(out, "{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    Some(out)
}

/// `secops.ecs.doc_id` of its parts' text already joined (each part followed by 0x1f, UTF-8 with surrogates
/// passed): BLAKE2b-128, hex.
pub fn id_of(text: &[u8]) -> String {
    hex(&Blake2b::<U16>::digest(text))
}

fn packed(text: &str, v6: bool) -> Option<Vec<u8>> {
    if v6 {
        text.parse::<Ipv6Addr>().ok().map(|a| a.octets().to_vec())
    } else {
        text.parse::<Ipv4Addr>().ok().map(|a| a.octets().to_vec())
    }
}

type FlowKey = (u8, String, String, u16, u16);

/// `documents.community_id`'s cache (the same flow's documents share it); emptied when full.
#[derive(Default)]
pub struct CidCache {
    map: std::collections::HashMap<FlowKey, String>,
}

impl CidCache {
    pub fn get(&mut self, flow: &Flow) -> Result<String, DocError> {
        self.get_proto(17, flow)
    }

    /// The Community ID of a flow of this IP protocol (TCP 6, UDP 17).
    pub fn get_proto(&mut self, proto: u8, flow: &Flow) -> Result<String, DocError> {
        let key = (proto, flow.orig_h.clone(), flow.resp_h.clone(), flow.orig_p, flow.resp_p);
        if let Some(cid) = self.map.get(&key) {
            return Ok(cid.clone());
        }
        let cid = community_id_proto(proto, &flow.orig_h, &flow.resp_h, flow.orig_p, flow.resp_p)?;
        if self.map.len() >= 65_536 {
            self.map.clear();
        }
        self.map.insert(key, cid.clone());
        Ok(cid)
    }
}

/// `documents.community_id` of a flow given as address text, for a transport with ports (TCP 6, UDP 17).
pub fn community_id_proto(proto: u8, saddr: &str, daddr: &str, sport: u16, dport: u16) -> Result<String, DocError> {
    let v6 = saddr.contains(':');
    let (mut src, mut dst) = match (packed(saddr, v6), packed(daddr, v6)) {
        (Some(s), Some(d)) => (s, d),
        _ => return Err(DocError(format!("not an address pair: '{}', '{}'", saddr, daddr))),
    };
    let (mut sport, mut dport) = (sport, dport);
    if src > dst || (src == dst && sport > dport) {
        std::mem::swap(&mut src, &mut dst);
        std::mem::swap(&mut sport, &mut dport);
    }
    let mut h = Sha1::new();
    h.update([0u8, 0u8]);
    h.update(&src);
    h.update(&dst);
    h.update([proto, 0u8]);
    h.update(sport.to_be_bytes());
    h.update(dport.to_be_bytes());
    Ok(format!("1:{}", base64::engine::general_purpose::STANDARD.encode(h.finalize())))
}

fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `secops.ecs.iso`: ISO-8601 UTC with microseconds (fraction rounded half-even, as Python does).
pub fn iso(ts: f64) -> Result<String, DocError> {
    if !ts.is_finite() {
        return Err(DocError(format!("timestamp out of range: {}", ts)));
    }
    let second = ts.trunc();
    let mut micros = ((ts - second) * 1e6).round_ties_even();
    let mut second = second;
    if micros >= 1_000_000.0 {
        second += 1.0;
        micros -= 1_000_000.0;
    } else if micros < 0.0 {
        second -= 1.0;
        micros += 1_000_000.0;
    }
    if !(-62_135_596_800.0..253_402_300_800.0).contains(&second) {
        return Err(DocError(format!("year is out of range: {}", ts)));
    }
    let secs = second as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil(days);
    let mut out = String::with_capacity(27);
    if (1000..=9999).contains(&y) {
        push_digits(&mut out, y as u32, 4);
    } else {
        let _ = write!(out, "{}", y); // strftime's %Y: years before 1000 unpadded
    }
    out.push('-');
    push_digits(&mut out, m, 2);
    out.push('-');
    push_digits(&mut out, d, 2);
    out.push('T');
    push_digits(&mut out, (rest / 3600) as u32, 2);
    out.push(':');
    push_digits(&mut out, (rest / 60 % 60) as u32, 2);
    out.push(':');
    push_digits(&mut out, (rest % 60) as u32, 2);
    out.push('.');
    push_digits(&mut out, micros as u32, 6);
    out.push('Z');
    Ok(out)
}

/// `n`'s last `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(i) % 10) as u8));
    }
}

/// What a dataset's documents share: dataset, transport, `network.protocol`, and which empty strings are kept.
pub struct Spec<'a> {
    pub dataset: &'a str,
    pub transport: &'a str,
    pub protocol: &'a str,
    pub keep_empty: &'a [&'a str],
}

/// `make_doc(spec.dataset, flow, ts, identity, fields, spec.protocol, spec.keep_empty)` as orjson's JSON bytes, and
/// how many values it cut; `timestamp` is `iso(ts)`, `id_tail` the identity's parts as `doc_id` joins them (each followed by 0x1f).
pub fn write_doc(
    spec: &Spec<'_>,
    cid: &str,
    flow: &Flow,
    (ts, timestamp): (f64, &str),
    id_tail: &str,
    fields: Vec<(&'static str, Value)>,
) -> Result<(Vec<u8>, usize), DocError> {
    let mut out = String::with_capacity(1024);
    out.push_str("{\"@timestamp\":\"");
    out.push_str(timestamp);
    out.push_str("\",\"event\":{\"dataset\":");
    json_str(&mut out, spec.dataset);
    out.push_str(",\"kind\":\"event\",\"module\":\"secops\",");
    out.push_str("\"category\":[\"network\"],\"type\":[\"protocol\"]},\"source\":{\"ip\":");
    json_str(&mut out, &flow.orig_h);
    let _ = write!(out, ",\"port\":{}}},\"destination\":{{\"ip\":", flow.orig_p);
    json_str(&mut out, &flow.resp_h);
    let _ = write!(out, ",\"port\":{}}},\"network\":{{\"transport\":", flow.resp_p);
    json_str(&mut out, spec.transport);
    out.push_str(",\"community_id\":");
    json_str(&mut out, cid);
    out.push_str(",\"protocol\":");
    json_str(&mut out, spec.protocol);
    out.push('}');
    let mut tree: Vec<(&'static str, Node)> = Vec::new();
    let mut truncated: Vec<Trunc<'static>> = Vec::new();
    for (dotted, value) in fields {
        if is_empty(&value) && !spec.keep_empty.contains(&dotted) {
            continue;
        }
        let value = if needs_cut(&value) {
            truncated.push(truncation(dotted, &value));
            clip(value)
        } else {
            value
        };
        put(&mut tree, dotted, value);
    }
    let n_cut = truncated.len();
    if n_cut > 0 {
        put(&mut tree, "secops.truncated", Value::Truncs(truncated));
    }
    write_members(&mut out, &tree);
    out.push_str(",\"_id\":\"");
    let text = format!("{}\x1f{}\x1f{}\x1f{}", spec.dataset, cid, fixed6(ts), id_tail);
    out.push_str(&id_of(text.as_bytes()));
    out.push_str("\"}");
    Ok((out.into_bytes(), n_cut))
}

/// `make_doc` of the DNS dataset as JSON bytes, and how many values it cut.
pub fn make_doc(
    cids: &mut CidCache,
    flow: &Flow,
    ts: f64,
    tid: u16,
    reply_ts: Option<f64>,
    fields: Vec<(&'static str, Value)>,
) -> Result<(Vec<u8>, usize), DocError> {
    let cid = cids.get(flow)?;
    let reply = reply_ts.map(float_repr).unwrap_or_else(|| "None".to_string());
    let spec = Spec { dataset: DATASET, transport: "udp", protocol: "dns", keep_empty: &[] };
    write_doc(&spec, &cid, flow, (ts, &iso(ts)?), &format!("dns\x1f{}\x1f{}\x1f", tid, reply), fields)
}
