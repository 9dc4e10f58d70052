//! What virtnet emits for one network definition, as the files of a golden
//! case (`golden/releases/<release>/<case>/`): used by `cargo xtask golden`
//! to bless and check, and by tests.
//!
//! Per backend `B` (`iptables`, `nftables`):
//! * `B.start` — the network-start stream in libvirt's golden format, on a
//!   host whose private chains exist (what `virtnet rules` prints);
//! * `B.removal.xml` — the removal plan as the status file saves it
//!   (`<firewall name='fwRemoval' ...>`, indented for `<networkstatus>`),
//!   with nft handles numbered from 1 by the recording runner; absent when
//!   nothing can be undone;
//! * `B.error` — instead of the two above, libvirt's error message when the
//!   rules cannot be generated.
//!
//! The same three per backend for the batched layout
//! ([`super::batched`]; the start of a network, so on the bridge it has
//! just created), named `B-batched.start`, `B-batched.removal.xml`,
//! `B-batched.error`. A command with standard input (`nft -f -`,
//! `iptables-restore --noflush`) is followed by its input, each line
//! prefixed with `  | ` (libvirt's stream format has no stdin).
//!
//! For a definition with a `<bandwidth>`: `B.qos.start` — libvirt's
//! `virNetDevBandwidthSet` stream on the bridge at the end of a start (with
//! nftables the checksum fix's root qdisc is already there, so `tc qdisc
//! show` finds it and no root qdisc is added), and `qos.destroy` — the
//! `virNetDevBandwidthClear` stream of destroy.
//!
//! And `legacy-removal.iptables` — the iptables removal libvirt regenerates
//! from the definition when a status file has no saved plan (absent when
//! libvirt would run nothing).

use super::{add_network_firewall, legacy_iptables_removal, ChainInitState};
use crate::firewall::{Backend, HandleMode, RecordingRunner, RenderOptions};
use crate::netxml::{self, NetXmlError, NetworkDef};

/// Parses and define-validates a case input the way `net-define` would on
/// a host without other networks (this assigns a missing bridge name).
pub fn load_case(xml: &str) -> Result<NetworkDef, NetXmlError> {
    let mut def = netxml::parse(xml)?;
    if let Err(mut e) = netxml::validate_for_define(&mut def, &netxml::EmptyHost) {
        netxml::locate(xml, &mut e);
        return Err(e);
    }
    Ok(def)
}

/// The golden files of one case: `(file name, content)`, sorted by name.
pub fn case_files(xml: &str) -> Result<Vec<(String, String)>, NetXmlError> {
    let def = load_case(xml)?;
    let mut files = Vec::new();
    for backend in [Backend::Iptables, Backend::Nftables] {
        let b = backend.as_str();
        let mut def = def.clone();
        let runner = RecordingRunner::with_handles(HandleMode::Counter(1));
        let mut chains = ChainInitState::already_done();
        match add_network_firewall(&mut def, backend, &runner, &mut chains) {
            Ok(removal) => {
                files.push((format!("{b}.start"), runner.rendered(RenderOptions::GOLDEN)));
                if let Some(mut removal) = removal {
                    removal.set_name("fwRemoval");
                    files.push((format!("{b}.removal.xml"), removal.format_xml(2)));
                }
            }
            Err(e) => files.push((format!("{b}.error"), format!("{e}\n"))),
        }
        let mut def = def.clone();
        let runner = RecordingRunner::with_handles(HandleMode::Counter(1));
        let mut chains = ChainInitState::already_done();
        let mut setup = super::batched::BatchedSetup::already_done();
        match super::batched::add_network_firewall(
            &mut def,
            backend,
            &runner,
            &mut chains,
            &mut setup,
            super::batched::BridgeState::Fresh,
        ) {
            Ok(removal) => {
                let mut text = String::new();
                for cmd in runner.recorded() {
                    text.push_str(&crate::firewall::render_argv(
                        &cmd.argv,
                        RenderOptions::GOLDEN,
                    ));
                    text.push('\n');
                    for l in cmd.stdin.as_deref().unwrap_or("").lines() {
                        text.push_str("  | ");
                        text.push_str(l);
                        text.push('\n');
                    }
                }
                files.push((format!("{b}-batched.start"), text));
                if let Some(mut removal) = removal {
                    removal.set_name("fwRemoval");
                    files.push((format!("{b}-batched.removal.xml"), removal.format_xml(2)));
                }
            }
            Err(e) => files.push((format!("{b}-batched.error"), format!("{e}\n"))),
        }
    }
    if let (Some(bw), Some(br)) = (def.bandwidth.as_ref(), def.bridge_name()) {
        for backend in [Backend::Iptables, Backend::Nftables] {
            let runner = RecordingRunner::new();
            if backend == Backend::Nftables && super::has_firewall_rules(&def) {
                runner.stdout_when(
                    crate::firewall::Matcher::contains(["qdisc", "show"]),
                    "qdisc htb 1: root refcnt 2 r2q 10 default 0x2 direct_packets_stat 0 direct_qlen 1000\n",
                );
            }
            let flags = crate::driver::bandwidth::SetFlags::NETWORK;
            if crate::driver::bandwidth::set(&runner, br, Some(bw), flags).is_ok() {
                files.push((
                    format!("{}.qos.start", backend.as_str()),
                    runner.rendered(RenderOptions::GOLDEN),
                ));
            }
        }
        let runner = RecordingRunner::new();
        if crate::driver::bandwidth::clear(&runner, br).is_ok() {
            files.push((
                "qos.destroy".to_string(),
                runner.rendered(RenderOptions::GOLDEN),
            ));
        }
    }
    if super::has_firewall_rules(&def) {
        if let Ok(mut plan) = legacy_iptables_removal(&def) {
            let runner = RecordingRunner::new();
            // Every group ignores errors; the recording runner never fails.
            if plan.apply(&runner).is_ok() {
                files.push((
                    "legacy-removal.iptables".to_string(),
                    runner.rendered(RenderOptions::GOLDEN),
                ));
            }
        }
    }
    files.sort();
    Ok(files)
}
