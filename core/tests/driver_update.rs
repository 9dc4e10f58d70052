//! `Driver::update` (net-update) on the fake host: which definitions change,
//! what runs on the host (firewall swap, dnsmasq refresh with SIGHUP to the
//! same process, or restart), that the bridge stays up, that a refused
//! update changes nothing, and that destroy after an update removes
//! everything.

mod driver_common;

use driver_common::*;
use virtnet_core::driver::{Driver, DriverError, UpdateFlags};
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{UpdateCommand as C, UpdateSection as S};
use virtnet_fake::HostState;

const NET: &str = "<network>\n  <name>default</name>\n  <bridge name=\"virbr0\"/>\n  <forward/>\n  <ip address=\"192.168.122.1\" netmask=\"255.255.255.0\">\n    <dhcp>\n      <range start=\"192.168.122.2\" end=\"192.168.122.100\"/>\n      <host mac=\"52:54:00:00:00:01\" name=\"one\" ip=\"192.168.122.201\"/>\n    </dhcp>\n  </ip>\n</network>\n";

const HOST2: &str = "<host mac='52:54:00:00:00:02' name='two' ip='192.168.122.202'/>";

fn started(env: &Env, backend: Backend) -> Driver {
    let d = env.driver(backend);
    d.define(NET).unwrap();
    d.start("default").unwrap();
    d
}

fn dnsmasq_file(env: &Env, ext: &str) -> String {
    std::fs::read_to_string(env.state_dir().join(format!("dnsmasq/default.{ext}")))
        .unwrap_or_default()
}

fn the_dnsmasq(st: &HostState) -> (u32, u32, String) {
    assert_eq!(st.procs.procs.len(), 1, "{:?}", st.procs.procs);
    let p = st.procs.procs.values().next().unwrap();
    (p.pid, p.hups, p.config.clone().unwrap_or_default())
}

fn argvs(env: &Env) -> Vec<String> {
    env.host
        .take_records()
        .into_iter()
        .map(|r| r.cmd.argv.join(" "))
        .collect()
}

#[test]
fn dhcp_host_added_live_refreshes_dnsmasq_and_reloads_rules_with_the_bridge_up() {
    for backend in [Backend::Iptables, Backend::Nftables] {
        let env = Env::new();
        let before = env.state();
        let d = started(&env, backend);
        let (pid, hups, _) = the_dnsmasq(&env.state());
        let hosts_before = dnsmasq_file(&env, "hostsfile");
        assert_eq!(hosts_before, "52:54:00:00:00:01,192.168.122.201,one\n");
        env.host.take_records();

        let r = d
            .update(
                "default",
                C::AddLast,
                S::IpDhcpHost,
                -1,
                HOST2,
                UpdateFlags::CURRENT,
            )
            .unwrap();
        assert!(r.live && !r.config, "{r:?}");
        let cmds = argvs(&env);
        // Rules removed (saved plan) and added again; dnsmasq got SIGHUP;
        // the bridge was not touched.
        let fw = if backend == Backend::Iptables {
            "iptables"
        } else {
            "nft"
        };
        assert!(cmds.iter().any(|c| c.starts_with(fw)), "{cmds:#?}");
        assert!(cmds.contains(&format!("kill -HUP {pid}")), "{cmds:#?}");
        assert!(
            !cmds
                .iter()
                .any(|c| c.starts_with("ip link") && !c.starts_with("ip link show")),
            "{cmds:#?}"
        );
        assert!(
            !cmds.iter().any(|c| c.contains("dnsmasq --conf-file")),
            "{cmds:#?}"
        );
        // The same dnsmasq, one more SIGHUP, and the new host in its file.
        let (pid2, hups2, _) = the_dnsmasq(&env.state());
        assert_eq!((pid2, hups2), (pid, hups + 1));
        assert_eq!(
            dnsmasq_file(&env, "hostsfile"),
            "52:54:00:00:00:01,192.168.122.201,one\n52:54:00:00:00:02,192.168.122.202,two\n"
        );
        // Live definition and status file have it; the persistent one not.
        assert!(d.dumpxml("default", false).unwrap().contains("name='two'"));
        assert!(!d.dumpxml("default", true).unwrap().contains("name='two'"));
        let status = std::fs::read_to_string(env.state_dir().join("default.xml")).unwrap();
        assert!(status.contains("name='two'"), "{status}");
        assert!(status.contains(&format!("backend='{backend}'")), "{status}");
        let config = std::fs::read_to_string(env.config_dir().join("default.xml")).unwrap();
        assert!(!config.contains("name='two'"));
        assert!(d.pending_journals().is_empty());
        // A new driver (daemon restart) reads the updated status back.
        drop(d);
        let d = env.driver(backend);
        assert!(d.dumpxml("default", false).unwrap().contains("name='two'"));
        // Destroy removes what the update's add created: nothing of the
        // network stays (the private chains stay, as libvirt keeps them).
        d.destroy("default").unwrap();
        let after = env.state();
        assert!(
            traces_of(&after, "virbr0", "192.168.122.").is_empty(),
            "{:?}",
            traces_of(&after, "virbr0", "192.168.122.")
        );
        assert_eq!(before.ip.links, after.ip.links);
        assert!(after.procs.procs.is_empty());
    }
}

#[test]
fn config_and_live_together_and_config_alone() {
    let env = Env::new();
    let d = started(&env, Backend::Iptables);
    let both = UpdateFlags {
        live: true,
        config: true,
    };
    let r = d
        .update(
            "default",
            C::AddFirst,
            S::DnsHost,
            -1,
            "<host ip='192.168.122.50'><hostname>web</hostname></host>",
            both,
        )
        .unwrap();
    assert!(r.live && r.config);
    assert!(d
        .dumpxml("default", false)
        .unwrap()
        .contains("<hostname>web</hostname>"));
    assert!(d
        .dumpxml("default", true)
        .unwrap()
        .contains("<hostname>web</hostname>"));
    assert_eq!(dnsmasq_file(&env, "addnhosts"), "192.168.122.50\tweb\t\n");
    // --config only: the running network is not touched, nothing runs.
    env.host.take_records();
    let r = d
        .update(
            "default",
            C::AddLast,
            S::DnsTxt,
            -1,
            "<txt name='t' value='v'/>",
            UpdateFlags::CONFIG,
        )
        .unwrap();
    assert!(!r.live && r.config);
    assert!(argvs(&env).is_empty());
    assert!(d
        .dumpxml("default", true)
        .unwrap()
        .contains("<txt name='t' value='v'/>"));
    assert!(!d.dumpxml("default", false).unwrap().contains("<txt"));
    // Inactive network: current = config; --live refused with libvirt's text.
    d.destroy("default").unwrap();
    env.host.take_records();
    let r = d
        .update(
            "default",
            C::Delete,
            S::DnsTxt,
            -1,
            "<txt name='t'/>",
            UpdateFlags::CURRENT,
        )
        .unwrap();
    assert!(!r.live && r.config);
    assert!(!d.dumpxml("default", true).unwrap().contains("<txt"));
    let e = d
        .update(
            "default",
            C::AddLast,
            S::IpDhcpHost,
            -1,
            HOST2,
            UpdateFlags::LIVE,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Requested operation is not valid: network is not running"
    );
    assert!(argvs(&env).is_empty());
    let e = d
        .update(
            "nope",
            C::AddLast,
            S::IpDhcpHost,
            -1,
            HOST2,
            UpdateFlags::CURRENT,
        )
        .unwrap_err();
    assert!(matches!(e, DriverError::NoNetwork(_)), "{e}");
}

#[test]
fn range_txt_and_srv_restart_dnsmasq_with_the_new_configuration() {
    let env = Env::new();
    let d = started(&env, Backend::Nftables);
    let (pid, _, _) = the_dnsmasq(&env.state());
    env.host.take_records();
    d.update(
        "default",
        C::AddLast,
        S::IpDhcpRange,
        -1,
        "<range start='192.168.122.110' end='192.168.122.120'/>",
        UpdateFlags::LIVE,
    )
    .unwrap();
    let cmds = argvs(&env);
    assert!(cmds.contains(&format!("kill {pid}")), "{cmds:#?}");
    let (pid2, _, conf) = the_dnsmasq(&env.state());
    assert_ne!(pid2, pid, "a new dnsmasq");
    assert!(
        conf.contains("dhcp-range=192.168.122.110,192.168.122.120,255.255.255.0\n"),
        "{conf}"
    );
    assert!(dnsmasq_file(&env, "conf").contains("192.168.122.110"));
    // The firewall was swapped too (ranges are in the rules' scope).
    assert!(cmds.iter().any(|c| c.starts_with("nft")), "{cmds:#?}");
    for (section, xml) in [
        (S::DnsTxt, "<txt name='example' value='text'/>"),
        (S::DnsSrv, "<srv service='name' protocol='tcp' domain='test-domain-name' target='.' port='1024' priority='10' weight='10'/>"),
    ] {
        let (before, _, _) = the_dnsmasq(&env.state());
        d.update("default", C::AddLast, section, -1, xml, UpdateFlags::CURRENT).unwrap();
        let cmds = argvs(&env);
        assert!(!cmds.iter().any(|c| c.starts_with("nft") || c.starts_with("iptables")), "{section}: {cmds:#?}");
        let (after, _, conf) = the_dnsmasq(&env.state());
        assert_ne!(before, after, "{section}: restarted");
        let want = if section == S::DnsTxt { "txt-record=example,text" } else { "srv-host=_name._tcp.test-domain-name" };
        assert!(conf.contains(want), "{section}: {conf}");
    }
    // Deleting the only DHCP range and host stops DHCP: dnsmasq restarted
    // (it still serves DNS).
    d.update(
        "default",
        C::Delete,
        S::IpDhcpRange,
        -1,
        "<range start='192.168.122.2' end='192.168.122.100'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    d.update(
        "default",
        C::Delete,
        S::IpDhcpRange,
        -1,
        "<range start='192.168.122.110' end='192.168.122.120'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    let (before, _, _) = the_dnsmasq(&env.state());
    d.update(
        "default",
        C::Delete,
        S::IpDhcpHost,
        -1,
        "<host mac='52:54:00:00:00:01'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    let (after, _, conf) = the_dnsmasq(&env.state());
    assert_ne!(before, after);
    assert!(!conf.contains("dhcp"), "{conf}");
    d.destroy("default").unwrap();
    assert!(env.state().procs.procs.is_empty());
}

#[test]
fn a_refused_update_changes_nothing() {
    let env = Env::new();
    let d = started(&env, Backend::Iptables);
    let host = env.state();
    let files = |env: &Env| {
        ["conf", "hostsfile", "addnhosts"]
            .map(|e| dnsmasq_file(env, e))
            .join("|")
            + &std::fs::read_to_string(env.state_dir().join("default.xml")).unwrap()
            + &std::fs::read_to_string(env.config_dir().join("default.xml")).unwrap()
    };
    let saved = files(&env);
    env.host.take_records();
    let cases: &[(C, S, i32, &str, &str)] = &[
        (C::AddLast, S::Bridge, -1, "<bridge name='x'/>", "Operation not supported: can't update 'bridge' section of network 'default'"),
        (C::AddLast, S::Ip, -1, "<ip address='10.0.0.1'/>", "Operation not supported: can't update 'ip' section of network 'default'"),
        (C::Modify, S::ForwardPf, -1, "<pf dev='eth0'/>", "Operation not supported: can't update 'forward pf' section of network 'default'"),
        (C::AddLast, S::IpDhcpHost, -1, "<range start='192.168.122.3' end='192.168.122.4'/>", "1:1: unexpected element <range>, expecting <host>, while updating network 'default' (at /range)"),
        (C::Modify, S::IpDhcpRange, -1, "<range start='192.168.122.3' end='192.168.122.4'/>", "Operation not supported: dhcp ranges cannot be modified, only added or deleted"),
        (C::AddLast, S::IpDhcpHost, 3, HOST2, "Requested operation is not valid: couldn't update dhcp host entry - no <ip> element found at index 3 in network 'default'"),
        (C::AddLast, S::IpDhcpHost, -1, "<host mac='52:54:00:00:00:09' name='one' ip='192.168.122.209'/>", "Requested operation is not valid: there is an existing dhcp host entry in network 'default' that matches \"<host mac='52:54:00:00:00:09' name='one' ip='192.168.122.209'/>\""),
        (C::Delete, S::IpDhcpHost, -1, "<host/>", "1:1: At least one of name, mac, or ip attribute must be specified for static host definition in network 'default' (at /host)"),
        (C::Modify, S::DnsSrv, -1, "<srv service='a' protocol='tcp'/>", "Operation not supported: DNS SRV records cannot be modified, only added or deleted"),
        (C::Modify, S::ForwardInterface, -1, "<interface dev='eth0'/>", "Operation not supported: forward interface entries cannot be modified, only added or deleted"),
        (C::AddLast, S::DnsHost, -1, "<host ip='10.0.0.1'>", "1:1: unexpected end of input"),
    ];
    for (c, s, idx, xml, want) in cases {
        let e = d
            .update("default", *c, *s, *idx, xml, UpdateFlags::CURRENT)
            .unwrap_err();
        let got = e.to_string();
        if want.starts_with("1:1") {
            assert!(got.starts_with("1:"), "{s} {c}: {got}");
        } else {
            assert_eq!(got, *want, "{s} {c}");
        }
    }
    assert!(argvs(&env).is_empty(), "a refused update runs nothing");
    assert_same_host(&host, &env.state(), "after refused updates");
    assert_eq!(files(&env), saved);
    // A result that is not a valid definition is refused too (libvirt's
    // final format/parse check): DNS data in a network with DNS off.
    let env2 = Env::new();
    let d2 = env2.driver(Backend::Iptables);
    d2.define(
        "<network><name>off</name><dns enable='no'/><ip address='10.9.0.1' prefix='24'/></network>",
    )
    .unwrap();
    let e = d2
        .update(
            "off",
            C::AddLast,
            S::DnsTxt,
            -1,
            "<txt name='a' value='b'/>",
            UpdateFlags::CURRENT,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("Extra data in disabled network 'off'"),
        "{e}"
    );
}

#[test]
fn portgroups_and_forward_interfaces_touch_only_the_definition_or_the_rules() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    d.define("<network><name>r</name><bridge name='virbr5'/><forward mode='route' dev='eth1'><interface dev='eth1'/></forward><ip address='10.5.0.1' prefix='24'/></network>").unwrap();
    d.start("r").unwrap();
    let rules = |env: &Env| env.state().dump_section(virtnet_fake::Section::Iptables);
    assert!(rules(&env).contains("-o eth1"), "{}", rules(&env));
    env.host.take_records();
    d.update(
        "r",
        C::AddLast,
        S::Portgroup,
        -1,
        "<portgroup name='pg' default='yes'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    assert!(
        argvs(&env).is_empty(),
        "a portgroup changes nothing on the host"
    );
    let e = d
        .update(
            "r",
            C::AddLast,
            S::Portgroup,
            -1,
            "<portgroup name='other' default='yes'/>",
            UpdateFlags::CURRENT,
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "Requested operation is not valid: a different portgroup entry in network 'r' is already set as the default. Only one default is allowed.");
    // A route network forwards through one device at most (libvirt's
    // parser): a second one is refused by the final check.
    let e = d
        .update(
            "r",
            C::AddLast,
            S::ForwardInterface,
            -1,
            "<interface dev='eth2'/>",
            UpdateFlags::CURRENT,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("multiple forwarding interfaces specified for network 'r'"),
        "{e}"
    );
    assert!(argvs(&env).is_empty());
    // Deleting the device: the rules are made again, without it.
    d.update(
        "r",
        C::Delete,
        S::ForwardInterface,
        -1,
        "<interface dev='eth1'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    let cmds = argvs(&env);
    assert!(cmds.iter().any(|c| c.starts_with("iptables")), "{cmds:#?}");
    let now = rules(&env);
    assert!(
        !now.contains("eth1") && now.contains("10.5.0.0/24"),
        "{now}"
    );
    d.update(
        "r",
        C::AddFirst,
        S::ForwardInterface,
        -1,
        "<interface dev='eth2'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    assert!(rules(&env).contains("-o eth2"), "{}", rules(&env));
    let e = d
        .update(
            "r",
            C::AddLast,
            S::ForwardInterface,
            -1,
            "<interface dev='eth2'/>",
            UpdateFlags::CURRENT,
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "Requested operation is not valid: there is an existing interface entry in network 'r' that matches \"<interface dev='eth2'>\"");
    d.destroy("r").unwrap();
    let after = env.state();
    assert!(
        traces_of(&after, "virbr5", "10.5.0.").is_empty(),
        "{:?}",
        traces_of(&after, "virbr5", "10.5.0.")
    );

    // A macvtap pool (mode bridge without a bridge): the pool changes,
    // nothing runs on the host.
    d.define("<network><name>pool</name><forward mode='bridge'><interface dev='eth3'/></forward></network>").unwrap();
    d.start("pool").unwrap();
    env.host.take_records();
    d.update(
        "pool",
        C::AddLast,
        S::ForwardInterface,
        -1,
        "<interface dev='eth4'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    assert!(argvs(&env).is_empty());
    let xml = d.dumpxml("pool", false).unwrap();
    assert!(
        xml.contains("<interface dev='eth3'/>\n    <interface dev='eth4'/>"),
        "{xml}"
    );
}

/// A daemon restart refreshes every live dnsmasq (libvirt
/// networkRefreshDhcpDaemon: hosts files, then SIGHUP): a hosts file that
/// already says what it should is left as it is (not rewritten: no new
/// inode, no fsync); one that is missing or says something else is
/// written again.
#[test]
fn restart_refresh_rewrites_only_hosts_files_that_differ() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let path = |ext: &str| env.state_dir().join(format!("dnsmasq/default.{ext}"));
    let ino = |ext: &str| std::fs::metadata(path(ext)).unwrap().ino();
    let (pid, hups) = {
        let _d = started(&env, Backend::Nftables);
        let (pid, hups, _) = the_dnsmasq(&env.state());
        (pid, hups)
    };
    let hosts = dnsmasq_file(&env, "hostsfile");
    assert_eq!(hosts, "52:54:00:00:00:01,192.168.122.201,one\n");
    let addn = dnsmasq_file(&env, "addnhosts");
    let (hosts_ino, addn_ino) = (ino("hostsfile"), ino("addnhosts"));
    env.host.take_records();

    // Restart with both files as the start wrote them: untouched, SIGHUP.
    let d = env.driver(Backend::Nftables);
    let rep = d.reconcile().unwrap();
    assert!(rep.problems.is_empty(), "{rep:?}");
    let cmds = argvs(&env);
    assert!(cmds.contains(&format!("kill -0 {pid}")), "{cmds:#?}");
    assert!(cmds.contains(&format!("kill -HUP {pid}")), "{cmds:#?}");
    assert_eq!(the_dnsmasq(&env.state()).1, hups + 1);
    assert_eq!(
        (ino("hostsfile"), ino("addnhosts")),
        (hosts_ino, addn_ino),
        "an unchanged hosts file was rewritten"
    );
    drop(d);

    // One file altered, the other gone: both written again.
    std::fs::write(path("hostsfile"), "52:54:00:00:00:09,10.0.0.9,stale\n").unwrap();
    std::fs::remove_file(path("addnhosts")).unwrap();
    let d = env.driver(Backend::Nftables);
    let rep = d.reconcile().unwrap();
    assert!(rep.problems.is_empty(), "{rep:?}");
    assert_eq!(dnsmasq_file(&env, "hostsfile"), hosts);
    assert_eq!(dnsmasq_file(&env, "addnhosts"), addn);
    assert!(path("addnhosts").exists());
    assert_eq!(the_dnsmasq(&env.state()).1, hups + 2);
    d.destroy("default").unwrap();
}
