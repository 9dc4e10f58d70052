//! The `batched` firewall layout (opt-in: `firewall_layout = "batched"` in
//! `network.conf`; the default `libvirt` layout is libvirt's streams,
//! byte-exact).
//!
//! Why: with libvirt's layout every rule is one `nft -ae` / `iptables -w`
//! process, and each `nft` re-reads the whole ruleset, so starting network
//! #N costs O(N) and N starts O(N²); every network's rules also sit in the
//! same few chains, so a packet walks past every other network's rules.
//! The batched layout keeps libvirt's *rules* (the very plan libvirt's
//! generators build, see [`super::network_rules`]) and changes where they
//! live and how they are sent:
//!
//! **nftables.** Own tables `ip virtnet_batched` and `ip6 virtnet_batched`
//! (no collision with libvirt's `libvirt_network`, firewalld's `inet
//! firewalld`, Docker's iptables-nft tables `ip filter`/`ip nat` or its
//! `docker-*` tables). Shared part, set up once per process (like libvirt's
//! private chains, and kept like them): base chains `forward` (filter hook
//! forward, priority 0) and `postrouting` (nat hook postrouting, priority
//! 100), and three verdict maps: `fwd_in` (`oifname` → the network's `in`
//! chain), `fwd_out` (`iifname` → its `out` chain) and `nat_src` (interval
//! map, `ip saddr`/`ip6 saddr` → its `nat` chain). The base chains hold
//! exactly `oifname vmap @fwd_in`, `iifname vmap @fwd_out` and `saddr vmap
//! @nat_src`: one hash / interval lookup per packet whatever the number of
//! networks. Per network (bridge `BR`), chains `net_BR_in` (libvirt's
//! `guest_cross` rules, then its `guest_input` rules), `net_BR_out`
//! (`guest_output`) and `net_BR_nat` (`guest_nat`), each holding libvirt's
//! rules in the order libvirt's inserts leave them (the network's own
//! bridge matched by name, `iifname BR` for libvirt's `iif BR`: nft
//! resolves `iif` by dumping every link, O(N) per process, see
//! `own_bridge_by_name`), and the map elements
//! that reach them. The whole per-network part is ONE `nft -f -` script on
//! stdin (both families): one transaction, atomic in the kernel. The setup
//! is a separate transaction because nft 1.0.6 refuses (ENOENT) an element
//! of an interval map created in the same transaction that jumps to a chain
//! also created in it.
//!
//! Why this is the same for guests as libvirt's layout: every rule of
//! `guest_input` matches `oif BR`, every rule of `guest_output` `iif BR`,
//! every `guest_cross` rule both, and every `guest_nat` rule `saddr NET` of
//! its network (checked when the plan is transformed: a rule without its
//! key is an error). So for a packet only the chains of its own output /
//! input bridge (or source network) can match, which the maps select; the
//! cross rule comes first in the `in` chain as `guest_cross` comes before
//! `guest_input` in libvirt's `forward` chain; every `in`/`out` chain ends
//! with libvirt's reject, so no verdict falls through to another network.
//!
//! **iptables.** libvirt's private chains (`LIBVIRT_INP`, `LIBVIRT_FWI`, …,
//! set up as libvirt does) stay the base; per network and libvirt chain,
//! a chain `VIRTNET_BR_XXX` (`XXX` = `INP`, `OUT`, `FWI`, `FWO`, `FWX`,
//! `PRT`; at most 27 characters, within iptables' 28) holds libvirt's rules
//! and ONE jump per network reaches it (`--in-interface BR`,
//! `--out-interface BR`, both for `FWX`, `--source NET` per address for the
//! nat `PRT`). The per-network part is one `iptables-restore --noflush`
//! (and one `ip6tables-restore --noflush`) per family. iptables-nft-restore
//! commits each `*table` section on its own (checked against iptables
//! 1.8.9), so a failure is followed by the removal plan (errors ignored),
//! which removes whatever sections did commit. libvirt's checksum rule
//! (its IGNORE_ERRORS group: the `CHECKSUM` target may be missing) stays
//! one `iptables` command, as in libvirt.
//!
//! The tc checksum filter of the nftables backend (and libvirt's qdisc
//! probe before it) are run as libvirt runs them, before the script, when
//! the bridge already exists (reload, switch, update, repair). A start,
//! which has just created the bridge ([`BridgeState::Fresh`]), skips the
//! probe (a new bridge has no root qdisc) and adds the root qdisc and the
//! filter with one `tc -batch -`: each tc process dumps every link of the
//! host to resolve the device name, so this is one such dump instead of
//! three. The removal plan is the same.
//!
//! **Removal plan.** The status file keeps a `fwRemoval` plan in libvirt's
//! format: `nft delete element … { KEY }` then `nft delete chain …` (a chain
//! can be deleted with its rules once no element refers to it), or
//! `iptables -w --table T --delete LIBVIRT_X KEY --jump C`, `--flush C`,
//! `--delete-chain C`. Destroy, daemon restart (remove + add with the
//! configured backend and layout — only for a network found drifted or
//! saved with another layout or backend: an intact one is kept, see
//! `Driver::reconcile`), a backend or layout switch and libvirt
//! 11.3.0 (which replays the saved plan as it finds it) therefore remove
//! exactly what the start added. The plan is derived from the script
//! itself ([`batch_removal`]), and the driver's journal derives the undo
//! of a batch it is about to run with the same function, so a crash while
//! the batch runs is undone too.
//!
//! The driver itself removes a saved batched plan as batches too
//! ([`remove_plan_batched`]: one `nft -f -`, or one restore per family,
//! falling back to one command at a time when the batch fails), so destroy
//! and a daemon restart cost O(1) processes per network; libvirt's plans
//! are never run that way. Having no rule handle, a batched nftables plan
//! is checked for drift against the script the definition gives
//! ([`nft_expected_script`], compared in `driver::check`); a batched
//! iptables plan against the restore inputs the definition gives
//! ([`ipt_expected`], compared with one `iptables-save` per family through
//! [`super::ipt_save`]).
//!
//! Restrictions: batched starts of one driver are serialised (the shared
//! part's state is held while a start runs; each start is a single
//! transaction anyway). The bridge name must be a plain word (letters, digits,
//! `_`, `-`, `.`; not starting with a digit or `-`), as it becomes part of
//! chain names; any other name is refused at start with a clear error.

use std::collections::VecDeque;

use super::{bridge_of, has_firewall_rules, iptables, nftables, tc_qdisc_setup, RulesError};
use crate::firewall::{check_nft_argument, full_argv, Backend, Firewall, Layer, TransactionFlags};
use crate::netxml::NetworkDef;
use virtnet_runner::{Cmd, Runner};

/// How a network's firewall rules are laid out on the host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// libvirt 11.3.0's commands and chains, byte-exact (the default).
    #[default]
    Libvirt,
    /// One transaction per network and backend, per-network chains reached
    /// through verdict maps / one jump (this module).
    Batched,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::Libvirt, Layout::Batched];

    /// The value in `network.conf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Libvirt => "libvirt",
            Layout::Batched => "batched",
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not `libvirt` or `batched`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown firewall layout '{0}' (expected libvirt or batched)")]
pub struct UnknownLayout(pub String);

impl std::str::FromStr for Layout {
    type Err = UnknownLayout;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLayout(s.to_string()))
    }
}

/// The nft table of the batched layout (families `ip` and `ip6`).
pub const NFT_TABLE: &str = "virtnet_batched";
/// Its base chains.
pub const NFT_FORWARD: &str = "forward";
pub const NFT_POSTROUTING: &str = "postrouting";
/// Its verdict maps.
pub const MAP_IN: &str = "fwd_in";
pub const MAP_OUT: &str = "fwd_out";
pub const MAP_NAT: &str = "nat_src";
/// Prefix of the per-network nft chains (`net_BR_in|out|nat`).
pub const NFT_CHAIN_PREFIX: &str = "net_";
/// Prefix of the per-network iptables chains (`VIRTNET_BR_XXX`).
pub const IPT_CHAIN_PREFIX: &str = "VIRTNET_";

/// Process-wide state of the shared nft part (like libvirt's
/// `chainInitDone`): set up once, the per-family errors saved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchedSetup {
    nft_done: bool,
    err_v4: Option<RulesError>,
    err_v6: Option<RulesError>,
}

impl BatchedSetup {
    pub fn new() -> Self {
        Self::default()
    }

    /// A process that already set the shared part up (what the golden
    /// streams assume, as [`super::ChainInitState::already_done`]).
    pub fn already_done() -> Self {
        BatchedSetup {
            nft_done: true,
            ..Self::default()
        }
    }

    /// Sets up the shared nft part (see the module docs) unless done: one
    /// `nft -f -` per family, idempotent (`add` of what exists is no
    /// error; the base chains are flushed and refilled within the same
    /// transaction). Errors are saved per family; only a crash is returned.
    pub fn setup_nft<R: Runner + ?Sized>(&mut self, runner: &R) -> Result<(), RulesError> {
        if self.nft_done {
            return Ok(());
        }
        self.err_v4 = None;
        self.err_v6 = None;
        for layer in [Layer::Ipv4, Layer::Ipv6] {
            let script = nft_setup_script(layer);
            match run_batch(runner, &nft_batch_cmd(&script)) {
                Ok(()) => {}
                Err(e) if e.is_crash() => return Err(e),
                Err(e) => match layer {
                    Layer::Ipv4 => self.err_v4 = Some(e),
                    _ => self.err_v6 = Some(e),
                },
            }
        }
        self.nft_done = true;
        Ok(())
    }
}

/// The shared nft part of one family (see the module docs).
pub fn nft_setup_script(layer: Layer) -> String {
    let fam = layer.nft_family();
    let addr = if layer == Layer::Ipv4 {
        "ipv4_addr"
    } else {
        "ipv6_addr"
    };
    let t = NFT_TABLE;
    format!(
        "add table {fam} {t}\n\
         add chain {fam} {t} {NFT_FORWARD} {{ type filter hook forward priority 0; policy accept; }}\n\
         add chain {fam} {t} {NFT_POSTROUTING} {{ type nat hook postrouting priority 100; policy accept; }}\n\
         add map {fam} {t} {MAP_IN} {{ type ifname : verdict; }}\n\
         add map {fam} {t} {MAP_OUT} {{ type ifname : verdict; }}\n\
         add map {fam} {t} {MAP_NAT} {{ type {addr} : verdict; flags interval; }}\n\
         flush chain {fam} {t} {NFT_FORWARD}\n\
         add rule {fam} {t} {NFT_FORWARD} oifname vmap @{MAP_IN}\n\
         add rule {fam} {t} {NFT_FORWARD} iifname vmap @{MAP_OUT}\n\
         flush chain {fam} {t} {NFT_POSTROUTING}\n\
         add rule {fam} {t} {NFT_POSTROUTING} {fam} saddr vmap @{MAP_NAT}\n"
    )
}

/// `nft -f -` with `script` on stdin.
pub fn nft_batch_cmd(script: &str) -> Cmd {
    Cmd::new(["nft", "-f", "-"]).with_stdin(script)
}

/// `iptables-restore --noflush` (IPv4) or `ip6tables-restore --noflush`
/// with `input` on stdin.
pub fn restore_cmd(layer: Layer, input: &str) -> Cmd {
    let prog = if layer == Layer::Ipv6 {
        "ip6tables-restore"
    } else {
        "iptables-restore"
    };
    Cmd::new([prog, "--noflush"]).with_stdin(input)
}

/// Runs a batch; a non-zero exit is libvirt's "Child process" error.
/// Through [`Runner::run_direct`]: the real runner sends an `nft -f -`
/// script of this layout to the kernel itself (`virtnet_runner::nft`:
/// `nft` would first load every chain of the host, O(networks)); every
/// other runner, and any other batch, sees the command as ever.
fn run_batch<R: Runner + ?Sized>(runner: &R, cmd: &Cmd) -> Result<(), RulesError> {
    let out = runner.run_direct(cmd).map_err(RulesError::Run)?;
    if out.success() {
        return Ok(());
    }
    Err(RulesError::ChildFailed {
        command: cmd.argv.join(" "),
        status: out.status,
        stderr: out.stderr.trim_end().to_string(),
    })
}

/// The root qdisc libvirt's checksum filter hangs on (`tc` arguments).
fn root_qdisc_args(br: &str) -> [&str; 10] {
    [
        "qdisc", "add", "dev", br, "root", "handle", "1:", "htb", "default", "2",
    ]
}

/// The `tc -batch -` of a fresh bridge: the root qdisc, then the tc
/// commands of `tc` (libvirt's checksum filter), one line each. A word tc
/// would not read back as that one word (blank, quote, `#`, `\`, empty)
/// is refused before anything runs.
fn tc_batch_cmd(br: &str, tc: &Firewall) -> Result<Cmd, RulesError> {
    let mut input = String::new();
    let lines = std::iter::once(root_qdisc_args(br).map(str::to_string).to_vec())
        .chain(tc.action_cmds().map(|c| c.args().to_vec()));
    for words in lines {
        for (k, w) in words.iter().enumerate() {
            let plain =
                !w.is_empty() && !w.contains(|c: char| c.is_whitespace() || "\"'#\\".contains(c));
            if !plain {
                return Err(invalid(format!(
                    "tc argument {w:?} cannot be written to a tc batch"
                )));
            }
            if k > 0 {
                input.push(' ');
            }
            input.push_str(w);
        }
        input.push('\n');
    }
    Ok(Cmd::new(["tc", "-batch", "-"]).with_stdin(input))
}

/// Runs [`tc_batch_cmd`]. On failure the filter's undo (the removal of
/// `tc`, errors ignored) runs, as libvirt's rollback of the failed filter
/// does, and the error names the failing line (from tc's `Command failed
/// -:N`) and quotes tc's stderr.
fn run_tc_batch<R: Runner + ?Sized>(runner: &R, br: &str, tc: &Firewall) -> Result<(), RulesError> {
    let cmd = tc_batch_cmd(br, tc)?;
    // The real runner sends these lines itself (`virtnet_runner::tc`).
    let out = runner.run_direct(&cmd).map_err(RulesError::Run)?;
    if out.success() {
        return Ok(());
    }
    run_removal(runner, tc.new_from_rollback()?)?;
    let input = cmd.stdin.as_deref().unwrap_or("");
    let failed = virtnet_runner::tc::failed_batch_line(&out.stderr)
        .and_then(|n| Some((n, input.lines().nth(n.checked_sub(1)?)?)));
    let mut command = cmd.argv.join(" ");
    if let Some((n, line)) = failed {
        command.push_str(&format!(", line {n}: tc {line}"));
    }
    Err(RulesError::ChildFailed {
        command,
        status: out.status,
        stderr: out.stderr.trim_end().to_string(),
    })
}

/// The bridge name as part of chain names: a plain word.
fn check_bridge(br: &str) -> Result<(), RulesError> {
    let ok = !br.is_empty()
        && br.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && br
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "bridge name '{br}' cannot be used with firewall_layout = \"batched\" \
             (letters, digits, '_', '-', '.' only, starting with a letter or '_')"
        )))
    }
}

fn invalid(message: String) -> RulesError {
    RulesError::ChildFailed {
        command: "firewall_layout batched".to_string(),
        status: 1,
        stderr: message,
    }
}

/// Whether `rest` holds `key` as consecutive words.
fn has_words(rest: &[String], key: &[&str]) -> bool {
    rest.windows(key.len())
        .any(|w| w.iter().zip(key).all(|(a, b)| a == b))
}

/// The word after `word` in `rest`.
fn after<'a>(rest: &'a [String], word: &str) -> Option<&'a str> {
    rest.iter()
        .position(|w| w == word)
        .and_then(|i| rest.get(i + 1))
        .map(String::as_str)
}

/// Chains of one family, in libvirt's final order.
#[derive(Default)]
struct NftFamily {
    cross: VecDeque<Vec<String>>,
    input: VecDeque<Vec<String>>,
    output: VecDeque<Vec<String>>,
    nat: VecDeque<Vec<String>>,
    nat_keys: Vec<String>,
}

/// `iif BR` / `oif BR` of the network's own bridge as `iifname BR` /
/// `oifname BR`; every other word as it is (an `iif`/`oif` of another
/// device, e.g. a forward `dev`, keeps libvirt's index match and its
/// "Interface does not exist" failure when the device is missing).
///
/// Why (measured, nft 1.0.6): nft resolves an `iif NAME` match by dumping
/// every link of the namespace (one RTM_GETLINK dump, ~1.9 kB per link)
/// before it sends anything, so with N bridges each start, reconcile and
/// removal script of the batched layout received O(N) bytes: 2.2 MB per
/// `nft -f` at 1,000 networks against 0.32 MB with names (strace of
/// recvmsg). A name match needs no lookup. Same packets match: the bridge
/// is created before the firewall is added and deleted after it is removed
/// (and never renamed while the network runs), so during the rules'
/// lifetime the name denotes exactly the interface whose index `iif`
/// would have stored; the chains are moreover reached only through the
/// `iifname`/`oifname` verdict maps keyed by the same name.
fn own_bridge_by_name(rest: Vec<String>, br: &str) -> Vec<String> {
    let mut out = rest;
    for i in 0..out.len().saturating_sub(1) {
        if out[i + 1] == br && (out[i] == "iif" || out[i] == "oif") {
            out[i].push_str("name");
        }
    }
    out
}

/// The per-network nft script for libvirt's nftables plan `fw` (its nft
/// commands; tc commands are left to the caller).
pub fn nft_network_script(fw: &Firewall, br: &str) -> Result<String, RulesError> {
    check_bridge(br)?;
    let mut fams: [(Layer, NftFamily); 2] = [
        (Layer::Ipv4, NftFamily::default()),
        (Layer::Ipv6, NftFamily::default()),
    ];
    for cmd in fw.action_cmds() {
        let layer = cmd.layer();
        if layer == Layer::Tc {
            continue;
        }
        let a = cmd.args();
        for w in a {
            check_nft_argument(w).map_err(|why| invalid(format!("nft argument '{w}' {why}")))?;
        }
        let ok = a.len() > 5
            && a[0] == "insert"
            && a[1] == "rule"
            && a[2] == layer.nft_family()
            && a[3] == nftables::TABLE;
        if !ok {
            return Err(invalid(format!("unexpected nft command: {}", a.join(" "))));
        }
        let fam = layer.nft_family();
        let rest = a[5..].to_vec();
        let f = &mut fams
            .iter_mut()
            .find(|(l, _)| *l == layer)
            .expect("ip or ip6")
            .1;
        let (list, key_ok) = match a[4].as_str() {
            nftables::CHAIN_FWD_X => (&mut f.cross, has_words(&rest, &["iif", br, "oif", br])),
            nftables::CHAIN_FWD_IN => (&mut f.input, has_words(&rest, &["oif", br])),
            nftables::CHAIN_FWD_OUT => (&mut f.output, has_words(&rest, &["iif", br])),
            nftables::CHAIN_NAT => {
                let net = after(&rest, "saddr").map(str::to_string);
                let ok = net.is_some() && has_words(&rest, &[fam, "saddr"]);
                if let Some(n) = net {
                    if !f.nat_keys.contains(&n) {
                        f.nat_keys.push(n);
                    }
                }
                (&mut f.nat, ok)
            }
            other => return Err(invalid(format!("unexpected nft chain {other}"))),
        };
        if !key_ok {
            return Err(invalid(format!(
                "rule without its network's key: {}",
                a.join(" ")
            )));
        }
        // libvirt inserts each rule at the top of its chain.
        list.push_front(own_bridge_by_name(rest, br));
    }
    let t = NFT_TABLE;
    let mut s = String::new();
    for (layer, f) in &fams {
        let fam = layer.nft_family();
        let chains: [(&str, Vec<&Vec<String>>); 3] = [
            ("in", f.cross.iter().chain(f.input.iter()).collect()),
            ("out", f.output.iter().collect()),
            ("nat", f.nat.iter().collect()),
        ];
        for (suffix, rules) in &chains {
            if rules.is_empty() {
                continue;
            }
            let c = format!("{NFT_CHAIN_PREFIX}{br}_{suffix}");
            s.push_str(&format!(
                "add chain {fam} {t} {c}\nflush chain {fam} {t} {c}\n"
            ));
            for r in rules {
                s.push_str(&format!("add rule {fam} {t} {c} {}\n", r.join(" ")));
            }
        }
        for (suffix, rules) in &chains {
            if rules.is_empty() {
                continue;
            }
            let c = format!("{NFT_CHAIN_PREFIX}{br}_{suffix}");
            match *suffix {
                "in" => s.push_str(&format!(
                    "add element {fam} {t} {MAP_IN} {{ {br} : jump {c} }}\n"
                )),
                "out" => s.push_str(&format!(
                    "add element {fam} {t} {MAP_OUT} {{ {br} : jump {c} }}\n"
                )),
                _ => {
                    for k in &f.nat_keys {
                        s.push_str(&format!(
                            "add element {fam} {t} {MAP_NAT} {{ {k} : jump {c} }}\n"
                        ));
                    }
                }
            }
        }
    }
    Ok(s)
}

/// The per-network nft script the definition gives (what a start of
/// `def` with nftables sends, tc aside): libvirt's plan regenerated purely
/// from `def`, laid out by [`nft_network_script`]. What the drift check
/// compares the host with. `def` may be completed as at a start (default
/// NAT port range).
pub fn nft_expected_script(def: &mut NetworkDef) -> Result<String, RulesError> {
    let br = bridge_of(def)?;
    let plan = nftables::network_rules(def)?;
    nft_network_script(&plan, &br)
}

/// Whether a saved removal plan is the batched layout's with nftables
/// (its commands name the table [`NFT_TABLE`]).
pub fn is_batched_nft_plan(plan: &Firewall) -> bool {
    plan.backend() == Backend::Nftables
        && plan
            .action_cmds()
            .any(|c| is_batched_removal(c.layer(), c.args()))
}

/// Whether a saved removal plan is the batched layout's with iptables
/// (some command names one of its `VIRTNET_*` chains).
pub fn is_batched_ipt_plan(plan: &Firewall) -> bool {
    plan.backend() == Backend::Iptables
        && plan
            .action_cmds()
            .any(|c| is_batched_removal(c.layer(), c.args()))
}

/// What a start of `def` with iptables in the batched layout sends, given
/// purely by the definition: the per-family `iptables-restore --noflush`
/// inputs ([`ipt_network_inputs`]) and libvirt's IGNORE_ERRORS commands
/// run one by one (the checksum rule: layer, arguments without the
/// binary). What the drift check compares the host with. `def` may be
/// completed as at a start (default NAT port range).
pub struct IptExpected {
    pub inputs: [(Layer, String); 2],
    pub ignore_errors: Vec<(Layer, Vec<String>)>,
}

/// See [`IptExpected`].
pub fn ipt_expected(def: &mut NetworkDef) -> Result<IptExpected, RulesError> {
    let br = bridge_of(def)?;
    let plan = iptables::network_rules(def)?;
    let inputs = ipt_network_inputs(&plan, &br)?;
    let ignore_errors = plan
        .groups()
        .iter()
        .filter(|g| g.flags().contains(TransactionFlags::IGNORE_ERRORS))
        .flat_map(|g| g.actions())
        .map(|c| (c.layer(), c.args().to_vec()))
        .collect();
    Ok(IptExpected {
        inputs,
        ignore_errors,
    })
}

/// The per-network iptables chain for libvirt chain `chain`.
fn ipt_chain(br: &str, chain: &str) -> String {
    let short = chain.strip_prefix("LIBVIRT_").unwrap_or(chain);
    format!("{IPT_CHAIN_PREFIX}{br}_{short}")
}

/// Commands without their binary: (layer, arguments).
type LayerCmds = Vec<(Layer, Vec<String>)>;

/// One libvirt chain's part of a network: (libvirt chain, its rules in
/// final order, the jump keys).
type IptChain = (String, VecDeque<Vec<String>>, Vec<Vec<String>>);

/// One `*table` section being built.
struct IptTable {
    name: String,
    chains: Vec<IptChain>,
}

/// The per-network `iptables-restore --noflush` inputs (IPv4, IPv6) for
/// the groups of libvirt's iptables plan `fw` without IGNORE_ERRORS
/// (the caller runs the others as libvirt does). Empty string: nothing for
/// that family.
pub fn ipt_network_inputs(fw: &Firewall, br: &str) -> Result<[(Layer, String); 2], RulesError> {
    check_bridge(br)?;
    let mut fams: [(Layer, Vec<IptTable>); 2] = [(Layer::Ipv4, vec![]), (Layer::Ipv6, vec![])];
    for g in fw.groups() {
        if g.flags().contains(TransactionFlags::IGNORE_ERRORS) {
            continue;
        }
        for cmd in g.actions() {
            let a = cmd.args();
            let layer = cmd.layer();
            if let Some(w) = a.iter().find(|w| {
                w.is_empty() || w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            }) {
                return Err(invalid(format!(
                    "iptables argument '{w}' cannot be restored"
                )));
            }
            let ok = a.len() > 4
                && a[0] == "--table"
                && matches!(a[2].as_str(), "--insert" | "--append")
                && a[3].starts_with("LIBVIRT_")
                && matches!(layer, Layer::Ipv4 | Layer::Ipv6);
            if !ok {
                return Err(invalid(format!(
                    "unexpected iptables command: {}",
                    a.join(" ")
                )));
            }
            let (table, chain) = (a[1].clone(), a[3].clone());
            let rest = a[4..].to_vec();
            let key: Vec<Vec<String>> = match (table.as_str(), chain.as_str()) {
                ("nat", _) => {
                    let net = after(&rest, "--source").ok_or_else(|| {
                        invalid(format!("nat rule without --source: {}", a.join(" ")))
                    })?;
                    vec![vec!["--source".into(), net.to_string()]]
                }
                (_, iptables::CHAIN_FWD_X) => vec![vec![
                    "--in-interface".into(),
                    br.into(),
                    "--out-interface".into(),
                    br.into(),
                ]],
                (_, iptables::CHAIN_INPUT | iptables::CHAIN_FWD_OUT) => {
                    vec![vec!["--in-interface".into(), br.into()]]
                }
                _ => vec![vec!["--out-interface".into(), br.into()]],
            };
            for k in &key {
                let words: Vec<&str> = k.iter().map(String::as_str).collect();
                if !has_words(&rest, &words) {
                    return Err(invalid(format!(
                        "rule without its network's key: {}",
                        a.join(" ")
                    )));
                }
            }
            let tables = &mut fams
                .iter_mut()
                .find(|(l, _)| *l == layer)
                .expect("v4 or v6")
                .1;
            let ti = match tables.iter().position(|t| t.name == table) {
                Some(i) => i,
                None => {
                    tables.push(IptTable {
                        name: table.clone(),
                        chains: vec![],
                    });
                    tables.len() - 1
                }
            };
            let t = &mut tables[ti];
            let ci = match t.chains.iter().position(|c| c.0 == chain) {
                Some(i) => i,
                None => {
                    t.chains.push((chain.clone(), VecDeque::new(), vec![]));
                    t.chains.len() - 1
                }
            };
            let c = &mut t.chains[ci];
            if a[2] == "--insert" {
                c.1.push_front(rest);
            } else {
                c.1.push_back(rest);
            }
            for k in key {
                if !c.2.contains(&k) {
                    c.2.push(k);
                }
            }
        }
    }
    Ok(fams.map(|(layer, tables)| {
        let mut s = String::new();
        for t in &tables {
            s.push_str(&format!("*{}\n", t.name));
            for (chain, _, _) in &t.chains {
                s.push_str(&format!(":{} - [0:0]\n", ipt_chain(br, chain)));
            }
            for (chain, rules, _) in &t.chains {
                let c = ipt_chain(br, chain);
                for r in rules {
                    s.push_str(&format!("--append {c} {}\n", r.join(" ")));
                }
            }
            for (chain, _, keys) in &t.chains {
                let c = ipt_chain(br, chain);
                for k in keys {
                    s.push_str(&format!("--insert {chain} {} --jump {c}\n", k.join(" ")));
                }
            }
            s.push_str("COMMIT\n");
        }
        (layer, s)
    }))
}

/// What removes everything a per-network batch creates, as libvirt-format
/// commands (layer, arguments without the binary), in the order they must
/// run; derived from the batch itself. `program` is the batch's program
/// (`nft`, `iptables-restore`, `ip6tables-restore`, also with a directory),
/// `input` its stdin. The shared part (tables, base chains, maps, libvirt's
/// private chains) is never in it.
pub fn batch_removal(program: &str, input: &str) -> Vec<(Layer, Vec<String>)> {
    let base = program.rsplit('/').next().unwrap_or(program);
    let mut creations: Vec<(Layer, Vec<String>)> = Vec::new();
    let v = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    match base {
        "nft" => {
            for line in input.lines() {
                let w: Vec<&str> = line.split_whitespace().collect();
                let layer = match w.get(2) {
                    Some(&"ip") => Layer::Ipv4,
                    Some(&"ip6") => Layer::Ipv6,
                    _ => continue,
                };
                if w.get(3) != Some(&NFT_TABLE) {
                    continue;
                }
                match (w.first(), w.get(1)) {
                    (Some(&"add"), Some(&"chain"))
                        if w.len() == 5 && w[4].starts_with(NFT_CHAIN_PREFIX) =>
                    {
                        creations.push((layer, v(&["delete", "chain", w[2], w[3], w[4]])));
                    }
                    (Some(&"add"), Some(&"element")) if w.len() >= 8 && w[5] == "{" => {
                        let key = w[6];
                        creations.push((
                            layer,
                            v(&[
                                "delete",
                                "element",
                                w[2],
                                w[3],
                                w[4],
                                &format!("{{ {key} }}"),
                            ]),
                        ));
                    }
                    _ => {}
                }
            }
        }
        "iptables-restore"
        | "ip6tables-restore"
        | "iptables-nft-restore"
        | "ip6tables-nft-restore" => {
            let layer = if base.starts_with("ip6") {
                Layer::Ipv6
            } else {
                Layer::Ipv4
            };
            let mut table = String::new();
            for line in input.lines() {
                if let Some(t) = line.strip_prefix('*') {
                    table = t.trim().to_string();
                } else if let Some(c) = line.strip_prefix(':') {
                    let chain = c.split_whitespace().next().unwrap_or("");
                    if chain.starts_with(IPT_CHAIN_PREFIX) {
                        // Removed in reverse: delete-chain after flush.
                        creations.push((layer, v(&["--table", &table, "--delete-chain", chain])));
                        creations.push((layer, v(&["--table", &table, "--flush", chain])));
                    }
                } else if let Some(rest) = line.strip_prefix("--insert ") {
                    let w: Vec<&str> = rest.split_whitespace().collect();
                    let jumps_ours = w.len() >= 3
                        && w[w.len() - 2] == "--jump"
                        && w[w.len() - 1].starts_with(IPT_CHAIN_PREFIX);
                    if jumps_ours {
                        let mut args = v(&["--table", &table, "--delete"]);
                        args.extend(w.iter().map(|s| s.to_string()));
                        creations.push((layer, args));
                    }
                }
            }
        }
        _ => {}
    }
    creations.reverse();
    creations
}

/// [`batch_removal`] as complete argvs (binary and `-w` as libvirt runs
/// them, see [`full_argv`]): what the driver's journal records as the undo
/// of a batch before it runs. Empty for any other command.
pub fn batch_undo(cmd: &Cmd) -> Vec<Vec<String>> {
    let (Some(program), Some(input)) = (cmd.argv.first(), cmd.stdin.as_deref()) else {
        return Vec::new();
    };
    if program.rsplit('/').next() == Some("tc") {
        return if cmd.argv[1..] == ["-batch", "-"] {
            tc_batch_undo(program, input)
        } else {
            Vec::new()
        };
    }
    let backend = if program.ends_with("nft") {
        Backend::Nftables
    } else {
        Backend::Iptables
    };
    removal_firewall(backend, batch_removal(program, input))
        .map(|fw| {
            fw.action_cmds()
                .map(|c| full_argv(backend, c, false))
                .collect()
        })
        .unwrap_or_default()
}

/// The undo of a `tc -batch -` (see [`tc_batch_cmd`]), last line first:
/// `qdisc del dev D root` for a root qdisc added, `filter del …` (the
/// line with `del` for `add`) for a filter. tc stops at a failing line
/// and keeps the lines before it, so after a failure the undo is run by
/// the caller from its own plan (the journal's `ip link del` of the fresh
/// bridge takes the qdisc along).
fn tc_batch_undo(program: &str, input: &str) -> Vec<Vec<String>> {
    let mut undo = Vec::new();
    for line in input.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let mut inv = vec![program.to_string()];
        match w.as_slice() {
            ["qdisc", "add", "dev", dev, "root", ..] => {
                inv.extend(["qdisc", "del", "dev", dev, "root"].map(str::to_string));
            }
            ["filter", "add", rest @ ..] => {
                inv.extend(["filter", "del"].iter().chain(rest).map(|s| s.to_string()));
            }
            _ => continue,
        }
        undo.push(inv);
    }
    undo.reverse();
    undo
}

/// Whether a saved removal command belongs to the batched layout (names
/// its nft table or one of its iptables chains; libvirt's plans never do).
pub fn is_batched_removal(layer: Layer, args: &[String]) -> bool {
    match layer {
        Layer::Ipv4 | Layer::Ipv6 => {
            args.get(3).is_some_and(|t| t == NFT_TABLE)
                || args.iter().any(|a| a.starts_with(IPT_CHAIN_PREFIX))
        }
        _ => false,
    }
}

/// Runs a saved removal plan of the batched layout the fast way, when it
/// is one (see [`is_batched_removal`]; `Ok(false)`, nothing run,
/// otherwise — libvirt's plans keep their exact stream): its batched-layout
/// commands as one `nft -f -`, or one `iptables-restore --noflush` /
/// `ip6tables-restore --noflush` per family, in the plan's place; the
/// others (tc, libvirt's checksum rule) one by one as libvirt runs them.
/// A batch that fails (something was already gone: deletions in one
/// transaction fail together) is followed by its commands one by one,
/// errors ignored, as libvirt would run the plan. Only a crash is an error.
pub fn remove_plan_batched<R: Runner + ?Sized>(
    plan: &Firewall,
    runner: &R,
) -> Result<bool, RulesError> {
    let cmds: Vec<(Layer, Vec<String>)> = plan
        .action_cmds()
        .map(|c| (c.layer(), c.args().to_vec()))
        .collect();
    if !cmds.iter().any(|(l, a)| is_batched_removal(*l, a)) {
        return Ok(false);
    }
    let backend = plan.backend();
    let one_by_one = |cmds: Vec<(Layer, Vec<String>)>| -> Result<(), RulesError> {
        run_removal(runner, removal_firewall(backend, cmds))
    };
    let mut batch_done = false;
    let mut pending_single = Vec::new();
    for (layer, args) in &cmds {
        if !is_batched_removal(*layer, args) {
            pending_single.push((*layer, args.clone()));
            continue;
        }
        if batch_done {
            continue;
        }
        one_by_one(std::mem::take(&mut pending_single))?;
        batch_done = true;
        let ours: Vec<(Layer, Vec<String>)> = cmds
            .iter()
            .filter(|(l, a)| is_batched_removal(*l, a))
            .cloned()
            .collect();
        let batches: Vec<(Cmd, LayerCmds)> = match backend {
            Backend::Nftables => {
                let script: String = ours.iter().map(|(_, a)| a.join(" ") + "\n").collect();
                vec![(nft_batch_cmd(&script), ours)]
            }
            _ => [Layer::Ipv4, Layer::Ipv6]
                .into_iter()
                .filter_map(|fam| {
                    let mine: Vec<(Layer, Vec<String>)> =
                        ours.iter().filter(|(l, _)| *l == fam).cloned().collect();
                    if mine.is_empty() {
                        return None;
                    }
                    // Sections per table, each keeping the plan's order.
                    let mut tables: Vec<(String, String)> = Vec::new();
                    for (_, a) in &mine {
                        let (Some(t), rest) = (a.get(1), a.get(2..).unwrap_or(&[])) else {
                            continue;
                        };
                        let line = rest.join(" ") + "\n";
                        match tables.iter_mut().find(|(n, _)| n == t) {
                            Some((_, body)) => body.push_str(&line),
                            None => tables.push((t.clone(), line)),
                        }
                    }
                    let input: String = tables
                        .iter()
                        .map(|(t, body)| format!("*{t}\n{body}COMMIT\n"))
                        .collect();
                    Some((restore_cmd(fam, &input), mine))
                })
                .collect(),
        };
        for (cmd, its_cmds) in batches {
            match run_batch(runner, &cmd) {
                Ok(()) => {}
                Err(e) if e.is_crash() => return Err(e),
                Err(_) => one_by_one(its_cmds)?,
            }
        }
    }
    one_by_one(pending_single)?;
    Ok(true)
}

/// `runner`, with this layout's `tc` commands through
/// [`Runner::run_direct`]: the real runner sends the checksum filter and
/// its qdisc itself (`virtnet_runner::tc`; a `tc` process first dumps every
/// link of the host). libvirt's layout keeps running `tc` as libvirt does.
struct TcDirect<'a, R: ?Sized>(&'a R);

impl<R: Runner + ?Sized> Runner for TcDirect<'_, R> {
    fn run(&self, cmd: &Cmd) -> Result<virtnet_runner::Output, virtnet_runner::RunError> {
        if cmd.program() == "tc" {
            self.0.run_direct(cmd)
        } else {
            self.0.run(cmd)
        }
    }
    fn run_direct(&self, cmd: &Cmd) -> Result<virtnet_runner::Output, virtnet_runner::RunError> {
        self.0.run_direct(cmd)
    }
    fn has_program(&self, name: &str) -> bool {
        self.0.has_program(name)
    }
    fn is_zombie(&self, pid: &str) -> bool {
        self.0.is_zombie(pid)
    }
}

/// A one-group IGNORE_ERRORS plan of `cmds` (`None` if empty).
fn removal_firewall(backend: Backend, cmds: Vec<(Layer, Vec<String>)>) -> Option<Firewall> {
    if cmds.is_empty() {
        return None;
    }
    let mut fw = Firewall::new(backend);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    for (layer, args) in cmds {
        fw.add_cmd(layer, args);
    }
    Some(fw)
}

/// Appends the groups of `more` to `into` (the removal plans of several
/// steps, in the order they must run).
fn append_groups(into: &mut Option<Firewall>, backend: Backend, more: Option<Firewall>) {
    let Some(more) = more else { return };
    let fw = into.get_or_insert_with(|| Firewall::new(backend));
    for g in more.groups() {
        fw.start_transaction(g.flags());
        for c in g.actions() {
            fw.add_cmd(c.layer(), c.args().iter().cloned());
        }
    }
}

/// Runs a removal plan, ignoring its errors (a crash is returned).
fn run_removal<R: Runner + ?Sized>(runner: &R, plan: Option<Firewall>) -> Result<(), RulesError> {
    if let Some(mut p) = plan {
        if let Err(e) = p.apply(&TcDirect(runner)) {
            if e.is_crash() {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Whether the network's bridge was created by the very operation that
/// adds its firewall (what the nftables backend's tc commands depend on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeState {
    /// Created by this start (`ip link add` just before): it has no root
    /// qdisc, so libvirt's probe (`tc qdisc show dev BR handle 1:`) is
    /// skipped and the root qdisc and the checksum filter are added by ONE
    /// `tc -batch -` (see [`add_network_firewall`]).
    Fresh,
    /// Already there (daemon restart or reload, backend or layout switch,
    /// net-update, repair): libvirt's probe, then one `tc` per command.
    Existing,
}

/// [`super::add_network_firewall`] in the batched layout: the same checks
/// (forward mode, zone, private chains for iptables, saved setup errors),
/// libvirt's plan built as libvirt builds it (the nftables tc probe
/// included), then laid out and applied as described in the module docs.
/// Returns the removal plan (libvirt's format). On failure everything the
/// start added is removed before the error is returned.
///
/// With nftables on a [`BridgeState::Fresh`] bridge the tc part is one
/// process: `tc -batch -` with `qdisc add dev BR root handle 1: htb default
/// 2` and libvirt's checksum filter (`filter add …`) on stdin (each tc
/// dumps every link of the host to resolve the device name, ~10 ms at
/// 1,000 links). It runs after the rules are built (no probe to run
/// first), so a generation error runs nothing. A failed batch (tc stops at
/// the failing line; the qdisc may be there) is followed by the filter's
/// undo, as libvirt's rollback does; the qdisc goes with the bridge the
/// start's undo deletes. The removal plan is the same either way.
pub fn add_network_firewall<R: Runner + ?Sized>(
    def: &mut NetworkDef,
    backend: Backend,
    runner: &R,
    chains: &mut super::ChainInitState,
    setup: &mut BatchedSetup,
    bridge: BridgeState,
) -> Result<Option<Firewall>, RulesError> {
    let mode = def.forward_mode();
    if mode.is_some_and(|m| !m.is_virtual()) {
        return Ok(None);
    }
    if let Some(zone) = def.bridge.zone.as_ref() {
        return Err(RulesError::ZoneWithoutFirewalld {
            zone: zone.clone(),
            network: def.name.clone(),
        });
    }
    if !has_firewall_rules(def) {
        return Ok(None);
    }
    let (err_v4, err_v6) = match backend {
        Backend::None => return Err(RulesError::NoBackend),
        Backend::Iptables => {
            chains.setup(backend, runner, false)?;
            let (a, b) = chains.errors();
            (a.cloned(), b.cloned())
        }
        Backend::Nftables => {
            setup.setup_nft(runner)?;
            (setup.err_v4.clone(), setup.err_v6.clone())
        }
    };
    if let Some(e) = err_v4 {
        let uses_v4 =
            def.ipv4_ips().next().is_some() || def.routes.iter().any(|r| r.address.is_ipv4());
        if uses_v4 {
            return Err(e);
        }
    }
    if let Some(e) = err_v6 {
        let uses_v6 = def.ipv6_ips().next().is_some()
            || def.routes.iter().any(|r| r.address.is_ipv6())
            || def.ipv6;
        if uses_v6 {
            return Err(e);
        }
    }
    let br = bridge_of(def)?;
    match backend {
        Backend::Nftables => {
            if bridge == BridgeState::Existing {
                tc_qdisc_setup(&br, runner)?;
            }
            let plan = nftables::network_rules(def)?;
            let script = nft_network_script(&plan, &br)?;
            // libvirt's tc commands (the checksum filter), with their undo.
            let mut tc = Firewall::new(Backend::Nftables);
            tc.start_transaction(TransactionFlags::AUTO_ROLLBACK);
            for g in plan.groups() {
                for c in g.actions().iter().filter(|c| c.layer() == Layer::Tc) {
                    tc.add_cmd(Layer::Tc, c.args().iter().cloned());
                }
                for c in g.rollbacks().iter().filter(|c| c.layer() == Layer::Tc) {
                    tc.add_rollback_cmd(Layer::Tc, c.args().iter().cloned());
                }
            }
            match bridge {
                BridgeState::Existing => tc.apply(&TcDirect(runner))?,
                BridgeState::Fresh => run_tc_batch(runner, &br, &tc)?,
            }
            let tc_removal = tc.new_from_rollback()?;
            let cmd = nft_batch_cmd(&script);
            let batch = removal_firewall(Backend::Nftables, batch_removal("nft", &script));
            let mut removal = None;
            append_groups(&mut removal, Backend::Nftables, batch);
            append_groups(&mut removal, Backend::Nftables, tc_removal);
            if let Err(e) = run_batch(runner, &cmd) {
                if e.is_crash() {
                    return Err(e);
                }
                // Atomic: nothing of the script is there; undo the rest.
                run_removal(runner, removal)?;
                return Err(e);
            }
            Ok(removal)
        }
        _ => {
            let plan = iptables::network_rules(def)?;
            let inputs = ipt_network_inputs(&plan, &br)?;
            let mut removal: Option<Firewall> = None;
            let mut done: Vec<Option<Firewall>> = Vec::new();
            for (layer, input) in &inputs {
                if input.is_empty() {
                    continue;
                }
                let cmd = restore_cmd(*layer, input);
                let this = removal_firewall(Backend::Iptables, batch_removal(&cmd.argv[0], input));
                if let Err(e) = run_batch(runner, &cmd) {
                    if e.is_crash() {
                        return Err(e);
                    }
                    // Sections commit one by one: remove what did, and
                    // what the batches before this one added.
                    run_removal(runner, this)?;
                    for d in done.into_iter().rev() {
                        run_removal(runner, d)?;
                    }
                    return Err(e);
                }
                done.push(this);
            }
            // libvirt's IGNORE_ERRORS groups (the checksum rule), as libvirt
            // runs them.
            let mut rest = Firewall::new(Backend::Iptables);
            for g in plan.groups() {
                if !g.flags().contains(TransactionFlags::IGNORE_ERRORS) {
                    continue;
                }
                rest.start_transaction(g.flags());
                for c in g.actions() {
                    rest.add_cmd(c.layer(), c.args().iter().cloned());
                }
            }
            let rest_removal = if rest.is_empty() {
                None
            } else {
                match rest.apply(runner) {
                    Ok(()) => rest.new_from_rollback()?,
                    Err(e) if e.is_crash() => return Err(e.into()),
                    Err(_) => rest.new_from_rollback().ok().flatten(),
                }
            };
            append_groups(&mut removal, Backend::Iptables, rest_removal);
            for d in done.into_iter().rev() {
                append_groups(&mut removal, Backend::Iptables, d);
            }
            Ok(removal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal's undo of the start's tc batch: the filter's deletion,
    /// then the root qdisc's (last line first); other tc commands have none.
    #[test]
    fn a_tc_batch_is_undone_line_by_line_in_reverse() {
        let filter =
            "prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp";
        let cmd = Cmd::new(["tc", "-batch", "-"]).with_stdin(format!(
            "qdisc add dev virbr0 root handle 1: htb default 2\nfilter add dev virbr0 {filter}\n"
        ));
        let mut del = words("tc filter del dev virbr0");
        del.extend(words(filter));
        assert_eq!(
            batch_undo(&cmd),
            vec![del, words("tc qdisc del dev virbr0 root")]
        );
        let show = Cmd::new(["tc", "-batch", "-"]).with_stdin("qdisc show dev virbr0\n");
        assert!(batch_undo(&show).is_empty());
        let other = Cmd::new(["tc", "-force", "-batch", "-"]).with_stdin("qdisc add dev x root\n");
        assert!(batch_undo(&other).is_empty());
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    /// The own bridge is matched by name (no link dump in nft); any other
    /// device keeps libvirt's index match, and nothing else changes.
    #[test]
    fn only_the_own_bridge_is_matched_by_name() {
        let r = own_bridge_by_name(words("iif virbr0 oif virbr0 counter accept"), "virbr0");
        assert_eq!(r, words("iifname virbr0 oifname virbr0 counter accept"));
        let r = own_bridge_by_name(
            words("ip saddr 10.0.0.0/24 iif virbr0 oif eth0 counter accept"),
            "virbr0",
        );
        assert_eq!(
            r,
            words("ip saddr 10.0.0.0/24 iifname virbr0 oif eth0 counter accept")
        );
        // A bridge whose name is a prefix of another device's.
        let r = own_bridge_by_name(words("iif virbr01 oif virbr0 counter reject"), "virbr0");
        assert_eq!(r, words("iif virbr01 oifname virbr0 counter reject"));
        // The word after the bridge is never taken for a key.
        let r = own_bridge_by_name(words("oif"), "virbr0");
        assert_eq!(r, words("oif"));
    }

    /// A whole NAT network's script: no `iif`/`oif` of its bridge is left
    /// (each would make nft dump every link of the host).
    #[test]
    fn a_nat_script_has_no_index_match_of_its_bridge() {
        let mut def = crate::netxml::parse(
            "<network><name>n</name><forward mode='nat'/><bridge name='vb1'/>\
             <ip address='10.9.9.1' netmask='255.255.255.0'/></network>",
        )
        .expect("valid");
        let plan = nftables::network_rules(&mut def).expect("rules");
        let script = nft_network_script(&plan, "vb1").expect("script");
        assert!(script.contains("iifname vb1"), "{script}");
        assert!(script.contains("oifname vb1"), "{script}");
        for w in [" iif vb1", " oif vb1"] {
            assert!(!script.contains(w), "{w} in {script}");
        }
    }
}
