//! `cargo xtask props --mutant record-after-effect`: shows a person that
//! the state-machine property catches a journal that records a creation
//! after its command (instead of its intent before): with the test-only
//! mutation switched on (cargo feature `sabotage`, which only
//! conformance's dev-dependency enables), props_machine's
//! `any_sequence_keeps_the_invariants` is run with a random seed, or
//! `VIRTNET_MUTANT_SEED=<64 hex digits>`; a crash after a command's effect
//! then leaks what the command created.
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
        "record-after-effect",
        "creations recorded after their effect",
        virtnet_core::driver::journal::sabotage::record_after_effect,
    )
}
