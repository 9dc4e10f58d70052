//! `virtnet-leaseshelper`: the script dnsmasq runs on every DHCP lease change
//! (`--dhcp-script`), keeping each network's leases in
//! `$VIRTNET_LEASES_DIR/BRIDGE.status` (default `/var/lib/libvirt/dnsmasq`)
//! in libvirt's format; see `virtnet_core::dnsmasq::leases`.
//!
//! Called as `virtnet-leaseshelper add|old|del MAC IP [HOSTNAME]` or
//! `virtnet-leaseshelper init` (prints the saved leases in dnsmasq's
//! lease-file format). Exit status 0 on success, 1 with a message on stderr
//! otherwise (dnsmasq logs it).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use virtnet_core::dnsmasq::leases;

const USAGE: &str = "Usage: virtnet-leaseshelper add|old|del MAC IP [HOSTNAME]
       virtnet-leaseshelper init

Run by dnsmasq as its --dhcp-script (virtnet starts dnsmasq with it): keeps
the leases of the network on bridge $DNSMASQ_INTERFACE (or $VIR_BRIDGE_NAME)
in $VIRTNET_LEASES_DIR/BRIDGE.status (default /var/lib/libvirt/dnsmasq), the
file `virtnet net-dhcp-leases` and libvirt read. `init` prints the saved
leases in dnsmasq's lease-file format.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help" | "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version") => {
            println!("virtnet-leaseshelper {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let env = |k: &str| std::env::var(k).ok();
    let dir = env(leases::DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(leases::DEFAULT_DIR));
    let event = leases::Event::from_env(args, env);
    match leases::run_helper(&dir, &event) {
        Ok(stdout) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(stdout.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "virtnet-leaseshelper: {e}");
            if matches!(e, leases::LeaseError::Usage(_)) {
                let _ = write!(std::io::stderr(), "{USAGE}");
            }
            ExitCode::from(1)
        }
    }
}
