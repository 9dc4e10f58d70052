//! Lifecycle events on virtnet's JSON-lines protocol (`virtnet net-event`).
//!
//! A client sends `{"id":1,"method":"net.events","params":{"event":
//! "lifecycle","name":"NAME-OR-UUID"}}` (`event`: `lifecycle` — the default
//! — or `metadata-change`, which virtnet never emits, as virsh accepts both;
//! `name` optional). The daemon answers `{"id":1,"result":{"event":
//! "lifecycle","network":{"name":..,"uuid":..}|null}}` and from then on the
//! connection carries only event lines, one per lifecycle change of a
//! matching network, until the client closes it:
//!
//! ```text
//! {"event":"lifecycle","name":"default","uuid":"…","kind":"started","code":2}
//! ```
//!
//! `kind` is `defined`, `undefined`, `started` or `stopped`; `code` is
//! libvirt's `VIR_NETWORK_EVENT_*` number. A network given by name or UUID
//! is resolved once, at subscription (an unknown one is the driver's
//! "Network not found" error), and events are filtered by its UUID, as
//! libvirt filters callbacks registered for a `virNetworkPtr`.
//!
//! Events come from [`DriverService::subscribe`](crate::DriverService),
//! like the libvirt remote protocol's; a client that does not read its
//! events loses them once its queue (256 events) is full, rather than
//! stalling the change that emitted them. Allowed on the read-write and
//! read-only sockets (libvirt allows event registration on a read-only
//! connection), not on the admin socket.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::driver_service::rpc_error;
use crate::protocol::{response_line, ErrorCode, Request, RpcError};
use crate::service::Service;
use crate::{NetEvent, NetEventKind};

/// The method name.
pub const METHOD: &str = "net.events";

/// Event types virsh's `net-event --event` accepts.
pub const EVENT_TYPES: &[&str] = &["lifecycle", "metadata-change"];

/// How many events wait for a slow client before newer ones are dropped.
const QUEUE: usize = 256;

/// How often the loop looks whether the client left or the daemon stops.
const POLL: Duration = Duration::from_millis(200);

/// The word for an event kind on the wire.
pub fn kind_word(k: NetEventKind) -> &'static str {
    match k {
        NetEventKind::Defined => "defined",
        NetEventKind::Undefined => "undefined",
        NetEventKind::Started => "started",
        NetEventKind::Stopped => "stopped",
    }
}

/// One event line (without the line break).
pub fn event_json(ev: &NetEvent) -> Value {
    json!({
        "event": "lifecycle",
        "name": ev.name,
        "uuid": ev.uuid,
        "kind": kind_word(ev.kind),
        "code": ev.kind as i32,
    })
}

/// Has the peer closed its side (a read would return end of file)?
fn peer_closed(stream: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    match nix::sys::socket::recv(
        stream.as_raw_fd(),
        &mut b,
        nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) => false,
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => false,
        Err(_) => true,
    }
}

/// Serves a `net.events` request on `writer`: the answer, then the event
/// lines until the client closes the connection or the daemon stops.
pub fn serve(
    service: &Arc<dyn Service>,
    req: &Request,
    mut writer: UnixStream,
    stopping: &AtomicBool,
) {
    let reply = |w: &mut UnixStream, r: Result<Value, RpcError>| {
        w.write_all(&response_line(&req.id, r)).is_ok()
    };
    let Some(ds) = service.driver_service() else {
        reply(
            &mut writer,
            Err(RpcError::with(
                ErrorCode::DriverUnavailable,
                format!("{METHOD}: the network driver is not available in this build of virtnetd"),
            )),
        );
        return;
    };
    let event = match req.params.get("event") {
        None | Some(Value::Null) => "lifecycle".to_string(),
        Some(Value::String(s)) if EVENT_TYPES.contains(&s.as_str()) => s.clone(),
        Some(Value::String(s)) => {
            reply(
                &mut writer,
                Err(RpcError::invalid_params(format!("unknown event type {s}"))),
            );
            return;
        }
        Some(_) => {
            reply(
                &mut writer,
                Err(RpcError::invalid_params("\"event\" must be a string")),
            );
            return;
        }
    };
    let network = match req.params.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => match ds.driver().lookup(n) {
            Ok(i) => Some((i.name, i.uuid.to_string())),
            Err(e) => {
                reply(&mut writer, Err(rpc_error(&e)));
                return;
            }
        },
        Some(_) => {
            reply(
                &mut writer,
                Err(RpcError::invalid_params("\"name\" must be a string")),
            );
            return;
        }
    };
    let (tx, rx) = sync_channel::<NetEvent>(QUEUE);
    let want_uuid = network.as_ref().map(|(_, u)| u.clone());
    let lifecycle = event == "lifecycle";
    let id = ds.subscribe(Arc::new(move |ev: &NetEvent| {
        if lifecycle && want_uuid.as_ref().is_none_or(|u| *u == ev.uuid) {
            let _ = tx.try_send(ev.clone());
        }
    }));
    let answer = json!({
        "event": event,
        "network": network.as_ref().map(|(n, u)| json!({"name": n, "uuid": u})),
    });
    if reply(&mut writer, Ok(answer)) {
        while !stopping.load(Ordering::SeqCst) {
            match rx.recv_timeout(POLL) {
                Ok(ev) => {
                    let mut line = event_json(&ev).to_string().into_bytes();
                    line.push(b'\n');
                    if writer.write_all(&line).is_err() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if peer_closed(&writer) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }
    ds.unsubscribe(id);
}
