//! `cargo xtask bench [--seconds S] [--json]`: fault-injected network starts
//! per second on the fake host, one thread, release build (the task re-runs
//! itself with `cargo run --release` when it was built without
//! optimisations).
//!
//! One driver on one fake host (state in /dev/shm when available, exactly
//! as the conformance and property runs set it up) with golden case
//! `nat-default` defined. Each iteration injects a failure at command k of
//! the start (k cycling over every command of a start), runs the start —
//! which fails and rolls back, or, for the commands libvirt ignores,
//! succeeds and is destroyed — and counts one start. The fault-free
//! start + destroy rate is reported beside it, and the same fault-injected
//! loop one level down (the firewall transaction alone, no driver).
//!
//! It measures and reports; it asserts nothing (the 10,000/s target of the
//! issue is printed as met or not). Rates are per second of this thread's
//! CPU time (the machine may be shared) and per wall-clock second.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_core::runner::Runner;
use virtnet_fake::{FakeHost, FaultPlan};

/// The target: fault-injected starts per second on one core.
const TARGET_PER_SEC: f64 = 10_000.0;

/// One loop's count and the time it took.
#[derive(Debug, Clone, Copy, Serialize)]
struct Rate {
    count: u64,
    cpu_seconds: f64,
    wall_seconds: f64,
    per_cpu_second: f64,
    per_wall_second: f64,
}

impl Rate {
    fn new(count: u64, (cpu, wall): (f64, f64)) -> Rate {
        Rate {
            count,
            cpu_seconds: cpu,
            wall_seconds: wall,
            per_cpu_second: count as f64 / cpu.max(1e-9),
            per_wall_second: count as f64 / wall.max(1e-9),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct BackendFigures {
    backend: String,
    /// Commands one fault-free start gives the host.
    commands_per_start: u64,
    /// Driver starts with a failure injected at command k (k = 1..n in turn).
    faulted_starts: Rate,
    /// Fault-free start + destroy pairs.
    clean_start_destroy: Rate,
    /// Commands of the network's firewall transaction alone.
    firewall_commands: u64,
    /// The firewall transaction alone with a failure at command k.
    faulted_firewall_transactions: Rate,
    meets_target: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    case: &'static str,
    target_per_cpu_second: f64,
    /// Time budget of each loop (`None` with `--iterations`).
    seconds_per_loop: Option<f64>,
    /// Fixed iterations of each loop (`--iterations`).
    iterations_per_loop: Option<u64>,
    cpu_model: String,
    online_cpus: usize,
    /// /proc/loadavg at the start (the machine may be shared).
    load_average: String,
    state_dir: String,
    backends: Vec<BackendFigures>,
}

/// CPU time of the calling thread (Linux: /proc/thread-self/schedstat,
/// first field in nanoseconds); `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Elapsed (CPU, wall) seconds since (`wall`, `cpu`): thread CPU time when
/// available, else wall-clock time for both.
fn spent(wall: Instant, cpu: Option<Duration>) -> (f64, f64) {
    let w = wall.elapsed().as_secs_f64();
    match (cpu, thread_cpu()) {
        (Some(a), Some(b)) if b > a => ((b - a).as_secs_f64(), w),
        _ => (w, w),
    }
}

/// How long each loop runs: a time budget or a fixed number of iterations.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Seconds(f64),
    Iterations(u64),
}

impl Budget {
    /// Whether a loop that started at `t0` and did `done` iterations
    /// should stop (loops check between blocks of iterations).
    fn done(self, t0: Instant, done: u64) -> bool {
        match self {
            Budget::Seconds(s) => t0.elapsed() >= Duration::from_secs_f64(s),
            Budget::Iterations(n) => done >= n,
        }
    }
    fn block(self, default: u64) -> u64 {
        match self {
            Budget::Seconds(_) => default,
            Budget::Iterations(n) => default.min(n.max(1)),
        }
    }
}

struct DriverRates {
    commands_per_start: u64,
    faulted: Rate,
    clean: Rate,
}

fn measure(
    root: &Path,
    backend: Backend,
    budget: Budget,
    faulted_only: bool,
) -> Result<DriverRates, String> {
    let xml_path = root.join("golden/cases/nat-default.xml");
    let xml =
        std::fs::read_to_string(&xml_path).map_err(|e| format!("{}: {e}", xml_path.display()))?;
    let dir = virtnet_conformance::props::scratch_dir()?;
    let host = Arc::new(FakeHost::new());
    let mut cfg = DriverConfig::new(
        dir.path().join("config"),
        dir.path().join("state"),
        host.clone() as Arc<dyn Runner>,
    )
    .with_backend(backend);
    cfg.dnsmasq_binary = Some("/usr/sbin/dnsmasq".into());
    let d = Driver::open(cfg).map_err(|e| e.to_string())?;
    let name = d.define(&xml).map_err(|e| e.to_string())?.name;
    // Warm up (private chains, dnsmasq capabilities), then count commands.
    d.start(&name).map_err(|e| e.to_string())?;
    d.destroy(&name).map_err(|e| e.to_string())?;
    host.reset_counter();
    d.start(&name).map_err(|e| e.to_string())?;
    let n = host.command_count();
    d.destroy(&name).map_err(|e| e.to_string())?;
    host.take_records();
    let block = budget.block(64);

    let t0 = Instant::now();
    let c0 = thread_cpu();
    let mut starts = 0u64;
    let mut k = 0u64;
    while !budget.done(t0, starts) {
        for _ in 0..block {
            k = k % n + 1;
            host.reset_counter();
            host.set_fault_plan(FaultPlan::none().fail_nth(k, 1, "injected failure\n"));
            let r = d.start(&name);
            host.set_fault_plan(FaultPlan::none());
            if r.is_ok() {
                d.destroy(&name).map_err(|e| e.to_string())?;
            }
            host.take_records();
            starts += 1;
        }
    }
    let faulted = Rate::new(starts, spent(t0, c0));

    let t1 = Instant::now();
    let c1 = thread_cpu();
    let mut clean = 0u64;
    while !faulted_only && !budget.done(t1, clean) {
        for _ in 0..block {
            d.start(&name).map_err(|e| e.to_string())?;
            d.destroy(&name).map_err(|e| e.to_string())?;
            host.take_records();
            clean += 1;
        }
    }
    Ok(DriverRates {
        commands_per_start: n,
        faulted,
        clean: Rate::new(clean, spent(t1, c1)),
    })
}

/// The same fault-injected starts one level down: the network's firewall
/// transaction alone (`rules::add_network_firewall` on the fake host, the
/// firewall engine's own rollback on failure, the removal plan on
/// success), without the driver's journal, status file and dnsmasq I/O.
fn measure_firewall(root: &Path, backend: Backend, budget: Budget) -> Result<(u64, Rate), String> {
    use virtnet_core::rules::{self, ChainInitState};
    let xml_path = root.join("golden/cases/nat-default.xml");
    let xml =
        std::fs::read_to_string(&xml_path).map_err(|e| format!("{}: {e}", xml_path.display()))?;
    let def = rules::golden::load_case(&xml).map_err(|e| e.to_string())?;
    let host = FakeHost::new();
    host.exec(
        &["ip", "link", "add", "name", "virbr0", "type", "bridge"],
        None,
    )
    .map_err(|e| e.to_string())?;
    let mut chains = ChainInitState::new();
    chains
        .setup(backend, &host, false)
        .map_err(|e| e.to_string())?;
    host.reset_counter();
    let plan = rules::add_network_firewall(&mut def.clone(), backend, &host, &mut chains)
        .map_err(|e| e.to_string())?;
    let n = host.command_count();
    rules::remove_network_firewall(&def, plan.as_ref(), &host).map_err(|e| e.to_string())?;
    host.take_records();
    let t0 = Instant::now();
    let c0 = thread_cpu();
    let mut starts = 0u64;
    let mut k = 0u64;
    let block = budget.block(256);
    while !budget.done(t0, starts) {
        for _ in 0..block {
            k = k % n + 1;
            host.reset_counter();
            host.set_fault_plan(FaultPlan::none().fail_nth(k, 1, "injected failure\n"));
            let mut d = def.clone();
            let r = rules::add_network_firewall(&mut d, backend, &host, &mut chains);
            host.set_fault_plan(FaultPlan::none());
            if let Ok(plan) = r {
                rules::remove_network_firewall(&d, plan.as_ref(), &host)
                    .map_err(|e| e.to_string())?;
            }
            host.take_records();
            starts += 1;
        }
    }
    Ok((n, Rate::new(starts, spent(t0, c0))))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn print_text(r: &Report) {
    let per_loop = match (r.seconds_per_loop, r.iterations_per_loop) {
        (_, Some(n)) => format!("{n} iterations per loop"),
        (Some(s), None) => format!("{s:.1} s per loop"),
        (None, None) => String::new(),
    };
    println!(
        "bench: case {}, one thread, {per_loop}, {} ({} online CPUs, load average {}), state in {}",
        r.case, r.cpu_model, r.online_cpus, r.load_average, r.state_dir
    );
    for b in &r.backends {
        let f = &b.faulted_starts;
        println!(
            "bench {}: {:.0} fault-injected network starts per CPU-second ({:.0} per wall-clock second); {} commands per start, failure at each command in turn, rollback included",
            b.backend, f.per_cpu_second, f.per_wall_second, b.commands_per_start
        );
        println!(
            "bench {}: {:.0} clean start+destroy per CPU-second ({:.0} per wall-clock second)",
            b.backend, b.clean_start_destroy.per_cpu_second, b.clean_start_destroy.per_wall_second
        );
        println!(
            "bench {}: {:.0} fault-injected firewall transactions per CPU-second ({:.0} per wall-clock second); rules only, {} commands, engine rollback, no driver journal/status/dnsmasq",
            b.backend,
            b.faulted_firewall_transactions.per_cpu_second,
            b.faulted_firewall_transactions.per_wall_second,
            b.firewall_commands
        );
        println!(
            "bench {}: target {:.0} fault-injected starts per CPU-second: {}",
            b.backend,
            r.target_per_cpu_second,
            if b.meets_target { "met" } else { "NOT met" }
        );
    }
}

/// Runs the benchmark; returns whether it ran (the figures are printed, the
/// 10,000/s target is reported, not enforced).
pub fn run(seconds: f64, json: bool, iterations: Option<u64>, faulted_only: bool) -> bool {
    if cfg!(debug_assertions) {
        let mut c = crate::cargo();
        let secs = seconds.to_string();
        let mut args = vec![
            "run",
            "--quiet",
            "--release",
            "-p",
            "xtask",
            "--",
            "bench",
            "--seconds",
            &secs,
        ];
        if json {
            args.push("--json");
        }
        let iters = iterations.map(|n| n.to_string());
        if let Some(n) = &iters {
            args.push("--iterations");
            args.push(n);
        }
        if faulted_only {
            args.push("--faulted-only");
        }
        c.args(args);
        return crate::step("bench (release build)", c);
    }
    let root = crate::workspace_root();
    let state_dir = virtnet_conformance::props::scratch_dir()
        .map(|d| {
            d.path()
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let mut report = Report {
        case: "nat-default",
        target_per_cpu_second: TARGET_PER_SEC,
        seconds_per_loop: iterations.is_none().then_some(seconds / 2.0),
        iterations_per_loop: iterations,
        cpu_model: cpu_model(),
        online_cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        state_dir,
        backends: Vec::new(),
    };
    let mut ok = true;
    for backend in [Backend::Nftables, Backend::Iptables] {
        let budget = match iterations {
            Some(n) => Budget::Iterations(n),
            None => Budget::Seconds(seconds / 2.0),
        };
        let driver = measure(&root, backend, budget, faulted_only);
        let fw = if faulted_only {
            Ok((0, Rate::new(0, (0.0, 0.0))))
        } else {
            measure_firewall(&root, backend, budget)
        };
        match (driver, fw) {
            (Ok(d), Ok((fw_n, fw_rate))) => report.backends.push(BackendFigures {
                backend: backend.to_string(),
                commands_per_start: d.commands_per_start,
                meets_target: d.faulted.per_cpu_second >= TARGET_PER_SEC,
                faulted_starts: d.faulted,
                clean_start_destroy: d.clean,
                firewall_commands: fw_n,
                faulted_firewall_transactions: fw_rate,
            }),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("bench {backend}: {e}");
                ok = false;
            }
        }
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("bench: {e}");
                ok = false;
            }
        }
    } else {
        print_text(&report);
    }
    ok
}
