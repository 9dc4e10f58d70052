//! Property tests of a single start on the fake host, for random valid
//! definitions (every mode and option), random foreign software, a random
//! backend, and random faults:
//!
//! * a start that fails at any command leaves the host as it was, apart
//!   from what libvirt keeps on purpose (`props::view::kept_on_purpose`);
//! * start then destroy leaves the host as it was, apart from the same.
//!
//! Failures print proptest's minimal case (the spec, the XML and the fault
//! plan) and its seed; seeds are saved in `props_start.proptest-regressions`.
//! Case counts: 128 by default, 4000 with `VIRTNET_DEEP=1`, or `PROPTEST_CASES`.

mod props_common;

use props_common::*;
use proptest::prelude::*;
use virtnet_conformance::props::machine::{Machine, Op, REJECT};
use virtnet_conformance::props::spec::NetSpec;
use virtnet_conformance::props::view;
use virtnet_core::firewall::Backend;

proptest! {
    #![proptest_config(config(virtnet_conformance::props::START_CASES.0, virtnet_conformance::props::START_CASES.1))]

    /// A start that fails at any command leaves the host as it was.
    #[test]
    fn failed_start_leaves_the_host_as_it_was(
        spec in net_spec(),
        other in prop::option::weighted(0.3, net_spec()),
        backend in backend(),
        foreign in foreign(),
        fault in start_fault(),
    ) {
        let xml = spec.xml(0);
        let r = run_start(spec, other, backend, foreign, Some(fault.clone()));
        if let Err(e) = &r {
            prop_assume!(!e.starts_with(REJECT), "{}", e);
        }
        prop_assert!(r.is_ok(), "{}\n-- network XML:\n{xml}\n-- fault: {}", r.unwrap_err(), fault.plan());
    }

    /// Start then destroy leaves the host as it was.
    #[test]
    fn start_then_destroy_leaves_the_host_as_it_was(
        spec in net_spec(),
        other in prop::option::weighted(0.3, net_spec()),
        backend in backend(),
        foreign in foreign(),
    ) {
        let xml = spec.xml(0);
        let r = run_start(spec, other, backend, foreign, None);
        prop_assert!(r.is_ok(), "{}\n-- network XML:\n{xml}", r.unwrap_err());
    }
}

/// The classification itself: on a host where libvirt has run and stopped
/// everything, only kept objects remain; while a network runs, its rules
/// are ours and not kept.
#[test]
fn kept_on_purpose_covers_exactly_the_private_chains_and_forwarding() {
    use virtnet_conformance::props::spec::{Mode, Nat, V4, V6};
    let spec = NetSpec {
        mode: Mode::Nat,
        v4: Some(V4 {
            prefix: 24,
            dhcp: 1,
            tftp: false,
        }),
        v4_second: false,
        v6: Some(V6 {
            prefix: 64,
            dhcp: false,
        }),
        nat: Nat::default(),
        forward_dev: false,
        route: false,
        mtu: None,
        stp: true,
        delay: 0,
        dns_off: false,
        domain: false,
    };
    for backend in [Backend::Iptables, Backend::Nftables] {
        let mut m = Machine::new(vec![spec.clone()], backend, Default::default()).unwrap();
        let fresh = view::items(&m.host.state());
        m.step(&Op::Define(0)).unwrap();
        m.step(&Op::Start(0, None)).unwrap();
        let running = view::items(&m.host.state());
        let kept_running = view::kept(&running);
        assert!(!kept_running.is_empty(), "{backend}: nothing kept");
        let ours = running
            .iter()
            .filter(|i| !view::kept_on_purpose(i) && !fresh.contains(i))
            .count();
        assert!(ours > 10, "{backend}: only {ours} objects of the network");
        m.step(&Op::Destroy(0)).unwrap();
        let after = view::items(&m.host.state());
        let new: Vec<_> = view::missing(&after, &fresh);
        assert!(
            !new.is_empty(),
            "{backend}: libvirt keeps its private chains"
        );
        for i in &new {
            assert!(
                view::kept_on_purpose(i),
                "{backend}: {i} left and not kept on purpose"
            );
        }
        let kinds: Vec<String> = new.iter().map(|i| i.to_string()).collect();
        let fwd = kinds
            .iter()
            .any(|k| k.starts_with("sysctl net.ipv4.ip_forward"));
        assert!(fwd, "{backend}: forwarding stays on: {kinds:#?}");
    }
}
