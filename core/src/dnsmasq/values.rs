//! Define-time check of the values that go into dnsmasq's files: a value
//! dnsmasq would read differently from what was defined is refused when
//! the network is defined, not when it is started (virtnet addition;
//! libvirt writes such values as they are).
//!
//! - Configuration lines (`domain=`, `server=/D/`, `txt-record=`,
//!   `srv-host=`, `tftp-root=`, `dhcp-boot=`): no line break or other
//!   control character (a new option), no `"` (dnsmasq's quoting, a lone
//!   one makes the file unreadable) and no `#` after whitespace (dnsmasq
//!   drops the rest of the line as a comment).
//! - Hosts files (`dhcp-hostsfile` fields MAC, id, name; `addn-hosts`
//!   names): additionally no whitespace, `,` or `#` (field and name
//!   separators, comments).
//! - `<dnsmasq:option value>`: the user writes dnsmasq syntax, so only line
//!   breaks and control characters are refused.

use crate::netxml::NetworkDef;

/// A value that cannot be written to dnsmasq's files as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeValue {
    /// Element path, netxml style (`/network/dns[1]/txt[2]`).
    pub path: String,
    /// The attribute holding the value (`None`: the element's text).
    pub attribute: Option<&'static str>,
    /// The element and attribute as the user wrote them, for messages.
    pub what: String,
    pub value: String,
    /// Why dnsmasq would misread it.
    pub reason: &'static str,
}

impl std::fmt::Display for UnsafeValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} '{}' cannot be written to dnsmasq's configuration: {}",
            self.what,
            self.value.escape_debug(),
            self.reason
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfLine,
    HostsField,
    RawOption,
}

fn problem(value: &str, kind: Kind) -> Option<&'static str> {
    if value.contains(['\n', '\r']) {
        return Some("it contains a line break, which would start another dnsmasq option");
    }
    if value.chars().any(char::is_control) {
        return Some("it contains a control character");
    }
    if kind == Kind::RawOption {
        return None;
    }
    if value.contains('"') {
        return Some("it contains '\"', which dnsmasq reads as quoting");
    }
    if kind == Kind::HostsField {
        if value.chars().any(char::is_whitespace) {
            return Some("it contains whitespace, which separates fields in dnsmasq's hosts files");
        }
        if value.contains([',', '#']) {
            return Some("it contains ',' or '#', which separate fields or start a comment in dnsmasq's hosts files");
        }
        return None;
    }
    let mut prev_space = true;
    for c in value.chars() {
        if c == '#' && prev_space {
            return Some(
                "it contains '#' at the start or after whitespace, where dnsmasq starts a comment",
            );
        }
        prev_space = c.is_whitespace();
    }
    None
}

/// The first value of `def` dnsmasq would misread, in document order.
pub fn check_define_values(def: &NetworkDef) -> Result<(), UnsafeValue> {
    let mut out: Option<UnsafeValue> = None;
    let mut check =
        |path: String, attribute: Option<&'static str>, what: String, value: &str, kind: Kind| {
            if out.is_some() {
                return;
            }
            if let Some(reason) = problem(value, kind) {
                out = Some(UnsafeValue {
                    path,
                    attribute,
                    what,
                    value: value.to_string(),
                    reason,
                });
            }
        };
    if let Some(d) = &def.domain.name {
        check(
            "/network/domain[1]".into(),
            Some("name"),
            "<domain name>".into(),
            d,
            Kind::ConfLine,
        );
    }
    let dns = &def.dns;
    for (i, f) in dns.forwarders.iter().enumerate() {
        if let Some(d) = &f.domain {
            check(
                format!("/network/dns[1]/forwarder[{}]", i + 1),
                Some("domain"),
                "<forwarder domain>".into(),
                d,
                Kind::ConfLine,
            );
        }
    }
    for (i, t) in dns.txts.iter().enumerate() {
        let path = format!("/network/dns[1]/txt[{}]", i + 1);
        check(
            path.clone(),
            Some("name"),
            "<txt name>".into(),
            &t.name,
            Kind::ConfLine,
        );
        check(
            path,
            Some("value"),
            "<txt value>".into(),
            &t.value,
            Kind::ConfLine,
        );
    }
    for (i, s) in dns.srvs.iter().enumerate() {
        let path = format!("/network/dns[1]/srv[{}]", i + 1);
        check(
            path.clone(),
            Some("service"),
            "<srv service>".into(),
            &s.service,
            Kind::ConfLine,
        );
        check(
            path.clone(),
            Some("protocol"),
            "<srv protocol>".into(),
            &s.protocol,
            Kind::ConfLine,
        );
        if let Some(d) = &s.domain {
            check(
                path.clone(),
                Some("domain"),
                "<srv domain>".into(),
                d,
                Kind::ConfLine,
            );
        }
        if let Some(t) = &s.target {
            check(
                path,
                Some("target"),
                "<srv target>".into(),
                t,
                Kind::ConfLine,
            );
        }
    }
    for (i, h) in dns.hosts.iter().enumerate() {
        for (j, n) in h.hostnames.iter().enumerate() {
            check(
                format!("/network/dns[1]/host[{}]/hostname[{}]", i + 1, j + 1),
                None,
                "<dns><host><hostname>".into(),
                n,
                Kind::HostsField,
            );
        }
    }
    for (i, ip) in def.ips.iter().enumerate() {
        let ip_path = format!("/network/ip[{}]", i + 1);
        if let Some(t) = &ip.tftp_root {
            check(
                format!("{ip_path}/tftp[1]"),
                Some("root"),
                "<tftp root>".into(),
                t,
                Kind::ConfLine,
            );
        }
        if let Some(b) = &ip.bootp {
            check(
                format!("{ip_path}/dhcp[1]/bootp[1]"),
                Some("file"),
                "<bootp file>".into(),
                &b.file,
                Kind::ConfLine,
            );
        }
        for (j, h) in ip.hosts.iter().enumerate() {
            let path = format!("{ip_path}/dhcp[1]/host[{}]", j + 1);
            for (attr, v) in [("mac", &h.mac), ("id", &h.id), ("name", &h.name)] {
                if let Some(v) = v {
                    check(
                        path.clone(),
                        Some(attr),
                        format!("<dhcp><host {attr}>"),
                        v,
                        Kind::HostsField,
                    );
                }
            }
        }
    }
    for (i, o) in def.dnsmasq_options.iter().enumerate() {
        check(
            format!("/network/dnsmasq:options[1]/dnsmasq:option[{}]", i + 1),
            Some("value"),
            "<dnsmasq:option value>".into(),
            o,
            Kind::RawOption,
        );
    }
    match out {
        Some(u) => Err(u),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_dnsmasq_would_misread() {
        assert_eq!(problem("example.com", Kind::ConfLine), None);
        assert_eq!(problem("a value with spaces", Kind::ConfLine), None);
        assert_eq!(problem("v=spf1#x", Kind::ConfLine), None);
        assert!(problem("a\nb", Kind::ConfLine).is_some());
        assert!(problem("a\u{1}b", Kind::RawOption).is_some());
        assert!(problem("a\"b", Kind::ConfLine).is_some());
        assert!(problem("a #b", Kind::ConfLine).is_some());
        assert!(problem("#b", Kind::ConfLine).is_some());
        assert_eq!(problem("dhcp-option=3,\"x\"", Kind::RawOption), None);
        assert!(problem("52:54:00:00:00:01 x", Kind::HostsField).is_some());
        assert!(problem("h,x", Kind::HostsField).is_some());
        assert_eq!(problem("52:54:00:00:00:01", Kind::HostsField), None);
    }
}
