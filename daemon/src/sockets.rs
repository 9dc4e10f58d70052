//! The daemon's three listening sockets, from systemd activation or bound by
//! the daemon itself.
//!
//! | kind | activation name | file in the runtime dir | mode |
//! |---|---|---|---|
//! | read-write | `virtnetd.socket` | `virtnetd-sock` | 0600 |
//! | read-only | `virtnetd-ro.socket` | `virtnetd-sock-ro` | 0666 |
//! | admin | `virtnetd-admin.socket` | `virtnetd-admin-sock` | 0600 |
//!
//! libvirt's names for the same three sockets are served too, so libvirt
//! clients find virtnetd where they look for libvirt's network daemon
//! (`virsh -c network:///system` connects to
//! `/run/libvirt/virtnetworkd-sock`):
//!
//! | kind | libvirt activation name | libvirt file name |
//! |---|---|---|
//! | read-write | `virtnetworkd.socket` | `virtnetworkd-sock` |
//! | read-only | `virtnetworkd-ro.socket` | `virtnetworkd-sock-ro` |
//! | admin | `virtnetworkd-admin.socket` | `virtnetworkd-admin-sock` |
//!
//! Under activation both names are claimed for each kind (a descriptor
//! named either way is served as that kind); without activation,
//! `virtnetd --libvirt-sockets` binds the libvirt-named files in the
//! runtime directory beside its own ([`bind_libvirt_sockets`]). Both
//! protocols are spoken on every socket ([`crate::rpc`]).
//!
//! As in libvirt, when the daemon is socket activated it never creates a
//! socket itself: a service whose name was not passed is simply absent. Every
//! passed descriptor must be claimed, or startup fails
//! ([`StartupError::exit_code`] = [`super::EXIT_ACTIVATION`]).

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt, SockType};

use crate::activation::{
    bound_addr, Activation, ActivationError, BoundAddr, Environment, ListenAddr, SocketSpec,
};

/// Which of the daemon's sockets a client came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocketKind {
    ReadWrite,
    ReadOnly,
    Admin,
}

impl SocketKind {
    pub const ALL: [SocketKind; 3] = [
        SocketKind::ReadWrite,
        SocketKind::ReadOnly,
        SocketKind::Admin,
    ];

    /// Activation name (`FileDescriptorName=`, default: the socket unit's name).
    pub fn activation_name(self) -> &'static str {
        match self {
            SocketKind::ReadWrite => "virtnetd.socket",
            SocketKind::ReadOnly => "virtnetd-ro.socket",
            SocketKind::Admin => "virtnetd-admin.socket",
        }
    }

    /// Socket file name inside the runtime directory.
    pub fn file_name(self) -> &'static str {
        match self {
            SocketKind::ReadWrite => "virtnetd-sock",
            SocketKind::ReadOnly => "virtnetd-sock-ro",
            SocketKind::Admin => "virtnetd-admin-sock",
        }
    }

    /// libvirt's activation name for this socket of its network daemon.
    pub fn libvirt_activation_name(self) -> &'static str {
        match self {
            SocketKind::ReadWrite => "virtnetworkd.socket",
            SocketKind::ReadOnly => "virtnetworkd-ro.socket",
            SocketKind::Admin => "virtnetworkd-admin.socket",
        }
    }

    /// libvirt's file name for this socket of its network daemon.
    pub fn libvirt_file_name(self) -> &'static str {
        match self {
            SocketKind::ReadWrite => "virtnetworkd-sock",
            SocketKind::ReadOnly => "virtnetworkd-sock-ro",
            SocketKind::Admin => "virtnetworkd-admin-sock",
        }
    }

    /// Permission bits of the socket file the daemon creates itself.
    pub fn mode(self) -> u32 {
        match self {
            SocketKind::ReadOnly => 0o666,
            SocketKind::ReadWrite | SocketKind::Admin => 0o600,
        }
    }

    /// Short label used in logs and `daemon.status`.
    pub fn label(self) -> &'static str {
        match self {
            SocketKind::ReadWrite => "rw",
            SocketKind::ReadOnly => "ro",
            SocketKind::Admin => "admin",
        }
    }

    /// Whether peers on this socket must be root or the daemon's own uid.
    pub fn checks_peer(self) -> bool {
        !matches!(self, SocketKind::ReadOnly)
    }

    pub fn path_in(self, runtime_dir: &Path) -> PathBuf {
        runtime_dir.join(self.file_name())
    }
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A listening socket ready for the server.
#[derive(Debug)]
pub struct Listener {
    pub kind: SocketKind,
    pub listener: UnixListener,
    /// Where it is bound (None for an abstract/unnamed socket).
    pub path: Option<PathBuf>,
    /// True when it came from systemd.
    pub activated: bool,
    /// Remove the socket file when the server stops (own sockets only).
    pub unlink_on_close: bool,
}

impl Listener {
    /// Wrap an already-bound listener (tests, embedding).
    pub fn new(kind: SocketKind, listener: UnixListener) -> Listener {
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        Listener {
            kind,
            listener,
            path,
            activated: false,
            unlink_on_close: false,
        }
    }
}

/// Why the daemon could not get its sockets.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("systemd socket activation: {0}")]
    Activation(#[from] ActivationError),
    #[error("activation socket {name} (fd {fd}) is not usable: {why}")]
    BadActivationFd { name: String, fd: i32, why: String },
    #[error("activation passed no socket the daemon serves (expected one of virtnetd.socket, virtnetd-ro.socket, virtnetd-admin.socket or libvirt's virtnetworkd.socket, virtnetworkd-ro.socket, virtnetworkd-admin.socket)")]
    NothingToServe,
    #[error("cannot create runtime directory {path}: {source}")]
    RuntimeDir { path: PathBuf, source: io::Error },
    #[error("cannot create socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

impl StartupError {
    /// Process exit status for this failure: [`super::EXIT_ACTIVATION`] for
    /// activation descriptors the daemon cannot account for, otherwise
    /// [`super::EXIT_SOCKETS`].
    pub fn exit_code(&self) -> i32 {
        match self {
            StartupError::Activation(_)
            | StartupError::BadActivationFd { .. }
            | StartupError::NothingToServe => super::EXIT_ACTIVATION,
            StartupError::RuntimeDir { .. } | StartupError::Bind { .. } => super::EXIT_SOCKETS,
        }
    }
}

/// The address table used to name descriptors when `LISTEN_FDNAMES` is absent.
pub fn socket_specs(runtime_dir: &Path) -> Vec<SocketSpec> {
    let mut specs: Vec<SocketSpec> = SocketKind::ALL
        .iter()
        .map(|k| {
            SocketSpec::new(
                k.activation_name(),
                ListenAddr::Unix(k.path_in(runtime_dir)),
            )
        })
        .collect();
    specs.extend(SocketKind::ALL.iter().map(|k| {
        SocketSpec::new(
            k.libvirt_activation_name(),
            ListenAddr::Unix(runtime_dir.join(k.libvirt_file_name())),
        )
    }));
    specs
}

/// Bind libvirt's three socket names (`virtnetworkd-sock`, …) in
/// `runtime_dir`, as [`bind_own_sockets`] binds virtnetd's.
pub fn bind_libvirt_sockets(runtime_dir: &Path) -> Result<Vec<Listener>, StartupError> {
    bind_named(runtime_dir, SocketKind::libvirt_file_name)
}

/// Bind the three sockets in `runtime_dir` (created 0755 whatever the
/// umask when missing: everyone must reach the read-only socket); a stale
/// socket file is replaced, as libvirt does.
pub fn bind_own_sockets(runtime_dir: &Path) -> Result<Vec<Listener>, StartupError> {
    bind_named(runtime_dir, SocketKind::file_name)
}

fn bind_named(
    runtime_dir: &Path,
    file_name: fn(SocketKind) -> &'static str,
) -> Result<Vec<Listener>, StartupError> {
    virtnet_core::store::create_dir_all_mode(runtime_dir, virtnet_core::store::STATE_DIR_MODE)
        .map_err(|source| StartupError::RuntimeDir {
            path: runtime_dir.to_path_buf(),
            source,
        })?;
    let mut out = Vec::new();
    for kind in SocketKind::ALL {
        let path = runtime_dir.join(file_name(kind));
        let bind_err = |source| StartupError::Bind {
            path: path.clone(),
            source,
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_err(e)),
        }
        // Create the socket file with no more than its final mode (as
        // libvirt does, with the umask around bind): a client never sees
        // it with wider permissions before the chmod below.
        let old_mask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            0o777 & !kind.mode(),
        ));
        let bound = UnixListener::bind(&path);
        nix::sys::stat::umask(old_mask);
        let listener = bound.map_err(bind_err)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(kind.mode())).map_err(bind_err)?;
        tracing::info!(socket = kind.label(), path = %path.display(), "listening");
        out.push(Listener {
            kind,
            listener,
            path: Some(path),
            activated: false,
            unlink_on_close: true,
        });
    }
    Ok(out)
}

/// Claim the daemon's three names from `act` and check that every claimed
/// descriptor is a listening UNIX stream socket; then require that nothing is
/// left unclaimed.
pub fn listeners_from_activation(act: &mut Activation) -> Result<Vec<Listener>, StartupError> {
    let mut out = Vec::new();
    for kind in SocketKind::ALL {
        let name = kind.activation_name();
        let mut fds = act.claim(name);
        fds.extend(act.claim(kind.libvirt_activation_name()));
        if fds.is_empty() {
            tracing::info!(
                socket = kind.label(),
                "{name} not passed by systemd: service absent"
            );
        }
        for fd in fds {
            out.push(activated_listener(kind, fd)?);
        }
    }
    act.complete()?;
    if out.is_empty() {
        return Err(StartupError::NothingToServe);
    }
    Ok(out)
}

fn activated_listener(kind: SocketKind, fd: OwnedFd) -> Result<Listener, StartupError> {
    let raw = fd.as_raw_fd();
    let bad = |why: String| StartupError::BadActivationFd {
        name: kind.activation_name().to_owned(),
        fd: raw,
        why,
    };
    let path = match bound_addr(raw).map_err(|e| bad(e.to_string()))? {
        BoundAddr::Unix(p) => p,
        BoundAddr::Ip(port) => {
            return Err(bad(format!(
                "it is an IP socket (port {port}); virtnetd serves UNIX sockets only"
            )))
        }
    };
    match getsockopt(&fd.as_fd(), sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(other) => return Err(bad(format!("socket type is {other:?}, not a stream"))),
        Err(e) => return Err(bad(format!("cannot read its socket type: {e}"))),
    }
    match getsockopt(&fd.as_fd(), sockopt::AcceptConn) {
        Ok(true) => {}
        Ok(false) => return Err(bad("it is not listening".into())),
        Err(e) => return Err(bad(format!("cannot tell whether it listens: {e}"))),
    }
    let listener = UnixListener::from(fd);
    tracing::info!(
        socket = kind.label(),
        fd = raw,
        path = %path.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        "listening on activation socket"
    );
    Ok(Listener {
        kind,
        listener,
        path,
        activated: true,
        unlink_on_close: false,
    })
}

/// Where the listeners came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenMode {
    /// systemd passed them.
    Activated,
    /// The daemon bound them (no activation environment).
    Own,
    /// The activation environment was unusable in a way libvirt tolerates
    /// (missing names, wrong name count): error logged, own sockets bound.
    OwnAfterActivationError,
}

/// The whole startup decision: read the activation environment (`env`,
/// current `pid`), claim activation sockets or bind our own in `runtime_dir`.
pub fn acquire_listeners(
    env: &mut dyn Environment,
    pid: u32,
    runtime_dir: &Path,
) -> Result<(Vec<Listener>, ListenMode), StartupError> {
    let specs = socket_specs(runtime_dir);
    match Activation::from_env(env, pid, &specs) {
        Ok(Some(mut act)) => {
            tracing::info!(count = act.count(), source = ?act.source(), "socket activated");
            Ok((listeners_from_activation(&mut act)?, ListenMode::Activated))
        }
        Ok(None) => Ok((bind_own_sockets(runtime_dir)?, ListenMode::Own)),
        Err(e) if e.falls_back_to_traditional() => {
            tracing::error!("{e}; creating own sockets instead");
            Ok((
                bind_own_sockets(runtime_dir)?,
                ListenMode::OwnAfterActivationError,
            ))
        }
        Err(e) => Err(e.into()),
    }
}
