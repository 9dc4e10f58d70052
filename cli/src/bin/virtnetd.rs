//! `virtnetd`: the virtnet network daemon.
//!
//! Serves the JSON-lines protocol of `virtnet_daemon` on three UNIX
//! sockets (read-write, read-only, admin), either passed by systemd socket
//! activation or created in `--runtime-dir`. At start, before it tells
//! systemd READY=1, it opens the network driver (undoing what interrupted
//! starts left behind) and reconciles: active networks get their firewall
//! rules reloaded with the configured backend, autostart networks start.
//!
//! With `--host fake:PATH` the simulated host file is the daemon's while it
//! runs: it is loaded once (fresh if absent), kept in memory, and saved
//! (atomically) after reconcile and after every read-write call, so when a
//! response arrives the file already holds its effects; command records are
//! dropped at each save (bounded memory). `--host real` uses
//! `virtnet_runner::RealRunner`.
//!
//! Exit statuses: 0 clean stop (signal or idle timeout), 1 failure
//! (including a host crash during reconcile, and another daemon holding
//! the state directory's driver lock), 2 bad command line, 3
//! directory or configuration problem (network.conf, fake host state file),
//! 5 cannot create sockets, 6 activation sockets that cannot be accounted
//! for (unclaimed, unidentifiable, unusable).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;

#[path = "../out.rs"]
mod out;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use virtnet_core::driver::{Driver, DriverConfig, DriverError};
use virtnet_core::store;
use virtnet_daemon::activation::{notify, ProcessEnv};
use virtnet_daemon::driver_service::ChangeHook;
use virtnet_daemon::{
    self, acquire_listeners, block_signals, install_signal_handlers, DriverService, ExitReason,
    LogControl, Server, ServerConfig, Service,
};
use virtnet_fake::FakeHost;
use virtnet_runner::{RealRunner, Runner};

/// Which host the driver acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// The simulated host, its state kept in this file.
    Fake(PathBuf),
    /// The real host (nft, iptables, ip, tc, dnsmasq).
    Real,
}

fn parse_host(s: &str) -> Result<Host, String> {
    if s == "real" {
        return Ok(Host::Real);
    }
    match s.strip_prefix("fake:") {
        Some("") => Err("fake: needs a state file, e.g. fake:/tmp/virtnet-host.json".into()),
        Some(path) => Ok(Host::Fake(PathBuf::from(path))),
        None => Err(format!("unknown host {s:?}: expected fake:PATH or real")),
    }
}

/// virtnet network daemon: manages libvirt-compatible virtual networks and
/// their firewall rules, and serves clients over UNIX sockets.
///
/// When started by systemd socket activation (LISTEN_PID/LISTEN_FDS, names in
/// LISTEN_FDNAMES: virtnetd.socket, virtnetd-ro.socket,
/// virtnetd-admin.socket; without names, sockets are recognised by their
/// path in --runtime-dir) it serves exactly the passed sockets. Otherwise it
/// creates virtnetd-sock (0600, read-write), virtnetd-sock-ro (0666,
/// read-only) and virtnetd-admin-sock (0600, admin) in --runtime-dir.
#[derive(Debug, Parser)]
#[command(name = "virtnetd", version, about, long_about, max_term_width = 100)]
struct Args {
    /// Host to act on: `real`, or `fake:PATH` for the simulated host kept in
    /// state file PATH (the file `virtnet --host fake:PATH` and `virtnet sim
    /// --state PATH` use; the daemon owns it while it runs).
    #[arg(long, value_name = "fake:PATH|real", default_value = "real", value_parser = parse_host)]
    host: Host,

    /// Directory of persistent network definitions.
    #[arg(long, value_name = "DIR", default_value = "/etc/virtnet")]
    config_dir: PathBuf,

    /// Directory of network status files (running state), journals and
    /// dnsmasq files; the same default as `virtnet --state-dir`, and like
    /// libvirt's /run/libvirt/network it is emptied at boot (autostart runs
    /// once per boot).
    #[arg(long, value_name = "DIR", default_value = "/run/virtnet")]
    state_dir: PathBuf,

    /// Network hook directory: DIR/network (and DIR/network.d/*) run as
    /// libvirt runs its network hook [default on a real host:
    /// /etc/virtnet/hooks; on a fake host: none].
    #[arg(long, value_name = "DIR")]
    hooks_dir: Option<PathBuf>,

    /// Directory of the daemon's sockets (when not socket activated).
    #[arg(long, value_name = "DIR", default_value = "/run/virtnet")]
    runtime_dir: PathBuf,

    /// Also create libvirt's socket names (virtnetworkd-sock,
    /// virtnetworkd-sock-ro, virtnetworkd-admin-sock) in --runtime-dir
    /// when not socket activated, so libvirt clients find virtnetd where
    /// they look for libvirt's network daemon (with --runtime-dir
    /// /run/libvirt: `virsh -c network:///system`). Every socket speaks
    /// both virtnet's JSON lines and libvirt's remote protocol.
    #[arg(long)]
    libvirt_sockets: bool,

    /// Exit after SECONDS with no client connected and no work in flight.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,

    /// Close a connection on which no complete request line arrives within
    /// SECONDS (counted from the connection or from the previous reply): a
    /// client that sends half a request and waits does not keep its slot
    /// and thread. Also the longest a reply may wait for a client that does
    /// not read. 0: never.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    client_timeout: u64,

    /// Most connections served at once on the read-write and admin sockets
    /// together; more are refused with an error.
    #[arg(long, value_name = "N", default_value_t = virtnet_daemon::server::DEFAULT_MAX_CLIENTS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_clients: usize,

    /// Most connections served at once on the read-only socket (which any
    /// user may use), counted apart from --max-clients so read-only
    /// clients cannot use up the other sockets' slots; more are refused.
    #[arg(long, value_name = "N", default_value_t = virtnet_daemon::server::DEFAULT_MAX_RO_CLIENTS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_ro_clients: usize,

    /// Log level or tracing filter (error, warn, info, debug, trace, or e.g.
    /// `virtnet_core=debug`); changeable at run time with daemon.set-log-level.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,

    /// Every SECONDS, compare the host with what each active network's
    /// status says should be there (`virtnet check`) and log what drifted.
    /// Off by default.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    check_interval: Option<u64>,

    /// With --check-interval: also repair what drifted (`virtnet check
    /// --repair`).
    #[arg(long, requires = "check_interval")]
    check_repair: bool,
}

/// `daemon.set-log-level` through a reloadable tracing filter.
struct ReloadLog {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

impl LogControl for ReloadLog {
    fn level(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_level(&self, level: &str) -> Result<String, String> {
        let filter =
            EnvFilter::try_new(level).map_err(|e| format!("invalid log level {level:?}: {e}"))?;
        self.handle
            .reload(filter)
            .map_err(|e| format!("cannot change log level: {e}"))?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = level.to_owned();
        Ok(level.to_owned())
    }
}

/// virtnetd's log sink: standard error, one line per record. Control
/// characters inside a record (a network name with ESC or CR, a multi-line
/// command error) are escaped (`\x1b`, `\r`, `\n`), so no value can fake
/// or hide a log line; hence no colours either. A write error (closed or
/// full standard error) is ignored: logging never stops or panics the
/// daemon.
struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut line = Vec::with_capacity(buf.len() + 8);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b'\t' => line.push(b),
                b if b < 0x20 || b == 0x7f => {
                    line.extend_from_slice(format!("\\x{b:02x}").as_bytes())
                }
                b => line.push(b),
            }
        }
        if body.len() != buf.len() {
            line.push(b'\n');
        }
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &line);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging(level: &str) -> Result<Arc<ReloadLog>, String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    let (layer, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(|| LogSink)
                .with_ansi(false)
                .log_internal_errors(false),
        )
        .try_init()
        .map_err(|e| format!("cannot initialise logging: {e}"))?;
    Ok(Arc::new(ReloadLog {
        handle,
        current: Mutex::new(level.to_owned()),
    }))
}

/// A startup failure: exit status and message.
struct Fatal(i32, String);

/// dnsmasq's `--dhcp-script` on a real host (see
/// `virtnet_core::dnsmasq::leases::default_helper`).
fn real_leases_helper() -> String {
    virtnet_core::dnsmasq::leases::default_helper()
}

/// The network driver behind the `net.*` methods: opens the driver on the
/// chosen host (crash recovery included), reconciles active and autostart
/// networks as the daemon does at every start, and returns the service.
///
/// With `--host fake:PATH` the simulated host lives in memory for the
/// daemon's lifetime: loaded from PATH (a fresh host if it does not exist)
/// and saved back to PATH after every read-write call, so `virtnet sim
/// --state PATH dump` shows it. The daemon owns PATH while it runs.
fn make_service(
    host: &Host,
    config_dir: &Path,
    state_dir: &Path,
    hooks_dir: Option<&Path>,
    rw_socket: Option<&Path>,
) -> Result<Arc<dyn Service>, Fatal> {
    let (runner, save): (Arc<dyn Runner>, Option<ChangeHook>) = match host {
        Host::Real => (Arc::new(RealRunner::new()), None),
        Host::Fake(path) => {
            let fake = FakeHost::load_or_new(path)
                .map_err(|e| Fatal(virtnet_daemon::EXIT_CONFIG, format!("fake host: {e}")))?;
            let fake = Arc::new(fake);
            fake.save(path)
                .map_err(|e| Fatal(virtnet_daemon::EXIT_CONFIG, format!("fake host: {e}")))?;
            let (h, p) = (fake.clone(), path.clone());
            let save: ChangeHook = Arc::new(move || {
                // The command records are not needed by the daemon: drop
                // them so memory stays bounded.
                let _ = h.take_records();
                if let Err(e) = h.save(&p) {
                    tracing::error!("cannot save the simulated host: {e}");
                }
            });
            (fake, Some(save))
        }
    };
    let mut cfg = DriverConfig::new(config_dir, state_dir, runner);
    if *host == Host::Real {
        cfg.leases_helper = real_leases_helper();
    }
    cfg.hooks_dir = match hooks_dir {
        Some(d) => Some(d.to_path_buf()),
        None if *host == Host::Real => Some(PathBuf::from("/etc/virtnet/hooks")),
        None => None,
    };
    let driver = Driver::open(cfg).map_err(|e| {
        let code = match e {
            DriverError::Conf(_)
            | DriverError::BackendUnavailable(_)
            | DriverError::NoUsableBackend => virtnet_daemon::EXIT_CONFIG,
            _ => virtnet_daemon::EXIT_FAILURE,
        };
        Fatal(code, format!("cannot open the network driver: {e}"))
    })?;
    // Like libvirt's pid file: one daemon per state directory.
    if !driver.holds_driver_lock() {
        return Err(Fatal(
            virtnet_daemon::EXIT_FAILURE,
            format!(
                "{} is held by another virtnetd or virtnet using state directory {}",
                state_dir.join("driver.lock").display(),
                state_dir.display()
            ),
        ));
    }
    // `virtnet` without --connect on this state directory refuses changes
    // and names this socket (see virtnet_core::driver::lock).
    if let Some(sock) = rw_socket {
        if let Err(e) = driver.announce_daemon(sock) {
            tracing::warn!("{e}");
        }
    }
    for r in driver.reports() {
        tracing::warn!("{r}");
    }
    tracing::info!(backend = %driver.backend(), "network driver open");
    let reconciled = driver.reconcile();
    if let Some(h) = &save {
        h();
    }
    let rep = reconciled.map_err(|e| {
        Fatal(
            virtnet_daemon::EXIT_FAILURE,
            format!("reconcile failed: {e}"),
        )
    })?;
    for n in &rep.cleaned {
        tracing::info!(network = %n, "bridge gone: cleaned up, now inactive");
    }
    for n in &rep.reloaded {
        tracing::info!(network = %n, "firewall reloaded");
    }
    for n in &rep.autostarted {
        tracing::info!(network = %n, "autostarted");
    }
    for p in &rep.problems {
        tracing::warn!("reconcile: {p}");
    }
    let mut svc = DriverService::new(Arc::new(driver));
    if let Some(h) = save {
        svc = svc.with_change_hook(h);
    }
    Ok(Arc::new(svc))
}

/// Creates a directory the daemon needs with exactly `mode` (whatever the
/// umask) when it is missing; an existing one is left as it is.
fn ensure_dir(what: &str, dir: &Path, mode: u32) -> Result<(), String> {
    store::create_dir_all_mode(dir, mode)
        .map_err(|e| format!("cannot create {what} {}: {e}", dir.display()))
}

/// Directories, then the driver (see [`make_service`]).
fn prepare(args: &Args, rw_socket: Option<&Path>) -> Result<Arc<dyn Service>, Fatal> {
    let config = |e: String| Fatal(virtnet_daemon::EXIT_CONFIG, e);
    ensure_dir(
        "config directory",
        &args.config_dir,
        store::PRIVATE_DIR_MODE,
    )
    .map_err(config)?;
    ensure_dir("state directory", &args.state_dir, store::STATE_DIR_MODE).map_err(config)?;
    if let Host::Fake(path) = &args.host {
        if path.is_dir() {
            return Err(config(format!(
                "fake host state file {} is a directory",
                path.display()
            )));
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            ensure_dir("fake host state directory", dir, store::STATE_DIR_MODE).map_err(config)?;
        }
    }
    make_service(
        &args.host,
        &args.config_dir,
        &args.state_dir,
        args.hooks_dir.as_deref(),
        rw_socket,
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = match init_logging(&args.log_level) {
        Ok(l) => l,
        Err(e) => {
            crate::out::err_line(&format!("virtnetd: {e}"));
            return ExitCode::from(virtnet_daemon::EXIT_USAGE as u8);
        }
    };

    // Termination signals stay pending until the server can handle them.
    if let Err(e) = block_signals() {
        crate::out::err_line(&format!("virtnetd: cannot block signals: {e}"));
        return ExitCode::from(virtnet_daemon::EXIT_FAILURE as u8);
    }
    // Activation first: it edits the process environment, which is only
    // sound before any other thread exists.
    let (mut listeners, mode) =
        match acquire_listeners(&mut ProcessEnv, std::process::id(), &args.runtime_dir) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                crate::out::err_line(&format!("virtnetd: {e}"));
                return ExitCode::from(e.exit_code() as u8);
            }
        };
    if args.libvirt_sockets && mode != virtnet_daemon::ListenMode::Activated {
        match virtnet_daemon::sockets::bind_libvirt_sockets(&args.runtime_dir) {
            Ok(l) => listeners.extend(l),
            Err(e) => {
                tracing::error!("{e}");
                crate::out::err_line(&format!("virtnetd: {e}"));
                for l in listeners.iter().filter(|l| l.unlink_on_close) {
                    if let Some(p) = &l.path {
                        let _ = std::fs::remove_file(p);
                    }
                }
                return ExitCode::from(e.exit_code() as u8);
            }
        }
    }
    tracing::info!(?mode, host = ?args.host, "virtnetd {} starting", env!("CARGO_PKG_VERSION"));

    let rw_socket = listeners
        .iter()
        .find(|l| l.kind == virtnet_daemon::SocketKind::ReadWrite)
        .and_then(|l| l.path.clone());
    let service = match prepare(&args, rw_socket.as_deref()) {
        Ok(s) => s,
        Err(Fatal(code, msg)) => {
            tracing::error!("{msg}");
            crate::out::err_line(&format!("virtnetd: {msg}"));
            // Leave no socket file behind that nobody serves.
            for l in listeners.iter().filter(|l| l.unlink_on_close) {
                if let Some(p) = &l.path {
                    let _ = std::fs::remove_file(p);
                }
            }
            return ExitCode::from(code as u8);
        }
    };
    let config = ServerConfig {
        idle_timeout: args.timeout.map(Duration::from_secs),
        client_timeout: Some(args.client_timeout)
            .filter(|&s| s > 0)
            .map(Duration::from_secs),
        max_clients: args.max_clients,
        max_ro_clients: args.max_ro_clients,
        log_control: Some(log),
        on_stopping: Some(Arc::new(|reason| {
            tracing::info!(?reason, "stopping");
            notify::notify_from_env("STOPPING=1");
        })),
        ..ServerConfig::default()
    };
    let server = match Server::new(config, listeners, service.clone()) {
        Ok(s) => s,
        Err(e) => {
            crate::out::err_line(&format!("virtnetd: {e}"));
            return ExitCode::from(virtnet_daemon::EXIT_FAILURE as u8);
        }
    };
    if let Err(e) = install_signal_handlers(&server.shutdown_handle()) {
        crate::out::err_line(&format!("virtnetd: cannot install signal handlers: {e}"));
        return ExitCode::from(virtnet_daemon::EXIT_FAILURE as u8);
    }
    if let Some(secs) = args.check_interval {
        let svc = service.clone();
        let repair = args.check_repair;
        let spawned = std::thread::Builder::new()
            .name("drift-check".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(secs));
                svc.check_drift(repair);
            });
        if let Err(e) = spawned {
            crate::out::err_line(&format!("virtnetd: cannot start the drift check: {e}"));
            return ExitCode::from(virtnet_daemon::EXIT_FAILURE as u8);
        }
    }
    notify::notify_from_env("READY=1");
    let result = server.run();
    match result {
        Ok(ExitReason::Requested | ExitReason::Signal(_) | ExitReason::IdleTimeout) => {
            ExitCode::from(virtnet_daemon::EXIT_OK as u8)
        }
        Err(e) => {
            crate::out::err_line(&format!("virtnetd: {e}"));
            ExitCode::from(virtnet_daemon::EXIT_FAILURE as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn host_values() {
        assert_eq!(parse_host("real"), Ok(Host::Real));
        assert_eq!(parse_host("fake:/x/y"), Ok(Host::Fake("/x/y".into())));
        assert!(parse_host("fake:").is_err());
        assert!(parse_host("qemu").is_err());
    }
}
