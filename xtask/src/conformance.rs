//! `cargo xtask conformance`: the scenario matrix (every golden case × both
//! backends × start, destroy, restart, backend switch, upgrade from each
//! frozen release and libvirt capture, failure at every command, crash at
//! every command) on the fake host, or with `--real` on the real kernel
//! inside new namespaces.
//!
//! `--real` re-executes this program under `unshare` in new network, mount
//! and PID namespaces (plus a user namespace when not root), so the host's
//! own namespaces are never touched; inside, every scenario runs in a
//! further fresh network namespace of its worker thread.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use virtnet_conformance::host::{missing_tools, FakeFactory, HostFactory, RealFactory};
use virtnet_conformance::{report, scenario::Verdict};
use virtnet_core::firewall::Backend;

/// Set in the re-executed process: "1" when inside our namespaces.
const IN_NS: &str = "VIRTNET_CONFORMANCE_IN_NS";
/// The network namespace of the process that re-executed us.
const OUTER_NETNS: &str = "VIRTNET_CONFORMANCE_OUTER_NETNS";
/// Set when a user namespace with only root mapped was used.
const USERNS: &str = "VIRTNET_CONFORMANCE_USERNS";

#[derive(Args, Debug, Clone)]
pub struct ConformanceArgs {
    /// Run only scenarios whose id (`case/backend/op`, e.g.
    /// `nat-default/nftables/restart`) contains this text; repeatable.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Run only this backend.
    #[arg(long, value_name = "iptables|nftables|both", default_value = "both")]
    pub backend: String,
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
    /// With --real on a kernel without act_csum: put a `tc` wrapper first on
    /// PATH that turns the failure of `tc ... action csum` into success (as
    /// the libvirt captures did), so nftables scenarios run instead of being
    /// expected failures. The checksum filter is then absent.
    #[arg(long)]
    pub csum_workaround: bool,
}

impl ConformanceArgs {
    /// The fake-host matrix with default options.
    pub fn fake() -> Self {
        ConformanceArgs {
            filter: Vec::new(),
            backend: "both".into(),
            jobs: None,
            report: Vec::new(),
            json: false,
            real: false,
            list: false,
            fault_stride: 1,
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

fn parse_backends(s: &str) -> Result<Vec<Backend>, String> {
    match s {
        "both" | "all" => Ok(vec![Backend::Iptables, Backend::Nftables]),
        "iptables" => Ok(vec![Backend::Iptables]),
        "nftables" => Ok(vec![Backend::Nftables]),
        _ => Err(format!(
            "--backend {s}: expected iptables, nftables or both"
        )),
    }
}

fn netns_of_self() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Exact installation advice for missing tools.
fn install_advice(missing: &[(&str, &str)]) -> String {
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.sort();
    pkgs.dedup();
    format!(
        "missing tools: {}\n  install them with:  apt-get install -y {}\n  (Fedora: dnf install -y nftables iptables-nft iproute dnsmasq procps-ng)",
        missing.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "),
        pkgs.join(" ")
    )
}

/// `--real` outside the namespaces: check, then re-exec under unshare.
fn reexec_in_namespaces(args: &ConformanceArgs) -> u8 {
    let missing = missing_tools();
    let no_unshare = virtnet_core::runner::find_in_path("unshare").is_none();
    if !missing.is_empty() || no_unshare {
        let mut m = missing.clone();
        if no_unshare {
            m.push(("unshare", "util-linux"));
        }
        eprintln!("conformance --real: cannot run: {}", install_advice(&m));
        return 2;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("conformance --real: cannot find this program to re-execute it: {e}");
            return 2;
        }
    };
    let root = nix::unistd::Uid::effective().is_root();
    let mut cmd = Command::new("unshare");
    if !root {
        // Without root, a user namespace gives the capabilities; only root
        // is mapped, so dnsmasq is kept from dropping privileges (wrapper).
        cmd.args(["--user", "--map-root-user"]);
        cmd.env(USERNS, "1");
    }
    // As root no user namespace is needed (and one with only root mapped
    // would stop dnsmasq from switching to its unprivileged user).
    cmd.args(["--net", "--mount", "--pid", "--fork", "--mount-proc", "--"]);
    // Probe first, so a failure to create namespaces is reported as such
    // (and not mistaken for a test failure).
    let mut probe = Command::new("unshare");
    if !root {
        probe.args(["--user", "--map-root-user"]);
    }
    probe.args([
        "--net",
        "--mount",
        "--pid",
        "--fork",
        "--mount-proc",
        "--",
        "true",
    ]);
    match probe.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "conformance --real: cannot create namespaces ({}): {}\n  real mode needs root, or unprivileged user namespaces (kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0); nothing was run",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return 2;
        }
        Err(e) => {
            eprintln!("conformance --real: cannot run unshare: {e}");
            return 2;
        }
    }
    cmd.arg(&exe);
    cmd.args(args.to_argv());
    cmd.env(IN_NS, "1");
    cmd.env(OUTER_NETNS, netns_of_self());
    eprintln!(
        "conformance --real: re-executing inside new {}network, mount and PID namespaces (unshare)",
        if root { "" } else { "user, " }
    );
    match cmd.status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            eprintln!("conformance --real: finished with {s}");
            1
        }
        Err(e) => {
            eprintln!(
                "conformance --real: cannot run unshare: {e}\n  real mode needs root or unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
            );
            2
        }
    }
}

/// A line on stdout; a closed stdout (`| head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}");
}

/// Why `--real` cannot run here, if it cannot (for `cargo xtask ci`).
pub fn real_unavailable() -> Option<String> {
    let mut missing = missing_tools();
    if virtnet_core::runner::find_in_path("unshare").is_none() {
        missing.push(("unshare", "util-linux"));
    }
    if !missing.is_empty() {
        return Some(install_advice(&missing));
    }
    if !nix::unistd::Uid::effective().is_root() {
        // Unprivileged user namespaces may work; try the cheapest thing.
        let ok = Command::new("unshare")
            .args(["--user", "--map-root-user", "--net", "true"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Some("not root and unprivileged user namespaces are not available".into());
        }
    }
    None
}

/// Runs the matrix (fake, or real when already inside our namespaces).
pub fn run(args: &ConformanceArgs, golden: &std::path::Path) -> ExitCode {
    ExitCode::from(run_code(args, golden))
}

/// [`run`] as an exit status: 0 all passed, 1 failures, 2 could not run.
pub fn run_code(args: &ConformanceArgs, golden: &std::path::Path) -> u8 {
    if args.real && std::env::var_os(IN_NS).is_none() {
        return reexec_in_namespaces(args);
    }
    let backends = match parse_backends(&args.backend) {
        Ok(b) => b,
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
    let mut keep_alive: Option<tempfile::TempDir> = None;
    let mut csum_tmp: Option<tempfile::TempDir> = None;
    let factory: Box<dyn HostFactory> = if args.real {
        // Belt and braces: refuse to run in the namespace we were started in.
        let outer = std::env::var(OUTER_NETNS).unwrap_or_default();
        if outer.is_empty() || outer == netns_of_self() {
            eprintln!("conformance --real: not inside a new network namespace; refusing to run");
            return 2;
        }
        let wrapper_tmp = if std::env::var_os(USERNS).is_some() {
            match tempfile::tempdir() {
                Ok(d) => Some(d),
                Err(e) => {
                    eprintln!("conformance --real: temporary directory: {e}");
                    return 2;
                }
            }
        } else {
            None
        };
        let wrapper_dir = wrapper_tmp.as_ref().map(|d| d.path().to_path_buf());
        // Removed when the run ends.
        keep_alive = wrapper_tmp;
        let userns = wrapper_dir.is_some();
        match RealFactory::new(wrapper_dir) {
            Ok(f) if args.csum_workaround && !f.has_act_csum() => {
                let dir = match tempfile::tempdir() {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("conformance --real: temporary directory: {e}");
                        return 2;
                    }
                };
                if let Err(e) = virtnet_conformance::host::write_tc_csum_wrapper(dir.path()) {
                    eprintln!("conformance --real: {e}");
                    return 2;
                }
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![dir.path().to_path_buf()];
                dirs.extend(std::env::split_paths(&path));
                match std::env::join_paths(dirs) {
                    // No other thread runs yet.
                    Ok(p) => std::env::set_var("PATH", p),
                    Err(e) => {
                        eprintln!("conformance --real: PATH: {e}");
                        return 2;
                    }
                }
                eprintln!(
                    "conformance --real: kernel lacks the tc act_csum action; --csum-workaround: a tc wrapper makes `tc ... action csum` report success (the checksum filter is absent), as the libvirt captures did"
                );
                csum_tmp = Some(dir);
                Box::new(f.assume_act_csum())
            }
            Ok(f) => {
                eprintln!(
                    "conformance --real: kernel {} the tc act_csum action{}",
                    if f.has_act_csum() { "has" } else { "lacks" },
                    if f.has_act_csum() {
                        ""
                    } else {
                        ": nftables starts that add the DHCP checksum filter (tc ... action csum) fail here as libvirt's do; reported as expected failures"
                    }
                );
                eprintln!(
                    "conformance --real: dnsmasq runs for real in each scenario's namespace{}",
                    if userns {
                        " (user namespace: started with --user=root --group= (no group change): it cannot drop privileges there)"
                    } else {
                        ""
                    }
                );
                Box::new(f)
            }
            Err(e) => {
                eprintln!("conformance --real: cannot set up the real host: {e}");
                return 2;
            }
        }
    } else {
        Box::new(FakeFactory::default())
    };
    let host = factory.kind().to_string();
    let _wrapper = keep_alive;
    let _csum_wrapper = csum_tmp;
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
        ..Default::default()
    };
    if let Some(j) = args.jobs {
        opts.jobs = j.max(1);
    }
    opts.scenario.fault_stride = args.fault_stride.max(1);
    let scenarios = virtnet_conformance::scenarios(golden, &cases, &opts);
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
        &*factory,
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
