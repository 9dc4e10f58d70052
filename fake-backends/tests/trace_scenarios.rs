//! The packet tracer on networks started by the driver on a simulated host,
//! both firewall backends, with and without foreign baselines.
//!
//! The expected outcomes come from libvirt's documented behaviour of each
//! forward mode (formatnetwork.html, "Connectivity"), not from the rules:
//! * `nat`: guests reach the outside with their source masqueraded to the
//!   uplink's address, replies come back, nobody outside can open a
//!   connection to a guest; DHCP and DNS from guests reach the host;
//! * `isolated` (no `<forward>`): guests reach the host and each other,
//!   nothing beyond;
//! * `route`: guests are routed without NAT, in both directions.
//!
//! Baselines: `docker` = Docker's iptables chains as `seed.rs` has them plus
//! the FORWARD policy DROP real Docker sets (`iptables -P FORWARD DROP`);
//! `matrix` = exactly what the conformance matrix seeds (Docker's iptables
//! chains and nft table, firewalld's `inet firewalld` table).

use std::net::IpAddr;
use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_fake::trace::{trace, Conntrack, Flow, Outcome, Trace};
use virtnet_fake::{seed, FakeHost, HostState};
use virtnet_runner::Runner;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    None,
    Docker,
    Matrix,
}

const UPLINK: &str = "203.0.113.2";
const OUTSIDE: &str = "198.51.100.7";
const GUEST: &str = "192.168.122.5";

fn exec(host: &FakeHost, cmd: &str) {
    let argv: Vec<&str> = cmd.split(' ').collect();
    let out = host.exec(&argv, None).unwrap();
    assert!(out.success(), "{cmd}: {}", out.stderr);
}

/// Start golden case `case` with `backend` on a host with an uplink eth0
/// (203.0.113.2/24, default route via .1) and forwarding on (as on any host
/// running a NAT network), after seeding `baseline`.
fn started(case: &str, backend: Backend, baseline: Baseline) -> HostState {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(FakeHost::new());
    host.set_dummy_driver(true);
    match baseline {
        Baseline::None => {}
        Baseline::Docker => {
            seed::seed_docker_iptables(&*host).unwrap();
            exec(&host, "iptables -w -P FORWARD DROP");
        }
        Baseline::Matrix => {
            seed::seed_docker_iptables(&*host).unwrap();
            seed::seed_docker_nft(&*host).unwrap();
            seed::seed_firewalld_nft(&*host).unwrap();
        }
    }
    for c in [
        "ip link add eth0 type dummy",
        "ip addr add 203.0.113.2/24 dev eth0",
        "ip link set eth0 up",
        "ip route add default via 203.0.113.1",
        "sysctl -w net.ipv4.ip_forward=1",
    ] {
        exec(&host, c);
    }
    let xml_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/cases/");
    let xml = std::fs::read_to_string(format!("{xml_path}{case}.xml")).unwrap();
    let mut cfg = DriverConfig::new(
        dir.path().join("config"),
        dir.path().join("state"),
        host.clone() as Arc<dyn Runner>,
    );
    cfg.dnsmasq_binary = Some("/usr/sbin/dnsmasq".into());
    let d = Driver::open(cfg.with_backend(backend)).unwrap();
    let def = d.define(&xml).unwrap();
    d.start(&def.name).unwrap();
    host.state()
}

fn go(st: &HostState, ct: &mut Conntrack, flow: &str) -> Trace {
    let f: Flow = flow.parse().unwrap();
    trace(st, ct, &f).unwrap_or_else(|e| panic!("{flow}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn delivered_via(t: &Trace, oif: &str, src: &str, dst: &str) {
    match &t.outcome {
        Outcome::Delivered {
            oif: o,
            src: s,
            dst: d,
            ..
        } if o == oif && *s == ip(src) && *d == ip(dst) => {}
        _ => panic!("expected delivered via {oif} {src} -> {dst}:\n{t}"),
    }
}

fn is_local(t: &Trace) {
    assert!(
        matches!(t.outcome, Outcome::Local { .. }),
        "expected local:\n{t}"
    );
}

fn not_delivered(t: &Trace) {
    assert!(
        matches!(
            t.outcome,
            Outcome::Dropped { .. } | Outcome::Rejected { .. } | Outcome::Unreachable { .. }
        ),
        "expected not delivered:\n{t}"
    );
}

fn rejected_by(t: &Trace, table: &str) {
    assert!(
        matches!(&t.outcome, Outcome::Rejected { table: tb, .. } if tb == table),
        "expected rejected by table {table}:\n{t}"
    );
}

fn dropped_by_policy(t: &Trace, family: &str, table: &str, chain: &str) {
    assert!(
        matches!(&t.outcome, Outcome::Dropped { family: f, table: tb, chain: c, handle: None, .. }
            if f == family && tb == table && c == chain),
        "expected dropped by the policy of {family} {table} {chain}:\n{t}"
    );
}

/// The table that holds libvirt's rules with each backend.
fn libvirt_table(b: Backend) -> &'static str {
    match b {
        Backend::Iptables => "filter",
        _ => "libvirt_network",
    }
}

const BACKENDS: [Backend; 2] = [Backend::Iptables, Backend::Nftables];

fn guest_services_are_local(st: &HostState) {
    let mut ct = Conntrack::default();
    for f in [
        "from virbr0 0.0.0.0 to 255.255.255.255 udp sport 68 dport 67".to_string(),
        format!("from virbr0 {GUEST} to 192.168.122.1 udp sport 68 dport 67"),
        format!("from virbr0 {GUEST} to 192.168.122.1 udp sport 40000 dport 53"),
        format!("from virbr0 {GUEST} to 192.168.122.1 tcp sport 40000 dport 53"),
    ] {
        is_local(&go(st, &mut ct, &f));
    }
}

#[test]
fn nat_default_without_baseline() {
    for b in BACKENDS {
        let st = started("nat-default", b, Baseline::None);
        let mut ct = Conntrack::default();
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} udp sport 40000 dport 53"),
        );
        delivered_via(&t, "eth0", UPLINK, OUTSIDE);
        // masquerade to :1024-65535 keeps a source port inside the range.
        assert!(
            matches!(
                t.outcome,
                Outcome::Delivered {
                    sport: Some(40000),
                    ..
                }
            ),
            "{t}"
        );
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} tcp sport 40001 dport 80"),
        );
        delivered_via(&t, "eth0", UPLINK, OUTSIDE);
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} icmp"),
        );
        delivered_via(&t, "eth0", UPLINK, OUTSIDE);
        // Replies reach the guest, addressed to it again.
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {UPLINK} udp sport 53 dport 40000 reply"),
        );
        delivered_via(&t, "virbr0", OUTSIDE, GUEST);
        assert!(
            matches!(
                t.outcome,
                Outcome::Delivered {
                    dport: Some(40000),
                    ..
                }
            ),
            "{t}"
        );
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {UPLINK} tcp sport 80 dport 40001 reply"),
        );
        delivered_via(&t, "virbr0", OUTSIDE, GUEST);
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {UPLINK} icmp reply"),
        );
        delivered_via(&t, "virbr0", OUTSIDE, GUEST);
        // Nobody outside opens a connection to a guest.
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {GUEST} tcp sport 5000 dport 22"),
        );
        rejected_by(&t, libvirt_table(b));
        guest_services_are_local(&st);
    }
}

#[test]
fn isolated_without_baseline() {
    for b in BACKENDS {
        let st = started("isolated", b, Baseline::None);
        let mut ct = Conntrack::default();
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} icmp"),
        );
        rejected_by(&t, libvirt_table(b));
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} tcp sport 40000 dport 443"),
        );
        rejected_by(&t, libvirt_table(b));
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {GUEST} icmp"),
        );
        rejected_by(&t, libvirt_table(b));
        guest_services_are_local(&st);
    }
}

#[test]
fn route_without_baseline() {
    for b in BACKENDS {
        let st = started("route-default", b, Baseline::None);
        let mut ct = Conntrack::default();
        // No NAT: the guest's own address leaves the host.
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} udp sport 40000 dport 53"),
        );
        delivered_via(&t, "eth0", GUEST, OUTSIDE);
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {GUEST} udp sport 53 dport 40000 reply"),
        );
        delivered_via(&t, "virbr0", OUTSIDE, GUEST);
        // Routed in both directions: a new connection from outside too.
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {GUEST} tcp sport 5000 dport 22"),
        );
        delivered_via(&t, "virbr0", OUTSIDE, GUEST);
        guest_services_are_local(&st);
    }
}

/// Docker's FORWARD policy DROP: libvirt's iptables rules are jumped to
/// from the top of FORWARD and decide first, so nothing changes; with the
/// nftables backend libvirt's own table accepts, but the packet then meets
/// iptables' `ip filter FORWARD` chain at the same hook, which ends in
/// Docker's DROP policy: forwarded guest traffic is dropped by the kernel.
#[test]
fn docker_forward_drop_baseline() {
    for case in ["nat-default", "route-default"] {
        let st = started(case, Backend::Iptables, Baseline::Docker);
        let mut ct = Conntrack::default();
        let src = if case == "nat-default" { UPLINK } else { GUEST };
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} udp sport 40000 dport 53"),
        );
        delivered_via(&t, "eth0", src, OUTSIDE);
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {src} udp sport 53 dport 40000 reply"),
        );
        delivered_via(&t, "virbr0", OUTSIDE, GUEST);
        guest_services_are_local(&st);

        let st = started(case, Backend::Nftables, Baseline::Docker);
        let mut ct = Conntrack::default();
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} udp sport 40000 dport 53"),
        );
        dropped_by_policy(&t, "ip", "filter", "FORWARD");
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {GUEST} tcp sport 5000 dport 22"),
        );
        not_delivered(&t);
        // The host itself is not affected (INPUT has no DROP policy).
        guest_services_are_local(&st);
    }
    let st = started("isolated", Backend::Nftables, Baseline::Docker);
    let t = go(
        &st,
        &mut Conntrack::default(),
        &format!("from virbr0 {GUEST} to {OUTSIDE} icmp"),
    );
    not_delivered(&t);
}

/// The conformance matrix's baseline: firewalld's simplified `inet
/// firewalld` table has no libvirt zone, so its forward chain (priority
/// filter + 10, after libvirt's accept) rejects every new forwarded
/// connection and its input chain rejects DHCP and DNS; established
/// traffic passes. Docker's chains (policy ACCEPT here) change nothing.
#[test]
fn matrix_baseline() {
    for b in BACKENDS {
        let st = started("nat-default", b, Baseline::Matrix);
        let mut ct = Conntrack::default();
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to {OUTSIDE} udp sport 40000 dport 53"),
        );
        rejected_by(&t, "firewalld");
        let t = go(
            &st,
            &mut ct,
            &format!("from eth0 {OUTSIDE} to {GUEST} tcp sport 5000 dport 22"),
        );
        not_delivered(&t);
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to 192.168.122.1 udp sport 68 dport 67"),
        );
        rejected_by(&t, "firewalld");
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to 192.168.122.1 udp sport 40000 dport 53"),
        );
        rejected_by(&t, "firewalld");
        // ssh to the host is allowed by the public zone.
        let t = go(
            &st,
            &mut ct,
            &format!("from virbr0 {GUEST} to 192.168.122.1 tcp sport 40000 dport 22"),
        );
        is_local(&t);
    }
}

/// Every golden case, both backends, on the matrix baseline: the tracer
/// evaluates the rules on the paths of a few flows without an error (an
/// unsupported match or statement would fail here).
#[test]
fn every_golden_case_is_traceable() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/cases");
    let mut cases: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_suffix(".xml").map(str::to_string)
        })
        .collect();
    cases.sort();
    let mut traced = 0;
    for case in &cases {
        for b in BACKENDS {
            let Some(st) = std::panic::catch_unwind(|| started(case, b, Baseline::Matrix)).ok()
            else {
                // Cases that cannot start on this host (e.g. a bridge
                // that must exist) are counted below, not skipped silently.
                continue;
            };
            let bridges: Vec<String> = st
                .ip
                .links
                .iter()
                .filter(|l| l.up && l.name.starts_with("virbr"))
                .map(|l| l.name.clone())
                .collect();
            let mut flows = vec![
                format!("from eth0 {OUTSIDE} to {GUEST} tcp sport 5000 dport 22"),
                format!("from eth0 {OUTSIDE} to {GUEST} udp sport 53 dport 40000"),
            ];
            for br in &bridges {
                flows.push(format!(
                    "from {br} {GUEST} to {OUTSIDE} udp sport 40000 dport 53"
                ));
                flows.push(format!(
                    "from {br} {GUEST} to {OUTSIDE} tcp sport 40000 dport 80"
                ));
                flows.push(format!(
                    "from {br} {GUEST} to 192.168.122.1 udp sport 68 dport 67"
                ));
                flows.push(format!("from {br} fd00::5 to 2001:db8::9 icmpv6"));
            }
            let mut ct = Conntrack::default();
            for f in &flows {
                let flow: Flow = f.parse().unwrap();
                if let Err(e) = trace(&st, &mut ct, &flow) {
                    panic!("{case} {b:?}: {f}: {e}");
                }
            }
            traced += 1;
        }
    }
    // 34 cases × 2 backends; 5 cases cannot start on a bare fake host (TFTP
    // roots that do not exist, an invalid port range, …): 58 pairs.
    assert!(traced >= 58, "only {traced} case/backend pairs started");
}
