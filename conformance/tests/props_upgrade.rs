//! The upgrade check can fail: a release state whose status file does not
//! account for a rule, or whose stream left an extra rule, is caught.
//! (`cargo xtask upgrade-check` runs the real matrix; this test runs a
//! handful of release states to keep the default test run fast.)

use std::path::Path;

use virtnet_conformance::checks::Stop;
use virtnet_conformance::upgrade::{self, ReleaseState};
use virtnet_conformance::FakeFactory;
use virtnet_core::firewall::Backend;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn state(release: &str, case: &str, backend: Backend) -> ReleaseState {
    let all = if release.starts_with("libvirt-") {
        upgrade::load_libvirt(root(), release).unwrap()
    } else {
        upgrade::load_ours(root(), release).unwrap()
    };
    all.into_iter()
        .find(|s| {
            s.case == case
                && s.backend == backend
                && s.layout == virtnet_core::rules::batched::Layout::Libvirt
        })
        .unwrap_or_else(|| panic!("{release} {case} {backend}"))
}

/// The upgrade check on the fake host; `Err` is its message and diff.
fn check(s: &ReleaseState, to: Backend) -> Result<(), String> {
    match upgrade::check(&FakeFactory::default(), s, to) {
        Ok(()) => Ok(()),
        Err(Stop::Fail(f)) => Err(format!("{}\n{}", f.message, f.diff)),
        Err(Stop::Xfail(reason)) => Err(format!("unexpected expected failure: {reason}")),
    }
}

#[test]
fn untouched_release_states_pass() {
    for (release, case) in [
        ("unreleased", "nat-ipv6"),
        ("libvirt-11.3.0", "nat-ipv6"),
        ("libvirt-9.0.0", "nat-default"),
    ] {
        for from in [Backend::Iptables, Backend::Nftables] {
            if release == "libvirt-9.0.0" && from == Backend::Nftables {
                continue;
            }
            let s = state(release, case, from);
            for to in [Backend::Iptables, Backend::Nftables] {
                check(&s, to).unwrap_or_else(|e| panic!("{release} {case} {from}->{to}: {e}"));
            }
        }
    }
}

#[test]
fn a_removal_plan_that_misses_a_rule_is_caught() {
    for from in [Backend::Iptables, Backend::Nftables] {
        let mut s = state("libvirt-11.3.0", "nat-default", from);
        // Drop the first removal action of the saved plan.
        let start = s.status.find("<action ").unwrap();
        let end = start + s.status[start..].find("</action>").unwrap() + "</action>".len();
        s.status.replace_range(start..end, "");
        for to in [Backend::Iptables, Backend::Nftables] {
            let e = check(&s, to).expect_err("tampered plan passed");
            assert!(
                e.contains("differs from a fresh start") || e.contains("after upgrade"),
                "{e}"
            );
        }
    }
}

#[test]
fn a_rule_the_status_does_not_know_is_caught() {
    let mut s = state("unreleased", "nat-default", Backend::Iptables);
    s.stream.push(virtnet_runner::Cmd::new(
        "iptables -w --table filter --insert LIBVIRT_FWO --in-interface virbr0 --jump ACCEPT"
            .split(' '),
    ));
    for to in [Backend::Iptables, Backend::Nftables] {
        let e = check(&s, to).expect_err("extra rule passed");
        assert!(e.contains("+-A LIBVIRT_FWO -i virbr0 -j ACCEPT"), "{e}");
    }
}
