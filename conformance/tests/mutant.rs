//! The property tests can fail: with the test-only mutation
//! `virtnet_core::firewall::apply::sabotage::drop_last_undo` switched on
//! (the rollback of a failed firewall transaction skips its last undo
//! step), props_start's `failed_start_leaves_the_host_as_it_was` must
//! fail, and proptest must shrink the failure to a small case that is
//! printed with the seed that reproduces it.
//!
//! The switch is process-wide, so this test binary holds only tests of
//! the mutation, and they take turns (a lock). The state-machine property
//! (props_machine's `any_sequence_keeps_the_invariants`) is checked the
//! same way. `cargo xtask props --mutant drop-last-undo` runs the same
//! hunt with a random seed (examples/mutant_drop_last_undo.rs), printing
//! the seed and the minimal case.
//!
//! The second mutation, `virtnet_core::driver::journal::sabotage::
//! record_after_effect` (the journal records a creation after its command
//! instead of its intent before), must break the state machine's
//! invariants through a crash after a command's effect, shrunk to a short
//! sequence (`cargo xtask props --mutant record-after-effect`).
//!
//! The third, `virtnet_core::driver::lock::sabotage::ignore_lock` (a driver
//! that does not hold the driver lock changes the state directory without
//! it), must break the invariants through a second concurrent driver,
//! shrunk to a short sequence (`cargo xtask props --mutant ignore-lock`).

mod mutant_common;
mod props_common;

use mutant_common::*;
use virtnet_conformance::props::machine::{Foreign, Op, StartFault};
use virtnet_core::driver::journal::sabotage as journal_sabotage;
use virtnet_core::driver::lock::sabotage as lock_sabotage;
use virtnet_core::firewall::apply::sabotage;

/// The switch is process-wide: tests that flip it hold this lock.
static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock_switch() -> std::sync::MutexGuard<'static, ()> {
    SWITCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fixed seed: the test is deterministic.
const SEED: [u8; 32] = *b"virtnet-mutant-drop-last-undo-01";

#[test]
fn dropping_the_last_undo_step_makes_the_rollback_property_fail_with_a_small_case() {
    let _switch = lock_switch();
    // Control: the same inputs pass with the mutation off...
    sabotage::drop_last_undo(false);
    let control = hunt(SEED, 64, input(), property).unwrap();
    assert!(
        control.is_none(),
        "the property fails without the mutation:\n{}",
        control.map(|f| report(&SEED, &f)).unwrap_or_default()
    );
    // ...and fail with it on.
    sabotage::drop_last_undo(true);
    let found = hunt(SEED, 64, input(), property).unwrap();
    sabotage::drop_last_undo(false);
    let Some(f) = found else {
        panic!("64 cases passed with the last undo step dropped: the property cannot see a broken rollback");
    };
    let text = report(&SEED, &f);
    println!("{text}");
    assert!(text.contains(&hex(&SEED)), "{text}");
    // The failure shows what the broken rollback left behind: the last
    // undo step of a failed start is the inverse of its first change, the
    // bridge's creation.
    assert!(f.reason.contains("failed start"), "{text}");
    assert!(f.reason.contains("+link virbr"), "{text}");
    // Shrunk to a small case: one network, no foreign software, a fault
    // soon after the bridge exists (any later one fails as well).
    let (_, other, _, foreign, fault) = &f.minimal;
    assert!(other.is_none(), "not shrunk to a single network:\n{text}");
    assert_eq!(
        *foreign,
        Foreign::default(),
        "foreign software not shrunk away:\n{text}"
    );
    assert!(
        matches!(fault, StartFault::Nth { index, .. } if *index <= 5),
        "fault not shrunk:\n{text}"
    );
}

#[test]
fn dropping_the_last_undo_step_breaks_the_state_machine_invariants() {
    let _switch = lock_switch();
    sabotage::drop_last_undo(true);
    let found = hunt(SEED, 64, machine_input(), machine_property).unwrap();
    sabotage::drop_last_undo(false);
    let Some(f) = found else {
        panic!("64 operation sequences passed with the last undo step dropped");
    };
    let text = machine_report("drop-last-undo", &SEED, &f);
    println!("{text}");
    // Shrunk to a short sequence that contains a start with a fault.
    let ops = &f.minimal.3;
    assert!(ops.len() <= 4, "not shrunk to a short sequence:\n{text}");
    assert!(
        ops.iter().any(|o| matches!(o, Op::Start(_, Some(_)))),
        "no faulty start in the minimal sequence:\n{text}"
    );
}

/// A fixed seed for the journal mutation.
const SEED_RECORD: [u8; 32] = *b"virtnet-mutant-record-after-eff1";

#[test]
fn recording_after_the_effect_leaks_what_a_crash_after_the_effect_created() {
    let _switch = lock_switch();
    journal_sabotage::record_after_effect(true);
    let found = hunt(SEED_RECORD, 64, machine_input(), machine_property);
    journal_sabotage::record_after_effect(false);
    let Some(f) = found.unwrap() else {
        panic!("64 operation sequences passed with creations recorded after their effect");
    };
    let text = machine_report("record-after-effect", &SEED_RECORD, &f);
    println!("{text}");
    assert!(text.contains(&hex(&SEED_RECORD)), "{text}");
    // Shrunk to a short sequence whose crash falls after an effect.
    let ops = &f.minimal.3;
    assert!(ops.len() <= 3, "not shrunk to a short sequence:\n{text}");
    assert!(
        ops.iter().any(|o| matches!(o, Op::CrashAfterEffect { .. })),
        "no crash after an effect in the minimal sequence:\n{text}"
    );
    // What leaked is named.
    assert!(
        f.reason.contains("leaked") || f.reason.contains("dnsmasq"),
        "{text}"
    );
}

/// A fixed seed for the lock mutation.
const SEED_LOCK: [u8; 32] = *b"virtnet-mutant-ignore-the-lock01";

#[test]
fn ignoring_the_driver_lock_breaks_the_invariants_through_a_second_driver() {
    let _switch = lock_switch();
    lock_sabotage::ignore_lock(true);
    let found = hunt(SEED_LOCK, 64, machine_input(), machine_property);
    lock_sabotage::ignore_lock(false);
    let Some(f) = found.unwrap() else {
        panic!("64 operation sequences passed with the driver lock ignored");
    };
    let text = machine_report("ignore-lock", &SEED_LOCK, &f);
    println!("{text}");
    assert!(text.contains(&hex(&SEED_LOCK)), "{text}");
    // Shrunk to a short sequence with a second driver in it.
    let ops = &f.minimal.3;
    assert!(ops.len() <= 4, "not shrunk to a short sequence:\n{text}");
    assert!(
        ops.iter().any(|o| matches!(o, Op::Concurrent { .. })),
        "no concurrent driver in the minimal sequence:\n{text}"
    );
}
