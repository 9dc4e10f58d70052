//! A packet tracer for the simulated host: what would the kernel do with
//! this packet, given the host's interfaces, addresses, routes, sysctls and
//! firewall?
//!
//! [`trace`] follows one [`Flow`] (the first packet of a connection, or a
//! reply) through the netfilter hooks the way the kernel does:
//!
//! 1. conntrack: `new`, or `established`/`related` for a packet of an earlier
//!    traced flow ([`Conntrack`], shared by the flows of one run);
//! 2. **prerouting**: every base chain of the hook (families `ip`/`ip6` as
//!    the packet's, and `inet`) in priority order; a reply's destination is
//!    translated back (reverse SNAT) at priority -100, where the kernel's
//!    conntrack NAT sits; `dnat` of a new connection;
//! 3. routing: an address of an up interface (or a broadcast address) →
//!    **input**; otherwise the longest-prefix route of the simulated table
//!    (`ip route get`), which needs forwarding enabled
//!    (`net.ipv4.conf.IIF.forwarding`, i.e. `net.ipv4.ip_forward`, or
//!    `net.ipv6.conf.all.forwarding`); no route → unreachable;
//! 4. **input** (→ [`Outcome::Local`]) or **forward** then **postrouting**
//!    (masquerade/snat of a new connection, reverse DNAT of a reply) →
//!    [`Outcome::Delivered`].
//!
//! Rules are read from the nft ruleset, which in the simulator (as in the
//! kernel) holds iptables-nft's tables too (`ip filter`, `ip nat`, … with
//! their base chains at the standard hooks and priorities), in the text
//! `nft list ruleset` prints. Within a base chain: jump, goto, return and
//! the policy; `accept` ends that base chain and the packet goes on to the
//! next base chain of the hook, `drop`/`reject` end its path. NAT-type
//! chains see only the first packet of a connection, and after one of them
//! has translated it the other NAT chains of that hook are skipped.
//!
//! Not modelled: bridge/netdev/arp families (bridged traffic between two
//! ports of one bridge never reaches the IP hooks unless
//! `br_netfilter` is loaded), the output hook (flows arrive on an
//! interface), rp_filter, fragments. Every match or statement the module
//! does not know is a [`TraceError::Unsupported`] naming it.
//!
//! Supported matches: `meta l4proto|nfproto|protocol|mark|iifname|oifname`,
//! `iifname`, `oifname`, `iif`, `oif` (`*` wildcards, `!=`), `ip|ip6
//! saddr|daddr` (address, prefix, range, `{ set }`, `@set`, `& MASK ==`),
//! `ip protocol`, `ip6 nexthdr`, `tcp|udp|th sport|dport` (port, range,
//! set), `tcp flags`, `icmp|icmpv6 type`, `ct state`, `ct status`, `ct
//! direction`, `fib saddr|daddr type`. Statements: `counter`, `log`, `meta
//! mark set`, `xt target CHECKSUM` (no effect on a verdict), `accept`,
//! `drop`, `reject [with …]`, `continue`, `return`, `jump`, `goto`,
//! `masquerade [to :P-Q] [random|fully-random|persistent]`, `snat|dnat [ip|ip6]
//! to ADDR[-ADDR][:P[-Q]]`.

mod expr;
mod flow;

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use flow::{Flow, FlowError, Proto};

use crate::nft::{Family, Table};
use crate::state::HostState;
use expr::{Ctx, HostView, NatStmt, Pkt, Verdict};

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "lowercase")]
pub enum Step {
    /// Conntrack's view of the packet.
    Conntrack { state: String, detail: String },
    /// A rule all of whose matches matched, and what it decided.
    Rule {
        hook: String,
        family: String,
        table: String,
        chain: String,
        handle: u64,
        rule: String,
        verdict: String,
    },
    /// The end of a base chain without a verdict: its policy.
    Policy {
        hook: String,
        family: String,
        table: String,
        chain: String,
        verdict: String,
    },
    /// An address or port translation.
    Nat { hook: String, detail: String },
    /// The routing decision.
    Route { decision: String },
}

/// Where the packet ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// Sent out of `oif`; addresses and ports as the receiver sees them.
    Delivered {
        oif: String,
        src: IpAddr,
        sport: Option<u16>,
        dst: IpAddr,
        dport: Option<u16>,
    },
    /// Accepted by the input hook: delivered to the host itself.
    Local {
        iif: String,
        src: IpAddr,
        dst: IpAddr,
        dport: Option<u16>,
    },
    /// Dropped by a rule (`handle`/`rule` set) or a chain policy (`None`).
    Dropped {
        hook: String,
        family: String,
        table: String,
        chain: String,
        handle: Option<u64>,
        rule: Option<String>,
    },
    /// Rejected by a rule (`with` = the ICMP/TCP answer).
    Rejected {
        hook: String,
        family: String,
        table: String,
        chain: String,
        handle: u64,
        rule: String,
        with: String,
    },
    /// No route, or forwarding disabled.
    Unreachable { reason: String },
}

/// The path of one flow and where it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub flow: Flow,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
}

/// A flow that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("trace: cannot evaluate '{what}' in table {family} {table} chain {chain}")]
    Unsupported {
        what: String,
        family: String,
        table: String,
        chain: String,
    },
    #[error("trace: table {family} {table}: chain {chain} does not exist")]
    NoSuchChain {
        family: String,
        table: String,
        chain: String,
    },
    #[error("trace: table {family} {table}: more than {MAX_DEPTH} nested jumps (a loop?)")]
    Loop { family: String, table: String },
    #[error("trace: interface {0} does not exist or is down")]
    NoInterface(String),
    #[error(
        "trace: '{0}' is marked reply, but no earlier flow of this trace has that reply direction"
    )]
    NoConnection(String),
}

const MAX_DEPTH: usize = 64;

/// A 5-tuple direction of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuple {
    pub src: IpAddr,
    pub sport: Option<u16>,
    pub dst: IpAddr,
    pub dport: Option<u16>,
}

/// A tracked connection: its original direction as it arrived and its
/// reply direction (the original after NAT, reversed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEntry {
    pub proto: Proto,
    pub orig: Tuple,
    pub reply: Tuple,
    pub seen_reply: bool,
}

impl CtEntry {
    fn snat(&self) -> bool {
        self.reply.dst != self.orig.src || self.reply.dport != self.orig.sport
    }
    fn dnat(&self) -> bool {
        self.reply.src != self.orig.dst || self.reply.sport != self.orig.dport
    }
}

/// The connections of one run of flows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conntrack {
    pub entries: Vec<CtEntry>,
}

/// How the packet relates to the conntrack table.
enum CtMatch {
    New,
    Original(usize),
    Reply(usize),
    Related(usize),
}

impl Conntrack {
    /// Entries are searched newest first: ICMP echo ids are not modelled,
    /// so two pings masqueraded to one address have the same reply tuple
    /// here (the kernel tells them apart by the id); the latest wins.
    fn lookup(&self, f: &Flow) -> CtMatch {
        let t = Tuple {
            src: f.src,
            sport: f.sport,
            dst: f.dst,
            dport: f.dport,
        };
        for (i, e) in self.entries.iter().enumerate().rev() {
            if e.proto == f.proto && e.reply == t {
                return CtMatch::Reply(i);
            }
        }
        if f.reply {
            for (i, e) in self.entries.iter().enumerate().rev() {
                let icmp = matches!(f.proto, Proto::Icmp | Proto::Icmpv6);
                if icmp && e.proto.has_ports() && e.reply.src == f.src && e.reply.dst == f.dst {
                    return CtMatch::Related(i);
                }
            }
        }
        for (i, e) in self.entries.iter().enumerate().rev() {
            if e.proto == f.proto && e.orig == t {
                return CtMatch::Original(i);
            }
        }
        CtMatch::New
    }
}

/// The host facts the rules and the path need.
struct Host<'a> {
    st: &'a HostState,
}

fn addr_of(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Are `a` and `b` in one subnet of `prefix` bits?
fn same_subnet(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

impl Host<'_> {
    fn link_up(&self, name: &str) -> bool {
        self.st.ip.links.iter().any(|l| l.name == name && l.up)
    }
    fn is_local(&self, a: IpAddr) -> bool {
        self.st
            .ip
            .links
            .iter()
            .filter(|l| l.up)
            .flat_map(|l| l.addrs.iter())
            .any(|x| addr_of(&x.local) == Some(a))
    }
    fn is_broadcast(&self, a: IpAddr) -> bool {
        if a == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
            return true;
        }
        self.st
            .ip
            .links
            .iter()
            .filter(|l| l.up)
            .flat_map(|l| l.addrs.iter())
            .any(|x| x.broadcast.as_deref().and_then(addr_of) == Some(a))
    }
    /// The address masquerade uses on `dev` towards `dst`: like the
    /// kernel's source selection, the address of the family whose subnet
    /// holds `dst` (an on-link destination), else the first one (for IPv6
    /// the first that is not link-local).
    fn primary(&self, dev: &str, dst: IpAddr) -> Option<IpAddr> {
        let v4 = dst.is_ipv4();
        let l = self.st.ip.links.iter().find(|l| l.name == dev)?;
        let cands: Vec<(IpAddr, u8)> = l
            .addrs
            .iter()
            .filter_map(|a| Some((addr_of(&a.local)?, a.prefixlen)))
            .filter(|(a, _)| match a {
                IpAddr::V4(_) => v4,
                IpAddr::V6(x) => !v4 && (x.segments()[0] & 0xffc0) != 0xfe80,
            })
            .collect();
        cands
            .iter()
            .find(|(a, p)| same_subnet(*a, dst, *p))
            .or(cands.first())
            .map(|(a, _)| *a)
    }
    /// `ip route get DST` on the simulated host: Ok(dev) or Err(why).
    fn route(&self, dst: IpAddr) -> Result<String, String> {
        let mut tmp = HostState {
            ip: self.st.ip.clone(),
            ..HostState::new()
        };
        let cmd = virtnet_runner::Cmd::new(["ip", "route", "get", &dst.to_string()]);
        let out = crate::simulate(&mut tmp, &cmd);
        if !out.success() {
            return Err(out.stderr.trim().to_string());
        }
        let words: Vec<&str> = out.stdout.split_whitespace().collect();
        words
            .iter()
            .position(|w| *w == "dev")
            .and_then(|i| words.get(i + 1))
            .map(|d| d.to_string())
            .ok_or_else(|| format!("unexpected `ip route get` output: {}", out.stdout.trim()))
    }
    fn sysctl(&self, key: &str) -> bool {
        let links: Vec<String> = self.st.ip.links.iter().map(|l| l.name.clone()).collect();
        self.st.sysctl.get(key, &links).as_deref() == Some("1")
    }
}

impl HostView for Host<'_> {
    fn addr_type(&self, a: IpAddr) -> &'static str {
        if self.is_local(a) || a.is_loopback() {
            "local"
        } else if self.is_broadcast(a) {
            "broadcast"
        } else if a.is_multicast() {
            "multicast"
        } else {
            "unicast"
        }
    }
}

/// The destination translation of a known connection at prerouting.
type NatPoint<'a> = dyn FnMut(&mut Pkt, &mut Vec<Step>) + 'a;

/// What a hook decided.
enum HookEnd {
    Accept,
    Stop(Outcome),
}

struct Tracer<'a> {
    host: Host<'a>,
    /// Reply tuples of the tracked connections: a source translation
    /// picks a port that makes its reply tuple unique, as the kernel does.
    taken: Vec<(Proto, Tuple)>,
    steps: Vec<Step>,
    /// A NAT statement of a new connection, per manip type (dst at
    /// prerouting/output, src at postrouting/input).
    nat_done: bool,
}

fn fam_ok(t: &Table, v4: bool) -> bool {
    !t.dormant
        && match t.family {
            Family::Ip => v4,
            Family::Ip6 => !v4,
            Family::Inet => true,
            _ => false,
        }
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Continue => "continue".into(),
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject(w) => format!("reject with {w}"),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
        Verdict::Nat(_) => "accept".into(),
    }
}

impl Tracer<'_> {
    /// Run every base chain of `hook`. `nat_point`: called once before the
    /// first chain of priority -100 or more (reverse/established NAT of
    /// the destination at prerouting).
    fn hook(
        &mut self,
        hook: &str,
        pkt: &mut Pkt,
        mut at_nat_point: Option<&mut NatPoint<'_>>,
    ) -> Result<HookEnd, TraceError> {
        let v4 = pkt.src.is_ipv4();
        let mut chains: Vec<(i32, &Table, &crate::nft::Chain)> = Vec::new();
        for t in self.host.st.nft.tables() {
            if !fam_ok(t, v4) {
                continue;
            }
            for c in &t.chains {
                if let Some(b) = &c.base {
                    if b.hook == hook {
                        chains.push((b.priority, t, c));
                    }
                }
            }
        }
        chains.sort_by_key(|(p, _, _)| *p);
        self.nat_done = false;
        for (prio, table, chain) in chains {
            if prio >= -100 {
                if let Some(f) = at_nat_point.take() {
                    f(pkt, &mut self.steps);
                }
            }
            let Some(base) = &chain.base else { continue };
            if base.chain_type == "nat" && (pkt.ct_state != "new" || self.nat_done) {
                continue;
            }
            match self.base_chain(hook, table, &chain.name, base.policy_accept, pkt)? {
                HookEnd::Accept => {}
                stop => return Ok(stop),
            }
        }
        if let Some(f) = at_nat_point.take() {
            f(pkt, &mut self.steps);
        }
        Ok(HookEnd::Accept)
    }

    fn base_chain(
        &mut self,
        hook: &str,
        table: &Table,
        base: &str,
        policy_accept: bool,
        pkt: &mut Pkt,
    ) -> Result<HookEnd, TraceError> {
        let family = table.family.as_str().to_string();
        let no_chain = |c: &str| TraceError::NoSuchChain {
            family: family.clone(),
            table: table.name.clone(),
            chain: c.to_string(),
        };
        // Call stack of (chain, next rule index).
        let mut stack: Vec<(String, usize)> = vec![(base.to_string(), 0)];
        let mut steps_left: usize = 100_000;
        while let Some((cname, idx)) = stack.pop() {
            let chain = table.chain(&cname).ok_or_else(|| no_chain(&cname))?;
            let mut i = idx;
            let mut next: Option<(String, bool)> = None; // (target, is_goto)
            let mut returned = false;
            while i < chain.rules.len() {
                steps_left = steps_left.saturating_sub(1);
                if steps_left == 0 {
                    return Err(TraceError::Loop {
                        family,
                        table: table.name.clone(),
                    });
                }
                let r = &chain.rules[i];
                i += 1;
                let text = r.text();
                let ctx = Ctx {
                    table,
                    host: &self.host,
                };
                let stmts: String = r
                    .stmts
                    .iter()
                    .map(|s| s.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let res =
                    expr::eval_rule(&stmts, pkt, &ctx).map_err(|e| TraceError::Unsupported {
                        what: e.0,
                        family: family.clone(),
                        table: table.name.clone(),
                        chain: cname.clone(),
                    })?;
                if !res.matched {
                    continue;
                }
                self.steps.push(Step::Rule {
                    hook: hook.into(),
                    family: family.clone(),
                    table: table.name.clone(),
                    chain: cname.clone(),
                    handle: r.handle,
                    rule: text.clone(),
                    verdict: verdict_text(&res.verdict),
                });
                match res.verdict {
                    Verdict::Continue => {}
                    Verdict::Accept => return Ok(HookEnd::Accept),
                    Verdict::Drop => {
                        return Ok(HookEnd::Stop(Outcome::Dropped {
                            hook: hook.into(),
                            family,
                            table: table.name.clone(),
                            chain: cname,
                            handle: Some(r.handle),
                            rule: Some(text),
                        }))
                    }
                    Verdict::Reject(with) => {
                        return Ok(HookEnd::Stop(Outcome::Rejected {
                            hook: hook.into(),
                            family,
                            table: table.name.clone(),
                            chain: cname,
                            handle: r.handle,
                            rule: text,
                            with,
                        }))
                    }
                    Verdict::Nat(n) => {
                        self.nat(hook, n, pkt, table, &cname)?;
                        return Ok(HookEnd::Accept);
                    }
                    Verdict::Return => {
                        returned = true;
                        break;
                    }
                    Verdict::Jump(t) => {
                        next = Some((t, false));
                        break;
                    }
                    Verdict::Goto(t) => {
                        next = Some((t, true));
                        break;
                    }
                }
            }
            if returned || next.is_none() {
                // End of chain or return: back to the caller (or policy).
                continue;
            }
            if let Some((target, goto)) = next {
                if table.chain(&target).is_none() {
                    return Err(no_chain(&target));
                }
                if !goto {
                    stack.push((cname, i));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(TraceError::Loop {
                        family,
                        table: table.name.clone(),
                    });
                }
                stack.push((target, 0));
            }
        }
        self.steps.push(Step::Policy {
            hook: hook.into(),
            family: family.clone(),
            table: table.name.clone(),
            chain: base.into(),
            verdict: if policy_accept { "accept" } else { "drop" }.into(),
        });
        if policy_accept {
            Ok(HookEnd::Accept)
        } else {
            Ok(HookEnd::Stop(Outcome::Dropped {
                hook: hook.into(),
                family,
                table: table.name.clone(),
                chain: base.into(),
                handle: None,
                rule: None,
            }))
        }
    }

    /// `sp`, or the next port of `range` (1024-65535 when none) whose
    /// reply tuple no tracked connection has.
    fn unique_port(
        &self,
        pkt: &Pkt,
        to: IpAddr,
        sp: Option<u16>,
        range: Option<(u16, u16)>,
    ) -> Option<u16> {
        let Some(mut p) = sp.filter(|_| pkt.proto.has_ports()) else {
            return sp;
        };
        let (lo, hi) = range.unwrap_or((1024, 65535));
        for _ in 0..=(u32::from(hi) - u32::from(lo.min(hi))) {
            let reply = Tuple {
                src: pkt.dst,
                sport: pkt.dport,
                dst: to,
                dport: Some(p),
            };
            if !self
                .taken
                .iter()
                .any(|(pr, t)| *pr == pkt.proto && *t == reply)
            {
                return Some(p);
            }
            p = if p >= hi || p < lo { lo } else { p + 1 };
        }
        Some(p)
    }

    fn nat(
        &mut self,
        hook: &str,
        n: NatStmt,
        pkt: &mut Pkt,
        table: &Table,
        chain: &str,
    ) -> Result<(), TraceError> {
        let unsupported = |what: String| TraceError::Unsupported {
            what,
            family: table.family.as_str().into(),
            table: table.name.clone(),
            chain: chain.into(),
        };
        let pick_port = |p: Option<u16>, r: Option<(u16, u16)>| -> Option<u16> {
            match (p, r) {
                (Some(p), Some((lo, hi))) if p >= lo && p <= hi => Some(p),
                (Some(_), Some((lo, _))) => Some(lo),
                (p, _) => p,
            }
        };
        let src_hook = matches!(hook, "postrouting" | "input");
        let detail;
        match n {
            NatStmt::Masquerade { ports } | NatStmt::Snat { ports, .. } if !src_hook => {
                let _ = ports;
                return Err(unsupported(format!("source NAT at hook {hook}")));
            }
            NatStmt::Dnat { .. } if src_hook => {
                return Err(unsupported(format!("dnat at hook {hook}")));
            }
            NatStmt::Masquerade { ports } => {
                let oif = pkt.oif.clone().unwrap_or_default();
                let a = self
                    .host
                    .primary(&oif, pkt.dst)
                    .ok_or_else(|| unsupported(format!("masquerade (no address on {oif})")))?;
                let sp = if pkt.proto.has_ports() {
                    pick_port(pkt.sport, ports)
                } else {
                    pkt.sport
                };
                let sp = self.unique_port(pkt, a, sp, ports);
                detail = format!("masquerade {} → {}{}", pkt.src, a, port_sfx(sp));
                pkt.src = a;
                pkt.sport = sp;
            }
            NatStmt::Snat { addrs, ports } => {
                let sp = if pkt.proto.has_ports() {
                    pick_port(pkt.sport, ports)
                } else {
                    pkt.sport
                };
                let sp = self.unique_port(pkt, addrs.0, sp, ports);
                detail = format!("snat {} → {}{}", pkt.src, addrs.0, port_sfx(sp));
                pkt.src = addrs.0;
                pkt.sport = sp;
            }
            NatStmt::Dnat { addrs, ports } => {
                let dp = match ports {
                    Some((lo, _)) if pkt.proto.has_ports() => Some(lo),
                    _ => pkt.dport,
                };
                detail = format!("dnat {} → {}{}", pkt.dst, addrs.0, port_sfx(dp));
                pkt.dst = addrs.0;
                pkt.dport = dp;
            }
        }
        self.nat_done = true;
        self.steps.push(Step::Nat {
            hook: hook.into(),
            detail,
        });
        Ok(())
    }
}

fn port_sfx(p: Option<u16>) -> String {
    p.map(|p| format!(" port {p}")).unwrap_or_default()
}

/// Trace one flow through the simulated host. Accepted flows (delivered
/// or local) are entered into `ct`, so later flows can be their replies.
pub fn trace(state: &HostState, ct: &mut Conntrack, flow: &Flow) -> Result<Trace, TraceError> {
    let host = Host { st: state };
    if !host.link_up(&flow.iif) {
        return Err(TraceError::NoInterface(flow.iif.clone()));
    }
    let v4 = flow.src.is_ipv4();
    let m = ct.lookup(flow);
    if flow.reply && matches!(m, CtMatch::New | CtMatch::Original(_)) {
        return Err(TraceError::NoConnection(flow.to_string()));
    }
    let (ct_state, reply_dir, entry) = match &m {
        CtMatch::New => ("new", false, None),
        CtMatch::Original(i) => {
            let e = &ct.entries[*i];
            (
                if e.seen_reply { "established" } else { "new" },
                false,
                Some(e.clone()),
            )
        }
        CtMatch::Reply(i) => ("established", true, Some(ct.entries[*i].clone())),
        CtMatch::Related(i) => ("related", true, Some(ct.entries[*i].clone())),
    };
    let mut status = Vec::new();
    if let Some(e) = &entry {
        if e.snat() {
            status.push("snat");
        }
        if e.dnat() {
            status.push("dnat");
        }
    }
    let icmp_type = match (flow.proto, ct_state, reply_dir) {
        (Proto::Icmp | Proto::Icmpv6, "related", _) => "destination-unreachable",
        (Proto::Icmp | Proto::Icmpv6, _, true) => "echo-reply",
        (Proto::Icmp | Proto::Icmpv6, _, false) => "echo-request",
        _ => "",
    };
    let tcp_flags: &'static [&'static str] = match (flow.proto, ct_state, reply_dir) {
        (Proto::Tcp, "new", _) => &["syn"],
        (Proto::Tcp, _, true) if entry.as_ref().is_some_and(|e| !e.seen_reply) => &["syn", "ack"],
        (Proto::Tcp, _, _) => &["ack"],
        _ => &[],
    };
    let mut pkt = Pkt {
        iif: flow.iif.clone(),
        oif: None,
        src: flow.src,
        dst: flow.dst,
        proto: flow.proto,
        sport: flow.sport,
        dport: flow.dport,
        ct_state,
        ct_status: status,
        reply_dir,
        mark: 0,
        icmp_type,
        tcp_flags,
    };
    let mut t = Tracer {
        host,
        taken: ct
            .entries
            .iter()
            .map(|e| (e.proto, e.reply.clone()))
            .collect(),
        steps: Vec::new(),
        nat_done: false,
    };
    t.steps.push(Step::Conntrack {
        state: ct_state.into(),
        detail: match &m {
            CtMatch::New => "new connection".into(),
            CtMatch::Original(_) => "original direction of a tracked connection".into(),
            CtMatch::Reply(_) => "reply direction of a tracked connection".into(),
            CtMatch::Related(_) => "ICMP error about a tracked connection".into(),
        },
    });
    let stop = |t: Tracer, o: Outcome| Trace {
        flow: flow.clone(),
        steps: t.steps,
        outcome: o,
    };
    // Prerouting, with the destination translation of a known connection.
    let ent = entry.clone();
    let mut dst_fix = |p: &mut Pkt, steps: &mut Vec<Step>| {
        let Some(e) = &ent else { return };
        let (to, port) = if reply_dir {
            (e.orig.src, e.orig.sport)
        } else {
            (e.reply.src, e.reply.sport)
        };
        let port = if p.proto.has_ports() { port } else { p.dport };
        if to != p.dst || port != p.dport {
            steps.push(Step::Nat {
                hook: "prerouting".into(),
                detail: format!(
                    "conntrack: destination {}{} → {}{}",
                    p.dst,
                    port_sfx(p.dport),
                    to,
                    port_sfx(port)
                ),
            });
            p.dst = to;
            p.dport = port;
        }
    };
    if let HookEnd::Stop(o) = t.hook("prerouting", &mut pkt, Some(&mut dst_fix))? {
        return Ok(stop(t, o));
    }
    // Routing.
    let local = t.host.is_local(pkt.dst) || t.host.is_broadcast(pkt.dst);
    let outcome = if local {
        t.steps.push(Step::Route {
            decision: format!("{} is local: input", pkt.dst),
        });
        if let HookEnd::Stop(o) = t.hook("input", &mut pkt, None)? {
            return Ok(stop(t, o));
        }
        Outcome::Local {
            iif: pkt.iif.clone(),
            src: pkt.src,
            dst: pkt.dst,
            dport: pkt.dport,
        }
    } else {
        let oif = match t.host.route(pkt.dst) {
            Ok(d) => d,
            Err(why) => {
                t.steps.push(Step::Route {
                    decision: format!("no route to {}: {why}", pkt.dst),
                });
                return Ok(stop(t, Outcome::Unreachable { reason: why }));
            }
        };
        let key = if v4 {
            format!("net.ipv4.conf.{}.forwarding", pkt.iif)
        } else {
            "net.ipv6.conf.all.forwarding".to_string()
        };
        if !t.host.sysctl(&key) {
            let reason = format!("forwarding disabled ({key} = 0)");
            t.steps.push(Step::Route {
                decision: format!("{} via {oif}: {reason}", pkt.dst),
            });
            return Ok(stop(t, Outcome::Unreachable { reason }));
        }
        t.steps.push(Step::Route {
            decision: format!("{} via {oif}: forward", pkt.dst),
        });
        pkt.oif = Some(oif.clone());
        if let HookEnd::Stop(o) = t.hook("forward", &mut pkt, None)? {
            return Ok(stop(t, o));
        }
        if let HookEnd::Stop(o) = t.hook("postrouting", &mut pkt, None)? {
            return Ok(stop(t, o));
        }
        // Source translation of a known connection (after the chains).
        if let Some(e) = &entry {
            let (to, port) = if reply_dir {
                (e.orig.dst, e.orig.dport)
            } else {
                (e.reply.dst, e.reply.dport)
            };
            let port = if pkt.proto.has_ports() {
                port
            } else {
                pkt.sport
            };
            if to != pkt.src || port != pkt.sport {
                t.steps.push(Step::Nat {
                    hook: "postrouting".into(),
                    detail: format!(
                        "conntrack: source {}{} → {}{}",
                        pkt.src,
                        port_sfx(pkt.sport),
                        to,
                        port_sfx(port)
                    ),
                });
                pkt.src = to;
                pkt.sport = port;
            }
        }
        Outcome::Delivered {
            oif,
            src: pkt.src,
            sport: pkt.sport,
            dst: pkt.dst,
            dport: pkt.dport,
        }
    };
    // Record the connection.
    match m {
        CtMatch::New => ct.entries.push(CtEntry {
            proto: flow.proto,
            orig: Tuple {
                src: flow.src,
                sport: flow.sport,
                dst: flow.dst,
                dport: flow.dport,
            },
            reply: Tuple {
                src: pkt.dst,
                sport: pkt.dport,
                dst: pkt.src,
                dport: pkt.sport,
            },
            seen_reply: false,
        }),
        CtMatch::Reply(i) => {
            if let Some(e) = ct.entries.get_mut(i) {
                e.seen_reply = true;
            }
        }
        CtMatch::Original(_) | CtMatch::Related(_) => {}
    }
    Ok(stop(t, outcome))
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Conntrack { state, detail } => write!(f, "conntrack {state} ({detail})"),
            Step::Rule {
                hook,
                family,
                table,
                chain,
                handle,
                rule,
                verdict,
            } => write!(
                f,
                "{hook} {family} {table} {chain} rule {rule} (handle {handle}) verdict {verdict}"
            ),
            Step::Policy {
                hook,
                family,
                table,
                chain,
                verdict,
            } => write!(f, "{hook} {family} {table} {chain} policy {verdict}"),
            Step::Nat { hook, detail } => write!(f, "{hook} nat {detail}"),
            Step::Route { decision } => write!(f, "route {decision}"),
        }
    }
}

fn opt_port(p: &Option<u16>) -> String {
    p.map(|p| format!(" port {p}")).unwrap_or_default()
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered {
                oif,
                src,
                sport,
                dst,
                dport,
            } => write!(
                f,
                "delivered via {oif}: {src}{} → {dst}{}",
                opt_port(sport),
                opt_port(dport)
            ),
            Outcome::Local {
                iif,
                src,
                dst,
                dport,
            } => write!(
                f,
                "local: accepted by the host ({src} → {dst}{} from {iif})",
                opt_port(dport)
            ),
            Outcome::Dropped {
                hook,
                family,
                table,
                chain,
                handle,
                rule,
            } => match (handle, rule) {
                (Some(h), Some(r)) => write!(
                    f,
                    "dropped at {hook} by {family} {table} {chain} rule {r} (handle {h})"
                ),
                _ => write!(f, "dropped at {hook} by {family} {table} {chain} policy drop"),
            },
            Outcome::Rejected {
                hook,
                family,
                table,
                chain,
                handle,
                rule,
                with,
            } => write!(
                f,
                "rejected ({with}) at {hook} by {family} {table} {chain} rule {rule} (handle {handle})"
            ),
            Outcome::Unreachable { reason } => write!(f, "unreachable: {reason}"),
        }
    }
}

impl fmt::Display for Trace {
    /// The path like `nft monitor trace` prints it: one line per step,
    /// then the outcome.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "trace {}", self.flow)?;
        for s in &self.steps {
            writeln!(f, "  {s}")?;
        }
        writeln!(f, "  => {}", self.outcome)
    }
}

#[cfg(test)]
mod tests;
