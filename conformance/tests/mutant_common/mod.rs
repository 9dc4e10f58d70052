//! What the mutation test (`tests/mutant.rs`) and the mutation
//! demonstrations (`examples/mutant_drop_last_undo.rs` and
//! `examples/mutant_record_after_effect.rs`, run by `cargo xtask props
//! --mutant drop-last-undo|record-after-effect`) share: the two properties, a proptest
//! run that returns the shrunk failure, and its report with the seed.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use virtnet_conformance::props::machine::{Foreign, Machine, Op, StartFault, REJECT};
use virtnet_conformance::props::spec::NetSpec;
use virtnet_core::firewall::Backend;

use crate::props_common::*;

pub type Input = (NetSpec, Option<NetSpec>, Backend, Foreign, StartFault);

/// The strategy of `failed_start_leaves_the_host_as_it_was`.
pub fn input() -> impl Strategy<Value = Input> {
    (
        net_spec(),
        prop::option::weighted(0.3, net_spec()),
        backend(),
        foreign(),
        start_fault(),
    )
}

/// The property's body (as in props_start.rs).
pub fn property(input: Input) -> Result<(), TestCaseError> {
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
pub struct Found<T> {
    pub minimal: T,
    pub reason: String,
}

/// Runs `property` for up to `cases` inputs of `strategy` drawn from
/// `seed`; the shrunk failure, if any.
pub fn hunt<S: Strategy>(
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
pub type MachineInput = (Vec<NetSpec>, Backend, Foreign, Vec<Op>);

pub const NETS: usize = 3;

pub fn machine_input() -> impl Strategy<Value = MachineInput> {
    (
        prop::collection::vec(net_spec(), NETS),
        backend(),
        foreign(),
        prop::collection::vec(op(NETS), 1..30),
    )
}

pub fn machine_property(input: MachineInput) -> Result<(), TestCaseError> {
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

/// The report of a state-machine failure under the mutation `mutation`
/// (its `cargo xtask props --mutant` name).
pub fn machine_report(mutation: &str, seed: &[u8; 32], f: &Found<MachineInput>) -> String {
    let (specs, backend, foreign, ops) = &f.minimal;
    format!(
        "property any_sequence_keeps_the_invariants FAILED under the mutation {mutation}\n\
         seed: {} (reproduce: VIRTNET_MUTANT_SEED={} cargo xtask props --mutant {mutation})\n\
         minimal failing case:\n  backend: {backend}\n  foreign: {foreign:?}\n  operations: {ops:?}\n  networks: {specs:#?}\n\
         why:\n{}",
        hex(seed),
        hex(seed),
        f.reason
    )
}

/// The seed of a demonstration: `VIRTNET_MUTANT_SEED` (64 hex digits) or
/// one from the clock and the pid.
pub fn seed_from_env() -> Result<[u8; 32], String> {
    match std::env::var("VIRTNET_MUTANT_SEED") {
        Ok(s) => parse_hex(&s)
            .ok_or_else(|| format!("VIRTNET_MUTANT_SEED: expected 64 hex digits, got `{s}`")),
        Err(_) => {
            let mut s = [0u8; 32];
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            s[..16].copy_from_slice(&t.to_le_bytes());
            s[16..20].copy_from_slice(&std::process::id().to_le_bytes());
            Ok(s)
        }
    }
}

pub fn hex(seed: &[u8; 32]) -> String {
    seed.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_hex(s: &str) -> Option<[u8; 32]> {
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

pub fn report(seed: &[u8; 32], f: &Found<Input>) -> String {
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

/// The body of the state-machine mutant demonstrations
/// (`examples/mutant_*.rs`): switches the mutation on with `set(true)`,
/// hunts with the seed from the environment, switches it off and prints the
/// seed and minimal case. Exit status: 1 caught, 3 not caught (`escaped`
/// says what passed), 2 usage or run error.
#[allow(dead_code)]
pub fn machine_demo(mutation: &str, escaped: &str, set: fn(bool)) -> std::process::ExitCode {
    use std::process::ExitCode;
    let seed = match seed_from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cases = virtnet_conformance::props::cases(256, 2000);
    set(true);
    let found = hunt(seed, cases, machine_input(), machine_property);
    set(false);
    match found {
        Ok(Some(f)) => {
            println!("{}", machine_report(mutation, &seed, &f));
            ExitCode::from(1)
        }
        Ok(None) => {
            println!(
                "seed {}: {cases} operation sequences passed with {escaped}: the property did NOT catch the mutation",
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
