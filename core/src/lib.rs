//! virtnet-core: a libvirt-compatible virtual network and firewall driver core.
//!
//! See ARCHITECTURE.md at the repository root for the bird's-eye view, the
//! code map and the invariants.

pub mod dnsmasq;
pub mod driver;
pub mod firewall;
pub mod netxml;
pub mod rules;
pub mod store;
