//! The server: accept loop, one thread per client, dispatch with access
//! control, admin methods, idle timeout and clean shutdown.
//!
//! The accept loop polls the listening sockets together with the read end of
//! a self-pipe; [`ShutdownHandle::shutdown`] and the signal handlers
//! ([`super::signals`]) write one byte to it. On shutdown the loop stops
//! accepting, shuts every client connection down (a request being served
//! finishes first), joins the client threads and removes the socket files it
//! created itself.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt};
use serde_json::{json, Value};

use super::protocol::{
    response_line, ErrorCode, LineRead, LineReader, Request, RpcError, MAX_REQUEST_BYTES,
};
use super::service::{CallContext, MethodInfo, PeerCred, Service};
use super::sockets::{Listener, SocketKind};

/// Methods the server answers itself, only on the admin socket.
pub const ADMIN_METHODS: &[MethodInfo] = &[
    MethodInfo::read_only("daemon.status"),
    MethodInfo::read_write("daemon.set-log-level"),
];

/// Changes the daemon's log filter at run time (`daemon.set-log-level`).
pub trait LogControl: Send + Sync {
    /// The current level/filter, as text.
    fn level(&self) -> String;
    /// Set a new level/filter; returns the level now in force, or why not.
    fn set_level(&self, level: &str) -> Result<String, String>;
}

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Reported by `daemon.status`.
    pub version: String,
    /// Exit after this long with no client and no work in flight.
    pub idle_timeout: Option<Duration>,
    /// A connection on which no complete request line arrives within this
    /// long (counted from the connection or from the previous reply) is
    /// closed: a client that sends half a line and waits cannot hold a
    /// slot and a thread for ever. Also bounds each write of a reply to a
    /// client that does not read. `None`: never.
    pub client_timeout: Option<Duration>,
    /// Read-write and admin connections beyond this are answered with an
    /// error and closed.
    pub max_clients: usize,
    /// Read-only connections beyond this are answered with an error and
    /// closed. Counted apart from [`ServerConfig::max_clients`]: anyone may
    /// connect to the read-only socket, and must not use up the slots of
    /// the read-write and admin sockets.
    pub max_ro_clients: usize,
    /// Longest accepted request line.
    pub max_request_bytes: usize,
    /// Peers with this uid (besides root) may use the read-write and admin sockets.
    pub daemon_uid: u32,
    /// Run-time log level control, when the binary supports it.
    pub log_control: Option<Arc<dyn LogControl>>,
    /// Called once when the server starts stopping, before connections are
    /// closed (virtnetd sends `STOPPING=1` to systemd from here).
    pub on_stopping: Option<Arc<dyn Fn(ExitReason) + Send + Sync>>,
}

/// Default [`ServerConfig::client_timeout`].
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerConfig::max_clients`].
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// Default [`ServerConfig::max_ro_clients`].
pub const DEFAULT_MAX_RO_CLIENTS: usize = 64;
/// Refused connections being answered at once (each on a short-lived
/// thread); beyond this a refused connection is closed without its error
/// line, so a flood of connections cannot make a flood of threads.
const MAX_REFUSING: usize = 32;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            idle_timeout: None,
            client_timeout: Some(DEFAULT_CLIENT_TIMEOUT),
            max_clients: DEFAULT_MAX_CLIENTS,
            max_ro_clients: DEFAULT_MAX_RO_CLIENTS,
            max_request_bytes: MAX_REQUEST_BYTES,
            daemon_uid: nix::unistd::geteuid().as_raw(),
            log_control: None,
            on_stopping: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("version", &self.version)
            .field("idle_timeout", &self.idle_timeout)
            .field("client_timeout", &self.client_timeout)
            .field("max_clients", &self.max_clients)
            .field("max_ro_clients", &self.max_ro_clients)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("daemon_uid", &self.daemon_uid)
            .field("log_control", &self.log_control.is_some())
            .field("on_stopping", &self.on_stopping.is_some())
            .finish()
    }
}

/// Why [`Server::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// [`ShutdownHandle::shutdown`] was called.
    Requested,
    /// A termination signal (SIGTERM, SIGINT) arrived.
    Signal(i32),
    /// Idle for the configured timeout.
    IdleTimeout,
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the server's wake-up pipe: {0}")]
    Pipe(nix::Error),
    #[error("cannot make listening socket {path} non-blocking: {source}")]
    NonBlocking { path: String, source: io::Error },
    #[error("polling the listening sockets failed: {0}")]
    Poll(nix::Error),
    #[error("server has no listening socket")]
    NoListeners,
}

/// Asks a running server to stop; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    wake: Arc<OwnedFd>,
}

/// Byte written to the wake-up pipe for [`ShutdownHandle::shutdown`]; signal
/// handlers write the signal number (always > 0).
const WAKE_SHUTDOWN: u8 = 0;

impl ShutdownHandle {
    /// Request a clean shutdown (idempotent).
    pub fn shutdown(&self) {
        let _ = nix::unistd::write(self.wake.as_fd(), &[WAKE_SHUTDOWN]);
    }

    /// Write end of the wake-up pipe (for signal handlers).
    pub(crate) fn wake_fd(&self) -> &OwnedFd {
        &self.wake
    }
}

struct ClientEntry {
    socket: SocketKind,
    peer: Option<PeerCred>,
    stream: UnixStream,
    connected: Instant,
}

struct SocketInfo {
    kind: SocketKind,
    path: Option<PathBuf>,
    activated: bool,
}

struct Shared {
    config: ServerConfig,
    service: Arc<dyn Service>,
    started: Instant,
    clients: Mutex<BTreeMap<u64, ClientEntry>>,
    next_client: AtomicU64,
    last_activity: Mutex<Instant>,
    in_flight: AtomicUsize,
    refusing: Arc<AtomicUsize>,
    stopping: AtomicBool,
    sockets: Vec<SocketInfo>,
}

impl Shared {
    fn clients(&self) -> MutexGuard<'_, BTreeMap<u64, ClientEntry>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
    fn idle_for(&self) -> Duration {
        self.last_activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// The daemon server.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    wake_read: OwnedFd,
    handle: ShutdownHandle,
}

impl Server {
    /// A server over `listeners` serving `service` (plus the admin methods).
    /// This is where the network driver is wired in:
    /// `Server::new(config, listeners, Arc::new(driver))`.
    pub fn new(
        config: ServerConfig,
        listeners: Vec<Listener>,
        service: Arc<dyn Service>,
    ) -> Result<Server, ServerError> {
        if listeners.is_empty() {
            return Err(ServerError::NoListeners);
        }
        for l in &listeners {
            l.listener
                .set_nonblocking(true)
                .map_err(|source| ServerError::NonBlocking {
                    path: display_path(&l.path),
                    source,
                })?;
        }
        let (r, w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(ServerError::Pipe)?;
        let sockets = listeners
            .iter()
            .map(|l| SocketInfo {
                kind: l.kind,
                path: l.path.clone(),
                activated: l.activated,
            })
            .collect();
        Ok(Server {
            shared: Arc::new(Shared {
                config,
                service,
                started: Instant::now(),
                clients: Mutex::new(BTreeMap::new()),
                next_client: AtomicU64::new(1),
                last_activity: Mutex::new(Instant::now()),
                in_flight: AtomicUsize::new(0),
                refusing: Arc::new(AtomicUsize::new(0)),
                stopping: AtomicBool::new(false),
                sockets,
            }),
            listeners,
            wake_read: r,
            handle: ShutdownHandle { wake: Arc::new(w) },
        })
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Serve until shut down (handle or signal) or idle for the timeout.
    pub fn run(self) -> Result<ExitReason, ServerError> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let result = self.accept_loop(&mut threads);
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let (Ok(reason), Some(hook)) = (&result, &self.shared.config.on_stopping) {
            hook(*reason);
        }
        // Unblock every client thread: a request being served completes, its
        // reply may or may not get through, the next read sees EOF.
        for entry in self.shared.clients().values() {
            let _ = entry.stream.shutdown(std::net::Shutdown::Both);
        }
        for t in threads {
            let _ = t.join();
        }
        for l in &self.listeners {
            if l.unlink_on_close {
                if let Some(p) = &l.path {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        match &result {
            Ok(reason) => tracing::info!(?reason, "server stopped"),
            Err(e) => tracing::error!("server failed: {e}"),
        }
        result
    }

    fn accept_loop(&self, threads: &mut Vec<JoinHandle<()>>) -> Result<ExitReason, ServerError> {
        loop {
            // Idle checks run every tick: a quarter of the timeout, at most
            // 200 ms (so the daemon exits within timeout + tick).
            let timeout = match self.shared.config.idle_timeout {
                Some(t) => PollTimeout::from(
                    (t / 4)
                        .clamp(Duration::from_millis(1), Duration::from_millis(200))
                        .as_millis() as u16,
                ),
                None => PollTimeout::NONE,
            };
            let mut fds: Vec<PollFd<'_>> = self
                .listeners
                .iter()
                .map(|l| l.listener.as_fd())
                .chain(std::iter::once(self.wake_read.as_fd()))
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            let ready: Vec<bool> = match poll(&mut fds, timeout) {
                Ok(n) => fds
                    .iter()
                    .map(|f| n > 0 && f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(Errno::EINTR) => vec![false; fds.len()],
                Err(e) => return Err(ServerError::Poll(e)),
            };
            drop(fds);

            if ready.last().copied().unwrap_or(false) {
                if let Some(reason) = self.drain_wake() {
                    return Ok(reason);
                }
            }
            for (i, l) in self.listeners.iter().enumerate() {
                if ready[i] {
                    self.accept_all(l, threads);
                }
            }
            threads.retain(|t| !t.is_finished());

            if let Some(limit) = self.shared.config.idle_timeout {
                let idle = self.shared.clients().is_empty()
                    && self.shared.in_flight.load(Ordering::SeqCst) == 0
                    && !self.shared.service.busy();
                if !idle {
                    // Idle time counts from the end of the last activity.
                    self.shared.touch();
                } else if self.shared.idle_for() >= limit {
                    tracing::info!("idle for {}s: exiting", limit.as_secs_f64());
                    return Ok(ExitReason::IdleTimeout);
                }
            }
        }
    }

    /// SIGHUP: the service reloads on a thread of its own (the accept
    /// loop keeps serving); counted as work in flight, so the idle timeout
    /// waits for it.
    fn spawn_reload(&self) {
        let shared = self.shared.clone();
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                shared.service.reload();
                shared.touch();
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("cannot start the reload: {e}");
        }
    }

    /// Read pending wake-up bytes; a termination request wins.
    fn drain_wake(&self) -> Option<ExitReason> {
        let mut buf = [0u8; 64];
        let mut reason = None;
        loop {
            match nix::unistd::read(self.wake_read.as_raw_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for &b in &buf[..n] {
                        match b {
                            WAKE_SHUTDOWN => {
                                reason.get_or_insert(ExitReason::Requested);
                            }
                            sig if i32::from(sig) == libc::SIGHUP => {
                                tracing::info!("SIGHUP received: reloading");
                                self.spawn_reload();
                            }
                            sig => {
                                tracing::info!(signal = sig, "termination signal received");
                                reason.get_or_insert(ExitReason::Signal(i32::from(sig)));
                            }
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        reason
    }

    fn accept_all(&self, l: &Listener, threads: &mut Vec<JoinHandle<()>>) {
        loop {
            let stream = match l.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. EMFILE: the listener stays readable, so pause a
                    // little instead of spinning on it.
                    tracing::warn!(socket = l.kind.label(), "accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    return;
                }
            };
            if let Some(t) = self.admit(l.kind, stream) {
                threads.push(t);
            }
        }
    }

    /// Check a new connection and start its thread.
    fn admit(&self, kind: SocketKind, stream: UnixStream) -> Option<JoinHandle<()>> {
        let shared = &self.shared;
        let id = shared.next_client.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nonblocking(false);
        let peer = getsockopt(&stream, sockopt::PeerCredentials)
            .ok()
            .map(|c| PeerCred {
                pid: c.pid(),
                uid: c.uid(),
                gid: c.gid(),
            });
        // A refused peer gets one error line. Closing a UNIX socket with
        // unread input makes the peer's read fail with ECONNRESET and lose
        // that line, so shut down our side for writing and drain its input
        // briefly (bounded time) on a short-lived thread before closing.
        let refuse = |mut s: UnixStream, err: RpcError| {
            let refusing = Arc::clone(&shared.refusing);
            if refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
                refusing.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            let spawned = std::thread::Builder::new()
                .name("virtnetd-refuse".into())
                .spawn(move || {
                    let _done = DecrementOnDrop(refusing);
                    let _ = s.write_all(&response_line(&Value::Null, Err(err)));
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let deadline = Instant::now() + Duration::from_secs(1);
                    let mut sink = [0u8; 4096];
                    while Instant::now() < deadline {
                        match std::io::Read::read(&mut s, &mut sink) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                });
            if spawned.is_err() {
                shared.refusing.fetch_sub(1, Ordering::SeqCst);
            }
        };
        if kind.checks_peer() {
            let allowed = peer.is_some_and(|p| p.uid == 0 || p.uid == shared.config.daemon_uid);
            if !allowed {
                let who = peer
                    .map(|p| format!("uid {} (pid {})", p.uid, p.pid))
                    .unwrap_or_else(|| "a peer without credentials".into());
                tracing::warn!(
                    client = id,
                    socket = kind.label(),
                    "refused connection from {who}: only root and uid {} may use the {} socket",
                    shared.config.daemon_uid,
                    kind.label()
                );
                refuse(
                    stream,
                    RpcError::with(
                        ErrorCode::AccessDenied,
                        format!(
                            "access denied: {who} may not use the {} socket (only root and uid {})",
                            kind.label(),
                            shared.config.daemon_uid
                        ),
                    ),
                );
                return None;
            }
        }
        // The registry keeps a second handle so shutdown can unblock the
        // client thread; without one the connection cannot be served safely.
        let control = match stream.try_clone() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(client = id, "refused connection: cannot duplicate it: {e}");
                refuse(
                    stream,
                    RpcError::with(ErrorCode::Internal, format!("cannot serve connection: {e}")),
                );
                return None;
            }
        };
        {
            let mut clients = shared.clients();
            let ro = kind == SocketKind::ReadOnly;
            let (limit, what) = if ro {
                (shared.config.max_ro_clients, "read-only clients")
            } else {
                (shared.config.max_clients, "clients")
            };
            let count = clients
                .values()
                .filter(|c| (c.socket == SocketKind::ReadOnly) == ro)
                .count();
            if count >= limit {
                drop(clients);
                tracing::warn!(
                    client = id,
                    socket = kind.label(),
                    "refused connection: limit of {limit} {what} reached"
                );
                refuse(
                    stream,
                    RpcError::with(
                        ErrorCode::TooManyClients,
                        format!("too many {what} (limit {limit})"),
                    ),
                );
                return None;
            }
            clients.insert(
                id,
                ClientEntry {
                    socket: kind,
                    peer,
                    stream: control,
                    connected: Instant::now(),
                },
            );
        }
        shared.touch();
        tracing::debug!(
            client = id,
            socket = kind.label(),
            ?peer,
            "client connected"
        );
        let shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name(format!("virtnetd-client-{id}"))
            .spawn({
                let shared = Arc::clone(&shared);
                move || serve_client(&shared, id, kind, peer, stream)
            });
        match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(client = id, "cannot start client thread: {e}");
                shared.clients().remove(&id);
                None
            }
        }
    }
}

fn display_path(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(unnamed)".into())
}

fn serve_client(
    shared: &Arc<Shared>,
    id: u64,
    kind: SocketKind,
    peer: Option<PeerCred>,
    stream: UnixStream,
) {
    let ctx = CallContext {
        client_id: id,
        socket: kind,
        peer,
    };
    let max = shared.config.max_request_bytes;
    let timeout = shared.config.client_timeout;
    // Which protocol: libvirt RPC packets start with a NUL byte, JSON
    // lines never do (see `crate::rpc`).
    match first_byte(&stream, timeout) {
        Ok(Some(b)) if crate::rpc::is_rpc_start(b) => {
            serve_rpc(shared, ctx, stream);
            shared.clients().remove(&id);
            shared.touch();
            tracing::debug!(client = id, "libvirt client disconnected");
            return;
        }
        Ok(Some(_)) => {}
        Ok(None) | Err(_) => {
            shared.clients().remove(&id);
            shared.touch();
            tracing::debug!(client = id, "client left without a request");
            return;
        }
    }
    match stream.try_clone() {
        Ok(mut writer) => {
            let _ = writer.set_write_timeout(timeout);
            let mut reader = LineReader::new(DeadlineStream::new(stream), max);
            while !shared.stopping.load(Ordering::SeqCst) {
                reader
                    .get_ref()
                    .set_deadline(timeout.map(|t| Instant::now() + t));
                let reply = match reader.read_line() {
                    Ok(LineRead::Eof) => break,
                    Err(e) if is_timeout(&e) => {
                        tracing::warn!(
                            client = id,
                            socket = kind.label(),
                            "no complete request within {}s: closing the connection",
                            timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
                        );
                        break;
                    }
                    Err(_) => break,
                    Ok(LineRead::TooLong { len }) => {
                        tracing::warn!(client = id, len, "request line exceeds {max} bytes");
                        response_line(
                            &Value::Null,
                            Err(RpcError::with(
                                ErrorCode::RequestTooLarge,
                                format!("request of {len} bytes exceeds the limit of {max} bytes"),
                            )),
                        )
                    }
                    Ok(LineRead::Line(line)) => {
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        // An event subscription turns the connection into
                        // a stream of event lines (see crate::net_events).
                        if kind != SocketKind::Admin {
                            if let Ok(req) = Request::parse(&line) {
                                if req.method == crate::net_events::METHOD {
                                    crate::net_events::serve(
                                        &shared.service,
                                        &req,
                                        writer,
                                        &shared.stopping,
                                    );
                                    shared.clients().remove(&id);
                                    shared.touch();
                                    tracing::debug!(client = id, "event client disconnected");
                                    return;
                                }
                            }
                        }
                        shared.in_flight.fetch_add(1, Ordering::SeqCst);
                        let reply = handle_line(shared, &ctx, &line);
                        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                        shared.touch();
                        reply
                    }
                };
                if writer.write_all(&reply).is_err() {
                    break;
                }
            }
            // Out of the registry first: once the peer sees the close, its
            // slot is free. Closes a connection left with a half-read line.
            shared.clients().remove(&id);
            let _ = writer.shutdown(std::net::Shutdown::Both);
        }
        Err(e) => tracing::warn!(client = id, "cannot clone client stream: {e}"),
    }
    shared.clients().remove(&id);
    shared.touch();
    tracing::debug!(client = id, "client disconnected");
}

/// The first byte the client sends, without consuming it (`MSG_PEEK`);
/// `None` at end of stream. Waits at most `timeout`.
fn first_byte(stream: &UnixStream, timeout: Option<Duration>) -> io::Result<Option<u8>> {
    stream.set_read_timeout(timeout)?;
    let mut b = [0u8; 1];
    loop {
        match nix::sys::socket::recv(
            stream.as_raw_fd(),
            &mut b,
            nix::sys::socket::MsgFlags::MSG_PEEK,
        ) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn serve_rpc(shared: &Arc<Shared>, ctx: CallContext, stream: UnixStream) {
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(client = ctx.client_id, "cannot clone client stream: {e}");
            return;
        }
    };
    let _ = writer.set_write_timeout(shared.config.client_timeout);
    let busy = |on: bool| {
        if on {
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
        } else {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            shared.touch();
        }
    };
    let env = crate::rpc::ServeEnv {
        ctx,
        service: Arc::clone(&shared.service),
        max_packet: u32::try_from(shared.config.max_request_bytes).unwrap_or(u32::MAX),
        timeout: shared.config.client_timeout,
        stopping: &shared.stopping,
        busy: &busy,
    };
    let mut reader = DeadlineStream::new(stream);
    crate::rpc::serve(&env, &mut reader, writer);
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Decrements the counter when dropped (the refusal threads' count).
struct DecrementOnDrop(Arc<AtomicUsize>);

impl Drop for DecrementOnDrop {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A client stream whose reads fail with `TimedOut` once a deadline has
/// passed: the whole request line must arrive before it, however slowly
/// its bytes trickle in.
struct DeadlineStream {
    stream: UnixStream,
    deadline: std::cell::Cell<Option<Instant>>,
}

impl DeadlineStream {
    fn new(stream: UnixStream) -> Self {
        DeadlineStream {
            stream,
            deadline: std::cell::Cell::new(None),
        }
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        self.deadline.set(deadline);
    }
}

impl crate::rpc::DeadlineRead for DeadlineStream {
    fn set_deadline(&self, deadline: Option<Instant>) {
        DeadlineStream::set_deadline(self, deadline);
    }
}

impl io::Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.deadline.get() {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request deadline passed",
                    ));
                }
                Some(left)
            }
            None => None,
        };
        self.stream.set_read_timeout(timeout)?;
        self.stream.read(buf)
    }
}

fn handle_line(shared: &Shared, ctx: &CallContext, line: &[u8]) -> Vec<u8> {
    match Request::parse(line) {
        Err((id, err)) => {
            tracing::debug!(client = ctx.client_id, "bad request: {}", err.message);
            response_line(&id, Err(err))
        }
        Ok(req) => {
            let result = dispatch(shared, ctx, &req.method, req.params);
            if let Err(e) = &result {
                tracing::debug!(client = ctx.client_id, method = %req.method, "error: {e}");
            }
            response_line(&req.id, result)
        }
    }
}

fn refuse(ctx: &CallContext, method: &str, code: ErrorCode, message: String) -> RpcError {
    tracing::warn!(
        client = ctx.client_id,
        socket = ctx.socket.label(),
        uid = ctx.peer.map(|p| p.uid),
        pid = ctx.peer.map(|p| p.pid),
        method,
        "refused: {message}"
    );
    RpcError::with(code, message)
}

fn dispatch(
    shared: &Shared,
    ctx: &CallContext,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    let is_admin = ADMIN_METHODS.iter().any(|m| m.name == method);
    if ctx.socket == SocketKind::Admin {
        if !is_admin {
            if method.starts_with("daemon.") {
                return Err(RpcError::method_not_found(method));
            }
            return Err(refuse(
                ctx,
                method,
                ErrorCode::WrongSocket,
                format!("{method} is not available on the admin socket (it serves daemon.* methods only)"),
            ));
        }
        return admin_call(shared, method, params);
    }
    if is_admin {
        return Err(refuse(
            ctx,
            method,
            ErrorCode::WrongSocket,
            format!("{method} is only available on the admin socket"),
        ));
    }
    let Some(info) = shared.service.method(method) else {
        return Err(RpcError::method_not_found(method));
    };
    if ctx.socket == SocketKind::ReadOnly && !info.read_only {
        return Err(refuse(
            ctx,
            method,
            ErrorCode::ReadOnly,
            format!("{method} changes state and is not allowed on the read-only socket"),
        ));
    }
    let service = &shared.service;
    match catch_unwind(AssertUnwindSafe(|| service.call(ctx, method, params))) {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(client = ctx.client_id, method, "service panicked");
            Err(RpcError::with(
                ErrorCode::Internal,
                format!("internal error while running {method}"),
            ))
        }
    }
}

fn admin_call(shared: &Shared, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        "daemon.status" => Ok(status(shared)),
        "daemon.set-log-level" => {
            let level = match params.get("level") {
                Some(Value::String(l)) if !l.trim().is_empty() => l.trim().to_owned(),
                Some(_) => {
                    return Err(RpcError::invalid_params(
                        "\"level\" must be a non-empty string (error, warn, info, debug, trace or a filter)",
                    ))
                }
                None => return Err(RpcError::invalid_params("missing param \"level\"")),
            };
            let Some(ctl) = &shared.config.log_control else {
                return Err(RpcError::with(
                    ErrorCode::OperationFailed,
                    "this daemon cannot change its log level at run time",
                ));
            };
            let old = ctl.level();
            let new = ctl.set_level(&level).map_err(RpcError::invalid_params)?;
            tracing::info!("log level changed from {old} to {new}");
            Ok(json!({"previous": old, "level": new}))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn status(shared: &Shared) -> Value {
    let clients = shared.clients();
    let client_list: Vec<Value> = clients
        .iter()
        .map(|(id, c)| {
            json!({
                "id": id,
                "socket": c.socket.label(),
                "pid": c.peer.map(|p| p.pid),
                "uid": c.peer.map(|p| p.uid),
                "connected_seconds": c.connected.elapsed().as_secs_f64(),
            })
        })
        .collect();
    let sockets: Vec<Value> = shared
        .sockets
        .iter()
        .map(|s| {
            json!({
                "name": s.kind.activation_name(),
                "kind": s.kind.label(),
                "path": s.path.as_ref().map(|p| p.display().to_string()),
                "activated": s.activated,
            })
        })
        .collect();
    json!({
        "version": shared.config.version,
        "pid": std::process::id(),
        "uptime_seconds": shared.started.elapsed().as_secs_f64(),
        "clients": clients.len(),
        "client_list": client_list,
        "in_flight": shared.in_flight.load(Ordering::SeqCst),
        "sockets": sockets,
        "activated": shared.sockets.iter().any(|s| s.activated),
        "idle_timeout_seconds": shared.config.idle_timeout.map(|d| d.as_secs()),
        "log_level": shared.config.log_control.as_ref().map(|c| c.level()),
        "driver": shared.service.status(),
    })
}
