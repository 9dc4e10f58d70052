//! Unit tests of the listing parsers behind the private-chain callbacks;
//! the data-driven golden and capture tests are in `core/tests/rules_*.rs`.

use super::iptables::parse_list_rules;
use super::nftables::parse_list_table;

#[test]
fn list_rules_records_chains_and_last_jump() {
    let (chains, links) = parse_list_rules(&[
        "-P INPUT ACCEPT",
        "-N LIBVIRT_INP",
        "-A INPUT -j LIBVIRT_INP",
        "-A OUTPUT -j LIBVIRT_INP",
        "-A FORWARD -i x -j LIBVIRT_FWO",
        "-A LIBVIRT_FWO",
        "",
    ]);
    assert_eq!(chains, ["LIBVIRT_INP"]);
    // The later jump wins; a jump after other matches is not a jump here.
    assert_eq!(links.get("LIBVIRT_INP").map(String::as_str), Some("OUTPUT"));
    assert!(!links.contains_key("LIBVIRT_FWO"));
    // Trailing text after the target makes it a different target.
    let (_, links) = parse_list_rules(&["-A INPUT -j LIBVIRT_INP -m comment"]);
    assert!(!links.contains_key("LIBVIRT_INP"));
}

#[test]
fn list_table_tracks_current_chain() {
    let t = "table ip libvirt_network {";
    let (table, chains, links) = parse_list_table(
        &[
            "\x0b table ip libvirt_network {",
            "\tchain forward {",
            "\t\tcounter jump guest_output",
            "\tchain odd",
            "\t\tjump guest_input",
            "table ip libvirt_network { ",
        ],
        t,
    );
    assert!(table);
    // "chain odd" has no space after the name: current chain, not recorded.
    assert_eq!(chains, ["forward"]);
    assert_eq!(
        links.get("guest_output").map(String::as_str),
        Some("forward")
    );
    assert_eq!(links.get("guest_input").map(String::as_str), Some("odd"));
    // A jump before any chain is ignored; other families' tables don't match.
    let (table, _, links) =
        parse_list_table(&["table ip6 libvirt_network {", "jump guest_cross"], t);
    assert!(!table);
    assert!(links.is_empty());
}

#[test]
fn address_writers_match_display() {
    use super::{format_addr, push_ipv4};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let v4 = [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(192, 168, 122, 1),
        Ipv4Addr::new(10, 0, 9, 100),
        Ipv4Addr::new(1, 20, 255, 0),
    ];
    for a in v4 {
        let mut s = String::from("x");
        push_ipv4(&mut s, &a);
        assert_eq!(s, format!("x{a}"));
        assert_eq!(format_addr(&IpAddr::V4(a)), a.to_string());
    }
    // glibc's dotted tail for ::a.b.c.d, Display otherwise.
    let v6 = [
        ("::1.2.3.4", "::1.2.3.4"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("::1", "::1"),
        ("::", "::"),
        ("2001:db8::1", "2001:db8::1"),
        ("::a00:1", "::10.0.0.1"),
    ];
    for (input, want) in v6 {
        let a: Ipv6Addr = input.parse().unwrap();
        assert_eq!(format_addr(&IpAddr::V6(a)), want, "{input}");
    }
}
