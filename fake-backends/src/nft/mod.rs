//! Simulated `nft`: tables, chains, rules, handles, echo and list output as the
//! real tool prints them.
//!
//! Interface contract (used by the host in `lib.rs`): `NftState::exec` takes the
//! arguments after `nft` and the standard input (for `-f -`), changes the state
//! as the kernel would, and returns what the real tool would print and exit with.

use virtnet_core::runner::Output;

/// The nftables ruleset of one simulated network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NftState {}

impl NftState {
    pub fn new() -> Self {
        NftState::default()
    }

    /// Run `nft ARGS...` (argv without the leading "nft"); `stdin` is the input
    /// of `nft -f -`.
    pub fn exec(&mut self, args: &[String], stdin: Option<&str>) -> Output {
        let _ = (args, stdin);
        Output::failed(1, "Error: nft is not simulated yet\n")
    }

    /// What `nft list ruleset` prints.
    pub fn list_ruleset(&self) -> String {
        String::new()
    }
}
