//! `net-update`: libvirt 11.3.0's networkUpdate on this driver.
//!
//! [`Driver::update`] changes one section of a network's live definition,
//! its persistent one, or both ([`UpdateFlags`]: neither = "current", the
//! live one if the network is active, else the persistent one), and on an
//! active network does on the host what libvirt does, without taking the
//! bridge down:
//!
//! * sections `forward-interface`, `ip-dhcp-range` and `ip-dhcp-host` of a
//!   none/nat/route/open network: its firewall rules are removed (saved
//!   removal plan) and added again for the new definition, journaled like a
//!   start, and the new removal plan is saved;
//! * `ip-dhcp-range`, `dns-txt`, `dns-srv`: dnsmasq is restarted (SIGTERM,
//!   wait until it is gone, start it with the new configuration: it has
//!   dropped its privileges and cannot re-read its root-only conf file);
//! * `ip-dhcp-host`: dnsmasq is restarted if the network starts or stops
//!   serving DHCP on IPv4 with it, then refreshed (hosts files rewritten,
//!   SIGHUP: the same dnsmasq process re-reads them);
//! * `dns-host`: refreshed;
//! * `portgroup`: nothing on the host;
//! * then the status file is rewritten;
//! * last, active or not, the `updated begin` network hook runs
//!   ([`super::hooks`]); its failure fails the update, which stays made.
//!
//! What libvirt refuses is refused with its message (see
//! [`crate::netxml::update`]); a refused update changes nothing, on disk or
//! on the host.
//!
//! Deliberate differences from libvirt 11.3.0:
//!
//! - The definitions are updated (and checked) before anything runs on the
//!   host, so a refused update runs no command (libvirt removes the rules,
//!   fails, and adds them back). If adding the new rules fails, the old
//!   definition's rules are added back and the live definition is left
//!   unchanged (libvirt keeps the new definition with no rules).
//! - After an update of a section that does not touch the firewall the
//!   saved removal plan is kept (libvirt replaces it with none, so its next
//!   destroy falls back to the legacy iptables removal, which leaves
//!   nftables rules behind).
//! - The status file is saved right after the firewall change (with its
//!   removal plan), before dnsmasq is touched.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::journal::{self, JournalRunner};
use super::modes::ops_for;
use super::{journal_write_failed, lock, Driver, DriverError};
use crate::dnsmasq;
use crate::netxml::{apply_update, NetworkDef, UpdateCommand, UpdateError, UpdateSection};
use crate::rules;
use crate::rules::batched::BridgeState;
use crate::store::{self, NetworkStatus};

/// Which definitions an update changes (libvirt's virNetworkUpdateFlags).
/// Neither: "current" — the live one if the network is active, else the
/// persistent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateFlags {
    /// VIR_NETWORK_UPDATE_AFFECT_LIVE (1).
    pub live: bool,
    /// VIR_NETWORK_UPDATE_AFFECT_CONFIG (2).
    pub config: bool,
}

impl UpdateFlags {
    pub const CURRENT: UpdateFlags = UpdateFlags {
        live: false,
        config: false,
    };
    pub const LIVE: UpdateFlags = UpdateFlags {
        live: true,
        config: false,
    };
    pub const CONFIG: UpdateFlags = UpdateFlags {
        live: false,
        config: true,
    };

    /// From libvirt's flag bits; any other bit is refused with libvirt's
    /// message.
    pub fn from_bits(bits: u32) -> Result<Self, DriverError> {
        if bits & !3 != 0 {
            return Err(DriverError::Invalid(format!(
                "invalid argument: unsupported flags (0x{:x}) in function networkUpdate",
                bits & !3
            )));
        }
        Ok(UpdateFlags {
            live: bits & 1 != 0,
            config: bits & 2 != 0,
        })
    }

    pub fn bits(self) -> u32 {
        u32::from(self.live) | (u32::from(self.config) << 1)
    }
}

/// What an update changed: the flags as resolved for the network's state
/// (virsh words its message after them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateReport {
    pub live: bool,
    pub config: bool,
}

/// How long a restart waits for the old dnsmasq to exit (libvirt's
/// virProcessKillPainfully waits as long before it gives up).
const DNSMASQ_EXIT_WAIT: Duration = Duration::from_secs(10);

impl Driver {
    /// `virsh net-update NAME COMMAND SECTION XML [--parent-index N]
    /// [--live] [--config]` (see the [module documentation](self)).
    pub fn update(
        &self,
        name: &str,
        command: UpdateCommand,
        section: UpdateSection,
        parent_index: i32,
        xml: &str,
        flags: UpdateFlags,
    ) -> Result<UpdateReport, DriverError> {
        let _owner = self.change()?;
        let (live, config) = {
            let nets = lock(&self.nets);
            let o = nets
                .get(name)
                .ok_or_else(|| DriverError::NoNetwork(name.to_string()))?;
            (o.live.clone(), o.config.clone())
        };
        let active = live.is_some();
        let mut flags = flags;
        if !flags.live && !flags.config {
            if active {
                flags.live = true;
            } else {
                flags.config = true;
            }
        }
        if flags.live && !active {
            return Err(UpdateError::Invalid("network is not running".into()).into());
        }
        if flags.config && config.is_none() {
            return Err(UpdateError::Invalid(
                "cannot change persistent config of a transient network".into(),
            )
            .into());
        }
        // Both copies are changed and checked before anything is replaced.
        let new_live = match (&live, flags.live) {
            (Some(st), true) => {
                let mut d = st.def.clone();
                apply_update(&mut d, command, section, parent_index, xml, false)?;
                Some(d)
            }
            _ => None,
        };
        let new_config = match (&config, flags.config) {
            (Some(c), true) => {
                let mut d = c.clone();
                apply_update(&mut d, command, section, parent_index, xml, true)?;
                Some(d)
            }
            _ => None,
        };
        let report = UpdateReport {
            live: flags.live,
            config: flags.config,
        };
        if let (Some(st), Some(new_def)) = (live, new_live) {
            self.update_live(st, new_def, section)?;
        }
        if let Some(def) = new_config {
            self.configs.save(&def)?;
            lock(&self.nets).entry(name.to_string()).or_default().config = Some(def);
        }
        // The `updated` hook gets the network's current definition (the
        // live one if it runs); its failure fails the update, which stays
        // made, as in libvirt.
        let current = {
            let nets = lock(&self.nets);
            nets.get(name)
                .and_then(|o| o.live.as_ref().map(|l| l.def.clone()).or(o.config.clone()))
        };
        if let Some(def) = current {
            self.run_hook(&def, super::hooks::HookOp::Updated)?;
        }
        Ok(report)
    }

    /// The host side of a live update, then the status file.
    fn update_live(
        &self,
        mut st: NetworkStatus,
        new_def: NetworkDef,
        section: UpdateSection,
    ) -> Result<(), DriverError> {
        let name = st.def.name.clone();
        let old_dhcp = serves_dhcp4(&st.def);
        let ops = ops_for(st.def.forward_mode());
        if ops.reload_firewall && section.affects_firewall() {
            self.swap_firewall(&mut st, new_def)?;
        } else {
            // The saved removal plan still removes what is there.
            st.def = new_def;
            self.statuses.save(&st)?;
            lock(&self.nets).entry(name.clone()).or_default().live = Some(st.clone());
        }
        if !ops.reload_firewall {
            return Ok(());
        }
        let def = &st.def;
        match section {
            UpdateSection::IpDhcpRange | UpdateSection::DnsTxt | UpdateSection::DnsSrv => {
                self.restart_dnsmasq(def)
            }
            UpdateSection::IpDhcpHost => {
                if serves_dhcp4(def) != old_dhcp {
                    self.restart_dnsmasq(def)?;
                }
                self.refresh_dnsmasq(def)
            }
            UpdateSection::DnsHost => self.refresh_dnsmasq(def),
            _ => Ok(()),
        }
    }

    /// Removes the rules with the saved plan and adds them for `new_def`,
    /// journaled like a start; saves the status with the new plan. If the
    /// add fails, the old definition's rules are added back and the live
    /// definition is kept.
    fn swap_firewall(
        &self,
        st: &mut NetworkStatus,
        mut new_def: NetworkDef,
    ) -> Result<(), DriverError> {
        let name = st.def.name.clone();
        let jpath = self.journal_path(&name);
        let journal = self.open_journal(&jpath)?;
        let journaled = JournalRunner::new(self.runner(), &journal);
        rules::remove_network_firewall(&st.def, st.fw_removal.as_ref(), &journaled)
            .map_err(DriverError::from_rules)?;
        let added = self.add_firewall(&mut new_def, &journaled, BridgeState::Existing);
        let err = match (added, journal.write_failure()) {
            (Err(e), _) if e.is_crash() => return Err(e),
            (Ok(fw), None) => {
                st.def = new_def;
                st.fw_removal = fw;
                None
            }
            (_, Some(why)) => {
                // Nothing ran after the entry that could not be written:
                // what the add created is undone from memory.
                journal::run_undo(self.runner(), journal.take_undo_plan())
                    .map_err(DriverError::from_run)?;
                st.fw_removal = None;
                Some(journal_write_failed(&jpath, &why))
            }
            (Err(e), None) => {
                // Put the old rules back (libvirt does this when the
                // update itself fails; its result is ignored there too).
                let mut old = st.def.clone();
                st.fw_removal = match self.add_firewall(&mut old, &journaled, BridgeState::Existing)
                {
                    Err(e) if e.is_crash() => return Err(e),
                    Ok(fw) if journal.write_failure().is_none() => fw,
                    _ => None,
                };
                Some(e)
            }
        };
        self.statuses.save(st)?;
        journal.remove().map_err(|e| DriverError::io(&jpath, e))?;
        lock(&self.nets).entry(name).or_default().live = Some(st.clone());
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// libvirt networkRestartDhcpDaemon: stop the running dnsmasq (SIGTERM,
    /// then wait until it is gone) and start it again if the network needs
    /// it.
    fn restart_dnsmasq(&self, def: &NetworkDef) -> Result<(), DriverError> {
        let runner = self.runner();
        let paths = self.dnsmasq_options().paths(def);
        if let Some(pf) = &paths.pid_file {
            let pid = fs::read_to_string(pf)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()));
            if let Some(pid) = pid {
                let killed = runner
                    .signal(&pid, virtnet_runner::Signal::Term)
                    .map_err(DriverError::from_run)?;
                if killed.success() {
                    self.wait_gone(&pid)?;
                }
            }
            let _ = store::remove_if_exists(Path::new(pf));
        }
        if !dnsmasq::needs_dnsmasq(def) {
            return Ok(());
        }
        self.start_dnsmasq(def, runner, &|_, _, _| Ok(()))
    }

    /// Polls [`super::process_alive`] (`kill -0 PID`, zombies are gone)
    /// until the process is gone, at most
    /// [`DNSMASQ_EXIT_WAIT`].
    fn wait_gone(&self, pid: &str) -> Result<(), DriverError> {
        let deadline = Instant::now() + DNSMASQ_EXIT_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            let alive = super::process_alive(self.runner(), pid)?;
            if !alive {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Invalid(format!(
                    "Failed to terminate process {pid} with SIGTERM"
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// Whether some IPv4 `<ip>` has DHCP ranges, hosts or a TFTP root.
fn serves_dhcp4(def: &NetworkDef) -> bool {
    def.ips
        .iter()
        .any(|ip| ip.is_ipv4() && (ip.has_dhcp() || ip.has_tftp()))
}
