//! One owner per state directory (issue 15, item 2), with two drivers in
//! one process: a driver that does not hold `STATE_DIR/driver.lock` waits
//! for it (bounded) and fails, re-reads the directory once it has it (no
//! bridge name handed out twice), refuses at once when a daemon holds it,
//! and a journal whose writer is alive is never rolled back.

mod driver_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use virtnet_testkit::LiveProcess;

use driver_common::*;
use virtnet_core::driver::{Driver, DriverError};
use virtnet_core::firewall::Backend;

/// A network without a bridge name: define allocates `virbrN`.
fn net(name: &str, uuid_last: u8, third: u8) -> String {
    format!(
        "<network><name>{name}</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db18{uuid_last:02x}</uuid>\
         <forward mode='nat'/><ip address='192.168.{third}.1' netmask='255.255.255.0'/></network>"
    )
}

fn driver_waiting(env: &Env, wait: Duration, seen: &Arc<Mutex<Vec<String>>>) -> Driver {
    let mut cfg = env.cfg().with_backend(Backend::Nftables);
    cfg.lock_wait = wait;
    let s = seen.clone();
    cfg.lock_notice = Some(Arc::new(move |l: &str| {
        s.lock().unwrap().push(l.to_string())
    }));
    Driver::open(cfg).unwrap()
}

#[test]
fn a_second_driver_waits_for_the_lock_then_fails_without_changing_anything() {
    let env = Env::new();
    let owner = env.driver(Backend::Nftables);
    assert!(owner.holds_driver_lock());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let second = driver_waiting(&env, Duration::from_millis(300), &seen);
    assert!(!second.holds_driver_lock());
    let e = second.define(&net("n1", 1, 101)).unwrap_err();
    assert!(matches!(e, DriverError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("driver.lock"), "{e}");
    assert!(e.to_string().contains("nothing was changed"), "{e}");
    let pid = format!("held by pid {}", std::process::id());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains(&pid), "{seen:?}");
    assert!(!env.config_dir().join("n1.xml").exists());
    // Every change is refused, not only define.
    for r in [
        second.start("n1"),
        second.destroy("n1"),
        second.set_autostart("n1", true),
        second.undefine("n1"),
        second.reconcile().map(|_| ()),
    ] {
        assert!(matches!(r, Err(DriverError::Locked { .. })), "{r:?}");
    }
    // Queries need no lock.
    assert!(second.list().is_empty());
}

#[test]
fn two_drivers_never_hand_out_the_same_bridge_name() {
    let env = Env::new();
    let first = env.driver(Backend::Nftables);
    // Opened before the first defines anything: its view is stale.
    let second = driver_waiting(&env, Duration::from_secs(60), &Arc::default());
    let a = first.define(&net("a", 1, 101)).unwrap();
    assert_eq!(a.bridge.name.as_deref(), Some("virbr0"));
    first.start("a").unwrap();
    drop(first);
    let b = second.define(&net("b", 2, 102)).unwrap();
    assert_eq!(b.bridge.name.as_deref(), Some("virbr1"));
    // And it sees the first one's running network as its own now.
    assert!(second.info("a").unwrap().active);
    second.start("b").unwrap();
    second.destroy("a").unwrap();
    second.destroy("b").unwrap();
}

#[test]
fn a_driver_that_waited_runs_after_the_owner_is_gone() {
    let env = Env::new();
    let first = env.driver(Backend::Nftables);
    first.define(&net("a", 1, 101)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let second = driver_waiting(&env, Duration::from_secs(60), &seen);
    let t = std::thread::spawn(move || second.start("a").map(|()| second));
    // The second waits (it says so) until the first is dropped.
    for _ in 0..6000 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!seen.lock().unwrap().is_empty(), "the second never waited");
    drop(first);
    let second = t.join().unwrap().unwrap();
    assert!(second.info("a").unwrap().active);
    second.destroy("a").unwrap();
}

#[test]
fn a_daemon_holding_the_lock_makes_changes_refused_at_once() {
    let env = Env::new();
    let daemon = env.driver(Backend::Nftables);
    daemon
        .announce_daemon(std::path::Path::new("/run/virtnet/virtnetd-sock"))
        .unwrap();
    daemon.define(&net("a", 1, 101)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    // A wait that would end the test run if it happened.
    let cli = driver_waiting(&env, Duration::from_secs(3600), &seen);
    let e = cli.start("a").unwrap_err();
    assert!(matches!(e, DriverError::DaemonOwns { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("--connect unix:/run/virtnet/virtnetd-sock"),
        "{e}"
    );
    assert!(seen.lock().unwrap().is_empty());
    assert!(!daemon.info("a").unwrap().active);
    assert!(env.state().ip.link("virbr0").is_none());
}

/// A journal line written by `pid` (with its start time).
fn owner_line(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    format!("{{\"note\":\"owner\",\"key\":\"{pid}\",\"value\":\"{start}\"}}\n")
}

#[test]
fn a_journal_whose_writer_is_alive_is_not_rolled_back() {
    let env = Env::new();
    env.host
        .exec(
            &["ip", "link", "add", "name", "virbr7", "type", "bridge"],
            None,
        )
        .unwrap();
    std::fs::create_dir_all(env.state_dir()).unwrap();
    let journal = env.state_dir().join("n7.journal");
    let mut writer = LiveProcess::spawn();
    std::fs::write(
        &journal,
        owner_line(writer.pid())
            + "{\"argv\":[\"ip\",\"link\",\"add\",\"name\",\"virbr7\",\"type\",\"bridge\"],\"stdout\":\"\"}\n",
    )
    .unwrap();
    let d = env.driver(Backend::Nftables);
    assert!(d.holds_driver_lock());
    let alive = format!("written by pid {}, which is still running", writer.pid());
    assert!(
        d.reports().iter().any(|r| r.contains(&alive)),
        "{:?}",
        d.reports()
    );
    assert!(journal.exists());
    assert!(env.state().ip.link("virbr7").is_some());
    drop(d);
    writer.stop();
    // The writer is gone: the next owner undoes its work.
    let d = env.driver(Backend::Nftables);
    assert!(!journal.exists());
    assert!(env.state().ip.link("virbr7").is_none());
    assert!(
        d.reports().iter().any(|r| r.contains("undoing 1 change")),
        "{:?}",
        d.reports()
    );
}

#[test]
fn a_journal_of_this_process_names_its_owner() {
    // A crash (simulated) leaves the journal with the owner note first.
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(&net("a", 1, 101)).unwrap();
    env.faults
        .set_plan(virtnet_testkit::FaultPlan::none().crash_after(3));
    assert!(d.start("a").unwrap_err().is_crash());
    env.faults.recover();
    let text = std::fs::read_to_string(env.state_dir().join("a.journal")).unwrap();
    let first = text.lines().next().unwrap_or("");
    let want = format!("\"note\":\"owner\",\"key\":\"{}\"", std::process::id());
    assert!(first.contains(&want), "{text}");
    drop(d);
    // This process's own finished journal is recovered.
    let d = env.driver(Backend::Nftables);
    assert!(d.pending_journals().is_empty());
    assert!(env.state().ip.link("virbr0").is_none());
}

/// A process killed in the middle of an atomic write leaves its temporary
/// file (`.NAME.tmpPID`, never renamed): the driver that takes the lock
/// removes those of dead writers in the config, state and dnsmasq
/// directories and says so; a live writer's is left alone (daemon kill
/// test, stop 24's local CI: `.load0.xml.tmp31274` left after a SIGKILL).
#[test]
fn temporary_files_of_killed_writers_are_removed_at_open() {
    let env = Env::new();
    let cfg = env.cfg().with_backend(Backend::Nftables);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let me = std::process::id();
    let mut stale = Vec::new();
    for dir in [&cfg.config_dir, &cfg.state_dir, &cfg.dnsmasq_dir] {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(format!(".load0.xml.tmp{dead}"));
        std::fs::write(&p, "<network>").unwrap();
        stale.push(p);
    }
    let live = cfg.config_dir.join(format!(".load1.xml.tmp{me}"));
    std::fs::write(&live, "<network>").unwrap();
    let d = Driver::open(cfg).unwrap();
    for p in &stale {
        assert!(!p.exists(), "{} left", p.display());
        assert!(
            d.reports()
                .iter()
                .any(|r| r.contains(&p.display().to_string()) && r.contains("interrupted write")),
            "{:?}",
            d.reports()
        );
    }
    assert!(live.exists(), "a live writer's temporary file stays");
}
