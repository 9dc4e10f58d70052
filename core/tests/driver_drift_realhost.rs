//! Real host, in a fresh network namespace of the test's own thread: a nat
//! network started with the iptables backend (iptables-nft here), then its
//! rules drift — `nft flush ruleset` wipes every table, a single rule is
//! deleted by hand — and `check` reports it, `reload` (libvirt's SIGHUP)
//! re-applies what it can, `repair` restores exactly what the start left.
//! Prints "skipped: ..." when not root or a tool is missing.

use std::path::Path;
use std::sync::Arc;

use virtnet_core::driver::{DriftKind, Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_runner::{find_in_path, RealRunner, Runner};

const NET: &str = "<network><name>drift</name><forward mode='nat'/><bridge name='vnetdrift0'/><ip address='10.91.0.1' prefix='24'><dhcp><range start='10.91.0.10' end='10.91.0.20'/></dhcp></ip></network>";

fn run(argv: &[&str]) -> String {
    RealRunner::new()
        .run_argv_checked(argv)
        .unwrap_or_else(|e| panic!("{e}"))
        .stdout
}

/// The firewall as iptables-save shows it, without comments and counters.
fn firewall() -> String {
    [run(&["iptables-save"]), run(&["ip6tables-save"])]
        .concat()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rfind(" [") {
            Some(i) if l.starts_with(':') => l[..i].to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Destroys the network however the test ends (dnsmasq must not outlive it).
struct Running<'a>(&'a Driver);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.0.destroy("drift");
    }
}

fn body(dir: &Path) {
    let mut cfg = DriverConfig::new(
        dir.join("config"),
        dir.join("state"),
        Arc::new(RealRunner::new()) as Arc<dyn Runner>,
    )
    .with_backend(Backend::Iptables);
    cfg.leases_helper = find_in_path("true").unwrap().display().to_string();
    let d = Driver::open(cfg).unwrap();
    d.define(NET).unwrap();
    d.start("drift").unwrap();
    let _running = Running(&d);
    let good = firewall();
    assert!(!d.check(None).unwrap().drifted());

    // Someone deletes one rule: check names it, libvirt's reload puts the
    // whole set back (chains were never lost).
    run(&[
        "iptables",
        "-w",
        "--table",
        "filter",
        "--delete",
        "LIBVIRT_FWO",
        "--in-interface",
        "vnetdrift0",
        "--jump",
        "REJECT",
    ]);
    let rep = d.check(None).unwrap();
    assert_eq!(rep.networks[0].drift.len(), 1, "{rep:#?}");
    assert_eq!(rep.networks[0].drift[0].kind, DriftKind::Missing);
    assert!(rep.private_chains.is_empty());
    let r = d.reload().unwrap();
    assert_eq!(r.reloaded, ["drift"], "{r:?}");
    assert!(!d.check(None).unwrap().drifted());
    assert_eq!(firewall(), good);

    // A full flush: every rule and the private chains are reported; the
    // repair restores exactly the start's firewall.
    run(&["nft", "flush", "ruleset"]);
    let rep = d.check(None).unwrap();
    let n = &rep.networks[0];
    assert!(n.checked > 5 && n.drift.len() == n.checked, "{rep:#?}");
    assert!(!rep.private_chains.is_empty(), "{rep:#?}");
    let (_, after) = d.repair(None).unwrap();
    assert!(!after.drifted(), "{after:#?}");
    assert_eq!(firewall(), good);
    println!("ok: check, reload and repair on the real host");
}

#[test]
fn real_host_check_reload_repair() {
    if let Some(why) = virtnet_testkit::cannot_run(&[
        "nft",
        "iptables",
        "ip6tables",
        "iptables-save",
        "ip",
        "dnsmasq",
        "true",
        "kill",
        "sysctl",
    ]) {
        virtnet_testkit::skip(&why);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        virtnet_testkit::netns::enter_fresh_thread_netns().unwrap();
        body(&path);
    })
    .join()
    .unwrap();
}
