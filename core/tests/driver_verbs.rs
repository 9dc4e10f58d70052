//! The everyday verbs on the fake host: list filters, lookup by name or
//! UUID, transient networks (create, destroy, restart), and reload, check
//! and repair after the rules drifted (flushed, deleted, replaced).

mod driver_common;

use driver_common::*;
use virtnet_core::driver::{DriftKind, DriverError, ListFilter};
use virtnet_core::firewall::Backend;
use virtnet_testkit::{CmdMatcher, FaultPlan};

const NAT_A: &str = "<network><name>a</name><uuid>11111111-2222-4333-8444-555555555501</uuid><forward mode='nat'/><bridge name='vbra'/><ip address='10.71.0.1' prefix='24'><dhcp><range start='10.71.0.10' end='10.71.0.20'/></dhcp></ip></network>";
const NAT_B: &str = "<network><name>b</name><uuid>11111111-2222-4333-8444-555555555502</uuid><forward mode='nat'/><bridge name='vbrb'/><ip address='10.72.0.1' prefix='24'/></network>";
const TRANSIENT_C: &str = "<network><name>c</name><bridge name='vbrc'/><ip address='10.73.0.1' prefix='24'><dhcp><range start='10.73.0.10' end='10.73.0.20'/></dhcp></ip></network>";

fn names(v: &[virtnet_core::driver::NetworkInfo]) -> Vec<&str> {
    v.iter().map(|i| i.name.as_str()).collect()
}

fn dnsmasq_files(env: &Env, name: &str) -> Vec<String> {
    ["conf", "hostsfile", "addnhosts"]
        .iter()
        .map(|ext| {
            env.state_dir()
                .join("dnsmasq")
                .join(format!("{name}.{ext}"))
        })
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn list_filters_are_libvirts() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(NAT_A).unwrap(); // persistent, inactive
    d.define(NAT_B).unwrap();
    d.start("b").unwrap();
    d.set_autostart("b", true).unwrap(); // persistent, active, autostart
    d.create(TRANSIENT_C).unwrap(); // transient, active
    let f = |flags: u32| names(&d.list_filtered(&ListFilter::from_flags(flags).unwrap())).join(",");
    assert_eq!(f(0), "a,b,c");
    assert_eq!(f(ListFilter::ACTIVE), "b,c");
    assert_eq!(f(ListFilter::INACTIVE), "a");
    assert_eq!(f(ListFilter::ACTIVE | ListFilter::INACTIVE), "a,b,c");
    assert_eq!(f(ListFilter::PERSISTENT), "a,b");
    assert_eq!(f(ListFilter::TRANSIENT), "c");
    assert_eq!(f(ListFilter::ACTIVE | ListFilter::PERSISTENT), "b");
    assert_eq!(f(ListFilter::AUTOSTART), "b");
    assert_eq!(f(ListFilter::NO_AUTOSTART), "a,c");
    assert_eq!(f(ListFilter::INACTIVE | ListFilter::AUTOSTART), "");
    assert_eq!(f(ListFilter::PERSISTENT | ListFilter::TRANSIENT), "a,b,c");
    assert_eq!(ListFilter::from_flags(64), Err(64));
    for flags in 0..64 {
        assert_eq!(ListFilter::from_flags(flags).unwrap().flags(), flags);
    }
    d.destroy("b").unwrap();
    d.destroy("c").unwrap();
}

#[test]
fn lookup_by_name_or_uuid() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(NAT_A).unwrap();
    let uuid = "11111111-2222-4333-8444-555555555501";
    assert_eq!(d.lookup(uuid).unwrap().name, "a");
    assert_eq!(d.lookup("a").unwrap().uuid, uuid);
    assert_eq!(d.resolve(&uuid.to_uppercase()).unwrap(), "a");
    assert_eq!(d.lookup_by_uuid(uuid).unwrap().name, "a");
    // libvirt's UUID parser takes the 32 digits without dashes too.
    assert_eq!(d.lookup_by_uuid(&uuid.replace('-', "")).unwrap().name, "a");
    // A 36-character argument that is no network's UUID is then a name.
    let other = "11111111-2222-4333-8444-555555555599";
    assert_eq!(
        d.lookup(other).unwrap_err().to_string(),
        format!("Network not found: no network with matching name '{other}'")
    );
    assert_eq!(
        d.lookup_by_uuid(other).unwrap_err().to_string(),
        format!("Network not found: no network with matching uuid '{other}'")
    );
    assert_eq!(
        d.lookup_by_uuid("not-a-uuid").unwrap_err().to_string(),
        "invalid argument: uuidstr in virNetworkLookupByUUIDString must be a valid UUID"
    );
    // A network whose name looks like another's UUID is found by that UUID
    // first, as virsh does.
    let tricky = format!("<network><name>{uuid}</name><bridge name='vbrt'/></network>");
    d.define(&tricky).unwrap();
    assert_eq!(d.lookup(uuid).unwrap().name, "a");
    assert_eq!(d.info(uuid).unwrap().name, uuid);
}

#[test]
fn generated_uuid_is_kept_across_restarts() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    let def = d
        .define("<network><name>g</name><bridge name='vbrg'/></network>")
        .unwrap();
    let created = d.create(TRANSIENT_C).unwrap();
    drop(d);
    let d = env.driver(Backend::Nftables);
    assert_eq!(d.info("g").unwrap().uuid, def.uuid.to_string());
    assert_eq!(d.info("c").unwrap().uuid, created.uuid.to_string());
    assert_eq!(d.lookup(&created.uuid.to_string()).unwrap().name, "c");
    d.destroy("c").unwrap();
}

#[test]
fn transient_network_lives_while_it_runs() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    let def = d.create(TRANSIENT_C).unwrap();
    assert!(!def.uuid_specified);
    let i = d.info("c").unwrap();
    assert!(i.active && !i.persistent && !i.autostart);
    assert!(!env.config_dir().join("c.xml").exists());
    assert_eq!(dnsmasq_files(&env, "c").len(), 3);
    assert_eq!(
        d.undefine("c").unwrap_err().to_string(),
        "can't undefine transient network"
    );
    assert_eq!(
        d.set_autostart("c", true).unwrap_err().to_string(),
        "cannot set autostart for transient network"
    );
    // The live XML is also the "inactive" one.
    assert!(d.dumpxml("c", true).unwrap().contains("<name>c</name>"));
    // A daemon restart keeps it (its status file).
    drop(d);
    let d = env.driver(Backend::Nftables);
    let rep = d.reconcile().unwrap();
    assert_eq!(rep.reloaded, ["c"], "{rep:?}");
    let i = d.info("c").unwrap();
    assert!(i.active && !i.persistent);
    // Destroy: it is gone, with its files, and the host is as before.
    d.destroy("c").unwrap();
    assert!(matches!(d.info("c"), Err(DriverError::NoNetwork(_))));
    assert!(d.list().is_empty());
    assert_eq!(dnsmasq_files(&env, "c"), Vec::<String>::new());
    assert!(!env.state_dir().join("c.xml").exists());
    // Nothing of it on the host (the private chains stay, as in libvirt).
    assert_eq!(
        traces_of(&env.state(), "vbrc", "10.73.0."),
        Vec::<String>::new()
    );
    drop(d);
    let d = env.driver(Backend::Nftables);
    assert!(d.list().is_empty(), "nothing comes back after a restart");
}

#[test]
fn undefined_active_network_disappears_at_destroy() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    d.define(NAT_A).unwrap();
    d.start("a").unwrap();
    d.undefine("a").unwrap();
    assert!(!d.info("a").unwrap().persistent);
    d.destroy("a").unwrap();
    assert!(d.list().is_empty());
    assert_eq!(dnsmasq_files(&env, "a"), Vec::<String>::new());
}

#[test]
fn create_checks_names_and_uuids_as_libvirt() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(NAT_A).unwrap();
    // Same name, no <uuid> (a random one): refused.
    let e = d
        .create("<network><name>a</name><bridge name='vbrx'/></network>")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "network 'a' already exists with uuid 11111111-2222-4333-8444-555555555501"
    );
    // Same UUID, other name: refused.
    let e = d
        .create(
            "<network><name>z</name><uuid>11111111-2222-4333-8444-555555555501</uuid></network>",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "network 'a' is already defined with uuid 11111111-2222-4333-8444-555555555501"
    );
    assert!(d.info("z").is_err());
    // The same network, inactive and persistent: started with this XML
    // live; its persistent definition stays.
    let live = NAT_A.replace("10.71.0.20", "10.71.0.30");
    d.create(&live).unwrap();
    let i = d.info("a").unwrap();
    assert!(i.active && i.persistent);
    assert!(d.dumpxml("a", false).unwrap().contains("10.71.0.30"));
    assert!(d.dumpxml("a", true).unwrap().contains("10.71.0.20"));
    // ... and once active, refused.
    assert_eq!(
        d.create(NAT_A).unwrap_err().to_string(),
        "network is already active as 'a'"
    );
    d.destroy("a").unwrap();
    assert!(
        d.info("a").unwrap().persistent,
        "destroy keeps a persistent network"
    );
}

#[test]
fn failed_create_leaves_nothing() {
    let env = Env::new();
    let before = env.state();
    let d = env.driver(Backend::Nftables);
    env.faults.set_plan(FaultPlan::none().fail_matching(
        CmdMatcher::program("ip").containing("address"),
        2,
        "RTNETLINK answers: File exists",
        None,
    ));
    assert!(d.create(TRANSIENT_C).is_err());
    env.faults.set_plan(FaultPlan::none());
    assert!(d.list().is_empty());
    assert_eq!(dnsmasq_files(&env, "c"), Vec::<String>::new());
    assert!(!env.state_dir().join("c.xml").exists());
    assert_same_host(&before, &env.state(), "after a failed create");
}

fn sh(env: &Env, argv: &[&str]) -> String {
    let out = env.host.exec(argv, None).unwrap();
    assert!(out.success(), "{argv:?}: {}", out.stderr);
    out.stdout
}

/// The rules as nft lists them (no handles, no counters values matter on
/// the fake: they stay 0).
fn ruleset(env: &Env) -> String {
    sh(env, &["nft", "list", "ruleset"])
}

#[test]
fn check_is_clean_after_start_for_both_backends() {
    for backend in [Backend::Nftables, Backend::Iptables] {
        let env = Env::new();
        let d = env.driver(backend);
        d.define(NAT_A).unwrap();
        d.define(NAT_B).unwrap();
        d.start("a").unwrap();
        d.start("b").unwrap();
        let rep = d.check(None).unwrap();
        assert!(!rep.drifted(), "{backend}: {rep:#?}");
        assert_eq!(names_of(&rep), ["a", "b"]);
        assert!(rep.networks.iter().all(|n| n.checked > 5), "{rep:#?}");
        // One network only; an inactive or unknown one is refused.
        assert_eq!(names_of(&d.check(Some("b")).unwrap()), ["b"]);
        d.destroy("b").unwrap();
        assert!(matches!(d.check(Some("b")), Err(DriverError::NotActive(_))));
        assert!(matches!(
            d.check(Some("nosuch")),
            Err(DriverError::NoNetwork(_))
        ));
    }
}

fn names_of(rep: &virtnet_core::driver::CheckReport) -> Vec<String> {
    rep.networks.iter().map(|n| n.name.clone()).collect()
}

#[test]
fn flushed_ruleset_is_reported_and_repaired_nftables() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(NAT_A).unwrap();
    d.define(NAT_B).unwrap();
    d.start("a").unwrap();
    d.start("b").unwrap();
    let good = ruleset(&env);
    sh(&env, &["nft", "flush", "ruleset"]);
    let rep = d.check(None).unwrap();
    assert!(rep.drifted());
    for n in &rep.networks {
        assert_eq!(n.drift.len(), n.checked, "every rule missing: {n:#?}");
        assert!(n.drift.iter().all(|x| x.kind == DriftKind::Missing));
    }
    assert!(
        rep.private_chains
            .iter()
            .any(|x| x.expected == "nft add table ip libvirt_network"),
        "{:#?}",
        rep.private_chains
    );
    let (before, after) = d.repair(None).unwrap();
    assert_eq!(before, rep);
    assert!(!after.drifted(), "{after:#?}");
    assert_eq!(ruleset(&env), good, "the same rules as after the start");
    // The repaired plans remove everything again.
    d.destroy("a").unwrap();
    d.destroy("b").unwrap();
    assert!(!ruleset(&env).contains("10.71.0."));
    assert!(!ruleset(&env).contains("10.72.0."));
}

#[test]
fn flushed_iptables_are_reported_and_repaired() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    d.define(NAT_A).unwrap();
    d.start("a").unwrap();
    let save = |env: &Env| sh(env, &["iptables-save"]) + &sh(env, &["ip6tables-save"]);
    let good = save(&env);
    for argv in [
        &["iptables", "-F"][..],
        &["iptables", "-t", "nat", "-F"],
        &["iptables", "-t", "mangle", "-F"],
        &["ip6tables", "-F"],
    ] {
        sh(&env, argv);
    }
    let rep = d.check(Some("a")).unwrap();
    assert!(rep.drifted());
    assert_eq!(rep.networks[0].drift.len(), rep.networks[0].checked);
    assert!(rep.networks[0].drift[0]
        .expected
        .starts_with("iptables -w --table "));
    assert!(
        !rep.private_chains.is_empty(),
        "the jumps to LIBVIRT_* are gone"
    );
    let (_, after) = d.repair(Some("a")).unwrap();
    assert!(!after.drifted(), "{after:#?}");
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(save(&env)), strip(good));
}

#[test]
fn replaced_rule_is_reported_altered_and_left_alone() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(NAT_A).unwrap();
    d.start("a").unwrap();
    let listing = sh(
        &env,
        &[
            "nft",
            "-a",
            "list",
            "chain",
            "ip",
            "libvirt_network",
            "guest_output",
        ],
    );
    let handle = listing
        .lines()
        .find(|l| l.contains("reject"))
        .and_then(|l| l.rsplit("# handle ").next())
        .unwrap()
        .trim()
        .to_string();
    sh(
        &env,
        &[
            "nft",
            "replace",
            "rule",
            "ip",
            "libvirt_network",
            "guest_output",
            "handle",
            &handle,
            "iif",
            "vbra",
            "counter",
            "accept",
        ],
    );
    let rep = d.check(None).unwrap();
    let drift = &rep.networks[0].drift;
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0].kind, DriftKind::Altered);
    assert_eq!(
        drift[0].expected,
        "nft insert rule ip libvirt_network guest_output iif vbra counter reject"
    );
    assert!(drift[0].found.as_deref().unwrap().contains("accept"));
    assert!(rep.private_chains.is_empty());
    // Repair adds the rule again and never deletes the replaced one (its
    // handle is no longer ours).
    let (_, after) = d.repair(None).unwrap();
    assert!(!after.drifted(), "{after:#?}");
    let listing = sh(
        &env,
        &[
            "nft",
            "-a",
            "list",
            "chain",
            "ip",
            "libvirt_network",
            "guest_output",
        ],
    );
    assert!(
        listing.contains(&format!("accept # handle {handle}")),
        "{listing}"
    );
}

#[test]
fn reload_reapplies_rules_like_libvirt() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(NAT_A).unwrap();
    d.start("a").unwrap();
    let good = ruleset(&env);
    // One rule deleted by hand: a reload removes the rest with the saved
    // plan and adds them all again.
    let listing = sh(
        &env,
        &[
            "nft",
            "-a",
            "list",
            "chain",
            "ip",
            "libvirt_network",
            "guest_nat",
        ],
    );
    let handle = listing
        .lines()
        .find(|l| l.contains("masquerade"))
        .and_then(|l| l.rsplit("# handle ").next())
        .unwrap()
        .trim()
        .to_string();
    sh(
        &env,
        &[
            "nft",
            "delete",
            "rule",
            "ip",
            "libvirt_network",
            "guest_nat",
            "handle",
            &handle,
        ],
    );
    assert_eq!(d.check(None).unwrap().networks[0].drift.len(), 1);
    let rep = d.reload().unwrap();
    assert_eq!(rep.reloaded, ["a"], "{rep:?}");
    assert!(rep.problems.is_empty(), "{rep:?}");
    assert!(!d.check(None).unwrap().drifted());
    assert_eq!(ruleset(&env), good);
    // After a flush, a reload does not set the private chains up again
    // (libvirt: once per process unless forced): the add fails and the
    // network keeps no plan — which check reports and repair fixes.
    sh(&env, &["nft", "flush", "ruleset"]);
    d.reload().unwrap();
    assert!(d.status("a").unwrap().fw_removal.is_none());
    let rep = d.check(None).unwrap();
    assert_eq!(rep.networks[0].drift[0].kind, DriftKind::NoPlan);
    let (_, after) = d.repair(None).unwrap();
    assert!(!after.drifted(), "{after:#?}");
    assert_eq!(ruleset(&env), good);
}

#[test]
fn reload_takes_new_definitions_and_starts_autostart_networks() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    // A definition written by hand into the config directory, marked
    // autostart by hand.
    std::fs::create_dir_all(env.config_dir().join("autostart")).unwrap();
    std::fs::write(env.config_dir().join("b.xml"), NAT_B).unwrap();
    std::os::unix::fs::symlink(
        env.config_dir().join("b.xml"),
        env.config_dir().join("autostart/b.xml"),
    )
    .unwrap();
    assert!(d.info("b").is_err());
    let rep = d.reload().unwrap();
    assert_eq!(rep.autostarted, ["b"], "{rep:?}");
    assert!(d.info("b").unwrap().active);
    // A second reload starts nothing more and reloads b's rules.
    let rep = d.reload().unwrap();
    assert!(rep.autostarted.is_empty());
    assert_eq!(rep.reloaded, ["b"]);
    d.destroy("b").unwrap();
}
