//! The `update` operation: a DHCP host added live with `net-update` to a
//! running network that serves DHCP on IPv4 (libvirt networkUpdate).
//!
//! Checks, on the fake and on the kernel alike: the hosts file dnsmasq
//! reads names the new host; the same dnsmasq process runs (its pid file is
//! unchanged and the process is alive: a SIGHUP refresh, not a restart);
//! the bridge and addresses were not touched; the firewall is the one the
//! start made (rules removed and added again, none lost or doubled,
//! foreign rules untouched) and the saved removal plan still equals the
//! golden plan; the status file has the host; destroy afterwards leaves
//! the baseline plus what libvirt keeps on purpose.
//!
//! That a guest's DHCP client then gets the fixed address: on the fake,
//! the hosts file line above maps `GUEST_MAC` to that address (what
//! dnsmasq answers from); on the kernel (`--real`), a guest of the lab
//! (`virtnet_testkit::lab`, busybox `udhcpc`) with `GUEST_MAC` is plugged
//! into the bridge after the update and must get exactly that address
//! from the network's dnsmasq (the same process, refreshed by SIGHUP).
//! The baseline's firewalld table rejects input from interfaces in no
//! zone, so for that exchange the bridge is put in an accepting zone (what
//! firewalld does for libvirt's bridges; the rule is deleted again before
//! the destroy check).

use std::net::{IpAddr, Ipv4Addr};

use virtnet_core::driver::UpdateFlags;
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{NetworkDef, UpdateCommand, UpdateSection};

use crate::cases::Expectation;
use crate::checks::{fail, fail_diff, CheckResult, Failure, Stop};
use crate::host::{HostKind, FIREWALL_SECTIONS};

use super::{driver_step, Ctx};

/// The MAC and name of the host the operation adds.
pub const GUEST_MAC: &str = "52:54:00:7e:57:01";
pub const GUEST_NAME: &str = "conformance-guest";

/// Whether the operation applies: the network serves DHCP on IPv4.
pub fn applies(def: &NetworkDef) -> bool {
    virtnet_core::dnsmasq::needs_dnsmasq(def) && guest_address(def).is_some()
}

/// The index of the `<ip>` libvirt picks for a DHCP host update and a free
/// address in it (from the top of the subnet down, one no host has).
fn guest_address(def: &NetworkDef) -> Option<(usize, Ipv4Addr)> {
    let (i, ip) = def
        .ips
        .iter()
        .enumerate()
        .find(|(_, ip)| ip.has_dhcp())
        .filter(|(_, ip)| ip.is_ipv4())?;
    let IpAddr::V4(a) = ip.address else {
        return None;
    };
    let prefix = ip.prefix()?;
    if prefix > 30 {
        return None;
    }
    let mask = u32::MAX << (32 - prefix);
    let net = u32::from(a) & mask;
    let bcast = net | !mask;
    (1..64)
        .map(|k| Ipv4Addr::from(bcast - k))
        .find(|c| *c != a && !ip.hosts.iter().any(|h| h.ip == Some(IpAddr::V4(*c))))
        .map(|c| (i, c))
}

/// With the seeded firewalld table (its input chain rejects what no zone
/// accepts), `bridge` is put in an accepting zone, as libvirt has
/// firewalld put its bridges in the `libvirt` zone (which virtnet never
/// does, see the README): a rule `iifname BRIDGE accept` first in
/// `filter_INPUT_ZONES`; its handle, to delete it again. `None`: no
/// firewalld table.
fn firewalld_zone(r: &dyn virtnet_runner::Runner, bridge: &str) -> CheckResult<Option<String>> {
    let there = r
        .run_argv(&[
            "nft",
            "list",
            "chain",
            "inet",
            "firewalld",
            "filter_INPUT_ZONES",
        ])
        .map(|o| o.status == 0)
        .unwrap_or(false);
    if !there {
        return Ok(None);
    }
    let out = r.run_argv_checked(&[
        "nft",
        "--echo",
        "--handle",
        "insert",
        "rule",
        "inet",
        "firewalld",
        "filter_INPUT_ZONES",
        "iifname",
        bridge,
        "accept",
    ])?;
    match out.stdout.rsplit_once("# handle ") {
        Some((_, h)) => Ok(Some(h.trim().to_string())),
        None => fail(format!(
            "nft printed no handle for the zone rule: {}",
            out.stdout
        )),
    }
}

/// A lab guest with [`GUEST_MAC`] on `bridge` asks the network's dnsmasq
/// for a lease (busybox udhcpc) and must get `addr`; the guest is removed
/// again before returning.
fn guest_gets(bridge: &str, prefix: u8, addr: Ipv4Addr) -> CheckResult<()> {
    use virtnet_testkit::lab::{GuestSpec, Lab};
    let lab_err = |e: String| Stop::Fail(Failure::new(format!("update: lab: {e}")));
    let mut lab = Lab::new().map_err(lab_err)?;
    lab.no_bridge_netfilter().map_err(lab_err)?;
    let i = lab
        .add_guest(&GuestSpec {
            bridge: bridge.to_string(),
            dhcp_prefix: Some(prefix),
            mac: Some(GUEST_MAC.to_string()),
            ..Default::default()
        })
        .map_err(lab_err)?;
    match lab.guests[i].lease.as_ref().map(|l| l.addr) {
        Some(got) if got == addr => Ok(()),
        got => fail(format!(
            "a guest with MAC {GUEST_MAC} got lease {got:?} after the update, expected its fixed address {addr}"
        )),
    }
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

pub(super) fn op_update(ctx: &Ctx, backend: Backend) -> CheckResult<()> {
    let Expectation::Start { removal, .. } = ctx.expectation(backend)? else {
        return fail("update of an error case");
    };
    let Some((_, addr)) = guest_address(&ctx.case.def) else {
        return fail("update: the case serves no DHCP on IPv4");
    };
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, backend)?;
    let d = driver_step(ctx.driver(&stage, None, backend), "driver open")?;
    ctx.start_checked(&stage, &d, &name, backend)?;
    let started = stage.host.snapshot()?;
    let pid_file = stage.state_dir.join(format!("{name}.pid"));
    let pid = read(&pid_file).trim().to_string();
    if pid.is_empty() {
        return fail(format!("no dnsmasq pid in {}", pid_file.display()));
    }
    let xml = format!("<host mac='{GUEST_MAC}' name='{GUEST_NAME}' ip='{addr}'/>");
    let r = driver_step(
        d.update(
            &name,
            UpdateCommand::AddLast,
            UpdateSection::IpDhcpHost,
            -1,
            &xml,
            UpdateFlags::CURRENT,
        ),
        "net-update add ip-dhcp-host",
    )?;
    if !r.live || r.config {
        return fail(format!(
            "update changed {r:?}, expected the live network only"
        ));
    }
    let after = stage.host.snapshot()?;
    let hosts = read(&stage.state_dir.join(format!("dnsmasq/{name}.hostsfile")));
    let line = format!("{GUEST_MAC},{addr},{GUEST_NAME}\n");
    if !hosts.contains(&line) {
        return fail_diff(format!("hosts file lacks `{}`", line.trim_end()), hosts);
    }
    let pid_now = read(&pid_file).trim().to_string();
    if pid_now != pid {
        return fail(format!(
            "dnsmasq was restarted (pid {pid} -> {pid_now}); libvirt sends SIGHUP"
        ));
    }
    if !after.section("processes").contains("dnsmasq") {
        return fail_diff(
            "dnsmasq gone after the update",
            after.section("processes").to_string(),
        );
    }
    for section in ["links"] {
        if started.section(section) != after.section(section) {
            return fail_diff(
                format!("update changed `{section}` (the bridge must stay up)"),
                started.diff(&after, "started", "updated"),
            );
        }
    }
    ctx.compare(
        &started.only(FIREWALL_SECTIONS),
        &after.only(FIREWALL_SECTIONS),
        "firewall after update",
    )?;
    ctx.check_status_removal(&d, &name, backend, &removal, "after update")?;
    if !read(&ctx.status_path(&stage)).contains(&format!("name='{GUEST_NAME}'")) {
        return fail("status file lacks the new host");
    }
    if ctx.factory.kind() == HostKind::Real {
        let st = d.status(&name);
        let bridge = st
            .as_ref()
            .and_then(|s| s.def.bridge_name())
            .unwrap_or_default()
            .to_string();
        let prefix = ctx
            .case
            .def
            .ips
            .iter()
            .find(|ip| ip.has_dhcp() && ip.is_ipv4())
            .and_then(|ip| ip.prefix())
            .and_then(|p| u8::try_from(p).ok())
            .unwrap_or(24);
        let r = stage.host.runner();
        let zone = firewalld_zone(&*r, &bridge)?;
        let got = guest_gets(&bridge, prefix, addr);
        if let Some(handle) = zone {
            r.run_argv_checked(&[
                "nft",
                "delete",
                "rule",
                "inet",
                "firewalld",
                "filter_INPUT_ZONES",
                "handle",
                &handle,
            ])?;
        }
        got?;
    }
    driver_step(d.destroy(&name), "destroy after update")?;
    let destroyed = stage.host.snapshot()?;
    let baseline = stage.baseline.clone();
    drop(d);
    drop(stage);
    let kept = ctx.kept(&[backend])?;
    let mut expected = baseline;
    for (k, v) in kept.sections {
        expected.sections.insert(k, v);
    }
    let expected = expected.with_section("sysctl", started.section("sysctl"));
    ctx.compare(&expected, &destroyed, "after update and destroy")?;
    Ok(())
}
