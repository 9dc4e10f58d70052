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
//! Not checked here: that a guest's DHCP client then gets the fixed
//! address (needs the guest lab of the traffic checks).

use std::net::{IpAddr, Ipv4Addr};

use virtnet_core::driver::UpdateFlags;
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{NetworkDef, UpdateCommand, UpdateSection};

use crate::cases::Expectation;
use crate::checks::{fail, fail_diff, CheckResult};
use crate::host::FIREWALL_SECTIONS;

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
