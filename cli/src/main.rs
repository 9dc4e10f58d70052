//! `virtnet`: command-line front end.
//!
//! Thin by design: parse arguments, call `virtnet-core` (or the simulated host
//! in `virtnet-fake`), print, and map errors to exit codes. Each command group
//! lives in its own module; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod dnsmasq;
mod events;
mod net;
mod out;
mod rules;
mod sim;
mod vshtable;
mod xml;

#[derive(Parser)]
#[command(
    name = "virtnet",
    version,
    propagate_version = true,
    about = "libvirt-compatible virtual networks and firewall rules",
    long_about = "virtnet defines, starts and destroys libvirt-style virtual networks and \
                  emits exactly the firewall commands libvirt 11.3.0 runs for them, on the \
                  real host or on a simulated one."
)]
struct Cli {
    /// Run net-* commands through the virtnetd listening at URI (unix:PATH)
    /// instead of the driver in this process
    #[arg(long, global = true, value_name = "unix:PATH", value_parser = client::ConnectUri::parse,
          conflicts_with_all = ["host", "config_dir", "state_dir", "hooks_dir"])]
    connect: Option<client::ConnectUri>,
    #[command(flatten)]
    host: net::HostArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with network definition XML (format, validate)
    #[command(subcommand)]
    Xml(xml::XmlCommand),
    /// Print the firewall commands libvirt 11.3.0 runs when a network starts
    Rules(rules::RulesArgs),
    // No doc comment: the long help of `dnsmasq::Args` is shown.
    Dnsmasq(dnsmasq::Args),
    /// Run commands on, or dump, a simulated host kept in a state file
    Sim(sim::SimArgs),
    #[command(flatten)]
    Net(net::NetCommand),
    /// Wait for network lifecycle events and print them as virsh does
    /// (needs --connect to a virtnetd)
    #[command(name = "net-event")]
    NetEvent(events::EventArgs),
    #[command(flatten)]
    Daemon(client::DaemonCommand),
}

/// Exit status for a command that failed because of its input (bad file,
/// invalid definition, ...).
const EXIT_INPUT: u8 = 1;

/// virsh's refusal of an option a `net-*` command does not have ("error:
/// command 'net-list' doesn't support option --foo", exit status 1);
/// other command-line errors are clap's (exit status 2).
fn parse_cli() -> Result<Cli, ExitCode> {
    let err = match Cli::try_parse() {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let net_cmd = args.iter().find(|a| a.starts_with("net-"));
    if let (clap::error::ErrorKind::UnknownArgument, Some(cmd)) = (err.kind(), net_cmd) {
        if let Some(clap::error::ContextValue::String(arg)) =
            err.get(clap::error::ContextKind::InvalidArg)
        {
            if arg.starts_with("--") {
                let opt = arg.split('=').next().unwrap_or(arg);
                crate::out::err_line(&format!(
                    "error: command '{}' doesn't support option {}",
                    crate::out::escape_value(cmd),
                    crate::out::escape_value(opt)
                ));
                return Err(ExitCode::from(EXIT_INPUT));
            }
        }
    }
    err.exit()
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Xml(cmd) => match xml::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                crate::out::err_line(&format!("error: {e}"));
                ExitCode::from(e.exit_code())
            }
        },
        Command::Rules(args) => match rules::run(&args) {
            Ok(out) => {
                crate::out::print(&out);
                ExitCode::SUCCESS
            }
            Err(e) => {
                crate::out::err_line(&format!("virtnet rules: error: {e}"));
                ExitCode::from(EXIT_INPUT)
            }
        },
        Command::Dnsmasq(args) => dnsmasq::run(args),
        Command::Sim(args) => {
            let code = sim::run(args);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Command::Net(cmd) => match &cli.connect {
            Some(uri) => net::run_connected(uri, cmd),
            None => net::run(&cli.host, cmd),
        },
        Command::NetEvent(args) => events::run(cli.connect.as_ref(), args),
        Command::Daemon(cmd) => match client::run_daemon(cli.connect.as_ref(), cmd) {
            Ok(out) => {
                crate::out::print(&out);
                ExitCode::SUCCESS
            }
            Err(e) => {
                crate::out::err_line(&format!("error: {e}"));
                ExitCode::from(EXIT_INPUT)
            }
        },
    }
}
