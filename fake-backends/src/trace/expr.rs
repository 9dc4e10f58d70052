//! Evaluation of one nft rule (in the canonical text `nft list ruleset`
//! prints, which for iptables-nft's tables is the simulator's mirror of
//! what the kernel holds) against a packet.
//!
//! The rule's statements are joined and read as one token stream: matches
//! narrow, statements act, a verdict ends the rule. Anything this module
//! does not know is an error naming it, never a silent pass.

use std::net::IpAddr;

use super::flow::Proto;
use crate::nft::{Set, Table};

/// The packet as the rules see it at one point of its path.
#[derive(Debug, Clone)]
pub(crate) struct Pkt {
    pub iif: String,
    pub oif: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// `new`, `established` or `related`.
    pub ct_state: &'static str,
    /// `ct status` bits: "snat", "dnat".
    pub ct_status: Vec<&'static str>,
    /// `ct direction`: original or reply.
    pub reply_dir: bool,
    pub mark: u32,
    /// ICMP type name as nft prints it (`echo-request` …).
    pub icmp_type: &'static str,
    /// TCP flags set on the packet (`syn`, `ack`).
    pub tcp_flags: &'static [&'static str],
}

/// What `fib … type` answers, given by the caller (needs the host).
pub(crate) trait HostView {
    /// `local`, `broadcast`, `multicast` or `unicast` for an address.
    fn addr_type(&self, a: IpAddr) -> &'static str;
}

/// The end of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No match, or the rule ended without a verdict.
    Continue,
    Accept,
    Drop,
    Reject(String),
    Return,
    Jump(String),
    Goto(String),
    /// A NAT statement: (kind, its text); accept.
    Nat(NatStmt),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NatStmt {
    Masquerade {
        ports: Option<(u16, u16)>,
    },
    Snat {
        addrs: (IpAddr, IpAddr),
        ports: Option<(u16, u16)>,
    },
    Dnat {
        addrs: (IpAddr, IpAddr),
        ports: Option<(u16, u16)>,
    },
}

/// Result of one rule: did every match match, and the verdict.
pub(crate) struct RuleResult {
    pub matched: bool,
    pub verdict: Verdict,
}

/// Split rule text into tokens: words, quoted strings (kept with their
/// quotes), `{`, `}` and `,` inside sets.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in text.chars() {
        if in_q {
            cur.push(c);
            if c == '"' {
                in_q = false;
            }
            continue;
        }
        match c {
            '"' => {
                cur.push(c);
                in_q = true;
            }
            ' ' | '\t' | '\n' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '{' | '}' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            ',' => {
                // A comma is a separator only at set level; `a,b` lists
                // (ct state, tcp flags) stay one word.
                cur.push(c);
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

pub(crate) struct Ctx<'a> {
    pub table: &'a Table,
    pub host: &'a dyn HostView,
}

/// An evaluation error: the part of the rule that cannot be evaluated.
pub(crate) struct Unsupported(pub String);

struct Stream<'a> {
    t: &'a [String],
    i: usize,
}

impl<'a> Stream<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.t.get(self.i).map(String::as_str)
    }
    fn next(&mut self) -> Option<&'a str> {
        let v = self.peek();
        self.i += 1;
        v
    }
    fn rest_from(&self, start: usize) -> String {
        self.t[start.min(self.t.len())..self.i.min(self.t.len())].join(" ")
    }
}

fn unq(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

/// Set of values on the right side: one value, `{ a, b }` or `@set`.
fn rhs_values(s: &mut Stream, ctx: &Ctx) -> Result<Vec<String>, Unsupported> {
    match s.next() {
        Some("{") => {
            let mut vals = Vec::new();
            let mut cur = Vec::new();
            loop {
                match s.next() {
                    Some("}") => break,
                    Some(w) => {
                        let (w, end) = match w.strip_suffix(',') {
                            Some(x) => (x, true),
                            None => (w, false),
                        };
                        if !w.is_empty() {
                            cur.push(w.to_string());
                        }
                        if end {
                            vals.push(cur.join(" "));
                            cur.clear();
                        }
                    }
                    None => return Err(Unsupported("unterminated set".into())),
                }
            }
            if !cur.is_empty() {
                vals.push(cur.join(" "));
            }
            Ok(vals)
        }
        Some(w) if w.starts_with('@') => {
            let name = &w[1..];
            let set: &Set = ctx
                .table
                .set(name)
                .ok_or_else(|| Unsupported(format!("{w} (no such set)")))?;
            if set.is_map {
                return Err(Unsupported(format!("map {w} used as a set")));
            }
            Ok(set.elements.iter().map(|e| e.key.clone()).collect())
        }
        Some(w) => Ok(vec![w.to_string()]),
        None => Err(Unsupported("missing value".into())),
    }
}

/// `[!=|==] VALUES`: (negated, values).
fn cmp_rhs(s: &mut Stream, ctx: &Ctx) -> Result<(bool, Vec<String>), Unsupported> {
    let neg = match s.peek() {
        Some("!=") => {
            s.next();
            true
        }
        Some("==") => {
            s.next();
            false
        }
        _ => false,
    };
    Ok((neg, rhs_values(s, ctx)?))
}

fn addr_in(a: IpAddr, v: &str) -> Option<bool> {
    if let Some((lo, hi)) = v.split_once('-') {
        let lo: IpAddr = lo.parse().ok()?;
        let hi: IpAddr = hi.parse().ok()?;
        return Some(match (a, lo, hi) {
            (IpAddr::V4(a), IpAddr::V4(l), IpAddr::V4(h)) => l <= a && a <= h,
            (IpAddr::V6(a), IpAddr::V6(l), IpAddr::V6(h)) => l <= a && a <= h,
            _ => false,
        });
    }
    let (net, len) = match v.split_once('/') {
        Some((n, l)) => (n.parse::<IpAddr>().ok()?, l.parse::<u32>().ok()?),
        None => {
            let n: IpAddr = v.parse().ok()?;
            (n, if n.is_ipv4() { 32 } else { 128 })
        }
    };
    Some(match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128))
            };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    })
}

fn port_in(p: u16, v: &str) -> Option<bool> {
    if let Some((lo, hi)) = v.split_once('-') {
        let lo: u16 = lo.parse().ok()?;
        let hi: u16 = hi.parse().ok()?;
        return Some(lo <= p && p <= hi);
    }
    let named = match v {
        "domain" => Some(53),
        "bootps" => Some(67),
        "bootpc" => Some(68),
        "ssh" => Some(22),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    Some(p == named.or_else(|| v.parse().ok())?)
}

fn ifname_eq(name: &str, pat: &str) -> bool {
    let pat = unq(pat);
    match pat.strip_suffix('*') {
        Some(prefix) if !pat.ends_with("\\*") => name.starts_with(prefix),
        _ => name == pat,
    }
}

fn proto_name_eq(p: Proto, v: &str) -> Option<bool> {
    Some(match v {
        "icmp" => p == Proto::Icmp,
        "icmpv6" | "ipv6-icmp" => p == Proto::Icmpv6,
        "udp" => p == Proto::Udp,
        "tcp" => p == Proto::Tcp,
        "sctp" | "udplite" | "gre" | "esp" | "ah" => false,
        n => u8::try_from(n.parse::<u32>().ok()?).ok()? == p.number(),
    })
}

/// All values tested with `f`; `None` from `f` = a value we cannot read.
fn any_of(
    vals: &[String],
    neg: bool,
    what: &str,
    f: impl Fn(&str) -> Option<bool>,
) -> Result<bool, Unsupported> {
    let mut hit = false;
    for v in vals {
        match f(v) {
            Some(b) => hit |= b,
            None => return Err(Unsupported(format!("{what} {v}"))),
        }
    }
    Ok(hit != neg)
}

fn parse_ports(s: &str) -> Option<(u16, u16)> {
    let s = s.strip_prefix(':')?;
    match s.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => {
            let p = s.parse().ok()?;
            Some((p, p))
        }
    }
}

/// Addresses and ports of a NAT statement's `to`.
type NatTo = ((IpAddr, IpAddr), Option<(u16, u16)>);

/// `ADDR[-ADDR][:P[-Q]]` or `[V6]:P-Q` / `[V6]-[V6]:P`.
fn parse_nat_to(s: &str) -> Option<NatTo> {
    let (addrs, ports) = if let Some(rest) = s.strip_prefix('[') {
        // [a]:p, [a]-[b]:p
        let (a, tail) = rest.split_once(']')?;
        let (b, tail) = match tail.strip_prefix("-[") {
            Some(t) => {
                let (b, t2) = t.split_once(']')?;
                (b, t2)
            }
            None => (a, tail),
        };
        let ports = if tail.is_empty() {
            None
        } else {
            Some(parse_ports(tail)?)
        };
        ((a.parse().ok()?, b.parse().ok()?), ports)
    } else if s.matches(':').count() > 1 {
        // Bare IPv6 address (or range) without ports.
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        ((a.parse().ok()?, b.parse().ok()?), None)
    } else {
        let (a, ports) = match s.split_once(':') {
            Some((a, p)) => (a, Some(parse_ports(&format!(":{p}"))?)),
            None => (s, None),
        };
        if let Some((net, bits)) = a.split_once('/') {
            // A range nft lists as a prefix (`snat to A-A` is `A/32`).
            let net: std::net::Ipv4Addr = net.parse().ok()?;
            let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            let lo = u32::from(net) & mask;
            let hi = lo | !mask;
            (
                (
                    IpAddr::V4(std::net::Ipv4Addr::from(lo)),
                    IpAddr::V4(std::net::Ipv4Addr::from(hi)),
                ),
                ports,
            )
        } else {
            let (lo, hi) = a.split_once('-').unwrap_or((a, a));
            ((lo.parse().ok()?, hi.parse().ok()?), ports)
        }
    };
    Some((addrs, ports))
}

const TCP_FLAGS: &[&str] = &["fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"];

fn flags_of(list: &str) -> Option<Vec<&str>> {
    list.split(',')
        .map(|f| TCP_FLAGS.iter().copied().find(|x| *x == f))
        .collect()
}

/// Evaluate one rule (its statements' texts joined).
pub(crate) fn eval_rule(text: &str, pkt: &mut Pkt, ctx: &Ctx) -> Result<RuleResult, Unsupported> {
    let toks = tokens(text);
    let mut s = Stream { t: &toks, i: 0 };
    let no = Ok(RuleResult {
        matched: false,
        verdict: Verdict::Continue,
    });
    let v4 = pkt.src.is_ipv4();
    while let Some(w) = s.peek() {
        let start = s.i;
        s.next();
        let ok: bool = match w {
            "counter" => {
                if s.peek() == Some("packets") {
                    s.next();
                    s.next();
                    if s.peek() == Some("bytes") {
                        s.next();
                        s.next();
                    }
                }
                true
            }
            "log" => {
                while let Some(k) = s.peek() {
                    match k {
                        "prefix" | "level" | "group" | "snaplen" | "queue-threshold" => {
                            s.next();
                            s.next();
                        }
                        "flags" => {
                            s.next();
                            s.next();
                        }
                        _ => break,
                    }
                }
                true
            }
            "limit" => {
                // One packet is within any rate: `limit rate N/u` matches,
                // `limit rate over N/u` does not.
                if s.next() != Some("rate") {
                    return Err(Unsupported(s.rest_from(start)));
                }
                let over = s.peek() == Some("over");
                if over {
                    s.next();
                }
                s.next();
                if s.peek() == Some("burst") {
                    s.next();
                    s.next();
                    s.next();
                }
                !over
            }
            "accept" => return verdict(Verdict::Accept),
            "drop" => return verdict(Verdict::Drop),
            "continue" => return verdict(Verdict::Continue),
            "return" => return verdict(Verdict::Return),
            "jump" | "goto" => {
                let Some(c) = s.next() else {
                    return Err(Unsupported(w.into()));
                };
                let c = unq(c).to_string();
                return verdict(if w == "jump" {
                    Verdict::Jump(c)
                } else {
                    Verdict::Goto(c)
                });
            }
            "reject" => {
                let mut with = String::new();
                if s.peek() == Some("with") {
                    s.next();
                    let mut parts = Vec::new();
                    while let Some(k) = s.next() {
                        parts.push(k);
                    }
                    with = parts.join(" ");
                }
                let text = if with.is_empty() {
                    if v4 {
                        "icmp port-unreachable".to_string()
                    } else {
                        "icmpv6 port-unreachable".to_string()
                    }
                } else {
                    with
                };
                return verdict(Verdict::Reject(text));
            }
            "masquerade" => {
                let mut ports = None;
                while let Some(k) = s.peek() {
                    match k {
                        "to" => {
                            s.next();
                            let p = s.next().unwrap_or("");
                            ports = Some(
                                parse_ports(p)
                                    .ok_or_else(|| Unsupported(format!("masquerade to {p}")))?,
                            );
                        }
                        "random" | "fully-random" | "persistent" => {
                            s.next();
                        }
                        _ => return Err(Unsupported(format!("masquerade {k}"))),
                    }
                }
                return verdict(Verdict::Nat(NatStmt::Masquerade { ports }));
            }
            "snat" | "dnat" => {
                if matches!(s.peek(), Some("ip" | "ip6")) {
                    s.next();
                }
                if s.next() != Some("to") {
                    return Err(Unsupported(s.rest_from(start)));
                }
                let to = s.next().unwrap_or("");
                let (addrs, ports) =
                    parse_nat_to(to).ok_or_else(|| Unsupported(format!("{w} to {to}")))?;
                while let Some(k) = s.peek() {
                    match k {
                        "random" | "fully-random" | "persistent" => {
                            s.next();
                        }
                        _ => return Err(Unsupported(format!("{w} to {to} {k}"))),
                    }
                }
                let n = if w == "snat" {
                    NatStmt::Snat { addrs, ports }
                } else {
                    NatStmt::Dnat { addrs, ports }
                };
                return verdict(Verdict::Nat(n));
            }
            "xt" => {
                // iptables-nft's compat expressions: CHECKSUM (fills in a
                // checksum, no effect on any verdict) is the only one
                // without consequence here.
                let a = s.next().unwrap_or("");
                let b = s.next().unwrap_or("");
                if a == "target" && b == "CHECKSUM" {
                    true
                } else {
                    return Err(Unsupported(format!("xt {a} {b}")));
                }
            }
            "meta" => {
                let key = s.next().unwrap_or("");
                match key {
                    "l4proto" => {
                        let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                        any_of(&vals, neg, "meta l4proto", |v| proto_name_eq(pkt.proto, v))?
                    }
                    "nfproto" | "protocol" => {
                        let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                        any_of(&vals, neg, "meta nfproto", |v| match v {
                            "ipv4" | "ip" => Some(v4),
                            "ipv6" | "ip6" => Some(!v4),
                            _ => None,
                        })?
                    }
                    "iifname" | "oifname" | "iif" | "oif" => iface(key, &mut s, pkt, ctx)?,
                    "mark" => {
                        if s.peek() == Some("set") {
                            s.next();
                            let v = s.next().unwrap_or("");
                            pkt.mark = parse_u32(v)
                                .ok_or_else(|| Unsupported(format!("meta mark set {v}")))?;
                            true
                        } else {
                            let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                            any_of(&vals, neg, "meta mark", |v| Some(parse_u32(v)? == pkt.mark))?
                        }
                    }
                    k => return Err(Unsupported(format!("meta {k}"))),
                }
            }
            "iifname" | "oifname" | "iif" | "oif" if s.peek() == Some("vmap") => {
                let name = if w.starts_with('i') {
                    Some(pkt.iif.as_str())
                } else {
                    pkt.oif.as_deref()
                };
                let Some(name) = name else {
                    return Err(Unsupported(format!(
                        "{w} (no output interface at this hook)"
                    )));
                };
                return vmap(&mut s, ctx, w, |k| Some(ifname_eq(name, k)));
            }
            "iifname" | "oifname" | "iif" | "oif" => iface(w, &mut s, pkt, ctx)?,
            "ip" | "ip6" => {
                let fam_ok = (w == "ip") == v4;
                let key = s.next().unwrap_or("");
                match key {
                    "saddr" | "daddr" => {
                        let a = if key == "saddr" { pkt.src } else { pkt.dst };
                        if s.peek() == Some("vmap") {
                            if !fam_ok {
                                // Another family's key: the lookup is not
                                // made (the rule does not apply).
                                vmap(&mut s, ctx, key, |_| Some(false))?;
                                return Ok(RuleResult {
                                    matched: false,
                                    verdict: Verdict::Continue,
                                });
                            }
                            return vmap(&mut s, ctx, key, |k| addr_in(a, k));
                        }
                        if s.peek() == Some("&") {
                            // ip saddr & MASK ==|!= ADDR
                            s.next();
                            let m = s.next().unwrap_or("");
                            let op = s.next().unwrap_or("");
                            let v = s.next().unwrap_or("");
                            let (IpAddr::V4(a), Ok(m), Ok(v)) = (
                                a,
                                m.parse::<std::net::Ipv4Addr>(),
                                v.parse::<std::net::Ipv4Addr>(),
                            ) else {
                                return Err(Unsupported(s.rest_from(start)));
                            };
                            let eq = u32::from(a) & u32::from(m) == u32::from(v);
                            match op {
                                "==" => eq,
                                "!=" => !eq,
                                _ => return Err(Unsupported(s.rest_from(start))),
                            }
                        } else {
                            let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                            if !fam_ok {
                                false
                            } else {
                                any_of(&vals, neg, &format!("{w} {key}"), |v| addr_in(a, v))?
                            }
                        }
                    }
                    "protocol" | "nexthdr" => {
                        let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                        fam_ok
                            && any_of(&vals, neg, &format!("{w} {key}"), |v| {
                                proto_name_eq(pkt.proto, v)
                            })?
                    }
                    k => return Err(Unsupported(format!("{w} {k}"))),
                }
            }
            "tcp" | "udp" | "th" => {
                let key = s.next().unwrap_or("");
                let proto_ok = match w {
                    "tcp" => pkt.proto == Proto::Tcp,
                    "udp" => pkt.proto == Proto::Udp,
                    _ => pkt.proto.has_ports(),
                };
                match key {
                    "sport" | "dport" => {
                        let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                        if !proto_ok {
                            false
                        } else {
                            let p = if key == "sport" { pkt.sport } else { pkt.dport };
                            let Some(p) = p else {
                                return Err(Unsupported(format!(
                                    "{w} {key} (the flow gives no {key})"
                                )));
                            };
                            any_of(&vals, neg, &format!("{w} {key}"), |v| port_in(p, v))?
                        }
                    }
                    "flags" if w == "tcp" => {
                        // `tcp flags ! MASK` (none set), `tcp flags [!=] A / MASK`
                        // (exactly A among MASK), `tcp flags [!=] A` (any of A).
                        let bad = |s: &Stream| Unsupported(s.rest_from(start));
                        let have = |mask: &[&str]| -> Vec<&str> {
                            pkt.tcp_flags
                                .iter()
                                .copied()
                                .filter(|f| mask.contains(f))
                                .collect()
                        };
                        let r = if s.peek() == Some("!") {
                            s.next();
                            let mask = flags_of(s.next().unwrap_or("")).ok_or_else(|| bad(&s))?;
                            have(&mask).is_empty()
                        } else {
                            let neg = s.peek() == Some("!=");
                            if neg {
                                s.next();
                            }
                            let a = flags_of(s.next().unwrap_or("")).ok_or_else(|| bad(&s))?;
                            let hit = if s.peek() == Some("/") {
                                s.next();
                                let mask =
                                    flags_of(s.next().unwrap_or("")).ok_or_else(|| bad(&s))?;
                                let h = have(&mask);
                                h.len() == a.len() && a.iter().all(|f| h.contains(f))
                            } else {
                                !have(&a).is_empty()
                            };
                            hit != neg
                        };
                        proto_ok && r
                    }
                    k => return Err(Unsupported(format!("{w} {k}"))),
                }
            }
            "icmp" | "icmpv6" => {
                let key = s.next().unwrap_or("");
                if key != "type" {
                    return Err(Unsupported(format!("{w} {key}")));
                }
                let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                let right = (w == "icmp" && pkt.proto == Proto::Icmp)
                    || (w == "icmpv6" && pkt.proto == Proto::Icmpv6);
                right && any_of(&vals, neg, "icmp type", |v| Some(v == pkt.icmp_type))?
            }
            "ct" => {
                let key = s.next().unwrap_or("");
                match key {
                    "state" | "status" => {
                        let neg = matches!(s.peek(), Some("!=" | "!"));
                        if neg {
                            s.next();
                        }
                        let vals = rhs_values(&mut s, ctx)?;
                        let mut names = Vec::new();
                        for v in &vals {
                            names.extend(v.split(',').map(str::to_string));
                        }
                        let hit = names.iter().any(|n| {
                            if key == "state" {
                                n == pkt.ct_state
                            } else {
                                pkt.ct_status.contains(&n.as_str())
                            }
                        });
                        for n in &names {
                            let known = if key == "state" {
                                ["new", "established", "related", "invalid", "untracked"]
                                    .contains(&n.as_str())
                            } else {
                                [
                                    "snat",
                                    "dnat",
                                    "expected",
                                    "seen-reply",
                                    "assured",
                                    "confirmed",
                                ]
                                .contains(&n.as_str())
                            };
                            if !known {
                                return Err(Unsupported(format!("ct {key} {n}")));
                            }
                        }
                        hit != neg
                    }
                    "direction" => {
                        let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                        any_of(&vals, neg, "ct direction", |v| match v {
                            "original" => Some(!pkt.reply_dir),
                            "reply" => Some(pkt.reply_dir),
                            _ => None,
                        })?
                    }
                    k => return Err(Unsupported(format!("ct {k}"))),
                }
            }
            "fib" => {
                let dir = s.next().unwrap_or("");
                let a = match dir {
                    "saddr" => pkt.src,
                    "daddr" => pkt.dst,
                    _ => return Err(Unsupported(s.rest_from(start))),
                };
                if s.next() != Some("type") {
                    return Err(Unsupported(s.rest_from(start)));
                }
                let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                let t = ctx.host.addr_type(a);
                any_of(&vals, neg, "fib type", |v| match v {
                    "local" | "unicast" | "broadcast" | "multicast" => Some(v == t),
                    _ => None,
                })?
            }
            "l4proto" => {
                let (neg, vals) = cmp_rhs(&mut s, ctx)?;
                any_of(&vals, neg, "l4proto", |v| proto_name_eq(pkt.proto, v))?
            }
            other => return Err(Unsupported(other.to_string())),
        };
        if !ok {
            return no;
        }
    }
    verdict(Verdict::Continue)
}

/// `vmap @MAP` or `vmap { KEY : VERDICT, ... }` after a key expression
/// (`what`): the verdict of the first element whose key `hit` matches
/// (a prefix or range of an interval map included); no element: the rule
/// does not match, as a failed lookup in the kernel.
fn vmap(
    s: &mut Stream,
    ctx: &Ctx,
    what: &str,
    hit: impl Fn(&str) -> Option<bool>,
) -> Result<RuleResult, Unsupported> {
    s.next(); // `vmap`
    let elements: Vec<(String, String)> = match s.peek() {
        Some(w) if w.starts_with('@') => {
            s.next();
            let name = &w[1..];
            let set: &Set = ctx
                .table
                .set(name)
                .ok_or_else(|| Unsupported(format!("vmap {w} (no such map)")))?;
            if !set.is_map {
                return Err(Unsupported(format!("vmap {w} (a set, not a map)")));
            }
            set.elements
                .iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        }
        Some("{") => rhs_values(s, ctx)?
            .into_iter()
            .map(|v| match v.split_once(" : ") {
                Some((k, d)) => Ok((k.trim().to_string(), d.trim().to_string())),
                None => Err(Unsupported(format!("vmap element {v}"))),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(Unsupported(format!("{what} vmap without a map"))),
    };
    for (key, data) in &elements {
        let matched = hit(key).ok_or_else(|| Unsupported(format!("{what} vmap key {key}")))?;
        if !matched {
            continue;
        }
        let mut d = data.split_whitespace();
        let v = match (d.next(), d.next()) {
            (Some("accept"), None) => Verdict::Accept,
            (Some("drop"), None) => Verdict::Drop,
            (Some("return"), None) => Verdict::Return,
            (Some("continue"), None) => Verdict::Continue,
            (Some("jump"), Some(c)) => Verdict::Jump(unq(c).to_string()),
            (Some("goto"), Some(c)) => Verdict::Goto(unq(c).to_string()),
            _ => return Err(Unsupported(format!("vmap verdict {data}"))),
        };
        return verdict(v);
    }
    Ok(RuleResult {
        matched: false,
        verdict: Verdict::Continue,
    })
}

fn verdict(v: Verdict) -> Result<RuleResult, Unsupported> {
    Ok(RuleResult {
        matched: true,
        verdict: v,
    })
}

fn parse_u32(v: &str) -> Option<u32> {
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn iface(key: &str, s: &mut Stream, pkt: &Pkt, ctx: &Ctx) -> Result<bool, Unsupported> {
    let (neg, vals) = cmp_rhs(s, ctx)?;
    let name = if key.starts_with('i') {
        Some(pkt.iif.as_str())
    } else {
        pkt.oif.as_deref()
    };
    let Some(name) = name else {
        return Err(Unsupported(format!(
            "{key} (no output interface at this hook)"
        )));
    };
    any_of(&vals, neg, key, |v| {
        if key.ends_with("name") {
            Some(ifname_eq(name, v))
        } else {
            Some(name == unq(v))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_quotes_and_sets() {
        assert_eq!(
            tokens("iifname \"a b\" tcp dport { 53, 67 } accept"),
            ["iifname", "\"a b\"", "tcp", "dport", "{", "53,", "67", "}", "accept"]
        );
    }

    #[test]
    fn nat_targets() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(parse_nat_to("10.0.0.1"), Some(((a, a), None)));
        assert_eq!(
            parse_nat_to("10.0.0.1-10.0.0.9:1024-2048"),
            Some(((a, b), Some((1024, 2048))))
        );
        let c: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(parse_nat_to("[fd00::1]:80"), Some(((c, c), Some((80, 80)))));
        assert_eq!(parse_nat_to("fd00::1"), Some(((c, c), None)));
        assert_eq!(parse_ports(":1024-65535"), Some((1024, 65535)));
        // A one-address range, as nft lists `snat to A-A`.
        assert_eq!(
            parse_nat_to("10.0.0.1/32:20000-30000"),
            Some(((a, a), Some((20000, 30000))))
        );
        let n: IpAddr = "10.0.0.0".parse().unwrap();
        let m: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(parse_nat_to("10.0.0.1/30"), Some(((n, m), None)));
        assert_eq!(parse_nat_to("10.0.0.1/33"), None);
    }

    #[test]
    fn addresses_and_ports() {
        let a: IpAddr = "192.168.122.5".parse().unwrap();
        assert_eq!(addr_in(a, "192.168.122.0/24"), Some(true));
        assert_eq!(addr_in(a, "192.168.0.0/24"), Some(false));
        assert_eq!(addr_in(a, "0.0.0.0/0"), Some(true));
        assert_eq!(addr_in(a, "192.168.122.1-192.168.122.9"), Some(true));
        assert_eq!(addr_in(a, "nonsense"), None);
        assert_eq!(port_in(53, "domain"), Some(true));
        assert_eq!(port_in(80, "1-79"), Some(false));
        assert!(ifname_eq("virbr0", "\"virbr*\""));
        assert!(!ifname_eq("eth0", "\"virbr*\""));
    }
}
