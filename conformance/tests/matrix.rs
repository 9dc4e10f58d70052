//! The scenario bodies on the fake host: a slice of the matrix passes, and
//! the checks catch a driver that leaks rules or touches foreign rules
//! (mutant hosts). Reports are well-formed and link failures to diffs.

use std::sync::Arc;

use virtnet_conformance::host::{
    DriverTools, FakeFactory, HostError, HostFactory, HostKind, Snapshot, TestHost,
};
use virtnet_conformance::{
    golden_root, load_cases, report, run_matrix, scenarios, MatrixOptions, Outcome, Verdict,
};
use virtnet_runner::{Cmd, Output, RunError, Runner};

fn run(factory: &dyn HostFactory, filters: &[&str]) -> Vec<Outcome> {
    let g = golden_root();
    let cases = load_cases(&g).unwrap();
    let opts = MatrixOptions {
        filters: filters.iter().map(|s| s.to_string()).collect(),
        jobs: 2,
        ..Default::default()
    };
    let sc = scenarios(&g, &cases, &opts);
    assert!(!sc.is_empty(), "{filters:?}");
    run_matrix(
        factory,
        &g,
        &cases,
        &sc,
        opts.jobs,
        &opts.scenario,
        &|_, _, _| {},
    )
}

fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| match &o.verdict {
            Verdict::Fail { message, diff } => {
                Some(format!("{}: {message}\n{diff}", o.scenario.id()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn nat_default_and_an_error_case_pass_every_operation() {
    let out = run(
        &FakeFactory::default(),
        &["nat-default/", "nat-port-range-equal/"],
    );
    let f = failures(&out);
    assert!(f.is_empty(), "{}", f.join("\n"));
    // nat-default: 8 operations per backend (2 libvirt upgrade columns with
    // one source each per backend); the error case: start + fail-each.
    let ops: Vec<String> = out.iter().map(|o| o.scenario.id()).collect();
    assert!(
        ops.contains(&"nat-default/nftables/upgrade:libvirt-9.0.0/iptables".to_string()),
        "{ops:?}"
    );
    assert!(
        ops.contains(&"nat-port-range-equal/iptables/fail-each".to_string()),
        "{ops:?}"
    );
    assert!(
        !ops.contains(&"nat-port-range-equal/iptables/destroy".to_string()),
        "{ops:?}"
    );
    // fail-each / crash-each really iterate over every command.
    let fe = out
        .iter()
        .find(|o| o.scenario.id() == "nat-default/iptables/fail-each")
        .unwrap();
    assert!(fe.steps > 40, "{}", fe.steps);
}

/// net-update: every case that serves DHCP on IPv4 gets the `update`
/// operation, and it passes with both backends.
#[test]
fn every_dhcp_case_passes_update() {
    let out = run(&FakeFactory::default(), &["/update"]);
    let f = failures(&out);
    assert!(f.is_empty(), "{}", f.join("\n"));
    let ids: Vec<String> = out.iter().map(|o| o.scenario.id()).collect();
    assert!(
        ids.contains(&"nat-default/iptables/update".to_string()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"nat-default/nftables/update".to_string()),
        "{ids:?}"
    );
    // A network without DHCP has no update operation.
    assert!(
        !ids.iter().any(|i| i.starts_with("nat-no-dhcp/")),
        "{ids:?}"
    );
    assert!(out.len() >= 10, "{ids:?}");
}

#[test]
fn fake_without_act_csum_reports_expected_failures_like_the_real_kernel() {
    let out = run(
        &FakeFactory::new(false),
        &[
            "nat-default/nftables/start",
            "open/nftables/start",
            "nat-default/iptables/start",
        ],
    );
    let f = failures(&out);
    assert!(f.is_empty(), "{}", f.join("\n"));
    let v = |id: &str| {
        out.iter()
            .find(|o| o.scenario.id() == id)
            .map(|o| o.verdict.clone())
    };
    assert!(matches!(
        v("nat-default/nftables/start"),
        Some(Verdict::Xfail { .. })
    ));
    // No DHCP: no csum filter, the nftables start works without act_csum.
    assert_eq!(v("open/nftables/start"), Some(Verdict::Pass));
    assert_eq!(v("nat-default/iptables/start"), Some(Verdict::Pass));
}

/// A host whose runner lies: `mutate` may swallow a command (answer
/// success without running it) or run extra commands.
struct Mutant {
    inner: FakeFactory,
    mutate: fn(&dyn Runner, &Cmd) -> Option<Output>,
}

struct MutantHost {
    inner: Box<dyn TestHost>,
    mutate: fn(&dyn Runner, &Cmd) -> Option<Output>,
}

struct MutantRunner {
    inner: Arc<dyn Runner>,
    mutate: fn(&dyn Runner, &Cmd) -> Option<Output>,
}

impl Runner for MutantRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        match (self.mutate)(&*self.inner, cmd) {
            Some(o) => Ok(o),
            None => self.inner.run(cmd),
        }
    }
}

impl TestHost for MutantHost {
    fn runner(&self) -> Arc<dyn Runner> {
        Arc::new(MutantRunner {
            inner: self.inner.runner(),
            mutate: self.mutate,
        })
    }
    fn snapshot(&self) -> Result<Snapshot, HostError> {
        self.inner.snapshot()
    }
}

impl HostFactory for Mutant {
    fn kind(&self) -> HostKind {
        HostKind::Fake
    }
    fn has_act_csum(&self) -> bool {
        true
    }
    fn fresh(&self) -> Result<Box<dyn TestHost>, HostError> {
        Ok(Box::new(MutantHost {
            inner: self.inner.fresh()?,
            mutate: self.mutate,
        }))
    }
    fn driver_tools(&self) -> DriverTools {
        self.inner.driver_tools()
    }
}

/// Deleting a rule "succeeds" without deleting it.
fn swallow_deletes(_: &dyn Runner, cmd: &Cmd) -> Option<Output> {
    let a = &cmd.argv;
    let del = a.iter().any(|x| x == "--delete")
        || (a.iter().any(|x| x == "delete") && a.iter().any(|x| x == "rule"));
    del.then(|| Output::ok(""))
}

/// The driver's creation of a network bridge (`ip link add name virbrN
/// ...`) also deletes one of Docker's rules.
fn touch_foreign(r: &dyn Runner, cmd: &Cmd) -> Option<Output> {
    let a = &cmd.argv;
    if a.len() > 4 && a[..4] == ["ip", "link", "add", "name"] && a[4].starts_with("virbr") {
        let _ = r.run(&Cmd::new([
            "iptables",
            "-w",
            "-t",
            "filter",
            "-D",
            "DOCKER-USER",
            "-j",
            "RETURN",
        ]));
    }
    None
}

#[test]
fn a_driver_that_leaks_rules_fails_destroy_switch_and_upgrade() {
    let m = Mutant {
        inner: FakeFactory::default(),
        mutate: swallow_deletes,
    };
    let out = run(
        &m,
        &[
            "nat-default/iptables/destroy",
            "nat-default/nftables/switch",
            "nat-default/iptables/upgrade:libvirt-11.3.0/nftables",
            "nat-default/iptables/start",
        ],
    );
    let v = |id: &str| {
        out.iter()
            .find(|o| o.scenario.id() == id)
            .map(|o| o.verdict.clone())
            .unwrap()
    };
    assert_eq!(v("nat-default/iptables/start"), Verdict::Pass);
    for id in [
        "nat-default/iptables/destroy",
        "nat-default/nftables/switch",
        "nat-default/iptables/upgrade:libvirt-11.3.0/nftables",
    ] {
        match v(id) {
            Verdict::Fail { diff, .. } => assert!(diff.contains("virbr0"), "{id}: {diff}"),
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn a_driver_that_touches_foreign_rules_fails_start() {
    let m = Mutant {
        inner: FakeFactory::default(),
        mutate: touch_foreign,
    };
    let out = run(
        &m,
        &["nat-default/iptables/start", "nat-default/iptables/destroy"],
    );
    for o in &out {
        match &o.verdict {
            Verdict::Fail { diff, .. } => {
                assert!(diff.contains("DOCKER-USER"), "{}: {diff}", o.scenario.id())
            }
            other => panic!("{}: {other:?}", o.scenario.id()),
        }
    }
}

#[test]
fn reports_count_and_link_failures() {
    let m = Mutant {
        inner: FakeFactory::default(),
        mutate: swallow_deletes,
    };
    let out = run(
        &m,
        &["isolated/iptables/start", "isolated/iptables/destroy"],
    );
    let t = report::totals(&out);
    assert_eq!((t.passed, t.failed, t.xfailed), (1, 1, 0));
    assert_eq!(report::final_line(&t), "1 passed, 1 failed");
    let j = report::junit(&out, "fake");
    assert!(j.contains("tests=\"2\" failures=\"1\""), "{j}");
    assert_eq!(j.matches("<testcase ").count(), 2);
    assert!(j.contains("<failure message="));
    let md = report::markdown(&out, "fake");
    assert!(
        md.contains("[**FAIL**](#isolated-iptables-destroy)"),
        "{md}"
    );
    assert!(
        md.contains("<a id=\"isolated-iptables-destroy\"></a>"),
        "{md}"
    );
    let html = report::html(&out, "fake");
    assert!(
        html.contains("href=\"#isolated-iptables-destroy\"")
            && html.contains("id=\"isolated-iptables-destroy\"")
    );
    let js: serde_json::Value = serde_json::from_str(&report::json(&out, "fake")).unwrap();
    assert_eq!(js["failed"], 1);
    assert_eq!(js["scenarios"].as_array().unwrap().len(), 2);
    let table = report::summary_table(&out);
    assert!(
        table.contains("FAILED isolated/iptables/destroy"),
        "{table}"
    );
}

/// The upgrade hook with a frozen release: a temporary golden tree whose
/// `releases/0.0.1/` is a copy of today's `unreleased/` for two cases.
#[test]
fn upgrade_from_a_frozen_release_passes_and_renumbers_nft_handles() {
    let real = golden_root();
    let tmp = tempfile::tempdir().unwrap();
    let g = tmp.path();
    std::os::unix::fs::symlink(real.join("cases"), g.join("cases")).unwrap();
    std::os::unix::fs::symlink(real.join("upstream"), g.join("upstream")).unwrap();
    std::fs::create_dir_all(g.join("releases")).unwrap();
    std::os::unix::fs::symlink(
        real.join("releases/unreleased"),
        g.join("releases/unreleased"),
    )
    .unwrap();
    for case in ["nat-default", "route-default"] {
        let to = g.join("releases/0.0.1").join(case);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(real.join("releases/unreleased").join(case)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    let srcs: Vec<String> = virtnet_conformance::upgrade_sources(g, "nat-default")
        .iter()
        .map(|s| s.label())
        .collect();
    // Both layouts of the frozen release are upgrade sources.
    for want in [
        "virtnet-0.0.1/nftables",
        "virtnet-0.0.1/iptables",
        "virtnet-0.0.1/nftables-batched",
        "virtnet-0.0.1/iptables-batched",
    ] {
        assert!(srcs.contains(&want.to_string()), "{srcs:?}");
    }
    let cases = load_cases(g).unwrap();
    let opts = MatrixOptions {
        // `/upgrade:` selects the upgrade operation, not traffic:upgrade:.
        filters: vec!["/upgrade:virtnet-0.0.1".into()],
        jobs: 2,
        ..Default::default()
    };
    let sc = scenarios(g, &cases, &opts);
    // 2 cases x 2 backends x 2 layouts configured x 2 source backends x
    // 2 source layouts (a source of the other layout: a layout switch).
    assert_eq!(
        sc.len(),
        32,
        "{:?}",
        sc.iter().map(|s| s.id()).collect::<Vec<_>>()
    );
    let out = run_matrix(
        &FakeFactory::default(),
        g,
        &cases,
        &sc,
        2,
        &opts.scenario,
        &|_, _, _| {},
    );
    let f = failures(&out);
    assert!(f.is_empty(), "{}", f.join("\n"));
}
