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
mod parse;

pub use error::{ErrorKind, Location, NetXmlError};
pub use format::{format, FormatFlags};
pub use model::*;
pub use parse::parse;
