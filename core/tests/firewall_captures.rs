//! End-to-end checks against real libvirt 11.3.0 daemon captures: replaying
//! the logged outputs (including nft's `# handle N` echoes) through the
//! engine must produce the exact `<firewall name='fwRemoval'>` element libvirt
//! saved, and applying that removal plan must run exactly the commands libvirt
//! ran at net-destroy (and at a daemon restart).
//!
//! (Were unit tests of `firewall`; as an integration test they share the
//! capture reader and the replaying runner of `rules_common`.)

mod rules_common;

use std::path::PathBuf;

use rstest::rstest;
use rules_common::{parse_log, Entry, Replay};
use virtnet_core::firewall::recording::RecordingRunner;
use virtnet_core::firewall::{Backend, Firewall, Layer, TransactionFlags};

fn capture_dir() -> std::path::PathBuf {
    rules_common::golden().join("upstream/captures/libvirt-11.3.0")
}

fn section<'a>(sections: &'a [(String, Vec<Entry>)], name: &str) -> &'a [Entry] {
    sections
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, e)| e.as_slice())
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// The `<firewall>` element of a status document (two-space indented, as
/// libvirt writes it) and its byte offset.
fn extract_firewall(doc: &str) -> Option<(usize, &str)> {
    let open = doc.find("  <firewall ")?;
    let close = doc[open..].find("  </firewall>\n")? + open + "  </firewall>\n".len();
    Some((open, &doc[open..close]))
}

fn layer_of_binary(bin: &str) -> Layer {
    match bin {
        "iptables" => Layer::Ipv4,
        "ip6tables" => Layer::Ipv6,
        other => panic!("unexpected binary {other}"),
    }
}

/// Rebuilds the per-network firewall libvirt applied at net-start from the
/// logged commands, and returns it with the log entries it should replay.
fn rebuild(backend: Backend, start: &[Entry]) -> (Firewall, Vec<Entry>) {
    let mut fw = Firewall::new(backend);
    let mut replay = Vec::new();
    match backend {
        Backend::Nftables => {
            let first = start
                .iter()
                .position(|e| {
                    e.argv
                        .starts_with(&["tc".into(), "filter".into(), "add".into()])
                })
                .expect("tc filter add logged");
            fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
            for e in &start[first..] {
                let argv = &e.argv;
                if argv[0] == "tc" {
                    assert_eq!(argv[1..3], ["filter", "add"]);
                    fw.add_cmd(Layer::Tc, argv[1..].iter().cloned());
                    let mut inverse = argv[1..].to_vec();
                    inverse[1] = "del".into();
                    fw.add_rollback_cmd(Layer::Tc, inverse);
                } else {
                    assert_eq!(argv[..2], ["nft", "-ae"], "{argv:?}");
                    let layer = match argv[4].as_str() {
                        "ip" => Layer::Ipv4,
                        "ip6" => Layer::Ipv6,
                        f => panic!("family {f}"),
                    };
                    fw.add_cmd(layer, argv[2..].iter().cloned());
                }
                replay.push(e.clone());
            }
        }
        _ => {
            let per_network: Vec<&Entry> = start
                .iter()
                .filter(|e| {
                    e.argv
                        .iter()
                        .position(|a| a == "--insert")
                        .and_then(|i| e.argv.get(i + 1))
                        .is_some_and(|chain| chain.starts_with("LIBVIRT_"))
                })
                .collect();
            let (checksum, general): (Vec<&Entry>, Vec<&Entry>) = per_network
                .into_iter()
                .partition(|e| e.argv.iter().any(|a| a == "CHECKSUM"));
            fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
            for e in &general {
                fw.add_cmd(layer_of_binary(&e.argv[0]), e.argv[2..].iter().cloned());
                replay.push((*e).clone());
            }
            fw.start_transaction(TransactionFlags::IGNORE_ERRORS | TransactionFlags::AUTO_ROLLBACK);
            for e in &checksum {
                fw.add_cmd(layer_of_binary(&e.argv[0]), e.argv[2..].iter().cloned());
                replay.push((*e).clone());
            }
        }
    }
    (fw, replay)
}

/// Every captured case (its `commands.log` of the libvirt 11.3.0 daemon),
/// each backend: one test each, generated from the capture directories.
#[rstest]
fn replayed_starts_give_libvirts_saved_removal_and_destroy_stream(
    #[files("../golden/upstream/captures/libvirt-11.3.0/*/iptables/commands.log")] log: PathBuf,
    #[values(Backend::Iptables, Backend::Nftables)] backend: Backend,
) {
    let case_dir = log
        .parent()
        .and_then(|d| d.parent())
        .expect("capture case directory");
    let case = case_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("case name");
    let dir = case_dir.join(backend.as_str());
    let what = format!("{case}/{backend}");
    let log = std::fs::read_to_string(dir.join("commands.log")).expect("commands.log");
    let sections = parse_log(&log);
    let (mut fw, replay_entries) = rebuild(backend, section(&sections, "net-start"));
    let replay = Replay::new(&replay_entries);
    fw.apply(&replay).unwrap_or_else(|e| panic!("{what}: {e}"));
    replay.check_done(&what);

    let mut removal = fw
        .new_from_rollback()
        .expect("no sticky error")
        .expect("something to remove");
    removal.set_name("fwRemoval");
    let status = std::fs::read_to_string(dir.join("1-after-start.status.xml")).expect("status");
    let (_, saved) = extract_firewall(&status).expect("saved <firewall>");
    let ours = removal.format_xml(2);
    if ours != saved {
        let diff = similar::TextDiff::from_lines(saved, &ours);
        panic!(
            "{what}:\n{}",
            diff.unified_diff().header("libvirt", "virtnet")
        );
    }

    // Destroy replays the saved plan: same commands as libvirt ran.
    let rec = RecordingRunner::new();
    removal.apply(&rec).expect("removal ignores errors");
    let destroy: Vec<Vec<String>> = section(&sections, "net-destroy")
        .iter()
        .map(|e| e.argv.clone())
        .collect();
    assert_eq!(rec.argvs(), destroy, "{what}: net-destroy stream");
}

#[test]
fn failing_tc_filter_rolls_back_only_the_preregistered_inverse() {
    // nat-default/nftables-no-tc-workaround: the kernel lacks act_csum, so
    // the first command of the group fails and libvirt runs the group's
    // rollback, which at that point holds only the tc inverse.
    let dir = capture_dir().join("nat-default/nftables-no-tc-workaround");
    let log = std::fs::read_to_string(dir.join("commands.log")).expect("commands.log");
    let sections = parse_log(&log);
    let start = section(&sections, "net-start");
    let first = start
        .iter()
        .position(|e| {
            e.argv
                .starts_with(&["tc".into(), "filter".into(), "add".into()])
        })
        .expect("tc filter add");
    let logged = &start[first..first + 2];
    assert_ne!(logged[0].status, 0, "the capture shows the failure");
    assert_eq!(logged[1].argv[..3], ["tc", "filter", "del"]);

    // The plan libvirt builds for nat-default (rules after the tc filter are
    // taken from the nftables capture of the same case).
    let ok_log = std::fs::read_to_string(capture_dir().join("nat-default/nftables/commands.log"))
        .expect("commands.log");
    let ok_sections = parse_log(&ok_log);
    let (mut fw, _) = rebuild(Backend::Nftables, section(&ok_sections, "net-start"));
    let replay = Replay::new(logged);
    let err = fw.apply(&replay).expect_err("tc filter fails");
    replay.check_done("no-tc-workaround");
    assert!(
        err.to_string().starts_with(
            "Failed to apply firewall command 'tc filter add dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp': Error: Failed to load TC action module."
        ),
        "{err}"
    );
}

/// Every captured case, each daemon restart the captures made (backend kept
/// or switched): one test each.
#[rstest]
fn restart_removes_with_the_saved_plan_of_the_old_backend(
    #[files("../golden/upstream/captures/libvirt-11.3.0/*/iptables/commands.log")] log: PathBuf,
    #[values(
        ("iptables", "nftables"),
        ("nftables", "iptables"),
        ("iptables", "iptables"),
        ("nftables", "nftables")
    )]
    restart: (&str, &str),
) {
    let (from, to) = restart;
    let case_dir = log
        .parent()
        .and_then(|d| d.parent())
        .expect("capture case directory");
    let case = case_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("case name");
    let dir = case_dir.join(format!("restart-{from}-to-{to}"));
    let what = format!("{case}/restart-{from}-to-{to}");
    let status =
        std::fs::read_to_string(dir.join("2-after-daemon-stop.status.xml")).expect("status");
    let (_, element) = extract_firewall(&status).expect("<firewall>");
    let mut plan = Firewall::parse_xml(element).expect("parses");
    assert_eq!(plan.backend().as_str(), from, "{what}");
    let rec = RecordingRunner::new();
    plan.apply(&rec).expect("removal");
    let removal = rec.argvs();
    assert!(!removal.is_empty());

    let log = std::fs::read_to_string(dir.join("commands.log")).expect("log");
    let sections = parse_log(&log);
    let restart = sections
        .iter()
        .filter(|(n, _)| n.starts_with("daemon-start"))
        .nth(1)
        .map(|(_, e)| e.iter().map(|e| e.argv.clone()).collect::<Vec<_>>())
        .expect("second daemon-start");
    assert!(
        restart
            .windows(removal.len())
            .any(|w| w == removal.as_slice()),
        "{what}: the saved removal is not run as one block at restart"
    );
}
