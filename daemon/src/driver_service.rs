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
//! | `net.create` | `{"xml": STRING}` | `{"name", "uuid"}` (a transient network, started) |
//! | `net.list` | `{"flags": N (default 0: all)}` | `[INFO, ...]` sorted by name; `flags`: libvirt's `VIR_CONNECT_LIST_NETWORKS_*` bits ([`ListFilter`]) |
//! | `net.info` | `{"name"}` or `{"uuid"}` | `INFO` |
//! | `net.dumpxml` | `{"name", "inactive": BOOL (default false)}` | `{"xml"}` |
//! | `net.update` | `{"name", "command", "section", "xml", "parent_index": INT (default -1), "live": BOOL, "config": BOOL (both default false: current)}` | `{"name", "live", "config"}` (what was changed) |
//!
//! `net.update`'s `command` and `section` are virsh's names (`add`,
//! `add-first`, `add-last`, `modify`, `delete`; `ip-dhcp-host`, `dns-txt`,
//! ...); an unknown one is refused with virsh's message as invalid params.
//!
//! | `net.reload` | `{}` | `REPORT`: libvirt's reload ([`Driver::reload`]; also on SIGHUP) |
//! | `net.check` | `{"name"?: STRING}` | `CHECK` ([`Driver::check`], read-only) |
//! | `net.repair` | `{"name"?: STRING}` | `{"before": CHECK, "after": CHECK}` ([`Driver::repair`]) |
//!
//! `REPORT` is `{"reloaded": [NAME], "autostarted": [NAME], "problems":
//! [STRING]}`; `CHECK` is [`virtnet_core::driver::CheckReport`] as JSON:
//! `{"networks": [{"name", "backend", "checked", "drift": [{"kind":
//! "missing"|"altered"|"no-plan", "expected", "found"?}]}],
//! "private_chains": [DRIFT]}`.
//!
//! Every `"name"` of a network is its name or its UUID, looked up as virsh
//! does ([`Driver::lookup`]); `net.info` with `"uuid"` looks up by UUID only
//! ([`Driver::lookup_by_uuid`], `virsh net-name`).
//!
//! `INFO` is `{"name", "uuid", "active", "persistent", "autostart",
//! "bridge": STRING|null, "firewall_backend": "iptables"|"nftables"|null,
//! "title": STRING|null}`
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

use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::locks::KeyedLocks;
use super::protocol::RpcError;
use super::service::{CallContext, MethodInfo, Service, NET_METHODS};
use virtnet_core::driver::{
    Driver, DriverError, ListFilter, NetworkInfo, UpdateFlags, UpdateReport,
};
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{UpdateCommand, UpdateSection};

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
    /// `net.update` refused the change (libvirt's message); nothing changed.
    pub const UPDATE_REFUSED: i64 = 108;
    /// An argument the driver refuses (a UUID that is not one).
    pub const INVALID_ARGUMENT: i64 = 109;

    /// Every code with a short name, for documentation and clients.
    pub const ALL: [(i64, &str); 10] = [
        (NOT_FOUND, "not found"),
        (ALREADY_ACTIVE, "already active"),
        (NOT_ACTIVE, "not active"),
        (INVALID_DEFINITION, "invalid definition"),
        (OPERATION_FAILED, "operation failed"),
        (ALREADY_EXISTS, "already exists"),
        (TRANSIENT, "transient network"),
        (HOST_CRASHED, "host crashed"),
        (UPDATE_REFUSED, "update refused"),
        (INVALID_ARGUMENT, "invalid argument"),
    ];
}

/// The error code of a driver failure.
pub fn error_code(e: &DriverError) -> i64 {
    use driver_codes::*;
    match e {
        DriverError::NoNetwork(_) | DriverError::NoNetworkUuid(_) => NOT_FOUND,
        DriverError::InvalidUuid(_) => INVALID_ARGUMENT,
        DriverError::AlreadyActive(_) | DriverError::AlreadyActiveAs(_) => ALREADY_ACTIVE,
        DriverError::NotActive(_) => NOT_ACTIVE,
        DriverError::Xml(_) => INVALID_DEFINITION,
        DriverError::Update(virtnet_core::netxml::UpdateError::Xml(_)) => INVALID_DEFINITION,
        DriverError::Update(_) => UPDATE_REFUSED,
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
        | DriverError::Hook(_)
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
        "title": i.title,
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
    #[serde(default)]
    title: Option<String>,
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
        title: w.title,
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
struct CheckParams {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    flags: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoParams {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateParams {
    name: String,
    command: String,
    section: String,
    xml: String,
    #[serde(default = "minus_one")]
    parent_index: i32,
    #[serde(default)]
    live: bool,
    #[serde(default)]
    config: bool,
}

fn minus_one() -> i32 {
    -1
}

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

/// A network lifecycle change, as libvirt's network events report it
/// (`VIR_NETWORK_EVENT_*`; the discriminant is libvirt's number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetEventKind {
    Defined = 0,
    Undefined = 1,
    Started = 2,
    Stopped = 3,
}

/// One lifecycle event: which network (name and UUID text) and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    pub name: String,
    pub uuid: String,
    pub kind: NetEventKind,
}

/// Receives every [`NetEvent`]; called on the thread that made the change,
/// after the change, with the network's lock released. Must not block.
pub type EventSink = Arc<dyn Fn(&NetEvent) + Send + Sync>;

/// [`Service`] over a network [`Driver`].
pub struct DriverService {
    driver: Arc<Driver>,
    locks: KeyedLocks<String>,
    on_change: Option<ChangeHook>,
    sinks: Mutex<(u64, Vec<(u64, EventSink)>)>,
}

impl DriverService {
    pub fn new(driver: Arc<Driver>) -> Self {
        DriverService {
            driver,
            locks: KeyedLocks::new(),
            on_change: None,
            sinks: Mutex::new((0, Vec::new())),
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

    /// Register `sink` for every lifecycle event from now on; returns the
    /// id to give [`DriverService::unsubscribe`].
    pub fn subscribe(&self, sink: EventSink) -> u64 {
        let mut s = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        let id = s.0;
        s.1.push((id, sink));
        id
    }

    /// Stop delivering events to the sink registered as `id`.
    pub fn unsubscribe(&self, id: u64) {
        let mut s = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        s.1.retain(|(i, _)| *i != id);
    }

    fn emit(&self, name: &str, uuid: &str, kind: NetEventKind) {
        let sinks: Vec<EventSink> = {
            let s = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
            s.1.iter().map(|(_, f)| Arc::clone(f)).collect()
        };
        let ev = NetEvent {
            name: name.to_owned(),
            uuid: uuid.to_owned(),
            kind,
        };
        for f in sinks {
            f(&ev);
        }
    }

    /// Define (or redefine) a network from XML, under the lock of the name
    /// the XML gives; emits [`NetEventKind::Defined`].
    pub fn define_xml(&self, xml: &str) -> Result<virtnet_core::netxml::NetworkDef, DriverError> {
        let d = &self.driver;
        // Lock the network the XML names. XML that does not even parse is
        // refused by the driver itself, with its position, without a lock.
        let r = match virtnet_core::netxml::parse(xml) {
            Ok(def) => {
                let r = {
                    let _guard = self.locks.lock(def.name.clone());
                    d.define(xml)
                };
                self.changed();
                r
            }
            Err(_) => d.define(xml),
        }?;
        self.emit(&r.name, &r.uuid.to_string(), NetEventKind::Defined);
        Ok(r)
    }

    /// Start, destroy or undefine `name` under its lock; emits the
    /// matching lifecycle event when it succeeds.
    pub fn lifecycle(&self, name: &str, op: NetOp) -> Result<(), DriverError> {
        let d = &self.driver;
        let r = {
            let _guard = self.locks.lock(name.to_owned());
            let uuid = d.info(name)?.uuid;
            match op {
                NetOp::Start => d.start(name),
                NetOp::Destroy => d.destroy(name),
                NetOp::Undefine => d.undefine(name),
            }
            .map(|()| uuid)
        };
        self.changed();
        let uuid = r?;
        let kind = match op {
            NetOp::Start => NetEventKind::Started,
            NetOp::Destroy => NetEventKind::Stopped,
            NetOp::Undefine => NetEventKind::Undefined,
        };
        self.emit(name, &uuid, kind);
        Ok(())
    }

    /// `net-update` of `name` under its lock (libvirt emits no lifecycle
    /// event for it).
    pub fn update(
        &self,
        name: &str,
        command: UpdateCommand,
        section: UpdateSection,
        parent_index: i32,
        xml: &str,
        flags: UpdateFlags,
    ) -> Result<UpdateReport, DriverError> {
        let r = {
            let _guard = self.locks.lock(name.to_owned());
            self.driver
                .update(name, command, section, parent_index, xml, flags)
        };
        self.changed();
        r
    }

    /// [`Driver::reload_locked`] under the per-network locks; the change
    /// hook runs after it.
    pub fn reload(&self) -> Result<Value, RpcError> {
        let r = self
            .driver
            .reload_locked(|name| self.locks.lock(name.to_owned()));
        self.changed();
        let rep = r.map_err(|e| rpc_error(&e))?;
        for p in &rep.problems {
            tracing::warn!("reload: {p}");
        }
        Ok(json!({
            "reloaded": rep.reloaded,
            "autostarted": rep.autostarted,
            "problems": rep.problems,
        }))
    }

    /// `net.check` / `net.repair` (`repair`) for one network or all.
    pub fn check(&self, name: Option<String>, repair: bool) -> Result<Value, RpcError> {
        let method = if repair { "net.repair" } else { "net.check" };
        let name = name.map(|n| self.resolve(method, n)).transpose()?;
        let to_json =
            |r: &virtnet_core::driver::CheckReport| serde_json::to_value(r).unwrap_or(Value::Null);
        if repair {
            let r = self
                .driver
                .repair_locked(name.as_deref(), |n| self.locks.lock(n.to_owned()));
            self.changed();
            let (before, after) = r.map_err(|e| rpc_error(&e))?;
            Ok(json!({ "before": to_json(&before), "after": to_json(&after) }))
        } else {
            let _guard = name.as_ref().map(|n| self.locks.lock(n.clone()));
            self.driver
                .check(name.as_deref())
                .map(|r| to_json(&r))
                .map_err(|e| rpc_error(&e))
        }
    }

    /// The name of the network a request names (by name or UUID).
    fn resolve(&self, method: &str, name: String) -> Result<String, RpcError> {
        let name = checked_name(method, name)?;
        self.driver.resolve(&name).map_err(|e| rpc_error(&e))
    }

    /// Create (define and start) a transient network from XML under the lock
    /// of the name it gives; emits [`NetEventKind::Started`] (libvirt's
    /// networkCreateXML).
    pub fn create_xml(&self, xml: &str) -> Result<virtnet_core::netxml::NetworkDef, DriverError> {
        let d = &self.driver;
        let r = match virtnet_core::netxml::parse(xml) {
            Ok(def) => {
                let r = {
                    let _guard = self.locks.lock(def.name.clone());
                    d.create(xml)
                };
                self.changed();
                r
            }
            Err(_) => d.create(xml),
        }?;
        self.emit(&r.name, &r.uuid.to_string(), NetEventKind::Started);
        Ok(r)
    }

    /// Set the autostart flag of `name` under its lock.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), DriverError> {
        let r = {
            let _guard = self.locks.lock(name.to_owned());
            self.driver.set_autostart(name, on)
        };
        self.changed();
        r
    }

    /// Run a read-only query on `name` under its lock (a read never sees a
    /// start half done).
    pub fn read<R>(
        &self,
        name: &str,
        f: impl FnOnce(&Driver) -> Result<R, DriverError>,
    ) -> Result<R, DriverError> {
        let _guard = self.locks.lock(name.to_owned());
        f(&self.driver)
    }
}

/// The lifecycle operations of [`DriverService::lifecycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetOp {
    Start,
    Destroy,
    Undefine,
}

impl Service for DriverService {
    fn methods(&self) -> &[MethodInfo] {
        NET_METHODS
    }

    fn driver_service(&self) -> Option<&DriverService> {
        Some(self)
    }

    /// `{"backend", "networks", "active", "busy_networks",
    /// "event_subscribers"}` (connections registered for lifecycle events) for
    /// `daemon.status`.
    fn status(&self) -> Value {
        let list = self.driver.list();
        json!({
            "backend": self.driver.backend().to_string(),
            "networks": list.len(),
            "active": list.iter().filter(|n| n.active).count(),
            "busy_networks": self.locks.held(),
            "event_subscribers": self.sinks.lock().unwrap_or_else(|e| e.into_inner()).1.len(),
        })
    }

    fn check_drift(&self, repair: bool) {
        match self.check(None, repair) {
            Ok(v) => {
                let report = if repair { &v["before"] } else { &v };
                let drifted =
                    serde_json::from_value::<virtnet_core::driver::CheckReport>(report.clone())
                        .map(|r| r.drifted())
                        .unwrap_or(false);
                if drifted {
                    tracing::warn!(repaired = repair, "drift found: {report}");
                    if repair {
                        tracing::info!("after repair: {}", v["after"]);
                    }
                } else {
                    tracing::debug!("drift check: nothing drifted");
                }
            }
            Err(e) => tracing::error!("drift check failed: {}", e.message),
        }
    }

    fn reload(&self) {
        match DriverService::reload(self) {
            Ok(r) => tracing::info!("reload done: {r}"),
            Err(e) => tracing::error!("reload failed: {}", e.message),
        }
    }

    fn call(&self, _ctx: &CallContext, method: &str, p: Value) -> Result<Value, RpcError> {
        let d = &self.driver;
        let err = |e: DriverError| rpc_error(&e);
        match method {
            "net.define" | "net.create" => {
                let DefineParams { xml } = params(method, p)?;
                if method == "net.create" {
                    self.create_xml(&xml)
                } else {
                    self.define_xml(&xml)
                }
                .map(|def| json!({"name": def.name, "uuid": def.uuid.to_string()}))
                .map_err(err)
            }
            "net.undefine" | "net.start" | "net.destroy" => {
                let NameParams { name } = params(method, p)?;
                let name = self.resolve(method, name)?;
                let op = match method {
                    "net.undefine" => NetOp::Undefine,
                    "net.start" => NetOp::Start,
                    _ => NetOp::Destroy,
                };
                self.lifecycle(&name, op).map_err(err)?;
                Ok(json!({ "name": name }))
            }
            "net.autostart" => {
                let AutostartParams { name, enable } = params(method, p)?;
                let name = self.resolve(method, name)?;
                self.set_autostart(&name, enable).map_err(err)?;
                Ok(json!({"name": name, "autostart": enable}))
            }
            "net.list" => {
                let ListParams { flags } = params(method, p)?;
                let filter = ListFilter::from_flags(flags).map_err(|bad| {
                    RpcError::invalid_params(format!(
                        "{method}: unsupported flags (0x{bad:x}) in function networkConnectListAllNetworks"
                    ))
                })?;
                Ok(Value::Array(
                    d.list_filtered(&filter).iter().map(info_to_json).collect(),
                ))
            }
            "net.info" => {
                let name = match params(method, p)? {
                    InfoParams {
                        name: Some(name),
                        uuid: None,
                    } => self.resolve(method, name)?,
                    InfoParams {
                        name: None,
                        uuid: Some(uuid),
                    } => d.lookup_by_uuid(&uuid).map_err(err)?.name,
                    _ => {
                        return Err(RpcError::invalid_params(format!(
                            "{method}: exactly one of \"name\" and \"uuid\" is required"
                        )))
                    }
                };
                // Reads take the lock too: they never see a start half done.
                let _guard = self.locks.lock(name.clone());
                d.info(&name).map(|i| info_to_json(&i)).map_err(err)
            }
            "net.dhcp_leases" => {
                let LeasesParams { name, mac } = params(method, p)?;
                let name = self.resolve(method, name)?;
                let _guard = self.locks.lock(name.clone());
                d.dhcp_leases(&name, mac.as_deref())
                    .map(|l| json!(l))
                    .map_err(err)
            }
            "net.dumpxml" => {
                let DumpxmlParams { name, inactive } = params(method, p)?;
                let name = self.resolve(method, name)?;
                let _guard = self.locks.lock(name.clone());
                d.dumpxml(&name, inactive)
                    .map(|xml| json!({ "xml": xml }))
                    .map_err(err)
            }
            "net.reload" => {
                let NoParams {} = params(method, p)?;
                DriverService::reload(self)
            }
            "net.check" | "net.repair" => {
                let CheckParams { name } = params(method, p)?;
                self.check(name, method == "net.repair")
            }
            "net.update" => {
                let u: UpdateParams = params(method, p)?;
                let bad = |m: String| RpcError::invalid_params(format!("{method}: {m}"));
                let command: UpdateCommand = u.command.parse().map_err(bad)?;
                let section: UpdateSection = u.section.parse().map_err(bad)?;
                // Bad params first, then the lookup (by name or UUID).
                let name = self.resolve(method, u.name)?;
                let flags = UpdateFlags {
                    live: u.live,
                    config: u.config,
                };
                let r = self
                    .update(&name, command, section, u.parent_index, &u.xml, flags)
                    .map_err(err)?;
                Ok(json!({"name": name, "live": r.live, "config": r.config}))
            }
            other => Err(RpcError::method_not_found(other)),
        }
    }
}
