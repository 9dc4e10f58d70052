//! Argument parsing of the simulated `ip`: the output options before the
//! object (`-j`, `-br`, ...), iproute2's abbreviation tables for objects and
//! verbs, `dev`/link filters, prefixes, MAC addresses and bridge options.

use super::*;

pub(super) fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The first malformed byte of a MAC (iproute2 names it in its error).
pub(super) fn bad_mac_part(s: &str) -> String {
    s.split(':')
        .find(|p| p.is_empty() || p.len() > 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or(s)
        .to_string()
}

/// Parse `ADDR[/LEN]`; the default length is the full address length.
pub(super) fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = a.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match l {
        Some(l) => l.parse::<u8>().ok().filter(|x| *x <= max)?,
        None => max,
    };
    Some((ip, len))
}

/// Output options given before the object (`-j`, `-p`, `-br`, `-o`, `-4`,
/// `-6`, `-d`, `-s`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Opts {
    pub(super) json: bool,
    pub(super) pretty: bool,
    pub(super) brief: bool,
    pub(super) oneline: bool,
    pub(super) details: bool,
    pub(super) stats: bool,
    pub(super) family: Option<u8>,
    /// Address scope filter of `ip addr show ... scope S`.
    pub(super) scope: Option<&'static str>,
}

impl Opts {
    pub(super) fn json_out(&self, items: Vec<Json>) -> String {
        let arr = Json::Arr(items);
        if self.pretty {
            format!("{}\n", arr.pretty(0))
        } else {
            format!("{}\n", arr.compact())
        }
    }
}

/// Which links a `show` selects.
#[derive(Debug, Default)]
pub(super) struct LinkFilter<'a> {
    pub(super) dev: Option<&'a str>,
    pub(super) master: Option<&'a str>,
    pub(super) kind: Option<&'a str>,
    pub(super) up: bool,
    /// `scope global|link|host` of `ip addr show`.
    pub(super) scope: Option<&'a str>,
}

/// `ip route` usage text of iproute2 6.1 (printed for a bare `ip route add`).
/// iproute2's abbreviations: the first word of `table` that `arg` is a
/// prefix of gives the canonical name; an unmatched word is kept.
pub(super) fn canon<'a>(arg: &'a str, table: &[(&'a str, &'a str)]) -> &'a str {
    if arg.is_empty() {
        return arg;
    }
    table
        .iter()
        .find(|(w, _)| w.starts_with(arg))
        .map_or(arg, |(_, c)| c)
}

/// `ip` objects in iproute2's lookup order (so `ip a` is address, `ip tun`
/// is tunnel, `ip tunt` tuntap); unsimulated ones map to themselves.
pub(super) const OBJECTS: &[(&str, &str)] = &[
    ("address", "address"),
    ("addrlabel", "addrlabel"),
    ("maddress", "maddress"),
    ("route", "route"),
    ("rule", "rule"),
    ("neighbor", "neighbor"),
    ("neighbour", "neighbor"),
    ("ntable", "ntable"),
    ("ntbl", "ntable"),
    ("link", "link"),
    ("l2tp", "l2tp"),
    ("fou", "fou"),
    ("ila", "ila"),
    ("macsec", "macsec"),
    ("tunnel", "tunnel"),
    ("tunl", "tunnel"),
    ("tuntap", "tuntap"),
    ("tap", "tuntap"),
];

/// Verbs of `ip link` in iproute2's order (`ip l s` is set).
pub(super) const LINK_VERBS: &[(&str, &str)] = &[
    ("add", "add"),
    ("set", "set"),
    ("change", "set"),
    ("replace", "replace"),
    ("delete", "delete"),
    ("show", "show"),
    ("lst", "show"),
    ("list", "show"),
];

/// Verbs of `ip address` (`ip a s` is show).
pub(super) const ADDR_VERBS: &[(&str, &str)] = &[
    ("add", "add"),
    ("change", "change"),
    ("chg", "change"),
    ("replace", "replace"),
    ("delete", "delete"),
    ("list", "show"),
    ("show", "show"),
    ("lst", "show"),
    ("flush", "flush"),
];

/// Verbs of `ip route`.
pub(super) const ROUTE_VERBS: &[(&str, &str)] = &[
    ("add", "add"),
    ("change", "change"),
    ("chg", "change"),
    ("replace", "replace"),
    ("prepend", "prepend"),
    ("append", "append"),
    ("test", "test"),
    ("delete", "delete"),
    ("list", "show"),
    ("show", "show"),
    ("lst", "show"),
    ("get", "get"),
    ("flush", "flush"),
];

/// Verbs of `ip neigh`.
pub(super) const NEIGH_VERBS: &[(&str, &str)] = &[
    ("add", "add"),
    ("change", "change"),
    ("chg", "change"),
    ("replace", "replace"),
    ("delete", "delete"),
    ("get", "get"),
    ("list", "show"),
    ("show", "show"),
    ("lst", "show"),
    ("flush", "flush"),
];

/// The error for a gateway no connected network reaches.
pub(super) fn gw_error(v6: bool) -> &'static str {
    if v6 {
        "RTNETLINK answers: No route to host"
    } else {
        "Error: Nexthop has invalid gateway."
    }
}

pub(super) const ROUTE_USAGE: &str = include_str!("../usage/ip-route.txt");

pub(super) fn parse_dev_arg<'a>(rest: &[&'a str]) -> Option<&'a str> {
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "dev" => return rest.get(i + 1).copied(),
            "up" => i += 1,
            "scope" | "type" | "master" | "label" | "to" => i += 2,
            d => return Some(d),
        }
    }
    None
}

/// `[dev] NAME | master M | type T | up` after `show`.
pub(super) fn parse_link_filter<'a>(rest: &[&'a str]) -> Result<LinkFilter<'a>, Output> {
    let mut f = LinkFilter::default();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "dev" => {
                f.dev = rest.get(i + 1).copied();
                i += 2;
            }
            "master" => {
                f.master = rest.get(i + 1).copied();
                i += 2;
            }
            "type" => {
                f.kind = rest.get(i + 1).copied();
                i += 2;
            }
            "up" => {
                f.up = true;
                i += 1;
            }
            "scope" => {
                f.scope = rest.get(i + 1).copied();
                i += 2;
            }
            "label" | "to" => i += 2,
            "permanent" | "dynamic" | "tentative" | "primary" | "secondary" => i += 1,
            d if f.dev.is_none() => {
                f.dev = Some(d);
                i += 1;
            }
            d => {
                return Err(fail(
                    255,
                    format!("Error: either \"dev\" is duplicate, or \"{d}\" is a garbage."),
                ))
            }
        }
    }
    Ok(f)
}

pub(super) const BRIDGE_KEYS: &[&str] = &[
    "forward_delay",
    "hello_time",
    "max_age",
    "ageing_time",
    "stp_state",
    "priority",
    "group_fwd_mask",
    "no_linklocal_learn",
    "vlan_filtering",
    "vlan_default_pvid",
    "vlan_stats_enabled",
    "vlan_stats_per_port",
    "mcast_snooping",
    "mcast_vlan_snooping",
    "mcast_router",
    "mcast_query_use_ifaddr",
    "mcast_querier",
    "mcast_hash_elasticity",
    "mcast_hash_max",
    "mcast_last_member_count",
    "mcast_startup_query_count",
    "mcast_last_member_interval",
    "mcast_membership_interval",
    "mcast_querier_interval",
    "mcast_query_interval",
    "mcast_query_response_interval",
    "mcast_startup_query_interval",
    "mcast_stats_enabled",
    "mcast_igmp_version",
    "mcast_mld_version",
    "nf_call_iptables",
    "nf_call_ip6tables",
    "nf_call_arptables",
];

pub(super) const BRIDGE_USAGE: &str = r#"Usage: ... bridge [ fdb_flush ]
		  [ forward_delay FORWARD_DELAY ]
		  [ hello_time HELLO_TIME ]
		  [ max_age MAX_AGE ]
		  [ ageing_time AGEING_TIME ]
		  [ stp_state STP_STATE ]
		  [ priority PRIORITY ]
		  [ group_fwd_mask MASK ]
		  [ group_address ADDRESS ]
		  [ no_linklocal_learn NO_LINKLOCAL_LEARN ]
		  [ vlan_filtering VLAN_FILTERING ]
		  [ vlan_protocol VLAN_PROTOCOL ]
		  [ vlan_default_pvid VLAN_DEFAULT_PVID ]
		  [ vlan_stats_enabled VLAN_STATS_ENABLED ]
		  [ vlan_stats_per_port VLAN_STATS_PER_PORT ]
		  [ mcast_snooping MULTICAST_SNOOPING ]
		  [ mcast_vlan_snooping MULTICAST_VLAN_SNOOPING ]
		  [ mcast_router MULTICAST_ROUTER ]
		  [ mcast_query_use_ifaddr MCAST_QUERY_USE_IFADDR ]
		  [ mcast_querier MULTICAST_QUERIER ]
		  [ mcast_hash_elasticity HASH_ELASTICITY ]
		  [ mcast_hash_max HASH_MAX ]
		  [ mcast_last_member_count LAST_MEMBER_COUNT ]
		  [ mcast_startup_query_count STARTUP_QUERY_COUNT ]
		  [ mcast_last_member_interval LAST_MEMBER_INTERVAL ]
		  [ mcast_membership_interval MEMBERSHIP_INTERVAL ]
		  [ mcast_querier_interval QUERIER_INTERVAL ]
		  [ mcast_query_interval QUERY_INTERVAL ]
		  [ mcast_query_response_interval QUERY_RESPONSE_INTERVAL ]
		  [ mcast_startup_query_interval STARTUP_QUERY_INTERVAL ]
		  [ mcast_stats_enabled MCAST_STATS_ENABLED ]
		  [ mcast_igmp_version IGMP_VERSION ]
		  [ mcast_mld_version MLD_VERSION ]
		  [ nf_call_iptables NF_CALL_IPTABLES ]
		  [ nf_call_ip6tables NF_CALL_IP6TABLES ]
		  [ nf_call_arptables NF_CALL_ARPTABLES ]

Where: VLAN_PROTOCOL := { 802.1Q | 802.1ad }
"#;

/// Parse `KEY VALUE...` after `type bridge`. `stp_on` is the bridge's STP
/// state before the command: with STP on, the kernel only accepts a
/// forward delay of 2-30 s (200-3000 in iproute2's units).
pub(super) fn parse_bridge_opts(
    args: &[&str],
    stp_on: bool,
) -> Result<BTreeMap<String, u64>, Output> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let k = args[i];
        if !BRIDGE_KEYS.contains(&k) {
            return Err(Output::failed(
                1,
                format!("bridge: unknown command \"{k}\"?\n{BRIDGE_USAGE}"),
            ));
        }
        let Some(v) = args.get(i + 1) else {
            return Err(fail(
                255,
                "Command line is not complete. Try option \"help\"",
            ));
        };
        let Ok(n) = v.parse::<u64>() else {
            return Err(fail(
                255,
                format!("Error: argument \"{v}\" is wrong: invalid {k}"),
            ));
        };
        out.insert(k.to_string(), n);
        i += 2;
    }
    if let Some(fd) = out.get("forward_delay") {
        if stp_on && !(200..=3000).contains(fd) {
            return Err(fail(2, "RTNETLINK answers: Numerical result out of range"));
        }
    }
    Ok(out)
}

/// iproute2's userspace check of a link name given after `key` (`dev` or
/// the bare name: check_altifname, `name`: check_ifname, which also limits
/// the length to 15 bytes): the error `ip link add` prints, if any.
pub(super) fn invalid_ifname(key: &str, name: &str) -> Option<Output> {
    let bad = name.is_empty()
        || (key == "name" && name.len() > 15)
        || name
            .chars()
            .any(|c| matches!(c, '/' | ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'));
    bad.then(|| {
        fail(
            255,
            format!("Error: argument \"{name}\" is wrong: \"{key}\" not a valid ifname"),
        )
    })
}

/// The kernel's dev_valid_name() beyond what iproute2 checks first.
pub(super) fn kernel_valid_ifname(name: &str) -> bool {
    name != "." && name != ".." && !name.contains(':')
}
