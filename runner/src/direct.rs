//! Command lines the [`crate::RealRunner`] carries out through the kernel's
//! own interfaces instead of a process ([`crate::Runner::run_direct`]).
//!
//! The driver runs a few small commands for every network start and
//! destroy whose whole effect is a system call or a file under `/proc`:
//! `kill` (kill(2)), `sysctl -n KEY` / `sysctl -q -w KEY=VALUE` (a read or
//! write of `/proc/sys/KEY`) and `ip -4 route show` (libvirt's route
//! collision check, which libvirt itself reads from `/proc/net/route`).
//! On a loaded 2-vCPU machine each spawn costs milliseconds to tens of
//! milliseconds, and `ip -4 route show` prints O(routes) text: 20 ms per
//! start at 1,000 networks in the real-kernel bench. libvirt does all
//! four without a process (kill(2), `virFileWriteStr` to `/proc/sys`,
//! `/proc/net/route`); so does the real runner, for exactly the argument
//! forms the driver uses. Anything else (another option, standard input,
//! environment, a `/proc/sys` directory) is `None`: the real tool runs.
//!
//! Two larger forms have modules of their own: the batched firewall
//! layout's `nft -f -` scripts ([`crate::nft`]) and its `tc` checksum
//! filter commands ([`crate::tc`]), sent as the netlink requests the tools
//! would send.
//!
//! Every other runner sees the same command line as ever (the default
//! [`crate::Runner::run_direct`] is [`crate::Runner::run`]): the simulated
//! host, golden command streams, the journal and fault injection are
//! unchanged. What is answered is what the tool would print for these
//! forms — `sysctl`'s value and error texts (procps-ng 4.0.2), `kill`'s
//! (procps-ng) — except that `ip -4 route show` is answered with the part
//! of its format that `/proc/net/route` holds: `DEST[/PREFIX] dev IFACE`
//! (`default` for 0.0.0.0/0), and `unreachable DEST[/PREFIX]` for a route
//! without a device (the kernel lists unreachable, blackhole and prohibit
//! routes alike there); no `proto`, `scope`, `src` or `via`.

use std::io::ErrorKind;
use std::path::PathBuf;

use crate::{send_signal, Cmd, Output, Signal};

/// The signal and pid of a [`Signal::kill_cmd`] command line (`kill PID`,
/// `kill -0 PID`, `kill -HUP PID`, `kill -9 PID`); `None` for any other.
/// The pid is whatever word stands there: [`send_signal`] refuses one that
/// is not a positive decimal number (`kill -9 -1` must never reach the
/// `kill` program, which would signal every process).
pub fn kill_form(cmd: &Cmd) -> Option<(&str, Signal)> {
    if cmd.stdin.is_some() || !cmd.env.is_empty() {
        return None;
    }
    match cmd.argv.as_slice() {
        [kill, pid] if kill == "kill" => Some((pid, Signal::Term)),
        [kill, opt, pid] if kill == "kill" => {
            let sig = [Signal::Probe, Signal::Hup, Signal::Kill]
                .into_iter()
                .find(|s| s.kill_option() == Some(opt.as_str()))?;
            Some((pid, sig))
        }
        _ => None,
    }
}

/// A [`kill_form`] command sent with kill(2) ([`send_signal`]).
pub fn signal(cmd: &Cmd) -> Option<Output> {
    kill_form(cmd).map(|(pid, sig)| send_signal(pid, sig))
}

/// `cmd` carried out in this process, when it is one of the forms this
/// module knows (see the module docs); `None`: run the tool.
pub fn in_process(cmd: &Cmd) -> Option<Output> {
    if let Some(out) = signal(cmd) {
        return Some(out);
    }
    if let Some(out) = crate::nft::in_process(cmd).or_else(|| crate::tc::in_process(cmd)) {
        return Some(out);
    }
    if cmd.stdin.is_some() || !cmd.env.is_empty() {
        return None;
    }
    match cmd.argv.as_slice() {
        [sysctl, n, key] if sysctl == "sysctl" && n == "-n" => sysctl_read(key),
        [sysctl, q, w, kv] if sysctl == "sysctl" && q == "-q" && w == "-w" => {
            let (key, value) = kv.split_once('=')?;
            sysctl_write(key, value)
        }
        [ip, four, route, show]
            if ip == "ip" && four == "-4" && route == "route" && show == "show" =>
        {
            routes_v4()
        }
        _ => None,
    }
}

/// A sysctl key as a path under `/proc/sys`: a key with `/` separators is
/// taken as it is (interface names may hold dots), else dots separate.
fn sysctl_path(key: &str) -> Option<PathBuf> {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_string()
    } else {
        key.replace('.', "/")
    };
    // Never leave /proc/sys.
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return None;
    }
    Some(PathBuf::from("/proc/sys").join(rel))
}

/// The key as `sysctl` names it in messages: dotted.
fn dotted(key: &str) -> String {
    if key.contains('/') {
        key.trim_start_matches('/').replace('/', ".")
    } else {
        key.to_string()
    }
}

fn sysctl_error(key: &str, path: &std::path::Path, e: &std::io::Error) -> Output {
    let text = match e.kind() {
        ErrorKind::NotFound => format!(
            "sysctl: cannot stat {}: No such file or directory\n",
            path.display()
        ),
        ErrorKind::PermissionDenied => {
            format!("sysctl: permission denied on key \"{}\"\n", dotted(key))
        }
        _ => format!(
            "sysctl: setting key \"{}\": {}\n",
            dotted(key),
            errno_text(e)
        ),
    };
    Output::failed(1, text)
}

/// The C library's text of an OS error, without Rust's " (os error N)".
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// `sysctl -n KEY`: the file's content (a directory: `None`, the tool
/// lists it).
fn sysctl_read(key: &str) -> Option<Output> {
    let path = sysctl_path(key)?;
    if path.is_dir() {
        return None;
    }
    Some(match std::fs::read_to_string(&path) {
        Ok(mut v) => {
            if !v.ends_with('\n') {
                v.push('\n');
            }
            Output::ok(v)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => sysctl_error(key, &path, &e),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => sysctl_error(key, &path, &e),
        Err(e) => Output::failed(
            1,
            format!(
                "sysctl: reading key \"{}\": {}\n",
                dotted(key),
                errno_text(&e)
            ),
        ),
    })
}

/// `sysctl -q -w KEY=VALUE`: the value written to the file, nothing
/// printed.
fn sysctl_write(key: &str, value: &str) -> Option<Output> {
    use std::io::Write;
    let path = sysctl_path(key)?;
    if path.is_dir() {
        return None;
    }
    let res = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{value}\n").as_bytes()));
    Some(match res {
        Ok(()) => Output::ok(""),
        Err(e) => sysctl_error(key, &path, &e),
    })
}

/// `ip -4 route show` from `/proc/net/route` (see the module docs).
fn routes_v4() -> Option<Output> {
    let text = std::fs::read_to_string("/proc/thread-self/net/route").ok()?;
    Some(Output::ok(format_proc_routes(&text)))
}

/// The main table's IPv4 routes of a `/proc/net/route` text, one per line
/// in `ip -4 route show`'s form (see the module docs). Lines that do not
/// parse are skipped.
pub fn format_proc_routes(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(iface), Some(dest), Some(mask)) = (f.first(), f.get(1), f.get(7)) else {
            continue;
        };
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(mask)) = (hex(dest), hex(mask)) else {
            continue;
        };
        // The kernel prints the network-order words as native integers.
        let dest = std::net::Ipv4Addr::from(dest.to_ne_bytes());
        let mask = u32::from_be_bytes(mask.to_ne_bytes());
        let prefix = mask.leading_ones();
        if mask.checked_shl(prefix).unwrap_or(0) != 0 {
            continue; // not a contiguous mask
        }
        let what = match prefix {
            0 => "default".to_string(),
            32 => dest.to_string(),
            p => format!("{dest}/{p}"),
        };
        if *iface == "*" {
            out.push_str(&format!("unreachable {what}\n"));
        } else {
            out.push_str(&format!("{what} dev {iface}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(argv: &[&str]) -> Cmd {
        Cmd::new(argv.iter().copied())
    }

    #[test]
    fn kill_forms_are_exactly_those_of_signal_kill_cmd() {
        for sig in [Signal::Probe, Signal::Term, Signal::Hup, Signal::Kill] {
            assert_eq!(kill_form(&sig.kill_cmd("42")), Some(("42", sig)));
        }
        assert_eq!(kill_form(&cmd(&["kill", "-TERM", "42"])), None);
        assert_eq!(kill_form(&cmd(&["kill", "-s", "KILL", "42"])), None);
        assert_eq!(kill_form(&cmd(&["pkill", "42"])), None);
        assert_eq!(kill_form(&cmd(&["kill", "42"]).with_stdin("")), None);
        // A pid that is not one is the form's all the same, and refused
        // by kill(2)'s side, never handed to the `kill` program.
        for argv in [
            &["kill", "-1"][..],
            &["kill", "-9", "-1"],
            &["kill", "-0", "0"],
        ] {
            let out = in_process(&cmd(argv)).unwrap();
            assert_eq!(out.status, 1, "{argv:?}");
            assert!(
                out.stderr.starts_with("kill: failed to parse argument"),
                "{out:?}"
            );
        }
    }

    #[test]
    fn only_the_driver_forms_are_taken_in_process() {
        for argv in [
            &["sysctl", "net.ipv4.ip_forward"][..],
            &["sysctl", "-w", "net.ipv4.ip_forward=1"],
            &["sysctl", "-q", "-w", "net.ipv4.ip_forward"],
            &["sysctl", "-n", "../../etc/passwd"],
            &["sysctl", "-n", "net/../../../etc/passwd"],
            &["sysctl", "-n", "net"],
            &["ip", "route", "show"],
            &["ip", "-4", "route", "show", "table", "all"],
        ] {
            assert!(in_process(&cmd(argv)).is_none(), "{argv:?}");
        }
    }

    #[test]
    fn sysctl_paths_and_names() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        // Slashes: an interface name keeps its dots.
        assert_eq!(
            sysctl_path("net/ipv6/conf/br0.100/disable_ipv6").unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/conf/br0.100/disable_ipv6")
        );
        assert_eq!(
            dotted("net/ipv6/conf/virbr0/disable_ipv6"),
            "net.ipv6.conf.virbr0.disable_ipv6"
        );
        assert_eq!(sysctl_path("net..x"), None);
    }

    #[test]
    fn a_missing_key_fails_as_sysctl_does() {
        let out = in_process(&cmd(&["sysctl", "-n", "net.ipv4.no_such_key_here"])).unwrap();
        assert_eq!(out.status, 1);
        assert_eq!(
            out.stderr,
            "sysctl: cannot stat /proc/sys/net/ipv4/no_such_key_here: No such file or directory\n"
        );
        let out = in_process(&cmd(&[
            "sysctl",
            "-q",
            "-w",
            "net/ipv6/conf/nope0/disable_ipv6=1",
        ]))
        .unwrap();
        assert_eq!(out.status, 1);
        assert_eq!(
            out.stderr,
            "sysctl: cannot stat /proc/sys/net/ipv6/conf/nope0/disable_ipv6: No such file or directory\n"
        );
    }

    #[test]
    fn a_key_reads_as_sysctl_prints_it() {
        // Readable on any Linux host, namespace or not.
        let out = in_process(&cmd(&["sysctl", "-n", "kernel.ostype"])).unwrap();
        assert_eq!(out, Output::ok("Linux\n"));
    }

    #[test]
    fn proc_net_route_as_ip_prints_it() {
        // Captured on a little-endian host; the words are network-order
        // integers printed natively.
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            virbr0\t007AA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            *\t0000000A\t00000000\t0201\t0\t0\t0\t000000FF\t0\t0\t0\n\
            lo\t0100007F\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n\
            bad\tzz\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                format_proc_routes(text),
                "default dev eth0\n192.0.2.0/24 dev eth0\n192.168.122.0/24 dev virbr0\n\
                 unreachable 10.0.0.0/8\n127.0.0.1 dev lo\n"
            );
        }
    }
}
