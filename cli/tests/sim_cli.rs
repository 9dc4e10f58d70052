//! `virtnet sim` end to end (assert_cmd).

use assert_cmd::Command;
use predicates::prelude::*;

fn virtnet() -> Command {
    Command::cargo_bin("virtnet").expect("virtnet binary")
}

#[test]
fn exec_keeps_state_between_invocations_and_prints_like_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("host.json");
    let st = state.to_str().unwrap();
    virtnet()
        .args([
            "sim",
            "--state",
            st,
            "exec",
            "--",
            "iptables",
            "-w",
            "--table",
            "filter",
            "--new-chain",
            "LIBVIRT_INP",
        ])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    assert!(state.exists());
    virtnet()
        .args([
            "sim",
            "--state",
            st,
            "exec",
            "--",
            "iptables",
            "-w",
            "-N",
            "LIBVIRT_INP",
        ])
        .assert()
        .code(1)
        .stderr("iptables: Chain already exists.\n");
    virtnet()
        .args([
            "sim",
            "--state",
            st,
            "exec",
            "--",
            "iptables",
            "-w",
            "-I",
            "LIBVIRT_INP",
            "--in-interface",
            "virbr0",
            "--protocol",
            "udp",
            "--destination-port",
            "53",
            "--jump",
            "ACCEPT",
        ])
        .assert()
        .success();
    virtnet()
        .args([
            "sim",
            "--state",
            st,
            "exec",
            "--",
            "iptables",
            "-w",
            "-S",
            "LIBVIRT_INP",
        ])
        .assert()
        .success()
        .stdout("-N LIBVIRT_INP\n-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 53 -j ACCEPT\n");
    virtnet()
        .args(["sim", "--state", st, "dump", "iptables"])
        .assert()
        .success()
        .stdout(predicate::str::contains(":LIBVIRT_INP - [0:0]\n-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 53 -j ACCEPT\nCOMMIT\n"));
    virtnet()
        .args(["sim", "--state", st, "dump"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("## iptables\n")
                .and(predicate::str::contains("## links\nlo ")),
        );
}

#[test]
fn exec_of_unknown_program_fails_with_127() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("h.json");
    virtnet()
        .args([
            "sim",
            "--state",
            st.to_str().unwrap(),
            "exec",
            "--",
            "firewall-cmd",
            "--reload",
        ])
        .assert()
        .code(127)
        .stderr("virtnet-fake: command not simulated: firewall-cmd --reload\n");
}

#[test]
fn ip_and_stdin_file() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("h.json");
    let st = st.to_str().unwrap();
    virtnet()
        .args([
            "sim", "--state", st, "exec", "--", "ip", "link", "add", "virbr0", "type", "bridge",
        ])
        .assert()
        .success();
    virtnet()
        .args([
            "sim", "--state", st, "exec", "--", "ip", "link", "add", "virbr0", "type", "bridge",
        ])
        .assert()
        .code(2)
        .stderr("RTNETLINK answers: File exists\n");
    virtnet()
        .args(["sim", "--state", st, "dump", "links"])
        .assert()
        .success()
        .stdout(predicate::str::contains("virbr0 "));
    let missing = dir.path().join("nope.nft");
    virtnet()
        .args([
            "sim",
            "--state",
            st,
            "exec",
            "--stdin",
            missing.to_str().unwrap(),
            "--",
            "nft",
            "-f",
            "-",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "virtnet sim: cannot read standard input file",
        ));
}

#[test]
fn bad_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("h.json");
    std::fs::write(&st, "not json").unwrap();
    virtnet()
        .args(["sim", "--state", st.to_str().unwrap(), "dump"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a virtnet fake host state"));
}

#[test]
fn help_describes_the_subcommands() {
    virtnet().args(["sim", "--help"]).assert().success().stdout(
        predicate::str::contains("exec")
            .and(predicate::str::contains("dump"))
            .and(predicate::str::contains("--state <FILE>")),
    );
    virtnet()
        .args(["sim", "--state", "x", "dump", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ip6tables"));
}
