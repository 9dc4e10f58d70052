//! Why a dnsmasq configuration could not be made.

use std::net::IpAddr;

use crate::netxml::Family;

/// What is wrong with a DHCP `<range>` (libvirt's range checks, done again
/// when the lease count is computed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeProblem {
    /// Start and end are of different families.
    FamilyMismatch,
    /// The range is of another family than its `<ip>`.
    NetworkFamilyMismatch { network: IpAddr },
    /// The `<ip>` has no usable prefix.
    BadPrefix { network: IpAddr },
    /// Start or end lies outside `network/prefix`.
    OutsideNetwork { network: IpAddr, prefix: u32 },
    /// IPv4: the start is the network address.
    StartIsNetworkAddress { network: IpAddr, prefix: u32 },
    /// IPv4: the end is the broadcast address.
    EndIsBroadcast { network: IpAddr, prefix: u32 },
    /// IPv4: end before start.
    Reversed,
    /// More than 65536 addresses (IPv6: differs outside the last 16 bits).
    TooLarge,
    /// IPv6: end before start.
    StartAfterEnd,
}

/// A network definition libvirt cannot make a dnsmasq configuration for,
/// or a dnsmasq binary it refuses to use. Messages are libvirt's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsmasqError {
    /// `<ip localPtr='yes'>` whose prefix does not fall on an octet (IPv4)
    /// or nibble (IPv6) boundary, or is 0 or the full length.
    /// (libvirt: VIR_ERR_CONFIG_UNSUPPORTED)
    #[error("PTR domain for {} network with prefix {} cannot be automatically created", family_name(*.family), prefix_text(*.prefix))]
    PtrDomain {
        /// Index of the `<ip>` in `NetworkDef::ips`.
        ip_index: usize,
        family: Family,
        /// Effective prefix; `None` where libvirt has none (printed as
        /// libvirt prints -1 as unsigned: 4294967295).
        prefix: Option<u32>,
    },

    /// Two `<ip>` of one family both have DHCP ranges or hosts.
    /// (libvirt: VIR_ERR_CONFIG_UNSUPPORTED)
    #[error("For {}, multiple DHCP definitions cannot be specified.", family_name(*.family))]
    MultipleDhcp {
        family: Family,
        /// Index of the second such `<ip>` in `NetworkDef::ips`.
        ip_index: usize,
    },

    /// The `<ip>` that serves DHCP has no valid prefix.
    #[error("bridge '{bridge}' has an invalid prefix")]
    InvalidPrefix { bridge: String, ip_index: usize },

    /// An IPv4 DHCP `<ip>` whose prefix is longer than 32 bits.
    #[error("Failed to translate bridge '{bridge}' prefix {prefix} to netmask")]
    PrefixToNetmask {
        bridge: String,
        prefix: u32,
        ip_index: usize,
    },

    /// A custom configuration header with a line that is not a `#` comment
    /// or does not end with a newline.
    #[error("the dnsmasq configuration header must consist of '#' comment lines, each ending with a newline")]
    BadHeader,

    /// A DHCP range fails libvirt's range checks.
    #[error("{}", range_message(.start, .end, .problem))]
    BadRange {
        start: IpAddr,
        end: IpAddr,
        problem: RangeProblem,
        ip_index: usize,
        range_index: usize,
    },

    /// `<dhcp><host>` with none of the identifying fields dnsmasq needs
    /// (IPv4: `mac` or `name`; IPv6: `id` or `name`).
    #[error("DHCP host {ip} of network '{network}' has neither {} nor name", if .ip.is_ipv6() { "id" } else { "mac" })]
    IncompleteHost {
        network: String,
        ip: IpAddr,
        ip_index: usize,
        host_index: usize,
    },

    /// The network has no bridge name (libvirt would write `interface=(null)`).
    #[error("network '{network}' has no bridge name, dnsmasq cannot be configured for it")]
    NoBridge { network: String },

    /// A value that goes into the configuration contains a line break, which
    /// would inject further dnsmasq options (virtnet addition; libvirt writes
    /// such values as they are).
    #[error("{what} of network '{network}' contains a line break, which cannot be written to a dnsmasq configuration: {value:?}")]
    LineBreak {
        network: String,
        what: String,
        value: String,
    },

    /// `dnsmasq --version` reports a version older than libvirt supports.
    /// (libvirt reports this and then the "cannot parse" error below.)
    #[error("dnsmasq version >= {}.{} required but {major}.{minor} found", super::caps::MIN_VERSION.0, super::caps::MIN_VERSION.1)]
    VersionTooOld { major: u64, minor: u64 },

    /// `dnsmasq --version` output is not `Dnsmasq version X.Y[.Z]...`.
    #[error("cannot parse {binary} version number in '{first_line}'")]
    VersionUnparsable { binary: String, first_line: String },

    /// No `dnsmasq` executable on `$PATH`.
    #[error("Unable to find 'dnsmasq' binary in $PATH")]
    BinaryNotFound,

    /// Running `dnsmasq --version` failed.
    #[error("cannot run '{binary} --version': {reason}")]
    VersionCommand { binary: String, reason: String },
}

impl DnsmasqError {
    /// Element path (netxml style, e.g. `/network/ip[2]/dhcp/range[1]`) of
    /// the element the error is about, when there is one. Lets a caller turn
    /// it into a line:column with [`crate::netxml::locate`].
    pub fn element_path(&self) -> Option<String> {
        let ip = |i: usize| format!("/network/ip[{}]", i + 1);
        match self {
            DnsmasqError::PtrDomain { ip_index, .. }
            | DnsmasqError::MultipleDhcp { ip_index, .. }
            | DnsmasqError::InvalidPrefix { ip_index, .. }
            | DnsmasqError::PrefixToNetmask { ip_index, .. } => Some(ip(*ip_index)),
            DnsmasqError::BadRange {
                ip_index,
                range_index,
                ..
            } => Some(format!(
                "{}/dhcp[1]/range[{}]",
                ip(*ip_index),
                range_index + 1
            )),
            DnsmasqError::IncompleteHost {
                ip_index,
                host_index,
                ..
            } => Some(format!(
                "{}/dhcp[1]/host[{}]",
                ip(*ip_index),
                host_index + 1
            )),
            DnsmasqError::NoBridge { .. } => Some("/network".to_string()),
            _ => None,
        }
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

fn prefix_text(p: Option<u32>) -> String {
    // libvirt prints its int prefix with %u; "no prefix" is -1.
    p.unwrap_or(u32::MAX).to_string()
}

fn range_message(start: &IpAddr, end: &IpAddr, p: &RangeProblem) -> String {
    match p {
        RangeProblem::FamilyMismatch => {
            format!("mismatch of address family in range {start} - {end}")
        }
        RangeProblem::NetworkFamilyMismatch { network } => {
            format!("mismatch of address family in range {start} - {end} for network {network}")
        }
        RangeProblem::BadPrefix { network } => {
            format!("bad prefix -1 for network {network} when checking range {start} - {end}")
        }
        RangeProblem::OutsideNetwork { network, prefix } => {
            format!("range {start} - {end} is not entirely within network {network}/{prefix}")
        }
        RangeProblem::StartIsNetworkAddress { network, prefix } => format!(
            "start of range {start} - {end} in network {network}/{prefix} is the network address"
        ),
        RangeProblem::EndIsBroadcast { network, prefix } => format!(
            "end of range {start} - {end} in network {network}/{prefix} is the broadcast address"
        ),
        RangeProblem::Reversed => format!("range {start} - {end} is reversed "),
        RangeProblem::TooLarge => format!("range {start} - {end} is too large (> 65535)"),
        RangeProblem::StartAfterEnd => format!("range {start} - {end} start larger than end"),
    }
}
