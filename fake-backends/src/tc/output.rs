//! What the simulated `tc` prints: qdisc, class and filter listings with
//! iproute2's rate/size formatting, and the state dump used by tests.

use super::*;

/// tc's rate printing: bits, scaled by 1000 while it divides evenly (or
/// the value is at least a million).
pub(super) fn print_rate(bytes: u64) -> String {
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
pub(super) fn print_size(sz: u64) -> String {
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

/// A `flowid`/`classid` as tc parses it (`1` is minor 1 of major 0) and
/// prints it (`:1`).
fn fw_classid(v: &str) -> String {
    match parse_classid(v).or_else(|| u32::from_str_radix(v, 16).ok()) {
        Some(id) if id >> 16 == 0 => format!(":{:x}", id & 0xffff),
        Some(id) => show_classid(id),
        None => v.to_string(),
    }
}

pub(super) fn show_classid(id: u32) -> String {
    format!("{:x}:{:x}", id >> 16, id & 0xffff)
}

pub(super) const STATS: &str =
    " Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n";

impl TcState {
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
        for (d, list) in &self.children {
            for c in list {
                out.push_str(&format!(
                    "qdisc {} {} dev {d} parent {} {}\n",
                    c.kind,
                    c.handle,
                    show_classid(c.parent),
                    c.params.join(" ")
                ));
            }
        }
        for d in &self.ingress {
            out.push_str(&format!("qdisc ingress ffff: dev {d}\n"));
        }
        for (d, list) in &self.filters {
            // As the kernel lists them: per parent, by preference (the
            // insertion order within one preference).
            let mut list: Vec<&Filter> = list.iter().collect();
            list.sort_by(|a, b| (&a.parent, a.prio).cmp(&(&b.parent, b.prio)));
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

/// The options of a qdisc under a class as `tc qdisc show` prints them
/// (pfifo/bfifo checked on the reference kernel; sfq's line is iproute2's
/// format, not checkable there: no sch_sfq).
pub(super) fn render_child_params(c: &ChildQdisc) -> String {
    match c.kind.as_str() {
        "sfq" => {
            let mut perturb = "0".to_string();
            let mut it = c.params.iter();
            while let Some(p) = it.next() {
                if p == "perturb" {
                    if let Some(v) = it.next() {
                        perturb = v.clone();
                    }
                }
            }
            format!("limit 127p quantum 1514b depth 127 divisor 1024 perturb {perturb}sec ")
        }
        _ => render_params(&Qdisc {
            kind: c.kind.clone(),
            handle: c.handle.clone(),
            params: c.params.clone(),
        }),
    }
}

pub(super) fn render_params(q: &Qdisc) -> String {
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

/// `tc filter show` of u32 filters as the kernel dumps them: per
/// preference a head line and its hash table (800:, 801:, ... in order of
/// creation), then each filter node (HT::800, ::801, ...) with its keys.
/// Action lines are as iproute2 prints `csum`/`gact` (not verifiable on
/// the reference kernel, which has neither module).
pub(super) fn render_filters(
    shown: &[&Filter],
    all: &[Filter],
    dev_part: &str,
    with_parent: bool,
) -> String {
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
        // Hash tables are numbered per qdisc (the ingress qdisc's apart).
        let ht = 0x800
            + groups
                .iter()
                .filter(|x| x.0 == g.0)
                .position(|x| *x == g)
                .unwrap_or(0);
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
        if members
            .iter()
            .all(|f| f.spec.first().is_some_and(|k| k == "fw"))
        {
            // cls_fw (iproute2's f_fw.c format; the reference kernel has no
            // cls_fw to check it against).
            let head = format!(
                "filter {dev_part}{parent}protocol {} pref {} fw chain 0 ",
                g.2, g.1
            );
            out.push_str(&format!("{head}\n"));
            for f in members {
                let mut handle = String::new();
                let mut classid = String::new();
                let mut it = f.spec[1..].iter();
                while let Some(w) = it.next() {
                    match w.as_str() {
                        "handle" => {
                            if let Some(v) = it.next().and_then(|v| parse_num(v)) {
                                handle = format!("handle {v:#x} ");
                            }
                        }
                        "flowid" | "classid" => {
                            if let Some(v) = it.next() {
                                classid = format!("classid {} ", fw_classid(v));
                            }
                        }
                        _ => {}
                    }
                }
                out.push_str(&format!("{head}{handle}{classid}\n"));
            }
            continue;
        }
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
                    "police" => {
                        // Old-style policer, iproute2's m_police.c print
                        // (not checkable on the reference kernel: no
                        // act_police).
                        let val = |key: &str| {
                            a.iter()
                                .position(|x| x == key)
                                .and_then(|p| a.get(p + 1))
                                .cloned()
                                .unwrap_or_default()
                        };
                        let rate = parse_rate(&val("rate")).map(print_rate).unwrap_or_default();
                        let burst = parse_size(&val("burst"))
                            .map(print_size)
                            .unwrap_or_default();
                        let mtu = parse_size(&val("mtu")).map(print_size).unwrap_or_default();
                        let verdict = ["drop", "pass", "reclassify", "continue", "pipe"]
                            .into_iter()
                            .find(|v| a.iter().any(|x| x == v))
                            .unwrap_or("reclassify");
                        out.push_str(&format!(
                            " police {action_index:#x} rate {rate} burst {burst} mtu {mtu} action {verdict} overhead 0b \n\tref 1 bind 1\n\n"
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
