//! Connecting the `virtnet` command line to a running virtnetd
//! (`virtnet --connect unix:PATH ...`).
//!
//! The protocol client itself is `virtnet_daemon::Client`; this module
//! parses connection URIs, picks the default socket and turns failures into
//! one-line messages for the terminal.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use virtnet_daemon::{Client, ClientError, SocketKind};

/// Runtime directory of a system virtnetd (matches `virtnetd --runtime-dir`'s default).
pub const DEFAULT_RUNTIME_DIR: &str = "/run/virtnet";

/// Where to reach the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectUri {
    /// `unix:PATH` (also `unix://PATH`).
    Unix(PathBuf),
}

/// A `--connect` value that is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("unsupported connection URI {0:?}: expected unix:PATH")]
    Scheme(String),
    #[error(
        "connection URI {0:?} has an empty or relative socket path: expected unix:/absolute/path"
    )]
    Path(String),
}

impl ConnectUri {
    pub fn parse(s: &str) -> Result<ConnectUri, UriError> {
        let rest = s
            .strip_prefix("unix:")
            .ok_or_else(|| UriError::Scheme(s.to_owned()))?;
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(UriError::Path(s.to_owned()));
        }
        Ok(ConnectUri::Unix(PathBuf::from(path)))
    }

    /// The daemon's socket of `kind` in `runtime_dir`.
    pub fn for_socket(runtime_dir: &Path, kind: SocketKind) -> ConnectUri {
        ConnectUri::Unix(kind.path_in(runtime_dir))
    }

    /// The system daemon's socket of `kind`.
    pub fn default_for(kind: SocketKind) -> ConnectUri {
        Self::for_socket(Path::new(DEFAULT_RUNTIME_DIR), kind)
    }

    pub fn path(&self) -> &Path {
        match self {
            ConnectUri::Unix(p) => p,
        }
    }

    /// Open a connection.
    pub fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(self.path())
    }
}

impl fmt::Display for ConnectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectUri::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Connect and make one call; errors become a message for the terminal.
pub fn call_once(uri: &ConnectUri, method: &str, params: Value) -> Result<Value, String> {
    let mut client = uri.connect().map_err(|e| describe(&e))?;
    client.call(method, params).map_err(|e| describe(&e))
}

/// One-line description of a client failure. A driver failure (code 100
/// and up) is the driver's message alone, exactly what embedded mode
/// prints; refusals and protocol errors name the daemon.
pub fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Remote(r) if r.code >= 100 => r.message.clone(),
        ClientError::Remote(r) => format!("virtnetd: {}", r.message),
        other => other.to_string(),
    }
}

/// Commands for the daemon itself (admin socket).
#[derive(Debug, clap::Subcommand)]
pub enum DaemonCommand {
    /// Show the daemon's status (needs --connect to the admin socket)
    #[command(name = "daemon-status")]
    Status,
    /// Change the daemon's log level or filter at run time (needs --connect
    /// to the admin socket)
    #[command(name = "daemon-log-level")]
    LogLevel {
        /// error, warn, info, debug, trace or a tracing filter
        level: String,
    },
}

/// Runs a daemon command on `uri` and returns its output.
pub fn run_daemon(uri: Option<&ConnectUri>, cmd: DaemonCommand) -> Result<String, String> {
    let Some(uri) = uri else {
        return Err(format!(
            "daemon commands need --connect unix:PATH (virtnetd's admin socket, e.g. {})",
            ConnectUri::default_for(SocketKind::Admin)
        ));
    };
    let (method, params) = match &cmd {
        DaemonCommand::Status => ("daemon.status", serde_json::json!({})),
        DaemonCommand::LogLevel { level } => (
            "daemon.set-log-level",
            serde_json::json!({ "level": level }),
        ),
    };
    let r = call_once(uri, method, params)?;
    Ok(match cmd {
        DaemonCommand::Status => {
            let mut s = serde_json::to_string_pretty(&r).unwrap_or_else(|_| r.to_string());
            s.push('\n');
            s
        }
        DaemonCommand::LogLevel { .. } => format!(
            "Log level changed from {} to {}\n",
            r["previous"].as_str().unwrap_or("?"),
            r["level"].as_str().unwrap_or("?")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_uris() {
        assert_eq!(
            ConnectUri::parse("unix:/run/x/virtnetd-sock"),
            Ok(ConnectUri::Unix("/run/x/virtnetd-sock".into()))
        );
        assert_eq!(
            ConnectUri::parse("unix:///run/x/s"),
            Ok(ConnectUri::Unix("/run/x/s".into()))
        );
        assert!(matches!(
            ConnectUri::parse("tcp:host"),
            Err(UriError::Scheme(_))
        ));
        assert!(matches!(ConnectUri::parse("unix:"), Err(UriError::Path(_))));
        assert!(matches!(
            ConnectUri::parse("unix:rel/s"),
            Err(UriError::Path(_))
        ));
        let u = ConnectUri::default_for(SocketKind::ReadOnly);
        assert_eq!(u.to_string(), "unix:/run/virtnet/virtnetd-sock-ro");
        assert_eq!(ConnectUri::parse(&u.to_string()), Ok(u));
    }

    #[test]
    fn connect_failure_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let uri = ConnectUri::for_socket(dir.path(), SocketKind::ReadWrite);
        let msg = call_once(&uri, "net.list", Value::Null).unwrap_err();
        assert!(msg.contains("virtnetd-sock"), "{msg}");
        assert!(msg.contains("cannot connect"), "{msg}");
    }
}
