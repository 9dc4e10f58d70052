//! `virtnet net-*` / `reconcile` on the simulated host (`--host fake:PATH`),
//! sharing the host with `virtnet sim --state PATH`.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::{set_firewall_backend, virtnet};
use predicates::prelude::*;

const NET: &str = "<network>\n  <name>default</name>\n  <bridge name=\"virbr0\"/>\n  <forward/>\n  <ip address=\"192.168.122.1\" netmask=\"255.255.255.0\">\n    <dhcp>\n      <range start=\"192.168.122.2\" end=\"192.168.122.254\"/>\n    </dhcp>\n  </ip>\n</network>\n";

fn sim_dump(dir: &Path, what: &str) -> String {
    let out = Command::cargo_bin("virtnet")
        .unwrap()
        .args(["sim", "--state"])
        .arg(dir.join("host.json"))
        .args(["dump", what])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn lifecycle_through_the_cli_on_one_simulated_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("net.xml"), NET).unwrap();
    set_firewall_backend(d, "iptables");
    virtnet(d)
        .arg("net-define")
        .arg(d.join("net.xml"))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("Network default defined from "));
    virtnet(d)
        .args(["net-list", "--all"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            " default   inactive   no          yes",
        ));
    virtnet(d)
        .args(["net-start", "default"])
        .assert()
        .success()
        .stdout("Network default started\n");
    // The same simulated host, seen by `virtnet sim`.
    let ipt = sim_dump(d, "iptables");
    assert!(
        ipt.contains("-A LIBVIRT_FWO -s 192.168.122.0/24 -i virbr0 -j ACCEPT"),
        "{ipt}"
    );
    virtnet(d)
        .args(["net-info", "default"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Active:         yes\n")
                .and(predicate::str::contains("Firewall:       iptables\n")),
        );
    virtnet(d)
        .args(["net-dumpxml", "default"])
        .assert()
        .success()
        .stdout(predicate::str::contains("<port start='1024' end='65535'/>"));
    virtnet(d)
        .args(["net-dumpxml", "--inactive", "default"])
        .assert()
        .success()
        .stdout(predicate::str::contains("<port").not());
    // Switch the backend and restart the "daemon": the rules move to nftables.
    std::fs::write(
        d.join("cfg/network.conf"),
        "firewall_backend = \"nftables\"\n",
    )
    .unwrap();
    virtnet(d)
        .arg("reconcile")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Network default: firewall reloaded",
        ));
    assert!(!sim_dump(d, "iptables").contains("virbr0"));
    assert!(sim_dump(d, "nft").contains("iif \"virbr0\""));
    virtnet(d)
        .args(["net-destroy", "default"])
        .assert()
        .success()
        .stdout("Network default destroyed\n");
    assert!(!sim_dump(d, "all").contains("virbr0"));
    virtnet(d)
        .args(["net-destroy", "default"])
        .assert()
        .code(1)
        .stderr("error: Requested operation is not valid: network 'default' is not active\n");
    virtnet(d)
        .args(["net-autostart", "default"])
        .assert()
        .success()
        .stdout("Network default marked as autostarted\n");
    virtnet(d)
        .args(["net-autostart", "--disable", "default"])
        .assert()
        .success();
    virtnet(d)
        .args(["net-undefine", "default"])
        .assert()
        .success()
        .stdout("Network default has been undefined\n");
    virtnet(d)
        .args(["net-info", "default"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no network with matching name 'default'",
        ));
}

#[test]
fn configuration_and_input_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("cfg")).unwrap();
    std::fs::write(
        d.join("cfg/network.conf"),
        "# x\nfirewall_backend = \"ipfw\"\n",
    )
    .unwrap();
    virtnet(d).arg("net-list").assert().code(1).stderr(
        predicate::str::contains(format!("{}:2:20: ", d.join("cfg/network.conf").display())).and(
            predicate::str::contains("unrecognized firewall_backend = 'ipfw'"),
        ),
    );
    std::fs::remove_file(d.join("cfg/network.conf")).unwrap();
    std::fs::write(
        d.join("bad.xml"),
        "<network><name>x</name><ip address='nope'/></network>",
    )
    .unwrap();
    virtnet(d)
        .arg("net-define")
        .arg(d.join("bad.xml"))
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "error: {}:1:",
            d.join("bad.xml").display()
        )));
    Command::cargo_bin("virtnet")
        .unwrap()
        .args(["--host", "fake:", "net-list"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("expected 'real' or 'fake:PATH'"));
}

/// `virtnet --host real` in a fresh `unshare -n` namespace: start of
/// libvirt's default network with the iptables backend gives the
/// `iptables-save` a real libvirt 11.3.0 daemon left; destroy gives its
/// after-destroy state (private chains kept). The full per-case comparison
/// (both backends) is core's driver_realhost test.
#[test]
fn real_host_in_a_fresh_namespace() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: not root");
        return;
    }
    for tool in ["unshare", "iptables-save", "ip", "dnsmasq"] {
        if virtnet_runner::find_in_path(tool).is_none() {
            println!("skipped: {tool} not found on PATH");
            return;
        }
    }
    let dir = common::real_host_dir();
    let d = dir.path();
    let cap = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/captures/libvirt-11.3.0/nat-default/iptables"
    ));
    let exe = assert_cmd::cargo::cargo_bin("virtnet");
    let script = format!(
        // Whatever happens, no dnsmasq of this test outlives it (it would
        // keep the namespace alive): the trap kills one a failure left (its pid
        // file is gone after a successful destroy).
        "set -e\ntrap 'kill -9 $(cat {d}/run/dnsmasq/default.pid 2>/dev/null) 2>/dev/null || true' EXIT\n\
         V='{exe} --host real --config-dir {d}/cfg --state-dir {d}/run'\n\
         $V net-define {cap}/network.xml >/dev/null\n$V net-start default >/dev/null\n\
         iptables-save > {d}/after-start\n$V net-destroy default >/dev/null\n\
         iptables-save > {d}/after-destroy\nip -br link > {d}/links\n",
        exe = exe.display(),
        d = d.display(),
        cap = cap.display()
    );
    common::sh_in_fresh_netns(&script, String::new);
    let norm = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.rfind(" [") {
                Some(i) if l.starts_with(':') => format!("{} [0:0]", &l[..i]),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (ours, theirs) in [
        ("after-start", "1-after-start.iptables-save"),
        ("after-destroy", "9-after-destroy.iptables-save"),
    ] {
        let a = std::fs::read_to_string(d.join(ours)).unwrap();
        let e = std::fs::read_to_string(cap.join(theirs)).unwrap();
        assert_eq!(norm(&e), norm(&a), "{ours}");
    }
    assert!(!std::fs::read_to_string(d.join("links"))
        .unwrap()
        .contains("virbr0"));
}
