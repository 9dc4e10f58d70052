//! `virtnet net-*` and `virtnet reconcile`: the network driver from the
//! command line, on the real host or on the simulated one.
//!
//! ```text
//! virtnet --host fake:host.json --config-dir cfg --state-dir run net-define default.xml
//! virtnet --host fake:host.json --config-dir cfg --state-dir run net-start default
//! virtnet sim --state host.json dump
//! ```
//!
//! `--host fake:PATH` keeps the simulated host in the same JSON state file
//! `virtnet sim --state PATH` uses, so successive commands see one host;
//! `--host real` acts on the current network namespace and finds nft,
//! iptables, ip, tc and dnsmasq through `PATH`. network.conf is read from
//! the config directory; status files are `STATE_DIR/NAME.xml`.
//!
//! With `--connect unix:PATH` every net-* command is sent to the virtnetd
//! listening there instead (`net.*` methods, see
//! `virtnet_daemon::driver_service`) and prints exactly what the
//! embedded driver prints (the two modes share the printing functions;
//! `cli/tests/virtnetd_driver.rs` runs one script of every command both
//! ways and compares status, stdout and stderr); `reconcile` is the
//! daemon's own job at start.
//!
//! One owner per state directory (`virtnet_core::driver::lock`): a command
//! that changes something takes `STATE_DIR/driver.lock` before it reads
//! anything (the simulated host's file included), waiting for another
//! `virtnet` at most 30 s (`VIRTNET_LOCK_WAIT=SECONDS` changes that) with
//! a warning naming the holder's pid; when the holder is a virtnetd it
//! refuses at once and names the `--connect unix:PATH` to use. Queries
//! (`net-list`, `net-info`, `net-dumpxml`) need no lock, and a query that
//! ran without it does not write the simulated host back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{json, Value};
use virtnet_core::driver::{DhcpLease, Driver, DriverConfig, NetworkInfo};
use virtnet_daemon::driver_service::{info_from_json, info_to_json};
use virtnet_daemon::Client;
use virtnet_fake::FakeHost;
use virtnet_runner::{RealRunner, Runner};

use crate::client::{describe, ConnectUri};

/// Where commands run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    Real,
    Fake(PathBuf),
}

fn parse_host(s: &str) -> Result<HostSpec, String> {
    if s == "real" {
        return Ok(HostSpec::Real);
    }
    match s.strip_prefix("fake:") {
        Some(p) if !p.is_empty() => Ok(HostSpec::Fake(PathBuf::from(p))),
        _ => Err(format!(
            "invalid host '{s}': expected 'real' or 'fake:PATH' (a simulated host state file)"
        )),
    }
}

/// Options shared by the driver commands.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// Where to act: `real` (this network namespace) or `fake:PATH` (the
    /// simulated host kept in state file PATH, as `virtnet sim --state PATH`)
    #[arg(long, global = true, value_name = "real|fake:PATH", value_parser = parse_host, default_value = "real")]
    pub host: HostSpec,
    /// Persistent definitions, autostart links and network.conf
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/etc/virtnet"
    )]
    pub config_dir: PathBuf,
    /// Status files (NAME.xml), journals, dnsmasq files
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/run/virtnet"
    )]
    pub state_dir: PathBuf,
}

/// The driver commands.
#[derive(Debug, clap::Subcommand)]
pub enum NetCommand {
    /// Define (or redefine) a persistent network from an XML file
    #[command(name = "net-define")]
    Define { file: PathBuf },
    /// Remove a network's persistent definition
    #[command(name = "net-undefine")]
    Undefine { name: String },
    /// Start a defined network
    #[command(name = "net-start")]
    Start { name: String },
    /// Stop an active network, removing exactly what its start added
    #[command(name = "net-destroy")]
    Destroy { name: String },
    /// List all networks
    #[command(name = "net-list")]
    List {
        /// Print a JSON array (the daemon's `net.list` result) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Print a network's XML (the live one if active, unless --inactive)
    #[command(name = "net-dumpxml")]
    Dumpxml {
        #[arg(long)]
        inactive: bool,
        name: String,
    },
    /// Mark a network to be started when the driver starts
    #[command(name = "net-autostart")]
    Autostart {
        #[arg(long)]
        disable: bool,
        name: String,
    },
    /// Show a network's state
    #[command(name = "net-info")]
    Info {
        /// Print a JSON object (the daemon's `net.info` result) instead of text
        #[arg(long)]
        json: bool,
        name: String,
    },
    /// Print a network's DHCP leases as virsh does (kept by the leases
    /// helper dnsmasq runs, `virtnet-leaseshelper`)
    #[command(name = "net-dhcp-leases")]
    DhcpLeases {
        /// Only the leases of this MAC address
        #[arg(long)]
        mac: Option<String>,
        /// Print a JSON array instead of virsh's table
        #[arg(long)]
        json: bool,
        name: String,
    },
    /// Do what the daemon does when it starts: reload every active network's
    /// rules with the configured backend, then start autostart networks
    Reconcile,
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in the local time zone, as virsh
/// prints a lease's expiry time.
fn local_time(t: i64) -> String {
    let tt = t as libc::time_t;
    // SAFETY: localtime_r writes into the tm we own; a null result means
    // the time cannot be represented.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&tt, &mut tm) }.is_null() {
        return t.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year as i64 + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// virsh net-dhcp-leases: sorted by MAC (case-insensitive), one row per
/// lease, `-` for what is unknown.
fn leases_output(mut leases: Vec<DhcpLease>, json: bool) -> Result<String, String> {
    leases.sort_by_key(|l| l.mac.to_ascii_lowercase());
    if json {
        return serde_json::to_string_pretty(&leases)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string());
    }
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                local_time(l.expiry_time),
                l.mac.clone(),
                if l.ipv6 { "ipv6" } else { "ipv4" }.to_string(),
                format!("{}/{}", l.ip_address, l.prefix),
                dash(&l.hostname),
                dash(&l.client_id),
            ]
        })
        .collect();
    let mut out = crate::vshtable::render(
        &[
            "Expiry Time",
            "MAC address",
            "Protocol",
            "IP address",
            "Hostname",
            "Client ID or DUID",
        ],
        &rows,
        true,
    );
    out.push('\n');
    Ok(out)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn list_table(nets: &[NetworkInfo]) -> String {
    let w = nets.iter().map(|n| n.name.len()).max().unwrap_or(0).max(4);
    let mut out = format!(
        " {:<w$}   {:<8}   {:<9}   {}\n",
        "Name", "State", "Autostart", "Persistent"
    );
    out.push_str(&"-".repeat(w + 38));
    out.push('\n');
    for n in nets {
        out.push_str(&format!(
            " {:<w$}   {:<8}   {:<9}   {}\n",
            n.name,
            if n.active { "active" } else { "inactive" },
            yes_no(n.autostart),
            yes_no(n.persistent)
        ));
    }
    out
}

fn info_text(n: &NetworkInfo) -> String {
    let mut s = format!(
        "Name:           {}\nUUID:           {}\nActive:         {}\nPersistent:     {}\nAutostart:      {}\nBridge:         {}\n",
        n.name,
        n.uuid,
        yes_no(n.active),
        yes_no(n.persistent),
        yes_no(n.autostart),
        n.bridge.as_deref().unwrap_or("")
    );
    if let Some(b) = n.firewall_backend {
        s.push_str(&format!("Firewall:       {b}\n"));
    }
    s
}

fn json_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

fn list_output(nets: &[NetworkInfo], json: bool) -> String {
    if json {
        json_text(&Value::Array(nets.iter().map(info_to_json).collect()))
    } else {
        list_table(nets)
    }
}

fn info_output(n: &NetworkInfo, json: bool) -> String {
    if json {
        json_text(&info_to_json(n))
    } else {
        info_text(n)
    }
}

fn define_done(name: &str, file: &Path) -> String {
    format!("Network {name} defined from {}\n", file.display())
}

fn autostart_done(name: &str, disable: bool) -> String {
    if disable {
        format!("Network {name} unmarked as autostarted\n")
    } else {
        format!("Network {name} marked as autostarted\n")
    }
}

fn read_xml(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file)
        .map_err(|err| format!("cannot read {}: {err}", crate::out::path_text(file)))
}

fn run_cmd(d: &Driver, cmd: NetCommand) -> Result<String, String> {
    let e = |e: virtnet_core::driver::DriverError| e.to_string();
    Ok(match cmd {
        NetCommand::Define { file } => {
            let xml = read_xml(&file)?;
            let def = d.define(&xml).map_err(|err| {
                crate::out::join_location(&crate::out::path_text(&file), &err.to_string())
            })?;
            define_done(&def.name, &file)
        }
        NetCommand::Undefine { name } => {
            d.undefine(&name).map_err(e)?;
            format!("Network {name} has been undefined\n")
        }
        NetCommand::Start { name } => {
            d.start(&name).map_err(e)?;
            format!("Network {name} started\n")
        }
        NetCommand::Destroy { name } => {
            d.destroy(&name).map_err(e)?;
            format!("Network {name} destroyed\n")
        }
        NetCommand::List { json } => list_output(&d.list(), json),
        NetCommand::Dumpxml { inactive, name } => d.dumpxml(&name, inactive).map_err(e)?,
        NetCommand::Autostart { disable, name } => {
            d.set_autostart(&name, !disable).map_err(e)?;
            autostart_done(&name, disable)
        }
        NetCommand::Info { json, name } => info_output(&d.info(&name).map_err(e)?, json),
        NetCommand::DhcpLeases { mac, json, name } => {
            let leases = d.dhcp_leases(&name, mac.as_deref()).map_err(|err| {
                format!("Failed to get leases info for {name}\nerror: {}", e(err))
            })?;
            leases_output(leases, json)?
        }
        NetCommand::Reconcile => {
            let rep = d.reconcile().map_err(e)?;
            let mut s = format!("Firewall backend: {}\n", d.backend());
            for n in &rep.cleaned {
                s.push_str(&format!("Network {n}: bridge gone, cleaned up\n"));
            }
            for n in &rep.reloaded {
                s.push_str(&format!("Network {n}: firewall reloaded\n"));
            }
            for n in &rep.autostarted {
                s.push_str(&format!("Network {n}: autostarted\n"));
            }
            for p in &rep.problems {
                crate::out::err_line(&format!("warning: {p}"));
            }
            s
        }
    })
}

/// dnsmasq's `--dhcp-script` on a real host (see
/// `virtnet_core::dnsmasq::leases::default_helper`).
fn real_leases_helper() -> String {
    virtnet_core::dnsmasq::leases::default_helper()
}

/// Runs one driver command through virtnetd; the output is the embedded
/// mode's, byte for byte.
fn run_remote(c: &mut Client, cmd: NetCommand) -> Result<String, String> {
    fn call(c: &mut Client, method: &str, params: Value) -> Result<Value, String> {
        c.call(method, params).map_err(|e| describe(&e))
    }
    let str_field = |v: &Value, key: &str| -> Result<String, String> {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("virtnetd answered without a \"{key}\" string: {v}"))
    };
    Ok(match cmd {
        NetCommand::Define { file } => {
            let xml = read_xml(&file)?;
            // Driver errors name the file, as in embedded mode; refusals
            // and connection problems do not.
            let r =
                c.call("net.define", json!({ "xml": xml }))
                    .map_err(|err| match err.remote() {
                        Some(r) if r.code >= 100 => {
                            crate::out::join_location(&crate::out::path_text(&file), &r.message)
                        }
                        _ => describe(&err),
                    })?;
            define_done(&str_field(&r, "name")?, &file)
        }
        NetCommand::Undefine { name } => {
            call(c, "net.undefine", json!({ "name": name }))?;
            format!("Network {name} has been undefined\n")
        }
        NetCommand::Start { name } => {
            call(c, "net.start", json!({ "name": name }))?;
            format!("Network {name} started\n")
        }
        NetCommand::Destroy { name } => {
            call(c, "net.destroy", json!({ "name": name }))?;
            format!("Network {name} destroyed\n")
        }
        NetCommand::List { json } => {
            let r = call(c, "net.list", json!({}))?;
            let items = r
                .as_array()
                .ok_or_else(|| format!("virtnetd answered net.list with a non-array: {r}"))?;
            let nets = items
                .iter()
                .map(info_from_json)
                .collect::<Result<Vec<_>, _>>()?;
            list_output(&nets, json)
        }
        NetCommand::Dumpxml { inactive, name } => {
            let r = call(
                c,
                "net.dumpxml",
                json!({ "name": name, "inactive": inactive }),
            )?;
            str_field(&r, "xml")?
        }
        NetCommand::Autostart { disable, name } => {
            call(
                c,
                "net.autostart",
                json!({ "name": name, "enable": !disable }),
            )?;
            autostart_done(&name, disable)
        }
        NetCommand::Info { json, name } => {
            let r = call(c, "net.info", json!({ "name": name }))?;
            info_output(&info_from_json(&r)?, json)
        }
        NetCommand::DhcpLeases { mac, json, name } => {
            let r = call(c, "net.dhcp_leases", json!({ "name": name, "mac": mac }))
                .map_err(|err| format!("Failed to get leases info for {name}\nerror: {err}"))?;
            let leases: Vec<DhcpLease> = serde_json::from_value(r.clone())
                .map_err(|err| format!("virtnetd answered net.dhcp_leases with {r}: {err}"))?;
            leases_output(leases, json)?
        }
        NetCommand::Reconcile => {
            return Err(
                "reconcile is not available with --connect: virtnetd reconciles when it starts"
                    .into(),
            )
        }
    })
}

/// Runs one driver command on the daemon at `uri`; prints its output; exit
/// status 1 on error.
pub fn run_connected(uri: &ConnectUri, cmd: NetCommand) -> ExitCode {
    let result = uri
        .connect()
        .map_err(|e| describe(&e))
        .and_then(|mut c| run_remote(&mut c, cmd));
    finish(result)
}

fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(out) => {
            crate::out::print(&out);
            ExitCode::SUCCESS
        }
        Err(msg) => {
            crate::out::err_line(&format!("error: {msg}"));
            ExitCode::from(1)
        }
    }
}

impl NetCommand {
    /// Whether the command changes the state directory or the host.
    fn changes(&self) -> bool {
        !matches!(
            self,
            NetCommand::List { .. }
                | NetCommand::Dumpxml { .. }
                | NetCommand::Info { .. }
                | NetCommand::DhcpLeases { .. }
        )
    }
}

/// How long a change waits for the driver lock: `VIRTNET_LOCK_WAIT`
/// (seconds) or the driver's default.
fn lock_wait() -> Result<std::time::Duration, String> {
    match std::env::var("VIRTNET_LOCK_WAIT") {
        Err(_) => Ok(virtnet_core::driver::lock::DEFAULT_LOCK_WAIT),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|_| format!("VIRTNET_LOCK_WAIT={v:?}: expected a whole number of seconds")),
    }
}

/// A simulated host and the state file it is saved to.
type SavedFake = Option<(Arc<FakeHost>, PathBuf)>;

/// Runs one driver command; prints its output; exit status 1 on error.
pub fn run(host: &HostArgs, cmd: NetCommand) -> ExitCode {
    let wait = match lock_wait() {
        Ok(w) => w,
        Err(msg) => return finish(Err(msg)),
    };
    let notice: Arc<dyn Fn(&str) + Send + Sync> =
        Arc::new(|line: &str| crate::out::err_line(&format!("warning: {line}")));
    // A change owns the state directory before it reads anything.
    let owned = if cmd.changes() {
        match virtnet_core::driver::take_change_lock(&host.state_dir, wait, Some(&*notice)) {
            Ok(l) => Some(l),
            Err(e) => return finish(Err(e.to_string())),
        }
    } else {
        None
    };
    let (runner, fake): (Arc<dyn Runner>, SavedFake) = match &host.host {
        HostSpec::Real => (Arc::new(RealRunner::new()), None),
        HostSpec::Fake(path) => match FakeHost::load_or_new(path) {
            Ok(h) => {
                let h = Arc::new(h);
                (h.clone(), Some((h, path.clone())))
            }
            Err(err) => {
                crate::out::err_line(&format!("error: {err}"));
                return ExitCode::from(1);
            }
        },
    };
    let mut cfg = DriverConfig::new(&host.config_dir, &host.state_dir, runner);
    if host.host == HostSpec::Real {
        cfg.leases_helper = real_leases_helper();
    }
    cfg.lock_wait = wait;
    cfg.lock_notice = Some(notice);
    let opened = match owned {
        Some(l) => Driver::open_with_lock(cfg, l),
        None => Driver::open(cfg),
    };
    let mut owner = false;
    let result = opened.map_err(|e| e.to_string()).and_then(|d| {
        owner = d.holds_driver_lock();
        for r in d.reports() {
            crate::out::err_line(&format!("warning: {r}"));
        }
        run_cmd(&d, cmd)
    });
    // The simulated host changed even if the command failed: keep it —
    // unless another process owns it (this one only read it).
    if let Some((h, path)) = fake.filter(|_| owner) {
        if let Err(err) = h.save(&path) {
            crate::out::err_line(&format!("error: {err}"));
            return ExitCode::from(1);
        }
    }
    finish(result)
}
