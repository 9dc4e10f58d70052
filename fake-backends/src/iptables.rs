//! Simulated `iptables` / `ip6tables` (the nf_tables variant, v1.8.9, as
//! installed on the reference host).
//!
//! The state is a set of tables, each with its builtin chains (and their
//! policies) and user chains; every rule is kept in the canonical text form
//! that `iptables -S` and `iptables-save` print (`-p tcp --dport 53` becomes
//! `-p tcp -m tcp --dport 53`, addresses are masked and get a prefix length,
//! long options become short ones). Deleting or checking a rule by
//! specification compares canonical forms, as the kernel compares the
//! compiled rule.
//!
//! Like the nf_tables variant, a table only comes into existence when a
//! command writes to it (`-N`, `-A`, `-I`, `-R`, `-P`); until then `-S`
//! shows the builtin policies, `iptables-save` omits it, and commands naming
//! one of its builtin chains fail with "No chain/target/match by that name.".
//!
//! Error messages and exit statuses are those of iptables v1.8.9 (nf_tables),
//! collected by running the real tool in a fresh network namespace
//! (see `tests/differential.rs`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use virtnet_runner::Output;

/// Address family of an iptables state: `iptables` or `ip6tables`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The program name used in messages.
    pub fn prog(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// One rule, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule as `iptables -S` prints it after `-A CHAIN `.
    pub spec: String,
    /// The user chain this rule jumps or goes to, if any (for reference
    /// counting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// The rule's nftables handle (from its table's counter), as
    /// `nft -a list` shows it.
    #[serde(default)]
    pub handle: u64,
    /// For a rule nft added (`nft add rule` into an iptables-nft table):
    /// the rule as nft keeps it, which nft lists instead of the
    /// translation of `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nft_rule: Option<crate::nft::Rule>,
    /// A rule nft added that iptables-nft cannot read back (`ct state`,
    /// `reject`, sets, ...): it makes its chain and table "incompatible"
    /// for listing, never matches a rule specification, and has no `spec`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incompatible: bool,
}

/// One chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Chain {
    /// `Some(policy)` for a builtin chain, `None` for a user chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub rules: Vec<Rule>,
    /// The chain's nftables handle. iptables-nft creates a builtin chain
    /// in the kernel only when a command writes to it (`-A`, `-I`, `-R`,
    /// `-P`): until then it is `None` and nft does not list it. User chains
    /// always have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
}

/// One existing table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Table {
    /// All chains by name (builtin and user).
    pub chains: BTreeMap<String, Chain>,
    /// The table's nftables handle (from the namespace-wide table counter
    /// shared with nft's own tables).
    #[serde(default)]
    pub handle: u64,
    /// Last handle given to a chain or rule of this table (the kernel's
    /// per-table counter).
    #[serde(default)]
    pub last_handle: u64,
    /// Base chains nft created in this table under names iptables does not
    /// know (e.g. `chain input { type filter hook input ... }` in a `table
    /// ip filter` nft made): iptables leaves them alone and only says the
    /// table "contains incompatible base-chains"; nft lists them as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_base: Vec<crate::nft::Chain>,
    /// Sets nft created in this table (iptables does not see them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_sets: Vec<crate::nft::Set>,
}

/// The line iptables prints before listing a table that holds base chains
/// it does not know (see [`Table::foreign_base`]).
fn foreign_base_note(t: Option<&Table>, table: &str) -> String {
    match t {
        Some(t) if !t.foreign_base.is_empty() => format!(
            "# Table `{table}' contains incompatible base-chains, use 'nft' tool to list them.\n"
        ),
        _ => String::new(),
    }
}

impl Table {
    /// Next chain/rule handle of this table.
    pub fn alloc_handle(&mut self) -> u64 {
        self.last_handle += 1;
        self.last_handle
    }

    /// Make sure a chain exists in the kernel (a builtin chain is created on
    /// first write), returning whether it had to be created.
    fn instantiate(&mut self, chain: &str) -> bool {
        let needs = self.chains.get(chain).is_some_and(|c| c.handle.is_none());
        if needs {
            let h = self.alloc_handle();
            if let Some(c) = self.chains.get_mut(chain) {
                c.handle = Some(h);
            }
        }
        needs
    }
}

/// The iptables (or ip6tables) state of one simulated network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XtablesState {
    pub family: Family,
    /// Tables that exist (have been written to), by name.
    pub tables: BTreeMap<String, Table>,
}

/// The table an iptables command addressed, and whether it may have
/// written to it (see [`XtablesState::exec_addressed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    pub table: String,
    pub writes: bool,
}

/// Builtin tables in `iptables-save` order, with their builtin chains in
/// `-S` order.
const TABLES: &[(&str, &[&str])] = &[
    (
        "mangle",
        &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    ),
    ("security", &["INPUT", "FORWARD", "OUTPUT"]),
    ("raw", &["PREROUTING", "OUTPUT"]),
    ("filter", &["INPUT", "FORWARD", "OUTPUT"]),
    ("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
];

/// Table `name` as iptables shows one that no command created yet: its
/// builtin chains with ACCEPT policies, none in the kernel. `None` for a
/// table iptables does not know.
pub fn unborn_table(name: &str) -> Option<Table> {
    let mut t = Table::default();
    for c in builtin_chains(name)? {
        t.chains.insert(
            (*c).to_string(),
            Chain {
                policy: Some("ACCEPT".into()),
                rules: Vec::new(),
                handle: None,
            },
        );
    }
    Some(t)
}

fn builtin_chains(table: &str) -> Option<&'static [&'static str]> {
    TABLES.iter().find(|(t, _)| *t == table).map(|(_, c)| *c)
}

const VERSION: &str = "v1.8.9 (nf_tables)";

/// Targets the simulator knows besides user chains.
const STD_TARGETS: &[&str] = &["ACCEPT", "DROP", "RETURN", "QUEUE"];

#[derive(Debug, Clone)]
enum Fail {
    /// Parameter problem: exit 2 with the "Try ..." trailer.
    Param(String),
    /// Parameter problem whose message carries its own trailing newline
    /// (an empty line precedes the "Try" line).
    ParamNl(String),
    /// Bare "Bad argument" message (exit 2, no program prefix).
    BadArg(String),
    /// A kernel/library error: `iptables: MSG.` exit 1.
    Other(String),
    /// A netlink batch error: `iptables v1.8.9 (nf_tables):  MSG` exit 4.
    Netlink(String),
    /// `iptables v1.8.9 (nf_tables): MSG` exit 1.
    Versioned(String),
    /// Table does not exist: exit 3.
    NoTable(String),
}

impl Fail {
    fn output(self, fam: Family) -> Output {
        let prog = fam.prog();
        let try_line = format!("Try `{prog} -h' or '{prog} --help' for more information.\n");
        match self {
            Fail::Param(m) => Output::failed(2, format!("{prog} {VERSION}: {m}\n{try_line}")),
            Fail::ParamNl(m) => Output::failed(2, format!("{prog} {VERSION}: {m}\n\n{try_line}")),
            Fail::BadArg(a) => Output::failed(2, format!("Bad argument `{a}'\n{try_line}")),
            Fail::Other(m) => Output::failed(1, format!("{prog}: {m}.\n")),
            Fail::Versioned(m) => Output::failed(1, format!("{prog} {VERSION}: {m}\n")),
            Fail::Netlink(m) => Output::failed(4, format!("{prog} {VERSION}:  {m}\n")),
            Fail::NoTable(t) => Output::failed(
                3,
                format!(
                    "{prog} {VERSION}: table '{t}' does not exist\nPerhaps iptables or your kernel needs to be upgraded.\n"
                ),
            ),
        }
    }
}

const NO_CHAIN: &str = "No chain/target/match by that name";
const BAD_RULE: &str = "Bad rule (does a matching rule exist in that chain?)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmdKind {
    Append,
    Insert,
    Delete,
    Check,
    Replace,
    NewChain,
    DeleteChain,
    Flush,
    Zero,
    List,
    ListRules,
    Policy,
    Rename,
}

impl CmdKind {
    fn letter(self) -> char {
        match self {
            CmdKind::Append => 'A',
            CmdKind::Insert => 'I',
            CmdKind::Delete => 'D',
            CmdKind::Check => 'C',
            CmdKind::Replace => 'R',
            CmdKind::NewChain => 'N',
            CmdKind::DeleteChain => 'X',
            CmdKind::Flush => 'F',
            CmdKind::Zero => 'Z',
            CmdKind::List => 'L',
            CmdKind::ListRules => 'S',
            CmdKind::Policy => 'P',
            CmdKind::Rename => 'E',
        }
    }
    fn takes_rule(self) -> bool {
        matches!(
            self,
            CmdKind::Append | CmdKind::Insert | CmdKind::Delete | CmdKind::Check | CmdKind::Replace
        )
    }
}

fn command_of(opt: &str) -> Option<CmdKind> {
    Some(match opt {
        "-A" | "--append" => CmdKind::Append,
        "-I" | "--insert" => CmdKind::Insert,
        "-D" | "--delete" => CmdKind::Delete,
        "-C" | "--check" => CmdKind::Check,
        "-R" | "--replace" => CmdKind::Replace,
        "-N" | "--new-chain" | "--new" => CmdKind::NewChain,
        "-X" | "--delete-chain" => CmdKind::DeleteChain,
        "-F" | "--flush" => CmdKind::Flush,
        "-Z" | "--zero" => CmdKind::Zero,
        "-L" | "--list" => CmdKind::List,
        "-S" | "--list-rules" => CmdKind::ListRules,
        "-P" | "--policy" => CmdKind::Policy,
        "-E" | "--rename-chain" => CmdKind::Rename,
        _ => return None,
    })
}

/// A match or target extension instance: name plus canonical options.
#[derive(Debug, Clone, Default)]
struct Ext {
    name: String,
    /// (option, negated, canonical value or None for flags), in the order
    /// the option was given; rendering reorders per extension.
    opts: Vec<(String, bool, Option<String>)>,
}

/// Parsed rule specification.
#[derive(Debug, Clone, Default)]
struct Spec {
    src: Option<(bool, String)>,
    dst: Option<(bool, String)>,
    iif: Option<(bool, String)>,
    oif: Option<(bool, String)>,
    proto: Option<(bool, String)>,
    frag: Option<bool>,
    matches: Vec<Ext>,
    target: Option<Ext>,
    goto: bool,
}

/// An extension's option table: canonical option name, aliases, whether it
/// takes a value, whether it may be negated.
struct OptDef {
    name: &'static str,
    aliases: &'static [&'static str],
    has_value: bool,
}

const fn o(name: &'static str, aliases: &'static [&'static str], has_value: bool) -> OptDef {
    OptDef {
        name,
        aliases,
        has_value,
    }
}

const TCP_OPTS: &[OptDef] = &[
    o("--sport", &["--source-port"], true),
    o("--dport", &["--destination-port"], true),
    o("--tcp-flags", &[], true),
    o("--syn", &[], false),
];
const UDP_OPTS: &[OptDef] = &[
    o("--sport", &["--source-port"], true),
    o("--dport", &["--destination-port"], true),
];
const ICMP_OPTS: &[OptDef] = &[o("--icmp-type", &[], true)];
const ICMP6_OPTS: &[OptDef] = &[o("--icmpv6-type", &[], true)];
const MARK_OPTS: &[OptDef] = &[o("--mark", &[], true)];
const MARK_TARGET_OPTS: &[OptDef] = &[
    o("--set-xmark", &[], true),
    o("--set-mark", &[], true),
    o("--and-mark", &[], true),
    o("--or-mark", &[], true),
    o("--xor-mark", &[], true),
];
const CONNTRACK_OPTS: &[OptDef] = &[o("--ctstate", &[], true), o("--ctstatus", &[], true)];
const STATE_OPTS: &[OptDef] = &[o("--state", &[], true)];
const COMMENT_OPTS: &[OptDef] = &[o("--comment", &[], true)];
const ADDRTYPE_OPTS: &[OptDef] = &[
    o("--src-type", &[], true),
    o("--dst-type", &[], true),
    o("--limit-iface-in", &[], false),
    o("--limit-iface-out", &[], false),
];
const MULTIPORT_OPTS: &[OptDef] = &[
    o("--sports", &["--source-ports"], true),
    o("--dports", &["--destination-ports"], true),
    o("--ports", &[], true),
];
const REJECT_OPTS: &[OptDef] = &[o("--reject-with", &[], true)];
const MASQ_OPTS: &[OptDef] = &[
    o("--to-ports", &[], true),
    o("--random", &[], false),
    o("--random-fully", &[], false),
];
const SNAT_OPTS: &[OptDef] = &[
    o("--to-source", &[], true),
    o("--random", &[], false),
    o("--random-fully", &[], false),
    o("--persistent", &[], false),
];
const DNAT_OPTS: &[OptDef] = &[
    o("--to-destination", &[], true),
    o("--random", &[], false),
    o("--persistent", &[], false),
];
const CHECKSUM_OPTS: &[OptDef] = &[o("--checksum-fill", &[], false)];
const LOG_OPTS: &[OptDef] = &[o("--log-prefix", &[], true), o("--log-level", &[], true)];
const NO_OPTS: &[OptDef] = &[];

fn match_opts(name: &str) -> Option<&'static [OptDef]> {
    Some(match name {
        "tcp" => TCP_OPTS,
        "udp" => UDP_OPTS,
        "conntrack" => CONNTRACK_OPTS,
        "state" => STATE_OPTS,
        "comment" => COMMENT_OPTS,
        "addrtype" => ADDRTYPE_OPTS,
        "multiport" => MULTIPORT_OPTS,
        "icmp" => ICMP_OPTS,
        "icmp6" => ICMP6_OPTS,
        "mark" => MARK_OPTS,
        _ => return None,
    })
}

/// The match `-p PROTO` loads implicitly for its options.
fn implicit_match(proto: &str) -> &str {
    match proto {
        "ipv6-icmp" => "icmp6",
        p => p,
    }
}

fn target_opts(name: &str) -> Option<&'static [OptDef]> {
    Some(match name {
        "REJECT" => REJECT_OPTS,
        "MASQUERADE" => MASQ_OPTS,
        "SNAT" => SNAT_OPTS,
        "DNAT" => DNAT_OPTS,
        "CHECKSUM" => CHECKSUM_OPTS,
        "LOG" => LOG_OPTS,
        "MARK" => MARK_TARGET_OPTS,
        _ => return None,
    })
}

fn find_opt<'a>(defs: &'a [OptDef], opt: &str) -> Option<&'a OptDef> {
    defs.iter()
        .find(|d| d.name == opt || d.aliases.contains(&opt))
}

fn proto_name(p: &str) -> Option<&'static str> {
    let lower = p.to_ascii_lowercase();
    Some(match lower.as_str() {
        "all" | "0" => "all",
        "tcp" | "6" => "tcp",
        "udp" | "17" => "udp",
        "icmp" | "1" => "icmp",
        "icmpv6" | "ipv6-icmp" | "58" => "ipv6-icmp",
        "sctp" | "132" => "sctp",
        "udplite" | "136" => "udplite",
        "esp" | "50" => "esp",
        "ah" | "51" => "ah",
        "gre" | "47" => "gre",
        _ => return None,
    })
}

fn proto_number(p: &str) -> u8 {
    match p {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "ipv6-icmp" => 58,
        "sctp" => 132,
        "udplite" => 136,
        "esp" => 50,
        "ah" => 51,
        "gre" => 47,
        _ => 0,
    }
}

const SERVICES: &[(&str, u16)] = &[
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("http", 80),
    ("ntp", 123),
    ("https", 443),
    ("dhcpv6-client", 546),
    ("dhcpv6-server", 547),
];

fn parse_port(s: &str) -> Option<u16> {
    if let Ok(n) = s.parse::<u32>() {
        return u16::try_from(n).ok();
    }
    SERVICES.iter().find(|(n, _)| *n == s).map(|(_, p)| *p)
}

fn service_name(p: u16) -> Option<&'static str> {
    SERVICES.iter().find(|(_, n)| *n == p).map(|(s, _)| *s)
}

fn canon_port_range(s: &str, sep: char) -> Result<String, Fail> {
    let bad = || Fail::Param(format!("invalid port/service `{s}' specified"));
    let mut parts = s.splitn(2, sep);
    let a = parts.next().unwrap_or("");
    let a = parse_port(a).ok_or_else(bad)?;
    match parts.next() {
        None => Ok(a.to_string()),
        Some(b) => {
            let b = if b.is_empty() {
                65535
            } else {
                parse_port(b).ok_or_else(bad)?
            };
            Ok(format!("{a}{sep}{b}"))
        }
    }
}

const CT_STATES: &[&str] = &[
    "INVALID",
    "NEW",
    "RELATED",
    "ESTABLISHED",
    "UNTRACKED",
    "SNAT",
    "DNAT",
];

fn canon_ctstate(s: &str) -> Result<String, Fail> {
    let mut seen = [false; 7];
    for part in s.split(',') {
        let up = part.to_ascii_uppercase();
        match CT_STATES.iter().position(|x| *x == up) {
            Some(i) => seen[i] = true,
            None => return Err(Fail::Param(format!("Bad ctstate \"{part}\""))),
        }
    }
    Ok(CT_STATES
        .iter()
        .zip(seen)
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(","))
}

const ADDR_TYPES: &[&str] = &[
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
];

const REJECT4: &[&str] = &[
    "icmp-net-unreachable",
    "icmp-host-unreachable",
    "icmp-port-unreachable",
    "icmp-proto-unreachable",
    "icmp-net-prohibited",
    "icmp-host-prohibited",
    "icmp-admin-prohibited",
    "tcp-reset",
];
const REJECT6: &[&str] = &[
    "icmp6-no-route",
    "icmp6-adm-prohibited",
    "icmp6-addr-unreachable",
    "icmp6-port-unreachable",
    "tcp-reset",
    "icmp6-policy-fail",
    "icmp6-reject-route",
];

/// Canonicalise an address with optional `/len` or `/mask`: the address
/// is masked; a contiguous mask prints as a prefix length.
fn canon_addr(s: &str, fam: Family) -> Result<Option<String>, Fail> {
    let (addr, mask) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let not_found = || Fail::Param(format!("host/network `{addr}' not found"));
    match fam {
        Family::V4 => {
            let ip: Ipv4Addr = addr.parse().map_err(|_| not_found())?;
            let (maskbits, text_mask): (u32, Option<String>) = match mask {
                None => (u32::MAX, None),
                Some(m) if m.contains('.') => {
                    let mip: Ipv4Addr = m
                        .parse()
                        .map_err(|_| Fail::Param(format!("invalid mask `{m}' specified")))?;
                    let bits = u32::from(mip);
                    if bits.leading_ones() + bits.trailing_zeros() == 32 {
                        (bits, None)
                    } else {
                        (bits, Some(mip.to_string()))
                    }
                }
                Some(m) => {
                    let len: u32 = m
                        .parse()
                        .ok()
                        .filter(|l| *l <= 32)
                        .ok_or_else(|| Fail::Param(format!("invalid mask `{m}' specified")))?;
                    let bits = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    (bits, None)
                }
            };
            if maskbits == 0 {
                return Ok(None);
            }
            let net = Ipv4Addr::from(u32::from(ip) & maskbits);
            Ok(Some(match text_mask {
                Some(m) => format!("{net}/{m}"),
                None => format!("{net}/{}", maskbits.leading_ones()),
            }))
        }
        Family::V6 => {
            let ip: Ipv6Addr = addr.parse().map_err(|_| not_found())?;
            let len: u32 = match mask {
                None => 128,
                Some(m) => m
                    .parse()
                    .ok()
                    .filter(|l| *l <= 128)
                    .ok_or_else(|| Fail::Param(format!("invalid mask `{m}' specified")))?,
            };
            if len == 0 {
                return Ok(None);
            }
            let bits: u128 = if len == 128 {
                u128::MAX
            } else {
                !(u128::MAX >> len)
            };
            let net = Ipv6Addr::from(u128::from(ip) & bits);
            Ok(Some(format!("{net}/{len}")))
        }
    }
}

/// Quote a value the way iptables-save does: double quotes when it contains
/// whitespace or quotes, with `"` and `\` escaped.
fn save_quote(v: &str) -> String {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'')
    {
        let mut s = String::from("\"");
        for c in v.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    } else {
        v.to_string()
    }
}

impl Spec {
    /// Canonical text, as after `-A CHAIN ` in `iptables -S`.
    fn render(&self, fam: Family) -> String {
        let mut out: Vec<String> = Vec::new();
        let push = |neg: bool, opt: &str, val: &str, out: &mut Vec<String>| {
            if neg {
                out.push("!".into());
            }
            out.push(opt.into());
            out.push(val.into());
        };
        if let Some((n, v)) = &self.src {
            push(*n, "-s", v, &mut out);
        }
        if let Some((n, v)) = &self.dst {
            push(*n, "-d", v, &mut out);
        }
        if let Some((n, v)) = &self.iif {
            push(*n, "-i", v, &mut out);
        }
        if let Some((n, v)) = &self.oif {
            push(*n, "-o", v, &mut out);
        }
        if let Some((n, v)) = &self.proto {
            push(*n, "-p", v, &mut out);
        }
        if let Some(n) = self.frag {
            if n {
                out.push("!".into());
            }
            out.push("-f".into());
        }
        for m in &self.matches {
            out.push("-m".into());
            out.push(m.name.clone());
            let defs = match_opts(&m.name).unwrap_or(NO_OPTS);
            render_ext_opts(m, defs, &mut out);
        }
        if let Some(t) = &self.target {
            out.push(if self.goto { "-g" } else { "-j" }.into());
            out.push(t.name.clone());
            let defs = target_opts(&t.name).unwrap_or(NO_OPTS);
            let mut t = t.clone();
            if t.name == "REJECT" && !t.opts.iter().any(|o| o.0 == "--reject-with") {
                let def = match fam {
                    Family::V4 => "icmp-port-unreachable",
                    Family::V6 => "icmp6-port-unreachable",
                };
                t.opts
                    .push(("--reject-with".into(), false, Some(def.into())));
            }
            render_ext_opts(&t, defs, &mut out);
        }
        out.join(" ")
    }
}

fn render_ext_opts(e: &Ext, defs: &[OptDef], out: &mut Vec<String>) {
    for d in defs {
        for (name, neg, val) in &e.opts {
            if name != d.name {
                continue;
            }
            if *neg {
                out.push("!".into());
            }
            out.push(name.clone());
            match val {
                // Two words: the mask and the flags that must be set.
                Some(v) if name == "--tcp-flags" => out.push(v.clone()),
                Some(v) => out.push(save_quote(v)),
                None => {}
            }
        }
    }
}

struct Parsed {
    table: String,
    cmd: CmdKind,
    chain: Option<String>,
    /// Second positional: rule number, policy or new chain name.
    arg2: Option<String>,
    spec: Spec,
    has_rule_opts: Option<String>,
    numeric: bool,
    verbose: bool,
    /// `-x`: exact counters (wider columns with `-v`).
    exact: bool,
    line_numbers: bool,
}

fn is_option(a: &str) -> bool {
    a.starts_with('-') && a.len() > 1
}

/// The canonical `-S` text of the rule `ARGS` (rule options only, as
/// after `-A CHAIN`) and the user chain it jumps to; `Err` with the
/// message iptables would print if they are not a valid rule.
pub(crate) fn canonical_rule(
    args: &[String],
    fam: Family,
) -> Result<(String, Option<String>), String> {
    let mut full = vec!["-A".to_string(), "X".to_string()];
    full.extend(args.iter().cloned());
    let p = parse(&full, fam).map_err(|f| f.output(fam).stderr)?;
    let jump = p
        .spec
        .target
        .as_ref()
        .map(|t| t.name.clone())
        .filter(|n| !STD_TARGETS.contains(&n.as_str()) && target_opts(n).is_none());
    Ok((p.spec.render(fam), jump))
}

/// A parsed command line, and the canonical text of its rule once asked for.
struct ParseMemo {
    parsed: Result<Parsed, Fail>,
    spec_text: std::sync::OnceLock<String>,
}

/// [`parse`] through a per-thread memo keyed by the arguments: parsing is
/// a function of the argument list and the family alone, and the same rule
/// lines come again and again (every start, rollback and destroy of a
/// network repeats them). Bounded: emptied when it reaches 4096 entries.
fn parse_memo(args: &[String], fam: Family) -> std::sync::Arc<ParseMemo> {
    use crate::memo::Bounded;
    use std::cell::RefCell;
    use std::sync::Arc;
    /// One memo per family (IPv4, IPv6), looked up by the borrowed slice.
    type Memo = [Bounded<Vec<String>, Arc<ParseMemo>>; 2];
    thread_local! {
        static MEMO: RefCell<Memo> = RefCell::new([Bounded::new(4096), Bounded::new(4096)]);
    }
    let slot = usize::from(fam == Family::V6);
    if let Some(hit) = MEMO.with(|m| m.borrow()[slot].get(args).cloned()) {
        return hit;
    }
    let memo = Arc::new(ParseMemo {
        parsed: parse(args, fam),
        spec_text: std::sync::OnceLock::new(),
    });
    MEMO.with(|m| m.borrow_mut()[slot].insert(args.to_vec(), memo.clone()));
    memo
}

fn parse(args: &[String], fam: Family) -> Result<Parsed, Fail> {
    let mut table: Option<String> = None;
    let mut cmd: Option<CmdKind> = None;
    let mut chain = None;
    let mut arg2 = None;
    let mut spec = Spec::default();
    let mut first_rule_opt: Option<String> = None;
    let mut numeric = false;
    let mut verbose = false;
    let mut exact = false;
    let mut line_numbers = false;
    let mut negate = false;
    let mut implicit_proto_loaded = false;
    let mut raw_src: Option<(bool, String)> = None;
    let mut raw_dst: Option<(bool, String)> = None;
    let mut i = 0;
    let need = |i: usize, opt: &str| -> Result<String, Fail> {
        args.get(i + 1)
            .cloned()
            .ok_or_else(|| Fail::Param(format!("option \"{opt}\" requires an argument")))
    };
    while i < args.len() {
        let a = args[i].as_str();
        if a == "!" {
            if negate {
                return Err(Fail::Param("multiple consecutive ! not allowed".into()));
            }
            negate = true;
            i += 1;
            continue;
        }
        if let Some(k) = command_of(a) {
            if let Some(prev) = cmd {
                return Err(Fail::Param(format!(
                    "Cannot use -{} with -{}",
                    k.letter(),
                    prev.letter()
                )));
            }
            cmd = Some(k);
            // Positional arguments of the command.
            let needs_chain = matches!(
                k,
                CmdKind::Append
                    | CmdKind::Insert
                    | CmdKind::Delete
                    | CmdKind::Check
                    | CmdKind::Replace
                    | CmdKind::NewChain
                    | CmdKind::Policy
                    | CmdKind::Rename
            );
            let next_pos = args
                .get(i + 1)
                .filter(|n| !is_option(n) && n.as_str() != "!");
            if needs_chain {
                let c = need(i, a)?;
                if (k == CmdKind::NewChain || k == CmdKind::Rename) && c.starts_with('-') {
                    return Err(Fail::Param(
                        "chain name not allowed to start with `-'".into(),
                    ));
                }
                chain = Some(c);
                i += 2;
            } else if let Some(c) = next_pos {
                chain = Some(c.clone());
                i += 2;
            } else {
                i += 1;
            }
            // Second positional.
            let next = args
                .get(i)
                .filter(|n| !is_option(n) && n.as_str() != "!")
                .cloned();
            match k {
                CmdKind::Insert | CmdKind::Delete => {
                    if let Some(n) = next {
                        if n.chars().all(|c| c.is_ascii_digit()) {
                            arg2 = Some(n);
                            i += 1;
                        }
                    }
                }
                CmdKind::Replace => {
                    let n = next.ok_or_else(|| {
                        Fail::Param(format!("option \"{a}\" requires an argument"))
                    })?;
                    arg2 = Some(n);
                    i += 1;
                }
                CmdKind::List | CmdKind::ListRules | CmdKind::Zero if chain.is_some() => {
                    if let Some(n) = next {
                        arg2 = Some(n);
                        i += 1;
                    }
                }
                CmdKind::Policy | CmdKind::Rename => {
                    let n = next.ok_or_else(|| {
                        Fail::Param(format!("-{} requires old-chain and new-chain", k.letter()))
                    })?;
                    arg2 = Some(n);
                    i += 1;
                }
                _ => {}
            }
            if let Some(n) = &arg2 {
                if matches!(
                    k,
                    CmdKind::Insert
                        | CmdKind::Delete
                        | CmdKind::Replace
                        | CmdKind::List
                        | CmdKind::ListRules
                        | CmdKind::Zero
                ) {
                    match n.parse::<u32>() {
                        Ok(v) if v >= 1 => {}
                        _ => return Err(Fail::Param(format!("Invalid rule number `{n}'"))),
                    }
                }
            }
            continue;
        }
        match a {
            "-w" | "--wait" => {
                if args
                    .get(i + 1)
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
                {
                    i += 1;
                }
                i += 1;
                continue;
            }
            "-W" | "--wait-interval" => {
                need(i, a)?;
                i += 2;
                continue;
            }
            "-t" | "--table" => {
                table = Some(need(i, a)?);
                i += 2;
                continue;
            }
            "-n" | "--numeric" => {
                numeric = true;
                i += 1;
                continue;
            }
            "-v" | "--verbose" => {
                verbose = true;
                i += 1;
                continue;
            }
            "-x" | "--exact" => {
                exact = true;
                i += 1;
                continue;
            }
            "--line-numbers" => {
                line_numbers = true;
                i += 1;
                continue;
            }
            "-4" | "--ipv4" => {
                if fam == Family::V6 {
                    return Err(Fail::Param("This is the IPv6 version of ip6tables.".into()));
                }
                i += 1;
                continue;
            }
            "-6" | "--ipv6" => {
                if fam == Family::V4 {
                    return Err(Fail::Param("This is the IPv4 version of iptables.".into()));
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        // Rule options.
        let neg = std::mem::take(&mut negate);
        let short = match a {
            "-s" | "--source" | "--src" => Some("-s"),
            "-d" | "--destination" | "--dst" => Some("-d"),
            "-i" | "--in-interface" => Some("-i"),
            "-o" | "--out-interface" => Some("-o"),
            "-p" | "--protocol" => Some("-p"),
            "-j" | "--jump" => Some("-j"),
            "-g" | "--goto" => Some("-g"),
            "-m" | "--match" => Some("-m"),
            "-f" | "--fragment" => Some("-f"),
            _ => None,
        };
        if let Some(s) = short {
            if first_rule_opt.is_none() {
                first_rule_opt = Some(s.to_string());
            }
            if s == "-f" {
                spec.frag = Some(neg);
                i += 1;
                continue;
            }
            let v = need(i, a)?;
            i += 2;
            let dup = |set: bool| -> Result<(), Fail> {
                if set {
                    Err(Fail::Param(format!("multiple {s} flags not allowed")))
                } else {
                    Ok(())
                }
            };
            match s {
                // Addresses are resolved after all options are parsed.
                "-s" => {
                    dup(raw_src.is_some())?;
                    raw_src = Some((neg, v));
                }
                "-d" => {
                    dup(raw_dst.is_some())?;
                    raw_dst = Some((neg, v));
                }
                "-i" | "-o" => {
                    if v.len() > 15 {
                        return Err(Fail::Param(format!(
                            "interface name `{v}' must be shorter than IFNAMSIZ (15)"
                        )));
                    }
                    if s == "-i" {
                        dup(spec.iif.is_some())?;
                        spec.iif = Some((neg, v));
                    } else {
                        dup(spec.oif.is_some())?;
                        spec.oif = Some((neg, v));
                    }
                }
                "-p" => {
                    dup(spec.proto.is_some())?;
                    let p = proto_name(&v).ok_or_else(|| {
                        Fail::Param(format!("unknown protocol \"{v}\" specified"))
                    })?;
                    if p != "all" || neg {
                        spec.proto = Some((neg, p.to_string()));
                    }
                }
                "-m" => {
                    if match_opts(&v).is_none() {
                        return Err(Fail::ParamNl(
                            format!("Couldn't load match `{v}':No such file or directory\n")
                                .trim_end_matches('\n')
                                .to_string(),
                        ));
                    }
                    spec.matches.push(Ext {
                        name: v,
                        opts: Vec::new(),
                    });
                }
                "-j" | "-g" => {
                    if spec.target.is_some() {
                        return Err(Fail::Param("multiple -j flags not allowed".into()));
                    }
                    spec.goto = s == "-g";
                    spec.target = Some(Ext {
                        name: v,
                        opts: Vec::new(),
                    });
                }
                _ => {}
            }
            continue;
        }
        if !a.starts_with('-') || a == "-" {
            return Err(Fail::BadArg(a.to_string()));
        }
        // Extension options: target first, then loaded matches (latest
        // first), then the implicit protocol match.
        if first_rule_opt.is_none() {
            first_rule_opt = Some(a.to_string());
        }
        let mut placed = false;
        if let Some(t) = spec.target.as_mut() {
            if let Some(d) = target_opts(&t.name).and_then(|defs| find_opt(defs, a)) {
                let (v, used) = read_value(args, i, d)?;
                i += used;
                push_opt(&mut t.opts, &t.name, d, neg, v, fam)?;
                placed = true;
            }
        }
        if !placed {
            for m in spec.matches.iter_mut().rev() {
                if let Some(d) = match_opts(&m.name).and_then(|defs| find_opt(defs, a)) {
                    let (v, used) = read_value(args, i, d)?;
                    i += used;
                    push_opt(&mut m.opts, &m.name, d, neg, v, fam)?;
                    placed = true;
                    break;
                }
            }
        }
        if !placed && !implicit_proto_loaded {
            if let Some((false, p)) = &spec.proto {
                let mname = implicit_match(p).to_string();
                let other_family = match fam {
                    Family::V4 => mname == "icmp6",
                    Family::V6 => mname == "icmp",
                };
                if let Some(defs) = match_opts(&mname).filter(|_| !other_family) {
                    if let Some(d) = find_opt(defs, a) {
                        let (v, used) = read_value(args, i, d)?;
                        i += used;
                        let mut opts = Vec::new();
                        push_opt(&mut opts, &mname, d, neg, v, fam)?;
                        spec.matches.push(Ext { name: mname, opts });
                        implicit_proto_loaded = true;
                        placed = true;
                    }
                }
            }
        }
        if !placed {
            return Err(Fail::Param(format!("unknown option \"{a}\"")));
        }
    }
    for (raw, slot) in [(&raw_src, &mut spec.src), (&raw_dst, &mut spec.dst)] {
        if let Some((neg, v)) = raw {
            *slot = canon_addr(v, fam)?.map(|x| (*neg, x));
            if *neg && slot.is_none() {
                *slot = Some((true, "0.0.0.0/0".into()));
            }
        }
    }
    let cmd = cmd.ok_or_else(|| Fail::Param("no command specified".into()))?;
    if !cmd.takes_rule() {
        if let Some(o) = &first_rule_opt {
            return Err(Fail::Param(format!(
                "Illegal option `{o}' with this command"
            )));
        }
    }
    if matches!(cmd, CmdKind::Delete) && arg2.is_some() {
        if let Some(o) = &first_rule_opt {
            return Err(Fail::Param(format!(
                "Illegal option `{o}' with this command"
            )));
        }
    }
    let table = table.unwrap_or_else(|| "filter".to_string());
    // Target option validation.
    if let Some(t) = &spec.target {
        match t.name.as_str() {
            "MARK" if t.opts.is_empty() => {
                return Err(Fail::Param(
                    "MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required"
                        .into(),
                ))
            }
            "SNAT" if !t.opts.iter().any(|o| o.0 == "--to-source") => {
                return Err(Fail::ParamNl(
                    "SNAT: option \"--to-source\" must be specified".into(),
                ))
            }
            "DNAT" if !t.opts.iter().any(|o| o.0 == "--to-destination") => {
                return Err(Fail::ParamNl(
                    "DNAT: option \"--to-destination\" must be specified".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(Parsed {
        table,
        cmd,
        chain,
        arg2,
        spec,
        has_rule_opts: first_rule_opt,
        numeric,
        verbose,
        exact,
        line_numbers,
    })
}

/// The value of option `d` at `args[i]` (two words for `--tcp-flags`) and
/// how many words it took, the option included.
fn read_value(args: &[String], i: usize, d: &OptDef) -> Result<(Option<String>, usize), Fail> {
    let opt = &args[i];
    if !d.has_value {
        return Ok((None, 1));
    }
    if d.name == "--tcp-flags" {
        return match (args.get(i + 1), args.get(i + 2)) {
            (Some(m), Some(c)) => Ok((Some(format!("{m} {c}")), 3)),
            _ => Err(Fail::Param("--tcp-flags requires two args.".into())),
        };
    }
    match args.get(i + 1) {
        Some(v) => Ok((Some(v.clone()), 2)),
        None => Err(Fail::Param(format!(
            "option \"{opt}\" requires an argument"
        ))),
    }
}

/// Record an option in canonical form (`--syn` is `--tcp-flags
/// FIN,SYN,RST,ACK SYN`, MARK's options are all `--set-xmark V/M`).
fn push_opt(
    opts: &mut Vec<(String, bool, Option<String>)>,
    ext: &str,
    d: &OptDef,
    neg: bool,
    v: Option<String>,
    fam: Family,
) -> Result<(), Fail> {
    if d.name == "--syn" {
        opts.push((
            "--tcp-flags".into(),
            neg,
            Some("FIN,SYN,RST,ACK SYN".into()),
        ));
        return Ok(());
    }
    let v = canon_value(ext, d.name, v, fam)?;
    if ext == "MARK" {
        let (val, mask) = mark_value(v.as_deref().unwrap_or(""), "MARK", d.name)?;
        let (x, m) = match d.name {
            "--set-xmark" | "--set-mark" => (val, mask.unwrap_or(u32::MAX)),
            "--and-mark" => (0, !val),
            "--or-mark" => (val, val),
            _ => (val, 0),
        };
        opts.clear();
        opts.push(("--set-xmark".into(), neg, Some(format!("{x:#x}/{m:#x}"))));
        return Ok(());
    }
    opts.push((d.name.to_string(), neg, v));
    Ok(())
}

/// Whether the address part of a SNAT/DNAT `ADDR[-ADDR][:PORT[-PORT]]`
/// (IPv6 in brackets when a port follows) is of the family.
fn nat_address_ok(v: &str, fam: Family) -> bool {
    let addrs = match fam {
        Family::V4 => v.split(':').next().unwrap_or(""),
        Family::V6 => match v.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => v,
        },
    };
    addrs.split('-').all(|a| match fam {
        Family::V4 => a.parse::<Ipv4Addr>().is_ok(),
        Family::V6 => a.parse::<Ipv6Addr>().is_ok(),
    })
}

/// `V[/M]` of the mark match and MARK target (decimal or 0x hex).
fn mark_value(v: &str, ext: &str, opt: &str) -> Result<(u32, Option<u32>), Fail> {
    let num = |s: &str| -> Option<u32> {
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let bad = || {
        Fail::ParamNl(format!(
            "{ext}: bad integer value for option \"{opt}\", or out of range."
        ))
    };
    match v.split_once('/') {
        Some((a, m)) => Ok((num(a).ok_or_else(bad)?, Some(num(m).ok_or_else(bad)?))),
        None => Ok((num(v).ok_or_else(bad)?, None)),
    }
}

const ICMP4_NAMES: &[(&str, &str)] = &[
    ("echo-reply", "0"),
    ("pong", "0"),
    ("destination-unreachable", "3"),
    ("network-unreachable", "3/0"),
    ("host-unreachable", "3/1"),
    ("protocol-unreachable", "3/2"),
    ("port-unreachable", "3/3"),
    ("fragmentation-needed", "3/4"),
    ("source-route-failed", "3/5"),
    ("network-unknown", "3/6"),
    ("host-unknown", "3/7"),
    ("network-prohibited", "3/9"),
    ("host-prohibited", "3/10"),
    ("TOS-network-unreachable", "3/11"),
    ("TOS-host-unreachable", "3/12"),
    ("communication-prohibited", "3/13"),
    ("host-precedence-violation", "3/14"),
    ("precedence-cutoff", "3/15"),
    ("source-quench", "4"),
    ("redirect", "5"),
    ("network-redirect", "5/0"),
    ("host-redirect", "5/1"),
    ("TOS-network-redirect", "5/2"),
    ("TOS-host-redirect", "5/3"),
    ("echo-request", "8"),
    ("ping", "8"),
    ("router-advertisement", "9"),
    ("router-solicitation", "10"),
    ("time-exceeded", "11"),
    ("ttl-exceeded", "11"),
    ("ttl-zero-during-transit", "11/0"),
    ("ttl-zero-during-reassembly", "11/1"),
    ("parameter-problem", "12"),
    ("ip-header-bad", "12/0"),
    ("required-option-missing", "12/1"),
    ("timestamp-request", "13"),
    ("timestamp-reply", "14"),
    ("address-mask-request", "17"),
    ("address-mask-reply", "18"),
];

const ICMP6_NAMES: &[(&str, &str)] = &[
    ("destination-unreachable", "1"),
    ("no-route", "1/0"),
    ("communication-prohibited", "1/1"),
    ("beyond-scope", "1/2"),
    ("address-unreachable", "1/3"),
    ("port-unreachable", "1/4"),
    ("failed-policy", "1/5"),
    ("reject-route", "1/6"),
    ("packet-too-big", "2"),
    ("time-exceeded", "3"),
    ("ttl-exceeded", "3"),
    ("ttl-zero-during-transit", "3/0"),
    ("ttl-zero-during-reassembly", "3/1"),
    ("parameter-problem", "4"),
    ("bad-header", "4/0"),
    ("unknown-header-type", "4/1"),
    ("unknown-option", "4/2"),
    ("echo-request", "128"),
    ("ping", "128"),
    ("echo-reply", "129"),
    ("pong", "129"),
    ("router-solicitation", "133"),
    ("router-advertisement", "134"),
    ("neighbour-solicitation", "135"),
    ("neighbor-solicitation", "135"),
    ("neighbour-advertisement", "136"),
    ("neighbor-advertisement", "136"),
    ("redirect", "137"),
];

/// `--icmp-type` / `--icmpv6-type` as iptables keeps it: `TYPE` or
/// `TYPE/CODE` numbers (`any` for IPv4 stays).
fn canon_icmp(v: &str, v6: bool) -> Result<String, Fail> {
    let names = if v6 { ICMP6_NAMES } else { ICMP4_NAMES };
    if !v6 && v == "any" {
        return Ok(v.into());
    }
    if let Some((_, n)) = names.iter().find(|(name, _)| *name == v) {
        return Ok((*n).into());
    }
    let ok = |p: &str| p.parse::<u8>().is_ok();
    let valid = match v.split_once('/') {
        Some((t, c)) => ok(t) && ok(c),
        None => ok(v),
    };
    if valid {
        return Ok(v.into());
    }
    Err(Fail::Param(if v6 {
        format!("Unknown ICMPv6 type `{v}'")
    } else {
        format!("Unknown ICMP type `{v}'")
    }))
}

const TCP_FLAGS: &[&str] = &["FIN", "SYN", "RST", "PSH", "ACK", "URG"];

/// A `--tcp-flags` list in iptables' order (`ALL`, `NONE` expanded).
fn canon_tcp_flags(list: &str) -> Result<String, Fail> {
    let mut seen = [false; 6];
    for f in list.split(',') {
        let up = f.to_ascii_uppercase();
        match up.as_str() {
            "ALL" => seen = [true; 6],
            "NONE" => {}
            _ => match TCP_FLAGS.iter().position(|x| *x == up) {
                Some(i) => seen[i] = true,
                None => return Err(Fail::Param(format!("Unknown TCP flag `{f}'"))),
            },
        }
    }
    let out: Vec<&str> = TCP_FLAGS
        .iter()
        .zip(seen)
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
    Ok(if out.is_empty() {
        "NONE".into()
    } else {
        out.join(",")
    })
}

fn canon_value(
    ext: &str,
    opt: &str,
    v: Option<String>,
    fam: Family,
) -> Result<Option<String>, Fail> {
    let Some(v) = v else { return Ok(None) };
    let out = match (ext, opt) {
        ("tcp" | "udp", "--sport" | "--dport") => canon_port_range(&v, ':')?,
        ("multiport", _) => {
            let mut parts = Vec::new();
            for p in v.split(',') {
                parts.push(canon_port_range(p, ':')?);
            }
            parts.join(",")
        }
        ("conntrack", "--ctstate") | ("state", "--state") => canon_ctstate(&v)?,
        ("addrtype", _) => {
            let up = v.to_ascii_uppercase();
            if !ADDR_TYPES.contains(&up.as_str()) {
                return Err(Fail::Param(format!("addrtype: bad type \"{v}\"")));
            }
            up
        }
        ("REJECT", "--reject-with") => {
            let known = match fam {
                Family::V4 => REJECT4,
                Family::V6 => REJECT6,
            };
            if !known.contains(&v.as_str()) {
                return Err(Fail::Param(format!("unknown reject type \"{v}\"")));
            }
            v
        }
        ("MASQUERADE", "--to-ports") => canon_port_range(&v, '-')?,
        ("SNAT", "--to-source") | ("DNAT", "--to-destination") => {
            if !nat_address_ok(&v, fam) {
                return Err(Fail::Param(format!("Bad IP address \"{v}\"")));
            }
            v
        }
        ("icmp", "--icmp-type") => canon_icmp(&v, false)?,
        ("icmp6", "--icmpv6-type") => canon_icmp(&v, true)?,
        ("tcp", "--tcp-flags") => {
            let (m, c) = v.split_once(' ').unwrap_or((v.as_str(), ""));
            format!("{} {}", canon_tcp_flags(m)?, canon_tcp_flags(c)?)
        }
        ("mark", "--mark") => {
            let (val, mask) = mark_value(&v, "mark", "--mark")?;
            match mask {
                Some(m) => format!("{val:#x}/{m:#x}"),
                None => format!("{val:#x}"),
            }
        }
        _ => v,
    };
    Ok(Some(out))
}

impl XtablesState {
    pub fn new(family: Family) -> Self {
        XtablesState {
            family,
            tables: BTreeMap::new(),
        }
    }

    fn ensure_table(&mut self, name: &str, alloc: &mut dyn FnMut() -> u64) -> &mut Table {
        self.tables.entry(name.to_string()).or_insert_with(|| {
            let mut t = Table {
                handle: alloc(),
                ..Table::default()
            };
            for c in builtin_chains(name).unwrap_or(&[]) {
                t.chains.insert(
                    (*c).to_string(),
                    Chain {
                        policy: Some("ACCEPT".into()),
                        rules: Vec::new(),
                        handle: None,
                    },
                );
            }
            t
        })
    }

    /// Run `iptables ARGS...` (argv without the program name) on its own:
    /// new tables get handles after the highest one this state holds. On a
    /// host, use [`XtablesState::exec_shared`] so table handles come from
    /// the namespace counter shared with nft.
    pub fn exec(&mut self, args: &[String]) -> Output {
        let mut next = self.tables.values().map(|t| t.handle).max().unwrap_or(0);
        self.exec_shared(args, &mut || {
            next += 1;
            next
        })
    }

    /// Run `iptables ARGS...`; `alloc_table_handle` gives the nftables
    /// handle of a table this command creates.
    pub fn exec_shared(
        &mut self,
        args: &[String],
        alloc_table_handle: &mut dyn FnMut() -> u64,
    ) -> Output {
        self.exec_addressed(args, alloc_table_handle, &mut |_| None)
            .0
    }

    /// Run `iptables ARGS...` like [`XtablesState::exec_shared`], and say
    /// which table the command addressed and whether it may have changed it
    /// (every command but `-L`/`-S`/`-C`; a failed write may still have created
    /// its table). `refuse_write` is asked, once the command line parsed,
    /// before a command that may write to table T runs: `Some(message)`
    /// refuses it (exit 1, that message on stderr, nothing changed).
    pub fn exec_addressed(
        &mut self,
        args: &[String],
        alloc_table_handle: &mut dyn FnMut() -> u64,
        refuse_write: &mut dyn FnMut(&str) -> Option<String>,
    ) -> (Output, Option<Addressed>) {
        let fam = self.family;
        let mut addressed = None;
        let out = match self.exec_inner(args, alloc_table_handle, refuse_write, &mut addressed) {
            Ok(out) => out,
            Err(f) => f.output(fam),
        };
        (out, addressed)
    }

    fn exec_inner(
        &mut self,
        args: &[String],
        alloc: &mut dyn FnMut() -> u64,
        refuse_write: &mut dyn FnMut(&str) -> Option<String>,
        addressed: &mut Option<Addressed>,
    ) -> Result<Output, Fail> {
        if args.iter().any(|a| a == "-h" || a == "--help") {
            return Ok(Output::ok(format!(
                "{} {VERSION}\n\n(help text is not simulated)\n",
                self.family.prog()
            )));
        }
        if args.iter().any(|a| a == "-V" || a == "--version") {
            return Ok(Output::ok(format!("{} {VERSION}\n", self.family.prog())));
        }
        let memo = parse_memo(args, self.family);
        let p = match &memo.parsed {
            Ok(p) => p,
            Err(f) => return Err(f.clone()),
        };
        let writes = !matches!(p.cmd, CmdKind::List | CmdKind::ListRules | CmdKind::Check);
        if writes {
            if let Some(msg) = refuse_write(&p.table) {
                return Ok(Output::failed(1, msg));
            }
        }
        *addressed = Some(Addressed {
            table: p.table.clone(),
            writes,
        });
        let fam = self.family;
        let builtins = builtin_chains(&p.table).ok_or_else(|| Fail::NoTable(p.table.clone()))?;
        let drops = match p.cmd {
            CmdKind::Policy => p.arg2.as_deref() == Some("DROP"),
            _ => p.spec.target.as_ref().is_some_and(|t| t.name == "DROP"),
        };
        if p.table == "nat" && drops {
            return Err(Fail::ParamNl(
                "\nThe \"nat\" table is not intended for filtering, the use of DROP is therefore inhibited.\n".into(),
            ));
        }
        let _ = &p.has_rule_opts;
        match p.cmd {
            CmdKind::ListRules => self.list_rules(p, builtins),
            CmdKind::List => self.list(p, builtins),
            CmdKind::NewChain => {
                let name = p.chain.clone().unwrap_or_default();
                if name.len() > 28 {
                    return Err(Fail::Param(format!(
                        "chain name `{name}' too long (must be under 29 chars)"
                    )));
                }
                if builtins.contains(&name.as_str()) || STD_TARGETS.contains(&name.as_str()) {
                    if builtins.contains(&name.as_str()) {
                        return Err(Fail::Other("Chain already exists".into()));
                    }
                    return Err(Fail::Param(format!("chain name `{name}' is reserved")));
                }
                let t = self.ensure_table(&p.table, alloc);
                if t.chains.contains_key(&name) {
                    return Err(Fail::Other("Chain already exists".into()));
                }
                let handle = Some(t.alloc_handle());
                t.chains.insert(
                    name,
                    Chain {
                        handle,
                        ..Chain::default()
                    },
                );
                Ok(Output::default())
            }
            CmdKind::DeleteChain => {
                let Some(t) = self.tables.get_mut(&p.table) else {
                    return match &p.chain {
                        None => Ok(Output::default()),
                        Some(_) => Err(Fail::Other(NO_CHAIN.into())),
                    };
                };
                // One nf_tables batch: any failing chain deletes nothing.
                // A builtin chain in the kernel goes too when it is empty
                // with policy ACCEPT (by name, or with `-X` alone); named,
                // a policy DROP keeps it ("Directory not empty").
                let names: Vec<String> = match &p.chain {
                    Some(c) => {
                        let Some(ch) = t.chains.get(c) else {
                            return Err(Fail::Other(NO_CHAIN.into()));
                        };
                        if ch.policy.is_some() {
                            if ch.handle.is_none() {
                                return Err(Fail::Other(NO_CHAIN.into()));
                            }
                            if ch.policy.as_deref() == Some("DROP") {
                                return Err(Fail::Other("Directory not empty".into()));
                            }
                        }
                        vec![c.clone()]
                    }
                    None => t
                        .chains
                        .iter()
                        .filter(|(_, c)| {
                            c.policy.is_none()
                                || (c.handle.is_some()
                                    && c.rules.is_empty()
                                    && c.policy.as_deref() == Some("ACCEPT"))
                        })
                        .map(|(n, _)| n.clone())
                        .collect(),
                };
                for n in &names {
                    let refs = refcount(t, n);
                    let busy = t.chains.get(n).is_some_and(|c| !c.rules.is_empty());
                    if refs > 0 || busy {
                        return Err(Fail::Netlink(format!(
                            "CHAIN_DEL failed (Device or resource busy): chain {n}"
                        )));
                    }
                }
                for n in names {
                    match t.chains.get_mut(&n) {
                        Some(c) if c.policy.is_some() => c.handle = None,
                        _ => {
                            t.chains.remove(&n);
                        }
                    }
                }
                Ok(Output::default())
            }
            CmdKind::Flush | CmdKind::Zero => {
                // Flushing a builtin chain creates its table (and the chain).
                if p.cmd == CmdKind::Flush
                    && p.chain.as_deref().is_some_and(|c| builtins.contains(&c))
                {
                    self.ensure_table(&p.table, alloc);
                }
                let Some(t) = self.tables.get_mut(&p.table) else {
                    return match &p.chain {
                        None => Ok(Output::default()),
                        Some(_) => Err(Fail::Other(NO_CHAIN.into())),
                    };
                };
                match &p.chain {
                    Some(c) => {
                        if !t.chains.contains_key(c) {
                            return Err(Fail::Other(NO_CHAIN.into()));
                        }
                        // Flushing a builtin chain creates it in the kernel;
                        // zeroing one that does not exist there fails.
                        if p.cmd == CmdKind::Flush {
                            t.instantiate(c);
                        } else if t.chains.get(c).is_some_and(|ch| ch.handle.is_none()) {
                            return Err(Fail::Other(NO_CHAIN.into()));
                        }
                        if let Some(ch) = t.chains.get_mut(c) {
                            if p.cmd == CmdKind::Flush {
                                ch.rules.clear();
                            }
                        }
                    }
                    None => {
                        if p.cmd == CmdKind::Flush {
                            for ch in t.chains.values_mut() {
                                ch.rules.clear();
                            }
                        }
                    }
                }
                Ok(Output::default())
            }
            CmdKind::Policy => {
                let chain = p.chain.clone().unwrap_or_default();
                let pol = p.arg2.clone().unwrap_or_default();
                if !builtins.contains(&chain.as_str()) {
                    return Err(Fail::Other("Bad built-in chain name".into()));
                }
                if pol != "ACCEPT" && pol != "DROP" {
                    return Err(Fail::Other(
                        "Bad policy name. Run `dmesg' for more information".into(),
                    ));
                }
                let t = self.ensure_table(&p.table, alloc);
                t.instantiate(&chain);
                if let Some(c) = t.chains.get_mut(&chain) {
                    c.policy = Some(pol);
                }
                Ok(Output::default())
            }
            CmdKind::Rename => {
                let old = p.chain.clone().unwrap_or_default();
                let new = p.arg2.clone().unwrap_or_default();
                let Some(t) = self.tables.get_mut(&p.table) else {
                    return Err(Fail::Other(NO_CHAIN.into()));
                };
                if t.chains.contains_key(&new) {
                    return Err(Fail::Other("File exists".into()));
                }
                match t.chains.get(&old) {
                    Some(c) if c.policy.is_none() => {}
                    _ => return Err(Fail::Other(NO_CHAIN.into())),
                }
                if let Some(c) = t.chains.remove(&old) {
                    t.chains.insert(new.clone(), c);
                }
                for ch in t.chains.values_mut() {
                    for r in ch.rules.iter_mut() {
                        if r.jump.as_deref() == Some(old.as_str()) {
                            r.jump = Some(new.clone());
                            r.spec = rename_target(&r.spec, &old, &new);
                            if let Some(nr) = r.nft_rule.as_mut() {
                                crate::xtnft::rename_jumps(nr, &old, &new);
                            }
                        }
                    }
                }
                Ok(Output::default())
            }
            CmdKind::Append
            | CmdKind::Insert
            | CmdKind::Replace
            | CmdKind::Delete
            | CmdKind::Check => {
                let chain: &str = p.chain.as_deref().unwrap_or_default();
                let rulenum: Option<usize> = p.arg2.as_ref().and_then(|n| n.parse().ok());
                if p.cmd == CmdKind::Delete && rulenum.is_some() {
                    let Some(t) = self.tables.get_mut(&p.table) else {
                        return Err(Fail::Other(NO_CHAIN.into()));
                    };
                    let ch = t
                        .chains
                        .get_mut(chain)
                        .filter(|c| c.handle.is_some())
                        .ok_or_else(|| Fail::Other(NO_CHAIN.into()))?;
                    let n = rulenum.unwrap_or(1);
                    if n > ch.rules.len() {
                        return Err(Fail::Other("Index of deletion too big".into()));
                    }
                    ch.rules.remove(n - 1);
                    return Ok(Output::default());
                }
                // Builtin chain interface restrictions.
                if let Some((_, _)) = &p.spec.oif {
                    if chain == "INPUT" || chain == "PREROUTING" {
                        return Err(Fail::ParamNl(format!("Can't use -o with {chain}")));
                    }
                }
                if let Some((_, _)) = &p.spec.iif {
                    if chain == "OUTPUT" || chain == "POSTROUTING" {
                        return Err(Fail::ParamNl(format!("Can't use -i with {chain}")));
                    }
                }
                // The addressed table and chain as they are before the
                // command (looked up once).
                let existing = self.tables.get(&p.table);
                let existing_chain = existing.and_then(|t| t.chains.get(chain));
                let table_exists = existing.is_some();
                // Resolve the target.
                let mut jump = None;
                if let Some(t) = &p.spec.target {
                    let name = t.name.as_str();
                    let known = STD_TARGETS.contains(&name) || target_opts(name).is_some();
                    if !known {
                        let exists = existing.is_some_and(|tb| {
                            tb.chains.get(name).is_some_and(|c| c.policy.is_none())
                        });
                        if !exists {
                            return Err(Fail::Param(format!("Chain '{name}' does not exist")));
                        }
                        jump = Some(name.to_string());
                    } else if p.spec.goto && !exists_user(&self.tables, &p.table, name) {
                        return Err(Fail::Param(format!("Chain '{name}' does not exist")));
                    }
                }
                let spec_text: &str = memo.spec_text.get_or_init(|| p.spec.render(fam));
                if matches!(p.cmd, CmdKind::Delete | CmdKind::Check) {
                    let Some(t) = self.tables.get_mut(&p.table) else {
                        return Err(Fail::Other(BAD_RULE.into()));
                    };
                    let Some(ch) = t.chains.get_mut(chain) else {
                        return Err(Fail::Other(BAD_RULE.into()));
                    };
                    let pos = ch
                        .rules
                        .iter()
                        .position(|r| !r.incompatible && r.spec == spec_text);
                    return match pos {
                        None => Err(Fail::Other(BAD_RULE.into())),
                        Some(i) => {
                            if p.cmd == CmdKind::Delete {
                                ch.rules.remove(i);
                            }
                            Ok(Output::default())
                        }
                    };
                }
                if !table_exists && !builtins.contains(&chain) {
                    return Err(Fail::Other(NO_CHAIN.into()));
                }
                // The chain must exist (in the kernel, for -R) before the
                // kernel gets to judge the rule.
                if table_exists && existing_chain.is_none() {
                    return Err(Fail::Other(NO_CHAIN.into()));
                }
                // Rule positions are checked against nft's cache before
                // anything is sent.
                let len = existing_chain.map(|c| c.rules.len()).unwrap_or(0);
                let n = rulenum.unwrap_or(1);
                let in_kernel = existing_chain.is_some_and(|c| c.handle.is_some());
                if p.cmd == CmdKind::Replace && !in_kernel {
                    return Err(Fail::Other(NO_CHAIN.into()));
                }
                match p.cmd {
                    CmdKind::Insert if n > len + 1 => {
                        return Err(Fail::Other("Index of insertion too big".into()))
                    }
                    CmdKind::Replace if n > len => {
                        return Err(Fail::Other("Index of replacement too big".into()))
                    }
                    _ => {}
                }
                // Kernel-side validation of the target for the table/hook.
                // Inserting after the last rule is an append for nf_tables.
                let verb = match p.cmd {
                    CmdKind::Append => "RULE_APPEND",
                    CmdKind::Insert if n > 1 && n == len + 1 => "RULE_APPEND",
                    CmdKind::Insert => "RULE_INSERT",
                    _ => "RULE_REPLACE",
                };
                let bad_target = p
                    .spec
                    .target
                    .as_ref()
                    .is_some_and(|t| !target_allowed(&t.name, &p.table, chain));
                let any_negated = p
                    .spec
                    .src
                    .as_ref()
                    .is_some_and(|(n, a)| *n && a.ends_with("/0"))
                    || p.spec
                        .dst
                        .as_ref()
                        .is_some_and(|(n, a)| *n && a.ends_with("/0"));
                if bad_target || any_negated {
                    // The kernel aborts the batch, but the handles it gave
                    // out (a new table's, a new builtin chain's, the rule's)
                    // stay taken.
                    match self.tables.get_mut(&p.table) {
                        None => {
                            alloc();
                        }
                        Some(t) => {
                            if t.chains.get(chain).is_some_and(|c| c.handle.is_none()) {
                                t.alloc_handle();
                            }
                            if p.cmd != CmdKind::Replace {
                                t.alloc_handle();
                            }
                        }
                    }
                    return Err(Fail::Netlink(format!(
                        "{verb} failed (Invalid argument): rule in chain {chain}"
                    )));
                }
                let t = self.ensure_table(&p.table, alloc);
                let Some(ch) = t.chains.get_mut(chain) else {
                    return Err(Fail::Other(NO_CHAIN.into()));
                };
                // `Table::instantiate`, then the rule's handle: a replaced
                // rule keeps its handle; the others take the next one of the
                // table (even if the insertion then fails).
                if ch.handle.is_none() {
                    t.last_handle += 1;
                    ch.handle = Some(t.last_handle);
                }
                let old_handle = match p.cmd {
                    CmdKind::Replace => rulenum
                        .and_then(|n| n.checked_sub(1))
                        .and_then(|i| ch.rules.get(i))
                        .map(|r| r.handle),
                    _ => None,
                };
                let handle = match old_handle {
                    Some(h) => h,
                    None => {
                        t.last_handle += 1;
                        t.last_handle
                    }
                };
                let rule = Rule {
                    spec: spec_text.to_string(),
                    jump,
                    handle,
                    nft_rule: None,
                    incompatible: false,
                };
                match p.cmd {
                    CmdKind::Append => ch.rules.push(rule),
                    CmdKind::Insert => {
                        let n = rulenum.unwrap_or(1);
                        if n > ch.rules.len() + 1 {
                            return Err(Fail::Other("Index of insertion too big".into()));
                        }
                        ch.rules.insert(n - 1, rule);
                    }
                    _ => {
                        let n = rulenum.unwrap_or(1);
                        if n > ch.rules.len() {
                            return Err(Fail::Other("Index of replacement too big".into()));
                        }
                        ch.rules[n - 1] = rule;
                    }
                }
                Ok(Output::default())
            }
        }
    }

    fn list_rules(&self, p: &Parsed, builtins: &[&str]) -> Result<Output, Fail> {
        let table = self.tables.get(&p.table);
        incompatible_check(table, &p.table, p.chain.as_deref())?;
        // The note comes with whole-table listings only.
        let mut out = match p.chain {
            None => foreign_base_note(table, &p.table),
            Some(_) => String::new(),
        };
        let counters = if p.verbose { " -c 0 0" } else { "" };
        let order = chain_order(table, builtins);
        let selected: Vec<&str> = match &p.chain {
            Some(c) => {
                if !order.iter().any(|x| x == c) {
                    return Err(Fail::Versioned(format!(
                        "chain `{c}' in table `{}' is incompatible, use 'nft' tool.",
                        p.table
                    )));
                }
                vec![c.as_str()]
            }
            None => order.iter().map(String::as_str).collect(),
        };
        let rulenum: Option<usize> = p.arg2.as_ref().and_then(|n| n.parse().ok());
        if rulenum.is_none() {
            for c in &selected {
                if builtins.contains(c) {
                    let pol = table
                        .and_then(|t| t.chains.get(*c))
                        .and_then(|ch| ch.policy.clone())
                        .unwrap_or_else(|| "ACCEPT".into());
                    out.push_str(&format!("-P {c} {pol}{counters}\n"));
                } else {
                    out.push_str(&format!("-N {c}\n"));
                }
            }
        }
        if let Some(t) = table {
            for c in &selected {
                if let Some(ch) = t.chains.get(*c) {
                    for (i, r) in ch.rules.iter().enumerate() {
                        if rulenum.is_some_and(|n| n != i + 1) {
                            continue;
                        }
                        out.push_str(&format!("-A {c}"));
                        out.push_str(&with_counters(&r.spec, counters));
                        out.push('\n');
                    }
                }
            }
        }
        Ok(Output::ok(out))
    }

    fn list(&self, p: &Parsed, builtins: &[&str]) -> Result<Output, Fail> {
        let table = self.tables.get(&p.table);
        incompatible_check(table, &p.table, p.chain.as_deref())?;
        let order = chain_order(table, builtins);
        let selected: Vec<&str> = match &p.chain {
            Some(c) => {
                if !order.iter().any(|x| x == c) {
                    return Err(Fail::Versioned(format!(
                        "chain `{c}' in table `{}' is incompatible, use 'nft' tool.",
                        p.table
                    )));
                }
                vec![c.as_str()]
            }
            None => order.iter().map(String::as_str).collect(),
        };
        let mut blocks = Vec::new();
        for c in selected {
            let mut s = String::new();
            let ch = table.and_then(|t| t.chains.get(c));
            if builtins.contains(&c) {
                let pol = ch
                    .and_then(|x| x.policy.clone())
                    .unwrap_or_else(|| "ACCEPT".into());
                if p.verbose {
                    s.push_str(&format!("Chain {c} (policy {pol} 0 packets, 0 bytes)\n"));
                } else {
                    s.push_str(&format!("Chain {c} (policy {pol})\n"));
                }
            } else {
                let refs = table.map(|t| refcount(t, c)).unwrap_or(0);
                s.push_str(&format!("Chain {c} ({refs} references)\n"));
            }
            if p.line_numbers {
                s.push_str("num  ");
            }
            if p.verbose && p.exact {
                s.push_str("    pkts      bytes ");
            } else if p.verbose {
                s.push_str(" pkts bytes ");
            }
            s.push_str("target     prot opt ");
            if p.verbose {
                s.push_str("in     out     ");
            }
            s.push_str("source               destination         \n");
            if let Some(ch) = ch {
                for (i, r) in ch.rules.iter().enumerate() {
                    s.push_str(&list_line(&r.spec, i + 1, p, self.family));
                }
            }
            blocks.push(s);
        }
        let note = match p.chain {
            None => foreign_base_note(table, &p.table),
            Some(_) => String::new(),
        };
        Ok(Output::ok(format!("{note}{}", blocks.join("\n"))))
    }

    /// `iptables-save` text for this family. With `stamp`, the
    /// "# Generated by"/"# Completed on" comments are added with that text
    /// as the date.
    pub fn save(&self, stamp: Option<&str>) -> String {
        let prog = self.family.prog();
        let mut out = String::new();
        for (name, builtins) in TABLES {
            let Some(t) = self.tables.get(*name) else {
                continue;
            };
            if incompatible_check(Some(t), name, None).is_err() {
                out.push_str(&format!(
                    "# Table `{name}' is incompatible, use 'nft' tool.\n"
                ));
                continue;
            }
            out.push_str(&foreign_base_note(Some(t), name));
            if let Some(d) = stamp {
                out.push_str(&format!("# Generated by {prog}-save {VERSION} on {d}\n"));
            }
            out.push_str(&format!("*{name}\n"));
            let order = chain_order(Some(t), builtins);
            for c in &order {
                let pol = t
                    .chains
                    .get(c)
                    .and_then(|ch| ch.policy.clone())
                    .unwrap_or_else(|| "-".into());
                out.push_str(&format!(":{c} {pol} [0:0]\n"));
            }
            for c in &order {
                if let Some(ch) = t.chains.get(c) {
                    for r in &ch.rules {
                        out.push_str(&format!("-A {c}"));
                        if !r.spec.is_empty() {
                            out.push(' ');
                            out.push_str(&r.spec);
                        }
                        out.push('\n');
                    }
                }
            }
            out.push_str("COMMIT\n");
            if let Some(d) = stamp {
                out.push_str(&format!("# Completed on {d}\n"));
            }
        }
        out
    }
}

/// Listing a table (or one chain) holding rules iptables-nft cannot read
/// back fails as the real tool does.
fn incompatible_check(t: Option<&Table>, table: &str, chain: Option<&str>) -> Result<(), Fail> {
    let Some(t) = t else { return Ok(()) };
    let bad = |c: &Chain| c.rules.iter().any(|r| r.incompatible);
    match chain {
        Some(c) if t.chains.get(c).is_some_and(bad) => Err(Fail::Versioned(format!(
            "chain `{c}' in table `{table}' is incompatible, use 'nft' tool."
        ))),
        None if t.chains.values().any(bad) => Err(Fail::Versioned(format!(
            "table `{table}' is incompatible, use 'nft' tool."
        ))),
        _ => Ok(()),
    }
}

fn exists_user(tables: &BTreeMap<String, Table>, table: &str, name: &str) -> bool {
    tables
        .get(table)
        .is_some_and(|t| t.chains.get(name).is_some_and(|c| c.policy.is_none()))
}

fn target_allowed(target: &str, table: &str, chain: &str) -> bool {
    match target {
        "MASQUERADE" => table == "nat" && !matches!(chain, "PREROUTING" | "INPUT" | "OUTPUT"),
        "SNAT" => table == "nat" && !matches!(chain, "PREROUTING" | "OUTPUT"),
        "DNAT" => table == "nat" && !matches!(chain, "POSTROUTING" | "INPUT"),
        "CHECKSUM" => table == "mangle",
        "REJECT" => table == "filter",
        _ => true,
    }
}

fn rename_target(spec: &str, old: &str, new: &str) -> String {
    let toks: Vec<&str> = spec.split(' ').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        out.push(toks[i].to_string());
        if (toks[i] == "-j" || toks[i] == "-g") && toks.get(i + 1) == Some(&old) {
            out.push(new.to_string());
            i += 2;
            continue;
        }
        i += 1;
    }
    out.join(" ")
}

fn refcount(t: &Table, name: &str) -> usize {
    let ours = t
        .chains
        .values()
        .flat_map(|c| c.rules.iter())
        .filter(|r| r.jump.as_deref() == Some(name))
        .count();
    // nft's own base chains count too (the kernel's use count).
    let theirs = t
        .foreign_base
        .iter()
        .flat_map(|c| c.rules.iter())
        .flat_map(|r| r.jump_targets())
        .filter(|j| *j == name)
        .count();
    ours + theirs
}

/// Builtin chains in their fixed order, then user chains sorted by name.
fn chain_order(t: Option<&Table>, builtins: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = builtins.iter().map(|s| s.to_string()).collect();
    if let Some(t) = t {
        v.extend(
            t.chains
                .iter()
                .filter(|(_, c)| c.policy.is_none())
                .map(|(n, _)| n.clone()),
        );
    }
    v
}

/// ` SPEC` with the `-c 0 0` of `-S -v` placed before the target, as
/// iptables prints it.
fn with_counters(spec: &str, counters: &str) -> String {
    let full = format!(" {spec}");
    if counters.is_empty() {
        return if spec.is_empty() { String::new() } else { full };
    }
    let pos = [" -j ", " -g "].iter().filter_map(|t| full.find(t)).min();
    match pos {
        Some(i) => format!("{}{counters}{}", &full[..i], &full[i..]),
        None => format!("{}{counters}", full.trim_end()),
    }
}

/// Split a canonical spec back into tokens (honouring save_quote quoting).
pub(crate) fn spec_tokens(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut have = false;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_q = !in_q;
                have = true;
            }
            '\\' if in_q => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ' ' if !in_q => {
                if have || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                have = false;
            }
            _ => cur.push(c),
        }
    }
    if have || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The bits of a canonical `--tcp-flags` list.
fn flag_bits(list: &str) -> u32 {
    list.split(',')
        .filter_map(|f| TCP_FLAGS.iter().position(|x| *x == f))
        .map(|i| 1u32 << i)
        .sum()
}

/// `-L` text of an icmp / icmp6 match: the type's name, or with `-n`
/// (or without a name) the numbers.
fn icmp_list_text(ext: &str, v: &str, neg: bool, numeric: bool) -> String {
    let (names, kw, numkw) = if ext == "icmp" {
        (ICMP4_NAMES, "icmp", "icmptype")
    } else {
        (ICMP6_NAMES, "ipv6-icmp", "ipv6-icmptype")
    };
    let bang = if neg { "!" } else { "" };
    if !numeric {
        if v == "any" {
            return format!("{kw} {bang}any");
        }
        if let Some((name, _)) = names.iter().find(|(_, n)| *n == v) {
            return format!("{kw} {bang}{name}");
        }
    }
    let v = if v == "any" { "255" } else { v };
    let (t, code) = match v.split_once('/') {
        Some((t, c)) => (t, format!(" code {c}")),
        None => (v, String::new()),
    };
    if neg {
        format!("{kw} !type {t}{code}")
    } else {
        format!("{numkw} {t}{code}")
    }
}

/// One line of `iptables -L` output for a canonical rule.
fn list_line(spec: &str, num: usize, p: &Parsed, fam: Family) -> String {
    let toks = spec_tokens(spec);
    let any = match fam {
        Family::V4 => "0.0.0.0/0",
        Family::V6 => "::/0",
    };
    let mut src = if p.numeric {
        any.to_string()
    } else {
        "anywhere".to_string()
    };
    let mut dst = src.clone();
    let mut prot = if p.numeric {
        "0".to_string()
    } else {
        "all".to_string()
    };
    let mut iif = "*".to_string();
    let mut oif = "*".to_string();
    let mut target = String::new();
    let mut goto = false;
    let mut extra: Vec<String> = Vec::new();
    let mut i = 0;
    let mut neg = false;
    let mut cur_ext: Option<String> = None;
    let mut in_target = false;
    let addr = |a: &str, neg: bool| -> String {
        let a = a
            .strip_suffix(if fam == Family::V4 { "/32" } else { "/128" })
            .unwrap_or(a)
            .to_string();
        if neg {
            format!("!{a}")
        } else {
            a
        }
    };
    let port = |v: &str| -> String {
        if p.numeric || v.contains(':') {
            return v.to_string();
        }
        v.split(':')
            .map(|x| {
                x.parse::<u16>()
                    .ok()
                    .and_then(service_name)
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(":")
    };
    while i < toks.len() {
        let t = toks[i].as_str();
        let v = toks.get(i + 1).cloned().unwrap_or_default();
        match t {
            "!" => {
                neg = true;
                i += 1;
                continue;
            }
            "-s" if cur_ext.is_none() && !in_target => src = addr(&v, neg),
            "-d" if cur_ext.is_none() && !in_target => dst = addr(&v, neg),
            "-i" if cur_ext.is_none() && !in_target => {
                iif = if neg { format!("!{v}") } else { v.clone() }
            }
            "-o" if cur_ext.is_none() && !in_target => {
                oif = if neg { format!("!{v}") } else { v.clone() }
            }
            "-p" if cur_ext.is_none() && !in_target => {
                let name = if p.numeric {
                    proto_number(&v).to_string()
                } else {
                    v.clone()
                };
                prot = if neg { format!("!{name}") } else { name };
            }
            "-m" => {
                cur_ext = Some(v.clone());
                if v == "tcp" || v == "udp" {
                    extra.push(v.clone());
                }
            }
            "-j" | "-g" => {
                target = v.clone();
                goto = t == "-g";
                in_target = true;
                cur_ext = None;
            }
            _ => {
                let bang = if neg { "!" } else { "" };
                let ext = cur_ext.clone().unwrap_or_default();
                let text = match (ext.as_str(), t) {
                    ("tcp" | "udp", "--dport") => {
                        let k = if v.contains(':') { "dpts" } else { "dpt" };
                        format!("{k}:{bang}{}", port(&v))
                    }
                    ("tcp" | "udp", "--sport") => {
                        let k = if v.contains(':') { "spts" } else { "spt" };
                        format!("{k}:{bang}{}", port(&v))
                    }
                    ("conntrack", "--ctstate") => format!("{bang}ctstate {v}"),
                    ("state", "--state") => format!("{bang}state {v}"),
                    ("comment", "--comment") => format!("/* {v} */"),
                    ("tcp", "--tcp-flags") => {
                        let comp = toks.get(i + 2).cloned().unwrap_or_default();
                        if p.numeric {
                            format!(
                                "flags:{bang}{:#04X}/{:#04X}",
                                flag_bits(&v),
                                flag_bits(&comp)
                            )
                            .replace("0X", "0x")
                        } else {
                            format!("flags:{bang}{v}/{comp}")
                        }
                    }
                    ("icmp", "--icmp-type") | ("icmp6", "--icmpv6-type") => {
                        icmp_list_text(&ext, &v, neg, p.numeric)
                    }
                    ("mark", "--mark") => {
                        format!("mark match {}{v}", if neg { "! " } else { "" })
                    }
                    ("addrtype", "--dst-type") => format!("ADDRTYPE match dst-type {bang}{v}"),
                    ("addrtype", "--src-type") => format!("ADDRTYPE match src-type {bang}{v}"),
                    ("multiport", "--dports") => format!(
                        "multiport dports {bang}{}",
                        v.split(',').map(&port).collect::<Vec<_>>().join(",")
                    ),
                    ("multiport", "--sports") => format!(
                        "multiport sports {bang}{}",
                        v.split(',').map(&port).collect::<Vec<_>>().join(",")
                    ),
                    _ if in_target => match (target.as_str(), t) {
                        ("REJECT", "--reject-with") => format!("reject-with {v}"),
                        ("MASQUERADE", "--to-ports") => format!("masq ports: {v}"),
                        ("SNAT", "--to-source") => format!("to:{v}"),
                        ("DNAT", "--to-destination") => format!("to:{v}"),
                        ("CHECKSUM", "--checksum-fill") => "CHECKSUM fill".to_string(),
                        ("MARK", "--set-xmark") => {
                            let num = |x: &str| {
                                u32::from_str_radix(x.trim_start_matches("0x"), 16).unwrap_or(0)
                            };
                            let (x, m) = match v.split_once('/') {
                                Some((a, b)) => (num(a), num(b)),
                                None => (num(&v), u32::MAX),
                            };
                            if m == u32::MAX {
                                format!("MARK set {x:#x}")
                            } else if m == 0 {
                                format!("MARK xor {x:#x}")
                            } else if x == 0 {
                                format!("MARK and {:#x}", !m)
                            } else if x == m {
                                format!("MARK or {x:#x}")
                            } else {
                                format!("MARK xset {x:#x}/{m:#x}")
                            }
                        }
                        ("LOG", "--log-prefix") => {
                            if p.numeric {
                                format!("LOG flags 0 level 4 prefix \"{v}\"")
                            } else {
                                format!("LOG level warn prefix \"{v}\"")
                            }
                        }
                        _ => format!("{t} {v}"),
                    },
                    _ => format!("{t} {v}"),
                };
                // Merge "tcp" marker with its first port option.
                if (ext == "tcp" || ext == "udp")
                    && extra.last().map(String::as_str) == Some(ext.as_str())
                {
                    extra.pop();
                    extra.push(format!("{ext} {text}"));
                } else if (ext == "tcp" || ext == "udp")
                    && extra.last().is_some_and(|l| l.starts_with(&ext))
                {
                    if let Some(l) = extra.last_mut() {
                        l.push(' ');
                        l.push_str(&text);
                    }
                } else {
                    extra.push(text);
                }
                neg = false;
                let flag_only = matches!(
                    t,
                    "--checksum-fill" | "--random" | "--random-fully" | "--syn"
                );
                i += if flag_only {
                    1
                } else if t == "--tcp-flags" {
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
    let mut line = String::new();
    if p.line_numbers {
        line.push_str(&format!("{num:<5}"));
    }
    if p.verbose && p.exact {
        line.push_str(&format!("{:>8} {:>8} ", 0, 0));
    } else if p.verbose {
        line.push_str(&format!("{:>5} {:>5} ", 0, 0));
    }
    let (inv, prot) = match prot.strip_prefix('!') {
        Some(x) => ('!', x.to_string()),
        None => (' ', prot),
    };
    line.push_str(&format!("{target:<9} {inv}{prot:<4} -- "));
    if p.verbose {
        let any_if = |x: String| {
            if x == "*" && !p.numeric {
                "any".to_string()
            } else {
                x
            }
        };
        let (iif, oif) = (any_if(iif), any_if(oif));
        line.push_str(&format!(" {iif:<6} {oif:<6} "));
    }
    let split = |a: &str| -> (char, String) {
        match a.strip_prefix('!') {
            Some(x) => ('!', x.to_string()),
            None => (' ', a.to_string()),
        }
    };
    let (sinv, src) = split(&src);
    let (dinv, dst) = split(&dst);
    line.push_str(&format!("{sinv}{src:<19} {dinv}{dst:<19} "));
    if goto {
        line.push_str("[goto] ");
    }
    for e in extra {
        line.push(' ');
        line.push_str(&e);
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(st: &mut XtablesState, line: &str) -> Output {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        st.exec(&args)
    }

    #[test]
    fn canonical_forms() {
        let mut st = XtablesState::new(Family::V4);
        assert_eq!(run(&mut st, "-w -N FOO").status, 0);
        let o = run(&mut st, "-w --table filter --insert FOO --in-interface virbr0 --protocol tcp --destination-port 53 --jump ACCEPT");
        assert_eq!(o, Output::default());
        run(
            &mut st,
            "-w -A FOO --source 192.168.122.7/24 ! --destination 10.1.2.3 -j REJECT",
        );
        let o = run(&mut st, "-w -S FOO");
        assert_eq!(
            o.stdout,
            "-N FOO\n-A FOO -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT\n-A FOO -s 192.168.122.0/24 ! -d 10.1.2.3/32 -j REJECT --reject-with icmp-port-unreachable\n"
        );
        let o = run(
            &mut st,
            "-w -D FOO -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT",
        );
        assert_eq!(o.status, 0, "{o:?}");
        let o = run(
            &mut st,
            "-w -D FOO -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT",
        );
        assert_eq!(o.status, 1);
        assert_eq!(
            o.stderr,
            "iptables: Bad rule (does a matching rule exist in that chain?).\n"
        );
    }

    #[test]
    fn errors() {
        let mut st = XtablesState::new(Family::V4);
        assert_eq!(run(&mut st, "-w -N FOO").status, 0);
        let o = run(&mut st, "-w -N FOO");
        assert_eq!(
            (o.status, o.stderr.as_str()),
            (1, "iptables: Chain already exists.\n")
        );
        let o = run(&mut st, "-w -A FOO --bogus");
        assert_eq!(o.status, 2);
        assert!(o
            .stderr
            .starts_with("iptables v1.8.9 (nf_tables): unknown option \"--bogus\"\n"));
        let o = run(&mut st, "-w -t bogus -S");
        assert_eq!(o.status, 3);
    }
}
