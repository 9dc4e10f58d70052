//! What the simulated `ip` prints: link, address and route listings in
//! iproute2's text, brief and JSON (`-j`, `-j -p`) forms, and the state dump
//! used by tests.

use super::*;

/// A JSON value with ordered keys, printed as iproute2 prints it (`-j`
/// compact, `-j -p` with its own indentation).
#[derive(Debug, Clone)]
pub(super) enum Json {
    Str(String),
    Num(u64),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    pub(super) fn str(v: impl Into<String>) -> Json {
        Json::Str(v.into())
    }
    pub(super) fn compact(&self) -> String {
        match self {
            Json::Str(s) => serde_json::Value::from(s.as_str()).to_string(),
            Json::Num(n) => n.to_string(),
            Json::Arr(v) => format!(
                "[{}]",
                v.iter().map(Json::compact).collect::<Vec<_>>().join(",")
            ),
            Json::Obj(v) => format!(
                "{{{}}}",
                v.iter()
                    .map(|(k, x)| format!("\"{k}\":{}", x.compact()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
    /// iproute2's json_writer pretty form: "[ " ... " ]" for arrays,
    /// objects with one key per line indented 4 spaces per open container.
    pub(super) fn pretty(&self, depth: usize) -> String {
        match self {
            Json::Arr(v) if v.is_empty() => "[ ]".into(),
            Json::Arr(v) => format!(
                "[ {} ]",
                v.iter()
                    .map(|x| x.pretty(depth + 1))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Json::Obj(v) if v.is_empty() => "{}".into(),
            Json::Obj(v) => {
                let d = depth + 1;
                let mut s = "{".to_string();
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push('\n');
                    s.push_str(&" ".repeat(4 * d));
                    s.push_str(&format!("\"{k}\": {}", x.pretty(d)));
                }
                s.push('\n');
                s.push_str(&" ".repeat(4 * depth));
                s.push('}');
                s
            }
            other => other.compact(),
        }
    }
}

impl IpState {
    pub(super) fn link_header(&self, l: &Link, with_addrs: bool, family_only: bool) -> String {
        let master = l
            .master
            .as_ref()
            .map(|m| format!(" master {m}"))
            .unwrap_or_default();
        if family_only {
            return format!(
                "{}: {}: <{}> mtu {}{master} state {} qlen {}",
                l.ifindex,
                Self::display_name(l),
                self.flags(l).join(","),
                l.mtu,
                self.operstate(l),
                l.txqlen.unwrap_or(1000)
            );
        }
        let mode = if with_addrs { "" } else { " mode DEFAULT" };
        format!(
            "{}: {}: <{}> mtu {} qdisc {}{master} state {}{mode} group default qlen {}",
            l.ifindex,
            Self::display_name(l),
            self.flags(l).join(","),
            l.mtu,
            self.qdisc_of(l),
            self.operstate(l),
            l.txqlen.unwrap_or(1000)
        )
    }

    pub(super) fn qdisc_of(&self, l: &Link) -> String {
        self.root_qdiscs
            .get(&l.name)
            .cloned()
            .unwrap_or_else(|| Self::default_qdisc(l).to_string())
    }

    pub(super) fn link_line(l: &Link) -> String {
        let (lt, brd) = if l.kind == LinkKind::Loopback {
            ("loopback", "00:00:00:00:00:00")
        } else {
            ("ether", "ff:ff:ff:ff:ff:ff")
        };
        format!("    link/{lt} {} brd {brd}", l.mac)
    }

    pub(super) fn details(&self, l: &Link) -> String {
        let minmtu = if l.kind == LinkKind::Loopback { 0 } else { 68 };
        let maxmtu = match l.kind {
            LinkKind::Loopback => 0,
            LinkKind::Tap => 65521,
            _ => 65535,
        };
        let promiscuity = u8::from(l.promisc) + u8::from(l.master.is_some());
        let mut s = format!(
            " promiscuity {promiscuity}  allmulti {} minmtu {minmtu} maxmtu {maxmtu} ",
            u8::from(l.master.is_some())
        );
        if l.kind == LinkKind::Bridge {
            let get = |k: &str, d: u64| l.bridge.get(k).copied().unwrap_or(d);
            let has_ports = self
                .links
                .iter()
                .any(|p| p.master.as_deref() == Some(l.name.as_str()));
            let id_mac = if l.mac_set || has_ports {
                l.mac.as_str()
            } else {
                "00:00:00:00:00:00"
            };
            let mac = id_mac
                .split(':')
                .map(|b| b.trim_start_matches('0'))
                .map(|b| if b.is_empty() { "0" } else { b })
                .collect::<Vec<_>>()
                .join(":");
            let id = format!("{:x}.{mac}", get("priority", 32768));
            s.push_str(&format!(
                "\n    bridge forward_delay {} hello_time {} max_age {} ageing_time {} stp_state {} priority {} vlan_filtering {} bridge_id {id} designated_root {id} root_port 0 root_path_cost 0 topology_change 0 topology_change_detected 0 hello_timer    0.00 tcn_timer    0.00 topology_change_timer    0.00 gc_timer    0.00 group_fwd_mask 0 group_address 01:80:c2:00:00:00 mcast_snooping {} no_linklocal_learn 0 mcast_vlan_snooping 0 mcast_router 1 mcast_query_use_ifaddr 0 mcast_querier 0 mcast_hash_elasticity 16 mcast_hash_max 4096 mcast_last_member_count 2 mcast_startup_query_count 2 mcast_last_member_interval 100 mcast_membership_interval 26000 mcast_querier_interval 25500 mcast_query_interval 12500 mcast_query_response_interval 1000 mcast_startup_query_interval 3124 mcast_stats_enabled 0 mcast_igmp_version 2 mcast_mld_version 1 nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0 addrgenmode {} numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 tso_max_size 65536 tso_max_segs 65535 gro_max_size 65536 ",
                get("forward_delay", 1500),
                get("hello_time", 200),
                get("max_age", 2000),
                get("ageing_time", 30000),
                get("stp_state", 0),
                get("priority", 32768),
                get("vlan_filtering", 0),
                get("mcast_snooping", 1),
                l.addrgenmode.as_deref().unwrap_or("eui64"),
            ));
        } else {
            let (kind, queues, tso) = match l.kind {
                LinkKind::Loopback => ("", 1, 524280),
                LinkKind::Veth => ("\n    veth ", 2, 524280),
                LinkKind::Tap => (
                    "\n    tun type tap pi off vnet_hdr off persist on ",
                    1,
                    65536,
                ),
                _ => ("\n    dummy ", 1, 524280),
            };
            s.push_str(&format!(
                "{kind}addrgenmode {} numtxqueues {queues} numrxqueues {queues} gso_max_size 65536 gso_max_segs 65535 tso_max_size {tso} tso_max_segs 65535 gro_max_size 65536 ",
                l.addrgenmode.as_deref().unwrap_or("eui64")
            ));
        }
        s
    }

    pub(super) fn addr_lines(l: &Link, a: &Addr, tentative: bool, primary: bool) -> [String; 2] {
        let scope = a.scope();
        let first = if a.is_v6() {
            let t = if a.nodad {
                " nodad"
            } else if tentative {
                " tentative"
            } else {
                ""
            };
            format!("    inet6 {}/{} scope {scope}{t} ", a.local, a.prefixlen)
        } else {
            let brd = a
                .broadcast
                .as_ref()
                .map(|b| format!(" brd {b}"))
                .unwrap_or_default();
            let sec = if primary { "" } else { " secondary" };
            format!(
                "    inet {}/{}{brd} scope {scope}{sec} {}",
                a.local,
                a.prefixlen,
                a.label.as_deref().unwrap_or(&l.name)
            )
        };
        [
            first,
            "       valid_lft forever preferred_lft forever".to_string(),
        ]
    }

    /// Addresses of a link as `ip addr` lists them: IPv4 (with primary
    /// flag) then IPv6.
    pub(super) fn listed_addrs(l: &Link, family: Option<u8>) -> Vec<(&Addr, bool)> {
        let mut out = Vec::new();
        let mut nets: Vec<String> = Vec::new();
        for a in l.addrs.iter().filter(|a| !a.is_v6()) {
            let net = a
                .ip()
                .map(|ip| network_of(ip, a.prefixlen))
                .unwrap_or_default();
            let primary = !nets.contains(&net);
            nets.push(net);
            if family != Some(6) {
                out.push((a, primary));
            }
        }
        if family != Some(4) {
            out.extend(l.addrs.iter().filter(|a| a.is_v6()).map(|a| (a, true)));
        }
        out
    }

    /// The addresses `ip addr` lists under the family and scope filters.
    pub(super) fn listed_for<'l>(l: &'l Link, o: &Opts) -> Vec<(&'l Addr, bool)> {
        let mut v = Self::listed_addrs(l, o.family);
        if let Some(sc) = o.scope {
            v.retain(|(a, _)| a.scope() == sc);
        }
        v
    }

    /// Whether an address filter hides this link: with a family filter, a
    /// link without such addresses; with a scope filter, a link whose
    /// addresses all have another scope.
    pub(super) fn hidden_by_filter(l: &Link, o: &Opts) -> bool {
        let listed = Self::listed_for(l, o);
        (o.family.is_some() && listed.is_empty())
            || (o.scope.is_some() && !l.addrs.is_empty() && listed.is_empty())
    }

    pub(super) fn render_links(&self, sel: &[&Link], o: Opts, with_addrs: bool) -> String {
        if o.json {
            let items = sel
                .iter()
                .filter(|l| !with_addrs || !Self::hidden_by_filter(l, &o))
                .map(|l| {
                    if o.brief {
                        self.brief_json(l, with_addrs, &o)
                    } else {
                        self.link_json(l, with_addrs, &o)
                    }
                })
                .collect();
            return o.json_out(items);
        }
        let mut out = String::new();
        for l in sel {
            let tentative = !l.v6_ready;
            if o.brief {
                let name = Self::display_name(l);
                if with_addrs {
                    if Self::hidden_by_filter(l, &o) {
                        continue;
                    }
                    let addrs: String = Self::listed_for(l, &o)
                        .iter()
                        .map(|(a, _)| format!("{}/{} ", a.local, a.prefixlen))
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
            if with_addrs && o.oneline {
                for (a, primary) in Self::listed_for(l, &o) {
                    let [first, second] = Self::addr_lines(l, a, tentative && a.is_v6(), primary);
                    out.push_str(&format!(
                        "{}: {}    {}\\{second}\n",
                        l.ifindex,
                        l.name,
                        first.trim_start()
                    ));
                }
                continue;
            }
            let family_only = with_addrs && o.family.is_some();
            let listed = Self::listed_for(l, &o);
            if with_addrs && Self::hidden_by_filter(l, &o) {
                continue;
            }
            // With a family filter and no device named, iproute2 prints the
            // short header of the address dump.
            let short = family_only && o.family == Some(6) && sel.len() != 1;
            let mut lines = vec![self.link_header(l, with_addrs, short)];
            if !family_only {
                let mut ll = Self::link_line(l);
                if o.details {
                    ll.push_str(&self.details(l));
                }
                lines.push(ll);
            }
            if o.stats && !with_addrs {
                lines.push(
                    "    RX:  bytes packets errors dropped  missed   mcast           ".into(),
                );
                lines.push("             0       0      0       0       0       0 ".into());
                lines.push(
                    "    TX:  bytes packets errors dropped carrier collsns           ".into(),
                );
                lines.push("             0       0      0       0       0       0 ".into());
            }
            if with_addrs {
                for (a, primary) in listed {
                    lines.extend(Self::addr_lines(l, a, tentative && a.is_v6(), primary));
                }
            }
            if o.oneline {
                out.push_str(&lines.join("\\"));
                out.push('\n');
            } else {
                for x in lines {
                    out.push_str(&x);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// `ip -br -j`: name, operstate and MAC/flags or bare addresses.
    pub(super) fn brief_json(&self, l: &Link, with_addrs: bool, o: &Opts) -> Json {
        let mut m: Vec<(&'static str, Json)> = Vec::new();
        if let Some(p) = &l.peer {
            m.push(("link", Json::str(p)));
        }
        m.push(("ifname", Json::str(&l.name)));
        m.push(("operstate", Json::str(self.operstate(l))));
        if with_addrs {
            let infos = Self::listed_for(l, o)
                .into_iter()
                .map(|(a, _)| {
                    Json::Obj(vec![
                        ("local", Json::str(&a.local)),
                        ("prefixlen", Json::Num(u64::from(a.prefixlen))),
                    ])
                })
                .collect();
            m.push(("addr_info", Json::Arr(infos)));
        } else {
            m.push(("address", Json::str(&l.mac)));
            m.push((
                "flags",
                Json::Arr(self.flags(l).into_iter().map(Json::str).collect()),
            ));
        }
        Json::Obj(m)
    }

    pub(super) fn link_json(&self, l: &Link, with_addrs: bool, o: &Opts) -> Json {
        let mut m: Vec<(&'static str, Json)> = vec![("ifindex", Json::Num(u64::from(l.ifindex)))];
        if let Some(p) = &l.peer {
            m.push(("link", Json::str(p)));
        }
        m.push(("ifname", Json::str(&l.name)));
        m.push((
            "flags",
            Json::Arr(self.flags(l).into_iter().map(Json::str).collect()),
        ));
        m.push(("mtu", Json::Num(u64::from(l.mtu))));
        m.push(("qdisc", Json::str(self.qdisc_of(l))));
        if let Some(ms) = &l.master {
            m.push(("master", Json::str(ms)));
        }
        m.push(("operstate", Json::str(self.operstate(l))));
        if !with_addrs {
            m.push(("linkmode", Json::str("DEFAULT")));
        }
        m.push(("group", Json::str("default")));
        m.push(("txqlen", Json::Num(u64::from(l.txqlen.unwrap_or(1000)))));
        let (lt, brd) = if l.kind == LinkKind::Loopback {
            ("loopback", "00:00:00:00:00:00")
        } else {
            ("ether", "ff:ff:ff:ff:ff:ff")
        };
        m.push(("link_type", Json::str(lt)));
        m.push(("address", Json::str(&l.mac)));
        m.push(("broadcast", Json::str(brd)));
        if with_addrs {
            // iproute2 prints an empty object for an address the scope
            // filter drops.
            let infos: Vec<Json> = Self::listed_addrs(l, o.family)
                .into_iter()
                .map(|(a, primary)| {
                    if o.scope.is_some_and(|sc| a.scope() != sc) {
                        return Json::Obj(Vec::new());
                    }
                    let mut am: Vec<(&'static str, Json)> = vec![
                        (
                            "family",
                            Json::str(if a.is_v6() { "inet6" } else { "inet" }),
                        ),
                        ("local", Json::str(&a.local)),
                        ("prefixlen", Json::Num(u64::from(a.prefixlen))),
                    ];
                    if let Some(b) = &a.broadcast {
                        am.push(("broadcast", Json::str(b)));
                    }
                    am.push(("scope", Json::str(a.scope())));
                    if !primary {
                        am.push(("secondary", Json::Arr(Vec::new())));
                    }
                    if a.nodad {
                        am.push(("nodad", Json::Arr(Vec::new())));
                    } else if a.is_v6() && !l.v6_ready {
                        am.push(("tentative", Json::Arr(Vec::new())));
                    }
                    if !a.is_v6() {
                        am.push(("label", Json::str(a.label.as_deref().unwrap_or(&l.name))));
                    }
                    am.push(("valid_life_time", Json::Num(4294967295)));
                    am.push(("preferred_life_time", Json::Num(4294967295)));
                    Json::Obj(am)
                })
                .collect();
            m.push(("addr_info", Json::Arr(infos)));
        }
        Json::Obj(m)
    }

    /// `ip -br link` plus addresses, one line per link, then one line per
    /// static route, for state dumps.
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
                LinkKind::Veth => "veth",
                LinkKind::Tap => "tap",
            };
            let mut master = l
                .master
                .as_ref()
                .map(|m| format!(" master {m}"))
                .unwrap_or_default();
            if let Some(p) = &l.peer {
                master.push_str(&format!(" peer {p}"));
            }
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

/// One line of `ip route show`.
#[derive(Debug, Clone)]
pub(super) struct RouteView {
    /// `local`/`broadcast` in the local table.
    pub(super) kind: Option<&'static str>,
    pub(super) dst: String,
    pub(super) via: Option<String>,
    pub(super) dev: String,
    pub(super) kernel: bool,
    pub(super) scope: Option<&'static str>,
    pub(super) src: Option<String>,
    pub(super) metric: Option<u32>,
    pub(super) linkdown: bool,
    pub(super) v6: bool,
    pub(super) seq: u64,
}

impl RouteView {
    pub(super) fn text(&self, dev_given: bool) -> String {
        let mut s = String::new();
        if let Some(k) = self.kind {
            s.push_str(k);
            s.push(' ');
        }
        s.push_str(&self.dst);
        if let Some(v) = &self.via {
            s.push_str(&format!(" via {v}"));
        }
        if !dev_given {
            s.push_str(&format!(" dev {}", self.dev));
        }
        if self.kernel {
            s.push_str(" proto kernel");
        }
        if let Some(sc) = self.scope {
            s.push_str(&format!(" scope {sc}"));
        }
        if let Some(src) = &self.src {
            s.push_str(&format!(" src {src}"));
        }
        if let Some(m) = self.metric {
            s.push_str(&format!(" metric {m}"));
        }
        if self.linkdown {
            s.push_str(" linkdown");
        }
        if self.v6 {
            s.push_str(" pref medium");
        } else {
            s.push(' ');
        }
        s
    }

    pub(super) fn json(&self, dev_given: bool) -> Json {
        let mut m: Vec<(&'static str, Json)> = Vec::new();
        if let Some(k) = self.kind {
            m.push(("type", Json::str(k)));
        }
        m.push(("dst", Json::str(&self.dst)));
        if let Some(v) = &self.via {
            m.push(("gateway", Json::str(v)));
        }
        if !dev_given {
            m.push(("dev", Json::str(&self.dev)));
        }
        if self.kernel {
            m.push(("protocol", Json::str("kernel")));
        }
        if let Some(sc) = self.scope {
            m.push(("scope", Json::str(sc)));
        }
        if let Some(src) = &self.src {
            m.push(("prefsrc", Json::str(src)));
        }
        if let Some(x) = self.metric {
            m.push(("metric", Json::Num(u64::from(x))));
        }
        let flags = if self.linkdown {
            vec![Json::str("linkdown")]
        } else {
            Vec::new()
        };
        m.push(("flags", Json::Arr(flags)));
        if self.v6 {
            m.push(("pref", Json::str("medium")));
        }
        Json::Obj(m)
    }
}
