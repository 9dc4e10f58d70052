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

use std::process::ExitCode;

use mutant_common::*;
use virtnet_core::driver::lock::sabotage;

fn main() -> ExitCode {
    let seed = match seed_from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cases = virtnet_conformance::props::cases(256, 2000);
    sabotage::ignore_lock(true);
    let found = hunt(seed, cases, machine_input(), machine_property);
    sabotage::ignore_lock(false);
    match found {
        Ok(Some(f)) => {
            println!("{}", machine_report("ignore-lock", &seed, &f));
            ExitCode::from(1)
        }
        Ok(None) => {
            println!(
                "seed {}: {cases} operation sequences passed with the driver lock ignored: the property did NOT catch the mutation",
                hex(&seed)
            );
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
