//! Driver-level validation done when a network is defined or created
//! (libvirt 11.3.0 networkValidate), after parsing.
//!
//! [`validate_for_define`] is the full check, in libvirt's order: it also
//! assigns a bridge name (from the `virbr%d` or a user template) and a
//! random `52:54:00:xx:xx:xx` MAC to bridge-type networks, consulting the
//! host through [`DefineContext`]. [`validate`] runs the same checks on a
//! copy with a context where nothing is in use, which is what a static check
//! of a file (`virtnet xml validate`) can do.

use super::error::{ErrorKind, Location, NetXmlError};
use super::lex::random_bytes;
use super::model::*;

/// Highest id tried when allocating a bridge name from a template.
pub const MAX_BRIDGE_ID: u32 = 256;

/// What the define-time validation needs to know about the host and the
/// other networks.
pub trait DefineContext {
    /// Is `bridge` the bridge name of another libvirt network (live or
    /// persistent definition), not counting the network named `skip_network`?
    fn bridge_in_use(&self, bridge: &str, skip_network: &str) -> bool;
    /// Does a host network device of this name exist?
    fn netdev_exists(&self, name: &str) -> bool;
    /// Is the PCI device an SR-IOV virtual function? `Err(message)` if the
    /// question cannot be answered.
    fn pci_is_virtual_function(&self, addr: &PciAddress) -> Result<bool, String>;
    /// Three random bytes for a generated MAC (52:54:00:xx:xx:xx).
    fn random_mac_suffix(&self) -> [u8; 3] {
        random_bytes::<3>()
    }
}

/// A host with no other networks and no devices, where every PCI address is
/// a virtual function.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyHost;

impl DefineContext for EmptyHost {
    fn bridge_in_use(&self, _bridge: &str, _skip: &str) -> bool {
        false
    }
    fn netdev_exists(&self, _name: &str) -> bool {
        false
    }
    fn pci_is_virtual_function(&self, _addr: &PciAddress) -> Result<bool, String> {
        Ok(true)
    }
}

fn verr(path: &str, attr: Option<&str>, msg: impl Into<String>) -> NetXmlError {
    NetXmlError::new(ErrorKind::Validation, msg).at(Location {
        line: 0,
        column: 0,
        path: path.to_string(),
        attribute: attr.map(str::to_string),
    })
}

/// The host-independent define-time checks (on a copy; `def` is unchanged).
pub fn validate(def: &NetworkDef) -> Result<(), NetXmlError> {
    let mut copy = def.clone();
    validate_for_define(&mut copy, &EmptyHost)
}

/// The bridge-name template libvirt allocates from: the configured name if
/// it contains exactly one `%` and that is followed by `d`, else `virbr%d`.
pub fn bridge_template(name: Option<&str>) -> &str {
    if let Some(n) = name {
        let first = n.find('%');
        if first.is_some()
            && first == n.rfind('%')
            && first.is_some_and(|i| n[i + 1..].starts_with('d'))
        {
            return n;
        }
    }
    "virbr%d"
}

/// Find a bridge name for `def` (libvirt networkFindUnusedBridgeName).
pub fn find_unused_bridge_name(
    def: &NetworkDef,
    ctx: &dyn DefineContext,
) -> Result<String, NetXmlError> {
    let templ = bridge_template(def.bridge.name.as_deref());
    for id in 0..=MAX_BRIDGE_ID {
        let candidate = templ.replacen("%d", &id.to_string(), 1);
        if !(ctx.bridge_in_use(&candidate, &def.name) || ctx.netdev_exists(&candidate)) {
            return Ok(candidate);
        }
    }
    Err(verr(
        "/network/bridge[1]",
        Some("name"),
        format!("Bridge generation exceeded max id {MAX_BRIDGE_ID}"),
    ))
}

fn check_rate(r: &Option<BandwidthRate>, path: &str) -> Result<(), NetXmlError> {
    const SPEED: u64 = 1 << 54;
    const SIZE: u64 = (u32::MAX >> 10) as u64;
    let Some(r) = r else { return Ok(()) };
    for (v, lim, name) in [
        (r.average, SPEED, "average"),
        (r.peak, SPEED, "peak"),
        (r.burst, SIZE, "burst"),
        (r.floor, SPEED, "floor"),
    ] {
        if v > lim {
            return Err(verr(
                path,
                Some(name),
                format!("value '{v}' is too big for '{name}' parameter, maximum is '{lim}'"),
            ));
        }
    }
    Ok(())
}

/// libvirt networkValidate: full define/create-time validation. On success
/// bridge-type networks (isolated, nat, route, open) have a concrete bridge
/// name and a MAC address.
pub fn validate_for_define(
    def: &mut NetworkDef,
    ctx: &dyn DefineContext,
) -> Result<(), NetXmlError> {
    let name = def.name.clone();
    if name.contains('\n') {
        return Err(verr("/network/name[1]", None, "invalid char in name: \n"));
    }
    let mode = def.forward_mode();
    let mode_s = mode.map(|m| m.as_str()).unwrap_or("none");
    let bandwidth_allowed;
    match mode {
        None | Some(ForwardMode::Nat) | Some(ForwardMode::Route) | Some(ForwardMode::Open) => {
            match def.bridge.name.as_deref() {
                Some(b) if !b.contains("%d") => {
                    if ctx.bridge_in_use(b, &name) {
                        return Err(verr(
                            "/network/bridge[1]",
                            Some("name"),
                            format!("bridge name '{b}' already in use."),
                        ));
                    }
                }
                _ => {
                    let b = find_unused_bridge_name(def, ctx)?;
                    // A template that passed the parser's check can still
                    // give a name that is too long ("abcdefghijklm%d" -> 256).
                    if let Err(why) = super::names::check_interface_name(&b) {
                        return Err(verr(
                            "/network/bridge[1]",
                            Some("name"),
                            format!(
                                "invalid interface name '{}' made from <bridge name>: {why}",
                                b.escape_debug()
                            ),
                        ));
                    }
                    def.bridge.name = Some(b);
                }
            }
            if def.mac.is_none() {
                let r = ctx.random_mac_suffix();
                def.mac = Some(MacAddr([0x52, 0x54, 0x00, r[0], r[1], r[2]]));
            }
            bandwidth_allowed = true;
        }
        Some(_) => {
            bandwidth_allowed = mode == Some(ForwardMode::Bridge) && def.bridge.name.is_some();
            let unsupported = |what: &str, path: &str| {
                verr(
                    path,
                    None,
                    format!("Unsupported <{what}> element in network {name} with forward mode='{mode_s}'"),
                )
            };
            if def.mac.is_some() {
                return Err(unsupported("mac", "/network/mac[1]"));
            }
            if !def.ips.is_empty() {
                return Err(unsupported("ip", "/network/ip[1]"));
            }
            if !(def.dns.txts.is_empty() && def.dns.hosts.is_empty() && def.dns.srvs.is_empty()) {
                return Err(unsupported("dns", "/network/dns[1]"));
            }
            if def.domain.name.is_some() {
                return Err(unsupported("domain", "/network/domain[1]"));
            }
        }
    }

    if let Some(bw) = &def.bandwidth {
        if !bandwidth_allowed {
            return Err(verr(
                "/network/bandwidth[1]",
                None,
                format!("Unsupported network-wide <bandwidth> element in network {name} with forward mode='{mode_s}'"),
            ));
        }
        check_rate(&bw.inbound, "/network/bandwidth[1]/inbound[1]")?;
        check_rate(&bw.outbound, "/network/bandwidth[1]/outbound[1]")?;
    }

    let mut uses_interface = false;
    let mut uses_address = false;
    let mut npfs = 0;
    if let Some(fwd) = &def.forward {
        npfs = fwd.pfs.len();
        // The pool is either all <interface> (the dev attribute counts as
        // the first) or all <address>; count positions per kind for paths.
        let mut n_addr = 0;
        for i in &fwd.ifs {
            match &i.device {
                ForwardDevice::Netdev(d) => {
                    uses_interface = true;
                    if fwd.mode == ForwardMode::Hostdev {
                        return Err(verr(
                            "/network/forward[1]",
                            None,
                            format!(
                                "hostdev network '{name}' lists '{d}' in the device pool, but hostdev networks require all devices to be listed by PCI address, not network device name"
                            ),
                        ));
                    }
                }
                ForwardDevice::Pci(a) => {
                    n_addr += 1;
                    let path = format!("/network/forward[1]/address[{n_addr}]");
                    uses_address = true;
                    if fwd.mode != ForwardMode::Hostdev {
                        return Err(verr(
                            &path,
                            None,
                            format!(
                                "network '{name}' has forward mode '{}' but lists a device by PCI address in the device pool. This is only supported for networks with forward mode 'hostdev'",
                                fwd.mode
                            ),
                        ));
                    }
                    let sysfs = format!(
                        "/sys/bus/pci/devices/{:04x}:{:02x}:{:02x}.{:x}",
                        a.domain, a.bus, a.slot, a.function
                    );
                    match ctx.pci_is_virtual_function(a) {
                        Ok(true) => {}
                        Ok(false) => {
                            return Err(verr(
                                &path,
                                None,
                                format!("device '{sysfs}' in network '{name}' is not an SR-IOV Virtual Function"),
                            ))
                        }
                        Err(e) => return Err(verr(&path, None, e)),
                    }
                }
            }
        }
    }
    if usize::from(npfs > 0) + usize::from(uses_interface) + usize::from(uses_address) > 1 {
        return Err(verr(
            "/network/forward[1]",
            None,
            format!("<address>, <interface>, and <pf> elements of <forward> in network {name} are mutually exclusive"),
        ));
    }

    let mut v4 = false;
    let mut v6 = false;
    for (i, ip) in def.ips.iter().enumerate() {
        if !ip.has_dhcp() {
            continue;
        }
        let path = format!("/network/ip[{}]", i + 1);
        let (seen, fam) = if ip.is_ipv4() {
            (&mut v4, "IPv4")
        } else {
            (&mut v6, "IPv6")
        };
        if *seen {
            return Err(verr(
                &path,
                None,
                format!(
                    "Multiple {fam} dhcp sections found -- dhcp is supported only for a single {fam} address on each network"
                ),
            ));
        }
        *seen = true;
    }

    let ovs = |vp: &Option<VirtualPort>| {
        vp.as_ref()
            .is_some_and(|v| v.kind == Some(VirtualPortType::Openvswitch))
    };
    let vlan_allowed = matches!(
        mode,
        Some(ForwardMode::Hostdev) | Some(ForwardMode::Passthrough)
    ) || (mode == Some(ForwardMode::Bridge) && ovs(&def.virtualport))
        || (mode == Some(ForwardMode::Bridge) && def.virtualport.is_none());
    let vlan_used = def.vlan.as_ref().is_some_and(|v| !v.tags.is_empty());
    let mut bad_vlan_use = false;
    let mut bad_vlan_path = "/network/vlan[1]".to_string();
    let mut default_pg: Option<&str> = None;
    // Index of the last portgroup of each name: "a later one has the same
    // name" without scanning the rest of the list for every portgroup.
    let last_of_name: std::collections::HashMap<&str, usize> = def
        .portgroups
        .iter()
        .enumerate()
        .map(|(i, pg)| (pg.name.as_str(), i))
        .collect();
    for (i, pg) in def.portgroups.iter().enumerate() {
        let path = format!("/network/portgroup[{}]", i + 1);
        if vlan_used || pg.vlan.as_ref().is_some_and(|v| !v.tags.is_empty()) {
            let bad = match &pg.virtualport {
                Some(vp) => {
                    mode != Some(ForwardMode::Bridge)
                        || vp.kind != Some(VirtualPortType::Openvswitch)
                }
                None => !vlan_allowed,
            };
            if bad && !bad_vlan_use {
                bad_vlan_use = true;
                bad_vlan_path = path.clone();
            }
        }
        if pg.is_default {
            if let Some(d) = default_pg {
                return Err(verr(
                    &path,
                    Some("default"),
                    format!(
                        "network '{name}' has multiple default <portgroup> elements ({d} and {}), but only one default is allowed",
                        pg.name
                    ),
                ));
            }
            default_pg = Some(&pg.name);
        }
        if last_of_name
            .get(pg.name.as_str())
            .is_some_and(|&last| last > i)
        {
            return Err(verr(
                &path,
                Some("name"),
                format!(
                    "multiple <portgroup> elements with the same name ({}) in network '{name}'",
                    pg.name
                ),
            ));
        }
        if pg.bandwidth.is_some() && !bandwidth_allowed {
            return Err(verr(
                &format!("{path}/bandwidth[1]"),
                None,
                format!(
                    "Unsupported <bandwidth> element in network '{name}' in portgroup '{}' with forward mode='{mode_s}'",
                    pg.name
                ),
            ));
        }
    }
    if bad_vlan_use || (vlan_used && !vlan_allowed && default_pg.is_none()) {
        return Err(verr(
            &bad_vlan_path,
            None,
            format!("<vlan> element specified for network {name}, whose type doesn't support vlan configuration"),
        ));
    }
    if mode == Some(ForwardMode::Hostdev) {
        for (i, pg) in def.portgroups.iter().enumerate() {
            if pg.bandwidth.is_some() {
                return Err(verr(
                    &format!("/network/portgroup[{}]/bandwidth[1]", i + 1),
                    None,
                    format!(
                        "unsupported <bandwidth> element in <portgroup name='{}'> of network '{name}' with forward mode='{mode_s}'",
                        pg.name
                    ),
                ));
            }
        }
    }
    // virtnet: values dnsmasq would misread are refused now, not at start.
    if let Err(u) = crate::dnsmasq::check_define_values(def) {
        return Err(verr(&u.path, u.attribute, u.to_string()));
    }
    Ok(())
}

/// What libvirt does to a persistent definition it loads from its config
/// directory at daemon start (virNetworkLoadConfig), instead of the full
/// define-time validation: networks with a libvirt-managed bridge (isolated,
/// nat, route, open) get a random MAC if they have none; other modes lose
/// any stored MAC. Returns true if the config file must be rewritten (a MAC
/// or the UUID was generated).
pub fn prepare_loaded_config(def: &mut NetworkDef, ctx: &dyn DefineContext) -> bool {
    let mut save = false;
    match def.forward_mode() {
        None | Some(ForwardMode::Nat) | Some(ForwardMode::Route) | Some(ForwardMode::Open) => {
            if def.mac.is_none() {
                let r = ctx.random_mac_suffix();
                def.mac = Some(MacAddr([0x52, 0x54, 0x00, r[0], r[1], r[2]]));
                save = true;
            }
        }
        Some(_) => def.mac = None,
    }
    if !def.uuid_specified {
        save = true;
    }
    save
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_templates() {
        assert_eq!(bridge_template(None), "virbr%d");
        assert_eq!(bridge_template(Some("br%d")), "br%d");
        assert_eq!(bridge_template(Some("br%d%d")), "virbr%d");
        assert_eq!(bridge_template(Some("br%s")), "virbr%d");
        assert_eq!(bridge_template(Some("br0")), "virbr%d");
        assert_eq!(bridge_template(Some("br%")), "virbr%d");
    }

    #[test]
    fn bridge_allocation_gives_up_after_256() {
        struct Full;
        impl DefineContext for Full {
            fn bridge_in_use(&self, _: &str, _: &str) -> bool {
                true
            }
            fn netdev_exists(&self, _: &str) -> bool {
                false
            }
            fn pci_is_virtual_function(&self, _: &PciAddress) -> Result<bool, String> {
                Ok(true)
            }
        }
        let def = super::super::parse("<network><name>n</name></network>").expect("parse");
        let e = find_unused_bridge_name(&def, &Full).expect_err("full");
        assert_eq!(e.message, "Bridge generation exceeded max id 256");
    }

    #[test]
    fn loaded_config_mac_rules() {
        let mut d = super::super::parse(
            "<network><name>n</name><uuid>81ff0d90-c91e-6742-64da-4a736edb9a8e</uuid></network>",
        )
        .expect("parse");
        assert!(prepare_loaded_config(&mut d, &EmptyHost));
        assert!(d.mac.is_some_and(|m| m.0[..3] == [0x52, 0x54, 0]));
        assert!(!prepare_loaded_config(&mut d, &EmptyHost));

        let mut d = super::super::parse(
            "<network><name>n</name><uuid>81ff0d90-c91e-6742-64da-4a736edb9a8e</uuid><forward mode='bridge'/><bridge name='br0'/><mac address='52:54:00:00:00:01'/></network>",
        )
        .expect("parse");
        assert!(!prepare_loaded_config(&mut d, &EmptyHost));
        assert_eq!(d.mac, None);

        let mut d = super::super::parse(
            "<network><name>n</name><mac address='52:54:00:00:00:01'/></network>",
        )
        .expect("parse");
        assert!(
            prepare_loaded_config(&mut d, &EmptyHost),
            "generated uuid must be saved"
        );
    }
}
