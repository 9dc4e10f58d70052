//! Table-driven checks that the parser and the define-time validation reject
//! what libvirt 11.3.0 rejects, with libvirt's message and a position, and
//! accept the edge cases libvirt accepts.

use virtnet_core::netxml::{self, ErrorKind, FormatFlags, NetworkDef};

/// A network document: `inner` is placed inside `<network>` after the name.
fn net(inner: &str) -> String {
    format!("<network>\n  <name>n</name>\n{inner}\n</network>\n")
}

/// A NAT network with one IPv4 <ip>; `ip_inner` goes inside that <ip>.
fn nat_ip(ip_inner: &str) -> String {
    net(&format!(
        "  <forward mode='nat'/>\n  <ip address='192.168.122.1' netmask='255.255.255.0'>\n{ip_inner}\n  </ip>"
    ))
}

struct Case {
    label: &'static str,
    xml: String,
    kind: ErrorKind,
    message: &'static str,
    /// Expected (line, column) when the position is known precisely.
    pos: Option<(usize, usize)>,
}

fn parse_cases() -> Vec<Case> {
    use ErrorKind::*;
    let c = |label, xml: String, kind, message, pos| Case {
        label,
        xml,
        kind,
        message,
        pos,
    };
    vec![
        c("not xml", "<network><name>x</name>".into(), Syntax, "not closed", None),
        c("wrong root", "<netwerk><name>x</name></netwerk>".into(), Syntax, "expecting root element of 'network', not 'netwerk'", Some((1, 1))),
        c("mismatched end tag", "<network><name>x</nam></network>".into(), Syntax, "malformed XML", None),
        c("two roots", "<network><name>x</name></network><network/>".into(), Syntax, "extra content", Some((1, 34))),
        c("unescaped < in attribute", "<network a='<'><name>n</name></network>".into(), Syntax, "unescaped '<' not allowed", Some((1, 10))),
        c("unquoted attribute", "<network a=b><name>n</name></network>".into(), Syntax, "attribute value must be enclosed in quotes", Some((1, 12))),
        c("duplicate attribute", "<network><name>n</name><ip address='10.0.0.1' address='10.0.0.2'/></network>".into(), Syntax, "attribute redefined", Some((1, 47))),
        c("unknown entity", "<network><name>n&foo;</name></network>".into(), Syntax, "unrecognized entity", None),
        c("forbidden character", "<network><name>n\u{1}</name></network>".into(), Syntax, "invalid XML character U+0001", Some((1, 17))),
        c("forbidden character reference", "<network><name>n&#1;</name></network>".into(), Syntax, "invalid XML character U+0001", None),
        c("cdata end in text", "<network><name>a]]>b</name></network>".into(), Syntax, "']]>' not allowed", None),
        c("bad element name", "<network><name>n</name><a$b/></network>".into(), Syntax, "invalid element name 'a$b'", Some((1, 24))),
        c("undeclared prefix", "<network><name>n</name><a:b/></network>".into(), Syntax, "namespace prefix of element 'a:b' is not defined", None),
        c("late xml declaration", " <?xml version='1.0'?><network><name>n</name></network>".into(), Syntax, "XML declaration allowed only at the start", Some((1, 2))),
        c("no name", "<network><uuid>81ff0d90-c91e-6742-64da-4a736edb9a8e</uuid></network>".into(), NoName, "missing name", None),
        c("empty name", "<network><name></name></network>".into(), NoName, "missing name", None),
        c("slash in name", "<network><name>a/b</name></network>".into(), Invalid, "invalid char in name: /", Some((1, 10))),
        c("bad uuid", net("  <uuid>81ff0d90-c91e-6742-64da-4a736edb9a8</uuid>"), Invalid, "malformed uuid element", Some((3, 3))),
        c("title newline", net("  <title>a\nb</title>"), Invalid, "Network title can't contain newlines", None),
        c("bad root ipv6", "<network ipv6='maybe'><name>n</name></network>".into(), Invalid, "Invalid ipv6 setting 'maybe' in network 'n'", Some((1, 10))),
        c("bad trustGuestRxFilters", "<network trustGuestRxFilters='default'><name>n</name></network>".into(), Invalid, "Invalid value for attribute 'trustGuestRxFilters' in element 'network': 'default'.", None),
        c("register without localOnly", net("  <domain name='x' register='yes'/>"), Unsupported, "attribute 'register=yes' in <domain> element requires 'localOnly=yes' in network n", Some((3, 20))),
        c("bad localOnly", net("  <domain name='x' localOnly='Yes'/>"), Invalid, "Invalid value for attribute 'localOnly' in element 'domain': 'Yes'.", None),
        c("bandwidth classID", net("  <bandwidth classID='1'><inbound average='1'/></bandwidth>"), Invalid, "classID attribute not supported", None),
        c("bandwidth floor", net("  <bandwidth><inbound average='1' floor='2'/></bandwidth>"), Unsupported, "floor attribute is not supported for this config", None),
        c("bandwidth peak without average", net("  <bandwidth><inbound floor='1' peak='2'/></bandwidth>"), Unsupported, "'peak' and 'burst' require 'average' attribute", None),
        c("bandwidth empty rate", net("  <bandwidth><outbound/></bandwidth>"), Invalid, "Missing mandatory average or floor attributes", None),
        c("bandwidth negative", net("  <bandwidth><inbound average='-1'/></bandwidth>"), Invalid, "Expected non-negative integer value", None),
        c("vlan no tag", net("  <vlan/>"), Invalid, "missing tag id", None),
        c("vlan tag too big", net("  <vlan><tag id='4096'/></vlan>"), Invalid, "vlan tag id 4096 too large (maximum 4095)", None),
        c("vlan trunk no multiple", net("  <vlan trunk='no'><tag id='1'/><tag id='2'/></vlan>"), Invalid, "trunk='yes' is required for more than one vlan tag", None),
        c("vlan trunk garbage", net("  <vlan trunk='maybe'><tag id='1'/></vlan>"), Invalid, "must be yes or no", None),
        c("vlan two native", net("  <vlan><tag id='1' nativeMode='tagged'/><tag id='2' nativeMode='untagged'/></vlan>"), Invalid, "duplicate native vlan setting", None),
        c("port isolated garbage", net("  <port isolated='1'/>"), Invalid, "Invalid value for attribute 'isolated' in element 'port': '1'.", None),
        c("bad delay", net("  <bridge name='b' delay='-1'/>"), Invalid, "Invalid delay value in network 'n'", Some((3, 20))),
        c("bad macTableManager", net("  <bridge macTableManager='default'/>"), Invalid, "Invalid macTableManager setting 'default' in network 'n'", None),
        c("bad mac", net("  <mac address='52:54:00:zz:00:01'/>"), Invalid, "Invalid bridge mac address '52:54:00:zz:00:01' in network 'n'", None),
        c("multicast mac", net("  <mac address='01:54:00:00:00:01'/>"), Invalid, "Invalid multicast bridge mac address", None),
        c("bad mtu", net("  <mtu size='big'/>"), Invalid, "Invalid mtu size 'big' in network 'n'", None),
        c("dns bad enable", net("  <dns enable='on'/>"), Invalid, "Invalid value for attribute 'enable' in element 'dns': 'on'.", None),
        c("dns forwarder empty", net("  <dns><forwarder/></dns>"), Invalid, "must contain at least one of addr or domain", None),
        c("dns forwarder bad addr", net("  <dns><forwarder addr='1.2.3.x'/></dns>"), Invalid, "Invalid forwarder IP address '1.2.3.x' in network 'n'", None),
        c("dns host no hostname", net("  <dns><host ip='1.2.3.4'/></dns>"), Invalid, "Missing hostname in network 'n' DNS HOST record", None),
        c("dns host empty hostname", net("  <dns><host ip='1.2.3.4'><hostname/></host></dns>"), Invalid, "Missing hostname in network 'n' DNS HOST record", None),
        c("dns host no ip", net("  <dns><host><hostname>a</hostname></host></dns>"), Invalid, "Missing IP address in network 'n' DNS HOST record", None),
        c("dns srv no service", net("  <dns><srv protocol='tcp'/></dns>"), Invalid, "missing required service attribute", None),
        c("dns srv bad service char", net("  <dns><srv service='a.b' protocol='tcp'/></dns>"), Invalid, "invalid character in service attribute 'a.b'", None),
        c("dns srv bad protocol", net("  <dns><srv service='a' protocol='t_p'/></dns>"), Invalid, "invalid character in protocol attribute 't_p'", None),
        c("dns srv port without target", net("  <dns><srv service='a' protocol='tcp' port='1'/></dns>"), Invalid, "DNS SRV port attribute not permitted without target", None),
        c("dns srv port zero", net("  <dns><srv service='a' protocol='tcp' target='t' port='0'/></dns>"), Invalid, "invalid DNS SRV port attribute for service 'a'", None),
        c("dns srv weight too big", net("  <dns><srv service='a' protocol='tcp' target='t' weight='65536'/></dns>"), Invalid, "invalid DNS SRV weight attribute", None),
        c("dns txt comma", net("  <dns><txt name='a,b' value='v'/></dns>"), Invalid, "prohibited character in DNS TXT record name 'a,b'", None),
        c("dns txt no value", net("  <dns><txt name='a'/></dns>"), Invalid, "missing required value attribute in DNS TXT record named 'a'", None),
        c("dns disabled extra", net("  <dns enable='no'><forwarder addr='8.8.8.8'/></dns>"), Invalid, "Extra data in disabled network 'n'", None),
        c("virtualport no type", net("  <virtualport/>"), Invalid, "missing required virtualport type", None),
        c("virtualport unknown type", net("  <virtualport type='foo'/>"), Unsupported, "unknown virtualport type foo", None),
        c("virtualport extra", net("  <virtualport type='802.1Qbh'><parameters managerid='1'/></virtualport>"), Invalid, "extra managerid unsupported in <virtualport type='802.1Qbh'>", None),
        c("virtualport managerid range", net("  <virtualport type='802.1Qbg'><parameters managerid='256'/></virtualport>"), Invalid, "value of managerid out of range", None),
        c("virtualport profileid long", net("  <virtualport type='802.1Qbh'><parameters profileid='0123456789012345678901234567890123456789'/></virtualport>"), Invalid, "profileid parameter too long", None),
        c("portgroup no name", net("  <portgroup/>"), Invalid, "Missing required name attribute in portgroup", None),
        c("ip no address", net("  <ip netmask='255.255.255.0'/>"), Invalid, "Missing required address attribute in network 'n'", Some((3, 3))),
        c("ip bad address", net("  <ip address='192.168.1.300'/>"), Invalid, "Invalid address '192.168.1.300' in network 'n'", Some((3, 7))),
        c("ip bad netmask", net("  <ip address='192.168.1.1' netmask='x'/>"), Invalid, "Invalid netmask 'x' in network 'n'", None),
        c("ip netmask and prefix", net("  <ip address='192.168.1.1' netmask='255.255.255.0' prefix='24'/>"), Unsupported, "cannot have both a prefix and a netmask", None),
        c("ip v4 prefix too big", net("  <ip address='192.168.1.1' prefix='33'/>"), Unsupported, "Invalid IPv4 prefix '33' in network 'n'", None),
        c("ip v6 prefix too big", net("  <ip family='ipv6' address='fd00::1' prefix='129'/>"), Unsupported, "Invalid IPv6 prefix '129' in network 'n'", None),
        c("ip v6 address without family", net("  <ip address='fd00::1' prefix='64'/>"), Unsupported, "no family specified for non-IPv4 address 'fd00::1'", None),
        c("ip family mismatch", net("  <ip family='ipv6' address='10.0.0.1'/>"), Unsupported, "Family 'ipv6' specified for non-IPv6 address '10.0.0.1'", None),
        c("ip v6 netmask", net("  <ip family='ipv6' address='fd00::1' netmask='255.255.255.0'/>"), Unsupported, "netmask not allowed for IPv6 address", None),
        c("ip unknown family", net("  <ip family='ipx' address='10.0.0.1'/>"), Invalid, "Unrecognized family 'ipx' in network 'n'", None),
        c("ip prefix garbage", net("  <ip address='10.0.0.1' prefix='24x'/>"), Invalid, "Invalid value for attribute 'prefix' in element 'ip': '24x'. Expected non-negative integer value", None),
        c("ip bad localPtr", net("  <ip address='10.0.0.1' localPtr='true'/>"), Invalid, "Invalid value for attribute 'localPtr' in element 'ip': 'true'.", None),
        c("tftp on v6", net("  <ip family='ipv6' address='fd00::1' prefix='64'><tftp root='/x'/></ip>"), Unsupported, "Unsupported <tftp> element in an IPv6 element in network 'n'", None),
        c("range missing start", nat_ip("    <dhcp><range end='192.168.122.9'/></dhcp>"), Invalid, "Missing 'start' attribute in dhcp range for network 'n'", None),
        c("range outside", nat_ip("    <dhcp><range start='192.168.123.2' end='192.168.123.9'/></dhcp>"), Invalid, "range 192.168.123.2 - 192.168.123.9 is not entirely within network 192.168.122.1/24", None),
        c("range network address", nat_ip("    <dhcp><range start='192.168.122.0' end='192.168.122.9'/></dhcp>"), Invalid, "is the network address", None),
        c("range broadcast", nat_ip("    <dhcp><range start='192.168.122.2' end='192.168.122.255'/></dhcp>"), Invalid, "is the broadcast address", None),
        c("range reversed", nat_ip("    <dhcp><range start='192.168.122.9' end='192.168.122.2'/></dhcp>"), Invalid, "range 192.168.122.9 - 192.168.122.2 is reversed", None),
        c("range family mismatch", nat_ip("    <dhcp><range start='192.168.122.2' end='fd00::9'/></dhcp>"), Invalid, "mismatch of address family in range", None),
        c("range bad address", nat_ip("    <dhcp><range start='192.168.122.x' end='192.168.122.9'/></dhcp>"), BadAddress, "Cannot parse socket address '192.168.122.x'", None),
        c("lease too short", nat_ip("    <dhcp><range start='192.168.122.2' end='192.168.122.9'><lease expiry='119' unit='seconds'/></range></dhcp>"), Unsupported, "The minimum lease time should be greater than 2 minutes", None),
        c("lease bad unit", nat_ip("    <dhcp><range start='192.168.122.2' end='192.168.122.9'><lease expiry='5' unit='days'/></range></dhcp>"), Invalid, "Invalid value for attribute 'unit' in element 'lease': 'days'.", None),
        c("host mac on v6", net("  <ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host mac='52:54:00:00:00:01' ip='fd00::2'/></dhcp></ip>"), Invalid, "Invalid to specify MAC address '52:54:00:00:00:01' in network 'n' IPv6 static host definition", None),
        c("host bad mac", nat_ip("    <dhcp><host mac='52:54:00:00:00' ip='192.168.122.3'/></dhcp>"), Invalid, "Cannot parse MAC address '52:54:00:00:00' in network 'n'", None),
        c("host multicast mac", nat_ip("    <dhcp><host mac='03:54:00:00:00:01' ip='192.168.122.3'/></dhcp>"), Invalid, "expected unicast mac address, found multicast", None),
        c("host bad id", net("  <ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host id='0:1:g' ip='fd00::2'/></dhcp></ip>"), Invalid, "Invalid character 'g' in id '0:1:g' of network 'n'", None),
        c("host bad name", nat_ip("    <dhcp><host name='-x' ip='192.168.122.3'/></dhcp>"), Invalid, "Cannot use host name '-x' in network 'n'", None),
        c("host no mac or name", nat_ip("    <dhcp><host ip='192.168.122.3'/></dhcp>"), Invalid, "must have mac or name attribute", None),
        c("host v6 no id or name", net("  <ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host ip='fd00::2'/></dhcp></ip>"), Invalid, "must have id or name attribute", None),
        c("host no ip", nat_ip("    <dhcp><host name='a'/></dhcp>"), Invalid, "Missing IP address in static host definition for network 'n'", None),
        c("bootp without file", nat_ip("    <dhcp><range start='192.168.122.2' end='192.168.122.9'/><bootp server='1.2.3.4'/></dhcp>"), Invalid, "Missing required attribute 'file' in element 'bootp'", None),
        c("route no gateway", net("  <ip address='10.0.0.1' prefix='24'/>\n  <route address='10.1.0.0' prefix='16'/>"), Invalid, "n: Missing required gateway attribute in route definition", None),
        c("route not network address", net("  <ip address='10.0.0.1' prefix='24'/>\n  <route address='10.1.0.1' prefix='16' gateway='10.0.0.2'/>"), Invalid, "n: Address '10.1.0.1' in route definition is not a network address", None),
        c("route no prefix means 0", net("  <ip address='10.0.0.1' prefix='24'/>\n  <route address='10.1.0.0' gateway='10.0.0.2'/>"), Invalid, "is not a network address", None),
        c("route metric zero", net("  <ip address='10.0.0.1' prefix='24'/>\n  <route address='10.1.0.0' prefix='16' gateway='10.0.0.2' metric='0'/>"), Invalid, "Zero is not permitted", None),
        c("route unreachable gateway", net("  <ip address='10.0.0.1' prefix='24'/>\n  <route address='10.1.0.0' prefix='16' gateway='10.2.0.2'/>"), Unsupported, "unreachable static route gateway '10.2.0.2' specified for network 'n'", Some((4, 41))),
        c("forward unknown mode", net("  <forward mode='nate'/>"), Unsupported, "unknown forwarding type 'nate'", Some((3, 12))),
        c("forward bad driver", net("  <forward mode='hostdev'><driver name='default'/></forward>"), Invalid, "Invalid value for attribute 'name' in element 'driver': 'default'.", None),
        c("nat twice", nat_ip("").replace("<forward mode='nat'/>", "<forward mode='nat'><nat/><nat/></forward>"), Invalid, "Only one <nat> element is allowed in <forward> of network n", None),
        c("nat in route mode", net("  <forward mode='route'><nat/></forward>\n  <ip address='10.0.0.1' prefix='24'/>"), Invalid, "The <nat> element can only be used when <forward> 'mode' is 'nat' in network n", None),
        c("nat address missing end", net("  <forward><nat><address start='1.2.3.4'/></nat></forward>\n  <ip address='10.0.0.1' prefix='24'/>"), Invalid, "missing 'end' attribute in <address> element in <nat>", None),
        c("nat address ipv6", net("  <forward><nat><address start='::1' end='::2'/></nat></forward>\n  <ip address='10.0.0.1' prefix='24'/>"), Invalid, "Bad ipv4 start address '::1'", None),
        c("nat address reversed", net("  <forward><nat><address start='1.2.3.5' end='1.2.3.4'/></nat></forward>\n  <ip address='10.0.0.1' prefix='24'/>"), Invalid, "range 1.2.3.5 - 1.2.3.4 is reversed", None),
        c("nat port end below start", net("  <forward><nat><port start='2000' end='1999'/></nat></forward>\n  <ip address='10.0.0.1' prefix='24'/>"), Invalid, "Missing or invalid 'end' attribute in <port> in <nat>", None),
        c("nat port start too big", net("  <forward><nat><port start='65536' end='65536'/></nat></forward>\n  <ip address='10.0.0.1' prefix='24'/>"), Invalid, "Missing or invalid 'start' attribute in <port> in <nat>", None),
        c("forward dev with pf", net("  <forward mode='passthrough' dev='eth0'><pf dev='eth1'/></forward>"), Invalid, "the <forward> 'dev' attribute cannot be used when <address> or <pf> sub-elements are present", None),
        c("forward dev mismatch", net("  <forward mode='private' dev='eth0'><interface dev='eth1'/></forward>"), Invalid, "<forward dev='eth0'> must match first <interface dev='eth1'/> in network n", None),
        c("interface without dev", net("  <forward mode='private'><interface/></forward>"), Invalid, "Missing required dev attribute in <forward> <interface> element of network n", None),
        c("address without type", net("  <forward mode='hostdev'><address domain='0' bus='1' slot='0' function='1'/></forward>"), Invalid, "missing address type in network n", None),
        c("address netdev type", net("  <forward mode='hostdev'><address type='netdev'/></forward>"), Invalid, "unsupported address type 'netdev' in network n", None),
        c("address unknown type", net("  <forward mode='hostdev'><address type='usb'/></forward>"), Unsupported, "unknown address type 'usb' in network n", None),
        c("address bad slot", net("  <forward mode='hostdev'><address type='pci' domain='0' bus='1' slot='0x20' function='0'/></forward>"), Invalid, "Invalid PCI address slot='0x20', must be <= 0x1F", None),
        c("two pf", net("  <forward mode='passthrough'><pf dev='a'/><pf dev='b'/></forward>"), Invalid, "Only one <pf> element is allowed in <forward> of network n", None),
        c("pf without dev", net("  <forward mode='passthrough'><pf/></forward>"), Invalid, "Missing required dev attribute in <pf> element of network 'n'", None),
        c("nat without ip", net("  <forward mode='nat'/>"), Invalid, "nat forwarding requested, but no IP address provided for network 'n'", Some((3, 3))),
        c("route two interfaces", net("  <forward mode='route'><interface dev='a'/><interface dev='b'/></forward>\n  <ip address='10.0.0.1' prefix='24'/>"), Invalid, "multiple forwarding interfaces specified for network 'n', only one is supported", None),
        c("bridge name in private mode", net("  <forward mode='private'/>\n  <bridge name='br0'/>"), Invalid, "bridge name not allowed in private mode (network 'n')", None),
        c("stp in bridge mode", net("  <forward mode='bridge'/>\n  <bridge name='br0' stp='on'/>"), Invalid, "bridge delay/stp/zone options only allowed in open, route, nat, and isolated mode, not in bridge (network 'n')", None),
        c("bridge name and dev", net("  <forward mode='bridge' dev='eth0'/>\n  <bridge name='br0'/>"), Invalid, "can specify a bridge name or a forward dev, but not both", None),
        c("mtu in bridge mode", net("  <forward mode='bridge'/>\n  <bridge name='br0'/>\n  <mtu size='9000'/>"), Invalid, "mtu size only allowed in open, route, nat, and isolated mode, not in bridge (network 'n')", None),
        c("dnsmasq option without value", "<network xmlns:d='http://libvirt.org/schemas/network/dnsmasq/1.0'><name>n</name><d:options><d:option/></d:options></network>".into(), Invalid, "No dnsmasq options value specified", None),
    ]
}

fn check(case: &Case, res: Result<NetworkDef, netxml::NetXmlError>) -> Option<String> {
    let e = match res {
        Ok(_) => {
            return Some(format!(
                "{}: accepted, expected error {:?} '{}'",
                case.label, case.kind, case.message
            ))
        }
        Err(e) => e,
    };
    if e.kind != case.kind || !e.message.contains(case.message) {
        return Some(format!(
            "{}: got {:?} '{}', expected {:?} containing '{}'",
            case.label, e.kind, e.message, case.kind, case.message
        ));
    }
    if e.line().is_none() {
        return Some(format!("{}: error has no position: {e}", case.label));
    }
    if let Some((l, c)) = case.pos {
        if (e.line(), e.column()) != (Some(l), Some(c)) {
            return Some(format!(
                "{}: position {:?}:{:?}, expected {l}:{c}: {e}",
                case.label,
                e.line(),
                e.column()
            ));
        }
    }
    None
}

#[test]
fn parse_rejections_match_libvirt() {
    let cases = parse_cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c, netxml::parse(&c.xml)))
        .collect();
    println!("checked {} parse rejections", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 100);
}

fn validation_cases() -> Vec<Case> {
    use ErrorKind::Validation;
    let c = |label, xml: String, message, pos| Case {
        label,
        xml,
        kind: Validation,
        message,
        pos,
    };
    vec![
        c("newline in name", "<network><name>a\nb</name></network>".into(), "invalid char in name: \n", Some((1, 10))),
        c("mac in bridge mode", net("  <forward mode='bridge'/>\n  <bridge name='br0'/>\n  <mac address='52:54:00:00:00:01'/>"), "Unsupported <mac> element in network n with forward mode='bridge'", Some((5, 3))),
        c("ip in passthrough mode", net("  <forward mode='passthrough'><pf dev='eth0'/></forward>\n  <ip address='10.0.0.1' prefix='24'/>"), "Unsupported <ip> element in network n with forward mode='passthrough'", Some((4, 3))),
        c("dns host in vepa mode", net("  <forward mode='vepa' dev='eth0'/>\n  <dns><host ip='1.2.3.4'><hostname>a</hostname></host></dns>"), "Unsupported <dns> element in network n with forward mode='vepa'", None),
        c("domain in bridge mode", net("  <forward mode='bridge'/>\n  <bridge name='br0'/>\n  <domain name='x'/>"), "Unsupported <domain> element", None),
        c("bandwidth in bridge mode without name", net("  <forward mode='bridge' dev='eth0'/>\n  <bandwidth><inbound average='10'/></bandwidth>"), "Unsupported network-wide <bandwidth> element in network n with forward mode='bridge'", None),
        c("bandwidth too big", net("  <bandwidth><inbound average='18014398509481985'/></bandwidth>"), "value '18014398509481985' is too big for 'average' parameter, maximum is '18014398509481984'", None),
        c("burst too big", net("  <bandwidth><inbound average='1' burst='4194304'/></bandwidth>"), "is too big for 'burst' parameter, maximum is '4194303'", None),
        c("netdev in hostdev pool", net("  <forward mode='hostdev' dev='eth0'/>"), "hostdev networks require all devices to be listed by PCI address", None),
        c("pci address in passthrough", net("  <forward mode='passthrough'><address type='pci' domain='0' bus='1' slot='0' function='1'/></forward>"), "has forward mode 'passthrough' but lists a device by PCI address", Some((3, 31))),
        c("two ipv4 dhcp", net("  <ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip>\n  <ip address='10.0.1.1' prefix='24'><dhcp><range start='10.0.1.2' end='10.0.1.9'/></dhcp></ip>"), "Multiple IPv4 dhcp sections found", Some((4, 3))),
        c("two ipv6 dhcp", net("  <ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd00::2' end='fd00::9'/></dhcp></ip>\n  <ip family='ipv6' address='fd01::1' prefix='64'><dhcp><range start='fd01::2' end='fd01::9'/></dhcp></ip>"), "Multiple IPv6 dhcp sections found", None),
        c("vlan on nat", net("  <forward mode='nat'/>\n  <ip address='10.0.0.1' prefix='24'/>\n  <vlan><tag id='5'/></vlan>"), "<vlan> element specified for network n, whose type doesn't support vlan configuration", None),
        c("vlan on bridge with 802.1Qbh", net("  <forward mode='bridge' dev='eth0'/>\n  <virtualport type='802.1Qbh'/>\n  <vlan><tag id='5'/></vlan>"), "whose type doesn't support vlan configuration", None),
        c("two default portgroups", net("  <forward mode='bridge'/>\n  <bridge name='br0'/>\n  <portgroup name='a' default='yes'/>\n  <portgroup name='b' default='yes'/>"), "has multiple default <portgroup> elements (a and b)", Some((6, 23))),
        c("duplicate portgroup", net("  <forward mode='bridge'/>\n  <bridge name='br0'/>\n  <portgroup name='a'/>\n  <portgroup name='a'/>"), "multiple <portgroup> elements with the same name (a) in network 'n'", Some((5, 14))),
        c("portgroup bandwidth in vepa", net("  <forward mode='vepa' dev='eth0'/>\n  <portgroup name='a'><bandwidth><inbound average='1'/></bandwidth></portgroup>"), "Unsupported <bandwidth> element in network 'n' in portgroup 'a' with forward mode='vepa'", None),
    ]
}

#[test]
fn validation_rejections_match_libvirt() {
    let cases = validation_cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c, netxml::parse_and_validate(&c.xml)))
        .collect();
    println!("checked {} validation rejections", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 17);
}

#[test]
fn lenient_inputs_libvirt_accepts() {
    // (document, what must hold afterwards)
    let ok = |xml: String| netxml::parse(&xml).unwrap_or_else(|e| panic!("{xml}\n{e}"));
    // <forward/> is nat; stp garbage means on; delay='0' allowed in bridge mode.
    let d = ok(net(
        "  <forward/>\n  <bridge stp='garbage'/>\n  <ip address='10.0.0.1' prefix='24'/>",
    ));
    assert_eq!(d.forward_mode(), Some(netxml::ForwardMode::Nat));
    assert!(d.bridge.stp);
    ok(net(
        "  <forward mode='bridge'/>\n  <bridge name='br0' delay='0'/>",
    ));
    // mode='none' is isolated.
    assert_eq!(ok(net("  <forward mode='none'/>")).forward_mode(), None);
    // Empty values read through XPath string() count as absent.
    let d = ok(net(
        "  <bridge name=''/>\n  <mac address=''/>\n  <mtu size=''/>",
    ));
    assert_eq!(d.bridge.name, None);
    assert_eq!(d.mac, None);
    // Class-based default prefix and inet_aton shorthand.
    let d = ok(net("  <ip address='10.1'/>"));
    assert_eq!(d.ips[0].address.to_string(), "10.0.0.1");
    assert_eq!(d.ips[0].prefix(), Some(8));
    // UUID with spaces and surrounding whitespace.
    let d = ok(net("  <uuid> 81ff0d90 c91e 6742 64da 4a736edb9a8e </uuid>"));
    assert_eq!(d.uuid.to_string(), "81ff0d90-c91e-6742-64da-4a736edb9a8e");
    // Missing uuid: random v4.
    let d = ok(net(""));
    assert!(!d.uuid_specified);
    assert_eq!(d.uuid.0[6] >> 4, 4);
    assert_eq!(d.uuid.0[8] >> 6, 2);
    // Unknown elements and attributes are ignored.
    ok(net(
        "  <frobnicate a='b'/>\n  <bridge name='x' color='blue'/>",
    ));
    // Lease expiry with base auto-detection (0x = hex).
    let d = ok(nat_ip("    <dhcp><range start='192.168.122.2' end='192.168.122.9'><lease expiry='0x10'/></range></dhcp>"));
    assert_eq!(d.ips[0].ranges[0].lease.map(|l| l.expiry), Some(16));
    // mtu '-1' wraps like virStrToLong_ui.
    assert_eq!(ok(net("  <mtu size='-1'/>")).mtu, u32::MAX);
    // XML attribute-value normalization and end-of-line handling.
    let d = ok("<network>\r\n  <name>n</name>\r\n  <title>a\tb</title>\r\n  <description>x\r\ny\rz</description>\r\n  <bridge zone='a\tb\nc'/>\r\n  <domain name='p&#10;q'/>\r\n</network>\r\n".to_string());
    assert_eq!(d.bridge.zone.as_deref(), Some("a b c"));
    assert_eq!(d.domain.name.as_deref(), Some("p\nq"));
    assert_eq!(d.description.as_deref(), Some("x\ny\nz"));
    assert_eq!(d.title.as_deref(), Some("a\tb"));
    // ... and errors in CRLF documents still report the right line.
    let e = netxml::parse("<network>\r\n  <name>n</name>\r\n  <mtu size='x'/>\r\n</network>")
        .expect_err("bad mtu");
    assert_eq!((e.line(), e.column()), (Some(3), Some(8)));
    // nat port start='0' is accepted by the parser.
    let d = ok(net("  <forward><nat><port start='0' end='10'/></nat></forward>\n  <ip address='10.0.0.1' prefix='24'/>"));
    assert_eq!(d.nat().map(|n| (n.port_start, n.port_end)), Some((0, 10)));
}

#[test]
fn define_allocates_bridge_and_mac() {
    struct Host;
    impl netxml::DefineContext for Host {
        fn bridge_in_use(&self, b: &str, skip: &str) -> bool {
            assert_eq!(skip, "n");
            b == "virbr0" || b == "virbr1"
        }
        fn netdev_exists(&self, name: &str) -> bool {
            name == "virbr2"
        }
        fn pci_is_virtual_function(&self, _: &netxml::PciAddress) -> Result<bool, String> {
            Ok(false)
        }
        fn random_mac_suffix(&self) -> [u8; 3] {
            [0xaa, 0xbb, 0xcc]
        }
    }
    let mut d = netxml::parse(&net("  <ip address='10.0.0.1' prefix='24'/>")).expect("parse");
    netxml::validate_for_define(&mut d, &Host).expect("valid");
    assert_eq!(d.bridge.name.as_deref(), Some("virbr3"));
    assert_eq!(
        d.mac.map(|m| m.to_string()).as_deref(),
        Some("52:54:00:aa:bb:cc")
    );
    let out = netxml::format(&d, FormatFlags::INACTIVE);
    assert!(
        out.contains(
            "<bridge name='virbr3' stp='on' delay='0'/>\n  <mac address='52:54:00:aa:bb:cc'/>"
        ),
        "{out}"
    );

    let mut d = netxml::parse(&net("  <bridge name='lab%d'/>")).expect("parse");
    netxml::validate_for_define(&mut d, &Host).expect("valid");
    assert_eq!(d.bridge.name.as_deref(), Some("lab0"));

    let mut d = netxml::parse(&net("  <bridge name='virbr1'/>")).expect("parse");
    let e = netxml::validate_for_define(&mut d, &Host).expect_err("in use");
    assert_eq!(e.message, "bridge name 'virbr1' already in use.");

    let mut d = netxml::parse(&net(
        "  <forward mode='hostdev'><address type='pci' domain='0' bus='1' slot='0' function='1'/></forward>",
    ))
    .expect("parse");
    let e = netxml::validate_for_define(&mut d, &Host).expect_err("not a VF");
    assert_eq!(
        e.message,
        "device '/sys/bus/pci/devices/0000:01:00.1' in network 'n' is not an SR-IOV Virtual Function"
    );
}
