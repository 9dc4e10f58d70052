//! Traffic equivalence of the two firewall layouts (issue 17 item 3) on
//! the fake: for every golden case x backend, with the matrix baseline's
//! foreign rules (Docker, firewalld), without any, and with Docker's
//! FORWARD policy DROP, every flow of the case's flow table is traced after
//! a start in libvirt's layout and after a start in the batched layout, and
//! the traced outcomes (verdict, exit interface, addresses and ports after
//! NAT) must be the same, flow by flow. This compares the layouts with
//! each other, independently of the documented outcomes the matrix's
//! `traffic` operations check each layout against.

use virtnet_conformance::cases::{expectation_in, Expectation, UNRELEASED};
use virtnet_conformance::checks::Stop;
use virtnet_conformance::scenario::{traced_outcomes, Ctx, TrafficVariant};
use virtnet_conformance::{golden_root, load_cases, Case, FakeFactory};
use virtnet_core::firewall::Backend;
use virtnet_core::rules::batched::Layout;

type Outcomes = Vec<(String, String)>;

fn outcomes(case: &Case, backend: Backend, layout: Layout, v: TrafficVariant) -> Outcomes {
    let g = golden_root();
    let factory = FakeFactory::default();
    let ctx = Ctx::new(&factory, &g, case).unwrap().with_layout(layout);
    match traced_outcomes(&ctx, backend, v) {
        Ok(o) => o,
        Err(Stop::Fail(f)) => panic!("{}/{backend}/{layout}/{v:?}: {f:?}", case.name),
        Err(e) => panic!("{}/{backend}/{layout}/{v:?}: {e:?}", case.name),
    }
}

fn differences(a: &Outcomes, b: &Outcomes) -> Vec<String> {
    let mut d: Vec<String> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("{}\n  libvirt: {}\n  batched: {}", x.0, x.1, y.1))
        .collect();
    if a.len() != b.len() {
        d.push(format!("{} flows vs {}", a.len(), b.len()));
    }
    d
}

#[test]
fn both_layouts_give_the_same_traffic_outcomes_for_every_case_and_backend() {
    let g = golden_root();
    let cases = load_cases(&g).unwrap();
    let mut compared = 0usize;
    let mut bad = Vec::new();
    for case in &cases {
        for backend in [Backend::Iptables, Backend::Nftables] {
            let starts = |l| {
                matches!(
                    expectation_in(&g, UNRELEASED, &case.name, backend, l),
                    Ok(Expectation::Start { .. })
                )
            };
            // The same cases start (or fail) in both layouts.
            assert_eq!(
                starts(Layout::Libvirt),
                starts(Layout::Batched),
                "{}/{backend}",
                case.name
            );
            if !starts(Layout::Libvirt) {
                continue;
            }
            for v in [
                TrafficVariant::Baseline,
                TrafficVariant::Bare,
                TrafficVariant::DockerDrop,
            ] {
                let a = outcomes(case, backend, Layout::Libvirt, v);
                let b = outcomes(case, backend, Layout::Batched, v);
                compared += a.len();
                for d in differences(&a, &b) {
                    bad.push(format!("{}/{backend}/{v:?}: {d}", case.name));
                }
            }
        }
    }
    assert!(compared > 1000, "only {compared} flows compared");
    assert!(bad.is_empty(), "{} differ:\n{}", bad.len(), bad.join("\n"));
}
