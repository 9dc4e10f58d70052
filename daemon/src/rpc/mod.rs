//! libvirt's remote protocol on virtnetd's sockets, so `virsh` and every
//! other libvirt client can use virtnetd as their network daemon.
//!
//! **Which protocol.** Both protocols are served on the same sockets; the
//! server looks at the first byte a client sends ([`is_rpc_start`]). A
//! libvirt packet starts with its 4-byte big-endian length, whose first
//! byte is 0, 1 or 2 for every length the protocol allows (at most 32 MiB,
//! `0x02000000`); a JSON request line starts with `{` or white space, never
//! one of those bytes. So the
//! same socket path, socket-activation names and units serve both, and
//! `virsh -c 'network:///system?socket=/run/virtnet/virtnetd-sock'` works
//! as `virtnet --connect` does. The libvirt-named sockets
//! (`virtnetworkd-sock`, `-sock-ro`, `-admin-sock`, [`crate::sockets`]) are
//! the same listeners under libvirt's names.
//!
//! **Packets** ([`wire`]): length word, 24-byte header (program, version,
//! procedure, type, serial, status), XDR body ([`xdr`], hand-written — see
//! its documentation for why). A packet whose length word is below the
//! header size or above the daemon's request limit closes the connection
//! (the stream cannot be resynchronised; libvirt does the same); a body
//! that does not decode, an unknown program, version or procedure, and a
//! procedure virtnetd does not implement each get libvirt's error reply and
//! the connection stays usable. Bodies are read as they arrive, never
//! allocated from the length word.
//!
//! **Procedures** ([`procs`]): connection set-up as libvirt clients do it
//! (`AUTH_LIST` answers "none" — the UNIX socket's peer credentials are the
//! authentication, checked at accept; `CONNECT_OPEN`,
//! `CONNECT_SUPPORTS_FEATURE`, `CONNECT_GET_URI`, `CONNECT_GET_HOSTNAME`,
//! `CONNECT_GET_LIB_VERSION`, `CONNECT_IS_SECURE`, close callbacks,
//! `CONNECT_CLOSE`), the keepalive program (a `PING` is answered with a
//! `PONG`), and the network API over [`crate::DriverService`]: lookups by
//! name and UUID, all five list/count calls with libvirt's filter flags,
//! define (with `VIR_NETWORK_DEFINE_VALIDATE`), undefine, create (start),
//! destroy, XML description (with `VIR_NETWORK_XML_INACTIVE`), bridge
//! name, autostart, is-active, is-persistent, DHCP leases (the driver's
//! leases-helper file), and lifecycle events
//! (register/deregister; `NETWORK_EVENT_LIFECYCLE` messages pushed to the
//! client for every define, undefine, start and destroy, whichever
//! protocol made the change), transient networks (`NETWORK_CREATE_XML`,
//! `NETWORK_CREATE_XML_FLAGS`) and `NETWORK_UPDATE` (the driver's
//! net-update; feature `NETWORK_UPDATE_HAS_CORRECT_ORDER` is reported, so
//! virsh sends its arguments in libvirt's corrected order).
//!
//! **Errors** travel as libvirt's `virNetMessageError` with libvirt's code,
//! domain and full message ([`procs::driver_error`]), so virsh prints what
//! it prints against libvirt's network driver.
//!
//! **Access control.** On the read-only socket every mutating procedure is
//! refused with `VIR_ERR_OPERATION_DENIED` ("operation forbidden: read only
//! access prevents virNetworkDefineXML"), as libvirt's daemon refuses them
//! on a read-only connection; the read-write socket admits only root and
//! the daemon's uid (checked at accept, [`crate::server`]). The admin
//! socket serves no libvirt program: its calls get "Cannot find program".
//!
//! **Replies and events share one writer thread per connection**, fed by a
//! bounded queue: an event is produced on the thread that made the change
//! and only queued (never written there), so a client that does not read
//! cannot stall another client's operation; when its queue is full, events
//! for it are dropped (and logged), replies wait.

pub mod procs;
pub mod wire;
pub mod xdr;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::{Duration, Instant};

use self::procs::Connection;
use self::wire::{Header, Incoming, LibvirtError};
use crate::service::{CallContext, Service};
use std::sync::Arc;

/// Replies and events queued for one connection's writer.
pub(crate) const QUEUE_LEN: usize = 256;

/// True when `first`, the first byte a client sent, starts a libvirt RPC
/// packet rather than a JSON request line.
pub fn is_rpc_start(first: u8) -> bool {
    first <= (wire::MESSAGE_MAX >> 24) as u8
}

/// What [`serve`] needs from the server.
pub(crate) struct ServeEnv<'a> {
    pub ctx: CallContext,
    pub service: Arc<dyn Service>,
    /// Largest packet accepted (length word included).
    pub max_packet: u32,
    /// See `ServerConfig::client_timeout`: a whole packet must arrive
    /// within it, counted from the previous one.
    pub timeout: Option<Duration>,
    pub stopping: &'a AtomicBool,
    /// Called with `true` before a call runs and `false` after.
    pub busy: &'a (dyn Fn(bool) + Sync),
}

/// A reader whose every read must finish before a deadline.
pub(crate) trait DeadlineRead: Read {
    fn set_deadline(&self, deadline: Option<Instant>);
}

/// Serve one libvirt client until it closes, breaks the framing, times
/// out, or the server stops.
pub(crate) fn serve<R: DeadlineRead>(env: &ServeEnv<'_>, reader: &mut R, writer: UnixStream) {
    let id = env.ctx.client_id;
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LEN);
    let control = writer.try_clone().ok();
    let writer_thread = std::thread::Builder::new()
        .name(format!("virtnetd-rpc-write-{id}"))
        .spawn(move || write_loop(writer, rx));
    let writer_thread = match writer_thread {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(client = id, "cannot start the writer thread: {e}");
            return;
        }
    };
    let mut conn = Connection::new(env.ctx.clone(), Arc::clone(&env.service), tx.clone());
    while !env.stopping.load(Ordering::SeqCst) {
        reader.set_deadline(env.timeout.map(|t| Instant::now() + t));
        let (h, body) = match wire::read_packet(reader, env.max_packet) {
            Ok(Incoming::Packet(h, body)) => (h, body),
            Ok(Incoming::Eof) => break,
            Ok(Incoming::BadLength(len)) => {
                tracing::warn!(
                    client = id,
                    "libvirt packet length {len} outside {}..={}: closing the connection",
                    wire::HEADER_LEN,
                    env.max_packet
                );
                break;
            }
            Err(e) => {
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    tracing::warn!(
                        client = id,
                        "no complete libvirt packet within {}s: closing the connection",
                        env.timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
                    );
                } else {
                    tracing::debug!(client = id, "connection ended inside a packet: {e}");
                }
                break;
            }
        };
        (env.busy)(true);
        let out = conn.handle(&h, &body);
        (env.busy)(false);
        let closing = conn.closed();
        if let Some(out) = out {
            if tx.send(out).is_err() {
                break;
            }
        }
        if closing {
            break;
        }
    }
    conn.shutdown();
    // Every sender must be gone for the writer to finish: ours, the
    // connection's, and the event sink's (unsubscribed just above).
    drop(conn);
    drop(tx);
    let _ = writer_thread.join();
    if let Some(c) = control {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
}

fn write_loop(mut w: UnixStream, rx: Receiver<Vec<u8>>) {
    for packet in rx {
        if w.write_all(&packet).is_err() {
            // The reader sees the shutdown and ends the connection.
            let _ = w.shutdown(std::net::Shutdown::Both);
            break;
        }
    }
}

/// The error reply to `h` (a call) with `e`.
pub(crate) fn error_reply(h: &Header, e: &LibvirtError) -> Vec<u8> {
    wire::packet(&h.reply(wire::status::ERROR), &e.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_tells_the_protocols_apart() {
        for len in [28u32, 65_536, wire::MESSAGE_MAX] {
            assert!(is_rpc_start(len.to_be_bytes()[0]), "length {len}");
        }
        for b in [b'{', b' ', b'\t', b'\n', b'\r'] {
            assert!(!is_rpc_start(b), "{b}");
        }
    }
}
