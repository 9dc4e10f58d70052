//! The simulated xtables state: tables (born on first write, as with the
//! nf_tables variant), their builtin and user chains, policies, rules in
//! canonical text form, and the checks on chain references between them.

use super::*;

/// Address family of an iptables state: `iptables` or `ip6tables`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The program name used in messages.
    pub fn prog(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// One rule, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule as `iptables -S` prints it after `-A CHAIN `.
    pub spec: String,
    /// The user chain this rule jumps or goes to, if any (for reference
    /// counting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// The rule's nftables handle (from its table's counter), as
    /// `nft -a list` shows it.
    #[serde(default)]
    pub handle: u64,
    /// For a rule nft added (`nft add rule` into an iptables-nft table):
    /// the rule as nft keeps it, which nft lists instead of the
    /// translation of `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nft_rule: Option<crate::nft::Rule>,
    /// A rule nft added that iptables-nft cannot read back (`ct state`,
    /// `reject`, sets, ...): it makes its chain and table "incompatible"
    /// for listing, never matches a rule specification, and has no `spec`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incompatible: bool,
}

/// One chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Chain {
    /// `Some(policy)` for a builtin chain, `None` for a user chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub rules: Vec<Rule>,
    /// The chain's nftables handle. iptables-nft creates a builtin chain
    /// in the kernel only when a command writes to it (`-A`, `-I`, `-R`,
    /// `-P`): until then it is `None` and nft does not list it. User chains
    /// always have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
}

/// One existing table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Table {
    /// All chains by name (builtin and user).
    pub chains: BTreeMap<String, Chain>,
    /// The table's nftables handle (from the namespace-wide table counter
    /// shared with nft's own tables).
    #[serde(default)]
    pub handle: u64,
    /// Last handle given to a chain or rule of this table (the kernel's
    /// per-table counter).
    #[serde(default)]
    pub last_handle: u64,
    /// Base chains nft created in this table under names iptables does not
    /// know (e.g. `chain input { type filter hook input ... }` in a `table
    /// ip filter` nft made): iptables leaves them alone and only says the
    /// table "contains incompatible base-chains"; nft lists them as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_base: Vec<crate::nft::Chain>,
    /// Sets nft created in this table (iptables does not see them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_sets: Vec<crate::nft::Set>,
}

/// The line iptables prints before listing a table that holds base chains
/// it does not know (see [`Table::foreign_base`]).
pub(super) fn foreign_base_note(t: Option<&Table>, table: &str) -> String {
    match t {
        Some(t) if !t.foreign_base.is_empty() => format!(
            "# Table `{table}' contains incompatible base-chains, use 'nft' tool to list them.\n"
        ),
        _ => String::new(),
    }
}

impl Table {
    /// Next chain/rule handle of this table.
    pub fn alloc_handle(&mut self) -> u64 {
        self.last_handle += 1;
        self.last_handle
    }

    /// Make sure a chain exists in the kernel (a builtin chain is created on
    /// first write), returning whether it had to be created.
    pub(super) fn instantiate(&mut self, chain: &str) -> bool {
        let needs = self.chains.get(chain).is_some_and(|c| c.handle.is_none());
        if needs {
            let h = self.alloc_handle();
            if let Some(c) = self.chains.get_mut(chain) {
                c.handle = Some(h);
            }
        }
        needs
    }
}

/// The iptables (or ip6tables) state of one simulated network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XtablesState {
    pub family: Family,
    /// Tables that exist (have been written to), by name.
    pub tables: BTreeMap<String, Table>,
}

/// The table an iptables command addressed, and whether it may have
/// written to it (see [`XtablesState::exec_addressed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    pub table: String,
    pub writes: bool,
}

/// Builtin tables in `iptables-save` order, with their builtin chains in
/// `-S` order.
pub(super) const TABLES: &[(&str, &[&str])] = &[
    (
        "mangle",
        &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    ),
    ("security", &["INPUT", "FORWARD", "OUTPUT"]),
    ("raw", &["PREROUTING", "OUTPUT"]),
    ("filter", &["INPUT", "FORWARD", "OUTPUT"]),
    ("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
];

/// Table `name` as iptables shows one that no command created yet: its
/// builtin chains with ACCEPT policies, none in the kernel. `None` for a
/// table iptables does not know.
pub fn unborn_table(name: &str) -> Option<Table> {
    let mut t = Table::default();
    for c in builtin_chains(name)? {
        t.chains.insert(
            (*c).to_string(),
            Chain {
                policy: Some("ACCEPT".into()),
                rules: Vec::new(),
                handle: None,
            },
        );
    }
    Some(t)
}

pub(super) fn builtin_chains(table: &str) -> Option<&'static [&'static str]> {
    TABLES.iter().find(|(t, _)| *t == table).map(|(_, c)| *c)
}

impl XtablesState {
    pub fn new(family: Family) -> Self {
        XtablesState {
            family,
            tables: BTreeMap::new(),
        }
    }

    pub(super) fn ensure_table(
        &mut self,
        name: &str,
        alloc: &mut dyn FnMut() -> u64,
    ) -> &mut Table {
        self.tables.entry(name.to_string()).or_insert_with(|| {
            let mut t = Table {
                handle: alloc(),
                ..Table::default()
            };
            for c in builtin_chains(name).unwrap_or(&[]) {
                t.chains.insert(
                    (*c).to_string(),
                    Chain {
                        policy: Some("ACCEPT".into()),
                        rules: Vec::new(),
                        handle: None,
                    },
                );
            }
            t
        })
    }
}

/// Listing a table (or one chain) holding rules iptables-nft cannot read
/// back fails as the real tool does.
pub(super) fn incompatible_check(
    t: Option<&Table>,
    table: &str,
    chain: Option<&str>,
) -> Result<(), Fail> {
    let Some(t) = t else { return Ok(()) };
    let bad = |c: &Chain| c.rules.iter().any(|r| r.incompatible);
    match chain {
        Some(c) if t.chains.get(c).is_some_and(bad) => Err(Fail::Versioned(format!(
            "chain `{c}' in table `{table}' is incompatible, use 'nft' tool."
        ))),
        None if t.chains.values().any(bad) => Err(Fail::Versioned(format!(
            "table `{table}' is incompatible, use 'nft' tool."
        ))),
        _ => Ok(()),
    }
}

pub(super) fn exists_user(tables: &BTreeMap<String, Table>, table: &str, name: &str) -> bool {
    tables
        .get(table)
        .is_some_and(|t| t.chains.get(name).is_some_and(|c| c.policy.is_none()))
}

pub(super) fn target_allowed(target: &str, table: &str, chain: &str) -> bool {
    match target {
        "MASQUERADE" => table == "nat" && !matches!(chain, "PREROUTING" | "INPUT" | "OUTPUT"),
        "SNAT" => table == "nat" && !matches!(chain, "PREROUTING" | "OUTPUT"),
        "DNAT" => table == "nat" && !matches!(chain, "POSTROUTING" | "INPUT"),
        "CHECKSUM" => table == "mangle",
        "REJECT" => table == "filter",
        _ => true,
    }
}

pub(super) fn rename_target(spec: &str, old: &str, new: &str) -> String {
    let toks: Vec<&str> = spec.split(' ').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        out.push(toks[i].to_string());
        if (toks[i] == "-j" || toks[i] == "-g") && toks.get(i + 1) == Some(&old) {
            out.push(new.to_string());
            i += 2;
            continue;
        }
        i += 1;
    }
    out.join(" ")
}

pub(super) fn refcount(t: &Table, name: &str) -> usize {
    let ours = t
        .chains
        .values()
        .flat_map(|c| c.rules.iter())
        .filter(|r| r.jump.as_deref() == Some(name))
        .count();
    // nft's own base chains count too (the kernel's use count).
    let theirs = t
        .foreign_base
        .iter()
        .flat_map(|c| c.rules.iter())
        .flat_map(|r| r.jump_targets())
        .filter(|j| *j == name)
        .count();
    ours + theirs
}

/// Builtin chains in their fixed order, then user chains sorted by name.
pub(super) fn chain_order(t: Option<&Table>, builtins: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = builtins.iter().map(|s| s.to_string()).collect();
    if let Some(t) = t {
        v.extend(
            t.chains
                .iter()
                .filter(|(_, c)| c.policy.is_none())
                .map(|(n, _)| n.clone()),
        );
    }
    v
}
