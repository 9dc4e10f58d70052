//! The same scenario bodies on the real kernel: each host is a fresh
//! network namespace of a worker thread (never the test process's own).
//! Prints "skipped: <why>" without root or the tools.

use virtnet_conformance::host::{RealFactory, REAL_TOOLS};
use virtnet_conformance::{
    golden_root, load_cases, run_matrix, scenarios, HostFactory, MatrixOptions, Verdict,
};

fn skip_reason() -> Option<String> {
    let tools: Vec<&str> = REAL_TOOLS.iter().map(|(tool, _)| *tool).collect();
    virtnet_testkit::cannot_run(&tools)
}

#[test]
fn real_host_runs_the_same_scenario_bodies() {
    if let Some(why) = skip_reason() {
        virtnet_testkit::skip(&why);
        return;
    }
    let outer = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let factory = RealFactory::new(None).unwrap();
    let g = golden_root();
    let cases = load_cases(&g).unwrap();
    let opts = MatrixOptions {
        filters: [
            "nat-default/iptables/start",
            "nat-default/iptables/destroy",
            "nat-default/iptables/restart",
            "nat-default/iptables/update",
            "nat-ipv6/iptables/upgrade:libvirt-9.0.0",
            "nat-default/nftables/start",
            "open/nftables/start",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        jobs: 2,
        ..Default::default()
    };
    let sc = scenarios(&g, &cases, &opts);
    assert_eq!(
        sc.len(),
        7,
        "{:?}",
        sc.iter().map(|s| s.id()).collect::<Vec<_>>()
    );
    let out = run_matrix(
        &factory,
        &g,
        &cases,
        &sc,
        opts.jobs,
        &opts.scenario,
        &|_, _, _| {},
    );
    for o in &out {
        println!("{}: {:?}", o.scenario.id(), o.verdict);
        match (&o.verdict, o.scenario.id().as_str()) {
            (Verdict::Pass, _) => {}
            (Verdict::Xfail { reason }, "nat-default/nftables/start")
                if !factory.has_act_csum() =>
            {
                assert!(reason.contains("act_csum"), "{reason}");
            }
            (v, id) => panic!("{id}: {v:?}"),
        }
    }
    // The test's own namespace was never entered by a scenario.
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        outer
    );
}
