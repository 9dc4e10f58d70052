//! The network driver behind the daemon: [`DriverService`] answers the
//! `net.*` methods of [`NET_METHODS`] by calling a shared
//! [`virtnet_core::driver::Driver`].
//!
//! Methods, params and results (all params are JSON objects; unknown keys
//! are refused with [`ErrorCode::InvalidParams`](crate::ErrorCode::InvalidParams)):
//!
//! | method | params | result |
//! |---|---|---|
//! | `net.define` | `{"xml": STRING}` | `{"name", "uuid"}` |
//! | `net.undefine` | `{"name"}` | `{"name"}` |
//! | `net.start` | `{"name"}` | `{"name"}` |
//! | `net.destroy` | `{"name"}` | `{"name"}` |
//! | `net.autostart` | `{"name", "enable": BOOL}` | `{"name", "autostart": BOOL}` |
//! | `net.list` | `{}` | `[INFO, ...]` sorted by name |
//! | `net.info` | `{"name"}` | `INFO` |
//! | `net.dumpxml` | `{"name", "inactive": BOOL (default false)}` | `{"xml"}` |
//!
//! `INFO` is `{"name", "uuid", "active", "persistent", "autostart",
//! "bridge": STRING|null, "firewall_backend": "iptables"|"nftables"|null}`
//! ([`info_to_json`] / [`info_from_json`]).
//!
//! Driver failures are answered with the driver's own message and one of
//! the codes of [`driver_codes`] (100 and up).
//!
//! Concurrency: calls arrive from many client threads at once. Every method
//! that names a network holds that network's [`KeyedLocks`] key for the whole
//! call (`net.define` holds the name found in its XML), so operations on one
//! network are serialised and different networks proceed in parallel. The
//! driver itself keeps its shared state consistent under parallel calls on
//! different networks (see `virtnet_core::driver`).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::locks::KeyedLocks;
use super::protocol::RpcError;
use super::service::{CallContext, MethodInfo, Service, NET_METHODS};
use virtnet_core::driver::{Driver, DriverError, NetworkInfo};
use virtnet_core::firewall::Backend;

/// Error codes of driver failures (the `code` of an error response).
pub mod driver_codes {
    /// No network of that name.
    pub const NOT_FOUND: i64 = 100;
    /// The network is already active (`net.start`).
    pub const ALREADY_ACTIVE: i64 = 101;
    /// The network is not active (`net.destroy`).
    pub const NOT_ACTIVE: i64 = 102;
    /// The XML is not a valid network definition (parse or define-time
    /// validation); the message carries line:column.
    pub const INVALID_DEFINITION: i64 = 103;
    /// The operation failed on the host or in the driver's files (a firewall
    /// or other command failed, a status file could not be written, ...).
    /// A failed start has been undone.
    pub const OPERATION_FAILED: i64 = 104;
    /// Another network already has this name (with another UUID) or this UUID
    /// (with another name).
    pub const ALREADY_EXISTS: i64 = 105;
    /// Not possible on a transient network (undefine, autostart).
    pub const TRANSIENT: i64 = 106;
    /// The (simulated) host crashed during the operation; nothing was undone.
    /// Restart the daemon to recover.
    pub const HOST_CRASHED: i64 = 107;

    /// Every code with a short name, for documentation and clients.
    pub const ALL: [(i64, &str); 8] = [
        (NOT_FOUND, "not found"),
        (ALREADY_ACTIVE, "already active"),
        (NOT_ACTIVE, "not active"),
        (INVALID_DEFINITION, "invalid definition"),
        (OPERATION_FAILED, "operation failed"),
        (ALREADY_EXISTS, "already exists"),
        (TRANSIENT, "transient network"),
        (HOST_CRASHED, "host crashed"),
    ];
}

/// The error code of a driver failure.
pub fn error_code(e: &DriverError) -> i64 {
    use driver_codes::*;
    match e {
        DriverError::NoNetwork(_) => NOT_FOUND,
        DriverError::AlreadyActive(_) => ALREADY_ACTIVE,
        DriverError::NotActive(_) => NOT_ACTIVE,
        DriverError::Xml(_) => INVALID_DEFINITION,
        DriverError::NameExists { .. } | DriverError::UuidExists { .. } => ALREADY_EXISTS,
        DriverError::Transient(_) | DriverError::AutostartTransient(_) => TRANSIENT,
        DriverError::Crashed(_) => HOST_CRASHED,
        DriverError::Conf(_)
        | DriverError::BackendUnavailable(_)
        | DriverError::NoUsableBackend
        | DriverError::Status(_)
        | DriverError::Rules(_)
        | DriverError::Dnsmasq(_)
        | DriverError::Command { .. }
        | DriverError::Run(_)
        | DriverError::Invalid(_)
        | DriverError::Io { .. }
        | DriverError::Locked { .. }
        | DriverError::DaemonOwns { .. } => OPERATION_FAILED,
    }
}

/// A driver failure as an error response: its code and the driver's message.
pub fn rpc_error(e: &DriverError) -> RpcError {
    RpcError::new(error_code(e), e.to_string())
}

/// The JSON form of a network's state (`net.info`, entries of `net.list`).
pub fn info_to_json(i: &NetworkInfo) -> Value {
    json!({
        "name": i.name,
        "uuid": i.uuid,
        "active": i.active,
        "persistent": i.persistent,
        "autostart": i.autostart,
        "bridge": i.bridge,
        "firewall_backend": i.firewall_backend.map(|b| b.to_string()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoWire {
    name: String,
    uuid: String,
    active: bool,
    persistent: bool,
    autostart: bool,
    bridge: Option<String>,
    #[serde(default)]
    firewall_backend: Option<String>,
}

/// Reads [`info_to_json`]'s form back (clients).
pub fn info_from_json(v: &Value) -> Result<NetworkInfo, String> {
    let w = InfoWire::deserialize(v).map_err(|e| format!("bad network info {v}: {e}"))?;
    let firewall_backend = w
        .firewall_backend
        .map(|b| {
            b.parse::<Backend>()
                .map_err(|e| format!("bad firewall backend {b:?}: {e}"))
        })
        .transpose()?;
    Ok(NetworkInfo {
        name: w.name,
        uuid: w.uuid,
        active: w.active,
        persistent: w.persistent,
        autostart: w.autostart,
        bridge: w.bridge,
        firewall_backend,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefineParams {
    xml: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AutostartParams {
    name: String,
    enable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeasesParams {
    name: String,
    #[serde(default)]
    mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DumpxmlParams {
    name: String,
    #[serde(default)]
    inactive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

fn params<T: DeserializeOwned>(method: &str, p: Value) -> Result<T, RpcError> {
    serde_json::from_value(p).map_err(|e| RpcError::invalid_params(format!("{method}: {e}")))
}

fn checked_name(method: &str, name: String) -> Result<String, RpcError> {
    if name.is_empty() {
        return Err(RpcError::invalid_params(format!(
            "{method}: \"name\" must not be empty"
        )));
    }
    Ok(name)
}

/// Called after every method that may have changed the host (virtnetd saves
/// the simulated host's state file from here).
pub type ChangeHook = Arc<dyn Fn() + Send + Sync>;

/// [`Service`] over a network [`Driver`].
pub struct DriverService {
    driver: Arc<Driver>,
    locks: KeyedLocks<String>,
    on_change: Option<ChangeHook>,
}

impl DriverService {
    pub fn new(driver: Arc<Driver>) -> Self {
        DriverService {
            driver,
            locks: KeyedLocks::new(),
            on_change: None,
        }
    }

    /// Run `hook` after each read-write method (also when it failed: a
    /// failed start has run and undone commands).
    pub fn with_change_hook(mut self, hook: ChangeHook) -> Self {
        self.on_change = Some(hook);
        self
    }

    pub fn driver(&self) -> &Arc<Driver> {
        &self.driver
    }

    /// The per-network locks (tests look at them).
    pub fn locks(&self) -> &KeyedLocks<String> {
        &self.locks
    }

    fn changed(&self) {
        if let Some(h) = &self.on_change {
            h();
        }
    }

    fn write_op(
        &self,
        name: &str,
        op: impl FnOnce() -> Result<Value, RpcError>,
    ) -> Result<Value, RpcError> {
        let r = {
            let _guard = self.locks.lock(name.to_owned());
            op()
        };
        self.changed();
        r
    }

    fn define(&self, xml: &str) -> Result<Value, RpcError> {
        let d = &self.driver;
        let run = || {
            d.define(xml)
                .map(|def| json!({"name": def.name, "uuid": def.uuid.to_string()}))
                .map_err(|e| rpc_error(&e))
        };
        // Lock the network the XML names. XML that does not even parse is
        // refused by the driver itself, with its position, without a lock.
        match virtnet_core::netxml::parse(xml) {
            Ok(def) => self.write_op(&def.name, run),
            Err(_) => run(),
        }
    }
}

impl Service for DriverService {
    fn methods(&self) -> &[MethodInfo] {
        NET_METHODS
    }

    /// `{"backend", "networks", "active", "busy_networks"}` for
    /// `daemon.status`.
    fn status(&self) -> Value {
        let list = self.driver.list();
        json!({
            "backend": self.driver.backend().to_string(),
            "networks": list.len(),
            "active": list.iter().filter(|n| n.active).count(),
            "busy_networks": self.locks.held(),
        })
    }

    fn call(&self, _ctx: &CallContext, method: &str, p: Value) -> Result<Value, RpcError> {
        let d = &self.driver;
        let err = |e: DriverError| rpc_error(&e);
        match method {
            "net.define" => {
                let DefineParams { xml } = params(method, p)?;
                self.define(&xml)
            }
            "net.undefine" | "net.start" | "net.destroy" => {
                let NameParams { name } = params(method, p)?;
                let name = checked_name(method, name)?;
                self.write_op(&name, || {
                    match method {
                        "net.undefine" => d.undefine(&name),
                        "net.start" => d.start(&name),
                        _ => d.destroy(&name),
                    }
                    .map_err(err)?;
                    Ok(json!({ "name": name }))
                })
            }
            "net.autostart" => {
                let AutostartParams { name, enable } = params(method, p)?;
                let name = checked_name(method, name)?;
                self.write_op(&name, || {
                    d.set_autostart(&name, enable).map_err(err)?;
                    Ok(json!({"name": name, "autostart": enable}))
                })
            }
            "net.list" => {
                let NoParams {} = params(method, p)?;
                Ok(Value::Array(d.list().iter().map(info_to_json).collect()))
            }
            "net.info" => {
                let NameParams { name } = params(method, p)?;
                let name = checked_name(method, name)?;
                // Reads take the lock too: they never see a start half done.
                let _guard = self.locks.lock(name.clone());
                d.info(&name).map(|i| info_to_json(&i)).map_err(err)
            }
            "net.dhcp_leases" => {
                let LeasesParams { name, mac } = params(method, p)?;
                let name = checked_name(method, name)?;
                let _guard = self.locks.lock(name.clone());
                d.dhcp_leases(&name, mac.as_deref())
                    .map(|l| json!(l))
                    .map_err(err)
            }
            "net.dumpxml" => {
                let DumpxmlParams { name, inactive } = params(method, p)?;
                let name = checked_name(method, name)?;
                let _guard = self.locks.lock(name.clone());
                d.dumpxml(&name, inactive)
                    .map(|xml| json!({ "xml": xml }))
                    .map_err(err)
            }
            other => Err(RpcError::method_not_found(other)),
        }
    }
}
