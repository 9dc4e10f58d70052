//! The host-generic upgrade check (`cargo xtask upgrade-check --real`):
//! the same body on the fake host for every release state (fast), and on
//! the real kernel for one release state in fresh network namespaces
//! ("skipped: <why>" without root or the tools).

use std::path::Path;

use virtnet_conformance::host::{RealFactory, REAL_TOOLS};
use virtnet_conformance::upgrade::{self, run_on, PlannedCheck};
use virtnet_conformance::{FakeFactory, HostFactory, Verdict};
use virtnet_core::firewall::Backend;
use virtnet_core::rules::batched::Layout;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

const BOTH: [Backend; 2] = [Backend::Iptables, Backend::Nftables];

fn failures(out: &[upgrade::CheckOutcome]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match &o.verdict {
            Verdict::Fail { message, diff } => Some(format!("{}: {message}\n{diff}", o.id)),
            _ => None,
        })
        .collect()
}

#[test]
fn every_release_state_passes_the_host_generic_check_on_the_fake() {
    let states = upgrade::all_states(root()).unwrap();
    let checks = upgrade::plan(&states, &BOTH, &[], 1);
    assert_eq!(checks.len(), 2 * states.len());
    let out = run_on(&FakeFactory::default(), &checks, 2, &|_, _, _| {});
    assert_eq!(out.len(), checks.len());
    let f = failures(&out);
    assert!(f.is_empty(), "{} failed:\n{}", f.len(), f.join("\n\n"));
    assert!(out.iter().all(|o| o.verdict == Verdict::Pass));
}

#[test]
fn on_a_kernel_without_act_csum_nftables_is_an_expected_failure() {
    let states = upgrade::all_states(root()).unwrap();
    let checks = upgrade::plan(&states, &BOTH, &["libvirt-11.3.0/nat-default/".into()], 1);
    assert_eq!(
        checks.len(),
        4,
        "{:?}",
        checks.iter().map(PlannedCheck::id).collect::<Vec<_>>()
    );
    let fake = FakeFactory::new(false);
    let out = run_on(&fake, &checks, 1, &|_, _, _| {});
    for o in &out {
        let xfail = matches!(o.verdict, Verdict::Xfail { .. });
        // The old nftables state has the csum filter; a take-over by
        // nftables adds it.
        let expect = o.id.contains("nftables");
        assert_eq!(xfail, expect, "{}: {:?}", o.id, o.verdict);
    }
}

#[test]
fn a_status_file_that_misses_a_rule_is_caught_on_any_host() {
    let states = upgrade::all_states(root()).unwrap();
    let mut s = states
        .into_iter()
        .find(|s| {
            s.release == "libvirt-11.3.0"
                && s.case == "nat-default"
                && s.backend == Backend::Iptables
        })
        .unwrap();
    // Lose a rule of the stream: the host then lacks what the status file
    // accounts for, and the take-over's removal fails or differs.
    s.stream
        .retain(|a| !a.argv.iter().any(|w| w == "LIBVIRT_FWO"));
    let out = upgrade::check_on(&FakeFactory::default(), &s, Backend::Iptables);
    assert!(
        matches!(out.verdict, Verdict::Fail { .. }),
        "{:?}",
        out.verdict
    );
}

fn skip_reason() -> Option<String> {
    let tools: Vec<&str> = REAL_TOOLS.iter().map(|(tool, _)| *tool).collect();
    virtnet_testkit::cannot_run(&tools)
}

#[test]
fn one_release_state_on_the_real_kernel() {
    if let Some(why) = skip_reason() {
        virtnet_testkit::skip(&why);
        return;
    }
    let outer = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let factory = RealFactory::new(None).unwrap();
    let states = upgrade::all_states(root()).unwrap();
    let checks = upgrade::plan(&states, &BOTH, &["libvirt-9.0.0/nat-default/".into()], 1);
    assert_eq!(
        checks.len(),
        2,
        "{:?}",
        checks.iter().map(PlannedCheck::id).collect::<Vec<_>>()
    );
    let out = run_on(&factory, &checks, 2, &|_, _, _| {});
    let f = failures(&out);
    assert!(f.is_empty(), "{}", f.join("\n\n"));
    for o in &out {
        // iptables -> iptables passes anywhere; -> nftables needs act_csum.
        let ok = o.verdict == Verdict::Pass
            || (!factory.has_act_csum()
                && o.id.ends_with("->nftables")
                && matches!(o.verdict, Verdict::Xfail { .. }));
        assert!(ok, "{}: {:?}", o.id, o.verdict);
    }
    // The test thread's own namespace was never touched.
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        outer
    );
}

#[test]
fn a_stride_keeps_every_kind_of_take_over() {
    let states = upgrade::all_states(root()).unwrap();
    let all = upgrade::plan(&states, &BOTH, &[], 1);
    let some = upgrade::plan(&states, &BOTH, &[], 2);
    assert!(
        some.len() * 3 > all.len() && some.len() * 3 < all.len() * 2,
        "{} of {}",
        some.len(),
        all.len()
    );
    for kind in [
        "iptables->iptables",
        "iptables->nftables",
        "nftables->iptables",
        "nftables->nftables",
    ] {
        assert!(some.iter().any(|c| c.id().ends_with(kind)), "no {kind}");
    }
    for release in ["unreleased", "libvirt-9.0.0", "libvirt-11.3.0"] {
        assert!(
            some.iter().any(|c| c.state.release == release),
            "no {release}"
        );
    }
    // Deterministic.
    let again: Vec<String> = upgrade::plan(&states, &BOTH, &[], 2)
        .iter()
        .map(|c| c.id())
        .collect();
    assert_eq!(again, some.iter().map(|c| c.id()).collect::<Vec<_>>());
}

/// Every release state (both layouts of ours, the libvirt captures) taken
/// over into the batched layout: libvirt 9.0.0 / 11.3.0 -> batched and
/// libvirt layout -> batched (a layout switch: the saved plan removes what
/// the old layout added, then the batched layout adds its rules).
#[test]
fn every_release_state_is_taken_over_into_the_batched_layout_on_the_fake() {
    let states = upgrade::all_states(root()).unwrap();
    assert!(states.iter().any(|s| s.layout == Layout::Batched));
    let checks = upgrade::plan_in(&states, &BOTH, &[Layout::Batched], &[], 1);
    assert_eq!(checks.len(), 2 * states.len());
    for kind in [
        "libvirt-9.0.0/nat-default/iptables->iptables-batched",
        "libvirt-11.3.0/nat-default/nftables->nftables-batched",
        "unreleased/nat-default/nftables->iptables-batched",
        "unreleased/nat-default/iptables-batched->nftables-batched",
    ] {
        assert!(checks.iter().any(|c| c.id() == kind), "no {kind}");
    }
    let out = run_on(&FakeFactory::default(), &checks, 2, &|_, _, _| {});
    let f = failures(&out);
    assert!(f.is_empty(), "{} failed:\n{}", f.len(), f.join("\n\n"));
    assert!(out.iter().all(|o| o.verdict == Verdict::Pass));
}

/// A batched release state whose batch added a chain and rule its saved
/// plan does not account for: after the take-over (a layout switch to libvirt's, or
/// a reload in the batched layout) the rule is left behind, which a fresh
/// start does not have — caught.
#[test]
fn a_batched_state_with_a_rule_the_status_does_not_know_is_caught() {
    let states = upgrade::all_states(root()).unwrap();
    let mut s = states
        .into_iter()
        .find(|s| {
            s.release == "unreleased"
                && s.case == "nat-default"
                && s.backend == Backend::Nftables
                && s.layout == Layout::Batched
        })
        .unwrap();
    let batch = s
        .stream
        .iter_mut()
        .find(|c| c.stdin.is_some())
        .expect("a batch");
    let mut input = batch.stdin.take().unwrap();
    input.push_str("add chain ip virtnet_batched stray\n");
    input.push_str("add rule ip virtnet_batched stray iifname eth9 counter accept\n");
    batch.stdin = Some(input);
    for to in [Layout::Libvirt, Layout::Batched] {
        let out = upgrade::check_on_in(&FakeFactory::default(), &s, Backend::Nftables, to);
        assert!(
            matches!(out.verdict, Verdict::Fail { .. }),
            "{}: {:?}",
            out.id,
            out.verdict
        );
    }
}

/// The generic handling of any frozen release: a temporary repository
/// root whose `golden/releases/0.0.1/` is a copy of today's
/// `unreleased/` for one case (both layouts' files): its four release
/// states (two backends x two layouts) are found and taken over by the
/// current driver in both layouts and with both backends. This is what
/// `cargo xtask upgrade-check` does once `golden/releases/0.1.0/` exists.
#[test]
fn a_frozen_release_of_both_layouts_is_taken_over_generically() {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("golden/releases/0.0.1/nat-default");
    std::fs::create_dir_all(&to).unwrap();
    let from = root().join("golden/releases/unreleased/nat-default");
    for f in std::fs::read_dir(&from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
    assert_eq!(
        upgrade::our_releases(tmp.path()).unwrap(),
        vec!["0.0.1".to_string()]
    );
    let states = upgrade::load_ours(tmp.path(), "0.0.1").unwrap();
    let mut kinds: Vec<String> = states
        .iter()
        .map(|s| format!("{}/{}", s.backend, s.layout))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "iptables/batched",
            "iptables/libvirt",
            "nftables/batched",
            "nftables/libvirt"
        ]
    );
    let checks = upgrade::plan_in(&states, &BOTH, &Layout::ALL, &[], 1);
    assert_eq!(checks.len(), 16);
    let out = run_on(&FakeFactory::default(), &checks, 2, &|_, _, _| {});
    let f = failures(&out);
    assert!(f.is_empty(), "{} failed:\n{}", f.len(), f.join("\n\n"));
    assert!(out.iter().all(|o| o.verdict == Verdict::Pass));
}
