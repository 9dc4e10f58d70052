//! Write-ahead journal of what a start (or a firewall reload) created on
//! the host, so that a crash between creating something and saving the
//! status file never leaks it.
//!
//! [`JournalRunner`] wraps the driver's runner: every command that succeeds
//! is appended, with the part of its stdout its undo needs (nft's `# handle
//! N` echo; see [`journaled_stdout`]), to `STATE_DIR/NAME.journal`, in the
//! file before the next command runs. The driver adds notes for facts that
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
//! File format: JSON lines ([`Entry`]). A reader ignores a torn last line,
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
//! | `tc filter add ...` | same with `del` (the root qdisc goes with the bridge) |
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
        let open = || {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_APPEND)
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
        let result = file.write_all(line);
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
        if let Some(why) = self.journal.write_failure() {
            return Err(RunError::Spawn {
                program: cmd.program().to_string(),
                reason: format!(
                    "not run: the journal {} could not be written: {why}",
                    self.journal.path.display()
                ),
            });
        }
        let out = self.inner.run(cmd)?;
        if out.success() {
            self.journal
                .append_ran(&cmd.argv, &out.stdout)
                .map_err(|e| RunError::Spawn {
                    program: cmd.program().to_string(),
                    reason: format!(
                        "ran, but could not be journaled in {}: {e}",
                        self.journal.path.display()
                    ),
                })?;
        }
        Ok(out)
    }

    fn has_program(&self, name: &str) -> bool {
        self.inner.has_program(name)
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
            // The root qdisc goes with the bridge (libvirt never deletes it
            // either); filters are deleted explicitly.
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
            Entry::Note { note, key, value } => {
                self.notes.push((note.clone(), key.clone(), value.clone()));
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

    fn push_inverse(&mut self, inv: Vec<String>) {
        self.outstanding.push((fingerprint(&inv), inv));
    }

    /// The commands that undo every outstanding creation, last first.
    pub fn plan(&self) -> Vec<Vec<String>> {
        self.outstanding
            .iter()
            .rev()
            .map(|(_, inv)| inv.clone())
            .collect()
    }

    /// [`UndoTracker::plan`], taken: the tracker is left empty.
    pub fn take_plan(&mut self) -> Vec<Vec<String>> {
        let t = std::mem::take(self);
        t.outstanding
            .into_iter()
            .rev()
            .map(|(_, inv)| inv)
            .collect()
    }
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

/// Runs an undo plan, ignoring failures (the thing may already be gone);
/// only a crash stops it. The plan is consumed: each argv becomes its
/// command as it is.
pub fn run_undo(runner: &dyn Runner, plan: Vec<Vec<String>>) -> Result<(), RunError> {
    for argv in plan {
        let cmd = Cmd {
            argv: argv.into(),
            stdin: None,
        };
        match runner.run(&cmd) {
            Err(e @ RunError::Crashed { .. }) => return Err(e),
            _ => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A creation runs, but its entry cannot be written: an error, and
        // the undo plan in memory still has it.
        let e = runner
            .run_argv(&["ip", "link", "add", "name", "br0", "type", "bridge"])
            .unwrap_err();
        assert!(
            e.to_string().contains("could not be journaled")
                && e.to_string().contains("No space left on device"),
            "{e}"
        );
        assert!(j.write_failure().unwrap().contains("No space left"));
        assert_eq!(j.undo_plan(), vec![v(&["ip", "link", "del", "br0"])]);
        // Nothing runs after it.
        let e = runner.run_argv(&["ip", "link", "show"]).unwrap_err();
        assert!(e.to_string().contains("not run: the journal"), "{e}");
        assert_eq!(host.records().len(), 2);
        j.remove().unwrap();
        assert!(!p.exists());
    }
}
