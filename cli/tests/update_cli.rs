//! `virtnet net-update` on the simulated host (`--host fake:PATH`): virsh's
//! arguments (the element as a string or a file, `--parent-index`,
//! `--live`, `--config`, `--current`), virsh's success lines, and libvirt's
//! refusals with exit status 1 and nothing changed.

mod common;

use std::path::Path;

use common::{set_firewall_backend, virtnet};
use predicates::prelude::*;

const NET: &str = "<network>\n  <name>default</name>\n  <bridge name=\"virbr0\"/>\n  <forward/>\n  <ip address=\"192.168.122.1\" netmask=\"255.255.255.0\">\n    <dhcp>\n      <range start=\"192.168.122.2\" end=\"192.168.122.100\"/>\n    </dhcp>\n  </ip>\n</network>\n";

const HOST: &str = "<host mac='52:54:00:00:00:02' name='two' ip='192.168.122.202'/>";

fn setup(start: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("net.xml"), NET).unwrap();
    set_firewall_backend(d, "nftables");
    virtnet(d)
        .arg("net-define")
        .arg(d.join("net.xml"))
        .assert()
        .success();
    if start {
        virtnet(d).args(["net-start", "default"]).assert().success();
    }
    dir
}

fn dumpxml(d: &Path, inactive: bool) -> String {
    let mut c = virtnet(d);
    c.arg("net-dumpxml");
    if inactive {
        c.arg("--inactive");
    }
    let out = c.arg("default").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn element_as_string_or_file_and_virsh_success_lines() {
    let dir = setup(true);
    let d = dir.path();
    virtnet(d)
        .args(["net-update", "default", "add", "ip-dhcp-host", HOST])
        .assert()
        .success()
        .stdout("Updated network default live state\n")
        .stderr("");
    assert!(dumpxml(d, false).contains("name='two'"));
    assert!(!dumpxml(d, true).contains("name='two'"));
    let hosts = std::fs::read_to_string(d.join("run/dnsmasq/default.hostsfile")).unwrap();
    assert_eq!(hosts, "52:54:00:00:00:02,192.168.122.202,two\n");
    // The element from a file (it does not start with '<').
    std::fs::write(d.join("host.xml"), HOST).unwrap();
    virtnet(d)
        .args(["net-update", "default", "add-last", "ip-dhcp-host"])
        .arg(d.join("host.xml"))
        .arg("--config")
        .assert()
        .success()
        .stdout("Updated network default persistent config\n");
    assert!(dumpxml(d, true).contains("name='two'"));
    virtnet(d)
        .args(["net-update", "default", "add-first", "dns-host"])
        .arg("<host ip='192.168.122.9'><hostname>nine</hostname></host>")
        .args(["--live", "--config"])
        .assert()
        .success()
        .stdout("Updated network default persistent config and live state\n");
    virtnet(d)
        .args([
            "net-update",
            "default",
            "delete",
            "ip-dhcp-host",
            "<host ip='192.168.122.202'/>",
        ])
        .args(["--parent-index", "0", "--current"])
        .assert()
        .success()
        .stdout("Updated network default live state\n");
    assert!(!dumpxml(d, false).contains("name='two'"));
    // Inactive: current is the persistent definition.
    virtnet(d)
        .args(["net-destroy", "default"])
        .assert()
        .success();
    virtnet(d)
        .args([
            "net-update",
            "default",
            "delete",
            "dns-host",
            "<host ip='192.168.122.9'/>",
        ])
        .assert()
        .success()
        .stdout("Updated network default persistent config\n");
    assert!(!dumpxml(d, true).contains("nine"));
}

#[test]
fn refusals_exit_1_with_libvirts_text_and_change_nothing() {
    let dir = setup(true);
    let d = dir.path();
    let snapshot = |d: &Path| {
        [
            "host.json",
            "run/default.xml",
            "cfg/default.xml",
            "run/dnsmasq/default.conf",
            "run/dnsmasq/default.hostsfile",
        ]
        .map(|f| std::fs::read_to_string(d.join(f)).unwrap_or_default())
        .join("\n----\n")
    };
    let before = snapshot(d);
    std::fs::write(
        d.join("range.xml"),
        "<range start='192.168.122.3'\n       end='192.168.122.4'/>\n",
    )
    .unwrap();
    let range_file = d.join("range.xml").display().to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["insert", "ip-dhcp-host", HOST], "error: unrecognized command name 'insert'\n".into()),
        (vec!["add", "ip-dhcp-hosts", HOST], "error: unrecognized section name 'ip-dhcp-hosts'\n".into()),
        (vec!["add", "bridge", "<bridge name='x'/>"], "error: Operation not supported: can't update 'bridge' section of network 'default'\n".into()),
        (vec!["add", "forward", "<forward mode='route'/>"], "error: Operation not supported: can't update 'forward' section of network 'default'\n".into()),
        (vec!["add", "domain", "<domain name='x'/>"], "error: Operation not supported: can't update 'domain' section of network 'default'\n".into()),
        (vec!["modify", "ip-dhcp-range", "<range start='192.168.122.2' end='192.168.122.100'/>"], "error: Operation not supported: dhcp ranges cannot be modified, only added or deleted\n".into()),
        (vec!["add", "ip-dhcp-host", HOST, "--parent-index", "1"], "error: Requested operation is not valid: couldn't update dhcp host entry - no <ip> element found at index 1 in network 'default'\n".into()),
        (vec!["add", "ip-dhcp-host", &range_file], format!("error: {range_file}:1:1: unexpected element <range>, expecting <host>, while updating network 'default' (at /range)\n")),
        (vec!["delete", "ip-dhcp-range", "<range start='192.168.122.3' end='192.168.122.4'/>"], "error: Requested operation is not valid: couldn't locate a matching dhcp range entry in network 'default'\n".into()),
        (vec!["add", "ip-dhcp-host", "<host mac='52:54:00:00:00:02' ip='2001:db8::5'/>"], "error: Requested operation is not valid: the address family of a host entry IP must match the address family of the dhcp element's parent\n".into()),
        (vec!["add", "dns-txt", "<txt name='a b' value='c'/>"], "error: 1:6: prohibited character in DNS TXT record name 'a b' of network default (at /txt/@name)\n".into()),
    ];
    for (args, want) in cases {
        virtnet(d)
            .args(["net-update", "default"])
            .args(&args)
            .assert()
            .code(1)
            .stdout("")
            .stderr(want);
    }
    // A file that is not there.
    virtnet(d)
        .args(["net-update", "default", "add", "ip-dhcp-host"])
        .arg(d.join("missing.xml"))
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "error: cannot read {}",
            d.join("missing.xml").display()
        )));
    // --current excludes --live and --config (virsh's exclusive options).
    virtnet(d)
        .args([
            "net-update",
            "default",
            "add",
            "ip-dhcp-host",
            HOST,
            "--current",
            "--live",
        ])
        .assert()
        .code(2);
    assert_eq!(snapshot(d), before, "a refused update changed something");
    // The network is inactive: --live is refused.
    virtnet(d)
        .args(["net-destroy", "default"])
        .assert()
        .success();
    virtnet(d)
        .args([
            "net-update",
            "default",
            "add",
            "ip-dhcp-host",
            HOST,
            "--live",
        ])
        .assert()
        .code(1)
        .stderr("error: Requested operation is not valid: network is not running\n");
    virtnet(d)
        .args(["net-update", "nosuch", "add", "ip-dhcp-host", HOST])
        .assert()
        .code(1)
        .stderr("error: Network not found: no network with matching name 'nosuch'\n");
}
