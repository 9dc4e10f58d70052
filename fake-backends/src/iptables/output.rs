//! What the simulated `iptables` prints: `-S`/`iptables-save` rule text,
//! `-L` listings (with `-n`, `-v`, `--line-numbers`) and the save form with
//! counters.

use super::*;

/// Quote a value the way iptables-save does: double quotes when it contains
/// whitespace or quotes, with `"` and `\` escaped.
pub(super) fn save_quote(v: &str) -> String {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'')
    {
        let mut s = String::from("\"");
        for c in v.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    } else {
        v.to_string()
    }
}

impl Spec {
    /// Canonical text, as after `-A CHAIN ` in `iptables -S`.
    pub(super) fn render(&self, fam: Family) -> String {
        let mut out: Vec<String> = Vec::new();
        let push = |neg: bool, opt: &str, val: &str, out: &mut Vec<String>| {
            if neg {
                out.push("!".into());
            }
            out.push(opt.into());
            out.push(val.into());
        };
        if let Some((n, v)) = &self.src {
            push(*n, "-s", v, &mut out);
        }
        if let Some((n, v)) = &self.dst {
            push(*n, "-d", v, &mut out);
        }
        if let Some((n, v)) = &self.iif {
            push(*n, "-i", v, &mut out);
        }
        if let Some((n, v)) = &self.oif {
            push(*n, "-o", v, &mut out);
        }
        if let Some((n, v)) = &self.proto {
            push(*n, "-p", v, &mut out);
        }
        if let Some(n) = self.frag {
            if n {
                out.push("!".into());
            }
            out.push("-f".into());
        }
        for m in &self.matches {
            out.push("-m".into());
            out.push(m.name.clone());
            let defs = match_opts(&m.name).unwrap_or(NO_OPTS);
            render_ext_opts(m, defs, &mut out);
        }
        if let Some(t) = &self.target {
            out.push(if self.goto { "-g" } else { "-j" }.into());
            out.push(t.name.clone());
            let defs = target_opts(&t.name).unwrap_or(NO_OPTS);
            let mut t = t.clone();
            if t.name == "REJECT" && !t.opts.iter().any(|o| o.0 == "--reject-with") {
                let def = match fam {
                    Family::V4 => "icmp-port-unreachable",
                    Family::V6 => "icmp6-port-unreachable",
                };
                t.opts
                    .push(("--reject-with".into(), false, Some(def.into())));
            }
            render_ext_opts(&t, defs, &mut out);
        }
        out.join(" ")
    }
}

pub(super) fn render_ext_opts(e: &Ext, defs: &[OptDef], out: &mut Vec<String>) {
    for d in defs {
        for (name, neg, val) in &e.opts {
            if name != d.name {
                continue;
            }
            if *neg {
                out.push("!".into());
            }
            out.push(name.clone());
            match val {
                // Two words: the mask and the flags that must be set.
                Some(v) if name == "--tcp-flags" => out.push(v.clone()),
                Some(v) => out.push(save_quote(v)),
                None => {}
            }
        }
    }
}

impl XtablesState {
    pub(super) fn list_rules(&self, p: &Parsed, builtins: &[&str]) -> Result<Output, Fail> {
        let table = self.tables.get(&p.table);
        incompatible_check(table, &p.table, p.chain.as_deref())?;
        // The note comes with whole-table listings only.
        let mut out = match p.chain {
            None => foreign_base_note(table, &p.table),
            Some(_) => String::new(),
        };
        let counters = if p.verbose { " -c 0 0" } else { "" };
        let order = chain_order(table, builtins);
        let selected: Vec<&str> = match &p.chain {
            Some(c) => {
                if !order.iter().any(|x| x == c) {
                    return Err(Fail::Versioned(format!(
                        "chain `{c}' in table `{}' is incompatible, use 'nft' tool.",
                        p.table
                    )));
                }
                vec![c.as_str()]
            }
            None => order.iter().map(String::as_str).collect(),
        };
        let rulenum: Option<usize> = p.arg2.as_ref().and_then(|n| n.parse().ok());
        if rulenum.is_none() {
            for c in &selected {
                if builtins.contains(c) {
                    let pol = table
                        .and_then(|t| t.chains.get(*c))
                        .and_then(|ch| ch.policy.clone())
                        .unwrap_or_else(|| "ACCEPT".into());
                    out.push_str(&format!("-P {c} {pol}{counters}\n"));
                } else {
                    out.push_str(&format!("-N {c}\n"));
                }
            }
        }
        if let Some(t) = table {
            for c in &selected {
                if let Some(ch) = t.chains.get(*c) {
                    for (i, r) in ch.rules.iter().enumerate() {
                        if rulenum.is_some_and(|n| n != i + 1) {
                            continue;
                        }
                        out.push_str(&format!("-A {c}"));
                        out.push_str(&with_counters(&r.spec, counters));
                        out.push('\n');
                    }
                }
            }
        }
        Ok(Output::ok(out))
    }

    pub(super) fn list(&self, p: &Parsed, builtins: &[&str]) -> Result<Output, Fail> {
        let table = self.tables.get(&p.table);
        incompatible_check(table, &p.table, p.chain.as_deref())?;
        let order = chain_order(table, builtins);
        let selected: Vec<&str> = match &p.chain {
            Some(c) => {
                if !order.iter().any(|x| x == c) {
                    return Err(Fail::Versioned(format!(
                        "chain `{c}' in table `{}' is incompatible, use 'nft' tool.",
                        p.table
                    )));
                }
                vec![c.as_str()]
            }
            None => order.iter().map(String::as_str).collect(),
        };
        let mut blocks = Vec::new();
        for c in selected {
            let mut s = String::new();
            let ch = table.and_then(|t| t.chains.get(c));
            if builtins.contains(&c) {
                let pol = ch
                    .and_then(|x| x.policy.clone())
                    .unwrap_or_else(|| "ACCEPT".into());
                if p.verbose {
                    s.push_str(&format!("Chain {c} (policy {pol} 0 packets, 0 bytes)\n"));
                } else {
                    s.push_str(&format!("Chain {c} (policy {pol})\n"));
                }
            } else {
                let refs = table.map(|t| refcount(t, c)).unwrap_or(0);
                s.push_str(&format!("Chain {c} ({refs} references)\n"));
            }
            if p.line_numbers {
                s.push_str("num  ");
            }
            if p.verbose && p.exact {
                s.push_str("    pkts      bytes ");
            } else if p.verbose {
                s.push_str(" pkts bytes ");
            }
            s.push_str("target     prot opt ");
            if p.verbose {
                s.push_str("in     out     ");
            }
            s.push_str("source               destination         \n");
            if let Some(ch) = ch {
                for (i, r) in ch.rules.iter().enumerate() {
                    s.push_str(&list_line(&r.spec, i + 1, p, self.family));
                }
            }
            blocks.push(s);
        }
        let note = match p.chain {
            None => foreign_base_note(table, &p.table),
            Some(_) => String::new(),
        };
        Ok(Output::ok(format!("{note}{}", blocks.join("\n"))))
    }

    /// `iptables-save` text for this family. With `stamp`, the
    /// "# Generated by"/"# Completed on" comments are added with that text
    /// as the date.
    pub fn save(&self, stamp: Option<&str>) -> String {
        let prog = self.family.prog();
        let mut out = String::new();
        for (name, builtins) in TABLES {
            let Some(t) = self.tables.get(*name) else {
                continue;
            };
            if incompatible_check(Some(t), name, None).is_err() {
                out.push_str(&format!(
                    "# Table `{name}' is incompatible, use 'nft' tool.\n"
                ));
                continue;
            }
            out.push_str(&foreign_base_note(Some(t), name));
            if let Some(d) = stamp {
                out.push_str(&format!("# Generated by {prog}-save {VERSION} on {d}\n"));
            }
            out.push_str(&format!("*{name}\n"));
            let order = chain_order(Some(t), builtins);
            for c in &order {
                let pol = t
                    .chains
                    .get(c)
                    .and_then(|ch| ch.policy.clone())
                    .unwrap_or_else(|| "-".into());
                out.push_str(&format!(":{c} {pol} [0:0]\n"));
            }
            for c in &order {
                if let Some(ch) = t.chains.get(c) {
                    for r in &ch.rules {
                        out.push_str(&format!("-A {c}"));
                        if !r.spec.is_empty() {
                            out.push(' ');
                            out.push_str(&r.spec);
                        }
                        out.push('\n');
                    }
                }
            }
            out.push_str("COMMIT\n");
            if let Some(d) = stamp {
                out.push_str(&format!("# Completed on {d}\n"));
            }
        }
        out
    }
}

/// ` SPEC` with the `-c 0 0` of `-S -v` placed before the target, as
/// iptables prints it.
pub(super) fn with_counters(spec: &str, counters: &str) -> String {
    let full = format!(" {spec}");
    if counters.is_empty() {
        return if spec.is_empty() { String::new() } else { full };
    }
    let pos = [" -j ", " -g "].iter().filter_map(|t| full.find(t)).min();
    match pos {
        Some(i) => format!("{}{counters}{}", &full[..i], &full[i..]),
        None => format!("{}{counters}", full.trim_end()),
    }
}

/// Split a canonical spec back into tokens (honouring save_quote quoting).
pub(crate) fn spec_tokens(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut have = false;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_q = !in_q;
                have = true;
            }
            '\\' if in_q => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ' ' if !in_q => {
                if have || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                have = false;
            }
            _ => cur.push(c),
        }
    }
    if have || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The bits of a canonical `--tcp-flags` list.
pub(super) fn flag_bits(list: &str) -> u32 {
    list.split(',')
        .filter_map(|f| TCP_FLAGS.iter().position(|x| *x == f))
        .map(|i| 1u32 << i)
        .sum()
}

/// `-L` text of an icmp / icmp6 match: the type's name, or with `-n`
/// (or without a name) the numbers.
pub(super) fn icmp_list_text(ext: &str, v: &str, neg: bool, numeric: bool) -> String {
    let (names, kw, numkw) = if ext == "icmp" {
        (ICMP4_NAMES, "icmp", "icmptype")
    } else {
        (ICMP6_NAMES, "ipv6-icmp", "ipv6-icmptype")
    };
    let bang = if neg { "!" } else { "" };
    if !numeric {
        if v == "any" {
            return format!("{kw} {bang}any");
        }
        if let Some((name, _)) = names.iter().find(|(_, n)| *n == v) {
            return format!("{kw} {bang}{name}");
        }
    }
    let v = if v == "any" { "255" } else { v };
    let (t, code) = match v.split_once('/') {
        Some((t, c)) => (t, format!(" code {c}")),
        None => (v, String::new()),
    };
    if neg {
        format!("{kw} !type {t}{code}")
    } else {
        format!("{numkw} {t}{code}")
    }
}

/// One line of `iptables -L` output for a canonical rule.
pub(super) fn list_line(spec: &str, num: usize, p: &Parsed, fam: Family) -> String {
    let toks = spec_tokens(spec);
    let any = match fam {
        Family::V4 => "0.0.0.0/0",
        Family::V6 => "::/0",
    };
    let mut src = if p.numeric {
        any.to_string()
    } else {
        "anywhere".to_string()
    };
    let mut dst = src.clone();
    let mut prot = if p.numeric {
        "0".to_string()
    } else {
        "all".to_string()
    };
    let mut iif = "*".to_string();
    let mut oif = "*".to_string();
    let mut target = String::new();
    let mut goto = false;
    let mut extra: Vec<String> = Vec::new();
    let mut i = 0;
    let mut neg = false;
    let mut cur_ext: Option<String> = None;
    let mut in_target = false;
    let addr = |a: &str, neg: bool| -> String {
        let a = a
            .strip_suffix(if fam == Family::V4 { "/32" } else { "/128" })
            .unwrap_or(a)
            .to_string();
        if neg {
            format!("!{a}")
        } else {
            a
        }
    };
    let port = |v: &str| -> String {
        if p.numeric || v.contains(':') {
            return v.to_string();
        }
        v.split(':')
            .map(|x| {
                x.parse::<u16>()
                    .ok()
                    .and_then(service_name)
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(":")
    };
    while i < toks.len() {
        let t = toks[i].as_str();
        let v = toks.get(i + 1).cloned().unwrap_or_default();
        match t {
            "!" => {
                neg = true;
                i += 1;
                continue;
            }
            "-s" if cur_ext.is_none() && !in_target => src = addr(&v, neg),
            "-d" if cur_ext.is_none() && !in_target => dst = addr(&v, neg),
            "-i" if cur_ext.is_none() && !in_target => {
                iif = if neg { format!("!{v}") } else { v.clone() }
            }
            "-o" if cur_ext.is_none() && !in_target => {
                oif = if neg { format!("!{v}") } else { v.clone() }
            }
            "-p" if cur_ext.is_none() && !in_target => {
                let name = if p.numeric {
                    proto_number(&v).to_string()
                } else {
                    v.clone()
                };
                prot = if neg { format!("!{name}") } else { name };
            }
            "-m" => {
                cur_ext = Some(v.clone());
                if v == "tcp" || v == "udp" {
                    extra.push(v.clone());
                }
            }
            "-j" | "-g" => {
                target = v.clone();
                goto = t == "-g";
                in_target = true;
                cur_ext = None;
            }
            _ => {
                let bang = if neg { "!" } else { "" };
                let ext = cur_ext.clone().unwrap_or_default();
                let text = match (ext.as_str(), t) {
                    ("tcp" | "udp", "--dport") => {
                        let k = if v.contains(':') { "dpts" } else { "dpt" };
                        format!("{k}:{bang}{}", port(&v))
                    }
                    ("tcp" | "udp", "--sport") => {
                        let k = if v.contains(':') { "spts" } else { "spt" };
                        format!("{k}:{bang}{}", port(&v))
                    }
                    ("conntrack", "--ctstate") => format!("{bang}ctstate {v}"),
                    ("state", "--state") => format!("{bang}state {v}"),
                    ("comment", "--comment") => format!("/* {v} */"),
                    ("tcp", "--tcp-flags") => {
                        let comp = toks.get(i + 2).cloned().unwrap_or_default();
                        if p.numeric {
                            format!(
                                "flags:{bang}{:#04X}/{:#04X}",
                                flag_bits(&v),
                                flag_bits(&comp)
                            )
                            .replace("0X", "0x")
                        } else {
                            format!("flags:{bang}{v}/{comp}")
                        }
                    }
                    ("icmp", "--icmp-type") | ("icmp6", "--icmpv6-type") => {
                        icmp_list_text(&ext, &v, neg, p.numeric)
                    }
                    ("mark", "--mark") => {
                        format!("mark match {}{v}", if neg { "! " } else { "" })
                    }
                    ("addrtype", "--dst-type") => format!("ADDRTYPE match dst-type {bang}{v}"),
                    ("addrtype", "--src-type") => format!("ADDRTYPE match src-type {bang}{v}"),
                    ("multiport", "--dports") => format!(
                        "multiport dports {bang}{}",
                        v.split(',').map(&port).collect::<Vec<_>>().join(",")
                    ),
                    ("multiport", "--sports") => format!(
                        "multiport sports {bang}{}",
                        v.split(',').map(&port).collect::<Vec<_>>().join(",")
                    ),
                    _ if in_target => match (target.as_str(), t) {
                        ("REJECT", "--reject-with") => format!("reject-with {v}"),
                        ("MASQUERADE", "--to-ports") => format!("masq ports: {v}"),
                        ("SNAT", "--to-source") => format!("to:{v}"),
                        ("DNAT", "--to-destination") => format!("to:{v}"),
                        ("CHECKSUM", "--checksum-fill") => "CHECKSUM fill".to_string(),
                        ("MARK", "--set-xmark") => {
                            let num = |x: &str| {
                                u32::from_str_radix(x.trim_start_matches("0x"), 16).unwrap_or(0)
                            };
                            let (x, m) = match v.split_once('/') {
                                Some((a, b)) => (num(a), num(b)),
                                None => (num(&v), u32::MAX),
                            };
                            if m == u32::MAX {
                                format!("MARK set {x:#x}")
                            } else if m == 0 {
                                format!("MARK xor {x:#x}")
                            } else if x == 0 {
                                format!("MARK and {:#x}", !m)
                            } else if x == m {
                                format!("MARK or {x:#x}")
                            } else {
                                format!("MARK xset {x:#x}/{m:#x}")
                            }
                        }
                        ("LOG", "--log-prefix") => {
                            if p.numeric {
                                format!("LOG flags 0 level 4 prefix \"{v}\"")
                            } else {
                                format!("LOG level warn prefix \"{v}\"")
                            }
                        }
                        _ => format!("{t} {v}"),
                    },
                    _ => format!("{t} {v}"),
                };
                // Merge "tcp" marker with its first port option.
                if (ext == "tcp" || ext == "udp")
                    && extra.last().map(String::as_str) == Some(ext.as_str())
                {
                    extra.pop();
                    extra.push(format!("{ext} {text}"));
                } else if (ext == "tcp" || ext == "udp")
                    && extra.last().is_some_and(|l| l.starts_with(&ext))
                {
                    if let Some(l) = extra.last_mut() {
                        l.push(' ');
                        l.push_str(&text);
                    }
                } else {
                    extra.push(text);
                }
                neg = false;
                let flag_only = matches!(
                    t,
                    "--checksum-fill" | "--random" | "--random-fully" | "--syn"
                );
                i += if flag_only {
                    1
                } else if t == "--tcp-flags" {
                    3
                } else {
                    2
                };
                continue;
            }
        }
        neg = false;
        i += 2;
    }
    let mut line = String::new();
    if p.line_numbers {
        line.push_str(&format!("{num:<5}"));
    }
    if p.verbose && p.exact {
        line.push_str(&format!("{:>8} {:>8} ", 0, 0));
    } else if p.verbose {
        line.push_str(&format!("{:>5} {:>5} ", 0, 0));
    }
    let (inv, prot) = match prot.strip_prefix('!') {
        Some(x) => ('!', x.to_string()),
        None => (' ', prot),
    };
    line.push_str(&format!("{target:<9} {inv}{prot:<4} -- "));
    if p.verbose {
        let any_if = |x: String| {
            if x == "*" && !p.numeric {
                "any".to_string()
            } else {
                x
            }
        };
        let (iif, oif) = (any_if(iif), any_if(oif));
        line.push_str(&format!(" {iif:<6} {oif:<6} "));
    }
    let split = |a: &str| -> (char, String) {
        match a.strip_prefix('!') {
            Some(x) => ('!', x.to_string()),
            None => (' ', a.to_string()),
        }
    };
    let (sinv, src) = split(&src);
    let (dinv, dst) = split(&dst);
    line.push_str(&format!("{sinv}{src:<19} {dinv}{dst:<19} "));
    if goto {
        line.push_str("[goto] ");
    }
    for e in extra {
        line.push(' ');
        line.push_str(&e);
    }
    line.push('\n');
    line
}
