//! One ruleset for iptables-nft and nft: every captured libvirt daemon run
//! (11.3.0 and 9.0.0, every backend and every backend switch across a
//! restart) is replayed command by command on the simulated host, and at
//! each captured checkpoint `nft list ruleset` and `nft -a list ruleset`
//! run on the simulator must print what the real host printed
//! (`N-*.nft`, `N-*.nft-handles`): iptables-nft's tables with their
//! translated rules, handles shared with nft's tables, and the "managed by
//! iptables-nft" warnings.
//!
//! The capture files hold stdout and stderr together (`2>&1`): nft prints
//! a table's warning on stderr just before it prints the table. The test
//! splits the warning lines off, compares them in order with the
//! simulator's stderr, checks each one sits right before the header of the
//! table it names, and compares the rest with the simulator's stdout.
//! Packet and byte counters of the capture are masked to 0 (the simulator
//! has no traffic).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use virtnet_fake::record::{parse_log, LogEntry};
use virtnet_fake::{diff_text, FakeHost};
use virtnet_runner::{Cmd, Output, Runner};

fn captures() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/captures"
    ))
    .canonicalize()
    .expect("golden/upstream/captures exists")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Zero the numbers after `packets` and `bytes`.
fn mask_counters(text: &str) -> String {
    let mut out = String::new();
    for l in text.split_inclusive('\n') {
        let (body, nl) = match l.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (l, ""),
        };
        let mut words: Vec<String> = body.split(' ').map(String::from).collect();
        for i in 1..words.len() {
            if (words[i - 1] == "packets" || words[i - 1] == "bytes")
                && !words[i].is_empty()
                && words[i].chars().all(|c| c.is_ascii_digit())
            {
                words[i] = "0".into();
            }
        }
        out.push_str(&words.join(" "));
        out.push_str(nl);
    }
    out
}

const WARN_PREFIX: &str = "# Warning: table ";

/// Split a captured `2>&1` listing into (stdout, stderr): the stderr
/// pieces are the warning lines, each checked to sit right before the
/// header of its table, and nft's "XT target NAME not found" messages,
/// which land in the middle of a rule's line (nft's stdout is unbuffered).
fn split_capture(text: &str, file: &Path) -> Result<(String, String), String> {
    let mut pieces: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for l in text.split_inclusive('\n') {
        if l.starts_with(WARN_PREFIX) {
            pieces.push((start, l.len()));
        }
        start += l.len();
    }
    let mut from = 0;
    while let Some(i) = text[from..].find("XT target ") {
        let at = from + i;
        let Some(j) = text[at..].find(" not found\n") else {
            break;
        };
        let len = j + " not found\n".len();
        pieces.push((at, len));
        from = at + len;
    }
    pieces.sort();
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut pos = 0;
    for (at, len) in &pieces {
        stdout.push_str(&text[pos..*at]);
        let piece = &text[*at..at + len];
        stderr.push_str(piece);
        pos = at + len;
        if let Some(rest) = piece.strip_prefix(WARN_PREFIX) {
            let table = rest
                .split(" is managed by iptables-nft")
                .next()
                .unwrap_or_default();
            if !text[pos..].starts_with(&format!("table {table} {{")) {
                return Err(format!(
                    "{}: warning for {table} is not followed by its table",
                    file.display()
                ));
            }
        }
    }
    stdout.push_str(&text[pos..]);
    Ok((stdout, stderr))
}

/// Which checkpoint follows the end of a step (the step name normalised to
/// the iptables backend), given how many times it was seen.
fn snapshot_after(step: &str, seen: usize, restart: bool) -> Option<&'static str> {
    match (step, seen, restart) {
        ("net-start", 1, _) => Some("1-after-start"),
        ("daemon-stop", 1, true) => Some("2-after-daemon-stop"),
        ("daemon-start backend=iptables", 2, true) => Some("3-after-restart"),
        ("net-destroy", 1, _) => Some("9-after-destroy"),
        ("daemon-stop", 1, false) | ("daemon-stop", 2, true) => Some("9-after-daemon-stop"),
        _ => None,
    }
}

/// Checkpoints that cannot be reproduced, with the reason. The test fails
/// if one of them starts to pass (so the list stays needed).
const EXCLUDED: &[(&str, &str)] = &[];

fn run(host: &FakeHost, argv: &[&str]) -> Output {
    host.run(&Cmd {
        argv: argv
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into(),
        stdin: None,
        env: Vec::new(),
    })
    .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// Compare the simulator's listings with the checkpoint's capture files.
fn check(host: &FakeHost, dir: &Path, snap: &str, failures: &mut Vec<String>) -> usize {
    let mut n = 0;
    for (ext, argv) in [
        ("nft", &["nft", "list", "ruleset"][..]),
        ("nft-handles", &["nft", "-a", "list", "ruleset"][..]),
    ] {
        let file = dir.join(format!("{snap}.{ext}"));
        if !file.exists() {
            continue;
        }
        n += 1;
        let (want_out, want_err) = match split_capture(&mask_counters(&read(&file)), &file) {
            Ok(x) => x,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let got = run(host, argv);
        let name = file.display().to_string();
        let (got_out, got_err) = (&got.stdout, &got.stderr);
        let mut d = diff_text(&want_out, got_out, &name, "simulator stdout");
        d.push_str(&diff_text(
            &want_err,
            got_err,
            &format!("{name} (warnings)"),
            "simulator stderr",
        ));
        if got.status != 0 {
            d.push_str(&format!("{name}: simulator exit status {}\n", got.status));
        }
        if !d.is_empty() {
            failures.push(d);
        }
    }
    n
}

fn all_logs() -> Vec<PathBuf> {
    let mut logs = Vec::new();
    for rel in ["libvirt-11.3.0", "libvirt-9.0.0"] {
        for case in std::fs::read_dir(captures().join(rel))
            .unwrap()
            .filter_map(|e| e.ok())
        {
            for run in std::fs::read_dir(case.path())
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
            {
                let p = run.path().join("commands.log");
                if p.exists() {
                    logs.push(p);
                }
            }
        }
    }
    logs.sort();
    logs
}

#[test]
fn every_captured_run_lists_the_same_ruleset_through_nft() {
    let logs = all_logs();
    assert!(logs.len() >= 89, "found only {} logs", logs.len());
    let mut failures: Vec<String> = Vec::new();
    let mut checked = 0usize;
    let mut excluded_failing: Vec<String> = Vec::new();
    for log in &logs {
        let dir = log.parent().unwrap_or(Path::new("."));
        let restart = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("restart-"));
        let host = FakeHost::new();
        host.set_tc_csum_fails(true);
        let entries = parse_log(&read(log)).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut step: Option<String> = None;
        let mut local: Vec<String> = Vec::new();
        let mut snap_check = |snap: &str, local: &mut Vec<String>| {
            let mut f = Vec::new();
            checked += check(&host, dir, snap, &mut f);
            let key = format!(
                "{}/{snap}",
                dir.strip_prefix(captures()).unwrap_or(dir).display()
            );
            if EXCLUDED.iter().any(|(k, _)| *k == key) {
                if f.is_empty() {
                    excluded_failing.push(format!("{key} passes: remove it from EXCLUDED"));
                }
            } else {
                local.extend(f);
            }
        };
        for e in entries {
            match e {
                LogEntry::Step(s) => {
                    if let Some(prev) = &step {
                        if prev == "net-destroy" {
                            let _ = run(&host, &["ip", "link", "del", "virbr0"]);
                        }
                        let n = seen.entry(prev.clone()).or_insert(0);
                        *n += 1;
                        let norm = prev.replace("backend=nftables", "backend=iptables");
                        if let Some(snap) = snapshot_after(&norm, *n, restart) {
                            snap_check(snap, &mut local);
                        }
                    }
                    if s == "net-start" {
                        snap_check("0-before-start", &mut local);
                        let _ = run(&host, &["ip", "link", "add", "virbr0", "type", "bridge"]);
                    }
                    step = Some(s);
                }
                LogEntry::Command { argv, .. } => {
                    let _ = host.run(&Cmd {
                        argv: argv.into(),
                        stdin: None,
                        env: Vec::new(),
                    });
                }
            }
        }
        if let Some(prev) = &step {
            let n = seen.entry(prev.clone()).or_insert(0);
            *n += 1;
            let norm = prev.replace("backend=nftables", "backend=iptables");
            if let Some(snap) = snapshot_after(&norm, *n, restart) {
                snap_check(snap, &mut local);
            }
        }
        failures.extend(local);
    }
    assert!(
        failures.is_empty() && excluded_failing.is_empty(),
        "{} checkpoint listings differ:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        excluded_failing.join("\n")
    );
    println!(
        "{} runs, {checked} captured nft listings reproduced",
        logs.len()
    );
    assert!(checked >= 400, "only {checked} listings compared");
}
