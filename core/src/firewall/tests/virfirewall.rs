//! The ten cases of libvirt's tests/virfirewalltest.c, with the same
//! commands and expected streams. libvirt runs them with the iptables
//! backend; they are also run here with the nftables backend (same control
//! flow, `nft <args>` instead of `iptables -w <args>`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rstest::rstest;

use crate::firewall::recording::{RecordingRunner, Reply};
use crate::firewall::{
    query_callback, render_stream, Backend, Firewall, FirewallError, Layer, RenderOptions,
    RollbackFlags, TransactionFlags,
};
use virtnet_runner::Output;

/// The command prefix the stream shows for `backend`.
fn prefix(backend: Backend) -> &'static str {
    match backend {
        Backend::Iptables => "iptables -w",
        _ => "nft",
    }
}

/// Builds the expected stream: each line is `<prefix> <rest>\n`.
fn expected(backend: Backend, lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| format!("{} {l}\n", prefix(backend)))
        .collect()
}

fn stream(runner: &RecordingRunner) -> String {
    render_stream(&runner.recorded(), RenderOptions::ONE_LINE)
}

/// libvirt's rollback hook: a command with `-A` followed later by
/// `192.168.122.255` exits 127.
fn rollback_hook_runner() -> RecordingRunner {
    RecordingRunner::new().with_hook(|argv| {
        let mut is_add = false;
        for a in argv {
            if a == "-A" {
                is_add = true;
            } else if is_add && a == "192.168.122.255" {
                return Some(Reply::Output(Output::failed(127, "")));
            }
        }
        None
    })
}

fn a(fw: &mut Firewall, args: &[&str]) {
    fw.add_cmd(Layer::Ipv4, args.iter().copied());
}

const A_1: &[&str] = &[
    "-A",
    "INPUT",
    "--source",
    "192.168.122.1",
    "--jump",
    "ACCEPT",
];
const A_NOT1: &[&str] = &[
    "-A",
    "INPUT",
    "--source",
    "!192.168.122.1",
    "--jump",
    "REJECT",
];
const A_255: &[&str] = &[
    "-A",
    "INPUT",
    "--source",
    "192.168.122.255",
    "--jump",
    "REJECT",
];
const A_127: &[&str] = &[
    "-A",
    "INPUT",
    "--source",
    "192.168.122.127",
    "--jump",
    "REJECT",
];
const D_1: &[&str] = &[
    "-D",
    "INPUT",
    "--source",
    "192.168.122.1",
    "--jump",
    "ACCEPT",
];
const D_NOT1: &[&str] = &[
    "-D",
    "INPUT",
    "--source",
    "!192.168.122.1",
    "--jump",
    "REJECT",
];
const D_255: &[&str] = &[
    "-D",
    "INPUT",
    "--source",
    "192.168.122.255",
    "--jump",
    "REJECT",
];
const D_127: &[&str] = &[
    "-D",
    "INPUT",
    "--source",
    "192.168.122.127",
    "--jump",
    "REJECT",
];
const OUT_1: &[&str] = &[
    "-A",
    "OUTPUT",
    "--source",
    "192.168.122.1",
    "--jump",
    "ACCEPT",
];
const OUT_DROP: &[&str] = &["-A", "OUTPUT", "--jump", "DROP"];

const S_A_1: &str = "-A INPUT --source 192.168.122.1 --jump ACCEPT";
const S_A_NOT1: &str = "-A INPUT --source '!192.168.122.1' --jump REJECT";
const S_A_255: &str = "-A INPUT --source 192.168.122.255 --jump REJECT";
const S_A_127: &str = "-A INPUT --source 192.168.122.127 --jump REJECT";
const S_D_1: &str = "-D INPUT --source 192.168.122.1 --jump ACCEPT";
const S_D_NOT1: &str = "-D INPUT --source '!192.168.122.1' --jump REJECT";
const S_D_255: &str = "-D INPUT --source 192.168.122.255 --jump REJECT";
const S_D_127: &str = "-D INPUT --source 192.168.122.127 --jump REJECT";
const S_OUT_1: &str = "-A OUTPUT --source 192.168.122.1 --jump ACCEPT";
const S_OUT_DROP: &str = "-A OUTPUT --jump DROP";

#[rstest]
fn single_group(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = RecordingRunner::new();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    a(&mut fw, A_NOT1);
    fw.apply(&runner).expect("apply succeeds");
    assert_eq!(stream(&runner), expected(backend, &[S_A_1, S_A_NOT1]));
}

#[rstest]
fn remove_rule(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = RecordingRunner::new();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    let id = fw
        .add_cmd(Layer::Ipv4, ["-A", "INPUT"])
        .arg("--source")
        .id()
        .expect("command created");
    fw.remove_cmd(id);
    fw.add_cmd(Layer::Ipv4, ["-A", "INPUT"])
        .arg("--source")
        .arg_fmt(format_args!("{}", "!192.168.122.1"))
        .args(["--jump", "REJECT"]);
    fw.apply(&runner).expect("apply succeeds");
    assert_eq!(stream(&runner), expected(backend, &[S_A_1, S_A_NOT1]));
}

#[rstest]
fn many_groups(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = RecordingRunner::new();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    a(&mut fw, A_NOT1);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, OUT_1);
    a(&mut fw, OUT_DROP);
    fw.apply(&runner).expect("apply succeeds");
    assert_eq!(
        stream(&runner),
        expected(backend, &[S_A_1, S_A_NOT1, S_OUT_1, S_OUT_DROP])
    );
}

#[rstest]
fn ignore_fail_group(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = rollback_hook_runner();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    a(&mut fw, A_1);
    a(&mut fw, A_255);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, OUT_1);
    a(&mut fw, OUT_DROP);
    fw.apply(&runner).expect("apply succeeds");
    assert_eq!(
        stream(&runner),
        expected(backend, &[S_A_1, S_A_255, S_OUT_1, S_OUT_DROP])
    );
}

#[rstest]
fn ignore_fail_rule(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = rollback_hook_runner();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    fw.add_cmd_full(Layer::Ipv4, true, None, A_255.iter().copied());
    a(&mut fw, OUT_1);
    a(&mut fw, OUT_DROP);
    fw.apply(&runner).expect("apply succeeds");
    assert_eq!(
        stream(&runner),
        expected(backend, &[S_A_1, S_A_255, S_OUT_1, S_OUT_DROP])
    );
}

#[rstest]
fn no_rollback(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = rollback_hook_runner();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    a(&mut fw, A_255);
    a(&mut fw, A_NOT1);
    let err = fw.apply(&runner).expect_err("apply must fail");
    assert_eq!(stream(&runner), expected(backend, &[S_A_1, S_A_255]));
    let msg = err.to_string();
    match backend {
        Backend::Iptables => assert_eq!(
            msg,
            format!("Failed to run firewall command iptables -w {S_A_255}: ")
        ),
        _ => assert_eq!(
            msg,
            format!("Failed to apply firewall command 'nft {S_A_255}': ")
        ),
    }
}

#[rstest]
fn single_rollback(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = rollback_hook_runner();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    a(&mut fw, A_255);
    a(&mut fw, A_NOT1);
    fw.start_rollback(RollbackFlags::NONE);
    a(&mut fw, D_1);
    a(&mut fw, D_255);
    a(&mut fw, D_NOT1);
    fw.apply(&runner).expect_err("apply must fail");
    assert_eq!(
        stream(&runner),
        expected(backend, &[S_A_1, S_A_255, S_D_1, S_D_255, S_D_NOT1])
    );
}

#[rstest]
fn many_rollback(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = rollback_hook_runner();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    fw.start_rollback(RollbackFlags::NONE);
    a(&mut fw, D_1);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_255);
    a(&mut fw, A_NOT1);
    fw.start_rollback(RollbackFlags::NONE);
    a(&mut fw, D_255);
    a(&mut fw, D_NOT1);
    fw.apply(&runner).expect_err("apply must fail");
    assert_eq!(
        stream(&runner),
        expected(backend, &[S_A_1, S_A_255, S_D_255, S_D_NOT1])
    );
}

#[rstest]
fn chained_rollback(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let runner = rollback_hook_runner();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    fw.start_rollback(RollbackFlags::NONE);
    a(&mut fw, D_1);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_127);
    a(&mut fw, A_NOT1);
    fw.start_rollback(RollbackFlags::NONE);
    a(&mut fw, D_127);
    a(&mut fw, D_NOT1);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_255);
    a(&mut fw, A_NOT1);
    fw.start_rollback(RollbackFlags::INHERIT_PREVIOUS);
    a(&mut fw, D_255);
    a(&mut fw, D_NOT1);
    fw.apply(&runner).expect_err("apply must fail");
    assert_eq!(
        stream(&runner),
        expected(
            backend,
            &[S_A_1, S_A_127, S_A_NOT1, S_A_255, S_D_127, S_D_NOT1, S_D_255, S_D_NOT1]
        )
    );
}

const TEST_FILTER_TABLE_LIST: &str = "Chain INPUT (policy ACCEPT)\n\
target     prot opt source               destination\n\
\n\
Chain FORWARD (policy ACCEPT)\n\
target     prot opt source               destination\n\
\n\
Chain OUTPUT (policy ACCEPT)\n\
target     prot opt source               destination\n";

const TEST_NAT_TABLE_LIST: &str = "Chain PREROUTING (policy ACCEPT)\n\
target     prot opt source               destination\n\
\n\
Chain INPUT (policy ACCEPT)\n\
target     prot opt source               destination\n\
\n\
Chain OUTPUT (policy ACCEPT)\n\
target     prot opt source               destination\n\
\n\
Chain POSTROUTING (policy ACCEPT)\n\
target     prot opt source               destination\n";

const EXPECTED_LINES: [&str; 21] = [
    "Chain INPUT (policy ACCEPT)",
    "target     prot opt source               destination",
    "",
    "Chain FORWARD (policy ACCEPT)",
    "target     prot opt source               destination",
    "",
    "Chain OUTPUT (policy ACCEPT)",
    "target     prot opt source               destination",
    "",
    "Chain PREROUTING (policy ACCEPT)",
    "target     prot opt source               destination",
    "",
    "Chain INPUT (policy ACCEPT)",
    "target     prot opt source               destination",
    "",
    "Chain OUTPUT (policy ACCEPT)",
    "target     prot opt source               destination",
    "",
    "Chain POSTROUTING (policy ACCEPT)",
    "target     prot opt source               destination",
    "",
];

#[rstest]
fn query_transaction(#[values(Backend::Iptables, Backend::Nftables)] backend: Backend) {
    let lead: Vec<String> = prefix(backend).split(' ').map(String::from).collect();
    let hook_lead = lead.clone();
    let runner = RecordingRunner::new().with_hook(move |argv| {
        let rest = argv.strip_prefix(hook_lead.as_slice())?;
        if rest.first().map(String::as_str) == Some("-L") {
            Some(Reply::Output(Output::ok(TEST_FILTER_TABLE_LIST)))
        } else if rest.starts_with(&["-t".to_string(), "nat".into(), "-L".into()]) {
            Some(Reply::Output(Output::ok(TEST_NAT_TABLE_LIST)))
        } else {
            None
        }
    });
    let line_num = Arc::new(AtomicUsize::new(0));
    let line_error = Arc::new(AtomicBool::new(false));
    let (n, e) = (line_num.clone(), line_error.clone());
    let cb = query_callback(move |ctx, layer, lines| {
        ctx.add_cmd(
            layer,
            [
                "-A",
                "INPUT",
                "--source",
                "!192.168.122.129",
                "--jump",
                "REJECT",
            ],
        );
        for line in lines {
            let i = n.load(Ordering::SeqCst);
            if i >= EXPECTED_LINES.len() || EXPECTED_LINES[i] != *line {
                e.store(true, Ordering::SeqCst);
                break;
            }
            n.store(i + 1, Ordering::SeqCst);
        }
        Ok(())
    });
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_127);
    fw.add_cmd_full(Layer::Ipv4, false, Some(cb.clone()), ["-L"]);
    fw.add_cmd_full(Layer::Ipv4, false, Some(cb), ["-t", "nat", "-L"]);
    a(
        &mut fw,
        &[
            "-A",
            "INPUT",
            "--source",
            "192.168.122.130",
            "--jump",
            "REJECT",
        ],
    );
    fw.start_transaction(TransactionFlags::NONE);
    a(
        &mut fw,
        &[
            "-A",
            "INPUT",
            "--source",
            "192.168.122.128",
            "--jump",
            "REJECT",
        ],
    );
    a(&mut fw, A_NOT1);
    fw.apply(&runner).expect("apply succeeds");
    assert!(!line_error.load(Ordering::SeqCst), "unexpected query data");
    assert_eq!(line_num.load(Ordering::SeqCst), EXPECTED_LINES.len());
    assert_eq!(
        stream(&runner),
        expected(
            backend,
            &[
                S_A_1,
                S_A_127,
                "-L",
                "-t nat -L",
                "-A INPUT --source 192.168.122.130 --jump REJECT",
                "-A INPUT --source '!192.168.122.129' --jump REJECT",
                "-A INPUT --source '!192.168.122.129' --jump REJECT",
                "-A INPUT --source 192.168.122.128 --jump REJECT",
                S_A_NOT1,
            ]
        )
    );
}

#[rstest]
fn callback_error_fails_the_command_and_rolls_back(
    #[values(Backend::Iptables, Backend::Nftables)] backend: Backend,
) {
    let runner = RecordingRunner::new();
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::NONE);
    a(&mut fw, A_1);
    fw.add_cmd_full(
        Layer::Ipv4,
        false,
        Some(query_callback(|_, _, _| {
            Err(FirewallError::Callback {
                message: "bad listing".into(),
            })
        })),
        ["-L"],
    );
    a(&mut fw, A_127);
    fw.start_rollback(RollbackFlags::NONE);
    a(&mut fw, D_1);
    let err = fw.apply(&runner).expect_err("callback error fails apply");
    assert_eq!(err.to_string(), "bad listing");
    assert_eq!(stream(&runner), expected(backend, &[S_A_1, "-L", S_D_1]));
}
