//! Firewall engine: commands, layers, groups, transactions, apply, rollback,
//! removal plan and its XML (libvirt 11.3.0 `virFirewall` semantics).
//!
//! A [`Firewall`] is a plan: an ordered list of groups ("transactions"),
//! each with action commands and rollback commands. It is built by the
//! rule generators (pure code), then [`Firewall::apply`] runs it through a
//! [`Runner`](virtnet_runner::Runner) — the only place where this module
//! touches the host. While applying, auto-rollback groups record the inverse
//! of every successful creation; [`Firewall::new_from_rollback`] turns those
//! into a removal plan, which [`Firewall::format_xml`] / [`Firewall::parse_xml`]
//! persist as `<firewall name='fwRemoval' backend='...'>` in the status file.
//!
//! Submodules:
//! * [`apply`] — executing commands (each argv built when it runs,
//!   [`full_argv`]), callbacks, auto-rollback, rollback order;
//! * [`inverse`] — the inverse of a creating command (auto-rollback and the
//!   driver's journal share it);
//! * [`xml`] — the `<firewall>` element, byte-exact format and typed parse errors;
//! * [`render`] — libvirt's dry-run / golden-file rendering and its parser
//!   (re-exported from `virtnet-runner`, where the simulated host shares it);
//! * [`recording`] — [`RecordingRunner`], a runner for tests that behaves like
//!   libvirt's test executor.
//!
//! Invariants:
//!
//! * A command keeps its arguments only: never the binary, `-w`,
//!   `--concurrent` or `-ae`, which [`full_argv`] adds when it runs. So a
//!   saved removal plan never holds them, and the same plan runs with
//!   whatever binary the layer has on the backend it was saved with.
//! * [`Firewall::apply`] is the only function here that runs anything, and
//!   only through the `Runner`; a process-wide lock serialises applies.
//! * [`RunError::Crashed`](virtnet_runner::RunError::Crashed) stops apply at
//!   once, without any rollback ([`FirewallError::Crashed`]): what a crash
//!   leaves behind is the restart path's job (the driver's journal).
//! * Rollbacks run in the order they were recorded (not reversed); the
//!   removal plan is the exact reverse (groups last to first, commands last
//!   to first).
//! * `format_xml(parse_xml(x)) == x` for every `<firewall>` element libvirt
//!   11.3.0 wrote in the captures, and replaying every capture's net-start
//!   outputs through the engine gives the exact saved `fwRemoval`, whose
//!   application is libvirt's net-destroy stream
//!   (`core/tests/firewall_captures.rs`).
//!
//! Deviations from libvirt 11.3.0: `tc` is run as the bare name `tc` (libvirt
//! uses the path found at build time); a command that cannot be spawned fails
//! with the runner's message, not libvirt's "Cannot find '...' in path";
//! error texts are libvirt's without the "internal error: " prefix; an nft
//! creation whose table/chain argument is missing (impossible with the real
//! generators) gets a rollback with the missing words skipped, where libvirt
//! would read past its argument array; [`Firewall::new_from_rollback`]
//! returns a `Result` rather than filling an out-parameter.
//!
//! Test-only mutation hook: with the cargo feature `sabotage` (off by
//! default; only `virtnet-conformance`'s dev-dependency enables it),
//! `apply::sabotage::drop_last_undo(true)` makes the rollback of a failed
//! transaction — and the driver's undo of a failed start — skip its last
//! step, so that `conformance/tests/mutant.rs` and `cargo xtask props
//! --mutant drop-last-undo` can show the rollback properties fail.

pub mod apply;
pub mod inverse;
pub mod recording;
pub use virtnet_runner::render;
pub mod xml;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use apply::{check_nft_argument, check_nft_argv, full_argv, rollback_start, FirewallError};
pub use inverse::{nft_handle_echo, parse_nft_handle};
pub use recording::{HandleMode, Matcher, RecordingRunner, Reply, ReplyHook};
pub use render::{
    escape_shell, parse_stream, render_argv, render_stream, GoldenParseError, RenderOptions,
};
pub use xml::{escape_xml_text, FirewallXmlError, FirewallXmlErrorKind};

/// Which family of tools executes a firewall's commands (libvirt
/// `virFirewallBackend`). Chosen per [`Firewall`] object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Every command fails with "Firewall backend is not implemented".
    None,
    Iptables,
    Nftables,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::None, Backend::Iptables, Backend::Nftables];

    /// The string used in XML and in `network.conf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::None => "none",
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }

    /// The other real backend: what a backend switch moves to (iptables <->
    /// nftables; `None`, which runs nothing, switches to iptables).
    pub fn other(self) -> Backend {
        match self {
            Backend::Iptables => Backend::Nftables,
            Backend::Nftables | Backend::None => Backend::Iptables,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of `none`, `iptables`, `nftables`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown firewall backend '{0}' (expected none, iptables or nftables)")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| UnknownBackend(s.to_string()))
    }
}

/// Which part of the network stack a command changes (libvirt
/// `virFirewallLayer`); decides the binary that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Ethernet,
    Ipv4,
    Ipv6,
    Tc,
}

/// A string that is not one of `ethernet`, `ipv4`, `ipv6`, `tc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown firewall layer '{0}' (expected ethernet, ipv4, ipv6 or tc)")]
pub struct UnknownLayer(pub String);

impl Layer {
    pub const ALL: [Layer; 4] = [Layer::Ethernet, Layer::Ipv4, Layer::Ipv6, Layer::Tc];

    /// The string used in XML.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Tc => "tc",
        }
    }

    /// The program that runs this layer's commands under `backend`
    /// (bare names, looked up on `PATH`). With the `none` backend nothing
    /// runs; the iptables-family name is returned for display purposes.
    pub fn binary(self, backend: Backend) -> &'static str {
        match (backend, self) {
            (_, Layer::Tc) => "tc",
            (Backend::Nftables, _) => "nft",
            (_, Layer::Ethernet) => "ebtables",
            (_, Layer::Ipv4) => "iptables",
            (_, Layer::Ipv6) => "ip6tables",
        }
    }

    /// The locking argument the iptables backend injects as the first
    /// argument at exec time (never stored in the command).
    pub fn iptables_lock_arg(self) -> Option<&'static str> {
        match self {
            Layer::Ethernet => Some("--concurrent"),
            Layer::Ipv4 | Layer::Ipv6 => Some("-w"),
            Layer::Tc => None,
        }
    }

    /// The nft family word of this layer (`ip`, `ip6`; "" for the others),
    /// as the rule generators use it.
    pub fn nft_family(self) -> &'static str {
        match self {
            Layer::Ipv4 => "ip",
            Layer::Ipv6 => "ip6",
            Layer::Ethernet | Layer::Tc => "",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Layer {
    type Err = UnknownLayer;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layer::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLayer(s.to_string()))
    }
}

/// Flags of a transaction (group): a small bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransactionFlags(u32);

impl TransactionFlags {
    pub const NONE: TransactionFlags = TransactionFlags(0);
    /// Every action command of the group ignores a non-zero exit status.
    pub const IGNORE_ERRORS: TransactionFlags = TransactionFlags(1 << 0);
    /// Every successful creation command gets its inverse appended to the
    /// group's rollback list while the group is applied.
    pub const AUTO_ROLLBACK: TransactionFlags = TransactionFlags(1 << 1);

    pub fn bits(self) -> u32 {
        self.0
    }
    pub fn contains(self, other: TransactionFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TransactionFlags {
    type Output = TransactionFlags;
    fn bitor(self, rhs: Self) -> Self {
        TransactionFlags(self.0 | rhs.0)
    }
}

/// Flags of a group's rollback section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RollbackFlags(u32);

impl RollbackFlags {
    pub const NONE: RollbackFlags = RollbackFlags(0);
    /// When this group's rollback runs because of a failure, earlier groups'
    /// rollbacks are run too (see [`Firewall::apply`] for the exact rule).
    pub const INHERIT_PREVIOUS: RollbackFlags = RollbackFlags(1 << 0);

    pub fn bits(self) -> u32 {
        self.0
    }
    pub fn contains(self, other: RollbackFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for RollbackFlags {
    type Output = RollbackFlags;
    fn bitor(self, rhs: Self) -> Self {
        RollbackFlags(self.0 | rhs.0)
    }
}

/// A query callback: receives the stdout of its command split on `\n`
/// (libvirt `g_strsplit` semantics: empty output gives no lines, a trailing
/// newline gives a final empty line) and may add commands to the group
/// being applied through the [`CallbackCtx`]. Any state it keeps across
/// calls must be interior (it is shared and `Fn`).
pub type QueryCallback =
    Arc<dyn Fn(&mut CallbackCtx<'_>, Layer, &[&str]) -> Result<(), FirewallError> + Send + Sync>;

/// Wraps a closure as a [`QueryCallback`] (helps type inference).
pub fn query_callback<F>(f: F) -> QueryCallback
where
    F: Fn(&mut CallbackCtx<'_>, Layer, &[&str]) -> Result<(), FirewallError>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// Identifies a command within its [`Firewall`] (for [`Firewall::cmd`] and
/// [`Firewall::remove_cmd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CmdId(u64);

/// One firewall command: a layer and its arguments. The binary and the
/// `-w`/`--concurrent`/`-ae` options are not part of the arguments
/// ([`args`](Self::args)); apply puts them in front when it runs the
/// command ([`full_argv`]), under its firewall's backend.
///
/// The arguments are shared (`Arc`): a removal plan shares its commands'
/// arguments with the rollback lists it came from.
#[derive(Clone)]
pub struct FirewallCmd {
    id: CmdId,
    layer: Layer,
    args: Arc<Vec<String>>,
    ignore_errors: bool,
    callback: Option<QueryCallback>,
}

/// What is put in front of a command's arguments under `backend`: the
/// binary of `layer` and an option (the iptables locking option, or nft's
/// `-ae` when `nft_ae` and the layer is not tc). See [`full_argv`].
fn exec_prefix(
    backend: Backend,
    layer: Layer,
    nft_ae: bool,
) -> (&'static str, Option<&'static str>) {
    let option = match backend {
        Backend::Nftables => (nft_ae && layer != Layer::Tc).then_some("-ae"),
        Backend::Iptables | Backend::None => layer.iptables_lock_arg(),
    };
    (layer.binary(backend), option)
}

impl FirewallCmd {
    pub fn id(&self) -> CmdId {
        self.id
    }
    pub fn layer(&self) -> Layer {
        self.layer
    }
    /// The stored arguments (without the binary and exec-time options).
    pub fn args(&self) -> &[String] {
        &self.args
    }
    pub fn ignore_errors(&self) -> bool {
        self.ignore_errors
    }
    pub fn callback(&self) -> Option<&QueryCallback> {
        self.callback.as_ref()
    }
    pub fn has_callback(&self) -> bool {
        self.callback.is_some()
    }
}

impl fmt::Debug for FirewallCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirewallCmd")
            .field("layer", &self.layer)
            .field("args", &self.args())
            .field("ignore_errors", &self.ignore_errors)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

/// Equality compares layer, arguments, the ignore-errors flag and callback
/// identity (not the command id).
impl PartialEq for FirewallCmd {
    fn eq(&self, other: &Self) -> bool {
        self.layer == other.layer
            && self.args() == other.args()
            && self.ignore_errors == other.ignore_errors
            && match (&self.callback, &other.callback) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// A transaction: action commands run in order; on failure the rollback
/// commands run (errors ignored).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    flags: TransactionFlags,
    rollback_flags: RollbackFlags,
    actions: Vec<FirewallCmd>,
    rollbacks: Vec<FirewallCmd>,
    adding_rollback: bool,
}

impl Group {
    pub fn flags(&self) -> TransactionFlags {
        self.flags
    }
    pub fn rollback_flags(&self) -> RollbackFlags {
        self.rollback_flags
    }
    pub fn actions(&self) -> &[FirewallCmd] {
        &self.actions
    }
    pub fn rollbacks(&self) -> &[FirewallCmd] {
        &self.rollbacks
    }
}

/// A builder misuse remembered until apply (libvirt's sticky `err`): after
/// it every builder call is a no-op and apply fails without running anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("a command was added before any transaction was started")]
    CommandWithoutTransaction,
    #[error("a rollback section was started before any transaction")]
    RollbackWithoutTransaction,
}

/// A firewall plan for one backend (libvirt `virFirewall`).
///
/// Equality compares the plan (backend, name, sticky error, groups), not the
/// builder's cursor or id counter.
#[derive(Debug, Clone)]
pub struct Firewall {
    backend: Backend,
    name: Option<String>,
    error: Option<BuildError>,
    groups: Vec<Group>,
    current_group: usize,
    next_id: u64,
}

impl PartialEq for Firewall {
    fn eq(&self, other: &Self) -> bool {
        self.backend == other.backend
            && self.name == other.name
            && self.error == other.error
            && self.groups == other.groups
    }
}

/// Handle on a just-added command for appending more arguments (libvirt's
/// `virFirewallCmdAddArg*`). Inert when the firewall has a sticky error.
pub struct CmdBuilder<'a> {
    cmd: Option<&'a mut FirewallCmd>,
}

impl<'a> CmdBuilder<'a> {
    /// Appends one argument.
    pub fn arg(self, arg: impl Into<String>) -> Self {
        let mut this = self;
        if let Some(cmd) = this.cmd.as_deref_mut() {
            Arc::make_mut(&mut cmd.args).push(arg.into());
        }
        this
    }

    /// Appends several arguments.
    pub fn args<I, S>(self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut this = self;
        if let Some(cmd) = this.cmd.as_deref_mut() {
            Arc::make_mut(&mut cmd.args).extend(args.into_iter().map(Into::into));
        }
        this
    }

    /// Appends one formatted argument: `.arg_fmt(format_args!("{}/{}", a, p))`.
    pub fn arg_fmt(self, args: fmt::Arguments<'_>) -> Self {
        self.arg(fmt::format(args))
    }

    /// The command's id, `None` if the command was not created (sticky error).
    pub fn id(&self) -> Option<CmdId> {
        self.cmd.as_ref().map(|c| c.id)
    }

    /// Number of arguments so far (0 when the command was not created).
    pub fn arg_count(&self) -> usize {
        self.cmd.as_ref().map_or(0, |c| c.args().len())
    }
}

impl Firewall {
    /// An empty plan for `backend`.
    pub fn new(backend: Backend) -> Self {
        Firewall {
            backend,
            name: None,
            error: None,
            groups: Vec::new(),
            current_group: 0,
            next_id: 0,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = Some(name.into());
    }

    /// The sticky builder error, if any.
    pub fn error(&self) -> Option<BuildError> {
        self.error
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// True when the plan has no group at all.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Starts a new transaction (group) with `flags` and makes it current.
    pub fn start_transaction(&mut self, flags: TransactionFlags) {
        if self.error.is_some() {
            return;
        }
        self.groups.push(Group {
            flags,
            ..Group::default()
        });
        self.current_group = self.groups.len() - 1;
    }

    /// Starts the rollback section of the LAST group: later
    /// [`add_cmd`](Self::add_cmd) calls go to its rollback list until the
    /// next transaction starts.
    pub fn start_rollback(&mut self, flags: RollbackFlags) {
        if self.error.is_some() {
            return;
        }
        match self.groups.last_mut() {
            Some(group) => {
                group.rollback_flags = flags;
                group.adding_rollback = true;
            }
            None => self.error = Some(BuildError::RollbackWithoutTransaction),
        }
    }

    /// Adds a command to the current group (to its rollback list when in a
    /// rollback section). See [`add_cmd_full`](Self::add_cmd_full).
    pub fn add_cmd<I, S>(&mut self, layer: Layer, args: I) -> CmdBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.add_cmd_impl(layer, false, false, None, args)
    }

    /// Adds a command with its own ignore-errors flag and optional query
    /// callback. In a rollback section the command goes to the rollback list
    /// with ignore-errors forced and no callback; otherwise it goes to the
    /// action list, ignoring errors if `ignore_errors` or the group has
    /// [`TransactionFlags::IGNORE_ERRORS`].
    pub fn add_cmd_full<I, S>(
        &mut self,
        layer: Layer,
        ignore_errors: bool,
        callback: Option<QueryCallback>,
        args: I,
    ) -> CmdBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.add_cmd_impl(layer, ignore_errors, false, callback, args)
    }

    /// Appends a command to the current group's rollback list whatever the
    /// mode (ignore-errors forced, no callback).
    pub fn add_rollback_cmd<I, S>(&mut self, layer: Layer, args: I) -> CmdBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.add_cmd_impl(layer, true, true, None, args)
    }

    /// Re-opens a command of the current group for appending arguments.
    pub fn cmd(&mut self, id: CmdId) -> CmdBuilder<'_> {
        if self.error.is_some() {
            return CmdBuilder { cmd: None };
        }
        let cmd = self.groups.get_mut(self.current_group).and_then(|g| {
            g.actions
                .iter_mut()
                .chain(g.rollbacks.iter_mut())
                .find(|c| c.id == id)
        });
        CmdBuilder { cmd }
    }

    /// Removes a command from the current group's action list (its rollback
    /// list when in a rollback section). Unknown ids are ignored. Works even
    /// with a sticky error, as libvirt's does.
    pub fn remove_cmd(&mut self, id: CmdId) {
        let Some(group) = self.groups.get_mut(self.current_group) else {
            return;
        };
        let list = if group.adding_rollback {
            &mut group.rollbacks
        } else {
            &mut group.actions
        };
        if let Some(pos) = list.iter().position(|c| c.id == id) {
            list.remove(pos);
        }
    }

    fn add_cmd_impl<I, S>(
        &mut self,
        layer: Layer,
        ignore_errors: bool,
        is_rollback: bool,
        callback: Option<QueryCallback>,
        args: I,
    ) -> CmdBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if self.error.is_some() {
            return CmdBuilder { cmd: None };
        }
        let id = CmdId(self.next_id);
        let Some(group) = self.groups.get_mut(self.current_group) else {
            self.error = Some(BuildError::CommandWithoutTransaction);
            return CmdBuilder { cmd: None };
        };
        self.next_id += 1;
        let args = Arc::new(args.into_iter().map(Into::into).collect());
        let cmd = if is_rollback || group.adding_rollback {
            group.rollbacks.push(FirewallCmd {
                id,
                layer,
                args,
                ignore_errors: true,
                callback: None,
            });
            group.rollbacks.last_mut()
        } else {
            let ignore_errors =
                ignore_errors || group.flags.contains(TransactionFlags::IGNORE_ERRORS);
            group.actions.push(FirewallCmd {
                id,
                layer,
                args,
                ignore_errors,
                callback,
            });
            group.actions.last_mut()
        };
        CmdBuilder { cmd }
    }

    /// [`add_cmd`](Self::add_cmd) (or, `is_rollback`,
    /// [`add_rollback_cmd`](Self::add_rollback_cmd)) of a command without
    /// callback whose arguments are already built: `args` is kept, not
    /// copied.
    fn add_built_cmd(&mut self, layer: Layer, is_rollback: bool, args: Arc<Vec<String>>) {
        if self.error.is_some() {
            return;
        }
        let id = CmdId(self.next_id);
        let Some(group) = self.groups.get_mut(self.current_group) else {
            self.error = Some(BuildError::CommandWithoutTransaction);
            return;
        };
        self.next_id += 1;
        let (list, ignore_errors) = if is_rollback || group.adding_rollback {
            (&mut group.rollbacks, true)
        } else {
            let ignore = group.flags.contains(TransactionFlags::IGNORE_ERRORS);
            (&mut group.actions, ignore)
        };
        list.push(FirewallCmd {
            id,
            layer,
            args,
            ignore_errors,
            callback: None,
        });
    }

    /// The removal plan of what an apply did (libvirt
    /// `virFirewallNewFromRollback`): same backend, no name; groups from last
    /// to first, skipping those without rollback commands, each as an
    /// IGNORE_ERRORS transaction holding its rollback commands from last to
    /// first. `Ok(None)` when there is nothing to undo.
    pub fn new_from_rollback(&self) -> Result<Option<Firewall>, FirewallError> {
        if self.error.is_some() {
            return Err(FirewallError::OriginalHasError);
        }
        let mut fw = Firewall::new(self.backend);
        for group in self.groups.iter().rev() {
            if group.rollbacks.is_empty() {
                continue;
            }
            fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
            for cmd in group.rollbacks.iter().rev() {
                fw.add_built_cmd(cmd.layer, false, cmd.args.clone());
            }
        }
        Ok(if fw.groups.is_empty() { None } else { Some(fw) })
    }

    /// Every action command in plan order as `(layer, args)`; handy for
    /// showing a plan without applying it.
    pub fn action_cmds(&self) -> impl Iterator<Item = &FirewallCmd> {
        self.groups.iter().flat_map(|g| g.actions.iter())
    }
}

/// What a [`QueryCallback`] may do to the firewall being applied: add
/// commands to the group currently being applied (they run after the
/// commands already queued in it).
pub struct CallbackCtx<'a> {
    fw: &'a mut Firewall,
}

impl<'a> CallbackCtx<'a> {
    pub(crate) fn new(fw: &'a mut Firewall) -> Self {
        CallbackCtx { fw }
    }

    /// The backend of the firewall being applied.
    pub fn backend(&self) -> Backend {
        self.fw.backend
    }

    /// Same as [`Firewall::add_cmd`] on the group being applied.
    pub fn add_cmd<I, S>(&mut self, layer: Layer, args: I) -> CmdBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fw.add_cmd(layer, args)
    }

    /// Same as [`Firewall::add_cmd_full`] on the group being applied.
    pub fn add_cmd_full<I, S>(
        &mut self,
        layer: Layer,
        ignore_errors: bool,
        callback: Option<QueryCallback>,
        args: I,
    ) -> CmdBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fw.add_cmd_full(layer, ignore_errors, callback, args)
    }

    /// Same as [`Firewall::add_rollback_cmd`] on the group being applied.
    pub fn add_rollback_cmd<I, S>(&mut self, layer: Layer, args: I) -> CmdBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fw.add_rollback_cmd(layer, args)
    }
}
