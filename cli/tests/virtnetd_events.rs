//! `virtnet net-event` against the real virtnetd (own sockets, simulated
//! host): the lines virsh prints for define/start/destroy/undefine, the
//! one-shot and `--loop` forms, Ctrl-C and `--timeout` endings, a filter by
//! network, `--json`, `--list`, virsh's refusals, and the refusal without
//! `--connect`.

mod virtnetd_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use virtnet_daemon::SocketKind;
use virtnetd_support::*;

const NET_A: &str = "<network>\n  <name>evA</name>\n  <uuid>5a1c1b7e-0000-4000-8000-00000000000a</uuid>\n  <bridge name='virbr31'/>\n  <ip address='192.168.131.1' netmask='255.255.255.0'/>\n</network>\n";
const NET_B: &str = "<network>\n  <name>evB</name>\n  <uuid>5a1c1b7e-0000-4000-8000-00000000000b</uuid>\n  <bridge name='virbr32'/>\n  <ip address='192.168.132.1' netmask='255.255.255.0'/>\n</network>\n";

struct D {
    dirs: Dirs,
    _proc: Proc,
}

impl D {
    fn start() -> D {
        let dirs = Dirs::new();
        let mut p = spawn_daemon(&dirs, &[], &[]);
        wait_for_path(&dirs.sock(SocketKind::Admin), &mut p);
        std::fs::write(dirs.root().join("a.xml"), NET_A).unwrap();
        std::fs::write(dirs.root().join("b.xml"), NET_B).unwrap();
        D { dirs, _proc: p }
    }

    fn uri(&self, kind: SocketKind) -> String {
        format!("unix:{}", self.dirs.sock(kind).display())
    }

    fn file(&self, n: &str) -> String {
        self.dirs.root().join(n).display().to_string()
    }

    /// `virtnet --connect RW ARGS`, which must succeed.
    fn ok(&self, args: &[&str]) {
        let u = self.uri(SocketKind::ReadWrite);
        let out = Command::new(VIRTNET)
            .args(["--connect", &u])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }

    fn subscribers(&self) -> u64 {
        let mut c = connect(&self.dirs.sock(SocketKind::Admin));
        let st = c.call("daemon.status", json!({})).unwrap();
        st["driver"]["event_subscribers"].as_u64().unwrap_or(0)
    }

    /// Starts `virtnet net-event ARGS` on `kind`'s socket and waits until
    /// the daemon has `n` subscribers.
    fn watch(&self, kind: SocketKind, args: &[&str], n: u64) -> Child {
        let u = self.uri(kind);
        let child = Command::new(VIRTNET)
            .args(["--connect", &u, "net-event"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.subscribers() < n {
            assert!(Instant::now() < deadline, "net-event never subscribed");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }
}

fn finish(child: Child) -> (i32, String, String) {
    outcome(child.wait_with_output().unwrap())
}

#[test]
fn loop_prints_virshs_lines_for_the_whole_lifecycle_until_interrupted() {
    let d = D::start();
    let mut w = d.watch(
        SocketKind::ReadWrite,
        &["--loop", "--event", "lifecycle"],
        1,
    );
    d.ok(&["net-define", &d.file("a.xml")]);
    d.ok(&["net-start", "evA"]);
    d.ok(&["net-destroy", "evA"]);
    d.ok(&["net-undefine", "evA"]);
    // Read the four lines as they come, then Ctrl-C.
    let mut out = BufReader::new(w.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l);
    }
    assert_eq!(
        lines.concat(),
        "event 'lifecycle' for network evA: Defined\n\
         event 'lifecycle' for network evA: Started\n\
         event 'lifecycle' for network evA: Stopped\n\
         event 'lifecycle' for network evA: Undefined\n"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = w.wait().unwrap();
    assert_eq!(rest, "event loop interrupted\nevents received: 4\n");
    assert_eq!(status.code(), Some(0));
    // The subscription ended with the client.
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.subscribers() != 0 {
        assert!(
            Instant::now() < deadline,
            "subscription outlived its client"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_shot_filter_json_timeout_and_read_only_socket() {
    let d = D::start();
    // One-shot on the read-only socket, filtered to evB: evA's define is
    // not reported; evB's is, and ends the wait.
    d.ok(&["net-define", &d.file("b.xml")]);
    let one = d.watch(SocketKind::ReadOnly, &["evB", "--event", "lifecycle"], 1);
    let js = d.watch(
        SocketKind::ReadWrite,
        &["--event", "lifecycle", "--json", "--loop", "--timeout", "3"],
        2,
    );
    d.ok(&["net-define", &d.file("a.xml")]);
    d.ok(&["net-start", "evB"]);
    let (code, out, err) = finish(one);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            0,
            "event 'lifecycle' for network evB: Started\nevents received: 1\n",
            ""
        )
    );
    let (code, out, err) = finish(js);
    assert_eq!(code, 0, "{err}");
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        evs,
        [
            json!({"event":"lifecycle","name":"evA","uuid":"5a1c1b7e-0000-4000-8000-00000000000a","kind":"defined","code":0}),
            json!({"event":"lifecycle","name":"evB","uuid":"5a1c1b7e-0000-4000-8000-00000000000b","kind":"started","code":2}),
        ]
    );
    // Nothing happens: the timeout, virsh's lines, exit status 1.
    let w = d.watch(
        SocketKind::ReadWrite,
        &["--event", "lifecycle", "--timeout", "1"],
        1,
    );
    assert_eq!(
        finish(w),
        (
            1,
            "event loop timed out\nevents received: 0\n".into(),
            String::new()
        )
    );
    d.ok(&["net-destroy", "evB"]);
}

#[test]
fn refusals() {
    let d = D::start();
    let rw = d.uri(SocketKind::ReadWrite);
    let (code, out, _) = virtnet(&["--connect", &rw, "net-event", "--list"]);
    assert_eq!((code, out.as_str()), (0, "lifecycle\nmetadata-change\n"));
    for (args, msg) in [
        (
            vec!["net-event"],
            "error: either --list or --event <type> is required\n",
        ),
        (
            vec!["net-event", "--event", "reboot"],
            "error: unknown event type reboot\n",
        ),
        (
            vec!["net-event", "--event", "lifecycle", "--timeout", "0"],
            "error: Numeric value '0' for <timeout> option is malformed or out of range\n",
        ),
        (
            vec!["net-event", "nosuch", "--event", "lifecycle"],
            "error: Network not found: no network with matching name 'nosuch'\n",
        ),
    ] {
        let mut a = vec!["--connect", rw.as_str()];
        a.extend(args.iter().copied());
        let (code, out, err) = virtnet(&a);
        assert_eq!((code, out.as_str(), err.as_str()), (1, "", msg), "{args:?}");
    }
    // Without a daemon: a clear refusal naming --connect.
    let state = d.dirs.root().join("embedded");
    let s = state.display().to_string();
    let (code, out, err) = virtnet(&[
        "--host",
        "fake:/nonexistent/host",
        "--state-dir",
        &s,
        "net-event",
        "--event",
        "lifecycle",
    ]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("error: net-event needs a running virtnetd") && err.contains("--connect"),
        "{err}"
    );
    assert!(!Path::new(&state).exists(), "embedded mode touched nothing");
}
