//! A simulated host that lives in a JSON state file, for `virtnet --host
//! fake:FILE` and `virtnet sim --state FILE`: before each command the state
//! is re-read from the file (so several short-lived processes see each
//! other's changes) and after it the new state is written back atomically.
//!
//! There is no locking: two processes running commands on the same file at
//! the same moment can lose one of the updates. Use one writer at a time.

use std::path::{Path, PathBuf};

use virtnet_runner::{Cmd, Output, RunError, Runner};

use crate::{FakeHost, HostState, StateFileError};

/// A [`FakeHost`] persisted in a state file after every command.
#[derive(Debug)]
pub struct FileBackedHost {
    host: FakeHost,
    path: PathBuf,
}

impl FileBackedHost {
    /// Open the state file, creating it (fresh host) if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateFileError> {
        let path = path.as_ref().to_path_buf();
        let host = FakeHost::load_or_new(&path)?;
        if !path.exists() {
            host.save(&path)?;
        }
        Ok(FileBackedHost { host, path })
    }

    /// The in-memory host (records, fault plans, snapshots).
    pub fn host(&self) -> &FakeHost {
        &self.host
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        if self.path.exists() {
            self.reload().map_err(spawn_err)?;
        }
        let out = self.host.run(cmd)?;
        self.host.save(&self.path).map_err(spawn_err)?;
        Ok(out)
    }
}
