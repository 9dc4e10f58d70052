//! Random valid network definitions for property tests, as plain data so
//! that proptest can shrink them (the strategies live in the tests; this
//! crate does not depend on proptest). [`NetSpec::xml`] turns a spec into
//! the network XML of network number `index` of a test host: names,
//! bridges, subnets, UUIDs and MACs are derived from `index`, so several
//! networks of one host never collide.

use std::fmt::Write;

/// Forward mode of a generated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Isolated,
    Nat,
    Route,
    Open,
    /// `<forward mode='bridge'/>` on a host bridge `br{index}`.
    HostBridge,
    /// `private` / `vepa` / `passthrough` over `<interface dev='eth{index}'/>`.
    Macvtap(MacvtapKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvtapKind {
    Private,
    Vepa,
    Passthrough,
}

impl Mode {
    /// All modes, for strategies (`prop::sample::select(Mode::ALL)`).
    pub const ALL: [Mode; 8] = [
        Mode::Isolated,
        Mode::Nat,
        Mode::Route,
        Mode::Open,
        Mode::HostBridge,
        Mode::Macvtap(MacvtapKind::Private),
        Mode::Macvtap(MacvtapKind::Vepa),
        Mode::Macvtap(MacvtapKind::Passthrough),
    ];

    /// Modes where virtnet creates a bridge, firewalls it and runs dnsmasq.
    pub fn is_virtual(self) -> bool {
        matches!(self, Mode::Isolated | Mode::Nat | Mode::Route | Mode::Open)
    }
}

/// An IPv4 address block of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4 {
    /// 24, 25 or 16 (classful: given as a netmask).
    pub prefix: u8,
    /// 0: no DHCP, 1: a range, 2: static hosts only, 3: both.
    pub dhcp: u8,
    pub tftp: bool,
}

/// An IPv6 address block of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6 {
    /// 64 or 112.
    pub prefix: u8,
    pub dhcp: bool,
}

/// `<nat>` options (NAT mode only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Nat {
    /// `<port start end>`: (start, length).
    pub ports: Option<(u16, u16)>,
    /// `<address start end>`.
    pub address: bool,
    /// `<nat ipv6='yes'/>` (only with an IPv6 block).
    pub ipv6: bool,
}

/// One generated network definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    pub mode: Mode,
    pub v4: Option<V4>,
    /// A second IPv4 block (virtual modes with `v4`).
    pub v4_second: bool,
    pub v6: Option<V6>,
    pub nat: Nat,
    /// `<forward dev='eth0'/>` (nat and route).
    pub forward_dev: bool,
    /// A static route through the first IPv4 block.
    pub route: bool,
    /// `<mtu size>`.
    pub mtu: Option<u16>,
    pub stp: bool,
    pub delay: u8,
    /// `<dns enable='no'/>` (only without DHCP).
    pub dns_off: bool,
    /// `<domain name='netN.test'/>`.
    pub domain: bool,
}

impl NetSpec {
    /// The network's name for `index`.
    pub fn name(index: u8) -> String {
        format!("net{index}")
    }

    /// The bridge the network creates (virtual modes) for `index`.
    pub fn bridge(index: u8) -> String {
        format!("virbr{}", 100 + u32::from(index))
    }

    /// Whether starting this network creates a bridge of ours.
    pub fn creates_bridge(&self) -> bool {
        self.mode.is_virtual()
    }

    /// The XML of network number `index` (0..=200).
    pub fn xml(&self, index: u8) -> String {
        let mut x = String::new();
        let i = index;
        let _ = writeln!(x, "<network>");
        let _ = writeln!(x, "  <name>{}</name>", Self::name(i));
        let _ = writeln!(x, "  <uuid>00000000-0000-4000-8000-{:012x}</uuid>", i);
        match self.mode {
            Mode::HostBridge => {
                let _ = writeln!(x, "  <forward mode='bridge'/>");
                let _ = writeln!(x, "  <bridge name='br{i}'/>");
                let _ = writeln!(x, "</network>");
                return x;
            }
            Mode::Macvtap(k) => {
                let m = match k {
                    MacvtapKind::Private => "private",
                    MacvtapKind::Vepa => "vepa",
                    MacvtapKind::Passthrough => "passthrough",
                };
                let _ = writeln!(x, "  <forward mode='{m}'>");
                let _ = writeln!(x, "    <interface dev='eth{i}'/>");
                let _ = writeln!(x, "  </forward>");
                let _ = writeln!(x, "</network>");
                return x;
            }
            _ => {}
        }
        let stp = if self.stp { "on" } else { "off" };
        let _ = writeln!(
            x,
            "  <bridge name='{}' stp='{stp}' delay='{}'/>",
            Self::bridge(i),
            self.delay
        );
        let _ = writeln!(x, "  <mac address='52:54:00:00:{i:02x}:01'/>");
        if let Some(m) = self.mtu {
            let _ = writeln!(x, "  <mtu size='{m}'/>");
        }
        let dev = if self.forward_dev && matches!(self.mode, Mode::Nat | Mode::Route) {
            " dev='eth0'"
        } else {
            ""
        };
        match self.mode {
            Mode::Nat => {
                let n = &self.nat;
                let nat_v6 = n.ipv6 && self.v6.is_some();
                if n.ports.is_none() && !n.address && !nat_v6 {
                    let _ = writeln!(x, "  <forward mode='nat'{dev}/>");
                } else {
                    let _ = writeln!(x, "  <forward mode='nat'{dev}>");
                    let v6attr = if nat_v6 { " ipv6='yes'" } else { "" };
                    let _ = writeln!(x, "    <nat{v6attr}>");
                    if n.address {
                        let _ = writeln!(
                            x,
                            "      <address start='192.0.2.{}' end='192.0.2.{}'/>",
                            10 + i % 100,
                            20 + i % 100
                        );
                    }
                    if let Some((start, len)) = n.ports {
                        let start = 1024 + start % 30000;
                        // libvirt refuses start == end: at least one port more.
                        let end = start.saturating_add(1 + len % 30000);
                        let _ = writeln!(x, "      <port start='{start}' end='{end}'/>");
                    }
                    let _ = writeln!(x, "    </nat>");
                    let _ = writeln!(x, "  </forward>");
                }
            }
            Mode::Route => {
                let _ = writeln!(x, "  <forward mode='route'{dev}/>");
            }
            Mode::Open => {
                let _ = writeln!(x, "  <forward mode='open'/>");
            }
            _ => {}
        }
        let has_dhcp = self.v4.as_ref().is_some_and(|v| v.dhcp != 0)
            || self.v6.as_ref().is_some_and(|v| v.dhcp);
        if self.domain {
            let _ = writeln!(x, "  <domain name='net{i}.test'/>");
        }
        if self.dns_off && !has_dhcp {
            let _ = writeln!(x, "  <dns enable='no'/>");
        }
        if let Some(v4) = &self.v4 {
            let (addr, mask) = match v4.prefix {
                16 => (format!("172.{}.0.1", 16 + i % 16), None),
                p => (format!("10.{i}.1.1"), Some(p)),
            };
            match mask {
                Some(p) => {
                    let _ = writeln!(x, "  <ip address='{addr}' prefix='{p}'>");
                }
                // Classful: no prefix given, a /16 from the address class
                // would be wrong for 172.x; give the netmask instead.
                None => {
                    let _ = writeln!(x, "  <ip address='{addr}' netmask='255.255.0.0'>");
                }
            }
            // The address without its last octet: 10.I.1 or 172.X.0.
            let base = addr
                .rsplit_once('.')
                .map(|(b, _)| b.to_string())
                .unwrap_or_default();
            if v4.tftp {
                let _ = writeln!(x, "    <tftp root='/srv/tftp{i}'/>");
            }
            if v4.dhcp != 0 {
                let _ = writeln!(x, "    <dhcp>");
                if v4.dhcp & 1 != 0 {
                    let _ = writeln!(x, "      <range start='{base}.10' end='{base}.20'/>");
                }
                if v4.dhcp & 2 != 0 {
                    let _ = writeln!(
                        x,
                        "      <host mac='52:54:00:01:{i:02x}:05' name='h{i}' ip='{base}.5'/>"
                    );
                }
                if v4.tftp {
                    let _ = writeln!(x, "      <bootp file='pxelinux.0'/>");
                }
                let _ = writeln!(x, "    </dhcp>");
            }
            let _ = writeln!(x, "  </ip>");
            if self.v4_second {
                let _ = writeln!(x, "  <ip address='10.{i}.2.1' prefix='24'/>");
            }
            if self.route {
                let _ = writeln!(
                    x,
                    "  <route address='10.{}.0.0' prefix='16' gateway='{base}.2'/>",
                    200u32 + u32::from(i % 50)
                );
            }
        }
        if let Some(v6) = &self.v6 {
            let _ = writeln!(
                x,
                "  <ip family='ipv6' address='fd00:{i:x}::1' prefix='{}'>",
                v6.prefix
            );
            if v6.dhcp {
                let _ = writeln!(x, "    <dhcp>");
                let _ = writeln!(
                    x,
                    "      <range start='fd00:{i:x}::100' end='fd00:{i:x}::1ff'/>"
                );
                let _ = writeln!(x, "    </dhcp>");
            }
            let _ = writeln!(x, "  </ip>");
        }
        let _ = writeln!(x, "</network>");
        x
    }
}
