//! Fidelity of the iptables simulator against libvirt's own data:
//!
//! * every 11.3.0 `networkxml2firewalldata/*.iptables` stream (after
//!   `base.iptables`) and every 9.0.0 `*.args` stream (after `base.args`)
//!   replays without error, and the resulting `iptables-save` /
//!   `ip6tables-save` equal what the real kernel showed after `net-start` in
//!   the captures (`1-after-start.*-save`, counters and comments normalised);
//! * every captured `commands.log` of the iptables backend replays command by
//!   command with the same exit status, stdout and stderr, and the state at
//!   each captured step equals the captured `*-save` files.

use std::path::{Path, PathBuf};

use virtnet_core::runner::{Cmd, Runner};
use virtnet_fake::record::{parse_golden, parse_log, LogEntry};
use virtnet_fake::{diff_text, FakeHost};

fn golden() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/upstream"))
        .canonicalize()
        .expect("golden/upstream exists")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Drop `#` comment lines and zero the `[packets:bytes]` counters.
fn normalise_save(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines() {
        if l.starts_with('#') {
            continue;
        }
        let l = match (l.starts_with(':'), l.rfind(" [")) {
            (true, Some(i)) if l.ends_with(']') => format!("{} [0:0]", &l[..i]),
            _ => l.to_string(),
        };
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn replay_stream(host: &FakeHost, path: &Path) {
    let cmds = parse_golden(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!cmds.is_empty(), "{}: no commands", path.display());
    for argv in cmds {
        let out = host
            .run(&Cmd {
                argv: argv.clone(),
                stdin: None,
            })
            .unwrap();
        assert!(
            out.success(),
            "{}: {:?} failed: {out:?}",
            path.display(),
            argv
        );
    }
}

fn check_save(host: &FakeHost, capture_dir: &Path, step: &str, failures: &mut Vec<String>) {
    let st = host.state();
    for (fam, text) in [
        ("iptables", st.iptables.save(None)),
        ("ip6tables", st.ip6tables.save(None)),
    ] {
        let file = capture_dir.join(format!("{step}.{fam}-save"));
        if !file.exists() {
            continue;
        }
        let want = normalise_save(&read(&file));
        let d = diff_text(&want, &text, &file.display().to_string(), "simulator");
        if !d.is_empty() {
            failures.push(d);
        }
    }
}

fn cases(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .filter(|p| !p.file_stem().is_some_and(|s| s == "base"))
        .collect();
    v.sort();
    v
}

fn replay_release(release: &str, ext: &str) -> usize {
    let root = golden();
    let data = root.join(format!("{release}/tests/networkxml2firewalldata"));
    let base = data.join(format!("base.{ext}"));
    let mut failures = Vec::new();
    let mut n = 0;
    for case in cases(&data, ext) {
        let host = FakeHost::new();
        replay_stream(&host, &base);
        replay_stream(&host, &case);
        let name = case
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .trim_end_matches("-linux")
            .to_string();
        let cap = root.join(format!("captures/{release}/{name}/iptables"));
        assert!(cap.is_dir(), "no capture for {}", case.display());
        check_save(&host, &cap, "1-after-start", &mut failures);
        n += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    n
}

#[test]
fn libvirt_11_3_0_iptables_streams_give_the_captured_rulesets() {
    let n = replay_release("libvirt-11.3.0", "iptables");
    assert_eq!(n, 11, "expected 11 network cases");
}

#[test]
fn libvirt_9_0_0_args_streams_give_the_captured_rulesets() {
    let n = replay_release("libvirt-9.0.0", "args");
    assert_eq!(n, 7, "expected the 7 9.0.0 network cases");
}

/// Which snapshot follows the end of a step, given how many times that
/// step name was seen so far.
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

#[test]
fn captured_iptables_command_logs_replay_identically() {
    let root = golden().join("captures");
    let mut logs = Vec::new();
    for rel in ["libvirt-11.3.0", "libvirt-9.0.0"] {
        for case in std::fs::read_dir(root.join(rel))
            .unwrap()
            .filter_map(|e| e.ok())
        {
            for sub in ["iptables", "restart-iptables-to-iptables"] {
                let p = case.path().join(sub).join("commands.log");
                if p.exists() {
                    logs.push(p);
                }
            }
        }
    }
    logs.sort();
    assert!(logs.len() >= 40, "found only {} logs", logs.len());
    let mut failures = Vec::new();
    let mut commands = 0;
    let mut checkpoints = 0;
    for log in &logs {
        let dir = log.parent().unwrap_or(Path::new("."));
        let restart = dir.ends_with("restart-iptables-to-iptables");
        let entries = parse_log(&read(log)).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let host = FakeHost::new();
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let mut current: Option<String> = None;
        let finish = |step: &Option<String>,
                      seen: &mut std::collections::HashMap<String, usize>,
                      host: &FakeHost,
                      failures: &mut Vec<String>,
                      checkpoints: &mut usize| {
            if let Some(s) = step {
                let n = seen.entry(s.clone()).or_insert(0);
                *n += 1;
                if let Some(snap) = snapshot_after(s, *n, restart) {
                    *checkpoints += 1;
                    check_save(host, dir, snap, failures);
                }
            }
        };
        for e in entries {
            match e {
                LogEntry::Step(s) => {
                    finish(&current, &mut seen, &host, &mut failures, &mut checkpoints);
                    current = Some(s);
                }
                LogEntry::Command {
                    line, argv, output, ..
                } => {
                    commands += 1;
                    let got = host
                        .run(&Cmd {
                            argv: argv.clone(),
                            stdin: None,
                        })
                        .unwrap();
                    if got != output {
                        failures.push(format!(
                            "{}:{line}: {:?}\n  real: {output:?}\n  fake: {got:?}",
                            log.display(),
                            argv
                        ));
                    }
                }
            }
        }
        finish(&current, &mut seen, &host, &mut failures, &mut checkpoints);
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "replayed {commands} commands from {} logs, {checkpoints} state checkpoints",
        logs.len()
    );
    assert!(commands > 1000 && checkpoints >= 80);
}
