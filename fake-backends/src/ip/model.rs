//! The simulated host's links, addresses, routes and neighbours, and the
//! kernel's reactions to them (carrier, operstate, bridge MAC and carrier,
//! IPv6 link-local addresses, settling): the state the command handlers in
//! `mod.rs` change and the renderers in `output.rs` print.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Loopback,
    Bridge,
    Dummy,
    Veth,
    Tap,
}

impl LinkKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            LinkKind::Loopback => "loopback",
            LinkKind::Bridge => "bridge",
            LinkKind::Dummy => "dummy",
            LinkKind::Veth => "veth",
            LinkKind::Tap => "tun",
        }
    }
}

/// One interface address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addr {
    /// The address as given (no prefix), e.g. `192.168.122.1` or `2001:db8::1`.
    pub local: String,
    pub prefixlen: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<String>,
    /// Order in which the address became usable (IPv6 routes of the same
    /// prefix are listed in this order).
    #[serde(default)]
    pub seq: u64,
    /// `label NAME` (IPv4), shown instead of the link name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Added with `nodad`: never `tentative`, flag shown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nodad: bool,
}

impl Addr {
    pub(super) fn ip(&self) -> Option<IpAddr> {
        self.local.parse().ok()
    }
    pub(super) fn is_v6(&self) -> bool {
        self.local.contains(':')
    }
    pub(super) fn scope(&self) -> &'static str {
        match self.ip() {
            Some(IpAddr::V4(v)) if v.is_loopback() => "host",
            Some(IpAddr::V6(v)) if v.is_loopback() => "host",
            Some(IpAddr::V6(v)) if (v.segments()[0] & 0xffc0) == 0xfe80 => "link",
            _ => "global",
        }
    }
    /// IPv6 source-scope rank the kernel sorts a link's addresses by.
    pub(super) fn v6_rank(&self) -> u8 {
        match self.scope() {
            "host" => 1,
            "link" => 2,
            _ => 14,
        }
    }
}

pub(super) fn yes() -> bool {
    true
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    pub mac: String,
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    pub addrs: Vec<Addr>,
    /// Bridge options set with `type bridge KEY VALUE...` (only explicitly
    /// set ones; the kernel defaults are not stored).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bridge: BTreeMap<String, u64>,
    /// The other end of a veth pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The MAC was set by the user (`address`), not chosen by the kernel.
    #[serde(default)]
    pub mac_set: bool,
    /// The kernel has computed this link's carrier at least once (for a
    /// bridge: after a port joined or left or its MAC was set). Until then
    /// an up bridge is UNKNOWN with carrier.
    #[serde(default = "yes")]
    pub carrier_known: bool,
    /// A root qdisc was attached (on the first `up`).
    #[serde(default)]
    pub qdisc_attached: bool,
    /// IPv6 has been configured since the link last came up with carrier
    /// (link-local address generated, DAD done).
    #[serde(default)]
    pub v6_ready: bool,
    /// `promisc on`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promisc: bool,
    /// `arp off` (NOARP).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noarp: bool,
    /// `multicast off`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nomulticast: bool,
    /// Connected routes removed with `ip route flush` (networks), until
    /// the link comes up again or the address is added again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_nets: Vec<String>,
    /// `addrgenmode none|eui64` (None = eui64): with `none` the kernel
    /// generates no link-local address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addrgenmode: Option<String>,
    /// `txqueuelen N` (None = the default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txqlen: Option<u32>,
}

/// A static route (`ip route add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination in canonical `net/len` form (or `default`).
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub dev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// True for an IPv6 route (needed for `default`).
    #[serde(default)]
    pub v6: bool,
}

impl Route {
    pub(super) fn is_v6(&self) -> bool {
        self.v6 || self.dst.contains(':') || self.via.as_deref().is_some_and(|v| v.contains(':'))
    }
}

/// A permanent neighbour entry (`ip neigh add ... lladdr MAC dev D`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neigh {
    pub dst: String,
    pub dev: String,
    pub lladdr: String,
}

/// Links, addresses and routes of one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpState {
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
    pub next_ifindex: u32,
    /// Counter for [`Addr::seq`].
    #[serde(default)]
    pub next_seq: u64,
    /// Permanent neighbour entries (the kernel's learnt ones never exist on
    /// the simulated host: nothing sends packets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neigh: Vec<Neigh>,
    /// Links whose IPv6 is disabled (`net.ipv6.conf.IFACE.disable_ipv6=1`),
    /// told by the host before each command.
    #[serde(skip)]
    pub v6_disabled: Vec<String>,
    /// Root qdisc kind per link set with tc, told by the host before each
    /// command (`ip link` shows it).
    #[serde(skip)]
    pub root_qdiscs: BTreeMap<String, String>,
    /// The kernel has the dummy link driver. The reference kernel does not
    /// (`type dummy` fails as an unknown type, as there), which is the
    /// default; [`crate::FakeHost::set_dummy_driver`] models a kernel that has it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dummy_driver: bool,
}

impl Default for IpState {
    fn default() -> Self {
        IpState::new()
    }
}

pub(super) fn mac_bytes(mac: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

/// The EUI-64 link-local address the kernel derives from a MAC
/// (addrgenmode eui64): fe80::/64 + MAC with the universal/local bit
/// flipped and ff:fe in the middle.
pub fn eui64_link_local(mac: &str) -> Option<std::net::Ipv6Addr> {
    let b = mac_bytes(mac)?;
    if b == [0; 6] {
        return None;
    }
    let iid = [b[0] ^ 2, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]];
    let mut seg = [0u16; 8];
    seg[0] = 0xfe80;
    for i in 0..4 {
        seg[4 + i] = (u16::from(iid[2 * i]) << 8) | u16::from(iid[2 * i + 1]);
    }
    Some(std::net::Ipv6Addr::from(seg))
}

pub(super) fn network_of(ip: IpAddr, len: u8) -> String {
    match ip {
        IpAddr::V4(v) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

/// Sort key of a route destination: (address as a number, prefix length).
pub(super) fn dst_key(dst: &str) -> (u128, u8) {
    if dst == "default" {
        return (0, 0);
    }
    match parse_prefix(dst) {
        Some((IpAddr::V4(v), l)) => (u128::from(u32::from(v)), l),
        Some((IpAddr::V6(v), l)) => (u128::from(v), l),
        None => (u128::MAX, 0),
    }
}

impl IpState {
    /// A fresh network namespace: only `lo`, down.
    pub fn new() -> Self {
        IpState {
            links: vec![Link {
                ifindex: 1,
                name: "lo".into(),
                kind: LinkKind::Loopback,
                mtu: 65536,
                mac: "00:00:00:00:00:00".into(),
                up: false,
                master: None,
                addrs: Vec::new(),
                bridge: BTreeMap::new(),
                peer: None,
                mac_set: false,
                carrier_known: true,
                qdisc_attached: false,
                v6_ready: false,
                promisc: false,
                noarp: false,
                nomulticast: false,
                hidden_nets: Vec::new(),
                addrgenmode: None,
                txqlen: None,
            }],
            routes: Vec::new(),
            next_ifindex: 2,
            next_seq: 0,
            neigh: Vec::new(),
            v6_disabled: Vec::new(),
            root_qdiscs: BTreeMap::new(),
            dummy_driver: false,
        }
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub(super) fn link_mut(&mut self, name: &str) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.name == name)
    }

    pub(super) fn peer_up(&self, l: &Link) -> bool {
        l.peer
            .as_deref()
            .and_then(|p| self.link(p))
            .is_some_and(|p| p.up)
    }

    /// Carrier (LOWER_UP) as the kernel reports it.
    pub fn has_carrier(&self, l: &Link) -> bool {
        if !l.up {
            return false;
        }
        match l.kind {
            LinkKind::Loopback | LinkKind::Dummy => true,
            LinkKind::Tap => false,
            LinkKind::Veth => self.peer_up(l),
            LinkKind::Bridge => {
                !l.carrier_known
                    || self.links.iter().any(|p| {
                        p.master.as_deref() == Some(l.name.as_str())
                            && p.kind != LinkKind::Bridge
                            && self.has_carrier(p)
                    })
            }
        }
    }

    pub(super) fn operstate(&self, l: &Link) -> &'static str {
        if !l.up {
            return "DOWN";
        }
        match l.kind {
            LinkKind::Loopback | LinkKind::Dummy => "UNKNOWN",
            LinkKind::Tap => "DOWN",
            LinkKind::Veth => {
                if self.peer_up(l) {
                    "UP"
                } else {
                    "LOWERLAYERDOWN"
                }
            }
            LinkKind::Bridge => {
                if !l.carrier_known {
                    "UNKNOWN"
                } else if self.has_carrier(l) {
                    "UP"
                } else {
                    "DOWN"
                }
            }
        }
    }

    /// Up and operationally usable (operstate UP or UNKNOWN): IPv6 is
    /// configured on such a link.
    pub(super) fn ready(&self, l: &Link) -> bool {
        l.up && matches!(self.operstate(l), "UP" | "UNKNOWN")
    }

    pub(super) fn flags(&self, l: &Link) -> Vec<&'static str> {
        let mut f = Vec::new();
        if l.up && !self.ready(l) {
            f.push("NO-CARRIER");
        }
        match l.kind {
            LinkKind::Loopback => f.push("LOOPBACK"),
            LinkKind::Bridge | LinkKind::Veth | LinkKind::Tap => {
                f.push("BROADCAST");
                if !l.nomulticast {
                    f.push("MULTICAST");
                }
                if l.noarp {
                    f.push("NOARP");
                }
            }
            LinkKind::Dummy => {
                f.push("BROADCAST");
                f.push("NOARP");
            }
        }
        if l.promisc {
            f.push("PROMISC");
        }
        if l.up {
            f.push("UP");
        }
        if self.has_carrier(l) {
            f.push("LOWER_UP");
        }
        if l.kind == LinkKind::Veth && !self.peer_up(l) {
            f.push("M-DOWN");
        }
        f
    }

    /// The qdisc name `ip link` shows when tc has not set one.
    pub fn default_qdisc(l: &Link) -> &'static str {
        if l.up || l.qdisc_attached {
            if l.kind == LinkKind::Tap {
                "pfifo_fast"
            } else {
                "noqueue"
            }
        } else {
            "noop"
        }
    }

    /// The link's name as `ip` prints it (`veth0@veth1` for a veth end).
    pub(super) fn display_name(l: &Link) -> String {
        match &l.peer {
            Some(p) => format!("{}@{p}", l.name),
            None => l.name.clone(),
        }
    }

    pub(super) fn alloc_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Insert an IPv6 address where the kernel puts it: before the first
    /// address of the same or a narrower scope (newest first per scope).
    pub(super) fn insert_v6(l: &mut Link, a: Addr) {
        let rank = a.v6_rank();
        let pos = l
            .addrs
            .iter()
            .position(|x| x.is_v6() && rank >= x.v6_rank())
            .unwrap_or(l.addrs.len());
        l.addrs.insert(pos, a);
    }

    /// Apply what the kernel does on its own after a change: a bridge
    /// whose MAC was not set follows its ports; a link that became ready
    /// gets IPv6 (link-local address, DAD done).
    pub fn settle(&mut self) {
        // Ports before bridges: a bridge gets carrier from its ports, so
        // its IPv6 comes up after theirs.
        let mut names: Vec<String> = self
            .links
            .iter()
            .filter(|l| l.kind != LinkKind::Bridge)
            .chain(self.links.iter().filter(|l| l.kind == LinkKind::Bridge))
            .map(|l| l.name.clone())
            .collect();
        names.dedup();
        for n in &names {
            // Addresses of an up link get their prefix route (oldest first).
            let pending = self.link(n).map_or(0, |l| {
                if l.up {
                    l.addrs.iter().filter(|a| a.is_v6() && a.seq == 0).count()
                } else {
                    0
                }
            });
            let seqs: Vec<u64> = (0..pending).map(|_| self.alloc_seq()).collect();
            if let Some(l) = self.link_mut(n) {
                let mut it = seqs.into_iter();
                for a in l.addrs.iter_mut().rev().filter(|a| a.is_v6() && a.seq == 0) {
                    a.seq = it.next().unwrap_or(0);
                }
            }
            let Some(l) = self.link(n) else { continue };
            if !l.up || l.v6_ready || !self.ready(l) || self.v6_disabled.contains(n) {
                continue;
            }
            let kind = l.kind;
            let mac = l.mac.clone();
            let ll_seq = self.alloc_seq();
            let Some(l) = self.link_mut(n) else { continue };
            l.v6_ready = true;
            let auto = if kind == LinkKind::Loopback {
                Some(("::1".to_string(), 128))
            } else if l.addrgenmode.is_some() {
                // none: no link-local; stable_secret/random: not simulated.
                None
            } else {
                eui64_link_local(&mac).map(|ll| (ll.to_string(), 64))
            };
            if let Some((local, prefixlen)) = auto {
                if !l.addrs.iter().any(|a| a.local == local) {
                    IpState::insert_v6(
                        l,
                        Addr {
                            local,
                            prefixlen,
                            broadcast: None,
                            seq: ll_seq,
                            label: None,
                            nodad: false,
                        },
                    );
                }
            }
        }
    }

    /// The kernel recomputes a bridge's carrier and (unless its MAC was
    /// set) its MAC when a port joins or leaves.
    pub(super) fn bridge_ports_changed(&mut self, br: &str) {
        let ports: Vec<[u8; 6]> = self
            .links
            .iter()
            .filter(|p| p.master.as_deref() == Some(br))
            .filter_map(|p| mac_bytes(&p.mac))
            .collect();
        let min = ports.iter().min().copied();
        if let Some(b) = self.link_mut(br) {
            b.carrier_known = true;
            if !b.mac_set {
                let m = min.unwrap_or([0; 6]);
                b.mac = m
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
            }
        }
    }

    /// Take a link down: IPv6 addresses and static routes go.
    pub(super) fn link_down(&mut self, name: &str) {
        self.neigh.retain(|n| n.dev != name);
        if let Some(l) = self.link_mut(name) {
            l.up = false;
            l.v6_ready = false;
            l.addrs.retain(|a| !a.is_v6());
        }
        self.routes.retain(|r| r.dev != name);
    }

    /// IPv6 was disabled on a link (`disable_ipv6=1`): its IPv6 addresses go.
    pub fn disable_v6(&mut self, name: &str) {
        if let Some(l) = self.link_mut(name) {
            l.v6_ready = false;
            l.addrs.retain(|a| !a.is_v6());
        }
        self.routes.retain(|r| !(r.dev == name && r.is_v6()));
    }

    pub(super) fn new_link(
        &mut self,
        name: &str,
        kind: LinkKind,
        mtu: Option<u32>,
        mac: Option<&str>,
    ) {
        let ifindex = self.next_ifindex;
        self.next_ifindex += 1;
        let gen = format!(
            "02:fa:4e:00:{:02x}:{:02x}",
            (ifindex >> 8) & 0xff,
            ifindex & 0xff
        );
        self.links.push(Link {
            ifindex,
            name: name.to_string(),
            kind,
            mtu: mtu.unwrap_or(1500),
            mac: mac.map(|m| m.to_ascii_lowercase()).unwrap_or(gen),
            up: false,
            master: None,
            addrs: Vec::new(),
            bridge: BTreeMap::new(),
            peer: None,
            mac_set: mac.is_some(),
            carrier_known: kind != LinkKind::Bridge || mac.is_some(),
            qdisc_attached: false,
            v6_ready: false,
            promisc: false,
            noarp: false,
            nomulticast: false,
            hidden_nets: Vec::new(),
            addrgenmode: None,
            txqlen: None,
        });
    }

    pub(super) fn delete_link(&mut self, name: &str) -> Output {
        let peer = self.link(name).and_then(|l| l.peer.clone());
        let master = self.link(name).and_then(|l| l.master.clone());
        let mut gone = vec![name.to_string()];
        gone.extend(peer);
        self.links.retain(|l| !gone.contains(&l.name));
        let mut orphaned = false;
        for l in &mut self.links {
            if l.master
                .as_deref()
                .is_some_and(|m| gone.iter().any(|g| g == m))
            {
                l.master = None;
                orphaned = true;
            }
        }
        let _ = orphaned;
        self.routes.retain(|r| !gone.contains(&r.dev));
        self.neigh.retain(|n| !gone.contains(&n.dev));
        if let Some(m) = master {
            self.bridge_ports_changed(&m);
        }
        Output::default()
    }

    pub(super) fn select(&self, f: &LinkFilter) -> Result<Vec<&Link>, Output> {
        if let Some(d) = f.dev {
            if self.link(d).is_none() {
                return Err(fail(1, format!("Device \"{d}\" does not exist.")));
            }
        }
        if let Some(m) = f.master {
            if self.link(m).is_none() {
                return Err(fail(1, format!("Device \"{m}\" does not exist.")));
            }
        }
        Ok(self
            .links
            .iter()
            .filter(|l| f.dev.is_none_or(|d| l.name == d))
            .filter(|l| f.master.is_none_or(|m| l.master.as_deref() == Some(m)))
            .filter(|l| f.kind.is_none_or(|k| l.kind.name() == k))
            .filter(|l| !f.up || l.up)
            .collect())
    }

    /// The main table: static routes plus the kernel's connected routes,
    /// in the kernel's order (by destination, longer prefix first, then
    /// metric, then age).
    pub(super) fn main_routes(&self, v6: bool) -> Vec<RouteView> {
        let mut out: Vec<RouteView> = Vec::new();
        for (n, r) in self.routes.iter().enumerate() {
            if r.is_v6() != v6 {
                continue;
            }
            let down = self.link(&r.dev).is_none_or(|l| !self.has_carrier(l));
            out.push(RouteView {
                kind: None,
                dst: r.dst.clone(),
                via: r.via.clone(),
                dev: r.dev.clone(),
                kernel: false,
                scope: if r.via.is_none() && !v6 {
                    Some("link")
                } else {
                    None
                },
                src: None,
                metric: if v6 {
                    Some(r.metric.unwrap_or(1024))
                } else {
                    r.metric
                },
                linkdown: down,
                v6,
                seq: 1_000_000 + n as u64,
            });
        }
        for l in &self.links {
            if !l.up || l.kind == LinkKind::Loopback {
                continue;
            }
            let down = !self.has_carrier(l);
            let mut seen: Vec<String> = Vec::new();
            for a in l.addrs.iter().filter(|a| a.is_v6() == v6) {
                let Some(ip) = a.ip() else { continue };
                if !v6 && a.prefixlen == 32 {
                    continue;
                }
                // A /128 address has a host route, printed without a length.
                let net = if v6 && a.prefixlen == 128 {
                    a.local.clone()
                } else {
                    network_of(ip, a.prefixlen)
                };
                if seen.contains(&net) || l.hidden_nets.contains(&net) {
                    continue;
                }
                seen.push(net.clone());
                out.push(RouteView {
                    kind: None,
                    dst: net,
                    via: None,
                    dev: l.name.clone(),
                    kernel: true,
                    scope: if v6 { None } else { Some("link") },
                    src: if v6 { None } else { Some(a.local.clone()) },
                    metric: if v6 { Some(256) } else { None },
                    linkdown: down,
                    v6,
                    seq: a.seq,
                });
            }
        }
        // The IPv6 default route is listed last (it lives at the root of
        // the kernel's fib6 tree), the IPv4 one first.
        out.sort_by_key(|r| {
            let (net, len) = dst_key(&r.dst);
            let last = v6 && r.dst == "default";
            (
                last,
                net,
                std::cmp::Reverse(len),
                r.metric.unwrap_or(0),
                r.seq,
            )
        });
        out
    }

    /// The IPv4 local table: a local route for each address (and lo's
    /// network), a broadcast route while the link is up.
    pub(super) fn local_routes(&self) -> Vec<RouteView> {
        let mut out: Vec<(u32, u8, RouteView)> = Vec::new();
        for l in &self.links {
            let listed = Self::listed_addrs(l, Some(4));
            for (a, primary) in &listed {
                let Some(IpAddr::V4(ip)) = a.ip() else {
                    continue;
                };
                // A secondary address's routes name the primary as source.
                let src = if *primary {
                    a.local.clone()
                } else {
                    listed
                        .iter()
                        .find(|(p, pr)| {
                            *pr && p.ip().map(|x| network_of(x, p.prefixlen))
                                == Some(network_of(IpAddr::V4(ip), a.prefixlen))
                        })
                        .map_or(a.local.clone(), |(p, _)| p.local.clone())
                };
                let mk = |kind: &'static str, dst: String, scope: &'static str| RouteView {
                    kind: Some(kind),
                    dst,
                    via: None,
                    dev: l.name.clone(),
                    kernel: true,
                    scope: Some(scope),
                    src: Some(src.clone()),
                    metric: None,
                    linkdown: false,
                    v6: false,
                    seq: 0,
                };
                let bits = u32::from(ip);
                let host = if a.prefixlen == 0 {
                    u32::MAX
                } else {
                    u32::MAX >> a.prefixlen
                };
                if l.kind == LinkKind::Loopback {
                    let net = network_of(IpAddr::V4(ip), a.prefixlen);
                    out.push((bits & !host, a.prefixlen, mk("local", net, "host")));
                }
                out.push((bits, 32, mk("local", a.local.clone(), "host")));
                if l.up && a.prefixlen < 31 {
                    let b = std::net::Ipv4Addr::from(bits | host);
                    out.push((u32::from(b), 32, mk("broadcast", b.to_string(), "link")));
                }
            }
        }
        out.sort_by_key(|(k, len, _)| (*k, std::cmp::Reverse(*len)));
        out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        out.into_iter().map(|(_, _, r)| r).collect()
    }

    /// The up link whose connected network contains `gw`.
    pub(super) fn dev_for(&self, gw: &str) -> Option<String> {
        let gw: IpAddr = gw.parse().ok()?;
        for l in self.links.iter().filter(|l| l.up) {
            for a in &l.addrs {
                if let Some(ip) = a.ip() {
                    if ip.is_ipv4() == gw.is_ipv4()
                        && network_of(ip, a.prefixlen) == network_of(gw, a.prefixlen)
                    {
                        return Some(l.name.clone());
                    }
                }
            }
        }
        None
    }
}
