//! The simulated ruleset: tables → chains → rules (and sets/maps), with
//! handles numbered the way the kernel numbers them, and the text `nft list`
//! prints for them.
//!
//! Handle numbering (checked against the captures and the real kernel):
//! * table handles come from one counter per network namespace, shared by all
//!   families, never reused (not even after `flush ruleset`);
//! * chains, rules, named sets and anonymous sets of a table share that
//!   table's counter, starting at 1;
//! * a counter advanced inside a batch that is then aborted stays advanced
//!   (the kernel does not roll handle generators back).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// nftables address families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Arp,
    Bridge,
    Netdev,
}

impl Family {
    pub fn parse(s: &str) -> Option<Family> {
        Some(match s {
            "ip" => Family::Ip,
            "ip6" => Family::Ip6,
            "inet" => Family::Inet,
            "arp" => Family::Arp,
            "bridge" => Family::Bridge,
            "netdev" => Family::Netdev,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

/// Hook, type, priority and policy of a base chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseSpec {
    pub chain_type: String,
    pub hook: String,
    pub priority: i32,
    /// `true` = accept (the default), `false` = drop.
    pub policy_accept: bool,
}

/// Standard priority names nft prints, per family: (name, value, hook the
/// name is restricted to).
fn std_priorities(family: Family) -> &'static [(&'static str, i32, Option<&'static str>)] {
    match family {
        Family::Ip | Family::Ip6 | Family::Inet => &[
            ("raw", -300, None),
            ("mangle", -150, None),
            ("dstnat", -100, Some("prerouting")),
            ("filter", 0, None),
            ("security", 50, None),
            ("srcnat", 100, Some("postrouting")),
        ],
        Family::Bridge => &[
            ("dstnat", -300, Some("prerouting")),
            ("filter", -200, None),
            ("out", 100, Some("output")),
            ("srcnat", 300, Some("postrouting")),
        ],
        Family::Arp | Family::Netdev => &[("filter", 0, None)],
    }
}

/// Resolve a symbolic priority name (`filter`, `srcnat` …) for a family.
pub fn std_priority_value(family: Family, hook: &str, name: &str) -> Option<i32> {
    std_priorities(family)
        .iter()
        .find(|(n, _, h)| *n == name && h.is_none_or(|h| h == hook))
        .map(|(_, v, _)| *v)
}

/// How nft prints a base chain priority: a standard name, a name with an
/// offset of at most 10, or the number.
pub fn priority_text(family: Family, hook: &str, prio: i32) -> String {
    for (name, value, only) in std_priorities(family) {
        if only.is_some_and(|h| h != hook) {
            continue;
        }
        let off = i64::from(prio) - i64::from(*value);
        if off == 0 {
            return name.to_string();
        }
        if off.abs() <= 10 {
            return if off > 0 {
                format!("{name} + {off}")
            } else {
                format!("{name} - {}", -off)
            };
        }
    }
    prio.to_string()
}

impl BaseSpec {
    /// `type filter hook forward priority filter; policy accept;`
    pub fn text(&self, family: Family) -> String {
        format!(
            "type {} hook {} priority {}; policy {};",
            self.chain_type,
            self.hook,
            priority_text(family, &self.hook, self.priority),
            if self.policy_accept { "accept" } else { "drop" }
        )
    }
}

/// What a statement means to the simulator beyond its printed text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StmtKind {
    /// `jump CHAIN`
    Jump(String),
    /// `goto CHAIN`
    Goto(String),
    /// A reference to a named set/map (`@name`).
    SetRef(String),
    /// Terminal verdict.
    Terminal,
    /// `reject ...`: terminal, and only valid under base chains of the
    /// prerouting, input, forward and output hooks.
    Reject,
    /// A NAT statement (`masquerade`, `snat`, `dnat`): terminal, and only
    /// valid in nat chains of the right hook.
    Nat(String),
    /// `... vmap { K : V, ... }`: the chains its verdicts jump/goto to.
    VerdictMap(Vec<String>),
    Other,
}

/// One statement of a rule, kept in the canonical form nft prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stmt {
    pub text: String,
    pub kind: StmtKind,
}

/// A rule: its handle, statements and optional comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub handle: u64,
    pub stmts: Vec<Stmt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Rule {
    /// Point `jump OLD` / `goto OLD` of a rule at chain `new` (a chain renamed from `old`).
    pub fn rename_jumps(&mut self, old: &str, new: &str) {
        for st in self.stmts.iter_mut() {
            match &st.kind {
                StmtKind::Jump(t) if t == old => {
                    st.text = format!("jump {new}");
                    st.kind = StmtKind::Jump(new.to_string());
                }
                StmtKind::Goto(t) if t == old => {
                    st.text = format!("goto {new}");
                    st.kind = StmtKind::Goto(new.to_string());
                }
                _ => {}
            }
        }
    }

    /// The rule body as nft prints it (statements, then the comment).
    pub fn text(&self) -> String {
        rule_text(&self.stmts, self.comment.as_deref())
    }
    /// The chains the rule jumps or goes to, in statement order (no
    /// allocation: the table validation walks these for every rule).
    pub fn jump_targets(&self) -> impl Iterator<Item = &str> {
        self.stmts.iter().flat_map(|s| {
            let (one, many): (Option<&String>, &[String]) = match &s.kind {
                StmtKind::Jump(t) | StmtKind::Goto(t) => (Some(t), &[]),
                StmtKind::VerdictMap(ts) => (None, ts.as_slice()),
                _ => (None, &[]),
            };
            one.into_iter().chain(many).map(String::as_str)
        })
    }
}

/// The body of a rule with these statements and comment as nft prints it
/// (statements, then the comment).
pub fn rule_text(stmts: &[Stmt], comment: Option<&str>) -> String {
    let mut s = stmts
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(c) = comment {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&format!("comment \"{c}\""));
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub name: String,
    pub handle: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Shared like the rules: copying a table's chain list (twice per nft
    /// command) copies no base spec, and a chain stays small. Serialised
    /// as a plain object.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "shared_base")]
    pub base: Option<Arc<BaseSpec>>,
    /// Shared between copies of the ruleset (every nft command works on
    /// copies: its userspace view and its kernel transaction); a chain's
    /// rules are copied only when a command changes that chain. Serialised
    /// as a plain list.
    #[serde(with = "shared_rules")]
    pub rules: Arc<Vec<Rule>>,
}

mod shared_base {
    use super::BaseSpec;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &Option<Arc<BaseSpec>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<BaseSpec>>, D::Error> {
        Option::<BaseSpec>::deserialize(d).map(|b| b.map(Arc::new))
    }
}

mod shared_rules {
    use super::Rule;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &Arc<Vec<Rule>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_slice().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Vec<Rule>>, D::Error> {
        Vec::<Rule>::deserialize(d).map(Arc::new)
    }
}

/// A set element: key text and, for maps, the value text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Element {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Element {
    pub fn text(&self) -> String {
        match &self.value {
            Some(v) => format!("{} : {}", self.key, v),
            None => self.key.clone(),
        }
    }
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    pub name: String,
    pub handle: u64,
    pub is_map: bool,
    pub key_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    pub flags: Vec<String>,
    pub elements: Vec<Element>,
    /// `typeof EXPR` the set was declared with (listed instead of `type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typeof_key: Option<String>,
    /// `auto-merge`: adjacent and overlapping intervals are merged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_merge: bool,
    /// `comment "..."` of the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Set {
    /// `type ipv4_addr` or `type ipv4_addr : verdict` (or `typeof EXPR`).
    pub fn type_text(&self) -> String {
        if let Some(t) = &self.typeof_key {
            return match &self.data_type {
                Some(d) => format!("typeof {t} : {d}"),
                None => format!("typeof {t}"),
            };
        }
        match &self.data_type {
            Some(d) => format!("type {} : {}", self.key_type, d),
            None => format!("type {}", self.key_type),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub handle: u64,
    #[serde(default)]
    pub dormant: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Last handle given to an object of this table (the kernel's
    /// `hgenerator`).
    pub last_handle: u64,
    pub chains: Vec<Chain>,
    pub sets: Vec<Set>,
}

impl Table {
    pub fn alloc_handle(&mut self) -> u64 {
        self.last_handle += 1;
        self.last_handle
    }
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
    pub fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        self.chains.iter_mut().find(|c| c.name == name)
    }
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
    /// How many rules jump or go to `chain`.
    pub fn chain_use(&self, chain: &str) -> usize {
        self.chains
            .iter()
            .flat_map(|c| c.rules.iter())
            .flat_map(|r| r.jump_targets())
            .filter(|t| *t == chain)
            .count()
    }
    pub fn set_use(&self, set: &str) -> usize {
        self.chains
            .iter()
            .flat_map(|c| c.rules.iter())
            .flat_map(|r| r.stmts.iter())
            .filter(|s| matches!(&s.kind, StmtKind::SetRef(n) if n == set))
            .count()
    }
}

/// Listing options (`-a`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListOpts {
    pub handles: bool,
}

fn handle_suffix(opts: ListOpts, h: u64) -> String {
    if opts.handles {
        format!(" # handle {h}")
    } else {
        String::new()
    }
}

/// The body of a set/map block (two tabs of indentation per line).
pub fn set_body(set: &Set) -> String {
    let mut out = format!("\t\t{}\n", set.type_text());
    if !set.flags.is_empty() {
        out.push_str(&format!("\t\tflags {}\n", set.flags.join(",")));
    }
    if set.auto_merge {
        out.push_str("\t\tauto-merge\n");
    }
    if let Some(c) = &set.comment {
        out.push_str(&format!("\t\tcomment \"{c}\"\n"));
    }
    if !set.elements.is_empty() {
        // nft sorts the elements by key and wraps lines by key type.
        let mut elems: Vec<&Element> = set.elements.iter().collect();
        elems.sort_by(|a, b| element_cmp(&set.key_type, &a.key, &b.key));
        let per_line = match set.key_type.as_str() {
            "inet_service" | "mark" | "inet_proto" => 5,
            "ipv4_addr" => 2,
            _ => 1,
        };
        let mut text = String::new();
        for (i, e) in elems.iter().enumerate() {
            if i > 0 {
                if i % per_line == 0 {
                    text.push_str(",\n\t\t\t     ");
                } else {
                    text.push_str(", ");
                }
            }
            text.push_str(&e.text());
        }
        out.push_str(&format!("\t\telements = {{ {text} }}\n"));
    }
    out
}

/// The value an element key starts at: (address or number, and for text the
/// bytes), for ordering and overlap checks.
/// An interval as nft lists it: one value, a prefix when aligned (IPv4),
/// else `lo-hi`.
pub fn interval_text(key_type: &str, lo: u128, hi: u128) -> String {
    let one = |v: u128| -> String {
        match key_type {
            "ipv4_addr" => std::net::Ipv4Addr::from(v as u32).to_string(),
            "ipv6_addr" => std::net::Ipv6Addr::from(v).to_string(),
            _ => v.to_string(),
        }
    };
    if lo == hi {
        return one(lo);
    }
    let width: u32 = match key_type {
        "ipv4_addr" => 32,
        "ipv6_addr" => 128,
        _ => 0,
    };
    let size = hi.wrapping_sub(lo).wrapping_add(1);
    if width > 0 && size.is_power_of_two() && lo.is_multiple_of(size) {
        return format!("{}/{}", one(lo), width - size.trailing_zeros());
    }
    format!("{}-{}", one(lo), one(hi))
}

pub fn element_bounds(key_type: &str, key: &str) -> Option<(u128, u128)> {
    let num = |s: &str| -> Option<u128> {
        match key_type {
            "ipv4_addr" => s
                .parse::<std::net::Ipv4Addr>()
                .ok()
                .map(|a| u128::from(u32::from(a))),
            "ipv6_addr" => s.parse::<std::net::Ipv6Addr>().ok().map(u128::from),
            _ => s.parse::<u128>().ok(),
        }
    };
    let width: u32 = match key_type {
        "ipv4_addr" => 32,
        "ipv6_addr" => 128,
        _ => 0,
    };
    if let Some((a, len)) = key.split_once('/') {
        let a = num(a)?;
        let len: u32 = len.parse().ok()?;
        let host = width.checked_sub(len)?;
        let span = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        return Some((a, a.checked_add(span)?));
    }
    // IPv6 addresses contain no '-', so a dash always means a range.
    if let Some((a, b)) = key.split_once('-') {
        return Some((num(a)?, num(b)?));
    }
    let v = num(key)?;
    Some((v, v))
}

/// The order nft lists set elements in.
pub fn element_cmp(key_type: &str, a: &str, b: &str) -> std::cmp::Ordering {
    match (element_bounds(key_type, a), element_bounds(key_type, b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

pub fn set_block(set: &Set, opts: ListOpts) -> String {
    format!(
        "\t{} {} {{{}\n{}\t}}\n",
        if set.is_map { "map" } else { "set" },
        set.name,
        handle_suffix(opts, set.handle),
        set_body(set)
    )
}

pub fn chain_block(family: Family, chain: &Chain, opts: ListOpts) -> String {
    let mut out = format!(
        "\tchain {} {{{}\n",
        chain.name,
        handle_suffix(opts, chain.handle)
    );
    if let Some(c) = &chain.comment {
        out.push_str(&format!("\t\tcomment \"{c}\"\n"));
    }
    if let Some(b) = &chain.base {
        out.push_str(&format!("\t\t{}\n", b.text(family)));
    }
    for r in chain.rules.iter() {
        out.push_str(&format!(
            "\t\t{}{}\n",
            r.text(),
            handle_suffix(opts, r.handle)
        ));
    }
    out.push_str("\t}\n");
    out
}

/// `table FAMILY NAME { ... }` as `nft list table` prints it. `only_sets`
/// restricts the body to sets (as `list sets` does).
pub fn table_block(t: &Table, opts: ListOpts, what: TableParts) -> String {
    let mut out = format!(
        "table {} {} {{{}\n",
        t.family.as_str(),
        t.name,
        handle_suffix(opts, t.handle)
    );
    if t.dormant {
        out.push_str("\tflags dormant\n");
    }
    if let Some(c) = &t.comment {
        out.push_str(&format!("\tcomment \"{c}\"\n"));
    }
    let mut blocks: Vec<String> = Vec::new();
    if what.sets {
        for s in &t.sets {
            if what.maps_only.is_none_or(|m| m == s.is_map) {
                blocks.push(set_block(s, opts));
            }
        }
    }
    if what.chains {
        for c in &t.chains {
            blocks.push(chain_block(t.family, c, opts));
        }
    }
    out.push_str(&blocks.join("\n"));
    out.push_str("}\n");
    out
}

/// Which parts of a table a listing shows.
#[derive(Debug, Clone, Copy)]
pub struct TableParts {
    pub sets: bool,
    pub chains: bool,
    /// `Some(true)`: maps only, `Some(false)`: sets only.
    pub maps_only: Option<bool>,
}

impl TableParts {
    pub const ALL: TableParts = TableParts {
        sets: true,
        chains: true,
        maps_only: None,
    };
}
