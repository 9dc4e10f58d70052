//! Differential test: the same command sequences run on the simulator and
//! on the real tools inside a fresh network namespace (`unshare -n`, entered
//! with `nsenter`), comparing every exit status, stdout and stderr, and the
//! final `iptables-save` / `ip6tables-save`.
//!
//! Needs root and the real `unshare`, `nsenter`, `iptables`, `ip6tables`,
//! `iptables-save`, `ip6tables-save`, `ip`, `tc`, `sysctl`; otherwise each test prints
//! "skipped: <why>" and returns.

mod common;

use common::{strip_comments, words, Netns};
use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Runner};

fn skip_reason() -> Option<String> {
    common::cannot_run(&[
        "unshare",
        "nsenter",
        "iptables",
        "ip6tables",
        "iptables-save",
        "ip6tables-save",
        "ip",
        "tc",
        "sysctl",
    ])
    .or_else(|| common::other_version("iptables", "-V", "v1.8.9 (nf_tables)"))
}

/// Run a scenario on both hosts; returns the mismatches.
fn differential(name: &str, script: &[&str]) -> Vec<String> {
    let ns = match Netns::new() {
        Ok(n) => n,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let fake = FakeHost::new();
    let mut bad = Vec::new();
    for line in script {
        let argv = words(line);
        let real = ns.run(&argv);
        let sim = fake
            .run(&Cmd {
                argv: argv.clone().into(),
                stdin: None,
                env: Vec::new(),
            })
            .unwrap();
        if real != sim {
            bad.push(format!(
                "{name}: `{line}`\n   real: {real:?}\n   fake: {sim:?}"
            ));
        }
    }
    for save in ["iptables-save", "ip6tables-save"] {
        let real = strip_comments(&ns.run(&[save.to_string()]).stdout);
        let sim = strip_comments(&fake.run(&Cmd::new([save])).unwrap().stdout);
        if real != sim {
            bad.push(format!(
                "{name}: final {save} differs:\n{}",
                virtnet_fake::diff_text(&real, &sim, "real", "fake")
            ));
        }
    }
    bad
}

/// Run a scenario on both hosts and fail with every mismatch.
fn assert_same(name: &str, script: &[&str]) {
    let bad = differential(name, script);
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

macro_rules! skip_unless_able {
    () => {
        if let Some(why) = skip_reason() {
            println!("skipped: {why}");
            return;
        }
    };
}

#[test]
fn iptables_commands_match_the_real_tool() {
    skip_unless_able!();
    let script = [
        "iptables -w --table filter --list-rules",
        "iptables -w --table nat --list-rules",
        "iptables -w -t raw -S",
        "iptables -w -t bogus -S",
        "iptables -w -N FOO",
        "iptables -w -N FOO",
        "iptables -w --table filter --new-chain FOO",
        "iptables -w -X BAR",
        "iptables -w -F BAR",
        "iptables -w -D FOO -j ACCEPT",
        "iptables -w -D FOO 1",
        "iptables -w -D FOO 0",
        "iptables -w -I BAR -j ACCEPT",
        "iptables -w -A FOO -s 1.2.3.4 -p tcp --dport 53 -j ACCEPT",
        "iptables -w -C FOO -s 1.2.3.4 -p tcp --dport 53 -j ACCEPT",
        "iptables -w -C FOO -s 1.2.3.5 -p tcp --dport 53 -j ACCEPT",
        "iptables -w -I FOO 5 -j ACCEPT",
        "iptables -w -I FOO 2 -j DROP",
        "iptables -w -A FOO --bogus",
        "iptables -w -X FOO",
        "iptables -w -N INPUT",
        "iptables -w -A INPUT -j FOO",
        "iptables -w -X FOO",
        "iptables -w -S FOO",
        "iptables -w -S NOPE",
        "iptables -w -L NOPE",
        "iptables -w -S",
        "iptables -w -L",
        "iptables -w -L -n -v --line-numbers",
        "iptables -w -D INPUT -j FOO",
        "iptables -w -F FOO",
        "iptables -w -X FOO",
        "iptables -w -P INPUT DROP",
        "iptables -w -P FOO DROP",
        "iptables -w -P OUTPUT RETURN",
        "iptables -w -A INPUT -j NOSUCH",
        "iptables -w -A INPUT -p tcp --dport 99999 -j ACCEPT",
        "iptables -w -A INPUT -s 300.1.1.1 -j ACCEPT",
        "iptables -w -A INPUT -s 10.1.2.3/8 -j ACCEPT",
        "iptables -w -A INPUT -s 10.1.2.3/255.255.0.0 -j ACCEPT",
        "iptables -w -A INPUT -d 10.0.0.1/255.0.255.0 -j ACCEPT",
        "iptables -w -A INPUT -s 10.0.0.1/33 -j ACCEPT",
        "iptables -w -A INPUT -i virbr0 -o virbr1 -j REJECT",
        "iptables -w -I OUTPUT -i lo -j ACCEPT",
        "iptables -w -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -m state --state ESTABLISHED,RELATED,NEW -j ACCEPT",
        "iptables -w -A INPUT -p tcp -m tcp ! --dport 53 -j ACCEPT",
        "iptables -w -A INPUT -p udp --sport 1 --dport 80:90 -j ACCEPT",
        "iptables -w -A INPUT ! -p tcp -j ACCEPT",
        "iptables -w -A INPUT -p 6 -j ACCEPT",
        "iptables -w -A INPUT -p all -j ACCEPT",
        "iptables -w -A INPUT -p bogus -j ACCEPT",
        "iptables -w -A INPUT -i virbr+ -j ACCEPT",
        "iptables -w -A INPUT -i abcdefghijklmnopq -j ACCEPT",
        "iptables -w -A INPUT -m comment --comment 'hello world' -j ACCEPT",
        "iptables -w -A INPUT -m bogus -j ACCEPT",
        "iptables -w -A INPUT -m addrtype --dst-type LOCAL -j RETURN",
        "iptables -w -A INPUT -j REJECT --reject-with icmp-host-prohibited",
        "iptables -w -A INPUT -j LOG --log-prefix 'x y'",
        "iptables -w -A INPUT -j ACCEPT -j DROP",
        "iptables -w -A INPUT -s 1.2.3.4 -s 1.2.3.5 -j ACCEPT",
        "iptables -w -A INPUT -A INPUT -j DROP",
        "iptables -w -A INPUT 1 -j ACCEPT",
        "iptables -w -D INPUT 1 -j ACCEPT",
        "iptables -w -N X -s 1.2.3.4",
        "iptables -w -N LIBVIRT_TOO_LONG_CHAIN_NAME_XXXXXXXXXXXXXX",
        "iptables -w",
        "iptables -w -A",
        "iptables -w -S INPUT",
        "iptables -w -S INPUT 2",
        "iptables -w -S INPUT -v",
        "iptables -w -L INPUT",
        "iptables -w -L INPUT -n",
        "iptables -w -D INPUT 99",
        "iptables -w -D INPUT 2",
        "iptables -w -R INPUT 1 -s 1.2.3.5 -j ACCEPT",
        "iptables -w -R INPUT 99 -s 1.2.3.5 -j ACCEPT",
        "iptables -w -t nat -N LIBVIRT_PRT",
        "iptables -w -t nat -A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535",
        "iptables -w -t nat -A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j SNAT --to-source 10.0.0.1-10.0.0.5",
        "iptables -w -t nat -A POSTROUTING -j SNAT",
        "iptables -w -t nat -A PREROUTING -j MASQUERADE",
        "iptables -w -A INPUT -j MASQUERADE",
        "iptables -w -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.2:8080",
        "iptables -w -t nat -I POSTROUTING -j LIBVIRT_PRT",
        "iptables -w -t nat -A LIBVIRT_PRT -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN",
        "iptables -w -t nat -A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p udp -j SNAT --to-source 10.0.0.1-10.0.0.5:1024-65535",
        "iptables -w -t nat -L -n",
        "iptables -w -t nat -L",
        "iptables -w -t nat -L LIBVIRT_PRT -v",
        "iptables -w -t mangle -N LIBVIRT_PRT",
        "iptables -w -t mangle -A LIBVIRT_PRT -o virbr0 -p udp --dport 68 -j CHECKSUM --checksum-fill",
        "iptables -w -t mangle -L LIBVIRT_PRT",
        "iptables -w -t mangle -L LIBVIRT_PRT -n -v",
        "iptables -w -A FOO ! -s 10.0.0.0/8 ! -i eth0 -j DROP",
        "iptables -w -L FOO -v",
        "iptables -w -L FOO -n",
        "iptables -w -t mangle -A LIBVIRT_PRT -o virbr0 -p udp --dport 68 -j CHECKSUM --checksum-fill",
        "iptables -w -t mangle -D LIBVIRT_PRT -o virbr0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill",
        "iptables -w -t raw -F INPUT",
        "iptables -w -t raw -D PREROUTING 1",
        "iptables -w -t raw -N AAA",
        "iptables -w -t raw -N ZZZ",
        "iptables -w -t raw -A AAA -j ZZZ",
        "iptables -w -t raw -E ZZZ BBB",
        "iptables -w -t raw -E NOPE X",
        "iptables -w -t raw -E AAA BBB",
        "iptables -w -t raw -S",
        "iptables -w -t raw -X",
        "iptables -w -t raw -F",
        "iptables -w -t raw -X",
        "iptables -w -t raw -S",
        "iptables -w -Z",
    ];
    assert_same("iptables", &script);
}

#[test]
fn ip6tables_commands_match_the_real_tool() {
    skip_unless_able!();
    let script = [
        "ip6tables -w --table filter --list-rules",
        "ip6tables -w -N FOO",
        "ip6tables -w -N FOO",
        "ip6tables -w -D FOO -j ACCEPT",
        "ip6tables -w -A INPUT -s 2001:db8::/64 -d ff02::/16 -j ACCEPT",
        "ip6tables -w -A INPUT -s 2001:db8::1 -j REJECT",
        "ip6tables -w -A INPUT -s fe80::1/10 -j ACCEPT",
        "ip6tables -w -A INPUT -s 1.2.3.4 -j REJECT",
        "ip6tables -w -A INPUT -j REJECT --reject-with icmp-port-unreachable",
        "ip6tables -w -A INPUT -p udp --dport 547 -j ACCEPT",
        "ip6tables -w -t nat -A POSTROUTING -s fd00::/64 ! -d fd00::/64 -p udp -j MASQUERADE --to-ports 1024-65535",
        "ip6tables -w -t nat -S",
        "ip6tables -w -N BAR",
        "ip6tables -w -A BAR -s 2001:db8::/64 -d ff02::/16 -p udp --dport 547 -j ACCEPT",
        "ip6tables -w -A BAR ! -s fd00::1 -j REJECT",
        "ip6tables -w -L BAR",
        "ip6tables -w -L BAR -n -v",
        "ip6tables -w -L -n",
        "ip6tables -w -S",
        "ip6tables -w -D INPUT -s 2001:db8::1/128 -j REJECT --reject-with icmp6-port-unreachable",
        "ip6tables -w -D INPUT -s 2001:db8::1/128 -j REJECT",
    ];
    assert_same("ip6tables", &script);
}

#[test]
fn ip_tc_sysctl_commands_match_the_real_tools() {
    skip_unless_able!();
    let script = [
        "ip link add virbr0 type bridge",
        "ip link add virbr0 type bridge",
        "ip link add x1 type bogus",
        "ip link add virbr9 type bridge stp_state 1 forward_delay 200",
        "ip link set dev virbr9 type bridge stp_state 0 forward_delay 0",
        "ip link set dev virbr9 type bridge bogus 1",
        "ip link set dev virbr9 type bridge stp_state",
        "ip link set dev virbr9 type bridge forward_delay abc",
        "ip link add virbr8 type bridge bogus 1",
        "ip link del virbr9",
        "ip link set dev virbr0 address 52:54:00:aa:bb:cc",
        "ip link set virbr0 mtu 1400",
        "ip link set nope up",
        "ip link show dev virbr0",
        "ip link set dev virbr0 up",
        "ip addr add 192.168.122.1/24 broadcast 192.168.122.255 dev virbr0",
        "ip addr add 192.168.122.1/24 dev virbr0",
        "ip addr add 10.0.0.1/8 dev nope",
        "ip addr del 10.9.9.9/24 dev virbr0",
        "ip link show",
        "ip -br link",
        "ip -br addr",
        "ip -j link show dev virbr0",
        "ip -j addr show dev virbr0",
        "ip -6 addr add 2001:db8::1/64 dev virbr0",
        "ip -br addr",
        "ip -6 route",
        "ip route",
        "ip route add 10.10.0.0/16 via 192.168.122.2",
        "ip route add 10.10.0.0/16 via 192.168.122.2",
        "ip route",
        "ip route del 10.10.0.0/16",
        "ip route del 10.10.0.0/16",
        "ip link show dev nope",
        "ip bogus",
        "tc qdisc show dev virbr0 handle 1:",
        "tc qdisc show dev nope",
        "tc qdisc add dev virbr0 root handle 1: htb default 2",
        "tc qdisc add dev virbr0 root handle 1: htb default 2",
        "tc qdisc show dev virbr0 handle 1:",
        "tc qdisc show dev virbr0",
        "tc filter del dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp",
        "tc filter add dev nope prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action pass",
        "tc qdisc del dev virbr0 root",
        "tc qdisc del dev virbr0 root",
        "sysctl -w net.ipv4.ip_forward=1",
        "sysctl -n net.ipv4.ip_forward",
        "sysctl net.ipv4.ip_forward",
        "sysctl -w net.ipv6.conf.virbr0.disable_ipv6=1",
        "sysctl -n net.ipv6.conf.all.forwarding",
        "sysctl -w net.ipv6.conf.nope.accept_ra=0",
        "sysctl -n net.bogus.key",
        "sysctl -w net.ipv4.ip_forward",
        "sysctl -q -w net.ipv4.ip_forward=0",
        "ip link set virbr0 down",
        "ip link del virbr0",
        "ip link del virbr0",
        "ip link show",
    ];
    assert_same("ip/tc/sysctl", &script);
}

/// Issue 14: the link names the kernel and iproute2 refuse (iproute2's
/// check_ifname/check_altifname in userspace, then the kernel's attribute
/// policy and dev_valid_name), with their exact messages and statuses.
#[test]
fn ip_link_add_refuses_the_names_the_kernel_refuses() {
    skip_unless_able!();
    let script = [
        "ip link add . type bridge",
        "ip link add .. type bridge",
        "ip link add 'a b' type bridge",
        "ip link add a/b type bridge",
        "ip link add vir:br type bridge",
        "ip link add 0123456789abcdef type bridge",
        "ip link add '' type bridge",
        "ip link add name .. type bridge",
        "ip link add name 'a b' type bridge",
        "ip link add name '' type bridge",
        "ip link add name 0123456789abcdef type bridge",
        "ip link add dev 'a b' type bridge",
        "ip link add 'a b'",
        "ip link add v0 type veth peer name 'a b'",
        "ip link add v0 type veth peer name ..",
        "ip link add v0 type veth peer name a:b",
        "ip link add 0123456789abcde type bridge",
        "ip link del 0123456789abcde",
        "ip link show",
    ];
    assert_same("ip link names", &script);
}

#[test]
fn tc_csum_failure_switch_matches_this_kernel() {
    skip_unless_able!();
    let ns = match Netns::new() {
        Ok(n) => n,
        Err(e) => panic!("{e}"),
    };
    let fake = FakeHost::new();
    let setup = [
        "ip link add virbr0 type bridge",
        "tc qdisc add dev virbr0 root handle 1: htb default 2",
    ];
    for l in setup {
        assert!(ns.run(&words(l)).success());
        assert!(fake
            .run(&Cmd {
                argv: words(l).into(),
                stdin: None,
                env: Vec::new()
            })
            .unwrap()
            .success());
    }
    let csum = words("tc filter add dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp");
    let real = ns.run(&csum);
    if real.success() {
        println!("skipped: this kernel has act_csum; the failure switch cannot be compared");
        return;
    }
    fake.set_tc_csum_fails(true);
    let sim = fake
        .run(&Cmd {
            argv: csum.into(),
            stdin: None,
            env: Vec::new(),
        })
        .unwrap();
    assert_eq!(real, sim);
}

/// `tc -batch -` (the batched layout's start: root qdisc and checksum
/// filter in one process): lines run in order, the first failing one ends
/// the batch with its error, `Command failed -:N` and status 1, the lines
/// before it stay done. Compared with the real tc for a batch that
/// succeeds, one whose 2nd line fails (the csum filter on a kernel without
/// act_csum, or a missing device), one whose 1st line fails (the qdisc is
/// already there), comments and blank lines, and the state after each.
#[test]
fn tc_batch_matches_the_real_tool() {
    skip_unless_able!();
    let ns = Netns::new().unwrap_or_else(|e| panic!("{e}"));
    let fake = FakeHost::new();
    let run_both = |argv: &[String], stdin: Option<&str>| {
        let real = ns.run_with_stdin(argv, stdin);
        let sim = fake
            .run(&Cmd {
                argv: argv.to_vec().into(),
                stdin: stdin.map(str::to_string),
                env: Vec::new(),
            })
            .unwrap();
        (
            without_traffic_counters(real),
            without_traffic_counters(sim),
        )
    };
    let (real, sim) = run_both(&words("ip link add virbr0 type bridge"), None);
    assert!(real.success() && sim.success(), "{real:?} {sim:?}");
    // The reference kernel lacks act_csum: the simulator follows this one
    // (probed on another bridge, in the real namespace only).
    for l in [
        "ip link add br1 type bridge",
        "tc qdisc add dev br1 root handle 1: htb default 2",
    ] {
        assert!(ns.run(&words(l)).success(), "{l}");
    }
    let probe = ns.run(&words("tc filter add dev br1 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp"));
    assert!(ns.run(&words("ip link del br1")).success());
    let lacks_csum = probe.stderr.contains("Failed to load TC action module");
    fake.set_tc_csum_fails(lacks_csum);
    let qdisc = "qdisc add dev virbr0 root handle 1: htb default 2\n";
    let csum = "filter add dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp\n";
    let flowid = "filter add dev virbr0 prio 3 protocol ip parent 1: u32 match ip dport 67 ffff flowid 1:2\n";
    let batch = words("tc -batch -");
    let cases: Vec<(&str, String)> = vec![
        (
            "the start's batch (2nd line fails without act_csum)",
            format!("{qdisc}{csum}"),
        ),
        (
            "1st line fails: the qdisc is there",
            format!("{qdisc}{flowid}"),
        ),
        (
            "comments, blank lines, a listing",
            format!(
                "# virtnet\n\n  qdisc show dev virbr0 # root\n{flowid}filter show dev virbr0\n"
            ),
        ),
        (
            "2nd line fails: no such device",
            format!("qdisc del dev virbr0 root\nqdisc add dev nope root handle 1: htb\n{qdisc}"),
        ),
        (
            "unknown object and verb",
            "qdisc show dev virbr0\nfoo bar\n".to_string(),
        ),
        ("unknown verb", "qdisc frob dev virbr0\n".to_string()),
        ("all succeed", format!("{qdisc}{flowid}")),
        ("empty input", String::new()),
    ];
    let mut bad = Vec::new();
    for (name, input) in &cases {
        let (real, sim) = run_both(&batch, Some(input));
        if real != sim {
            bad.push(format!("{name}:\n   real: {real:?}\n   fake: {sim:?}"));
        }
        for show in ["tc qdisc show dev virbr0", "tc filter show dev virbr0"] {
            let (real, sim) = run_both(&words(show), None);
            if real != sim {
                bad.push(format!(
                    "after {name}: `{show}`\n   real: {real:?}\n   fake: {sim:?}"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The nft seed scripts are valid for the real nft, and (once the nft
/// simulator is merged) give the same ruleset on both hosts.
#[test]
fn nft_seed_scripts_match_the_real_nft() {
    skip_unless_able!();
    if !std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| std::path::Path::new(d).join("nft").exists())
    {
        println!("skipped: nft not found on PATH");
        return;
    }
    let ns = Netns::new().unwrap_or_else(|e| panic!("{e}"));
    for script in [
        virtnet_fake::seed::DOCKER_NFT_SCRIPT,
        virtnet_fake::seed::FIREWALLD_NFT_SCRIPT,
    ] {
        let out = ns.run_with_stdin(&words("nft -f -"), Some(script));
        assert!(
            out.success(),
            "real nft rejected a seed script: {out:?}\n{script}"
        );
    }
    let real = ns.run(&["nft".to_string(), "list".to_string(), "ruleset".to_string()]);
    assert!(real.stdout.contains("table inet firewalld {"), "{real:?}");
    let fake = FakeHost::new();
    let seeded = virtnet_fake::seed::seed_docker_nft(&fake)
        .and_then(|_| virtnet_fake::seed::seed_firewalld_nft(&fake));
    match seeded {
        Err(e) if fake.state().nft == virtnet_fake::nft::NftState::new() => {
            println!("skipped: fake-vs-real comparison, nft simulator not available here ({e})");
        }
        Err(e) => panic!("{e}"),
        Ok(()) => {
            let sim = fake.run(&Cmd::new(["nft", "list", "ruleset"])).unwrap();
            assert_eq!(real, sim);
        }
    }
}

/// `iptables-save`'s own options and errors (the timestamp comment lines
/// aside), on a fresh host and after a table was written.
#[test]
fn iptables_save_options_match_the_real_tool() {
    skip_unless_able!();
    let ns = Netns::new().expect("namespace");
    let fake = FakeHost::new();
    let mut bad = Vec::new();
    let saves = [
        "iptables-save -t nat",
        "iptables-save -tnat",
        "iptables-save --table=raw",
        "iptables-save --tab filter",
        "iptables-save -c -t mangle",
        "iptables-save -ct security",
        "iptables-save -t foo",
        "iptables-save -t",
        "iptables-save --table",
        "iptables-save -x",
        "iptables-save --bogus",
        "iptables-save -t nat extra",
        "ip6tables-save -t filter",
        "ip6tables-save -t foo",
    ];
    let writes = [
        "iptables -w -N X",
        "iptables -w -t nat -A POSTROUTING -j MASQUERADE",
    ];
    for line in saves.iter().chain(writes.iter()).chain(saves.iter()) {
        let argv = words(line);
        let mut real = ns.run(&argv);
        let mut sim = fake.run(&Cmd::new(argv.clone())).unwrap();
        real.stdout = strip_comments(&real.stdout);
        sim.stdout = strip_comments(&sim.stdout);
        if real != sim {
            bad.push(format!("`{line}`\n   real: {real:?}\n   fake: {sim:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// QoS (libvirt's virNetDevBandwidthSet/Clear streams on a bridge, and
/// what a person types around them): every exit status, stdout and stderr
/// equal on the simulator and on the real `tc`. The simulator's
/// "QoS modules missing" switch is set to what this kernel has (the
/// reference kernel lacks sch_sfq, cls_fw and act_police: their commands
/// fail there, and the comparison then covers those failures; the listings
/// of sfq, fw and police cannot be compared on such a kernel).
#[test]
fn tc_qos_streams_match_the_real_tool() {
    skip_unless_able!();
    let ns = Netns::new().unwrap_or_else(|e| panic!("{e}"));
    let fake = FakeHost::new();
    let run_fake = |line: &str| {
        fake.run(&Cmd {
            argv: words(line).into(),
            stdin: None,
            env: Vec::new(),
        })
        .unwrap()
    };
    // Does this kernel have sch_sfq? (Probed on a throw-away dummy-free
    // bridge in the same namespace, then removed.)
    for l in [
        "ip link add probe0 type bridge",
        "tc qdisc add dev probe0 root handle 1: htb",
        "tc class add dev probe0 parent 1: classid 1:1 htb rate 1kbps",
    ] {
        assert!(ns.run(&words(l)).success(), "{l}");
    }
    let has_sfq = ns
        .run(&words("tc qdisc add dev probe0 parent 1:1 handle 2: sfq"))
        .success();
    assert!(ns.run(&words("ip link del probe0")).success());
    fake.set_tc_qos_modules_missing(!has_sfq);
    let script = [
        "ip link add virbr0 type bridge",
        "ip link set dev virbr0 up",
        // virNetDevBandwidthClear on a fresh bridge.
        "tc qdisc del dev virbr0 root",
        "tc qdisc del dev virbr0 ingress",
        "tc qdisc add dev virbr0 parent 1:2 handle 2: pfifo",
        // virNetDevBandwidthSet (hierarchical, swapped).
        "tc qdisc show dev virbr0 handle 1:",
        "tc qdisc add dev virbr0 root handle 1: htb default 2",
        "tc qdisc show dev virbr0 handle 1:",
        "tc qdisc add dev virbr0 parent 1:2 handle 2: pfifo",
        "tc class add dev virbr0 parent 1: classid 1:1 htb rate 1000kbps ceil 5000kbps quantum 85",
        "tc class add dev virbr0 parent 1:1 classid 1:2 htb rate 1000kbps ceil 5000kbps burst 1024kb quantum 85",
        "tc qdisc add dev virbr0 parent 1:2 handle 2: sfq perturb 10",
        "tc filter add dev virbr0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
        "tc qdisc add dev virbr0 ingress",
        "tc qdisc add dev virbr0 ingress",
        "tc filter add dev virbr0 parent ffff: protocol all u32 match u32 0 0 police rate 128kbps burst 128kb mtu 64kb drop flowid :1",
        "tc filter add dev virbr0 parent ffff: protocol all u32 match u32 0 0 flowid :1",
        "tc filter show dev virbr0 ingress",
        "tc qdisc show dev virbr0",
        "tc qdisc show",
        "tc class show dev virbr0",
        // A qdisc under a class, when sfq is missing: pfifo in its place.
        "tc qdisc add dev virbr0 parent 1:2 handle 2: pfifo",
        "tc qdisc add dev virbr0 parent 1:2 handle 2: pfifo",
        "tc qdisc add dev virbr0 parent 1:2 handle 3: pfifo",
        "tc qdisc add dev virbr0 parent 1:7 handle 3: pfifo",
        "tc qdisc show dev virbr0",
        "tc qdisc show dev virbr0 handle 2:",
        "tc filter add dev virbr0 parent 1:0 protocol all prio 1 u32 match u32 0 0 flowid :1",
        "tc filter show dev virbr0",
        // virNetDevBandwidthClear after a start, then again.
        "tc qdisc del dev virbr0 root",
        "tc qdisc del dev virbr0 ingress",
        "tc qdisc show dev virbr0",
        "tc class show dev virbr0",
        "tc filter show dev virbr0",
        "tc qdisc del dev virbr0 root",
        "tc qdisc del dev virbr0 ingress",
        // The journal's inverse of `tc filter add` on a bridge left as is.
        "tc qdisc add dev virbr0 ingress",
        "tc filter add dev virbr0 parent ffff: protocol all u32 match u32 0 0 flowid :1",
        "tc filter del dev virbr0 parent ffff: protocol all u32 match u32 0 0 flowid :1",
        "tc filter show dev virbr0 ingress",
        "ip link del virbr0",
    ];
    let mut bad = Vec::new();
    for line in script {
        let real = without_traffic_counters(ns.run(&words(line)));
        let sim = without_traffic_counters(run_fake(line));
        if real != sim {
            bad.push(format!("`{line}`\n   real: {real:?}\n   fake: {sim:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// `out` with the value of htb's `direct_packets_stat N` replaced by `N`.
///
/// It counts the packets that went through the root qdisc without a class:
/// it depends on the traffic the kernel itself sends on an up bridge (an
/// IPv6 or multicast packet, at a moment no command decides), not on the
/// commands. CI once saw 1 on the kernel where the simulator prints 0.
/// Every other word of the listing is still compared.
fn without_traffic_counters(mut out: virtnet_runner::Output) -> virtnet_runner::Output {
    let mut after_stat = false;
    out.stdout = out
        .stdout
        .split(' ')
        .map(|w| {
            let masked = after_stat && !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
            after_stat = w == "direct_packets_stat";
            if masked {
                "N"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    out
}
