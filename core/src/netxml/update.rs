//! `net-update` on a definition: libvirt 11.3.0's virNetworkDefUpdateSection
//! — one command (modify, delete, add-first, add-last) applied to one section
//! of a [`NetworkDef`] with one XML element, with libvirt's matching rules,
//! refusals and messages — followed by libvirt's format/parse round trip,
//! which refuses a result that would not be a valid definition.
//!
//! Pure: the driver ([`crate::driver::Driver::update`]) decides which
//! definitions (live, persistent) are changed and what is done on the host.
//!
//! Sections and what each command does (libvirt's rules):
//!
//! | section | element | modify | delete | add |
//! |---|---|---|---|---|
//! | `ip-dhcp-host` | `<host>` | first host with the same mac, ip or name | first host matching every given field (mac/name/ip, any subset) | refused if a host has the same mac, name or ip |
//! | `ip-dhcp-range` | `<range>` | refused | same start and end | refused if the same range exists |
//! | `forward-interface` | `<interface dev>` | refused | same dev, unused | refused if the dev exists |
//! | `portgroup` | `<portgroup>` | same name | same name | refused if the name exists; one default |
//! | `dns-host` | `<host ip>` | same ip, exactly one | same ip or a shared hostname, exactly one | refused if the ip exists |
//! | `dns-txt` | `<txt>` | same name, value replaced | same name | refused if the name exists |
//! | `dns-srv` | `<srv>` | refused | exactly one matching every given field | refused if one matches every given field |
//!
//! `bridge`, `domain`, `ip`, `forward` and `forward-pf` are refused
//! ("can't update 'S' section of network 'N'"), as in libvirt.
//!
//! Differences from libvirt: adding a forward interface to a network
//! without `<forward>` (mode none) is refused (libvirt adds it to a part of
//! its definition it never writes out); every other difference is in
//! [`crate::driver::update`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::error::NetXmlError;
use super::lex::parse_mac;
use super::model::*;
use super::parse::Fragment;

/// What to do with the element (libvirt's virNetworkUpdateCommand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateCommand {
    Modify,
    Delete,
    AddLast,
    AddFirst,
}

impl UpdateCommand {
    pub const ALL: [UpdateCommand; 4] = [
        UpdateCommand::Modify,
        UpdateCommand::Delete,
        UpdateCommand::AddLast,
        UpdateCommand::AddFirst,
    ];

    /// virsh's name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateCommand::Modify => "modify",
            UpdateCommand::Delete => "delete",
            UpdateCommand::AddLast => "add-last",
            UpdateCommand::AddFirst => "add-first",
        }
    }

    /// libvirt's API code (1..=4).
    pub fn code(self) -> u32 {
        match self {
            UpdateCommand::Modify => 1,
            UpdateCommand::Delete => 2,
            UpdateCommand::AddLast => 3,
            UpdateCommand::AddFirst => 4,
        }
    }

    /// From libvirt's API code; libvirt's message for any other.
    pub fn from_code(code: u32) -> Result<Self, UpdateError> {
        Self::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or_else(|| {
                UpdateError::Unsupported(format!("unrecognized network update command code {code}"))
            })
    }

    fn is_add(self) -> bool {
        matches!(self, UpdateCommand::AddLast | UpdateCommand::AddFirst)
    }
}

impl fmt::Display for UpdateCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// virsh's names; `add` is `add-last`. The error is virsh's message.
impl FromStr for UpdateCommand {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "add" {
            return Ok(UpdateCommand::AddLast);
        }
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unrecognized command name '{s}'"))
    }
}

/// Which part of the definition (libvirt's virNetworkUpdateSection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateSection {
    Bridge,
    Domain,
    Ip,
    IpDhcpHost,
    IpDhcpRange,
    Forward,
    ForwardInterface,
    ForwardPf,
    Portgroup,
    DnsHost,
    DnsTxt,
    DnsSrv,
}

impl UpdateSection {
    pub const ALL: [UpdateSection; 12] = [
        UpdateSection::Bridge,
        UpdateSection::Domain,
        UpdateSection::Ip,
        UpdateSection::IpDhcpHost,
        UpdateSection::IpDhcpRange,
        UpdateSection::Forward,
        UpdateSection::ForwardInterface,
        UpdateSection::ForwardPf,
        UpdateSection::Portgroup,
        UpdateSection::DnsHost,
        UpdateSection::DnsTxt,
        UpdateSection::DnsSrv,
    ];

    /// virsh's name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateSection::Bridge => "bridge",
            UpdateSection::Domain => "domain",
            UpdateSection::Ip => "ip",
            UpdateSection::IpDhcpHost => "ip-dhcp-host",
            UpdateSection::IpDhcpRange => "ip-dhcp-range",
            UpdateSection::Forward => "forward",
            UpdateSection::ForwardInterface => "forward-interface",
            UpdateSection::ForwardPf => "forward-pf",
            UpdateSection::Portgroup => "portgroup",
            UpdateSection::DnsHost => "dns-host",
            UpdateSection::DnsTxt => "dns-txt",
            UpdateSection::DnsSrv => "dns-srv",
        }
    }

    /// libvirt's API code (1..=12, in [`UpdateSection::ALL`]'s order).
    pub fn code(self) -> u32 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0) as u32 + 1
    }

    /// From libvirt's API code; libvirt's message for any other.
    pub fn from_code(code: u32) -> Result<Self, UpdateError> {
        Self::ALL
            .into_iter()
            .find(|s| s.code() == code)
            .ok_or_else(|| {
                UpdateError::Unsupported("can't update unrecognized section of network".into())
            })
    }

    /// Sections whose change can change the firewall rules of a
    /// none/nat/route/open network (libvirt removes them before the update
    /// and adds them after).
    pub fn affects_firewall(self) -> bool {
        matches!(
            self,
            UpdateSection::Forward
                | UpdateSection::ForwardInterface
                | UpdateSection::Ip
                | UpdateSection::IpDhcpRange
                | UpdateSection::IpDhcpHost
        )
    }
}

impl fmt::Display for UpdateSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// virsh's names. The error is virsh's message.
impl FromStr for UpdateSection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unrecognized section name '{s}'"))
    }
}

/// A refused update, with libvirt's message (and its error class prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The element does not parse, is not the section's element, or the
    /// result is not a valid definition (line:column in the element).
    #[error("{0}")]
    Xml(#[from] NetXmlError),
    /// libvirt's VIR_ERR_OPERATION_UNSUPPORTED.
    #[error("Operation not supported: {0}")]
    Unsupported(String),
    /// libvirt's VIR_ERR_OPERATION_INVALID.
    #[error("Requested operation is not valid: {0}")]
    Invalid(String),
}

/// Applies `command` to `section` of `def` with the element `xml`
/// (`parent_index`: which `<ip>` for the DHCP sections, −1 = the one libvirt
/// picks), then checks the result by formatting and parsing it (`inactive`:
/// in the persistent form). On error `def` may be partly changed: work on
/// a copy.
pub fn apply_update(
    def: &mut NetworkDef,
    command: UpdateCommand,
    section: UpdateSection,
    parent_index: i32,
    xml: &str,
    inactive: bool,
) -> Result<(), UpdateError> {
    apply_section(def, command, section, parent_index, xml)?;
    // libvirt's final format/parse cycle.
    let flags = if inactive {
        super::FormatFlags::INACTIVE
    } else {
        super::FormatFlags::LIVE
    };
    super::parse(&super::format(def, flags))?;
    Ok(())
}

/// [`apply_update`] without the final check (libvirt's
/// virNetworkDefUpdateSection alone, what its update tests run).
pub fn apply_section(
    def: &mut NetworkDef,
    command: UpdateCommand,
    section: UpdateSection,
    parent_index: i32,
    xml: &str,
) -> Result<(), UpdateError> {
    let frag = Fragment::parse(xml, &def.name)?;
    let no = |what: &str| {
        Err(UpdateError::Unsupported(format!(
            "can't update '{what}' section of network '{}'",
            def.name
        )))
    };
    match section {
        UpdateSection::Bridge => return no("bridge"),
        UpdateSection::Domain => return no("domain"),
        UpdateSection::Ip => return no("ip"),
        UpdateSection::Forward => return no("forward"),
        UpdateSection::ForwardPf => return no("forward pf"),
        UpdateSection::IpDhcpHost => dhcp_host(def, command, parent_index, &frag)?,
        UpdateSection::IpDhcpRange => dhcp_range(def, command, parent_index, &frag)?,
        UpdateSection::ForwardInterface => forward_interface(def, command, &frag)?,
        UpdateSection::Portgroup => portgroup(def, command, &frag)?,
        UpdateSection::DnsHost => dns_host(def, command, &frag)?,
        UpdateSection::DnsTxt => dns_txt(def, command, &frag)?,
        UpdateSection::DnsSrv => dns_srv(def, command, &frag)?,
    }
    Ok(())
}

fn invalid<T>(msg: String) -> Result<T, UpdateError> {
    Err(UpdateError::Invalid(msg))
}

/// virNetworkDefGetIPByIndex: the `n`th `<ip>` of a family (`None`: any).
fn ip_index(def: &NetworkDef, family: Option<Family>, n: usize) -> Option<usize> {
    def.ips
        .iter()
        .enumerate()
        .filter(|(_, ip)| family.is_none_or(|f| ip.family() == f))
        .nth(n)
        .map(|(i, _)| i)
}

/// The `<ip>` whose DHCP part is updated: `parent_index` ≥ 0 names it (any
/// family); −1 picks the first with DHCP ranges or hosts, else the first
/// IPv4, else the first IPv6.
fn parent_ip(def: &NetworkDef, parent_index: i32) -> Result<usize, UpdateError> {
    let name = &def.name;
    if parent_index >= 0 {
        return ip_index(def, None, parent_index as usize).ok_or_else(|| UpdateError::Invalid(format!(
            "couldn't update dhcp host entry - no <ip> element found at index {parent_index} in network '{name}'"
        )));
    }
    def.ips
        .iter()
        .position(IpDef::has_dhcp)
        .or_else(|| ip_index(def, Some(Family::Ipv4), 0))
        .or_else(|| ip_index(def, Some(Family::Ipv6), 0))
        .ok_or_else(|| {
            UpdateError::Invalid(format!(
                "couldn't update dhcp host entry - no <ip> element found in network '{name}'"
            ))
        })
}

/// DHCP only on one `<ip>` of each family.
fn check_multi_dhcp(def: &NetworkDef, parent: usize) -> Result<(), UpdateError> {
    let family = def.ips[parent].family();
    let other = def
        .ips
        .iter()
        .enumerate()
        .any(|(i, ip)| i != parent && ip.family() == family && ip.has_dhcp());
    if other {
        let f = if family == Family::Ipv4 {
            "IPv4"
        } else {
            "IPv6"
        };
        return invalid(format!(
            "dhcp is supported only for a single {f} address on each network"
        ));
    }
    Ok(())
}

fn family_of(a: &IpAddr) -> Family {
    if a.is_ipv4() {
        Family::Ipv4
    } else {
        Family::Ipv6
    }
}

/// virMacAddrCompare == 0: the same address, however it is written.
fn same_mac(a: &str, b: &str) -> bool {
    match (parse_mac(a), parse_mac(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

fn insert<T>(list: &mut Vec<T>, command: UpdateCommand, item: T) {
    if command == UpdateCommand::AddFirst {
        list.insert(0, item);
    } else {
        list.push(item);
    }
}

fn or_unknown(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("unknown")
}

/// libvirt prints a missing name with C's `%s` of a null pointer.
fn or_null(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("(null)")
}

fn ip_text(ip: &Option<IpAddr>) -> String {
    ip.map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn dhcp_host(
    def: &mut NetworkDef,
    command: UpdateCommand,
    parent_index: i32,
    frag: &Fragment,
) -> Result<(), UpdateError> {
    let parent = parent_ip(def, parent_index);
    frag.expect("host")?;
    let parent = parent?;
    let partial = command == UpdateCommand::Delete;
    let host = frag.dhcp_host(&def.ips[parent], partial)?;
    let name = def.name.clone();
    if !partial && host.ip.map(|a| family_of(&a)) != Some(def.ips[parent].family()) {
        return invalid("the address family of a host entry IP must match the address family of the dhcp element's parent".into());
    }
    let same_mac_of = |h: &DhcpHost| match (&host.mac, &h.mac) {
        (Some(a), Some(b)) => same_mac(a, b),
        _ => false,
    };
    let ip_key = host.ip;
    match command {
        UpdateCommand::Modify => {
            let hosts = &mut def.ips[parent].hosts;
            let found = hosts.iter().position(|h| {
                same_mac_of(h)
                    || (ip_key.is_some() && h.ip == ip_key)
                    || (host.name.is_some() && h.name == host.name)
            });
            let Some(i) = found else {
                return invalid(format!(
                    "couldn't locate an existing dhcp host entry with \"mac='{}'\" \"name='{}'\" \"ip='{}'\" in network '{name}'",
                    or_unknown(&host.mac),
                    or_null(&host.name),
                    ip_text(&host.ip)
                ));
            };
            hosts[i] = host;
        }
        UpdateCommand::AddFirst | UpdateCommand::AddLast => {
            check_multi_dhcp(def, parent)?;
            let hosts = &mut def.ips[parent].hosts;
            let dup = hosts.iter().any(|h| {
                same_mac_of(h)
                    || (host.name.is_some() && h.name == host.name)
                    || (ip_key.is_some() && h.ip == ip_key)
            });
            if dup {
                return invalid(format!(
                    "there is an existing dhcp host entry in network '{name}' that matches \"<host mac='{}' name='{}' ip='{}'/>\"",
                    or_unknown(&host.mac),
                    or_null(&host.name),
                    ip_text(&host.ip)
                ));
            }
            insert(hosts, command, host);
        }
        UpdateCommand::Delete => {
            let hosts = &mut def.ips[parent].hosts;
            // Every given field must match (a host without a mac matches
            // any given mac, as in libvirt).
            let found = hosts.iter().position(|h| {
                (host.mac.is_none() || h.mac.is_none() || same_mac_of(h))
                    && (host.name.is_none() || h.name == host.name)
                    && (ip_key.is_none() || h.ip == ip_key)
            });
            let Some(i) = found else {
                return invalid(format!(
                    "couldn't locate a matching dhcp host entry in network '{name}'"
                ));
            };
            hosts.remove(i);
        }
    }
    Ok(())
}

fn dhcp_range(
    def: &mut NetworkDef,
    command: UpdateCommand,
    parent_index: i32,
    frag: &Fragment,
) -> Result<(), UpdateError> {
    let parent = parent_ip(def, parent_index);
    frag.expect("range")?;
    let parent = parent?;
    if command == UpdateCommand::Modify {
        return Err(UpdateError::Unsupported(
            "dhcp ranges cannot be modified, only added or deleted".into(),
        ));
    }
    let range = frag.dhcp_range(&def.ips[parent])?;
    let name = def.name.clone();
    if family_of(&range.start) != def.ips[parent].family() {
        return invalid("the address family of a dhcp range must match the address family of the dhcp element's parent".into());
    }
    let found = def.ips[parent]
        .ranges
        .iter()
        .position(|r| r.start == range.start && r.end == range.end);
    if command.is_add() {
        check_multi_dhcp(def, parent)?;
        if found.is_some() {
            return invalid(format!(
                "there is an existing dhcp range entry in network '{name}' that matches \"<range start='{}' end='{}'/>\"",
                range.start, range.end
            ));
        }
        insert(&mut def.ips[parent].ranges, command, range);
    } else {
        let Some(i) = found else {
            return invalid(format!(
                "couldn't locate a matching dhcp range entry in network '{name}'"
            ));
        };
        def.ips[parent].ranges.remove(i);
    }
    Ok(())
}

fn forward_interface(
    def: &mut NetworkDef,
    command: UpdateCommand,
    frag: &Fragment,
) -> Result<(), UpdateError> {
    frag.expect("interface")?;
    if command == UpdateCommand::Modify {
        return Err(UpdateError::Unsupported(
            "forward interface entries cannot be modified, only added or deleted".into(),
        ));
    }
    let dev = frag.forward_interface()?;
    let name = def.name.clone();
    let Some(fwd) = def.forward.as_mut() else {
        return invalid(format!(
            "network '{name}' has no <forward> element: no forward interface can be updated"
        ));
    };
    let found = fwd
        .ifs
        .iter()
        .position(|i| matches!(&i.device, ForwardDevice::Netdev(d) if *d == dev));
    if command.is_add() {
        if found.is_some() {
            return invalid(format!(
                "there is an existing interface entry in network '{name}' that matches \"<interface dev='{dev}'>\""
            ));
        }
        insert(
            &mut fwd.ifs,
            command,
            ForwardIf {
                device: ForwardDevice::Netdev(dev),
                connections: 0,
            },
        );
    } else {
        let Some(i) = found else {
            return invalid(format!(
                "couldn't find an interface entry in network '{name}' matching <interface dev='{dev}'>"
            ));
        };
        let used = fwd.ifs[i].connections;
        if used > 0 {
            return invalid(format!(
                "unable to delete interface '{dev}' in network '{name}'. It is currently being used by {used} domains."
            ));
        }
        fwd.ifs.remove(i);
    }
    Ok(())
}

fn portgroup(
    def: &mut NetworkDef,
    command: UpdateCommand,
    frag: &Fragment,
) -> Result<(), UpdateError> {
    frag.expect("portgroup")?;
    let pg = frag.portgroup()?;
    let name = def.name.clone();
    let found = def.portgroups.iter().rposition(|p| p.name == pg.name);
    let default = def.portgroups.iter().rposition(|p| p.is_default);
    match (found, command) {
        (None, UpdateCommand::Modify | UpdateCommand::Delete) => {
            return invalid(format!(
                "couldn't find a portgroup entry in network '{name}' matching <portgroup name='{}'>",
                pg.name
            ))
        }
        (Some(_), UpdateCommand::AddFirst | UpdateCommand::AddLast) => {
            return invalid(format!(
                "there is an existing portgroup entry in network '{name}' that matches \"<portgroup name='{}'>\"",
                pg.name
            ))
        }
        _ => {}
    }
    if command != UpdateCommand::Delete && pg.is_default && default.is_some() && default != found {
        return invalid(format!(
            "a different portgroup entry in network '{name}' is already set as the default. Only one default is allowed."
        ));
    }
    match (command, found) {
        (UpdateCommand::Modify, Some(i)) => def.portgroups[i] = pg,
        (UpdateCommand::Delete, Some(i)) => {
            def.portgroups.remove(i);
        }
        _ => insert(&mut def.portgroups, command, pg),
    }
    Ok(())
}

fn dns_host(
    def: &mut NetworkDef,
    command: UpdateCommand,
    frag: &Fragment,
) -> Result<(), UpdateError> {
    frag.expect("host")?;
    let (ip, names) = frag.dns_host(!command.is_add())?;
    let name = def.name.clone();
    let hosts = &mut def.dns.hosts;
    let mut count = 0;
    let mut found = None;
    let mut found_ip = None;
    for (i, h) in hosts.iter().enumerate() {
        let mut hit = ip == Some(h.ip);
        if hit {
            found_ip = Some(i);
        }
        // Only a delete matches by a shared hostname: one address with
        // several records of the same name is a valid configuration.
        if command == UpdateCommand::Delete && !hit {
            hit = names.iter().any(|n| h.hostnames.contains(n));
        }
        if hit {
            count += 1;
            found = Some(i);
        }
    }
    let none = || {
        invalid(format!(
            "couldn't locate a matching DNS HOST record in network {name}"
        ))
    };
    let many = || {
        invalid(format!(
            "multiple matching DNS HOST records were found in network {name}"
        ))
    };
    match command {
        UpdateCommand::AddFirst | UpdateCommand::AddLast => {
            if count > 0 {
                return invalid(format!(
                    "there is already at least one DNS HOST record with a matching field in network {name}"
                ));
            }
            let Some(ip) = ip else { return none() };
            insert(
                hosts,
                command,
                DnsHost {
                    ip,
                    hostnames: names,
                },
            );
        }
        UpdateCommand::Delete => match (count, found) {
            (1, Some(i)) => {
                hosts.remove(i);
            }
            (0, _) => return none(),
            _ => return many(),
        },
        UpdateCommand::Modify => match (count, found_ip, ip) {
            (1, Some(i), Some(ip)) => {
                hosts[i] = DnsHost {
                    ip,
                    hostnames: names,
                }
            }
            (0, _, _) => return none(),
            (1, _, _) => return none(),
            _ => return many(),
        },
    }
    Ok(())
}

fn dns_txt(
    def: &mut NetworkDef,
    command: UpdateCommand,
    frag: &Fragment,
) -> Result<(), UpdateError> {
    frag.expect("txt")?;
    let (txt_name, value) = frag.txt(!command.is_add())?;
    let name = def.name.clone();
    let txts = &mut def.dns.txts;
    let found = txts.iter().position(|t| t.name == txt_name);
    let none = || {
        invalid(format!(
            "couldn't locate a matching DNS TXT record in network {name}"
        ))
    };
    match command {
        UpdateCommand::AddFirst | UpdateCommand::AddLast => {
            if found.is_some() {
                return invalid(format!(
                    "there is already a DNS TXT record with name '{txt_name}' in network {name}"
                ));
            }
            insert(
                txts,
                command,
                DnsTxt {
                    name: txt_name,
                    value: value.unwrap_or_default(),
                },
            );
        }
        UpdateCommand::Delete => {
            let Some(i) = found else { return none() };
            txts.remove(i);
        }
        UpdateCommand::Modify => {
            let Some(i) = found else { return none() };
            let Some(value) = value else {
                return invalid(format!(
                    "missing value of modifying DNS TXT record in network {name}"
                ));
            };
            txts[i].value = value;
        }
    }
    Ok(())
}

fn dns_srv(
    def: &mut NetworkDef,
    command: UpdateCommand,
    frag: &Fragment,
) -> Result<(), UpdateError> {
    if command == UpdateCommand::Modify {
        return Err(UpdateError::Unsupported(
            "DNS SRV records cannot be modified, only added or deleted".into(),
        ));
    }
    frag.expect("srv")?;
    let srv = frag.srv(!command.is_add())?;
    let name = def.name.clone();
    let srvs = &mut def.dns.srvs;
    let field = |given: &Option<String>, have: &str| given.as_deref().is_none_or(|g| g == have);
    let opt_field = |given: &Option<String>, have: &Option<String>| {
        given.is_none() || given.as_deref() == have.as_deref()
    };
    let matching: Vec<usize> = srvs
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            opt_field(&srv.domain, &s.domain)
                && field(&srv.service, &s.service)
                && field(&srv.protocol, &s.protocol)
                && opt_field(&srv.target, &s.target)
        })
        .map(|(i, _)| i)
        .collect();
    if command.is_add() {
        if !matching.is_empty() {
            return invalid(format!(
                "there is already at least one DNS SRV record matching all specified fields in network {name}"
            ));
        }
        insert(
            srvs,
            command,
            DnsSrv {
                service: srv.service.unwrap_or_default(),
                protocol: srv.protocol.unwrap_or_default(),
                domain: srv.domain,
                target: srv.target,
                port: srv.port,
                priority: srv.priority,
                weight: srv.weight,
            },
        );
    } else {
        match matching.as_slice() {
            [] => {
                return invalid(format!(
                    "couldn't locate a matching DNS SRV record in network {name}"
                ))
            }
            [i] => {
                srvs.remove(*i);
            }
            _ => {
                return invalid(format!(
                    "multiple DNS SRV records matching all specified fields were found in network {name}"
                ))
            }
        }
    }
    Ok(())
}
