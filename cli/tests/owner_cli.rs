//! One owner per state directory (issue 15, item 2), with real processes:
//! `virtnet --host fake:PATH` commands on one state directory while the
//! driver lock is held (by this test, by another `virtnet`, by virtnetd).

mod virtnetd_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use virtnet_testkit::LiveProcess;

use virtnet_core::driver::lock::DriverLock;
use virtnet_fake::{FakeHost, HostState};
use virtnetd_support::*;

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn host(&self) -> PathBuf {
        self.root().join("host")
    }
    fn etc(&self) -> PathBuf {
        self.root().join("etc")
    }
    fn state(&self) -> PathBuf {
        self.root().join("state")
    }
    fn cmd(&self, wait_secs: u64, args: &[&str]) -> Command {
        let mut c = Command::new(VIRTNET);
        c.arg("--host")
            .arg(format!("fake:{}", self.host().display()))
            .arg("--config-dir")
            .arg(self.etc())
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env("VIRTNET_LOCK_WAIT", wait_secs.to_string());
        c
    }
    fn run(&self, wait_secs: u64, args: &[&str]) -> (i32, String, String) {
        outcome(self.cmd(wait_secs, args).output().unwrap())
    }
    /// A network file without a bridge name (define allocates one).
    fn net_file(&self, name: &str, n: u8) -> String {
        let p = self.root().join(format!("{name}.xml"));
        std::fs::write(
            &p,
            format!(
                "<network><name>{name}</name>\
                 <uuid>5d2a3c1e-0000-4000-8000-0000000000{n:02x}</uuid>\
                 <forward mode='nat'/>\
                 <ip address='192.168.{}.1' netmask='255.255.255.0'/></network>\n",
                100 + n
            ),
        )
        .unwrap();
        p.display().to_string()
    }
    fn host_state(&self) -> HostState {
        HostState::load_file(&self.host()).unwrap()
    }
}

/// The start time of `pid` as a journal's owner note records it.
fn owner_line(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    format!("{{\"note\":\"owner\",\"key\":\"{pid}\",\"value\":\"{start}\"}}\n")
}

const BRIDGE7: &str =
    "{\"argv\":[\"ip\",\"link\",\"add\",\"name\",\"virbr7\",\"type\",\"bridge\"],\"stdout\":\"\"}\n";

/// A host with bridge virbr7, and a journal of network n7 (which created
/// it) written by process `pid`.
fn journal_of(d: &Dir, pid: u32) -> PathBuf {
    let h = FakeHost::new();
    h.exec(
        &["ip", "link", "add", "name", "virbr7", "type", "bridge"],
        None,
    )
    .unwrap();
    h.save(&d.host()).unwrap();
    std::fs::create_dir_all(d.state()).unwrap();
    let j = d.state().join("n7.journal");
    std::fs::write(&j, owner_line(pid) + BRIDGE7).unwrap();
    j
}

#[test]
fn a_change_waits_for_the_holder_names_it_then_fails() {
    let d = Dir::new();
    let journal = journal_of(&d, std::process::id());
    let held = DriverLock::try_take(&d.state()).unwrap().unwrap();
    let xml = d.net_file("a", 1);
    let (code, out, err) = d.run(1, &["net-define", &xml]);
    assert_eq!(code, 1, "{out}{err}");
    let pid = std::process::id();
    assert!(
        err.contains(&format!(
            "warning: waiting up to 1 s for the driver lock {}/driver.lock, held by pid {pid}",
            d.state().display()
        )),
        "{err}"
    );
    assert!(
        err.contains("gave up after waiting 1 s for it, nothing was changed"),
        "{err}"
    );
    assert!(!d.etc().join("a.xml").exists());
    // A query runs without the lock, and touches neither the journal of
    // the (live) owner nor the host.
    let (code, out, err) = d.run(1, &["net-list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Name"), "{out}");
    assert!(journal.exists());
    assert!(d.host_state().ip.link("virbr7").is_some());
    drop(held);
    // The lock is free: the change runs; the journal's writer (this
    // process) still lives, so its journal is left alone.
    let (code, _, err) = d.run(1, &["net-define", &xml]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("written by pid {pid}, which is still running")),
        "{err}"
    );
    assert!(d.etc().join("a.xml").exists());
    assert!(journal.exists());
    assert!(d.host_state().ip.link("virbr7").is_some());
}

#[test]
fn a_journal_whose_writer_lives_is_never_rolled_back() {
    let d = Dir::new();
    let mut writer = LiveProcess::spawn();
    let journal = journal_of(&d, writer.pid());
    for args in [&["net-list"][..], &["reconcile"][..]] {
        let (code, _, err) = d.run(1, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "written by pid {}, which is still running",
                writer.pid()
            )),
            "{args:?}: {err}"
        );
        assert!(journal.exists(), "{args:?}");
        assert!(d.host_state().ip.link("virbr7").is_some(), "{args:?}");
    }
    writer.stop();
    let (code, _, err) = d.run(1, &["net-list"]);
    assert_eq!(code, 0, "{err}");
    assert!(!journal.exists());
    assert!(d.host_state().ip.link("virbr7").is_none());
}

/// Waits until `path` contains `text` (a spawned command said it waits).
fn wait_for_text(path: &Path, text: &str) {
    for _ in 0..2000 {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(text)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "{} never said {text:?}: {}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// Spawns `virtnet ARGS` with stderr in a file.
fn spawn(d: &Dir, tag: &str, args: &[&str]) -> (std::process::Child, PathBuf) {
    let log = d.root().join(format!("{tag}.stderr"));
    let child = d
        .cmd(60, args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

/// Spawns the commands `a` and `b` (tag, arguments) while the driver lock
/// is held here, waits until both say they wait for it, releases it, and
/// expects both to succeed.
fn both_wait_for_the_lock_then_succeed(d: &Dir, a: (&str, &[&str]), b: (&str, &[&str])) {
    let held = DriverLock::try_take(&d.state()).unwrap().unwrap();
    let (mut a, la) = spawn(d, a.0, a.1);
    let (mut b, lb) = spawn(d, b.0, b.1);
    wait_for_text(&la, "waiting up to 60 s");
    wait_for_text(&lb, "waiting up to 60 s");
    drop(held);
    assert!(
        a.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&la).unwrap()
    );
    assert!(
        b.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&lb).unwrap()
    );
}

#[test]
fn concurrent_defines_and_first_starts_never_collide() {
    let d = Dir::new();
    let (xa, xb) = (d.net_file("a", 1), d.net_file("b", 2));
    // Both defines wait for the lock held here, then run one at a time.
    both_wait_for_the_lock_then_succeed(
        &d,
        ("define-a", &["net-define", &xa]),
        ("define-b", &["net-define", &xb]),
    );
    let bridge = |n: &str| {
        let x = std::fs::read_to_string(d.etc().join(format!("{n}.xml"))).unwrap();
        let i = x.find("<bridge name='").unwrap() + 14;
        x[i..i + x[i..].find('\'').unwrap()].to_string()
    };
    let (ba, bb) = (bridge("a"), bridge("b"));
    assert_ne!(ba, bb);
    // Two first starts at once (each process sets the private chains up).
    both_wait_for_the_lock_then_succeed(
        &d,
        ("start-a", &["net-start", "a"]),
        ("start-b", &["net-start", "b"]),
    );
    let host = d.host_state();
    assert!(host.ip.link(&ba).is_some() && host.ip.link(&bb).is_some());
    assert_eq!(host.procs.procs.len(), 2, "one dnsmasq each");
    for n in ["a", "b"] {
        let (code, _, err) = d.run(60, &["net-destroy", n]);
        assert_eq!(code, 0, "{err}");
    }
    assert!(d.host_state().ip.link(&ba).is_none());
}

#[test]
fn the_embedded_cli_refuses_changes_while_virtnetd_runs() {
    let dirs = Dirs::new();
    let mut daemon = spawn_daemon(&dirs, &[], &[]);
    let rw = dirs.sock(virtnet_daemon::SocketKind::ReadWrite);
    wait_for_path(&rw, &mut daemon);
    // Served once the driver is open (and the lock file names the socket).
    connect(&rw)
        .call("net.list", serde_json::json!({}))
        .unwrap();
    let d = Dir {
        tmp: tempfile::tempdir().unwrap(),
    };
    let xml = d.net_file("a", 1);
    let embedded = |args: &[&str]| {
        let out = embedded_cmd(dirs.root())
            .args(args)
            // If the daemon were waited for, the test would fail after 20 s.
            .env("VIRTNET_LOCK_WAIT", "20")
            .output()
            .unwrap();
        outcome(out)
    };
    let (code, _, err) = embedded(&["net-define", &xml]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "is managed by virtnetd (pid {}): nothing was changed; send changes through it with --connect unix:{}",
            daemon.pid(),
            rw.display()
        )),
        "{err}"
    );
    assert!(!err.contains("waiting"), "{err}");
    assert!(!dirs.root().join("etc/a.xml").exists());
    // Queries still work, and the suggested connection does the change.
    let (code, _, err) = embedded(&["net-list"]);
    assert_eq!(code, 0, "{err}");
    let out = Command::new(VIRTNET)
        .arg("--connect")
        .arg(format!("unix:{}", rw.display()))
        .args(["net-define", &xml])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dirs.root().join("etc/a.xml").exists());
}
