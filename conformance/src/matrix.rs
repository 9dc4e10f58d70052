//! The scenario matrix: every case × backend × operation, filtered, run on
//! `jobs` worker threads (each real-host worker lives in its own network
//! namespaces), with a progress callback per finished scenario.

use std::path::Path;

use virtnet_core::firewall::Backend;
use virtnet_core::rules::batched::Layout;

use crate::cases::Case;
use crate::checks::{run_parallel, Verdict};
use crate::host::HostFactory;
use crate::scenario::{ops_for_layout, run_scenario_with, Op, Outcome, Scenario, ScenarioOptions};

/// Which part of the matrix to run.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    /// Substrings of scenario ids (`case/backend/op`,
    /// `case/backend/batched/op`); a scenario runs when it contains any of
    /// them (all scenarios when empty).
    pub filters: Vec<String>,
    pub backends: Vec<Backend>,
    /// Firewall layouts (both by default): every operation runs for each.
    pub layouts: Vec<Layout>,
    pub jobs: usize,
    /// Passed to every scenario (fault stride).
    pub scenario: ScenarioOptions,
}

impl Default for MatrixOptions {
    fn default() -> Self {
        MatrixOptions {
            filters: Vec::new(),
            backends: vec![Backend::Iptables, Backend::Nftables],
            layouts: Layout::ALL.to_vec(),
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            scenario: ScenarioOptions::default(),
        }
    }
}

/// The scenarios of the matrix that pass the options' filters, in matrix
/// order (case, backend, layout, operation).
pub fn scenarios(golden: &Path, cases: &[Case], opts: &MatrixOptions) -> Vec<Scenario> {
    let mut out = Vec::new();
    for case in cases {
        for backend in &opts.backends {
            for layout in &opts.layouts {
                for op in ops_for_layout(golden, case, *backend, *layout) {
                    let sc = Scenario {
                        case: case.name.clone(),
                        backend: *backend,
                        layout: *layout,
                        op,
                    };
                    let id = sc.id();
                    if opts.filters.is_empty()
                        || opts.filters.iter().any(|f| id.contains(f.as_str()))
                    {
                        out.push(sc);
                    }
                }
            }
        }
    }
    out
}

fn weight(op: &Op) -> u32 {
    match op {
        Op::FailEach
        | Op::CrashEach
        | Op::CrashEachAfterEffect
        | Op::CrashEachSwitch
        | Op::CrashEachSwitchAfterEffect => 10,
        Op::CrashEachDestroy | Op::CrashEachDestroyAfterEffect => 5,
        Op::Upgrade(_) | Op::Switch | Op::TrafficUpgrade(_) => 3,
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
    let one = |i: usize| {
        let scenario = &scenarios[i];
        let case = cases.iter().find(|c| c.name == scenario.case)?;
        Some(run_scenario_with(factory, golden, case, scenario, opts))
    };
    let on_panic = |i: usize, message: String| Outcome {
        scenario: scenarios[i].clone(),
        verdict: Verdict::Fail {
            message: format!("panicked: {message}"),
            diff: String::new(),
        },
        duration: std::time::Duration::ZERO,
        steps: 0,
    };
    run_parallel(&order, scenarios.len(), jobs, &one, &on_panic, progress)
}
