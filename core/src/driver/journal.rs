//! Write-ahead journal of what a start (or a firewall reload) created on
//! the host, so that a crash between creating something and saving the
//! status file never leaks it.
//!
//! [`JournalRunner`] wraps the driver's runner: before a command that
//! creates something runs, its *intent* is appended to
//! `STATE_DIR/NAME.journal` (what it will create, so that recovery can
//! find it); every command that succeeds is appended, with the part of its
//! stdout its undo needs (nft's `# handle N` echo; see
//! [`journaled_stdout`]), in the file before the next command runs; a
//! creation that fails is noted as failed. An intent that never reported
//! back — the daemon died while the command ran, which completes all the
//! same — is looked up on the host by [`recovery_plan`] and undone if
//! there (the lookups run during recovery only: the command streams of a
//! start are unchanged). The driver adds notes for facts that
//! are not commands (the pid dnsmasq wrote, the previous value of a global
//! sysctl). The journal is opened when the operation begins (a journal that
//! cannot be opened refuses the operation before it changes anything) and
//! deleted when it ends (the status file that accounts for it was saved, or
//! its creations were undone).
//!
//! An entry is appended with one `write(2)` on the file opened `O_APPEND`:
//! once `write` returns, the bytes are in the kernel's page cache, where
//! every reader sees them and where they survive the death of the process.
//! A write that fails (disk full, I/O error, read-only file system) is an
//! error, never a crash: the command whose entry could not be written
//! returns an error, the journal refuses to run any further command (none
//! may run unjournaled), and the driver undoes the operation from the
//! journal's in-memory plan and reports the failed write.
//!
//! The journal guards against a crash of the daemon, not of the machine,
//! and is therefore not fsynced. Everything it records — rules, links,
//! addresses, qdiscs, sysctl values, processes — is kernel state that a
//! machine crash wipes, and the state directory is `/run` (tmpfs) in a
//! normal installation. (On a state directory on disk, an fsynced journal
//! would even be harmful after a reboot: its undo plan would be replayed
//! against a kernel that never saw those commands.)
//!
//! File format: JSON lines ([`Entry`]). Intents are notes (`{"note":
//! "intent", "key": PROGRAM, "value": ARGV-AS-JSON}`, and `"failed"`), so
//! the reader of the release before intents reads a newer journal and
//! ignores them (it then undoes what was confirmed, as it always did). A reader ignores a torn last line,
//! and stops at a zero byte: journals of the release that stored entries
//! through a shared mapping end with zeros, and an emptied one starts with
//! a zero (no journal).
//!
//! [`undo_plan`] derives, from the entries, the inverse of every creation
//! (iptables and nft through [`crate::firewall::inverse`], the derivation
//! the firewall engine's auto-rollback uses) that is still outstanding —
//! creations later undone by a recorded command (e.g. the firewall engine's
//! own rollback) cancel out — in reverse order:
//!
//! | recorded | inverse |
//! |---|---|
//! | `iptables -w ... --insert/--append ...` | same with `--delete` |
//! | `nft -ae insert/add rule FAM TABLE CHAIN ...` echoing `# handle N` | `nft delete rule FAM TABLE CHAIN handle N` |
//! | `tc filter add ...` | same with `del` |
//! | `tc qdisc add dev D root ...` / `tc qdisc add dev D ingress` | `tc qdisc del dev D root` / `... ingress` |
//! | `ip link add name BR ...` | `ip link del BR` |
//! | `ip addr/route add ...` | same with `del` |
//! | `ip link set dev BR up` | `ip link set dev BR down` |
//! | `sysctl -w KEY=V` of a global key, with a noted previous value | `sysctl -w KEY=PREV` |
//! | `dnsmasq --conf-file=...` with a noted pid | `kill PID` |
//!
//! Private chains (`--new-chain`, jumps from built-in chains to `LIBVIRT_*`,
//! nft tables/chains and the echo-less jump rules) are shared by all
//! networks and kept, as libvirt keeps them.

use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::firewall::inverse;
use virtnet_runner::{Cmd, Output, RunError, Runner};

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// A command that exited 0, with what it printed.
    Ran { argv: Vec<String>, stdout: String },
    /// A fact that is not a command (`dnsmasq-pid`, `sysctl-prev`).
    Note {
        note: String,
        key: String,
        value: String,
    },
}

/// An append-only journal file, with its undo plan kept in memory as
/// entries are appended.
///
/// Only entries that change the undo plan are written (creations, the
/// commands that cancel them, notes): replaying the file gives the same plan
/// as replaying every command would, so queries (`--list-rules`, `sysctl
/// -n`, `dnsmasq --version`) and deletions of nothing outstanding cost no
/// write. Every written entry reaches the file before the next command runs
/// (see the module documentation for why it is not fsynced).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// Asked before the file is created and before every entry is written
    /// (injected write failures; open in a real configuration).
    gate: crate::store::WriteGate,
    state: Mutex<JournalState>,
}

#[derive(Debug)]
struct JournalState {
    file: fs::File,
    tracker: UndoTracker,
    /// Reused serialisation buffer.
    line: Vec<u8>,
    /// The first write that failed: from then on no command may run.
    write_failure: Option<String>,
}

/// The borrowed form of [`Entry::Ran`] (same JSON).
#[derive(serde::Serialize)]
struct RanRef<'a> {
    argv: &'a [String],
    stdout: &'a str,
}

impl Journal {
    /// Opens an empty journal at `path` (a file already there, left by an
    /// earlier operation, is emptied; the directory is created if missing).
    pub fn create(path: &Path) -> io::Result<Journal> {
        Journal::create_gated(path, crate::store::WriteGate::open())
    }

    /// [`Journal::create`] with its writes checked by `gate` (see
    /// [`crate::store::WriteGate`]).
    pub fn create_gated(path: &Path, gate: crate::store::WriteGate) -> io::Result<Journal> {
        gate.check(path)?;
        let open = || {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_APPEND)
                // Only the driver reads it (a umask can only narrow this).
                .mode(crate::store::PRIVATE_FILE_MODE)
                .open(path)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                open()?
            }
            r => r?,
        };
        Ok(Journal {
            path: path.to_path_buf(),
            gate,
            state: Mutex::new(JournalState {
                file,
                tracker: UndoTracker::default(),
                line: Vec::new(),
                write_failure: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the journal could not be written, if a write failed: the
    /// operation must then be undone (see the module documentation).
    pub fn write_failure(&self) -> Option<String> {
        self.lock().write_failure.clone()
    }

    /// Writes the serialised entry in `st.line` with one `write(2)`
    /// (`O_APPEND`); a failure is remembered.
    fn write_line(&self, st: &mut JournalState) -> io::Result<()> {
        st.line.push(b'\n');
        let JournalState {
            file,
            line,
            write_failure,
            ..
        } = st;
        // `write_all`: a short write (a signal, a nearly full disk) goes
        // on where it stopped, still before the next command runs.
        let result = self
            .gate
            .check(&self.path)
            .and_then(|()| file.write_all(line));
        if let Err(e) = &result {
            write_failure.get_or_insert_with(|| e.to_string());
        }
        result
    }

    /// Appends one entry (if it changes the undo plan).
    pub fn append(&self, entry: &Entry) -> io::Result<()> {
        let mut st = self.lock();
        if !st.tracker.push(entry) {
            return Ok(());
        }
        st.line.clear();
        serde_json::to_writer(&mut st.line, entry).map_err(io::Error::other)?;
        self.write_line(&mut st)
    }

    /// Appends a successful command (see [`Journal::append`]); of its
    /// stdout only [`journaled_stdout`] is written.
    pub fn append_ran(&self, argv: &[String], stdout: &str) -> io::Result<()> {
        let stdout = journaled_stdout(stdout);
        let mut st = self.lock();
        if !st.tracker.push_ran(argv, stdout) {
            return Ok(());
        }
        st.line.clear();
        serde_json::to_writer(&mut st.line, &RanRef { argv, stdout }).map_err(io::Error::other)?;
        self.write_line(&mut st)
    }

    /// Whether `argv` creates something the undo plan would undo (see
    /// [`UndoTracker::needs_intent`]).
    pub fn needs_intent(&self, argv: &[String]) -> bool {
        self.lock().tracker.needs_intent(argv)
    }

    /// Appends the intent to run `argv` (`kind` [`INTENT`]) or the news
    /// that it failed (`kind` [`FAILED`]): a note whose value is the argv
    /// as a JSON array.
    fn append_intent(&self, argv: &[String], kind: &str) -> io::Result<()> {
        let value = serde_json::to_string(argv).map_err(io::Error::other)?;
        self.note(
            kind,
            basename(argv.first().map(String::as_str).unwrap_or("")),
            &value,
        )
    }

    /// Adds a note.
    pub fn note(&self, note: &str, key: &str, value: &str) -> io::Result<()> {
        self.append(&Entry::Note {
            note: note.to_string(),
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// The undo plan of everything appended so far ([`undo_plan`] of the
    /// entries, kept up to date in memory: no re-reading of the file).
    pub fn undo_plan(&self) -> Vec<Vec<String>> {
        self.lock().tracker.plan()
    }

    /// [`Journal::undo_plan`], taken out of the journal to be run (after a
    /// failed operation): what is appended afterwards starts a new plan.
    /// The file keeps its entries until the journal is removed.
    pub fn take_undo_plan(&self) -> Vec<Vec<String>> {
        self.lock().tracker.take_plan()
    }

    /// Deletes the journal (after the status file that accounts for it was
    /// saved, or after its creations were undone).
    pub fn remove(self) -> io::Result<()> {
        let path = self.path.clone();
        drop(self);
        crate::store::remove_if_exists(&path)
    }

    /// Reads a journal file: its lines up to the first zero byte (see the
    /// module documentation). A torn last line (crash while appending) is
    /// ignored; any other unreadable line is an error naming the line. A
    /// journal without an entry is an empty list.
    pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
        let err = |e: io::Error| format!("{}: {e}", path.display());
        let f = fs::File::open(path).map_err(err)?;
        let mut bytes = Vec::new();
        io::BufReader::new(f)
            .read_until(0, &mut bytes)
            .map_err(err)?;
        if bytes.last() == Some(&0) {
            bytes.pop();
        }
        let lines: Vec<String> = bytes
            .as_slice()
            .lines()
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut out = Vec::new();
        let n = lines.len();
        for (i, l) in lines.iter().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(l) {
                Ok(e) => out.push(e),
                Err(_) if i + 1 == n => {}
                Err(e) => return Err(format!("{}:{}: {e}", path.display(), i + 1)),
            }
        }
        Ok(out)
    }

    /// Whether the journal file at `path` holds anything: a missing file,
    /// an empty one and one that starts with a zero byte (an emptied
    /// journal of an earlier release) are no journal; a file that cannot be
    /// read is one.
    pub fn is_pending(path: &Path) -> bool {
        use std::io::Read;
        let mut first = [0u8; 1];
        match fs::File::open(path) {
            Ok(mut f) => match f.read(&mut first) {
                Ok(0) => false,
                Ok(_) => first[0] != 0,
                Err(_) => true,
            },
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    }
}

/// A runner that journals every successful command before returning.
/// Once a journal write failed, it runs nothing more: every command is
/// refused with the reason.
pub struct JournalRunner<'a> {
    inner: &'a dyn Runner,
    journal: &'a Journal,
}

impl<'a> JournalRunner<'a> {
    pub fn new(inner: &'a dyn Runner, journal: &'a Journal) -> Self {
        JournalRunner { inner, journal }
    }
}

impl Runner for JournalRunner<'_> {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.journaled(cmd, |cmd| self.inner.run(cmd))
    }

    /// Journals the command line exactly as [`JournalRunner::run`]
    /// journals it (a SIGTERM to a dnsmasq this journal started resolves
    /// that dnsmasq's undo; a `sysctl -w` notes its undo), but carries it
    /// out through the inner runner's own [`Runner::run_direct`] (kill(2)
    /// and `/proc` on the real host, no process).
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.journaled(cmd, |cmd| self.inner.run_direct(cmd))
    }

    fn has_program(&self, name: &str) -> bool {
        self.inner.has_program(name)
    }

    fn is_zombie(&self, pid: &str) -> bool {
        self.inner.is_zombie(pid)
    }
}

impl JournalRunner<'_> {
    /// Runs `cmd` with `exec`, journaling it before (its intent, a batch's
    /// undo) and after (what ran, or that it failed).
    fn journaled(
        &self,
        cmd: &Cmd,
        exec: impl FnOnce(&Cmd) -> Result<Output, RunError>,
    ) -> Result<Output, RunError> {
        if let Some(why) = self.journal.write_failure() {
            return Err(RunError::Spawn {
                program: cmd.program().to_string(),
                reason: format!(
                    "not run: the journal {} could not be written: {why}",
                    self.journal.path.display()
                ),
            });
        }
        let not_journaled = |e: io::Error, what: &str| RunError::Spawn {
            program: cmd.program().to_string(),
            reason: format!(
                "{what} could not be journaled in {}: {e}",
                self.journal.path.display()
            ),
        };
        // The intent reaches the file before the command runs: a crash
        // while it runs (or before its result is journaled) leaves an
        // intent that recovery looks up on the host.
        let intent = !sabotage::recording_after_effect() && self.journal.needs_intent(&cmd.argv);
        if intent {
            self.journal
                .append_intent(&cmd.argv, INTENT)
                .map_err(|e| not_journaled(e, "not run: its intent"))?;
        }
        // A batch (stdin script): its undo is known before it runs (the
        // removal derived from the script, harmless where nothing was
        // created), so it is journaled as such.
        let batch = crate::rules::batched::batch_undo(cmd);
        let batch_note = if batch.is_empty() {
            None
        } else {
            let value = serde_json::to_string(&batch).map_err(|e| RunError::Spawn {
                program: cmd.program().to_string(),
                reason: e.to_string(),
            })?;
            self.journal
                .note(BATCH_INTENT, cmd.program(), &value)
                .map_err(|e| not_journaled(e, "not run: its intent"))?;
            Some(value)
        };
        let result = exec(cmd);
        if let Some(value) = &batch_note {
            let failed = match &result {
                Ok(out) => !out.success(),
                Err(RunError::Crashed { .. }) => false,
                Err(_) => true,
            };
            // A failed batch: its transactions that failed created nothing;
            // those that committed (iptables-restore commits each table,
            // `tc -batch -` each line) are removed by the caller right
            // away, from its own plan (a tc batch's root qdisc goes with
            // the bridge the start's undo deletes).
            if failed {
                self.journal
                    .note(BATCH_FAILED, cmd.program(), value)
                    .map_err(|e| not_journaled(e, "failed, and that"))?;
            }
        }
        match &result {
            Ok(out) if out.success() => {
                self.journal
                    .append_ran(&cmd.argv, &out.stdout)
                    .map_err(|e| not_journaled(e, "ran, but"))?;
            }
            // The process died: nothing more is written (recovery finds
            // the intent unresolved).
            Err(RunError::Crashed { .. }) => {}
            // It ran and failed, or could not be started: it created
            // nothing.
            _ if intent => {
                self.journal
                    .append_intent(&cmd.argv, FAILED)
                    .map_err(|e| not_journaled(e, "failed, and that"))?;
            }
            _ => {}
        }
        result
    }
}

/// Note kinds of the intent protocol (notes, so that the reader of the
/// release before intents reads such a journal and ignores them).
const INTENT: &str = "intent";
const FAILED: &str = "failed";
/// A batch (`nft -f -`, `iptables-restore`, `tc -batch -`) about to run, with its undo
/// (a JSON array of argvs, in the order they run) / the news it failed.
const BATCH_INTENT: &str = "intent-batch";
const BATCH_FAILED: &str = "failed-batch";

/// Test-only mutation (cargo feature `sabotage`, never on in a shipped
/// build): when switched on with [`sabotage::record_after_effect`], the
/// journal records a creation only after the command succeeded, as before
/// intents existed, so a crash after a command's effect leaks what it
/// created. It exists to prove that the property tests catch that (`cargo
/// xtask props --mutant record-after-effect`).
#[doc(hidden)]
pub mod sabotage {
    #[cfg(feature = "sabotage")]
    static RECORD_AFTER_EFFECT: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    /// Switches the mutation on or off for the whole process.
    #[cfg(feature = "sabotage")]
    pub fn record_after_effect(on: bool) {
        RECORD_AFTER_EFFECT.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Is the mutation on? (Always false without the feature.)
    pub(crate) fn recording_after_effect() -> bool {
        #[cfg(feature = "sabotage")]
        {
            RECORD_AFTER_EFFECT.load(std::sync::atomic::Ordering::SeqCst)
        }
        #[cfg(not(feature = "sabotage"))]
        {
            false
        }
    }
}

/// The part of a command's stdout that [`inverse`] reads: the `# handle N`
/// of an nft echo, or nothing. Writing only that keeps journal lines short
/// (an nft echo repeats the whole rule); a journal written with whole
/// stdouts (earlier releases) gives the same plan.
pub fn journaled_stdout(stdout: &str) -> &str {
    inverse::nft_handle_echo(stdout).unwrap_or("")
}

fn basename(p: &str) -> &str {
    match p.bytes().rposition(|b| b == b'/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

const BUILTIN_CHAINS: &[&str] = &["INPUT", "OUTPUT", "FORWARD", "POSTROUTING", "PREROUTING"];

/// The inverse of one successful command, or `None` if it created nothing
/// that belongs to one network. `notes` gives the noted facts so far.
pub fn inverse(
    argv: &[String],
    stdout: &str,
    notes: &[(String, String, String)],
) -> Option<Vec<String>> {
    let prog = basename(argv.first()?);
    let args = &argv[1..];
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match prog {
        "iptables" | "ip6tables" | "ebtables" => {
            let pos = args.iter().position(|a| inverse::is_iptables_create(a))?;
            let chain = args.get(pos + 1)?;
            let jumps_private = args
                .windows(2)
                .any(|w| (w[0] == "--jump" || w[0] == "-j") && w[1].starts_with("LIBVIRT_"));
            if BUILTIN_CHAINS.contains(&chain.as_str()) && jumps_private {
                return None; // private-chain jump, kept like libvirt does
            }
            inverse::iptables_delete(args).map(|inv| with_binary(&argv[0], inv))
        }
        "nft" => {
            // Tables and chains are the private ones: only rules are undone.
            let verb = inverse::nft_creation(args)?;
            if args[verb + 1] != "rule" || args.len() <= verb + 4 {
                return None;
            }
            let handle = inverse::parse_nft_handle(stdout)?;
            Some(with_binary(
                &argv[0],
                inverse::nft_delete(args, verb, handle),
            ))
        }
        "tc" => {
            // A root or ingress qdisc (QoS; on a host bridge in mode
            // 'bridge' it does not go with the bridge) is deleted the way
            // libvirt's virNetDevBandwidthClear deletes it, which takes its
            // classes, class qdiscs and filters along; filters are deleted
            // explicitly.
            if args.first().map(String::as_str) == Some("qdisc") {
                if args.get(1).map(String::as_str) != Some("add")
                    || args.get(2).map(String::as_str) != Some("dev")
                {
                    return None;
                }
                let dev = args.get(3)?;
                let which = match args.get(4).map(String::as_str) {
                    Some("root") => "root",
                    Some("ingress") => "ingress",
                    _ => return None,
                };
                let mut inv = vec![argv[0].clone()];
                inv.extend(s(&["qdisc", "del", "dev", dev, which]));
                return Some(inv);
            }
            if args.first().map(String::as_str) != Some("filter") {
                return None;
            }
            let pos = args.iter().position(|a| a == "add")?;
            if pos != 1 {
                return None;
            }
            let mut inv = argv.to_vec();
            inv[pos + 1] = "del".to_string();
            Some(inv)
        }
        "ip" => {
            // ip [opts] OBJECT VERB ...
            let mut k = 0;
            while k < args.len() && args[k].starts_with('-') {
                k += 1;
            }
            let obj = args.get(k)?.as_str();
            let verb = args.get(k + 1)?.as_str();
            match (obj, verb) {
                ("link", "add") => {
                    let rest = &args[k + 2..];
                    let name = match rest.first().map(String::as_str) {
                        Some("name") | Some("dev") => rest.get(1)?,
                        _ => rest.first()?,
                    };
                    Some(s(&["ip", "link", "del", name]))
                }
                ("link", "set") => {
                    let rest = &args[k + 2..];
                    if rest.last().map(String::as_str) != Some("up") {
                        return None;
                    }
                    let mut inv = argv.to_vec();
                    let last = inv.len() - 1;
                    inv[last] = "down".to_string();
                    Some(inv)
                }
                ("addr" | "address" | "route", "add") => {
                    let mut inv = argv.to_vec();
                    inv[k + 2] = "del".to_string();
                    Some(inv)
                }
                _ => None,
            }
        }
        "sysctl" => {
            if !args.iter().any(|a| a == "-w") {
                return None;
            }
            let (key, _) = args.iter().find_map(|a| a.split_once('='))?;
            let prev = notes
                .iter()
                .rev()
                .find(|(n, k, _)| n == "sysctl-prev" && k == key)?;
            Some(vec![
                "sysctl".into(),
                "-q".into(),
                "-w".into(),
                format!("{key}={}", prev.2),
            ])
        }
        "dnsmasq" => {
            if args.iter().any(|a| a == "--version" || a == "--test") {
                return None;
            }
            let conf = args.iter().find_map(|a| a.strip_prefix("--conf-file="))?;
            let pid = notes
                .iter()
                .rev()
                .find(|(n, k, _)| n == "dnsmasq-pid" && k == conf)?;
            Some(s(&["kill", &prev_pid(&pid.2)]))
        }
        _ => None,
    }
}

/// `binary` followed by `args`.
fn with_binary(binary: &str, args: Vec<String>) -> Vec<String> {
    let mut argv = Vec::with_capacity(args.len() + 1);
    argv.push(binary.to_string());
    argv.extend(args);
    argv
}

fn prev_pid(p: &str) -> String {
    p.trim().to_string()
}

/// The undo plan of a sequence of entries, built one entry at a time.
#[derive(Debug, Clone, Default)]
pub struct UndoTracker {
    notes: Vec<(String, String, String)>,
    /// Intents whose command has not reported back (normally none, or the
    /// last one of a journal left by a crash).
    pending: Vec<Vec<String>>,
    /// The inverses of the outstanding creations, each with its
    /// `fingerprint`.
    outstanding: Vec<(u64, Vec<String>)>,
}

/// A cheap summary of an argv (its length and the sum of its arguments'
/// lengths), so that a command is compared in full only with the
/// outstanding inverses it may equal.
fn fingerprint(argv: &[String]) -> u64 {
    let bytes: usize = argv.iter().map(String::len).sum();
    (argv.len() as u64) << 32 ^ bytes as u64
}

impl UndoTracker {
    /// Feeds one entry; returns whether it changed the plan (an entry that
    /// does not can be left out of a journal without changing its plan).
    pub fn push(&mut self, e: &Entry) -> bool {
        match e {
            Entry::Note { note, value, .. } if note == BATCH_INTENT || note == BATCH_FAILED => {
                if let Ok(undo) = serde_json::from_str::<Vec<Vec<String>>>(value) {
                    if note == BATCH_INTENT {
                        for inv in undo.into_iter().rev() {
                            self.push_inverse(inv);
                        }
                    } else {
                        for inv in undo {
                            let fp = fingerprint(&inv);
                            if let Some(i) = self
                                .outstanding
                                .iter()
                                .rposition(|(f, o)| *f == fp && *o == inv)
                            {
                                self.outstanding.remove(i);
                            }
                        }
                    }
                }
                true
            }
            Entry::Note { note, value, .. } if note == INTENT || note == FAILED => {
                if let Ok(argv) = serde_json::from_str::<Vec<String>>(value) {
                    if note == INTENT {
                        self.pending.push(argv);
                    } else {
                        self.resolve(&argv);
                    }
                }
                true
            }
            Entry::Note { note, key, value } => {
                self.notes.push((note.clone(), key.clone(), value.clone()));
                if note == "dnsmasq-pid" {
                    // The dnsmasq it started reported back.
                    self.pending.retain(|p| {
                        basename(p.first().map(String::as_str).unwrap_or("")) != "dnsmasq"
                            || !p
                                .iter()
                                .any(|a| a.strip_prefix("--conf-file=") == Some(key))
                    });
                }
                // A pid noted after the dnsmasq command: the inverse of
                // that command is known now.
                if note == "dnsmasq-pid" {
                    self.push_inverse(vec!["kill".into(), value.trim().to_string()]);
                }
                true
            }
            Entry::Ran { argv, stdout } => self.push_ran(argv, stdout),
        }
    }

    /// [`UndoTracker::push`] of a successful command.
    pub fn push_ran(&mut self, argv: &[String], stdout: &str) -> bool {
        if basename(argv.first().map(String::as_str).unwrap_or("")) != "dnsmasq" {
            self.resolve(argv);
        }
        let fp = fingerprint(argv);
        if let Some(i) = self
            .outstanding
            .iter()
            .rposition(|(f, inv)| *f == fp && inv == argv)
        {
            self.outstanding.remove(i);
            return true;
        }
        if basename(argv.first().map(String::as_str).unwrap_or("")) == "dnsmasq" {
            // Its inverse comes with the pid note.
            return false;
        }
        match inverse(argv, stdout, &self.notes) {
            Some(inv) => {
                self.push_inverse(inv);
                true
            }
            None => false,
        }
    }

    /// The command of the last pending intent equal to `argv` reported back.
    fn resolve(&mut self, argv: &[String]) {
        if let Some(i) = self.pending.iter().rposition(|p| p == argv) {
            self.pending.remove(i);
        }
    }

    /// Whether `argv` creates something this plan would undo once it
    /// succeeded, so that its intent must be journaled before it runs: a
    /// command with an inverse ([`inverse`]), an nft rule creation that
    /// echoes its handle, and a start of dnsmasq.
    pub fn needs_intent(&self, argv: &[String]) -> bool {
        let prog = basename(argv.first().map(String::as_str).unwrap_or(""));
        match prog {
            "dnsmasq" => !argv.iter().any(|a| a == "--version" || a == "--test"),
            "nft" => nft_echoed_rule(&argv[1..]).is_some(),
            _ => inverse(argv, "", &self.notes).is_some(),
        }
    }

    /// The intents of this journal that never reported back, oldest first.
    pub fn unresolved(&self) -> &[Vec<String>] {
        &self.pending
    }

    fn push_inverse(&mut self, inv: Vec<String>) {
        self.outstanding.push((fingerprint(&inv), inv));
    }

    /// The commands that undo every outstanding creation, last first.
    pub fn plan(&self) -> Vec<Vec<String>> {
        without_qdiscs_of_deleted_links(
            self.outstanding
                .iter()
                .rev()
                .map(|(_, inv)| inv.clone())
                .collect(),
        )
    }

    /// [`UndoTracker::plan`], taken: the tracker is left empty.
    pub fn take_plan(&mut self) -> Vec<Vec<String>> {
        let t = std::mem::take(self);
        without_qdiscs_of_deleted_links(
            t.outstanding
                .into_iter()
                .rev()
                .map(|(_, inv)| inv)
                .collect(),
        )
    }
}

/// `plan` without the `tc qdisc del dev D root|ingress` of a device `D`
/// the plan deletes anyway (`ip link del D`): its qdiscs go with it, and
/// libvirt's failed start (the nftables checksum fix's root qdisc) never
/// deletes them, so the undo stream stays libvirt's. A qdisc of a device
/// that stays (a host bridge in mode 'bridge') is still deleted.
fn without_qdiscs_of_deleted_links(plan: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let is = |argv: &[String], prog: &str| {
        argv.first()
            .is_some_and(|p| p == prog || p.ends_with(&format!("/{prog}")))
    };
    let deleted: Vec<&String> = plan
        .iter()
        .filter(|a| is(a, "ip") && a.len() == 4 && a[1] == "link" && a[2] == "del")
        .map(|a| &a[3])
        .collect();
    let keep = |a: &Vec<String>| {
        !(is(a, "tc")
            && a.len() == 6
            && a[1] == "qdisc"
            && a[2] == "del"
            && a[3] == "dev"
            && deleted.contains(&&a[4]))
    };
    let kept: Vec<bool> = plan.iter().map(keep).collect();
    plan.into_iter()
        .zip(kept)
        .filter_map(|(a, k)| k.then_some(a))
        .collect()
}

/// The commands that undo every outstanding creation of `entries`, last
/// creation first. A recorded command equal to the inverse of an earlier
/// outstanding creation cancels it (it was already undone).
pub fn undo_plan(entries: &[Entry]) -> Vec<Vec<String>> {
    let mut t = UndoTracker::default();
    for e in entries {
        t.push(e);
    }
    t.plan()
}

/// The index of the verb of nft arguments (without the binary) that
/// create a rule and echo it (`-e`/`--echo`, libvirt's `-ae`), so that
/// its handle is known; `None` for anything else (tables, chains and the
/// echo-less jumps to private chains, which are kept).
fn nft_echoed_rule(args: &[String]) -> Option<usize> {
    let verb = inverse::nft_creation(args)?;
    let echoes = args[..verb]
        .iter()
        .any(|a| a == "--echo" || (a.starts_with('-') && !a.starts_with("--") && a.contains('e')));
    (echoes && args[verb + 1] == "rule" && args.len() > verb + 4).then_some(verb)
}

/// The plan that undoes what the journal `entries` of an interrupted
/// operation created ([`undo_plan`]), preceded by the undo of every
/// creation whose intent is journaled but whose command never reported
/// back (the process died while it ran): each is looked up on the host
/// through `runner` and undone only if it is there. Also returns how
/// many intents were unresolved.
///
/// | intent | looked up with | undone with |
/// |---|---|---|
/// | `iptables ... --insert/--append CHAIN SPEC` | `--check CHAIN SPEC` | `--delete CHAIN SPEC` |
/// | `nft -ae insert/add rule FAM TABLE CHAIN RULE` | `nft -a list chain FAM TABLE CHAIN`, the newest rule whose text is RULE as nft lists it | `nft delete rule FAM TABLE CHAIN handle N` |
/// | `ip link add name BR [address MAC] ...` | `ip -o link show dev BR` (with that MAC) | `ip link del BR` |
/// | `ip addr/route add`, `ip link set up`, `tc filter add`, `tc qdisc add` root/ingress, `sysctl -w` of a global key | — (the inverse is harmless when nothing was done) | its inverse |
/// | `dnsmasq --conf-file=C` | the pid file noted for C (`dnsmasq-pidfile`), removed before dnsmasq ran | `kill PID` |
pub fn recovery_plan(
    runner: &dyn Runner,
    entries: &[Entry],
) -> Result<(Vec<Vec<String>>, usize), RunError> {
    let mut t = UndoTracker::default();
    for e in entries {
        t.push(e);
    }
    let known = t.plan();
    let mut plan = Vec::new();
    for intent in t.pending.iter().rev() {
        if let Some(inv) = look_up(runner, intent, &t.notes, &known)? {
            plan.push(inv);
        }
    }
    let unresolved = t.pending.len();
    plan.extend(known);
    Ok((plan, unresolved))
}

/// The undo of the intended creation `argv` if it is on the host (see
/// [`recovery_plan`]); `known` is the undo plan of the confirmed
/// creations (their nft handles are not candidates).
fn look_up(
    runner: &dyn Runner,
    argv: &[String],
    notes: &[(String, String, String)],
    known: &[Vec<String>],
) -> Result<Option<Vec<String>>, RunError> {
    let prog = basename(argv.first().map(String::as_str).unwrap_or(""));
    let ran = |v: Vec<String>| -> Result<Option<Output>, RunError> {
        match runner.run(&Cmd {
            argv: v.into(),
            stdin: None,
            env: Vec::new(),
        }) {
            Ok(out) => Ok(Some(out)),
            Err(e @ RunError::Crashed { .. }) => Err(e),
            Err(_) => Ok(None),
        }
    };
    match prog {
        "iptables" | "ip6tables" | "ebtables" => {
            let Some(inv) = inverse(argv, "", notes) else {
                return Ok(None);
            };
            let check: Vec<String> = inv
                .iter()
                .map(|a| {
                    if a == "--delete" {
                        "--check".to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            let present = ran(check)?.is_some_and(|o| o.success());
            Ok(present.then_some(inv))
        }
        "nft" => {
            let args = &argv[1..];
            let Some(verb) = nft_echoed_rule(args) else {
                return Ok(None);
            };
            let (fam, table, chain) = (&args[verb + 2], &args[verb + 3], &args[verb + 4]);
            let list = vec![
                argv[0].clone(),
                "-a".into(),
                "list".into(),
                "chain".into(),
                fam.clone(),
                table.clone(),
                chain.clone(),
            ];
            let Some(out) = ran(list)?.filter(|o| o.success()) else {
                return Ok(None);
            };
            let taken: Vec<&str> = known
                .iter()
                .filter(|k| {
                    k.len() >= 7
                        && k[1] == "delete"
                        && k[2] == "rule"
                        && k[3..6] == args[verb + 2..verb + 5]
                })
                .filter_map(|k| k.last().map(String::as_str))
                .collect();
            let handle = nft_find_rule(&out.stdout, &args[verb + 5..], &taken);
            Ok(handle.map(|h| with_binary(&argv[0], inverse::nft_delete(args, verb, &h))))
        }
        "ip" => {
            let Some(inv) = inverse(argv, "", notes) else {
                return Ok(None);
            };
            if inv.get(1..3) != Some(&["link".to_string(), "del".to_string()][..]) {
                return Ok(Some(inv));
            }
            let Some(name) = inv.get(3) else {
                return Ok(None);
            };
            let show = vec![
                argv[0].clone(),
                "-o".into(),
                "link".into(),
                "show".into(),
                "dev".into(),
                name.clone(),
            ];
            let Some(out) = ran(show)?.filter(|o| o.success()) else {
                return Ok(None);
            };
            // A device of that name with another address is not the one
            // this command would have created.
            let mac = argv
                .windows(2)
                .find(|w| w[0] == "address")
                .map(|w| w[1].to_ascii_lowercase());
            let ours = mac.is_none_or(|m| out.stdout.contains(&format!("link/ether {m} ")));
            Ok(ours.then_some(inv))
        }
        "dnsmasq" => {
            let Some(conf) = argv.iter().find_map(|a| a.strip_prefix("--conf-file=")) else {
                return Ok(None);
            };
            let pid = notes
                .iter()
                .rev()
                .find(|(n, k, _)| n == "dnsmasq-pidfile" && k == conf)
                .and_then(|(_, _, pf)| fs::read_to_string(pf).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
            Ok(pid.map(|p| vec!["kill".to_string(), p]))
        }
        _ => Ok(inverse(argv, "", notes)),
    }
}

/// The handle of the newest rule in the listing `nft -a list chain`
/// printed whose text is `rule` (the arguments after the chain) as nft
/// lists it, skipping the handles in `taken`. nft lists a rule in its
/// own words: names quoted, counters with their values, set elements
/// sorted, a `/32` or `/128` prefix left out, a one-address range as the
/// address; the words are compared after undoing that, in order, and
/// failing that as a multiset (nft may also reorder a rule's matches).
fn nft_find_rule(listing: &str, rule: &[String], taken: &[&str]) -> Option<String> {
    let want = nft_words(rule.iter().map(String::as_str));
    let mut want_sorted = want.clone();
    want_sorted.sort();
    let mut exact = None;
    let mut loose = None;
    for line in listing.lines() {
        let Some((text, handle)) = line.rsplit_once(" # handle ") else {
            continue;
        };
        let text = text.trim();
        let handle = handle.trim();
        if text.starts_with("chain ") || text.starts_with("table ") || taken.contains(&handle) {
            continue;
        }
        let got = nft_words(text.split_whitespace());
        let newer = |cur: &Option<(u64, String)>, h: u64| cur.as_ref().is_none_or(|(c, _)| h > *c);
        let Ok(h) = handle.parse::<u64>() else {
            continue;
        };
        if got == want {
            if newer(&exact, h) {
                exact = Some((h, handle.to_string()));
            }
        } else {
            let mut sorted = got;
            sorted.sort();
            if sorted == want_sorted && newer(&loose, h) {
                loose = Some((h, handle.to_string()));
            }
        }
    }
    exact.or(loose).map(|(_, h)| h)
}

/// The words of an nft rule, normalised as [`nft_find_rule`] says.
fn nft_words<'a>(words: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = words.peekable();
    while let Some(w) = words.next() {
        let w = w.trim_matches('"');
        if w == "packets" || w == "bytes" {
            // counter packets N bytes M: the values are the kernel's.
            words.next();
            continue;
        }
        let mut w = w.to_string();
        if w.contains(',') && !w.contains('{') {
            let mut parts: Vec<&str> = w.split(',').collect();
            parts.sort_unstable();
            w = parts.join(",");
        }
        // An address (or a range of one address), with or without ports:
        // the address, without a full-length prefix.
        let (addr, ports) = match w.split_once(':') {
            Some((a, p)) if a.contains('.') => (a.to_string(), format!(":{p}")),
            _ => (w.clone(), String::new()),
        };
        let addr = match addr.split_once('-') {
            Some((a, b)) if a == b && a.parse::<std::net::Ipv4Addr>().is_ok() => a.to_string(),
            _ => addr,
        };
        let addr = ["/32", "/128"]
            .iter()
            .find_map(|full| {
                addr.strip_suffix(full)
                    .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
            })
            .map(str::to_string)
            .unwrap_or(addr);
        w = format!("{addr}{ports}");
        out.push(w);
    }
    out
}

/// Runs an undo plan, ignoring failures (the thing may already be gone);
/// only a crash stops it. The plan is consumed: each argv becomes its
/// command as it is, run with [`Runner::run_direct`] (the same command
/// line for every runner but the real one, which sends the undo of a
/// dnsmasq, `kill PID`, and writes a `sysctl -q -w` without a process).
pub fn run_undo(runner: &dyn Runner, plan: Vec<Vec<String>>) -> Result<(), RunError> {
    for argv in plan {
        let result = runner.run_direct(&Cmd {
            argv: argv.into(),
            stdin: None,
            env: Vec::new(),
        });
        match result {
            Err(e @ RunError::Crashed { .. }) => return Err(e),
            _ => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtnet_runner::Signal;

    fn ran(argv: &[&str], stdout: &str) -> Entry {
        Entry::Ran {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdout: stdout.to_string(),
        }
    }

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn inverses_in_reverse_order_private_chains_kept() {
        let entries = vec![
            ran(&["ip", "link", "add", "name", "virbr0", "address", "52:54:00:00:00:01", "type", "bridge"], ""),
            ran(&["iptables", "-w", "--table", "filter", "--list-rules"], "-P INPUT ACCEPT\n"),
            ran(&["iptables", "-w", "--table", "filter", "--new-chain", "LIBVIRT_INP"], ""),
            ran(&["iptables", "-w", "--table", "filter", "--insert", "INPUT", "--jump", "LIBVIRT_INP"], ""),
            ran(&["iptables", "-w", "--table", "filter", "--insert", "LIBVIRT_INP", "--in-interface", "virbr0", "--jump", "ACCEPT"], ""),
            ran(&["nft", "add", "chain", "ip", "libvirt_network", "guest_output"], ""),
            ran(&["nft", "insert", "rule", "ip", "libvirt_network", "forward", "counter", "jump", "guest_output"], ""),
            ran(&["nft", "-ae", "insert", "rule", "ip", "libvirt_network", "guest_output", "iif", "virbr0", "counter", "reject"], "insert rule ip libvirt_network guest_output iif \"virbr0\" counter packets 0 bytes 0 reject # handle 9\n"),
            ran(&["tc", "filter", "add", "dev", "virbr0", "prio", "2"], ""),
            ran(&["ip", "addr", "add", "192.168.122.1/24", "brd", "192.168.122.255", "dev", "virbr0"], ""),
            ran(&["ip", "link", "set", "dev", "virbr0", "up"], ""),
            Entry::Note { note: "sysctl-prev".into(), key: "net/ipv4/ip_forward".into(), value: "0".into() },
            ran(&["sysctl", "-q", "-w", "net/ipv4/ip_forward=1"], ""),
            ran(&["sysctl", "-q", "-w", "net/ipv6/conf/virbr0/disable_ipv6=1"], ""),
            ran(&["/usr/sbin/dnsmasq", "--conf-file=/x/default.conf", "--leasefile-ro"], ""),
            Entry::Note { note: "dnsmasq-pid".into(), key: "/x/default.conf".into(), value: "1000".into() },
        ];
        let plan = undo_plan(&entries);
        assert_eq!(
            plan,
            vec![
                v(&["kill", "1000"]),
                v(&["sysctl", "-q", "-w", "net/ipv4/ip_forward=0"]),
                v(&["ip", "link", "set", "dev", "virbr0", "down"]),
                v(&[
                    "ip",
                    "addr",
                    "del",
                    "192.168.122.1/24",
                    "brd",
                    "192.168.122.255",
                    "dev",
                    "virbr0"
                ]),
                v(&["tc", "filter", "del", "dev", "virbr0", "prio", "2"]),
                v(&[
                    "nft",
                    "delete",
                    "rule",
                    "ip",
                    "libvirt_network",
                    "guest_output",
                    "handle",
                    "9"
                ]),
                v(&[
                    "iptables",
                    "-w",
                    "--table",
                    "filter",
                    "--delete",
                    "LIBVIRT_INP",
                    "--in-interface",
                    "virbr0",
                    "--jump",
                    "ACCEPT"
                ]),
                v(&["ip", "link", "del", "virbr0"]),
            ]
        );
    }

    #[test]
    fn a_qdisc_goes_with_its_deleted_bridge_and_stays_deleted_on_a_kept_one() {
        let qdisc = |dev: &str| {
            ran(
                &[
                    "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "2",
                ],
                "",
            )
        };
        // The network's own bridge: deleted, so its root qdisc is not
        // (libvirt's failed start deletes only the filter and the bridge).
        let own = vec![
            ran(
                &["ip", "link", "add", "name", "virbr0", "type", "bridge"],
                "",
            ),
            qdisc("virbr0"),
            ran(&["tc", "qdisc", "add", "dev", "virbr0", "ingress"], ""),
        ];
        assert_eq!(undo_plan(&own), vec![v(&["ip", "link", "del", "virbr0"])]);
        // A host bridge (mode 'bridge'): it stays, so its qdiscs are deleted.
        let host = vec![
            qdisc("br0"),
            ran(&["tc", "qdisc", "add", "dev", "br0", "ingress"], ""),
        ];
        assert_eq!(
            undo_plan(&host),
            vec![
                v(&["tc", "qdisc", "del", "dev", "br0", "ingress"]),
                v(&["tc", "qdisc", "del", "dev", "br0", "root"]),
            ]
        );
    }

    #[test]
    fn recorded_undo_cancels_the_creation() {
        let entries = vec![
            ran(
                &["iptables", "-w", "--insert", "LIBVIRT_FWO", "-j", "REJECT"],
                "",
            ),
            ran(
                &["iptables", "-w", "--insert", "LIBVIRT_FWI", "-j", "REJECT"],
                "",
            ),
            ran(
                &["iptables", "-w", "--delete", "LIBVIRT_FWO", "-j", "REJECT"],
                "",
            ),
        ];
        assert_eq!(
            undo_plan(&entries),
            vec![v(&[
                "iptables",
                "-w",
                "--delete",
                "LIBVIRT_FWI",
                "-j",
                "REJECT"
            ])]
        );
    }

    #[test]
    fn only_the_nft_handle_of_a_stdout_is_journaled_and_the_plan_is_the_same() {
        let echo = "insert rule ip libvirt_network guest_output iif \"virbr0\" counter reject # handle 12\n# new generation 4 by process 4242 (nft)\n";
        assert_eq!(journaled_stdout(echo), "# handle 12");
        assert_eq!(journaled_stdout("-P INPUT ACCEPT\n"), "");
        assert_eq!(journaled_stdout(""), "");
        let argv = v(&[
            "nft",
            "-ae",
            "insert",
            "rule",
            "ip",
            "libvirt_network",
            "guest_output",
            "iif",
            "virbr0",
            "counter",
            "reject",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        let j = Journal::create(&p).unwrap();
        j.append_ran(&argv, echo).unwrap();
        let on_disk = Journal::read(&p).unwrap();
        assert_eq!(
            on_disk,
            vec![ran(
                &argv.iter().map(String::as_str).collect::<Vec<_>>(),
                "# handle 12"
            )]
        );
        // A journal of an earlier release, with the whole echo, gives the
        // same plan as the short entry.
        let whole = undo_plan(&[Entry::Ran {
            argv: argv.clone(),
            stdout: echo.to_string(),
        }]);
        assert_eq!(undo_plan(&on_disk), whole);
        assert_eq!(j.undo_plan(), whole);
        assert_eq!(
            whole,
            vec![v(&[
                "nft",
                "delete",
                "rule",
                "ip",
                "libvirt_network",
                "guest_output",
                "handle",
                "12"
            ])]
        );
    }

    #[test]
    fn only_entries_that_change_the_plan_are_written_and_memory_agrees_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        let j = Journal::create(&p).unwrap();
        // A query creates nothing: no file yet.
        j.append_ran(
            &v(&["iptables", "-w", "--table", "filter", "--list-rules"]),
            "-P INPUT ACCEPT\n",
        )
        .unwrap();
        j.append_ran(&v(&["sysctl", "-n", "net.ipv4.ip_forward"]), "0\n")
            .unwrap();
        assert_eq!(fs::metadata(&p).unwrap().len(), 0);
        assert!(!Journal::is_pending(&p));
        let all = vec![
            ran(&["ip", "link", "add", "name", "br0", "type", "bridge"], ""),
            ran(
                &["iptables", "-w", "--insert", "LIBVIRT_FWO", "-j", "REJECT"],
                "",
            ),
            ran(&["iptables", "-w", "--list-rules"], ""),
            ran(
                &["iptables", "-w", "--delete", "LIBVIRT_FWO", "-j", "REJECT"],
                "",
            ),
            ran(&["/usr/sbin/dnsmasq", "--conf-file=/c"], ""),
            Entry::Note {
                note: "dnsmasq-pid".into(),
                key: "/c".into(),
                value: "7".into(),
            },
        ];
        for e in &all {
            match e {
                Entry::Ran { argv, stdout } => j.append_ran(argv, stdout).unwrap(),
                other => j.append(other).unwrap(),
            }
        }
        let on_disk = Journal::read(&p).unwrap();
        // The listing and the dnsmasq command were left out.
        assert_eq!(on_disk.len(), 4, "{on_disk:?}");
        assert_eq!(undo_plan(&on_disk), undo_plan(&all));
        assert_eq!(j.undo_plan(), undo_plan(&all));
        assert_eq!(
            j.undo_plan(),
            vec![v(&["kill", "7"]), v(&["ip", "link", "del", "br0"])]
        );
        j.remove().unwrap();
        assert!(!p.exists());
        // A journal that never wrote anything is removed all the same.
        let j = Journal::create(&p).unwrap();
        j.remove().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn journal_file_round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        let j = Journal::create(&p).unwrap();
        j.append(&ran(
            &["ip", "link", "add", "name", "br0", "type", "bridge"],
            "",
        ))
        .unwrap();
        j.note("dnsmasq-pid", "/c", "12").unwrap();
        // The file: the two lines, nothing else.
        let lines = fs::read_to_string(&p).unwrap();
        assert_eq!(lines.lines().count(), 2, "{lines}");
        assert!(lines.ends_with('\n'));
        assert_eq!(Journal::read(&p).unwrap().len(), 2);
        assert!(Journal::is_pending(&p));
        drop(j);
        // A crash while an entry is written: a torn last line, ignored.
        let mut text = lines.clone();
        text.push_str("{\"argv\":[\"ip\""); // torn by a crash
        fs::write(&p, &text).unwrap();
        assert_eq!(Journal::read(&p).unwrap().len(), 2);
        fs::write(&p, "garbage\n{}\n").unwrap();
        let e = Journal::read(&p).unwrap_err();
        assert!(e.contains("n.journal:1"), "{e}");
        // A journal of the release that stored entries in a shared mapping:
        // entries, then zeros (garbage after the first zero is not read);
        // an emptied one starts with a zero and is no journal.
        fs::write(&p, format!("{lines}\0garbage\n{{}}\n")).unwrap();
        assert_eq!(Journal::read(&p).unwrap().len(), 2);
        assert!(Journal::is_pending(&p));
        fs::write(&p, [0u8; 64]).unwrap();
        assert_eq!(Journal::read(&p).unwrap(), vec![]);
        assert!(!Journal::is_pending(&p));
        // A journal at a path with a file on it starts empty.
        fs::write(&p, &text).unwrap();
        let j = Journal::create(&p).unwrap();
        assert_eq!(Journal::read(&p).unwrap(), vec![]);
        assert_eq!(j.undo_plan(), Vec::<Vec<String>>::new());
        j.remove().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn a_failed_write_is_an_error_and_no_command_runs_after_it() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        std::os::unix::fs::symlink("/dev/full", &p).unwrap();
        let j = Journal::create(&p).unwrap();
        let host = virtnet_fake::FakeHost::new();
        let runner = JournalRunner::new(&host, &j);
        // A query writes nothing: it runs.
        assert!(runner.run_argv(&["ip", "link", "show"]).is_ok());
        assert_eq!(j.write_failure(), None);
        // A creation: its intent cannot be written, so it does not run.
        let e = runner
            .run_argv(&["ip", "link", "add", "name", "br0", "type", "bridge"])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("not run: its intent could not be journaled")
                && e.to_string().contains("No space left on device"),
            "{e}"
        );
        assert!(j.write_failure().unwrap().contains("No space left"));
        assert_eq!(j.undo_plan(), Vec::<Vec<String>>::new());
        // Nothing runs after it.
        let e = runner.run_argv(&["ip", "link", "show"]).unwrap_err();
        assert!(e.to_string().contains("not run: the journal"), "{e}");
        assert_eq!(host.records().len(), 1);
        j.remove().unwrap();
        assert!(!p.exists());
    }

    /// A runner around a fake host that runs every command and, once
    /// armed, "dies" after running one: it takes effect, its result is
    /// lost.
    struct DieAfter<'a> {
        host: &'a virtnet_fake::FakeHost,
        armed: std::sync::atomic::AtomicBool,
    }

    impl Runner for DieAfter<'_> {
        fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
            let out = self.host.run(cmd)?;
            if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(RunError::Crashed {
                    program: cmd.program().to_string(),
                    index: 0,
                });
            }
            Ok(out)
        }
    }

    /// Runs `setup` journaled, then `last` with a crash after its effect;
    /// returns the host, the journal's entries and the recovery plan.
    fn crash_after(
        setup: &[&[&str]],
        last: &[&str],
    ) -> (virtnet_fake::FakeHost, Vec<Entry>, Vec<Vec<String>>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        let j = Journal::create(&p).unwrap();
        let host = virtnet_fake::FakeHost::new();
        let dying = DieAfter {
            host: &host,
            armed: false.into(),
        };
        let runner = JournalRunner::new(&dying, &j);
        for c in setup {
            runner.run_argv(c).unwrap();
        }
        dying.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = runner.run_argv(last).unwrap_err();
        assert!(matches!(e, RunError::Crashed { .. }), "{e:?}");
        let entries = Journal::read(&p).unwrap();
        let (plan, unresolved) = recovery_plan(&host, &entries).unwrap();
        (host, entries, plan, unresolved)
    }

    #[test]
    fn a_creation_whose_result_was_lost_is_looked_up_and_undone() {
        let br = [
            "ip",
            "link",
            "add",
            "name",
            "br0",
            "address",
            "52:54:00:00:00:01",
            "type",
            "bridge",
        ];
        // The bridge: found (with its MAC), deleted.
        let (_, entries, plan, unresolved) = crash_after(&[], &br);
        assert_eq!(unresolved, 1, "{entries:?}");
        assert_eq!(plan, vec![v(&["ip", "link", "del", "br0"])]);
        // An iptables rule: checked with -C, deleted; the bridge before it
        // was confirmed.
        let rule = [
            "iptables",
            "-w",
            "--table",
            "filter",
            "--insert",
            "FORWARD",
            "--in-interface",
            "br0",
            "--jump",
            "ACCEPT",
        ];
        let (_, _, plan, _) = crash_after(&[&br], &rule);
        assert_eq!(
            plan,
            vec![
                v(&[
                    "iptables",
                    "-w",
                    "--table",
                    "filter",
                    "--delete",
                    "FORWARD",
                    "--in-interface",
                    "br0",
                    "--jump",
                    "ACCEPT"
                ]),
                v(&["ip", "link", "del", "br0"]),
            ]
        );
        // An nft rule: found in the chain's listing by its text, deleted
        // by its handle; a confirmed identical rule keeps its own.
        let setup: &[&[&str]] = &[
            &["nft", "add", "table", "ip", "t"],
            &["nft", "add", "chain", "ip", "t", "c"],
            &[
                "nft",
                "-ae",
                "insert",
                "rule",
                "ip",
                "t",
                "c",
                "ct",
                "state",
                "related,established",
                "counter",
                "accept",
            ],
        ];
        let last = [
            "nft",
            "-ae",
            "insert",
            "rule",
            "ip",
            "t",
            "c",
            "ct",
            "state",
            "related,established",
            "counter",
            "accept",
        ];
        let (host, _, plan, _) = crash_after(setup, &last);
        let listing = host
            .run_argv(&["nft", "-a", "list", "chain", "ip", "t", "c"])
            .unwrap()
            .stdout;
        assert!(listing.contains("established,related"), "{listing}");
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert_ne!(plan[0], plan[1]);
        for inv in &plan {
            host.run_argv(&inv.iter().map(String::as_str).collect::<Vec<_>>())
                .unwrap();
        }
        let listing = host
            .run_argv(&["nft", "-a", "list", "chain", "ip", "t", "c"])
            .unwrap()
            .stdout;
        assert!(!listing.contains("accept"), "{listing}");
    }

    #[test]
    fn an_intent_that_did_not_take_effect_undoes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        let host = virtnet_fake::FakeHost::new();
        // A foreign bridge of that name with another MAC: not ours.
        host.run_argv(&[
            "ip",
            "link",
            "add",
            "name",
            "br0",
            "address",
            "52:54:00:00:00:09",
            "type",
            "bridge",
        ])
        .unwrap();
        let j = Journal::create(&p).unwrap();
        j.append_intent(
            &v(&[
                "ip",
                "link",
                "add",
                "name",
                "br0",
                "address",
                "52:54:00:00:00:01",
                "type",
                "bridge",
            ]),
            INTENT,
        )
        .unwrap();
        j.append_intent(
            &v(&[
                "iptables",
                "-w",
                "--insert",
                "FORWARD",
                "--in-interface",
                "br0",
                "--jump",
                "ACCEPT",
            ]),
            INTENT,
        )
        .unwrap();
        let entries = Journal::read(&p).unwrap();
        let (plan, unresolved) = recovery_plan(&host, &entries).unwrap();
        assert_eq!(unresolved, 2);
        assert_eq!(plan, Vec::<Vec<String>>::new());
        // A command that failed reported back: no lookup.
        let runner = JournalRunner::new(&host, &j);
        let out = runner
            .run_argv(&["ip", "link", "add", "name", "br0", "type", "bridge"])
            .unwrap();
        assert!(!out.success());
        assert_eq!(
            recovery_plan(&host, &Journal::read(&p).unwrap()).unwrap().1,
            2
        );
    }

    /// A host that sends signals itself (as the real runner does) and
    /// says which of its doors each request took.
    #[derive(Default)]
    struct SignalHost {
        ran: Mutex<Vec<String>>,
        signalled: Mutex<Vec<(String, Signal)>>,
    }

    impl Runner for SignalHost {
        fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
            self.ran.lock().unwrap().push(cmd.argv.join(" "));
            Ok(Output::ok(""))
        }
        fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
            match virtnet_runner::direct::kill_form(cmd) {
                Some((pid, sig)) => {
                    self.signalled.lock().unwrap().push((pid.to_string(), sig));
                    Ok(Output::ok(""))
                }
                None => self.run(cmd),
            }
        }
    }

    #[test]
    fn a_signal_is_journaled_as_its_kill_command_and_sent_by_the_inner_runner() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        let j = Journal::create(&p).unwrap();
        let host = SignalHost::default();
        let runner = JournalRunner::new(&host, &j);
        // A dnsmasq this operation started: its undo is `kill PID`.
        j.note("dnsmasq-pid", "/d/n.conf", "77").unwrap();
        assert_eq!(j.undo_plan(), vec![v(&["kill", "77"])]);
        // Its SIGTERM is journaled as `kill 77` (the undo is resolved),
        // and goes through the inner runner's signal, not a process.
        assert!(runner.signal("77", Signal::Term).unwrap().success());
        assert_eq!(j.undo_plan(), Vec::<Vec<String>>::new());
        assert!(Journal::read(&p)
            .unwrap()
            .contains(&ran(&["kill", "77"], "")));
        assert_eq!(
            *host.signalled.lock().unwrap(),
            [("77".to_string(), Signal::Term)]
        );
        assert!(host.ran.lock().unwrap().is_empty());
        // An undo plan's `kill PID` is a signal too; anything else runs.
        run_undo(
            &host,
            vec![v(&["kill", "78"]), v(&["ip", "link", "del", "br0"])],
        )
        .unwrap();
        assert_eq!(
            host.signalled.lock().unwrap()[1],
            ("78".to_string(), Signal::Term)
        );
        assert_eq!(*host.ran.lock().unwrap(), ["ip link del br0"]);
        // Over a host without its own signal (the fake), the same `kill`
        // command runs: command streams stay as they were.
        let fake = virtnet_fake::FakeHost::new();
        let runner = JournalRunner::new(&fake, &j);
        runner.signal("79", Signal::Hup).unwrap();
        let cmds: Vec<String> = fake
            .records()
            .iter()
            .map(|r| r.cmd.argv.join(" "))
            .collect();
        assert_eq!(cmds, ["kill -HUP 79"]);
    }

    #[test]
    fn intents_are_notes_that_the_reader_before_them_ignores() {
        // The previous release's reader: only `Ran` and `Note` entries.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        let j = Journal::create(&p).unwrap();
        let host = virtnet_fake::FakeHost::new();
        let runner = JournalRunner::new(&host, &j);
        runner
            .run_argv(&["ip", "link", "add", "name", "br0", "type", "bridge"])
            .unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines()
                .next()
                .unwrap()
                .starts_with("{\"note\":\"intent\""),
            "{text}"
        );
        let entries = Journal::read(&p).unwrap();
        assert!(matches!(&entries[0], Entry::Note { note, .. } if note == "intent"));
        assert_eq!(undo_plan(&entries), vec![v(&["ip", "link", "del", "br0"])]);
        // A query has no intent.
        runner.run_argv(&["ip", "link", "show"]).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), text);
    }

    #[test]
    fn nft_rule_text_as_listed_matches_the_arguments() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let listing = "table ip libvirt_network {\n\tchain guest_nat { # handle 4\n\t\tip saddr 10.20.0.0/16 ip daddr != 10.20.0.0/16 counter packets 0 bytes 0 snat to 198.51.100.1/32:20000-30000 # handle 7\n\t\tip saddr 10.20.0.0/16 ip daddr 255.255.255.255 counter packets 3 bytes 9 return # handle 8\n\t}\n}\n";
        assert_eq!(
            nft_find_rule(listing, &w("ip saddr 10.20.0.0/16 ip daddr != 10.20.0.0/16 counter snat to 198.51.100.1-198.51.100.1:20000-30000"), &[]),
            Some("7".into())
        );
        assert_eq!(
            nft_find_rule(
                listing,
                &w("ip saddr 10.20.0.0/16 ip daddr 255.255.255.255/32 counter return"),
                &[]
            ),
            Some("8".into())
        );
        assert_eq!(
            nft_find_rule(
                listing,
                &w("ip saddr 10.20.0.0/16 ip daddr 255.255.255.255/32 counter return"),
                &["8"]
            ),
            None
        );
        assert_eq!(
            nft_find_rule(listing, &w("iif virbr0 counter reject"), &[]),
            None
        );
    }

    #[test]
    fn a_new_journal_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.journal");
        let _j = Journal::create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "journal mode {mode:o}");
    }
}
