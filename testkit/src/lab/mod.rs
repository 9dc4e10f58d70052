//! The real-packet lab: guests and an "outside" around a virtual network
//! that a driver started in the calling thread's network namespace, and
//! real packets between them (issue 16 item 3).
//!
//! * The **host** is the namespace of the thread that makes the [`Lab`]
//!   (the conformance worker's fresh namespace, where the driver put the
//!   bridge, the firewall and dnsmasq).
//! * A **guest** ([`Lab::add_guest`]) is a namespace of its own with a veth
//!   `eth0` whose host end (`vnlgN`) is a port of the network's bridge, as
//!   libvirt plugs a guest's `vnetN`. With DHCP it gets its address from
//!   the network's own dnsmasq through busybox's `udhcpc`, a real DHCP
//!   client (a Debian package, `udhcpc`; chosen over a hand-written client
//!   because the point is a real client against the real server, and over
//!   `dhclient` because it is small, has a run-once mode, `-q -n`, and
//!   copes with the partial checksums of packets that crossed a veth). It
//!   runs with `-s /bin/true`, so it configures nothing itself: the lab
//!   reads the lease it printed and sets the address and default route.
//! * The **outside** ([`Lab::add_outside`]) is a namespace behind the
//!   uplink: when the uplink device exists and is a bridge (the
//!   conformance baseline makes uplinks bridges), a veth `vnloN` is made a
//!   port of it; when it does not exist, the uplink itself becomes the
//!   host end of the veth to the outside.
//! * [`Lab::send`] sends one [`Probe`] from an endpoint to the endpoint
//!   owning the destination address (a guest, the outside, else the host)
//!   and reports the [`Arrival`] — see [`probe`].
//!
//! Only addresses inside these namespaces are used. A bridge port with STP
//! on forwards only after the listening and learning delays (~4 s):
//! [`Lab::add_guest`] waits until the port is forwarding (bounded).
//! Everything is undone when the lab is dropped: the veths' host ends are
//! deleted, the namespaces (and with them the guest ends) go with their
//! handles, and `udhcpc` never outlives its call (run once, killed at its
//! time limit).

pub mod ns;
pub mod probe;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

pub use ns::NsHandle;
pub use probe::{Arrival, Probe, L4};

/// Tools the lab runs.
pub const LAB_TOOLS: &[&str] = &["ip", "udhcpc", "true", "sysctl"];

/// How a guest gets its addresses.
#[derive(Debug, Clone, Default)]
pub struct GuestSpec {
    /// The bridge to plug into.
    pub bridge: String,
    /// DHCPv4 from the network's dnsmasq; the prefix length of the subnet
    /// (the lease printed by udhcpc does not carry it).
    pub dhcp_prefix: Option<u8>,
    /// Static addresses with their prefix lengths.
    pub statics: Vec<(IpAddr, u8)>,
    /// Default gateways (one per family at most).
    pub gateways: Vec<IpAddr>,
    /// The guest's MAC address; `None`: the lab's own, `52:54:00:76:6e:NN`
    /// (NN = the guest's index + 1).
    pub mac: Option<String>,
}

/// A DHCP lease a guest got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub server: Ipv4Addr,
}

/// A guest namespace.
#[derive(Debug)]
pub struct Guest {
    pub ns: NsHandle,
    /// The veth's end in the host namespace (a bridge port).
    pub host_end: String,
    pub addrs: Vec<IpAddr>,
    pub lease: Option<Lease>,
}

/// The namespace behind the uplink.
#[derive(Debug)]
pub struct Outside {
    pub ns: NsHandle,
    pub host_end: String,
    /// Was `host_end` made by the lab (then it is deleted with it)?
    made: bool,
    pub addrs: Vec<IpAddr>,
}

/// Guests and an outside around the networks of the calling thread's
/// namespace.
#[derive(Debug)]
pub struct Lab {
    pub host: NsHandle,
    pub guests: Vec<Guest>,
    pub outside: Option<Outside>,
    /// Time limit of one probe's waits.
    pub timeout: Duration,
}

/// How long a new bridge port may take to forward (STP: 2 × forward delay,
/// the kernel's minimum being 2 s each).
const PORT_WAIT: Duration = Duration::from_secs(12);

impl Lab {
    /// A lab around the calling thread's namespace.
    pub fn new() -> Result<Lab, String> {
        Ok(Lab {
            host: NsHandle::current("host")?,
            guests: Vec::new(),
            outside: None,
            // connect() reports an ICMP error answering its SYN only after
            // ~1 s (measured with bash's /dev/tcp too): 2 s leaves room.
            timeout: Duration::from_millis(2000),
        })
    }

    /// A new guest plugged into `spec.bridge`, addressed; its index.
    pub fn add_guest(&mut self, spec: &GuestSpec) -> Result<usize, String> {
        Ok(self.add_guests(std::slice::from_ref(spec))?[0])
    }

    /// New guests: all plugged first, then one wait for their bridge
    /// ports to forward, then DHCP and routes; their indexes.
    pub fn add_guests(&mut self, specs: &[GuestSpec]) -> Result<Vec<usize>, String> {
        let mut idx = Vec::new();
        for s in specs {
            idx.push(self.plug(s)?);
        }
        for &i in &idx {
            self.wait_forwarding(&self.guests[i].host_end)?;
        }
        for (s, &i) in specs.iter().zip(&idx) {
            self.configure(i, s)?;
        }
        Ok(idx)
    }

    /// A guest namespace with its veth on the bridge and its static
    /// addresses.
    fn plug(&mut self, spec: &GuestSpec) -> Result<usize, String> {
        let i = self.guests.len();
        let name = format!("guest{i}");
        let ns = NsHandle::new_empty(&name)?;
        let host_end = format!("vnlg{i}");
        let mac = spec
            .mac
            .clone()
            .unwrap_or_else(|| format!("52:54:00:76:6e:{:02x}", i + 1));
        self.host.cmd(&[
            "ip",
            "link",
            "add",
            &host_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns.path(),
        ])?;
        // Pushed before the rest so a failure still deletes the veth (Drop).
        self.guests.push(Guest {
            ns,
            host_end: host_end.clone(),
            addrs: Vec::new(),
            lease: None,
        });
        let g = &mut self.guests[i];
        // Only the addresses given: no SLAAC address from the network's
        // router advertisements (it would become the source of IPv6 probes).
        for key in ["accept_ra=0", "autoconf=0"] {
            g.ns.cmd(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.eth0.{key}")])?;
        }
        g.ns.cmd(&["ip", "link", "set", "eth0", "address", &mac, "up"])?;
        self.host
            .cmd(&["ip", "link", "set", &host_end, "master", &spec.bridge, "up"])?;
        // A bridge the driver does not manage (mode='bridge': the admin's)
        // may be down; a port of a down bridge never forwards.
        self.host.cmd(&["ip", "link", "set", &spec.bridge, "up"])?;
        for (a, len) in &spec.statics {
            let cidr = format!("{a}/{len}");
            if a.is_ipv6() {
                g.ns.cmd(&["ip", "addr", "add", &cidr, "dev", "eth0", "nodad"])?;
            } else {
                g.ns.cmd(&["ip", "addr", "add", &cidr, "dev", "eth0"])?;
            }
            g.addrs.push(*a);
        }
        Ok(i)
    }

    /// DHCP (when asked for) and default routes of guest `i`.
    fn configure(&mut self, i: usize, spec: &GuestSpec) -> Result<(), String> {
        let g = &mut self.guests[i];
        if let Some(len) = spec.dhcp_prefix {
            let lease = dhcp(&g.ns)?;
            g.ns.cmd(&[
                "ip",
                "addr",
                "add",
                &format!("{}/{len}", lease.addr),
                "dev",
                "eth0",
            ])?;
            g.addrs.push(IpAddr::V4(lease.addr));
            g.lease = Some(lease);
        }
        for gw in &spec.gateways {
            let fam = if gw.is_ipv4() { "-4" } else { "-6" };
            g.ns.cmd(&["ip", fam, "route", "add", "default", "via", &gw.to_string()])?;
        }
        Ok(())
    }

    /// Waits until bridge port `port` forwards (STP), bounded.
    fn wait_forwarding(&self, port: &str) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let d = self.host.cmd(&["ip", "-d", "link", "show", "dev", port])?;
            if d.contains("state forwarding") {
                return Ok(());
            }
            if start.elapsed() > PORT_WAIT {
                return Err(format!(
                    "bridge port {port} not forwarding after {PORT_WAIT:?}: {d}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The outside namespace behind `uplink`, with `host_addrs` on the
    /// uplink, `outside_addrs` on its `eth0` and `routes` (destination,
    /// via) there (e.g. back to a routed network's subnet).
    pub fn add_outside(
        &mut self,
        uplink: &str,
        host_addrs: &[(IpAddr, u8)],
        outside_addrs: &[(IpAddr, u8)],
        routes: &[(String, IpAddr)],
    ) -> Result<(), String> {
        if self.outside.is_some() {
            return Err("the lab has an outside already".into());
        }
        let ns = NsHandle::new_empty("outside")?;
        let exists = self.host.output(
            &["ip", "-d", "link", "show", "dev", uplink],
            Duration::from_secs(5),
        )?;
        let is_bridge = exists.0 == 0 && exists.1.contains("\n    bridge ");
        if exists.0 == 0 && !is_bridge {
            return Err(format!(
                "uplink {uplink} exists and is not a bridge: the lab cannot put an outside behind it"
            ));
        }
        let host_end = if is_bridge { "vnlo0" } else { uplink };
        self.host.cmd(&[
            "ip",
            "link",
            "add",
            host_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns.path(),
        ])?;
        self.outside = Some(Outside {
            ns,
            host_end: host_end.to_string(),
            made: true,
            addrs: Vec::new(),
        });
        let o = self.outside.as_mut().expect("just set");
        if is_bridge {
            self.host
                .cmd(&["ip", "link", "set", host_end, "master", uplink, "up"])?;
        }
        self.host.cmd(&["ip", "link", "set", uplink, "up"])?;
        self.host.cmd(&["ip", "link", "set", host_end, "up"])?;
        o.ns.cmd(&["ip", "link", "set", "eth0", "up"])?;
        let add = |ns: &NsHandle, dev: &str, a: &IpAddr, len: &u8| -> Result<String, String> {
            let cidr = format!("{a}/{len}");
            if a.is_ipv6() {
                ns.cmd(&["ip", "addr", "add", &cidr, "dev", dev, "nodad"])
            } else {
                ns.cmd(&["ip", "addr", "add", &cidr, "dev", dev])
            }
        };
        for (a, len) in host_addrs {
            add(&self.host, uplink, a, len)?;
        }
        for (a, len) in outside_addrs {
            add(&o.ns, "eth0", a, len)?;
            o.addrs.push(*a);
        }
        for (dst, via) in routes {
            let fam = if via.is_ipv4() { "-4" } else { "-6" };
            o.ns.cmd(&["ip", fam, "route", "add", dst, "via", &via.to_string()])?;
        }
        Ok(())
    }

    /// Lifts the kernel's ICMP error rate limits in the host namespace
    /// (`net.ipv4.icmp_ratelimit`, `net.ipv6.icmp.ratelimit` = 0, per
    /// namespace): many probes refused in a row towards one guest would
    /// otherwise see their ICMP errors suppressed after a burst of ~6 and
    /// look dropped.
    pub fn unlimit_icmp(&self) -> Result<(), String> {
        self.host
            .cmd(&["sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0"])?;
        self.host
            .cmd(&["sysctl", "-q", "-w", "net.ipv6.icmp.ratelimit=0"])?;
        Ok(())
    }

    /// Turns off `br_netfilter` for the host namespace's bridges
    /// (`net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}` = 0,
    /// per namespace; nothing to do when the module is not loaded). Where
    /// it is loaded (Docker loads it) a new namespace starts with 1, so
    /// traffic between two ports of one bridge crosses the IP firewall's
    /// forward hook — not what libvirt's documented behaviour, and the
    /// flow tables, assume.
    pub fn no_bridge_netfilter(&self) -> Result<(), String> {
        let probe = self.host.output(
            &["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"],
            Duration::from_secs(5),
        )?;
        if probe.0 != 0 {
            return Ok(());
        }
        for fam in ["iptables", "ip6tables", "arptables"] {
            self.host.cmd(&[
                "sysctl",
                "-q",
                "-w",
                &format!("net.bridge.bridge-nf-call-{fam}=0"),
            ])?;
        }
        Ok(())
    }

    /// Waits (bounded, 5 s) until no IPv6 address of the host is tentative
    /// (duplicate address detection): the driver's addresses on a bridge
    /// stay tentative for a while after its first port comes up, and a
    /// tentative address neither answers nor sends errors.
    pub fn wait_addresses(&self) -> Result<(), String> {
        for _ in 0..50 {
            let t = self.host.cmd(&["ip", "-6", "addr", "show", "tentative"])?;
            if t.trim().is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The namespace named `name` (`host`, `outside`, `guestN`).
    pub fn endpoint(&self, name: &str) -> Option<&NsHandle> {
        if name == "host" {
            return Some(&self.host);
        }
        if let Some(o) = &self.outside {
            if o.ns.name == name {
                return Some(&o.ns);
            }
        }
        self.guests.iter().map(|g| &g.ns).find(|n| n.name == name)
    }

    /// The namespace that owns `addr`: a guest, the outside, else the host.
    pub fn owner(&self, addr: IpAddr) -> &NsHandle {
        if let Some(g) = self.guests.iter().find(|g| g.addrs.contains(&addr)) {
            return &g.ns;
        }
        match &self.outside {
            Some(o) if o.addrs.contains(&addr) => &o.ns,
            _ => &self.host,
        }
    }

    /// Sends `p` from endpoint `from` to the owner of `p.dst`.
    pub fn send(&self, from: &str, p: &Probe) -> Result<Arrival, String> {
        let src = self
            .endpoint(from)
            .ok_or_else(|| format!("no endpoint {from} in the lab"))?;
        probe::send(src, self.owner(p.dst), p, self.timeout)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The namespaces go with their handles; their veths' host ends are
        // deleted now, so the host is as before when this returns.
        for g in &self.guests {
            let _ = self
                .host
                .output(&["ip", "link", "del", &g.host_end], Duration::from_secs(5));
        }
        if let Some(o) = &self.outside {
            if o.made {
                let _ = self
                    .host
                    .output(&["ip", "link", "del", &o.host_end], Duration::from_secs(5));
            }
        }
    }
}

/// A lease from the DHCP server on `ns`'s `eth0`: busybox `udhcpc` run once
/// (`-q -n`: exit with or without a lease), up to 2 discovers 4 s apart —
/// dnsmasq pings an address (up to 3 s) before it offers it the first
/// time, and udhcpc ignores an offer that answers an earlier discover.
/// A guest that gets no lease is told after ~8 s.
pub fn dhcp(ns: &NsHandle) -> Result<Lease, String> {
    let argv = [
        "udhcpc",
        "-f",
        "-q",
        "-n",
        "-i",
        "eth0",
        "-s",
        "/bin/true",
        "-t",
        "2",
        "-T",
        "4",
        "-A",
        "1",
    ];
    let (st, out, err) = ns.output(&argv, Duration::from_secs(20))?;
    let text = format!("{out}{err}");
    parse_lease(&text).ok_or_else(|| {
        format!(
            "udhcpc in {} got no lease (exit {st}): {}",
            ns.name,
            text.trim_end()
        )
    })
}

/// `lease of A obtained from S` in udhcpc's output.
fn parse_lease(text: &str) -> Option<Lease> {
    let l = text.lines().find(|l| l.contains("lease of "))?;
    let rest = &l[l.find("lease of ")? + 9..];
    let mut w = rest.split([' ', ',']).filter(|s| !s.is_empty());
    let addr = w.next()?.parse().ok()?;
    if w.next()? != "obtained" || w.next()? != "from" {
        return None;
    }
    let server = w.next()?.parse().ok()?;
    Some(Lease { addr, server })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_line_is_read() {
        let t = "udhcpc: started, v1.35.0\nudhcpc: broadcasting discover\nudhcpc: lease of 192.168.122.57 obtained from 192.168.122.1, lease time 3600\n";
        assert_eq!(
            parse_lease(t),
            Some(Lease {
                addr: "192.168.122.57".parse().unwrap(),
                server: "192.168.122.1".parse().unwrap()
            })
        );
        assert_eq!(parse_lease("udhcpc: no lease, failing\n"), None);
    }
}

#[cfg(test)]
mod real_tests {
    //! The lab on the real kernel without a driver: two guests on a bridge
    //! of a fresh namespace, static addresses, a firewall in one guest.
    use super::*;

    fn lab_here() -> Option<Lab> {
        if let Some(why) = crate::cannot_run(&["ip", "nft"]) {
            crate::skip(&why);
            return None;
        }
        crate::netns::enter_fresh_thread_netns().unwrap();
        let host = NsHandle::current("host").unwrap();
        host.cmd(&["ip", "link", "add", "vnlabbr0", "type", "bridge"])
            .unwrap();
        host.cmd(&["ip", "link", "set", "vnlabbr0", "up"]).unwrap();
        Some(Lab::new().unwrap())
    }

    fn guest(lab: &mut Lab, v4: &str, v6: &str) {
        lab.add_guest(&GuestSpec {
            bridge: "vnlabbr0".into(),
            statics: vec![(v4.parse().unwrap(), 24), (v6.parse().unwrap(), 64)],
            ..Default::default()
        })
        .unwrap();
    }

    fn p(dst: &str, proto: L4, dport: Option<u16>, reply: bool) -> Probe {
        Probe {
            dst: dst.parse().unwrap(),
            proto,
            sport: None,
            dport,
            reply,
        }
    }

    #[test]
    fn packets_between_two_guests_arrive_with_their_source_or_are_refused_or_dropped() {
        // A thread of its own: it leaves the test's namespace.
        std::thread::spawn(|| {
            let Some(mut lab) = lab_here() else { return };
            lab.timeout = Duration::from_millis(700);
            guest(&mut lab, "10.99.0.2", "fd99::2");
            guest(&mut lab, "10.99.0.3", "fd99::3");
            let delivered = |a: Arrival, src: &str| match a {
                Arrival::Delivered { at, src: s, .. } => {
                    assert_eq!(at, "guest1");
                    assert_eq!(s.to_string(), src);
                }
                other => panic!("{other:?}"),
            };
            for (dst, src) in [("10.99.0.3", "10.99.0.2"), ("fd99::3", "fd99::2")] {
                delivered(lab.send("guest0", &p(dst, L4::Icmp, None, false)).unwrap(), src);
                let a = lab.send("guest0", &p(dst, L4::Udp, Some(5353), true)).unwrap();
                assert!(matches!(a, Arrival::Delivered { replied: Some(true), .. }), "{a:?}");
                delivered(a, src);
                let a = lab.send("guest0", &p(dst, L4::Tcp, Some(8080), true)).unwrap();
                assert!(matches!(a, Arrival::Delivered { replied: Some(true), .. }), "{a:?}");
                delivered(a, src);
            }
            // A fixed source port is kept (no NAT between guests).
            let mut q = p("10.99.0.3", L4::Udp, Some(5354), false);
            q.sport = Some(4000);
            match lab.send("guest0", &q).unwrap() {
                Arrival::Delivered { sport, .. } => assert_eq!(sport, Some(4000)),
                other => panic!("{other:?}"),
            }
            // guest1's own firewall: rejects and drops.
            lab.guests[1]
                .ns
                .cmd(&["nft", "add table inet f; add chain inet f in { type filter hook input priority 0; }; add rule inet f in udp dport 9 reject; add rule inet f in tcp dport 9 reject with tcp reset; add rule inet f in udp dport 10 drop; add rule inet f in icmp type echo-request reject with icmp admin-prohibited"])
                .unwrap();
            for (q, want) in [
                (p("10.99.0.3", L4::Udp, Some(9), false), "refused"),
                (p("10.99.0.3", L4::Tcp, Some(9), false), "refused"),
                (p("10.99.0.3", L4::Udp, Some(10), false), "timeout"),
                (p("10.99.0.3", L4::Icmp, None, false), "refused"),
            ] {
                let a = lab.send("guest0", &q).unwrap();
                let got = match &a {
                    Arrival::Refused { .. } => "refused",
                    Arrival::Timeout => "timeout",
                    _ => "other",
                };
                assert_eq!(got, want, "{q:?}: {a:?}");
            }
            drop(lab);
            // Nothing of the lab is left in the host namespace.
            let links = NsHandle::current("host")
                .unwrap()
                .cmd(&["ip", "-br", "link"])
                .unwrap();
            assert!(!links.contains("vnlg"), "{links}");
        })
        .join()
        .unwrap();
    }
}
