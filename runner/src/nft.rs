//! `nft -f -` scripts of the batched firewall layout, sent to the kernel as
//! one nf_tables netlink batch from this process instead of through the
//! `nft` program ([`crate::Runner::run_direct`] of the real runner).
//!
//! Why: `nft` 1.0.6 fills a cache before it adds a rule or a map element:
//! every chain of every table of the host, and every element of an
//! interval map. With the batched layout's 1,000 networks that is 3,000
//! chains and 1,000 `nat_src` intervals per start and per destroy:
//! measured 2026-12-07 in a namespace holding 1,000 networks, one start's
//! script took 12–13 ms through `nft -f` (3.8 ms with none), most of it
//! the chain dump (~240 KB of netlink), the interval elements and their
//! processing. The batch itself is a few kilobytes the kernel applies in
//! well under a millisecond. libvirt's own layout is never sent this way:
//! it needs `nft -ae`'s echoed handles, and its streams stay the `nft`
//! processes libvirt runs.
//!
//! **What is carried out here:** exactly the lines the batched layout
//! writes (`core/src/rules/batched.rs`), each becoming the message `nft`
//! sends for it (same message type, flags and expressions; tables `ip` and
//! `ip6` only):
//!
//! - `add chain F T C`, `flush chain F T C`, `delete chain F T C`;
//! - `add rule F T C MATCH… [counter] [VERDICT]` with the matches
//!   `iifname NAME`, `oifname NAME`, `ip|ip6 saddr|daddr [!=] ADDR[/LEN]`,
//!   `ct state related,established`, `meta l4proto tcp|udp`, and the
//!   verdicts `accept`, `return`, `reject`, `masquerade [to :MIN-MAX]`,
//!   and (`ip` only) `snat to A-B[:MIN-MAX]`;
//! - `add element F T M { KEY : jump C }` and `delete element F T M { KEY }`
//!   with an interface name, or a prefix `ADDR/LEN` of an interval map
//!   (sent as the interval's first address and the end flag one past its
//!   last, as `nft` does).
//!
//! Anything else — another keyword, a quoted or unusual word, a prefix
//! with host bits, an interval reaching the last address, a comment, an
//! empty script — is `None`, and the real `nft` runs the script as ever.
//! Every other runner (the simulated host, the journal's replay, golden
//! streams, fault injection) sees the same `nft -f -` command line.
//!
//! **Same transaction:** the lines become one batch (`BATCH_BEGIN` … `END`),
//! which the kernel commits whole or not at all, as it does `nft -f`'s.
//! Every message asks for an acknowledgement, so each failing line is
//! known. The kernel's answer is the only check: `nft`'s own checks
//! against its cache (an element that does not exist, a chain name
//! misspelt) end as the kernel's error for the same line instead of
//! `nft`'s wording. The output then follows `nft`'s form:
//! `/dev/stdin:LINE:1-N: Error: Could not process rule: ERRNO TEXT`, the
//! line, carets, status 1.
//!
//! Checked against `nft` itself by `core/tests/nft_direct_real.rs`: for
//! every golden case, the start script and its removal applied here and by
//! `nft` 1.0.6 in fresh namespaces list the same ruleset, rule bytecode
//! included (`nft --debug=netlink list ruleset`).
//!
//! Hand-written: the netlink framing is a few lines, and no maintained
//! crate encodes nf_tables verdict-map elements and interval ends (the
//! `nftnl` bindings need the C libraries, `rustables` has no verdict
//! data in set elements).

use std::net::{Ipv4Addr, Ipv6Addr};

use nix::sys::socket::{recv, sendto, MsgFlags, NetlinkAddr, SockProtocol};

use crate::{Cmd, Output};

// linux/netlink.h
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
// linux/netfilter/nfnetlink.h
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
// linux/netfilter/nf_tables.h: messages
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
// verdicts (linux/netfilter.h, nf_tables.h)
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_RETURN: i32 = -5;
const IFNAMSIZ: usize = 16;

/// A table family of the batched layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Ip,
    Ip6,
}

impl Family {
    fn parse(word: &str) -> Option<Family> {
        match word {
            "ip" => Some(Family::Ip),
            "ip6" => Some(Family::Ip6),
            _ => None,
        }
    }
    /// NFPROTO_IPV4 / NFPROTO_IPV6.
    fn nfproto(self) -> u8 {
        match self {
            Family::Ip => 2,
            Family::Ip6 => 10,
        }
    }
    fn addr_len(self) -> usize {
        match self {
            Family::Ip => 4,
            Family::Ip6 => 16,
        }
    }
    /// Offsets of the source and destination address in the header.
    fn addr_offset(self, source: bool) -> u32 {
        match (self, source) {
            (Family::Ip, true) => 12,
            (Family::Ip, false) => 16,
            (Family::Ip6, true) => 8,
            (Family::Ip6, false) => 24,
        }
    }
    /// `reject`'s ICMP code: port unreachable (ICMP 3, ICMPv6 4).
    fn reject_code(self) -> u8 {
        match self {
            Family::Ip => 3,
            Family::Ip6 => 4,
        }
    }
    fn parse_addr(self, s: &str) -> Option<Vec<u8>> {
        match self {
            Family::Ip => s.parse::<Ipv4Addr>().ok().map(|a| a.octets().to_vec()),
            Family::Ip6 => s.parse::<Ipv6Addr>().ok().map(|a| a.octets().to_vec()),
        }
    }
}

/// Netlink attributes being written (native-endian lengths and types,
/// 4-byte aligned).
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
    }
    fn str(&mut self, ty: u16, s: &str) {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.put(ty, &b);
    }
    fn be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }
    fn be64(&mut self, ty: u16, v: u64) {
        self.put(ty, &v.to_be_bytes());
    }
    fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Attrs)) {
        let start = self.0.len();
        self.0.extend_from_slice(&[0, 0, 0, 0]);
        f(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }
    /// `NFTA_DATA_VALUE` inside `ty`.
    fn value(&mut self, ty: u16, v: &[u8]) {
        self.nest(ty, |a| a.put(1, v));
    }
    /// `NFTA_DATA_VERDICT` inside `ty`.
    fn verdict(&mut self, ty: u16, code: i32, chain: Option<&str>) {
        self.nest(ty, |a| {
            a.nest(2, |v| {
                v.be32(1, code as u32);
                if let Some(c) = chain {
                    v.str(2, c);
                }
            })
        });
    }
    /// One expression (`NFTA_LIST_ELEM` { name, data }).
    fn expr(&mut self, name: &str, f: impl FnOnce(&mut Attrs)) {
        self.nest(1, |e| {
            e.str(1, name);
            e.nest(2, f);
        });
    }
}

/// One nf_tables message of the batch and the script line it came from.
struct Msg {
    kind: u16,
    flags: u16,
    family: Family,
    attrs: Attrs,
    line: usize,
}

/// A word `nft` reads as a plain name: a letter or `_` first, then letters,
/// digits, `_`, `-`, `.` (nothing it would read as a number, string or
/// other token).
fn plain(s: &str) -> Option<&str> {
    let mut chars = s.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() || first == '_')
        .then_some(())
        .filter(|_| chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
        .map(|_| s)
}

/// An interface name as the 16 bytes `nft` compares and keys (`IFNAMSIZ`).
fn ifname(s: &str) -> Option<Vec<u8>> {
    let s = plain(s)?;
    if s.len() >= IFNAMSIZ {
        return None;
    }
    let mut b = s.as_bytes().to_vec();
    b.resize(IFNAMSIZ, 0);
    Some(b)
}

/// `ADDR[/LEN]` of `family`: (address bytes, prefix length). A prefix
/// with host bits set is `None`.
fn prefix(family: Family, s: &str) -> Option<(Vec<u8>, usize)> {
    let bits = family.addr_len() * 8;
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<usize>().ok().filter(|l| *l <= bits)?),
        None => (s, bits),
    };
    let addr = family.parse_addr(addr)?;
    (addr == masked(&addr, len)).then_some((addr, len))
}

fn mask(bytes: usize, len: usize) -> Vec<u8> {
    (0..bytes)
        .map(|i| {
            let bits = len.saturating_sub(i * 8).min(8);
            if bits == 0 {
                0
            } else {
                0xffu8 << (8 - bits)
            }
        })
        .collect()
}

fn masked(addr: &[u8], len: usize) -> Vec<u8> {
    addr.iter()
        .zip(mask(addr.len(), len))
        .map(|(a, m)| a & m)
        .collect()
}

/// The first address after the prefix (`None`: it ends at the last
/// address, which `nft` encodes differently).
fn interval_end(addr: &[u8], len: usize) -> Option<Vec<u8>> {
    let bits = addr.len() * 8;
    if len == 0 {
        return None;
    }
    let mut v = u128::from_be_bytes({
        let mut b = [0u8; 16];
        b[16 - addr.len()..].copy_from_slice(addr);
        b
    });
    let step = 1u128.checked_shl((bits - len) as u32)?;
    let max = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    v = v.checked_add(step)?;
    if v > max || (bits == 128 && v == 0) {
        return None;
    }
    Some(v.to_be_bytes()[16 - addr.len()..].to_vec())
}

/// The expressions of a rule's words (after `add rule F T C`).
fn rule_exprs(family: Family, words: &[&str]) -> Option<Attrs> {
    let mut a = Attrs::default();
    let mut l4proto = false;
    let mut i = 0;
    let mut ended = false;
    while i < words.len() {
        if ended {
            return None; // nothing after a verdict
        }
        match words[i] {
            key @ ("iifname" | "oifname") => {
                let name = ifname(words.get(i + 1)?)?;
                let meta_key = if key == "iifname" { 6 } else { 7 };
                a.expr("meta", |e| {
                    e.be32(1, 1);
                    e.be32(2, meta_key);
                });
                cmp(&mut a, 0, &name);
                i += 2;
            }
            fam @ ("ip" | "ip6") => {
                if Family::parse(fam) != Some(family) {
                    return None;
                }
                let source = match *words.get(i + 1)? {
                    "saddr" => true,
                    "daddr" => false,
                    _ => return None,
                };
                let (op, at) = match *words.get(i + 2)? {
                    "!=" => (1, i + 3),
                    _ => (0, i + 2),
                };
                let (addr, len) = prefix(family, words.get(at)?)?;
                let full = family.addr_len();
                let load = if len % 8 == 0 && len > 0 {
                    len / 8
                } else {
                    full
                };
                a.expr("payload", |e| {
                    e.be32(1, 1);
                    e.be32(2, 1); // network header
                    e.be32(3, family.addr_offset(source));
                    e.be32(4, load as u32);
                });
                if load == full && len < full * 8 {
                    a.expr("bitwise", |e| {
                        e.be32(1, 1);
                        e.be32(2, 1);
                        e.be32(3, full as u32);
                        e.value(4, &mask(full, len));
                        e.value(5, &vec![0; full]);
                    });
                }
                cmp(&mut a, op, &addr[..load]);
                i = at + 1;
            }
            "ct" => {
                if words.get(i + 1..i + 3)? != ["state", "related,established"] {
                    return None;
                }
                a.expr("ct", |e| {
                    e.be32(1, 1);
                    e.be32(2, 0); // NFT_CT_STATE
                });
                // IP_CT_ESTABLISHED (bit 1) | IP_CT_RELATED (bit 2), host order.
                a.expr("bitwise", |e| {
                    e.be32(1, 1);
                    e.be32(2, 1);
                    e.be32(3, 4);
                    e.value(4, &6u32.to_ne_bytes());
                    e.value(5, &0u32.to_ne_bytes());
                });
                cmp(&mut a, 1, &0u32.to_ne_bytes());
                i += 3;
            }
            "meta" => {
                if *words.get(i + 1)? != "l4proto" {
                    return None;
                }
                let proto: u8 = match *words.get(i + 2)? {
                    "tcp" => 6,
                    "udp" => 17,
                    _ => return None,
                };
                a.expr("meta", |e| {
                    e.be32(1, 1);
                    e.be32(2, 16); // NFT_META_L4PROTO
                });
                cmp(&mut a, 0, &[proto]);
                l4proto = true;
                i += 3;
            }
            "counter" => {
                a.expr("counter", |e| {
                    e.be64(1, 0);
                    e.be64(2, 0);
                });
                i += 1;
            }
            v @ ("accept" | "return") => {
                let code = if v == "accept" { NF_ACCEPT } else { NFT_RETURN };
                a.expr("immediate", |e| {
                    e.be32(1, 0);
                    e.verdict(2, code, None);
                });
                ended = true;
                i += 1;
            }
            "reject" => {
                a.expr("reject", |e| {
                    e.be32(1, 0); // NFT_REJECT_ICMP_UNREACH
                    e.put(2, &[family.reject_code()]);
                });
                ended = true;
                i += 1;
            }
            "masquerade" => {
                if words.get(i + 1) == Some(&"to") {
                    // nft refuses ports without a transport protocol match.
                    if !l4proto {
                        return None;
                    }
                    let (lo, hi) = port_range(words.get(i + 2)?.strip_prefix(':')?)?;
                    for (reg, port) in [(1u32, lo), (2, hi)] {
                        a.expr("immediate", |e| {
                            e.be32(1, reg);
                            e.value(2, &port.to_be_bytes());
                        });
                    }
                    a.expr("masq", |e| {
                        e.be32(1, 0x2); // NF_NAT_RANGE_PROTO_SPECIFIED
                        e.be32(2, 1);
                        e.be32(3, 2);
                    });
                    i += 3;
                } else {
                    a.expr("masq", |_| {});
                    i += 1;
                }
                ended = true;
            }
            "snat" if family == Family::Ip && words.get(i + 1) == Some(&"to") => {
                // `snat to A-B[:P-Q]`, the form libvirt's plans give.
                let to = *words.get(i + 2)?;
                let (addrs, ports) = match to.split_once(':') {
                    Some((a, p)) => (a, Some(p)),
                    None => (to, None),
                };
                let (lo, hi) = addrs.split_once('-')?;
                let (lo, hi) = (lo.parse::<Ipv4Addr>().ok()?, hi.parse::<Ipv4Addr>().ok()?);
                if lo > hi || format!("{lo}-{hi}") != addrs {
                    return None;
                }
                let ports = match ports {
                    Some(p) => {
                        if !l4proto {
                            return None;
                        }
                        Some(port_range(p)?)
                    }
                    None => None,
                };
                for (reg, addr) in [(1u32, lo), (2, hi)] {
                    a.expr("immediate", |e| {
                        e.be32(1, reg);
                        e.value(2, &addr.octets());
                    });
                }
                if let Some((plo, phi)) = ports {
                    for (reg, port) in [(3u32, plo), (4, phi)] {
                        a.expr("immediate", |e| {
                            e.be32(1, reg);
                            e.value(2, &port.to_be_bytes());
                        });
                    }
                }
                a.expr("nat", |e| {
                    e.be32(1, 0); // NFT_NAT_SNAT
                    e.be32(2, u32::from(Family::Ip.nfproto()));
                    e.be32(3, 1);
                    e.be32(4, 2);
                    if ports.is_some() {
                        e.be32(5, 3);
                        e.be32(6, 4);
                        e.be32(7, 0x2); // NF_NAT_RANGE_PROTO_SPECIFIED
                    }
                });
                ended = true;
                i += 3;
            }
            _ => return None,
        }
    }
    Some(a)
}

/// `MIN-MAX` ports, canonical (no `+`, no leading zeros), MIN <= MAX.
fn port_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once('-')?;
    let (lo, hi) = (lo.parse::<u16>().ok()?, hi.parse::<u16>().ok()?);
    (lo <= hi && format!("{lo}-{hi}") == s).then_some((lo, hi))
}

fn cmp(a: &mut Attrs, op: u32, data: &[u8]) {
    a.expr("cmp", |e| {
        e.be32(1, 1);
        e.be32(2, op);
        e.value(3, data);
    });
}

/// The key of a map element: an interface name, or a prefix of an
/// interval map (start, and the end element's key).
enum Key {
    Ifname(Vec<u8>),
    Interval(Vec<u8>, Vec<u8>),
}

fn element_key(family: Family, s: &str) -> Option<Key> {
    if s.contains('/') {
        let (addr, len) = prefix(family, s)?;
        let end = interval_end(&addr, len)?;
        Some(Key::Interval(addr, end))
    } else {
        Some(Key::Ifname(ifname(s)?))
    }
}

/// One line of the script as its message; `None`: not this module's.
fn parse_line(words: &[&str], line: usize) -> Option<Msg> {
    let (verb, obj, family, table) = match words {
        [verb, obj, fam, table, ..] => (*verb, *obj, Family::parse(fam)?, plain(table)?),
        _ => return None,
    };
    let rest = &words[4..];
    let mut a = Attrs::default();
    let (kind, flags) = match (verb, obj, rest) {
        ("add" | "flush" | "delete", "chain", [chain]) => {
            let chain = plain(chain)?;
            a.str(1, table);
            if verb == "flush" {
                a.str(2, chain);
                (NFT_MSG_DELRULE, 0)
            } else {
                a.str(3, chain);
                if verb == "add" {
                    (NFT_MSG_NEWCHAIN, NLM_F_CREATE)
                } else {
                    (NFT_MSG_DELCHAIN, 0)
                }
            }
        }
        ("add", "rule", [chain, exprs @ ..]) if !exprs.is_empty() => {
            let chain = plain(chain)?;
            let e = rule_exprs(family, exprs)?;
            a.str(1, table);
            a.str(2, chain);
            a.nest(4, |l| l.0.extend_from_slice(&e.0));
            (NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND)
        }
        ("add", "element", [map, "{", key, ":", "jump", chain, "}"]) => {
            let (map, chain) = (plain(map)?, plain(chain)?);
            let key = element_key(family, key)?;
            a.str(1, table);
            a.str(2, map);
            a.nest(3, |l| match &key {
                Key::Ifname(k) => l.nest(1, |e| {
                    e.value(1, k);
                    e.verdict(2, NFT_JUMP, Some(chain));
                }),
                Key::Interval(start, end) => {
                    l.nest(1, |e| {
                        e.value(1, start);
                        e.verdict(2, NFT_JUMP, Some(chain));
                    });
                    l.nest(1, |e| {
                        e.be32(3, 1); // NFT_SET_ELEM_INTERVAL_END
                        e.value(1, end);
                    });
                }
            });
            (NFT_MSG_NEWSETELEM, NLM_F_CREATE)
        }
        ("delete", "element", [map, "{", key, "}"]) => {
            let map = plain(map)?;
            let key = element_key(family, key)?;
            a.str(1, table);
            a.str(2, map);
            a.nest(3, |l| match &key {
                Key::Ifname(k) => l.nest(1, |e| e.value(1, k)),
                Key::Interval(start, end) => {
                    l.nest(1, |e| e.value(1, start));
                    l.nest(1, |e| {
                        e.be32(3, 1);
                        e.value(1, end);
                    });
                }
            });
            (NFT_MSG_DELSETELEM, 0)
        }
        _ => return None,
    };
    Some(Msg {
        kind,
        flags,
        family,
        attrs: a,
        line,
    })
}

/// The first line (number, text) of `script` this module does not carry
/// out, which sends the whole script to the real `nft`.
pub fn first_unknown_line(script: &str) -> Option<(usize, &str)> {
    script.lines().enumerate().find_map(|(k, text)| {
        let words: Vec<&str> = text.split_whitespace().collect();
        (!words.is_empty() && parse_line(&words, k + 1).is_none()).then_some((k + 1, text))
    })
}

/// The script's messages, or `None` when a line is not this module's.
fn parse(script: &str) -> Option<Vec<Msg>> {
    let mut msgs = Vec::new();
    for (k, text) in script.lines().enumerate() {
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        msgs.push(parse_line(&words, k + 1)?);
    }
    (!msgs.is_empty()).then_some(msgs)
}

fn header(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, body: &[u8]) {
    let len = (16 + 4 + body.len()) as u32;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(body);
}

/// The batch of `msgs`, its first sequence number being `seq`.
fn encode(msgs: &[Msg], seq: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    header(
        &mut buf,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    for (k, m) in msgs.iter().enumerate() {
        header(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | m.kind,
            NLM_F_REQUEST | NLM_F_ACK | m.flags,
            seq.wrapping_add(1 + k as u32),
            m.family.nfproto(),
            0,
            &m.attrs.0,
        );
    }
    header(
        &mut buf,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq.wrapping_add(1 + msgs.len() as u32),
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    buf
}

/// `(sequence number, errno)` of each `NLMSG_ERROR` in `buf` (errno 0: an
/// acknowledgement).
fn acks(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let word = |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let len = word(at) as usize;
        let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if len < 16 || at + len > buf.len() {
            break;
        }
        // nlmsgerr: error, then the request's header (its seq at +8).
        if ty == NLMSG_ERROR && len >= 16 + 4 + 16 {
            let errno = -(word(at + 16) as i32);
            out.push((word(at + 20 + 8), errno));
        }
        at += (len + 3) & !3;
    }
    out
}

/// An open nf_tables netlink socket of this thread, in the network
/// namespace it was opened in, with its next sequence number.
///
/// Kept open because closing a netlink socket that has just deleted
/// nf_tables objects waits for the kernel to release them after an RCU
/// grace period: `close` took 10.8 ms after a destroy's batch (strace -T,
/// 2026-12-07), as long as the batch itself and more. Kept per thread and
/// per namespace: a socket works in the namespace it was opened in, and a
/// thread may move to another (the real-kernel harnesses do); a thread
/// whose namespace changed gets a new socket. Dropped after any error, so
/// that no stale answer is ever read as the next batch's.
struct Conn {
    netns: (u64, u64),
    fd: std::os::fd::OwnedFd,
    seq: u32,
}

thread_local! {
    static CONN: std::cell::RefCell<Option<Conn>> = const { std::cell::RefCell::new(None) };
}

/// The calling thread's network namespace (device and inode of its
/// `ns/net`).
fn thread_netns() -> Result<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| (m.dev(), m.ino()))
        .map_err(|e| format!("/proc/thread-self/ns/net: {e}"))
}

fn open_conn(netns: (u64, u64)) -> Result<Conn, String> {
    Ok(Conn {
        netns,
        fd: crate::netlink::socket_for(SockProtocol::NetlinkNetFilter)?,
        seq: crate::netlink::first_seq(),
    })
}

/// Sends the batch and collects one answer per message, on this thread's
/// socket for its namespace ([`Conn`]).
fn talk(msgs: &[Msg]) -> Result<Vec<(u32, i32)>, String> {
    let netns = thread_netns()?;
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !slot.as_ref().is_some_and(|c| c.netns == netns) {
            *slot = Some(open_conn(netns)?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err("netlink socket: not open".to_string());
        };
        let seq = conn.seq;
        conn.seq = seq.wrapping_add(msgs.len() as u32 + 2);
        let result = exchange(conn, msgs, seq);
        if result.is_err() {
            *slot = None;
        }
        result
    })
}

fn exchange(conn: &Conn, msgs: &[Msg], seq: u32) -> Result<Vec<(u32, i32)>, String> {
    use std::os::fd::AsRawFd;
    let raw = conn.fd.as_raw_fd();
    let batch = encode(msgs, seq);
    let sent = sendto(raw, &batch, &NetlinkAddr::new(0, 0), MsgFlags::empty())
        .map_err(|e| format!("netlink send: {e}"))?;
    if sent != batch.len() {
        return Err(format!("netlink send: {sent} of {} bytes", batch.len()));
    }
    let ours = |s: u32| s.wrapping_sub(seq).wrapping_sub(1) < msgs.len() as u32;
    let mut answers: Vec<(u32, i32)> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while answers.len() < msgs.len() {
        let n =
            recv(raw, &mut buf, MsgFlags::empty()).map_err(|e| format!("netlink receive: {e}"))?;
        for (s, errno) in acks(&buf[..n]) {
            if ours(s) {
                answers.push((s.wrapping_sub(seq), errno));
            } else if s == seq && errno != 0 {
                // An error about the batch as a whole.
                return Err(format!("batch: {}", errno_text(errno)));
            }
        }
    }
    Ok(answers)
}

fn errno_text(errno: i32) -> &'static str {
    nix::errno::Errno::from_raw(errno).desc()
}

/// `nft -f -` with a script of this module's vocabulary, carried out in
/// this process; `None`: another command, or a line this module does not
/// know (the real `nft` runs).
pub fn in_process(cmd: &Cmd) -> Option<Output> {
    if !cmd.argv.iter().map(String::as_str).eq(["nft", "-f", "-"]) || !cmd.env.is_empty() {
        return None;
    }
    let script = cmd.stdin.as_deref()?;
    let msgs = parse(script)?;
    let lines: Vec<&str> = script.lines().collect();
    Some(match talk(&msgs) {
        Err(e) => Output {
            status: 1,
            stdout: String::new(),
            stderr: format!("Error: {e}\n"),
        },
        Ok(answers) => {
            let mut failed: Vec<(u32, i32)> = answers.into_iter().filter(|a| a.1 != 0).collect();
            failed.sort();
            let stderr: String = failed
                .iter()
                .map(|(k, errno)| {
                    let m = &msgs[(*k - 1) as usize];
                    let text = lines.get(m.line - 1).copied().unwrap_or("");
                    format!(
                        "/dev/stdin:{}:1-{}: Error: Could not process rule: {}\n{text}\n{}\n",
                        m.line,
                        text.len(),
                        errno_text(*errno),
                        "^".repeat(text.len())
                    )
                })
                .collect();
            Output {
                status: if failed.is_empty() { 0 } else { 1 },
                stdout: String::new(),
                stderr,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(s: &str) -> Cmd {
        Cmd::new(["nft", "-f", "-"]).with_stdin(s)
    }

    const START: &str = "add chain ip virtnet_batched net_virbr0_in
flush chain ip virtnet_batched net_virbr0_in
add rule ip virtnet_batched net_virbr0_in iifname virbr0 oifname virbr0 counter accept
add rule ip virtnet_batched net_virbr0_in oifname virbr0 ip daddr 192.168.122.0/24 ct state related,established counter accept
add rule ip virtnet_batched net_virbr0_in oifname virbr0 counter reject
add rule ip virtnet_batched net_virbr0_nat meta l4proto tcp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 counter masquerade to :1024-65535
add rule ip virtnet_batched net_virbr0_nat ip saddr 192.168.122.0/24 ip daddr 255.255.255.255/32 counter return
add rule ip6 virtnet_batched net_virbr0_nat ip6 saddr fd00:1:2::/62 ip6 daddr != fd00::/48 counter masquerade
add element ip virtnet_batched fwd_in { virbr0 : jump net_virbr0_in }
add element ip virtnet_batched nat_src { 192.168.122.0/24 : jump net_virbr0_nat }
delete element ip virtnet_batched nat_src { 192.168.122.0/24 }
delete element ip virtnet_batched fwd_in { virbr0 }
delete chain ip virtnet_batched net_virbr0_in
";

    #[test]
    fn the_batched_layouts_lines_are_understood() {
        let msgs = parse(START).expect("every line is known");
        assert_eq!(msgs.len(), 13);
        let kinds: Vec<u16> = msgs.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                NFT_MSG_NEWCHAIN,
                NFT_MSG_DELRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWSETELEM,
                NFT_MSG_NEWSETELEM,
                NFT_MSG_DELSETELEM,
                NFT_MSG_DELSETELEM,
                NFT_MSG_DELCHAIN,
            ]
        );
        assert_eq!(msgs[7].family, Family::Ip6);
    }

    #[test]
    fn anything_else_is_left_to_nft() {
        for s in [
            "add table ip virtnet_batched\n",
            "add chain ip virtnet_batched forward { type filter hook forward priority 0; }\n",
            "insert rule ip t c counter accept\n",
            "add rule inet t c counter accept\n",
            "add rule ip t c iifname \"virbr0\" counter accept\n",
            "add rule ip t c iifname 0abc counter accept\n",
            "add rule ip t c iifname abcdefghijklmnop counter accept\n",
            "add rule ip t c ip saddr 192.168.122.1/24 counter accept\n",
            "add rule ip t c ip6 saddr fd00::/8 counter accept\n",
            "add rule ip t c ip saddr 10.0.0.0/33 counter accept\n",
            "add rule ip t c counter accept counter\n",
            "add rule ip t c ct state established counter accept\n",
            "add rule ip t c counter masquerade to :1024-65535\n",
            "add rule ip t c meta l4proto tcp counter masquerade to :2000-1000\n",
            "add rule ip t c meta l4proto icmp counter accept\n",
            "add rule ip t c counter drop\n",
            "add element ip t nat_src { 255.255.255.0/24 : jump c }\n",
            "add element ip t nat_src { 0.0.0.0/0 : jump c }\n",
            "add element ip t m { a : goto c }\n",
            "add chain ip t c # comment\n",
            "\n",
            "",
        ] {
            assert!(parse(s).is_none(), "{s:?} was taken");
        }
        assert!(in_process(&script("add table ip t\n")).is_none());
        assert!(in_process(&Cmd::new(["nft", "-ae", "add", "chain", "ip", "t", "c"])).is_none());
        let mut with_env = script("add chain ip t c\n");
        with_env.env.push(("LC_ALL".into(), "C".into()));
        assert!(in_process(&with_env).is_none());
    }

    #[test]
    fn prefixes_load_what_nft_loads() {
        // `/24`: three bytes compared; `/20`: four bytes, masked.
        let a = rule_exprs(Family::Ip, &["ip", "daddr", "10.1.0.0/24"]).expect("known");
        let b = rule_exprs(Family::Ip, &["ip", "daddr", "10.1.0.0/20"]).expect("known");
        let count = |a: &Attrs, name: &str| {
            a.0.windows(name.len() + 1)
                .filter(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0)
                .count()
        };
        assert_eq!(count(&a, "bitwise"), 0);
        assert_eq!(count(&b, "bitwise"), 1);
        assert_eq!(mask(4, 20), [255, 255, 240, 0]);
        assert_eq!(mask(4, 0), [0, 0, 0, 0]);
    }

    #[test]
    fn an_interval_ends_one_past_its_last_address() {
        assert_eq!(
            interval_end(&[192, 168, 122, 0], 24),
            Some(vec![192, 168, 123, 0])
        );
        assert_eq!(
            interval_end(&[10, 255, 255, 255], 32),
            Some(vec![11, 0, 0, 0])
        );
        assert_eq!(interval_end(&[255, 255, 255, 0], 24), None);
        assert_eq!(interval_end(&[0, 0, 0, 0], 0), None);
        let v6: Ipv6Addr = "fd00:1::".parse().unwrap();
        let end: Ipv6Addr = "fd00:1:0:1::".parse().unwrap();
        assert_eq!(interval_end(&v6.octets(), 64), Some(end.octets().to_vec()));
        assert_eq!(interval_end(&[0xff; 16], 128), None);
    }

    #[test]
    fn acknowledgements_are_read_per_sequence_number() {
        // Two nlmsgerr messages: seq 7 acknowledged, seq 8 ENOENT.
        let mut buf = Vec::new();
        for (seq, err) in [(7u32, 0i32), (8, -2)] {
            header(&mut buf, NLMSG_ERROR, 0, 99, 0, 0, &[]);
            // header() wrote 16 + 4 bytes; make it an nlmsgerr of 36 bytes.
            buf.truncate(buf.len() - 4);
            let start = buf.len() - 16;
            buf[start..start + 4].copy_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&err.to_ne_bytes());
            let mut req = Vec::new();
            header(&mut req, 0x0a06, 0, seq, 2, 0, &[]);
            buf.extend_from_slice(&req[..16]);
        }
        assert_eq!(acks(&buf), [(7, 0), (8, 2)]);
    }
}
