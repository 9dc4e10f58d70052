//! virtnet-testkit: **test infrastructure**, not part of the driver.
//!
//! * [`faults`] — the one fault API: a serde-serialisable [`FaultPlan`]
//!   (fail the nth command, fail commands matching a pattern, crash after
//!   command n) and [`FaultRunner`], which applies it around any
//!   [`virtnet_runner::Runner`], the simulated host or the real one.
//!
//! Used by the conformance suite, `cargo xtask` and the tests of the other
//! crates (a dev-dependency there); nothing the daemon or the CLI ships
//! depends on it.

pub mod faults;

pub use faults::{Applied, CmdMatcher, Fault, FaultPlan, FaultPlanError, FaultRunner, Given};
