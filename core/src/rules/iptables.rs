//! iptables backend rules (libvirt 11.3.0 `network_iptables.c`; the same
//! rules as libvirt 9.0.0's `viriptables.c`).
//!
//! Every rule is written with long options and `--insert` (or `--delete`
//! for removals); `iptables`/`ip6tables` and `-w` come from the layer at
//! exec time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{
    bridge_of, ip_rule_kind, nat_port_range, network_str, Args, IpRuleKind, NatTarget,
    PrivateChains, RulesError, LOCAL_BROADCAST_V4, LOCAL_MULTICAST_V4, LOCAL_MULTICAST_V6,
};
use crate::firewall::{
    query_callback, Backend, CallbackCtx, Firewall, FirewallError, Layer, TransactionFlags,
};
use crate::netxml::{IpDef, NatDef, NetworkDef};

pub const CHAIN_INPUT: &str = "LIBVIRT_INP";
pub const CHAIN_OUTPUT: &str = "LIBVIRT_OUT";
pub const CHAIN_FWD_IN: &str = "LIBVIRT_FWI";
pub const CHAIN_FWD_OUT: &str = "LIBVIRT_FWO";
pub const CHAIN_FWD_X: &str = "LIBVIRT_FWX";
pub const CHAIN_POSTROUTING: &str = "LIBVIRT_PRT";

/// `--insert` or `--delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Insert,
    Delete,
}

impl Action {
    fn arg(self) -> &'static str {
        match self {
            Action::Insert => "--insert",
            Action::Delete => "--delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

fn layer_of(ip: &IpDef) -> Layer {
    if ip.is_ipv4() {
        Layer::Ipv4
    } else {
        Layer::Ipv6
    }
}

/// Shared inputs of one network's rules.
struct Net {
    bridge: String,
    dev: Option<String>,
}

impl Net {
    fn of(def: &NetworkDef) -> Result<Net, RulesError> {
        Ok(Net {
            bridge: bridge_of(def)?,
            dev: def.forward_dev().map(str::to_string),
        })
    }
}

fn input(fw: &mut Firewall, layer: Layer, br: &str, port: &str, a: Action, p: Proto) {
    fw.add_cmd(
        layer,
        [
            "--table",
            "filter",
            a.arg(),
            CHAIN_INPUT,
            "--in-interface",
            br,
            "--protocol",
            p.as_str(),
            "--destination-port",
            port,
            "--jump",
            "ACCEPT",
        ],
    );
}

fn output(fw: &mut Firewall, layer: Layer, br: &str, port: &str, a: Action, p: Proto) {
    fw.add_cmd(
        layer,
        [
            "--table",
            "filter",
            a.arg(),
            CHAIN_OUTPUT,
            "--out-interface",
            br,
            "--protocol",
            p.as_str(),
            "--destination-port",
            port,
            "--jump",
            "ACCEPT",
        ],
    );
}

fn reject_out(fw: &mut Firewall, layer: Layer, br: &str, a: Action) {
    fw.add_cmd(
        layer,
        [
            "--table",
            "filter",
            a.arg(),
            CHAIN_FWD_OUT,
            "--in-interface",
            br,
            "--jump",
            "REJECT",
        ],
    );
}

fn reject_in(fw: &mut Firewall, layer: Layer, br: &str, a: Action) {
    fw.add_cmd(
        layer,
        [
            "--table",
            "filter",
            a.arg(),
            CHAIN_FWD_IN,
            "--out-interface",
            br,
            "--jump",
            "REJECT",
        ],
    );
}

fn allow_cross(fw: &mut Firewall, layer: Layer, br: &str, a: Action) {
    fw.add_cmd(
        layer,
        [
            "--table",
            "filter",
            a.arg(),
            CHAIN_FWD_X,
            "--in-interface",
            br,
            "--out-interface",
            br,
            "--jump",
            "ACCEPT",
        ],
    );
}

fn allow_out(fw: &mut Firewall, layer: Layer, netw: &str, n: &Net, a: Action) {
    let mut args = Args::new();
    args.extend_from_slice(&[
        "--table",
        "filter",
        a.arg(),
        CHAIN_FWD_OUT,
        "--source",
        netw,
        "--in-interface",
        &n.bridge,
    ]);
    if let Some(dev) = n.dev.as_deref() {
        args.extend_from_slice(&["--out-interface", dev]);
    }
    args.extend_from_slice(&["--jump", "ACCEPT"]);
    add(fw, layer, &args);
}

fn allow_related_in(fw: &mut Firewall, layer: Layer, netw: &str, n: &Net, a: Action) {
    let mut args = Args::new();
    args.extend_from_slice(&[
        "--table",
        "filter",
        a.arg(),
        CHAIN_FWD_IN,
        "--destination",
        netw,
    ]);
    if let Some(dev) = n.dev.as_deref() {
        args.extend_from_slice(&["--in-interface", dev]);
    }
    args.extend_from_slice(&[
        "--out-interface",
        &n.bridge,
        "--match",
        "conntrack",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "--jump",
        "ACCEPT",
    ]);
    add(fw, layer, &args);
}

fn allow_in(fw: &mut Firewall, layer: Layer, netw: &str, n: &Net, a: Action) {
    let mut args = Args::new();
    args.extend_from_slice(&[
        "--table",
        "filter",
        a.arg(),
        CHAIN_FWD_IN,
        "--destination",
        netw,
    ]);
    if let Some(dev) = n.dev.as_deref() {
        args.extend_from_slice(&["--in-interface", dev]);
    }
    args.extend_from_slice(&["--out-interface", &n.bridge, "--jump", "ACCEPT"]);
    add(fw, layer, &args);
}

fn add(fw: &mut Firewall, layer: Layer, args: &[&str]) {
    fw.add_cmd(layer, args.iter().copied());
}

/// MASQUERADE / SNAT rule; protocol-specific rules use the port range of
/// `target` (see [`NatTarget::set_ports`]).
fn masquerade(
    fw: &mut Firewall,
    layer: Layer,
    netw: &str,
    n: &Net,
    target: &NatTarget,
    proto: Option<Proto>,
    a: Action,
) {
    if super::masquerade_sabotaged() {
        return;
    }
    let mut args = Args::new();
    args.extend_from_slice(&[
        "--table",
        "nat",
        a.arg(),
        CHAIN_POSTROUTING,
        "--source",
        netw,
    ]);
    if let Some(p) = proto {
        args.extend_from_slice(&["-p", p.as_str()]);
    }
    args.extend_from_slice(&["!", "--destination", netw]);
    if let Some(dev) = n.dev.as_deref() {
        args.extend_from_slice(&["--out-interface", dev]);
    }
    match (target.snat, proto.is_some()) {
        (true, false) => args.extend_from_slice(&["--jump", "SNAT", "--to-source", &target.plain]),
        (true, true) => args.extend_from_slice(&["--jump", "SNAT", "--to-source", &target.ports]),
        (false, false) => args.extend_from_slice(&["--jump", "MASQUERADE"]),
        (false, true) => {
            args.extend_from_slice(&["--jump", "MASQUERADE", "--to-ports", &target.ports])
        }
    }
    add(fw, layer, &args);
}

fn dont_masquerade(fw: &mut Firewall, layer: Layer, netw: &str, n: &Net, dest: &str, a: Action) {
    let mut args = Args::new();
    args.extend_from_slice(&["--table", "nat", a.arg(), CHAIN_POSTROUTING]);
    if let Some(dev) = n.dev.as_deref() {
        args.extend_from_slice(&["--out-interface", dev]);
    }
    args.extend_from_slice(&["--source", netw, "--destination", dest, "--jump", "RETURN"]);
    add(fw, layer, &args);
}

fn checksum(fw: &mut Firewall, br: &str, a: Action) {
    fw.add_cmd(
        Layer::Ipv4,
        [
            "--table",
            "mangle",
            a.arg(),
            CHAIN_POSTROUTING,
            "--out-interface",
            br,
            "--protocol",
            "udp",
            "--destination-port",
            "68",
            "--jump",
            "CHECKSUM",
            "--checksum-fill",
        ],
    );
}

fn add_general(fw: &mut Firewall, def: &NetworkDef, br: &str) {
    let v4 = Layer::Ipv4;
    let a = Action::Insert;
    input(fw, v4, br, "67", a, Proto::Tcp);
    input(fw, v4, br, "67", a, Proto::Udp);
    output(fw, v4, br, "68", a, Proto::Tcp);
    output(fw, v4, br, "68", a, Proto::Udp);
    input(fw, v4, br, "53", a, Proto::Tcp);
    input(fw, v4, br, "53", a, Proto::Udp);
    output(fw, v4, br, "53", a, Proto::Tcp);
    output(fw, v4, br, "53", a, Proto::Udp);
    if def.dhcp_or_tftp_ipv4().is_some_and(IpDef::has_tftp) {
        input(fw, v4, br, "69", a, Proto::Udp);
        output(fw, v4, br, "69", a, Proto::Udp);
    }
    reject_out(fw, v4, br, a);
    reject_in(fw, v4, br, a);
    allow_cross(fw, v4, br, a);

    if !def.ipv6_enabled() {
        return;
    }
    let v6 = Layer::Ipv6;
    reject_out(fw, v6, br, a);
    reject_in(fw, v6, br, a);
    allow_cross(fw, v6, br, a);
    if def.ipv6_ips().next().is_some() {
        input(fw, v6, br, "53", a, Proto::Tcp);
        input(fw, v6, br, "53", a, Proto::Udp);
        output(fw, v6, br, "53", a, Proto::Tcp);
        output(fw, v6, br, "53", a, Proto::Udp);
        input(fw, v6, br, "547", a, Proto::Udp);
        output(fw, v6, br, "546", a, Proto::Udp);
    }
}

fn remove_general(fw: &mut Firewall, def: &NetworkDef, br: &str) {
    let v4 = Layer::Ipv4;
    let d = Action::Delete;
    allow_cross(fw, v4, br, d);
    reject_in(fw, v4, br, d);
    reject_out(fw, v4, br, d);
    if def.dhcp_or_tftp_ipv4().is_some_and(IpDef::has_tftp) {
        input(fw, v4, br, "69", d, Proto::Udp);
        output(fw, v4, br, "69", d, Proto::Udp);
    }
    input(fw, v4, br, "53", d, Proto::Udp);
    input(fw, v4, br, "53", d, Proto::Tcp);
    output(fw, v4, br, "53", d, Proto::Udp);
    output(fw, v4, br, "53", d, Proto::Tcp);
    output(fw, v4, br, "68", d, Proto::Udp);
    output(fw, v4, br, "68", d, Proto::Tcp);
    input(fw, v4, br, "67", d, Proto::Udp);
    input(fw, v4, br, "67", d, Proto::Tcp);

    if !def.ipv6_enabled() {
        return;
    }
    let v6 = Layer::Ipv6;
    if def.ipv6_ips().next().is_some() {
        output(fw, v6, br, "546", d, Proto::Udp);
        input(fw, v6, br, "547", d, Proto::Udp);
        output(fw, v6, br, "53", d, Proto::Udp);
        output(fw, v6, br, "53", d, Proto::Tcp);
        input(fw, v6, br, "53", d, Proto::Udp);
        input(fw, v6, br, "53", d, Proto::Tcp);
    }
    allow_cross(fw, v6, br, d);
    reject_in(fw, v6, br, d);
    reject_out(fw, v6, br, d);
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
    let a = Action::Insert;
    match kind {
        IpRuleKind::Masquerade => {
            allow_out(fw, layer, &netw, n, a);
            allow_related_in(fw, layer, &netw, n, a);
            let mut target = NatTarget::new(ip, nat);
            masquerade(fw, layer, &netw, n, &target, None, a);
            target.set_ports(nat_port_range(nat)?, false);
            masquerade(fw, layer, &netw, n, &target, Some(Proto::Udp), a);
            masquerade(fw, layer, &netw, n, &target, Some(Proto::Tcp), a);
            if ip.is_ipv4() {
                dont_masquerade(fw, layer, &netw, n, LOCAL_BROADCAST_V4, a);
                dont_masquerade(fw, layer, &netw, n, LOCAL_MULTICAST_V4, a);
            } else {
                dont_masquerade(fw, layer, &netw, n, LOCAL_MULTICAST_V6, a);
            }
        }
        IpRuleKind::Routing => {
            allow_out(fw, layer, &netw, n, a);
            allow_in(fw, layer, &netw, n, a);
        }
        IpRuleKind::Nothing => {}
    }
    Ok(())
}

fn remove_ip_specific(
    fw: &mut Firewall,
    kind: IpRuleKind,
    ip: &IpDef,
    n: &Net,
    nat: &mut NatDef,
) -> Result<(), RulesError> {
    if kind == IpRuleKind::Nothing {
        return Ok(());
    }
    // libvirt silently skips an address whose prefix is invalid here.
    let Some(netw) = network_str(ip) else {
        return Ok(());
    };
    let layer = layer_of(ip);
    let d = Action::Delete;
    match kind {
        IpRuleKind::Masquerade => {
            if ip.is_ipv4() {
                dont_masquerade(fw, layer, &netw, n, LOCAL_MULTICAST_V4, d);
                dont_masquerade(fw, layer, &netw, n, LOCAL_BROADCAST_V4, d);
            } else {
                dont_masquerade(fw, layer, &netw, n, LOCAL_MULTICAST_V6, d);
            }
            let mut target = NatTarget::new(ip, nat);
            target.set_ports(nat_port_range(nat)?, false);
            masquerade(fw, layer, &netw, n, &target, Some(Proto::Tcp), d);
            masquerade(fw, layer, &netw, n, &target, Some(Proto::Udp), d);
            masquerade(fw, layer, &netw, n, &target, None, d);
            allow_related_in(fw, layer, &netw, n, d);
            allow_out(fw, layer, &netw, n, d);
        }
        IpRuleKind::Routing => {
            allow_in(fw, layer, &netw, n, d);
            allow_out(fw, layer, &netw, n, d);
        }
        IpRuleKind::Nothing => {}
    }
    Ok(())
}

/// Runs `f` with the definition and a copy of its `<nat>` that the rules
/// may update, then writes the copy back whatever the outcome, as libvirt's
/// in-place update of the live definition does.
pub(crate) fn with_nat<T>(
    def: &mut NetworkDef,
    f: impl FnOnce(&NetworkDef, &mut NatDef) -> Result<T, RulesError>,
) -> Result<T, RulesError> {
    let mut nat = def
        .forward
        .as_ref()
        .map(|f| f.nat.clone())
        .unwrap_or_default();
    let res = f(def, &mut nat);
    if let Some(fwd) = def.forward.as_mut() {
        fwd.nat = nat;
    }
    res
}

/// libvirt 11.3.0 `iptablesAddFirewallRules` (before apply): group 0
/// AUTO_ROLLBACK with general then per-address rules, group 1
/// IGNORE_ERRORS|AUTO_ROLLBACK with the checksum rule if an IPv4 address has
/// DHCP.
pub fn network_rules(def: &mut NetworkDef) -> Result<Firewall, RulesError> {
    with_nat(def, |def, nat| {
        let n = Net::of(def)?;
        let mut fw = Firewall::new(Backend::Iptables);
        fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
        add_general(&mut fw, def, &n.bridge);
        for ip in &def.ips {
            add_ip_specific(&mut fw, ip_rule_kind(def, ip), ip, &n, nat)?;
        }
        fw.start_transaction(TransactionFlags::IGNORE_ERRORS | TransactionFlags::AUTO_ROLLBACK);
        if def.dhcp_ipv4().is_some() {
            checksum(&mut fw, &n.bridge, Action::Insert);
        }
        Ok(fw)
    })
}

/// libvirt 9.0.0 `networkAddFirewallRules` (before apply).
pub fn libvirt9_network_rules(def: &mut NetworkDef) -> Result<Firewall, RulesError> {
    with_nat(def, |def, nat| {
        let n = Net::of(def)?;
        let mut fw = Firewall::new(Backend::Iptables);
        fw.start_transaction(TransactionFlags::NONE);
        add_general(&mut fw, def, &n.bridge);
        for ip in &def.ips {
            add_ip_specific(&mut fw, ip_rule_kind(def, ip), ip, &n, nat)?;
        }
        fw.start_rollback(crate::firewall::RollbackFlags::NONE);
        for ip in &def.ips {
            remove_ip_specific(&mut fw, ip_rule_kind(def, ip), ip, &n, nat)?;
        }
        remove_general(&mut fw, def, &n.bridge);
        fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
        if def.dhcp_ipv4().is_some() {
            checksum(&mut fw, &n.bridge, Action::Insert);
        }
        Ok(fw)
    })
}

/// `iptablesRemoveFirewallRules` (before apply); see
/// [`super::legacy_iptables_removal`].
pub fn legacy_removal(def: &NetworkDef) -> Result<Firewall, RulesError> {
    let n = Net::of(def)?;
    let mut nat = def
        .forward
        .as_ref()
        .map(|f| f.nat.clone())
        .unwrap_or_default();
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    if def.dhcp_ipv4().is_some() {
        checksum(&mut fw, &n.bridge, Action::Delete);
    }
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    for ip in &def.ips {
        remove_ip_specific(&mut fw, ip_rule_kind(def, ip), ip, &n, &mut nat)?;
    }
    remove_general(&mut fw, def, &n.bridge);
    Ok(fw)
}

/// The private chains: (table, parent, child) in libvirt's order.
pub const PRIVATE_CHAINS: [(&str, &str, &str); 7] = [
    ("filter", "INPUT", CHAIN_INPUT),
    ("filter", "OUTPUT", CHAIN_OUTPUT),
    ("filter", "FORWARD", CHAIN_FWD_OUT),
    ("filter", "FORWARD", CHAIN_FWD_IN),
    ("filter", "FORWARD", CHAIN_FWD_X),
    ("nat", "POSTROUTING", CHAIN_POSTROUTING),
    ("mangle", "POSTROUTING", CHAIN_POSTROUTING),
];

/// What `--list-rules` output says about a table: declared chains and, per
/// jump target, the chain that jumps to it (the last such line wins).
pub(crate) fn parse_list_rules(lines: &[&str]) -> (Vec<String>, HashMap<String, String>) {
    let mut chains = Vec::new();
    let mut links = HashMap::new();
    for line in lines {
        if let Some(name) = line.strip_prefix("-N ") {
            chains.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("-A ") {
            if let Some((parent, after)) = rest.split_once(' ') {
                if let Some(target) = after.strip_prefix("-j ") {
                    links.insert(target.to_string(), parent.to_string());
                }
            }
        }
    }
    (chains, links)
}

/// `iptablesSetupPrivateChains(layer)`: one transaction (flags 0) with
/// `--table T --list-rules` for filter, nat, mangle; each callback queues
/// `--new-chain` for missing chains and `--insert PARENT --jump CHILD` for
/// missing (or misplaced) jumps.
pub fn private_chains(layer: Layer) -> PrivateChains {
    let changed = Arc::new(AtomicBool::new(false));
    let mut fw = Firewall::new(Backend::Iptables);
    fw.start_transaction(TransactionFlags::NONE);
    for table in ["filter", "nat", "mangle"] {
        let changed = Arc::clone(&changed);
        let cb = query_callback(
            move |ctx: &mut CallbackCtx<'_>, layer: Layer, lines: &[&str]| {
                let (chains, links) = parse_list_rules(lines);
                for (t, parent, child) in PRIVATE_CHAINS {
                    if t != table {
                        continue;
                    }
                    if !chains.iter().any(|c| c == child) {
                        ctx.add_cmd(layer, ["--table", table, "--new-chain", child]);
                        changed.store(true, Ordering::SeqCst);
                    }
                    if links.get(child).map(String::as_str) != Some(parent) {
                        ctx.add_cmd(
                            layer,
                            ["--table", table, "--insert", parent, "--jump", child],
                        );
                    }
                }
                Ok::<(), FirewallError>(())
            },
        );
        fw.add_cmd_full(layer, false, Some(cb), ["--table", table, "--list-rules"]);
    }
    PrivateChains {
        firewall: fw,
        changed,
    }
}
