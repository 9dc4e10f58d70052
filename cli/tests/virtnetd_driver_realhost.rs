//! virtnetd with `--host real` in a throw-away network namespace (`unshare
//! -n`), socket activated, driven through `virtnet --connect` from outside
//! the namespace (UNIX sockets are reached by path): the network's bridge,
//! iptables rules and dnsmasq appear in the namespace on start and are gone
//! after destroy. Prints "skipped: <why>" without root or the tools.

mod virtnetd_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use virtnetd_support::*;

fn missing_requirement() -> Option<String> {
    if let Some(why) = virtnet_testkit::cannot_run(&[
        "unshare",
        "nsenter",
        "iptables",
        "iptables-save",
        "ip",
        "dnsmasq",
        "pgrep",
    ]) {
        return Some(why);
    }
    if !has_socket_activate() {
        return Some(format!("{SOCKET_ACTIVATE} not installed"));
    }
    None
}

fn in_netns(pid: i32, argv: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(argv)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn virtnet(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(VIRTNET)
        .arg("--connect")
        .arg(format!("unix:{}", sock.display()))
        .args(args)
        .output()
        .unwrap();
    outcome(out)
}

/// virtnetd with `--host real` in a fresh network namespace (`unshare -n`),
/// under systemd-socket-activate with the three named sockets in
/// `ROOT/listen/{rw,ro,admin}`; the iptables backend, since this project's
/// reference kernel lacks the tc act_csum action the nftables backend needs
/// (libvirt fails the same way). Killed on drop.
struct RealDaemon {
    /// First, so that the daemon is gone before its directories.
    proc_: Proc,
    rw: PathBuf,
    ro: PathBuf,
    /// `daemon.status` as the first connection (which starts the daemon) got it.
    status: serde_json::Value,
    dirs: Dirs,
}

impl RealDaemon {
    /// Started with `extra` arguments after the directories, and answering
    /// on its admin socket.
    fn start(extra: &[&str]) -> RealDaemon {
        let dirs = Dirs::new();
        let root = dirs.root();
        let l = root.join("listen");
        std::fs::create_dir_all(&l).unwrap();
        let (rw, ro, admin) = (l.join("rw"), l.join("ro"), l.join("admin"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/network.conf"),
            "firewall_backend = \"iptables\"\n",
        )
        .unwrap();
        let mut cmd = virtnet_testkit::command_in_fresh_netns(SOCKET_ACTIVATE);
        cmd.args(["-l", &rw.display().to_string()])
            .args(["-l", &ro.display().to_string()])
            .args(["-l", &admin.display().to_string()])
            .arg(format!("--fdname={ACTIVATION_NAMES}"))
            .arg(VIRTNETD)
            .args(["--host", "real"])
            .args(["--config-dir", &root.join("etc").display().to_string()])
            .args(["--state-dir", &root.join("state").display().to_string()])
            .args(["--runtime-dir", &root.join("run").display().to_string()])
            .args(extra);
        cmd.env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES");
        let mut proc_ = Proc::spawn(cmd, root.join("daemon.log"));
        wait_for_path(&admin, &mut proc_);
        let mut c = connect(&admin);
        let status = c.call("daemon.status", serde_json::json!({})).unwrap();
        RealDaemon {
            proc_,
            rw,
            ro,
            status,
            dirs,
        }
    }
}

const XML: &str = "<network>
  <name>realnet</name>
  <forward mode='nat'/>
  <bridge name='vnreal0' stp='on' delay='0'/>
  <ip address='192.168.150.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.150.2' end='192.168.150.254'/>
    </dhcp>
  </ip>
</network>
";

#[test]
fn real_host_start_and_destroy_through_the_daemon() {
    if let Some(why) = missing_requirement() {
        virtnet_testkit::skip(&why);
        return;
    }
    let d = RealDaemon::start(&["--log-level", "debug"]);
    let (root, p, rw, ro, st) = (d.dirs.root(), &d.proc_, &d.rw, &d.ro, &d.status);
    // unshare and systemd-socket-activate exec: the daemon has this pid.
    assert_eq!(st["pid"], p.pid(), "{st}");
    assert_eq!(st["driver"]["backend"], "iptables", "{st}");
    let pid = p.pid();

    let xml = root.join("realnet.xml");
    std::fs::write(&xml, XML).unwrap();
    let r = virtnet(rw, &["net-define", &xml.display().to_string()]);
    assert_eq!(r.0, 0, "{}", r.2);
    let r = virtnet(rw, &["net-start", "realnet"]);
    let log = p.stderr();
    assert_eq!(r.0, 0, "{}\n{log}", r.2);
    let ruleset = in_netns(pid, &["iptables-save"]);
    assert!(ruleset.contains("-s 192.168.150.0/24"), "{ruleset}");
    let procs = Command::new("pgrep")
        .args(["-f", "dnsmasq/realnet.conf"])
        .output()
        .unwrap();
    assert!(procs.status.success(), "dnsmasq runs for the network");
    let links = in_netns(pid, &["ip", "-br", "link"]);
    assert!(links.contains("vnreal0"), "{links}");
    let info = virtnet(ro, &["net-info", "--json", "realnet"]);
    assert!(info.1.contains("\"active\": true"), "{info:?}");
    // Outside the namespace nothing of it exists.
    let outside = Command::new("ip").args(["-br", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&outside.stdout).contains("vnreal0"));

    let r = virtnet(rw, &["net-destroy", "realnet"]);
    assert_eq!(r.0, 0, "{}\n{}", r.2, p.stderr());
    let ruleset = in_netns(pid, &["iptables-save"]);
    assert!(!ruleset.contains("192.168.150"), "{ruleset}");
    let procs = Command::new("pgrep")
        .args(["-f", "dnsmasq/realnet.conf"])
        .output()
        .unwrap();
    assert!(!procs.status.success(), "dnsmasq stopped");
    let links = in_netns(pid, &["ip", "-br", "link"]);
    assert!(!links.contains("vnreal0"), "{links}");
    let r = virtnet(rw, &["net-undefine", "realnet"]);
    assert_eq!(r.0, 0, "{}", r.2);
}

/// Stops what a test started in its namespace however it ends: the
/// network (through the daemon, still running when this drops) and, if
/// that failed, every dnsmasq named by a pid file of the state directory.
struct NetGuard<'a> {
    rw: &'a Path,
    name: &'a str,
    state: std::path::PathBuf,
}

impl Drop for NetGuard<'_> {
    fn drop(&mut self) {
        let _ = virtnet(self.rw, &["net-destroy", self.name]);
        if let Ok(rd) = std::fs::read_dir(&self.state) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "pid") {
                    if let Ok(pid) = std::fs::read_to_string(e.path()) {
                        let _ = Command::new("kill").arg(pid.trim()).status();
                    }
                }
            }
        }
    }
}

/// `--check-interval 1 --check-repair`: after `nft flush ruleset` in the
/// daemon's namespace, the daemon finds the drift on its own, logs it and
/// restores the network's rules; `virtnet check` through the read-only
/// socket then reports nothing drifted.
#[test]
fn real_host_periodic_check_repairs_a_flushed_firewall() {
    if let Some(why) = missing_requirement() {
        virtnet_testkit::skip(&why);
        return;
    }
    let d = RealDaemon::start(&[
        "--check-interval",
        "1",
        "--check-repair",
        "--log-level",
        "info",
    ]);
    let (root, p, rw, ro) = (d.dirs.root(), &d.proc_, &d.rw, &d.ro);
    let pid = p.pid();
    let xml = root.join("realchk.xml");
    std::fs::write(
        &xml,
        XML.replace("realnet", "realchk")
            .replace("vnreal0", "vnchk0")
            .replace("192.168.150.", "192.168.151."),
    )
    .unwrap();
    let r = virtnet(rw, &["net-define", &xml.display().to_string()]);
    assert_eq!(r.0, 0, "{}", r.2);
    let r = virtnet(rw, &["net-start", "realchk"]);
    assert_eq!(r.0, 0, "{}\n{}", r.2, p.stderr());
    let _guard = NetGuard {
        rw,
        name: "realchk",
        state: root.join("state"),
    };
    let good = in_netns(pid, &["iptables-save"]);
    assert!(good.contains("-s 192.168.151.0/24"), "{good}");
    in_netns(pid, &["nft", "flush", "ruleset"]);
    // The daemon checks every second: wait (bounded) for its repair.
    let mut now = String::new();
    for _ in 0..300 {
        now = in_netns(pid, &["iptables-save"]);
        if now.contains("-s 192.168.151.0/24") && p.stderr().contains("drift found") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        now.contains("-s 192.168.151.0/24"),
        "not repaired:\n{now}\n{}",
        p.stderr()
    );
    assert!(p.stderr().contains("drift found"), "{}", p.stderr());
    let r = virtnet(ro, &["check"]);
    assert_eq!(r.0, 0, "{}{}", r.1, r.2);
    assert!(r.1.contains("none drifted"), "{}", r.1);
}
