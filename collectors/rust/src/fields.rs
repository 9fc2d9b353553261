//! `documents.make_doc` for any protocol module, written straight to JSON from the Python arguments (the nested
//! dicts are never built): endpoints, Community ID, `@timestamp`, each field `put` at its dotted place in
//! first-insertion order, values cut at MAX_KEYWORD_CHARS code points with their `secops.truncated` entries, `_id`.
//!
//! The JSON is what `orjson.dumps` writes of make_doc's dict. Where orjson would refuse that dict (lone surrogates,
//! integers past 64 bits, non-str keys, nesting past its limit, other types), TypeError: the caller falls back to
//! make_doc. So does a document whose building would mutate a dict that it also holds elsewhere (`put` under a
//! field whose value is a dict shared with another field), which this writer does not model.

use crate::document::{self, chars, clip_at, long, sha256_hex, Trunc, MAX_KEYWORD_CHARS};
use crate::text::{float_repr, json_seq, json_str, orjson_float};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyLong, PySlice, PyString, PyTuple};
use std::borrow::Cow;
use std::fmt::Write;

/// orjson's "Recursion limit reached": at most this many nested lists and objects, the document's own included.
const MAX_DEPTH: usize = 254;
const TRUNCATED: &str = "secops.truncated";

fn type_error(msg: impl Into<String>) -> PyErr {
    PyTypeError::new_err(msg.into())
}

/// A string's UTF-8 text; lone surrogates (which orjson refuses) as TypeError.
fn utf8<'a>(s: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    s.to_str().map_err(|_| type_error("str is not valid UTF-8: surrogates not allowed"))
}

/// Python's `text.encode("utf-8", "surrogatepass")` (what `doc_id` and `truncation` hash).
fn surrogatepass(s: &Bound<'_, PyString>, out: &mut Vec<u8>) -> PyResult<()> {
    match s.to_str() {
        Ok(t) => out.extend_from_slice(t.as_bytes()),
        Err(_) => {
            let bytes = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
            out.extend_from_slice(&bytes.extract::<Vec<u8>>()?);
        }
    }
    Ok(())
}

/// A member of the document being built. `Py` is a caller's value as make_doc would hold it, `clip` when make_doc
/// holds `clip(value)` instead (every string inside lists and objects cut; tuples kept as they are).
enum Node<'a, 'py> {
    Obj(Vec<(Cow<'a, str>, Node<'a, 'py>)>),
    Py(Bound<'py, PyAny>, bool),
    Text(Cow<'a, str>),
    Raw(Cow<'a, str>),
    List(Vec<Node<'a, 'py>>),
    Trunc(Trunc<'a>),
}

type Members<'a, 'py> = Vec<(Cow<'a, str>, Node<'a, 'py>)>;

fn depth_error() -> PyErr {
    type_error("Recursion limit reached")
}

fn write_int(out: &mut String, i: &Bound<'_, PyLong>) -> PyResult<()> {
    if let Ok(v) = i.extract::<i64>() {
        let _ = write!(out, "{}", v);
    } else if let Ok(v) = i.extract::<u64>() {
        let _ = write!(out, "{}", v);
    } else {
        return Err(type_error("Integer exceeds 64-bit range"));
    }
    Ok(())
}

/// `orjson.dumps` of a caller's value (of `clip(value)` when `clip`), `depth` being its nesting if a container.
fn write_py(out: &mut String, obj: &Bound<'_, PyAny>, clip: bool, depth: usize) -> PyResult<()> {
    if let Ok(s) = obj.downcast::<PyString>() {
        let text = utf8(s)?;
        json_str(out, if clip { clip_at(text) } else { text });
    } else if let Ok(b) = obj.downcast_exact::<PyBool>() {
        out.push_str(if b.is_true() { "true" } else { "false" });
    } else if let Ok(i) = obj.downcast::<PyLong>() {
        write_int(out, i)?;
    } else if let Ok(list) = obj.downcast::<PyList>() {
        if depth > MAX_DEPTH {
            return Err(depth_error());
        }
        json_seq(out, '[', ']', list.iter(), |out, item| write_py(out, &item, clip, depth + 1))?;
    } else if let Ok(dict) = obj.downcast::<PyDict>() {
        if depth > MAX_DEPTH {
            return Err(depth_error());
        }
        json_seq(out, '{', '}', dict.iter(), |out, (key, value)| {
            let key = key.downcast_exact::<PyString>().map_err(|_| type_error("Dict key must be str"))?;
            json_str(out, utf8(key)?);
            out.push(':');
            write_py(out, &value, clip, depth + 1)
        })?;
    } else if let Ok(f) = obj.downcast_exact::<PyFloat>() {
        orjson_float(out, f.value());
    } else if obj.is_none() {
        out.push_str("null");
    } else if let Ok(tuple) = obj.downcast_exact::<PyTuple>() {
        if depth > MAX_DEPTH {
            return Err(depth_error());
        }
        // clip leaves tuples as they are
        json_seq(out, '[', ']', tuple.iter(), |out, item| write_py(out, &item, false, depth + 1))?;
    } else {
        let name = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        return Err(type_error(format!("Type is not JSON serializable: {}", name)));
    }
    Ok(())
}

fn write_node(out: &mut String, node: &Node<'_, '_>, depth: usize) -> PyResult<()> {
    match node {
        Node::Obj(members) => {
            if depth > MAX_DEPTH {
                return Err(depth_error());
            }
            json_seq(out, '{', '}', members, |out, (key, child)| {
                json_str(out, key);
                out.push(':');
                write_node(out, child, depth + 1)
            })?;
        }
        Node::Py(obj, clip) => write_py(out, obj, *clip, depth)?,
        Node::Text(text) => json_str(out, text),
        Node::Raw(json) => out.push_str(json),
        Node::List(items) => {
            if depth > MAX_DEPTH {
                return Err(depth_error());
            }
            json_seq(out, '[', ']', items, |out, item| write_node(out, item, depth + 1))?;
        }
        Node::Trunc(t) => {
            if depth > MAX_DEPTH {
                return Err(depth_error());
            }
            t.write(out);
        }
    }
    Ok(())
}

/// `fits`: no string inside lists and objects (tuples not looked into) longer than MAX_KEYWORD_CHARS.
fn fits(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<bool> {
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(match s.to_str() {
            Ok(text) => !long(text),
            Err(_) => s.len()? <= MAX_KEYWORD_CHARS,
        });
    }
    if depth > MAX_DEPTH {
        return Err(depth_error());
    }
    if let Ok(list) = obj.downcast::<PyList>() {
        for item in list.iter() {
            if !fits(&item, depth + 1)? {
                return Ok(false);
            }
        }
    } else if let Ok(dict) = obj.downcast::<PyDict>() {
        for (_, value) in dict.iter() {
            if !fits(&value, depth + 1)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// `put` a dotted name: parents created as objects (a caller's dict met on the way is opened, and noted in
/// `opened`), the leaf replaced where it stands or appended.
fn put<'a, 'py>(
    tree: &mut Members<'a, 'py>,
    dotted: &'a str,
    value: Node<'a, 'py>,
    opened: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let (parents, leaf) = match dotted.rsplit_once('.') {
        Some((parents, leaf)) => (Some(parents), leaf),
        None => (None, dotted),
    };
    if dotted.bytes().filter(|&b| b == b'.').count() >= MAX_DEPTH {
        // as many objects as orjson nests at most: a deeper tree would not be written (and is not built)
        return Err(depth_error());
    }
    let mut cur = tree;
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        let idx = match cur.iter().position(|(k, _)| k == part) {
            Some(i) => i,
            None => {
                cur.push((Cow::Borrowed(part), Node::Obj(Vec::new())));
                cur.len() - 1
            }
        };
        let slot = &mut cur[idx].1;
        if let Node::Py(obj, clip) = slot {
            let members = open_dict(obj, *clip)?;
            opened.push(obj.clone());
            *slot = Node::Obj(members);
        }
        cur = match slot {
            Node::Obj(members) => members,
            _ => return Err(type_error(format!("put {:?}: {:?} holds no object", dotted, part))),
        };
    }
    match cur.iter_mut().find(|(k, _)| k == leaf) {
        Some(slot) => slot.1 = value,
        None => cur.push((Cow::Borrowed(leaf), value)),
    }
    Ok(())
}

/// A caller's dict as members, to `put` into (make_doc sets the key in that dict itself).
fn open_dict<'a, 'py>(obj: &Bound<'py, PyAny>, clip: bool) -> PyResult<Members<'a, 'py>> {
    let dict = obj.downcast::<PyDict>().map_err(|_| type_error("put under a value that is not a dict"))?;
    let mut members = Vec::with_capacity(dict.len() + 1);
    for (key, value) in dict.iter() {
        let key = key.downcast_exact::<PyString>().map_err(|_| type_error("Dict key must be str"))?;
        members.push((Cow::Owned(utf8(key)?.to_owned()), Node::Py(value, clip)));
    }
    Ok(members)
}

/// Whether any of `opened` is still held somewhere in `obj` (make_doc would show the keys put into it there too).
fn holds(obj: &Bound<'_, PyAny>, opened: &[Bound<'_, PyAny>], depth: usize) -> PyResult<bool> {
    if opened.iter().any(|o| o.is(obj)) {
        return Ok(true);
    }
    if depth > MAX_DEPTH {
        return Err(depth_error());
    }
    if let Ok(list) = obj.downcast::<PyList>() {
        for item in list.iter() {
            if holds(&item, opened, depth + 1)? {
                return Ok(true);
            }
        }
    } else if let Ok(tuple) = obj.downcast::<PyTuple>() {
        for item in tuple.iter() {
            if holds(&item, opened, depth + 1)? {
                return Ok(true);
            }
        }
    } else if let Ok(dict) = obj.downcast::<PyDict>() {
        for (_, value) in dict.iter() {
            if holds(&value, opened, depth + 1)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn node_holds(node: &Node<'_, '_>, opened: &[Bound<'_, PyAny>]) -> PyResult<bool> {
    match node {
        Node::Obj(members) => {
            for (_, child) in members {
                if node_holds(child, opened)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Node::List(items) => {
            for item in items {
                if node_holds(item, opened)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Node::Py(obj, _) => holds(obj, opened, 1),
        _ => Ok(false),
    }
}

/// `[*(old or ())]`: the entries of a caller's `secops.truncated` (as make_doc holds it: clipped if it was cut)
/// that the new entries follow.
fn spread<'a, 'py>(old: &Bound<'py, PyAny>, cut: bool) -> PyResult<Vec<Node<'a, 'py>>> {
    if !old.is_truthy()? {
        return Ok(Vec::new());
    }
    if let Ok(s) = old.downcast::<PyString>() {
        let text = utf8(s)?;
        let text = if cut { clip_at(text) } else { text };
        return Ok(text.chars().map(|c| Node::Text(Cow::Owned(c.to_string()))).collect());
    }
    if let Ok(list) = old.downcast::<PyList>() {
        return Ok(list.iter().map(|item| Node::Py(item, cut)).collect());
    }
    if let Ok(tuple) = old.downcast_exact::<PyTuple>() {
        return Ok(tuple.iter().map(|item| Node::Py(item, false)).collect());
    }
    if let Ok(dict) = old.downcast::<PyDict>() {
        return Ok(dict.iter().map(|(key, _)| Node::Py(key, false)).collect());
    }
    Err(type_error("secops.truncated holds a value that is not a list"))
}

/// `len()` of a caller's value as make_doc holds it.
fn py_len(obj: &Bound<'_, PyAny>, clip: bool) -> PyResult<usize> {
    if let Ok(s) = obj.downcast::<PyString>() {
        let n = s.len()?;
        return Ok(if clip { n.min(MAX_KEYWORD_CHARS) } else { n });
    }
    if obj.downcast::<PyList>().is_ok() || obj.downcast_exact::<PyTuple>().is_ok() || obj.downcast::<PyDict>().is_ok()
    {
        return obj.len();
    }
    Err(type_error("secops.truncated has no length"))
}

fn member<'n, 'a, 'py>(members: &'n Members<'a, 'py>, key: &str) -> Option<&'n Node<'a, 'py>> {
    members.iter().find(|(k, _)| k == key).map(|(_, node)| node)
}

/// `len(doc.get("secops", {}).get("truncated", ()))` (TypeError where that expression raises).
fn cut_count(tree: &Members<'_, '_>) -> PyResult<usize> {
    let truncated = match member(tree, "secops") {
        None => return Ok(0),
        Some(Node::Obj(members)) => match member(members, "truncated") {
            None => return Ok(0),
            Some(node) => node,
        },
        Some(Node::Py(obj, clip)) => {
            let dict = obj.downcast::<PyDict>().map_err(|_| type_error("secops is not an object"))?;
            return match dict.get_item("truncated")? {
                None => Ok(0),
                Some(value) => py_len(&value, *clip),
            };
        }
        Some(_) => return Err(type_error("secops is not an object")),
    };
    match truncated {
        Node::Obj(members) => Ok(members.len()),
        Node::List(items) => Ok(items.len()),
        Node::Py(obj, clip) => py_len(obj, *clip),
        Node::Text(text) => Ok(chars(text)),
        Node::Trunc(_) => Ok(3),
        Node::Raw(_) => Err(type_error("secops.truncated has no length")),
    }
}

/// `f"{part}\x1f"` appended to the id text, as the compiled `secops.ecs.doc_id` writes it: `str(part)`.
fn id_part(part: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    if let Ok(s) = part.downcast_exact::<PyString>() {
        surrogatepass(s, out)?;
    } else if part.is_none() {
        out.extend_from_slice(b"None");
    } else if let Ok(b) = part.downcast_exact::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"True" } else { b"False" });
    } else if let Some(i) = part.downcast_exact::<PyLong>().ok().and_then(|i| i.extract::<i64>().ok()) {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Ok(f) = part.downcast_exact::<PyFloat>() {
        out.extend_from_slice(float_repr(f.value()).as_bytes());
    } else {
        // anything else as the compiled doc_id spells it: str(part) (mypyc writes f"{p}" so)
        surrogatepass(&part.str()?, out)?;
    }
    out.push(0x1f);
    Ok(())
}

fn simple_part(part: &Bound<'_, PyAny>) -> bool {
    part.is_none()
        || part.downcast_exact::<PyString>().is_ok()
        || part.downcast_exact::<PyBool>().is_ok()
        || part.downcast_exact::<PyLong>().is_ok()
        || part.downcast_exact::<PyFloat>().is_ok()
}

fn port(obj: &Bound<'_, PyAny>) -> Option<u16> {
    obj.downcast_exact::<PyLong>().ok().and_then(|p| p.extract::<u16>().ok())
}

/// The flow's Community ID; where Rust cannot compute it (another transport, addresses it does not read),
/// Python's `documents.community_id` gives it or raises what make_doc raises.
fn community_id(
    py: Python<'_>,
    transport: &Bound<'_, PyAny>,
    addrs: (&Bound<'_, PyAny>, &Bound<'_, PyAny>),
    ports: (&Bound<'_, PyAny>, &Bound<'_, PyAny>),
) -> PyResult<String> {
    let proto = match transport.downcast_exact::<PyString>().ok().and_then(|t| t.to_str().ok()) {
        Some("tcp") => Some(6u8),
        Some("udp") => Some(17u8),
        _ => None,
    };
    let saddr = addrs.0.downcast_exact::<PyString>().ok().and_then(|s| s.to_str().ok());
    let daddr = addrs.1.downcast_exact::<PyString>().ok().and_then(|s| s.to_str().ok());
    if let (Some(proto), Some(saddr), Some(daddr), Some(sport), Some(dport)) =
        (proto, saddr, daddr, port(ports.0), port(ports.1))
    {
        if let Ok(cid) = document::community_id_proto(proto, saddr, daddr, sport, dport) {
            return Ok(cid);
        }
    }
    let reference = py.import_bound("collectors.protocols.documents")?.getattr("community_id")?;
    reference.call1((transport, addrs.0, addrs.1, ports.0, ports.1))?.extract::<String>()
}

/// `secops.ecs.iso(ts)`; outside Rust's range, Python's (its value, or its exception: ValueError, OverflowError,
/// OSError as datetime raises them).
fn iso(py: Python<'_>, ts: f64) -> PyResult<String> {
    match document::iso(ts) {
        Ok(text) => Ok(text),
        Err(_) => py.import_bound("secops.ecs")?.getattr("iso")?.call1((ts,))?.extract::<String>(),
    }
}

fn text_of<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a str> {
    let s = obj.downcast::<PyString>().map_err(|_| type_error(format!("{} must be str", what)))?;
    utf8(s)
}

/// The arguments of `make_doc` with the flow's endpoints spelled out.
pub struct Args<'b, 'py> {
    pub dataset: &'b Bound<'py, PyAny>,
    pub transport: &'b Bound<'py, PyAny>,
    pub orig_h: &'b Bound<'py, PyAny>,
    pub orig_p: &'b Bound<'py, PyAny>,
    pub resp_h: &'b Bound<'py, PyAny>,
    pub resp_p: &'b Bound<'py, PyAny>,
    pub ts: f64,
    pub identity: &'b Bound<'py, PyAny>,
    pub fields: &'b Bound<'py, PyAny>,
    pub protocol: &'b Bound<'py, PyAny>,
    pub keep_empty: &'b Bound<'py, PyAny>,
}

/// `make_doc(...)` as orjson's JSON bytes, and `len(doc["secops"]["truncated"])` of that document (0 without).
/// `fields` is read, never changed.
pub fn write_document(py: Python<'_>, a: &Args<'_, '_>) -> PyResult<(Vec<u8>, usize)> {
    let dataset = text_of(a.dataset, "dataset")?;
    let transport = text_of(a.transport, "transport")?;
    let orig_h = text_of(a.orig_h, "orig_h")?;
    let resp_h = text_of(a.resp_h, "resp_h")?;
    let (Some(orig_p), Some(resp_p)) = (port(a.orig_p), port(a.resp_p)) else {
        return Err(type_error("ports must be int from 0 to 65535"));
    };
    let fields = a.fields.downcast::<PyDict>().map_err(|_| type_error("fields must be a dict"))?;
    let cid = community_id(py, a.transport, (a.orig_h, a.resp_h), (a.orig_p, a.resp_p))?;
    let timestamp = iso(py, a.ts)?;

    let mut tree: Members = vec![
        (Cow::Borrowed("@timestamp"), Node::Text(Cow::Owned(timestamp))),
        (
            Cow::Borrowed("event"),
            Node::Obj(vec![
                (Cow::Borrowed("dataset"), Node::Text(Cow::Borrowed(dataset))),
                (Cow::Borrowed("kind"), Node::Raw(Cow::Borrowed("\"event\""))),
                (Cow::Borrowed("module"), Node::Raw(Cow::Borrowed("\"secops\""))),
                (Cow::Borrowed("category"), Node::Raw(Cow::Borrowed("[\"network\"]"))),
                (Cow::Borrowed("type"), Node::Raw(Cow::Borrowed("[\"protocol\"]"))),
            ]),
        ),
        (
            Cow::Borrowed("source"),
            Node::Obj(vec![
                (Cow::Borrowed("ip"), Node::Text(Cow::Borrowed(orig_h))),
                (Cow::Borrowed("port"), Node::Raw(Cow::Owned(orig_p.to_string()))),
            ]),
        ),
        (
            Cow::Borrowed("destination"),
            Node::Obj(vec![
                (Cow::Borrowed("ip"), Node::Text(Cow::Borrowed(resp_h))),
                (Cow::Borrowed("port"), Node::Raw(Cow::Owned(resp_p.to_string()))),
            ]),
        ),
        (
            Cow::Borrowed("network"),
            Node::Obj(vec![
                (Cow::Borrowed("transport"), Node::Text(Cow::Borrowed(transport))),
                (Cow::Borrowed("community_id"), Node::Text(Cow::Borrowed(cid.as_str()))),
                (Cow::Borrowed("protocol"), Node::Py(a.protocol.clone(), false)),
            ]),
        ),
    ];

    let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = fields.iter().collect();
    let mut truncated: Vec<Trunc> = Vec::new();
    let mut opened: Vec<Bound<'_, PyAny>> = Vec::new();
    let mut old: Option<(&Bound<'_, PyAny>, bool)> = None; // the caller's secops.truncated, and whether it was cut
    let mut pass = Vec::new();
    for (key, value) in &items {
        // skipped: None, [], "" unless named in keep_empty
        if value.is_none() {
            continue;
        }
        let string = value.downcast::<PyString>().ok();
        if let Some(s) = string {
            if s.to_str().map(str::is_empty).unwrap_or(false) && !a.keep_empty.contains(key)? {
                continue;
            }
        } else if let Ok(list) = value.downcast::<PyList>() {
            if list.is_empty() {
                continue;
            }
        }
        let dotted = text_of(key, "a field's name")?;
        let mut cut = false;
        let node = match string {
            Some(s) => match s.to_str() {
                Ok(text) if long(text) => {
                    truncated.push(Trunc { field: dotted, length: chars(text), sha256: sha256_hex(text.as_bytes()) });
                    cut = true;
                    Node::Text(Cow::Borrowed(clip_at(text)))
                }
                Ok(text) => Node::Text(Cow::Borrowed(text)),
                Err(_) => {
                    let length = s.len()?;
                    if length <= MAX_KEYWORD_CHARS {
                        return Err(type_error("str is not valid UTF-8: surrogates not allowed"));
                    }
                    pass.clear();
                    surrogatepass(s, &mut pass)?;
                    truncated.push(Trunc { field: dotted, length, sha256: sha256_hex(&pass) });
                    cut = true;
                    Node::Py(s.get_item(PySlice::new_bound(py, 0, MAX_KEYWORD_CHARS as isize, 1))?, false)
                }
            },
            None if (value.downcast::<PyList>().is_ok() || value.downcast::<PyDict>().is_ok()) && !fits(value, 1)? => {
                let mut text = String::new();
                write_py(&mut text, value, false, 1)?;
                truncated.push(Trunc { field: dotted, length: chars(&text), sha256: sha256_hex(text.as_bytes()) });
                cut = true;
                Node::Py(value.clone(), true)
            }
            None => Node::Py(value.clone(), false),
        };
        if dotted == TRUNCATED {
            old = Some((value, cut));
        }
        put(&mut tree, dotted, node, &mut opened)?;
    }
    if !truncated.is_empty() {
        let mut entries = match old {
            Some((value, cut)) => spread(value, cut)?,
            None => Vec::new(),
        };
        entries.extend(truncated.into_iter().map(Node::Trunc));
        put(&mut tree, TRUNCATED, Node::List(entries), &mut opened)?;
    }
    let count = cut_count(&tree)?;

    let mut id_text: Vec<u8> = Vec::with_capacity(160);
    surrogatepass(a.dataset.downcast::<PyString>()?, &mut id_text)?;
    id_text.push(0x1f);
    id_text.extend_from_slice(cid.as_bytes());
    id_text.push(0x1f);
    id_text.extend_from_slice(document::fixed6(a.ts).as_bytes());
    id_text.push(0x1f);
    let parts: Vec<Bound<'_, PyAny>> = match a.identity.downcast_exact::<PyTuple>() {
        Ok(tuple) => tuple.iter().collect(),
        Err(_) => a.identity.iter()?.collect::<PyResult<_>>()?,
    };
    if !opened.is_empty() {
        // make_doc put keys into a caller's dict: exact only if nothing else shows that dict
        let mut shared = parts.iter().any(|p| !simple_part(p));
        for (_, node) in &tree {
            shared = shared || node_holds(node, &opened)?;
        }
        if shared {
            return Err(type_error("a field's dict is put into and also held elsewhere"));
        }
    }
    for part in &parts {
        id_part(part, &mut id_text)?;
    }
    let id = document::id_of(&id_text);
    put(&mut tree, "_id", Node::Text(Cow::Owned(id)), &mut opened)?;

    let mut out = String::with_capacity(1024);
    write_node(&mut out, &Node::Obj(tree), 1)?;
    Ok((out.into_bytes(), count))
}
