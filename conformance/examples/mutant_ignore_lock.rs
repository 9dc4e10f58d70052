//! `cargo xtask props --mutant ignore-lock`: shows a person that the
//! state-machine property catches a driver that changes the state
//! directory without the driver lock: with the test-only mutation switched
//! on (cargo feature `sabotage`, which only conformance's dev-dependency
//! enables), props_machine's `any_sequence_keeps_the_invariants` is run
//! with a random seed, or `VIRTNET_MUTANT_SEED=<64 hex digits>`; a second
//! driver on the same state directory then goes on while the first is in
//! the middle of an operation (and takes its live journal for abandoned).
//!
//! Exit status: 1 when the property caught the mutation (the seed and the
//! shrunk minimal case are printed), 3 when it did not, 2 on a usage or
//! run error. `tests/mutant.rs` asserts the same on a fixed seed.

#[path = "../tests/mutant_common/mod.rs"]
mod mutant_common;
#[path = "../tests/props_common/mod.rs"]
mod props_common;

fn main() -> std::process::ExitCode {
    mutant_common::machine_demo(
        "ignore-lock",
        "the driver lock ignored",
        virtnet_core::driver::lock::sabotage::ignore_lock,
    )
}
