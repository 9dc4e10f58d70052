//! `sd_notify` by hand: one datagram to the UNIX socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), as libvirt
//! does. The variable is not unset, so later notifications (`STOPPING=1`)
//! reach the same socket.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Name of the environment variable.
pub const ENV_NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {socket:?} is not a usable UNIX socket address: {source}")]
    BadAddress {
        socket: String,
        source: std::io::Error,
    },
    #[error("cannot send {state:?} to NOTIFY_SOCKET {socket:?}: {source}")]
    Send {
        socket: String,
        state: String,
        source: std::io::Error,
    },
}

/// Parse a `NOTIFY_SOCKET` value into a socket address.
pub fn notify_addr(socket: &str) -> Result<SocketAddr, NotifyError> {
    let res = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(socket),
    };
    res.map_err(|source| NotifyError::BadAddress {
        socket: socket.to_owned(),
        source,
    })
}

/// Send `state` (e.g. `"READY=1"`, `"STOPPING=1"`, `"STATUS=..."`) to the
/// socket named by `notify_socket`. Returns `Ok(false)` when `notify_socket`
/// is `None` or empty (not started by a service manager that wants it).
pub fn notify(notify_socket: Option<&str>, state: &str) -> Result<bool, NotifyError> {
    let Some(socket) = notify_socket.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let addr = notify_addr(socket)?;
    let send_err = |source| NotifyError::Send {
        socket: socket.to_owned(),
        state: state.to_owned(),
        source,
    };
    let sock = UnixDatagram::unbound().map_err(send_err)?;
    sock.send_to_addr(state.as_bytes(), &addr)
        .map_err(send_err)?;
    Ok(true)
}

/// [`notify`] with the process's `NOTIFY_SOCKET`; failures are logged as
/// warnings (as libvirt does) and otherwise ignored.
pub fn notify_from_env(state: &str) -> bool {
    let socket = std::env::var(ENV_NOTIFY_SOCKET).ok();
    match notify(socket.as_deref(), state) {
        Ok(sent) => sent,
        Err(e) => {
            tracing::warn!("{e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_sends_nothing() {
        assert!(!notify(None, "READY=1").unwrap());
        assert!(!notify(Some(""), "READY=1").unwrap());
    }

    #[test]
    fn path_socket_receives_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        assert!(notify(path.to_str(), "READY=1").unwrap());
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn abstract_socket_receives_state() {
        let name = format!("virtnet-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        assert!(notify(Some(&format!("@{name}")), "STOPPING=1").unwrap());
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn too_long_path_is_an_error() {
        let long = format!("/tmp/{}", "x".repeat(200));
        assert!(matches!(
            notify(Some(&long), "READY=1"),
            Err(NotifyError::BadAddress { .. })
        ));
    }

    #[test]
    fn nobody_listening_is_a_send_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        assert!(matches!(
            notify(path.to_str(), "READY=1"),
            Err(NotifyError::Send { .. })
        ));
    }
}
