//! The options no libvirt test covers, each checked against streams written
//! by hand from libvirt 11.3.0's rule builders (not from our output), plus
//! the orchestration paths: port default written to the definition, errors,
//! the tc qdisc probe, private-chain callbacks on non-empty listings, saved
//! setup errors, zones, backend `none`, rollback.

use rstest::rstest;
use std::net::{IpAddr, Ipv4Addr};

use virtnet_core::firewall::{
    render_argv, Backend, Layer, Matcher, RecordingRunner, RenderOptions,
};
use virtnet_core::netxml::{self, IpDef, NetworkDef};
use virtnet_core::rules::{self, ChainInitState, RulesError};

fn def(xml: &str) -> NetworkDef {
    netxml::parse(xml).unwrap_or_else(|e| panic!("{e}"))
}

/// Start (chains already set up) and return the executed commands, one line each.
fn start(d: &mut NetworkDef, backend: Backend) -> Result<Vec<String>, (RulesError, Vec<String>)> {
    let runner = RecordingRunner::new();
    let mut chains = ChainInitState::already_done();
    let res = rules::add_network_firewall(d, backend, &runner, &mut chains);
    let lines = runner
        .argvs()
        .iter()
        .map(|a| render_argv(a, RenderOptions::ONE_LINE))
        .collect();
    match res {
        Ok(_) => Ok(lines),
        Err(e) => Err((e, lines)),
    }
}

fn lines_with(lines: &[String], needle: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

const SNAT: &str = "<network><name>s</name><bridge name='vb1'/>\
  <forward mode='nat'><nat><address start='192.0.2.10' end='192.0.2.20'/>\
  <port start='2000' end='3000'/></nat></forward>\
  <ip address='10.1.0.1' prefix='24'/></network>";

#[test]
fn snat_address_range_with_ports_iptables() {
    let mut d = def(SNAT);
    let lines = start(&mut d, Backend::Iptables).expect("start");
    assert_eq!(
        lines_with(&lines, "LIBVIRT_PRT"),
        [
            "iptables -w --table nat --insert LIBVIRT_PRT --source 10.1.0.0/24 '!' --destination 10.1.0.0/24 --jump SNAT --to-source 192.0.2.10-192.0.2.20",
            "iptables -w --table nat --insert LIBVIRT_PRT --source 10.1.0.0/24 -p udp '!' --destination 10.1.0.0/24 --jump SNAT --to-source 192.0.2.10-192.0.2.20:2000-3000",
            "iptables -w --table nat --insert LIBVIRT_PRT --source 10.1.0.0/24 -p tcp '!' --destination 10.1.0.0/24 --jump SNAT --to-source 192.0.2.10-192.0.2.20:2000-3000",
            "iptables -w --table nat --insert LIBVIRT_PRT --source 10.1.0.0/24 --destination 255.255.255.255/32 --jump RETURN",
            "iptables -w --table nat --insert LIBVIRT_PRT --source 10.1.0.0/24 --destination 224.0.0.0/24 --jump RETURN",
        ]
    );
    // No DHCP: no checksum rule.
    assert!(lines_with(&lines, "CHECKSUM").is_empty());
}

#[test]
fn snat_address_range_with_ports_nftables() {
    let mut d = def(SNAT);
    let lines = start(&mut d, Backend::Nftables).expect("start");
    assert_eq!(
        lines_with(&lines, "guest_nat"),
        [
            "nft -ae insert rule ip libvirt_network guest_nat ip saddr 10.1.0.0/24 ip daddr '!=' 10.1.0.0/24 counter snat to 192.0.2.10-192.0.2.20",
            "nft -ae insert rule ip libvirt_network guest_nat meta l4proto udp ip saddr 10.1.0.0/24 ip daddr '!=' 10.1.0.0/24 counter snat to 192.0.2.10-192.0.2.20:2000-3000",
            "nft -ae insert rule ip libvirt_network guest_nat meta l4proto tcp ip saddr 10.1.0.0/24 ip daddr '!=' 10.1.0.0/24 counter snat to 192.0.2.10-192.0.2.20:2000-3000",
            "nft -ae insert rule ip libvirt_network guest_nat ip saddr 10.1.0.0/24 ip daddr 255.255.255.255/32 counter return",
            "nft -ae insert rule ip libvirt_network guest_nat ip saddr 10.1.0.0/24 ip daddr 224.0.0.0/24 counter return",
        ]
    );
    // The tc checksum filter is there even without DHCP.
    assert_eq!(
        lines[..3],
        [
            "tc qdisc show dev vb1 handle 1:",
            "tc qdisc add dev vb1 root handle 1: htb default 2",
            "tc filter add dev vb1 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp",
        ]
    );
}

/// With `<nat ipv6='yes'>` the IPv6 address is masqueraded (never SNATed:
/// the address range is IPv4) with the configured ports, and only the
/// multicast range is exempted.
#[test]
fn nat_ipv6_yes_with_snat_masquerades_ipv6() {
    let xml = "<network><name>s6</name><bridge name='vb2'/>\
      <forward mode='nat' dev='eth9'><nat ipv6='yes'><address start='192.0.2.1' end='192.0.2.1'/>\
      <port start='100' end='200'/></nat></forward>\
      <ip family='ipv6' address='2001:db8:1:2::1' prefix='64'/></network>";
    let mut d = def(xml);
    let ipt = start(&mut d, Backend::Iptables).expect("iptables");
    assert_eq!(
        lines_with(&ipt, "LIBVIRT_PRT"),
        [
            "ip6tables -w --table nat --insert LIBVIRT_PRT --source 2001:db8:1:2::/64 '!' --destination 2001:db8:1:2::/64 --out-interface eth9 --jump MASQUERADE",
            "ip6tables -w --table nat --insert LIBVIRT_PRT --source 2001:db8:1:2::/64 -p udp '!' --destination 2001:db8:1:2::/64 --out-interface eth9 --jump MASQUERADE --to-ports 100-200",
            "ip6tables -w --table nat --insert LIBVIRT_PRT --source 2001:db8:1:2::/64 -p tcp '!' --destination 2001:db8:1:2::/64 --out-interface eth9 --jump MASQUERADE --to-ports 100-200",
            "ip6tables -w --table nat --insert LIBVIRT_PRT --out-interface eth9 --source 2001:db8:1:2::/64 --destination ff02::/16 --jump RETURN",
        ]
    );
    let nft = start(&mut d, Backend::Nftables).expect("nftables");
    assert_eq!(
        lines_with(&nft, "guest_nat"),
        [
            "nft -ae insert rule ip6 libvirt_network guest_nat ip6 saddr 2001:db8:1:2::/64 ip6 daddr '!=' 2001:db8:1:2::/64 oifname eth9 counter masquerade",
            "nft -ae insert rule ip6 libvirt_network guest_nat meta l4proto udp ip6 saddr 2001:db8:1:2::/64 ip6 daddr '!=' 2001:db8:1:2::/64 oifname eth9 counter masquerade to :100-200",
            "nft -ae insert rule ip6 libvirt_network guest_nat meta l4proto tcp ip6 saddr 2001:db8:1:2::/64 ip6 daddr '!=' 2001:db8:1:2::/64 oifname eth9 counter masquerade to :100-200",
            "nft -ae insert rule ip6 libvirt_network guest_nat oifname eth9 ip6 saddr 2001:db8:1:2::/64 ip6 daddr ff02::/16 counter return",
        ]
    );
}

/// `<interface dev>` is the forward device when there is no `dev`
/// attribute; with several (which libvirt's parser rejects for nat and
/// route, so only a programmatic definition has them) the first is used.
#[test]
fn interface_dev_list_uses_the_first() {
    let xml = "<network><name>i</name><bridge name='vb3'/>\
      <forward mode='route'><interface dev='ens1'/></forward>\
      <ip address='10.3.0.1' prefix='24'/></network>";
    let mut d = def(xml);
    if let Some(f) = d.forward.as_mut() {
        let mut second = f.ifs[0].clone();
        second.device = netxml::ForwardDevice::Netdev("ens2".into());
        f.ifs.push(second);
    }
    let ipt = start(&mut d, Backend::Iptables).expect("iptables");
    assert_eq!(
        lines_with(&ipt, "10.3.0.0"),
        [
            "iptables -w --table filter --insert LIBVIRT_FWO --source 10.3.0.0/24 --in-interface vb3 --out-interface ens1 --jump ACCEPT",
            "iptables -w --table filter --insert LIBVIRT_FWI --destination 10.3.0.0/24 --in-interface ens1 --out-interface vb3 --jump ACCEPT",
        ]
    );
    let nft = start(&mut d, Backend::Nftables).expect("nftables");
    assert_eq!(
        lines_with(&nft, "10.3.0.0"),
        [
            "nft -ae insert rule ip libvirt_network guest_output ip saddr 10.3.0.0/24 iif vb3 oifname ens1 counter accept",
            "nft -ae insert rule ip libvirt_network guest_input ip daddr 10.3.0.0/24 iifname ens1 oif vb3 counter accept",
        ]
    );
    assert!(ipt.iter().all(|l| !l.contains("ens2")));
}

#[test]
fn ipv6_yes_without_ipv6_address_gets_only_reject_and_cross() {
    let xml = "<network ipv6='yes'><name>n</name><bridge name='vb4'/>\
      <ip address='10.4.0.1' prefix='24'/></network>";
    let mut d = def(xml);
    let ipt = start(&mut d, Backend::Iptables).expect("iptables");
    assert_eq!(
        lines_with(&ipt, "ip6tables"),
        [
            "ip6tables -w --table filter --insert LIBVIRT_FWO --in-interface vb4 --jump REJECT",
            "ip6tables -w --table filter --insert LIBVIRT_FWI --out-interface vb4 --jump REJECT",
            "ip6tables -w --table filter --insert LIBVIRT_FWX --in-interface vb4 --out-interface vb4 --jump ACCEPT",
        ]
    );
    // Isolated: no per-address rules at all.
    assert!(lines_with(&ipt, "10.4.0.0").is_empty());
    let nft = start(&mut d, Backend::Nftables).expect("nftables");
    assert_eq!(lines_with(&nft, " ip6 ").len(), 3);
}

#[test]
fn tftp_without_dhcp_opens_tftp_but_no_checksum() {
    let xml = "<network><name>t</name><bridge name='vb5'/><forward/>\
      <ip address='10.5.0.1' prefix='24'><tftp root='/srv'/></ip></network>";
    let mut d = def(xml);
    let ipt = start(&mut d, Backend::Iptables).expect("iptables");
    assert_eq!(
        lines_with(&ipt, "--destination-port 69"),
        [
            "iptables -w --table filter --insert LIBVIRT_INP --in-interface vb5 --protocol udp --destination-port 69 --jump ACCEPT",
            "iptables -w --table filter --insert LIBVIRT_OUT --out-interface vb5 --protocol udp --destination-port 69 --jump ACCEPT",
        ]
    );
    assert!(lines_with(&ipt, "CHECKSUM").is_empty());
}

#[test]
fn dhcp_host_only_gets_checksum() {
    let xml = "<network><name>h</name><bridge name='vb6'/>\
      <ip address='10.6.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='10.6.0.5'/></dhcp></ip></network>";
    let mut d = def(xml);
    let ipt = start(&mut d, Backend::Iptables).expect("iptables");
    assert_eq!(
        ipt.last().map(String::as_str),
        Some("iptables -w --table mangle --insert LIBVIRT_PRT --out-interface vb6 --protocol udp --destination-port 68 --jump CHECKSUM --checksum-fill")
    );
}

#[test]
fn default_nat_ports_are_written_into_the_definition() {
    let mut d = def("<network><name>p</name><bridge name='vb7'/><forward/>\
      <ip address='10.7.0.1' prefix='24'/></network>");
    assert_eq!(d.nat().map(|n| (n.port_start, n.port_end)), Some((0, 0)));
    rules::network_rules(&mut d, Backend::Iptables).expect("rules");
    assert_eq!(
        d.nat().map(|n| (n.port_start, n.port_end)),
        Some((1024, 65535))
    );
    // The formatted live definition now carries them, as libvirt's status does.
    let xml = netxml::format(&d, netxml::FormatFlags::default());
    assert!(xml.contains("<port start='1024' end='65535'/>"), "{xml}");

    // Route mode never touches them; nor does the legacy removal.
    let mut r = def(
        "<network><name>r</name><bridge name='vb8'/><forward mode='route'/>\
      <ip address='10.8.0.1' prefix='24'/></network>",
    );
    let before = r.clone();
    rules::network_rules(&mut r, Backend::Nftables).expect("rules");
    assert_eq!(r, before);
    let n = def("<network><name>n</name><bridge name='vb9'/><forward/>\
      <ip address='10.9.0.1' prefix='24'/></network>");
    let before = n.clone();
    rules::legacy_iptables_removal(&n).expect("removal");
    assert_eq!(n, before);
}

fn with_ports(start: u16, end: u16) -> NetworkDef {
    let mut d = def("<network><name>p</name><bridge name='vbp'/><forward/>\
      <ip address='10.10.0.1' prefix='24'/></network>");
    if let Some(f) = d.forward.as_mut() {
        f.nat.port_start = start;
        f.nat.port_end = end;
    }
    d
}

#[rstest]
fn invalid_port_ranges_are_libvirts_error(
    #[values((500, 500), (2000, 1000), (0, 0xffff), (5, 0))] range: (u16, u16),
    #[values(Backend::Iptables, Backend::Nftables)] backend: Backend,
) {
    let (s, e) = range;
    let res = rules::network_rules(&mut with_ports(s, e), backend);
    if s < e {
        assert!(res.is_ok(), "{s}-{e}");
        return;
    }
    let err = res.expect_err("invalid range");
    assert_eq!(err.to_string(), format!("Invalid port range '{s}-{e}'."));
    assert_eq!(
        err,
        RulesError::InvalidPortRange {
            start: s.into(),
            end: e.into()
        }
    );
    // The legacy removal gives up (libvirt then runs nothing).
    assert!(rules::legacy_iptables_removal(&with_ports(s, e)).is_err());
}

/// nftables: the tc qdisc probe runs while the rules are built, so it has
/// already run when a generation error is found; nothing else runs.
#[test]
fn nft_generation_error_after_qdisc_probe() {
    let mut d = with_ports(9, 9);
    let (err, lines) = start(&mut d, Backend::Nftables).expect_err("fails");
    assert!(matches!(err, RulesError::InvalidPortRange { .. }));
    assert_eq!(
        lines,
        [
            "tc qdisc show dev vbp handle 1:",
            "tc qdisc add dev vbp root handle 1: htb default 2"
        ]
    );
    let mut d = with_ports(9, 9);
    let (_, lines) = start(&mut d, Backend::Iptables).expect_err("fails");
    assert!(lines.is_empty());
}

fn with_ip(ip: IpDef) -> NetworkDef {
    let mut d = def("<network><name>x</name><bridge name='vbx'/><forward/>\
      <ip address='10.11.0.1' prefix='24'/></network>");
    d.ips.push(ip);
    d
}

#[test]
fn invalid_prefix_is_an_error_for_add_and_skipped_by_legacy_removal() {
    let mut bad = def("<network><name>y</name><ip address='10.12.0.1' prefix='24'/></network>")
        .ips
        .remove(0);
    bad.explicit_prefix = 0;
    bad.netmask = Some(Ipv4Addr::new(255, 0, 255, 0));
    assert_eq!(bad.prefix(), None);
    for backend in [Backend::Iptables, Backend::Nftables] {
        let err = rules::network_rules(&mut with_ip(bad.clone()), backend).expect_err("bad");
        assert_eq!(err.to_string(), "Invalid prefix or netmask for 'vbx'");
    }
    let plan = rules::legacy_iptables_removal(&with_ip(bad)).expect("removal");
    let cmds: Vec<_> = plan.action_cmds().map(|c| c.args().join(" ")).collect();
    assert!(cmds.iter().any(|c| c.contains("10.11.0.0/24")));
    assert!(!cmds.iter().any(|c| c.contains("10.12")));
    // Class D without prefix is invalid too.
    let mut classd = def("<network><name>z</name><ip address='10.13.0.1' prefix='24'/></network>")
        .ips
        .remove(0);
    classd.address = IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1));
    classd.explicit_prefix = 0;
    assert!(rules::network_rules(&mut with_ip(classd), Backend::Iptables).is_err());
}

#[test]
fn ipv4_compatible_network_is_formatted_like_inet_ntop() {
    assert_eq!(
        rules::format_addr(&"::1.2.3.4".parse().expect("addr")),
        "::1.2.3.4"
    );
    assert_eq!(rules::format_addr(&"::1".parse().expect("addr")), "::1");
    assert_eq!(rules::format_addr(&"::".parse().expect("addr")), "::");
    assert_eq!(
        rules::format_addr(&"::ffff:10.0.0.1".parse().expect("addr")),
        "::ffff:10.0.0.1"
    );
    assert_eq!(
        rules::format_addr(&"2001:db8:0:0:1:0:0:1".parse().expect("addr")),
        "2001:db8::1:0:0:1"
    );
}

#[test]
fn existing_qdisc_is_not_added_again() {
    let mut d = def("<network><name>q</name><bridge name='vbq'/>\
      <ip address='10.14.0.1' prefix='24'/></network>");
    let runner = RecordingRunner::new();
    runner.stdout_when(
        Matcher::contains(["qdisc", "show"]),
        "qdisc htb 1: root refcnt 2 r2q 10 default 0x2 direct_packets_stat 0\n",
    );
    rules::add_network_firewall(
        &mut d,
        Backend::Nftables,
        &runner,
        &mut ChainInitState::already_done(),
    )
    .expect("start");
    let argvs = runner.argvs();
    assert_eq!(argvs[0][..3], ["tc", "qdisc", "show"]);
    assert_eq!(argvs[1][..3], ["tc", "filter", "add"]);
}

#[test]
fn failing_qdisc_probe_is_a_child_process_error() {
    let mut d = def("<network><name>q</name><bridge name='vbq'/>\
      <ip address='10.14.0.1' prefix='24'/></network>");
    let runner = RecordingRunner::new();
    runner.fail_when(
        Matcher::contains(["qdisc", "show"]),
        1,
        "Cannot find device \"vbq\"\n",
    );
    let err = rules::add_network_firewall(
        &mut d,
        Backend::Nftables,
        &runner,
        &mut ChainInitState::already_done(),
    )
    .expect_err("fails");
    assert_eq!(
        err.to_string(),
        "Child process (tc qdisc show dev vbq handle 1:) unexpected exit status 1: Cannot find device \"vbq\"\n"
    );
    assert_eq!(runner.argvs().len(), 1);
}

#[test]
fn zone_without_firewalld_is_an_error() {
    let mut d = def(
        "<network><name>zz</name><bridge name='vbz' zone='trusted'/>\
      <forward mode='open'/><ip address='10.15.0.1' prefix='24'/></network>",
    );
    let runner = RecordingRunner::new();
    let err = rules::add_network_firewall(
        &mut d,
        Backend::Iptables,
        &runner,
        &mut ChainInitState::new(),
    )
    .expect_err("zone");
    assert_eq!(
        err.to_string(),
        "zone trusted requested for network zz but firewalld is not active"
    );
    assert!(runner.argvs().is_empty());
}

#[test]
fn open_and_host_bridge_networks_run_nothing() {
    for xml in [
        "<network><name>o</name><bridge name='vbo'/><forward mode='open'/><ip address='10.16.0.1' prefix='24'/></network>",
        "<network><name>b</name><bridge name='br0'/><forward mode='bridge'/></network>",
    ] {
        let mut d = def(xml);
        let runner = RecordingRunner::new();
        let mut chains = ChainInitState::new();
        let removal =
            rules::add_network_firewall(&mut d, Backend::Nftables, &runner, &mut chains).expect("ok");
        assert!(removal.is_none());
        assert!(runner.argvs().is_empty());
        assert!(!chains.done(), "no private-chain setup for {xml}");
        rules::remove_network_firewall(&d, None, &runner).expect("remove");
        assert!(runner.argvs().is_empty());
    }
}

#[test]
fn backend_none_fails_without_running_anything() {
    let mut d = def("<network><name>n</name><bridge name='vbn'/><ip address='10.17.0.1' prefix='24'/></network>");
    let runner = RecordingRunner::new();
    let mut chains = ChainInitState::new();
    let err =
        rules::add_network_firewall(&mut d, Backend::None, &runner, &mut chains).expect_err("none");
    assert_eq!(err.to_string(), "No firewall backend is available");
    assert!(chains.done());
    assert_eq!(chains.errors().0, Some(&RulesError::NoBackend));
    assert!(runner.argvs().is_empty());
}

/// A failed IPv6 setup is remembered: IPv4-only networks still start,
/// networks using IPv6 fail with that error until a forced setup.
#[test]
fn saved_ipv6_setup_error_fails_only_ipv6_networks() {
    let runner = RecordingRunner::new();
    runner.fail_when(
        Matcher::exact(["ip6tables", "-w", "--table", "filter", "--list-rules"]),
        3,
        "modprobe: FATAL\n",
    );
    let mut chains = ChainInitState::new();
    let mut v4 = def("<network><name>a</name><bridge name='vba'/><ip address='10.18.0.1' prefix='24'/></network>");
    rules::add_network_firewall(&mut v4, Backend::Iptables, &runner, &mut chains).expect("v4 ok");
    assert!(chains.errors().0.is_none());
    let e6 = chains.errors().1.cloned().expect("v6 error saved");
    assert!(
        e6.to_string()
            .contains("ip6tables -w --table filter --list-rules"),
        "{e6}"
    );
    assert!(e6.to_string().contains("modprobe: FATAL"), "{e6}");
    for xml in [
        "<network><name>b</name><bridge name='vbb'/><ip family='ipv6' address='fd00:1::1' prefix='64'/></network>",
        "<network ipv6='yes'><name>c</name><bridge name='vbc'/><ip address='10.19.0.1' prefix='24'/></network>",
    ] {
        runner.clear();
        let mut d = def(xml);
        let err = rules::add_network_firewall(&mut d, Backend::Iptables, &runner, &mut chains)
            .expect_err("v6 fails");
        assert_eq!(err, e6);
        assert!(runner.argvs().is_empty(), "nothing runs for {xml}");
    }
}

#[test]
fn iptables_callbacks_on_existing_chains() {
    let runner = RecordingRunner::new();
    // filter: every chain exists; FWX is jumped to from OUTPUT (wrong
    // parent) and INP's jump is missing.
    runner.stdout_when(
        Matcher::exact(["iptables", "-w", "--table", "filter", "--list-rules"]),
        "-P INPUT ACCEPT\n-N LIBVIRT_FWI\n-N LIBVIRT_FWO\n-N LIBVIRT_FWX\n-N LIBVIRT_INP\n-N LIBVIRT_OUT\n\
         -A OUTPUT -j LIBVIRT_OUT\n-A FORWARD -j LIBVIRT_FWI\n-A FORWARD -j LIBVIRT_FWO\n-A OUTPUT -j LIBVIRT_FWX\n\
         -A LIBVIRT_FWI -o virbr0 -j REJECT --reject-with icmp-port-unreachable\n",
    );
    runner.stdout_when(
        Matcher::exact(["iptables", "-w", "--table", "nat", "--list-rules"]),
        "-N LIBVIRT_PRT\n-A POSTROUTING -j LIBVIRT_PRT\n",
    );
    let mut pc = rules::private_chains(Backend::Iptables, Layer::Ipv4).expect("plan");
    pc.firewall.apply(&runner).expect("apply");
    let lines: Vec<String> = runner
        .argvs()
        .iter()
        .map(|a| render_argv(a, RenderOptions::ONE_LINE))
        .collect();
    assert_eq!(
        lines,
        [
            "iptables -w --table filter --list-rules",
            "iptables -w --table nat --list-rules",
            "iptables -w --table mangle --list-rules",
            "iptables -w --table filter --insert INPUT --jump LIBVIRT_INP",
            "iptables -w --table filter --insert FORWARD --jump LIBVIRT_FWX",
            "iptables -w --table mangle --new-chain LIBVIRT_PRT",
            "iptables -w --table mangle --insert POSTROUTING --jump LIBVIRT_PRT",
        ]
    );
    assert!(pc.changed());
}

#[test]
fn nft_callbacks_on_existing_table() {
    let runner = RecordingRunner::new();
    runner.stdout_when(
        Matcher::exact(["nft", "list", "table", "ip6", "libvirt_network"]),
        "table ip6 libvirt_network {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tcounter packets 0 bytes 0 jump guest_input\n\t\tcounter packets 0 bytes 0 jump guest_output\n\t}\n\n\
         \tchain guest_output {\n\t}\n\n\tchain guest_input {\n\t}\n\n\tchain guest_nat {\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n}\n",
    );
    let mut pc = rules::private_chains(Backend::Nftables, Layer::Ipv6).expect("plan");
    pc.firewall.apply(&runner).expect("apply");
    let lines: Vec<String> = runner
        .argvs()
        .iter()
        .map(|a| render_argv(a, RenderOptions::ONE_LINE))
        .collect();
    assert_eq!(
        lines,
        [
            "nft list table ip6 libvirt_network",
            "nft add chain ip6 libvirt_network guest_cross",
            "nft insert rule ip6 libvirt_network forward counter jump guest_cross",
        ]
    );
    assert!(pc.changed());

    // Everything present: only the listing runs, nothing changed.
    let runner = RecordingRunner::new();
    runner.stdout_when(
        Matcher::exact(["nft", "list", "table", "ip", "libvirt_network"]),
        "table ip libvirt_network {\n\tchain forward {\n\t\tcounter jump guest_cross\n\t\tcounter jump guest_input\n\
         \t\tcounter jump guest_output\n\t}\n\tchain guest_output {\n\t}\n\tchain guest_input {\n\t}\n\
         \tchain guest_cross {\n\t}\n\tchain guest_nat {\n\t}\n}\n",
    );
    let mut pc = rules::private_chains(Backend::Nftables, Layer::Ipv4).expect("plan");
    pc.firewall.apply(&runner).expect("apply");
    assert_eq!(runner.argvs().len(), 1);
    assert!(!pc.changed());
}

/// iptables add failure: the deletes of the rules inserted so far run, in
/// insertion order; the checksum group is never reached.
#[test]
fn iptables_failure_rolls_back_inserted_rules() {
    let mut d = def("<network><name>f</name><bridge name='vbf'/><forward/>\
      <ip address='10.20.0.1' prefix='24'><dhcp><range start='10.20.0.2' end='10.20.0.9'/></dhcp></ip></network>");
    let runner = RecordingRunner::new();
    runner.fail_when(
        Matcher::contains([
            "--insert",
            "LIBVIRT_OUT",
            "--out-interface",
            "vbf",
            "--protocol",
            "tcp",
            "--destination-port",
            "68",
        ]),
        1,
        "iptables: No chain/target/match by that name.\n",
    );
    let err = rules::add_network_firewall(
        &mut d,
        Backend::Iptables,
        &runner,
        &mut ChainInitState::already_done(),
    )
    .expect_err("fails");
    assert!(
        err.to_string().starts_with(
            "Failed to run firewall command iptables -w --table filter --insert LIBVIRT_OUT"
        ),
        "{err}"
    );
    let lines: Vec<String> = runner
        .argvs()
        .iter()
        .map(|a| render_argv(a, RenderOptions::ONE_LINE))
        .collect();
    assert_eq!(
        lines[3..],
        [
            "iptables -w --table filter --delete LIBVIRT_INP --in-interface vbf --protocol tcp --destination-port 67 --jump ACCEPT",
            "iptables -w --table filter --delete LIBVIRT_INP --in-interface vbf --protocol udp --destination-port 67 --jump ACCEPT",
        ]
    );
}

/// libvirt 9.0.0's plan: the rollback section holds the legacy removal.
#[test]
fn libvirt9_plan_has_legacy_rollback() {
    let mut d = def("<network><name>nine</name><bridge name='vb9'/><forward/>\
      <ip address='10.21.0.1' prefix='24'><dhcp><range start='10.21.0.2' end='10.21.0.9'/></dhcp></ip></network>");
    let fw = rules::libvirt9_network_rules(&mut d).expect("plan");
    let legacy = rules::legacy_iptables_removal(&d).expect("legacy");
    assert_eq!(fw.groups().len(), 2);
    assert_eq!(fw.groups()[0].rollbacks(), legacy.groups()[1].actions());
    let checksum: Vec<String> = fw.groups()[1].actions()[0]
        .args()
        .iter()
        .map(|a| {
            if a == "--insert" {
                "--delete".to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    assert_eq!(checksum, legacy.groups()[0].actions()[0].args());
}

#[test]
fn pre_reload_sets_up_only_when_needed() {
    let runner = RecordingRunner::new();
    let mut chains = ChainInitState::new();
    // No active firewalled network: nothing (conntrack stays unloaded).
    rules::pre_reload_private_chains(&mut chains, Backend::Iptables, &runner, false, false)
        .expect("ok");
    assert!(!chains.done());
    assert!(runner.argvs().is_empty());
    // force before any setup behaves like the non-forced path.
    rules::pre_reload_private_chains(&mut chains, Backend::Iptables, &runner, true, true)
        .expect("ok");
    assert_eq!(runner.argvs().len(), 34);
    // Already done: a non-forced reload does nothing, a forced one redoes it.
    runner.clear();
    rules::pre_reload_private_chains(&mut chains, Backend::Nftables, &runner, false, true)
        .expect("ok");
    assert!(runner.argvs().is_empty());
    rules::pre_reload_private_chains(&mut chains, Backend::Nftables, &runner, true, false)
        .expect("ok");
    assert_eq!(runner.argvs().len(), 20);
}

#[test]
fn reload_ignores_add_failure_and_forgets_the_plan() {
    let mut d = with_ports(7, 7);
    let runner = RecordingRunner::new();
    let mut chains = ChainInitState::already_done();
    let removal =
        rules::reload_network_firewall(&mut d, None, Backend::Iptables, &runner, &mut chains)
            .expect("reload");
    assert!(removal.is_none());
    // The legacy regeneration gave up too (invalid ports): nothing ran.
    assert!(runner.argvs().is_empty());
}
