//! The host abstraction every scenario is written against (architecture
//! invariant 4, "same test body, two hosts").
//!
//! A [`HostFactory`] makes fresh hosts: a new [`FakeHost`] for the
//! simulated host, a new network namespace (entered by the calling thread)
//! for the real one; and prepared ones, a scenario's baseline
//! ([`HostFactory::fresh_prepared`]: the simulator prepares a host once per
//! key and hands out copies of it). A [`TestHost`] gives the scenario a [`Runner`] and a
//! canonical [`Snapshot`] of the host (firewall rulesets, links, tc,
//! forwarding sysctls, dnsmasq processes), normalised so two snapshots of
//! equal hosts are equal text.
//!
//! Fault injection (`virtnet_testkit::FaultRunner`) wraps any runner, so
//! failure and crash scenarios run unchanged on both hosts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use virtnet_fake::{FakeHost, Section};
use virtnet_runner::{find_in_path, CheckedError, Cmd, RealRunner, RunError, Runner};
use virtnet_testkit::csum::CsumWorkaround;
use virtnet_testkit::netns::{enter_fresh_thread_netns, thread_netns};

/// Which kind of host a factory makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HostKind {
    /// The simulator (`virtnet-fake`).
    Fake,
    /// The real kernel and tools, inside throw-away namespaces.
    Real,
}

impl std::fmt::Display for HostKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostKind::Fake => "fake",
            HostKind::Real => "real",
        })
    }
}

/// A host operation that could not be done (not a scenario failure: the
/// environment is broken).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot create a network namespace: {0}")]
    Unshare(String),
    #[error("`{cmd}` could not run: {source}")]
    Run { cmd: String, source: RunError },
    /// A command that had to succeed did not.
    #[error(transparent)]
    Checked(#[from] CheckedError),
    #[error("{0}")]
    Other(String),
}

/// Sections of a snapshot that hold firewall state.
pub const FIREWALL_SECTIONS: &[&str] = &["nft", "iptables", "ip6tables", "tc"];

/// Canonical state of a host: named text sections (`nft`, `iptables`,
/// `ip6tables`, `links`, `tc`, `sysctl`, `processes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub sections: BTreeMap<String, String>,
}

impl Snapshot {
    pub fn section(&self, name: &str) -> &str {
        self.sections.get(name).map(String::as_str).unwrap_or("")
    }

    /// Only the named sections.
    pub fn only(&self, names: &[&str]) -> Snapshot {
        Snapshot {
            sections: self
                .sections
                .iter()
                .filter(|(k, _)| names.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// A copy with one section replaced.
    pub fn with_section(&self, name: &str, text: &str) -> Snapshot {
        let mut s = self.clone();
        s.sections.insert(name.to_string(), text.to_string());
        s
    }

    /// The whole snapshot as text, `## name` headers.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.sections {
            out.push_str(&format!("## {k}\n{v}"));
            if !v.is_empty() && !v.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Unified diff of the texts (empty when equal).
    pub fn diff(&self, other: &Snapshot, a: &str, b: &str) -> String {
        if self == other {
            return String::new();
        }
        virtnet_fake::diff_text(&self.text(), &other.text(), a, b)
    }

    /// Every `(section, line)` of the snapshot.
    pub fn lines(&self) -> Vec<(String, String)> {
        self.sections
            .iter()
            .flat_map(|(k, v)| v.lines().map(move |l| (k.clone(), l.to_string())))
            .collect()
    }
}

/// The forwarding sysctls snapshots show (per-interface keys vanish with
/// their interface).
pub const SYSCTL_KEYS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.default.forwarding",
];

/// A host a scenario runs on.
pub trait TestHost {
    /// The one door to this host.
    fn runner(&self) -> Arc<dyn Runner>;
    /// Canonical state now.
    fn snapshot(&self) -> Result<Snapshot, HostError>;
    /// The simulated host's whole state (what the packet tracer reads);
    /// `None` on the real host.
    fn fake_state(&self) -> Option<virtnet_fake::state::HostState> {
        None
    }
}

/// Paths of the tools the driver runs itself (dnsmasq, its lease helper).
#[derive(Debug, Clone)]
pub struct DriverTools {
    pub dnsmasq_binary: String,
    pub leases_helper: String,
}

/// Makes fresh hosts of one kind.
pub trait HostFactory: Send + Sync {
    fn kind(&self) -> HostKind;
    /// Does the kernel have the tc `act_csum` action? (The nftables
    /// backend's DHCP checksum filter needs it.)
    fn has_act_csum(&self) -> bool;
    /// Does the kernel have sch_sfq, cls_fw and act_police (libvirt's QoS
    /// stream needs all three)?
    fn has_qos_modules(&self) -> bool {
        true
    }
    /// A fresh, empty host. For the real host this replaces the calling
    /// thread's network namespace: only one host per thread is live.
    fn fresh(&self) -> Result<Box<dyn TestHost>, HostError>;
    fn driver_tools(&self) -> DriverTools;
    /// A fresh host made ready by `prepare` (foreign rules, uplinks: a
    /// scenario's baseline), and its snapshot. `key` names what `prepare`
    /// does: two calls with the same key must run the same commands. A
    /// factory may then hand out a copy of the host an earlier call with
    /// that key prepared instead of running `prepare` again — the
    /// simulator does ([`FakeFactory`]: a scenario stages a host for every
    /// fault point, and seeding and snapshotting each one again was a
    /// fifth of the matrix's instructions); this default, which the real
    /// host uses, runs `prepare` every time.
    fn fresh_prepared(
        &self,
        key: &str,
        prepare: &dyn Fn(&dyn Runner) -> Result<(), HostError>,
    ) -> Result<(Box<dyn TestHost>, Snapshot), HostError> {
        let _ = key;
        let host = self.fresh()?;
        prepare(&*host.runner())?;
        let snapshot = host.snapshot()?;
        Ok((host, snapshot))
    }
}

// ----------------------------------------------------------------------
// fake

/// The simulated host.
pub struct FakeTestHost {
    pub host: Arc<FakeHost>,
}

impl TestHost for FakeTestHost {
    fn runner(&self) -> Arc<dyn Runner> {
        self.host.clone() as Arc<dyn Runner>
    }

    fn snapshot(&self) -> Result<Snapshot, HostError> {
        // Dumped in place: a copy of the whole state per snapshot was a
        // fortieth of the matrix's time.
        let sections = self.host.inspect(|state| {
            let mut sections: BTreeMap<String, String> = Section::ALL
                .iter()
                .map(|s| (s.name().to_string(), state.dump_section(*s)))
                .collect();
            // The same keys and form as the real host's snapshot (the
            // fake's own dump lists every key ever written, even back to
            // its default).
            let sysctl: String = SYSCTL_KEYS
                .iter()
                .map(|k| format!("{k} = {}\n", state.sysctl.get(k, &[]).unwrap_or_default()))
                .collect();
            sections.insert("sysctl".to_string(), sysctl);
            sections
        });
        Ok(Snapshot { sections })
    }

    fn fake_state(&self) -> Option<virtnet_fake::state::HostState> {
        Some(self.host.state())
    }
}

/// Factory of simulated hosts. `act_csum: false` simulates the reference
/// kernel that lacks the tc csum action.
///
/// [`HostFactory::fresh_prepared`] prepares a host once per key and then
/// hands out copies of its state (with its snapshot): the simulator is a
/// pure function of the commands it was given, so a copy of a prepared
/// host is the host the same commands would prepare again
/// (`tests/fake_prepared.rs` holds the two to the same state and the same
/// answers). The copy starts with no records and a command count of 0; the
/// matrix counts commands with its own `FaultRunner`s.
pub struct FakeFactory {
    pub act_csum: bool,
    /// Prepared hosts by key: the settled state and its snapshot.
    prepared: std::sync::Mutex<BTreeMap<String, Arc<(virtnet_fake::HostState, Snapshot)>>>,
}

impl FakeFactory {
    /// A factory of hosts with (`true`, the default) or without the tc
    /// csum action.
    pub fn new(act_csum: bool) -> Self {
        FakeFactory {
            act_csum,
            prepared: Default::default(),
        }
    }

    fn host_with(&self, state: Option<virtnet_fake::HostState>) -> FakeTestHost {
        let host = match state {
            Some(s) => FakeHost::with_state(s),
            None => FakeHost::new(),
        };
        host.set_tc_csum_fails(!self.act_csum);
        FakeTestHost {
            host: Arc::new(host),
        }
    }
}

impl Default for FakeFactory {
    fn default() -> Self {
        FakeFactory::new(true)
    }
}

impl HostFactory for FakeFactory {
    fn kind(&self) -> HostKind {
        HostKind::Fake
    }
    fn has_act_csum(&self) -> bool {
        self.act_csum
    }
    fn fresh(&self) -> Result<Box<dyn TestHost>, HostError> {
        Ok(Box::new(self.host_with(None)))
    }
    fn driver_tools(&self) -> DriverTools {
        DriverTools {
            dnsmasq_binary: "/usr/sbin/dnsmasq".into(),
            leases_helper: virtnet_core::dnsmasq::LIBVIRT_LEASES_HELPER.to_string(),
        }
    }
    fn fresh_prepared(
        &self,
        key: &str,
        prepare: &dyn Fn(&dyn Runner) -> Result<(), HostError>,
    ) -> Result<(Box<dyn TestHost>, Snapshot), HostError> {
        // Only lookups and inserts happen under the lock: a panic
        // elsewhere cannot leave the map half-updated.
        let lock = || self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        let cached = lock().get(key).cloned();
        let prepared = match cached {
            Some(p) => p,
            None => {
                // Prepared outside the lock (the other workers go on);
                // two workers may both prepare a key, with equal results.
                let host = self.host_with(None);
                prepare(&*host.runner())?;
                let snapshot = host.snapshot()?;
                let p = Arc::new((host.host.state(), snapshot));
                lock().entry(key.to_string()).or_insert(p).clone()
            }
        };
        let (state, snapshot) = &*prepared;
        Ok((
            Box::new(self.host_with(Some(state.clone()))),
            snapshot.clone(),
        ))
    }
}

// ----------------------------------------------------------------------
// real

/// Tools the real host needs, with the Debian/Ubuntu package of each.
pub const REAL_TOOLS: &[(&str, &str)] = &[
    ("nft", "nftables"),
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("iptables-save", "iptables"),
    ("ip6tables-save", "iptables"),
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("sysctl", "procps"),
    ("kill", "procps"),
    ("dnsmasq", "dnsmasq-base"),
    ("true", "coreutils"),
];

/// The tools of [`REAL_TOOLS`] missing from `PATH`, with their packages.
pub fn missing_tools() -> Vec<(&'static str, &'static str)> {
    REAL_TOOLS
        .iter()
        .filter(|(t, _)| find_in_path(t).is_none())
        .copied()
        .collect()
}

/// The real host: the calling thread's own network namespace.
pub struct RealTestHost {
    runner: Arc<dyn Runner>,
    /// The namespace this host is (`net:[inode]`).
    netns: String,
    /// The namespace itself, held open for as long as the host lives
    /// (dropped after [`Drop::drop`] has killed its dnsmasq). Without it,
    /// once the thread has moved on to the next host's namespace (and its
    /// dnsmasq are gone) the kernel frees this one and gives its inode
    /// number to the next namespace it creates, maybe another job's: this
    /// host's snapshot and its drop, which find dnsmasq by that number,
    /// would then see and kill the other job's dnsmasq (CI saw
    /// `open/iptables/start: dnsmasq running: false` with 2 jobs).
    _held: std::fs::File,
}

/// Runs `argv`, which must succeed; its stdout.
fn run_text(r: &dyn Runner, argv: &[&str]) -> Result<String, HostError> {
    Ok(r.run_argv_checked(argv)?.stdout)
}

/// Drops comment lines and blank lines, zeroes counters (`[p:b]` of
/// iptables-save chains, `packets N bytes M` of nft, tc's
/// `direct_packets_stat N`).
pub fn normalise_ruleset(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines() {
        if l.trim_start().starts_with('#') || l.trim().is_empty() {
            continue;
        }
        let mut l = l.trim_end().to_string();
        if l.starts_with(':') {
            if let Some(i) = l.rfind(" [") {
                l.truncate(i);
                l.push_str(" [0:0]");
            }
        }
        let words: Vec<&str> = l.split(' ').collect();
        let mut w: Vec<&str> = Vec::with_capacity(words.len());
        let mut i = 0;
        while i < words.len() {
            if matches!(words[i], "packets" | "bytes" | "direct_packets_stat")
                && i + 1 < words.len()
            {
                w.push(words[i]);
                w.push("0");
                i += 2;
            } else {
                w.push(words[i]);
                i += 1;
            }
        }
        out.push_str(&w.join(" "));
        out.push('\n');
    }
    out
}

/// A dnsmasq process living in a network namespace.
struct DnsmasqProc {
    pid: i32,
    /// Its parent: a dnsmasq started with `--dhcp-script` forks a helper
    /// (same command line) that runs the script for it.
    ppid: i32,
    cmdline: String,
}

/// State and parent pid from the text of `/proc/PID/stat` (the fields
/// after the command name in parentheses, which may itself hold spaces
/// and parentheses).
fn stat_state_ppid(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// dnsmasq processes living in network namespace `me`: zombies (state
/// `Z`, an exited process its parent has not reaped yet) are not living
/// and are left out (they have no namespace any more anyway).
fn dnsmasq_in_netns(me: &str) -> Vec<DnsmasqProc> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "dnsmasq" {
            continue;
        }
        let ns = std::fs::read_link(dir.join("ns/net"))
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        if ns != me {
            continue;
        }
        let Some((state, ppid)) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .as_deref()
            .and_then(stat_state_ppid)
        else {
            // Gone meanwhile.
            continue;
        };
        if matches!(state, 'Z' | 'X') {
            continue;
        }
        let cmdline = std::fs::read(dir.join("cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push(DnsmasqProc { pid, ppid, cmdline });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// The dnsmasq daemons among `procs`: a dnsmasq whose parent is a dnsmasq
/// there too is the `--dhcp-script` helper of that daemon and part of it
/// (a helper whose daemon is gone is reparented and counts as a daemon).
/// Their command lines, sorted.
fn dnsmasq_daemons(procs: &[DnsmasqProc]) -> Vec<String> {
    let pids: std::collections::BTreeSet<i32> = procs.iter().map(|p| p.pid).collect();
    let mut out: Vec<String> = procs
        .iter()
        .filter(|p| !pids.contains(&p.ppid))
        .map(|p| p.cmdline.clone())
        .collect();
    out.sort();
    out
}

fn kill_dnsmasq_here() {
    if let Some(me) = thread_netns() {
        kill_dnsmasq_in(&me);
    }
}

fn kill_dnsmasq_in(netns: &str) {
    for p in dnsmasq_in_netns(netns) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for RealTestHost {
    fn drop(&mut self) {
        kill_dnsmasq_in(&self.netns);
    }
}

impl TestHost for RealTestHost {
    fn runner(&self) -> Arc<dyn Runner> {
        self.runner.clone()
    }

    fn snapshot(&self) -> Result<Snapshot, HostError> {
        let r: &dyn Runner = &*self.runner;
        let mut s = BTreeMap::new();
        s.insert(
            "nft".to_string(),
            normalise_ruleset(&run_text(r, &["nft", "list", "ruleset"])?),
        );
        s.insert(
            "iptables".to_string(),
            normalise_ruleset(&run_text(r, &["iptables-save"])?),
        );
        s.insert(
            "ip6tables".to_string(),
            normalise_ruleset(&run_text(r, &["ip6tables-save"])?),
        );
        let links = run_text(r, &["ip", "-br", "link"])?;
        let addrs = run_text(r, &["ip", "-br", "addr"])?;
        let mut l = String::new();
        for line in links.lines() {
            l.push_str(line.trim_end());
            l.push('\n');
        }
        for line in addrs.lines() {
            // Link-local IPv6 addresses derive from random MACs and appear
            // asynchronously; they are not ours to compare.
            let words: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with("fe80:"))
                .collect();
            if words.len() > 2 {
                l.push_str(&format!("addr {} {}\n", words[0], words[2..].join(" ")));
            }
        }
        s.insert("links".to_string(), l);
        let mut tc = normalise_ruleset(&run_text(r, &["tc", "qdisc", "show"])?);
        for line in links.lines() {
            let Some(dev) = line.split_whitespace().next() else {
                continue;
            };
            let dev = dev.split('@').next().unwrap_or(dev);
            let f = run_text(r, &["tc", "filter", "show", "dev", dev, "parent", "1:"])
                .unwrap_or_default();
            for fl in f.lines() {
                tc.push_str(&format!("filter {dev}: {}\n", fl.trim_end()));
            }
        }
        s.insert("tc".to_string(), tc);
        let mut sysctl = String::new();
        for key in SYSCTL_KEYS {
            let v = run_text(r, &["sysctl", "-n", key]).unwrap_or_default();
            sysctl.push_str(&format!("{key} = {}\n", v.trim()));
        }
        s.insert("sysctl".to_string(), sysctl);
        // One line per dnsmasq daemon (its script helper is part of it).
        let procs: String = dnsmasq_daemons(&dnsmasq_in_netns(&self.netns))
            .into_iter()
            .map(|c| format!("{c}\n"))
            .collect();
        s.insert("processes".to_string(), procs);
        Ok(Snapshot { sections: s })
    }
}

/// Factory of real hosts: every [`HostFactory::fresh`] moves the calling
/// thread into a new network namespace (`unshare(CLONE_NEWNET)`), so the
/// namespace the process started in is never touched.
pub struct RealFactory {
    act_csum: bool,
    /// [`RealFactory::assume_act_csum`]: hosts' runners fake the csum
    /// filter's success in-process too ([`CsumWorkaround`]).
    csum_workaround: bool,
    qos_modules: bool,
    tools: DriverTools,
}

/// Moves the calling thread into a new, empty network namespace.
pub fn enter_fresh_netns() -> Result<(), HostError> {
    kill_dnsmasq_here();
    enter_fresh_thread_netns().map_err(HostError::Unshare)
}

impl RealFactory {
    /// Checks the tools, probes the kernel for act_csum (in a throw-away
    /// namespace, on a helper thread) and prepares the dnsmasq binary
    /// (`dnsmasq_wrapper`: when dnsmasq cannot drop privileges, e.g. in a
    /// user namespace with only root mapped, a wrapper keeping it root).
    pub fn new(dnsmasq_wrapper_dir: Option<PathBuf>) -> Result<RealFactory, HostError> {
        let missing = missing_tools();
        if !missing.is_empty() {
            return Err(HostError::Other(format!(
                "missing tools: {}",
                missing
                    .iter()
                    .map(|(t, _)| *t)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let act_csum = std::thread::spawn(probe_act_csum)
            .join()
            .map_err(|_| HostError::Other("act_csum probe thread panicked".into()))??;
        let qos_modules = std::thread::spawn(probe_qos_modules)
            .join()
            .map_err(|_| HostError::Other("QoS probe thread panicked".into()))??;
        let real = |t: &str| {
            find_in_path(t)
                .map(|p| p.to_string_lossy().to_string())
                .unwrap_or_else(|| t.to_string())
        };
        let mut dnsmasq = real("dnsmasq");
        if let Some(dir) = dnsmasq_wrapper_dir {
            let w = dir.join("dnsmasq");
            let script = format!("#!/bin/sh\nexec {dnsmasq} --user=root --group= \"$@\"\n");
            std::fs::write(&w, script)
                .map_err(|e| HostError::Other(format!("{}: {e}", w.display())))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| HostError::Other(format!("{}: {e}", w.display())))?;
            dnsmasq = w.to_string_lossy().to_string();
        }
        Ok(RealFactory {
            act_csum,
            csum_workaround: false,
            qos_modules,
            tools: DriverTools {
                dnsmasq_binary: dnsmasq,
                leases_helper: real("true"),
            },
        })
    }
}

impl RealFactory {
    /// Treat the kernel as having act_csum: for runs where a `tc` wrapper
    /// ([`write_tc_csum_wrapper`]) is first on `PATH`; the hosts' runners
    /// do the same for the `tc` commands the real runner sends itself
    /// ([`CsumWorkaround`]).
    pub fn assume_act_csum(mut self) -> Self {
        self.act_csum = true;
        self.csum_workaround = true;
        self
    }
}

/// The shell script of [`write_tc_csum_wrapper`] around the real tc at
/// `real_tc`.
///
/// `tc ARGS` (argv form): runs the real tc; a failure of a command with
/// `action csum` becomes success (a message on stderr).
///
/// `tc -batch -` (the batched layout's start): the input is read into a
/// shell variable and run by the real `tc -batch -` from its first line;
/// tc stops at the first failing line and says `Command failed -:K`. When
/// that line (line N of the whole input) adds a filter with `action csum`,
/// tc's message and the wrapper's are printed and the batch goes on from
/// line N+1 (the other lines really run); any other failure is passed on
/// with its status and stderr, the line number made N again.
pub fn tc_csum_wrapper_script(real_tc: &str) -> String {
    // Shell builtins only around the real tc (no mktemp, sed, tail): the
    // bench times the start through this wrapper on such a kernel.
    const BODY: &str = r#"if [ "$#" -eq 2 ] && [ "$1" = -batch ] && [ "$2" = - ]; then
  nl='
'
  rest=
  while IFS= read -r l || [ -n "$l" ]; do rest="$rest$l$nl"; done
  exec 3>&1
  n=0
  while [ -n "$rest" ]; do
    err=$(printf '%s' "$rest" | "$TC" -batch - 2>&1 >&3)
    rc=$?
    if [ $rc -eq 0 ]; then
      [ -n "$err" ] && printf '%s\n' "$err" >&2
      exit 0
    fi
    case $err in *"Command failed -:"*) k=${err##*Command failed -:} ;; *) k=x ;; esac
    case $k in
      '' | 0* | *[!0-9]*) printf '%s\n' "$err" >&2; exit $rc ;;
    esac
    abs=$((n + k))
    printf '%s\n' "${err%Command failed -:*}Command failed -:$abs" >&2
    i=1
    while [ $i -lt "$k" ]; do rest=${rest#*"$nl"}; i=$((i + 1)); done
    case " ${rest%%"$nl"*} " in
      *" filter add "*" action csum "*) ;;
      *) exit $rc ;;
    esac
    echo 'virtnet-conformance: kernel lacks act_csum; faked success' >&2
    rest=${rest#*"$nl"}
    n=$abs
  done
  exit 0
fi
"$TC" "$@"
rc=$?
case " $* " in *" action csum "*) [ $rc -ne 0 ] && echo 'virtnet-conformance: kernel lacks act_csum; faked success' >&2 && exit 0;; esac
exit $rc
"#;
    format!("#!/bin/sh\nTC='{}'\n{BODY}", real_tc.replace('\'', "'\\''"))
}

/// Writes `DIR/tc`: runs the real `tc` and turns a failure of a command
/// with `action csum` (also a line of `tc -batch -`) into success (a
/// message on stderr), as the libvirt captures did on a kernel without
/// act_csum (see [`tc_csum_wrapper_script`]). The csum filter is then
/// absent, consistently for the scenario and its expectation. Returns the
/// wrapper's path; the caller puts DIR first on `PATH`.
pub fn write_tc_csum_wrapper(dir: &std::path::Path) -> Result<PathBuf, HostError> {
    let real_tc =
        find_in_path("tc").ok_or_else(|| HostError::Other("tc not found on PATH".into()))?;
    let script = tc_csum_wrapper_script(&real_tc.to_string_lossy());
    let tc = dir.join("tc");
    std::fs::write(&tc, script).map_err(|e| HostError::Other(format!("{}: {e}", tc.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tc, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| HostError::Other(format!("{}: {e}", tc.display())))?;
    Ok(tc)
}

/// In a fresh namespace: does `tc ... action csum` work?
pub fn probe_act_csum() -> Result<bool, HostError> {
    enter_fresh_netns()?;
    let r = RealRunner::new();
    run_text(&r, &["ip", "link", "add", "vncsum0", "type", "bridge"])?;
    run_text(
        &r,
        &[
            "tc", "qdisc", "add", "dev", "vncsum0", "root", "handle", "1:", "htb", "default", "2",
        ],
    )?;
    let out = r
        .run(&Cmd::new([
            "tc", "filter", "add", "dev", "vncsum0", "prio", "2", "protocol", "ip", "parent", "1:",
            "u32", "match", "ip", "dport", "68", "ffff", "action", "csum", "ip", "and", "udp",
        ]))
        .map_err(|source| HostError::Run {
            cmd: "tc filter add ... action csum".into(),
            source,
        })?;
    Ok(out.success())
}

/// In a fresh namespace: do an sfq qdisc under an htb class, a `fw` filter
/// and a `police` filter work (libvirt's QoS stream)?
pub fn probe_qos_modules() -> Result<bool, HostError> {
    enter_fresh_netns()?;
    let r = RealRunner::new();
    run_text(&r, &["ip", "link", "add", "vnqos0", "type", "bridge"])?;
    let steps: [&[&str]; 5] = [
        &[
            "tc", "qdisc", "add", "dev", "vnqos0", "root", "handle", "1:", "htb", "default", "2",
        ],
        &[
            "tc", "class", "add", "dev", "vnqos0", "parent", "1:", "classid", "1:2", "htb", "rate",
            "8kbps",
        ],
        &[
            "tc", "qdisc", "add", "dev", "vnqos0", "parent", "1:2", "handle", "2:", "sfq",
            "perturb", "10",
        ],
        &[
            "tc", "filter", "add", "dev", "vnqos0", "parent", "1:0", "protocol", "all", "prio",
            "1", "handle", "1", "fw", "flowid", "1",
        ],
        &["tc", "qdisc", "add", "dev", "vnqos0", "ingress"],
    ];
    for argv in steps {
        let out = r
            .run(&Cmd::new(argv.iter().copied()))
            .map_err(|source| HostError::Run {
                cmd: argv.join(" "),
                source,
            })?;
        if !out.success() {
            return Ok(false);
        }
    }
    let police = [
        "tc", "filter", "add", "dev", "vnqos0", "parent", "ffff:", "protocol", "all", "u32",
        "match", "u32", "0", "0", "police", "rate", "8kbps", "burst", "8kb", "mtu", "64kb", "drop",
        "flowid", ":1",
    ];
    let out = r.run(&Cmd::new(police)).map_err(|source| HostError::Run {
        cmd: "tc filter add ... police".into(),
        source,
    })?;
    Ok(out.success())
}

impl HostFactory for RealFactory {
    fn kind(&self) -> HostKind {
        HostKind::Real
    }
    fn has_act_csum(&self) -> bool {
        self.act_csum
    }
    fn has_qos_modules(&self) -> bool {
        self.qos_modules
    }
    fn fresh(&self) -> Result<Box<dyn TestHost>, HostError> {
        enter_fresh_netns()?;
        let held = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| HostError::Unshare(format!("/proc/thread-self/ns/net: {e}")))?;
        let netns = thread_netns()
            .ok_or_else(|| HostError::Unshare("cannot read /proc/thread-self/ns/net".into()))?;
        let runner: Arc<dyn Runner> = if self.csum_workaround {
            Arc::new(CsumWorkaround(RealRunner::new()))
        } else {
            Arc::new(RealRunner::new())
        };
        Ok(Box::new(RealTestHost {
            runner,
            netns,
            _held: held,
        }))
    }
    fn driver_tools(&self) -> DriverTools {
        self.tools.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While a real host lives, no namespace created after its thread has
    /// moved on gets its `net:[inode]` (the kernel reuses a freed number at
    /// once): its snapshot and its drop find dnsmasq by that number.
    #[test]
    fn a_real_host_keeps_its_namespace_number_to_itself() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: not root");
            return;
        }
        std::thread::spawn(|| {
            let factory = RealFactory {
                act_csum: false,
                csum_workaround: false,
                qos_modules: false,
                tools: DriverTools {
                    dnsmasq_binary: "dnsmasq".into(),
                    leases_helper: "true".into(),
                },
            };
            let host = factory.fresh().unwrap_or_else(|e| panic!("{e}"));
            let mine = thread_netns().expect("own namespace");
            for i in 0..200 {
                enter_fresh_thread_netns().unwrap_or_else(|e| panic!("{e}"));
                let now = thread_netns().expect("namespace");
                assert_ne!(
                    now, mine,
                    "namespace #{i} created after the host's got its number"
                );
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            drop(host);
        })
        .join()
        .expect("the test thread");
    }

    /// The csum wrapper around a stand-in tc that, like tc 6.1 on a kernel
    /// without act_csum, runs batch lines until one with `csum` or `bad`
    /// fails (`Command failed -:K`, K counted in the input it was given),
    /// noting every line it ran: csum lines are skipped with a message and
    /// the batch goes on; any other failure ends it with tc's status and
    /// the line number of the whole input.
    #[test]
    fn csum_wrapper_skips_failing_csum_lines_of_a_batch_and_nothing_else() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let stub = dir.path().join("real-tc");
        std::fs::write(
            &stub,
            format!(
                "#!/bin/sh\nk=0\nwhile IFS= read -r l; do k=$((k + 1)); case $l in *csum*) echo 'Error: Failed to load TC action module.' >&2; echo \"Command failed -:$k\" >&2; exit 1;; *bad*) echo nope >&2; echo \"Command failed -:$k\" >&2; exit 1;; esac; echo \"$l\" >> '{}'; echo \"out $k\"; done\n",
                ran.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let wrapper = dir.path().join("tc");
        std::fs::write(&wrapper, tc_csum_wrapper_script(&stub.to_string_lossy())).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = |input: &str| {
            let _ = std::fs::remove_file(&ran);
            let out = RealRunner::new()
                .run(
                    &Cmd::new([wrapper.to_string_lossy().as_ref(), "-batch", "-"])
                        .with_stdin(input),
                )
                .unwrap();
            (out, std::fs::read_to_string(&ran).unwrap_or_default())
        };
        let csum = "filter add dev b prio 2 u32 match ip dport 68 ffff action csum ip and udp";
        // The start's batch: the qdisc runs, the csum line is skipped.
        let (out, lines) = run(&format!("qdisc add dev b root\n{csum}\n"));
        assert_eq!(out.status, 0, "{out:?}");
        assert_eq!(lines, "qdisc add dev b root\n");
        assert!(
            out.stderr.contains(
                "Command failed -:2\nvirtnet-conformance: kernel lacks act_csum; faked success"
            ),
            "{out:?}"
        );
        // Lines after a csum line really run; a later failure keeps its
        // number in the whole input and its status.
        let (out, lines) = run(&format!("a\n{csum}\nb\nbad\nc\n"));
        assert_eq!(out.status, 1, "{out:?}");
        assert_eq!(lines, "a\nb\n");
        assert!(
            out.stderr.ends_with("nope\nCommand failed -:4\n"),
            "{out:?}"
        );
        assert_eq!(out.stdout, "out 1\nout 1\n");
        // A failure that is not a csum filter is passed on as it is.
        let (out, lines) = run("bad\nx\n");
        assert_eq!((out.status, lines.as_str()), (1, ""), "{out:?}");
        assert_eq!(out.stderr, "nope\nCommand failed -:1\n");
        // `action csum` outside a `filter add` line is not excused.
        let (out, _) = run("qdisc add dev b root # action csum\n");
        assert_eq!(out.status, 1, "{out:?}");
    }

    #[test]
    fn stat_fields_after_a_command_name_with_parentheses() {
        assert_eq!(
            stat_state_ppid("421 (dnsmasq) Z 1 420 420 0 -1"),
            Some(('Z', 1))
        );
        assert_eq!(stat_state_ppid("7 (a) b) S 6 7"), Some(('S', 6)));
        assert_eq!(stat_state_ppid("7 (dnsmasq"), None);
    }

    #[test]
    fn a_script_helper_is_part_of_its_daemon_and_an_orphan_is_a_daemon() {
        let p = |pid, ppid, c: &str| DnsmasqProc {
            pid,
            ppid,
            cmdline: c.into(),
        };
        // Daemon 662 with helper 663; 900 a helper whose daemon is gone.
        let procs = [p(662, 1, "d"), p(663, 662, "d"), p(900, 1, "e")];
        assert_eq!(dnsmasq_daemons(&procs), ["d", "e"]);
    }
}
