//! A simulated host that lives in a JSON state file, for `virtnet --host
//! fake:FILE` and `virtnet sim --state FILE`: before each command the state
//! is re-read from the file (so several short-lived processes see each
//! other's changes) and after it the new state is written back.
//!
//! One command is one transaction on the file, so that a process killed at
//! any point leaves the host as if the command had run entirely or not at
//! all — never an effect the file does not show:
//!
//! 1. an exclusive `flock(2)` on the sidecar `FILE.lock` is taken for the
//!    whole command (two processes on one file no longer lose each other's
//!    updates; the kernel drops the lock of a killed process);
//! 2. the state is re-read and the command runs in memory; the only effect
//!    outside the state, the pid file a simulated `dnsmasq` writes, is
//!    written during the run — *before* the state is committed, so a kill
//!    in between leaves at worst a pid file naming a process the host does
//!    not have (`kill -0` fails on it: nothing to undo), never a process
//!    no pid file names (which nothing could find to stop);
//! 3. the new state is written to a temporary file of its own (pid and a
//!    counter in the name) and renamed over `FILE`
//!    ([`HostState::save_file`]): the rename is the commit point;
//! 4. only then does the caller see the command's output. A kill before
//!    the rename: the command never happened (the driver never saw it
//!    either); after it: it happened, and the driver's journal recorded
//!    its intent before it ran (a crash after the effect, see
//!    `virtnet_testkit::Fault::CrashAfterEffect`).
//!
//! A state that cannot be saved (disk full, read-only) fails the command
//! with [`RunError::Spawn`] and the in-memory host goes back to the state
//! in the file, which is unchanged.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use virtnet_runner::{Cmd, Output, RunError, Runner};

use crate::{FakeHost, HostState, StateFileError};

/// A [`FakeHost`] persisted in a state file after every command.
#[derive(Debug)]
pub struct FileBackedHost {
    host: FakeHost,
    path: PathBuf,
}

fn write_err(path: &Path, source: std::io::Error) -> StateFileError {
    StateFileError::Write {
        path: path.display().to_string(),
        source,
    }
}

impl FileBackedHost {
    /// Open the state file, creating it (fresh host) if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateFileError> {
        let path = path.as_ref().to_path_buf();
        let me = FileBackedHost {
            host: FakeHost::new(),
            path,
        };
        let _lock = me.lock_file()?;
        if me.path.exists() {
            me.host.set_state(HostState::load_file(&me.path)?);
        } else {
            me.host.save(&me.path)?;
        }
        Ok(me)
    }

    /// The in-memory host (records, fault plans, snapshots).
    pub fn host(&self) -> &FakeHost {
        &self.host
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sidecar lock file `FILE.lock`.
    pub fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// The exclusive lock of one transaction on the file (waits for the
    /// other process's command to finish).
    fn lock_file(&self) -> Result<Flock<File>, StateFileError> {
        let lp = self.lock_path();
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lp)
            .map_err(|e| write_err(&lp, e))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| write_err(&lp, e.into()))
    }

    /// The state as it is in the file now.
    pub fn reload(&self) -> Result<HostState, StateFileError> {
        let st = HostState::load_file(&self.path)?;
        self.host.set_state(st.clone());
        Ok(st)
    }
}

impl Runner for FileBackedHost {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let spawn_err = |e: StateFileError| RunError::Spawn {
            program: cmd.program().to_string(),
            reason: e.to_string(),
        };
        let _lock = self.lock_file().map_err(spawn_err)?;
        let before = if self.path.exists() {
            self.reload().map_err(spawn_err)?
        } else {
            self.host.state()
        };
        let out = self.host.run(cmd)?;
        if let Err(e) = self.host.save(&self.path) {
            // Not committed: the command did not happen.
            self.host.set_state(before);
            return Err(spawn_err(e));
        }
        Ok(out)
    }
}
