//! Simulated `ip` (iproute2 6.1 on a 6.x kernel): links (loopback, bridge,
//! dummy, veth pairs, tap devices), their MTU, MAC address, up/down state,
//! carrier and operstate, bridge membership; IPv4/IPv6 addresses including
//! the kernel's own (127.0.0.1/8 and ::1 on `lo`, the EUI-64 link-local
//! address of every other link once it is up with carrier); static routes
//! plus the kernel's connected routes (`show` with exact/root/match
//! selectors, `get`, `flush dev`, `show table local`); permanent neighbour
//! entries (`ip neigh`, dropped when the link goes down); the three rules
//! of a fresh namespace (`ip rule`, read-only). Output forms `-j`, `-j -p`,
//! `-br`, `-o`, `-d`, `-s` (zero counters), `-4`/`-6`, and iproute2's
//! prefix matching of objects and verbs in its own lookup order (`ip a s`
//! is show, `ip l s` is set).
//!
//! The model is the *settled* host a person sees a moment after typing a
//! command: IPv6 duplicate address detection has finished on links that
//! have carrier (addresses on a link without carrier stay `tentative`), and
//! the kernel's link-watch has applied carrier changes to the operstate.
//!
//! Kernel behaviour reproduced (observed on the reference kernel in a fresh
//! network namespace):
//! - a new bridge whose MAC was never set and that never had a port keeps
//!   the operstate UNKNOWN and has carrier once up; setting its MAC or
//!   adding/removing a port makes the kernel compute its carrier (UP with a
//!   port that has carrier, else DOWN and NO-CARRIER);
//! - a bridge whose MAC was not set takes the smallest MAC of its ports,
//!   and 00:00:00:00:00:00 when its last port leaves;
//! - a veth end has carrier when both ends are up; with its peer down it
//!   is LOWERLAYERDOWN (and shows M-DOWN); a tap has no carrier (no process
//!   holds it);
//! - taking a link down removes its IPv6 addresses (keep_addr_on_down=0)
//!   and its static routes; IPv4 addresses stay;
//! - a link gets its root qdisc when first brought up (noqueue; pfifo_fast
//!   for a tap) and keeps it when taken down again.
//!
//! The reference kernel has no `dummy` module, so `ip link add ... type
//! dummy` fails (after the name check) as there;
//! [`crate::FakeHost::set_dummy_driver`] models a kernel that has it.
//!
//! Known deviations: `tun` mode of `ip tuntap` is not simulated; the IPv6
//! local table is empty; `ip -d link` of a bridge port lacks its
//! `bridge_slave` line; `macvlan`/`vxlan` are not simulated. Checked against
//! the real `ip` by `tests/typed_sequences.rs` and `tests/differential.rs`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use virtnet_runner::Output;

mod args;
mod model;
mod output;
use args::*;
pub use model::*;
use output::*;

fn fail(status: i32, msg: impl Into<String>) -> Output {
    let mut m = msg.into();
    m.push('\n');
    Output::failed(status, m)
}

fn no_dev(name: &str) -> Output {
    fail(1, format!("Cannot find device \"{name}\""))
}

impl IpState {
    /// Run `ip ARGS...`.
    pub fn exec(&mut self, args: &[String]) -> Output {
        let mut o = Opts::default();
        let mut i = 0;
        while i < args.len() && args[i].starts_with('-') {
            match args[i].as_str() {
                "-j" | "-json" | "--json" => o.json = true,
                "-p" | "-pretty" | "--pretty" => o.pretty = true,
                "-br" | "-brief" | "--brief" => o.brief = true,
                "-o" | "-oneline" | "--oneline" => o.oneline = true,
                "-4" => o.family = Some(4),
                "-6" => o.family = Some(6),
                "-d" | "-details" => o.details = true,
                "-s" | "-stats" | "-statistics" => o.stats = true,
                o => return fail(255, format!("Option \"{o}\" is unknown, try \"ip -help\".")),
            }
            i += 1;
        }
        let rest = &args[i..];
        let Some(obj) = rest.first() else {
            return fail(255, "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }");
        };
        let sub: Vec<&str> = rest[1..].iter().map(String::as_str).collect();
        let out = match canon(obj, OBJECTS) {
            "link" => self.link_cmd(&sub, o),
            "address" => self.addr_cmd(&sub, o),
            "route" => self.route_cmd(&sub, o),
            "neighbor" => self.neigh_cmd(&sub, o),
            "tuntap" => self.tuntap_cmd(&sub),
            "rule" => rule_cmd(&sub, o),
            o => fail(1, format!("Object \"{o}\" is unknown, try \"ip help\".")),
        };
        if out.success() {
            self.settle();
        }
        out
    }

    fn neigh_cmd(&mut self, sub: &[&str], o: Opts) -> Output {
        let verb = canon(sub.first().copied().unwrap_or("show"), NEIGH_VERBS);
        let rest = if sub.is_empty() { &[][..] } else { &sub[1..] };
        let mut dst: Option<&str> = None;
        let mut dev: Option<&str> = None;
        let mut lladdr: Option<&str> = None;
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                "dev" => {
                    dev = rest.get(i + 1).copied();
                    i += 2;
                }
                "lladdr" => {
                    lladdr = rest.get(i + 1).copied();
                    i += 2;
                }
                "nud" | "proxy" | "router" | "extern_learn" => i += 2,
                "to" => {
                    dst = rest.get(i + 1).copied();
                    i += 2;
                }
                d => {
                    dst = Some(d);
                    i += 1;
                }
            }
        }
        match verb {
            "show" | "list" | "ls" | "sh" => {
                if let Some(d) = dev {
                    if self.link(d).is_none() {
                        return no_dev(d);
                    }
                }
                let mut sel: Vec<&Neigh> = self
                    .neigh
                    .iter()
                    .filter(|n| dev.is_none_or(|d| n.dev == d))
                    .filter(|n| match o.family {
                        Some(4) => !n.dst.contains(':'),
                        Some(6) => n.dst.contains(':'),
                        _ => true,
                    })
                    .collect();
                sel.sort_by_key(|n| n.dst.contains(':'));
                if o.json {
                    let items = sel
                        .iter()
                        .map(|n| {
                            let mut m = vec![("dst", Json::str(&n.dst))];
                            if dev.is_none() {
                                m.push(("dev", Json::str(&n.dev)));
                            }
                            m.push(("lladdr", Json::str(&n.lladdr)));
                            m.push(("state", Json::Arr(vec![Json::str("PERMANENT")])));
                            Json::Obj(m)
                        })
                        .collect();
                    return Output::ok(o.json_out(items));
                }
                let out: String = sel
                    .iter()
                    .map(|n| {
                        let d = if dev.is_some() {
                            String::new()
                        } else {
                            format!(" dev {}", n.dev)
                        };
                        format!("{}{d} lladdr {} PERMANENT \n", n.dst, n.lladdr)
                    })
                    .collect();
                Output::ok(out)
            }
            "add" | "replace" | "change" | "del" | "delete" => {
                let (Some(dst), Some(d)) = (dst, dev) else {
                    return fail(255, "Device and destination are required arguments.");
                };
                if dst.parse::<IpAddr>().is_err() {
                    return fail(
                        1,
                        format!("Error: any valid address is expected rather than \"{dst}\"."),
                    );
                }
                if let Some(m) = lladdr {
                    if !valid_mac(m) {
                        return fail(1, format!("\"{}\" is invalid lladdr.", bad_mac_part(m)));
                    }
                }
                if self.link(d).is_none() {
                    return no_dev(d);
                }
                let pos = self.neigh.iter().position(|n| n.dst == dst && n.dev == d);
                match (verb, pos) {
                    ("add", Some(_)) => fail(2, "RTNETLINK answers: File exists"),
                    ("del" | "delete", None) | ("change", None) => {
                        fail(2, "RTNETLINK answers: No such file or directory")
                    }
                    ("del" | "delete", Some(p)) => {
                        self.neigh.remove(p);
                        Output::default()
                    }
                    (_, p) => {
                        let n = Neigh {
                            dst: dst.to_string(),
                            dev: d.to_string(),
                            lladdr: lladdr.unwrap_or("00:00:00:00:00:00").to_ascii_lowercase(),
                        };
                        match p {
                            Some(p) => self.neigh[p] = n,
                            None => self.neigh.push(n),
                        }
                        Output::default()
                    }
                }
            }
            "flush" | "f" => {
                let Some(d) = dev else {
                    return fail(1, "Flush requires arguments.");
                };
                if self.link(d).is_none() {
                    return no_dev(d);
                }
                // Without -6, iproute2 flushes the IPv4 table only.
                let v6 = o.family == Some(6);
                self.neigh
                    .retain(|n| n.dev != d || n.dst.contains(':') != v6);
                Output::default()
            }
            v => fail(
                255,
                format!("Command \"{v}\" is unknown, try \"ip neigh help\"."),
            ),
        }
    }

    fn tuntap_cmd(&mut self, sub: &[&str]) -> Output {
        let verb = sub.first().copied().unwrap_or("show");
        let rest = if sub.is_empty() { &[][..] } else { &sub[1..] };
        let mut name = None;
        let mut mode = None;
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                "dev" | "name" => {
                    name = rest.get(i + 1).copied();
                    i += 2;
                }
                "mode" => {
                    mode = rest.get(i + 1).copied();
                    i += 2;
                }
                "user" | "group" => i += 2,
                "one_queue" | "pi" | "vnet_hdr" | "multi_queue" => i += 1,
                n => {
                    name = Some(n);
                    i += 1;
                }
            }
        }
        match verb {
            "add" | "del" | "delete" => {
                match mode {
                    Some("tap") => {}
                    Some("tun") => return fail(1, "virtnet-fake: tun mode is not simulated"),
                    _ => return fail(1, "You failed to specify a tunnel mode"),
                }
                let Some(name) = name else {
                    return fail(1, "You failed to specify a tunnel mode");
                };
                if verb == "add" {
                    if self.link(name).is_some() {
                        return fail(1, "ioctl(TUNSETIFF): Device or resource busy");
                    }
                    self.new_link(name, LinkKind::Tap, None, None);
                    Output::default()
                } else {
                    match self.link(name) {
                        Some(l) if l.kind == LinkKind::Tap => self.delete_link(name),
                        _ => fail(1, "ioctl(TUNSETIFF): Invalid argument"),
                    }
                }
            }
            "show" | "list" | "ls" | "sh" => {
                let mut out = String::new();
                for l in self.links.iter().filter(|l| l.kind == LinkKind::Tap) {
                    out.push_str(&format!("{}: tap persist\n", l.name));
                }
                Output::ok(out)
            }
            v => fail(
                255,
                format!("Command \"{v}\" is unknown, try \"ip tuntap help\"."),
            ),
        }
    }

    fn link_cmd(&mut self, sub: &[&str], o: Opts) -> Output {
        let verb = canon(sub.first().copied().unwrap_or("show"), LINK_VERBS);
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
                self.delete_link(name)
            }
            "set" | "s" | "se" => self.link_set(rest),
            "show" | "list" | "ls" | "lst" | "sh" | "sho" => {
                let f = match parse_link_filter(rest) {
                    Ok(f) => f,
                    Err(out) => return out,
                };
                let sel = match self.select(&f) {
                    Ok(s) => s,
                    Err(out) => return out,
                };
                Output::ok(self.render_links(&sel, o, false))
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
                key @ ("name" | "dev") => {
                    if let Some(bad) = v.and_then(|n| invalid_ifname(key, n)) {
                        return bad;
                    }
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
                                    "Error: argument \"{}\" is wrong: Invalid \"mtu\" value\n",
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
                    if let Some(bad) = invalid_ifname("dev", n) {
                        return bad;
                    }
                    name = Some(n);
                    i += 1;
                }
            }
        }
        let Some(kind_s) = kind else {
            return fail(1, "Not enough information: \"type\" argument is required");
        };
        // The kernel's attribute policy (IFLA_IFNAME at most 15 bytes) is
        // checked before the device type is looked up.
        if name.is_some_and(|n| n.len() > 15) {
            return fail(2, "Error: Attribute failed policy validation.");
        }
        // The reference kernel (the one the differential tests run on) has
        // no dummy driver: `type dummy` fails there like an unknown type
        // (after the name check), so it does here unless the host models a
        // kernel with one (`dummy_driver`).
        let kind = match kind_s {
            "bridge" => LinkKind::Bridge,
            "dummy" => LinkKind::Dummy,
            "veth" => LinkKind::Veth,
            _ => return fail(2, "Error: Unknown device type."),
        };
        let Some(name) = name else {
            return fail(2, "Not enough information: \"dev\" argument is required.");
        };
        if let Some(m) = mac {
            if !valid_mac(m) {
                return fail(1, format!("\"{}\" is invalid lladdr.", bad_mac_part(m)));
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
        let mut peer_name: Option<String> = None;
        if kind == LinkKind::Veth {
            match type_args {
                [] => {}
                ["peer", "name", p] | ["peer", p] => {
                    if let Some(bad) = invalid_ifname("name", p) {
                        return bad;
                    }
                    peer_name = Some((*p).to_string())
                }
                _ => {
                    return fail(
                        255,
                        "Garbage instead of arguments \"peer ...\". Try \"ip link help\".",
                    )
                }
            }
        }
        if self.link(name).is_some() {
            return fail(2, "RTNETLINK answers: File exists");
        }
        if kind == LinkKind::Dummy && !self.dummy_driver {
            return fail(2, "Error: Unknown device type.");
        }
        // The kernel's dev_valid_name(): `.`, `..` and names with `:` are
        // refused when the device is created (the peer's name too).
        if !kernel_valid_ifname(name)
            || peer_name
                .as_deref()
                .is_some_and(|p| !kernel_valid_ifname(p))
        {
            return fail(2, "RTNETLINK answers: Invalid argument");
        }
        if let Some(p) = &peer_name {
            if self.link(p).is_some() || p == name {
                return fail(2, "RTNETLINK answers: File exists");
            }
        }
        if kind == LinkKind::Veth {
            // The kernel registers the peer first (it gets the lower index).
            // Without `peer name`, the kernel names the peer (registered
            // first) veth0, veth1, ...: it may take the requested name.
            let peer = peer_name.unwrap_or_else(|| {
                (0..)
                    .map(|n| format!("veth{n}"))
                    .find(|n| self.link(n).is_none())
                    .unwrap_or_default()
            });
            if peer == name {
                // The kernel had already given the device an index.
                self.next_ifindex += 1;
                return fail(2, "RTNETLINK answers: File exists");
            }
            self.new_link(&peer, LinkKind::Veth, mtu, None);
            self.new_link(name, LinkKind::Veth, mtu, mac);
            if let Some(l) = self.link_mut(&peer) {
                l.peer = Some(name.to_string());
            }
            if let Some(l) = self.link_mut(name) {
                l.peer = Some(peer);
            }
            return Output::default();
        }
        self.new_link(name, kind, mtu, mac);
        if let Some(l) = self.link_mut(name) {
            l.bridge = bridge_opts;
        }
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
                "mtu" | "address" | "master" | "name" | "promisc" | "arp" | "multicast"
                | "txqueuelen" | "txqlen" | "qlen" | "addrgenmode" => {
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
        // Argument syntax is checked before the device is looked up.
        for (op, v) in &ops {
            match (*op, v) {
                ("promisc" | "arp" | "multicast", Some(v)) if *v != "on" && *v != "off" => {
                    return fail(
                        1,
                        format!(
                            "Error: argument of \"{op}\" must be \"on\" or \"off\", not \"{v}\""
                        ),
                    )
                }
                ("addrgenmode", Some(v))
                    if !matches!(*v, "eui64" | "none" | "stable_secret" | "random") =>
                {
                    return fail(
                        255,
                        format!(
                            "Error: argument \"{v}\" is wrong: Invalid address generation mode\n"
                        ),
                    )
                }
                ("txqueuelen" | "txqlen" | "qlen", Some(v)) if v.parse::<u32>().is_err() => {
                    return fail(
                        255,
                        format!("Error: argument \"{v}\" is wrong: Invalid \"txqueuelen\" value\n"),
                    )
                }
                ("mtu", Some(v)) if v.parse::<u32>().is_err() => {
                    return fail(
                        255,
                        format!("Error: argument \"{v}\" is wrong: Invalid \"mtu\" value\n"),
                    )
                }
                ("address", Some(v)) if !valid_mac(v) => {
                    return fail(1, format!("\"{}\" is invalid lladdr.", bad_mac_part(v)))
                }
                _ => {}
            }
        }
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
                    Ok(m) if m < 68 => return fail(2, "Error: mtu less than device minimum."),
                    Ok(m) if m > 65535 => {
                        return fail(2, "Error: mtu greater than device maximum.")
                    }
                    _ => {}
                },
                ("address", Some(v))
                    if mac_bytes(v).is_some_and(|b| b[0] & 1 == 1 || b == [0; 6]) =>
                {
                    return fail(2, "RTNETLINK answers: Cannot assign requested address");
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
            match op {
                "name" => {
                    let new = v.to_string();
                    for l in &mut self.links {
                        if l.master.as_deref() == Some(cur.as_str()) {
                            l.master = Some(new.clone());
                        }
                        if l.peer.as_deref() == Some(cur.as_str()) {
                            l.peer = Some(new.clone());
                        }
                    }
                    for r in &mut self.routes {
                        if r.dev == cur {
                            r.dev = new.clone();
                        }
                    }
                    for n in &mut self.neigh {
                        if n.dev == cur {
                            n.dev = new.clone();
                        }
                    }
                    if let Some(l) = self.link_mut(&cur) {
                        l.name = new.clone();
                    }
                    cur = new;
                }
                "up" => {
                    if let Some(l) = self.link_mut(&cur) {
                        if !l.up {
                            l.hidden_nets.clear();
                        }
                        l.up = true;
                        l.qdisc_attached = true;
                        if l.kind == LinkKind::Loopback
                            && !l.addrs.iter().any(|a| a.local == "127.0.0.1")
                        {
                            l.addrs.insert(
                                0,
                                Addr {
                                    local: "127.0.0.1".into(),
                                    prefixlen: 8,
                                    broadcast: None,
                                    seq: 0,
                                    label: None,
                                    nodad: false,
                                },
                            );
                        }
                    }
                }
                "down" => self.link_down(&cur),
                "nomaster" => {
                    let old = self.link_mut(&cur).and_then(|l| l.master.take());
                    if let Some(m) = old {
                        self.bridge_ports_changed(&m);
                    }
                }
                "master" => {
                    let old = self
                        .link_mut(&cur)
                        .and_then(|l| l.master.replace(v.to_string()));
                    if let Some(m) = old {
                        self.bridge_ports_changed(&m);
                    }
                    self.bridge_ports_changed(v);
                }
                "mtu" => {
                    if let Some(l) = self.link_mut(&cur) {
                        l.mtu = v.parse().unwrap_or(l.mtu);
                    }
                }
                "promisc" | "arp" | "multicast" => {
                    if let Some(l) = self.link_mut(&cur) {
                        let on = v == "on";
                        match op {
                            "promisc" => l.promisc = on,
                            "arp" => l.noarp = !on,
                            _ => l.nomulticast = !on,
                        }
                    }
                }
                "txqueuelen" | "txqlen" | "qlen" => {
                    if let Some(l) = self.link_mut(&cur) {
                        l.txqlen = v.parse().ok();
                    }
                }
                "addrgenmode" => {
                    if let Some(l) = self.link_mut(&cur) {
                        l.addrgenmode = (v != "eui64").then(|| v.to_string());
                    }
                }
                "address" => {
                    let master = self.link(&cur).and_then(|l| l.master.clone());
                    if let Some(l) = self.link_mut(&cur) {
                        l.mac = v.to_ascii_lowercase();
                        l.mac_set = true;
                        l.carrier_known = true;
                    }
                    if let Some(m) = master {
                        self.bridge_ports_changed(&m);
                    }
                }
                _ => {}
            }
        }
        Output::default()
    }

    fn addr_cmd(&mut self, sub: &[&str], o: Opts) -> Output {
        let verb = canon(sub.first().copied().unwrap_or("show"), ADDR_VERBS);
        let rest = if sub.is_empty() { &[][..] } else { &sub[1..] };
        match verb {
            "add" | "a" | "replace" | "change" | "del" | "delete" | "d" => {
                let verb = match verb {
                    "replace" | "change" => "replace",
                    v if v.starts_with('a') => "add",
                    _ => "del",
                };
                let mut addr: Option<&str> = None;
                let mut dev: Option<&str> = None;
                let mut brd: Option<&str> = None;
                let mut nodad = false;
                let mut label: Option<&str> = None;
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
                        "label" => {
                            label = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "scope" | "valid_lft" | "preferred_lft" | "peer" => i += 2,
                        "nodad" => {
                            nodad = true;
                            i += 1;
                        }
                        "noprefixroute" => i += 1,
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
                    if self.link(dev).is_none() {
                        return no_dev(dev);
                    }
                    return fail(2, "RTNETLINK answers: Operation not supported");
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
                if ip.is_ipv6() && verb != "del" && self.v6_disabled.iter().any(|d| d == dev) {
                    return fail(2, "Error: ipv6: IPv6 is disabled on this device.");
                }
                let seq = 0;
                let broadcast = match (brd, ip) {
                    (Some("+"), IpAddr::V4(v)) if len < 31 => {
                        let host = if len == 0 { u32::MAX } else { u32::MAX >> len };
                        Some(std::net::Ipv4Addr::from(u32::from(v) | host).to_string())
                    }
                    (Some("+" | "-"), _) => None,
                    (b, _) => b.map(str::to_string),
                };
                let Some(l) = self.link_mut(dev) else {
                    return no_dev(dev);
                };
                let pos = l
                    .addrs
                    .iter()
                    .position(|a| a.ip() == Some(ip) && (a.prefixlen == len || verb == "del"));
                if verb == "replace" && pos.is_some() {
                    // Replacing an address with itself changes nothing here
                    // (only its broadcast, if given).
                    if let (Some(p), Some(b)) = (pos, broadcast) {
                        l.addrs[p].broadcast = Some(b);
                    }
                    if let Some(l) = self.link_mut(dev) {
                        l.hidden_nets.retain(|n| *n != network_of(ip, len));
                    }
                    return Output::default();
                }
                if let Some(l) = self.link_mut(dev) {
                    l.hidden_nets.retain(|n| *n != network_of(ip, len));
                }
                let Some(l) = self.link_mut(dev) else {
                    return no_dev(dev);
                };
                if verb != "del" {
                    if ip.is_ipv4() {
                        if pos.is_some() {
                            return fail(2, "Error: ipv4: Address already assigned.");
                        }
                        let v4_end = l.addrs.iter().take_while(|a| !a.is_v6()).count();
                        l.addrs.insert(
                            v4_end,
                            Addr {
                                local: ip.to_string(),
                                prefixlen: len,
                                broadcast,
                                seq: 0,
                                label: label.map(str::to_string),
                                nodad: false,
                            },
                        );
                    } else {
                        if l.addrs.iter().any(|a| a.ip() == Some(ip)) {
                            return fail(2, "Error: ipv6: address already assigned.");
                        }
                        IpState::insert_v6(
                            l,
                            Addr {
                                local: ip.to_string(),
                                prefixlen: len,
                                broadcast: None,
                                seq,
                                label: None,
                                nodad,
                            },
                        );
                    }
                } else {
                    let exact = l
                        .addrs
                        .iter()
                        .position(|a| a.ip() == Some(ip) && a.prefixlen == len);
                    // Without a prefix, `del` matches the address alone
                    // (with a warning for IPv4).
                    let p = if addr.contains('/') { exact } else { pos };
                    match p {
                        Some(p) => {
                            l.addrs.remove(p);
                            if !addr.contains('/') && ip.is_ipv4() {
                                return Output {
                                    status: 0,
                                    stdout: String::new(),
                                    stderr: format!(
                                        "Warning: Executing wildcard deletion to stay compatible with old scripts.\n         Explicitly specify the prefix length ({addr}/32) to avoid this warning.\n         This special behaviour is likely to disappear in further releases,\n         fix your scripts!\n"
                                    ),
                                };
                            }
                        }
                        None => {
                            return fail(
                                2,
                                if ip.is_ipv4() {
                                    "Error: ipv4: Address not found.".to_string()
                                } else {
                                    "Error: ipv6: address not found.".to_string()
                                },
                            )
                        }
                    }
                }
                Output::default()
            }
            "flush" | "f" => {
                let Some(d) = parse_dev_arg(rest) else {
                    return fail(1, "Flush requires arguments.");
                };
                if self.link(d).is_none() {
                    return fail(1, format!("Device \"{d}\" does not exist."));
                }
                let fam = o.family;
                if let Some(l) = self.link_mut(d) {
                    l.addrs.retain(|a| match fam {
                        Some(4) => a.is_v6(),
                        Some(6) => !a.is_v6(),
                        _ => false,
                    });
                }
                Output::default()
            }
            "show" | "list" | "ls" | "sh" | "sho" => {
                let f = match parse_link_filter(rest) {
                    Ok(f) => f,
                    Err(out) => return out,
                };
                let sel = match self.select(&f) {
                    Ok(s) => s,
                    Err(out) => return out,
                };
                let mut o = o;
                o.scope = match f.scope {
                    Some("global" | "0") => Some("global"),
                    Some("link" | "253") => Some("link"),
                    Some("host" | "254") => Some("host"),
                    Some(other) => {
                        return fail(
                            255,
                            format!("Error: argument \"{other}\" is wrong: invalid \"scope\"\n"),
                        )
                    }
                    None => None,
                };
                Output::ok(self.render_links(&sel, o, true))
            }
            v => fail(
                255,
                format!("Command \"{v}\" is unknown, try \"ip address help\"."),
            ),
        }
    }

    fn route_cmd(&mut self, sub: &[&str], o: Opts) -> Output {
        let verb = canon(sub.first().copied().unwrap_or("show"), ROUTE_VERBS);
        let rest = if sub.is_empty() { &[][..] } else { &sub[1..] };
        match verb {
            "add" | "a" | "del" | "delete" | "d" | "replace" => {
                if rest.is_empty() {
                    return Output::failed(255, ROUTE_USAGE);
                }
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
                        "metric" | "priority" | "preference" => {
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
                let v6 = o.family == Some(6)
                    || dst.contains(':')
                    || via.is_some_and(|v| v.contains(':'));
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
                let verb = match verb {
                    "a" => "add",
                    "d" | "delete" => "del",
                    v => v,
                };
                if verb == "add" || verb == "replace" {
                    let dev = match (dev, via) {
                        (Some(d), gw) => {
                            let Some(l) = self.link(d) else {
                                return no_dev(d);
                            };
                            if let Some(gw) = gw {
                                // An IPv6 link-local gateway is on the named link.
                                let on_link = gw
                                    .parse::<std::net::Ipv6Addr>()
                                    .is_ok_and(|g| (g.segments()[0] & 0xffc0) == 0xfe80);
                                if !on_link && self.dev_for(gw).as_deref() != Some(d) {
                                    return fail(2, gw_error(v6));
                                }
                            }
                            if !l.up {
                                return fail(2, "Error: Device for nexthop is not up.");
                            }
                            d.to_string()
                        }
                        (None, Some(gw)) => match self.dev_for(gw) {
                            Some(d) => d,
                            None => return fail(2, gw_error(v6)),
                        },
                        (None, None) => return fail(2, "Error: Device for nexthop is not up."),
                    };
                    let exists = self
                        .routes
                        .iter()
                        .position(|r| r.dst == dst_c && r.metric == metric && r.is_v6() == v6);
                    // The kernel's own connected route occupies its
                    // destination at its metric too.
                    let kernel_metric = if v6 { Some(256) } else { None };
                    if verb == "add"
                        && metric.or(if v6 { Some(1024) } else { None }) == kernel_metric
                        && self
                            .main_routes(v6)
                            .iter()
                            .any(|r| r.kernel && r.dst == dst_c)
                    {
                        return fail(2, "RTNETLINK answers: File exists");
                    }
                    let route = Route {
                        dst: dst_c,
                        via: via.map(str::to_string),
                        dev,
                        metric,
                        v6,
                    };
                    match (verb, exists) {
                        ("add", Some(_)) => return fail(2, "RTNETLINK answers: File exists"),
                        (_, Some(p)) => self.routes[p] = route,
                        (_, None) => self.routes.push(route),
                    }
                    Output::default()
                } else {
                    match self
                        .routes
                        .iter()
                        .position(|r| r.dst == dst_c && r.is_v6() == v6)
                    {
                        Some(p) => {
                            self.routes.remove(p);
                            Output::default()
                        }
                        None => fail(2, "RTNETLINK answers: No such process"),
                    }
                }
            }
            "flush" | "f" => {
                let Some(d) = rest.windows(2).find(|w| w[0] == "dev").map(|w| w[1]) else {
                    return fail(255, "\"ip route flush\" requires arguments.");
                };
                if self.link(d).is_none() {
                    return fail(1, format!("Cannot find device \"{d}\""));
                }
                let v6 = o.family == Some(6);
                self.routes.retain(|r| !(r.dev == d && r.is_v6() == v6));
                let nets: Vec<String> = self
                    .main_routes(v6)
                    .into_iter()
                    .filter(|r| r.dev == d && r.kernel)
                    .map(|r| r.dst)
                    .collect();
                if let Some(l) = self.link_mut(d) {
                    l.hidden_nets.extend(nets);
                }
                Output::default()
            }
            "get" | "g" => {
                let Some(dst) = rest.iter().find(|a| a.parse::<IpAddr>().is_ok()) else {
                    return fail(1, "need at least a destination address");
                };
                self.route_get(dst)
            }
            "show" | "list" | "ls" | "sh" | "sho" => {
                let mut dev: Option<&str> = None;
                let mut table = "main";
                // (mode, prefix): `exact` for a bare prefix, `root` (routes
                // inside it) or `match` (routes containing it).
                let mut sel: Option<(&str, (u128, u8), bool)> = None;
                let mut i = 0;
                while i < rest.len() {
                    match rest[i] {
                        "dev" => {
                            dev = rest.get(i + 1).copied();
                            i += 2;
                        }
                        "table" => {
                            table = rest.get(i + 1).copied().unwrap_or("main");
                            i += 2;
                        }
                        "to" => i += 1,
                        w @ ("root" | "match" | "exact") => {
                            let p = rest.get(i + 1).copied().unwrap_or("");
                            if parse_prefix(p).is_none() && p != "default" {
                                return fail(
                                    1,
                                    format!(
                                        "Error: any valid prefix is expected rather than \"{p}\"."
                                    ),
                                );
                            }
                            sel = Some((w, dst_key(p), p.contains(':')));
                            i += 2;
                        }
                        p if p == "default" || parse_prefix(p).is_some() => {
                            sel = Some(("exact", dst_key(p), p.contains(':')));
                            i += 1;
                        }
                        _ => i += 1,
                    }
                }
                let contains = |outer: (u128, u8), inner: (u128, u8), v6: bool| {
                    let bits: u32 = if v6 { 128 } else { 32 };
                    let mask = |len: u8| {
                        if len == 0 {
                            0
                        } else {
                            (u128::MAX >> (128 - bits)) << (bits - u32::from(len))
                                & (u128::MAX >> (128 - bits))
                        }
                    };
                    inner.1 >= outer.1 && (inner.0 & mask(outer.1)) == (outer.0 & mask(outer.1))
                };
                if let Some(d) = dev {
                    if self.link(d).is_none() {
                        return fail(1, format!("Cannot find device \"{d}\""));
                    }
                }
                let v6 = o.family == Some(6);
                let views = match table {
                    "main" => self.main_routes(v6),
                    "local" if !v6 => self.local_routes(),
                    "local" => Vec::new(),
                    _ => Vec::new(),
                };
                let views: Vec<RouteView> = views
                    .into_iter()
                    .filter(|r| dev.is_none_or(|d| r.dev == d))
                    .filter(|r| match sel {
                        None => true,
                        Some((mode, key, _)) => {
                            let k = dst_key(&r.dst);
                            match mode {
                                "exact" => k == key,
                                "root" => contains(key, k, r.v6),
                                _ => contains(k, (key.0, if r.v6 { 128 } else { 32 }), r.v6),
                            }
                        }
                    })
                    .collect();
                if o.json {
                    let items = views.iter().map(|r| r.json(dev.is_some())).collect();
                    return Output::ok(o.json_out(items));
                }
                let out: String = views
                    .iter()
                    .map(|r| format!("{}\n", r.text(dev.is_some())))
                    .collect();
                Output::ok(out)
            }
            v => fail(
                255,
                format!("Command \"{v}\" is unknown, try \"ip route help\"."),
            ),
        }
    }

    /// `ip route get ADDR`: the longest-prefix match of the main table.
    fn route_get(&self, dst: &str) -> Output {
        let Ok(ip) = dst.parse::<IpAddr>() else {
            return fail(
                1,
                format!("Error: inet prefix is expected rather than \"{dst}\"."),
            );
        };
        // An address of this host is reached through lo (local table).
        for l in &self.links {
            if l.up && l.addrs.iter().any(|a| a.ip() == Some(ip)) {
                return Output::ok(format!(
                    "local {ip} dev lo src {ip} uid 0 \n    cache <local> \n"
                ));
            }
        }
        let routes = self.main_routes(ip.is_ipv6());
        let best = routes
            .iter()
            .filter(|r| {
                if r.dst == "default" {
                    return true;
                }
                match parse_prefix(&r.dst) {
                    Some((net, len)) => network_of(ip, len) == network_of(net, len),
                    None => false,
                }
            })
            .max_by_key(|r| {
                (
                    dst_key(&r.dst).1,
                    std::cmp::Reverse(r.metric.unwrap_or(0)),
                    std::cmp::Reverse(r.seq),
                )
            });
        let Some(r) = best else {
            return fail(2, "RTNETLINK answers: Network is unreachable");
        };
        let src = self.link(&r.dev).and_then(|l| {
            l.addrs
                .iter()
                .find(|a| a.is_v6() == ip.is_ipv6() && !(a.is_v6() && a.scope() == "link"))
                .map(|a| a.local.clone())
        });
        let mut s = format!("{ip}");
        if let Some(v) = &r.via {
            s.push_str(&format!(" via {v}"));
        }
        s.push_str(&format!(" dev {}", r.dev));
        if let Some(src) = src {
            s.push_str(&format!(" src {src}"));
        }
        s.push_str(" uid 0 \n    cache \n");
        Output::ok(s)
    }
}

/// `ip rule`: the three rules of a fresh namespace (rules are not
/// otherwise simulated).
fn rule_cmd(sub: &[&str], o: Opts) -> Output {
    let verb = canon(
        sub.first().copied().unwrap_or("show"),
        &[("list", "show"), ("show", "show"), ("lst", "show")],
    );
    if verb != "show" {
        return fail(1, format!("virtnet-fake: ip rule {verb} is not simulated"));
    }
    let rules: &[(u32, &str)] = if o.family == Some(6) {
        &[(0, "local"), (32766, "main")]
    } else {
        &[(0, "local"), (32766, "main"), (32767, "default")]
    };
    if o.json {
        let items = rules
            .iter()
            .map(|(p, t)| {
                Json::Obj(vec![
                    ("priority", Json::Num(u64::from(*p))),
                    ("src", Json::str("all")),
                    ("table", Json::str(*t)),
                ])
            })
            .collect();
        return Output::ok(o.json_out(items));
    }
    Output::ok(
        rules
            .iter()
            .map(|(p, t)| format!("{p}:\tfrom all lookup {t}\n"))
            .collect::<String>(),
    )
}
