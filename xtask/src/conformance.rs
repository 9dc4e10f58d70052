//! `cargo xtask conformance`: the scenario matrix (every golden case × both
//! backends × start, destroy, restart, backend switch, upgrade from each
//! frozen release and libvirt capture, failure at every command, crash at
//! every command) on the fake host, or with `--real` on the real kernel
//! inside new namespaces.
//!
//! `--real` re-executes this program in new namespaces and makes the real
//! host there ([`crate::realns`], shared with `upgrade-check --real`);
//! inside, every scenario runs in a further fresh network namespace of its
//! worker thread.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use virtnet_conformance::host::{FakeFactory, HostFactory};
use virtnet_conformance::{checks::Verdict, report};
use virtnet_core::firewall::Backend;
use virtnet_core::rules::batched::Layout;

use crate::realns::{self, out};

#[derive(Args, Debug, Clone)]
pub struct ConformanceArgs {
    /// Run only scenarios whose id (`case/backend/op`, e.g.
    /// `nat-default/nftables/restart`; the batched layout's
    /// `case/backend/batched/op`) contains this text; repeatable.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Run only this backend.
    #[arg(long, value_name = "iptables|nftables|both", default_value = "both")]
    pub backend: String,
    /// Run only this firewall layout (`firewall_layout` of network.conf):
    /// every operation runs for each selected one.
    #[arg(long, value_name = "libvirt|batched|both", default_value = "both")]
    pub layout: String,
    /// Worker threads (default: number of CPUs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Write a report: `junit:PATH`, `markdown:PATH`, `html:PATH` or
    /// `json:PATH`; repeatable.
    #[arg(long, value_name = "KIND:PATH")]
    pub report: Vec<String>,
    /// Print the machine-readable summary (JSON) on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run on the real kernel inside new namespaces (needs root or user
    /// namespaces, and nft, iptables, ip, tc, dnsmasq).
    #[arg(long)]
    pub real: bool,
    /// List the selected scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// fail-each / crash-each: inject at every N-th command of the start
    /// (always the first and the last); 1 = every command.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub fault_stride: u64,
    /// crash-each of a destroy and of a switch reload at every (N-th)
    /// command too; by default every 3rd / 9th. And fail-each / crash-each
    /// of a batched-layout start at every (N-th) command; by default at
    /// its firewall commands (tc, the batches) and the first and last
    /// only: its other commands are those of libvirt's layout, checked at
    /// every command there. The defaults keep the fake matrix (both
    /// layouts) under its 60 s budget on 2 cores.
    #[arg(long)]
    pub exhaustive: bool,
    /// Leave out the scenarios whose id contains TEXT (repeatable; applied
    /// after --filter).
    #[arg(long, value_name = "TEXT")]
    pub exclude: Vec<String>,
    /// With --real on a kernel without act_csum: put a `tc` wrapper first on
    /// PATH that turns the failure of `tc ... action csum` (also a line of
    /// `tc -batch -`) into success (as the libvirt captures did), so
    /// nftables scenarios run instead of being expected failures. The
    /// checksum filter is then absent.
    #[arg(long)]
    pub csum_workaround: bool,
}

impl ConformanceArgs {
    /// The fake-host matrix with default options.
    pub fn fake() -> Self {
        ConformanceArgs {
            filter: Vec::new(),
            backend: "both".into(),
            layout: "both".into(),
            jobs: None,
            report: Vec::new(),
            json: false,
            real: false,
            list: false,
            fault_stride: 1,
            exhaustive: false,
            exclude: Vec::new(),
            csum_workaround: false,
        }
    }

    /// The command line (after `cargo xtask`) that reproduces these options.
    fn to_argv(&self) -> Vec<String> {
        let mut v = vec!["conformance".to_string()];
        for f in &self.filter {
            v.push(format!("--filter={f}"));
        }
        v.push(format!("--backend={}", self.backend));
        v.push(format!("--layout={}", self.layout));
        if let Some(j) = self.jobs {
            v.push(format!("--jobs={j}"));
        }
        for r in &self.report {
            v.push(format!("--report={r}"));
        }
        if self.json {
            v.push("--json".into());
        }
        if self.real {
            v.push("--real".into());
        }
        if self.list {
            v.push("--list".into());
        }
        v.push(format!("--fault-stride={}", self.fault_stride));
        if self.exhaustive {
            v.push("--exhaustive".into());
        }
        for x in &self.exclude {
            v.push(format!("--exclude={x}"));
        }
        if self.csum_workaround {
            v.push("--csum-workaround".into());
        }
        v
    }
}

enum ReportKind {
    Junit,
    Markdown,
    Html,
    Json,
}

fn parse_reports(specs: &[String]) -> Result<Vec<(ReportKind, PathBuf)>, String> {
    specs
        .iter()
        .map(|s| {
            let (k, p) = s
                .split_once(':')
                .ok_or_else(|| format!("--report {s}: expected KIND:PATH"))?;
            if p.is_empty() {
                return Err(format!("--report {s}: empty path"));
            }
            let kind = match k {
                "junit" => ReportKind::Junit,
                "markdown" | "md" => ReportKind::Markdown,
                "html" => ReportKind::Html,
                "json" => ReportKind::Json,
                _ => {
                    return Err(format!(
                        "--report {s}: unknown kind '{k}' (junit, markdown, html, json)"
                    ))
                }
            };
            Ok((kind, PathBuf::from(p)))
        })
        .collect()
}

pub(crate) fn parse_backends(s: &str) -> Result<Vec<Backend>, String> {
    match s {
        "both" | "all" => Ok(vec![Backend::Iptables, Backend::Nftables]),
        "iptables" => Ok(vec![Backend::Iptables]),
        "nftables" => Ok(vec![Backend::Nftables]),
        _ => Err(format!(
            "--backend {s}: expected iptables, nftables or both"
        )),
    }
}

/// `--layout`: `libvirt`, `batched` or `both`.
pub(crate) fn parse_layouts(s: &str) -> Result<Vec<Layout>, String> {
    match s {
        "both" | "all" => Ok(Layout::ALL.to_vec()),
        _ => s
            .parse::<Layout>()
            .map(|l| vec![l])
            .map_err(|e| format!("--layout {s}: {e} or both")),
    }
}

/// Why `--real` cannot run here, if it cannot (for `cargo xtask ci`).
pub fn real_unavailable() -> Option<String> {
    realns::unavailable()
}

/// Runs the matrix (fake, or real when already inside our namespaces).
pub fn run(args: &ConformanceArgs, golden: &std::path::Path) -> ExitCode {
    ExitCode::from(run_code(args, golden))
}

/// [`run`] as an exit status: 0 all passed, 1 failures, 2 could not run.
pub fn run_code(args: &ConformanceArgs, golden: &std::path::Path) -> u8 {
    if args.real && !realns::inside() {
        return realns::reexec("conformance", &args.to_argv());
    }
    let backends = match parse_backends(&args.backend) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("conformance: {e}");
            return 2;
        }
    };
    let layouts = match parse_layouts(&args.layout) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("conformance: {e}");
            return 2;
        }
    };
    let reports = match parse_reports(&args.report) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conformance: {e}");
            return 2;
        }
    };
    if args.real {
        if let Some(code) = realns::reap_as_init("conformance") {
            return code;
        }
    }
    let real_host = if args.real {
        match realns::real_host("conformance", args.csum_workaround) {
            Ok(h) => Some(h),
            Err(code) => return code,
        }
    } else {
        None
    };
    let fake = FakeFactory::default();
    let factory: &dyn HostFactory = match &real_host {
        Some(h) => &*h.factory,
        None => &fake,
    };
    let host = factory.kind().to_string();
    let cases = match virtnet_conformance::load_cases(golden) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conformance: {e}");
            return 2;
        }
    };
    let mut opts = virtnet_conformance::MatrixOptions {
        filters: args.filter.clone(),
        backends,
        layouts,
        ..Default::default()
    };
    if let Some(j) = args.jobs {
        opts.jobs = j.max(1);
    }
    opts.scenario.fault_stride = args.fault_stride.max(1);
    opts.scenario.exhaustive = args.exhaustive;
    let mut scenarios = virtnet_conformance::scenarios(golden, &cases, &opts);
    scenarios.retain(|s| {
        let id = s.id();
        !args.exclude.iter().any(|x| id.contains(x.as_str()))
    });
    if args.list {
        for s in &scenarios {
            out(&s.id());
        }
        return 0;
    }
    if scenarios.is_empty() {
        eprintln!("conformance: no scenario matches the filters");
        return 2;
    }
    eprintln!(
        "conformance: {} scenarios ({} cases) on the {host} host, {} jobs{}",
        scenarios.len(),
        cases.len(),
        opts.jobs,
        if opts.scenario.fault_stride > 1 {
            format!(", faults at every {}th command", opts.scenario.fault_stride)
        } else {
            String::new()
        }
    );
    let t0 = Instant::now();
    let passed = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let xfailed = AtomicUsize::new(0);
    let every = (scenarios.len() / 20).max(1);
    let progress = |o: &virtnet_conformance::Outcome, done: usize, total: usize| {
        match &o.verdict {
            Verdict::Pass => {
                passed.fetch_add(1, Ordering::SeqCst);
            }
            Verdict::Fail { message, .. } => {
                failed.fetch_add(1, Ordering::SeqCst);
                eprintln!("conformance: FAIL {}: {message}", o.scenario.id());
            }
            Verdict::Xfail { .. } => {
                xfailed.fetch_add(1, Ordering::SeqCst);
            }
        }
        if done.checked_rem(every) == Some(0) || done == total {
            eprintln!(
                "conformance: [{done:>4}/{total}] {} passed, {} failed, {} expected failures ({:.1}s)",
                passed.load(Ordering::SeqCst),
                failed.load(Ordering::SeqCst),
                xfailed.load(Ordering::SeqCst),
                t0.elapsed().as_secs_f64()
            );
        }
    };
    let outcomes = virtnet_conformance::run_matrix(
        factory,
        golden,
        &cases,
        &scenarios,
        opts.jobs,
        &opts.scenario,
        &progress,
    );
    let totals = report::totals(&outcomes);
    let mut ok = true;
    for (kind, path) in &reports {
        let text = match kind {
            ReportKind::Junit => report::junit(&outcomes, &host),
            ReportKind::Markdown => report::markdown(&outcomes, &host),
            ReportKind::Html => report::html(&outcomes, &host),
            ReportKind::Json => report::json(&outcomes, &host),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::write(path, text) {
            Ok(()) => eprintln!("conformance: wrote {}", path.display()),
            Err(e) => {
                eprintln!("conformance: cannot write {}: {e}", path.display());
                ok = false;
            }
        }
    }
    // Flows the traffic operations traced (their steps).
    let traffic: Vec<_> = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o.scenario.op,
                virtnet_conformance::Op::Traffic(_) | virtnet_conformance::Op::TrafficUpgrade(_)
            )
        })
        .collect();
    if !traffic.is_empty() {
        eprintln!(
            "conformance: traffic: {} flows traced in {} scenarios",
            traffic.iter().map(|o| o.steps).sum::<u64>(),
            traffic.len()
        );
    }
    let tail = format!(
        "conformance ({host} host, {:.1}s)\n{}",
        t0.elapsed().as_secs_f64(),
        report::final_line(&totals)
    );
    if args.json {
        out(&report::json(&outcomes, &host));
        eprintln!("{tail}");
    } else {
        out(&report::summary_table(&outcomes));
        out(&tail);
    }
    if totals.failed > 0 || outcomes.len() != scenarios.len() || !ok {
        1
    } else {
        0
    }
}
