//! Drift: does the host still have what each active network's status says
//! it should have? (`virtnet check [NAME] [--repair]`, virtnetd
//! `--check-interval`; beyond libvirt, which never looks.)
//!
//! What is compared, per active network with firewall rules, using only
//! read-only host queries:
//!
//! * iptables plans of libvirt's layout: every `--delete` command of the saved removal plan
//!   names one rule the start added; it is turned into `--check` (`-C`),
//!   so iptables itself says whether that exact rule is there. A rule that
//!   was changed is reported missing (its expected form is gone).
//! * nftables plans: every `delete rule FAMILY TABLE CHAIN handle N` of the
//!   saved plan must find handle N in that chain (`nft -a list table`). The
//!   rule found there is compared with the rule the definition gives (the
//!   plan regenerated, purely, from the status's definition; the k-th rule
//!   created is the k-th deletion from the end of the removal plan): after
//!   [`normalize_nft_rule`] they must be equal, else the rule is reported
//!   altered (someone replaced it, `nft replace rule ... handle N`).
//! * nftables plans of the batched layout (`firewall_layout = "batched"`,
//!   [`crate::rules::batched`]): the plan deletes map elements and whole
//!   chains, no handle. The network's script is regenerated purely from
//!   the status's definition ([`batched::nft_expected_script`]) and
//!   compared with one `nft -a list table FAMILY virtnet_batched` per
//!   family (shared by all networks of the check, `Listings`): every
//!   rule of its own chains `net_BR_in|out|nat` in order, after
//!   [`normalize_nft_rule`] (a rule that differs is altered, one that
//!   lacks is missing, one more than the definition gives is reported
//!   altered), and every element of the verdict maps that reaches them
//!   (key and verdict). Instead of libvirt's private chains, the shared
//!   part of the layout ([`batched::nft_setup_script`]: table, base
//!   chains with their type and hook, maps, dispatch rules) is compared
//!   the same way. A daemon start uses the same comparison to keep the
//!   intact networks ([`super::Driver::reconcile`]).
//! * iptables plans of the batched layout (their commands name its
//!   `VIRTNET_*` chains, [`batched::is_batched_ipt_plan`]): the batch is
//!   regenerated purely from the status's definition
//!   ([`batched::ipt_expected`]); the saved plan must be exactly the
//!   removal that batch implies (else: drift). Compared with one
//!   `iptables-save` / `ip6tables-save` per family (shared, `Listings`;
//!   the IPv6 one only taken for a network with IPv6 rules): each own
//!   chain `VIRTNET_BR_XXX` holds exactly the expected rules in order —
//!   each put in the form iptables-save lists it by
//!   [`crate::rules::ipt_save::canonical_rule`], which refuses (= drift)
//!   anything outside the generator's vocabulary — every jump from
//!   libvirt's chains is there, and so is each checksum rule the saved
//!   plan removes (one whose add failed is not in the plan and not
//!   expected). Other chains' rules (foreign, other networks) and
//!   counters are not looked at. A daemon start uses the same comparison
//!   to keep the intact networks.
//! * the private chains of the backends in use (libvirt's `LIBVIRT_*`
//!   chains and their jumps, or the `libvirt_network` tables and base
//!   chains): the private-chain setup plan is run with a runner that runs
//!   its queries for real and only records the commands it would add;
//!   each one is a missing piece.
//! * a status without a saved plan (an add that failed at a reload, a
//!   libvirt ≤ 10.2 status) cannot be compared: reported as drift
//!   ([`DriftKind::NoPlan`]) so that a repair adds the rules again.
//!
//! The `tc` filter of the nftables backend is not compared.
//!
//! Repair ([`super::Driver::repair`]) = for each drifting network, the
//! saved removal plan restricted to the rules found intact (a handle
//! whose rule is missing or altered is never deleted: after a flush the
//! kernel may have given it to another rule; a batched plan's elements
//! and chains still there are deleted, intact or not — their keys and
//! names are the network's own; a batched iptables plan is run whole:
//! each command names its rule by content or its own chain), then —
//! after the private chains (or the batched layout's shared part) were
//! set up again with the configured backend (libvirt's forced setup, as
//! on a firewalld reload) — a fresh add, journaled and saved like a
//! reload. Then the check runs again.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::firewall::{full_argv, Backend, Firewall, Layer, TransactionFlags};
use crate::netxml::NetworkDef;
use crate::rules;
use crate::rules::batched;
use crate::rules::ipt_save::{canonical_rule, SavedTables};
use crate::store::NetworkStatus;
use virtnet_runner::{Cmd, Output, RunError, Runner};

/// What is wrong with one expected piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// Not on the host.
    Missing,
    /// Its place (nft handle) holds another rule.
    Altered,
    /// The status has no saved removal plan: nothing to compare with.
    NoPlan,
}

/// One expected piece that is not as it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub kind: DriftKind,
    /// The command that added it (nft, iptables) or would add it (private
    /// chains), as one line; for [`DriftKind::NoPlan`], an explanation.
    pub expected: String,
    /// For an altered nft rule: the rule found at its handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

/// The check of one active network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCheck {
    pub name: String,
    /// Backend of the saved removal plan.
    pub backend: Option<Backend>,
    /// Rules compared.
    pub checked: usize,
    pub drift: Vec<Drift>,
}

/// What [`super::Driver::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Active networks with firewall rules, by name.
    pub networks: Vec<NetworkCheck>,
    /// Missing pieces of the private chains (shared by all networks).
    pub private_chains: Vec<Drift>,
}

impl CheckReport {
    /// True when something drifted.
    pub fn drifted(&self) -> bool {
        !self.private_chains.is_empty() || self.networks.iter().any(|n| !n.drift.is_empty())
    }
}

/// The inspection of one network: its check and the commands of its
/// saved removal plan that remove rules found intact.
pub(crate) struct Inspection {
    pub check: NetworkCheck,
    /// `None`: no saved plan.
    pub intact_removal: Option<Firewall>,
}

fn one_line(argv: &[String]) -> String {
    crate::firewall::render_argv(argv, crate::firewall::RenderOptions::ONE_LINE)
}

/// A rule as nft lists it, reduced to what identifies it: the counter's
/// values dropped, quotes removed, a host prefix (`/32`, `/128`) dropped,
/// the items of a `ct state` set sorted. Applied to both the generated
/// rule and the listed one.
pub fn normalize_nft_rule(rule: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut words = rule.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if w == "packets" || w == "bytes" {
            // `counter packets N bytes M`
            if out.last().map(String::as_str) == Some("counter")
                || (w == "bytes" && out.last().map(String::as_str) == Some("counter"))
            {
                words.next();
                continue;
            }
        }
        let mut t = normalize_address(w.trim_matches('"'));
        if out.len() >= 2 && out[out.len() - 2] == "ct" && out[out.len() - 1] == "state" {
            let mut items: Vec<&str> = t.split(',').collect();
            items.sort_unstable();
            t = items.join(",");
        }
        out.push(t);
    }
    out
}

/// An address word as nft lists it: a host prefix (`/32`, `/128`)
/// dropped, a range of one address (`A-A`) as that address, an IPv4
/// address's `:PORTS` kept.
fn normalize_address(w: &str) -> String {
    let (addr, ports) = match w.split_once(':') {
        Some((a, p)) if a.contains('.') => (a, Some(p)),
        _ => (w, None),
    };
    let mut a = addr.to_string();
    for suffix in ["/32", "/128"] {
        if a.len() > suffix.len() && a.ends_with(suffix) && a.contains(['.', ':']) {
            a.truncate(a.len() - suffix.len());
        }
    }
    if let Some((x, y)) = a.split_once('-') {
        if x == y && x.contains(['.', ':']) {
            a = x.to_string();
        }
    }
    match ports {
        Some(p) => format!("{a}:{p}"),
        None => a,
    }
}

/// One listed nft rule: chain, handle, rule text.
type ListedRule = (String, String, String);

/// The rules of one nft table (as `nft -a list table` prints it).
fn parse_nft_listing(listing: &str) -> Vec<ListedRule> {
    let mut out = Vec::new();
    let mut chain = String::new();
    for line in listing.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_string();
            continue;
        }
        if l.starts_with("table ") || l.starts_with("type ") || l == "}" {
            continue;
        }
        if let Some(pos) = l.rfind(" # handle ") {
            let handle = l[pos + " # handle ".len()..].trim().to_string();
            out.push((chain.clone(), handle, l[..pos].to_string()));
        }
    }
    out
}

/// Runs queries for real and records, without running, everything else
/// (what a plan would change).
struct DryRunner<'a> {
    inner: &'a dyn Runner,
    would_run: Mutex<Vec<Vec<String>>>,
}

fn is_query(argv: &[String]) -> bool {
    let prog = argv.first().map(String::as_str).unwrap_or("");
    match prog {
        "nft" => argv.iter().any(|a| a == "list"),
        "iptables" | "ip6tables" => argv
            .iter()
            .any(|a| matches!(a.as_str(), "--list-rules" | "-S" | "--list" | "-L")),
        _ => false,
    }
}

impl Runner for DryRunner<'_> {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        if is_query(&cmd.argv) {
            return self.inner.run(cmd);
        }
        self.would_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd.argv.to_vec());
        Ok(Output::ok(""))
    }
}

/// The pieces of `backend`'s private chains the host lacks: the commands
/// the setup would run. A crash of the runner is an error.
pub(crate) fn private_chain_drift(
    backend: Backend,
    runner: &dyn Runner,
) -> Result<Vec<Drift>, RunError> {
    let dry = DryRunner {
        inner: runner,
        would_run: Mutex::new(Vec::new()),
    };
    for layer in [Layer::Ipv4, Layer::Ipv6] {
        let Ok(mut pc) = rules::private_chains(backend, layer) else {
            continue;
        };
        if let Err(e) = pc.firewall.apply(&dry) {
            if e.is_crash() {
                return Err(RunError::Crashed {
                    program: "private chains".into(),
                    index: 0,
                });
            }
        }
    }
    let cmds = dry
        .would_run
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(cmds
        .iter()
        .map(|argv| Drift {
            kind: DriftKind::Missing,
            expected: one_line(argv),
            found: None,
        })
        .collect())
}

/// Inspects one active network (see the module docs); the batched
/// layout's nft tables are listed once into `listings`, shared by the
/// networks of one check.
pub(crate) fn inspect(
    st: &NetworkStatus,
    runner: &dyn Runner,
    listings: &mut Listings,
) -> Result<Inspection, RunError> {
    let name = st.def.name.clone();
    let Some(plan) = st.fw_removal.as_ref() else {
        return Ok(Inspection {
            check: NetworkCheck {
                name,
                backend: None,
                checked: 0,
                drift: vec![Drift {
                    kind: DriftKind::NoPlan,
                    expected: "the status file has no saved removal plan (fwRemoval): the rules cannot be compared".into(),
                    found: None,
                }],
            },
            intact_removal: None,
        });
    };
    let backend = plan.backend();
    let mut check = NetworkCheck {
        name,
        backend: Some(backend),
        checked: 0,
        drift: Vec::new(),
    };
    let mut intact = Firewall::new(backend);
    intact.start_transaction(TransactionFlags::IGNORE_ERRORS);
    match backend {
        Backend::Iptables if batched::is_batched_ipt_plan(plan) => {
            inspect_ipt_batched(st, plan, runner, listings, &mut check, &mut intact)?
        }
        Backend::Iptables | Backend::None => {
            for cmd in plan.action_cmds() {
                if !cmd.args().iter().any(|a| a == "--delete" || a == "-D") {
                    continue;
                }
                check.checked += 1;
                let argv: Vec<String> = full_argv(backend, cmd, false)
                    .into_iter()
                    .map(|a| {
                        if a == "--delete" || a == "-D" {
                            "--check".to_string()
                        } else {
                            a
                        }
                    })
                    .collect();
                let out = runner.run(&Cmd::new(argv))?;
                if out.success() {
                    intact.add_cmd(cmd.layer(), cmd.args().iter().cloned());
                } else {
                    let mut add = full_argv(backend, cmd, false);
                    for a in add.iter_mut() {
                        if a == "--delete" || a == "-D" {
                            *a = "--insert".to_string();
                        }
                    }
                    check.drift.push(Drift {
                        kind: DriftKind::Missing,
                        expected: one_line(&add),
                        found: None,
                    });
                }
            }
        }
        Backend::Nftables if batched::is_batched_nft_plan(plan) => {
            inspect_nft_batched(st, plan, runner, listings, &mut check, &mut intact)?
        }
        Backend::Nftables => inspect_nft(st, plan, runner, &mut check, &mut intact)?,
    }
    Ok(Inspection {
        check,
        intact_removal: Some(intact),
    })
}

/// A `delete rule FAMILY TABLE CHAIN handle N` of a removal plan.
struct NftDelete<'a> {
    layer: Layer,
    args: &'a [String],
    family: &'a str,
    table: &'a str,
    chain: &'a str,
    handle: &'a str,
}

fn nft_delete_rule(layer: Layer, args: &[String]) -> Option<NftDelete<'_>> {
    match args {
        [d, r, family, table, chain, h, handle]
            if d == "delete" && r == "rule" && h == "handle" =>
        {
            Some(NftDelete {
                layer,
                args,
                family,
                table,
                chain,
                handle,
            })
        }
        _ => None,
    }
}

fn inspect_nft(
    st: &NetworkStatus,
    plan: &Firewall,
    runner: &dyn Runner,
    check: &mut NetworkCheck,
    intact: &mut Firewall,
) -> Result<(), RunError> {
    let deletes: Vec<NftDelete<'_>> = plan
        .action_cmds()
        .filter_map(|c| nft_delete_rule(c.layer(), c.args()))
        .collect();
    // What the plan removes besides rules by handle (the tc filter): it
    // names what it removes by its content, never by a reusable handle,
    // so a repair runs it as saved (the tc filter is not compared).
    for c in plan.action_cmds() {
        if nft_delete_rule(c.layer(), c.args()).is_none() {
            intact.add_cmd(c.layer(), c.args().iter().cloned());
        }
    }
    // The rules the definition gives, in creation order.
    let mut def: NetworkDef = st.def.clone();
    let expected: Vec<Vec<String>> = rules::network_rules(&mut def, Backend::Nftables)
        .map(|fw| {
            fw.action_cmds()
                .filter(|c| {
                    crate::firewall::inverse::nft_creation(c.args())
                        .is_some_and(|v| c.args().get(v + 1).is_some_and(|o| o == "rule"))
                })
                .map(|c| c.args().to_vec())
                .collect()
        })
        .unwrap_or_default();
    let paired = expected.len() == deletes.len();
    // One listing per table.
    let mut listings: Vec<((String, String), Vec<ListedRule>)> = Vec::new();
    for (i, del) in deletes.iter().enumerate() {
        check.checked += 1;
        let key = (del.family.to_string(), del.table.to_string());
        if !listings.iter().any(|(k, _)| *k == key) {
            let out = runner.run(&Cmd::new([
                "nft", "-a", "list", "table", del.family, del.table,
            ]))?;
            let rules = if out.success() {
                parse_nft_listing(&out.stdout)
            } else {
                Vec::new()
            };
            listings.push((key.clone(), rules));
        }
        let rules = listings.iter().find(|(k, _)| *k == key).map(|(_, r)| r);
        let found = rules.and_then(|r| {
            r.iter()
                .find(|(c, h, _)| c == del.chain && h == del.handle)
                .map(|(_, _, text)| text.clone())
        });
        // The add that created this rule (the k-th from the end).
        let add = paired
            .then(|| &expected[deletes.len() - 1 - i])
            .filter(|a| {
                a.get(2).map(String::as_str) == Some(del.family)
                    && a.get(4).map(String::as_str) == Some(del.chain)
            });
        let add_line = match add {
            Some(a) => {
                let mut argv = vec!["nft".to_string()];
                argv.extend(a.iter().cloned());
                one_line(&argv)
            }
            None => format!(
                "a rule of chain {} {} {} with handle {}",
                del.family, del.table, del.chain, del.handle
            ),
        };
        match found {
            None => check.drift.push(Drift {
                kind: DriftKind::Missing,
                expected: add_line,
                found: None,
            }),
            Some(text) => {
                let same = match add {
                    Some(a) => normalize_nft_rule(&a[5..].join(" ")) == normalize_nft_rule(&text),
                    None => true,
                };
                if same {
                    intact.add_cmd(del.layer, del.args.iter().cloned());
                } else {
                    check.drift.push(Drift {
                        kind: DriftKind::Altered,
                        expected: add_line,
                        found: Some(text),
                    });
                }
            }
        }
    }
    Ok(())
}

/// One chain of a listed nft table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ListedChain {
    name: String,
    /// A base chain's `type ... hook ...` line.
    hook: Option<String>,
    /// Its rules in order: (handle, text without the handle).
    rules: Vec<(String, String)>,
}

/// One nft table as `nft -a list table FAMILY NAME` prints it (nft 1.0.6):
/// its chains and its sets/maps with their elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListedTable {
    chains: Vec<ListedChain>,
    /// (map, its elements as (key, value)): a key normalized (quotes and a
    /// host prefix dropped), a value as listed (`jump net_virbr0_in`).
    maps: Vec<(String, Vec<(String, String)>)>,
}

impl ListedTable {
    fn chain(&self, name: &str) -> Option<&ListedChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    fn map(&self, name: &str) -> Option<&[(String, String)]> {
        self.maps
            .iter()
            .find(|(m, _)| m == name)
            .map(|(_, e)| e.as_slice())
    }
}

/// An element key as compared: quotes dropped, a host prefix dropped.
fn normalize_key(k: &str) -> String {
    normalize_address(k.trim().trim_matches('"'))
}

/// Parses `nft -a list table` output: chains (type line, rules with their
/// handles) and maps (elements, which nft wraps over several lines).
fn parse_table_listing(listing: &str) -> ListedTable {
    enum In {
        Nothing,
        Chain,
        Map,
    }
    let mut t = ListedTable::default();
    let mut at = In::Nothing;
    // Elements being collected (an `elements = {` not yet closed).
    let mut elements: Option<String> = None;
    let strip_handle = |l: &str| match l.rfind(" # handle ") {
        Some(p) => l[..p].trim_end().to_string(),
        None => l.trim_end_matches('{').trim().to_string(),
    };
    for line in listing.lines() {
        let l = line.trim();
        if let Some(acc) = elements.as_mut() {
            acc.push(' ');
            acc.push_str(l);
        } else if let Some(rest) = l.strip_prefix("chain ") {
            let name = rest.split_whitespace().next().unwrap_or("").to_string();
            t.chains.push(ListedChain {
                name,
                ..ListedChain::default()
            });
            at = In::Chain;
            continue;
        } else if let Some(rest) = l.strip_prefix("map ").or_else(|| l.strip_prefix("set ")) {
            let name = rest.split_whitespace().next().unwrap_or("").to_string();
            t.maps.push((name, Vec::new()));
            at = In::Map;
            continue;
        } else if l == "}" {
            at = In::Nothing;
            continue;
        } else {
            match at {
                In::Chain => {
                    let Some(c) = t.chains.last_mut() else {
                        continue;
                    };
                    if l.starts_with("type ") {
                        c.hook = Some(l.to_string());
                    } else if let Some(pos) = l.rfind(" # handle ") {
                        let handle = l[pos + " # handle ".len()..].trim().to_string();
                        c.rules.push((handle, strip_handle(l)));
                    }
                    continue;
                }
                In::Map => match l.strip_prefix("elements = {") {
                    Some(rest) => elements = Some(rest.to_string()),
                    None => continue,
                },
                In::Nothing => continue,
            }
        }
        // Elements: complete once their `}` is seen.
        let Some(acc) = elements.as_ref() else {
            continue;
        };
        let Some(end) = acc.find('}') else {
            continue;
        };
        let items: Vec<(String, String)> = acc[..end]
            .split(',')
            .filter_map(|item| {
                let item = item.trim();
                if item.is_empty() {
                    return None;
                }
                Some(match item.split_once(" : ") {
                    Some((k, v)) => (normalize_key(k), v.trim().to_string()),
                    None => (normalize_key(item), String::new()),
                })
            })
            .collect();
        if let Some((_, e)) = t.maps.last_mut() {
            e.extend(items);
        }
        elements = None;
    }
    t
}

/// The host listings the batched layout's networks are compared with,
/// each taken once however many networks are compared: the nft tables
/// (`nft -a list table FAMILY virtnet_batched`; `None`: no such table, the
/// listing failed) and, with iptables, one `iptables-save` /
/// `ip6tables-save` per family (taken only when a network needs that
/// family; `None`: the listing failed).
#[derive(Debug, Default)]
pub(crate) struct Listings {
    tables: Vec<(String, Option<ListedTable>)>,
    saves: Vec<(Layer, Option<SavedTables>)>,
}

impl Listings {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The `iptables-save` (`ip6tables-save`) of `layer`, listed at the
    /// first call.
    fn saved(
        &mut self,
        runner: &dyn Runner,
        layer: Layer,
    ) -> Result<Option<&SavedTables>, RunError> {
        if !self.saves.iter().any(|(l, _)| *l == layer) {
            let prog = if layer == Layer::Ipv6 {
                "ip6tables-save"
            } else {
                "iptables-save"
            };
            let out = runner.run(&Cmd::new([prog]))?;
            let t = out.success().then(|| SavedTables::parse(&out.stdout));
            self.saves.push((layer, t));
        }
        Ok(self
            .saves
            .iter()
            .find(|(l, _)| *l == layer)
            .and_then(|(_, t)| t.as_ref()))
    }

    /// The batched layout's table of `family` (listed at the first call).
    fn table(
        &mut self,
        runner: &dyn Runner,
        family: &str,
    ) -> Result<Option<&ListedTable>, RunError> {
        if !self.tables.iter().any(|(f, _)| f == family) {
            let out = runner.run(&Cmd::new([
                "nft",
                "-a",
                "list",
                "table",
                family,
                batched::NFT_TABLE,
            ]))?;
            let t = out.success().then(|| parse_table_listing(&out.stdout));
            self.tables.push((family.to_string(), t));
        }
        Ok(self
            .tables
            .iter()
            .find(|(f, _)| f == family)
            .and_then(|(_, t)| t.as_ref()))
    }
}

/// One line of a batched nft script, as compared.
enum ScriptLine<'a> {
    /// `add rule FAMILY TABLE CHAIN RULE...`
    Rule {
        family: &'a str,
        chain: &'a str,
        rule: String,
    },
    /// `add element FAMILY TABLE MAP { KEY : VALUE }`
    Element {
        family: &'a str,
        map: &'a str,
        key: String,
        value: String,
    },
    /// `add chain FAMILY TABLE CHAIN [{ type T hook H ...; }]`
    Chain {
        family: &'a str,
        chain: &'a str,
        hook: Option<String>,
    },
    /// `add map FAMILY TABLE MAP { ... }`
    Map { family: &'a str, map: &'a str },
    /// `add table FAMILY TABLE`
    Table { family: &'a str },
    /// Anything else (`flush chain`).
    Other,
}

fn script_line(line: &str) -> ScriptLine<'_> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        ["add", "rule", family, _, chain, rule @ ..] => ScriptLine::Rule {
            family,
            chain,
            rule: rule.join(" "),
        },
        ["add", "element", family, _, map, "{", key, ":", value @ .., "}"] => ScriptLine::Element {
            family,
            map,
            key: normalize_key(key),
            value: value.join(" "),
        },
        ["add", "chain", family, _, chain, rest @ ..] => ScriptLine::Chain {
            family,
            chain,
            // `{ type filter hook forward ...`: what identifies a base chain.
            hook: rest
                .iter()
                .position(|x| *x == "type")
                .and_then(|i| rest.get(i..i + 4))
                .map(|x| x.join(" ")),
        },
        ["add", "map", family, _, map, ..] => ScriptLine::Map { family, map },
        ["add", "table", family, _] => ScriptLine::Table { family },
        _ => ScriptLine::Other,
    }
}

/// Compares the host's batched table(s) with `script` (what must be
/// there): every rule of every chain in order (normalized), every map
/// element, and — for the shared part — the table, base chains (their
/// type and hook) and maps. Returns the drift and the number of rules and
/// elements compared.
fn compare_script(
    script: &str,
    runner: &dyn Runner,
    listings: &mut Listings,
) -> Result<(Vec<Drift>, usize), RunError> {
    let mut drift = Vec::new();
    let mut checked = 0;
    let t = batched::NFT_TABLE;
    // Expected rules per (family, chain), in order.
    let mut chains: Vec<((&str, &str), Vec<String>)> = Vec::new();
    for line in script.lines() {
        let missing = |drift: &mut Vec<Drift>| {
            drift.push(Drift {
                kind: DriftKind::Missing,
                expected: format!("nft {line}"),
                found: None,
            })
        };
        match script_line(line) {
            ScriptLine::Rule {
                family,
                chain,
                rule,
            } => match chains.iter_mut().find(|(k, _)| *k == (family, chain)) {
                Some((_, rules)) => rules.push(rule),
                None => chains.push(((family, chain), vec![rule])),
            },
            ScriptLine::Element {
                family,
                map,
                key,
                value,
            } => {
                checked += 1;
                let found = listings
                    .table(runner, family)?
                    .and_then(|tb| tb.map(map))
                    .and_then(|els| els.iter().find(|(k, _)| *k == key));
                match found {
                    None => missing(&mut drift),
                    Some((_, v)) if *v == value => {}
                    Some((k, v)) => drift.push(Drift {
                        kind: DriftKind::Altered,
                        expected: format!("nft {line}"),
                        found: Some(format!("{k} : {v}")),
                    }),
                }
            }
            ScriptLine::Chain {
                family,
                chain,
                hook: Some(hook),
            } => {
                let found = listings
                    .table(runner, family)?
                    .and_then(|tb| tb.chain(chain));
                match found.map(|c| c.hook.clone()) {
                    None => missing(&mut drift),
                    Some(Some(h)) if h.starts_with(&hook) => {}
                    Some(h) => drift.push(Drift {
                        kind: DriftKind::Altered,
                        expected: format!("nft {line}"),
                        found: Some(h.unwrap_or_else(|| format!("chain {chain} without a hook"))),
                    }),
                }
            }
            ScriptLine::Map { family, map } => {
                if listings
                    .table(runner, family)?
                    .and_then(|tb| tb.map(map))
                    .is_none()
                {
                    missing(&mut drift);
                }
            }
            ScriptLine::Table { family } => {
                if listings.table(runner, family)?.is_none() {
                    missing(&mut drift);
                }
            }
            ScriptLine::Chain { hook: None, .. } | ScriptLine::Other => {}
        }
    }
    for ((family, chain), rules) in chains {
        checked += rules.len();
        let listed: &[(String, String)] = listings
            .table(runner, family)?
            .and_then(|tb| tb.chain(chain))
            .map(|c| c.rules.as_slice())
            .unwrap_or(&[]);
        for (i, rule) in rules.iter().enumerate() {
            let expected = format!("nft add rule {family} {t} {chain} {rule}");
            match listed.get(i) {
                None => drift.push(Drift {
                    kind: DriftKind::Missing,
                    expected,
                    found: None,
                }),
                Some((_, text)) if normalize_nft_rule(rule) == normalize_nft_rule(text) => {}
                Some((_, text)) => drift.push(Drift {
                    kind: DriftKind::Altered,
                    expected,
                    found: Some(text.clone()),
                }),
            }
        }
        for (_, text) in listed.iter().skip(rules.len()) {
            drift.push(Drift {
                kind: DriftKind::Altered,
                expected: format!(
                    "no rule after the {} of chain {family} {t} {chain}",
                    rules.len()
                ),
                found: Some(text.clone()),
            });
        }
    }
    Ok((drift, checked))
}

/// The batched layout with nftables: the network's own chains compared
/// rule by rule, and its map elements, with the script its definition
/// gives (see [`compare_script`]); the tables are listed once per family
/// for all networks (`listings`). Its removal plan names no handle: an
/// element is deleted by its key, a chain by its name, both the
/// network's own, so what is still there (intact or not) is removed
/// before a repair adds the whole again; the tc filter as saved.
fn inspect_nft_batched(
    st: &NetworkStatus,
    plan: &Firewall,
    runner: &dyn Runner,
    listings: &mut Listings,
    check: &mut NetworkCheck,
    intact: &mut Firewall,
) -> Result<(), RunError> {
    let mut def: NetworkDef = st.def.clone();
    let script = match batched::nft_expected_script(&mut def) {
        Ok(s) => s,
        Err(e) => {
            // Nothing to compare with: drift, so a repair adds it again
            // (and reports the error the add gives).
            check.drift.push(Drift {
                kind: DriftKind::NoPlan,
                expected: format!("the rules of the definition cannot be generated: {e}"),
                found: None,
            });
            String::new()
        }
    };
    let (drift, checked) = compare_script(&script, runner, listings)?;
    check.checked += checked;
    check.drift.extend(drift);
    for c in plan.action_cmds() {
        let a = c.args();
        // `{ KEY }` is one argument of the saved plan.
        let words: Vec<&str> = a.iter().flat_map(|x| x.split_whitespace()).collect();
        let present = match words.as_slice() {
            ["delete", "element", family, table, map, "{", key, "}"]
                if *table == batched::NFT_TABLE =>
            {
                let key = normalize_key(key);
                listings
                    .table(runner, family)?
                    .and_then(|tb| tb.map(map))
                    .is_some_and(|els| els.iter().any(|(k, _)| *k == key))
            }
            ["delete", "chain", family, table, chain] if *table == batched::NFT_TABLE => listings
                .table(runner, family)?
                .and_then(|tb| tb.chain(chain))
                .is_some(),
            _ => true,
        };
        if present {
            intact.add_cmd(c.layer(), a.iter().cloned());
        }
    }
    Ok(())
}

/// The batched layout with iptables: the batch the definition gives
/// ([`batched::ipt_expected`], regenerated purely from the status's
/// definition) must be the one the saved plan removes (its batched
/// commands are exactly [`batched::batch_removal`] of the expected inputs,
/// in the order a start saves them; its other commands are deletions of
/// the definition's IGNORE_ERRORS rules), and the host (one
/// `iptables-save` / `ip6tables-save` per family, `listings`) must have:
/// every own chain `VIRTNET_BR_XXX` with exactly the expected rules in
/// order (as [`canonical_rule`] predicts iptables-save lists them; a rule
/// it cannot predict is drift), every jump into libvirt's chains, and
/// each checksum rule the saved plan removes (one the start could not add
/// — the `CHECKSUM` target missing — is not in the plan and not
/// expected). Other chains' rules are not looked at. The removal plan
/// names every rule by its content and every chain by its own name, so
/// a repair runs all of it (what is gone fails, ignored).
fn inspect_ipt_batched(
    st: &NetworkStatus,
    plan: &Firewall,
    runner: &dyn Runner,
    listings: &mut Listings,
    check: &mut NetworkCheck,
    intact: &mut Firewall,
) -> Result<(), RunError> {
    for c in plan.action_cmds() {
        intact.add_cmd(c.layer(), c.args().iter().cloned());
    }
    let mut def: NetworkDef = st.def.clone();
    let expected = match batched::ipt_expected(&mut def) {
        Ok(e) => e,
        Err(e) => {
            check.drift.push(Drift {
                kind: DriftKind::NoPlan,
                expected: format!("the rules of the definition cannot be generated: {e}"),
                found: None,
            });
            return Ok(());
        }
    };
    // The plan a start of this definition saves: the checksum deletions,
    // then each family's batch removal, the last batch first.
    let mut implied: Vec<(Layer, Vec<String>)> = Vec::new();
    for (layer, input) in expected.inputs.iter().rev() {
        if input.is_empty() {
            continue;
        }
        let prog = batched::restore_cmd(*layer, input).argv[0].clone();
        implied.extend(batched::batch_removal(&prog, input));
    }
    let saved: Vec<(Layer, Vec<String>)> = plan
        .action_cmds()
        .map(|c| (c.layer(), c.args().to_vec()))
        .collect();
    let (saved_batch, saved_other): (Vec<_>, Vec<_>) = saved
        .into_iter()
        .partition(|(l, a)| batched::is_batched_removal(*l, a));
    if saved_batch != implied {
        check.drift.push(Drift {
            kind: DriftKind::Altered,
            expected: "a saved removal plan that removes the batch the definition gives".into(),
            found: Some(format!(
                "{} batched removal command(s) that differ",
                saved_batch.len()
            )),
        });
    }
    // What must be listed: (layer, table, chain, rule as a command line,
    // its canonical text), own chains in full, others by presence.
    let mut own: Vec<(Layer, String, String, Vec<String>)> = Vec::new();
    let mut present: Vec<(Layer, String, String, Vec<String>)> = Vec::new();
    for (layer, input) in &expected.inputs {
        let mut table = String::new();
        for line in input.lines() {
            let w: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if let Some(t) = line.strip_prefix('*') {
                table = t.trim().to_string();
            } else if let Some(c) = line.strip_prefix(':') {
                let chain = c.split_whitespace().next().unwrap_or("").to_string();
                own.push((*layer, table.clone(), chain, Vec::new()));
            } else if let [op, chain, rule @ ..] = w.as_slice() {
                match op.as_str() {
                    "--append" => match own
                        .iter_mut()
                        .find(|(l, t, c, _)| l == layer && *t == table && c == chain)
                    {
                        Some(o) => o.3.push(rule.join(" ")),
                        None => present.push((*layer, table.clone(), chain.clone(), rule.to_vec())),
                    },
                    "--insert" => {
                        present.push((*layer, table.clone(), chain.clone(), rule.to_vec()))
                    }
                    _ => {}
                }
            }
        }
    }
    for (layer, args) in &saved_other {
        // `--table T --delete CHAIN RULE...` of a rule the definition adds
        // with IGNORE_ERRORS.
        let known = match args.as_slice() {
            [t, table, d, chain, rule @ ..] if t == "--table" && d == "--delete" => expected
                .ignore_errors
                .iter()
                .any(|(l, a)| {
                    l == layer
                        && a.len() == args.len()
                        && a[1] == *table
                        && a[2] == "--insert"
                        && a[3] == *chain
                        && a[4..] == *rule
                })
                .then(|| (table.clone(), chain.clone(), rule.to_vec())),
            _ => None,
        };
        match known {
            Some((table, chain, rule)) => present.push((*layer, table, chain, rule)),
            None => check.drift.push(Drift {
                kind: DriftKind::Altered,
                expected: "a saved removal plan that removes what the definition adds".into(),
                found: Some(one_line(args)),
            }),
        }
    }
    let cmd_line = |layer: Layer, table: &str, op: &str, chain: &str, rule: &[String]| {
        let mut argv = vec![
            if layer == Layer::Ipv6 {
                "ip6tables"
            } else {
                "iptables"
            }
            .to_string(),
            "--table".into(),
            table.to_string(),
            op.to_string(),
            chain.to_string(),
        ];
        argv.extend(rule.iter().cloned());
        one_line(&argv)
    };
    for (layer, table, chain, rules) in &own {
        check.checked += rules.len();
        let listed = listings
            .saved(runner, *layer)?
            .and_then(|s| s.chain(table, chain));
        let Some(listed) = listed else {
            // The chain is gone: each of its rules is missing.
            for rule in rules {
                let words: Vec<String> = rule.split_whitespace().map(str::to_string).collect();
                check.drift.push(Drift {
                    kind: DriftKind::Missing,
                    expected: cmd_line(*layer, table, "--append", chain, &words),
                    found: None,
                });
            }
            continue;
        };
        for (i, rule) in rules.iter().enumerate() {
            let words: Vec<&str> = rule.split_whitespace().collect();
            let expected = cmd_line(
                *layer,
                table,
                "--append",
                chain,
                &words.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            );
            let canon = canonical_rule(*layer, &words);
            match (listed.get(i), canon) {
                (None, _) => check.drift.push(Drift {
                    kind: DriftKind::Missing,
                    expected,
                    found: None,
                }),
                (Some(text), Some(c)) if *text == c => {}
                (Some(text), _) => check.drift.push(Drift {
                    kind: DriftKind::Altered,
                    expected,
                    found: Some(format!("-A {chain} {text}")),
                }),
            }
        }
        for text in listed.iter().skip(rules.len()) {
            check.drift.push(Drift {
                kind: DriftKind::Altered,
                expected: format!("no rule after the {} of chain {table} {chain}", rules.len()),
                found: Some(format!("-A {chain} {text}")),
            });
        }
    }
    for (layer, table, chain, rule) in &present {
        check.checked += 1;
        let canon = canonical_rule(*layer, rule);
        let found = match canon {
            Some(c) => listings
                .saved(runner, *layer)?
                .and_then(|s| s.chain(table, chain))
                .is_some_and(|l| l.contains(&c)),
            None => false,
        };
        if !found {
            check.drift.push(Drift {
                kind: DriftKind::Missing,
                expected: cmd_line(*layer, table, "--insert", chain, rule),
                found: None,
            });
        }
    }
    Ok(())
}

/// The shared part of the batched layout with nftables (both families'
/// table, base chains with their hooks, maps and dispatch rules, as
/// [`batched::nft_setup_script`] creates them), compared with the host:
/// what is missing or altered (never the networks' elements, which
/// [`inspect`] compares).
pub(crate) fn batched_shared_drift(
    runner: &dyn Runner,
    listings: &mut Listings,
) -> Result<Vec<Drift>, RunError> {
    let mut out = Vec::new();
    for layer in [Layer::Ipv4, Layer::Ipv6] {
        let script = batched::nft_setup_script(layer);
        out.extend(compare_script(&script, runner, listings)?.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_matches_what_nft_lists() {
        // Generated vs listed (real nft 1.0.x, the live captures).
        let pairs = [
            ("iif virbr0 counter reject", "iif \"virbr0\" counter packets 0 bytes 0 reject"),
            (
                "oif virbr0 ip daddr 192.168.122.0/24 ct state related,established counter accept",
                "oif \"virbr0\" ip daddr 192.168.122.0/24 ct state established,related counter packets 3 bytes 180 accept",
            ),
            (
                "ip saddr 192.168.122.0/24 ip daddr 255.255.255.255/32 counter return",
                "ip saddr 192.168.122.0/24 ip daddr 255.255.255.255 counter packets 0 bytes 0 return",
            ),
        ];
        for (gen, listed) in pairs {
            assert_eq!(normalize_nft_rule(gen), normalize_nft_rule(listed), "{gen}");
        }
        assert_ne!(
            normalize_nft_rule("iif virbr0 counter reject"),
            normalize_nft_rule("iif \"virbr0\" counter packets 0 bytes 0 accept")
        );
        assert_ne!(
            normalize_nft_rule("ip saddr 192.168.122.0/24 counter accept"),
            normalize_nft_rule("ip saddr 192.168.123.0/24 counter accept")
        );
        // nft lists a one-address SNAT range as a /32 (ports kept).
        assert_eq!(
            normalize_nft_rule("counter snat to 198.51.100.1-198.51.100.1:20000-30000"),
            normalize_nft_rule("counter packets 0 bytes 0 snat to 198.51.100.1/32:20000-30000")
        );
        assert_ne!(
            normalize_nft_rule("counter snat to 198.51.100.1-198.51.100.9:20000-30000"),
            normalize_nft_rule("counter packets 0 bytes 0 snat to 198.51.100.1/32:20000-30000")
        );
    }

    #[test]
    fn listing_is_parsed_by_chain_and_handle() {
        let listing = "table ip libvirt_network { # handle 1\n\tchain guest_output { # handle 2\n\t\tip saddr 192.168.122.0/24 iif \"virbr0\" counter packets 0 bytes 0 accept # handle 12\n\t}\n\tchain guest_nat { # handle 8\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tcounter packets 0 bytes 0 return # handle 17\n\t}\n}\n";
        let r = parse_nft_listing(listing);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "guest_output");
        assert_eq!(r[0].1, "12");
        assert_eq!(
            r[1],
            (
                "guest_nat".into(),
                "17".into(),
                "counter packets 0 bytes 0 return".into()
            )
        );
    }
    /// `nft -a list table ip virtnet_batched` of real nft 1.0.6 (captured
    /// in a namespace): map elements wrapped over lines, empty chains.
    const BATCHED_LISTING: &str = "table ip virtnet_batched { # handle 1
	map fwd_in { # handle 3
		type ifname : verdict
		elements = { \"virbr0\" : jump net_virbr0_in,
			     \"virbr1\" : jump net_virbr1_in }
	}

	map fwd_out { # handle 4
		type ifname : verdict
	}

	map nat_src { # handle 5
		type ipv4_addr : verdict
		flags interval
		elements = { 10.0.0.1 : jump net_virbr1_nat, 192.168.122.0/24 : jump net_virbr0_nat,
			     192.168.123.0/24 : jump net_virbr1_nat }
	}

	chain forward { # handle 1
		type filter hook forward priority filter; policy accept;
		oifname vmap @fwd_in # handle 6
		iifname vmap @fwd_out # handle 7
	}

	chain postrouting { # handle 2
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr vmap @nat_src # handle 8
	}

	chain net_virbr0_in { # handle 9
		iifname \"virbr0\" oifname \"virbr0\" counter packets 0 bytes 0 accept # handle 10
		oifname \"virbr0\" ip daddr 192.168.122.0/24 ct state established,related counter packets 0 bytes 0 accept # handle 11
		oifname \"virbr0\" counter packets 0 bytes 0 reject # handle 12
	}

	chain net_virbr0_nat { # handle 13
		ip saddr 192.168.122.0/24 ip daddr 224.0.0.0/24 counter packets 0 bytes 0 return # handle 14
		ip saddr 192.168.122.0/24 ip daddr 255.255.255.255 counter packets 0 bytes 0 return # handle 15
		meta l4proto tcp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 counter packets 0 bytes 0 masquerade to :1024-65535 # handle 16
	}

	chain net_virbr1_in { # handle 17
	}

	chain net_virbr1_nat { # handle 18
	}
}
";

    #[test]
    fn batched_listing_is_parsed_with_wrapped_map_elements() {
        let t = parse_table_listing(BATCHED_LISTING);
        assert_eq!(
            t.map("fwd_in").unwrap(),
            [
                ("virbr0".to_string(), "jump net_virbr0_in".to_string()),
                ("virbr1".to_string(), "jump net_virbr1_in".to_string()),
            ]
        );
        assert_eq!(t.map("fwd_out").unwrap(), []);
        let nat: Vec<&str> = t
            .map("nat_src")
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(nat, ["10.0.0.1", "192.168.122.0/24", "192.168.123.0/24"]);
        let fwd = t.chain("forward").unwrap();
        assert!(fwd
            .hook
            .as_deref()
            .is_some_and(|h| h.starts_with("type filter hook forward")));
        assert_eq!(fwd.rules.len(), 2);
        let inn = t.chain("net_virbr0_in").unwrap();
        assert_eq!(inn.hook, None);
        assert_eq!(
            inn.rules[2],
            (
                "12".to_string(),
                "oifname \"virbr0\" counter packets 0 bytes 0 reject".to_string()
            )
        );
        assert!(t.chain("net_virbr1_in").unwrap().rules.is_empty());
        // What a script expects is found there (a /32 key as nft lists it).
        assert_eq!(normalize_key("10.0.0.1/32"), "10.0.0.1");
    }
}
