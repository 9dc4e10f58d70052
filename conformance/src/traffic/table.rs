//! The flow table of a network definition: which flows to probe and what
//! libvirt documents for each.
//!
//! # The facts (libvirt's documentation, in our words)
//!
//! From libvirt's network XML reference (forward modes) and its firewall
//! page (what the virtual network driver's rules allow):
//!
//! * **Host services.** Guests on any libvirt-managed bridge may reach the
//!   host; libvirt explicitly opens DHCP (67) and DNS (53, udp and tcp) on
//!   the bridge, since it cannot know whether the host firewall allows
//!   them, and restricts nothing else a guest sends to the host (the host's
//!   own firewall decides). So DNS, DHCP, ICMP and any other port to the
//!   gateway address are accepted on a host without other rules.
//! * **isolated** (no `<forward>`): guests talk to each other and to the
//!   host; all traffic leaving or entering through another interface is
//!   refused (reject rules). libvirt leaves IP forwarding off for such a
//!   network, so IPv6 (whose forwarding no other network of the setup turns
//!   on) is not even routed.
//! * **nat**: outbound traffic from the network's subnet to any device (to
//!   the `dev` only, when set) is forwarded with the source translated to
//!   the host's address on the outgoing interface (masquerade), or to an
//!   address of `<nat><address start end>` (SNAT, IPv4 only); TCP/UDP source
//!   ports are taken from `<nat><port start end>`, 1024-65535 when unset.
//!   Inbound connections are refused; replies to guest-initiated ones pass.
//!   IPv6 is plainly routed (no NAT, inbound allowed) unless `<nat
//!   ipv6='yes'>`, which masquerades IPv6 too (never to the IPv4 SNAT
//!   range). Guests of one network talk to each other freely.
//! * **route**: forwarded both ways without translation, restricted to the
//!   `dev` when set; connections from other networks are refused.
//! * **open**: forwarded, and libvirt adds no rule at all: the host's other
//!   rules decide.
//! * **bridge** (and the macvtap/hostdev modes): the guest is on a host
//!   bridge libvirt does not manage; no rules, no addresses; guests reach
//!   each other at layer 2.
//! * **Two subnets of one bridge.** Traffic between them is routed by the
//!   host and allowed for every mode. libvirt's docs say it is not NATed,
//!   but the masquerade rule of a nat network (without `dev`) matches every
//!   destination outside the sender's subnet, so libvirt does translate it:
//!   the receiver sees the host's address in its own subnet (or the SNAT
//!   range). We follow what libvirt does and note the disagreement here.
//!   The same rule masquerades a nat network's guests towards another
//!   network's guests.
//! * **Other networks.** A nat or isolated network refuses connections
//!   from other networks' guests; a routed network without `dev` accepts
//!   them.
//!
//! # Foreign rules
//!
//! libvirt's accept verdicts end only its own chain or table. What else is
//! on the host still decides:
//!
//! * **firewalld** with its default (public) zone and no `libvirt` zone for
//!   the bridge (libvirt asks firewalld over D-Bus to put the bridge in its
//!   `libvirt` zone; the seed has no firewalld daemon, so the bridge stays
//!   in the default zone): every new forwarded connection and every
//!   guest → host packet other than ssh and ICMP is rejected. The
//!   libvirt firewall page says as much: the default zone blocks guests'
//!   forwarding, DHCP and DNS. ICMP means both families: a zone whose
//!   target is `default` (public's) accepts ICMP and ICMPv6, neighbour
//!   discovery included (firewalld.zone(5) on targets; firewalld issue
//!   590), so an IPv6 guest reaches the host and is refused like an IPv4
//!   one, not left unanswered.
//! * **Docker** sets the iptables FORWARD policy to DROP (IPv4: the seed
//!   has Docker's iptables rules only, no ip6tables ones). libvirt's
//!   iptables backend jumps to its chains from the top of FORWARD, so its
//!   verdicts come first and guests are unaffected; with libvirt's nftables
//!   backend, its own table's accept does not stop iptables' FORWARD chain,
//!   whose policy drops every forwarded guest packet (a known libvirt
//!   problem with Docker on the same host). An `open` network, which has no
//!   libvirt rules, is dropped with either backend.
//!
//! # The setup the table assumes
//!
//! The uplink (the network's forward device, or `vnup0`) carries
//! 198.51.100.254/24 and 2001:db8:ffff::fe/64; the outside is 198.51.100.7
//! and 2001:db8:ffff::7 on that link. For the virtual modes a peer network
//! ([`peer_xml`], nat, 172.31.254.0/24 on [`PEER_BRIDGE`]) runs next to the
//! case's; its start turns IPv4 forwarding on. Guest addresses come from
//! the DHCP range (else a DHCP host, else the subnet's tenth address).

use std::net::{IpAddr, Ipv4Addr};

use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{ForwardMode, IpDef, NetworkDef};

use super::{
    AddrSeen, Expect, FlowTable, Foreign, Net, Node, Path, PortSeen, ProbeFlow, Proto, Topology,
};

/// The peer network's name and bridge.
pub const PEER_NAME: &str = "vntpeer";
pub const PEER_BRIDGE: &str = "vntpeer0";
const PEER_GW: Ipv4Addr = Ipv4Addr::new(172, 31, 254, 1);
const PEER_GUEST: Ipv4Addr = Ipv4Addr::new(172, 31, 254, 10);

/// The peer network: a plain nat network whose subnet no golden case uses.
pub fn peer_xml() -> String {
    format!(
        "<network>\n  <name>{PEER_NAME}</name>\n  <bridge name='{PEER_BRIDGE}'/>\n  <forward mode='nat'/>\n  <ip address='{PEER_GW}' prefix='24'/>\n</network>\n"
    )
}

/// Guest source port of every UDP/TCP probe.
pub const GUEST_SPORT: u16 = 40000;
/// The ports the outside and host services listen on.
pub const DNS: u16 = 53;
pub const SSH: u16 = 22;
pub const VNC: u16 = 5900;
pub const HTTPS: u16 = 443;

/// A guest → host probe: name, protocol, source and destination port, why.
type Service = (String, Proto, Option<u16>, Option<u16>, &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Isolated,
    Nat,
    Route,
    Open,
    /// bridge and the macvtap/hostdev modes: not managed by libvirt.
    Unmanaged,
}

/// What kind of probe a flow is (decides how foreign rules affect it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gateway,
    Outside,
    Inbound,
    Cross,
    Switched,
    ToPeer,
    FromPeer,
}

struct Gen<'a> {
    def: &'a NetworkDef,
    topo: &'a Topology,
    backend: Backend,
    foreign: Foreign,
    mode: Mode,
    bridge: String,
    flows: Vec<ProbeFlow>,
}

fn nth_addr(net: IpAddr, n: u128) -> IpAddr {
    match net {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(n as u32))),
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a).wrapping_add(n))),
    }
}

/// The address of guest `k` (0, 1) of a subnet.
fn guest_addr(ip: &IpDef, k: u128) -> Option<IpAddr> {
    let base = if let Some(r) = ip.ranges.first() {
        r.start
    } else if let Some(a) = ip.hosts.iter().find_map(|h| h.ip) {
        a
    } else {
        nth_addr(ip.network()?, 10)
    };
    let mut a = nth_addr(base, k);
    if a == ip.address {
        a = nth_addr(a, 2);
    }
    Some(a)
}

impl Gen<'_> {
    fn nat_ports(&self) -> (u16, u16) {
        match self.def.nat() {
            Some(n) if !(n.port_start == 0 && n.port_end == 0) => (n.port_start, n.port_end),
            _ => (1024, 65535),
        }
    }

    fn nat_ipv6(&self) -> bool {
        self.def.nat().and_then(|n| n.ipv6) == Some(true)
    }

    /// Does the nat network translate traffic of this family?
    fn masq(&self, v4: bool) -> bool {
        self.mode == Mode::Nat && (v4 || self.nat_ipv6())
    }

    /// Is forwarding of this family on (libvirt turns it on for the
    /// forwarding modes; the peer, a nat network, turns IPv4 on)?
    fn forwarding(&self, v4: bool) -> bool {
        v4 || matches!(self.mode, Mode::Nat | Mode::Route | Mode::Open)
    }

    /// Source the receiver sees after the nat network's translation
    /// towards `via` (the host's address on the outgoing interface).
    fn translated(&self, v4: bool, via: IpAddr, proto: Proto) -> Expect {
        let src = match self.def.nat().and_then(|n| n.address) {
            Some(r) if v4 => AddrSeen::Range {
                start: IpAddr::V4(r.start),
                end: IpAddr::V4(r.end),
            },
            _ => AddrSeen::Exact { addr: via },
        };
        let sport = if proto.has_ports() {
            let (s, e) = self.nat_ports();
            PortSeen::Range { start: s, end: e }
        } else {
            PortSeen::Exact { port: None }
        };
        Expect::Delivered { src, sport }
    }

    fn guest(&self, ip: &IpDef, index: usize, k: u128) -> Option<Node> {
        Some(Node::Guest {
            net: Net::Case,
            index,
            bridge: self.bridge.clone(),
            addr: guest_addr(ip, k)?,
            prefix: ip.prefix()? as u8,
            gateway: Some(ip.address),
        })
    }

    /// Adds a flow with its documented (bare host) expectation, adjusted
    /// for the foreign rules; a guest → outside flow that is delivered gets
    /// its reply right after it.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kind: Kind,
        name: String,
        from: Node,
        to: Node,
        iif: &str,
        proto: Proto,
        ports: (Option<u16>, Option<u16>),
        expect: Expect,
        why: &str,
    ) {
        let (expect, why) = self.foreign(kind, &to, proto, ports.1, expect, why);
        let flow = ProbeFlow {
            name: name.clone(),
            from: from.clone(),
            to: to.clone(),
            iif: iif.to_string(),
            proto,
            src: from.addr(),
            sport: ports.0,
            dst: to.addr(),
            dport: ports.1,
            reply_of: None,
            path: if kind == Kind::Switched {
                Path::Switched
            } else {
                Path::Routed
            },
            expect: expect.clone(),
            why,
            dhcp_mac: None,
        };
        self.flows.push(flow);
        if kind == Kind::Outside && matches!(expect, Expect::Delivered { .. }) {
            let orig = self.flows.len() - 1;
            let proto_r = proto;
            self.flows.push(ProbeFlow {
                name: format!("{name} reply"),
                from: to.clone(),
                to: from.clone(),
                iif: self.topo.uplink.clone(),
                proto: proto_r,
                src: to.addr(),
                sport: ports.1,
                dst: from.addr(),
                dport: ports.0,
                reply_of: Some(orig),
                path: Path::Routed,
                expect: Expect::Delivered {
                    src: AddrSeen::Exact { addr: to.addr() },
                    sport: PortSeen::Exact { port: ports.1 },
                },
                why: "a reply of an allowed outbound connection passes, untranslated back \
                      (nat: related/established inbound allowed; route/open: inbound allowed)"
                    .into(),
                dhcp_mac: None,
            });
        }
    }

    /// The foreign rules' effect (module doc, "Foreign rules").
    fn foreign(
        &self,
        kind: Kind,
        to: &Node,
        proto: Proto,
        dport: Option<u16>,
        bare: Expect,
        why: &str,
    ) -> (Expect, String) {
        let delivered = matches!(bare, Expect::Delivered { .. });
        match (self.foreign, kind) {
            (Foreign::Bare, _) | (_, Kind::Switched) => (bare, why.to_string()),
            (Foreign::Baseline, Kind::Gateway) => {
                let open = matches!(proto, Proto::Icmp | Proto::Icmpv6)
                    || (proto == Proto::Tcp && dport == Some(SSH));
                if open || !delivered {
                    (
                        bare,
                        format!("{why}; firewalld's public zone allows ssh and ICMP"),
                    )
                } else {
                    (
                        Expect::Rejected,
                        "firewalld's default zone rejects it (the bridge is not in libvirt's zone)"
                            .into(),
                    )
                }
            }
            (Foreign::Baseline, _) => {
                if delivered {
                    (
                        Expect::Rejected,
                        "firewalld's forward chain rejects every new forwarded connection \
                         (libvirt's accept ends only its own chain)"
                            .into(),
                    )
                } else {
                    (bare, format!("{why} (firewalld would reject it too)"))
                }
            }
            (Foreign::DockerDrop, Kind::Gateway) => {
                (bare, format!("{why}; Docker filters only forwarding"))
            }
            (Foreign::DockerDrop, _) if !to.addr().is_ipv4() => (
                bare,
                format!("{why}; Docker's rules are IPv4 (iptables) only"),
            ),
            (Foreign::DockerDrop, _) => {
                let libvirt_decides =
                    self.mode != Mode::Open || matches!(kind, Kind::ToPeer | Kind::FromPeer);
                match (self.backend, delivered) {
                    (Backend::Iptables, _) if libvirt_decides => (
                        bare,
                        format!("{why}; libvirt's iptables chains are jumped to before Docker's FORWARD policy"),
                    ),
                    (_, true) => (
                        Expect::Dropped,
                        if self.mode == Mode::Open {
                            "Docker's FORWARD policy DROP: an open network has no libvirt rule to accept it".into()
                        } else {
                            "Docker's FORWARD policy DROP drops it: libvirt's nftables accept does not end iptables' FORWARD chain".into()
                        },
                    ),
                    (_, false) if bare == Expect::Rejected => (
                        Expect::Blocked,
                        format!("{why}, or dropped first by Docker's FORWARD policy DROP (same hook priority)"),
                    ),
                    (_, false) => (bare, why.to_string()),
                }
            }
        }
    }

    fn run(&mut self) {
        let mode = self.mode;
        if mode == Mode::Unmanaged || self.def.ips.is_empty() {
            // Two guests at layer 2 on the bridge (documentation addresses:
            // the network has none of its own).
            let mk = |i: usize, last: u8| Node::Guest {
                net: Net::Case,
                index: i,
                bridge: self.bridge.clone(),
                addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
                prefix: 24,
                gateway: None,
            };
            let (a, b) = (mk(0, 10), mk(1, 11));
            let br = self.bridge.clone();
            self.push(
                Kind::Switched,
                "v4 guest->guest same bridge tcp".into(),
                a,
                b,
                &br,
                Proto::Tcp,
                (Some(GUEST_SPORT), Some(SSH)),
                Expect::Delivered {
                    src: AddrSeen::Exact {
                        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                    },
                    sport: PortSeen::Exact {
                        port: Some(GUEST_SPORT),
                    },
                },
                "guests on one bridge reach each other at layer 2",
            );
            return;
        }
        let ips: Vec<IpDef> = self.def.ips.clone();
        let br = self.bridge.clone();
        let dev = self.def.forward_dev().map(str::to_string);
        for fam_v4 in [true, false] {
            let fam: Vec<(usize, &IpDef)> = ips
                .iter()
                .enumerate()
                .filter(|(_, ip)| ip.is_ipv4() == fam_v4)
                .collect();
            let Some(&(first_i, first)) = fam.first() else {
                continue;
            };
            let f = if fam_v4 { "v4" } else { "v6" };
            let icmp = if fam_v4 { Proto::Icmp } else { Proto::Icmpv6 };
            let Some(g0) = self.guest(first, first_i, 0) else {
                continue;
            };
            let unchanged = |n: &Node, p: Option<u16>| Expect::Delivered {
                src: AddrSeen::Exact { addr: n.addr() },
                sport: PortSeen::Exact { port: p },
            };
            // guest -> host services (the gateway of the first subnet).
            let host = Node::Host {
                addr: first.address,
            };
            let mut gw: Vec<Service> = vec![
                (
                    format!("{f}.{first_i} guest->host dns udp"),
                    Proto::Udp,
                    Some(GUEST_SPORT),
                    Some(DNS),
                    "libvirt opens DNS to the host on the bridge",
                ),
                (
                    format!("{f}.{first_i} guest->host dns tcp"),
                    Proto::Tcp,
                    Some(GUEST_SPORT),
                    Some(DNS),
                    "libvirt opens DNS to the host on the bridge",
                ),
                (
                    format!("{f}.{first_i} guest->host ssh"),
                    Proto::Tcp,
                    Some(GUEST_SPORT),
                    Some(SSH),
                    "libvirt restricts nothing a guest sends to the host",
                ),
                (
                    format!("{f}.{first_i} guest->host tcp {VNC}"),
                    Proto::Tcp,
                    Some(GUEST_SPORT),
                    Some(VNC),
                    "libvirt restricts nothing a guest sends to the host",
                ),
                (
                    format!("{f}.{first_i} guest->host {}", icmp.as_str()),
                    icmp,
                    None,
                    None,
                    "libvirt restricts nothing a guest sends to the host",
                ),
            ];
            for (name, proto, sp, dp, why) in gw.drain(..) {
                let e = unchanged(&g0, sp);
                self.push(
                    Kind::Gateway,
                    name,
                    g0.clone(),
                    host.clone(),
                    &br,
                    proto,
                    (sp, dp),
                    e,
                    why,
                );
            }
            if fam_v4 {
                if let Some((di, dip)) = fam.iter().find(|(_, ip)| ip.has_dhcp()) {
                    let client = Node::Guest {
                        net: Net::Case,
                        index: *di,
                        bridge: br.clone(),
                        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        prefix: dip.prefix().unwrap_or(0) as u8,
                        gateway: Some(dip.address),
                    };
                    let bcast = Node::Host {
                        addr: IpAddr::V4(Ipv4Addr::BROADCAST),
                    };
                    let e = unchanged(&client, Some(68));
                    // A subnet with `<host>` entries only answers their
                    // MACs (libvirt gives dnsmasq a static-only range).
                    let mac = if dip.ranges.is_empty() {
                        dip.hosts
                            .iter()
                            .find(|h| h.ip.is_some())
                            .and_then(|h| h.mac.clone())
                    } else {
                        None
                    };
                    self.push(
                        Kind::Gateway,
                        format!("v4.{di} guest->host dhcp discover"),
                        client,
                        bcast,
                        &br,
                        Proto::Udp,
                        (Some(68), Some(67)),
                        e,
                        "libvirt opens DHCP to the host on the bridge",
                    );
                    if let Some(f) = self.flows.last_mut() {
                        f.dhcp_mac = mac;
                    }
                }
            }
            // Every subnet: out through the uplink and back, and inbound.
            let outside = Node::Outside {
                addr: if fam_v4 {
                    IpAddr::V4(self.topo.outside_v4)
                } else {
                    IpAddr::V6(self.topo.outside_v6)
                },
            };
            let uplink_addr = if fam_v4 {
                IpAddr::V4(self.topo.uplink_v4)
            } else {
                IpAddr::V6(self.topo.uplink_v6)
            };
            for (i, ip) in &fam {
                let Some(g) = self.guest(ip, *i, 0) else {
                    continue;
                };
                for (proto, sp, dp) in [
                    (icmp, None, None),
                    (Proto::Udp, Some(GUEST_SPORT), Some(DNS)),
                    (Proto::Tcp, Some(GUEST_SPORT), Some(HTTPS)),
                ] {
                    let (e, why) = match mode {
                        Mode::Isolated if fam_v4 => (Expect::Rejected, "isolated: outbound traffic is refused"),
                        Mode::Isolated => (Expect::Blocked, "isolated: outbound traffic is refused (and IPv6 forwarding is off)"),
                        Mode::Nat if self.masq(fam_v4) => (
                            self.translated(fam_v4, uplink_addr, proto),
                            "nat: outbound allowed, source translated to the uplink address (or the <nat><address> range) and the <nat><port> range",
                        ),
                        Mode::Nat => (unchanged(&g, sp), "nat: IPv6 without <nat ipv6='yes'> is routed, untranslated"),
                        Mode::Route => (unchanged(&g, sp), "route: outbound forwarded untranslated"),
                        _ => (unchanged(&g, sp), "open: forwarded, no libvirt rules"),
                    };
                    self.push(
                        Kind::Outside,
                        format!("{f}.{i} guest->outside {}", proto.as_str()),
                        g.clone(),
                        outside.clone(),
                        &br,
                        proto,
                        (sp, dp),
                        e,
                        why,
                    );
                }
                let (e, why) = match mode {
                    Mode::Isolated if fam_v4 => {
                        (Expect::Rejected, "isolated: inbound traffic is refused")
                    }
                    Mode::Isolated => (
                        Expect::Blocked,
                        "isolated: inbound traffic is refused (and IPv6 forwarding is off)",
                    ),
                    Mode::Nat if self.masq(fam_v4) => {
                        (Expect::Rejected, "nat: inbound connections are refused")
                    }
                    Mode::Nat => (
                        unchanged(&outside, Some(GUEST_SPORT)),
                        "nat: IPv6 without <nat ipv6='yes'> is routed, inbound allowed",
                    ),
                    Mode::Route => (
                        unchanged(&outside, Some(GUEST_SPORT)),
                        "route: inbound sessions unrestricted",
                    ),
                    _ => (
                        unchanged(&outside, Some(GUEST_SPORT)),
                        "open: forwarded, no libvirt rules",
                    ),
                };
                let up = self.topo.uplink.clone();
                self.push(
                    Kind::Inbound,
                    format!("{f}.{i} outside->guest ssh"),
                    outside.clone(),
                    g.clone(),
                    &up,
                    Proto::Tcp,
                    (Some(GUEST_SPORT), Some(SSH)),
                    e,
                    why,
                );
            }
            // Same subnet (layer 2), then the other subnets of the bridge.
            if let Some(g1) = self.guest(first, first_i + 100, 1) {
                let e = unchanged(&g0, Some(GUEST_SPORT));
                self.push(
                    Kind::Switched,
                    format!("{f}.{first_i} guest->guest same subnet tcp"),
                    g0.clone(),
                    g1,
                    &br,
                    Proto::Tcp,
                    (Some(GUEST_SPORT), Some(SSH)),
                    e,
                    "guests of one subnet reach each other at layer 2",
                );
            }
            for (j, ip) in fam.iter().skip(1) {
                let Some(gj) = self.guest(ip, *j, 0) else {
                    continue;
                };
                let (e, why) = if !self.forwarding(fam_v4) {
                    (
                        Expect::Blocked,
                        "isolated: IPv6 forwarding is off, the host does not route between subnets",
                    )
                } else if self.masq(fam_v4) && dev.is_none() {
                    (
                        self.translated(fam_v4, ip.address, Proto::Tcp),
                        "between subnets of one bridge: allowed, and nat's masquerade rule matches it (destination outside the sender's subnet)",
                    )
                } else {
                    (
                        unchanged(&g0, Some(GUEST_SPORT)),
                        "between subnets of one bridge: allowed, untranslated",
                    )
                };
                self.push(
                    Kind::Cross,
                    format!("{f}.{first_i} guest->guest {f}.{j} tcp"),
                    g0.clone(),
                    gj,
                    &br,
                    Proto::Tcp,
                    (Some(GUEST_SPORT), Some(SSH)),
                    e,
                    why,
                );
            }
            // The peer network (IPv4).
            if fam_v4 {
                let peer = Node::Guest {
                    net: Net::Peer,
                    index: 0,
                    bridge: PEER_BRIDGE.into(),
                    addr: IpAddr::V4(PEER_GUEST),
                    prefix: 24,
                    gateway: Some(IpAddr::V4(PEER_GW)),
                };
                self.push(
                    Kind::ToPeer,
                    format!("v4.{first_i} guest->peer-guest tcp"),
                    g0.clone(),
                    peer.clone(),
                    &br,
                    Proto::Tcp,
                    (Some(GUEST_SPORT), Some(SSH)),
                    Expect::Rejected,
                    "the peer (nat) refuses connections from other networks",
                );
                let (e, why) = match mode {
                    Mode::Route | Mode::Open if !(mode == Mode::Route && dev.is_some()) => (
                        Expect::Delivered {
                            src: AddrSeen::Exact {
                                addr: first.address,
                            },
                            sport: PortSeen::Range {
                                start: 1024,
                                end: 65535,
                            },
                        },
                        "route/open accept connections from other networks; the peer (nat) masquerades them to the host's address on this bridge",
                    ),
                    Mode::Route => (Expect::Rejected, "route with dev: only connections through dev are allowed in"),
                    Mode::Nat => (Expect::Rejected, "nat: connections from other networks are refused"),
                    _ => (Expect::Rejected, "isolated: connections from other networks are refused"),
                };
                self.push(
                    Kind::FromPeer,
                    format!("v4.{first_i} peer-guest->guest tcp"),
                    peer,
                    g0.clone(),
                    PEER_BRIDGE,
                    Proto::Tcp,
                    (Some(GUEST_SPORT), Some(SSH)),
                    e,
                    why,
                );
            }
        }
    }
}

/// The flow table of `def` with `backend`, under the `foreign` rules.
pub fn flow_table(case: &str, def: &NetworkDef, backend: Backend, foreign: Foreign) -> FlowTable {
    let topo = Topology::for_def(def);
    let mode = match def.forward_mode() {
        None => Mode::Isolated,
        Some(ForwardMode::Nat) => Mode::Nat,
        Some(ForwardMode::Route) => Mode::Route,
        Some(ForwardMode::Open) => Mode::Open,
        Some(_) => Mode::Unmanaged,
    };
    let mut g = Gen {
        def,
        topo: &topo,
        backend,
        foreign,
        mode,
        bridge: def.bridge_name().unwrap_or("").to_string(),
        flows: Vec::new(),
    };
    g.run();
    let flows = g.flows;
    FlowTable {
        case: case.to_string(),
        foreign,
        topology: topo.clone(),
        peer: mode != Mode::Unmanaged,
        flows,
    }
}
