//! The `<firewall>` element of the network status file (work in progress).

/// A malformed `<firewall>` element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct FirewallXmlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}
