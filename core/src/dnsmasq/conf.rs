//! The dnsmasq configuration file of a network, line for line as libvirt
//! 11.3.0 writes it (bridge_driver.c networkDnsmasqConfContents).

use std::net::IpAddr;

use super::hosts::{addnhosts_text, addr_text, dhcp_host_lines, hostsfile_text, lease_text};
use super::paths::{DnsmasqPaths, LIBVIRT_DNSMASQ_DIR, LIBVIRT_PID_DIR};
use super::{DnsmasqError, RangeProblem};
use crate::netxml::{DhcpRange, Family, IpDef, NetworkDef};

/// The `##` comment block at the top of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfHeader {
    /// libvirt's header, naming `virsh net-edit NAME` (for byte-for-byte
    /// comparison with libvirt's files).
    Libvirt,
    /// virtnet's header, naming virtnet.
    Virtnet,
    /// Verbatim text; every line must start with `#` and end with `\n`.
    Custom(String),
}

impl ConfHeader {
    /// The header text for network `name` (every line ends with `\n`).
    pub fn render(&self, name: &str) -> Result<String, DnsmasqError> {
        Ok(match self {
            ConfHeader::Libvirt => format!(
                "##WARNING:  THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
                 ##OVERWRITTEN AND LOST.  Changes to this configuration should be made using:\n\
                 ##    virsh net-edit {name}\n\
                 ## or other application using the libvirt API.\n\
                 ##\n\
                 ## dnsmasq conf file created by libvirt\n"
            ),
            ConfHeader::Virtnet => format!(
                "##WARNING:  THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
                 ##OVERWRITTEN AND LOST.  Changes to this configuration should be made by\n\
                 ##    changing the definition of network {name}\n\
                 ## and restarting the network with virtnet.\n\
                 ##\n\
                 ## dnsmasq conf file created by virtnet\n"
            ),
            ConfHeader::Custom(text) => {
                if text
                    .split_inclusive('\n')
                    .any(|l| !l.starts_with('#') || !l.ends_with('\n'))
                {
                    return Err(DnsmasqError::BadHeader);
                }
                text.clone()
            }
        })
    }
}

/// Settings of one configuration run (libvirt takes them from the driver
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqOptions {
    /// dnsmasq state directory: where the `.conf`, `.hostsfile` and
    /// `.addnhosts` files live (libvirt: `/var/lib/libvirt/dnsmasq`).
    pub dnsmasq_dir: String,
    /// Directory of the pid file; `None` writes no `pid-file=` line (as in
    /// libvirt's networkxml2conf test).
    pub pid_dir: Option<String>,
    /// The comment header.
    pub header: ConfHeader,
}

impl DnsmasqOptions {
    /// libvirt's networkxml2conf test harness: `/var/lib/libvirt/dnsmasq`,
    /// no pid file, libvirt's header.
    pub fn libvirt_test() -> Self {
        DnsmasqOptions {
            dnsmasq_dir: LIBVIRT_DNSMASQ_DIR.to_string(),
            pid_dir: None,
            header: ConfHeader::Libvirt,
        }
    }

    /// What a privileged libvirt daemon writes: `/var/lib/libvirt/dnsmasq`,
    /// pid files in `/run/libvirt/network`, libvirt's header.
    pub fn libvirt_daemon() -> Self {
        DnsmasqOptions {
            dnsmasq_dir: LIBVIRT_DNSMASQ_DIR.to_string(),
            pid_dir: Some(LIBVIRT_PID_DIR.to_string()),
            header: ConfHeader::Libvirt,
        }
    }

    /// virtnet's header with the given directories.
    pub fn virtnet(dnsmasq_dir: impl Into<String>, pid_dir: Option<String>) -> Self {
        DnsmasqOptions {
            dnsmasq_dir: dnsmasq_dir.into(),
            pid_dir,
            header: ConfHeader::Virtnet,
        }
    }

    /// The paths of network `def`'s files under these directories.
    pub fn paths(&self, def: &NetworkDef) -> DnsmasqPaths {
        DnsmasqPaths::new(
            &self.dnsmasq_dir,
            self.pid_dir.as_deref(),
            &def.name,
            def.bridge_name(),
        )
    }
}

/// Everything dnsmasq needs for one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqFiles {
    pub paths: DnsmasqPaths,
    /// The configuration file text.
    pub conf: String,
    /// DHCP hosts file text (empty when there are no hosts). libvirt writes
    /// this file at every start, even when the configuration does not use it.
    pub hostsfile: String,
    /// Additional hosts file text (empty when there are no `<dns><host>`).
    /// Also always written by libvirt at start.
    pub addnhosts: String,
    /// The configuration names the hosts file (`dhcp-hostsfile=`): there is
    /// an IPv4 or IPv6 DHCP definition.
    pub uses_hostsfile: bool,
    /// The configuration names the additional hosts file (`addn-hosts=`):
    /// DNS is enabled.
    pub uses_addnhosts: bool,
    /// Warnings libvirt logs while generating (not errors).
    pub warnings: Vec<String>,
}

impl DnsmasqFiles {
    /// Hosts file text when the configuration uses it.
    pub fn hostsfile(&self) -> Option<&str> {
        self.uses_hostsfile.then_some(self.hostsfile.as_str())
    }

    /// Additional hosts file text when the configuration uses it.
    pub fn addnhosts(&self) -> Option<&str> {
        self.uses_addnhosts.then_some(self.addnhosts.as_str())
    }

    /// The files libvirt writes before starting dnsmasq, as (path, text):
    /// the hosts file and the additional hosts file (both always, possibly
    /// empty), then the configuration.
    pub fn files(&self) -> [(&str, &str); 3] {
        [
            (self.paths.hostsfile.as_str(), self.hostsfile.as_str()),
            (self.paths.addnhosts.as_str(), self.addnhosts.as_str()),
            (self.paths.conf.as_str(), self.conf.as_str()),
        ]
    }
}

/// The contents of the hosts files a refresh (SIGHUP) rewrites: hosts of
/// the first IPv4 and the first IPv6 `<ip>` with DHCP, and the DNS hosts.
/// Unlike [`conf_contents`], a second DHCP `<ip>` of a family is not an
/// error here (libvirt's networkRefreshDhcpDaemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFiles {
    pub hostsfile: String,
    pub addnhosts: String,
}

const SLAAC_WARNING: &str = "For IPv6, when DHCP is specified for one address, then state-full Router Advertising will occur.  The additional IPv6 addresses specified require manually configured guest network to work properly since both state-full (DHCP) and state-less (SLAAC) addressing are not supported on the same network interface.";

/// Generate the configuration, hosts file and additional hosts file of
/// network `def`, as libvirt 11.3.0 does when it starts dnsmasq.
pub fn conf_contents(
    def: &NetworkDef,
    opts: &DnsmasqOptions,
) -> Result<DnsmasqFiles, DnsmasqError> {
    let paths = opts.paths(def);
    check_line_breaks(def, Some(&paths))?;
    let bridge = def.bridge_name().ok_or_else(|| DnsmasqError::NoBridge {
        network: def.name.clone(),
    })?;
    let dns = &def.dns;
    let want_dns = dns.enable != Some(false);
    let mut c = opts.header.render(&def.name)?;

    line(&mut c, "strict-order");
    if !want_dns {
        line(&mut c, "port=0");
    }

    if want_dns && !dns.forwarders.is_empty() {
        let mut no_resolv = false;
        for f in &dns.forwarders {
            let mut s = String::from("server=");
            if let Some(d) = &f.domain {
                s.push_str(&format!("/{d}/"));
            }
            match &f.addr {
                Some(a) => {
                    s.push_str(&addr_text(a));
                    if f.domain.is_none() {
                        no_resolv = true;
                    }
                }
                None => s.push('#'),
            }
            line(&mut c, &s);
        }
        if no_resolv {
            line(&mut c, "no-resolv");
        }
    }

    if let Some(d) = &def.domain.name {
        if def.domain.local_only == Some(true) {
            line(&mut c, &format!("local=/{d}/"));
        }
        line(&mut c, &format!("domain={d}"));
        line(&mut c, "expand-hosts");
    }

    if want_dns {
        for (i, ip) in def.ips.iter().enumerate() {
            if ip.local_ptr != Some(true) {
                continue;
            }
            let ptr = ptr_domain(ip).ok_or(DnsmasqError::PtrDomain {
                ip_index: i,
                family: ip.family(),
                prefix: ip.prefix(),
            })?;
            line(&mut c, &format!("local=/{ptr}/"));
        }
    }

    if want_dns && dns.forward_plain_names == Some(false) {
        line(&mut c, "domain-needed");
        line(&mut c, "local=//");
    }

    if let Some(p) = &paths.pid_file {
        line(&mut c, &format!("pid-file={p}"));
    }
    line(&mut c, "except-interface=lo");
    line(&mut c, "bind-dynamic");
    line(&mut c, &format!("interface={bridge}"));

    if def.forward.is_none() {
        line(&mut c, "dhcp-option=3");
        line(&mut c, "no-resolv");
        line(&mut c, "ra-param=*,0,0");
    }

    if want_dns {
        for t in &dns.txts {
            line(&mut c, &format!("txt-record={},{}", t.name, t.value));
        }
        for s in &dns.srvs {
            let mut l = format!("srv-host=_{}._{}", s.service, s.protocol);
            if let Some(d) = &s.domain {
                l.push('.');
                l.push_str(d);
            }
            if let Some(t) = s.target.as_deref().filter(|t| *t != ".") {
                l.push(',');
                l.push_str(t);
                if s.port != 0 || s.priority != 0 || s.weight != 0 {
                    let port = if s.port != 0 { s.port } else { 1 };
                    l.push_str(&format!(",{port}"));
                }
                if s.priority != 0 || s.weight != 0 {
                    l.push_str(&format!(",{}", s.priority));
                }
                if s.weight != 0 {
                    l.push_str(&format!(",{}", s.weight));
                }
            }
            line(&mut c, &l);
        }
    }

    // Choose the DHCP <ip> of each family; tftp lines come out in this walk.
    let mut v4: Option<(usize, &IpDef)> = None;
    let mut v6: Option<(usize, &IpDef)> = None;
    let mut slaac = false;
    let mut tftp_enabled = false;
    for (i, ip) in def.ips.iter().enumerate() {
        let slot = match ip.family() {
            Family::Ipv4 => &mut v4,
            Family::Ipv6 => &mut v6,
        };
        if ip.has_dhcp() {
            if slot.is_some() {
                return Err(DnsmasqError::MultipleDhcp {
                    family: ip.family(),
                    ip_index: i,
                });
            }
            *slot = Some((i, ip));
        } else if ip.is_ipv6() {
            slaac = true;
        }
        if ip.is_ipv4() {
            if let Some(root) = &ip.tftp_root {
                if !tftp_enabled {
                    line(&mut c, "enable-tftp");
                    tftp_enabled = true;
                }
                line(&mut c, &format!("tftp-root={root}"));
            }
        }
    }
    let mut warnings = Vec::new();
    if v6.is_some() && slaac {
        warnings.push(SLAAC_WARNING.to_string());
    }

    let mut leases: u64 = 0;
    let mut host_lines = Vec::new();
    for (i, ip) in [v4, v6].into_iter().flatten() {
        dhcp_block(&mut c, bridge, i, ip, &mut leases)?;
        dhcp_host_lines(&def.name, ip, i, &mut host_lines)?;
    }
    if leases > 0 {
        line(&mut c, &format!("dhcp-lease-max={leases}"));
    }

    let uses_hostsfile = v4.is_some() || v6.is_some();
    if uses_hostsfile {
        line(&mut c, &format!("dhcp-hostsfile={}", paths.hostsfile));
    }
    if want_dns {
        line(&mut c, &format!("addn-hosts={}", paths.addnhosts));
    }
    if def.mtu > 0 {
        line(&mut c, &format!("dhcp-option=option:mtu,{}", def.mtu));
    }
    if v6.is_some() {
        line(&mut c, "enable-ra");
    } else {
        for ip in def.ipv6_ips().filter(|ip| !ip.has_dhcp()) {
            line(
                &mut c,
                &format!("dhcp-range={},ra-only", addr_text(&ip.address)),
            );
        }
    }
    for o in &def.dnsmasq_options {
        line(&mut c, o);
    }

    Ok(DnsmasqFiles {
        paths,
        conf: c,
        hostsfile: hostsfile_text(&host_lines),
        addnhosts: addnhosts_text(&dns.hosts),
        uses_hostsfile,
        uses_addnhosts: want_dns,
        warnings,
    })
}

fn line(c: &mut String, s: &str) {
    c.push_str(s);
    c.push('\n');
}

/// Hosts file and additional hosts file as a refresh rewrites them.
pub fn refresh_contents(def: &NetworkDef) -> Result<RefreshFiles, DnsmasqError> {
    check_line_breaks(def, None)?;
    let mut lines = Vec::new();
    let first = |f: Family| {
        def.ips
            .iter()
            .enumerate()
            .find(|(_, ip)| ip.family() == f && ip.has_dhcp())
    };
    for (i, ip) in [first(Family::Ipv4), first(Family::Ipv6)]
        .into_iter()
        .flatten()
    {
        dhcp_host_lines(&def.name, ip, i, &mut lines)?;
    }
    Ok(RefreshFiles {
        hostsfile: hostsfile_text(&lines),
        addnhosts: addnhosts_text(&def.dns.hosts),
    })
}

/// The DHCP lines of one `<ip>` (ranges or the static-only range, and for
/// IPv4 the override/authoritative/boot lines); adds its range sizes to
/// `leases`.
fn dhcp_block(
    c: &mut String,
    bridge: &str,
    ip_index: usize,
    ip: &IpDef,
    leases: &mut u64,
) -> Result<(), DnsmasqError> {
    let prefix = ip.prefix().ok_or_else(|| DnsmasqError::InvalidPrefix {
        bridge: bridge.to_string(),
        ip_index,
    })?;
    if ip.is_ipv4() && prefix > 32 {
        return Err(DnsmasqError::PrefixToNetmask {
            bridge: bridge.to_string(),
            prefix,
            ip_index,
        });
    }
    for (r, range) in ip.ranges.iter().enumerate() {
        let mut l = format!(
            "dhcp-range={},{},",
            addr_text(&range.start),
            addr_text(&range.end)
        );
        if ip.is_ipv6() {
            l.push_str(&prefix.to_string());
        } else {
            let mask: u32 = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            l.push_str(&std::net::Ipv4Addr::from(mask).to_string());
        }
        if let Some(lease) = &range.lease {
            l.push(',');
            l.push_str(&lease_text(lease));
        }
        c.push_str(&l);
        c.push('\n');
        *leases += range_size(ip, prefix, range).map_err(|problem| DnsmasqError::BadRange {
            start: range.start,
            end: range.end,
            problem,
            ip_index,
            range_index: r,
        })?;
    }
    if ip.ranges.is_empty() && !ip.hosts.is_empty() {
        c.push_str(&format!("dhcp-range={},static", addr_text(&ip.address)));
        if ip.is_ipv6() {
            c.push_str(&format!(",{prefix}"));
        }
        c.push('\n');
    }
    if ip.is_ipv4() {
        c.push_str("dhcp-no-override\ndhcp-authoritative\n");
        if let Some(b) = &ip.bootp {
            match &b.server {
                Some(s) => c.push_str(&format!("dhcp-boot={},,{}\n", b.file, addr_text(s))),
                None => c.push_str(&format!("dhcp-boot={}\n", b.file)),
            }
        }
    }
    Ok(())
}

/// Number of addresses of a range, with libvirt's checks against the
/// `<ip>` (its address, not the network address, is the reference).
fn range_size(ip: &IpDef, prefix: u32, r: &DhcpRange) -> Result<u64, RangeProblem> {
    let (start, end) = (r.start, r.end);
    if Family::of(&start) != Family::of(&end) {
        return Err(RangeProblem::FamilyMismatch);
    }
    let network = ip.address;
    if Family::of(&start) != ip.family() {
        return Err(RangeProblem::NetworkFamilyMismatch { network });
    }
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(RangeProblem::BadPrefix { network });
    }
    if !ip.contains(&start) || !ip.contains(&end) {
        return Err(RangeProblem::OutsideNetwork { network, prefix });
    }
    match (start, end, network) {
        (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(a)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            let (s, e, a) = (u32::from(s), u32::from(e), u32::from(a));
            if s == a & mask {
                return Err(RangeProblem::StartIsNetworkAddress { network, prefix });
            }
            if e == a | !mask {
                return Err(RangeProblem::EndIsBroadcast { network, prefix });
            }
            if e < s {
                return Err(RangeProblem::Reversed);
            }
            if e - s > 65535 {
                return Err(RangeProblem::TooLarge);
            }
            Ok(u64::from(e - s) + 1)
        }
        (IpAddr::V6(s), IpAddr::V6(e), _) => {
            let (s, e) = (s.segments(), e.segments());
            if s[..7] != e[..7] {
                return Err(RangeProblem::TooLarge);
            }
            if e[7] < s[7] {
                return Err(RangeProblem::StartAfterEnd);
            }
            Ok(u64::from(e[7] - s[7]) + 1)
        }
        _ => Err(RangeProblem::FamilyMismatch),
    }
}

/// Reverse-DNS zone of an `<ip>`'s network: IPv4 prefixes 8/16/24, IPv6
/// prefixes that are a multiple of 4 between 4 and 124.
pub fn ptr_domain(ip: &IpDef) -> Option<String> {
    let prefix = ip.prefix()?;
    match ip.address {
        IpAddr::V4(a) => {
            if prefix == 0 || prefix >= 32 || prefix % 8 != 0 {
                return None;
            }
            let o = a.octets();
            let mut s = String::new();
            for i in (0..(prefix / 8) as usize).rev() {
                s.push_str(&format!("{}.", o[i]));
            }
            s.push_str("in-addr.arpa");
            Some(s)
        }
        IpAddr::V6(a) => {
            if prefix == 0 || prefix >= 128 || prefix % 4 != 0 {
                return None;
            }
            let o = a.octets();
            let nibble = |i: usize| {
                if i.is_multiple_of(2) {
                    o[i / 2] >> 4
                } else {
                    o[i / 2] & 0xf
                }
            };
            let mut s = String::new();
            for i in (0..(prefix / 4) as usize).rev() {
                s.push_str(&format!("{:x}.", nibble(i)));
            }
            s.push_str("ip6.arpa");
            Some(s)
        }
    }
}

fn no_line_break(network: &str, what: &str, value: &str) -> Result<(), DnsmasqError> {
    if value.contains(['\n', '\r']) {
        return Err(DnsmasqError::LineBreak {
            network: network.to_string(),
            what: what.to_string(),
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Every text that is written into a line of the configuration or of the
/// hosts files must be free of line breaks.
fn check_line_breaks(def: &NetworkDef, paths: Option<&DnsmasqPaths>) -> Result<(), DnsmasqError> {
    let n = def.name.as_str();
    no_line_break(n, "the network name", n)?;
    if let Some(paths) = paths {
        no_line_break(n, "the dnsmasq hosts file path", &paths.hostsfile)?;
        no_line_break(n, "the dnsmasq addnhosts file path", &paths.addnhosts)?;
        if let Some(p) = &paths.pid_file {
            no_line_break(n, "the pid file path", p)?;
        }
    }
    if let Some(b) = def.bridge_name() {
        no_line_break(n, "<bridge name>", b)?;
    }
    if let Some(d) = &def.domain.name {
        no_line_break(n, "<domain name>", d)?;
    }
    for f in &def.dns.forwarders {
        if let Some(d) = &f.domain {
            no_line_break(n, "<dns><forwarder domain>", d)?;
        }
    }
    for t in &def.dns.txts {
        no_line_break(n, "<dns><txt name>", &t.name)?;
        no_line_break(n, "<dns><txt value>", &t.value)?;
    }
    for s in &def.dns.srvs {
        no_line_break(n, "<dns><srv service>", &s.service)?;
        no_line_break(n, "<dns><srv protocol>", &s.protocol)?;
        for (what, v) in [("domain", &s.domain), ("target", &s.target)] {
            if let Some(v) = v {
                no_line_break(n, &format!("<dns><srv {what}>"), v)?;
            }
        }
    }
    for h in &def.dns.hosts {
        for name in &h.hostnames {
            no_line_break(n, "<dns><hostname>", name)?;
        }
    }
    for ip in &def.ips {
        if let Some(t) = &ip.tftp_root {
            no_line_break(n, "<tftp root>", t)?;
        }
        if let Some(b) = &ip.bootp {
            no_line_break(n, "<bootp file>", &b.file)?;
        }
        for h in &ip.hosts {
            for (what, v) in [("mac", &h.mac), ("id", &h.id), ("name", &h.name)] {
                if let Some(v) = v {
                    no_line_break(n, &format!("<dhcp><host {what}>"), v)?;
                }
            }
        }
    }
    for o in &def.dnsmasq_options {
        no_line_break(n, "<dnsmasq:option value>", o)?;
    }
    Ok(())
}
