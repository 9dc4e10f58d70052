//! nft's output options applied to what the simulator printed: `-s`
//! (stateless), `-t` (terse), `-y` (numeric priority), `-p` (numeric
//! protocol) and `-n` (all of these plus numeric symbols such as ct states
//! and ICMP codes), and the fixed texts of `-v`, `-V` and `-h`.
//!
//! The simulator keeps rules as the text nft lists, so the numeric forms are
//! derived from that text, line by line, outside quoted strings.

use virtnet_runner::Output;

pub(crate) const VERSION: &str = "nftables v1.0.6 (Lester Gooch #5)";

pub(crate) const VERSION_LONG: &str = r#"nftables v1.0.6 (Lester Gooch #5)
  cli:		editline
  json:		yes
  minigmp:	no
  libxtables:	yes
"#;

pub(crate) const HELP: &str = r#"Usage: nft [ options ] [ cmds... ]

Options (general):
  -h, --help                      Show this help
  -v, --version                   Show version information
  -V                              Show extended version information

Options (ruleset input handling):
  -f, --file <filename>           Read input from <filename>
  -D, --define <name=value>       Define variable, e.g. --define foo=1.2.3.4
  -i, --interactive               Read input from interactive CLI
  -I, --includepath <directory>   Add <directory> to the paths searched for include files. Default is: /etc
  -c, --check                     Check commands validity without actually applying the changes.
  -o, --optimize                  Optimize ruleset

Options (ruleset list formatting):
  -a, --handle                    Output rule handle.
  -s, --stateless                 Omit stateful information of ruleset.
  -t, --terse                     Omit contents of sets.
  -S, --service                   Translate ports to service names as described in /etc/services.
  -N, --reversedns                Translate IP addresses to names.
  -u, --guid                      Print UID/GID as defined in /etc/passwd and /etc/group.
  -n, --numeric                   Print fully numerical output.
  -y, --numeric-priority          Print chain priority numerically.
  -p, --numeric-protocol          Print layer 4 protocols numerically.
  -T, --numeric-time              Print time values numerically.

Options (command output formatting):
  -e, --echo                      Echo what has been added, inserted or replaced.
  -j, --json                      Format output in JSON
  -d, --debug <level [,level...]> Specify debugging level (scanner, parser, eval, netlink, mnl, proto-ctx, segtree, all)

"#;

/// Long options nft 1.0.6 knows but the simulator does not model.
pub(crate) const LONG_OPTIONS: &[&str] = &[
    "define",
    "interactive",
    "includepath",
    "optimize",
    "service",
    "reversedns",
    "debug",
];

/// strerror() text of an I/O error (without Rust's " (os error N)").
pub(crate) fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Output formatting flags from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Format {
    /// How many times `-n` was given (any number means "all numeric").
    pub numeric: u32,
    pub stateless: bool,
    pub terse: bool,
    pub numeric_prio: bool,
    pub numeric_proto: bool,
}

impl Format {
    pub(crate) fn is_plain(&self) -> bool {
        self.numeric == 0
            && !self.stateless
            && !self.terse
            && !self.numeric_prio
            && !self.numeric_proto
    }

    pub(crate) fn apply(&self, mut out: Output) -> Output {
        if self.is_plain() || out.stdout.is_empty() {
            return out;
        }
        out.stdout = self.rewrite(&out.stdout);
        out
    }

    fn rewrite_code(
        &self,
        seg: &str,
        family: &str,
        prio: bool,
        proto: bool,
        symbols: bool,
    ) -> String {
        let mut code = seg.to_string();
        if prio && code.trim_start().starts_with("type ") {
            code = numeric_priority(&code, family);
        }
        if self.stateless {
            code = strip_counters(&code);
        }
        if proto {
            for key in ["meta l4proto ", "ip protocol ", "ip6 nexthdr "] {
                code = map_after(&code, key, proto_number);
            }
        }
        if symbols {
            code = map_after(&code, "ct state ", ct_state_number);
            code = map_after(&code, "meta nfproto ", |w| match w {
                "ipv4" => Some("2".to_string()),
                "ipv6" => Some("10".to_string()),
                _ => None,
            });
            for key in [
                "reject with icmpx ",
                "reject with icmp ",
                "reject with icmpv6 ",
            ] {
                let kind = key.trim_end().rsplit(' ').next().unwrap_or("");
                code = map_after(&code, key, |w| reject_code_number(kind, w));
            }
            code = numeric_tcp_flags(&code);
            code = map_after(&code, "icmp type ", |w| icmp_type_number("icmp", w));
            code = map_after(&code, "icmpv6 type ", |w| icmp_type_number("icmpv6", w));
        }
        code
    }

    fn rewrite(&self, text: &str) -> String {
        let prio = self.numeric > 0 || self.numeric_prio;
        let proto = self.numeric > 0 || self.numeric_proto;
        let symbols = self.numeric > 0;
        let mut family = String::new();
        let mut out = String::new();
        let mut in_elements = false;
        for line in text.split_inclusive('\n') {
            if in_elements {
                if line.trim_end().ends_with('}') {
                    in_elements = false;
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("table ") {
                family = rest.split(' ').next().unwrap_or("").to_string();
            }
            if self.terse && line.trim_start().starts_with("elements = {") {
                in_elements = !line.trim_end().ends_with('}');
                continue;
            }
            // Rewrite only outside quoted strings (comments, log prefixes).
            for (k, seg) in line.split('"').enumerate() {
                if k > 0 {
                    out.push('"');
                }
                if k % 2 == 1 {
                    out.push_str(seg);
                    continue;
                }
                out.push_str(&self.rewrite_code(seg, &family, prio, proto, symbols));
            }
        }
        out
    }
}

fn strip_counters(code: &str) -> String {
    // `counter packets N bytes M` -> `counter`, word by word.
    let words: Vec<&str> = code.split(' ').collect();
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        out.push(words[i]);
        if words[i].ends_with("counter")
            && words.get(i + 1) == Some(&"packets")
            && words.get(i + 3) == Some(&"bytes")
            && words.get(i + 4).is_some()
        {
            // Keep what follows the byte count on the same word (a newline).
            let tail = words[i + 4].trim_start_matches(|c: char| c.is_ascii_digit());
            i += 5;
            if !tail.is_empty() {
                return format!("{}{}{}", out.join(" "), tail, rest_join(&words[i..]));
            }
            continue;
        }
        i += 1;
    }
    out.join(" ")
}

fn rest_join(words: &[&str]) -> String {
    if words.is_empty() {
        String::new()
    } else {
        format!(" {}", words.join(" "))
    }
}

/// Apply `f` to the value after `key`: one word, `!= word`, a comma list
/// (`a,b`) or an anonymous set `{ a, b }`.
fn map_after(code: &str, key: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let Some(i) = code.find(key) else {
        return code.to_string();
    };
    let head = &code[..i + key.len()];
    let mut rest = &code[i + key.len()..];
    let mut out = head.to_string();
    if let Some(r) = rest.strip_prefix("!= ") {
        out.push_str("!= ");
        rest = r;
    }
    if let Some(r) = rest.strip_prefix("vmap { ") {
        // Verdict map: only the keys are values of this type.
        let end = r.find(" }").unwrap_or(r.len());
        let items: Vec<String> = r[..end]
            .split(", ")
            .map(|item| match item.split_once(" : ") {
                Some((k, v)) => format!("{} : {v}", f(k).unwrap_or_else(|| k.to_string())),
                None => item.to_string(),
            })
            .collect();
        out.push_str("vmap { ");
        out.push_str(&items.join(", "));
        out.push_str(&r[end..]);
        return out;
    }
    if let Some(r) = rest.strip_prefix("{ ") {
        let end = r.find(" }").unwrap_or(r.len());
        let items: Vec<String> = r[..end]
            .split(", ")
            .map(|w| f(w).unwrap_or_else(|| w.to_string()))
            .collect();
        out.push_str("{ ");
        out.push_str(&items.join(", "));
        out.push_str(&r[end..]);
        return out;
    }
    let end = rest.find([' ', '\n']).unwrap_or(rest.len());
    let items: Vec<String> = rest[..end]
        .split(',')
        .map(|w| f(w).unwrap_or_else(|| w.to_string()))
        .collect();
    out.push_str(&items.join(","));
    out.push_str(&rest[end..]);
    out
}

/// `tcp flags syn / syn,ack` -> `tcp flags 0x2 / 0x2,0x10`.
fn numeric_tcp_flags(code: &str) -> String {
    const FLAGS: [(&str, u32); 8] = [
        ("fin", 0x01),
        ("syn", 0x02),
        ("rst", 0x04),
        ("psh", 0x08),
        ("ack", 0x10),
        ("urg", 0x20),
        ("ecn", 0x40),
        ("cwr", 0x80),
    ];
    let Some(i) = code.find("tcp flags ") else {
        return code.to_string();
    };
    let start = i + "tcp flags ".len();
    let mut out = code[..start].to_string();
    let mut words = code[start..].split(' ').peekable();
    let mut first = true;
    while let Some(w) = words.next() {
        let (body, nl) = match w.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (w, ""),
        };
        let trimmed = body.trim_end_matches(',');
        let names: Option<Vec<String>> = if trimmed.is_empty() {
            None
        } else {
            trimmed
                .split(',')
                .map(|n| {
                    FLAGS
                        .iter()
                        .find(|(f, _)| *f == n)
                        .map(|(_, b)| format!("{b:#x}"))
                })
                .collect()
        };
        if !first {
            out.push(' ');
        }
        first = false;
        match names {
            Some(n) => {
                out.push_str(&n.join(","));
                out.push_str(&body[trimmed.len()..]);
                out.push_str(nl);
            }
            None if matches!(body, "!=" | "!" | "/" | "&" | "==" | "{" | "}") => {
                out.push_str(w);
            }
            None => {
                // The end of the flags expression: the rest unchanged.
                out.push_str(w);
                for rest in words.by_ref() {
                    out.push(' ');
                    out.push_str(rest);
                }
            }
        }
    }
    out
}

fn proto_number(name: &str) -> Option<String> {
    proto_number_of(name).map(|n| n.to_string())
}

/// IP protocol number of a name nft prints.
pub(crate) fn proto_number_of(name: &str) -> Option<u8> {
    Some(match name {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "dccp" => 33,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" => 58,
        "comp" => 108,
        "sctp" => 132,
        "udplite" => 136,
        _ => return None,
    })
}

fn ct_state_number(name: &str) -> Option<String> {
    let n = match name {
        "invalid" => 0x1,
        "established" => 0x2,
        "related" => 0x4,
        "new" => 0x8,
        "untracked" => 0x40,
        _ => return None,
    };
    Some(format!("{n:#x}"))
}

fn reject_code_number(kind: &str, name: &str) -> Option<String> {
    let n = match (kind, name) {
        ("icmpx", "no-route") => 0,
        ("icmpx", "port-unreachable") => 1,
        ("icmpx", "host-unreachable") => 2,
        ("icmpx", "admin-prohibited") => 3,
        ("icmp", "net-unreachable") => 0,
        ("icmp", "host-unreachable") => 1,
        ("icmp", "prot-unreachable") => 2,
        ("icmp", "port-unreachable") => 3,
        ("icmp", "net-prohibited") => 9,
        ("icmp", "host-prohibited") => 10,
        ("icmp", "admin-prohibited") => 13,
        ("icmpv6", "no-route") => 0,
        ("icmpv6", "admin-prohibited") => 1,
        ("icmpv6", "addr-unreachable") => 3,
        ("icmpv6", "port-unreachable") => 4,
        ("icmpv6", "policy-fail") => 5,
        ("icmpv6", "reject-route") => 6,
        _ => return None,
    };
    Some(n.to_string())
}

/// ICMP / ICMPv6 type names nft knows, with their numbers.
pub(crate) const ICMP_TYPES: &[(&str, u8)] = &[
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
    ("timestamp-reply", 14),
    ("info-request", 15),
    ("info-reply", 16),
    ("address-mask-request", 17),
    ("address-mask-reply", 18),
];

pub(crate) const ICMPV6_TYPES: &[(&str, u8)] = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("mld-listener-query", 130),
    ("mld-listener-report", 131),
    ("mld-listener-done", 132),
    ("mld-listener-reduction", 132),
    ("nd-router-solicit", 133),
    ("nd-router-advert", 134),
    ("nd-neighbor-solicit", 135),
    ("nd-neighbor-advert", 136),
    ("nd-redirect", 137),
    ("router-renumbering", 138),
    ("ind-neighbor-solicit", 141),
    ("ind-neighbor-advert", 142),
    ("mld2-listener-report", 143),
];

fn icmp_type_number(kind: &str, name: &str) -> Option<String> {
    let table = if kind == "icmp" {
        ICMP_TYPES
    } else {
        ICMPV6_TYPES
    };
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// `type T hook H priority NAME [+|- N]; ...` with the priority as a number.
fn numeric_priority(code: &str, family: &str) -> String {
    let Some(i) = code.find(" priority ") else {
        return code.to_string();
    };
    let start = i + " priority ".len();
    let end = code[start..]
        .find(';')
        .map(|e| start + e)
        .unwrap_or(code.len());
    let expr = &code[start..end];
    let mut words = expr.split(' ');
    let base = words.next().unwrap_or("");
    let base_value: Option<i64> = base.parse().ok().or_else(|| {
        let bridge = family == "bridge";
        Some(match (base, bridge) {
            ("raw", false) => -300,
            ("mangle", false) => -150,
            ("dstnat", false) => -100,
            ("filter", false) => 0,
            ("security", false) => 50,
            ("srcnat", false) => 100,
            ("dstnat", true) => -300,
            ("filter", true) => -200,
            ("out", true) => 100,
            ("srcnat", true) => 300,
            _ => return None,
        })
    });
    let Some(mut value) = base_value else {
        return code.to_string();
    };
    match (
        words.next(),
        words.next().and_then(|n| n.parse::<i64>().ok()),
    ) {
        (Some("+"), Some(n)) => value += n,
        (Some("-"), Some(n)) => value -= n,
        _ => {}
    }
    format!("{}{}{}", &code[..start], value, &code[end..])
}
