//! `cargo xtask upgrade-check [--real]`: every frozen release (ours under
//! golden/releases, and libvirt 9.0.0 / 11.3.0 from their captures) taken
//! over by the current driver, for both backends; see
//! `virtnet_conformance::upgrade`.
//!
//! The same check (`upgrade::check`) runs on the fake host, or with
//! `--real` on the real kernel, re-executed in new namespaces like
//! `conformance --real` ([`crate::realns`]), every host a fresh network
//! namespace of its worker thread.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use virtnet_conformance::checks::Verdict;
use virtnet_conformance::upgrade::{self, CheckOutcome};
use virtnet_conformance::FakeFactory;

use crate::realns::{self, out};

#[derive(Args, Debug, Clone, Default)]
pub struct UpgradeArgs {
    /// Run on the real kernel inside new namespaces (needs root or user
    /// namespaces, and nft, iptables, ip, tc, dnsmasq).
    #[arg(long)]
    pub real: bool,
    /// Run only checks whose id (`release/case/old->new`, e.g.
    /// `libvirt-9.0.0/nat-default/iptables->nftables`; a batched side is
    /// written `nftables-batched`) contains this text; repeatable.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Only this backend for the current driver.
    #[arg(long, value_name = "iptables|nftables|both", default_value = "both")]
    pub backend: String,
    /// Only this firewall layout for the current driver (release states
    /// of both layouts are taken over either way: a state of the other
    /// layout is a layout switch).
    #[arg(long, value_name = "libvirt|batched|both", default_value = "both")]
    pub layout: String,
    /// Run about one in N of the selected checks (1 = all), picked by a
    /// hash of the check id so every kind of take-over stays represented.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub stride: usize,
    /// Worker threads (default: number of CPUs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Print the outcomes as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// With --real on a kernel without act_csum: a `tc` wrapper turns the
    /// failure of `tc ... action csum` into success (as the libvirt
    /// captures did), so nftables states run instead of being expected
    /// failures.
    #[arg(long)]
    pub csum_workaround: bool,
    /// List the selected checks and exit.
    #[arg(long)]
    pub list: bool,
}

impl UpgradeArgs {
    /// The command line (after `cargo xtask`) that reproduces these options.
    fn to_argv(&self) -> Vec<String> {
        let mut v = vec!["upgrade-check".to_string()];
        if self.real {
            v.push("--real".into());
        }
        for f in &self.filter {
            v.push(format!("--filter={f}"));
        }
        v.push(format!("--backend={}", self.backend));
        v.push(format!("--layout={}", self.layout));
        v.push(format!("--stride={}", self.stride));
        if let Some(j) = self.jobs {
            v.push(format!("--jobs={j}"));
        }
        if self.json {
            v.push("--json".into());
        }
        if self.csum_workaround {
            v.push("--csum-workaround".into());
        }
        if self.list {
            v.push("--list".into());
        }
        v
    }
}

/// Runs the check; exit status 0 all passed, 1 failures, 2 could not run.
pub fn run(root: &Path, args: &UpgradeArgs) -> u8 {
    if args.real && !realns::inside() {
        return realns::reexec("upgrade-check", &args.to_argv());
    }
    let backends = match crate::conformance::parse_backends(&args.backend) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("upgrade-check: {e}");
            return 2;
        }
    };
    let layouts = match crate::conformance::parse_layouts(&args.layout) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("upgrade-check: {e}");
            return 2;
        }
    };
    let states = match upgrade::all_states(root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("upgrade-check: {e}");
            return 2;
        }
    };
    let checks = upgrade::plan_in(&states, &backends, &layouts, &args.filter, args.stride);
    if args.list {
        for c in &checks {
            out(&c.id());
        }
        return 0;
    }
    if checks.is_empty() {
        eprintln!("upgrade-check: no check matches the filters");
        return 2;
    }
    if args.real {
        if let Some(code) = realns::reap_as_init("upgrade-check") {
            return code;
        }
    }
    let real_host = if args.real {
        match realns::real_host("upgrade-check", args.csum_workaround) {
            Ok(h) => Some(h),
            Err(code) => return code,
        }
    } else {
        None
    };
    let host = if args.real { "real" } else { "fake" };
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut releases: Vec<&str> = checks.iter().map(|c| c.state.release.as_str()).collect();
    releases.dedup();
    eprintln!(
        "upgrade-check: {} checks ({} release states of {}) on the {host} host, {jobs} jobs{}",
        checks.len(),
        {
            let mut s: Vec<String> = checks
                .iter()
                .map(|c| {
                    format!(
                        "{}/{}/{}/{}",
                        c.state.release, c.state.case, c.state.backend, c.state.layout
                    )
                })
                .collect();
            s.dedup();
            s.len()
        },
        releases.join(", "),
        if args.stride > 1 {
            format!(", about one check in {}", args.stride)
        } else {
            String::new()
        }
    );
    let t0 = Instant::now();
    let (passed, failed, xfailed) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let every = (checks.len() / 20).max(1);
    let progress = |o: &CheckOutcome, done: usize, total: usize| {
        match &o.verdict {
            Verdict::Pass => {
                passed.fetch_add(1, Ordering::SeqCst);
            }
            Verdict::Fail { message, diff } => {
                failed.fetch_add(1, Ordering::SeqCst);
                eprintln!("upgrade-check: FAIL {}: {message}\n{diff}", o.id);
            }
            Verdict::Xfail { .. } => {
                xfailed.fetch_add(1, Ordering::SeqCst);
            }
        }
        if done.checked_rem(every) == Some(0) || done == total {
            eprintln!(
                "upgrade-check: [{done:>3}/{total}] {} passed, {} failed, {} expected failures ({:.1}s)",
                passed.load(Ordering::SeqCst),
                failed.load(Ordering::SeqCst),
                xfailed.load(Ordering::SeqCst),
                t0.elapsed().as_secs_f64()
            );
        }
    };
    let outcomes: Vec<CheckOutcome> = match &real_host {
        Some(h) => upgrade::run_on(&*h.factory, &checks, jobs, &progress),
        None => upgrade::run_on(&FakeFactory::default(), &checks, jobs, &progress),
    };
    let count = |f: fn(&Verdict) -> bool| outcomes.iter().filter(|o| f(&o.verdict)).count();
    let (p, f, x) = (
        count(|v| matches!(v, Verdict::Pass)),
        count(|v| matches!(v, Verdict::Fail { .. })),
        count(|v| matches!(v, Verdict::Xfail { .. })),
    );
    // Per release, then the expected failures' reasons (once each).
    let mut per: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for (c, o) in checks.iter().zip(&outcomes) {
        let e = per.entry(c.state.release.as_str()).or_default();
        e.1 += 1;
        if o.verdict == Verdict::Pass {
            e.0 += 1;
        }
    }
    for (r, (ok, n)) in &per {
        eprintln!("upgrade-check {r}: {ok}/{n} passed");
    }
    let mut reasons: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match &o.verdict {
            Verdict::Xfail { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    reasons.sort();
    reasons.dedup();
    for r in reasons {
        eprintln!("upgrade-check: xfail: {r}");
    }
    if args.json {
        out(&serde_json::to_string_pretty(&serde_json::json!({
            "host": host,
            "passed": p,
            "failed": f,
            "xfailed": x,
            "checks": outcomes,
        }))
        .unwrap_or_default());
    }
    let line = format!(
        "upgrade-check ({host} host, {:.1}s): {p} checks passed, {f} failed (+{x} expected failures)",
        t0.elapsed().as_secs_f64()
    );
    if args.json {
        eprintln!("{line}");
    } else {
        out(&line);
    }
    if f > 0 || outcomes.len() != checks.len() {
        1
    } else {
        0
    }
}

impl UpgradeArgs {
    /// Every check on the fake host.
    pub fn fake() -> Self {
        UpgradeArgs {
            backend: "both".into(),
            layout: "both".into(),
            stride: 1,
            ..Default::default()
        }
    }
}
