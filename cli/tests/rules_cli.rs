//! `virtnet rules` end to end: every libvirt 11.3.0 golden case for both
//! backends, the base streams, JSON output and libvirt's errors.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use rstest::rstest;

fn data() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/libvirt-11.3.0/tests/networkxml2firewalldata"
    ))
    .to_path_buf()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn virtnet() -> Command {
    Command::cargo_bin("virtnet").expect("virtnet binary")
}

/// Every libvirt 11.3.0 firewall case (`CASE.xml` beside `CASE-linux.BACKEND`),
/// each backend: one test each (rstest generates them from the files).
#[rstest]
fn every_libvirt_case_both_backends(
    #[files("../golden/upstream/libvirt-11.3.0/tests/networkxml2firewalldata/*.xml")] xml: PathBuf,
    #[values("iptables", "nftables")] backend: &str,
) {
    let case = xml.file_stem().and_then(|s| s.to_str()).expect("case name");
    let expected = read(&data().join(format!("{case}-linux.{backend}")));
    virtnet()
        .args(["rules", "--backend", backend])
        .arg(&xml)
        .assert()
        .success()
        .stdout(predicate::eq(expected));
}

#[rstest]
fn base_streams(#[values("iptables", "nftables")] backend: &str) {
    virtnet()
        .args(["rules", "--base", "--backend", backend])
        .assert()
        .success()
        .stdout(predicate::eq(read(&data().join(format!("base.{backend}")))));
}

#[test]
fn default_backend_is_nftables() {
    virtnet()
        .arg("rules")
        .arg(data().join("nat-default.xml"))
        .assert()
        .success()
        .stdout(predicate::eq(read(
            &data().join("nat-default-linux.nftables"),
        )));
}

/// JSON is the executed argv list: binary first, `-w` / `-ae` included,
/// and the same commands as the golden stream.
#[rstest]
fn json_is_executed_argv(#[values("iptables", "nftables")] backend: &str) {
    let out = virtnet()
        .args(["rules", "--format", "json", "--backend", backend])
        .arg(data().join("nat-ipv6.xml"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let argvs: Vec<Vec<String>> = serde_json::from_slice(&out).expect("json array");
    let golden = read(&data().join(format!("nat-ipv6-linux.{backend}")));
    let expected = virtnet_core::firewall::parse_stream(&golden).expect("golden parses");
    assert_eq!(argvs, expected, "{backend}");
    if backend == "iptables" {
        assert!(argvs.iter().all(|a| a[1] == "-w"));
        assert!(argvs.iter().any(|a| a[0] == "ip6tables"));
    } else {
        assert_eq!(argvs[0][0], "tc");
        assert!(argvs.iter().any(|a| a[0] == "nft" && a[1] == "-ae"));
    }
}

#[test]
fn base_json_is_executed_argv() {
    let base = virtnet()
        .args([
            "rules",
            "--base",
            "--format",
            "json",
            "--backend",
            "iptables",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let argvs: Vec<Vec<String>> = serde_json::from_slice(&base).expect("json");
    assert_eq!(argvs.len(), 34);
    assert_eq!(
        argvs[0],
        ["iptables", "-w", "--table", "filter", "--list-rules"]
    );
}

fn write_tmp(dir: &tempfile::TempDir, name: &str, xml: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, xml).expect("write");
    p
}

#[rstest]
fn port_range_start_equal_end_is_libvirts_error(#[values("iptables", "nftables")] backend: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_tmp(
        &dir,
        "pr.xml",
        "<network><name>pr</name><bridge name='virbr5'/>\
         <forward mode='nat'><nat><port start='2000' end='2000'/></nat></forward>\
         <ip address='10.9.0.1' prefix='24'/></network>",
    );
    virtnet()
        .args(["rules", "--backend", backend])
        .arg(&f)
        .assert()
        .failure()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("Invalid port range '2000-2000'."));
}

#[test]
fn unreadable_and_malformed_inputs_fail_clearly() {
    virtnet()
        .args(["rules", "/nonexistent/net.xml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot read /nonexistent/net.xml"));
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_tmp(
        &dir,
        "bad.xml",
        "<network><name>x</name><ip address='nope'/>",
    );
    virtnet()
        .args(["rules"])
        .arg(&f)
        .assert()
        .failure()
        .stderr(predicate::str::contains("bad.xml"));
    // FILE is required without --base.
    virtnet().arg("rules").assert().failure();
}

/// Open and host-bridge networks: libvirt runs no firewall command.
#[test]
fn open_network_has_no_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_tmp(
        &dir,
        "open.xml",
        "<network><name>o</name><bridge name='virbr7'/><forward mode='open'/>\
         <ip address='10.7.0.1' prefix='24'/></network>",
    );
    virtnet()
        .args(["rules", "--backend", "iptables"])
        .arg(&f)
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
}

/// A definition without a bridge gets the one `net-define` would pick.
#[test]
fn missing_bridge_gets_virbr0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_tmp(
        &dir,
        "nobr.xml",
        "<network><name>n</name><forward mode='route'/>\
         <ip address='10.8.0.1' prefix='24'/></network>",
    );
    virtnet()
        .args(["rules", "--backend", "iptables"])
        .arg(&f)
        .assert()
        .success()
        .stdout(predicate::str::contains("--in-interface virbr0"));
}
