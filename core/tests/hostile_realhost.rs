//! Issue 14 items 1 and 2 on the real kernel, in a fresh `unshare -n`
//! namespace holding a foreign nft table: a definition with
//! `<forward dev='eth0 ; flush ruleset'>` is refused, a config file and a
//! status file with that name on disk are not loaded (so the network can be
//! neither started nor destroyed), and the nft guard refuses to hand real
//! `nft` a command with an injected statement. Afterwards the foreign table
//! and its rule are still there. Prints "skipped: ..." when not root, a tool
//! is missing or namespaces cannot be made.

use std::process::Command;
use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::{Backend, Firewall, FirewallError, Layer, TransactionFlags};
use virtnet_runner::{RealRunner, Runner};

const HOSTILE: &str = "<network>\n  <name>hostile</name>\n  <forward mode='nat' dev='eth0 ; flush ruleset'/>\n  <bridge name='virbr9'/>\n  <ip address='10.99.0.1' prefix='24'/>\n</network>\n";

fn run_tool(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn foreign_intact(what: &str) {
    let rs = run_tool(&["nft", "list", "ruleset"]);
    assert!(
        rs.contains("table inet foreign") && rs.contains("tcp dport 4242 accept"),
        "{what}: the foreign table or its rule is gone:\n{rs}"
    );
}

/// Runs inside the namespace.
fn inner() {
    run_tool(&["nft", "add", "table", "inet", "foreign"]);
    run_tool(&[
        "nft",
        "add",
        "chain",
        "inet",
        "foreign",
        "input",
        "{ type filter hook input priority 0; policy accept; }",
    ]);
    run_tool(&[
        "nft", "add", "rule", "inet", "foreign", "input", "tcp", "dport", "4242", "accept",
    ]);
    let before = run_tool(&["nft", "list", "ruleset"]);

    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("cfg");
    let state = dir.path().join("run");
    std::fs::create_dir_all(&state).unwrap();
    let cfg = DriverConfig::new(
        &cfg_dir,
        &state,
        Arc::new(RealRunner::new()) as Arc<dyn Runner>,
    )
    .with_backend(Backend::Nftables);

    // 1. Define: refused, with the element and attribute.
    let d = Driver::open(cfg.clone()).unwrap();
    let e = d.define(HOSTILE).expect_err("hostile define").to_string();
    assert!(
        e.contains("invalid interface name 'eth0 ; flush ruleset' in <forward dev>"),
        "{e}"
    );
    assert!(e.contains("(at /network/forward[1]/@dev)"), "{e}");
    assert!(d.start("hostile").is_err());
    drop(d);
    foreign_intact("after the refused define");

    // 2. The same definition as a config file and as a status file on disk
    //    (written by hand, or by an older tool): not loaded, so neither a
    //    start nor a destroy can run a command built from it.
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(cfg_dir.join("hostile.xml"), HOSTILE).unwrap();
    std::fs::write(
        state.join("hostile.xml"),
        format!("<networkstatus>\n  <class_id bitmap='0-2'/>\n  <floor sum='0'/>\n{HOSTILE}</networkstatus>"),
    )
    .unwrap();
    let d = Driver::open(cfg.clone()).unwrap();
    assert!(d.list().is_empty(), "a hostile file was loaded");
    assert!(d.start("hostile").is_err());
    assert!(d.destroy("hostile").is_err());
    drop(d);
    foreign_intact("after start and destroy of the hostile files");

    // 3. The guard at the one door: a command with an injected statement
    //    never reaches nft, in any argument position.
    for args in [
        vec!["list", "table", "ip", "libvirt_network ; flush ruleset"],
        vec!["add", "table", "ip", "x\nflush ruleset"],
        vec!["add", "table", "ip", "x", "#"],
        vec![
            "add",
            "chain",
            "ip",
            "x",
            "y",
            "{ type filter hook input priority 0; }; flush ruleset; { }",
        ],
    ] {
        let mut fw = Firewall::new(Backend::Nftables);
        fw.start_transaction(TransactionFlags::default());
        fw.add_cmd(Layer::Ipv4, args.clone());
        let r = fw.apply(&RealRunner::new());
        assert!(
            matches!(r, Err(FirewallError::UnsafeNftArgument { .. })),
            "{args:?}: {r:?}"
        );
        foreign_intact(&format!("after {args:?}"));
    }
    assert_eq!(
        run_tool(&["nft", "list", "ruleset"]),
        before,
        "the ruleset changed"
    );
    println!("ok: hostile input refused on the real kernel, foreign table intact");
}

#[test]
fn hostile_names_never_reach_the_real_nft() {
    if std::env::var_os("VIRTNET_HOSTILE_NS").is_some() {
        inner();
        return;
    }
    if let Some(why) = virtnet_testkit::cannot_make_netns(&["nft", "ip"]) {
        virtnet_testkit::skip(&why);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = virtnet_testkit::command_in_fresh_netns(&exe)
        .args([
            "--exact",
            "hostile_names_never_reach_the_real_nft",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("VIRTNET_HOSTILE_NS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "in the namespace:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: hostile input refused"), "{stdout}");
    println!("ok: hostile input refused on the real kernel, foreign table intact");
}
