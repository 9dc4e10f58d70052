//! Behaviour libvirt's unit tests do not cover: auto-rollback derivation,
//! nft `-ae` / handle parsing, the `list` special case, inheritance order,
//! crashes, the none backend, sticky builder errors and the removal plan.

use crate::firewall::apply::rollback_start;
use crate::firewall::parse_nft_handle;
use crate::firewall::recording::{HandleMode, Matcher, RecordingRunner, Reply};
use crate::firewall::{
    full_argv, query_callback, render_stream, Backend, BuildError, Firewall, FirewallError, Layer,
    RenderOptions, RollbackFlags, TransactionFlags,
};
use virtnet_runner::{Output, RunError};

fn stream(runner: &RecordingRunner) -> Vec<String> {
    render_stream(&runner.recorded(), RenderOptions::ONE_LINE)
        .lines()
        .map(String::from)
        .collect()
}

fn args_of(fw: &Firewall, group: usize) -> Vec<Vec<String>> {
    fw.groups()[group]
        .rollbacks()
        .iter()
        .map(|c| c.args().to_vec())
        .collect()
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn iptables_auto_rollback_replaces_every_create_argument() {
    let runner = RecordingRunner::new();
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_cmd(
        Layer::Ipv4,
        [
            "--table",
            "filter",
            "--insert",
            "LIBVIRT_INP",
            "--jump",
            "ACCEPT",
        ],
    );
    fw.add_cmd(Layer::Ipv6, ["-I", "FWD", "--comment", "-A"]);
    fw.add_cmd(Layer::Ethernet, ["-t", "nat", "--append", "PREROUTING"]);
    fw.add_cmd(Layer::Ipv4, ["-A", "X"]);
    fw.add_cmd(
        Layer::Ipv4,
        ["--table", "filter", "--new-chain", "LIBVIRT_INP"],
    );
    fw.add_cmd(Layer::Tc, ["qdisc", "add", "dev", "virbr0"]);
    fw.apply(&runner).expect("apply succeeds");
    assert_eq!(
        stream(&runner),
        [
            "iptables -w --table filter --insert LIBVIRT_INP --jump ACCEPT",
            "ip6tables -w -I FWD --comment -A",
            "ebtables --concurrent -t nat --append PREROUTING",
            "iptables -w -A X",
            "iptables -w --table filter --new-chain LIBVIRT_INP",
            "tc qdisc add dev virbr0",
        ]
    );
    let rb = &fw.groups()[0].rollbacks();
    assert_eq!(rb.len(), 4, "{rb:?}");
    assert_eq!(
        args_of(&fw, 0),
        [
            sv(&[
                "--table",
                "filter",
                "--delete",
                "LIBVIRT_INP",
                "--jump",
                "ACCEPT"
            ]),
            sv(&["--delete", "FWD", "--comment", "--delete"]),
            sv(&["-t", "nat", "--delete", "PREROUTING"]),
            sv(&["--delete", "X"]),
        ]
    );
    assert_eq!(
        rb.iter().map(|c| c.layer()).collect::<Vec<_>>(),
        [Layer::Ipv4, Layer::Ipv6, Layer::Ethernet, Layer::Ipv4]
    );
    assert!(rb.iter().all(|c| c.ignore_errors() && !c.has_callback()));
}

#[test]
fn no_auto_rollback_without_the_flag_or_after_an_ignored_failure() {
    let runner = RecordingRunner::new();
    runner.fail_when(Matcher::contains(["bad"]), 1, "nope");
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::NONE);
    fw.add_cmd(Layer::Ipv4, ["--insert", "A"]);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK | TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd(Layer::Ipv4, ["--insert", "bad"]);
    fw.add_cmd(Layer::Ipv4, ["--insert", "good"]);
    fw.apply(&runner).expect("ignored failure");
    assert!(fw.groups()[0].rollbacks().is_empty());
    assert_eq!(args_of(&fw, 1), [sv(&["--delete", "good"])]);
}

#[test]
fn iptables_failure_rolls_back_inserted_rules_in_insertion_order() {
    let runner = RecordingRunner::new();
    runner.fail_when(
        Matcher::contains(["R3"]),
        1,
        "iptables: No chain/target/match by that name.\n",
    );
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    for r in ["R1", "R2", "R3", "R4"] {
        fw.add_cmd(
            Layer::Ipv4,
            ["--table", "filter", "--insert", "LIBVIRT_FWO", "--jump", r],
        );
    }
    let err = fw.apply(&runner).expect_err("R3 fails");
    assert_eq!(
        err,
        FirewallError::CommandFailed {
            command: "iptables -w --table filter --insert LIBVIRT_FWO --jump R3".into(),
            stderr: "iptables: No chain/target/match by that name.\n".into()
        }
    );
    assert_eq!(
        stream(&runner),
        [
            "iptables -w --table filter --insert LIBVIRT_FWO --jump R1",
            "iptables -w --table filter --insert LIBVIRT_FWO --jump R2",
            "iptables -w --table filter --insert LIBVIRT_FWO --jump R3",
            "iptables -w --table filter --delete LIBVIRT_FWO --jump R1",
            "iptables -w --table filter --delete LIBVIRT_FWO --jump R2",
        ]
    );
}

#[test]
fn nft_ae_is_injected_only_for_creations_in_auto_rollback_groups() {
    let runner = RecordingRunner::with_handles(HandleMode::Counter(10));
    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_transaction(TransactionFlags::NONE);
    fw.add_cmd(Layer::Ipv4, ["add", "table", "ip", "t"]);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_cmd(Layer::Ipv4, ["add", "table", "ip", "libvirt_network"]);
    fw.add_cmd(
        Layer::Ipv4,
        [
            "add",
            "chain",
            "ip",
            "libvirt_network",
            "guest_nat",
            "{ type nat hook postrouting priority 100; policy accept; }",
        ],
    );
    fw.add_cmd(
        Layer::Ipv6,
        [
            "insert",
            "rule",
            "ip6",
            "libvirt_network",
            "guest_output",
            "iif",
            "virbr0",
            "counter",
            "reject",
        ],
    );
    fw.add_cmd(
        Layer::Ipv4,
        ["-c", "create", "rule", "ip", "t", "c", "accept"],
    );
    fw.add_cmd(Layer::Ipv4, ["add", "set", "ip", "t", "s"]);
    fw.add_cmd(
        Layer::Ipv4,
        ["delete", "rule", "ip", "t", "c", "handle", "3"],
    );
    fw.add_cmd(Layer::Ipv4, ["list"]);
    fw.add_cmd(Layer::Ipv4, ["-ae", "-x"]);
    fw.add_cmd(Layer::Tc, ["filter", "add", "dev", "virbr0"]);
    fw.apply(&runner).expect("apply succeeds");
    assert_eq!(
        stream(&runner),
        [
            "nft add table ip t",
            "nft -ae add table ip libvirt_network",
            "nft -ae add chain ip libvirt_network guest_nat '{ type nat hook postrouting priority 100; policy accept; }'",
            "nft -ae insert rule ip6 libvirt_network guest_output iif virbr0 counter reject",
            "nft -ae -c create rule ip t c accept",
            "nft add set ip t s",
            "nft delete rule ip t c handle 3",
            "nft list",
            "nft -ae -x",
            "tc filter add dev virbr0",
        ]
    );
    assert!(fw.groups()[0].rollbacks().is_empty());
    assert_eq!(
        args_of(&fw, 1),
        [
            sv(&["delete", "table", "ip", "handle", "10"]),
            sv(&["delete", "chain", "ip", "libvirt_network", "handle", "11"]),
            sv(&[
                "delete",
                "rule",
                "ip6",
                "libvirt_network",
                "guest_output",
                "handle",
                "12"
            ]),
            sv(&["delete", "rule", "ip", "t", "c", "handle", "13"]),
        ]
    );
    assert_eq!(fw.groups()[1].rollbacks()[2].layer(), Layer::Ipv6);
}

#[test]
fn nft_handle_parsing() {
    assert_eq!(parse_nft_handle("# handle 5309"), Some("5309"));
    assert_eq!(
        parse_nft_handle("insert rule ip libvirt_network guest_output iif \"virbr0\" counter packets 0 bytes 0 reject # handle 9\n# new generation 20 by process 6982 (nft)\n"),
        Some("9")
    );
    assert_eq!(parse_nft_handle("x # handle 12abc # handle 13"), Some("12"));
    assert_eq!(parse_nft_handle("# handle abc"), None);
    assert_eq!(parse_nft_handle("#handle 3"), None);
    assert_eq!(parse_nft_handle(""), None);
    assert_eq!(parse_nft_handle("# handle "), None);
    assert_eq!(
        crate::firewall::nft_handle_echo("x # handle 12abc # handle 13"),
        Some("# handle 12")
    );
    assert_eq!(
        crate::firewall::nft_handle_echo("# handle x # handle 4"),
        None
    );
}

#[test]
fn nft_unparseable_echo_fails_and_leaves_an_empty_rollback() {
    let runner = RecordingRunner::new();
    runner.stdout_when(
        Matcher::contains(["guest_input"]),
        "insert rule ... # handle xyz\n",
    );
    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_cmd(
        Layer::Ipv4,
        [
            "insert",
            "rule",
            "ip",
            "libvirt_network",
            "guest_output",
            "accept",
        ],
    );
    fw.add_cmd(
        Layer::Ipv4,
        [
            "insert",
            "rule",
            "ip",
            "libvirt_network",
            "guest_input",
            "accept",
        ],
    );
    fw.add_cmd(
        Layer::Ipv4,
        [
            "insert",
            "rule",
            "ip",
            "libvirt_network",
            "guest_cross",
            "accept",
        ],
    );
    let err = fw.apply(&runner).expect_err("no handle is an error");
    assert_eq!(
        err.to_string(),
        "couldn't register rollback command - command 'nft -ae insert rule ip libvirt_network guest_input accept' had no valid handle in output ('insert rule ... # handle xyz\n')"
    );
    // The empty rollback entry is never run (it fails as an empty command,
    // ignored), the valid one is.
    assert_eq!(
        stream(&runner),
        [
            "nft -ae insert rule ip libvirt_network guest_output accept",
            "nft -ae insert rule ip libvirt_network guest_input accept",
            "nft delete rule ip libvirt_network guest_output handle 5309",
        ]
    );
    assert_eq!(fw.groups()[0].rollbacks().len(), 2);
    assert!(fw.groups()[0].rollbacks()[1].args().is_empty());
}

#[test]
fn nft_failure_message_and_list_special_case() {
    let runner = RecordingRunner::new();
    runner.fail_when(
        Matcher::contains(["list"]),
        1,
        "Error: No such file or directory\n",
    );
    runner.fail_when(Matcher::contains(["bogus"]), 1, "Error: syntax error\n");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_cmd_full(
        Layer::Ipv4,
        false,
        Some(query_callback(move |ctx, layer, lines| {
            *seen2.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(lines.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            ctx.add_cmd(layer, ["add", "table", "ip", "libvirt_network"]);
            Ok(())
        })),
        ["list", "table", "ip", "libvirt_network"],
    );
    fw.add_cmd(Layer::Ipv4, ["insert", "rule", "ip", "t", "bogus"]);
    let err = fw.apply(&runner).expect_err("bogus fails");
    assert_eq!(
        err.to_string(),
        "Failed to apply firewall command 'nft -ae insert rule ip t bogus': Error: syntax error\n"
    );
    assert_eq!(
        *seen.lock().unwrap_or_else(|e| e.into_inner()),
        Some(Vec::<String>::new()),
        "the callback ran on the empty output of the failed list"
    );
    // The table added by the callback ran after the already queued rule,
    // which failed first: so the table was never created.
    assert_eq!(
        stream(&runner),
        [
            "nft list table ip libvirt_network",
            "nft -ae insert rule ip t bogus",
        ]
    );
}

#[test]
fn callbacks_see_glib_split_lines() {
    for (stdout, want) in [
        ("", vec![]),
        ("a", vec!["a"]),
        ("a\n", vec!["a", ""]),
        ("\n\nb", vec!["", "", "b"]),
    ] {
        let runner = RecordingRunner::new();
        runner.stdout_when(Matcher::contains(["-L"]), stdout);
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let got2 = got.clone();
        let mut fw = Firewall::new(Backend::Iptables);
        fw.start_transaction(TransactionFlags::NONE);
        fw.add_cmd_full(
            Layer::Ipv4,
            false,
            Some(query_callback(move |_, _, lines| {
                got2.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(lines.iter().map(|s| s.to_string()));
                Ok(())
            })),
            ["-L"],
        );
        fw.apply(&runner).expect("apply succeeds");
        assert_eq!(
            *got.lock().unwrap_or_else(|e| e.into_inner()),
            want,
            "stdout {stdout:?}"
        );
    }
}

#[test]
fn iptables_ignored_failure_still_feeds_the_callback() {
    let runner = RecordingRunner::new();
    runner.on(
        Matcher::contains(["-S"]),
        Reply::Output(Output {
            status: 1,
            stdout: "-N X\n".into(),
            stderr: "warn".into(),
        }),
    );
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let got2 = got.clone();
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd_full(
        Layer::Ipv4,
        false,
        Some(query_callback(move |_, _, lines| {
            got2.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(lines.iter().map(|s| s.to_string()));
            Ok(())
        })),
        ["-S"],
    );
    fw.apply(&runner).expect("ignored");
    assert_eq!(*got.lock().unwrap_or_else(|e| e.into_inner()), ["-N X", ""]);
}

#[test]
fn unrunnable_command_fails_even_when_errors_are_ignored() {
    let runner = RecordingRunner::new();
    runner.on(
        Matcher::contains(["x"]),
        Reply::SpawnError("No such file or directory".into()),
    );
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd(Layer::Ipv4, ["-A", "x"]);
    fw.add_cmd(Layer::Ipv4, ["-A", "y"]);
    fw.start_rollback(RollbackFlags::NONE);
    fw.add_cmd(Layer::Ipv4, ["-D", "x"]);
    let err = fw.apply(&runner).expect_err("spawn failure");
    assert!(
        matches!(err, FirewallError::Run(RunError::Spawn { .. })),
        "{err:?}"
    );
    assert_eq!(stream(&runner), ["iptables -w -A x", "iptables -w -D x"]);
}

#[test]
fn crash_aborts_without_running_any_rollback() {
    let runner = RecordingRunner::new();
    runner.on(Matcher::contains(["R2"]), Reply::Crash);
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_cmd(Layer::Ipv4, ["--insert", "C", "--jump", "R1"]);
    fw.add_cmd(Layer::Ipv4, ["--insert", "C", "--jump", "R2"]);
    fw.add_cmd(Layer::Ipv4, ["--insert", "C", "--jump", "R3"]);
    fw.start_rollback(RollbackFlags::NONE);
    fw.add_cmd(Layer::Ipv4, ["--delete", "C", "--jump", "manual"]);
    let err = fw.apply(&runner).expect_err("crash");
    assert!(err.is_crash(), "{err:?}");
    assert_eq!(
        err,
        FirewallError::Crashed {
            program: "iptables".into(),
            index: 1
        }
    );
    assert_eq!(
        stream(&runner),
        [
            "iptables -w --insert C --jump R1",
            "iptables -w --insert C --jump R2",
        ]
    );
}

#[test]
fn crash_during_rollback_stops_the_rollback() {
    let runner = RecordingRunner::new();
    runner.fail_when(Matcher::contains(["R2"]), 1, "");
    runner.on(
        Matcher::contains(["--delete", "C", "--jump", "R0"]),
        Reply::Crash,
    );
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_cmd(Layer::Ipv4, ["--insert", "C", "--jump", "R0"]);
    fw.add_cmd(Layer::Ipv4, ["--insert", "C", "--jump", "R1"]);
    fw.add_cmd(Layer::Ipv4, ["--insert", "C", "--jump", "R2"]);
    let err = fw.apply(&runner).expect_err("crash");
    assert!(err.is_crash());
    assert_eq!(stream(&runner).len(), 4, "the R1 delete never ran");
}

#[test]
fn rollback_start_reproduces_libvirts_loop() {
    let n = RollbackFlags::NONE;
    let i = RollbackFlags::INHERIT_PREVIOUS;
    assert_eq!(rollback_start(&[n], 0), 0);
    assert_eq!(rollback_start(&[i], 0), 0, "group 0 cannot inherit");
    assert_eq!(rollback_start(&[n, n, n], 2), 2);
    assert_eq!(rollback_start(&[n, n, i], 2), 1);
    assert_eq!(rollback_start(&[n, i, i], 2), 0);
    // The loop does not stop at a group without the flag: the lowest
    // flagged group in 1..=i decides, even past a gap.
    assert_eq!(rollback_start(&[n, i, n], 2), 0);
    assert_eq!(rollback_start(&[n, n, i, n, n], 4), 1);
    // Flags on groups after the failing one are not looked at.
    assert_eq!(rollback_start(&[n, n, n, i], 2), 2);
}

#[test]
fn inheritance_gap_rolls_back_from_the_lowest_flagged_group() {
    let runner = RecordingRunner::new();
    runner.fail_when(Matcher::contains(["fail"]), 1, "");
    let mut fw = Firewall::new(Backend::Iptables);
    for (g, flag) in [
        ("g0", RollbackFlags::NONE),
        ("g1", RollbackFlags::NONE),
        ("g2", RollbackFlags::INHERIT_PREVIOUS),
        ("g3", RollbackFlags::NONE),
    ] {
        fw.start_transaction(TransactionFlags::NONE);
        fw.add_cmd(Layer::Ipv4, ["-A", g]);
        if g == "g3" {
            fw.add_cmd(Layer::Ipv4, ["-A", "fail"]);
        }
        fw.start_rollback(flag);
        fw.add_cmd(Layer::Ipv4, ["-D", g]);
    }
    fw.apply(&runner).expect_err("g3 fails");
    assert_eq!(
        stream(&runner),
        [
            "iptables -w -A g0",
            "iptables -w -A g1",
            "iptables -w -A g2",
            "iptables -w -A g3",
            "iptables -w -A fail",
            "iptables -w -D g1",
            "iptables -w -D g2",
            "iptables -w -D g3",
        ]
    );
}

#[test]
fn backend_none_always_fails() {
    let runner = RecordingRunner::new();
    let mut fw = Firewall::new(Backend::None);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd(Layer::Ipv4, ["-A", "X"]);
    let err = fw.apply(&runner).expect_err("none backend");
    assert_eq!(err, FirewallError::BackendNotImplemented);
    assert_eq!(err.to_string(), "Firewall backend is not implemented");
    assert!(runner.recorded().is_empty());
    // A plan with no command applies fine whatever the backend.
    Firewall::new(Backend::None)
        .apply(&runner)
        .expect("empty plan");
}

#[test]
fn empty_command_is_an_error() {
    let runner = RecordingRunner::new();
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd(Layer::Ipv4, Vec::<String>::new());
    assert_eq!(fw.apply(&runner), Err(FirewallError::EmptyCommand));
    assert_eq!(
        FirewallError::EmptyCommand.to_string(),
        "Can't apply empty firewall command"
    );
}

#[test]
fn sticky_builder_error() {
    let runner = RecordingRunner::new();
    let mut fw = Firewall::new(Backend::Iptables);
    let b = fw.add_cmd(Layer::Ipv4, ["-A", "X"]);
    assert_eq!(b.id(), None);
    assert_eq!(fw.error(), Some(BuildError::CommandWithoutTransaction));
    fw.start_transaction(TransactionFlags::NONE);
    fw.add_cmd(Layer::Ipv4, ["-A", "Y"]);
    assert!(
        fw.groups().is_empty(),
        "builder calls are no-ops after the error"
    );
    let err = fw.apply(&runner).expect_err("sticky");
    assert!(matches!(err, FirewallError::Build(_)));
    assert!(err
        .to_string()
        .starts_with("Unable to create firewall command"));
    assert!(runner.recorded().is_empty());
    assert_eq!(fw.new_from_rollback(), Err(FirewallError::OriginalHasError));

    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_rollback(RollbackFlags::NONE);
    assert_eq!(fw.error(), Some(BuildError::RollbackWithoutTransaction));
}

#[test]
fn rollback_section_and_explicit_rollback_commands() {
    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd_full(
        Layer::Ipv4,
        false,
        Some(query_callback(|_, _, _| Ok(()))),
        ["list"],
    );
    fw.add_rollback_cmd(Layer::Tc, ["filter", "del"]);
    fw.start_rollback(RollbackFlags::INHERIT_PREVIOUS);
    fw.add_cmd_full(
        Layer::Ipv4,
        false,
        Some(query_callback(|_, _, _| Ok(()))),
        ["x"],
    );
    let g = &fw.groups()[0];
    assert_eq!(g.actions().len(), 1);
    assert!(
        g.actions()[0].ignore_errors(),
        "group IGNORE_ERRORS is inherited"
    );
    assert!(g.actions()[0].has_callback());
    assert_eq!(g.rollbacks().len(), 2);
    assert!(g
        .rollbacks()
        .iter()
        .all(|c| c.ignore_errors() && !c.has_callback()));
    assert_eq!(g.rollback_flags(), RollbackFlags::INHERIT_PREVIOUS);
    // remove_cmd acts on the rollback list while in the rollback section.
    let id = g.rollbacks()[1].id();
    fw.remove_cmd(id);
    assert_eq!(fw.groups()[0].rollbacks().len(), 1);
}

#[test]
fn removal_plan_reverses_groups_and_commands() {
    let runner = RecordingRunner::with_handles(HandleMode::Counter(1));
    let mut fw = Firewall::new(Backend::Nftables);
    fw.set_name("ignored");
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_cmd(Layer::Tc, ["filter", "add", "dev", "virbr0"]);
    fw.add_rollback_cmd(Layer::Tc, ["filter", "del", "dev", "virbr0"]);
    fw.add_cmd(Layer::Ipv4, ["insert", "rule", "ip", "t", "a", "accept"]);
    fw.add_cmd(Layer::Ipv6, ["insert", "rule", "ip6", "t", "b", "accept"]);
    fw.start_transaction(TransactionFlags::NONE);
    fw.add_cmd(Layer::Ipv4, ["list", "table", "ip", "t"]);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK | TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd(Layer::Ipv4, ["add", "chain", "ip", "t", "c"]);
    fw.apply(&runner).expect("apply");
    let removal = fw
        .new_from_rollback()
        .expect("ok")
        .expect("something to undo");
    assert_eq!(removal.backend(), Backend::Nftables);
    assert_eq!(removal.name(), None);
    assert_eq!(removal.groups().len(), 2);
    assert!(removal
        .groups()
        .iter()
        .all(|g| g.flags() == TransactionFlags::IGNORE_ERRORS && g.rollbacks().is_empty()));
    let plan: Vec<(Layer, Vec<String>)> = removal
        .action_cmds()
        .map(|c| (c.layer(), c.args().to_vec()))
        .collect();
    assert_eq!(
        plan,
        [
            (
                Layer::Ipv4,
                sv(&["delete", "chain", "ip", "t", "handle", "3"])
            ),
            (
                Layer::Ipv6,
                sv(&["delete", "rule", "ip6", "t", "b", "handle", "2"])
            ),
            (
                Layer::Ipv4,
                sv(&["delete", "rule", "ip", "t", "a", "handle", "1"])
            ),
            (Layer::Tc, sv(&["filter", "del", "dev", "virbr0"])),
        ]
    );
    // Applying the removal runs exactly that, ignoring failures.
    let runner2 = RecordingRunner::new();
    runner2.fail_when(Matcher::contains(["ip6"]), 1, "gone");
    let mut removal = removal;
    removal.apply(&runner2).expect("ignore errors");
    assert_eq!(
        stream(&runner2),
        [
            "nft delete chain ip t handle 3",
            "nft delete rule ip6 t b handle 2",
            "nft delete rule ip t a handle 1",
            "tc filter del dev virbr0",
        ]
    );

    let mut nothing = Firewall::new(Backend::Iptables);
    nothing.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    nothing.add_cmd(Layer::Ipv4, ["--new-chain", "X"]);
    nothing.apply(&runner).expect("apply");
    assert_eq!(nothing.new_from_rollback(), Ok(None));
}

#[test]
fn a_command_changed_after_it_ran_keeps_what_ran() {
    // Commands keep the argv they run with, shared with the runner's
    // records and with copies of the plan: changing one changes no other.
    let runner = RecordingRunner::with_handles(HandleMode::Counter(1));
    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    let id = fw
        .add_cmd(Layer::Ipv4, ["add", "rule", "ip", "t", "c"])
        .id()
        .expect("created");
    let copy = fw.clone();
    fw.apply(&runner).expect("apply");
    fw.cmd(id).arg("accept");
    let cmd = &fw.groups()[0].actions()[0];
    assert_eq!(cmd.args(), sv(&["add", "rule", "ip", "t", "c", "accept"]));
    assert_eq!(
        full_argv(Backend::Nftables, cmd, false),
        sv(&["nft", "add", "rule", "ip", "t", "c", "accept"])
    );
    assert_eq!(
        full_argv(Backend::Iptables, cmd, false),
        sv(&["iptables", "-w", "add", "rule", "ip", "t", "c", "accept"])
    );
    assert_eq!(
        copy.groups()[0].actions()[0].args(),
        sv(&["add", "rule", "ip", "t", "c"])
    );
    assert_eq!(stream(&runner), ["nft -ae add rule ip t c"]);

    // A creation among the rollback commands of an auto-rollback group runs
    // with -ae there, and without it in the removal plan.
    let runner = RecordingRunner::with_handles(HandleMode::Counter(1));
    runner.fail_when(Matcher::contains(["bogus"]), 1, "no");
    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_rollback_cmd(Layer::Ipv4, ["add", "chain", "ip", "t", "c"]);
    fw.add_cmd(Layer::Ipv4, ["bogus"]);
    assert!(fw.apply(&runner).is_err());
    let mut removal = fw
        .new_from_rollback()
        .expect("ok")
        .expect("something to undo");
    removal.apply(&runner).expect("ignore errors");
    assert_eq!(
        stream(&runner),
        [
            "nft bogus",
            "nft -ae add chain ip t c",
            "nft delete chain ip t handle 1",
            "nft delete chain ip t handle 1",
            "nft add chain ip t c",
        ]
    );
}

#[test]
fn two_firewalls_with_different_backends() {
    let runner = RecordingRunner::new();
    let mut a = Firewall::new(Backend::Iptables);
    let mut b = Firewall::new(Backend::Nftables);
    for fw in [&mut a, &mut b] {
        fw.start_transaction(TransactionFlags::NONE);
        fw.add_cmd(Layer::Ipv6, ["list"]);
    }
    a.apply(&runner).expect("a");
    b.apply(&runner).expect("b");
    assert_eq!(stream(&runner), ["ip6tables -w list", "nft list"]);
}

#[test]
fn names_of_backends_and_layers() {
    for b in Backend::ALL {
        assert_eq!(b.as_str().parse::<Backend>(), Ok(b));
    }
    for l in Layer::ALL {
        assert_eq!(l.as_str().parse::<Layer>(), Ok(l));
    }
    assert!("Iptables".parse::<Backend>().is_err());
    assert!("ip".parse::<Layer>().is_err());
    assert_eq!(Layer::Ipv4.binary(Backend::Iptables), "iptables");
    assert_eq!(Layer::Ipv6.binary(Backend::Iptables), "ip6tables");
    assert_eq!(Layer::Ethernet.binary(Backend::Iptables), "ebtables");
    assert_eq!(Layer::Tc.binary(Backend::Iptables), "tc");
    assert_eq!(Layer::Ethernet.binary(Backend::Nftables), "nft");
    assert_eq!(Layer::Tc.binary(Backend::Nftables), "tc");
    assert_eq!(Layer::Ipv6.nft_family(), "ip6");
}

#[test]
fn plans_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Firewall>();
    assert_send_sync::<RecordingRunner>();
    assert_send_sync::<FirewallError>();
}

#[test]
fn recording_runner_answers_like_libvirts_test_executor() {
    use virtnet_runner::{Cmd, Runner};
    let r = RecordingRunner::new();
    let out = r
        .run(&Cmd::new(["nft", "-ae", "insert", "rule"]))
        .expect("ok");
    assert_eq!(out, Output::ok("# handle 5309"));
    // Only argv[1] == "-ae" gets a handle.
    assert_eq!(
        r.run(&Cmd::new(["nft", "-c", "-ae"])).expect("ok"),
        Output::ok("")
    );
    assert_eq!(
        r.run(&Cmd::new(["iptables", "-w"])).expect("ok"),
        Output::ok("")
    );
    assert_eq!(r.recorded().len(), 3);
    r.clear();
    assert!(r.recorded().is_empty());

    let r = RecordingRunner::with_handles(HandleMode::Counter(7));
    r.on_times(
        Matcher::exact(["tc", "x"]),
        Reply::Output(Output::failed(2, "e")),
        1,
    );
    r.on(
        Matcher::AnyArgContains("zz".into()),
        Reply::Output(Output::ok("zz")),
    );
    assert_eq!(r.run(&Cmd::new(["tc", "x"])).expect("ok").status, 2);
    assert_eq!(
        r.run(&Cmd::new(["tc", "x"])).expect("ok").status,
        0,
        "used up"
    );
    assert_eq!(r.run(&Cmd::new(["a", "bzzb"])).expect("ok").stdout, "zz");
    assert_eq!(
        r.run(&Cmd::new(["nft", "-ae"])).expect("ok").stdout,
        "# handle 7"
    );
    assert_eq!(
        r.run(&Cmd::new(["nft", "-ae"])).expect("ok").stdout,
        "# handle 8"
    );

    // With no handle in the echo the creation fails.
    let r = RecordingRunner::with_handles(HandleMode::Missing);
    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
    fw.add_cmd(Layer::Ipv4, ["add", "table", "ip", "t"]);
    let err = fw.apply(&r).expect_err("no handle");
    assert!(matches!(err, FirewallError::NoHandle { .. }), "{err:?}");
}
