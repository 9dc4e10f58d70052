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
//! A command whose failure is injected, or that comes after the "crash",
//! never reaches the wrapped runner, so the host is exactly as it was
//! before it (`fake-backends/tests/host_faults.rs` checks this on the
//! simulated host).

use std::fmt;
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
/// Faults still to come fit the same shape: a crash *after* a command took
/// effect (`CrashAfterEffect { index }`: command `index` runs, then it and
/// every later command report [`RunError::Crashed`]) is another variant
/// with an index, applied by [`FaultRunner`] after the inner run; a failing
/// file write of the driver's own storage (`FailWrite { path, nth }`) is a
/// variant the driver's file layer would ask the plan about
/// ([`FaultPlan::faults`] is plain data) — neither is implemented yet.
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
        }
    }
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

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Self, FaultPlanError> {
        Ok(serde_json::from_str(s)?)
    }

    /// The crash point, if the plan has one.
    fn crash_point(&self) -> Option<u64> {
        self.faults.iter().find_map(|f| match f {
            Fault::CrashAfter { after } => Some(*after),
            _ => None,
        })
    }

    fn remove_crash(&mut self) {
        self.faults
            .retain(|f| !matches!(f, Fault::CrashAfter { .. }));
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
}

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

    /// True while a `CrashAfter` fault is in effect.
    pub fn is_crashed(&self) -> bool {
        let state = self.lock();
        state.plan.crash_point().is_some_and(|k| state.count > k)
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

impl Runner for FaultRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let verdict = {
            let mut state = self.lock();
            state.count += 1;
            let index = state.count;
            let applied = if state.plan.crash_point().is_some_and(|k| index > k) {
                Applied::Crashed
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
            // Run outside the lock: the inner runner may take its time.
            (_, Applied::Ran) => self.inner.run(cmd),
        }
    }

    fn has_program(&self, name: &str) -> bool {
        self.inner.has_program(name)
    }
}
