//! The real-host part shared by `cargo xtask conformance --real` and
//! `cargo xtask upgrade-check --real`: checking the tools (and saying how
//! to install them), re-executing this program under `unshare` in new
//! network, mount and PID namespaces (plus a user namespace when not
//! root), so the host's own namespaces are never touched, and, inside,
//! making the real-host factory (dnsmasq wrapper in a user namespace, the
//! act_csum probe, the `--csum-workaround` tc wrapper). Every check then
//! runs in a further fresh network namespace of its worker thread.

use std::process::Command;

use virtnet_conformance::host::{missing_tools, HostFactory, RealFactory};

/// Set in the re-executed process: "1" when inside our namespaces.
const IN_NS: &str = "VIRTNET_CONFORMANCE_IN_NS";
/// The network namespace of the process that re-executed us.
const OUTER_NETNS: &str = "VIRTNET_CONFORMANCE_OUTER_NETNS";
/// Set when a user namespace with only root mapped was used.
const USERNS: &str = "VIRTNET_CONFORMANCE_USERNS";

/// Are we the re-executed process, inside our namespaces?
pub fn inside() -> bool {
    std::env::var_os(IN_NS).is_some()
}

fn netns_of_self() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Exact installation advice for missing tools.
fn install_advice(missing: &[(&str, &str)]) -> String {
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.sort();
    pkgs.dedup();
    format!(
        "missing tools: {}\n  install them with:  apt-get install -y {}\n  (Fedora: dnf install -y nftables iptables-nft iproute dnsmasq procps-ng)",
        missing.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "),
        pkgs.join(" ")
    )
}

/// Outside the namespaces: check the tools, then re-execute this program
/// with `argv` (the arguments after the program name, e.g. `conformance
/// --real ...`) under unshare. `who` names the task in messages. Returns
/// the exit status: 0 passed, 1 failed, 2 could not run.
pub fn reexec(who: &str, argv: &[String]) -> u8 {
    let missing = missing_tools();
    let no_unshare = virtnet_runner::find_in_path("unshare").is_none();
    if !missing.is_empty() || no_unshare {
        let mut m = missing.clone();
        if no_unshare {
            m.push(("unshare", "util-linux"));
        }
        eprintln!("{who} --real: cannot run: {}", install_advice(&m));
        return 2;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{who} --real: cannot find this program to re-execute it: {e}");
            return 2;
        }
    };
    // `cargo xtask ci` runs `cargo test --workspace` first, which may
    // rebuild this very binary (xtask's own tests need it): the running
    // file is then deleted and its path names the new build of the same
    // sources.
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(p) if std::path::Path::new(p).is_file() => {
            eprintln!("{who} --real: this program was rebuilt while it ran; re-executing the new build {p}");
            std::path::PathBuf::from(p)
        }
        _ => exe,
    };
    let root = nix::unistd::Uid::effective().is_root();
    let mut cmd = Command::new("unshare");
    if !root {
        // Without root, a user namespace gives the capabilities; only root
        // is mapped, so dnsmasq is kept from dropping privileges (wrapper).
        cmd.args(["--user", "--map-root-user"]);
        cmd.env(USERNS, "1");
    }
    // As root no user namespace is needed (and one with only root mapped
    // would stop dnsmasq from switching to its unprivileged user).
    cmd.args(["--net", "--mount", "--pid", "--fork", "--mount-proc", "--"]);
    // Probe first, so a failure to create namespaces is reported as such
    // (and not mistaken for a test failure).
    let mut probe = Command::new("unshare");
    if !root {
        probe.args(["--user", "--map-root-user"]);
    }
    probe.args([
        "--net",
        "--mount",
        "--pid",
        "--fork",
        "--mount-proc",
        "--",
        "true",
    ]);
    match probe.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "{who} --real: cannot create namespaces ({}): {}\n  real mode needs root, or unprivileged user namespaces (kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0); nothing was run",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return 2;
        }
        Err(e) => {
            eprintln!("{who} --real: cannot run unshare: {e}");
            return 2;
        }
    }
    cmd.arg(&exe);
    cmd.args(argv);
    cmd.env(IN_NS, "1");
    cmd.env(OUTER_NETNS, netns_of_self());
    eprintln!(
        "{who} --real: re-executing inside new {}network, mount and PID namespaces (unshare)",
        if root { "" } else { "user, " }
    );
    match cmd.status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            eprintln!("{who} --real: finished with {s}");
            // Keep "could not run" (2) distinct from "failed" (1).
            if s.code() == Some(2) {
                2
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!(
                "{who} --real: cannot run unshare: {e}\n  real mode needs root or unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
            );
            2
        }
    }
}

/// Inside the namespaces, first thing (before any thread starts): this
/// program is PID 1 of the new PID namespace (`unshare --pid --fork`), and
/// every orphan of the namespace is reparented to it: dnsmasq daemonises
/// (double fork), so each dnsmasq that exits would stay a zombie, which
/// `kill -0` and `/proc` scans still see. So PID 1 forks: the child does
/// the work (`None` is returned there), and PID 1 reaps every process of
/// the namespace, as an init (tini) does, until the child ends; it then
/// returns the child's exit status (`Some`; a child killed by a signal is
/// a failure, 1). Leaving PID 1 ends the namespace: the kernel kills
/// whatever is still running in it. Not PID 1 (or other threads already
/// running, where forking is unsafe): `None`, nothing done.
pub fn reap_as_init(who: &str) -> Option<u8> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, getpid, ForkResult};
    if getpid().as_raw() != 1 {
        return None;
    }
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
        });
    if threads != Some(1) {
        eprintln!(
            "{who} --real: PID 1 of the namespace runs {threads:?} threads: not forking a reaper; exited daemons stay zombies"
        );
        return None;
    }
    // SAFETY: the process runs one thread (checked just above), so the
    // child may run any code.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => return None,
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            eprintln!("{who} --real: cannot fork the worker from the namespace's init: {e}");
            return Some(2);
        }
    };
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                return Some(u8::try_from(code).unwrap_or(1));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                eprintln!("{who} --real: the worker was killed by {sig}");
                return Some(1);
            }
            // An orphan reaped, or a stop/continue report.
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("{who} --real: waiting for the worker: {e}");
                return Some(2);
            }
        }
    }
}

/// Why `--real` cannot run here, if it cannot (for `cargo xtask ci`).
pub fn unavailable() -> Option<String> {
    let mut missing = missing_tools();
    if virtnet_runner::find_in_path("unshare").is_none() {
        missing.push(("unshare", "util-linux"));
    }
    if !missing.is_empty() {
        return Some(install_advice(&missing));
    }
    if !nix::unistd::Uid::effective().is_root() {
        // Unprivileged user namespaces may work; try the cheapest thing.
        let ok = Command::new("unshare")
            .args(["--user", "--map-root-user", "--net", "true"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Some("not root and unprivileged user namespaces are not available".into());
        }
    }
    None
}

/// The real-host factory, inside the namespaces, with the temporary
/// directories of its wrappers (removed when this is dropped).
pub struct RealHost {
    pub factory: Box<dyn HostFactory>,
    /// The kernel lacks act_csum and the csum filter's failure is faked
    /// (the `PATH` wrapper; the factory's hosts fake it in-process too).
    pub csum_faked: bool,
    _wrappers: Vec<tempfile::TempDir>,
}

fn tmp(who: &str) -> Result<tempfile::TempDir, u8> {
    tempfile::tempdir().map_err(|e| {
        eprintln!("{who} --real: temporary directory: {e}");
        2
    })
}

/// Inside the namespaces: the real-host factory. With `csum_workaround`
/// on a kernel without act_csum, a `tc` wrapper first on `PATH` turns the
/// failure of `tc ... action csum` (also a line of `tc -batch -`) into
/// success (as the libvirt captures did). Must run before any other thread
/// starts (it sets `PATH`).
/// `Err(2)`: cannot run here (said on stderr).
pub fn real_host(who: &str, csum_workaround: bool) -> Result<RealHost, u8> {
    // Belt and braces: refuse to run in the namespace we were started in.
    let outer = std::env::var(OUTER_NETNS).unwrap_or_default();
    if outer.is_empty() || outer == netns_of_self() {
        eprintln!("{who} --real: not inside a new network namespace; refusing to run");
        return Err(2);
    }
    let mut wrappers = Vec::new();
    let userns = std::env::var_os(USERNS).is_some();
    let wrapper_dir = if userns {
        let d = tmp(who)?;
        let p = d.path().to_path_buf();
        wrappers.push(d);
        Some(p)
    } else {
        None
    };
    let f = match RealFactory::new(wrapper_dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{who} --real: cannot set up the real host: {e}");
            return Err(2);
        }
    };
    let csum_faked = csum_workaround && !f.has_act_csum();
    let factory: Box<dyn HostFactory> = if csum_faked {
        let dir = tmp(who)?;
        if let Err(e) = virtnet_conformance::host::write_tc_csum_wrapper(dir.path()) {
            eprintln!("{who} --real: {e}");
            return Err(2);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.path().to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        match std::env::join_paths(dirs) {
            // No other thread runs yet.
            Ok(p) => std::env::set_var("PATH", p),
            Err(e) => {
                eprintln!("{who} --real: PATH: {e}");
                return Err(2);
            }
        }
        eprintln!(
            "{who} --real: kernel lacks the tc act_csum action; --csum-workaround: a tc wrapper makes `tc ... action csum` (also as a line of `tc -batch -`) report success (the checksum filter is absent), as the libvirt captures did"
        );
        wrappers.push(dir);
        Box::new(f.assume_act_csum())
    } else {
        eprintln!(
            "{who} --real: kernel {} the tc act_csum action{}",
            if f.has_act_csum() { "has" } else { "lacks" },
            if f.has_act_csum() {
                ""
            } else {
                ": nftables states and starts that add the DHCP checksum filter (tc ... action csum) fail here as libvirt's do; reported as expected failures (--csum-workaround runs them)"
            }
        );
        eprintln!(
            "{who} --real: dnsmasq runs for real in each namespace{}",
            if userns {
                " (user namespace: started with --user=root --group= (no group change): it cannot drop privileges there)"
            } else {
                ""
            }
        );
        Box::new(f)
    };
    Ok(RealHost {
        factory,
        csum_faked,
        _wrappers: wrappers,
    })
}

/// A line on stdout; a closed stdout (`| head`) is not an error worth a panic.
pub fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}");
}
