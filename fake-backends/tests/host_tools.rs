//! The non-firewall tools of the simulated host (ip, sysctl, dnsmasq, kill),
//! nft dispatch, and the foreign-state seeds.

use std::path::{Path, PathBuf};

use virtnet_fake::nft::NftState;
use virtnet_fake::record::parse_golden;
use virtnet_fake::{seed, FakeHost};
use virtnet_runner::{Cmd, Runner};

fn ok(host: &FakeHost, line: &str) -> String {
    let argv: Vec<&str> = line.split_whitespace().collect();
    let out = host.run_argv(&argv).unwrap();
    assert!(out.success(), "{line}: {out:?}");
    out.stdout
}

fn status(host: &FakeHost, line: &str) -> (i32, String) {
    let argv: Vec<&str> = line.split_whitespace().collect();
    let out = host.run_argv(&argv).unwrap();
    (out.status, out.stderr)
}

#[test]
fn bridge_with_dummy_port_gets_carrier() {
    let h = FakeHost::new();
    h.set_dummy_driver(true);
    ok(
        &h,
        "ip link add virbr0 address 52:54:00:11:22:33 type bridge",
    );
    ok(&h, "ip link add name virbr0-nic mtu 9000 type dummy");
    ok(&h, "ip link set virbr0-nic master virbr0");
    ok(
        &h,
        "ip link set dev virbr0 type bridge stp_state 0 forward_delay 0",
    );
    let opts = h
        .state()
        .ip
        .link("virbr0")
        .map(|l| l.bridge.clone())
        .unwrap();
    assert_eq!(opts.get("stp_state"), Some(&0));
    assert_eq!(opts.get("forward_delay"), Some(&0));
    assert!(h.dump().contains("forward_delay 0 stp_state 0"));
    ok(
        &h,
        "ip link set dev virbr0 type bridge stp_state 1 forward_delay 200",
    );
    assert_eq!(
        status(&h, "ip link set dev virbr0 type bridge forward_delay 0"),
        (
            2,
            "RTNETLINK answers: Numerical result out of range\n".into()
        )
    );
    ok(&h, "ip link set dev virbr0 up");
    let l = ok(&h, "ip link show dev virbr0");
    assert!(l.contains("<NO-CARRIER,BROADCAST,MULTICAST,UP>"), "{l}");
    ok(&h, "ip link set virbr0-nic up");
    let l = ok(&h, "ip link show dev virbr0");
    assert!(
        l.contains("<BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP"),
        "{l}"
    );
    let nic = ok(&h, "ip link show virbr0-nic");
    assert!(
        nic.contains("mtu 9000 qdisc noqueue master virbr0 state UNKNOWN"),
        "{nic}"
    );
    // Deleting the bridge releases its port.
    ok(&h, "ip link del virbr0");
    assert_eq!(
        h.state()
            .ip
            .link("virbr0-nic")
            .and_then(|l| l.master.clone()),
        None
    );
    assert_eq!(
        status(&h, "ip link set nope mtu 1400"),
        (1, "Cannot find device \"nope\"\n".into())
    );
    assert_eq!(
        status(&h, "ip link add x type vxlan"),
        (2, "Error: Unknown device type.\n".into())
    );
}

#[test]
fn ip_json_addresses_and_routes() {
    let h = FakeHost::new();
    ok(&h, "ip link add virbr1 type bridge");
    ok(
        &h,
        "ip addr add 10.1.0.1/16 broadcast 10.1.255.255 dev virbr1",
    );
    ok(&h, "ip link set virbr1 up");
    let j = ok(&h, "ip -j addr show dev virbr1");
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v[0]["ifname"], "virbr1");
    assert_eq!(v[0]["addr_info"][0]["local"], "10.1.0.1");
    assert_eq!(v[0]["addr_info"][0]["prefixlen"], 16);
    // A new bridge whose MAC the kernel chose and that never had a port
    // has carrier once up (operstate UNKNOWN): no `linkdown`.
    let r = ok(&h, "ip route");
    assert_eq!(
        r,
        "10.1.0.0/16 dev virbr1 proto kernel scope link src 10.1.0.1 \n"
    );
    ok(&h, "ip route add 10.9.0.0/16 via 10.1.0.254");
    // Routes are listed by destination, like the kernel's FIB dump.
    assert_eq!(
        ok(&h, "ip route show"),
        "10.1.0.0/16 dev virbr1 proto kernel scope link src 10.1.0.1 \n\
         10.9.0.0/16 via 10.1.0.254 dev virbr1 \n"
    );
    // Setting the MAC makes the kernel compute the carrier: no port, none.
    ok(&h, "ip link set virbr1 address 52:54:00:00:00:09");
    assert!(ok(&h, "ip route show").contains("10.9.0.0/16 via 10.1.0.254 dev virbr1 linkdown \n"));
    assert_eq!(
        status(&h, "ip route add 10.8.0.0/16 via 172.16.0.1"),
        (2, "Error: Nexthop has invalid gateway.\n".into())
    );
    ok(&h, "ip addr del 10.1.0.1/16 dev virbr1");
    assert_eq!(
        status(&h, "ip addr del 10.1.0.1/16 dev virbr1"),
        (2, "Error: ipv4: Address not found.\n".into())
    );
}

#[test]
fn sysctls_follow_interfaces() {
    let h = FakeHost::new();
    assert_eq!(ok(&h, "sysctl -n net.ipv4.ip_forward"), "0\n");
    ok(&h, "ip link add virbr0 type bridge");
    assert_eq!(
        ok(&h, "sysctl -w net.ipv6.conf.virbr0.accept_ra=0"),
        "net.ipv6.conf.virbr0.accept_ra = 0\n"
    );
    assert_eq!(ok(&h, "sysctl -n net.ipv6.conf.virbr0.accept_ra"), "0\n");
    assert_eq!(ok(&h, "sysctl -n net.ipv6.conf.virbr0.disable_ipv6"), "0\n");
    ok(&h, "ip link del virbr0");
    assert!(h.state().sysctl.values.is_empty());
    let (st, err) = status(&h, "sysctl -n net.ipv6.conf.virbr0.accept_ra");
    assert_eq!(st, 1);
    assert_eq!(
        err,
        "sysctl: cannot stat /proc/sys/net/ipv6/conf/virbr0/accept_ra: No such file or directory\n"
    );
}

#[test]
fn dnsmasq_daemonises_and_kill_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("default.conf");
    let pid = dir.path().join("default.pid");
    std::fs::write(
        &conf,
        format!(
            "strict-order\npid-file={}\nexcept-interface=lo\nbind-dynamic\ninterface=virbr0\ndhcp-range=192.168.122.2,192.168.122.254,255.255.255.0\n",
            pid.display()
        ),
    )
    .unwrap();
    let h = FakeHost::new();
    let v = ok(&h, "dnsmasq --version");
    assert!(v.starts_with("Dnsmasq version 2.90 "), "{v}");
    let conf_arg = format!("--conf-file={}", conf.display());
    let out = h
        .run_argv(&[
            "/usr/sbin/dnsmasq",
            &conf_arg,
            "--leasefile-ro",
            "--dhcp-script=/usr/libexec/libvirt_leaseshelper",
        ])
        .unwrap();
    assert!(out.success(), "{out:?}");
    let text = std::fs::read_to_string(&pid).unwrap();
    let n: u32 = text.trim().parse().unwrap();
    let st = h.state();
    let p = &st.procs.procs[&n];
    assert_eq!(p.conf_file.as_deref(), Some(conf.to_str().unwrap()));
    assert!(p.config.as_deref().unwrap().contains("interface=virbr0"));
    ok(&h, &format!("kill -HUP {n}"));
    assert_eq!(h.state().procs.procs[&n].hups, 1);
    ok(&h, &format!("kill {n}"));
    assert!(h.state().procs.procs.is_empty());
    assert_eq!(
        status(&h, &format!("kill -TERM {n}")),
        (1, format!("kill: ({n}) - No such process\n"))
    );
    // Unreadable configuration and unknown options fail like dnsmasq.
    let (st, err) = status(&h, "dnsmasq --conf-file=/nonexistent/virtnet.conf");
    assert_eq!(
        (st, err.as_str()),
        (
            3,
            "\ndnsmasq: cannot read /nonexistent/virtnet.conf: No such file or directory\n"
        )
    );
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "bogus-option=1\n").unwrap();
    let (st, err) = status(&h, &format!("dnsmasq --conf-file={}", bad.display()));
    assert_eq!(
        (st, err),
        (
            1,
            format!("\ndnsmasq: bad option at line 1 of {}\n", bad.display())
        )
    );
}

#[test]
fn nft_goes_to_the_nft_simulator() {
    let h = FakeHost::new();
    let args = vec!["list".to_string(), "ruleset".to_string()];
    let want = NftState::new().exec(&args, None);
    let got = h.run(&Cmd::new(["nft", "list", "ruleset"])).unwrap();
    assert_eq!(got, want);
    let got = h
        .run(&Cmd::new(["/usr/sbin/nft", "list", "ruleset"]))
        .unwrap();
    assert_eq!(got, want);
}

fn golden(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/upstream")).join(rel)
}

fn replay(h: &FakeHost, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    for argv in parse_golden(&text).unwrap() {
        let out = h
            .run(&Cmd {
                argv: argv.clone().into(),
                stdin: None,
                env: Vec::new(),
            })
            .unwrap();
        assert!(out.success(), "{argv:?}: {out:?}");
    }
}

/// Docker's rules survive a libvirt network start and destroy (libvirt's own
/// 11.3.0 streams and the destroy commands of the real capture).
#[test]
fn docker_iptables_seed_survives_a_libvirt_network_lifecycle() {
    let h = FakeHost::new();
    seed::seed_docker_iptables(&h).unwrap();
    let docker = |h: &FakeHost| -> String {
        h.state()
            .iptables
            .save(None)
            .lines()
            .filter(|l| l.contains("DOCKER") || l.contains("docker0") || l.contains("172.17."))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let before = docker(&h);
    assert!(
        before.contains("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n"),
        "{before}"
    );
    assert!(
        before.contains(":DOCKER-ISOLATION-STAGE-1 - [0:0]\n"),
        "{before}"
    );
    let data = golden("libvirt-11.3.0/tests/networkxml2firewalldata");
    replay(&h, &data.join("base.iptables"));
    replay(&h, &data.join("nat-default-linux.iptables"));
    let s = ok(&h, "iptables -w -S FORWARD");
    assert!(
        s.starts_with("-P FORWARD ACCEPT\n-A FORWARD -j LIBVIRT_FWX\n"),
        "{s}"
    );
    // Destroy with the commands libvirt ran in the capture.
    let log = std::fs::read_to_string(golden(
        "captures/libvirt-11.3.0/nat-default/iptables/commands.log",
    ))
    .unwrap();
    let entries = virtnet_fake::record::parse_log(&log).unwrap();
    let mut in_destroy = false;
    for e in entries {
        match e {
            virtnet_fake::record::LogEntry::Step(s) => in_destroy = s == "net-destroy",
            virtnet_fake::record::LogEntry::Command { argv, output, .. } if in_destroy => {
                assert_eq!(
                    h.run(&Cmd {
                        argv: argv.into(),
                        stdin: None,
                        env: Vec::new()
                    })
                    .unwrap(),
                    output
                );
            }
            _ => {}
        }
    }
    assert_eq!(docker(&h), before);
}

/// The nft seeds need the nft simulator; until it is merged they report
/// that instead of passing silently.
#[test]
fn nft_seeds_create_their_tables() {
    let probe = NftState::new().exec(&["list".to_string(), "ruleset".to_string()], None);
    if !probe.success() {
        println!(
            "skipped: nft simulator not available here ({})",
            probe.stderr.trim()
        );
        return;
    }
    let h = FakeHost::new();
    seed::seed_docker_nft(&h).unwrap();
    seed::seed_firewalld_nft(&h).unwrap();
    let rs = h.state().nft.list_ruleset();
    assert!(rs.contains("table ip docker-bridges {"), "{rs}");
    assert!(rs.contains("table inet firewalld {"), "{rs}");
}
