//! Issue 14 item 8: output. No panic on a closed or full standard output
//! (or standard error); errors that point into a file read
//! `FILE:LINE:COL: message`; control characters from user values are shown
//! escaped, never raw, by `virtnet` and in `virtnetd`'s log.

mod virtnetd_support;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::json;
use virtnet_daemon::SocketKind;
use virtnetd_support::*;

const NET: &str = "<network>\n  <name>default</name>\n  <bridge name='virbr0'/>\n  <forward/>\n  \
<ip address='192.168.122.1' netmask='255.255.255.0'>\n    <dhcp>\n      \
<range start='192.168.122.2' end='192.168.122.254'/>\n    </dhcp>\n  </ip>\n</network>\n";

fn golden_case(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/cases")).join(name)
}

/// A pipe whose read end is already closed: every write to the other end
/// fails with EPIPE.
fn broken_pipe() -> Stdio {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    drop(r);
    Stdio::from(w)
}

fn run(args: &[&str], stdout: Stdio, stderr: Stdio) -> Output {
    Command::new(VIRTNET)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .output()
        .unwrap()
}

fn fake_args(d: &Path) -> Vec<String> {
    vec![
        "--host".into(),
        format!("fake:{}", d.join("host.json").display()),
        "--config-dir".into(),
        d.join("cfg").display().to_string(),
        "--state-dir".into(),
        d.join("run").display().to_string(),
    ]
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = d.join("net.xml");
    std::fs::write(&net, NET).unwrap();
    let fa = fake_args(d);
    let fa: Vec<&str> = fa.iter().map(String::as_str).collect();
    let define = [&fa[..], &["net-define", net.to_str().unwrap()]].concat();
    assert!(run(&define, Stdio::null(), Stdio::null()).status.success());
    let nat = golden_case("nat-default.xml");
    let nat = nat.to_str().unwrap();
    let host = format!("{}", d.join("host.json").display());
    let cases: Vec<Vec<&str>> = vec![
        vec!["xml", "format", nat],
        vec!["xml", "format", "--inactive", nat],
        vec!["rules", nat],
        vec![
            "rules",
            "--base",
            "--backend",
            "iptables",
            "--format",
            "json",
        ],
        vec!["dnsmasq", nat],
        vec!["sim", "--state", &host, "dump"],
        vec!["sim", "--state", &host, "exec", "--", "ip", "link", "show"],
        [&fa[..], &["net-list"]].concat(),
        [&fa[..], &["net-list", "--json"]].concat(),
        [&fa[..], &["net-dumpxml", "default"]].concat(),
        [&fa[..], &["net-info", "default"]].concat(),
        vec!["--help"],
        vec!["xml", "--help"],
        vec!["--version"],
    ];
    for args in &cases {
        let out = run(args, broken_pipe(), Stdio::piped());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "virtnet {args:?} panicked on a closed stdout: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "virtnet {args:?}: {stderr}");
        assert!(
            !stderr.contains("Broken pipe"),
            "virtnet {args:?} is not quiet: {stderr}"
        );
    }
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let nat = golden_case("nat-default.xml");
    for args in [
        vec!["xml", "format", nat.to_str().unwrap()],
        vec!["rules", nat.to_str().unwrap()],
        vec!["dnsmasq", nat.to_str().unwrap()],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = run(&args, Stdio::from(full), Stdio::piped());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write output: No space left on device"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_closed_stderr_does_not_turn_an_error_into_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.xml");
    std::fs::write(
        &bad,
        "<network><name>x</name><ip address='nope'/></network>",
    )
    .unwrap();
    for args in [
        vec!["xml", "validate", bad.to_str().unwrap()],
        vec!["rules", bad.to_str().unwrap()],
        vec!["dnsmasq", bad.to_str().unwrap()],
    ] {
        let out = run(&args, Stdio::null(), broken_pipe());
        // 101 would be a panic.
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}

#[test]
fn errors_into_files_read_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = d.join("bad.xml");
    std::fs::write(
        &bad,
        "<network>\n  <name>x</name>\n  <ip address='nope'/>\n</network>\n",
    )
    .unwrap();
    let b = bad.display().to_string();
    let fa = fake_args(d);
    let fa: Vec<&str> = fa.iter().map(String::as_str).collect();
    for args in [
        vec!["xml", "validate", &b],
        vec!["xml", "format", &b],
        vec!["rules", &b],
        vec!["dnsmasq", &b],
        [&fa[..], &["net-define", &b]].concat(),
    ] {
        let out = run(&args, Stdio::null(), Stdio::piped());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let at = stderr
            .find(&format!("{b}:3:"))
            .unwrap_or_else(|| panic!("{args:?}: no {b}:3:COL: in {stderr}"));
        let rest = &stderr[at + b.len() + 3..];
        let (col, _) = rest.split_once(": ").unwrap();
        assert!(col.parse::<usize>().is_ok(), "{args:?}: {stderr}");
        // Nothing was defined.
        assert!(!d.join("cfg/x.xml").exists());
    }
    // network.conf: the same form.
    std::fs::create_dir_all(d.join("cfg")).unwrap();
    std::fs::write(d.join("cfg/network.conf"), "firewall_backend = 'pf'\n").unwrap();
    let out = run(
        &[&fa[..], &["net-list"]].concat(),
        Stdio::null(),
        Stdio::piped(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:1:20: ", d.join("cfg/network.conf").display())),
        "{stderr}"
    );
}

fn assert_no_raw_controls(what: &str, text: &str) {
    for c in ['\x1b', '\r', '\x07', '\x7f'] {
        assert!(
            !text.contains(c),
            "{what}: raw {c:?} in the output: {text:?}"
        );
    }
}

#[test]
fn control_characters_in_user_values_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An attribute value with a carriage return (a legal XML character
    // reference; ESC is not, the parser refuses `&#x1b;`) and a name with ESC
    // given on the command line.
    let bad = d.join("cr.xml");
    std::fs::write(
        &bad,
        "<network><name>x</name><ip address='10.0.0.1&#13;[2J'/></network>",
    )
    .unwrap();
    let out = run(
        &["xml", "validate", bad.to_str().unwrap()],
        Stdio::null(),
        Stdio::piped(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_no_raw_controls("xml validate", &stderr);
    assert!(stderr.contains("\\r[2J"), "{stderr}");

    let fa = fake_args(d);
    let fa: Vec<&str> = fa.iter().map(String::as_str).collect();
    let name = "evil\x1b[31m\rred\x07";
    for cmd in ["net-start", "net-destroy", "net-info", "net-dumpxml"] {
        let out = run(
            &[&fa[..], &[cmd, name]].concat(),
            Stdio::null(),
            Stdio::piped(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {stderr}");
        assert_no_raw_controls(cmd, &stderr);
        assert!(
            stderr.contains("evil\\x1b[31m\\rred\\x07"),
            "{cmd}: {stderr}"
        );
    }
    // A file name with control characters, in a read error.
    let weird = d.join("no\x1bsuch\r.xml");
    let out = run(
        &["rules", weird.to_str().unwrap()],
        Stdio::null(),
        Stdio::piped(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_no_raw_controls("rules", &stderr);
    assert!(stderr.contains("no\\x1bsuch\\r.xml"), "{stderr}");
}

#[test]
fn virtnetd_logs_control_characters_escaped() {
    let dirs = Dirs::new();
    let mut p = spawn_daemon(&dirs, &[], &[]);
    wait_for_path(&dirs.sock(SocketKind::ReadOnly), &mut p);
    let mut c = connect(&dirs.sock(SocketKind::ReadOnly));
    let name = "evil\x1b[31m\rred";
    assert!(c.call("net.info", json!({ "name": name })).is_err());
    // A read-write method on the read-only socket is refused and logged
    // at warn with the peer; the name is in the debug log of the error.
    assert!(c.call("net.start", json!({ "name": name })).is_err());
    drop(c);
    p.signal(nix::sys::signal::Signal::SIGTERM);
    p.wait_exit(std::time::Duration::from_secs(20))
        .expect("virtnetd did not stop");
    let log = p.stderr();
    assert!(log.contains("evil\\x1b[31m"), "{log}");
    assert_no_raw_controls("virtnetd log", &log);
    assert!(!log.contains("panicked"), "{log}");
}
