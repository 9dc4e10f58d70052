//! Simulated `sysctl` for the network keys a virtual-network driver uses:
//! `net.ipv4.ip_forward` and `net.ipv6.conf.{all,default,IFACE}.{forwarding,
//! accept_ra,disable_ipv6,autoconf}`. Per-interface keys exist only while the
//! interface exists (as in `/proc/sys`). Only changed values are stored; the
//! defaults are those of a fresh network namespace.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use virtnet_core::runner::Output;

/// procps-ng's usage text (printed for a bare `sysctl`).
const USAGE: &str = include_str!("usage/sysctl.txt");

/// Values that differ from the defaults, by dotted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SysctlState {
    pub values: BTreeMap<String, String>,
}

const CONF_KEYS: &[(&str, &str)] = &[
    ("forwarding", "0"),
    ("accept_ra", "1"),
    ("disable_ipv6", "0"),
    ("autoconf", "1"),
];

impl SysctlState {
    /// Default value of `key`, or None when the key does not exist given the
    /// current interfaces.
    fn default_of(key: &str, links: &[String]) -> Option<&'static str> {
        if key == "net.ipv4.ip_forward" {
            return Some("0");
        }
        let rest = key.strip_prefix("net.ipv6.conf.")?;
        let (iface, leaf) = rest.rsplit_once('.')?;
        if iface != "all" && iface != "default" && !links.iter().any(|l| l == iface) {
            return None;
        }
        CONF_KEYS.iter().find(|(k, _)| *k == leaf).map(|(_, v)| *v)
    }

    /// Current value of a key.
    pub fn get(&self, key: &str, links: &[String]) -> Option<String> {
        let def = Self::default_of(key, links)?;
        Some(
            self.values
                .get(key)
                .cloned()
                .unwrap_or_else(|| def.to_string()),
        )
    }

    /// Forget per-interface values of a removed interface.
    pub fn drop_device(&mut self, dev: &str) {
        let prefix = format!("net.ipv6.conf.{dev}.");
        self.values.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Run `sysctl ARGS...`.
    pub fn exec(&mut self, args: &[String], links: &[String]) -> Output {
        let mut write = false;
        let mut values_only = false;
        let mut quiet = false;
        let mut items: Vec<&str> = Vec::new();
        for a in args {
            match a.as_str() {
                "-w" | "--write" => write = true,
                "-n" | "--values" => values_only = true,
                "-q" | "--quiet" => quiet = true,
                "-e" | "--ignore" => {}
                o if o.starts_with('-') => {
                    return Output::failed(
                        2,
                        format!(
                            "sysctl: invalid option -- '{}'\n",
                            o.trim_start_matches('-')
                        ),
                    )
                }
                o => items.push(o),
            }
        }
        if items.is_empty() {
            return Output::failed(1, USAGE);
        }
        let mut out = Output::default();
        for it in items {
            let key_of = |k: &str| k.replace('/', ".");
            if let Some((k, v)) = it.split_once('=') {
                let k = key_of(k);
                if Self::default_of(&k, links).is_none() {
                    out.stderr.push_str(&format!(
                        "sysctl: cannot stat /proc/sys/{}: No such file or directory\n",
                        k.replace('.', "/")
                    ));
                    out.status = 1;
                    continue;
                }
                let v = v.trim().to_string();
                if v.parse::<i64>().is_err() {
                    out.stderr
                        .push_str(&format!("sysctl: setting key \"{k}\": Invalid argument\n"));
                    out.status = 1;
                    continue;
                }
                self.values.insert(k.clone(), v.clone());
                // Writing `all.forwarding` sets it on `default` and on every
                // interface too (as the kernel does).
                if k == "net.ipv6.conf.all.forwarding" {
                    for i in links.iter().map(String::as_str).chain(["default"]) {
                        self.values
                            .insert(format!("net.ipv6.conf.{i}.forwarding"), v.clone());
                    }
                }
                if !quiet {
                    if values_only {
                        out.stdout.push_str(&format!("{v}\n"));
                    } else {
                        out.stdout.push_str(&format!("{k} = {v}\n"));
                    }
                }
            } else if write {
                out.stderr
                    .push_str("sysctl: command line(0): invalid syntax, continuing...\n");
                out.status = 1;
            } else {
                let k = key_of(it);
                match self.get(&k, links) {
                    Some(v) => {
                        if values_only {
                            out.stdout.push_str(&format!("{v}\n"));
                        } else {
                            out.stdout.push_str(&format!("{k} = {v}\n"));
                        }
                    }
                    None => {
                        out.stderr.push_str(&format!(
                            "sysctl: cannot stat /proc/sys/{}: No such file or directory\n",
                            k.replace('.', "/")
                        ));
                        out.status = 1;
                    }
                }
            }
        }
        out
    }

    /// `key = value` lines of the changed values, for state dumps.
    pub fn dump(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    }
}
