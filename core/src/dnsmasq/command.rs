//! When dnsmasq runs for a network, and the command line that starts it.

use super::{DnsmasqCaps, DnsmasqError};
use crate::netxml::{ForwardMode, NetworkDef};
use virtnet_runner::Cmd;

/// libvirt's leases helper in a default (`/usr` prefix) installation; the
/// `--dhcp-script` dnsmasq calls on every lease change.
pub const LIBVIRT_LEASES_HELPER: &str = "/usr/libexec/libvirt_leaseshelper";

/// Environment variable that tells the leases helper the bridge name.
pub const BRIDGE_ENV: &str = "VIR_BRIDGE_NAME";

/// Whether networks of this forward mode (`None` = isolated) can have a
/// dnsmasq at all: only the modes libvirt manages itself (isolated, nat,
/// route, open).
pub fn mode_uses_dnsmasq(mode: Option<ForwardMode>) -> bool {
    match mode {
        None => true,
        Some(m) => m.is_virtual(),
    }
}

/// Whether starting `def` starts a dnsmasq (libvirt's networkStartDhcpDaemon
/// conditions): the mode uses dnsmasq, there is at least one `<ip>`, and
/// some `<ip>` has DHCP ranges/hosts or a TFTP root, or DNS is not disabled.
pub fn needs_dnsmasq(def: &NetworkDef) -> bool {
    if !mode_uses_dnsmasq(def.forward_mode()) || def.ips.is_empty() {
        return false;
    }
    let dhcp_or_tftp = def.ips.iter().any(|ip| ip.has_dhcp() || ip.has_tftp());
    dhcp_or_tftp || def.dns.enable != Some(false)
}

/// The command that starts dnsmasq for a network: the argument vector and
/// the environment variables to add to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqCommand {
    /// `BINARY --conf-file=CONF --leasefile-ro --dhcp-script=HELPER`
    pub argv: Vec<String>,
    /// `VIR_BRIDGE_NAME=<bridge>`.
    pub env: Vec<(String, String)>,
}

impl DnsmasqCommand {
    /// The argument vector and environment as a runner command.
    pub fn to_cmd(&self) -> Cmd {
        let mut cmd = Cmd::new(self.argv.iter().cloned());
        cmd.env = self.env.clone();
        cmd
    }
}

/// Build the dnsmasq command line libvirt runs for `def` with the
/// configuration file at `conf_path`.
pub fn command_line(
    def: &NetworkDef,
    caps: &DnsmasqCaps,
    conf_path: &str,
    leases_helper: &str,
) -> Result<DnsmasqCommand, DnsmasqError> {
    let bridge = def.bridge_name().ok_or_else(|| DnsmasqError::NoBridge {
        network: def.name.clone(),
    })?;
    Ok(DnsmasqCommand {
        argv: vec![
            caps.binary.clone(),
            format!("--conf-file={conf_path}"),
            "--leasefile-ro".to_string(),
            format!("--dhcp-script={leases_helper}"),
        ],
        env: vec![(BRIDGE_ENV.to_string(), bridge.to_string())],
    })
}
