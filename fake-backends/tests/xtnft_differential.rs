//! Differential test of the iptables-nft / nft bridge: scripted sequences
//! mixing `iptables`, `ip6tables` and `nft` commands (errors included) run
//! on the simulator and on the real tools inside a fresh network namespace
//! (`unshare -n`, entered with `nsenter`), comparing every command's exit
//! status, stdout and stderr (nft's "managed by iptables-nft" warnings),
//! and at the end `nft -a list ruleset`, `iptables-save` and
//! `ip6tables-save` (without their timestamp comments).
//!
//! Needs root and the real `unshare`, `nsenter`, `iptables` v1.8.9
//! (nf_tables), `ip6tables`, `nft` v1.0.6; otherwise each test prints
//! "skipped: <why>" and returns (set VIRTNET_REQUIRE_REAL=1 to make that a
//! failure instead).

use std::process::{Child, Command, Stdio};

use virtnet_core::runner::{Cmd, Output, RealRunner, Runner};
use virtnet_fake::FakeHost;

/// A throw-away network namespace held open by a `sleep` started with
/// `unshare -n`; dropped = the holder is killed (by its pid).
struct Netns {
    holder: Child,
}

impl Netns {
    fn new() -> Result<Netns, String> {
        let holder = Command::new("unshare")
            .args(["-n", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let ns = Netns { holder };
        let me = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        for _ in 0..200 {
            if let Ok(l) = std::fs::read_link(format!("/proc/{}/ns/net", ns.holder.id())) {
                if l != me {
                    return Ok(ns);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err("unshare -n did not create a namespace".into())
    }

    fn run(&self, argv: &[String]) -> Output {
        let mut full = vec![
            "nsenter".to_string(),
            "-t".to_string(),
            self.holder.id().to_string(),
            "-n".to_string(),
            "--".to_string(),
        ];
        full.extend(argv.iter().cloned());
        match RealRunner::new().run(&Cmd {
            argv: full,
            stdin: None,
        }) {
            Ok(o) => o,
            Err(e) => Output::failed(-1, e.to_string()),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for tool in [
        "unshare",
        "nsenter",
        "iptables",
        "ip6tables",
        "iptables-save",
        "ip6tables-save",
        "nft",
    ] {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|d| std::path::Path::new(d).join(tool).exists());
        if !found {
            return Some(format!("{tool} not found on PATH"));
        }
    }
    let v = Command::new("iptables").arg("-V").output().ok()?;
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    if !v.contains("v1.8.9 (nf_tables)") {
        return Some(format!(
            "the simulator models iptables v1.8.9 (nf_tables), host has {}",
            v.trim()
        ));
    }
    let v = Command::new("nft").arg("-v").output().ok()?;
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    if !v.contains("v1.0.6") {
        return Some(format!(
            "the simulator models nft v1.0.6, host has {}",
            v.trim()
        ));
    }
    None
}

macro_rules! skip_unless_able {
    () => {
        if let Some(why) = skip_reason() {
            if std::env::var_os("VIRTNET_REQUIRE_REAL").is_some() {
                panic!("real tools required: {why}");
            }
            println!("skipped: {why}");
            return;
        }
    };
}

fn words(line: &str) -> Vec<String> {
    virtnet_fake::record::shell_words(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn strip_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
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
                argv: argv.clone(),
                stdin: None,
            })
            .unwrap_or_else(|e| Output::failed(-1, e.to_string()));
        if real != sim {
            bad.push(format!(
                "{name}: `{line}`\n   real: {real:?}\n   fake: {sim:?}\n{}{}",
                virtnet_fake::diff_text(&real.stdout, &sim.stdout, "real stdout", "fake stdout"),
                virtnet_fake::diff_text(&real.stderr, &sim.stderr, "real stderr", "fake stderr")
            ));
        }
    }
    for argv in [
        &["nft", "-a", "list", "ruleset"][..],
        &["iptables-save"][..],
        &["ip6tables-save"][..],
    ] {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let real = ns.run(&argv);
        let sim = fake
            .run(&Cmd {
                argv: argv.clone(),
                stdin: None,
            })
            .unwrap_or_else(|e| Output::failed(-1, e.to_string()));
        let (r, s) = (
            strip_comments(&real.stdout) + &real.stderr,
            strip_comments(&sim.stdout) + &sim.stderr,
        );
        if r != s {
            bad.push(format!(
                "{name}: final `{}` differs:\n{}",
                argv.join(" "),
                virtnet_fake::diff_text(&r, &s, "real", "fake")
            ));
        }
    }
    bad
}

fn assert_same(name: &str, script: &[&str]) {
    let bad = differential(name, script);
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    println!("{name}: {} commands agree", script.len());
}

/// The sequence a libvirt NAT network start produces, interleaved with nft
/// tables of other families and listings of every kind.
#[test]
fn libvirt_like_sequence_with_nft_tables_in_between() {
    skip_unless_able!();
    assert_same(
        "libvirt-like",
        &[
            "nft list ruleset",
            "iptables -w -N LIBVIRT_INP",
            "iptables -w -A LIBVIRT_INP -i virbr0 -p udp --dport 53 -j ACCEPT",
            "iptables -w -I INPUT -j LIBVIRT_INP",
            "nft -a list ruleset",
            "iptables -t nat -A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535",
            "ip6tables -N X",
            "nft -a list ruleset",
            "nft add table inet foo",
            "nft add chain inet foo c { type filter hook input priority 0 ; }",
            "nft -a list ruleset",
            "ip6tables -I INPUT -j X",
            "iptables -w -t mangle -N LIBVIRT_PRT",
            "iptables -w -t mangle -I POSTROUTING -j LIBVIRT_PRT",
            "iptables -w -t mangle -A LIBVIRT_PRT -o virbr0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill",
            "nft add table ip libvirt_network",
            "nft list tables",
            "nft list tables ip",
            "nft list table ip filter",
            "nft -a list table ip nat",
            "nft list table ip6 filter",
            "nft list table ip mangle",
            "nft list chain ip filter INPUT",
            "nft -a list chain ip nat POSTROUTING",
            "nft list chain ip filter NOPE",
            "nft list table ip raw",
            "nft list chains",
            "nft list ruleset ip",
            "nft list ruleset ip6",
            "nft -a list ruleset",
        ],
    );
}

/// The translation of every match and target the simulator accepts.
#[test]
fn rule_translations_match_the_real_tools() {
    skip_unless_able!();
    assert_same(
        "translations",
        &[
            "iptables -w -N T",
            "iptables -w -A T -i virbr0 -p udp --dport 53 -j ACCEPT",
            "iptables -w -A T -i virbr0 -p tcp --dport 67:68 -j ACCEPT",
            "iptables -w -A T -p tcp --sport 1024:65535 -j ACCEPT",
            "iptables -w -A T -p tcp ! --dport 22 -j DROP",
            "iptables -w -A T -p tcp --dport 22 --sport 5 -j ACCEPT",
            "iptables -w -A T -p tcp -m tcp -j ACCEPT",
            "iptables -w -A T -p udp -m udp --dport 53 -m comment --comment a -j ACCEPT",
            "iptables -w -A T -m comment --comment x -i eth0 -p tcp --dport 5 -j ACCEPT",
            "iptables -w -A T -i eth0 -m comment --comment \"hello world\" -j ACCEPT",
            "iptables -w -A T -m comment --comment hi",
            "iptables -w -A T -p icmp -j ACCEPT",
            "iptables -w -A T -p all -j ACCEPT",
            "iptables -w -A T ! -p tcp -j ACCEPT",
            "iptables -w -A T -p sctp -j ACCEPT",
            "iptables -w -A T -p esp -j ACCEPT",
            "iptables -w -A T -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "iptables -w -A T -m conntrack ! --ctstate INVALID -j ACCEPT",
            "iptables -w -A T -m conntrack --ctstate NEW,INVALID,UNTRACKED -j ACCEPT",
            "iptables -w -A T -m conntrack ! --ctstate NEW,INVALID -j ACCEPT",
            "iptables -w -A T -m conntrack --ctstate SNAT -j ACCEPT",
            "iptables -w -A T -m state --state NEW -j ACCEPT",
            "iptables -w -A T -m state ! --state NEW -j ACCEPT",
            "iptables -w -A T -j REJECT",
            "iptables -w -A T -j REJECT --reject-with icmp-host-prohibited",
            "iptables -w -A T -p tcp -j REJECT --reject-with tcp-reset",
            "iptables -w -A T -j REJECT --reject-with icmp-net-unreachable",
            "iptables -w -A T -j REJECT --reject-with icmp-proto-unreachable",
            "iptables -w -A T -j REJECT --reject-with icmp-admin-prohibited",
            "iptables -w -A T -j REJECT --reject-with icmp-port-unreachable",
            "iptables -w -A T -j RETURN",
            "iptables -w -A T -s 10.0.0.1 -j ACCEPT",
            "iptables -w -A T ! -s 10.0.0.0/8 -d 10.1.0.0/16 -j ACCEPT",
            "iptables -w -A T -s 10.0.0.0/255.0.255.0 -j ACCEPT",
            "iptables -w -A T ! -s 10.0.0.0/255.0.255.0 -j ACCEPT",
            "iptables -w -A T -d 224.0.0.0/24 -j RETURN",
            "iptables -w -A T -d 255.255.255.255 -j RETURN",
            "iptables -w -A T ! -i eth0 -o eth+ -j ACCEPT",
            "iptables -w -A T -p tcp -m multiport --dports 22,80,1000:2000 -j ACCEPT",
            "iptables -w -A T -p udp -m multiport --sports 53 -j ACCEPT",
            "iptables -w -A T -p tcp -m multiport ! --dports 22,80 -j ACCEPT",
            "iptables -w -A T -p tcp -m multiport --ports 22,80 -j ACCEPT",
            "iptables -w -A T -m addrtype --dst-type LOCAL -j ACCEPT",
            "iptables -w -A T -m addrtype ! --dst-type LOCAL -j ACCEPT",
            "iptables -w -A T -m addrtype --src-type LOCAL --dst-type UNICAST -j ACCEPT",
            "iptables -w -A T -f -j DROP",
            "iptables -w -A T ! -f -j DROP",
            "iptables -w -A T -j LOG",
            "iptables -w -A T -j LOG --log-prefix \"foo: \"",
            "iptables -w -A T -j LOG --log-level 6 --log-prefix x",
            "iptables -w -A T -j LOG --log-level 0",
            "iptables -w -N G",
            "iptables -w -A T -g G",
            "iptables -w -A T -j G",
            "iptables -w -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.2:8080",
            "iptables -w -t nat -A PREROUTING -j DNAT --to-destination 10.0.0.2",
            "iptables -w -t nat -A POSTROUTING -s 10.0.0.0/8 -j SNAT --to-source 1.2.3.4",
            "iptables -w -t nat -A POSTROUTING -s 10.0.0.0/8 -p udp -j SNAT --to-source 1.2.3.4:1024-65535",
            "iptables -w -t nat -A POSTROUTING -j SNAT --to-source 1.2.3.4-1.2.3.9",
            "iptables -w -t nat -A POSTROUTING -j MASQUERADE",
            "iptables -w -t nat -A POSTROUTING -p udp -j MASQUERADE --to-ports 1024-65535",
            "iptables -w -t nat -A POSTROUTING -p tcp -j MASQUERADE --to-ports 80",
            "iptables -w -t nat -A POSTROUTING -j MASQUERADE --random",
            "iptables -w -t nat -A POSTROUTING -j MASQUERADE --random-fully",
            "iptables -w -t nat -A POSTROUTING -p tcp -j MASQUERADE --to-ports 100-200 --random",
            "iptables -w -t mangle -A POSTROUTING -p udp --dport 68 -j CHECKSUM --checksum-fill",
            "iptables -w -t raw -A PREROUTING -j ACCEPT",
            "iptables -w -t security -A INPUT -j ACCEPT",
            "iptables -w -t nat -A OUTPUT -j ACCEPT",
            "iptables -w -t nat -A INPUT -j ACCEPT",
            "iptables -w -t mangle -A OUTPUT -j ACCEPT",
            "ip6tables -w -N T6",
            "ip6tables -w -A T6 -j REJECT",
            "ip6tables -w -A T6 -j REJECT --reject-with icmp6-adm-prohibited",
            "ip6tables -w -A T6 -j REJECT --reject-with icmp6-no-route",
            "ip6tables -w -A T6 -j REJECT --reject-with icmp6-addr-unreachable",
            "ip6tables -w -A T6 -p tcp -j REJECT --reject-with tcp-reset",
            "ip6tables -w -A T6 -p icmpv6 -j ACCEPT",
            "ip6tables -w -A T6 -s fd00::/64 -i eth0 -p tcp --dport 53 -j ACCEPT",
            "ip6tables -w -A T6 -d fd00::1 -j ACCEPT",
            "ip6tables -w -A T6 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "ip6tables -w -t nat -A POSTROUTING -s fd00::/64 ! -d fd00::/64 -j MASQUERADE",
            "ip6tables -w -t nat -A POSTROUTING -p udp -j MASQUERADE --to-ports 1024-65535",
            "ip6tables -w -t nat -A POSTROUTING -j SNAT --to-source fd00::1",
            "ip6tables -w -t mangle -A POSTROUTING -p udp --dport 547 -j CHECKSUM --checksum-fill",
            "nft list ruleset",
        ],
    );
}

/// Handles and ordering under every iptables command that changes chains
/// and rules, interleaved with nft's own tables.
#[test]
fn handles_follow_the_kernel() {
    skip_unless_able!();
    assert_same(
        "handles",
        &[
            "ip6tables -N A6",
            "nft add table inet t",
            "iptables -N X",
            "iptables -A X -j ACCEPT",
            "iptables -A X -j DROP",
            "iptables -R X 1 -j RETURN",
            "iptables -I X 2 -j ACCEPT",
            "iptables -I X 9 -j ACCEPT",
            "iptables -R X 9 -j ACCEPT",
            "nft -a list ruleset",
            "iptables -P FORWARD DROP",
            "iptables -Z INPUT",
            "iptables -F",
            "iptables -t nat -F",
            "iptables -Z FORWARD",
            "nft -a list ruleset",
            "iptables -E X Y",
            "iptables -A Y -j ACCEPT",
            "iptables -X",
            "iptables -F Y",
            "iptables -X",
            "iptables -F OUTPUT",
            "iptables -D INPUT 1",
            "iptables -A INPUT -j ACCEPT",
            "iptables -D INPUT -j ACCEPT",
            "nft -a list ruleset",
            "nft delete table inet t",
            "iptables -t mangle -A OUTPUT -j ACCEPT",
            "iptables -t mangle -A PREROUTING -j ACCEPT",
            "ip6tables -t nat -P POSTROUTING DROP",
            "nft add table ip t2",
            "nft -a list ruleset",
        ],
    );
}

/// nft commands acting on iptables-nft's tables, and what iptables sees
/// afterwards.
#[test]
fn nft_changes_to_iptables_tables_show_in_iptables() {
    skip_unless_able!();
    let setup = [
        "iptables -N X",
        "iptables -A X -i eth0 -j ACCEPT",
        "iptables -A X -j DROP",
        "iptables -A INPUT -j X",
        "iptables -t nat -A POSTROUTING -j MASQUERADE",
        "ip6tables -A INPUT -j REJECT",
    ];
    let cases: &[&[&str]] = &[
        &["nft delete rule ip filter X handle 2", "iptables -S"],
        &["nft delete rule ip filter X handle 99", "iptables -S"],
        &["nft flush chain ip filter X", "iptables -S"],
        &["nft delete chain ip filter X", "iptables -S"],
        &[
            "nft delete chain ip filter INPUT",
            "iptables -S",
            "iptables -A INPUT -j ACCEPT",
        ],
        &[
            "nft flush chain ip filter INPUT",
            "nft delete chain ip filter INPUT",
            "iptables -S",
        ],
        &[
            "nft flush table ip filter",
            "iptables -S",
            "nft list ruleset",
        ],
        &[
            "nft delete table ip filter",
            "iptables -S",
            "iptables -A INPUT -j ACCEPT",
        ],
        &[
            "nft delete table ip6 filter",
            "ip6tables -S",
            "nft list ruleset",
        ],
        &[
            "nft flush ruleset",
            "iptables -S",
            "ip6tables -S",
            "iptables -N X",
        ],
        &[
            "nft add chain ip filter Z",
            "iptables -S",
            "iptables -A Z -j ACCEPT",
        ],
        &[
            "nft add chain ip filter OUTPUT { type filter hook output priority 0 ; }",
            "iptables -S",
            "iptables -A OUTPUT -j ACCEPT",
        ],
        &[
            "nft flush table ip nat",
            "nft list table ip nat",
            "iptables -t nat -S",
        ],
        &["nft list ruleset", "nft -a list table ip6 filter"],
        &[
            "nft add rule ip filter X tcp dport 22 accept",
            "nft insert rule ip filter X iifname != \"eth*\" oifname br0 counter accept",
            "nft add rule ip filter X ip saddr 10.0.0.0/8 ip daddr != 10.1.2.3 return",
            "nft add rule ip filter X meta l4proto udp accept",
            "nft add rule ip filter X meta l4proto != tcp accept",
            "nft add rule ip filter X udp sport 1-5 udp dport != 53 accept",
            "nft add rule ip filter INPUT accept comment '\"hi there\"'",
            "nft add rule ip filter INPUT ip protocol tcp accept",
            "nft add rule ip filter INPUT ip saddr 10.0.0.1 tcp dport 22 iifname eth0 accept",
            "nft add rule ip filter INPUT counter",
            "nft add rule ip filter INPUT meta l4proto tcp tcp sport 5 drop",
            "iptables -S",
            "iptables -L -n",
            "iptables -D X -p tcp --dport 22 -j ACCEPT",
            "iptables -D INPUT 2",
            "nft -a list table ip filter",
            "ip6tables -N Y",
            "nft add rule ip6 filter Y ip6 saddr fd00::/64 tcp dport 22 accept",
            "nft add rule ip6 filter INPUT iifname eth0 jump Y",
            "ip6tables -S",
            "ip6tables -E Y Z",
            "nft list table ip6 filter",
        ],
    ];
    let mut bad = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut script: Vec<&str> = setup.to_vec();
        script.extend_from_slice(c);
        bad.extend(differential(&format!("nft-on-xt-{i}"), &script));
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Errors and re-creation across the two tools: nft errors on iptables
/// objects, iptables after nft removed its chains and tables, renames and
/// an ip6 NAT table listed before the ip one.
#[test]
fn mixed_errors_and_recreation() {
    skip_unless_able!();
    assert_same(
        "mixed",
        &[
            "ip6tables -w -t nat -A POSTROUTING -s fd00::/64 -j MASQUERADE",
            "iptables -w -t nat -N LIBVIRT_PRT",
            "iptables -w -t nat -I POSTROUTING -j LIBVIRT_PRT",
            "iptables -w -t nat -A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE",
            "iptables -w -t nat -A LIBVIRT_PRT -s 192.168.122.0/24 -d 255.255.255.255 -j RETURN",
            "nft list ruleset",
            "nft -a list ruleset",
            "nft list table ip nat",
            "nft list table ip6 nat",
            "nft list chain ip nat LIBVIRT_PRT",
            "nft delete rule ip nat LIBVIRT_PRT handle 1",
            "nft delete chain ip nat LIBVIRT_PRT",
            "nft delete chain ip nat NOPE",
            "nft delete table ip raw",
            "nft flush chain ip nat LIBVIRT_PRT",
            "iptables -w -t nat -D LIBVIRT_PRT 1",
            "iptables -w -t nat -S",
            "iptables -w -t nat -E LIBVIRT_PRT LIBVIRT_NEW",
            "nft -a list chain ip nat LIBVIRT_NEW",
            "nft delete chain ip nat POSTROUTING",
            "iptables -w -t nat -Z POSTROUTING",
            "iptables -w -t nat -S POSTROUTING",
            "iptables -w -t nat -L -n",
            "iptables -w -t nat -P POSTROUTING ACCEPT",
            "nft add chain ip nat EXTRA",
            "iptables -w -t nat -S",
            "iptables -w -t nat -X EXTRA",
            "iptables -w -t nat -X",
            "nft delete table ip6 nat",
            "ip6tables -w -t nat -S",
            "ip6tables -w -t nat -A POSTROUTING -j MASQUERADE",
            "nft -a list ruleset",
            "nft flush ruleset",
            "iptables -w -t nat -S",
            "iptables -w -A INPUT -j ACCEPT",
            "nft -a list ruleset",
        ],
    );
}

/// `-X` as iptables-nft 1.8.9 does it: one batch (a busy chain deletes
/// nothing), empty builtin chains with policy ACCEPT go too.
#[test]
fn delete_chain_also_removes_empty_builtin_chains() {
    skip_unless_able!();
    assert_same(
        "delete-chain",
        &[
            "iptables -N A",
            "iptables -N B",
            "iptables -N C",
            "iptables -A INPUT -j B",
            "iptables -P FORWARD ACCEPT",
            "iptables -P OUTPUT DROP",
            "iptables -X",
            "nft -a list ruleset",
            "iptables -D INPUT -j B",
            "iptables -X OUTPUT",
            "iptables -X FORWARD",
            "iptables -X PREROUTING",
            "iptables -X",
            "nft -a list ruleset",
            "iptables -S",
            "iptables -X INPUT",
            "iptables -X FORWARD",
            "iptables -A INPUT -j ACCEPT",
            "iptables -X INPUT",
            "iptables -F INPUT",
            "iptables -X INPUT",
            "iptables -L -n",
            "nft -a list ruleset",
        ],
    );
}

/// Hand-typed matches and targets beyond libvirt's: icmp/icmpv6 types,
/// tcp flags, mark and MARK, with their errors, in `-S`, `-L`, `-L -n`
/// and nft's listing.
#[test]
fn hand_typed_icmp_tcp_flags_and_marks() {
    skip_unless_able!();
    assert_same(
        "hand-typed",
        &[
            "iptables -A INPUT -p icmp --icmp-type echo-request -j ACCEPT",
            "iptables -A INPUT -p icmp --icmp-type 8 -j ACCEPT",
            "iptables -A INPUT -p icmp --icmp-type 3/4",
            "iptables -A INPUT -p icmp --icmp-type any",
            "iptables -A INPUT -p icmp ! --icmp-type echo-reply",
            "iptables -A INPUT -p icmp -m icmp --icmp-type destination-unreachable",
            "iptables -A INPUT -p icmp --icmp-type 11",
            "iptables -A INPUT -p icmp --icmp-type host-unreachable",
            "iptables -A INPUT -p icmp --icmp-type 42",
            "iptables -A INPUT -p icmp --icmp-type ping",
            "iptables -A INPUT -p icmp --icmp-type source-quench",
            "iptables -A INPUT -p icmp --icmp-type redirect",
            "iptables -A INPUT -p icmp --icmp-type router-advertisement",
            "iptables -A INPUT -p icmp --icmp-type router-solicitation",
            "iptables -A INPUT -p icmp --icmp-type parameter-problem",
            "iptables -A INPUT -p icmp --icmp-type timestamp-request",
            "iptables -A INPUT -p icmp --icmp-type timestamp-reply",
            "iptables -A INPUT -p icmp --icmp-type address-mask-request",
            "iptables -A INPUT -p icmp --icmp-type address-mask-reply",
            "iptables -A INPUT -p icmp --icmp-type foo",
            "iptables -A INPUT --icmp-type 8",
            "iptables -A INPUT -p tcp --syn -j ACCEPT",
            "iptables -A INPUT -p tcp ! --syn -j ACCEPT",
            "iptables -A INPUT -p tcp --tcp-flags SYN,ACK SYN -j ACCEPT",
            "iptables -A INPUT -p tcp --tcp-flags syn,ack syn",
            "iptables -A INPUT -p tcp --tcp-flags ALL NONE -j DROP",
            "iptables -A INPUT -p tcp ! --tcp-flags ALL NONE -j DROP",
            "iptables -A INPUT -p tcp --tcp-flags ALL ALL -j DROP",
            "iptables -A INPUT -p tcp --dport 22 --tcp-flags SYN,RST SYN",
            "iptables -A INPUT -p tcp --syn --dport 22",
            "iptables -A INPUT -p tcp --tcp-flags SYN",
            "iptables -A INPUT -p tcp --tcp-flags FOO SYN",
            "iptables -A INPUT -m mark --mark 0x1 -j ACCEPT",
            "iptables -A INPUT -m mark ! --mark 5/0xff -j ACCEPT",
            "iptables -A INPUT -m mark --mark 0x10/0x10",
            "iptables -A INPUT -m mark --mark foo",
            "iptables -t mangle -A PREROUTING -j MARK --set-mark 5",
            "iptables -t mangle -A PREROUTING -j MARK --set-mark 0x5/0xff",
            "iptables -t mangle -A PREROUTING -j MARK --set-xmark 0x1/0xffffffff",
            "iptables -t mangle -A PREROUTING -j MARK --and-mark 0xf",
            "iptables -t mangle -A PREROUTING -j MARK --or-mark 0x2",
            "iptables -t mangle -A PREROUTING -j MARK --xor-mark 3",
            "iptables -t mangle -A PREROUTING -m mark --mark 0x1 -j MARK --set-mark 0x2",
            "iptables -t mangle -A PREROUTING -j MARK",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type echo-request -j ACCEPT",
            "ip6tables -A INPUT -p ipv6-icmp --icmpv6-type 129",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type neighbour-solicitation",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 1",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 1/3",
            "ip6tables -A INPUT -p icmpv6 ! --icmpv6-type 129",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 2",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 3",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 4",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 133",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 134",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 136",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 137",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type 143",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type no-route",
            "ip6tables -A INPUT -p icmpv6 --icmpv6-type foo",
            "iptables -S",
            "iptables -L",
            "iptables -L -n",
            "iptables -t mangle -S",
            "iptables -t mangle -L",
            "iptables -t mangle -L -n",
            "ip6tables -S",
            "ip6tables -L",
            "ip6tables -L -n",
            "iptables -D INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
            "iptables -D INPUT -p icmp --icmp-type ping -j ACCEPT",
            "nft list ruleset",
        ],
    );
}

/// xorshift64*: small, deterministic, good enough to pick words.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// One random command of the mixed vocabulary.
fn random_command(r: &mut Rng) -> String {
    const CHAINS: &[&str] = &["INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "C1", "C2"];
    const USER: &[&str] = &["C1", "C2", "C3"];
    const RULES: &[&str] = &[
        "-j ACCEPT",
        "-i virbr0 -p udp --dport 53 -j ACCEPT",
        "-s 10.0.0.0/8 -j RETURN",
        "-j C1",
        "-j C2",
        "-p tcp -j REJECT",
        "-m conntrack --ctstate NEW -j DROP",
        "-m comment --comment x",
        "-j MASQUERADE",
        "-o virbr0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill",
        "-p icmp --icmp-type echo-request -j ACCEPT",
        "-p tcp --syn -j DROP",
        "-m mark --mark 0x1 -j MARK --set-mark 2",
        "-p tcp -m multiport --dports 22,80 -j LOG --log-prefix x",
        "-d 224.0.0.0/24 -j SNAT --to-source 1.2.3.4",
    ];
    const TABLES: &[&str] = &["filter", "filter", "nat", "mangle"];
    const NFT: &[&str] = &[
        "nft list ruleset",
        "nft -a list ruleset",
        "nft list tables",
        "nft add table inet x",
        "nft delete table inet x",
        "nft flush ruleset",
    ];
    let prog = r.pick(&["iptables", "iptables", "ip6tables", "nft"]);
    if prog == "nft" {
        let fam = r.pick(&["ip", "ip", "ip6"]);
        let table = r.pick(TABLES);
        let chain = r.pick(CHAINS);
        let h = r.next() % 12 + 1;
        return match r.next() % 12 {
            0 => r.pick(NFT).to_string(),
            1 => format!("nft -a list table {fam} {table}"),
            2 => format!("nft delete rule {fam} {table} {chain} handle {h}"),
            3 => format!("nft flush chain {fam} {table} {chain}"),
            4 => format!("nft delete chain {fam} {table} {chain}"),
            5 => format!("nft flush table {fam} {table}"),
            6 => format!("nft delete table {fam} {table}"),
            7 => format!("nft add chain {fam} {table} {}", r.pick(USER)),
            10 => format!(
                "nft add rule {fam} {table} {chain} {}",
                // (Rules iptables cannot read back, like `ct state`, are not
                // simulated: see xtnft_bridge.rs.)
                r.pick(&[
                    "tcp dport 22 accept",
                    "iifname eth0 counter drop",
                    "jump C1"
                ])
            ),
            11 => format!("nft insert rule {fam} {table} {chain} meta l4proto udp return"),
            8 => format!("nft list chain {fam} {table} {chain}"),
            _ => "nft -a list ruleset".to_string(),
        };
    }
    let table = r.pick(TABLES);
    let chain = r.pick(CHAINS);
    let rule = r.pick(RULES);
    let n = r.next() % 3 + 1;
    let cmd = match r.next() % 15 {
        0 => format!("-N {}", r.pick(USER)),
        1 => format!("-X {}", r.pick(&["", "C1", "C2", "C3", "INPUT"])),
        2 => format!("-F {}", r.pick(&["", "C1", "INPUT", "POSTROUTING"])),
        3 | 4 => format!("-A {chain} {rule}"),
        5 => format!("-I {chain} {n} {rule}"),
        6 => format!("-D {chain} {n}"),
        7 => format!("-D {chain} {rule}"),
        8 => format!("-R {chain} {n} {rule}"),
        9 => format!("-P {chain} {}", r.pick(&["ACCEPT", "DROP"])),
        10 => format!("-E {} {}", r.pick(USER), r.pick(USER)),
        11 => format!("-C {chain} {rule}"),
        12 => format!("-L {} -n", r.pick(&["", "C1", "INPUT"])),
        13 => format!("-Z {}", r.pick(&["", "C1", "INPUT"])),
        _ => format!("-S {}", r.pick(&["", "C1", "INPUT"])),
    };
    format!("{prog} -w -t {table} {cmd}")
}

/// Random but reproducible sequences mixing all three tools (fixed seeds,
/// printed on failure; XTNFT_DIFF_SEEDS=N tries N more).
#[test]
fn random_mixed_sequences() {
    skip_unless_able!();
    let extra: u64 = std::env::var("XTNFT_DIFF_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut bad = Vec::new();
    let mut n = 0;
    for seed in (1..=12).chain(1000..1000 + extra) {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let script: Vec<String> = (0..40).map(|_| random_command(&mut r)).collect();
        let refs: Vec<&str> = script.iter().map(String::as_str).collect();
        n += refs.len();
        bad.extend(differential(&format!("seed {seed}"), &refs));
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    println!("{n} random commands agree");
}
