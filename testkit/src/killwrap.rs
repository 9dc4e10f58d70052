//! A `kill -9` at a chosen tool invocation, on the real host: wrappers
//! named after the tools (`nft`, `iptables`, `ip`, `dnsmasq`, ...) placed
//! first on the `PATH` of the process under test. Each invocation appends
//! one line to a log (so the k-th command of an operation is known), and at
//! invocation k the wrapper SIGKILLs its parent — the process that ran the
//! tool — either *before* running the real tool (the command never took
//! effect) or *after* the real tool completed (it took effect, and its
//! caller died before seeing the result: what a `kill -9` of `virtnet`
//! while a child command runs amounts to). Any other invocation just
//! `exec`s the real tool, which is the first program of that name on
//! `PATH` after the wrapper directory.
//!
//! The wrapper is any Rust binary that calls [`run_if_wrapper`] first in
//! its `main` (a test binary with `harness = false`): [`install`] makes the
//! tool names symbolic links to it, and [`run_if_wrapper`] recognises a
//! call through one of them by `VIRTNET_KILLWRAP_DIR` in its environment
//! and its `argv[0]`'s file name.
//! Nothing here is a shell script, so the wrapper adds no shell's signal or
//! `PATH` behaviour of its own.
//!
//! Environment of the process under test (inherited by the wrappers):
//! [`ENV_DIR`] (the wrapper directory), [`ENV_LOG`] (the invocation log,
//! one `N TOOL ARGS` line per call), [`ENV_AT`] (k, 1-based; unset or 0 =
//! never kill) and [`ENV_WHEN`] (`before` or `after`).

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The wrapper directory (a call through a link in it is a wrapper call).
pub const ENV_DIR: &str = "VIRTNET_KILLWRAP_DIR";
/// The invocation log.
pub const ENV_LOG: &str = "VIRTNET_KILLWRAP_LOG";
/// The invocation (1-based) at which the parent is killed.
pub const ENV_AT: &str = "VIRTNET_KILLWRAP_AT";
/// `before` or `after` the real tool runs.
pub const ENV_WHEN: &str = "VIRTNET_KILLWRAP_WHEN";

/// Whether the kill lands before or after the real command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The real tool never runs.
    Before,
    /// The real tool runs to completion, then the caller dies.
    After,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Before => "before",
            When::After => "after",
        }
    }
}

/// Makes `DIR/TOOL` a symbolic link to `exe` for every tool.
pub fn install(dir: &Path, exe: &Path, tools: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for t in tools {
        let link = dir.join(t);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(exe, &link)?;
    }
    Ok(())
}

/// The invocations logged so far (one entry per line: `N TOOL ARGS`).
pub fn logged(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// When this process was started through a wrapper link (`$VIRTNET_KILLWRAP_DIR`
/// is set: only the process under test and its children have it), acts as
/// the wrapper of the tool its `argv[0]` names and never returns (it `exec`s
/// the real tool or exits with its status); otherwise returns. A program
/// started by name through `PATH` gets that bare name as `argv[0]`, so the
/// tool is recognised by its file name in the wrapper directory. If that
/// name is no link there, the process exits with status 127: a binary
/// that also runs tests must never run them under the wrappers' environment
/// (they would run their tools through the wrappers, recursively).
pub fn run_if_wrapper() {
    let Some(dir) = std::env::var_os(ENV_DIR).map(PathBuf::from) else {
        return;
    };
    let mut args = std::env::args_os();
    let argv0 = args.next().map(PathBuf::from).unwrap_or_default();
    let Some(tool) = argv0.file_name().map(|t| t.to_os_string()) else {
        eprintln!("killwrap: no program name");
        std::process::exit(127);
    };
    if std::fs::symlink_metadata(dir.join(&tool)).is_err() {
        eprintln!(
            "killwrap: {} is not a wrapper in {}",
            tool.to_string_lossy(),
            dir.display()
        );
        std::process::exit(127);
    }
    let rest: Vec<OsString> = args.collect();
    std::process::exit(wrap(&dir, &tool, &rest));
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The first `tool` on `PATH` outside the wrapper directory.
fn real_tool(dir: &Path, tool: &std::ffi::OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty() && !same_dir(d, dir))
        .map(|d| d.join(tool))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Appends this call to the log (under an exclusive lock) and returns its
/// number (1-based).
fn log_call(log: &Path, tool: &std::ffi::OsStr, args: &[OsString]) -> std::io::Result<usize> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(log)?;
    let mut f = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))?;
    let mut text = String::new();
    f.rewind()?;
    f.read_to_string(&mut text)?;
    let n = text.lines().count() + 1;
    let words: Vec<String> = std::iter::once(tool)
        .chain(args.iter().map(OsString::as_os_str))
        .map(|s| s.to_string_lossy().replace('\n', "\\n"))
        .collect();
    writeln!(f, "{n} {}", words.join(" "))?;
    Ok(n)
}

fn kill_parent() {
    let _ = nix::sys::signal::kill(nix::unistd::getppid(), nix::sys::signal::Signal::SIGKILL);
}

fn wrap(dir: &Path, tool: &std::ffi::OsStr, args: &[OsString]) -> i32 {
    let Some(real) = real_tool(dir, tool) else {
        eprintln!(
            "killwrap: no {} on PATH after {}",
            tool.to_string_lossy(),
            dir.display()
        );
        return 127;
    };
    let n = match std::env::var_os(ENV_LOG) {
        Some(log) => match log_call(Path::new(&log), tool, args) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("killwrap: cannot log to {}: {e}", Path::new(&log).display());
                return 126;
            }
        },
        None => 0,
    };
    let at: usize = std::env::var(ENV_AT)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let when = match std::env::var(ENV_WHEN).as_deref() {
        Ok("after") => When::After,
        _ => When::Before,
    };
    if at == 0 || n != at {
        let e = std::process::Command::new(&real).args(args).exec();
        eprintln!("killwrap: cannot exec {}: {e}", real.display());
        return 126;
    }
    match when {
        When::Before => {
            kill_parent();
            137
        }
        When::After => {
            let status = std::process::Command::new(&real).args(args).status();
            kill_parent();
            match status {
                Ok(s) => s.code().unwrap_or(128),
                Err(_) => 126,
            }
        }
    }
}
