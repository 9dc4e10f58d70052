//! Fault plans and the one runner that applies them: a [`FaultPlan`] is
//! serde data that says which commands of a run fail and when the host
//! "crashes"; a [`FaultRunner`] wraps any [`Runner`] — the simulated host
//! or the real one — and applies the plan in front of it, so a failure
//! scenario runs unchanged on both (architecture invariant 4).
//!
//! A plan is printable (`Display`, one fault per line) and replayable
//! (JSON via [`FaultPlan::to_json`] / [`FaultPlan::from_json`]), so a
//! failing property test can print the plan that broke it.
//!
//! Command indexes are 1-based and count every command given to the
//! wrapper (including injected failures and crashed commands) since it was
//! created or its counter reset with [`FaultRunner::reset_counter`].
//!
//! What is injected where: every fault acts on the commands given to the
//! wrapper (one `Runner::run` each: a process the driver would spawn), and
//! on nothing else — files the driver writes, signals and the inner
//! runner's own behaviour are untouched. A failure replaces the command by
//! an exit status and stderr (the command does not run); a crash makes the
//! command and every later one return [`RunError::Crashed`], either before
//! the command runs ([`Fault::CrashAfter`]) or after it ran
//! ([`Fault::CrashAfterEffect`]).
//!
//! A command whose failure is injected, or that comes after a crash, never
//! reaches the wrapped runner, so the host is exactly as it was before it
//! (`fake-backends/tests/host_faults.rs` checks this on the simulated host).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use virtnet_runner::{Cmd, Output, RunError, Runner};

/// Which commands a [`Fault::FailMatching`] applies to. Every given part
/// must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CmdMatcher {
    /// Program basename (`iptables`, `nft`, `tc`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// Substrings that must all occur in the command line (argv after the
    /// program joined with single spaces, then a newline and stdin if any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
}

impl CmdMatcher {
    pub fn program(p: impl Into<String>) -> Self {
        CmdMatcher {
            program: Some(p.into()),
            contains: Vec::new(),
        }
    }

    pub fn containing(mut self, s: impl Into<String>) -> Self {
        self.contains.push(s.into());
        self
    }

    pub fn matches(&self, cmd: &Cmd) -> bool {
        let prog = cmd.program().rsplit('/').next().unwrap_or("");
        if self.program.as_deref().is_some_and(|p| p != prog) {
            return false;
        }
        let mut line = cmd.argv.get(1..).unwrap_or(&[]).join(" ");
        if let Some(s) = &cmd.stdin {
            line.push('\n');
            line.push_str(s);
        }
        self.contains.iter().all(|c| line.contains(c.as_str()))
    }
}

impl fmt::Display for CmdMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "program={}", self.program.as_deref().unwrap_or("*"))?;
        for c in &self.contains {
            write!(f, " contains={c:?}")?;
        }
        Ok(())
    }
}

/// One fault.
///
/// Every fault says *which* commands it hits (by index or by a
/// [`CmdMatcher`]) and *what* happens instead of or after running them.
/// The two crashes model the death of the process that drives the host
/// (the daemon), not of the host: what already ran stays done. A crash
/// *before* a command ([`Fault::CrashAfter`]) is the daemon killed between
/// two commands; a crash *after its effect* ([`Fault::CrashAfterEffect`])
/// is the daemon killed while a child command runs — the child completes
/// (it is not in the daemon's process), the daemon never sees its result.
/// A failing write of the driver's own storage ([`Fault::WriteFails`])
/// is not a command: the driver asks the plan before each write through
/// the function [`FaultRunner::write_check`] returns (set as the driver's
/// `DriverConfig::write_gate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Command number `index` is not run and returns `status`/`stderr`.
    FailNth {
        index: u64,
        status: i32,
        stderr: String,
    },
    /// Commands matching `matcher` are not run and return `status`/`stderr`;
    /// `times` limits how often (None = every time).
    FailMatching {
        matcher: CmdMatcher,
        status: i32,
        stderr: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        times: Option<u32>,
    },
    /// The first `after` commands run normally; command `after + 1` and
    /// every later one return `RunError::Crashed` without running until
    /// [`FaultRunner::recover`] is called (which consumes this fault).
    CrashAfter { after: u64 },
    /// Command number `index` is given to the inner runner (it takes
    /// effect on the host), then it and every later command return
    /// `RunError::Crashed` — the later ones without running — until
    /// [`FaultRunner::recover`] is called (which consumes this fault).
    CrashAfterEffect { index: u64 },
    /// Every write of the driver's state directory (journal entries,
    /// status files, dnsmasq files) to a path matching the glob
    /// `path_pattern` (`*` also matches `/`: `*.journal`, `*/dnsmasq/*`)
    /// fails with the OS error `errno` (`ENOSPC` 28, `EIO` 5, `EROFS` 30)
    /// before anything is written, once `after` matching writes went
    /// through; `times` limits how often (None = every time). Commands are
    /// untouched.
    WriteFails {
        path_pattern: String,
        errno: i32,
        #[serde(default, skip_serializing_if = "is_zero")]
        after: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        times: Option<u32>,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::FailNth {
                index,
                status,
                stderr,
            } => write!(
                f,
                "fail command #{index} with status {status} stderr {stderr:?}"
            ),
            Fault::FailMatching {
                matcher,
                status,
                stderr,
                times,
            } => {
                write!(
                    f,
                    "fail commands matching [{matcher}] with status {status} stderr {stderr:?}"
                )?;
                match times {
                    Some(t) => write!(f, " ({t} times)"),
                    None => write!(f, " (always)"),
                }
            }
            Fault::CrashAfter { after } => write!(f, "crash after {after} commands"),
            Fault::CrashAfterEffect { index } => {
                write!(f, "crash after command #{index} took effect")
            }
            Fault::WriteFails {
                path_pattern,
                errno,
                after,
                times,
            } => {
                write!(
                    f,
                    "fail writes to {path_pattern:?} with {}",
                    std::io::Error::from_raw_os_error(*errno)
                )?;
                if *after > 0 {
                    write!(f, " after {after} went through")?;
                }
                match times {
                    Some(t) => write!(f, " ({t} times)"),
                    None => write!(f, " (always)"),
                }
            }
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A set of faults applied to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FaultPlan {
    pub faults: Vec<Fault>,
}

/// A plan that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid fault plan: {0}")]
pub struct FaultPlanError(#[from] serde_json::Error);

impl FaultPlan {
    pub fn none() -> Self {
        FaultPlan::default()
    }

    pub fn fail_nth(mut self, index: u64, status: i32, stderr: impl Into<String>) -> Self {
        self.faults.push(Fault::FailNth {
            index,
            status,
            stderr: stderr.into(),
        });
        self
    }

    pub fn fail_matching(
        mut self,
        matcher: CmdMatcher,
        status: i32,
        stderr: impl Into<String>,
        times: Option<u32>,
    ) -> Self {
        self.faults.push(Fault::FailMatching {
            matcher,
            status,
            stderr: stderr.into(),
            times,
        });
        self
    }

    pub fn crash_after(mut self, after: u64) -> Self {
        self.faults.push(Fault::CrashAfter { after });
        self
    }

    /// Command `index` runs, then the host "crashes" before its result is
    /// seen (see [`Fault::CrashAfterEffect`]).
    pub fn crash_after_effect(mut self, index: u64) -> Self {
        self.faults.push(Fault::CrashAfterEffect { index });
        self
    }

    /// Writes to paths matching `path_pattern` fail with `errno` (see
    /// [`Fault::WriteFails`]).
    pub fn write_fails(
        mut self,
        path_pattern: impl Into<String>,
        errno: i32,
        times: Option<u32>,
    ) -> Self {
        self.faults.push(Fault::WriteFails {
            path_pattern: path_pattern.into(),
            errno,
            after: 0,
            times,
        });
        self
    }

    /// Writes to paths matching `path_pattern` fail with `errno` for good
    /// once `after` of them went through.
    pub fn write_fails_after(
        mut self,
        path_pattern: impl Into<String>,
        errno: i32,
        after: u32,
    ) -> Self {
        self.faults.push(Fault::WriteFails {
            path_pattern: path_pattern.into(),
            errno,
            after,
            times: None,
        });
        self
    }

    /// The injected failure of a write to `path`, if any (consumes one use
    /// of a limited `WriteFails`). A pattern that is not a valid glob
    /// matches nothing.
    pub fn write_error(&mut self, path: &Path) -> Option<std::io::Error> {
        for f in self.faults.iter_mut() {
            if let Fault::WriteFails {
                path_pattern,
                errno,
                after,
                times,
            } = f
            {
                let hit = glob::Pattern::new(path_pattern).is_ok_and(|p| p.matches_path(path));
                if !hit {
                    continue;
                }
                if *after > 0 {
                    *after -= 1;
                    continue;
                }
                match times {
                    Some(0) => continue,
                    Some(t) => *t -= 1,
                    None => {}
                }
                return Some(std::io::Error::from_raw_os_error(*errno));
            }
        }
        None
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Self, FaultPlanError> {
        Ok(serde_json::from_str(s)?)
    }

    /// The crash point, if the plan has one: the index of the first
    /// command that reports the crash, and whether that command still
    /// runs (a crash after its effect) or not (a crash before it). The
    /// earliest crash of the plan wins.
    fn crash_point(&self) -> Option<(u64, bool)> {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::CrashAfter { after } => Some((after.saturating_add(1), false)),
                Fault::CrashAfterEffect { index } => Some((*index, true)),
                _ => None,
            })
            .min()
    }

    fn remove_crash(&mut self) {
        self.faults
            .retain(|f| !matches!(f, Fault::CrashAfter { .. } | Fault::CrashAfterEffect { .. }));
    }

    /// The injected failure for command `index`, if any (consumes one use of
    /// a limited `FailMatching`).
    fn injected(&mut self, index: u64, cmd: &Cmd) -> Option<(i32, String)> {
        for f in self.faults.iter_mut() {
            match f {
                Fault::FailNth {
                    index: i,
                    status,
                    stderr,
                } if *i == index => return Some((*status, stderr.clone())),
                Fault::FailMatching {
                    matcher,
                    status,
                    stderr,
                    times,
                } if matcher.matches(cmd) => {
                    match times {
                        Some(0) => continue,
                        Some(t) => *t -= 1,
                        None => {}
                    }
                    return Some((*status, stderr.clone()));
                }
                _ => {}
            }
        }
        None
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faults.is_empty() {
            return writeln!(f, "(no faults)");
        }
        for x in &self.faults {
            writeln!(f, "{x}")?;
        }
        Ok(())
    }
}

/// What a [`FaultRunner`] did with one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Given to the inner runner.
    Ran,
    /// Not run: an injected failure with this output.
    Injected(Output),
    /// Not run: the host had "crashed".
    Crashed,
    /// Given to the inner runner, then reported as a crash (its output,
    /// or its error, is not returned).
    RanThenCrashed,
}

/// One command given to a [`FaultRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// 1-based, as the plan counts.
    pub index: u64,
    pub cmd: Cmd,
    pub applied: Applied,
}

#[derive(Debug, Default)]
struct State {
    plan: FaultPlan,
    count: u64,
    log: Vec<Given>,
    /// Writes whose failure was injected, in order.
    failed_writes: Vec<PathBuf>,
}

/// What [`FaultRunner::write_check`] returns: the path about to be
/// written; `Err` fails that write (the shape of
/// `virtnet_core::store::WriteCheck`, which testkit does not depend on).
pub type WriteCheckFn = dyn Fn(&Path) -> std::io::Result<()> + Send + Sync;

/// Wraps any runner and applies a [`FaultPlan`] in front of it: an
/// injected failure or a crash never reaches the inner runner. Keeps a log
/// of what it did with every command ([`FaultRunner::take_log`]).
pub struct FaultRunner {
    inner: Arc<dyn Runner>,
    state: Mutex<State>,
}

impl FaultRunner {
    /// A wrapper with no faults (commands are counted and logged).
    pub fn new(inner: Arc<dyn Runner>) -> Self {
        FaultRunner {
            inner,
            state: Mutex::new(State::default()),
        }
    }

    /// The same wrapper applying `plan`.
    pub fn with_plan(self, plan: FaultPlan) -> Self {
        self.set_plan(plan);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain counters
        // and a log; keep using them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Install a plan (replacing the previous one).
    pub fn set_plan(&self, plan: FaultPlan) {
        self.lock().plan = plan;
    }

    /// The plan as it is now (limited faults count down).
    pub fn plan(&self) -> FaultPlan {
        self.lock().plan.clone()
    }

    /// Number of commands given so far (including failed and refused ones).
    pub fn command_count(&self) -> u64 {
        self.lock().count
    }

    /// Restart command numbering at 0 (for plans relative to a phase).
    pub fn reset_counter(&self) {
        self.lock().count = 0;
    }

    /// True while a crash fault is in effect (the crashing command was
    /// given).
    pub fn is_crashed(&self) -> bool {
        let state = self.lock();
        state
            .plan
            .crash_point()
            .is_some_and(|(first, _)| state.count >= first)
    }

    /// End a crash: the `CrashAfter` fault is removed and later commands
    /// run normally on the host as the crash left it.
    pub fn recover(&self) {
        self.lock().plan.remove_crash();
    }

    /// Every command given so far, with what was done with it.
    pub fn log(&self) -> Vec<Given> {
        self.lock().log.clone()
    }

    /// Return and forget the log.
    pub fn take_log(&self) -> Vec<Given> {
        std::mem::take(&mut self.lock().log)
    }

    /// The argv of every command given so far, in order.
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.lock()
            .log
            .iter()
            .map(|g| g.cmd.argv.to_vec())
            .collect()
    }

    /// The write check of this wrapper's plan, for the driver's
    /// `DriverConfig::write_gate` (`WriteGate::new(runner.write_check())`):
    /// a write to a path a [`Fault::WriteFails`] of the plan (as it is
    /// when the write happens) matches fails with its errno.
    pub fn write_check(self: &Arc<Self>) -> Arc<WriteCheckFn> {
        let me = Arc::clone(self);
        Arc::new(move |path: &Path| {
            let mut state = me.lock();
            match state.plan.write_error(path) {
                Some(e) => {
                    state.failed_writes.push(path.to_path_buf());
                    Err(e)
                }
                None => Ok(()),
            }
        })
    }

    /// The writes whose failure was injected so far.
    pub fn failed_writes(&self) -> Vec<PathBuf> {
        self.lock().failed_writes.clone()
    }

    /// The last command whose failure was injected (with its standard
    /// input), if any.
    pub fn injected_cmd(&self) -> Option<Cmd> {
        self.lock()
            .log
            .iter()
            .rev()
            .find(|g| matches!(g.applied, Applied::Injected(_)))
            .map(|g| g.cmd.clone())
    }

    /// The last command whose failure was injected, if any.
    pub fn injected(&self) -> Option<Vec<String>> {
        self.lock()
            .log
            .iter()
            .rev()
            .find(|g| matches!(g.applied, Applied::Injected(_)))
            .map(|g| g.cmd.argv.to_vec())
    }
}

impl FaultRunner {
    /// The plan applied to `cmd`, which (when it runs) runs through `run`:
    /// the inner runner's `run` or `run_direct`, as the caller asked.
    fn faulted(
        &self,
        cmd: &Cmd,
        run: impl Fn(&Cmd) -> Result<Output, RunError>,
    ) -> Result<Output, RunError> {
        let verdict = {
            let mut state = self.lock();
            state.count += 1;
            let index = state.count;
            let crash = state.plan.crash_point();
            let applied =
                if crash.is_some_and(|(first, runs)| index > first || (index == first && !runs)) {
                    Applied::Crashed
                } else if crash == Some((index, true)) {
                    Applied::RanThenCrashed
                } else if let Some((status, stderr)) = state.plan.injected(index, cmd) {
                    Applied::Injected(Output::failed(status, stderr))
                } else {
                    Applied::Ran
                };
            state.log.push(Given {
                index,
                cmd: cmd.clone(),
                applied: applied.clone(),
            });
            (index, applied)
        };
        match verdict {
            (index, Applied::Crashed) => Err(RunError::Crashed {
                program: cmd.program().to_string(),
                index,
            }),
            (_, Applied::Injected(output)) => Ok(output),
            (index, Applied::RanThenCrashed) => {
                // The command takes effect; the "process" dies before it
                // sees the result.
                let _ = run(cmd);
                Err(RunError::Crashed {
                    program: cmd.program().to_string(),
                    index,
                })
            }
            // Run outside the lock: the inner runner may take its time.
            (_, Applied::Ran) => run(cmd),
        }
    }
}

impl Runner for FaultRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.faulted(cmd, |c| self.inner.run(c))
    }

    /// The same plan, the command counted as any other; when it runs, it
    /// runs as the inner runner's `run_direct` (the real runner's
    /// in-process forms stay in-process under fault injection).
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.faulted(cmd, |c| self.inner.run_direct(c))
    }

    fn has_program(&self, name: &str) -> bool {
        self.inner.has_program(name)
    }

    fn is_zombie(&self, pid: &str) -> bool {
        self.inner.is_zombie(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runner that counts what reached it and succeeds.
    #[derive(Default)]
    struct Counting(Mutex<Vec<String>>);

    impl Runner for Counting {
        fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(cmd.argv.join(" "));
            Ok(Output::default())
        }
    }

    fn given(inner: &Arc<Counting>) -> Vec<String> {
        inner.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records which door each command came through.
    #[derive(Default)]
    struct Doors(Mutex<Vec<String>>);

    impl Runner for Doors {
        fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("run {}", cmd.argv.join(" ")));
            Ok(Output::default())
        }
        fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("direct {}", cmd.argv.join(" ")));
            Ok(Output::default())
        }
    }

    #[test]
    fn run_direct_is_faulted_and_stays_direct() {
        let inner = Arc::new(Doors::default());
        let f = FaultRunner::new(inner.clone()).with_plan(FaultPlan::none().crash_after_effect(3));
        assert!(f.run_direct(&Cmd::new(["a"])).is_ok());
        assert!(f.run(&Cmd::new(["b"])).is_ok());
        // The third command (direct) takes effect, then the crash.
        let e = f.run_direct(&Cmd::new(["c"])).unwrap_err();
        assert!(matches!(e, RunError::Crashed { index: 3, .. }), "{e:?}");
        assert!(f.run_direct(&Cmd::new(["d"])).is_err());
        assert_eq!(*inner.0.lock().unwrap(), ["direct a", "run b", "direct c"]);
    }

    #[test]
    fn crash_after_effect_runs_the_command_then_refuses_everything() {
        let inner = Arc::new(Counting::default());
        let f = FaultRunner::new(inner.clone()).with_plan(FaultPlan::none().crash_after_effect(2));
        assert!(f.run_argv(&["a"]).is_ok());
        assert!(!f.is_crashed());
        let e = f.run_argv(&["b"]).unwrap_err();
        assert!(matches!(e, RunError::Crashed { index: 2, .. }), "{e:?}");
        assert!(f.is_crashed());
        let e = f.run_argv(&["c"]).unwrap_err();
        assert!(matches!(e, RunError::Crashed { index: 3, .. }), "{e:?}");
        // b took effect, c did not.
        assert_eq!(given(&inner), vec!["a", "b"]);
        let applied: Vec<Applied> = f.log().into_iter().map(|g| g.applied).collect();
        assert_eq!(
            applied,
            vec![Applied::Ran, Applied::RanThenCrashed, Applied::Crashed]
        );
        f.recover();
        assert!(!f.is_crashed());
        assert!(f.run_argv(&["d"]).is_ok());
        assert_eq!(given(&inner), vec!["a", "b", "d"]);
    }

    #[test]
    fn crash_before_effect_does_not_run_the_command() {
        let inner = Arc::new(Counting::default());
        let f = FaultRunner::new(inner.clone()).with_plan(FaultPlan::none().crash_after(1));
        assert!(f.run_argv(&["a"]).is_ok());
        assert!(f.run_argv(&["b"]).is_err());
        assert!(f.is_crashed());
        assert_eq!(given(&inner), vec!["a"]);
    }

    #[test]
    fn write_faults_match_globs_count_down_and_replay() {
        let f = Arc::new(
            FaultRunner::new(Arc::new(Counting::default()))
                .with_plan(FaultPlan::none().write_fails("*/dnsmasq/*.conf", 28, Some(1))),
        );
        let check = f.write_check();
        assert!(check(Path::new("/s/net0.journal")).is_ok());
        let e = check(Path::new("/s/dnsmasq/net0.conf")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        // Used up.
        assert!(check(Path::new("/s/dnsmasq/net0.conf")).is_ok());
        assert_eq!(
            f.failed_writes(),
            vec![PathBuf::from("/s/dnsmasq/net0.conf")]
        );
        // Commands are untouched.
        assert!(f.run_argv(&["a"]).is_ok());
        let plan = FaultPlan::none().write_fails("*.journal", 5, None);
        assert_eq!(FaultPlan::from_json(&plan.to_json()).unwrap(), plan);
        let f = Arc::new(
            FaultRunner::new(Arc::new(Counting::default()))
                .with_plan(FaultPlan::none().write_fails_after("*.journal", 30, 2)),
        );
        let check = f.write_check();
        let j = Path::new("/s/n.journal");
        assert!(check(j).is_ok() && check(j).is_ok());
        assert_eq!(check(j).unwrap_err().raw_os_error(), Some(30));
        assert_eq!(check(j).unwrap_err().raw_os_error(), Some(30));
        assert!(plan
            .to_string()
            .starts_with("fail writes to \"*.journal\" with "));
    }

    #[test]
    fn crash_faults_print_and_replay() {
        let plan = FaultPlan::none().crash_after_effect(4);
        assert_eq!(FaultPlan::from_json(&plan.to_json()).unwrap(), plan);
        assert!(plan.to_json().contains("crash_after_effect"));
        assert_eq!(plan.to_string(), "crash after command #4 took effect\n");
    }
}
