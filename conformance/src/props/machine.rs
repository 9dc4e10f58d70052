//! The driver as a state machine on the fake host: operations
//! ([`Op`]: define, undefine, start with an optional fault, destroy,
//! driver restart with or without a backend switch, upgrade from a release
//! that saved no removal plan, crash before any command of a start,
//! destroy or restart, or after its effect — the daemon dies while the
//! command runs, the command completes —, state-directory writes that fail
//! with ENOSPC/EIO/EROFS during a start or a restart ([`Op::WriteFails`],
//! through the driver's `write_gate`), and a second driver on the same
//! state directory running while the first, which holds the driver lock, is
//! paused mid-operation ([`Op::Concurrent`])) and the invariants that must
//! hold after each of them ([`Machine::check`]) — together: every object
//! on the host is foreign, kept on purpose ([`crate::kept`]) or accounted
//! for by a status file:
//!
//! 1. each active network's own objects (rules, bridge, routes, tc
//!    filters, per-device sysctls) are on the host exactly once — the host's
//!    objects of ours, as a multiset, are the sum of what a fresh start of
//!    each active network alone gives (with the backend of its saved plan);
//! 2. no object of ours belongs to an inactive network (same multiset; and
//!    one dnsmasq per active network that needs one, none other);
//! 3. the status files match the host: one per active network, equal to
//!    the driver's view; replaying every saved removal plan on a copy of
//!    the host succeeds command by command and leaves no rule of ours;
//! 4. foreign objects (Docker, firewalld, the admin's) are untouched.
//!
//! A start that fails (or succeeds although a command was failed, which
//! happens for commands libvirt ignores) is checked on the spot: after it
//! (and, if it succeeded, a destroy) the host equals the host before it
//! apart from what libvirt keeps on purpose ([`super::view::kept_on_purpose`]).
//!
//! What the invariants deliberately leave out:
//!
//! * a bridge's up/down state: a crash during destroy after `ip link set
//!   down` leaves an active network with its bridge down (libvirt's daemon
//!   start only checks that the bridge exists; so does reconcile); such a
//!   bridge has lost its IPv6 addresses and static routes, as in the
//!   kernel, and is compared in that form;
//! * the value of the forwarding sysctls libvirt keeps (a rollback may
//!   write back the default): "nothing kept was lost" compares chains,
//!   tables and jump rules only;
//! * the nftables root qdisc after a switch away from nftables: it stays
//!   until the bridge goes, as in libvirt, and is checked through the
//!   bridge;
//! * a failed private-chain setup: libvirt saves it and reports it at every
//!   later start until the daemon restarts, so such failures are accepted
//!   when the error quotes an injected failure. A fault that lands on a
//!   rollback command is a rejected case.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_core::rules;
use virtnet_core::store::{self, StatusStore};
use virtnet_fake::FakeHost;
use virtnet_runner::Runner;
use virtnet_testkit::{Applied, CmdMatcher, FaultPlan, FaultRunner};

use super::spec::{Mode, NetSpec};
use super::view::{self, Item, Owners};

/// A failure injected into one command of a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFault {
    /// Command number `index` (1-based, counted from the start) fails.
    Nth { index: u16, status: u8 },
    /// The first command of `program` fails.
    Program { program: &'static str, status: u8 },
}

/// Programs a [`StartFault::Program`] may pick.
pub const FAULT_PROGRAMS: [&str; 7] = [
    "ip",
    "iptables",
    "ip6tables",
    "nft",
    "tc",
    "sysctl",
    "dnsmasq",
];

impl StartFault {
    pub fn plan(&self) -> FaultPlan {
        match self {
            StartFault::Nth { index, status } => FaultPlan::none().fail_nth(
                u64::from(*index),
                i32::from((*status).max(1)),
                format!("{INJECTED}\n"),
            ),
            StartFault::Program { program, status } => FaultPlan::none().fail_matching(
                CmdMatcher::program(*program),
                i32::from((*status).max(1)),
                format!("{INJECTED}\n"),
                Some(1),
            ),
        }
    }
}

/// Where a crash happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashIn {
    Start(usize),
    Destroy(usize),
    Restart { switch_backend: bool },
}

/// One step of the machine. Network numbers index the machine's specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Define(usize),
    Undefine(usize),
    Start(usize, Option<StartFault>),
    Destroy(usize),
    /// The daemon restarts (new driver + reconcile), possibly configured
    /// with the other firewall backend.
    Restart {
        switch_backend: bool,
    },
    /// The daemon is replaced by this release after a release that saved no
    /// removal plan (libvirt ≤ 10.2, e.g. 9.0.0): the status files of
    /// networks with iptables rules lose their plan, then the daemon starts.
    Upgrade {
        switch_backend: bool,
    },
    /// The host crashes after `after` commands of the operation; then it
    /// recovers and the daemon restarts.
    Crash {
        during: CrashIn,
        after: u16,
    },
    /// The daemon dies while command `index` of the operation runs: the
    /// command takes effect, its result is never seen; then the daemon
    /// restarts.
    CrashAfterEffect {
        during: CrashIn,
        index: u16,
    },
    /// Writes of the state directory to `target` fail with `errno` after
    /// `after` matching writes succeeded, during the operation `during` (a
    /// start: it fails and leaves the host as it was, or succeeds when it
    /// wrote nothing there; a daemon restart: its reconcile may report the
    /// failure), then the disk is fixed and the daemon restarts.
    WriteFails {
        during: WriteIn,
        target: WriteTarget,
        errno: WriteErrno,
        after: u8,
    },
    /// A second driver on the same state directory (another `virtnet`
    /// process) runs `second` while the first driver, which holds the
    /// driver lock, is paused before command `pause_at` of `first`; the
    /// first goes on once the second waits for the lock (or is done).
    Concurrent {
        first: ConcOp,
        pause_at: u16,
        second: ConcOp,
    },
}

/// The operation a [`Op::WriteFails`] disturbs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteIn {
    Start(usize),
    Restart { switch_backend: bool },
}

/// The files a [`Op::WriteFails`] makes unwritable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTarget {
    Journal,
    Status,
    Dnsmasq,
}

impl WriteTarget {
    /// The glob of [`virtnet_testkit::Fault::WriteFails`].
    pub fn pattern(self) -> &'static str {
        match self {
            WriteTarget::Journal => "*.journal",
            WriteTarget::Status => "*/state/net*.xml",
            WriteTarget::Dnsmasq => "*/dnsmasq/*",
        }
    }
}

/// The errno of a [`Op::WriteFails`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteErrno {
    NoSpace,
    Io,
    ReadOnly,
}

impl WriteErrno {
    pub fn errno(self) -> i32 {
        match self {
            WriteErrno::NoSpace => nix::libc::ENOSPC,
            WriteErrno::Io => nix::libc::EIO,
            WriteErrno::ReadOnly => nix::libc::EROFS,
        }
    }
}

/// What a driver of an [`Op::Concurrent`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcOp {
    Define(usize),
    Start(usize),
    Destroy(usize),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Define(n) => write!(f, "define net{n}"),
            Op::Undefine(n) => write!(f, "undefine net{n}"),
            Op::Start(n, None) => write!(f, "start net{n}"),
            Op::Start(n, Some(fault)) => write!(
                f,
                "start net{n} with {}",
                fault.plan().to_string().trim_end()
            ),
            Op::Destroy(n) => write!(f, "destroy net{n}"),
            Op::Restart { switch_backend } => {
                write!(
                    f,
                    "restart daemon{}",
                    if *switch_backend {
                        " switching backend"
                    } else {
                        ""
                    }
                )
            }
            Op::Upgrade { switch_backend } => write!(
                f,
                "upgrade from a release without removal plans{}",
                if *switch_backend {
                    " switching backend"
                } else {
                    ""
                }
            ),
            Op::Crash { during, after } => write!(
                f,
                "crash after {after} commands of {during:?}, recover, restart"
            ),
            Op::CrashAfterEffect { during, index } => write!(
                f,
                "crash after command #{index} of {during:?} took effect, recover, restart"
            ),
            Op::WriteFails {
                during,
                target,
                errno,
                after,
            } => write!(
                f,
                "writes to {} fail with {} after {after} during {during:?}, then restart",
                target.pattern(),
                std::io::Error::from_raw_os_error(errno.errno())
            ),
            Op::Concurrent {
                first,
                pause_at,
                second,
            } => write!(
                f,
                "{first:?} paused before command #{pause_at} while a second driver runs {second:?}"
            ),
        }
    }
}

/// Foreign software on the host before virtnet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Foreign {
    pub docker_iptables: bool,
    pub docker_nft: bool,
    pub firewalld_nft: bool,
}

/// The machine: a fake host, its directories, the current driver.
pub struct Machine {
    dir: tempfile::TempDir,
    pub host: Arc<FakeHost>,
    /// The door every driver of the machine uses: the host behind the
    /// faults of the current operation.
    faults: Arc<FaultRunner>,
    driver: Option<Driver>,
    pub backend: Backend,
    specs: Vec<NetSpec>,
    foreign: Vec<Item>,
    owners: Owners,
    reference: HashMap<(usize, Backend), Vec<Item>>,
    /// Readable trace: each operation with its result.
    pub trace: Vec<String>,
    /// Errors of faulted starts since the driver opened. libvirt saves a
    /// failure of the private-chain setup and reports it again at every
    /// later start until the daemon restarts; so may virtnet.
    fault_errors: Vec<String>,
    /// A faulted start ran since the driver opened (it may have saved a
    /// private-chain setup error even though the start itself succeeded,
    /// when the failed family was not needed by that network).
    faulted_since_open: bool,
}

/// Prefix of a [`Machine::step`] error that means "not a valid case"
/// rather than "invariant broken": the injected failure hit a command of
/// the rollback itself (after the start had already failed for another
/// reason, e.g. libvirt's saved private-chain setup error). The property is
/// about a failing start command with a working rollback; such cases are
/// rejected (`TestCaseError::reject`).
pub const REJECT: &str = "reject: ";

/// Whether `argv` undoes something (a rollback command): deletions,
/// `down`, `kill`, and the restore of a global forwarding sysctl.
pub fn is_undo(argv: &[String]) -> bool {
    let prog = argv
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or("");
    prog == "kill"
        || argv.iter().any(|a| {
            matches!(a.as_str(), "del" | "delete" | "--delete" | "-D" | "down")
                || a.ends_with("ip_forward=0")
                || a.ends_with("all/forwarding=0")
        })
}

/// Whether a start failed because a private chain (or table) that the
/// private-chain setup creates does not exist.
fn missing_private_chain(err: &str) -> bool {
    (err.contains(" LIBVIRT_") && err.contains("No chain/target/match by that name"))
        || (err.contains("libvirt_network") && err.contains("No such file or directory"))
}

/// The stderr of every injected failure.
pub const INJECTED: &str = "injected failure";

/// The definition with its TFTP root pointing at a directory that exists
/// under `dir` (dnsmasq refuses to start without it, fake and real alike).
fn with_tftp_root(xml: &str, dir: &std::path::Path) -> Result<String, String> {
    let root = dir.join("tftproot");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    Ok(crate::cases::localise_xml(xml, &root))
}

fn config(dir: &std::path::Path, runner: Arc<dyn Runner>, backend: Backend) -> DriverConfig {
    let mut c =
        DriverConfig::new(dir.join("config"), dir.join("state"), runner).with_backend(backend);
    c.dnsmasq_binary = Some("/usr/sbin/dnsmasq".into());
    c
}

/// Objects that must match a fresh start exactly. The root qdisc of an
/// nftables start is left to the bridge's deletion (as libvirt does), so
/// after a backend switch it stays while the bridge lives: it is checked
/// through the bridge, not here. dnsmasq processes are checked by count.
fn exact(i: &Item) -> bool {
    !matches!(i, Item::TcQdisc { .. } | Item::Process { .. })
}

/// The form compared with a fresh start: a bridge's up/down state is
/// left out, because a crash during a destroy, after `ip link set down`,
/// leaves an active network with its bridge down (libvirt's daemon start
/// checks only that the bridge exists, and so does virtnet's reconcile).
fn exact_form(i: &Item) -> Item {
    match i {
        Item::Link { name, text, .. } => Item::Link {
            name: name.clone(),
            up: true,
            text: text.clone(),
        },
        other => other.clone(),
    }
}

/// The item as the kernel leaves it when its link in `down` was taken
/// down: a link without its IPv6 addresses (the kernel keeps IPv4 ones), no
/// route through it.
fn as_if_down(i: Item, down: &[String]) -> Option<Item> {
    match i {
        Item::Route { ref dev, .. } if down.contains(dev) => None,
        Item::Link { name, up, text } if down.contains(&name) => {
            let text = text
                .split(' ')
                .filter(|w| !(w.contains(':') && w.contains('/')))
                .collect::<Vec<_>>()
                .join(" ");
            Some(Item::Link { name, up, text })
        }
        other => Some(other),
    }
}

fn firewall_item(i: &Item) -> bool {
    matches!(
        i,
        Item::NftRule { .. } | Item::XtRule { .. } | Item::TcFilter { .. }
    )
}

/// A runner that stops before its command number `at` until `gate` is
/// opened by the second driver of [`Op::Concurrent`] (when it starts
/// waiting for the driver lock, or when it is done), at most 1 s: a driver
/// that ignores the lock (the `ignore-lock` mutant) may block on the
/// process-wide firewall mutex the paused first driver holds, and it has
/// done its damage (taken the first driver's live journal for abandoned)
/// before. A correct second driver opens the gate at once.
struct PauseAt {
    inner: Arc<FaultRunner>,
    at: u64,
    count: std::sync::atomic::AtomicU64,
    gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Runner for PauseAt {
    fn run(
        &self,
        cmd: &virtnet_runner::Cmd,
    ) -> Result<virtnet_runner::Output, virtnet_runner::RunError> {
        let k = self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if k == self.at {
            let (m, c) = &*self.gate;
            let open = m.lock().unwrap_or_else(|e| e.into_inner());
            let _ = c
                .wait_timeout_while(open, std::time::Duration::from_secs(1), |open| !*open)
                .unwrap_or_else(|e| e.into_inner());
        }
        self.inner.run(cmd)
    }

    fn has_program(&self, name: &str) -> bool {
        self.inner.has_program(name)
    }

    fn is_zombie(&self, pid: &str) -> bool {
        self.inner.is_zombie(pid)
    }
}

impl Machine {
    /// A fresh host with the given foreign software, a driver with
    /// `backend`, and `specs` as the networks the operations refer to.
    pub fn new(specs: Vec<NetSpec>, backend: Backend, foreign: Foreign) -> Result<Machine, String> {
        let dir = crate::props::scratch_dir()?;
        let host = Arc::new(FakeHost::new());
        if foreign.docker_iptables {
            virtnet_fake::seed::seed_docker_iptables(&*host).map_err(|e| e.to_string())?;
        }
        if foreign.docker_nft {
            virtnet_fake::seed::seed_docker_nft(&*host).map_err(|e| e.to_string())?;
        }
        if foreign.firewalld_nft {
            virtnet_fake::seed::seed_firewalld_nft(&*host).map_err(|e| e.to_string())?;
        }
        // The admin's host bridges that `<forward mode='bridge'/>` networks
        // use (libvirt's daemon start marks such a network inactive when
        // its bridge is missing).
        for (i, spec) in specs.iter().enumerate() {
            if spec.mode == Mode::HostBridge {
                let br = format!("br{i}");
                host.exec(&["ip", "link", "add", "name", &br, "type", "bridge"], None)
                    .map_err(|e| e.to_string())?;
            }
        }
        let dnsmasq_dir = dir.path().join("state").join("dnsmasq");
        let owners = Owners {
            bridges: (0..specs.len())
                .filter(|&i| specs[i].creates_bridge())
                .map(|i| NetSpec::bridge(i as u8))
                .collect(),
            dnsmasq_confs: (0..specs.len())
                .map(|i| {
                    dnsmasq_dir
                        .join(format!("{}.conf", NetSpec::name(i as u8)))
                        .to_string_lossy()
                        .to_string()
                })
                .collect(),
        };
        let foreign_items = view::foreign(&view::items(&host.state()), &owners);
        let faults = Arc::new(FaultRunner::new(host.clone()));
        let driver =
            Driver::open(config(dir.path(), faults.clone(), backend)).map_err(|e| e.to_string())?;
        Ok(Machine {
            dir,
            host,
            faults,
            driver: Some(driver),
            backend,
            specs,
            foreign: foreign_items,
            owners,
            reference: HashMap::new(),
            trace: Vec::new(),
            fault_errors: Vec::new(),
            faulted_since_open: false,
        })
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn driver(&mut self) -> Result<&Driver, String> {
        if self.driver.is_none() {
            self.fault_errors.clear();
            self.faulted_since_open = false;
            let d = Driver::open(config(self.dir.path(), self.faults.clone(), self.backend))
                .map_err(|e| format!("driver restart: {e}"))?;
            self.driver = Some(d);
        }
        self.driver.as_ref().ok_or_else(|| "no driver".to_string())
    }

    /// Names of the active networks, as the driver sees them.
    /// A daemon restart (with the other backend when `switch_backend`)
    /// that must leave the networks of `before` active, no more, no less;
    /// `what` names the operation in the error.
    fn restart_keeping(
        &mut self,
        before: &BTreeSet<String>,
        switch_backend: bool,
        what: &str,
    ) -> Result<String, String> {
        let backend = if switch_backend {
            self.backend.other()
        } else {
            self.backend
        };
        let msg = self.restart(backend)?;
        let after = self.active()?;
        if *before != after {
            return Err(format!(
                "{what} changed the active networks: {before:?} -> {after:?}"
            ));
        }
        Ok(msg)
    }

    pub fn active(&mut self) -> Result<BTreeSet<String>, String> {
        Ok(self
            .driver()?
            .list()
            .into_iter()
            .filter(|i| i.active)
            .map(|i| i.name)
            .collect())
    }

    /// The daemon restarts: a new driver (journal recovery) and reconcile.
    fn restart(&mut self, backend: Backend) -> Result<String, String> {
        self.driver = None;
        self.backend = backend;
        let d = self.driver()?;
        let rep = d.reconcile().map_err(|e| format!("reconcile: {e}"))?;
        if !rep.problems.is_empty() {
            return Err(format!("reconcile problems: {:?}", rep.problems));
        }
        Ok(format!("{rep:?}; reports {:?}", d.reports()))
    }

    /// Runs one operation, then checks the invariants. `Err` says what
    /// went wrong, with the trace so far.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        let r = self.apply(op).and_then(|msg| {
            self.trace.push(format!("{op}: {msg}"));
            self.check()
        });
        r.map_err(|e| {
            if e.starts_with(REJECT) {
                return e;
            }
            format!(
                "{e}\n-- after operations:\n{}\n-- failing: {op}\n-- host:\n{}",
                self.trace.join("\n"),
                self.host.dump()
            )
        })
    }

    fn apply(&mut self, op: &Op) -> Result<String, String> {
        match op {
            Op::Define(n) => {
                let xml = with_tftp_root(&self.specs[*n].xml(*n as u8), self.dir.path())?;
                Ok(match self.driver()?.define(&xml) {
                    Ok(_) => "defined".into(),
                    Err(e) => return Err(format!("define of a valid network failed: {e}\n{xml}")),
                })
            }
            Op::Undefine(n) => {
                let name = NetSpec::name(*n as u8);
                Ok(match self.driver()?.undefine(&name) {
                    Ok(()) => "undefined".into(),
                    Err(e) => format!("refused: {e}"),
                })
            }
            Op::Destroy(n) => {
                let name = NetSpec::name(*n as u8);
                let active = self.active()?.contains(&name);
                match self.driver()?.destroy(&name) {
                    Ok(()) if active => Ok("destroyed".into()),
                    Ok(()) => Err("destroy of an inactive network succeeded".into()),
                    Err(e) if active => Err(format!("destroy of an active network failed: {e}")),
                    Err(e) => Ok(format!("refused: {e}")),
                }
            }
            Op::Start(n, fault) => self.start(*n, fault.as_ref()),
            Op::Restart { switch_backend } => {
                let before = self.active()?;
                self.restart_keeping(&before, *switch_backend, "restart")
            }
            Op::Upgrade { switch_backend } => {
                let before = self.active()?;
                self.driver = None;
                let store = StatusStore::new(self.state_dir());
                let mut stripped = Vec::new();
                for (path, st) in store.load_all() {
                    let mut st = st.map_err(|e| format!("{}: {e}", path.display()))?;
                    if st.removal_backend() == Some(Backend::Iptables) {
                        st.fw_removal = None;
                        store.save(&st).map_err(|e| e.to_string())?;
                        stripped.push(st.def.name.clone());
                    }
                }
                let msg = self.restart_keeping(&before, *switch_backend, "upgrade")?;
                Ok(format!("plans dropped from {stripped:?}; {msg}"))
            }
            Op::Crash { during, after } => {
                self.crash(during, FaultPlan::none().crash_after(u64::from(*after)))
            }
            Op::CrashAfterEffect { during, index } => self.crash(
                during,
                FaultPlan::none().crash_after_effect(u64::from(*index)),
            ),
            Op::WriteFails {
                during,
                target,
                errno,
                after,
            } => self.write_fails(during, *target, *errno, *after),
            Op::Concurrent {
                first,
                pause_at,
                second,
            } => self.concurrent(*first, *pause_at, *second),
        }
    }

    /// A driver of this machine whose state-directory writes go through
    /// the write faults of the machine's fault runner.
    fn open_gated(&self, backend: Backend) -> Result<Driver, virtnet_core::driver::DriverError> {
        let mut c = config(self.dir.path(), self.faults.clone(), backend);
        c.write_gate = store::WriteGate::new(self.faults.write_check());
        Driver::open(c)
    }

    /// [`Op::WriteFails`]: the operation runs with the write fault; a start
    /// must fail cleanly (host as before, no status file, no journal) or
    /// succeed without having written there; then the fault goes, the
    /// daemon restarts and the invariants must hold again.
    fn write_fails(
        &mut self,
        during: &WriteIn,
        target: WriteTarget,
        errno: WriteErrno,
        after: u8,
    ) -> Result<String, String> {
        let plan =
            FaultPlan::none().write_fails_after(target.pattern(), errno.errno(), u32::from(after));
        self.faults.set_plan(plan);
        let before_failed = self.faults.failed_writes().len();
        let what = match during {
            WriteIn::Start(n) => {
                let name = NetSpec::name(*n as u8);
                self.driver = None;
                let was_active = self.active()?.contains(&name);
                self.driver = None;
                let before = self.host.state();
                let d = self
                    .open_gated(self.backend)
                    .map_err(|e| format!("driver open: {e}"))?;
                let defined = d.info(&name).is_ok_and(|i| i.persistent);
                let r = d.start(&name);
                drop(d);
                self.faults.set_plan(FaultPlan::none());
                let failed = self.faults.failed_writes().len() > before_failed;
                match r {
                    Err(e) if e.is_crash() => {
                        return Err(format!("a write failure was reported as a crash: {e}"))
                    }
                    Err(e) if was_active || !defined => format!("refused: {e}"),
                    Ok(()) if was_active || !defined => {
                        return Err("start of an active or undefined network succeeded".into())
                    }
                    Ok(()) if failed => {
                        return Err("start succeeded although a write failed".into())
                    }
                    Ok(()) => "started (wrote nothing there)".to_string(),
                    Err(e) => {
                        self.check_unchanged(&before, &name, "start with a failing write")?;
                        if !failed && self.specs[*n].mode.is_virtual() {
                            return Err(format!(
                                "start of a valid network failed without a write failure: {e}"
                            ));
                        }
                        format!("failed and rolled back: {e}")
                    }
                }
            }
            WriteIn::Restart { switch_backend } => {
                self.driver = None;
                if *switch_backend {
                    self.backend = self.backend.other();
                }
                let r = self
                    .open_gated(self.backend)
                    .and_then(|d| d.reconcile().map(|rep| format!("{rep:?}")));
                self.faults.set_plan(FaultPlan::none());
                match r {
                    Err(e) if e.is_crash() => {
                        return Err(format!("a write failure was reported as a crash: {e}"))
                    }
                    Err(e) => format!("restart failed: {e}"),
                    Ok(rep) => format!("restart: {rep}"),
                }
            }
        };
        let msg = self.restart(self.backend)?;
        Ok(format!("{what}; disk fixed, restart: {msg}"))
    }

    /// [`Op::Concurrent`]: see there. Each driver's operation must end as
    /// it would have one after the other: done, or refused for what the
    /// other did (already active, not active); never a lock timeout.
    fn concurrent(
        &mut self,
        first: ConcOp,
        pause_at: u16,
        second: ConcOp,
    ) -> Result<String, String> {
        use std::sync::{Condvar, Mutex};
        self.driver = None;
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let release = {
            let gate = gate.clone();
            move || {
                let (m, c) = &*gate;
                *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
                c.notify_all();
            }
        };
        let paused: Arc<dyn Runner> = Arc::new(PauseAt {
            inner: self.faults.clone(),
            at: u64::from(pause_at),
            count: std::sync::atomic::AtomicU64::new(0),
            gate: gate.clone(),
        });
        let a = Driver::open(config(self.dir.path(), paused, self.backend))
            .map_err(|e| format!("first driver: {e}"))?;
        if !a.holds_driver_lock() {
            return Err("first driver does not hold the driver lock".into());
        }
        let mut cb = config(self.dir.path(), self.faults.clone(), self.backend);
        let notice_release = release.clone();
        cb.lock_notice = Some(Arc::new(move |_: &str| notice_release()));
        cb.lock_wait = std::time::Duration::from_secs(60);
        let xml = |n: usize| with_tftp_root(&self.specs[n].xml(n as u8), self.dir.path());
        let xmls = (0..self.specs.len())
            .map(xml)
            .collect::<Result<Vec<_>, _>>()?;
        let run = |d: &Driver, op: ConcOp| -> Result<(), virtnet_core::driver::DriverError> {
            match op {
                ConcOp::Define(n) => d.define(&xmls[n]).map(|_| ()),
                ConcOp::Start(n) => d.start(&NetSpec::name(n as u8)),
                ConcOp::Destroy(n) => d.destroy(&NetSpec::name(n as u8)),
            }
        };
        let (ra, rb) = std::thread::scope(|s| {
            let hb = s.spawn(|| {
                // Whatever happens, the first driver goes on afterwards.
                struct Release<F: Fn()>(F);
                impl<F: Fn()> Drop for Release<F> {
                    fn drop(&mut self) {
                        (self.0)()
                    }
                }
                let _r = Release(release.clone());
                let b = Driver::open(cb)?;
                run(&b, second)
            });
            let ra = run(&a, first);
            drop(a);
            let rb = hb.join().unwrap_or_else(|_| {
                Err(virtnet_core::driver::DriverError::Invalid(
                    "second driver panicked".into(),
                ))
            });
            (ra, rb)
        });
        let judge = |op: ConcOp,
                     r: Result<(), virtnet_core::driver::DriverError>|
         -> Result<String, String> {
            use virtnet_core::driver::DriverError as E;
            match r {
                Ok(()) => Ok("done".into()),
                Err(e @ (E::AlreadyActive(_) | E::NotActive(_) | E::NoNetwork(_))) => {
                    Ok(format!("refused: {e}"))
                }
                Err(e) => match op {
                    ConcOp::Start(n) if !self.specs[n].mode.is_virtual() && !e.is_crash() => {
                        Ok(format!("failed: {e}"))
                    }
                    _ => Err(format!("{op:?} failed: {e}")),
                },
            }
        };
        let ma = judge(first, ra).map_err(|e| format!("first driver: {e}"))?;
        let mb = judge(second, rb).map_err(|e| format!("second driver: {e}"))?;
        Ok(format!("first: {ma}; second: {mb}"))
    }

    /// Runs the operation `during` under the crash `plan`, then the host
    /// recovers and the daemon restarts.
    fn crash(&mut self, during: &CrashIn, plan: FaultPlan) -> Result<String, String> {
        self.faults.reset_counter();
        self.faults.set_plan(plan);
        let r = match during {
            CrashIn::Start(n) => {
                let name = NetSpec::name(*n as u8);
                self.driver()?.start(&name).map(|_| ())
            }
            CrashIn::Destroy(n) => {
                let name = NetSpec::name(*n as u8);
                self.driver()?.destroy(&name)
            }
            CrashIn::Restart { switch_backend } => {
                self.driver = None;
                if *switch_backend {
                    self.backend = self.backend.other();
                }
                match Driver::open(config(self.dir.path(), self.faults.clone(), self.backend)) {
                    Ok(d) => d.reconcile().map(|_| ()),
                    Err(e) => Err(e),
                }
            }
        };
        let crashed = self.faults.is_crashed();
        self.faults.recover();
        self.faults.set_plan(FaultPlan::none());
        let what = match r {
            Err(e) if e.is_crash() => format!("crashed ({e})"),
            Err(e) => format!("failed before the crash point: {e}"),
            Ok(()) => "completed before the crash point".to_string(),
        };
        if crashed && !what.starts_with("crashed") {
            return Err(format!("host crashed but the operation reported: {what}"));
        }
        let msg = self.restart(self.backend)?;
        Ok(format!("{what}; restart: {msg}"))
    }

    fn start(&mut self, n: usize, fault: Option<&StartFault>) -> Result<String, String> {
        let name = NetSpec::name(n as u8);
        let was_active = self.active()?.contains(&name);
        let defined = self.driver()?.info(&name).is_ok_and(|i| i.persistent);
        let before = self.host.state();
        self.faults.reset_counter();
        self.faults.take_log();
        self.host.take_records();
        if let Some(f) = fault {
            self.faults.set_plan(f.plan());
            self.faulted_since_open = true;
        }
        let r = self.driver()?.start(&name);
        self.faults.set_plan(FaultPlan::none());
        let hit_undo = self.faults.take_log().into_iter().find_map(|given| {
            matches!(given.applied, Applied::Injected(_))
                .then_some(given.cmd.argv)
                .filter(|a| is_undo(a))
        });
        if let Some(argv) = hit_undo {
            return Err(format!(
                "{REJECT}the injected failure hit the rollback command `{}`",
                argv.join(" ")
            ));
        }
        match (r, fault) {
            (Ok(()), _) if was_active || !defined => {
                Err("start of an active or undefined network succeeded".into())
            }
            (Err(e), _) if was_active || !defined => Ok(format!("refused: {e}")),
            (Ok(()), None) => Ok("started".into()),
            (Err(e), None) => {
                // A valid network may fail to start without a fault only
                // by the saved error of an earlier failed private-chain
                // setup (libvirt's errInitV4/V6); nothing of it may remain.
                self.check_unchanged(&before, &name, "failed start")?;
                let text = e.to_string();
                // The saved error quotes the injected failure's stderr.
                // A network that uses neither address family of a failed
                // setup is not refused with the saved error (libvirt checks
                // for an address or route of that family), yet its general
                // rules (DHCP/DNS input) go into the private chains that
                // setup never created: it fails there, in libvirt too.
                let saved = self.fault_errors.contains(&text)
                    || (self.faulted_since_open
                        && (text.contains(INJECTED) || missing_private_chain(&text)));
                if self.specs[n].mode.is_virtual() && !saved {
                    return Err(format!("start of a valid network failed: {e}"));
                }
                Ok(format!("failed (saved error of an earlier start): {e}"))
            }
            (Err(e), Some(_)) => {
                if e.is_crash() {
                    return Err(format!("a failure was reported as a crash: {e}"));
                }
                self.check_unchanged(&before, &name, "failed start")?;
                self.fault_errors.push(e.to_string());
                Ok(format!("failed and rolled back: {e}"))
            }
            (Ok(()), Some(_)) => {
                // The failed command was one libvirt ignores (a listing, the
                // CHECKSUM rule, a static route): take the network down again
                // and check that everything of it goes.
                self.driver()?
                    .destroy(&name)
                    .map_err(|e| format!("destroy after a start with an ignored failure: {e}"))?;
                self.check_unchanged(&before, &name, "start with an ignored failure + destroy")?;
                Ok("started despite the fault (ignored command); destroyed".into())
            }
        }
    }

    fn check_unchanged(
        &mut self,
        before: &virtnet_fake::HostState,
        name: &str,
        what: &str,
    ) -> Result<(), String> {
        view::same_apart_from_kept(before, &self.host.state())
            .map_err(|e| format!("{what}: {e}"))?;
        let d = self.driver()?;
        if d.info(name).is_ok_and(|i| i.active) {
            return Err(format!("{what}: network '{name}' is active"));
        }
        if !d.pending_journals().is_empty() {
            return Err(format!("{what}: journals left: {:?}", d.pending_journals()));
        }
        if self.state_dir().join(format!("{name}.xml")).exists() {
            return Err(format!("{what}: status file of '{name}' left"));
        }
        Ok(())
    }

    /// What a fresh start of network `n` alone gives with `backend`:
    /// its objects of ours that must match exactly.
    fn reference(&mut self, n: usize, backend: Backend) -> Result<Vec<Item>, String> {
        if let Some(r) = self.reference.get(&(n, backend)) {
            return Ok(r.clone());
        }
        let dir = crate::props::scratch_dir()?;
        let host = Arc::new(FakeHost::new());
        let d =
            Driver::open(config(dir.path(), host.clone(), backend)).map_err(|e| e.to_string())?;
        let xml = with_tftp_root(&self.specs[n].xml(n as u8), dir.path())?;
        let name = d
            .define(&xml)
            .map_err(|e| format!("reference define: {e}"))?
            .name;
        d.start(&name)
            .map_err(|e| format!("reference start of net{n} with {backend}: {e}"))?;
        let owners = Owners {
            bridges: self.owners.bridges.clone(),
            dnsmasq_confs: Vec::new(),
        };
        let items: Vec<Item> = view::items(&host.state())
            .into_iter()
            .filter(|i| view::is_ours(i, &owners) && exact(i))
            .map(|i| exact_form(&i))
            .collect();
        self.reference.insert((n, backend), items.clone());
        Ok(items)
    }

    /// The invariants (see the module documentation).
    pub fn check(&mut self) -> Result<(), String> {
        let state = self.host.state();
        let items = view::items(&state);
        let active = self.active()?;
        let statuses: BTreeMap<String, store::NetworkStatus> = {
            let d = self.driver()?;
            let journals = d.pending_journals();
            if !journals.is_empty() {
                return Err(format!("journals left: {journals:?}"));
            }
            active
                .iter()
                .filter_map(|n| d.status(n).map(|s| (n.clone(), s)))
                .collect()
        };
        // 3a. One status file per active network, equal to the driver's view.
        let mut files = BTreeSet::new();
        if let Ok(rd) = std::fs::read_dir(self.state_dir()) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "xml") {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        files.insert(stem.to_string());
                    }
                }
            }
        }
        if files != active {
            return Err(format!(
                "status files {files:?} but active networks {active:?}"
            ));
        }
        for (name, st) in &statuses {
            let path = self.state_dir().join(format!("{name}.xml"));
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if text != store::format_status(st) {
                return Err(format!(
                    "status file of '{name}' differs from the driver's status"
                ));
            }
            if rules::has_firewall_rules(&st.def) && st.fw_removal.is_none() {
                return Err(format!(
                    "active network '{name}' has rules but no saved removal plan"
                ));
            }
        }
        // 1 + 2. Our objects are exactly those of the active networks.
        let mut expected = Vec::new();
        for (name, st) in &statuses {
            let Some(n) = (0..self.specs.len()).find(|&i| NetSpec::name(i as u8) == *name) else {
                return Err(format!("unknown active network '{name}'"));
            };
            let b = st.removal_backend().unwrap_or(self.backend);
            expected.extend(self.reference(n, b)?);
        }
        // A bridge left down (crash during a destroy, after `ip link set
        // down`) has lost what the kernel drops on down: its IPv6 addresses
        // and the routes through it. Compare both sides in that form.
        let down: Vec<String> = items
            .iter()
            .filter_map(|i| match i {
                Item::Link {
                    name, up: false, ..
                } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let expected: Vec<Item> = expected
            .into_iter()
            .filter_map(|i| as_if_down(i, &down))
            .collect();
        let ours: Vec<Item> = items
            .iter()
            .filter(|i| view::is_ours(i, &self.owners) && exact(i))
            .map(exact_form)
            .filter_map(|i| as_if_down(i, &down))
            .collect();
        let (want, have) = (view::multiset(&expected), view::multiset(&ours));
        if want != have {
            let extra = view::missing(&ours, &expected);
            let lacking = view::missing(&expected, &ours);
            return Err(format!(
                "objects of ours are not exactly those of the active networks {active:?}\n\
                 present but not accounted for by a status file or the kept private chains (leaked or duplicated):\n{}\
                 expected but missing:\n{}",
                extra.iter().map(|i| format!("  {i}\n")).collect::<String>(),
                lacking
                    .iter()
                    .map(|i| format!("  {i}\n"))
                    .collect::<String>()
            ));
        }
        for i in items.iter().filter(|i| matches!(i, Item::TcQdisc { .. })) {
            if let Item::TcQdisc { dev, .. } = i {
                let ours = self.owners.bridges.contains(dev);
                let live = statuses
                    .values()
                    .any(|s| s.def.bridge_name() == Some(dev.as_str()));
                if ours && !live {
                    return Err(format!("{i} left on the bridge of an inactive network"));
                }
            }
        }
        // dnsmasq: one per active network that needs one, none other.
        for (k, conf) in self.owners.dnsmasq_confs.iter().enumerate() {
            let name = NetSpec::name(k as u8);
            let running = items
                .iter()
                .filter(|i| matches!(i, Item::Process { conf_file: Some(c), .. } if c == conf))
                .count();
            let want = statuses
                .get(&name)
                .map(|st| usize::from(virtnet_core::dnsmasq::needs_dnsmasq(&st.def)))
                .unwrap_or(0);
            if running != want {
                return Err(format!(
                    "{running} dnsmasq process(es) of '{name}', expected {want}"
                ));
            }
        }
        // 3b. Every saved plan removes exactly its rules on a copy of the host.
        let copy = FakeHost::with_state(state.clone());
        for (name, st) in &statuses {
            copy.take_records();
            rules::remove_network_firewall(&st.def, st.fw_removal.as_ref(), &copy)
                .map_err(|e| format!("removal plan of '{name}' fails on the host: {e}"))?;
            for r in copy.take_records() {
                let ok =
                    matches!(&r.outcome, virtnet_fake::Outcome::Ran { output } if output.success());
                if !ok {
                    return Err(format!(
                        "removal plan of '{name}' does not match the host: `{}` gave {:?}",
                        r.cmd.argv.join(" "),
                        r.outcome
                    ));
                }
            }
        }
        let left: Vec<Item> = view::items(&copy.state())
            .into_iter()
            .filter(|i| firewall_item(i) && view::is_ours(i, &self.owners))
            .collect();
        if !left.is_empty() {
            return Err(format!(
                "rules of ours that no saved plan removes:\n{}",
                left.iter().map(|i| format!("  {i}\n")).collect::<String>()
            ));
        }
        // 4. Foreign objects untouched.
        let foreign = view::foreign(&items, &self.owners);
        if foreign != self.foreign {
            return Err(format!(
                "foreign objects changed:\n{}",
                view::diff(&self.foreign, &foreign)
            ));
        }
        Ok(())
    }
}
