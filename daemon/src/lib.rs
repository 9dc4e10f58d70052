//! virtnet-daemon: the runtime of `virtnetd` — JSON-lines RPC server over
//! UNIX sockets, systemd socket activation, access control, client.
//!
//! It serves the network driver of `virtnet-core` ([`DriverService`]); the
//! `virtnetd` binary (crate `virtnet`, `cli/`) wires it up.
//!
//! - [`activation`]: systemd socket activation (`LISTEN_FDS`/`LISTEN_FDNAMES`
//!   with libvirt's quirks, by-path fallback) and `sd_notify`.
//! - [`protocol`]: request/response lines, error codes, bounded line reader.
//! - [`service`]: the [`Service`] trait the network driver implements, the
//!   driver method table [`NET_METHODS`], the [`UnavailableDriver`] stand-in.
//! - [`driver_service`]: [`DriverService`], the `net.*` methods over the
//!   network driver; params/results and the driver error codes (100+).
//! - [`sockets`]: the three sockets (rw, ro, admin), from systemd activation
//!   ([`crate::activation`]) or bound by the daemon.
//! - [`server`]: accept loop, thread per client, dispatch and access control,
//!   admin methods (`daemon.status`, `daemon.set-log-level`), idle timeout.
//! - [`signals`]: SIGTERM/SIGINT/SIGHUP through a self-pipe.
//! - [`locks`]: [`KeyedLocks`], per-network serialisation.
//! - [`client`]: blocking client.
//!
//! Access control: the read-only socket refuses every method that is not
//! read-only; the read-write and admin sockets accept only peers whose uid
//! (SO_PEERCRED) is root or the daemon's own; admin methods are served only
//! on the admin socket, and the admin socket serves nothing else. Refusals
//! are logged at warn level.
//!
//! Rules the daemon keeps:
//!
//! * **Activation is read before any thread starts** (it edits the process
//!   environment): [`acquire_listeners`] is the first thing `virtnetd`
//!   does after setting up logging.
//! * **In activation mode the daemon creates no socket**: a socket whose
//!   name was not passed is absent, and every passed descriptor must be
//!   claimed ([`sockets`]).
//! * **A bad request never costs the connection**: malformed JSON, an
//!   unknown method, bad params, an oversized line and a panicking service
//!   each get an error response, and the connection keeps working.
//! * **One network, one operation at a time**; different networks in
//!   parallel ([`driver_service`], [`KeyedLocks`]).
//! * **Signal handlers only write one byte** to a pipe; all shutdown work
//!   happens in the accept loop ([`signals`]).
//!
//! Tests: `daemon/tests/` (activation against environment maps and real
//! descriptors 3-5, sockets, the server behind a test service, the client,
//! [`DriverService`] with 32 concurrent clients checked for lost or
//! duplicated rules) and, for the `virtnetd` binary, `cli/tests/virtnetd_*.rs`.

pub mod activation;
pub mod client;
pub mod driver_service;
pub mod locks;
pub mod net_events;
pub mod protocol;
pub mod rpc;
pub mod server;
pub mod service;
pub mod signals;
pub mod sockets;

pub use client::{Client, ClientError};
pub use driver_service::{driver_codes, DriverService, EventSink, NetEvent, NetEventKind, NetOp};
pub use locks::{KeyGuard, KeyedLocks};
pub use protocol::{ErrorCode, RpcError};
pub use server::{
    ExitReason, LogControl, Server, ServerConfig, ServerError, ShutdownHandle, ADMIN_METHODS,
};
pub use service::{CallContext, MethodInfo, PeerCred, Service, UnavailableDriver, NET_METHODS};
pub use signals::{block_signals, install_signal_handlers};
pub use sockets::{acquire_listeners, ListenMode, Listener, SocketKind, StartupError};

/// Exit status: clean exit (shutdown signal or idle timeout).
pub const EXIT_OK: i32 = 0;
/// Exit status: generic failure.
pub const EXIT_FAILURE: i32 = 1;
/// Exit status: bad command line (clap's convention).
pub const EXIT_USAGE: i32 = 2;
/// Exit status: configuration / directory problem.
pub const EXIT_CONFIG: i32 = 3;
/// Exit status: the daemon could not create its own sockets.
pub const EXIT_SOCKETS: i32 = 5;
/// Exit status: activation descriptors the daemon cannot account for
/// (unclaimed, unidentifiable or unusable); libvirt's
/// `VIR_DAEMON_ERR_NETWORK` ("Unable to initialize network sockets").
pub const EXIT_ACTIVATION: i32 = 6;
