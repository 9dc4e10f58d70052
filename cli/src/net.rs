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
use virtnet_core::driver::{DhcpLease, Driver, DriverConfig, ListFilter, NetworkInfo, UpdateFlags};
use virtnet_core::netxml::{UpdateCommand, UpdateError, UpdateSection};
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
    /// Network hook directory: `DIR/network` (and `DIR/network.d/*`) run as
    /// libvirt runs its network hook [default on a real host:
    /// /etc/virtnet/hooks; on a fake host: none]
    #[arg(long, global = true, value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
}

/// The hook directory a driver uses: `--hooks-dir`, else libvirt's place
/// for virtnet on a real host and none on a simulated one (it cannot run a
/// script).
pub fn effective_hooks_dir(given: Option<&Path>, real: bool) -> Option<PathBuf> {
    match given {
        Some(d) => Some(d.to_path_buf()),
        None if real => Some(PathBuf::from(DEFAULT_HOOKS_DIR)),
        None => None,
    }
}

/// virtnet's counterpart of libvirt's /etc/libvirt/hooks.
pub const DEFAULT_HOOKS_DIR: &str = "/etc/virtnet/hooks";

/// `net-list`'s options: virsh's, and `--json`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListArgs {
    /// List inactive networks
    #[arg(long)]
    pub inactive: bool,
    /// List inactive & active networks
    #[arg(long)]
    pub all: bool,
    /// List persistent networks
    #[arg(long)]
    pub persistent: bool,
    /// List transient networks
    #[arg(long)]
    pub transient: bool,
    /// List networks with autostart enabled
    #[arg(long)]
    pub autostart: bool,
    /// List networks with autostart disabled
    #[arg(long)]
    pub no_autostart: bool,
    /// List UUIDs only
    #[arg(long)]
    pub uuid: bool,
    /// List network names only
    #[arg(long)]
    pub name: bool,
    /// List table (default)
    #[arg(long)]
    pub table: bool,
    /// Show network title
    #[arg(long)]
    pub title: bool,
    /// Print a JSON array (the daemon's `net.list` result) instead of a table
    #[arg(long)]
    pub json: bool,
}

impl ListArgs {
    /// virsh's flags: active networks unless --inactive or --all.
    pub fn filter(&self) -> ListFilter {
        ListFilter {
            active: self.all || !self.inactive,
            inactive: self.all || self.inactive,
            persistent: self.persistent,
            transient: self.transient,
            autostart: self.autostart,
            no_autostart: self.no_autostart,
        }
    }

    /// virsh's refusal of more than one output form.
    fn check(&self) -> Result<(), String> {
        let forms = [self.table, self.name, self.uuid, self.json]
            .iter()
            .filter(|b| **b)
            .count();
        if forms <= 1 {
            return Ok(());
        }
        Err(if self.json {
            "Only one argument from --table, --name, --uuid and --json may be specified.".into()
        } else {
            "Only one argument from --table, --name and --uuid may be specified.".into()
        })
    }
}

/// The driver commands. A NETWORK argument is a network's name or UUID
/// (a 36-character argument is tried as a UUID first, as virsh does).
#[derive(Debug, clap::Subcommand)]
pub enum NetCommand {
    /// Define (or redefine) a persistent network from an XML file
    #[command(name = "net-define")]
    Define { file: PathBuf },
    /// Create and start a transient network from an XML file
    #[command(name = "net-create")]
    Create { file: PathBuf },
    /// Remove a network's persistent definition
    #[command(name = "net-undefine")]
    Undefine {
        /// Network name or UUID
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// Start a defined network
    #[command(name = "net-start")]
    Start {
        /// Network name or UUID
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// Stop an active network, removing exactly what its start added (a
    /// transient network disappears)
    #[command(name = "net-destroy")]
    Destroy {
        /// Network name or UUID
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// List networks (active ones unless --inactive or --all)
    #[command(name = "net-list")]
    List(ListArgs),
    /// Print a network's XML (the live one if active, unless --inactive)
    #[command(name = "net-dumpxml")]
    Dumpxml {
        #[arg(long)]
        inactive: bool,
        /// Network name or UUID
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// Mark a network to be started when the driver starts
    #[command(name = "net-autostart")]
    Autostart {
        #[arg(long)]
        disable: bool,
        /// Network name or UUID
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// Show a network's state
    #[command(name = "net-info")]
    Info {
        /// Print a JSON object (the daemon's `net.info` result) instead of text
        #[arg(long)]
        json: bool,
        /// Network name or UUID
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// Print a network's UUID
    #[command(name = "net-uuid")]
    Uuid {
        /// Network name
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// Print the name of the network with this UUID
    #[command(name = "net-name")]
    Name {
        /// Network UUID
        #[arg(value_name = "UUID")]
        uuid: String,
    },
    /// Change one section of a network's definition, live and/or persistent
    /// (virsh net-update): COMMAND is add, add-first, add-last, modify or
    /// delete; SECTION ip-dhcp-host, ip-dhcp-range, forward-interface,
    /// portgroup, dns-host, dns-txt or dns-srv; XML the element, or a file
    /// holding it when it does not start with '<'
    #[command(name = "net-update")]
    Update {
        name: String,
        command: String,
        section: String,
        xml: String,
        /// Which <ip> (0 = the first) for the DHCP sections; default: the
        /// one with DHCP, else the first IPv4, else the first IPv6
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        parent_index: Option<i32>,
        /// Change the running network
        #[arg(long, conflicts_with = "current")]
        live: bool,
        /// Change the persistent definition
        #[arg(long, conflicts_with = "current")]
        config: bool,
        /// The running network if active, else the persistent definition (default)
        #[arg(long)]
        current: bool,
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
    /// Do what libvirt's reload (SIGHUP to the daemon) does: read the
    /// definitions again, re-apply every active network's firewall rules
    /// (removed with the saved plan, added again), refresh dnsmasq, start
    /// autostart networks that are not running
    Reload,
    /// Compare the host with what each active network's status says should
    /// be there (its firewall rules, the private chains); exit status 1 when
    /// something is missing or altered
    Check {
        /// Restore what drifted: remove with the saved plan (the rules
        /// found intact), set the private chains up again, add afresh
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
        /// Only this network (name or UUID)
        #[arg(value_name = "NETWORK")]
        name: Option<String>,
    },
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

/// virsh's order: names compared ignoring ASCII case.
fn sort_like_virsh(nets: &mut [NetworkInfo]) {
    nets.sort_by(|a, b| {
        a.name
            .to_ascii_lowercase()
            .cmp(&b.name.to_ascii_lowercase())
            .then_with(|| a.name.cmp(&b.name))
    });
}

fn list_table(nets: &[NetworkInfo], title: bool) -> String {
    let mut columns = vec!["Name", "State", "Autostart", "Persistent"];
    if title {
        columns.push("Title");
    }
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            let mut row = vec![
                n.name.clone(),
                if n.active { "active" } else { "inactive" }.to_string(),
                yes_no(n.autostart).to_string(),
                yes_no(n.persistent).to_string(),
            ];
            if title {
                row.push(n.title.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    crate::vshtable::render(&columns, &rows, true)
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

/// `net-list`'s output for the networks its filter selected. Like every
/// virsh command, the text forms end with an empty line.
fn list_output(mut nets: Vec<NetworkInfo>, args: &ListArgs) -> String {
    if args.json {
        return json_text(&Value::Array(nets.iter().map(info_to_json).collect()));
    }
    sort_like_virsh(&mut nets);
    let mut out = if args.uuid {
        nets.iter().map(|n| format!("{}\n", n.uuid)).collect()
    } else if args.name {
        nets.iter().map(|n| format!("{}\n", n.name)).collect()
    } else {
        list_table(&nets, args.title)
    };
    out.push('\n');
    out
}

/// `net-name`: virsh looks an argument up by UUID only when it has a
/// UUID's length (36); otherwise it fails without asking the driver.
fn uuid_argument(uuid: &str) -> Result<(), String> {
    if uuid.len() == 36 {
        Ok(())
    } else {
        Err(format!("failed to get network '{uuid}'"))
    }
}

fn create_done(name: &str, file: &Path) -> String {
    format!("Network {name} created from {}\n", file.display())
}

fn info_output(n: &NetworkInfo, json: bool) -> String {
    if json {
        json_text(&info_to_json(n))
    } else {
        info_text(n)
    }
}

/// Set when a `check` found drift left (exit status 1 after its report).
static DRIFT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn drift_text(d: &virtnet_core::driver::Drift) -> String {
    use virtnet_core::driver::DriftKind;
    let kind = match d.kind {
        DriftKind::Missing => "missing",
        DriftKind::Altered => "altered",
        DriftKind::NoPlan => "no plan",
    };
    let mut s = format!("  {kind}: {}\n", d.expected);
    if let Some(f) = &d.found {
        s.push_str(&format!("    found: {f}\n"));
    }
    s
}

fn check_text(r: &virtnet_core::driver::CheckReport) -> String {
    let mut s = String::new();
    for n in &r.networks {
        let backend = n
            .backend
            .map(|b| b.to_string())
            .unwrap_or_else(|| "no plan".into());
        if n.drift.is_empty() {
            s.push_str(&format!(
                "Network {} ({backend}): {} rules checked, none drifted\n",
                n.name, n.checked
            ));
        } else {
            s.push_str(&format!(
                "Network {} ({backend}): {} rules checked, {} drifted\n",
                n.name,
                n.checked,
                n.drift.len()
            ));
            for d in &n.drift {
                s.push_str(&drift_text(d));
            }
        }
    }
    if r.private_chains.is_empty() {
        s.push_str("Private chains: as expected\n");
    } else {
        s.push_str(&format!(
            "Private chains: {} missing\n",
            r.private_chains.len()
        ));
        for d in &r.private_chains {
            s.push_str(&drift_text(d));
        }
    }
    s
}

/// `check`'s output; notes drift for the exit status.
fn check_output(
    before: &virtnet_core::driver::CheckReport,
    after: Option<&virtnet_core::driver::CheckReport>,
    json: bool,
) -> String {
    let last = after.unwrap_or(before);
    if last.drifted() {
        DRIFT.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    if json {
        let v = match after {
            Some(a) => json!({ "before": before, "after": a }),
            None => serde_json::to_value(before).unwrap_or(Value::Null),
        };
        return json_text(&v);
    }
    let mut s = check_text(before);
    if let Some(a) = after {
        if before.drifted() {
            s.push_str("Repaired; now:\n");
            s.push_str(&check_text(a));
        }
    }
    s
}

fn reload_text(reloaded: &[String], autostarted: &[String], problems: &[String]) -> String {
    let mut s = String::new();
    for n in reloaded {
        s.push_str(&format!("Network {n}: firewall reloaded\n"));
    }
    for n in autostarted {
        s.push_str(&format!("Network {n}: autostarted\n"));
    }
    for p in problems {
        crate::out::err_line(&format!("warning: {p}"));
    }
    s
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

/// What `net-update` was asked: parsed the way virsh parses it (names
/// first, then the element, read from a file unless it starts with '<').
struct UpdateArgs {
    name: String,
    command: UpdateCommand,
    section: UpdateSection,
    parent_index: i32,
    xml: String,
    /// The file the element came from (errors name it).
    file: Option<PathBuf>,
    flags: UpdateFlags,
}

fn update_args(
    name: String,
    command: &str,
    section: &str,
    xml: String,
    parent_index: Option<i32>,
    live: bool,
    config: bool,
) -> Result<UpdateArgs, String> {
    let command: UpdateCommand = command.parse()?;
    let section: UpdateSection = section.parse()?;
    let (xml, file) = if xml.starts_with('<') {
        (xml, None)
    } else {
        let path = PathBuf::from(&xml);
        (read_xml(&path)?, Some(path))
    };
    Ok(UpdateArgs {
        name,
        command,
        section,
        parent_index: parent_index.unwrap_or(-1),
        xml,
        file,
        flags: UpdateFlags { live, config },
    })
}

/// virsh's words after a successful update, from what was changed.
fn update_done(name: &str, live: bool, config: bool) -> String {
    match (live, config) {
        (true, true) => format!("Updated network {name} persistent config and live state\n"),
        (false, true) => format!("Updated network {name} persistent config\n"),
        _ => format!("Updated network {name} live state\n"),
    }
}

/// An update error: an XML error names the file the element came from.
fn update_error(file: &Option<PathBuf>, msg: String, is_xml: bool) -> String {
    match file {
        Some(f) if is_xml => crate::out::join_location(&crate::out::path_text(f), &msg),
        _ => msg,
    }
}

fn read_xml(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file)
        .map_err(|err| format!("cannot read {}: {err}", crate::out::path_text(file)))
}

fn run_cmd(d: &Driver, cmd: NetCommand) -> Result<String, String> {
    let e = |e: virtnet_core::driver::DriverError| e.to_string();
    // Messages name the network as it was given (virsh prints its argument).
    let net = |arg: &str| d.resolve(arg).map_err(e);
    Ok(match cmd {
        NetCommand::Define { file } => {
            let xml = read_xml(&file)?;
            let def = d.define(&xml).map_err(|err| {
                crate::out::join_location(&crate::out::path_text(&file), &err.to_string())
            })?;
            define_done(&def.name, &file)
        }
        NetCommand::Create { file } => {
            let xml = read_xml(&file)?;
            let def = d.create(&xml).map_err(|err| {
                crate::out::join_location(&crate::out::path_text(&file), &err.to_string())
            })?;
            create_done(&def.name, &file)
        }
        NetCommand::Undefine { name } => {
            d.undefine(&net(&name)?).map_err(e)?;
            format!("Network {name} has been undefined\n")
        }
        NetCommand::Start { name } => {
            d.start(&net(&name)?).map_err(e)?;
            format!("Network {name} started\n")
        }
        NetCommand::Destroy { name } => {
            d.destroy(&net(&name)?).map_err(e)?;
            format!("Network {name} destroyed\n")
        }
        NetCommand::List(args) => {
            args.check()?;
            list_output(d.list_filtered(&args.filter()), &args)
        }
        NetCommand::Dumpxml { inactive, name } => d.dumpxml(&net(&name)?, inactive).map_err(e)?,
        NetCommand::Autostart { disable, name } => {
            d.set_autostart(&net(&name)?, !disable).map_err(e)?;
            autostart_done(&name, disable)
        }
        NetCommand::Info { json, name } => info_output(&d.lookup(&name).map_err(e)?, json),
        NetCommand::Uuid { name } => format!("{}\n\n", d.info(&name).map_err(e)?.uuid),
        NetCommand::Name { uuid } => {
            uuid_argument(&uuid)?;
            format!("{}\n\n", d.lookup_by_uuid(&uuid).map_err(e)?.name)
        }
        NetCommand::Reload => {
            let rep = d.reload().map_err(e)?;
            reload_text(&rep.reloaded, &rep.autostarted, &rep.problems)
        }
        NetCommand::Check { repair, json, name } => {
            let name = name.map(|n| net(&n)).transpose()?;
            if repair {
                let (before, after) = d.repair(name.as_deref()).map_err(e)?;
                check_output(&before, Some(&after), json)
            } else {
                check_output(&d.check(name.as_deref()).map_err(e)?, None, json)
            }
        }
        NetCommand::Update {
            name,
            command,
            section,
            xml,
            parent_index,
            live,
            config,
            current: _,
        } => {
            let u = update_args(name, &command, &section, xml, parent_index, live, config)?;
            let target = net(&u.name)?;
            let r = d
                .update(
                    &target,
                    u.command,
                    u.section,
                    u.parent_index,
                    &u.xml,
                    u.flags,
                )
                .map_err(|err| {
                    let is_xml = matches!(
                        err,
                        virtnet_core::driver::DriverError::Update(UpdateError::Xml(_))
                    );
                    update_error(&u.file, err.to_string(), is_xml)
                })?;
            update_done(&u.name, r.live, r.config)
        }
        NetCommand::DhcpLeases { mac, json, name } => {
            let leases = d
                .resolve(&name)
                .and_then(|n| d.dhcp_leases(&n, mac.as_deref()))
                .map_err(|err| {
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
        NetCommand::Create { file } => {
            let xml = read_xml(&file)?;
            let r =
                c.call("net.create", json!({ "xml": xml }))
                    .map_err(|err| match err.remote() {
                        Some(r) if r.code >= 100 => {
                            crate::out::join_location(&crate::out::path_text(&file), &r.message)
                        }
                        _ => describe(&err),
                    })?;
            create_done(&str_field(&r, "name")?, &file)
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
        NetCommand::List(args) => {
            args.check()?;
            let r = call(c, "net.list", json!({ "flags": args.filter().flags() }))?;
            let items = r
                .as_array()
                .ok_or_else(|| format!("virtnetd answered net.list with a non-array: {r}"))?;
            let nets = items
                .iter()
                .map(info_from_json)
                .collect::<Result<Vec<_>, _>>()?;
            list_output(nets, &args)
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
        NetCommand::Uuid { name } => {
            // By name only, as virsh's net-uuid: a UUID-shaped name is a name.
            let r = call(c, "net.info", json!({ "name": name }))?;
            let i = info_from_json(&r)?;
            if i.name != name {
                return Err(virtnet_core::driver::DriverError::NoNetwork(name).to_string());
            }
            format!("{}\n\n", i.uuid)
        }
        NetCommand::Name { uuid } => {
            uuid_argument(&uuid)?;
            let r = call(c, "net.info", json!({ "uuid": uuid }))?;
            format!("{}\n\n", info_from_json(&r)?.name)
        }
        NetCommand::Reload => {
            let r = call(c, "net.reload", json!({}))?;
            let list = |k: &str| -> Vec<String> {
                r.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            reload_text(&list("reloaded"), &list("autostarted"), &list("problems"))
        }
        NetCommand::Check { repair, json, name } => {
            let method = if repair { "net.repair" } else { "net.check" };
            let params = match name {
                Some(n) => json!({ "name": n }),
                None => json!({}),
            };
            let r = call(c, method, params)?;
            let parse = |v: &Value| -> Result<virtnet_core::driver::CheckReport, String> {
                serde_json::from_value(v.clone())
                    .map_err(|err| format!("virtnetd answered {method} with a bad report: {err}"))
            };
            if repair {
                let before = parse(r.get("before").unwrap_or(&Value::Null))?;
                let after = parse(r.get("after").unwrap_or(&Value::Null))?;
                check_output(&before, Some(&after), json)
            } else {
                check_output(&parse(&r)?, None, json)
            }
        }
        NetCommand::Update {
            name,
            command,
            section,
            xml,
            parent_index,
            live,
            config,
            current: _,
        } => {
            let u = update_args(name, &command, &section, xml, parent_index, live, config)?;
            let params = json!({
                "name": u.name,
                "command": u.command.as_str(),
                "section": u.section.as_str(),
                "xml": u.xml,
                "parent_index": u.parent_index,
                "live": u.flags.live,
                "config": u.flags.config,
            });
            let r = c
                .call("net.update", params)
                .map_err(|err| match err.remote() {
                    Some(r) if r.code >= 100 => update_error(
                        &u.file,
                        r.message.clone(),
                        r.code == virtnet_daemon::driver_service::driver_codes::INVALID_DEFINITION,
                    ),
                    _ => describe(&err),
                })?;
            let flag = |k: &str| r.get(k).and_then(Value::as_bool).unwrap_or(false);
            update_done(&u.name, flag("live"), flag("config"))
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
            if DRIFT.load(std::sync::atomic::Ordering::SeqCst) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
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
                | NetCommand::Uuid { .. }
                | NetCommand::Name { .. }
                | NetCommand::Check { repair: false, .. }
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
    cfg.hooks_dir = effective_hooks_dir(host.hooks_dir.as_deref(), host.host == HostSpec::Real);
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
