//! The `traffic` operation (issue 16 item 4): start the case's network
//! and the peer network on a host with the variant's foreign rules, then
//! every flow of the case's flow table ([`crate::traffic`]) through the
//! simulator's packet tracer ([`virtnet_fake::trace::trace`]), each compared
//! with its documented expectation.
//!
//! Variants (labels): `traffic` (the matrix baseline's foreign rules:
//! Docker's iptables chains and nft table, firewalld's table),
//! `traffic:bare` (none), `traffic:docker-drop` (Docker with its FORWARD
//! policy DROP), `traffic:restart` (bare, after a daemon restart and
//! reconcile), `traffic:switch` (bare, after a restart with the other
//! backend; the table of the backend now in use).
//!
//! Flows switched at layer 2 ([`crate::traffic::Path::Switched`]) are not
//! traced (the tracer models the IP hooks only); real packets check them.
//! On the real host the operation is an expected failure until the
//! real-packet harness (issue 16 item 3) drives it.

use std::net::IpAddr;

use virtnet_core::firewall::Backend;
use virtnet_fake::trace::{trace, Conntrack, Outcome as TraceOutcome};
use virtnet_runner::Runner;

use crate::checks::{fail, CheckResult, Failure, Stop};
use crate::host::{HostError, HostKind};
use crate::traffic::{flow_table, peer_xml, Expect, FlowTable, Foreign, Node, Path, Topology};

use super::context::seed_err;
use super::{driver_step, Ctx, Stage};

/// Which `traffic` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficVariant {
    /// Foreign rules as in the matrix baseline.
    Baseline,
    Bare,
    DockerDrop,
    /// Bare, after a restart of the daemon (reconcile).
    Restart,
    /// Bare, after a restart with the other backend.
    Switch,
}

impl TrafficVariant {
    pub fn label(self) -> &'static str {
        match self {
            TrafficVariant::Baseline => "traffic",
            TrafficVariant::Bare => "traffic:bare",
            TrafficVariant::DockerDrop => "traffic:docker-drop",
            TrafficVariant::Restart => "traffic:restart",
            TrafficVariant::Switch => "traffic:switch",
        }
    }

    fn foreign(self) -> Foreign {
        match self {
            TrafficVariant::Baseline => Foreign::Baseline,
            TrafficVariant::DockerDrop => Foreign::DockerDrop,
            _ => Foreign::Bare,
        }
    }
}

/// Why `traffic` does not run on the real host yet.
pub const XFAIL_REAL: &str =
    "traffic on the real host needs the real-packet harness (issue 16 item 3), not built yet";

/// The Docker rules with the FORWARD policy Docker sets.
fn seed_docker_drop(r: &dyn Runner) -> Result<(), HostError> {
    virtnet_fake::seed::seed_docker_iptables(r).map_err(seed_err)?;
    virtnet_fake::seed::seed_docker_nft(r).map_err(seed_err)?;
    r.run_argv_checked(&["iptables", "-w", "-P", "FORWARD", "DROP"])?;
    Ok(())
}

/// The uplink of the topology: created when the case names none, with
/// the topology's addresses, up.
fn set_up_uplink(r: &dyn Runner, topo: &Topology) -> Result<(), HostError> {
    let links = r.run_argv_checked(&["ip", "-br", "link"])?.stdout;
    let up = topo.uplink.as_str();
    if !links
        .lines()
        .any(|l| l.split_whitespace().next() == Some(up))
    {
        r.run_argv_checked(&["ip", "link", "add", up, "type", "bridge"])?;
    }
    let a4 = format!("{}/{}", topo.uplink_v4, Topology::UPLINK_PREFIX_V4);
    let a6 = format!("{}/{}", topo.uplink_v6, Topology::UPLINK_PREFIX_V6);
    r.run_argv_checked(&["ip", "addr", "add", &a4, "dev", up])?;
    r.run_argv_checked(&["ip", "-6", "addr", "add", &a6, "dev", up])?;
    r.run_argv_checked(&["ip", "link", "set", "dev", up, "up"])?;
    Ok(())
}

/// Run the operation; the number of flows traced.
pub(super) fn op_traffic(ctx: &Ctx, backend: Backend, v: TrafficVariant) -> CheckResult<u64> {
    if ctx.factory.kind() == HostKind::Real {
        return Err(Stop::Xfail(XFAIL_REAL.into()));
    }
    let def = &ctx.case.def;
    let topo = Topology::for_def(def);
    let stage = match v.foreign() {
        Foreign::Baseline => ctx.stage()?,
        Foreign::Bare => ctx.stage_seeded(def, &|_| Ok(()))?,
        Foreign::DockerDrop => ctx.stage_seeded(def, &seed_docker_drop)?,
    };
    set_up_uplink(&*stage.host.runner(), &topo)?;
    let name = ctx.define(&stage, backend)?;
    let d = driver_step(ctx.driver(&stage, None, backend), "driver open")?;
    ctx.start_checked(&stage, &d, &name, backend)?;
    let table0 = flow_table(&ctx.case.name, def, backend, v.foreign());
    if table0.peer {
        let peer = driver_step(d.define(&peer_xml()), "define the peer network")?;
        driver_step(d.start(&peer.name), "start the peer network")?;
    }
    let mut now = backend;
    match v {
        TrafficVariant::Restart | TrafficVariant::Switch => {
            if v == TrafficVariant::Switch {
                now = backend.other();
            }
            drop(d);
            let d2 = driver_step(ctx.driver(&stage, None, now), "driver reopen")?;
            let rep = driver_step(d2.reconcile(), "reconcile")?;
            if !rep.problems.is_empty() {
                return fail(format!("reconcile problems: {:?}", rep.problems));
            }
        }
        _ => drop(d),
    }
    let table = flow_table(&ctx.case.name, def, now, v.foreign());
    check_flows(&stage, &table, &format!("{}, backend {now}", v.label()))
}

/// Does the tracer's outcome meet the expectation?
fn meets(flow: &crate::traffic::ProbeFlow, topo: &Topology, o: &TraceOutcome) -> bool {
    match (&flow.expect, o) {
        (Expect::Rejected, TraceOutcome::Rejected { .. }) => true,
        (Expect::Dropped, TraceOutcome::Dropped { .. }) => true,
        (
            Expect::Blocked,
            TraceOutcome::Rejected { .. }
            | TraceOutcome::Dropped { .. }
            | TraceOutcome::Unreachable { .. },
        ) => true,
        (
            Expect::Delivered { src, sport },
            TraceOutcome::Local {
                src: s, dst, dport, ..
            },
        ) => {
            matches!(flow.to, Node::Host { .. })
                && src.contains(*s)
                && *dst == flow.dst
                && *dport == flow.dport
                // The host sees the sender's port unchanged (no NAT on input).
                && sport.contains(flow.sport)
        }
        (
            Expect::Delivered { src, sport },
            TraceOutcome::Delivered {
                oif,
                src: s,
                sport: sp,
                dst,
                dport,
            },
        ) => {
            let want_oif = match &flow.to {
                Node::Guest { bridge, .. } => bridge.as_str(),
                Node::Outside { .. } => topo.uplink.as_str(),
                Node::Host { .. } => return false,
            };
            oif == want_oif
                && src.contains(*s)
                && sport.contains(*sp)
                && *dst == flow.dst
                && *dport == flow.dport
        }
        _ => false,
    }
}

/// Trace every routed flow of `table` on the stage's simulated host.
fn check_flows(stage: &Stage, table: &FlowTable, what: &str) -> CheckResult<u64> {
    let Some(state) = stage.host.fake_state() else {
        return Err(Stop::Xfail(XFAIL_REAL.into()));
    };
    let mut ct = Conntrack::default();
    let mut seen: Vec<Option<(IpAddr, Option<u16>)>> = vec![None; table.flows.len()];
    let mut bad: Vec<String> = Vec::new();
    let mut traced = 0u64;
    for (i, f) in table.flows.iter().enumerate() {
        if f.path == Path::Switched {
            continue;
        }
        let orig_seen = match f.reply_of {
            Some(o) => match seen.get(o).copied().flatten() {
                Some(s) => Some(s),
                None => {
                    bad.push(format!(
                        "flow {f}\n  expected: {} ({})\n  actual: not sent, its original was not delivered",
                        f.expect, f.why
                    ));
                    continue;
                }
            },
            None => None,
        };
        let tf = f.trace_flow(orig_seen);
        let t = match trace(&state, &mut ct, &tf) {
            Ok(t) => t,
            Err(e) => {
                bad.push(format!(
                    "flow {f}\n  expected: {} ({})\n  actual: {e}",
                    f.expect, f.why
                ));
                continue;
            }
        };
        traced += 1;
        if let TraceOutcome::Delivered { src, sport, .. } = &t.outcome {
            seen[i] = Some((*src, *sport));
        }
        if !meets(f, &table.topology, &t.outcome) {
            let path: String = t
                .to_string()
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect();
            bad.push(format!(
                "flow {f}\n  expected: {} ({})\n  actual: {}\n  path:\n{path}",
                f.expect, f.why, t.outcome
            ));
        }
    }
    if !bad.is_empty() {
        let n = bad.len();
        let shown: Vec<String> = bad.into_iter().take(4).collect();
        return Err(Stop::Fail(Failure::new(format!(
            "{what}: {n} of {} flows differ from libvirt's documented outcome{}:\n{}",
            table.flows.len(),
            if n > 4 { " (first 4)" } else { "" },
            shown.join("\n")
        ))));
    }
    Ok(traced)
}
