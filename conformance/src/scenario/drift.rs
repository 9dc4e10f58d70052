//! The `drift` operation: start, check (nothing drifted), `nft flush
//! ruleset` (every table, iptables-nft's included) and the foreign tools
//! put their own rules back (Docker, firewalld — what happens after a
//! firewall reload), check (every rule of the network reported missing,
//! the private chains too), repair, check (nothing drifted); the firewall
//! then equals what the start left, and a destroy with the repaired
//! removal plan leaves the baseline and what libvirt keeps on purpose.
//! The same for the batched layout: with nftables the network's own
//! chains and map elements are compared with its definition and the
//! layout's shared part stands for the private chains; with iptables its
//! own chains (every rule reported when a chain is gone), jumps and
//! checksum rule are compared with one `iptables-save` per family.

use virtnet_core::firewall::Backend;
use virtnet_core::rules;
use virtnet_runner::Runner;

use crate::checks::{fail_diff, CheckResult, Failure};
use crate::host::{HostError, FIREWALL_SECTIONS};

use super::{driver_step, Ctx};

fn seed(r: &dyn Runner) -> Result<(), HostError> {
    let e = |e: virtnet_fake::seed::SeedError| HostError::Other(e.to_string());
    virtnet_fake::seed::seed_docker_iptables(r).map_err(e)?;
    virtnet_fake::seed::seed_docker_nft(r).map_err(e)?;
    virtnet_fake::seed::seed_firewalld_nft(r).map_err(e)
}

pub(super) fn op_drift(ctx: &Ctx, backend: Backend) -> CheckResult<()> {
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, backend)?;
    let d = driver_step(ctx.driver(&stage, None, backend), "driver open")?;
    ctx.start_checked(&stage, &d, &name, backend)?;
    let started = stage.host.snapshot()?;
    let clean = driver_step(d.check(None), "check after start")?;
    if clean.drifted() {
        return fail_diff(
            "check reports drift right after the start",
            format!("{clean:#?}"),
        );
    }
    let runner = stage.host.runner();
    runner.run_argv_checked(&["nft", "flush", "ruleset"])?;
    seed(&*runner)?;
    let rep = driver_step(d.check(None), "check after the flush")?;
    let with_rules = d
        .status(&name)
        .and_then(|st| st.fw_removal)
        .is_some_and(|plan| plan.action_cmds().next().is_some())
        && rules::has_firewall_rules(&ctx.case.def);
    if with_rules {
        let Some(n) = rep.networks.iter().find(|n| n.name == name) else {
            return fail_diff(
                "check after the flush does not list the network",
                format!("{rep:#?}"),
            );
        };
        if n.checked == 0 || n.drift.len() != n.checked {
            return fail_diff(
                format!(
                    "after the flush {} of {} rules reported",
                    n.drift.len(),
                    n.checked
                ),
                format!("{rep:#?}"),
            );
        }
        if rep.private_chains.is_empty() {
            return fail_diff(
                "after the flush the private chains are not reported",
                format!("{rep:#?}"),
            );
        }
    } else if rep.networks.iter().any(|n| !n.drift.is_empty()) {
        return fail_diff(
            "drift reported for a network without rules",
            format!("{rep:#?}"),
        );
    }
    let (_, after) = driver_step(d.repair(None), "repair")?;
    if after.drifted() {
        return fail_diff(
            "check after the repair still reports drift",
            format!("{after:#?}"),
        );
    }
    let repaired = stage.host.snapshot()?;
    ctx.compare(
        &started.only(FIREWALL_SECTIONS),
        &repaired.only(FIREWALL_SECTIONS),
        "after repair (as after the start)",
    )?;
    driver_step(d.destroy(&name), "destroy after repair")?;
    let destroyed = stage.host.snapshot()?;
    let baseline = stage.baseline.clone();
    drop(d);
    drop(stage);
    // As the destroy operation: baseline + kept private chains; the
    // forwarding sysctls stay as the start set them.
    let kept = ctx
        .kept(&[backend])
        .map_err(|e| Failure::new(format!("kept: {e}")))?;
    let mut expected = baseline.clone();
    for (k, v) in kept.sections {
        expected.sections.insert(k, v);
    }
    let expected = expected.with_section("sysctl", started.section("sysctl"));
    ctx.compare(&expected, &destroyed, "destroy after repair")?;
    Ok(())
}
