//! The real side of `traffic` can fail too (issue 16 item 4): with the
//! test-only mutation `virtnet_core::rules::sabotage::drop_masquerade`
//! (no masquerade/SNAT rules), a guest of `nat-default` reaches the outside
//! with its own address, and `traffic:bare` on the kernel (iptables
//! backend; real packets through the lab) must fail naming the flow, the
//! expected and the kernel's outcome. Without the mutation it passes.
//! The switch is process-wide: this binary holds only this test. Prints
//! "skipped: <why>" without root or the tools.

use virtnet_conformance::host::{RealFactory, REAL_TOOLS};
use virtnet_conformance::scenario::TrafficVariant;
use virtnet_conformance::{golden_root, load_cases, run_scenario, Op, Scenario, Verdict};
use virtnet_core::firewall::Backend;
use virtnet_core::rules::sabotage;
use virtnet_testkit::lab::LAB_TOOLS;

#[test]
fn dropping_the_masquerade_rules_makes_real_traffic_fail() {
    let mut tools: Vec<&str> = REAL_TOOLS.iter().map(|(t, _)| *t).collect();
    tools.extend_from_slice(LAB_TOOLS);
    if let Some(why) = virtnet_testkit::cannot_run(&tools) {
        virtnet_testkit::skip(&why);
        return;
    }
    let factory = RealFactory::new(None).unwrap();
    let golden = golden_root();
    let cases = load_cases(&golden).unwrap();
    let c = cases.iter().find(|c| c.name == "nat-default").unwrap();
    let sc = Scenario {
        case: "nat-default".into(),
        backend: Backend::Iptables,
        layout: virtnet_core::rules::batched::Layout::Libvirt,
        op: Op::Traffic(TrafficVariant::Bare),
    };
    // On a thread of its own: the scenario moves it into fresh namespaces.
    let run = |on: bool| {
        std::thread::scope(|s| {
            s.spawn(|| {
                sabotage::drop_masquerade(on);
                let v = run_scenario(&factory, &golden, c, &sc).verdict;
                sabotage::drop_masquerade(false);
                v
            })
            .join()
            .unwrap()
        })
    };
    assert_eq!(run(false), Verdict::Pass, "control");
    match run(true) {
        Verdict::Fail { message, .. } => {
            println!("{message}");
            assert!(message.contains("guest->outside"), "{message}");
            assert!(
                message.contains("expected: delivered from 198.51.100.254"),
                "{message}"
            );
            assert!(message.contains("actual (kernel)"), "{message}");
        }
        v => panic!("the mutation went unnoticed on the kernel: {v:?}"),
    }
}
