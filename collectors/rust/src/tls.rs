//! TLS over natively read TCP connections: `tls_wire.TlsConnection` (records and handshake messages of both
//! directions, the fields tshark would print for a frame) and `TlsAnalyzer.handle/emit/finish` (sessions, JA3/JA3S,
//! JA4, `established`, alerts, heartbeats, resumption) in one, each document written through `fields`'s
//! `make_doc` writer. The leaf certificate's fields come from a Python callable (`collectors.protocols.x509`), once
//! per document.

use crate::Map;
use crate::document::{hex, sha256_hex};
use crate::fields;
use crate::tls_names::{alert_name, cipher_name, curve_name};
use md5::{Digest, Md5};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::collections::BTreeMap;

const HEADER: usize = 5;
const MAX_RECORD: usize = (1 << 14) + 2048; // tls_heartbeat.MAX_CIPHERTEXT
const MAX_HANDSHAKE_BYTES: usize = 256 * 1024;
const MAX_CERTIFICATES: usize = 16;
const MAX_MESSAGES_PER_RECORD: usize = 64;
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11,
    0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;
const SERVER_KEY_EXCHANGE: u8 = 12;
const CCS: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APP_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;
const TLS13: u16 = 0x0304;
const SIG_LIST_EXTENSIONS: [u16; 3] = [13, 34, 50];
const MAX_OPEN_RECORDS: usize = 100_000; // base.MAX_OPEN_RECORDS: sessions kept
// tls_heartbeat
const HEARTBEAT_EXTENSION: u16 = 15;
const HB_REQUEST: u8 = 1;
const HB_HEADER: usize = 3;
const HB_MIN_PADDING: usize = 16;
const HB_MAX_MESSAGE: usize = 1 << 14;
const LEAK_MARGIN: usize = 64;

/// `tls_wire.TlsStats`.
#[derive(Default)]
pub struct Stats {
    pub oversized: u64,
    pub unknown_records: u64,
    pub holes: u64,
    pub malformed: u64,
}

/// `tls_wire.Reader`: bounds-checked big-endian reads; `ok` turns false on any overrun.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    ok: bool,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0, ok: true }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let data: &'a [u8] = self.data;
        match self.pos.checked_add(n).and_then(|end| data.get(self.pos..end)) {
            Some(out) => {
                self.pos += n;
                out
            }
            None => {
                self.ok = false;
                self.pos = data.len();
                &[]
            }
        }
    }

    fn int(&mut self, n: usize) -> usize {
        self.take(n).iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    }

    fn vector(&mut self, length_bytes: usize) -> &'a [u8] {
        let n = self.int(length_bytes);
        self.take(n)
    }

    fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
}

fn u16s(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect()
}

fn be16(data: &[u8], at: usize) -> usize {
    match data.get(at..at + 2) {
        Some(p) => usize::from(u16::from_be_bytes([p[0], p[1]])),
        None => 0,
    }
}

fn early_draft(version: u16) -> bool {
    version >> 8 == 0x7E || (version >> 8 == 0x7F && (version & 0xFF) < 23)
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

pub fn is_grease(value: u16) -> bool {
    (value & 0x0F0F) == 0x0A0A && (value >> 8) == (value & 0xFF)
}

/// The fields one frame completed (tshark's, as `TlsAnalyzer` reads them back: numbers as numbers).
#[derive(Default)]
struct Frame {
    content_types: Vec<u8>,
    opaque_types: Vec<u8>,
    record_lengths: Vec<usize>,
    alert_descs: Vec<u8>,
    hb_types: Vec<u8>,
    hb_lengths: Vec<usize>,
    hs_types: Vec<u8>,
    versions: Vec<u16>,
    session_ids: Vec<Vec<u8>>,
    ciphersuites: Vec<u16>,
    ext_types: Vec<u16>,
    server_names: Vec<String>,
    alpn: Vec<String>,
    supported_versions: Vec<u16>,
    sig_lens: Vec<usize>,
    sigs: Vec<u16>,
    ja3: Vec<String>,
    ja3s: Vec<String>,
    certificates: Vec<Vec<u8>>,
    cipher_column: Option<u16>,
    named_curves: Vec<u16>,
    key_shares: Vec<u16>,
}

/// A buffer whose read part was cut off, given back what it outgrew: a record or handshake message read whole must
/// not keep its size (up to 2 x MAX_HANDSHAKE_BYTES a side) for as long as the connection lasts.
fn trimmed(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > 4 * buf.len().max(1024) {
        buf.shrink_to_fit();
    }
    buf
}

#[derive(Default)]
struct Side {
    buf: Vec<u8>,
    handshake: Vec<u8>,
    encrypted: bool,
    lost: bool,
}

impl Side {
    /// What it holds against the engine's `max_held` (`len(side.buf) + len(side.handshake)`).
    fn held(&self) -> usize {
        self.buf.len() + self.handshake.len()
    }
}

/// One connection: `tls_wire.TlsConnection` and its endpoints (client first).
struct Conn {
    sides: [Side; 2],
    tls13: bool,
    cipher: Option<u16>,
    client: (String, u16),
    server: (String, u16),
}

impl Conn {
    fn feed(&mut self, stats: &mut Stats, from_client: bool, chunk: Option<&[u8]>, frame: &mut Frame) {
        let idx = if from_client { 0 } else { 1 };
        if self.sides[idx].lost {
            return;
        }
        let Some(chunk) = chunk else {
            let side = &mut self.sides[idx];
            side.lost = true;
            side.buf = Vec::new();
            side.handshake = Vec::new();
            stats.holes += 1;
            return;
        };
        // a record still incomplete stays in `buf`, grown in place: only what a chunk completes is cut from its
        // front (copying the whole rest at every chunk cost the square of a record fed a byte at a time)
        let mut buf = std::mem::take(&mut self.sides[idx].buf);
        let buffered = !buf.is_empty();
        if buffered {
            buf.extend_from_slice(chunk);
        }
        let data: &[u8] = if buffered { &buf } else { chunk };
        let mut pos = 0;
        while data.len() - pos >= HEADER {
            let kind = data[pos];
            let length = be16(data, pos + 3);
            if !(CCS..=HEARTBEAT).contains(&kind) {
                stats.unknown_records += 1;
                self.sides[idx].lost = true;
                break;
            }
            if length > MAX_RECORD {
                stats.oversized += 1;
                self.sides[idx].lost = true;
                break;
            }
            if data.len() - pos < HEADER + length {
                break;
            }
            let body = &data[pos + HEADER..pos + HEADER + length];
            self.record(stats, idx, from_client, kind, body, frame);
            pos += HEADER + length;
            if self.sides[idx].lost {
                break;
            }
        }
        self.sides[idx].buf = if self.sides[idx].lost {
            Vec::new()
        } else if buffered {
            buf.drain(..pos);
            trimmed(buf)
        } else {
            data[pos..].to_vec()
        };
    }

    fn record(&mut self, stats: &mut Stats, idx: usize, from_client: bool, kind: u8, body: &[u8], frame: &mut Frame) {
        if kind == APP_DATA && self.tls13 {
            frame.opaque_types.push(kind);
        } else {
            frame.content_types.push(kind);
        }
        frame.record_lengths.push(body.len());
        if kind == CCS {
            self.sides[idx].encrypted = true;
        } else if kind == ALERT && body.len() == 2 {
            frame.alert_descs.push(body[1]);
        } else if kind == HEARTBEAT && body.len() >= 3 {
            frame.hb_types.push(body[0]);
            frame.hb_lengths.push(be16(body, 1));
        } else if kind == HANDSHAKE && !self.sides[idx].encrypted {
            self.handshake(stats, idx, from_client, body, frame);
        }
    }

    fn handshake(&mut self, stats: &mut Stats, idx: usize, from_client: bool, body: &[u8], frame: &mut Frame) {
        let mut data = std::mem::take(&mut self.sides[idx].handshake);
        data.extend_from_slice(body);
        let mut pos = 0;
        let mut count = 0;
        while data.len() - pos >= 4 {
            count += 1;
            if count > MAX_MESSAGES_PER_RECORD {
                stats.oversized += 1;
                self.sides[idx].lost = true;
                return;
            }
            let msg_type = data[pos];
            let length = (usize::from(data[pos + 1]) << 16) | be16(&data, pos + 2);
            if length > MAX_HANDSHAKE_BYTES {
                stats.oversized += 1;
                self.sides[idx].lost = true;
                return;
            }
            if data.len() - pos < 4 + length {
                break;
            }
            let message = &data[pos + 4..pos + 4 + length];
            pos += 4 + length;
            frame.hs_types.push(msg_type);
            if msg_type == CLIENT_HELLO && from_client {
                self.hello(stats, Reader::new(message), true, frame);
            } else if msg_type == SERVER_HELLO && !from_client {
                self.hello(stats, Reader::new(message), false, frame);
            } else if msg_type == CERTIFICATE && !from_client {
                self.certificates(stats, Reader::new(message), frame);
            } else if msg_type == SERVER_KEY_EXCHANGE && !from_client {
                self.server_key_exchange(message, frame);
            }
        }
        data.drain(..pos);
        self.sides[idx].handshake = trimmed(data);
    }

    fn hello(&mut self, stats: &mut Stats, mut r: Reader<'_>, client: bool, frame: &mut Frame) {
        let version = r.int(2) as u16;
        let random = r.take(32);
        let session_id = r.vector(1);
        let ciphers = if client { u16s(r.vector(2)) } else { vec![r.int(2) as u16] };
        if client {
            r.vector(1);
        } else {
            r.take(1);
        }
        if !r.ok {
            stats.malformed += 1;
            return;
        }
        frame.versions.push(version);
        if !session_id.is_empty() {
            frame.session_ids.push(session_id.to_vec());
        }
        frame.ciphersuites.extend_from_slice(&ciphers);
        let retry = !client && random == HELLO_RETRY_RANDOM;
        let body = if r.left() > 0 { r.vector(2) } else { &[] };
        let ext = extensions(stats, Reader::new(body), client, retry, frame);
        if client {
            let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join("-");
            let ja3 = format!(
                "{},{},{},{},{}",
                version,
                join(&mut ciphers.iter().filter(|c| !is_grease(**c)).map(|c| c.to_string())),
                join(&mut ext.types.iter().filter(|c| !is_grease(**c)).map(|c| c.to_string())),
                join(&mut ext.groups.iter().filter(|c| !is_grease(**c)).map(|c| c.to_string())),
                join(&mut ext.formats.iter().map(|c| c.to_string())),
            );
            frame.ja3.push(hex(&Md5::digest(ja3.as_bytes())));
            return;
        }
        let cipher = ciphers.first().copied().unwrap_or(0);
        self.cipher = Some(cipher);
        frame.cipher_column = Some(cipher);
        self.tls13 = ext.chosen.is_some_and(|c| c == TLS13 || c >> 8 == 0x7F || c >> 8 == 0x7E);
        let types: Vec<String> = ext.types.iter().map(|t| t.to_string()).collect();
        let ja3s = format!("{},{},{}", version, cipher, types.join("-"));
        frame.ja3s.push(hex(&Md5::digest(ja3s.as_bytes())));
    }

    fn certificates(&mut self, stats: &mut Stats, mut r: Reader<'_>, frame: &mut Frame) {
        if self.tls13 {
            r.vector(1);
        }
        let mut chain = Reader::new(r.vector(3));
        let mut ders: Vec<Vec<u8>> = Vec::new();
        while chain.left() >= 3 && ders.len() < MAX_CERTIFICATES {
            let der = chain.vector(3);
            if self.tls13 {
                chain.vector(2);
            }
            if !chain.ok {
                stats.malformed += 1;
                break;
            }
            ders.push(der.to_vec());
        }
        frame.certificates.extend(ders);
    }

    fn server_key_exchange(&self, message: &[u8], frame: &mut Frame) {
        let name = match self.cipher {
            Some(c) if c != 0 => cipher_name(c).unwrap_or(""),
            _ => "",
        };
        if (name.contains("_ECDHE_") || name.contains("_ECDH_anon_")) && message.len() >= 3 && message[0] == 3 {
            frame.named_curves.push(be16(message, 1) as u16);
        }
    }
}

struct Extensions {
    types: Vec<u16>,
    groups: Vec<u16>,
    formats: Vec<u8>,
    chosen: Option<u16>,
}

/// `TlsConnection._extensions`.
fn extensions(stats: &mut Stats, mut r: Reader<'_>, client: bool, retry: bool, frame: &mut Frame) -> Extensions {
    let mut out = Extensions { types: Vec::new(), groups: Vec::new(), formats: Vec::new(), chosen: None };
    let mut draft_share: Option<u16> = None;
    while r.left() >= 4 {
        let kind = r.int(2) as u16;
        let body = r.vector(2);
        out.types.push(kind);
        frame.ext_types.push(kind);
        let mut e = Reader::new(body);
        if kind == 0 && client {
            let mut names = Reader::new(e.vector(2));
            while names.left() >= 3 {
                let name_type = names.int(1);
                let name = names.vector(2);
                if name_type == 0 && names.ok {
                    frame.server_names.push(text(name));
                }
            }
        } else if kind == 16 {
            let mut protocols = Reader::new(e.vector(2));
            while protocols.left() > 0 {
                let name = protocols.vector(1);
                if protocols.ok {
                    frame.alpn.push(text(name));
                }
            }
        } else if kind == 43 {
            let versions = if client {
                u16s(e.vector(1))
            } else if body.len() >= 2 {
                vec![e.int(2) as u16]
            } else {
                Vec::new()
            };
            frame.supported_versions.extend_from_slice(&versions);
            if !client {
                if let Some(&v) = versions.first() {
                    out.chosen = Some(v);
                }
            }
        } else if SIG_LIST_EXTENSIONS.contains(&kind) {
            let algs = e.vector(2);
            frame.sig_lens.push(algs.len());
            frame.sigs.extend(u16s(algs));
        } else if kind == 10 && client {
            out.groups = u16s(e.vector(2));
        } else if kind == 11 && client {
            out.formats = e.vector(1).to_vec();
        } else if kind == 51 && !client && !retry && body.len() >= 2 {
            frame.key_shares.push(e.int(2) as u16);
        } else if kind == 40 && !client && !retry && body.len() >= 2 {
            draft_share = Some(e.int(2) as u16);
        }
    }
    if let (Some(share), Some(chosen)) = (draft_share, out.chosen) {
        if early_draft(chosen) {
            frame.key_shares.push(share);
        }
    }
    if r.left() > 0 || !r.ok {
        stats.malformed += 1;
    }
    out
}

/// `ja4.ja4` (quic False) of one ClientHello.
fn ja4(legacy: Option<u16>, supported: &[u16], ciphers: &[u16], exts: &[u16], sigs: &[u16], alpn: Option<&str>) -> String {
    let ciphers: Vec<u16> = ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
    let exts: Vec<u16> = exts.iter().copied().filter(|c| !is_grease(*c)).collect();
    let version = supported.iter().copied().filter(|c| !is_grease(*c)).max().or(legacy).unwrap_or(0);
    let label = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xFEFF => "d1",
        0xFEFD => "d2",
        0xFEFC => "d3",
        _ => "00",
    };
    let alpn_part = match alpn {
        Some(v) if !v.is_empty() => {
            let (first, last) = (v.chars().next().unwrap_or('\0'), v.chars().last().unwrap_or('\0'));
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                format!("{}{}", first, last)
            } else {
                let raw = hex(v.as_bytes());
                let b = raw.as_bytes();
                format!("{}{}", char::from(b[0]), char::from(b[b.len() - 1]))
            }
        }
        _ => "00".to_string(),
    };
    let head = format!(
        "t{}{}{:02}{:02}{}",
        label,
        if exts.contains(&0) { "d" } else { "i" },
        ciphers.len().min(99),
        exts.len().min(99),
        alpn_part
    );
    let hash12 = |text: &str| sha256_hex(text.as_bytes())[..12].to_string();
    let mut cs: Vec<String> = ciphers.iter().map(|c| format!("{:04x}", c)).collect();
    cs.sort();
    let cipher_hash = if cs.is_empty() { "000000000000".to_string() } else { hash12(&cs.join(",")) };
    let mut es: Vec<String> = exts.iter().filter(|e| **e != 0 && **e != 0x10).map(|e| format!("{:04x}", e)).collect();
    es.sort();
    let sg: Vec<String> = sigs.iter().filter(|s| !is_grease(**s)).map(|s| format!("{:04x}", s)).collect();
    let ext_hash = if es.is_empty() {
        "000000000000".to_string()
    } else {
        let mut t = es.join(",");
        if !sg.is_empty() {
            t.push('_');
            t.push_str(&sg.join(","));
        }
        hash12(&t)
    };
    format!("{}_{}_{}", head, cipher_hash, ext_hash)
}

/// `tls.signature_algorithms`: the signature_algorithms extension's list only.
fn signature_algorithms(frame: &Frame) -> Vec<u16> {
    let owners: Vec<u16> = frame.ext_types.iter().copied().filter(|t| SIG_LIST_EXTENSIONS.contains(t)).collect();
    if owners.len() != frame.sig_lens.len() {
        return if owners == [13] || owners.is_empty() { frame.sigs.clone() } else { Vec::new() };
    }
    let mut out = Vec::new();
    let mut pos = 0;
    for (owner, length) in owners.iter().zip(&frame.sig_lens) {
        let end = (pos + length / 2).min(frame.sigs.len());
        let chunk = frame.sigs.get(pos.min(end)..end).unwrap_or(&[]);
        pos += length / 2;
        if *owner == 13 {
            out.extend_from_slice(chunk);
        }
    }
    out
}

/// `tls_heartbeat.Heartbeats`.
#[derive(Default)]
struct Heartbeats {
    offered: bool,
    accepted: bool,
    records: u64,
    max_payload_length: Option<usize>,
    overclaimed: bool,
    oversized: bool,
    leaked: bool,
    before_handshake: bool,
    unsolicited: bool,
    pending: [Option<usize>; 2], // [from the server, from the client]
}

impl Heartbeats {
    fn negotiated(&self) -> bool {
        self.offered && self.accepted
    }

    fn note(&mut self, frame: &Frame, from_client: bool, established: bool, encrypted: bool) {
        if frame.content_types.len() != frame.record_lengths.len() {
            return;
        }
        let beats: Vec<usize> = frame
            .content_types
            .iter()
            .zip(&frame.record_lengths)
            .filter(|(k, _)| **k == HEARTBEAT)
            .map(|(_, n)| *n)
            .collect();
        let readable = !encrypted && frame.hb_types.len() == frame.hb_lengths.len() && frame.hb_types.len() == beats.len();
        for (i, &length) in beats.iter().enumerate() {
            self.records += 1;
            self.before_handshake |= !established;
            self.unsolicited |= !self.negotiated();
            let request = if readable {
                let (kind, claimed) = (frame.hb_types[i], frame.hb_lengths[i]);
                self.oversized |= length > HB_MAX_MESSAGE;
                if kind == HB_REQUEST {
                    self.max_payload_length = Some(self.max_payload_length.unwrap_or(0).max(claimed));
                    self.overclaimed |= claimed + HB_HEADER + HB_MIN_PADDING > length;
                }
                kind == HB_REQUEST
            } else {
                self.oversized |= length > MAX_RECORD;
                self.pending[usize::from(!from_client)].is_none()
            };
            if request {
                self.pending[usize::from(from_client)] = Some(length);
            } else {
                let asked = self.pending[usize::from(!from_client)].take();
                self.leaked |= asked.is_some_and(|a| length > a + LEAK_MARGIN);
            }
        }
    }
}

/// `tls.Session` of a TCP connection (client_is_orig, never QUIC).
struct Session {
    order: u64,
    orig: (String, u16),
    resp: (String, u16),
    ts: f64,
    sni: Option<String>,
    ja3: Option<String>,
    ja4: Option<String>,
    ja3s: Option<String>,
    version: Option<u16>,
    cipher: Option<String>,
    curve: Option<String>,
    alpn: Vec<String>,
    next_protocol: Option<String>,
    client_sid: Option<Vec<u8>>,
    resumed: bool,
    certs: Vec<String>,
    leaf_der: Option<Vec<u8>>,
    last_alert: Option<String>,
    ccs: [bool; 2], // [the responder, the originator] sent one
    app_data: [bool; 2],
    emitted: bool,
    heartbeats: Heartbeats,
}

impl Session {
    fn new(order: u64, orig: (String, u16), resp: (String, u16), ts: f64) -> Self {
        Session {
            order,
            orig,
            resp,
            ts,
            sni: None,
            ja3: None,
            ja4: None,
            ja3s: None,
            version: None,
            cipher: None,
            curve: None,
            alpn: Vec::new(),
            next_protocol: None,
            client_sid: None,
            resumed: false,
            certs: Vec::new(),
            leaf_der: None,
            last_alert: None,
            ccs: [false; 2],
            app_data: [false; 2],
            emitted: false,
            heartbeats: Heartbeats::default(),
        }
    }

    fn established(&self) -> bool {
        if self.version == Some(TLS13) {
            self.app_data == [true, true]
        } else {
            self.ccs == [true, true]
        }
    }

    fn curve(&mut self, frame: &Frame) {
        let curve = match frame.named_curves.first() {
            Some(&c) if c != 0 => Some(c),
            _ => frame.key_shares.first().copied(),
        };
        if let Some(c) = curve {
            self.curve = Some(curve_name(c).map(str::to_string).unwrap_or_else(|| c.to_string()));
        }
    }
}

/// `tls.version_of`.
fn version_of(code: Option<u16>) -> (Option<&'static str>, Option<String>) {
    let Some(code) = code else { return (None, None) };
    let known = match code {
        0x0002 => Some(("ssl", "2.0")),
        0x0300 => Some(("ssl", "3.0")),
        0x0301 => Some(("tls", "1.0")),
        0x0302 => Some(("tls", "1.1")),
        0x0303 => Some(("tls", "1.2")),
        0x0304 => Some(("tls", "1.3")),
        0xFEFF => Some(("dtls", "DTLSv10")),
        0xFEFD => Some(("dtls", "DTLSv12")),
        0xFEFC => Some(("dtls", "DTLSv13")),
        _ => None,
    };
    match known {
        Some((p, v)) => (Some(p), Some(v.to_string())),
        None if code >> 8 == 0x7F => (Some("tls"), Some(format!("TLSv13-draft{}", code & 0xFF))),
        None => (None, Some(format!("unknown-{}", code))),
    }
}

/// The engine: connections' wire state and the analyzer's sessions.
pub struct Engine {
    held: usize,     // what the connections hold of records and handshake messages not complete yet (`Held`)
    max_held: usize, // tls_wire.MAX_HELD_BYTES
    conns: Map<u64, Conn>,
    sessions: Map<u64, Session>,
    order: BTreeMap<u64, u64>, // insertion order -> session key (dict order)
    next_order: u64,
    pub stats: Stats,
    pub cut_values: u64,
    // None once the garbage collector cleared them (`TlsEngine.__clear__`)
    pub certificate: Option<PyObject>,
    pub fallback: Option<PyObject>,
}

impl Engine {
    pub fn new(certificate: PyObject, fallback: PyObject, max_held: usize) -> Self {
        Engine {
            held: 0,
            max_held,
            conns: Map::default(),
            sessions: Map::default(),
            order: BTreeMap::new(),
            next_order: 0,
            stats: Stats::default(),
            cut_values: 0,
            certificate: Some(certificate),
            fallback: Some(fallback),
        }
    }

    pub fn open(&mut self, conn_id: u64, client: (String, u16), server: (String, u16)) {
        let conn = Conn { sides: [Side::default(), Side::default()], tls13: false, cipher: None, client, server };
        self.conns.insert(conn_id, conn);
    }

    pub fn close(&mut self, conn_id: u64) {
        if let Some(conn) = self.conns.remove(&conn_id) {
            self.held -= conn.sides[0].held() + conn.sides[1].held();
        }
    }

    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    /// A frame's chunks (None: a hole) through the wire reader, then one analyzer step.
    pub fn feed(
        &mut self,
        py: Python<'_>,
        conn_id: u64,
        from_client: bool,
        chunks: &[Option<&[u8]>],
        ts: f64,
        out: &mut Vec<PyObject>,
    ) -> PyResult<()> {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Err(pyo3::exceptions::PyKeyError::new_err(format!("connection {} not open", conn_id)));
        };
        let mut frame = Frame::default();
        let idx = usize::from(!from_client);
        for chunk in chunks {
            // `TlsConnection.feed` with the reader's `Held`: past max_held this direction is read no further
            let before = conn.sides[idx].held();
            conn.feed(&mut self.stats, from_client, *chunk, &mut frame);
            let after = conn.sides[idx].held();
            self.held = self.held + after - before;
            if after > 0 && self.held > self.max_held {
                let side = &mut conn.sides[idx];
                side.lost = true;
                side.buf = Vec::new();
                side.handshake = Vec::new();
                self.held -= after;
                self.stats.oversized += 1;
            }
        }
        let (src, dst) = if from_client { (&conn.client, &conn.server) } else { (&conn.server, &conn.client) };
        let (src, dst) = (src.clone(), dst.clone());
        self.handle(py, conn_id, src, dst, ts, &frame, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        py: Python<'_>,
        key: u64,
        src: (String, u16),
        dst: (String, u16),
        ts: f64,
        frame: &Frame,
        out: &mut Vec<PyObject>,
    ) -> PyResult<()> {
        let ch = frame.hs_types.contains(&CLIENT_HELLO);
        let sh = frame.hs_types.contains(&SERVER_HELLO);
        let has = |k: u8| frame.content_types.contains(&k) || frame.opaque_types.contains(&k);
        if let Some(s) = self.sessions.get_mut(&key) {
            if ch && !s.emitted && s.established() {
                s.emitted = true;
                out.push(self.emit_one(py, key)?);
            }
        }
        let fresh = match self.sessions.get(&key) {
            None => true,
            Some(s) => ch && s.emitted,
        };
        if fresh {
            let (orig, resp) = if ch || !sh { (src.clone(), dst) } else { (dst, src.clone()) };
            let order = match self.sessions.get(&key) {
                Some(s) => s.order,
                None => {
                    self.next_order += 1;
                    self.order.insert(self.next_order, key);
                    self.next_order
                }
            };
            self.sessions.insert(key, Session::new(order, orig, resp, ts));
            while self.sessions.len() > MAX_OPEN_RECORDS {
                let Some((_, stale)) = self.order.pop_first() else { break };
                if let Some(s) = self.sessions.remove(&stale) {
                    if !s.emitted {
                        out.push(self.emit(py, &s)?);
                    }
                }
            }
        }
        let Some(s) = self.sessions.get_mut(&key) else { return Ok(()) };
        if s.emitted {
            return Ok(());
        }
        let from_orig = src == s.orig;
        let from_client = from_orig;
        if ch && from_client {
            s.sni = frame.server_names.first().cloned();
            s.ja3 = frame.ja3.first().cloned();
            let client_version = frame.versions.first().copied();
            s.alpn = frame.alpn.clone();
            s.client_sid = frame.session_ids.first().cloned();
            s.ja4 = Some(ja4(
                client_version,
                &frame.supported_versions,
                &frame.ciphersuites,
                &frame.ext_types,
                &signature_algorithms(frame),
                s.alpn.first().map(String::as_str),
            ));
        }
        if sh && !from_client {
            s.version = frame.supported_versions.first().copied().or(frame.versions.first().copied());
            s.cipher = frame
                .cipher_column
                .map(|c| cipher_name(c).map(str::to_string).unwrap_or_else(|| format!("unknown-{}", c)));
            s.ja3s = frame.ja3s.first().cloned();
            s.curve = None;
            s.curve(frame);
            s.next_protocol = frame.alpn.first().cloned();
            let sid = frame.session_ids.first();
            s.resumed = match (sid, &s.client_sid) {
                (Some(a), Some(b)) => !a.is_empty() && a == b,
                _ => false,
            };
        }
        if frame.hs_types.contains(&SERVER_KEY_EXCHANGE) && !sh && !from_client {
            s.curve(frame);
        }
        if (ch && from_client) || (sh && !from_client) {
            let offered = frame.ext_types.contains(&HEARTBEAT_EXTENSION);
            if from_client {
                s.heartbeats.offered = offered;
            } else {
                s.heartbeats.accepted = offered;
            }
        }
        if has(HEARTBEAT) {
            let established = s.established();
            let encrypted = s.ccs[usize::from(from_orig)] || s.version == Some(TLS13);
            s.heartbeats.note(frame, from_client, established, encrypted);
        }
        if frame.hs_types.contains(&CERTIFICATE) && !from_client && s.certs.is_empty() {
            s.certs = frame.certificates.iter().map(|d| sha256_hex(d)).collect();
            s.leaf_der = frame.certificates.first().cloned();
        }
        if has(ALERT) {
            if let Some(&desc) = frame.alert_descs.first() {
                s.last_alert = Some(alert_name(desc).map(str::to_string).unwrap_or_else(|| desc.to_string()));
            }
        }
        if has(CCS) {
            s.ccs[usize::from(from_orig)] = true;
        }
        if has(APP_DATA) {
            s.app_data[usize::from(from_orig)] = true;
        }
        if s.established() && !s.heartbeats.negotiated() {
            s.emitted = true;
            out.push(self.emit_one(py, key)?);
        }
        Ok(())
    }

    fn callables(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        match (&self.certificate, &self.fallback) {
            (Some(c), Some(f)) => Ok((c.clone_ref(py), f.clone_ref(py))),
            _ => Err(pyo3::exceptions::PyRuntimeError::new_err("the engine was cleared")),
        }
    }

    fn emit_one(&mut self, py: Python<'_>, key: u64) -> PyResult<PyObject> {
        let (certificate, fallback) = self.callables(py)?;
        let Some(s) = self.sessions.get(&key) else {
            return Err(pyo3::exceptions::PyKeyError::new_err("no session"));
        };
        let (doc, cuts) = emit(py, s, &certificate, &fallback)?;
        self.cut_values += cuts;
        Ok(doc)
    }

    fn emit(&mut self, py: Python<'_>, s: &Session) -> PyResult<PyObject> {
        let (certificate, fallback) = self.callables(py)?;
        let (doc, cuts) = emit(py, s, &certificate, &fallback)?;
        self.cut_values += cuts;
        Ok(doc)
    }

    /// `TlsAnalyzer.finish` (no second look): the sessions never logged, oldest first.
    pub fn finish(&mut self, py: Python<'_>, out: &mut Vec<PyObject>) -> PyResult<()> {
        let mut rest: Vec<Session> = Vec::new();
        for key in std::mem::take(&mut self.order).into_values() {
            if let Some(s) = self.sessions.remove(&key) {
                if !s.emitted {
                    rest.push(s);
                }
            }
        }
        self.sessions.clear();
        rest.sort_by(|a, b| a.ts.partial_cmp(&b.ts).unwrap_or(std::cmp::Ordering::Equal));
        for s in &rest {
            out.push(self.emit(py, s)?);
        }
        Ok(())
    }
}

fn opt<T: ToPyObject>(py: Python<'_>, v: &Option<T>) -> PyObject {
    match v {
        Some(x) => x.to_object(py),
        None => py.None(),
    }
}

/// `TlsAnalyzer.emit`: the fields in its order, the certificate's from the callable, then `make_doc`'s bytes.
fn emit(py: Python<'_>, s: &Session, certificate: &PyObject, fallback: &PyObject) -> PyResult<(PyObject, u64)> {
    let (proto, version) = version_of(s.version);
    let f = PyDict::new_bound(py);
    f.set_item("tls.version", opt(py, &version))?;
    f.set_item("tls.version_protocol", opt(py, &proto))?;
    f.set_item("tls.cipher", opt(py, &s.cipher))?;
    f.set_item("tls.curve", opt(py, &s.curve))?;
    f.set_item("tls.client.server_name", opt(py, &s.sni))?;
    f.set_item("tls.client.ja3", opt(py, &s.ja3))?;
    f.set_item("tls.client.ja4", opt(py, &s.ja4))?;
    f.set_item("tls.server.ja3s", opt(py, &s.ja3s))?;
    f.set_item("tls.next_protocol", opt(py, &s.next_protocol))?;
    f.set_item("tls.resumed", s.resumed)?;
    f.set_item("tls.established", s.established())?;
    f.set_item("tls.server.hash.sha256", opt(py, &s.certs.first().map(|c| c.to_uppercase())))?;
    f.set_item("secops.tls.cert_chain_fps", PyList::new_bound(py, &s.certs))?;
    f.set_item("secops.tls.last_alert", opt(py, &s.last_alert))?;
    f.set_item("secops.tls.client_alpn", PyList::new_bound(py, &s.alpn))?;
    let h = &s.heartbeats;
    if h.records > 0 {
        f.set_item("secops.tls.heartbeat.records", h.records)?;
        f.set_item("secops.tls.heartbeat.max_payload_length", opt(py, &h.max_payload_length))?;
        f.set_item("secops.tls.heartbeat.overclaimed", h.overclaimed)?;
        f.set_item("secops.tls.heartbeat.oversized", h.oversized)?;
        f.set_item("secops.tls.heartbeat.leaked", h.leaked)?;
        f.set_item("secops.tls.heartbeat.before_handshake", h.before_handshake)?;
        f.set_item("secops.tls.heartbeat.unsolicited", h.unsolicited)?;
    }
    if let Some(der) = &s.leaf_der {
        let got = certificate.call1(py, (PyBytes::new_bound(py, der), s.ts, &s.resp.0, s.resp.1))?;
        if !got.is_none(py) {
            f.update(got.bind(py).downcast::<pyo3::types::PyMapping>()?)?;
        }
    }
    let dataset = "secops.tls".to_object(py);
    let transport = "tcp".to_object(py);
    let orig_h = s.orig.0.to_object(py);
    let orig_p = s.orig.1.to_object(py);
    let resp_h = s.resp.0.to_object(py);
    let resp_p = s.resp.1.to_object(py);
    let identity = PyTuple::new_bound(py, ["tls"]).into_any();
    let protocol = "ssl".to_object(py);
    let empty = PyTuple::empty_bound(py).into_any();
    let fields_any = f.clone().into_any();
    let args = fields::Args {
        dataset: dataset.bind(py),
        transport: transport.bind(py),
        orig_h: orig_h.bind(py),
        orig_p: orig_p.bind(py),
        resp_h: resp_h.bind(py),
        resp_p: resp_p.bind(py),
        ts: s.ts,
        identity: &identity,
        fields: &fields_any,
        protocol: protocol.bind(py),
        keep_empty: &empty,
    };
    match fields::write_document(py, &args) {
        Ok((json, cuts)) => Ok((PyBytes::new_bound(py, &json).into_any().unbind(), cuts as u64)),
        Err(e) if e.is_instance_of::<PyTypeError>(py) => {
            let got = fallback.call1(py, (&s.orig.0, s.orig.1, &s.resp.0, s.resp.1, s.ts, f))?;
            let (doc, cuts): (PyObject, u64) = got.extract(py)?;
            Ok((doc, cuts))
        }
        Err(e) => Err(e),
    }
}
