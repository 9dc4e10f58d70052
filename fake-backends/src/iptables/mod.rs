//! Simulated `iptables` / `ip6tables` (the nf_tables variant, v1.8.9, as
//! installed on the reference host).
//!
//! The state is a set of tables, each with its builtin chains (and their
//! policies) and user chains; every rule is kept in the canonical text form
//! that `iptables -S` and `iptables-save` print (`-p tcp --dport 53` becomes
//! `-p tcp -m tcp --dport 53`, addresses are masked and get a prefix length,
//! long options become short ones). Deleting or checking a rule by
//! specification compares canonical forms, as the kernel compares the
//! compiled rule.
//!
//! Like the nf_tables variant, a table only comes into existence when a
//! command writes to it (`-N`, `-A`, `-I`, `-R`, `-P`); until then `-S`
//! shows the builtin policies, `iptables-save` omits it, and commands naming
//! one of its builtin chains fail with "No chain/target/match by that name.".
//!
//! Every table, chain and rule also carries its nftables handle (table
//! handles from the namespace counter shared with nft, see
//! [`XtablesState::exec_shared`]; chain and rule handles from the table's
//! counter), so `nft -a` lists them as the kernel numbers them: a builtin
//! chain exists in the kernel only once written to, `-R` keeps the replaced
//! rule's handle and `-E` the chain's. The nft side of the shared ruleset
//! is [`crate::xtnft`].
//!
//! Error messages and exit statuses are those of iptables v1.8.9 (nf_tables),
//! collected by running the real tool in a fresh network namespace
//! (see `tests/differential.rs`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use virtnet_runner::Output;

mod args;
mod model;
mod output;
pub(crate) use args::*;
pub use model::*;
pub(crate) use output::*;

const VERSION: &str = "v1.8.9 (nf_tables)";

#[derive(Debug, Clone)]
enum Fail {
    /// Parameter problem: exit 2 with the "Try ..." trailer.
    Param(String),
    /// Parameter problem whose message carries its own trailing newline
    /// (an empty line precedes the "Try" line).
    ParamNl(String),
    /// Bare "Bad argument" message (exit 2, no program prefix).
    BadArg(String),
    /// A kernel/library error: `iptables: MSG.` exit 1.
    Other(String),
    /// A netlink batch error: `iptables v1.8.9 (nf_tables):  MSG` exit 4.
    Netlink(String),
    /// `iptables v1.8.9 (nf_tables): MSG` exit 1.
    Versioned(String),
    /// Table does not exist: exit 3.
    NoTable(String),
}

impl Fail {
    fn output(self, fam: Family) -> Output {
        let prog = fam.prog();
        let try_line = format!("Try `{prog} -h' or '{prog} --help' for more information.\n");
        match self {
            Fail::Param(m) => Output::failed(2, format!("{prog} {VERSION}: {m}\n{try_line}")),
            Fail::ParamNl(m) => Output::failed(2, format!("{prog} {VERSION}: {m}\n\n{try_line}")),
            Fail::BadArg(a) => Output::failed(2, format!("Bad argument `{a}'\n{try_line}")),
            Fail::Other(m) => Output::failed(1, format!("{prog}: {m}.\n")),
            Fail::Versioned(m) => Output::failed(1, format!("{prog} {VERSION}: {m}\n")),
            Fail::Netlink(m) => Output::failed(4, format!("{prog} {VERSION}:  {m}\n")),
            Fail::NoTable(t) => Output::failed(
                3,
                format!(
                    "{prog} {VERSION}: table '{t}' does not exist\nPerhaps iptables or your kernel needs to be upgraded.\n"
                ),
            ),
        }
    }
}

const NO_CHAIN: &str = "No chain/target/match by that name";
const BAD_RULE: &str = "Bad rule (does a matching rule exist in that chain?)";

impl XtablesState {
    /// Run `iptables ARGS...` (argv without the program name) on its own:
    /// new tables get handles after the highest one this state holds. On a
    /// host, use [`XtablesState::exec_shared`] so table handles come from
    /// the namespace counter shared with nft.
    pub fn exec(&mut self, args: &[String]) -> Output {
        let mut next = self.tables.values().map(|t| t.handle).max().unwrap_or(0);
        self.exec_shared(args, &mut || {
            next += 1;
            next
        })
    }

    /// Run `iptables ARGS...`; `alloc_table_handle` gives the nftables
    /// handle of a table this command creates.
    pub fn exec_shared(
        &mut self,
        args: &[String],
        alloc_table_handle: &mut dyn FnMut() -> u64,
    ) -> Output {
        self.exec_addressed(args, alloc_table_handle, &mut |_| None)
            .0
    }

    /// Run `iptables ARGS...` like [`XtablesState::exec_shared`], and say
    /// which table the command addressed and whether it may have changed it
    /// (every command but `-L`/`-S`/`-C`; a failed write may still have created
    /// its table). `refuse_write` is asked, once the command line parsed,
    /// before a command that may write to table T runs: `Some(message)`
    /// refuses it (exit 1, that message on stderr, nothing changed).
    pub fn exec_addressed(
        &mut self,
        args: &[String],
        alloc_table_handle: &mut dyn FnMut() -> u64,
        refuse_write: &mut dyn FnMut(&str) -> Option<String>,
    ) -> (Output, Option<Addressed>) {
        let fam = self.family;
        let mut addressed = None;
        let out = match self.exec_inner(args, alloc_table_handle, refuse_write, &mut addressed) {
            Ok(out) => out,
            Err(f) => f.output(fam),
        };
        (out, addressed)
    }

    fn exec_inner(
        &mut self,
        args: &[String],
        alloc: &mut dyn FnMut() -> u64,
        refuse_write: &mut dyn FnMut(&str) -> Option<String>,
        addressed: &mut Option<Addressed>,
    ) -> Result<Output, Fail> {
        if args.iter().any(|a| a == "-h" || a == "--help") {
            return Ok(Output::ok(format!(
                "{} {VERSION}\n\n(help text is not simulated)\n",
                self.family.prog()
            )));
        }
        if args.iter().any(|a| a == "-V" || a == "--version") {
            return Ok(Output::ok(format!("{} {VERSION}\n", self.family.prog())));
        }
        let parsed = parse(args, self.family)?;
        let p = &parsed;
        let writes = !matches!(p.cmd, CmdKind::List | CmdKind::ListRules | CmdKind::Check);
        if writes {
            if let Some(msg) = refuse_write(&p.table) {
                return Ok(Output::failed(1, msg));
            }
        }
        *addressed = Some(Addressed {
            table: p.table.clone(),
            writes,
        });
        let fam = self.family;
        let builtins = builtin_chains(&p.table).ok_or_else(|| Fail::NoTable(p.table.clone()))?;
        let drops = match p.cmd {
            CmdKind::Policy => p.arg2.as_deref() == Some("DROP"),
            _ => p.spec.target.as_ref().is_some_and(|t| t.name == "DROP"),
        };
        if p.table == "nat" && drops {
            return Err(Fail::ParamNl(
                "\nThe \"nat\" table is not intended for filtering, the use of DROP is therefore inhibited.\n".into(),
            ));
        }
        let _ = &p.has_rule_opts;
        match p.cmd {
            CmdKind::ListRules => self.list_rules(p, builtins),
            CmdKind::List => self.list(p, builtins),
            CmdKind::NewChain => self.new_chain(p, builtins, alloc),
            CmdKind::DeleteChain => self.delete_chain(p),
            CmdKind::Flush | CmdKind::Zero => self.flush_or_zero(p, builtins, alloc),
            CmdKind::Policy => self.set_policy(p, builtins, alloc),
            CmdKind::Rename => self.rename_chain(p),
            CmdKind::Append
            | CmdKind::Insert
            | CmdKind::Replace
            | CmdKind::Delete
            | CmdKind::Check => self.rule_cmd(p, builtins, alloc, fam),
        }
    }

    /// `-N`: a user chain (its name checked as iptables checks it).
    fn new_chain(
        &mut self,
        p: &Parsed,
        builtins: &[&str],
        alloc: &mut dyn FnMut() -> u64,
    ) -> Result<Output, Fail> {
        let name = p.chain.clone().unwrap_or_default();
        if name.len() > 28 {
            return Err(Fail::Param(format!(
                "chain name `{name}' too long (must be under 29 chars)"
            )));
        }
        if builtins.contains(&name.as_str()) || STD_TARGETS.contains(&name.as_str()) {
            if builtins.contains(&name.as_str()) {
                return Err(Fail::Other("Chain already exists".into()));
            }
            return Err(Fail::Param(format!("chain name `{name}' is reserved")));
        }
        let t = self.ensure_table(&p.table, alloc);
        if t.chains.contains_key(&name) {
            return Err(Fail::Other("Chain already exists".into()));
        }
        let handle = Some(t.alloc_handle());
        t.chains.insert(
            name,
            Chain {
                handle,
                ..Chain::default()
            },
        );
        Ok(Output::default())
    }

    /// `-X [chain]`: one chain or every unreferenced user chain, as one batch.
    fn delete_chain(&mut self, p: &Parsed) -> Result<Output, Fail> {
        let Some(t) = self.tables.get_mut(&p.table) else {
            return match &p.chain {
                None => Ok(Output::default()),
                Some(_) => Err(Fail::Other(NO_CHAIN.into())),
            };
        };
        // One nf_tables batch: any failing chain deletes nothing.
        // A builtin chain in the kernel goes too when it is empty
        // with policy ACCEPT (by name, or with `-X` alone); named,
        // a policy DROP keeps it ("Directory not empty").
        let names: Vec<String> = match &p.chain {
            Some(c) => {
                let Some(ch) = t.chains.get(c) else {
                    return Err(Fail::Other(NO_CHAIN.into()));
                };
                if ch.policy.is_some() {
                    if ch.handle.is_none() {
                        return Err(Fail::Other(NO_CHAIN.into()));
                    }
                    if ch.policy.as_deref() == Some("DROP") {
                        return Err(Fail::Other("Directory not empty".into()));
                    }
                }
                vec![c.clone()]
            }
            None => t
                .chains
                .iter()
                .filter(|(_, c)| {
                    c.policy.is_none()
                        || (c.handle.is_some()
                            && c.rules.is_empty()
                            && c.policy.as_deref() == Some("ACCEPT"))
                })
                .map(|(n, _)| n.clone())
                .collect(),
        };
        for n in &names {
            let refs = refcount(t, n);
            let busy = t.chains.get(n).is_some_and(|c| !c.rules.is_empty());
            if refs > 0 || busy {
                return Err(Fail::Netlink(format!(
                    "CHAIN_DEL failed (Device or resource busy): chain {n}"
                )));
            }
        }
        for n in names {
            match t.chains.get_mut(&n) {
                Some(c) if c.policy.is_some() => c.handle = None,
                _ => {
                    t.chains.remove(&n);
                }
            }
        }
        Ok(Output::default())
    }

    /// `-F` / `-Z`: empty a chain (or all) or reset its counters.
    fn flush_or_zero(
        &mut self,
        p: &Parsed,
        builtins: &[&str],
        alloc: &mut dyn FnMut() -> u64,
    ) -> Result<Output, Fail> {
        // Flushing a builtin chain creates its table (and the chain).
        if p.cmd == CmdKind::Flush && p.chain.as_deref().is_some_and(|c| builtins.contains(&c)) {
            self.ensure_table(&p.table, alloc);
        }
        let Some(t) = self.tables.get_mut(&p.table) else {
            return match &p.chain {
                None => Ok(Output::default()),
                Some(_) => Err(Fail::Other(NO_CHAIN.into())),
            };
        };
        match &p.chain {
            Some(c) => {
                if !t.chains.contains_key(c) {
                    return Err(Fail::Other(NO_CHAIN.into()));
                }
                // Flushing a builtin chain creates it in the kernel;
                // zeroing one that does not exist there fails.
                if p.cmd == CmdKind::Flush {
                    t.instantiate(c);
                } else if t.chains.get(c).is_some_and(|ch| ch.handle.is_none()) {
                    return Err(Fail::Other(NO_CHAIN.into()));
                }
                if let Some(ch) = t.chains.get_mut(c) {
                    if p.cmd == CmdKind::Flush {
                        ch.rules.clear();
                    }
                }
            }
            None => {
                if p.cmd == CmdKind::Flush {
                    for ch in t.chains.values_mut() {
                        ch.rules.clear();
                    }
                }
            }
        }
        Ok(Output::default())
    }

    /// `-P chain target`: a builtin chain's policy.
    fn set_policy(
        &mut self,
        p: &Parsed,
        builtins: &[&str],
        alloc: &mut dyn FnMut() -> u64,
    ) -> Result<Output, Fail> {
        let chain = p.chain.clone().unwrap_or_default();
        let pol = p.arg2.clone().unwrap_or_default();
        if !builtins.contains(&chain.as_str()) {
            return Err(Fail::Other("Bad built-in chain name".into()));
        }
        if pol != "ACCEPT" && pol != "DROP" {
            return Err(Fail::Other(
                "Bad policy name. Run `dmesg' for more information".into(),
            ));
        }
        let t = self.ensure_table(&p.table, alloc);
        t.instantiate(&chain);
        if let Some(c) = t.chains.get_mut(&chain) {
            c.policy = Some(pol);
        }
        Ok(Output::default())
    }

    /// `-E old new`: rename a user chain and the jumps to it.
    fn rename_chain(&mut self, p: &Parsed) -> Result<Output, Fail> {
        let old = p.chain.clone().unwrap_or_default();
        let new = p.arg2.clone().unwrap_or_default();
        let Some(t) = self.tables.get_mut(&p.table) else {
            return Err(Fail::Other(NO_CHAIN.into()));
        };
        if t.chains.contains_key(&new) {
            return Err(Fail::Other("File exists".into()));
        }
        match t.chains.get(&old) {
            Some(c) if c.policy.is_none() => {}
            _ => return Err(Fail::Other(NO_CHAIN.into())),
        }
        if let Some(c) = t.chains.remove(&old) {
            t.chains.insert(new.clone(), c);
        }
        for ch in t.chains.values_mut() {
            for r in ch.rules.iter_mut() {
                if r.jump.as_deref() == Some(old.as_str()) {
                    r.jump = Some(new.clone());
                    r.spec = rename_target(&r.spec, &old, &new);
                    if let Some(nr) = r.nft_rule.as_mut() {
                        nr.rename_jumps(&old, &new);
                    }
                }
            }
        }
        Ok(Output::default())
    }

    /// `-A`/`-I`/`-R`/`-D`/`-C`: the commands that take a rule (or a rule number).
    fn rule_cmd(
        &mut self,
        p: &Parsed,
        builtins: &[&str],
        alloc: &mut dyn FnMut() -> u64,
        fam: Family,
    ) -> Result<Output, Fail> {
        let chain: &str = p.chain.as_deref().unwrap_or_default();
        let rulenum: Option<usize> = p.arg2.as_ref().and_then(|n| n.parse().ok());
        if p.cmd == CmdKind::Delete && rulenum.is_some() {
            let Some(t) = self.tables.get_mut(&p.table) else {
                return Err(Fail::Other(NO_CHAIN.into()));
            };
            let ch = t
                .chains
                .get_mut(chain)
                .filter(|c| c.handle.is_some())
                .ok_or_else(|| Fail::Other(NO_CHAIN.into()))?;
            let n = rulenum.unwrap_or(1);
            if n > ch.rules.len() {
                return Err(Fail::Other("Index of deletion too big".into()));
            }
            ch.rules.remove(n - 1);
            return Ok(Output::default());
        }
        // Builtin chain interface restrictions.
        if let Some((_, _)) = &p.spec.oif {
            if chain == "INPUT" || chain == "PREROUTING" {
                return Err(Fail::ParamNl(format!("Can't use -o with {chain}")));
            }
        }
        if let Some((_, _)) = &p.spec.iif {
            if chain == "OUTPUT" || chain == "POSTROUTING" {
                return Err(Fail::ParamNl(format!("Can't use -i with {chain}")));
            }
        }
        // The addressed table and chain as they are before the
        // command (looked up once).
        let existing = self.tables.get(&p.table);
        let existing_chain = existing.and_then(|t| t.chains.get(chain));
        let table_exists = existing.is_some();
        // Resolve the target.
        let mut jump = None;
        if let Some(t) = &p.spec.target {
            let name = t.name.as_str();
            let known = STD_TARGETS.contains(&name) || target_opts(name).is_some();
            if !known {
                let exists = existing
                    .is_some_and(|tb| tb.chains.get(name).is_some_and(|c| c.policy.is_none()));
                if !exists {
                    return Err(Fail::Param(format!("Chain '{name}' does not exist")));
                }
                jump = Some(name.to_string());
            } else if p.spec.goto && !exists_user(&self.tables, &p.table, name) {
                return Err(Fail::Param(format!("Chain '{name}' does not exist")));
            }
        }
        let spec_text = p.spec.render(fam);
        let spec_text: &str = &spec_text;
        if matches!(p.cmd, CmdKind::Delete | CmdKind::Check) {
            let Some(t) = self.tables.get_mut(&p.table) else {
                return Err(Fail::Other(BAD_RULE.into()));
            };
            let Some(ch) = t.chains.get_mut(chain) else {
                return Err(Fail::Other(BAD_RULE.into()));
            };
            let pos = ch
                .rules
                .iter()
                .position(|r| !r.incompatible && r.spec == spec_text);
            return match pos {
                None => Err(Fail::Other(BAD_RULE.into())),
                Some(i) => {
                    if p.cmd == CmdKind::Delete {
                        ch.rules.remove(i);
                    }
                    Ok(Output::default())
                }
            };
        }
        if !table_exists && !builtins.contains(&chain) {
            return Err(Fail::Other(NO_CHAIN.into()));
        }
        // The chain must exist (in the kernel, for -R) before the
        // kernel gets to judge the rule.
        if table_exists && existing_chain.is_none() {
            return Err(Fail::Other(NO_CHAIN.into()));
        }
        // Rule positions are checked against nft's cache before
        // anything is sent.
        let len = existing_chain.map(|c| c.rules.len()).unwrap_or(0);
        let n = rulenum.unwrap_or(1);
        let in_kernel = existing_chain.is_some_and(|c| c.handle.is_some());
        if p.cmd == CmdKind::Replace && !in_kernel {
            return Err(Fail::Other(NO_CHAIN.into()));
        }
        match p.cmd {
            CmdKind::Insert if n > len + 1 => {
                return Err(Fail::Other("Index of insertion too big".into()))
            }
            CmdKind::Replace if n > len => {
                return Err(Fail::Other("Index of replacement too big".into()))
            }
            _ => {}
        }
        // Kernel-side validation of the target for the table/hook.
        // Inserting after the last rule is an append for nf_tables.
        let verb = match p.cmd {
            CmdKind::Append => "RULE_APPEND",
            CmdKind::Insert if n > 1 && n == len + 1 => "RULE_APPEND",
            CmdKind::Insert => "RULE_INSERT",
            _ => "RULE_REPLACE",
        };
        let bad_target = p
            .spec
            .target
            .as_ref()
            .is_some_and(|t| !target_allowed(&t.name, &p.table, chain));
        let any_negated = p
            .spec
            .src
            .as_ref()
            .is_some_and(|(n, a)| *n && a.ends_with("/0"))
            || p.spec
                .dst
                .as_ref()
                .is_some_and(|(n, a)| *n && a.ends_with("/0"));
        if bad_target || any_negated {
            // The kernel aborts the batch, but the handles it gave
            // out (a new table's, a new builtin chain's, the rule's)
            // stay taken.
            match self.tables.get_mut(&p.table) {
                None => {
                    alloc();
                }
                Some(t) => {
                    if t.chains.get(chain).is_some_and(|c| c.handle.is_none()) {
                        t.alloc_handle();
                    }
                    if p.cmd != CmdKind::Replace {
                        t.alloc_handle();
                    }
                }
            }
            return Err(Fail::Netlink(format!(
                "{verb} failed (Invalid argument): rule in chain {chain}"
            )));
        }
        let t = self.ensure_table(&p.table, alloc);
        let Some(ch) = t.chains.get_mut(chain) else {
            return Err(Fail::Other(NO_CHAIN.into()));
        };
        // `Table::instantiate`, then the rule's handle: a replaced
        // rule keeps its handle; the others take the next one of the
        // table (even if the insertion then fails).
        if ch.handle.is_none() {
            t.last_handle += 1;
            ch.handle = Some(t.last_handle);
        }
        let old_handle = match p.cmd {
            CmdKind::Replace => rulenum
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| ch.rules.get(i))
                .map(|r| r.handle),
            _ => None,
        };
        let handle = match old_handle {
            Some(h) => h,
            None => {
                t.last_handle += 1;
                t.last_handle
            }
        };
        let rule = Rule {
            spec: spec_text.to_string(),
            jump,
            handle,
            nft_rule: None,
            incompatible: false,
        };
        match p.cmd {
            CmdKind::Append => ch.rules.push(rule),
            CmdKind::Insert => {
                let n = rulenum.unwrap_or(1);
                if n > ch.rules.len() + 1 {
                    return Err(Fail::Other("Index of insertion too big".into()));
                }
                ch.rules.insert(n - 1, rule);
            }
            _ => {
                let n = rulenum.unwrap_or(1);
                if n > ch.rules.len() {
                    return Err(Fail::Other("Index of replacement too big".into()));
                }
                ch.rules[n - 1] = rule;
            }
        }
        Ok(Output::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(st: &mut XtablesState, line: &str) -> Output {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        st.exec(&args)
    }

    #[test]
    fn canonical_forms() {
        let mut st = XtablesState::new(Family::V4);
        assert_eq!(run(&mut st, "-w -N FOO").status, 0);
        let o = run(&mut st, "-w --table filter --insert FOO --in-interface virbr0 --protocol tcp --destination-port 53 --jump ACCEPT");
        assert_eq!(o, Output::default());
        run(
            &mut st,
            "-w -A FOO --source 192.168.122.7/24 ! --destination 10.1.2.3 -j REJECT",
        );
        let o = run(&mut st, "-w -S FOO");
        assert_eq!(
            o.stdout,
            "-N FOO\n-A FOO -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT\n-A FOO -s 192.168.122.0/24 ! -d 10.1.2.3/32 -j REJECT --reject-with icmp-port-unreachable\n"
        );
        let o = run(
            &mut st,
            "-w -D FOO -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT",
        );
        assert_eq!(o.status, 0, "{o:?}");
        let o = run(
            &mut st,
            "-w -D FOO -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT",
        );
        assert_eq!(o.status, 1);
        assert_eq!(
            o.stderr,
            "iptables: Bad rule (does a matching rule exist in that chain?).\n"
        );
    }

    #[test]
    fn errors() {
        let mut st = XtablesState::new(Family::V4);
        assert_eq!(run(&mut st, "-w -N FOO").status, 0);
        let o = run(&mut st, "-w -N FOO");
        assert_eq!(
            (o.status, o.stderr.as_str()),
            (1, "iptables: Chain already exists.\n")
        );
        let o = run(&mut st, "-w -A FOO --bogus");
        assert_eq!(o.status, 2);
        assert!(o
            .stderr
            .starts_with("iptables v1.8.9 (nf_tables): unknown option \"--bogus\"\n"));
        let o = run(&mut st, "-w -t bogus -S");
        assert_eq!(o.status, 3);
    }
}
