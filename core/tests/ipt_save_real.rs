//! `rules::ipt_save::canonical_rule` predicts what `iptables-save` /
//! `ip6tables-save` list for the batched iptables layout: for every golden
//! case (`golden/cases/*.xml`, the networks whose batches are in
//! `golden/releases/unreleased/*/iptables-batched.start`), the batch the
//! definition gives (`rules::batched::ipt_expected`) is restored, with
//! libvirt's checksum rule, and every line of the network's own chains,
//! every jump and the checksum rule must be listed exactly as predicted.
//! Run against the real iptables-nft 1.8.9 in a fresh network namespace
//! (skipped with the reason printed when not root or the tools are
//! missing) and against the fake host (`virtnet_fake::FakeHost`, which the
//! simulator-based conformance matrix uses).

mod rules_common;

use rules_common::{cases, golden, read};
use virtnet_core::firewall::Layer;
use virtnet_core::rules::batched::{ipt_expected, restore_cmd, IptExpected};
use virtnet_core::rules::ipt_save::{canonical_rule, SavedTables};
use virtnet_runner::{Cmd, Output, Runner};

/// libvirt's private chains the per-network jumps go into (both families).
const PRIVATE: &str = "*filter\n:LIBVIRT_INP - [0:0]\n:LIBVIRT_OUT - [0:0]\n:LIBVIRT_FWO - [0:0]\n:LIBVIRT_FWI - [0:0]\n:LIBVIRT_FWX - [0:0]\nCOMMIT\n*nat\n:LIBVIRT_PRT - [0:0]\nCOMMIT\n*mangle\n:LIBVIRT_PRT - [0:0]\nCOMMIT\n";

/// The networks of the golden cases that have iptables rules.
fn expected_cases() -> Vec<(String, IptExpected)> {
    let dir = golden().join("cases");
    let mut out = Vec::new();
    for case in cases(&dir) {
        let Ok(mut def) = virtnet_core::netxml::parse(&read(&dir.join(format!("{case}.xml"))))
        else {
            continue;
        };
        if !virtnet_core::rules::has_firewall_rules(&def) {
            continue;
        }
        match ipt_expected(&mut def) {
            Ok(e) => out.push((case, e)),
            Err(e) => println!("{case}: no batch ({e})"),
        }
    }
    assert!(out.len() >= 25, "only {} cases", out.len());
    out
}

/// Restores `e` on a host (`run`: argv and stdin), then compares the
/// listings with the predictions; returns the mismatches.
fn compare(case: &str, e: &IptExpected, run: &dyn Fn(Cmd) -> Output) -> Vec<String> {
    let mut bad = Vec::new();
    for layer in [Layer::Ipv4, Layer::Ipv6] {
        let out = run(restore_cmd(layer, PRIVATE));
        assert!(out.success(), "{case}: private chains: {out:?}");
    }
    for (layer, input) in &e.inputs {
        if input.is_empty() {
            continue;
        }
        let out = run(restore_cmd(*layer, input));
        assert!(out.success(), "{case}: restore: {out:?}\n{input}");
    }
    // The checksum rule: expected only when its add succeeded.
    let mut checksum = Vec::new();
    for (layer, args) in &e.ignore_errors {
        let mut argv = vec![if *layer == Layer::Ipv6 {
            "ip6tables"
        } else {
            "iptables"
        }
        .to_string()];
        argv.push("-w".into());
        argv.extend(args.iter().cloned());
        if run(Cmd::new(argv)).success() {
            checksum.push((*layer, args.clone()));
        } else {
            println!("{case}: {args:?} failed (no CHECKSUM target?)");
        }
    }
    for layer in [Layer::Ipv4, Layer::Ipv6] {
        let prog = if layer == Layer::Ipv6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        };
        let out = run(Cmd::new([prog]));
        assert!(out.success(), "{case}: {prog}: {out:?}");
        let saved = SavedTables::parse(&out.stdout);
        let input = &e
            .inputs
            .iter()
            .find(|(l, _)| *l == layer)
            .expect("family")
            .1;
        let mut table = String::new();
        // (table, chain, predicted rules) of the own chains.
        let mut own: Vec<(String, String, Vec<String>)> = Vec::new();
        for line in input.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(c) = line.strip_prefix(':') {
                let chain = c.split_whitespace().next().unwrap_or("");
                own.push((table.clone(), chain.to_string(), Vec::new()));
            } else if let ["--append", chain, rule @ ..] = w.as_slice() {
                let Some(p) = canonical_rule(layer, rule) else {
                    bad.push(format!("{case}: cannot predict {line}"));
                    continue;
                };
                match own.iter_mut().find(|(t, c, _)| *t == table && c == chain) {
                    Some(o) => o.2.push(p),
                    None => bad.push(format!("{case}: append to a foreign chain: {line}")),
                }
            } else if let ["--insert", chain, rule @ ..] = w.as_slice() {
                match canonical_rule(layer, rule) {
                    Some(p) => {
                        let listed = saved.chain(&table, chain).unwrap_or(&[]);
                        if !listed.contains(&p) {
                            bad.push(format!(
                                "{case}: {prog}: jump `{p}` not in {chain}: {listed:#?}"
                            ));
                        }
                    }
                    None => bad.push(format!("{case}: cannot predict {line}")),
                }
            }
        }
        for (table, chain, predicted) in &own {
            let listed = saved.chain(table, chain);
            if listed != Some(predicted.as_slice()) {
                bad.push(format!(
                    "{case}: {prog} {table} {chain}:\n  predicted: {predicted:#?}\n  listed: {listed:#?}"
                ));
            }
        }
        for (l, args) in checksum.iter().filter(|(l, _)| *l == layer) {
            let p = canonical_rule(*l, &args[4..]);
            let listed = saved.chain(&args[1], &args[3]).unwrap_or(&[]);
            if !p.as_ref().is_some_and(|p| listed.contains(p)) {
                bad.push(format!("{case}: {prog}: checksum {p:?} not in {listed:#?}"));
            }
        }
    }
    bad
}

#[test]
fn predictions_match_the_fake_host() {
    let mut bad = Vec::new();
    let mut n = 0;
    for (case, e) in expected_cases() {
        let fake = virtnet_fake::FakeHost::new();
        bad.extend(compare(&case, &e, &|cmd| {
            fake.run(&cmd).expect("the fake host does not crash")
        }));
        n += 1;
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    println!("ok: {n} cases predicted as the fake host lists them");
}

#[test]
fn predictions_match_the_real_iptables_save() {
    if let Some(why) = virtnet_testkit::netns::cannot_run(&[
        "unshare",
        "nsenter",
        "iptables",
        "ip6tables",
        "iptables-restore",
        "ip6tables-restore",
        "iptables-save",
        "ip6tables-save",
    ])
    .or_else(|| virtnet_testkit::netns::other_version("iptables", "-V", "v1.8.9 (nf_tables)"))
    {
        virtnet_testkit::skip(&why);
        return;
    }
    let mut bad = Vec::new();
    let mut n = 0;
    for (case, e) in expected_cases() {
        let ns = match virtnet_testkit::Netns::new() {
            Ok(ns) => ns,
            Err(why) => {
                virtnet_testkit::skip(&why);
                return;
            }
        };
        bad.extend(compare(&case, &e, &|cmd| {
            ns.run_words_with_stdin(&cmd.argv, cmd.stdin.as_deref())
        }));
        n += 1;
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    println!("ok: {n} cases predicted as the real iptables-save lists them");
}
