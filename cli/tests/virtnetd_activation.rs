//! The real virtnetd under real socket activation (systemd-socket-activate):
//! named sockets, unnamed sockets (found by path), a name count mismatch
//! (libvirt: error, then own sockets), unclaimed and unidentifiable
//! descriptors (exit status 6).

#[macro_use]
mod virtnetd_support;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use virtnet_daemon::{Client, ErrorCode, SocketKind};
use virtnetd_support::*;

fn socket_summary(status: &Value) -> Vec<(String, String, bool)> {
    status["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["path"].as_str().unwrap_or("").to_owned(),
                s["activated"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn named_sockets_are_claimed() {
    require_activate!();
    let dirs = Dirs::new();
    // Listen somewhere else than the runtime dir: the daemon must serve what
    // it was given and create nothing itself.
    let l = dirs.root().join("listen");
    std::fs::create_dir_all(&l).unwrap();
    let paths: Vec<PathBuf> = ["rw", "ro", "admin"].iter().map(|n| l.join(n)).collect();
    let mut p = spawn_activated(&dirs, &paths, Some(ACTIVATION_NAMES), &[], &[]);
    wait_for_path(&paths[2], &mut p);
    let mut admin = connect(&paths[2]);
    let st = admin.call("daemon.status", json!({})).unwrap();
    assert_eq!(st["activated"], true, "{st}");
    assert_eq!(
        st["pid"],
        p.pid(),
        "systemd-socket-activate execs the daemon"
    );
    let want: Vec<(String, String, bool)> = [
        ("virtnetd.socket", &paths[0]),
        ("virtnetd-ro.socket", &paths[1]),
        ("virtnetd-admin.socket", &paths[2]),
    ]
    .iter()
    .map(|(n, p)| (n.to_string(), p.display().to_string(), true))
    .collect();
    assert_eq!(socket_summary(&st), want);
    for kind in SocketKind::ALL {
        assert!(
            !dirs.sock(kind).exists(),
            "no own {kind} socket when activated"
        );
    }

    // The read-only socket refuses changes; reads reach the driver.
    let mut ro = connect(&paths[1]);
    let e = ro
        .call("net.start", json!({"name": "default"}))
        .unwrap_err();
    assert_eq!(e.remote().unwrap().kind(), Some(ErrorCode::ReadOnly));
    assert_eq!(ro.call("net.list", json!({})).unwrap(), json!([]));
    let mut rw = connect(&paths[0]);
    let e = rw
        .call("net.define", json!({"xml": "<network/>"}))
        .unwrap_err();
    let r = e.remote().unwrap();
    assert_eq!(
        r.code,
        virtnet_daemon::driver_codes::INVALID_DEFINITION,
        "{}",
        r.message
    );

    drop((admin, ro, rw));
    p.signal(Signal::SIGTERM);
    let st = p
        .wait_exit(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", p.stderr());
    let log = p.stderr();
    assert!(log.contains("socket activated"), "{log}");
}

#[test]
fn unnamed_sockets_found_by_path() {
    require_activate!();
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.runtime()).unwrap();
    // Order differs from the daemon's own order on purpose; admin left out.
    let paths = vec![
        dirs.sock(SocketKind::ReadOnly),
        dirs.sock(SocketKind::ReadWrite),
    ];
    let mut p = spawn_activated(&dirs, &paths, None, &[], &[]);
    wait_for_path(&paths[1], &mut p);
    let mut rw = connect(&paths[1]);
    let e = rw.call("daemon.status", json!({})).unwrap_err();
    assert_eq!(e.remote().unwrap().kind(), Some(ErrorCode::WrongSocket));
    let mut ro = connect(&paths[0]);
    let e = ro.call("net.destroy", json!({"name": "x"})).unwrap_err();
    assert_eq!(e.remote().unwrap().kind(), Some(ErrorCode::ReadOnly));
    // No admin socket was passed, so there is none (no fallback to our own).
    assert!(!dirs.sock(SocketKind::Admin).exists());
    p.signal(Signal::SIGINT);
    assert_eq!(
        p.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0),
        "{}",
        p.stderr()
    );
    assert!(p.stderr().contains("Addresses"), "{}", p.stderr());
}

#[test]
fn name_count_mismatch_falls_back_to_own_sockets() {
    require_activate!();
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.runtime()).unwrap();
    let paths: Vec<PathBuf> = SocketKind::ALL.iter().map(|&k| dirs.sock(k)).collect();
    let mut p = spawn_activated(
        &dirs,
        &paths,
        None,
        &["LISTEN_FDNAMES=virtnetd.socket:virtnetd-ro.socket"],
        &[],
    );
    wait_for_path(&paths[2], &mut p);
    // Trigger the start; this connection dies with the closed descriptors.
    let _trigger = UnixStream::connect(&paths[2]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let attempt = Client::connect(&paths[2]).and_then(|mut c| {
            c.set_timeout(Some(Duration::from_secs(5)))?;
            c.call("daemon.status", json!({}))
        });
        match attempt {
            Ok(st) if st["activated"] == false => break st,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!(
                "daemon never served its own sockets: {other:?}\n{}",
                p.stderr()
            ),
        }
    };
    assert_eq!(socket_summary(&st).len(), 3);
    let log = p.stderr();
    assert!(log.contains("Expecting 3 FD names but got 2"), "{log}");
    assert!(log.contains("creating own sockets instead"), "{log}");
    p.signal(Signal::SIGTERM);
    assert_eq!(
        p.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

/// Connects to `trigger` (which starts the daemon) and waits, 20 s at
/// most, for the daemon to exit with status 6; returns its log.
fn exits_with_status_6(p: &mut Proc, trigger: &Path) -> String {
    let _trigger = connect_stream(trigger);
    let st = p
        .wait_exit(Duration::from_secs(20))
        .expect("daemon must exit");
    assert_eq!(st.code(), Some(6), "{}", p.stderr());
    p.stderr()
}

#[test]
fn unclaimed_descriptor_exits_with_status_6() {
    require_activate!();
    let dirs = Dirs::new();
    let l = dirs.root().join("listen");
    std::fs::create_dir_all(&l).unwrap();
    let paths = vec![l.join("a"), l.join("b")];
    let mut p = spawn_activated(
        &dirs,
        &paths,
        Some("virtnetd.socket:bogus.socket"),
        &[],
        &[],
    );
    wait_for_path(&paths[1], &mut p);
    let log = exits_with_status_6(&mut p, &paths[0]);
    assert!(log.contains("unclaimed: bogus.socket"), "{log}");
}

#[test]
fn unidentifiable_descriptor_exits_with_status_6() {
    require_activate!();
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.runtime()).unwrap();
    let stranger = dirs.root().join("stranger-sock");
    let paths = vec![dirs.sock(SocketKind::ReadWrite), stranger.clone()];
    let mut p = spawn_activated(&dirs, &paths, None, &[], &[]);
    wait_for_path(&stranger, &mut p);
    let log = exits_with_status_6(&mut p, &paths[0]);
    assert!(
        log.contains("Cannot find name for activation fd 4"),
        "{log}"
    );
    assert!(log.contains("stranger-sock"), "{log}");
}

#[test]
fn activated_daemon_honours_idle_timeout() {
    require_activate!();
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.runtime()).unwrap();
    let paths: Vec<PathBuf> = SocketKind::ALL.iter().map(|&k| dirs.sock(k)).collect();
    let mut p = spawn_activated(
        &dirs,
        &paths,
        Some(ACTIVATION_NAMES),
        &[],
        &["--timeout", "1"],
    );
    wait_for_path(&paths[2], &mut p);
    {
        let mut admin = connect(&paths[2]);
        let st = admin.call("daemon.status", json!({})).unwrap();
        assert_eq!(st["idle_timeout_seconds"], 1);
    }
    let st = p.wait_exit(Duration::from_secs(10)).expect("idle exit");
    assert_eq!(st.code(), Some(0));
    // Activation sockets belong to the service manager: left in place.
    assert!(paths[0].exists());
}
