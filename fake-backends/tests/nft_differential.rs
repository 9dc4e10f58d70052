//! (c) Differential test: the same nft command sequences run against the
//! simulator and against the real nft in a fresh `unshare -n` namespace;
//! every command's exit code, stdout (pid of the generation line masked) and
//! stderr must be equal, and so must the final `nft list ruleset` and
//! `nft -a list ruleset`.
//!
//! Without root or nft the test prints `skipped: <why>`; set
//! VIRTNET_REQUIRE_REAL=1 to make that a failure instead.

mod nft_support;

use std::collections::BTreeSet;

use nft_support::*;
use virtnet_fake::nft::NftState;
use virtnet_testkit::netns::{run_sequence as run_real_sequence, RealCmd};

/// A scenario script: `nft ARGS` lines (shell quoting), `link NAME` to
/// create a bridge device first, and `batch OPTS` ... `end` for `nft OPTS -f -`
/// with the lines in between as standard input.
type NftCmd = (Vec<String>, Option<String>);

fn parse_scenario(text: &str) -> (Vec<String>, Vec<NftCmd>) {
    let mut links = Vec::new();
    let mut cmds = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = split_words(line);
        match words[0].as_str() {
            "link" => links.push(words[1].clone()),
            "nft" => cmds.push((words[1..].to_vec(), None)),
            "batch" => {
                let mut input = String::new();
                for l in lines.by_ref() {
                    if l.trim() == "end" {
                        break;
                    }
                    input.push_str(l.trim_start());
                    input.push('\n');
                }
                let mut args = words[1..].to_vec();
                args.push("-f".into());
                args.push("-".into());
                cmds.push((args, Some(input)));
            }
            other => panic!("bad scenario line {other:?}"),
        }
    }
    cmds.push((vec!["list".into(), "ruleset".into()], None));
    cmds.push((vec!["-a".into(), "list".into(), "ruleset".into()], None));
    (links, cmds)
}

fn mask_pid(s: &str) -> String {
    normalize_generation(s, true)
}

/// Run one scenario on both; returns (commands compared, mismatches).
fn differential(name: &str, text: &str) -> Result<(usize, Vec<String>), String> {
    let (links, cmds) = parse_scenario(text);
    let mut real_cmds: Vec<RealCmd> = links
        .iter()
        .map(|l| {
            (
                ["ip", "link", "add", l.as_str(), "type", "bridge"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                None,
            )
        })
        .collect();
    for (args, stdin) in &cmds {
        let mut argv = vec!["nft".to_string()];
        argv.extend(args.iter().cloned());
        real_cmds.push((argv, stdin.clone()));
    }
    let real = run_real_sequence(&real_cmds).map_err(|s| s.to_string())?;
    for (l, out) in links.iter().zip(&real) {
        if out.status != 0 {
            return Err(format!(
                "skipped: cannot create device {l}: {}",
                out.stderr.trim()
            ));
        }
    }
    let real = &real[links.len()..];
    let mut sim = NftState::new();
    let mut known: BTreeSet<String> = links.iter().cloned().collect();
    known.insert("lo".into());
    sim.set_links(Some(known));
    let mut bad = Vec::new();
    for ((args, stdin), want) in cmds.iter().zip(real) {
        let got = sim.exec(args, stdin.as_deref());
        if got.status != want.status
            || mask_pid(&got.stdout) != mask_pid(&want.stdout)
            || got.stderr != want.stderr
        {
            bad.push(format!(
                "[{name}] nft {args:?} stdin={stdin:?}\n  real: rc={} out={:?} err={:?}\n  sim:  rc={} out={:?} err={:?}",
                want.status,
                mask_pid(&want.stdout),
                want.stderr,
                got.status,
                mask_pid(&got.stdout),
                got.stderr
            ));
        }
    }
    Ok((cmds.len(), bad))
}

const SCENARIOS: &[(&str, &str)] = &[
    (
        "libvirt-nat-default",
        include_str!("nft_scenarios/libvirt_nat.txt"),
    ),
    ("tables", include_str!("nft_scenarios/tables.txt")),
    ("chains", include_str!("nft_scenarios/chains.txt")),
    ("rules", include_str!("nft_scenarios/rules.txt")),
    ("positions", include_str!("nft_scenarios/positions.txt")),
    ("errors", include_str!("nft_scenarios/errors.txt")),
    ("syntax", include_str!("nft_scenarios/syntax.txt")),
    ("batches", include_str!("nft_scenarios/batches.txt")),
    ("sets", include_str!("nft_scenarios/sets.txt")),
    ("batches2", include_str!("nft_scenarios/batches2.txt")),
    ("rules2", include_str!("nft_scenarios/rules2.txt")),
    ("sets2", include_str!("nft_scenarios/sets2.txt")),
    ("multi", include_str!("nft_scenarios/multi.txt")),
    ("extras", include_str!("nft_scenarios/extras.txt")),
    ("sets3", include_str!("nft_scenarios/sets3.txt")),
];

#[test]
fn simulator_matches_real_nft() {
    let mut total = 0;
    let mut all_bad = Vec::new();
    for (name, text) in SCENARIOS {
        match differential(name, text) {
            Ok((n, bad)) => {
                total += n;
                all_bad.extend(bad);
            }
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
        "differential: {} scenarios, {} commands, {} mismatches",
        SCENARIOS.len(),
        total,
        all_bad.len()
    );
    assert!(all_bad.is_empty(), "{}", all_bad.join("\n"));
}
