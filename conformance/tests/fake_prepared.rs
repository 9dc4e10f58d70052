//! `FakeFactory::fresh_prepared` hands out copies of a host it prepared
//! once per key (the matrix stages a host for every fault point). The
//! speed trick is only sound if a copy is the host that running the
//! preparation again would give: the same state, the same snapshot, and
//! the same answers to every later command.

use std::cell::Cell;

use virtnet_conformance::cases::{expectation, Expectation, UNRELEASED};
use virtnet_conformance::host::HostError;
use virtnet_conformance::{golden_root, kept, FakeFactory, HostFactory, TestHost};
use virtnet_core::firewall::Backend;
use virtnet_fake::seed;
use virtnet_runner::Runner;

fn prepare_foreign(r: &dyn Runner) -> Result<(), HostError> {
    let e = |e: seed::SeedError| HostError::Other(e.to_string());
    seed::seed_docker_iptables(r).map_err(e)?;
    seed::seed_docker_nft(r).map_err(e)?;
    seed::seed_firewalld_nft(r).map_err(e)?;
    r.run_argv_checked(&["ip", "link", "add", "eth0", "type", "bridge"])?;
    r.run_argv_checked(&[
        "ip",
        "link",
        "set",
        "dev",
        "eth0",
        "address",
        "02:00:00:00:00:01",
    ])?;
    Ok(())
}

/// The host `prepare` gives when it really runs, on a fresh host.
fn prepared_afresh(f: &FakeFactory) -> Box<dyn TestHost> {
    let h = f.fresh().unwrap();
    prepare_foreign(&*h.runner()).unwrap();
    h
}

/// Every command of the golden start of `case` with `backend` (after the
/// private chains it needs), on both hosts: the same answers, the same
/// final state.
fn same_answers(a: &dyn TestHost, b: &dyn TestHost, case: &str, backend: Backend) {
    let Expectation::Start { stream, .. } =
        expectation(&golden_root(), UNRELEASED, case, backend).unwrap()
    else {
        panic!("{case}: an error case");
    };
    for h in [a, b] {
        kept::set_up_kept(&*h.runner(), &[backend]).unwrap();
        let r = h.runner();
        r.run_argv_checked(&["ip", "link", "add", "virbr0", "type", "bridge"])
            .unwrap();
    }
    for cmd in &stream {
        let (oa, ob) = (a.runner().run(cmd), b.runner().run(cmd));
        assert_eq!(
            format!("{oa:?}"),
            format!("{ob:?}"),
            "{case}/{backend}: {}",
            cmd.argv.join(" ")
        );
    }
    assert!(a.fake_state().unwrap() == b.fake_state().unwrap());
    assert_eq!(a.snapshot().unwrap(), b.snapshot().unwrap());
}

#[test]
fn a_copy_of_a_prepared_host_is_the_host_preparing_gives() {
    for act_csum in [true, false] {
        let f = FakeFactory::new(act_csum);
        let runs = Cell::new(0);
        let prepare = |r: &dyn Runner| {
            runs.set(runs.get() + 1);
            prepare_foreign(r)
        };
        let (first, snap1) = f.fresh_prepared("foreign", &prepare).unwrap();
        let (copy, snap2) = f.fresh_prepared("foreign", &prepare).unwrap();
        // Prepared once, copied after.
        assert_eq!(runs.get(), 1);
        let afresh = prepared_afresh(&f);
        assert!(copy.fake_state().unwrap() == afresh.fake_state().unwrap());
        assert_eq!(snap2, afresh.snapshot().unwrap());
        assert_eq!(snap1, snap2);
        same_answers(&*copy, &*afresh, "nat-default", Backend::Nftables);
        // The copies are independent: what ran on one is not on the next.
        assert!(first.fake_state().unwrap() != copy.fake_state().unwrap());
        let (again, _) = f.fresh_prepared("foreign", &prepare).unwrap();
        assert!(again.fake_state().unwrap() == afresh_state(&f));
        same_answers(
            &*again,
            &*prepared_afresh(&f),
            "nat-ipv6",
            Backend::Iptables,
        );
        // A csum-less factory's copies lack act_csum too.
        let csum = again.runner().run_argv(&[
            "tc", "filter", "add", "dev", "eth0", "prio", "2", "protocol", "ip", "parent", "1:",
            "u32", "match", "ip", "dport", "68", "ffff", "action", "csum", "ip", "and", "udp",
        ]);
        let fresh_csum = prepared_afresh(&f).runner().run_argv(&[
            "tc", "filter", "add", "dev", "eth0", "prio", "2", "protocol", "ip", "parent", "1:",
            "u32", "match", "ip", "dport", "68", "ffff", "action", "csum", "ip", "and", "udp",
        ]);
        assert_eq!(format!("{csum:?}"), format!("{fresh_csum:?}"));
    }
}

fn afresh_state(f: &FakeFactory) -> virtnet_fake::HostState {
    prepared_afresh(f).fake_state().unwrap()
}

#[test]
fn hosts_are_prepared_per_key() {
    let f = FakeFactory::default();
    let (bare, _) = f.fresh_prepared("bare", &|_| Ok(())).unwrap();
    let (foreign, _) = f.fresh_prepared("foreign", &prepare_foreign).unwrap();
    let (bare2, _) = f.fresh_prepared("bare", &prepare_foreign).unwrap();
    assert!(bare.fake_state().unwrap() == f.fresh().unwrap().fake_state().unwrap());
    assert!(foreign.fake_state().unwrap() == afresh_state(&f));
    // The key decides (callers put everything `prepare` does into it).
    assert!(bare2.fake_state().unwrap() == bare.fake_state().unwrap());
}

#[test]
fn a_failed_preparation_is_not_kept() {
    let f = FakeFactory::default();
    let fails = |r: &dyn Runner| -> Result<(), HostError> {
        r.run_argv_checked(&["ip", "link", "add", "eth0", "type", "bridge"])?;
        Err(HostError::Other("no".into()))
    };
    assert!(f.fresh_prepared("k", &fails).is_err());
    let (h, _) = f.fresh_prepared("k", &|_| Ok(())).unwrap();
    assert!(h.fake_state().unwrap() == f.fresh().unwrap().fake_state().unwrap());
}
