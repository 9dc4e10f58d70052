//! Real packets next to the tracer (issue 16 items 3 and 5): one golden
//! case × backend started by the driver on a fresh simulated host *and* in
//! a fresh network namespace (the same foreign rules, the same uplink),
//! then every flow traced by the simulator's tracer
//! (`virtnet_fake::trace`) and sent for real through the lab
//! (`virtnet_testkit::lab`), and the two outcomes compared.
//!
//! The surroundings are fixed (documentation addresses only): the uplink
//! is the network's forward device or `vnup0`, the host has
//! 198.51.100.254/24 and 2001:db8:ffff::fe/64 on it, the outside host
//! 198.51.100.7 and 2001:db8:ffff::7 with its default routes via the host. A guest per `<ip>` of a network with a bridge gets the
//! static address subnet + 100 (IPv4) or subnet::100 (IPv6) and the
//! network's address as its default gateway. Static rather than DHCP here:
//! the DHCP exchange itself is a flow (udp 67, a DHCPINFORM answered by the
//! network's dnsmasq), and the lab's own test gets a real lease.
//!
//! [`agree`] is the correspondence of outcomes:
//!
//! | tracer | kernel |
//! |---|---|
//! | delivered (src, sport) | arrived at the outside or a guest from the same source; a port or address a NAT rule of the path picks from a range (`to A-B`, `to :P-Q`) only within it |
//! | local | arrived at the host, or the host's service (dnsmasq) answered |
//! | rejected | refused (ICMP error or TCP reset) |
//! | dropped | nothing within the timeout |
//! | unreachable | refused or nothing (the kernel answers a packet it cannot route with an ICMP error, rate-limited) |
//!
//! Not compared: traffic switched by the bridge between two guests of one
//! subnet (the tracer does not model bridging), the output hook.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::NetworkDef;
use virtnet_fake::trace::{self, Conntrack, Flow, Outcome, Proto, Step, Trace};
use virtnet_fake::FakeHost;
use virtnet_runner::Runner;
use virtnet_testkit::lab::{Arrival, GuestSpec, Lab, Probe, L4};

use crate::cases::{self, Case};
use crate::host::{HostFactory, TestHost};

pub const UPLINK_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
pub const OUTSIDE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const UPLINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0xfe);
pub const OUTSIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7);
/// The uplink of a network without a forward device.
pub const DEFAULT_UPLINK: &str = "vnup0";

/// One flow: sent from lab endpoint `from` (`guestN`, `outside`), traced
/// as `flow`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffFlow {
    pub from: String,
    pub flow: Flow,
}

/// One flow's two outcomes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiffResult {
    pub flow: DiffFlow,
    pub trace: Trace,
    pub real: Arrival,
    /// `Err(why)` when the outcomes differ.
    pub agree: Result<(), String>,
}

impl std::fmt::Display for DiffResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match &self.agree {
            Ok(()) => "agree".to_string(),
            Err(w) => format!("DIFFER: {w}"),
        };
        writeln!(
            f,
            "{} (from {}): {verdict}\n  kernel: {:?}",
            self.flow.flow, self.flow.from, self.real
        )?;
        if self.agree.is_err() {
            for l in self.trace.to_string().lines() {
                writeln!(f, "    {l}")?;
            }
        }
        Ok(())
    }
}

/// A guest of the network: (bridge, address, prefix, gateway).
pub type GuestAddr = (String, IpAddr, u8, IpAddr);

/// The guests of `def`: one per `<ip>` with a prefix, on its bridge.
pub fn guests_of(def: &NetworkDef) -> Vec<GuestAddr> {
    let Some(br) = def.bridge_name() else {
        return Vec::new();
    };
    if def
        .forward
        .as_ref()
        .is_some_and(|f| f.mode == virtnet_core::netxml::ForwardMode::Bridge)
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    for ip in &def.ips {
        let Some(prefix) = ip.prefix() else { continue };
        let addr = match subnet(ip.address, prefix) {
            IpAddr::V4(n) if prefix <= 24 => IpAddr::V4(Ipv4Addr::from(u32::from(n) + 100)),
            IpAddr::V6(n) if prefix <= 112 => IpAddr::V6(Ipv6Addr::from(u128::from(n) + 0x100)),
            _ => continue,
        };
        if addr == ip.address {
            continue;
        }
        out.push((br.to_string(), addr, prefix as u8, ip.address));
    }
    out
}

/// The first address of `a`'s subnet of `prefix` bits.
pub fn subnet(a: IpAddr, prefix: u32) -> IpAddr {
    match a {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - prefix.min(32)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - prefix.min(128)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// The uplink of `def`.
pub fn uplink_of(def: &NetworkDef) -> String {
    def.forward_dev().unwrap_or(DEFAULT_UPLINK).to_string()
}

/// The flows compared for `def`: from each guest to the outside (icmp, udp,
/// tcp) and to its gateway (DNS udp/tcp 53, DHCP udp 67, ssh tcp 22), and
/// from the outside to each guest (a new udp and tcp connection).
pub fn default_flows(def: &NetworkDef) -> Vec<DiffFlow> {
    let uplink = uplink_of(def);
    let mut out = Vec::new();
    let mut port = 40000u16;
    let mut next = || {
        port += 1;
        Some(port)
    };
    for (i, (br, addr, _, gw)) in guests_of(def).into_iter().enumerate() {
        let from = format!("guest{i}");
        let v4 = addr.is_ipv4();
        let outside = if v4 {
            IpAddr::V4(OUTSIDE_V4)
        } else {
            IpAddr::V6(OUTSIDE_V6)
        };
        let icmp = if v4 { Proto::Icmp } else { Proto::Icmpv6 };
        let f = |from: &str, iif: &str, src, dst, proto, sport, dport| DiffFlow {
            from: from.to_string(),
            flow: Flow {
                iif: String::from(iif),
                src,
                dst,
                proto,
                sport,
                dport,
                reply: false,
            },
        };
        out.push(f(&from, &br, addr, outside, icmp, None, None));
        out.push(f(&from, &br, addr, outside, Proto::Udp, next(), Some(5000)));
        out.push(f(&from, &br, addr, outside, Proto::Tcp, next(), Some(8080)));
        out.push(f(&from, &br, addr, gw, Proto::Udp, next(), Some(53)));
        out.push(f(&from, &br, addr, gw, Proto::Tcp, next(), Some(53)));
        out.push(f(&from, &br, addr, gw, Proto::Tcp, next(), Some(22)));
        if v4 {
            out.push(f(&from, &br, addr, gw, Proto::Udp, Some(68), Some(67)));
        }
        out.push(f(
            "outside",
            &uplink,
            outside,
            addr,
            Proto::Udp,
            next(),
            Some(8081),
        ));
        out.push(f(
            "outside",
            &uplink,
            outside,
            addr,
            Proto::Tcp,
            next(),
            Some(8081),
        ));
    }
    out
}

/// The probe that sends `f` for real.
pub fn probe_of(f: &Flow) -> Probe {
    Probe {
        dst: f.dst,
        proto: match f.proto {
            Proto::Icmp | Proto::Icmpv6 => L4::Icmp,
            Proto::Udp => L4::Udp,
            Proto::Tcp => L4::Tcp,
        },
        sport: f.sport,
        dport: f.dport,
        reply: false,
    }
}

/// The foreign rules and uplinks of the matrix baseline (as
/// `scenario::Ctx::stage`), the uplink addressed (on the fake also made
/// when missing: on the kernel the lab makes it, a veth to the outside).
fn stage(r: &dyn Runner, def: &NetworkDef, fake: bool) -> Result<(), String> {
    let e = |e: virtnet_fake::seed::SeedError| e.to_string();
    virtnet_fake::seed::seed_docker_iptables(r).map_err(e)?;
    virtnet_fake::seed::seed_docker_nft(r).map_err(e)?;
    virtnet_fake::seed::seed_firewalld_nft(r).map_err(e)?;
    let c = |argv: &[&str]| {
        r.run_argv_checked(argv)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let ups = cases::uplinks(def);
    for (i, dev) in ups.iter().enumerate() {
        c(&["ip", "link", "add", dev, "type", "bridge"])?;
        let mac = format!("02:00:00:00:00:{:02x}", i + 1);
        c(&["ip", "link", "set", "dev", dev, "address", &mac])?;
    }
    let up = uplink_of(def);
    if fake {
        if !ups.contains(&up) {
            c(&["ip", "link", "add", &up, "type", "bridge"])?;
        }
        c(&["ip", "link", "set", &up, "up"])?;
        c(&["ip", "addr", "add", &format!("{UPLINK_V4}/24"), "dev", &up])?;
        c(&["ip", "addr", "add", &format!("{UPLINK_V6}/64"), "dev", &up])?;
    }
    Ok(())
}

fn driver(
    factory: &dyn HostFactory,
    dir: &Path,
    runner: Arc<dyn Runner>,
    backend: Backend,
) -> Result<Driver, String> {
    let tools = factory.driver_tools();
    let mut cfg =
        DriverConfig::new(dir.join("config"), dir.join("state"), runner).with_backend(backend);
    cfg.dnsmasq_binary = Some(tools.dnsmasq_binary);
    cfg.leases_helper = tools.leases_helper;
    Driver::open(cfg).map_err(|e| format!("driver open: {e}"))
}

/// A driver with `backend` on `runner` (config and state under `dir`)
/// that defined and started `case` (its TFTP root made under `dir`).
pub fn start_driver(
    factory: &dyn HostFactory,
    dir: &Path,
    runner: Arc<dyn Runner>,
    backend: Backend,
    case: &Case,
) -> Result<Driver, String> {
    start(factory, dir, runner, backend, case)
}

fn start(
    factory: &dyn HostFactory,
    dir: &Path,
    runner: Arc<dyn Runner>,
    backend: Backend,
    case: &Case,
) -> Result<Driver, String> {
    let tftp = dir.join("tftproot");
    std::fs::create_dir_all(&tftp).map_err(|e| e.to_string())?;
    let xml = cases::localise_xml(&case.xml, &tftp);
    let d = driver(factory, dir, runner, backend)?;
    let name = d.define(&xml).map_err(|e| format!("define: {e}"))?.name;
    d.start(&name).map_err(|e| format!("start: {e}"))?;
    Ok(d)
}

fn tempdir() -> Result<tempfile::TempDir, String> {
    let mut b = tempfile::Builder::new();
    b.prefix("virtnet-realtraffic-");
    let shm = Path::new("/dev/shm");
    let d = if shm.is_dir() {
        b.tempdir_in(shm).or_else(|_| b.tempdir())
    } else {
        b.tempdir()
    }
    .map_err(|e| format!("temporary directory: {e}"))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755));
    Ok(d)
}

/// Case × backend on both hosts, every flow of `flows` (default:
/// [`default_flows`]) traced and sent. `extra`: commands run on both hosts
/// after the stage and before the start (e.g. removing a foreign table).
/// Must run on a thread of its own: `real` moves it into a fresh namespace.
pub fn differential(
    real: &dyn HostFactory,
    case: &Case,
    backend: Backend,
    extra: &[Vec<&str>],
    flows: Option<Vec<DiffFlow>>,
) -> Result<Vec<DiffResult>, String> {
    let def = &case.def;
    let flows = flows.unwrap_or_else(|| default_flows(def));
    // The simulated host.
    let fake_dir = tempdir()?;
    let fake = Arc::new(FakeHost::new());
    stage(&*fake, def, true)?;
    for argv in extra {
        fake.run_argv_checked(argv).map_err(|e| e.to_string())?;
    }
    let fake_factory = crate::host::FakeFactory::default();
    let _fd = start(&fake_factory, fake_dir.path(), fake.clone(), backend, case)
        .map_err(|e| format!("fake: {e}"))?;
    let state = fake.state();
    // The kernel.
    let real_dir = tempdir()?;
    let host: Box<dyn TestHost> = real.fresh().map_err(|e| e.to_string())?;
    let r = host.runner();
    stage(&*r, def, false)?;
    for argv in extra {
        r.run_argv_checked(argv).map_err(|e| e.to_string())?;
    }
    let d = start(real, real_dir.path(), r.clone(), backend, case)
        .map_err(|e| format!("kernel: {e}"))?;
    let mut lab = Lab::new()?;
    lab.unlimit_icmp()?;
    lab.no_bridge_netfilter()?;
    let guests = guests_of(def);
    // Everything goes back through the host: routed subnets and the
    // addresses of `<nat><address>` ranges alike (those in the uplink's
    // own subnet by a route each, see `Topology::snat_onlink_v4`).
    let topo = crate::traffic::Topology::for_def(def);
    debug_assert_eq!((topo.uplink_v4, topo.uplink_v6), (UPLINK_V4, UPLINK_V6));
    let routes = topo.outside_routes();
    lab.add_outside(
        &uplink_of(def),
        &[(IpAddr::V4(UPLINK_V4), 24), (IpAddr::V6(UPLINK_V6), 64)],
        &[(IpAddr::V4(OUTSIDE_V4), 24), (IpAddr::V6(OUTSIDE_V6), 64)],
        &routes,
    )?;
    let specs: Vec<GuestSpec> = guests
        .iter()
        .map(|(br, addr, prefix, gw)| GuestSpec {
            bridge: br.clone(),
            dhcp_prefix: None,
            statics: vec![(*addr, *prefix)],
            gateways: vec![*gw],
            mac: None,
        })
        .collect();
    lab.add_guests(&specs)?;
    lab.wait_addresses()?;
    let mut ct = Conntrack::default();
    let mut out = Vec::new();
    for f in flows {
        let t =
            trace::trace(&state, &mut ct, &f.flow).map_err(|e| format!("trace {}: {e}", f.flow))?;
        let a = lab.send(&f.from, &probe_of(&f.flow))?;
        let agree = agree(&f.flow, &t, &a);
        out.push(DiffResult {
            flow: f,
            trace: t,
            real: a,
            agree,
        });
    }
    drop(lab);
    for n in d.list() {
        let _ = d.destroy(&n.name);
    }
    drop(host);
    Ok(out)
}

/// Address and port ranges a NAT rule of the path translates to
/// (`to A-B`, `to :P-Q`, `to A:P-Q`).
/// An address range and a port range, each when a NAT rule gives one.
type NatRanges = (Option<(IpAddr, IpAddr)>, Option<(u16, u16)>);

fn nat_ranges(t: &Trace) -> NatRanges {
    let mut addrs = None;
    let mut ports = None;
    for s in &t.steps {
        let Step::Rule { rule, .. } = s else { continue };
        if !(rule.contains("masquerade") || rule.contains("snat")) {
            continue;
        }
        let Some(i) = rule.find(" to ") else { continue };
        let spec = rule[i + 4..].split_whitespace().next().unwrap_or("");
        // `A-B`, `A-B:P-Q`, `:P-Q`, `A:P-Q` (IPv4), `[A]-[B]:P-Q` (IPv6).
        let (a, p) = match spec.rfind(':') {
            Some(k) if !spec.contains('[') && spec.matches(':').count() == 1 => {
                (&spec[..k], Some(&spec[k + 1..]))
            }
            Some(k) if spec.contains("]:") => (&spec[..k], Some(&spec[k + 1..])),
            _ => (spec, None),
        };
        let a = a.replace(['[', ']'], "");
        if let Some((x, y)) = a.split_once('-') {
            if let (Ok(x), Ok(y)) = (x.parse(), y.parse()) {
                addrs = Some((x, y));
            }
        }
        if let Some(p) = p {
            let (x, y) = p.split_once('-').unwrap_or((p, p));
            if let (Ok(x), Ok(y)) = (x.parse(), y.parse()) {
                ports = Some((x, y));
            }
        }
    }
    (addrs, ports)
}

fn in_range(a: IpAddr, (x, y): (IpAddr, IpAddr)) -> bool {
    match (a, x, y) {
        (IpAddr::V4(a), IpAddr::V4(x), IpAddr::V4(y)) => x <= a && a <= y,
        (IpAddr::V6(a), IpAddr::V6(x), IpAddr::V6(y)) => x <= a && a <= y,
        _ => false,
    }
}

/// Do the tracer's and the kernel's outcomes of `f` correspond (the table
/// of the module doc)?
pub fn agree(f: &Flow, t: &Trace, a: &Arrival) -> Result<(), String> {
    let differ = || {
        Err(format!(
            "tracer: {}; kernel: {a:?}",
            outcome_text(&t.outcome)
        ))
    };
    match (&t.outcome, a) {
        (
            Outcome::Delivered { src, sport, .. },
            Arrival::Delivered {
                at,
                src: rsrc,
                sport: rport,
                ..
            },
        ) if at != "host" => {
            let (addrs, ports) = nat_ranges(t);
            let src_ok =
                src == rsrc || addrs.is_some_and(|r| in_range(*src, r) && in_range(*rsrc, r));
            let port_ok = !f.proto.has_ports()
                || sport == rport
                || ports.is_some_and(|(x, y)| {
                    [sport, rport]
                        .iter()
                        .all(|p| p.is_some_and(|p| x <= p && p <= y))
                });
            if src_ok && port_ok {
                Ok(())
            } else {
                Err(format!(
                    "both delivered, tracer from {src}{}, kernel from {rsrc}{} (NAT ranges: {addrs:?} {ports:?})",
                    sport.map(|p| format!(":{p}")).unwrap_or_default(),
                    rport.map(|p| format!(":{p}")).unwrap_or_default(),
                ))
            }
        }
        (Outcome::Local { .. }, Arrival::Delivered { at, .. }) if at == "host" => Ok(()),
        (Outcome::Local { .. }, Arrival::Answered { .. }) => Ok(()),
        (Outcome::Rejected { .. }, Arrival::Refused { .. }) => Ok(()),
        (Outcome::Dropped { .. }, Arrival::Timeout) => Ok(()),
        (Outcome::Unreachable { .. }, Arrival::Refused { .. } | Arrival::Timeout) => Ok(()),
        _ => differ(),
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Delivered {
            oif, src, sport, ..
        } => format!(
            "delivered via {oif} from {src}{}",
            sport.map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Outcome::Local { .. } => "local (input accepted)".into(),
        Outcome::Dropped {
            hook, table, chain, ..
        } => format!("dropped in {hook} {table} {chain}"),
        Outcome::Rejected {
            table, chain, with, ..
        } => {
            format!("rejected in {table} {chain} ({with})")
        }
        Outcome::Unreachable { reason } => format!("unreachable ({reason})"),
    }
}
