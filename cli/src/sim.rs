//! `virtnet sim`: use the simulated host from the command line.
//!
//! The host lives in a JSON state file (created on first use), so a person
//! can run the same commands a driver would and look at the result:
//!
//! ```text
//! virtnet sim --state host.json exec -- iptables -w -N LIBVIRT_INP
//! virtnet sim --state host.json dump iptables
//! virtnet sim --state host.json trace from virbr0 192.168.122.5 to 8.8.8.8 udp dport 53
//! ```

use std::io::{Read, Write};
use std::path::PathBuf;

use virtnet_fake::{FakeHost, Section};
use virtnet_runner::{Cmd, Runner};

/// Arguments of `virtnet sim`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Run commands on a simulated host kept in a state file",
    long_about = "Run commands on a simulated host kept in a state file.\n\n\
The simulated host understands nft, iptables, ip6tables, iptables-save, ip, tc, \
sysctl, dnsmasq and kill; it prints what the real tools print and exits with their \
status. Any other program fails with status 127 (\"command not simulated\")."
)]
pub struct SimArgs {
    /// JSON state file of the simulated host (created if it does not exist)
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    #[command(subcommand)]
    pub command: SimCommand,
}

/// What `virtnet sim` does.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Run one command on the simulated host and exit with its status
    Exec {
        /// Feed this file to the command's standard input ("-" = our stdin),
        /// e.g. for `nft -f -`
        #[arg(long, value_name = "FILE")]
        stdin: Option<PathBuf>,
        /// The command and its arguments (after `--`)
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
    /// Print the simulated host's state
    Dump {
        /// Which part to print
        #[arg(value_enum, default_value_t = DumpWhat::All)]
        what: DumpWhat,
    },
    /// Trace packets through the simulated host's routing and firewall
    #[command(long_about = TRACE_HELP)]
    Trace {
        /// Print the traces as JSON (an array, one object per flow)
        #[arg(long)]
        json: bool,
        /// The flows: from IFACE SRC to DST PROTO [sport N] [dport N] [reply]
        #[arg(required = true, num_args = 1.., value_name = "FLOW", allow_hyphen_values = true)]
        flows: Vec<String>,
    },
}

const TRACE_HELP: &str = "Trace packets through the simulated host's routing and firewall.

FLOW syntax:
  from IFACE SRC to DST PROTO [sport N] [dport N] [reply]

  IFACE   the interface the packet arrives on (a bridge such as virbr0 for a
          guest, the uplink such as eth0 for the outside)
  SRC DST IPv4 or IPv6 addresses (both of one family)
  PROTO   icmp, icmpv6, udp or tcp (ports only with udp and tcp; icmp is an
          echo request, or with reply an echo reply / an ICMP error)
  reply   the packet answers an earlier flow of the same command: its
          addresses and ports are that flow's after NAT, reversed
          (conntrack: established, or related for an ICMP error about a
          udp/tcp flow), and it gets the reverse NAT

Several flows are traced in order and share one conntrack table; separate
them with ',' (a comma may stick to a word) or start the next with 'from'.
The words of a flow may be given as one argument or many.

Each flow prints its path like `nft monitor trace`: conntrack state, every
rule that matched (hook, family, table, chain, rule text, handle, verdict),
chain policies, NAT and the routing decision, then the outcome: delivered
(out of which interface, addresses as the receiver sees them), local
(accepted by the host), dropped, rejected or unreachable. Exit status 0 when
every flow could be traced, whatever its outcome; 1 for a bad FLOW or a rule
the tracer cannot evaluate.

Example:
  virtnet sim --state host.json trace \\
    from virbr0 192.168.122.5 to 198.51.100.7 udp sport 40000 dport 53, \\
    from eth0 198.51.100.7 to 203.0.113.2 udp sport 53 dport 40000 reply";

/// Parts of the state `virtnet sim dump` can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpWhat {
    /// `nft list ruleset`
    Nft,
    /// `iptables-save` (no timestamps, counters [0:0])
    Iptables,
    /// `ip6tables-save` (no timestamps, counters [0:0])
    Ip6tables,
    /// links, addresses and routes (`ip -br` style)
    Links,
    /// tc qdiscs and filters
    Tc,
    /// sysctl values that differ from the defaults
    Sysctl,
    /// simulated processes (dnsmasq)
    Processes,
    /// everything, each part under a `## name` header
    All,
}

/// Errors of `virtnet sim` itself (not of the simulated command).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    State(#[from] virtnet_fake::StateFileError),
    #[error("cannot read standard input file {path}: {source}")]
    Stdin {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Run(#[from] virtnet_runner::RunError),
}

/// Run `virtnet sim`; returns the process exit status.
pub fn run(args: SimArgs) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            crate::out::err_line(&format!("virtnet sim: {e}"));
            2
        }
    }
}

/// Writes a command's output as the real tool would interleave it on a
/// terminal (or with `2>&1`). nft writes its listing unbuffered and prints
/// "# Warning: table F N is managed by iptables-nft, do not touch!" on stderr
/// right before that table: such a warning goes out just before the
/// `table F N` line it names. Everything else: stdout, then stderr.
/// Output errors (closed pipe) cannot be reported anywhere useful.
fn write_like_the_tool(prog: &str, stdout: &str, stderr: &str) {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let warning = |l: &str| {
        l.strip_prefix("# Warning: table ")
            .and_then(|r| r.strip_suffix(" is managed by iptables-nft, do not touch!"))
            .map(str::to_string)
    };
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut rest = String::new();
    if prog == "nft" {
        for l in stderr.split_inclusive('\n') {
            match warning(l.trim_end_matches('\n')) {
                Some(t) => pending.push((t, l.to_string())),
                None => rest.push_str(l),
            }
        }
    } else {
        rest.push_str(stderr);
    }
    for l in stdout.split_inclusive('\n') {
        if let Some(header) = l.strip_prefix("table ") {
            if let Some(i) = pending
                .iter()
                .position(|(t, _)| header.starts_with(&format!("{t} ")) || header.trim_end() == t)
            {
                let (_, w) = pending.remove(i);
                let _ = out.flush();
                let _ = err.write_all(w.as_bytes());
                let _ = err.flush();
            }
        }
        let _ = out.write_all(l.as_bytes());
    }
    let _ = out.flush();
    // Warnings naming no listed table: after the listing.
    for (_, w) in pending {
        let _ = err.write_all(w.as_bytes());
    }
    let _ = err.write_all(rest.as_bytes());
}

fn run_inner(args: SimArgs) -> Result<i32, SimError> {
    let host = FakeHost::load_or_new(&args.state)?;
    match args.command {
        SimCommand::Exec { stdin, argv } => {
            let mut cmd = Cmd {
                argv: argv.into(),
                stdin: None,
                env: Vec::new(),
            };
            if let Some(p) = stdin {
                let text = if p.as_os_str() == "-" {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map_err(|source| SimError::Stdin {
                            path: "-".into(),
                            source,
                        })?;
                    s
                } else {
                    std::fs::read_to_string(&p).map_err(|source| SimError::Stdin {
                        path: p.display().to_string(),
                        source,
                    })?
                };
                cmd.stdin = Some(text);
            }
            let out = host.run(&cmd)?;
            host.save(&args.state)?;
            let prog = cmd
                .argv
                .first()
                .map(|p| p.rsplit('/').next().unwrap_or(p))
                .unwrap_or("");
            write_like_the_tool(prog, &out.stdout, &out.stderr);
            Ok(out.status)
        }
        SimCommand::Dump { what } => {
            if !args.state.exists() {
                host.save(&args.state)?;
            }
            let st = host.state();
            let text = match what {
                DumpWhat::All => st.dump(),
                DumpWhat::Nft => st.dump_section(Section::Nft),
                DumpWhat::Iptables => st.dump_section(Section::Iptables),
                DumpWhat::Ip6tables => st.dump_section(Section::Ip6tables),
                DumpWhat::Links => st.dump_section(Section::Links),
                DumpWhat::Tc => st.dump_section(Section::Tc),
                DumpWhat::Sysctl => st.dump_section(Section::Sysctl),
                DumpWhat::Processes => st.dump_section(Section::Processes),
            };
            crate::out::print(&text);
            Ok(0)
        }
        SimCommand::Trace { json, flows } => Ok(run_trace(&host.state(), &flows, json)),
    }
}

/// `virtnet sim trace`: 0 when every flow was traced, 1 otherwise.
fn run_trace(st: &virtnet_fake::HostState, args: &[String], json: bool) -> i32 {
    use virtnet_fake::trace::{trace, Conntrack, Flow};
    let flows = match Flow::parse_list(args) {
        Ok(f) => f,
        Err((n, e)) => {
            crate::out::err_line(&format!("virtnet sim trace: bad FLOW {n}: {e}"));
            return 1;
        }
    };
    let mut ct = Conntrack::default();
    let mut traces = Vec::new();
    for f in &flows {
        match trace(st, &mut ct, f) {
            Ok(t) => {
                if !json {
                    crate::out::print(&t.to_string());
                }
                traces.push(t);
            }
            Err(e) => {
                crate::out::err_line(&format!("virtnet sim {e} (flow: {f})"));
                return 1;
            }
        }
    }
    if json {
        match serde_json::to_string_pretty(&traces) {
            Ok(mut s) => {
                s.push('\n');
                crate::out::print(&s);
            }
            Err(e) => {
                crate::out::err_line(&format!("virtnet sim trace: {e}"));
                return 1;
            }
        }
    }
    0
}
