//! (b) Replay the real libvirt daemon command logs (`commands.log` of every
//! capture) through the simulator, command by command, and compare exit
//! code, stdout and stderr of every `nft` command with what the real nft
//! printed.
//!
//! Logs of the pure nftables runs are compared exactly (the pid of the
//! generation line aside). In the runs that switch between backends the
//! host's iptables was iptables-nft: its commands also committed nftables
//! generations, which the nft simulator alone cannot see, so there the
//! generation number is masked too. Counters are zeroed (traffic).

mod nft_support;

use nft_support::*;
use virtnet_fake::nft::NftState;

#[test]
fn commands_logs_replay_with_identical_outputs() {
    let root = golden().join("captures/libvirt-11.3.0");
    let mut logs = Vec::new();
    for case in std::fs::read_dir(&root).unwrap().filter_map(Result::ok) {
        if !case.path().is_dir() {
            continue;
        }
        for run in std::fs::read_dir(case.path())
            .unwrap()
            .filter_map(Result::ok)
        {
            let p = run.path().join("commands.log");
            if p.exists() {
                logs.push(p);
            }
        }
    }
    logs.sort();
    let mut compared = 0;
    let mut exact_logs = 0;
    let mut failures = Vec::new();
    for log in &logs {
        let run = log
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let pure = matches!(
            run.as_str(),
            "nftables" | "nftables-no-tc-workaround" | "restart-nftables-to-nftables"
        );
        if pure {
            exact_logs += 1;
        }
        let mut st = NftState::new();
        for e in parse_commands_log(&read(log)) {
            if e.argv.first().map(String::as_str) != Some("nft") {
                continue;
            }
            let out = st.exec(&e.argv[1..], None);
            compared += 1;
            let got_out = normalize_generation(&zero_counters(&out.stdout), pure);
            let want_out = normalize_generation(&zero_counters(&e.stdout), pure);
            if out.status != e.rc || got_out != want_out || out.stderr != e.stderr {
                failures.push(format!(
                    "{}:{} {:?}\n  want rc={} out={:?} err={:?}\n  got  rc={} out={:?} err={:?}",
                    log.display(),
                    e.line,
                    e.argv,
                    e.rc,
                    want_out,
                    e.stderr,
                    out.status,
                    got_out,
                    out.stderr
                ));
            }
        }
    }
    println!(
        "replayed {} logs ({} compared with generations), {} nft commands, {} mismatches",
        logs.len(),
        exact_logs,
        compared,
        failures.len()
    );
    assert!(
        logs.len() >= 60,
        "expected the capture logs, found {}",
        logs.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
