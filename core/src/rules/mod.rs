//! Pure rule generators: a [`NetworkDef`] in, a [`Firewall`] plan out
//! (libvirt 11.3.0 `network_iptables.c`, `network_nftables.c` and the
//! firewall half of `bridge_driver_linux.c`).
//!
//! Nothing here runs a command except the two orchestration helpers
//! [`add_network_firewall`] / [`remove_network_firewall`] (and
//! [`ChainInitState::setup`], [`tc_qdisc_setup`]), which go through a
//! [`Runner`] exactly where libvirt runs something.
//!
//! * [`network_rules`] — the per-network plan for a backend (groups, flags and
//!   command order exactly as libvirt builds them). Takes `&mut NetworkDef`
//!   because libvirt writes the default NAT port range 1024-65535 into the
//!   live definition the first time a protocol-specific masquerade rule is
//!   built (and that value then appears in the status file);
//! * [`private_chains`] — the private-chain setup of one layer, with the
//!   query callbacks that parse `iptables --list-rules` / `nft list table`;
//! * [`legacy_iptables_removal`] — the removal libvirt regenerates from the
//!   definition when a status file has no saved plan (and libvirt 9.0.0's
//!   destroy);
//! * [`libvirt9_network_rules`] — libvirt 9.0.0's add transaction (iptables,
//!   manual rollback section);
//! * [`add_network_firewall`] — `networkAddFirewallRules`: zone check,
//!   private chains once per [`ChainInitState`], the saved-error checks, the
//!   nftables tc qdisc probe, build, apply, removal plan;
//! * [`remove_network_firewall`] — `networkRemoveFirewallRules` (saved plan,
//!   else legacy iptables regeneration);
//! * [`reload_network_firewall`], [`pre_reload_private_chains`] — the
//!   firewall part of a daemon start, SIGHUP or firewalld reload;
//! * [`golden`] — the files of a project golden case (`cargo xtask golden`).
//!
//! firewalld is never contacted: virtnet behaves like libvirt on a host
//! where firewalld is not running (no zone is set; `<bridge zone>` fails).
//!
//! Invariants: the nftables tc qdisc probe/add ([`tc_qdisc_setup`]) runs
//! exactly where libvirt runs it, before the rules are built, so a
//! generation error comes after it; [`legacy_iptables_removal`] works on a
//! copy of the definition; the removal plan [`add_network_firewall`] returns
//! is unnamed — whoever stores it names it `fwRemoval` (libvirt does this
//! in the network object).
//!
//! Deviations from libvirt 11.3.0: `tc` is the bare name (libvirt: its
//! build-time path, e.g. `/usr/sbin/tc`), also in the "Child process (...)
//! unexpected exit status N: ..." message; a process killed by a signal is
//! reported as exit status 128+N rather than "fatal signal N";
//! [`network_rules`] on a definition without a bridge name fails with
//! [`RulesError::NoBridge`] (libvirt always has one after define); error
//! texts lack libvirt's "internal error: " prefix.
//!
//! Tests: `core/tests/rules_golden.rs` (every libvirt 11.3.0
//! `networkxml2firewalldata` stream and both base streams, every 9.0.0
//! `.args`), `rules_captures.rs` (every real-daemon capture: start with the
//! real `--list-rules` / `nft list table` output, destroy, restarts with a
//! backend switch, the failed tc start, 9.0.0), `rules_options.rs`
//! (streams written by hand for options no libvirt test covers, errors,
//! callbacks, saved setup errors), `rules_unreleased.rs` (the project's
//! golden cases), `cli/tests/rules_cli.rs`.

pub mod batched;
pub mod golden;
pub mod ipt_save;
pub mod iptables;
pub mod nftables;

/// Test-only mutation (cargo feature `sabotage`, never on in a shipped
/// build): when switched on with [`sabotage::drop_masquerade`], neither
/// backend emits its masquerade/SNAT rules, so a nat network's guests
/// leave untranslated. It exists to prove that the matrix's `traffic`
/// operation sees a wrong rule set (conformance/tests/mutant_traffic.rs).
#[cfg(feature = "sabotage")]
#[doc(hidden)]
pub mod sabotage {
    use std::sync::atomic::{AtomicBool, Ordering};

    static DROP_MASQUERADE: AtomicBool = AtomicBool::new(false);

    /// Switches the mutation on or off for the whole process.
    pub fn drop_masquerade(on: bool) {
        DROP_MASQUERADE.store(on, Ordering::SeqCst);
    }

    pub(super) fn dropping_masquerade() -> bool {
        DROP_MASQUERADE.load(Ordering::SeqCst)
    }
}

/// Are the masquerade rules to be left out? (Always false without the
/// `sabotage` feature.)
fn masquerade_sabotaged() -> bool {
    #[cfg(feature = "sabotage")]
    {
        sabotage::dropping_masquerade()
    }
    #[cfg(not(feature = "sabotage"))]
    {
        false
    }
}

#[cfg(test)]
mod tests;

use crate::firewall::{Backend, Firewall, FirewallError, Layer};
use crate::netxml::{mask_by_prefix, ForwardMode, IpDef, NatDef, NetworkDef};
use virtnet_runner::{CheckedError, Cmd, RunError, Runner};

/// Why rules could not be generated or added. The messages are libvirt's
/// (without the "internal error: " prefix of libvirt's error layer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A protocol-specific NAT rule needs `start < end <= 65535`.
    #[error("Invalid port range '{start}-{end}'.")]
    InvalidPortRange { start: u32, end: u32 },
    /// An `<ip>` whose prefix cannot be computed (non-contiguous netmask,
    /// class D/E address without prefix).
    #[error("Invalid prefix or netmask for '{bridge}'")]
    InvalidPrefix { bridge: String },
    /// The definition has no bridge name (libvirt assigns one at define time).
    #[error("network '{network}' has no bridge name; firewall rules need the bridge device (<bridge name='...'/>)")]
    NoBridge { network: String },
    /// Backend `none`.
    #[error("No firewall backend is available")]
    NoBackend,
    /// `<bridge zone='...'>` needs firewalld, which virtnet never talks to
    /// (libvirt's behaviour on a host without firewalld).
    #[error("zone {zone} requested for network {network} but firewalld is not active")]
    ZoneWithoutFirewalld { zone: String, network: String },
    /// A command run directly (the nftables backend's tc qdisc probe/add)
    /// exited non-zero.
    #[error("Child process ({command}) unexpected exit status {status}{}{}", if stderr.is_empty() { "" } else { ": " }, stderr)]
    ChildFailed {
        command: String,
        status: i32,
        stderr: String,
    },
    /// A command run directly could not be run at all.
    #[error("{0}")]
    Run(RunError),
    /// Applying the plan failed (the engine already ran the rollback).
    #[error("{0}")]
    Firewall(FirewallError),
}

impl From<FirewallError> for RulesError {
    fn from(e: FirewallError) -> Self {
        RulesError::Firewall(e)
    }
}

impl RulesError {
    /// True when a runner reported a simulated crash somewhere below.
    pub fn is_crash(&self) -> bool {
        match self {
            RulesError::Firewall(e) => e.is_crash(),
            RulesError::Run(RunError::Crashed { .. }) => true,
            _ => false,
        }
    }
}

// The addresses of the rules are written as glibc's `inet_ntop` writes
// them, like every address of the network XML: one implementation, in
// `netxml::model`.
pub use crate::netxml::model::{ip_to_string as format_addr, push_ip as push_addr, push_ipv4};

/// Room for the longest address [`format_addr`] writes plus `/PREFIX`.
const ADDR_CAPACITY: usize = 48;

/// Appends a number in decimal (as its `Display` writes it).
pub fn push_num<N: itoa::Integer>(out: &mut String, n: N) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `NET/PREFIX` of an `<ip>` as the rules write it, `None` when the prefix is
/// invalid.
pub fn network_str(ip: &IpDef) -> Option<String> {
    let prefix = ip.prefix()?;
    let net = mask_by_prefix(ip.address, prefix)?;
    let mut s = String::with_capacity(ADDR_CAPACITY);
    push_addr(&mut s, &net);
    s.push('/');
    push_num(&mut s, prefix);
    Some(s)
}

/// The arguments of one command being assembled, on the stack (the longest
/// rule has 21 words); handed to the firewall builder as `&str`s, so each
/// word is copied once, into the plan.
pub(crate) type Args<'a> = smallvec::SmallVec<[&'a str; 24]>;

/// What the per-address part of the rules does with one `<ip>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRuleKind {
    /// Allow out + related in + masquerade/SNAT + exemptions.
    Masquerade,
    /// Allow out + allow in.
    Routing,
    /// Nothing (isolated and other modes).
    Nothing,
}

/// libvirt's decision for one `<ip>`: nat mode masquerades IPv4 (and IPv6
/// with `<nat ipv6='yes'>`) and routes other IPv6; route mode routes all.
pub fn ip_rule_kind(def: &NetworkDef, ip: &IpDef) -> IpRuleKind {
    match def.forward.as_ref() {
        Some(f) if f.mode == ForwardMode::Nat => {
            if ip.is_ipv4() || f.nat.ipv6 == Some(true) {
                IpRuleKind::Masquerade
            } else {
                IpRuleKind::Routing
            }
        }
        Some(f) if f.mode == ForwardMode::Route => IpRuleKind::Routing,
        _ => IpRuleKind::Nothing,
    }
}

/// The NAT target of one address's masquerade rules, formatted once per
/// address: SNAT to `A-B` (an IPv4 address with a `<nat><address>`
/// range) or masquerade, with and without the port range.
pub(crate) struct NatTarget {
    pub snat: bool,
    /// `A-B` (SNAT) or "" (masquerade).
    pub plain: String,
    /// `A-B:S-E` (SNAT), or `S-E` / `:S-E` (masquerade, iptables / nft);
    /// set once a protocol-specific rule has asked for the port range.
    pub ports: String,
}

impl NatTarget {
    pub fn new(ip: &IpDef, nat: &NatDef) -> NatTarget {
        // SNAT only when the address range is of the address's family (IPv4).
        match nat.address.filter(|_| ip.is_ipv4()) {
            Some(range) => {
                let mut plain = String::with_capacity(32);
                push_ipv4(&mut plain, &range.start);
                plain.push('-');
                push_ipv4(&mut plain, &range.end);
                NatTarget {
                    snat: true,
                    plain,
                    ports: String::new(),
                }
            }
            None => NatTarget {
                snat: false,
                plain: String::new(),
                ports: String::new(),
            },
        }
    }

    /// Sets the port range (libvirt reads, and may default, it when it
    /// builds the first protocol-specific rule; see [`nat_port_range`]).
    /// `colon_alone`: a masquerade range starts with `:` (nft's `to :S-E`).
    pub fn set_ports(&mut self, (s, e): (u16, u16), colon_alone: bool) {
        let mut p = String::with_capacity(self.plain.len() + 12);
        p.push_str(&self.plain);
        if self.snat || colon_alone {
            p.push(':');
        }
        push_num(&mut p, s);
        p.push('-');
        push_num(&mut p, e);
        self.ports = p;
    }
}

/// The `S-E` port range of protocol-specific NAT rules. Unset (0/0) becomes
/// 1024-65535 and is written back into `nat` (libvirt changes the live
/// definition). Fails unless `start < end`.
pub fn nat_port_range(nat: &mut NatDef) -> Result<(u16, u16), RulesError> {
    if nat.port_start == 0 && nat.port_end == 0 {
        nat.port_start = 1024;
        nat.port_end = 65535;
    }
    if nat.port_start < nat.port_end {
        Ok((nat.port_start, nat.port_end))
    } else {
        Err(RulesError::InvalidPortRange {
            start: u32::from(nat.port_start),
            end: u32::from(nat.port_end),
        })
    }
}

/// The bridge name the rules use.
pub fn bridge_of(def: &NetworkDef) -> Result<String, RulesError> {
    match def.bridge_name() {
        Some(b) if !b.is_empty() => Ok(b.to_string()),
        _ => Err(RulesError::NoBridge {
            network: def.name.clone(),
        }),
    }
}

/// Local multicast / broadcast destinations exempted from NAT.
pub const LOCAL_MULTICAST_V4: &str = "224.0.0.0/24";
pub const LOCAL_MULTICAST_V6: &str = "ff02::/16";
pub const LOCAL_BROADCAST_V4: &str = "255.255.255.255/32";

/// The forward modes whose bridge libvirt firewalls (isolated, nat, route).
/// `open` gets zone handling only; the host-bridge modes never reach the
/// firewall code.
pub fn has_firewall_rules(def: &NetworkDef) -> bool {
    matches!(
        def.forward_mode(),
        None | Some(ForwardMode::Nat) | Some(ForwardMode::Route)
    )
}

/// The per-network firewall plan libvirt 11.3.0 builds for `backend`
/// (`iptablesAddFirewallRules` / `nftablesAddFirewallRules` before apply).
///
/// May write the default NAT port range into `def` (see the module docs).
/// For forward modes without rules (open, bridge, ...) the plan is empty.
/// The nftables plan does not include the tc qdisc probe libvirt runs
/// directly while building it; see [`tc_qdisc_setup`].
pub fn network_rules(def: &mut NetworkDef, backend: Backend) -> Result<Firewall, RulesError> {
    if !has_firewall_rules(def) {
        return Ok(Firewall::new(backend));
    }
    match backend {
        Backend::None => Err(RulesError::NoBackend),
        Backend::Iptables => iptables::network_rules(def),
        Backend::Nftables => nftables::network_rules(def),
    }
}

/// libvirt 9.0.0's add transaction (iptables only): group 0 (flags 0) with
/// the general and per-address rules and, as its rollback section, the
/// legacy removal of them; group 1 (IGNORE_ERRORS) with the checksum rule.
/// Empty for modes without rules.
pub fn libvirt9_network_rules(def: &mut NetworkDef) -> Result<Firewall, RulesError> {
    if !has_firewall_rules(def) {
        return Ok(Firewall::new(Backend::Iptables));
    }
    iptables::libvirt9_network_rules(def)
}

/// The removal libvirt regenerates from the definition when there is no
/// saved plan (`iptablesRemoveFirewallRules`): always the iptables backend,
/// two IGNORE_ERRORS groups. `Err` where libvirt gives up and runs nothing
/// (an invalid NAT port range). Addresses with an invalid prefix are skipped.
/// `def` is not changed (libvirt's port default is applied to a copy).
pub fn legacy_iptables_removal(def: &NetworkDef) -> Result<Firewall, RulesError> {
    iptables::legacy_removal(def)
}

/// The private-chain setup plan of one layer (one transaction, flags 0, the
/// query commands whose callbacks queue the missing chains and jumps).
pub struct PrivateChains {
    pub firewall: Firewall,
    changed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PrivateChains {
    /// After apply: whether any chain (or table) had to be created.
    pub fn changed(&self) -> bool {
        self.changed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The private-chain setup of `layer` (Ipv4 or Ipv6) for `backend`.
pub fn private_chains(backend: Backend, layer: Layer) -> Result<PrivateChains, RulesError> {
    match backend {
        Backend::None => Err(RulesError::NoBackend),
        Backend::Iptables => Ok(iptables::private_chains(layer)),
        Backend::Nftables => Ok(nftables::private_chains(layer)),
    }
}

/// Process-wide private-chain state (libvirt's `chainInitDone`,
/// `errInitV4`, `errInitV6`). Shared by both backends: after a setup with
/// one backend, starting a network with the other does not set up again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainInitState {
    done: bool,
    err_v4: Option<RulesError>,
    err_v6: Option<RulesError>,
}

impl ChainInitState {
    /// A fresh process: the next firewalled network start sets up chains.
    pub fn new() -> Self {
        Self::default()
    }

    /// A process that already set up its chains successfully (what the
    /// `virtnet rules` output assumes).
    pub fn already_done() -> Self {
        ChainInitState {
            done: true,
            ..Self::default()
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }

    /// The saved IPv4 / IPv6 setup errors.
    pub fn errors(&self) -> (Option<&RulesError>, Option<&RulesError>) {
        (self.err_v4.as_ref(), self.err_v6.as_ref())
    }

    /// `networkSetupPrivateChains(backend, force)`: does nothing when setup
    /// was done and `force` is false; otherwise runs the IPv4 then the IPv6
    /// setup, saving (not returning) their errors, and marks setup done. Only
    /// a simulated crash is returned.
    pub fn setup<R: Runner + ?Sized>(
        &mut self,
        backend: Backend,
        runner: &R,
        force: bool,
    ) -> Result<(), RulesError> {
        if self.done && !force {
            return Ok(());
        }
        self.err_v4 = None;
        self.err_v6 = None;
        for layer in [Layer::Ipv4, Layer::Ipv6] {
            let res = private_chains(backend, layer)
                .and_then(|mut pc| pc.firewall.apply(runner).map_err(RulesError::from));
            if let Err(e) = res {
                if e.is_crash() {
                    return Err(e);
                }
                match layer {
                    Layer::Ipv4 => self.err_v4 = Some(e),
                    _ => self.err_v6 = Some(e),
                }
            }
        }
        self.done = true;
        Ok(())
    }
}

/// `tc qdisc show dev BR handle 1:` and, unless its output mentions `qdisc`
/// and ` 1: `, `tc qdisc add dev BR root handle 1: htb default 2`, run
/// directly (libvirt's `virNetDevBandWidthAddTxFilterParentQdisc(BR, true)`).
/// Both must exit 0.
pub fn tc_qdisc_setup<R: Runner + ?Sized>(bridge: &str, runner: &R) -> Result<(), RulesError> {
    let show = Cmd::new(["tc", "qdisc", "show", "dev", bridge, "handle", "1:"]);
    let out = run_checked(runner, &show)?;
    if out.contains("qdisc") && out.contains(" 1: ") {
        return Ok(());
    }
    let add = Cmd::new([
        "tc", "qdisc", "add", "dev", bridge, "root", "handle", "1:", "htb", "default", "2",
    ]);
    run_checked(runner, &add).map(|_| ())
}

/// [`Runner::run_checked`]: its stdout, or libvirt's "Child process"
/// error (stderr quoted as printed, like `virCommandRun`).
fn run_checked<R: Runner + ?Sized>(runner: &R, cmd: &Cmd) -> Result<String, RulesError> {
    match runner.run_checked(cmd) {
        Ok(out) => Ok(out.stdout),
        Err(CheckedError::Run(e)) => Err(RulesError::Run(e)),
        Err(CheckedError::Failed {
            argv,
            status,
            stderr,
        }) => Err(RulesError::ChildFailed {
            command: crate::firewall::render_argv(&argv, crate::firewall::RenderOptions::ONE_LINE),
            status,
            stderr,
        }),
    }
}

/// `networkAddFirewallRules(def, backend, &fwRemoval)` of libvirt 11.3.0,
/// with firewalld absent: a `<bridge zone>` is an error; open (and the
/// host-bridge modes, which libvirt never passes here) add nothing; else
/// private chains are set up once per `chains`, a saved IPv4/IPv6 setup
/// error fails networks that use that family, the nftables backend runs its
/// tc qdisc probe, then the plan is built (see [`network_rules`]; `def` may
/// get the default NAT ports), applied, and its removal plan returned
/// (`None` when nothing can be undone).
pub fn add_network_firewall<R: Runner + ?Sized>(
    def: &mut NetworkDef,
    backend: Backend,
    runner: &R,
    chains: &mut ChainInitState,
) -> Result<Option<Firewall>, RulesError> {
    let mode = def.forward_mode();
    if mode.is_some_and(|m| !m.is_virtual()) {
        // bridge, private, vepa, passthrough, hostdev: libvirt's driver
        // never calls the firewall code for them.
        return Ok(None);
    }
    if let Some(zone) = def.bridge.zone.as_ref() {
        return Err(RulesError::ZoneWithoutFirewalld {
            zone: zone.clone(),
            network: def.name.clone(),
        });
    }
    if !has_firewall_rules(def) {
        return Ok(None);
    }
    chains.setup(backend, runner, false)?;
    if let Some(e) = &chains.err_v4 {
        let uses_v4 =
            def.ipv4_ips().next().is_some() || def.routes.iter().any(|r| r.address.is_ipv4());
        if uses_v4 {
            return Err(e.clone());
        }
    }
    if let Some(e) = &chains.err_v6 {
        let uses_v6 = def.ipv6_ips().next().is_some()
            || def.routes.iter().any(|r| r.address.is_ipv6())
            || def.ipv6;
        if uses_v6 {
            return Err(e.clone());
        }
    }
    let mut fw = match backend {
        Backend::None => return Err(RulesError::NoBackend),
        Backend::Iptables => iptables::network_rules(def)?,
        Backend::Nftables => {
            // libvirt runs the probe while building, before any rule is
            // generated (so before a generation error is detected).
            let bridge = bridge_of(def)?;
            tc_qdisc_setup(&bridge, runner)?;
            nftables::network_rules(def)?
        }
    };
    fw.apply(runner)?;
    Ok(fw.new_from_rollback()?)
}

/// The per-network step of a daemon start / reload / firewalld reload
/// (libvirt 11.3.0 `networkReloadFirewallRulesHelper` for an active
/// network): remove with the saved plan (or the legacy regeneration), then
/// add with the configured `backend`, ignoring an add failure. Returns the
/// new removal plan to store (`None` after a failure or when nothing can
/// be undone). Only a simulated crash is an error.
pub fn reload_network_firewall<R: Runner + ?Sized>(
    def: &mut NetworkDef,
    saved: Option<&Firewall>,
    backend: Backend,
    runner: &R,
    chains: &mut ChainInitState,
) -> Result<Option<Firewall>, RulesError> {
    remove_network_firewall(def, saved, runner)?;
    match add_network_firewall(def, backend, runner, chains) {
        Ok(removal) => Ok(removal),
        Err(e) if e.is_crash() => Err(e),
        Err(_) => Ok(None),
    }
}

/// libvirt 11.3.0 `networkPreReloadFirewallRules`: with `force` (firewalld
/// reloaded) and setup already done, set the chains up again; otherwise set
/// them up (once per process) only if some active network has rules
/// (`any_active_with_rules`: an active isolated, nat or route network), so
/// an idle host never loads conntrack.
pub fn pre_reload_private_chains<R: Runner + ?Sized>(
    chains: &mut ChainInitState,
    backend: Backend,
    runner: &R,
    force: bool,
    any_active_with_rules: bool,
) -> Result<(), RulesError> {
    if chains.done() && force {
        chains.setup(backend, runner, true)
    } else if any_active_with_rules {
        chains.setup(backend, runner, false)
    } else {
        Ok(())
    }
}

/// `networkRemoveFirewallRules` of libvirt 11.3.0 (without firewalld):
/// nothing for open (and host-bridge) networks; else the saved removal plan
/// if there is one (run with its own backend, result ignored), else the
/// legacy iptables regeneration ([`legacy_iptables_removal`]; nothing if
/// that fails). Only a simulated crash is returned as an error.
pub fn remove_network_firewall<R: Runner + ?Sized>(
    def: &NetworkDef,
    saved: Option<&Firewall>,
    runner: &R,
) -> Result<(), RulesError> {
    if !has_firewall_rules(def) {
        return Ok(());
    }
    let result = match saved {
        // A plan of the batched layout runs as batches (virtnet's own
        // layout; libvirt's plans are never matched).
        Some(plan) if batched::remove_plan_batched(plan, runner)? => Ok(()),
        Some(plan) => {
            let mut plan = plan.clone();
            plan.apply(runner)
        }
        None => match legacy_iptables_removal(def) {
            Ok(mut plan) => plan.apply(runner),
            Err(_) => Ok(()),
        },
    };
    match result {
        Err(e) if e.is_crash() => Err(e.into()),
        _ => Ok(()),
    }
}
