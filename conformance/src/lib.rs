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
//! * [`upgrade`] — `cargo xtask upgrade-check`: take-over of every frozen release.

pub mod cases;
pub mod checks;
pub mod host;
pub mod kept;
pub mod matrix;
pub mod props;
pub mod report;
pub mod scenario;
pub mod upgrade;

pub use cases::{golden_root, load_cases, upgrade_sources, Case, UpgradeSource};
pub use checks::Verdict;
pub use host::{FakeFactory, HostFactory, HostKind, RealFactory, Snapshot, TestHost};
pub use matrix::{run_matrix, scenarios, MatrixOptions};
pub use scenario::{run_scenario, run_scenario_with, Op, Outcome, Scenario, ScenarioOptions};
