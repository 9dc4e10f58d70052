//! Executing a [`Firewall`] through a [`Runner`] (libvirt 11.3.0
//! `virFirewallApply` and friends).
//!
//! * argv = binary of the layer for the backend + exec-time options
//!   (`-w`/`--concurrent` for iptables-family layers, `-ae` for nft creations
//!   in AUTO_ROLLBACK groups) + the stored arguments;
//! * a command that cannot be run fails even if it ignores errors; only a
//!   non-zero exit status can be ignored; a failed `nft list ...` counts as
//!   an empty listing;
//! * after success, the query callback gets stdout split on `\n`;
//! * AUTO_ROLLBACK groups record inverses (`--delete`, `delete ... handle N`);
//! * on failure in group i, rollbacks of groups `first..=i` run in ascending
//!   order, where `first` comes from the INHERIT_PREVIOUS flags (see
//!   [`rollback_start`]);
//! * [`RunError::Crashed`] stops everything at once, without rollback.

use std::sync::{Arc, Mutex};

use super::inverse::{self, nft_creation, parse_nft_handle};
use super::render::{render_argv, RenderOptions};
use super::{
    exec_prefix, Backend, CallbackCtx, Firewall, FirewallCmd, Layer, RollbackFlags,
    TransactionFlags,
};
use virtnet_runner::{Cmd, RunError, Runner};

/// Serialises all applies in the process, as libvirt's global lock does.
static APPLY_LOCK: Mutex<()> = Mutex::new(());

/// Test-only mutation (cargo feature `sabotage`, never on in a shipped
/// build): when switched on with [`sabotage::drop_last_undo`], the
/// rollback of a failed firewall transaction skips its last undo step, and
/// so does the driver's undo of a failed start (its journal would
/// otherwise undo what the firewall rollback skipped). It exists
/// to prove that the property tests catch a broken rollback
/// (`cargo xtask props --mutant drop-last-undo`); nothing but a Rust call
/// from a test can switch it on.
#[cfg(feature = "sabotage")]
#[doc(hidden)]
pub mod sabotage {
    use std::sync::atomic::{AtomicBool, Ordering};

    static DROP_LAST_UNDO: AtomicBool = AtomicBool::new(false);

    /// Switches the mutation on or off for the whole process.
    pub fn drop_last_undo(on: bool) {
        DROP_LAST_UNDO.store(on, Ordering::SeqCst);
    }

    pub(super) fn dropping_last_undo() -> bool {
        DROP_LAST_UNDO.load(Ordering::SeqCst)
    }
}

/// Is the rollback to skip its last undo step? (Always false without the
/// `sabotage` feature.) Also read by the driver's undo of a failed start.
pub(crate) fn sabotaged() -> bool {
    #[cfg(feature = "sabotage")]
    {
        sabotage::dropping_last_undo()
    }
    #[cfg(not(feature = "sabotage"))]
    {
        false
    }
}

/// Why applying a firewall (or building its removal plan) failed. The
/// messages are libvirt's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    /// The plan has a sticky builder error; nothing was run.
    #[error("Unable to create firewall command: Invalid argument ({0})")]
    Build(super::BuildError),
    #[error("Can't apply empty firewall command")]
    EmptyCommand,
    #[error("Firewall backend is not implemented")]
    BackendNotImplemented,
    /// iptables-family (and iptables-backend tc) command exited non-zero.
    #[error("Failed to run firewall command {command}: {stderr}")]
    CommandFailed { command: String, stderr: String },
    /// nftables-backend command exited non-zero.
    #[error("Failed to apply firewall command '{command}': {stderr}")]
    NftCommandFailed { command: String, stderr: String },
    /// An nft creation succeeded but its echo had no `# handle N`.
    #[error("couldn't register rollback command - command '{command}' had no valid handle in output ('{stdout}')")]
    NoHandle { command: String, stdout: String },
    /// The command could not be run at all.
    #[error("{0}")]
    Run(RunError),
    /// The runner reported that the process died before the command ran:
    /// apply stopped at once and NO rollback was run.
    #[error("firewall apply aborted, no rollback run: {program} (command #{index}) crashed")]
    Crashed { program: String, index: u64 },
    /// An nft argument that nft would read as more than the one word (or
    /// the one `{ ... }` block) it is meant to be; nothing was run. See
    /// [`check_nft_argument`].
    #[error("refusing to run firewall command '{command}': argument {argument:?} {reason}")]
    UnsafeNftArgument {
        command: String,
        argument: String,
        reason: &'static str,
    },
    /// A query callback rejected its input.
    #[error("{message}")]
    Callback { message: String },
    /// `new_from_rollback` on a plan with a sticky builder error.
    #[error("error in original firewall object")]
    OriginalHasError,
}

impl FirewallError {
    /// True for [`FirewallError::Crashed`].
    pub fn is_crash(&self) -> bool {
        matches!(self, FirewallError::Crashed { .. })
    }
}

impl From<RunError> for FirewallError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Crashed { program, index } => FirewallError::Crashed { program, index },
            other => FirewallError::Run(other),
        }
    }
}

/// `g_strsplit(output, "\n", -1)`: no element for "", else split on `\n`.
pub(crate) fn split_lines(output: &str) -> Vec<&str> {
    if output.is_empty() {
        Vec::new()
    } else {
        output.split('\n').collect()
    }
}

/// The first group whose rollback runs when group `failed` fails, given each
/// group's rollback flags: `(lowest g in 1..=failed with INHERIT_PREVIOUS) - 1`,
/// or `failed` when none has it. (libvirt's loop scans g = failed down to 1
/// and does not stop at the first group without the flag.)
pub fn rollback_start(rollback_flags: &[RollbackFlags], failed: usize) -> usize {
    let mut first = failed;
    for j in 0..failed {
        let g = failed - j;
        if rollback_flags
            .get(g)
            .is_some_and(|f| f.contains(RollbackFlags::INHERIT_PREVIOUS))
        {
            first = g - 1;
        }
    }
    first
}

/// Outcome of running one command that counts as successful (possibly with
/// a non-zero status that was ignored).
struct Executed {
    stdout: String,
    /// The inverse to add to the current group's rollback list, as the argv
    /// it is executed with (binary and options of the backend, no `-ae`).
    rollback: Option<Vec<String>>,
    /// An error to return after the rollback was added (libvirt adds the
    /// still empty rollback of an nft creation before it finds no handle).
    error: Option<FirewallError>,
}

impl Executed {
    fn plain(stdout: String) -> Self {
        Executed {
            stdout,
            rollback: None,
            error: None,
        }
    }
}

impl Firewall {
    /// Applies the plan through `runner` with libvirt 11.3.0 semantics.
    ///
    /// Groups run in order; the first failing command of a group stops it and
    /// triggers the rollback of groups `first..=i` (see [`rollback_start`]),
    /// ignoring their failures, then the original error is returned. The
    /// rollback lists recorded by AUTO_ROLLBACK groups stay in the object so
    /// [`Firewall::new_from_rollback`] can build the removal plan.
    ///
    /// A [`RunError::Crashed`] from the runner aborts immediately (even in the
    /// middle of a rollback) and is returned as [`FirewallError::Crashed`].
    pub fn apply<R: Runner + ?Sized>(&mut self, runner: &R) -> Result<(), FirewallError> {
        let _guard = APPLY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(err) = self.error {
            return Err(FirewallError::Build(err));
        }
        let mut i = 0;
        while i < self.groups.len() {
            if let Err(err) = self.apply_group(runner, i) {
                if err.is_crash() {
                    return Err(err);
                }
                let flags: Vec<RollbackFlags> =
                    self.groups.iter().map(|g| g.rollback_flags).collect();
                let first = rollback_start(&flags, i);
                for j in first..=i {
                    self.rollback_group(runner, j, j == i && sabotaged())?;
                }
                return Err(err);
            }
            i += 1;
        }
        Ok(())
    }

    fn apply_group<R: Runner + ?Sized>(
        &mut self,
        runner: &R,
        idx: usize,
    ) -> Result<(), FirewallError> {
        self.current_group = idx;
        if let Some(g) = self.groups.get_mut(idx) {
            g.adding_rollback = false;
        }
        let mut k = 0;
        // The list may grow while we run (query callbacks append to it).
        while self.apply_cmd(runner, idx, k, false)? {
            k += 1;
        }
        Ok(())
    }

    /// Runs every rollback command of group `idx`, ignoring failures; only a
    /// crash is returned. `drop_last`: the test-only mutation (see
    /// [`sabotage`]) skips the last one.
    fn rollback_group<R: Runner + ?Sized>(
        &mut self,
        runner: &R,
        idx: usize,
        drop_last: bool,
    ) -> Result<(), FirewallError> {
        self.current_group = idx;
        if let Some(g) = self.groups.get_mut(idx) {
            g.adding_rollback = true;
        }
        let mut k = 0;
        loop {
            if drop_last
                && self
                    .groups
                    .get(idx)
                    .is_some_and(|g| k + 1 == g.rollbacks.len())
            {
                return Ok(());
            }
            match self.apply_cmd(runner, idx, k, true) {
                Err(e) if e.is_crash() => return Err(e),
                Ok(false) => return Ok(()),
                _ => {}
            }
            k += 1;
        }
    }

    fn current_flags(&self) -> TransactionFlags {
        self.groups
            .get(self.current_group)
            .map(|g| g.flags)
            .unwrap_or_default()
    }

    /// libvirt `virFirewallApplyCmd` of command `k` of group `idx` (of its
    /// rollback list if `rollback`); `Ok(false)` when there is no such
    /// command. The argv it runs with is built now ([`full_argv`]); only its
    /// rollback and callback need the firewall mutably, after it ran.
    fn apply_cmd<R: Runner + ?Sized>(
        &mut self,
        runner: &R,
        idx: usize,
        k: usize,
        rollback: bool,
    ) -> Result<bool, FirewallError> {
        let auto_rollback = self
            .current_flags()
            .contains(TransactionFlags::AUTO_ROLLBACK);
        let backend = self.backend;
        let Some(cmd) = self.groups.get(idx).and_then(|g| {
            if rollback {
                g.rollbacks.get(k)
            } else {
                g.actions.get(k)
            }
        }) else {
            return Ok(false);
        };
        if cmd.args().is_empty() {
            return Err(FirewallError::EmptyCommand);
        }
        let executed = match backend {
            Backend::None => return Err(FirewallError::BackendNotImplemented),
            Backend::Iptables => exec_iptables(runner, backend, cmd, auto_rollback)?,
            Backend::Nftables => exec_nftables(runner, backend, cmd, auto_rollback)?,
        };
        let layer = cmd.layer;
        let callback = cmd.callback.clone();
        if let Some(inverse) = executed.rollback {
            self.add_built_cmd(layer, true, Arc::new(inverse));
        }
        if let Some(err) = executed.error {
            return Err(err);
        }
        if let Some(callback) = callback {
            let lines = split_lines(&executed.stdout);
            let mut ctx = CallbackCtx::new(self);
            callback(&mut ctx, layer, &lines)?;
            if let Some(err) = self.error {
                return Err(FirewallError::Build(err));
            }
        }
        Ok(true)
    }
}

fn exec_iptables<R: Runner + ?Sized>(
    runner: &R,
    backend: Backend,
    cmd: &FirewallCmd,
    auto_rollback: bool,
) -> Result<Executed, FirewallError> {
    let argv = full_argv(backend, cmd, false);
    let out = runner.run(&Cmd::new(argv))?;
    if !out.success() {
        if cmd.ignore_errors {
            return Ok(Executed::plain(out.stdout));
        }
        return Err(FirewallError::CommandFailed {
            command: render_argv(&full_argv(backend, cmd, false), RenderOptions::ONE_LINE),
            stderr: out.stderr,
        });
    }
    let rollback = if auto_rollback {
        inverse::iptables_delete(cmd.args())
    } else {
        None
    };
    Ok(Executed {
        stdout: out.stdout,
        rollback,
        error: None,
    })
}

fn exec_nftables<R: Runner + ?Sized>(
    runner: &R,
    backend: Backend,
    cmd: &FirewallCmd,
    auto_rollback: bool,
) -> Result<Executed, FirewallError> {
    let creation = if cmd.layer == Layer::Tc || !auto_rollback {
        None
    } else {
        nft_creation(cmd.args())
    };
    // `-ae` (echo the handle) for a creation whose inverse is derived.
    let argv = full_argv(backend, cmd, creation.is_some());
    if cmd.layer != Layer::Tc {
        check_nft_argv(&argv)?;
    }
    // For messages only (failures are the rare path).
    let shown = || {
        render_argv(
            &full_argv(backend, cmd, creation.is_some()),
            RenderOptions::ONE_LINE,
        )
    };
    let out = runner.run(&Cmd::new(argv))?;
    if !out.success() {
        if cmd.args().first().is_some_and(|a| a == "list") || cmd.ignore_errors {
            // A missing table makes `nft list` fail: that is an empty
            // listing, not an error. No rollback either way.
            return Ok(Executed::plain(out.stdout));
        }
        return Err(FirewallError::NftCommandFailed {
            command: shown(),
            stderr: out.stderr,
        });
    }
    let Some(k) = creation else {
        return Ok(Executed::plain(out.stdout));
    };
    let Some(handle) = parse_nft_handle(&out.stdout) else {
        // libvirt appends the (still empty) rollback command before it
        // looks for the handle; it fails later with "Can't apply empty
        // firewall command" (ignored like every rollback).
        return Ok(Executed {
            rollback: Some(Vec::new()),
            error: Some(FirewallError::NoHandle {
                command: shown(),
                stdout: out.stdout.clone(),
            }),
            stdout: out.stdout,
        });
    };
    let inverse = inverse::nft_delete(cmd.args(), k, handle);
    Ok(Executed {
        stdout: out.stdout,
        rollback: Some(inverse),
        error: None,
    })
}

/// The argv a stored command is executed with under `backend` (`nft_ae`:
/// whether `-ae` is injected): the binary of its layer, `-w`/`--concurrent`
/// for iptables-family layers or `-ae` for nft creations, then its
/// arguments. Apply runs every command with it; dry-run displays use it.
pub fn full_argv(backend: Backend, cmd: &FirewallCmd, nft_ae: bool) -> Vec<String> {
    let (binary, option) = exec_prefix(backend, cmd.layer, nft_ae);
    let args = cmd.args();
    let mut argv = Vec::with_capacity(args.len() + 2);
    argv.push(binary.to_string());
    argv.extend(option.map(str::to_string));
    argv.extend(args.iter().cloned());
    argv
}

/// The guard at the one door to nft: every nftables-backend `nft` command
/// passes here before it runs. nft joins its arguments with spaces and
/// parses the result as a script, so an argument holding `;`, a newline or
/// `#` would add a statement or hide the rest of the command. Whatever the
/// rule generators and the parser let through, such a command is refused.
pub fn check_nft_argv(argv: &[String]) -> Result<(), FirewallError> {
    for a in argv {
        if let Err(reason) = check_nft_argument(a) {
            return Err(FirewallError::UnsafeNftArgument {
                command: render_argv(argv, RenderOptions::ONE_LINE),
                argument: a.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// Is `arg` one nft word, or one balanced `{ ... }` block (a chain
/// specification such as `{ type filter hook forward priority 0; policy
/// accept; }`)? `Err` says why not.
///
/// Refused anywhere: control characters (newline, CR, tab, ...), `#` (a
/// comment to the end of the script), quotes (`"` and `'`), `\` and `$`.
/// Outside a block: whitespace and `;` (they split words and statements)
/// and any brace. A block must open at the first character and close at the
/// last, with balanced braces in between.
pub fn check_nft_argument(arg: &str) -> Result<(), &'static str> {
    if let Some(c) = arg
        .chars()
        .find(|c| c.is_control() || matches!(c, '#' | '"' | '\'' | '\\' | '$'))
    {
        return Err(match c {
            '#' => "contains '#', which starts an nft comment",
            '"' | '\'' => "contains a quote",
            '\\' | '$' => "contains '\\' or '$'",
            _ => "contains a control character (newline, CR, tab, ...)",
        });
    }
    if let Some(inner) = arg.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        let mut depth = 0usize;
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or("closes its '{' block before its end")?;
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err("has unbalanced braces");
        }
        return Ok(());
    }
    if arg.contains(['{', '}']) {
        return Err("has a brace outside of a whole '{ ... }' block");
    }
    if arg.contains(';') {
        return Err("contains ';', which ends an nft statement");
    }
    if arg.chars().any(char::is_whitespace) {
        return Err("contains whitespace, which splits it into several nft words");
    }
    Ok(())
}
