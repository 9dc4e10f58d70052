//! virtnet-fake: a simulated host (nft, iptables/ip6tables, ip, tc, sysctl,
//! dnsmasq) that implements [`virtnet_core::runner::Runner`].

pub mod nft;
