//! Simulated `sysctl` for the network keys a virtual-network driver uses
//! and a person checks: `net.ipv4.ip_forward`,
//! `net.ipv4.conf.{all,default,IFACE}.{forwarding,rp_filter,proxy_arp,
//! send_redirects,accept_local}` and `net.ipv6.conf.{all,default,IFACE}.
//! {forwarding,accept_ra,disable_ipv6,autoconf,keep_addr_on_down,
//! addr_gen_mode,use_tempaddr}`. Writing `ip_forward` (or
//! `ipv4.conf.all.forwarding`) or `ipv6.conf.all.forwarding` sets
//! `default` and every interface too, as the kernel does. Per-interface keys exist only while the
//! interface exists (as in `/proc/sys`). Only changed values are stored; the
//! defaults are those of a fresh network namespace.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use virtnet_runner::Output;

/// procps-ng's usage text (printed for a bare `sysctl`).
const USAGE: &str = include_str!("usage/sysctl.txt");

/// Values that differ from the defaults, by dotted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SysctlState {
    pub values: BTreeMap<String, String>,
}

/// `net.ipv6.conf.{all,default,IFACE}.KEY` and their fresh-namespace values.
const CONF_KEYS: &[(&str, &str)] = &[
    ("forwarding", "0"),
    ("accept_ra", "1"),
    ("disable_ipv6", "0"),
    ("autoconf", "1"),
    ("keep_addr_on_down", "0"),
    ("addr_gen_mode", "0"),
    ("use_tempaddr", "0"),
];

/// `net.ipv4.conf.{all,default,IFACE}.KEY` and their fresh-namespace values.
const CONF4_KEYS: &[(&str, &str)] = &[
    ("forwarding", "0"),
    ("rp_filter", "0"),
    ("proxy_arp", "0"),
    ("send_redirects", "1"),
    ("accept_local", "0"),
];

impl SysctlState {
    /// Default value of `key`, or None when the key does not exist given the
    /// current interfaces.
    fn default_of(key: &str, links: &[String]) -> Option<&'static str> {
        if key == "net.ipv4.ip_forward" {
            return Some("0");
        }
        let (table, rest) = match key.strip_prefix("net.ipv6.conf.") {
            Some(r) => (CONF_KEYS, r),
            None => (CONF4_KEYS, key.strip_prefix("net.ipv4.conf.")?),
        };
        let (iface, leaf) = rest.rsplit_once('.')?;
        if iface != "all" && iface != "default" && !links.iter().any(|l| l == iface) {
            return None;
        }
        table.iter().find(|(k, _)| *k == leaf).map(|(_, v)| *v)
    }

    /// The key whose value a forwarding switch takes when it was not
    /// written itself: `ip_forward` is `ipv4.conf.all.forwarding`; `default`
    /// follows `all`; an interface follows `default`.
    fn forwarding_parent(key: &str) -> Option<String> {
        if key == "net.ipv4.conf.all.forwarding" {
            return Some("net.ipv4.ip_forward".into());
        }
        for fam in ["net.ipv4.conf.", "net.ipv6.conf."] {
            let Some(rest) = key.strip_prefix(fam) else {
                continue;
            };
            let iface = rest.strip_suffix(".forwarding")?;
            return match iface {
                "all" => None,
                "default" if fam == "net.ipv4.conf." => Some("net.ipv4.ip_forward".into()),
                "default" => Some(format!("{fam}all.forwarding")),
                _ => Some(format!("{fam}default.forwarding")),
            };
        }
        None
    }

    /// The stored key a write of `key` goes to (`ipv4.conf.all.forwarding`
    /// is stored as `ip_forward`).
    fn canonical(key: &str) -> &str {
        if key == "net.ipv4.conf.all.forwarding" {
            "net.ipv4.ip_forward"
        } else {
            key
        }
    }

    /// Current value of a key.
    pub fn get(&self, key: &str, links: &[String]) -> Option<String> {
        let def = Self::default_of(key, links)?;
        if let Some(v) = self.values.get(Self::canonical(key)) {
            return Some(v.clone());
        }
        if let Some(parent) = Self::forwarding_parent(key) {
            return self.get(&parent, links);
        }
        Some(def.to_string())
    }

    /// Write a value. Writing a global forwarding switch (`ip_forward`,
    /// `*.conf.all.forwarding`) sets `default` and every interface too, so
    /// their own earlier values are forgotten.
    fn set(&mut self, key: &str, value: String) {
        let key = Self::canonical(key).to_string();
        let global = match key.as_str() {
            "net.ipv4.ip_forward" => Some("net.ipv4.conf."),
            "net.ipv6.conf.all.forwarding" => Some("net.ipv6.conf."),
            _ => None,
        };
        if let Some(fam) = global {
            self.values
                .retain(|k, _| !(k.starts_with(fam) && k.ends_with(".forwarding")));
        }
        self.values.insert(key, value);
    }

    /// Forget per-interface values of a removed interface.
    pub fn drop_device(&mut self, dev: &str) {
        let p6 = format!("net.ipv6.conf.{dev}.");
        let p4 = format!("net.ipv4.conf.{dev}.");
        self.values
            .retain(|k, _| !k.starts_with(&p6) && !k.starts_with(&p4));
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
                self.set(&k, v.clone());
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
