//! `virtnet`: command-line front end.

mod sim;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "virtnet",
    version,
    about = "virtnet virtual-network driver tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Sim(sim::SimArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Sim(args) => sim::run(args),
    };
    std::process::exit(code);
}
