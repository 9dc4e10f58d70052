//! The network driver: what libvirt's network driver does for a network from
//! definition to destruction (define, undefine, start, destroy, autostart,
//! list, dumpxml, info) and at daemon start (reconcile), with the promise
//! that what was added is exactly what gets removed.
//!
//! * Start = a small common part ([`Driver::start`]: refuse if active, copy
//!   the persistent definition, open the journal) + the function of the
//!   network's forward mode from the ONE table in [`modes`], + save the
//!   status file, then delete the journal. A failed start undoes every step
//!   that succeeded, last first, from the journal's plan (kept in memory),
//!   including a global forwarding sysctl the start changed.
//! * Destroy runs the mode's shutdown, which replays the saved removal plan
//!   with the backend it was saved with, whatever is configured now (or the
//!   legacy iptables removal regenerated from the definition, for status
//!   files without a plan: libvirt ≤ 10.2, e.g. 9.0.0), then deletes the
//!   status file — last, so a crash mid-destroy leaves a status that the next
//!   [`Driver::reconcile`] cleans up (bridge gone → shut down).
//! * [`Driver::open`] recovers from crashes, and only the holder of
//!   `STATE_DIR/driver.lock` (flock, like libvirt's pid file) does: a journal
//!   of another live driver may belong to a start still in progress. A
//!   journal with no status file is undone entirely; with a status file (a
//!   crash during a reload) only the firewall creations its saved plan does
//!   not remove are undone. [`Driver::reconcile`] then does what the daemon
//!   does at startup: reload active networks' rules (remove with the saved
//!   plan, re-add with the configured backend, save the new plan) and start
//!   autostart networks; dnsmasq is refreshed as libvirt does (rewrite the
//!   hosts files and SIGHUP, or start it again if its pid file names no live
//!   process: `kill -0`).
//!
//! Locking: one owner per state directory, the holder of
//! `STATE_DIR/driver.lock` (see [`lock`]): every change is made under it, a
//! driver that does not hold it waits for it (bounded) or refuses a change,
//! and a daemon holding it makes the embedded driver refuse changes and
//! name the daemon's socket. Within the owning driver, the driver's own map
//! is behind a mutex that is never held while a command runs; per-network
//! serialisation is the caller's (the daemon's KeyedLocks). Calls on
//! different networks may run in parallel: defines are serialised among
//! themselves (bridge/MAC allocation), and the first private-chain setup is
//! done by one start while the others wait for it.
//!
//! Deviations from libvirt 11.3.0 (deliberate, or not done):
//!
//! - Bridge, addresses, link state, routes and sysctls are set with `ip` and
//!   `sysctl` argv (libvirt: netlink and `/proc` writes); signals are sent
//!   with `kill`; forward delay and STP are set in the `ip link add ... type
//!   bridge` command. `sysctl`, `kill` and `ip -4 route show` go through
//!   [`Runner::run_direct`]: the real runner does them as libvirt does,
//!   through `/proc` and kill(2), without a process. Extra read-only commands: `ip -4 route show` (route
//!   collision check; libvirt reads `/proc/net/route`), `sysctl -n` before
//!   changing a global forwarding key, `ip link show dev BR` (bridge-name
//!   allocation, bridge-exists check at daemon start), `dnsmasq --version`
//!   (once per driver).
//! - A failed start undoes exactly what it did; libvirt runs its shutdown
//!   path instead, which (when the rule add itself failed) applies the legacy
//!   iptables removal of rules that were never added. The firewall part of
//!   our stream on such a failure is libvirt's without that tail.
//! - The tc root qdisc added by the nftables backend is removed with the
//!   bridge at destroy (as in libvirt); a failed start's undo deletes it
//!   explicitly (`tc qdisc del dev BR root`) before deleting the bridge.
//! - Destroy removes the status file last (libvirt: first), for crash safety.
//! - QoS (`<bandwidth>`, [`bandwidth`]): libvirt's tc streams; floors of
//!   guest ports are not managed (no ports).
//! - Not implemented: `vlan_filtering` (macTableManager
//!   'libvirt') and systemd-resolved registration — definitions using them
//!   are refused at define ([`support`]) —, the SIGKILL
//!   follow-up of dnsmasq (except for a stop a crash interrupted, see
//!   `Driver::stop_dnsmasq`), port status
//!   files, firewalld zones (a `<bridge zone>` is refused as on
//!   a host without firewalld).
//! - Transient networks ([`Driver::create`]) exist while they run: no
//!   config file; destroy removes them with their dnsmasq files; a restart
//!   keeps an active one from its status file (as libvirt).
//! - [`Driver::reload`] is libvirt's `networkStateReload` (SIGHUP), except
//!   that status files are not read again (the driver keeps them current;
//!   libvirt re-reads them). [`Driver::check`] / [`Driver::repair`] go
//!   beyond libvirt (see [`check`]).
//! - dnsmasq's `--dhcp-script` is virtnet's own leases helper
//!   (`virtnet-leaseshelper`, next to the CLI; libvirt's where ours is not
//!   installed, else `true`), run with `VIR_BRIDGE_NAME` and
//!   `VIRTNET_LEASES_DIR` in its environment; it keeps libvirt's
//!   `DNSMASQ_DIR/BRIDGE.status`, which [`Driver::dhcp_leases`] reads and
//!   undefine removes (see [`dnsmasq::leases`]).
//!
//! `net-update` is in [`update`].
//!
//! Tests: `core/tests/driver_lifecycle.rs` (every forward mode, both
//! backends), `driver_failures.rs` (a failure at every command of a start; a
//! crash at every command of a start and of a reload, then a restart),
//! `driver_upgrade.rs` (libvirt 11.3.0 and 9.0.0 captures: streams and
//! status files), `driver_realhost.rs` (the real tools in a fresh namespace).

pub mod bandwidth;
pub mod check;
pub mod hooks;
pub mod journal;
pub mod lock;
pub mod modes;
pub mod support;
pub mod update;

pub use check::{CheckReport, Drift, DriftKind, NetworkCheck};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::dnsmasq::{self, DnsmasqCaps, DnsmasqOptions};
use crate::firewall::{full_argv, Backend, Firewall, Layer};
use crate::netxml::{self, DefineContext, FormatFlags, NetworkDef, PciAddress};
use crate::rules::batched::{BatchedSetup, BridgeState, Layout};
use crate::rules::{self, ChainInitState, RulesError};
use crate::store::{
    self, read_network_conf, ConfError, ConfigStore, NetworkConf, NetworkStatus, StatusError,
    StatusStore,
};
use hooks::HookOp;
use virtnet_runner::{CheckedError, Cmd, RunError, Runner, Signal};

use journal::{Entry, Journal, JournalRunner};
use lock::{Busy, DriverLock, Holder};
use modes::{ops_for, StartCtx};
pub use update::{UpdateFlags, UpdateReport};

/// How the firewall backend is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// From `CONFIG_DIR/network.conf` (`firewall_backend`), else libvirt's
    /// auto-detection: nftables if `nft` is available, else iptables.
    FromConfig,
    /// This backend, whatever network.conf says (tests, `--backend`).
    Fixed(Backend),
}

/// Told that a change waits for the driver lock (a line naming the holder).
pub type LockNotice = Arc<dyn Fn(&str) + Send + Sync>;

/// Everything the driver needs to run.
#[derive(Clone)]
pub struct DriverConfig {
    /// Persistent definitions (`NAME.xml`), `autostart/` links and `network.conf`.
    pub config_dir: PathBuf,
    /// Status files (`NAME.xml`), journals, dnsmasq pid files.
    pub state_dir: PathBuf,
    /// dnsmasq configuration and hosts files.
    pub dnsmasq_dir: PathBuf,
    /// The one door to the host.
    pub runner: Arc<dyn Runner>,
    pub backend: BackendChoice,
    /// dnsmasq binary; `None`: the first `dnsmasq` on `PATH` (libvirt),
    /// or the bare name when there is none.
    pub dnsmasq_binary: Option<String>,
    /// `--dhcp-script` given to dnsmasq.
    pub leases_helper: String,
    /// Where sysfs is mounted (`/sys`): PCI virtual-function checks at
    /// define time and a `<pf>`'s virtual functions at start.
    pub sysfs_root: PathBuf,
    /// How long a change waits for the driver lock held by another driver
    /// (see [`lock`]) before it fails; 30 s by default.
    pub lock_wait: Duration,
    /// Told (once per change) that the change waits for the driver lock,
    /// with a line naming the holder; `None`: a `tracing` warning only.
    pub lock_notice: Option<LockNotice>,
    /// Asked before every write of the state directory (journals, status
    /// files, dnsmasq files): the seam of injected write failures (tests;
    /// see [`store::WriteGate`]). Open (every write goes through) by
    /// default.
    pub write_gate: store::WriteGate,
    /// The firewall layout; `None`: `firewall_layout` of network.conf,
    /// else libvirt's (see [`rules::batched`]).
    pub layout: Option<Layout>,
    /// Where the network hook lives (`HOOKS_DIR/network`, see [`hooks`]);
    /// `None`: no hook is ever run (tests, simulated hosts). virtnet's
    /// binaries default to `/etc/virtnet/hooks` on a real host.
    pub hooks_dir: Option<PathBuf>,
}

impl DriverConfig {
    /// Defaults: dnsmasq files in `STATE_DIR/dnsmasq`, backend from
    /// network.conf, libvirt's leases helper path.
    pub fn new(
        config_dir: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        runner: Arc<dyn Runner>,
    ) -> Self {
        let state_dir = state_dir.into();
        DriverConfig {
            config_dir: config_dir.into(),
            dnsmasq_dir: state_dir.join("dnsmasq"),
            state_dir,
            runner,
            backend: BackendChoice::FromConfig,
            dnsmasq_binary: None,
            leases_helper: dnsmasq::LIBVIRT_LEASES_HELPER.to_string(),
            sysfs_root: PathBuf::from("/sys"),
            lock_wait: lock::DEFAULT_LOCK_WAIT,
            lock_notice: None,
            write_gate: store::WriteGate::open(),
            layout: None,
            hooks_dir: None,
        }
    }

    /// Everything under one directory, as a test or a simulated host
    /// wants it: definitions in `DIR/config`, status files and journals in
    /// `DIR/state` (dnsmasq files in `DIR/state/dnsmasq`), and dnsmasq
    /// named by its usual path `/usr/sbin/dnsmasq` instead of being looked
    /// up on this machine's `PATH` (a simulated host answers for that
    /// path, so nothing depends on what is installed). Other defaults as
    /// [`DriverConfig::new`]; chain [`DriverConfig::with_backend`] to fix
    /// the backend.
    pub fn under(dir: &Path, runner: Arc<dyn Runner>) -> Self {
        let mut cfg = DriverConfig::new(dir.join("config"), dir.join("state"), runner);
        cfg.dnsmasq_binary = Some("/usr/sbin/dnsmasq".to_string());
        cfg
    }

    pub fn with_backend(mut self, b: Backend) -> Self {
        self.backend = BackendChoice::Fixed(b);
        self
    }

    /// This layout, whatever network.conf says.
    pub fn with_layout(mut self, l: Layout) -> Self {
        self.layout = Some(l);
        self
    }

    /// Path of the driver configuration file.
    pub fn network_conf_path(&self) -> PathBuf {
        self.config_dir.join("network.conf")
    }
}

/// Errors of driver operations. Messages are libvirt's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Conf(#[from] ConfError),
    #[error("requested firewall_backend '{0}' is not available")]
    BackendUnavailable(Backend),
    #[error("could not find a usable firewall backend")]
    NoUsableBackend,
    #[error("Network not found: no network with matching name '{0}'")]
    NoNetwork(String),
    /// No network has this UUID (a lookup by UUID, `net-name`).
    #[error("Network not found: no network with matching uuid '{0}'")]
    NoNetworkUuid(String),
    /// A lookup by UUID got something that is not a UUID.
    #[error("invalid argument: uuidstr in virNetworkLookupByUUIDString must be a valid UUID")]
    InvalidUuid(String),
    #[error("network is already active")]
    AlreadyActive(String),
    /// `create` of a network (same name and UUID) that is running.
    #[error("network is already active as '{0}'")]
    AlreadyActiveAs(String),
    #[error("Requested operation is not valid: network '{0}' is not active")]
    NotActive(String),
    #[error("network '{name}' already exists with uuid {uuid}")]
    NameExists { name: String, uuid: String },
    #[error("network '{name}' is already defined with uuid {uuid}")]
    UuidExists { name: String, uuid: String },
    #[error("can't undefine transient network")]
    Transient(String),
    #[error("cannot set autostart for transient network")]
    AutostartTransient(String),
    #[error("{0}")]
    Xml(#[from] netxml::NetXmlError),
    /// A refused `net-update` (libvirt's message).
    #[error("{0}")]
    Update(#[from] netxml::UpdateError),
    #[error("{0}")]
    Status(#[from] StatusError),
    #[error("{0}")]
    Rules(RulesError),
    #[error("{0}")]
    Dnsmasq(#[from] dnsmasq::DnsmasqError),
    #[error("Child process ({command}) unexpected exit status {status}: {stderr}")]
    Command {
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("{0}")]
    Run(RunError),
    /// A network hook script failed (libvirt's VIR_ERR_HOOK_SCRIPT_FAILED).
    #[error("Hook script execution failed: {0}")]
    Hook(String),
    /// The (simulated) host crashed: the operation stopped at once, nothing
    /// was undone. A new driver (restart) cleans up.
    #[error("host crashed during the operation: {0}")]
    Crashed(RunError),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// The driver lock stayed held by another process (see [`lock`]).
    #[error("{path}: the state directory is in use by {holder}; gave up after waiting {waited} s for it, nothing was changed")]
    Locked {
        path: PathBuf,
        holder: String,
        waited: u64,
    },
    /// A daemon owns the state directory: changes go through it.
    #[error("the state directory {state_dir} is managed by {holder}: nothing was changed; send changes through it with --connect {connect}")]
    DaemonOwns {
        state_dir: PathBuf,
        holder: String,
        connect: String,
    },
}

impl DriverError {
    pub(crate) fn from_run(e: RunError) -> Self {
        match e {
            e @ RunError::Crashed { .. } => DriverError::Crashed(e),
            e => DriverError::Run(e),
        }
    }
}

/// A command that had to succeed ([`Runner::run_checked`]) did not:
/// libvirt's "Child process" message, with the command as one line and its
/// stderr without the trailing newline.
impl From<CheckedError> for DriverError {
    fn from(e: CheckedError) -> Self {
        match e {
            CheckedError::Run(e) => DriverError::from_run(e),
            CheckedError::Failed {
                argv,
                status,
                stderr,
            } => DriverError::Command {
                command: crate::firewall::render_argv(
                    &argv,
                    crate::firewall::RenderOptions::ONE_LINE,
                ),
                status,
                stderr: stderr.trim_end().to_string(),
            },
        }
    }
}

impl DriverError {
    pub(crate) fn from_rules(e: RulesError) -> Self {
        if e.is_crash() {
            let (program, index) = match &e {
                RulesError::Run(RunError::Crashed { program, index }) => (program.clone(), *index),
                RulesError::Firewall(crate::firewall::FirewallError::Crashed {
                    program,
                    index,
                }) => (program.clone(), *index),
                _ => (String::new(), 0),
            };
            return DriverError::Crashed(RunError::Crashed { program, index });
        }
        DriverError::Rules(e)
    }

    fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        DriverError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    /// True when the host crashed under the operation.
    pub fn is_crash(&self) -> bool {
        matches!(self, DriverError::Crashed(_))
    }
}

/// One network as the driver knows it.
#[derive(Debug, Clone, Default)]
struct NetObj {
    /// Persistent definition (config file); `None` for a transient network.
    config: Option<NetworkDef>,
    /// Live status when active.
    live: Option<NetworkStatus>,
    autostart: bool,
}

/// One DHCP lease as `net-dhcp-leases` shows it (libvirt's
/// `virNetworkDHCPLease`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DhcpLease {
    /// Seconds since the epoch; 0 = never expires.
    pub expiry_time: i64,
    pub mac: String,
    pub ipv6: bool,
    pub ip_address: String,
    pub prefix: u32,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
    pub iaid: Option<String>,
    /// The network's bridge.
    pub interface: String,
}

/// What `net-info` / `net-list` show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub uuid: String,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
    pub bridge: Option<String>,
    /// Backend of the saved removal plan (active networks with rules).
    pub firewall_backend: Option<Backend>,
    /// `<title>` of the definition shown (live if active), `net-list --title`.
    pub title: Option<String>,
}

/// Which networks [`Driver::list_filtered`] returns: libvirt's
/// `virConnectListAllNetworks` flags. Each pair is a filter group: when
/// neither flag of a group is set the group does not filter; when one or
/// both are set a network must match one of the set flags. The default
/// (nothing set) lists every network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub active: bool,
    pub inactive: bool,
    pub persistent: bool,
    pub transient: bool,
    pub autostart: bool,
    pub no_autostart: bool,
}

impl ListFilter {
    /// `VIR_CONNECT_LIST_NETWORKS_INACTIVE` .. `_NO_AUTOSTART` (1 << 0 .. 1 << 5).
    pub const INACTIVE: u32 = 1;
    pub const ACTIVE: u32 = 1 << 1;
    pub const PERSISTENT: u32 = 1 << 2;
    pub const TRANSIENT: u32 = 1 << 3;
    pub const AUTOSTART: u32 = 1 << 4;
    pub const NO_AUTOSTART: u32 = 1 << 5;
    /// Every flag libvirt defines for network listing.
    pub const ALL_FLAGS: u32 = (1 << 6) - 1;

    /// Every network.
    pub fn all() -> Self {
        Self::default()
    }

    /// From libvirt's flag bits; `Err` with the unknown bits.
    pub fn from_flags(flags: u32) -> Result<Self, u32> {
        if flags & !Self::ALL_FLAGS != 0 {
            return Err(flags & !Self::ALL_FLAGS);
        }
        Ok(ListFilter {
            inactive: flags & Self::INACTIVE != 0,
            active: flags & Self::ACTIVE != 0,
            persistent: flags & Self::PERSISTENT != 0,
            transient: flags & Self::TRANSIENT != 0,
            autostart: flags & Self::AUTOSTART != 0,
            no_autostart: flags & Self::NO_AUTOSTART != 0,
        })
    }

    /// libvirt's flag bits.
    pub fn flags(&self) -> u32 {
        [
            (self.inactive, Self::INACTIVE),
            (self.active, Self::ACTIVE),
            (self.persistent, Self::PERSISTENT),
            (self.transient, Self::TRANSIENT),
            (self.autostart, Self::AUTOSTART),
            (self.no_autostart, Self::NO_AUTOSTART),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit)
    }

    /// libvirt's `virNetworkObjMatch`.
    pub fn matches(&self, n: &NetworkInfo) -> bool {
        fn group(a: bool, b: bool, value: bool) -> bool {
            !(a || b) || (a && value) || (b && !value)
        }
        group(self.active, self.inactive, n.active)
            && group(self.persistent, self.transient, n.persistent)
            && group(self.autostart, self.no_autostart, n.autostart)
    }
}

/// An inspected active network and its saved removal plan restricted to
/// the rules found intact (`None`: no saved plan).
type Inspected = (NetworkStatus, Option<Firewall>);

/// What [`Driver::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Active networks whose rules were reloaded with the configured
    /// backend, or (batched layout with nftables, at a daemon start) found
    /// intact and kept as they are: those are also in `intact`.
    pub reloaded: Vec<String>,
    /// Of `reloaded`: the networks a daemon start found intact (batched
    /// layout with nftables; see [`Driver::reconcile`]), nothing run or
    /// written for their firewall.
    pub intact: Vec<String>,
    /// Networks found active whose bridge was gone: cleaned up and marked inactive.
    pub cleaned: Vec<String>,
    /// Autostart networks started.
    pub autostarted: Vec<String>,
    /// Problems (per network; other networks were still handled).
    pub problems: Vec<String>,
}

/// The network driver.
pub struct Driver {
    cfg: DriverConfig,
    backend: Backend,
    layout: Layout,
    /// The batched layout's shared nft part (set up once per driver).
    batched: Mutex<BatchedSetup>,
    configs: ConfigStore,
    statuses: StatusStore,
    nets: Mutex<BTreeMap<String, NetObj>>,
    chains: Mutex<ChainInitState>,
    dnsmasq_caps: Mutex<Option<DnsmasqCaps>>,
    reports: Mutex<Vec<String>>,
    /// Serialises [`Driver::define`]: the bridge name and MAC it allocates
    /// must not be handed to two networks defined at the same time.
    define_serial: Mutex<()>,
    /// Exclusive lock on `STATE_DIR/driver.lock` (libvirt's driver pid
    /// file), held while this driver lives; `None` if another driver held
    /// it when this one opened: each change then takes it ([`lock`]).
    lifetime_lock: Mutex<Option<DriverLock>>,
    /// Whether `lifetime_lock` was taken (it is never given up).
    owner: bool,
}

/// The driver lock for one change: nothing for the driver that holds it
/// for its lifetime, the lock itself for the others (released on drop).
struct ChangeGuard {
    _lock: Option<DriverLock>,
}

/// Takes the driver lock of `state_dir` for a change (see [`lock`]):
/// waits at most `wait` for its holder, telling `notice` (once) who holds
/// it; refuses at once when a daemon holds it
/// ([`DriverError::DaemonOwns`]); [`DriverError::Locked`] when the wait
/// ends. (A driver's own changes use its [`DriverConfig::lock_wait`] and
/// [`DriverConfig::lock_notice`].)
pub fn take_change_lock(
    state_dir: &Path,
    wait: Duration,
    notice: Option<&(dyn Fn(&str) + Send + Sync)>,
) -> Result<DriverLock, DriverError> {
    let path = lock::lock_path(state_dir);
    let on_busy = |h: &Holder| {
        let line = format!(
            "waiting up to {} s for the driver lock {}, held by {}",
            wait.as_secs(),
            path.display(),
            h.describe()
        );
        tracing::warn!("{line}");
        if let Some(n) = notice {
            n(&line);
        }
    };
    DriverLock::take(state_dir, wait, &on_busy).map_err(|b| match b {
        Busy::Daemon(h) => DriverError::DaemonOwns {
            state_dir: state_dir.to_path_buf(),
            holder: h.describe(),
            connect: h.daemon.unwrap_or_default(),
        },
        Busy::Timeout(h) => DriverError::Locked {
            path: path.clone(),
            holder: h.describe(),
            waited: wait.as_secs(),
        },
        Busy::Io(e) => DriverError::io(&path, e),
    })
}

/// libvirt's backend selection (reference 3.1).
pub fn select_backend(
    conf: &NetworkConf,
    available: &dyn Fn(&str) -> bool,
) -> Result<Backend, DriverError> {
    let candidates: Vec<Backend> = match conf.firewall_backend {
        Some(b) => vec![b],
        None => vec![Backend::Nftables, Backend::Iptables],
    };
    for b in &candidates {
        let ok = match b {
            Backend::None => true,
            Backend::Iptables => available("iptables"),
            Backend::Nftables => available("nft"),
        };
        if ok {
            return Ok(*b);
        }
    }
    match conf.firewall_backend {
        Some(b) => Err(DriverError::BackendUnavailable(b)),
        None => Err(DriverError::NoUsableBackend),
    }
}

/// The define-time view of the host and the other networks.
struct DefineView<'a> {
    others: Vec<(String, Option<String>)>,
    runner: &'a dyn Runner,
    sysfs: &'a Path,
}

impl DefineContext for DefineView<'_> {
    fn bridge_in_use(&self, bridge: &str, skip_network: &str) -> bool {
        self.others
            .iter()
            .any(|(n, b)| n != skip_network && b.as_deref() == Some(bridge))
    }
    fn netdev_exists(&self, name: &str) -> bool {
        matches!(
            self.runner.run(&Cmd::new(["ip", "link", "show", "dev", name])),
            Ok(o) if o.success()
        )
    }
    fn pci_is_virtual_function(&self, addr: &PciAddress) -> Result<bool, String> {
        let dev = self.sysfs.join("bus/pci/devices").join(addr.to_string());
        if !dev.exists() {
            return Err(format!("PCI device {addr} not found"));
        }
        Ok(dev.join("physfn").exists())
    }
}

/// The error of an operation whose journal could not be written (disk
/// full, I/O error, read-only file system): it was undone.
fn journal_write_failed(path: &Path, why: &str) -> DriverError {
    DriverError::io(
        path,
        format!("cannot write the journal, the operation was undone: {why}"),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Driver {
    /// Opens the driver: reads network.conf and selects the backend (an
    /// invalid setting is an error naming the file and line), loads the
    /// persistent definitions and status files (unreadable ones are reported
    /// and skipped, see [`Driver::reports`]), and undoes what crashed starts
    /// left behind. Runs no firewall reload: see [`Driver::reconcile`].
    pub fn open(cfg: DriverConfig) -> Result<Driver, DriverError> {
        let backend = Driver::select(&cfg)?;
        let layout = Driver::select_layout(&cfg)?;
        let (lock, lock_problem) = match DriverLock::try_take(&cfg.state_dir) {
            Ok(l) => (l, None),
            Err(e) => (
                None,
                Some(format!(
                    "cannot take the driver lock {}: {e}",
                    lock::lock_path(&cfg.state_dir).display()
                )),
            ),
        };
        Driver::open_inner(cfg, backend, layout, lock, lock_problem)
    }

    /// [`Driver::open`] with the driver lock already taken (by
    /// [`take_change_lock`], before the caller read a state the lock
    /// protects, e.g. a simulated host's file): the driver holds it for its
    /// lifetime.
    pub fn open_with_lock(cfg: DriverConfig, lock: DriverLock) -> Result<Driver, DriverError> {
        let backend = Driver::select(&cfg)?;
        let layout = Driver::select_layout(&cfg)?;
        Driver::open_inner(cfg, backend, layout, Some(lock), None)
    }

    fn select_layout(cfg: &DriverConfig) -> Result<Layout, DriverError> {
        Ok(match cfg.layout {
            Some(l) => l,
            None => read_network_conf(&cfg.network_conf_path())?
                .firewall_layout
                .unwrap_or_default(),
        })
    }

    fn select(cfg: &DriverConfig) -> Result<Backend, DriverError> {
        Ok(match &cfg.backend {
            BackendChoice::Fixed(b) => *b,
            BackendChoice::FromConfig => {
                let conf = read_network_conf(&cfg.network_conf_path())?;
                let runner = cfg.runner.clone();
                select_backend(&conf, &move |p| runner.has_program(p))?
            }
        })
    }

    fn open_inner(
        cfg: DriverConfig,
        backend: Backend,
        layout: Layout,
        lock: Option<DriverLock>,
        lock_problem: Option<String>,
    ) -> Result<Driver, DriverError> {
        let driver = Driver {
            layout,
            batched: Mutex::new(BatchedSetup::new()),
            owner: lock.is_some(),
            lifetime_lock: Mutex::new(lock),
            configs: ConfigStore::new(&cfg.config_dir),
            statuses: StatusStore::new(&cfg.state_dir).with_gate(cfg.write_gate.clone()),
            backend,
            cfg,
            nets: Mutex::new(BTreeMap::new()),
            chains: Mutex::new(ChainInitState::new()),
            dnsmasq_caps: Mutex::new(None),
            reports: Mutex::new(Vec::new()),
            define_serial: Mutex::new(()),
        };
        if let Some(p) = lock_problem {
            driver.report(p);
        }
        driver.load(driver.owner)?;
        Ok(driver)
    }

    /// The driver lock for a change. The driver holding it for its
    /// lifetime has it. Another waits for it (at most
    /// [`DriverConfig::lock_wait`], telling [`DriverConfig::lock_notice`]
    /// who holds it), refuses at once when a daemon holds it, and, once it
    /// has it, re-reads the state directory (what the previous holder
    /// changed) and recovers what a dead holder left behind.
    fn change(&self) -> Result<ChangeGuard, DriverError> {
        if self.owner {
            return Ok(ChangeGuard { _lock: None });
        }
        if lock::sabotage::ignoring_lock() {
            // Test-only mutation (feature `sabotage`): see lock::sabotage.
            self.load(true)?;
            return Ok(ChangeGuard { _lock: None });
        }
        let l = take_change_lock(
            &self.cfg.state_dir,
            self.cfg.lock_wait,
            self.cfg.lock_notice.as_deref(),
        )?;
        self.load(true)?;
        Ok(ChangeGuard { _lock: Some(l) })
    }

    /// Marks the state directory as managed by a daemon serving `socket`
    /// (second line of the lock file, see [`lock`]): the embedded driver of
    /// `virtnet` then refuses changes and names the socket. Only a driver
    /// holding the lock for its lifetime can do this.
    pub fn announce_daemon(&self, socket: &Path) -> Result<(), DriverError> {
        let path = lock::lock_path(&self.cfg.state_dir);
        let mut guard = lock(&self.lifetime_lock);
        let Some(l) = guard.as_mut() else {
            return Err(DriverError::Invalid(format!(
                "{} is held by another process",
                path.display()
            )));
        };
        l.write_holder(&format!(
            "{}\nvirtnetd unix:{}\n",
            std::process::id(),
            socket.display()
        ))
        .map_err(|e| DriverError::io(&path, e))
    }

    fn report(&self, msg: String) {
        tracing::warn!("{msg}");
        lock(&self.reports).push(msg);
    }

    /// Problems found while opening (unreadable files, crash recovery).
    pub fn reports(&self) -> Vec<String> {
        lock(&self.reports).clone()
    }

    /// Whether this driver holds `STATE_DIR/driver.lock` (no other driver,
    /// in this or another process, had it when this one opened).
    pub fn holds_driver_lock(&self) -> bool {
        self.owner
    }

    /// The configured firewall backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The configured firewall layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Does this driver's layout hang networks off libvirt's private
    /// chains? Not the batched layout with nftables: its shared part (own
    /// tables) is set up by each start ([`BatchedSetup`]); setting up
    /// libvirt's `libvirt_network` tables on a reload would leave them
    /// behind for nothing.
    fn uses_libvirt_chains(&self) -> bool {
        !(self.layout == Layout::Batched && self.backend == Backend::Nftables)
    }

    /// The names of the host's links, from one `ip -o link show` (a
    /// `NAME@PEER` as `NAME`); `None` if the listing failed.
    fn list_links(&self) -> Result<Option<Vec<String>>, DriverError> {
        let out = self
            .runner()
            .run(&Cmd::new(["ip", "-o", "link", "show"]))
            .map_err(DriverError::from_run)?;
        if !out.success() {
            return Ok(None);
        }
        Ok(Some(
            out.stdout
                .lines()
                .filter_map(|l| {
                    let name = l.split(": ").nth(1)?;
                    Some(name.split('@').next().unwrap_or(name).to_string())
                })
                .collect(),
        ))
    }

    /// The devices with a root qdisc `htb 1:` (libvirt's, which holds the
    /// nftables backend's tc checksum filter), from one `tc qdisc show`;
    /// `None` if the listing failed.
    fn list_root_htb(&self) -> Result<Option<Vec<String>>, DriverError> {
        let out = self
            .runner()
            .run(&Cmd::new(["tc", "qdisc", "show"]))
            .map_err(DriverError::from_run)?;
        if !out.success() {
            return Ok(None);
        }
        Ok(Some(
            out.stdout
                .lines()
                .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                    ["qdisc", "htb", "1:", "dev", dev, "root", ..] => Some(dev.to_string()),
                    _ => None,
                })
                .collect(),
        ))
    }

    /// The batched layout with nftables (its own table, no libvirt
    /// private chains).
    fn batched_nft(&self) -> bool {
        self.layout == Layout::Batched && self.backend == Backend::Nftables
    }

    /// Sets the batched layout's shared nft part up (again, when `force`:
    /// after it was found drifted). Only a crash is an error; a failed
    /// family is saved and reported by the next start, as at a first setup.
    fn setup_batched_nft(&self, force: bool) -> Result<(), DriverError> {
        let mut setup = lock(&self.batched);
        if force {
            *setup = BatchedSetup::new();
        }
        setup
            .setup_nft(self.runner())
            .map_err(DriverError::from_rules)
    }

    pub fn config(&self) -> &DriverConfig {
        &self.cfg
    }

    fn runner(&self) -> &dyn Runner {
        &*self.cfg.runner
    }

    fn journal_path(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join(format!("{name}.journal"))
    }

    /// Opens an operation's journal and writes its owner (this process,
    /// see [`lock::owner_note`]) as its first line, before anything runs:
    /// a journal that cannot be written (disk full, I/O error, read-only
    /// file system) refuses the operation before it changes the host.
    fn open_journal(&self, jpath: &Path) -> Result<Journal, DriverError> {
        let journal = Journal::create_gated(jpath, self.cfg.write_gate.clone()).map_err(|e| {
            DriverError::io(
                jpath,
                format!("cannot write the journal, nothing was changed: {e}"),
            )
        })?;
        let (note, pid, start) = lock::owner_note();
        if let Err(e) = journal.note(note, &pid, &start) {
            let _ = journal.remove();
            return Err(DriverError::io(
                jpath,
                format!("cannot write the journal, nothing was changed: {e}"),
            ));
        }
        Ok(journal)
    }

    /// (Re-)reads definitions and status files; with the driver lock
    /// (`locked`), recovers the journals of operations whose writer is gone.
    fn load(&self, locked: bool) -> Result<(), DriverError> {
        let mut nets = BTreeMap::new();
        for (path, r) in self.configs.load_all() {
            match r {
                Ok(def) => {
                    let autostart = self.configs.is_autostart(&def.name);
                    nets.insert(
                        def.name.clone(),
                        NetObj {
                            config: Some(def),
                            live: None,
                            autostart,
                        },
                    );
                }
                Err(e) => self.report(format!("skipping config {}: {e}", path.display())),
            }
        }
        for (path, r) in self.statuses.load_all() {
            match r {
                Ok(st) => {
                    let obj = nets.entry(st.def.name.clone()).or_default();
                    obj.live = Some(st);
                }
                Err(e) => self.report(format!("skipping status file {}: {e}", path.display())),
            }
        }
        *lock(&self.nets) = nets;
        if locked {
            // Atomic writes a killed process left half-way (its temporary
            // file, never renamed).
            for dir in [
                &self.cfg.config_dir,
                &self.cfg.state_dir,
                &self.cfg.dnsmasq_dir,
            ] {
                for p in store::remove_stale_temps(dir) {
                    self.report(format!(
                        "removed {}, left by an interrupted write",
                        p.display()
                    ));
                }
            }
        }
        self.recover_journals(locked)
    }

    /// Undo the creations of journals that no status file accounts for.
    /// Only the driver holding the driver lock does this (`locked`), and
    /// only for journals whose writer is gone: another driver's journal may
    /// belong to an operation that is still running.
    fn recover_journals(&self, locked: bool) -> Result<(), DriverError> {
        let Ok(rd) = fs::read_dir(&self.cfg.state_dir) else {
            return Ok(());
        };
        if !locked {
            let pending = self.pending_journals();
            if !pending.is_empty() {
                self.report(format!(
                    "driver lock {} is held by another driver: journals of {} not recovered",
                    self.cfg.state_dir.join("driver.lock").display(),
                    pending.join(", ")
                ));
            }
            return Ok(());
        }
        let mut journals: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "journal"))
            .collect();
        journals.sort();
        for path in journals {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_string();
            let entries = match Journal::read(&path) {
                Ok(e) => e,
                Err(e) => {
                    self.report(format!("cannot read journal {e}; left in place"));
                    continue;
                }
            };
            if let Some((pid, _)) =
                journal_writer(&entries).filter(|(pid, start)| lock::writer_alive(pid, start))
            {
                self.report(format!(
                    "{}: written by pid {pid}, which is still running: left in place",
                    path.display()
                ));
                continue;
            }
            let status = lock(&self.nets).get(&name).and_then(|o| o.live.clone());
            // Intents that never reported back are looked up on the host.
            let (mut plan, _) =
                journal::recovery_plan(self.runner(), &entries).map_err(DriverError::from_run)?;
            if let Some(st) = &status {
                // The network is active: its status accounts for its bridge
                // and dnsmasq, and for the rules in its removal plan. Undo
                // only firewall creations that plan does not remove.
                let accounted: Vec<Vec<String>> = st
                    .fw_removal
                    .as_ref()
                    .map(|fw| {
                        fw.action_cmds()
                            .map(|c| full_argv(fw.backend(), c, false))
                            .collect()
                    })
                    .unwrap_or_default();
                plan.retain(|inv| {
                    let prog = inv.first().map(String::as_str).unwrap_or("");
                    let firewall =
                        matches!(prog, "iptables" | "ip6tables" | "ebtables" | "nft" | "tc");
                    firewall && !accounted.contains(inv)
                });
            }
            if !plan.is_empty() {
                self.report(format!(
                    "{}: undoing {} change(s) of an interrupted operation on network '{name}'",
                    path.display(),
                    plan.len()
                ));
            }
            journal::run_undo(self.runner(), plan).map_err(DriverError::from_run)?;
            if status.is_none() {
                // An interrupted start: its dnsmasq files go with it.
                self.remove_dnsmasq_start_files(&name);
            }
            store::remove_if_exists(&path).map_err(|e| DriverError::io(&path, e))?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // define / undefine / autostart / queries

    /// Defines (or redefines) a persistent network from XML: parse,
    /// driver validation (allocates a `virbr%d` bridge name and a
    /// 52:54:00 MAC for bridge-type networks), UUID/name checks, config file.
    /// An active network keeps running with its live definition; the new one
    /// applies at its next start.
    ///
    /// Defines are serialised (other operations are not): the allocation
    /// reads the other networks' bridges and the new one is recorded before
    /// the next define looks.
    pub fn define(&self, xml: &str) -> Result<NetworkDef, DriverError> {
        let mut def = netxml::parse(xml)?;
        // Under the driver lock: the other networks' bridges are those on
        // disk, with what another process defined just before.
        let _owner = self.change()?;
        let _serial = lock(&self.define_serial);
        let others: Vec<(String, Option<String>)> = {
            let nets = lock(&self.nets);
            nets.iter()
                .flat_map(|(n, o)| {
                    let mut v = Vec::new();
                    if let Some(c) = &o.config {
                        v.push((n.clone(), c.bridge.name.clone()));
                    }
                    if let Some(l) = &o.live {
                        v.push((n.clone(), l.def.bridge.name.clone()));
                    }
                    v
                })
                .collect()
        };
        let view = DefineView {
            others,
            runner: self.runner(),
            sysfs: &self.cfg.sysfs_root,
        };
        if let Err(mut e) = netxml::validate::validate_for_define(&mut def, &view) {
            netxml::locate(xml, &mut e);
            return Err(e.into());
        }
        if let Some(mut e) = support::unsupported_feature(&def) {
            netxml::locate(xml, &mut e);
            return Err(e.into());
        }
        let mut nets = lock(&self.nets);
        for (n, o) in nets.iter() {
            let existing = o.config.as_ref().or(o.live.as_ref().map(|l| &l.def));
            let Some(ex) = existing else { continue };
            if ex.uuid == def.uuid && *n != def.name {
                return Err(DriverError::UuidExists {
                    name: n.clone(),
                    uuid: ex.uuid.to_string(),
                });
            }
            if *n == def.name && ex.uuid != def.uuid {
                if def.uuid_specified {
                    return Err(DriverError::NameExists {
                        name: n.clone(),
                        uuid: ex.uuid.to_string(),
                    });
                }
                // No <uuid> given: keep the existing network's.
                def.uuid = ex.uuid;
            }
        }
        self.configs.save(&def)?;
        let obj = nets.entry(def.name.clone()).or_default();
        obj.config = Some(def.clone());
        Ok(def)
    }

    /// Removes a persistent definition (config file and autostart link). An
    /// active network keeps running as a transient one.
    pub fn undefine(&self, name: &str) -> Result<(), DriverError> {
        let _owner = self.change()?;
        let mut nets = lock(&self.nets);
        let obj = nets
            .get_mut(name)
            .ok_or_else(|| DriverError::NoNetwork(name.to_string()))?;
        if obj.config.is_none() {
            return Err(DriverError::Transient(name.to_string()));
        }
        let _ = self.configs.set_autostart(name, false);
        self.configs.remove(name)?;
        let bridge = obj
            .config
            .as_ref()
            .and_then(|c| c.bridge_name().map(str::to_owned));
        obj.config = None;
        obj.autostart = false;
        if obj.live.is_none() {
            nets.remove(name);
            self.remove_dnsmasq_files(name, bridge.as_deref());
        }
        Ok(())
    }

    /// Enables or disables autostart of a persistent network.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), DriverError> {
        let _owner = self.change()?;
        let mut nets = lock(&self.nets);
        let obj = nets
            .get_mut(name)
            .ok_or_else(|| DriverError::NoNetwork(name.to_string()))?;
        if obj.config.is_none() {
            return Err(DriverError::AutostartTransient(name.to_string()));
        }
        self.configs.set_autostart(name, on)?;
        obj.autostart = on;
        Ok(())
    }

    fn info_of(name: &str, o: &NetObj) -> Option<NetworkInfo> {
        let def = o.live.as_ref().map(|l| &l.def).or(o.config.as_ref())?;
        Some(NetworkInfo {
            name: name.to_string(),
            uuid: def.uuid.to_string(),
            active: o.live.is_some(),
            persistent: o.config.is_some(),
            autostart: o.autostart,
            bridge: def.bridge.name.clone(),
            firewall_backend: o.live.as_ref().and_then(|l| l.removal_backend()),
            title: def.title.clone(),
        })
    }

    /// All networks (active and defined), by name.
    pub fn list(&self) -> Vec<NetworkInfo> {
        self.list_filtered(&ListFilter::all())
    }

    /// The networks `filter` selects (libvirt `virConnectListAllNetworks`),
    /// by name (byte order; virsh sorts its output itself).
    pub fn list_filtered(&self, filter: &ListFilter) -> Vec<NetworkInfo> {
        lock(&self.nets)
            .iter()
            .filter_map(|(n, o)| Self::info_of(n, o))
            .filter(|i| filter.matches(i))
            .collect()
    }

    /// One network, by name (libvirt `virNetworkLookupByName`).
    pub fn info(&self, name: &str) -> Result<NetworkInfo, DriverError> {
        lock(&self.nets)
            .get(name)
            .and_then(|o| Self::info_of(name, o))
            .ok_or_else(|| DriverError::NoNetwork(name.to_string()))
    }

    /// One network, by UUID (libvirt `virNetworkLookupByUUIDString`):
    /// [`DriverError::InvalidUuid`] when `uuid` is not one,
    /// [`DriverError::NoNetworkUuid`] when no network has it.
    pub fn lookup_by_uuid(&self, uuid: &str) -> Result<NetworkInfo, DriverError> {
        let u = netxml::Uuid::parse(uuid).ok_or_else(|| DriverError::InvalidUuid(uuid.into()))?;
        lock(&self.nets)
            .iter()
            .find(|(_, o)| {
                o.live
                    .as_ref()
                    .map(|l| &l.def)
                    .or(o.config.as_ref())
                    .map(|d| d.uuid)
                    == Some(u)
            })
            .and_then(|(n, o)| Self::info_of(n, o))
            .ok_or_else(|| DriverError::NoNetworkUuid(u.to_string()))
    }

    /// One network named by its name or its UUID, as virsh looks a network
    /// argument up: a 36-character argument is tried as a UUID first; then
    /// it is a name. Not found: the by-name error (as virsh reports it).
    pub fn lookup(&self, name_or_uuid: &str) -> Result<NetworkInfo, DriverError> {
        if name_or_uuid.len() == 36 {
            if let Ok(i) = self.lookup_by_uuid(name_or_uuid) {
                return Ok(i);
            }
        }
        self.info(name_or_uuid)
    }

    /// The name of the network `name_or_uuid` designates ([`Driver::lookup`]).
    pub fn resolve(&self, name_or_uuid: &str) -> Result<String, DriverError> {
        self.lookup(name_or_uuid).map(|i| i.name)
    }

    /// The XML of a network: the live definition if active (unless
    /// `inactive`), else the persistent one (libvirt virNetworkGetXMLDesc).
    pub fn dumpxml(&self, name: &str, inactive: bool) -> Result<String, DriverError> {
        let nets = lock(&self.nets);
        let o = nets
            .get(name)
            .ok_or_else(|| DriverError::NoNetwork(name.to_string()))?;
        let (def, flags) = match (&o.live, &o.config, inactive) {
            (_, Some(c), true) => (c, FormatFlags::INACTIVE),
            (Some(l), _, true) => (&l.def, FormatFlags::INACTIVE),
            (Some(l), _, false) => (&l.def, FormatFlags::LIVE),
            (None, Some(c), false) => (c, FormatFlags::LIVE),
            (None, None, _) => return Err(DriverError::NoNetwork(name.to_string())),
        };
        Ok(netxml::format(def, flags))
    }

    /// The DHCP leases of a network (libvirt networkGetDHCPLeases): read from
    /// the leases helper's file for its bridge (see [`dnsmasq::leases`]),
    /// without expired ones, only `mac`'s when given (any case), with the
    /// prefix of the network's first `<ip>` of the lease's family. A network
    /// without a leases file has none.
    pub fn dhcp_leases(
        &self,
        name: &str,
        mac: Option<&str>,
    ) -> Result<Vec<DhcpLease>, DriverError> {
        let want = match mac {
            Some(m) => Some(
                dnsmasq::leases::parse_mac(m)
                    .ok_or_else(|| DriverError::Invalid(format!("invalid MAC address: {m}")))?,
            ),
            None => None,
        };
        let def = {
            let nets = lock(&self.nets);
            let o = nets
                .get(name)
                .ok_or_else(|| DriverError::NoNetwork(name.to_string()))?;
            match (&o.live, &o.config) {
                (Some(l), _) => l.def.clone(),
                (None, Some(c)) => c.clone(),
                (None, None) => return Err(DriverError::NoNetwork(name.to_string())),
            }
        };
        let Some(bridge) = def.bridge_name() else {
            return Ok(Vec::new());
        };
        let path = dnsmasq::leases::file_path(&self.cfg.dnsmasq_dir, bridge);
        let stored =
            dnsmasq::leases::read_file(&path).map_err(|e| DriverError::Invalid(e.to_string()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut out = Vec::new();
        for l in stored {
            let Some(lmac) = l.mac_address.clone() else {
                return Err(DriverError::Invalid(format!(
                    "{}: found lease without mac-address",
                    path.display()
                )));
            };
            if let Some(w) = want {
                if dnsmasq::leases::parse_mac(&lmac) != Some(w) {
                    continue;
                }
            }
            if l.expired(now) {
                continue;
            }
            let ipv6 = l.is_ipv6();
            let prefix = def
                .ips
                .iter()
                .find(|ip| ip.address.is_ipv6() == ipv6)
                .map(|ip| {
                    if ipv6 {
                        ip.explicit_prefix
                    } else {
                        ip.prefix().unwrap_or(0)
                    }
                })
                .unwrap_or(0);
            out.push(DhcpLease {
                expiry_time: l.expiry_time,
                mac: lmac,
                ipv6,
                ip_address: l.ip_address,
                prefix,
                hostname: l.hostname,
                client_id: l.client_id,
                iaid: l.iaid,
                interface: bridge.to_string(),
            });
        }
        Ok(out)
    }

    /// The saved status of an active network.
    pub fn status(&self, name: &str) -> Option<NetworkStatus> {
        lock(&self.nets).get(name).and_then(|o| o.live.clone())
    }

    // ------------------------------------------------------------------
    // start / destroy

    /// Starts a defined network. On failure every step that succeeded is
    /// undone in reverse order and the host is left as it was.
    pub fn start(&self, name: &str) -> Result<(), DriverError> {
        let _owner = self.change()?;
        self.start_owned(name)
    }

    /// [`Driver::start`] under the driver lock.
    fn start_owned(&self, name: &str) -> Result<(), DriverError> {
        let def = {
            let nets = lock(&self.nets);
            let o = nets
                .get(name)
                .ok_or_else(|| DriverError::NoNetwork(name.to_string()))?;
            if o.live.is_some() {
                return Err(DriverError::AlreadyActive(name.to_string()));
            }
            o.config
                .clone()
                .ok_or_else(|| DriverError::NoNetwork(name.to_string()))?
        };
        // A definition saved before virtnet refused these features.
        if let Some(e) = support::unsupported_feature(&def) {
            return Err(e.into());
        }
        self.start_def(name, def)
    }

    /// Creates and starts a transient network from XML (libvirt
    /// `networkCreateXML`, `virsh net-create`): parsed and validated as
    /// for define (bridge name and MAC allocated), nothing written to the
    /// config directory. The network exists while it runs: destroy removes
    /// it with its files, a daemon restart keeps it (its status file).
    ///
    /// Name and UUID are checked as libvirt does: a network with this UUID
    /// and another name, or this name and another UUID (a definition
    /// without `<uuid>` gets a new random one), is refused; the same
    /// network (name and UUID) is refused when active, else — an inactive
    /// persistent network — it is started with this XML as its live
    /// definition (its persistent one is unchanged).
    pub fn create(&self, xml: &str) -> Result<NetworkDef, DriverError> {
        let mut def = netxml::parse(xml)?;
        let _owner = self.change()?;
        // Held for the whole start: the bridge name allocated here must not
        // be handed to a network defined or created meanwhile (a transient
        // network is in the map only once it runs).
        let _serial = lock(&self.define_serial);
        let others: Vec<(String, Option<String>)> = {
            let nets = lock(&self.nets);
            nets.iter()
                .flat_map(|(n, o)| {
                    o.config
                        .iter()
                        .map(|c| (n.clone(), c.bridge.name.clone()))
                        .chain(
                            o.live
                                .iter()
                                .map(|l| (n.clone(), l.def.bridge.name.clone())),
                        )
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let view = DefineView {
            others,
            runner: self.runner(),
            sysfs: &self.cfg.sysfs_root,
        };
        if let Err(mut e) = netxml::validate::validate_for_define(&mut def, &view) {
            netxml::locate(xml, &mut e);
            return Err(e.into());
        }
        // What virtnet cannot apply is refused, as at define.
        if let Some(mut e) = support::unsupported_feature(&def) {
            netxml::locate(xml, &mut e);
            return Err(e.into());
        }
        {
            let nets = lock(&self.nets);
            for (n, o) in nets.iter() {
                let Some(ex) = o.live.as_ref().map(|l| &l.def).or(o.config.as_ref()) else {
                    continue;
                };
                if ex.uuid == def.uuid {
                    if *n != def.name {
                        return Err(DriverError::UuidExists {
                            name: n.clone(),
                            uuid: ex.uuid.to_string(),
                        });
                    }
                    if o.live.is_some() {
                        return Err(DriverError::AlreadyActiveAs(n.clone()));
                    }
                } else if *n == def.name {
                    return Err(DriverError::NameExists {
                        name: n.clone(),
                        uuid: ex.uuid.to_string(),
                    });
                }
            }
        }
        let name = def.name.clone();
        self.start_def(&name, def.clone())?;
        Ok(self.status(&name).map(|st| st.def).unwrap_or(def))
    }

    /// Starts `name` with `def` as its live definition: the journal, the
    /// forward mode's start, the status file; undone entirely on failure.
    fn start_def(&self, name: &str, def: NetworkDef) -> Result<(), DriverError> {
        // libvirt runs the early hook before anything is created; its
        // failure aborts the start, and the shutdown that follows runs the
        // `stopped` hook (its result ignored).
        if let Err(e) = self.run_hook(&def, HookOp::Start) {
            if !e.is_crash() {
                let _ = self.run_hook(&def, HookOp::Stopped);
            }
            return Err(e);
        }
        let jpath = self.journal_path(name);
        let journal = self.open_journal(&jpath)?;
        let journaled = JournalRunner::new(self.runner(), &journal);
        let note = |n: &str, k: &str, v: &str| {
            journal
                .note(n, k, v)
                .map_err(|e| DriverError::io(journal.path(), e))
        };
        let ctx = StartCtx {
            driver: self,
            runner: &journaled,
            note: &note,
        };
        let mut live = def.clone();
        let ops = ops_for(live.forward_mode());
        let result = (ops.start)(&ctx, &mut live).and_then(|fw| {
            // Nothing is saved over a journal that missed an entry.
            if let Some(why) = journal.write_failure() {
                return Err(journal_write_failed(&jpath, &why));
            }
            // Everything is up: the `started` hook, whose failure undoes
            // the start.
            self.run_hook(&live, HookOp::Started)?;
            let st = NetworkStatus::new(live, fw);
            self.statuses.save(&st)?;
            Ok(st)
        });
        match result {
            Ok(st) => {
                journal.remove().map_err(|e| DriverError::io(&jpath, e))?;
                let mut nets = lock(&self.nets);
                nets.entry(name.to_string()).or_default().live = Some(st);
                Ok(())
            }
            Err(e) if e.is_crash() => Err(e),
            Err(e) => {
                // The plan the journal file would give, kept in memory.
                let mut plan = journal.take_undo_plan();
                if crate::firewall::apply::sabotaged() {
                    // Test-only mutation (feature `sabotage`): see firewall::apply.
                    plan.pop();
                }
                journal::run_undo(self.runner(), plan).map_err(DriverError::from_run)?;
                // Nothing of the network stays on disk either: a status
                // file whose write failed late (the rename done, the
                // directory's fsync failed) and dnsmasq's files.
                let _ = self.statuses.remove(name);
                self.remove_dnsmasq_start_files(name);
                // A failed journal write is the cause of whatever failed
                // after it (no command ran after it).
                let e = match journal.write_failure() {
                    Some(why) => journal_write_failed(&jpath, &why),
                    None => e,
                };
                journal.remove().map_err(|er| DriverError::io(&jpath, er))?;
                // libvirt's shutdown of a failed start ends with the
                // `stopped` hook (its result ignored).
                let _ = self.run_hook(&def, HookOp::Stopped);
                Err(e)
            }
        }
    }

    /// Runs the network hook for `def` (see [`hooks`]); `Ok` when there is
    /// no hook.
    pub(crate) fn run_hook(&self, def: &NetworkDef, op: HookOp) -> Result<(), DriverError> {
        hooks::run_hook(self.runner(), self.cfg.hooks_dir.as_deref(), def, op)
    }

    /// Stops an active network: the mode's shutdown (saved removal plan
    /// replayed with its own backend), then the status file is removed (last,
    /// so that a crash in between leaves a status that a restart cleans up).
    pub fn destroy(&self, name: &str) -> Result<(), DriverError> {
        let _owner = self.change()?;
        self.destroy_owned(name)
    }

    /// [`Driver::destroy`] under the driver lock.
    fn destroy_owned(&self, name: &str) -> Result<(), DriverError> {
        let st = {
            let nets = lock(&self.nets);
            let o = nets
                .get(name)
                .ok_or_else(|| DriverError::NoNetwork(name.to_string()))?;
            o.live
                .clone()
                .ok_or_else(|| DriverError::NotActive(name.to_string()))?
        };
        self.shutdown(&st)?;
        // Now that it is stopped: the `stopped` hook (result ignored).
        let _ = self.run_hook(&st.def, HookOp::Stopped);
        let mut nets = lock(&self.nets);
        if let Some(o) = nets.get_mut(name) {
            o.live = None;
            if o.config.is_none() {
                // A transient network ends here: nothing of it stays
                // (libvirt networkRemoveInactive: dnsmasq's configuration,
                // hosts and leases files, the leases helper's BRIDGE.status).
                nets.remove(name);
                self.remove_dnsmasq_files(name, st.def.bridge_name());
            }
        }
        Ok(())
    }

    fn shutdown(&self, st: &NetworkStatus) -> Result<(), DriverError> {
        let ops = ops_for(st.def.forward_mode());
        (ops.shutdown)(self, self.runner(), st)?;
        self.statuses.remove(&st.def.name)?;
        Ok(())
    }

    // ------------------------------------------------------------------
    // firewall and dnsmasq helpers used by the mode table

    /// networkAddFirewallRules with the configured backend and this driver's
    /// private-chain state. May complete `def` (default NAT port range).
    /// `bridge`: whether the caller has just created the bridge (a start)
    /// or adds to an existing one; only the batched layout uses it (see
    /// [`rules::batched::BridgeState`]), libvirt's layout runs libvirt's
    /// stream either way.
    pub(crate) fn add_firewall(
        &self,
        def: &mut NetworkDef,
        runner: &dyn Runner,
        bridge: BridgeState,
    ) -> Result<Option<Firewall>, DriverError> {
        let mut guard = lock(&self.chains);
        let r = if self.layout == Layout::Batched {
            // The shared part is set up once, under both locks (the first
            // start does it while the others wait).
            let mut setup = lock(&self.batched);
            rules::batched::add_network_firewall(
                def,
                self.backend,
                runner,
                &mut guard,
                &mut setup,
                bridge,
            )
        } else if guard.done() {
            // Set up already: add_network_firewall only reads the state, so
            // a copy is used and parallel starts do not wait for each other.
            let mut chains = guard.clone();
            drop(guard);
            rules::add_network_firewall(def, self.backend, runner, &mut chains)
        } else {
            // The first firewalled start sets the private chains up while
            // holding the state: concurrent starts wait and then find it
            // done, so the setup runs once (as in libvirt, where the driver
            // lock covers it).
            rules::add_network_firewall(def, self.backend, runner, &mut guard)
        };
        let mut fw = r.map_err(DriverError::from_rules)?;
        if let Some(fw) = fw.as_mut() {
            fw.set_name(store::FW_REMOVAL_NAME);
        }
        Ok(fw)
    }

    fn dnsmasq_options(&self) -> DnsmasqOptions {
        DnsmasqOptions::virtnet(
            self.cfg.dnsmasq_dir.to_string_lossy().to_string(),
            Some(self.cfg.state_dir.to_string_lossy().to_string()),
        )
    }

    fn dnsmasq_caps(&self, runner: &dyn Runner) -> Result<DnsmasqCaps, DriverError> {
        if let Some(c) = lock(&self.dnsmasq_caps).clone() {
            return Ok(c);
        }
        let binary = match &self.cfg.dnsmasq_binary {
            Some(b) => b.clone(),
            None => std::env::var_os("PATH")
                .and_then(|p| dnsmasq::caps::find_binary(&p))
                .map(|p| p.to_string_lossy().to_string())
                .unwrap_or_else(|| "dnsmasq".to_string()),
        };
        let caps = DnsmasqCaps::probe(runner, &binary)?;
        *lock(&self.dnsmasq_caps) = Some(caps.clone());
        Ok(caps)
    }

    /// Writes the dnsmasq files and starts dnsmasq; notes its pid.
    pub(crate) fn start_dnsmasq(
        &self,
        def: &NetworkDef,
        runner: &dyn Runner,
        note: &dyn Fn(&str, &str, &str) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        let files = dnsmasq::conf_contents(def, &self.dnsmasq_options())?;
        // The hosts files are re-read by dnsmasq after it dropped its
        // privileges (SIGHUP): readable by everyone, as libvirt writes them.
        let list: Vec<(&Path, &[u8], u32)> = files
            .files()
            .iter()
            .map(|(p, t)| {
                let mode = if *p == files.paths.conf {
                    store::PRIVATE_FILE_MODE
                } else {
                    store::SHARED_FILE_MODE
                };
                (Path::new(*p), t.as_bytes(), mode)
            })
            .collect();
        for (p, _, _) in &list {
            self.cfg
                .write_gate
                .check(p)
                .map_err(|e| DriverError::io(p, e))?;
        }
        store::atomic_write_all_modes(&list).map_err(|(p, e)| DriverError::io(&p, e))?;
        let caps = self.dnsmasq_caps(runner)?;
        let cmd = dnsmasq::command_line(def, &caps, &files.paths.conf, &self.cfg.leases_helper)?;
        if let Some(pf) = &files.paths.pid_file {
            let _ = store::remove_if_exists(Path::new(pf));
            // Where recovery finds the pid if the daemon dies while
            // dnsmasq starts (a pid file there was written by this one).
            note("dnsmasq-pidfile", &files.paths.conf, pf)?;
        }
        // The leases helper learns where the leases files are from its
        // environment (libvirt's has the directory compiled in).
        let dnsmasq_dir = self.cfg.dnsmasq_dir.to_string_lossy().into_owned();
        runner.run_checked(&cmd.to_cmd().with_env(dnsmasq::leases::DIR_ENV, dnsmasq_dir))?;
        // dnsmasq daemonises and writes its pid file.
        let pid = files
            .paths
            .pid_file
            .as_ref()
            .and_then(|pf| fs::read_to_string(pf).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()));
        match pid {
            Some(pid) => note("dnsmasq-pid", &files.paths.conf, &pid),
            None => Err(DriverError::Invalid(format!(
                "dnsmasq for network '{}' did not write its pid file",
                def.name
            ))),
        }
    }

    /// SIGTERM to the network's dnsmasq (pid file), then remove the pid file.
    ///
    /// The pid file is first renamed to `NAME.pid.stopping` (see
    /// [`stopping_path`]). The marker outlives this call: the shutdown
    /// removes it ([`Driver::end_dnsmasq_stop`]) only once the bridge is
    /// deleted, i.e. once a reconcile can no longer find the network
    /// active. A crash anywhere in between leaves a marker saying that
    /// this dnsmasq is (being) stopped, so a [`Driver::reconcile`] that
    /// finds the network still active does not mistake the exiting process
    /// for a live one, nor start a second dnsmasq that the exiting one
    /// keeps from binding its addresses: it waits for it and starts
    /// dnsmasq again (see [`Driver::refresh_dnsmasq`]), and a later
    /// shutdown signals it again. A marker left by an earlier interrupted
    /// stop is handled the same way. (The SIGTERM is kill(2) on the real
    /// host, so no tool runs between it and the next step: the window the
    /// marker covers ends at the bridge's deletion, not at the signal.)
    pub(crate) fn stop_dnsmasq(
        &self,
        def: &NetworkDef,
        runner: &dyn Runner,
    ) -> Result<(), DriverError> {
        let paths = self.dnsmasq_options().paths(def);
        let Some(pf) = paths.pid_file else {
            return Ok(());
        };
        let stopping = stopping_path(&pf);
        if let Some(old) = read_pid(&stopping) {
            if Path::new(&pf).exists() {
                // An earlier stop was interrupted and dnsmasq started again.
                signal_ignore(runner, &old, Signal::Term)?;
                let _ = store::remove_if_exists(&stopping);
            }
        }
        if Path::new(&pf).exists() {
            if let Err(e) = fs::rename(&pf, &stopping) {
                tracing::warn!("cannot rename {pf} to {}: {e}", stopping.display());
            }
        }
        let pid = read_pid(&stopping).or_else(|| read_pid(Path::new(&pf)));
        if let Some(pid) = pid {
            signal_ignore(runner, &pid, Signal::Term)?;
        }
        let _ = store::remove_if_exists(Path::new(&pf));
        Ok(())
    }

    /// The end of a shutdown that stopped dnsmasq ([`Driver::stop_dnsmasq`]):
    /// the network's bridge is gone, so its stop marker goes too.
    pub(crate) fn end_dnsmasq_stop(&self, def: &NetworkDef) {
        if let Some(pf) = self.dnsmasq_options().paths(def).pid_file {
            let stopping = stopping_path(&pf);
            if let Err(e) = store::remove_if_exists(&stopping) {
                tracing::warn!("cannot remove {}: {e}", stopping.display());
            }
        }
    }

    /// A dnsmasq an interrupted stop signalled ([`Driver::stop_dnsmasq`]'s
    /// marker): SIGTERM again (the stop may have died before sending it),
    /// wait for it to exit, at most [`DNSMASQ_EXIT_WAIT`] (`kill -0` every
    /// 50 ms), else SIGKILL it (libvirt's follow-up) and wait once more;
    /// then the marker is removed. `Ok(false)` when there was no marker.
    fn finish_interrupted_stop(
        &self,
        def: &NetworkDef,
        runner: &dyn Runner,
    ) -> Result<bool, DriverError> {
        let paths = self.dnsmasq_options().paths(def);
        let Some(pf) = paths.pid_file else {
            return Ok(false);
        };
        let stopping = stopping_path(&pf);
        if !stopping.exists() {
            return Ok(false);
        }
        if let Some(pid) = read_pid(&stopping) {
            let alive = |runner: &dyn Runner| process_alive(runner, &pid);
            signal_ignore(runner, &pid, Signal::Term)?;
            for signal in [None, Some(Signal::Kill)] {
                if let Some(sig) = signal {
                    tracing::warn!(
                        "dnsmasq pid {pid} of network '{}' did not exit within {} s of SIGTERM: SIGKILL",
                        def.name,
                        DNSMASQ_EXIT_WAIT.as_secs()
                    );
                    signal_ignore(runner, &pid, sig)?;
                }
                let deadline = std::time::Instant::now() + DNSMASQ_EXIT_WAIT;
                while alive(runner)? && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !alive(runner)? {
                    break;
                }
            }
        }
        store::remove_if_exists(&stopping).map_err(|e| DriverError::io(&stopping, e))?;
        Ok(true)
    }

    /// libvirt networkRefreshDhcpDaemon for an active network: a live
    /// dnsmasq gets its hosts files rewritten (only those whose content
    /// changed) and SIGHUP; a dead one is started again.
    fn refresh_dnsmasq(&self, def: &NetworkDef) -> Result<(), DriverError> {
        if !dnsmasq::needs_dnsmasq(def) {
            return Ok(());
        }
        let runner = self.runner();
        if self.finish_interrupted_stop(def, runner)? {
            // A stop of this dnsmasq was interrupted (a destroy killed
            // after its SIGTERM): the process is gone now (it may have been
            // still exiting); the network gets a new one.
            let _ = self
                .dnsmasq_options()
                .paths(def)
                .pid_file
                .map(|pf| store::remove_if_exists(Path::new(&pf)));
            return self.start_dnsmasq(def, runner, &|_, _, _| Ok(()));
        }
        let paths = self.dnsmasq_options().paths(def);
        let pid = paths
            .pid_file
            .as_deref()
            .and_then(|pf| read_pid(Path::new(pf)));
        let alive = match &pid {
            Some(pid) => process_alive(runner, pid)?,
            None => false,
        };
        match (alive, pid) {
            (true, Some(pid)) => {
                let files = dnsmasq::refresh_contents(def)?;
                for (path, text) in [
                    (&paths.hostsfile, &files.hostsfile),
                    (&paths.addnhosts, &files.addnhosts),
                ] {
                    let p = Path::new(path);
                    // Already what it should be (a restart of the daemon
                    // finds every file as its start wrote it): no write,
                    // no fsync. Missing, unreadable or different: written
                    // atomically.
                    if fs::read(p).is_ok_and(|old| old == text.as_bytes()) {
                        continue;
                    }
                    self.cfg
                        .write_gate
                        .check(p)
                        .and_then(|()| {
                            store::atomic_write_mode(p, text.as_bytes(), store::SHARED_FILE_MODE)
                        })
                        .map_err(|e| DriverError::io(p, e))?;
                }
                runner.signal_checked(&pid, Signal::Hup)?;
                Ok(())
            }
            _ => self.start_dnsmasq(def, runner, &|_, _, _| Ok(())),
        }
    }

    /// Removes what a start writes for dnsmasq (configuration, hosts
    /// files, pid file) after the start failed or was undone; the leases
    /// file stays (it outlives a run, as in libvirt).
    fn remove_dnsmasq_start_files(&self, name: &str) {
        let opts = self.dnsmasq_options();
        let paths =
            dnsmasq::DnsmasqPaths::new(&opts.dnsmasq_dir, opts.pid_dir.as_deref(), name, None);
        for p in [&paths.conf, &paths.hostsfile, &paths.addnhosts]
            .into_iter()
            .chain(paths.pid_file.as_ref())
        {
            let _ = store::remove_if_exists(Path::new(p));
        }
    }

    /// Removes a network's dnsmasq files and, given its bridge, the leases
    /// helper's file (libvirt networkCleanupInactive).
    fn remove_dnsmasq_files(&self, name: &str, bridge: Option<&str>) {
        let opts = self.dnsmasq_options();
        let paths =
            dnsmasq::DnsmasqPaths::new(&opts.dnsmasq_dir, opts.pid_dir.as_deref(), name, None);
        for p in [
            &paths.conf,
            &paths.hostsfile,
            &paths.addnhosts,
            &paths.leases,
        ] {
            let _ = store::remove_if_exists(Path::new(p));
        }
        if let Some(b) = bridge {
            let _ = store::remove_if_exists(&dnsmasq::leases::file_path(&self.cfg.dnsmasq_dir, b));
        }
    }

    // ------------------------------------------------------------------
    // daemon start

    /// What the daemon does when it starts (libvirt networkStateInitialize
    /// + networkReloadFirewallRules + autostart):
    /// 1. every active bridge-based network whose bridge is gone is cleaned
    ///    up (its rules removed with the saved plan) and marked inactive;
    /// 2. private chains are set up if any active isolated/nat/route network
    ///    exists; then every active none/nat/route/open network has its rules
    ///    removed (saved plan with its own backend, or the legacy iptables
    ///    removal) and added again with the configured backend, and its
    ///    status saved with the new plan;
    /// 3. autostart networks that are not active are started, once per boot
    ///    (marker file `STATE_DIR/autostarted`, as libvirt).
    ///
    /// The batched layout (beyond libvirt, whose streams the default layout
    /// keeps byte-exact) answers "is it intact?" from one listing instead of
    /// per-network processes: the bridges from one `ip -o link show`, and
    /// each active network whose saved plan is the batched layout's with
    /// the configured backend is compared with its definition ([`check`]).
    /// With nftables: its chains rule by rule, its map elements (the
    /// tables listed once per family; the shared part too, set up again
    /// if it drifted). With iptables: its own `VIRTNET_*` chains rule by
    /// rule, its jumps from libvirt's chains and its checksum rule, from
    /// one `iptables-save` (and one `ip6tables-save` only if a network has
    /// IPv6 rules); libvirt's private chains are set up as for libvirt's
    /// layout. An intact network is kept as it is (listed in `reloaded`
    /// and `intact`; no journal, no status write); only a drifted one, or
    /// one whose plan is another layout's or backend's (a switch), is
    /// removed with its saved plan and added again. The tc checksum filter
    /// is not compared (as in [`Driver::check`]), but its root qdisc is
    /// (one `tc qdisc show`): a network whose root qdisc is gone, or whose
    /// QoS had to be put back, is added again. dnsmasq is refreshed for
    /// every network, as libvirt does.
    ///
    /// A failure of one network is reported and the others are handled.
    pub fn reconcile(&self) -> Result<ReconcileReport, DriverError> {
        let _owner = self.change()?;
        let mut rep = ReconcileReport::default();
        let active: Vec<NetworkStatus> = lock(&self.nets)
            .values()
            .filter_map(|o| o.live.clone())
            .collect();
        let mut still_active = Vec::new();
        // Batched layout: the links, listed once (None: not listed yet;
        // Some(None): the listing failed, one `ip link show` per bridge).
        let mut links: Option<Option<Vec<String>>> = None;
        // Networks whose QoS had to be put back (their firewall's tc
        // filter is gone too: never kept as intact).
        let mut qos_redone: Vec<String> = Vec::new();
        for st in active {
            let ops = ops_for(st.def.forward_mode());
            let br = st.def.bridge_name().unwrap_or("").to_string();
            let check_bridge =
                ops.reload_firewall || (ops.kind == modes::ModeKind::Bridge && !br.is_empty());
            if check_bridge {
                let listed = if self.layout == Layout::Batched && !br.is_empty() {
                    if links.is_none() {
                        links = Some(self.list_links()?);
                    }
                    links
                        .as_ref()
                        .and_then(Option::as_ref)
                        .map(|l| l.contains(&br))
                } else {
                    None
                };
                let exists = match listed {
                    Some(found) => found,
                    None => {
                        !br.is_empty()
                            && self
                                .runner()
                                .run(&Cmd::new(["ip", "link", "show", "dev", br.as_str()]))
                                .map_err(DriverError::from_run)?
                                .success()
                    }
                };
                if !exists {
                    let name = st.def.name.clone();
                    match self.destroy_owned(&name) {
                        Ok(()) => rep.cleaned.push(name),
                        Err(e) if e.is_crash() => return Err(e),
                        Err(e) => rep.problems.push(format!("{name}: {e}")),
                    }
                    continue;
                }
                // The QoS of the network, put back if it is gone.
                match bandwidth::refresh(self.runner(), &br, st.def.bandwidth.as_ref()) {
                    // The QoS was put back: the root qdisc had gone, and
                    // with it the tc checksum filter hanging off it.
                    Ok(true) => qos_redone.push(st.def.name.clone()),
                    Ok(false) => {}
                    Err(e) if e.is_crash() => return Err(e),
                    Err(e) => rep.problems.push(format!("{}: {e}", st.def.name)),
                }
            }
            if ops.reload_firewall {
                still_active.push(st);
            }
        }
        if self.uses_libvirt_chains()
            && still_active
                .iter()
                .any(|st| rules::has_firewall_rules(&st.def))
        {
            let mut chains = lock(&self.chains).clone();
            let r = chains.setup(self.backend, self.runner(), false);
            *lock(&self.chains) = chains;
            r.map_err(DriverError::from_rules)?;
        }
        // Batched layout: which networks are intact, from one listing of
        // its nft table, or one iptables-save, per family.
        let verify_nft = |st: &NetworkStatus| {
            self.batched_nft()
                && st
                    .fw_removal
                    .as_ref()
                    .is_some_and(rules::batched::is_batched_nft_plan)
        };
        let verify = |st: &NetworkStatus| {
            verify_nft(st)
                || (self.layout == Layout::Batched
                    && self.backend == Backend::Iptables
                    && st
                        .fw_removal
                        .as_ref()
                        .is_some_and(rules::batched::is_batched_ipt_plan))
        };
        let mut listings = check::Listings::new();
        // The bridges whose root qdisc (`htb 1:`, where the plan's tc
        // checksum filter hangs) is there, from one `tc qdisc show`.
        let with_tc = |st: &NetworkStatus| {
            st.fw_removal
                .as_ref()
                .is_some_and(|p| p.action_cmds().any(|c| c.layer() == Layer::Tc))
        };
        let root_qdiscs: Option<Vec<String>> =
            if still_active.iter().any(|st| verify(st) && with_tc(st)) {
                self.list_root_htb()?
            } else {
                None
            };
        if still_active.iter().any(verify_nft) {
            let shared = check::batched_shared_drift(self.runner(), &mut listings)
                .map_err(DriverError::from_run)?;
            if shared.is_empty() {
                // Found as a setup leaves it: nothing to set up at the
                // next add.
                *lock(&self.batched) = BatchedSetup::already_done();
            } else {
                self.setup_batched_nft(true)?;
            }
        }
        for st in still_active {
            let name = st.def.name.clone();
            let qdisc_there = || {
                !with_tc(&st)
                    || st.def.bridge_name().is_some_and(|br| {
                        root_qdiscs
                            .as_ref()
                            .is_some_and(|l| l.iter().any(|d| d == br))
                    })
            };
            let intact = verify(&st)
                && !qos_redone.contains(&name)
                && qdisc_there()
                && check::inspect(&st, self.runner(), &mut listings)
                    .map_err(DriverError::from_run)?
                    .check
                    .drift
                    .is_empty();
            if intact {
                rep.reloaded.push(name.clone());
                rep.intact.push(name.clone());
            } else {
                match self.reload_network(st) {
                    Ok(()) => rep.reloaded.push(name.clone()),
                    Err(e) if e.is_crash() => return Err(e),
                    Err(e) => rep.problems.push(format!("{name}: {e}")),
                }
            }
            // networkRefreshDaemons: restart a dnsmasq that is gone, else
            // rewrite its hosts files and SIGHUP it.
            if let Some(st) = self.status(&name) {
                match self.refresh_dnsmasq(&st.def) {
                    Ok(()) => {}
                    Err(e) if e.is_crash() => return Err(e),
                    Err(e) => rep.problems.push(format!("{name}: {e}")),
                }
            }
        }
        let marker = self.cfg.state_dir.join("autostarted");
        if !marker.exists() {
            let _ = store::create_dir_all_mode(&self.cfg.state_dir, store::STATE_DIR_MODE);
            fs::write(&marker, b"").map_err(|e| DriverError::io(&marker, e))?;
            let names: Vec<String> = lock(&self.nets)
                .iter()
                .filter(|(_, o)| o.autostart && o.live.is_none() && o.config.is_some())
                .map(|(n, _)| n.clone())
                .collect();
            for name in names {
                match self.start_owned(&name) {
                    Ok(()) => rep.autostarted.push(name),
                    Err(e) if e.is_crash() => return Err(e),
                    Err(e) => rep.problems.push(format!("{name}: {e}")),
                }
            }
        }
        Ok(rep)
    }

    /// libvirt's reload (`networkStateReload`, SIGHUP to the daemon): the
    /// persistent definitions are read again from the config directory
    /// (new and changed ones are taken; the others stay), the private
    /// chains are set up if no setup was done yet and a network with rules
    /// is active (not forced, as libvirt), every active network with
    /// firewall handling (none, nat, route, open) has its rules removed
    /// with its saved plan and added again with the configured backend
    /// (status saved with the new plan; an add that fails is reported and
    /// leaves the network without a plan, as in libvirt), its dnsmasq is
    /// sent SIGHUP with rewritten hosts files (or started again if gone),
    /// and every autostart network that is not active is started (libvirt
    /// does this at every reload, without the once-per-boot marker).
    ///
    /// A failure of one network is reported and the others are handled.
    pub fn reload(&self) -> Result<ReconcileReport, DriverError> {
        self.reload_locked(|_| ())
    }

    /// [`Driver::reload`] with `guard(name)` held while each network is
    /// handled (the daemon's per-network lock).
    pub fn reload_locked<G>(
        &self,
        guard: impl Fn(&str) -> G,
    ) -> Result<ReconcileReport, DriverError> {
        let _owner = self.change()?;
        let mut rep = ReconcileReport::default();
        // virNetworkObjLoadAllConfigs: take the definitions on disk.
        for (path, r) in self.configs.load_all() {
            match r {
                Ok(def) => {
                    let autostart = self.configs.is_autostart(&def.name);
                    let mut nets = lock(&self.nets);
                    let o = nets.entry(def.name.clone()).or_default();
                    o.config = Some(def);
                    o.autostart = autostart;
                }
                Err(e) => rep
                    .problems
                    .push(format!("skipping config {}: {e}", path.display())),
            }
        }
        let active: Vec<NetworkStatus> = lock(&self.nets)
            .values()
            .filter_map(|o| o.live.clone())
            .filter(|st| ops_for(st.def.forward_mode()).reload_firewall)
            .collect();
        let any_rules = active.iter().any(|st| rules::has_firewall_rules(&st.def));
        if self.uses_libvirt_chains() {
            let mut chains = lock(&self.chains).clone();
            let r = rules::pre_reload_private_chains(
                &mut chains,
                self.backend,
                self.runner(),
                false,
                any_rules,
            );
            *lock(&self.chains) = chains;
            r.map_err(DriverError::from_rules)?;
        }
        for st in active {
            let name = st.def.name.clone();
            let _g = guard(&name);
            // Still the same active network (not destroyed meanwhile)?
            let Some(st) = self.status(&name) else {
                continue;
            };
            match self.reload_network(st) {
                Ok(()) => rep.reloaded.push(name.clone()),
                Err(e) if e.is_crash() => return Err(e),
                Err(e) => rep.problems.push(format!("{name}: {e}")),
            }
            if let Some(st) = self.status(&name) {
                match self.refresh_dnsmasq(&st.def) {
                    Ok(()) => {}
                    Err(e) if e.is_crash() => return Err(e),
                    Err(e) => rep.problems.push(format!("{name}: {e}")),
                }
            }
        }
        let names: Vec<String> = lock(&self.nets)
            .iter()
            .filter(|(_, o)| o.autostart && o.live.is_none() && o.config.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let _g = guard(&name);
            match self.start_owned(&name) {
                Ok(()) => rep.autostarted.push(name),
                Err(DriverError::AlreadyActive(_)) | Err(DriverError::NoNetwork(_)) => {}
                Err(e) if e.is_crash() => return Err(e),
                Err(e) => rep.problems.push(format!("{name}: {e}")),
            }
        }
        Ok(rep)
    }

    /// The active networks a check looks at: all with firewall rules, or
    /// the one named (which must exist and be active).
    fn check_targets(&self, name: Option<&str>) -> Result<Vec<NetworkStatus>, DriverError> {
        let nets = lock(&self.nets);
        match name {
            Some(n) => {
                let o = nets
                    .get(n)
                    .ok_or_else(|| DriverError::NoNetwork(n.to_string()))?;
                let st = o
                    .live
                    .clone()
                    .ok_or_else(|| DriverError::NotActive(n.to_string()))?;
                Ok(if rules::has_firewall_rules(&st.def) {
                    vec![st]
                } else {
                    Vec::new()
                })
            }
            None => Ok(nets
                .values()
                .filter_map(|o| o.live.clone())
                .filter(|st| rules::has_firewall_rules(&st.def))
                .collect()),
        }
    }

    /// Compares the host with what the status of each active network with
    /// firewall rules (or of `name`) says should be there: its rules and
    /// the private chains (see [`check`]). Read-only: only queries run.
    pub fn check(&self, name: Option<&str>) -> Result<CheckReport, DriverError> {
        Ok(self.inspect(name)?.0)
    }

    fn inspect(&self, name: Option<&str>) -> Result<(CheckReport, Vec<Inspected>), DriverError> {
        let targets = self.check_targets(name)?;
        let mut rep = CheckReport::default();
        let mut removals = Vec::new();
        let mut backends: Vec<Backend> = Vec::new();
        let mut listings = check::Listings::new();
        let mut batched_nft = false;
        for st in targets {
            let insp =
                check::inspect(&st, self.runner(), &mut listings).map_err(DriverError::from_run)?;
            let plan_batched = st
                .fw_removal
                .as_ref()
                .is_some_and(rules::batched::is_batched_nft_plan);
            let b = insp.check.backend.unwrap_or(self.backend);
            if plan_batched || (insp.check.backend.is_none() && self.batched_nft()) {
                // Its shared part (own table, base chains, maps) instead
                // of libvirt's private chains.
                batched_nft = true;
            } else if !backends.contains(&b) && b != Backend::None {
                backends.push(b);
            }
            rep.networks.push(insp.check);
            removals.push((st, insp.intact_removal));
        }
        for b in backends {
            rep.private_chains.extend(
                check::private_chain_drift(b, self.runner()).map_err(DriverError::from_run)?,
            );
        }
        if batched_nft {
            rep.private_chains.extend(
                check::batched_shared_drift(self.runner(), &mut listings)
                    .map_err(DriverError::from_run)?,
            );
        }
        Ok((rep, removals))
    }

    /// [`Driver::check`], then, if something drifted, the repair: the
    /// private chains set up again (forced, configured backend), and each
    /// drifting network's rules removed with its saved plan restricted to
    /// the rules found intact and added afresh (journaled, status saved).
    /// Returns the check before and the check after.
    pub fn repair(&self, name: Option<&str>) -> Result<(CheckReport, CheckReport), DriverError> {
        self.repair_locked(name, |_| ())
    }

    /// [`Driver::repair`] with `guard(name)` held while each network is
    /// repaired.
    pub fn repair_locked<G>(
        &self,
        name: Option<&str>,
        guard: impl Fn(&str) -> G,
    ) -> Result<(CheckReport, CheckReport), DriverError> {
        let _owner = self.change()?;
        let (before, removals) = self.inspect(name)?;
        if !before.drifted() {
            return Ok((before.clone(), before));
        }
        if self.uses_libvirt_chains() {
            let mut chains = lock(&self.chains).clone();
            let r = chains.setup(self.backend, self.runner(), true);
            *lock(&self.chains) = chains;
            r.map_err(DriverError::from_rules)?;
        } else {
            // The batched layout's shared nft part, set up again (forced).
            self.setup_batched_nft(true)?;
        }
        for ((st, removal), nc) in removals.into_iter().zip(&before.networks) {
            if nc.drift.is_empty() {
                continue;
            }
            let n = st.def.name.clone();
            let _g = guard(&n);
            // Only if it is still the network that was inspected.
            if self.status(&n).map(|s| s.fw_removal) != Some(st.fw_removal.clone()) {
                continue;
            }
            self.reload_network_using(st, removal)?;
        }
        let after = self.check(name)?;
        Ok((before, after))
    }

    /// Remove with the saved plan, add with the configured backend, save.
    /// Journaled like a start, so a crash leaks no new rule.
    fn reload_network(&self, st: NetworkStatus) -> Result<(), DriverError> {
        self.reload_network_using(st, None)
    }

    /// [`Driver::reload_network`] removing with `removal` instead of the
    /// saved plan when given (its errors ignored).
    fn reload_network_using(
        &self,
        mut st: NetworkStatus,
        removal: Option<Firewall>,
    ) -> Result<(), DriverError> {
        let name = st.def.name.clone();
        let jpath = self.journal_path(&name);
        let journal = self.open_journal(&jpath)?;
        let journaled = JournalRunner::new(self.runner(), &journal);
        match removal {
            None => rules::remove_network_firewall(&st.def, st.fw_removal.as_ref(), &journaled)
                .map_err(DriverError::from_rules)?,
            Some(mut plan) => {
                if let Err(e) = plan.apply(&journaled) {
                    if e.is_crash() {
                        return Err(DriverError::from_rules(e.into()));
                    }
                }
            }
        }
        let mut def = st.def.clone();
        let added = self.add_firewall(&mut def, &journaled, BridgeState::Existing);
        let err = match (added, journal.write_failure()) {
            (Err(e), _) if e.is_crash() => return Err(e),
            (Ok(fw), None) => {
                st.def = def;
                st.fw_removal = fw;
                None
            }
            (_, Some(why)) => {
                // No command ran after the entry that could not be
                // written: what the add created is undone from memory.
                journal::run_undo(self.runner(), journal.take_undo_plan())
                    .map_err(DriverError::from_run)?;
                st.fw_removal = None;
                Some(journal_write_failed(&jpath, &why))
            }
            (Err(e), None) => {
                // libvirt ignores the error and stores no plan.
                st.fw_removal = None;
                Some(e)
            }
        };
        self.statuses.save(&st)?;
        journal.remove().map_err(|e| DriverError::io(&jpath, e))?;
        lock(&self.nets).entry(name).or_default().live = Some(st);
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Names of journals currently present (for tests and diagnostics): an
    /// empty journal file is no journal ([`Journal::is_pending`]).
    pub fn pending_journals(&self) -> Vec<String> {
        fs::read_dir(&self.cfg.state_dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let p = e.path();
                        (p.extension()? == "journal" && Journal::is_pending(&p))
                            .then(|| p.file_stem()?.to_str().map(str::to_string))?
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// How long a reconcile waits for a dnsmasq an interrupted stop signalled
/// to exit before it SIGKILLs it (and then once more for the SIGKILL).
pub const DNSMASQ_EXIT_WAIT: Duration = Duration::from_secs(5);

/// The marker of a dnsmasq stop in progress: the pid file, renamed
/// (`NAME.pid.stopping`), see `Driver::stop_dnsmasq`.
pub fn stopping_path(pid_file: &str) -> PathBuf {
    PathBuf::from(format!("{pid_file}.stopping"))
}

/// Is process `pid` alive: `kill -0 PID` succeeds and the process is not
/// a zombie ([`Runner::is_zombie`]). An exited dnsmasq stays a zombie
/// until the process it was reparented to reaps it (it daemonised: its
/// parent is an init, which in a container or a PID namespace may be a
/// program that never reaps), and `kill -0` succeeds on a zombie: without
/// the second check a reconcile would wait the whole
/// [`DNSMASQ_EXIT_WAIT`] twice for a dnsmasq that is long gone, and a
/// refresh would SIGHUP it instead of starting a new one. (libvirt's
/// `virPidFileReadIfAlive` has the same blind spot; libvirtd runs under an
/// init that reaps.)
pub(crate) fn process_alive(runner: &dyn Runner, pid: &str) -> Result<bool, DriverError> {
    let signalled = runner
        .signal(pid, Signal::Probe)
        .map_err(DriverError::from_run)?
        .success();
    Ok(signalled && !runner.is_zombie(pid))
}

/// Sends `sig` to `pid` ([`Runner::signal`]) whose failure is ignored, as
/// [`modes::run_ignore`] ignores the `kill` command's (the process may be
/// gone already: no word about that); only a crash is returned. A failure
/// for another reason than "No such process" (EPERM: a pid file naming a
/// process that is not ours) is logged.
fn signal_ignore(runner: &dyn Runner, pid: &str, sig: Signal) -> Result<(), DriverError> {
    match runner.signal(pid, sig) {
        Err(e @ RunError::Crashed { .. }) => Err(DriverError::from_run(e)),
        Ok(out) if !out.success() && !out.stderr.contains("No such process") => {
            tracing::warn!(
                "'{}' failed: {}",
                sig.kill_cmd(pid).argv.join(" "),
                out.stderr.trim_end()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The pid a pid file names (digits only), if it can be read.
fn read_pid(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
}

/// The writer of a journal (its `owner` note: pid and start time), if
/// it names one (journals of earlier releases do not).
fn journal_writer(entries: &[Entry]) -> Option<(String, String)> {
    entries.iter().find_map(|e| match e {
        Entry::Note { note, key, value } if note == "owner" => Some((key.clone(), value.clone())),
        _ => None,
    })
}

/// A journal entry type re-exported for tests.
pub type JournalEntry = Entry;
