//! Definition features virtnet parses (libvirt accepts them) but cannot
//! apply on the host yet. A definition using one is refused at define
//! time with a message naming the element, instead of being accepted and
//! silently ignored:
//!
//! - `<bridge macTableManager='libvirt'>` (libvirt turns the bridge's
//!   learning and flooding off and manages its FDB per guest port).
//! - `<domain register='yes'>` (libvirt registers the domain with
//!   systemd-resolved).
//!
//! (`<bandwidth>` of the network is applied, see [`super::bandwidth`]; a
//! `<bandwidth>` inside a `<portgroup>` is accepted as libvirt accepts it:
//! it applies to guest ports, which virtnet does not manage.)

use crate::netxml::{ErrorKind, Location, MacTableManager, NetXmlError, NetworkDef};

fn refuse(path: &str, attr: Option<&str>, msg: String) -> NetXmlError {
    NetXmlError::new(ErrorKind::Unsupported, msg).at(Location {
        line: 0,
        column: 0,
        path: path.to_string(),
        attribute: attr.map(str::to_string),
    })
}

/// The first feature of `def` virtnet cannot apply, as an error with the
/// element's path (positions are filled in by [`crate::netxml::locate`]).
pub fn unsupported_feature(def: &NetworkDef) -> Option<NetXmlError> {
    let n = &def.name;
    if def.bridge.mac_table_manager == Some(MacTableManager::Libvirt) {
        return Some(refuse(
            "/network/bridge[1]",
            Some("macTableManager"),
            format!("unsupported configuration: <bridge macTableManager='libvirt'> of network '{n}' cannot be applied by virtnet; remove it or use 'kernel'"),
        ));
    }
    if def.domain.register == Some(true) {
        return Some(refuse(
            "/network/domain[1]",
            Some("register"),
            format!("unsupported configuration: <domain register='yes'> of network '{n}' (systemd-resolved registration) cannot be applied by virtnet; remove it"),
        ));
    }
    None
}
