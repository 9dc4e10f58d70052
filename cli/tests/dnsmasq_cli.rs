//! `virtnet dnsmasq` end to end.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

const CONFDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../golden/upstream/libvirt-11.3.0/tests/networkxml2confdata"
);
const CAPTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../golden/upstream/captures/libvirt-11.3.0"
);

fn virtnet() -> Command {
    Command::cargo_bin("virtnet").unwrap()
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(CONFDATA)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    v.sort();
    v
}

/// The text without its leading `##` comment lines.
fn body(s: &str) -> &str {
    let mut rest = s;
    while rest.starts_with("##") {
        rest = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
    }
    rest
}

fn stdout_of(args: &[&str], file: &Path) -> String {
    let out = virtnet().args(args).arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_confdata_case_equals_libvirts_file_apart_from_the_header() {
    let cases = cases();
    assert_eq!(cases.len(), 27);
    for xml in &cases {
        let ours = stdout_of(
            &["dnsmasq", "--dnsmasq-dir", "/var/lib/libvirt/dnsmasq"],
            xml,
        );
        let want = fs::read_to_string(xml.with_extension("conf")).unwrap();
        assert!(want.starts_with("##WARNING"));
        assert_eq!(body(&ours), body(&want), "{}", xml.display());
        // Our header names virtnet and the network, not virsh.
        let header = &ours[..ours.len() - body(&ours).len()];
        assert!(
            header.contains("virtnet") && !header.contains("virsh"),
            "{header}"
        );
        assert_eq!(header.lines().count(), 6);
    }
}

#[test]
fn hostsfile_and_addnhosts_of_every_case() {
    let mut printed = 0;
    for xml in cases() {
        let want = fs::read_to_string(xml.with_extension("hostsfile")).unwrap_or_default();
        let out = virtnet()
            .args(["dnsmasq", "--hostsfile"])
            .arg(&xml)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "{}",
            xml.display()
        );
        if want.is_empty() {
            assert!(String::from_utf8_lossy(&out.stderr).starts_with("note: "));
        } else {
            printed += 1;
        }
    }
    assert_eq!(printed, 14);

    let hosts = Path::new(CONFDATA).join("nat-network-dns-hosts.xml");
    let out = stdout_of(&["dnsmasq", "--addnhosts"], &hosts);
    assert!(
        !out.is_empty() && out.lines().all(|l| l.ends_with('\t')),
        "{out:?}"
    );
    assert_eq!(out, "192.168.122.1\thost\tgateway\t\n");
}

#[test]
fn default_directory_is_virtnets() {
    let xml = Path::new(CONFDATA).join("nat-network.xml");
    let out = stdout_of(&["dnsmasq"], &xml);
    assert!(out.contains("\ndhcp-hostsfile=/var/lib/virtnet/dnsmasq/default.hostsfile\n"));
    assert!(out.contains("\naddn-hosts=/var/lib/virtnet/dnsmasq/default.addnhosts\n"));
    assert!(!out.contains("pid-file="));
}

#[test]
fn captures_with_libvirt_daemon_directories() {
    let mut n = 0;
    for case in fs::read_dir(CAPTURES).unwrap().flatten() {
        let run = case.path().join("iptables");
        let conf = run.join("1-after-start.dnsmasq.conf");
        if !conf.exists() {
            continue;
        }
        let ours = stdout_of(
            &[
                "dnsmasq",
                "--dnsmasq-dir",
                "/var/lib/libvirt/dnsmasq",
                "--pid-dir",
                "/run/libvirt/network",
            ],
            &run.join("running.xml"),
        );
        assert_eq!(
            body(&ours),
            body(&fs::read_to_string(&conf).unwrap()),
            "{}",
            run.display()
        );
        n += 1;
    }
    assert_eq!(n, 11);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn invalid_definitions_are_reported_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.xml",
        "<network>\n  <name>x</name>\n  <ip address='192.168.1.1' prefix='24'>\n    <dhcp><range start='192.168.1.9' end='192.168.1.2'/></dhcp>\n  </ip>\n</network>\n",
    );
    let shown = f.display().to_string();
    virtnet()
        .arg("dnsmasq")
        .arg(&f)
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::starts_with(format!("error: {shown}:4:"))
                .and(predicate::str::contains("is reversed")),
        );

    let f = write(
        dir.path(),
        "broken.xml",
        "<network>\n  <name>x</name>\n  <ip address=\n",
    );
    virtnet().arg("dnsmasq").arg(&f).assert().code(1).stderr(
        predicate::str::is_match(format!(
            "^error: {}:[0-9]+:[0-9]+: ",
            regex_escape(&f.display().to_string())
        ))
        .unwrap(),
    );

    virtnet()
        .args(["dnsmasq", "/nonexistent/net.xml"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: /nonexistent/net.xml: cannot read:",
        ));
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

#[test]
fn definitions_without_a_dnsmasq_config_fail_at_the_element() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "ptr.xml",
        "<network>\n  <name>x</name>\n  <bridge name='vb0'/>\n  <forward/>\n  <ip address='10.0.0.1' prefix='20' localPtr='yes'/>\n</network>\n",
    );
    virtnet()
        .arg("dnsmasq")
        .arg(&f)
        .assert()
        .code(1)
        .stdout("")
        .stderr(format!(
            "error: {}:5:3: PTR domain for IPv4 network with prefix 20 cannot be automatically created\n",
            f.display()
        ));

    let f = write(
        dir.path(),
        "two.xml",
        "<network>\n  <name>x</name>\n  <bridge name='vb0'/>\n  <ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip>\n  <ip address='10.0.1.1' prefix='24'><dhcp><range start='10.0.1.2' end='10.0.1.9'/></dhcp></ip>\n</network>\n",
    );
    virtnet()
        .arg("dnsmasq")
        .arg(&f)
        .assert()
        .code(1)
        // Caught by define-time validation already (netxml's wording).
        .stderr(predicate::str::starts_with(format!(
            "error: {}:5:3: ",
            f.display()
        )));

    let f = write(
        dir.path(),
        "bridge.xml",
        "<network>\n  <name>x</name>\n  <forward mode='bridge'/>\n  <bridge name='br0'/>\n</network>\n",
    );
    virtnet()
        .arg("dnsmasq")
        .arg(&f)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("forward mode 'bridge'"));
}

#[test]
fn notes_when_there_is_nothing_to_print() {
    let routed = Path::new(CONFDATA).join("routed-network.xml");
    virtnet()
        .args(["dnsmasq", "--hostsfile"])
        .arg(&routed)
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("serves no DHCP"));
    let nodns = Path::new(CONFDATA).join("routed-network-no-dns.xml");
    virtnet()
        .args(["dnsmasq", "--addnhosts"])
        .arg(&nodns)
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("DNS disabled"));
    // The configuration is still printed, with a note that libvirt would not run it.
    virtnet()
        .arg("dnsmasq")
        .arg(&nodns)
        .assert()
        .success()
        .stdout(predicate::str::contains("\nport=0\n"))
        .stderr(predicate::str::contains("starts no dnsmasq"));
}

#[test]
fn bridge_name_is_allocated_like_libvirt() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "nobr.xml",
        "<network>\n  <name>x</name>\n  <forward/>\n  <ip address='10.0.0.1' prefix='24'/>\n</network>\n",
    );
    virtnet()
        .arg("dnsmasq")
        .arg(&f)
        .assert()
        .success()
        .stdout(predicate::str::contains("\ninterface=virbr0\n"))
        .stderr(predicate::str::contains("using 'virbr0'"));
    let f = write(
        dir.path(),
        "templ.xml",
        "<network>\n  <name>x</name>\n  <bridge name='vn%d'/>\n  <ip address='10.0.0.1' prefix='24'/>\n</network>\n",
    );
    virtnet()
        .arg("dnsmasq")
        .arg(&f)
        .assert()
        .success()
        .stdout(predicate::str::contains("\ninterface=vn0\n"));
}

#[test]
fn usage_errors_and_help() {
    virtnet()
        .args(["dnsmasq", "--hostsfile", "--addnhosts", "x.xml"])
        .assert()
        .code(2);
    virtnet().args(["dnsmasq"]).assert().code(2);
    virtnet()
        .args(["dnsmasq", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("/var/lib/virtnet/dnsmasq")
                .and(predicate::str::contains(
                    "--dnsmasq-dir /var/lib/libvirt/dnsmasq",
                ))
                .and(predicate::str::contains("Exit status")),
        );
}
