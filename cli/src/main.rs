//! `virtnet`: command-line front end. Parses arguments, dispatches to the
//! subcommand modules and turns their result into the exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod xml;

/// virtnet: a libvirt-compatible virtual network and firewall driver.
#[derive(Debug, Parser)]
#[command(name = "virtnet", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with network definition XML (format, validate)
    #[command(subcommand)]
    Xml(xml::XmlCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Xml(cmd) => xml::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
