//! fail-each (command k of a start fails, for every k) and crash-each (the
//! daemon dies before command k runs — `crash-each` — or while it runs, so
//! that it takes effect unseen — `crash-each:after-effect` — then a new
//! daemon recovers), for every command of a start, of a destroy
//! (`crash-each:destroy[:after-effect]`) and of the reload that follows a
//! backend switch (`crash-each:switch[:after-effect]`: started with one
//! backend, the daemon reopens with the other and reconciles).

use std::sync::Arc;

use virtnet_core::driver::Driver;
use virtnet_core::firewall::Backend;
use virtnet_runner::{Cmd, Runner};
use virtnet_testkit::{FaultPlan, FaultRunner};

use crate::cases::Expectation;
use crate::checks::{fail, fail_diff, CheckResult, Stop, XFAIL_ACT_CSUM};
use crate::host::{Snapshot, FIREWALL_SECTIONS};

use super::{driver_step, Ctx, Stage};

/// stderr of an injected failure.
pub const INJECTED_STDERR: &str = "virtnet-conformance: injected failure\n";

/// The k values of a fault scenario: `first..=n` every `stride`, plus `n`.
fn fault_points(first: u64, n: u64, stride: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (first..=n).step_by(stride.max(1) as usize).collect();
    if v.last() != Some(&n) && n >= first {
        v.push(n);
    }
    v
}

/// Is `argv` a command of the part of a batched start in which the two
/// layouts differ: tc, an nft batch, a restore batch, an iptables command
/// other than libvirt's private-chain setup (the same commands in both
/// layouts with iptables, see [`failure_is_tolerated`])?
fn is_firewall_command(argv: &[String]) -> bool {
    match argv.first().map(String::as_str) {
        Some("tc" | "nft" | "iptables-restore" | "ip6tables-restore") => true,
        Some("iptables" | "ip6tables") => !failure_is_tolerated(argv),
        _ => false,
    }
}

/// The k values of a start's fail-each / crash-each (`cmds`: the commands
/// of a start, `first..=n`): [`fault_points`] with `stride`, except for
/// the batched layout when the run is not exhaustive (`focused`): there
/// only `first`, `n`, and the points right before and at every firewall
/// command of the layout's own (`k - 1`, `k`, for the 1-based command
/// index `k`; see [`is_firewall_command`]). The other commands of a start
/// (bridge, addresses, sysctls, dnsmasq, libvirt's private-chain setup
/// with iptables) are the same commands in both layouts, and the libvirt
/// layout's scenarios crash and fail at every one of them; the batched layout's own part — its tc
/// commands, the setup batches and the network's batch — is covered at
/// every command. (`cargo xtask conformance --exhaustive`: every command
/// for the batched layout too.)
fn start_points(first: u64, n: u64, stride: u64, focused: bool, cmds: &[Vec<String>]) -> Vec<u64> {
    if !focused {
        return fault_points(first, n, stride);
    }
    let mut v: Vec<u64> = vec![first, n];
    for (i, argv) in cmds.iter().enumerate().take(n as usize) {
        if is_firewall_command(argv) {
            let k = i as u64 + 1;
            v.push(k - 1);
            v.push(k);
        }
    }
    v.retain(|k| (first..=n).contains(k));
    v.sort_unstable();
    v.dedup();
    v
}

/// Start `k`-th-command failures: returns the number of k checked.
pub(super) fn op_fail_each(
    ctx: &Ctx,
    backend: Backend,
    stride: u64,
    focused: bool,
) -> CheckResult<u64> {
    let exp = ctx.expectation(backend)?;
    if ctx.lacks_csum(backend)? {
        // Every start fails at the csum filter anyway; the real check is
        // that this failure leaves the host as before (start scenario).
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let (n, cmds) = start_commands(ctx, backend)?;
    let kept = ctx.kept(&[backend])?;
    let mut tolerated = 0;
    let points = start_points(1, n, stride, focused, &cmds);
    for &k in &points {
        let what = format!("failing command #{k} of {n}");
        let stage = ctx.stage()?;
        let name = ctx.define(&stage, backend)?;
        let faults = Arc::new(
            FaultRunner::new(stage.host.runner()).with_plan(FaultPlan::none().fail_nth(
                k,
                1,
                INJECTED_STDERR,
            )),
        );
        let d = driver_step(
            ctx.driver(&stage, Some(faults.clone() as Arc<dyn Runner>), backend),
            "driver open",
        )?;
        // define changes nothing on the host: the baseline is the state before the start.
        let before = stage.baseline.clone();
        match d.start(&name) {
            Err(e) => {
                if e.is_crash() {
                    return fail(format!("{what}: reported as crash: {e}"));
                }
                // A start that should succeed must fail because of the
                // injected failure, and say so — unless the failed command
                // was private-chain setup, whose error libvirt only reports
                // for a network of that family: then a later command fails
                // for want of the chain, as in libvirt.
                let injected = faults.injected_cmd();
                if matches!(exp, Expectation::Start { .. })
                    && !e.to_string().contains(INJECTED_STDERR.trim())
                    && !injected.as_ref().is_some_and(failure_is_tolerated_cmd)
                {
                    return fail(format!("{what}: start failed for another reason: {e}"));
                }
                if ctx.status_path(&stage).exists() || !d.pending_journals().is_empty() {
                    return fail(format!("{what}: status file or journal left"));
                }
                let after = stage.host.snapshot()?;
                if before.section("sysctl") != after.section("sysctl") {
                    return fail_diff(
                        format!("{what}: sysctls not restored"),
                        before.diff(&after, "before", "after"),
                    );
                }
                ctx.check_nothing_left(&before, &after, &kept, &what)?;
            }
            Ok(()) => {
                // Tolerated failures: private-chain listings (taken for
                // "nothing there") and libvirt's ignore-errors groups.
                tolerated += 1;
                let injected = faults.injected_cmd();
                if !injected.as_ref().is_some_and(failure_is_tolerated_cmd) {
                    let argv = injected.map(|c| c.argv.join(" ")).unwrap_or_default();
                    return fail(format!("{what}: start succeeded although `{argv}` failed"));
                }
                driver_step(
                    d.destroy(&name),
                    &format!("{what}: destroy after tolerated failure"),
                )?;
                let after = stage.host.snapshot()?;
                ctx.check_nothing_left(
                    &before,
                    &after.with_section("sysctl", before.section("sysctl")),
                    &kept,
                    &format!("{what} (tolerated), then destroy"),
                )?;
            }
        }
    }
    if tolerated >= points.len() as u64 && n > 0 {
        return fail(format!(
            "none of {} command failures failed the start",
            points.len()
        ));
    }
    Ok(points.len() as u64)
}

/// Failures libvirt lets a start survive: the private-chain setup (its
/// errors are saved, and only matter to networks of that address family),
/// the ignore-errors CHECKSUM rule of the iptables backend, and the read of
/// the host's route table for the route-collision check (libvirt skips the
/// check when `/proc/net/route` cannot be read; virtnet reads the table with
/// `ip -4 route show`).
pub fn failure_is_tolerated(argv: &[String]) -> bool {
    let has = |w: &str| argv.iter().any(|a| a == w);
    let prog = argv.first().map(String::as_str).unwrap_or("");
    match prog {
        "ip" => argv[1..] == ["-4", "route", "show"],
        "iptables" | "ip6tables" => {
            has("--list-rules")
                || has("CHECKSUM")
                || (has("--new-chain") && argv.iter().any(|a| a.starts_with("LIBVIRT_")))
                || (has("--jump")
                    && argv.iter().any(|a| a.starts_with("LIBVIRT_"))
                    && ["INPUT", "OUTPUT", "FORWARD", "POSTROUTING"]
                        .iter()
                        .any(|c| has(c)))
        }
        "nft" => {
            has("libvirt_network")
                && ((has("list") && has("table"))
                    || (has("add") && (has("table") || has("chain")))
                    || (has("insert") && has("forward") && has("jump")))
        }
        _ => false,
    }
}

/// [`failure_is_tolerated`] for a command with its standard input: also
/// the batched layout's setup of its shared nft part (`nft -f -` whose
/// script adds the table `virtnet_batched` of one family and no network's
/// chain), whose error, like libvirt's private-chain setup's, is saved and
/// only fails a network of that family.
pub fn failure_is_tolerated_cmd(cmd: &Cmd) -> bool {
    if failure_is_tolerated(&cmd.argv) {
        return true;
    }
    let Some(stdin) = cmd.stdin.as_deref() else {
        return false;
    };
    cmd.argv[..] == ["nft", "-f", "-"]
        && stdin.lines().next().is_some_and(|l| {
            l == "add table ip virtnet_batched" || l == "add table ip6 virtnet_batched"
        })
        && !stdin.contains(" net_")
}

/// Commands a start gives the host before it succeeds or fails on its own
/// (on a fresh staged host). For a start that fails by itself, the undo
/// commands that follow its failure (from the first `ip link del` of the
/// bridge) are not counted: a failure of the undo itself is a double fault,
/// outside this scenario.
fn start_commands(ctx: &Ctx, backend: Backend) -> CheckResult<(u64, Vec<Vec<String>>)> {
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, backend)?;
    let faults = Arc::new(FaultRunner::new(stage.host.runner()));
    let d = driver_step(
        ctx.driver(&stage, Some(faults.clone() as Arc<dyn Runner>), backend),
        "driver open",
    )?;
    let ok = d.start(&name).is_ok();
    let n = faults.command_count();
    let cmds = faults.commands();
    if ok {
        return Ok((n, cmds));
    }
    let br = ctx.case.bridge();
    let undo_at = cmds.iter().position(|a| {
        a.len() >= 4 && a[0] == "ip" && a[1] == "link" && a[2] == "del" && a[3] == br
    });
    Ok((undo_at.map(|i| i as u64).unwrap_or(n), cmds))
}

/// Where a crash of [`op_crash_each`] falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashWhen {
    /// After `k` commands ran (k = 0..=n): command k+1 never runs.
    BeforeCommand,
    /// While command `k` runs (k = 1..=n): it takes effect on the host,
    /// the daemon never sees its result.
    AfterEffect,
}

/// Crash at command `k` of a start for every k (see [`CrashWhen`]), then
/// recover + driver reopen + reconcile: nothing of ours remains that no
/// status file accounts for, and an active network has its rules exactly
/// once.
pub(super) fn op_crash_each(
    ctx: &Ctx,
    backend: Backend,
    stride: u64,
    focused: bool,
    when: CrashWhen,
) -> CheckResult<u64> {
    if ctx.lacks_csum(backend)? {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let (n, cmds) = start_commands(ctx, backend)?;
    let kept = ctx.kept(&[backend])?;
    let Some(expected) = ctx.expected_start(backend, &[])? else {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    };
    let first = match when {
        CrashWhen::BeforeCommand => 0,
        CrashWhen::AfterEffect => 1,
    };
    let points = start_points(first, n, stride, focused, &cmds);
    for &k in &points {
        let (what, plan) = match when {
            CrashWhen::BeforeCommand => (
                format!("crash after command {k} of {n}"),
                FaultPlan::none().crash_after(k),
            ),
            CrashWhen::AfterEffect => (
                format!("crash after command {k} of {n} took effect"),
                FaultPlan::none().crash_after_effect(k),
            ),
        };
        let stage = ctx.stage()?;
        let name = ctx.define(&stage, backend)?;
        // define changes nothing on the host: the baseline is the state before the start.
        let before = stage.baseline.clone();
        let faults = Arc::new(FaultRunner::new(stage.host.runner()).with_plan(plan));
        let d = driver_step(
            ctx.driver(&stage, Some(faults as Arc<dyn Runner>), backend),
            "driver open",
        )?;
        let r = d.start(&name);
        drop(d);
        match r {
            Err(e) if !e.is_crash() => {
                return fail(format!("{what}: start failed without a crash: {e}"));
            }
            Ok(()) if k < n || when == CrashWhen::AfterEffect => {
                return fail(format!("{what}: start succeeded"));
            }
            _ => {}
        }
        // Recover: a new daemon on the same host.
        let d2 = driver_step(
            ctx.driver(&stage, None, backend),
            &format!("{what}: driver reopen"),
        )?;
        if !d2.pending_journals().is_empty() {
            return fail(format!("{what}: journal left after reopen"));
        }
        driver_step(d2.reconcile(), &format!("{what}: reconcile"))?;
        let active = d2.info(&name).map(|i| i.active).unwrap_or(false);
        if active {
            let now = stage.host.snapshot()?.only(FIREWALL_SECTIONS);
            ctx.compare(
                &expected,
                &now,
                &format!("{what}: active after recovery, rules exactly once"),
            )?;
            driver_step(d2.destroy(&name), &format!("{what}: destroy"))?;
        }
        let after = stage.host.snapshot()?;
        ctx.check_nothing_left(
            &before,
            &after,
            &kept,
            &format!(
                "{what}: after recovery{}",
                if active { " and destroy" } else { "" }
            ),
        )?;
    }
    Ok(points.len() as u64)
}

/// The crash fault of a point: `(label, plan)`.
fn crash_plan(when: CrashWhen, k: u64, n: u64, of: &str) -> (String, FaultPlan) {
    match when {
        CrashWhen::BeforeCommand => (
            format!("crash after command {k} of {n} of the {of}"),
            FaultPlan::none().crash_after(k),
        ),
        CrashWhen::AfterEffect => (
            format!("crash after command {k} of {n} of the {of} took effect"),
            FaultPlan::none().crash_after_effect(k),
        ),
    }
}

/// The first fault point of a crash-each: before any command (k = 0) or
/// after the first command's effect.
fn first_point(when: CrashWhen) -> u64 {
    match when {
        CrashWhen::BeforeCommand => 0,
        CrashWhen::AfterEffect => 1,
    }
}

/// The rules of a snapshot, compared after a recovery that may leave an
/// active network's bridge down (a crash after `ip link set down` during a
/// destroy: the daemon's start only checks that the bridge exists, as
/// libvirt's): the rulesets and the tc filters; tc qdiscs follow the link
/// state and are checked with the links once the network is destroyed.
fn rules_view(s: &Snapshot) -> Snapshot {
    let tc: String = s
        .section("tc")
        .lines()
        .filter(|l| !l.starts_with("qdisc"))
        .map(|l| format!("{l}\n"))
        .collect();
    s.only(&["nft", "iptables", "ip6tables"])
        .with_section("tc", &tc)
}

/// Nothing of the running network stays in the state directory: no status
/// file, no journal, no dnsmasq pid file. (The dnsmasq configuration and
/// hosts files stay after a destroy, as libvirt's do, until the network is
/// undefined.)
fn check_state_dir_clean(ctx: &Ctx, stage: &Stage, d: &Driver, what: &str) -> CheckResult<()> {
    if ctx.status_path(stage).exists() {
        return fail(format!("{what}: status file left"));
    }
    if !d.pending_journals().is_empty() {
        return fail(format!("{what}: journals left: {:?}", d.pending_journals()));
    }
    let dnsmasq_dir = stage.state_dir.join("dnsmasq");
    let state_dir = stage.state_dir.to_string_lossy();
    let paths = virtnet_core::dnsmasq::DnsmasqPaths::new(
        &dnsmasq_dir.to_string_lossy(),
        Some(&state_dir),
        &ctx.case.def.name,
        None,
    );
    for p in paths.pid_file.iter() {
        let p = std::path::Path::new(p);
        if p.exists() {
            return fail(format!("{what}: {} left", p.display()));
        }
    }
    Ok(())
}

/// Commands a destroy of a started network gives the host.
fn destroy_command_count(ctx: &Ctx, backend: Backend) -> CheckResult<u64> {
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, backend)?;
    let faults = Arc::new(FaultRunner::new(stage.host.runner()));
    let d = driver_step(
        ctx.driver(&stage, Some(faults.clone() as Arc<dyn Runner>), backend),
        "driver open",
    )?;
    ctx.start_checked(&stage, &d, &name, backend)?;
    faults.reset_counter();
    driver_step(d.destroy(&name), "destroy")?;
    Ok(faults.command_count())
}

/// Crash at command `k` of a destroy for every k (see [`CrashWhen`]), then
/// a new daemon recovers (driver reopen + reconcile): no journal is left;
/// the network is either gone (nothing of it on the host) or still active
/// with its rules exactly once (then it can be destroyed); after that
/// destroy nothing of it remains, on the host or in the state directory.
pub(super) fn op_crash_each_destroy(
    ctx: &Ctx,
    backend: Backend,
    stride: u64,
    when: CrashWhen,
) -> CheckResult<u64> {
    if ctx.lacks_csum(backend)? {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let n = destroy_command_count(ctx, backend)?;
    let kept = ctx.kept(&[backend])?;
    let Some(expected) = ctx.expected_start(backend, &[])? else {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    };
    let points = fault_points(first_point(when), n, stride);
    for &k in &points {
        let (what, plan) = crash_plan(when, k, n, "destroy");
        let stage = ctx.stage()?;
        let name = ctx.define(&stage, backend)?;
        let before = stage.baseline.clone();
        let faults = Arc::new(FaultRunner::new(stage.host.runner()));
        let d = driver_step(
            ctx.driver(&stage, Some(faults.clone() as Arc<dyn Runner>), backend),
            "driver open",
        )?;
        ctx.start_checked(&stage, &d, &name, backend)?;
        faults.reset_counter();
        faults.set_plan(plan);
        let r = d.destroy(&name);
        drop(d);
        match r {
            Err(e) if !e.is_crash() => {
                return fail(format!("{what}: destroy failed without a crash: {e}"));
            }
            Ok(()) if k < n || when == CrashWhen::AfterEffect => {
                return fail(format!("{what}: destroy succeeded"));
            }
            _ => {}
        }
        let d2 = driver_step(
            ctx.driver(&stage, None, backend),
            &format!("{what}: driver reopen"),
        )?;
        if !d2.pending_journals().is_empty() {
            return fail(format!("{what}: journal left after reopen"));
        }
        let rep = driver_step(d2.reconcile(), &format!("{what}: reconcile"))?;
        if !rep.problems.is_empty() {
            return fail(format!("{what}: reconcile problems: {:?}", rep.problems));
        }
        let active = d2.info(&name).map(|i| i.active).unwrap_or(false);
        if active {
            // Not destroyed yet: the network is whole again, rules once.
            let now = stage.host.snapshot()?;
            ctx.compare(
                &rules_view(&expected),
                &rules_view(&now),
                &format!("{what}: still active after recovery, rules exactly once"),
            )?;
            let want_dnsmasq = virtnet_core::dnsmasq::needs_dnsmasq(&ctx.case.def);
            let dnsmasqs = now
                .section("processes")
                .lines()
                .filter(|l| l.contains("dnsmasq"))
                .count();
            if dnsmasqs != usize::from(want_dnsmasq) {
                return fail_diff(
                    format!(
                        "{what}: {dnsmasqs} dnsmasq running after recovery, expected {}",
                        usize::from(want_dnsmasq)
                    ),
                    now.section("processes").to_string(),
                );
            }
            driver_step(
                d2.destroy(&name),
                &format!("{what}: destroy after recovery"),
            )?;
        }
        let after = stage.host.snapshot()?;
        ctx.check_nothing_left(
            &before,
            &after,
            &kept,
            &format!(
                "{what}: after recovery{}",
                if active { " and destroy" } else { "" }
            ),
        )?;
        check_state_dir_clean(ctx, &stage, &d2, &what)?;
    }
    Ok(points.len() as u64)
}

/// Starts the network with `from` on a fresh stage and reopens a driver
/// with the other backend through `faults`: the stage, the network's
/// name and the driver whose reconcile reloads the rules.
fn switch_stage(
    ctx: &Ctx,
    from: Backend,
    faults: impl Fn(&Stage) -> Arc<FaultRunner>,
) -> CheckResult<(Stage, String, Driver, Arc<FaultRunner>)> {
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, from)?;
    let d = driver_step(ctx.driver(&stage, None, from), "driver open")?;
    ctx.start_checked(&stage, &d, &name, from)?;
    drop(d);
    let f = faults(&stage);
    let d2 = driver_step(
        ctx.driver(&stage, Some(f.clone() as Arc<dyn Runner>), from.other()),
        "driver reopen with the other backend",
    )?;
    Ok((stage, name, d2, f))
}

/// The crash-each operations of the reload after a backend switch crash at
/// every `RELOAD_STRIDE × --fault-stride`-th command of the reload, and
/// those of a destroy at every `DESTROY_STRIDE × --fault-stride`-th (always
/// the first and the last), unless the run is exhaustive (`cargo xtask
/// conformance --exhaustive`: every command). Each point costs a whole
/// start, a crash and a recovery: at every command these four operations
/// took 96 of the fake matrix's 154 CPU-seconds (83 s wall on 2 cores, past
/// its 60 s budget; measured 2026-12-07). A reload repeats one pattern per
/// rule (delete old, add new) and a destroy one per rule, so the strided
/// points still crash in every phase many times.
pub const RELOAD_STRIDE: u64 = 9;
/// See [`RELOAD_STRIDE`].
pub const DESTROY_STRIDE: u64 = 3;

/// Crash at command `k` of the reload after a backend switch for every k
/// (see [`CrashWhen`]): the network is started with `from`, the daemon
/// reopens with the other backend and its reconcile crashes; then a new
/// daemon (still the other backend) recovers and reconciles: no journal is
/// left, the network is active with only the new backend's rules (the
/// rulesets equal a start with the new backend after both backends' private
/// chains were set up), and its destroy leaves nothing but what libvirt
/// keeps.
pub(super) fn op_crash_each_switch(
    ctx: &Ctx,
    from: Backend,
    stride: u64,
    when: CrashWhen,
) -> CheckResult<u64> {
    let to = from.other();
    if ctx.lacks_csum(from)? || ctx.lacks_csum(to)? {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let n = {
        let (_stage, _name, d, f) =
            switch_stage(ctx, from, |s| Arc::new(FaultRunner::new(s.host.runner())))?;
        let rep = driver_step(d.reconcile(), "reconcile")?;
        if !rep.problems.is_empty() {
            return fail(format!("reconcile problems: {:?}", rep.problems));
        }
        f.command_count()
    };
    let kept = ctx.kept(&[from, to])?;
    let Some(expected) = ctx.expected_start(to, &[from])? else {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    };
    let points = fault_points(first_point(when), n, stride);
    for &k in &points {
        let (what, plan) = crash_plan(when, k, n, &format!("reload {from}->{to}"));
        let (stage, name, d, _f) = switch_stage(ctx, from, |s| {
            Arc::new(FaultRunner::new(s.host.runner()).with_plan(plan.clone()))
        })?;
        let before = stage.baseline.clone();
        let r = d.reconcile();
        drop(d);
        match r {
            Err(e) if !e.is_crash() => {
                return fail(format!("{what}: reconcile failed without a crash: {e}"));
            }
            Ok(rep) if k < n || when == CrashWhen::AfterEffect => {
                return fail(format!("{what}: reconcile succeeded ({rep:?})"));
            }
            _ => {}
        }
        let d2 = driver_step(
            ctx.driver(&stage, None, to),
            &format!("{what}: driver reopen"),
        )?;
        if !d2.pending_journals().is_empty() {
            return fail(format!("{what}: journal left after reopen"));
        }
        let rep = driver_step(d2.reconcile(), &format!("{what}: reconcile"))?;
        if !rep.problems.is_empty() {
            return fail(format!("{what}: reconcile problems: {:?}", rep.problems));
        }
        if !d2.info(&name).map(|i| i.active).unwrap_or(false) {
            return fail(format!("{what}: network not active after recovery"));
        }
        if d2
            .status(&name)
            .and_then(|s| s.removal_backend())
            .is_some_and(|b| b != to)
        {
            return fail(format!("{what}: saved removal plan is not of {to}"));
        }
        let switched = stage.host.snapshot()?;
        ctx.compare(
            &rules_view(&expected),
            &rules_view(&switched),
            &format!("{what}: after recovery, only the rules of {to}, exactly once"),
        )?;
        driver_step(
            d2.destroy(&name),
            &format!("{what}: destroy after recovery"),
        )?;
        let after = stage.host.snapshot()?;
        ctx.check_nothing_left(
            &before,
            &after,
            &kept,
            &format!("{what}: after recovery and destroy"),
        )?;
        check_state_dir_clean(ctx, &stage, &d2, &what)?;
    }
    Ok(points.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_points_cover_first_and_last() {
        assert_eq!(fault_points(1, 5, 1), vec![1, 2, 3, 4, 5]);
        assert_eq!(fault_points(1, 10, 4), vec![1, 5, 9, 10]);
        assert_eq!(fault_points(0, 8, 4), vec![0, 4, 8]);
        assert_eq!(fault_points(1, 0, 1), Vec::<u64>::new());
    }

    #[test]
    fn focused_points_are_every_firewall_command_and_the_ends() {
        let cmds: Vec<Vec<String>> = [
            "ip link add",
            "sysctl -w",
            "tc qdisc",
            "nft -f -",
            "ip addr add",
            "dnsmasq",
        ]
        .iter()
        .map(|c| c.split(' ').map(String::from).collect())
        .collect();
        assert_eq!(start_points(0, 6, 1, true, &cmds), vec![0, 2, 3, 4, 6]);
        assert_eq!(start_points(1, 6, 1, true, &cmds), vec![1, 2, 3, 4, 6]);
        assert_eq!(start_points(1, 6, 1, false, &cmds), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn tolerated_failures_are_private_chain_setup_and_checksum_only() {
        let t = |s: &str| failure_is_tolerated(&s.split(' ').map(String::from).collect::<Vec<_>>());
        assert!(t("iptables -w --table filter --list-rules"));
        assert!(t("ip6tables -w --table filter --new-chain LIBVIRT_FWI"));
        assert!(t(
            "iptables -w --table filter --insert FORWARD --jump LIBVIRT_FWX"
        ));
        assert!(t("iptables -w --table mangle --insert LIBVIRT_PRT --out-interface virbr0 --protocol udp --destination-port 68 --jump CHECKSUM --checksum-fill"));
        assert!(t("nft add table ip6 libvirt_network"));
        assert!(t("nft list table ip libvirt_network"));
        assert!(!t("iptables -w --table filter --insert LIBVIRT_INP --in-interface virbr0 --protocol udp --destination-port 67 --jump ACCEPT"));
        assert!(!t(
            "nft -ae insert rule ip libvirt_network guest_output iif virbr0 counter reject"
        ));
        assert!(!t("ip link add name virbr0 type bridge"));
        assert!(t("ip -4 route show"));
        assert!(!t("ip -4 route add 10.0.0.0/24 dev virbr0"));
        assert!(!t("tc filter add dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp"));
    }
}
