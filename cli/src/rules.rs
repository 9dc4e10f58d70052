//! `virtnet rules`: print the firewall commands libvirt 11.3.0 runs at
//! network start (on a host whose private chains already exist), or with
//! `--base` the private-chain setup as run on an empty host.
//!
//! The commands are produced by the real generators and engine applied to a
//! recording runner that answers like libvirt's test executor (`# handle
//! 5309` to `nft -ae ...`, empty output otherwise), so the output is exactly
//! libvirt's `networkxml2firewalldata` stream.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use virtnet_core::firewall::{Backend, RecordingRunner, RenderOptions};
use virtnet_core::netxml;
use virtnet_core::rules::{self, ChainInitState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Iptables,
    Nftables,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Iptables => Backend::Iptables,
            BackendArg::Nftables => Backend::Nftables,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// libvirt's test format (one argument group per line, ` \` continuations).
    Golden,
    /// A JSON array of argv arrays, exactly as executed.
    Json,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Firewall backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Nftables)]
    pub backend: BackendArg,
    /// Print the private-chain setup (as run on an empty host) instead of a
    /// network's rules; no FILE needed.
    #[arg(long)]
    pub base: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Golden)]
    pub format: FormatArg,
    /// Network definition (libvirt network XML).
    #[arg(value_name = "FILE.xml", required_unless_present = "base")]
    pub file: Option<PathBuf>,
}

/// What went wrong, with where.
#[derive(Debug, thiserror::Error)]
pub enum RulesCliError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", crate::out::join_location(.path, &.source.to_string()))]
    Parse {
        path: String,
        source: netxml::NetXmlError,
    },
    #[error("{path}: {source}")]
    Rules {
        path: String,
        source: rules::RulesError,
    },
    #[error("private-chain setup failed: {0}")]
    Base(rules::RulesError),
    #[error("cannot encode JSON: {0}")]
    Json(serde_json::Error),
}

fn render(runner: &RecordingRunner, format: FormatArg) -> Result<String, RulesCliError> {
    match format {
        FormatArg::Golden => Ok(runner.rendered(RenderOptions::GOLDEN)),
        FormatArg::Json => {
            let mut s =
                serde_json::to_string_pretty(&runner.argvs()).map_err(RulesCliError::Json)?;
            s.push('\n');
            Ok(s)
        }
    }
}

/// Runs the command and returns what to print on stdout.
pub fn run(args: &RulesArgs) -> Result<String, RulesCliError> {
    let backend = Backend::from(args.backend);
    let runner = RecordingRunner::new();
    if args.base {
        let mut chains = ChainInitState::new();
        chains
            .setup(backend, &runner, false)
            .map_err(RulesCliError::Base)?;
        if let (Some(e), _) | (_, Some(e)) = chains.errors() {
            return Err(RulesCliError::Base(e.clone()));
        }
        return render(&runner, args.format);
    }
    let Some(path) = args.file.as_ref() else {
        // clap requires FILE unless --base.
        return Ok(String::new());
    };
    let shown = crate::out::path_text(path);
    let xml = std::fs::read_to_string(path).map_err(|source| RulesCliError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut def = netxml::parse(&xml).map_err(|source| RulesCliError::Parse {
        path: shown.clone(),
        source,
    })?;
    // What `net-define` does first: libvirt's define-time validation, which
    // also gives a bridge-less definition the bridge name libvirt would pick
    // (virbr0 on a host without other networks).
    if let Err(mut source) = netxml::validate_for_define(&mut def, &netxml::EmptyHost) {
        netxml::locate(&xml, &mut source);
        return Err(RulesCliError::Parse {
            path: shown,
            source,
        });
    }
    let mut chains = ChainInitState::already_done();
    rules::add_network_firewall(&mut def, backend, &runner, &mut chains).map_err(|source| {
        RulesCliError::Rules {
            path: shown.clone(),
            source,
        }
    })?;
    render(&runner, args.format)
}
