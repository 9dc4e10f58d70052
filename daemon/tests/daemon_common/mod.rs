//! Shared by the daemon-with-driver tests (daemon/tests/daemon_driver*.rs and,
//! through `#[path]`, cli/tests/virtnetd_driver*.rs): the networks the
//! concurrent clients use and the rule checker.
//!
//! The checker compares what concurrent clients left on a simulated host
//! with what the same networks leave when started one after another on a
//! fresh host. Both sides are reduced to multisets of
//! (section, table, chain, line): rule order inside a chain depends on the
//! order of the starts (`--insert`, nft handles), the rules themselves must
//! not. A rule lost or added twice by a race changes a count.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_fake::{FakeHost, HostState, Section};

/// Network number `i` (0..=250) of the concurrency tests. The forward mode
/// cycles through nat, route, isolated and nat+IPv6; odd networks leave the
/// bridge name to the driver (virbrN allocation under concurrency), even
/// ones name their own.
pub fn net_xml(i: usize) -> String {
    let name = net_name(i);
    let bridge = if i.is_multiple_of(2) {
        format!("<bridge name='vnbr{i}' stp='on' delay='0'/>")
    } else {
        String::new()
    };
    let (forward, v6) = match i % 4 {
        0 => ("<forward mode='nat'/>", false),
        1 => ("<forward mode='route'/>", false),
        2 => ("", false),
        _ => ("<forward mode='nat'/>", true),
    };
    let v6 = if v6 {
        format!("<ip family='ipv6' address='fd00:{i:x}::1' prefix='64'/>")
    } else {
        String::new()
    };
    format!(
        "<network>\n  <name>{name}</name>\n  {forward}\n  {bridge}\n  \
         <ip address='10.{i}.0.1' netmask='255.255.255.0'>\n    \
         <dhcp>\n      <range start='10.{i}.0.2' end='10.{i}.0.254'/>\n    </dhcp>\n  \
         </ip>\n  {v6}\n</network>\n"
    )
}

pub fn net_name(i: usize) -> String {
    format!("cnet{i}")
}

/// Multiset of host objects: key → count.
pub type Objects = BTreeMap<String, usize>;

fn add(m: &mut Objects, key: String) {
    *m.entry(key).or_default() += 1;
}

/// Every line of `nft list ruleset` under its table and chain.
fn nft_objects(text: &str, m: &mut Objects) {
    let (mut table, mut chain) = (String::new(), String::new());
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(rest) = t.strip_prefix("table ") {
            table = rest.trim_end_matches(" {").to_string();
            chain.clear();
            add(m, format!("nft|{table}"));
        } else if let Some(rest) = t.strip_prefix("chain ") {
            chain = rest.trim_end_matches(" {").to_string();
            add(m, format!("nft|{table}|{chain}"));
        } else if t == "}" {
            if chain.is_empty() {
                table.clear();
            } else {
                chain.clear();
            }
        } else {
            add(m, format!("nft|{table}|{chain}|{t}"));
        }
    }
}

/// Every line of `iptables-save` under its table.
fn xtables_objects(prog: &str, text: &str, m: &mut Objects) {
    let mut table = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if line.starts_with('#') || line == "COMMIT" || line.is_empty() {
            continue;
        } else {
            add(m, format!("{prog}|{table}|{line}"));
        }
    }
}

/// The host as a multiset. `roots` are directory prefixes replaced by
/// `ROOT` (dnsmasq command lines name the state directory); process ids
/// are dropped.
pub fn objects(host: &HostState, roots: &[&Path]) -> Objects {
    let mut m = Objects::new();
    let norm = |s: String| {
        roots
            .iter()
            .fold(s, |s, r| s.replace(&*r.to_string_lossy(), "ROOT"))
    };
    nft_objects(&host.dump_section(Section::Nft), &mut m);
    xtables_objects("iptables", &host.dump_section(Section::Iptables), &mut m);
    xtables_objects("ip6tables", &host.dump_section(Section::Ip6tables), &mut m);
    for sec in [Section::Links, Section::Tc, Section::Sysctl] {
        for l in host.dump_section(sec).lines() {
            add(&mut m, format!("{}|{l}", sec.name()));
        }
    }
    for l in host.dump_section(Section::Processes).lines() {
        let argv = l.split_once(' ').map(|(_, a)| a).unwrap_or(l);
        add(&mut m, norm(format!("processes|{argv}")));
    }
    m
}

/// Readable difference of two multisets ("" when equal).
pub fn objects_diff(expected: &Objects, actual: &Objects) -> String {
    let mut out = String::new();
    for (k, n) in expected {
        let a = actual.get(k).copied().unwrap_or(0);
        if a < *n {
            out.push_str(&format!("lost ({a} of {n}): {k}\n"));
        }
    }
    for (k, n) in actual {
        let e = expected.get(k).copied().unwrap_or(0);
        if *n > e {
            out.push_str(&format!("extra ({n}, expected {e}): {k}\n"));
        }
    }
    out
}

/// What the networks `xmls` (complete definitions, bridge names included)
/// leave on a fresh simulated host when defined and started one after
/// another (`started` of them, in order), after a start and destroy of
/// every one of them (so chains are set up as in the concurrent run).
pub fn sequential_reference(
    backend: Backend,
    xmls: &[String],
    started: &[String],
    dir: &Path,
) -> HostState {
    let host = Arc::new(FakeHost::new());
    let cfg = DriverConfig::under(dir, host.clone()).with_backend(backend);
    let d = Driver::open(cfg).unwrap();
    for x in xmls {
        d.define(x).unwrap();
    }
    for x in xmls {
        let name = virtnet_core::netxml::parse(x).unwrap().name;
        d.start(&name).unwrap();
        d.destroy(&name).unwrap();
    }
    for name in started {
        d.start(name).unwrap();
    }
    host.state()
}

/// Panics with the difference when `actual` (a host with state dir
/// `actual_root`) does not hold exactly the objects of `expected`
/// (`expected_root`).
pub fn assert_same_objects(
    what: &str,
    expected: &HostState,
    expected_root: &Path,
    actual: &HostState,
    actual_root: &Path,
) {
    let e = objects(expected, &[expected_root]);
    let a = objects(actual, &[actual_root]);
    let d = objects_diff(&e, &a);
    assert!(d.is_empty(), "{what}: host objects differ:\n{d}");
}

/// [`assert_same_objects`] with every root replaced on both sides (hosts
/// whose processes were started from either directory).
pub fn assert_same_objects_roots(
    what: &str,
    expected: &HostState,
    actual: &HostState,
    roots: &[&Path],
) {
    let d = objects_diff(&objects(expected, roots), &objects(actual, roots));
    assert!(d.is_empty(), "{what}: host objects differ:\n{d}");
}
