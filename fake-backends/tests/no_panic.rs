//! Any argv, however malformed, gets an Output (or a RunError), never a
//! panic: the simulator runs user-controlled input (`virtnet sim exec`).

use proptest::prelude::*;
use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Runner};

const WORDS: &[&str] = &[
    "-w",
    "-t",
    "--table",
    "filter",
    "nat",
    "mangle",
    "raw",
    "bogus",
    "-N",
    "-X",
    "-F",
    "-I",
    "-A",
    "-D",
    "-C",
    "-R",
    "-S",
    "-L",
    "-P",
    "-E",
    "-Z",
    "-n",
    "-v",
    "--line-numbers",
    "FOO",
    "INPUT",
    "POSTROUTING",
    "1",
    "0",
    "99",
    "-1",
    "x",
    "!",
    "-s",
    "-d",
    "-i",
    "-o",
    "-p",
    "tcp",
    "udp",
    "all",
    "--dport",
    "--sport",
    "53",
    "1:2",
    "-m",
    "conntrack",
    "--ctstate",
    "NEW",
    "comment",
    "--comment",
    "",
    "-j",
    "-g",
    "ACCEPT",
    "REJECT",
    "MASQUERADE",
    "--to-ports",
    "1024-65535",
    "SNAT",
    "--to-source",
    "10.0.0.1",
    "1.2.3.4/33",
    "::1/200",
    "2001:db8::/64",
    "link",
    "addr",
    "route",
    "add",
    "del",
    "set",
    "show",
    "dev",
    "virbr0",
    "type",
    "bridge",
    "dummy",
    "up",
    "down",
    "mtu",
    "address",
    "52:54:00:00:00:01",
    "zz:zz",
    "master",
    "nomaster",
    "via",
    "192.168.122.0/24",
    "qdisc",
    "root",
    "handle",
    "1:",
    "htb",
    "default",
    "2",
    "parent",
    "prio",
    "protocol",
    "ip",
    "u32",
    "action",
    "csum",
    "-j",
    "-br",
    "-6",
    "-4",
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.virbr0.accept_ra",
    "-q",
    "=",
    "--version",
    "--conf-file=/nonexistent",
    "-HUP",
    "-TERM",
    "1000",
];

fn argv() -> impl Strategy<Value = Vec<String>> {
    let prog = prop::sample::select(vec![
        "iptables",
        "ip6tables",
        "iptables-save",
        "ip",
        "tc",
        "sysctl",
        "dnsmasq",
        "kill",
        "nft",
        "ebtables",
    ]);
    let word = prop_oneof![
        prop::sample::select(WORDS.to_vec()).prop_map(String::from),
        "[ -~]{0,12}",
    ];
    (prog, prop::collection::vec(word, 0..12)).prop_map(|(p, mut rest)| {
        rest.insert(0, p.to_string());
        rest
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn malformed_commands_never_panic(cmds in prop::collection::vec(argv(), 1..6)) {
        let h = FakeHost::new();
        for argv in cmds {
            let _ = h.run(&Cmd { argv: argv.into(), stdin: None, env: Vec::new() });
        }
        // The state stays serialisable and dumpable.
        let st = h.state();
        let _ = st.dump();
        let json = serde_json::to_string(&st).unwrap();
        let back: virtnet_fake::HostState = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, st);
    }
}
