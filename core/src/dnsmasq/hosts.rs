//! The DHCP hosts file (`dhcp-hostsfile=`) and the additional hosts file
//! (`addn-hosts=`), and the small text helpers both share with the
//! configuration.

use std::net::{IpAddr, Ipv6Addr};

use super::DnsmasqError;
use crate::netxml::{DnsHost, IpDef, Lease, LeaseUnit};

/// An address as libvirt prints it (glibc `inet_ntop`): like Rust's
/// `Display`, except that IPv4-compatible IPv6 addresses (`::a.b.c.d`, the
/// first 96 bits zero and the next 16 not) keep the dotted tail.
pub fn addr_text(a: &IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6_text(v6),
    }
}

fn v6_text(a: &Ipv6Addr) -> String {
    let w = a.segments();
    if w[..6] == [0; 6] && w[6] != 0 {
        let o = a.octets();
        return format!("::{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
    }
    a.to_string()
}

/// dnsmasq lease time: `infinite` for 0, else the number followed by the
/// first letter of the unit (`200s`, `10m`, `1h`).
pub fn lease_text(lease: &Lease) -> String {
    if lease.expiry == 0 {
        return "infinite".to_string();
    }
    let unit = match lease.unit {
        LeaseUnit::Seconds => 's',
        LeaseUnit::Minutes => 'm',
        LeaseUnit::Hours => 'h',
    };
    format!("{}{}", lease.expiry, unit)
}

/// Append the hosts-file lines of the `<dhcp><host>` entries of `ip` (the
/// `<ip>` at `ip_index`) to `out`. Hosts without an address are skipped,
/// as libvirt skips them.
///
/// IPv4: `MAC,IP,NAME` / `NAME,IP` / `MAC,IP`; IPv6: `id:ID,NAME,[IP]` /
/// `NAME,[IP]` / `id:ID,[IP]`; then `,LEASE` when the host has a lease.
/// MAC, ID and NAME are written as given.
pub fn dhcp_host_lines(
    network: &str,
    ip: &IpDef,
    ip_index: usize,
    out: &mut Vec<String>,
) -> Result<(), DnsmasqError> {
    for (host_index, h) in ip.hosts.iter().enumerate() {
        let Some(addr) = h.ip else { continue };
        let a = addr_text(&addr);
        let name = h.name.as_deref();
        let mut line = if ip.is_ipv6() {
            match (h.id.as_deref(), name) {
                (Some(id), Some(n)) => format!("id:{id},{n},[{a}]"),
                (None, Some(n)) => format!("{n},[{a}]"),
                (Some(id), None) => format!("id:{id},[{a}]"),
                (None, None) => return Err(incomplete(network, addr, ip_index, host_index)),
            }
        } else {
            match (h.mac.as_deref(), name) {
                (Some(m), Some(n)) => format!("{m},{a},{n}"),
                (None, Some(n)) => format!("{n},{a}"),
                (Some(m), None) => format!("{m},{a}"),
                (None, None) => return Err(incomplete(network, addr, ip_index, host_index)),
            }
        };
        if let Some(l) = &h.lease {
            line.push(',');
            line.push_str(&lease_text(l));
        }
        out.push(line);
    }
    Ok(())
}

fn incomplete(network: &str, ip: IpAddr, ip_index: usize, host_index: usize) -> DnsmasqError {
    DnsmasqError::IncompleteHost {
        network: network.to_string(),
        ip,
        ip_index,
        host_index,
    }
}

/// Text of the DHCP hosts file: one line per entry, each ending in `\n`.
pub fn hostsfile_text(lines: &[String]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Text of the additional hosts file from `<dns><host>` entries: one line
/// per distinct address (first-appearance order; entries with the same
/// address are merged), `IP<TAB>name<TAB>...name<TAB><LF>` (note the TAB
/// before the newline). Entries without host names contribute nothing.
pub fn addnhosts_text(hosts: &[DnsHost]) -> String {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for h in hosts {
        let ip = addr_text(&h.ip);
        for name in &h.hostnames {
            match groups.iter_mut().find(|(g, _)| *g == ip) {
                Some((_, names)) => names.push(name),
                None => groups.push((ip.clone(), vec![name])),
            }
        }
    }
    let mut s = String::new();
    for (ip, names) in groups {
        s.push_str(&ip);
        s.push('\t');
        for n in names {
            s.push_str(n);
            s.push('\t');
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_print_like_inet_ntop() {
        assert_eq!(addr_text(&ip("192.168.122.1")), "192.168.122.1");
        assert_eq!(addr_text(&ip("2001:db8::1")), "2001:db8::1");
        assert_eq!(addr_text(&ip("::1")), "::1");
        assert_eq!(addr_text(&ip("::")), "::");
        assert_eq!(addr_text(&ip("::ffff:10.0.0.1")), "::ffff:10.0.0.1");
        assert_eq!(addr_text(&ip("::10.0.0.1")), "::10.0.0.1");
        assert_eq!(addr_text(&ip("::0.0.1.2")), "::102");
        assert_eq!(addr_text(&ip("1:0:2:0::3")), "1:0:2::3");
    }

    #[test]
    fn lease_texts() {
        let l = |expiry, unit| lease_text(&Lease { expiry, unit });
        assert_eq!(l(0, LeaseUnit::Hours), "infinite");
        assert_eq!(l(200, LeaseUnit::Seconds), "200s");
        assert_eq!(l(10, LeaseUnit::Minutes), "10m");
        assert_eq!(l(1, LeaseUnit::Hours), "1h");
    }

    #[test]
    fn addnhosts_merges_by_address_with_trailing_tab() {
        let hosts = vec![
            DnsHost {
                ip: ip("192.168.122.2"),
                hostnames: vec!["a".into(), "b".into()],
            },
            DnsHost {
                ip: ip("2001:db8::2"),
                hostnames: vec!["c".into()],
            },
            DnsHost {
                ip: ip("10.0.0.9"),
                hostnames: vec![],
            },
            DnsHost {
                ip: ip("192.168.122.2"),
                hostnames: vec!["d".into()],
            },
        ];
        assert_eq!(
            addnhosts_text(&hosts),
            "192.168.122.2\ta\tb\td\t\n2001:db8::2\tc\t\n"
        );
        assert_eq!(addnhosts_text(&[]), "");
    }
}
