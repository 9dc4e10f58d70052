//! One owner per state directory: the driver lock `STATE_DIR/driver.lock`.
//!
//! Every change to a state directory (define, undefine, autostart, start,
//! destroy, reconcile, and the recovery of an interrupted operation's
//! journal) is made by the process holding an exclusive `flock(2)` on
//! `STATE_DIR/driver.lock` (libvirt's driver pid file). Reads (list, info,
//! dumpxml) need no lock: every file is replaced by `rename(2)`, so a reader
//! sees a whole old or a whole new file.
//!
//! * A driver takes the lock without waiting when it opens and, if it got
//!   it, keeps it for its lifetime: `virtnetd` (which refuses to start
//!   without it) and a `virtnet` command that found the directory free.
//! * A driver that did not get it takes it for each change: it waits for
//!   it — at most [`DriverConfig::lock_wait`](super::DriverConfig), 30 s by
//!   default, saying which pid holds it — and then fails with
//!   [`DriverError::Locked`](super::DriverError); it never goes on without
//!   it. Once it has the lock it re-reads the state directory (what the
//!   previous owner defined or started is seen, so no bridge name is handed
//!   out twice) and recovers what a dead owner left behind.
//! * The holder writes its pid into the lock file (first line, as a libvirt
//!   pid file) and empties the file before it lets go. A daemon adds a
//!   second line `virtnetd unix:SOCKET` ([`super::Driver::announce_daemon`]):
//!   a driver that finds the lock held by a daemon does not wait for a lock
//!   that is held for the daemon's whole life, and refuses the change at
//!   once with [`DriverError::DaemonOwns`](super::DriverError), which names
//!   the socket to use (`virtnet --connect unix:SOCKET`). No other file
//!   says that a daemon runs: a lock file is never stale, since the kernel
//!   drops the lock of a process that dies, and a stale holder line is only
//!   ever read while someone holds the lock.
//! * A journal carries its writer's pid and process start time (an
//!   `owner` note, its first line, see [`owner_note`]); a journal is
//!   recovered only by the lock holder and only when its writer is gone
//!   (or is this process, whose operation ended).
//!
//! The lock file descriptor is close-on-exec: a dnsmasq started by the
//! driver never inherits the lock.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::store;

/// Name of the lock file in the state directory.
pub const LOCK_FILE: &str = "driver.lock";

/// How long a change waits for the driver lock by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// How often a waiting driver tries the lock again.
const POLL: Duration = Duration::from_millis(50);

/// Path of the driver lock of a state directory.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE)
}

/// Who holds a driver lock, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    /// The holder's pid (`None`: the file says nothing readable yet).
    pub pid: Option<u32>,
    /// `unix:SOCKET` when the holder is a virtnetd serving that socket.
    pub daemon: Option<String>,
}

impl Holder {
    /// Reads the lock file (without locking it). An unreadable or empty
    /// file is an unknown holder.
    pub fn read(state_dir: &Path) -> Holder {
        let mut text = String::new();
        let ok = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(lock_path(state_dir))
            .and_then(|f| f.take(4096).read_to_string(&mut text));
        if ok.is_err() {
            return Holder::default();
        }
        Holder::parse(&text)
    }

    fn parse(text: &str) -> Holder {
        let mut lines = text.lines();
        let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
        let daemon = lines
            .find_map(|l| l.strip_prefix("virtnetd "))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Holder { pid, daemon }
    }

    /// "pid N" or "another process".
    pub fn describe(&self) -> String {
        match (self.pid, &self.daemon) {
            (Some(p), Some(_)) => format!("virtnetd (pid {p})"),
            (Some(p), None) => format!("pid {p}"),
            (None, _) => "another process".to_string(),
        }
    }
}

/// The driver lock, held: emptied (no holder) and released on drop.
#[derive(Debug)]
pub struct DriverLock {
    file: Flock<fs::File>,
}

impl DriverLock {
    /// Takes the lock without waiting: `Ok(None)` when another driver (in
    /// this or another process) holds it, an error when the lock file
    /// cannot be made or opened. The state directory is created 0755 and
    /// the lock file 0600 (see [`store::open_lock_file`]): no other user can
    /// open it, so no other user can hold it to stop the driver. On
    /// success this process's pid is written into the file.
    pub fn try_take(state_dir: &Path) -> io::Result<Option<DriverLock>> {
        store::create_dir_all_mode(state_dir, store::STATE_DIR_MODE)?;
        let f = store::open_lock_file(&lock_path(state_dir))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(file) => {
                let mut l = DriverLock { file };
                // The pid is information for waiting drivers: a lock whose
                // file cannot be written (disk full) is still the lock.
                let _ = l.write_holder(&format!("{}\n", std::process::id()));
                Ok(Some(l))
            }
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }

    /// Takes the lock, waiting at most `wait` for its holder; `notice` is
    /// called once with the holder when the lock is busy. A holder that is
    /// a daemon is not waited for: `Err(Busy::Daemon)` at once.
    pub fn take(
        state_dir: &Path,
        wait: Duration,
        notice: &dyn Fn(&Holder),
    ) -> Result<DriverLock, Busy> {
        let deadline = Instant::now() + wait;
        let mut told = false;
        loop {
            if let Some(l) = DriverLock::try_take(state_dir).map_err(Busy::Io)? {
                return Ok(l);
            }
            let holder = Holder::read(state_dir);
            if holder.daemon.is_some() {
                return Err(Busy::Daemon(holder));
            }
            if !told {
                notice(&holder);
                told = true;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Busy::Timeout(holder));
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    /// Replaces the lock file's contents (the holder lines).
    pub fn write_holder(&mut self, text: &str) -> io::Result<()> {
        let f: &mut fs::File = &mut self.file;
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(text.as_bytes())
    }
}

impl Drop for DriverLock {
    fn drop(&mut self) {
        // Nobody holds it once it is released: say nothing about a holder.
        let _ = self.file.set_len(0);
    }
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum Busy {
    /// A daemon holds it (for its lifetime).
    Daemon(Holder),
    /// Still held when the wait ended.
    Timeout(Holder),
    /// The lock file cannot be made or opened.
    Io(io::Error),
}

/// The `owner` note a journal starts with: (note, key = pid, value =
/// process start time). The start time tells a live writer from an
/// unrelated process that reuses its pid.
pub fn owner_note() -> (&'static str, String, String) {
    let pid = std::process::id();
    (
        "owner",
        pid.to_string(),
        process_start_time(pid).unwrap_or_default(),
    )
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, clock
/// ticks since boot), `None` if there is no such process.
pub fn process_start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the writer of a journal whose owner note is (`pid`,
/// `start_time`) may still be writing it: it is another process that is
/// alive (same pid, same start time). This process's own journals are
/// finished (an operation of this process holds the lock while it writes
/// one, and whoever asks holds the lock).
pub fn writer_alive(pid: &str, start_time: &str) -> bool {
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    match process_start_time(pid) {
        Some(t) => start_time.is_empty() || t == start_time,
        None => false,
    }
}

/// Test-only mutation (cargo feature `sabotage`, never on in a shipped
/// build): when switched on with [`sabotage::ignore_lock`], a driver that
/// does not hold the driver lock makes its changes without taking it — it
/// re-reads the state directory and recovers "abandoned" journals as if it
/// held the lock, while another driver may be in the middle of an
/// operation. It exists to prove that the property tests catch a driver
/// that goes on without the lock (`cargo xtask props --mutant
/// ignore-lock`).
#[doc(hidden)]
pub mod sabotage {
    #[cfg(feature = "sabotage")]
    static IGNORE_LOCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Switches the mutation on or off for the whole process.
    #[cfg(feature = "sabotage")]
    pub fn ignore_lock(on: bool) {
        IGNORE_LOCK.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Is the mutation on? (Always false without the feature.)
    pub(crate) fn ignoring_lock() -> bool {
        #[cfg(feature = "sabotage")]
        {
            IGNORE_LOCK.load(std::sync::atomic::Ordering::SeqCst)
        }
        #[cfg(not(feature = "sabotage"))]
        {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_lines() {
        assert_eq!(Holder::parse(""), Holder::default());
        assert_eq!(
            Holder::parse("123\n"),
            Holder {
                pid: Some(123),
                daemon: None
            }
        );
        let h = Holder::parse("7\nvirtnetd unix:/run/virtnet/virtnetd-sock\n");
        assert_eq!(h.daemon.as_deref(), Some("unix:/run/virtnet/virtnetd-sock"));
        assert_eq!(h.describe(), "virtnetd (pid 7)");
    }

    #[test]
    fn own_start_time_is_known_and_own_journals_are_not_alive() {
        let (_, pid, t) = owner_note();
        assert!(!t.is_empty());
        assert!(!writer_alive(&pid, &t));
        // pid 1 is alive; with another start time it is another process.
        let init = process_start_time(1).unwrap_or_default();
        assert!(writer_alive("1", &init));
        assert!(!writer_alive("1", "no-such-start-time"));
        assert!(!writer_alive("not a pid", ""));
    }

    #[test]
    fn second_take_waits_then_fails_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let l = DriverLock::try_take(d.path()).unwrap().unwrap();
        assert_eq!(
            Holder::read(d.path()).pid,
            Some(std::process::id()),
            "pid written"
        );
        // Another open file description: a second driver of this process.
        assert!(DriverLock::try_take(d.path()).unwrap().is_none());
        let seen = std::cell::RefCell::new(None);
        let r = DriverLock::take(d.path(), Duration::from_millis(100), &|h| {
            *seen.borrow_mut() = Some(h.clone())
        });
        assert!(matches!(r, Err(Busy::Timeout(_))));
        assert_eq!(
            seen.into_inner().and_then(|h| h.pid),
            Some(std::process::id())
        );
        drop(l);
        assert_eq!(Holder::read(d.path()), Holder::default(), "emptied");
        assert!(DriverLock::take(d.path(), Duration::ZERO, &|_| {}).is_ok());
    }

    #[test]
    fn a_daemon_is_not_waited_for() {
        let d = tempfile::tempdir().unwrap();
        let mut l = DriverLock::try_take(d.path()).unwrap().unwrap();
        l.write_holder("1\nvirtnetd unix:/x/sock\n").unwrap();
        let r = DriverLock::take(d.path(), Duration::from_secs(2), &|_| {});
        match r {
            Err(Busy::Daemon(h)) => assert_eq!(h.daemon.as_deref(), Some("unix:/x/sock")),
            other => panic!("{other:?}"),
        }
    }
}
