//! `virtnet sim trace` end to end (assert_cmd): text and JSON output, exit
//! statuses.

use assert_cmd::Command;
use predicates::prelude::*;

fn virtnet() -> Command {
    Command::cargo_bin("virtnet").expect("virtnet binary")
}

const RULES: &str = "table ip t {
	chain fw {
		type filter hook forward priority filter; policy drop;
		iifname \"br0\" accept
		ct state established,related accept
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname \"up0\" masquerade
	}
}
";

/// A host with br0 (10.1.0.1/24) and up0 (10.9.0.2/24, default route),
/// forwarding on, and RULES.
fn host(dir: &std::path::Path) -> String {
    let st = dir.join("host.json").to_str().unwrap().to_string();
    let rules = dir.join("rules.nft");
    std::fs::write(&rules, RULES).unwrap();
    for cmd in [
        "ip link add br0 type bridge",
        "ip addr add 10.1.0.1/24 dev br0",
        "ip link set br0 up",
        "ip link add up0 type bridge",
        "ip addr add 10.9.0.2/24 dev up0",
        "ip link set up0 up",
        "ip route add default via 10.9.0.1 dev up0",
        "sysctl -w net.ipv4.ip_forward=1",
    ] {
        virtnet()
            .args(["sim", "--state", &st, "exec", "--"])
            .args(cmd.split(' '))
            .assert()
            .success();
    }
    virtnet()
        .args(["sim", "--state", &st, "exec", "--stdin"])
        .arg(&rules)
        .args(["--", "nft", "-f", "-"])
        .assert()
        .success();
    st
}

#[test]
fn trace_text() {
    let dir = tempfile::tempdir().unwrap();
    let st = host(dir.path());
    virtnet()
        .args(["sim", "--state", &st, "trace"])
        .args(["from br0 10.1.0.5 to 192.0.2.1 udp sport 5000 dport 53,"])
        .args([
            "from",
            "up0",
            "192.0.2.1",
            "to",
            "10.9.0.2",
            "udp",
            "sport",
            "53",
        ])
        .args(["dport", "5000", "reply"])
        .args(["from up0 192.0.2.1 to 10.1.0.5 tcp dport 22"])
        .assert()
        .success()
        .stdout(
            "trace from br0 10.1.0.5 to 192.0.2.1 udp sport 5000 dport 53
  conntrack new (new connection)
  route 192.0.2.1 via up0: forward
  forward ip t fw rule iifname \"br0\" accept (handle 3) verdict accept
  postrouting ip t post rule oifname \"up0\" masquerade (handle 5) verdict accept
  postrouting nat masquerade 10.1.0.5 → 10.9.0.2 port 5000
  => delivered via up0: 10.9.0.2 port 5000 → 192.0.2.1 port 53
trace from up0 192.0.2.1 to 10.9.0.2 udp sport 53 dport 5000 reply
  conntrack established (reply direction of a tracked connection)
  prerouting nat conntrack: destination 10.9.0.2 port 5000 → 10.1.0.5 port 5000
  route 10.1.0.5 via br0: forward
  forward ip t fw rule ct state established,related accept (handle 4) verdict accept
  => delivered via br0: 192.0.2.1 port 53 → 10.1.0.5 port 5000
trace from up0 192.0.2.1 to 10.1.0.5 tcp dport 22
  conntrack new (new connection)
  route 10.1.0.5 via br0: forward
  forward ip t fw policy drop
  => dropped at forward by ip t fw policy drop
",
        )
        .stderr("");
}

#[test]
fn trace_json() {
    let dir = tempfile::tempdir().unwrap();
    let st = host(dir.path());
    let out = virtnet()
        .args(["sim", "--state", &st, "trace", "--json"])
        .args(["from br0 10.1.0.5 to 10.1.0.1 udp sport 68 dport 67"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "flow": {"iif": "br0", "src": "10.1.0.5", "dst": "10.1.0.1",
                     "proto": "udp", "sport": 68, "dport": 67, "reply": false},
            "steps": [
                {"step": "conntrack", "state": "new", "detail": "new connection"},
                {"step": "route", "decision": "10.1.0.1 is local: input"}
            ],
            "outcome": {"outcome": "local", "iif": "br0", "src": "10.1.0.5",
                        "dst": "10.1.0.1", "dport": 67}
        }])
    );
}

#[test]
fn trace_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let st = host(dir.path());
    virtnet()
        .args(["sim", "--state", &st, "trace"])
        .args(["from br0 10.1.0.5 to 192.0.2.1 udp, from br0 10.1.0.5 to 192.0.2.1 sctp"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            "virtnet sim trace: bad FLOW 2: word 6 'sctp': expected icmp, icmpv6, udp or tcp\n",
        );
    // A reply without an earlier flow.
    virtnet()
        .args(["sim", "--state", &st, "trace"])
        .args(["from up0 192.0.2.1 to 10.9.0.2 icmp reply"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no earlier flow"));
    // A rule the tracer cannot evaluate.
    virtnet()
        .args(["sim", "--state", &st, "exec", "--"])
        .args([
            "nft", "insert", "rule", "ip", "t", "fw", "ct", "mark", "1", "accept",
        ])
        .assert()
        .success();
    virtnet()
        .args(["sim", "--state", &st, "trace"])
        .args(["from br0 10.1.0.5 to 192.0.2.1 icmp"])
        .assert()
        .code(1)
        .stderr("virtnet sim trace: cannot evaluate 'ct mark' in table ip t chain fw (flow: from br0 10.1.0.5 to 192.0.2.1 icmp)\n");
}
