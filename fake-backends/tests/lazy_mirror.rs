//! Property: the lazy iptables→nft mirror of `FakeHost` (an iptables write
//! only marks its table; the mirror is redone when something can see it)
//! gives the same outputs and the same final state as mirroring after every
//! command (the public `simulate`), over random command sequences mixing
//! iptables writes with nft commands that read or change the shared ruleset.

use proptest::prelude::*;
use virtnet_fake::{simulate, FakeHost, HostState};
use virtnet_runner::{Cmd, Runner};

const COMMANDS: &[&str] = &[
    "iptables -N LIBVIRT_INP",
    "iptables -N LIBVIRT_OUT",
    "iptables -A INPUT -j LIBVIRT_INP",
    "iptables -I LIBVIRT_INP -i virbr0 -p udp --dport 53 -j ACCEPT",
    "iptables -A LIBVIRT_INP -i virbr0 -p tcp -m tcp --dport 67 -j ACCEPT",
    "iptables -D LIBVIRT_INP -i virbr0 -p udp --dport 53 -j ACCEPT",
    "iptables -F LIBVIRT_INP",
    "iptables -X LIBVIRT_OUT",
    "iptables -E LIBVIRT_OUT LIBVIRT_OUX",
    "iptables -P FORWARD DROP",
    "iptables -t nat -N LIBVIRT_PRT",
    "iptables -t nat -A POSTROUTING -j LIBVIRT_PRT",
    "iptables -t nat -A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE",
    "ip6tables -A INPUT -i virbr0 -p udp --dport 547 -j ACCEPT",
    "iptables -S",
    "iptables-save",
    "nft list ruleset",
    "nft -a list table ip filter",
    "nft add table ip filter",
    "nft add chain ip filter LIBVIRT_INP",
    "nft add rule ip filter INPUT counter accept",
    "nft flush table ip filter",
    "nft delete table ip filter",
    "nft add table inet own",
];

fn run_both(lines: &[&str]) -> Result<(), TestCaseError> {
    let lazy = FakeHost::with_state(HostState::new());
    let mut eager = HostState::new();
    for line in lines {
        let cmd = Cmd::new(line.split_whitespace());
        let a = lazy
            .run(&cmd)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = simulate(&mut eager, &cmd);
        prop_assert_eq!(a, b, "{}", line);
    }
    prop_assert_eq!(lazy.state(), eager);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn lazy_mirror_equals_eager_mirror(seq in prop::collection::vec(prop::sample::select(COMMANDS), 1..24)) {
        run_both(&seq)?;
    }
}

/// A fixed sequence that exercises every kind of command above in order.
#[test]
fn lazy_mirror_equals_eager_mirror_in_order() {
    run_both(COMMANDS).unwrap();
}
