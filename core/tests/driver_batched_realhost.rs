//! The batched layout on the real kernel (nft 1.0.6, iptables-nft 1.8.9),
//! in a fresh network namespace of the test's own thread: a start is one
//! batch per backend that the kernel accepts, a daemon restart reloads it,
//! and destroy leaves the firewall exactly as before the start. On a kernel
//! without tc `act_csum` the nftables start fails at libvirt's checksum
//! filter (as the libvirt layout's does) and must leave nothing behind.
//! Prints "skipped: ..." when not root or a tool is missing.

use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_core::rules::batched::Layout;
use virtnet_runner::{RealRunner, Runner};
use virtnet_testkit::netns::enter_fresh_thread_netns;
use virtnet_testkit::{cannot_run, skip};

/// NAT with IPv4 and IPv6, no DHCP and no DNS: no dnsmasq is needed.
const NET: &str = "<network>\n  <name>bt</name>\n  <forward mode='nat'/>\n  <bridge name='vnbt0' stp='off' delay='0'/>\n  <dns enable='no'/>\n  <ip address='10.77.0.1' netmask='255.255.255.0'/>\n  <ip family='ipv6' address='fd77::1' prefix='64'/>\n</network>\n";

/// The firewall, comments and counters removed.
fn firewall(r: &RealRunner) -> String {
    let mut out = String::new();
    for argv in [
        &["nft", "list", "ruleset"][..],
        &["iptables-save"][..],
        &["ip6tables-save"][..],
    ] {
        let o = r.run_argv(argv).unwrap();
        for l in o.stdout.lines() {
            if l.starts_with('#') {
                continue;
            }
            let l = match l.rfind(" [") {
                Some(i) if l.starts_with(':') => &l[..i],
                _ => l,
            };
            let words: Vec<&str> = l.split(' ').collect();
            let mut w = Vec::new();
            let mut i = 0;
            while i < words.len() {
                w.push(words[i]);
                if (words[i] == "packets" || words[i] == "bytes") && i + 1 < words.len() {
                    w.push("0");
                    i += 1;
                }
                i += 1;
            }
            out.push_str(&w.join(" "));
            out.push('\n');
        }
    }
    out
}

fn run(backend: Backend) {
    enter_fresh_thread_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = RealRunner::new();
    let runner: Arc<dyn Runner> = Arc::new(RealRunner::new());
    let cfg = || {
        DriverConfig::new(
            dir.path().join("config"),
            dir.path().join("state"),
            runner.clone(),
        )
        .with_backend(backend)
        .with_layout(Layout::Batched)
    };
    let d = Driver::open(cfg()).unwrap();
    d.define(NET).unwrap();
    // Warm-up: the shared part (kept, like libvirt's private chains).
    let first = d.start("bt");
    if let Err(e) = &first {
        // nftables on a kernel without act_csum: libvirt's checksum filter.
        assert_eq!(backend, Backend::Nftables, "{e}");
        assert!(e.to_string().contains("csum"), "{e}");
        let before = firewall(&r);
        let e2 = d.start("bt").unwrap_err();
        assert!(e2.to_string().contains("csum"), "{e2}");
        assert_eq!(before, firewall(&r), "a failed start left something");
        assert!(!firewall(&r).contains("vnbt0"));
        println!("nftables: kernel lacks act_csum; the failed batched start left nothing");
        return;
    }
    d.destroy("bt").unwrap();
    let before = firewall(&r);
    assert!(!before.contains("vnbt0"), "{before}");
    d.start("bt").unwrap();
    let started = firewall(&r);
    match backend {
        Backend::Nftables => {
            assert!(started.contains("chain net_vnbt0_in"), "{started}");
            assert!(
                started.contains("\"vnbt0\" : jump net_vnbt0_in"),
                "{started}"
            );
            assert!(
                started.contains("10.77.0.0/24 : jump net_vnbt0_nat"),
                "{started}"
            );
        }
        _ => {
            assert!(
                started.contains("-A LIBVIRT_FWI -o vnbt0 -j VIRTNET_vnbt0_FWI"),
                "{started}"
            );
            assert!(
                started.contains("-A VIRTNET_vnbt0_PRT -s 10.77.0.0/24"),
                "{started}"
            );
            assert!(started.contains(":VIRTNET_vnbt0_FWO -\n"), "{started}");
        }
    }
    drop(d);
    // Daemon restart: the same rules, once.
    let d = Driver::open(cfg()).unwrap();
    let rep = d.reconcile().unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!(firewall(&r), started, "restart changed the firewall");
    d.destroy("bt").unwrap();
    let after = firewall(&r);
    assert_eq!(before, after, "destroy left something");
}

#[test]
fn batched_start_restart_destroy_on_the_real_kernel() {
    if let Some(why) = cannot_run(&[
        "nft",
        "iptables",
        "ip6tables",
        "iptables-restore",
        "ip",
        "tc",
    ]) {
        skip(&why);
        return;
    }
    for backend in [Backend::Iptables, Backend::Nftables] {
        std::thread::spawn(move || run(backend))
            .join()
            .unwrap_or_else(|_| panic!("{backend}: failed"));
    }
}
