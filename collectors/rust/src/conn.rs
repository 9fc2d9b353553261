//! `collectors.conn.conn_doc(f, observer, services)` as the JSON bytes `orjson.dumps` writes of it, read straight
//! from the `ConnRecord` tuple. `None` where this writer does not model a value (an int outside 64 bits, a string
//! that is not UTF-8, an address that is neither 4 nor 16 bytes, a time before 1970 or after 9999): the caller
//! falls back to the dict.

use std::fmt::Write;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyLong, PyString, PyTuple};

use crate::document::{id_of, iso};
use crate::text::{json_str, ntop4, ntop6};

// ConnRecord's field positions (collectors/flows.py)
const PROTO: usize = 0;
const O_IP: usize = 1;
const O_PORT: usize = 2;
const R_IP: usize = 3;
const R_PORT: usize = 4;
const START: usize = 6;
const LAST: usize = 7;
const O_PKTS: usize = 8;
const O_BYTES: usize = 9;
const R_PKTS: usize = 10;
const R_BYTES: usize = 11;
const ORIG_BYTES: usize = 12;
const RESP_BYTES: usize = 13;
const STATE: usize = 14;
const HISTORY: usize = 15;
const MISSED: usize = 16;
const TUNNEL: usize = 17;
const O_MAC: usize = 18;
const R_MAC: usize = 19;
const COMMUNITY_ID: usize = 21;
const DEEP_CUT: usize = 23;
const FIELDS: usize = 24;

/// The first second `iso_ns` would write with a five-digit year (below it the layout has fixed offsets).
const LAST_SECOND: i64 = 253_402_300_800;

fn int(f: &Bound<'_, PyTuple>, at: usize) -> Option<i64> {
    f.get_item(at).ok()?.downcast_exact::<PyLong>().ok()?.extract::<i64>().ok()
}

/// A sum or difference as orjson writes it (within i64; beyond, the dict path decides).
fn fits(v: i128) -> Option<i64> {
    i64::try_from(v).ok()
}

fn text<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyString>> {
    obj.downcast_exact::<PyString>().ok().cloned()
}

/// `ip_str`: socket.inet_ntop of 4 or 16 bytes (glibc's text: compressed IPv6, IPv4-mapped and -compatible forms).
fn ip_text(obj: &Bound<'_, PyAny>) -> Option<String> {
    let b = obj.downcast_exact::<PyBytes>().ok()?.as_bytes();
    match b.len() {
        4 => Some(ntop4(b)),
        16 => Some(ntop6(&<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// `mac.hex(":")` when the MAC is present (non-empty bytes), None when absent; Err when it is something else.
fn mac_text(obj: &Bound<'_, PyAny>) -> Result<Option<String>, ()> {
    if obj.is_none() {
        return Ok(None);
    }
    let b = obj.downcast_exact::<PyBytes>().map_err(|_| ())?.as_bytes();
    if b.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(b.len() * 3);
    for (i, byte) in b.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{:02x}", byte);
    }
    Ok(Some(out))
}

/// `iso_ns(ns)`: the second's text and the microseconds, truncated (not rounded).
fn iso_ns(ns: i64) -> Option<String> {
    let (sec, rem) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    if !(0..LAST_SECOND).contains(&sec) {
        return None;
    }
    let mut out = iso(sec as f64).ok()?; // "...SS.000000Z": the second is exact in an f64
    out.truncate(out.len() - 7);
    let _ = write!(out, "{:06}Z", rem / 1000);
    Some(out)
}

/// The opening the connection and observation documents share, up to the event's dataset and its comma:
/// `{"_id":"<id of the parts>","@timestamp":"<time>","event":{"dataset":"<dataset>",` (conn.py's `_CONN_*` offsets
/// read it).
fn head(capacity: usize, id_parts: &str, timestamp: &str, dataset: &str) -> String {
    let mut out = String::with_capacity(capacity);
    let _ = write!(out, "{{\"_id\":\"{}\",\"@timestamp\":\"{}\",\"event\":{{\"dataset\":\"{}\",", id_of(id_parts.as_bytes()),
                   timestamp, dataset);
    out
}

fn key_int(out: &mut String, key: &str, v: i64) {
    let _ = write!(out, "\"{}\":{}", key, v);
}

/// The document's bytes, or None (fall back to `conn_doc`).
pub fn write_conn(
    f: &Bound<'_, PyTuple>,
    observer: Option<&Bound<'_, PyAny>>,
    services: Option<&Bound<'_, PyAny>>,
) -> Option<Vec<u8>> {
    if f.len() != FIELDS {
        return None;
    }
    let item = |at: usize| f.get_item(at).ok();
    let proto = int(f, PROTO)?;
    let (o_port, r_port) = (int(f, O_PORT)?, int(f, R_PORT)?);
    let (start, last) = (int(f, START)?, int(f, LAST)?);
    let (o_pkts, o_bytes, r_pkts, r_bytes) = (int(f, O_PKTS)?, int(f, O_BYTES)?, int(f, R_PKTS)?, int(f, R_BYTES)?);
    let (orig_bytes, resp_bytes, missed) = (int(f, ORIG_BYTES)?, int(f, RESP_BYTES)?, int(f, MISSED)?);
    let deep_cut = int(f, DEEP_CUT)?;
    let duration = fits(i128::from(last) - i128::from(start))?;
    let bytes = fits(i128::from(o_bytes) + i128::from(r_bytes))?;
    let packets = fits(i128::from(o_pkts) + i128::from(r_pkts))?;
    let o_ip = item(O_IP)?;
    let v4 = o_ip.downcast_exact::<PyBytes>().ok()?.as_bytes().len() == 4;
    let src = ip_text(&o_ip)?;
    let dst = ip_text(&item(R_IP)?)?;
    let (state, history, tunnel, cid) =
        (text(&item(STATE)?)?, text(&item(HISTORY)?)?, text(&item(TUNNEL)?)?, text(&item(COMMUNITY_ID)?)?);
    let (state, history, tunnel, cid) =
        (state.to_str().ok()?, history.to_str().ok()?, tunnel.to_str().ok()?, cid.to_str().ok()?);
    let o_mac = mac_text(&item(O_MAC)?).ok()?;
    let r_mac = mac_text(&item(R_MAC)?).ok()?;
    let observer = match observer {
        Some(o) if o.is_truthy().ok()? => Some(text(o)?),
        _ => None,
    };
    let observer = match &observer {
        Some(o) => Some(o.to_str().ok()?),
        None => None,
    };
    let services: Option<Bound<'_, PyList>> = match services {
        Some(s) if s.is_truthy().ok()? => Some(s.downcast_exact::<PyList>().ok()?.clone()),
        _ => None,
    };
    let start_text = iso_ns(start)?;
    let end_text = iso_ns(last)?;

    // _id: doc_id("conn", cid, f.start, src, f.o_port, [observer])
    let mut id = String::with_capacity(128);
    let _ = write!(id, "conn\x1f{}\x1f{}\x1f{}\x1f{}\x1f", cid, start, src, o_port);
    if let Some(o) = observer {
        id.push_str(o);
        id.push('\x1f');
    }
    let mut out = head(768, &id, &start_text, "secops.conn");
    out.push_str("\"kind\":\"event\",\"category\":[\"network\"],\"type\":[\"connection\"],\"start\":\"");
    out.push_str(&start_text);
    out.push_str("\",\"end\":\"");
    out.push_str(&end_text);
    out.push_str("\",");
    key_int(&mut out, "duration", duration);
    for (name, ip, port, b, p, mac) in
        [("source", &src, o_port, o_bytes, o_pkts, &o_mac), ("destination", &dst, r_port, r_bytes, r_pkts, &r_mac)]
    {
        let _ = write!(out, "}},\"{}\":{{\"ip\":\"{}\",", name, ip); // an address's text needs no escape
        key_int(&mut out, "port", port);
        out.push(',');
        key_int(&mut out, "bytes", b);
        out.push(',');
        key_int(&mut out, "packets", p);
        if let Some(mac) = mac {
            let _ = write!(out, ",\"mac\":\"{}\"", mac);
        }
    }
    out.push_str("},\"network\":{\"transport\":\"");
    out.push_str(match proto {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "ipv6-icmp",
        _ => "unknown_transport",
    });
    let _ = write!(out, "\",\"iana_number\":\"{}\",\"community_id\":", proto);
    json_str(&mut out, cid);
    out.push(',');
    key_int(&mut out, "bytes", bytes);
    out.push(',');
    key_int(&mut out, "packets", packets);
    out.push_str(if v4 { ",\"type\":\"ipv4\"" } else { ",\"type\":\"ipv6\"" });
    if let Some(list) = &services {
        out.push_str(",\"protocol\":[");
        for (i, s) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let s = text(&s)?;
            json_str(&mut out, s.to_str().ok()?);
        }
        out.push(']');
    }
    out.push_str("},\"secops\":{\"conn\":{\"state\":");
    json_str(&mut out, state);
    out.push_str(",\"history\":");
    json_str(&mut out, history);
    out.push(',');
    key_int(&mut out, "orig_bytes", orig_bytes);
    out.push(',');
    key_int(&mut out, "resp_bytes", resp_bytes);
    out.push(',');
    key_int(&mut out, "missed_bytes", missed);
    out.push(',');
    key_int(&mut out, "ip_proto", proto);
    if !tunnel.is_empty() {
        out.push_str(",\"tunnel\":");
        json_str(&mut out, tunnel);
    }
    if deep_cut != 0 {
        out.push(',');
        key_int(&mut out, "deep_cut_bytes", deep_cut);
    }
    out.push_str("}}");
    if let Some(o) = observer {
        out.push_str(",\"observer\":{\"name\":");
        json_str(&mut out, o);
        out.push('}');
    }
    out.push('}');
    Some(out.into_bytes())
}

/// What one passive observation says (`conn.Observations._doc`'s arguments, strings already Python's).
pub struct Observation<'a> {
    pub kind: &'a str,
    pub ts_ns: i64,
    pub ip: &'a str,
    pub mac: Option<&'a str>,
    pub port: Option<i64>,
    pub transport: Option<&'a str>,
    pub service: Option<&'a str>,
    pub vendor: Option<&'a str>,
    pub observer: Option<&'a str>,
}

/// `orjson.dumps(Observations._doc(...))`: an "address" observation is identified by its address and MAC (its
/// vendor the only extra), a "service" one by address, port and transport (its service, if named, the extra).
/// None where the time is outside 1970-9999 or the kind is neither (the caller falls back to the dict).
pub fn write_observation(o: &Observation<'_>) -> Option<Vec<u8>> {
    let ts = iso_ns(o.ts_ns)?;
    let day = &ts[..10];
    let observer = o.observer.unwrap_or("");
    let mut id = String::with_capacity(128);
    let mut extra = String::with_capacity(64);
    match (o.kind, o.port, o.transport) {
        ("address", _, _) => {
            let _ = write!(id, "observation\x1faddress\x1f{}\x1f{}\x1f{}\x1f{}\x1f", o.ip, o.mac.unwrap_or(""), day,
                           observer);
            if let Some(vendor) = o.vendor.filter(|v| !v.is_empty()) {
                extra.push_str(",\"vendor\":");
                json_str(&mut extra, vendor);
            }
        }
        ("service", Some(port), Some(transport)) => {
            let _ = write!(id, "observation\x1fservice\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f", o.ip, port, transport, day,
                           observer);
            let _ = write!(extra, ",\"port\":{},\"transport\":", port);
            json_str(&mut extra, transport);
            if let Some(service) = o.service {
                extra.push_str(",\"service\":");
                json_str(&mut extra, service);
            }
        }
        _ => return None,
    }
    let mut out = head(384, &id, &ts, "secops.observation");
    out.push_str("\"kind\":\"event\",\"category\":[\"host\"],\"type\":[\"info\"]},\"host\":{\"ip\":");
    json_str(&mut out, o.ip);
    if let Some(mac) = o.mac.filter(|m| !m.is_empty()) {
        out.push_str(",\"mac\":");
        json_str(&mut out, mac);
    }
    out.push_str("},\"secops\":{\"observation\":{\"kind\":");
    json_str(&mut out, o.kind);
    out.push_str(",\"source\":\"passive\"");
    out.push_str(&extra);
    out.push_str("}}");
    if let Some(name) = o.observer.filter(|n| !n.is_empty()) {
        out.push_str(",\"observer\":{\"name\":");
        json_str(&mut out, name);
        out.push('}');
    }
    out.push('}');
    Some(out.into_bytes())
}
