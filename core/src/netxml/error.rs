//! Errors of the network XML parser and validator.

use std::fmt;

/// Broad class of a rejection, mirroring libvirt's error codes where that
/// helps callers (and tests) tell failures apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input is not well-formed XML (or not a `<network>` document).
    Syntax,
    /// `<name>` missing or empty (libvirt VIR_ERR_NO_NAME).
    NoName,
    /// A value is malformed or a required item is missing (VIR_ERR_XML_ERROR
    /// / VIR_ERR_XML_DETAIL).
    Invalid,
    /// The combination is understood but not supported (VIR_ERR_CONFIG_UNSUPPORTED).
    Unsupported,
    /// A numeric address could not be parsed (libvirt's getaddrinfo failure).
    BadAddress,
    /// Rejected by the driver-level validation done at define/create time
    /// (libvirt's networkValidate), not by the parser.
    Validation,
}

/// Where in the input a problem was found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line; 0 when the position is not known (a validation error
    /// not yet passed through [`super::locate`]).
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Element path, e.g. `/network/ip[2]/dhcp/range[1]`.
    pub path: String,
    /// The attribute concerned, if any.
    pub attribute: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A rejected network definition: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NetXmlError {
    pub kind: ErrorKind,
    /// Human-readable message (libvirt's wording where libvirt has one).
    pub message: String,
    /// Position in the input, when known.
    pub location: Option<Location>,
}

impl NetXmlError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        NetXmlError {
            kind,
            message: message.into(),
            location: None,
        }
    }

    pub(crate) fn at(mut self, loc: Location) -> Self {
        self.location = Some(loc);
        self
    }

    /// 1-based line, if known.
    pub fn line(&self) -> Option<usize> {
        self.location.as_ref().map(|l| l.line).filter(|l| *l > 0)
    }

    /// 1-based column, if known.
    pub fn column(&self) -> Option<usize> {
        self.location
            .as_ref()
            .filter(|l| l.line > 0)
            .map(|l| l.column)
    }

    /// Message with the element/attribute path appended, without line:column.
    pub fn detail(&self) -> String {
        match &self.location {
            Some(loc) if !loc.path.is_empty() => match &loc.attribute {
                Some(a) => format!("{} (at {}/@{})", self.message, loc.path, a),
                None => format!("{} (at {})", self.message, loc.path),
            },
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for NetXmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) if loc.line > 0 => write!(f, "{}: {}", loc, self.detail()),
            _ => f.write_str(&self.detail()),
        }
    }
}

/// Convert a byte offset in `input` into 1-based (line, column-in-chars).
pub fn line_col(input: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(input.len());
    while off > 0 && !input.is_char_boundary(off) {
        off -= 1;
    }
    let before = &input[..off];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
