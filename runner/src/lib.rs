//! The one door to the host (architecture invariant 2).
//!
//! Every external effect of virtnet — every `nft`, `iptables`,
//! `ip6tables`, `ebtables`, `ip`, `tc`, `dnsmasq` … invocation — goes through
//! [`Runner::run`]: an argument vector in, exit status plus captured stdout and
//! stderr out. No shell is ever used and arguments are never concatenated into
//! a command line. Nothing else in `virtnet-core` spawns processes.
//!
//! One implementation lives here: [`RealRunner`] (`std::process`, binaries
//! found through `PATH`, `LC_ALL=C`, a clean signal state in the child —
//! see `tests/child_signals.rs`); others implement the trait in other
//! crates (the simulated host in `virtnet-fake`, the recording runner in
//! `virtnet_core::firewall`, the journaling runner of the driver, the
//! fault runner of `virtnet-testkit`). [`Runner::run_checked`] turns a
//! non-zero exit into an error naming the command. [`Runner::run_direct`] is
//! the one exception to "every effect is a process": for `kill`, `sysctl`
//! and `ip -4 route show` (what libvirt does with kill(2), `/proc/sys` and
//! `/proc/net/route`) every runner sees the command line the driver always
//! ran, except the [`RealRunner`], which does it itself and spares the
//! spawn ([`direct`]). [`render`] is libvirt's dry-run / golden-file
//! format of a command stream and its parser, shared by the driver and the
//! simulated host (which is why both live in this small crate: the fake host
//! needs nothing else of `virtnet-core`, so core's tests can use the fake
//! without a dependency cycle).

pub mod direct;
mod netlink;
pub mod nft;
pub mod render;
pub mod tc;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

/// One command to run: `argv[0]` is the program (a bare name is looked up on
/// `PATH`), the rest are its arguments, passed verbatim. `stdin` is fed to the
/// process when present (e.g. `nft -f -`).
///
/// The argv is shared (`Arc`): cloning a command — a simulated host's record
/// of it, a fault runner's log — counts a reference instead of copying
/// every argument. It reads as a slice
/// (`&cmd.argv[1..]`, `cmd.argv.iter()`); build one from a `Vec<String>` with
/// `.into()` and change one with [`Arc::make_mut`] (which copies only when the
/// argv is shared). Serialised as a plain array.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cmd {
    pub argv: Arc<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Variables added to the runner's own environment (libvirt starts
    /// dnsmasq with `VIR_BRIDGE_NAME` for its leases helper). Not part of a
    /// golden stream, which shows argv only, as libvirt's test logs do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

impl Cmd {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: Arc::new(argv.into_iter().map(Into::into).collect()),
            stdin: None,
            env: Vec::new(),
        }
    }

    /// Adds `key=value` to the environment the command runs with.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn with_stdin(mut self, stdin: impl Into<String>) -> Self {
        self.stdin = Some(stdin.into());
        self
    }

    /// The program name (`argv[0]`), or "" for an empty command.
    pub fn program(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or("")
    }
}

/// What a command that could be run produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Output {
    /// Exit status; a process killed by a signal is reported as 128 + signal.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(stdout: impl Into<String>) -> Self {
        Output {
            status: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }
    pub fn failed(status: i32, stderr: impl Into<String>) -> Self {
        Output {
            status,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A command that could not be run at all (as opposed to one that ran and
/// exited non-zero, which is an [`Output`] with a non-zero status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("empty command")]
    Empty,
    #[error("cannot run '{program}': {reason}")]
    Spawn { program: String, reason: String },
    /// The simulated host "crashed" (fault injection): the caller must stop
    /// at once, as if the process had died, leaving host state as it is.
    #[error("simulated crash before running '{program}' (command #{index})")]
    Crashed { program: String, index: u64 },
}

/// A command that had to succeed did not ([`Runner::run_checked`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckedError {
    /// It could not be run at all.
    #[error(transparent)]
    Run(RunError),
    /// It ran and exited non-zero; `stderr` as the command printed it
    /// (callers that quote it verbatim, like libvirt's "Child process"
    /// message, need its trailing newline; this message drops it).
    #[error("'{}' exited with status {status}: {}", argv.join(" "), stderr.trim_end())]
    Failed {
        argv: Arc<Vec<String>>,
        status: i32,
        stderr: String,
    },
}

impl CheckedError {
    /// What [`Runner::run_checked`] makes of `cmd`'s result: a non-zero
    /// exit is [`CheckedError::Failed`].
    pub fn check(cmd: &Cmd, result: Result<Output, RunError>) -> Result<Output, Self> {
        let out = result.map_err(CheckedError::Run)?;
        if out.success() {
            Ok(out)
        } else {
            Err(CheckedError::Failed {
                argv: Arc::clone(&cmd.argv),
                status: out.status,
                stderr: out.stderr,
            })
        }
    }
}

/// The host seen as something that runs argument vectors.
///
/// Implementations take `&self` and must be shareable between threads: the
/// daemon drives several networks at once through one host.
pub trait Runner: Send + Sync {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError>;

    /// Convenience: run an argv without stdin.
    fn run_argv(&self, argv: &[&str]) -> Result<Output, RunError> {
        self.run(&Cmd::new(argv.iter().copied()))
    }

    /// Runs `cmd` and turns a non-zero exit into an error: the one way to say
    /// "this command must succeed". The error names the command and carries
    /// its status and stderr.
    fn run_checked(&self, cmd: &Cmd) -> Result<Output, CheckedError> {
        CheckedError::check(cmd, self.run(cmd))
    }

    /// [`Runner::run_checked`] through [`Runner::run_direct`].
    fn run_direct_checked(&self, cmd: &Cmd) -> Result<Output, CheckedError> {
        CheckedError::check(cmd, self.run_direct(cmd))
    }

    /// [`Runner::run_checked`] for an argv without stdin.
    fn run_argv_checked(&self, argv: &[&str]) -> Result<Output, CheckedError> {
        self.run_checked(&Cmd::new(argv.iter().copied()))
    }

    /// Is a program of this name available to run? (libvirt's backend
    /// auto-detection looks for `nft` and `iptables` on `PATH`.) The default
    /// searches the directories of `$PATH` for an executable file; runners
    /// that simulate a host may answer for the simulated one.
    fn has_program(&self, name: &str) -> bool {
        find_in_path(name).is_some()
    }

    /// Has process `pid` (decimal) exited without being reaped by its
    /// parent yet (a zombie)? `kill -0` succeeds on a zombie, so whoever
    /// checks liveness with `kill -0` asks this too: a daemon (dnsmasq
    /// daemonises) is reparented to an init that may not reap it, e.g.
    /// PID 1 of a container that is not an init. The default knows
    /// nothing and answers `false` (`kill -0` alone decides); the
    /// [`RealRunner`] reads `/proc/PID/stat` of this machine (see
    /// [`proc_is_zombie`]); runners that wrap another ask the inner one.
    fn is_zombie(&self, pid: &str) -> bool {
        let _ = pid;
        false
    }

    /// Runs `cmd`, without a process where this runner can: the
    /// [`RealRunner`] carries out `kill`, `sysctl -n KEY`, `sysctl -q -w
    /// KEY=VALUE` and `ip -4 route show` itself, through kill(2), `/proc/sys`
    /// and `/proc/net/route`, as libvirt does (see [`direct`]: on a loaded
    /// machine each spawn costs 5–150 ms, and these run for every start and
    /// destroy). The default is [`Runner::run`]: a simulated host, a
    /// recording or fault runner sees the same command stream as ever. A
    /// runner that wraps another forwards this to the inner one only if it
    /// has nothing to do per command, or does it first (a journal runner
    /// journals the command line exactly as [`Runner::run`] does, then
    /// forwards).
    ///
    /// The driver calls this for those command lines only; their output is
    /// what the tool prints for them (see [`direct`] for the one subset).
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.run(cmd)
    }

    /// Sends `sig` to process `pid` (decimal): [`Runner::run_direct`] of
    /// its `kill` command line, [`Signal::kill_cmd`] (`kill PID`, `kill -0
    /// PID`, `kill -HUP PID`, `kill -9 PID`), answered as the `kill`
    /// program does: status 0 when the signal was delivered (for
    /// [`Signal::Probe`], `kill -0`: the process exists and may be
    /// signalled — a zombie too, see [`Runner::is_zombie`]), status 1 and
    /// `kill: (PID) - No such process` / `- Operation not permitted` on
    /// stderr when not. The [`RealRunner`] sends it with kill(2)
    /// ([`send_signal`]).
    fn signal(&self, pid: &str, sig: Signal) -> Result<Output, RunError> {
        self.run_direct(&sig.kill_cmd(pid))
    }

    /// [`Runner::signal`] that must succeed: a failure is the
    /// [`CheckedError`] of its `kill` command line (e.g. `'kill -HUP 7'
    /// exited with status 1: kill: (7) - Operation not permitted`).
    fn signal_checked(&self, pid: &str, sig: Signal) -> Result<Output, CheckedError> {
        self.run_direct_checked(&sig.kill_cmd(pid))
    }
}

/// A signal [`Runner::signal`] sends: the four the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// No signal (`kill -0`): does the process exist, may it be signalled?
    Probe,
    /// SIGTERM (`kill PID`).
    Term,
    /// SIGHUP (`kill -HUP PID`).
    Hup,
    /// SIGKILL (`kill -9 PID`).
    Kill,
}

impl Signal {
    /// The `kill` command line that sends this signal to `pid`, as the
    /// driver has always run it (and golden command streams show it).
    pub fn kill_cmd(self, pid: &str) -> Cmd {
        match self.kill_option() {
            None => Cmd::new(["kill", pid]),
            Some(opt) => Cmd::new(["kill", opt, pid]),
        }
    }

    /// The option of [`Signal::kill_cmd`] (`None` for SIGTERM, `kill`'s
    /// default).
    pub fn kill_option(self) -> Option<&'static str> {
        match self {
            Signal::Probe => Some("-0"),
            Signal::Term => None,
            Signal::Hup => Some("-HUP"),
            Signal::Kill => Some("-9"),
        }
    }

    /// The signal for kill(2); `None` for [`Signal::Probe`] (signal 0).
    fn nix(self) -> Option<nix::sys::signal::Signal> {
        use nix::sys::signal::Signal as S;
        match self {
            Signal::Probe => None,
            Signal::Term => Some(S::SIGTERM),
            Signal::Hup => Some(S::SIGHUP),
            Signal::Kill => Some(S::SIGKILL),
        }
    }
}

/// Sends `sig` to process `pid` of this machine with kill(2) and answers
/// as procps' `kill` does ([`Runner::signal`]): status 0 when sent;
/// status 1 with `kill: (PID) - No such process` (ESRCH), `kill: (PID) -
/// Operation not permitted` (EPERM) or the error's own text on stderr;
/// `kill: failed to parse argument: 'PID'` for a `pid` that is not a
/// positive decimal number (kill(2) would read 0 or a negative number as
/// a process group, which the driver never means).
pub fn send_signal(pid: &str, sig: Signal) -> Output {
    use nix::errno::Errno;
    let parsed = (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse::<i32>().ok())
        .flatten()
        .filter(|&p| p > 0);
    let Some(p) = parsed else {
        return Output::failed(1, format!("kill: failed to parse argument: '{pid}'\n"));
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig.nix()) {
        Ok(()) => Output::ok(""),
        Err(Errno::ESRCH) => Output::failed(1, format!("kill: ({pid}) - No such process\n")),
        Err(Errno::EPERM) => {
            Output::failed(1, format!("kill: ({pid}) - Operation not permitted\n"))
        }
        Err(e) => Output::failed(1, format!("kill: ({pid}) - {}\n", e.desc())),
    }
}

/// Is process `pid` (decimal) a zombie on this machine: state `Z` in
/// `/proc/PID/stat`? `false` when it cannot be read (no such process, no
/// `/proc`) or `pid` is not a number.
pub fn proc_is_zombie(pid: &str) -> bool {
    if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may
    // itself hold spaces and parentheses.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state == "Z")
}

/// The first executable file called `name` in the directories of `$PATH`
/// (a name containing `/` is checked as given).
pub fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = std::path::PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_exec(p))
}

impl<R: Runner + ?Sized> Runner for &R {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).run(cmd)
    }
    fn has_program(&self, name: &str) -> bool {
        (**self).has_program(name)
    }
    fn is_zombie(&self, pid: &str) -> bool {
        (**self).is_zombie(pid)
    }
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).run_direct(cmd)
    }
}

impl<R: Runner + ?Sized> Runner for Arc<R> {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).run(cmd)
    }
    fn has_program(&self, name: &str) -> bool {
        (**self).has_program(name)
    }
    fn is_zombie(&self, pid: &str) -> bool {
        (**self).is_zombie(pid)
    }
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).run_direct(cmd)
    }
}

impl<R: Runner + ?Sized> Runner for Box<R> {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).run(cmd)
    }
    fn has_program(&self, name: &str) -> bool {
        (**self).has_program(name)
    }
    fn is_zombie(&self, pid: &str) -> bool {
        (**self).is_zombie(pid)
    }
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).run_direct(cmd)
    }
}

/// Runs commands on the real host with `std::process::Command` (never a
/// shell). Bare program names are resolved through `PATH`, as libvirt does.
#[derive(Debug, Default, Clone)]
pub struct RealRunner {
    _private: (),
}

impl RealRunner {
    pub fn new() -> Self {
        RealRunner { _private: () }
    }
}

/// Makes the child start with no blocked signal and every disposition at its
/// default. A child inherits both from the spawning thread (std's spawn resets
/// neither), and virtnetd's threads block SIGTERM, SIGINT and SIGHUP for its
/// signal pipe: a dnsmasq started from one would ignore the SIGTERM of a
/// destroy and outlive its network.
fn clean_signal_state(command: &mut Command) {
    use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (pthread_sigmask and signal); it allocates
    // nothing and touches no lock. `signal` with SIG_DFL installs no handler
    // code. Errors (SIGKILL/SIGSTOP cannot be changed) are ignored on purpose.
    unsafe {
        command.pre_exec(|| {
            let _ = SigSet::empty().thread_set_mask();
            for sig in Signal::iterator() {
                if !matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
                    let _ = signal(sig, SigHandler::SigDfl);
                }
            }
            Ok(())
        });
    }
}

impl Runner for RealRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let (program, args) = cmd.argv.split_first().ok_or(RunError::Empty)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            // Tools print messages we parse; keep them untranslated.
            .env("LC_ALL", "C");
        clean_signal_state(&mut command);
        let mut child = command.spawn().map_err(|e| RunError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        })?;
        if let Some(input) = &cmd.stdin {
            if let Some(mut pipe) = child.stdin.take() {
                // A tool that exits without reading its input gives EPIPE;
                // its exit status tells the story, so ignore the write error.
                let _ = pipe.write_all(input.as_bytes());
            }
        }
        let out = child.wait_with_output().map_err(|e| RunError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        })?;
        let status = match out.status.code() {
            Some(code) => code,
            None => {
                use std::os::unix::process::ExitStatusExt;
                128 + out.status.signal().unwrap_or(0)
            }
        };
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
    fn is_zombie(&self, pid: &str) -> bool {
        proc_is_zombie(pid)
    }
    /// kill(2), `/proc/sys`, `/proc/net/route`: no process for the forms
    /// of [`direct::in_process`]; anything else runs.
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        match direct::in_process(cmd) {
            Some(out) => Ok(out),
            None => self.run(cmd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exited_child_not_yet_reaped_is_a_zombie_until_waited_for() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id().to_string();
        // `true` exits at once; until we wait for it, it stays a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !proc_is_zombie(&pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "child {pid} never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(RealRunner::new().is_zombie(&pid));
        assert!(Arc::new(RealRunner::new()).is_zombie(&pid), "Arc forwards");
        child.wait().unwrap();
        assert!(!proc_is_zombie(&pid), "reaped: gone");
        // A running process, and pids that are not numbers.
        assert!(!proc_is_zombie(&std::process::id().to_string()));
        assert!(!proc_is_zombie(""));
        assert!(!proc_is_zombie("../self"));
    }

    /// Waits (at most 30 s) until `pid` is a zombie.
    fn wait_zombie(pid: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !proc_is_zombie(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "child {pid} never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn real_signal_probes_terms_and_reports_a_reaped_child_as_gone() {
        let r = RealRunner::new();
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id().to_string();
        // Through the trait object and an Arc, as the driver holds it.
        let dynr: Arc<dyn Runner> = Arc::new(RealRunner::new());
        assert_eq!(dynr.signal(&pid, Signal::Probe).unwrap(), Output::ok(""));
        assert_eq!(r.signal(&pid, Signal::Term).unwrap(), Output::ok(""));
        // Terminated by SIGTERM, not yet reaped: `kill -0` still succeeds
        // (that is what is_zombie is for).
        wait_zombie(&pid);
        assert!(r.signal(&pid, Signal::Probe).unwrap().success());
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc_sigterm()), "{status:?}");
        // Reaped: ESRCH, as `kill` says it.
        let gone = r.signal(&pid, Signal::Probe).unwrap();
        assert_eq!(
            gone,
            Output::failed(1, format!("kill: ({pid}) - No such process\n"))
        );
        assert_eq!(r.signal(&pid, Signal::Term).unwrap(), gone);
    }

    fn libc_sigterm() -> i32 {
        nix::sys::signal::Signal::SIGTERM as i32
    }

    #[test]
    fn real_signal_hup_and_kill_reach_the_process() {
        let r = RealRunner::new();
        for (sig, expect) in [
            (Signal::Hup, nix::sys::signal::Signal::SIGHUP),
            (Signal::Kill, nix::sys::signal::Signal::SIGKILL),
        ] {
            let mut child = Command::new("sleep").arg("60").spawn().unwrap();
            let pid = child.id().to_string();
            assert!(r.signal(&pid, sig).unwrap().success());
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(child.wait().unwrap().signal(), Some(expect as i32));
        }
    }

    #[test]
    fn real_signal_probes_init_and_refuses_what_is_not_a_pid() {
        let r = RealRunner::new();
        // PID 1 of this machine (or of the PID namespace): as root the
        // probe succeeds; otherwise it is EPERM, said as `kill` says it.
        let init = r.signal("1", Signal::Probe).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert!(init.success(), "{init:?}");
        } else {
            assert_eq!(
                init,
                Output::failed(1, "kill: (1) - Operation not permitted\n")
            );
        }
        // Never a process group, never a negative pid, never garbage.
        for bad in ["0", "-1", "", "12a", "99999999999", "+5", " 1"] {
            assert_eq!(
                r.signal(bad, Signal::Term).unwrap(),
                Output::failed(1, format!("kill: failed to parse argument: '{bad}'\n")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn real_signal_eperm_for_a_process_of_another_user() {
        // As root: this thread alone takes the identity of `nobody`
        // (setresuid as a raw syscall changes the calling thread's
        // credentials only; glibc's setuid would change every thread),
        // keeping saved uid 0 to come back, and probes a process of root.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id().to_string();
        let r = RealRunner::new();
        let setresuid = |ru: u32, eu: u32, su: u32| {
            // SAFETY: a plain system call on this thread's credentials.
            unsafe { nix::libc::syscall(nix::libc::SYS_setresuid, ru, eu, su) }
        };
        assert_eq!(setresuid(65534, 65534, 0), 0, "cannot become nobody");
        let as_nobody = r.signal(&pid, Signal::Probe);
        let term_as_nobody = r.signal(&pid, Signal::Term);
        assert_eq!(setresuid(0, 0, 0), 0, "cannot become root again");
        let eperm = Output::failed(1, format!("kill: ({pid}) - Operation not permitted\n"));
        assert_eq!(as_nobody.unwrap(), eperm);
        assert_eq!(term_as_nobody.unwrap(), eperm);
        // Root may, and the process did not get the SIGTERM.
        assert!(r.signal(&pid, Signal::Probe).unwrap().success());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A runner that only records: the default `signal` runs `kill`.
    #[derive(Default)]
    struct Rec(std::sync::Mutex<Vec<Vec<String>>>);
    impl Runner for Rec {
        fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
            self.0.lock().unwrap().push(cmd.argv.to_vec());
            Ok(Output::ok(""))
        }
    }

    #[test]
    fn default_signal_runs_the_kill_command_line_of_old() {
        let r = Rec::default();
        for sig in [Signal::Term, Signal::Probe, Signal::Hup, Signal::Kill] {
            r.signal("42", sig).unwrap();
        }
        // Through the forwarding impls too.
        Runner::signal(&&r, "7", Signal::Term).unwrap();
        let boxed: Box<dyn Runner> = Box::new(Rec::default());
        boxed.signal("8", Signal::Hup).unwrap();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            *r.0.lock().unwrap(),
            vec![
                v(&["kill", "42"]),
                v(&["kill", "-0", "42"]),
                v(&["kill", "-HUP", "42"]),
                v(&["kill", "-9", "42"]),
                v(&["kill", "7"]),
            ]
        );
    }

    #[test]
    fn real_runner_captures_status_and_streams_without_a_shell() {
        let r = RealRunner::new();
        // If a shell were involved, `$HOME` and `;` would be interpreted.
        let out = r.run(&Cmd::new(["echo", "a;b", "$HOME"])).unwrap();
        assert_eq!(out.status, 0);
        assert_eq!(out.stdout, "a;b $HOME\n");
        let out = r
            .run(&Cmd::new(["sh", "-c", "echo err >&2; exit 3"]))
            .unwrap();
        assert_eq!(out.status, 3);
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn real_runner_feeds_stdin() {
        let out = RealRunner::new()
            .run(&Cmd::new(["cat"]).with_stdin("hello\n"))
            .unwrap();
        assert_eq!(out.stdout, "hello\n");
    }

    #[test]
    fn real_runner_adds_env() {
        let out = RealRunner::new()
            .run(
                &Cmd::new(["sh", "-c", "echo \"$VIRTNET_T1-$HOME\""]).with_env("VIRTNET_T1", "x y"),
            )
            .unwrap();
        assert_eq!(
            out.stdout,
            format!("x y-{}\n", std::env::var("HOME").unwrap_or_default())
        );
    }

    #[test]
    fn missing_binary_is_a_spawn_error() {
        let err = RealRunner::new()
            .run(&Cmd::new(["/nonexistent/virtnet-nope"]))
            .unwrap_err();
        assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
        assert_eq!(
            RealRunner::new().run(&Cmd {
                argv: vec![].into(),
                stdin: None,
                env: Vec::new(),
            }),
            Err(RunError::Empty)
        );
    }

    #[test]
    fn run_checked_turns_a_non_zero_exit_into_an_error_naming_the_command() {
        let r = RealRunner::new();
        assert_eq!(r.run_argv_checked(&["echo", "ok"]).unwrap().stdout, "ok\n");
        let err = r
            .run_argv_checked(&["sh", "-c", "echo nope >&2; exit 4"])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "'sh -c echo nope >&2; exit 4' exited with status 4: nope"
        );
        assert!(matches!(
            r.run_argv_checked(&["/nonexistent/virtnet-nope"]),
            Err(CheckedError::Run(RunError::Spawn { .. }))
        ));
    }
}
