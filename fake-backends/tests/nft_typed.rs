//! Differential test of command sequences a person exploring nft would type
//! (not libvirt's): each sequence runs in a fresh simulated namespace and in
//! a fresh `unshare -n` namespace with the real nft; every command's exit
//! code, stdout (pid of the generation line masked) and stderr must be
//! equal, and so must the final `nft list ruleset` and `nft -a list ruleset`.
//!
//! Sequences live in `tests/nft_typed/*.txt`, separated by lines `---`.
//! Lines: `nft ARGS` (shell quoting), `batch OPTS` ... `end` (`nft OPTS -f -`
//! with the lines in between as standard input), `file PATH` ... `end`
//! (writes PATH before both runs, for `nft -f PATH`).
//!
//! Without root or nft the test prints `skipped: <why>`; set
//! VIRTNET_REQUIRE_REAL=1 to make that a failure instead.

mod nft_support;

use nft_support::*;
use virtnet_fake::nft::NftState;
use virtnet_testkit::netns::{run_nft_sequence as run_real_nft_sequence, Skip};

type NftCmd = (Vec<String>, Option<String>);

struct Sequence {
    files: Vec<(String, String)>,
    cmds: Vec<NftCmd>,
}

fn take_block<'a>(lines: &mut impl Iterator<Item = &'a str>) -> String {
    let mut input = String::new();
    for l in lines.by_ref() {
        if l.trim() == "end" {
            break;
        }
        input.push_str(l.trim_start());
        input.push('\n');
    }
    input
}

fn parse_sequences(text: &str) -> Vec<Sequence> {
    let mut out = Vec::new();
    let mut cur = Sequence {
        files: Vec::new(),
        cmds: Vec::new(),
    };
    let mut lines = text.lines();
    let finish = |cur: &mut Sequence, out: &mut Vec<Sequence>| {
        if !cur.cmds.is_empty() {
            cur.cmds.push((vec!["list".into(), "ruleset".into()], None));
            cur.cmds
                .push((vec!["-a".into(), "list".into(), "ruleset".into()], None));
            out.push(std::mem::replace(
                cur,
                Sequence {
                    files: Vec::new(),
                    cmds: Vec::new(),
                },
            ));
        }
    };
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "---" {
            finish(&mut cur, &mut out);
            continue;
        }
        let words = split_words(line);
        match words[0].as_str() {
            "nft" => cur.cmds.push((words[1..].to_vec(), None)),
            "batch" => {
                let input = take_block(&mut lines);
                let mut args = words[1..].to_vec();
                args.push("-f".into());
                args.push("-".into());
                cur.cmds.push((args, Some(input)));
            }
            "file" => {
                let input = take_block(&mut lines);
                cur.files.push((words[1].clone(), input));
            }
            other => panic!("bad sequence line {other:?}"),
        }
    }
    finish(&mut cur, &mut out);
    out
}

fn mask_pid(s: &str) -> String {
    normalize_generation(s, true)
}

fn run_one(name: &str, idx: usize, seq: &Sequence) -> Result<Vec<String>, Skip> {
    for (path, text) in &seq.files {
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir).map_err(|e| Skip(format!("mkdir {path}: {e}")))?;
        }
        std::fs::write(path, text).map_err(|e| Skip(format!("write {path}: {e}")))?;
    }
    let real = run_real_nft_sequence(&seq.cmds)?;
    let mut sim = NftState::new();
    sim.set_links(Some(["lo".to_string()].into_iter().collect()));
    let mut bad = Vec::new();
    for ((args, stdin), want) in seq.cmds.iter().zip(&real) {
        let got = sim.exec(args, stdin.as_deref());
        if got.status != want.status
            || mask_pid(&got.stdout) != mask_pid(&want.stdout)
            || got.stderr != want.stderr
        {
            bad.push(format!(
                "[{name}#{idx}] nft {args:?} stdin={stdin:?}\n  real: rc={} out={:?} err={:?}\n  sim:  rc={} out={:?} err={:?}",
                want.status,
                mask_pid(&want.stdout),
                want.stderr,
                got.status,
                mask_pid(&got.stdout),
                got.stderr
            ));
            let (a, b) = (mask_pid(&want.stdout), mask_pid(&got.stdout));
            if let Some(i) = a.bytes().zip(b.bytes()).position(|(x, y)| x != y) {
                let from = i.saturating_sub(80);
                bad.push(format!(
                    "  first stdout difference at byte {i}:\n  real: ...{:?}\n  sim:  ...{:?}",
                    a.get(from..(i + 80).min(a.len())).unwrap_or(""),
                    b.get(from..(i + 80).min(b.len())).unwrap_or("")
                ));
            }
            // Later commands usually differ only as a consequence.
            break;
        }
    }
    Ok(bad)
}

const FILES: &[(&str, &str)] = &[
    ("basics", include_str!("nft_typed/basics.txt")),
    ("errors", include_str!("nft_typed/errors.txt")),
    ("sets", include_str!("nft_typed/sets.txt")),
    ("options", include_str!("nft_typed/options.txt")),
    ("stmts", include_str!("nft_typed/stmts.txt")),
    ("edit", include_str!("nft_typed/edit.txt")),
    ("tutorial", include_str!("nft_typed/tutorial.txt")),
    ("json", include_str!("nft_typed/json.txt")),
    ("more", include_str!("nft_typed/more.txt")),
    ("roundtrip", include_str!("nft_typed/roundtrip.txt")),
    ("misc", include_str!("nft_typed/misc.txt")),
    ("intervals", include_str!("nft_typed/intervals.txt")),
    ("errors2", include_str!("nft_typed/errors2.txt")),
    ("numeric", include_str!("nft_typed/numeric.txt")),
    ("values", include_str!("nft_typed/values.txt")),
    ("files", include_str!("nft_typed/files.txt")),
    ("echo", include_str!("nft_typed/echo.txt")),
    ("deps", include_str!("nft_typed/deps.txt")),
    ("comments", include_str!("nft_typed/comments.txt")),
    ("typos", include_str!("nft_typed/typos.txt")),
    ("lists", include_str!("nft_typed/lists.txt")),
    ("nat", include_str!("nft_typed/nat.txt")),
    ("wiki", include_str!("nft_typed/wiki.txt")),
];

#[test]
fn typed_sequences_match_real_nft() {
    let mut seqs = 0;
    let mut cmds = 0;
    let mut all_bad = Vec::new();
    let only = std::env::var("NFT_TYPED_ONLY").ok();
    for (name, text) in FILES {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        for (i, seq) in parse_sequences(text).iter().enumerate() {
            match run_one(name, i, seq) {
                Ok(bad) => {
                    seqs += 1;
                    cmds += seq.cmds.len();
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
    }
    println!(
        "typed: {seqs} sequences, {cmds} commands, {} mismatches",
        all_bad.len()
    );
    assert!(all_bad.is_empty(), "{}", all_bad.join("\n"));
}
