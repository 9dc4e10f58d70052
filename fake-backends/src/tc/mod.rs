//! Simulated `tc`: the commands libvirt's nftables backend runs
//! (`qdisc show/add/del` of a root `htb` qdisc, `filter add/del/show` of
//! u32 filters with an action) and what a person types around them: root
//! qdiscs of the kinds the reference kernel has (htb, pfifo, bfifo,
//! pfifo_fast; others are "Specified qdisc kind is unknown."), ingress
//! qdiscs, automatic handles from 8001:, the default qdisc rows of `tc
//! qdisc show`, `-s` counters (0), and htb classes (`add`, `change`,
//! `replace`, `del`, `show`, listed in the kernel's class-hash order, with
//! tc's rate/size parsing and printing, its burst/cburst tick arithmetic
//! and the kernel's quantum warnings).
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
//!
//! Known deviations: hash tables (`fh 800:`) are numbered by the creation
//! order of the groups still present, where the kernel keeps the id a group
//! got (after deleting an earlier group the kernel shows 801: where the
//! simulator shows 800:); htb burst/cburst printed for rates of a gigabit
//! and more differ (the kernel rounds its time base differently there);
//! automatic handles are counted per host, not across namespaces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use virtnet_runner::Output;

mod args;
mod model;
mod output;
use args::*;
pub use model::*;
use output::*;

/// Root qdisc kinds the reference kernel has (others: "Specified qdisc
/// kind is unknown.").
const KINDS: &[&str] = &["htb", "pfifo", "bfifo", "pfifo_fast"];

fn fail(status: i32, msg: &str) -> Output {
    Output::failed(status, format!("{msg}\n"))
}

fn kernel_err(msg: &str) -> Output {
    Output::failed(
        2,
        format!("Error: {msg}\nWe have an error talking to the kernel\n"),
    )
}

/// A qdisc handle as a filter's `parent` names it: `1:0` and `1:` are
/// the same qdisc.
fn qdisc_handle(h: &str) -> String {
    match h.split_once(':') {
        Some((maj, min)) if min.trim_start_matches('0').is_empty() => format!("{maj}:"),
        _ => norm_handle(h),
    }
}

fn norm_handle(h: &str) -> String {
    if h.contains(':') {
        h.to_string()
    } else {
        format!("{h}:")
    }
}

impl TcState {
    /// `tc -batch -` with `input` on stdin (iproute2 6.1): each line is one
    /// tc command (`#` starts a comment, blank lines are skipped, words are
    /// split at blanks), run in order; the first failing line ends the
    /// batch with its own stderr followed by `Command failed -:N` (N its
    /// line number) and exit status 1, whatever status the command alone
    /// exits with. The lines before it stay done (no transaction). What
    /// the lines print to stdout is kept. Not simulated: quoted words and
    /// `\` line continuations (refused as not simulated), and the commands
    /// real tc ends by exiting at once (an unparsable argument value), where
    /// it stops without the `Command failed` line.
    pub fn exec_batch(&mut self, input: &str, links: &[TcLink]) -> Output {
        let mut stdout = String::new();
        let mut stderr = String::new();
        for (i, line) in input.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            if line.contains(['"', '\'', '\\']) {
                return Output::failed(
                    crate::NOT_SIMULATED_STATUS,
                    format!(
                        "virtnet-fake: command not simulated: tc -batch - line {}: {line}\n",
                        i + 1
                    ),
                );
            }
            let words: Vec<String> = line
                .split([' ', '\t', '\r'])
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            if words.is_empty() {
                continue;
            }
            let out = self.exec(&words, links);
            stdout.push_str(&out.stdout);
            stderr.push_str(&out.stderr);
            if !out.success() {
                stderr.push_str(&format!("Command failed -:{}\n", i + 1));
                return Output {
                    status: 1,
                    stdout,
                    stderr,
                };
            }
        }
        Output {
            status: 0,
            stdout,
            stderr,
        }
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
            ("qdisc", "show" | "list" | "ls") => self.qdisc_show(dev, handle, stats, links),
            ("qdisc", "add" | "replace") => {
                self.qdisc_add(verb, dev, handle, parent, root, ingress, tail)
            }
            ("qdisc", "del" | "delete") => self.qdisc_del(dev, ingress),
            ("filter", "add" | "replace") => self.filter_add(dev, parent, prio, protocol, tail),
            ("filter", "del" | "delete") => {
                // Without a preference the kernel flushes the chain, which
                // it refuses when a protocol, handle or kind narrows it.
                if prio.is_none() && (protocol.is_some() || handle.is_some() || !tail.is_empty()) {
                    return kernel_err("Cannot flush filters with protocol, handle or kind set.");
                }
                self.filter_del(dev, parent, prio, protocol)
            }
            ("filter", "show" | "list" | "ls") => self.filter_show(dev, parent, ingress_sel),
            ("qdisc" | "filter" | "class", v) => fail(
                255,
                &format!("Command \"{v}\" is unknown, try \"tc {obj} help\"."),
            ),
            (o, _) => fail(255, &format!("Object \"{o}\" is unknown, try \"tc help\".")),
        }
    }

    /// `tc qdisc show [dev D]`.
    fn qdisc_show(
        &mut self,
        dev: Option<&str>,
        handle: Option<&str>,
        stats: bool,
        links: &[TcLink],
    ) -> Output {
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
            for c in self.children.get(d).into_iter().flatten() {
                if handle.is_none_or(|h| norm_handle(h) == c.handle) {
                    lines.push(format!(
                        "qdisc {} {} {dev_part}parent {} {}",
                        c.kind,
                        c.handle,
                        show_classid(c.parent),
                        render_child_params(c)
                    ));
                }
            }
            if self.ingress.contains(d) && handle.is_none_or(|h| norm_handle(h) == "ffff:") {
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

    /// `tc qdisc add|replace dev D root|handle H KIND ...`.
    #[allow(clippy::too_many_arguments)]
    fn qdisc_add(
        &mut self,
        verb: &str,
        dev: Option<&str>,
        handle: Option<&str>,
        parent: Option<&str>,
        root: bool,
        ingress: bool,
        tail: Vec<String>,
    ) -> Output {
        let Some(d) = dev else {
            return fail(1, "Cannot find device \"\"");
        };
        if ingress {
            if self.ingress.contains(d) {
                return fail(2, "Error: Exclusivity flag on, cannot modify.");
            }
            self.ingress.insert(d.to_string());
            self.ingress_queue.insert(d.to_string());
            return Output::default();
        }
        if !root {
            let Some(p) = parent else {
                return fail(2, "Error: Specified qdisc not found.");
            };
            return self.child_qdisc_add(d, p, handle, tail);
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
        // What hung under the old root goes (the ingress qdisc's filters
        // stay).
        if let Some(list) = self.filters.get_mut(d) {
            list.retain(|f| f.parent == "ffff:");
            if list.is_empty() {
                self.filters.remove(d);
            }
        }
        self.classes.remove(d);
        self.children.remove(d);
        Output::default()
    }

    /// `tc qdisc add dev D parent MAJ:MIN [handle H:] KIND ...`: a qdisc
    /// under an htb class.
    fn child_qdisc_add(
        &mut self,
        d: &str,
        parent: &str,
        handle: Option<&str>,
        tail: Vec<String>,
    ) -> Output {
        let Some(q) = self.qdiscs.get(d) else {
            return fail(2, "Error: Failed to find specified qdisc.");
        };
        let pid = parse_classid(parent).unwrap_or(0);
        let qmaj = parse_classid(&q.handle).map_or(0, |h| h >> 16);
        if pid >> 16 != qmaj {
            return fail(2, "Error: Failed to find specified qdisc.");
        }
        if self.classes.get(d).and_then(|h| h.get(pid)).is_none() {
            return fail(2, "Error: Specified class not found.");
        }
        let Some(kind) = tail.first().cloned() else {
            return fail(1, "Unknown qdisc \"\", hence option \"\" is unparsable");
        };
        let known = KINDS.contains(&kind.as_str()) || (kind == "sfq" && !self.qos_modules_missing);
        if !known {
            return fail(2, "Error: Specified qdisc kind is unknown.");
        }
        let list = self.children.entry(d.to_string()).or_default();
        if list.iter().any(|c| c.parent == pid) {
            let same = handle.is_some_and(|h| list.iter().any(|c| c.handle == norm_handle(h)));
            return if same || handle.is_none() {
                fail(2, "Error: Exclusivity flag on, cannot modify.")
            } else {
                fail(2, "Error: NLM_F_REPLACE needed to override.")
            };
        }
        let handle = match handle {
            Some(h) => norm_handle(h),
            None => {
                self.auto_handle = self.auto_handle.max(0x8000) + 1;
                format!("{:x}:", self.auto_handle)
            }
        };
        list.push(ChildQdisc {
            parent: pid,
            handle,
            kind,
            params: tail[1..].to_vec(),
        });
        Output::default()
    }

    /// `tc qdisc del dev D root|ingress`.
    fn qdisc_del(&mut self, dev: Option<&str>, ingress: bool) -> Output {
        let Some(d) = dev else {
            return fail(1, "Cannot find device \"\"");
        };
        if ingress {
            if !self.ingress.remove(d) {
                if !self.ingress_queue.contains(d) {
                    return fail(2, "Error: Cannot find specified qdisc on specified device.");
                }
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
        // The root's filters, classes and class qdiscs go with it (the
        // ingress qdisc's filters stay).
        if let Some(list) = self.filters.get_mut(d) {
            list.retain(|f| f.parent == "ffff:");
            if list.is_empty() {
                self.filters.remove(d);
            }
        }
        self.classes.remove(d);
        self.children.remove(d);
        Output::default()
    }

    /// `tc filter add|replace dev D ... u32 ...`.
    fn filter_add(
        &mut self,
        dev: Option<&str>,
        parent: Option<&str>,
        prio: Option<u32>,
        protocol: Option<&str>,
        tail: Vec<String>,
    ) -> Output {
        let Some(d) = dev else {
            return fail(1, "Cannot find device \"\"");
        };
        let parent = qdisc_handle(parent.unwrap_or("ffff:"));
        let on_ingress = parent == "ffff:" && self.ingress.contains(d);
        if !on_ingress && self.qdiscs.get(d).is_none_or(|q| q.handle != parent) {
            return kernel_err("Parent Qdisc doesn't exists.");
        }
        if self.qos_modules_missing && tail.first().is_some_and(|k| k == "fw") {
            return kernel_err("TC classifier not found.");
        }
        if self.csum_fails && tail.windows(2).any(|w| w[0] == "action" && w[1] == "csum") {
            return kernel_err("Failed to load TC action module.");
        }
        if self.qos_modules_missing && tail.iter().any(|w| w == "police") {
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

    /// `tc filter del dev D [parent P] [prio N]`.
    fn filter_del(
        &mut self,
        dev: Option<&str>,
        parent: Option<&str>,
        prio: Option<u32>,
        protocol: Option<&str>,
    ) -> Output {
        let Some(d) = dev else {
            return fail(1, "Cannot find device \"\"");
        };
        let parent = parent.map(qdisc_handle);
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

    /// `tc filter show dev D [parent P|ingress]`.
    fn filter_show(
        &mut self,
        dev: Option<&str>,
        parent: Option<&str>,
        ingress_sel: bool,
    ) -> Output {
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
}
