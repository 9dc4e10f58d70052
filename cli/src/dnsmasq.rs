//! `virtnet dnsmasq`: print the dnsmasq configuration (or its hosts files)
//! that a network definition gets, exactly as libvirt 11.3.0 writes it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ArgGroup;
use virtnet_core::dnsmasq::{self, DnsmasqError, DnsmasqOptions, VIRTNET_DNSMASQ_DIR};
use virtnet_core::netxml::{self, EmptyHost, ErrorKind, Location, NetXmlError, NetworkDef};

use crate::EXIT_INPUT;

/// Arguments of `virtnet dnsmasq`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Print the dnsmasq configuration libvirt would write for a network",
    long_about = "Print the dnsmasq configuration file libvirt 11.3.0 writes for the network \
                  defined in FILE (or, with --hostsfile / --addnhosts, the DHCP hosts file or \
                  the additional hosts file it writes beside it).\n\n\
                  The definition is validated first, as `virsh net-define` would. The output \
                  equals libvirt's byte for byte, apart from the '##' comment header at the \
                  top, which names virtnet: with `--dnsmasq-dir /var/lib/libvirt/dnsmasq` \
                  (and `--pid-dir /run/libvirt/network` for the pid-file line a running \
                  libvirt daemon adds) it is the file libvirt puts in \
                  /var/lib/libvirt/dnsmasq/NAME.conf.\n\n\
                  A definition without a bridge name gets the first free name from its \
                  template (virbr0 by default), as on a host with no other networks.",
    after_long_help = "Examples:\n  \
        virtnet dnsmasq net.xml\n  \
        virtnet dnsmasq --dnsmasq-dir /var/lib/libvirt/dnsmasq --pid-dir /run/libvirt/network default.xml\n  \
        virtnet dnsmasq --hostsfile net.xml\n\n\
        Exit status: 0 when the text was printed, or when there is nothing to print (a note on \
        stderr says why); 1 when FILE cannot be read or the definition is invalid or has no \
        dnsmasq configuration (the error names FILE:LINE:COL); 2 for a usage error.",
    group(ArgGroup::new("which").args(["hostsfile", "addnhosts"]))
)]
pub struct Args {
    /// Network definition (libvirt network XML).
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// Directory holding the network's hosts file and additional hosts
    /// file; their paths appear in the configuration.
    #[arg(long, value_name = "DIR", default_value = VIRTNET_DNSMASQ_DIR)]
    dnsmasq_dir: String,

    /// Directory of dnsmasq's pid file: adds `pid-file=DIR/NAME.pid` (a
    /// running daemon writes it; libvirt's own test files have none).
    #[arg(long, value_name = "DIR")]
    pid_dir: Option<String>,

    /// Print the DHCP hosts file (`dhcp-hostsfile=`) instead.
    #[arg(long)]
    hostsfile: bool,

    /// Print the additional hosts file (`addn-hosts=`, from `<dns><host>`) instead.
    #[arg(long)]
    addnhosts: bool,
}

/// Run `virtnet dnsmasq`.
pub fn run(args: Args) -> ExitCode {
    let file = crate::out::path_text(&args.file);
    let fail = |msg: String| {
        crate::out::err_line(&format!("error: {msg}"));
        ExitCode::from(EXIT_INPUT)
    };
    let xml = match std::fs::read_to_string(&args.file) {
        Ok(x) => x,
        Err(e) => return fail(format!("{file}: cannot read: {e}")),
    };
    let mut def = match netxml::parse_and_validate(&xml) {
        Ok(d) => d,
        Err(e) => return fail(located(&file, &e)),
    };
    if !dnsmasq::mode_uses_dnsmasq(def.forward_mode()) {
        let mode = def.forward_mode().map(|m| m.as_str()).unwrap_or("none");
        return fail(format!(
            "{file}: network '{}' has forward mode '{mode}'; libvirt runs dnsmasq only for \
             isolated, nat, route and open networks",
            def.name
        ));
    }
    if let Err(e) = allocate_bridge(&mut def) {
        return fail(located(&file, &e));
    }
    if !dnsmasq::needs_dnsmasq(&def) {
        crate::out::err_line(&format!(
            "note: libvirt starts no dnsmasq for network '{}' ({})",
            def.name,
            if def.ips.is_empty() {
                "it has no <ip>"
            } else {
                "DNS is disabled and no <ip> has DHCP or TFTP"
            }
        ));
    }

    let opts = DnsmasqOptions::virtnet(args.dnsmasq_dir, args.pid_dir);
    let files = match dnsmasq::conf_contents(&def, &opts) {
        Ok(f) => f,
        Err(e) => return fail(located(&file, &dnsmasq_error(&xml, &e))),
    };
    for w in &files.warnings {
        crate::out::err_line(&format!("warning: {w}"));
    }

    let out = if args.hostsfile {
        match files.hostsfile() {
            None => {
                crate::out::err_line(&format!(
                    "note: network '{}' serves no DHCP, so its dnsmasq configuration uses no hosts file",
                    def.name
                ));
                return ExitCode::SUCCESS;
            }
            Some("") => {
                crate::out::err_line(&format!(
                    "note: the hosts file {} of network '{}' is empty (no DHCP <host> with an address)",
                    files.paths.hostsfile, def.name
                ));
                return ExitCode::SUCCESS;
            }
            Some(t) => t,
        }
    } else if args.addnhosts {
        match files.addnhosts() {
            None => {
                crate::out::err_line(&format!(
                    "note: network '{}' has DNS disabled, so its dnsmasq configuration uses no additional hosts file",
                    def.name
                ));
                return ExitCode::SUCCESS;
            }
            Some("") => {
                crate::out::err_line(&format!(
                    "note: the additional hosts file {} of network '{}' is empty (no <dns><host> with a hostname)",
                    files.paths.addnhosts, def.name
                ));
                return ExitCode::SUCCESS;
            }
            Some(t) => t,
        }
    } else {
        files.conf.as_str()
    };
    crate::out::print(out);
    ExitCode::SUCCESS
}

/// Give a definition without a concrete bridge name the one libvirt would
/// allocate on a host with no other networks.
fn allocate_bridge(def: &mut NetworkDef) -> Result<(), NetXmlError> {
    let concrete = def
        .bridge
        .name
        .as_deref()
        .is_some_and(|n| netxml::validate::bridge_template(Some(n)) != n);
    if !concrete {
        let name = netxml::validate::find_unused_bridge_name(def, &EmptyHost)?;
        crate::out::err_line(&format!(
            "note: network '{}' names no bridge; using '{name}' as libvirt would on a host without other networks",
            def.name
        ));
        def.bridge.name = Some(name);
    }
    Ok(())
}

/// A dnsmasq error as a located definition error.
fn dnsmasq_error(xml: &str, e: &DnsmasqError) -> NetXmlError {
    let mut ne = NetXmlError {
        kind: ErrorKind::Unsupported,
        message: e.to_string(),
        location: e.element_path().map(|path| Location {
            path,
            ..Location::default()
        }),
    };
    netxml::locate(xml, &mut ne);
    ne
}

/// `FILE:LINE:COL: message` (or `FILE: message` without a position).
fn located(file: &str, e: &NetXmlError) -> String {
    crate::out::file_error(file, e.line().zip(e.column()), &e.message)
}
