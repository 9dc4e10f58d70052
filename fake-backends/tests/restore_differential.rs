//! Differential test of the simulated `iptables-restore --noflush` /
//! `ip6tables-restore --noflush` (what the batched firewall layout sends)
//! against the real iptables-nft 1.8.9 in a fresh network namespace: every
//! exit status, stdout and stderr, and the final `iptables-save` /
//! `ip6tables-save`. Covers a successful restore, a failure in a later
//! table section (earlier sections stay committed), a section without
//! `COMMIT`, a redeclared chain (flushed) and deletions; and how a SNAT
//! range of one address / one port is listed.
//!
//! Needs root and the real tools; otherwise prints "skipped: <why>".

mod common;

use common::{strip_comments, words, Netns};
use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Runner};

/// (command line, stdin)
type Step = (&'static str, Option<&'static str>);

fn differential(name: &str, script: &[Step]) -> Vec<String> {
    let ns = match Netns::new() {
        Ok(n) => n,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let fake = FakeHost::new();
    let mut bad = Vec::new();
    for (line, stdin) in script {
        let argv = words(line);
        let real = ns.run_with_stdin(&argv, *stdin);
        let mut cmd = Cmd::new(argv.clone());
        if let Some(s) = stdin {
            cmd = cmd.with_stdin(*s);
        }
        let sim = fake.run(&cmd).unwrap();
        if real != sim {
            bad.push(format!(
                "{name}: `{line}`\n   real: {real:?}\n   fake: {sim:?}"
            ));
        }
    }
    for save in ["iptables-save", "ip6tables-save"] {
        let real = strip_comments(&ns.run(&[save.to_string()]).stdout);
        let sim = strip_comments(&fake.run(&Cmd::new([save])).unwrap().stdout);
        if real != sim {
            bad.push(format!(
                "{name}: final {save} differs:\n{}",
                virtnet_fake::diff_text(&real, &sim, "real", "fake")
            ));
        }
    }
    bad
}

const SETUP: &[Step] = &[
    ("iptables -w --table filter --new-chain LIBVIRT_FWI", None),
    (
        "iptables -w --table filter --insert FORWARD --jump LIBVIRT_FWI",
        None,
    ),
    ("iptables -w --table nat --new-chain LIBVIRT_PRT", None),
    (
        "iptables -w --table nat --insert POSTROUTING --jump LIBVIRT_PRT",
        None,
    ),
    ("ip6tables -w --table filter --new-chain LIBVIRT_FWI", None),
];

const GOOD: &str = "*filter\n:VIRTNET_br0_FWI - [0:0]\n--append VIRTNET_br0_FWI --destination 10.1.0.0/24 --out-interface br0 --match conntrack --ctstate ESTABLISHED,RELATED --jump ACCEPT\n--append VIRTNET_br0_FWI --out-interface br0 --jump REJECT\n--insert LIBVIRT_FWI --out-interface br0 --jump VIRTNET_br0_FWI\nCOMMIT\n*nat\n:VIRTNET_br0_PRT - [0:0]\n--append VIRTNET_br0_PRT --source 10.1.0.0/24 --destination 224.0.0.0/24 --jump RETURN\n--append VIRTNET_br0_PRT --source 10.1.0.0/24 -p tcp ! --destination 10.1.0.0/24 --jump MASQUERADE --to-ports 1024-65535\n--insert LIBVIRT_PRT --source 10.1.0.0/24 --jump VIRTNET_br0_PRT\nCOMMIT\n";

/// The nat section jumps to a chain that does not exist: line 9 fails,
/// the filter section stays.
const LATE_FAILURE: &str = "*filter\n:VIRTNET_br1_FWI - [0:0]\n--append VIRTNET_br1_FWI --out-interface br1 --jump REJECT\n--insert LIBVIRT_FWI --out-interface br1 --jump VIRTNET_br1_FWI\nCOMMIT\n*nat\n:VIRTNET_br1_PRT - [0:0]\n--append VIRTNET_br1_PRT --source 10.2.0.0/24 --jump MASQUERADE\n--insert LIBVIRT_NOPE --source 10.2.0.0/24 --jump VIRTNET_br1_PRT\nCOMMIT\n";

const NO_COMMIT: &str =
    "*filter\n:VIRTNET_br2_FWI - [0:0]\n--append VIRTNET_br2_FWI --jump ACCEPT\n";

/// Declaring an existing chain again flushes it.
const REDECLARE: &str = "*filter\n:VIRTNET_br0_FWI - [0:0]\n--append VIRTNET_br0_FWI --out-interface br0 --jump DROP\nCOMMIT\n";

const REMOVE: &str = "*filter\n--delete LIBVIRT_FWI --out-interface br0 --jump VIRTNET_br0_FWI\n--flush VIRTNET_br0_FWI\n--delete-chain VIRTNET_br0_FWI\nCOMMIT\n*nat\n--delete LIBVIRT_PRT --source 10.1.0.0/24 --jump VIRTNET_br0_PRT\n--flush VIRTNET_br0_PRT\n--delete-chain VIRTNET_br0_PRT\nCOMMIT\n";

const V6: &str = "*filter\n:VIRTNET_br0_FWI - [0:0]\n--append VIRTNET_br0_FWI --out-interface br0 --jump REJECT\n--insert LIBVIRT_FWI --out-interface br0 --jump VIRTNET_br0_FWI\nCOMMIT\n";

#[test]
fn restore_noflush_matches_the_real_tool() {
    if let Some(why) = common::cannot_run(&[
        "unshare",
        "nsenter",
        "iptables",
        "iptables-restore",
        "ip6tables-restore",
        "iptables-save",
        "ip6tables-save",
    ])
    .or_else(|| common::other_version("iptables", "-V", "v1.8.9 (nf_tables)"))
    {
        virtnet_testkit::skip(&why);
        return;
    }
    let mut script: Vec<Step> = SETUP.to_vec();
    script.extend([
        ("iptables-restore --noflush", Some(GOOD)),
        ("iptables-restore --noflush", Some(LATE_FAILURE)),
        ("iptables-restore --noflush", Some(NO_COMMIT)),
        ("iptables-restore --noflush", Some(REDECLARE)),
        ("ip6tables-restore --noflush", Some(V6)),
        // A NAT range of one address / one port is listed as that one.
        (
            "iptables -w -t nat -A LIBVIRT_PRT -s 10.0.0.0/24 -p tcp -j SNAT --to-source 1.2.3.4-1.2.3.4:100-100",
            None,
        ),
        (
            "iptables -w -t nat -A LIBVIRT_PRT -s 10.0.0.0/24 -j SNAT --to-source 1.2.3.4-1.2.3.4",
            None,
        ),
        (
            "ip6tables -w -t nat -A POSTROUTING -p udp -j SNAT --to-source [2001:db8::1-2001:db8::1]:7-9",
            None,
        ),
        (
            "ip6tables -w -t nat -A POSTROUTING -j SNAT --to-source 2001:db8::1-2001:db8::2",
            None,
        ),
    ]);
    let bad = differential("restore", &script);
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let mut removal: Vec<Step> = SETUP.to_vec();
    removal.extend([
        ("iptables-restore --noflush", Some(GOOD)),
        ("iptables-restore --noflush", Some(REMOVE)),
        // Everything is gone already: the deletions fail.
        ("iptables-restore --noflush", Some(REMOVE)),
    ]);
    let bad = differential("removal", &removal);
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
