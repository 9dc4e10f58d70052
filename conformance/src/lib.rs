//! virtnet-conformance: scenarios written once, run against the fake host and
//! the real kernel (architecture invariant 4).
//!
//! * [`host`] — the host abstraction ([`host::HostFactory`], [`host::TestHost`],
//!   canonical [`host::Snapshot`]s) with the fake and
//!   the real (network-namespace) implementations.
//! * [`cases`] — golden cases, their expectations, upgrade sources, the
//!   capture-log reader.
//! * [`checks`] — what scenarios and the upgrade check share: [`Verdict`],
//!   the expected-failure reasons, the "nothing of ours left" check.
//! * [`scenario`] — the operation bodies and their checks.
//! * [`kept`] — what libvirt keeps on purpose after a destroy (the one
//!   definition).
//! * [`matrix`] — the matrix (case × backend × operation), filtering, the
//!   parallel runner with progress.
//! * [`report`] — summary table, JUnit, Markdown, HTML and JSON reports.
//! * [`props`] — property tests' host view, random definitions, state machine.
//! * [`realtraffic`] — real packets (the lab's guests and outside) next to
//!   the simulator's tracer: one case × backend on both, every flow compared.
//! * [`upgrade`] — `cargo xtask upgrade-check`: take-over of every frozen release.
//! * [`traffic`] — per case, the probe flows and the outcomes libvirt documents
//!   for them (the oracle of the `traffic` operation).
//!
//! Rules every check here follows:
//!
//! * **A scenario body never knows which host it runs on.** Every host
//!   effect goes through `TestHost::runner()`; faults are injected by
//!   `virtnet_testkit::FaultRunner` around it, so failure and crash
//!   scenarios run unchanged on the kernel.
//! * **Expectations are computed independently of the code under test**:
//!   the golden stream replayed on a separate fresh host (start, switch),
//!   the private-chain setup alone (kept), a fresh start (upgrade); never
//!   the driver's own account of what it did.
//! * **Every check compares whole snapshots** that include foreign (Docker,
//!   firewalld) rules, so "never touch what is not ours" is checked at
//!   every step. Where partial states are allowed (after a failed or
//!   crashed start) the check is on line multisets ([`checks::nothing_left`]):
//!   nothing beyond the state before plus what is kept on purpose (so a
//!   duplicated private-chain jump is a leak), nothing of the state before
//!   missing.
//! * **The real mode never runs in the namespace it was started in**: the
//!   re-executed process checks that its network namespace differs from
//!   the one it was started in (`xtask/src/realns.rs`), and every host is a
//!   further fresh namespace of its worker thread.
//! * **An expected failure is never a pass**: scenarios the kernel cannot
//!   run (no act_csum) are `xfail` only after the failure was checked to be
//!   the csum one and to have left the host as before.

pub mod cases;
pub mod checks;
pub mod host;
pub mod kept;
pub mod matrix;
pub mod props;
pub mod realtraffic;
pub mod report;
pub mod scenario;
pub mod traffic;
pub mod upgrade;

pub use cases::{golden_root, load_cases, upgrade_sources, Case, UpgradeSource};
pub use checks::Verdict;
pub use host::{FakeFactory, HostFactory, HostKind, RealFactory, Snapshot, TestHost};
pub use matrix::{run_matrix, scenarios, MatrixOptions};
pub use scenario::{run_scenario, run_scenario_with, Op, Outcome, Scenario, ScenarioOptions};
