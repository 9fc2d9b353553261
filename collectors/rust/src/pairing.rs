//! `DnsAnalyzer.handle_message/emit/expire/finish`: queries paired with replies per (connection, id), first in
//! first out, like Zeek's dns.log; open queries kept in Python dict order with an index by their newest time.

use crate::Map;
use crate::document::{make_doc, CidCache, DocError, Flow, Value};
use crate::render::{answers, class_name, opcode_name, qtype_name, rcode_name, update_entries, Answer, OPCODE_UPDATE};
use crate::text::{round_to, zeek_name};
use crate::wire::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

pub const QUERY_TIMEOUT: f64 = 60.0;
pub const MAX_FLOWS: usize = 100_000;
pub const MAX_OPEN_QUERIES: usize = 100_000; // dns.MAX_OPEN_QUERIES (the engine reads that one)
const NETBIOS_PORT: u16 = 137;

struct Txn {
    flow: Arc<Flow>,
    ts: f64,
    tid: u16,
    query: Option<String>,
    qtype: Option<u16>,
    qclass: Option<u16>,
    opcode: Option<u8>,
    flags: Vec<&'static str>,
    reply_ts: Option<f64>,
    rcode: Option<u8>,
    answers: Vec<Answer>,
    rejected: bool,
    query_seen: bool,
}

impl Txn {
    fn new(flow: Arc<Flow>, ts: f64, tid: u16, query_seen: bool) -> Txn {
        Txn {
            flow, ts, tid, query: None, qtype: None, qclass: None, opcode: None, flags: Vec::new(), reply_ts: None,
            rcode: None, answers: Vec::new(), rejected: false, query_seen,
        }
    }

    /// `_fill_question`.
    fn fill_question(&mut self, msg: &Message) {
        self.opcode = Some(msg.opcode);
        if msg.opcode == OPCODE_UPDATE {
            return;
        }
        if let Some(q) = &msg.question {
            self.query = Some(zeek_name(&q.name));
            self.qtype = Some(q.qtype);
            self.qclass = Some(q.qclass);
        }
    }
}

/// `ipaddress.ip_address(address).is_multicast` (False for text that is no address).
pub fn is_multicast(address: &str) -> bool {
    if let Ok(ip) = address.parse::<IpAddr>() {
        return ip.is_multicast();
    }
    match address.split_once('%') {
        Some((addr, scope)) if !scope.is_empty() && !scope.contains('%') => {
            addr.parse::<Ipv6Addr>().map(|a| a.is_multicast()).unwrap_or(false)
        }
        _ => false,
    }
}

type Key = (Arc<str>, u16);

/// A Python float as a totally ordered key (-0.0 as 0.0, as Python compares them).
fn ts_key(ts: f64) -> i64 {
    let bits = (ts + 0.0).to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

struct Queue {
    seq: u64,
    txns: VecDeque<Txn>,
}

/// `defaultdict(deque)` of open transactions in Python's dict order (`seq`: insertion), indexed by the time of
/// each queue's newest transaction for `expire`.
#[derive(Default)]
struct Pending {
    queues: Map<Key, Queue>,
    order: BTreeMap<u64, Key>,
    by_last: BTreeSet<(i64, u64)>,
    next_seq: u64,
    count: usize, // the transactions in `queues` (`DnsAnalyzer.waiting`)
}

impl Pending {
    fn append(&mut self, key: Key, txn: Txn) {
        self.count += 1;
        let ts = ts_key(txn.ts);
        if let Some(q) = self.queues.get_mut(&key) {
            if let Some(last) = q.txns.back() {
                self.by_last.remove(&(ts_key(last.ts), q.seq));
            }
            q.txns.push_back(txn);
            self.by_last.insert((ts, q.seq));
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.by_last.insert((ts, seq));
        self.queues.insert(key, Queue { seq, txns: VecDeque::from([txn]) });
    }

    /// `queue.popleft()` (the queue deleted once empty), None without an open transaction.
    fn pop_front(&mut self, key: &Key) -> Option<Txn> {
        let q = self.queues.get_mut(key)?;
        let txn = q.txns.pop_front();
        if txn.is_some() {
            self.count -= 1;
        }
        if q.txns.is_empty() {
            let seq = q.seq;
            self.queues.remove(key);
            self.order.remove(&seq);
            if let Some(t) = &txn {
                self.by_last.remove(&(ts_key(t.ts), seq));
            }
        }
        txn
    }

    fn remove(&mut self, seq: u64) -> Vec<Txn> {
        let Some(key) = self.order.remove(&seq) else { return Vec::new() };
        let Some(q) = self.queues.remove(&key) else { return Vec::new() };
        self.count -= q.txns.len();
        if let Some(last) = q.txns.back() {
            self.by_last.remove(&(ts_key(last.ts), seq));
        }
        q.txns.into()
    }

    /// The queues whose newest transaction is older than `cutoff`, taken out in dict order.
    fn take_older(&mut self, cutoff: f64) -> Vec<Txn> {
        if cutoff.is_nan() {
            return Vec::new();
        }
        let mut seqs: Vec<u64> = self.by_last.range(..(ts_key(cutoff), 0)).map(|&(_, s)| s).collect();
        seqs.sort_unstable();
        seqs.into_iter().flat_map(|s| self.remove(s)).collect()
    }

    fn take_all(&mut self) -> Vec<Txn> {
        let seqs: Vec<u64> = self.order.keys().copied().collect();
        let out = seqs.into_iter().flat_map(|s| self.remove(s)).collect();
        *self = Pending { next_seq: self.next_seq, ..Pending::default() };
        out
    }
}

fn sort_by_ts(txns: &mut [Txn]) {
    txns.sort_by(|a, b| a.ts.partial_cmp(&b.ts).unwrap_or(std::cmp::Ordering::Equal));
}

fn reverse(flow: &Flow) -> Flow {
    Flow {
        orig_h: flow.resp_h.clone(), orig_p: flow.resp_p, resp_h: flow.orig_h.clone(), resp_p: flow.orig_p,
        stream: flow.stream.clone(),
    }
}

/// `DnsAnalyzer` for messages read from the wire.
pub struct Analyzer {
    flows: Map<String, Arc<Flow>>,
    pending: Pending,
    cids: CidCache,
    pub cut_values: u64,
    max_open: usize, // dns.MAX_OPEN_QUERIES
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(MAX_OPEN_QUERIES)
    }
}

impl Analyzer {
    pub fn new(max_open: usize) -> Self {
        Analyzer {
            flows: Map::default(),
            pending: Pending::default(),
            cids: CidCache::default(),
            cut_values: 0,
            max_open,
        }
    }

    /// `_flow`: the message's connection oriented like Zeek's.
    fn flow(&mut self, sender: Flow, is_reply: bool) -> Arc<Flow> {
        if is_multicast(&sender.resp_h) {
            return Arc::new(sender);
        }
        let probe = if is_reply { reverse(&sender) } else { sender };
        if let Some(known) = self.flows.get(&probe.stream) {
            let mut a = [(&known.orig_h, known.orig_p), (&known.resp_h, known.resp_p)];
            let mut b = [(&probe.orig_h, probe.orig_p), (&probe.resp_h, probe.resp_p)];
            a.sort();
            b.sort();
            let (sa, sb) = (if a[0] == a[1] { &a[..1] } else { &a[..] }, if b[0] == b[1] { &b[..1] } else { &b[..] });
            if sa == sb {
                return known.clone();
            }
        }
        let probe = Arc::new(probe);
        self.flows.insert(probe.stream.clone(), probe.clone());
        probe
    }

    /// `handle_message`.
    pub fn handle_message(&mut self, msg: &Message, sender: Flow, ts: f64) -> Result<Vec<Vec<u8>>, DocError> {
        let (tid, is_reply, opcode) = (msg.tid, msg.response, msg.opcode);
        let flow = self.flow(sender, is_reply);
        let unpaired = is_multicast(&flow.resp_h);
        let key: Key = (Arc::from(flow.stream.as_str()), tid);
        if !is_reply {
            let mut txn = Txn::new(flow, ts, tid, true);
            txn.fill_question(msg);
            if msg.rd {
                txn.flags.push("RD");
            }
            if opcode == OPCODE_UPDATE {
                txn.answers = update_entries(&msg.records);
            }
            if unpaired {
                return Ok(vec![self.emit(txn)?]);
            }
            self.pending.append(key, txn);
            // past max_open the oldest connection's queries are logged (`DnsAnalyzer._wait`)
            let mut docs = Vec::new();
            while self.pending.count > self.max_open {
                let Some((&seq, _)) = self.pending.order.first_key_value() else { break };
                let oldest = self.pending.remove(seq);
                docs.extend(self.emit_all(oldest)?);
            }
            return Ok(docs);
        }
        let popped = if unpaired { None } else { self.pending.pop_front(&key) };
        let mut txn = match popped {
            Some(t) => t,
            None => {
                let mut t = Txn::new(flow, ts, tid, false);
                t.fill_question(msg);
                if msg.rd {
                    t.flags.push("RD");
                }
                t
            }
        };
        if txn.query.is_none() {
            txn.fill_question(msg);
        }
        txn.reply_ts = Some(ts);
        txn.rcode = msg.rcode;
        for (flag, name) in [(msg.aa, "AA"), (msg.tc, "TC"), (msg.ra, "RA")] {
            if flag {
                txn.flags.push(name);
            }
        }
        if opcode == OPCODE_UPDATE {
            if txn.answers.is_empty() {
                txn.answers = update_entries(&msg.records);
            }
        } else {
            txn.answers = answers(&msg.records);
        }
        if txn.query.is_none() {
            txn.query = msg.records.iter().find(|r| r.section == 0).map(|r| r.name.clone());
        }
        txn.rejected = txn.rcode.unwrap_or(0) != 0 || (msg.n_answers == 0 && msg.n_auth == 0 && msg.n_additional == 0);
        Ok(vec![self.emit(txn)?])
    }

    /// `emit`: the document of one transaction.
    fn emit(&mut self, mut txn: Txn) -> Result<Vec<u8>, DocError> {
        if txn.opcode == Some(OPCODE_UPDATE) && txn.query.is_none() {
            if let Some(first) = txn.answers.first() {
                txn.query = Some(first.name.clone());
            }
        }
        let mut qtype = txn.qtype.map(qtype_name);
        if qtype.as_deref() == Some("SRV") && txn.flow.resp_p == NETBIOS_PORT {
            qtype = Some("NBSTAT".to_string());
        }
        let mut flags: Vec<&'static str> = txn.flags.clone();
        flags.sort_unstable();
        flags.dedup();
        let mut fields: Vec<(&'static str, Value)> = Vec::with_capacity(18);
        fields.push(("dns.id", Value::Int(txn.tid as i64)));
        fields.push(("dns.type", Value::Str(if txn.reply_ts.is_some() { "answer" } else { "query" }.into())));
        if let Some(op) = txn.opcode {
            fields.push(("dns.op_code", Value::Str(opcode_name(op))));
        }
        fields.push(("dns.header_flags", Value::StrList(flags.iter().map(|s| s.to_string()).collect())));
        if let Some(q) = &txn.query {
            fields.push(("dns.question.name", Value::Str(q.clone())));
        }
        if let Some(t) = qtype {
            fields.push(("dns.question.type", Value::Str(t)));
        }
        if let Some(c) = txn.qclass {
            fields.push(("dns.question.class", Value::Str(class_name(c))));
        }
        if let Some(t) = txn.qtype {
            fields.push(("secops.dns.qtype", Value::Int(t as i64)));
        }
        if let Some(q) = txn.query.as_deref().filter(|q| !q.is_empty()) {
            let (longest, entropy) = label_stats(q);
            fields.push(("secops.dns.label_max_len", Value::Int(longest as i64)));
            fields.push(("secops.dns.label_entropy", Value::Float(entropy)));
        }
        if txn.reply_ts.is_some() || !txn.answers.is_empty() {
            let resolved: Vec<String> =
                txn.answers.iter().filter(|a| a.rtype == "A" || a.rtype == "AAAA").map(|a| a.data.clone()).collect();
            fields.push(("dns.answers", Value::Answers(std::mem::take(&mut txn.answers))));
            fields.push(("dns.resolved_ip", Value::StrList(resolved)));
        }
        if let Some(reply_ts) = txn.reply_ts {
            if let Some(rc) = txn.rcode {
                fields.push(("dns.response_code", Value::Str(rcode_name(rc))));
                fields.push(("secops.dns.rcode", Value::Int(rc as i64)));
            }
            fields.push(("secops.dns.rejected", Value::Bool(txn.rejected)));
            if txn.query_seen {
                fields.push(("secops.dns.rtt", Value::Float(round_to(reply_ts - txn.ts, 6))));
            }
        }
        let (doc, cut) = make_doc(&mut self.cids, &txn.flow, txn.ts, txn.tid, txn.reply_ts, fields)?;
        self.cut_values += cut as u64;
        Ok(doc)
    }

    fn emit_all(&mut self, mut txns: Vec<Txn>) -> Result<Vec<Vec<u8>>, DocError> {
        sort_by_ts(&mut txns);
        txns.into_iter().map(|t| self.emit(t)).collect()
    }

    /// `expire`: queries unanswered past the timeout, then the orientation memo cleared when it is full.
    pub fn expire(&mut self, now: f64) -> Result<Vec<Vec<u8>>, DocError> {
        let old = self.pending.take_older(now - QUERY_TIMEOUT);
        let docs = self.emit_all(old)?;
        if self.flows.len() > MAX_FLOWS {
            self.flows.clear();
        }
        Ok(docs)
    }

    /// `finish`: every open query (the caller warns about `cut_values`).
    pub fn finish(&mut self) -> Result<Vec<Vec<u8>>, DocError> {
        let all = self.pending.take_all();
        self.emit_all(all)
    }

    pub fn flows_len(&self) -> usize {
        self.flows.len()
    }
}

/// `label_stats`: longest label and Shannon entropy of the labels below the registered domain.
pub fn label_stats(name: &str) -> (usize, f64) {
    let labels: Vec<&str> = name.split('.').filter(|x| !x.is_empty()).collect();
    if labels.is_empty() {
        return (0, 0.0);
    }
    let sub: String = if labels.len() > 2 { labels[..labels.len() - 2].concat() } else { String::new() };
    let mut entropy = 0.0f64;
    if !sub.is_empty() {
        let mut order: Vec<(char, u64)> = Vec::new();
        let mut index: HashMap<char, usize> = HashMap::new();
        let mut n = 0u64;
        for c in sub.chars() {
            n += 1;
            match index.get(&c) {
                Some(&i) => order[i].1 += 1,
                None => {
                    index.insert(c, order.len());
                    order.push((c, 1));
                }
            }
        }
        let mut total = 0.0f64;
        for &(_, count) in &order {
            let p = count as f64 / n as f64;
            total += p * p.log2();
        }
        entropy = -total;
    }
    let longest = labels.iter().map(|x| x.chars().count()).max().unwrap_or(0);
    (longest, round_to(entropy, 3))
}
