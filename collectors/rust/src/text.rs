//! Text as the Python reference spells it: tshark's name and string text, lower-casing, addresses
//! (glibc's inet_ntop), Python's float repr, and JSON strings as orjson writes them.

use pyo3::prelude::*;
use pyo3::types::PyString;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;

/// Continuation bytes a UTF-8 lead byte announces (tshark's reading); -1: no lead byte.
fn followers(byte: u8) -> i32 {
    match byte {
        0x00..=0x7F => 0,
        0x80..=0xBF => -1,
        0xC0..=0xDF => 1,
        0xE0..=0xEF => 2,
        0xF0..=0xF7 => 3,
        0xF8..=0xFB => 4,
        0xFC..=0xFD => 5,
        _ => -1,
    }
}

fn push_control(out: &mut String, byte: u8) {
    match byte {
        7 => out.push_str("\\a"),
        8 => out.push_str("\\b"),
        9 => out.push_str("\\t"),
        10 => out.push_str("\\n"),
        11 => out.push_str("\\v"),
        12 => out.push_str("\\f"),
        13 => out.push_str("\\r"),
        0..=0x1F | 0x7F => {
            let _ = write!(out, "\\{:03o}", byte);
        }
        _ => out.push(byte as char),
    }
}

/// `dns_wire.display_text`: UTF-8 kept, control characters escaped, each broken sequence one U+FFFD.
pub fn display_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let end = raw.len();
    let mut pos = 0;
    while pos < end {
        let byte = raw[pos];
        if byte < 0x80 {
            push_control(&mut out, byte);
            pos += 1;
            continue;
        }
        let mut follow = followers(byte);
        let start = pos;
        pos += 1;
        if follow < 0 {
            out.push('\u{FFFD}');
            continue;
        }
        while follow > 0 && pos < end && raw[pos] & 0xC0 == 0x80 {
            pos += 1;
            follow -= 1;
        }
        if follow > 0 {
            out.push('\u{FFFD}');
            continue;
        }
        match std::str::from_utf8(&raw[start..pos]) {
            Ok(text) => out.push_str(text),
            Err(_) => out.push('\u{FFFD}'),
        }
    }
    out
}

/// `dns_wire.string_text`: cut at the first NUL, bytes above 0x7F as U+FFFD.
pub fn string_text(raw: &[u8]) -> String {
    let cut = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    raw[..cut].iter().map(|&b| if b > 0x7F { '\u{FFFD}' } else { b as char }).collect()
}

thread_local! {
    /// Python's lower-case text of each non-ASCII character met so far (emptied when it grows past 65536).
    static LOWER: RefCell<HashMap<char, String>> = RefCell::new(HashMap::new());
}

fn lower_char(c: char) -> String {
    if let Some(hit) = LOWER.with(|m| m.borrow().get(&c).cloned()) {
        return hit;
    }
    let text = c.to_string();
    let low = Python::with_gil(|py| {
        PyString::new_bound(py, &text).call_method0("lower").and_then(|v| v.extract::<String>())
    })
    .unwrap_or_else(|_| c.to_lowercase().collect());
    LOWER.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= 65_536 {
            m.clear();
        }
        m.insert(c, low.clone());
    });
    low
}

/// `str.lower()` as the compiled reference does it (mypyc's `CPyStr_Lower`: each character's full lower-case
/// mapping from Python 3.11's Unicode tables, no final-sigma context rule). Non-ASCII characters are looked up
/// in Python once each, so the tables are Python's whatever Unicode version Rust's are.
pub fn lower(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if c == '\u{FFFD}' {
            out.push(c);
        } else {
            out.push_str(&lower_char(c));
        }
    }
    out
}

/// `dns._name`: lower-case, the root (and nothing) as "".
pub fn zeek_name(text: &str) -> String {
    if text.is_empty() || text == "<Root>" {
        String::new()
    } else {
        lower(text)
    }
}

pub fn ntop4(b: &[u8]) -> String {
    match b {
        [a, b2, c, d, ..] => format!("{}.{}.{}.{}", a, b2, c, d),
        _ => String::new(),
    }
}

/// glibc's inet_ntop6 (what Python's socket.inet_ntop gives on Linux).
pub fn ntop6(src: &[u8; 16]) -> String {
    let mut words = [0u32; 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = (src[2 * i] as u32) << 8 | src[2 * i + 1] as u32;
    }
    let (mut best_base, mut best_len): (i32, i32) = (-1, 0);
    let (mut cur_base, mut cur_len): (i32, i32) = (-1, 0);
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            if cur_base == -1 {
                cur_base = i as i32;
                cur_len = 1;
            } else {
                cur_len += 1;
            }
        } else if cur_base != -1 {
            if best_base == -1 || cur_len > best_len {
                best_base = cur_base;
                best_len = cur_len;
            }
            cur_base = -1;
        }
    }
    if cur_base != -1 && (best_base == -1 || cur_len > best_len) {
        best_base = cur_base;
        best_len = cur_len;
    }
    if best_base != -1 && best_len < 2 {
        best_base = -1;
    }
    let mut out = String::with_capacity(40);
    for i in 0..8i32 {
        if best_base != -1 && i >= best_base && i < best_base + best_len {
            if i == best_base {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xFFFF)) {
            out.push_str(&ntop4(&src[12..16]));
            break;
        }
        let _ = write!(out, "{:x}", words[i as usize]);
    }
    if best_base != -1 && best_base + best_len == 8 {
        out.push(':');
    }
    out
}

/// Python's `repr(float)` (shortest round-trip digits; exponent form below 1e-4 and from 1e16).
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let mut out = String::new();
    push_shortest(&mut out, x, -4, 2);
    out
}

/// A float as orjson 3.13 writes it: the shortest round-trip digits (as `repr`), positional from 1e-5 up to 1e16,
/// else an exponent without padding (`1e-6`, `1e+16`); NaN and infinities as null. `secops.truncated` hashes this
/// text for a cut list or object holding floats.
pub fn orjson_float(out: &mut String, x: f64) {
    if !x.is_finite() {
        out.push_str("null");
    } else if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
    } else {
        push_shortest(out, x, -5, 1);
    }
}

/// A finite non-zero float's shortest digits, positional for decimal exponents from `lowest` to 15, else with an
/// exponent of at least `exp_width` digits.
fn push_shortest(out: &mut String, x: f64, lowest: i32, exp_width: usize) {
    let (digits, exp) = shortest_digits(x.abs());
    if x < 0.0 {
        out.push('-');
    }
    if !(lowest..16).contains(&exp) {
        let (first, rest) = digits.split_at(digits.len().min(1));
        out.push_str(if first.is_empty() { "0" } else { first });
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e{}{:0width$}", if exp < 0 { '-' } else { '+' }, exp.abs(), width = exp_width);
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at(point);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    }
}

/// The shortest digits that read back as `x` (finite, above 0) and the decimal exponent of the first one. Ryu,
/// like Python's dtoa, takes the candidate nearest the exact value and breaks a tie to the even digit; the
/// standard library's formatting breaks it upwards (1700017589.61328125 is "...6132812" in Python, "...6132813"
/// there), and the digits go into document ids.
fn shortest_digits(x: f64) -> (String, i32) {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(x); // "1700017589.6132812", "1e16", "1.5e-7", "0.0001"
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int}{frac}");
    let lead = all.bytes().take_while(|b| *b == b'0').count();
    let digits = all[lead..].trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    (digits.to_string(), exp + int.len() as i32 - 1 - lead as i32)
}

/// Python's `round(x, ndigits)` (correctly rounded, ties to even on the exact value).
pub fn round_to(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{:.*}", ndigits, x).parse::<f64>().unwrap_or(x)
}

/// A JSON array or object's members between `open` and `close`, comma-separated, each written by `write`.
pub fn json_seq<T, E>(
    out: &mut String,
    open: char,
    close: char,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T) -> Result<(), E>,
) -> Result<(), E> {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item)?;
    }
    out.push(close);
    Ok(())
}

/// `json_seq` for a JSON array whose items cannot fail to write.
pub fn json_list<T>(out: &mut String, items: impl IntoIterator<Item = T>, mut write: impl FnMut(&mut String, T)) {
    let _ = json_seq(out, '[', ']', items, |out, item| {
        write(out, item);
        Ok::<(), ()>(())
    });
}

/// A JSON string as orjson writes it (the text `secops.truncated` measures and hashes): runs that need no
/// escape copied whole.
pub fn json_str(out: &mut String, text: &str) {
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.reserve(text.len() + 2);
        out.push('"');
        out.push_str(text);
        out.push('"');
        return;
    }
    out.push('"');
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0C => "\\f",
            b'\r' => "\\r",
            0..=0x1F => "",
            _ => continue,
        };
        out.push_str(text.get(run..i).unwrap_or(""));
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(text.get(run..).unwrap_or(""));
    out.push('"');
}

/// A float as JSON (any text that reads back as the same float; orjson writes non-finite ones as null).
pub fn json_float(out: &mut String, x: f64) {
    if x.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(x));
    } else {
        out.push_str("null");
    }
}
