//! `cargo xtask props --mutant drop-last-undo`: shows a person that the
//! rollback property can fail. With the test-only mutation switched on (the
//! last undo step of a failed start is dropped; cargo feature `sabotage`,
//! which only conformance's dev-dependency enables, so it exists in tests
//! and examples only), props_start's `failed_start_leaves_the_host_as_it_was`
//! is run with a random seed, or `VIRTNET_MUTANT_SEED=<64 hex digits>`.
//!
//! Exit status: 1 when the property caught the mutation (the seed and the
//! shrunk minimal case are printed), 3 when it did not (the property is too
//! weak), 2 on a usage or run error. `tests/mutant.rs` asserts the same on a
//! fixed seed in every test run.

#[path = "../tests/mutant_common/mod.rs"]
mod mutant_common;
#[path = "../tests/props_common/mod.rs"]
mod props_common;

use std::process::ExitCode;

use mutant_common::*;
use virtnet_core::firewall::apply::sabotage;

fn main() -> ExitCode {
    let seed = match std::env::var("VIRTNET_MUTANT_SEED") {
        Ok(s) => match parse_hex(&s) {
            Some(seed) => seed,
            None => {
                eprintln!("VIRTNET_MUTANT_SEED: expected 64 hex digits, got `{s}`");
                return ExitCode::from(2);
            }
        },
        Err(_) => {
            let mut s = [0u8; 32];
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            s[..16].copy_from_slice(&t.to_le_bytes());
            s[16..20].copy_from_slice(&std::process::id().to_le_bytes());
            s
        }
    };
    let cases = virtnet_conformance::props::cases(256, 4000);
    sabotage::drop_last_undo(true);
    let found = hunt(seed, cases, input(), property);
    sabotage::drop_last_undo(false);
    match found {
        Ok(Some(f)) => {
            println!("{}", report(&seed, &f));
            ExitCode::from(1)
        }
        Ok(None) => {
            println!(
                "seed {}: {cases} cases passed with the last undo step dropped: the property did NOT catch the mutation",
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
