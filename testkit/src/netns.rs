//! Throw-away network namespaces for tests that run the real tools (nft,
//! iptables, ip, tc, dnsmasq), and the one "can the real tools run here?"
//! check.
//!
//! * [`Netns`] — a namespace held open by a `sleep` started with
//!   `unshare -n`; it is a [`Runner`] (commands enter it with `nsenter`),
//!   dropped = the holder is killed (by its pid). Nothing outside the new
//!   namespace is touched.
//! * [`run_sequence`] — a command sequence in one fresh [`Netns`], one
//!   [`Output`] per command, or [`Skip`] saying why it could not run.
//! * [`enter_fresh_thread_netns`] — the calling *thread* moves into a new
//!   network namespace (`unshare(CLONE_NEWNET)`), for in-process hosts
//!   (the conformance suite's real host).
//! * [`cannot_run`] says why the real tools cannot run (not root, a tool
//!   missing from `PATH`); [`skip`] prints `skipped: why` — or, with
//!   `VIRTNET_REQUIRE_REAL=1`, fails the test, so a machine meant to run
//!   them never passes silently.

use std::process::{Child, Command, Stdio};

use virtnet_runner::{find_in_path, Cmd, Output, RealRunner, RunError, Runner};

/// Why a real-host run could not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

/// Is `VIRTNET_REQUIRE_REAL=1` set (a skip is then a failure)?
pub fn real_required() -> bool {
    std::env::var("VIRTNET_REQUIRE_REAL").as_deref() == Ok("1")
}

/// A test that cannot run the real tools: prints `skipped: why`, or panics
/// when [`real_required`].
pub fn skip(why: &str) {
    if real_required() {
        panic!("VIRTNET_REQUIRE_REAL=1 but the real tools cannot run: {why}");
    }
    println!("skipped: {why}");
}

/// Why the real tools cannot run here: not root, or one of `tools` is not
/// on `PATH`; `None` when they can.
pub fn cannot_run(tools: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    tools
        .iter()
        .find(|t| find_in_path(t).is_none())
        .map(|t| format!("{t} not found on PATH"))
}

/// A command whose process lives in a fresh network namespace of its own
/// (`unshare -n -- PROGRAM`): for tests whose process must be *inside* the
/// namespace — a daemon, a test binary re-executing itself, dnsmasq with its
/// set-up — rather than enter it command by command like [`Netns`]. Add the
/// arguments, environment and stdio as for any [`Command`]. The namespace
/// goes away with the last process in it.
pub fn command_in_fresh_netns(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-n", "--"]).arg(program);
    c
}

/// Why a process cannot be put into a fresh network namespace here: the
/// reasons of [`cannot_run`] for `tools` (plus `unshare`), or `unshare -n`
/// failing (no privilege for namespaces); `None` when it can.
pub fn cannot_make_netns(tools: &[&str]) -> Option<String> {
    let mut all = vec!["unshare"];
    all.extend_from_slice(tools);
    if let Some(why) = cannot_run(&all) {
        return Some(why);
    }
    match command_in_fresh_netns("true").status() {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!(
            "cannot create a network namespace (unshare -n true: {s})"
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// Why `tool FLAG` does not print `want` (the version the simulator
/// models); `None` when it does.
pub fn other_version(tool: &str, flag: &str, want: &str) -> Option<String> {
    let v = Command::new(tool).arg(flag).output().ok()?;
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    (!v.contains(want))
        .then(|| format!("the simulator models {tool} {want}, host has {}", v.trim()))
}

/// A throw-away network namespace held open by a `sleep` started with
/// `unshare -n`; commands enter it with `nsenter`.
pub struct Netns {
    holder: Child,
}

impl Netns {
    pub fn new() -> Result<Netns, String> {
        let holder = Command::new("unshare")
            .args(["-n", "--", "sleep", "900"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let ns = Netns { holder };
        // Wait until the holder has entered its own namespace.
        let me = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        for _ in 0..300 {
            if let Ok(l) = std::fs::read_link(format!("/proc/{}/ns/net", ns.holder.id())) {
                if l != me {
                    return Ok(ns);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err("unshare -n did not create a namespace".into())
    }

    /// The pid of the process holding the namespace (for `nsenter -t`).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Runs `argv` in the namespace (a spawn failure is exit status -1).
    pub fn run_words(&self, argv: &[String]) -> Output {
        self.run_words_with_stdin(argv, None)
    }

    /// Runs `argv` in the namespace with `stdin` as its standard input.
    pub fn run_words_with_stdin(&self, argv: &[String], stdin: Option<&str>) -> Output {
        let cmd = Cmd {
            argv: argv.to_vec().into(),
            stdin: stdin.map(str::to_string),
            env: Vec::new(),
        };
        self.run(&cmd)
            .unwrap_or_else(|e| Output::failed(-1, e.to_string()))
    }
}

impl Runner for Netns {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        if cmd.argv.is_empty() {
            return Err(RunError::Empty);
        }
        let mut full: Vec<String> = ["nsenter", "-t", &self.pid().to_string(), "-n", "--"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        full.extend(cmd.argv.iter().cloned());
        RealRunner::new().run(&Cmd {
            argv: full.into(),
            stdin: cmd.stdin.clone(),
            env: cmd.env.clone(),
        })
    }

    /// `nsenter -n` keeps the PID namespace: the processes are this
    /// machine's.
    fn is_zombie(&self, pid: &str) -> bool {
        virtnet_runner::proc_is_zombie(pid)
    }

    /// A `kill` by kill(2) from here: the namespace's processes are this
    /// machine's (no `nsenter`, no `kill` process). Everything else runs in
    /// the namespace (this process's `/proc/sys/net` and `/proc/net/route`
    /// are another namespace's).
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        match virtnet_runner::direct::signal(cmd) {
            Some(out) => Ok(out),
            None => self.run(cmd),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// One command for [`run_sequence`]: the full argv (program first) and the
/// optional standard input.
pub type RealCmd = (Vec<String>, Option<String>);

/// Runs `cmds` one after the other in ONE fresh network namespace; one
/// [`Output`] per command. [`Skip`] when the namespace cannot be created
/// (not root, no `unshare`/`nsenter`) or `nft` is missing.
pub fn run_sequence(cmds: &[RealCmd]) -> Result<Vec<Output>, Skip> {
    if let Some(why) = cannot_run(&["unshare", "nsenter", "nft"]) {
        return Err(Skip(why));
    }
    let ns = Netns::new().map_err(Skip)?;
    let mut outs = Vec::with_capacity(cmds.len());
    for (i, (argv, stdin)) in cmds.iter().enumerate() {
        if argv.is_empty() {
            return Err(Skip(format!("command #{i} is empty")));
        }
        outs.push(ns.run_words_with_stdin(argv, stdin.as_deref()));
    }
    Ok(outs)
}

/// [`run_sequence`] of `nft ARGS` for every `(ARGS, stdin)`.
pub fn run_nft_sequence(cmds: &[RealCmd]) -> Result<Vec<Output>, Skip> {
    let full: Vec<RealCmd> = cmds
        .iter()
        .map(|(args, stdin)| {
            let mut argv = vec!["nft".to_string()];
            argv.extend(args.iter().cloned());
            (argv, stdin.clone())
        })
        .collect();
    run_sequence(&full)
}

/// The network namespace of the calling thread
/// (`/proc/thread-self/ns/net` link text, `net:[inode]`).
pub fn thread_netns() -> Option<String> {
    std::fs::read_link("/proc/thread-self/ns/net")
        .ok()
        .map(|p| p.to_string_lossy().to_string())
}

/// Moves the calling thread into a new, empty network namespace; the
/// namespace the process started in is never touched.
pub fn enter_fresh_thread_netns() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
}

/// Runs `f` on a thread of its own in a new, empty network namespace (the
/// processes it starts are in it too); panics of `f` are passed on.
pub fn in_fresh_thread_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        if let Err(e) = enter_fresh_thread_netns() {
            panic!("unshare(CLONE_NEWNET): {e}");
        }
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_says_why() {
        assert_eq!(Skip("no root".into()).to_string(), "skipped: no root");
    }

    #[test]
    fn a_missing_tool_is_named() {
        if !nix::unistd::geteuid().is_root() {
            assert_eq!(cannot_run(&["sh"]).as_deref(), Some("not root"));
            return;
        }
        assert_eq!(cannot_run(&["sh"]), None);
        assert_eq!(
            cannot_run(&["sh", "virtnet-no-such-tool"]).as_deref(),
            Some("virtnet-no-such-tool not found on PATH")
        );
    }

    #[test]
    fn a_sequence_runs_in_its_own_namespace() {
        if let Some(why) = cannot_run(&["unshare", "nsenter", "nft", "ip"]) {
            skip(&why);
            return;
        }
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let outs = run_sequence(&[
            (words("ip link add vntestkit0 type bridge"), None),
            (words("ip -br link show vntestkit0"), None),
        ])
        .unwrap();
        assert_eq!(outs[0].status, 0, "{:?}", outs[0]);
        assert!(outs[1].stdout.starts_with("vntestkit0"), "{:?}", outs[1]);
        // Not in this namespace.
        let here = RealRunner::new()
            .run_argv(&["ip", "link", "show", "vntestkit0"])
            .unwrap();
        assert_ne!(here.status, 0);
    }
}
