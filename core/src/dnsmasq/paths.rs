//! Where libvirt keeps a network's dnsmasq files.

/// libvirt's (privileged) dnsmasq state directory.
pub const LIBVIRT_DNSMASQ_DIR: &str = "/var/lib/libvirt/dnsmasq";
/// libvirt's (privileged) directory of network pid files.
pub const LIBVIRT_PID_DIR: &str = "/run/libvirt/network";
/// virtnet's own default dnsmasq state directory.
pub const VIRTNET_DNSMASQ_DIR: &str = "/var/lib/virtnet/dnsmasq";

/// The files of one network's dnsmasq instance, named as libvirt names them.
///
/// Quirk kept from libvirt: the network-name component of the hostsfile,
/// addnhosts and pid-file paths is XML-escaped (`"` → `&quot;`, ...), the
/// `.conf`, `.leases` names are not; the `.status`/`.macs` files are named
/// after the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqPaths {
    /// `<dir>/<name>.conf`
    pub conf: String,
    /// `<dir>/<escaped name>.hostsfile`
    pub hostsfile: String,
    /// `<dir>/<escaped name>.addnhosts`
    pub addnhosts: String,
    /// `<pid dir>/<escaped name>.pid`, when a pid directory is given.
    pub pid_file: Option<String>,
    /// Legacy leases file `<dir>/<name>.leases` (only removed at cleanup).
    pub leases: String,
    /// Custom leases file written by the leases helper, `<dir>/<bridge>.status`.
    pub status: Option<String>,
    /// MAC map `<dir>/<bridge>.macs`.
    pub macs: Option<String>,
}

impl DnsmasqPaths {
    /// Paths for network `name` (with bridge `bridge`, if known) under the
    /// dnsmasq state directory `dir` and, optionally, the pid directory.
    pub fn new(dir: &str, pid_dir: Option<&str>, name: &str, bridge: Option<&str>) -> Self {
        let esc = xml_escape_name(name);
        DnsmasqPaths {
            conf: path(dir, name, ".conf"),
            hostsfile: path(dir, &esc, ".hostsfile"),
            addnhosts: path(dir, &esc, ".addnhosts"),
            pid_file: pid_dir.map(|p| path(p, &esc, ".pid")),
            leases: path(dir, name, ".leases"),
            status: bridge.map(|b| path(dir, b, ".status")),
            macs: bridge.map(|b| path(dir, b, ".macs")),
        }
    }
}

/// `DIR/STEMSUFFIX`, built in one allocation (paths are made at every
/// dnsmasq start and stop).
fn path(dir: &str, stem: &str, suffix: &str) -> String {
    let mut s = String::with_capacity(dir.len() + 1 + stem.len() + suffix.len());
    s.push_str(dir);
    s.push('/');
    s.push_str(stem);
    s.push_str(suffix);
    s
}

/// libvirt's virBufferEscapeString rules: `< > & " '` become entities, the
/// control characters 0x01-0x08, 0x0B, 0x0C, 0x0E-0x19 are dropped, all
/// else (including tab, LF, CR and 0x1A-0x1F) is kept.
pub fn xml_escape_name(s: &str) -> String {
    crate::netxml::format::escape_xml(s, crate::netxml::format::Escape::Libvirt).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_libvirt_quirk() {
        let p = DnsmasqPaths::new(
            LIBVIRT_DNSMASQ_DIR,
            Some(LIBVIRT_PID_DIR),
            "a\"b'<&>\u{1}\u{1a}\tc",
            Some("virbr0"),
        );
        assert_eq!(
            p.conf,
            "/var/lib/libvirt/dnsmasq/a\"b'<&>\u{1}\u{1a}\tc.conf"
        );
        assert_eq!(
            p.hostsfile,
            "/var/lib/libvirt/dnsmasq/a&quot;b&apos;&lt;&amp;&gt;\u{1a}\tc.hostsfile"
        );
        assert_eq!(
            p.pid_file.as_deref(),
            Some("/run/libvirt/network/a&quot;b&apos;&lt;&amp;&gt;\u{1a}\tc.pid")
        );
        assert_eq!(
            p.status.as_deref(),
            Some("/var/lib/libvirt/dnsmasq/virbr0.status")
        );
        assert_eq!(
            p.macs.as_deref(),
            Some("/var/lib/libvirt/dnsmasq/virbr0.macs")
        );
        assert_eq!(
            p.leases,
            "/var/lib/libvirt/dnsmasq/a\"b'<&>\u{1}\u{1a}\tc.leases"
        );
    }
}
