//! DHCP leases: the driver reads what the leases helper stored for the
//! network's bridge (libvirt networkGetDHCPLeases), and undefine removes the
//! file. The helper's own logic is unit-tested in `dnsmasq::leases`; the real
//! dnsmasq running the real helper is in `cli/tests/leases_realhost.rs`.

mod driver_common;

use driver_common::*;
use virtnet_core::dnsmasq::leases::{self, Event};
use virtnet_core::driver::DriverError;
use virtnet_core::firewall::Backend;

const NET: &str = "<network><name>lz</name><bridge name='virbr9'/><forward/>\
<ip address='10.9.0.1' netmask='255.255.255.0'><dhcp><range start='10.9.0.2' end='10.9.0.99'/></dhcp></ip>\
<ip family='ipv6' address='2001:db8:9::1' prefix='64'><dhcp><range start='2001:db8:9::10' end='2001:db8:9::ff'/></dhcp></ip>\
</network>";

fn helper(dir: &std::path::Path, args: &[&str], set: impl FnOnce(&mut Event)) {
    let mut e = Event {
        args: args.iter().map(|s| s.to_string()).collect(),
        interface: Some("virbr9".into()),
        ..Event::default()
    };
    set(&mut e);
    leases::run_helper(dir, &e).unwrap();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn leases_are_read_filtered_and_removed_with_the_definition() {
    let env = Env::new();
    let d = env.driver(Backend::Nftables);
    d.define(NET).unwrap();
    // No file yet: no leases, no error.
    assert_eq!(d.dhcp_leases("lz", None).unwrap(), vec![]);
    d.start("lz").unwrap();
    let dir = d.config().dnsmasq_dir.clone();
    let later = (now() + 3600).to_string();
    helper(&dir, &["add", "52:54:00:00:00:0B", "10.9.0.11", "b"], |e| {
        e.lease_expires = Some(later.clone());
        e.client_id = Some("01:52:54:00:00:00:0b".into());
    });
    helper(&dir, &["add", "52:54:00:00:00:0a", "10.9.0.10"], |e| {
        e.lease_expires = Some("0".into())
    });
    // Expired: stored, not shown.
    helper(&dir, &["add", "52:54:00:00:00:0c", "10.9.0.12"], |e| {
        e.lease_expires = Some((now() - 10).to_string())
    });
    helper(&dir, &["add", "00:01:00:01:2a:2b", "2001:db8:9::20"], |e| {
        e.iaid = Some("5".into());
        e.mac = Some("52:54:00:00:00:0a".into());
        e.server_duid = Some("00:01:00:01:ff".into());
        e.lease_expires = Some(later.clone());
    });
    let all = d.dhcp_leases("lz", None).unwrap();
    let got: Vec<(String, String, u32, bool)> = all
        .iter()
        .map(|l| (l.mac.clone(), l.ip_address.clone(), l.prefix, l.ipv6))
        .collect();
    assert_eq!(
        got,
        vec![
            ("52:54:00:00:00:0B".into(), "10.9.0.11".into(), 24, false),
            ("52:54:00:00:00:0a".into(), "10.9.0.10".into(), 24, false),
            (
                "52:54:00:00:00:0a".into(),
                "2001:db8:9::20".into(),
                64,
                true
            ),
        ]
    );
    assert_eq!(all[0].hostname.as_deref(), Some("b"));
    assert_eq!(all[2].iaid.as_deref(), Some("5"));
    assert!(all.iter().all(|l| l.interface == "virbr9"));
    // --mac: case-insensitive, validated.
    let only = d.dhcp_leases("lz", Some("52:54:00:00:00:0b")).unwrap();
    assert_eq!(only.len(), 1);
    assert!(matches!(
        d.dhcp_leases("lz", Some("52:54:00:zz")),
        Err(DriverError::Invalid(m)) if m.contains("invalid MAC address")
    ));
    assert!(matches!(
        d.dhcp_leases("nope", None),
        Err(DriverError::NoNetwork(_))
    ));
    // Destroy keeps the leases (libvirt); undefine of the inactive network
    // removes the file.
    d.destroy("lz").unwrap();
    assert_eq!(d.dhcp_leases("lz", None).unwrap().len(), 3);
    let file = leases::file_path(&dir, "virbr9");
    assert!(file.exists());
    d.undefine("lz").unwrap();
    assert!(!file.exists(), "{} left behind", file.display());
}

#[test]
fn a_corrupt_leases_file_is_an_error_naming_it() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    d.define(NET).unwrap();
    let dir = d.config().dnsmasq_dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(leases::file_path(&dir, "virbr9"), "[{\"ip-address\": \"x\"").unwrap();
    let e = d.dhcp_leases("lz", None).unwrap_err().to_string();
    assert!(e.contains("virbr9.status:1:"), "{e}");
}

#[test]
fn dnsmasq_is_started_with_the_bridge_and_the_leases_dir_in_its_environment() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    d.define(NET).unwrap();
    d.start("lz").unwrap();
    let dnsmasq = env
        .faults
        .log()
        .into_iter()
        .map(|g| g.cmd)
        .find(|c| {
            c.program().ends_with("dnsmasq") && c.argv.iter().any(|a| a.starts_with("--conf-file="))
        })
        .expect("dnsmasq was run");
    let dir = d.config().dnsmasq_dir.to_string_lossy().into_owned();
    assert!(
        dnsmasq
            .env
            .contains(&("VIR_BRIDGE_NAME".into(), "virbr9".into())),
        "{:?}",
        dnsmasq.env
    );
    assert!(
        dnsmasq.env.contains(&(leases::DIR_ENV.into(), dir)),
        "{:?}",
        dnsmasq.env
    );
}
