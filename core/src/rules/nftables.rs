//! nftables backend rules (libvirt 11.3.0 `network_nftables.c`).
//!
//! Rules live in the private table `libvirt_network` of family `ip` / `ip6`;
//! every rule is an `insert rule` in one AUTO_ROLLBACK transaction, so it
//! runs as `nft -ae insert rule ...` and its handle is captured for the
//! removal plan. The bridge is matched by index (`iif`/`oif`), the forward
//! device by name (`iifname`/`oifname`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::iptables::with_nat;
use super::{
    bridge_of, ip_rule_kind, nat_port_range, network_str, Args, IpRuleKind, NatTarget,
    PrivateChains, RulesError, LOCAL_BROADCAST_V4, LOCAL_MULTICAST_V4, LOCAL_MULTICAST_V6,
};
use crate::firewall::{
    query_callback, Backend, CallbackCtx, Firewall, FirewallError, Layer, TransactionFlags,
};
use crate::netxml::{IpDef, NatDef, NetworkDef};

pub const TABLE: &str = "libvirt_network";
pub const CHAIN_FORWARD: &str = "forward";
pub const CHAIN_FWD_IN: &str = "guest_input";
pub const CHAIN_FWD_OUT: &str = "guest_output";
pub const CHAIN_FWD_X: &str = "guest_cross";
pub const CHAIN_NAT: &str = "guest_nat";

/// The private chains in libvirt's order: (chain, parent, extra argument).
pub const PRIVATE_CHAINS: [(&str, Option<&str>, Option<&str>); 5] = [
    (
        CHAIN_FORWARD,
        None,
        Some("{ type filter hook forward priority 0; policy accept; }"),
    ),
    (CHAIN_FWD_OUT, Some(CHAIN_FORWARD), None),
    (CHAIN_FWD_IN, Some(CHAIN_FORWARD), None),
    (CHAIN_FWD_X, Some(CHAIN_FORWARD), None),
    (
        CHAIN_NAT,
        None,
        Some("{ type nat hook postrouting priority 100; policy accept; }"),
    ),
];

fn layer_of(ip: &IpDef) -> Layer {
    if ip.is_ipv4() {
        Layer::Ipv4
    } else {
        Layer::Ipv6
    }
}

struct Net {
    bridge: String,
    dev: Option<String>,
}

/// `insert rule FAM libvirt_network CHAIN`, the head of every rule; the
/// caller pushes the rest and hands the words to [`add`].
fn insert(layer: Layer, chain: &str) -> Args<'_> {
    let mut a = Args::new();
    a.extend_from_slice(&["insert", "rule", layer.nft_family(), TABLE, chain]);
    a
}

fn add(fw: &mut Firewall, layer: Layer, args: &[&str]) {
    fw.add_cmd(layer, args.iter().copied());
}

fn reject_out(fw: &mut Firewall, layer: Layer, br: &str) {
    let mut a = insert(layer, CHAIN_FWD_OUT);
    a.extend_from_slice(&["iif", br, "counter", "reject"]);
    add(fw, layer, &a);
}

fn reject_in(fw: &mut Firewall, layer: Layer, br: &str) {
    let mut a = insert(layer, CHAIN_FWD_IN);
    a.extend_from_slice(&["oif", br, "counter", "reject"]);
    add(fw, layer, &a);
}

fn allow_cross(fw: &mut Firewall, layer: Layer, br: &str) {
    let mut a = insert(layer, CHAIN_FWD_X);
    a.extend_from_slice(&["iif", br, "oif", br, "counter", "accept"]);
    add(fw, layer, &a);
}

fn allow_out(fw: &mut Firewall, layer: Layer, netw: &str, n: &Net) {
    let fam = layer.nft_family();
    let mut a = insert(layer, CHAIN_FWD_OUT);
    a.extend_from_slice(&[fam, "saddr", netw, "iif", &n.bridge]);
    if let Some(dev) = n.dev.as_deref() {
        a.extend_from_slice(&["oifname", dev]);
    }
    a.extend_from_slice(&["counter", "accept"]);
    add(fw, layer, &a);
}

fn allow_related_in(fw: &mut Firewall, layer: Layer, netw: &str, n: &Net) {
    let fam = layer.nft_family();
    let mut a = insert(layer, CHAIN_FWD_IN);
    if let Some(dev) = n.dev.as_deref() {
        a.extend_from_slice(&["iifname", dev]);
    }
    a.extend_from_slice(&[
        "oif",
        &n.bridge,
        fam,
        "daddr",
        netw,
        "ct",
        "state",
        "related,established",
        "counter",
        "accept",
    ]);
    add(fw, layer, &a);
}

fn allow_in(fw: &mut Firewall, layer: Layer, netw: &str, n: &Net) {
    let fam = layer.nft_family();
    let mut a = insert(layer, CHAIN_FWD_IN);
    a.extend_from_slice(&[fam, "daddr", netw]);
    if let Some(dev) = n.dev.as_deref() {
        a.extend_from_slice(&["iifname", dev]);
    }
    a.extend_from_slice(&["oif", &n.bridge, "counter", "accept"]);
    add(fw, layer, &a);
}

/// One masquerade / SNAT rule; `proto` rules use the port range of
/// `target` (see [`NatTarget::set_ports`]).
fn masquerade(
    fw: &mut Firewall,
    layer: Layer,
    netw: &str,
    n: &Net,
    target: &NatTarget,
    proto: Option<&str>,
) {
    if super::masquerade_sabotaged() {
        return;
    }
    let fam = layer.nft_family();
    let mut a = insert(layer, CHAIN_NAT);
    if let Some(p) = proto {
        a.extend_from_slice(&["meta", "l4proto", p]);
    }
    a.extend_from_slice(&[fam, "saddr", netw, fam, "daddr", "!=", netw]);
    if let Some(dev) = n.dev.as_deref() {
        a.extend_from_slice(&["oifname", dev]);
    }
    match (target.snat, proto.is_some()) {
        (true, false) => a.extend_from_slice(&["counter", "snat", "to", &target.plain]),
        (true, true) => a.extend_from_slice(&["counter", "snat", "to", &target.ports]),
        (false, false) => a.extend_from_slice(&["counter", "masquerade"]),
        (false, true) => a.extend_from_slice(&["counter", "masquerade", "to", &target.ports]),
    }
    add(fw, layer, &a);
}

fn dont_masquerade(fw: &mut Firewall, layer: Layer, netw: &str, n: &Net, dest: &str) {
    let fam = layer.nft_family();
    let mut a = insert(layer, CHAIN_NAT);
    if let Some(dev) = n.dev.as_deref() {
        a.extend_from_slice(&["oifname", dev]);
    }
    a.extend_from_slice(&[fam, "saddr", netw, fam, "daddr", dest, "counter", "return"]);
    add(fw, layer, &a);
}

/// The tc filter that fixes DHCP reply checksums, and its inverse.
fn tc_csum_args<'a>(verb: &'a str, br: &'a str) -> [&'a str; 21] {
    [
        "filter", verb, "dev", br, "prio", "2", "protocol", "ip", "parent", "1:", "u32", "match",
        "ip", "dport", "68", "ffff", "action", "csum", "ip", "and", "udp",
    ]
}

fn add_ip_specific(
    fw: &mut Firewall,
    kind: IpRuleKind,
    ip: &IpDef,
    n: &Net,
    nat: &mut NatDef,
) -> Result<(), RulesError> {
    if kind == IpRuleKind::Nothing {
        return Ok(());
    }
    let netw = network_str(ip).ok_or_else(|| RulesError::InvalidPrefix {
        bridge: n.bridge.clone(),
    })?;
    let layer = layer_of(ip);
    match kind {
        IpRuleKind::Masquerade => {
            allow_out(fw, layer, &netw, n);
            allow_related_in(fw, layer, &netw, n);
            let mut target = NatTarget::new(ip, nat);
            masquerade(fw, layer, &netw, n, &target, None);
            target.set_ports(nat_port_range(nat)?, true);
            masquerade(fw, layer, &netw, n, &target, Some("udp"));
            masquerade(fw, layer, &netw, n, &target, Some("tcp"));
            if ip.is_ipv4() {
                dont_masquerade(fw, layer, &netw, n, LOCAL_BROADCAST_V4);
                dont_masquerade(fw, layer, &netw, n, LOCAL_MULTICAST_V4);
            } else {
                dont_masquerade(fw, layer, &netw, n, LOCAL_MULTICAST_V6);
            }
        }
        IpRuleKind::Routing => {
            allow_out(fw, layer, &netw, n);
            allow_in(fw, layer, &netw, n);
        }
        IpRuleKind::Nothing => {}
    }
    Ok(())
}

/// libvirt 11.3.0 `nftablesAddFirewallRules` (before apply, without the tc
/// qdisc probe it runs directly): one AUTO_ROLLBACK group with the tc
/// checksum filter (its `filter del` registered as the first rollback),
/// the general reject/cross rules for IPv4 and, if enabled, IPv6, then the
/// per-address rules.
///
/// Each command's words are assembled on the stack from `&str`s (the
/// network's address string is formatted once per `<ip>`, the NAT target
/// once per masqueraded `<ip>`), so the only allocations are the plan's own.
pub fn network_rules(def: &mut NetworkDef) -> Result<Firewall, RulesError> {
    with_nat(def, |def, nat| {
        let n = Net {
            bridge: bridge_of(def)?,
            dev: def.forward_dev().map(str::to_string),
        };
        let br = n.bridge.as_str();
        let mut fw = Firewall::new(Backend::Nftables);
        fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
        fw.add_cmd(Layer::Tc, tc_csum_args("add", br));
        fw.add_rollback_cmd(Layer::Tc, tc_csum_args("del", br));
        reject_out(&mut fw, Layer::Ipv4, br);
        reject_in(&mut fw, Layer::Ipv4, br);
        allow_cross(&mut fw, Layer::Ipv4, br);
        if def.ipv6_enabled() {
            reject_out(&mut fw, Layer::Ipv6, br);
            reject_in(&mut fw, Layer::Ipv6, br);
            allow_cross(&mut fw, Layer::Ipv6, br);
        }
        for ip in &def.ips {
            add_ip_specific(&mut fw, ip_rule_kind(def, ip), ip, &n, nat)?;
        }
        Ok(fw)
    })
}

/// What `nft list table FAM libvirt_network` says: whether the table
/// exists, the chains it has, and per jump target the chain jumping to it.
pub(crate) fn parse_list_table(
    lines: &[&str],
    table_line: &str,
) -> (bool, Vec<String>, HashMap<String, String>) {
    let mut table = false;
    let mut chains = Vec::new();
    let mut links = HashMap::new();
    let mut current: Option<String> = None;
    for line in lines {
        // g_ascii_isspace: also vertical tab, which Rust's ASCII whitespace lacks.
        let pos = line.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
        if pos == table_line {
            table = true;
        } else if let Some(rest) = pos.strip_prefix("chain ") {
            match rest.split_once(' ') {
                Some((name, _)) => {
                    chains.push(name.to_string());
                    current = Some(name.to_string());
                }
                None => current = Some(rest.to_string()),
            }
        } else if let Some(idx) = pos.find("jump ") {
            if let Some(chain) = &current {
                links.insert(pos[idx + 5..].to_string(), chain.clone());
            }
        }
    }
    (table, chains, links)
}

/// `nftablesSetupPrivateChains(layer)`: one transaction (flags 0) with
/// `list table FAM libvirt_network`, whose callback queues the table, the
/// missing chains and the missing jumps from `forward`.
pub fn private_chains(layer: Layer) -> PrivateChains {
    let changed = Arc::new(AtomicBool::new(false));
    let fam = layer.nft_family();
    let mut fw = Firewall::new(Backend::Nftables);
    fw.start_transaction(TransactionFlags::NONE);
    let flag = Arc::clone(&changed);
    let cb = query_callback(
        move |ctx: &mut CallbackCtx<'_>, layer: Layer, lines: &[&str]| {
            let fam = layer.nft_family();
            let table_line = format!("table {fam} {TABLE} {{");
            let (table, chains, links) = parse_list_table(lines, &table_line);
            if !table {
                ctx.add_cmd(layer, ["add", "table", fam, TABLE]);
            }
            for (chain, parent, extra) in PRIVATE_CHAINS {
                if !(table && chains.iter().any(|c| c == chain)) {
                    let mut args = vec!["add", "chain", fam, TABLE, chain];
                    args.extend(extra);
                    ctx.add_cmd(layer, args);
                    flag.store(true, Ordering::SeqCst);
                }
                if let Some(parent) = parent {
                    if links.get(chain).map(String::as_str) != Some(parent) {
                        ctx.add_cmd(
                            layer,
                            [
                                "insert", "rule", fam, TABLE, parent, "counter", "jump", chain,
                            ],
                        );
                    }
                }
            }
            Ok::<(), FirewallError>(())
        },
    );
    fw.add_cmd_full(layer, false, Some(cb), ["list", "table", fam, TABLE]);
    PrivateChains {
        firewall: fw,
        changed,
    }
}
