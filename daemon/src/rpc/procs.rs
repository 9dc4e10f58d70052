//! The procedures: one [`Connection`] per libvirt client, answering the
//! remote program's connection and network procedures and the keepalive
//! program, over the network driver of [`crate::DriverService`].
//!
//! Semantics follow libvirt's remote daemon and network driver:
//! procedures other than `AUTH_LIST`, `CONNECT_SUPPORTS_FEATURE` and
//! `CONNECT_OPEN` need an open connection ("connection not open");
//! a network argument is found by its UUID, as libvirt's driver does
//! ("no network with matching uuid 'U' (NAME)"); list filters are libvirt's
//! three pairs (active/inactive, persistent/transient,
//! autostart/no-autostart: a pair with neither bit set does not filter);
//! unknown flag bits are refused ("unsupported flags (0x…) in function …").
//! Mutating procedures are refused on the read-only socket before anything
//! is looked up, as libvirt's public API does.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use virtnet_core::driver::{DriverError, ListFilter, NetworkInfo, UpdateFlags};
use virtnet_core::netxml::ErrorKind;
use virtnet_core::netxml::{UpdateCommand, UpdateSection};

use super::wire::{self, domain, err, feature, msg_type, proc_ as p, Header, LibvirtError};
use super::xdr::{Decoder, Encoder, XdrError};
use crate::driver_service::{DriverService, EventSink, NetEvent, NetOp};
use crate::service::{CallContext, Service};
use crate::sockets::SocketKind;

/// The URI `CONNECT_GET_URI` reports: what a client opens to reach the
/// system network daemon.
pub const URI: &str = "network:///system";
/// The libvirt version `CONNECT_GET_LIB_VERSION` reports (our
/// compatibility target, 11.3.0, as major * 1,000,000 + minor * 1,000 +
/// micro).
pub const LIB_VERSION: u64 = 11_003_000;

/// `VIR_NETWORK_XML_INACTIVE`.
pub const XML_INACTIVE: u32 = 1;
/// `VIR_NETWORK_DEFINE_VALIDATE`.
pub const DEFINE_VALIDATE: u32 = 1;
/// `VIR_NETWORK_EVENT_ID_LIFECYCLE`.
pub const EVENT_ID_LIFECYCLE: i32 = 0;

/// A network as the protocol names it (`remote_nonnull_network`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRef {
    pub name: String,
    pub uuid: [u8; 16],
}

/// The 16 bytes of a UUID in its text form (hyphens optional).
pub fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// A UUID's text form, libvirt's 8-4-4-4-12 lower-case hex.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn decode_err(_e: XdrError) -> LibvirtError {
    LibvirtError::rpc("Unable to decode message payload")
}

fn get_net(d: &mut Decoder<'_>) -> Result<NetRef, XdrError> {
    let name = d.string(wire::STRING_MAX)?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(d.fixed(16)?);
    Ok(NetRef { name, uuid })
}

fn put_net(e: &mut Encoder, name: &str, uuid: &[u8; 16]) {
    e.string(name).fixed(uuid);
}

fn put_info(e: &mut Encoder, i: &NetworkInfo) {
    put_net(e, &i.name, &uuid_bytes(&i.uuid).unwrap_or_default());
}

/// The libvirt error for a driver failure: libvirt's code, domain and
/// complete message (with the prefix libvirt's error layer adds to the
/// driver's text).
pub fn driver_error(e: &DriverError) -> LibvirtError {
    let net = |code, msg: String| LibvirtError::new(code, domain::NETWORK, msg);
    match e {
        // Already carries "Network not found: " / "Requested operation…".
        DriverError::NoNetwork(_) | DriverError::NoNetworkUuid(_) => {
            net(err::NO_NETWORK, e.to_string())
        }
        DriverError::InvalidUuid(_) => net(err::INVALID_ARG, e.to_string()),
        DriverError::NotActive(_) => net(err::OPERATION_INVALID, e.to_string()),
        DriverError::AlreadyActive(_)
        | DriverError::AlreadyActiveAs(_)
        | DriverError::Transient(_)
        | DriverError::AutostartTransient(_) => net(
            err::OPERATION_INVALID,
            format!("Requested operation is not valid: {e}"),
        ),
        DriverError::NameExists { .. } | DriverError::UuidExists { .. } => {
            net(err::OPERATION_FAILED, format!("operation failed: {e}"))
        }
        // Already carries libvirt's class prefix ("Operation not supported:
        // " / "Requested operation is not valid: ") or an XML position.
        DriverError::Update(u) => match u {
            virtnet_core::netxml::UpdateError::Unsupported(_) => {
                net(err::OPERATION_UNSUPPORTED, e.to_string())
            }
            virtnet_core::netxml::UpdateError::Invalid(_) => {
                net(err::OPERATION_INVALID, e.to_string())
            }
            virtnet_core::netxml::UpdateError::Xml(_) => {
                net(err::XML_ERROR, format!("XML error: {e}"))
            }
        },
        DriverError::Xml(x) => match x.kind {
            ErrorKind::Unsupported | ErrorKind::Validation => {
                net(67, format!("unsupported configuration: {e}"))
            }
            _ => net(err::XML_ERROR, format!("XML error: {e}")),
        },
        // VIR_ERR_HOOK_SCRIPT_FAILED from the hook layer; the message is
        // complete ("Hook script execution failed: ...").
        DriverError::Hook(_) => LibvirtError::new(70, domain::HOOK, e.to_string()),
        _ => net(err::INTERNAL_ERROR, format!("internal error: {e}")),
    }
}

/// Event registrations of one connection: (callback id, network UUID the
/// callback is limited to).
type Registrations = Arc<Mutex<Vec<(i32, Option<[u8; 16]>)>>>;

/// One libvirt client's state.
pub struct Connection {
    ctx: CallContext,
    service: Arc<dyn Service>,
    tx: SyncSender<Vec<u8>>,
    open: bool,
    closed: bool,
    registrations: Registrations,
    next_callback: i32,
    sink: Option<u64>,
}

impl Connection {
    pub(crate) fn new(
        ctx: CallContext,
        service: Arc<dyn Service>,
        tx: SyncSender<Vec<u8>>,
    ) -> Self {
        Connection {
            ctx,
            service,
            tx,
            open: false,
            closed: false,
            registrations: Arc::new(Mutex::new(Vec::new())),
            next_callback: 0,
            sink: None,
        }
    }

    /// True after `CONNECT_CLOSE`: the server ends the connection once the
    /// reply is queued.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Drop the event subscription (the connection is ending).
    pub fn shutdown(&mut self) {
        if let (Some(id), Some(ds)) = (self.sink.take(), self.service.driver_service()) {
            ds.unsubscribe(id);
        }
    }

    /// Answer one packet: the reply (or error reply) to a call, a `PONG`
    /// to a keepalive `PING`, or nothing.
    pub fn handle(&mut self, h: &Header, body: &[u8]) -> Option<Vec<u8>> {
        if h.prog == wire::KEEPALIVE_PROGRAM && h.vers == wire::KEEPALIVE_VERSION {
            if h.proc_ == wire::KEEPALIVE_PING && h.type_ == msg_type::MESSAGE {
                let pong = Header {
                    proc_: wire::KEEPALIVE_PONG,
                    type_: msg_type::MESSAGE,
                    serial: 0,
                    status: wire::status::OK,
                    ..*h
                };
                return Some(wire::packet(&pong, &[]));
            }
            // A PONG (we never ping) or anything else: nothing to answer.
            return None;
        }
        if h.type_ != msg_type::CALL {
            // Replies, events and stream data from a client: libvirt drops
            // them (a call with file descriptors cannot be served here).
            if h.type_ == msg_type::CALL_WITH_FDS {
                return Some(super::error_reply(
                    h,
                    &LibvirtError::rpc(format!("Unexpected message type {}", h.type_)),
                ));
            }
            tracing::debug!(client = self.ctx.client_id, ?h, "dropping non-call message");
            return None;
        }
        let result = if h.prog != wire::REMOTE_PROGRAM
            || h.vers != wire::REMOTE_VERSION
            || self.ctx.socket == SocketKind::Admin
        {
            Err(LibvirtError::rpc(format!(
                "Cannot find program {} version {}",
                h.prog as i32, h.vers as i32
            )))
        } else if h.status != wire::status::OK {
            Err(LibvirtError::rpc(format!(
                "Unexpected message status {}",
                h.status
            )))
        } else {
            self.call(h.proc_, body)
        };
        Some(match result {
            Ok(ret) => wire::packet(&h.reply(wire::status::OK), &ret),
            Err(e) => {
                tracing::debug!(
                    client = self.ctx.client_id,
                    proc_ = h.proc_,
                    code = e.code,
                    "error: {}",
                    e.message
                );
                super::error_reply(h, &e)
            }
        })
    }

    fn driver(&self, function: &str) -> Result<&DriverService, LibvirtError> {
        self.service
            .driver_service()
            .ok_or_else(|| LibvirtError::no_support(function))
    }

    fn writable(&self, function: &str) -> Result<(), LibvirtError> {
        if self.ctx.socket == SocketKind::ReadOnly {
            tracing::warn!(
                client = self.ctx.client_id,
                socket = self.ctx.socket.label(),
                "refused {function} on the read-only socket"
            );
            return Err(LibvirtError::read_only(function));
        }
        Ok(())
    }

    /// The network `net` names, found by UUID.
    fn find(&self, ds: &DriverService, net: &NetRef) -> Result<NetworkInfo, LibvirtError> {
        let uuid = uuid_text(&net.uuid);
        ds.driver()
            .list()
            .into_iter()
            .find(|i| uuid_bytes(&i.uuid) == Some(net.uuid))
            .ok_or_else(|| {
                LibvirtError::new(
                    err::NO_NETWORK,
                    domain::NETWORK,
                    format!(
                        "Network not found: no network with matching uuid '{uuid}' ({})",
                        net.name
                    ),
                )
            })
    }

    fn call(&mut self, proc_: i32, body: &[u8]) -> Result<Vec<u8>, LibvirtError> {
        let mut d = Decoder::new(body);
        let mut e = Encoder::new();
        match proc_ {
            p::AUTH_LIST => {
                // One type: REMOTE_AUTH_NONE (peer credentials were checked
                // at accept).
                e.u32(1).u32(0);
                return Ok(e.into_inner());
            }
            p::CONNECT_SUPPORTS_FEATURE => {
                let f = d.i32().map_err(decode_err)?;
                let yes = matches!(
                    f,
                    feature::PROGRAM_KEEPALIVE
                        | feature::REMOTE_EVENT_CALLBACK
                        | feature::REMOTE_CLOSE_CALLBACK
                        | feature::NETWORK_UPDATE_HAS_CORRECT_ORDER
                );
                e.i32(i32::from(yes));
                return Ok(e.into_inner());
            }
            p::CONNECT_OPEN => {
                let _name = d.opt_string(wire::STRING_MAX).map_err(decode_err)?;
                let _flags = d.u32().map_err(decode_err)?;
                self.open = true;
                return Ok(Vec::new());
            }
            _ => {}
        }
        if !self.open {
            return Err(LibvirtError::new(
                err::INTERNAL_ERROR,
                domain::RPC,
                "internal error: connection not open",
            ));
        }
        match proc_ {
            p::CONNECT_CLOSE => {
                self.closed = true;
            }
            p::CONNECT_GET_URI => {
                e.string(URI);
            }
            p::CONNECT_GET_TYPE => {
                e.string("network");
            }
            p::CONNECT_GET_VERSION => {
                // A network daemon has no hypervisor version (libvirt's
                // network driver does not implement it either).
                return Err(LibvirtError::no_support("virConnectGetVersion"));
            }
            p::CONNECT_GET_HOSTNAME => {
                let host = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into());
                e.string(&host);
            }
            p::CONNECT_GET_LIB_VERSION => {
                e.u64(LIB_VERSION);
            }
            p::CONNECT_IS_SECURE => {
                // A local UNIX socket: libvirt reports it secure.
                e.i32(1);
            }
            p::CONNECT_REGISTER_CLOSE_CALLBACK | p::CONNECT_UNREGISTER_CLOSE_CALLBACK => {}
            p::CONNECT_NUM_OF_NETWORKS | p::CONNECT_NUM_OF_DEFINED_NETWORKS => {
                let ds = self.driver("virConnectNumOfNetworks")?;
                let active = proc_ == p::CONNECT_NUM_OF_NETWORKS;
                let n = ds
                    .driver()
                    .list()
                    .iter()
                    .filter(|i| i.active == active)
                    .count();
                e.i32(n as i32);
            }
            p::CONNECT_LIST_NETWORKS | p::CONNECT_LIST_DEFINED_NETWORKS => {
                let max = d.i32().map_err(decode_err)?;
                if max < 0 || max as u32 > wire::NETWORK_LIST_MAX {
                    return Err(LibvirtError::rpc(
                        "maxnames > REMOTE_NETWORK_LIST_MAX".to_string(),
                    ));
                }
                let ds = self.driver("virConnectListNetworks")?;
                let active = proc_ == p::CONNECT_LIST_NETWORKS;
                let names: Vec<String> = ds
                    .driver()
                    .list()
                    .into_iter()
                    .filter(|i| i.active == active)
                    .take(max as usize)
                    .map(|i| i.name)
                    .collect();
                e.u32(names.len() as u32);
                for n in &names {
                    e.string(n);
                }
            }
            p::CONNECT_LIST_ALL_NETWORKS => {
                let need = d.i32().map_err(decode_err)?;
                let flags = d.u32().map_err(decode_err)?;
                // libvirt's VIR_CONNECT_LIST_NETWORKS_* pairs (the driver's
                // `net-list` filter).
                let filter = ListFilter::from_flags(flags)
                    .map_err(|_| LibvirtError::bad_flags(flags, "networkConnectListAllNetworks"))?;
                let ds = self.driver("virConnectListAllNetworks")?;
                let nets: Vec<NetworkInfo> = ds.driver().list_filtered(&filter);
                if nets.len() > wire::NETWORK_LIST_MAX as usize {
                    return Err(LibvirtError::rpc(format!(
                        "Too many networks '{}' for limit '{}'",
                        nets.len(),
                        wire::NETWORK_LIST_MAX
                    )));
                }
                if need != 0 {
                    e.u32(nets.len() as u32);
                    for i in &nets {
                        put_info(&mut e, i);
                    }
                } else {
                    e.u32(0);
                }
                e.u32(nets.len() as u32);
            }
            p::NETWORK_LOOKUP_BY_NAME => {
                let name = d.string(wire::STRING_MAX).map_err(decode_err)?;
                let ds = self.driver("virNetworkLookupByName")?;
                let info = ds
                    .read(&name, |drv| drv.info(&name))
                    .map_err(|e| driver_error(&e))?;
                put_info(&mut e, &info);
            }
            p::NETWORK_LOOKUP_BY_UUID => {
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(d.fixed(16).map_err(decode_err)?);
                let ds = self.driver("virNetworkLookupByUUID")?;
                let info = ds
                    .driver()
                    .list()
                    .into_iter()
                    .find(|i| uuid_bytes(&i.uuid) == Some(uuid))
                    .ok_or_else(|| {
                        LibvirtError::new(
                            err::NO_NETWORK,
                            domain::NETWORK,
                            format!(
                                "Network not found: no network with matching uuid '{}'",
                                uuid_text(&uuid)
                            ),
                        )
                    })?;
                put_info(&mut e, &info);
            }
            p::NETWORK_DEFINE_XML | p::NETWORK_DEFINE_XML_FLAGS => {
                let xml = d.string(wire::STRING_MAX).map_err(decode_err)?;
                let flags = if proc_ == p::NETWORK_DEFINE_XML_FLAGS {
                    d.u32().map_err(decode_err)?
                } else {
                    0
                };
                let function = if proc_ == p::NETWORK_DEFINE_XML {
                    "virNetworkDefineXML"
                } else {
                    "virNetworkDefineXMLFlags"
                };
                self.writable(function)?;
                // VALIDATE: our parser refuses everything libvirt's schema
                // would, with its position.
                if flags & !DEFINE_VALIDATE != 0 {
                    return Err(LibvirtError::bad_flags(flags, "networkDefineXMLFlags"));
                }
                let ds = self.driver(function)?;
                let def = ds.define_xml(&xml).map_err(|e| driver_error(&e))?;
                put_net(&mut e, &def.name, &def.uuid.0);
            }
            p::NETWORK_CREATE_XML | p::NETWORK_CREATE_XML_FLAGS => {
                let xml = d.string(wire::STRING_MAX).map_err(decode_err)?;
                let function = if proc_ == p::NETWORK_CREATE_XML {
                    "virNetworkCreateXML"
                } else {
                    let flags = d.u32().map_err(decode_err)?;
                    if flags & !DEFINE_VALIDATE != 0 {
                        return Err(LibvirtError::bad_flags(flags, "networkCreateXMLFlags"));
                    }
                    "virNetworkCreateXMLFlags"
                };
                self.writable(function)?;
                let ds = self.driver(function)?;
                let def = ds.create_xml(&xml).map_err(|e| driver_error(&e))?;
                put_net(&mut e, &def.name, &def.uuid.0);
            }
            p::NETWORK_CREATE | p::NETWORK_DESTROY | p::NETWORK_UNDEFINE => {
                let net = get_net(&mut d).map_err(decode_err)?;
                let (function, op) = match proc_ {
                    p::NETWORK_CREATE => ("virNetworkCreate", NetOp::Start),
                    p::NETWORK_DESTROY => ("virNetworkDestroy", NetOp::Destroy),
                    _ => ("virNetworkUndefine", NetOp::Undefine),
                };
                self.writable(function)?;
                let ds = self.driver(function)?;
                let info = self.find(ds, &net)?;
                ds.lifecycle(&info.name, op).map_err(|e| driver_error(&e))?;
            }
            p::NETWORK_SET_AUTOSTART => {
                let net = get_net(&mut d).map_err(decode_err)?;
                let on = d.i32().map_err(decode_err)?;
                self.writable("virNetworkSetAutostart")?;
                let ds = self.driver("virNetworkSetAutostart")?;
                let info = self.find(ds, &net)?;
                ds.set_autostart(&info.name, on != 0)
                    .map_err(|e| driver_error(&e))?;
            }
            p::NETWORK_UPDATE => {
                // remote_network_update_args: net, command, section,
                // parentIndex, xml, flags (virsh sends command before section
                // because the daemon reports feature 16, "update has correct
                // order").
                let net = get_net(&mut d).map_err(decode_err)?;
                let command = d.u32().map_err(decode_err)?;
                let section = d.u32().map_err(decode_err)?;
                let parent_index = d.i32().map_err(decode_err)?;
                let xml = d.string(wire::STRING_MAX).map_err(decode_err)?;
                let flags = d.u32().map_err(decode_err)?;
                self.writable("virNetworkUpdate")?;
                let flags = UpdateFlags::from_bits(flags).map_err(|e| driver_error(&e))?;
                let command = UpdateCommand::from_code(command)
                    .map_err(|e| driver_error(&DriverError::from(e)))?;
                let section = UpdateSection::from_code(section)
                    .map_err(|e| driver_error(&DriverError::from(e)))?;
                let ds = self.driver("virNetworkUpdate")?;
                let info = self.find(ds, &net)?;
                ds.update(&info.name, command, section, parent_index, &xml, flags)
                    .map_err(|e| driver_error(&e))?;
            }
            p::NETWORK_GET_DHCP_LEASES => {
                let net = get_net(&mut d).map_err(decode_err)?;
                let mac = d.opt_string(wire::STRING_MAX).map_err(decode_err)?;
                let need = d.i32().map_err(decode_err)?;
                let flags = d.u32().map_err(decode_err)?;
                if flags != 0 {
                    return Err(LibvirtError::bad_flags(flags, "networkGetDHCPLeases"));
                }
                let ds = self.driver("virNetworkGetDHCPLeases")?;
                let info = self.find(ds, &net)?;
                let leases = ds
                    .read(&info.name, |drv| {
                        drv.dhcp_leases(&info.name, mac.as_deref())
                    })
                    .map_err(|e| driver_error(&e))?;
                if leases.len() > wire::DHCP_LEASES_MAX as usize {
                    return Err(LibvirtError::rpc(format!(
                        "Number of leases is {}, which exceeds max limit: {}",
                        leases.len(),
                        wire::DHCP_LEASES_MAX
                    )));
                }
                if need != 0 {
                    e.u32(leases.len() as u32);
                    for l in &leases {
                        e.string(&l.interface)
                            .i64(l.expiry_time)
                            .i32(i32::from(l.ipv6))
                            .opt_string(Some(&l.mac))
                            .opt_string(l.iaid.as_deref())
                            .string(&l.ip_address)
                            .u32(l.prefix)
                            .opt_string(l.hostname.as_deref())
                            .opt_string(l.client_id.as_deref());
                    }
                } else {
                    e.u32(0);
                }
                e.u32(leases.len() as u32);
            }
            p::NETWORK_GET_XML_DESC => {
                let net = get_net(&mut d).map_err(decode_err)?;
                let flags = d.u32().map_err(decode_err)?;
                if flags & !XML_INACTIVE != 0 {
                    return Err(LibvirtError::bad_flags(flags, "networkGetXMLDesc"));
                }
                let ds = self.driver("virNetworkGetXMLDesc")?;
                let info = self.find(ds, &net)?;
                let xml = ds
                    .read(&info.name, |drv| {
                        drv.dumpxml(&info.name, flags & XML_INACTIVE != 0)
                    })
                    .map_err(|e| driver_error(&e))?;
                e.string(&xml);
            }
            p::NETWORK_GET_AUTOSTART
            | p::NETWORK_IS_ACTIVE
            | p::NETWORK_IS_PERSISTENT
            | p::NETWORK_GET_BRIDGE_NAME => {
                let net = get_net(&mut d).map_err(decode_err)?;
                let ds = self.driver("virNetworkGetAutostart")?;
                let info = self.find(ds, &net)?;
                let info = ds
                    .read(&info.name, |drv| drv.info(&info.name))
                    .map_err(|e| driver_error(&e))?;
                match proc_ {
                    p::NETWORK_GET_AUTOSTART => e.i32(i32::from(info.autostart)),
                    p::NETWORK_IS_ACTIVE => e.i32(i32::from(info.active)),
                    p::NETWORK_IS_PERSISTENT => e.i32(i32::from(info.persistent)),
                    _ => match &info.bridge {
                        Some(b) => e.string(b),
                        None => {
                            return Err(LibvirtError::new(
                                err::INTERNAL_ERROR,
                                domain::NETWORK,
                                format!(
                                    "internal error: network '{}' does not have a bridge name.",
                                    info.name
                                ),
                            ))
                        }
                    },
                };
            }
            p::CONNECT_NETWORK_EVENT_REGISTER_ANY => {
                let event_id = d.i32().map_err(decode_err)?;
                let net = if d.bool().map_err(decode_err)? {
                    Some(get_net(&mut d).map_err(decode_err)?)
                } else {
                    None
                };
                if event_id != EVENT_ID_LIFECYCLE {
                    return Err(LibvirtError::new(
                        err::INVALID_ARG,
                        domain::NONE,
                        format!("invalid argument: unsupported network event ID {event_id}"),
                    ));
                }
                let service = Arc::clone(&self.service);
                let Some(ds) = service.driver_service() else {
                    return Err(LibvirtError::no_support(
                        "virConnectNetworkEventRegisterAny",
                    ));
                };
                let id = self.next_callback;
                self.next_callback += 1;
                self.registrations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((id, net.map(|n| n.uuid)));
                if self.sink.is_none() {
                    self.sink = Some(ds.subscribe(event_sink(
                        self.ctx.client_id,
                        self.tx.clone(),
                        Arc::clone(&self.registrations),
                    )));
                }
                e.i32(id);
            }
            p::CONNECT_NETWORK_EVENT_DEREGISTER_ANY => {
                let id = d.i32().map_err(decode_err)?;
                let mut regs = self.registrations.lock().unwrap_or_else(|e| e.into_inner());
                let before = regs.len();
                regs.retain(|(i, _)| *i != id);
                if regs.len() == before {
                    return Err(LibvirtError::new(
                        err::INVALID_ARG,
                        domain::NONE,
                        format!("invalid argument: callbackID {id} not registered"),
                    ));
                }
            }
            other => {
                return Err(LibvirtError::rpc(format!("unknown procedure: {other}")));
            }
        }
        Ok(e.into_inner())
    }
}

/// The sink that turns a driver event into `NETWORK_EVENT_LIFECYCLE`
/// messages for one connection's registrations; only queues (see the
/// module documentation of [`super`]).
fn event_sink(client: u64, tx: SyncSender<Vec<u8>>, regs: Registrations) -> EventSink {
    Arc::new(move |ev: &NetEvent| {
        let Some(uuid) = uuid_bytes(&ev.uuid) else {
            return;
        };
        let targets: Vec<i32> = regs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, only)| only.is_none() || *only == Some(uuid))
            .map(|(id, _)| *id)
            .collect();
        for id in targets {
            let mut e = Encoder::new();
            e.i32(id);
            put_net(&mut e, &ev.name, &uuid);
            e.i32(ev.kind as i32).i32(0);
            let h = Header {
                prog: wire::REMOTE_PROGRAM,
                vers: wire::REMOTE_VERSION,
                proc_: p::NETWORK_EVENT_LIFECYCLE,
                type_: msg_type::MESSAGE,
                serial: 0,
                status: wire::status::OK,
            };
            match tx.try_send(wire::packet(&h, &e.into_inner())) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => tracing::warn!(
                    client,
                    network = %ev.name,
                    "client does not read: network event dropped"
                ),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        let t = "c7a1b2d3-0000-4a5b-8c9d-0123456789ab";
        let b = uuid_bytes(t).unwrap();
        assert_eq!(uuid_text(&b), t);
        assert_eq!(uuid_bytes("c7a1b2d300004a5b8c9d0123456789ab"), Some(b));
        assert_eq!(uuid_bytes("xyz"), None);
        assert_eq!(uuid_bytes("g7a1b2d3-0000-4a5b-8c9d-0123456789ab"), None);
    }
}
