//! Foreign state seeds: rules other software puts on a host (Docker,
//! firewalld), installed through the simulator's own command path so they
//! are exactly what those tools' commands would leave. Tests seed them,
//! run virtnet, and check they are byte-identical afterwards (architecture
//! invariant 9).

use virtnet_runner::{Cmd, Output, RunError, Runner};

/// A seed command that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed command `{cmd}` failed with status {}: {}", output.status, output.stderr.trim_end())]
    Failed { cmd: String, output: Output },
    #[error("seed command `{cmd}` could not run: {source}")]
    Run { cmd: String, source: RunError },
}

fn run_all(host: &dyn Runner, cmds: &[Cmd]) -> Result<(), SeedError> {
    for c in cmds {
        let line = c.argv.join(" ");
        let out = host.run(c).map_err(|source| SeedError::Run {
            cmd: line.clone(),
            source,
        })?;
        if !out.success() {
            return Err(SeedError::Failed {
                cmd: line,
                output: out,
            });
        }
    }
    Ok(())
}

fn ipt(args: &str) -> Cmd {
    let mut v = vec!["iptables".to_string(), "-w".to_string()];
    v.extend(args.split_whitespace().map(String::from));
    Cmd {
        argv: v.into(),
        stdin: None,
        env: Vec::new(),
    }
}

/// The iptables commands Docker (bridge network `docker0`, 172.17.0.0/16,
/// iptables backend) runs at start-up.
pub fn docker_iptables_commands() -> Vec<Cmd> {
    [
        "-t nat -N DOCKER",
        "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
        "-t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "-t nat -A DOCKER -i docker0 -j RETURN",
        "-t filter -N DOCKER",
        "-t filter -N DOCKER-ISOLATION-STAGE-1",
        "-t filter -N DOCKER-ISOLATION-STAGE-2",
        "-t filter -N DOCKER-USER",
        "-t filter -A FORWARD -j DOCKER-USER",
        "-t filter -A FORWARD -j DOCKER-ISOLATION-STAGE-1",
        "-t filter -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-t filter -A FORWARD -o docker0 -j DOCKER",
        "-t filter -A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
        "-t filter -A FORWARD -i docker0 -o docker0 -j ACCEPT",
        "-t filter -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
        "-t filter -A DOCKER-ISOLATION-STAGE-1 -j RETURN",
        "-t filter -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
        "-t filter -A DOCKER-ISOLATION-STAGE-2 -j RETURN",
        "-t filter -A DOCKER-USER -j RETURN",
    ]
    .iter()
    .map(|a| ipt(a))
    .collect()
}

/// Seed Docker's iptables ruleset (filter and nat tables).
pub fn seed_docker_iptables(host: &dyn Runner) -> Result<(), SeedError> {
    run_all(host, &docker_iptables_commands())
}

/// The nft script of Docker's nftables firewall backend (table
/// `ip docker-bridges`), simplified to plain rules.
pub const DOCKER_NFT_SCRIPT: &str = "table ip docker-bridges {
	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		oifname \"docker0\" ct state established,related counter accept
		iifname \"docker0\" counter accept
	}
	chain nat-POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 172.17.0.0/16 oifname != \"docker0\" counter masquerade
	}
}
";

/// Seed Docker's nftables ruleset (`nft -f -` with [`DOCKER_NFT_SCRIPT`]).
pub fn seed_docker_nft(host: &dyn Runner) -> Result<(), SeedError> {
    run_all(
        host,
        &[Cmd::new(["nft", "-f", "-"]).with_stdin(DOCKER_NFT_SCRIPT)],
    )
}

/// firewalld's own table (`inet firewalld`) in the shape firewalld 1.x
/// creates it, reduced to the base chains and the public zone. Chains are
/// defined before the rules that jump to them. The public zone's target is
/// `default`, which (unlike `%%REJECT%%`) accepts ICMP of both families
/// (firewalld.zone(5), firewalld issue 590): ICMPv6, neighbour discovery
/// included, passes, so IPv6 guests resolve the host's address and their
/// other packets are rejected as IPv4 ones are.
pub const FIREWALLD_NFT_SCRIPT: &str = "table inet firewalld {
	chain filter_IN_public {
		tcp dport 22 accept
		meta l4proto { icmp, ipv6-icmp } accept
	}
	chain filter_INPUT_ZONES {
		goto filter_IN_public
	}
	chain filter_INPUT {
		type filter hook input priority filter + 10; policy accept;
		ct state established,related accept
		ct state invalid drop
		iifname \"lo\" accept
		jump filter_INPUT_ZONES
		reject with icmpx admin-prohibited
	}
	chain filter_FORWARD {
		type filter hook forward priority filter + 10; policy accept;
		ct state established,related accept
		ct state invalid drop
		iifname \"lo\" accept
		reject with icmpx admin-prohibited
	}
	chain filter_OUTPUT {
		type filter hook output priority filter + 10; policy accept;
		oifname \"lo\" accept
	}
}
";

/// Seed firewalld's `inet firewalld` table.
pub fn seed_firewalld_nft(host: &dyn Runner) -> Result<(), SeedError> {
    run_all(
        host,
        &[Cmd::new(["nft", "-f", "-"]).with_stdin(FIREWALLD_NFT_SCRIPT)],
    )
}
