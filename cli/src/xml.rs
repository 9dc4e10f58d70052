//! `virtnet xml ...`: format and validate libvirt network definition XML
//! with the same rules as libvirt 11.3.0.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use virtnet_core::netxml::{self, FormatFlags, NetXmlError};

#[derive(Debug, Subcommand)]
pub enum XmlCommand {
    /// Print a network definition exactly as libvirt formats it
    ///
    /// The document is parsed with libvirt's parser rules and printed the
    /// way `virsh net-dumpxml` prints it: attributes in libvirt's order,
    /// single quotes, defaults written out (e.g. `<forward/>` becomes
    /// `<forward mode='nat'/>`, bridge `stp='on' delay='0'`), a random UUID
    /// when none is given. No define-time validation is done and no bridge
    /// name or MAC address is allocated.
    #[command(
        after_help = "Exit status: 0 on success, 1 if FILE cannot be read or is not a valid network definition."
    )]
    Format {
        /// Print the inactive (persistent config) form instead of the live
        /// form: no `connections` counts and no device pool of a `<pf>`.
        #[arg(long)]
        inactive: bool,
        /// Network XML file (`-` for standard input)
        file: PathBuf,
    },
    /// Check a network definition as libvirt does when it is defined
    ///
    /// Runs libvirt's parser checks and its define-time validation (forward
    /// mode rules, DHCP ranges, addresses and prefixes, duplicates, names,
    /// VLAN and bandwidth rules). Checks that need the host (bridge names
    /// used by other networks, SR-IOV virtual functions) are not done.
    /// Prints nothing when the definition is valid; otherwise prints
    /// `error: FILE:LINE:COL: message` to standard error.
    #[command(after_help = "Exit status: 0 if valid, 1 if FILE cannot be read or is not valid.")]
    Validate {
        /// Network XML file (`-` for standard input)
        file: PathBuf,
    },
}

/// A failed `virtnet xml` command.
#[derive(Debug, thiserror::Error)]
pub enum XmlCliError {
    #[error("{}: {source}", crate::out::path_text(.path))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: input is not valid UTF-8", crate::out::path_text(.path))]
    Encoding {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("{}", render(.path, .error))]
    Invalid { path: PathBuf, error: NetXmlError },
}

impl XmlCliError {
    /// Process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        1
    }
}

fn render(path: &Path, e: &NetXmlError) -> String {
    crate::out::file_error(
        &crate::out::path_text(path),
        e.line().zip(e.column()),
        &e.detail(),
    )
}

fn read_input(path: &Path) -> Result<String, XmlCliError> {
    let mut bytes = Vec::new();
    let res = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    res.map_err(|source| XmlCliError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let text = String::from_utf8_lossy(valid);
        let line = text.matches('\n').count() + 1;
        let column = text
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        XmlCliError::Encoding {
            path: path.to_path_buf(),
            line,
            column,
        }
    })
}

/// Run one `virtnet xml` subcommand.
pub fn run(cmd: XmlCommand) -> Result<(), XmlCliError> {
    match cmd {
        XmlCommand::Format { inactive, file } => {
            let xml = read_input(&file)?;
            let def = netxml::parse(&xml).map_err(|error| XmlCliError::Invalid {
                path: file.clone(),
                error,
            })?;
            let flags = if inactive {
                FormatFlags::INACTIVE
            } else {
                FormatFlags::LIVE
            };
            crate::out::print(&netxml::format(&def, flags));
            Ok(())
        }
        XmlCommand::Validate { file } => {
            let xml = read_input(&file)?;
            netxml::parse_and_validate(&xml)
                .map_err(|error| XmlCliError::Invalid { path: file, error })?;
            Ok(())
        }
    }
}
