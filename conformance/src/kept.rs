//! **What libvirt keeps on purpose** after a network is destroyed (or
//! fails to start) — the one definition the matrix, the property tests
//! and the upgrade check use.
//!
//! libvirt never removes what its first network start set up once for all
//! networks — exactly what [`set_up_kept`] (`ChainInitState::setup` for
//! each backend) creates:
//!
//! * its private chains: the `LIBVIRT_*` user chains of the iptables and
//!   ip6tables `filter`, `nat` and `mangle` tables, the rules of the
//!   built-in chains that only jump to them (`-A INPUT -j LIBVIRT_INP`),
//!   and the tables and built-in chains iptables-nft creates on that first
//!   write;
//! * its nftables tables `ip libvirt_network` / `ip6 libvirt_network`, their
//!   private chains (`forward`, `guest_output`, `guest_input`,
//!   `guest_cross`, `guest_nat`) and the rules of `forward` that only count
//!   and jump to a private chain;
//!
//! and, besides, the global forwarding sysctls it turned on
//! ([`KEPT_SYSCTLS`]).
//!
//! The batched layout (`virtnet_core::rules::batched`) keeps the same kind
//! of thing for the same reason: with iptables, libvirt's private chains
//! (its per-network chains hang off them); with nftables, its shared part
//! instead of libvirt's tables — the tables `ip virtnet_batched` /
//! `ip6 virtnet_batched` with their base chains and (empty) verdict maps
//! ([`set_up_kept_in`], `BatchedSetup::setup_nft`).
//!
//! Everything else a network adds — every other rule in those tables and
//! chains, its bridge (with addresses, routes, tc objects and per-device
//! sysctls) and its dnsmasq process — must go when the network goes.
//!
//! Views of it: [`kept_snapshot`] (a snapshot of any host, for the matrix
//! and the upgrade check) and `props::view::kept_on_purpose` (the fake
//! host's objects, for the property tests).

use virtnet_core::firewall::Backend;
use virtnet_core::rules::batched::{BatchedSetup, Layout};
use virtnet_core::rules::ChainInitState;
use virtnet_runner::Runner;

use crate::host::{HostError, Snapshot, TestHost, FIREWALL_SECTIONS};

/// The forwarding sysctls libvirt turns on and never turns off.
pub const KEPT_SYSCTLS: &[&str] = &["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

/// Sets up on `runner`'s host what libvirt keeps on purpose for the
/// backends `backends`: its private chains, as the first network start
/// does. The one place the kept objects come from.
pub fn set_up_kept(runner: &dyn Runner, backends: &[Backend]) -> Result<(), String> {
    let pairs: Vec<(Backend, Layout)> = backends.iter().map(|b| (*b, Layout::Libvirt)).collect();
    set_up_kept_in(runner, &pairs)
}

/// [`set_up_kept`] per backend and firewall layout: libvirt's private
/// chains, or for the batched layout with nftables its shared part (the
/// first batched start sets up nothing else).
pub fn set_up_kept_in(runner: &dyn Runner, kept: &[(Backend, Layout)]) -> Result<(), String> {
    for (backend, layout) in kept {
        match (backend, layout) {
            (Backend::Nftables, Layout::Batched) => {
                let mut setup = BatchedSetup::new();
                setup
                    .setup_nft(runner)
                    .map_err(|e| format!("batched layout's shared part: {e}"))?;
            }
            _ => {
                ChainInitState::new()
                    .setup(*backend, runner, false)
                    .map_err(|e| format!("private chains: {e}"))?;
            }
        }
    }
    Ok(())
}

/// `host` (a freshly staged baseline) with what is kept on purpose for
/// `backends` set up: its firewall sections. (The caller leaves out
/// backends that never set them up: a network without firewall rules
/// does not.)
pub fn kept_snapshot(host: &dyn TestHost, backends: &[Backend]) -> Result<Snapshot, HostError> {
    set_up_kept(&*host.runner(), backends).map_err(HostError::Other)?;
    Ok(host.snapshot()?.only(FIREWALL_SECTIONS))
}

/// [`kept_snapshot`] per backend and layout ([`set_up_kept_in`]).
pub fn kept_snapshot_in(
    host: &dyn TestHost,
    kept: &[(Backend, Layout)],
) -> Result<Snapshot, HostError> {
    set_up_kept_in(&*host.runner(), kept).map_err(HostError::Other)?;
    Ok(host.snapshot()?.only(FIREWALL_SECTIONS))
}
