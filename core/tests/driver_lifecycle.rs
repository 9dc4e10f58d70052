//! Driver lifecycle on the fake host: define, start, dumpxml, info, list,
//! autostart, destroy, undefine; every forward mode with both backends.

mod driver_common;

use driver_common::*;
use virtnet_core::driver::DriverError;
use virtnet_core::firewall::Backend;
use virtnet_core::store;

const DEFAULT_NET: &str = "<network>\n  <name>default</name>\n  <bridge name=\"virbr0\"/>\n  <forward/>\n  <ip address=\"192.168.122.1\" netmask=\"255.255.255.0\">\n    <dhcp>\n      <range start=\"192.168.122.2\" end=\"192.168.122.254\"/>\n    </dhcp>\n  </ip>\n</network>\n";

#[test]
fn define_allocates_bridge_mac_and_uuid_and_persists() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    let def = d
        .define("<network><name>a</name><forward mode='nat'/><ip address='10.1.0.1' prefix='24'/></network>")
        .unwrap();
    assert_eq!(def.bridge.name.as_deref(), Some("virbr0"));
    let mac = def.mac.unwrap();
    assert_eq!(&mac.0[..3], &[0x52, 0x54, 0x00]);
    assert!(!def.uuid_specified);
    // A second network gets the next free bridge name.
    let def_b = d
        .define("<network><name>b</name><ip address='10.2.0.1' prefix='24'/></network>")
        .unwrap();
    assert_eq!(def_b.bridge.name.as_deref(), Some("virbr1"));
    // A host device named virbr2 is skipped.
    env.host
        .exec(&["ip", "link", "add", "virbr2", "type", "bridge"], None)
        .unwrap();
    let def_c = d
        .define("<network><name>c</name><ip address='10.3.0.1' prefix='24'/></network>")
        .unwrap();
    assert_eq!(def_c.bridge.name.as_deref(), Some("virbr3"));
    // The config file is libvirt's format and a new driver reads it back.
    let text = std::fs::read_to_string(env.config_dir().join("a.xml")).unwrap();
    assert!(text.starts_with("<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE."));
    assert!(text.contains(&format!("<uuid>{}</uuid>", def.uuid)));
    // One owner per state directory: the first driver goes before the
    // second changes anything.
    let a_xml = d.dumpxml("a", true).unwrap();
    drop(d);
    let d2 = env.driver(Backend::Iptables);
    let names: Vec<String> = d2.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(d2.dumpxml("a", true).unwrap(), a_xml);
    // Redefining without a UUID keeps the UUID; with another UUID it fails.
    let again = d2
        .define("<network><name>a</name><forward mode='route'/><ip address='10.1.0.1' prefix='24'/></network>")
        .unwrap();
    assert_eq!(again.uuid, def.uuid);
    let e = d2
        .define(
            "<network><name>a</name><uuid>11111111-2222-3333-4444-555555555555</uuid></network>",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("network 'a' already exists with uuid {}", def.uuid)
    );
    let e = d2
        .define(&format!(
            "<network><name>z</name><uuid>{}</uuid></network>",
            def.uuid
        ))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("network 'a' is already defined with uuid {}", def.uuid)
    );
    // Bad XML is reported with its position.
    let e = d2
        .define("<network><name>x</name><ip address='not-an-address'/></network>")
        .unwrap_err();
    assert!(matches!(e, DriverError::Xml(_)), "{e}");
}

#[test]
fn nat_network_lifecycle_iptables() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    let before = env.state();
    let def = d.define(DEFAULT_NET).unwrap();
    let info = d.info("default").unwrap();
    assert!(!info.active && info.persistent && !info.autostart);
    d.start("default").unwrap();
    let e = d.start("default").unwrap_err();
    assert_eq!(e.to_string(), "network is already active");
    let info = d.info("default").unwrap();
    assert!(info.active);
    assert_eq!(info.firewall_backend, Some(Backend::Iptables));
    assert_eq!(info.bridge.as_deref(), Some("virbr0"));

    // The host: bridge with MAC and address, up; rules; dnsmasq.
    let st = env.state();
    let links = st.dump_section(virtnet_fake::Section::Links);
    assert!(links.contains("virbr0"), "{links}");
    assert!(links.contains(&def.mac.unwrap().to_string()), "{links}");
    assert!(links.contains("192.168.122.1/24"), "{links}");
    let ipt = st.dump_section(virtnet_fake::Section::Iptables);
    assert!(
        ipt.contains("-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE"),
        "{ipt}"
    );
    assert!(ipt.contains("-A LIBVIRT_FWI"), "{ipt}");
    assert_eq!(st.procs.procs.len(), 1);
    let proc_ = st.procs.procs.values().next().unwrap();
    assert!(proc_
        .config
        .as_deref()
        .unwrap()
        .contains("interface=virbr0\n"));
    assert_eq!(
        st.sysctl.get("net.ipv4.ip_forward", &[]).as_deref(),
        Some("1")
    );

    // Status file: libvirt's shape, with the plan and the NAT port range.
    let text = std::fs::read_to_string(env.state_dir().join("default.xml")).unwrap();
    assert!(text.contains(
        "<networkstatus>\n  <class_id bitmap='0-2'/>\n  <floor sum='0'/>\n  <network>\n"
    ));
    assert!(text.contains("<firewall name='fwRemoval' backend='iptables'>"));
    assert!(text.contains("<port start='1024' end='65535'/>"));
    assert!(text.ends_with("</networkstatus>"));
    assert!(d.pending_journals().is_empty());
    // Live vs inactive XML.
    assert!(d
        .dumpxml("default", false)
        .unwrap()
        .contains("<port start='1024' end='65535'/>"));
    assert!(!d.dumpxml("default", true).unwrap().contains("<port"));

    d.destroy("default").unwrap();
    let e = d.destroy("default").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Requested operation is not valid: network 'default' is not active"
    );
    assert!(!env.state_dir().join("default.xml").exists());
    let after = env.state();
    assert!(
        traces_of(&after, "virbr0", "192.168.122.").is_empty(),
        "{:?}",
        traces_of(&after, "virbr0", "192.168.122.")
    );
    assert!(after.procs.procs.is_empty());
    // Only the private chains (kept, as libvirt keeps them) and forwarding differ.
    assert_eq!(before.ip.links, after.ip.links);
    assert_eq!(before.ip.routes, after.ip.routes);
    assert_eq!(before.tc, after.tc);
    d.undefine("default").unwrap();
    assert!(d.list().is_empty());
    assert!(!env.config_dir().join("default.xml").exists());
}

#[test]
fn undefine_of_active_network_makes_it_transient() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(DEFAULT_NET).unwrap();
    d.start("default").unwrap();
    d.undefine("default").unwrap();
    let info = d.info("default").unwrap();
    assert!(info.active && !info.persistent);
    assert!(matches!(
        d.set_autostart("default", true),
        Err(DriverError::AutostartTransient(_))
    ));
    assert!(matches!(
        d.undefine("default"),
        Err(DriverError::Transient(_))
    ));
    d.destroy("default").unwrap();
    assert!(d.list().is_empty());
}

#[test]
fn autostart_link_and_start_at_reconcile() {
    let env = Env::new();
    {
        let d = env.driver(Backend::Iptables);
        d.define(DEFAULT_NET).unwrap();
        d.set_autostart("default", true).unwrap();
        assert!(d.info("default").unwrap().autostart);
        let link = env.config_dir().join("autostart/default.xml");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            std::path::absolute(env.config_dir().join("default.xml")).unwrap()
        );
    }
    // Daemon start: the autostart network is started, once per boot.
    let d = env.driver(Backend::Iptables);
    let rep = d.reconcile().unwrap();
    assert_eq!(rep.autostarted, ["default"]);
    assert!(d.info("default").unwrap().active);
    d.destroy("default").unwrap();
    drop(d);
    let d = env.driver(Backend::Iptables);
    let rep = d.reconcile().unwrap();
    assert!(rep.autostarted.is_empty(), "{rep:?}");
    d.set_autostart("default", false).unwrap();
    assert!(!d.info("default").unwrap().autostart);
    assert!(!env.config_dir().join("autostart/default.xml").exists());
}

/// Start and destroy of every bridge-based mode with both backends: the
/// host ends as it was apart from the private chains and forwarding.
#[test]
fn every_bridge_mode_starts_and_destroys_cleanly_with_both_backends() {
    let cases = [
        ("isolated-network", "virbr2", "192.168.152."),
        ("nat-network", "virbr0", "192.168.122."),
        ("open-network", "virbr1", "192.168.122."),
        ("nat-network-forward-nat-ipv6", "virbr0", "2001:db8:ca2:2:"),
        ("netboot-network", "virbr1", "192.168.122."),
        ("nat-network-dns-hosts", "virbr0", "192.168.122."),
        ("dhcp6host-routed-network", "virbr1", "2001:db8:ac10:fd01"),
    ];
    for backend in [Backend::Iptables, Backend::Nftables] {
        for (case, br, subnet) in cases {
            let env = Env::new();
            let d = env.driver(backend);
            // dnsmasq refuses a TFTP root that does not exist: give the
            // case one that does.
            let xml = with_existing_tftp_root(&libvirt_net(case), env.dir.path());
            let def = d.define(&xml).unwrap_or_else(|e| panic!("{case}: {e}"));
            d.start(&def.name)
                .unwrap_or_else(|e| panic!("{case} {backend}: {e}"));
            let running = env.state();
            assert!(!traces_of(&running, br, "").is_empty(), "{case}: no bridge");
            let st = d.status(&def.name).unwrap();
            let is_open = case.starts_with("open");
            assert_eq!(st.fw_removal.is_some(), !is_open, "{case}");
            if is_open {
                // open: no rules at all.
                assert!(!dump(&running).contains(&format!("-i {br}")), "{case}");
            }
            d.destroy(&def.name).unwrap();
            let after = env.state();
            let left = traces_of(&after, br, subnet);
            assert!(left.is_empty(), "{case} {backend}: left behind: {left:#?}");
            assert!(after.procs.procs.is_empty(), "{case}");
        }
    }
}

/// The routed network of libvirt's tests asks for a firewalld zone, which
/// virtnet (like libvirt without firewalld) refuses; the start fails cleanly.
#[test]
fn zone_without_firewalld_fails_and_leaves_nothing() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    let def = d.define(&libvirt_net("routed-network")).unwrap();
    let before = env.state();
    let e = d.start(&def.name).unwrap_err();
    assert_eq!(
        e.to_string(),
        "zone myzone requested for network local but firewalld is not active"
    );
    assert_same_host(&before, &env.state(), "failed start");
    assert!(d.pending_journals().is_empty());
    assert!(!d.info("local").unwrap().active);
}

/// Host-managed modes: nothing happens on the host; the network is active.
#[test]
fn host_managed_modes_only_mark_active() {
    let private = "<network><name>priv</name><forward mode='private'><interface dev='eth1'/><interface dev='eth2'/></forward></network>";
    let passthrough = "<network><name>pt</name><forward mode='passthrough'><interface dev='eth3'/></forward></network>";
    let cases = [
        ("host-bridge-net", libvirt_net("host-bridge-net")),
        ("direct-net", libvirt_net("direct-net")),
        ("vepa-net", libvirt_net("vepa-net")),
        ("private", private.to_string()),
        ("passthrough", passthrough.to_string()),
    ];
    for (case, xml) in cases {
        let env = Env::new();
        let d = env.driver(Backend::Nftables);
        let def = d.define(&xml).unwrap_or_else(|e| panic!("{case}: {e}"));
        env.host.take_records();
        d.start(&def.name).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(d.info(&def.name).unwrap().active);
        assert!(d.status(&def.name).unwrap().fw_removal.is_none());
        d.destroy(&def.name).unwrap();
        let cmds: Vec<String> = env
            .host
            .take_records()
            .iter()
            .map(|r| r.cmd.argv.join(" "))
            .collect();
        assert!(cmds.is_empty(), "{case}: ran {cmds:?}");
    }
}

#[test]
fn status_files_are_written_atomically_by_the_driver() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(DEFAULT_NET).unwrap();
    d.start("default").unwrap();
    let text = std::fs::read_to_string(env.state_dir().join("default.xml")).unwrap();
    let st = store::parse_status(&text, std::path::Path::new("default.xml")).unwrap();
    assert_eq!(store::format_status(&st), text);
    let names: Vec<String> = std::fs::read_dir(env.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

/// A fake sysfs with PF eth2 (VFs 0000:03:00.1/.2 with netdevs eth2v0/eth2v1)
/// and PCI devices that are virtual functions.
fn fake_sysfs(root: &std::path::Path) {
    use std::os::unix::fs::symlink;
    let pci = root.join("bus/pci/devices");
    for (i, addr) in ["0000:03:00.1", "0000:03:00.2"].iter().enumerate() {
        let dev = pci.join(addr);
        std::fs::create_dir_all(dev.join(format!("net/eth2v{i}"))).unwrap();
        std::fs::write(dev.join("physfn"), "").unwrap();
        let pfdev = root.join("class/net/eth2/device");
        std::fs::create_dir_all(&pfdev).unwrap();
        symlink(&dev, pfdev.join(format!("virtfn{i}"))).unwrap();
    }
}

/// hostdev and macvtap-style modes with a `<pf>`: start fills the device
/// pool from the PF's virtual functions (live XML), nothing runs on the
/// host, destroy restores the persistent definition; a PCI pool is checked
/// against sysfs at define time.
#[test]
fn host_managed_modes_expand_the_pf_pool() {
    let env = Env::new();
    let sysfs = env.dir.path().join("sys");
    fake_sysfs(&sysfs);
    let mut cfg = env.cfg().with_backend(Backend::Nftables);
    cfg.sysfs_root = sysfs.clone();
    let d = virtnet_core::driver::Driver::open(cfg).unwrap();
    // hostdev with a PF: PCI addresses of the VFs.
    d.define(&libvirt_net("hostdev-pf")).unwrap();
    env.host.take_records();
    d.start("hostdev").unwrap();
    let live = d.dumpxml("hostdev", false).unwrap();
    assert!(
        live.contains(
            "<address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x1'/>"
        ),
        "{live}"
    );
    assert!(live.contains("function='0x2'"), "{live}");
    assert!(!d.dumpxml("hostdev", true).unwrap().contains("<address"));
    d.destroy("hostdev").unwrap();
    assert!(env.host.take_records().is_empty());
    // passthrough with a PF: the VFs' netdevs.
    let xml =
        "<network><name>pt</name><forward mode='passthrough'><pf dev='eth2'/></forward></network>";
    d.define(xml).unwrap();
    d.start("pt").unwrap();
    let live = d.dumpxml("pt", false).unwrap();
    assert!(
        live.contains("<interface dev='eth2v0'/>") && live.contains("<interface dev='eth2v1'/>"),
        "{live}"
    );
    d.destroy("pt").unwrap();
    // A PF without VFs: libvirt's error, nothing active.
    d.define("<network><name>nopf</name><forward mode='vepa'><pf dev='eth9'/></forward></network>")
        .unwrap();
    let e = d.start("nopf").unwrap_err();
    assert_eq!(e.to_string(), "No usable Vf's present on SRIOV PF eth9");
    assert!(!d.info("nopf").unwrap().active);
    // hostdev with a PCI pool: VFs are accepted, other devices refused.
    d.define(
        &libvirt_net("hostdev")
            .replace("function='0x3'", "function='0x1'")
            .replace("function='0x4'", "function='0x2'"),
    )
    .unwrap_err();
    let ok = "<network><name>hd</name><forward mode='hostdev' managed='yes'><address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></forward></network>";
    d.define(ok).unwrap();
    d.start("hd").unwrap();
    d.destroy("hd").unwrap();
    let bad = "<network><name>hd2</name><forward mode='hostdev'><address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x1'/></forward></network>";
    let e = d.define(bad).unwrap_err().to_string();
    assert!(e.contains("0000:05:00.1"), "{e}");
}

/// libvirt's route-collision check: a network already routed on the host
/// is refused before anything is created.
#[test]
fn route_collision_is_refused() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    env.host
        .exec(&["ip", "link", "add", "eth0", "type", "bridge"], None)
        .unwrap();
    env.host
        .exec(&["ip", "link", "set", "dev", "eth0", "up"], None)
        .unwrap();
    env.host
        .exec(
            &["ip", "addr", "add", "192.168.122.7/24", "dev", "eth0"],
            None,
        )
        .unwrap();
    d.define(DEFAULT_NET).unwrap();
    let before = env.state();
    let e = d.start("default").unwrap_err();
    assert_eq!(e.to_string(), "Network is already in use by interface eth0");
    assert_same_host(&before, &env.state(), "refused start");
    let routed = "<network><name>r</name><forward mode='route'/><ip address='10.9.0.1' prefix='24'/><route address='192.168.122.0' prefix='24' gateway='10.9.0.2'/></network>";
    d.define(routed).unwrap();
    let e = d.start("r").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Route address '192.168.122.0' conflicts with IP address for 'eth0'"
    );
}

/// The driver is shared by a multi-threaded daemon: different networks
/// start and stop concurrently (per-network serialisation is the caller's).
#[test]
fn concurrent_starts_and_destroys_of_different_networks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<virtnet_core::driver::Driver>();
    for backend in [Backend::Iptables, Backend::Nftables] {
        let env = Env::new();
        let d = std::sync::Arc::new(env.driver(backend));
        let names: Vec<String> = (0..4)
            .map(|i| {
                let xml = format!(
                    "<network><name>n{i}</name><forward mode='nat'/><ip address='10.{i}.0.1' prefix='24'><dhcp><range start='10.{i}.0.2' end='10.{i}.0.9'/></dhcp></ip></network>"
                );
                d.define(&xml).unwrap().name
            })
            .collect();
        let run = |f: fn(
            &virtnet_core::driver::Driver,
            &str,
        ) -> Result<(), virtnet_core::driver::DriverError>| {
            let hs: Vec<_> = names
                .iter()
                .map(|n| {
                    let (d, n) = (d.clone(), n.clone());
                    std::thread::spawn(move || f(&d, &n))
                })
                .collect();
            for h in hs {
                h.join().unwrap().unwrap();
            }
        };
        run(|d, n| d.start(n));
        assert!(d.list().iter().all(|i| i.active));
        assert_eq!(env.state().procs.procs.len(), 4);
        run(|d, n| d.destroy(n));
        let after = env.state();
        for i in 0..4 {
            assert!(
                traces_of(&after, &format!("virbr{i}"), &format!("10.{i}.0.")).is_empty(),
                "{backend}"
            );
        }
    }
}

/// The journal of a start that is done is deleted. An emptied journal file
/// (left by a driver of the release that kept them mapped and emptied them)
/// is no journal: the next driver's recovery removes it and finds nothing
/// to undo in it.
#[test]
fn a_journal_is_deleted_when_its_operation_ends_and_an_emptied_one_is_no_journal() {
    let env = Env::new();
    let journal = env.state_dir().join("default.journal");
    let d = env.driver(Backend::Nftables);
    d.define(DEFAULT_NET).unwrap();
    d.start("default").unwrap();
    assert!(!journal.exists(), "journal left after the start");
    assert!(d.pending_journals().is_empty());
    d.destroy("default").unwrap();
    d.start("default").unwrap();
    assert!(!journal.exists());
    drop(d);

    // An emptied journal file a driver of the release that kept them
    // mapped left (it died): no journal.
    std::fs::write(&journal, vec![0u8; 4096]).unwrap();
    let d = env.driver(Backend::Nftables);
    assert!(!journal.exists());
    assert!(
        !d.reports().iter().any(|r| r.contains("journal")),
        "{:?}",
        d.reports()
    );
    assert!(d.info("default").unwrap().active);
    d.destroy("default").unwrap();
}
