//! The scenario matrix: every case × backend × operation, filtered, run on
//! `jobs` worker threads (each real-host worker lives in its own network
//! namespaces), with a progress callback per finished scenario.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use virtnet_core::firewall::Backend;

use crate::cases::Case;
use crate::checks::Verdict;
use crate::host::HostFactory;
use crate::scenario::{ops_for, run_scenario_with, Op, Outcome, Scenario, ScenarioOptions};

/// Which part of the matrix to run.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    /// Substrings of scenario ids (`case/backend/op`); a scenario runs when
    /// it contains any of them (all scenarios when empty).
    pub filters: Vec<String>,
    pub backends: Vec<Backend>,
    pub jobs: usize,
    /// Passed to every scenario (fault stride).
    pub scenario: ScenarioOptions,
}

impl Default for MatrixOptions {
    fn default() -> Self {
        MatrixOptions {
            filters: Vec::new(),
            backends: vec![Backend::Iptables, Backend::Nftables],
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            scenario: ScenarioOptions::default(),
        }
    }
}

/// The scenarios of the matrix that pass the options' filters, in matrix
/// order (case, backend, operation).
pub fn scenarios(golden: &Path, cases: &[Case], opts: &MatrixOptions) -> Vec<Scenario> {
    let mut out = Vec::new();
    for case in cases {
        for backend in &opts.backends {
            for op in ops_for(golden, case, *backend) {
                let sc = Scenario {
                    case: case.name.clone(),
                    backend: *backend,
                    op,
                };
                let id = sc.id();
                if opts.filters.is_empty() || opts.filters.iter().any(|f| id.contains(f.as_str())) {
                    out.push(sc);
                }
            }
        }
    }
    out
}

fn weight(op: &Op) -> u32 {
    match op {
        Op::FailEach | Op::CrashEach => 10,
        Op::Upgrade(_) | Op::Switch => 3,
        _ => 1,
    }
}

/// Runs the scenarios on `jobs` threads; `progress(outcome, done, total)`
/// is called as each finishes. Outcomes are returned in the order of
/// `scenarios`.
pub fn run_matrix(
    factory: &dyn HostFactory,
    golden: &Path,
    cases: &[Case],
    scenarios: &[Scenario],
    jobs: usize,
    opts: &ScenarioOptions,
    progress: &(dyn Fn(&Outcome, usize, usize) + Sync),
) -> Vec<Outcome> {
    // Heavy scenarios first, so the workers finish together.
    let mut order: Vec<usize> = (0..scenarios.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(weight(&scenarios[*i].op)));
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; scenarios.len()]);
    let total = scenarios.len();
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = order.get(n) else { break };
                let sc = &scenarios[i];
                let Some(case) = cases.iter().find(|c| c.name == sc.case) else {
                    continue;
                };
                let t0 = std::time::Instant::now();
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_scenario_with(factory, golden, case, sc, opts)
                }))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Outcome {
                        scenario: sc.clone(),
                        verdict: Verdict::Fail {
                            message: format!("panicked: {msg}"),
                            diff: String::new(),
                        },
                        duration: t0.elapsed(),
                        steps: 0,
                    }
                });
                let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                progress(&out, d, total);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(out);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}
