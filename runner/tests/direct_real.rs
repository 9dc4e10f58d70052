//! The real runner's in-process commands ([`virtnet_runner::direct`])
//! against the tools they stand for, in a network namespace of a thread
//! of this test (`unshare(CLONE_NEWNET)` of the thread alone: the host's
//! own namespace is never touched): what `run_direct` answers must be
//! what the tool answers, for the forms the driver uses, on success and
//! on error. Skipped (with a message) when not root or `ip`/`sysctl` are
//! missing.

use virtnet_runner::{find_in_path, Cmd, Output, RealRunner, Runner};

fn cmd(argv: &[&str]) -> Cmd {
    Cmd::new(argv.iter().copied())
}

/// `ip -4 route show` reduced to what `/proc/net/route` holds: the route
/// type when it is not unicast, the destination, `dev IFACE`.
fn reduce(ip_output: &str) -> String {
    let mut out = String::new();
    for line in ip_output.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = w.first() else { continue };
        let (kind, dest) = if ["unreachable", "blackhole", "prohibit"].contains(first) {
            ("unreachable ", w.get(1).copied().unwrap_or(""))
        } else {
            ("", *first)
        };
        out.push_str(kind);
        out.push_str(dest);
        if let Some(i) = w.iter().position(|x| *x == "dev") {
            out.push_str(" dev ");
            out.push_str(w.get(i + 1).copied().unwrap_or(""));
        }
        out.push('\n');
    }
    out
}

fn in_namespace() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
    let r = RealRunner::new();
    let run = |argv: &[&str]| -> Output {
        let out = r.run(&cmd(argv)).expect("runs");
        assert!(out.success(), "{argv:?}: {out:?}");
        out
    };
    run(&["ip", "link", "set", "lo", "up"]);
    run(&["ip", "link", "add", "name", "vnt-br0", "type", "bridge"]);
    run(&["ip", "addr", "add", "10.99.0.1/24", "dev", "vnt-br0"]);
    run(&["ip", "link", "set", "vnt-br0", "up"]);
    run(&["ip", "route", "add", "10.98.0.0/16", "dev", "vnt-br0"]);
    run(&["ip", "route", "add", "10.97.0.5", "dev", "vnt-br0"]);
    run(&["ip", "route", "add", "unreachable", "10.96.0.0/12"]);
    run(&["ip", "route", "add", "blackhole", "10.95.1.0/24"]);
    run(&["ip", "route", "add", "default", "dev", "vnt-br0"]);

    // Routes: the real `ip`, reduced, equals the in-process answer.
    let routes = cmd(&["ip", "-4", "route", "show"]);
    let tool = r.run(&routes).unwrap();
    let direct = r.run_direct(&routes).unwrap();
    assert!(tool.success() && direct.success());
    assert_eq!(
        direct.stdout,
        reduce(&tool.stdout),
        "ip said:\n{}",
        tool.stdout
    );
    assert!(
        direct.stdout.contains("10.99.0.0/24 dev vnt-br0\n"),
        "{direct:?}"
    );
    assert!(
        direct.stdout.contains("unreachable 10.96.0.0/12\n"),
        "{direct:?}"
    );

    // sysctl: a write in process is read back by the tool, and the other
    // way round; values and errors as the tool prints them.
    let key = "net/ipv6/conf/vnt-br0/disable_ipv6";
    for (value, writer_direct) in [("1", true), ("0", false), ("1", false), ("0", true)] {
        let w = cmd(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
        let out = if writer_direct {
            r.run_direct(&w)
        } else {
            r.run(&w)
        }
        .unwrap();
        assert_eq!(out, Output::ok(""), "write {value} direct={writer_direct}");
        let read = cmd(&["sysctl", "-n", key]);
        let by_tool = r.run(&read).unwrap();
        let by_direct = r.run_direct(&read).unwrap();
        assert_eq!(by_direct, by_tool);
        assert_eq!(by_direct.stdout, format!("{value}\n"));
    }
    for argv in [
        &["sysctl", "-n", "net.ipv4.no_such_key"][..],
        &["sysctl", "-n", "net/ipv6/conf/nope0/disable_ipv6"],
        &["sysctl", "-q", "-w", "net/ipv6/conf/nope0/disable_ipv6=1"],
        &["sysctl", "-q", "-w", "net.ipv4.ip_forward=abc"],
        &["sysctl", "-q", "-w", "net/ipv4/ip_forward=abc"],
    ] {
        let c = cmd(argv);
        assert_eq!(r.run_direct(&c).unwrap(), r.run(&c).unwrap(), "{argv:?}");
    }
    // (vnt-br0 exists in this namespace only: the keys and routes above
    // were this namespace's, not the host's.)
    Ok(())
}

#[test]
fn in_process_answers_equal_the_tools_in_a_namespace() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root for a network namespace");
        return;
    }
    for tool in ["ip", "sysctl"] {
        if find_in_path(tool).is_none() {
            eprintln!("skipped: no {tool}");
            return;
        }
    }
    // A thread of its own: its namespace goes with it.
    let res = std::thread::spawn(in_namespace).join().expect("no panic");
    if let Err(e) = res {
        eprintln!("skipped: {e}");
    }
}
