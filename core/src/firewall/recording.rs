//! [`RecordingRunner`]: a runner for tests that records every command and
//! answers like libvirt's test executor (networkxml2firewalltest): exit
//! status 0, empty stderr, stdout `# handle 5309` when `argv[1]` is exactly
//! `-ae`, empty stdout otherwise. Scripted failures and scripted stdout can
//! be layered on top, and handles can be numbered instead of fixed.

use std::sync::Mutex;

use super::render::{render_stream, RenderOptions};
use virtnet_runner::{Cmd, Output, RunError, Runner};

/// How [`RecordingRunner`] answers `nft -ae ...` creations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleMode {
    /// Always `# handle N` (libvirt's test executor uses 5309).
    Fixed(u64),
    /// `# handle N`, N counting up from the given start.
    Counter(u64),
    /// No handle at all: stdout is empty (to exercise the no-handle error).
    Missing,
}

/// When a script entry applies to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// The argv is exactly this.
    Exact(Vec<String>),
    /// The argv contains this sequence of consecutive elements.
    Contains(Vec<String>),
    /// Some argv element contains this substring.
    AnyArgContains(String),
}

impl Matcher {
    pub fn exact<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        Matcher::Exact(argv.into_iter().map(Into::into).collect())
    }
    pub fn contains<I: IntoIterator<Item = S>, S: Into<String>>(seq: I) -> Self {
        Matcher::Contains(seq.into_iter().map(Into::into).collect())
    }
    pub fn matches(&self, argv: &[String]) -> bool {
        match self {
            Matcher::Exact(want) => argv == want.as_slice(),
            Matcher::Contains(seq) => {
                seq.is_empty() || argv.windows(seq.len()).any(|w| w == seq.as_slice())
            }
            Matcher::AnyArgContains(s) => argv.iter().any(|a| a.contains(s.as_str())),
        }
    }
}

/// What a scripted entry answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Exit with this output (status, stdout, stderr).
    Output(Output),
    /// Fail to run at all (as a missing binary would).
    SpawnError(String),
    /// Simulated process death before the command runs.
    Crash,
}

struct Rule {
    matcher: Matcher,
    reply: Reply,
    /// `None` = unlimited; otherwise how many more times it applies.
    remaining: Option<usize>,
}

struct State {
    recorded: Vec<Cmd>,
    rules: Vec<Rule>,
    next_handle: u64,
}

/// A closure deciding the reply to an argv (`None`: fall through).
pub type ReplyHook = Box<dyn Fn(&[String]) -> Option<Reply> + Send + Sync>;

/// Records every command it is asked to run; see the module docs.
pub struct RecordingRunner {
    mode: HandleMode,
    state: Mutex<State>,
    /// A closure consulted before the scripted rules (libvirt's test hooks).
    hook: Option<ReplyHook>,
}

impl Default for RecordingRunner {
    fn default() -> Self {
        RecordingRunner::new()
    }
}

impl std::fmt::Debug for RecordingRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRunner")
            .field("mode", &self.mode)
            .field("recorded", &self.recorded().len())
            .finish()
    }
}

impl RecordingRunner {
    /// libvirt's test executor: `# handle 5309` for `-ae` commands.
    pub fn new() -> Self {
        RecordingRunner::with_handles(HandleMode::Fixed(5309))
    }

    pub fn with_handles(mode: HandleMode) -> Self {
        let next_handle = match mode {
            HandleMode::Counter(start) => start,
            HandleMode::Fixed(n) => n,
            HandleMode::Missing => 0,
        };
        RecordingRunner {
            mode,
            state: Mutex::new(State {
                recorded: Vec::new(),
                rules: Vec::new(),
                next_handle,
            }),
            hook: None,
        }
    }

    /// Installs a hook consulted first for every command; `None` from it falls
    /// through to the scripted rules and the default answer.
    pub fn with_hook<F>(mut self, hook: F) -> Self
    where
        F: Fn(&[String]) -> Option<Reply> + Send + Sync + 'static,
    {
        self.hook = Some(Box::new(hook));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scripts a reply for every command matching `matcher` (first matching
    /// rule wins, in the order added).
    pub fn on(&self, matcher: Matcher, reply: Reply) -> &Self {
        self.lock().rules.push(Rule {
            matcher,
            reply,
            remaining: None,
        });
        self
    }

    /// Scripts a reply for the next `times` commands matching `matcher`.
    pub fn on_times(&self, matcher: Matcher, reply: Reply, times: usize) -> &Self {
        self.lock().rules.push(Rule {
            matcher,
            reply,
            remaining: Some(times),
        });
        self
    }

    /// Makes matching commands exit with `status` and `stderr`.
    pub fn fail_when(&self, matcher: Matcher, status: i32, stderr: &str) -> &Self {
        self.on(matcher, Reply::Output(Output::failed(status, stderr)))
    }

    /// Makes matching commands succeed with `stdout`.
    pub fn stdout_when(&self, matcher: Matcher, stdout: &str) -> &Self {
        self.on(matcher, Reply::Output(Output::ok(stdout)))
    }

    /// Every command run so far, in order (crashed ones included).
    pub fn recorded(&self) -> Vec<Cmd> {
        self.lock().recorded.clone()
    }

    /// The recorded argvs.
    pub fn argvs(&self) -> Vec<Vec<String>> {
        self.lock()
            .recorded
            .iter()
            .map(|c| c.argv.to_vec())
            .collect()
    }

    /// The recorded commands rendered like libvirt's dry run
    /// ([`RenderOptions::GOLDEN`] gives the networkxml2firewalldata layout).
    pub fn rendered(&self, opts: RenderOptions) -> String {
        render_stream(&self.lock().recorded, opts)
    }

    /// Forgets the recorded commands (scripted rules stay).
    pub fn clear(&self) {
        self.lock().recorded.clear();
    }

    fn default_reply(&self, state: &mut State, argv: &[String]) -> Output {
        if argv.get(1).map(String::as_str) != Some("-ae") {
            return Output::ok("");
        }
        match self.mode {
            HandleMode::Fixed(n) => Output::ok(format!("# handle {n}")),
            HandleMode::Counter(_) => {
                let n = state.next_handle;
                state.next_handle += 1;
                Output::ok(format!("# handle {n}"))
            }
            HandleMode::Missing => Output::ok(""),
        }
    }
}

impl Runner for RecordingRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        if cmd.argv.is_empty() {
            return Err(RunError::Empty);
        }
        let hooked = self.hook.as_ref().and_then(|h| h(&cmd.argv));
        let mut state = self.lock();
        state.recorded.push(cmd.clone());
        let index = (state.recorded.len() - 1) as u64;
        let reply = match hooked {
            Some(r) => Some(r),
            None => {
                let mut found = None;
                for rule in state.rules.iter_mut() {
                    if rule.remaining == Some(0) || !rule.matcher.matches(&cmd.argv) {
                        continue;
                    }
                    if let Some(n) = rule.remaining.as_mut() {
                        *n -= 1;
                    }
                    found = Some(rule.reply.clone());
                    break;
                }
                found
            }
        };
        match reply {
            Some(Reply::Output(out)) => Ok(out),
            Some(Reply::SpawnError(reason)) => Err(RunError::Spawn {
                program: cmd.program().to_string(),
                reason,
            }),
            Some(Reply::Crash) => Err(RunError::Crashed {
                program: cmd.program().to_string(),
                index,
            }),
            None => Ok(self.default_reply(&mut state, &cmd.argv)),
        }
    }
}
