//! What `iptables-save` / `ip6tables-save` (iptables-nft 1.8.9) lists for
//! the rules virtnet's iptables generator emits ([`super::iptables`], laid
//! out by [`super::batched`]), so that a daemon start can tell from ONE
//! listing per family whether a batched network's chains are intact
//! (`driver::check`).
//!
//! [`canonical_rule`] turns the long options the generator writes
//! (`--in-interface virbr0 --protocol udp --destination-port 53 --jump
//! ACCEPT`) into the text iptables-save prints after `-A CHAIN ` (`-i
//! virbr0 -p udp -m udp --dport 53 -j ACCEPT`): addresses first (`-s`,
//! `-d`, masked, with their prefix: a host gets `/32` / `/128`), then
//! `-i`, `-o`, `-p`, each with a `!` before it when negated; then the
//! matches in the order given (a port loads the protocol's match: `-m udp
//! --dport 53`; `-m conntrack --ctstate` with its states in the kernel's
//! order), then the target with the options iptables prints (REJECT's
//! default `--reject-with icmp-port-unreachable` /
//! `icmp6-port-unreachable`, a one-port range as one port, an IPv6 NAT
//! address with ports in brackets).
//!
//! It knows exactly that vocabulary and nothing else: any other option,
//! target or value it cannot put in the listed form gives `None`, which
//! the caller takes for "not intact" (a false "drifted" costs a re-add; a
//! false "intact" would keep a broken network). Checked against the real
//! tool for every golden case (`core/tests/ipt_save_real.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::firewall::Layer;

/// A rule as `iptables-save` lists it after `-A CHAIN ` (single spaces),
/// for `args` (the rule without table, action and chain) of family
/// `layer`; `None` for anything outside the generator's vocabulary.
pub fn canonical_rule<S: AsRef<str>>(layer: Layer, args: &[S]) -> Option<String> {
    let v6 = match layer {
        Layer::Ipv4 => false,
        Layer::Ipv6 => true,
        _ => return None,
    };
    let mut src: Option<String> = None;
    let mut dst: Option<String> = None;
    let mut iif: Option<String> = None;
    let mut oif: Option<String> = None;
    let mut proto: Option<String> = None;
    let mut matches: Vec<String> = Vec::new();
    let mut target: Option<String> = None;
    let mut i = 0;
    let arg = |i: usize| args.get(i).map(|s| s.as_ref());
    let mut negate = false;
    while let Some(w) = arg(i) {
        i += 1;
        if w == "!" {
            if negate {
                return None;
            }
            negate = true;
            continue;
        }
        let not = if std::mem::take(&mut negate) {
            "! "
        } else {
            ""
        };
        match w {
            "--source" | "-s" if src.is_none() => {
                src = Some(format!("{not}-s {}", address(take(args, &mut i)?, v6)?));
            }
            "--destination" | "-d" if dst.is_none() => {
                dst = Some(format!("{not}-d {}", address(take(args, &mut i)?, v6)?));
            }
            "--in-interface" | "-i" if iif.is_none() => {
                iif = Some(format!("{not}-i {}", interface(take(args, &mut i)?)?));
            }
            "--out-interface" | "-o" if oif.is_none() => {
                oif = Some(format!("{not}-o {}", interface(take(args, &mut i)?)?));
            }
            "--protocol" | "-p" if proto.is_none() => {
                let p = take(args, &mut i)?;
                if !matches!(p, "tcp" | "udp") {
                    return None;
                }
                proto = Some(format!("{not}-p {p}"));
            }
            _ if !not.is_empty() => return None,
            "--destination-port" | "--dport" if target.is_none() => {
                // The protocol's match, loaded by its option.
                let p = proto.as_deref()?.strip_prefix("-p ")?;
                let port = port(take(args, &mut i)?)?;
                matches.push(format!("-m {p} --dport {port}"));
            }
            "--match" | "-m" if target.is_none() => {
                if take(args, &mut i)? != "conntrack" || take(args, &mut i)? != "--ctstate" {
                    return None;
                }
                matches.push(format!(
                    "-m conntrack --ctstate {}",
                    ctstate(take(args, &mut i)?)?
                ));
            }
            "--jump" | "-j" if target.is_none() => {
                let t = take(args, &mut i)?;
                let rest: Vec<&str> = (i..args.len()).filter_map(arg).collect();
                i = args.len();
                target = Some(jump(t, &rest, v6)?);
            }
            _ => return None,
        }
    }
    if negate {
        return None;
    }
    let parts: Vec<String> = [src, dst, iif, oif, proto]
        .into_iter()
        .flatten()
        .chain(matches)
        .chain(target)
        .collect();
    Some(parts.join(" "))
}

/// The value of the option before `i` (moves `i` past it).
fn take<'a, S: AsRef<str>>(args: &'a [S], i: &mut usize) -> Option<&'a str> {
    let v = args.get(*i)?.as_ref();
    *i += 1;
    Some(v)
}

/// `-j TARGET` with its options as listed.
fn jump(t: &str, rest: &[&str], v6: bool) -> Option<String> {
    match (t, rest) {
        ("ACCEPT" | "RETURN" | "DROP", []) => Some(format!("-j {t}")),
        ("REJECT", []) => Some(format!(
            "-j REJECT --reject-with {}",
            if v6 {
                "icmp6-port-unreachable"
            } else {
                "icmp-port-unreachable"
            }
        )),
        ("CHECKSUM", ["--checksum-fill"]) if !v6 => Some("-j CHECKSUM --checksum-fill".into()),
        ("MASQUERADE", []) => Some("-j MASQUERADE".into()),
        ("MASQUERADE", ["--to-ports", p]) => {
            Some(format!("-j MASQUERADE --to-ports {}", ports(p)?))
        }
        ("SNAT", ["--to-source", s]) => Some(format!("-j SNAT --to-source {}", nat_source(s, v6)?)),
        (c, []) if c.starts_with(super::batched::IPT_CHAIN_PREFIX) && plain_word(c) => {
            Some(format!("-j {c}"))
        }
        _ => None,
    }
}

/// A plain name (chain, interface): what iptables-save prints unquoted.
fn plain_word(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 28
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn interface(w: &str) -> Option<&str> {
    (plain_word(w) && w.len() < 16).then_some(w)
}

/// An address with an optional prefix length, as listed: the network
/// part (masked) and its prefix (`/32`, `/128` for a host).
fn address(w: &str, v6: bool) -> Option<String> {
    let (a, len) = match w.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (w, None),
    };
    let ip: IpAddr = a.parse().ok()?;
    let max = if v6 { 128 } else { 32 };
    let len: u32 = match len {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l.parse().ok()?,
        Some(_) => return None,
        None => max,
    };
    if len > max {
        return None;
    }
    match (ip, v6) {
        (IpAddr::V4(ip), false) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(format!("{}/{len}", Ipv4Addr::from(u32::from(ip) & mask)))
        }
        (IpAddr::V6(ip), true) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(format!(
                "{}/{len}",
                v6_text(Ipv6Addr::from(u128::from(ip) & mask))?
            ))
        }
        _ => None,
    }
}

/// An IPv6 address as inet_ntop prints it; `None` for the forms where
/// Rust's text may differ from glibc's (IPv4-compatible / mapped).
fn v6_text(ip: Ipv6Addr) -> Option<String> {
    let s = ip.segments();
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) && !ip.is_unspecified() && s[6] != 0 {
        return None;
    }
    Some(ip.to_string())
}

fn port(w: &str) -> Option<u16> {
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    w.parse().ok()
}

/// `P` or `P-Q` as listed (`P-P` as `P`).
fn ports(w: &str) -> Option<String> {
    let (a, b) = match w.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(w)?;
            (p, p)
        }
    };
    if a > b {
        return None;
    }
    Some(if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    })
}

/// The states of `--ctstate` in the order the conntrack match lists them.
fn ctstate(w: &str) -> Option<String> {
    const ORDER: [&str; 5] = ["INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED"];
    let given: Vec<&str> = w.split(',').collect();
    if given.iter().any(|s| !ORDER.contains(s)) {
        return None;
    }
    let out: Vec<&str> = ORDER.into_iter().filter(|s| given.contains(s)).collect();
    Some(out.join(","))
}

/// SNAT's `--to-source`: `A[-B][:P[-Q]]` (IPv6 with ports: `[A[-B]]:P[-Q]`).
fn nat_source(w: &str, v6: bool) -> Option<String> {
    let (addrs, ports_part) = if v6 {
        match w.strip_prefix('[') {
            Some(rest) => {
                let (a, p) = rest.split_once("]:")?;
                (a, Some(p))
            }
            None => (w, None),
        }
    } else {
        match w.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (w, None),
        }
    };
    let one = |a: &str| -> Option<String> {
        let ip: IpAddr = a.parse().ok()?;
        match (ip, v6) {
            (IpAddr::V4(ip), false) => Some(ip.to_string()),
            (IpAddr::V6(ip), true) => v6_text(ip),
            _ => None,
        }
    };
    let range = match addrs.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a == b {
                a
            } else {
                format!("{a}-{b}")
            }
        }
        None => one(addrs)?,
    };
    Some(match (ports_part, v6) {
        (None, _) => range,
        (Some(p), false) => format!("{range}:{}", ports(p)?),
        (Some(p), true) => format!("[{range}]:{}", ports(p)?),
    })
}

/// One family's `iptables-save` output: per table, its chains (declared
/// with `:CHAIN`) and their rules (`-A CHAIN ` taken off, spaces single).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedTables {
    /// (table, chain, rules in order)
    chains: Vec<(String, String, Vec<String>)>,
}

impl SavedTables {
    /// Parses `iptables-save` text (comments, counters and `COMMIT`
    /// ignored; a rule of an undeclared chain is kept under its chain).
    pub fn parse(text: &str) -> SavedTables {
        let mut t = SavedTables::default();
        let mut table = String::new();
        for line in text.lines() {
            let l = line.trim();
            if let Some(name) = l.strip_prefix('*') {
                table = name.trim().to_string();
            } else if let Some(decl) = l.strip_prefix(':') {
                let chain = decl.split_whitespace().next().unwrap_or("").to_string();
                if t.position(&table, &chain).is_none() {
                    t.chains.push((table.clone(), chain, Vec::new()));
                }
            } else if let Some(rule) = l.strip_prefix("-A ") {
                let mut w = rule.split_whitespace();
                let chain = w.next().unwrap_or("").to_string();
                let text = w.collect::<Vec<&str>>().join(" ");
                let i = match t.position(&table, &chain) {
                    Some(i) => i,
                    None => {
                        t.chains.push((table.clone(), chain, Vec::new()));
                        t.chains.len() - 1
                    }
                };
                t.chains[i].2.push(text);
            }
        }
        t
    }

    fn position(&self, table: &str, chain: &str) -> Option<usize> {
        self.chains
            .iter()
            .position(|(t, c, _)| t == table && c == chain)
    }

    /// The rules of `chain` in `table`; `None` when the chain is not there.
    pub fn chain(&self, table: &str, chain: &str) -> Option<&[String]> {
        self.position(table, chain)
            .map(|i| self.chains[i].2.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(layer: Layer, rule: &str) -> Option<String> {
        let w: Vec<&str> = rule.split_whitespace().collect();
        canonical_rule(layer, &w)
    }

    #[test]
    fn the_generator_vocabulary_is_put_as_iptables_save_lists_it() {
        let v4 = Layer::Ipv4;
        let pairs = [
            (
                "--in-interface virbr0 --protocol udp --destination-port 53 --jump ACCEPT",
                "-i virbr0 -p udp -m udp --dport 53 -j ACCEPT",
            ),
            (
                "--source 192.168.122.0/24 --in-interface virbr0 --jump ACCEPT",
                "-s 192.168.122.0/24 -i virbr0 -j ACCEPT",
            ),
            (
                "--destination 192.168.122.0/24 --out-interface virbr0 --match conntrack --ctstate ESTABLISHED,RELATED --jump ACCEPT",
                "-d 192.168.122.0/24 -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            ),
            (
                "--out-interface virbr0 --jump REJECT",
                "-o virbr0 -j REJECT --reject-with icmp-port-unreachable",
            ),
            (
                "--source 192.168.122.0/24 -p tcp ! --destination 192.168.122.0/24 --jump MASQUERADE --to-ports 1024-65535",
                "-s 192.168.122.0/24 ! -d 192.168.122.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535",
            ),
            (
                "--source 192.168.122.0/24 --destination 255.255.255.255 --jump RETURN",
                "-s 192.168.122.0/24 -d 255.255.255.255/32 -j RETURN",
            ),
            (
                "--source 10.0.0.1/24 --jump SNAT --to-source 198.51.100.1-198.51.100.1:2000-2000",
                "-s 10.0.0.0/24 -j SNAT --to-source 198.51.100.1:2000",
            ),
            (
                "--source 192.168.122.0/24 --jump VIRTNET_virbr0_PRT",
                "-s 192.168.122.0/24 -j VIRTNET_virbr0_PRT",
            ),
        ];
        for (gen, listed) in pairs {
            assert_eq!(c(v4, gen).as_deref(), Some(listed), "{gen}");
        }
        assert_eq!(
            c(Layer::Ipv6, "--out-interface virbr0 --jump REJECT").as_deref(),
            Some("-o virbr0 -j REJECT --reject-with icmp6-port-unreachable")
        );
        assert_eq!(
            c(
                Layer::Ipv6,
                "--source 2001:db8:0:0::1/64 --jump SNAT --to-source [2001:db8::9]:1024-65535"
            )
            .as_deref(),
            Some("-s 2001:db8::/64 -j SNAT --to-source [2001:db8::9]:1024-65535")
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for rule in [
            "--in-interface virbr0 --jump LOG",
            "--in-interface virbr0 --protocol icmp --jump ACCEPT",
            "--destination-port 53 --jump ACCEPT",
            "--source 192.168.122.0/24 --source 10.0.0.0/8 --jump ACCEPT",
            "--source example.org --jump ACCEPT",
            "--in-interface vir\"br0 --jump ACCEPT",
            "--match state --state NEW --jump ACCEPT",
            "--match conntrack --ctstate BOGUS --jump ACCEPT",
            "! --jump ACCEPT",
            "--jump ACCEPT !",
            "--jump REJECT --reject-with tcp-reset",
            "--jump ACCEPT --in-interface virbr0",
            "--source 10.0.0.0/33 --jump ACCEPT",
            "--source 2001:db8::/64 --jump ACCEPT",
            "--jump SNAT --to-source 10.0.0.2-10.0.0.1:9-1",
        ] {
            assert_eq!(c(Layer::Ipv4, rule), None, "{rule}");
        }
        assert_eq!(c(Layer::Tc, "--jump ACCEPT"), None);
    }

    #[test]
    fn a_save_is_read_by_table_and_chain() {
        let t = SavedTables::parse(
            "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n:VIRTNET_b_INP - [0:0]\n:EMPTY - [3:4]\n-A VIRTNET_b_INP -i b  -j ACCEPT\n-A VIRTNET_b_INP -i b -j DROP\nCOMMIT\n*nat\n:VIRTNET_b_INP - [0:0]\nCOMMIT\n",
        );
        assert_eq!(
            t.chain("filter", "VIRTNET_b_INP").unwrap(),
            ["-i b -j ACCEPT", "-i b -j DROP"]
        );
        assert_eq!(t.chain("filter", "EMPTY").unwrap().len(), 0);
        assert_eq!(t.chain("nat", "VIRTNET_b_INP").unwrap().len(), 0);
        assert!(t.chain("mangle", "VIRTNET_b_INP").is_none());
    }
}
