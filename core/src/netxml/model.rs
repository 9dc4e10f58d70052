//! Typed model of a libvirt 11.3.0 network definition (`<network>` XML).
//!
//! The model keeps everything libvirt keeps, as typed data (addresses are
//! `IpAddr`, numbers are integers, enumerations are enums, yes/no attributes
//! are `Option<bool>` where `None` is libvirt's "absent"), plus the few raw
//! strings libvirt re-emits verbatim (the `family` attributes, DHCP host MAC
//! strings, metadata), so that [`super::format()`] can reproduce libvirt's
//! output byte for byte.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// URI of the dnsmasq passthrough namespace (`xmlns:dnsmasq`).
pub const DNSMASQ_NAMESPACE_URI: &str = "http://libvirt.org/schemas/network/dnsmasq/1.0";

/// A whole `<network>` definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    /// `<name>`; never empty, never contains `/`.
    pub name: String,
    /// `<uuid>` (16 bytes). Randomly generated (v4) when absent.
    pub uuid: Uuid,
    /// True when `<uuid>` was given in the document.
    pub uuid_specified: bool,
    /// `<title>` (no newlines).
    pub title: Option<String>,
    /// `<description>`.
    pub description: Option<String>,
    /// `<metadata>`, only kept when it has at least one element child.
    pub metadata: Option<Metadata>,
    /// Output-only count of connected guest interfaces (root `connections`
    /// attribute, written in the live form when > 0). Never parsed.
    pub connections: u32,
    /// Root `ipv6='yes'` (guest-to-guest IPv6 without an IPv6 gateway address).
    pub ipv6: bool,
    /// Root `trustGuestRxFilters`.
    pub trust_guest_rx_filters: Option<bool>,
    /// `<forward>`; `None` means an isolated network (no `<forward>` or
    /// `<forward mode='none'>`).
    pub forward: Option<ForwardDef>,
    /// `<bridge>` settings.
    pub bridge: BridgeDef,
    /// `<mtu size>`; 0 means unset.
    pub mtu: u32,
    /// `<mac address>` of the bridge device.
    pub mac: Option<MacAddr>,
    /// `<domain>`.
    pub domain: DomainDef,
    /// `<dns>`.
    pub dns: DnsDef,
    /// Every `<ip>`, in document order.
    pub ips: Vec<IpDef>,
    /// Every `<route>`, in document order.
    pub routes: Vec<RouteDef>,
    /// Network-wide `<bandwidth>` (dropped when it has neither inbound nor outbound).
    pub bandwidth: Option<Bandwidth>,
    /// Network-wide `<vlan>`.
    pub vlan: Option<Vlan>,
    /// `<port isolated>`.
    pub isolated_port: Option<bool>,
    /// Network-wide `<virtualport>` (a type is required here).
    pub virtualport: Option<VirtualPort>,
    /// Every `<portgroup>`, in document order.
    pub portgroups: Vec<PortGroup>,
    /// `<dnsmasq:options>` values, in document order (empty: none).
    pub dnsmasq_options: Vec<String>,
}

/// 16-byte UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// libvirt's `virUUIDParse`: 32 hex digits, `-` or space allowed
    /// between pairs, surrounding whitespace ignored. `None` when invalid.
    pub fn parse(s: &str) -> Option<Uuid> {
        super::lex::parse_uuid(s)
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// 6-byte MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Multicast bit (low bit of the first octet) set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// `<metadata>`, as libvirt keeps it: a copy of the element where children
/// without a namespace (and later children repeating a namespace) are
/// dropped, and namespaces declared outside it are declared on it. It is
/// re-serialized with libxml2's rules by [`super::format()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The `<metadata>` element itself.
    pub element: XmlElement,
}

/// A generic XML element (used for `<metadata>` content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlElement {
    /// Qualified name as written (`prefix:local` or `local`).
    pub name: String,
    /// Namespace declarations on this element: (prefix, URI); prefix `None`
    /// is the default namespace.
    pub namespaces: Vec<(Option<String>, String)>,
    /// Attributes (qualified name, unescaped value) in document order.
    pub attributes: Vec<(String, String)>,
    pub children: Vec<XmlNode>,
}

/// A node inside an [`XmlElement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlNode {
    Element(XmlElement),
    Text(String),
    CData(String),
    Comment(String),
    ProcessingInstruction(String),
}

/// Forward modes (`<forward mode>`). Isolated is `NetworkDef::forward == None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardMode {
    Nat,
    Route,
    Open,
    Bridge,
    Private,
    Vepa,
    Passthrough,
    Hostdev,
}

impl ForwardMode {
    /// All modes, in libvirt's enumeration order.
    pub const ALL: [ForwardMode; 8] = [
        ForwardMode::Nat,
        ForwardMode::Route,
        ForwardMode::Open,
        ForwardMode::Bridge,
        ForwardMode::Private,
        ForwardMode::Vepa,
        ForwardMode::Passthrough,
        ForwardMode::Hostdev,
    ];

    /// The XML spelling (`nat`, `route`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardMode::Nat => "nat",
            ForwardMode::Route => "route",
            ForwardMode::Open => "open",
            ForwardMode::Bridge => "bridge",
            ForwardMode::Private => "private",
            ForwardMode::Vepa => "vepa",
            ForwardMode::Passthrough => "passthrough",
            ForwardMode::Hostdev => "hostdev",
        }
    }

    /// Parse the XML spelling (case-sensitive, like libvirt).
    pub fn from_xml(s: &str) -> Option<ForwardMode> {
        ForwardMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Modes where libvirt creates and manages its own bridge device
    /// (nat, route, open; isolated is the fourth such kind).
    pub fn is_virtual(self) -> bool {
        matches!(
            self,
            ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open
        )
    }
}

impl fmt::Display for ForwardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `<forward>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardDef {
    pub mode: ForwardMode,
    /// `managed='yes'` (case-insensitive); only formatted for hostdev.
    pub managed: bool,
    /// `<driver name model>` (hostdev PCI driver info).
    pub driver: HostdevDriver,
    /// `<pf dev>` (libvirt allows at most one).
    pub pfs: Vec<ForwardPf>,
    /// The device pool: the `dev` attribute plus `<interface dev>` entries, or
    /// the `<address type='pci'>` entries. For `<pf>` networks it is filled at
    /// runtime from the PF's virtual functions.
    pub ifs: Vec<ForwardIf>,
    /// `<nat>` settings (only meaningful in nat mode).
    pub nat: NatDef,
}

/// `<forward><driver>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostdevDriver {
    pub name: Option<PciDriverName>,
    pub model: Option<String>,
}

/// `<driver name>` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PciDriverName {
    Kvm,
    Vfio,
    Xen,
}

impl PciDriverName {
    pub fn as_str(self) -> &'static str {
        match self {
            PciDriverName::Kvm => "kvm",
            PciDriverName::Vfio => "vfio",
            PciDriverName::Xen => "xen",
        }
    }
}

/// `<forward><pf>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardPf {
    pub dev: String,
    /// Output-only connection count.
    pub connections: u32,
}

/// One entry of the forward device pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardIf {
    pub device: ForwardDevice,
    /// Output-only connection count (written in the live form when > 0).
    pub connections: u32,
}

/// A forward pool device: a network device name or a PCI address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardDevice {
    Netdev(String),
    Pci(PciAddress),
}

/// PCI address `domain:bus:slot.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u32,
    pub slot: u32,
    pub function: u32,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// `<forward><nat>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatDef {
    /// `<address start end>` (IPv4 SNAT range, start <= end).
    pub address: Option<NatAddressRange>,
    /// `<port start end>`; libvirt treats 0/0 as unset. The firewall code
    /// fills 1024-65535 into the live definition when it first needs it.
    pub port_start: u16,
    pub port_end: u16,
    /// `<nat ipv6>`.
    pub ipv6: Option<bool>,
}

impl NatDef {
    /// Port range libvirt fills in when none is configured.
    pub const DEFAULT_PORT_RANGE: (u16, u16) = (1024, 65535);

    /// libvirt's firewall code, when it builds the first protocol-specific
    /// masquerade rule and no port range is configured (both 0), stores
    /// 1024-65535 in the live definition (so it shows in the live XML and
    /// the status file). Returns true if it changed anything.
    pub fn fill_default_port_range(&mut self) -> bool {
        if self.port_start == 0 && self.port_end == 0 {
            (self.port_start, self.port_end) = Self::DEFAULT_PORT_RANGE;
            true
        } else {
            false
        }
    }

    /// True if nothing is set (no `<nat>` is formatted).
    pub fn is_empty(&self) -> bool {
        self.address.is_none() && self.port_start == 0 && self.port_end == 0 && self.ipv6.is_none()
    }
}

/// SNAT address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatAddressRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

/// `<bridge>` attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeDef {
    /// `name`: may be a template containing `%d` before allocation.
    pub name: Option<String>,
    /// `zone`: firewalld zone.
    pub zone: Option<String>,
    /// STP enabled (`stp` != `off`; default on).
    pub stp: bool,
    /// True when the `stp` attribute was present (matters for mode checks).
    pub stp_specified: bool,
    /// Forward delay in seconds.
    pub delay: u64,
    /// `macTableManager`.
    pub mac_table_manager: Option<MacTableManager>,
}

impl Default for BridgeDef {
    fn default() -> Self {
        BridgeDef {
            name: None,
            zone: None,
            stp: true,
            stp_specified: false,
            delay: 0,
            mac_table_manager: None,
        }
    }
}

/// `<bridge macTableManager>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacTableManager {
    Kernel,
    Libvirt,
}

impl MacTableManager {
    pub fn as_str(self) -> &'static str {
        match self {
            MacTableManager::Kernel => "kernel",
            MacTableManager::Libvirt => "libvirt",
        }
    }
}

/// `<domain>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainDef {
    /// `name`; when absent nothing is formatted.
    pub name: Option<String>,
    /// `localOnly`.
    pub local_only: Option<bool>,
    /// `register` (requires `localOnly='yes'`).
    pub register: Option<bool>,
}

/// `<dns>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsDef {
    pub enable: Option<bool>,
    pub forward_plain_names: Option<bool>,
    pub forwarders: Vec<DnsForwarder>,
    pub txts: Vec<DnsTxt>,
    pub srvs: Vec<DnsSrv>,
    pub hosts: Vec<DnsHost>,
}

impl DnsDef {
    /// Whether any `<dns>` element would be formatted.
    pub fn is_empty(&self) -> bool {
        self.enable.is_none()
            && self.forward_plain_names.is_none()
            && self.forwarders.is_empty()
            && self.txts.is_empty()
            && self.srvs.is_empty()
            && self.hosts.is_empty()
    }
}

/// `<dns><forwarder addr domain>` (at least one of the two is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsForwarder {
    pub addr: Option<IpAddr>,
    pub domain: Option<String>,
}

/// `<dns><txt name value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTxt {
    pub name: String,
    pub value: String,
}

/// `<dns><srv>`. `port`, `priority`, `weight` are 0 when unset (as in
/// libvirt; they are formatted only when nonzero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSrv {
    pub service: String,
    pub protocol: String,
    pub domain: Option<String>,
    pub target: Option<String>,
    pub port: u32,
    pub priority: u32,
    pub weight: u32,
}

/// `<dns><host ip><hostname>..</hostname></host>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHost {
    pub ip: IpAddr,
    pub hostnames: Vec<String>,
}

/// `<ip>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpDef {
    /// Raw `family` attribute as given (`ipv4`/`ipv6`), re-emitted only if given.
    pub family: Option<String>,
    pub address: IpAddr,
    /// IPv4 `netmask` (may be non-contiguous; then [`IpDef::prefix`] is `None`).
    pub netmask: Option<Ipv4Addr>,
    /// The `prefix` attribute; 0 is indistinguishable from absent. Use
    /// [`IpDef::prefix`] for the effective prefix.
    pub explicit_prefix: u32,
    pub local_ptr: Option<bool>,
    /// `<tftp root>` (IPv4 only).
    pub tftp_root: Option<String>,
    /// `<dhcp><range>` entries.
    pub ranges: Vec<DhcpRange>,
    /// `<dhcp><host>` entries.
    pub hosts: Vec<DhcpHost>,
    /// `<dhcp><bootp>` (IPv4 only).
    pub bootp: Option<Bootp>,
}

/// `<dhcp><range start end>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    pub start: IpAddr,
    pub end: IpAddr,
    pub lease: Option<Lease>,
}

/// `<dhcp><host mac id name ip>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    /// MAC exactly as written (case preserved; libvirt re-emits it raw).
    pub mac: Option<String>,
    /// DHCP client id / DUID (hex digits and colons).
    pub id: Option<String>,
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
    pub lease: Option<Lease>,
}

/// `<lease expiry unit>`; `expiry == 0` means infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub expiry: u64,
    pub unit: LeaseUnit,
}

impl Lease {
    /// Lease time in seconds (`None` = infinite).
    pub fn seconds(&self) -> Option<u64> {
        if self.expiry == 0 {
            return None;
        }
        let mult = match self.unit {
            LeaseUnit::Seconds => 1,
            LeaseUnit::Minutes => 60,
            LeaseUnit::Hours => 3600,
        };
        Some(self.expiry.saturating_mul(mult))
    }
}

/// `<lease unit>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseUnit {
    Seconds,
    Minutes,
    Hours,
}

impl LeaseUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseUnit::Seconds => "seconds",
            LeaseUnit::Minutes => "minutes",
            LeaseUnit::Hours => "hours",
        }
    }
}

/// `<dhcp><bootp file server>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootp {
    pub file: String,
    pub server: Option<IpAddr>,
}

/// `<route>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDef {
    /// Raw `family` as given.
    pub family: Option<String>,
    pub address: IpAddr,
    pub netmask: Option<Ipv4Addr>,
    /// `prefix` attribute if given (even 0).
    pub prefix: Option<u32>,
    pub gateway: IpAddr,
    /// `metric` if given (always nonzero).
    pub metric: Option<u32>,
}

impl RouteDef {
    /// Effective prefix: explicit prefix, else netmask bits, else 0.
    /// `None` for a non-contiguous netmask.
    pub fn effective_prefix(&self) -> Option<u32> {
        if let Some(p) = self.prefix {
            return Some(p);
        }
        match self.netmask {
            Some(m) => netmask_to_prefix(m),
            None => Some(0),
        }
    }
}

/// `<bandwidth>` (network or portgroup level).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bandwidth {
    pub inbound: Option<BandwidthRate>,
    pub outbound: Option<BandwidthRate>,
}

/// `<inbound>`/`<outbound>`; 0 means unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BandwidthRate {
    pub average: u64,
    pub peak: u64,
    pub floor: u64,
    pub burst: u64,
}

/// `<vlan>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub trunk: bool,
    pub tags: Vec<u32>,
    /// The tag carrying `nativeMode` and its mode.
    pub native: Option<(NativeVlanMode, u32)>,
}

/// `<tag nativeMode>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NativeVlanMode {
    Tagged,
    Untagged,
}

impl NativeVlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NativeVlanMode::Tagged => "tagged",
            NativeVlanMode::Untagged => "untagged",
        }
    }
}

/// `<virtualport>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualPort {
    pub kind: Option<VirtualPortType>,
    pub manager_id: Option<u8>,
    pub type_id: Option<u32>,
    pub type_id_version: Option<u8>,
    pub instance_id: Option<Uuid>,
    /// `profileid` (at most 39 bytes; empty = unset).
    pub profile_id: Option<String>,
    pub interface_id: Option<Uuid>,
}

/// `<virtualport type>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VirtualPortType {
    Ieee8021Qbg,
    Ieee8021Qbh,
    Openvswitch,
    Midonet,
}

impl VirtualPortType {
    pub fn as_str(self) -> &'static str {
        match self {
            VirtualPortType::Ieee8021Qbg => "802.1Qbg",
            VirtualPortType::Ieee8021Qbh => "802.1Qbh",
            VirtualPortType::Openvswitch => "openvswitch",
            VirtualPortType::Midonet => "midonet",
        }
    }

    pub fn from_xml(s: &str) -> Option<VirtualPortType> {
        [
            VirtualPortType::Ieee8021Qbg,
            VirtualPortType::Ieee8021Qbh,
            VirtualPortType::Openvswitch,
            VirtualPortType::Midonet,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// `<portgroup>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGroup {
    pub name: String,
    pub is_default: bool,
    pub trust_guest_rx_filters: Option<bool>,
    pub virtualport: Option<VirtualPort>,
    pub bandwidth: Option<Bandwidth>,
    pub vlan: Option<Vlan>,
}

/// Family of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// Text form of an address exactly as libvirt prints it (glibc
/// `inet_ntop`): like `IpAddr`'s `Display`, except that IPv4-compatible IPv6
/// addresses (first 96 bits zero, seventh group nonzero) print as
/// `::a.b.c.d`.
pub fn ip_to_string(addr: &IpAddr) -> String {
    let mut s = String::with_capacity(40);
    push_ip(&mut s, addr);
    s
}

/// Appends [`ip_to_string`]`(addr)` to `out`.
pub fn push_ip(out: &mut String, addr: &IpAddr) {
    match addr {
        IpAddr::V4(a) => push_ipv4(out, a),
        IpAddr::V6(a) => {
            let s = a.segments();
            if s[..6].iter().all(|w| *w == 0) && s[6] != 0 {
                out.push_str("::");
                let [_, _, _, _, _, _, _, _, _, _, _, _, o @ ..] = a.octets();
                push_ipv4(out, &Ipv4Addr::from(o));
            } else {
                use std::fmt::Write;
                // Writing to a String cannot fail.
                let _ = write!(out, "{a}");
            }
        }
    }
}

/// Appends an IPv4 address in dotted decimal, exactly as its `Display`
/// writes it without width or precision, but without going through the
/// formatting machinery (a network start writes several).
pub fn push_ipv4(out: &mut String, a: &Ipv4Addr) {
    let mut buf = itoa::Buffer::new();
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(buf.format(o));
    }
}

/// Number of leading one bits of a contiguous IPv4 netmask; `None` if the
/// mask is not contiguous.
pub fn netmask_to_prefix(mask: Ipv4Addr) -> Option<u32> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    if ones == 32 || m << ones == 0 {
        Some(ones)
    } else {
        None
    }
}

/// `addr` with all bits after `prefix` cleared. `None` if `prefix` is too
/// large for the family.
pub fn mask_by_prefix(addr: IpAddr, prefix: u32) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(a) => {
            if prefix > 32 {
                return None;
            }
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)))
        }
        IpAddr::V6(a) => {
            if prefix > 128 {
                return None;
            }
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            Some(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & mask)))
        }
    }
}

impl IpDef {
    /// Address family of `address`.
    pub fn family(&self) -> Family {
        Family::of(&self.address)
    }

    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }

    pub fn is_ipv6(&self) -> bool {
        self.address.is_ipv6()
    }

    /// Effective prefix, as libvirt computes it: the explicit prefix if > 0;
    /// else the netmask's bit count; else for IPv4 the classful default
    /// (0.0.0.0 → 0, first octet < 128 → 8, < 192 → 16, < 224 → 24) and for
    /// IPv6 64 (0 for `::`). `None` where libvirt gets -1 (non-contiguous
    /// netmask, class D/E address without prefix).
    pub fn prefix(&self) -> Option<u32> {
        if self.explicit_prefix > 0 {
            return Some(self.explicit_prefix);
        }
        if let Some(m) = self.netmask {
            return netmask_to_prefix(m);
        }
        match self.address {
            IpAddr::V4(a) => {
                let o = a.octets();
                if u32::from(a) == 0 {
                    Some(0)
                } else if o[0] < 128 {
                    Some(8)
                } else if o[0] < 192 {
                    Some(16)
                } else if o[0] < 224 {
                    Some(24)
                } else {
                    None
                }
            }
            IpAddr::V6(a) => {
                if a.is_unspecified() {
                    Some(0)
                } else {
                    Some(64)
                }
            }
        }
    }

    /// The IPv4 netmask in effect (explicit netmask, else from the prefix).
    pub fn netmask_v4(&self) -> Option<Ipv4Addr> {
        if let Some(m) = self.netmask {
            return Some(m);
        }
        if !self.is_ipv4() {
            return None;
        }
        let p = self.prefix().filter(|p| *p <= 32)?;
        let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
        Some(Ipv4Addr::from(mask))
    }

    /// Network address: `address` masked to [`IpDef::prefix`].
    pub fn network(&self) -> Option<IpAddr> {
        mask_by_prefix(self.address, self.prefix()?)
    }

    /// `NET/PREFIX` as used in firewall rules (canonical address form).
    pub fn network_cidr(&self) -> Option<String> {
        let p = self.prefix()?;
        Some(format!("{}/{}", ip_to_string(&self.network()?), p))
    }

    /// True if `addr` is of the same family and inside this subnet.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        let Some(p) = self.prefix() else { return false };
        if Family::of(addr) != self.family() {
            return false;
        }
        mask_by_prefix(*addr, p) == mask_by_prefix(self.address, p)
    }

    /// Has a `<tftp root>`.
    pub fn has_tftp(&self) -> bool {
        self.tftp_root.is_some()
    }

    /// Has DHCP ranges or hosts.
    pub fn has_dhcp(&self) -> bool {
        !self.ranges.is_empty() || !self.hosts.is_empty()
    }
}

impl ForwardDef {
    /// Name of pool entry `n` if it is a network device.
    pub fn netdev(&self, n: usize) -> Option<&str> {
        match self.ifs.get(n).map(|i| &i.device) {
            Some(ForwardDevice::Netdev(d)) => Some(d.as_str()),
            _ => None,
        }
    }
}

impl NetworkDef {
    /// Forward mode; `None` = isolated.
    pub fn forward_mode(&self) -> Option<ForwardMode> {
        self.forward.as_ref().map(|f| f.mode)
    }

    /// DEV of the firewall reference (4.1): the first forward pool entry if
    /// it is a network device (`<forward dev>` or the first `<interface
    /// dev>`), only when non-empty.
    pub fn forward_dev(&self) -> Option<&str> {
        self.forward
            .as_ref()
            .and_then(|f| f.netdev(0))
            .filter(|d| !d.is_empty())
    }

    /// All IPv4 `<ip>` elements in document order.
    pub fn ipv4_ips(&self) -> impl Iterator<Item = &IpDef> {
        self.ips.iter().filter(|i| i.is_ipv4())
    }

    /// All IPv6 `<ip>` elements in document order.
    pub fn ipv6_ips(&self) -> impl Iterator<Item = &IpDef> {
        self.ips.iter().filter(|i| i.is_ipv6())
    }

    /// The `n`th `<ip>` of a family (libvirt's virNetworkDefGetIPByIndex).
    pub fn ip_by_index(&self, family: Family, n: usize) -> Option<&IpDef> {
        self.ips.iter().filter(|i| i.family() == family).nth(n)
    }

    /// The first IPv4 `<ip>` with DHCP ranges or hosts.
    pub fn dhcp_ipv4(&self) -> Option<&IpDef> {
        self.ipv4_ips().find(|i| i.has_dhcp())
    }

    /// The first IPv4 `<ip>` with DHCP ranges/hosts or a `<tftp root>`
    /// (the firewall's dhcpOrTftpIPv4).
    pub fn dhcp_or_tftp_ipv4(&self) -> Option<&IpDef> {
        self.ipv4_ips().find(|i| i.has_dhcp() || i.has_tftp())
    }

    /// The first IPv6 `<ip>` with DHCP ranges or hosts.
    pub fn dhcp_ipv6(&self) -> Option<&IpDef> {
        self.ipv6_ips().find(|i| i.has_dhcp())
    }

    /// IPv6 enabled: any IPv6 `<ip>` or root `ipv6='yes'`.
    pub fn ipv6_enabled(&self) -> bool {
        self.ipv6 || self.ipv6_ips().next().is_some()
    }

    /// `<nat>` settings when the mode is nat.
    pub fn nat(&self) -> Option<&NatDef> {
        match &self.forward {
            Some(f) if f.mode == ForwardMode::Nat => Some(&f.nat),
            _ => None,
        }
    }

    /// Mutable `<nat>` settings when the mode is nat.
    pub fn nat_mut(&mut self) -> Option<&mut NatDef> {
        match &mut self.forward {
            Some(f) if f.mode == ForwardMode::Nat => Some(&mut f.nat),
            _ => None,
        }
    }

    /// Portgroup by name.
    pub fn portgroup(&self, name: &str) -> Option<&PortGroup> {
        self.portgroups.iter().find(|p| p.name == name)
    }

    /// The default portgroup.
    pub fn default_portgroup(&self) -> Option<&PortGroup> {
        self.portgroups.iter().find(|p| p.is_default)
    }

    /// Bridge name (may still be a `%d` template before allocation).
    pub fn bridge_name(&self) -> Option<&str> {
        self.bridge.name.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(addr: &str, netmask: Option<&str>, prefix: u32) -> IpDef {
        IpDef {
            family: None,
            address: addr.parse().expect("addr"),
            netmask: netmask.map(|m| m.parse().expect("mask")),
            explicit_prefix: prefix,
            local_ptr: None,
            tftp_root: None,
            ranges: Vec::new(),
            hosts: Vec::new(),
            bootp: None,
        }
    }

    #[test]
    fn effective_prefix_rules() {
        assert_eq!(
            ip("192.168.122.1", Some("255.255.255.0"), 0).prefix(),
            Some(24)
        );
        assert_eq!(ip("192.168.122.1", Some("255.0.255.0"), 0).prefix(), None);
        assert_eq!(ip("192.168.122.1", None, 0).prefix(), Some(24));
        assert_eq!(ip("172.16.0.1", None, 0).prefix(), Some(16));
        assert_eq!(ip("10.0.0.1", None, 0).prefix(), Some(8));
        assert_eq!(ip("0.0.0.0", None, 0).prefix(), Some(0));
        assert_eq!(ip("224.0.0.1", None, 0).prefix(), None);
        assert_eq!(ip("10.0.0.1", None, 20).prefix(), Some(20));
        assert_eq!(ip("2001:db8::1", None, 0).prefix(), Some(64));
        assert_eq!(ip("::", None, 0).prefix(), Some(0));
        assert_eq!(ip("2001:db8::1", None, 48).prefix(), Some(48));
    }

    #[test]
    fn network_and_contains() {
        let v4 = ip("192.168.122.77", None, 20);
        assert_eq!(v4.network_cidr().as_deref(), Some("192.168.112.0/20"));
        assert_eq!(v4.netmask_v4(), Some(Ipv4Addr::new(255, 255, 240, 0)));
        assert!(v4.contains(&"192.168.127.255".parse().expect("ip")));
        assert!(!v4.contains(&"192.168.128.1".parse().expect("ip")));
        assert!(!v4.contains(&"::1".parse().expect("ip")));
        let v6 = ip("2001:db8:ca2:2::1", None, 64);
        assert_eq!(v6.network_cidr().as_deref(), Some("2001:db8:ca2:2::/64"));
    }

    #[test]
    fn addresses_print_like_inet_ntop() {
        let p = |s: &str| ip_to_string(&s.parse().expect("ip"));
        assert_eq!(p("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
        assert_eq!(p("::1"), "::1");
        assert_eq!(p("::"), "::");
        assert_eq!(p("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(p("::102:304"), "::1.2.3.4");
        assert_eq!(p("1:0:0:1:0:0:0:1"), "1:0:0:1::1");
        assert_eq!(p("1:0:1:1:1:1:1:1"), "1:0:1:1:1:1:1:1");
    }

    #[test]
    fn nat_default_port_range() {
        let mut n = NatDef::default();
        assert!(n.fill_default_port_range());
        assert_eq!((n.port_start, n.port_end), (1024, 65535));
        let mut n = NatDef {
            port_start: 500,
            port_end: 1000,
            ..NatDef::default()
        };
        assert!(!n.fill_default_port_range());
        assert_eq!((n.port_start, n.port_end), (500, 1000));
    }

    #[test]
    fn netmask_prefix() {
        assert_eq!(
            netmask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)),
            Some(32)
        );
        assert_eq!(netmask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(netmask_to_prefix(Ipv4Addr::new(255, 255, 254, 0)), Some(23));
        assert_eq!(netmask_to_prefix(Ipv4Addr::new(255, 255, 0, 255)), None);
    }
}
