//! Real libvirt daemon runs (golden/upstream/captures): the commands our
//! generators make the engine run — private-chain setup fed with the real
//! `--list-rules` / `nft list table` output, the tc qdisc probe, every rule
//! with its `-w` / `-ae`, the saved removal at destroy, the remove+add at a
//! daemon restart with the same or the other backend, and libvirt 9.0.0's
//! add/legacy removal — must be exactly the logged argv sequence.

mod rules_common;

use std::path::Path;

use rules_common::{golden, parse_log, read, Entry, Replay};
use virtnet_core::firewall::{Backend, Firewall};
use virtnet_core::netxml::{self, NetworkDef};
use virtnet_core::rules::{self, ChainInitState, RulesError};

fn section<'a>(log: &'a [(String, Vec<Entry>)], name: &str, nth: usize) -> &'a [Entry] {
    log.iter()
        .filter(|(n, _)| n == name)
        .nth(nth)
        .map(|(_, e)| e.as_slice())
        .unwrap_or_else(|| panic!("no section {name} #{nth}"))
}

fn backend(s: &str) -> Backend {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// The removal as the network object saves it (libvirt names it there).
fn as_saved(removal: &Option<Firewall>) -> String {
    let mut fw = removal.clone().expect("a removal plan");
    fw.set_name("fwRemoval");
    fw.format_xml(2)
}

fn saved_firewall(status: &str) -> &str {
    let start = status.find("  <firewall").expect("<firewall> in status");
    let end = status[start..].find("</firewall>\n").expect("</firewall>") + start;
    &status[start..end + "</firewall>\n".len()]
}

fn start(def: &mut NetworkDef, b: Backend, entries: &[Entry], what: &str) -> Option<Firewall> {
    let replay = Replay::new(entries);
    let mut chains = ChainInitState::new();
    let removal = rules::add_network_firewall(def, b, &replay, &mut chains);
    replay.check_done(what);
    removal.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn destroy(def: &NetworkDef, removal: Option<&Firewall>, entries: &[Entry], what: &str) {
    let replay = Replay::new(entries);
    rules::remove_network_firewall(def, removal, &replay).expect("remove");
    replay.check_done(what);
}

fn run_11(dir: &Path, case: &str, kind: &str) -> usize {
    let what = format!("11.3.0 {case}/{kind}");
    let log = parse_log(&read(&dir.join("commands.log")));
    let mut def = netxml::parse(&read(&dir.join("network.xml"))).expect("network.xml");
    if kind == "nftables-no-tc-workaround" {
        // The kernel lacks act_csum: the tc filter fails, the group is
        // rolled back, then start's cleanup regenerates the legacy removal.
        let replay = Replay::new(section(&log, "net-start", 0));
        let mut chains = ChainInitState::new();
        let err = rules::add_network_firewall(&mut def, Backend::Nftables, &replay, &mut chains)
            .expect_err("tc filter add fails");
        assert!(
            matches!(err, RulesError::Firewall(_)) && err.to_string().contains("tc filter add"),
            "{what}: {err}"
        );
        rules::remove_network_firewall(&def, None, &replay).expect("remove");
        replay.check_done(&what);
        return 1;
    }
    if let Some(pair) = kind.strip_prefix("restart-") {
        let (from, to) = pair.split_once("-to-").expect("restart-A-to-B");
        let removal = start(
            &mut def,
            backend(from),
            section(&log, "net-start", 0),
            &what,
        );
        // Restarted daemon: chains (fresh process), saved removal, add.
        let entries = section(
            &log,
            &format!("daemon-start backend={to}"),
            usize::from(from == to),
        );
        let replay = Replay::new(entries);
        let mut chains = ChainInitState::new();
        rules::pre_reload_private_chains(&mut chains, backend(to), &replay, false, true)
            .expect("setup");
        let removal = rules::reload_network_firewall(
            &mut def,
            removal.as_ref(),
            backend(to),
            &replay,
            &mut chains,
        )
        .expect("reload");
        assert!(removal.is_some(), "{what}: the add after restart succeeded");
        replay.check_done(&format!("{what} daemon restart"));
        let status = read(&dir.join("3-after-restart.status.xml"));
        let saved = as_saved(&removal);
        assert_eq!(
            saved,
            saved_firewall(&status),
            "{what}: saved removal after restart"
        );
        destroy(
            &def,
            removal.as_ref(),
            section(&log, "net-destroy", 0),
            &what,
        );
        return 1;
    }
    let b = backend(kind);
    let removal = start(&mut def, b, section(&log, "net-start", 0), &what);
    let status = read(&dir.join("1-after-start.status.xml"));
    let saved = as_saved(&removal);
    assert_eq!(saved, saved_firewall(&status), "{what}: saved removal");
    destroy(
        &def,
        removal.as_ref(),
        section(&log, "net-destroy", 0),
        &what,
    );
    1
}

fn run_9(dir: &Path, case: &str, kind: &str) -> usize {
    let what = format!("9.0.0 {case}/{kind}");
    let log = parse_log(&read(&dir.join("commands.log")));
    let mut def = netxml::parse(&read(&dir.join("network.xml"))).expect("network.xml");
    let add = |def: &mut NetworkDef, entries: &[Entry], fresh: bool| {
        let replay = Replay::new(entries);
        let mut chains = ChainInitState::new();
        chains
            .setup(Backend::Iptables, &replay, false)
            .expect("setup");
        if !fresh {
            rules::remove_network_firewall(def, None, &replay).expect("remove");
        }
        let mut fw = rules::libvirt9_network_rules(def).expect("rules");
        fw.apply(&replay).expect("apply");
        replay.check_done(&what);
    };
    add(&mut def, section(&log, "net-start", 0), true);
    if kind.starts_with("restart-") {
        add(
            &mut def,
            section(&log, "daemon-start backend=iptables", 1),
            false,
        );
    }
    destroy(&def, None, section(&log, "net-destroy", 0), &what);
    1
}

fn run_release(release: &str, f: fn(&Path, &str, &str) -> usize) -> usize {
    let root = golden().join("upstream/captures").join(release);
    let mut n = 0;
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("captures")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    cases.sort_by_key(|e| e.file_name());
    for case in cases {
        let case_name = case.file_name().to_string_lossy().to_string();
        let mut kinds: Vec<_> = std::fs::read_dir(case.path())
            .expect("case dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("commands.log").exists())
            .collect();
        kinds.sort_by_key(|e| e.file_name());
        for kind in kinds {
            n += f(
                &kind.path(),
                &case_name,
                &kind.file_name().to_string_lossy(),
            );
        }
    }
    n
}

#[test]
fn libvirt_11_captures_replay_exactly() {
    // 11 cases x (iptables, nftables, 4 restarts) + nat-default's no-tc run.
    assert_eq!(run_release("libvirt-11.3.0", run_11), 67);
}

#[test]
fn libvirt_9_captures_replay_exactly() {
    // 11 cases x (iptables, restart).
    assert_eq!(run_release("libvirt-9.0.0", run_9), 22);
}
