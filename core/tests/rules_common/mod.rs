//! Shared helpers of the `rules_*` integration tests: golden data paths,
//! case discovery and a replaying runner for real-daemon captures.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use virtnet_runner::{Cmd, Output, RunError, Runner};

pub fn golden() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden")).to_path_buf()
}

pub fn fw11() -> PathBuf {
    golden().join("upstream/libvirt-11.3.0/tests/networkxml2firewalldata")
}

pub fn fw9() -> PathBuf {
    golden().join("upstream/libvirt-9.0.0/tests/networkxml2firewalldata")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The case names (`NAME` of `NAME.xml`) in `dir`, sorted.
pub fn cases(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".xml"))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

mod capture_log;
#[allow(unused_imports)] // not every rules_* test reads captures
pub use capture_log::{parse_log, Entry};

/// Answers commands with the logged outputs, in order; anything else is a
/// mismatch (answered with a spawn error and remembered).
pub struct Replay {
    expected: Mutex<VecDeque<Entry>>,
    mismatch: Mutex<Option<String>>,
    ran: Mutex<usize>,
}

impl Replay {
    pub fn new(entries: &[Entry]) -> Self {
        Replay {
            expected: Mutex::new(entries.iter().cloned().collect()),
            mismatch: Mutex::new(None),
            ran: Mutex::new(0),
        }
    }

    pub fn remaining(&self) -> usize {
        self.expected.lock().unwrap().len()
    }

    pub fn ran(&self) -> usize {
        *self.ran.lock().unwrap()
    }

    /// Panics with the first mismatch, or if logged commands were not run.
    pub fn check_done(&self, what: &str) {
        if let Some(m) = self.mismatch.lock().unwrap().take() {
            panic!("{what}: {m}");
        }
        let left: Vec<Vec<String>> = self
            .expected
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.argv.clone())
            .collect();
        assert!(
            left.is_empty(),
            "{what}: {} logged commands were not run, first: {:?}",
            left.len(),
            left.first()
        );
    }
}

impl Runner for Replay {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let next = self.expected.lock().unwrap().pop_front();
        *self.ran.lock().unwrap() += 1;
        match next {
            Some(e) if e.argv == *cmd.argv => Ok(Output {
                status: e.status,
                stdout: e.stdout,
                stderr: e.stderr,
            }),
            other => {
                let msg = format!(
                    "command #{}: expected {:?}, ran {:?}",
                    self.ran(),
                    other.map(|e| e.argv),
                    cmd.argv
                );
                let mut m = self.mismatch.lock().unwrap();
                if m.is_none() {
                    *m = Some(msg.clone());
                }
                Err(RunError::Spawn {
                    program: cmd.program().to_string(),
                    reason: msg,
                })
            }
        }
    }
}
