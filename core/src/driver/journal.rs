//! Write-ahead journal of what a start (or a firewall reload) created on
//! the host, so that a crash between creating something and saving the
//! status file never leaks it.
//!
//! [`JournalRunner`] wraps the driver's runner: every command that succeeds
//! is appended, with the part of its stdout its undo needs (nft's `# handle
//! N` echo; see [`journaled_stdout`]), to `STATE_DIR/NAME.journal`, written to
//! the file (`write(2)`) before the next command runs. The driver adds
//! notes for facts that are not commands (the pid dnsmasq wrote, the
//! previous value of a global sysctl). The status save deletes the journal.
//!
//! The journal guards against a crash of the daemon, not of the machine,
//! and is therefore not fsynced. Everything it records — rules, links,
//! addresses, qdiscs, sysctl values, processes — is kernel state that a
//! machine crash wipes, and the state directory is `/run` (tmpfs) in a
//! normal installation. What `write(2)` handed to the kernel survives the
//! death of the process that wrote it, which is the crash the journal is
//! for. (On a state directory on disk, an fsynced journal would even be
//! harmful after a reboot: its undo plan would be replayed against a
//! kernel that never saw those commands.)
//!
//! [`undo_plan`] derives, from the entries, the inverse of every creation
//! that is still outstanding — creations later undone by a recorded command
//! (e.g. the firewall engine's own rollback) cancel out — in reverse order:
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
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::runner::{Cmd, Output, RunError, Runner};

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
/// write. The file itself is created with the first entry that
/// is written (a start that fails before creating anything leaves no file
/// and costs no file-system call); every written entry reaches the file
/// before the next command runs (see the module documentation for why it
/// is not fsynced).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    state: Mutex<JournalState>,
}

#[derive(Debug, Default)]
struct JournalState {
    /// Open once the first entry was written (or a stale file truncated).
    file: Option<fs::File>,
    tracker: UndoTracker,
    /// Reused serialisation buffer.
    line: Vec<u8>,
}

/// The borrowed form of [`Entry::Ran`] (same JSON).
#[derive(serde::Serialize)]
struct RanRef<'a> {
    argv: &'a [String],
    stdout: &'a str,
}

/// Creates (or truncates) the journal file; its directory is created only
/// when the file cannot be created for lack of it.
fn open_truncated(path: &Path) -> io::Result<fs::File> {
    let open = || {
        fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            open()
        }
        r => r,
    }
}

impl Journal {
    /// A journal at `path`. A file already there (left by an earlier
    /// operation) is truncated at once; otherwise the file is created by
    /// the first entry written.
    pub fn create(path: &Path) -> io::Result<Journal> {
        let file = match fs::symlink_metadata(path) {
            Ok(_) => Some(open_truncated(path)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Journal {
            path: path.to_path_buf(),
            state: Mutex::new(JournalState {
                file,
                ..JournalState::default()
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes one serialised line (in `st.line`) to the file.
    fn write_line(&self, st: &mut JournalState) -> io::Result<()> {
        st.line.push(b'\n');
        if st.file.is_none() {
            st.file = Some(open_truncated(&self.path)?);
        }
        let JournalState { file, line, .. } = st;
        let f = file
            .as_mut()
            .ok_or_else(|| io::Error::other("journal not open"))?;
        f.write_all(line)
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

    /// Deletes the journal (after the status file that accounts for it was
    /// saved, or after its creations were undone).
    pub fn remove(self) -> io::Result<()> {
        let st = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        if st.file.is_some() {
            crate::status::remove_if_exists(&self.path)
        } else {
            Ok(())
        }
    }

    /// Reads a journal file. A torn last line (crash while appending) is
    /// ignored; any other unreadable line is an error naming the line.
    pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
        let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let lines: Vec<String> = io::BufReader::new(f)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
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
}

/// A runner that journals every successful command before returning.
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
    crate::firewall::nft_handle_echo(stdout).unwrap_or("")
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
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
            let pos = args
                .iter()
                .position(|a| matches!(a.as_str(), "--insert" | "-I" | "--append" | "-A"))?;
            let chain = args.get(pos + 1)?;
            let jumps_private = args
                .windows(2)
                .any(|w| (w[0] == "--jump" || w[0] == "-j") && w[1].starts_with("LIBVIRT_"));
            if BUILTIN_CHAINS.contains(&chain.as_str()) && jumps_private {
                return None; // private-chain jump, kept like libvirt does
            }
            let mut inv = argv.to_vec();
            inv[pos + 1] = "--delete".to_string();
            Some(inv)
        }
        "nft" => {
            let mut k = 0;
            while k < args.len() && args[k].starts_with('-') {
                k += 1;
            }
            let verb = args.get(k)?;
            if !matches!(verb.as_str(), "add" | "insert" | "create") {
                return None;
            }
            if args.get(k + 1).map(String::as_str) != Some("rule") {
                return None; // tables and chains are the private ones
            }
            let handle = crate::firewall::parse_nft_handle(stdout)?;
            let mut inv = vec![argv[0].clone(), "delete".into(), "rule".into()];
            for i in 2..=4 {
                inv.push(args.get(k + i)?.clone());
            }
            inv.push("handle".into());
            inv.push(handle.to_string());
            Some(inv)
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

fn prev_pid(p: &str) -> String {
    p.trim().to_string()
}

/// The undo plan of a sequence of entries, built one entry at a time.
#[derive(Debug, Clone, Default)]
pub struct UndoTracker {
    notes: Vec<(String, String, String)>,
    outstanding: Vec<Vec<String>>,
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
                    self.outstanding
                        .push(vec!["kill".into(), value.trim().to_string()]);
                }
                true
            }
            Entry::Ran { argv, stdout } => self.push_ran(argv, stdout),
        }
    }

    /// [`UndoTracker::push`] of a successful command.
    pub fn push_ran(&mut self, argv: &[String], stdout: &str) -> bool {
        if let Some(i) = self.outstanding.iter().rposition(|inv| inv == argv) {
            self.outstanding.remove(i);
            return true;
        }
        if basename(argv.first().map(String::as_str).unwrap_or("")) == "dnsmasq" {
            // Its inverse comes with the pid note.
            return false;
        }
        match inverse(argv, stdout, &self.notes) {
            Some(inv) => {
                self.outstanding.push(inv);
                true
            }
            None => false,
        }
    }

    /// The commands that undo every outstanding creation, last first.
    pub fn plan(&self) -> Vec<Vec<String>> {
        self.outstanding.iter().rev().cloned().collect()
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
        assert!(!p.exists());
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
        // A journal that never wrote anything has nothing to remove.
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
        drop(j);
        let mut text = fs::read_to_string(&p).unwrap();
        text.push_str("{\"argv\":[\"ip\""); // torn by a crash
        fs::write(&p, &text).unwrap();
        let entries = Journal::read(&p).unwrap();
        assert_eq!(entries.len(), 2);
        fs::write(&p, "garbage\n{}\n").unwrap();
        let e = Journal::read(&p).unwrap_err();
        assert!(e.contains("n.journal:1"), "{e}");
    }
}
