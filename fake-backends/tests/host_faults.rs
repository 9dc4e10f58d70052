//! FakeHost behaviour: dispatch, recording, fault plans applied around it
//! (`virtnet_testkit::FaultRunner`), crash/recover, state snapshots and
//! state files.

use std::sync::Arc;

use virtnet_fake::{assert_state_eq, FakeHost, HostState, Outcome, NOT_SIMULATED_STATUS};
use virtnet_runner::{Cmd, RunError, Runner};
use virtnet_testkit::{Applied, CmdMatcher, FaultPlan, FaultRunner};

fn ok(host: &dyn Runner, argv: &[&str]) {
    let out = host.run_argv(argv).unwrap();
    assert!(out.success(), "{argv:?}: {out:?}");
}

/// A fake host and a fault runner around it.
fn faulty(plan: FaultPlan) -> (Arc<FakeHost>, FaultRunner) {
    let host = Arc::new(FakeHost::new());
    let faults = FaultRunner::new(host.clone()).with_plan(plan);
    (host, faults)
}

#[test]
fn unknown_commands_fail_loudly() {
    let host = FakeHost::new();
    let out = host.run_argv(&["/usr/bin/frobnicate", "--all"]).unwrap();
    assert_eq!(out.status, NOT_SIMULATED_STATUS);
    assert_eq!(
        out.stderr,
        "virtnet-fake: command not simulated: /usr/bin/frobnicate --all\n"
    );
    let out = host.run_argv(&["ebtables", "-L"]).unwrap();
    assert_eq!(out.status, NOT_SIMULATED_STATUS);
    assert_eq!(
        host.run(&Cmd {
            argv: vec![].into(),
            stdin: None,
            env: Vec::new()
        }),
        Err(RunError::Empty)
    );
}

#[test]
fn records_every_command_with_its_result() {
    let host = FakeHost::new();
    ok(&host, &["iptables", "-w", "-N", "FOO"]);
    let _ = host.run_argv(&["iptables", "-w", "-N", "FOO"]).unwrap();
    let recs = host.records();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].index, 2);
    match &recs[1].outcome {
        Outcome::Ran { output } => assert_eq!(output.status, 1),
        o => panic!("{o:?}"),
    }
    assert_eq!(
        host.log(),
        "iptables -w -N FOO\niptables -w -N FOO\n# rc=1\n#! iptables: Chain already exists.\n"
    );
    assert_eq!(
        host.golden(),
        "iptables \\\n-w \\\n-N FOO\niptables \\\n-w \\\n-N FOO\n"
    );
    let json = serde_json::to_string(&recs).unwrap();
    let back: Vec<virtnet_fake::Record> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, recs);
}

#[test]
fn fail_nth_does_not_run_the_command() {
    let (host, faults) = faulty(FaultPlan::none().fail_nth(2, 4, "boom\n"));
    ok(&faults, &["iptables", "-w", "-N", "A"]);
    let before = host.state();
    let out = faults.run_argv(&["iptables", "-w", "-N", "B"]).unwrap();
    assert_eq!((out.status, out.stderr.as_str()), (4, "boom\n"));
    assert_state_eq(&before, &host.state());
    ok(&faults, &["iptables", "-w", "-N", "B"]);
    assert!(matches!(faults.log()[1].applied, Applied::Injected(_)));
    assert_eq!(faults.injected().unwrap(), ["iptables", "-w", "-N", "B"]);
    // The host never saw the injected command.
    assert_eq!(host.records().len(), 2);
}

#[test]
fn fail_matching_respects_times() {
    let m = CmdMatcher::program("iptables").containing("--insert LIBVIRT");
    let (_host, faults) = faulty(FaultPlan::none().fail_matching(m, 1, "nope\n", Some(1)));
    ok(&faults, &["iptables", "-w", "--new-chain", "LIBVIRT_INP"]);
    ok(&faults, &["ip6tables", "-w", "--new-chain", "LIBVIRT_INP"]);
    let out = faults
        .run_argv(&["iptables", "-w", "--insert", "LIBVIRT_INP", "-j", "ACCEPT"])
        .unwrap();
    assert_eq!(out.status, 1);
    ok(
        &faults,
        &["iptables", "-w", "--insert", "LIBVIRT_INP", "-j", "ACCEPT"],
    );
}

#[test]
fn crash_then_recover_keeps_state() {
    let (host, faults) = faulty(FaultPlan::none().crash_after(1));
    ok(&faults, &["iptables", "-w", "-N", "A"]);
    let snap = host.state();
    for _ in 0..2 {
        let err = faults.run_argv(&["iptables", "-w", "-N", "B"]).unwrap_err();
        assert!(matches!(err, RunError::Crashed { .. }), "{err:?}");
    }
    assert!(faults.is_crashed());
    assert_state_eq(&snap, &host.state());
    faults.recover();
    assert!(!faults.is_crashed());
    ok(&faults, &["iptables", "-w", "-N", "B"]);
    assert_eq!(faults.command_count(), 4);
    faults.reset_counter();
    assert_eq!(faults.command_count(), 0);
}

#[test]
fn fault_plans_print_and_replay() {
    let plan = FaultPlan::none()
        .fail_nth(3, 1, "x")
        .fail_matching(CmdMatcher::program("tc"), 2, "y", None)
        .crash_after(7);
    let json = plan.to_json();
    assert_eq!(FaultPlan::from_json(&json).unwrap(), plan);
    let text = plan.to_string();
    assert!(text.contains("crash after 7 commands"), "{text}");
    assert!(text.contains("fail command #3 with status 1"), "{text}");
    assert!(FaultPlan::from_json("{\"faults\":[{\"kind\":\"bogus\"}]}").is_err());
}

#[test]
fn state_file_round_trip_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.json");
    let host = FakeHost::new();
    ok(&host, &["ip", "link", "add", "virbr0", "type", "bridge"]);
    ok(&host, &["iptables", "-w", "-t", "nat", "-N", "LIBVIRT_PRT"]);
    ok(&host, &["sysctl", "-w", "net.ipv4.ip_forward=1"]);
    host.save(&path).unwrap();
    let again = FakeHost::load(&path).unwrap();
    assert_state_eq(&host.state(), &again.state());
    ok(&again, &["ip", "link", "set", "virbr0", "up"]);
    let d = host.state().diff(&again.state());
    assert!(d.contains("-virbr0") && d.contains("+virbr0"), "{d}");
    assert_eq!(host.state().diff(&host.state()), "");
    std::fs::write(&path, "{\"virtnet_fake_state\": 99}").unwrap();
    let err = FakeHost::load(&path).unwrap_err().to_string();
    assert!(err.contains("format version 99"), "{err}");
    std::fs::write(&path, "garbage").unwrap();
    assert!(FakeHost::load(&path).is_err());
    let fresh = FakeHost::load_or_new(&dir.path().join("absent.json")).unwrap();
    assert_eq!(fresh.state(), HostState::new());
}

#[test]
fn host_is_shareable_between_threads() {
    let host = std::sync::Arc::new(FakeHost::new());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let h = host.clone();
            std::thread::spawn(move || {
                let name = format!("C{i}");
                h.run_argv(&["iptables", "-w", "-N", &name]).unwrap().status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 0);
    }
    assert_eq!(host.command_count(), 4);
}

#[test]
fn tc_csum_switch() {
    let host = FakeHost::new();
    ok(&host, &["ip", "link", "add", "virbr0", "type", "bridge"]);
    ok(
        &host,
        &[
            "tc", "qdisc", "add", "dev", "virbr0", "root", "handle", "1:", "htb", "default", "2",
        ],
    );
    let add = [
        "tc", "filter", "add", "dev", "virbr0", "prio", "2", "protocol", "ip", "parent", "1:",
        "u32", "match", "ip", "dport", "68", "ffff", "action", "csum", "ip", "and", "udp",
    ];
    host.set_tc_csum_fails(true);
    let out = host.run_argv(&add).unwrap();
    assert_eq!(out.status, 2);
    assert_eq!(
        out.stderr,
        "Error: Failed to load TC action module.\nWe have an error talking to the kernel\n"
    );
    host.set_tc_csum_fails(false);
    ok(&host, &add);
    let out = host
        .run_argv(&["tc", "qdisc", "show", "dev", "virbr0", "handle", "1:"])
        .unwrap();
    assert_eq!(
        out.stdout,
        "qdisc htb 1: root refcnt 2 r2q 10 default 0x2 direct_packets_stat 0 direct_qlen 1000\n"
    );
    let mut del = add;
    del[1] = "filter";
    del[2] = "del";
    ok(&host, &del);
    let out = host.run_argv(&del).unwrap();
    assert_eq!(out.status, 2);
    // Deleting the bridge drops its qdisc.
    ok(&host, &["ip", "link", "del", "virbr0"]);
    assert!(host.state().tc.qdiscs.is_empty());
}

#[test]
fn file_backed_hosts_share_state_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.json");
    let a = virtnet_fake::FileBackedHost::open(&path).unwrap();
    assert!(path.exists());
    let b = virtnet_fake::FileBackedHost::open(&path).unwrap();
    assert!(a
        .run_argv(&["iptables", "-w", "-N", "FROM_A"])
        .unwrap()
        .success());
    // b re-reads the file before running, so it sees a's chain.
    let out = b.run_argv(&["iptables", "-w", "-N", "FROM_A"]).unwrap();
    assert_eq!(out.stderr, "iptables: Chain already exists.\n");
    assert!(b
        .run_argv(&["ip", "link", "add", "virbr0", "type", "bridge"])
        .unwrap()
        .success());
    assert!(a.reload().unwrap().ip.link("virbr0").is_some());
    std::fs::write(&path, "{").unwrap();
    let err = a.run_argv(&["ip", "link"]).unwrap_err();
    assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
}
