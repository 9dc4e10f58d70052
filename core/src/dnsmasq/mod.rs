//! dnsmasq configuration, hostsfile and addnhosts generation (libvirt 11.3.0 exact).
//!
//! For a network whose mode libvirt manages (isolated, nat, route, open),
//! libvirt runs one dnsmasq per network. This module produces, as pure text,
//! exactly what libvirt 11.3.0 writes for it:
//!
//! - [`conf_contents`]: the configuration file (`<dir>/<name>.conf`), the
//!   DHCP hosts file and the additional hosts file, in a [`DnsmasqFiles`];
//!   the `##` comment header is a parameter ([`ConfHeader`]) so that the
//!   output can be compared byte for byte with libvirt's, or name virtnet;
//! - [`refresh_contents`]: the two hosts files as a refresh (SIGHUP)
//!   rewrites them;
//! - [`command_line`]: the `dnsmasq --conf-file=...` command, with
//!   [`DnsmasqCaps`] (binary path and version check, [`DnsmasqCaps::probe`]);
//! - [`needs_dnsmasq`]: whether starting a network starts a dnsmasq;
//! - [`DnsmasqPaths`]: the file names, with libvirt's escaping quirk.
//!
//! Nothing here touches the file system or runs anything, except
//! [`DnsmasqCaps::probe`] (through a [`virtnet_runner::Runner`]) and
//! [`caps::find_binary`] (looks at `$PATH` directories).
//!
//! Deliberate differences from libvirt (all about inputs libvirt would turn
//! into a broken file): a value containing a line break is rejected
//! ([`DnsmasqError::LineBreak`]) instead of injecting configuration lines; a
//! network without a bridge name is rejected ([`DnsmasqError::NoBridge`])
//! instead of writing `interface=(null)`; a DHCP host with neither MAC/id
//! nor name is rejected ([`DnsmasqError::IncompleteHost`]). At define time
//! [`check_define_values`] refuses every value dnsmasq would read
//! differently (line breaks, quotes, comments, hosts-file separators).
//!
//! The driver writes [`DnsmasqFiles::files`] (the two hosts files, always,
//! then the configuration) and runs [`command_line`].
//!
//! Tests: `core/tests/dnsmasq_golden.rs` (libvirt's networkxml2conf cases
//! and the daemon captures, byte for byte), `dnsmasq_errors.rs`,
//! `dnsmasq_props.rs` (arbitrary definitions: no panic, well-formed
//! output), `dnsmasq_real.rs` (the real dnsmasq starts with every generated
//! configuration in a fresh `unshare -n` namespace), `cli/tests/dnsmasq_cli.rs`.

pub mod caps;
mod command;
mod conf;
mod error;
pub mod hosts;
pub mod leases;
mod paths;
mod values;

pub use caps::{DnsmasqCaps, DnsmasqVersion};
pub use command::{
    command_line, mode_uses_dnsmasq, needs_dnsmasq, DnsmasqCommand, BRIDGE_ENV,
    LIBVIRT_LEASES_HELPER,
};
pub use conf::{
    conf_contents, ptr_domain, refresh_contents, ConfHeader, DnsmasqFiles, DnsmasqOptions,
    RefreshFiles,
};
pub use error::{DnsmasqError, RangeProblem};
pub use paths::{
    xml_escape_name, DnsmasqPaths, LIBVIRT_DNSMASQ_DIR, LIBVIRT_PID_DIR, VIRTNET_DNSMASQ_DIR,
};
pub use values::{check_define_values, UnsafeValue};
