//! The flow tables of a few golden cases, spelled out.

use super::*;
use crate::cases::{golden_root, load_cases};
use virtnet_core::firewall::Backend;

fn table(case: &str, backend: Backend, foreign: Foreign) -> FlowTable {
    let cases = load_cases(&golden_root()).unwrap();
    let c = cases.iter().find(|c| c.name == case).unwrap();
    flow_table(&c.name, &c.def, backend, foreign)
}

fn flow<'a>(t: &'a FlowTable, name: &str) -> &'a ProbeFlow {
    t.flows.iter().find(|f| f.name == name).unwrap_or_else(|| {
        panic!(
            "no flow {name} in {:#?}",
            t.flows.iter().map(|f| &f.name).collect::<Vec<_>>()
        )
    })
}

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn nat_default_bare() {
    let t = table("nat-default", Backend::Nftables, Foreign::Bare);
    let f = flow(&t, "v4.0 guest->outside udp");
    assert_eq!(f.src, a("192.168.122.2"));
    assert_eq!(f.dst, a("198.51.100.7"));
    assert_eq!(f.iif, "virbr0");
    assert_eq!(
        f.expect,
        Expect::Delivered {
            src: AddrSeen::Exact {
                addr: a("198.51.100.254")
            },
            sport: PortSeen::Range {
                start: 1024,
                end: 65535
            }
        }
    );
    let i = t.flows.iter().position(|x| x.name == f.name).unwrap();
    let r = flow(&t, "v4.0 guest->outside udp reply");
    assert_eq!(r.reply_of, Some(i));
    assert_eq!(r.iif, "vnup0");
    assert_eq!(
        (r.src, r.sport, r.dst, r.dport),
        (a("198.51.100.7"), Some(53), a("192.168.122.2"), Some(40000))
    );
    assert_eq!(flow(&t, "v4.0 outside->guest ssh").expect, Expect::Rejected);
    assert_eq!(
        flow(&t, "v4.0 guest->peer-guest tcp").expect,
        Expect::Rejected
    );
    assert_eq!(
        flow(&t, "v4.0 peer-guest->guest tcp").expect,
        Expect::Rejected
    );
    let d = flow(&t, "v4.0 guest->host dhcp discover");
    assert_eq!((d.src, d.dst), (a("0.0.0.0"), a("255.255.255.255")));
    assert!(matches!(d.expect, Expect::Delivered { .. }));
    assert_eq!(
        flow(&t, "v4.0 guest->guest same subnet tcp").path,
        Path::Switched
    );
    // The reply's packet goes to what the outside saw.
    let tf = r.trace_flow(Some((a("198.51.100.254"), Some(1024))));
    assert_eq!(
        tf.to_string(),
        "from vnup0 198.51.100.7 to 198.51.100.254 udp sport 53 dport 1024 reply"
    );
}

#[test]
fn snat_range_ports_and_ipv6() {
    let t = table("nat-snat-ipv6", Backend::Iptables, Foreign::Bare);
    assert_eq!(
        flow(&t, "v4.0 guest->outside tcp").expect,
        Expect::Delivered {
            src: AddrSeen::Range {
                start: a("203.0.113.5"),
                end: a("203.0.113.9")
            },
            sport: PortSeen::Range {
                start: 4000,
                end: 5000
            }
        }
    );
    // IPv6 is masqueraded to the uplink, never to the IPv4 range.
    assert_eq!(
        flow(&t, "v6.1 guest->outside icmpv6").expect,
        Expect::Delivered {
            src: AddrSeen::Exact {
                addr: a("2001:db8:ffff::fe")
            },
            sport: PortSeen::Exact { port: None }
        }
    );
    assert_eq!(flow(&t, "v6.1 outside->guest ssh").expect, Expect::Rejected);
}

#[test]
fn routed_ipv6_of_a_nat_network_and_route_mode() {
    let t = table("nat-ipv6", Backend::Nftables, Foreign::Bare);
    let e = flow(&t, "v6.1 outside->guest ssh");
    assert_eq!(
        e.expect,
        Expect::Delivered {
            src: AddrSeen::Exact {
                addr: a("2001:db8:ffff::7")
            },
            sport: PortSeen::Exact { port: Some(40000) }
        }
    );
    let t = table("route-default", Backend::Nftables, Foreign::Bare);
    assert!(matches!(
        flow(&t, "v4.0 peer-guest->guest tcp").expect,
        Expect::Delivered { .. }
    ));
    let t = table("route-dev", Backend::Nftables, Foreign::Bare);
    assert_eq!(t.topology.uplink, "eth0");
    assert_eq!(
        flow(&t, "v4.0 peer-guest->guest tcp").expect,
        Expect::Rejected
    );
}

#[test]
fn cross_subnet_is_masqueraded_on_nat() {
    let t = table("nat-many-ips", Backend::Iptables, Foreign::Bare);
    assert_eq!(
        flow(&t, "v4.0 guest->guest v4.1 tcp").expect,
        Expect::Delivered {
            src: AddrSeen::Exact {
                addr: a("192.168.128.1")
            },
            sport: PortSeen::Range {
                start: 1024,
                end: 65535
            }
        }
    );
    let t = table("isolated", Backend::Iptables, Foreign::Bare);
    assert!(matches!(
        flow(&t, "v4.0 guest->guest v4.1 tcp").expect,
        Expect::Delivered { .. }
    ));
    assert_eq!(
        flow(&t, "v4.0 guest->outside icmp").expect,
        Expect::Rejected
    );
    assert_eq!(
        flow(&t, "v6.2 guest->outside icmpv6").expect,
        Expect::Blocked
    );
}

#[test]
fn foreign_rules() {
    // Docker's FORWARD policy DROP: harmless with iptables, fatal with nftables.
    let ipt = table("nat-default", Backend::Iptables, Foreign::DockerDrop);
    let nft = table("nat-default", Backend::Nftables, Foreign::DockerDrop);
    assert!(matches!(
        flow(&ipt, "v4.0 guest->outside tcp").expect,
        Expect::Delivered { .. }
    ));
    assert!(ipt
        .flows
        .iter()
        .any(|f| f.name == "v4.0 guest->outside tcp reply"));
    assert_eq!(
        flow(&nft, "v4.0 guest->outside tcp").expect,
        Expect::Dropped
    );
    assert!(!nft.flows.iter().any(|f| f.reply_of.is_some()));
    assert_eq!(
        flow(&nft, "v4.0 outside->guest ssh").expect,
        Expect::Blocked
    );
    assert!(matches!(
        flow(&nft, "v4.0 guest->host dns udp").expect,
        Expect::Delivered { .. }
    ));
    // An open network has no libvirt rules: dropped with either backend.
    let open = table("open", Backend::Iptables, Foreign::DockerDrop);
    assert_eq!(
        flow(&open, "v4.0 guest->outside udp").expect,
        Expect::Dropped
    );
    // firewalld without libvirt's zone.
    let fw = table("nat-default", Backend::Iptables, Foreign::Baseline);
    assert_eq!(
        flow(&fw, "v4.0 guest->host dns udp").expect,
        Expect::Rejected
    );
    assert!(matches!(
        flow(&fw, "v4.0 guest->host ssh").expect,
        Expect::Delivered { .. }
    ));
    assert!(matches!(
        flow(&fw, "v4.0 guest->host icmp").expect,
        Expect::Delivered { .. }
    ));
    assert_eq!(
        flow(&fw, "v4.0 guest->outside tcp").expect,
        Expect::Rejected
    );
    assert!(!fw.flows.iter().any(|f| f.reply_of.is_some()));
    // The public zone's default target accepts ICMPv6 too; other IPv6
    // packets to the host are refused like IPv4 ones.
    let fw6 = table("isolated", Backend::Iptables, Foreign::Baseline);
    let v6: Vec<&crate::traffic::ProbeFlow> = fw6
        .flows
        .iter()
        .filter(|f| f.name.starts_with("v6.") && matches!(f.to, crate::traffic::Node::Host { .. }))
        .collect();
    assert!(!v6.is_empty());
    for f in v6 {
        let open = f.proto == Proto::Icmpv6 || f.dport == Some(22);
        assert_eq!(
            matches!(f.expect, Expect::Delivered { .. }),
            open,
            "{f}: {}",
            f.expect
        );
    }
}

#[test]
fn every_case_has_a_table() {
    let cases = load_cases(&golden_root()).unwrap();
    let mut n = 0;
    for c in &cases {
        let t = flow_table(&c.name, &c.def, Backend::Nftables, Foreign::Bare);
        assert!(!t.flows.is_empty(), "{}", c.name);
        let mut names: Vec<&str> = t.flows.iter().map(|f| f.name.as_str()).collect();
        names.sort();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len, "{}: flow names are unique", c.name);
        for f in &t.flows {
            assert_eq!(f.src.is_ipv4(), f.dst.is_ipv4(), "{}: {f}", c.name);
            if let Some(o) = f.reply_of {
                assert!(o < t.flows.len() && t.flows[o].reply_of.is_none());
            }
        }
        n += t.flows.len();
    }
    assert!(n > 300, "{n} flows");
}

#[test]
fn dhcp_of_a_host_only_subnet_uses_a_host_mac() {
    // Only `<host>` entries: the client must be one of them.
    let t = table("dhcp-host-only", Backend::Nftables, Foreign::Bare);
    let f = flow(&t, "v4.0 guest->host dhcp discover");
    assert_eq!(f.dhcp_mac.as_deref(), Some("52:54:00:22:00:01"));
    // The second IPv4 subnet (third <ip>) has hosts only, the first no DHCP.
    let t = table("nat-ipv6-yes-many", Backend::Nftables, Foreign::Bare);
    let f = flow(&t, "v4.2 guest->host dhcp discover");
    assert_eq!(f.dhcp_mac.as_deref(), Some("52:54:00:00:16:01"));
    // A range serves any client.
    let t = table("nat-default", Backend::Nftables, Foreign::Bare);
    let f = flow(&t, "v4.0 guest->host dhcp discover");
    assert_eq!(f.dhcp_mac, None);
}

/// A `<nat><address>` in the uplink's own subnet is routed via the host on
/// the outside (nobody would answer its ARP); one outside it is not.
#[test]
fn snat_addresses_on_the_uplink_subnet_get_a_route_via_the_host() {
    let t = table("nat-snat-ports", Backend::Nftables, Foreign::Bare);
    assert_eq!(
        t.topology.snat_onlink_v4,
        vec!["198.51.100.1".parse::<Ipv4Addr>().unwrap()]
    );
    let routes = t.topology.outside_routes();
    assert_eq!(
        routes[0],
        ("198.51.100.1/32".to_string(), a("198.51.100.254"))
    );
    assert_eq!(routes.len(), 3);
    let t = table("nat-snat-range", Backend::Nftables, Foreign::Bare);
    assert!(t.topology.snat_onlink_v4.is_empty());
    assert_eq!(t.topology.outside_routes().len(), 2);
}
