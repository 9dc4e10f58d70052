//! virtnet-testkit: **test infrastructure**, not part of the driver.
//!
//! * [`faults`] — the one fault API: a serde-serialisable [`FaultPlan`]
//!   (fail the nth command, fail commands matching a pattern, crash after
//!   command n) and [`FaultRunner`], which applies it around any
//!   [`virtnet_runner::Runner`], the simulated host or the real one.
//! * [`netns`] — the one throw-away network-namespace runner ([`Netns`],
//!   [`netns::run_sequence`], a thread's own fresh namespace) and the one
//!   "can the real tools run here, else print `skipped: why`" check
//!   (`VIRTNET_REQUIRE_REAL=1` turns a skip into a failure).
//! * [`lab`] — the real-packet lab: guest and outside namespaces around a
//!   network a driver started (veths on its bridge, a real DHCP client),
//!   and a UDP/TCP/ICMP sender/receiver reporting what arrived, where and
//!   from which address.
//!
//! * [`killwrap`] — tool wrappers that SIGKILL the process running them at
//!   its k-th tool invocation, before or after the real tool runs (the
//!   real-kernel `kill -9` tests).
//!
//! Used by the conformance suite, `cargo xtask` and the tests of the other
//! crates (a dev-dependency there); nothing the daemon or the CLI ships
//! depends on it.

pub mod csum;
pub mod faults;
pub mod killwrap;
pub mod lab;
pub mod netns;
pub mod process;

pub use faults::{Applied, CmdMatcher, Fault, FaultPlan, FaultPlanError, FaultRunner, Given};
pub use netns::{cannot_make_netns, cannot_run, command_in_fresh_netns, skip, Netns, Skip};
pub use process::LiveProcess;
