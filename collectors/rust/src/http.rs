//! HTTP/1.x of the connections the deep path reads natively: `http_wire.MessageReader` (both directions),
//! `http.HttpConnection` (CONNECT/Upgrade hand-back, HEAD framing, HTTP/0.9 replies) and `HttpAnalyzer`'s pairing
//! with `context is None` (MAX_PENDING, records per flow, open-record eviction, orphans, expire, finish), each
//! document written as make_doc's JSON. Compressed bodies go through Python's own `http_wire.Body` (zlib), so
//! their corner cases (trailing data, corrupt streams, bombs) are the reference's; they are rare.

use crate::Map;
use crate::document::{iso, write_doc, CidCache, Flow, Spec, Value};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

pub const MAX_LINE_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_CHUNK_DIGITS: usize = 16;
const MAX_PENDING: usize = 100;
const MAX_RECORDS_PER_FLOW: u64 = 10_000;
const MAX_ORPHANS: usize = 20_000;
const IDLE_TIMEOUT: f64 = 300.0;
const MAX_OPEN_RECORDS: usize = 100_000;
const EMPTY_URI: &[&str] = &["url.original", "secops.http.uri_raw"];
const SPEC: Spec<'static> = Spec { dataset: "secops.http", transport: "tcp", protocol: "http", keep_empty: &[] };
const SPEC_EMPTY_URI: Spec<'static> =
    Spec { dataset: "secops.http", transport: "tcp", protocol: "http", keep_empty: EMPTY_URI };

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Start,
    Headers,
    BodyLength,
    ChunkSize,
    ChunkData,
    ChunkEnd,
    Trailers,
    BodyClose,
    Lost,
}

/// `WireStats` but the zlib counters (those are kept by the reference's `Body` in its own `WireStats`).
#[derive(Default)]
pub struct Stats {
    pub cut_lines: u64,
    pub bad_chunks: u64,
    pub lost_directions: u64,
    pub not_http: u64,
}

/// Python's `bytes.strip()`.
fn bstrip(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map(|i| i + 1).unwrap_or(start);
    b.get(start..end.max(start)).unwrap_or(&[])
}

/// Python's `str.isspace()` for one character.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// `bytes.decode("latin-1")`.
fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// `STATUS_LINE.match(line)`: (status, phrase bytes) of `^(?i:http)/(\d+\.\d+)[ \t]+(\d{3})(?:[ \t]+([^\r\n]*))?`.
fn status_line(line: &[u8]) -> Option<(u16, Option<&[u8]>)> {
    if line.len() < 5 || !line[..4].eq_ignore_ascii_case(b"http") || line[4] != b'/' {
        return None;
    }
    let mut i = 5;
    let digits = |from: usize| line.get(from..).map(|r| r.iter().take_while(|c| c.is_ascii_digit()).count());
    let major = digits(i).unwrap_or(0);
    if major == 0 || line.get(i + major) != Some(&b'.') {
        return None;
    }
    i += major + 1;
    let minor = digits(i).unwrap_or(0);
    if minor == 0 {
        return None;
    }
    i += minor;
    let blanks = |from: usize| line.get(from..).map(|r| r.iter().take_while(|c| **c == b' ' || **c == b'\t').count());
    let gap = blanks(i).unwrap_or(0);
    if gap == 0 {
        return None;
    }
    i += gap;
    let code = line.get(i..i + 3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    i += 3;
    let gap = blanks(i).unwrap_or(0);
    if gap == 0 {
        return Some((status, None));
    }
    i += gap;
    let rest = line.get(i..).unwrap_or(&[]);
    let end = rest.iter().position(|c| *c == b'\r' || *c == b'\n').unwrap_or(rest.len());
    Some((status, rest.get(..end)))
}

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn header<'a>(headers: &'a Headers, name: &[u8]) -> Option<&'a [u8]> {
    headers.iter().find(|(k, _)| k.as_slice() == name).map(|(_, v)| v.as_slice())
}

/// A finished message of a direction (`http_wire.Message`).
pub struct Message {
    start: Vec<u8>,
    headers: Headers,
    body: u64,
    ts: f64,
    status: Option<u16>,
}

impl Message {
    fn get(&self, name: &[u8]) -> Option<String> {
        header(&self.headers, name).map(latin1)
    }
}

/// A body being read: counted raw, or (gzip/deflate) through the reference's `http_wire.Body`.
enum Body {
    Plain(u64),
    Encoded(Py<PyAny>),
}

impl Body {
    fn add(&mut self, cx: &mut Cx<'_, '_>, data: &[u8]) -> PyResult<()> {
        match self {
            Body::Plain(raw) => *raw += data.len() as u64,
            Body::Encoded(obj) => {
                obj.bind(cx.py).call_method1("add", (PyBytes::new_bound(cx.py, data), cx.zstats))?;
            }
        }
        Ok(())
    }

    fn hole(&mut self, cx: &mut Cx<'_, '_>, size: u64) -> PyResult<()> {
        match self {
            Body::Plain(raw) => *raw += size,
            Body::Encoded(obj) => {
                obj.bind(cx.py).call_method1("add", (size, cx.zstats))?;
            }
        }
        Ok(())
    }

    fn length(&self, py: Python<'_>) -> PyResult<u64> {
        match self {
            Body::Plain(raw) => Ok(*raw),
            Body::Encoded(obj) => obj.bind(py).call_method0("length")?.extract::<u64>(),
        }
    }
}

/// Where a direction's messages go (`HttpConnection._request`/`_response`, `no_body`).
trait Sink {
    /// A finished message, with the direction's byte count at that point; true: both directions are lost now.
    fn message(&mut self, py: Python<'_>, is_request: bool, msg: Message, bytes: u64) -> PyResult<bool>;
    fn no_body(&self, status: u16) -> bool;
}

struct Cx<'a, 'py> {
    py: Python<'py>,
    stats: &'a mut Stats,
    zstats: &'a Bound<'py, PyAny>,
    body_class: &'a Bound<'py, PyAny>,
    sink: &'a mut dyn Sink,
}

/// One direction's messages (`http_wire.MessageReader`).
struct Reader {
    is_request: bool,
    state: St,
    buf: Vec<u8>,
    skipping: bool,
    start: Vec<u8>,
    headers: Headers,
    status: Option<u16>,
    start_ts: f64,
    declared: Option<u64>,
    remaining: u64,
    body: Option<Body>,
    bytes: u64,
    /// set by the sink: the other direction is lost too (applied by the connection after this feed)
    lose_other: bool,
}

/// `http_wire._int`: ASCII digits only, fewer than 19.
fn declared_int(text: Option<&[u8]>) -> Option<u64> {
    let text = latin1(text?);
    let t = py_strip(&text);
    if !t.is_empty() && t.len() < 19 && t.bytes().all(|c| c.is_ascii_digit()) {
        t.parse::<u64>().ok()
    } else {
        None
    }
}

impl Reader {
    fn new(is_request: bool) -> Self {
        Reader {
            is_request,
            state: St::Start,
            buf: Vec::new(),
            skipping: false,
            start: Vec::new(),
            headers: Vec::new(),
            status: None,
            start_ts: 0.0,
            declared: None,
            remaining: 0,
            body: None,
            bytes: 0,
            lose_other: false,
        }
    }

    fn feed(&mut self, cx: &mut Cx<'_, '_>, data: &[u8], ts: f64) -> PyResult<()> {
        let total = self.bytes + data.len() as u64;
        if self.state == St::Lost {
            self.bytes = total;
            return Ok(());
        }
        let result = if self.buf.is_empty() {
            self.read(cx, data, total - data.len() as u64, ts)
        } else if self.buf.len() + data.len() <= MAX_LINE_BYTES && !data.contains(&b'\n') {
            // the line still open goes on and still fits: kept as the reference keeps it (`buf = rest`), without
            // copying and scanning again what came before (which, fed a byte at a time, cost its square)
            self.buf.extend_from_slice(data);
            Ok(())
        } else {
            let mut joined = std::mem::take(&mut self.buf);
            joined.extend_from_slice(data);
            let origin = total - joined.len() as u64;
            self.read(cx, &joined, origin, ts)
        };
        self.bytes = total;
        result
    }

    fn read(&mut self, cx: &mut Cx<'_, '_>, data: &[u8], origin: u64, ts: f64) -> PyResult<()> {
        let end = data.len();
        let mut pos = 0;
        while pos < end && self.state != St::Lost {
            let state = self.state;
            if state == St::BodyLength || state == St::ChunkData {
                let take = self.remaining.min((end - pos) as u64) as usize;
                if let Some(body) = self.body.as_mut() {
                    body.add(cx, data.get(pos..pos + take).unwrap_or(&[]))?;
                }
                pos += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    if state == St::BodyLength {
                        self.bytes = origin + pos as u64;
                        self.finish(cx, ts)?;
                    } else {
                        self.state = St::ChunkEnd;
                    }
                }
                continue;
            }
            if state == St::BodyClose {
                if let Some(body) = self.body.as_mut() {
                    body.add(cx, data.get(pos..).unwrap_or(&[]))?;
                }
                return Ok(());
            }
            let nl = data.get(pos..).and_then(|r| r.iter().position(|&c| c == b'\n')).map(|i| i + pos);
            if self.skipping {
                let Some(nl) = nl else { return Ok(()) };
                self.skipping = false;
                pos = nl + 1;
                continue;
            }
            let Some(nl) = nl else {
                let rest = data.get(pos..).unwrap_or(&[]);
                if rest.len() > MAX_LINE_BYTES {
                    cx.stats.cut_lines += 1;
                    self.skipping = true;
                    self.bytes = origin + (pos + MAX_LINE_BYTES) as u64;
                    self.line(cx, &rest[..MAX_LINE_BYTES], ts)?;
                } else {
                    self.buf = rest.to_vec();
                }
                return Ok(());
            };
            let mut line = data.get(pos..nl).unwrap_or(&[]);
            if line.len() > MAX_LINE_BYTES {
                cx.stats.cut_lines += 1;
                line = &line[..MAX_LINE_BYTES];
                self.bytes = origin + (pos + MAX_LINE_BYTES) as u64;
            } else {
                self.bytes = origin + nl as u64 + 1;
            }
            pos = nl + 1;
            self.line(cx, without_cr(line), ts)?;
        }
        Ok(())
    }

    fn line(&mut self, cx: &mut Cx<'_, '_>, line: &[u8], ts: f64) -> PyResult<()> {
        match self.state {
            St::Start => {
                if bstrip(line).is_empty() {
                    return Ok(());
                }
                self.start_ts = ts;
                if self.is_request {
                    let (method, rest) = match line.iter().position(|&c| c == b' ') {
                        Some(i) => (&line[..i], Some(&line[i + 1..])),
                        None => (line, None),
                    };
                    let ok = match rest {
                        Some(rest) => !method.is_empty() && !bstrip(rest).is_empty() && method.iter().all(|&c| tchar(c)),
                        None => false,
                    };
                    if !ok {
                        cx.stats.not_http += 1;
                        self.state = St::Lost;
                        self.buf.clear();
                        return Ok(());
                    }
                    self.start = line.to_vec();
                    self.headers = Vec::new();
                    self.state = St::Headers;
                    return Ok(());
                }
                match status_line(line) {
                    None => cx.stats.not_http += 1,
                    Some((status, _)) => {
                        self.start = line.to_vec();
                        self.status = Some(status);
                        self.headers = Vec::new();
                        self.state = St::Headers;
                    }
                }
            }
            St::Headers => {
                if line.is_empty() {
                    return self.headers_done(cx, ts);
                }
                if line[0] == b' ' || line[0] == b'\t' {
                    return Ok(());
                }
                if let Some(colon) = line.iter().position(|&c| c == b':') {
                    if self.headers.len() < MAX_HEADERS {
                        let name = bstrip(&line[..colon]).to_ascii_lowercase();
                        if header(&self.headers, &name).is_none() {
                            self.headers.push((name, bstrip(&line[colon + 1..]).to_vec()));
                        }
                    }
                }
            }
            St::ChunkSize | St::ChunkEnd => {
                if self.state == St::ChunkEnd && line.is_empty() {
                    self.state = St::ChunkSize;
                    return Ok(());
                }
                let head = match line.iter().position(|&c| c == b';') {
                    Some(i) => &line[..i],
                    None => line,
                };
                let digits = bstrip(head);
                if digits.is_empty() || digits.len() > MAX_CHUNK_DIGITS || !digits.iter().all(u8::is_ascii_hexdigit) {
                    cx.stats.bad_chunks += 1;
                    return self.finish(cx, ts);
                }
                let size = digits.iter().fold(0u64, |n, &d| {
                    let v = match d {
                        b'0'..=b'9' => d - b'0',
                        b'a'..=b'f' => d - b'a' + 10,
                        _ => d - b'A' + 10,
                    };
                    (n << 4) | u64::from(v)
                });
                if size > 0 {
                    self.state = St::ChunkData;
                    self.remaining = size;
                } else {
                    self.state = St::Trailers;
                }
            }
            St::Trailers if line.is_empty() => return self.finish(cx, ts),
            _ => {}
        }
        Ok(())
    }

    fn headers_done(&mut self, cx: &mut Cx<'_, '_>, ts: f64) -> PyResult<()> {
        let encoding = header(&self.headers, b"content-encoding").and_then(|coding| {
            if coding.is_empty() {
                return None;
            }
            let text = latin1(coding);
            let low = py_strip(&text).to_ascii_lowercase();
            match low.as_str() {
                "gzip" | "x-gzip" => Some("gzip"),
                "deflate" => Some("deflate"),
                _ => None,
            }
        });
        self.body = Some(match encoding {
            None => Body::Plain(0),
            Some(name) => Body::Encoded(cx.body_class.call1((name,))?.unbind()),
        });
        self.declared = declared_int(header(&self.headers, b"content-length"));
        let chunked = header(&self.headers, b"transfer-encoding")
            .map(|t| t.to_ascii_lowercase().windows(7).any(|w| w == b"chunked"))
            .unwrap_or(false);
        match (self.is_request, self.status) {
            (false, Some(status)) if cx.sink.no_body(status) => return self.finish(cx, ts),
            _ => {}
        }
        if chunked {
            self.state = St::ChunkSize;
        } else if let Some(declared) = self.declared {
            self.remaining = declared;
            if declared > 0 {
                self.state = St::BodyLength;
            } else {
                return self.finish(cx, ts);
            }
        } else if self.is_request {
            return self.finish(cx, ts);
        } else {
            self.state = St::BodyClose;
        }
        Ok(())
    }

    fn hole(&mut self, cx: &mut Cx<'_, '_>, size: u64, ts: f64) -> PyResult<()> {
        if !self.buf.is_empty() && (self.state == St::Start || self.state == St::Headers) {
            let line = std::mem::take(&mut self.buf);
            self.line(cx, without_cr(&line), ts)?;
        }
        if self.state == St::BodyLength || self.state == St::BodyClose {
            let length = self.state == St::BodyLength;
            let take = if length { size.min(self.remaining) } else { size };
            if let Some(body) = self.body.as_mut() {
                body.hole(cx, take)?;
            }
            if length {
                self.remaining -= take;
                if self.remaining == 0 {
                    self.finish(cx, ts)?;
                    if take < size {
                        self.lose(cx, ts)?;
                    }
                }
            }
            return Ok(());
        }
        self.lose(cx, ts)
    }

    fn lose(&mut self, cx: &mut Cx<'_, '_>, ts: f64) -> PyResult<()> {
        if matches!(self.state, St::Headers | St::ChunkSize | St::ChunkData | St::ChunkEnd | St::Trailers) {
            self.finish(cx, ts)?;
        }
        if self.state != St::Lost {
            cx.stats.lost_directions += 1;
        }
        self.state = St::Lost;
        self.buf.clear();
        Ok(())
    }

    fn finish(&mut self, cx: &mut Cx<'_, '_>, _ts: f64) -> PyResult<()> {
        let length = match &self.body {
            None => 0,
            Some(Body::Plain(raw)) => match self.declared {
                Some(declared) if header(&self.headers, b"transfer-encoding").is_none() => declared,
                _ => *raw,
            },
            Some(body) => body.length(cx.py)?,
        };
        let msg = Message {
            start: self.start.clone(),
            headers: std::mem::take(&mut self.headers),
            body: length,
            ts: self.start_ts,
            status: self.status,
        };
        self.state = St::Start;
        self.body = None;
        self.declared = None;
        self.status = None;
        if cx.sink.message(cx.py, self.is_request, msg, self.bytes)? {
            self.state = St::Lost;
            self.lose_other = true;
        }
        Ok(())
    }

    fn end(&mut self, cx: &mut Cx<'_, '_>, ts: f64) -> PyResult<()> {
        if !self.buf.is_empty() && self.state != St::Lost && self.state != St::BodyClose {
            let line = std::mem::take(&mut self.buf);
            self.line(cx, without_cr(&line), ts)?;
        }
        if matches!(
            self.state,
            St::BodyClose | St::Headers | St::BodyLength | St::ChunkSize | St::ChunkData | St::ChunkEnd | St::Trailers
        ) {
            self.finish(cx, ts)?;
        }
        self.state = St::Lost;
        Ok(())
    }
}

/// A request/response pair (`http.Exchange`).
struct Exchange {
    flow: Arc<Flow>,
    ts: f64,
    depth: u64,
    method: Option<String>,
    uri: Option<String>,
    version: Option<String>,
    host: Option<String>,
    user_agent: Option<String>,
    referrer: Option<String>,
    auth_scheme: Option<String>,
    username: Option<String>,
    req_mime: Option<String>,
    req_len: u64,
    status: Option<u16>,
    reason: Option<String>,
    info_code: Option<u16>,
    resp_len: u64,
    resp_mime: Option<String>,
    location: Option<String>,
    weight: usize, // what it is charged against `max_held` while it waits (`request_weight`)
}

impl Exchange {
    fn new(flow: Arc<Flow>, ts: f64, depth: u64) -> Self {
        Exchange {
            flow,
            ts,
            depth,
            method: None,
            uri: None,
            version: None,
            host: None,
            user_agent: None,
            referrer: None,
            auth_scheme: None,
            username: None,
            req_mime: None,
            req_len: 0,
            status: None,
            reason: None,
            info_code: None,
            resp_len: 0,
            resp_mime: None,
            location: None,
            weight: 0,
        }
    }
}

/// What one connection holds between messages (`http.FlowState`).
struct FlowState {
    conn: u64,
    flow: Arc<Flow>,
    last_ts: f64,
    open: VecDeque<Exchange>,
    depth: u64,
    records: u64,
    saw_request: bool,
    early_info: Option<u16>,
    held: usize, // the weights of its open exchanges
}

/// `HttpAnalyzer._answered`: the connection's oldest open exchange, no longer waiting (`held`: the analyzer's).
fn answered(st: &mut FlowState, held: &mut usize) -> Option<Exchange> {
    let ex = st.open.pop_front()?;
    st.held -= ex.weight;
    *held -= ex.weight;
    if st.open.is_empty() && st.open.capacity() > 4 {
        st.open = VecDeque::new(); // 100 pipelined requests answered left ~40 kB a connection for nothing
    }
    Some(ex)
}

/// Python's `urllib.parse.unquote(text, errors="backslashreplace")`.
pub fn unquote(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        let ascii = bytes[pos] < 0x80;
        let end = bytes[pos..].iter().position(|&c| (c < 0x80) != ascii).map(|i| i + pos).unwrap_or(bytes.len());
        let run = &bytes[pos..end];
        if ascii {
            let mut raw = Vec::with_capacity(run.len());
            let mut i = 0;
            while i < run.len() {
                if run[i] == b'%' && i + 2 < run.len() && run[i + 1].is_ascii_hexdigit() && run[i + 2].is_ascii_hexdigit()
                {
                    let hexval = |d: u8| match d {
                        b'0'..=b'9' => d - b'0',
                        b'a'..=b'f' => d - b'a' + 10,
                        _ => d - b'A' + 10,
                    };
                    raw.push(hexval(run[i + 1]) << 4 | hexval(run[i + 2]));
                    i += 3;
                } else {
                    raw.push(run[i]);
                    i += 1;
                }
            }
            backslash_decode(&raw, &mut out);
        } else {
            out.push_str(text.get(pos..end).unwrap_or(""));
        }
        pos = end;
    }
    out
}

/// `raw.decode("utf-8", "backslashreplace")`.
fn backslash_decode(mut raw: &[u8], out: &mut String) {
    loop {
        match std::str::from_utf8(raw) {
            Ok(text) => {
                out.push_str(text);
                return;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.push_str(std::str::from_utf8(&raw[..good]).unwrap_or(""));
                let bad = e.error_len().unwrap_or(raw.len() - good);
                for b in &raw[good..good + bad] {
                    out.push_str(&format!("\\x{:02x}", b));
                }
                raw = &raw[good + bad..];
            }
        }
    }
}

/// `parse_request_line(method, uri, None)`: (URI, version), None for a method alone.
fn parse_request_line(uri: Option<&str>) -> Option<(String, String)> {
    let rest = uri.unwrap_or("");
    if rest.is_empty() {
        return None;
    }
    let b = rest.as_bytes();
    let mut end = b.iter().position(|&c| !uri_char(c)).unwrap_or(b.len());
    if end == b.len() && rest.starts_with("HTTP/") {
        end = 0;
    }
    // VERSION_START.search(rest, end): r"\s*HTTP/"
    let mut p = end;
    while p <= b.len() {
        let tail = &rest[p..];
        let ws_len = tail.len() - tail.trim_start_matches(py_space).len();
        let q = p + ws_len;
        if rest[q..].starts_with("HTTP/") {
            return Some((rest[..p].to_string(), py_strip(&rest[q + 5..]).to_string()));
        }
        // every position inside the blank run ends at the same place: go past it (to the next character)
        let next = if q > p { q } else { p };
        match rest[next..].chars().next() {
            Some(c) => p = next + c.len_utf8(),
            None => break,
        }
    }
    Some((rest.to_string(), "0.9".to_string()))
}

fn uri_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b":/?#[]@!$&'()*+,;=-_.~%".contains(&c)
}

/// `read_through_upgrade(upgrade)`.
fn read_through_upgrade(upgrade: Option<&str>) -> bool {
    let Some(upgrade) = upgrade else { return true };
    upgrade.split(',').all(|token| {
        let name = py_strip(token).split('/').next().unwrap_or("");
        name.eq_ignore_ascii_case("websocket") || name.eq_ignore_ascii_case("h2c")
    })
}

/// `HttpAnalyzer` with no run context: connection states in insertion order, orphans, the documents.
pub struct Analyzer {
    states: BTreeMap<u64, FlowState>,
    index: Map<u64, u64>,
    next_seq: u64,
    orphans: Vec<Exchange>,
    pub dropped_records: u64,
    pub cut_values: u64,
    cids: CidCache,
    basic_user: Py<PyAny>,
    max_open: usize,
    held: usize,              // the states' `held` together (`HttpAnalyzer.held`)
    max_held: usize,          // http.MAX_WAITING_BYTES
    exchange_overhead: usize, // http.EXCHANGE_OVERHEAD
}

impl Analyzer {
    /// `_state`: the connection's state (created at the end when new), its last time set.
    fn state(&mut self, conn: u64, flow: &Arc<Flow>, ts: f64) -> u64 {
        let seq = match self.index.get(&conn) {
            Some(&seq) => seq,
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.index.insert(conn, seq);
                self.states.insert(
                    seq,
                    FlowState {
                        conn,
                        flow: flow.clone(),
                        last_ts: ts,
                        open: VecDeque::new(),
                        depth: 0,
                        records: 0,
                        saw_request: false,
                        early_info: None,
                        held: 0,
                    },
                );
                seq
            }
        };
        if let Some(st) = self.states.get_mut(&seq) {
            st.last_ts = ts;
        }
        seq
    }

    fn evict_stale(&mut self, docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        while self.states.len() > self.max_open {
            let Some((_, mut st)) = self.states.pop_first() else { break };
            self.index.remove(&st.conn);
            self.held -= st.held;
            while let Some(ex) = st.open.pop_front() {
                self.emit_bounded(ex, &mut st.records, docs)?;
            }
        }
        Ok(())
    }

    fn emit_bounded(&mut self, ex: Exchange, records: &mut u64, docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        *records += 1;
        if *records > MAX_RECORDS_PER_FLOW {
            self.dropped_records += 1;
            return Ok(());
        }
        docs.push(self.emit(ex)?);
        Ok(())
    }

    fn close(&mut self, ex: Exchange, seq: u64, docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        let Some(mut st) = self.states.remove(&seq) else { return Ok(()) };
        let result = self.close_in(ex, &mut st, docs);
        self.states.insert(seq, st);
        result
    }

    fn close_in(&mut self, ex: Exchange, st: &mut FlowState, docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        if ex.method.is_none() && !st.saw_request && self.orphans.len() < MAX_ORPHANS {
            self.orphans.push(ex);
            Ok(())
        } else {
            self.emit_bounded(ex, &mut st.records, docs)
        }
    }

    fn emit(&mut self, ex: Exchange) -> PyResult<Vec<u8>> {
        let version = ex.version.as_deref().map(|v| v.strip_prefix("HTTP/").unwrap_or(v)).filter(|v| !v.is_empty());
        let mut fields: Vec<(&'static str, Value)> = Vec::with_capacity(19);
        let text = |name: &'static str, v: &Option<String>, fields: &mut Vec<(&'static str, Value)>| {
            if let Some(v) = v {
                fields.push((name, Value::Str(v.clone())));
            }
        };
        text("http.request.method", &ex.method, &mut fields);
        if let Some(uri) = &ex.uri {
            fields.push(("url.original", Value::Str(unquote(uri))));
            fields.push(("secops.http.uri_raw", Value::Str(uri.clone())));
        }
        text("url.domain", &ex.host, &mut fields);
        if let Some(v) = version {
            fields.push(("http.version", Value::Str(v.to_string())));
        }
        text("user_agent.original", &ex.user_agent, &mut fields);
        text("http.request.referrer", &ex.referrer, &mut fields);
        text("http.request.mime_type", &ex.req_mime, &mut fields);
        fields.push(("http.request.body.bytes", Value::Int(ex.req_len as i64)));
        if let Some(status) = ex.status {
            fields.push(("http.response.status_code", Value::Int(i64::from(status))));
        }
        text("http.response.mime_type", &ex.resp_mime, &mut fields);
        fields.push((
            "http.response.body.bytes",
            Value::Int(if ex.status.is_some() { ex.resp_len as i64 } else { 0 }),
        ));
        fields.push(("secops.http.trans_depth", Value::Int(ex.depth as i64)));
        text("secops.http.status_msg", &ex.reason, &mut fields);
        if let Some(info) = ex.info_code {
            fields.push(("secops.http.info_code", Value::Int(i64::from(info))));
        }
        text("secops.http.location", &ex.location, &mut fields);
        text("secops.http.authorization_scheme", &ex.auth_scheme, &mut fields);
        text("user.name", &ex.username, &mut fields);
        let cid = self.cids.get_proto(6, &ex.flow).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.0))?;
        let spec = if ex.uri.as_deref() == Some("") { &SPEC_EMPTY_URI } else { &SPEC };
        let tail = format!("http\x1f{}\x1f", ex.depth);
        // where Rust has no ISO text for the time, Python's (or the exception make_doc raises)
        let timestamp = match iso(ex.ts) {
            Ok(text) => text,
            Err(_) => Python::with_gil(|py| -> PyResult<String> {
                py.import_bound("secops.ecs")?.getattr("iso")?.call1((ex.ts,))?.extract::<String>()
            })?,
        };
        let (doc, cut) = write_doc(spec, &cid, &ex.flow, (ex.ts, &timestamp), &tail, fields)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.0))?;
        self.cut_values += cut as u64;
        Ok(doc)
    }

    /// `request(st, ts, method, uri, None, header, body)`.
    fn request(
        &mut self,
        py: Python<'_>,
        seq: u64,
        method: &str,
        uri: Option<&str>,
        msg: &Message,
        docs: &mut Vec<Vec<u8>>,
    ) -> PyResult<()> {
        let Some((uri, version)) = parse_request_line(uri) else { return Ok(()) };
        let authorization = msg.get(b"authorization");
        let (scheme, user) = match authorization.as_deref() {
            None | Some("") => (None, None),
            Some(auth) => {
                let pair = self.basic_user.bind(py).call1((auth,))?;
                let pair = pair.downcast::<PyTuple>()?;
                (pair.get_item(0)?.extract::<Option<String>>()?, pair.get_item(1)?.extract::<Option<String>>()?)
            }
        };
        let framed = header(&msg.headers, b"content-length").is_some()
            || header(&msg.headers, b"transfer-encoding").is_some();
        let Some(st) = self.states.get_mut(&seq) else { return Ok(()) };
        st.saw_request = true;
        st.depth += 1;
        let mut ex = Exchange::new(st.flow.clone(), msg.ts, st.depth);
        ex.method = Some(method.to_string());
        ex.uri = Some(uri);
        ex.version = Some(version);
        ex.host = msg.get(b"host");
        ex.user_agent = msg.get(b"user-agent");
        ex.referrer = msg.get(b"referer");
        ex.auth_scheme = scheme;
        ex.username = user;
        ex.req_mime = msg.get(b"content-type");
        ex.req_len = if framed { msg.body } else { 0 };
        ex.info_code = st.early_info.take();
        ex.weight = self.exchange_overhead
            + [&ex.method, &ex.uri, &ex.version, &ex.host, &ex.user_agent, &ex.referrer, &ex.auth_scheme,
               &ex.username, &ex.req_mime]
                .iter()
                .map(|v| v.as_ref().map_or(0, |s| s.len()))
                .sum::<usize>();
        st.held += ex.weight;
        self.held += ex.weight;
        st.open.push_back(ex);
        loop {
            let oldest = match self.states.get_mut(&seq) {
                Some(st) if st.open.len() > MAX_PENDING => answered(st, &mut self.held),
                _ => None,
            };
            let Some(oldest) = oldest else { break };
            self.close(oldest, seq, docs)?;
        }
        // a flood over many connections: the oldest others' requests are logged
        while self.held > self.max_held {
            let Some(&stale_seq) = self.states.keys().find(|&&other| other != seq) else { break };
            let Some(mut stale) = self.states.remove(&stale_seq) else { break };
            self.index.remove(&stale.conn);
            self.held -= stale.held;
            while let Some(ex) = stale.open.pop_front() {
                self.emit_bounded(ex, &mut stale.records, docs)?;
            }
        }
        Ok(())
    }

    /// `answer(st, ts, code, phrase, header, body, whole)`.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        seq: u64,
        ts: f64,
        code: u16,
        phrase: Option<String>,
        msg: Option<&Message>,
        body: u64,
        whole: u64,
        docs: &mut Vec<Vec<u8>>,
    ) -> PyResult<()> {
        let Some(mut st) = self.states.remove(&seq) else { return Ok(()) };
        if (100..200).contains(&code) {
            match st.open.front_mut() {
                Some(first) => {
                    first.info_code = Some(code);
                    first.status = Some(code);
                    first.reason = phrase;
                }
                None => st.early_info = Some(code),
            }
            self.states.insert(seq, st);
            return Ok(());
        }
        let mut ex = match answered(&mut st, &mut self.held) {
            Some(ex) => ex,
            None => {
                st.depth += 1;
                Exchange::new(st.flow.clone(), ts, st.depth)
            }
        };
        ex.status = Some(code);
        ex.reason = phrase;
        ex.resp_mime = msg.and_then(|m| m.get(b"content-type"));
        ex.location = msg.and_then(|m| m.get(b"location"));
        if ex.version.as_deref() == Some("0.9") {
            ex.status = Some(0);
            ex.reason = None;
            ex.resp_len = whole;
        } else if ex.method.as_deref() == Some("HEAD") || code == 204 || code == 304 {
            ex.resp_len = 0;
        } else {
            ex.resp_len = body;
        }
        let result = self.close_in(ex, &mut st, docs);
        self.states.insert(seq, st);
        result
    }

    fn expire(&mut self, now: f64, docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        let before = now - IDLE_TIMEOUT;
        let idle: Vec<u64> = self.states.iter().filter(|(_, st)| st.last_ts < before).map(|(k, _)| *k).collect();
        for seq in idle {
            let Some(mut st) = self.states.remove(&seq) else { continue };
            self.index.remove(&st.conn);
            self.held -= st.held;
            while let Some(ex) = st.open.pop_front() {
                self.emit_bounded(ex, &mut st.records, docs)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        let mut rest: Vec<Exchange> = Vec::new();
        for (_, st) in std::mem::take(&mut self.states) {
            rest.extend(st.open);
        }
        self.index.clear();
        self.held = 0;
        rest.append(&mut self.orphans);
        rest.sort_by(|a, b| a.ts.partial_cmp(&b.ts).unwrap_or(std::cmp::Ordering::Equal));
        let mut per_flow: HashMap<String, u64> = HashMap::new();
        for ex in rest {
            let mut records = per_flow.get(&ex.flow.stream).copied().unwrap_or(0);
            let stream = ex.flow.stream.clone();
            self.emit_bounded(ex, &mut records, docs)?;
            per_flow.insert(stream, records);
        }
        Ok(())
    }
}

/// `HttpConnection`'s own state beside its two readers.
struct Meta {
    id: u64,
    flow: Arc<Flow>,
    heads: VecDeque<bool>, // requests read whose final response has not come: whether each is a HEAD
    switched: bool,
}

struct Conn {
    meta: Meta,
    client: Reader,
    server: Reader,
}

struct ConnSink<'a> {
    meta: &'a mut Meta,
    an: &'a mut Analyzer,
    docs: &'a mut Vec<Vec<u8>>,
}

impl Sink for ConnSink<'_> {
    fn no_body(&self, status: u16) -> bool {
        (100..200).contains(&status) || status == 204 || status == 304 || self.meta.heads.front() == Some(&true)
    }

    fn message(&mut self, py: Python<'_>, is_request: bool, msg: Message, bytes: u64) -> PyResult<bool> {
        if is_request {
            if self.meta.switched {
                return Ok(false);
            }
            let line = String::from_utf8_lossy(&msg.start);
            let (method, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let upgrade = msg.get(b"upgrade");
            if method.eq_ignore_ascii_case("CONNECT") || !read_through_upgrade(upgrade.as_deref()) {
                self.meta.switched = true;
                return Ok(true);
            }
            let uri = Some(py_strip(rest)).filter(|u| !u.is_empty());
            if parse_request_line(uri).is_none() {
                return Ok(false);
            }
            let seq = self.an.state(self.meta.id, &self.meta.flow, msg.ts);
            self.an.evict_stale(self.docs)?;
            self.meta.heads.push_back(method.eq_ignore_ascii_case("HEAD"));
            self.an.request(py, seq, method, uri, &msg, self.docs)?;
            return Ok(false);
        }
        let seq = self.an.state(self.meta.id, &self.meta.flow, msg.ts);
        self.an.evict_stale(self.docs)?;
        let Some(status) = msg.status else { return Ok(false) };
        let Some((_, phrase)) = status_line(&msg.start) else { return Ok(false) };
        if status >= 200 {
            self.meta.heads.pop_front();
        }
        let phrase = phrase.map(|p| String::from_utf8_lossy(p).into_owned()).filter(|p| !p.is_empty());
        self.an.answer(seq, msg.ts, status, phrase, Some(&msg), msg.body, bytes, self.docs)?;
        Ok(status == 101)
    }
}

/// The natively read HTTP connections of one run (see `collectors.protocols.http_native`).
pub struct Engine {
    conns: Map<u64, Conn>,
    pub analyzer: Analyzer,
    pub stats: Stats,
    pub zstats: Py<PyAny>,
    body_class: Py<PyAny>,
}

impl Engine {
    pub fn new(py: Python<'_>, max_open: Option<usize>) -> PyResult<Self> {
        let wire = py.import_bound("collectors.protocols.http_wire")?;
        let http = py.import_bound("collectors.protocols.http")?;
        Ok(Engine {
            conns: Map::default(),
            analyzer: Analyzer {
                states: BTreeMap::new(),
                index: Map::default(),
                next_seq: 0,
                orphans: Vec::new(),
                dropped_records: 0,
                cut_values: 0,
                cids: CidCache::default(),
                basic_user: http.getattr("basic_user")?.unbind(),
                max_open: max_open.unwrap_or(MAX_OPEN_RECORDS),
                held: 0,
                max_held: http.getattr("MAX_WAITING_BYTES")?.extract()?,
                exchange_overhead: http.getattr("EXCHANGE_OVERHEAD")?.extract()?,
            },
            stats: Stats::default(),
            zstats: wire.getattr("WireStats")?.call0()?.unbind(),
            body_class: wire.getattr("Body")?.unbind(),
        })
    }

    pub fn open(&mut self, id: u64, flow: Flow) {
        let meta = Meta { id, flow: Arc::new(flow), heads: VecDeque::new(), switched: false };
        self.conns.insert(id, Conn { meta, client: Reader::new(true), server: Reader::new(false) });
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn switched(&self, id: u64) -> bool {
        self.conns.get(&id).map(|c| c.meta.switched).unwrap_or(false)
    }

    pub fn forget(&mut self, id: u64) {
        self.conns.remove(&id);
    }

    /// Bytes (or a hole: `hole` bytes) of one direction.
    pub fn feed(
        &mut self,
        py: Python<'_>,
        id: u64,
        from_client: bool,
        data: Option<&[u8]>,
        hole: u64,
        ts: f64,
    ) -> PyResult<Vec<Vec<u8>>> {
        let mut docs = Vec::new();
        let Some(conn) = self.conns.get_mut(&id) else { return Ok(docs) };
        let zstats = self.zstats.bind(py);
        let body_class = self.body_class.bind(py);
        let mut sink = ConnSink { meta: &mut conn.meta, an: &mut self.analyzer, docs: &mut docs };
        let mut cx = Cx { py, stats: &mut self.stats, zstats, body_class, sink: &mut sink };
        let (reader, other) =
            if from_client { (&mut conn.client, &mut conn.server) } else { (&mut conn.server, &mut conn.client) };
        let result = match data {
            Some(bytes) => reader.feed(&mut cx, bytes, ts),
            None => {
                reader.bytes += hole;
                reader.hole(&mut cx, hole, ts)
            }
        };
        if std::mem::take(&mut reader.lose_other) {
            other.state = St::Lost;
        }
        result?;
        Ok(docs)
    }

    /// `HttpConnection.end(ts)`: both directions finished, an open HTTP/0.9 request answered; the reader dropped.
    pub fn end(&mut self, py: Python<'_>, id: u64, ts: f64) -> PyResult<Vec<Vec<u8>>> {
        let mut docs = Vec::new();
        let Some(mut conn) = self.conns.remove(&id) else { return Ok(docs) };
        let zstats = self.zstats.bind(py);
        let body_class = self.body_class.bind(py);
        {
            let mut sink = ConnSink { meta: &mut conn.meta, an: &mut self.analyzer, docs: &mut docs };
            let mut cx = Cx { py, stats: &mut self.stats, zstats, body_class, sink: &mut sink };
            conn.client.end(&mut cx, ts)?;
            if std::mem::take(&mut conn.client.lose_other) {
                conn.server.state = St::Lost;
            }
            conn.server.end(&mut cx, ts)?;
        }
        if let Some(&seq) = self.analyzer.index.get(&id) {
            let zero_nine = self
                .analyzer
                .states
                .get(&seq)
                .and_then(|st| st.open.front())
                .map(|ex| ex.version.as_deref() == Some("0.9"))
                .unwrap_or(false);
            if zero_nine {
                self.analyzer.answer(seq, ts, 0, None, None, 0, conn.server.bytes, &mut docs)?;
            }
        }
        Ok(docs)
    }

    pub fn expire(&mut self, now: f64) -> PyResult<Vec<Vec<u8>>> {
        let mut docs = Vec::new();
        self.analyzer.expire(now, &mut docs)?;
        Ok(docs)
    }

    pub fn finish(&mut self) -> PyResult<Vec<Vec<u8>>> {
        let mut docs = Vec::new();
        self.analyzer.finish(&mut docs)?;
        Ok(docs)
    }
}
