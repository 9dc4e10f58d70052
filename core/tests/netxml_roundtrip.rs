//! Everything virtnet writes back — config files and status files — reads
//! back to exactly the definition it was made from, whatever the free-text
//! fields hold: markup characters, quotes, tab, LF and CR included (libvirt
//! writes tab/LF/CR in attributes literally, so they come back as spaces;
//! virtnet escapes them).

use std::path::Path;

use proptest::prelude::*;
use virtnet_core::netxml::{self, NetworkDef};
use virtnet_core::store::{self, NetworkStatus};

const BASE: &str = "<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>rt</name>
  <uuid>81ff0d90-c91e-6742-64da-4a736edb9a8e</uuid>
  <title>t</title>
  <description>d</description>
  <forward mode='nat'/>
  <bridge name='virbr7' zone='z' stp='on' delay='0'/>
  <mac address='52:54:00:12:34:56'/>
  <domain name='example'/>
  <dns>
    <forwarder domain='fwd' addr='8.8.8.8'/>
    <txt name='txt' value='v'/>
    <srv service='name' protocol='tcp' domain='dom' target='tgt' port='1' priority='2' weight='3'/>
    <host ip='10.7.0.9'><hostname>h</hostname></host>
  </dns>
  <ip address='10.7.0.1' prefix='24'>
    <tftp root='/srv/tftp'/>
    <dhcp>
      <range start='10.7.0.2' end='10.7.0.8'/>
      <host mac='52:54:00:00:00:01' name='host1' ip='10.7.0.5'/>
      <bootp file='pxe.0'/>
    </dhcp>
  </ip>
  <portgroup name='pg'/>
  <dnsmasq:options>
    <dnsmasq:option value='x'/>
  </dnsmasq:options>
</network>
";

/// Free text with every character that needs care in XML (and a few that
/// matter to nft and dnsmasq).
fn hostile() -> impl Strategy<Value = String> {
    "[a-z<>&\"' \t\n\r;#{}\u{e9}\u{1f600}%/-]{1,12}"
}

#[derive(Debug, Clone)]
struct Texts {
    domain: String,
    fwd_domain: String,
    txt_value: String,
    srv_domain: String,
    srv_target: String,
    hostname: String,
    tftp_root: String,
    bootp_file: String,
    mac_tail: String,
    portgroup: String,
    zone: String,
    description: String,
    title: String,
    option: String,
    taint: String,
}

fn texts() -> impl Strategy<Value = Texts> {
    (
        (
            hostile(),
            hostile(),
            hostile(),
            hostile(),
            hostile(),
            hostile(),
            hostile(),
            hostile(),
        ),
        (
            hostile(),
            hostile(),
            hostile(),
            hostile(),
            "[^\n\r]{1,12}",
            hostile(),
            hostile(),
        ),
    )
        .prop_map(|(a, b)| Texts {
            domain: a.0,
            fwd_domain: a.1,
            txt_value: a.2,
            srv_domain: a.3,
            srv_target: a.4,
            hostname: a.5,
            tftp_root: a.6,
            bootp_file: a.7,
            // libvirt's MAC parser stops at a space after the sixth group
            // and keeps the whole attribute: what follows is free text.
            mac_tail: format!(" {}", b.0),
            portgroup: b.1,
            zone: b.2,
            description: b.3,
            title: b.4.chars().filter(|c| !c.is_control()).collect::<String>() + "t",
            option: b.5,
            taint: b.6,
        })
}

fn with_texts(t: &Texts) -> NetworkDef {
    let mut d = netxml::parse(BASE).expect("base parses");
    d.domain.name = Some(t.domain.clone());
    d.dns.forwarders[0].domain = Some(t.fwd_domain.clone());
    d.dns.txts[0].value = t.txt_value.clone();
    d.dns.srvs[0].domain = Some(t.srv_domain.clone());
    d.dns.srvs[0].target = Some(t.srv_target.clone());
    d.dns.hosts[0].hostnames[0] = t.hostname.clone();
    d.ips[0].tftp_root = Some(t.tftp_root.clone());
    if let Some(b) = d.ips[0].bootp.as_mut() {
        b.file = t.bootp_file.clone();
    }
    d.ips[0].hosts[0].mac = Some(format!("52:54:00:00:00:01{}", t.mac_tail));
    d.portgroups[0].name = t.portgroup.clone();
    d.bridge.zone = Some(t.zone.clone());
    d.description = Some(t.description.clone());
    d.title = Some(t.title.clone());
    d.dnsmasq_options[0] = t.option.clone();
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn config_and_status_files_read_back_exactly(t in texts()) {
        let def = with_texts(&t);
        // The config file (inactive form).
        let text = store::format_config(&def);
        let back = netxml::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &def, "config file:\n{}", text);
        // The status file (live form), with a taint flag.
        let mut st = NetworkStatus::new(def.clone(), None);
        st.taints.push(t.taint.clone());
        let text = store::format_status(&st);
        let back = store::parse_status(&text, Path::new("rt.xml"))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back.def, &def, "status file:\n{}", text);
        prop_assert_eq!(&back.taints, &st.taints);
    }
}
