//! Network XML → [`NetworkDef`], with libvirt 11.3.0's parse-time checks,
//! performed in libvirt's order so that the first error reported is the one
//! libvirt reports.

use std::net::IpAddr;

use super::dom::{parse_document, Document, Element};
use super::error::{ErrorKind, NetXmlError};
use super::lex::{
    parse_ip, parse_ipv4, parse_mac, parse_ui, parse_uip, parse_ullp, parse_uuid, random_uuid,
};
use super::model::*;

mod fragment;
pub(crate) use fragment::Fragment;

type Result<T> = std::result::Result<T, NetXmlError>;

/// Parse a `<network>` document (no schema or driver validation; see
/// [`super::validate()`] for the latter).
pub fn parse(xml: &str) -> Result<NetworkDef> {
    let doc = parse_document(xml)?;
    let root = &doc.root;
    if root.local != "network" {
        return Err(NetXmlError::new(
            ErrorKind::Syntax,
            format!("expecting root element of 'network', not '{}'", root.local),
        )
        .at(doc.location(root, None)));
    }
    Parser {
        doc: &doc,
        name: String::new(),
    }
    .network(root)
}

/// A `<dns><srv>` as read, before the fields a full record needs are
/// required (an update's delete key may lack them).
pub(super) struct SrvFields {
    pub service: Option<String>,
    pub protocol: Option<String>,
    pub domain: Option<String>,
    pub target: Option<String>,
    pub port: u32,
    pub priority: u32,
    pub weight: u32,
}

struct Parser<'d> {
    doc: &'d Document,
    /// Network name, for messages.
    name: String,
}

impl Parser<'_> {
    fn err(
        &self,
        kind: ErrorKind,
        el: &Element,
        attr: Option<&str>,
        msg: impl Into<String>,
    ) -> NetXmlError {
        NetXmlError::new(kind, msg).at(self.doc.location(el, attr))
    }

    pub(super) fn invalid(
        &self,
        el: &Element,
        attr: Option<&str>,
        msg: impl Into<String>,
    ) -> NetXmlError {
        self.err(ErrorKind::Invalid, el, attr, msg)
    }

    fn unsupported(&self, el: &Element, attr: Option<&str>, msg: impl Into<String>) -> NetXmlError {
        self.err(ErrorKind::Unsupported, el, attr, msg)
    }

    /// getaddrinfo failure message.
    fn bad_addr(&self, el: &Element, attr: &str, val: &str) -> NetXmlError {
        self.err(
            ErrorKind::BadAddress,
            el,
            Some(attr),
            format!("Cannot parse socket address '{val}': Name or service not known"),
        )
    }

    /// virtnet's interface-name rule (see [`super::names`]) for the value
    /// of attribute `attr` of `el`.
    pub(super) fn ifname(&self, el: &Element, attr: &str, value: &str) -> Result<()> {
        super::names::check_interface_name(value).map_err(|why| {
            self.invalid(
                el,
                Some(attr),
                format!(
                    "invalid interface name '{}' in <{} {attr}>: {why}",
                    value.escape_debug(),
                    el.qname()
                ),
            )
        })
    }

    /// virXMLPropTristateBool.
    fn tristate(&self, el: &Element, attr: &str) -> Result<Option<bool>> {
        match el.prop(attr) {
            None => Ok(None),
            Some("yes") => Ok(Some(true)),
            Some("no") => Ok(Some(false)),
            Some(v) => Err(self.invalid(
                el,
                Some(attr),
                format!(
                    "Invalid value for attribute '{attr}' in element '{}': '{v}'.",
                    el.local
                ),
            )),
        }
    }

    /// virXMLPropUInt (base 10 or 0): Ok(None) when absent.
    fn prop_uint(&self, el: &Element, attr: &str, base: u32, nonzero: bool) -> Result<Option<u32>> {
        let Some(v) = el.prop(attr) else {
            return Ok(None);
        };
        let n = parse_uip(v, base).ok_or_else(|| {
            self.invalid(
                el,
                Some(attr),
                format!(
                    "Invalid value for attribute '{attr}' in element '{}': '{v}'. Expected non-negative integer value",
                    el.local
                ),
            )
        })?;
        if nonzero && n == 0 {
            return Err(self.invalid(
                el,
                Some(attr),
                format!(
                    "Invalid value for attribute '{attr}' in element '{}': Zero is not permitted",
                    el.local
                ),
            ));
        }
        Ok(Some(n))
    }

    /// virXMLPropULongLong: Ok(None) when absent.
    fn prop_ull(&self, el: &Element, attr: &str, base: u32) -> Result<Option<u64>> {
        let Some(v) = el.prop(attr) else {
            return Ok(None);
        };
        parse_ullp(v, base).map(Some).ok_or_else(|| {
            self.invalid(
                el,
                Some(attr),
                format!(
                    "Invalid value for attribute '{attr}' in element '{}': '{v}'. Expected non-negative integer value",
                    el.local
                ),
            )
        })
    }

    fn network(mut self, root: &Element) -> Result<NetworkDef> {
        // name
        let Some(name) = root.xpath_child_string("name") else {
            let el = root.xpath_child("name").unwrap_or(root);
            return Err(self.err(ErrorKind::NoName, el, None, "missing name"));
        };
        if name.contains('/') {
            let el = root.xpath_child("name").unwrap_or(root);
            return Err(self.invalid(el, None, "invalid char in name: /"));
        }
        if name.contains('\n') {
            // libvirt's define-time check (and message), done here too so
            // that a config or status file with such a name is not loaded.
            let el = root.xpath_child("name").unwrap_or(root);
            return Err(self.err(ErrorKind::Validation, el, None, "invalid char in name: \n"));
        }
        if let Err(msg) = super::names::check_network_name(&name) {
            let el = root.xpath_child("name").unwrap_or(root);
            return Err(self.invalid(el, None, msg));
        }
        self.name = name.clone();

        // uuid
        let (uuid, uuid_specified) = match root.xpath_child_string("uuid") {
            None => (random_uuid(), false),
            Some(s) => match parse_uuid(&s) {
                Some(u) => (u, true),
                None => {
                    let el = root.xpath_child("uuid").unwrap_or(root);
                    return Err(self.invalid(el, None, "malformed uuid element"));
                }
            },
        };

        let title = root.xpath_child_string("title");
        if let Some(t) = &title {
            if t.contains('\n') {
                let el = root.xpath_child("title").unwrap_or(root);
                return Err(self.invalid(el, None, "Network title can't contain newlines"));
            }
        }
        let description = root.xpath_child_string("description");

        let ipv6 = match root.xpath_prop("ipv6") {
            None => false,
            Some("yes") => true,
            Some("no") => false,
            Some(v) => {
                return Err(self.invalid(
                    root,
                    Some("ipv6"),
                    format!("Invalid ipv6 setting '{v}' in network '{}'", self.name),
                ))
            }
        };

        let trust_guest_rx_filters = self.tristate(root, "trustGuestRxFilters")?;

        // domain
        let mut domain = DomainDef::default();
        if let Some(d) = root.xpath_child("domain") {
            domain.name = d.prop("name").map(str::to_string);
            domain.local_only = self.tristate(d, "localOnly")?;
            domain.register = self.tristate(d, "register")?;
            if domain.register == Some(true) && domain.local_only != Some(true) {
                return Err(self.unsupported(
                    d,
                    Some("register"),
                    format!(
                        "attribute 'register=yes' in <domain> element requires 'localOnly=yes' in network {}",
                        self.name
                    ),
                ));
            }
        }

        let bandwidth = match root.xpath_child("bandwidth") {
            Some(b) => self.bandwidth(b)?,
            None => None,
        };
        let vlan = match root.xpath_child("vlan") {
            Some(v) => Some(self.vlan(v)?),
            None => None,
        };
        let isolated_port = match root.xpath_child("port") {
            Some(p) => self.tristate(p, "isolated")?,
            None => None,
        };

        // bridge
        let mut bridge = BridgeDef::default();
        let bridge_el = root.xpath_child("bridge");
        if let Some(b) = bridge_el {
            bridge.name = b.xpath_prop("name").map(str::to_string);
            if let Some(n) = &bridge.name {
                self.ifname(b, "name", n)?;
            }
            bridge.zone = b.xpath_prop("zone").map(str::to_string);
            if let Some(stp) = b.xpath_prop("stp") {
                bridge.stp_specified = true;
                bridge.stp = stp != "off";
            }
            if let Some(d) = b.xpath_prop("delay") {
                bridge.delay = parse_ullp(d, 10).ok_or_else(|| {
                    self.invalid(
                        b,
                        Some("delay"),
                        format!("Invalid delay value in network '{}'", self.name),
                    )
                })?;
            }
            if let Some(m) = b.xpath_prop("macTableManager") {
                bridge.mac_table_manager = Some(match m {
                    "kernel" => MacTableManager::Kernel,
                    "libvirt" => MacTableManager::Libvirt,
                    _ => {
                        return Err(self.invalid(
                            b,
                            Some("macTableManager"),
                            format!(
                                "Invalid macTableManager setting '{m}' in network '{}'",
                                self.name
                            ),
                        ))
                    }
                });
            }
        }

        // mac
        let mut mac = None;
        if let Some(m) = root.xpath_child("mac") {
            if let Some(s) = m.xpath_prop("address") {
                let a = parse_mac(s).ok_or_else(|| {
                    self.invalid(
                        m,
                        Some("address"),
                        format!(
                            "Invalid bridge mac address '{s}' in network '{}'",
                            self.name
                        ),
                    )
                })?;
                if a.is_multicast() {
                    return Err(self.invalid(
                        m,
                        Some("address"),
                        format!(
                            "Invalid multicast bridge mac address '{s}' in network '{}'",
                            self.name
                        ),
                    ));
                }
                mac = Some(a);
            }
        }

        // mtu
        let mut mtu = 0;
        // XPath string(./mtu/@size): the first `size` of any <mtu>.
        if let Some(m) = root
            .xpath_children("mtu")
            .find(|m| m.attr("size").is_some())
        {
            if let Some(s) = m.xpath_prop("size") {
                mtu = parse_ui(s, 10).ok_or_else(|| {
                    self.invalid(
                        m,
                        Some("size"),
                        format!("Invalid mtu size '{s}' in network '{}'", self.name),
                    )
                })?;
            }
        }

        let dns = match root.xpath_child("dns") {
            Some(d) => self.dns(d)?,
            None => DnsDef::default(),
        };

        let virtualport = match root.xpath_child("virtualport") {
            Some(v) => Some(self.virtualport(v, true)?),
            None => None,
        };

        let mut portgroups = Vec::new();
        for pg in root.xpath_children("portgroup") {
            portgroups.push(self.portgroup(pg)?);
        }

        let mut ips = Vec::new();
        for ip in root.xpath_children("ip") {
            ips.push(self.ip(ip)?);
        }

        let mut routes = Vec::new();
        let route_els: Vec<&Element> = root.xpath_children("route").collect();
        for r in &route_els {
            routes.push(self.route(r)?);
        }
        for (r, el) in routes.iter().zip(&route_els) {
            let reachable = ips.iter().any(|ip| {
                if Family::of(&r.gateway) != ip.family() {
                    return false;
                }
                let Some(p) = ip.prefix() else { return false };
                match (mask_by_prefix(ip.address, p), mask_by_prefix(r.gateway, p)) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                }
            });
            if !reachable {
                return Err(self.unsupported(
                    el,
                    Some("gateway"),
                    format!(
                        "unreachable static route gateway '{}' specified for network '{}'",
                        ip_to_string(&r.gateway),
                        self.name
                    ),
                ));
            }
        }

        let forward_el = root.xpath_child("forward");
        let forward = match forward_el {
            Some(f) => self.forward(f)?,
            None => None,
        };

        // mode-dependent checks
        let at = forward_el.unwrap_or(root);
        if let Some(fwd) = &forward {
            let m = fwd.mode;
            let nifs = fwd.ifs.len();
            match m {
                ForwardMode::Nat | ForwardMode::Route => {
                    if ips.is_empty() {
                        return Err(self.invalid(
                            at,
                            None,
                            format!(
                                "{m} forwarding requested, but no IP address provided for network '{}'",
                                self.name
                            ),
                        ));
                    }
                    if nifs > 1 {
                        return Err(self.invalid(
                            at,
                            None,
                            format!(
                                "multiple forwarding interfaces specified for network '{}', only one is supported",
                                self.name
                            ),
                        ));
                    }
                }
                ForwardMode::Open => {
                    if nifs > 0 {
                        return Err(self.invalid(
                            at,
                            None,
                            format!(
                                "forward dev not allowed for network '{}' with forward mode='{m}'",
                                self.name
                            ),
                        ));
                    }
                }
                ForwardMode::Bridge
                | ForwardMode::Private
                | ForwardMode::Vepa
                | ForwardMode::Passthrough
                | ForwardMode::Hostdev => {
                    let bat = bridge_el.unwrap_or(at);
                    if m != ForwardMode::Bridge {
                        if bridge.name.is_some() {
                            return Err(self.invalid(
                                bat,
                                Some("name"),
                                format!(
                                    "bridge name not allowed in {m} mode (network '{}')",
                                    self.name
                                ),
                            ));
                        }
                        if bridge.zone.is_some() {
                            return Err(self.invalid(
                                bat,
                                Some("zone"),
                                format!(
                                    "bridge zone not allowed in {m} mode (network '{}')",
                                    self.name
                                ),
                            ));
                        }
                        if bridge.mac_table_manager.is_some() {
                            return Err(self.invalid(
                                bat,
                                Some("macTableManager"),
                                format!(
                                    "bridge macTableManager setting not allowed in {m} mode (network '{}')",
                                    self.name
                                ),
                            ));
                        }
                    }
                    if bridge.delay != 0 || bridge.stp_specified || bridge.zone.is_some() {
                        return Err(self.invalid(
                            bat,
                            None,
                            format!(
                                "bridge delay/stp/zone options only allowed in open, route, nat, and isolated mode, not in {m} (network '{}')",
                                self.name
                            ),
                        ));
                    }
                    if bridge.name.is_some() && (nifs > 0 || !fwd.pfs.is_empty()) {
                        return Err(self.invalid(
                            at,
                            None,
                            format!(
                                "A network with forward mode='{m}' can specify a bridge name or a forward dev, but not both (network '{}')",
                                self.name
                            ),
                        ));
                    }
                }
            }
            if mtu != 0 && !m.is_virtual() {
                let mat = root.xpath_child("mtu").unwrap_or(root);
                return Err(self.invalid(
                    mat,
                    Some("size"),
                    format!(
                        "mtu size only allowed in open, route, nat, and isolated mode, not in {m} (network '{}')",
                        self.name
                    ),
                ));
            }
        }

        let metadata = root
            .xpath_child("metadata")
            .filter(|m| m.elements().next().is_some())
            .map(super::format::metadata_from_dom);

        // dnsmasq namespace options
        let mut dnsmasq_options = Vec::new();
        for opts in root
            .elements()
            .filter(|e| e.ns.as_deref() == Some(DNSMASQ_NAMESPACE_URI) && e.local == "options")
        {
            for opt in opts
                .elements()
                .filter(|e| e.ns.as_deref() == Some(DNSMASQ_NAMESPACE_URI) && e.local == "option")
            {
                match opt.prop("value") {
                    Some(v) => dnsmasq_options.push(v.to_string()),
                    None => {
                        return Err(self.invalid(
                            opt,
                            Some("value"),
                            "No dnsmasq options value specified",
                        ))
                    }
                }
            }
        }

        Ok(NetworkDef {
            name,
            uuid,
            uuid_specified,
            title,
            description,
            metadata,
            connections: 0,
            ipv6,
            trust_guest_rx_filters,
            forward,
            bridge,
            mtu,
            mac,
            domain,
            dns,
            ips,
            routes,
            bandwidth,
            vlan,
            isolated_port,
            virtualport,
            portgroups,
            dnsmasq_options,
        })
    }

    fn bandwidth(&self, el: &Element) -> Result<Option<Bandwidth>> {
        if el.attr("classID").is_some() {
            self.prop_uint(el, "classID", 10, false)?;
            return Err(self.invalid(
                el,
                Some("classID"),
                "classID attribute not supported on <bandwidth> in this usage context",
            ));
        }
        let mut bw = Bandwidth::default();
        if let Some(i) = el.sub_element("inbound") {
            bw.inbound = Some(self.rate(i)?);
        }
        if let Some(o) = el.sub_element("outbound") {
            bw.outbound = Some(self.rate(o)?);
        }
        if bw.inbound.is_none() && bw.outbound.is_none() {
            return Ok(None);
        }
        Ok(Some(bw))
    }

    fn rate(&self, el: &Element) -> Result<BandwidthRate> {
        let average = self.prop_ull(el, "average", 10)?;
        let peak = self.prop_ull(el, "peak", 10)?;
        let burst = self.prop_ull(el, "burst", 10)?;
        let floor = self.prop_ull(el, "floor", 10)?;
        if average.is_none() && floor.is_none() {
            return Err(self.invalid(el, None, "Missing mandatory average or floor attributes"));
        }
        if (peak.is_some() || burst.is_some()) && average.is_none() {
            return Err(self.unsupported(
                el,
                None,
                "'peak' and 'burst' require 'average' attribute",
            ));
        }
        if floor.is_some() {
            return Err(self.unsupported(
                el,
                Some("floor"),
                "floor attribute is not supported for this config",
            ));
        }
        Ok(BandwidthRate {
            average: average.unwrap_or(0),
            peak: peak.unwrap_or(0),
            floor: floor.unwrap_or(0),
            burst: burst.unwrap_or(0),
        })
    }

    fn vlan(&self, el: &Element) -> Result<Vlan> {
        let tags: Vec<&Element> = el.xpath_children("tag").collect();
        if tags.is_empty() {
            return Err(self.invalid(
                el,
                None,
                "missing tag id - each <vlan> must have at least one <tag id='n'/> subelement",
            ));
        }
        let mut ids = Vec::new();
        let mut native = None;
        for t in &tags {
            let Some(id) = self.prop_uint(t, "id", 10, false)? else {
                return Err(self.invalid(
                    t,
                    Some("id"),
                    "Missing required attribute 'id' in element 'tag'",
                ));
            };
            if id > 4095 {
                return Err(self.invalid(
                    t,
                    Some("id"),
                    format!("vlan tag id {id} too large (maximum 4095)"),
                ));
            }
            ids.push(id);
            if let Some(m) = t.prop("nativeMode") {
                let mode = match m {
                    "tagged" => NativeVlanMode::Tagged,
                    "untagged" => NativeVlanMode::Untagged,
                    _ => {
                        return Err(self.invalid(
                            t,
                            Some("nativeMode"),
                            format!(
                                "Invalid value for attribute 'nativeMode' in element 'tag': '{m}'."
                            ),
                        ))
                    }
                };
                if native.is_some() {
                    return Err(self.invalid(
                        t,
                        Some("nativeMode"),
                        "duplicate native vlan setting",
                    ));
                }
                native = Some((mode, id));
            }
        }
        let mut trunk = ids.len() > 1;
        if let Some(tr) = el.xpath_prop("trunk") {
            trunk = tr.eq_ignore_ascii_case("yes");
            if !trunk {
                if ids.len() > 1 {
                    return Err(self.invalid(
                        el,
                        Some("trunk"),
                        format!(
                            "invalid \"trunk='{tr}'\" in <vlan> - trunk='yes' is required for more than one vlan tag"
                        ),
                    ));
                }
                if native.is_some() {
                    return Err(self.invalid(
                        el,
                        Some("trunk"),
                        "invalid configuration in <vlan> - \"trunk='no'\" is not allowed with a native vlan id",
                    ));
                }
                if !tr.eq_ignore_ascii_case("no") {
                    return Err(self.invalid(
                        el,
                        Some("trunk"),
                        format!("invalid \"trunk='{tr}'\" in <vlan> - must be yes or no"),
                    ));
                }
            }
        }
        Ok(Vlan {
            trunk,
            tags: ids,
            native,
        })
    }

    fn virtualport(&self, el: &Element, require_type: bool) -> Result<VirtualPort> {
        let mut vp = VirtualPort::default();
        if let Some(t) = el.prop("type") {
            vp.kind = Some(VirtualPortType::from_xml(t).ok_or_else(|| {
                self.unsupported(el, Some("type"), format!("unknown virtualport type {t}"))
            })?);
        }
        if vp.kind.is_none() && require_type {
            return Err(self.invalid(el, None, "missing required virtualport type"));
        }
        if let Some(p) = el.sub_element("parameters") {
            if let Some(v) = p.prop("managerid") {
                let n = parse_ui(v, 0).ok_or_else(|| {
                    self.invalid(
                        p,
                        Some("managerid"),
                        "cannot parse value of managerid parameter",
                    )
                })?;
                vp.manager_id = Some(u8::try_from(n).map_err(|_| {
                    self.invalid(p, Some("managerid"), "value of managerid out of range")
                })?);
            }
            if let Some(v) = p.prop("typeid") {
                let n = parse_ui(v, 0).ok_or_else(|| {
                    self.invalid(p, Some("typeid"), "cannot parse value of typeid parameter")
                })?;
                if n > 0xff_ffff {
                    return Err(self.invalid(p, Some("typeid"), "value for typeid out of range"));
                }
                vp.type_id = Some(n);
            }
            if let Some(v) = p.prop("typeidversion") {
                let n = parse_ui(v, 0).ok_or_else(|| {
                    self.invalid(
                        p,
                        Some("typeidversion"),
                        "cannot parse value of typeidversion parameter",
                    )
                })?;
                vp.type_id_version = Some(u8::try_from(n).map_err(|_| {
                    self.invalid(
                        p,
                        Some("typeidversion"),
                        "value of typeidversion out of range",
                    )
                })?);
            }
            if let Some(v) = p.prop("instanceid") {
                vp.instance_id = Some(parse_uuid(v).ok_or_else(|| {
                    self.invalid(
                        p,
                        Some("instanceid"),
                        "cannot parse instanceid parameter as a uuid",
                    )
                })?);
            }
            if let Some(v) = p.prop("profileid") {
                if v.len() >= 40 {
                    return Err(self.invalid(p, Some("profileid"), "profileid parameter too long"));
                }
                if !v.is_empty() {
                    vp.profile_id = Some(v.to_string());
                }
            }
            if let Some(v) = p.prop("interfaceid") {
                vp.interface_id = Some(parse_uuid(v).ok_or_else(|| {
                    self.invalid(
                        p,
                        Some("interfaceid"),
                        "cannot parse interfaceid parameter as a uuid",
                    )
                })?);
            }
        }
        let extra = match vp.kind {
            Some(VirtualPortType::Ieee8021Qbg) => {
                if vp.profile_id.is_some() {
                    Some("profileid")
                } else if vp.interface_id.is_some() {
                    Some("interfaceid")
                } else {
                    None
                }
            }
            Some(VirtualPortType::Ieee8021Qbh) | Some(VirtualPortType::Openvswitch) => {
                if vp.manager_id.is_some() {
                    Some("managerid")
                } else if vp.type_id.is_some() {
                    Some("typeid")
                } else if vp.type_id_version.is_some() {
                    Some("typeidversion")
                } else if vp.instance_id.is_some() {
                    Some("instanceid")
                } else if vp.kind == Some(VirtualPortType::Ieee8021Qbh) && vp.interface_id.is_some()
                {
                    Some("interfaceid")
                } else {
                    None
                }
            }
            _ => None,
        };
        if let (Some(x), Some(k)) = (extra, vp.kind) {
            return Err(self.invalid(
                el,
                None,
                format!(
                    "extra {x} unsupported in <virtualport type='{}'>",
                    k.as_str()
                ),
            ));
        }
        Ok(vp)
    }

    pub(super) fn portgroup(&self, el: &Element) -> Result<PortGroup> {
        let Some(name) = el.xpath_prop("name") else {
            return Err(self.invalid(
                el,
                Some("name"),
                "Missing required name attribute in portgroup",
            ));
        };
        let is_default = el
            .xpath_prop("default")
            .is_some_and(|d| d.eq_ignore_ascii_case("yes"));
        let trust = self.tristate(el, "trustGuestRxFilters")?;
        let virtualport = match el.xpath_child("virtualport") {
            Some(v) => Some(self.virtualport(v, false)?),
            None => None,
        };
        let bandwidth = match el.xpath_child("bandwidth") {
            Some(b) => self.bandwidth(b)?,
            None => None,
        };
        let vlan = match el.xpath_child("vlan") {
            Some(v) => Some(self.vlan(v)?),
            None => None,
        };
        Ok(PortGroup {
            name: name.to_string(),
            is_default,
            trust_guest_rx_filters: trust,
            virtualport,
            bandwidth,
            vlan,
        })
    }

    fn dns(&self, el: &Element) -> Result<DnsDef> {
        let n = &self.name;
        let mut dns = DnsDef {
            enable: self.tristate(el, "enable")?,
            forward_plain_names: self.tristate(el, "forwardPlainNames")?,
            ..DnsDef::default()
        };
        for f in el.xpath_children("forwarder") {
            let addr = match f.prop("addr") {
                Some(a) => Some(parse_ip(a).ok_or_else(|| {
                    self.invalid(
                        f,
                        Some("addr"),
                        format!("Invalid forwarder IP address '{a}' in network '{n}'"),
                    )
                })?),
                None => None,
            };
            let domain = f.prop("domain").map(str::to_string);
            if addr.is_none() && domain.is_none() {
                return Err(self.invalid(
                    f,
                    None,
                    "Invalid forwarder element, must contain at least one of addr or domain",
                ));
            }
            dns.forwarders.push(DnsForwarder { addr, domain });
        }
        for h in el.xpath_children("host") {
            let (ip, hostnames) = self.dns_host(h, false)?;
            if let Some(ip) = ip {
                dns.hosts.push(DnsHost { ip, hostnames });
            }
        }
        for s in el.xpath_children("srv") {
            dns.srvs.push(self.srv(s)?);
        }
        for t in el.xpath_children("txt") {
            let (name, value) = self.txt(t, false)?;
            dns.txts.push(DnsTxt {
                name,
                value: value.unwrap_or_default(),
            });
        }
        if dns.enable == Some(false)
            && !(dns.forwarders.is_empty()
                && dns.hosts.is_empty()
                && dns.srvs.is_empty()
                && dns.txts.is_empty())
        {
            return Err(self.invalid(
                el,
                Some("enable"),
                format!("Extra data in disabled network '{n}'"),
            ));
        }
        Ok(dns)
    }

    /// One `<dns><host>`: its address and names. `partial` (an update's
    /// delete or modify key) lets either be missing, not both.
    pub(super) fn dns_host(
        &self,
        h: &Element,
        partial: bool,
    ) -> Result<(Option<IpAddr>, Vec<String>)> {
        let n = &self.name;
        let mut hostnames = Vec::new();
        for hn in h.sub_elements("hostname") {
            let t = hn.text_content();
            if t.is_empty() {
                return Err(self.invalid(
                    hn,
                    None,
                    format!("Missing hostname in network '{n}' DNS HOST record"),
                ));
            }
            hostnames.push(t);
        }
        if hostnames.is_empty() && !partial {
            return Err(self.invalid(
                h,
                None,
                format!("Missing hostname in network '{n}' DNS HOST record"),
            ));
        }
        let ip = match h.prop("ip") {
            Some(a) => Some(parse_ip(a).ok_or_else(|| {
                self.invalid(
                    h,
                    Some("ip"),
                    format!("Invalid IP address in network '{n}' DNS HOST record"),
                )
            })?),
            None if !partial => {
                return Err(self.invalid(
                    h,
                    Some("ip"),
                    format!("Missing IP address in network '{n}' DNS HOST record"),
                ))
            }
            None if hostnames.is_empty() => {
                return Err(self.invalid(
                    h,
                    None,
                    format!("Missing ip and hostname in network '{n}' DNS HOST record"),
                ))
            }
            None => None,
        };
        Ok((ip, hostnames))
    }

    /// One `<dns><txt>`: name and value; `partial` lets the value be missing.
    pub(super) fn txt(&self, t: &Element, partial: bool) -> Result<(String, Option<String>)> {
        let n = &self.name;
        let Some(name) = t.prop("name") else {
            return Err(self.invalid(
                t,
                Some("name"),
                format!("missing required name attribute in DNS TXT record of network {n}"),
            ));
        };
        if name.contains([' ', ',']) {
            return Err(self.invalid(
                t,
                Some("name"),
                format!("prohibited character in DNS TXT record name '{name}' of network {n}"),
            ));
        }
        let value = t.prop("value");
        if value.is_none() && !partial {
            return Err(self.invalid(
                t,
                Some("value"),
                format!("missing required value attribute in DNS TXT record named '{name}' of network {n}"),
            ));
        }
        Ok((name.to_string(), value.map(str::to_string)))
    }

    fn srv(&self, el: &Element) -> Result<DnsSrv> {
        let s = self.srv_fields(el, false)?;
        Ok(DnsSrv {
            service: s.service.unwrap_or_default(),
            protocol: s.protocol.unwrap_or_default(),
            domain: s.domain,
            target: s.target,
            port: s.port,
            priority: s.priority,
            weight: s.weight,
        })
    }

    /// One `<dns><srv>`; `partial` (an update's delete key) lets service
    /// and protocol be missing.
    pub(super) fn srv_fields(&self, el: &Element, partial: bool) -> Result<SrvFields> {
        const SERVICE_MAX: usize = 512 - 30;
        let n = &self.name;
        let service = el.prop("service");
        if service.is_none() && !partial {
            return Err(self.invalid(
                el,
                Some("service"),
                format!("missing required service attribute in DNS SRV record of network '{n}'"),
            ));
        }
        // A missing service in a partial record is printed as C's printf
        // prints a null string.
        let shown = service.unwrap_or("(null)");
        if let Some(service) = service {
            if service.len() > SERVICE_MAX {
                return Err(self.invalid(
                    el,
                    Some("service"),
                    format!("service attribute '{service}' in network '{n}' is too long, limit is {SERVICE_MAX} bytes"),
                ));
            }
            if !service
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_-+/*".contains(&c))
            {
                return Err(self.invalid(
                    el,
                    Some("service"),
                    format!("invalid character in service attribute '{service}' in DNS SRV record of network '{n}'"),
                ));
            }
        }
        let protocol = el.prop("protocol");
        if protocol.is_none() && !partial {
            return Err(self.invalid(
                el,
                Some("protocol"),
                format!("missing required protocol attribute in DNS SRV record '{shown}' of network '{n}'"),
            ));
        }
        if let Some(protocol) = protocol {
            if !protocol
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-+/".contains(&c))
            {
                return Err(self.invalid(
                    el,
                    Some("protocol"),
                    format!("invalid character in protocol attribute '{protocol}' in DNS SRV record of network '{n}'"),
                ));
            }
        }
        let domain = el.prop("domain").map(str::to_string);
        let target = el.prop("target").map(str::to_string);
        let mut nums = [0u32; 3];
        for (k, (attr, max, min, label)) in [
            ("port", 65535u32, 1u32, "invalid DNS SRV port attribute"),
            ("priority", 65535, 0, "Invalid DNS SRV priority attribute"),
            ("weight", 65535, 0, "invalid DNS SRV weight attribute"),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(v) = el.xpath_prop(attr) else {
                continue;
            };
            let parsed = parse_uip(v, 10);
            if parsed.is_some() && target.is_none() {
                return Err(self.invalid(
                    el,
                    Some(attr),
                    format!(
                        "DNS SRV {attr} attribute not permitted without target for service '{shown}' in network '{n}'"
                    ),
                ));
            }
            match parsed {
                Some(x) if x >= min && x <= max => nums[k] = x,
                _ => {
                    return Err(self.invalid(
                        el,
                        Some(attr),
                        format!("{label} for service '{shown}' in network '{n}'"),
                    ))
                }
            }
        }
        Ok(SrvFields {
            service: service.map(str::to_string),
            protocol: protocol.map(str::to_string),
            domain,
            target,
            port: nums[0],
            priority: nums[1],
            weight: nums[2],
        })
    }

    fn ip(&self, el: &Element) -> Result<IpDef> {
        let n = &self.name;
        let family = el.xpath_prop("family").map(str::to_string);
        let Some(address_s) = el.xpath_prop("address") else {
            return Err(self.invalid(
                el,
                Some("address"),
                format!("Missing required address attribute in network '{n}'"),
            ));
        };
        let address = parse_ip(address_s).ok_or_else(|| {
            self.invalid(
                el,
                Some("address"),
                format!("Invalid address '{address_s}' in network '{n}'"),
            )
        })?;
        let netmask_s = el.xpath_prop("netmask");
        let netmask_any = match netmask_s {
            Some(m) => Some(parse_ip(m).ok_or_else(|| {
                self.invalid(
                    el,
                    Some("netmask"),
                    format!("Invalid netmask '{m}' in network '{n}'"),
                )
            })?),
            None => None,
        };
        let prefix = self.prop_uint(el, "prefix", 10, false)?.unwrap_or(0);
        let local_ptr = self.tristate(el, "localPtr")?;

        let mut netmask = None;
        match family.as_deref() {
            None | Some("ipv4") => {
                if !address.is_ipv4() {
                    return Err(self.unsupported(
                        el,
                        Some("address"),
                        format!(
                            "{} family specified for non-IPv4 address '{address_s}' in network '{n}'",
                            if family.is_none() { "no" } else { "ipv4" }
                        ),
                    ));
                }
                if let Some(m) = netmask_any {
                    let IpAddr::V4(m4) = m else {
                        return Err(self.unsupported(
                            el,
                            Some("netmask"),
                            format!(
                                "Invalid netmask '{}' for address '{address_s}' in network '{n}' (both must be IPv4)",
                                netmask_s.unwrap_or_default()
                            ),
                        ));
                    };
                    if prefix > 0 {
                        return Err(self.unsupported(
                            el,
                            Some("prefix"),
                            format!(
                                "Network '{n}' IP address cannot have both a prefix and a netmask"
                            ),
                        ));
                    }
                    netmask = Some(m4);
                } else if prefix > 32 {
                    return Err(self.unsupported(
                        el,
                        Some("prefix"),
                        format!("Invalid IPv4 prefix '{prefix}' in network '{n}'"),
                    ));
                }
            }
            Some("ipv6") => {
                if !address.is_ipv6() {
                    return Err(self.unsupported(
                        el,
                        Some("address"),
                        format!("Family 'ipv6' specified for non-IPv6 address '{address_s}' in network '{n}'"),
                    ));
                }
                if netmask_s.is_some() {
                    return Err(self.unsupported(
                        el,
                        Some("netmask"),
                        format!(
                            "netmask not allowed for IPv6 address '{address_s}' in network '{n}'"
                        ),
                    ));
                }
                if prefix > 128 {
                    return Err(self.unsupported(
                        el,
                        Some("prefix"),
                        format!("Invalid IPv6 prefix '{prefix}' in network '{n}'"),
                    ));
                }
            }
            Some(f) => {
                return Err(self.invalid(
                    el,
                    Some("family"),
                    format!("Unrecognized family '{f}' in network '{n}'"),
                ));
            }
        }

        let mut ip = IpDef {
            family,
            address,
            netmask,
            explicit_prefix: prefix,
            local_ptr,
            tftp_root: None,
            ranges: Vec::new(),
            hosts: Vec::new(),
            bootp: None,
        };

        if let Some(dhcp) = el.xpath_child("dhcp") {
            for r in dhcp.sub_elements("range") {
                let range = self.dhcp_range(&ip, r)?;
                ip.ranges.push(range);
            }
            for h in dhcp.sub_elements("host") {
                let host = self.dhcp_host(&ip, h, false)?;
                ip.hosts.push(host);
            }
            if let Some(b) = dhcp.sub_element("bootp") {
                if ip.is_ipv4() {
                    let Some(file) = b.prop("file") else {
                        return Err(self.invalid(
                            b,
                            Some("file"),
                            "Missing required attribute 'file' in element 'bootp'",
                        ));
                    };
                    let server = match b.prop("server") {
                        Some(s) => Some(parse_ip(s).ok_or_else(|| self.bad_addr(b, "server", s))?),
                        None => None,
                    };
                    ip.bootp = Some(Bootp {
                        file: file.to_string(),
                        server,
                    });
                }
            }
        }

        if let Some(t) = el.xpath_child("tftp") {
            if !ip.is_ipv4() {
                return Err(self.unsupported(
                    t,
                    None,
                    format!("Unsupported <tftp> element in an IPv6 element in network '{n}'"),
                ));
            }
            ip.tftp_root = t.xpath_prop("root").map(str::to_string);
        }
        Ok(ip)
    }

    /// virSocketAddrGetRange against the parent `<ip>`.
    fn check_range(
        &self,
        el: &Element,
        start: IpAddr,
        end: IpAddr,
        net: Option<(&IpDef, Option<u32>)>,
    ) -> Result<()> {
        let bad = |msg: String| self.invalid(el, None, msg);
        let (start_s, end_s) = (ip_to_string(&start), ip_to_string(&end));
        if Family::of(&start) != Family::of(&end) {
            return Err(bad(format!(
                "mismatch of address family in range {start_s} - {end_s}"
            )));
        }
        if let Some((ip, prefix)) = net {
            let netstr = ip_to_string(&ip.address);
            if Family::of(&start) != ip.family() {
                return Err(bad(format!(
                    "mismatch of address family in range {start_s} - {end_s} for network {netstr}"
                )));
            }
            let p = match prefix {
                Some(p) if mask_by_prefix(ip.address, p).is_some() => p,
                _ => {
                    let shown = prefix.map(|p| p as i64).unwrap_or(-1);
                    return Err(bad(format!(
                        "bad prefix {shown} for network {netstr} when checking range {start_s} - {end_s}"
                    )));
                }
            };
            let netaddr = mask_by_prefix(ip.address, p);
            if mask_by_prefix(start, p) != netaddr || mask_by_prefix(end, p) != netaddr {
                return Err(bad(format!(
                    "range {start_s} - {end_s} is not entirely within network {netstr}/{p}"
                )));
            }
            if let (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(a)) = (start, end, ip.address) {
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                let na = u32::from(a) & mask;
                let bc = u32::from(a) | !mask;
                if u32::from(s) == na {
                    return Err(bad(format!(
                        "start of range {start_s} - {end_s} in network {netstr}/{p} is the network address"
                    )));
                }
                if u32::from(e) == bc {
                    return Err(bad(format!(
                        "end of range {start_s} - {end_s} in network {netstr}/{p} is the broadcast address"
                    )));
                }
            }
        }
        match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => {
                let (s, e) = (u32::from(s), u32::from(e));
                if e < s {
                    return Err(bad(format!("range {start_s} - {end_s} is reversed ")));
                }
                if e - s > 65535 {
                    return Err(bad(format!(
                        "range {start_s} - {end_s} is too large (> 65535)"
                    )));
                }
            }
            (IpAddr::V6(s), IpAddr::V6(e)) => {
                let (s, e) = (s.segments(), e.segments());
                if s[..7] != e[..7] {
                    return Err(bad(format!(
                        "range {start_s} - {end_s} is too large (> 65535)"
                    )));
                }
                if e[7] < s[7] {
                    return Err(bad(format!(
                        "range {start_s} - {end_s} start larger than end"
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn lease(&self, el: &Element) -> Result<Option<Lease>> {
        let Some(lease) = el.sub_element("lease") else {
            return Ok(None);
        };
        let Some(expiry) = self.prop_ull(lease, "expiry", 0)? else {
            return Ok(None);
        };
        let unit = match lease.prop("unit") {
            None => LeaseUnit::Minutes,
            Some("seconds") => LeaseUnit::Seconds,
            Some("minutes") => LeaseUnit::Minutes,
            Some("hours") => LeaseUnit::Hours,
            Some(u) => {
                return Err(self.invalid(
                    lease,
                    Some("unit"),
                    format!("Invalid value for attribute 'unit' in element 'lease': '{u}'."),
                ))
            }
        };
        if expiry > 0
            && ((unit == LeaseUnit::Seconds && expiry < 120)
                || (unit == LeaseUnit::Minutes && expiry < 2))
        {
            return Err(self.unsupported(
                lease,
                Some("expiry"),
                "The minimum lease time should be greater than 2 minutes",
            ));
        }
        Ok(Some(Lease { expiry, unit }))
    }

    pub(super) fn dhcp_range(&self, ip: &IpDef, el: &Element) -> Result<DhcpRange> {
        let n = &self.name;
        let Some(s) = el.prop("start") else {
            return Err(self.invalid(
                el,
                Some("start"),
                format!("Missing 'start' attribute in dhcp range for network '{n}'"),
            ));
        };
        let start = parse_ip(s).ok_or_else(|| self.bad_addr(el, "start", s))?;
        let Some(e) = el.prop("end") else {
            return Err(self.invalid(
                el,
                Some("end"),
                format!("Missing 'end' attribute in dhcp range for network '{n}'"),
            ));
        };
        let end = parse_ip(e).ok_or_else(|| self.bad_addr(el, "end", e))?;
        self.check_range(el, start, end, Some((ip, ip.prefix())))?;
        let lease = self.lease(el)?;
        Ok(DhcpRange { start, end, lease })
    }

    /// One `<dhcp><host>` of `ip`. `partial` (an update's delete key)
    /// needs only one of mac, name and ip.
    pub(super) fn dhcp_host(&self, ip: &IpDef, el: &Element, partial: bool) -> Result<DhcpHost> {
        let n = &self.name;
        let mac = el.prop("mac");
        if let Some(m) = mac {
            if ip.is_ipv6() {
                return Err(self.invalid(
                    el,
                    Some("mac"),
                    format!("Invalid to specify MAC address '{m}' in network '{n}' IPv6 static host definition"),
                ));
            }
            let a = parse_mac(m).ok_or_else(|| {
                self.invalid(
                    el,
                    Some("mac"),
                    format!("Cannot parse MAC address '{m}' in network '{n}'"),
                )
            })?;
            if a.is_multicast() {
                return Err(self.invalid(
                    el,
                    Some("mac"),
                    format!("expected unicast mac address, found multicast '{m}' in network '{n}'"),
                ));
            }
        }
        let id = el.prop("id");
        if let Some(i) = id {
            if let Some(c) = i.chars().find(|c| !(c.is_ascii_hexdigit() || *c == ':')) {
                return Err(self.invalid(
                    el,
                    Some("id"),
                    format!("Invalid character '{c}' in id '{i}' of network '{n}'"),
                ));
            }
        }
        let name = el.prop("name");
        if let Some(nm) = name {
            if !nm.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
                return Err(self.invalid(
                    el,
                    Some("name"),
                    format!("Cannot use host name '{nm}' in network '{n}'"),
                ));
            }
        }
        let ip_s = el.prop("ip");
        let host_ip = match ip_s {
            Some(s) => Some(parse_ip(s).ok_or_else(|| {
                self.invalid(
                    el,
                    Some("ip"),
                    format!("Invalid IP address in static host definition for network '{n}'"),
                )
            })?),
            None => None,
        };
        if partial {
            if mac.is_none() && name.is_none() && host_ip.is_none() {
                return Err(self.invalid(
                    el,
                    None,
                    format!("At least one of name, mac, or ip attribute must be specified for static host definition in network '{n}'"),
                ));
            }
        } else if ip.is_ipv6() {
            if id.is_none() && name.is_none() {
                return Err(self.invalid(
                    el,
                    None,
                    format!("Static host definition in IPv6 network '{n}' must have id or name attribute"),
                ));
            }
        } else if mac.is_none() && name.is_none() {
            return Err(self.invalid(
                el,
                None,
                format!(
                    "Static host definition in IPv4 network '{n}' must have mac or name attribute"
                ),
            ));
        }
        if host_ip.is_none() && !partial {
            return Err(self.invalid(
                el,
                Some("ip"),
                format!("Missing IP address in static host definition for network '{n}'"),
            ));
        }
        let lease = self.lease(el)?;
        Ok(DhcpHost {
            mac: mac.map(str::to_string),
            id: id.map(str::to_string),
            name: name.map(str::to_string),
            ip: host_ip,
            lease,
        })
    }

    fn route(&self, el: &Element) -> Result<RouteDef> {
        let n = &self.name;
        let family = el.prop("family").map(str::to_string);
        let address_s = el.prop("address");
        let netmask_s = el.prop("netmask");
        let gateway_s = el.prop("gateway");
        let prefix = self.prop_uint(el, "prefix", 10, false)?;
        let metric = self.prop_uint(el, "metric", 10, true)?;
        let Some(address_s) = address_s else {
            return Err(self.invalid(
                el,
                Some("address"),
                format!("{n}: Missing required address attribute in route definition"),
            ));
        };
        let Some(gateway_s) = gateway_s else {
            return Err(self.invalid(
                el,
                Some("gateway"),
                format!("{n}: Missing required gateway attribute in route definition"),
            ));
        };
        let address = parse_ip(address_s).ok_or_else(|| {
            self.invalid(
                el,
                Some("address"),
                format!("{n}: Bad network address '{address_s}' in route definition"),
            )
        })?;
        let gateway = parse_ip(gateway_s).ok_or_else(|| {
            self.invalid(
                el,
                Some("gateway"),
                format!("{n}: Bad gateway address '{gateway_s}' in route definition"),
            )
        })?;
        let mut netmask = None;
        match family.as_deref() {
            None | Some("ipv4") => {
                let label = if family.is_none() {
                    "No family"
                } else {
                    "IPv4 family"
                };
                if !address.is_ipv4() {
                    return Err(self.invalid(
                        el,
                        Some("address"),
                        format!("{n}: {label} specified for non-IPv4 address '{address_s}' in route definition"),
                    ));
                }
                if !gateway.is_ipv4() {
                    return Err(self.invalid(
                        el,
                        Some("gateway"),
                        format!("{n}: {label} specified for non-IPv4 gateway '{address_s}' in route definition"),
                    ));
                }
                if let Some(m) = netmask_s {
                    let mask = parse_ip(m).ok_or_else(|| {
                        self.invalid(
                            el,
                            Some("netmask"),
                            format!("{n}: Bad netmask address '{m}' in route definition"),
                        )
                    })?;
                    let IpAddr::V4(m4) = mask else {
                        return Err(self.invalid(
                            el,
                            Some("netmask"),
                            format!("{n}: Invalid netmask '{m}' for address '{address_s}' (both must be IPv4)"),
                        ));
                    };
                    if prefix.is_some() {
                        return Err(self.invalid(
                            el,
                            Some("prefix"),
                            format!(
                                "{n}: Route definition cannot have both a prefix and a netmask"
                            ),
                        ));
                    }
                    netmask = Some(m4);
                }
                if let Some(p) = prefix.filter(|p| *p > 32) {
                    return Err(self.invalid(
                        el,
                        Some("prefix"),
                        format!(
                            "{n}: Invalid prefix {p} specified in route definition, must be 0 - 32"
                        ),
                    ));
                }
            }
            Some("ipv6") => {
                if !address.is_ipv6() {
                    return Err(self.invalid(
                        el,
                        Some("address"),
                        format!("{n}: ipv6 family specified for non-IPv6 address '{address_s}' in route definition"),
                    ));
                }
                if netmask_s.is_some() {
                    return Err(self.invalid(
                        el,
                        Some("netmask"),
                        format!("{n}: Specifying netmask invalid for IPv6 address '{address_s}' in route definition"),
                    ));
                }
                if !gateway.is_ipv6() {
                    return Err(self.invalid(
                        el,
                        Some("gateway"),
                        format!("{n}: ipv6 specified for non-IPv6 gateway address '{gateway_s}' in route definition"),
                    ));
                }
                if let Some(p) = prefix.filter(|p| *p > 128) {
                    return Err(self.invalid(
                        el,
                        Some("prefix"),
                        format!("{n}: Invalid prefix {p} specified in route definition, must be 0 - 128"),
                    ));
                }
            }
            Some(f) => {
                return Err(self.invalid(
                    el,
                    Some("family"),
                    format!("{n}: Unrecognized family '{f}' in route definition"),
                ))
            }
        }
        let masked = match (netmask, address) {
            (Some(m), IpAddr::V4(a)) => {
                IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & u32::from(m)))
            }
            _ => {
                let p = prefix.unwrap_or(0);
                mask_by_prefix(address, p).ok_or_else(|| {
                    self.invalid(
                        el,
                        Some("prefix"),
                        format!(
                            "{n}: Error converting address '{address_s}' with prefix {p} to network-address in route definition"
                        ),
                    )
                })?
            }
        };
        if masked != address {
            return Err(self.invalid(
                el,
                Some("address"),
                format!("{n}: Address '{address_s}' in route definition is not a network address"),
            ));
        }
        Ok(RouteDef {
            family,
            address,
            netmask,
            prefix,
            gateway,
            metric,
        })
    }

    fn forward(&self, el: &Element) -> Result<Option<ForwardDef>> {
        let n = &self.name;
        // None = libvirt's VIR_NETWORK_FORWARD_NONE (`mode='none'`).
        let mode = match el.xpath_prop("mode") {
            None => Some(ForwardMode::Nat),
            Some("none") => None,
            Some(m) => Some(ForwardMode::from_xml(m).ok_or_else(|| {
                self.unsupported(el, Some("mode"), format!("unknown forwarding type '{m}'"))
            })?),
        };
        let managed = el
            .xpath_prop("managed")
            .is_some_and(|m| m.eq_ignore_ascii_case("yes"));
        let mut driver = HostdevDriver::default();
        if let Some(d) = el.xpath_child("driver") {
            driver.name = match d.prop("name") {
                None => None,
                Some("kvm") => Some(PciDriverName::Kvm),
                Some("vfio") => Some(PciDriverName::Vfio),
                Some("xen") => Some(PciDriverName::Xen),
                Some(v) => {
                    return Err(self.invalid(
                        d,
                        Some("name"),
                        format!("Invalid value for attribute 'name' in element 'driver': '{v}'."),
                    ))
                }
            };
            driver.model = d.prop("model").map(str::to_string);
        }
        let if_els: Vec<&Element> = el.xpath_children("interface").collect();
        let addr_els: Vec<&Element> = el.xpath_children("address").collect();
        let pf_els: Vec<&Element> = el.xpath_children("pf").collect();
        let nat_els: Vec<&Element> = el.xpath_children("nat").collect();

        let mut nat = NatDef::default();
        if nat_els.len() > 1 {
            return Err(self.invalid(
                nat_els[1],
                None,
                format!("Only one <nat> element is allowed in <forward> of network {n}"),
            ));
        } else if let Some(ne) = nat_els.first() {
            nat = self.nat(ne, mode)?;
        }

        let dev = el.xpath_prop("dev");
        if let Some(d) = dev {
            self.ifname(el, "dev", d)?;
        }
        for ie in &if_els {
            if let Some(d) = ie.prop("dev") {
                self.ifname(ie, "dev", d)?;
            }
        }
        for pe in &pf_els {
            if let Some(d) = pe.prop("dev") {
                self.ifname(pe, "dev", d)?;
            }
        }
        if dev.is_some() && (!addr_els.is_empty() || !pf_els.is_empty()) {
            return Err(self.invalid(
                el,
                Some("dev"),
                format!(
                    "the <forward> 'dev' attribute cannot be used when <address> or <pf> sub-elements are present in network {n}"
                ),
            ));
        }

        let mut ifs: Vec<ForwardIf> = Vec::new();
        let mut pfs = Vec::new();
        // Devices listed so far, for the "only once" checks in linear time.
        let mut seen_devs: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut seen_pci: std::collections::HashSet<PciAddress> = std::collections::HashSet::new();
        if !if_els.is_empty() || dev.is_some() {
            if let Some(d) = dev {
                seen_devs.insert(d);
                ifs.push(ForwardIf {
                    device: ForwardDevice::Netdev(d.to_string()),
                    connections: 0,
                });
            }
            for (i, ie) in if_els.iter().enumerate() {
                let Some(d) = ie.prop("dev") else {
                    return Err(self.invalid(
                        ie,
                        Some("dev"),
                        format!("Missing required dev attribute in <forward> <interface> element of network {n}"),
                    ));
                };
                if i == 0 {
                    if let Some(fd) = dev {
                        if d != fd {
                            return Err(self.invalid(
                                ie,
                                Some("dev"),
                                format!("<forward dev='{fd}'> must match first <interface dev='{d}'/> in network {n}"),
                            ));
                        }
                        continue;
                    }
                }
                if !seen_devs.insert(d) {
                    return Err(self.invalid(
                        ie,
                        Some("dev"),
                        format!("interface '{d}' can only be listed once in network {n}"),
                    ));
                }
                ifs.push(ForwardIf {
                    device: ForwardDevice::Netdev(d.to_string()),
                    connections: 0,
                });
            }
        } else if !addr_els.is_empty() {
            for ae in &addr_els {
                let Some(t) = ae.prop("type") else {
                    return Err(self.invalid(
                        ae,
                        Some("type"),
                        format!("missing address type in network {n}"),
                    ));
                };
                match t {
                    "pci" => {}
                    "none" | "netdev" => {
                        return Err(self.invalid(
                            ae,
                            Some("type"),
                            format!("unsupported address type '{t}' in network {n}"),
                        ))
                    }
                    _ => {
                        return Err(self.unsupported(
                            ae,
                            Some("type"),
                            format!("unknown address type '{t}' in network {n}"),
                        ))
                    }
                }
                let addr = self.pci_address(ae)?;
                if !seen_pci.insert(addr) {
                    return Err(self.invalid(
                        ae,
                        None,
                        format!("PCI device '{addr}' can only be listed once in network {n}"),
                    ));
                }
                ifs.push(ForwardIf {
                    device: ForwardDevice::Pci(addr),
                    connections: 0,
                });
            }
        } else if pf_els.len() > 1 {
            return Err(self.invalid(
                pf_els[1],
                None,
                format!("Only one <pf> element is allowed in <forward> of network {n}"),
            ));
        } else if let Some(pe) = pf_els.first() {
            let Some(d) = pe.prop("dev") else {
                return Err(self.invalid(
                    pe,
                    Some("dev"),
                    format!("Missing required dev attribute in <pf> element of network '{n}'"),
                ));
            };
            pfs.push(ForwardPf {
                dev: d.to_string(),
                connections: 0,
            });
        }

        Ok(mode.map(|mode| ForwardDef {
            mode,
            managed,
            driver,
            pfs,
            ifs,
            nat,
        }))
    }

    fn pci_address(&self, el: &Element) -> Result<PciAddress> {
        let a = PciAddress {
            domain: self.prop_uint(el, "domain", 0, false)?.unwrap_or(0),
            bus: self.prop_uint(el, "bus", 0, false)?.unwrap_or(0),
            slot: self.prop_uint(el, "slot", 0, false)?.unwrap_or(0),
            function: self.prop_uint(el, "function", 0, false)?.unwrap_or(0),
        };
        if let Some(v) = el.prop("multifunction") {
            if v != "on" && v != "off" {
                return Err(self.invalid(
                    el,
                    Some("multifunction"),
                    format!(
                        "Invalid value for attribute 'multifunction' in element '{}': '{v}'.",
                        el.local
                    ),
                ));
            }
        }
        if a != PciAddress::default() {
            if a.bus > 0xff {
                return Err(self.invalid(
                    el,
                    Some("bus"),
                    format!("Invalid PCI address bus='0x{:x}', must be <= 0xFF", a.bus),
                ));
            }
            if a.slot > 0x1f {
                return Err(self.invalid(
                    el,
                    Some("slot"),
                    format!("Invalid PCI address slot='0x{:x}', must be <= 0x1F", a.slot),
                ));
            }
            if a.function > 7 {
                return Err(self.invalid(
                    el,
                    Some("function"),
                    format!(
                        "Invalid PCI address function=0x{:x}, must be <= 7",
                        a.function
                    ),
                ));
            }
            if a.domain == 0 && a.bus == 0 && a.slot == 0 {
                return Err(self.invalid(
                    el,
                    None,
                    "Invalid PCI address 0000:00:00, at least one of domain, bus, or slot must be > 0",
                ));
            }
        }
        Ok(a)
    }

    fn nat(&self, el: &Element, mode: Option<ForwardMode>) -> Result<NatDef> {
        let n = &self.name;
        if mode != Some(ForwardMode::Nat) {
            return Err(self.invalid(
                el,
                None,
                format!("The <nat> element can only be used when <forward> 'mode' is 'nat' in network {n}"),
            ));
        }
        let mut nat = NatDef {
            ipv6: self.tristate(el, "ipv6")?,
            ..NatDef::default()
        };
        let addrs: Vec<&Element> = el.xpath_children("address").collect();
        if addrs.len() > 1 {
            return Err(self.invalid(
                addrs[1],
                None,
                format!(
                    "Only one <address> element is allowed in <nat> in <forward> in network {n}"
                ),
            ));
        }
        if let Some(a) = addrs.first() {
            let Some(s) = a.prop("start") else {
                return Err(self.invalid(
                    a,
                    Some("start"),
                    format!("missing 'start' attribute in <address> element in <nat> in <forward> in network {n}"),
                ));
            };
            let Some(e) = a.prop("end") else {
                return Err(self.invalid(
                    a,
                    Some("end"),
                    format!("missing 'end' attribute in <address> element in <nat> in <forward> in network {n}"),
                ));
            };
            let start = parse_ipv4(s).ok_or_else(|| {
                self.invalid(
                    a,
                    Some("start"),
                    format!("Bad ipv4 start address '{s}' in <nat> in <forward> in network '{n}'"),
                )
            })?;
            let end = parse_ipv4(e).ok_or_else(|| {
                self.invalid(
                    a,
                    Some("end"),
                    format!("Bad ipv4 end address '{e}' in <nat> in <forward> in network '{n}'"),
                )
            })?;
            self.check_range(a, IpAddr::V4(start), IpAddr::V4(end), None)?;
            nat.address = Some(NatAddressRange { start, end });
        }
        let ports: Vec<&Element> = el.xpath_children("port").collect();
        if ports.len() > 1 {
            return Err(self.invalid(
                ports[1],
                None,
                format!("Only one <port> element is allowed in <nat> in <forward> in network {n}"),
            ));
        }
        if let Some(p) = ports.first() {
            let start = p
                .xpath_prop("start")
                .and_then(|v| parse_uip(v, 10))
                .filter(|v| *v <= 65535)
                .ok_or_else(|| {
                    self.invalid(
                        p,
                        Some("start"),
                        format!("Missing or invalid 'start' attribute in <port> in <nat> in <forward> in network {n}"),
                    )
                })?;
            let end = p
                .xpath_prop("end")
                .and_then(|v| parse_uip(v, 10))
                .filter(|v| *v <= 65535 && *v >= start)
                .ok_or_else(|| {
                    self.invalid(
                        p,
                        Some("end"),
                        format!("Missing or invalid 'end' attribute in <port> in <nat> in <forward> in network {n}"),
                    )
                })?;
            // Both are <= 65535 (checked above).
            nat.port_start = start as u16;
            nat.port_end = end as u16;
        }
        Ok(nat)
    }
}
