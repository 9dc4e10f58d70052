//! Issue 14, items 1-4 on the simulated host: nothing a user writes can add,
//! remove or hide a rule it did not ask for. Interface names, network
//! names and character references are refused at define time and when a
//! config or status file is loaded (so a start of such a network is
//! impossible), and the nft guard passes every command the generators make
//! from valid definitions while refusing hostile arguments.

mod driver_common;

use std::path::Path;

use driver_common::*;
use proptest::prelude::*;
use virtnet_core::firewall::{
    check_nft_argument, check_nft_argv, Backend, Firewall, HandleMode, Layer, RecordingRunner,
};
use virtnet_core::netxml;
use virtnet_core::rules::{self, golden::load_case, ChainInitState};
use virtnet_core::store::{ConfigStore, StatusStore};

const GOOD: &str = "<network>\n  <name>hostile</name>\n  <forward mode='nat' dev='eth0'/>\n  <bridge name='virbr5'/>\n  <ip address='10.5.0.1' prefix='24'/>\n</network>\n";

fn nft_ruleset(env: &Env) -> String {
    let out = env
        .host
        .exec(&["nft", "list", "ruleset"], None)
        .expect("nft list ruleset");
    out.stdout
}

#[test]
fn define_refuses_hostile_names_and_changes_nothing() {
    let env = Env::new();
    env.host
        .exec(&["nft", "add", "table", "inet", "foreign"], None)
        .unwrap();
    let d = env.driver(Backend::Nftables);
    let before = env.state();
    let cases: &[(&str, &str)] = &[
        (
            "<network><name>n</name><forward mode='nat' dev='eth0 ; flush ruleset'/><ip address='10.6.0.1' prefix='24'/></network>",
            "1:44: invalid interface name 'eth0 ; flush ruleset' in <forward dev>: an interface name cannot contain a space (at /network/forward[1]/@dev)",
        ),
        (
            "<network><name>n</name>\n<bridge name='br;x'/></network>",
            "2:9: invalid interface name 'br;x' in <bridge name>: an interface name cannot contain ';' (at /network/bridge[1]/@name)",
        ),
        (
            "<network><name>n</name><forward mode='bridge'><interface dev='a{'/></forward></network>",
            "invalid interface name 'a{' in <interface dev>",
        ),
        (
            "<network><name>n</name><forward mode='passthrough'><pf dev='0123456789abcdef'/></forward></network>",
            "an interface name has at most 15 bytes, this one has 16 (at /network/forward[1]/pf[1]/@dev)",
        ),
        ("<network><name>.hidden</name></network>", "invalid network name '.hidden': it must not start with '.'"),
        ("<network><name>..</name></network>", "must not start with '.'"),
        ("<network><name>a&#13;b</name></network>", "invalid char in name: U+000D"),
        ("<network><name>a\tb</name></network>", "invalid char in name: U+0009"),
        ("<network><name>a\u{7f}b</name></network>", "invalid char in name: U+007F"),
        ("<network><name>a\u{85}b</name></network>", "invalid char in name: U+0085"),
        (
            "<network><name>n</name><domain name='a&#1;b'/></network>",
            "1:32: invalid XML character U+0001 (xmlParseCharRef: invalid xmlChar value 1) in attribute 'name'",
        ),
        ("<network><name>n</name><domain name='a&#11;b'/></network>", "xmlParseCharRef: invalid xmlChar value 11"),
        ("<network><name>n</name><domain name='a&#x0C;b'/></network>", "xmlParseCharRef: invalid xmlChar value 12"),
        (
            "<network><name>n</name><dns><txt name='a' value='x&quot;y'/></dns></network>",
            r#"1:43: <txt value> 'x\"y' cannot be written to dnsmasq's configuration: it contains '"', which dnsmasq reads as quoting (at /network/dns[1]/txt[1]/@value)"#,
        ),
        (
            "<network><name>n</name><domain name='a&#10;dhcp-script=/x'/></network>",
            r"<domain name> 'a\ndhcp-script=/x' cannot be written to dnsmasq's configuration: it contains a line break",
        ),
        (
            "<network><name>n</name><ip address='10.0.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01 x' ip='10.0.0.5'/></dhcp></ip></network>",
            "it contains whitespace, which separates fields in dnsmasq's hosts files (at /network/ip[1]/dhcp[1]/host[1]/@mac)",
        ),
    ];
    for (xml, want) in cases {
        let e = d.define(xml).expect_err(xml).to_string();
        assert!(e.contains(want), "{xml}\n got: {e}\nwant: {want}");
    }
    assert!(d.list().is_empty());
    assert!(!env.config_dir().join(".hidden.xml").exists());
    assert_same_host(&before, &env.state(), "after refused defines");
    assert!(nft_ruleset(&env).contains("table inet foreign"));
}

/// A config file written by hand (or by an older tool) with a hostile name
/// is not loaded: the daemon says which file, line, column, element and
/// attribute, and the network can never be started.
#[test]
fn config_file_with_hostile_dev_is_refused_when_loaded() {
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    let path = env.config_dir().join("hostile.xml");
    std::fs::write(&path, GOOD.replace("dev='eth0'", "dev='eth0;flush'")).unwrap();
    let e = ConfigStore::load_file(&path)
        .expect_err("bad config")
        .to_string();
    // FILE:LINE:COL: first, as every error into a file.
    assert!(e.starts_with(&format!("{}:3:23: ", path.display())), "{e}");
    assert!(
        e.contains("invalid interface name 'eth0;flush' in <forward dev>: an interface name cannot contain ';' (at /network/forward[1]/@dev)"),
        "{e}"
    );
    env.host
        .exec(&["nft", "add", "table", "inet", "foreign"], None)
        .unwrap();
    let before = env.state();
    let d = env.driver(Backend::Nftables);
    assert!(d.list().is_empty());
    assert!(d.start("hostile").is_err());
    assert_same_host(&before, &env.state(), "after the refused start");
}

#[test]
fn status_file_with_hostile_names_is_refused_when_loaded() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(GOOD).unwrap();
    d.start("hostile").unwrap();
    drop(d);
    let path = env.state_dir().join("hostile.xml");
    let good = std::fs::read_to_string(&path).unwrap();
    assert!(StatusStore::load_file(&path).is_ok());
    for (from, to, want) in [
        (
            "name='virbr5'",
            "name='virbr5 }'",
            "invalid interface name 'virbr5 }' in <bridge name>",
        ),
        (
            "dev='eth0'",
            "dev='eth0&#10;x'",
            "invalid interface name 'eth0\\nx' in <forward dev>",
        ),
        (
            "<name>hostile</name>",
            "<name>.hostile</name>",
            "must not start with '.'",
        ),
        (
            "<name>hostile</name>",
            "<name>host&#1;ile</name>",
            "xmlParseCharRef: invalid xmlChar value 1",
        ),
    ] {
        assert!(good.contains(from), "{from}");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let e = StatusStore::load_file(&path).expect_err(to).to_string();
        assert!(e.contains(want), "{to}: {e}");
        assert!(e.starts_with(&path.display().to_string()), "{e}");
    }
}

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden")
}

fn nft_argvs_ok(argvs: &[Vec<String>], what: &str) -> usize {
    let mut n = 0;
    for argv in argvs
        .iter()
        .filter(|a| a.first().is_some_and(|b| b == "nft"))
    {
        if let Err(e) = check_nft_argv(argv) {
            panic!("{what}: {e}");
        }
        n += 1;
    }
    n
}

fn plan_argvs(fw: &Firewall) -> Vec<Vec<String>> {
    fw.groups()
        .iter()
        .flat_map(|g| g.actions().iter().chain(g.rollbacks()))
        .filter(|c| c.layer() != Layer::Tc)
        .map(|c| {
            let mut v = vec!["nft".to_string()];
            v.extend(c.args().iter().cloned());
            v
        })
        .collect()
}

/// Every nft command the generators make from the golden cases (private
/// chains included), every command of their removal plans and of the
/// blessed removal plans on disk passes the guard.
#[test]
fn guard_passes_every_generated_nft_command() {
    let mut checked = 0;
    let cases = golden_dir().join("cases");
    let mut names: Vec<_> = std::fs::read_dir(&cases)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    names.sort();
    assert!(names.len() >= 30);
    for case in &names {
        let xml = std::fs::read_to_string(case).unwrap();
        let mut def = load_case(&xml).unwrap();
        let runner = RecordingRunner::with_handles(HandleMode::Counter(1));
        let mut chains = ChainInitState::new();
        let what = case.display().to_string();
        let Ok(removal) =
            rules::add_network_firewall(&mut def, Backend::Nftables, &runner, &mut chains)
        else {
            continue;
        };
        checked += nft_argvs_ok(&runner.argvs(), &what);
        if let Some(plan) = removal {
            checked += nft_argvs_ok(&plan_argvs(&plan), &what);
        }
    }
    for e in std::fs::read_dir(golden_dir().join("releases/unreleased"))
        .unwrap()
        .flatten()
    {
        let p = e.path().join("nftables.removal.xml");
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let plan = Firewall::parse_xml(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        checked += nft_argvs_ok(&plan_argvs(&plan), &p.display().to_string());
    }
    println!("{checked} nft commands checked");
    assert!(checked > 500, "only {checked}");
}

#[test]
fn guard_refuses_the_classics() {
    for bad in [
        "eth0 ; flush ruleset",
        "eth0;flush",
        "eth0\nflush ruleset",
        "eth0\rx",
        "eth0 # rest",
        "#",
        "a}",
        "{ a",
        "{ a } }",
        "{ a }; flush ruleset; { b }",
        "\"a b\"",
        "'a'",
        "a b",
        "a\tb",
        "$var",
        "a\\;",
    ] {
        assert!(check_nft_argument(bad).is_err(), "{bad:?} got through");
    }
    for good in [
        "virbr0",
        "192.168.122.0/24",
        "1024-65535",
        "{ type nat hook postrouting priority 100; policy accept; }",
        "-ae",
        "@x",
        "!=",
        "",
    ] {
        assert_eq!(check_nft_argument(good), Ok(()), "{good:?}");
    }
}

fn hostile_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("; flush ruleset".to_string()),
        Just(";".to_string()),
        Just("\n".to_string()),
        Just("\r".to_string()),
        Just("#".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("}".to_string()),
        Just("{".to_string()),
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{85}".to_string()),
        "[;#\"'\n]{1,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A word with a hostile fragment anywhere in it never passes, neither
    /// as a word nor wrapped in a block unless the fragment is harmless
    /// inside one (space, ';' and balanced braces are the block's own).
    #[test]
    fn hostile_arguments_never_pass(
        pre in "[a-z0-9./@-]{0,8}",
        frag in hostile_fragment(),
        post in "[a-z0-9./@-]{0,8}",
    ) {
        let arg = format!("{pre}{frag}{post}");
        prop_assert!(check_nft_argument(&arg).is_err(), "{:?} got through", arg);
        // And no definition can carry it as an interface name.
        prop_assert!(netxml::names::check_interface_name(&arg).is_err(), "{:?}", arg);
        let wrapped = format!("{{ {arg} }}");
        if frag.contains(['#', '"', '\'', '\n', '\r', '\t', '\u{0}', '\u{85}', '{', '}']) {
            prop_assert!(check_nft_argument(&wrapped).is_err(), "{:?} got through", wrapped);
        }
    }

    /// Whatever arbitrary text passes the guard, nft reads as one word or
    /// one block: no newline, comment or quote anywhere, and no statement
    /// separator outside a block.
    #[test]
    fn what_passes_is_one_word_or_block(arg in "\\PC{0,12}|[ ;#{}\"a\n]{0,8}") {
        if check_nft_argument(&arg).is_ok() {
            prop_assert!(!arg.contains(['\n', '\r', '#', '"', '\'']), "{:?}", arg);
            let block = arg.starts_with('{') && arg.ends_with('}');
            if !block {
                prop_assert!(!arg.contains([';', ' ', '{', '}']), "{:?}", arg);
            }
        }
    }
}
