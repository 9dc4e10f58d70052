//! The real runner sends the batched layout's `nft -f -` scripts to the
//! kernel itself (`virtnet_runner::nft`). For every golden case's
//! batched nftables start (`golden/releases/unreleased/*/nftables-batched.start`)
//! and its removal (`rules::batched::batch_removal`, what destroy runs),
//! the script applied in-process and applied by `nft` 1.0.6, each in a
//! fresh network namespace on top of the layout's shared part, must leave
//! the same ruleset: `nft -a list ruleset` (names, handles, the listed
//! rules and map elements) and `nft --debug=netlink list ruleset` (every
//! rule's bytecode, every map element's key, data and flags) equal, except
//! for the all-zero interval end `nft` puts before the first interval of
//! a map (a marker of its own, which the kernel needs no more than the
//! listing shows it). Skipped, with the reason, when not root or without
//! `nft` 1.0.6.

mod rules_common;

use rules_common::{cases, golden, read};
use virtnet_core::firewall::Layer;
use virtnet_core::rules::batched::{batch_removal, nft_batch_cmd, nft_setup_script};
use virtnet_runner::{Cmd, Output, RealRunner, Runner};

/// The `nft -f -` script of a golden start file (its `  | ` lines).
fn nft_script(start: &str) -> Option<String> {
    let lines: Vec<&str> = start.lines().collect();
    let at = lines
        .windows(3)
        .position(|w| w == ["nft \\", "-f \\", "-"])?;
    Some(
        lines[at + 3..]
            .iter()
            .map_while(|l| l.strip_prefix("  | "))
            .map(|l| format!("{l}\n"))
            .collect(),
    )
}

fn scripts() -> Vec<(String, String)> {
    let dir = golden().join("releases/unreleased");
    let mut out = Vec::new();
    for case in cases(&golden().join("cases")) {
        let path = dir.join(&case).join("nftables-batched.start");
        if !path.exists() {
            continue;
        }
        if let Some(s) = nft_script(&read(&path)) {
            out.push((case, s));
        }
    }
    assert!(out.len() >= 25, "only {} cases", out.len());
    out
}

fn removal_script(start: &str) -> String {
    batch_removal("nft", start)
        .into_iter()
        .map(|(_, a)| a.join(" ") + "\n")
        .collect()
}

/// Both listings, with `nft`'s leading all-zero interval end taken out of
/// the element dumps.
fn listing(r: &RealRunner) -> String {
    let plain = r
        .run(&Cmd::new(["nft", "-a", "list", "ruleset"]))
        .expect("nft");
    assert!(plain.success(), "{plain:?}");
    let debug = r
        .run(&Cmd::new(["nft", "--debug=netlink", "list", "ruleset"]))
        .expect("nft");
    assert!(debug.success(), "{debug:?}");
    let zero_end = without_zero_interval_end(&debug.stdout);
    format!("{}\n---\n{zero_end}", plain.stdout)
}

/// Removes `element 00000000 … : 1 [end]` (all-zero key, end flag) items
/// from `nft --debug=netlink`'s element lines.
fn without_zero_interval_end(s: &str) -> String {
    s.lines()
        .filter_map(|l| {
            let kept = l
                .split('\t')
                .filter(|item| {
                    let Some(rest) = item.strip_prefix("element ") else {
                        return true;
                    };
                    let Some((key, flags)) = rest.split_once(" : ") else {
                        return true;
                    };
                    let zero = key.split_whitespace().all(|w| w == "00000000");
                    !(zero && flags.trim() == "1 [end]")
                })
                .collect::<Vec<_>>()
                .join("\t");
            // A line that held nothing but the marker goes with it.
            (kept.trim().is_empty() == l.trim().is_empty()).then_some(kept)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shared part (by `nft`), then `start` and its removal, each by
/// `nft` (`direct: false`) or in-process; the listings after the shared
/// part, after the start, after the removal, and the two outputs.
fn apply(start: String, direct: bool) -> (Vec<String>, Vec<Output>) {
    virtnet_testkit::netns::in_fresh_thread_netns(move || {
        let r = RealRunner::new();
        for layer in [Layer::Ipv4, Layer::Ipv6] {
            let out = r
                .run(&nft_batch_cmd(&nft_setup_script(layer)))
                .expect("nft");
            assert!(out.success(), "setup: {out:?}");
        }
        let mut listings = vec![listing(&r)];
        let mut outs = Vec::new();
        for script in [start.clone(), removal_script(&start)] {
            let cmd = nft_batch_cmd(&script);
            let out = if direct {
                virtnet_runner::nft::in_process(&cmd).unwrap_or_else(|| {
                    panic!(
                        "not taken in-process: {:?}",
                        virtnet_runner::nft::first_unknown_line(&script)
                    )
                })
            } else {
                r.run(&cmd).expect("nft")
            };
            outs.push(out);
            listings.push(listing(&r));
        }
        (listings, outs)
    })
}

fn cannot_run() -> Option<String> {
    virtnet_testkit::netns::cannot_run(&["nft"])
        .or_else(|| virtnet_testkit::netns::other_version("nft", "-v", "v1.0.6"))
}

#[test]
fn in_process_scripts_leave_what_nft_leaves() {
    if let Some(why) = cannot_run() {
        virtnet_testkit::skip(&why);
        return;
    }
    let mut bad = Vec::new();
    let mut n = 0;
    for (case, start) in scripts() {
        let (by_nft, nft_outs) = apply(start.clone(), false);
        let (direct, direct_outs) = apply(start.clone(), true);
        for (o, d) in nft_outs.iter().zip(&direct_outs) {
            assert!(o.success(), "{case}: nft: {o:?}");
            assert!(d.success(), "{case}: in-process: {d:?}");
        }
        for (k, what) in ["shared part", "start", "removal"].iter().enumerate() {
            if by_nft[k] != direct[k] {
                bad.push(format!(
                    "{case}: after the {what}:\n--- nft\n{}\n--- in-process\n{}",
                    by_nft[k], direct[k]
                ));
            }
        }
        assert_eq!(direct[2], direct[0], "{case}: the removal left something");
        n += 1;
    }
    assert!(
        bad.is_empty(),
        "{} differences:\n{}",
        bad.len(),
        bad.join("\n")
    );
    println!("ok: {n} cases, start and removal, listed alike");
}

#[test]
fn a_failing_line_fails_the_whole_batch_and_is_named() {
    if let Some(why) = cannot_run() {
        virtnet_testkit::skip(&why);
        return;
    }
    // Line 3 jumps to a chain that does not exist: nothing may stay.
    let script = "add chain ip virtnet_batched net_x_in\n\
                  add rule ip virtnet_batched net_x_in oifname x counter reject\n\
                  add element ip virtnet_batched fwd_in { x : jump net_x_nope }\n";
    let run = |direct: bool| {
        virtnet_testkit::netns::in_fresh_thread_netns(move || {
            let r = RealRunner::new();
            let out = r
                .run(&nft_batch_cmd(&nft_setup_script(Layer::Ipv4)))
                .expect("nft");
            assert!(out.success(), "setup: {out:?}");
            let before = listing(&r);
            let cmd = nft_batch_cmd(script);
            let out = if direct {
                virtnet_runner::nft::in_process(&cmd).expect("taken in-process")
            } else {
                r.run(&cmd).expect("nft")
            };
            (before, listing(&r), out)
        })
    };
    let (nft_before, nft_after, nft_out) = run(false);
    let (before, after, out) = run(true);
    assert_eq!(nft_out.status, 1, "{nft_out:?}");
    assert_eq!(nft_before, nft_after, "nft: the batch is atomic");
    assert_eq!(out.status, 1, "{out:?}");
    assert_eq!(before, after, "in-process: the batch is atomic");
    let line = "add element ip virtnet_batched fwd_in { x : jump net_x_nope }";
    assert_eq!(
        out.stderr,
        format!(
            "/dev/stdin:3:1-{n}: Error: Could not process rule: No such file or directory\n\
             {line}\n{}\n",
            "^".repeat(line.len()),
            n = line.len()
        )
    );
    assert!(
        nft_out.stderr.contains("No such file or directory"),
        "{}",
        nft_out.stderr
    );
}

/// The runner keeps one netlink socket per thread and namespace: a thread
/// that moves to another namespace must send there, and a failed batch must
/// leave nothing that the next one would read as its answers.
#[test]
fn a_thread_that_changes_namespace_sends_to_the_new_one() {
    if let Some(why) = cannot_run() {
        virtnet_testkit::skip(&why);
        return;
    }
    let chain = |name: &str| format!("add chain ip virtnet_batched {name}\n");
    let lists = |r: &RealRunner, name: &str| {
        let out = r
            .run(&Cmd::new(["nft", "list", "chains", "ip"]))
            .expect("nft");
        out.stdout.contains(&format!("chain {name} "))
    };
    virtnet_testkit::netns::in_fresh_thread_netns(move || {
        let r = RealRunner::new();
        let setup = |r: &RealRunner| {
            let out = r
                .run(&nft_batch_cmd(&nft_setup_script(Layer::Ipv4)))
                .expect("nft");
            assert!(out.success(), "setup: {out:?}");
        };
        setup(&r);
        let first = virtnet_runner::nft::in_process(&nft_batch_cmd(&chain("in_a")))
            .expect("taken in-process");
        assert!(first.success(), "{first:?}");
        assert!(lists(&r, "in_a"));
        // A failing batch, then a good one on the same socket.
        let bad = virtnet_runner::nft::in_process(&nft_batch_cmd(
            "add element ip virtnet_batched fwd_in { x : jump nope }\n",
        ))
        .expect("taken in-process");
        assert_eq!(bad.status, 1, "{bad:?}");
        let good = virtnet_runner::nft::in_process(&nft_batch_cmd(&chain("in_a2")))
            .expect("taken in-process");
        assert!(good.success(), "{good:?}");
        assert!(lists(&r, "in_a2"));
        // Another namespace: the chain must land there.
        virtnet_testkit::netns::enter_fresh_thread_netns().expect("unshare");
        setup(&r);
        let out = virtnet_runner::nft::in_process(&nft_batch_cmd(&chain("in_b")))
            .expect("taken in-process");
        assert!(out.success(), "{out:?}");
        assert!(lists(&r, "in_b"), "the batch went to the old namespace");
        assert!(!lists(&r, "in_a"));
    });
}
