//! Write-ahead journal of what a start (or a firewall reload) created on
//! the host, so that a crash between creating something and saving the
//! status file never leaks it.
//!
//! [`JournalRunner`] wraps the driver's runner: every command that succeeds
//! is appended, with the part of its stdout its undo needs (nft's `# handle
//! N` echo; see [`journaled_stdout`]), to `STATE_DIR/NAME.journal`, in the
//! file before the next command runs. The driver adds notes for facts that
//! are not commands (the pid dnsmasq wrote, the previous value of a global
//! sysctl). The status save ends the journal: the driver empties the file
//! and keeps it for the network's next operation ([`JournalFiles`]); an
//! empty journal file is no journal.
//!
//! The file is mapped shared into memory and an entry is appended by
//! storing it into the mapping, which costs no system call: the stores land
//! in the file's page in the kernel's page cache, exactly where a
//! `write(2)` would have put the bytes, so every reader sees them and they
//! survive the death of the process (see `MappedFile` for how a reader
//! tells where the entries end and why a torn entry is harmless).
//!
//! The journal guards against a crash of the daemon, not of the machine,
//! and is therefore not fsynced (nor `msync`ed). Everything it records —
//! rules, links, addresses, qdiscs, sysctl values, processes — is kernel
//! state that a machine crash wipes, and the state directory is `/run`
//! (tmpfs) in a normal installation. What was handed to the kernel's page
//! cache survives the death of the process that wrote it, which is the
//! crash the journal is for. (On a state directory on disk, an fsynced
//! journal would even be harmful after a reboot: its undo plan would be
//! replayed against a kernel that never saw those commands.)
//!
//! File format: JSON lines ([`Entry`]), then zero bytes up to the end of
//! the file (a journal of an earlier release has none). A reader stops at
//! the first zero byte and ignores a torn last line.
//!
//! [`undo_plan`] derives, from the entries, the inverse of every creation
//! (iptables and nft through [`crate::firewall::inverse`], the derivation
//! the firewall engine's auto-rollback uses) that is still outstanding — creations later undone by a recorded command
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
use std::io::{self, BufRead};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::Mutex;

use memmap2::MmapMut;

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
    /// Mapped once the first entry was written (or a stale file replaced,
    /// or an idle file of the driver's taken over).
    file: Option<MappedFile>,
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

/// Size a journal file is created with (it doubles when full). A start
/// writes a few KiB; the file is sparse, only the pages written take
/// memory (tmpfs) or disk.
const INITIAL_LEN: usize = 64 * 1024;

/// A journal file mapped shared into memory: an entry is appended by
/// storing it into the mapping, without a system call.
///
/// A store into a shared mapping goes straight into the file's page in the
/// kernel's page cache, the same page a `write(2)` would have filled: it
/// is in the file for every reader (`read(2)` sees the page cache) from the
/// moment it is made, and survives the death of the process exactly like
/// a written but unsynced `write(2)`.
///
/// Layout: the entries (JSON lines), then zero bytes up to the end of the
/// file. Entries contain no zero byte (JSON escapes control characters),
/// so a reader stops at the first zero. Everything from `len` on is kept
/// zero, so an entry torn by a crash (its bytes are stored in any order)
/// reads as its bytes up to the first one not yet stored: a last line
/// without its newline, which the reader ignores — or, if only the
/// newline is missing, the whole entry, which is just as right.
#[derive(Debug)]
struct MappedFile {
    file: fs::File,
    map: MmapMut,
    /// Bytes of entries at the start of the file.
    len: usize,
    /// (device, inode) of the file, to tell whether its path still names it.
    id: (u64, u64),
}

impl MappedFile {
    /// Creates an empty (zero-filled) journal file at `path` and maps it.
    /// A file already there is replaced (unlinked and created anew rather
    /// than truncated, so that a mapping of it elsewhere stays valid); its
    /// directory is created only when the file cannot be created for lack
    /// of it.
    fn create(path: &Path) -> io::Result<MappedFile> {
        let create = || {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
        };
        let file = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                crate::store::remove_if_exists(path)?;
                create()?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                create()?
            }
            r => r?,
        };
        file.set_len(INITIAL_LEN as u64)?;
        let map = Self::map(&file)?;
        let m = file.metadata()?;
        Ok(MappedFile {
            file,
            map,
            len: 0,
            id: (m.dev(), m.ino()),
        })
    }

    fn map(file: &fs::File) -> io::Result<MmapMut> {
        // SAFETY: `map_mut` is unsafe because the mapped file may change
        // under the mapping: bytes written by someone else are seen (we
        // only ever copy bytes in and never read them back, so that cannot
        // break a Rust invariant), and an access past the end of a file
        // that someone truncated would fault (SIGBUS). Journal files are
        // never truncated: this module creates them with `create_new` and
        // only ever grows them; a journal file that is no longer wanted is
        // unlinked or replaced by a new file, either of which leaves every
        // existing mapping of it valid.
        unsafe { MmapMut::map_mut(file) }
    }

    /// Appends one line (which must not contain a zero byte).
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let end = self.len + line.len();
        if end >= self.map.len() {
            // At least one zero byte stays after the entries.
            let new_len = (end + 1).max(2 * self.map.len());
            self.file.set_len(new_len as u64)?;
            self.map = Self::map(&self.file)?;
        }
        self.map[self.len..end].copy_from_slice(line);
        // The entry is stored before anything that follows in program
        // order (the next command): a process that dies is stopped between
        // two instructions, as by a signal, and the entry is in the file.
        compiler_fence(Ordering::SeqCst);
        self.len = end;
        Ok(())
    }

    /// Empties the journal: its first byte is zeroed first (a reader now
    /// sees no entry, as after an unlink), then the rest of the entries.
    fn clear(&mut self) {
        if self.len == 0 {
            return;
        }
        self.map[0] = 0;
        compiler_fence(Ordering::SeqCst);
        self.map[1..self.len].fill(0);
        compiler_fence(Ordering::SeqCst);
        self.len = 0;
    }

    /// Whether `path` still names this file (no one removed or replaced it).
    fn is_at(&self, path: &Path) -> io::Result<bool> {
        match fs::symlink_metadata(path) {
            Ok(m) => Ok((m.dev(), m.ino()) == self.id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Journal {
    /// A journal at `path`. A file already there (left by an earlier
    /// operation) is replaced at once by an empty one; otherwise the file
    /// is created by the first entry written.
    pub fn create(path: &Path) -> io::Result<Journal> {
        let file = match fs::symlink_metadata(path) {
            Ok(_) => Some(MappedFile::create(path)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Journal::with_file(path, file))
    }

    fn with_file(path: &Path, file: Option<MappedFile>) -> Journal {
        Journal {
            path: path.to_path_buf(),
            state: Mutex::new(JournalState {
                file,
                ..JournalState::default()
            }),
        }
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
            st.file = Some(MappedFile::create(&self.path)?);
        }
        let JournalState { file, line, .. } = st;
        let f = file
            .as_mut()
            .ok_or_else(|| io::Error::other("journal not open"))?;
        f.append(line)
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
    /// The file keeps its entries until the journal is ended.
    pub fn take_undo_plan(&self) -> Vec<Vec<String>> {
        self.lock().tracker.take_plan()
    }

    fn into_file(self) -> Option<MappedFile> {
        self.state
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .file
    }

    /// Deletes the journal (after the status file that accounts for it was
    /// saved, or after its creations were undone). See also
    /// [`JournalFiles::finish`], which empties it instead.
    pub fn remove(self) -> io::Result<()> {
        let path = self.path.clone();
        match self.into_file() {
            Some(_) => crate::store::remove_if_exists(&path),
            None => Ok(()),
        }
    }

    /// Reads a journal file: its lines up to the first zero byte (the
    /// unused rest of a mapped journal; a journal of an earlier release has
    /// none). A torn last line (crash while appending) is ignored; any other
    /// unreadable line is an error naming the line. A journal without an
    /// entry is an empty list.
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
    /// journal, see [`JournalFiles`]) are no journal; a file that cannot be
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

/// Idle journal files a driver keeps at most (the least recently used one
/// is deleted beyond that).
const MAX_IDLE: usize = 64;

/// A driver's journal files, kept between operations: a journal that is
/// done is emptied ([`JournalFiles::finish`]) instead of deleted, and stays
/// mapped, so that the next operation on the same network appends to it
/// again at the cost of one `stat` of its path (to make sure no other
/// driver removed or replaced the file meanwhile) and no other system call.
///
/// An emptied journal file (its first byte zero) is no journal: readers
/// see no entry ([`Journal::read`]) and [`Journal::is_pending`] says no.
/// Idle files are deleted when the driver closes (before its driver lock
/// is released) and beyond [`MAX_IDLE`] of them; a file left by a driver
/// that died is deleted by the next driver's recovery, like any journal.
#[derive(Debug, Default)]
pub struct JournalFiles {
    /// Emptied journals, least recently used first.
    idle: Mutex<Vec<(PathBuf, MappedFile)>>,
}

impl JournalFiles {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PathBuf, MappedFile)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A journal at `path`, as [`Journal::create`] makes one, reusing the
    /// idle file at `path` if it is still there.
    pub fn open(&self, path: &Path) -> io::Result<Journal> {
        let idle = {
            let mut idle = self.lock();
            let i = idle.iter().position(|(p, _)| p == path);
            i.map(|i| idle.remove(i).1)
        };
        match idle {
            Some(f) if f.is_at(path)? => Ok(Journal::with_file(path, Some(f))),
            _ => Journal::create(path),
        }
    }

    /// Ends a journal whose operation is done (after the status file that
    /// accounts for it was saved, or after its creations were undone): its
    /// file is emptied and kept for the next operation. A journal that
    /// never wrote its file has nothing to end.
    pub fn finish(&self, journal: Journal) -> io::Result<()> {
        let path = journal.path.clone();
        let Some(mut f) = journal.into_file() else {
            return Ok(());
        };
        f.clear();
        let evicted = {
            let mut idle = self.lock();
            idle.push((path, f));
            if idle.len() > MAX_IDLE {
                Some(idle.remove(0))
            } else {
                None
            }
        };
        match evicted {
            Some((p, f)) => discard(&p, f),
            None => Ok(()),
        }
    }
}

/// Deletes an idle (empty) journal file if its path still names it.
fn discard(path: &Path, f: MappedFile) -> io::Result<()> {
    if f.is_at(path)? {
        crate::store::remove_if_exists(path)?;
    }
    Ok(())
}

impl Drop for JournalFiles {
    fn drop(&mut self) {
        for (p, f) in std::mem::take(&mut *self.lock()) {
            let _ = discard(&p, f);
        }
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
            inverse::iptables_delete(argv)
        }
        "nft" => {
            // Tables and chains are the private ones: only rules are undone.
            let verb = inverse::nft_creation(args)?;
            if args[verb + 1] != "rule" || args.len() <= verb + 4 {
                return None;
            }
            let handle = inverse::parse_nft_handle(stdout)?;
            Some(inverse::nft_delete(&argv[0], args, verb, handle))
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
        // The file: the two lines, then zeros (the mapping's unused rest).
        let bytes = fs::read(&p).unwrap();
        let end = bytes.iter().position(|&b| b == 0).unwrap();
        assert!(bytes[end..].iter().all(|&b| b == 0));
        let lines = std::str::from_utf8(&bytes[..end]).unwrap().to_string();
        assert_eq!(lines.lines().count(), 2, "{lines}");
        assert_eq!(Journal::read(&p).unwrap().len(), 2);
        // A crash while an entry is stored: some of its bytes are in the
        // file, in any order, the rest still zero. The reader sees the
        // bytes up to the first zero: a torn last line, ignored.
        let line = b"{\"argv\":[\"ip\",\"link\",\"add\",\"name\",\"br1\"],\"stdout\":\"\"}\n";
        for torn in [1, 7, line.len() - 3, line.len() - 2] {
            let mut b = bytes.clone();
            b[end..end + torn].copy_from_slice(&line[..torn]);
            b[end + torn + 2..end + line.len()].copy_from_slice(&line[torn + 2..]);
            fs::write(&p, &b).unwrap();
            assert_eq!(Journal::read(&p).unwrap().len(), 2, "torn at {torn}");
        }
        // Only the newline missing: the entry is whole.
        let mut b = bytes.clone();
        b[end..end + line.len() - 1].copy_from_slice(&line[..line.len() - 1]);
        fs::write(&p, &b).unwrap();
        assert_eq!(Journal::read(&p).unwrap().len(), 3);
        drop(j);
        // A journal of an earlier release: lines, no zero byte, torn tail.
        let mut text = lines.clone();
        text.push_str("{\"argv\":[\"ip\""); // torn by a crash
        fs::write(&p, &text).unwrap();
        let entries = Journal::read(&p).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(Journal::is_pending(&p));
        fs::write(&p, "garbage\n{}\n").unwrap();
        let e = Journal::read(&p).unwrap_err();
        assert!(e.contains("n.journal:1"), "{e}");
        // Garbage after the first zero byte is not read.
        fs::write(&p, format!("{lines}\0garbage\n{{}}\n")).unwrap();
        assert_eq!(Journal::read(&p).unwrap().len(), 2);
    }

    #[test]
    fn a_driver_s_journal_files_are_emptied_and_reused_and_an_empty_one_is_no_journal() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.journal");
        let files = JournalFiles::default();
        let br = v(&["ip", "link", "add", "name", "br0", "type", "bridge"]);
        let up = v(&["ip", "link", "set", "dev", "br0", "up"]);

        // Nothing written: no file, nothing to finish.
        let j = files.open(&p).unwrap();
        j.append_ran(&v(&["sysctl", "-n", "k"]), "0\n").unwrap();
        files.finish(j).unwrap();
        assert!(!p.exists());
        assert!(!Journal::is_pending(&p));

        let j = files.open(&p).unwrap();
        j.append_ran(&br, "").unwrap();
        j.append_ran(&up, "").unwrap();
        assert!(Journal::is_pending(&p));
        assert_eq!(Journal::read(&p).unwrap().len(), 2);
        let ino = fs::metadata(&p).unwrap().ino();
        files.finish(j).unwrap();
        // Emptied: all zeros, no entry, not pending.
        assert!(fs::read(&p).unwrap().iter().all(|&b| b == 0));
        assert_eq!(Journal::read(&p).unwrap(), vec![]);
        assert!(!Journal::is_pending(&p));

        // The next journal at that path reuses the file, from its start.
        let j = files.open(&p).unwrap();
        assert_eq!(j.undo_plan(), Vec::<Vec<String>>::new());
        j.append_ran(&up, "").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().ino(), ino);
        assert_eq!(
            Journal::read(&p).unwrap(),
            vec![ran(&["ip", "link", "set", "dev", "br0", "up"], "")]
        );
        // A crash (the journal dropped, not finished) leaves the entries.
        drop(j);
        assert!(Journal::is_pending(&p));
        assert_eq!(Journal::read(&p).unwrap().len(), 1);

        // A file someone else removed (a recovery) or left is not reused:
        // the journal starts empty in a new file.
        let j = files.open(&p).unwrap();
        assert!(!Journal::is_pending(&p));
        j.append_ran(&br, "").unwrap();
        files.finish(j).unwrap();
        fs::remove_file(&p).unwrap();
        let j = files.open(&p).unwrap();
        assert!(!p.exists());
        j.append_ran(&br, "").unwrap();
        files.finish(j).unwrap();
        fs::remove_file(&p).unwrap();
        fs::write(&p, "{\"argv\":[\"x\"],\"stdout\":\"\"}\n").unwrap();
        let j = files.open(&p).unwrap();
        assert!(!Journal::is_pending(&p));
        assert_eq!(Journal::read(&p).unwrap(), vec![]);
        j.append_ran(&br, "").unwrap();
        assert_eq!(Journal::read(&p).unwrap().len(), 1);
        files.finish(j).unwrap();

        // A journal larger than the file grows it.
        let j = files.open(&p).unwrap();
        let mut all = Vec::new();
        for i in 0..2000 {
            let a = v(&[
                "ip",
                "addr",
                "add",
                &format!("10.0.{}.{}/32", i / 250, i % 250),
                "dev",
                "br0",
            ]);
            j.append_ran(&a, "").unwrap();
            all.push(Entry::Ran {
                argv: a,
                stdout: String::new(),
            });
        }
        assert!(fs::metadata(&p).unwrap().len() > INITIAL_LEN as u64);
        assert_eq!(Journal::read(&p).unwrap(), all);
        files.finish(j).unwrap();
        assert!(!Journal::is_pending(&p));
        assert!(fs::read(&p).unwrap().iter().all(|&b| b == 0));

        // Dropping the files (the driver closes) deletes the idle ones.
        drop(files);
        assert!(!p.exists());
    }
}
