//! The bridge between the simulated iptables-nft and nft: on a real host
//! both tools see one kernel ruleset, so the tables `iptables`/`ip6tables`
//! write are listed by `nft` (with the text iptables-nft's expressions
//! decompile to), take their handles from the same counters, and nft can
//! delete or flush them.
//!
//! The iptables states ([`XtablesState`]) stay the source of truth for those
//! tables: each keeps the nftables handles of its tables, chains and rules.
//! [`sync_to_nft`] / [`sync_changed_to_nft`] mirror them into the
//! [`NftState`] (as ordinary nft tables, placed by creation order among
//! nft's own, plus an [`XtTable`] marker saying whether nft warns "managed
//! by iptables-nft").
//!
//! The mirror is lazy: an iptables write only marks the table it addressed
//! (`Pending` in the crate root), and the marked tables are re-mirrored when
//! something can see them — the next nft command, or a read of the host
//! state (`FakeHost::state`, `dump`, `save`) — so a run of iptables commands
//! (an iptables-backend start is nothing else) mirrors each table once. The
//! mirror is a function of the iptables table alone, so building it late
//! gives the same ruleset; the public [`crate::simulate`] mirrors at once.
//! `tests/lazy_mirror.rs` checks that the lazy and the eager mirror give the
//! same outputs and final state over random mixed sequences.
//!
//! After every nft command [`sync_from_nft`] carries what nft did to those
//! mirrors back: deleted tables, chains and rules, flushed chains, policy
//! changes, new user chains. Rules nft adds to an iptables table are read
//! back as iptables rules where iptables-nft can ([`nft_rule_to_iptables`]:
//! interfaces, addresses, protocol, ports, counter, comment, verdicts,
//! jump/goto; kept with nft's own text for listing); other rules are kept as
//! "incompatible", as iptables-nft does (listing that chain or the whole
//! table with `-S`/`-L` fails "... is incompatible, use 'nft' tool.",
//! `iptables-save` prints `# Table `T' is incompatible ...`, writes still
//! work). A table nft created under an iptables table name (`ip filter`,
//! `ip nat`, ...) is, as in the kernel, the table iptables reads and writes:
//! [`adopt_nft_tables`] takes it over before any iptables command (base
//! chains under names iptables does not know, and sets, stay nft's and make
//! iptables print "contains incompatible base-chains"). Chain renames by nft
//! and base chains of another type under a builtin name are refused with
//! "command not simulated", leaving the host unchanged.
//!
//! [`rule_text`] is the translation of a canonical iptables rule (the `-S`
//! form) to what nft 1.0.6 prints for the rule iptables-nft 1.8.9 builds,
//! collected by running both tools in a fresh network namespace (see
//! `tests/xtnft_differential.rs`; `tests/xtnft_bridge.rs` checks the
//! refusals and the translation of every rule in libvirt's streams without
//! root).

use std::sync::Arc;

use crate::iptables::{self, Family as XtFamily, XtablesState};
use crate::nft::{self, BaseSpec, NftState, Stmt, StmtKind, XtTable};

/// The nft text of one iptables rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRule {
    /// Statements as nft prints them, joined by single spaces (an xtables
    /// match that decompiles to nothing, like `comment`, leaves an empty
    /// statement, hence the double spaces real nft prints).
    pub stmts: Vec<Stmt>,
    /// The rule uses an xtables (compat) match or target.
    pub compat: bool,
}

impl NftRule {
    pub fn text(&self) -> String {
        self.stmts
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn nft_family(f: XtFamily) -> nft::Family {
    match f {
        XtFamily::V4 => nft::Family::Ip,
        XtFamily::V6 => nft::Family::Ip6,
    }
}

/// Hook, type and priority of an iptables-nft builtin chain.
pub fn builtin_base(table: &str, chain: &str, policy_accept: bool) -> Option<BaseSpec> {
    let hook = match chain {
        "PREROUTING" => "prerouting",
        "INPUT" => "input",
        "FORWARD" => "forward",
        "OUTPUT" => "output",
        "POSTROUTING" => "postrouting",
        _ => return None,
    };
    let (ty, prio) = match (table, chain) {
        ("filter", _) => ("filter", 0),
        ("raw", _) => ("filter", -300),
        ("mangle", "OUTPUT") => ("route", -150),
        ("mangle", _) => ("filter", -150),
        ("security", _) => ("filter", 150),
        ("nat", "PREROUTING" | "OUTPUT") => ("nat", -100),
        ("nat", _) => ("nat", 100),
        _ => return None,
    };
    Some(BaseSpec {
        chain_type: ty.to_string(),
        hook: hook.to_string(),
        priority: prio,
        policy_accept,
    })
}

/// One `[!] --opt [value]` of a match or target.
#[derive(Debug, Clone)]
struct Opt {
    name: String,
    neg: bool,
    val: Option<String>,
}

#[derive(Debug, Default)]
struct Parsed {
    src: Option<(bool, String)>,
    dst: Option<(bool, String)>,
    iif: Option<(bool, String)>,
    oif: Option<(bool, String)>,
    proto: Option<(bool, String)>,
    frag: Option<bool>,
    matches: Vec<(String, Vec<Opt>)>,
    target: Option<(bool, String, Vec<Opt>)>,
}

/// Options that take no value.
const FLAG_OPTS: &[&str] = &[
    "--syn",
    "--checksum-fill",
    "--random",
    "--random-fully",
    "--persistent",
    "--limit-iface-in",
    "--limit-iface-out",
];

fn parse_spec(spec: &str) -> Parsed {
    let toks = iptables::spec_tokens(spec);
    let mut p = Parsed::default();
    let mut i = 0;
    let mut neg = false;
    while i < toks.len() {
        let t = toks[i].as_str();
        let v = toks.get(i + 1).cloned().unwrap_or_default();
        if t == "!" {
            neg = true;
            i += 1;
            continue;
        }
        let in_ext = !p.matches.is_empty() || p.target.is_some();
        match t {
            "-s" if !in_ext => p.src = Some((neg, v)),
            "-d" if !in_ext => p.dst = Some((neg, v)),
            "-i" if !in_ext => p.iif = Some((neg, v)),
            "-o" if !in_ext => p.oif = Some((neg, v)),
            "-p" if !in_ext => p.proto = Some((neg, v)),
            "-f" if !in_ext => {
                p.frag = Some(neg);
                neg = false;
                i += 1;
                continue;
            }
            "-m" => p.matches.push((v, Vec::new())),
            "-j" | "-g" => p.target = Some((t == "-g", v, Vec::new())),
            _ => {
                let flag = FLAG_OPTS.contains(&t);
                let two = t == "--tcp-flags";
                let val = if flag {
                    None
                } else if two {
                    Some(format!(
                        "{v} {}",
                        toks.get(i + 2).cloned().unwrap_or_default()
                    ))
                } else {
                    Some(v)
                };
                let opt = Opt {
                    name: t.to_string(),
                    neg,
                    val,
                };
                if let Some((_, _, opts)) = p.target.as_mut() {
                    opts.push(opt);
                } else if let Some((_, opts)) = p.matches.last_mut() {
                    opts.push(opt);
                }
                neg = false;
                i += if flag {
                    1
                } else if two {
                    3
                } else {
                    2
                };
                continue;
            }
        }
        neg = false;
        i += 2;
    }
    p
}

fn negation(neg: bool) -> &'static str {
    if neg {
        "!= "
    } else {
        ""
    }
}

/// `ip saddr 10.0.0.0/8`, `ip6 daddr != fd00::/64`, `ip saddr & M == A`.
fn addr_stmt(fam: XtFamily, dir: &str, neg: bool, a: &str) -> String {
    let (kw, full) = match fam {
        XtFamily::V4 => ("ip", "/32"),
        XtFamily::V6 => ("ip6", "/128"),
    };
    if let Some((addr, mask)) = a.split_once('/') {
        if mask.contains('.') {
            let op = if neg { "!=" } else { "==" };
            return format!("{kw} {dir} & {mask} {op} {addr}");
        }
    }
    let a = a.strip_suffix(full).unwrap_or(a);
    format!("{kw} {dir} {}{a}", negation(neg))
}

fn ifname(dir: &str, neg: bool, name: &str) -> String {
    let n = match name.strip_suffix('+') {
        Some(base) => format!("{base}*"),
        None => name.to_string(),
    };
    format!("{dir} {}\"{n}\"", negation(neg))
}

fn port_range(v: &str) -> String {
    v.replace(':', "-")
}

/// `ct state` flag names in the order nft prints them (iptables keeps the
/// same order in its canonical form).
fn ct_states(v: &str) -> (Vec<String>, Vec<String>) {
    let mut states = Vec::new();
    let mut status = Vec::new();
    for s in v.split(',') {
        let l = s.to_ascii_lowercase();
        if l == "snat" || l == "dnat" {
            status.push(l);
        } else {
            states.push(l);
        }
    }
    (states, status)
}

fn log_level(v: &str) -> Option<&'static str> {
    const NAMES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
    ];
    if let Ok(n) = v.parse::<usize>() {
        return NAMES.get(n).copied();
    }
    let l = v.to_ascii_lowercase();
    let l = match l.as_str() {
        "warning" => "warn",
        "error" => "err",
        "panic" => "emerg",
        x => x,
    };
    NAMES.iter().copied().find(|n| *n == l)
}

fn reject_text(fam: XtFamily, with: Option<&str>) -> String {
    let default = match fam {
        XtFamily::V4 => "icmp-port-unreachable",
        XtFamily::V6 => "icmp6-port-unreachable",
    };
    let w = with.unwrap_or(default);
    if w == default {
        return "reject".into();
    }
    if w == "tcp-reset" {
        return "reject with tcp reset".into();
    }
    match fam {
        XtFamily::V4 => {
            let code = w.strip_prefix("icmp-").unwrap_or(w);
            let code = match code {
                "proto-unreachable" => "prot-unreachable",
                c => c,
            };
            format!("reject with icmp type {code}")
        }
        XtFamily::V6 => {
            let code = w.strip_prefix("icmp6-").unwrap_or(w);
            let code = match code {
                "adm-prohibited" => "admin-prohibited",
                c => c,
            };
            format!("reject with icmpv6 type {code}")
        }
    }
}

/// ICMP types (as iptables keeps them) nft names when it decompiles the
/// xtables icmp match; other types and type/code pairs stay `xt match icmp`.
const NFT_ICMP4: &[(&str, &str)] = &[
    ("0", "echo-reply"),
    ("3", "destination-unreachable"),
    ("4", "source-quench"),
    ("5", "redirect"),
    ("8", "echo-request"),
    ("9", "router-advertisement"),
    ("10", "router-solicitation"),
    ("11", "time-exceeded"),
    ("12", "parameter-problem"),
    ("13", "timestamp-request"),
    ("14", "timestamp-reply"),
    ("17", "address-mask-request"),
    ("18", "address-mask-reply"),
];

const NFT_ICMP6: &[(&str, &str)] = &[
    ("1", "destination-unreachable"),
    ("2", "packet-too-big"),
    ("3", "time-exceeded"),
    ("4", "parameter-problem"),
    ("128", "echo-request"),
    ("129", "echo-reply"),
    ("133", "nd-router-solicit"),
    ("134", "nd-router-advert"),
    ("135", "nd-neighbor-solicit"),
    ("136", "nd-neighbor-advert"),
    ("137", "nd-redirect"),
];

/// The nft text of a canonical iptables rule (`spec` as after `-A CHAIN`
/// in `iptables -S`) of family `fam`.
pub fn rule_text(spec: &str, fam: XtFamily) -> NftRule {
    let p = parse_spec(spec);
    let mut stmts: Vec<Stmt> = Vec::new();
    let mut compat = false;
    if let Some((n, v)) = &p.iif {
        stmts.push(plain_stmt(ifname("iifname", *n, v)));
    }
    if let Some((n, v)) = &p.oif {
        stmts.push(plain_stmt(ifname("oifname", *n, v)));
    }
    let proto = p.proto.as_ref().map(|(n, v)| (*n, v.clone()));
    // A native tcp/udp port match right after the protocol makes nft drop
    // the `meta l4proto` dependency; an xtables match in between keeps it.
    let native_l4 =
        |name: &str, opts: &[Opt]| -> bool { (name == "tcp" || name == "udp") && !opts.is_empty() };
    if let Some((n, v)) = &proto {
        let dropped = !*n
            && p.matches
                .first()
                .is_some_and(|(m, o)| m == v && native_l4(m, o));
        if !dropped {
            stmts.push(plain_stmt(format!("meta l4proto {}{v}", negation(*n))));
        }
    }
    if let Some((n, v)) = &p.src {
        stmts.push(plain_stmt(addr_stmt(fam, "saddr", *n, v)));
    }
    if let Some((n, v)) = &p.dst {
        stmts.push(plain_stmt(addr_stmt(fam, "daddr", *n, v)));
    }
    if let Some(n) = p.frag {
        let op = if n { "==" } else { "!=" };
        stmts.push(plain_stmt(format!("ip frag-off & 8191 {op} 0")));
    }
    let l4 = proto
        .as_ref()
        .filter(|(n, _)| !n)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    match_stmts(&p, &l4, &mut stmts, &mut compat);
    stmts.push(plain_stmt("counter packets 0 bytes 0".into()));
    if let Some((goto, name, opts)) = &p.target {
        stmts.push(target_stmt(*goto, name, opts, fam, &mut compat));
    }
    NftRule { stmts, compat }
}

/// A statement nft prints as it is (no kind the simulator acts on).
fn plain_stmt(text: String) -> Stmt {
    Stmt {
        text,
        kind: StmtKind::Other,
    }
}

/// The statements of a rule's matches (`-m NAME ...`), in order.
fn match_stmts(p: &Parsed, l4: &str, stmts: &mut Vec<Stmt>, compat: &mut bool) {
    for (name, opts) in &p.matches {
        match name.as_str() {
            "tcp" | "udp" if !opts.is_empty() => {
                let mut parts = Vec::new();
                // iptables-nft emits the flags before the ports.
                for o in opts.iter().filter(|o| o.name == "--tcp-flags") {
                    let v = o.val.clone().unwrap_or_default().to_ascii_lowercase();
                    let (mask, comp) = v.split_once(' ').unwrap_or((v.as_str(), ""));
                    parts.push(if comp == "none" {
                        format!("tcp flags {}{mask}", if o.neg { "" } else { "! " })
                    } else {
                        format!("tcp flags {}{comp} / {mask}", negation(o.neg))
                    });
                }
                for o in opts.iter().filter(|o| o.name != "--tcp-flags") {
                    let v = o.val.clone().unwrap_or_default();
                    match o.name.as_str() {
                        "--sport" => parts.push(format!(
                            "{name} sport {}{}",
                            negation(o.neg),
                            port_range(&v)
                        )),
                        "--dport" => parts.push(format!(
                            "{name} dport {}{}",
                            negation(o.neg),
                            port_range(&v)
                        )),
                        "--syn" => parts.push(format!(
                            "tcp flags {}syn / fin,syn,rst,ack",
                            negation(o.neg)
                        )),
                        other_opt => {
                            *compat = true;
                            parts.push(format!("xt match \"{name}\" {other_opt}"));
                        }
                    }
                }
                stmts.push(plain_stmt(parts.join(" ")));
            }
            "icmp" | "icmp6" => {
                *compat = true;
                let v = opts
                    .iter()
                    .find(|o| o.name == "--icmp-type" || o.name == "--icmpv6-type");
                let text = match v {
                    Some(o) => {
                        let val = o.val.clone().unwrap_or_default();
                        let (kw, names) = if name == "icmp" {
                            ("icmp", NFT_ICMP4)
                        } else {
                            ("icmpv6", NFT_ICMP6)
                        };
                        if val == "any" && name == "icmp" && !o.neg {
                            "ip protocol icmp".to_string()
                        } else {
                            match names.iter().find(|(n, _)| *n == val) {
                                Some((_, nft_name)) => {
                                    format!("{kw} type {}{nft_name}", negation(o.neg))
                                }
                                None => format!("xt match {name}"),
                            }
                        }
                    }
                    None => String::new(),
                };
                stmts.push(plain_stmt(text));
            }
            "mark" => {
                let o = opts.iter().find(|o| o.name == "--mark");
                let text = match o {
                    Some(o) => {
                        let v = o.val.clone().unwrap_or_default();
                        let num = |x: &str| {
                            u32::from_str_radix(x.trim_start_matches("0x"), 16).unwrap_or(0)
                        };
                        match v.split_once('/') {
                            Some((a, m)) => format!(
                                "meta mark & {:#010x} {} {:#010x}",
                                num(m),
                                if o.neg { "!=" } else { "==" },
                                num(a)
                            ),
                            None => format!("meta mark {}{:#010x}", negation(o.neg), num(&v)),
                        }
                    }
                    None => String::new(),
                };
                stmts.push(plain_stmt(text));
            }
            "tcp" | "udp" | "comment" => {
                *compat = true;
                stmts.push(plain_stmt(String::new()));
            }
            "conntrack" | "state" => {
                *compat = true;
                let mut parts = Vec::new();
                for o in opts {
                    let v = o.val.clone().unwrap_or_default();
                    match o.name.as_str() {
                        "--ctstate" | "--state" => {
                            let (states, status) = ct_states(&v);
                            let bang = if o.neg { "! " } else { "" };
                            if !states.is_empty() {
                                parts.push(format!("ct state {bang}{}", states.join(",")));
                            }
                            if !status.is_empty() {
                                parts.push(format!("ct status {bang}{}", status.join(",")));
                            }
                        }
                        "--ctstatus" => {
                            let bang = if o.neg { "! " } else { "" };
                            parts.push(format!("ct status {bang}{}", v.to_ascii_lowercase()));
                        }
                        _ => {}
                    }
                }
                stmts.push(plain_stmt(parts.join(" ")));
            }
            "addrtype" => {
                *compat = true;
                let pick = opts
                    .iter()
                    .find(|o| o.name == "--src-type")
                    .or_else(|| opts.iter().find(|o| o.name == "--dst-type"));
                let text = match pick {
                    Some(o) => format!(
                        "fib {} type {}{}",
                        if o.name == "--src-type" {
                            "saddr"
                        } else {
                            "daddr"
                        },
                        negation(o.neg),
                        o.val.clone().unwrap_or_default().to_ascii_lowercase()
                    ),
                    None => String::new(),
                };
                stmts.push(plain_stmt(text));
            }
            "multiport" => {
                *compat = true;
                let mut parts = Vec::new();
                for o in opts {
                    let v = o.val.clone().unwrap_or_default();
                    let ports: Vec<String> = v.split(',').map(port_range).collect();
                    let dir = match o.name.as_str() {
                        "--sports" => "sport",
                        "--dports" => "dport",
                        _ => {
                            // --ports: source or destination port.
                            let elems: Vec<String> = ports
                                .iter()
                                .map(|x| format!("0-65535 . {x}, {x} . 0-65535"))
                                .collect();
                            parts.push(format!(
                                "{l4} sport . {l4} dport {}{{ {} }}",
                                negation(o.neg),
                                elems.join(", ")
                            ));
                            continue;
                        }
                    };
                    if ports.len() == 1 {
                        parts.push(format!("{l4} {dir} {}{}", negation(o.neg), ports[0]));
                    } else {
                        parts.push(format!(
                            "{l4} {dir} {}{{ {} }}",
                            negation(o.neg),
                            ports.join(", ")
                        ));
                    }
                }
                stmts.push(plain_stmt(parts.join(" ")));
            }
            m => {
                *compat = true;
                stmts.push(plain_stmt(format!("xt match \"{m}\"")));
            }
        }
    }
}

/// The statement of a rule's target (`-j|-g NAME ...`).
fn target_stmt(goto: bool, name: &str, opts: &[Opt], fam: XtFamily, compat: &mut bool) -> Stmt {
    let val = |n: &str| {
        opts.iter()
            .find(|o| o.name == n)
            .and_then(|o| o.val.clone())
    };
    let has = |n: &str| opts.iter().any(|o| o.name == n);
    let (text, kind) = match name {
        "ACCEPT" => ("accept".to_string(), StmtKind::Terminal),
        "DROP" => ("drop".to_string(), StmtKind::Terminal),
        "RETURN" => ("return".to_string(), StmtKind::Terminal),
        "REJECT" => {
            *compat = true;
            (
                reject_text(fam, val("--reject-with").as_deref()),
                StmtKind::Other,
            )
        }
        "MASQUERADE" => {
            *compat = true;
            let mut t = "masquerade".to_string();
            if let Some(ports) = val("--to-ports") {
                t.push_str(&format!(" to :{ports}"));
            }
            if has("--random") {
                t.push_str(" random");
            }
            if has("--random-fully") {
                t.push_str(" fully-random");
            }
            (t, StmtKind::Other)
        }
        "SNAT" | "DNAT" => {
            *compat = true;
            let (kw, opt) = if name == "SNAT" {
                ("snat", "--to-source")
            } else {
                ("dnat", "--to-destination")
            };
            let mut t = format!("{kw} to {}", val(opt).unwrap_or_default());
            if has("--random") {
                t.push_str(" random");
            }
            if has("--random-fully") {
                t.push_str(" fully-random");
            }
            if has("--persistent") {
                t.push_str(" persistent");
            }
            (t, StmtKind::Other)
        }
        "LOG" => {
            *compat = true;
            let mut t = "log".to_string();
            if let Some(pfx) = val("--log-prefix") {
                t.push_str(&format!(" prefix \"{pfx}\""));
            }
            if let Some(l) = val("--log-level").as_deref().and_then(log_level) {
                if l != "warn" {
                    t.push_str(&format!(" level {l}"));
                }
            }
            (t, StmtKind::Other)
        }
        "MARK" => {
            *compat = true;
            let v = val("--set-xmark").unwrap_or_default();
            let num = |x: &str| u32::from_str_radix(x.trim_start_matches("0x"), 16).unwrap_or(0);
            let (x, m) = match v.split_once('/') {
                Some((a, b)) => (num(a), num(b)),
                None => (num(&v), u32::MAX),
            };
            let and = !m;
            let t = if and == 0 {
                format!("meta mark set {x:#x}")
            } else if m == 0 {
                format!("meta mark set mark xor {x:#x}")
            } else if x == 0 {
                format!("meta mark set mark and {and:#x}")
            } else if x == m {
                format!("meta mark set mark or {x:#x}")
            } else {
                format!("meta mark set mark and {and:#x} xor {x:#x}")
            };
            (t, StmtKind::Other)
        }
        "CHECKSUM" => {
            *compat = true;
            ("xt target CHECKSUM".to_string(), StmtKind::Other)
        }
        "QUEUE" => ("queue".to_string(), StmtKind::Terminal),
        chain if goto => (format!("goto {chain}"), StmtKind::Goto(chain.to_string())),
        chain => (format!("jump {chain}"), StmtKind::Jump(chain.to_string())),
    };
    Stmt { text, kind }
}

/// The nft rules of iptables chain `c`, and whether one of them uses an
/// xtables expression (a memo per table and chain, and one per rule text,
/// saved about 7% of `cargo xtask conformance`'s CPU time and were removed).
fn chain_rules(fam: XtFamily, c: &iptables::Chain) -> (Arc<Vec<nft::Rule>>, bool) {
    let mut warn = false;
    let rules: Vec<nft::Rule> = c
        .rules
        .iter()
        .map(|r| {
            if let Some(own) = &r.nft_rule {
                let mut own = own.clone();
                own.handle = r.handle;
                return own;
            }
            let nr = rule_text(&r.spec, fam);
            warn |= nr.compat;
            nft::Rule {
                handle: r.handle,
                stmts: nr.stmts,
                comment: None,
            }
        })
        .collect();
    (Arc::new(rules), warn)
}

fn mirror_table(fam: XtFamily, name: &str, t: &iptables::Table) -> (nft::Table, Vec<String>) {
    let mut chains: Vec<(u64, nft::Chain)> = Vec::new();
    let mut compat_chains = Vec::new();
    for (cname, c) in &t.chains {
        let mut warn = false;
        let Some(h) = c.handle else { continue };
        let base = c
            .policy
            .as_ref()
            .and_then(|pol| builtin_base(name, cname, pol != "DROP"));
        let (rules, chain_warns) = chain_rules(fam, c);
        warn |= chain_warns;
        if warn {
            compat_chains.push(cname.clone());
        }
        chains.push((
            h,
            nft::Chain {
                name: cname.clone(),
                handle: h,
                comment: None,
                base: base.map(Arc::new),
                rules,
            },
        ));
    }
    for fc in &t.foreign_base {
        chains.push((fc.handle, fc.clone()));
    }
    chains.sort_by_key(|(h, _)| *h);
    (
        nft::Table {
            family: nft_family(fam),
            name: name.to_string(),
            handle: t.handle,
            dormant: false,
            comment: None,
            last_handle: t.last_handle,
            chains: chains.into_iter().map(|(_, c)| c).collect(),
            sets: t.foreign_sets.clone(),
        },
        compat_chains,
    )
}

/// A change nft made to an iptables-nft table that the simulator cannot
/// carry back into iptables terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command not simulated: {0}")]
pub struct NotSimulated(pub String);

/// Mirror both iptables states into the nft ruleset. Fails (changing
/// nothing) if iptables wrote to a table nft created itself.
pub fn sync_to_nft(
    nft: &mut NftState,
    v4: &XtablesState,
    v6: &XtablesState,
) -> Result<(), NotSimulated> {
    let old_marks: Vec<XtTable> = nft.xt_tables().to_vec();
    let is_mirror = |f: nft::Family, n: &str, h: u64| {
        old_marks
            .iter()
            .any(|m| m.family == f && m.name == n && m.handle == h)
    };
    let mut marks = Vec::new();
    let mut mirrors = Vec::new();
    for x in [v4, v6] {
        for (name, t) in &x.tables {
            let (table, compat_chains) = mirror_table(x.family, name, t);
            marks.push(XtTable {
                family: table.family,
                name: name.clone(),
                handle: t.handle,
                warn: !compat_chains.is_empty(),
                compat_chains,
            });
            mirrors.push(table);
        }
    }
    // A table of the same name that nft created itself is not simulated.
    for m in &mirrors {
        if let Some(own) = nft
            .tables()
            .iter()
            .find(|t| t.family == m.family && t.name == m.name && t.handle != m.handle)
        {
            if !is_mirror(own.family, &own.name, own.handle) {
                return Err(NotSimulated(format!(
                    "iptables on table {} {}, which nft created",
                    own.family.as_str(),
                    own.name
                )));
            }
        }
    }
    let tables = nft.tables_mut();
    tables.retain(|t| {
        !is_mirror(t.family, &t.name, t.handle)
            || mirrors
                .iter()
                .any(|m| m.family == t.family && m.name == t.name && m.handle == t.handle)
    });
    for m in mirrors {
        match tables
            .iter_mut()
            .find(|t| t.family == m.family && t.name == m.name && t.handle == m.handle)
        {
            Some(t) => *t = Arc::new(m),
            None => {
                // Kernel order is creation order, that is handle order.
                let pos = tables
                    .iter()
                    .position(|t| t.handle > m.handle)
                    .unwrap_or(tables.len());
                tables.insert(pos, Arc::new(m));
            }
        }
    }
    nft.set_xt_tables(marks);
    Ok(())
}

/// Carry what an nft command did to the mirrored iptables tables back into
/// the iptables states.
pub fn sync_from_nft(
    nft: &NftState,
    v4: &mut XtablesState,
    v6: &mut XtablesState,
) -> Result<(), NotSimulated> {
    for x in [v4, v6] {
        let fam = nft_family(x.family);
        let names: Vec<String> = x.tables.keys().cloned().collect();
        for name in names {
            let Some(xt) = x.tables.get_mut(&name) else {
                continue;
            };
            let Some(nt) = nft
                .tables()
                .iter()
                .find(|t| t.family == fam && t.name == name && t.handle == xt.handle)
            else {
                x.tables.remove(&name);
                continue;
            };
            carry_table(fam, &name, nt, xt)?;
        }
    }
    Ok(())
}

/// The builtin chain names of iptables table `name` (none for a table
/// iptables does not know).
fn builtin_chain_names(name: &str) -> Vec<&'static str> {
    iptables::unborn_table(name)
        .map(|t| {
            ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
                .into_iter()
                .filter(|c| t.chains.contains_key(*c))
                .collect()
        })
        .unwrap_or_default()
}

/// iptables (or ip6tables) `x` about to run a command: every table nft
/// created itself under a name iptables knows (`filter`, `nat`, ...) is, in
/// the kernel, the table iptables will read and write — take it over: its
/// chains and rules become iptables objects (read back as iptables-nft
/// reads them), its unknown base chains stay nft's, and it is mirrored from
/// then on like a table iptables created. A table whose carry-over is not
/// simulated is left as it is.
pub fn adopt_nft_tables(nft: &mut NftState, x: &mut XtablesState) -> Result<(), NotSimulated> {
    let fam = nft_family(x.family);
    let marks = nft.xt_tables();
    let mut adopted = Vec::new();
    for t in nft.tables() {
        if t.family != fam
            || x.tables.contains_key(&t.name)
            || marks
                .iter()
                .any(|m| m.family == fam && m.name == t.name && m.handle == t.handle)
        {
            continue;
        }
        let Some(mut xt) = iptables::unborn_table(&t.name) else {
            continue;
        };
        xt.handle = t.handle;
        xt.last_handle = t.last_handle;
        // A table whose carry-over is not simulated stays nft's: a write to
        // it is refused (see the iptables dispatch), other tables work.
        if carry_table(fam, &t.name, t, &mut xt).is_ok() {
            adopted.push((t.name.clone(), xt));
        }
    }
    if adopted.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = adopted.iter().map(|(n, _)| n.clone()).collect();
    for (n, t) in adopted {
        x.tables.insert(n, t);
    }
    // The mirrors take the nft tables' places (same handles).
    nft.tables_mut()
        .retain(|t| !(t.family == fam && names.contains(&t.name)));
    sync_changed_to_nft(nft, x, &names)
}

fn carry_table(
    fam: nft::Family,
    name: &str,
    nt: &nft::Table,
    xt: &mut iptables::Table,
) -> Result<(), NotSimulated> {
    let ns = |what: String| NotSimulated(format!("{what} in table {} {name}", fam.as_str()));
    let xfam = match fam {
        nft::Family::Ip6 => XtFamily::V6,
        _ => XtFamily::V4,
    };
    xt.last_handle = xt.last_handle.max(nt.last_handle);
    // Chains nft deleted or renamed.
    let cnames: Vec<String> = xt.chains.keys().cloned().collect();
    for cname in cnames {
        let Some(xc) = xt.chains.get_mut(&cname) else {
            continue;
        };
        let Some(h) = xc.handle else { continue };
        match nt.chains.iter().find(|c| c.handle == h) {
            None if xc.policy.is_some() => {
                // A deleted builtin chain reverts to "not in the kernel".
                xc.handle = None;
                xc.rules.clear();
                xc.policy = Some("ACCEPT".into());
            }
            None => {
                xt.chains.remove(&cname);
            }
            Some(nc) if nc.name != cname => {
                return Err(ns(format!("nft renamed chain {cname}")));
            }
            Some(_) => {}
        }
    }
    // Base chains under names iptables does not know stay nft's own
    // (iptables calls the table's base chains incompatible and leaves them).
    let builtin_names = builtin_chain_names(name);
    let foreign = |nc: &nft::Chain| {
        nc.base.is_some()
            && !builtin_names.contains(&nc.name.as_str())
            && !xt.chains.contains_key(&nc.name)
    };
    let foreign_now: Vec<nft::Chain> = nt.chains.iter().filter(|c| foreign(c)).cloned().collect();
    let foreign_handles: Vec<u64> = foreign_now.iter().map(|c| c.handle).collect();
    xt.foreign_base = foreign_now;
    xt.foreign_sets = nt.sets.clone();
    // Chains nft added.
    for nc in &nt.chains {
        if xt.chains.values().any(|c| c.handle == Some(nc.handle))
            || foreign_handles.contains(&nc.handle)
        {
            continue;
        }
        match (&nc.base, xt.chains.get_mut(&nc.name)) {
            (None, None) => {
                xt.chains.insert(
                    nc.name.clone(),
                    iptables::Chain {
                        policy: None,
                        rules: Vec::new(),
                        handle: Some(nc.handle),
                    },
                );
            }
            (Some(b), Some(xc)) if xc.handle.is_none() && xc.policy.is_some() => {
                if builtin_base(name, &nc.name, b.policy_accept).as_ref() != Some(b) {
                    return Err(ns(format!("nft base chain {} of another type", nc.name)));
                }
                xc.handle = Some(nc.handle);
            }
            _ => return Err(ns(format!("nft chain {}", nc.name))),
        }
    }
    // Policies and rules, in nft's order: rules nft added are translated
    // back to iptables where iptables-nft can (and refused otherwise).
    for nc in &nt.chains {
        if foreign_handles.contains(&nc.handle) {
            continue;
        }
        let Some(xc) = xt.chains.get_mut(&nc.name) else {
            continue;
        };
        if let (Some(pol), Some(b)) = (xc.policy.as_mut(), nc.base.as_ref()) {
            *pol = if b.policy_accept { "ACCEPT" } else { "DROP" }.to_string();
        }
        let mut rules = Vec::with_capacity(nc.rules.len());
        for r in nc.rules.iter() {
            if let Some(x) = xc.rules.iter().find(|x| x.handle == r.handle) {
                rules.push(x.clone());
                continue;
            }
            // What iptables-nft cannot read back is kept as an
            // "incompatible" rule, as the kernel keeps it.
            let back = nft_rule_to_iptables(r, xfam)
                .ok()
                .and_then(|argv| iptables::canonical_rule(&argv, xfam).ok());
            let jump = r.jump_targets().next().map(str::to_string);
            rules.push(match back {
                Some((spec, jump)) => iptables::Rule {
                    spec,
                    jump,
                    handle: r.handle,
                    nft_rule: Some(r.clone()),
                    incompatible: false,
                },
                None => iptables::Rule {
                    spec: String::new(),
                    jump,
                    handle: r.handle,
                    nft_rule: Some(r.clone()),
                    incompatible: true,
                },
            });
        }
        xc.rules = rules;
    }
    Ok(())
}

/// The iptables options of a rule nft added, for the statements
/// iptables-nft 1.8.9 reads back as iptables matches and targets
/// (interfaces, addresses, protocol, tcp/udp ports, counter, comment,
/// accept/drop/return/jump/goto). `Err` names the first statement it
/// does not (the real iptables then calls the chain "incompatible").
pub fn nft_rule_to_iptables(r: &nft::Rule, fam: XtFamily) -> Result<Vec<String>, String> {
    let text = r
        .stmts
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let toks: Vec<&str> = text.split_whitespace().collect();
    let addr_kw = match fam {
        XtFamily::V4 => "ip",
        XtFamily::V6 => "ip6",
    };
    let mut pre: Vec<String> = Vec::new();
    let mut proto: Option<(bool, String)> = None;
    let mut ports: Vec<String> = Vec::new();
    let mut target: Vec<String> = Vec::new();
    let mut i = 0;
    let unsupported = |i: usize| format!("statement at \"{}\"", toks[i..].join(" "));
    // `[!=] VALUE` at position j: (negated, value, next position).
    let value = |j: usize| -> Option<(bool, String, usize)> {
        match toks.get(j) {
            Some(&"!=") => toks.get(j + 1).map(|v| (true, v.to_string(), j + 2)),
            Some(v) => Some((false, v.to_string(), j + 1)),
            None => None,
        }
    };
    let bang = |neg: bool, out: &mut Vec<String>| {
        if neg {
            out.push("!".into());
        }
    };
    while i < toks.len() {
        if !target.is_empty() {
            return Err(unsupported(i));
        }
        match (toks[i], toks.get(i + 1).copied()) {
            ("iifname" | "oifname", _) => {
                let (neg, v, next) = value(i + 1).ok_or_else(|| unsupported(i))?;
                let v = v.trim_matches('"');
                if v.starts_with('{') {
                    return Err(unsupported(i));
                }
                let v = match v.strip_suffix('*') {
                    Some(b) => format!("{b}+"),
                    None => v.to_string(),
                };
                bang(neg, &mut pre);
                pre.push(if toks[i] == "iifname" { "-i" } else { "-o" }.into());
                pre.push(v);
                i = next;
            }
            (kw, Some(dir @ ("saddr" | "daddr"))) if kw == addr_kw => {
                let (neg, v, next) = value(i + 2).ok_or_else(|| unsupported(i))?;
                if v.starts_with('{') || v.starts_with('@') || v == "&" {
                    return Err(unsupported(i));
                }
                bang(neg, &mut pre);
                pre.push(if dir == "saddr" { "-s" } else { "-d" }.into());
                pre.push(v);
                i = next;
            }
            ("meta", Some("l4proto")) | ("ip", Some("protocol")) => {
                if toks[i] == "ip" && fam != XtFamily::V4 {
                    return Err(unsupported(i));
                }
                let (neg, v, next) = value(i + 2).ok_or_else(|| unsupported(i))?;
                if v.starts_with('{') || proto.is_some() {
                    return Err(unsupported(i));
                }
                proto = Some((neg, v));
                i = next;
            }
            (p @ ("tcp" | "udp"), Some(dir @ ("sport" | "dport"))) => {
                let (neg, v, next) = value(i + 2).ok_or_else(|| unsupported(i))?;
                if v.starts_with('{') || v.starts_with('@') {
                    return Err(unsupported(i));
                }
                match &proto {
                    None => proto = Some((false, p.to_string())),
                    Some((false, q)) if q == p => {}
                    _ => return Err(unsupported(i)),
                }
                bang(neg, &mut ports);
                ports.push(if dir == "sport" { "--sport" } else { "--dport" }.into());
                ports.push(v.replace('-', ":"));
                i = next;
            }
            ("counter", _) => {
                i += 1;
                if toks.get(i) == Some(&"packets") {
                    i += 4;
                }
            }
            ("accept" | "drop" | "return", _) => {
                target.push("-j".into());
                target.push(toks[i].to_ascii_uppercase());
                i += 1;
            }
            ("jump" | "goto", Some(chain)) => {
                target.push(if toks[i] == "jump" { "-j" } else { "-g" }.into());
                target.push(chain.to_string());
                i += 2;
            }
            _ => return Err(unsupported(i)),
        }
    }
    let mut argv = pre;
    if let Some((neg, p)) = proto {
        bang(neg, &mut argv);
        argv.push("-p".into());
        argv.push(p);
    }
    argv.extend(ports);
    if let Some(c) = &r.comment {
        argv.extend(["-m".into(), "comment".into(), "--comment".into(), c.clone()]);
    }
    argv.extend(target);
    Ok(argv)
}

/// [`sync_to_nft`] for one iptables state whose tables `changed` (by name)
/// are the only ones that differ from the last mirror: the other tables'
/// mirrors are left as they are, so an iptables command costs what it
/// changed, not the size of the whole ruleset. Fails (changing nothing) if
/// iptables wrote to a table nft created itself.
pub fn sync_changed_to_nft(
    nft: &mut NftState,
    x: &XtablesState,
    changed: &[String],
) -> Result<(), NotSimulated> {
    let fam = nft_family(x.family);
    let mut marks: Vec<XtTable> = nft.xt_tables().to_vec();
    let mut mirrors = Vec::new();
    for name in changed {
        if let Some(t) = x.tables.get(name) {
            let (table, compat_chains) = mirror_table(x.family, name, t);
            if let Some(own) = nft
                .tables()
                .iter()
                .find(|o| o.family == fam && o.name == *name && o.handle != t.handle)
            {
                let mirrored = marks
                    .iter()
                    .any(|m| m.family == fam && m.name == own.name && m.handle == own.handle);
                if !mirrored {
                    return Err(NotSimulated(format!(
                        "iptables on table {} {}, which nft created",
                        own.family.as_str(),
                        own.name
                    )));
                }
            }
            mirrors.push((table, compat_chains));
        }
    }
    // Drop the old mirrors (and marks) of every changed table.
    let stale: Vec<(String, u64)> = marks
        .iter()
        .filter(|m| m.family == fam && changed.contains(&m.name))
        .map(|m| (m.name.clone(), m.handle))
        .collect();
    marks.retain(|m| !(m.family == fam && changed.contains(&m.name)));
    let tables = nft.tables_mut();
    tables
        .retain(|t| t.family != fam || !stale.iter().any(|(n, h)| *n == t.name && *h == t.handle));
    for (m, compat_chains) in mirrors {
        marks.push(XtTable {
            family: m.family,
            name: m.name.clone(),
            handle: m.handle,
            warn: !compat_chains.is_empty(),
            compat_chains,
        });
        // Kernel order is creation order, that is handle order.
        let pos = tables
            .iter()
            .position(|t| t.handle > m.handle)
            .unwrap_or(tables.len());
        tables.insert(pos, Arc::new(m));
    }
    // Marks in the order the full sync gives: IPv4 tables, then IPv6, each
    // by name.
    marks.sort_by(|a, b| {
        let fa = a.family != nft::Family::Ip;
        let fb = b.family != nft::Family::Ip;
        fa.cmp(&fb).then_with(|| a.name.cmp(&b.name))
    });
    nft.set_xt_tables(marks);
    Ok(())
}
