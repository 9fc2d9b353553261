//! `collectors._rs`: the deep path's DNS/mDNS/LLMNR over UDP and its natively read TCP protocols (HTTP/1.x, TLS,
//! the FTP control channel, DNP3, S7comm) in Rust, and the connection documents.
//! `DnsEngine` does what `dns_wire.parse`, `DnsAnalyzer` and `make_doc` do in Python, `HttpEngine` what
//! `HttpConnection` and `HttpAnalyzer` do, `TlsEngine` what `tls_wire` and `TlsAnalyzer` do, `FtpEngine` what
//! `FtpAnalyzer.line` does with its lines, `Dnp3Engine` and `S7commEngine` what the `*_wire` readers and their
//! analyzers do; each hands back its documents as JSON bytes. `write_conn` writes `conn.conn_doc`'s document.

#![allow(clippy::useless_conversion)] // pyo3 0.22 #[pymethods] expansion

/// Rust's allocations (documents, buffers, table entries) through mimalloc: glibc's malloc and free were about a
/// tenth of an analyzer process's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The connection and transaction tables: keyed by what hosts send, so hashed with random keys, but with aHash
/// rather than SipHash (about 2% of an analyzer process).
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

mod conn;
mod dnp3;
mod document;
mod fields;
mod ftp;
mod http;
mod pairing;
mod render;
mod s7comm;
mod tcp;
mod text;
mod tls;
mod tls_names;
mod wire;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

fn py_docs(py: Python<'_>, docs: Result<Vec<Vec<u8>>, document::DocError>) -> PyResult<Vec<PyObject>> {
    match docs {
        Ok(docs) => Ok(docs.iter().map(|d| PyBytes::new_bound(py, d).into_any().unbind()).collect()),
        Err(e) => Err(PyValueError::new_err(e.0)),
    }
}

pub(crate) fn finite(ts: f64) -> PyResult<()> {
    if ts.is_finite() {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!("timestamp is not finite: {}", ts)))
    }
}

/// A frame's chunks as the engines read them: bytes, or None for a hole (an int in the list).
fn chunk_parts<'a>(items: &'a [Bound<'_, PyAny>]) -> PyResult<Vec<Option<&'a [u8]>>> {
    items
        .iter()
        .map(|item| {
            if let Ok(b) = item.downcast::<PyBytes>() {
                Ok(Some(b.as_bytes()))
            } else if item.downcast::<pyo3::types::PyLong>().is_ok() {
                Ok(None)
            } else {
                Err(pyo3::exceptions::PyTypeError::new_err("a chunk is bytes or an int (a hole)"))
            }
        })
        .collect()
}

/// One run's DNS reader: wire parsing, pairing and documents (see `collectors.protocols.dns`).
#[pyclass(module = "collectors._rs")]
struct DnsEngine {
    analyzer: pairing::Analyzer,
    stats: wire::Stats,
    next_sweep: Option<f64>, // capture time of the next sweep for queries past their timeout (`read`)
}

/// dns_udp.SWEEP_SECONDS: capture time between sweeps for queries past their timeout.
const SWEEP_SECONDS: f64 = 1.0;
/// decode.TUNNEL_PORTS: a UDP datagram on one of these is decoded as a tunnel (in Python).
const TUNNEL_PORTS: [u16; 6] = [4789, 6081, 3544, 2152, 5072, 4754];

/// dns_wire.PORT_KINDS: what tshark decodes on the lower port of a UDP datagram.
fn dns_kind(port: u16) -> Option<&'static str> {
    match port {
        53 => Some("dns"),
        5353 => Some("mdns"),
        5355 => Some("llmnr"),
        _ => None,
    }
}

impl DnsEngine {
    /// `parse(payload, kind, stats)` then `handle_message(msg, sender, ts)`; with `sweep`, first the queries past
    /// their timeout every `SWEEP_SECONDS` of capture time (`NativeFrames`' DNS step).
    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        data: &[u8],
        kind: &str,
        src: String,
        sport: u16,
        dst: String,
        dport: u16,
        ts: f64,
        sweep: bool,
    ) -> Result<Vec<Vec<u8>>, document::DocError> {
        let mut docs = Vec::new();
        if sweep && self.next_sweep.is_none_or(|next| ts >= next) {
            self.next_sweep = Some(ts + SWEEP_SECONDS);
            docs = self.analyzer.expire(ts)?;
        }
        let Some(msg) = wire::parse(data, kind, &mut self.stats) else { return Ok(docs) };
        let a = format!("{}:{}", src, sport);
        let b = format!("{}:{}", dst, dport);
        let stream = if a < b { format!("{}-{}", a, b) } else { format!("{}-{}", b, a) };
        let sender = document::Flow { orig_h: src, orig_p: sport, resp_h: dst, resp_p: dport, stream };
        docs.extend(self.analyzer.handle_message(&msg, sender, ts)?);
        Ok(docs)
    }
}

#[pymethods]
impl DnsEngine {
    /// Its bound of open queries is `collectors.protocols.dns.MAX_OPEN_QUERIES` when made.
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let max_open = py.import_bound("collectors.protocols.dns")?.getattr("MAX_OPEN_QUERIES")?.extract()?;
        Ok(DnsEngine { analyzer: pairing::Analyzer::new(max_open), stats: wire::Stats::default(), next_sweep: None })
    }

    /// The frame at `off` of `buf` (`caplen` bytes) read in place when it is what the decoder's fast path takes as
    /// plain Ethernet, IPv4 without options or fragmentation, UDP off the tunnel ports, on a DNS port: its documents
    /// as `message` with `sweep` gives them; None for any other frame (Python decodes it).
    fn frame(&mut self, py: Python<'_>, buf: &[u8], off: usize, caplen: usize, ts: f64) -> PyResult<Option<Vec<PyObject>>> {
        let Some(f) = off.checked_add(caplen).and_then(|end| buf.get(off..end)) else { return Ok(None) };
        let u16_at = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
        if caplen < 54 || f[12] != 8 || f[13] != 0 || f[14] != 0x45 || f[23] != 17 {
            return Ok(None);
        }
        let (total, sport, dport, ulen) = (u16_at(16) as usize, u16_at(34), u16_at(36), u16_at(38) as usize);
        if u16_at(20) & 0x3FFF != 0 || total < 28 || ulen < 8 || TUNNEL_PORTS.contains(&sport) || TUNNEL_PORTS.contains(&dport) {
            return Ok(None);
        }
        let Some(kind) = dns_kind(sport.min(dport)) else { return Ok(None) };
        finite(ts)?;
        let stop = 34 + (caplen.min(14 + total) - 34).min(ulen); // decode's avail, then the UDP length
        let ip = |at: usize| format!("{}.{}.{}.{}", f[at], f[at + 1], f[at + 2], f[at + 3]);
        let docs = self.read(&f[42..stop], kind, ip(26), sport, ip(30), dport, ts, true);
        py_docs(py, docs).map(Some)
    }

    /// `parse(payload, kind, stats)` then `handle_message(msg, sender, ts)`: the finished documents; with `sweep`,
    /// after those of the queries past their timeout when `SWEEP_SECONDS` of capture time have passed (a decoded
    /// datagram of a run, `RustDns.read`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (payload, kind, src, sport, dst, dport, ts, sweep = false))]
    fn message(
        &mut self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
        kind: &str,
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        ts: f64,
        sweep: bool,
    ) -> PyResult<Vec<PyObject>> {
        finite(ts)?;
        let owned: Vec<u8>;
        let data: &[u8] = match payload.downcast::<PyBytes>() {
            Ok(b) => b.as_bytes(),
            Err(_) => {
                owned = py.import_bound("builtins")?.getattr("bytes")?.call1((payload,))?.extract::<Vec<u8>>()?;
                &owned
            }
        };
        py_docs(py, self.read(data, kind, src.to_string(), sport, dst.to_string(), dport, ts, sweep))
    }

    /// `DnsAnalyzer.expire(now)`.
    fn expire(&mut self, py: Python<'_>, now: f64) -> PyResult<Vec<PyObject>> {
        let docs = self.analyzer.expire(now);
        py_docs(py, docs)
    }

    /// `DnsAnalyzer.finish()` without its warning: the caller reports `cut_values`.
    fn finish(&mut self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let docs = self.analyzer.finish();
        py_docs(py, docs)
    }

    #[getter]
    fn messages(&self) -> u64 {
        self.stats.messages
    }
    #[getter]
    fn truncated(&self) -> u64 {
        self.stats.truncated
    }
    #[getter]
    fn too_short(&self) -> u64 {
        self.stats.too_short
    }
    #[getter]
    fn records_cut(&self) -> u64 {
        self.stats.records_cut
    }
    #[getter]
    fn cut_values(&self) -> u64 {
        self.analyzer.cut_values
    }
    /// Connections in the orientation memo (for tests of its clearing).
    #[getter]
    fn flows(&self) -> usize {
        self.analyzer.flows_len()
    }
}

/// `documents.make_doc(dataset, Flow(transport, orig_h, orig_p, resp_h, resp_p, ...), ts, identity, fields,
/// protocol, keep_empty)` as the JSON bytes `orjson.dumps` writes of it, with the length of its
/// `secops.truncated` (values cut). `fields` is left as it is. TypeError where orjson would refuse the document
/// (or for a case this writer does not model): the caller falls back to make_doc.
#[pyfunction]
#[pyo3(signature = (dataset, transport, orig_h, orig_p, resp_h, resp_p, ts, identity, fields, protocol, keep_empty = None))]
#[allow(clippy::too_many_arguments)]
fn write_document<'py>(
    py: Python<'py>,
    dataset: &Bound<'py, PyAny>,
    transport: &Bound<'py, PyAny>,
    orig_h: &Bound<'py, PyAny>,
    orig_p: &Bound<'py, PyAny>,
    resp_h: &Bound<'py, PyAny>,
    resp_p: &Bound<'py, PyAny>,
    ts: f64,
    identity: &Bound<'py, PyAny>,
    fields: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    keep_empty: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let empty = PyTuple::empty_bound(py).into_any();
    let args = fields::Args {
        dataset,
        transport,
        orig_h,
        orig_p,
        resp_h,
        resp_p,
        ts,
        identity,
        fields,
        protocol,
        keep_empty: keep_empty.unwrap_or(&empty),
    };
    let (json, cut) = fields::write_document(py, &args)?;
    Ok((PyBytes::new_bound(py, &json), cut))
}

/// One run's TLS over natively read TCP connections: `tls_wire.TlsConnection` and `TlsAnalyzer` in one (see
/// `collectors.protocols.tls_native`). `certificate(der, ts, resp_h, resp_p)` gives the leaf certificate's fields
/// (a dict, or None when unreadable); `fallback(orig_h, orig_p, resp_h, resp_p, ts, fields)` gives (make_doc's
/// dict, its cuts) where the JSON writer refuses the fields.
#[pyclass(module = "collectors._rs")]
struct TlsEngine {
    engine: tls::Engine,
}

#[pymethods]
impl TlsEngine {
    /// Its bound of what waits in incomplete records and messages is `tls_wire.MAX_HELD_BYTES` when made.
    #[new]
    fn new(py: Python<'_>, certificate: PyObject, fallback: PyObject) -> PyResult<Self> {
        let max_held = py.import_bound("collectors.protocols.tls_wire")?.getattr("MAX_HELD_BYTES")?.extract()?;
        Ok(TlsEngine { engine: tls::Engine::new(certificate, fallback, max_held) })
    }

    /// A connection read as TLS from now on (client first).
    fn open(&mut self, conn_id: u64, client_h: String, client_p: u16, server_h: String, server_p: u16) {
        self.engine.open(conn_id, (client_h, client_p), (server_h, server_p));
    }

    /// One frame: its reassembled chunks (bytes, or an int for a hole) in one direction, then one analyzer step.
    fn feed(
        &mut self,
        py: Python<'_>,
        conn_id: u64,
        from_client: bool,
        chunks: &Bound<'_, PyList>,
        ts: f64,
    ) -> PyResult<Vec<PyObject>> {
        finite(ts)?;
        let items: Vec<Bound<'_, PyAny>> = chunks.iter().collect();
        let parts = chunk_parts(&items)?;
        let mut out = Vec::new();
        self.engine.feed(py, conn_id, from_client, &parts, ts, &mut out)?;
        Ok(out)
    }

    /// The callables it holds, for the garbage collector (they usually refer back to the engine's owner).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(c) = &self.engine.certificate {
            visit.call(c)?;
        }
        if let Some(f) = &self.engine.fallback {
            visit.call(f)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.engine.certificate = None;
        self.engine.fallback = None;
    }

    /// The connection's wire state dropped (its session stays until logged or finish).
    fn close(&mut self, conn_id: u64) {
        self.engine.close(conn_id);
    }

    /// `TlsAnalyzer.finish()` without its warning: the caller reports `cut_values`.
    fn finish(&mut self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let mut out = Vec::new();
        self.engine.finish(py, &mut out)?;
        Ok(out)
    }

    #[getter]
    fn oversized(&self) -> u64 {
        self.engine.stats.oversized
    }
    #[getter]
    fn unknown_records(&self) -> u64 {
        self.engine.stats.unknown_records
    }
    #[getter]
    fn holes(&self) -> u64 {
        self.engine.stats.holes
    }
    #[getter]
    fn malformed(&self) -> u64 {
        self.engine.stats.malformed
    }
    #[getter]
    fn cut_values(&self) -> u64 {
        self.engine.cut_values
    }
    #[setter]
    fn set_cut_values(&mut self, value: u64) {
        self.engine.cut_values = value;
    }
    /// Sessions held (logged ones included, until finish).
    #[getter]
    fn sessions(&self) -> usize {
        self.engine.sessions_len()
    }
}

/// One run's S7comm over natively read TCP connections (see `collectors.protocols.s7comm_native`):
/// `s7comm_wire.S7commReader` per connection and `S7commAnalyzer` in one, each document as JSON bytes.
#[pyclass(module = "collectors._rs")]
struct S7commEngine {
    engine: s7comm::Engine,
}

#[pymethods]
impl S7commEngine {
    #[new]
    fn new() -> Self {
        S7commEngine { engine: s7comm::Engine::default() }
    }

    /// A connection read as S7comm from now on (client first; `conn_id` names it in the other calls).
    fn open(&mut self, conn_id: u64, orig_h: String, orig_p: u16, resp_h: String, resp_p: u16) {
        self.engine.open(conn_id, (orig_h, orig_p), (resp_h, resp_p));
    }

    /// One frame: its reassembled chunks (bytes, or an int for a hole) in one direction, and the frame's raw TCP
    /// sequence number (its documents' place); the document of the S7comm PDUs it completed, if any.
    fn feed(
        &mut self,
        py: Python<'_>,
        conn_id: u64,
        from_client: bool,
        chunks: &Bound<'_, PyList>,
        ts: f64,
        seq: u64,
    ) -> PyResult<Vec<PyObject>> {
        finite(ts)?;
        let items: Vec<Bound<'_, PyAny>> = chunks.iter().collect();
        let parts = chunk_parts(&items)?;
        if !self.engine.has(conn_id) {
            return Err(pyo3::exceptions::PyKeyError::new_err(conn_id));
        }
        match self.engine.feed(conn_id, from_client, &parts, ts, seq) {
            Ok(Some(doc)) => Ok(vec![PyBytes::new_bound(py, &doc).into_any().unbind()]),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(PyValueError::new_err(e.0)),
        }
    }

    /// What the connection's reader skipped as damaged so far (`native_tcp.ics_damage`).
    fn damage(&self, conn_id: u64) -> u64 {
        self.engine.damage(conn_id)
    }

    /// The connection's reader dropped (nothing waits in S7commAnalyzer: no documents).
    fn end(&mut self, conn_id: u64, ts: f64) -> PyResult<Vec<PyObject>> {
        finite(ts)?;
        self.engine.end(conn_id);
        Ok(Vec::new())
    }

    /// `S7commAnalyzer.expire(now)`: nothing waits.
    fn expire(&mut self, _now: f64) -> Vec<PyObject> {
        Vec::new()
    }

    /// `S7commAnalyzer.finish()` without its warning: the caller reports `cut_values`.
    fn finish(&mut self) -> Vec<PyObject> {
        Vec::new()
    }

    #[getter]
    fn cut_values(&self) -> u64 {
        self.engine.cut_values
    }
    #[setter]
    fn set_cut_values(&mut self, value: u64) {
        self.engine.cut_values = value;
    }
    /// The run's `S7commStats` counters (closed and open connections), in its slot order.
    #[getter]
    fn counters(&self) -> (u64, u64, u64, u64, u64, u64, u64, u64, u64, u64) {
        let s = self.engine.stats();
        (s.bad_lengths, s.bad_versions, s.cotp_rejected, s.dropped_bytes, s.evicted, s.holes, s.not_s7, s.pdus,
         s.ses_claimed, s.tpkts)
    }
    /// Connections being read.
    #[getter]
    fn connections(&self) -> usize {
        self.engine.connections()
    }
}

/// One run's natively read HTTP/1.x connections (see `collectors.protocols.http_native`): `HttpConnection`s
/// and their `HttpAnalyzer` in one, each document as JSON bytes.
#[pyclass(module = "collectors._rs")]
struct HttpEngine {
    engine: http::Engine,
}

#[pymethods]
impl HttpEngine {
    #[new]
    #[pyo3(signature = (max_open = None))]
    fn new(py: Python<'_>, max_open: Option<usize>) -> PyResult<Self> {
        Ok(HttpEngine { engine: http::Engine::new(py, max_open)? })
    }

    /// A connection read from now on (`flow`'s fields spelled out; `conn_id` names it in the other calls).
    fn open(&mut self, conn_id: u64, orig_h: String, orig_p: u16, resp_h: String, resp_p: u16, stream: String) {
        self.engine.open(conn_id, document::Flow { orig_h, orig_p, resp_h, resp_p, stream });
    }

    /// `HttpConnection.feed(from_client, data, ts)` then `take_docs()`: bytes, or an int (a hole).
    fn feed(
        &mut self,
        py: Python<'_>,
        conn_id: u64,
        from_client: bool,
        data: &Bound<'_, PyAny>,
        ts: f64,
    ) -> PyResult<Vec<PyObject>> {
        finite(ts)?;
        let docs = if let Ok(b) = data.downcast::<PyBytes>() {
            self.engine.feed(py, conn_id, from_client, Some(b.as_bytes()), 0, ts)?
        } else {
            let hole = data.extract::<u64>()?;
            self.engine.feed(py, conn_id, from_client, None, hole, ts)?
        };
        Ok(docs.iter().map(|d| PyBytes::new_bound(py, d).into_any().unbind()).collect())
    }

    /// Whether the connection left HTTP (CONNECT, an Upgrade not read through): the caller hands it back.
    fn switched(&self, conn_id: u64) -> bool {
        self.engine.switched(conn_id)
    }

    /// Drop a connection's readers without ending it (handed back to tshark).
    fn forget(&mut self, conn_id: u64) {
        self.engine.forget(conn_id);
    }

    /// `HttpConnection.end(ts)` then `take_docs()`; the connection's readers are dropped.
    fn end(&mut self, py: Python<'_>, conn_id: u64, ts: f64) -> PyResult<Vec<PyObject>> {
        finite(ts)?;
        let docs = self.engine.end(py, conn_id, ts);
        py_docs_py(py, docs)
    }

    /// `HttpAnalyzer.expire(now)`.
    fn expire(&mut self, py: Python<'_>, now: f64) -> PyResult<Vec<PyObject>> {
        let docs = self.engine.expire(now);
        py_docs_py(py, docs)
    }

    /// `HttpAnalyzer.finish()` without its warnings: the caller reports `cut_values` and `dropped_records`.
    fn finish(&mut self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let docs = self.engine.finish();
        py_docs_py(py, docs)
    }

    #[getter]
    fn cut_values(&self) -> u64 {
        self.engine.analyzer.cut_values
    }
    #[getter]
    fn dropped_records(&self) -> u64 {
        self.engine.analyzer.dropped_records
    }
    #[getter]
    fn cut_lines(&self) -> u64 {
        self.engine.stats.cut_lines
    }
    #[getter]
    fn bad_chunks(&self) -> u64 {
        self.engine.stats.bad_chunks
    }
    #[getter]
    fn lost_directions(&self) -> u64 {
        self.engine.stats.lost_directions
    }
    #[getter]
    fn not_http(&self) -> u64 {
        self.engine.stats.not_http
    }
    #[getter]
    fn bombs(&self, py: Python<'_>) -> PyResult<u64> {
        self.engine.zstats.bind(py).getattr("bombs")?.extract()
    }
    #[getter]
    fn undecodable(&self, py: Python<'_>) -> PyResult<u64> {
        self.engine.zstats.bind(py).getattr("undecodable")?.extract()
    }
    /// Connections being read (for tests of the readers' dropping).
    #[getter]
    fn connections(&self) -> usize {
        self.engine.connections()
    }
}

/// One run's FTP control connections read natively (see `collectors.protocols.ftp_native`): `native_tcp.LineReader`
/// per direction and `FtpAnalyzer.line` in one, each document as JSON bytes. `announce(orig_h, host, port, service,
/// ts)` (`ExpectedConnections.expect`, or None) hears of the data channels named.
#[pyclass(module = "collectors._rs")]
struct FtpEngine {
    engine: ftp::Engine,
}

#[pymethods]
impl FtpEngine {
    #[new]
    #[pyo3(signature = (announce = None, max_open = None))]
    fn new(py: Python<'_>, announce: Option<PyObject>, max_open: Option<usize>) -> PyResult<Self> {
        Ok(FtpEngine { engine: ftp::Engine::new(py, announce, max_open)? })
    }

    /// A control connection read from now on (`flow`'s fields spelled out; `conn_id` names it in the other calls).
    fn open(&mut self, conn_id: u64, orig_h: String, orig_p: u16, resp_h: String, resp_p: u16, stream: String) {
        self.engine.open(conn_id, document::Flow { orig_h, orig_p, resp_h, resp_p, stream });
    }

    /// One direction's bytes, or an int (a hole): the documents its lines completed, up to a client's AUTH.
    fn feed(
        &mut self,
        py: Python<'_>,
        conn_id: u64,
        from_client: bool,
        data: &Bound<'_, PyAny>,
        ts: f64,
    ) -> PyResult<Vec<PyObject>> {
        finite(ts)?;
        let chunk = ftp::chunk_of(data)?;
        let docs = self.engine.feed(py, conn_id, from_client, chunk, ts);
        py_docs_py(py, docs)
    }

    /// Whether the last feed stopped at the client's AUTH (the caller hands the connection back to tshark).
    fn switched(&self, conn_id: u64) -> bool {
        self.engine.switched(conn_id)
    }

    /// One direction ended: its partial line read, unless it is the client's AUTH.
    fn end(&mut self, py: Python<'_>, conn_id: u64, from_client: bool, ts: f64) -> PyResult<Vec<PyObject>> {
        finite(ts)?;
        let docs = self.engine.end(py, conn_id, from_client, ts);
        py_docs_py(py, docs)
    }

    /// Drop a connection's line readers (its session stays until finish).
    fn forget(&mut self, conn_id: u64) {
        self.engine.forget(conn_id);
    }

    /// `FtpAnalyzer.expire(now)`: nothing expires (commands wait until finish).
    fn expire(&mut self, py: Python<'_>, now: f64) -> PyResult<Vec<PyObject>> {
        let docs = self.engine.expire(now);
        py_docs_py(py, Ok(docs))
    }

    /// `FtpAnalyzer.finish()` without its warning: the caller reports `cut_values`.
    fn finish(&mut self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let docs = self.engine.finish();
        py_docs_py(py, docs)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(c) = &self.engine.announce {
            visit.call(c)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.engine.announce = None;
    }

    #[getter]
    fn cut_lines(&self) -> u64 {
        self.engine.cut_lines
    }
    #[getter]
    fn cut_values(&self) -> u64 {
        self.engine.cut_values
    }
    #[setter]
    fn set_cut_values(&mut self, value: u64) {
        self.engine.cut_values = value;
    }
    /// Sessions held (until finish).
    #[getter]
    fn sessions(&self) -> usize {
        self.engine.sessions_len()
    }
    /// Connections being read.
    #[getter]
    fn connections(&self) -> usize {
        self.engine.connections()
    }
    /// The longest partial line held (for tests of the line bound).
    #[getter]
    fn longest_line(&self) -> usize {
        self.engine.longest_line()
    }
}

/// `orjson.dumps(collectors.conn.conn_doc(f, observer, services))` of a `ConnRecord`, or None where this writer
/// does not model a value (the caller falls back to the dict).
#[pyfunction]
#[pyo3(signature = (f, observer = None, services = None))]
fn write_conn<'py>(
    py: Python<'py>,
    f: &Bound<'py, PyTuple>,
    observer: Option<&Bound<'py, PyAny>>,
    services: Option<&Bound<'py, PyAny>>,
) -> Option<Bound<'py, PyBytes>> {
    conn::write_conn(f, observer, services).map(|json| PyBytes::new_bound(py, &json))
}

/// `orjson.dumps(collectors.conn.Observations._doc(...))` of one passive observation, or None where this writer does
/// not model a value (a time outside 1970-9999, a string that is not UTF-8): the caller falls back to the dict.
#[pyfunction]
#[pyo3(signature = (kind, ts_ns, ip, mac = None, port = None, transport = None, service = None, vendor = None,
                    observer = None))]
#[allow(clippy::too_many_arguments)]
fn write_observation<'py>(
    py: Python<'py>,
    kind: &Bound<'py, PyString>,
    ts_ns: i64,
    ip: &Bound<'py, PyString>,
    mac: Option<&Bound<'py, PyString>>,
    port: Option<i64>,
    transport: Option<&Bound<'py, PyString>>,
    service: Option<&Bound<'py, PyString>>,
    vendor: Option<&Bound<'py, PyString>>,
    observer: Option<&Bound<'py, PyString>>,
) -> Option<Bound<'py, PyBytes>> {
    let o = conn::Observation {
        kind: kind.to_str().ok()?,
        ts_ns,
        ip: ip.to_str().ok()?,
        mac: utf8(mac)?,
        port,
        transport: utf8(transport)?,
        service: utf8(service)?,
        vendor: utf8(vendor)?,
        observer: utf8(observer)?,
    };
    conn::write_observation(&o).map(|json| PyBytes::new_bound(py, &json))
}

/// An optional string as UTF-8: Some(None) when absent, None when it is not valid UTF-8 (a lone surrogate).
fn utf8<'a>(s: Option<&'a Bound<'_, PyString>>) -> Option<Option<&'a str>> {
    match s {
        Some(s) => s.to_str().ok().map(Some),
        None => Some(None),
    }
}

fn py_docs_py(py: Python<'_>, docs: PyResult<Vec<Vec<u8>>>) -> PyResult<Vec<PyObject>> {
    Ok(docs?.iter().map(|d| PyBytes::new_bound(py, d).into_any().unbind()).collect())
}

#[pymodule]
fn _rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DnsEngine>()?;
    m.add_class::<HttpEngine>()?;
    m.add_class::<TlsEngine>()?;
    m.add_class::<S7commEngine>()?;
    m.add_class::<dnp3::Dnp3Engine>()?;
    m.add_class::<FtpEngine>()?;
    m.add_class::<tcp::TcpTable>()?;
    m.add_function(wrap_pyfunction!(write_document, m)?)?;
    m.add_function(wrap_pyfunction!(write_conn, m)?)?;
    m.add_function(wrap_pyfunction!(write_observation, m)?)?;
    Ok(())
}
