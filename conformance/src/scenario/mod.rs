//! The scenarios: one body per operation, written against [`HostFactory`] /
//! [`crate::host::TestHost`], run unchanged on the fake and on the real host.
//!
//! Every scenario starts from a *baseline* host: foreign rules (Docker's
//! iptables and nftables rulesets, firewalld's table) and the uplink devices
//! the case names. Every check compares whole canonical snapshots, so the
//! foreign rules are checked to be untouched by every step.
//!
//! * `context.rs` — [`Ctx`]: a scenario's hosts, driver state and the
//!   expectations computed on separate fresh hosts; the checks on them.
//! * `lifecycle.rs` — start, destroy, restart, backend switch, upgrade.
//! * `faults.rs` — fail-each and crash-each (of a start, a destroy and
//!   the reload after a backend switch, before or after a command's effect).
//! * `drift.rs` — drift: rules flushed, check reports, repair restores.
//! * `update.rs` — net-update: a DHCP host added live.

mod context;
mod drift;
mod faults;
mod lifecycle;
mod traffic;
mod update;

use std::path::Path;
use std::time::{Duration, Instant};

use virtnet_core::driver::DriverError;
use virtnet_core::firewall::Backend;
use virtnet_core::rules::batched::Layout;

use crate::cases::{self, Case, Expectation, UpgradeSource};
use crate::checks::{verdict_of, Failure, Stop, Verdict, XFAIL_QOS};
use crate::host::HostFactory;

pub use context::{Ctx, Stage};
pub use faults::{failure_is_tolerated, INJECTED_STDERR};
pub use traffic::{
    check_definition_on_fake, trace_table, traced_outcomes, TrafficVariant,
    XFAIL_REAL as XFAIL_TRAFFIC_REAL,
};

/// The operations of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Start: host = golden expectation, status fwRemoval = golden plan.
    Start,
    /// Start + destroy: host = baseline + what is kept on purpose.
    Destroy,
    /// Start, driver reopen + reconcile: same state, rules exactly once.
    Restart,
    /// Start with the backend, restart with the other: old rules gone, new
    /// rules present; destroy leaves nothing.
    Switch,
    /// Upgrade from a network another release started.
    Upgrade(UpgradeSource),
    /// Start, add a DHCP host live (net-update): dnsmasq refreshed (same
    /// process), the firewall as the start made it; destroy leaves nothing.
    Update,
    /// Failure of command k of a start, for every k.
    FailEach,
    /// Crash after command k of a start, for every k, then restart.
    CrashEach,
    /// Crash after command k of a start took effect (it ran; the daemon
    /// never saw its result), for every k, then restart.
    CrashEachAfterEffect,
    /// Start, `nft flush ruleset` (foreign rules put back), check reports
    /// the network's rules missing, repair restores them as after start.
    Drift,
    /// Crash before command k of a destroy of a started network, for every
    /// k, then restart: destroyed stays destroyed, or is whole and can be.
    CrashEachDestroy,
    /// Crash after command k of a destroy took effect, for every k.
    CrashEachDestroyAfterEffect,
    /// Started with the backend, the daemon reopens with the other one and
    /// crashes before command k of the reload, for every k; then restart:
    /// only the new backend's rules.
    CrashEachSwitch,
    /// The same, the crash after command k of the reload took effect.
    CrashEachSwitchAfterEffect,
    /// Start (with the peer network), then every flow of the case's flow
    /// table through the packet tracer (`traffic.rs`).
    Traffic(TrafficVariant),
    /// `traffic` after an upgrade from a network another release started.
    TrafficUpgrade(UpgradeSource),
}

impl Op {
    pub fn label(&self) -> String {
        match self {
            Op::Start => "start".into(),
            Op::Destroy => "destroy".into(),
            Op::Restart => "restart".into(),
            Op::Switch => "switch".into(),
            Op::Upgrade(s) => format!("upgrade:{}", s.label()),
            Op::Update => "update".into(),
            Op::FailEach => "fail-each".into(),
            Op::CrashEach => "crash-each".into(),
            Op::CrashEachAfterEffect => "crash-each:after-effect".into(),
            Op::Drift => "drift".into(),
            Op::CrashEachDestroy => "crash-each:destroy".into(),
            Op::CrashEachDestroyAfterEffect => "crash-each:destroy:after-effect".into(),
            Op::CrashEachSwitch => "crash-each:switch".into(),
            Op::CrashEachSwitchAfterEffect => "crash-each:switch:after-effect".into(),
            Op::Traffic(v) => v.label().into(),
            Op::TrafficUpgrade(s) => format!("traffic:upgrade:{}", s.label()),
        }
    }

    /// Column name in summaries (upgrade sources grouped by origin).
    pub fn column(&self) -> String {
        match self {
            Op::Upgrade(UpgradeSource::Frozen { release, .. }) => format!("up:{release}"),
            Op::Upgrade(UpgradeSource::Libvirt { version, .. }) => format!("up:libvirt-{version}"),
            Op::TrafficUpgrade(UpgradeSource::Frozen { release, .. }) => {
                format!("traffic:up:{release}")
            }
            Op::TrafficUpgrade(UpgradeSource::Libvirt { version, .. }) => {
                format!("traffic:up:libvirt-{version}")
            }
            o => o.label(),
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub case: String,
    pub backend: Backend,
    /// The firewall layout of every driver of the scenario.
    pub layout: Layout,
    pub op: Op,
}

impl Scenario {
    /// `case/backend/op` for libvirt's layout, `case/backend/batched/op`
    /// for the batched one: what `--filter` and `--exclude` match (the
    /// ids of libvirt's layout are those of the matrix before it had
    /// layouts).
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.case, self.row_backend(), self.op.label())
    }

    /// `backend` or `backend/batched`: the matrix row within a case.
    pub fn row_backend(&self) -> String {
        match self.layout {
            Layout::Libvirt => self.backend.to_string(),
            l => format!("{}/{l}", self.backend),
        }
    }
}

/// A finished scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub verdict: Verdict,
    pub duration: Duration,
    /// Sub-steps checked (k values of fail-each / crash-each, else 1).
    pub steps: u64,
}

fn driver_step<T>(r: Result<T, DriverError>, what: &str) -> Result<T, Failure> {
    r.map_err(|e| Failure::new(format!("{what}: {e}")))
}

/// Knobs of a scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioOptions {
    /// fail-each / crash-each inject at every `fault_stride`-th command
    /// (always including the first and the last); 1 = every command.
    pub fault_stride: u64,
    /// Crash at every command of a destroy and of a switch reload too
    /// (otherwise every [`faults::DESTROY_STRIDE`] / [`faults::RELOAD_STRIDE`]
    /// × `fault_stride`-th), and fail / crash a start of the batched layout
    /// at every command (otherwise at its firewall commands and the first
    /// and last: see `faults::start_points`).
    pub exhaustive: bool,
}

impl ScenarioOptions {
    /// Are a start's fail-each / crash-each points of `layout` focused on
    /// its firewall commands? (The batched layout, unless exhaustive.)
    fn focused(&self, layout: Layout) -> bool {
        layout == Layout::Batched && !self.exhaustive
    }

    fn op_stride(&self, op_stride: u64) -> u64 {
        if self.exhaustive {
            self.fault_stride
        } else {
            self.fault_stride.saturating_mul(op_stride)
        }
    }

    /// [`Self::op_stride`] for a layout: twice as sparse for the batched
    /// layout (its destroy and reload are a few batches, so the points
    /// still fall before, between and after them), unless exhaustive.
    /// Measured 2026-12-07: with the same strides as libvirt's layout the
    /// batched layout's crash-each of a switch reload and of a destroy
    /// took 79 of its 165 scenario-seconds, and the fake matrix of both
    /// layouts needed about 59 CPU-seconds per core, at its 60 s budget.
    fn op_stride_in(&self, op_stride: u64, layout: Layout) -> u64 {
        match layout {
            Layout::Batched if !self.exhaustive => self.op_stride(op_stride).saturating_mul(2),
            _ => self.op_stride(op_stride),
        }
    }
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        ScenarioOptions {
            fault_stride: 1,
            exhaustive: false,
        }
    }
}

/// Runs one scenario on hosts of `factory`, faults at every command.
pub fn run_scenario(
    factory: &dyn HostFactory,
    golden: &Path,
    case: &Case,
    scenario: &Scenario,
) -> Outcome {
    run_scenario_with(factory, golden, case, scenario, &ScenarioOptions::default())
}

/// Runs one scenario on hosts of `factory` with options.
pub fn run_scenario_with(
    factory: &dyn HostFactory,
    golden: &Path,
    case: &Case,
    scenario: &Scenario,
    opts: &ScenarioOptions,
) -> Outcome {
    let t0 = Instant::now();
    let mut steps = 1;
    let verdict = match Ctx::new(factory, golden, case) {
        Err(e) => Verdict::Fail {
            message: format!("host: {e}"),
            diff: String::new(),
        },
        Ok(ctx) => {
            let ctx = ctx.with_layout(scenario.layout);
            // A QoS case on a kernel without the tc modules libvirt's QoS
            // needs: every start fails (the start scenario checks that it
            // fails cleanly); the other operations are expected failures.
            let gate = match ctx.lacks_qos(scenario.backend) {
                Err(f) => Err(Stop::Fail(f)),
                Ok(true) if scenario.op != Op::Start => Err(Stop::Xfail(XFAIL_QOS.into())),
                Ok(_) => Ok(()),
            };
            let r = if let Err(stop) = gate {
                Err(stop)
            } else {
                match &scenario.op {
                    Op::Start => lifecycle::op_start(&ctx, scenario.backend),
                    Op::Destroy => lifecycle::op_destroy(&ctx, scenario.backend),
                    Op::Restart => lifecycle::op_restart(&ctx, scenario.backend),
                    Op::Switch => lifecycle::op_switch(&ctx, scenario.backend),
                    Op::Upgrade(src) => lifecycle::op_upgrade(&ctx, src, scenario.backend),
                    Op::Drift => drift::op_drift(&ctx, scenario.backend),
                    Op::Update => update::op_update(&ctx, scenario.backend),
                    Op::FailEach => faults::op_fail_each(
                        &ctx,
                        scenario.backend,
                        opts.fault_stride,
                        opts.focused(scenario.layout),
                    )
                    .map(|n| {
                        steps = n;
                    }),
                    Op::CrashEach => faults::op_crash_each(
                        &ctx,
                        scenario.backend,
                        opts.fault_stride,
                        opts.focused(scenario.layout),
                        faults::CrashWhen::BeforeCommand,
                    )
                    .map(|n| {
                        steps = n;
                    }),
                    Op::CrashEachAfterEffect => faults::op_crash_each(
                        &ctx,
                        scenario.backend,
                        opts.fault_stride,
                        opts.focused(scenario.layout),
                        faults::CrashWhen::AfterEffect,
                    )
                    .map(|n| {
                        steps = n;
                    }),
                    Op::CrashEachDestroy | Op::CrashEachDestroyAfterEffect => {
                        let when = if scenario.op == Op::CrashEachDestroy {
                            faults::CrashWhen::BeforeCommand
                        } else {
                            faults::CrashWhen::AfterEffect
                        };
                        faults::op_crash_each_destroy(
                            &ctx,
                            scenario.backend,
                            opts.op_stride_in(faults::DESTROY_STRIDE, scenario.layout),
                            when,
                        )
                        .map(|n| {
                            steps = n;
                        })
                    }
                    Op::CrashEachSwitch | Op::CrashEachSwitchAfterEffect => {
                        let when = if scenario.op == Op::CrashEachSwitch {
                            faults::CrashWhen::BeforeCommand
                        } else {
                            faults::CrashWhen::AfterEffect
                        };
                        faults::op_crash_each_switch(
                            &ctx,
                            scenario.backend,
                            opts.op_stride_in(faults::RELOAD_STRIDE, scenario.layout),
                            when,
                        )
                        .map(|n| {
                            steps = n;
                        })
                    }
                    Op::Traffic(v) => traffic::op_traffic(&ctx, scenario.backend, *v).map(|n| {
                        steps = n;
                    }),
                    Op::TrafficUpgrade(src) => {
                        traffic::op_traffic_upgrade(&ctx, src, scenario.backend).map(|n| {
                            steps = n;
                        })
                    }
                }
            };
            verdict_of(r)
        }
    };
    Outcome {
        scenario: scenario.clone(),
        verdict,
        duration: t0.elapsed(),
        steps,
    }
}

/// The operations that apply to a case with a backend (libvirt's layout).
pub fn ops_for(golden: &Path, case: &Case, backend: Backend) -> Vec<Op> {
    ops_for_layout(golden, case, backend, Layout::Libvirt)
}

/// The operations that apply to a case with a backend and a layout: the
/// same for both layouts (what applies is decided by that layout's golden
/// files: an error case runs start and fail-each only).
pub fn ops_for_layout(golden: &Path, case: &Case, backend: Backend, layout: Layout) -> Vec<Op> {
    let exp = cases::expectation_in(golden, cases::UNRELEASED, &case.name, backend, layout);
    if matches!(exp, Ok(Expectation::Error(_))) {
        return vec![Op::Start, Op::FailEach];
    }
    let mut ops = vec![Op::Start, Op::Destroy, Op::Restart, Op::Drift];
    let other = backend.other();
    let other_starts = matches!(
        cases::expectation_in(golden, cases::UNRELEASED, &case.name, other, layout),
        Ok(Expectation::Start { .. })
    );
    if other_starts {
        ops.push(Op::Switch);
    }
    for src in cases::upgrade_sources(golden, &case.name) {
        ops.push(Op::Upgrade(src));
    }
    if update::applies(&case.def) {
        ops.push(Op::Update);
    }
    ops.push(Op::FailEach);
    ops.push(Op::CrashEach);
    ops.push(Op::CrashEachAfterEffect);
    ops.push(Op::CrashEachDestroy);
    ops.push(Op::CrashEachDestroyAfterEffect);
    if other_starts {
        ops.push(Op::CrashEachSwitch);
        ops.push(Op::CrashEachSwitchAfterEffect);
    }
    ops.push(Op::Traffic(TrafficVariant::Baseline));
    ops.push(Op::Traffic(TrafficVariant::Bare));
    ops.push(Op::Traffic(TrafficVariant::DockerDrop));
    ops.push(Op::Traffic(TrafficVariant::Restart));
    ops.push(Op::Traffic(TrafficVariant::Drift));
    if other_starts {
        ops.push(Op::Traffic(TrafficVariant::Switch));
    }
    for src in cases::upgrade_sources(golden, &case.name) {
        ops.push(Op::TrafficUpgrade(src));
    }
    ops
}
