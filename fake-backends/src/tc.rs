//! Simulated `tc` for the commands libvirt's nftables backend runs
//! (section 4.3 of the firewall reference): `qdisc show/add/del` of a root
//! `htb` qdisc and `filter add/del/show` of u32 filters with an action.
//!
//! The `action csum` switch: the reference kernel lacks `act_csum`, so there
//! `tc filter add ... action csum ...` fails with "Failed to load TC action
//! module". By default the simulator behaves like a kernel that HAS the
//! module (the command succeeds, which is what libvirt expects on a normal
//! host); [`TcState::csum_fails`] = true reproduces the reference kernel.
//!
//! `tc filter show` prints the kernel's u32 dump (hash table and node
//! handles, packed match keys), checked against the real tool for filters
//! with a flowid; the action lines (`csum`, `gact`) cannot be checked on
//! the reference kernel, which has neither action module.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use virtnet_runner::Output;

/// A root qdisc added with `tc qdisc add dev D root handle H: KIND ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qdisc {
    pub kind: String,
    /// Handle as written, e.g. `1:`.
    pub handle: String,
    /// Remaining arguments (e.g. `default 2`).
    pub params: Vec<String>,
}

/// A filter added with `tc filter add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub parent: String,
    pub prio: u32,
    pub protocol: String,
    /// Classifier and its arguments (`u32 match ip dport 68 ffff action ...`).
    pub spec: Vec<String>,
}

/// Traffic-control state of one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TcState {
    /// Root qdisc per device (absent = the kernel default).
    pub qdiscs: BTreeMap<String, Qdisc>,
    /// Filters per device, in insertion order.
    pub filters: BTreeMap<String, Vec<Filter>>,
    /// When true, `action csum` fails as on a kernel without `act_csum`.
    #[serde(default)]
    pub csum_fails: bool,
    /// Devices with an `ingress` qdisc.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub ingress: std::collections::BTreeSet<String>,
    /// Last automatic qdisc handle handed out (the kernel counts from 8001:).
    #[serde(default)]
    pub auto_handle: u32,
    /// htb classes per device, as the kernel's class hash holds them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, ClassHash>,
}

/// One htb class (`tc class add ... htb rate R ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtbClass {
    /// `MAJ:MIN` as numbers.
    pub id: u32,
    /// Parent class id; None = a child of the qdisc (`root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// Rates in bytes per second.
    pub rate: u64,
    pub ceil: u64,
    /// Bursts in scheduler ticks, as the kernel keeps them.
    pub buffer: u64,
    pub cbuffer: u64,
    pub prio: u32,
}

/// The kernel's class hash of a qdisc: buckets in iteration order, each
/// newest first; it doubles when more than 3/4 full (so `tc class show`
/// lists classes in the kernel's order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClassHash {
    pub buckets: Vec<Vec<HtbClass>>,
}

impl ClassHash {
    fn hash(id: u32, mask: usize) -> usize {
        let mut h = id ^ (id >> 8);
        h ^= h >> 4;
        h as usize & mask
    }
    fn iter(&self) -> impl Iterator<Item = &HtbClass> {
        self.buckets.iter().flatten()
    }
    fn get(&self, id: u32) -> Option<&HtbClass> {
        self.iter().find(|c| c.id == id)
    }
    fn insert(&mut self, c: HtbClass) {
        if self.buckets.is_empty() {
            self.buckets = vec![Vec::new(); 4];
        }
        let mask = self.buckets.len() - 1;
        self.buckets[Self::hash(c.id, mask)].insert(0, c);
        let elems: usize = self.buckets.iter().map(Vec::len).sum();
        if elems * 4 > self.buckets.len() * 3 {
            let size = self.buckets.len() * 2;
            let mut nb: Vec<Vec<HtbClass>> = vec![Vec::new(); size];
            for c in self.buckets.iter().flatten() {
                nb[Self::hash(c.id, size - 1)].insert(0, c.clone());
            }
            self.buckets = nb;
        }
    }
    fn replace(&mut self, c: HtbClass) {
        for b in &mut self.buckets {
            for x in b.iter_mut() {
                if x.id == c.id {
                    *x = c;
                    return;
                }
            }
        }
    }
    fn remove(&mut self, id: u32) {
        for b in &mut self.buckets {
            b.retain(|c| c.id != id);
        }
    }
}

/// `tc` usage text for htb (printed after a bad class argument).
const HTB_USAGE: &str = include_str!("usage/tc-htb.txt");

/// Scheduler ticks per microsecond (from /proc/net/psched of the reference
/// kernel: 1000/64).
const TICK_IN_USEC: f64 = 1000.0 / 64.0;

/// tc's xmittime: ticks to send `size` bytes at `rate` bytes/s.
fn xmittime(rate: u64, size: u64) -> u64 {
    if rate == 0 {
        return 0;
    }
    (1_000_000.0 * (size as f64 / rate as f64) * TICK_IN_USEC) as u64
}

/// tc's xmitsize: bytes sent in `ticks` at `rate` bytes/s.
fn xmitsize(rate: u64, ticks: u64) -> u64 {
    ((rate as f64) * (ticks as f64 / TICK_IN_USEC) / 1_000_000.0) as u64
}

/// A rate as tc parses it: bits by default; bit/kbit/mbit/gbit/tbit
/// (1000-based), kibit/mibit/gibit (1024-based), bps/kbps/mbps/gbps
/// (bytes). Returns bytes per second.
fn parse_rate(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let bits = match unit.to_ascii_lowercase().as_str() {
        "" | "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "kibit" => 1024.0,
        "mibit" => 1024.0 * 1024.0,
        "gibit" => 1024.0 * 1024.0 * 1024.0,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return None,
    };
    Some((n * bits / 8.0) as u64)
}

/// A size as tc parses it: bytes by default; k/kb, m/mb, g/gb (1024-based),
/// kbit/mbit/gbit (bits).
fn parse_size(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let f = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        "kbit" => 1024.0 / 8.0,
        "mbit" => 1024.0 * 1024.0 / 8.0,
        "gbit" => 1024.0 * 1024.0 * 1024.0 / 8.0,
        _ => return None,
    };
    Some((n * f) as u64)
}

/// tc's rate printing: bits, scaled by 1000 while it divides evenly (or
/// the value is at least a million).
fn print_rate(bytes: u64) -> String {
    let mut r = bytes * 8;
    let units = ["", "K", "M", "G", "T"];
    let mut i = 0;
    while i < units.len() - 1 {
        if r < 1000 || (!r.is_multiple_of(1000) && r < 1_000_000) {
            break;
        }
        r /= 1000;
        i += 1;
    }
    format!("{r}{}bit", units[i])
}

/// tc's size printing: Mb/Kb when (nearly) whole, else bytes.
fn print_size(sz: u64) -> String {
    let t = sz as f64;
    let mb = 1024.0 * 1024.0;
    if sz >= 1024 * 1024 && (mb * (t / mb).round() - t).abs() < 1024.0 {
        format!("{}Mb", (t / mb).round())
    } else if sz >= 1024 && (1024.0 * (t / 1024.0).round() - t).abs() < 16.0 {
        format!("{}Kb", (t / 1024.0).round())
    } else {
        format!("{sz}b")
    }
}

/// `MAJ:MIN` (hex) as a class id.
fn parse_classid(s: &str) -> Option<u32> {
    let (a, b) = s.split_once(':')?;
    let maj = if a.is_empty() {
        0
    } else {
        u32::from_str_radix(a, 16).ok()?
    };
    let min = if b.is_empty() {
        0
    } else {
        u32::from_str_radix(b, 16).ok()?
    };
    (maj <= 0xffff && min <= 0xffff).then_some((maj << 16) | min)
}

fn show_classid(id: u32) -> String {
    format!("{:x}:{:x}", id >> 16, id & 0xffff)
}

/// What tc needs to know about a link: its name (in ifindex order) and the
/// default root qdisc it has (None before it was first brought up).
#[derive(Debug, Clone)]
pub struct TcLink {
    pub name: String,
    pub default_qdisc: Option<&'static str>,
}

/// Root qdisc kinds the reference kernel has (others: "Specified qdisc
/// kind is unknown.").
const KINDS: &[&str] = &["htb", "pfifo", "bfifo", "pfifo_fast"];

const STATS: &str =
    " Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n";

fn fail(status: i32, msg: &str) -> Output {
    Output::failed(status, format!("{msg}\n"))
}

fn kernel_err(msg: &str) -> Output {
    Output::failed(
        2,
        format!("Error: {msg}\nWe have an error talking to the kernel\n"),
    )
}

fn norm_handle(h: &str) -> String {
    if h.contains(':') {
        h.to_string()
    } else {
        format!("{h}:")
    }
}

impl TcState {
    /// Forget everything attached to a device that no longer exists.
    pub fn drop_device(&mut self, dev: &str) {
        self.classes.remove(dev);
        self.qdiscs.remove(dev);
        self.ingress.remove(dev);
        self.filters.remove(dev);
    }

    /// Run `tc ARGS...` on a host with these links.
    pub fn exec(&mut self, args: &[String], links: &[TcLink]) -> Output {
        let mut stats = false;
        let mut args = args;
        while let Some(first) = args.first() {
            match first.as_str() {
                "-s" | "-stats" | "-statistics" | "-d" | "-details" => {
                    stats |= first.starts_with("-s");
                    args = &args[1..];
                }
                _ => break,
            }
        }
        let link_up = |d: &str| {
            links
                .iter()
                .find(|l| l.name == d)
                .map(|l| l.default_qdisc.is_some())
        };
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        if a.first() == Some(&"class") {
            let verb = a.get(1).copied().unwrap_or("show");
            let rest = if a.len() > 2 { &a[2..] } else { &[][..] };
            return self.class_cmd(verb, rest, &link_up, stats);
        }
        let (obj, verb) = (
            a.first().copied().unwrap_or(""),
            a.get(1).copied().unwrap_or("show"),
        );
        let rest = if a.len() > 2 { &a[2..] } else { &[][..] };
        let mut dev: Option<&str> = None;
        let mut handle: Option<&str> = None;
        let mut parent: Option<&str> = None;
        let mut prio: Option<u32> = None;
        let mut protocol: Option<&str> = None;
        let mut root = false;
        let mut ingress = false;
        // `tc filter show ... ingress` (the listing then names the parent).
        let mut ingress_sel = false;
        let mut tail: Vec<String> = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            if !tail.is_empty() {
                tail.push(rest[i].to_string());
                i += 1;
                continue;
            }
            match rest[i] {
                "dev" => {
                    dev = rest.get(i + 1).copied();
                    i += 2;
                }
                "handle" => {
                    handle = rest.get(i + 1).copied();
                    i += 2;
                }
                "parent" => {
                    parent = rest.get(i + 1).copied();
                    i += 2;
                }
                "prio" | "pref" | "priority" if obj == "filter" => {
                    prio = rest.get(i + 1).and_then(|p| p.parse().ok());
                    i += 2;
                }
                "protocol" if obj == "filter" => {
                    protocol = rest.get(i + 1).copied();
                    i += 2;
                }
                "root" => {
                    root = true;
                    i += 1;
                }
                "ingress" if obj == "qdisc" && tail.is_empty() => {
                    ingress = true;
                    i += 1;
                }
                // `tc filter ... ingress`: the ingress qdisc's filters.
                "ingress" if obj == "filter" && tail.is_empty() && parent.is_none() => {
                    parent = Some("ffff:");
                    ingress_sel = true;
                    i += 1;
                }
                other => {
                    tail.push(other.to_string());
                    i += 1;
                }
            }
        }
        if let Some(d) = dev {
            if link_up(d).is_none() {
                return fail(1, &format!("Cannot find device \"{d}\""));
            }
        }
        match (obj, verb) {
            ("qdisc", "show" | "list" | "ls") => {
                let mut out = String::new();
                let devs: Vec<&TcLink> = links
                    .iter()
                    .filter(|l| dev.is_none_or(|d| d == l.name))
                    .collect();
                for l in devs {
                    let d = &l.name;
                    let dev_part = if dev.is_some() {
                        String::new()
                    } else {
                        format!("dev {d} ")
                    };
                    let mut lines: Vec<String> = Vec::new();
                    match self.qdiscs.get(d) {
                        Some(q) => {
                            if handle.is_none_or(|h| norm_handle(h) == q.handle) {
                                let p = render_params(q);
                                let sep = if p.is_empty() { " " } else { "" };
                                lines.push(format!(
                                    "qdisc {} {} {dev_part}root refcnt 2 {p}{sep}",
                                    q.kind, q.handle
                                ));
                            }
                        }
                        None => {
                            if let (None, Some(k)) = (handle, l.default_qdisc) {
                                if k == "pfifo_fast" {
                                    lines.push(format!(
                                        "qdisc pfifo_fast 0: {dev_part}root refcnt 2 bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
                                    ));
                                } else {
                                    lines.push(format!("qdisc {k} 0: {dev_part}root refcnt 2 "));
                                }
                            }
                        }
                    }
                    if self.ingress.contains(d) && handle.is_none_or(|h| norm_handle(h) == "ffff:")
                    {
                        lines.push(format!(
                            "qdisc ingress ffff: {dev_part}parent ffff:fff1 ---------------- "
                        ));
                    }
                    for line in lines {
                        out.push_str(&line);
                        out.push('\n');
                        if stats {
                            out.push_str(STATS);
                        }
                    }
                }
                Output::ok(out)
            }
            ("qdisc", "add" | "replace") => {
                let Some(d) = dev else {
                    return fail(1, "Cannot find device \"\"");
                };
                if ingress {
                    if self.ingress.contains(d) {
                        return fail(2, "Error: Exclusivity flag on, cannot modify.");
                    }
                    self.ingress.insert(d.to_string());
                    return Output::default();
                }
                if !root {
                    if parent.is_none() {
                        return fail(2, "Error: Specified qdisc not found.");
                    }
                    return fail(2, "Error: Specified class not found.");
                }
                let Some(kind) = tail.first().cloned() else {
                    return fail(1, "Unknown qdisc \"\", hence option \"\" is unparsable");
                };
                if !KINDS.contains(&kind.as_str()) {
                    return fail(2, "Error: Specified qdisc kind is unknown.");
                }
                let existing = self.qdiscs.get(d).cloned();
                if verb == "add" && handle.is_none() && existing.is_some() {
                    return fail(2, "Error: Exclusivity flag on, cannot modify.");
                }
                if let (Some(h), Some(q)) = (handle, &existing) {
                    if norm_handle(h) == q.handle {
                        if verb == "add" {
                            return fail(2, "Error: Exclusivity flag on, cannot modify.");
                        }
                        if q.kind != kind {
                            return fail(2, "Error: Invalid handle.");
                        }
                        if q.params != tail[1..] {
                            return fail(
                                2,
                                "Error: Change operation not supported by specified qdisc.",
                            );
                        }
                        return Output::default();
                    }
                }
                let handle = match handle {
                    Some(h) => norm_handle(h),
                    None => {
                        self.auto_handle = self.auto_handle.max(0x8000) + 1;
                        format!("{:x}:", self.auto_handle)
                    }
                };
                self.qdiscs.insert(
                    d.to_string(),
                    Qdisc {
                        kind,
                        handle,
                        params: tail[1..].to_vec(),
                    },
                );
                self.filters.remove(d);
                self.classes.remove(d);
                Output::default()
            }
            ("qdisc", "del" | "delete") => {
                let Some(d) = dev else {
                    return fail(1, "Cannot find device \"\"");
                };
                if ingress {
                    if !self.ingress.remove(d) {
                        return fail(2, "Error: Invalid handle.");
                    }
                    // Its filters go with it.
                    if let Some(list) = self.filters.get_mut(d) {
                        list.retain(|f| f.parent != "ffff:");
                        if list.is_empty() {
                            self.filters.remove(d);
                        }
                    }
                    return Output::default();
                }
                if self.qdiscs.remove(d).is_none() {
                    return fail(2, "Error: Cannot delete qdisc with handle of zero.");
                }
                self.filters.remove(d);
                self.classes.remove(d);
                Output::default()
            }
            ("filter", "add" | "replace") => {
                let Some(d) = dev else {
                    return fail(1, "Cannot find device \"\"");
                };
                let parent = norm_handle(parent.unwrap_or("ffff:"));
                let on_ingress = parent == "ffff:" && self.ingress.contains(d);
                if !on_ingress && self.qdiscs.get(d).is_none_or(|q| q.handle != parent) {
                    return kernel_err("Parent Qdisc doesn't exists.");
                }
                if self.csum_fails && tail.windows(2).any(|w| w[0] == "action" && w[1] == "csum") {
                    return kernel_err("Failed to load TC action module.");
                }
                self.filters.entry(d.to_string()).or_default().push(Filter {
                    parent,
                    prio: prio.unwrap_or(49152),
                    protocol: protocol.unwrap_or("all").to_string(),
                    spec: tail,
                });
                Output::default()
            }
            ("filter", "del" | "delete") => {
                let Some(d) = dev else {
                    return fail(1, "Cannot find device \"\"");
                };
                let parent = parent.map(norm_handle);
                let list = self.filters.entry(d.to_string()).or_default();
                let before = list.len();
                list.retain(|f| {
                    !(parent.as_ref().is_none_or(|p| *p == f.parent)
                        && prio.is_none_or(|p| p == f.prio)
                        && protocol.is_none_or(|p| p == f.protocol))
                });
                let removed = before != list.len();
                if list.is_empty() {
                    self.filters.remove(d);
                }
                // Without a preference, all filters of the parent go, and
                // finding none is no error.
                if !removed && prio.is_some() {
                    return kernel_err("Cannot find specified filter chain.");
                }
                Output::default()
            }
            ("filter", "show" | "list" | "ls") => {
                // Without a device, iproute2 6.1 lists nothing.
                if dev.is_none() {
                    return Output::default();
                }
                let mut out = String::new();
                for (d, list) in &self.filters {
                    if dev.is_some_and(|x| x != d) {
                        continue;
                    }
                    let dev_part = if dev.is_some() {
                        String::new()
                    } else {
                        format!("dev {d} ")
                    };
                    let shown: Vec<&Filter> = list
                        .iter()
                        .filter(|f| match parent {
                            Some(p) => norm_handle(p) == f.parent,
                            // The ingress qdisc's filters only when asked for.
                            None => f.parent != "ffff:",
                        })
                        .collect();
                    // A `parent` selector is not repeated in the output.
                    out.push_str(&render_filters(
                        &shown,
                        list,
                        &dev_part,
                        parent.is_none() || ingress_sel,
                    ));
                }
                Output::ok(out)
            }
            ("qdisc" | "filter" | "class", v) => fail(
                255,
                &format!("Command \"{v}\" is unknown, try \"tc {obj} help\"."),
            ),
            (o, _) => fail(255, &format!("Object \"{o}\" is unknown, try \"tc help\".")),
        }
    }

    /// `tc class add|change|replace|del|show dev D ...` for htb classes.
    fn class_cmd(
        &mut self,
        verb: &str,
        rest: &[&str],
        link_up: &dyn Fn(&str) -> Option<bool>,
        stats: bool,
    ) -> Output {
        let mut dev = None;
        let mut parent: Option<&str> = None;
        let mut classid: Option<&str> = None;
        let mut kind: Option<&str> = None;
        let mut opts: &[&str] = &[];
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                "dev" => {
                    dev = rest.get(i + 1).copied();
                    i += 2;
                }
                "parent" => {
                    parent = rest.get(i + 1).copied();
                    i += 2;
                }
                "classid" => {
                    classid = rest.get(i + 1).copied();
                    i += 2;
                }
                "root" => i += 1,
                k => {
                    kind = Some(k);
                    opts = &rest[i + 1..];
                    break;
                }
            }
        }
        let Some(d) = dev else {
            return fail(1, "Cannot find device \"\"");
        };
        if link_up(d).is_none() {
            return fail(1, &format!("Cannot find device \"{d}\""));
        }
        match verb {
            "show" | "list" | "ls" => {
                let want = classid.and_then(parse_classid);
                let Some(h) = self.classes.get(d) else {
                    return Output::ok("");
                };
                let mut out = String::new();
                for c in h.iter().filter(|c| want.is_none_or(|w| w == c.id)) {
                    let inner = h.iter().any(|x| x.parent == Some(c.id));
                    let pos = match c.parent {
                        Some(p) => format!("parent {}", show_classid(p)),
                        None => "root".to_string(),
                    };
                    let prio = if inner {
                        String::new()
                    } else {
                        format!(" prio {}", c.prio)
                    };
                    out.push_str(&format!(
                        "class htb {} {pos}{prio} rate {} ceil {} burst {} cburst {} \n",
                        show_classid(c.id),
                        print_rate(c.rate),
                        print_rate(c.ceil),
                        print_size(xmitsize(c.rate, c.buffer)),
                        print_size(xmitsize(c.ceil, c.cbuffer)),
                    ));
                    if stats {
                        out.push_str(STATS);
                        out.push_str(&format!(
                            " lended: 0 borrowed: 0 giants: 0\n tokens: {} ctokens: {}\n\n",
                            c.buffer, c.cbuffer
                        ));
                    }
                }
                Output::ok(out)
            }
            "add" | "change" | "replace" | "del" | "delete" => {
                let Some(q) = self.qdiscs.get(d) else {
                    return fail(2, "RTNETLINK answers: No such file or directory");
                };
                let qmaj = parse_classid(&q.handle).map_or(0, |h| h >> 16);
                let is_htb = q.kind == "htb";
                let id = classid.and_then(parse_classid);
                if verb.starts_with("del") {
                    let Some(id) = id else {
                        return fail(2, "RTNETLINK answers: No such file or directory");
                    };
                    let h = self.classes.entry(d.to_string()).or_default();
                    if h.get(id).is_none() {
                        return fail(2, "RTNETLINK answers: No such file or directory");
                    }
                    if h.iter().any(|c| c.parent == Some(id)) {
                        return fail(2, "Error: HTB class in use.");
                    }
                    h.remove(id);
                    return Output::default();
                }
                // Options, checked by tc before anything is sent.
                let mut rate = None;
                let mut ceil = None;
                let mut burst = None;
                let mut cburst = None;
                let mut prio = 0u32;
                let mut quantum = false;
                let mut j = 0;
                while j < opts.len() {
                    let key = opts[j];
                    let val = opts.get(j + 1).copied().unwrap_or("");
                    let bad = || Output::failed(1, format!("Illegal \"{key}\"\n{HTB_USAGE}"));
                    match key {
                        "rate" => match parse_rate(val) {
                            Some(r) => rate = Some(r),
                            None => return bad(),
                        },
                        "ceil" => match parse_rate(val) {
                            Some(r) => ceil = Some(r),
                            None => return bad(),
                        },
                        "burst" | "buffer" | "maxburst" => match parse_size(val) {
                            Some(b) => burst = Some(b),
                            None => return bad(),
                        },
                        "cburst" | "cbuffer" | "cmaxburst" => match parse_size(val) {
                            Some(b) => cburst = Some(b),
                            None => return bad(),
                        },
                        "prio" => match val.parse() {
                            Ok(p) => prio = p,
                            Err(_) => return bad(),
                        },
                        "quantum" => match val.parse::<u32>() {
                            Ok(_) => quantum = true,
                            Err(_) => return bad(),
                        },
                        "mtu" | "mpu" | "overhead" => {
                            if val.parse::<u32>().is_err() {
                                return bad();
                            }
                        }
                        other => {
                            return Output::failed(1, format!("What is \"{other}\"?\n{HTB_USAGE}"))
                        }
                    }
                    j += 2;
                }
                if kind != Some("htb") || !is_htb {
                    return fail(2, "RTNETLINK answers: Invalid argument");
                }
                let Some(rate) = rate else {
                    return fail(1, "\"rate\" is required.");
                };
                let ceil = ceil.unwrap_or(rate);
                // tc's defaults: rate/HZ (HZ = 10^9 here) + an mtu of 1600.
                let buffer = xmittime(rate, burst.unwrap_or(rate / 1_000_000_000 + 1600));
                let cbuffer = xmittime(ceil, cburst.unwrap_or(ceil / 1_000_000_000 + 1600));
                let Some(id) = id.filter(|i| i >> 16 == qmaj) else {
                    return fail(2, "RTNETLINK answers: Invalid argument");
                };
                let h = self.classes.entry(d.to_string()).or_default();
                // A parent class that does not exist makes it a root class.
                let parent = parent
                    .and_then(parse_classid)
                    .filter(|p| p & 0xffff != 0 && h.get(*p).is_some());
                let exists = h.get(id).cloned();
                let mut out = Output::default();
                let quantum_bytes = rate / 10;
                if !quantum && quantum_bytes < 1000 {
                    out.stderr = format!(
                        "Warning: sch_htb: quantum of class {id:x} is small. Consider r2q change.\n"
                    );
                } else if !quantum && quantum_bytes > 200_000 {
                    out.stderr = format!(
                        "Warning: sch_htb: quantum of class {id:x} is big. Consider r2q change.\n"
                    );
                }
                let c = HtbClass {
                    id,
                    parent,
                    rate,
                    ceil,
                    buffer,
                    cbuffer,
                    prio,
                };
                match (verb, exists) {
                    ("add", Some(_)) => return fail(2, "RTNETLINK answers: File exists"),
                    ("change", None) => {
                        return fail(2, "RTNETLINK answers: No such file or directory")
                    }
                    (_, Some(old)) => h.replace(HtbClass {
                        parent: old.parent,
                        ..c
                    }),
                    (_, None) => h.insert(c),
                }
                out
            }
            v => fail(
                255,
                &format!("Command \"{v}\" is unknown, try \"tc class help\"."),
            ),
        }
    }

    /// Readable dump for state snapshots.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (d, q) in &self.qdiscs {
            out.push_str(&format!(
                "qdisc {} {} dev {d} root {}\n",
                q.kind,
                q.handle,
                q.params.join(" ")
            ));
        }
        for (d, h) in &self.classes {
            for c in h.iter() {
                out.push_str(&format!(
                    "class htb {} dev {d} parent {} rate {} ceil {}\n",
                    show_classid(c.id),
                    c.parent.map_or("root".to_string(), show_classid),
                    print_rate(c.rate),
                    print_rate(c.ceil)
                ));
            }
        }
        for (d, list) in &self.filters {
            for f in list {
                out.push_str(&format!(
                    "filter dev {d} parent {} protocol {} pref {} {}\n",
                    f.parent,
                    f.protocol,
                    f.prio,
                    f.spec.join(" ")
                ));
            }
        }
        out
    }
}

fn render_params(q: &Qdisc) -> String {
    if q.kind == "htb" {
        let mut default = "0".to_string();
        let mut it = q.params.iter();
        while let Some(p) = it.next() {
            if p == "default" {
                if let Some(v) = it.next() {
                    default = v.clone();
                }
            }
        }
        let n = u32::from_str_radix(default.trim_start_matches("0x"), 16).unwrap_or(0);
        let default = if n == 0 {
            "0".to_string()
        } else {
            format!("{n:#x}")
        };
        format!("r2q 10 default {default} direct_packets_stat 0 direct_qlen 1000")
    } else if q.kind == "pfifo" {
        "limit 1000p".to_string()
    } else if q.kind == "bfifo" {
        "limit 1500000b".to_string()
    } else if q.kind == "pfifo_fast" {
        "bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1".to_string()
    } else {
        q.params.join(" ")
    }
}

/// One 32-bit key of a u32 selector: value and mask at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    off: u32,
    value: u32,
    mask: u32,
}

/// A mask: always hexadecimal (with or without 0x).
fn parse_mask(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// A value: 0x hexadecimal, else decimal.
fn parse_num(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The keys, flowid and actions of `u32 match ... [flowid X] [action ...]`,
/// packed as tc packs them (matches on the same word are merged).
fn u32_selector(spec: &[String]) -> (Vec<Key>, Option<String>, Vec<Vec<String>>) {
    let mut keys: Vec<Key> = Vec::new();
    let mut flowid = None;
    let mut actions: Vec<Vec<String>> = Vec::new();
    let mut add = |k: Key| match keys.iter_mut().find(|x| x.off == k.off) {
        Some(x) => {
            x.value |= k.value;
            x.mask |= k.mask;
        }
        None => keys.push(k),
    };
    let t: Vec<&str> = spec.iter().map(String::as_str).collect();
    let mut i = 0;
    while i < t.len() {
        match t[i] {
            "match" => match (t.get(i + 1), t.get(i + 2)) {
                (Some(&"ip"), Some(&f @ ("src" | "dst"))) => {
                    let v = t.get(i + 3).copied().unwrap_or("");
                    let (a, l) = v.split_once('/').unwrap_or((v, "32"));
                    let a: u32 = a.parse::<std::net::Ipv4Addr>().map(u32::from).unwrap_or(0);
                    let l: u32 = l.parse().unwrap_or(32).min(32);
                    let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                    add(Key {
                        off: if f == "src" { 12 } else { 16 },
                        value: a & mask,
                        mask,
                    });
                    i += 4;
                }
                (Some(&"ip"), Some(&f @ ("sport" | "dport"))) => {
                    let v = t.get(i + 3).and_then(|x| parse_num(x)).unwrap_or(0) & 0xffff;
                    let m = t.get(i + 4).and_then(|x| parse_mask(x)).unwrap_or(0) & 0xffff;
                    let sh = if f == "sport" { 16 } else { 0 };
                    add(Key {
                        off: 20,
                        value: (v & m) << sh,
                        mask: m << sh,
                    });
                    i += 5;
                }
                (Some(&"ip"), Some(&"protocol")) => {
                    let v = t.get(i + 3).and_then(|x| parse_num(x)).unwrap_or(0) & 0xff;
                    let m = t.get(i + 4).and_then(|x| parse_mask(x)).unwrap_or(0) & 0xff;
                    add(Key {
                        off: 8,
                        value: (v & m) << 16,
                        mask: m << 16,
                    });
                    i += 5;
                }
                (Some(&"u32"), _) => {
                    let v = t.get(i + 2).and_then(|x| parse_num(x)).unwrap_or(0);
                    let m = t.get(i + 3).and_then(|x| parse_mask(x)).unwrap_or(0);
                    let off = t.get(i + 5).and_then(|x| parse_num(x)).unwrap_or(0);
                    add(Key {
                        off,
                        value: v & m,
                        mask: m,
                    });
                    i += 6;
                }
                _ => i += 1,
            },
            "flowid" | "classid" => {
                flowid = t.get(i + 1).map(|x| x.to_string());
                i += 2;
            }
            "action" => {
                let end = t[i + 1..]
                    .iter()
                    .position(|x| *x == "action")
                    .map_or(t.len(), |p| p + i + 1);
                actions.push(t[i + 1..end].iter().map(|x| x.to_string()).collect());
                i = end;
            }
            _ => i += 1,
        }
    }
    (keys, flowid, actions)
}

/// `tc filter show` of u32 filters as the kernel dumps them: per
/// preference a head line and its hash table (800:, 801:, ... in order of
/// creation), then each filter node (HT::800, ::801, ...) with its keys.
/// Action lines are as iproute2 prints `csum`/`gact` (not verifiable on
/// the reference kernel, which has neither module).
fn render_filters(shown: &[&Filter], all: &[Filter], dev_part: &str, with_parent: bool) -> String {
    // Hash table ids by order of creation of each (parent, pref, protocol).
    let mut groups: Vec<(&str, u32, &str)> = Vec::new();
    for f in all {
        let g = (f.parent.as_str(), f.prio, f.protocol.as_str());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut order: Vec<(&str, u32, &str)> = groups.clone();
    order.sort_by_key(|g| g.1);
    let mut out = String::new();
    let mut action_index = 0;
    for g in order {
        let ht = 0x800 + groups.iter().position(|x| *x == g).unwrap_or(0);
        let members: Vec<&&Filter> = shown
            .iter()
            .filter(|f| (f.parent.as_str(), f.prio, f.protocol.as_str()) == g)
            .collect();
        if members.is_empty() {
            continue;
        }
        let parent = if with_parent {
            format!("parent {} ", g.0)
        } else {
            String::new()
        };
        let head = format!(
            "filter {dev_part}{parent}protocol {} pref {} u32 chain 0 ",
            g.2, g.1
        );
        out.push_str(&format!("{head}\n"));
        out.push_str(&format!("{head}fh {ht:x}: ht divisor 1 \n"));
        for (n, f) in members.iter().enumerate() {
            let (keys, flowid, actions) = u32_selector(&f.spec);
            let node = 0x800 + n;
            let flow = match &flowid {
                Some(x) if actions.is_empty() => format!("*flowid {x} "),
                Some(x) => format!("flowid {x} "),
                None if actions.is_empty() => String::new(),
                None => "terminal flowid ??? ".to_string(),
            };
            out.push_str(&format!(
                "{head}fh {ht:x}::{node:x} order {node} key ht {ht:x} bkt 0 {flow}not_in_hw \n"
            ));
            for k in keys {
                out.push_str(&format!(
                    "  match {:08x}/{:08x} at {}\n",
                    k.value, k.mask, k.off
                ));
            }
            for (order, a) in actions.iter().enumerate() {
                action_index += 1;
                let kind = a.first().map(String::as_str).unwrap_or("");
                match kind {
                    "csum" => {
                        let what: Vec<&str> = a[1..]
                            .iter()
                            .map(String::as_str)
                            .filter(|x| *x != "and")
                            .map(|x| if x == "ip" { "iph" } else { x })
                            .collect();
                        out.push_str(&format!(
                            "\taction order {}: csum ({}) action pass\n\tindex {action_index} ref 1 bind 1\n\n",
                            order + 1,
                            what.join(", ")
                        ));
                    }
                    k => {
                        out.push_str(&format!(
                            "\taction order {}: gact action {k}\n\t random type none pass val 0\n\t index {action_index} ref 1 bind 1\n\n",
                            order + 1
                        ));
                    }
                }
            }
        }
    }
    out
}
