//! Traffic conformance (issue 16): for every golden case, the probe flows a
//! guest, the host and the outside would send, each with the outcome
//! libvirt's *documented* behaviour of the network's forward mode gives.
//!
//! The tables are the oracle of the `traffic` operation of the matrix
//! (`scenario/traffic.rs`: the simulator's packet tracer on the fake host)
//! and of the real-packet harness (guest and outside namespaces). They are
//! derived from the network definition and a fixed [`Topology`] only —
//! never from the rules under test — by [`table::flow_table`], whose module
//! doc lists the libvirt facts it encodes, in our words.
//!
//! Vocabulary:
//!
//! * a [`Node`] is a guest (of the case's network or of the *peer*, a second
//!   network started next to it), the *outside* (an address behind the
//!   uplink), or the host;
//! * a [`ProbeFlow`] is the first packet of a connection from one node to
//!   another (or, with [`ProbeFlow::reply_of`], the answer to an earlier
//!   flow of the same table), with its [`Expect`]ed outcome;
//! * [`Foreign`] says which foreign rulesets are on the host: the outcome
//!   of some flows depends on them (Docker's FORWARD policy DROP and the
//!   nftables backend, firewalld without libvirt's zone), and the
//!   expectation says so explicitly.
//!
//! These types are shared with the real-packet side: keep them stable.

pub mod table;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use table::{flow_table, peer_xml, PEER_BRIDGE, PEER_NAME};
pub use virtnet_fake::trace::Proto;

/// Which network a guest is plugged into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    /// The golden case's network.
    Case,
    /// The peer network started next to it ([`table::peer_xml`]), to probe
    /// traffic between two virtual networks.
    Peer,
}

/// An end of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "node", rename_all = "lowercase")]
pub enum Node {
    /// A guest plugged into `bridge` of network `net`, with `addr`
    /// (`prefix` bits of subnet, the subnet's gateway being the host's
    /// address `gateway` on the bridge). `index` numbers the guests of one
    /// network (one per `<ip>` element in document order, then extra
    /// guests of the first subnet of a family).
    Guest {
        net: Net,
        index: usize,
        bridge: String,
        addr: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
    },
    /// A host behind the uplink ([`Topology::outside_v4`] / `_v6`).
    Outside { addr: IpAddr },
    /// The host itself (an address of its own: the gateway of a guest's
    /// subnet).
    Host { addr: IpAddr },
}

impl Node {
    pub fn addr(&self) -> IpAddr {
        match self {
            Node::Guest { addr, .. } | Node::Outside { addr } | Node::Host { addr } => *addr,
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Guest {
                net, index, addr, ..
            } => {
                let n = match net {
                    Net::Case => "guest",
                    Net::Peer => "peer-guest",
                };
                write!(f, "{n}{index} {addr}")
            }
            Node::Outside { addr } => write!(f, "outside {addr}"),
            Node::Host { addr } => write!(f, "host {addr}"),
        }
    }
}

/// How the packet travels between its ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// Through the host's IP stack (the netfilter hooks see it): to the
    /// host, forwarded between interfaces, or routed between two subnets
    /// of one bridge.
    Routed,
    /// Switched by the bridge between two ports of one subnet: the host's
    /// IP hooks never see it (no `br_netfilter`). The simulator's tracer
    /// does not model bridging; only real packets check these.
    Switched,
}

/// A set of source addresses the receiver may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AddrSeen {
    Exact {
        addr: IpAddr,
    },
    /// `<nat><address start end>`: any address of the range.
    Range {
        start: IpAddr,
        end: IpAddr,
    },
}

impl AddrSeen {
    pub fn contains(&self, a: IpAddr) -> bool {
        match *self {
            AddrSeen::Exact { addr } => addr == a,
            AddrSeen::Range { start, end } => match (start, end, a) {
                (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(x)) => s <= x && x <= e,
                (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(x)) => s <= x && x <= e,
                _ => false,
            },
        }
    }
}

impl fmt::Display for AddrSeen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrSeen::Exact { addr } => write!(f, "{addr}"),
            AddrSeen::Range { start, end } => write!(f, "{start}-{end}"),
        }
    }
}

/// A set of source ports the receiver may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PortSeen {
    /// Exactly this (None: a protocol without ports).
    Exact { port: Option<u16> },
    /// Any port of the range (a masquerade/SNAT port range).
    Range { start: u16, end: u16 },
}

impl PortSeen {
    pub fn contains(&self, p: Option<u16>) -> bool {
        match *self {
            PortSeen::Exact { port } => port == p,
            PortSeen::Range { start, end } => p.is_some_and(|p| start <= p && p <= end),
        }
    }
}

impl fmt::Display for PortSeen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSeen::Exact { port: Some(p) } => write!(f, ":{p}"),
            PortSeen::Exact { port: None } => Ok(()),
            PortSeen::Range { start, end } => write!(f, ":{start}-{end}"),
        }
    }
}

/// The outcome a flow must have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Expect {
    /// The receiver gets it, from a source in `src`/`sport`; destination
    /// address and port unchanged (libvirt never translates destinations).
    /// For a flow to the host: accepted by the host's input path.
    Delivered { src: AddrSeen, sport: PortSeen },
    /// Refused with an ICMP error / TCP reset (a `reject` rule).
    Rejected,
    /// Silently discarded (a `drop` rule or a chain's drop policy).
    Dropped,
    /// Not delivered, by a drop, a reject or the routing (forwarding
    /// off); used where which one is not a documented fact (two blockers
    /// at the same hook priority, whose order is registration order).
    Blocked,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Delivered { src, sport } => write!(f, "delivered from {src}{sport}"),
            Expect::Rejected => f.write_str("rejected"),
            Expect::Dropped => f.write_str("dropped"),
            Expect::Blocked => f.write_str("not delivered (dropped, rejected or unroutable)"),
        }
    }
}

/// One probe flow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeFlow {
    /// Stable name within the table, e.g. `v4.0 guest->outside udp`.
    pub name: String,
    pub from: Node,
    pub to: Node,
    /// The host interface the packet arrives on (the guest's bridge, or
    /// the uplink for the outside).
    pub iif: String,
    pub proto: Proto,
    /// Addresses and ports as sent. For a reply ([`ProbeFlow::reply_of`]),
    /// the original as sent, reversed: what the receiver (the original's
    /// sender) must see; the packet itself is sent to the address and
    /// port the original's receiver saw as its source.
    pub src: IpAddr,
    pub sport: Option<u16>,
    pub dst: IpAddr,
    pub dport: Option<u16>,
    /// Index (in the table) of the flow this one answers.
    pub reply_of: Option<usize>,
    pub path: Path,
    pub expect: Expect,
    /// Why: the documented behaviour the expectation comes from.
    pub why: String,
    /// For the DHCP exchange of a subnet that serves only `<host>`
    /// entries (no `<range>`): the MAC of such an entry, the client's
    /// (dnsmasq answers no other).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_mac: Option<String>,
}

impl ProbeFlow {
    /// The flow in the tracer's syntax (`from IFACE SRC to DST PROTO …`),
    /// as sent. A reply needs what its original's receiver saw: `seen` =
    /// (source address, source port) of the original at its receiver.
    pub fn trace_flow(&self, seen: Option<(IpAddr, Option<u16>)>) -> virtnet_fake::trace::Flow {
        let (dst, dport) = match (self.reply_of, seen) {
            (Some(_), Some((a, p))) => (a, p),
            _ => (self.dst, self.dport),
        };
        virtnet_fake::trace::Flow {
            iif: self.iif.clone(),
            src: self.src,
            dst,
            proto: self.proto,
            sport: self.sport,
            dport,
            reply: self.reply_of.is_some(),
        }
    }
}

impl fmt::Display for ProbeFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        write!(
            f,
            "{} ({} -> {}, {} {}{} -> {}{}{})",
            self.name,
            self.from,
            self.to,
            self.proto.as_str(),
            self.src,
            port(self.sport),
            self.dst,
            port(self.dport),
            if self.reply_of.is_some() {
                ", reply"
            } else {
                ""
            }
        )
    }
}

/// Foreign rulesets on the host while the flows run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Foreign {
    /// None: only libvirt's (virtnet's) rules.
    Bare,
    /// The matrix baseline: Docker's iptables chains (FORWARD policy left
    /// at ACCEPT), Docker's nftables table and firewalld's table (public
    /// zone; no `libvirt` zone for the bridges).
    Baseline,
    /// Docker as it runs with IP forwarding: its iptables chains with the
    /// FORWARD policy DROP, and its nftables table. No firewalld.
    DockerDrop,
}

impl Foreign {
    pub const ALL: [Foreign; 3] = [Foreign::Baseline, Foreign::Bare, Foreign::DockerDrop];

    pub fn label(self) -> &'static str {
        match self {
            Foreign::Bare => "bare",
            Foreign::Baseline => "baseline",
            Foreign::DockerDrop => "docker-drop",
        }
    }
}

/// The fixed surroundings of every network under test: the uplink's and
/// the outside's addresses (documentation ranges, so never a real host's).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Topology {
    /// The uplink: the network's forward device when it has one, else
    /// [`Topology::DEFAULT_UPLINK`].
    pub uplink: String,
    /// The host's addresses on the uplink (prefix [`Topology::UPLINK_PREFIX_V4`] / `_V6`).
    pub uplink_v4: Ipv4Addr,
    pub uplink_v6: Ipv6Addr,
    /// The outside host, on-link behind the uplink.
    pub outside_v4: Ipv4Addr,
    pub outside_v6: Ipv6Addr,
    /// The addresses of the network's `<nat><address>` range that lie in
    /// the uplink's own subnet: the outside would look for them on-link
    /// (ARP) and nobody answers for an address the host does not own, so
    /// the lab routes each of them via the host, as an admin who SNATs to
    /// such an address must (an address on the host or a route to it).
    /// Addresses outside that subnet go via the outside's default route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snat_onlink_v4: Vec<Ipv4Addr>,
}

impl Topology {
    pub const DEFAULT_UPLINK: &'static str = "vnup0";
    pub const UPLINK_PREFIX_V4: u8 = 24;
    pub const UPLINK_PREFIX_V6: u8 = 64;

    /// The most addresses of a `<nat><address>` range given a route of
    /// their own on the outside ([`Topology::snat_onlink_v4`]).
    pub const MAX_SNAT_ROUTES: u32 = 256;

    /// The topology for a definition: uplink = its forward device, if any.
    pub fn for_def(def: &virtnet_core::netxml::NetworkDef) -> Topology {
        let uplink_v4 = Ipv4Addr::new(198, 51, 100, 254);
        let mask = u32::MAX << (32 - u32::from(Topology::UPLINK_PREFIX_V4));
        let snat_onlink_v4 = def
            .nat()
            .and_then(|n| n.address.as_ref())
            .map(|r| {
                (u32::from(r.start)..=u32::from(r.end))
                    .take(Topology::MAX_SNAT_ROUTES as usize)
                    .filter(|a| a & mask == u32::from(uplink_v4) & mask)
                    .map(Ipv4Addr::from)
                    .filter(|a| *a != uplink_v4)
                    .collect()
            })
            .unwrap_or_default();
        Topology {
            uplink: def
                .forward_dev()
                .unwrap_or(Topology::DEFAULT_UPLINK)
                .to_string(),
            uplink_v4,
            uplink_v6: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0xfe),
            outside_v4: Ipv4Addr::new(198, 51, 100, 7),
            outside_v6: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7),
            snat_onlink_v4,
        }
    }

    /// The outside's routes: default via the host for both families, and
    /// [`Topology::snat_onlink_v4`] each via the host.
    pub fn outside_routes(&self) -> Vec<(String, std::net::IpAddr)> {
        use std::net::IpAddr;
        let mut v: Vec<(String, IpAddr)> = self
            .snat_onlink_v4
            .iter()
            .map(|a| (format!("{a}/32"), IpAddr::V4(self.uplink_v4)))
            .collect();
        v.push(("default".into(), IpAddr::V4(self.uplink_v4)));
        v.push(("default".into(), IpAddr::V6(self.uplink_v6)));
        v
    }
}

/// The flows of one case under one foreign-rules variant and backend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlowTable {
    pub case: String,
    pub foreign: Foreign,
    pub topology: Topology,
    /// Whether the peer network is part of the setup (the case has IPv4
    /// on a bridge libvirt manages).
    pub peer: bool,
    pub flows: Vec<ProbeFlow>,
}

#[cfg(test)]
mod tests;
