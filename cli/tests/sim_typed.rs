//! Typed sequences (fake-backends/tests/typed_sequences.txt) through the
//! file-backed path: each command is a separate `virtnet sim --state FILE
//! exec` process, and its output must equal the in-memory FakeHost's, so the
//! state file keeps everything the simulator needs between commands
//! (carrier, link-local addresses, qdiscs, veth peers).

use assert_cmd::Command;
use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Runner};

const SEQUENCES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fake-backends/tests/typed_sequences.txt"
));

fn sequence(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut on = false;
    for line in SEQUENCES.lines() {
        if let Some(n) = line.strip_prefix("== ") {
            on = n.trim() == name;
        } else if on && !line.trim().is_empty() && !line.starts_with('#') {
            out.push(line.trim().to_string());
        }
    }
    assert!(!out.is_empty(), "no sequence {name}");
    out
}

fn check(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("host.json");
    let fake = FakeHost::new();
    let mut lines = sequence(name);
    lines.extend(
        [
            "ip -br link",
            "ip -br addr",
            "ip route",
            "ip -6 route",
            "tc qdisc show",
        ]
        .map(String::from),
    );
    for line in lines {
        let argv = virtnet_fake::record::shell_words(&line).unwrap();
        let want = fake.run(&Cmd::new(argv.clone())).unwrap();
        let got = Command::cargo_bin("virtnet")
            .unwrap()
            .args(["sim", "--state", state.to_str().unwrap(), "exec", "--"])
            .args(&argv)
            .output()
            .unwrap();
        assert_eq!(
            (
                got.status.code(),
                String::from_utf8_lossy(&got.stdout).into_owned(),
                String::from_utf8_lossy(&got.stderr).into_owned()
            ),
            (Some(want.status), want.stdout, want.stderr),
            "{name}: `{line}`"
        );
    }
}

#[test]
fn bridge_with_veth_port_through_the_state_file() {
    check("bridge-with-veth-port");
}

#[test]
fn addressed_bridge_gaining_carrier_through_the_state_file() {
    check("veth-in-bridge-addressed");
}

#[test]
fn tc_and_link_down_through_the_state_file() {
    check("link-down-keeps-v4-drops-v6");
    check("tc-ingress-and-sfq");
}
