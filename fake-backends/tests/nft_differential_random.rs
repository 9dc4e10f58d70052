//! (c, randomized) Random but reproducible command sequences over a small
//! vocabulary of names, run against the simulator and the real nft in a
//! fresh `unshare -n` namespace each; every output and the final rulesets
//! must be equal. The seeds are fixed (and printed on failure) so a failure
//! replays exactly; set NFT_DIFF_SEEDS=N to try N extra seeds from
//! NFT_DIFF_SEED0 (default 1000).
//!
//! Without root or nft the test prints `skipped: <why>`; set
//! VIRTNET_REQUIRE_REAL=1 to make that a failure instead.

mod nft_support;

use std::collections::BTreeSet;

use nft_support::normalize_generation;
use virtnet_fake::nft::NftState;
use virtnet_testkit::netns::{run_sequence as run_real_sequence, RealCmd};

/// xorshift64*: small, deterministic, good enough to pick words.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FAMS: &[&str] = &["ip", "ip", "ip6", "inet"];
const TABLES: &[&str] = &["libvirt_network", "lv", "t"];
const CHAINS: &[&str] = &["forward", "guest_nat", "guest_output", "c", "fwd"];
const SPECS: &[&str] = &[
    "{ type filter hook forward priority 0; policy accept; }",
    "{ type nat hook postrouting priority 100; policy accept; }",
    "{ type filter hook input priority 10; policy drop; }",
];
const STMTS: &[&str] = &[
    "counter accept",
    "iif br0 counter reject",
    "oif br0 counter reject",
    "iif br0 oif br0 counter accept",
    "ct state related,established counter accept",
    "meta l4proto udp counter accept",
    "udp dport 53 accept",
    "tcp dport { 22, 80 } accept",
    "counter masquerade",
    "meta l4proto tcp counter masquerade to :1024-65535",
    "oifname eth0 counter return",
    "jump c",
    "jump guest_output",
    "goto fwd",
    "drop",
    "reject",
    "accept comment \"x\"",
    "ip saddr @s drop",
    "udp dport @p accept",
    "ct state != established,related drop",
    "meta l4proto tcp tcp dport 22 accept",
    "tcp dport 53 udp dport 53 accept",
    "reject with icmp type host-prohibited",
    "reject with tcp reset",
    "snat to 10.0.0.1",
    "iifname fwd accept",
    "counter packets 3 bytes 4 return",
];
const ADDR4: &[&str] = &["ip saddr 192.168.122.0/24", "ip daddr != 10.0.0.0/8"];
const ADDR6: &[&str] = &["ip6 saddr 2001:db8::/64", "ip6 daddr != fd00::/8"];

fn gen_command(r: &mut Rng) -> (Vec<String>, Option<String>) {
    let fam = r.pick(FAMS);
    let table = r.pick(TABLES);
    let chain = r.pick(CHAINS);
    let echo = match r.below(5) {
        0 | 1 => "-ae",
        2 => "-e",
        _ => "-a",
    };
    let words = |s: &str| -> Vec<String> { s.split(' ').map(str::to_string).collect() };
    let rule_body = |r: &mut Rng| -> String {
        let mut body = String::new();
        if r.below(3) == 0 {
            body.push_str(if fam == "ip6" {
                r.pick(ADDR6)
            } else {
                r.pick(ADDR4)
            });
            body.push(' ');
        }
        body.push_str(r.pick(STMTS));
        body
    };
    let cmd: String = match r.below(20) {
        0..=2 => format!("{echo} add table {fam} {table}"),
        3 => match r.below(4) {
            0 => format!("{echo} create chain {fam} {table} {chain}"),
            1 => "list chains".to_string(),
            2 => {
                // a whole table as a block
                let input = format!(
                    "table {fam} {table} {{\n  chain {chain} {{\n    {}\n  }}\n}}\n",
                    rule_body(r)
                );
                return (words(&format!("{echo} -f -")), Some(input));
            }
            _ => format!("{echo} create table {fam} {table}"),
        },
        4..=5 => format!("{echo} add chain {fam} {table} {chain}"),
        6 => {
            let spec = r.pick(SPECS);
            return (
                vec![
                    echo.into(),
                    "add".into(),
                    "chain".into(),
                    fam.into(),
                    table.into(),
                    chain.into(),
                    spec.into(),
                ],
                None,
            );
        }
        7..=10 => {
            let verb = if r.below(2) == 0 { "insert" } else { "add" };
            let pos = match r.below(6) {
                0 => format!("position {} ", r.below(12)),
                1 => format!("index {} ", r.below(3)),
                2 => format!("handle {} ", r.below(12)),
                _ => String::new(),
            };
            format!(
                "{echo} {verb} rule {fam} {table} {chain} {pos}{}",
                rule_body(r)
            )
        }
        11..=12 => format!(
            "delete rule {fam} {table} {chain} handle {}",
            1 + r.below(12)
        ),
        13 => format!("delete chain {fam} {table} {chain}"),
        14 => format!("delete chain {fam} {table} handle {}", 1 + r.below(6)),
        15 => format!("delete table {fam} {table}"),
        16 => match r.below(4) {
            0 => format!("flush table {fam} {table}"),
            1 => format!("flush ruleset {}", r.pick(&["", "ip", "inet"]))
                .trim_end()
                .to_string(),
            _ => format!("flush chain {fam} {table} {chain}"),
        },
        17 => match r.below(4) {
            0 => format!("list ruleset {fam}"),
            1 => "list tables".to_string(),
            2 => format!("-a list sets {fam}"),
            _ => format!("list table {fam} {table}"),
        },
        18 => match r.below(8) {
            0 => format!("{echo} add set {fam} {table} s {{ type ipv4_addr; }}"),
            1 => format!("{echo} add set {fam} {table} p {{ type inet_service; }}"),
            2 => format!(
                "{echo} add element {fam} {table} s {{ 10.0.0.{} }}",
                r.below(3)
            ),
            3 => format!(
                "{echo} add element {fam} {table} p {{ {} }}",
                53 + r.below(2)
            ),
            4 => format!("delete element {fam} {table} s {{ 10.0.0.{} }}", r.below(3)),
            5 => format!("delete set {fam} {table} {}", r.pick(&["s", "p"])),
            6 => format!("delete table {fam} handle {}", 1 + r.below(6)),
            _ => format!("-a list chain {fam} {table} {chain}"),
        },
        _ => {
            // a batch of three commands
            let mut input = String::new();
            for _ in 0..3 {
                let (args, _) = gen_command(r);
                let line: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
                if line.first().map(String::as_str) == Some("list") {
                    continue;
                }
                input.push_str(&line.join(" "));
                input.push('\n');
            }
            return (words(&format!("{echo} -f -")), Some(input));
        }
    };
    (words(&cmd), None)
}

fn run_seed(seed: u64) -> Result<Vec<String>, String> {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut cmds: Vec<(Vec<String>, Option<String>)> =
        (0..25).map(|_| gen_command(&mut r)).collect();
    cmds.push((vec!["list".into(), "ruleset".into()], None));
    cmds.push((vec!["-a".into(), "list".into(), "ruleset".into()], None));

    let mut real_cmds: Vec<RealCmd> = vec![(
        ["ip", "link", "add", "br0", "type", "bridge"]
            .map(String::from)
            .to_vec(),
        None,
    )];
    for (args, stdin) in &cmds {
        let mut argv = vec!["nft".to_string()];
        argv.extend(args.iter().cloned());
        real_cmds.push((argv, stdin.clone()));
    }
    let real = run_real_sequence(&real_cmds).map_err(|s| s.to_string())?;
    if real[0].status != 0 {
        return Err(format!("skipped: cannot create br0: {}", real[0].stderr));
    }
    let mut sim = NftState::new();
    sim.set_links(Some(BTreeSet::from(["lo".to_string(), "br0".to_string()])));
    let mut bad = Vec::new();
    for ((args, stdin), want) in cmds.iter().zip(&real[1..]) {
        let got = sim.exec(args, stdin.as_deref());
        let (go, wo) = (
            normalize_generation(&got.stdout, true),
            normalize_generation(&want.stdout, true),
        );
        if got.status != want.status || go != wo || got.stderr != want.stderr {
            bad.push(format!(
                "seed {seed}: nft {args:?} stdin={stdin:?}\n  real: rc={} out={wo:?} err={:?}\n  sim:  rc={} out={go:?} err={:?}",
                want.status, want.stderr, got.status, got.stderr
            ));
        }
    }
    Ok(bad)
}

#[test]
fn random_sequences_match_real_nft() {
    let extra: u64 = std::env::var("NFT_DIFF_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let seed0: u64 = std::env::var("NFT_DIFF_SEED0")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seeds: Vec<u64> = (1..=24).chain(seed0..seed0 + extra).collect();
    let mut bad = Vec::new();
    for &seed in &seeds {
        match run_seed(seed) {
            Ok(b) => bad.extend(b),
            Err(skip) => {
                println!("{skip}");
                eprintln!("{skip}");
                if std::env::var_os("VIRTNET_REQUIRE_REAL").is_some() {
                    panic!("real nft required: {skip}");
                }
                return;
            }
        }
    }
    println!(
        "random differential: {} seeds x 27 commands, {} mismatches",
        seeds.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{}",
        bad.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
}
