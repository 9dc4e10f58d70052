//! Property tests: arbitrary (even nonsensical) definitions never make the
//! generator panic, and what it produces is well-formed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use virtnet_core::dnsmasq::{self, DnsmasqOptions};
use virtnet_core::netxml::{self, DhcpHost, DhcpRange, IpDef, Lease, LeaseUnit, NetworkDef};

fn base() -> NetworkDef {
    netxml::parse("<network><name>p</name><bridge name='virbr7'/></network>").unwrap()
}

fn addr(v6: bool, net: u8, host: u16) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            u16::from(net),
            0,
            0,
            0,
            1,
            host,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, net, (host >> 8) as u8, host as u8))
    }
}

prop_compose! {
    fn lease()(expiry in prop::option::of(0u64..1000), unit in 0..3u8) -> Option<Lease> {
        expiry.map(|expiry| Lease {
            expiry,
            unit: [LeaseUnit::Seconds, LeaseUnit::Minutes, LeaseUnit::Hours][unit as usize],
        })
    }
}

fn net_() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(0u8), 1 => 0u8..3]
}

fn host_() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 2u16..250, 1 => any::<u16>()]
}

prop_compose! {
    fn ipdef()(
        v6 in any::<bool>(),
        net in prop_oneof![3 => Just(0u8), 1 => 0u8..3],
        prefix in prop_oneof![2 => Just(24u32), 2 => Just(64u32), 1 => Just(16u32), 2 => 0u32..140],
        ptr in prop::option::of(any::<bool>()),
        ranges in prop::collection::vec((net_(), host_(), net_(), host_(), lease()), 0..3),
        hosts in prop::collection::vec((any::<bool>(), any::<bool>(), net_(), host_(), lease()), 0..3),
        tftp in any::<bool>(),
    ) -> IpDef {
        IpDef {
            family: None,
            address: addr(v6, net, 1),
            netmask: None,
            explicit_prefix: prefix,
            local_ptr: ptr,
            tftp_root: tftp.then(|| "/srv/tftp".to_string()),
            ranges: ranges
                .into_iter()
                .map(|(n1, h1, n2, h2, lease)| DhcpRange {
                    start: addr(v6, n1, h1),
                    end: addr(v6, n2, h2),
                    lease,
                })
                .collect(),
            hosts: hosts
                .into_iter()
                .map(|(ident, name, n, h, lease)| DhcpHost {
                    mac: (!v6 && ident).then(|| "52:54:00:00:00:01".to_string()),
                    id: (v6 && ident).then(|| "0:1:2".to_string()),
                    name: name.then(|| "guest".to_string()),
                    ip: Some(addr(v6, n, h)),
                    lease,
                })
                .collect(),
            bootp: None,
        }
    }
}

/// Run the generator on one input; `Ok(true)` when a configuration came out.
fn check(
    ips: Vec<IpDef>,
    dns_off: Option<bool>,
    isolated: bool,
    mtu: Option<u32>,
) -> Result<bool, TestCaseError> {
    let mut def = base();
    def.ips = ips;
    def.dns.enable = dns_off.map(|b| !b);
    if !isolated {
        def.forward = netxml::parse(
            "<network><name>p</name><forward mode='route'/><ip address='10.0.0.1' prefix='24'/></network>",
        )
        .unwrap()
        .forward;
    }
    def.mtu = mtu.unwrap_or(0);
    let a = dnsmasq::conf_contents(&def, &DnsmasqOptions::libvirt_test());
    // Deterministic.
    prop_assert_eq!(
        &a,
        &dnsmasq::conf_contents(&def, &DnsmasqOptions::libvirt_test())
    );
    let Ok(f) = a else { return Ok(false) };
    prop_assert!(f.conf.ends_with('\n'));
    prop_assert!(f.conf.lines().all(|l| !l.is_empty() && !l.contains('\r')));
    prop_assert_eq!(f.conf.matches("\nstrict-order\n").count(), 1);
    prop_assert_eq!(f.conf.contains("\nport=0\n"), dns_off == Some(true));
    prop_assert_eq!(f.conf.contains("\ndhcp-option=3\n"), isolated);
    // Every option line is KEY or KEY=VALUE with a known key.
    for l in f.conf.lines().filter(|l| !l.starts_with('#')) {
        let key = l.split('=').next().unwrap_or("");
        prop_assert!(KEYS.contains(&key), "unexpected line {:?}", l);
    }
    // Host lines: one per host with an address of the chosen DHCP <ip>s.
    let chosen: usize = [true, false]
        .into_iter()
        .filter_map(|v4| def.ips.iter().find(|i| i.is_ipv4() == v4 && i.has_dhcp()))
        .map(|i| i.hosts.iter().filter(|h| h.ip.is_some()).count())
        .sum();
    prop_assert_eq!(f.hostsfile.lines().count(), chosen);
    // A lease maximum exactly when there are real ranges, within bounds.
    let max = f
        .conf
        .lines()
        .find_map(|l| l.strip_prefix("dhcp-lease-max="));
    let nranges = f
        .conf
        .lines()
        .filter(|l| {
            l.starts_with("dhcp-range=") && !l.contains(",static") && !l.ends_with(",ra-only")
        })
        .count() as u64;
    prop_assert_eq!(max.is_some(), nranges > 0);
    if let Some(m) = max {
        let m: u64 = m.parse().unwrap();
        prop_assert!(m >= nranges && m <= 65536 * nranges);
    }
    Ok(true)
}

#[test]
fn never_panics_and_output_is_well_formed() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1024));
    let generated = std::cell::Cell::new(0usize);
    let strategy = (
        prop::collection::vec(ipdef(), 0..4),
        prop::option::of(any::<bool>()),
        any::<bool>(),
        prop::option::of(1u32..9000),
    );
    let result = runner.run(&strategy, |(ips, dns_off, isolated, mtu)| {
        if check(ips, dns_off, isolated, mtu)? {
            generated.set(generated.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Most inputs must make it to a configuration, or the property is vacuous.
    assert!(
        generated.get() > 200,
        "only {} of 1024 inputs were accepted",
        generated.get()
    );
}

const KEYS: &[&str] = &[
    "strict-order",
    "port",
    "server",
    "no-resolv",
    "local",
    "domain",
    "expand-hosts",
    "domain-needed",
    "pid-file",
    "except-interface",
    "bind-dynamic",
    "interface",
    "dhcp-option",
    "ra-param",
    "txt-record",
    "srv-host",
    "enable-tftp",
    "tftp-root",
    "dhcp-range",
    "dhcp-no-override",
    "dhcp-authoritative",
    "dhcp-boot",
    "dhcp-lease-max",
    "dhcp-hostsfile",
    "addn-hosts",
    "enable-ra",
];
