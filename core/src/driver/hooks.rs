//! The network hook: libvirt 11.3.0's networkRunHook / virHookCall for the
//! network driver.
//!
//! With [`DriverConfig::hooks_dir`](super::DriverConfig::hooks_dir) set,
//! `HOOKS_DIR/network` (if it is a regular file with an execute bit, as
//! libvirt's virFileIsExecutable checks) is run, then every executable
//! regular file of `HOOKS_DIR/network.d/` in byte order of their names, each
//! as `PATH NETWORK OPERATION SUB-OPERATION -` with, on stdin,
//! `<hookData>` around the network's live definition (libvirt's flags 0
//! format, indented by two spaces) and no newline after `</hookData>`.
//!
//! Where the driver runs it (as libvirt's bridge_driver.c does):
//!
//! | point | arguments | on a non-zero exit |
//! |---|---|---|
//! | start, before anything is created | `start begin -` | the start fails with the hook's error; nothing was created |
//! | start, after everything was created, before the status file | `started begin -` | the start fails and is undone |
//! | a failed start, after its undo | `stopped end -` | ignored |
//! | destroy, after everything was removed | `stopped end -` | ignored |
//! | net-update, after the change | `updated begin -` | the update fails (its change stays made, as in libvirt) |
//!
//! libvirt's `port-created` / `port-deleted` have no counterpart: virtnet
//! has no network ports.
//!
//! A hook is not host state: it is run through the driver's plain runner
//! (the one door to the host), not through the start's journal, and only
//! when a hook file exists — so with no hook, the command streams are
//! exactly as they were. The error of a failing hook is libvirt's,
//! `Hook script execution failed: internal error: Child process (PATH ARGS)
//! unexpected exit status N: STDERR`.
//!
//! Deliberate differences from libvirt 11.3.0:
//!
//! - libvirt looks for the hook files once at daemon start (and again on a
//!   daemon-hook reload); virtnet looks at each call, so a hook installed
//!   while virtnetd runs is used at once.
//! - The command in the error message has no environment assignments
//!   (libvirt prints the `LC_ALL=C PATH=...` it passes the script).
//! - A script of `network.d/` gets the same stdin as the first one (libvirt
//!   too: the network hook asks for no output).

use std::path::{Path, PathBuf};

use super::DriverError;
use crate::netxml::{format_indented, FormatFlags, NetworkDef};
use virtnet_runner::{Cmd, RunError, Runner};

/// libvirt's virHookNetworkOpType, as its hook scripts receive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOp {
    Start,
    Started,
    Stopped,
    Updated,
}

impl HookOp {
    fn as_str(self) -> &'static str {
        match self {
            HookOp::Start => "start",
            HookOp::Started => "started",
            HookOp::Stopped => "stopped",
            HookOp::Updated => "updated",
        }
    }

    /// The sub-operation libvirt passes with it.
    fn sub_op(self) -> &'static str {
        match self {
            HookOp::Stopped => "end",
            _ => "begin",
        }
    }
}

/// libvirt's virFileIsExecutable: a regular file with an execute bit.
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The hook scripts to run, in order (empty: no hook).
pub fn hook_scripts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let main = dir.join("network");
    if is_executable(&main) {
        out.push(main);
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("network.d")) {
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_executable(p))
            .collect();
        more.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        out.extend(more);
    }
    out
}

/// What a network hook gets on stdin.
pub fn hook_data(def: &NetworkDef) -> String {
    format!(
        "<hookData>\n{}</hookData>",
        format_indented(def, FormatFlags::LIVE, 2)
    )
}

/// Runs the network hook(s) of `dir` for `def`. `Ok` when there is none.
/// Every script runs; the first failure is the error (libvirt keeps the
/// lowest return, and the last error reported).
pub fn run_hook(
    runner: &dyn Runner,
    dir: Option<&Path>,
    def: &NetworkDef,
    op: HookOp,
) -> Result<(), DriverError> {
    let Some(dir) = dir else {
        return Ok(());
    };
    let scripts = hook_scripts(dir);
    if scripts.is_empty() {
        return Ok(());
    }
    let input = hook_data(def);
    let mut failure = None;
    for script in scripts {
        let path = script.to_string_lossy().to_string();
        let argv = [
            path.as_str(),
            def.name.as_str(),
            op.as_str(),
            op.sub_op(),
            "-",
        ];
        let cmd = Cmd::new(argv).with_stdin(input.clone());
        let err = match runner.run(&cmd) {
            Ok(out) if out.status == 0 => None,
            Ok(out) => {
                let stderr = out.stderr.trim_end();
                Some(DriverError::Hook(format!(
                    "internal error: Child process ({}) unexpected exit status {}{}{}",
                    argv.join(" "),
                    out.status,
                    if stderr.is_empty() { "" } else { ": " },
                    stderr
                )))
            }
            Err(e @ RunError::Crashed { .. }) => return Err(DriverError::Crashed(e)),
            Err(e) => Some(DriverError::Hook(format!(
                "Cannot run program '{path}': {e}"
            ))),
        };
        if let Some(e) = err {
            tracing::warn!("network hook {path} {} failed: {e}", op.as_str());
            failure = Some(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
