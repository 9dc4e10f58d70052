//! `virtnetd`: the virtnet network daemon.
//!
//! Serves the JSON-lines protocol of `virtnet_core::daemon` on three UNIX
//! sockets (read-write, read-only, admin), either passed by systemd socket
//! activation or created in `--runtime-dir`. Exit statuses: 0 clean stop
//! (signal or idle timeout), 1 failure, 2 bad command line, 3 directory
//! problem, 5 cannot create sockets, 6 activation sockets that cannot be
//! accounted for (unclaimed, unidentifiable, unusable).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use virtnet_core::activation::{notify, ProcessEnv};
use virtnet_core::daemon::{
    self, acquire_listeners, block_signals, install_signal_handlers, ExitReason, LogControl,
    Server, ServerConfig, Service, UnavailableDriver,
};

/// Which host the driver acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// The simulated host, its state kept under this directory.
    Fake(PathBuf),
    /// The real host (nft, iptables, ip, tc, dnsmasq).
    Real,
}

fn parse_host(s: &str) -> Result<Host, String> {
    if s == "real" {
        return Ok(Host::Real);
    }
    match s.strip_prefix("fake:") {
        Some("") => Err("fake: needs a state directory, e.g. fake:/tmp/virtnet-sim".into()),
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
    /// Host to act on: `real`, or `fake:PATH` for the simulated host with its
    /// state under PATH.
    #[arg(long, value_name = "fake:PATH|real", default_value = "real", value_parser = parse_host)]
    host: Host,

    /// Directory of persistent network definitions.
    #[arg(long, value_name = "DIR", default_value = "/etc/virtnet")]
    config_dir: PathBuf,

    /// Directory of network status files (running state).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/virtnet")]
    state_dir: PathBuf,

    /// Directory of the daemon's sockets (when not socket activated).
    #[arg(long, value_name = "DIR", default_value = "/run/virtnet")]
    runtime_dir: PathBuf,

    /// Exit after SECONDS with no client connected and no work in flight.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,

    /// Log level or tracing filter (error, warn, info, debug, trace, or e.g.
    /// `virtnet_core=debug`); changeable at run time with daemon.set-log-level.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
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

fn init_logging(level: &str) -> Result<Arc<ReloadLog>, String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    let (layer, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .map_err(|e| format!("cannot initialise logging: {e}"))?;
    Ok(Arc::new(ReloadLog {
        handle,
        current: Mutex::new(level.to_owned()),
    }))
}

/// The service behind the driver methods. The network driver is wired in
/// here (one line) once it exists; until then every driver method answers
/// "driver not available in this build".
fn make_service(_host: &Host, _config_dir: &Path, _state_dir: &Path) -> Arc<dyn Service> {
    Arc::new(UnavailableDriver)
}

fn ensure_dir(what: &str, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {what} {}: {e}", dir.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = match init_logging(&args.log_level) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("virtnetd: {e}");
            return ExitCode::from(daemon::EXIT_USAGE as u8);
        }
    };

    // Termination signals stay pending until the server can handle them.
    if let Err(e) = block_signals() {
        eprintln!("virtnetd: cannot block signals: {e}");
        return ExitCode::from(daemon::EXIT_FAILURE as u8);
    }
    // Activation first: it edits the process environment, which is only
    // sound before any other thread exists.
    let (listeners, mode) =
        match acquire_listeners(&mut ProcessEnv, std::process::id(), &args.runtime_dir) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("virtnetd: {e}");
                return ExitCode::from(e.exit_code() as u8);
            }
        };
    tracing::info!(?mode, host = ?args.host, "virtnetd {} starting", env!("CARGO_PKG_VERSION"));

    for (what, dir) in [
        ("config directory", &args.config_dir),
        ("state directory", &args.state_dir),
    ] {
        if let Err(e) = ensure_dir(what, dir) {
            tracing::error!("{e}");
            eprintln!("virtnetd: {e}");
            return ExitCode::from(daemon::EXIT_CONFIG as u8);
        }
    }
    if let Host::Fake(path) = &args.host {
        if let Err(e) = ensure_dir("fake host state directory", path) {
            eprintln!("virtnetd: {e}");
            return ExitCode::from(daemon::EXIT_CONFIG as u8);
        }
    }

    let service = make_service(&args.host, &args.config_dir, &args.state_dir);
    let config = ServerConfig {
        idle_timeout: args.timeout.map(Duration::from_secs),
        log_control: Some(log),
        on_stopping: Some(Arc::new(|reason| {
            tracing::info!(?reason, "stopping");
            notify::notify_from_env("STOPPING=1");
        })),
        ..ServerConfig::default()
    };
    let server = match Server::new(config, listeners, service) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("virtnetd: {e}");
            return ExitCode::from(daemon::EXIT_FAILURE as u8);
        }
    };
    if let Err(e) = install_signal_handlers(&server.shutdown_handle()) {
        eprintln!("virtnetd: cannot install signal handlers: {e}");
        return ExitCode::from(daemon::EXIT_FAILURE as u8);
    }
    notify::notify_from_env("READY=1");
    let result = server.run();
    match result {
        Ok(ExitReason::Requested | ExitReason::Signal(_) | ExitReason::IdleTimeout) => {
            ExitCode::from(daemon::EXIT_OK as u8)
        }
        Err(e) => {
            eprintln!("virtnetd: {e}");
            ExitCode::from(daemon::EXIT_FAILURE as u8)
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
