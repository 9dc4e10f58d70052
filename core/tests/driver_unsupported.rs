//! Definition features virtnet cannot apply are refused at define (and at
//! start, for a definition saved earlier) with a message naming the
//! element and its position, never accepted and silently ignored.

mod driver_common;

use driver_common::*;
use virtnet_core::firewall::Backend;

const CASES: &[(&str, &str)] = &[
    (
        "<network>\n  <name>q</name>\n  <bridge name='virbr9' macTableManager='libvirt'/>\n</network>\n",
        "3:25: unsupported configuration: <bridge macTableManager='libvirt'> of network 'q' cannot be applied by virtnet; remove it or use 'kernel' (at /network/bridge[1]/@macTableManager)",
    ),
    (
        "<network>\n  <name>q</name>\n  <domain name='example' localOnly='yes' register='yes'/>\n  <ip address='10.7.0.1' prefix='24'/>\n</network>\n",
        "3:42: unsupported configuration: <domain register='yes'> of network 'q' (systemd-resolved registration) cannot be applied by virtnet; remove it (at /network/domain[1]/@register)",
    ),
];

#[test]
fn features_virtnet_cannot_apply_are_refused_at_define() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    for (xml, want) in CASES {
        let e = d.define(xml).unwrap_err().to_string();
        assert_eq!(e, *want);
        assert!(d.list().is_empty(), "nothing defined");
    }
    // What virtnet can apply stays accepted: network and portgroup
    // bandwidth, macTableManager='kernel', register='no'.
    d.define("<network><name>ok</name><bridge name='virbr8' macTableManager='kernel'/><domain name='x' register='no'/><bandwidth><inbound average='10'/></bandwidth><portgroup name='p'><bandwidth><inbound average='10'/></bandwidth></portgroup></network>").unwrap();
}

#[test]
fn a_saved_definition_with_such_a_feature_does_not_start() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    d.define("<network><name>q</name><ip address='10.7.0.1' prefix='24'/></network>")
        .unwrap();
    drop(d);
    // As an earlier release would have saved it.
    let path = env.config_dir().join("q.xml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("<bridge ", "<bridge macTableManager='libvirt' "),
    )
    .unwrap();
    let d = env.driver(Backend::Iptables);
    let before = env.state();
    let e = d.start("q").unwrap_err().to_string();
    assert!(
        e.contains("<bridge macTableManager='libvirt'> of network 'q'"),
        "{e}"
    );
    assert_same_host(&before, &env.state(), "refused start");
    assert!(d.pending_journals().is_empty());
}
