//! Pure rule generators (iptables, nftables, private-chain setup).
