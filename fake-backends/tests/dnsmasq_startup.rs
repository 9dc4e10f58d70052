//! The fake dnsmasq's start-up checks against the real dnsmasq: the same
//! configuration file is given to both (the real one inside a fresh
//! `unshare -n` namespace, `port=0` so it binds nothing) and the exit
//! status and stderr are compared. A real dnsmasq that started is stopped
//! through its own pid file.
//!
//! Needs root and `dnsmasq`/`unshare`; otherwise prints "skipped: <why>"
//! (a failure when VIRTNET_REQUIRE_REAL=1).

use std::path::Path;
use std::process::Command;

use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Output, Runner};

fn real(argv: &[String], pid_file: &Path) -> Output {
    let (program, args) = argv.split_first().expect("a command");
    let out = virtnet_testkit::command_in_fresh_netns(program)
        .args(args)
        .output()
        .expect("run unshare");
    // A daemon that started: stop it by the pid it wrote.
    if let Ok(pid) = std::fs::read_to_string(pid_file) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = std::fs::remove_file(pid_file);
    }
    Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn startup_checks_match_the_real_dnsmasq() {
    if let Some(why) = virtnet_testkit::cannot_run(&["unshare", "dnsmasq"]) {
        virtnet_testkit::skip(&why);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tftp = d.join("tftproot");
    std::fs::create_dir(&tftp).expect("mkdir");
    let file = d.join("plainfile");
    std::fs::write(&file, "x").expect("write");
    let pid = d.join("dnsmasq.pid");
    let base = format!("strict-order\nport=0\npid-file={}\n", pid.display());
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "tftp root exists",
            format!(
                "{base}enable-tftp\ntftp-root={}\ndhcp-boot=pxelinux.0\n",
                tftp.display()
            ),
            vec![],
        ),
        (
            "tftp root missing",
            format!(
                "{base}enable-tftp\ntftp-root={}/nope\ndhcp-boot=pxelinux.0\n",
                d.display()
            ),
            vec![],
        ),
        (
            "tftp root is a file",
            format!("{base}enable-tftp\ntftp-root={}\n", file.display()),
            vec![],
        ),
        (
            "tftp root missing, syntax check only",
            format!("{base}enable-tftp\ntftp-root={}/nope\n", d.display()),
            vec!["--test"],
        ),
        (
            "tftp root missing without enable-tftp",
            format!("{base}tftp-root={}/nope\n", d.display()),
            vec![],
        ),
        ("bad option", format!("{base}bogus-option=1\n"), vec![]),
        (
            "repeated pid-file",
            format!("{base}pid-file={}\n", pid.display()),
            vec![],
        ),
        (
            "repeated port, syntax check",
            format!("{base}port=0\n"),
            vec!["--test"],
        ),
        (
            "repeated domain is fine",
            format!("{base}domain=a\ndomain=b\n"),
            vec!["--test"],
        ),
        ("bad dhcp-range", format!("{base}dhcp-range=foo\n"), vec![]),
        (
            "good dhcp-range",
            format!("{base}dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0\n"),
            vec!["--test"],
        ),
    ];
    let mut bad = Vec::new();
    for (name, conf, extra) in &cases {
        let conf_path = d.join("net.conf");
        std::fs::write(&conf_path, conf).expect("write conf");
        let mut argv = vec![
            "dnsmasq".to_string(),
            format!("--conf-file={}", conf_path.display()),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let r = real(&argv, &pid);
        let fake = FakeHost::new();
        let f = fake.run(&Cmd::new(argv.clone())).expect("fake runs");
        let _ = std::fs::remove_file(&pid);
        if (r.status, &r.stderr) != (f.status, &f.stderr) {
            bad.push(format!("{name}:\n   real: {r:?}\n   fake: {f:?}"));
        }
    }
    // A configuration file that does not exist.
    let argv = vec![
        "dnsmasq".to_string(),
        format!("--conf-file={}/missing.conf", d.display()),
    ];
    let r = real(&argv, &pid);
    let f = FakeHost::new().run(&Cmd::new(argv)).expect("fake runs");
    if (r.status, &r.stderr) != (f.status, &f.stderr) {
        bad.push(format!("missing conf:\n   real: {r:?}\n   fake: {f:?}"));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
