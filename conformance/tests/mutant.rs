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
//! same way. `cargo xtask props --mutant drop-last-undo` runs the
//! ignored `demonstrate_drop_last_undo` (a random seed, or
//! `VIRTNET_MUTANT_SEED=<64 hex digits>`), which prints the seed and the
//! minimal case and fails.

mod props_common;

use props_common::*;
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use virtnet_conformance::props::machine::{Foreign, Machine, Op, StartFault, REJECT};
use virtnet_conformance::props::spec::NetSpec;
use virtnet_core::firewall::apply::sabotage;
use virtnet_core::firewall::Backend;

type Input = (NetSpec, Option<NetSpec>, Backend, Foreign, StartFault);

/// The strategy of `failed_start_leaves_the_host_as_it_was`.
fn input() -> impl Strategy<Value = Input> {
    (
        net_spec(),
        prop::option::weighted(0.3, net_spec()),
        backend(),
        foreign(),
        start_fault(),
    )
}

/// The property's body (as in props_start.rs).
fn property(input: Input) -> Result<(), TestCaseError> {
    let (spec, other, backend, foreign, fault) = input;
    let xml = spec.xml(0);
    match run_start(spec, other, backend, foreign, Some(fault.clone())) {
        Ok(()) => Ok(()),
        Err(e) if e.starts_with(REJECT) => Err(TestCaseError::reject(e)),
        Err(e) => Err(TestCaseError::fail(format!(
            "{e}\n-- network XML:\n{xml}\n-- fault: {}",
            fault.plan()
        ))),
    }
}

/// What a hunt found.
struct Found<T> {
    minimal: T,
    reason: String,
}

/// Runs `property` for up to `cases` inputs of `strategy` drawn from
/// `seed`; the shrunk failure, if any.
fn hunt<S: Strategy>(
    seed: [u8; 32],
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> Result<Option<Found<S::Value>>, String> {
    let config = Config {
        cases,
        max_shrink_iters: 2048,
        // A mutant's failures are not regressions to keep.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(config, rng);
    match runner.run(&strategy, property) {
        Ok(()) => Ok(None),
        Err(TestError::Fail(reason, minimal)) => Ok(Some(Found {
            minimal,
            reason: reason.to_string(),
        })),
        Err(TestError::Abort(why)) => Err(format!("proptest aborted: {why}")),
    }
}

/// props_machine's `any_sequence_keeps_the_invariants`.
type MachineInput = (Vec<NetSpec>, Backend, Foreign, Vec<Op>);

const NETS: usize = 3;

fn machine_input() -> impl Strategy<Value = MachineInput> {
    (
        prop::collection::vec(net_spec(), NETS),
        backend(),
        foreign(),
        prop::collection::vec(op(NETS), 1..30),
    )
}

fn machine_property(input: MachineInput) -> Result<(), TestCaseError> {
    let (specs, backend, foreign, ops) = input;
    let verdict = |e: String| {
        if e.starts_with(REJECT) {
            TestCaseError::reject(e)
        } else {
            TestCaseError::fail(e)
        }
    };
    let mut m = Machine::new(specs, backend, foreign).map_err(TestCaseError::fail)?;
    m.check().map_err(verdict)?;
    for op in &ops {
        m.step(op).map_err(verdict)?;
    }
    Ok(())
}

fn machine_report(seed: &[u8; 32], f: &Found<MachineInput>) -> String {
    let (specs, backend, foreign, ops) = &f.minimal;
    format!(
        "property any_sequence_keeps_the_invariants FAILED under the mutation drop-last-undo\n\
         seed: {}\n\
         minimal failing case:\n  backend: {backend}\n  foreign: {foreign:?}\n  operations: {ops:?}\n  networks: {specs:#?}\n\
         why:\n{}",
        hex(seed),
        f.reason
    )
}

fn hex(seed: &[u8; 32]) -> String {
    seed.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn report(seed: &[u8; 32], f: &Found<Input>) -> String {
    let (spec, other, backend, foreign, fault) = &f.minimal;
    format!(
        "property failed_start_leaves_the_host_as_it_was FAILED under the mutation drop-last-undo\n\
         seed: {} (reproduce: VIRTNET_MUTANT_SEED={} cargo xtask props --mutant drop-last-undo)\n\
         minimal failing case:\n  spec: {spec:?}\n  other network: {other:?}\n  backend: {backend}\n  foreign: {foreign:?}\n  fault: {fault:?}\n\
         why:\n{}",
        hex(seed),
        hex(seed),
        f.reason
    )
}

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

/// `cargo xtask props --mutant drop-last-undo`: fails on purpose, printing
/// the seed and the minimal case.
#[test]
#[ignore = "fails on purpose; run by `cargo xtask props --mutant drop-last-undo`"]
fn demonstrate_drop_last_undo() {
    let seed = match std::env::var("VIRTNET_MUTANT_SEED") {
        Ok(s) => parse_hex(&s)
            .unwrap_or_else(|| panic!("VIRTNET_MUTANT_SEED: expected 64 hex digits, got `{s}`")),
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
    let _switch = lock_switch();
    sabotage::drop_last_undo(true);
    let found = hunt(seed, cases, input(), property).unwrap();
    sabotage::drop_last_undo(false);
    match found {
        Some(f) => panic!("{}", report(&seed, &f)),
        None => println!(
            "seed {}: {cases} cases passed with the last undo step dropped: the property did NOT catch the mutation",
            hex(&seed)
        ),
    }
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
    let text = machine_report(&SEED, &f);
    println!("{text}");
    // Shrunk to a short sequence that contains a start with a fault.
    let ops = &f.minimal.3;
    assert!(ops.len() <= 4, "not shrunk to a short sequence:\n{text}");
    assert!(
        ops.iter().any(|o| matches!(o, Op::Start(_, Some(_)))),
        "no faulty start in the minimal sequence:\n{text}"
    );
}
