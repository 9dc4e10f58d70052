//! Network definition model: parse, validate and format libvirt network XML.
//!
//! - [`model`]: the typed [`NetworkDef`] and its parts, plus helpers
//!   (`IpDef::prefix`, `IpDef::network`, `NetworkDef::forward_dev`, ...).
//! - [`parse()`]: XML → `NetworkDef` with libvirt 11.3.0's parse-time checks.
//! - [`format()`]: `NetworkDef` → XML exactly as libvirt formats it.
//! - errors: [`NetXmlError`] says what is wrong and where (line:column,
//!   element path, attribute).
//! - [`validate_for_define`] / [`validate()`]: libvirt's define-time checks;
//!   [`names`]: virtnet's refusals of interface and network names.
//! - [`update`]: `net-update` on a definition (libvirt's sections,
//!   commands, matching rules and messages).
//!
//! Design rules:
//!
//! - **The parser mirrors libvirt's reading rules, not the schema.**
//!   XPath-style reads treat an empty value as absent, direct attribute
//!   reads do not; only the first singleton element counts; unknown
//!   elements are ignored; checks run in libvirt's order, so the first
//!   error is libvirt's first error. No RELAX NG validation is done
//!   (libvirt does not either unless asked). Nesting deeper than 256
//!   elements is refused with libxml2's message.
//! - **Formatting is a fixed point**: what [`format()`] writes parses back
//!   and formats identically, whatever the free-text fields hold (virtnet
//!   escapes the values libvirt writes raw; see README, "Where virtnet is
//!   stricter than libvirt"). libvirt's layout quirks are kept, e.g. a
//!   model-only `<driver>` printed after a self-closed `<forward/>`.
//! - **Every error has a position.** Parse errors carry line:column of the
//!   element or attribute; validation errors carry an element path that
//!   [`locate`] (used by [`parse_and_validate`]) maps to line:column.
//!
//! Tests: `core/tests/netxml_golden.rs` (libvirt 11.3.0's networkxml2xml
//! cases byte for byte, its must-fail cases, the networkxml2confdata and
//! firewalldata inputs, the real-daemon captures' definitions and status
//! files), `netxml_errors.rs` (rejections with libvirt's messages),
//! `netxml_fuzz.rs` (no panic; the fixed point on mutated golden
//! documents), `netxml_roundtrip.rs` (config and status files read back to
//! what was defined), `cli/tests/xml_cli.rs`.

mod dom;
pub mod error;
pub mod format;
mod lex;
pub mod model;
pub mod names;
mod parse;
pub mod update;
pub mod validate;

pub use error::{ErrorKind, Location, NetXmlError};
pub use format::{format, format_indented, FormatFlags};
pub use model::*;
pub use parse::parse;
pub use update::{apply_section, apply_update, UpdateCommand, UpdateError, UpdateSection};
pub use validate::{
    prepare_loaded_config, validate, validate_for_define, DefineContext, EmptyHost,
};

/// Parse and run the host-independent define-time validation, with
/// line:column positions filled in for validation errors too.
pub fn parse_and_validate(xml: &str) -> Result<NetworkDef, NetXmlError> {
    let def = parse(xml)?;
    match validate(&def) {
        Ok(()) => Ok(def),
        Err(mut e) => {
            locate(xml, &mut e);
            Err(e)
        }
    }
}

/// Fill in the line and column of an error that carries only an element
/// path (validation errors), by looking the path up in `xml`. Errors that
/// already have a position, or inputs that do not parse, are left alone.
pub fn locate(xml: &str, err: &mut NetXmlError) {
    let Some(loc) = err.location.as_mut() else {
        return;
    };
    if loc.line != 0 || loc.path.is_empty() {
        return;
    }
    let Ok(doc) = dom::parse_document(xml) else {
        return;
    };
    if let Some(el) = doc.root.find_path(&loc.path) {
        let attr = loc.attribute.as_deref().filter(|a| el.attr(a).is_some());
        let found = doc.location(el, attr);
        loc.line = found.line;
        loc.column = found.column;
        if el.path != loc.path {
            loc.path = el.path.clone();
            loc.attribute = None;
        }
    }
}
