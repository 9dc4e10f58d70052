//! Property-test support: the host view, with what libvirt keeps on
//! purpose ([`crate::kept`]) as items ([`view`]), random network
//! definitions ([`spec`]) and the driver state machine with its invariants
//! ([`machine`]). The property tests themselves are
//! `conformance/tests/props_start.rs` (a single start: failed start,
//! start + destroy), `props_machine.rs` (sequences of operations over
//! several networks, plus one fixed sequence with every operation kind on
//! both backends) and `props_upgrade.rs`; `cargo xtask props [--deep]` runs
//! them.
//!
//! Depth: [`START_CASES`] and [`MACHINE_CASES`] (default, deep); the deep
//! (nightly) mode is `VIRTNET_DEEP=1` or `cargo xtask props --deep`, and
//! `PROPTEST_CASES` overrides both ([`cases`]). Failures print the seed and
//! the minimal case; the regression files are committed.

pub mod machine;
pub mod spec;
pub mod view;

/// Cases of each property of `props_start` (default, deep).
pub const START_CASES: (u32, u32) = (128, 4000);
/// Operation sequences of `props_machine` (default, deep).
pub const MACHINE_CASES: (u32, u32) = (64, 2000);

/// True when the deep (nightly) mode is asked for: `VIRTNET_DEEP=1`.
pub fn deep() -> bool {
    std::env::var("VIRTNET_DEEP").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Number of proptest cases: `PROPTEST_CASES` if set, else `deep_cases`
/// in deep mode, else `default_cases`.
pub fn cases(default_cases: u32, deep_cases: u32) -> u32 {
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return n;
    }
    if deep() {
        deep_cases
    } else {
        default_cases
    }
}

/// A scratch directory for a driver's config and state, in `/dev/shm` when
/// it is usable: the driver fsyncs every status, config and dnsmasq file it
/// writes (and their directory), which on a disk costs milliseconds, in
/// memory microseconds.
pub fn scratch_dir() -> Result<tempfile::TempDir, String> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("virtnet-").tempdir_in(shm) {
            return Ok(d);
        }
    }
    tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))
}
