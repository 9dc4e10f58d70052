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
//! Simplification: `tc filter show` prints one line per filter,
//! `filter parent H: protocol P pref N u32 <arguments as given>`, not the
//! kernel's multi-line u32 dump.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use virtnet_core::runner::Output;

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
}

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
        self.qdiscs.remove(dev);
        self.filters.remove(dev);
    }

    /// Run `tc ARGS...`; `link_up(dev)` is `None` for a missing device, else
    /// whether it is up.
    pub fn exec(&mut self, args: &[String], link_up: &dyn Fn(&str) -> Option<bool>) -> Output {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
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
                "prio" | "pref" | "priority" => {
                    prio = rest.get(i + 1).and_then(|p| p.parse().ok());
                    i += 2;
                }
                "protocol" => {
                    protocol = rest.get(i + 1).copied();
                    i += 2;
                }
                "root" => {
                    root = true;
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
                let devs: Vec<String> = match dev {
                    Some(d) => vec![d.to_string()],
                    None => self.qdiscs.keys().cloned().collect(),
                };
                for d in devs {
                    let dev_part = if dev.is_some() {
                        String::new()
                    } else {
                        format!("dev {d} ")
                    };
                    match self.qdiscs.get(&d) {
                        Some(q) => {
                            if handle.is_some_and(|h| norm_handle(h) != q.handle) {
                                continue;
                            }
                            out.push_str(&format!(
                                "qdisc {} {} {dev_part}root refcnt 2 {}\n",
                                q.kind,
                                q.handle,
                                render_params(q)
                            ));
                        }
                        None => {
                            if handle.is_none() && link_up(&d) == Some(true) {
                                out.push_str(&format!(
                                    "qdisc noqueue 0: {dev_part}root refcnt 2 \n"
                                ));
                            }
                        }
                    }
                }
                Output::ok(out)
            }
            ("qdisc", "add" | "replace") => {
                let Some(d) = dev else {
                    return fail(1, "Cannot find device \"\"");
                };
                if !root {
                    return kernel_err("Specified class not found.");
                }
                let Some(kind) = tail.first().cloned() else {
                    return fail(1, "Unknown qdisc \"\", hence option \"\" is unparsable");
                };
                if verb == "add" && self.qdiscs.contains_key(d) {
                    return fail(2, "Error: Exclusivity flag on, cannot modify.");
                }
                self.qdiscs.insert(
                    d.to_string(),
                    Qdisc {
                        kind,
                        handle: norm_handle(handle.unwrap_or("8001:")),
                        params: tail[1..].to_vec(),
                    },
                );
                Output::default()
            }
            ("qdisc", "del" | "delete") => {
                let Some(d) = dev else {
                    return fail(1, "Cannot find device \"\"");
                };
                if self.qdiscs.remove(d).is_none() {
                    return fail(2, "Error: Cannot delete qdisc with handle of zero.");
                }
                self.filters.remove(d);
                Output::default()
            }
            ("filter", "add" | "replace") => {
                let Some(d) = dev else {
                    return fail(1, "Cannot find device \"\"");
                };
                let parent = norm_handle(parent.unwrap_or("ffff:"));
                if self.qdiscs.get(d).is_none_or(|q| q.handle != parent) {
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
                if !removed {
                    return kernel_err("Cannot find specified filter chain.");
                }
                Output::default()
            }
            ("filter", "show" | "list" | "ls") => {
                let mut out = String::new();
                for (d, list) in &self.filters {
                    if dev.is_some_and(|x| x != d) {
                        continue;
                    }
                    for f in list {
                        out.push_str(&format!(
                            "filter parent {} protocol {} pref {} {}\n",
                            f.parent,
                            f.protocol,
                            f.prio,
                            f.spec.join(" ")
                        ));
                    }
                }
                Output::ok(out)
            }
            ("qdisc" | "filter", v) => fail(
                1,
                &format!("Command \"{v}\" is unknown, try \"tc {obj} help\"."),
            ),
            (o, _) => fail(1, &format!("Object \"{o}\" is unknown, try \"tc help\".")),
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
        format!("r2q 10 default {n:#x} direct_packets_stat 0 direct_qlen 1000")
    } else {
        q.params.join(" ")
    }
}
