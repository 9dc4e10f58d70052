//! Drift: does the host still have what each active network's status says
//! it should have? (`virtnet check [NAME] [--repair]`, virtnetd
//! `--check-interval`; beyond libvirt, which never looks.)
//!
//! What is compared, per active network with firewall rules, using only
//! read-only host queries:
//!
//! * iptables plans: every `--delete` command of the saved removal plan
//!   names one rule the start added; it is turned into `--check` (`-C`),
//!   so iptables itself says whether that exact rule is there. A rule that
//!   was changed is reported missing (its expected form is gone).
//! * nftables plans: every `delete rule FAMILY TABLE CHAIN handle N` of the
//!   saved plan must find handle N in that chain (`nft -a list table`). The
//!   rule found there is compared with the rule the definition gives (the
//!   plan regenerated, purely, from the status's definition; the k-th rule
//!   created is the k-th deletion from the end of the removal plan): after
//!   [`normalize_nft_rule`] they must be equal, else the rule is reported
//!   altered (someone replaced it, `nft replace rule ... handle N`).
//! * the private chains of the backends in use (libvirt's `LIBVIRT_*`
//!   chains and their jumps, or the `libvirt_network` tables and base
//!   chains): the private-chain setup plan is run with a runner that runs
//!   its queries for real and only records the commands it would add;
//!   each one is a missing piece.
//! * a status without a saved plan (an add that failed at a reload, a
//!   libvirt ≤ 10.2 status) cannot be compared: reported as drift
//!   ([`DriftKind::NoPlan`]) so that a repair adds the rules again.
//!
//! The `tc` filter of the nftables backend is not compared.
//!
//! Repair ([`super::Driver::repair`]) = for each drifting network, the
//! saved removal plan restricted to the rules found intact (a handle
//! whose rule is missing or altered is never deleted: after a flush the
//! kernel may have given it to another rule), then — after the private
//! chains were set up again with the configured backend (libvirt's
//! forced setup, as on a firewalld reload) — a fresh add, journaled and
//! saved like a reload. Then the check runs again.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::firewall::{full_argv, Backend, Firewall, Layer, TransactionFlags};
use crate::netxml::NetworkDef;
use crate::rules;
use crate::store::NetworkStatus;
use virtnet_runner::{Cmd, Output, RunError, Runner};

/// What is wrong with one expected piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// Not on the host.
    Missing,
    /// Its place (nft handle) holds another rule.
    Altered,
    /// The status has no saved removal plan: nothing to compare with.
    NoPlan,
}

/// One expected piece that is not as it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub kind: DriftKind,
    /// The command that added it (nft, iptables) or would add it (private
    /// chains), as one line; for [`DriftKind::NoPlan`], an explanation.
    pub expected: String,
    /// For an altered nft rule: the rule found at its handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

/// The check of one active network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCheck {
    pub name: String,
    /// Backend of the saved removal plan.
    pub backend: Option<Backend>,
    /// Rules compared.
    pub checked: usize,
    pub drift: Vec<Drift>,
}

/// What [`super::Driver::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Active networks with firewall rules, by name.
    pub networks: Vec<NetworkCheck>,
    /// Missing pieces of the private chains (shared by all networks).
    pub private_chains: Vec<Drift>,
}

impl CheckReport {
    /// True when something drifted.
    pub fn drifted(&self) -> bool {
        !self.private_chains.is_empty() || self.networks.iter().any(|n| !n.drift.is_empty())
    }
}

/// The inspection of one network: its check and the commands of its
/// saved removal plan that remove rules found intact.
pub(crate) struct Inspection {
    pub check: NetworkCheck,
    /// `None`: no saved plan.
    pub intact_removal: Option<Firewall>,
}

fn one_line(argv: &[String]) -> String {
    crate::firewall::render_argv(argv, crate::firewall::RenderOptions::ONE_LINE)
}

/// A rule as nft lists it, reduced to what identifies it: the counter's
/// values dropped, quotes removed, a host prefix (`/32`, `/128`) dropped,
/// the items of a `ct state` set sorted. Applied to both the generated
/// rule and the listed one.
pub fn normalize_nft_rule(rule: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut words = rule.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if w == "packets" || w == "bytes" {
            // `counter packets N bytes M`
            if out.last().map(String::as_str) == Some("counter")
                || (w == "bytes" && out.last().map(String::as_str) == Some("counter"))
            {
                words.next();
                continue;
            }
        }
        let mut t = normalize_address(w.trim_matches('"'));
        if out.len() >= 2 && out[out.len() - 2] == "ct" && out[out.len() - 1] == "state" {
            let mut items: Vec<&str> = t.split(',').collect();
            items.sort_unstable();
            t = items.join(",");
        }
        out.push(t);
    }
    out
}

/// An address word as nft lists it: a host prefix (`/32`, `/128`)
/// dropped, a range of one address (`A-A`) as that address, an IPv4
/// address's `:PORTS` kept.
fn normalize_address(w: &str) -> String {
    let (addr, ports) = match w.split_once(':') {
        Some((a, p)) if a.contains('.') => (a, Some(p)),
        _ => (w, None),
    };
    let mut a = addr.to_string();
    for suffix in ["/32", "/128"] {
        if a.len() > suffix.len() && a.ends_with(suffix) && a.contains(['.', ':']) {
            a.truncate(a.len() - suffix.len());
        }
    }
    if let Some((x, y)) = a.split_once('-') {
        if x == y && x.contains(['.', ':']) {
            a = x.to_string();
        }
    }
    match ports {
        Some(p) => format!("{a}:{p}"),
        None => a,
    }
}

/// One listed nft rule: chain, handle, rule text.
type ListedRule = (String, String, String);

/// The rules of one nft table (as `nft -a list table` prints it).
fn parse_nft_listing(listing: &str) -> Vec<ListedRule> {
    let mut out = Vec::new();
    let mut chain = String::new();
    for line in listing.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_string();
            continue;
        }
        if l.starts_with("table ") || l.starts_with("type ") || l == "}" {
            continue;
        }
        if let Some(pos) = l.rfind(" # handle ") {
            let handle = l[pos + " # handle ".len()..].trim().to_string();
            out.push((chain.clone(), handle, l[..pos].to_string()));
        }
    }
    out
}

/// Runs queries for real and records, without running, everything else
/// (what a plan would change).
struct DryRunner<'a> {
    inner: &'a dyn Runner,
    would_run: Mutex<Vec<Vec<String>>>,
}

fn is_query(argv: &[String]) -> bool {
    let prog = argv.first().map(String::as_str).unwrap_or("");
    match prog {
        "nft" => argv.iter().any(|a| a == "list"),
        "iptables" | "ip6tables" => argv
            .iter()
            .any(|a| matches!(a.as_str(), "--list-rules" | "-S" | "--list" | "-L")),
        _ => false,
    }
}

impl Runner for DryRunner<'_> {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        if is_query(&cmd.argv) {
            return self.inner.run(cmd);
        }
        self.would_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd.argv.to_vec());
        Ok(Output::ok(""))
    }
}

/// The pieces of `backend`'s private chains the host lacks: the commands
/// the setup would run. A crash of the runner is an error.
pub(crate) fn private_chain_drift(
    backend: Backend,
    runner: &dyn Runner,
) -> Result<Vec<Drift>, RunError> {
    let dry = DryRunner {
        inner: runner,
        would_run: Mutex::new(Vec::new()),
    };
    for layer in [Layer::Ipv4, Layer::Ipv6] {
        let Ok(mut pc) = rules::private_chains(backend, layer) else {
            continue;
        };
        if let Err(e) = pc.firewall.apply(&dry) {
            if e.is_crash() {
                return Err(RunError::Crashed {
                    program: "private chains".into(),
                    index: 0,
                });
            }
        }
    }
    let cmds = dry
        .would_run
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(cmds
        .iter()
        .map(|argv| Drift {
            kind: DriftKind::Missing,
            expected: one_line(argv),
            found: None,
        })
        .collect())
}

/// Inspects one active network (see the module docs).
pub(crate) fn inspect(st: &NetworkStatus, runner: &dyn Runner) -> Result<Inspection, RunError> {
    let name = st.def.name.clone();
    let Some(plan) = st.fw_removal.as_ref() else {
        return Ok(Inspection {
            check: NetworkCheck {
                name,
                backend: None,
                checked: 0,
                drift: vec![Drift {
                    kind: DriftKind::NoPlan,
                    expected: "the status file has no saved removal plan (fwRemoval): the rules cannot be compared".into(),
                    found: None,
                }],
            },
            intact_removal: None,
        });
    };
    let backend = plan.backend();
    let mut check = NetworkCheck {
        name,
        backend: Some(backend),
        checked: 0,
        drift: Vec::new(),
    };
    let mut intact = Firewall::new(backend);
    intact.start_transaction(TransactionFlags::IGNORE_ERRORS);
    match backend {
        Backend::Iptables | Backend::None => {
            for cmd in plan.action_cmds() {
                if !cmd.args().iter().any(|a| a == "--delete" || a == "-D") {
                    continue;
                }
                check.checked += 1;
                let argv: Vec<String> = full_argv(backend, cmd, false)
                    .into_iter()
                    .map(|a| {
                        if a == "--delete" || a == "-D" {
                            "--check".to_string()
                        } else {
                            a
                        }
                    })
                    .collect();
                let out = runner.run(&Cmd::new(argv))?;
                if out.success() {
                    intact.add_cmd(cmd.layer(), cmd.args().iter().cloned());
                } else {
                    let mut add = full_argv(backend, cmd, false);
                    for a in add.iter_mut() {
                        if a == "--delete" || a == "-D" {
                            *a = "--insert".to_string();
                        }
                    }
                    check.drift.push(Drift {
                        kind: DriftKind::Missing,
                        expected: one_line(&add),
                        found: None,
                    });
                }
            }
        }
        Backend::Nftables => inspect_nft(st, plan, runner, &mut check, &mut intact)?,
    }
    Ok(Inspection {
        check,
        intact_removal: Some(intact),
    })
}

/// A `delete rule FAMILY TABLE CHAIN handle N` of a removal plan.
struct NftDelete<'a> {
    layer: Layer,
    args: &'a [String],
    family: &'a str,
    table: &'a str,
    chain: &'a str,
    handle: &'a str,
}

fn nft_delete_rule(layer: Layer, args: &[String]) -> Option<NftDelete<'_>> {
    match args {
        [d, r, family, table, chain, h, handle]
            if d == "delete" && r == "rule" && h == "handle" =>
        {
            Some(NftDelete {
                layer,
                args,
                family,
                table,
                chain,
                handle,
            })
        }
        _ => None,
    }
}

fn inspect_nft(
    st: &NetworkStatus,
    plan: &Firewall,
    runner: &dyn Runner,
    check: &mut NetworkCheck,
    intact: &mut Firewall,
) -> Result<(), RunError> {
    let deletes: Vec<NftDelete<'_>> = plan
        .action_cmds()
        .filter_map(|c| nft_delete_rule(c.layer(), c.args()))
        .collect();
    // What the plan removes besides rules by handle (the tc filter): it
    // names what it removes by its content, never by a reusable handle,
    // so a repair runs it as saved (the tc filter is not compared).
    for c in plan.action_cmds() {
        if nft_delete_rule(c.layer(), c.args()).is_none() {
            intact.add_cmd(c.layer(), c.args().iter().cloned());
        }
    }
    // The rules the definition gives, in creation order.
    let mut def: NetworkDef = st.def.clone();
    let expected: Vec<Vec<String>> = rules::network_rules(&mut def, Backend::Nftables)
        .map(|fw| {
            fw.action_cmds()
                .filter(|c| {
                    crate::firewall::inverse::nft_creation(c.args())
                        .is_some_and(|v| c.args().get(v + 1).is_some_and(|o| o == "rule"))
                })
                .map(|c| c.args().to_vec())
                .collect()
        })
        .unwrap_or_default();
    let paired = expected.len() == deletes.len();
    // One listing per table.
    let mut listings: Vec<((String, String), Vec<ListedRule>)> = Vec::new();
    for (i, del) in deletes.iter().enumerate() {
        check.checked += 1;
        let key = (del.family.to_string(), del.table.to_string());
        if !listings.iter().any(|(k, _)| *k == key) {
            let out = runner.run(&Cmd::new([
                "nft", "-a", "list", "table", del.family, del.table,
            ]))?;
            let rules = if out.success() {
                parse_nft_listing(&out.stdout)
            } else {
                Vec::new()
            };
            listings.push((key.clone(), rules));
        }
        let rules = listings.iter().find(|(k, _)| *k == key).map(|(_, r)| r);
        let found = rules.and_then(|r| {
            r.iter()
                .find(|(c, h, _)| c == del.chain && h == del.handle)
                .map(|(_, _, text)| text.clone())
        });
        // The add that created this rule (the k-th from the end).
        let add = paired
            .then(|| &expected[deletes.len() - 1 - i])
            .filter(|a| {
                a.get(2).map(String::as_str) == Some(del.family)
                    && a.get(4).map(String::as_str) == Some(del.chain)
            });
        let add_line = match add {
            Some(a) => {
                let mut argv = vec!["nft".to_string()];
                argv.extend(a.iter().cloned());
                one_line(&argv)
            }
            None => format!(
                "a rule of chain {} {} {} with handle {}",
                del.family, del.table, del.chain, del.handle
            ),
        };
        match found {
            None => check.drift.push(Drift {
                kind: DriftKind::Missing,
                expected: add_line,
                found: None,
            }),
            Some(text) => {
                let same = match add {
                    Some(a) => normalize_nft_rule(&a[5..].join(" ")) == normalize_nft_rule(&text),
                    None => true,
                };
                if same {
                    intact.add_cmd(del.layer, del.args.iter().cloned());
                } else {
                    check.drift.push(Drift {
                        kind: DriftKind::Altered,
                        expected: add_line,
                        found: Some(text),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_matches_what_nft_lists() {
        // Generated vs listed (real nft 1.0.x, the live captures).
        let pairs = [
            ("iif virbr0 counter reject", "iif \"virbr0\" counter packets 0 bytes 0 reject"),
            (
                "oif virbr0 ip daddr 192.168.122.0/24 ct state related,established counter accept",
                "oif \"virbr0\" ip daddr 192.168.122.0/24 ct state established,related counter packets 3 bytes 180 accept",
            ),
            (
                "ip saddr 192.168.122.0/24 ip daddr 255.255.255.255/32 counter return",
                "ip saddr 192.168.122.0/24 ip daddr 255.255.255.255 counter packets 0 bytes 0 return",
            ),
        ];
        for (gen, listed) in pairs {
            assert_eq!(normalize_nft_rule(gen), normalize_nft_rule(listed), "{gen}");
        }
        assert_ne!(
            normalize_nft_rule("iif virbr0 counter reject"),
            normalize_nft_rule("iif \"virbr0\" counter packets 0 bytes 0 accept")
        );
        assert_ne!(
            normalize_nft_rule("ip saddr 192.168.122.0/24 counter accept"),
            normalize_nft_rule("ip saddr 192.168.123.0/24 counter accept")
        );
        // nft lists a one-address SNAT range as a /32 (ports kept).
        assert_eq!(
            normalize_nft_rule("counter snat to 198.51.100.1-198.51.100.1:20000-30000"),
            normalize_nft_rule("counter packets 0 bytes 0 snat to 198.51.100.1/32:20000-30000")
        );
        assert_ne!(
            normalize_nft_rule("counter snat to 198.51.100.1-198.51.100.9:20000-30000"),
            normalize_nft_rule("counter packets 0 bytes 0 snat to 198.51.100.1/32:20000-30000")
        );
    }

    #[test]
    fn listing_is_parsed_by_chain_and_handle() {
        let listing = "table ip libvirt_network { # handle 1\n\tchain guest_output { # handle 2\n\t\tip saddr 192.168.122.0/24 iif \"virbr0\" counter packets 0 bytes 0 accept # handle 12\n\t}\n\tchain guest_nat { # handle 8\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tcounter packets 0 bytes 0 return # handle 17\n\t}\n}\n";
        let r = parse_nft_listing(listing);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "guest_output");
        assert_eq!(r[0].1, "12");
        assert_eq!(
            r[1],
            (
                "guest_nat".into(),
                "17".into(),
                "counter packets 0 bytes 0 return".into()
            )
        );
    }
}
