//! The `traffic` operation can fail: with the test-only mutation
//! `virtnet_core::rules::sabotage::drop_masquerade` switched on (neither
//! backend emits its masquerade/SNAT rules), a nat network's guests reach
//! the outside untranslated, and `traffic` must fail on the fake host,
//! naming the flow, the expected and the actual outcome, and the tracer's
//! path. Without the mutation the same scenarios pass.
//!
//! The switch is process-wide: this binary holds only this test.

use virtnet_conformance::scenario::TrafficVariant;
use virtnet_conformance::{
    golden_root, load_cases, run_scenario, FakeFactory, Op, Scenario, Verdict,
};
use virtnet_core::firewall::Backend;
use virtnet_core::rules::sabotage;

fn run(case: &str, backend: Backend) -> Verdict {
    let golden = golden_root();
    let cases = load_cases(&golden).unwrap();
    let c = cases.iter().find(|c| c.name == case).unwrap();
    let sc = Scenario {
        case: case.into(),
        backend,
        layout: virtnet_core::rules::batched::Layout::Libvirt,
        op: Op::Traffic(TrafficVariant::Bare),
    };
    run_scenario(&FakeFactory::default(), &golden, c, &sc).verdict
}

#[test]
fn dropping_the_masquerade_rules_makes_traffic_fail_with_flow_expectation_and_path() {
    for backend in [Backend::Iptables, Backend::Nftables] {
        sabotage::drop_masquerade(false);
        assert_eq!(
            run("nat-default", backend),
            Verdict::Pass,
            "{backend} control"
        );
        sabotage::drop_masquerade(true);
        let v = run("nat-default", backend);
        sabotage::drop_masquerade(false);
        let Verdict::Fail { message, .. } = v else {
            panic!("{backend}: traffic passed without masquerade rules: {v:?}");
        };
        println!("{message}");
        // The flow, what libvirt documents, what happened, and the path.
        assert!(
            message.contains(
                "flow v4.0 guest->outside icmp (guest0 192.168.122.2 -> outside 198.51.100.7"
            ),
            "{message}"
        );
        assert!(
            message.contains("expected: delivered from 198.51.100.254 (nat: outbound allowed"),
            "{message}"
        );
        assert!(
            message.contains("actual: delivered via vnup0: 192.168.122.2 → 198.51.100.7"),
            "{message}"
        );
        assert!(
            message.contains("  path:\n    trace from virbr0 192.168.122.2 to 198.51.100.7 icmp"),
            "{message}"
        );
        assert!(message.contains("postrouting"), "{message}");
    }
}
