//! Simulated `nft`: tables, chains, rules, handles, echo and list output as the real tool prints them.
