//! `NetworkDef` → XML, byte for byte as libvirt 11.3.0's virNetworkDefFormat.

use std::fmt::Write as _;

use super::dom::{Element, Node};
use super::model::*;

/// Formatting flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatFlags {
    /// The inactive (persistent config) form: no `connections` counts and,
    /// for a `<pf>` network, no device pool. `false` = live form (libvirt's
    /// flags 0), which is what `virsh net-dumpxml` prints for a running network.
    pub inactive: bool,
}

impl FormatFlags {
    /// Live form (libvirt flags 0).
    pub const LIVE: FormatFlags = FormatFlags { inactive: false };
    /// Inactive form (VIR_NETWORK_XML_INACTIVE), used for config files.
    pub const INACTIVE: FormatFlags = FormatFlags { inactive: true };
}

/// A text buffer with libvirt virBuffer's auto-indentation: the current
/// indentation is inserted whenever something is appended at the start of a
/// line.
struct Buf {
    out: String,
    indent: usize,
}

impl Buf {
    fn add(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if self.out.is_empty() || self.out.ends_with('\n') {
            for _ in 0..self.indent {
                self.out.push(' ');
            }
        }
        self.out.push_str(s);
    }

    /// virBufferEscapeString(fmt-with-one-%s): nothing when `val` is None.
    fn esc(&mut self, before: &str, val: Option<&str>, after: &str) {
        if let Some(v) = val {
            let mut s = String::with_capacity(before.len() + v.len() + after.len());
            s.push_str(before);
            // Attribute values (the text before ends with the opening
            // quote) and element text are escaped so they read back as
            // they are.
            let how = if before.ends_with(['\'', '"']) {
                Escape::Attribute
            } else {
                Escape::Text
            };
            escape_xml_into(v, how, &mut s);
            s.push_str(after);
            self.add(&s);
        }
    }

    fn adjust(&mut self, delta: isize) {
        self.indent = self.indent.saturating_add_signed(delta);
    }
}

/// Where an escaped value goes: the one XML-escaping rule of the tree,
/// in its three uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// libvirt's virBufferEscapeString exactly: `<>&"'` become entities,
    /// control characters 0x00-0x08, 0x0B, 0x0C, 0x0E-0x19 are dropped,
    /// everything else (tab, LF, CR, 0x1A-0x1F) is kept. For texts that
    /// must be byte-for-byte libvirt's (dnsmasq file names built from the
    /// escaped network name, saved firewall plans).
    Libvirt,
    /// An attribute value that must read back unchanged: as `Libvirt`, and
    /// tab, LF and CR become `&#9;`, `&#10;`, `&#13;` (written literally,
    /// XML attribute-value normalization would turn them into spaces).
    /// libvirt writes them literally (virtnet divergence).
    Attribute,
    /// Element text that must read back unchanged: as `Libvirt`, and CR
    /// becomes `&#13;` (a literal CR would become LF on reading).
    Text,
}

fn needs_escape(c: char, how: Escape) -> bool {
    matches!(c, '<' | '>' | '&' | '"' | '\'')
        || is_dropped_control(c)
        || match how {
            Escape::Libvirt => false,
            Escape::Attribute => matches!(c, '\t' | '\n' | '\r'),
            Escape::Text => c == '\r',
        }
}

/// Control characters virBufferEscapeString drops (0x1A-0x1F are NOT
/// dropped, exactly as in libvirt; NUL cannot be in a C string).
fn is_dropped_control(c: char) -> bool {
    matches!(c as u32, 0x00..=0x08 | 0x0B | 0x0C | 0x0E..=0x19)
}

/// Append `s` escaped for `how` to `out`.
pub fn escape_xml_into(s: &str, how: Escape, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if is_dropped_control(c) => {}
            '\t' if how == Escape::Attribute => out.push_str("&#9;"),
            '\n' if how == Escape::Attribute => out.push_str("&#10;"),
            '\r' if how != Escape::Libvirt => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// `s` escaped for `how` (borrowed when nothing needs escaping).
pub fn escape_xml(s: &str, how: Escape) -> std::borrow::Cow<'_, str> {
    if !s.contains(|c| needs_escape(c, how)) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    escape_xml_into(s, how, &mut out);
    std::borrow::Cow::Owned(out)
}

/// An attribute value escaped to read back unchanged ([`Escape::Attribute`]).
fn attr(s: &str) -> std::borrow::Cow<'_, str> {
    escape_xml(s, Escape::Attribute)
}

/// virBufferEscapeString escaping, exactly libvirt's ([`Escape::Libvirt`]).
pub fn escape_libvirt(s: &str, out: &mut String) {
    escape_xml_into(s, Escape::Libvirt, out);
}

fn tristate(v: bool) -> &'static str {
    if v {
        "yes"
    } else {
        "no"
    }
}

/// Format a definition exactly as libvirt's virNetworkDefFormat.
pub fn format(def: &NetworkDef, flags: FormatFlags) -> String {
    format_indented(def, flags, 0)
}

/// Format with every line indented by `indent` spaces, as libvirt does when
/// it embeds the definition in another document (the status file's
/// `<networkstatus>` uses 2).
pub fn format_indented(def: &NetworkDef, flags: FormatFlags, indent: usize) -> String {
    let mut b = Buf {
        out: String::new(),
        indent,
    };
    let mut root = String::from("<network");
    if !def.dnsmasq_options.is_empty() {
        let _ = write!(root, " xmlns:dnsmasq='{DNSMASQ_NAMESPACE_URI}'");
    }
    if !flags.inactive && def.connections > 0 {
        let _ = write!(root, " connections='{}'", def.connections);
    }
    if def.ipv6 {
        root.push_str(" ipv6='yes'");
    }
    if let Some(t) = def.trust_guest_rx_filters {
        let _ = write!(root, " trustGuestRxFilters='{}'", tristate(t));
    }
    root.push_str(">\n");
    b.add(&root);
    b.adjust(2);
    b.esc("<name>", Some(&def.name), "</name>\n");
    b.add(&format!("<uuid>{}</uuid>\n", def.uuid));
    b.esc("<title>", def.title.as_deref(), "</title>\n");
    b.esc(
        "<description>",
        def.description.as_deref(),
        "</description>\n",
    );
    if let Some(m) = &def.metadata {
        b.add(&metadata_xml(m, b.indent / 2));
        b.add("\n");
    }

    if let Some(fwd) = &def.forward {
        format_forward(&mut b, fwd, flags);
    }

    let hasbridge = def.forward.as_ref().is_none_or(|f| f.mode.is_virtual());
    if hasbridge || def.bridge.name.is_some() || def.bridge.mac_table_manager.is_some() {
        b.add("<bridge");
        b.esc(" name='", def.bridge.name.as_deref(), "'");
        b.esc(" zone='", def.bridge.zone.as_deref(), "'");
        if hasbridge {
            b.add(&format!(
                " stp='{}' delay='{}'",
                if def.bridge.stp { "on" } else { "off" },
                def.bridge.delay
            ));
        }
        if let Some(m) = def.bridge.mac_table_manager {
            b.add(&format!(" macTableManager='{}'", m.as_str()));
        }
        b.add("/>\n");
    }
    if def.mtu != 0 {
        b.add(&format!("<mtu size='{}'/>\n", def.mtu));
    }
    if let Some(mac) = &def.mac {
        b.add(&format!("<mac address='{mac}'/>\n"));
    }
    if let Some(d) = &def.domain.name {
        // libvirt writes these attributes unescaped (virtnet divergence:
        // escaped, so the file reads back as defined).
        let mut s = format!("<domain name='{}'", attr(d));
        if let Some(l) = def.domain.local_only {
            let _ = write!(s, " localOnly='{}'", tristate(l));
        }
        if let Some(r) = def.domain.register {
            let _ = write!(s, " register='{}'", tristate(r));
        }
        s.push_str("/>\n");
        b.add(&s);
    }
    format_dns(&mut b, &def.dns);
    if let Some(v) = &def.vlan {
        format_vlan(&mut b, v);
    }
    if let Some(bw) = &def.bandwidth {
        format_bandwidth(&mut b, bw);
    }
    if let Some(p) = def.isolated_port {
        b.add(&format!("<port isolated='{}'/>\n", tristate(p)));
    }
    for ip in &def.ips {
        format_ip(&mut b, ip);
    }
    for r in &def.routes {
        format_route(&mut b, r);
    }
    if let Some(vp) = &def.virtualport {
        format_virtualport(&mut b, vp);
    }
    for pg in &def.portgroups {
        format_portgroup(&mut b, pg);
    }
    if !def.dnsmasq_options.is_empty() {
        b.add("<dnsmasq:options>\n");
        b.adjust(2);
        for o in &def.dnsmasq_options {
            b.esc("<dnsmasq:option value='", Some(o), "'/>\n");
        }
        b.adjust(-2);
        b.add("</dnsmasq:options>\n");
    }
    b.adjust(-2);
    b.add("</network>\n");
    b.out
}

fn format_forward(b: &mut Buf, fwd: &ForwardDef, flags: FormatFlags) {
    let dev = if fwd.pfs.is_empty() {
        fwd.netdev(0)
    } else {
        None
    };
    b.add("<forward");
    b.esc(" dev='", dev, "'");
    b.add(&format!(" mode='{}'", fwd.mode));
    if fwd.mode == ForwardMode::Hostdev {
        b.add(if fwd.managed {
            " managed='yes'"
        } else {
            " managed='no'"
        });
    }
    let nat = &fwd.nat;
    let short = !(!fwd.ifs.is_empty()
        || !fwd.pfs.is_empty()
        || nat.address.is_some()
        || nat.port_start != 0
        || nat.port_end != 0
        || fwd.driver.name.is_some()
        || nat.ipv6.is_some());
    b.add(if short { "/>\n" } else { ">\n" });
    b.adjust(2);
    if fwd.driver.name.is_some() || fwd.driver.model.is_some() {
        let mut s = String::from("<driver");
        if let Some(n) = fwd.driver.name {
            let _ = write!(s, " name='{}'", n.as_str());
        }
        if let Some(m) = &fwd.driver.model {
            s.push_str(" model='");
            escape_xml_into(m, Escape::Attribute, &mut s);
            s.push('\'');
        }
        s.push_str("/>\n");
        b.add(&s);
    }
    if fwd.mode == ForwardMode::Nat {
        format_nat(b, nat);
    }
    if let Some(pf) = fwd.pfs.first() {
        b.esc("<pf dev='", Some(&pf.dev), "'/>\n");
    }
    if !fwd.ifs.is_empty() && (fwd.pfs.is_empty() || !flags.inactive) {
        for i in &fwd.ifs {
            match &i.device {
                ForwardDevice::Netdev(d) => {
                    b.esc("<interface dev='", Some(d), "'");
                    if !flags.inactive && i.connections > 0 {
                        b.add(&format!(" connections='{}'", i.connections));
                    }
                    b.add("/>\n");
                }
                ForwardDevice::Pci(a) => {
                    b.add(&format!(
                        "<address type='pci' domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{}'/>\n",
                        a.domain, a.bus, a.slot, a.function
                    ));
                }
            }
        }
    }
    b.adjust(-2);
    if !short {
        b.add("</forward>\n");
    }
}

fn format_nat(b: &mut Buf, nat: &NatDef) {
    if nat.is_empty() {
        return;
    }
    let mut s = String::from("<nat");
    if let Some(v) = nat.ipv6 {
        let _ = write!(s, " ipv6='{}'", tristate(v));
    }
    if nat.address.is_none() && nat.port_start == 0 && nat.port_end == 0 {
        s.push_str("/>\n");
        b.add(&s);
        return;
    }
    s.push_str(">\n");
    b.add(&s);
    b.adjust(2);
    if let Some(a) = &nat.address {
        b.add(&format!("<address start='{}' end='{}'/>\n", a.start, a.end));
    }
    if nat.port_start != 0 || nat.port_end != 0 {
        let mut p = format!("<port start='{}'", nat.port_start);
        if nat.port_end != 0 {
            let _ = write!(p, " end='{}'", nat.port_end);
        }
        p.push_str("/>\n");
        b.add(&p);
    }
    b.adjust(-2);
    b.add("</nat>\n");
}

fn format_dns(b: &mut Buf, dns: &DnsDef) {
    if dns.is_empty() {
        return;
    }
    b.add("<dns");
    if let Some(e) = dns.enable {
        b.add(&format!(" enable='{}'", tristate(e)));
    }
    if let Some(f) = dns.forward_plain_names {
        b.add(&format!(" forwardPlainNames='{}'", tristate(f)));
    }
    if dns.forwarders.is_empty()
        && dns.hosts.is_empty()
        && dns.srvs.is_empty()
        && dns.txts.is_empty()
    {
        b.add("/>\n");
        return;
    }
    b.add(">\n");
    b.adjust(2);
    for f in &dns.forwarders {
        b.add("<forwarder");
        b.esc(" domain='", f.domain.as_deref(), "'");
        if let Some(a) = &f.addr {
            b.add(&format!(" addr='{}'", ip_to_string(a)));
        }
        b.add("/>\n");
    }
    for t in &dns.txts {
        b.esc("<txt name='", Some(&t.name), "' ");
        b.esc("value='", Some(&t.value), "'/>\n");
    }
    for s in &dns.srvs {
        b.esc("<srv service='", Some(&s.service), "' ");
        b.esc("protocol='", Some(&s.protocol), "'");
        b.esc(" domain='", s.domain.as_deref(), "'");
        b.esc(" target='", s.target.as_deref(), "'");
        if s.port != 0 {
            b.add(&format!(" port='{}'", s.port));
        }
        if s.priority != 0 {
            b.add(&format!(" priority='{}'", s.priority));
        }
        if s.weight != 0 {
            b.add(&format!(" weight='{}'", s.weight));
        }
        b.add("/>\n");
    }
    for h in &dns.hosts {
        b.add(&format!("<host ip='{}'>\n", ip_to_string(&h.ip)));
        b.adjust(2);
        for n in &h.hostnames {
            b.esc("<hostname>", Some(n), "</hostname>\n");
        }
        b.adjust(-2);
        b.add("</host>\n");
    }
    b.adjust(-2);
    b.add("</dns>\n");
}

fn format_lease_body(b: &mut Buf, lease: &Lease, close: &str) {
    b.add(">\n");
    b.adjust(2);
    if lease.expiry == 0 {
        b.add("<lease expiry='0'/>\n");
    } else {
        b.add(&format!(
            "<lease expiry='{}' unit='{}'/>\n",
            lease.expiry,
            lease.unit.as_str()
        ));
    }
    b.adjust(-2);
    b.add(close);
}

fn format_ip(b: &mut Buf, ip: &IpDef) {
    let mut s = String::from("<ip");
    if let Some(f) = &ip.family {
        let _ = write!(s, " family='{f}'");
    }
    let _ = write!(s, " address='{}'", ip_to_string(&ip.address));
    if let Some(m) = &ip.netmask {
        let _ = write!(s, " netmask='{m}'");
    }
    if ip.explicit_prefix > 0 {
        let _ = write!(s, " prefix='{}'", ip.explicit_prefix);
    }
    if let Some(l) = ip.local_ptr {
        let _ = write!(s, " localPtr='{}'", tristate(l));
    }
    s.push_str(">\n");
    b.add(&s);
    b.adjust(2);
    b.esc("<tftp root='", ip.tftp_root.as_deref(), "'/>\n");
    if ip.has_dhcp() {
        b.add("<dhcp>\n");
        b.adjust(2);
        for r in &ip.ranges {
            b.add(&format!(
                "<range start='{}' end='{}'",
                ip_to_string(&r.start),
                ip_to_string(&r.end)
            ));
            match &r.lease {
                Some(l) => format_lease_body(b, l, "</range>\n"),
                None => b.add("/>\n"),
            }
        }
        for h in &ip.hosts {
            let mut s = String::from("<host");
            if let Some(m) = &h.mac {
                let _ = write!(s, " mac='{}'", attr(m));
            }
            if let Some(i) = &h.id {
                let _ = write!(s, " id='{}'", attr(i));
            }
            if let Some(n) = &h.name {
                let _ = write!(s, " name='{}'", attr(n));
            }
            if let Some(a) = &h.ip {
                let _ = write!(s, " ip='{}'", ip_to_string(a));
            }
            b.add(&s);
            match &h.lease {
                Some(l) => format_lease_body(b, l, "</host>\n"),
                None => b.add("/>\n"),
            }
        }
        if let Some(bp) = &ip.bootp {
            b.esc("<bootp file='", Some(&bp.file), "'");
            if let Some(srv) = &bp.server {
                b.esc(" server='", Some(&ip_to_string(srv)), "'");
            }
            b.add("/>\n");
        }
        b.adjust(-2);
        b.add("</dhcp>\n");
    }
    b.adjust(-2);
    b.add("</ip>\n");
}

fn format_route(b: &mut Buf, r: &RouteDef) {
    let mut s = String::from("<route");
    if let Some(f) = &r.family {
        let _ = write!(s, " family='{f}'");
    }
    let _ = write!(s, " address='{}'", ip_to_string(&r.address));
    if let Some(m) = &r.netmask {
        let _ = write!(s, " netmask='{m}'");
    }
    if let Some(p) = r.prefix {
        let _ = write!(s, " prefix='{p}'");
    }
    let _ = write!(s, " gateway='{}'", ip_to_string(&r.gateway));
    if let Some(m) = r.metric.filter(|m| *m > 0) {
        let _ = write!(s, " metric='{m}'");
    }
    s.push_str("/>\n");
    b.add(&s);
}

fn format_vlan(b: &mut Buf, v: &Vlan) {
    if v.tags.is_empty() {
        return;
    }
    b.add(if v.trunk {
        "<vlan trunk='yes'>\n"
    } else {
        "<vlan>\n"
    });
    b.adjust(2);
    for t in &v.tags {
        match v.native {
            Some((mode, tag)) if tag == *t => {
                b.add(&format!("<tag id='{t}' nativeMode='{}'/>\n", mode.as_str()));
            }
            _ => b.add(&format!("<tag id='{t}'/>\n")),
        }
    }
    b.adjust(-2);
    b.add("</vlan>\n");
}

fn format_rate(b: &mut Buf, r: &BandwidthRate, name: &str) {
    if r.average == 0 && r.floor == 0 {
        return;
    }
    let mut s = format!("<{name}");
    if r.average != 0 {
        let _ = write!(s, " average='{}'", r.average);
    }
    if r.peak != 0 {
        let _ = write!(s, " peak='{}'", r.peak);
    }
    if r.floor != 0 {
        let _ = write!(s, " floor='{}'", r.floor);
    }
    if r.burst != 0 {
        let _ = write!(s, " burst='{}'", r.burst);
    }
    s.push_str("/>\n");
    b.add(&s);
}

fn format_bandwidth(b: &mut Buf, bw: &Bandwidth) {
    b.add("<bandwidth>\n");
    b.adjust(2);
    if let Some(r) = &bw.inbound {
        format_rate(b, r, "inbound");
    }
    if let Some(r) = &bw.outbound {
        format_rate(b, r, "outbound");
    }
    b.adjust(-2);
    b.add("</bandwidth>\n");
}

fn format_virtualport(b: &mut Buf, vp: &VirtualPort) {
    let no_params = vp.manager_id.is_none()
        && vp.type_id.is_none()
        && vp.type_id_version.is_none()
        && vp.instance_id.is_none()
        && vp.profile_id.is_none()
        && vp.interface_id.is_none();
    match vp.kind {
        None => {
            if no_params {
                return;
            }
            b.add("<virtualport>\n");
        }
        Some(k) => {
            if no_params {
                b.add(&format!("<virtualport type='{}'/>\n", k.as_str()));
                return;
            }
            b.add(&format!("<virtualport type='{}'>\n", k.as_str()));
        }
    }
    use VirtualPortType as T;
    let k = vp.kind;
    let qbg_or_none = matches!(k, None | Some(T::Ieee8021Qbg));
    let mut s = String::from("<parameters");
    if let Some(m) = vp.manager_id.filter(|_| qbg_or_none) {
        let _ = write!(s, " managerid='{m}'");
    }
    if let Some(t) = vp.type_id.filter(|_| qbg_or_none) {
        let _ = write!(s, " typeid='{t}'");
    }
    if let Some(t) = vp.type_id_version.filter(|_| qbg_or_none) {
        let _ = write!(s, " typeidversion='{t}'");
    }
    if let Some(u) = vp.instance_id.filter(|_| qbg_or_none) {
        let _ = write!(s, " instanceid='{u}'");
    }
    if let Some(u) = vp
        .interface_id
        .filter(|_| matches!(k, None | Some(T::Midonet) | Some(T::Openvswitch)))
    {
        let _ = write!(s, " interfaceid='{u}'");
    }
    if let Some(p) = vp
        .profile_id
        .as_ref()
        .filter(|_| matches!(k, None | Some(T::Openvswitch) | Some(T::Ieee8021Qbh)))
    {
        let _ = write!(s, " profileid='{}'", attr(p));
    }
    s.push_str("/>\n");
    b.adjust(2);
    b.add(&s);
    b.adjust(-2);
    b.add("</virtualport>\n");
}

fn format_portgroup(b: &mut Buf, pg: &PortGroup) {
    let mut s = format!("<portgroup name='{}'", attr(&pg.name));
    if pg.is_default {
        s.push_str(" default='yes'");
    }
    if let Some(t) = pg.trust_guest_rx_filters {
        let _ = write!(s, " trustGuestRxFilters='{}'", tristate(t));
    }
    s.push_str(">\n");
    b.add(&s);
    b.adjust(2);
    if let Some(v) = &pg.vlan {
        format_vlan(b, v);
    }
    if let Some(vp) = &pg.virtualport {
        format_virtualport(b, vp);
    }
    if let Some(bw) = &pg.bandwidth {
        format_bandwidth(b, bw);
    }
    b.adjust(-2);
    b.add("</portgroup>\n");
}

/// libxml2-style attribute value escaping (double-quoted).
fn escape_attr_dq(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if !c.is_ascii() => {
                let _ = write!(out, "&#x{:X};", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            c if !c.is_ascii() => {
                let _ = write!(out, "&#x{:X};", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Build libvirt's copy of `<metadata>`: libxml2's xmlCopyNode declares on
/// the copy's root the namespaces that were declared outside it (in copy
/// order), then libvirt drops children without a namespace and later
/// children repeating a namespace.
pub(crate) fn metadata_from_dom(m: &Element) -> Metadata {
    let mut added: Vec<(Option<String>, String)> = Vec::new();
    let own: Vec<Option<String>> = m.ns_decls.iter().map(|(p, _)| p.clone()).collect();
    collect_out_of_scope(m, &own, &mut added);

    let mut kept: Vec<&Element> = Vec::new();
    for c in m.elements() {
        let Some(ns) = &c.ns else { continue };
        if kept.iter().any(|k| k.ns.as_deref() == Some(ns.as_str())) {
            continue;
        }
        kept.push(c);
    }
    let mut root = to_xml_element(m, false);
    root.namespaces.extend(added);
    root.children = kept
        .into_iter()
        .map(|k| XmlNode::Element(to_xml_element(k, true)))
        .collect();
    Metadata { element: root }
}

fn to_xml_element(e: &Element, with_children: bool) -> XmlElement {
    let children = if with_children {
        e.children
            .iter()
            .map(|c| match c {
                Node::Element(ce) => XmlNode::Element(to_xml_element(ce, true)),
                Node::Text(t) => XmlNode::Text(t.clone()),
                Node::CData(t) => XmlNode::CData(t.clone()),
                Node::Comment(t) => XmlNode::Comment(t.clone()),
                Node::Pi(t) => XmlNode::ProcessingInstruction(t.clone()),
            })
            .collect()
    } else {
        Vec::new()
    };
    XmlElement {
        name: e.qname(),
        namespaces: e.ns_decls.clone(),
        attributes: e
            .attrs
            .iter()
            .map(|a| {
                let name = match &a.prefix {
                    Some(p) => format!("{p}:{}", a.local),
                    None => a.local.clone(),
                };
                (name, a.value.clone())
            })
            .collect(),
        children,
    }
}

/// Serialize `<metadata>` as libvirt does (xmlNodeDump with formatting at
/// nesting `level`), without leading indentation or trailing newline.
pub fn metadata_xml(m: &Metadata, level: usize) -> String {
    let mut out = String::new();
    dump_element(&m.element, level, true, &mut out);
    out
}

fn lookup_ns(el: &Element, prefix: &Option<String>) -> Option<String> {
    el.scope
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u.clone())
}

fn collect_out_of_scope(
    el: &Element,
    declared: &[Option<String>],
    added: &mut Vec<(Option<String>, String)>,
) {
    let mut need = |prefix: &Option<String>, declared: &[Option<String>]| {
        if declared.contains(prefix) || added.iter().any(|(p, _)| p == prefix) {
            return;
        }
        if let Some(uri) = lookup_ns(el, prefix) {
            added.push((prefix.clone(), uri));
        }
    };
    let mut here: Vec<Option<String>> = declared.to_vec();
    here.extend(el.ns_decls.iter().map(|(p, _)| p.clone()));
    if el.ns.is_some() {
        need(&el.prefix, &here);
    }
    for a in &el.attrs {
        if a.prefix.is_some() && a.prefix.as_deref() != Some("xml") {
            need(&a.prefix, &here);
        }
    }
    for c in el.elements() {
        collect_out_of_scope(c, &here, added);
    }
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn push_ns_decl(p: &Option<String>, u: &str, out: &mut String) {
    match p {
        Some(p) => out.push_str(&format!(" xmlns:{p}=\"")),
        None => out.push_str(" xmlns=\""),
    }
    escape_attr_dq(u, out);
    out.push('"');
}

fn dump_element(e: &XmlElement, level: usize, fmt: bool, out: &mut String) {
    out.push('<');
    out.push_str(&e.name);
    for (p, u) in &e.namespaces {
        push_ns_decl(p, u, out);
    }
    for (n, v) in &e.attributes {
        out.push(' ');
        out.push_str(n);
        out.push_str("=\"");
        escape_attr_dq(v, out);
        out.push('"');
    }
    if e.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    // libxml2 only indents children when no child is text.
    let child_fmt = fmt
        && e.children
            .iter()
            .all(|c| !matches!(c, XmlNode::Text(_) | XmlNode::CData(_)));
    for c in &e.children {
        if child_fmt {
            out.push('\n');
            indent(out, level + 1);
        }
        match c {
            XmlNode::Element(ce) => dump_element(ce, level + 1, child_fmt, out),
            XmlNode::Text(t) => escape_text(t, out),
            XmlNode::CData(t) => {
                out.push_str("<![CDATA[");
                out.push_str(t);
                out.push_str("]]>");
            }
            XmlNode::Comment(t) => {
                out.push_str("<!--");
                out.push_str(t);
                out.push_str("-->");
            }
            XmlNode::ProcessingInstruction(t) => {
                out.push_str("<?");
                out.push_str(t);
                out.push_str("?>");
            }
        }
    }
    if child_fmt {
        out.push('\n');
        indent(out, level);
    }
    out.push_str("</");
    out.push_str(&e.name);
    out.push('>');
}
