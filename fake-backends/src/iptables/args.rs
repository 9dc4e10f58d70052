//! Argument parsing of the simulated `iptables`/`ip6tables`: the command
//! letter, the match and target extensions with their options, and the
//! canonical form of every value (ports, protocols, addresses, ICMP types,
//! conntrack states, TCP flags), with iptables' own error texts.

use super::*;

/// Targets the simulator knows besides user chains.
pub(super) const STD_TARGETS: &[&str] = &["ACCEPT", "DROP", "RETURN", "QUEUE"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmdKind {
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
    pub(super) fn letter(self) -> char {
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
    pub(super) fn takes_rule(self) -> bool {
        matches!(
            self,
            CmdKind::Append | CmdKind::Insert | CmdKind::Delete | CmdKind::Check | CmdKind::Replace
        )
    }
}

pub(super) fn command_of(opt: &str) -> Option<CmdKind> {
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
pub(super) struct Ext {
    pub(super) name: String,
    /// (option, negated, canonical value or None for flags), in the order
    /// the option was given; rendering reorders per extension.
    pub(super) opts: Vec<(String, bool, Option<String>)>,
}

/// Parsed rule specification.
#[derive(Debug, Clone, Default)]
pub(super) struct Spec {
    pub(super) src: Option<(bool, String)>,
    pub(super) dst: Option<(bool, String)>,
    pub(super) iif: Option<(bool, String)>,
    pub(super) oif: Option<(bool, String)>,
    pub(super) proto: Option<(bool, String)>,
    pub(super) frag: Option<bool>,
    pub(super) matches: Vec<Ext>,
    pub(super) target: Option<Ext>,
    pub(super) goto: bool,
}

/// An extension's option table: canonical option name, aliases, whether it
/// takes a value, whether it may be negated.
pub(super) struct OptDef {
    pub(super) name: &'static str,
    pub(super) aliases: &'static [&'static str],
    pub(super) has_value: bool,
}

pub(super) const fn o(
    name: &'static str,
    aliases: &'static [&'static str],
    has_value: bool,
) -> OptDef {
    OptDef {
        name,
        aliases,
        has_value,
    }
}

pub(super) const TCP_OPTS: &[OptDef] = &[
    o("--sport", &["--source-port"], true),
    o("--dport", &["--destination-port"], true),
    o("--tcp-flags", &[], true),
    o("--syn", &[], false),
];

pub(super) const UDP_OPTS: &[OptDef] = &[
    o("--sport", &["--source-port"], true),
    o("--dport", &["--destination-port"], true),
];

pub(super) const ICMP_OPTS: &[OptDef] = &[o("--icmp-type", &[], true)];

pub(super) const ICMP6_OPTS: &[OptDef] = &[o("--icmpv6-type", &[], true)];

pub(super) const MARK_OPTS: &[OptDef] = &[o("--mark", &[], true)];

pub(super) const MARK_TARGET_OPTS: &[OptDef] = &[
    o("--set-xmark", &[], true),
    o("--set-mark", &[], true),
    o("--and-mark", &[], true),
    o("--or-mark", &[], true),
    o("--xor-mark", &[], true),
];

pub(super) const CONNTRACK_OPTS: &[OptDef] =
    &[o("--ctstate", &[], true), o("--ctstatus", &[], true)];

pub(super) const STATE_OPTS: &[OptDef] = &[o("--state", &[], true)];

pub(super) const COMMENT_OPTS: &[OptDef] = &[o("--comment", &[], true)];

pub(super) const ADDRTYPE_OPTS: &[OptDef] = &[
    o("--src-type", &[], true),
    o("--dst-type", &[], true),
    o("--limit-iface-in", &[], false),
    o("--limit-iface-out", &[], false),
];

pub(super) const MULTIPORT_OPTS: &[OptDef] = &[
    o("--sports", &["--source-ports"], true),
    o("--dports", &["--destination-ports"], true),
    o("--ports", &[], true),
];

pub(super) const REJECT_OPTS: &[OptDef] = &[o("--reject-with", &[], true)];

pub(super) const MASQ_OPTS: &[OptDef] = &[
    o("--to-ports", &[], true),
    o("--random", &[], false),
    o("--random-fully", &[], false),
];

pub(super) const SNAT_OPTS: &[OptDef] = &[
    o("--to-source", &[], true),
    o("--random", &[], false),
    o("--random-fully", &[], false),
    o("--persistent", &[], false),
];

pub(super) const DNAT_OPTS: &[OptDef] = &[
    o("--to-destination", &[], true),
    o("--random", &[], false),
    o("--persistent", &[], false),
];

pub(super) const CHECKSUM_OPTS: &[OptDef] = &[o("--checksum-fill", &[], false)];

pub(super) const LOG_OPTS: &[OptDef] = &[o("--log-prefix", &[], true), o("--log-level", &[], true)];

pub(super) const NO_OPTS: &[OptDef] = &[];

pub(super) fn match_opts(name: &str) -> Option<&'static [OptDef]> {
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
pub(super) fn implicit_match(proto: &str) -> &str {
    match proto {
        "ipv6-icmp" => "icmp6",
        p => p,
    }
}

pub(super) fn target_opts(name: &str) -> Option<&'static [OptDef]> {
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

pub(super) fn find_opt<'a>(defs: &'a [OptDef], opt: &str) -> Option<&'a OptDef> {
    defs.iter()
        .find(|d| d.name == opt || d.aliases.contains(&opt))
}

pub(super) fn proto_name(p: &str) -> Option<&'static str> {
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

pub(super) fn proto_number(p: &str) -> u8 {
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

pub(super) const SERVICES: &[(&str, u16)] = &[
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

pub(super) fn parse_port(s: &str) -> Option<u16> {
    if let Ok(n) = s.parse::<u32>() {
        return u16::try_from(n).ok();
    }
    SERVICES.iter().find(|(n, _)| *n == s).map(|(_, p)| *p)
}

pub(super) fn service_name(p: u16) -> Option<&'static str> {
    SERVICES.iter().find(|(_, n)| *n == p).map(|(s, _)| *s)
}

pub(super) fn canon_port_range(s: &str, sep: char) -> Result<String, Fail> {
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

pub(super) const CT_STATES: &[&str] = &[
    "INVALID",
    "NEW",
    "RELATED",
    "ESTABLISHED",
    "UNTRACKED",
    "SNAT",
    "DNAT",
];

pub(super) fn canon_ctstate(s: &str) -> Result<String, Fail> {
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

pub(super) const ADDR_TYPES: &[&str] = &[
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

pub(super) const REJECT4: &[&str] = &[
    "icmp-net-unreachable",
    "icmp-host-unreachable",
    "icmp-port-unreachable",
    "icmp-proto-unreachable",
    "icmp-net-prohibited",
    "icmp-host-prohibited",
    "icmp-admin-prohibited",
    "tcp-reset",
];

pub(super) const REJECT6: &[&str] = &[
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
pub(super) fn canon_addr(s: &str, fam: Family) -> Result<Option<String>, Fail> {
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

pub(super) struct Parsed {
    pub(super) table: String,
    pub(super) cmd: CmdKind,
    pub(super) chain: Option<String>,
    /// Second positional: rule number, policy or new chain name.
    pub(super) arg2: Option<String>,
    pub(super) spec: Spec,
    pub(super) has_rule_opts: Option<String>,
    pub(super) numeric: bool,
    pub(super) verbose: bool,
    /// `-x`: exact counters (wider columns with `-v`).
    pub(super) exact: bool,
    pub(super) line_numbers: bool,
}

pub(super) fn is_option(a: &str) -> bool {
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

pub(super) fn parse(args: &[String], fam: Family) -> Result<Parsed, Fail> {
    let mut p = ArgParser::new(args, fam);
    while p.i < args.len() {
        let a = args[p.i].as_str();
        if a == "!" {
            if p.negate {
                return Err(Fail::Param("multiple consecutive ! not allowed".into()));
            }
            p.negate = true;
            p.i += 1;
        } else if let Some(k) = command_of(a) {
            p.command(k, a)?;
        } else if !p.general_option(a)? {
            let neg = std::mem::take(&mut p.negate);
            if let Some(short) = rule_option_name(a) {
                p.rule_option(short, a, neg)?;
            } else if !a.starts_with('-') || a == "-" {
                return Err(Fail::BadArg(a.to_string()));
            } else {
                p.extension_option(a, neg)?;
            }
        }
    }
    p.finish()
}

/// The short form of a built-in rule option (`--source` → `-s`).
fn rule_option_name(a: &str) -> Option<&'static str> {
    match a {
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
    }
}

/// The state of one iptables argv being read, left to right, the way
/// iptables' own parser reads it: the command with its positional
/// arguments, general options, built-in rule options, then extension
/// options placed on the target, the loaded matches or the implicit
/// protocol match.
struct ArgParser<'a> {
    args: &'a [String],
    fam: Family,
    /// Index of the next argument.
    i: usize,
    table: Option<String>,
    cmd: Option<CmdKind>,
    chain: Option<String>,
    arg2: Option<String>,
    spec: Spec,
    /// The first rule option seen (for "Illegal option with this command").
    first_rule_opt: Option<String>,
    numeric: bool,
    verbose: bool,
    exact: bool,
    line_numbers: bool,
    /// A `!` is waiting for the option it negates.
    negate: bool,
    implicit_proto_loaded: bool,
    /// `-s`/`-d` as given; resolved when all options are read.
    raw_src: Option<(bool, String)>,
    raw_dst: Option<(bool, String)>,
}

impl<'a> ArgParser<'a> {
    fn new(args: &'a [String], fam: Family) -> Self {
        ArgParser {
            args,
            fam,
            i: 0,
            table: None,
            cmd: None,
            chain: None,
            arg2: None,
            spec: Spec::default(),
            first_rule_opt: None,
            numeric: false,
            verbose: false,
            exact: false,
            line_numbers: false,
            negate: false,
            implicit_proto_loaded: false,
            raw_src: None,
            raw_dst: None,
        }
    }

    /// The value of option `opt` at the current index.
    fn need(&self, opt: &str) -> Result<String, Fail> {
        self.args
            .get(self.i + 1)
            .cloned()
            .ok_or_else(|| Fail::Param(format!("option \"{opt}\" requires an argument")))
    }

    /// A command (`-A`, `-I`, `-N`, `-L` …) with its positional arguments.
    fn command(&mut self, k: CmdKind, a: &str) -> Result<(), Fail> {
        if let Some(prev) = self.cmd {
            return Err(Fail::Param(format!(
                "Cannot use -{} with -{}",
                k.letter(),
                prev.letter()
            )));
        }
        self.cmd = Some(k);
        let args = self.args;
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
            .get(self.i + 1)
            .filter(|n| !is_option(n) && n.as_str() != "!");
        if needs_chain {
            let c = self.need(a)?;
            if (k == CmdKind::NewChain || k == CmdKind::Rename) && c.starts_with('-') {
                return Err(Fail::Param(
                    "chain name not allowed to start with `-'".into(),
                ));
            }
            self.chain = Some(c);
            self.i += 2;
        } else if let Some(c) = next_pos {
            self.chain = Some(c.clone());
            self.i += 2;
        } else {
            self.i += 1;
        }
        // Second positional.
        let next = args
            .get(self.i)
            .filter(|n| !is_option(n) && n.as_str() != "!")
            .cloned();
        match k {
            CmdKind::Insert | CmdKind::Delete => {
                if let Some(n) = next {
                    if n.chars().all(|c| c.is_ascii_digit()) {
                        self.arg2 = Some(n);
                        self.i += 1;
                    }
                }
            }
            CmdKind::Replace => {
                let n = next
                    .ok_or_else(|| Fail::Param(format!("option \"{a}\" requires an argument")))?;
                self.arg2 = Some(n);
                self.i += 1;
            }
            CmdKind::List | CmdKind::ListRules | CmdKind::Zero if self.chain.is_some() => {
                if let Some(n) = next {
                    self.arg2 = Some(n);
                    self.i += 1;
                }
            }
            CmdKind::Policy | CmdKind::Rename => {
                let n = next.ok_or_else(|| {
                    Fail::Param(format!("-{} requires old-chain and new-chain", k.letter()))
                })?;
                self.arg2 = Some(n);
                self.i += 1;
            }
            _ => {}
        }
        if let Some(n) = &self.arg2 {
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
        Ok(())
    }

    /// A general option (`-w`, `-t`, `-n`, `-v`, `-x`, `--line-numbers`,
    /// `-4`/`-6`); false when `a` is not one.
    fn general_option(&mut self, a: &str) -> Result<bool, Fail> {
        match a {
            "-w" | "--wait" => {
                if self
                    .args
                    .get(self.i + 1)
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
                {
                    self.i += 1;
                }
                self.i += 1;
            }
            "-W" | "--wait-interval" => {
                self.need(a)?;
                self.i += 2;
            }
            "-t" | "--table" => {
                self.table = Some(self.need(a)?);
                self.i += 2;
            }
            "-n" | "--numeric" => {
                self.numeric = true;
                self.i += 1;
            }
            "-v" | "--verbose" => {
                self.verbose = true;
                self.i += 1;
            }
            "-x" | "--exact" => {
                self.exact = true;
                self.i += 1;
            }
            "--line-numbers" => {
                self.line_numbers = true;
                self.i += 1;
            }
            "-4" | "--ipv4" => {
                if self.fam == Family::V6 {
                    return Err(Fail::Param("This is the IPv6 version of ip6tables.".into()));
                }
                self.i += 1;
            }
            "-6" | "--ipv6" => {
                if self.fam == Family::V4 {
                    return Err(Fail::Param("This is the IPv4 version of iptables.".into()));
                }
                self.i += 1;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A built-in rule option (`s` its short form, `a` as written).
    fn rule_option(&mut self, s: &'static str, a: &str, neg: bool) -> Result<(), Fail> {
        if self.first_rule_opt.is_none() {
            self.first_rule_opt = Some(s.to_string());
        }
        if s == "-f" {
            self.spec.frag = Some(neg);
            self.i += 1;
            return Ok(());
        }
        let v = self.need(a)?;
        self.i += 2;
        let dup = |set: bool| -> Result<(), Fail> {
            if set {
                Err(Fail::Param(format!("multiple {s} flags not allowed")))
            } else {
                Ok(())
            }
        };
        let spec = &mut self.spec;
        match s {
            // Addresses are resolved after all options are parsed.
            "-s" => {
                dup(self.raw_src.is_some())?;
                self.raw_src = Some((neg, v));
            }
            "-d" => {
                dup(self.raw_dst.is_some())?;
                self.raw_dst = Some((neg, v));
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
                let p = proto_name(&v)
                    .ok_or_else(|| Fail::Param(format!("unknown protocol \"{v}\" specified")))?;
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
        Ok(())
    }

    /// An extension option: the target's first, then the loaded matches'
    /// (latest first), then the implicit protocol match's.
    fn extension_option(&mut self, a: &str, neg: bool) -> Result<(), Fail> {
        let (args, fam) = (self.args, self.fam);
        if self.first_rule_opt.is_none() {
            self.first_rule_opt = Some(a.to_string());
        }
        if let Some(t) = self.spec.target.as_mut() {
            if let Some(d) = target_opts(&t.name).and_then(|defs| find_opt(defs, a)) {
                let (v, used) = read_value(args, self.i, d)?;
                self.i += used;
                return push_opt(&mut t.opts, &t.name, d, neg, v, fam);
            }
        }
        for m in self.spec.matches.iter_mut().rev() {
            if let Some(d) = match_opts(&m.name).and_then(|defs| find_opt(defs, a)) {
                let (v, used) = read_value(args, self.i, d)?;
                self.i += used;
                return push_opt(&mut m.opts, &m.name, d, neg, v, fam);
            }
        }
        if !self.implicit_proto_loaded {
            if let Some((false, p)) = &self.spec.proto {
                let mname = implicit_match(p).to_string();
                let other_family = match fam {
                    Family::V4 => mname == "icmp6",
                    Family::V6 => mname == "icmp",
                };
                if let Some(defs) = match_opts(&mname).filter(|_| !other_family) {
                    if let Some(d) = find_opt(defs, a) {
                        let (v, used) = read_value(args, self.i, d)?;
                        self.i += used;
                        let mut opts = Vec::new();
                        push_opt(&mut opts, &mname, d, neg, v, fam)?;
                        self.spec.matches.push(Ext { name: mname, opts });
                        self.implicit_proto_loaded = true;
                        return Ok(());
                    }
                }
            }
        }
        Err(Fail::Param(format!("unknown option \"{a}\"")))
    }

    /// Addresses resolved, the command's checks, the target's required
    /// options.
    fn finish(self) -> Result<Parsed, Fail> {
        let ArgParser {
            fam,
            table,
            cmd,
            chain,
            arg2,
            mut spec,
            first_rule_opt,
            numeric,
            verbose,
            exact,
            line_numbers,
            raw_src,
            raw_dst,
            ..
        } = self;
        for (raw, slot) in [(&raw_src, &mut spec.src), (&raw_dst, &mut spec.dst)] {
            if let Some((neg, v)) = raw {
                *slot = canon_addr(v, fam)?.map(|x| (*neg, x));
                if *neg && slot.is_none() {
                    *slot = Some((true, "0.0.0.0/0".into()));
                }
            }
        }
        let cmd = cmd.ok_or_else(|| Fail::Param("no command specified".into()))?;
        let illegal = !cmd.takes_rule() || (matches!(cmd, CmdKind::Delete) && arg2.is_some());
        if illegal {
            if let Some(o) = &first_rule_opt {
                return Err(Fail::Param(format!(
                    "Illegal option `{o}' with this command"
                )));
            }
        }
        let table = table.unwrap_or_else(|| "filter".to_string());
        if let Some(t) = &spec.target {
            check_target_options(t)?;
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
}

/// The options a target cannot do without, with iptables' messages.
fn check_target_options(t: &Ext) -> Result<(), Fail> {
    match t.name.as_str() {
        "MARK" if t.opts.is_empty() => Err(Fail::Param(
            "MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required".into(),
        )),
        "SNAT" if !t.opts.iter().any(|o| o.0 == "--to-source") => Err(Fail::ParamNl(
            "SNAT: option \"--to-source\" must be specified".into(),
        )),
        "DNAT" if !t.opts.iter().any(|o| o.0 == "--to-destination") => Err(Fail::ParamNl(
            "DNAT: option \"--to-destination\" must be specified".into(),
        )),
        _ => Ok(()),
    }
}

/// The value of option `d` at `args[i]` (two words for `--tcp-flags`) and
/// how many words it took, the option included.
pub(super) fn read_value(
    args: &[String],
    i: usize,
    d: &OptDef,
) -> Result<(Option<String>, usize), Fail> {
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
pub(super) fn push_opt(
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
pub(super) fn nat_address_ok(v: &str, fam: Family) -> bool {
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

/// A NAT range as iptables prints it back: a range of one address
/// (`A-A`) as that address, a range of one port (`P-P`) as that port
/// (real iptables-nft 1.8.9: `--to-source 1.2.3.4-1.2.3.4:100-100` is
/// listed `--to-source 1.2.3.4:100`, `[2001:db8::1-2001:db8::1]:7-9` as
/// `[2001:db8::1]:7-9`). Anything else is kept as given.
fn canon_nat_range(v: &str, fam: Family) -> String {
    let one = |r: &str| match r.split_once('-') {
        Some((a, b)) if a == b => a.to_string(),
        _ => r.to_string(),
    };
    match fam {
        Family::V4 => match v.split_once(':') {
            Some((a, p)) => format!("{}:{}", one(a), one(p)),
            None => one(v),
        },
        Family::V6 => match v.strip_prefix('[').and_then(|r| r.split_once("]:")) {
            Some((a, p)) => format!("[{}]:{}", one(a), one(p)),
            None if !v.starts_with('[') => one(v),
            None => v.to_string(),
        },
    }
}

/// `V[/M]` of the mark match and MARK target (decimal or 0x hex).
pub(super) fn mark_value(v: &str, ext: &str, opt: &str) -> Result<(u32, Option<u32>), Fail> {
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

pub(super) const ICMP4_NAMES: &[(&str, &str)] = &[
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

pub(super) const ICMP6_NAMES: &[(&str, &str)] = &[
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
pub(super) fn canon_icmp(v: &str, v6: bool) -> Result<String, Fail> {
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

pub(super) const TCP_FLAGS: &[&str] = &["FIN", "SYN", "RST", "PSH", "ACK", "URG"];

/// A `--tcp-flags` list in iptables' order (`ALL`, `NONE` expanded).
pub(super) fn canon_tcp_flags(list: &str) -> Result<String, Fail> {
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

pub(super) fn canon_value(
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
            canon_nat_range(&v, fam)
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
