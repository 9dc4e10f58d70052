//! The real-packet lab against a network the driver started (issue 16
//! item 3): golden case `nat-default` with Docker's rules (its FORWARD
//! policy DROP, its nftables table), iptables backend. A guest
//! gets a DHCP lease from the driver's dnsmasq through a real client,
//! reaches the outside masqueraded to the uplink's address, DNS and DHCP on
//! the gateway answer, and a new connection from the outside is refused.
//! Prints "skipped: <why>" without root or the tools.

use std::net::IpAddr;

use virtnet_conformance::host::{RealFactory, REAL_TOOLS};
use virtnet_conformance::scenario::Ctx;
use virtnet_conformance::{golden_root, load_cases};
use virtnet_core::firewall::Backend;
use virtnet_testkit::lab::{Arrival, GuestSpec, Lab, Probe, L4, LAB_TOOLS};

fn skip_reason() -> Option<String> {
    let mut tools: Vec<&str> = REAL_TOOLS.iter().map(|(tool, _)| *tool).collect();
    tools.extend_from_slice(LAB_TOOLS);
    virtnet_testkit::cannot_run(&tools)
}

fn probe(dst: &str, proto: L4, dport: Option<u16>, reply: bool) -> Probe {
    Probe {
        dst: dst.parse().unwrap(),
        proto,
        sport: None,
        dport,
        reply,
    }
}

#[test]
fn a_guest_of_a_nat_network_gets_a_lease_and_reaches_the_outside_masqueraded() {
    if let Some(why) = skip_reason() {
        virtnet_testkit::skip(&why);
        return;
    }
    let outer = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    // On a thread of its own: the stage moves it into a fresh namespace.
    std::thread::spawn(run).join().unwrap();
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        outer
    );
}

fn run() {
    let factory = RealFactory::new(None).unwrap();
    let g = golden_root();
    let cases = load_cases(&g).unwrap();
    let case = cases.iter().find(|c| c.name == "nat-default").unwrap();
    let ctx = Ctx::new(&factory, &g, case).unwrap();
    let stage = ctx.stage().unwrap();
    // The baseline's firewalld table rejects what comes in on an interface
    // of no zone — DHCP included (libvirt's own zone is not there): this
    // test is about Docker's FORWARD policy DROP next to libvirt's rules.
    let r = stage.host.runner();
    r.run_argv_checked(&["nft", "delete", "table", "inet", "firewalld"])
        .unwrap();
    r.run_argv_checked(&["iptables", "-P", "FORWARD", "DROP"])
        .unwrap();
    let d = ctx.driver(&stage, None, Backend::Iptables).unwrap();
    let name = d.define(&case.xml).unwrap().name;
    d.start(&name).unwrap();

    let mut lab = Lab::new().unwrap();
    lab.add_outside(
        "vnup0",
        &[("198.51.100.1".parse().unwrap(), 24)],
        &[("198.51.100.2".parse().unwrap(), 24)],
        &[("192.168.122.0/24".into(), "198.51.100.1".parse().unwrap())],
    )
    .unwrap();
    let gw: IpAddr = "192.168.122.1".parse().unwrap();
    let gi = lab
        .add_guest(&GuestSpec {
            bridge: "virbr0".into(),
            dhcp_prefix: Some(24),
            gateways: vec![gw],
            ..Default::default()
        })
        .unwrap();
    let lease = lab.guests[gi].lease.clone().expect("a DHCP lease");
    println!("lease: {lease:?}");
    assert_eq!(lease.server.to_string(), "192.168.122.1");
    let o = lease.addr.octets();
    assert!(
        o[..3] == [192, 168, 122] && (2..=254).contains(&o[3]),
        "{lease:?}"
    );

    // Guest → outside: masqueraded to the uplink's address, answers return.
    for (proto, dport) in [
        (L4::Udp, Some(5000)),
        (L4::Tcp, Some(8080)),
        (L4::Icmp, None),
    ] {
        let a = lab
            .send("guest0", &probe("198.51.100.2", proto, dport, true))
            .unwrap();
        println!("guest0 → outside {proto:?}: {a:?}");
        match a {
            Arrival::Delivered {
                at,
                src,
                sport,
                replied,
            } => {
                assert_eq!(at, "outside");
                assert_eq!(src.to_string(), "198.51.100.1", "masqueraded source");
                if let Some(p) = sport {
                    assert!(p >= 1024, "{p}: libvirt masquerades to ports 1024-65535");
                }
                assert_eq!(replied, Some(true), "the answer comes back de-NATed");
            }
            other => panic!("{proto:?}: {other:?}"),
        }
    }
    // A source port below 1024 is moved into libvirt's 1024-65535.
    let mut low = probe("198.51.100.2", L4::Udp, Some(5001), false);
    low.sport = Some(700);
    match lab.send("guest0", &low).unwrap() {
        Arrival::Delivered {
            src,
            sport: Some(p),
            ..
        } => {
            assert_eq!(src.to_string(), "198.51.100.1");
            assert!(p >= 1024, "{p}");
        }
        other => panic!("{other:?}"),
    }
    // Guest → gateway: dnsmasq answers DNS (udp, tcp) and DHCP.
    for (proto, port) in [(L4::Udp, 53), (L4::Tcp, 53), (L4::Udp, 67)] {
        let a = lab
            .send("guest0", &probe("192.168.122.1", proto, Some(port), false))
            .unwrap();
        println!("guest0 → gateway {proto:?} {port}: {a:?}");
        assert!(
            matches!(a, Arrival::Answered { .. }),
            "{proto:?} {port}: {a:?}"
        );
    }
    // Outside → guest, a new connection: libvirt's forward-in chain rejects it.
    let to_guest = lease.addr.to_string();
    for proto in [L4::Tcp, L4::Udp] {
        let a = lab
            .send("outside", &probe(&to_guest, proto, Some(8081), false))
            .unwrap();
        println!("outside → guest0 {proto:?}: {a:?}");
        assert!(matches!(a, Arrival::Refused { .. }), "{proto:?}: {a:?}");
    }
    drop(lab);
    d.destroy(&name).unwrap();
}
