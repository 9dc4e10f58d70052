//! `virtnet`: command-line front end.
//!
//! Thin by design: parse arguments, call `virtnet-core` (or the simulated host
//! in `virtnet-fake`), print, and map errors to exit codes. Each command group
//! lives in its own module; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[allow(dead_code)] // used once `--connect` is wired
mod client;
mod dnsmasq;
mod net;
mod sim;

#[derive(Parser)]
#[command(
    name = "virtnet",
    version,
    about = "libvirt-compatible virtual networks and firewall rules",
    long_about = "virtnet defines, starts and destroys libvirt-style virtual networks and \
                  emits exactly the firewall commands libvirt 11.3.0 runs for them, on the \
                  real host or on a simulated one."
)]
struct Cli {
    #[command(flatten)]
    host: net::HostArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Sim(sim::SimArgs),
    Dnsmasq(dnsmasq::Args),
    #[command(flatten)]
    Net(net::NetCommand),
}

/// Exit status for a command that failed because of its input (bad file,
/// invalid definition, ...).
#[allow(dead_code)]
const EXIT_INPUT: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => ExitCode::from(u8::try_from(sim::run(args)).unwrap_or(1)),
        Command::Dnsmasq(args) => dnsmasq::run(args),
        Command::Net(cmd) => net::run(&cli.host, cmd),
    }
}
