//! Zeek's rendering of records (`dns.render`, `render_txt`, `_answers`, `update_entries`) and the name tables.

use crate::text::zeek_name;

pub const NSEC: u16 = 47;
pub const OPCODE_UPDATE: u8 = 5;
const CLASS_ANY: u16 = 255;
const CLASS_NONE: u16 = 254;

pub fn qtype_text(code: u16) -> Option<&'static str> {
    Some(match code {
        1 => "A", 2 => "NS", 3 => "MD", 4 => "MF", 5 => "CNAME", 6 => "SOA", 7 => "MB", 8 => "MG", 9 => "MR",
        10 => "NULL", 11 => "WKS", 12 => "PTR", 13 => "HINFO", 14 => "MINFO", 15 => "MX", 16 => "TXT", 17 => "RP",
        18 => "AFSDB", 19 => "X25", 20 => "ISDN", 21 => "RT", 22 => "NSAP", 23 => "NSAP-PTR", 24 => "SIG",
        25 => "KEY", 26 => "PX", 27 => "GPOS", 28 => "AAAA", 29 => "LOC", 30 => "NXT", 31 => "EID",
        32 => "NIMLOC", 33 => "SRV", 34 => "ATMA", 35 => "NAPTR", 36 => "KX", 37 => "CERT", 38 => "A6",
        39 => "DNAME", 40 => "SINK", 41 => "OPT", 42 => "APL", 43 => "DS", 44 => "SSHFP", 45 => "IPSECKEY",
        46 => "RRSIG", 47 => "NSEC", 48 => "DNSKEY", 49 => "DHCID", 50 => "NSEC3", 51 => "NSEC3PARAM",
        52 => "TLSA", 53 => "SMIMEA", 55 => "HIP", 59 => "CDS", 60 => "CDNSKEY", 61 => "OPENPGPKEY",
        62 => "CSYNC", 63 => "ZONEMD", 64 => "SVCB", 65 => "HTTPS", 99 => "SPF", 249 => "TKEY", 250 => "TSIG",
        251 => "IXFR", 252 => "AXFR", 253 => "MAILB", 254 => "MAILA", 255 => "*", 256 => "URI", 257 => "CAA",
        32768 => "TA", 32769 => "DLV",
        _ => return None,
    })
}

/// `QTYPES.get(code, str(code))`: an answer's type.
pub fn type_name(code: u16) -> String {
    qtype_text(code).map(str::to_string).unwrap_or_else(|| code.to_string())
}

/// `qtype_name`: a question's type.
pub fn qtype_name(code: u16) -> String {
    qtype_text(code).map(str::to_string).unwrap_or_else(|| format!("query-{}", code))
}

pub fn rcode_name(code: u8) -> String {
    let known = match code {
        0 => "NOERROR", 1 => "FORMERR", 2 => "SERVFAIL", 3 => "NXDOMAIN", 4 => "NOTIMP", 5 => "REFUSED",
        6 => "YXDOMAIN", 7 => "YXRRSET", 8 => "NXRRSET", 9 => "NOTAUTH", 10 => "NOTZONE", 16 => "BADVERS",
        _ => return code.to_string(),
    };
    known.to_string()
}

pub fn opcode_name(code: u8) -> String {
    let known = match code {
        0 => "query", 1 => "iquery", 2 => "status", 4 => "notify", 5 => "update",
        _ => return code.to_string(),
    };
    known.to_string()
}

pub fn class_name(code: u16) -> String {
    let known = match code {
        1 => "IN", 3 => "CH", 4 => "HS", 254 => "NONE", 255 => "ANY",
        _ => return code.to_string(),
    };
    known.to_string()
}

fn is_rendered(rtype: u16) -> bool {
    matches!(rtype, 1 | 28 | 38 | 2 | 5 | 12 | 15 | 6 | 33 | 46 | 48 | 43 | 44 | 29)
}

fn not_logged(rtype: u16) -> bool {
    matches!(rtype, 11 | 13 | 32 | 35 | 41 | 64 | 65 | 249 | 250 | 257)
}

fn at(values: &[String], i: usize) -> &str {
    values.get(i).map(String::as_str).unwrap_or("")
}

/// `dns.render`: Zeek's text of one record's data from its field values (None: Zeek logs none).
pub fn render(rtype: u16, owner: &str, values: Option<&[String]>) -> Option<String> {
    if is_rendered(rtype) {
        let v = values?;
        return Some(match rtype {
            1 | 28 | 38 => at(v, 0).to_string(),
            2 | 5 | 12 | 15 | 6 | 33 => zeek_name(at(v, 0)),
            46 => {
                let signer = zeek_name(at(v, 1));
                format!("RRSIG {} {}", at(v, 0), if signer.is_empty() { "<Root>" } else { &signer })
            }
            48 => format!("DNSKEY {}", at(v, 0)),
            43 => format!("DS {} {}", at(v, 0), at(v, 1)),
            44 => format!("SSHFP: {}", crate::text::lower(&at(v, 0).replace(':', ""))),
            _ => format!("LOC:  {} {} {}", at(v, 0), at(v, 1), at(v, 2)),
        });
    }
    if rtype == NSEC {
        let v = values?;
        return Some(format!("NSEC {} {}", owner, zeek_name(at(v, 0))));
    }
    match rtype {
        50 => return Some("NSEC3".into()),
        51 => return Some("NSEC3PARAM".into()),
        65534 => return Some("BIND9 signing signal".into()),
        _ => {}
    }
    if not_logged(rtype) {
        return None;
    }
    Some(format!("<unknown type={}>", rtype))
}

/// `dns.render_txt`: "TXT 5 hello TXT 5 world".
pub fn render_txt(rtype: u16, strings: &[(u8, String)]) -> String {
    let label = if rtype == 99 { "SPF" } else { "TXT" };
    let parts: Vec<String> = strings.iter().map(|(size, text)| format!("{} {} {}", label, size, text)).collect();
    parts.join(" ")
}

/// One resource record with Zeek's rendering of its data (`dns.Record`).
#[derive(Clone, Debug)]
pub struct Record {
    pub section: u8,
    pub name: String,
    pub rtype: u16,
    pub rclass: Option<u16>,
    pub ttl: Option<u32>,
    pub data: Option<String>,
}

/// An entry of `dns.answers`: {"type", "name", "ttl", "data"}.
#[derive(Clone, Debug)]
pub struct Answer {
    pub rtype: String,
    pub name: String,
    pub ttl: Option<u32>,
    pub data: String,
}

/// `dns._answers`: answer-section records Zeek renders something for.
pub fn answers(records: &[Record]) -> Vec<Answer> {
    records
        .iter()
        .filter(|r| r.section == 0)
        .filter_map(|r| {
            r.data.as_ref().map(|d| Answer { rtype: type_name(r.rtype), name: r.name.clone(), ttl: r.ttl, data: d.clone() })
        })
        .collect()
}

fn joined(head: String, data: &Option<String>) -> String {
    format!("{} {}", head, data.as_deref().unwrap_or("")).trim_end_matches(is_py_space).to_string()
}

/// Python's `str.rstrip()` whitespace (str.isspace).
fn is_py_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | '\u{1c}'..='\u{1f}' | ' ' | '\u{85}' | '\u{a0}'
        | '\u{1680}' | '\u{2000}'..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// `dns.update_entries`: an UPDATE's prerequisites and updates as Zeek logs them.
pub fn update_entries(records: &[Record]) -> Vec<Answer> {
    let mut out = Vec::new();
    for rec in records {
        if rec.section > 1 {
            continue;
        }
        let rtype = type_name(rec.rtype);
        let wildcard = rec.rtype == 255;
        let name = &rec.name;
        let text = if rec.section == 0 {
            if rec.rclass == Some(CLASS_ANY) {
                if wildcard { format!("pre: NameInUse {}", name) } else { format!("pre: RRSet {} {}", rtype, name) }
            } else if rec.rclass == Some(CLASS_NONE) {
                if wildcard { format!("pre: NoName {}", name) } else { format!("pre: NoRRSet {} {}", rtype, name) }
            } else {
                joined(format!("pre: RRSet {} {}", rtype, name), &rec.data)
            }
        } else if rec.rclass == Some(CLASS_ANY) {
            if wildcard { "del: AllRRSets".to_string() } else { format!("del: RRSet {}", rtype) }
        } else if rec.rclass == Some(CLASS_NONE) {
            joined(format!("del: RR {} {}", rtype, name), &rec.data)
        } else {
            joined(format!("add: {} {}", rtype, name), &rec.data)
        };
        out.push(Answer { rtype, name: rec.name.clone(), ttl: rec.ttl, data: text });
    }
    out
}
