//! The FTP control channel of the connections the deep path reads natively: `native_tcp.LineReader` (each
//! direction's bytes as lines, cut at MAX_LINE_BYTES, a hole drops the partial line), the `AUTH` hand-back check of
//! `TcpNative._read`, and `ftp.FtpAnalyzer.line` with no run context but its announcements (commands and replies,
//! multi-line replies, the command/reply pairing, MAX_PENDING, the eviction of the oldest sessions past
//! MAX_OPEN_RECORDS, `finish`), each document written as make_doc's JSON.
//!
//! Data channels named by PORT/EPRT commands and 227/229 replies go to the caller's `announce(orig_h, host, port,
//! "ftp-data", ts)` (`ExpectedConnections.expect`), as `FtpAnalyzer.announce` calls it. EPRT arguments are read by
//! the reference's own `ftp.eprt` (Python's `ipaddress`: its address forms and text), and a command word that is not
//! ASCII is upper-cased by Python's `str.upper`: both are rare.

use crate::Map;
use crate::document::{chars, clip_at, fixed6, id_of, iso, long, sha256_hex, CidCache, Flow};
use crate::text::{json_str, lower};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Arc;

pub const MAX_LINE_BYTES: usize = 8192;
const MAX_PENDING: usize = 100;
const MAX_OPEN_RECORDS: usize = 100_000;
const DATASET: &str = "secops.ftp";

/// `native_tcp.LineReader`: LF ends a line, the CRs before it are dropped, cut at MAX_LINE_BYTES.
#[derive(Default)]
struct LineReader {
    buf: Vec<u8>,
    cutting: bool, // inside a line already cut: its rest is dropped
}

impl LineReader {
    /// `lines(chunk, stats)`: a chunk's complete lines (None: a hole, the partial line is lost).
    fn lines(&mut self, chunk: Option<&[u8]>, cut_lines: &mut u64) -> Vec<Vec<u8>> {
        let Some(chunk) = chunk else {
            self.buf.clear();
            self.cutting = false;
            return Vec::new();
        };
        if !self.buf.is_empty() && self.buf.len() + chunk.len() <= MAX_LINE_BYTES && !chunk.contains(&b'\n') {
            // the line still open goes on and still fits: kept as the join below would keep it, without copying
            // and scanning again what came before (which, fed a byte at a time, cost its square)
            self.buf.extend_from_slice(chunk);
            return Vec::new();
        }
        let joined;
        let data: &[u8] = if self.buf.is_empty() {
            chunk
        } else {
            let mut d = std::mem::take(&mut self.buf);
            d.extend_from_slice(chunk);
            joined = d;
            &joined
        };
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(at) = data.get(start..).and_then(|d| d.iter().position(|&b| b == b'\n')) {
            let end = start + at;
            if self.cutting {
                self.cutting = false;
            } else {
                let line = rstrip_cr(&data[start..end]);
                out.push(line[..line.len().min(MAX_LINE_BYTES)].to_vec());
            }
            start = end + 1;
        }
        let rest = data.get(start..).unwrap_or(&[]);
        if rest.len() > MAX_LINE_BYTES && !self.cutting {
            out.push(rest[..MAX_LINE_BYTES].to_vec());
            *cut_lines += 1;
            self.cutting = true;
            self.buf = Vec::new();
        } else if self.cutting {
            self.buf = Vec::new();
        } else {
            self.buf = rest.to_vec();
        }
        out
    }

    /// `end()`: the partial line left, if any (`cutting` stays as it is, as the reference leaves it).
    fn end(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() && !self.cutting {
            Some(rstrip_cr(&rest).to_vec())
        } else {
            None
        }
    }
}

fn rstrip_cr(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    &line[..end]
}

/// `line[:4].upper() == b"AUTH"`: the client leaves FTP for TLS (tshark reads on).
fn is_auth(line: &[u8]) -> bool {
    line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"AUTH")
}

/// How many digits `text` has from `at`, counted up to `limit` (the regular expressions' `\d{1,3}` and `\d{1,5}`
/// look no further; counting a whole run at every position made a line of digits cost its length squared).
fn digits(text: &[u8], at: usize, limit: usize) -> usize {
    text.get(at..).map(|t| t.iter().take(limit).take_while(|b| b.is_ascii_digit()).count()).unwrap_or(0)
}

fn number(text: &[u8]) -> u32 {
    text.iter().fold(0u32, |n, &b| n * 10 + u32::from(b - b'0'))
}

/// `ftp.HOST_PORT.search(text)` matched at `at`: the six numbers.
fn host_port_at(text: &[u8], at: usize) -> Option<[u32; 6]> {
    let mut numbers = [0u32; 6];
    let mut pos = at;
    for (i, slot) in numbers.iter_mut().enumerate() {
        if i > 0 {
            while text.get(pos).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)) {
                pos += 1;
            }
        }
        let run = digits(text, pos, 4); // 4: enough to tell a run longer than 3
        if run == 0 {
            return None;
        }
        let take = if i < 5 {
            // `(\d{1,3}),`: a digit never matches ',', so the whole run, at most 3, then the comma
            if run > 3 || text.get(pos + run) != Some(&b',') {
                return None;
            }
            run
        } else {
            run.min(3)
        };
        *slot = number(&text[pos..pos + take]);
        pos += take + usize::from(i < 5);
    }
    Some(numbers)
}

/// `ftp.host_port`: the address and port of a PORT argument or a 227 reply (the first match decides).
fn host_port(text: &[u8]) -> Option<(String, i64)> {
    let found = (0..text.len()).filter(|&i| text[i].is_ascii_digit()).find_map(|i| host_port_at(text, i))?;
    if found.iter().any(|&n| n > 255) {
        return None;
    }
    let host = format!("{}.{}.{}.{}", found[0], found[1], found[2], found[3]);
    Some((host, i64::from(found[4] << 8 | found[5])))
}

const RFC2428_NOT_DELIMITER: &[u8] = b"0123456789abcdefABCDEF.:";

/// `ftp.EPSV_PORT.search(text)` matched at `at`: the delimiter and the port's digits.
fn epsv_at(text: &[u8], at: usize) -> Option<(u8, &[u8])> {
    if text.get(at) != Some(&b'(') {
        return None;
    }
    let d = *text.get(at + 1)?;
    if !(0x21..=0x7e).contains(&d) || text.get(at + 2) != Some(&d) || text.get(at + 3) != Some(&d) {
        return None;
    }
    let start = at + 4;
    let run = digits(text, start, 5);
    // greedy `\d{1,5}`, backing off while the delimiter and ')' do not follow (a digit may be the delimiter)
    (1..=run).rev().find_map(|k| {
        (text.get(start + k) == Some(&d) && text.get(start + k + 1) == Some(&b')')).then(|| (d, &text[start..start + k]))
    })
}

/// `ftp.epsv_port`: the port of a 229 reply (the first match decides).
fn epsv_port(text: &[u8]) -> Option<i64> {
    let (d, port) = (0..text.len()).find_map(|i| epsv_at(text, i))?;
    if RFC2428_NOT_DELIMITER.contains(&d) {
        return None;
    }
    let port = i64::from(number(port));
    (0 < port && port < 65536).then_some(port)
}

/// `_text`: the bytes decoded as UTF-8 (each broken sequence U+FFFD), None when empty.
fn text_of(raw: &[u8]) -> Option<String> {
    if raw.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(raw).into_owned())
    }
}

/// `str.upper()`: ASCII here, anything else by Python (full case mappings; the compiled reference maps each
/// character the same way).
fn upper(py: Python<'_>, text: String) -> PyResult<String> {
    if text.is_ascii() {
        return Ok(text.to_ascii_uppercase());
    }
    PyString::new_bound(py, &text).call_method0("upper")?.extract()
}

struct Command {
    flow: Arc<Flow>,
    ts: f64,
    command: String,
    arg: Option<String>,
    user: Option<Arc<str>>, // the session's, shared (as the reference's str is): not one copy per command
    reply_code: Option<i64>,
    reply_msg: Option<String>,
    weight: usize, // what it is charged against `max_held` (`Command.weight`)
}

struct Session {
    stream: String,
    user: Option<Arc<str>>,
    pending: VecDeque<Command>,
    multiline: Option<[u8; 3]>, // the code that ends the multi-line reply being read
    held: usize,                // the weights of its pending commands
}

struct Conn {
    flow: Arc<Flow>,
    lines: [LineReader; 2], // from the client, from the server
    switched: bool,         // the last feed met the client's AUTH
}

pub struct Engine {
    conns: Map<u64, Conn>,
    sessions: BTreeMap<u64, Session>, // in creation order (FtpAnalyzer.sessions)
    index: Map<String, u64>,      // stream -> its session's place
    next_seq: u64,
    evicted: Vec<Vec<u8>>, // documents of evicted sessions, handed on at the next command or reply
    pub cut_lines: u64,
    pub cut_values: u64,
    cids: CidCache,
    pub announce: Option<PyObject>,
    eprt: PyObject,
    max_open: usize,
    held: usize,             // the sessions' `held` together (`FtpAnalyzer.held`)
    max_held: usize,         // ftp.MAX_WAITING_BYTES
    command_overhead: usize, // ftp.COMMAND_OVERHEAD
}

impl Engine {
    pub fn new(py: Python<'_>, announce: Option<PyObject>, max_open: Option<usize>) -> PyResult<Self> {
        let ftp = py.import_bound("collectors.protocols.ftp")?;
        Ok(Engine {
            conns: Map::default(),
            sessions: BTreeMap::new(),
            index: Map::default(),
            next_seq: 0,
            evicted: Vec::new(),
            cut_lines: 0,
            cut_values: 0,
            cids: CidCache::default(),
            announce,
            eprt: ftp.getattr("eprt")?.unbind(),
            max_open: max_open.unwrap_or(MAX_OPEN_RECORDS),
            held: 0,
            max_held: ftp.getattr("MAX_WAITING_BYTES")?.extract()?,
            command_overhead: ftp.getattr("COMMAND_OVERHEAD")?.extract()?,
        })
    }

    pub fn open(&mut self, id: u64, flow: Flow) {
        self.conns.insert(id, Conn { flow: Arc::new(flow), lines: Default::default(), switched: false });
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The longest partial line held (bounded by MAX_LINE_BYTES).
    pub fn longest_line(&self) -> usize {
        self.conns.values().flat_map(|c| c.lines.iter().map(|r| r.buf.len())).max().unwrap_or(0)
    }

    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    pub fn switched(&self, id: u64) -> bool {
        self.conns.get(&id).is_some_and(|c| c.switched)
    }

    pub fn forget(&mut self, id: u64) {
        self.conns.remove(&id);
    }

    /// One direction's bytes (None: a hole): its lines through the analyzer, up to a client's AUTH (`switched`).
    pub fn feed(&mut self, py: Python<'_>, id: u64, from_client: bool, data: Option<&[u8]>, ts: f64) -> PyResult<Vec<Vec<u8>>> {
        let mut docs = Vec::new();
        let Some(conn) = self.conns.get_mut(&id) else { return Ok(docs) };
        conn.switched = false;
        let lines = conn.lines[usize::from(!from_client)].lines(data, &mut self.cut_lines);
        if lines.is_empty() {
            return Ok(docs);
        }
        let flow = conn.flow.clone();
        for line in lines {
            if from_client && is_auth(&line) {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.switched = true;
                }
                break;
            }
            self.line(py, &flow, from_client, ts, &line, &mut docs)?;
        }
        Ok(docs)
    }

    /// One direction ended: its partial line read (unless it is the client's AUTH).
    pub fn end(&mut self, py: Python<'_>, id: u64, from_client: bool, ts: f64) -> PyResult<Vec<Vec<u8>>> {
        let mut docs = Vec::new();
        let Some(conn) = self.conns.get_mut(&id) else { return Ok(docs) };
        let Some(line) = conn.lines[usize::from(!from_client)].end() else { return Ok(docs) };
        if from_client && is_auth(&line) {
            return Ok(docs);
        }
        let flow = conn.flow.clone();
        self.line(py, &flow, from_client, ts, &line, &mut docs)?;
        Ok(docs)
    }

    /// `FtpAnalyzer.session`: the connection's session, made when new (the oldest evicted past `max_open`).
    fn session(&mut self, flow: &Arc<Flow>) -> PyResult<u64> {
        if let Some(&seq) = self.index.get(&flow.stream) {
            return Ok(seq);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert(flow.stream.clone(), seq);
        let session =
            Session { stream: flow.stream.clone(), user: None, pending: VecDeque::new(), multiline: None, held: 0 };
        self.sessions.insert(seq, session);
        while self.sessions.len() > self.max_open {
            let Some((_, stale)) = self.sessions.pop_first() else { break };
            self.index.remove(&stale.stream);
            self.held -= stale.held;
            for cmd in stale.pending {
                let doc = self.emit(cmd)?;
                self.evicted.push(doc);
            }
        }
        Ok(seq)
    }

    /// `FtpAnalyzer.announce`: a data channel named on the control connection.
    fn announce(&self, py: Python<'_>, orig_h: &str, host: Option<String>, port: Option<i64>, ts: f64) -> PyResult<()> {
        let (Some(callback), Some(host), Some(port)) = (&self.announce, host, port) else { return Ok(()) };
        if host.is_empty() {
            return Ok(());
        }
        callback.call1(py, (orig_h, host, port, "ftp-data", ts))?;
        Ok(())
    }

    /// `FtpAnalyzer.line`.
    fn line(&mut self, py: Python<'_>, flow: &Arc<Flow>, from_client: bool, ts: f64, line: &[u8], docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        let seq = self.session(flow)?;
        if from_client {
            let (word, rest) = match line.iter().position(|&b| b == b' ') {
                Some(at) => (&line[..at], &line[at + 1..]),
                None => (line, &line[line.len()..]),
            };
            if word.is_empty() {
                return Ok(());
            }
            let command = upper(py, String::from_utf8_lossy(word).into_owned())?;
            if command == "PORT" {
                let (host, port) = host_port(rest).map_or((None, None), |(h, p)| (Some(h), Some(p)));
                self.announce(py, &flow.resp_h, host, port, ts)?;
            } else if command == "EPRT" {
                let found = self.eprt.call1(py, (PyBytes::new_bound(py, rest),))?;
                let (host, port) = found.extract::<Option<(String, i64)>>(py)?.map_or((None, None), |(h, p)| (Some(h), Some(p)));
                self.announce(py, &flow.resp_h, host, port, ts)?;
            }
            return self.command(py, seq, flow, ts, command, text_of(rest), docs);
        }
        let Some(session) = self.sessions.get_mut(&seq) else { return Ok(()) };
        if let Some(code) = session.multiline {
            // inside a multi-line reply: only its last line ends it
            if line.len() >= 3 && line[..3] == code && line.get(3) != Some(&b'-') {
                session.multiline = None;
            }
            return Ok(());
        }
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Ok(());
        }
        let code = i64::from(number(&line[..3]));
        if line.get(3) == Some(&b'-') {
            session.multiline = Some([line[0], line[1], line[2]]);
        }
        let text = line.get(4..).unwrap_or(&[]);
        if code == 227 {
            let (host, port) = host_port(text).map_or((None, None), |(h, p)| (Some(h), Some(p)));
            self.announce(py, &flow.orig_h, host, port, ts)?;
        } else if code == 229 {
            self.announce(py, &flow.orig_h, Some(flow.resp_h.clone()), epsv_port(text), ts)?;
        }
        self.reply(seq, code, text_of(text), docs)
    }

    /// `FtpAnalyzer.command`: a client command waits for its reply.
    #[allow(clippy::too_many_arguments)]
    fn command(&mut self, py: Python<'_>, seq: u64, flow: &Arc<Flow>, ts: f64, command: String, arg: Option<String>, docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        docs.append(&mut self.evicted);
        let command = upper(py, command)?;
        let Some(session) = self.sessions.get_mut(&seq) else { return Ok(()) };
        if command == "USER" {
            session.user = arg.as_deref().map(Arc::from);
        }
        let secret = command == "PASS" || command == "ACCT";
        let arg = if secret { None } else { arg };
        let weight = self.command_overhead + command.len() + arg.as_ref().map_or(0, |a| a.len());
        session.pending.push_back(Command {
            flow: flow.clone(),
            ts,
            command,
            arg,
            user: session.user.clone(),
            reply_code: None,
            reply_msg: None,
            weight,
        });
        session.held += weight;
        self.held += weight;
        if session.pending.len() > MAX_PENDING {
            // pipelined commands never answered
            if let Some(cmd) = self.answered(seq) {
                docs.push(self.emit(cmd)?);
            }
        }
        // a flood over many sessions: the oldest others' commands are logged
        while self.held > self.max_held {
            let Some(&stale_seq) = self.sessions.keys().find(|&&other| other != seq) else { break };
            let Some(stale) = self.sessions.remove(&stale_seq) else { break };
            self.index.remove(&stale.stream);
            self.held -= stale.held;
            for cmd in stale.pending {
                docs.push(self.emit(cmd)?);
            }
        }
        Ok(())
    }

    /// `FtpAnalyzer._answered`: the session's oldest waiting command, no longer waiting.
    fn answered(&mut self, seq: u64) -> Option<Command> {
        let session = self.sessions.get_mut(&seq)?;
        let cmd = session.pending.pop_front()?;
        session.held -= cmd.weight;
        self.held -= cmd.weight;
        if session.pending.is_empty() && session.pending.capacity() > 4 {
            session.pending = VecDeque::new(); // 100 pipelined commands answered left ~18 kB a session for nothing
        }
        Some(cmd)
    }

    /// `FtpAnalyzer.reply`: a final reply (>= 200) answers the oldest waiting command.
    fn reply(&mut self, seq: u64, code: i64, msg: Option<String>, docs: &mut Vec<Vec<u8>>) -> PyResult<()> {
        docs.append(&mut self.evicted);
        if code < 200 {
            return Ok(());
        }
        let Some(mut cmd) = self.answered(seq) else { return Ok(()) };
        cmd.reply_code = Some(code);
        cmd.reply_msg = msg;
        docs.push(self.emit(cmd)?);
        Ok(())
    }

    /// `FtpAnalyzer.expire`: nothing (a session's commands wait until the run ends).
    pub fn expire(&mut self, _now: f64) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// `FtpAnalyzer.finish` without its warning: every waiting command, oldest first.
    pub fn finish(&mut self) -> PyResult<Vec<Vec<u8>>> {
        let mut docs = std::mem::take(&mut self.evicted);
        let mut rest: Vec<Command> = std::mem::take(&mut self.sessions).into_values().flat_map(|s| s.pending).collect();
        self.index.clear();
        self.held = 0;
        rest.sort_by(|a, b| a.ts.partial_cmp(&b.ts).unwrap_or(std::cmp::Ordering::Equal));
        for cmd in rest {
            docs.push(self.emit(cmd)?);
        }
        Ok(docs)
    }
}

/// A string value as make_doc writes it: cut at MAX_KEYWORD_CHARS code points (the field noted in `cuts`).
fn value(out: &mut String, name: &'static str, text: &str, cuts: &mut Vec<&'static str>) {
    if long(text) {
        cuts.push(name);
        json_str(out, clip_at(text));
    } else {
        json_str(out, text);
    }
}

impl Engine {
    /// `FtpAnalyzer.emit`: make_doc's JSON of a command and its reply.
    fn emit(&mut self, cmd: Command) -> PyResult<Vec<u8>> {
        let login = cmd.command == "PASS";
        let outcome = match (login, cmd.reply_code) {
            (true, Some(230)) => Some("success"),
            (true, Some(530)) => Some("failure"),
            _ => None,
        };
        let action = if login { "ftp-login".to_string() } else { format!("ftp-{}", lower(&cmd.command)) };
        let cid = self.cids.get_proto(6, &cmd.flow).map_err(|e| PyValueError::new_err(e.0))?;
        // where Rust has no ISO text for the time, Python's (or the exception make_doc raises)
        let timestamp = match iso(cmd.ts) {
            Ok(text) => text,
            Err(_) => Python::with_gil(|py| -> PyResult<String> {
                py.import_bound("secops.ecs")?.getattr("iso")?.call1((cmd.ts,))?.extract::<String>()
            })?,
        };
        let mut cuts: Vec<&'static str> = Vec::new();
        let mut out = String::with_capacity(640);
        out.push_str("{\"@timestamp\":\"");
        out.push_str(&timestamp);
        out.push_str("\",\"event\":{\"dataset\":\"secops.ftp\",\"kind\":\"event\",\"module\":\"secops\",\"category\":");
        out.push_str(if login { "[\"network\",\"authentication\"]" } else { "[\"network\"]" });
        out.push_str(",\"type\":[\"protocol\"],\"action\":");
        let mut action_cut = Vec::new();
        value(&mut out, "event.action", &action, &mut action_cut);
        if let Some(outcome) = outcome {
            out.push_str(",\"outcome\":\"");
            out.push_str(outcome);
            out.push('"');
        }
        out.push_str("},\"source\":{\"ip\":");
        json_str(&mut out, &cmd.flow.orig_h);
        let _ = write!(out, ",\"port\":{}}},\"destination\":{{\"ip\":", cmd.flow.orig_p);
        json_str(&mut out, &cmd.flow.resp_h);
        let _ = write!(out, ",\"port\":{}}},\"network\":{{\"transport\":\"tcp\",\"community_id\":", cmd.flow.resp_p);
        json_str(&mut out, &cid);
        out.push_str(",\"protocol\":\"ftp\"},\"secops\":{\"ftp\":{\"command\":");
        value(&mut out, "secops.ftp.command", &cmd.command, &mut cuts);
        if let Some(arg) = cmd.arg.as_deref() {
            out.push_str(",\"arg\":");
            value(&mut out, "secops.ftp.arg", arg, &mut cuts);
        }
        if let Some(code) = cmd.reply_code {
            let _ = write!(out, ",\"reply_code\":{}", code);
        }
        if let Some(msg) = cmd.reply_msg.as_deref() {
            out.push_str(",\"reply_msg\":");
            value(&mut out, "secops.ftp.reply_msg", msg, &mut cuts);
        }
        out.push('}');
        let mut user_cut = Vec::new();
        let mut user = String::new();
        if let Some(name) = cmd.user.as_deref() {
            value(&mut user, "user.name", name, &mut user_cut);
        }
        // secops.truncated: the fields' order (command, arg, reply_msg, user.name, event.action)
        let originals = |name: &str| -> &str {
            match name {
                "secops.ftp.command" => &cmd.command,
                "secops.ftp.arg" => cmd.arg.as_deref().unwrap_or(""),
                "secops.ftp.reply_msg" => cmd.reply_msg.as_deref().unwrap_or(""),
                "user.name" => cmd.user.as_deref().unwrap_or(""),
                _ => &action,
            }
        };
        cuts.extend(user_cut);
        cuts.extend(action_cut);
        if !cuts.is_empty() {
            out.push_str(",\"truncated\":[");
            for (i, name) in cuts.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let original = originals(name);
                out.push_str("{\"field\":");
                json_str(&mut out, name);
                let _ = write!(out, ",\"length\":{},\"sha256\":\"{}\"}}", chars(original), sha256_hex(original.as_bytes()));
            }
            out.push(']');
        }
        out.push('}');
        if cmd.user.is_some() {
            out.push_str(",\"user\":{\"name\":");
            out.push_str(&user);
            out.push('}');
        }
        out.push_str(",\"_id\":\"");
        let id_text = format!("{}\x1f{}\x1f{}\x1fftp\x1f{}\x1f", DATASET, cid, fixed6(cmd.ts), cmd.command);
        out.push_str(&id_of(id_text.as_bytes()));
        out.push_str("\"}");
        self.cut_values += cuts.len() as u64;
        Ok(out.into_bytes())
    }
}

/// A feed's data: bytes, or an int (a hole).
pub fn chunk_of<'a>(data: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a [u8]>> {
    if let Ok(b) = data.downcast::<PyBytes>() {
        return Ok(Some(b.as_bytes()));
    }
    data.extract::<u64>()?;
    Ok(None)
}
