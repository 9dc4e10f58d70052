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
//! backend; the table of the backend now in use), `traffic:drift` (bare;
//! after the start every table is flushed and `repair` restores the
//! networks' rules — the flows must then be what they were; bare, because
//! under the baseline's firewalld table most flows are refused with or
//! without them), `traffic:upgrade:SRC`
//! (bare, after this release took over the network another release — a
//! frozen virtnet release or a real libvirt daemon — left running: its
//! bridge, start stream and status file, then a daemon start with the
//! backend configured).
//!
//! Flows switched at layer 2 ([`crate::traffic::Path::Switched`]) are not
//! traced (the tracer models the IP hooks only); real packets check them.
//!
//! On the real host ([`check_flows_real`]) the same table is sent as real
//! packets through the lab (`virtnet_testkit::lab`): the outside behind the
//! uplink, one guest namespace per guest address of the table (static, as
//! the table gives it), and the table's DHCP flow as a real DHCP exchange —
//! a fresh guest on the bridge asks the network's dnsmasq for a lease with
//! busybox's udhcpc (delivered = it got one). A reply flow is the answer to
//! its original on the original's socket (delivered = the answer came
//! back; not delivered cannot say whether it was dropped or rejected).
//! Layer-2 flows are sent too. On a kernel without act_csum the nftables
//! backend's start fails and the scenario is the matrix's act_csum xfail,
//! unless `--csum-workaround` is given.

use std::net::IpAddr;

use virtnet_core::firewall::Backend;
use virtnet_fake::trace::{trace, Conntrack, Outcome as TraceOutcome};
use virtnet_runner::Runner;

use crate::cases::UpgradeSource;
use crate::checks::{fail, CheckResult, Failure, Stop};
use crate::host::{HostError, HostKind};
use crate::traffic::{
    flow_table, peer_xml, Expect, FlowTable, Foreign, Node, Path, Proto, Topology,
};

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
    /// Bare, after `nft flush ruleset` and `repair` (issue 18's drift:
    /// traffic works again). Bare, because under the baseline's firewalld
    /// table most flows are refused with or without the network's rules.
    Drift,
}

impl TrafficVariant {
    pub fn label(self) -> &'static str {
        match self {
            TrafficVariant::Baseline => "traffic",
            TrafficVariant::Bare => "traffic:bare",
            TrafficVariant::DockerDrop => "traffic:docker-drop",
            TrafficVariant::Restart => "traffic:restart",
            TrafficVariant::Switch => "traffic:switch",
            TrafficVariant::Drift => "traffic:drift",
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

/// Kept for the API: `traffic` now runs on the real host too (the lab).
pub const XFAIL_REAL: &str = "traffic: the host is neither simulated nor real";

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

/// A stage with the foreign rules of `v` and the topology's uplink, the
/// case's network started with `backend` (checked) and the peer network
/// when the case's flow table has one: the set-up of every traffic check.
fn start_with_peer(
    ctx: &Ctx,
    backend: Backend,
    v: TrafficVariant,
) -> CheckResult<(Stage, virtnet_core::driver::Driver, FlowTable)> {
    let def = &ctx.case.def;
    let topo = Topology::for_def(def);
    let stage = match v.foreign() {
        Foreign::Baseline => ctx.stage()?,
        Foreign::Bare => ctx.stage_seeded(def, "bare", &|_| Ok(()))?,
        Foreign::DockerDrop => ctx.stage_seeded(def, "docker-drop", &seed_docker_drop)?,
    };
    set_up_uplink(&*stage.host.runner(), &topo)?;
    let name = ctx.define(&stage, backend)?;
    let d = driver_step(ctx.driver(&stage, None, backend), "driver open")?;
    ctx.start_checked(&stage, &d, &name, backend)?;
    let table = flow_table(&ctx.case.name, def, backend, v.foreign());
    if table.peer {
        let peer = driver_step(d.define(&peer_xml()), "define the peer network")?;
        driver_step(d.start(&peer.name), "start the peer network")?;
    }
    Ok((stage, d, table))
}

/// Run the operation; the number of flows traced.
pub(super) fn op_traffic(ctx: &Ctx, backend: Backend, v: TrafficVariant) -> CheckResult<u64> {
    let def = &ctx.case.def;
    let (stage, d, _) = start_with_peer(ctx, backend, v)?;
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
        TrafficVariant::Drift => {
            // As the `drift` operation on a bare host: every table
            // flushed, then repair (of every network: the peer's rules
            // were flushed too).
            let runner = stage.host.runner();
            runner.run_argv_checked(&["nft", "flush", "ruleset"])?;
            let (_, after) = driver_step(d.repair(None), "repair after the flush")?;
            if after.drifted() {
                return fail(format!(
                    "check after the repair still reports drift: {after:#?}"
                ));
            }
            drop(d);
        }
        _ => drop(d),
    }
    let table = flow_table(&ctx.case.name, def, now, v.foreign());
    let what = format!("{}, backend {now}", v.label());
    if ctx.factory.kind() == HostKind::Real {
        return check_flows_real(&table, &what);
    }
    check_flows(&stage, &table, &what)
}

/// Every flow of the case's flow table traced on the fake after a start
/// with `backend` in the context's layout, on a host with the foreign
/// rules of `v` (`Baseline`, `Bare` or `DockerDrop`; the others are
/// `Bare`): each flow's text and the effect of its traced outcome
/// (delivered where, addresses and ports after NAT; or rejected / dropped
/// at which hook, without the rule that decided), in table order; a reply whose original was not delivered is `not sent`.
/// What [`crate::traffic`]'s layout-equivalence check compares between
/// the two layouts (independently of the documented expectations).
pub fn traced_outcomes(
    ctx: &Ctx,
    backend: Backend,
    v: TrafficVariant,
) -> CheckResult<Vec<(String, String)>> {
    let (stage, d, table) = start_with_peer(ctx, backend, v)?;
    drop(d);
    let Some(state) = stage.host.fake_state() else {
        return fail("traffic: this host has no simulated state for the packet tracer");
    };
    let mut ct = Conntrack::default();
    let mut seen: Vec<Option<(IpAddr, Option<u16>)>> = vec![None; table.flows.len()];
    let mut out = Vec::new();
    for (i, f) in table.flows.iter().enumerate() {
        if f.path == Path::Switched {
            continue;
        }
        let orig_seen = match f.reply_of {
            Some(o) => match seen.get(o).copied().flatten() {
                Some(s) => Some(s),
                None => {
                    out.push((f.to_string(), "not sent".to_string()));
                    continue;
                }
            },
            None => None,
        };
        let t = trace(&state, &mut ct, &f.trace_flow(orig_seen))
            .map_err(|e| Failure::new(format!("flow {f}: {e}")))?;
        if let TraceOutcome::Delivered { src, sport, .. } = &t.outcome {
            seen[i] = Some((*src, *sport));
        }
        out.push((f.to_string(), outcome_effect(&t.outcome)));
    }
    Ok(out)
}

/// What a traced outcome means for the guest, without which rule decided
/// (a rule of another chain in the other layout): where and how it was
/// delivered (addresses and ports after NAT), or at which hook it was
/// rejected (and with what) or dropped (by a rule, or by the policy of
/// which chain: a foreign one), or why it was unreachable.
fn outcome_effect(o: &TraceOutcome) -> String {
    let port = |p: &Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
    match o {
        TraceOutcome::Delivered {
            oif,
            src,
            sport,
            dst,
            dport,
        } => format!(
            "delivered out of {oif}, {src}{} -> {dst}{}",
            port(sport),
            port(dport)
        ),
        TraceOutcome::Local {
            iif,
            src,
            dst,
            dport,
        } => format!("local from {iif}, {src} -> {dst}{}", port(dport)),
        TraceOutcome::Dropped {
            hook,
            family,
            table,
            chain,
            handle: None,
            ..
        } => format!("dropped at {hook} by the policy of {family} {table} {chain}"),
        TraceOutcome::Dropped { hook, .. } => format!("dropped at {hook} by a rule"),
        TraceOutcome::Rejected { hook, with, .. } => format!("rejected at {hook} with {with}"),
        TraceOutcome::Unreachable { reason } => format!("unreachable: {reason}"),
    }
}

/// Sends every flow of `table` as real packets through the lab built around
/// the calling thread's namespace (the stage's); the number of flows sent.
pub fn check_flows_real(table: &FlowTable, what: &str) -> CheckResult<u64> {
    use std::collections::{HashMap, HashSet};
    use virtnet_testkit::lab::{Arrival, GuestSpec, Lab, Probe, L4};
    let lab_err = |e: String| Stop::Fail(Failure::new(format!("{what}: lab: {e}")));
    let topo = &table.topology;
    let mut lab = Lab::new().map_err(lab_err)?;
    // A TCP connection refused by an ICMP error is reported ~1 s after the
    // SYN on this kernel (measured); 2 s leaves room.
    lab.timeout = std::time::Duration::from_millis(2000);
    lab.unlimit_icmp().map_err(lab_err)?;
    lab.no_bridge_netfilter().map_err(lab_err)?;
    lab.add_outside(
        &topo.uplink,
        &[],
        &[
            (IpAddr::V4(topo.outside_v4), Topology::UPLINK_PREFIX_V4),
            (IpAddr::V6(topo.outside_v6), Topology::UPLINK_PREFIX_V6),
        ],
        &topo.outside_routes(),
    )
    .map_err(lab_err)?;
    // One lab guest per guest address of the table.
    let mut names: HashMap<(crate::traffic::Net, usize, IpAddr), String> = HashMap::new();
    let mut specs: Vec<GuestSpec> = Vec::new();
    for f in &table.flows {
        for n in [&f.from, &f.to] {
            if let Node::Guest {
                net,
                index,
                bridge,
                addr,
                prefix,
                gateway,
            } = n
            {
                if addr.is_unspecified() || names.contains_key(&(*net, *index, *addr)) {
                    continue;
                }
                names.insert((*net, *index, *addr), format!("guest{}", specs.len()));
                specs.push(GuestSpec {
                    bridge: bridge.clone(),
                    dhcp_prefix: None,
                    statics: vec![(*addr, *prefix)],
                    gateways: gateway
                        .iter()
                        .filter(|g| g.is_ipv4() == addr.is_ipv4())
                        .copied()
                        .collect(),
                    mac: None,
                });
            }
        }
    }
    lab.add_guests(&specs).map_err(lab_err)?;
    lab.wait_addresses().map_err(lab_err)?;
    let endpoint = |n: &Node| -> String {
        match n {
            Node::Guest {
                net, index, addr, ..
            } => names
                .get(&(*net, *index, *addr))
                .cloned()
                .unwrap_or_else(|| "guest?".into()),
            Node::Outside { .. } => "outside".into(),
            Node::Host { .. } => "host".into(),
        }
    };
    let answered: HashSet<usize> = table.flows.iter().filter_map(|f| f.reply_of).collect();
    let mut got: Vec<Option<Arrival>> = vec![None; table.flows.len()];
    let mut bad: Vec<String> = Vec::new();
    let mut sent = 0u64;
    for (i, f) in table.flows.iter().enumerate() {
        let arrival = if let Some(o) = f.reply_of {
            match got.get(o).cloned().flatten() {
                Some(Arrival::Delivered {
                    replied: Some(true),
                    ..
                }) => Arrival::Delivered {
                    at: endpoint(&f.to),
                    src: f.src,
                    sport: f.sport,
                    replied: None,
                },
                Some(Arrival::Delivered { .. }) => Arrival::Timeout,
                _ => {
                    bad.push(format!(
                        "flow {f}\n  expected: {} ({})\n  actual: not sent, its original was not delivered",
                        f.expect, f.why
                    ));
                    continue;
                }
            }
        } else if let Node::Guest {
            bridge,
            addr,
            prefix,
            ..
        } = &f.from
        {
            if addr.is_unspecified() {
                // The DHCP exchange itself: a fresh guest asks for a lease.
                match lab.add_guest(&GuestSpec {
                    bridge: bridge.clone(),
                    dhcp_prefix: Some(*prefix),
                    mac: f.dhcp_mac.clone(),
                    ..Default::default()
                }) {
                    Ok(gi) => {
                        // Out of the way of the other flows: its lease may
                        // be a static guest's address (a `<host>` entry's),
                        // and dnsmasq wrote the host's neighbour entry for
                        // it with this client's MAC.
                        let quiet = lab.guests[gi]
                            .ns
                            .cmd(&["ip", "link", "set", "eth0", "down"])
                            .and_then(|_| lab.host.cmd(&["ip", "neigh", "flush", "dev", bridge]));
                        quiet.map_err(lab_err)?;
                        Arrival::Answered {
                            at: "host".into(),
                            service: "dhcp lease".into(),
                        }
                    }
                    Err(e) if e.contains("got no lease") => Arrival::Timeout,
                    Err(e) => return Err(lab_err(e)),
                }
            } else {
                let p = Probe {
                    dst: f.dst,
                    proto: match f.proto {
                        Proto::Udp => L4::Udp,
                        Proto::Tcp => L4::Tcp,
                        Proto::Icmp | Proto::Icmpv6 => L4::Icmp,
                    },
                    sport: f.sport,
                    dport: f.dport,
                    reply: answered.contains(&i),
                };
                lab.send(&endpoint(&f.from), &p).map_err(lab_err)?
            }
        } else {
            let p = Probe {
                dst: f.dst,
                proto: match f.proto {
                    Proto::Udp => L4::Udp,
                    Proto::Tcp => L4::Tcp,
                    Proto::Icmp | Proto::Icmpv6 => L4::Icmp,
                },
                sport: f.sport,
                dport: f.dport,
                reply: answered.contains(&i),
            };
            lab.send(&endpoint(&f.from), &p).map_err(lab_err)?
        };
        sent += 1;
        if !meets_real(f, &endpoint(&f.to), &arrival) {
            bad.push(format!(
                "flow {f}\n  expected: {} ({})\n  actual (kernel): {arrival:?}",
                f.expect, f.why
            ));
        }
        got[i] = Some(arrival);
    }
    if !bad.is_empty() {
        let n = bad.len();
        let shown: Vec<String> = bad.into_iter().take(4).collect();
        return Err(Stop::Fail(Failure::new(format!(
            "{what}: {n} of {} flows sent for real differ from libvirt's documented outcome{}:\n{}",
            table.flows.len(),
            if n > 4 { " (first 4)" } else { "" },
            shown.join("\n")
        ))));
    }
    Ok(sent)
}

/// Does what the kernel did meet the expectation? `at`: the lab endpoint
/// of the flow's destination.
fn meets_real(
    flow: &crate::traffic::ProbeFlow,
    at: &str,
    a: &virtnet_testkit::lab::Arrival,
) -> bool {
    use virtnet_testkit::lab::Arrival;
    match (&flow.expect, a) {
        (Expect::Rejected, Arrival::Refused { .. }) => true,
        (Expect::Dropped, Arrival::Timeout) => true,
        (Expect::Blocked, Arrival::Refused { .. } | Arrival::Timeout) => true,
        // A reply that did not come back, or a DHCP discover (a broadcast
        // from no address) that got no lease: dropped or rejected, the
        // kernel does not tell which.
        (Expect::Rejected, Arrival::Timeout) => {
            flow.reply_of.is_some() || flow.from.addr().is_unspecified()
        }
        (
            Expect::Delivered { src, sport },
            Arrival::Delivered {
                at: got_at,
                src: s,
                sport: p,
                ..
            },
        ) => got_at == at && src.contains(*s) && sport.contains(*p),
        (Expect::Delivered { .. }, Arrival::Answered { at: got_at, .. }) => {
            matches!(flow.to, Node::Host { .. }) && got_at == "host"
        }
        _ => false,
    }
}

/// `traffic:upgrade:SRC`: the state `src` left (bridge, start stream,
/// status file) on a bare host, taken over by a driver with `to`, then
/// every flow of the table of `to`.
pub(super) fn op_traffic_upgrade(ctx: &Ctx, src: &UpgradeSource, to: Backend) -> CheckResult<u64> {
    let old = crate::upgrade::source_state(ctx.golden, &ctx.case.name, src)
        .map_err(|e| Failure::new(format!("golden data: {e}")))?;
    let def = &ctx.case.def;
    let topo = Topology::for_def(def);
    let stage = ctx.stage_seeded(def, "bare", &|_| Ok(()))?;
    let r = stage.host.runner();
    set_up_uplink(&*r, &topo)?;
    let bridge = ctx.case.bridge();
    let tftp = stage
        .state_dir
        .parent()
        .map(|p| p.join("tftproot"))
        .unwrap_or_default();
    std::fs::create_dir_all(&tftp).map_err(|e| Failure::new(format!("{}: {e}", tftp.display())))?;
    let status = crate::cases::localise_xml(&old.status, &tftp);
    let status_def = virtnet_core::store::parse_status(&status, &old.source)
        .map_err(|e| Failure::new(e.to_string()))?
        .def;
    // A virtual network's bridge, as the old daemon left it (the host
    // bridge of mode='bridge' is the admin's and already there).
    let links = r.run_argv_checked(&["ip", "-br", "link"])?.stdout;
    let exists = links
        .lines()
        .any(|l| l.split_whitespace().next() == Some(bridge.as_str()));
    let mut add = vec!["ip", "link", "add", "name", bridge.as_str()];
    let mac = status_def.mac.map(|m| m.to_string());
    if let Some(mac) = &mac {
        add.extend(["address", mac.as_str()]);
    }
    add.extend(["type", "bridge"]);
    if !exists {
        r.run_argv_checked(&add)?;
    }
    r.run_argv_checked(&["ip", "link", "set", "dev", &bridge, "up"])?;
    for ip in &status_def.ips {
        if let Some(p) = ip.prefix() {
            let a = format!("{}/{p}", ip.address);
            r.run_argv_checked(&["ip", "addr", "add", &a, "dev", &bridge])?;
        }
    }
    // The forwarding the old daemon turned on for a forwarding mode.
    if status_def.forward.is_some() {
        if status_def.ipv4_ips().next().is_some() {
            r.run_argv_checked(&["sysctl", "-w", "net.ipv4.ip_forward=1"])?;
        }
        if status_def.ipv6_enabled() {
            r.run_argv_checked(&["sysctl", "-w", "net.ipv6.conf.all.forwarding=1"])?;
        }
    }
    if !old.stream_has_chains {
        crate::kept::set_up_kept_in(&*r, &[(old.backend, old.layout)]).map_err(Failure::new)?;
    }
    for cmd in &old.stream {
        r.run_checked(cmd).map_err(|e| {
            Failure::new(format!(
                "replaying the {} start stream: {}",
                old.release,
                HostError::from(e)
            ))
        })?;
    }
    std::fs::create_dir_all(&stage.state_dir)
        .map_err(|e| Failure::new(format!("{}: {e}", stage.state_dir.display())))?;
    let status_path = stage.state_dir.join(format!("{}.xml", def.name));
    std::fs::write(&status_path, &status)
        .map_err(|e| Failure::new(format!("{}: {e}", status_path.display())))?;
    let d = driver_step(ctx.driver(&stage, None, to), "driver open")?;
    let rep = driver_step(d.reconcile(), "reconcile")?;
    if !rep.problems.is_empty() {
        return fail(format!("reconcile problems: {:?}", rep.problems));
    }
    let table = flow_table(&ctx.case.name, def, to, Foreign::Bare);
    if table.peer {
        let peer = driver_step(d.define(&peer_xml()), "define the peer network")?;
        driver_step(d.start(&peer.name), "start the peer network")?;
    }
    drop(d);
    let what = format!("traffic:upgrade:{}, backend {to}", src.label());
    if ctx.factory.kind() == HostKind::Real {
        return check_flows_real(&table, &what);
    }
    check_flows(&stage, &table, &what)
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
        return fail("traffic: this host has no simulated state for the packet tracer");
    };
    trace_table(&state, table, what)
}

/// The `traffic` check of one definition outside the matrix (the fake-only
/// property test, `tests/traffic_props.rs`): a fresh simulated host with
/// `foreign`'s rules, the definition's uplinks as bridges and the
/// topology's uplink addressed, the network started with `backend` (and
/// the peer network when the table has one), then every routed flow of
/// its table traced and compared with the documented outcome. The number
/// of flows traced; `Err` says which differ, with the tracer's path.
pub fn check_definition_on_fake(
    case: &crate::cases::Case,
    backend: Backend,
    foreign: Foreign,
) -> Result<u64, String> {
    use std::sync::Arc;
    let host = Arc::new(virtnet_fake::FakeHost::new());
    let r: &dyn Runner = &*host;
    let herr = |e: HostError| e.to_string();
    match foreign {
        Foreign::Bare => {}
        Foreign::Baseline => {
            virtnet_fake::seed::seed_docker_iptables(r).map_err(|e| e.to_string())?;
            virtnet_fake::seed::seed_docker_nft(r).map_err(|e| e.to_string())?;
            virtnet_fake::seed::seed_firewalld_nft(r).map_err(|e| e.to_string())?;
        }
        Foreign::DockerDrop => seed_docker_drop(r).map_err(herr)?,
    }
    for (i, dev) in crate::cases::uplinks(&case.def).iter().enumerate() {
        let mac = format!("02:00:00:00:00:{:02x}", i + 1);
        r.run_argv_checked(&["ip", "link", "add", dev, "type", "bridge"])
            .and_then(|_| r.run_argv_checked(&["ip", "link", "set", "dev", dev, "address", &mac]))
            .map_err(|e| e.to_string())?;
    }
    let topo = Topology::for_def(&case.def);
    set_up_uplink(r, &topo).map_err(herr)?;
    let dir = crate::props::scratch_dir()?;
    let d = crate::realtraffic::start_driver(
        &crate::host::FakeFactory::default(),
        dir.path(),
        host.clone(),
        backend,
        case,
    )?;
    let table = flow_table(&case.name, &case.def, backend, foreign);
    if table.peer {
        let peer = d
            .define(&peer_xml())
            .map_err(|e| format!("define the peer network: {e}"))?;
        d.start(&peer.name)
            .map_err(|e| format!("start the peer network: {e}"))?;
    }
    let what = format!("traffic ({}), backend {backend}", foreign.label());
    trace_table(&host.state(), &table, &what).map_err(|e| match e {
        Stop::Fail(f) => f.message,
        Stop::Xfail(x) => x,
    })
}

/// Trace every routed flow of `table` on simulated host `state`.
pub fn trace_table(
    state: &virtnet_fake::state::HostState,
    table: &FlowTable,
    what: &str,
) -> CheckResult<u64> {
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
        let t = match trace(state, &mut ct, &tf) {
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
