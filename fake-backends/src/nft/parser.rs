//! Parser for the subset of the nft command language the simulator knows:
//! commands on tables, chains, rules, sets/maps and elements, and the rule
//! statements libvirt and a batched backend emit. Statements are turned into
//! the canonical text nft prints for them.
//!
//! Rule statements: `iif`/`oif`/`iifname`/`oifname` (also under `meta`, and
//! name sets), `meta l4proto`/`nfproto`, `meta mark` and `ct mark` (match
//! and `set`), `ip`/`ip6 saddr|daddr` (prefixes, anonymous sets, `@set`),
//! `ip protocol`, `ip6 nexthdr`, `tcp`/`udp sport|dport` (ranges, sets,
//! `@set`), `tcp flags`, `icmp`/`icmpv6 type`, `ct state` (sets too);
//! `counter`, `log`, `limit`, verdicts, `jump`/`goto`, verdict maps,
//! `reject [with ...]`, `masquerade`, `snat`/`dnat`, `redirect` (with NAT
//! flags), `comment`; service names from /etc/services. Canonical text as
//! nft lists it: `iif "x"`, `/32` dropped, host bits cleared, ct states in
//! bit order, the dependency `meta l4proto tcp` dropped before `tcp dport`,
//! default reject codes, `snat ip to` in inet. nft 1.0.6's scanner keywords
//! are not identifiers.
//!
//! Anything outside the subset is reported as [`InputError::not_simulated`], which
//! the caller prints as `Error: command not simulated: ...` (exit 1), so a
//! test never silently passes on something the simulator does not model.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::lexer::{Kind, Loc, Tok};
use super::model::{std_priority_value, BaseSpec, Element, Family, Stmt, StmtKind};

/// A parse or evaluation error with the location(s) nft would mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputError {
    pub loc: Loc,
    pub secondary: Option<Loc>,
    pub msg: String,
    /// Found while evaluating (symbols, protocols, ...) rather than while
    /// parsing: nft reports these after all syntax errors, in command order.
    pub eval: bool,
}

impl InputError {
    pub fn new(loc: Loc, msg: impl Into<String>) -> InputError {
        InputError {
            loc,
            secondary: None,
            msg: msg.into(),
            eval: true,
        }
    }
    /// An error nft's parser itself raises.
    pub fn parse_stage(mut self) -> InputError {
        self.eval = false;
        self
    }
    pub fn not_simulated(loc: Loc, what: impl std::fmt::Display) -> InputError {
        InputError::new(loc, format!("command not simulated: {what}"))
    }
}

/// `[family] name` of a table, with the location of the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableRef {
    pub family: Family,
    pub name: String,
    pub loc: Loc,
}

/// A name or number with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named<T> {
    pub value: T,
    pub loc: Loc,
}

/// `position N` / `handle N` / `index N` of add/insert rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PosKind {
    Position,
    Handle,
    Index,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RulePos {
    pub kind: PosKind,
    pub value: u64,
    /// The whole `position N` span (kernel errors on `position`/`index`
    /// point at it) …
    pub loc: Loc,
    /// … and the number only (errors on `handle N` point at it).
    pub value_loc: Loc,
}

/// A parsed rule body: canonical statements plus what evaluation and the
/// kernel stage need to check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RuleBody {
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
    /// Devices named by `iif`/`oif` (resolved to an index by nft, so they
    /// must exist).
    pub ifaces: Vec<Named<String>>,
    /// Chains jumped to / gone to, with the location of the name.
    pub targets: Vec<(Named<String>, bool)>,
    /// Named sets referenced with `@name`.
    pub set_refs: Vec<Named<String>>,
    /// Anonymous sets (`{ a, b }`), by location — each is a set of its own
    /// in the kernel and takes a handle of the table.
    pub anon_sets: Vec<Loc>,
    /// Anonymous sets as listed (sorted) and as written: `-e` echoes a new
    /// rule with its sets in the order they were written.
    pub echo_sets: Vec<(String, String)>,
    /// [`RuleBody::echo_body`], worked out once per parsed body (when the
    /// rule is echoed).
    pub echo: EchoCache,
}

/// A value computed from the rest of the body on first use: not part of
/// the body's identity (bodies compare equal whether it was computed yet or
/// not).
#[derive(Debug, Clone, Default)]
pub(crate) struct EchoCache(std::sync::OnceLock<String>);

impl PartialEq for EchoCache {
    fn eq(&self, _: &EchoCache) -> bool {
        true
    }
}

impl Eq for EchoCache {}

impl RuleBody {
    /// The echo text (`echo_text`) of a rule with this body as listed: a
    /// function of the statements, comment and anonymous sets alone.
    pub fn echo_body(&self) -> &str {
        self.echo.0.get_or_init(|| {
            self.echo_text(&super::model::rule_text(
                &self.stmts,
                self.comment.as_deref(),
            ))
        })
    }

    /// A rule's listed text as `nft -e` echoes it.
    pub fn echo_text(&self, listed: &str) -> String {
        let mut out = listed.to_string();
        for (sorted, written) in &self.echo_sets {
            if sorted != written {
                out = out.replacen(sorted.as_str(), written, 1);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetDecl {
    pub is_map: bool,
    pub key_type: String,
    pub data_type: Option<String>,
    pub flags: Vec<String>,
    pub elements: Vec<Element>,
    pub typeof_key: Option<String>,
    pub auto_merge: bool,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    AddTable {
        create: bool,
        t: TableRef,
        dormant: bool,
        comment: Option<String>,
    },
    DeleteTable {
        family: Family,
        name: Option<Named<String>>,
        handle: Option<Named<u64>>,
    },
    FlushTable(TableRef),
    AddChain {
        create: bool,
        t: TableRef,
        chain: Named<String>,
        spec: Option<BaseSpec>,
        comment: Option<String>,
        policy_loc: Option<Loc>,
        /// `{ policy X; }` alone: the new policy of an existing base chain.
        policy_only: Option<bool>,
    },
    DeleteChain {
        t: TableRef,
        chain: Option<Named<String>>,
        handle: Option<Named<u64>>,
    },
    FlushChain {
        t: TableRef,
        chain: Named<String>,
    },
    AddRule {
        insert: bool,
        t: TableRef,
        chain: Named<String>,
        pos: Option<RulePos>,
        body: RuleBody,
    },
    DeleteRule {
        t: TableRef,
        chain: Named<String>,
        handle: Named<u64>,
    },
    /// `replace rule T C handle N BODY`: the rule keeps its handle.
    ReplaceRule {
        t: TableRef,
        chain: Named<String>,
        handle: Named<u64>,
        body: RuleBody,
    },
    /// `get element T S { E, ... }`: the set listed with those elements.
    GetElement {
        t: TableRef,
        set: Named<String>,
        elems: Vec<Named<Element>>,
    },
    /// `rename chain T C NEW`.
    RenameChain {
        t: TableRef,
        chain: Named<String>,
        new: Named<String>,
    },
    AddSet {
        create: bool,
        t: TableRef,
        set: Named<String>,
        decl: SetDecl,
    },
    DeleteSet {
        is_map: bool,
        t: TableRef,
        set: Named<String>,
    },
    FlushSet {
        t: TableRef,
        set: Named<String>,
        /// `flush map`: nft finds only a map of that name (and vice versa).
        is_map: bool,
    },
    AddElement {
        /// `create element`: an existing element is an error.
        create: bool,
        t: TableRef,
        set: Named<String>,
        elems: Vec<Named<Element>>,
    },
    DeleteElement {
        t: TableRef,
        set: Named<String>,
        elems: Vec<Named<Element>>,
    },
    FlushRuleset(Option<Family>),
    ListRuleset(Option<Family>),
    ListTables(Option<Family>),
    ListTable(TableRef),
    ListChain {
        t: TableRef,
        chain: Named<String>,
    },
    ListChains(Option<Family>),
    ListSets {
        maps: bool,
        family: Option<Family>,
    },
    ListSet {
        is_map: bool,
        t: TableRef,
        set: Named<String>,
    },
    /// A command whose evaluation already failed while it was read, and
    /// whether it was a rule command with a position (which changes how nft
    /// evaluates the other rules of the batch).
    Invalid(InputError, bool),
}

/// One command with the span of its whole text (some kernel errors mark it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub op: Op,
    pub loc: Loc,
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
}

/// Words nft 1.0.6's scanner turns into keyword tokens everywhere (words it
/// only reserves inside a statement, such as `saddr` or `state`, are left
/// out: they are valid table and chain names). They are not accepted as
/// identifiers (a chain cannot be called `fwd`) and syntax errors name them
/// as themselves. The list was checked word by word against the real nft.
const KEYWORDS: &[&str] = &[
    "eq",
    "ne",
    "le",
    "lt",
    "ge",
    "gt",
    "lshift",
    "rshift",
    "xor",
    "and",
    "or",
    "not",
    "vmap",
    "include",
    "define",
    "redefine",
    "undefine",
    "describe",
    "hook",
    "device",
    "devices",
    "table",
    "chain",
    "rule",
    "set",
    "element",
    "map",
    "flowtable",
    "handle",
    "ruleset",
    "socket",
    "tproxy",
    "accept",
    "drop",
    "continue",
    "jump",
    "goto",
    "return",
    "inet",
    "netdev",
    "add",
    "replace",
    "update",
    "create",
    "insert",
    "delete",
    "get",
    "list",
    "reset",
    "flush",
    "rename",
    "import",
    "export",
    "monitor",
    "position",
    "index",
    "comment",
    "constant",
    "interval",
    "dynamic",
    "auto-merge",
    "timeout",
    "gc-interval",
    "elements",
    "expires",
    "policy",
    "size",
    "flow",
    "offload",
    "meter",
    "counter",
    "log",
    "queue",
    "limit",
    "quota",
    "hour",
    "day",
    "reject",
    "snat",
    "dnat",
    "masquerade",
    "redirect",
    "random",
    "th",
    "bridge",
    "ether",
    "type",
    "vlan",
    "arp",
    "ip",
    "ecn",
    "time",
    "icmp",
    "igmp",
    "ip6",
    "priority",
    "icmpv6",
    "ah",
    "esp",
    "comp",
    "flags",
    "udp",
    "udplite",
    "tcp",
    "dccp",
    "sctp",
    "rt",
    "rt0",
    "rt2",
    "srh",
    "hbh",
    "frag",
    "dst",
    "mh",
    "meta",
    "mark",
    "iif",
    "iifname",
    "iiftype",
    "oif",
    "oifname",
    "oiftype",
    "skuid",
    "skgid",
    "nftrace",
    "rtclassid",
    "ibriport",
    "ibrname",
    "obriport",
    "obrname",
    "pkttype",
    "cpu",
    "iifgroup",
    "oifgroup",
    "cgroup",
    "ct",
    "numgen",
    "jhash",
    "symhash",
    "dup",
    "fwd",
    "fib",
    "osf",
    "synproxy",
    "notrack",
    "all",
    "exists",
    "missing",
    "exthdr",
    "ipsec",
    "secmark",
];

/// Object kinds of nft the simulator does not model (they must not be
/// mistaken for a table name of the `add TABLE CHAIN ...` shorthand).
const OTHER_OBJECTS: &[&str] = &[
    "flowtable",
    "quota",
    "secmark",
    "synproxy",
    "ct",
    "counters",
    "quotas",
    "limits",
    "flowtables",
    "meter",
    "meters",
    "hooks",
];

fn is_keyword(w: &str) -> bool {
    KEYWORDS.contains(&w)
}

fn tok_desc(t: &Tok) -> &str {
    match t.kind {
        Kind::Word => {
            if t.text.bytes().all(|b| b.is_ascii_digit()) {
                "number"
            } else if is_keyword(&t.text) {
                &t.text
            } else {
                "string"
            }
        }
        Kind::Quoted => "quoted string",
        Kind::LBrace => "'{'",
        Kind::RBrace => "'}'",
        Kind::Semi => "semicolon",
        Kind::Comma => "comma",
        Kind::Ne => "!=",
        Kind::EqEq => "==",
        Kind::Newline => "newline",
        Kind::Eof => "end of file",
    }
}

fn syntax(t: &Tok, expecting: Option<&str>) -> InputError {
    let mut msg = format!("syntax error, unexpected {}", tok_desc(t));
    if let Some(e) = expecting {
        msg.push_str(", expecting ");
        msg.push_str(e);
    }
    InputError::new(t.loc(), msg).parse_stage()
}

const END_EXPECT: &str = "end of file or newline or semicolon";

impl<'a> Parser<'a> {
    fn peek(&self) -> &'a Tok {
        // The token list always ends with Eof; never step past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }
    fn peek_at(&self, n: usize) -> &'a Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)]
    }
    fn next(&mut self) -> &'a Tok {
        let t = self.peek();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn prev(&self) -> &'a Tok {
        &self.toks[self.pos.saturating_sub(1)]
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek().is_word(w) {
            self.next();
            true
        } else {
            false
        }
    }
    fn word(&mut self, expecting: &str) -> Result<Named<String>, InputError> {
        let t = self.peek();
        if t.kind == Kind::Word || t.kind == Kind::Quoted {
            self.next();
            Ok(Named {
                value: t.text.clone(),
                loc: t.loc(),
            })
        } else {
            Err(syntax(t, Some(expecting)))
        }
    }
    /// A name (table, chain, set, jump target): any word that is not a
    /// keyword, or a quoted string.
    fn ident(&mut self, expecting: &str) -> Result<Named<String>, InputError> {
        let t = self.peek();
        if t.kind == Kind::Quoted || (t.kind == Kind::Word && is_keyword(&t.text)) {
            return Err(syntax(t, Some(expecting)));
        }
        self.word(expecting)
    }
    fn number(&mut self) -> Result<Named<u64>, InputError> {
        let t = self.peek();
        if t.kind == Kind::Word {
            if let Ok(n) = t.text.parse::<u64>() {
                self.next();
                return Ok(Named {
                    value: n,
                    loc: t.loc(),
                });
            }
        }
        Err(syntax(t, Some("number")))
    }
    fn at_end(&self) -> bool {
        self.peek().is_end()
    }
    fn skip_newlines(&mut self) {
        while self.peek().kind == Kind::Newline {
            self.next();
        }
    }

    /// `[family]` — a family keyword followed by another word.
    fn family_opt(&mut self) -> Option<Family> {
        let t = self.peek();
        if t.kind == Kind::Word {
            if let Some(f) = Family::parse(&t.text) {
                self.next();
                return Some(f);
            }
        }
        None
    }

    fn table_ref(&mut self, expecting: &str) -> Result<TableRef, InputError> {
        let family = self.family_opt().unwrap_or(Family::Ip);
        let n = self.ident(expecting)?;
        Ok(TableRef {
            family,
            name: n.value,
            loc: n.loc,
        })
    }
}

/// Parse a whole input into commands.
/// Parse a whole input into commands. Like nft's parser, it recovers after
/// a syntax error at the next newline or `;` and goes on, so every broken
/// command is reported; any error means no command runs.
/// `define NAME = VALUE` lines removed and every `$NAME` replaced by the
/// value's tokens (at the place of the `$NAME`), as nft's scanner does.
fn expand_defines(toks: &[Tok]) -> (Vec<Tok>, Vec<InputError>) {
    let mut vars: std::collections::HashMap<String, Vec<Tok>> = Default::default();
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len());
    let mut errors = Vec::new();
    let mut i = 0;
    let mut at_start = true;
    while i < toks.len() {
        let t = &toks[i];
        if at_start
            && t.is_word("define")
            && toks.get(i + 1).is_some_and(|n| n.kind == Kind::Word)
            && toks.get(i + 2).is_some_and(|e| e.is_word("="))
        {
            let name = toks[i + 1].text.clone();
            let mut j = i + 3;
            let mut depth = 0i64;
            let mut value = Vec::new();
            while j < toks.len() {
                let v = &toks[j];
                match v.kind {
                    Kind::LBrace => depth += 1,
                    Kind::RBrace => depth -= 1,
                    Kind::Newline | Kind::Semi | Kind::Eof if depth <= 0 => break,
                    _ => {}
                }
                value.push(v.clone());
                j += 1;
            }
            // Values may use earlier variables.
            let value = value
                .into_iter()
                .flat_map(
                    |v| match v.text.strip_prefix('$').and_then(|n| vars.get(n)) {
                        Some(sub) if v.kind == Kind::Word => sub.clone(),
                        _ => vec![v],
                    },
                )
                .collect();
            vars.insert(name, value);
            i = j;
            continue;
        }
        at_start = matches!(t.kind, Kind::Newline | Kind::Semi);
        if t.kind == Kind::Word && t.text.len() > 1 && t.text.starts_with('$') {
            let name = &t.text[1..];
            match vars.get(name) {
                Some(sub) => {
                    for v in sub {
                        let mut v = v.clone();
                        v.line = t.line;
                        v.col = t.col;
                        v.len = t.len;
                        out.push(v);
                    }
                }
                None => {
                    let loc = Loc {
                        col: t.col + 1,
                        len: name.len(),
                        ..t.loc()
                    };
                    errors.push(InputError::new(loc, format!("unknown identifier '{name}'")));
                    out.push(t.clone());
                }
            }
            i += 1;
            continue;
        }
        out.push(t.clone());
        i += 1;
    }
    (out, errors)
}

pub(crate) fn parse(toks: &[Tok]) -> (Vec<Command>, Vec<InputError>) {
    let (expanded, define_errors) = expand_defines(toks);
    let (mut cmds, mut errors) = parse_expanded(&expanded);
    // An unknown `$NAME` is the only error nft reports for its place.
    let at_var = |l: &Loc| {
        define_errors
            .iter()
            .any(|d| d.loc.line == l.line && d.loc.col == l.col + 1)
    };
    errors.retain(|e| !at_var(&e.loc));
    cmds.retain(|c| !matches!(&c.op, Op::Invalid(e, _) if at_var(&e.loc)));
    errors.extend(define_errors);
    (cmds, errors)
}

fn parse_expanded(toks: &[Tok]) -> (Vec<Command>, Vec<InputError>) {
    let mut p = Parser { toks, pos: 0 };
    // Most batches hold one command, and a command is large: room for one
    // (a first push would reserve four, a >1 KiB allocation that costs the
    // allocator a consolidation pass).
    let mut cmds = Vec::with_capacity(1);
    let mut errors = Vec::new();
    loop {
        while matches!(p.peek().kind, Kind::Newline | Kind::Semi) {
            p.next();
        }
        if p.peek().kind == Kind::Eof {
            break;
        }
        let start = p.peek().loc();
        let start_pos = p.pos;
        let result = command(&mut p, &mut cmds, &mut errors).and_then(|op| {
            if p.at_end() {
                Ok(op)
            } else {
                Err(syntax(p.peek(), Some(END_EXPECT)))
            }
        });
        match result {
            Ok(op) => {
                // nft's command location runs up to and including the
                // terminator.
                let end = p.peek().loc();
                if let Some(op) = op {
                    cmds.push(Command {
                        op,
                        loc: start.to(end),
                    });
                }
            }
            Err(e) if e.eval => {
                // Reported by evaluation, in command order, after all
                // syntax errors; the rest of the command is skipped (up to
                // its end outside any braces the command opened).
                let mut depth: i64 = toks[start_pos..p.pos]
                    .iter()
                    .map(|t| match t.kind {
                        Kind::LBrace => 1,
                        Kind::RBrace => -1,
                        _ => 0,
                    })
                    .sum();
                while !(p.peek().kind == Kind::Eof || (depth <= 0 && p.peek().is_end())) {
                    match p.next().kind {
                        Kind::LBrace => depth += 1,
                        Kind::RBrace => depth -= 1,
                        _ => {}
                    }
                }
                let end = p.peek().loc();
                let words = &toks[start_pos..p.pos];
                let is_rule_add = words
                    .first()
                    .is_some_and(|w| w.is_word("add") || w.is_word("insert"));
                let has_pos = words.windows(2).any(|w| {
                    w[0].is_word("index") || (w[0].is_word("position") && !w[1].is_word("0"))
                });
                cmds.push(Command {
                    op: Op::Invalid(e, is_rule_add && has_pos),
                    loc: start.to(end),
                });
            }
            Err(e) => {
                // Like bison's error recovery, resynchronise at the next
                // separator after a syntax error (outside braces the
                // command opened); other errors end the line.
                let open_braces: i64 = toks[start_pos..p.pos]
                    .iter()
                    .map(|t| match t.kind {
                        Kind::LBrace => 1,
                        Kind::RBrace => -1,
                        _ => 0,
                    })
                    .sum();
                let syntax_error = e.msg.starts_with("syntax error") && open_braces <= 0;
                // An error at the `}` of a one-line block: bison's recovery
                // eats the `}` and then meets the end of the input inside it.
                let eof_inside = open_braces > 0
                    && e.msg == "syntax error, unexpected '}', expecting newline or semicolon"
                    && !toks[p.pos..]
                        .iter()
                        .take_while(|t| !matches!(t.kind, Kind::Newline | Kind::Eof))
                        .any(|t| t.kind == Kind::Semi);
                let line = e.loc.line;
                errors.push(e);
                if eof_inside {
                    errors.push(
                        InputError::new(
                            Loc {
                                line,
                                col: 0,
                                len: 1,
                            },
                            "syntax error, unexpected end of file",
                        )
                        .parse_stage(),
                    );
                }
                while !(matches!(p.peek().kind, Kind::Newline | Kind::Eof)
                    || (syntax_error && p.peek().kind == Kind::Semi))
                {
                    p.next();
                }
            }
        }
    }
    (cmds, errors)
}

fn command(
    p: &mut Parser,
    out: &mut Vec<Command>,
    errors: &mut Vec<InputError>,
) -> Result<Option<Op>, InputError> {
    let verb = p.peek();
    if verb.kind != Kind::Word {
        return Err(syntax(verb, None));
    }
    match verb.text.as_str() {
        "add" | "create" | "insert" => {
            p.next();
            add_cmd(p, &verb.text).map(Some)
        }
        "delete" => {
            p.next();
            delete_cmd(p).map(Some)
        }
        "flush" => {
            p.next();
            flush_cmd(p).map(Some)
        }
        "list" => {
            p.next();
            list_cmd(p).map(Some)
        }
        "table" => {
            p.next();
            table_block(p, out, errors)?;
            Ok(None)
        }
        "chain" | "rule" | "set" | "map" | "element" => add_cmd(p, "add").map(Some),
        "get" if p.peek_at(1).is_word("element") => {
            p.next();
            p.next();
            let t = p.table_ref("string")?;
            let set = p.ident("string")?;
            let elems = element_list(p)?;
            Ok(Some(Op::GetElement { t, set, elems }))
        }
        "replace" if p.peek_at(1).is_word("rule") => {
            p.next();
            p.next();
            let t = p.table_ref("string")?;
            let chain = p.ident("string")?;
            if !p.eat_word("handle") {
                return Err(syntax(p.peek(), Some("handle")));
            }
            let handle = p.number()?;
            let body = rule_body(p, t.family, false)?;
            Ok(Some(Op::ReplaceRule {
                t,
                chain,
                handle,
                body,
            }))
        }
        "rename" if p.peek_at(1).is_word("chain") => {
            p.next();
            p.next();
            let t = p.table_ref("string")?;
            let chain = p.ident("string")?;
            let new = p.ident("string")?;
            Ok(Some(Op::RenameChain { t, chain, new }))
        }
        "include" if p.peek_at(1).kind == Kind::Quoted && p.peek_at(1).text.starts_with('/') => {
            let path = p.peek_at(1);
            if std::path::Path::new(&path.text).exists() {
                return Err(InputError::not_simulated(verb.loc(), "'include'"));
            }
            // The location runs up to the command's terminator.
            Err(InputError::new(
                verb.loc().to(p.peek_at(2).loc()),
                format!("File not found: {}", path.text),
            )
            .parse_stage())
        }
        "monitor" | "describe" | "reset" | "rename" | "replace" | "import" | "export" | "get"
        | "include" | "define" | "redefine" | "undefine" => Err(InputError::not_simulated(
            verb.loc(),
            format!("'{}'", verb.text),
        )),
        w if is_keyword(w) => Err(syntax(verb, None)),
        // nft reads an unknown first word as the table of an implicit
        // `add rule` (`[add] [rule] TABLE CHAIN STMT...`).
        _ => add_cmd(p, "add").map(Some),
    }
}

fn add_cmd(p: &mut Parser, verb: &str) -> Result<Op, InputError> {
    let create = verb == "create";
    let obj = p.peek();
    if obj.kind != Kind::Word {
        return Err(syntax(obj, Some("string")));
    }
    match (verb, obj.text.as_str()) {
        ("add" | "create", "table") => {
            p.next();
            let t = p.table_ref("string")?;
            let (dormant, comment) = if p.peek().kind == Kind::LBrace {
                table_opts(p)?
            } else {
                (false, None)
            };
            Ok(Op::AddTable {
                create,
                t,
                dormant,
                comment,
            })
        }
        ("add" | "create", "chain") => {
            p.next();
            let t = p.table_ref("string")?;
            let chain = p.ident("string")?;
            let opts = if p.peek().kind == Kind::LBrace {
                chain_spec(p, t.family)?
            } else {
                ChainOpts::default()
            };
            Ok(Op::AddChain {
                create,
                t,
                chain,
                spec: opts.base,
                comment: opts.comment,
                policy_loc: opts.policy_loc,
                policy_only: opts.policy_only,
            })
        }
        ("add" | "insert", "rule") => {
            p.next();
            let t = p.table_ref("string")?;
            let chain = p.ident("string")?;
            let pos = rule_pos(p)?;
            let body = rule_body(p, t.family, false)?;
            Ok(Op::AddRule {
                insert: verb == "insert",
                t,
                chain,
                pos,
                body,
            })
        }
        ("add" | "create", "set" | "map") => {
            p.next();
            let is_map = obj.text == "map";
            let t = p.table_ref("string")?;
            let set = p.ident("string")?;
            let decl = set_decl(p, is_map)?;
            Ok(Op::AddSet {
                create,
                t,
                set,
                decl,
            })
        }
        ("add" | "create", "element") => {
            p.next();
            let t = p.table_ref("string")?;
            let set = p.ident("string")?;
            let elems = element_list(p)?;
            Ok(Op::AddElement {
                create,
                t,
                set,
                elems,
            })
        }
        ("add" | "insert", w)
            if Family::parse(w).is_some() || !(is_keyword(w) || OTHER_OBJECTS.contains(&w)) =>
        {
            // `add [family] TABLE CHAIN stmt...` is short for `add rule`.
            let t = p.table_ref("string")?;
            let chain = p.ident("string")?;
            let pos = rule_pos(p)?;
            let body = rule_body(p, t.family, false)?;
            Ok(Op::AddRule {
                insert: verb == "insert",
                t,
                chain,
                pos,
                body,
            })
        }
        _ => Err(InputError::not_simulated(
            obj.loc(),
            format!("'{} {}'", verb, obj.text),
        )),
    }
}

fn rule_pos(p: &mut Parser) -> Result<Option<RulePos>, InputError> {
    let t = p.peek();
    let kind = match t.text.as_str() {
        "position" if t.kind == Kind::Word => PosKind::Position,
        "handle" if t.kind == Kind::Word => PosKind::Handle,
        "index" if t.kind == Kind::Word => PosKind::Index,
        _ => return Ok(None),
    };
    p.next();
    let n = p.number()?;
    if n.value == 0 && kind != PosKind::Index {
        // Handle 0 means "no position" to nft.
        return Ok(None);
    }
    Ok(Some(RulePos {
        kind,
        value: n.value,
        loc: t.loc().to(n.loc),
        value_loc: n.loc,
    }))
}

fn delete_cmd(p: &mut Parser) -> Result<Op, InputError> {
    let obj = p.peek();
    if obj.kind != Kind::Word {
        return Err(syntax(obj, Some("string")));
    }
    p.next();
    match obj.text.as_str() {
        "table" => {
            let family = p.family_opt().unwrap_or(Family::Ip);
            if p.eat_word("handle") {
                let h = p.number()?;
                return Ok(Op::DeleteTable {
                    family,
                    name: None,
                    handle: Some(h),
                });
            }
            let n = p.ident("handle or string")?;
            Ok(Op::DeleteTable {
                family,
                name: Some(n),
                handle: None,
            })
        }
        "chain" => {
            let t = p.table_ref("string")?;
            if p.eat_word("handle") {
                let h = p.number()?;
                return Ok(Op::DeleteChain {
                    t,
                    chain: None,
                    handle: Some(h),
                });
            }
            let c = p.ident("handle or string")?;
            Ok(Op::DeleteChain {
                t,
                chain: Some(c),
                handle: None,
            })
        }
        "rule" => {
            let t = p.table_ref("string")?;
            let chain = p.ident("string")?;
            if !p.eat_word("handle") {
                return Err(syntax(p.peek(), Some("handle")));
            }
            let handle = p.number()?;
            Ok(Op::DeleteRule { t, chain, handle })
        }
        "set" | "map" => {
            let t = p.table_ref("string")?;
            let set = p.ident("string")?;
            Ok(Op::DeleteSet {
                is_map: obj.text == "map",
                t,
                set,
            })
        }
        "element" => {
            let t = p.table_ref("string")?;
            let set = p.ident("string")?;
            let elems = element_list(p)?;
            Ok(Op::DeleteElement { t, set, elems })
        }
        _ => Err(InputError::not_simulated(
            obj.loc(),
            format!("'delete {}'", obj.text),
        )),
    }
}

fn flush_cmd(p: &mut Parser) -> Result<Op, InputError> {
    let obj = p.peek();
    if obj.kind != Kind::Word {
        return Err(syntax(obj, Some("string")));
    }
    p.next();
    match obj.text.as_str() {
        "ruleset" => Ok(Op::FlushRuleset(p.family_opt())),
        "table" => Ok(Op::FlushTable(p.table_ref("string")?)),
        "chain" => {
            let t = p.table_ref("string")?;
            let chain = p.ident("string")?;
            Ok(Op::FlushChain { t, chain })
        }
        "set" | "map" => {
            let t = p.table_ref("string")?;
            let set = p.ident("string")?;
            Ok(Op::FlushSet {
                t,
                set,
                is_map: obj.text == "map",
            })
        }
        _ => Err(InputError::not_simulated(
            obj.loc(),
            format!("'flush {}'", obj.text),
        )),
    }
}

fn list_cmd(p: &mut Parser) -> Result<Op, InputError> {
    let obj = p.peek();
    if obj.kind != Kind::Word {
        return Err(syntax(obj, None));
    }
    p.next();
    match obj.text.as_str() {
        "ruleset" => Ok(Op::ListRuleset(p.family_opt())),
        "tables" => Ok(Op::ListTables(p.family_opt())),
        "chains" => Ok(Op::ListChains(p.family_opt())),
        "sets" | "maps" => Ok(Op::ListSets {
            maps: obj.text == "maps",
            family: p.family_opt(),
        }),
        "table" => Ok(Op::ListTable(p.table_ref("string")?)),
        "chain" => {
            let t = p.table_ref("string")?;
            let chain = p.ident("string")?;
            Ok(Op::ListChain { t, chain })
        }
        "set" | "map" => {
            let t = p.table_ref("string")?;
            let set = p.ident("string")?;
            Ok(Op::ListSet {
                is_map: obj.text == "map",
                t,
                set,
            })
        }
        "counters" | "counter" | "quotas" | "quota" | "flowtables" | "flowtable" | "meters"
        | "meter" | "limits" | "limit" | "ct" | "secmarks" | "secmark" | "synproxys"
        | "synproxy" | "hooks" | "element" | "elements" | "flow" | "flows" => Err(
            InputError::not_simulated(obj.loc(), format!("'list {}'", obj.text)),
        ),
        _ => Err(syntax(obj, None)),
    }
}

/// `{ type T hook H priority P; [policy X;] }`
/// What a chain's `{ ... }` block says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ChainOpts {
    pub base: Option<BaseSpec>,
    pub comment: Option<String>,
    /// Where `policy X` was written (the kernel refuses a policy for an
    /// existing regular chain and points there).
    pub policy_loc: Option<Loc>,
    pub policy_only: Option<bool>,
}

/// `{ [type T hook H priority P;] [policy X;] [comment "C";] }`.
fn chain_spec(p: &mut Parser, family: Family) -> Result<ChainOpts, InputError> {
    let open = p.next(); // '{'
    let mut policy_loc: Option<Loc> = None;
    let mut comment: Option<String> = None;
    let mut chain_type: Option<String> = None;
    let mut hook: Option<Named<String>> = None;
    let mut priority: Option<i32> = None;
    let mut policy_accept = true;
    loop {
        while matches!(p.peek().kind, Kind::Newline | Kind::Semi) {
            p.next();
        }
        let t = p.peek();
        match t.kind {
            Kind::RBrace => {
                p.next();
                break;
            }
            Kind::Word if t.text == "type" => {
                p.next();
                let ty = p.word("string")?;
                if !matches!(ty.value.as_str(), "filter" | "nat" | "route") {
                    return Err(InputError::new(ty.loc, "unknown chain type").parse_stage());
                }
                if !p.eat_word("hook") {
                    return Err(syntax(p.peek(), Some("hook")));
                }
                let h = p.word("string")?;
                let known = [
                    "prerouting",
                    "input",
                    "forward",
                    "output",
                    "postrouting",
                    "ingress",
                    "egress",
                ];
                if !known.contains(&h.value.as_str()) {
                    return Err(InputError::new(h.loc, "unknown chain hook").parse_stage());
                }
                if p.peek().is_word("device") || p.peek().is_word("devices") {
                    return Err(InputError::not_simulated(p.peek().loc(), "chain devices"));
                }
                if !p.eat_word("priority") {
                    return Err(syntax(p.peek(), Some("priority")));
                }
                priority = Some(priority_expr(p, family, &h.value)?);
                if p.peek().kind == Kind::RBrace {
                    return Err(syntax(p.peek(), Some("newline or semicolon")));
                }
                if matches!(h.value.as_str(), "ingress" | "egress") {
                    if matches!(family, Family::Inet | Family::Netdev) {
                        return Err(InputError::new(
                            t.loc().to(p.prev().loc()),
                            "Missing `device' in this chain definition",
                        ));
                    }
                    return Err(InputError::new(
                        h.loc,
                        format!("The {} family does not support this hook", family.as_str()),
                    ));
                }
                chain_type = Some(ty.value);
                hook = Some(h);
            }
            Kind::Word if t.text == "comment" => {
                p.next();
                let c = p.next();
                if c.kind != Kind::Quoted && c.kind != Kind::Word {
                    return Err(syntax(c, Some("string")));
                }
                comment = Some(c.text.clone());
            }
            Kind::Word if t.text == "policy" => {
                p.next();
                let pol = p.word("string")?;
                policy_loc = Some(t.loc().to(pol.loc));
                policy_accept = match pol.value.as_str() {
                    "accept" => true,
                    "drop" => false,
                    _ => return Err(syntax(&p.toks[p.pos - 1], Some("accept or drop or '$'"))),
                };
                if p.peek().kind == Kind::RBrace {
                    return Err(syntax(p.peek(), Some("newline or semicolon")));
                }
            }
            Kind::Eof => return Err(syntax(t, Some("'}'"))),
            Kind::Word
                if !is_keyword(&t.text)
                    && !NFT_EXPR_WORDS.contains(&t.text.as_str())
                    && matches!(
                        p.peek_at(1).text.as_str(),
                        "accept" | "drop" | "continue" | "return" | "queue"
                    ) =>
            {
                // A misspelt keyword reads as the symbol starting a rule;
                // the word after it is then unexpected.
                p.next();
                return Err(syntax(p.peek(), None));
            }
            _ => {
                return Err(InputError::not_simulated(
                    t.loc(),
                    format!("chain block item '{}'", t.text),
                ))
            }
        }
    }
    match (chain_type, hook, priority) {
        (Some(chain_type), Some(hook), Some(priority)) => Ok(ChainOpts {
            base: Some(BaseSpec {
                chain_type,
                hook: hook.value,
                priority,
                policy_accept,
            }),
            comment,
            policy_loc,
            policy_only: None,
        }),
        (None, None, None) if policy_loc.is_none() && comment.is_some() => Ok(ChainOpts {
            base: None,
            comment,
            policy_loc,
            policy_only: None,
        }),
        (None, None, None) if policy_loc.is_some() && comment.is_none() => Ok(ChainOpts {
            base: None,
            comment,
            policy_loc,
            policy_only: Some(policy_accept),
        }),
        _ => Err(InputError::not_simulated(
            open.loc(),
            "chain block without type/hook/priority",
        )),
    }
}

/// `{ [flags dormant;] [comment "C";] }` of a table.
fn table_opts(p: &mut Parser) -> Result<(bool, Option<String>), InputError> {
    p.next(); // '{'
    let mut dormant = false;
    let mut comment = None;
    loop {
        while matches!(p.peek().kind, Kind::Newline | Kind::Semi) {
            p.next();
        }
        let t = p.next();
        match t.kind {
            Kind::RBrace => break,
            Kind::Word if t.text == "comment" => {
                let c = p.next();
                if c.kind != Kind::Quoted && c.kind != Kind::Word {
                    return Err(syntax(c, Some("string")));
                }
                comment = Some(c.text.clone());
            }
            Kind::Word if t.text == "flags" => {
                let f = p.word("string")?;
                if f.value != "dormant" && f.value != "owner" {
                    return Err(InputError::new(
                        f.loc,
                        format!("unknown table option {}", f.value),
                    )
                    .parse_stage());
                }
                if f.value != "dormant" {
                    return Err(InputError::not_simulated(
                        f.loc,
                        format!("table flag '{}'", f.value),
                    ));
                }
                dormant = true;
            }
            Kind::Eof => return Err(syntax(t, Some("'}'"))),
            _ => {
                return Err(InputError::not_simulated(
                    t.loc(),
                    format!("table block item '{}'", t.text),
                ))
            }
        }
    }
    Ok((dormant, comment))
}

const STD_PRIORITY_NAMES: &[&str] = &[
    "raw", "mangle", "dstnat", "filter", "security", "srcnat", "out",
];

fn priority_expr(p: &mut Parser, family: Family, hook: &str) -> Result<i32, InputError> {
    let t = p.word("string")?;
    // nft keeps priorities in 32 bits: bigger numbers wrap.
    let base = if let Ok(n) = t.value.parse::<i64>() {
        return Ok(n as i32);
    } else {
        match std_priority_value(family, hook, &t.value) {
            Some(v) => v,
            None if !STD_PRIORITY_NAMES.contains(&t.value.as_str()) => {
                // Not a priority name at all: nft evaluates it as an
                // expression and rejects the whole `priority X`.
                return Err(InputError::new(
                    p.toks[p.pos - 2].loc().to(t.loc),
                    "invalid priority expression value in this context.",
                ));
            }
            None => {
                return Err(InputError::new(
                    t.loc,
                    format!("'{}' is invalid priority in this context.", t.value),
                ))
            }
        }
    };
    let sign: i32 = if p.peek().is_word("+") {
        1
    } else if p.peek().is_word("-") {
        -1
    } else {
        return Ok(base);
    };
    p.next();
    let n = p.number()?;
    let off = n.value as i32;
    Ok(base.wrapping_add(sign.wrapping_mul(off)))
}

/// `{ type X [: Y]; [flags a, b;] [elements = { ... };] }`
fn set_decl(p: &mut Parser, is_map: bool) -> Result<SetDecl, InputError> {
    if p.peek().kind != Kind::LBrace {
        return Err(syntax(p.peek(), Some("'{'")));
    }
    p.next();
    let mut decl = SetDecl {
        is_map,
        key_type: String::new(),
        data_type: None,
        flags: Vec::new(),
        elements: Vec::new(),
        typeof_key: None,
        auto_merge: false,
        comment: None,
    };
    loop {
        while matches!(p.peek().kind, Kind::Newline | Kind::Semi) {
            p.next();
        }
        let t = p.peek();
        match t.kind {
            Kind::RBrace => {
                p.next();
                break;
            }
            Kind::Word if t.text == "type" => {
                p.next();
                let k = p.word("string")?;
                check_set_type(&k)?;
                decl.key_type = k.value;
                if p.peek().is_word(":") {
                    p.next();
                    let d = p.word("string")?;
                    if d.value != "verdict" {
                        check_set_type(&d)?;
                    }
                    decl.data_type = Some(d.value);
                }
            }
            Kind::Word if t.text == "typeof" => {
                p.next();
                let a = p.word("string")?;
                let (printed, key_type) = match a.value.as_str() {
                    "ip" | "ip6" | "tcp" | "udp" | "meta" => {
                        let b = p.word("string")?;
                        let ty = match (a.value.as_str(), b.value.as_str()) {
                            ("ip", "saddr" | "daddr") => "ipv4_addr",
                            ("ip6", "saddr" | "daddr") => "ipv6_addr",
                            ("tcp" | "udp", "sport" | "dport") => "inet_service",
                            ("ip", "protocol") | ("ip6", "nexthdr") | ("meta", "l4proto") => {
                                "inet_proto"
                            }
                            ("meta", "iifname" | "oifname") => "ifname",
                            _ => {
                                return Err(InputError::not_simulated(
                                    a.loc.to(b.loc),
                                    format!("typeof {} {}", a.value, b.value),
                                ))
                            }
                        };
                        // `meta iifname` is printed without `meta`.
                        let printed = if ty == "ifname" {
                            b.value.clone()
                        } else {
                            format!("{} {}", a.value, b.value)
                        };
                        (printed, ty)
                    }
                    "iifname" | "oifname" => (a.value.clone(), "ifname"),
                    _ => {
                        return Err(InputError::not_simulated(
                            a.loc,
                            format!("typeof {}", a.value),
                        ))
                    }
                };
                decl.key_type = key_type.to_string();
                decl.typeof_key = Some(printed);
                if p.peek().is_word(":") {
                    p.next();
                    let d = p.word("string")?;
                    if d.value != "verdict" {
                        return Err(InputError::not_simulated(d.loc, "typeof map data"));
                    }
                    decl.data_type = Some(d.value);
                }
            }
            Kind::Word if t.text == "flags" => {
                p.next();
                loop {
                    let f = p.word("string")?;
                    if !matches!(f.value.as_str(), "interval" | "constant") {
                        return Err(InputError::not_simulated(
                            f.loc,
                            format!("set flag '{}'", f.value),
                        ));
                    }
                    decl.flags.push(f.value);
                    if p.peek().kind == Kind::Comma {
                        p.next();
                    } else {
                        break;
                    }
                }
            }
            Kind::Word if t.text == "auto-merge" => {
                p.next();
                decl.auto_merge = true;
            }
            Kind::Word if t.text == "comment" => {
                p.next();
                let c = p.next();
                if c.kind != Kind::Quoted && c.kind != Kind::Word {
                    return Err(syntax(c, Some("string")));
                }
                decl.comment = Some(c.text.clone());
            }
            Kind::Word if t.text == "elements" => {
                p.next();
                if !p.eat_word("=") {
                    return Err(syntax(p.peek(), Some("'='")));
                }
                let elems = element_list(p)?;
                decl.elements = elems.into_iter().map(|e| e.value).collect();
            }
            _ => {
                return Err(InputError::not_simulated(
                    t.loc(),
                    format!("set block item '{}'", t.text),
                ))
            }
        }
    }
    if decl.key_type.is_empty() {
        return Err(InputError::not_simulated(
            p.prev().loc(),
            "set without a type",
        ));
    }
    if is_map != decl.data_type.is_some() {
        return Err(InputError::not_simulated(
            p.prev().loc(),
            "set/map type mismatch",
        ));
    }
    Ok(decl)
}

fn check_set_type(t: &Named<String>) -> Result<(), InputError> {
    match t.value.as_str() {
        "ipv4_addr" | "ipv6_addr" | "inet_service" | "ifname" | "inet_proto" | "mark" => Ok(()),
        other => Err(InputError::not_simulated(
            t.loc,
            format!("set type '{other}'"),
        )),
    }
}

/// `{ e1, e2 : v2, ... }` — elements kept as canonical text.
fn element_list(p: &mut Parser) -> Result<Vec<Named<Element>>, InputError> {
    if p.peek().kind != Kind::LBrace {
        return Err(syntax(p.peek(), Some("'{' or '$'")));
    }
    p.next();
    let mut out = Vec::new();
    loop {
        p.skip_newlines();
        let t = p.peek();
        match t.kind {
            Kind::RBrace => {
                p.next();
                break;
            }
            Kind::Comma => {
                p.next();
            }
            Kind::Word | Kind::Quoted => {
                p.next();
                let key = element_key(t)?;
                let mut value = None;
                let mut loc = t.loc();
                if p.peek().is_word(":") {
                    p.next();
                    let v = p.word("string")?;
                    loc = loc.to(v.loc);
                    value = Some(match v.value.as_str() {
                        "accept" | "drop" | "return" | "continue" => v.value.clone(),
                        "jump" | "goto" => {
                            let target = p.word("string")?;
                            loc = loc.to(target.loc);
                            format!("{} {}", v.value, target.value)
                        }
                        _ => element_key(&Tok {
                            kind: Kind::Word,
                            text: v.value.clone(),
                            line: v.loc.line,
                            col: v.loc.col,
                            len: v.loc.len,
                        })?,
                    });
                }
                out.push(Named {
                    value: Element { key, value },
                    loc,
                });
            }
            Kind::Eof => return Err(eof_in_braces(t)),
            _ => return Err(syntax(t, Some("'}'"))),
        }
    }
    Ok(out)
}

/// The input ended inside `{ ...`: nft reports it at the start of the line.
fn eof_in_braces(t: &Tok) -> InputError {
    InputError::new(
        Loc {
            line: t.line,
            col: 0,
            len: 1,
        },
        "syntax error, unexpected end of file, expecting comma or '}'",
    )
    .parse_stage()
}

fn element_key(t: &Tok) -> Result<String, InputError> {
    if t.kind == Kind::Quoted {
        return Ok(format!("\"{}\"", t.text));
    }
    if let Some(a) = ipv4_value(&t.text) {
        return Ok(a);
    }
    if let Some(a) = ipv6_value(&t.text) {
        return Ok(a);
    }
    if let Ok(n) = t.text.parse::<u32>() {
        return Ok(n.to_string());
    }
    // Ranges: `A-B` of addresses or numbers.
    if let Some((a, b)) = t.text.split_once('-') {
        if let (Ok(a), Ok(b)) = (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>()) {
            // nft lists a range that is exactly a prefix as the prefix.
            let (lo, hi) = (u64::from(u32::from(a)), u64::from(u32::from(b)));
            let size = hi.wrapping_sub(lo).wrapping_add(1);
            if hi >= lo && size.is_power_of_two() && lo % size == 0 {
                let len = 32 - size.trailing_zeros();
                return Ok(if len == 32 {
                    a.to_string()
                } else {
                    format!("{a}/{len}")
                });
            }
            return Ok(format!("{a}-{b}"));
        }
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            return Ok(format!("{a}-{b}"));
        }
    }
    if let Some(n) = service_port(&t.text) {
        return Ok(n.to_string());
    }
    // Any other bare word nft's scanner takes as a string (`virbr0`,
    // `br-x.1`): a string constant, which a set of type `ifname` takes as
    // if quoted (checked with nft 1.0.6; a set of an address type would
    // resolve it as a host name, which `check_element` refuses as not
    // simulated).
    let mut chars = t.text.chars();
    let bare = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
    if bare {
        return Ok(format!("\"{}\"", t.text));
    }
    Err(InputError::not_simulated(
        t.loc(),
        format!("element '{}'", t.text),
    ))
}

/// Canonical IPv4 address or prefix (`a.b.c.d`, `net/len` with host bits
/// cleared, `/32` dropped).
pub(crate) fn ipv4_value(s: &str) -> Option<String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().ok().filter(|l| *l <= 32)?)),
        None => (s, None),
    };
    // Only dotted quads: nft would resolve other words as host names.
    if addr.split('.').count() != 4 {
        return None;
    }
    let ip: Ipv4Addr = addr.parse().ok()?;
    match len {
        None | Some(32) => Some(ip.to_string()),
        Some(l) => {
            let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            Some(format!("{}/{}", Ipv4Addr::from(u32::from(ip) & mask), l))
        }
    }
}

pub(crate) fn ipv6_value(s: &str) -> Option<String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().ok().filter(|l| *l <= 128)?)),
        None => (s, None),
    };
    if !addr.contains(':') {
        return None;
    }
    let ip: Ipv6Addr = addr.parse().ok()?;
    match len {
        None | Some(128) => Some(ip.to_string()),
        Some(l) => {
            let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            Some(format!("{}/{}", Ipv6Addr::from(u128::from(ip) & mask), l))
        }
    }
}

/// Whether the host's /etc/services names `s` (what nft's getaddrinfo
/// would find); names the simulator does not know are then "not simulated".
fn etc_services_has(s: &str) -> bool {
    std::fs::read_to_string("/etc/services").is_ok_and(|text| {
        text.lines().any(|l| {
            let l = l.split('#').next().unwrap_or("");
            let mut words = l.split_whitespace();
            let name = words.next();
            let _port = words.next();
            name == Some(s) || words.any(|alias| alias == s)
        })
    })
}

/// The port of a service name in the host's /etc/services (as nft's
/// getaddrinfo finds it: the first entry naming it, tcp preferred).
fn etc_services_port(s: &str) -> Option<u16> {
    let text = std::fs::read_to_string("/etc/services").ok()?;
    let mut udp = None;
    for l in text.lines() {
        let l = l.split('#').next().unwrap_or("");
        let mut words = l.split_whitespace();
        let (Some(name), Some(port)) = (words.next(), words.next()) else {
            continue;
        };
        if name != s && !words.any(|a| a == s) {
            continue;
        }
        let Some((num, proto)) = port.split_once('/') else {
            continue;
        };
        let Ok(num) = num.parse::<u16>() else {
            continue;
        };
        match proto {
            "tcp" => return Some(num),
            _ => udp = udp.or(Some(num)),
        }
    }
    udp
}

/// The few service names the simulator knows (nft resolves them through
/// /etc/services and prints numbers).
fn service_port(s: &str) -> Option<u16> {
    Some(match s {
        "domain" => 53,
        "bootps" => 67,
        "bootpc" => 68,
        "tftp" => 69,
        "ssh" => 22,
        "http" => 80,
        "https" => 443,
        "ntp" => 123,
        _ => return None,
    })
}

fn l4proto_name(s: &str) -> Option<&'static str> {
    let n: Option<u32> = s.parse().ok();
    Some(match (s, n) {
        ("tcp", _) | (_, Some(6)) => "tcp",
        ("udp", _) | (_, Some(17)) => "udp",
        ("icmp", _) | (_, Some(1)) => "icmp",
        ("icmpv6", _) | ("ipv6-icmp", _) | (_, Some(58)) => "ipv6-icmp",
        ("sctp", _) | (_, Some(132)) => "sctp",
        ("udplite", _) | (_, Some(136)) => "udplite",
        ("esp", _) | (_, Some(50)) => "esp",
        ("ah", _) | (_, Some(51)) => "ah",
        ("gre", _) | (_, Some(47)) => "gre",
        ("igmp", _) | (_, Some(2)) => "igmp",
        _ => return None,
    })
}

const CT_STATES: [(&str, u32); 5] = [
    ("invalid", 1),
    ("established", 2),
    ("related", 4),
    ("new", 8),
    ("untracked", 64),
];

struct RuleCtx {
    family: Family,
    body: RuleBody,
    /// Transport protocols matched so far (for `masquerade to :P`).
    l4: Vec<String>,
    /// Index of a `meta l4proto X` / `ip protocol X` statement that a later
    /// `X sport/dport` match makes redundant (nft drops it when printing),
    /// and whether such a match came.
    dep: Option<(usize, String, bool)>,
    /// Location of the last terminal statement (verdict, reject, NAT).
    terminal: Option<Loc>,
    /// Network protocol a previous `ip`/`ip6` match established (inet).
    l3: Option<&'static str>,
    /// Inside a `chain { }` block of a file: `}` ends the rule too.
    in_block: bool,
}

/// Parse rule statements up to the end of the command.
fn rule_body(p: &mut Parser, family: Family, in_block: bool) -> Result<RuleBody, InputError> {
    let mut cx = RuleCtx {
        family,
        body: RuleBody::default(),
        l4: Vec::new(),
        dep: None,
        terminal: None,
        l3: None,
        in_block,
    };
    // A rule needs a statement: a bare comment is not one.
    if p.at_end() || (in_block && p.peek().kind == Kind::RBrace) || p.peek().is_word("comment") {
        return Err(syntax(p.peek(), None));
    }
    while !(p.at_end() || (cx.in_block && p.peek().kind == Kind::RBrace)) {
        if cx.body.comment.is_some() {
            // The comment closes the rule.
            return Err(syntax(p.peek(), Some(END_EXPECT)));
        }
        let start = p.peek().loc();
        let before = cx.body.stmts.len();
        statement(p, &mut cx)?;
        let span = start.to(p.prev().loc());
        if cx.body.stmts.len() > before {
            if let Some(term) = cx.terminal {
                if term != span {
                    return Err(InputError {
                        loc: span,
                        secondary: Some(term),
                        msg: "Statement after terminal statement has no effect".into(),
                        eval: true,
                    });
                }
            }
            if matches!(
                cx.body.stmts.last().map(|s| &s.kind),
                Some(
                    StmtKind::Terminal
                        | StmtKind::Reject
                        | StmtKind::Nat(_)
                        | StmtKind::Jump(_)
                        | StmtKind::Goto(_)
                )
            ) {
                cx.terminal = Some(span);
            }
        }
    }
    if let Some((idx, _, true)) = cx.dep.take() {
        cx.body.stmts.remove(idx);
    }
    Ok(cx.body)
}

fn push(cx: &mut RuleCtx, text: String, kind: StmtKind) {
    cx.body.stmts.push(Stmt { text, kind });
}

/// `[!= | ==]` before a value: returns the prefix to print ("" or "!= ").
fn rel_op(p: &mut Parser) -> &'static str {
    match p.peek().kind {
        Kind::Ne => {
            p.next();
            "!= "
        }
        Kind::EqEq => {
            p.next();
            ""
        }
        _ => "",
    }
}

/// A value that must not be a keyword (address, port, device name).
fn plain_value_tok<'a>(p: &mut Parser<'a>) -> Result<&'a Tok, InputError> {
    let t = p.peek();
    if t.kind == Kind::Word && is_keyword(&t.text) {
        return Err(syntax(t, None));
    }
    value_tok(p)
}

fn value_tok<'a>(p: &mut Parser<'a>) -> Result<&'a Tok, InputError> {
    let t = p.peek();
    match t.kind {
        Kind::Word | Kind::Quoted | Kind::LBrace => {
            p.next();
            Ok(t)
        }
        _ => Err(syntax(t, None)),
    }
}

/// An anonymous set `{ a, b }` after the '{' was consumed; `conv` makes each
/// element canonical.
fn anon_set(
    p: &mut Parser,
    cx: &mut RuleCtx,
    open: Loc,
    conv: &dyn Fn(&Tok) -> Result<String, InputError>,
) -> Result<String, InputError> {
    let mut items = Vec::new();
    loop {
        p.skip_newlines();
        let t = p.next();
        match t.kind {
            Kind::RBrace => break,
            Kind::Comma => continue,
            Kind::Word | Kind::Quoted => items.push(conv(t)?),
            Kind::Eof => return Err(eof_in_braces(t)),
            _ => return Err(syntax(t, Some("'}'"))),
        }
    }
    let written = format!("{{ {} }}", items.join(", "));
    // nft lists set elements in value order, without duplicates.
    items.sort_by_key(|i| element_sort_key(i));
    items.dedup();
    if items.len() == 1 {
        // A one-element set is no set to nft: it matches the value.
        return Ok(items.remove(0));
    }
    cx.body.anon_sets.push(open.to(p.prev().loc()));
    let sorted = format!("{{ {} }}", items.join(", "));
    cx.body.echo_sets.push((sorted.clone(), written));
    Ok(sorted)
}

/// Order of anonymous set elements as nft lists them: numbers, ranges and
/// addresses by value; anything else after them by text.
fn element_sort_key(item: &str) -> (u8, u128, String) {
    let first = item.split(['-', '/']).next().unwrap_or(item);
    if let Ok(n) = first.parse::<u128>() {
        return (0, n, String::new());
    }
    if let Ok(a) = first.parse::<std::net::Ipv4Addr>() {
        return (0, u128::from(u32::from(a)), String::new());
    }
    if let Ok(a) = first.parse::<std::net::Ipv6Addr>() {
        return (0, u128::from(a), String::new());
    }
    (1, 0, item.to_string())
}

fn addr_match(
    p: &mut Parser,
    cx: &mut RuleCtx,
    fam_kw: &str,
    field: &str,
) -> Result<(), InputError> {
    let v6 = fam_kw == "ip6";
    if p.peek().is_word("vmap") {
        let conv = move |t: &Tok| -> Result<(u128, String), InputError> {
            let v = if v6 {
                ipv6_value(&t.text)
            } else {
                ipv4_value(&t.text)
            };
            let v = v.ok_or_else(|| {
                InputError::not_simulated(t.loc(), format!("map key '{}'", t.text))
            })?;
            Ok((element_sort_key(&v).1, v))
        };
        return vmap_stmt(p, cx, &format!("{fam_kw} {field}"), &conv);
    }
    let op = rel_op(p);
    let conv = move |t: &Tok| -> Result<String, InputError> {
        let one = |s: &str| if v6 { ipv6_value(s) } else { ipv4_value(s) };
        // `A-B`: an address range (printed canonically).
        if let Some((a, b)) = t.text.split_once('-') {
            if let (Some(a), Some(b)) = (one(a), one(b)) {
                if a.contains('/') || b.contains('/') {
                    return Err(InputError::not_simulated(t.loc(), "range of prefixes"));
                }
                let order = |x: &str| -> u128 {
                    if v6 {
                        x.parse::<std::net::Ipv6Addr>().map(u128::from).unwrap_or(0)
                    } else {
                        x.parse::<Ipv4Addr>()
                            .map(|x| u128::from(u32::from(x)))
                            .unwrap_or(0)
                    }
                };
                if order(&b) <= order(&a) {
                    return Err(InputError::new(t.loc(), "Range has zero or negative size"));
                }
                return Ok(format!("{a}-{b}"));
            }
        }
        let v = one(&t.text);
        v.ok_or_else(|| {
            let width = if v6 { 128 } else { 32 };
            match t.text.split_once('/').map(|(_, l)| l.parse::<u32>()) {
                Some(Ok(l)) if l > width => InputError::new(
                    t.loc(),
                    format!("Prefix length {l} is invalid for type of {width} bits width"),
                ),
                _ => InputError::new(
                    t.loc(),
                    "Could not resolve hostname: Name or service not known",
                ),
            }
        })
    };
    let t = plain_value_tok(p)?;
    // What nft's scanner takes as an IPv4 address: four decimal parts,
    // maybe a `/N` (checked later, "Could not resolve hostname" ...).
    let quad_like = |w: &str| {
        let (base, len) = match w.split_once('/') {
            Some((b, l)) => (b, Some(l)),
            None => (w, None),
        };
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
        base.split('.').count() == 4 && base.split('.').all(digits) && len.is_none_or(digits)
    };
    let scanned_as_address = |w: &str| match w.split_once('-') {
        Some((a, b)) => quad_like(a) && quad_like(b),
        None => quad_like(w),
    };
    if !v6
        && t.kind == Kind::Word
        && t.text.starts_with(|c: char| c.is_ascii_digit())
        && t.text.contains('.')
        && !scanned_as_address(&t.text)
    {
        // nft's scanner does not take `1.2.3` as an address: the parser
        // then stumbles on whatever follows.
        return Err(syntax(p.peek(), None));
    }
    let value = if t.kind == Kind::LBrace {
        anon_set(p, cx, t.loc(), &conv)?
    } else if let Some(name) = t.text.strip_prefix('@') {
        cx.body.set_refs.push(Named {
            value: name.to_string(),
            loc: t.loc(),
        });
        push(
            cx,
            format!("{fam_kw} {field} {op}@{name}"),
            StmtKind::SetRef(name.to_string()),
        );
        return Ok(());
    } else {
        conv(t)?
    };
    push(cx, format!("{fam_kw} {field} {op}{value}"), StmtKind::Other);
    Ok(())
}

fn port_conv(t: &Tok) -> Result<String, InputError> {
    let one = |s: &str| -> Result<u32, InputError> {
        if let Ok(n) = s.parse::<u32>() {
            if n > 65535 {
                return Err(InputError::new(t.loc(), "Service out of range"));
            }
            return Ok(n);
        }
        service_port(s)
            .or_else(|| etc_services_port(s))
            .map(u32::from)
            .ok_or_else(|| {
                if etc_services_has(s) {
                    InputError::not_simulated(t.loc(), format!("service name '{s}'"))
                } else {
                    InputError::new(
                        t.loc(),
                        "Could not resolve service: Servname not supported for ai_socktype",
                    )
                }
            })
    };
    match t.text.split_once('-') {
        // `http-alt` is a service name, not a range.
        Some((a, b))
            if !a.is_empty() && (one(&t.text).is_err() || one(a).is_ok() && one(b).is_ok()) =>
        {
            let (lo, hi) = (one(a)?, one(b)?);
            if hi <= lo {
                return Err(InputError::new(t.loc(), "Range has zero or negative size"));
            }
            Ok(format!("{lo}-{hi}"))
        }
        _ => Ok(one(&t.text)?.to_string()),
    }
}

fn statement(p: &mut Parser, cx: &mut RuleCtx) -> Result<(), InputError> {
    let t = p.next();
    if t.kind != Kind::Word {
        if t.kind == Kind::Quoted {
            return Err(InputError::not_simulated(
                t.loc(),
                "quoted string as statement",
            ));
        }
        if t.kind == Kind::RBrace && !cx.in_block && !cx.body.stmts.is_empty() {
            // A stray `}` after a complete statement.
            return Err(syntax(t, Some(END_EXPECT)));
        }
        return Err(syntax(t, None));
    }
    let fam = cx.family;
    match t.text.as_str() {
        "counter" => counter_stmt(p, cx)?,
        "accept" | "drop" | "return" | "continue" => {
            push(cx, t.text.clone(), StmtKind::Terminal);
        }
        "jump" | "goto" => {
            let target = p.ident("'{'")?;
            cx.body.targets.push((target.clone(), t.text == "goto"));
            let kind = if t.text == "jump" {
                StmtKind::Jump(target.value.clone())
            } else {
                StmtKind::Goto(target.value.clone())
            };
            push(cx, format!("{} {}", t.text, target.value), kind);
        }
        "reject" => reject_stmt(p, cx, t, fam)?,
        "masquerade" => masquerade_stmt(p, cx, t)?,
        "snat" | "dnat" => snat_dnat_stmt(p, cx, t, fam)?,
        "comment" => comment_stmt(p, cx)?,
        "iif" | "oif" | "iifname" | "oifname" => iface_match(p, cx, &t.text, t)?,
        "meta" => {
            let key = p.word("string")?;
            match key.value.as_str() {
                "iif" | "oif" | "iifname" | "oifname" => iface_match(p, cx, &key.value, t)?,
                "l4proto" => proto_match(p, cx, "meta l4proto")?,
                "nfproto" => nfproto_match(p, cx, t.loc().to(key.loc))?,
                "mark" => mark_stmt(p, cx, "meta mark")?,
                other => return Err(InputError::not_simulated(key.loc, format!("meta {other}"))),
            }
        }
        "ip" | "ip6" => ip_match(p, cx, t, fam)?,
        "tcp" | "udp" => l4_match(p, cx, t)?,
        "ct" => ct_match(p, cx)?,
        "icmp" | "icmpv6" => icmp_match(p, cx, t)?,
        "redirect" => redirect_stmt(p, cx, t)?,
        "mark" => mark_stmt(p, cx, "meta mark")?,
        "log" => log_stmt(p, cx)?,
        "limit" => limit_stmt(p, cx)?,
        other if is_keyword(other) || NFT_EXPR_WORDS.contains(&other) => {
            return Err(InputError::not_simulated(
                t.loc(),
                format!("rule statement '{other}'"),
            ))
        }
        _ => {
            // nft reads an unknown word as a symbol starting a relational
            // expression: at the end that is a syntax error, before another
            // word the symbol has no type.
            let next = p.peek();
            if next.is_end() || (cx.in_block && next.kind == Kind::RBrace) {
                return Err(syntax(next, None));
            }
            return Err(InputError::new(t.loc(), "No symbol type information"));
        }
    }
    Ok(())
}

/// `counter [packets N bytes N]`.
fn counter_stmt(p: &mut Parser, cx: &mut RuleCtx) -> Result<(), InputError> {
    let mut text = "counter packets 0 bytes 0".to_string();
    if p.peek().is_word("packets") {
        p.next();
        let pk = p.number()?;
        if !p.eat_word("bytes") {
            return Err(syntax(p.peek(), Some("bytes")));
        }
        let by = p.number()?;
        text = format!("counter packets {} bytes {}", pk.value, by.value);
    }
    push(cx, text, StmtKind::Other);
    Ok(())
}

/// `reject [with icmp|icmpv6|icmpx|tcp reset ...]`.
fn reject_stmt(p: &mut Parser, cx: &mut RuleCtx, t: &Tok, fam: Family) -> Result<(), InputError> {
    let mut text = "reject".to_string();
    if p.eat_word("with") {
        let w = p.word("string")?;
        match w.value.as_str() {
            "tcp" => {
                if !p.eat_word("reset") {
                    return Err(syntax(p.peek(), Some("reset")));
                }
                // The protocol match right before it is implied.
                let implied: &[&str] = match fam {
                    Family::Ip => &["ip protocol tcp", "meta l4proto tcp"],
                    Family::Ip6 => &["ip6 nexthdr tcp", "meta l4proto tcp"],
                    _ => &[],
                };
                if cx
                    .body
                    .stmts
                    .last()
                    .is_some_and(|s| implied.contains(&s.text.as_str()))
                {
                    cx.body.stmts.pop();
                    cx.dep = None;
                }
                text.push_str(" with tcp reset");
                if fam == Family::Inet && !cx.l4.iter().any(|x| x == "tcp") {
                    // nft shows the implied protocol match in inet.
                    text = format!("meta l4proto tcp {text}");
                }
            }
            "icmp" | "icmpv6" | "icmpx" => {
                p.eat_word("type");
                let code = p.word("string")?;
                let native = match fam {
                    Family::Ip => "icmp",
                    Family::Ip6 => "icmpv6",
                    Family::Inet => "icmpx",
                    _ => "",
                };
                if fam == Family::Inet && w.value != "icmpx" {
                    // The `meta nfproto` match it implies is dropped.
                    let implied = if w.value == "icmp" {
                        "meta nfproto ipv4"
                    } else {
                        "meta nfproto ipv6"
                    };
                    if cx.body.stmts.last().is_some_and(|s| s.text == implied) {
                        cx.body.stmts.pop();
                    }
                    // icmp/icmpv6 in inet: always printed in full.
                    if !reject_code_known(&w.value, &code.value) {
                        return Err(InputError::not_simulated(
                            code.loc,
                            format!("{} code '{}'", w.value, code.value),
                        ));
                    }
                    text.push_str(&format!(" with {} {}", w.value, code.value));
                    push(cx, text, StmtKind::Reject);
                    return Ok(());
                }
                let conflict = match (fam, w.value.as_str()) {
                    (Family::Ip6, "icmp") => Some("ip vs ip6"),
                    (Family::Ip, "icmpv6") => Some("ip6 vs ip"),
                    _ => None,
                };
                if let Some(c) = conflict {
                    return Err(InputError {
                        loc: code.loc,
                        secondary: Some(t.loc()),
                        msg: format!("conflicting protocols specified: {c}"),
                        eval: true,
                    });
                }
                if w.value == "icmpx" && matches!(fam, Family::Ip | Family::Ip6) {
                    return Err(InputError {
                        loc: code.loc,
                        secondary: Some(t.loc()),
                        msg: "abstracted ICMP unreachable not supported".into(),
                        eval: true,
                    });
                }
                if w.value != native {
                    return Err(InputError::not_simulated(
                        w.loc,
                        format!("reject with {} in family {}", w.value, fam.as_str()),
                    ));
                }
                if !reject_code_known(&w.value, &code.value) {
                    return Err(InputError::not_simulated(
                        code.loc,
                        format!("{} code '{}'", w.value, code.value),
                    ));
                }
                // The family's default (port unreachable) prints as
                // a bare `reject`.
                if code.value != "port-unreachable" {
                    text.push_str(&format!(" with {} {}", w.value, code.value));
                }
            }
            _ => return Err(InputError::not_simulated(w.loc, "reject type")),
        }
    } else if !matches!(fam, Family::Ip | Family::Ip6 | Family::Inet) {
        return Err(InputError::not_simulated(
            t.loc(),
            format!("reject in family {}", fam.as_str()),
        ));
    } else if fam == Family::Inet {
        // After an ip/ip6 match, inet's reject is the ICMP one of
        // that protocol and prints in full.
        match cx.l3 {
            Some("ip") => text.push_str(" with icmp port-unreachable"),
            Some(_) => text.push_str(" with icmpv6 port-unreachable"),
            None => {}
        }
    }
    push(cx, text, StmtKind::Reject);
    Ok(())
}

/// `masquerade [to :P[-Q]] [flags]`.
fn masquerade_stmt(p: &mut Parser, cx: &mut RuleCtx, t: &Tok) -> Result<(), InputError> {
    let mut text = "masquerade".to_string();
    if p.peek().is_word("to") {
        let to = p.next();
        let ports = p.word("string")?;
        if !ports.value.starts_with(':') {
            return Err(InputError::not_simulated(ports.loc, "masquerade address"));
        }
        if cx.l4.is_empty() {
            // nft scans ':' apart; the port range starts after it.
            let range = Loc {
                col: ports.loc.col + 1,
                len: ports.loc.len.saturating_sub(1),
                ..ports.loc
            };
            return Err(InputError {
                loc: range,
                secondary: Some(t.loc()),
                msg: "transport protocol mapping is only valid after transport protocol match"
                    .into(),
                eval: true,
            });
        }
        let _ = to;
        text.push_str(&format!(" to {}", ports.value));
    }
    text.push_str(&nat_flags(p)?);
    nat_family_check(cx, t)?;
    push(cx, text, StmtKind::Nat("masquerade".into()));
    Ok(())
}

/// `snat|dnat [ip|ip6] to ADDR[:PORT]`.
fn snat_dnat_stmt(
    p: &mut Parser,
    cx: &mut RuleCtx,
    t: &Tok,
    fam: Family,
) -> Result<(), InputError> {
    let explicit = if p.peek().is_word("ip") || p.peek().is_word("ip6") {
        Some(if p.next().text == "ip" { "ip" } else { "ip6" })
    } else {
        None
    };
    if !p.eat_word("to") {
        return Err(InputError::not_simulated(
            p.peek().loc(),
            "nat without 'to'",
        ));
    }
    let spec = p.word("string")?;
    let (v6, prefix) = match (fam, explicit.or(cx.l3)) {
        (Family::Ip, None | Some("ip")) => (false, ""),
        (Family::Ip6, None | Some("ip6")) => (true, ""),
        (Family::Inet, Some("ip")) => (false, "ip "),
        (Family::Inet, Some(_)) => (true, "ip6 "),
        (Family::Inet, None) => {
            return Err(InputError::new(
                t.loc(),
                "ip or ip6 must be specified with address for inet tables.",
            ))
        }
        _ => {
            return Err(InputError::not_simulated(
                t.loc(),
                format!("{} in family {}", t.text, fam.as_str()),
            ))
        }
    };
    let text = nat_target(&spec, cx, v6)?;
    let flags = nat_flags(p)?;
    push(
        cx,
        format!("{} {}to {}{flags}", t.text, prefix, text),
        StmtKind::Nat(t.text.clone()),
    );
    Ok(())
}

/// `comment "TEXT"` (the rule's comment).
fn comment_stmt(p: &mut Parser, cx: &mut RuleCtx) -> Result<(), InputError> {
    let c = p.next();
    if c.kind == Kind::Word && c.text.starts_with('\'') {
        // nft's scanner has no single quotes: `'` is junk.
        return Err(InputError::new(
            Loc { len: 1, ..c.loc() },
            "syntax error, unexpected junk, expecting string or quoted string or string with a trailing asterisk",
        )
        .parse_stage());
    }
    match c.kind {
        Kind::Quoted | Kind::Word => cx.body.comment = Some(c.text.clone()),
        _ => {
            return Err(syntax(
                c,
                Some("string or quoted string or string with a trailing asterisk"),
            ))
        }
    }
    Ok(())
}

/// `ip|ip6 saddr|daddr|protocol|nexthdr ...`.
fn ip_match(p: &mut Parser, cx: &mut RuleCtx, t: &Tok, fam: Family) -> Result<(), InputError> {
    if (t.text == "ip" && fam == Family::Ip6) || (t.text == "ip6" && fam == Family::Ip) {
        let field = p.peek();
        let own = if fam == Family::Ip { "ip" } else { "ip6" };
        return Err(InputError::new(
            t.loc().to(field.loc()),
            format!("conflicting protocols specified: {own} vs. {}", t.text),
        ));
    }
    if !matches!(
        fam,
        Family::Ip | Family::Ip6 | Family::Inet | Family::Bridge | Family::Netdev
    ) {
        return Err(InputError::not_simulated(
            t.loc(),
            format!("{} match in this family", t.text),
        ));
    }
    let l3 = if t.text == "ip" { "ip" } else { "ip6" };
    if let Some(prev) = cx.l3.filter(|p| *p != l3) {
        let field = p.peek();
        return Err(InputError::new(
            t.loc().to(field.loc()),
            format!("conflicting protocols specified: {prev} vs. {l3}"),
        ));
    }
    cx.l3 = Some(l3);
    drop_nfproto(cx, l3 == "ip");
    let field = p.word("string")?;
    match (t.text.as_str(), field.value.as_str()) {
        (_, "saddr" | "daddr") => addr_match(p, cx, &t.text, &field.value)?,
        ("ip", "protocol") => proto_match(p, cx, "ip protocol")?,
        ("ip6", "nexthdr") => proto_match(p, cx, "ip6 nexthdr")?,
        (fam_kw, f)
            if !(if fam_kw == "ip" {
                &[
                    "version",
                    "hdrlength",
                    "dscp",
                    "ecn",
                    "length",
                    "id",
                    "frag-off",
                    "ttl",
                    "checksum",
                    "option",
                ][..]
            } else {
                &["version", "dscp", "ecn", "flowlabel", "length", "hoplimit"][..]
            })
            .contains(&f) =>
        {
            // Not a field of the header at all.
            return Err(syntax(p.prev(), None));
        }
        _ => {
            return Err(InputError::not_simulated(
                field.loc,
                format!("{} {}", t.text, field.value),
            ))
        }
    }
    Ok(())
}

/// `tcp|udp sport|dport|flags ...` (also with a vmap).
fn l4_match(p: &mut Parser, cx: &mut RuleCtx, t: &Tok) -> Result<(), InputError> {
    let field = p.word("string")?;
    let known: &[&str] = if t.text == "tcp" {
        &[
            "sequence", "ackseq", "doff", "reserved", "flags", "window", "checksum", "urgptr",
            "option",
        ]
    } else {
        &["length", "checksum"]
    };
    if !matches!(field.value.as_str(), "sport" | "dport") && !known.contains(&field.value.as_str())
    {
        return Err(syntax(p.prev(), None));
    }
    if t.text == "tcp" && field.value == "flags" {
        let text = tcp_flags(p, cx)?;
        if let Some(other) = cx.l4.iter().find(|p| *p != "tcp") {
            return Err(InputError::new(
                t.loc().to(field.loc),
                format!("conflicting protocols specified: {other} vs. tcp"),
            ));
        }
        let next = cx.body.stmts.len();
        if let Some((idx, proto, used)) = &mut cx.dep {
            // Only a match right after it makes the protocol
            // match redundant.
            if proto == "tcp" && dep_reaches(&cx.body.stmts, *idx, next) {
                *used = true;
            }
        }
        cx.l4.push("tcp".into());
        push(cx, text, StmtKind::Other);
        return Ok(());
    }
    if !matches!(field.value.as_str(), "sport" | "dport") {
        return Err(InputError::not_simulated(
            field.loc,
            format!("{} {}", t.text, field.value),
        ));
    }
    if p.peek().is_word("vmap") {
        let conv = |t: &Tok| -> Result<(u128, String), InputError> {
            let v = port_conv(t)?;
            Ok((element_sort_key(&v).1, v))
        };
        if let Some(other) = cx.l4.iter().find(|p| *p != &t.text) {
            return Err(InputError::new(
                t.loc().to(field.loc),
                format!("conflicting protocols specified: {other} vs. {}", t.text),
            ));
        }
        let next = cx.body.stmts.len();
        if let Some((idx, proto, used)) = &mut cx.dep {
            if *proto == t.text && dep_reaches(&cx.body.stmts, *idx, next) {
                *used = true;
            }
        }
        cx.l4.push(t.text.clone());
        return vmap_stmt(p, cx, &format!("{} {}", t.text, field.value), &conv);
    }
    let op = rel_op(p);
    let v = plain_value_tok(p)?;
    let mut kind = StmtKind::Other;
    let value = if v.kind == Kind::LBrace {
        anon_set(p, cx, v.loc(), &port_conv)?
    } else if let Some(name) = v.text.strip_prefix('@') {
        cx.body.set_refs.push(Named {
            value: name.to_string(),
            loc: v.loc(),
        });
        kind = StmtKind::SetRef(name.to_string());
        v.text.clone()
    } else {
        port_conv(v)?
    };
    if let Some(other) = cx.l4.iter().find(|p| *p != &t.text) {
        return Err(InputError::new(
            t.loc().to(field.loc),
            format!("conflicting protocols specified: {other} vs. {}", t.text),
        ));
    }
    let next = cx.body.stmts.len();
    if let Some((idx, proto, used)) = &mut cx.dep {
        if *proto == t.text && dep_reaches(&cx.body.stmts, *idx, next) {
            *used = true;
        }
    }
    cx.l4.push(t.text.clone());
    push(
        cx,
        format!("{} {} {}{}", t.text, field.value, op, value),
        kind,
    );
    Ok(())
}

/// `ct state|status|mark|... ...` (also with a vmap).
fn ct_match(p: &mut Parser, cx: &mut RuleCtx) -> Result<(), InputError> {
    let key = p.word("string")?;
    const CT_KEYS: &[&str] = &[
        "direction",
        "status",
        "mark",
        "expiration",
        "helper",
        "l3proto",
        "protocol",
        "saddr",
        "daddr",
        "proto-src",
        "proto-dst",
        "label",
        "bytes",
        "packets",
        "avgpkt",
        "zone",
        "original",
        "reply",
        "count",
        "id",
        "event",
        "secmark",
        "timeout",
        "expectation",
    ];
    if key.value != "state" && !CT_KEYS.contains(&key.value.as_str()) {
        return Err(syntax(p.prev(), None));
    }
    if key.value == "mark" {
        return mark_stmt(p, cx, "ct mark");
    }
    if key.value != "state" {
        return Err(InputError::not_simulated(
            key.loc,
            format!("ct {}", key.value),
        ));
    }
    if p.peek().is_word("vmap") {
        let conv = |t: &Tok| -> Result<(u128, String), InputError> {
            match CT_STATES.iter().find(|(n, _)| *n == t.text) {
                Some((n, b)) => Ok((u128::from(*b), n.to_string())),
                None => Err(InputError::new(t.loc(), "Could not parse conntrack state")),
            }
        };
        return vmap_stmt(p, cx, "ct state", &conv);
    }
    let op = rel_op(p);
    if p.peek().kind == Kind::LBrace {
        let open = p.next().loc();
        let mut items: Vec<(u32, &str)> = Vec::new();
        loop {
            p.skip_newlines();
            let s = p.next();
            match s.kind {
                Kind::RBrace => break,
                Kind::Comma => continue,
                Kind::Word => match CT_STATES.iter().find(|(n, _)| *n == s.text) {
                    Some((n, b)) => items.push((*b, n)),
                    None => {
                        return Err(InputError::new(s.loc(), "Could not parse conntrack state"))
                    }
                },
                _ => return Err(syntax(s, Some("'}'"))),
            }
        }
        let written: Vec<&str> = items.iter().map(|(_, n)| *n).collect();
        let written = format!("{{ {} }}", written.join(", "));
        items.sort();
        items.dedup();
        let names: Vec<&str> = items.iter().map(|(_, n)| *n).collect();
        if names.len() == 1 {
            // One state: a plain state match.
            push(cx, format!("ct state {op}{}", names[0]), StmtKind::Other);
            return Ok(());
        }
        cx.body.anon_sets.push(open.to(p.prev().loc()));
        cx.body
            .echo_sets
            .push((format!("{{ {} }}", names.join(", ")), written));
        push(
            cx,
            format!("ct state {op}{{ {} }}", names.join(", ")),
            StmtKind::Other,
        );
        return Ok(());
    }
    let mut bits = 0u32;
    loop {
        let s = match p.peek().kind {
            Kind::Word => p.word("string")?,
            _ => return Err(syntax(p.peek(), None)),
        };
        match CT_STATES.iter().find(|(n, _)| *n == s.value) {
            Some((_, b)) => bits |= b,
            None => return Err(InputError::new(s.loc, "Could not parse conntrack state")),
        }
        if p.peek().kind == Kind::Comma {
            p.next();
        } else {
            break;
        }
    }
    let names: Vec<&str> = CT_STATES
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect();
    // A negated state list prints as a bitmask expression.
    let sep = if op.is_empty() { "," } else { " | " };
    push(
        cx,
        format!("ct state {}{}", op, names.join(sep)),
        StmtKind::Other,
    );
    Ok(())
}

/// `redirect [to :PORT]`.
fn redirect_stmt(p: &mut Parser, cx: &mut RuleCtx, t: &Tok) -> Result<(), InputError> {
    let mut text = "redirect".to_string();
    if p.eat_word("to") {
        let ports = p.word("string")?;
        let bare = ports.value.trim_start_matches(':');
        if cx.l4.is_empty() {
            let skip = ports.value.len() - bare.len();
            let range = Loc {
                col: ports.loc.col + skip,
                len: ports.loc.len.saturating_sub(skip),
                ..ports.loc
            };
            return Err(InputError {
                loc: range,
                secondary: Some(t.loc()),
                msg: "transport protocol mapping is only valid after transport protocol match"
                    .into(),
                eval: true,
            });
        }
        let port_tok = Tok {
            kind: Kind::Word,
            text: bare.to_string(),
            line: ports.loc.line,
            col: ports.loc.col,
            len: ports.loc.len,
        };
        text.push_str(&format!(" to :{}", port_conv(&port_tok)?));
    }
    text.push_str(&nat_flags(p)?);
    if !matches!(cx.family, Family::Ip | Family::Ip6 | Family::Inet) {
        return Err(InputError::not_simulated(
            t.loc(),
            format!("redirect in family {}", cx.family.as_str()),
        ));
    }
    push(cx, text, StmtKind::Nat("redirect".into()));
    Ok(())
}

/// Statement and expression words of nft's grammar the simulator does not
/// model: they must be reported as "not simulated", never as syntax errors.
const NFT_EXPR_WORDS: &[&str] = &[
    "log",
    "limit",
    "notrack",
    "mark",
    "queue",
    "fwd",
    "dup",
    "quota",
    "synproxy",
    "tproxy",
    "flow",
    "numgen",
    "jhash",
    "symhash",
    "fib",
    "rt",
    "ipsec",
    "osf",
    "socket",
    "th",
    "sctp",
    "dccp",
    "icmp",
    "icmpv6",
    "igmp",
    "ah",
    "esp",
    "comp",
    "udplite",
    "vlan",
    "ether",
    "arp",
    "hbh",
    "rt0",
    "frag",
    "dst",
    "mh",
    "exthdr",
    "priority",
    "pkttype",
    "cpu",
    "iifgroup",
    "oifgroup",
    "cgroup",
    "skuid",
    "skgid",
    "nftrace",
    "rtclassid",
    "ibrname",
    "obrname",
    "random",
    "secpath",
    "time",
    "day",
    "hour",
    "xt",
    "redirect",
    "nat",
    "set",
    "map",
    "update",
    "add",
    "delete",
    "meter",
    "vmap",
    "ct",
    "length",
    "nfproto",
    "protocol",
    "iiftype",
    "oiftype",
    "iifkind",
    "oifkind",
    "sdif",
    "sdifname",
    "secmark",
    "flowtable",
    "offload",
    "tcp",
    "udp",
    "ip",
    "ip6",
    "inet",
    "bridge",
    "netdev",
    "counter",
    "accept",
    "drop",
    "continue",
    "return",
    "jump",
    "goto",
    "reject",
    "masquerade",
    "snat",
    "dnat",
    "meta",
    "iif",
    "oif",
    "iifname",
    "oifname",
    "comment",
    "reset",
    "last",
    "gre",
    "geneve",
    "vxlan",
];

/// NAT flags after the target: printed in nft's order.
fn nat_flags(p: &mut Parser) -> Result<String, InputError> {
    const ORDER: [&str; 3] = ["random", "fully-random", "persistent"];
    let mut seen = [false; 3];
    let mut any = false;
    while let Some(i) = ORDER.iter().position(|f| p.peek().is_word(f)) {
        p.next();
        seen[i] = true;
        any = true;
        if p.peek().kind == Kind::Comma && ORDER.iter().any(|f| p.peek_at(1).is_word(f)) {
            p.next();
        } else {
            break;
        }
    }
    if !any {
        return Ok(String::new());
    }
    let names: Vec<&str> = ORDER
        .iter()
        .zip(seen)
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
    Ok(format!(" {}", names.join(",")))
}

fn nat_family_check(cx: &RuleCtx, t: &Tok) -> Result<(), InputError> {
    let inet_ok = t.text == "masquerade" && cx.family == Family::Inet;
    if inet_ok || matches!(cx.family, Family::Ip | Family::Ip6) {
        Ok(())
    } else {
        Err(InputError::not_simulated(
            t.loc(),
            format!("{} in family {}", t.text, cx.family.as_str()),
        ))
    }
}

/// `A`, `A-B`, `A:P`, `A-B:P-Q` (IPv4) or `A`, `A-B`, `[A]:P` (IPv6) as nft
/// prints them.
fn nat_target(spec: &Named<String>, cx: &RuleCtx, v6: bool) -> Result<String, InputError> {
    let resolve = || {
        InputError::new(
            spec.loc,
            "Could not resolve hostname: Name or service not known",
        )
    };
    let wrong_family = || {
        InputError::new(
            spec.loc,
            "Could not resolve hostname: Address family for hostname not supported",
        )
    };
    let (addrs, ports) = if v6 {
        match spec
            .value
            .strip_prefix('[')
            .and_then(|r| r.split_once("]:"))
        {
            Some((a, p)) => (a, Some(p)),
            None => (spec.value.as_str(), None),
        }
    } else {
        match spec.value.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (spec.value.as_str(), None),
        }
    };
    let one = |a: &str| -> Result<String, InputError> {
        if v6 {
            if a.parse::<Ipv4Addr>().is_ok() {
                return Err(wrong_family());
            }
            a.parse::<Ipv6Addr>()
                .map(|x| x.to_string())
                .map_err(|_| resolve())
        } else {
            if a.contains(':') {
                return Err(wrong_family());
            }
            a.parse::<Ipv4Addr>()
                .map(|x| x.to_string())
                .map_err(|_| resolve())
        }
    };
    let addr_text = match addrs.split_once('-') {
        Some((a, b)) if !v6 || b.contains(':') => {
            let (a, b) = (one(a)?, one(b)?);
            if a == b {
                format!("{a}/{}", if v6 { 128 } else { 32 })
            } else {
                format!("{a}-{b}")
            }
        }
        _ => one(addrs)?,
    };
    match ports {
        None => Ok(addr_text),
        Some(p) => {
            if cx.l4.is_empty() {
                return Err(InputError::new(
                    spec.loc,
                    "transport protocol mapping is only valid after transport protocol match",
                ));
            }
            if v6 {
                Ok(format!("[{addr_text}]:{p}"))
            } else {
                Ok(format!("{addr_text}:{p}"))
            }
        }
    }
}

fn iface_match(
    p: &mut Parser,
    cx: &mut RuleCtx,
    key: &str,
    _first: &Tok,
) -> Result<(), InputError> {
    if p.peek().is_word("vmap") && (key == "iifname" || key == "oifname") {
        let conv =
            |t: &Tok| -> Result<(u128, String), InputError> { Ok((0, format!("\"{}\"", t.text))) };
        return vmap_stmt(p, cx, key, &conv);
    }
    let op = rel_op(p);
    let v = plain_value_tok(p)?;
    if v.kind == Kind::LBrace && (key == "iifname" || key == "oifname") {
        let conv = |t: &Tok| -> Result<String, InputError> { Ok(format!("\"{}\"", t.text)) };
        let set = anon_set(p, cx, v.loc(), &conv)?;
        push(cx, format!("{key} {op}{set}"), StmtKind::Other);
        return Ok(());
    }
    if v.kind == Kind::LBrace {
        return Err(InputError::not_simulated(v.loc(), "interface sets"));
    }
    if v.text.starts_with('@') {
        return Err(InputError::not_simulated(
            v.loc(),
            "interface set references",
        ));
    }
    if key == "iif" || key == "oif" {
        cx.body.ifaces.push(Named {
            value: v.text.clone(),
            loc: v.loc(),
        });
    }
    push(cx, format!("{key} {op}\"{}\"", v.text), StmtKind::Other);
    Ok(())
}

fn proto_match(p: &mut Parser, cx: &mut RuleCtx, prefix: &str) -> Result<(), InputError> {
    if p.peek().is_word("vmap") {
        let conv = |t: &Tok| -> Result<(u128, String), InputError> {
            let name = l4proto_name(&t.text).ok_or_else(|| {
                InputError::not_simulated(t.loc(), format!("protocol '{}'", t.text))
            })?;
            let n = super::output::proto_number_of(name).unwrap_or(0);
            Ok((u128::from(n), name.to_string()))
        };
        return vmap_stmt(p, cx, prefix, &conv);
    }
    let op = rel_op(p);
    let v = value_tok(p)?;
    if v.kind == Kind::LBrace {
        let conv = |t: &Tok| -> Result<String, InputError> {
            l4proto_name(&t.text)
                .map(str::to_string)
                .ok_or_else(|| InputError::not_simulated(t.loc(), format!("protocol '{}'", t.text)))
        };
        let set = anon_set(p, cx, v.loc(), &conv)?;
        if !set.starts_with('{') {
            // One protocol: a plain match.
            push(cx, format!("{prefix} {op}{set}"), StmtKind::Other);
            return Ok(());
        }
        // Listed by protocol number.
        let mut names: Vec<String> = set
            .trim_start_matches("{ ")
            .trim_end_matches(" }")
            .split(", ")
            .map(str::to_string)
            .collect();
        names.sort_by_key(|n| super::output::proto_number_of(n).unwrap_or(u8::MAX));
        let sorted = format!("{{ {} }}", names.join(", "));
        if let Some(last) = cx.body.echo_sets.last_mut() {
            last.0 = sorted.clone();
        }
        push(cx, format!("{prefix} {op}{sorted}"), StmtKind::Other);
        return Ok(());
    }
    if v.kind != Kind::Word {
        return Err(InputError::not_simulated(v.loc(), "protocol sets"));
    }
    let name = l4proto_name(&v.text)
        .ok_or_else(|| InputError::not_simulated(v.loc(), format!("protocol '{}'", v.text)))?;
    // Only the family's own protocol match is implied by a port match
    // (in inet `ip protocol` / `ip6 nexthdr` stay).
    let implied = match cx.family {
        Family::Inet => prefix == "meta l4proto",
        Family::Ip => prefix != "ip6 nexthdr",
        Family::Ip6 => prefix != "ip protocol",
        _ => true,
    };
    if op.is_empty() {
        cx.l4.push(name.to_string());
        if implied && cx.dep.is_none() && (name == "tcp" || name == "udp") {
            cx.dep = Some((cx.body.stmts.len(), name.to_string(), false));
        }
    }
    push(cx, format!("{prefix} {op}{name}"), StmtKind::Other);
    Ok(())
}

const TCP_FLAGS: [(&str, u32); 8] = [
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ecn", 0x40),
    ("cwr", 0x80),
];

fn flag_names(bits: u32) -> String {
    TCP_FLAGS
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// A tcp flags value: `syn`, `syn,ack`, `(syn|ack)`, `syn | ack`, `0x12`,
/// possibly spread over several words; returns the bits.
fn tcp_flag_value(p: &mut Parser, comma_list: bool) -> Result<u32, InputError> {
    let first = p.next();
    if first.kind != Kind::Word {
        return Err(syntax(first, None));
    }
    let mut text = first.text.clone();
    let mut depth = text.matches('(').count() as i64 - text.matches(')').count() as i64;
    // `a | b` or an open parenthesis continue the value.
    while depth > 0
        || p.peek().is_word("|")
        || text.ends_with('|')
        || (comma_list && p.peek().kind == Kind::Comma)
    {
        if p.peek().kind == Kind::Comma {
            p.next();
            text.push(',');
        }
        let t = p.next();
        if t.kind != Kind::Word {
            return Err(syntax(t, None));
        }
        depth += t.text.matches('(').count() as i64 - t.text.matches(')').count() as i64;
        text.push_str(&t.text);
    }
    let mut bits = 0;
    for part in text
        .trim_matches(|c| c == '(' || c == ')')
        .split(['|', ','])
        .filter(|s| !s.is_empty())
    {
        let part = part.trim_matches(|c| c == '(' || c == ')');
        if let Some((_, b)) = TCP_FLAGS.iter().find(|(n, _)| *n == part) {
            bits |= b;
        } else if let Some(hex) = part.strip_prefix("0x") {
            bits |= u32::from_str_radix(hex, 16).map_err(|_| {
                InputError::not_simulated(first.loc(), format!("tcp flags '{text}'"))
            })?;
        } else if let Ok(n) = part.parse::<u32>() {
            bits |= n;
        } else {
            return Err(InputError::not_simulated(
                first.loc(),
                format!("tcp flags '{text}'"),
            ));
        }
    }
    if bits > 0xff {
        return Err(InputError::not_simulated(
            first.loc(),
            format!("tcp flags '{text}'"),
        ));
    }
    Ok(bits)
}

/// `tcp flags ...` in its input forms, printed the way nft 1.0.6 does.
fn tcp_flags(p: &mut Parser, cx: &mut RuleCtx) -> Result<String, InputError> {
    if p.peek().is_word("&") {
        p.next();
        let mask = tcp_flag_value(p, true)?;
        let ne = match p.next().kind {
            Kind::EqEq => false,
            Kind::Ne => true,
            _ => {
                return Err(InputError::not_simulated(
                    p.prev().loc(),
                    "tcp flags expression",
                ))
            }
        };
        let value = tcp_flag_value(p, true)?;
        let op = if ne { "!= " } else { "" };
        if value == 0 && !ne {
            return Ok(format!("tcp flags ! {}", flag_names(mask)));
        }
        if value == 0 {
            return Err(InputError::not_simulated(
                p.prev().loc(),
                "tcp flags & M != 0",
            ));
        }
        if mask.count_ones() == 1 && value == mask {
            let n = flag_names(mask);
            return Ok(format!(
                "tcp flags & {n} {}= {n}",
                if ne { "!" } else { "=" }
            ));
        }
        return Ok(format!(
            "tcp flags {op}{} / {}",
            flag_names(value),
            flag_names(mask)
        ));
    }
    let op = rel_op(p);
    if p.peek().kind == Kind::LBrace {
        let open = p.next().loc();
        let mut items: Vec<u32> = Vec::new();
        loop {
            p.skip_newlines();
            match p.peek().kind {
                Kind::RBrace => {
                    p.next();
                    break;
                }
                Kind::Comma => {
                    p.next();
                }
                _ => items.push(tcp_flag_value(p, false)?),
            }
        }
        items.sort();
        items.dedup();
        let names: Vec<String> = items.iter().map(|b| flag_names(*b)).collect();
        cx.body.anon_sets.push(open.to(p.prev().loc()));
        return Ok(format!("tcp flags {op}{{ {} }}", names.join(", ")));
    }
    let value = tcp_flag_value(p, true)?;
    if p.peek().is_word("/") {
        p.next();
        let mask = tcp_flag_value(p, true)?;
        return Ok(format!(
            "tcp flags {op}{} / {}",
            flag_names(value),
            flag_names(mask)
        ));
    }
    Ok(format!("tcp flags {op}{}", flag_names(value)))
}

/// A map key read from a token: its sort order and its printed form.
type KeyConv = dyn Fn(&Tok) -> Result<(u128, String), InputError>;

/// `LHS vmap { KEY : VERDICT, ... }` or `LHS vmap @MAP`.
fn vmap_stmt(
    p: &mut Parser,
    cx: &mut RuleCtx,
    lhs: &str,
    conv: &KeyConv,
) -> Result<(), InputError> {
    p.next(); // vmap
    let v = p.next();
    if let Some(name) = v.text.strip_prefix('@').filter(|_| v.kind == Kind::Word) {
        cx.body.set_refs.push(Named {
            value: name.to_string(),
            loc: v.loc(),
        });
        push(
            cx,
            format!("{lhs} vmap @{name}"),
            StmtKind::SetRef(name.to_string()),
        );
        return Ok(());
    }
    if v.kind != Kind::LBrace {
        return Err(syntax(v, None));
    }
    let mut items: Vec<(u128, String, String)> = Vec::new();
    let mut targets = Vec::new();
    loop {
        p.skip_newlines();
        let k = p.next();
        match k.kind {
            Kind::RBrace => break,
            Kind::Comma => continue,
            Kind::Word | Kind::Quoted => {}
            _ => return Err(syntax(k, Some("'}'"))),
        }
        let (order, key) = conv(k)?;
        if !p.eat_word(":") {
            return Err(syntax(p.peek(), Some("colon")));
        }
        let verdict = p.next();
        let text = match verdict.text.as_str() {
            "accept" | "drop" | "continue" | "return" if verdict.kind == Kind::Word => {
                verdict.text.clone()
            }
            "jump" | "goto" if verdict.kind == Kind::Word => {
                let target = p.ident("string")?;
                cx.body.targets.push((
                    Named {
                        value: target.value.clone(),
                        loc: k.loc(),
                    },
                    verdict.text == "goto",
                ));
                targets.push(target.value.clone());
                format!("{} {}", verdict.text, target.value)
            }
            _ => return Err(syntax(verdict, None)),
        };
        items.push((order, key, text));
    }
    cx.body.anon_sets.push(v.loc().to(p.prev().loc()));
    let written: Vec<String> = items.iter().map(|(_, k, v)| format!("{k} : {v}")).collect();
    let written = format!("{{ {} }}", written.join(", "));
    items.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let body: Vec<String> = items
        .into_iter()
        .map(|(_, k, v)| format!("{k} : {v}"))
        .collect();
    cx.body
        .echo_sets
        .push((format!("{{ {} }}", body.join(", ")), written));
    push(
        cx,
        format!("{lhs} vmap {{ {} }}", body.join(", ")),
        StmtKind::VerdictMap(targets),
    );
    Ok(())
}

/// `icmp type X` / `icmpv6 type X` (name, number or anonymous set).
fn icmp_match(p: &mut Parser, cx: &mut RuleCtx, t: &Tok) -> Result<(), InputError> {
    let kw = t.text.as_str();
    let ok_family = matches!(cx.family, Family::Ip | Family::Ip6 | Family::Inet);
    if !ok_family || (kw == "icmp" && cx.family == Family::Ip6) {
        return Err(InputError::not_simulated(
            t.loc(),
            format!("{kw} in family {}", cx.family.as_str()),
        ));
    }
    let field = p.word("string")?;
    if field.value != "type" {
        return Err(InputError::not_simulated(
            field.loc,
            format!("{kw} {}", field.value),
        ));
    }
    let table = if kw == "icmp" {
        super::output::ICMP_TYPES
    } else {
        super::output::ICMPV6_TYPES
    };
    let conv = |t: &Tok| -> Result<(u32, String), InputError> {
        if let Ok(n) = t.text.parse::<u32>() {
            if n > 255 {
                return Err(InputError::new(
                    t.loc(),
                    format!("Value {n} exceeds valid range 0-255"),
                ));
            }
            let name = table
                .iter()
                .find(|(_, v)| u32::from(*v) == n)
                .map(|(name, _)| name.to_string())
                .unwrap_or_else(|| n.to_string());
            return Ok((n, name));
        }
        match table.iter().find(|(name, _)| *name == t.text) {
            Some((_, v)) => {
                // Aliases print under the first name of their number.
                let first = table
                    .iter()
                    .find(|(_, w)| w == v)
                    .map(|(name, _)| name.to_string())
                    .unwrap_or_else(|| t.text.clone());
                Ok((u32::from(*v), first))
            }
            None => Err(InputError::new(t.loc(), "Could not parse ICMP type")),
        }
    };
    let op = rel_op(p);
    let v = plain_value_tok(p)?;
    let value = if v.kind == Kind::LBrace {
        let mut items: Vec<(u32, String)> = Vec::new();
        loop {
            p.skip_newlines();
            let e = p.next();
            match e.kind {
                Kind::RBrace => break,
                Kind::Comma => continue,
                Kind::Word => items.push(conv(e)?),
                _ => return Err(syntax(e, Some("'}'"))),
            }
        }
        let written: Vec<&str> = items.iter().map(|(_, n)| n.as_str()).collect();
        let written = format!("{{ {} }}", written.join(", "));
        items.sort();
        items.dedup();
        if items.len() != 1 {
            cx.body.anon_sets.push(v.loc().to(p.prev().loc()));
        }
        let mut names: Vec<String> = items.into_iter().map(|(_, n)| n).collect();
        if names.len() == 1 {
            names.remove(0)
        } else {
            let sorted = format!("{{ {} }}", names.join(", "));
            cx.body.echo_sets.push((sorted.clone(), written));
            sorted
        }
    } else if v.text.starts_with('@') {
        return Err(InputError::not_simulated(
            v.loc(),
            "icmp type set references",
        ));
    } else {
        conv(v)?.1
    };
    drop_nfproto(cx, kw == "icmp");
    // A preceding `ip protocol icmp` / `meta l4proto icmp` is implied.
    let proto = if kw == "icmp" { "icmp" } else { "ipv6-icmp" };
    if let Some(last) = cx.body.stmts.last() {
        let implied = match cx.family {
            Family::Inet => format!("meta l4proto {proto}"),
            Family::Ip => format!("ip protocol {proto}"),
            _ => format!("ip6 nexthdr {proto}"),
        };
        if last.text == implied
            || (cx.family != Family::Inet && last.text == format!("meta l4proto {proto}"))
        {
            cx.body.stmts.pop();
        }
    }
    push(cx, format!("{kw} type {op}{value}"), StmtKind::Other);
    Ok(())
}

/// Whether a protocol match at `idx` still is the dependency of a match
/// added at `next`: only other matches may come between (a statement such
/// as `counter` or `log` ends nft's dependency tracking).
fn dep_reaches(stmts: &[Stmt], idx: usize, next: usize) -> bool {
    stmts.get(idx + 1..next).is_some_and(|between| {
        between.iter().all(|s| {
            let w = s.text.split(' ').next().unwrap_or("");
            !matches!(w, "counter" | "log" | "limit" | "quota" | "notrack")
        })
    })
}

/// In inet, `meta nfproto ipv4` right before an ip (or icmp) match is that
/// match's dependency: nft does not list it.
fn drop_nfproto(cx: &mut RuleCtx, v4: bool) {
    let implied = if v4 {
        "meta nfproto ipv4"
    } else {
        "meta nfproto ipv6"
    };
    if cx.family == Family::Inet && cx.body.stmts.last().is_some_and(|s| s.text == implied) {
        cx.body.stmts.pop();
    }
}

/// A packet/conntrack mark value, printed as nft does (`0x0000002a`).
fn mark_value(t: &Tok) -> Result<String, InputError> {
    let v = match t.text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.text.parse::<u64>().ok(),
    };
    match v {
        Some(n) if n <= u64::from(u32::MAX) => Ok(format!("{n:#010x}")),
        Some(_) => Err(InputError::new(
            t.loc(),
            format!("Value {} exceeds valid range 0-4294967295", t.text),
        )),
        None => Err(InputError::new(t.loc(), "Could not parse packet mark")),
    }
}

/// `meta mark [!=] V`, `meta mark { V, ... }`, `meta mark set V`, and the
/// same for `ct mark` (also `ct mark set meta mark`).
fn mark_stmt(p: &mut Parser, cx: &mut RuleCtx, lhs: &str) -> Result<(), InputError> {
    if p.eat_word("set") {
        if lhs == "ct mark" && p.peek().is_word("meta") && p.peek_at(1).is_word("mark") {
            p.next();
            p.next();
            push(cx, "ct mark set meta mark".into(), StmtKind::Other);
            return Ok(());
        }
        let v = plain_value_tok(p)?;
        if v.kind != Kind::Word {
            return Err(InputError::not_simulated(
                v.loc(),
                format!("{lhs} set expression"),
            ));
        }
        let value = mark_value(v)?;
        push(cx, format!("{lhs} set {value}"), StmtKind::Other);
        return Ok(());
    }
    let op = rel_op(p);
    let v = plain_value_tok(p)?;
    let value = if v.kind == Kind::LBrace {
        anon_set(p, cx, v.loc(), &mark_value)?
    } else if v.text.starts_with('@') {
        return Err(InputError::not_simulated(v.loc(), "mark set references"));
    } else {
        mark_value(v)?
    };
    push(cx, format!("{lhs} {op}{value}"), StmtKind::Other);
    Ok(())
}

/// `meta nfproto ipv4|ipv6` (inet only).
fn nfproto_match(p: &mut Parser, cx: &mut RuleCtx, key: Loc) -> Result<(), InputError> {
    let op = rel_op(p);
    let v = plain_value_tok(p)?;
    if cx.family != Family::Inet {
        return Err(InputError::new(
            key,
            "meta nfproto is only useful in the inet family",
        ));
    }
    let name = match v.text.as_str() {
        "ipv4" | "2" => "ipv4",
        "ipv6" | "10" => "ipv6",
        _ => {
            return Err(InputError::not_simulated(
                v.loc(),
                format!("nfproto '{}'", v.text),
            ))
        }
    };
    if op.is_empty() {
        cx.l3 = Some(if name == "ipv4" { "ip" } else { "ip6" });
    }
    push(cx, format!("meta nfproto {op}{name}"), StmtKind::Other);
    Ok(())
}

const LOG_LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit",
];

/// `log [prefix STR] [level L] [group N]`.
fn log_stmt(p: &mut Parser, cx: &mut RuleCtx) -> Result<(), InputError> {
    let mut prefix: Option<String> = None;
    let mut level: Option<String> = None;
    let mut group: Option<u64> = None;
    loop {
        let k = p.peek();
        if k.kind != Kind::Word {
            break;
        }
        match k.text.as_str() {
            "prefix" => {
                p.next();
                let v = p.next();
                match v.kind {
                    Kind::Word if v.text.contains(':') => {
                        // nft scans an unquoted `a:` as a string and a colon.
                        let col = v.col + v.text.find(':').unwrap_or(0);
                        let loc = Loc {
                            col,
                            len: 1,
                            ..v.loc()
                        };
                        return Err(InputError::new(
                            loc,
                            format!("syntax error, unexpected colon, expecting {END_EXPECT}"),
                        )
                        .parse_stage());
                    }
                    Kind::Quoted | Kind::Word => prefix = Some(v.text.clone()),
                    _ => return Err(syntax(v, Some("string"))),
                }
            }
            "level" => {
                p.next();
                let v = p.word("string")?;
                if !LOG_LEVELS.contains(&v.value.as_str()) {
                    return Err(InputError::new(v.loc, "invalid log level"));
                }
                level = Some(v.value);
            }
            "group" => {
                p.next();
                group = Some(p.number()?.value);
            }
            "snaplen" | "queue-threshold" | "flags" => {
                return Err(InputError::not_simulated(
                    k.loc(),
                    format!("log {}", k.text),
                ))
            }
            _ => break,
        }
    }
    let mut text = "log".to_string();
    if let Some(pr) = prefix {
        text.push_str(&format!(" prefix \"{pr}\""));
    }
    if let Some(g) = group {
        text.push_str(&format!(" group {g}"));
    } else if let Some(l) = level.filter(|l| l != "warn") {
        text.push_str(&format!(" level {l}"));
    }
    push(cx, text, StmtKind::Other);
    Ok(())
}

/// `limit rate [over] N/UNIT [burst N packets]` (packet rates only).
fn limit_stmt(p: &mut Parser, cx: &mut RuleCtx) -> Result<(), InputError> {
    let start = p.prev().loc();
    if !p.eat_word("rate") {
        return Err(InputError::not_simulated(
            p.peek().loc(),
            "limit without 'rate'",
        ));
    }
    let over = p.eat_word("over");
    let v = p.word("string")?;
    let Some((n, unit)) = v.value.split_once('/') else {
        return Err(InputError::not_simulated(
            v.loc,
            format!("limit rate '{}'", v.value),
        ));
    };
    let Ok(n) = n.parse::<u64>() else {
        return Err(InputError::not_simulated(
            v.loc,
            format!("limit rate '{}'", v.value),
        ));
    };
    if !matches!(unit, "second" | "minute" | "hour" | "day" | "week") {
        let col = v.loc.col + v.value.len() - unit.len();
        let loc = Loc {
            col,
            len: unit.len(),
            ..v.loc
        };
        return Err(InputError::new(loc, "syntax error, unexpected string").parse_stage());
    }
    let mut burst = 5;
    if p.eat_word("burst") {
        burst = p.number()?.value;
        if !p.eat_word("packets") {
            return Err(InputError::not_simulated(
                p.peek().loc(),
                "limit burst in bytes",
            ));
        }
    }
    if n == 0 {
        return Err(InputError::not_simulated(
            start.to(p.prev().loc()),
            "limit rate 0",
        ));
    }
    let mut text = format!("limit rate {}{n}/{unit}", if over { "over " } else { "" });
    if burst != 5 {
        text.push_str(&format!(" burst {burst} packets"));
    }
    push(cx, text, StmtKind::Other);
    Ok(())
}

/// `table FAMILY NAME { chain NAME { ... } set NAME { ... } }` (file syntax):
/// expanded into the equivalent add commands, as nft does.
fn table_block(
    p: &mut Parser,
    out: &mut Vec<Command>,
    errors: &mut Vec<InputError>,
) -> Result<(), InputError> {
    let start = p.prev().loc();
    let t = p.table_ref("string")?;
    if p.peek().kind != Kind::LBrace {
        return Err(syntax(p.peek(), Some("'{'")));
    }
    p.next();
    out.push(Command {
        op: Op::AddTable {
            create: false,
            t: t.clone(),
            dormant: false,
            comment: None,
        },
        loc: start.to(t.loc),
    });
    let first = out.len();
    // Like nft's grammar, a syntax error inside the block is recovered at
    // the end of its line, still inside the block.
    loop {
        while matches!(p.peek().kind, Kind::Newline | Kind::Semi) {
            p.next();
        }
        match table_item(p, &t, out, errors) {
            Ok(true) => {
                // nft expands a table block into chains first, then sets,
                // then the rules of every chain (this decides the handles).
                out[first..].sort_by_key(|c| match c.op {
                    Op::AddChain { .. } => 0,
                    Op::AddRule { .. } | Op::Invalid(..) => 2,
                    _ => 1,
                });
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => {
                let at_eof = p.peek().kind == Kind::Eof;
                errors.push(e);
                if at_eof {
                    return Ok(());
                }
                skip_line(p);
            }
        }
    }
}

fn skip_line(p: &mut Parser) {
    while !matches!(p.peek().kind, Kind::Newline | Kind::Eof) {
        p.next();
    }
}

/// One item of a `table { }` block; `Ok(true)` when the block closed.
fn table_item(
    p: &mut Parser,
    t: &TableRef,
    out: &mut Vec<Command>,
    errors: &mut Vec<InputError>,
) -> Result<bool, InputError> {
    let k = p.next();
    match k.kind {
        Kind::RBrace => Ok(true),
        Kind::Eof => Err(syntax(k, Some("'}'"))),
        Kind::Word if k.text == "chain" => {
            let chain = p.ident("string")?;
            if p.peek().kind != Kind::LBrace {
                return Err(syntax(p.peek(), Some("'{'")));
            }
            p.next();
            let chain_idx = out.len();
            out.push(Command {
                op: Op::AddChain {
                    create: false,
                    t: t.clone(),
                    chain: chain.clone(),
                    spec: None,
                    comment: None,
                    policy_loc: None,
                    policy_only: None,
                },
                loc: k.loc().to(chain.loc),
            });
            let mut spec: Option<BaseSpec> = None;
            let mut policy: Option<bool> = None;
            loop {
                while matches!(p.peek().kind, Kind::Newline | Kind::Semi) {
                    p.next();
                }
                let s = p.peek();
                if s.kind == Kind::RBrace {
                    p.next();
                    break;
                }
                if s.kind == Kind::Eof {
                    return Err(syntax(s, Some("'}'")));
                }
                if s.is_word("type") {
                    p.next();
                    let ty = p.word("string")?;
                    if !p.eat_word("hook") {
                        return Err(syntax(p.peek(), Some("hook")));
                    }
                    let h = p.word("string")?;
                    if !p.eat_word("priority") {
                        return Err(syntax(p.peek(), Some("priority")));
                    }
                    let prio = priority_expr(p, t.family, &h.value)?;
                    spec = Some(BaseSpec {
                        chain_type: ty.value,
                        hook: h.value,
                        priority: prio,
                        policy_accept: true,
                    });
                    continue;
                }
                if s.is_word("policy") {
                    p.next();
                    let pol = p.word("string")?;
                    policy = Some(pol.value == "accept");
                    continue;
                }
                let rstart = s.loc();
                match rule_body(p, t.family, true) {
                    Ok(body) => out.push(Command {
                        op: Op::AddRule {
                            insert: false,
                            t: t.clone(),
                            chain: chain.clone(),
                            pos: None,
                            body,
                        },
                        loc: rstart.to(p.prev().loc()),
                    }),
                    Err(e) if e.eval => {
                        skip_line(p);
                        out.push(Command {
                            op: Op::Invalid(e, false),
                            loc: rstart,
                        });
                    }
                    Err(e) => {
                        // Recovered inside the chain block.
                        errors.push(e);
                        skip_line(p);
                    }
                }
            }
            if let Some(mut sp) = spec {
                if let Some(pol) = policy {
                    sp.policy_accept = pol;
                }
                if let Op::AddChain { spec, .. } = &mut out[chain_idx].op {
                    *spec = Some(sp);
                }
            }
            Ok(false)
        }
        Kind::Word if k.text == "set" || k.text == "map" => {
            let set = p.ident("string")?;
            let decl = set_decl(p, k.text == "map")?;
            out.push(Command {
                op: Op::AddSet {
                    create: false,
                    t: t.clone(),
                    set: set.clone(),
                    decl,
                },
                loc: k.loc().to(set.loc),
            });
            Ok(false)
        }
        Kind::Word
            if matches!(
                k.text.as_str(),
                "counter" | "quota" | "limit" | "ct" | "secmark" | "synproxy" | "flowtable"
            ) =>
        {
            // Stateful object declarations want a name next (`ct` first
            // wants its object kind).
            let n = p.peek();
            if k.text == "ct"
                && !["helper", "timeout", "expectation"]
                    .iter()
                    .any(|w| n.is_word(w))
            {
                const CT_WORDS: &[&str] = &[
                    "state",
                    "status",
                    "direction",
                    "mark",
                    "expiration",
                    "label",
                    "l3proto",
                    "protocol",
                    "saddr",
                    "daddr",
                    "proto-src",
                    "proto-dst",
                    "zone",
                    "original",
                    "reply",
                    "event",
                    "count",
                    "id",
                    "bytes",
                    "packets",
                    "avgpkt",
                ];
                let mut e = syntax(n, Some("timeout or expectation or helper"));
                if n.kind == Kind::Word && CT_WORDS.contains(&n.text.as_str()) {
                    // Inside `ct` these are keywords of the scanner.
                    e.msg = format!(
                        "syntax error, unexpected {}, expecting timeout or expectation or helper",
                        n.text
                    );
                }
                return Err(e);
            }
            if n.kind != Kind::Word || is_keyword(&n.text) {
                return Err(syntax(n, Some("string")));
            }
            Err(InputError::not_simulated(
                k.loc(),
                format!("table block item '{}'", k.text),
            ))
        }
        Kind::Word if is_keyword(&k.text) => Err(syntax(k, None)),
        _ => Err(InputError::not_simulated(
            k.loc(),
            format!("table block item '{}'", k.text),
        )),
    }
}

fn reject_code_known(kind: &str, code: &str) -> bool {
    let codes: &[&str] = match kind {
        "icmp" => &[
            "net-unreachable",
            "host-unreachable",
            "prot-unreachable",
            "port-unreachable",
            "net-prohibited",
            "host-prohibited",
            "admin-prohibited",
        ],
        "icmpv6" => &[
            "no-route",
            "admin-prohibited",
            "addr-unreachable",
            "port-unreachable",
            "policy-fail",
            "reject-route",
        ],
        "icmpx" => &[
            "host-unreachable",
            "no-route",
            "port-unreachable",
            "admin-prohibited",
        ],
        _ => &[],
    };
    codes.contains(&code)
}
