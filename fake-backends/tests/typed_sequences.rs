//! Differential test of the sequences a person types (`typed_sequences.txt`):
//! each sequence runs on a fresh [`FakeHost`] and on the real `ip`, `tc` and
//! `sysctl` in a fresh `unshare -n` namespace; every command's exit status,
//! stdout and stderr are compared, then the final `ip -br link`,
//! `ip -br addr`, `ip route`, `ip -6 route` and `tc qdisc show`.
//!
//! The simulator models a *settled* host, the one a person sees a moment
//! after typing: IPv6 duplicate address detection has finished (no
//! `tentative` flag on a link that has carrier) and the kernel's link-watch
//! events have been applied (operstate). So on the real side, after each
//! command that changed something, the harness waits until that is true
//! ([`settle`]).
//!
//! Needs root and the real tools; otherwise prints "skipped: <why>" and
//! passes, unless `VIRTNET_REQUIRE_REAL=1`, which turns a skip into a failure.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{words, Netns};
use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Output, Runner};

const SEQUENCES: &str = include_str!("typed_sequences.txt");

/// Commands whose real output the simulator does not reproduce, with why.
/// Each entry is `(sequence, command)`; a listed mismatch is reported as
/// "known:" and does not fail the test.
const KNOWN: &[(&str, &str, &str)] = &[(
    "tc-on-up-link",
    "tc qdisc show dev br0",
    "htb's direct_packets_stat counts the IPv6 DAD/MLD packets the up bridge \
         happened to send; the simulator sends none (always 0)",
)];

fn sequences() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in SEQUENCES.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("== ") {
            out.push((name.trim().to_string(), Vec::new()));
        } else if let Some((_, cmds)) = out.last_mut() {
            cmds.push(line.to_string());
        }
    }
    out
}

fn skip_reason() -> Option<String> {
    common::cannot_run(&["unshare", "nsenter", "ip", "tc", "sysctl"])
        .or_else(|| common::other_version("ip", "-V", "iproute2-6.1.0"))
}

/// True if the command may have changed the host (so the real side must
/// settle before the next one): anything but a plain show/list/get (an
/// abbreviated verb such as `ip l s`, which is `set`, counts as a change).
fn mutates(argv: &[String]) -> bool {
    let words: Vec<&str> = argv
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match argv.first().map(String::as_str) {
        Some("sysctl") => argv.iter().any(|a| a.contains('=')),
        Some("ip") | Some("tc") => words
            .get(1)
            .is_some_and(|v| !["show", "list", "ls", "lst", "sh", "sho", "get"].contains(v)),
        _ => false,
    }
}

/// Wait until the real namespace shows what a person sees a moment later:
/// link-watch has run (it batches carrier events for up to a second) and
/// no IPv6 address is still `tentative` on a link that is up with carrier
/// (duplicate address detection takes one to two seconds).
fn settle(ns: &Netns) {
    std::thread::sleep(Duration::from_millis(1100));
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let links = ns.sh("ip -o link").stdout;
        let ready: Vec<String> = links
            .lines()
            .filter(|l| l.contains(",UP,LOWER_UP") || l.contains("<UP,LOWER_UP"))
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        let tentative = ns.sh("ip -o -6 addr show tentative").stdout;
        let pending = tentative.lines().any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|d| ready.iter().any(|r| r == d))
        });
        if !pending {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The one normalisation: values the kernel picks at random. Every MAC
/// address a host shows that the sequence did not give literally is
/// replaced by `<mac:NAME>` (NAME = the link that first showed it), in its
/// three spellings: `aa:bb:...`, the bridge id `8000.a:bb:...` (unpadded)
/// and the EUI-64 link-local address `fe80::...` derived from it. Bridge
/// timers of `ip -d link` (time-dependent) become `<t>`.
#[derive(Default)]
struct Norm {
    macs: BTreeMap<String, String>,
}

impl Norm {
    /// Learn the MACs the host shows now (`ip -o link` output).
    fn learn(&mut self, ip_o_link: &str, script: &str) {
        for line in ip_o_link.lines() {
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            let Some(mac) = line
                .split_whitespace()
                .skip_while(|w| !w.starts_with("link/"))
                .nth(1)
            else {
                continue;
            };
            if mac == "00:00:00:00:00:00" || script.contains(mac) {
                continue;
            }
            self.macs
                .entry(mac.to_string())
                .or_insert_with(|| format!("<mac:{name}>"));
        }
    }

    fn apply(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (mac, tok) in &self.macs {
            t = t.replace(mac, tok);
            let unpadded: Vec<String> = mac
                .split(':')
                .map(|b| b.trim_start_matches('0'))
                .map(|b| if b.is_empty() { "0".into() } else { b.into() })
                .collect();
            t = t.replace(&unpadded.join(":"), tok);
            if let Some(ll) = eui64_link_local(mac) {
                t = t.replace(&ll, &format!("fe80::<eui64:{}>", &tok[5..tok.len() - 1]));
            }
        }
        for timer in [
            "hello_timer",
            "tcn_timer",
            "topology_change_timer",
            "gc_timer",
        ] {
            t = mask_number_after(&t, timer);
        }
        t
    }
}

fn mask_number_after(text: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(p) = rest.find(key) {
        out.push_str(&rest[..p + key.len()]);
        let after = &rest[p + key.len()..];
        let trimmed = after.trim_start_matches(' ');
        let num_len = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        out.push_str(" <t>");
        rest = &trimmed[num_len..];
    }
    out.push_str(rest);
    out
}

/// The kernel's EUI-64 link-local address of a MAC (as `ip` prints it).
fn eui64_link_local(mac: &str) -> Option<String> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    if b.len() != 6 {
        return None;
    }
    let iid = [b[0] ^ 2, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]];
    let mut seg = [0u16; 8];
    seg[0] = 0xfe80;
    for i in 0..4 {
        seg[4 + i] = u16::from(iid[2 * i]) << 8 | u16::from(iid[2 * i + 1]);
    }
    Some(std::net::Ipv6Addr::from(seg).to_string())
}

const FINAL: &[&str] = &[
    "ip -br link",
    "ip -br addr",
    "ip route",
    "ip -6 route",
    "tc qdisc show",
];

fn norm_out(o: &Output, n: &Norm) -> (i32, String, String) {
    (o.status, n.apply(&o.stdout), n.apply(&o.stderr))
}

/// Run one sequence on both hosts; the mismatches as (command, text).
fn run_sequence(name: &str, cmds: &[String]) -> Vec<(String, String)> {
    let script = cmds.join("\n").to_ascii_lowercase();
    let ns = match Netns::new() {
        Ok(n) => n,
        Err(e) => return vec![(String::new(), e)],
    };
    let fake = FakeHost::new();
    let (mut nreal, mut nfake) = (Norm::default(), Norm::default());
    let mut bad = Vec::new();
    let mut compare = |line: &str, dirty: &mut bool, bad: &mut Vec<(String, String)>| {
        let argv = words(line);
        if *dirty {
            settle(&ns);
            *dirty = false;
        }
        let real = ns.run(&argv);
        let sim = fake.run(&Cmd::new(argv.clone())).expect("fake host runs");
        nreal.learn(&ns.sh("ip -o link").stdout, &script);
        let fl = fake.run(&Cmd::new(words("ip -o link"))).expect("fake");
        nfake.learn(&fl.stdout, &script);
        let (r, s) = (norm_out(&real, &nreal), norm_out(&sim, &nfake));
        if r != s {
            bad.push((
                line.to_string(),
                format!(
                    "{name}: `{line}`\n   real: {r:?}\n   fake: {s:?}\n{}{}",
                    if r.1 != s.1 {
                        virtnet_fake::diff_text(&r.1, &s.1, "real stdout", "fake stdout")
                    } else {
                        String::new()
                    },
                    if r.2 != s.2 {
                        virtnet_fake::diff_text(&r.2, &s.2, "real stderr", "fake stderr")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        if real.success() && mutates(&argv) {
            *dirty = true;
        }
    };
    let mut dirty = false;
    for line in cmds {
        compare(line, &mut dirty, &mut bad);
    }
    for line in FINAL {
        compare(line, &mut dirty, &mut bad);
    }
    bad
}

#[test]
fn typed_sequences_match_the_real_tools() {
    if let Some(why) = skip_reason() {
        if std::env::var("VIRTNET_REQUIRE_REAL").as_deref() == Ok("1") {
            panic!("VIRTNET_REQUIRE_REAL=1 but the real tools cannot run: {why}");
        }
        println!("skipped: {why}");
        return;
    }
    let seqs = sequences();
    assert!(seqs.len() >= 40, "only {} sequences", seqs.len());
    let only = std::env::var("TYPED_ONLY").ok();
    let handles: Vec<_> = seqs
        .into_iter()
        .filter(|(n, _)| only.as_deref().is_none_or(|o| n.contains(o)))
        .map(|(name, cmds)| {
            std::thread::spawn(move || {
                let bad = run_sequence(&name, &cmds);
                (name, cmds.len(), bad)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let (mut n_seq, mut n_cmd) = (0, 0);
    for h in handles {
        let (name, count, bad) = h.join().expect("sequence thread");
        n_seq += 1;
        n_cmd += count + FINAL.len();
        for (cmd, text) in bad {
            if let Some((_, _, why)) = KNOWN.iter().find(|(s, c, _)| *s == name && *c == cmd) {
                println!("known: {name}: `{cmd}`: {why}");
            } else {
                failures.push(text);
            }
        }
    }
    println!("{n_seq} sequences, {n_cmd} commands compared");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn normalisation_maps_random_macs_and_their_link_local_addresses() {
    let mut n = Norm::default();
    n.learn(
        "2: br0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether c6:11:6d:f4:06:7e brd ff:ff:ff:ff:ff:ff\n\
         3: br1: <BROADCAST> mtu 1500\\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff\n",
        "ip link set br1 address 52:54:00:12:34:56",
    );
    assert_eq!(
        n.apply("c6:11:6d:f4:06:7e fe80::c411:6dff:fef4:67e/64 8000.c6:11:6d:f4:6:7e 52:54:00:12:34:56 gc_timer  299.77 x"),
        "<mac:br0> fe80::<eui64:br0>/64 8000.<mac:br0> 52:54:00:12:34:56 gc_timer <t> x"
    );
}
