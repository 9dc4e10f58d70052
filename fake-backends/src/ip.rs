//! Simulated `ip` (iproute2 6.1): links (loopback, bridge, dummy), their
//! MTU, MAC address, up/down state and bridge membership; IPv4/IPv6
//! addresses; static routes plus the kernel's connected routes.
//!
//! Messages and exit statuses were taken from the real tool in a fresh
//! network namespace. One deliberate difference: the reference kernel has no
//! `dummy` module (so `ip link add ... type dummy` fails there); the
//! simulator behaves like a kernel that has it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use virtnet_core::runner::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Loopback,
    Bridge,
    Dummy,
}

/// One interface address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addr {
    /// The address as given (no prefix), e.g. `192.168.122.1` or `2001:db8::1`.
    pub local: String,
    pub prefixlen: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<String>,
}

impl Addr {
    fn ip(&self) -> Option<IpAddr> {
        self.local.parse().ok()
    }
    fn is_v6(&self) -> bool {
        self.local.contains(':')
    }
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
}

/// Links, addresses and routes of one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpState {
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
    pub next_ifindex: u32,
}

impl Default for IpState {
    fn default() -> Self {
        IpState::new()
    }
}

fn fail(status: i32, msg: impl Into<String>) -> Output {
    let mut m = msg.into();
    m.push('\n');
    Output::failed(status, m)
}

fn no_dev(name: &str) -> Output {
    fail(1, format!("Cannot find device \"{name}\""))
}

fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Parse `ADDR[/LEN]`; the default length is the full address length.
fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = a.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match l {
        Some(l) => l.parse::<u8>().ok().filter(|x| *x <= max)?,
        None => max,
    };
    Some((ip, len))
}

fn network_of(ip: IpAddr, len: u8) -> String {
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
            }],
            routes: Vec::new(),
            next_ifindex: 2,
        }
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    fn link_mut(&mut self, name: &str) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.name == name)
    }

    fn has_carrier(&self, l: &Link) -> bool {
        match l.kind {
            LinkKind::Loopback | LinkKind::Dummy => l.up,
            LinkKind::Bridge => {
                l.up && self
                    .links
                    .iter()
                    .any(|p| p.master.as_deref() == Some(l.name.as_str()) && p.up)
            }
        }
    }

    fn flags(&self, l: &Link) -> Vec<&'static str> {
        let mut f = Vec::new();
        let carrier = self.has_carrier(l);
        if l.up && !carrier {
            f.push("NO-CARRIER");
        }
        match l.kind {
            LinkKind::Loopback => f.push("LOOPBACK"),
            LinkKind::Bridge => {
                f.push("BROADCAST");
                f.push("MULTICAST");
            }
            LinkKind::Dummy => {
                f.push("BROADCAST");
                f.push("NOARP");
            }
        }
        if l.up {
            f.push("UP");
        }
        if carrier {
            f.push("LOWER_UP");
        }
        f
    }

    fn operstate(&self, l: &Link) -> &'static str {
        if !l.up {
            "DOWN"
        } else {
            match l.kind {
                LinkKind::Loopback | LinkKind::Dummy => "UNKNOWN",
                LinkKind::Bridge => {
                    if self.has_carrier(l) {
                        "UP"
                    } else {
                        "DOWN"
                    }
                }
            }
        }
    }

    /// The qdisc name `ip link` shows.
    pub fn default_qdisc(l: &Link) -> &'static str {
        if l.up {
            "noqueue"
        } else {
            "noop"
        }
    }

    /// Run `ip ARGS...`.
    pub fn exec(&mut self, args: &[String]) -> Output {
        let mut json = false;
        let mut brief = false;
        let mut family: Option<u8> = None;
        let mut i = 0;
        while i < args.len() && args[i].starts_with('-') {
            match args[i].as_str() {
                "-j" | "-json" | "--json" => json = true,
                "-br" | "-brief" | "--brief" => brief = true,
                "-4" => family = Some(4),
                "-6" => family = Some(6),
                "-d" | "-details" | "-s" | "-stats" | "-p" | "-pretty" => {}
                o => return fail(255, format!("Option \"{o}\" is unknown, try \"ip -help\".")),
            }
            i += 1;
        }
        let rest = &args[i..];
        let Some(obj) = rest.first() else {
            return fail(255, "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }");
        };
        let sub: Vec<&str> = rest[1..].iter().map(String::as_str).collect();
        match obj.as_str() {
            "link" | "l" | "li" => self.link_cmd(&sub, json, brief),
            "addr" | "address" | "a" => self.addr_cmd(&sub, json, brief, family),
            "route" | "r" | "ro" => self.route_cmd(&sub, family),
            o => fail(1, format!("Object \"{o}\" is unknown, try \"ip help\".")),
        }
    }

    fn link_cmd(&mut self, sub: &[&str], json: bool, brief: bool) -> Output {
        let verb = sub.first().copied().unwrap_or("show");
        let rest = if sub.is_empty() { &[][..] } else { &sub[1..] };
        match verb {
            "add" => self.link_add(rest),
            "del" | "delete" => {
                let mut name = None;
                let mut i = 0;
                while i < rest.len() {
                    match rest[i] {
                        "dev" | "name" => {
                            name = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "type" => i += 2,
                        n => {
                            name = Some(n);
                            i += 1;
                        }
                    }
                }
                let Some(name) = name else {
                    return fail(255, "Not enough information: \"dev\" argument is required.");
                };
                if self.link(name).is_none() {
                    return no_dev(name);
                }
                if name == "lo" {
                    return fail(2, "RTNETLINK answers: Operation not supported");
                }
                self.links.retain(|l| l.name != name);
                for l in &mut self.links {
                    if l.master.as_deref() == Some(name) {
                        l.master = None;
                    }
                }
                self.routes.retain(|r| r.dev != name);
                Output::default()
            }
            "set" => self.link_set(rest),
            "show" | "list" | "ls" | "lst" | "sh" => {
                let dev = parse_dev_arg(rest);
                let sel: Vec<&Link> = match dev {
                    Some(d) => match self.link(d) {
                        Some(l) => vec![l],
                        None => return fail(1, format!("Device \"{d}\" does not exist.")),
                    },
                    None => self.links.iter().collect(),
                };
                Output::ok(self.render_links(&sel, json, brief, false))
            }
            v => fail(
                255,
                format!("Command \"{v}\" is unknown, try \"ip link help\"."),
            ),
        }
    }

    fn link_add(&mut self, rest: &[&str]) -> Output {
        let mut name: Option<&str> = None;
        let mut kind: Option<&str> = None;
        let mut mtu: Option<u32> = None;
        let mut mac: Option<&str> = None;
        let mut type_args: &[&str] = &[];
        let mut i = 0;
        while i < rest.len() {
            let v = rest.get(i + 1).copied();
            match rest[i] {
                "name" | "dev" => {
                    name = v;
                    i += 2;
                }
                "type" => {
                    kind = v;
                    type_args = &rest[(i + 2).min(rest.len())..];
                    i = rest.len();
                }
                "mtu" => {
                    match v.and_then(|x| x.parse().ok()) {
                        Some(m) => mtu = Some(m),
                        None => {
                            return fail(
                                255,
                                format!(
                                    "Error: argument \"{}\" is wrong: Invalid \"mtu\" value",
                                    v.unwrap_or("")
                                ),
                            )
                        }
                    }
                    i += 2;
                }
                "address" => {
                    mac = v;
                    i += 2;
                }
                n => {
                    name = Some(n);
                    i += 1;
                }
            }
        }
        let Some(name) = name else {
            return fail(2, "Not enough information: \"dev\" argument is required.");
        };
        let kind = match kind {
            Some("bridge") => LinkKind::Bridge,
            Some("dummy") => LinkKind::Dummy,
            Some(_) => return fail(2, "Error: Unknown device type."),
            None => return fail(2, "Not enough information: \"type\" argument is required."),
        };
        if name.len() > 15 {
            return fail(
                255,
                format!("Error: argument \"{name}\" is wrong: \"name\" not a valid ifname"),
            );
        }
        if let Some(m) = mac {
            if !valid_mac(m) {
                return fail(255, format!("\"{m}\" is invalid lladdr."));
            }
        }
        let bridge_opts = if kind == LinkKind::Bridge {
            match parse_bridge_opts(type_args, false) {
                Ok(o) => o,
                Err(out) => return out,
            }
        } else {
            BTreeMap::new()
        };
        if self.link(name).is_some() {
            return fail(2, "RTNETLINK answers: File exists");
        }
        let ifindex = self.next_ifindex;
        self.next_ifindex += 1;
        let mac = mac.map(|m| m.to_ascii_lowercase()).unwrap_or_else(|| {
            format!(
                "02:fa:4e:00:{:02x}:{:02x}",
                (ifindex >> 8) & 0xff,
                ifindex & 0xff
            )
        });
        self.links.push(Link {
            ifindex,
            name: name.to_string(),
            kind,
            mtu: mtu.unwrap_or(1500),
            mac,
            up: false,
            master: None,
            addrs: Vec::new(),
            bridge: bridge_opts,
        });
        Output::default()
    }

    fn link_set(&mut self, rest: &[&str]) -> Output {
        let mut name: Option<&str> = None;
        let mut ops: Vec<(&str, Option<&str>)> = Vec::new();
        let mut type_args: &[&str] = &[];
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                "dev" => {
                    name = rest.get(i + 1).copied();
                    i += 2;
                }
                "up" | "down" | "nomaster" => {
                    ops.push((rest[i], None));
                    i += 1;
                }
                "type" => {
                    if rest.get(i + 1).copied() != Some("bridge") {
                        return fail(2, "RTNETLINK answers: Operation not supported");
                    }
                    type_args = &rest[(i + 2).min(rest.len())..];
                    i = rest.len();
                }
                "mtu" | "address" | "master" | "name" => {
                    let Some(v) = rest.get(i + 1).copied() else {
                        return fail(255, "Command line is not complete. Try option \"help\"");
                    };
                    ops.push((rest[i], Some(v)));
                    i += 2;
                }
                n if name.is_none() => {
                    name = Some(n);
                    i += 1;
                }
                n => {
                    return fail(
                        255,
                        format!("Error: either \"dev\" is duplicate, or \"{n}\" is a garbage."),
                    )
                }
            }
        }
        let Some(name) = name else {
            return fail(255, "Not enough information: \"dev\" argument is required.");
        };
        if self.link(name).is_none() {
            return no_dev(name);
        }
        let bridge_update = if type_args.is_empty() {
            None
        } else {
            let stp_on = self
                .link(name)
                .and_then(|l| l.bridge.get("stp_state").copied())
                .unwrap_or(0)
                != 0;
            match self.link(name) {
                Some(l) if l.kind != LinkKind::Bridge => {
                    return fail(2, "RTNETLINK answers: Operation not supported")
                }
                _ => {}
            }
            match parse_bridge_opts(type_args, stp_on) {
                Ok(o) => Some(o),
                Err(out) => return out,
            }
        };
        // Validate everything first so a failed command changes nothing.
        for (op, v) in &ops {
            match (*op, v) {
                ("mtu", Some(v)) => match v.parse::<u32>() {
                    Ok(m) if (68..=65535).contains(&m) => {}
                    Ok(_) => return fail(2, "Error: mtu less than device minimum."),
                    Err(_) => {
                        return fail(
                            255,
                            format!("Error: argument \"{v}\" is wrong: Invalid \"mtu\" value"),
                        )
                    }
                },
                ("address", Some(v)) if !valid_mac(v) => {
                    return fail(255, format!("\"{v}\" is invalid lladdr."))
                }
                ("master", Some(v)) => match self.link(v) {
                    None => return no_dev(v),
                    Some(l) if l.kind != LinkKind::Bridge => {
                        return fail(2, "RTNETLINK answers: Operation not supported")
                    }
                    _ => {}
                },
                ("name", Some(v)) if self.link(v).is_some() => {
                    return fail(2, "RTNETLINK answers: File exists")
                }
                _ => {}
            }
        }
        if let Some(upd) = bridge_update {
            if let Some(l) = self.link_mut(name) {
                l.bridge.extend(upd);
            }
        }
        let mut cur = name.to_string();
        for (op, v) in ops {
            let v = v.unwrap_or("");
            if op == "name" {
                let new = v.to_string();
                for l in &mut self.links {
                    if l.master.as_deref() == Some(cur.as_str()) {
                        l.master = Some(new.clone());
                    }
                }
                for r in &mut self.routes {
                    if r.dev == cur {
                        r.dev = new.clone();
                    }
                }
            }
            let Some(l) = self.link_mut(&cur) else { break };
            match op {
                "up" => l.up = true,
                "down" => l.up = false,
                "nomaster" => l.master = None,
                "mtu" => l.mtu = v.parse().unwrap_or(l.mtu),
                "address" => l.mac = v.to_ascii_lowercase(),
                "master" => l.master = Some(v.to_string()),
                "name" => {
                    l.name = v.to_string();
                    cur = v.to_string();
                }
                _ => {}
            }
        }
        Output::default()
    }

    fn addr_cmd(&mut self, sub: &[&str], json: bool, brief: bool, family: Option<u8>) -> Output {
        let verb = sub.first().copied().unwrap_or("show");
        let rest = if sub.is_empty() { &[][..] } else { &sub[1..] };
        match verb {
            "add" | "del" | "delete" => {
                let mut addr: Option<&str> = None;
                let mut dev: Option<&str> = None;
                let mut brd: Option<&str> = None;
                let mut i = 0;
                while i < rest.len() {
                    match rest[i] {
                        "dev" => {
                            dev = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "broadcast" | "brd" => {
                            brd = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "local" => {
                            addr = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "scope" | "label" | "valid_lft" | "preferred_lft" | "peer" => i += 2,
                        "noprefixroute" | "nodad" => i += 1,
                        a => {
                            addr = Some(a);
                            i += 1;
                        }
                    }
                }
                let Some(dev) = dev else {
                    return fail(1, "Not enough information: \"dev\" argument is required.");
                };
                let Some(addr) = addr else {
                    return fail(1, "Not enough information: \"local\" argument is required.");
                };
                let Some((ip, len)) = parse_prefix(addr) else {
                    return fail(
                        1,
                        format!("Error: any valid prefix is expected rather than \"{addr}\"."),
                    );
                };
                if self.link(dev).is_none() {
                    return no_dev(dev);
                }
                let fam = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
                let Some(l) = self.link_mut(dev) else {
                    return no_dev(dev);
                };
                let pos = l
                    .addrs
                    .iter()
                    .position(|a| a.ip() == Some(ip) && a.prefixlen == len);
                if verb == "add" {
                    if l.addrs.iter().any(|a| a.ip() == Some(ip)) {
                        return fail(2, format!("Error: {fam}: Address already assigned."));
                    }
                    l.addrs.push(Addr {
                        local: ip.to_string(),
                        prefixlen: len,
                        broadcast: brd.map(str::to_string),
                    });
                } else {
                    match pos {
                        Some(p) => {
                            l.addrs.remove(p);
                        }
                        None => {
                            return fail(
                                2,
                                if ip.is_ipv4() {
                                    "Error: ipv4: Address not found.".to_string()
                                } else {
                                    "RTNETLINK answers: Cannot assign requested address".to_string()
                                },
                            )
                        }
                    }
                }
                Output::default()
            }
            "show" | "list" | "ls" | "sh" => {
                let dev = parse_dev_arg(rest);
                let sel: Vec<&Link> = match dev {
                    Some(d) => match self.link(d) {
                        Some(l) => vec![l],
                        None => return fail(1, format!("Device \"{d}\" does not exist.")),
                    },
                    None => self.links.iter().collect(),
                };
                let _ = family;
                Output::ok(self.render_links(&sel, json, brief, true))
            }
            v => fail(
                255,
                format!("Command \"{v}\" is unknown, try \"ip address help\"."),
            ),
        }
    }

    /// Connected routes the kernel adds for each address of an up link.
    fn kernel_routes(&self, v6: bool) -> Vec<String> {
        let mut out = Vec::new();
        for l in &self.links {
            if !l.up || l.kind == LinkKind::Loopback {
                continue;
            }
            let down = if self.has_carrier(l) { "" } else { " linkdown" };
            for a in &l.addrs {
                if a.is_v6() != v6 {
                    continue;
                }
                let Some(ip) = a.ip() else { continue };
                if v6 {
                    out.push(format!(
                        "{} dev {} proto kernel metric 256{down} pref medium",
                        network_of(ip, a.prefixlen),
                        l.name
                    ));
                } else {
                    out.push(format!(
                        "{} dev {} proto kernel scope link src {}{down} ",
                        network_of(ip, a.prefixlen),
                        l.name,
                        a.local
                    ));
                }
            }
        }
        out
    }

    fn route_cmd(&mut self, sub: &[&str], family: Option<u8>) -> Output {
        let verb = sub.first().copied().unwrap_or("show");
        let rest = if sub.is_empty() { &[][..] } else { &sub[1..] };
        match verb {
            "add" | "del" | "delete" | "replace" => {
                let mut dst: Option<&str> = None;
                let mut via: Option<&str> = None;
                let mut dev: Option<&str> = None;
                let mut metric: Option<u32> = None;
                let mut i = 0;
                while i < rest.len() {
                    match rest[i] {
                        "via" => {
                            via = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "dev" => {
                            dev = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "metric" | "priority" => {
                            metric = rest.get(i + 1).and_then(|m| m.parse().ok());
                            i += 2;
                        }
                        "to" => {
                            dst = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "proto" | "scope" | "table" | "src" => i += 2,
                        d => {
                            dst = Some(d);
                            i += 1;
                        }
                    }
                }
                let Some(dst) = dst else {
                    return fail(
                        1,
                        "Error: either \"to\" is a duplicate, or \"\" is garbage.",
                    );
                };
                let dst_c = if dst == "default" {
                    "default".to_string()
                } else {
                    match parse_prefix(dst) {
                        Some((ip, len)) => network_of(ip, len),
                        None => {
                            return fail(
                                1,
                                format!(
                                    "Error: any valid prefix is expected rather than \"{dst}\"."
                                ),
                            )
                        }
                    }
                };
                if verb == "add" || verb == "replace" {
                    let dev = match (dev, via) {
                        (Some(d), _) => {
                            if self.link(d).is_none() {
                                return no_dev(d);
                            }
                            d.to_string()
                        }
                        (None, Some(gw)) => match self.dev_for(gw) {
                            Some(d) => d,
                            None => return fail(2, "Error: Nexthop has invalid gateway."),
                        },
                        (None, None) => return fail(2, "Error: Device for nexthop is not up."),
                    };
                    let exists = self
                        .routes
                        .iter()
                        .position(|r| r.dst == dst_c && r.metric == metric);
                    let route = Route {
                        dst: dst_c,
                        via: via.map(str::to_string),
                        dev,
                        metric,
                    };
                    match (verb, exists) {
                        ("add", Some(_)) => return fail(2, "RTNETLINK answers: File exists"),
                        (_, Some(p)) => self.routes[p] = route,
                        (_, None) => self.routes.push(route),
                    }
                    Output::default()
                } else {
                    match self.routes.iter().position(|r| r.dst == dst_c) {
                        Some(p) => {
                            self.routes.remove(p);
                            Output::default()
                        }
                        None => fail(2, "RTNETLINK answers: No such process"),
                    }
                }
            }
            "show" | "list" | "ls" => {
                let v6 = family == Some(6);
                let mut lines: Vec<String> = Vec::new();
                for r in &self.routes {
                    if r.dst.contains(':') != v6 && r.dst != "default" {
                        continue;
                    }
                    let down = self
                        .link(&r.dev)
                        .map(|l| !self.has_carrier(l))
                        .unwrap_or(false);
                    let mut s = r.dst.clone();
                    if let Some(v) = &r.via {
                        s.push_str(&format!(" via {v}"));
                    }
                    s.push_str(&format!(" dev {}", r.dev));
                    if let Some(m) = r.metric {
                        s.push_str(&format!(" metric {m}"));
                    }
                    if down {
                        s.push_str(" linkdown");
                    }
                    s.push(' ');
                    lines.push(s);
                }
                lines.extend(self.kernel_routes(v6));
                let mut out = String::new();
                for l in lines {
                    out.push_str(&l);
                    out.push('\n');
                }
                Output::ok(out)
            }
            v => fail(
                255,
                format!("Command \"{v}\" is unknown, try \"ip route help\"."),
            ),
        }
    }

    /// The link whose connected network contains `gw`.
    fn dev_for(&self, gw: &str) -> Option<String> {
        let gw: IpAddr = gw.parse().ok()?;
        for l in &self.links {
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

    fn render_links(&self, sel: &[&Link], json: bool, brief: bool, with_addrs: bool) -> String {
        if json {
            let arr: Vec<String> = sel.iter().map(|l| self.link_json(l, with_addrs)).collect();
            return format!("[{}]\n", arr.join(","));
        }
        let mut out = String::new();
        for l in sel {
            if brief {
                let name = match &l.master {
                    Some(_) | None => l.name.clone(),
                };
                if with_addrs {
                    let addrs: String = l
                        .addrs
                        .iter()
                        .map(|a| format!("{}/{} ", a.local, a.prefixlen))
                        .collect();
                    out.push_str(&format!("{name:<16} {:<14} {addrs}\n", self.operstate(l)));
                } else {
                    out.push_str(&format!(
                        "{name:<16} {:<14} {} <{}> \n",
                        self.operstate(l),
                        l.mac,
                        self.flags(l).join(",")
                    ));
                }
                continue;
            }
            let master = l
                .master
                .as_ref()
                .map(|m| format!(" master {m}"))
                .unwrap_or_default();
            let mode = if with_addrs { "" } else { " mode DEFAULT" };
            out.push_str(&format!(
                "{}: {}: <{}> mtu {} qdisc {}{master} state {}{mode} group default qlen 1000\n",
                l.ifindex,
                l.name,
                self.flags(l).join(","),
                l.mtu,
                Self::default_qdisc(l),
                self.operstate(l)
            ));
            let lt = if l.kind == LinkKind::Loopback {
                "loopback"
            } else {
                "ether"
            };
            let brd = if l.kind == LinkKind::Loopback {
                "00:00:00:00:00:00"
            } else {
                "ff:ff:ff:ff:ff:ff"
            };
            out.push_str(&format!("    link/{lt} {} brd {brd}\n", l.mac));
            if with_addrs {
                for a in &l.addrs {
                    if a.is_v6() {
                        out.push_str(&format!(
                            "    inet6 {}/{} scope global \n       valid_lft forever preferred_lft forever\n",
                            a.local, a.prefixlen
                        ));
                    } else {
                        let brd = a
                            .broadcast
                            .as_ref()
                            .map(|b| format!(" brd {b}"))
                            .unwrap_or_default();
                        out.push_str(&format!(
                            "    inet {}/{}{brd} scope global {}\n       valid_lft forever preferred_lft forever\n",
                            a.local, a.prefixlen, l.name
                        ));
                    }
                }
            }
        }
        out
    }

    fn link_json(&self, l: &Link, with_addrs: bool) -> String {
        use serde_json::json;
        let mut m: Vec<(&str, serde_json::Value)> = vec![
            ("ifindex", json!(l.ifindex)),
            ("ifname", json!(l.name)),
            ("flags", json!(self.flags(l))),
            ("mtu", json!(l.mtu)),
            ("qdisc", json!(Self::default_qdisc(l))),
        ];
        if let Some(ms) = &l.master {
            m.push(("master", json!(ms)));
        }
        m.push(("operstate", json!(self.operstate(l))));
        if !with_addrs {
            m.push(("linkmode", json!("DEFAULT")));
        }
        m.push(("group", json!("default")));
        m.push(("txqlen", json!(1000)));
        let lt = if l.kind == LinkKind::Loopback {
            "loopback"
        } else {
            "ether"
        };
        m.push(("link_type", json!(lt)));
        m.push(("address", json!(l.mac)));
        let brd = if l.kind == LinkKind::Loopback {
            "00:00:00:00:00:00"
        } else {
            "ff:ff:ff:ff:ff:ff"
        };
        m.push(("broadcast", json!(brd)));
        let mut text = ordered_json(&m);
        if with_addrs {
            let infos: Vec<String> = l
                .addrs
                .iter()
                .map(|a| {
                    let mut am: Vec<(&str, serde_json::Value)> = vec![
                        ("family", json!(if a.is_v6() { "inet6" } else { "inet" })),
                        ("local", json!(a.local)),
                        ("prefixlen", json!(a.prefixlen)),
                    ];
                    if let Some(b) = &a.broadcast {
                        am.push(("broadcast", json!(b)));
                    }
                    am.push(("scope", json!("global")));
                    if !a.is_v6() {
                        am.push(("label", json!(l.name)));
                    }
                    am.push(("valid_life_time", json!(4294967295u64)));
                    am.push(("preferred_life_time", json!(4294967295u64)));
                    ordered_json(&am)
                })
                .collect();
            text.pop();
            text.push_str(&format!(",\"addr_info\":[{}]}}", infos.join(",")));
        }
        text
    }

    /// `ip -br link` plus addresses, one line per link, for state dumps.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for l in &self.links {
            let addrs: Vec<String> = l
                .addrs
                .iter()
                .map(|a| format!("{}/{}", a.local, a.prefixlen))
                .collect();
            let kind = match l.kind {
                LinkKind::Loopback => "loopback",
                LinkKind::Bridge => "bridge",
                LinkKind::Dummy => "dummy",
            };
            let mut master = l
                .master
                .as_ref()
                .map(|m| format!(" master {m}"))
                .unwrap_or_default();
            for (k, v) in &l.bridge {
                master.push_str(&format!(" {k} {v}"));
            }
            out.push_str(&format!(
                "{:<16} {:<14} {} <{}> mtu {} {kind}{master} {}\n",
                l.name,
                self.operstate(l),
                l.mac,
                self.flags(l).join(","),
                l.mtu,
                addrs.join(" ")
            ));
        }
        for r in &self.routes {
            let via = r
                .via
                .as_ref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default();
            out.push_str(&format!("route {}{via} dev {}\n", r.dst, r.dev));
        }
        out.lines().map(|l| format!("{}\n", l.trim_end())).collect()
    }
}

fn parse_dev_arg<'a>(rest: &[&'a str]) -> Option<&'a str> {
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "dev" => return rest.get(i + 1).copied(),
            "up" | "scope" | "type" => i += if rest[i] == "up" { 1 } else { 2 },
            d => return Some(d),
        }
    }
    None
}

/// A JSON object with keys in the given order (iproute2's order).
fn ordered_json(pairs: &[(&str, serde_json::Value)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::Value::from(*k), v))
        .collect();
    format!("{{{}}}", body.join(","))
}

const BRIDGE_KEYS: &[&str] = &[
    "forward_delay",
    "hello_time",
    "max_age",
    "ageing_time",
    "stp_state",
    "priority",
    "group_fwd_mask",
    "no_linklocal_learn",
    "vlan_filtering",
    "vlan_default_pvid",
    "vlan_stats_enabled",
    "vlan_stats_per_port",
    "mcast_snooping",
    "mcast_vlan_snooping",
    "mcast_router",
    "mcast_query_use_ifaddr",
    "mcast_querier",
    "mcast_hash_elasticity",
    "mcast_hash_max",
    "mcast_last_member_count",
    "mcast_startup_query_count",
    "mcast_last_member_interval",
    "mcast_membership_interval",
    "mcast_querier_interval",
    "mcast_query_interval",
    "mcast_query_response_interval",
    "mcast_startup_query_interval",
    "mcast_stats_enabled",
    "mcast_igmp_version",
    "mcast_mld_version",
    "nf_call_iptables",
    "nf_call_ip6tables",
    "nf_call_arptables",
];

const BRIDGE_USAGE: &str = r#"Usage: ... bridge [ fdb_flush ]
		  [ forward_delay FORWARD_DELAY ]
		  [ hello_time HELLO_TIME ]
		  [ max_age MAX_AGE ]
		  [ ageing_time AGEING_TIME ]
		  [ stp_state STP_STATE ]
		  [ priority PRIORITY ]
		  [ group_fwd_mask MASK ]
		  [ group_address ADDRESS ]
		  [ no_linklocal_learn NO_LINKLOCAL_LEARN ]
		  [ vlan_filtering VLAN_FILTERING ]
		  [ vlan_protocol VLAN_PROTOCOL ]
		  [ vlan_default_pvid VLAN_DEFAULT_PVID ]
		  [ vlan_stats_enabled VLAN_STATS_ENABLED ]
		  [ vlan_stats_per_port VLAN_STATS_PER_PORT ]
		  [ mcast_snooping MULTICAST_SNOOPING ]
		  [ mcast_vlan_snooping MULTICAST_VLAN_SNOOPING ]
		  [ mcast_router MULTICAST_ROUTER ]
		  [ mcast_query_use_ifaddr MCAST_QUERY_USE_IFADDR ]
		  [ mcast_querier MULTICAST_QUERIER ]
		  [ mcast_hash_elasticity HASH_ELASTICITY ]
		  [ mcast_hash_max HASH_MAX ]
		  [ mcast_last_member_count LAST_MEMBER_COUNT ]
		  [ mcast_startup_query_count STARTUP_QUERY_COUNT ]
		  [ mcast_last_member_interval LAST_MEMBER_INTERVAL ]
		  [ mcast_membership_interval MEMBERSHIP_INTERVAL ]
		  [ mcast_querier_interval QUERIER_INTERVAL ]
		  [ mcast_query_interval QUERY_INTERVAL ]
		  [ mcast_query_response_interval QUERY_RESPONSE_INTERVAL ]
		  [ mcast_startup_query_interval STARTUP_QUERY_INTERVAL ]
		  [ mcast_stats_enabled MCAST_STATS_ENABLED ]
		  [ mcast_igmp_version IGMP_VERSION ]
		  [ mcast_mld_version MLD_VERSION ]
		  [ nf_call_iptables NF_CALL_IPTABLES ]
		  [ nf_call_ip6tables NF_CALL_IP6TABLES ]
		  [ nf_call_arptables NF_CALL_ARPTABLES ]

Where: VLAN_PROTOCOL := { 802.1Q | 802.1ad }
"#;

/// Parse `KEY VALUE...` after `type bridge`. `stp_on` is the bridge's STP
/// state before the command: with STP on, the kernel only accepts a
/// forward delay of 2-30 s (200-3000 in iproute2's units).
fn parse_bridge_opts(args: &[&str], stp_on: bool) -> Result<BTreeMap<String, u64>, Output> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let k = args[i];
        if !BRIDGE_KEYS.contains(&k) {
            return Err(Output::failed(
                1,
                format!("bridge: unknown command \"{k}\"?\n{BRIDGE_USAGE}"),
            ));
        }
        let Some(v) = args.get(i + 1) else {
            return Err(fail(
                255,
                "Command line is not complete. Try option \"help\"",
            ));
        };
        let Ok(n) = v.parse::<u64>() else {
            return Err(fail(
                255,
                format!("Error: argument \"{v}\" is wrong: invalid {k}"),
            ));
        };
        out.insert(k.to_string(), n);
        i += 2;
    }
    if let Some(fd) = out.get("forward_delay") {
        if stp_on && !(200..=3000).contains(fd) {
            return Err(fail(2, "RTNETLINK answers: Numerical result out of range"));
        }
    }
    Ok(out)
}
