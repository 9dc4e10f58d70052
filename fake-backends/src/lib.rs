//! virtnet-fake: a simulated host (nft, iptables/ip6tables, ip, tc, sysctl,
//! dnsmasq) that implements [`virtnet_runner::Runner`].
//!
//! The simulator parses the argv the real tools get, keeps their state,
//! prints what they print and fails where they fail (architecture
//! invariant 3). [`FakeHost`] (a `Mutex` inside, `&self`, `Send + Sync`)
//! dispatches on the basename of `argv[0]` — `nft`, `iptables`, `ip6tables`,
//! `iptables-save`, `ip6tables-save`, `ip`, `tc`, `sysctl`, `dnsmasq`,
//! `kill` — and anything else, `ebtables` included, is exit 127
//! "virtnet-fake: command not simulated: ARGV", never a silent success.
//! [`simulate`] is the pure dispatcher over a [`HostState`]. Every command
//! is recorded ([`record`]); faults are not the simulator's business
//! (`virtnet_testkit::FaultRunner` wraps any runner, this one included);
//! the whole host state can be snapshotted, compared, dumped, diffed and
//! saved to a JSON state file ([`state`]; [`FileBackedHost`] keeps a host
//! in such a file for `--host fake:PATH` and `virtnet sim`).
//!
//! Modules: [`nft`], [`iptables`], [`ip`], [`tc`] (each split into argument
//! parsing, model and output), [`sysctl`], [`procs`] (daemonised dnsmasq
//! with the real start-up checks, `kill`), [`xtnft`] (iptables-nft and nft
//! share one ruleset; the iptables→nft mirror is lazy, see there), [`seed`]
//! (Docker's and firewalld's rules, through the normal command path);
//! `usage/` holds the tools' usage texts.
//!
//! The `nft` arm tells the nft simulator which links exist
//! ([`nft::NftState::set_links`]), so `iif`/`oif` of a missing device fail
//! as in the kernel (the set is rebuilt only when the links changed); after
//! an `ip` command the tc and sysctl state of links that went away is
//! dropped.
//!
//! Fidelity is tested, not assumed. Against libvirt's data:
//! `tests/nft_golden.rs` and `tests/nft_commands_log.rs` (every nft command
//! of every real-daemon command log: exit code, stdout, stderr),
//! `tests/golden_replay.rs` (iptables/tc: every golden stream and captured
//! log, with the captured state checkpoints), `tests/xtnft_replay.rs` (every
//! captured `nft list ruleset` / `nft -a list ruleset` of those runs,
//! iptables-nft's tables included). Against the real tools in a fresh
//! `unshare -n` namespace (`virtnet_testkit::netns`; `skipped: why` when
//! that is impossible, a failure with `VIRTNET_REQUIRE_REAL=1`):
//! `tests/differential.rs`, `nft_differential.rs`,
//! `nft_differential_random.rs`, `nft_typed.rs` (sequences a person
//! exploring nft types), `typed_sequences.rs` (ip/tc/sysctl sequences of
//! `typed_sequences.txt`, with one documented normalisation of random
//! values and a `KNOWN` list of accepted mismatches), `xtnft_differential.rs`
//! (mixed iptables/ip6tables/nft sequences, scripted and seeded random;
//! `XTNFT_DIFF_SEEDS=N` for more), `dnsmasq_startup.rs`. And by properties:
//! `nft_properties.rs`, `iptables_props.rs`, `lazy_mirror.rs`, `no_panic.rs`.
//!
//! Known deviations (deliberate): packet and byte counters are always 0;
//! the host is always settled (a real kernel shows a fresh link-local
//! address `tentative` for 1-2 s, and may show a stale operstate for up to
//! 1 s); `iptables-save` comments carry a fixed date ([`SAVE_STAMP`]) and
//! dumps none; the kernel's automatic qdisc handles come from one counter
//! shared by all namespaces, the simulator counts per host; nft renaming a
//! chain of an iptables-nft table, and nft adding a base chain of another
//! type under a builtin chain's name, are refused as "not simulated" (the
//! real tools accept them). Each tool's module lists its own.
//!
//! ```
//! use virtnet_runner::Runner;
//! use virtnet_fake::FakeHost;
//! let host = FakeHost::new();
//! let out = host.run_argv(&["iptables", "-w", "-N", "FOO"]).unwrap();
//! assert!(out.success());
//! let out = host.run_argv(&["iptables", "-w", "-N", "FOO"]).unwrap();
//! assert_eq!(out.stderr, "iptables: Chain already exists.\n");
//! ```

pub mod file_host;
pub mod ip;
pub mod iptables;
pub mod nft;
pub mod procs;
pub mod record;
pub mod seed;
pub mod state;
pub mod sysctl;
pub mod tc;
pub mod trace;
pub mod xtnft;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use virtnet_runner::{Cmd, Output, RunError, Runner};

pub use file_host::FileBackedHost;
pub use record::{Outcome, Record};
pub use state::{assert_state_eq, diff_text, HostState, Section, StateFileError};

/// Exit status of a command the simulator does not know.
pub const NOT_SIMULATED_STATUS: i32 = 127;

#[derive(Debug, Default)]
struct Inner {
    /// The host, except that the nft mirrors of the iptables tables named
    /// in `pending` may be out of date (see [`Pending`]).
    state: HostState,
    pending: Pending,
    records: Vec<Record>,
    /// Commands given to the host so far (the index of the last one).
    count: u64,
}

/// The simulated host. Cheap to share (`&FakeHost` or `Arc<FakeHost>`);
/// all methods take `&self`.
#[derive(Debug, Default)]
pub struct FakeHost {
    inner: Mutex<Inner>,
}

impl FakeHost {
    /// A host that looks like a fresh network namespace (`unshare -n`).
    pub fn new() -> Self {
        FakeHost::default()
    }

    /// A host starting from the given state.
    pub fn with_state(state: HostState) -> Self {
        FakeHost {
            inner: Mutex::new(Inner {
                state,
                ..Inner::default()
            }),
        }
    }

    /// A host starting from a state file.
    pub fn load(path: &Path) -> Result<Self, StateFileError> {
        Ok(FakeHost::with_state(HostState::load_file(path)?))
    }

    /// A host from a state file, or a fresh one if the file does not exist.
    pub fn load_or_new(path: &Path) -> Result<Self, StateFileError> {
        if path.exists() {
            FakeHost::load(path)
        } else {
            Ok(FakeHost::new())
        }
    }

    /// Save the current state to a state file.
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        self.lock_settled().state.save_file(path)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in another thread while holding the lock leaves the state
        // as it was at that point; keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, with every pending nft mirror brought up to date: what
    /// anyone outside the command dispatch sees is always the whole host.
    fn lock_settled(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        let Inner { state, pending, .. } = &mut *inner;
        pending.flush(state);
        inner
    }

    /// A snapshot of the whole host.
    pub fn state(&self) -> HostState {
        self.lock_settled().state.clone()
    }

    /// `f` applied to the whole host, without the copy [`FakeHost::state`]
    /// makes (the lock is held meanwhile: `f` must not use this host). It
    /// sees what [`FakeHost::state`] returns, the nft mirrors of iptables
    /// writes included:
    ///
    /// ```
    /// use virtnet_fake::{FakeHost, Section};
    /// let host = FakeHost::new();
    /// host.exec(&["iptables", "-w", "-N", "FOO"], None).unwrap();
    /// let nft = host.inspect(|s| s.dump_section(Section::Nft));
    /// assert!(nft.contains("chain FOO"), "{nft}");
    /// assert_eq!(nft, host.state().dump_section(Section::Nft));
    /// ```
    pub fn inspect<T>(&self, f: impl FnOnce(&HostState) -> T) -> T {
        f(&self.lock_settled().state)
    }

    /// Replace the whole host state (records are kept).
    pub fn set_state(&self, state: HostState) {
        let mut inner = self.lock();
        inner.pending = Pending::default();
        inner.state = state;
    }

    /// Readable dump of the current state (see [`HostState::dump`]).
    pub fn dump(&self) -> String {
        self.lock_settled().state.dump()
    }

    /// All commands recorded so far.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// Return and forget the recorded commands.
    pub fn take_records(&self) -> Vec<Record> {
        std::mem::take(&mut self.lock().records)
    }

    /// The recorded commands in libvirt's golden format (argv only).
    pub fn golden(&self) -> String {
        let inner = self.lock();
        record::render_golden(inner.records.iter().map(|r| &r.cmd))
    }

    /// The recorded commands in the capture log format (with results).
    pub fn log(&self) -> String {
        record::render_log(&self.lock().records)
    }

    /// Number of commands given to the host so far.
    pub fn command_count(&self) -> u64 {
        self.lock().count
    }

    /// Make `tc ... action csum` fail like the reference kernel (which lacks
    /// `act_csum`), or succeed like a kernel that has it (the default).
    pub fn set_tc_csum_fails(&self, fails: bool) {
        self.lock().state.tc.csum_fails = fails;
    }

    /// Make `sfq` qdiscs, the `fw` classifier and the `police` action fail
    /// like the reference kernel (built without them), or work like a
    /// kernel that has them (the default; what libvirt's QoS needs).
    pub fn set_tc_qos_modules_missing(&self, missing: bool) {
        self.lock().state.tc.qos_modules_missing = missing;
    }

    /// Model a kernel with the dummy link driver (`ip link add X type
    /// dummy` works), or without it like the reference kernel (the default).
    pub fn set_dummy_driver(&self, has: bool) {
        self.lock().state.ip.dummy_driver = has;
    }

    /// Run a command given as string slices (convenience for tests/seeds).
    pub fn exec(&self, argv: &[&str], stdin: Option<&str>) -> Result<Output, RunError> {
        let mut cmd = Cmd::new(argv.iter().copied());
        if let Some(s) = stdin {
            cmd = cmd.with_stdin(s);
        }
        self.run(&cmd)
    }
}

impl Runner for FakeHost {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let mut inner = self.lock();
        inner.count += 1;
        let index = inner.count;
        if cmd.argv.is_empty() {
            inner.records.push(Record {
                index,
                cmd: cmd.clone(),
                outcome: Outcome::Empty,
            });
            return Err(RunError::Empty);
        }
        let Inner { state, pending, .. } = &mut *inner;
        let output = simulate_lazy(state, pending, cmd);
        inner.records.push(Record {
            index,
            cmd: cmd.clone(),
            outcome: Outcome::Ran {
                output: output.clone(),
            },
        });
        Ok(output)
    }
}

/// Fixed date printed in `iptables-save` comments (the simulator has no
/// clock, so output is reproducible).
pub const SAVE_STAMP: &str = "Thu Jan  1 00:00:00 1970";

/// iptables tables whose nft mirror (`crate::xtnft`) is not brought up to
/// date yet. An iptables write only marks its table here; the mirror is
/// rebuilt when something can see it — the next nft command, or a read of
/// the host state from outside the dispatch — so a run of iptables commands
/// (an iptables-backend start is nothing else) mirrors each table once, not
/// once per command. The mirror is a function of the iptables table alone,
/// so building it late gives the same ruleset as building it at once.
#[derive(Debug, Default)]
struct Pending {
    tables: Vec<(iptables::Family, String)>,
}

impl Pending {
    fn mark(&mut self, family: iptables::Family, table: &str) {
        if !self.tables.iter().any(|(f, t)| *f == family && t == table) {
            self.tables.push((family, table.to_string()));
        }
    }

    /// Mirror every marked table. Cannot fail in practice: a write into a
    /// table nft created is refused before it runs, so the mirror of a
    /// marked table never meets such a table; if it did, that table's mirror
    /// would stay as it was.
    fn flush(&mut self, state: &mut HostState) {
        if self.tables.is_empty() {
            return;
        }
        for (family, x) in [
            (iptables::Family::V4, &state.iptables),
            (iptables::Family::V6, &state.ip6tables),
        ] {
            let names: Vec<String> = self
                .tables
                .iter()
                .filter(|(f, _)| *f == family)
                .map(|(_, t)| t.clone())
                .collect();
            if !names.is_empty() {
                let _ = xtnft::sync_changed_to_nft(&mut state.nft, x, &names);
            }
        }
        self.tables.clear();
    }
}

/// Run one command against a host state: dispatch on the program basename.
pub fn simulate(state: &mut HostState, cmd: &Cmd) -> Output {
    let mut pending = Pending::default();
    let out = simulate_lazy(state, &mut pending, cmd);
    pending.flush(state);
    out
}

/// [`simulate`], leaving the nft mirrors of the iptables tables a command
/// wrote to `pending`.
fn simulate_lazy(state: &mut HostState, pending: &mut Pending, cmd: &Cmd) -> Output {
    let argv = &cmd.argv;
    // The basename (what `rsplit('/').next()` gives, by a byte search).
    let prog = argv
        .first()
        .map(|p| p.rfind('/').map_or(p.as_str(), |i| &p[i + 1..]))
        .unwrap_or("");
    let args = argv.get(1..).unwrap_or(&[]);
    match prog {
        "nft" => {
            pending.flush(state);
            // nft resolves `iif`/`oif` names against the links that exist
            // (the set is rebuilt only when the links changed).
            let same = state.nft.links().is_some_and(|known| {
                known.len() == state.ip.links.len()
                    && state.ip.links.iter().all(|l| known.contains(&l.name))
            });
            if !same {
                let links = state.ip.links.iter().map(|l| l.name.clone()).collect();
                state.nft.set_links(Some(links));
            }
            if state.nft.xt_tables().is_empty()
                && state.iptables.tables.is_empty()
                && state.ip6tables.tables.is_empty()
            {
                return state.nft.exec(args, cmd.stdin.as_deref());
            }
            let before = (
                state.nft.clone(),
                state.iptables.clone(),
                state.ip6tables.clone(),
            );
            let out = state.nft.exec(args, cmd.stdin.as_deref());
            // iptables-nft's tables are part of the same ruleset: carry what
            // nft did to them over, unless it left them alone (their mirrors
            // are as they were).
            let untouched = state.nft.xt_tables() == before.0.xt_tables()
                && state
                    .nft
                    .xt_tables()
                    .iter()
                    .all(|m| xt_mirror(&state.nft, m) == xt_mirror(&before.0, m));
            if untouched {
                return out;
            }
            let carried =
                xtnft::sync_from_nft(&state.nft, &mut state.iptables, &mut state.ip6tables)
                    .and_then(|()| {
                        xtnft::sync_to_nft(&mut state.nft, &state.iptables, &state.ip6tables)
                    });
            match carried {
                Ok(()) => out,
                Err(e) => {
                    (state.nft, state.iptables, state.ip6tables) = before;
                    Output::failed(1, format!("Error: {e}\n"))
                }
            }
        }
        "iptables" | "iptables-nft" | "ip6tables" | "ip6tables-nft" => {
            let (nft, x) = match xtables_of(state, prog) {
                Ok(pair) => pair,
                Err(out) => return out,
            };
            // Only the table the command addressed can change, and only if
            // it writes: that table alone is mirrored again (see
            // xtnft::sync_changed_to_nft). A write into a table nft created
            // itself is refused before it runs (not simulated).
            let fam = match x.family {
                iptables::Family::V4 => nft::Family::Ip,
                iptables::Family::V6 => nft::Family::Ip6,
            };
            let foreign: Vec<String> =
                nft.tables()
                    .iter()
                    .filter(|t| {
                        t.family == fam
                            && !nft.xt_tables().iter().any(|m| {
                                m.family == fam && m.name == t.name && m.handle == t.handle
                            })
                    })
                    .map(|t| t.name.clone())
                    .collect();
            let (out, addressed) = x.exec_addressed(
                args,
                &mut || nft.alloc_table_handle(),
                &mut |table| {
                    foreign.iter().any(|n| n == table).then(|| {
                        format!(
                            "{prog}: command not simulated: iptables on table {} {table}, which nft created\n",
                            fam.as_str()
                        )
                    })
                },
            );
            if let Some(a) = addressed.filter(|a| a.writes) {
                pending.mark(x.family, &a.table);
            }
            out
        }
        "iptables-restore"
        | "ip6tables-restore"
        | "iptables-nft-restore"
        | "ip6tables-nft-restore" => restore_cmd(state, pending, prog, args, cmd.stdin.as_deref()),
        "iptables-save" | "ip6tables-save" | "iptables-nft-save" | "ip6tables-nft-save" => {
            match xtables_of(state, prog) {
                Ok((_, x)) => save_cmd(x, args),
                Err(out) => out,
            }
        }
        "ip" => {
            tell_ip(state);
            let before = link_names_hash(state);
            let out = state.ip.exec(args);
            // Devices of links that went away lose their tc and sysctl
            // state; most `ip` commands change no link name.
            if link_names_hash(state) != before {
                prune_removed_links(state);
            }
            out
        }
        "tc" => {
            let links: Vec<tc::TcLink> = state
                .ip
                .links
                .iter()
                .map(|l| tc::TcLink {
                    name: l.name.clone(),
                    default_qdisc: (l.up || l.qdisc_attached)
                        .then(|| ip::IpState::default_qdisc(l)),
                })
                .collect();
            if args.first().is_some_and(|a| a == "-batch") {
                // `tc -batch -`: the lines of stdin, as tc runs them (only
                // standard input is simulated, not a file).
                return match (args.get(1).map(String::as_str), args.len()) {
                    (Some("-"), 2) => state
                        .tc
                        .exec_batch(cmd.stdin.as_deref().unwrap_or(""), &links),
                    _ => not_simulated(argv),
                };
            }
            state.tc.exec(args, &links)
        }
        "sysctl" => {
            let links: Vec<String> = state.ip.links.iter().map(|l| l.name.clone()).collect();
            let out = state.sysctl.exec(args, &links);
            // Disabling IPv6 on a link removes its IPv6 addresses at once;
            // enabling it again configures IPv6 if the link is ready.
            tell_ip(state);
            for l in &links {
                if state.ip.v6_disabled.contains(l) {
                    state.ip.disable_v6(l);
                }
            }
            state.ip.settle();
            out
        }
        "dnsmasq" => state.procs.dnsmasq(argv),
        "kill" => state.procs.kill(args),
        _ => not_simulated(argv),
    }
}

/// The nft table that mirrors iptables-nft table `m`.
fn xt_mirror<'a>(
    n: &'a crate::nft::NftState,
    m: &crate::nft::XtTable,
) -> Option<&'a crate::nft::Table> {
    n.tables()
        .iter()
        .find(|t| t.family == m.family && t.name == m.name && t.handle == m.handle)
        .map(|t| &**t)
}

/// Tell the `ip` simulator what other tools decided: IPv6 disabled per
/// link (sysctl) and root qdiscs (tc). Each is rebuilt only when it
/// differs from what `ip` already holds.
fn tell_ip(state: &mut HostState) {
    // The links whose `net.ipv6.conf.LINK.disable_ipv6` is set and not "0",
    // in link order (keys built in one reused buffer).
    const PREFIX: &str = "net.ipv6.conf.";
    const SUFFIX: &str = ".disable_ipv6";
    let values = &state.sysctl.values;
    let mut key = String::with_capacity(64);
    let mut is_disabled = |name: &str| {
        key.clear();
        key.push_str(PREFIX);
        key.push_str(name);
        key.push_str(SUFFIX);
        values.get(key.as_str()).is_some_and(|v| v != "0")
    };
    // Most hosts disable IPv6 nowhere: then no link needs a look-up.
    let any_disabled = values
        .range::<str, _>((
            std::ops::Bound::Included(PREFIX),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(k, _)| k.starts_with(PREFIX))
        .any(|(k, v)| v != "0" && k.ends_with(SUFFIX));
    let ip = &mut state.ip;
    // Rebuilt only when it differs (it rarely changes).
    let same = if any_disabled {
        let mut now = ip.links.iter().filter(|l| is_disabled(&l.name));
        let mut was = ip.v6_disabled.iter();
        loop {
            match (now.next(), was.next()) {
                (None, None) => break true,
                (Some(l), Some(w)) if l.name == *w => {}
                _ => break false,
            }
        }
    } else {
        ip.v6_disabled.is_empty()
    };
    if !same {
        ip.v6_disabled = if any_disabled {
            ip.links
                .iter()
                .filter(|l| is_disabled(&l.name))
                .map(|l| l.name.clone())
                .collect()
        } else {
            Vec::new()
        };
    }
    let qdiscs = &state.tc.qdiscs;
    let same_qdiscs = ip.root_qdiscs.len() == qdiscs.len()
        && ip
            .root_qdiscs
            .iter()
            .zip(qdiscs.iter())
            .all(|((d, k), (d2, q))| d == d2 && *k == q.kind);
    if !same_qdiscs {
        ip.root_qdiscs = qdiscs
            .iter()
            .map(|(d, q)| (d.clone(), q.kind.clone()))
            .collect();
    }
}

/// The iptables or ip6tables model `prog` addresses and the nft ruleset it
/// shares, after the tables nft created under iptables' names were adopted
/// (they are iptables' tables too, as in the kernel).
fn xtables_of<'a>(
    state: &'a mut HostState,
    prog: &str,
) -> Result<(&'a mut nft::NftState, &'a mut iptables::XtablesState), Output> {
    let HostState {
        nft,
        iptables,
        ip6tables,
        ..
    } = state;
    let x = if prog.starts_with("ip6") {
        ip6tables
    } else {
        iptables
    };
    xtnft::adopt_nft_tables(nft, x).map_err(|e| Output::failed(1, format!("{prog}: {e}\n")))?;
    Ok((nft, x))
}

fn save_cmd(x: &iptables::XtablesState, args: &[String]) -> Output {
    let prog = format!("{}-save", x.family.prog());
    let usage = |msg: String| {
        Output::failed(
            1,
            format!("{prog}: {msg}\nLook at manual page `{prog}.8' for more information.\n"),
        )
    };
    let mut table: Option<&str> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            // getopt_long accepts unambiguous prefixes.
            let full = ["table", "counters"]
                .into_iter()
                .find(|o| !name.is_empty() && o.starts_with(name));
            match full {
                Some("table") => match inline.or_else(|| args.get(i).map(String::as_str)) {
                    Some(v) => {
                        if inline.is_none() {
                            i += 1;
                        }
                        table = Some(v);
                    }
                    None => return usage("option '--table' requires an argument".into()),
                },
                Some(_) => {}
                None => return usage(format!("unrecognized option '{a}'")),
            }
        } else if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (k, c) in short.char_indices() {
                match c {
                    'c' => {}
                    't' => {
                        let rest = &short[k + 1..];
                        if !rest.is_empty() {
                            table = Some(rest);
                        } else if let Some(v) = args.get(i) {
                            table = Some(v.as_str());
                            i += 1;
                        } else {
                            return usage("option requires an argument -- 't'".into());
                        }
                        break;
                    }
                    o => return usage(format!("invalid option -- '{o}'")),
                }
            }
        } else {
            return Output::failed(1, String::from("Unknown arguments found on commandline\n"));
        }
    }
    match table {
        None => Output::ok(x.save(Some(SAVE_STAMP))),
        Some(t) => {
            let mut only = x.clone();
            only.tables.retain(|k, _| k == t);
            // A named table that no command created yet is still printed,
            // with its builtin chains (as -S lists their policies).
            if only.tables.is_empty() {
                match iptables::unborn_table(t) {
                    Some(tb) => {
                        only.tables.insert(t.to_string(), tb);
                    }
                    None => {
                        return Output::failed(1, format!("Table `{t}' does not exist\n"));
                    }
                }
            }
            Output::ok(only.save(Some(SAVE_STAMP)))
        }
    }
}

/// A hash of the link names, in order (cheap change detection; internal,
/// so FxHash).
fn link_names_hash(state: &HostState) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    for l in &state.ip.links {
        l.name.hash(&mut h);
    }
    h.finish()
}

fn prune_removed_links(state: &mut HostState) {
    let links = &state.ip.links;
    let exists = |d: &str| links.iter().any(|l| l.name == d);
    let gone: Vec<String> = state
        .tc
        .qdiscs
        .keys()
        .chain(state.tc.filters.keys())
        .chain(state.tc.ingress.iter())
        .chain(state.tc.ingress_queue.iter())
        .chain(state.tc.classes.keys())
        .chain(state.tc.children.keys())
        .filter(|d| !exists(d))
        .cloned()
        .collect();
    for d in gone {
        // A device can be named by several maps: dropping it once drops
        // them all, again is harmless.
        state.tc.drop_device(&d);
    }
    // One name per device (a device has several keys; dropping it once
    // drops them all).
    let mut gone_sysctl: Vec<&str> = state
        .sysctl
        .values
        .keys()
        .filter_map(|k| {
            k.strip_prefix("net.ipv6.conf.")
                .or_else(|| k.strip_prefix("net.ipv4.conf."))
        })
        .filter_map(|k| k.rsplit_once('.').map(|(i, _)| i))
        .filter(|i| *i != "all" && *i != "default" && !exists(i))
        .collect();
    if gone_sysctl.is_empty() {
        return;
    }
    gone_sysctl.sort_unstable();
    gone_sysctl.dedup();
    let gone_sysctl: Vec<String> = gone_sysctl.into_iter().map(str::to_string).collect();
    for d in gone_sysctl {
        state.sysctl.drop_device(&d);
    }
}

/// The output for a command the simulator does not know: exit 127 (as a
/// shell reports a missing command) and a message naming the argv.
pub fn not_simulated(argv: &[String]) -> Output {
    Output::failed(
        NOT_SIMULATED_STATUS,
        format!(
            "virtnet-fake: command not simulated: {}\n",
            argv.iter()
                .map(|a| record::shell_escape(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
}

/// `iptables-restore` / `ip6tables-restore` (iptables-nft 1.8.9), with
/// `--noflush` only (without it the named tables would be flushed: not
/// simulated). Each `*table` section is one transaction, committed at its
/// `COMMIT`: a failing line, or a section without `COMMIT`, leaves that
/// section without effect and stops there, while the sections committed
/// before it stay (as the real tool, checked in a namespace). `:CHAIN
/// POLICY [P:B]` creates a user chain, or flushes it if it exists, or sets
/// a built-in chain's policy (`-` keeps it); every other line is an
/// iptables command in that table, run by the simulated iptables.
fn restore_cmd(
    state: &mut HostState,
    pending: &mut Pending,
    prog: &str,
    args: &[String],
    stdin: Option<&str>,
) -> Output {
    let v6 = prog.starts_with("ip6");
    let base = if v6 {
        "ip6tables-restore"
    } else {
        "iptables-restore"
    };
    let ipt = if v6 { "ip6tables" } else { "iptables" };
    let try_line = format!("Try `{base} -h' or '{base} --help' for more information.\n");
    let mut noflush = false;
    let mut k = 0;
    while k < args.len() {
        match args[k].as_str() {
            "-n" | "--noflush" => noflush = true,
            "-w" | "--wait" => {
                if args
                    .get(k + 1)
                    .is_some_and(|a| a.chars().all(|c| c.is_ascii_digit()))
                {
                    k += 1;
                }
            }
            other => {
                return Output::failed(
                    1,
                    format!("{base}: command not simulated: option {other}\n"),
                )
            }
        }
        k += 1;
    }
    if !noflush {
        return Output::failed(
            1,
            format!("{base}: command not simulated: restore without --noflush\n"),
        );
    }
    let input = stdin.unwrap_or("");
    let mut table: Option<String> = None;
    let mut snapshot = None;
    let mut last = 0;
    for (n, raw) in input.lines().enumerate() {
        let lineno = n + 1;
        last = lineno;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(t) = line.strip_prefix('*') {
            if !matches!(t, "filter" | "nat" | "mangle" | "raw" | "security") {
                return Output::failed(
                    2,
                    format!(
                        "{base} v1.8.9 (nf_tables): {base}: line {lineno} table name '{t}' invalid\nError occurred at line: {lineno}\n{try_line}"
                    ),
                );
            }
            pending.flush(state);
            snapshot = Some((
                state.nft.clone(),
                state.iptables.clone(),
                state.ip6tables.clone(),
            ));
            table = Some(t.to_string());
            continue;
        }
        let Some(t) = table.clone() else {
            return Output::failed(
                2,
                format!("Bad argument `{line}'\nError occurred at line: {lineno}\n{try_line}"),
            );
        };
        let mut rollback = |state: &mut HostState, pending: &mut Pending| {
            if let Some((a, b, c)) = snapshot.take() {
                pending.tables.clear();
                (state.nft, state.iptables, state.ip6tables) = (a, b, c);
            }
        };
        if line == "COMMIT" {
            snapshot = None;
            table = None;
            continue;
        }
        let cmds: Vec<Vec<String>> = if let Some(decl) = line.strip_prefix(':') {
            let w: Vec<&str> = decl.split_whitespace().collect();
            let (Some(chain), Some(policy)) = (w.first(), w.get(1)) else {
                rollback(state, pending);
                return Output::failed(
                    2,
                    format!("{base}: line {lineno}: bad chain declaration\n{try_line}"),
                );
            };
            let builtin = matches!(
                *chain,
                "INPUT" | "OUTPUT" | "FORWARD" | "PREROUTING" | "POSTROUTING"
            );
            if builtin {
                if *policy == "-" {
                    vec![]
                } else {
                    vec![vec!["-P".into(), chain.to_string(), policy.to_string()]]
                }
            } else {
                let x = if v6 {
                    &state.ip6tables
                } else {
                    &state.iptables
                };
                let exists = x
                    .tables
                    .get(&t)
                    .is_some_and(|tb| tb.chains.contains_key(*chain));
                vec![vec![
                    if exists { "-F" } else { "-N" }.into(),
                    chain.to_string(),
                ]]
            }
        } else {
            vec![line.split_whitespace().map(str::to_string).collect()]
        };
        for c in cmds {
            let mut argv = vec![ipt.to_string(), "-t".to_string(), t.clone()];
            argv.extend(c);
            let out = simulate_lazy(state, pending, &Cmd::new(argv));
            if !out.success() {
                rollback(state, pending);
                let msg = out.stderr.lines().next().unwrap_or("").to_string();
                if out.status == 2 {
                    // A jump to a chain that does not exist is found when
                    // the section is committed (iptables-nft 1.8.9 names
                    // the COMMIT line); other parameter problems at their
                    // own line.
                    let at = if msg.contains("does not exist") {
                        input
                            .lines()
                            .enumerate()
                            .skip(n + 1)
                            .find(|(_, l)| l.trim() == "COMMIT")
                            .map_or(last + 1, |(i, _)| i + 1)
                    } else {
                        lineno
                    };
                    let msg = msg.replacen(
                        &format!("{ipt} v1.8.9 (nf_tables): "),
                        &format!("{base} v1.8.9 (nf_tables): "),
                        1,
                    );
                    return Output::failed(
                        2,
                        format!("{msg}\nError occurred at line: {at}\n{try_line}"),
                    );
                }
                let reason = msg
                    .strip_prefix(&format!("{ipt}: "))
                    .or_else(|| msg.strip_prefix(&format!("{ipt} v1.8.9 (nf_tables): ")))
                    .unwrap_or(&msg)
                    .trim()
                    .to_string();
                return Output::failed(1, format!("{base}: line {lineno} failed: {reason}\n"));
            }
        }
    }
    if table.is_some() {
        if let Some((a, b, c)) = snapshot.take() {
            pending.tables.clear();
            (state.nft, state.iptables, state.ip6tables) = (a, b, c);
        }
        return Output::failed(1, format!("{base}: COMMIT expected at line {}\n", last + 1));
    }
    Output::ok(String::new())
}
