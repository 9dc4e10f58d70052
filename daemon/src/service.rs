//! The seam between the daemon and whatever serves driver methods.
//!
//! The server owns transport, access control and the admin methods
//! (`daemon.*`); everything else is looked up in [`Service::methods`] and
//! handed to [`Service::call`]. The network driver implements this trait; until
//! it is wired in, [`UnavailableDriver`] answers every driver method with a
//! clear [`ErrorCode::DriverUnavailable`] error.

use serde_json::Value;

use super::protocol::{ErrorCode, RpcError};
use super::sockets::SocketKind;

/// One method a service offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// Full method name, e.g. `net.start`.
    pub name: &'static str,
    /// True when the method changes nothing (allowed on the read-only socket).
    pub read_only: bool,
}

impl MethodInfo {
    pub const fn read_only(name: &'static str) -> Self {
        MethodInfo {
            name,
            read_only: true,
        }
    }
    pub const fn read_write(name: &'static str) -> Self {
        MethodInfo {
            name,
            read_only: false,
        }
    }
}

/// Credentials of the connected peer (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Who is calling, handed to every [`Service::call`].
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Daemon-unique connection number.
    pub client_id: u64,
    /// Socket the client connected through.
    pub socket: SocketKind,
    /// Peer credentials, when the kernel reported them.
    pub peer: Option<PeerCred>,
}

/// What the daemon serves besides its own admin methods.
///
/// Calls arrive concurrently from many client threads; use
/// [`super::KeyedLocks`] to serialise operations on one object (network) while
/// others proceed.
pub trait Service: Send + Sync + 'static {
    /// Every method this service answers, with its read-only flag. The server
    /// refuses non-read-only methods on the read-only socket before calling.
    fn methods(&self) -> &[MethodInfo];

    /// Run `method` (one of [`Service::methods`]) with `params` (always a JSON
    /// object). Bad params must be answered with
    /// [`ErrorCode::InvalidParams`] (see [`RpcError::invalid_params`]).
    fn call(&self, ctx: &CallContext, method: &str, params: Value) -> Result<Value, RpcError>;

    /// True while the service has background work in flight (the idle
    /// timeout does not fire while it is).
    fn busy(&self) -> bool {
        false
    }

    /// What `daemon.status` reports about the service (its `"driver"`
    /// member); `null` by default.
    fn status(&self) -> Value {
        Value::Null
    }

    /// Look up a method's description.
    fn method(&self, name: &str) -> Option<MethodInfo> {
        self.methods().iter().copied().find(|m| m.name == name)
    }
}

/// The driver methods the network driver will implement, with their
/// read-only flags.
pub const NET_METHODS: &[MethodInfo] = &[
    MethodInfo::read_write("net.define"),
    MethodInfo::read_write("net.undefine"),
    MethodInfo::read_write("net.start"),
    MethodInfo::read_write("net.destroy"),
    MethodInfo::read_only("net.list"),
    MethodInfo::read_only("net.dumpxml"),
    MethodInfo::read_write("net.autostart"),
    MethodInfo::read_only("net.info"),
    MethodInfo::read_only("net.dhcp_leases"),
];

/// Stand-in service for builds without the network driver: knows the driver
/// methods (so access control applies to them as it will later) and answers
/// each with [`ErrorCode::DriverUnavailable`].
#[derive(Debug, Default, Clone, Copy)]
pub struct UnavailableDriver;

impl Service for UnavailableDriver {
    fn methods(&self) -> &[MethodInfo] {
        NET_METHODS
    }

    fn call(&self, _ctx: &CallContext, method: &str, _params: Value) -> Result<Value, RpcError> {
        Err(RpcError::with(
            ErrorCode::DriverUnavailable,
            format!("{method}: the network driver is not available in this build of virtnetd"),
        ))
    }
}
