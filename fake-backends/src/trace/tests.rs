//! The tracer on small hand-made rulesets.

use super::*;
use virtnet_runner::Cmd;

/// A host with a guest bridge (virbr0, 192.168.122.1/24, fd00::1/64) and an
/// uplink (eth0, 10.0.0.2/24, 2001:db8::2/64, default routes), forwarding
/// on, and the given nft script loaded.
fn host(script: &str) -> HostState {
    let mut st = HostState::new();
    st.ip.dummy_driver = true;
    let cmds = [
        "ip link add virbr0 type bridge",
        "ip addr add 192.168.122.1/24 dev virbr0",
        "ip addr add fd00::1/64 dev virbr0",
        "ip link set virbr0 up",
        "ip link add eth0 type dummy",
        "ip addr add 10.0.0.2/24 dev eth0",
        "ip addr add 2001:db8::2/64 dev eth0",
        "ip link set eth0 up",
        "ip route add default via 10.0.0.1",
        "ip -6 route add default via 2001:db8::1",
        "sysctl -w net.ipv4.ip_forward=1",
        "sysctl -w net.ipv6.conf.all.forwarding=1",
    ];
    for c in cmds {
        let out = crate::simulate(&mut st, &Cmd::new(c.split(' ')));
        assert!(out.success(), "{c}: {}", out.stderr);
    }
    if !script.is_empty() {
        let out = crate::simulate(&mut st, &Cmd::new(["nft", "-f", "-"]).with_stdin(script));
        assert!(out.success(), "{script}: {}", out.stderr);
    }
    st
}

fn run(st: &HostState, ct: &mut Conntrack, flow: &str) -> Trace {
    let f: Flow = flow.parse().unwrap();
    trace(st, ct, &f).unwrap_or_else(|e| panic!("{flow}: {e}"))
}

fn one(st: &HostState, flow: &str) -> Trace {
    run(st, &mut Conntrack::default(), flow)
}

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const JUMPS: &str = "table ip t {
	chain fw {
		type filter hook forward priority filter; policy drop;
		jump a
		udp dport 53 accept
	}
	chain a {
		goto b
		drop
	}
	chain b {
		tcp dport 22 return
		udp dport 53 return
		tcp dport 80 accept
	}
}
";

#[test]
fn jump_goto_return_and_policy() {
    let st = host(JUMPS);
    // accept in the chain reached by goto.
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 10.0.0.9 tcp sport 40000 dport 80",
    );
    assert!(matches!(t.outcome, Outcome::Delivered { .. }), "{t}");
    // return from b goes back to fwd (goto replaced a): the `drop` of a is
    // never reached, the next rule of fwd accepts.
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 10.0.0.9 udp sport 40000 dport 53",
    );
    assert!(matches!(t.outcome, Outcome::Delivered { .. }), "{t}");
    let chains: Vec<&str> = t
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Rule { chain, .. } => Some(chain.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(chains, ["fw", "a", "b", "fw"], "{t}");
    // return, then the end of fwd: its policy drop.
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 10.0.0.9 tcp sport 40000 dport 22",
    );
    assert_eq!(
        t.outcome,
        Outcome::Dropped {
            hook: "forward".into(),
            family: "ip".into(),
            table: "t".into(),
            chain: "fw".into(),
            handle: None,
            rule: None
        },
        "{t}"
    );
    assert!(t.to_string().contains("forward ip t fw policy drop"), "{t}");
    // Falling off the end of b (entered by goto) also returns to fwd.
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 10.0.0.9 tcp sport 40000 dport 443",
    );
    assert!(
        matches!(t.outcome, Outcome::Dropped { handle: None, .. }),
        "{t}"
    );
}

#[test]
fn accept_continues_to_the_next_base_chain_drop_ends() {
    let st = host(
        "table ip late {
	chain f {
		type filter hook forward priority 10; policy accept;
		udp dport 9 drop
	}
}
table ip early {
	chain f {
		type filter hook forward priority -10; policy accept;
		accept
	}
}
",
    );
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 10.0.0.9 udp sport 40000 dport 9",
    );
    assert!(
        matches!(&t.outcome, Outcome::Dropped { table, handle: Some(_), .. } if table == "late"),
        "{t}"
    );
    let tables: Vec<&str> = t
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Rule { table, .. } => Some(table.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(tables, ["early", "late"], "{t}");
    // Another port: accepted by both.
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 10.0.0.9 udp sport 40000 dport 10",
    );
    assert!(matches!(t.outcome, Outcome::Delivered { .. }), "{t}");
    // A drop in the earlier chain ends the path: the later one never runs.
    let st = host(
        "table ip a {
	chain f {
		type filter hook forward priority 5; policy accept;
		accept
	}
}
table ip b {
	chain f {
		type filter hook forward priority -5; policy drop;
	}
}
",
    );
    let t = one(&st, "from virbr0 192.168.122.5 to 10.0.0.9 icmp");
    assert!(
        matches!(&t.outcome, Outcome::Dropped { table, handle: None, .. } if table == "b"),
        "{t}"
    );
    assert!(!t
        .steps
        .iter()
        .any(|s| matches!(s, Step::Rule { table, .. } if table == "a")));
}

const NAT: &str = "table ip n {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		meta l4proto udp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade to :1024-65535
		ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade
	}
	chain fw {
		type filter hook forward priority filter; policy drop;
		iif \"virbr0\" ip saddr 192.168.122.0/24 accept
		oif \"virbr0\" ip daddr 192.168.122.0/24 ct state established,related accept
	}
}
";

#[test]
fn masquerade_with_port_range() {
    let st = host(NAT);
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 8.8.8.8 udp sport 500 dport 53",
    );
    assert_eq!(
        t.outcome,
        Outcome::Delivered {
            oif: "eth0".into(),
            src: a("10.0.0.2"),
            sport: Some(1024),
            dst: a("8.8.8.8"),
            dport: Some(53)
        },
        "{t}"
    );
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 8.8.8.8 udp sport 40000 dport 53",
    );
    assert!(
        matches!(
            t.outcome,
            Outcome::Delivered {
                sport: Some(40000),
                ..
            }
        ),
        "{t}"
    );
    // tcp takes the rule without ports: the source port stays.
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 8.8.8.8 tcp sport 500 dport 80",
    );
    assert!(
        matches!(
            t.outcome,
            Outcome::Delivered {
                sport: Some(500),
                ..
            }
        ),
        "{t}"
    );
}

#[test]
fn conntrack_reply_gets_the_reverse_nat() {
    let st = host(NAT);
    let mut ct = Conntrack::default();
    run(
        &st,
        &mut ct,
        "from virbr0 192.168.122.5 to 8.8.8.8 udp sport 500 dport 53",
    );
    // New from outside: dropped by the policy.
    let t = run(
        &st,
        &mut ct,
        "from eth0 8.8.8.8 to 192.168.122.5 udp sport 53 dport 500",
    );
    assert!(
        matches!(t.outcome, Outcome::Dropped { handle: None, .. }),
        "{t}"
    );
    // The reply (to the masqueraded address and port) is established and
    // reaches the guest with its own address and port.
    let t = run(
        &st,
        &mut ct,
        "from eth0 8.8.8.8 to 10.0.0.2 udp sport 53 dport 1024 reply",
    );
    assert_eq!(
        t.outcome,
        Outcome::Delivered {
            oif: "virbr0".into(),
            src: a("8.8.8.8"),
            sport: Some(53),
            dst: a("192.168.122.5"),
            dport: Some(500)
        },
        "{t}"
    );
    assert!(matches!(&t.steps[0], Step::Conntrack { state, .. } if state == "established"));
    // The nat chain does not see the reply.
    assert!(!t
        .steps
        .iter()
        .any(|s| matches!(s, Step::Rule { chain, .. } if chain == "post")));
    // An ICMP error about the flow is related.
    let t = run(&st, &mut ct, "from eth0 8.8.8.8 to 10.0.0.2 icmp reply");
    assert!(matches!(&t.steps[0], Step::Conntrack { state, .. } if state == "related"));
    assert!(
        matches!(&t.outcome, Outcome::Delivered { dst, .. } if *dst == a("192.168.122.5")),
        "{t}"
    );
    // `reply` with no such connection is an error.
    let f: Flow = "from eth0 8.8.8.8 to 10.0.0.2 udp sport 53 dport 999 reply"
        .parse()
        .unwrap();
    assert!(matches!(
        trace(&st, &mut ct, &f),
        Err(TraceError::NoConnection(_))
    ));
}

#[test]
fn ipv6_flow() {
    let st = host(
        "table ip6 f {
	chain fw {
		type filter hook forward priority filter; policy drop;
		iifname \"virbr*\" ip6 saddr fd00::/64 accept
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip6 saddr fd00::/64 ip6 daddr != fd00::/64 masquerade
	}
}
",
    );
    let t = one(
        &st,
        "from virbr0 fd00::5 to 2001:db8:1::1 tcp sport 40000 dport 443",
    );
    assert_eq!(
        t.outcome,
        Outcome::Delivered {
            oif: "eth0".into(),
            src: a("2001:db8::2"),
            sport: Some(40000),
            dst: a("2001:db8:1::1"),
            dport: Some(443)
        },
        "{t}"
    );
    let t = one(&st, "from eth0 2001:db8:1::1 to fd00::5 icmpv6");
    assert!(
        matches!(t.outcome, Outcome::Dropped { handle: None, .. }),
        "{t}"
    );
    // The IPv4 table does not see IPv6 packets and vice versa.
    let t = one(&st, "from virbr0 192.168.122.5 to 10.0.0.9 icmp");
    assert!(matches!(t.outcome, Outcome::Delivered { .. }), "{t}");
}

#[test]
fn routing_local_unreachable_forwarding_off() {
    let mut st = host("");
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 192.168.122.1 udp sport 68 dport 67",
    );
    assert!(
        matches!(
            t.outcome,
            Outcome::Local {
                dport: Some(67),
                ..
            }
        ),
        "{t}"
    );
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 255.255.255.255 udp sport 68 dport 67",
    );
    assert!(matches!(t.outcome, Outcome::Local { .. }), "{t}");
    let out = crate::simulate(&mut st, &Cmd::new(["ip", "route", "del", "default"]));
    assert!(out.success(), "{}", out.stderr);
    let t = one(&st, "from virbr0 192.168.122.5 to 8.8.8.8 icmp");
    assert!(matches!(t.outcome, Outcome::Unreachable { .. }), "{t}");
    let out = crate::simulate(
        &mut st,
        &Cmd::new(["sysctl", "-w", "net.ipv4.ip_forward=0"]),
    );
    assert!(out.success(), "{}", out.stderr);
    let t = one(&st, "from virbr0 192.168.122.5 to 10.0.0.9 icmp");
    assert!(
        matches!(&t.outcome, Outcome::Unreachable { reason } if reason.contains("forwarding")),
        "{t}"
    );
    let f: Flow = "from nosuch0 1.2.3.4 to 10.0.0.2 icmp".parse().unwrap();
    assert!(matches!(
        trace(&st, &mut Conntrack::default(), &f),
        Err(TraceError::NoInterface(_))
    ));
}

#[test]
fn dnat_and_reject() {
    let st = host(
        "table inet x {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname \"eth0\" tcp dport 8080 dnat ip to 192.168.122.5:80
	}
	chain fw {
		type filter hook forward priority filter; policy accept;
		ip daddr 192.168.122.5 tcp dport 80 accept
		iifname \"eth0\" reject with icmpx admin-prohibited
	}
}
",
    );
    let mut ct = Conntrack::default();
    let t = run(
        &st,
        &mut ct,
        "from eth0 10.0.0.9 to 10.0.0.2 tcp sport 5000 dport 8080",
    );
    assert!(
        matches!(&t.outcome, Outcome::Delivered { oif, dst, dport: Some(80), .. }
            if oif == "virbr0" && *dst == a("192.168.122.5")),
        "{t}"
    );
    // The reply leaves with the address the client talked to.
    let t = run(
        &st,
        &mut ct,
        "from virbr0 192.168.122.5 to 10.0.0.9 tcp sport 80 dport 5000 reply",
    );
    assert!(
        matches!(&t.outcome, Outcome::Delivered { src, sport: Some(8080), .. } if *src == a("10.0.0.2")),
        "{t}"
    );
    let t = run(
        &st,
        &mut ct,
        "from eth0 10.0.0.9 to 192.168.122.5 tcp sport 5000 dport 22",
    );
    assert!(
        matches!(&t.outcome, Outcome::Rejected { with, .. } if with == "icmpx admin-prohibited"),
        "{t}"
    );
}

#[test]
fn unsupported_is_an_error_naming_it() {
    let st = host(
        "table ip t {
	chain fw {
		type filter hook forward priority filter; policy accept;
		limit rate over 10/second accept
		ct mark 1 accept
	}
}
",
    );
    let f: Flow = "from virbr0 192.168.122.5 to 10.0.0.9 udp dport 53"
        .parse()
        .unwrap();
    let e = trace(&st, &mut Conntrack::default(), &f).unwrap_err();
    assert_eq!(
        e.to_string(),
        "trace: cannot evaluate 'ct mark' in table ip t chain fw"
    );
}

#[test]
fn serde_round_trip() {
    let st = host(NAT);
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 8.8.8.8 udp sport 500 dport 53",
    );
    let j = serde_json::to_string(&t).unwrap();
    let back: Trace = serde_json::from_str(&j).unwrap();
    assert_eq!(back, t);
}

const MASQ: &str = "table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 meta l4proto udp masquerade to :1024-65535
		ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade
	}
}
";

#[test]
fn masquerade_keeps_reply_tuples_unique_and_replies_reach_their_sender() {
    let st = host(MASQ);
    let mut ct = Conntrack::default();
    let t1 = run(
        &st,
        &mut ct,
        "from virbr0 192.168.122.5 to 10.0.0.9 udp sport 40000 dport 53",
    );
    let t2 = run(
        &st,
        &mut ct,
        "from virbr0 192.168.122.6 to 10.0.0.9 udp sport 40000 dport 53",
    );
    let port = |t: &Trace| match t.outcome {
        Outcome::Delivered { src, sport, .. } => (src, sport),
        ref o => panic!("{o}"),
    };
    // The first keeps its port, the second gets the next free one (the
    // kernel never gives two connections one reply tuple).
    assert_eq!(port(&t1), (a("10.0.0.2"), Some(40000)), "{t1}");
    assert_eq!(port(&t2), (a("10.0.0.2"), Some(40001)), "{t2}");
    let r1 = run(
        &st,
        &mut ct,
        "from eth0 10.0.0.9 to 10.0.0.2 udp sport 53 dport 40000 reply",
    );
    let r2 = run(
        &st,
        &mut ct,
        "from eth0 10.0.0.9 to 10.0.0.2 udp sport 53 dport 40001 reply",
    );
    let dst = |t: &Trace| match t.outcome {
        Outcome::Delivered { dst, dport, .. } => (dst, dport),
        ref o => panic!("{o}"),
    };
    assert_eq!(dst(&r1), (a("192.168.122.5"), Some(40000)), "{r1}");
    assert_eq!(dst(&r2), (a("192.168.122.6"), Some(40000)), "{r2}");
    // ICMP has no ids here: two pings share a reply tuple, the newest
    // connection gets the reply.
    run(&st, &mut ct, "from virbr0 192.168.122.5 to 10.0.0.9 icmp");
    run(&st, &mut ct, "from virbr0 192.168.122.6 to 10.0.0.9 icmp");
    let r = run(&st, &mut ct, "from eth0 10.0.0.9 to 10.0.0.2 icmp reply");
    assert!(
        matches!(r.outcome, Outcome::Delivered { dst, .. } if dst == a("192.168.122.6")),
        "{r}"
    );
}

#[test]
fn masquerade_uses_the_address_in_the_destinations_subnet() {
    let mut st = host(MASQ);
    let out = crate::simulate(
        &mut st,
        &Cmd::new(["ip", "addr", "add", "192.168.128.1/24", "dev", "virbr0"]),
    );
    assert!(out.success(), "{}", out.stderr);
    // Between two subnets of one bridge: the bridge's address in the
    // receiver's subnet, not its first address.
    let t = one(&st, "from virbr0 192.168.122.5 to 192.168.128.9 icmp");
    assert!(
        matches!(t.outcome, Outcome::Delivered { src, ref oif, .. } if src == a("192.168.128.1") && oif == "virbr0"),
        "{t}"
    );
}

/// Verdict maps (the batched layout's base chains): an interface map and
/// an interval map on the source address reach per-network chains; a key
/// in no element makes the rule not match.
#[test]
fn verdict_maps_reach_their_chains() {
    let st = host(
        "table ip v {
	map fwd_in {
		type ifname : verdict
		elements = { virbr0 : jump net_in }
	}
	map nat_src {
		type ipv4_addr : verdict
		flags interval
		elements = { 192.168.122.0/24 : jump net_nat }
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname vmap @fwd_in
		iifname vmap { eth9 : drop }
	}
	chain net_in {
		tcp dport 22 reject
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr vmap @nat_src
	}
	chain net_nat {
		ip daddr != 192.168.122.0/24 masquerade
	}
}
",
    );
    // Into virbr0: the map jumps to net_in, which rejects ssh.
    let t = one(
        &st,
        "from eth0 10.0.0.9 to 192.168.122.5 tcp sport 5000 dport 22",
    );
    assert!(matches!(&t.outcome, Outcome::Rejected { .. }), "{t}");
    // Out of the guest network: no forward element for eth0, the source is
    // in the interval map's element: masqueraded.
    let t = one(
        &st,
        "from virbr0 192.168.122.5 to 10.0.0.9 udp sport 500 dport 53",
    );
    assert!(
        matches!(&t.outcome, Outcome::Delivered { src, .. } if *src == a("10.0.0.2")),
        "{t}"
    );
    // A source in no element: not translated.
    let t = one(
        &st,
        "from virbr0 172.16.0.5 to 10.0.0.9 udp sport 500 dport 53",
    );
    assert!(
        matches!(&t.outcome, Outcome::Delivered { src, .. } if *src == a("172.16.0.5")),
        "{t}"
    );
}
