//! The forward-mode table: what start and shutdown do for each mode.
//!
//! [`ops_for`] is the ONE place that maps a forward mode to its functions
//! (an exhaustive `match`: the compiler checks every mode has its row).
//! Bridge-based modes (isolated, nat, route, open) create and configure
//! their own bridge, firewall it and run dnsmasq; host-managed modes only do
//! what libvirt does for them (bridge with a bridge name: its `<bandwidth>`
//! on that bridge, see [`super::bandwidth`]; macvtap-style modes
//! and hostdev: fill the device pool from a `<pf>`'s virtual functions).
//!
//! Every host change goes through `ctx.runner` (the journaling runner during
//! a start), as argv: where libvirt uses netlink and `/proc` writes, virtnet
//! runs `ip` and `sysctl`, and `kill` for signals.

use crate::firewall::Firewall;
use std::net::IpAddr;

use crate::netxml::{ForwardDevice, ForwardIf, ForwardMode, NetworkDef};
use crate::rules::batched::BridgeState;
use crate::rules::{self, Args};
use crate::store::NetworkStatus;
use virtnet_runner::{Cmd, RunError, Runner};

use super::{Driver, DriverError};

/// The nine kinds of networks, as libvirt's start/shutdown dispatch sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModeKind {
    Isolated,
    Nat,
    Route,
    Open,
    Bridge,
    Private,
    Vepa,
    Passthrough,
    Hostdev,
}

impl ModeKind {
    pub fn of(mode: Option<ForwardMode>) -> ModeKind {
        match mode {
            None => ModeKind::Isolated,
            Some(ForwardMode::Nat) => ModeKind::Nat,
            Some(ForwardMode::Route) => ModeKind::Route,
            Some(ForwardMode::Open) => ModeKind::Open,
            Some(ForwardMode::Bridge) => ModeKind::Bridge,
            Some(ForwardMode::Private) => ModeKind::Private,
            Some(ForwardMode::Vepa) => ModeKind::Vepa,
            Some(ForwardMode::Passthrough) => ModeKind::Passthrough,
            Some(ForwardMode::Hostdev) => ModeKind::Hostdev,
        }
    }
}

/// What a start needs besides the definition.
pub struct StartCtx<'a> {
    pub driver: &'a Driver,
    /// The journaling runner of this start.
    pub runner: &'a dyn Runner,
    /// Records facts that are not commands (dnsmasq pid, previous sysctls).
    pub note: &'a dyn Fn(&str, &str, &str) -> Result<(), DriverError>,
}

/// Start: configure the host for `def` (the live definition, which the
/// firewall code may complete) and return the firewall removal plan.
pub type StartFn = fn(&StartCtx<'_>, &mut NetworkDef) -> Result<Option<Firewall>, DriverError>;
/// Shutdown: undo what start did, given the status saved at start.
pub type ShutdownFn = fn(&Driver, &dyn Runner, &NetworkStatus) -> Result<(), DriverError>;

/// One row of the table.
pub struct ModeOps {
    pub kind: ModeKind,
    pub start: StartFn,
    pub shutdown: ShutdownFn,
    /// Whether the daemon reloads this network's firewall at startup
    /// (libvirt 11.3.0: none/nat/route/open).
    pub reload_firewall: bool,
}

/// The row for a forward mode: an exhaustive `match`, so a new mode does
/// not compile until it has its row.
pub fn ops_for(mode: Option<ForwardMode>) -> ModeOps {
    let kind = ModeKind::of(mode);
    match kind {
        ModeKind::Isolated | ModeKind::Nat | ModeKind::Route | ModeKind::Open => ModeOps {
            kind,
            start: start_virtual,
            shutdown: shutdown_virtual,
            reload_firewall: true,
        },
        ModeKind::Bridge => ModeOps {
            kind,
            start: start_bridge,
            shutdown: shutdown_bridge,
            reload_firewall: false,
        },
        ModeKind::Private | ModeKind::Vepa | ModeKind::Passthrough | ModeKind::Hostdev => ModeOps {
            kind,
            start: start_external,
            shutdown: shutdown_nothing,
            reload_firewall: false,
        },
    }
}

fn argv(parts: &[&str]) -> Cmd {
    Cmd::new(parts.iter().copied())
}

/// Runs a command whose failure is ignored; only a crash is returned.
pub(crate) fn run_ignore(runner: &dyn Runner, cmd: Cmd) -> Result<(), DriverError> {
    match runner.run(&cmd) {
        Err(e @ RunError::Crashed { .. }) => Err(DriverError::from_run(e)),
        _ => Ok(()),
    }
}

fn bridge_name(def: &NetworkDef) -> Result<String, DriverError> {
    def.bridge_name()
        .filter(|b| !b.is_empty() && !b.contains("%d"))
        .map(str::to_string)
        .ok_or_else(|| {
            DriverError::Invalid(format!("network '{}' has no bridge name defined", def.name))
        })
}

/// `net/ipv6/conf/BR/LEAF=VALUE`, the argument of a per-bridge IPv6 sysctl.
fn bridge_sysctl(br: &str, leaf: &str, value: &str) -> String {
    const PREFIX: &str = "net/ipv6/conf/";
    let mut s = String::with_capacity(PREFIX.len() + br.len() + leaf.len() + value.len() + 2);
    s.push_str(PREFIX);
    s.push_str(br);
    s.push('/');
    s.push_str(leaf);
    s.push('=');
    s.push_str(value);
    s
}

/// A MAC address as its `Display` writes it (`aa:bb:cc:dd:ee:ff`, lower
/// case), without the formatting machinery.
fn mac_string(mac: &crate::netxml::MacAddr) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(17);
    for (i, b) in mac.0.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// `ADDR/PREFIX` as the `ip` commands take it.
fn addr_prefix(addr: &IpAddr, prefix: u32) -> String {
    let mut s = String::with_capacity(48);
    rules::push_addr(&mut s, addr);
    s.push('/');
    rules::push_num(&mut s, prefix);
    s
}

/// `sysctl -w KEY=VALUE`, remembering the old value first so a failed start
/// can restore it (global keys only; per-bridge keys vanish with the bridge).
fn sysctl_set_global(ctx: &StartCtx<'_>, key: &str, value: &str) -> Result<(), DriverError> {
    let old = ctx
        .runner
        .run_direct_checked(&argv(&["sysctl", "-n", key]))?;
    let old = old.stdout.trim().to_string();
    if old == value {
        return Ok(());
    }
    (ctx.note)("sysctl-prev", key, &old)?;
    ctx.runner
        .run_direct_checked(&argv(&["sysctl", "-q", "-w", &format!("{key}={value}")]))?;
    Ok(())
}

/// libvirt networkStartNetworkVirtual, step by step.
fn start_virtual(
    ctx: &StartCtx<'_>,
    def: &mut NetworkDef,
) -> Result<Option<Firewall>, DriverError> {
    let r = ctx.runner;
    check_route_collision(r, def)?;
    let br = bridge_name(def)?;
    // Create the bridge with its MAC, MTU, STP delay and STP.
    let mac = def.mac.as_ref().map(mac_string);
    let mut mtu = itoa::Buffer::new();
    let mut delay = itoa::Buffer::new();
    // `ip` takes the forward delay in hundredths of a second; a delay from
    // the XML too large for that is refused here rather than wrapped.
    let delay_cs = def.bridge.delay.checked_mul(100).ok_or_else(|| {
        DriverError::Invalid(format!(
            "bridge forward delay of {} seconds in network '{}' is out of range",
            def.bridge.delay, def.name
        ))
    })?;
    let mut add: Args<'_> = Args::new();
    add.extend_from_slice(&["ip", "link", "add", "name", &br]);
    if let Some(mac) = mac.as_deref() {
        add.extend_from_slice(&["address", mac]);
    }
    if def.mtu > 0 {
        add.extend_from_slice(&["mtu", mtu.format(def.mtu)]);
    }
    add.extend_from_slice(&[
        "type",
        "bridge",
        "forward_delay",
        delay.format(delay_cs),
        "stp_state",
        if def.bridge.stp { "1" } else { "0" },
    ]);
    r.run_checked(&Cmd::new(add.iter().copied()))?;
    // IPv6 sysctls on the bridge.
    let v6 = def.ipv6_ips().next().is_some();
    let disable = bridge_sysctl(&br, "disable_ipv6", if v6 { "0" } else { "1" });
    r.run_direct_checked(&argv(&["sysctl", "-q", "-w", &disable]))?;
    for leaf in ["accept_ra", "autoconf"] {
        let key = bridge_sysctl(&br, leaf, "0");
        r.run_direct_checked(&argv(&["sysctl", "-q", "-w", &key]))?;
    }
    // Firewall rules (private chains once per driver, then this network's),
    // on the bridge this start has just created.
    let fw = ctx.driver.add_firewall(def, r, BridgeState::Fresh)?;
    // Addresses.
    for ip in &def.ips {
        let prefix = ip.prefix().ok_or_else(|| {
            DriverError::Invalid(format!(
                "bridge '{br}' has an invalid netmask or IP address"
            ))
        })?;
        let local = addr_prefix(&ip.address, prefix);
        let mut brd = String::new();
        let mut cmd: Args<'_> = Args::new();
        cmd.extend_from_slice(&["ip", "addr", "add", &local]);
        if let IpAddr::V4(a) = ip.address {
            let host_bits = 32 - prefix.min(32);
            let mask: u32 = if host_bits == 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            rules::push_ipv4(&mut brd, &std::net::Ipv4Addr::from(u32::from(a) | mask));
            cmd.extend_from_slice(&["brd", &brd]);
        }
        cmd.extend_from_slice(&["dev", &br]);
        r.run_checked(&Cmd::new(cmd.iter().copied()))?;
    }
    // Bring the bridge up.
    r.run_checked(&argv(&["ip", "link", "set", "dev", &br, "up"]))?;
    // Static routes (errors ignored, as libvirt does).
    for route in &def.routes {
        let Some(prefix) = route.effective_prefix() else {
            continue;
        };
        let dest = addr_prefix(&route.address, prefix);
        let via = rules::format_addr(&route.gateway);
        let mut metric = itoa::Buffer::new();
        let mut cmd: Args<'_> = Args::new();
        cmd.extend_from_slice(&["ip", "route", "add", &dest, "via", &via, "dev", &br]);
        if let Some(m) = route.metric.filter(|m| *m > 0) {
            cmd.extend_from_slice(&["metric", metric.format(m)]);
        }
        run_ignore(r, Cmd::new(cmd.iter().copied()))?;
    }
    // Global forwarding for forwarding modes.
    if def.forward.is_some() {
        if def.ipv4_ips().next().is_some() {
            sysctl_set_global(ctx, "net/ipv4/ip_forward", "1")?;
        }
        if v6 {
            sysctl_set_global(ctx, "net/ipv6/conf/all/forwarding", "1")?;
        }
    }
    // dnsmasq.
    if crate::dnsmasq::needs_dnsmasq(def) {
        ctx.driver.start_dnsmasq(def, r, ctx.note)?;
    }
    // QoS, last (libvirt: virNetDevBandwidthSet after dnsmasq; a failure
    // clears the qdiscs, then the rest of the start is undone).
    super::bandwidth::start(r, &br, def.bandwidth.as_ref())?;
    Ok(fw)
}

/// One IPv4 route of the main table: (destination network, prefix, device).
fn parse_route_line(line: &str) -> Option<(std::net::Ipv4Addr, u32, String)> {
    let mut words = line.split_whitespace().peekable();
    let mut dev = "*".to_string();
    let first = *words.peek()?;
    if matches!(
        first,
        "unreachable" | "blackhole" | "prohibit" | "throw" | "unicast"
    ) {
        words.next();
    }
    let dest = words.next()?;
    let rest: Vec<&str> = words.collect();
    if let Some(i) = rest.iter().position(|w| *w == "dev") {
        dev = rest.get(i + 1)?.to_string();
    }
    let (addr, prefix) = if dest == "default" {
        (std::net::Ipv4Addr::UNSPECIFIED, 0)
    } else {
        match dest.split_once('/') {
            Some((a, p)) => (a.parse().ok()?, p.parse().ok().filter(|p| *p <= 32)?),
            None => (dest.parse().ok()?, 32),
        }
    };
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Some((
        std::net::Ipv4Addr::from(u32::from(addr) & mask),
        prefix,
        dev,
    ))
}

/// libvirt networkCheckRouteCollision: an IPv4 network (or IPv4 static
/// route) of the definition must not equal a route of the host's main table.
/// libvirt reads `/proc/net/route`; virtnet asks `ip -4 route show` through
/// the runner's [`Runner::run_direct`] (the real runner reads
/// `/proc/net/route` too, no process). A table that cannot be read is not
/// checked (as libvirt).
fn check_route_collision(r: &dyn Runner, def: &NetworkDef) -> Result<(), DriverError> {
    let out = match r.run_direct(&argv(&["ip", "-4", "route", "show"])) {
        Ok(o) if o.success() => o.stdout,
        Ok(_) | Err(RunError::Spawn { .. }) | Err(RunError::Empty) => return Ok(()),
        Err(e) => return Err(DriverError::from_run(e)),
    };
    let mask_of = |p: u32| {
        if p == 0 {
            0
        } else {
            u32::MAX << (32 - p.min(32))
        }
    };
    for line in out.lines() {
        let Some((net, prefix, dev)) = parse_route_line(line) else {
            continue;
        };
        for ip in def.ipv4_ips() {
            let (IpAddr::V4(a), Some(p)) = (ip.address, ip.prefix()) else {
                continue;
            };
            if p == prefix && u32::from(a) & mask_of(p) == u32::from(net) {
                return Err(DriverError::Invalid(format!(
                    "Network is already in use by interface {dev}"
                )));
            }
        }
        for route in def.routes.iter() {
            let (IpAddr::V4(a), Some(p)) = (route.address, route.effective_prefix()) else {
                continue;
            };
            let r_net = std::net::Ipv4Addr::from(u32::from(a) & mask_of(p));
            if p == prefix && r_net == net {
                return Err(DriverError::Invalid(format!(
                    "Route address '{r_net}' conflicts with IP address for '{dev}'"
                )));
            }
        }
    }
    Ok(())
}

/// libvirt networkShutdownNetworkVirtual.
fn shutdown_virtual(d: &Driver, r: &dyn Runner, st: &NetworkStatus) -> Result<(), DriverError> {
    let def = &st.def;
    let br = def.bridge_name().unwrap_or("").to_string();
    if def.bandwidth.is_some() && !br.is_empty() {
        super::bandwidth::clear(r, &br)?;
    }
    d.stop_dnsmasq(def, r)?;
    if !br.is_empty() {
        run_ignore(r, argv(&["ip", "link", "set", "dev", &br, "down"]))?;
    }
    rules::remove_network_firewall(def, st.fw_removal.as_ref(), r)
        .map_err(DriverError::from_rules)?;
    if !br.is_empty() {
        run_ignore(r, argv(&["ip", "link", "del", &br]))?;
    }
    d.end_dnsmasq_stop(def);
    Ok(())
}

/// Bridge mode: an existing host bridge (`<bridge name>`) or macvtap
/// devices. With a bridge name libvirt applies the network's bandwidth to
/// that bridge (networkStartNetworkBridge; a failure clears it) and
/// otherwise only marks the network active; without a bridge name it is
/// an "external" mode.
fn start_bridge(ctx: &StartCtx<'_>, def: &mut NetworkDef) -> Result<Option<Firewall>, DriverError> {
    if let Some(br) = def.bridge_name() {
        super::bandwidth::start(ctx.runner, br, def.bandwidth.as_ref())?;
        return Ok(None);
    }
    start_external(ctx, def)
}

/// networkShutdownNetworkBridge: the bandwidth cleared from the host's
/// bridge (the bridge itself stays).
fn shutdown_bridge(_d: &Driver, r: &dyn Runner, st: &NetworkStatus) -> Result<(), DriverError> {
    match st.def.bridge_name() {
        Some(br) if st.def.bandwidth.is_some() => super::bandwidth::clear(r, br),
        _ => Ok(()),
    }
}

/// private, vepa, passthrough, hostdev (and bridge without a bridge name):
/// if a `<pf>` is given and the pool is empty, fill the pool from its
/// virtual functions; otherwise nothing.
fn start_external(
    ctx: &StartCtx<'_>,
    def: &mut NetworkDef,
) -> Result<Option<Firewall>, DriverError> {
    let Some(fwd) = def.forward.as_mut() else {
        return Ok(None);
    };
    let Some(pf) = fwd.pfs.first().map(|p| p.dev.clone()) else {
        return Ok(None);
    };
    if !fwd.ifs.is_empty() {
        return Ok(None);
    }
    let hostdev = fwd.mode == ForwardMode::Hostdev;
    let vfs = list_virtual_functions(&ctx.driver.config().sysfs_root, &pf, hostdev);
    if vfs.is_empty() {
        return Err(DriverError::Invalid(format!(
            "No usable Vf's present on SRIOV PF {pf}"
        )));
    }
    fwd.ifs = vfs;
    Ok(None)
}

/// Virtual functions of a PF from sysfs (`/sys/class/net/PF/device/virtfnN`):
/// their netdev names (macvtap modes) or PCI addresses (hostdev).
fn list_virtual_functions(sysfs: &std::path::Path, pf: &str, hostdev: bool) -> Vec<ForwardIf> {
    let dir = sysfs.join("class/net").join(pf).join("device");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut vfs: Vec<(u32, std::path::PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_prefix("virtfn")
                .and_then(|k| k.parse().ok())
                .map(|k| (k, e.path()))
        })
        .collect();
    vfs.sort();
    let mut out = Vec::new();
    for (_, p) in vfs {
        if hostdev {
            let Ok(target) = std::fs::read_link(&p) else {
                continue;
            };
            let Some(addr) = target.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(pci) = parse_pci(addr) {
                out.push(ForwardIf {
                    device: ForwardDevice::Pci(pci),
                    connections: 0,
                });
            }
        } else {
            let Ok(mut nets) = std::fs::read_dir(p.join("net")) else {
                continue;
            };
            if let Some(Ok(n)) = nets.next() {
                out.push(ForwardIf {
                    device: ForwardDevice::Netdev(n.file_name().to_string_lossy().to_string()),
                    connections: 0,
                });
            }
        }
    }
    out
}

fn parse_pci(s: &str) -> Option<crate::netxml::PciAddress> {
    // DDDD:BB:SS.F
    let (dom, rest) = s.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, func) = rest.split_once('.')?;
    Some(crate::netxml::PciAddress {
        domain: u32::from_str_radix(dom, 16).ok()?,
        bus: u32::from_str_radix(bus, 16).ok()?,
        slot: u32::from_str_radix(slot, 16).ok()?,
        function: u32::from_str_radix(func, 16).ok()?,
    })
}

fn shutdown_nothing(_d: &Driver, _r: &dyn Runner, _st: &NetworkStatus) -> Result<(), DriverError> {
    Ok(())
}
