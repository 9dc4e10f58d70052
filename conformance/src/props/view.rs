//! A comparable, line-per-object view of a simulated host, and the
//! classification every property check shares: what is **ours**, what
//! libvirt **keeps on purpose**, and what is **foreign**.
//!
//! The view ([`items`]) lists every table, chain, rule, link, route, tc
//! object, changed sysctl and process of a [`HostState`] as an [`Item`],
//! without the kernel's bookkeeping (nft handles, ifindexes, pids, ruleset
//! generation), so two hosts that hold the same configuration compare equal
//! even when one of them added and removed things in between (the kernel
//! never reuses an nft handle).

use std::collections::BTreeMap;
use std::fmt;

use virtnet_core::rules::nftables::TABLE as NFT_TABLE;
use virtnet_fake::HostState;

/// One object of the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    NftTable {
        family: String,
        table: String,
    },
    NftChain {
        family: String,
        table: String,
        chain: String,
        /// `type filter hook forward priority filter; policy accept;` for a base chain.
        base: Option<String>,
    },
    NftRule {
        family: String,
        table: String,
        chain: String,
        text: String,
        /// The chains this rule jumps or goes to.
        jumps: Vec<String>,
    },
    NftSet {
        family: String,
        table: String,
        text: String,
    },
    /// An iptables (`ip`) or ip6tables (`ip6`) table that exists.
    XtTable {
        family: String,
        table: String,
    },
    XtChain {
        family: String,
        table: String,
        chain: String,
        /// `Some(policy)` for a builtin chain.
        policy: Option<String>,
    },
    XtRule {
        family: String,
        table: String,
        chain: String,
        spec: String,
    },
    /// A link: `up` is its administrative state, `text` everything else
    /// (MAC, MTU, kind, master, bridge options, addresses).
    Link {
        name: String,
        up: bool,
        text: String,
    },
    Route {
        dev: String,
        text: String,
    },
    TcQdisc {
        dev: String,
        text: String,
    },
    TcFilter {
        dev: String,
        text: String,
    },
    Sysctl {
        key: String,
        value: String,
    },
    Process {
        conf_file: Option<String>,
        argv: String,
    },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::NftTable { family, table } => write!(f, "nft table {family} {table}"),
            Item::NftChain {
                family,
                table,
                chain,
                base,
            } => match base {
                Some(b) => write!(f, "nft chain {family} {table} {chain} {{ {b} }}"),
                None => write!(f, "nft chain {family} {table} {chain}"),
            },
            Item::NftRule {
                family,
                table,
                chain,
                text,
                ..
            } => write!(f, "nft rule {family} {table} {chain} {text}"),
            Item::NftSet {
                family,
                table,
                text,
            } => write!(f, "nft set {family} {table} {text}"),
            Item::XtTable { family, table } => write!(f, "{family}tables table {table}"),
            Item::XtChain {
                family,
                table,
                chain,
                policy,
            } => write!(
                f,
                "{family}tables -t {table} chain {chain} {}",
                policy.as_deref().unwrap_or("-")
            ),
            Item::XtRule {
                family,
                table,
                chain,
                spec,
            } => write!(f, "{family}tables -t {table} -A {chain} {spec}"),
            Item::Link { up, text, .. } => {
                write!(f, "link {text} {}", if *up { "up" } else { "down" })
            }
            Item::Route { text, .. } => write!(f, "route {text}"),
            Item::TcQdisc { text, .. } => write!(f, "tc {text}"),
            Item::TcFilter { text, .. } => write!(f, "tc {text}"),
            Item::Sysctl { key, value } => write!(f, "sysctl {key} = {value}"),
            Item::Process { argv, .. } => write!(f, "process {argv}"),
        }
    }
}

/// Every object of the host, in a stable order (section by section, in
/// the tools' own order inside a section).
pub fn items(s: &HostState) -> Vec<Item> {
    let mut out = Vec::new();
    // iptables-nft's tables are listed once, as Xt* items below (the nft
    // ruleset holds their mirrors too).
    let mirrored = |t: &virtnet_fake::nft::Table| {
        s.nft
            .xt_tables()
            .iter()
            .any(|x| x.family == t.family && x.name == t.name && x.handle == t.handle)
    };
    for t in s.nft.tables().iter().filter(|t| !mirrored(t)) {
        let family = t.family.as_str().to_string();
        let table = t.name.clone();
        out.push(Item::NftTable {
            family: family.clone(),
            table: table.clone(),
        });
        for set in &t.sets {
            out.push(Item::NftSet {
                family: family.clone(),
                table: table.clone(),
                text: format!(
                    "{} {} flags [{}] elements {{ {} }}",
                    set.name,
                    set.type_text(),
                    set.flags.join(","),
                    set.elements
                        .iter()
                        .map(|e| e.text())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        for c in &t.chains {
            out.push(Item::NftChain {
                family: family.clone(),
                table: table.clone(),
                chain: c.name.clone(),
                base: c.base.as_ref().map(|b| b.text(t.family)),
            });
            for r in c.rules.iter() {
                out.push(Item::NftRule {
                    family: family.clone(),
                    table: table.clone(),
                    chain: c.name.clone(),
                    text: r.text(),
                    jumps: r.jump_targets().map(str::to_string).collect(),
                });
            }
        }
    }
    for (family, x) in [("ip", &s.iptables), ("ip6", &s.ip6tables)] {
        for (tname, t) in &x.tables {
            out.push(Item::XtTable {
                family: family.to_string(),
                table: tname.clone(),
            });
            for (cname, c) in &t.chains {
                out.push(Item::XtChain {
                    family: family.to_string(),
                    table: tname.clone(),
                    chain: cname.clone(),
                    policy: c.policy.clone(),
                });
                for r in c.rules.iter() {
                    out.push(Item::XtRule {
                        family: family.to_string(),
                        table: tname.clone(),
                        chain: cname.clone(),
                        spec: r.spec.clone(),
                    });
                }
            }
        }
    }
    // Links, then routes (one `ip` dump line each).
    for l in &s.ip.links {
        let addrs: Vec<String> = l
            .addrs
            .iter()
            .map(|a| format!("{}/{}", a.local, a.prefixlen))
            .collect();
        let mut text = format!("{} {:?} {} mtu {}", l.name, l.kind, l.mac, l.mtu);
        if let Some(m) = &l.master {
            text.push_str(&format!(" master {m}"));
        }
        for (k, v) in &l.bridge {
            text.push_str(&format!(" {k} {v}"));
        }
        for a in addrs {
            text.push(' ');
            text.push_str(&a);
        }
        out.push(Item::Link {
            name: l.name.clone(),
            up: l.up,
            text,
        });
    }
    let dump = s.ip.dump();
    let route_lines = dump.lines().skip(s.ip.links.len());
    for (r, text) in s.ip.routes.iter().zip(route_lines) {
        out.push(Item::Route {
            dev: r.dev.clone(),
            text: text.to_string(),
        });
    }
    for (dev, q) in &s.tc.qdiscs {
        out.push(Item::TcQdisc {
            dev: dev.clone(),
            text: format!(
                "qdisc {} {} dev {dev} root {}",
                q.kind,
                q.handle,
                q.params.join(" ")
            ),
        });
    }
    for (dev, list) in &s.tc.filters {
        for f in list {
            out.push(Item::TcFilter {
                dev: dev.clone(),
                text: format!(
                    "filter dev {dev} parent {} protocol {} pref {} {}",
                    f.parent,
                    f.protocol,
                    f.prio,
                    f.spec.join(" ")
                ),
            });
        }
    }
    for (k, v) in &s.sysctl.values {
        out.push(Item::Sysctl {
            key: k.clone(),
            value: v.clone(),
        });
    }
    for p in s.procs.procs.values() {
        out.push(Item::Process {
            conf_file: p.conf_file.clone(),
            argv: p.argv.join(" "),
        });
    }
    out
}

/// Is `item` something libvirt keeps on purpose ([`crate::kept`], the one
/// definition): a forwarding sysctl of [`crate::kept::KEPT_SYSCTLS`], or
/// an object [`crate::kept::set_up_kept`] creates.
pub fn kept_on_purpose(item: &Item) -> bool {
    match item {
        Item::Sysctl { key, .. } => crate::kept::KEPT_SYSCTLS.contains(&key.as_str()),
        _ => kept_objects().contains(item),
    }
}

/// The objects [`crate::kept::set_up_kept`] adds to an empty fake host
/// (both backends).
fn kept_objects() -> &'static std::collections::BTreeSet<Item> {
    static KEPT: std::sync::OnceLock<std::collections::BTreeSet<Item>> = std::sync::OnceLock::new();
    KEPT.get_or_init(|| {
        use virtnet_core::firewall::Backend;
        let host = virtnet_fake::FakeHost::new();
        let empty: std::collections::BTreeSet<Item> = items(&host.state()).into_iter().collect();
        // On the simulator the set-up cannot fail; if it did, the set would
        // be short and every check would report the chains as left behind.
        let _ = crate::kept::set_up_kept(&host, &[Backend::Iptables, Backend::Nftables]);
        items(&host.state())
            .into_iter()
            .filter(|i| !empty.contains(i))
            .collect()
    })
}

/// What identifies a network's own host objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    /// Bridge names of the networks.
    pub bridges: Vec<String>,
    /// dnsmasq configuration file paths of the networks (`--conf-file=`).
    pub dnsmasq_confs: Vec<String>,
}

/// **Ours**: rules in the `libvirt_network` nft tables and in `LIBVIRT_*`
/// iptables chains that are not kept on purpose, bridges named by
/// `owners` (with their routes, tc objects and per-device sysctls), and
/// dnsmasq processes of `owners`.
pub fn is_ours(item: &Item, owners: &Owners) -> bool {
    if kept_on_purpose(item) {
        return false;
    }
    let bridge = |d: &str| owners.bridges.iter().any(|b| b == d);
    match item {
        Item::NftTable { table, .. } | Item::NftSet { table, .. } => table == NFT_TABLE,
        Item::NftChain { table, .. } | Item::NftRule { table, .. } => table == NFT_TABLE,
        Item::XtTable { .. } => false,
        Item::XtChain { chain, .. } | Item::XtRule { chain, .. } => chain.starts_with("LIBVIRT_"),
        Item::Link { name, .. } => bridge(name),
        Item::Route { dev, .. } | Item::TcQdisc { dev, .. } | Item::TcFilter { dev, .. } => {
            bridge(dev)
        }
        Item::Sysctl { key, .. } => key
            .strip_prefix("net.ipv6.conf.")
            .and_then(|k| k.rsplit_once('.'))
            .is_some_and(|(dev, _)| bridge(dev)),
        Item::Process { conf_file, argv } => {
            argv.split(' ')
                .next()
                .is_some_and(|p| p.ends_with("dnsmasq"))
                && conf_file
                    .as_ref()
                    .is_some_and(|c| owners.dnsmasq_confs.iter().any(|o| o == c))
        }
    }
}

/// Neither ours nor kept on purpose: what other software (and the admin)
/// put on the host. Must stay byte-identical.
pub fn foreign(items: &[Item], owners: &Owners) -> Vec<Item> {
    items
        .iter()
        .filter(|i| !kept_on_purpose(i) && !is_ours(i, owners))
        .cloned()
        .collect()
}

/// The items without what libvirt keeps on purpose.
pub fn without_kept(items: &[Item]) -> Vec<Item> {
    items
        .iter()
        .filter(|i| !kept_on_purpose(i))
        .cloned()
        .collect()
}

/// Only what libvirt keeps on purpose.
pub fn kept(items: &[Item]) -> Vec<Item> {
    items
        .iter()
        .filter(|i| kept_on_purpose(i))
        .cloned()
        .collect()
}

/// Items as a multiset (item -> count), for order-insensitive comparison
/// (rules of several networks interleave in shared chains).
pub fn multiset(items: &[Item]) -> BTreeMap<Item, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.clone()).or_insert(0) += 1;
    }
    m
}

/// A readable diff of two item lists (empty when equal).
pub fn diff(expected: &[Item], actual: &[Item]) -> String {
    let a: String = expected.iter().map(|i| format!("{i}\n")).collect();
    let b: String = actual.iter().map(|i| format!("{i}\n")).collect();
    virtnet_fake::diff_text(&a, &b, "expected", "actual")
}

/// Items of `small` (as a multiset) missing from `big`.
pub fn missing(small: &[Item], big: &[Item]) -> Vec<Item> {
    let mut have = multiset(big);
    let mut out = Vec::new();
    for i in small {
        match have.get_mut(i) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(i.clone()),
        }
    }
    out
}

/// Checks that `after` is `before` apart from what libvirt keeps on
/// purpose, and that nothing kept before was lost. `Err` carries a diff.
pub fn same_apart_from_kept(before: &HostState, after: &HostState) -> Result<(), String> {
    let (b, a) = (items(before), items(after));
    let (bw, aw) = (without_kept(&b), without_kept(&a));
    if bw != aw {
        return Err(format!(
            "host differs (apart from what libvirt keeps on purpose):\n{}",
            diff(&bw, &aw)
        ));
    }
    // The forwarding sysctls are kept in whatever value libvirt left them
    // (a rollback may write the previous value back, the default): only
    // chains, tables and jump rules can be lost.
    let structural = |v: Vec<Item>| -> Vec<Item> {
        v.into_iter()
            .filter(|i| !matches!(i, Item::Sysctl { .. }))
            .collect()
    };
    let lost = missing(&structural(kept(&b)), &structural(kept(&a)));
    if !lost.is_empty() {
        return Err(format!(
            "objects libvirt keeps on purpose were removed:\n{}",
            lost.iter().map(|i| format!("  {i}\n")).collect::<String>()
        ));
    }
    Ok(())
}
