//! Properties of the nft simulator: it never panics on arbitrary argv, a
//! failing command changes nothing visible (atomic batches), and deleting
//! what `-ae` echoed restores the previous ruleset (what libvirt's removal
//! plans rely on).

use proptest::prelude::*;
use virtnet_fake::nft::NftState;

const WORDS: &[&str] = &[
    "add",
    "insert",
    "delete",
    "create",
    "flush",
    "list",
    "table",
    "chain",
    "rule",
    "set",
    "map",
    "element",
    "ruleset",
    "tables",
    "ip",
    "ip6",
    "inet",
    "t",
    "t2",
    "c",
    "d",
    "forward",
    "handle",
    "1",
    "2",
    "3",
    "position",
    "index",
    "0",
    "counter",
    "accept",
    "drop",
    "jump",
    "goto",
    "{",
    "}",
    ";",
    "type",
    "filter",
    "nat",
    "hook",
    "postrouting",
    "priority",
    "100",
    "policy",
    "iif",
    "lo",
    "ip",
    "saddr",
    "10.0.0.0/8",
    "!=",
    "ct",
    "state",
    "established,related",
    "masquerade",
    "to",
    ":1024-65535",
    "meta",
    "l4proto",
    "udp",
    "dport",
    "53",
    "@s",
    "comment",
    "\"x\"",
    "-a",
    "-e",
    "-ae",
    "-f",
    "-",
    "ipv4_addr",
    "10.0.0.1",
    ":",
    "snat",
    "reject",
    "with",
    "icmp",
    "tcp",
    "reset",
];

fn argv() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(WORDS), 0..12)
        .prop_map(|v| v.into_iter().map(str::to_string).collect())
}

fn base() -> NftState {
    let mut st = NftState::new();
    for cmd in [
        "add table ip t",
        "add chain ip t c",
        "add chain ip t forward { type filter hook forward priority 0; }",
        "add set ip t s { type ipv4_addr; }",
        "add rule ip t c counter accept",
    ] {
        let args: Vec<String> = vec![cmd.to_string()];
        let out = st.exec(&args, None);
        assert_eq!(out.status, 0, "{cmd}: {out:?}");
    }
    st
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_argv_never_panics_and_failures_change_nothing(
        cmds in prop::collection::vec((argv(), prop::option::of(argv())), 1..6)
    ) {
        let mut st = base();
        for (args, stdin) in cmds {
            let before_list = st.list_ruleset_with_handles();
            let before_gen = st.generation();
            let stdin_text = stdin.map(|w| w.join(" "));
            let out = st.exec(&args, stdin_text.as_deref());
            if out.status != 0 {
                prop_assert!(!out.stderr.is_empty(), "failure without message: {:?}", args);
                prop_assert_eq!(&st.list_ruleset_with_handles(), &before_list);
                prop_assert_eq!(st.generation(), before_gen);
            } else {
                prop_assert!(out.stderr.is_empty());
            }
        }
    }

    #[test]
    fn deleting_echoed_handles_restores_the_ruleset(
        rules in prop::collection::vec(
            prop::sample::select(&[
                "counter accept",
                "iif lo counter reject",
                "ip saddr 10.0.0.0/8 ip daddr != 10.0.0.0/8 counter accept",
                "ct state related,established counter accept",
                "meta l4proto udp udp dport 53 accept",
                "udp dport { 53, 67 } accept",
                "jump c",
            ][..]),
            1..8,
        ),
        inserts in prop::collection::vec(any::<bool>(), 8),
    ) {
        let mut st = base();
        let before = st.list_ruleset_with_handles();
        let mut undo = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let verb = if inserts[i] { "insert" } else { "add" };
            let args: Vec<String> = ["-ae", verb, "rule", "ip", "t", "forward"]
                .iter()
                .map(|s| s.to_string())
                .chain(r.split(' ').map(str::to_string))
                .collect();
            let out = st.exec(&args, None);
            prop_assert_eq!(out.status, 0, "{:?}: {:?}", args, out);
            let handle: String = out
                .stdout
                .split("# handle ")
                .nth(1)
                .map(|s| s.chars().take_while(char::is_ascii_digit).collect())
                .unwrap_or_default();
            prop_assert!(!handle.is_empty());
            undo.push(handle);
        }
        for h in undo.iter().rev() {
            let args: Vec<String> = ["delete", "rule", "ip", "t", "forward", "handle", h]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let out = st.exec(&args, None);
            prop_assert_eq!(out.status, 0, "{:?}", out);
        }
        prop_assert_eq!(st.list_ruleset_with_handles(), before);
    }
}

#[test]
fn unsupported_things_fail_clearly() {
    let mut st = base();
    for cmd in [
        "add rule ip t c quota 10 mbytes drop",
        "add flowtable ip t f { hook ingress priority 0; devices = { lo }; }",
        "reset counters",
        "add set ip t s9 { type ipv4_addr; flags timeout; }",
        "add counter ip t cnt",
        "describe tcp dport",
        "monitor",
        "add rule ip t c meta skuid 0 accept",
    ] {
        let out = st.exec(&[cmd.to_string()], None);
        assert_eq!(out.status, 1, "{cmd} should fail: {out:?}");
        assert!(
            out.stderr.contains("command not simulated"),
            "{cmd}: {}",
            out.stderr
        );
    }
    // JSON echo (-j -e) is not simulated.
    let out = st.exec(
        &["-j", "-e", "add", "table", "ip", "x"].map(String::from),
        None,
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("not simulated"), "{}", out.stderr);
    // Script files are read from the real file system.
    let missing = "/nonexistent/virtnet-nft-test.nft";
    let out = st.exec(&["-f".into(), missing.into()], None);
    assert_eq!(out.status, 1);
    assert_eq!(
        out.stderr,
        format!("internal:0:0-0: Error: Could not open file \"{missing}\": No such file or directory\n\n\n")
    );
    let path = std::env::temp_dir().join(format!("virtnet-nft-{}.nft", std::process::id()));
    std::fs::write(&path, "add table ip fromfile\n").unwrap();
    let out = st.exec(&["-f".into(), path.display().to_string()], None);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status, 0, "{out:?}");
    assert!(st.list_ruleset().contains("table ip fromfile"));
}

#[test]
fn generation_line_uses_the_fake_pid() {
    let mut st = NftState::new();
    let out = st.exec(&["-ae", "add", "table", "ip", "x"].map(String::from), None);
    assert_eq!(
        out.stdout,
        format!(
            "add table ip x # handle 1\n# new generation 2 by process {} (nft)\n",
            virtnet_fake::nft::FAKE_PID
        )
    );
    let json = serde_json::to_string(&st).unwrap();
    let back: NftState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, st);
}
