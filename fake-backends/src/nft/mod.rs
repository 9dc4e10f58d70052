//! Simulated `nft`: tables, chains, rules, handles, echo and list output as the
//! real tool prints them.
//!
//! Interface contract (used by the host in `lib.rs`): `NftState::exec` takes the
//! arguments after `nft` and the standard input (for `-f -`), changes the state
//! as the kernel would, and returns what the real tool would print and exit with.
//! The host may call [`NftState::set_links`] with the devices that exist, so
//! `iif`/`oif` fail like the real nft for unknown devices.
//!
//! How one invocation runs (mirroring nft 1.0.6 + the kernel):
//! 1. options (`-a`, `-e`, `-c`, `-n`/`-nn`, `-s`, `-t`, `-y`, `-p`, `-j`,
//!    `-v`/`-V`/`-h`, long forms, combined as `-ae`, `-f -`, `-f FILE` read
//!    from the real file system; getopt's "invalid option" and nft's
//!    "options must be specified before commands");
//! 2. the argv is joined with spaces into one line (or the file or stdin
//!    is read), scanned and parsed — a fresh parse every time; syntax errors
//!    are collected (the parser resynchronises at the next separator, as
//!    bison does);
//! 3. every parsed command is *evaluated* in userspace against nft's cache
//!    (table missing for `add chain`, unknown device for `iif`, symbols,
//!    protocols, `index N`, unknown set); any error so far is printed (syntax
//!    errors first) and nothing is sent: such errors consume nothing;
//! 4. the whole batch is applied to a copy of the ruleset as the kernel's
//!    transaction would; every failing message is reported with nft's
//!    "Could not process rule: ..." / "did you mean ..." text, and if any
//!    failed nothing changes (but handle counters stay advanced, as in the
//!    kernel);
//! 5. on success the generation counter goes up by one (if the batch changed
//!    anything) and, with `-e`, the new objects are echoed, followed by
//!    `# new generation N by process PID (nft)` when the batch's first
//!    message asked for echo.
//!
//! The pid in that line is [`FAKE_PID`]: a real pid cannot be reproduced.
//! The generation starts at 1 like a fresh network namespace's, so the first
//! change prints generation 2.
//!
//! Simulated: families ip, ip6, inet, arp, bridge, netdev; tables (comment,
//! `flags dormant`), chains (base chains with type/hook/priority/policy,
//! comments, `rename chain`), rules (`position`/`handle`/`index`, `replace
//! rule`), named sets and maps (`typeof` too; `interval`/`constant` flags,
//! `auto-merge`) and their elements (`get element`), `table NAME { ... }`
//! blocks, verb-less `chain`/`rule`/`set`/`element`, `define NAME = VALUE` /
//! `$NAME`; `list ruleset|tables|table|chain|chains|sets|maps|set|map`,
//! `flush ruleset`; the rule statements listed in `parser.rs`; `-j` listings
//! (`json.rs`) and the output options (`output.rs`). Anything else fails
//! with `Error: command not simulated: ...` (exit 1) — never a silent
//! success.
//!
//! Invariants (checked against the captures and the real kernel):
//!
//! * list commands inside a batch print after the whole batch was
//!   evaluated, from nft's cache: the ruleset before the batch plus every
//!   table, chain and set the batch adds, without the batch's rules;
//! * handles: see `model.rs`; failed kernel-stage messages keep the handles
//!   they took, userspace errors take none;
//! * each committed batch with a non-empty transaction adds 1 to the
//!   generation (re-adding an existing table or element, or flushing an
//!   empty chain, is no transaction);
//! * echo: `add|create|insert <object as listed> # handle N`; a rule echo
//!   names the previous rule unless the rule is first or last in its chain
//!   after the commit; `-e` echoes a rule's anonymous sets in the order
//!   written, the listing sorts them;
//! * `iif`/`oif` need the device to exist only when the host called
//!   [`NftState::set_links`] with `Some`;
//! * iptables-nft's tables are ordinary tables here, mirrored in by
//!   [`crate::xtnft`] and marked in `xt_tables`: nft lists them, can delete
//!   or flush them, and prints `# Warning: table F N is managed by
//!   iptables-nft, do not touch!` on stderr before listing one that holds
//!   an xtables expression. Once a run printed an xtables NAT target of one
//!   family, those of the other family print as an empty statement and
//!   `XT target NAME not found` on stderr, as the real nft does;
//! * counters are always 0 (no traffic is simulated).
//!
//! Known gaps (fail as "not simulated" unless noted): statements beyond the
//! subset (quota, most meta and ct keys, ether/arp/vlan matches, `log
//! flags`, byte-rate limits, concatenations), named objects, flowtables,
//! `reset`, `monitor`, `describe`, `-i`, JSON input, `-j -e`, timeouts,
//! table flags other than `dormant`, netdev/bridge device chains, host
//! names and service names not in /etc/services (reported with the
//! resolver's error); `-c` runs the batch and throws the result away,
//! keeping the handles taken; a misspelt set type gives "not simulated"
//! (nft reports two errors); syntax error texts are exact for the cases
//! the differential tests cover — elsewhere the first line starts with
//! `Error: syntax error,` but the "expecting ..." list may differ.

mod json;
mod lexer;
mod misspell;
mod model;
mod output;
mod parser;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use virtnet_runner::Output;

use lexer::{Loc, Source};

/// What [`parsed`] gives: the commands and syntax errors of a source, or
/// the scanner's error.
type Parsed = Result<(Vec<Command>, Vec<InputError>), (Loc, String)>;

/// Scans and parses `src` (a fresh parse every time: a memo of parses
/// saved about 7% of `cargo xtask conformance`'s CPU time and was removed).
fn parsed(src: &Source) -> Arc<Parsed> {
    Arc::new(lexer::tokenize(src).map(|toks| parser::parse(&toks)))
}
use model::{chain_block, set_block, table_block, ListOpts, TableParts};
pub use model::{BaseSpec, Chain, Element, Family, Rule, Set, Stmt, StmtKind, Table};
use parser::{Command, InputError, Named, Op, PosKind, RuleBody, RulePos, SetDecl, TableRef};

/// The process id printed in `# new generation N by process PID (nft)`.
pub const FAKE_PID: u32 = 4242;

/// The nftables ruleset of one simulated network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftState {
    /// Shared between copies of the ruleset (every nft command works on two
    /// copies: its userspace view and its kernel transaction); a table is
    /// copied only when a command changes it (`Arc::make_mut`).
    tables: Vec<Arc<Table>>,
    /// Last table handle given out in this namespace.
    last_table_handle: u64,
    /// The ruleset generation (1 in a fresh namespace).
    generation: u64,
    /// Network devices that exist, for `iif`/`oif` (nft resolves them to an
    /// index). `None` = any name is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    links: Option<Arc<BTreeSet<String>>>,
    /// The tables iptables-nft owns (mirrored here from the iptables
    /// states by `crate::xtnft`), and whether nft warns about each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    xt_tables: Arc<Vec<XtTable>>,
}

/// What one nft run printed on stderr while listing, and for which family
/// it loaded the xtables NAT extension.
#[derive(Debug, Default)]
struct XtDiag {
    text: String,
    nat_family: Option<Family>,
}

/// A table written by iptables-nft, as nft sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XtTable {
    pub family: Family,
    pub name: String,
    pub handle: u64,
    /// Some rule uses an xtables (compat) expression: nft then prints
    /// "# Warning: table ... is managed by iptables-nft, do not touch!" on
    /// stderr before listing the table.
    pub warn: bool,
    /// The chains holding such rules (`list chain` warns only for those).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compat_chains: Vec<String>,
}

impl Default for NftState {
    fn default() -> Self {
        NftState::new()
    }
}

/// Errno values the simulated kernel returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errno {
    NoEnt,
    Exist,
    Busy,
    NotSupp,
    MLink,
}

impl Errno {
    fn text(self) -> &'static str {
        match self {
            Errno::NoEnt => "No such file or directory",
            Errno::Exist => "File exists",
            Errno::Busy => "Device or resource busy",
            Errno::NotSupp => "Operation not supported",
            Errno::MLink => "Too many links",
        }
    }
}

/// A kernel-stage failure: which errno, at which part of the command.
struct KernelError {
    errno: Errno,
    loc: Loc,
    /// The error points at an attribute of the command (so ENOENT gets nft's
    /// fuzzy "did you mean" treatment), not at the whole command.
    attr: bool,
}

/// What to echo after a successful commit.
enum Echo {
    /// Nothing printed: the command's first message was a delete (an
    /// auto-merge replacing elements), so the kernel echoes no generation.
    DeleteFirst,
    /// Fully rendered when the command was applied.
    Text(String),
    /// A rule: the kernel reports its position (the previous rule) from the
    /// committed chain, unless the rule is first or last there.
    Rule {
        head: String,
        family: Family,
        table: String,
        chain: String,
        handle: u64,
        body: String,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Opts {
    handles: bool,
    echo: bool,
}

/// Which objects nft has in its cache when it looks for "did you mean"
/// suggestions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CacheLevel {
    Empty,
    Full,
}

/// A kernel error that points at an attribute of the message (at `loc`).
fn attr_error(errno: Errno, loc: Loc) -> Vec<KernelError> {
    vec![KernelError {
        errno,
        loc,
        attr: true,
    }]
}

/// The ` # handle N` an echoed object ends with under `-a`.
fn handle_comment(opts: Opts, n: u64) -> String {
    if opts.handles {
        format!(" # handle {n}")
    } else {
        String::new()
    }
}

/// The verb an echoed `add`/`create` command is printed with.
fn create_or_add(create: bool) -> &'static str {
    if create {
        "create"
    } else {
        "add"
    }
}

fn fail(msg: String) -> Output {
    Output::failed(1, msg)
}

/// Interval elements merged where they overlap or touch (`auto-merge`),
/// in order; `None` when an element is not an interval of a known type.
fn merge_intervals(key_type: &str, elems: &[Element]) -> Option<Vec<Element>> {
    let mut spans: Vec<(u128, u128)> = elems
        .iter()
        .map(|e| model::element_bounds(key_type, &e.key))
        .collect::<Option<_>>()?;
    spans.sort();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (lo, hi) in spans {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    Some(
        merged
            .into_iter()
            .map(|(lo, hi)| Element {
                key: model::interval_text(key_type, lo, hi),
                value: None,
            })
            .collect(),
    )
}

/// `... vmap { k : jump OLD, ... }` with OLD renamed.
fn rename_verdict_targets(text: &str, old: &str, new: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let after_verdict = i > 0 && matches!(words[i - 1], "jump" | "goto");
        let bare = w.trim_end_matches(',');
        if after_verdict && bare == old {
            out.push(format!("{new}{}", &w[bare.len()..]));
        } else {
            out.push((*w).to_string());
        }
    }
    out.join(" ")
}

/// nft refuses options after the first command word (it scans argv up to
/// the first word starting with `{`); the marker line goes to stdout.
fn options_after_command(args: &[String]) -> Option<Output> {
    let mut pos = "nft".len() + 1;
    let mut command_seen = false;
    for a in args {
        if a.starts_with('{') {
            break;
        }
        if a.starts_with('-') {
            if command_seen {
                let mut line = String::from("nft ");
                for w in args {
                    line.push_str(w);
                    line.push(' ');
                }
                return Some(Output {
                    status: 1,
                    stdout: format!("\n   ^{}~~\n", " ".repeat(pos.saturating_sub(4))),
                    stderr: format!(
                        "Error: syntax error, options must be specified before commands\n{line}"
                    ),
                });
            }
        } else {
            command_seen = true;
        }
        pos += a.len() + 1;
    }
    None
}

impl NftState {
    pub fn new() -> Self {
        NftState {
            tables: Vec::new(),
            last_table_handle: 0,
            generation: 1,
            links: None,
            xt_tables: Arc::new(Vec::new()),
        }
    }

    /// Tell the simulator which network devices exist (for `iif`/`oif`,
    /// which real nft resolves to an interface index and rejects with
    /// "Interface does not exist" otherwise). `None` accepts any name.
    pub fn set_links(&mut self, links: Option<BTreeSet<String>>) {
        self.links = links.map(Arc::new);
    }

    /// The namespace's table handle counter (last handle given).
    pub fn table_handle_counter(&self) -> u64 {
        self.last_table_handle
    }

    /// Put the table handle counter back (a refused, not simulated command
    /// leaves the host unchanged).
    pub fn set_table_handle_counter(&mut self, v: u64) {
        self.last_table_handle = v;
    }

    /// Take the next table handle of the namespace (iptables-nft creating a
    /// table).
    pub fn alloc_table_handle(&mut self) -> u64 {
        self.last_table_handle += 1;
        self.last_table_handle
    }

    /// The tables, mutable (for the iptables-nft bridge).
    pub(crate) fn tables_mut(&mut self) -> &mut Vec<Arc<Table>> {
        &mut self.tables
    }

    /// The iptables-nft tables as last mirrored.
    pub fn xt_tables(&self) -> &[XtTable] {
        &self.xt_tables
    }

    /// Record which tables iptables-nft owns.
    pub(crate) fn set_xt_tables(&mut self, v: Vec<XtTable>) {
        self.xt_tables = Arc::new(v);
    }

    /// Table `t` as nft lists it, with what it prints on stderr first:
    /// for a table of iptables-nft, the "managed by iptables-nft" warning,
    /// and nft's failure to decompile an xtables NAT target
    /// (`MASQUERADE`, `SNAT`, `DNAT`) of one family once it has printed one
    /// of the other family in this run (its libxtables loads the NAT
    /// extension for the first family only): the statement is left empty
    /// and "XT target NAME not found" goes to stderr. `chain` restricts
    /// that to one chain (`list chain`).
    fn xt_listing<'a>(
        &self,
        t: &'a Table,
        diag: &mut XtDiag,
        chain: Option<&str>,
    ) -> std::borrow::Cow<'a, Table> {
        let Some(mark) = self
            .xt_tables
            .iter()
            .find(|x| x.family == t.family && x.name == t.name && x.handle == t.handle)
        else {
            return std::borrow::Cow::Borrowed(t);
        };
        let warn = match chain {
            Some(c) => mark.compat_chains.iter().any(|x| x == c),
            None => mark.warn,
        };
        if warn {
            diag.text.push_str(&format!(
                "# Warning: table {} {} is managed by iptables-nft, do not touch!\n",
                t.family.as_str(),
                t.name
            ));
        }
        let mut out: Option<Table> = None;
        for (ci, c) in t.chains.iter().enumerate() {
            if chain.is_some_and(|n| n != c.name) {
                continue;
            }
            for (ri, r) in c.rules.iter().enumerate() {
                for (si, st) in r.stmts.iter().enumerate() {
                    let name = if st.text.starts_with("masquerade") {
                        "MASQUERADE"
                    } else if st.text.starts_with("snat to ") {
                        "SNAT"
                    } else if st.text.starts_with("dnat to ") {
                        "DNAT"
                    } else {
                        continue;
                    };
                    match diag.nat_family {
                        None => diag.nat_family = Some(t.family),
                        Some(f) if f == t.family => {}
                        Some(_) => {
                            diag.text.push_str(&format!("XT target {name} not found\n"));
                            let tc = out.get_or_insert_with(|| t.clone());
                            let rules = std::sync::Arc::make_mut(&mut tc.chains[ci].rules);
                            rules[ri].stmts[si].text = String::new();
                        }
                    }
                }
            }
        }
        match out {
            Some(t) => std::borrow::Cow::Owned(t),
            None => std::borrow::Cow::Borrowed(t),
        }
    }

    /// The device names set with [`NftState::set_links`].
    pub fn links(&self) -> Option<&BTreeSet<String>> {
        self.links.as_deref()
    }

    /// The current ruleset generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The tables, in the order the kernel lists them.
    pub fn tables(&self) -> &[Arc<Table>] {
        &self.tables
    }

    /// Run `nft ARGS...` (argv without the leading "nft"); `stdin` is the input
    /// of `nft -f -`.
    pub fn exec(&mut self, args: &[String], stdin: Option<&str>) -> Output {
        if let Some(out) = options_after_command(args) {
            return out;
        }
        let mut opts = Opts::default();
        let mut fmt = output::Format::default();
        let mut check = false;
        let mut json_out = false;
        let mut file: Option<String> = None;
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if a == "--" {
                i += 1;
                break;
            }
            if !a.starts_with('-') || a == "-" {
                break;
            }
            if let Some(long) = a.strip_prefix("--") {
                let (name, value) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                match name {
                    "handle" => opts.handles = true,
                    "echo" => opts.echo = true,
                    "check" => check = true,
                    "json" => json_out = true,
                    "numeric" => fmt.numeric += 1,
                    "stateless" => fmt.stateless = true,
                    "terse" => fmt.terse = true,
                    "numeric-priority" => fmt.numeric_prio = true,
                    "numeric-protocol" => fmt.numeric_proto = true,
                    "numeric-time" | "guid" => {}
                    "version" => return Output::ok(format!("{}\n", output::VERSION)),
                    "help" => return Output::ok(output::HELP.to_string()),
                    "file" => match value {
                        Some(f) => file = Some(f),
                        None => {
                            i += 1;
                            match args.get(i) {
                                Some(f) => file = Some(f.clone()),
                                None => {
                                    return fail(
                                        "nft: option '--file' requires an argument\n".into(),
                                    )
                                }
                            }
                        }
                    },
                    _ if output::LONG_OPTIONS.contains(&name) => {
                        return fail(format!("Error: command not simulated: option '{a}'\n"))
                    }
                    _ => return fail(format!("nft: unrecognized option '{a}'\n")),
                }
                i += 1;
                continue;
            }
            let flags: Vec<char> = a[1..].chars().collect();
            for (k, c) in flags.iter().enumerate() {
                match c {
                    'a' => opts.handles = true,
                    'e' => opts.echo = true,
                    'c' => check = true,
                    'j' => json_out = true,
                    'n' => fmt.numeric += 1,
                    's' => fmt.stateless = true,
                    't' => fmt.terse = true,
                    'y' => fmt.numeric_prio = true,
                    'p' => fmt.numeric_proto = true,
                    'T' | 'u' => {}
                    'v' => return Output::ok(format!("{}\n", output::VERSION)),
                    'V' => return Output::ok(output::VERSION_LONG.to_string()),
                    'h' => return Output::ok(output::HELP.to_string()),
                    'f' => {
                        let rest: String = flags[k + 1..].iter().collect();
                        if !rest.is_empty() {
                            file = Some(rest);
                        } else {
                            i += 1;
                            match args.get(i) {
                                Some(f) => file = Some(f.clone()),
                                None => {
                                    return fail("nft: option requires an argument -- 'f'\n".into())
                                }
                            }
                        }
                        break;
                    }
                    'i' | 'o' | 'S' | 'N' | 'D' | 'I' | 'd' => {
                        return fail(format!("Error: command not simulated: option '-{c}'\n"))
                    }
                    other => return fail(format!("nft: invalid option -- '{other}'\n")),
                }
            }
            i += 1;
        }
        let rest = &args[i..];
        let src = match file {
            Some(f) if f == "-" => {
                if !rest.is_empty() {
                    return fail(
                        "Error: command not simulated: -f together with a command line\n".into(),
                    );
                }
                Source::from_file("/dev/stdin", stdin.unwrap_or(""))
            }
            Some(f) => {
                if !rest.is_empty() {
                    return fail(
                        "Error: command not simulated: -f together with a command line\n".into(),
                    );
                }
                // The simulated host reads script files from the real
                // file system, as nft would.
                if std::path::Path::new(&f).is_dir() {
                    // nft opens it, and its scanner fails reading.
                    return Output::failed(2, "input in flex scanner failed\n".to_string());
                }
                match std::fs::read(&f) {
                    Ok(bytes) => Source::from_file(&f, &String::from_utf8_lossy(&bytes)),
                    Err(e) => {
                        return fail(format!(
                            "internal:0:0-0: Error: Could not open file \"{f}\": {}\n\n\n",
                            output::errno_text(&e)
                        ))
                    }
                }
            }
            None => {
                if rest.is_empty() {
                    return fail("nft: no command specified\n".into());
                }
                Source::from_args(rest)
            }
        };
        if json_out {
            return self.exec_json(&src, opts, check, fmt);
        }
        let out = if check {
            // A dry run: evaluated and checked, nothing reaches the kernel.
            // The kernel sees the batch and aborts it: handles it took stay
            // taken, as after a failed batch.
            let saved = self.clone();
            let out = self.run_source(&src, opts);
            let after = std::mem::replace(self, saved);
            self.keep_counters(&after);
            out
        } else {
            self.run_source(&src, opts)
        };
        fmt.apply(out)
    }

    /// `nft -j ...`: only `list` commands are simulated; they print what
    /// the plain command would have failed with, or nft's JSON.
    fn exec_json(&mut self, src: &Source, opts: Opts, check: bool, fmt: output::Format) -> Output {
        if opts.echo || !fmt.is_plain() {
            return fail("Error: command not simulated: -j with -e/-n/-s/-t/-y/-p\n".into());
        }
        let parsed = parsed(src);
        let (cmds, errors) = match &*parsed {
            Ok((c, e)) => (c, e),
            Err((loc, msg)) => {
                return fail(src.error(*loc, &format!("command not simulated: {msg}")))
            }
        };
        if !cmds.iter().any(|c| is_list(&c.op)) {
            // Without a listing, -j changes nothing that is printed.
            let saved = self.clone();
            let out = self.run_source(src, opts);
            if check {
                let after = std::mem::replace(self, saved);
                self.keep_counters(&after);
            }
            return out;
        }
        let op = match (cmds.as_slice(), errors.is_empty()) {
            ([one], true) if is_list(&one.op) => one.op.clone(),
            _ => {
                return fail(
                    "Error: command not simulated: -j with anything but one list command\n".into(),
                )
            }
        };
        // Errors (a missing table, ...) are the plain command's.
        let saved = self.clone();
        let plain = self.run_source(src, opts);
        if check {
            let after = std::mem::replace(self, saved);
            self.keep_counters(&after);
        }
        if plain.status != 0 {
            return plain;
        }
        match self.json_listing(&op) {
            Ok(text) => Output::ok(text),
            Err(why) => fail(format!("Error: command not simulated: {why}\n")),
        }
    }

    fn json_listing(&self, op: &Op) -> Result<String, json::Unsupported> {
        let fam_ok = |fam: &Option<Family>, t: &Table| fam.is_none_or(|f| f == t.family);
        let whole_table = |t: &Table, out: &mut Vec<json::Json>| -> Result<(), json::Unsupported> {
            out.push(json::table_obj(t)?);
            for set in &t.sets {
                out.push(json::set_obj(t, set)?);
            }
            for c in &t.chains {
                out.push(json::chain_obj(t, c));
            }
            for c in &t.chains {
                for r in c.rules.iter() {
                    out.push(json::rule_obj(t, c, r)?);
                }
            }
            Ok(())
        };
        let mut out = Vec::new();
        match op {
            Op::ListRuleset(fam) => {
                for t in self.tables.iter().filter(|t| fam_ok(fam, t)) {
                    whole_table(t, &mut out)?;
                }
            }
            Op::ListTables(fam) => {
                for t in self.tables.iter().filter(|t| fam_ok(fam, t)) {
                    out.push(json::table_obj(t)?);
                }
            }
            Op::ListTable(tr) => {
                if let Some(t) = self.table(tr.family, &tr.name) {
                    whole_table(t, &mut out)?;
                }
            }
            Op::ListChains(fam) => {
                for t in self.tables.iter().filter(|t| fam_ok(fam, t)) {
                    for c in &t.chains {
                        out.push(json::chain_obj(t, c));
                    }
                }
            }
            Op::ListChain { t: tr, chain } => {
                if let Some(t) = self.table(tr.family, &tr.name) {
                    if let Some(c) = t.chain(&chain.value) {
                        out.push(json::chain_obj(t, c));
                        for r in c.rules.iter() {
                            out.push(json::rule_obj(t, c, r)?);
                        }
                    }
                }
            }
            Op::ListSet { t: tr, set, .. } => {
                if let Some(t) = self.table(tr.family, &tr.name) {
                    if let Some(st) = t.sets.iter().find(|x| x.name == set.value) {
                        out.push(json::set_obj(t, st)?);
                    }
                }
            }
            Op::ListSets { maps, family } => {
                for t in self.tables.iter().filter(|t| fam_ok(family, t)) {
                    for st in t.sets.iter().filter(|x| x.is_map == *maps) {
                        out.push(json::set_obj(t, st)?);
                    }
                }
            }
            _ => return Err("-j with this list command".into()),
        }
        Ok(json::document(out))
    }

    fn run_source(&mut self, src: &Source, opts: Opts) -> Output {
        let parsed = parsed(src);
        let (cmds, parse_errors) = match &*parsed {
            Ok((c, e)) => (c, e),
            Err((loc, msg)) => {
                return fail(src.error(*loc, &format!("command not simulated: {msg}")))
            }
        };
        // Syntax errors are reported first, then the evaluation errors of
        // the commands that did parse; any error stops before the kernel.
        let mut errors: String = parse_errors
            .iter()
            .map(|e| src.error2(e.loc, e.secondary, &e.msg))
            .collect();
        let cache = cache_level(cmds, opts.echo);
        // A rule position anywhere in the batch makes nft load the rule
        // cache, and then every add/insert rule checks its table and chain
        // in userspace.
        let rule_cache = cmds.iter().any(|c| {
            matches!(
                &c.op,
                Op::AddRule { pos: Some(_), .. } | Op::Invalid(_, true)
            )
        });

        // Userspace evaluation of every command before anything is sent;
        // nft reports every failing command, then stops.
        let mut view = self.clone();
        let flushes_ruleset = cmds.iter().any(|c| matches!(c.op, Op::FlushRuleset(_)));
        let effective_cache = if flushes_ruleset {
            CacheLevel::Empty
        } else {
            cache
        };
        if flushes_ruleset {
            // The ruleset is about to go: nft does not even load its cache,
            // so existing tables are invisible to this batch's evaluation.
            view.tables.clear();
        }
        let mut stdout = String::new();
        let mut diag = XtDiag::default();
        let mut resolved: Vec<Option<u64>> = Vec::with_capacity(cmds.len());
        // nft runs list commands after evaluating the whole batch, from its
        // cache: what existed plus every table, chain and set the batch adds
        // (before or after the list), but none of its rules.
        let mut lists = Vec::new();
        for cmd in cmds {
            let mut sink = String::new();
            let mut scratch = XtDiag::default();
            let (out, d) = if is_list(&cmd.op) {
                lists.push(cmd);
                (&mut sink, &mut scratch)
            } else {
                (&mut stdout, &mut diag)
            };
            match view.evaluate(cmd, cache, rule_cache, opts, out, d) {
                Ok(pos) => resolved.push(pos),
                Err(e) => {
                    resolved.push(None);
                    errors.push_str(&src.error2(e.loc, e.secondary, &e.msg));
                }
            }
        }
        if errors.is_empty() {
            for cmd in lists {
                // Evaluated once already: the same result again, now with
                // its iptables-nft warnings.
                let _ = view.evaluate(cmd, cache, rule_cache, opts, &mut stdout, &mut diag);
            }
        }
        let warnings = diag.text;
        if !errors.is_empty() {
            return Output {
                status: 1,
                stdout,
                stderr: format!("{warnings}{errors}"),
            };
        }

        // What nft's cache holds when it explains kernel errors: without a
        // fetch, only the tables and chains this batch added. Built when the
        // first kernel error needs it (the view does not change any more).
        let initial_cache = |view: &NftState| -> NftState {
            if effective_cache == CacheLevel::Full {
                view.clone()
            } else {
                let mut c = view.clone();
                let tables: BTreeSet<(Family, String)> = cmds
                    .iter()
                    .filter_map(|cmd| match &cmd.op {
                        Op::AddTable { t, .. } => Some((t.family, t.name.clone())),
                        _ => None,
                    })
                    .collect();
                let chains: BTreeSet<(Family, String, String)> = cmds
                    .iter()
                    .filter_map(|cmd| match &cmd.op {
                        Op::AddChain { t, chain, .. } => {
                            Some((t.family, t.name.clone(), chain.value.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                c.tables
                    .retain(|t| tables.contains(&(t.family, t.name.clone())));
                for t in &mut c.tables {
                    let t = Arc::make_mut(t);
                    let (f, n) = (t.family, t.name.clone());
                    t.chains
                        .retain(|ch| chains.contains(&(f, n.clone(), ch.name.clone())));
                    t.sets.clear();
                }
                c
            }
        };
        let mut nft_cache: Option<NftState> = None;

        let mut cache_now = effective_cache;

        let mut work = self.clone();
        let mut echoes = Vec::new();
        let mut changed = false;
        for (cmd, pos) in cmds.iter().zip(resolved) {
            let applied = work.apply(cmd, pos, opts, &mut echoes, &mut changed);
            if let Err(ks) = applied {
                for k in ks {
                    // Explaining a missing rule target makes nft fetch tables
                    // and chains if it has not: later explanations see them.
                    let rule_cmd = matches!(cmd.op, Op::AddRule { .. } | Op::DeleteRule { .. });
                    if rule_cmd
                        && k.errno == Errno::NoEnt
                        && k.attr
                        && cache_now != CacheLevel::Full
                    {
                        nft_cache = Some(self.clone());
                        cache_now = CacheLevel::Full;
                    }
                    // nft explains kernel errors from its cache: the
                    // ruleset plus what the batch's evaluation added.
                    let msg = nft_cache
                        .get_or_insert_with(|| initial_cache(&view))
                        .kernel_error_text(cmd, &k);
                    errors.push_str(&src.error(k.loc, &msg));
                }
            }
        }
        if !errors.is_empty() {
            self.keep_counters(&work);
            return Output {
                status: 1,
                stdout,
                stderr: format!("{warnings}{errors}"),
            };
        }
        *self = work;
        if changed {
            self.generation += 1;
        }
        if opts.echo {
            for e in &echoes {
                if matches!(e, Echo::DeleteFirst) {
                    continue;
                }
                stdout.push_str(&self.echo_line(e));
                stdout.push('\n');
            }
            // The kernel echoes the new generation when the first message
            // of the batch asked for echo: adds do, deletes and flushes not.
            let first_echoes = cmds.iter().find(|c| !is_list(&c.op)).is_some_and(|c| {
                matches!(
                    c.op,
                    Op::AddTable { .. }
                        | Op::AddChain { .. }
                        | Op::AddRule { .. }
                        | Op::ReplaceRule { .. }
                        | Op::AddSet { .. }
                        | Op::AddElement { .. }
                )
            });
            let first_echoes = first_echoes && !matches!(echoes.first(), Some(Echo::DeleteFirst));
            if changed && first_echoes {
                stdout.push_str("# new generation ");
                push_u64(&mut stdout, self.generation);
                stdout.push_str(" by process ");
                push_u64(&mut stdout, u64::from(FAKE_PID));
                stdout.push_str(" (nft)\n");
            }
        }
        Output {
            status: 0,
            stdout,
            stderr: warnings,
        }
    }

    /// After an aborted batch: handle generators keep what the batch took.
    fn keep_counters(&mut self, work: &NftState) {
        self.last_table_handle = work.last_table_handle;
        for t in &mut self.tables {
            if let Some(w) = work
                .tables
                .iter()
                .find(|w| w.handle == t.handle && w.family == t.family)
            {
                if w.last_handle > t.last_handle {
                    Arc::make_mut(t).last_handle = w.last_handle;
                }
            }
        }
    }

    fn table(&self, family: Family, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name == name)
            .map(|t| &**t)
    }
    fn table_mut(&mut self, family: Family, name: &str) -> Option<&mut Table> {
        self.tables
            .iter_mut()
            .find(|t| t.family == family && t.name == name)
            .map(Arc::make_mut)
    }

    /// The table `t` names, or the kernel's ENOENT pointing at it.
    fn table_mut_or_enoent(&mut self, t: &TableRef) -> Result<&mut Table, Vec<KernelError>> {
        self.table_mut(t.family, &t.name)
            .ok_or_else(|| attr_error(Errno::NoEnt, t.loc))
    }

    // ----- userspace evaluation -------------------------------------------

    /// Check a command as nft does before talking to the kernel, and update
    /// the cache view. List commands print here. Returns the handle an
    /// `index N` resolved to.
    fn evaluate(
        &mut self,
        cmd: &Command,
        cache: CacheLevel,
        rule_cache: bool,
        opts: Opts,
        stdout: &mut String,
        diag: &mut XtDiag,
    ) -> Result<Option<u64>, InputError> {
        let lopts = ListOpts {
            handles: opts.handles,
        };
        match &cmd.op {
            Op::AddTable { t, .. } => {
                if self.table(t.family, &t.name).is_none() {
                    self.tables.push(Arc::new(empty_table(t, 0)));
                }
            }
            Op::DeleteTable {
                family,
                name: Some(n),
                ..
            } => {
                let (f, n) = (*family, n.value.clone());
                self.tables.retain(|t| !(t.family == f && t.name == n));
            }
            Op::AddChain { t, chain, .. } => {
                let Some(table) = self.table_mut(t.family, &t.name) else {
                    return Err(self.table_not_found(t, cache));
                };
                if table.chain(&chain.value).is_none() {
                    table.chains.push(Chain {
                        name: chain.value.clone(),
                        handle: 0,
                        comment: None,
                        base: None,
                        rules: Default::default(),
                    });
                }
            }
            Op::DeleteChain {
                t, chain: Some(c), ..
            } => {
                if let Some(table) = self.table_mut(t.family, &t.name) {
                    table.chains.retain(|ch| ch.name != c.value);
                }
            }
            Op::ReplaceRule { t, body, .. } => {
                self.check_rule_body(t, body, cache)?;
            }
            Op::GetElement { t: tr, set, elems } => {
                return self.evaluate_get_element(tr, set, elems, cmd, stdout, lopts)
            }
            Op::RenameChain { t, chain, new } => {
                // nft looks the chain up in its cache first.
                let Some(table) = self.table_mut(t.family, &t.name) else {
                    return Err(InputError::new(t.loc, Errno::NoEnt.text()));
                };
                if table.chain(&chain.value).is_none() {
                    return Err(InputError::new(chain.loc, Errno::NoEnt.text()));
                }
                if table.chain(&new.value).is_none() {
                    if let Some(c) = table.chain_mut(&chain.value) {
                        c.name = new.value.clone();
                    }
                }
            }
            Op::AddRule {
                t,
                chain,
                pos,
                body,
                insert,
            } => return self.evaluate_add_rule(t, chain, pos, body, insert, cache, rule_cache),
            Op::AddSet { t, set, decl, .. } => return self.evaluate_add_set(t, set, decl, cache),
            Op::DeleteSet { t, set, .. } => {
                if let Some(table) = self.table_mut(t.family, &t.name) {
                    table.sets.retain(|s| s.name != set.value);
                }
            }
            Op::AddElement { t, set, elems, .. } | Op::DeleteElement { t, set, elems } => {
                return self.evaluate_elements(t, set, elems, cmd, cache)
            }
            Op::ListRuleset(fam) => {
                for t in self
                    .tables
                    .iter()
                    .filter(|t| fam.is_none_or(|f| f == t.family))
                {
                    let t = self.xt_listing(t, diag, None);
                    stdout.push_str(&table_block(&t, lopts, TableParts::ALL));
                }
            }
            Op::ListTables(fam) => {
                for t in self
                    .tables
                    .iter()
                    .filter(|t| fam.is_none_or(|f| f == t.family))
                {
                    stdout.push_str(&format!("table {} {}\n", t.family.as_str(), t.name));
                }
            }
            Op::ListTable(tr) => {
                let Some(t) = self.table(tr.family, &tr.name) else {
                    return Err(InputError::new(tr.loc, Errno::NoEnt.text()));
                };
                let t = self.xt_listing(t, diag, None);
                stdout.push_str(&table_block(&t, lopts, TableParts::ALL));
            }
            Op::ListChain { t: tr, chain } => {
                return self.list_chain(tr, chain, stdout, diag, lopts)
            }
            Op::ListChains(fam) => return self.list_chains(fam, opts, stdout),
            Op::ListSets { maps, family } => {
                // Every table is shown, without its handle; the sets follow
                // each other without blank lines.
                for t in self
                    .tables
                    .iter()
                    .filter(|t| family.is_none_or(|f| f == t.family))
                {
                    stdout.push_str(&format!("table {} {} {{\n", t.family.as_str(), t.name));
                    for s in t.sets.iter().filter(|s| s.is_map == *maps) {
                        stdout.push_str(&set_block(s, lopts));
                    }
                    stdout.push_str("}\n");
                }
            }
            Op::ListSet { is_map, t: tr, set } => {
                return self.list_set(is_map, tr, set, stdout, lopts)
            }
            Op::Invalid(e, _) => return Err(e.clone()),
            Op::DeleteTable { .. }
            | Op::DeleteChain { .. }
            | Op::FlushTable(_)
            | Op::FlushChain { .. }
            | Op::DeleteRule { .. }
            | Op::FlushRuleset(_) => {}
            Op::FlushSet { t: tr, set, is_map } => {
                // nft looks the set up in its cache (a map is not a set).
                if let Some(t) = self.table(tr.family, &tr.name) {
                    match t.set(&set.value) {
                        Some(s) if s.is_map != *is_map => {
                            return Err(InputError::new(set.loc, Errno::NoEnt.text()))
                        }
                        Some(_) => {}
                        None => return Err(self.set_not_found(set, CacheLevel::Full)),
                    }
                }
            }
        }
        Ok(None)
    }

    /// `get element`: the set listed with the elements asked for.
    fn evaluate_get_element(
        &mut self,
        tr: &TableRef,
        set: &Named<String>,
        elems: &[Named<Element>],
        cmd: &Command,
        stdout: &mut String,
        lopts: ListOpts,
    ) -> Result<Option<u64>, InputError> {
        let Some(t) = self.table(tr.family, &tr.name) else {
            return Err(InputError::new(tr.loc, Errno::NoEnt.text()));
        };
        let Some(s) = t.set(&set.value) else {
            return Err(InputError::new(set.loc, Errno::NoEnt.text()));
        };
        if s.flags.iter().any(|f| f == "interval") {
            return Err(InputError::not_simulated(
                cmd.loc,
                "get element of an interval set",
            ));
        }
        let mut found = s.clone();
        found.elements.clear();
        for e in elems {
            match s.elements.iter().find(|x| x.key == e.value.key) {
                Some(x) => found.elements.push(x.clone()),
                None => {
                    return Err(InputError::new(
                        cmd.loc,
                        "Could not process rule: No such file or directory",
                    ))
                }
            }
        }
        stdout.push_str(&format!(
            "table {} {} {{\n{}}}\n",
            t.family.as_str(),
            t.name,
            set_block(&found, lopts)
        ));
        Ok(None)
    }

    /// `add|insert rule`: its references, and the handle a position or index names.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_add_rule(
        &mut self,
        t: &TableRef,
        chain: &Named<String>,
        pos: &Option<RulePos>,
        body: &RuleBody,
        insert: &bool,
        cache: CacheLevel,
        rule_cache: bool,
    ) -> Result<Option<u64>, InputError> {
        self.check_rule_body(t, body, cache)?;
        if rule_cache {
            // A position makes nft load the rule cache and look the
            // table and chain up itself.
            let Some(table) = self.table(t.family, &t.name) else {
                return Err(self.table_not_found(t, CacheLevel::Full));
            };
            if table.chain(&chain.value).is_none() {
                let msg = match self.fuzzy_chain(&chain.value) {
                    Some((n, f, tn)) => format!(
                        "{}; did you mean chain ‘{}’ in table {} ‘{}’?",
                        Errno::NoEnt.text(),
                        n,
                        f.as_str(),
                        tn
                    ),
                    None => Errno::NoEnt.text().to_string(),
                };
                return Err(InputError::new(chain.loc, msg));
            }
        }
        if let Some(p) = pos.as_ref().filter(|p| p.kind != PosKind::Index) {
            // With the rule cache loaded nft looks the reference rule
            // up itself.
            let known = self
                .table(t.family, &t.name)
                .and_then(|tb| tb.chain(&chain.value))
                .is_some_and(|c| c.rules.iter().any(|r| r.handle == p.value));
            if rule_cache && !known {
                let loc = if p.kind == PosKind::Handle {
                    p.value_loc
                } else {
                    p.loc
                };
                return Err(InputError::new(
                    loc,
                    "Could not process rule: No such file or directory",
                ));
            }
        }
        if let Some(p) = pos.as_ref().filter(|p| p.kind == PosKind::Index) {
            let rules = self
                .table(t.family, &t.name)
                .and_then(|tb| tb.chain(&chain.value))
                .map(|c| c.rules.as_slice())
                .unwrap_or(&[]);
            let idx = usize::try_from(p.value).unwrap_or(usize::MAX);
            return match rules.get(idx) {
                Some(r) => Ok(Some(r.handle)),
                None => {
                    let _ = insert;
                    Err(InputError::new(
                        p.loc,
                        "Could not process rule: No such file or directory",
                    ))
                }
            };
        }
        Ok(None)
    }

    /// `add|create set|map`: the table and the declaration.
    fn evaluate_add_set(
        &mut self,
        t: &TableRef,
        set: &Named<String>,
        decl: &SetDecl,
        cache: CacheLevel,
    ) -> Result<Option<u64>, InputError> {
        let Some(table) = self.table_mut(t.family, &t.name) else {
            return Err(self.table_not_found(t, cache));
        };
        if table.set(&set.value).is_none() {
            table.sets.push(Set {
                name: set.value.clone(),
                handle: 0,
                is_map: decl.is_map,
                key_type: decl.key_type.clone(),
                data_type: decl.data_type.clone(),
                flags: decl.flags.clone(),
                elements: Vec::new(),
                typeof_key: decl.typeof_key.clone(),
                auto_merge: decl.auto_merge,
                comment: decl.comment.clone(),
            });
        }
        Ok(None)
    }

    /// `add|create|delete element`: the set and each element's type.
    fn evaluate_elements(
        &mut self,
        t: &TableRef,
        set: &Named<String>,
        elems: &[Named<Element>],
        cmd: &Command,
        cache: CacheLevel,
    ) -> Result<Option<u64>, InputError> {
        let Some(table) = self.table(t.family, &t.name) else {
            return Err(self.table_not_found(t, cache));
        };
        let Some(s) = table.set(&set.value) else {
            return Err(self.set_not_found(set, cache));
        };
        let interval = s.flags.iter().any(|f| f == "interval");
        for e in elems {
            // nft looks deleted intervals up in its cache.
            if interval
                && matches!(cmd.op, Op::DeleteElement { .. })
                && !s.elements.iter().any(|x| x.key == e.value.key)
            {
                return Err(InputError::new(e.loc, "element does not exist"));
            }
            if matches!(cmd.op, Op::DeleteElement { .. })
                && s.data_type.is_some()
                && e.value.value.is_none()
            {
                // A map element is deleted by its key alone.
                let mut keys_only = s.clone();
                keys_only.data_type = None;
                check_element(&keys_only, e)?;
                continue;
            }
            check_element(s, e)?;
        }
        if matches!(cmd.op, Op::AddElement { .. })
            && s.flags.iter().any(|f| f == "interval")
            && !s.auto_merge
        {
            // nft refuses overlapping intervals within one command.
            let spans: Vec<Option<(u128, u128)>> = elems
                .iter()
                .map(|e| model::element_bounds(&s.key_type, &e.value.key))
                .collect();
            for (j, b) in spans.iter().enumerate() {
                for (i, a) in spans[..j].iter().enumerate() {
                    if let (Some(a), Some(b)) = (a, b) {
                        if a.0 <= b.1 && b.0 <= a.1 {
                            return Err(InputError {
                                loc: elems[j].loc,
                                secondary: Some(elems[i].loc),
                                msg: "conflicting intervals specified".into(),
                                eval: true,
                            });
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// `list chain`.
    fn list_chain(
        &mut self,
        tr: &TableRef,
        chain: &Named<String>,
        stdout: &mut String,
        diag: &mut XtDiag,
        lopts: ListOpts,
    ) -> Result<Option<u64>, InputError> {
        let Some(t) = self.table(tr.family, &tr.name) else {
            return Err(InputError::new(tr.loc, Errno::NoEnt.text()));
        };
        if t.chain(&chain.value).is_none() {
            return Err(InputError::new(chain.loc, Errno::NoEnt.text()));
        }
        let t = self.xt_listing(t, diag, Some(&chain.value));
        let Some(c) = t.chain(&chain.value) else {
            return Err(InputError::new(chain.loc, Errno::NoEnt.text()));
        };
        stdout.push_str(&format!(
            "table {} {} {{\n{}}}\n",
            t.family.as_str(),
            t.name,
            chain_block(t.family, c, lopts)
        ));
        Ok(None)
    }

    /// `list chains [family]`.
    fn list_chains(
        &mut self,
        fam: &Option<Family>,
        opts: Opts,
        stdout: &mut String,
    ) -> Result<Option<u64>, InputError> {
        for t in self
            .tables
            .iter()
            .filter(|t| fam.is_none_or(|f| f == t.family))
        {
            let mut body = Vec::new();
            for c in &t.chains {
                let mut s = format!(
                    "\tchain {} {{{}\n",
                    c.name,
                    if opts.handles {
                        format!(" # handle {}", c.handle)
                    } else {
                        String::new()
                    }
                );
                if let Some(b) = &c.base {
                    s.push_str(&format!("\t\t{}\n", b.text(t.family)));
                }
                s.push_str("\t}\n");
                body.push(s);
            }
            stdout.push_str(&format!(
                "table {} {} {{\n{}}}\n",
                t.family.as_str(),
                t.name,
                body.concat()
            ));
        }
        Ok(None)
    }

    /// `list set|map`.
    fn list_set(
        &mut self,
        is_map: &bool,
        tr: &TableRef,
        set: &Named<String>,
        stdout: &mut String,
        lopts: ListOpts,
    ) -> Result<Option<u64>, InputError> {
        let Some(t) = self.table(tr.family, &tr.name) else {
            return Err(InputError::new(tr.loc, Errno::NoEnt.text()));
        };
        let Some(s) = t.set(&set.value).filter(|s| s.is_map == *is_map) else {
            return Err(InputError::new(set.loc, Errno::NoEnt.text()));
        };
        stdout.push_str(&format!(
            "table {} {} {{\n{}}}\n",
            t.family.as_str(),
            t.name,
            set_block(s, lopts)
        ));
        Ok(None)
    }

    fn check_rule_body(
        &self,
        t: &TableRef,
        body: &RuleBody,
        cache: CacheLevel,
    ) -> Result<(), InputError> {
        if let Some(links) = &self.links {
            for i in &body.ifaces {
                if !links.contains(&i.value) {
                    return Err(InputError::new(i.loc, "Interface does not exist"));
                }
            }
        }
        for s in &body.set_refs {
            let Some(table) = self.table(t.family, &t.name) else {
                return Err(self.table_not_found(t, cache));
            };
            if table.set(&s.value).is_none() {
                return Err(self.set_not_found(s, cache));
            }
        }
        Ok(())
    }

    /// nft's `table_not_found`: ENOENT, with a suggestion when a table of a
    /// similar name is in the cache.
    fn table_not_found(&self, t: &TableRef, cache: CacheLevel) -> InputError {
        match self.fuzzy_table(&t.name, cache) {
            Some((name, fam)) => InputError::new(
                t.loc,
                format!(
                    "{}; did you mean table ‘{}’ in family {}?",
                    Errno::NoEnt.text(),
                    name,
                    fam.as_str()
                ),
            ),
            None => InputError::new(t.loc, Errno::NoEnt.text()),
        }
    }

    fn set_not_found(&self, set: &Named<String>, cache: CacheLevel) -> InputError {
        let mut best = misspell::Best::new();
        if cache == CacheLevel::Full {
            for t in &self.tables {
                for s in &t.sets {
                    best.update(
                        &s.name,
                        &set.value,
                        (s.name.clone(), s.is_map, t.family, t.name.clone()),
                    );
                }
            }
        }
        match best.found {
            Some((name, is_map, fam, table)) => InputError::new(
                set.loc,
                format!(
                    "{}; did you mean {} ‘{}’ in table {} ‘{}’?",
                    Errno::NoEnt.text(),
                    if is_map { "map" } else { "set" },
                    name,
                    fam.as_str(),
                    table
                ),
            ),
            None => InputError::new(set.loc, Errno::NoEnt.text()),
        }
    }

    fn fuzzy_table(&self, name: &str, cache: CacheLevel) -> Option<(String, Family)> {
        if cache == CacheLevel::Empty {
            return None;
        }
        let mut best = misspell::Best::new();
        for t in &self.tables {
            best.update(&t.name, name, (t.name.clone(), t.family));
        }
        best.found
    }

    /// `chain_lookup_fuzzy`: the chain (and its table) whose name is closest.
    fn fuzzy_chain(&self, name: &str) -> Option<(String, Family, String)> {
        let mut best = misspell::Best::new();
        for t in &self.tables {
            for c in &t.chains {
                best.update(&c.name, name, (c.name.clone(), t.family, t.name.clone()));
            }
        }
        best.found
    }

    // ----- kernel stage ----------------------------------------------------

    /// nft's explanation of a kernel error; `self` is nft's cache at that
    /// moment (what it fetched of the ruleset, plus what the batch's
    /// evaluation added).
    fn kernel_error_text(&self, cmd: &Command, k: &KernelError) -> String {
        let plain = format!("Could not process rule: {}", k.errno.text());
        if k.errno != Errno::NoEnt || !k.attr {
            return plain;
        }
        let noent = Errno::NoEnt.text();
        // nft_cmd_enoent: look for a better explanation in the cache.
        let table_check = |t: &TableRef, found_table: &str, found_fam: Family| -> Option<String> {
            if self.table(t.family, &t.name).is_some() {
                return None;
            }
            if t.name != found_table || t.family != found_fam {
                return Some(format!(
                    "{noent}; did you mean table ‘{}’ in family {}?",
                    found_table,
                    found_fam.as_str()
                ));
            }
            None
        };
        match &cmd.op {
            Op::AddTable { t, .. } | Op::FlushTable(t) => {
                if let Some((n, f)) = self.fuzzy_table(&t.name, CacheLevel::Full) {
                    return format!(
                        "{noent}; did you mean table ‘{}’ in family {}?",
                        n,
                        f.as_str()
                    );
                }
            }
            Op::DeleteTable { name: Some(n), .. } => {
                if let Some((n, f)) = self.fuzzy_table(&n.value, CacheLevel::Full) {
                    return format!(
                        "{noent}; did you mean table ‘{}’ in family {}?",
                        n,
                        f.as_str()
                    );
                }
            }
            Op::DeleteChain {
                t, chain: Some(c), ..
            }
            | Op::FlushChain { t, chain: c } => {
                if let Some((cn, f, tn)) = self.fuzzy_chain(&c.value) {
                    if let Some(m) = table_check(t, &tn, f) {
                        return m;
                    }
                    return format!(
                        "{noent}; did you mean chain ‘{}’ in table {} ‘{}’?",
                        cn,
                        f.as_str(),
                        tn
                    );
                }
            }
            Op::AddChain { t, chain, .. } => {
                if let Some((cn, f, tn)) = self.fuzzy_chain(&chain.value) {
                    if let Some(m) = table_check(t, &tn, f) {
                        return m;
                    }
                    return format!(
                        "{noent}; did you mean chain ‘{}’ in table {} ‘{}’?",
                        cn,
                        f.as_str(),
                        tn
                    );
                }
            }
            Op::AddRule { t, chain, .. } | Op::DeleteRule { t, chain, .. } => {
                // The caller made sure the cache has tables and chains.
                let src = self;
                if let Some((cn, f, tn)) = src.fuzzy_chain(&chain.value) {
                    if src.table(t.family, &t.name).is_none() && (t.name != tn || t.family != f) {
                        return format!(
                            "{noent}; did you mean table ‘{}’ in family {}?",
                            tn,
                            f.as_str()
                        );
                    }
                    if cn != chain.value {
                        return format!(
                            "{noent}; did you mean chain ‘{}’ in table {} ‘{}’?",
                            cn,
                            f.as_str(),
                            tn
                        );
                    }
                }
            }
            Op::AddSet { t, set, .. }
            | Op::DeleteSet { t, set, .. }
            | Op::FlushSet { t, set, .. } => {
                let mut best = misspell::Best::new();
                for tb in &self.tables {
                    for s in &tb.sets {
                        best.update(
                            &s.name,
                            &set.value,
                            (s.name.clone(), s.is_map, tb.family, tb.name.clone()),
                        );
                    }
                }
                if let Some((sn, is_map, f, tn)) = best.found {
                    if let Some(m) = table_check(t, &tn, f) {
                        return m;
                    }
                    return format!(
                        "{noent}; did you mean {} ‘{}’ in table {} ‘{}’?",
                        if is_map { "map" } else { "set" },
                        sn,
                        f.as_str(),
                        tn
                    );
                }
            }
            _ => {}
        }
        plain
    }

    /// Apply one command to the transaction copy.
    fn apply(
        &mut self,
        cmd: &Command,
        index_handle: Option<u64>,
        opts: Opts,
        echoes: &mut Vec<Echo>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        match &cmd.op {
            Op::AddTable {
                create,
                t,
                dormant,
                comment,
            } => self.apply_add_table(create, t, dormant, comment, opts, echoes, changed)?,
            Op::DeleteTable {
                family,
                name,
                handle,
            } => self.apply_delete_table(family, name, handle, cmd, changed)?,
            Op::FlushTable(t) => self.apply_flush_table(t, changed)?,
            Op::FlushRuleset(fam) => self.apply_flush_ruleset(fam, changed)?,
            Op::AddChain {
                create,
                t,
                chain,
                spec,
                comment,
                policy_loc,
                policy_only,
            } => self.apply_add_chain(
                create,
                t,
                chain,
                spec,
                comment,
                policy_loc,
                policy_only,
                cmd,
                opts,
                echoes,
                changed,
            )?,
            Op::DeleteChain { t, chain, handle } => {
                self.apply_delete_chain(t, chain, handle, cmd, changed)?
            }
            Op::FlushChain { t, chain } => self.apply_flush_chain(t, chain, changed)?,
            Op::AddRule {
                insert,
                t,
                chain,
                pos,
                body,
            } => self.apply_add_rule(
                insert,
                t,
                chain,
                pos,
                body,
                cmd,
                index_handle,
                opts,
                echoes,
                changed,
            )?,
            Op::ReplaceRule {
                t,
                chain,
                handle,
                body,
            } => self.apply_replace_rule(t, chain, handle, body, cmd, opts, echoes, changed)?,
            Op::RenameChain { t, chain, new } => {
                self.apply_rename_chain(t, chain, new, cmd, changed)?
            }
            Op::DeleteRule { t, chain, handle } => {
                self.apply_delete_rule(t, chain, handle, changed)?
            }
            Op::AddSet {
                create,
                t,
                set,
                decl,
            } => self.apply_add_set(create, t, set, decl, opts, echoes, changed)?,
            Op::DeleteSet { t, set, .. } => self.apply_delete_set(t, set, changed)?,
            Op::FlushSet { t, set, .. } => self.apply_flush_set(t, set, changed)?,
            Op::AddElement {
                create,
                t,
                set,
                elems,
            } => self.apply_add_element(create, t, set, elems, echoes, changed)?,
            Op::DeleteElement { t, set, elems } => {
                self.apply_delete_element(t, set, elems, changed)?
            }
            Op::ListRuleset(_)
            | Op::ListTables(_)
            | Op::ListTable(_)
            | Op::ListChain { .. }
            | Op::ListChains(_)
            | Op::ListSets { .. }
            | Op::ListSet { .. }
            | Op::GetElement { .. }
            | Op::Invalid(..) => {}
        }
        Ok(())
    }

    /// `add|create table`.
    #[allow(clippy::too_many_arguments)]
    fn apply_add_table(
        &mut self,
        create: &bool,
        t: &TableRef,
        dormant: &bool,
        comment: &Option<String>,
        opts: Opts,
        echoes: &mut Vec<Echo>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        if self.table(t.family, &t.name).is_some() {
            if *create {
                return Err(attr_error(Errno::Exist, t.loc));
            }
            // No change, no transaction, no echo (updating the
            // flags or comment of a table is not simulated).
            return Ok(());
        }
        self.last_table_handle += 1;
        let handle = self.last_table_handle;
        let mut table = empty_table(t, handle);
        table.dormant = *dormant;
        table.comment = comment.clone();
        self.tables.push(Arc::new(table));
        *changed = true;
        // The echo shows flags but not the comment.
        echoes.push(Echo::Text(format!(
            "{} table {} {}{}{}",
            create_or_add(*create),
            t.family.as_str(),
            t.name,
            if *dormant { " { flags dormant; }" } else { "" },
            handle_comment(opts, handle)
        )));
        Ok(())
    }

    /// `delete table` (by name or handle).
    fn apply_delete_table(
        &mut self,
        family: &Family,
        name: &Option<Named<String>>,
        handle: &Option<Named<u64>>,
        cmd: &Command,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let idx = match (name, handle) {
            (Some(n), _) => self
                .tables
                .iter()
                .position(|t| t.family == *family && t.name == n.value)
                .ok_or_else(|| attr_error(Errno::NoEnt, n.loc))?,
            (None, Some(h)) => self
                .tables
                .iter()
                .position(|t| t.family == *family && t.handle == h.value)
                .ok_or_else(|| attr_error(Errno::NoEnt, h.loc))?,
            (None, None) => return Err(attr_error(Errno::NoEnt, cmd.loc)),
        };
        self.tables.remove(idx);
        *changed = true;
        Ok(())
    }

    /// `flush table`.
    fn apply_flush_table(
        &mut self,
        t: &TableRef,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        for c in &mut table.chains {
            if !c.rules.is_empty() {
                c.rules = Default::default();
                *changed = true;
            }
        }
        // Sets keep their elements: nft 1.0.6 flushes only rules.
        Ok(())
    }

    /// `flush ruleset [family]`.
    fn apply_flush_ruleset(
        &mut self,
        fam: &Option<Family>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let before = self.tables.len();
        self.tables.retain(|t| fam.is_some_and(|f| f != t.family));
        if self.tables.len() != before {
            *changed = true;
        }
        Ok(())
    }

    /// `add|create chain` (also a base chain's new policy).
    #[allow(clippy::too_many_arguments)]
    fn apply_add_chain(
        &mut self,
        create: &bool,
        t: &TableRef,
        chain: &Named<String>,
        spec: &Option<BaseSpec>,
        comment: &Option<String>,
        policy_loc: &Option<Loc>,
        policy_only: &Option<bool>,
        cmd: &Command,
        opts: Opts,
        echoes: &mut Vec<Echo>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        if let Some(existing) = table.chain_mut(&chain.value) {
            if *create {
                return Err(attr_error(Errno::Exist, chain.loc));
            }
            match (&mut existing.base, spec) {
                (Some(b), None) if policy_only.is_some() => {
                    let b = std::sync::Arc::make_mut(b);
                    b.policy_accept = policy_only.unwrap_or(b.policy_accept);
                }
                (None, None) if policy_only.is_some() => {
                    return Err(match policy_loc {
                        Some(l) => attr_error(Errno::NotSupp, *l),
                        None => attr_error(Errno::NotSupp, cmd.loc),
                    })
                }
                (_, None) => {}
                (None, Some(_)) => {
                    return Err(match policy_loc {
                        Some(l) => attr_error(Errno::NotSupp, *l),
                        None => attr_error(Errno::Exist, chain.loc),
                    })
                }
                (Some(b), Some(s)) => {
                    if b.chain_type != s.chain_type || b.hook != s.hook || b.priority != s.priority
                    {
                        return Err(vec![KernelError {
                            errno: Errno::NotSupp,
                            loc: cmd.loc,
                            attr: false,
                        }]);
                    }
                    std::sync::Arc::make_mut(b).policy_accept = s.policy_accept;
                }
            }
        } else {
            if policy_only.is_some() {
                // A policy needs a base chain.
                return Err(match policy_loc {
                    Some(l) => attr_error(Errno::NotSupp, *l),
                    None => attr_error(Errno::NotSupp, cmd.loc),
                });
            }
            if let Some(s) = spec {
                let hook_ok = match s.chain_type.as_str() {
                    "route" => s.hook == "output",
                    "nat" => matches!(
                        s.hook.as_str(),
                        "prerouting" | "input" | "output" | "postrouting"
                    ),
                    _ => true,
                };
                if !hook_ok || (s.chain_type == "nat" && s.priority <= -200) {
                    return Err(vec![KernelError {
                        errno: Errno::NotSupp,
                        loc: cmd.loc,
                        attr: false,
                    }]);
                }
            }
            let handle = table.alloc_handle();
            table.chains.push(Chain {
                name: chain.value.clone(),
                handle,
                comment: comment.clone(),
                base: spec.clone().map(std::sync::Arc::new),
                rules: Default::default(),
            });
        }
        *changed = true;
        if let Some(c) = table.chain(&chain.value) {
            let spec = c
                .base
                .as_ref()
                .map(|b| format!(" {{ {} }}", b.text(t.family)))
                .unwrap_or_default();
            echoes.push(Echo::Text(format!(
                "{} chain {} {} {}{}{}",
                create_or_add(*create),
                t.family.as_str(),
                t.name,
                chain.value,
                spec,
                handle_comment(opts, c.handle)
            )));
        }
        Ok(())
    }

    /// `delete chain` (by name or handle).
    fn apply_delete_chain(
        &mut self,
        t: &TableRef,
        chain: &Option<Named<String>>,
        handle: &Option<Named<u64>>,
        cmd: &Command,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        let (idx, loc) = match (chain, handle) {
            (Some(c), _) => (
                table
                    .chains
                    .iter()
                    .position(|ch| ch.name == c.value)
                    .ok_or_else(|| attr_error(Errno::NoEnt, c.loc))?,
                c.loc,
            ),
            (None, Some(h)) => (
                table
                    .chains
                    .iter()
                    .position(|ch| ch.handle == h.value)
                    .ok_or_else(|| attr_error(Errno::NoEnt, h.loc))?,
                h.loc,
            ),
            (None, None) => return Err(attr_error(Errno::NoEnt, cmd.loc)),
        };
        let name = table.chains[idx].name.clone();
        // Rules of the chain itself go with it; jumps from elsewhere
        // keep it busy.
        let map_users = table
            .sets
            .iter()
            .flat_map(|s| s.elements.iter())
            .filter_map(|e| e.value.as_deref())
            .filter(|v| {
                let (verb, target) = v.split_once(' ').unwrap_or(("", ""));
                matches!(verb, "jump" | "goto") && target == name
            })
            .count();
        let users = map_users
            + table
                .chains
                .iter()
                .filter(|c| c.name != name)
                .flat_map(|c| c.rules.iter())
                .flat_map(|r| r.jump_targets())
                .filter(|j| *j == name)
                .count();
        if users > 0 {
            return Err(attr_error(Errno::Busy, loc));
        }
        table.chains.remove(idx);
        *changed = true;
        Ok(())
    }

    /// `flush chain`.
    fn apply_flush_chain(
        &mut self,
        t: &TableRef,
        chain: &Named<String>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        let c = table
            .chain_mut(&chain.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, chain.loc))?;
        if !c.rules.is_empty() {
            c.rules = Default::default();
            *changed = true;
        }
        Ok(())
    }

    /// `add|insert rule` (at a position, a handle or an index).
    #[allow(clippy::too_many_arguments)]
    fn apply_add_rule(
        &mut self,
        insert: &bool,
        t: &TableRef,
        chain: &Named<String>,
        pos: &Option<RulePos>,
        body: &RuleBody,
        cmd: &Command,
        index_handle: Option<u64>,
        opts: Opts,
        echoes: &mut Vec<Echo>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        // Anonymous sets travel as messages of their own before the
        // rule: each fails on a missing table too, and each takes a
        // handle even when the rule then fails on a missing chain.
        let Some(table) = self.table_mut(t.family, &t.name) else {
            let mut errs = Vec::new();
            for set_loc in &body.anon_sets {
                for loc in [t.loc, *set_loc] {
                    errs.push(KernelError {
                        errno: Errno::NoEnt,
                        loc,
                        attr: false,
                    });
                }
            }
            errs.extend(attr_error(Errno::NoEnt, t.loc));
            return Err(errs);
        };
        for _ in 0..body.anon_sets.len() {
            table.alloc_handle();
        }
        if table.chain(&chain.value).is_none() {
            return Err(attr_error(Errno::NoEnt, chain.loc));
        }
        let c = table
            .chain(&chain.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, chain.loc))?;
        // Where the rule goes: position handle checked before a
        // handle is allocated.
        let reference = match pos {
            None => None,
            Some(p) => {
                let h = match p.kind {
                    PosKind::Index => index_handle.unwrap_or(0),
                    _ => p.value,
                };
                let loc = if p.kind == PosKind::Handle {
                    p.value_loc
                } else {
                    p.loc
                };
                Some(
                    c.rules
                        .iter()
                        .position(|r| r.handle == h)
                        .ok_or_else(|| attr_error(Errno::NoEnt, loc))?,
                )
            }
        };
        let handle = table.alloc_handle();
        for (target, is_goto) in &body.targets {
            match table.chain(&target.value) {
                None => return Err(attr_error(Errno::NoEnt, target.loc)),
                Some(tc) if tc.base.is_some() => {
                    return Err(attr_error(Errno::NotSupp, target.loc))
                }
                Some(_) => {}
            }
            let _ = is_goto;
        }
        let rule = Rule {
            handle,
            stmts: body.stmts.clone(),
            comment: body.comment.clone(),
        };
        let c = table
            .chain_mut(&chain.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, chain.loc))?;
        let idx = match (insert, reference) {
            (true, None) => 0,
            (false, None) => c.rules.len(),
            (true, Some(i)) => i,
            (false, Some(i)) => i + 1,
        };
        let check = can_invalidate(&rule);
        std::sync::Arc::make_mut(&mut c.rules).insert(idx, rule);
        if let Some(errno) = check.then(|| validate_table(table)).flatten() {
            // The kernel finds this when it validates the table at
            // commit; it then replays the batch (-EAGAIN) validating
            // at once, so the rule (and its anonymous sets) take
            // their handles a second time.
            if let Some(c) = table.chain_mut(&chain.value) {
                std::sync::Arc::make_mut(&mut c.rules).retain(|r| r.handle != handle);
            }
            for _ in 0..=body.anon_sets.len() {
                table.alloc_handle();
            }
            return Err(vec![KernelError {
                errno,
                loc: cmd.loc,
                attr: false,
            }]);
        }
        let c = table
            .chain_mut(&chain.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, chain.loc))?;
        *changed = true;
        // The listed text of the rule just inserted at `idx` is its
        // body's (the handle is not part of it).
        let mut body_text = String::new();
        if c.rules.get(idx).is_some() {
            let echoed = body.echo_body();
            body_text.reserve(echoed.len() + 32);
            body_text.push_str(echoed);
            if opts.handles {
                body_text.push_str(" # handle ");
                push_u64(&mut body_text, handle);
            }
        }
        let verb = if *insert { "insert" } else { "add" };
        let fam = t.family.as_str();
        let mut head =
            String::with_capacity(verb.len() + fam.len() + t.name.len() + chain.value.len() + 9);
        for part in [verb, " rule ", fam, " ", &t.name, " ", &chain.value, " "] {
            head.push_str(part);
        }
        echoes.push(Echo::Rule {
            head,
            family: t.family,
            table: t.name.clone(),
            chain: chain.value.clone(),
            handle,
            body: body_text,
        });
        Ok(())
    }

    /// `replace rule ... handle N`.
    #[allow(clippy::too_many_arguments)]
    fn apply_replace_rule(
        &mut self,
        t: &TableRef,
        chain: &Named<String>,
        handle: &Named<u64>,
        body: &RuleBody,
        cmd: &Command,
        opts: Opts,
        echoes: &mut Vec<Echo>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        for _ in 0..body.anon_sets.len() {
            table.alloc_handle();
        }
        let c = table
            .chain(&chain.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, chain.loc))?;
        let idx = c
            .rules
            .iter()
            .position(|r| r.handle == handle.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, handle.loc))?;
        for (target, _) in &body.targets {
            match table.chain(&target.value) {
                None => return Err(attr_error(Errno::NoEnt, target.loc)),
                Some(tc) if tc.base.is_some() => {
                    return Err(attr_error(Errno::NotSupp, target.loc))
                }
                Some(_) => {}
            }
        }
        let rule = Rule {
            handle: handle.value,
            stmts: body.stmts.clone(),
            comment: body.comment.clone(),
        };
        let text = body.echo_body().to_string();
        let c = table
            .chain_mut(&chain.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, chain.loc))?;
        let check = can_invalidate(&rule);
        let old = std::mem::replace(&mut std::sync::Arc::make_mut(&mut c.rules)[idx], rule);
        if let Some(errno) = check.then(|| validate_table(table)).flatten() {
            if let Some(c) = table.chain_mut(&chain.value) {
                std::sync::Arc::make_mut(&mut c.rules)[idx] = old;
            }
            return Err(vec![KernelError {
                errno,
                loc: cmd.loc,
                attr: false,
            }]);
        }
        *changed = true;
        let head = format!("{} {} {}", t.family.as_str(), t.name, chain.value);
        echoes.push(Echo::Text(format!(
            "delete rule {head} handle {}",
            handle.value
        )));
        // The new rule is echoed like an added one, naming the
        // rule before it.
        echoes.push(Echo::Rule {
            head: format!("add rule {head} "),
            family: t.family,
            table: t.name.clone(),
            chain: chain.value.clone(),
            handle: handle.value,
            body: format!("{text}{}", handle_comment(opts, handle.value)),
        });
        Ok(())
    }

    /// `rename chain`.
    fn apply_rename_chain(
        &mut self,
        t: &TableRef,
        chain: &Named<String>,
        new: &Named<String>,
        cmd: &Command,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        if table.chain(&chain.value).is_none() {
            return Err(attr_error(Errno::NoEnt, chain.loc));
        }
        if table.chain(&new.value).is_some() {
            return Err(vec![KernelError {
                errno: Errno::Exist,
                loc: cmd.loc,
                attr: false,
            }]);
        }
        // Verdict map elements name chains too.
        for set in table.sets.iter_mut() {
            for e in set.elements.iter_mut() {
                if let Some(v) = &mut e.value {
                    let (verb, target) = v.split_once(' ').unwrap_or(("", ""));
                    if matches!(verb, "jump" | "goto") && target == chain.value {
                        *v = format!("{verb} {}", new.value);
                    }
                }
            }
        }
        for c in table.chains.iter_mut() {
            if c.name == chain.value {
                c.name = new.value.clone();
            }
            let uses = c
                .rules
                .iter()
                .any(|r| r.jump_targets().any(|j| j == chain.value));
            if uses {
                for r in std::sync::Arc::make_mut(&mut c.rules).iter_mut() {
                    for st in r.stmts.iter_mut() {
                        if let StmtKind::VerdictMap(ts) = &mut st.kind {
                            for tname in ts.iter_mut().filter(|n| **n == chain.value) {
                                *tname = new.value.clone();
                            }
                            st.text = rename_verdict_targets(&st.text, &chain.value, &new.value);
                            continue;
                        }
                        let verb = match &st.kind {
                            StmtKind::Jump(n) if *n == chain.value => "jump",
                            StmtKind::Goto(n) if *n == chain.value => "goto",
                            _ => continue,
                        };
                        st.text = format!("{verb} {}", new.value);
                        st.kind = if verb == "jump" {
                            StmtKind::Jump(new.value.clone())
                        } else {
                            StmtKind::Goto(new.value.clone())
                        };
                    }
                }
            }
        }
        *changed = true;
        Ok(())
    }

    /// `delete rule ... handle N`.
    fn apply_delete_rule(
        &mut self,
        t: &TableRef,
        chain: &Named<String>,
        handle: &Named<u64>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        let c = table
            .chain_mut(&chain.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, chain.loc))?;
        let idx = c
            .rules
            .iter()
            .position(|r| r.handle == handle.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, handle.loc))?;
        std::sync::Arc::make_mut(&mut c.rules).remove(idx);
        *changed = true;
        Ok(())
    }

    /// `add|create set|map`.
    #[allow(clippy::too_many_arguments)]
    fn apply_add_set(
        &mut self,
        create: &bool,
        t: &TableRef,
        set: &Named<String>,
        decl: &SetDecl,
        opts: Opts,
        echoes: &mut Vec<Echo>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        let mut new_elems: Vec<Element> = Vec::new();
        if let Some(existing) = table.sets.iter_mut().find(|s| s.name == set.value) {
            if *create {
                return Err(attr_error(Errno::Exist, set.loc));
            }
            if existing.is_map != decl.is_map
                || existing.key_type != decl.key_type
                || existing.data_type != decl.data_type
                || existing.flags != decl.flags
            {
                return Err(attr_error(Errno::Exist, set.loc));
            }
            for e in &decl.elements {
                if !existing.elements.iter().any(|x| x.key == e.key) {
                    existing.elements.push(e.clone());
                    new_elems.push(e.clone());
                }
            }
        } else {
            new_elems = decl.elements.clone();
            if decl.auto_merge && !decl.is_map {
                if let Some(m) = merge_intervals(&decl.key_type, &new_elems) {
                    new_elems = m;
                }
            }
            let handle = table.alloc_handle();
            table.sets.push(Set {
                name: set.value.clone(),
                handle,
                is_map: decl.is_map,
                key_type: decl.key_type.clone(),
                data_type: decl.data_type.clone(),
                flags: decl.flags.clone(),
                elements: new_elems.clone(),
                typeof_key: decl.typeof_key.clone(),
                auto_merge: decl.auto_merge,
                comment: decl.comment.clone(),
            });
        }
        *changed = true;
        if let Some(s) = table.set(&set.value) {
            let mut inner = String::new();
            if opts.handles {
                inner.push_str(&format!("# handle {} ", s.handle));
            }
            inner.push_str(&format!("{};", s.type_text()));
            if !s.flags.is_empty() {
                inner.push_str(&format!(" flags {};", s.flags.join(",")));
            }
            if let Some(c) = &s.comment {
                inner.push_str(&format!(" comment \"{c}\";"));
            }
            echoes.push(Echo::Text(format!(
                "{} {} {} {} {} {{ {} }} ",
                create_or_add(*create),
                if s.is_map { "map" } else { "set" },
                t.family.as_str(),
                t.name,
                set.value,
                inner
            )));
            // The set's initial elements follow as element echoes.
            if s.flags.iter().any(|f| f == "interval") {
                new_elems.sort_by(|a, b| model::element_cmp(&s.key_type, &a.key, &b.key));
            }
            for e in &new_elems {
                echoes.push(Echo::Text(format!(
                    "add element {} {} {} {{ {} }}",
                    t.family.as_str(),
                    t.name,
                    set.value,
                    e.text()
                )));
            }
        }
        Ok(())
    }

    /// `delete set|map`.
    fn apply_delete_set(
        &mut self,
        t: &TableRef,
        set: &Named<String>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        let idx = table
            .sets
            .iter()
            .position(|s| s.name == set.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, set.loc))?;
        if table.set_use(&set.value) > 0 {
            return Err(attr_error(Errno::Busy, set.loc));
        }
        table.sets.remove(idx);
        *changed = true;
        Ok(())
    }

    /// `flush set|map`.
    fn apply_flush_set(
        &mut self,
        t: &TableRef,
        set: &Named<String>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        let s = table
            .sets
            .iter_mut()
            .find(|s| s.name == set.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, set.loc))?;
        if !s.elements.is_empty() {
            s.elements.clear();
            *changed = true;
        }
        Ok(())
    }

    /// `add|create element`.
    fn apply_add_element(
        &mut self,
        create: &bool,
        t: &TableRef,
        set: &Named<String>,
        elems: &[Named<Element>],
        echoes: &mut Vec<Echo>,
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        let s = table
            .sets
            .iter_mut()
            .find(|s| s.name == set.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, set.loc))?;
        for e in elems {
            if let Some(x) = s.elements.iter().find(|x| x.key == e.value.key) {
                if x.value != e.value.value || *create {
                    let key_loc = Loc {
                        len: e.value.key.len().min(e.loc.len),
                        ..e.loc
                    };
                    return Err(attr_error(Errno::Exist, key_loc));
                }
            }
        }
        let mut order: Vec<&Named<Element>> = elems.iter().collect();
        if s.flags.iter().any(|f| f == "interval") {
            // Interval elements are sorted by nft before sending.
            order.sort_by(|a, b| model::element_cmp(&s.key_type, &a.value.key, &b.value.key));
        }
        if s.auto_merge && !s.is_map {
            // nft merges the new intervals with the set's and
            // echoes the merged intervals that took new elements.
            let mut all = s.elements.clone();
            all.extend(elems.iter().map(|e| e.value.clone()));
            if let Some(merged) = merge_intervals(&s.key_type, &all) {
                let new_spans: Vec<(u128, u128)> = elems
                    .iter()
                    .filter_map(|e| model::element_bounds(&s.key_type, &e.value.key))
                    .collect();
                if merged != s.elements {
                    *changed = true;
                    // Existing elements merged away are deleted
                    // before the merged ones are added.
                    if s.elements.iter().any(|x| !merged.contains(x)) {
                        echoes.push(Echo::DeleteFirst);
                    }
                    let touched: Vec<String> = merged
                        .iter()
                        .filter(|m| {
                            model::element_bounds(&s.key_type, &m.key).is_some_and(|(lo, hi)| {
                                new_spans.iter().any(|(a, b)| *a >= lo && *b <= hi)
                            })
                        })
                        .map(|m| m.text())
                        .collect();
                    echoes.push(Echo::Text(format!(
                        "add element {} {} {} {{ {} }}",
                        t.family.as_str(),
                        t.name,
                        set.value,
                        touched.join(", ")
                    )));
                    s.elements = merged;
                }
                order.clear();
            }
        }
        for e in order {
            if s.elements.iter().any(|x| x.key == e.value.key) {
                // Already there: no transaction, nothing echoed.
                continue;
            }
            s.elements.push(e.value.clone());
            *changed = true;
            echoes.push(Echo::Text(format!(
                "add element {} {} {} {{ {} }}",
                t.family.as_str(),
                t.name,
                set.value,
                e.value.text()
            )));
        }
        Ok(())
    }

    /// `delete element`.
    fn apply_delete_element(
        &mut self,
        t: &TableRef,
        set: &Named<String>,
        elems: &[Named<Element>],
        changed: &mut bool,
    ) -> Result<(), Vec<KernelError>> {
        let table = self.table_mut_or_enoent(t)?;
        let s = table
            .sets
            .iter_mut()
            .find(|s| s.name == set.value)
            .ok_or_else(|| attr_error(Errno::NoEnt, set.loc))?;
        for e in elems {
            if !s.elements.iter().any(|x| x.key == e.value.key) {
                return Err(attr_error(Errno::NoEnt, e.loc));
            }
        }
        for e in elems {
            s.elements.retain(|x| x.key != e.value.key);
        }
        *changed = true;
        Ok(())
    }

    /// One echo line (without newline).
    fn echo_line(&self, e: &Echo) -> String {
        match e {
            Echo::Text(t) => t.clone(),
            Echo::DeleteFirst => String::new(),
            Echo::Rule {
                head,
                family,
                table,
                chain,
                handle,
                body,
            } => {
                let pos = self
                    .table(*family, table)
                    .and_then(|t| t.chain(chain))
                    .and_then(|c| {
                        let idx = c.rules.iter().position(|r| r.handle == *handle)?;
                        (idx > 0 && idx + 1 < c.rules.len()).then(|| c.rules[idx - 1].handle)
                    })
                    .map(|h| format!("handle {h} "))
                    .unwrap_or_default();
                let mut line = String::with_capacity(head.len() + pos.len() + body.len());
                line.push_str(head);
                line.push_str(&pos);
                line.push_str(body);
                line
            }
        }
    }

    /// What `nft list ruleset` prints.
    pub fn list_ruleset(&self) -> String {
        self.tables
            .iter()
            .map(|t| table_block(t, ListOpts::default(), TableParts::ALL))
            .collect()
    }

    /// What `nft -a list ruleset` prints.
    pub fn list_ruleset_with_handles(&self) -> String {
        self.tables
            .iter()
            .map(|t| table_block(t, ListOpts { handles: true }, TableParts::ALL))
            .collect()
    }
}

/// The kernel's table validation: walk from every base chain along jumps
/// and gotos; a chain 16 levels deep (always reached through a loop) fails
/// with EMLINK, a NAT statement under a base chain of the wrong type or hook
/// and a reject outside prerouting/input/forward/output with EOPNOTSUPP.
/// Whether adding `rule` to a valid table can make it invalid (see
/// [`validate_table`]): only a statement some hooks refuse (`reject`, NAT)
/// or a jump (a new path, perhaps a loop or a deeper stack) can. A table is
/// validated after every change, so it is valid before the rule comes.
fn can_invalidate(rule: &Rule) -> bool {
    rule.stmts.iter().any(|st| {
        matches!(
            st.kind,
            StmtKind::Reject
                | StmtKind::Nat(_)
                | StmtKind::Jump(_)
                | StmtKind::Goto(_)
                | StmtKind::VerdictMap(_)
        )
    })
}

fn validate_table(table: &Table) -> Option<Errno> {
    const JUMP_STACK: usize = 16;
    /// `seen[slot]`: the deepest level a chain name was walked from (the
    /// index of the first chain with that name stands for the name);
    /// `chain` is the chain walked.
    fn walk(
        table: &Table,
        base: &BaseSpec,
        chain: &Chain,
        slot: usize,
        level: usize,
        seen: &mut [Option<usize>],
    ) -> Option<Errno> {
        if level == JUMP_STACK {
            return Some(Errno::MLink);
        }
        // A chain already walked from as deep or deeper adds nothing new.
        match seen[slot] {
            Some(l) if l >= level => return None,
            _ => seen[slot] = Some(level),
        }
        for r in chain.rules.iter() {
            for st in &r.stmts {
                if st.kind == StmtKind::Reject
                    && !matches!(
                        base.hook.as_str(),
                        "prerouting" | "input" | "forward" | "output"
                    )
                {
                    return Some(Errno::NotSupp);
                }
                if let StmtKind::Nat(kind) = &st.kind {
                    let ok = base.chain_type == "nat"
                        && match kind.as_str() {
                            "masquerade" => base.hook == "postrouting",
                            "snat" => base.hook == "postrouting" || base.hook == "input",
                            _ => base.hook == "prerouting" || base.hook == "output",
                        };
                    if !ok {
                        return Some(Errno::NotSupp);
                    }
                }
            }
            for target in r.jump_targets() {
                if let Some(next) = table.chains.iter().position(|c| c.name == target) {
                    let next_chain = &table.chains[next];
                    if let Some(e) = walk(table, base, next_chain, next, level + 1, seen) {
                        return Some(e);
                    }
                }
            }
        }
        None
    }
    let mut seen = vec![None; table.chains.len()];
    for (i, c) in table.chains.iter().enumerate() {
        if let Some(b) = &c.base {
            seen.iter_mut().for_each(|s| *s = None);
            let first = table
                .chains
                .iter()
                .position(|x| x.name == c.name)
                .unwrap_or(i);
            if let Some(e) = walk(table, b, c, first, 0, &mut seen) {
                return Some(e);
            }
        }
    }
    None
}

/// Appends `n` in decimal (what `{n}` prints, without the formatting
/// machinery: echoes print one or two numbers per command).
fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

fn empty_table(t: &TableRef, handle: u64) -> Table {
    Table {
        family: t.family,
        name: t.name.clone(),
        handle,
        dormant: false,
        comment: None,
        last_handle: 0,
        chains: Vec::new(),
        sets: Vec::new(),
    }
}

/// Elements must fit the set's key (and data) type.
fn check_element(s: &Set, e: &Named<Element>) -> Result<(), InputError> {
    let ok = |ty: &str, v: &str| -> bool {
        match ty {
            "ipv4_addr" => parser::ipv4_value(v).is_some(),
            "ipv6_addr" => parser::ipv6_value(v).is_some(),
            "inet_service" | "mark" | "inet_proto" => {
                v.split('-').all(|p| p.parse::<u32>().is_ok())
            }
            "ifname" => v.starts_with('"'),
            "verdict" => true,
            _ => false,
        }
    };
    let key = &e.value.key;
    let interval = s.flags.iter().any(|f| f == "interval");
    let is_range = key.contains('-') && s.key_type != "ifname";
    if !interval && (key.contains('/') || is_range) {
        let what = if key.contains('/') { "prefix" } else { "range" };
        return Err(InputError::new(
            e.loc,
            format!(
                "You must add 'flags interval' to your set declaration if you want to add {what} elements"
            ),
        ));
    }
    let plain = key.split(['/', '-']).next().unwrap_or("");
    let fits = ok(&s.key_type, key) || (is_range && ok(&s.key_type, plain));
    if !fits {
        return Err(InputError::not_simulated(
            e.loc,
            format!("element '{}' for type {}", e.value.key, s.key_type),
        ));
    }
    if interval && !s.auto_merge {
        if let Some((lo, hi)) = model::element_bounds(&s.key_type, key) {
            let overlaps = s.elements.iter().any(|x| {
                x.key != *key
                    && model::element_bounds(&s.key_type, &x.key)
                        .is_some_and(|(a, b)| a <= hi && lo <= b)
            });
            if overlaps {
                return Err(InputError::new(
                    e.loc,
                    "interval overlaps with an existing one",
                ));
            }
        }
    }
    match (&s.data_type, &e.value.value) {
        (Some(d), Some(v)) if ok(d, v) => Ok(()),
        (None, None) => Ok(()),
        _ => Err(InputError::not_simulated(
            e.loc,
            "element value does not fit the map",
        )),
    }
}

/// The cache nft builds for a batch: none when it only flushes (or lists),
/// tables and chains as soon as anything is added or deleted.
fn cache_level(cmds: &[Command], echo: bool) -> CacheLevel {
    cmds.iter()
        .map(|c| match c.op {
            // With echo, every add loads the whole ruleset (nft needs it to
            // print what the kernel returns).
            Op::AddTable { .. }
            | Op::AddChain { .. }
            | Op::AddRule { .. }
            | Op::AddSet { .. }
            | Op::AddElement { .. }
                if echo =>
            {
                CacheLevel::Full
            }
            // Adding a table needs no cache; flushes and lists neither (lists
            // load only what they show).
            Op::AddTable { .. }
            | Op::FlushTable(_)
            | Op::FlushChain { .. }
            | Op::FlushSet { .. }
            | Op::FlushRuleset(_)
            | Op::ListRuleset(_)
            | Op::ListTables(_)
            | Op::ListTable(_)
            | Op::ListChain { .. }
            | Op::ListChains(_)
            | Op::ListSets { .. }
            | Op::ListSet { .. } => CacheLevel::Empty,
            _ => CacheLevel::Full,
        })
        .max()
        .unwrap_or(CacheLevel::Empty)
}

fn is_list(op: &Op) -> bool {
    matches!(
        op,
        Op::ListRuleset(_)
            | Op::ListTables(_)
            | Op::ListTable(_)
            | Op::ListChain { .. }
            | Op::ListChains(_)
            | Op::ListSets { .. }
            | Op::ListSet { .. }
            | Op::GetElement { .. }
    )
}
