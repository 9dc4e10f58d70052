//! Property: rules inserted in libvirt's long-option form can be deleted in
//! the short canonical form `iptables -S` prints (and vice versa), and
//! deleting everything that was inserted restores the state exactly.

use proptest::prelude::*;
use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Runner};

#[derive(Debug, Clone)]
struct R {
    chain: &'static str,
    long: Vec<String>,
}

fn rule() -> impl Strategy<Value = R> {
    let iface = prop::sample::select(vec!["virbr0", "virbr1", "br-x"]);
    let net = prop::sample::select(vec!["192.168.122.0/24", "10.1.2.3/16", "172.16.5.4"]);
    let proto = prop::sample::select(vec!["tcp", "udp"]);
    let port = 1u16..1024;
    (0usize..4, iface, net, proto, port).prop_map(|(kind, ifc, net, proto, port)| {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match kind {
            0 => R {
                chain: "LIBVIRT_INP",
                long: s(&[
                    "--in-interface",
                    ifc,
                    "--protocol",
                    proto,
                    "--destination-port",
                    &port.to_string(),
                    "--jump",
                    "ACCEPT",
                ]),
            },
            1 => R {
                chain: "LIBVIRT_FWI",
                long: s(&[
                    "--destination",
                    net,
                    "--out-interface",
                    ifc,
                    "--match",
                    "conntrack",
                    "--ctstate",
                    "ESTABLISHED,RELATED",
                    "--jump",
                    "ACCEPT",
                ]),
            },
            2 => R {
                chain: "LIBVIRT_FWO",
                long: s(&["--source", net, "--in-interface", ifc, "--jump", "REJECT"]),
            },
            _ => R {
                chain: "LIBVIRT_FWX",
                long: s(&[
                    "--in-interface",
                    ifc,
                    "--out-interface",
                    ifc,
                    "--jump",
                    "ACCEPT",
                ]),
            },
        }
    })
}

fn run(h: &FakeHost, argv: Vec<String>) -> virtnet_runner::Output {
    h.run(&Cmd {
        argv: argv.into(),
        stdin: None,
        env: Vec::new(),
    })
    .unwrap()
}

proptest! {
    #[test]
    fn insert_then_delete_by_listed_form_restores_state(rules in prop::collection::vec(rule(), 1..12), by_listing in any::<bool>()) {
        let h = FakeHost::new();
        for c in ["LIBVIRT_INP", "LIBVIRT_FWI", "LIBVIRT_FWO", "LIBVIRT_FWX"] {
            prop_assert!(run(&h, vec!["iptables".into(), "-w".into(), "-N".into(), c.into()]).success());
        }
        let start = h.state();
        for r in &rules {
            let mut argv = vec!["iptables".to_string(), "-w".into(), "--table".into(), "filter".into(), "--insert".into(), r.chain.into()];
            argv.extend(r.long.clone());
            prop_assert!(run(&h, argv).success());
        }
        // Delete in reverse insertion order, either by the long form or by
        // the form `-S` prints for the rule now at the top of its chain.
        for r in rules.iter().rev() {
            let argv = if by_listing {
                let out = run(&h, vec!["iptables".into(), "-w".into(), "-S".into(), r.chain.into(), "1".into()]);
                let line = out.stdout.trim_end().to_string();
                let words = virtnet_fake::record::shell_words(&line).unwrap();
                prop_assert_eq!(&words[0], "-A");
                let mut a = vec!["iptables".to_string(), "-w".into(), "-D".into()];
                a.extend(words[1..].iter().cloned());
                a
            } else {
                let mut a = vec!["iptables".to_string(), "-w".into(), "--delete".into(), r.chain.into()];
                a.extend(r.long.clone());
                a
            };
            let out = run(&h, argv.clone());
            prop_assert!(out.success(), "{:?}: {:?}", argv, out);
        }
        // Handle counters never go back (as in the kernel), so the states
        // are compared as the tools print them, without handles.
        let (a, b) = (start.dump(), h.state().dump());
        prop_assert!(a == b, "{}", virtnet_fake::diff_text(&a, &b, "start", "end"));
    }
}
