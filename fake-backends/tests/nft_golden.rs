//! (a) Replay libvirt 11.3.0's nftables golden streams (base + per network)
//! through the simulator and compare the resulting ruleset with what the
//! real kernel held after the same commands (`1-after-start.nft` and
//! `.nft-handles` of the daemon captures; counters zeroed, the captures saw
//! traffic).

mod nft_support;

use nft_support::*;
use virtnet_fake::nft::NftState;

fn cases() -> Vec<String> {
    let dir = golden().join("libvirt-11.3.0/tests/networkxml2firewalldata");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix("-linux.nftables"))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

/// Replay the stream; returns the state and the -ae outputs.
fn replay(case: &str) -> (NftState, Vec<(Vec<String>, String)>) {
    let dir = golden().join("libvirt-11.3.0/tests/networkxml2firewalldata");
    let mut cmds = parse_stream(&read(&dir.join("base.nftables")));
    cmds.extend(parse_stream(&read(
        &dir.join(format!("{case}-linux.nftables")),
    )));
    let mut st = NftState::new();
    let mut echoes = Vec::new();
    for argv in cmds
        .iter()
        .filter(|a| a.first().map(String::as_str) == Some("nft"))
    {
        let out = st.exec(&argv[1..], None);
        if argv[1] == "list" {
            // Fresh host: the private tables do not exist yet.
            assert_eq!(out.status, 1, "{case}: {argv:?} should fail: {out:?}");
            assert!(out.stderr.starts_with("Error: No such file or directory\n"));
        } else {
            assert_eq!(out.status, 0, "{case}: {argv:?} failed: {out:?}");
        }
        if argv[1] == "-ae" {
            assert!(
                out.stdout.contains("# handle "),
                "{case}: no handle echoed for {argv:?}"
            );
            echoes.push((argv.clone(), out.stdout));
        }
    }
    (st, echoes)
}

#[test]
fn golden_streams_give_the_captured_rulesets() {
    let cases = cases();
    assert!(
        cases.len() >= 11,
        "expected the 11 libvirt nftables cases, got {cases:?}"
    );
    let mut compared = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let (st, _) = replay(case);
        let cap = golden().join(format!("captures/libvirt-11.3.0/{case}/nftables"));
        let want = zero_counters(&read(&cap.join("1-after-start.nft")));
        let want_h = zero_counters(&read(&cap.join("1-after-start.nft-handles")));
        let got = st.list_ruleset();
        let got_h = st.list_ruleset_with_handles();
        if got != want {
            failures.push(format!(
                "{case}: list ruleset differs:\n{}",
                similar::TextDiff::from_lines(&want, &got).unified_diff()
            ));
        }
        if got_h != want_h {
            failures.push(format!(
                "{case}: -a list ruleset differs:\n{}",
                similar::TextDiff::from_lines(&want_h, &got_h).unified_diff()
            ));
        }
        compared += 2;
    }
    println!("compared {compared} listings for {} cases", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_streams_echo_like_the_real_daemon_run() {
    // The -ae echo of each rule must equal what the real nft printed in the
    // capture of the same network (pid aside).
    let mut compared = 0;
    for case in cases() {
        let (_, echoes) = replay(&case);
        let log = read(&golden().join(format!(
            "captures/libvirt-11.3.0/{case}/nftables/commands.log"
        )));
        let real: Vec<LogEntry> = parse_commands_log(&log)
            .into_iter()
            .filter(|e| e.argv.get(1).map(String::as_str) == Some("-ae"))
            .collect();
        assert_eq!(real.len(), echoes.len(), "{case}: number of -ae commands");
        for ((argv, got), want) in echoes.iter().zip(&real) {
            assert_eq!(argv, &want.argv, "{case}: command order");
            assert_eq!(
                normalize_generation(got, true),
                normalize_generation(&want.stdout, true),
                "{case}: echo of {argv:?}"
            );
            compared += 1;
        }
    }
    println!("compared {compared} echoes");
    assert!(compared > 100);
}
