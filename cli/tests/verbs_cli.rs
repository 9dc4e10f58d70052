//! The everyday verbs from the command line, on the simulated host:
//! `net-list` with virsh's flags and exactly virsh's table, `net-create`
//! (transient networks), `net-uuid`, `net-name`, every verb by name or
//! UUID, `reload`, `check [--repair]`, and the refusals (unknown options,
//! bad UUIDs, unknown networks) with libvirt's texts and exit status 1.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::{set_firewall_backend, virtnet};

const DEFAULT: &str = "<network><name>default</name><uuid>d1a2f3c4-0000-4000-8000-000000000001</uuid><forward mode='nat'/><bridge name='virbr0'/><ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>";
const ZETA: &str = "<network><name>Zeta</name><uuid>d1a2f3c4-0000-4000-8000-000000000002</uuid><title>the last one</title><bridge name='virbr9'/></network>";
const ALPHA: &str = "<network><name>alpha</name><uuid>d1a2f3c4-0000-4000-8000-000000000003</uuid><bridge name='virbr5'/><ip address='10.55.0.1' prefix='24'><dhcp><range start='10.55.0.10' end='10.55.0.20'/></dhcp></ip></network>";

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = virtnet(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = virtnet(dir).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    String::from_utf8(out.stderr).unwrap()
}

/// default: persistent, active; Zeta: persistent, inactive, autostart;
/// alpha: transient (net-create), active.
fn setup(dir: &Path, backend: &str) {
    set_firewall_backend(dir, backend);
    for (f, xml) in [
        ("default.xml", DEFAULT),
        ("zeta.xml", ZETA),
        ("alpha.xml", ALPHA),
    ] {
        std::fs::write(dir.join(f), xml).unwrap();
    }
    ok(
        dir,
        &["net-define", &dir.join("default.xml").display().to_string()],
    );
    ok(
        dir,
        &["net-define", &dir.join("zeta.xml").display().to_string()],
    );
    ok(dir, &["net-start", "default"]);
    // The start used the backend network.conf chose: its saved removal
    // plan says so.
    let status = std::fs::read_to_string(dir.join("run/default.xml")).unwrap();
    assert!(
        status.contains(&format!("<firewall name='fwRemoval' backend='{backend}'>")),
        "{status}"
    );
    ok(dir, &["net-autostart", "Zeta"]);
    let out = ok(
        dir,
        &["net-create", &dir.join("alpha.xml").display().to_string()],
    );
    assert_eq!(
        out,
        format!(
            "Network alpha created from {}\n",
            dir.join("alpha.xml").display()
        )
    );
}

#[test]
fn net_list_prints_virshs_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, "nftables");
    // Active networks only by default; columns as wide as their widest
    // cell (header included), a rule of width + 3 per column, an empty
    // line at the end (virsh's after every command).
    assert_eq!(
        ok(d, &["net-list"]),
        concat!(
            " Name      State    Autostart   Persistent\n",
            "--------------------------------------------\n",
            " alpha     active   no          no\n",
            " default   active   no          yes\n",
            "\n"
        )
    );
    // Sorted ignoring case, as virsh.
    assert_eq!(
        ok(d, &["net-list", "--all"]),
        concat!(
            " Name      State      Autostart   Persistent\n",
            "----------------------------------------------\n",
            " alpha     active     no          no\n",
            " default   active     no          yes\n",
            " Zeta      inactive   yes         yes\n",
            "\n"
        )
    );
    assert_eq!(
        ok(d, &["net-list", "--inactive", "--title"]),
        concat!(
            " Name   State      Autostart   Persistent   Title\n",
            "----------------------------------------------------------\n",
            " Zeta   inactive   yes         yes          the last one\n",
            "\n"
        )
    );
    assert_eq!(
        ok(d, &["net-list", "--autostart"]),
        concat!(
            " Name   State   Autostart   Persistent\n",
            "----------------------------------------\n",
            "\n"
        ),
        "no active autostart network: the header alone"
    );
    assert_eq!(
        ok(d, &["net-list", "--all", "--name"]),
        "alpha\ndefault\nZeta\n\n"
    );
    assert_eq!(ok(d, &["net-list", "--transient", "--name"]), "alpha\n\n");
    assert_eq!(
        ok(d, &["net-list", "--all", "--persistent", "--name"]),
        "default\nZeta\n\n"
    );
    assert_eq!(
        ok(d, &["net-list", "--all", "--no-autostart", "--name"]),
        "alpha\ndefault\n\n"
    );
    assert_eq!(
        ok(d, &["net-list", "--all", "--autostart", "--name"]),
        "Zeta\n\n"
    );
    assert_eq!(
        ok(d, &["net-list", "--uuid"]),
        "d1a2f3c4-0000-4000-8000-000000000003\nd1a2f3c4-0000-4000-8000-000000000001\n\n"
    );
    assert_eq!(
        ok(d, &["net-list", "--table", "--inactive"]),
        ok(d, &["net-list", "--inactive"])
    );
    let json: serde_json::Value = serde_json::from_str(&ok(d, &["net-list", "--json"])).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "default"]);
    assert_eq!(
        fails(d, &["net-list", "--name", "--uuid"]),
        "error: Only one argument from --table, --name and --uuid may be specified.\n"
    );
    assert_eq!(
        fails(d, &["net-list", "--json", "--name"]),
        "error: Only one argument from --table, --name, --uuid and --json may be specified.\n"
    );
    assert_eq!(
        fails(d, &["net-list", "--bogus"]),
        "error: command 'net-list' doesn't support option --bogus\n"
    );
    assert_eq!(
        fails(d, &["net-start", "--really", "default"]),
        "error: command 'net-start' doesn't support option --really\n"
    );
}

#[test]
fn networks_by_name_or_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, "iptables");
    let zeta = "d1a2f3c4-0000-4000-8000-000000000002";
    assert_eq!(ok(d, &["net-uuid", "Zeta"]), format!("{zeta}\n\n"));
    assert_eq!(ok(d, &["net-name", zeta]), "Zeta\n\n");
    // Messages name the network as it was given, as virsh.
    assert_eq!(
        ok(d, &["net-start", zeta]),
        format!("Network {zeta} started\n")
    );
    assert!(ok(d, &["net-info", zeta]).contains("Active:         yes\n"));
    assert!(ok(d, &["net-dumpxml", zeta]).contains("<name>Zeta</name>"));
    assert_eq!(
        ok(d, &["net-destroy", zeta]),
        format!("Network {zeta} destroyed\n")
    );
    assert_eq!(
        ok(d, &["net-autostart", "--disable", zeta]),
        format!("Network {zeta} unmarked as autostarted\n")
    );
    // Refusals: libvirt's texts, exit status 1, nothing changed.
    let before = ok(d, &["net-list", "--all"]);
    assert_eq!(
        fails(d, &["net-name", "zeta"]),
        "error: failed to get network 'zeta'\n"
    );
    assert_eq!(
        fails(d, &["net-name", "zzzzzzzz-0000-4000-8000-000000000002"]),
        "error: invalid argument: uuidstr in virNetworkLookupByUUIDString must be a valid UUID\n"
    );
    assert_eq!(
        fails(d, &["net-name", "d1a2f3c4-0000-4000-8000-0000000000ff"]),
        "error: Network not found: no network with matching uuid 'd1a2f3c4-0000-4000-8000-0000000000ff'\n"
    );
    assert_eq!(
        fails(d, &["net-start", "d1a2f3c4-0000-4000-8000-0000000000ff"]),
        "error: Network not found: no network with matching name 'd1a2f3c4-0000-4000-8000-0000000000ff'\n"
    );
    assert_eq!(
        fails(d, &["net-uuid", zeta]),
        format!("error: Network not found: no network with matching name '{zeta}'\n")
    );
    assert_eq!(
        fails(d, &["net-destroy", "nosuch"]),
        "error: Network not found: no network with matching name 'nosuch'\n"
    );
    assert_eq!(ok(d, &["net-list", "--all"]), before);
}

#[test]
fn transient_network_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, "nftables");
    let files = ["alpha.conf", "alpha.hostsfile", "alpha.addnhosts"];
    for f in files {
        assert!(d.join("run/dnsmasq").join(f).exists(), "{f}");
    }
    assert!(!d.join("cfg/alpha.xml").exists());
    assert_eq!(
        fails(d, &["net-undefine", "alpha"]),
        "error: can't undefine transient network\n"
    );
    let file = d.join("alpha.xml").display().to_string();
    assert_eq!(
        fails(d, &["net-create", &file]),
        format!("error: {file}: network is already active as 'alpha'\n")
    );
    assert_eq!(
        ok(d, &["net-destroy", "alpha"]),
        "Network alpha destroyed\n"
    );
    for f in files {
        assert!(!d.join("run/dnsmasq").join(f).exists(), "{f} left behind");
    }
    assert!(!d.join("run/alpha.xml").exists());
    assert_eq!(ok(d, &["net-list", "--all", "--name"]), "default\nZeta\n\n");
    // A bad file: FILE:LINE:COL, nothing created.
    std::fs::write(
        d.join("bad.xml"),
        "<network><name>b</name>\n<ip address='x'/></network>",
    )
    .unwrap();
    let err = fails(d, &["net-create", &d.join("bad.xml").display().to_string()]);
    assert!(
        err.starts_with(&format!("error: {}:2:", d.join("bad.xml").display())),
        "{err}"
    );
    assert_eq!(ok(d, &["net-list", "--all", "--name"]), "default\nZeta\n\n");
}

fn sim(dir: &Path, argv: &[&str]) {
    let st = dir.join("host.json").display().to_string();
    let mut args = vec!["sim", "--state", &st, "exec", "--"];
    args.extend_from_slice(argv);
    let out = Command::cargo_bin("virtnet")
        .unwrap()
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_drift_and_repair_restores() {
    for backend in ["nftables", "iptables"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, backend);
        let clean = ok(d, &["check"]);
        assert!(clean.contains("Network default ("), "{clean}");
        assert!(clean.contains("none drifted"), "{clean}");
        assert!(clean.ends_with("Private chains: as expected\n"), "{clean}");
        match backend {
            "nftables" => sim(d, &["nft", "flush", "ruleset"]),
            _ => {
                sim(d, &["iptables", "-F"]);
                sim(d, &["iptables", "-t", "nat", "-F"]);
            }
        }
        let out = virtnet(d).args(["check", "default"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "drift: exit status 1");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("  missing: "), "{text}");
        let out = virtnet(d).args(["check", "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let nets = v["networks"].as_array().unwrap();
        let default = nets.iter().find(|n| n["name"] == "default").unwrap();
        assert_eq!(default["drift"][0]["kind"], "missing", "{v}");
        let out = virtnet(d).args(["check", "--repair"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Repaired; now:\n"), "{text}");
        assert_eq!(ok(d, &["check"]), clean, "{backend}");
        // reload (libvirt's SIGHUP) on a clean host keeps it clean.
        let r = ok(d, &["reload"]);
        assert!(r.contains("Network default: firewall reloaded\n"), "{r}");
        assert!(r.contains("Network Zeta: autostarted\n"), "{r}");
        assert!(ok(d, &["check"]).contains("none drifted"));
        assert_eq!(
            fails(d, &["check", "nosuch"]),
            "error: Network not found: no network with matching name 'nosuch'\n"
        );
    }
}
