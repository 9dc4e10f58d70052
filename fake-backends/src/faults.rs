//! Fault plans: serde data that says which commands of a run fail and when
//! the host "crashes". A plan is printable (`Display`, one fault per line)
//! and replayable (JSON via [`FaultPlan::to_json`] / [`FaultPlan::from_json`]),
//! so a failing property test can print the plan that broke it.
//!
//! Command indexes are 1-based and count every command given to the host
//! (including injected failures and crashed commands) since the host was
//! created or its counter reset with [`crate::FakeHost::reset_counter`].

use std::fmt;

use serde::{Deserialize, Serialize};
use virtnet_runner::Cmd;

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
    /// every later one return `RunError::Crashed` until
    /// [`crate::FakeHost::recover`] is called (which consumes this fault).
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
    pub(crate) fn crash_point(&self) -> Option<u64> {
        self.faults.iter().find_map(|f| match f {
            Fault::CrashAfter { after } => Some(*after),
            _ => None,
        })
    }

    pub(crate) fn remove_crash(&mut self) {
        self.faults
            .retain(|f| !matches!(f, Fault::CrashAfter { .. }));
    }

    /// The injected failure for command `index`, if any (consumes one use of
    /// a limited `FailMatching`).
    pub(crate) fn injected(&mut self, index: u64, cmd: &Cmd) -> Option<(i32, String)> {
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
