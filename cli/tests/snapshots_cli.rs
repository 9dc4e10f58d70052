//! Snapshots (insta) of the texts people read: every `--help`, `net-list` /
//! `net-info` output and the errors of `virtnet xml validate`.
//!
//! A change to any of these texts shows up as a snapshot diff to review.
//! Update on purpose with `INSTA_UPDATE=always cargo test -p virtnet --test
//! snapshots_cli` (or `cargo insta review`); CI (`CI=true`) never writes them.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::set_firewall_backend;
use rstest::rstest;

/// The command with a fixed help width (clap reads `COLUMNS`), so snapshots
/// do not depend on the terminal that runs the tests.
fn bin(name: &str) -> Command {
    let mut c = Command::cargo_bin(name).expect("binary built by cargo");
    c.env("COLUMNS", "100").env_remove("RUST_LOG");
    c
}

/// stdout and stderr (labelled) and the exit status of one run.
fn run(mut cmd: Command) -> String {
    let out = cmd.output().expect("runs");
    let mut text = format!("exit: {}\n", out.status.code().unwrap_or(-1));
    if !out.stdout.is_empty() {
        text.push_str("--- stdout\n");
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    if !out.stderr.is_empty() {
        text.push_str("--- stderr\n");
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    text
}

#[rstest]
#[case::virtnet(&[])]
#[case::xml(&["xml"])]
#[case::xml_format(&["xml", "format"])]
#[case::xml_validate(&["xml", "validate"])]
#[case::rules(&["rules"])]
#[case::dnsmasq(&["dnsmasq"])]
#[case::sim(&["sim"])]
#[case::sim_exec(&["sim", "exec"])]
#[case::sim_dump(&["sim", "dump"])]
#[case::net_define(&["net-define"])]
#[case::net_undefine(&["net-undefine"])]
#[case::net_start(&["net-start"])]
#[case::net_destroy(&["net-destroy"])]
#[case::net_list(&["net-list"])]
#[case::net_dumpxml(&["net-dumpxml"])]
#[case::net_autostart(&["net-autostart"])]
#[case::net_info(&["net-info"])]
#[case::net_create(&["net-create"])]
#[case::net_uuid(&["net-uuid"])]
#[case::net_name(&["net-name"])]
#[case::reconcile(&["reconcile"])]
#[case::reload(&["reload"])]
#[case::check(&["check"])]
#[case::daemon_status(&["daemon-status"])]
#[case::daemon_log_level(&["daemon-log-level"])]
fn virtnet_help(#[case] sub: &[&str]) {
    let mut c = bin("virtnet");
    c.args(sub).arg("--help");
    let name = if sub.is_empty() {
        "virtnet".to_string()
    } else {
        format!("virtnet {}", sub.join(" "))
    };
    insta::assert_snapshot!(format!("help-{}", name.replace(' ', "-")), run(c));
}

#[test]
fn virtnetd_help() {
    let mut c = bin("virtnetd");
    c.arg("--help");
    insta::assert_snapshot!("help-virtnetd", run(c));
}

const NET: &str = "<network>\n  <name>default</name>\n  <uuid>d1a2f3c4-0000-4000-8000-000000000001</uuid>\n  <bridge name=\"virbr0\"/>\n  <forward/>\n  <ip address=\"192.168.122.1\" netmask=\"255.255.255.0\">\n    <dhcp>\n      <range start=\"192.168.122.2\" end=\"192.168.122.254\"/>\n    </dhcp>\n  </ip>\n</network>\n";

const ISOLATED: &str = "<network>\n  <name>isolated</name>\n  <uuid>d1a2f3c4-0000-4000-8000-000000000002</uuid>\n  <bridge name=\"virbr9\"/>\n  <ip address=\"10.9.0.1\" prefix=\"24\"/>\n</network>\n";

/// `virtnet` on a simulated host kept under `dir`, iptables backend.
fn virtnet(dir: &Path) -> Command {
    common::on_fake_host(bin("virtnet"), dir)
}

/// The outputs people read while networks come and go: `net-list` (text and
/// JSON) and `net-info`, for an active and an inactive network.
#[test]
fn net_list_and_info_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    set_firewall_backend(d, "iptables");
    for (file, xml) in [("default.xml", NET), ("isolated.xml", ISOLATED)] {
        std::fs::write(d.join(file), xml).expect("xml");
        let mut c = virtnet(d);
        c.arg("net-define").arg(d.join(file));
        assert!(c.output().expect("runs").status.success());
    }
    let mut start = virtnet(d);
    start.args(["net-start", "default"]);
    assert!(start.output().expect("runs").status.success());
    let mut autostart = virtnet(d);
    autostart.args(["net-autostart", "isolated"]);
    assert!(autostart.output().expect("runs").status.success());

    let mut text = String::new();
    for args in [
        &["net-list"][..],
        &["net-list", "--all"],
        &["net-list", "--json"],
        &["net-list", "--all", "--json"],
        &["net-info", "default"],
        &["net-info", "isolated"],
        &["net-info", "nosuch"],
    ] {
        let mut c = virtnet(d);
        c.args(args);
        text.push_str(&format!("$ virtnet {}\n", args.join(" ")));
        text.push_str(&run(c));
        text.push('\n');
    }
    insta::assert_snapshot!("net-list-and-net-info", text);
}

/// What `virtnet xml validate` prints for definitions that are wrong in
/// different ways: `FILE:LINE:COL: message`, exit status 1.
#[test]
fn xml_validate_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str)] = &[
        ("not-xml.xml", "<network><name>x</name>"),
        ("no-name.xml", "<network>\n  <bridge name='virbr1'/>\n</network>\n"),
        (
            "bad-address.xml",
            "<network>\n  <name>x</name>\n  <ip address='10.0.0.300' prefix='24'/>\n</network>\n",
        ),
        (
            "bad-forward-mode.xml",
            "<network>\n  <name>x</name>\n  <forward mode='teleport'/>\n</network>\n",
        ),
        (
            "bad-port-range.xml",
            "<network>\n  <name>x</name>\n  <forward mode='nat'>\n    <nat>\n      <port start='70000' end='80000'/>\n    </nat>\n  </forward>\n</network>\n",
        ),
        (
            "dhcp-range-outside.xml",
            "<network>\n  <name>x</name>\n  <ip address='10.0.0.1' prefix='24'>\n    <dhcp>\n      <range start='10.1.0.2' end='10.1.0.9'/>\n    </dhcp>\n  </ip>\n</network>\n",
        ),
    ];
    let mut text = String::new();
    for (name, xml) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, xml).expect("write");
        let mut c = bin("virtnet");
        c.current_dir(dir.path()).args(["xml", "validate", name]);
        text.push_str(&format!("$ virtnet xml validate {name}\n{}\n", run(c)));
    }
    insta::assert_snapshot!("xml-validate-errors", text);
}
