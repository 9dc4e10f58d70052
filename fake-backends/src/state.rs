//! The canonical state of a simulated host ([`HostState`]): comparable
//! (`Eq`), serialisable (the JSON state file), dumpable in the tools' own
//! text forms and diffable for test failures.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ip::IpState;
use crate::iptables::{Family, XtablesState};
use crate::nft::NftState;
use crate::procs::ProcState;
use crate::sysctl::SysctlState;
use crate::tc::TcState;

/// Everything the simulated host knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    pub nft: NftState,
    pub iptables: XtablesState,
    pub ip6tables: XtablesState,
    pub ip: IpState,
    pub tc: TcState,
    pub sysctl: SysctlState,
    pub procs: ProcState,
}

impl Default for HostState {
    fn default() -> Self {
        HostState::new()
    }
}

/// Parts of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Nft,
    Iptables,
    Ip6tables,
    Links,
    Tc,
    Sysctl,
    Processes,
}

impl Section {
    pub const ALL: [Section; 7] = [
        Section::Nft,
        Section::Iptables,
        Section::Ip6tables,
        Section::Links,
        Section::Tc,
        Section::Sysctl,
        Section::Processes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Nft => "nft",
            Section::Iptables => "iptables",
            Section::Ip6tables => "ip6tables",
            Section::Links => "links",
            Section::Tc => "tc",
            Section::Sysctl => "sysctl",
            Section::Processes => "processes",
        }
    }

    pub fn from_name(s: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Version tag of the state file format. Version 2: iptables tables,
/// chains and rules carry their nftables handles, and the nft ruleset
/// holds the mirrors of iptables-nft's tables (`crate::xtnft`).
pub const STATE_FILE_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct StateFile {
    virtnet_fake_state: u32,
    host: HostState,
}

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("state file {path} is not a virtnet fake host state: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("state file {path} has format version {found}, this build reads version {expected}; re-create it from a fresh host")]
    Version {
        path: String,
        found: u32,
        expected: u32,
    },
}

impl HostState {
    /// A fresh network namespace: `lo` down, no firewall tables, default
    /// sysctls, no processes.
    pub fn new() -> Self {
        HostState {
            nft: NftState::new(),
            iptables: XtablesState::new(Family::V4),
            ip6tables: XtablesState::new(Family::V6),
            ip: IpState::new(),
            tc: TcState::default(),
            sysctl: SysctlState::default(),
            procs: ProcState::default(),
        }
    }

    /// One section of the readable dump.
    pub fn dump_section(&self, s: Section) -> String {
        match s {
            Section::Nft => self.nft.list_ruleset(),
            Section::Iptables => self.iptables.save(None),
            Section::Ip6tables => self.ip6tables.save(None),
            Section::Links => self.ip.dump(),
            Section::Tc => self.tc.dump(),
            Section::Sysctl => self.sysctl.dump(),
            Section::Processes => self.procs.dump(),
        }
    }

    /// The whole host as readable text: `nft list ruleset`, `iptables-save`
    /// (no timestamp comments, counters `[0:0]`), `ip -br` style links,
    /// tc, changed sysctls, processes; each under a `## name` header.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for s in Section::ALL {
            out.push_str(&format!("## {}\n", s.name()));
            let body = self.dump_section(s);
            out.push_str(&body);
            if !body.is_empty() && !body.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// A unified diff of the dumps (empty when the states are equal).
    pub fn diff(&self, other: &HostState) -> String {
        diff_text(&self.dump(), &other.dump(), "expected", "actual")
    }

    /// Save to a JSON state file as one commit: the text goes to a
    /// temporary file of its own in the same directory (pid and a counter
    /// in its name, so two writers never share one), which is renamed over
    /// `path`. A process killed at any point leaves the old or the new
    /// file, whole. (No fsync: the simulated host models the death of a
    /// process, not of the machine; the page cache survives a kill.)
    pub fn save_file(&self, path: &Path) -> Result<(), StateFileError> {
        static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let werr = |source| StateFileError::Write {
            path: path.display().to_string(),
            source,
        };
        let file = StateFile {
            virtnet_fake_state: STATE_FILE_VERSION,
            host: self.clone(),
        };
        let mut text =
            serde_json::to_string_pretty(&file).map_err(|e| werr(std::io::Error::other(e)))?;
        text.push('\n');
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let r = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r.map_err(werr)
    }

    /// Load a JSON state file.
    pub fn load_file(path: &Path) -> Result<HostState, StateFileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| StateFileError::Read {
            path: p.clone(),
            source,
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| StateFileError::Parse {
                path: p.clone(),
                source,
            })?;
        let found = v
            .get("virtnet_fake_state")
            .and_then(|x| x.as_u64())
            .unwrap_or(0) as u32;
        if found != STATE_FILE_VERSION {
            return Err(StateFileError::Version {
                path: p,
                found,
                expected: STATE_FILE_VERSION,
            });
        }
        let f: StateFile = serde_json::from_value(v)
            .map_err(|source| StateFileError::Parse { path: p, source })?;
        Ok(f.host)
    }
}

/// A unified diff of two texts with the given headers (empty if equal).
pub fn diff_text(a: &str, b: &str, a_name: &str, b_name: &str) -> String {
    if a == b {
        return String::new();
    }
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(a_name, b_name)
        .to_string()
}

/// Panic with a readable diff if two states differ (for tests).
#[track_caller]
pub fn assert_state_eq(expected: &HostState, actual: &HostState) {
    if expected != actual {
        let d = expected.diff(actual);
        if d.is_empty() {
            panic!("host states differ in a way the dump does not show:\nexpected: {expected:?}\nactual: {actual:?}");
        }
        panic!("host states differ:\n{d}");
    }
}
