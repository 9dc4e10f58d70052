//! Simulated processes: `dnsmasq` started by a driver (it "daemonises":
//! the command returns at once, the process stays in the table) and `kill`.
//!
//! `dnsmasq --conf-file=PATH ...` reads PATH from the real filesystem (the
//! driver wrote it there), checks the options it understands, writes the
//! `pid-file=` named in the configuration (also on the real filesystem) and
//! records the process with its argv and configuration text. Like the real
//! one it refuses to start (exit 3) when `enable-tftp` is set and the
//! `tftp-root=` directory cannot be opened; `--test` only checks syntax.
//! Also as the real one: an unreadable configuration file (exit 3), an
//! unknown option line ("bad option"), a repeated single-value option
//! ("illegal repeated keyword"), a `dhcp-range` without an address (exit 1).
//! Tests that start a network with TFTP must create its root. `dnsmasq
//! --version` prints the version banner of the reference host (2.90).
//! Checked against the real dnsmasq by `tests/dnsmasq_startup.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use virtnet_runner::Output;

/// One simulated process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub argv: Vec<String>,
    /// Path of the configuration file it was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf_file: Option<String>,
    /// Content of that file when the process started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<String>,
    /// Number of SIGHUPs received (a refresh).
    #[serde(default)]
    pub hups: u32,
}

/// The process table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcState {
    pub procs: BTreeMap<u32, Process>,
    pub next_pid: u32,
}

impl Default for ProcState {
    fn default() -> Self {
        ProcState {
            procs: BTreeMap::new(),
            next_pid: 1000,
        }
    }
}

const DNSMASQ_VERSION: &str = "Dnsmasq version 2.90  Copyright (c) 2000-2024 Simon Kelley
Compile time options: IPv6 GNU-getopt DBus no-UBus i18n IDN2 DHCP DHCPv6 no-Lua TFTP conntrack ipset nftset auth cryptohash DNSSEC loop-detect inotify dumpfile

This software comes with ABSOLUTELY NO WARRANTY.
Dnsmasq is free software, and you are welcome to redistribute it
under the terms of the GNU General Public License, version 2 or 3.
";

fn dnsmasq_fail(status: i32, msg: &str) -> Output {
    Output::failed(status, format!("\ndnsmasq: {msg}\n"))
}

/// Options of libvirt-generated configurations that the simulator accepts
/// (anything else is "bad option", as dnsmasq reports unknown keys).
const KNOWN_CONF_KEYS: &[&str] = &[
    "strict-order",
    "pid-file",
    "except-interface",
    "bind-dynamic",
    "bind-interfaces",
    "interface",
    "listen-address",
    "dhcp-range",
    "dhcp-no-override",
    "dhcp-authoritative",
    "dhcp-lease-max",
    "dhcp-hostsfile",
    "addn-hosts",
    "domain",
    "expand-hosts",
    "local",
    "domain-needed",
    "no-resolv",
    "server",
    "rev-server",
    "enable-ra",
    "enable-tftp",
    "tftp-root",
    "dhcp-boot",
    "dhcp-option",
    "dhcp-option-force",
    "srv-host",
    "txt-record",
    "ptr-record",
    "host-record",
    "cname",
    "mx-host",
    "port",
    "no-hosts",
    "user",
    "group",
    "dhcp-leasefile",
    "leasefile-ro",
    "dhcp-script",
    "conf-file",
    "no-negcache",
    "dns-forward-max",
    "cache-size",
    "log-queries",
    "log-dhcp",
    "ra-param",
    "dhcp-host",
    "dhcp-match",
    "dhcp-ignore",
    "dhcp-sequential-ip",
    "dhcp-rapid-commit",
    "filterwin2k",
    "neg-ttl",
    "local-ttl",
    "max-ttl",
    "address",
    "ipset",
    "nftset",
    "dnssec",
    "trust-anchor",
];

/// Options dnsmasq accepts once only ("illegal repeated keyword").
const SINGLE_KEYS: &[&str] = &[
    "port",
    "user",
    "group",
    "pid-file",
    "dhcp-lease-max",
    "cache-size",
    "dhcp-leasefile",
    "dhcp-script",
    "neg-ttl",
];

impl ProcState {
    /// Run `dnsmasq ARGS...`.
    pub fn dnsmasq(&mut self, argv: &[String]) -> Output {
        let args = &argv[1..];
        if args.iter().any(|a| a == "--version" || a == "-v") {
            return Output::ok(DNSMASQ_VERSION);
        }
        let mut conf_file: Option<String> = None;
        let mut test = false;
        for a in args {
            if let Some(p) = a.strip_prefix("--conf-file=") {
                conf_file = Some(p.to_string());
            } else if a == "--test" {
                test = true;
            } else if a.starts_with("--leasefile-ro")
                || a.starts_with("--dhcp-script=")
                || a.starts_with("--keep-in-foreground")
                || a == "-k"
                || a.starts_with("--pid-file=")
                || a.starts_with("--port=")
            {
            } else {
                return Output::failed(1, "\ndnsmasq: bad command line options: try --help\n");
            }
        }
        let mut pid_file: Option<String> = args
            .iter()
            .find_map(|a| a.strip_prefix("--pid-file=").map(str::to_string));
        let mut config = None;
        let mut tftp: (bool, Option<String>) = (false, None);
        if let Some(path) = &conf_file {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    return dnsmasq_fail(3, &format!("cannot read {path}: {}", io_reason(&e)))
                }
            };
            let mut seen: Vec<&str> = Vec::new();
            for (n, line) in text.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                let key = l.split('=').next().unwrap_or("").trim();
                if !KNOWN_CONF_KEYS.contains(&key) {
                    return dnsmasq_fail(1, &format!("bad option at line {} of {path}", n + 1));
                }
                if SINGLE_KEYS.contains(&key) {
                    if seen.contains(&key) {
                        return dnsmasq_fail(
                            1,
                            &format!("illegal repeated keyword at line {} of {path}", n + 1),
                        );
                    }
                    seen.push(key);
                }
                let value = l.split_once('=').map(|(_, v)| v.trim()).unwrap_or("");
                if key == "dhcp-range"
                    && !value
                        .split(',')
                        .any(|f| f.trim().parse::<std::net::IpAddr>().is_ok())
                {
                    return dnsmasq_fail(1, &format!("bad dhcp-range at line {} of {path}", n + 1));
                }
                if key == "pid-file" {
                    pid_file = l.split_once('=').map(|(_, v)| v.trim().to_string());
                }
                if key == "enable-tftp" {
                    tftp.0 = true;
                }
                if key == "tftp-root" {
                    // tftp-root=DIR[,INTERFACE]
                    tftp.1 = l
                        .split_once('=')
                        .map(|(_, v)| v.split(',').next().unwrap_or(v).trim().to_string());
                }
            }
            config = Some(text);
        }
        if test {
            return Output::failed(0, "dnsmasq: syntax check OK.\n");
        }
        // At start-up (not in --test) dnsmasq refuses a TFTP root it
        // cannot open as a directory.
        if let (true, Some(dir)) = &tftp {
            let reason = match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some("Not a directory".to_string()),
                Err(e) => Some(io_reason(&e)),
            };
            if let Some(r) = reason {
                return dnsmasq_fail(3, &format!("TFTP directory {dir} inaccessible: {r}"));
            }
        }
        let pid = self.next_pid;
        if let Some(pf) = &pid_file {
            if let Err(e) = std::fs::write(pf, format!("{pid}\n")) {
                return dnsmasq_fail(
                    3,
                    &format!("failed to open pidfile {pf}: {}", io_reason(&e)),
                );
            }
        }
        self.next_pid += 1;
        self.procs.insert(
            pid,
            Process {
                pid,
                argv: argv.to_vec(),
                conf_file,
                config,
                pid_file,
                hups: 0,
            },
        );
        Output::default()
    }

    /// Run `kill [-SIG] PID...`.
    pub fn kill(&mut self, args: &[String]) -> Output {
        let mut sig = "TERM".to_string();
        let mut pids = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-s" {
                if let Some(s) = it.next() {
                    sig = s.trim_start_matches("SIG").to_string();
                }
            } else if let Some(s) = a.strip_prefix('-') {
                sig = s.trim_start_matches("SIG").to_string();
            } else {
                pids.push(a.clone());
            }
        }
        if pids.is_empty() {
            return Output::failed(
                2,
                "kill: usage: kill [-s sigspec | -n signum | -sigspec] pid | jobspec ... or kill -l [sigspec]\n",
            );
        }
        let sig = match sig.as_str() {
            "15" => "TERM",
            "9" => "KILL",
            "1" => "HUP",
            "0" => "0",
            s => s,
        }
        .to_string();
        let mut out = Output::default();
        for p in pids {
            let Ok(pid) = p.parse::<u32>() else {
                out.status = 1;
                out.stderr
                    .push_str(&format!("kill: failed to parse argument: '{p}'\n"));
                continue;
            };
            if !self.procs.contains_key(&pid) {
                out.status = 1;
                out.stderr
                    .push_str(&format!("kill: ({pid}) - No such process\n"));
                continue;
            }
            match sig.as_str() {
                "TERM" | "KILL" | "INT" => {
                    // dnsmasq leaves its pid file behind; the driver removes it.
                    self.procs.remove(&pid);
                }
                "HUP" => {
                    if let Some(p) = self.procs.get_mut(&pid) {
                        p.hups += 1;
                    }
                }
                "0" => {}
                s => {
                    out.status = 1;
                    out.stderr.push_str(&format!("kill: unknown signal: {s}\n"));
                }
            }
        }
        out
    }

    /// Readable dump for state snapshots.
    pub fn dump(&self) -> String {
        self.procs
            .values()
            .map(|p| format!("{} {}\n", p.pid, p.argv.join(" ")))
            .collect()
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
        _ => {
            // "Not a directory (os error 20)" -> "Not a directory"
            let t = e.to_string();
            match t.find(" (os error") {
                Some(i) => t[..i].to_string(),
                None => t,
            }
        }
    }
}
