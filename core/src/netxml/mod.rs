//! Network definition model: parse, validate and format libvirt network XML.
//!
//! - [`model`]: the typed [`NetworkDef`] and its parts, plus helpers
//!   (`IpDef::prefix`, `IpDef::network`, `NetworkDef::forward_dev`, ...).
//! - [`parse()`]: XML → `NetworkDef` with libvirt 11.3.0's parse-time checks.
//! - [`format()`]: `NetworkDef` → XML exactly as libvirt formats it.
//! - errors: [`NetXmlError`] says what is wrong and where (line:column,
//!   element path, attribute).

mod dom;
pub mod error;
pub mod format;
mod lex;
pub mod model;
pub mod names;
mod parse;
pub mod validate;

pub use error::{ErrorKind, Location, NetXmlError};
pub use format::{format, format_indented, FormatFlags};
pub use model::*;
pub use parse::parse;
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
