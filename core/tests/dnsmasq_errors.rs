//! Definitions no dnsmasq configuration can be made for, and the other
//! entry points of the dnsmasq module (start condition, command line,
//! refresh, version probe, real dnsmasq syntax check).

use std::net::IpAddr;

use virtnet_core::dnsmasq::{
    self, ConfHeader, DnsmasqCaps, DnsmasqError, DnsmasqOptions, RangeProblem,
};
use virtnet_core::netxml::{self, Family, NetworkDef};
use virtnet_runner::{Cmd, Output, RunError, Runner};

fn def(body: &str) -> NetworkDef {
    let xml = format!("<network>\n  <name>t</name>\n  <bridge name='virbr9'/>\n{body}</network>\n");
    netxml::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"))
}

fn conf(d: &NetworkDef) -> Result<dnsmasq::DnsmasqFiles, DnsmasqError> {
    dnsmasq::conf_contents(d, &DnsmasqOptions::libvirt_test())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn ptr_domain_needs_octet_or_nibble_prefix() {
    let d = def("  <forward/>\n  <ip address='10.1.0.1' prefix='20' localPtr='yes'/>\n");
    let e = conf(&d).unwrap_err();
    assert_eq!(
        e,
        DnsmasqError::PtrDomain {
            ip_index: 0,
            family: Family::Ipv4,
            prefix: Some(20)
        }
    );
    assert_eq!(
        e.to_string(),
        "PTR domain for IPv4 network with prefix 20 cannot be automatically created"
    );
    assert_eq!(e.element_path().as_deref(), Some("/network/ip[1]"));

    let d = def(concat!(
        "  <ip address='192.168.1.1' prefix='24' localPtr='yes'/>\n",
        "  <ip family='ipv6' address='2001:db8::1' prefix='62' localPtr='yes'/>\n"
    ));
    let e = conf(&d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PTR domain for IPv6 network with prefix 62 cannot be automatically created"
    );
    assert_eq!(e.element_path().as_deref(), Some("/network/ip[2]"));

    // With DNS disabled no PTR zone is written, so nothing fails.
    let d = def("  <dns enable='no'/>\n  <ip address='10.1.0.1' prefix='20' localPtr='yes'/>\n");
    assert!(conf(&d).is_ok());

    // Zones that can be made.
    let d = def(concat!(
        "  <ip address='10.1.2.3' prefix='16' localPtr='yes'/>\n",
        "  <ip family='ipv6' address='2001:db8:1:2::1' prefix='52' localPtr='yes'/>\n"
    ));
    let c = conf(&d).unwrap().conf;
    assert!(
        c.contains("\nlocal=/1.10.in-addr.arpa/\nlocal=/0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa/\n"),
        "{c}"
    );
}

#[test]
fn only_one_dhcp_ip_per_family() {
    let d = def(concat!(
        "  <ip address='192.168.1.1' prefix='24'><dhcp><range start='192.168.1.2' end='192.168.1.9'/></dhcp></ip>\n",
        "  <ip address='192.168.2.1' prefix='24'/>\n",
        "  <ip address='192.168.3.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='192.168.3.5'/></dhcp></ip>\n",
    ));
    let e = conf(&d).unwrap_err();
    assert_eq!(
        e,
        DnsmasqError::MultipleDhcp {
            family: Family::Ipv4,
            ip_index: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "For IPv4, multiple DHCP definitions cannot be specified."
    );
    assert_eq!(e.element_path().as_deref(), Some("/network/ip[3]"));

    let d = def(concat!(
        "  <ip family='ipv6' address='2001:db8::1' prefix='64'><dhcp><range start='2001:db8::10' end='2001:db8::20'/></dhcp></ip>\n",
        "  <ip family='ipv6' address='2001:db9::1' prefix='64'><dhcp><range start='2001:db9::10' end='2001:db9::20'/></dhcp></ip>\n",
    ));
    assert_eq!(
        conf(&d).unwrap_err().to_string(),
        "For IPv6, multiple DHCP definitions cannot be specified."
    );

    // A refresh takes the first of each family and does not complain.
    let r = dnsmasq::refresh_contents(&def(concat!(
        "  <ip address='192.168.1.1' prefix='24'><dhcp><host mac='52:54:00:00:00:09' name='x' ip='192.168.1.9'/></dhcp></ip>\n",
        "  <ip address='192.168.3.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='192.168.3.5'/></dhcp></ip>\n",
        "  <ip family='ipv6' address='2001:db8::1' prefix='64'><dhcp><host name='six' ip='2001:db8::7'><lease expiry='0'/></host></dhcp></ip>\n",
        "  <dns><host ip='192.168.1.9'><hostname>x</hostname></host></dns>\n",
    )))
    .unwrap();
    assert_eq!(
        r.hostsfile,
        "52:54:00:00:00:09,192.168.1.9,x\nsix,[2001:db8::7],infinite\n"
    );
    assert_eq!(r.addnhosts, "192.168.1.9\tx\t\n");
}

#[test]
fn bad_ranges_are_rejected_with_libvirt_messages() {
    let base = def(
        "  <ip address='192.168.1.1' prefix='24'><dhcp><range start='192.168.1.2' end='192.168.1.9'/></dhcp></ip>\n",
    );
    let with_range = |s: &str, e: &str| {
        let mut d = base.clone();
        d.ips[0].ranges[0].start = ip(s);
        d.ips[0].ranges[0].end = ip(e);
        conf(&d).unwrap_err()
    };
    let e = with_range("192.168.1.9", "192.168.1.2");
    assert!(matches!(
        &e,
        DnsmasqError::BadRange {
            problem: RangeProblem::Reversed,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "range 192.168.1.9 - 192.168.1.2 is reversed "
    );
    assert_eq!(
        e.element_path().as_deref(),
        Some("/network/ip[1]/dhcp[1]/range[1]")
    );
    assert_eq!(
        with_range("192.168.1.0", "192.168.1.9").to_string(),
        "start of range 192.168.1.0 - 192.168.1.9 in network 192.168.1.1/24 is the network address"
    );
    assert_eq!(
        with_range("192.168.1.2", "192.168.1.255").to_string(),
        "end of range 192.168.1.2 - 192.168.1.255 in network 192.168.1.1/24 is the broadcast address"
    );
    assert_eq!(
        with_range("192.168.1.2", "192.168.2.9").to_string(),
        "range 192.168.1.2 - 192.168.2.9 is not entirely within network 192.168.1.1/24"
    );
    assert_eq!(
        with_range("192.168.1.2", "2001:db8::1").to_string(),
        "mismatch of address family in range 192.168.1.2 - 2001:db8::1"
    );
    let mut big = base.clone();
    big.ips[0].explicit_prefix = 8;
    big.ips[0].ranges[0].start = ip("192.0.0.1");
    big.ips[0].ranges[0].end = ip("192.2.0.1");
    assert_eq!(
        conf(&big).unwrap_err().to_string(),
        "range 192.0.0.1 - 192.2.0.1 is too large (> 65535)"
    );

    let six = def(
        "  <ip family='ipv6' address='2001:db8::1' prefix='64'><dhcp><range start='2001:db8::10' end='2001:db8::20'/></dhcp></ip>\n",
    );
    let mut d = six.clone();
    d.ips[0].ranges[0].end = ip("2001:db8::1:20");
    assert_eq!(
        conf(&d).unwrap_err().to_string(),
        "range 2001:db8::10 - 2001:db8::1:20 is too large (> 65535)"
    );
    let mut d = six;
    d.ips[0].ranges[0].end = ip("2001:db8::f");
    assert_eq!(
        conf(&d).unwrap_err().to_string(),
        "range 2001:db8::10 - 2001:db8::f start larger than end"
    );
}

#[test]
fn invalid_prefix_of_the_dhcp_ip() {
    let mut d = def(
        "  <ip address='192.168.1.1' netmask='255.255.255.0'><dhcp><range start='192.168.1.2' end='192.168.1.9'/></dhcp></ip>\n",
    );
    d.ips[0].netmask = Some("255.0.255.0".parse().unwrap());
    let e = conf(&d).unwrap_err();
    assert_eq!(e.to_string(), "bridge 'virbr9' has an invalid prefix");
    d.ips[0].netmask = None;
    d.ips[0].explicit_prefix = 33;
    assert_eq!(
        conf(&d).unwrap_err().to_string(),
        "Failed to translate bridge 'virbr9' prefix 33 to netmask"
    );
}

#[test]
fn no_bridge_and_incomplete_hosts() {
    let mut d = def("  <ip address='192.168.1.1' prefix='24'/>\n");
    d.bridge.name = None;
    assert_eq!(
        conf(&d).unwrap_err(),
        DnsmasqError::NoBridge {
            network: "t".into()
        }
    );
    let mut d = def(
        "  <ip address='192.168.1.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='192.168.1.5'/></dhcp></ip>\n",
    );
    d.ips[0].hosts[0].mac = None;
    let e = conf(&d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "DHCP host 192.168.1.5 of network 't' has neither mac nor name"
    );
    assert_eq!(
        e.element_path().as_deref(),
        Some("/network/ip[1]/dhcp[1]/host[1]")
    );
}

#[test]
fn line_breaks_cannot_inject_options() {
    // XML character references reach the model as real line breaks.
    let d = def(
        "  <dns><txt name='x' value='a&#10;dhcp-script=/tmp/evil'/></dns>\n  <ip address='192.168.1.1' prefix='24'/>\n",
    );
    let e = conf(&d).unwrap_err();
    assert!(
        matches!(&e, DnsmasqError::LineBreak { what, .. } if what == "<dns><txt value>"),
        "{e:?}"
    );
    assert!(e.to_string().contains("contains a line break"));
    let mut d = def("  <ip address='192.168.1.1' prefix='24'/>\n");
    d.dnsmasq_options.push("foo\rbar".into());
    assert!(matches!(conf(&d), Err(DnsmasqError::LineBreak { .. })));
    let mut o = DnsmasqOptions::libvirt_test();
    o.pid_dir = Some("/run/x\ny".into());
    let d = def("  <ip address='192.168.1.1' prefix='24'/>\n");
    assert!(matches!(
        dnsmasq::conf_contents(&d, &o),
        Err(DnsmasqError::LineBreak { .. })
    ));
}

#[test]
fn custom_header_must_be_comments() {
    let d = def("  <ip address='192.168.1.1' prefix='24'/>\n");
    let mut o = DnsmasqOptions::libvirt_test();
    o.header = ConfHeader::Custom("# mine\n".into());
    assert!(dnsmasq::conf_contents(&d, &o)
        .unwrap()
        .conf
        .starts_with("# mine\nstrict-order\n"));
    o.header = ConfHeader::Custom(String::new());
    assert!(dnsmasq::conf_contents(&d, &o)
        .unwrap()
        .conf
        .starts_with("strict-order\n"));
    for bad in ["# no newline", "# ok\nport=5353\n", "\n"] {
        o.header = ConfHeader::Custom(bad.into());
        assert_eq!(
            dnsmasq::conf_contents(&d, &o).unwrap_err(),
            DnsmasqError::BadHeader,
            "{bad:?}"
        );
    }
}

#[test]
fn errors_locate_to_line_and_column() {
    let xml = "<network>\n  <name>t</name>\n  <bridge name='virbr9'/>\n  <ip address='10.1.0.1' prefix='20' localPtr='yes'/>\n</network>\n";
    let d = netxml::parse(xml).unwrap();
    let e = conf(&d).unwrap_err();
    let mut ne = netxml::NetXmlError {
        kind: netxml::ErrorKind::Unsupported,
        message: e.to_string(),
        location: Some(netxml::Location {
            path: e.element_path().unwrap(),
            ..Default::default()
        }),
    };
    netxml::locate(xml, &mut ne);
    assert_eq!((ne.line(), ne.column()), (Some(4), Some(3)));
}

#[test]
fn when_dnsmasq_runs() {
    let yes = |b: &str| dnsmasq::needs_dnsmasq(&def(b));
    assert!(!yes(""), "no ip");
    assert!(
        yes("  <forward/>\n  <ip address='192.168.1.1' prefix='24'/>\n"),
        "dns only"
    );
    assert!(!yes(
        "  <dns enable='no'/>\n  <ip address='192.168.1.1' prefix='24'/>\n"
    ));
    assert!(yes(
        "  <dns enable='no'/>\n  <ip address='192.168.1.1' prefix='24'><tftp root='/t'/></ip>\n"
    ));
    assert!(yes(
        "  <dns enable='no'/>\n  <ip family='ipv6' address='2001:db8::1' prefix='64'><dhcp><host name='a' ip='2001:db8::2'/></dhcp></ip>\n"
    ));
    assert!(yes(
        "  <forward mode='route'/>\n  <ip address='192.168.1.1' prefix='24'/>\n"
    ));
    assert!(yes(
        "  <forward mode='open'/>\n  <ip address='192.168.1.1' prefix='24'/>\n"
    ));
    let mut d = def("  <ip address='192.168.1.1' prefix='24'/>\n");
    d.forward = Some(virtnet_core::netxml::ForwardDef {
        mode: virtnet_core::netxml::ForwardMode::Bridge,
        managed: false,
        driver: Default::default(),
        pfs: vec![],
        ifs: vec![],
        nat: Default::default(),
    });
    assert!(!dnsmasq::needs_dnsmasq(&d));
}

#[test]
fn command_line_is_libvirts() {
    let d = def("  <ip address='192.168.1.1' prefix='24'/>\n");
    let files = dnsmasq::conf_contents(&d, &DnsmasqOptions::libvirt_daemon()).unwrap();
    let cmd = dnsmasq::command_line(
        &d,
        &DnsmasqCaps::libvirt_test(),
        &files.paths.conf,
        dnsmasq::LIBVIRT_LEASES_HELPER,
    )
    .unwrap();
    assert_eq!(
        cmd.argv,
        [
            "/usr/sbin/dnsmasq",
            "--conf-file=/var/lib/libvirt/dnsmasq/t.conf",
            "--leasefile-ro",
            "--dhcp-script=/usr/libexec/libvirt_leaseshelper"
        ]
    );
    assert_eq!(
        cmd.env,
        [("VIR_BRIDGE_NAME".to_string(), "virbr9".to_string())]
    );
    assert_eq!(*cmd.to_cmd().argv, cmd.argv);
    assert_eq!(
        files.paths.pid_file.as_deref(),
        Some("/run/libvirt/network/t.pid")
    );
    assert!(files
        .conf
        .contains("\npid-file=/run/libvirt/network/t.pid\n"));
    // Write order: hosts files first, then the configuration.
    let names: Vec<&str> = files.files().iter().map(|(p, _)| *p).collect();
    assert_eq!(
        names,
        [
            "/var/lib/libvirt/dnsmasq/t.hostsfile",
            "/var/lib/libvirt/dnsmasq/t.addnhosts",
            "/var/lib/libvirt/dnsmasq/t.conf"
        ]
    );
}

struct VersionRunner(Result<Output, RunError>);
impl Runner for VersionRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        assert_eq!(*cmd.argv, ["/usr/sbin/dnsmasq", "--version"]);
        self.0.clone()
    }
}

#[test]
fn probe_runs_version_through_the_runner() {
    let ok = VersionRunner(Ok(Output::ok("Dnsmasq version 2.67\n")));
    assert_eq!(
        DnsmasqCaps::probe(&ok, "/usr/sbin/dnsmasq"),
        Ok(DnsmasqCaps::libvirt_test())
    );
    let old = VersionRunner(Ok(Output::ok("Dnsmasq version 2.66  Copyright\n")));
    assert_eq!(
        DnsmasqCaps::probe(&old, "/usr/sbin/dnsmasq"),
        Err(DnsmasqError::VersionTooOld {
            major: 2,
            minor: 66
        })
    );
    let fail = VersionRunner(Ok(Output::failed(1, "boom\n")));
    assert!(matches!(
        DnsmasqCaps::probe(&fail, "/usr/sbin/dnsmasq"),
        Err(DnsmasqError::VersionCommand { .. })
    ));
    let gone = VersionRunner(Err(RunError::Spawn {
        program: "/usr/sbin/dnsmasq".into(),
        reason: "No such file or directory".into(),
    }));
    let e = DnsmasqCaps::probe(&gone, "/usr/sbin/dnsmasq").unwrap_err();
    assert!(e.to_string().contains("No such file or directory"), "{e}");
}

#[test]
fn addnhosts_of_the_dns_hosts_case() {
    let xml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/libvirt-11.3.0/tests/networkxml2confdata/nat-network-dns-hosts.xml"
    ))
    .unwrap();
    let d = netxml::parse(&xml).unwrap();
    let f = conf(&d).unwrap();
    assert_eq!(
        f.addnhosts().map(str::to_string),
        Some(expected_addnhosts(&d))
    );
    assert!(!f.addnhosts.is_empty());
    assert_eq!(f.hostsfile(), None);
}

/// Independent restatement of B.4 for the golden case.
fn expected_addnhosts(d: &NetworkDef) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut names: std::collections::HashMap<String, Vec<String>> = Default::default();
    for h in &d.dns.hosts {
        let k = h.ip.to_string();
        if !h.hostnames.is_empty() && !order.contains(&k) {
            order.push(k.clone());
        }
        names
            .entry(k)
            .or_default()
            .extend(h.hostnames.iter().cloned());
    }
    order
        .iter()
        .map(|k| format!("{k}\t{}\t\n", names[k].join("\t")))
        .collect()
}

/// Every generated configuration (except the case whose options are not
/// dnsmasq options) passes the real dnsmasq's syntax check, when a dnsmasq
/// is installed.
#[test]
fn real_dnsmasq_accepts_generated_configurations() {
    let Some(bin) = std::env::var_os("PATH").and_then(|p| dnsmasq::caps::find_binary(&p)) else {
        eprintln!("skipped: no dnsmasq on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/libvirt-11.3.0/tests/networkxml2confdata"
    );
    let mut checked = 0;
    for e in std::fs::read_dir(data).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "xml") || p.ends_with("dnsmasq-options.xml") {
            continue;
        }
        let d = netxml::parse(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let f = conf(&d).unwrap();
        let path = dir.path().join("t.conf");
        std::fs::write(&path, &f.conf).unwrap();
        let out = std::process::Command::new(&bin)
            .arg("--test")
            .arg(format!("--conf-file={}", path.display()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("syntax check OK"),
            "{}: {} (a signal here means another process killed this dnsmasq --test): {text}",
            p.display(),
            out.status
        );
        checked += 1;
    }
    assert_eq!(checked, 26);
}
