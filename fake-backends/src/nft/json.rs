//! `nft -j list ...`: the JSON nft 1.0.6 prints for the objects the
//! simulator models (tables, chains, sets/maps with their elements, rules).
//!
//! Rules are kept as the text nft lists, so each statement's canonical text
//! is read back into nft's JSON expression form here. A statement (or set
//! type) this module does not know makes the whole command fail with
//! "command not simulated" rather than print something nft would not.

use super::model::{element_cmp, Chain, Family, Rule, Set, Table};

/// A JSON value printed the way nft (jansson) does: `{"k": v, "k2": v2}`,
/// `[a, b]`, keys in insertion order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Num(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

fn obj(pairs: Vec<(&str, Json)>) -> Json {
    Json::Obj(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn string(v: &str) -> Json {
    Json::Str(v.to_string())
}

impl Json {
    pub(crate) fn render(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(v) => {
                out.push('"');
                for c in v.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.render(out);
                }
                out.push(']');
            }
            Json::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    Json::Str(k.clone()).render(out);
                    out.push_str(": ");
                    v.render(out);
                }
                out.push('}');
            }
        }
    }
}

/// Why an object has no JSON form here.
pub(crate) type Unsupported = String;

fn metainfo() -> Json {
    obj(vec![(
        "metainfo",
        obj(vec![
            ("version", string("1.0.6")),
            ("release_name", string("Lester Gooch #5")),
            ("json_schema_version", Json::Num(1)),
        ]),
    )])
}

/// `{"nftables": [metainfo, objects...]}` plus newline.
pub(crate) fn document(objects: Vec<Json>) -> String {
    let mut all = vec![metainfo()];
    all.extend(objects);
    let mut out = String::new();
    obj(vec![("nftables", Json::Arr(all))]).render(&mut out);
    out.push('\n');
    out
}

pub(crate) fn table_obj(t: &Table) -> Result<Json, Unsupported> {
    if t.dormant {
        return Err("JSON of a dormant table".into());
    }
    Ok(obj(vec![(
        "table",
        obj(vec![
            ("family", string(t.family.as_str())),
            ("name", string(&t.name)),
            ("handle", Json::Num(t.handle as i64)),
        ]),
    )]))
}

pub(crate) fn chain_obj(t: &Table, c: &Chain) -> Json {
    let mut fields = vec![
        ("family", string(t.family.as_str())),
        ("table", string(&t.name)),
        ("name", string(&c.name)),
        ("handle", Json::Num(c.handle as i64)),
    ];
    if let Some(b) = &c.base {
        fields.push(("type", string(&b.chain_type)));
        fields.push(("hook", string(&b.hook)));
        fields.push(("prio", Json::Num(i64::from(b.priority))));
        fields.push((
            "policy",
            string(if b.policy_accept { "accept" } else { "drop" }),
        ));
    }
    obj(vec![("chain", obj(fields))])
}

pub(crate) fn set_obj(t: &Table, set: &Set) -> Result<Json, Unsupported> {
    let mut fields = vec![
        ("family", string(t.family.as_str())),
        ("name", string(&set.name)),
        ("table", string(&t.name)),
        ("type", string(&set.key_type)),
        ("handle", Json::Num(set.handle as i64)),
    ];
    if set.key_type.contains(' ') {
        return Err(format!("JSON of set type '{}'", set.key_type));
    }
    if let Some(c) = &set.comment {
        fields.push(("comment", string(c)));
    }
    if set.is_map {
        let data = set.data_type.clone().unwrap_or_default();
        fields.push(("map", string(&data)));
    }
    if !set.flags.is_empty() {
        fields.push((
            "flags",
            Json::Arr(set.flags.iter().map(|f| string(f)).collect()),
        ));
    }
    if !set.elements.is_empty() {
        let mut elems: Vec<_> = set.elements.iter().collect();
        elems.sort_by(|a, b| element_cmp(&set.key_type, &a.key, &b.key));
        let mut out = Vec::new();
        for e in elems {
            let key = value(&set.key_type, &e.key)?;
            match (&e.value, set.is_map) {
                (Some(v), true) => {
                    let data_type = set.data_type.as_deref().unwrap_or("");
                    let v = if data_type == "verdict" {
                        verdict(v).ok_or_else(|| format!("JSON of verdict '{v}'"))?
                    } else {
                        value(data_type, v)?
                    };
                    out.push(Json::Arr(vec![key, v]));
                }
                _ => out.push(key),
            }
        }
        fields.push(("elem", Json::Arr(out)));
    }
    let kind = if set.is_map { "map" } else { "set" };
    Ok(obj(vec![(kind, obj(fields))]))
}

pub(crate) fn rule_obj(t: &Table, c: &Chain, r: &Rule) -> Result<Json, Unsupported> {
    let mut fields = vec![
        ("family", string(t.family.as_str())),
        ("table", string(&t.name)),
        ("chain", string(&c.name)),
        ("handle", Json::Num(r.handle as i64)),
    ];
    if let Some(cm) = &r.comment {
        fields.push(("comment", string(cm)));
    }
    let mut exprs = Vec::new();
    for st in &r.stmts {
        // `meta l4proto tcp reject with tcp reset` is kept as one statement.
        match st.text.strip_prefix("meta l4proto tcp ") {
            Some(rest) if rest.starts_with("reject") => {
                exprs.push(stmt("meta l4proto tcp", t.family)?);
                exprs.push(stmt(rest, t.family)?);
            }
            _ => exprs.push(stmt(&st.text, t.family)?),
        }
    }
    fields.push(("expr", Json::Arr(exprs)));
    Ok(obj(vec![("rule", obj(fields))]))
}

/// A verdict as listed (`accept`, `jump X`, ...).
fn verdict(text: &str) -> Option<Json> {
    let mut w = text.split(' ');
    match (w.next()?, w.next(), w.next()) {
        (v @ ("accept" | "drop" | "continue" | "return"), None, None) => {
            Some(obj(vec![(v, Json::Null)]))
        }
        (v @ ("jump" | "goto"), Some(target), None) => {
            Some(obj(vec![(v, obj(vec![("target", string(target))]))]))
        }
        _ => None,
    }
}

/// A number if the text is one, else a string.
fn num_or_str(v: &str) -> Json {
    if let Some(hex) = v.strip_prefix("0x") {
        if let Ok(n) = i64::from_str_radix(hex, 16) {
            return Json::Num(n);
        }
    }
    match v.parse::<i64>() {
        Ok(n) => Json::Num(n),
        Err(_) => string(v),
    }
}

/// One value of a type (set element key/data or match right-hand side):
/// address, prefix, range, number, quoted name.
fn value(key_type: &str, v: &str) -> Result<Json, Unsupported> {
    if let Some(q) = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        return Ok(string(q));
    }
    if let Some((addr, len)) = v.split_once('/') {
        let len: i64 = len.parse().map_err(|_| format!("JSON of value '{v}'"))?;
        return Ok(obj(vec![(
            "prefix",
            obj(vec![("addr", string(addr)), ("len", Json::Num(len))]),
        )]));
    }
    if let Some((a, b)) = v.split_once('-') {
        let nums = a.parse::<i64>().is_ok() && b.parse::<i64>().is_ok();
        let addrs = a.parse::<std::net::IpAddr>().is_ok() && b.parse::<std::net::IpAddr>().is_ok();
        if nums || addrs {
            return Ok(obj(vec![(
                "range",
                Json::Arr(vec![num_or_str(a), num_or_str(b)]),
            )]));
        }
    }
    let _ = key_type;
    Ok(num_or_str(v))
}

/// Split a statement's text into words, keeping `"..."` and `{ ... }`
/// together.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '{' if !quoted => {
                depth += 1;
                cur.push(c);
            }
            '}' if !quoted => {
                depth -= 1;
                cur.push(c);
            }
            ' ' if !quoted && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Elements of `{ a, b : c, ... }` as text.
fn set_items(v: &str) -> Vec<String> {
    let inner = v.trim_start_matches('{').trim_end_matches('}').trim();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in inner.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The type of the values a match's left side compares with.
fn left_type(left: &Json) -> &'static str {
    let text = {
        let mut o = String::new();
        left.render(&mut o);
        o
    };
    if text.contains("\"dport\"") || text.contains("\"sport\"") {
        "inet_service"
    } else {
        "other"
    }
}

/// The right-hand side of a match: value, anonymous set, `@set`.
fn rhs(key_type: &str, v: &str) -> Result<Json, Unsupported> {
    if v.starts_with('{') {
        let items: Result<Vec<Json>, _> = set_items(v).iter().map(|i| value(key_type, i)).collect();
        return Ok(obj(vec![("set", Json::Arr(items?))]));
    }
    if v.starts_with('@') {
        return Ok(string(v));
    }
    value(key_type, v)
}

fn payload(proto: &str, field: &str) -> Json {
    obj(vec![(
        "payload",
        obj(vec![("protocol", string(proto)), ("field", string(field))]),
    )])
}

fn meta(key: &str) -> Json {
    obj(vec![("meta", obj(vec![("key", string(key))]))])
}

fn matched(op: &str, left: Json, right: Json) -> Json {
    obj(vec![(
        "match",
        obj(vec![("op", string(op)), ("left", left), ("right", right)]),
    )])
}

/// A NAT statement's trailing flags (`random`, `fully-random`,
/// `persistent`): the words before them, and the flags as nft's JSON (one
/// string, or a list of them).
fn split_nat_flags(w: &[String]) -> (&[String], Option<Json>) {
    let is_flags = |x: &String| {
        x.split(',')
            .all(|f| matches!(f, "random" | "fully-random" | "persistent"))
    };
    match w.split_last() {
        Some((last, rest)) if is_flags(last) => {
            let names: Vec<Json> = last.split(',').map(string).collect();
            let flags = if names.len() == 1 {
                names.into_iter().next().unwrap_or(Json::Null)
            } else {
                Json::Arr(names)
            };
            (rest, Some(flags))
        }
        _ => (w, None),
    }
}

/// One statement's canonical text to nft's JSON.
pub(crate) fn stmt(text: &str, family: Family) -> Result<Json, Unsupported> {
    let unsupported = || format!("JSON of '{text}'");
    let w = words(text);
    let first = w.first().map(String::as_str).unwrap_or("");
    if let Some(v) = verdict(text) {
        return Ok(v);
    }
    // Mark assignments: `meta mark set V`, `ct mark set V|meta mark`.
    if let (Some(key @ ("meta" | "ct")), Some("mark"), Some("set")) = (
        w.first().map(String::as_str),
        w.get(1).map(String::as_str),
        w.get(2).map(String::as_str),
    ) {
        let target = obj(vec![(key, obj(vec![("key", string("mark"))]))]);
        let value = match &w[3..] {
            [m, k] if m == "meta" && k == "mark" => meta("mark"),
            [v] => num_or_str(v),
            _ => return Err(unsupported()),
        };
        return Ok(obj(vec![(
            "mangle",
            obj(vec![("key", target), ("value", value)]),
        )]));
    }
    // Matches: LEFT [!=] RIGHT, or LEFT vmap RIGHT.
    let (left, rest): (Option<Json>, &[String]) = match (first, w.get(1).map(String::as_str)) {
        ("iif" | "oif" | "iifname" | "oifname", _) => (Some(meta(first)), &w[1..]),
        ("ct", Some("mark")) => (
            Some(obj(vec![("ct", obj(vec![("key", string("mark"))]))])),
            &w[2..],
        ),
        (
            "meta",
            Some(k @ ("l4proto" | "nfproto" | "iif" | "oif" | "iifname" | "oifname" | "mark")),
        ) => (Some(meta(k)), &w[2..]),
        ("ip", Some(f @ ("saddr" | "daddr" | "protocol")))
        | ("ip6", Some(f @ ("saddr" | "daddr" | "nexthdr")))
        | ("tcp", Some(f @ ("sport" | "dport" | "flags")))
        | ("udp", Some(f @ ("sport" | "dport")))
        | ("icmp" | "icmpv6", Some(f @ "type")) => (Some(payload(first, f)), &w[2..]),
        ("ct", Some("state")) => (
            Some(obj(vec![("ct", obj(vec![("key", string("state"))]))])),
            &w[2..],
        ),
        _ => (None, &w[..]),
    };
    if let Some(left) = left {
        let ty = left_type(&left);
        let is_ct = first == "ct" && w.get(1).map(String::as_str) == Some("state");
        let is_flags = first == "tcp" && w.get(1).map(String::as_str) == Some("flags");
        return match rest {
            [vm, data] if vm == "vmap" => {
                let data = if data.starts_with('@') {
                    string(data)
                } else {
                    let mut pairs = Vec::new();
                    for item in set_items(data) {
                        let (k, v) = item.split_once(" : ").ok_or_else(unsupported)?;
                        let k = if is_ct { string(k) } else { value(ty, k)? };
                        pairs.push(Json::Arr(vec![k, verdict(v).ok_or_else(unsupported)?]));
                    }
                    obj(vec![("set", Json::Arr(pairs))])
                };
                Ok(obj(vec![(
                    "vmap",
                    obj(vec![("key", left), ("data", data)]),
                )]))
            }
            [ne, v] if ne == "!=" => {
                if (is_ct || is_flags) && v.contains(',') {
                    return Err(unsupported());
                }
                Ok(matched("!=", left, rhs(ty, v)?))
            }
            [v] if (is_ct || is_flags) && !v.starts_with('{') => {
                let names: Vec<&str> = v.split(',').collect();
                let right = if names.len() == 1 {
                    string(names[0])
                } else {
                    Json::Arr(names.into_iter().map(string).collect())
                };
                Ok(matched("in", left, right))
            }
            [v] if is_flags => Err(unsupported()),
            [v] => Ok(matched("==", left, rhs(ty, v)?)),
            _ => Err(unsupported()),
        };
    }
    match first {
        "counter" => match &w[1..] {
            [p, pv, b, bv] if p == "packets" && b == "bytes" => {
                let n = |x: &str| x.parse::<i64>().map(Json::Num).map_err(|_| unsupported());
                Ok(obj(vec![(
                    "counter",
                    obj(vec![("packets", n(pv)?), ("bytes", n(bv)?)]),
                )]))
            }
            _ => Err(unsupported()),
        },
        "reject" => {
            let default_type = match family {
                Family::Ip => "icmp",
                Family::Ip6 => "icmpv6",
                _ => "icmpx",
            };
            match &w[1..] {
                [] => Ok(obj(vec![(
                    "reject",
                    obj(vec![
                        ("type", string(default_type)),
                        ("expr", string("port-unreachable")),
                    ]),
                )])),
                [with, tcp, reset] if with == "with" && tcp == "tcp" && reset == "reset" => Ok(
                    obj(vec![("reject", obj(vec![("type", string("tcp reset"))]))]),
                ),
                [with, kind, code] if with == "with" => Ok(obj(vec![(
                    "reject",
                    obj(vec![("type", string(kind)), ("expr", string(code))]),
                )])),
                _ => Err(unsupported()),
            }
        }
        "masquerade" | "redirect" => {
            // [to :PORTS] [FLAGS]
            let (rest, flags) = split_nat_flags(&w[1..]);
            let mut fields = Vec::new();
            match rest {
                [] => {}
                [to, ports] if to == "to" => {
                    let p = ports.strip_prefix(':').ok_or_else(unsupported)?;
                    fields.push(("port", value("inet_service", p)?));
                }
                _ => return Err(unsupported()),
            }
            if let Some(f) = flags {
                fields.push(("flags", f));
            }
            Ok(obj(vec![(
                first,
                if fields.is_empty() {
                    Json::Null
                } else {
                    obj(fields)
                },
            )]))
        }
        "snat" | "dnat" => {
            let (rest, flags) = split_nat_flags(&w[1..]);
            let (fam, target) = match rest {
                [to, t] if to == "to" => (None, t),
                [f, to, t] if to == "to" && (f == "ip" || f == "ip6") => (Some(f.as_str()), t),
                _ => return Err(unsupported()),
            };
            let mut fields = Vec::new();
            if let Some(f) = fam {
                fields.push(("family", string(f)));
            }
            // ADDR, ADDR:PORT, [V6]:PORT, ADDR-ADDR, ...:P1-P2
            let (addr, port) = if let Some(rest) = target.strip_prefix('[') {
                let (a, p) = rest.split_once("]:").ok_or_else(unsupported)?;
                (a.to_string(), Some(p.to_string()))
            } else if fam != Some("ip6") && target.matches(':').count() == 1 {
                let (a, p) = target.split_once(':').ok_or_else(unsupported)?;
                (a.to_string(), Some(p.to_string()))
            } else {
                (target.to_string(), None)
            };
            fields.push(("addr", value("ipv4_addr", &addr)?));
            if let Some(p) = port {
                fields.push(("port", value("inet_service", &p)?));
            }
            if let Some(f) = flags {
                fields.push(("flags", f));
            }
            Ok(obj(vec![(first, obj(fields))]))
        }
        "log" => {
            let mut fields = Vec::new();
            let mut i = 1;
            while i + 1 < w.len() {
                let v = &w[i + 1];
                match w[i].as_str() {
                    "prefix" => fields.push((
                        "prefix",
                        string(v.trim_start_matches('"').trim_end_matches('"')),
                    )),
                    "level" => fields.push(("level", string(v))),
                    "group" => {
                        fields.push(("group", Json::Num(v.parse().map_err(|_| unsupported())?)))
                    }
                    _ => return Err(unsupported()),
                }
                i += 2;
            }
            if i != w.len() {
                return Err(unsupported());
            }
            Ok(obj(vec![(
                "log",
                if fields.is_empty() {
                    Json::Null
                } else {
                    obj(fields)
                },
            )]))
        }
        "limit" => {
            // limit rate [over] N/UNIT [burst B packets]
            let mut i = 2;
            let over = w.get(2).map(String::as_str) == Some("over");
            if over {
                i += 1;
            }
            let rate = w.get(i).ok_or_else(unsupported)?;
            let (n, per) = rate.split_once('/').ok_or_else(unsupported)?;
            let n: i64 = n.parse().map_err(|_| unsupported())?;
            let burst: i64 = match (w.get(i + 1).map(String::as_str), w.get(i + 2)) {
                (Some("burst"), Some(b)) => b.parse().map_err(|_| unsupported())?,
                (None, _) => 5,
                _ => return Err(unsupported()),
            };
            let mut fields = vec![
                ("rate", Json::Num(n)),
                ("burst", Json::Num(burst)),
                ("per", string(per)),
            ];
            if over {
                fields.push(("inv", Json::Bool(true)));
            }
            Ok(obj(vec![("limit", obj(fields))]))
        }
        _ => Err(unsupported()),
    }
}
