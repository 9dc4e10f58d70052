//! Real host: `net-update` on a running NAT network with the real tools,
//! in a fresh network namespace of a test thread (iptables backend; the
//! nftables one needs tc `act_csum`, which this project's reference kernel
//! lacks). The real dnsmasq:
//!
//! - `dns-host` add: the same dnsmasq process (pid) answers a DNS query
//!   for the new name after its SIGHUP — it really re-read its addnhosts;
//! - `ip-dhcp-host` add: the hosts file has the host and the same process
//!   runs (refresh, not restart); the firewall rules were made again;
//! - `dns-txt` add: a new dnsmasq (restart) whose configuration has the
//!   record, answering DNS;
//! - the bridge is never taken down (same ifindex, still UP);
//! - destroy leaves no dnsmasq, bridge or rule of the network.
//!
//! Prints "skipped: ..." when not root or a tool is missing.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use virtnet_core::driver::{Driver, DriverConfig, UpdateFlags};
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{UpdateCommand as C, UpdateSection as S};
use virtnet_runner::{find_in_path, RealRunner, Runner};

const NET: &str = "<network>
  <name>upd</name>
  <forward mode='nat'/>
  <bridge name='vnupd0'/>
  <ip address='192.168.231.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.231.10' end='192.168.231.20'/>
    </dhcp>
  </ip>
</network>
";

/// An A query for `name` to 192.168.231.1:53; the first A record's address.
fn resolve(name: &str) -> Option<Ipv4Addr> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, "192.168.231.1:53").ok()?;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    let ancount = u16::from_be_bytes([buf[6], buf[7]]);
    if ancount == 0 || n < 4 {
        return None;
    }
    // The answer section's first record ends with its 4-byte address
    // (a single A answer is the last thing in the packet).
    let a = &buf[n - 4..n];
    Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
}

/// [`resolve`] until it answers, at most 5 s: dnsmasq handles a SIGHUP
/// in its main loop, after the signal was sent (kill(2) returns at once,
/// as libvirt's does; the `kill` process the driver once spawned hid
/// most of that delay).
fn resolve_soon(name: &str) -> Option<Ipv4Addr> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = resolve(name);
        if r.is_some() || std::time::Instant::now() >= deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sh(argv: &[&str]) -> String {
    RealRunner::new()
        .run_argv(argv)
        .map(|o| o.stdout)
        .unwrap_or_default()
}

fn pid_of(state: &std::path::Path) -> String {
    std::fs::read_to_string(state.join("upd.pid"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A zombie is not alive: dnsmasq daemonises, and the init it is
/// reparented to may not reap it at once (or ever, in a container).
fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists() && !virtnet_runner::proc_is_zombie(pid)
}

fn link_line() -> String {
    sh(&["ip", "-o", "link", "show", "dev", "vnupd0"])
}

#[test]
fn live_updates_reach_the_real_dnsmasq_without_taking_the_bridge_down() {
    if let Some(why) = virtnet_testkit::cannot_run(&["dnsmasq", "iptables", "ip"]) {
        virtnet_testkit::skip(&why);
        return;
    }
    let r = std::thread::spawn(|| {
        virtnet_testkit::netns::enter_fresh_thread_netns().map_err(|e| format!("unshare: {e}"))?;
        RealRunner::new()
            .run_argv_checked(&["ip", "link", "set", "lo", "up"])
            .map_err(|e| e.to_string())?;
        inner();
        Ok::<(), String>(())
    })
    .join();
    match r {
        Ok(Ok(())) => {}
        Ok(Err(why)) => virtnet_testkit::skip(&why),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Kills the network's dnsmasq if the test fails half way.
struct Cleanup(Arc<Driver>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.destroy("upd");
    }
}

fn inner() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run");
    std::fs::create_dir_all(&state).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = DriverConfig::new(
        dir.path().join("cfg"),
        &state,
        Arc::new(RealRunner::new()) as Arc<dyn Runner>,
    )
    .with_backend(Backend::Iptables);
    cfg.leases_helper = find_in_path("true").unwrap().to_string_lossy().to_string();
    let d = Arc::new(Driver::open(cfg).unwrap());
    d.define(NET).unwrap();
    d.start("upd").unwrap();
    let _cleanup = Cleanup(d.clone());
    let link = link_line();
    let ifindex = link.split(':').next().unwrap().to_string();
    let pid = pid_of(&state);
    assert!(alive(&pid), "dnsmasq {pid} runs");
    assert_eq!(resolve("cake.example"), None);

    // dns-host: refresh; the same process now knows the name.
    d.update(
        "upd",
        C::AddLast,
        S::DnsHost,
        -1,
        "<host ip='192.168.231.77'><hostname>cake.example</hostname></host>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    assert_eq!(pid_of(&state), pid, "refresh keeps the process");
    assert!(alive(&pid));
    assert_eq!(
        resolve_soon("cake.example"),
        Some(Ipv4Addr::new(192, 168, 231, 77))
    );

    // ip-dhcp-host: the hosts file, the same process, the rules made again.
    d.update(
        "upd",
        C::AddLast,
        S::IpDhcpHost,
        -1,
        "<host mac='52:54:00:aa:bb:cc' name='guest' ip='192.168.231.50'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    let hosts = std::fs::read_to_string(state.join("dnsmasq/upd.hostsfile")).unwrap();
    assert_eq!(hosts, "52:54:00:aa:bb:cc,192.168.231.50,guest\n");
    assert_eq!(pid_of(&state), pid);
    assert!(alive(&pid));
    let rules = sh(&["iptables-save"]);
    assert!(
        rules.contains("-A LIBVIRT_FWO -s 192.168.231.0/24 -i vnupd0 -j ACCEPT"),
        "{rules}"
    );
    // Made again, not added twice.
    assert_eq!(
        rules
            .matches("-A LIBVIRT_FWO -s 192.168.231.0/24 -i vnupd0 -j ACCEPT")
            .count(),
        1,
        "{rules}"
    );
    let status = std::fs::read_to_string(state.join("upd.xml")).unwrap();
    assert!(
        status.contains("name='guest'") && status.contains("fwRemoval"),
        "{status}"
    );

    // dns-txt: a restart; the new dnsmasq serves the old names too.
    d.update(
        "upd",
        C::AddLast,
        S::DnsTxt,
        -1,
        "<txt name='info' value='hello'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    let pid2 = pid_of(&state);
    assert_ne!(pid2, pid);
    assert!(!alive(&pid), "the old dnsmasq is gone");
    assert!(alive(&pid2));
    let conf = std::fs::read_to_string(state.join("dnsmasq/upd.conf")).unwrap();
    assert!(conf.contains("txt-record=info,hello"), "{conf}");
    assert_eq!(
        resolve_soon("cake.example"),
        Some(Ipv4Addr::new(192, 168, 231, 77))
    );

    // The bridge stayed: same index, still up.
    let now = link_line();
    assert_eq!(now.split(':').next().unwrap(), ifindex, "{now}");
    assert!(now.contains("UP"), "{now}");

    d.destroy("upd").unwrap();
    // Destroy sends SIGTERM and does not wait: give it a bounded moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(&pid2) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(&pid2), "dnsmasq {pid2} exited after destroy");
    assert!(link_line().is_empty());
    assert!(!sh(&["iptables-save"]).contains("192.168.231."));
}
