//! `cargo xtask bench [--seconds S]`: fault-injected network starts per
//! second on the fake host, one thread, release build (the task re-runs
//! itself with `cargo run --release` when it was built without
//! optimisations).
//!
//! One driver on one fake host (state in /dev/shm when available) with
//! golden case `nat-default` defined. Each iteration injects a failure at
//! command k of the start (k cycling over every command of a start), runs
//! the start — which fails and rolls back, or, for the commands libvirt
//! ignores, succeeds and is destroyed — and counts one start. The
//! fault-free start + destroy rate is reported beside it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_core::runner::Runner;
use virtnet_fake::{FakeHost, FaultPlan};

struct Rates {
    commands_per_start: u64,
    /// Per second of this thread's CPU time (the machine may be shared).
    faulted_per_sec: f64,
    faulted_per_wall_sec: f64,
    clean_per_sec: f64,
}

/// CPU time of the calling thread (Linux: /proc/thread-self/schedstat,
/// first field in nanoseconds); `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Elapsed time since (`wall`, `cpu`): thread CPU time when available.
fn spent(wall: Instant, cpu: Option<Duration>) -> (f64, f64) {
    let w = wall.elapsed().as_secs_f64();
    match (cpu, thread_cpu()) {
        (Some(a), Some(b)) if b > a => ((b - a).as_secs_f64(), w),
        _ => (w, w),
    }
}

fn measure(root: &Path, backend: Backend, seconds: f64) -> Result<Rates, String> {
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
    let budget = Duration::from_secs_f64(seconds / 2.0);

    let t0 = Instant::now();
    let c0 = thread_cpu();
    let mut starts = 0u64;
    let mut k = 0u64;
    while t0.elapsed() < budget {
        for _ in 0..64 {
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
    let (cpu, wall) = spent(t0, c0);
    let (faulted, faulted_wall) = (starts as f64 / cpu, starts as f64 / wall);

    let t1 = Instant::now();
    let c1 = thread_cpu();
    let mut clean = 0u64;
    while t1.elapsed() < budget {
        for _ in 0..64 {
            d.start(&name).map_err(|e| e.to_string())?;
            d.destroy(&name).map_err(|e| e.to_string())?;
            host.take_records();
            clean += 1;
        }
    }
    Ok(Rates {
        commands_per_start: n,
        faulted_per_sec: faulted,
        faulted_per_wall_sec: faulted_wall,
        clean_per_sec: clean as f64 / spent(t1, c1).0,
    })
}

/// The same fault-injected starts one level down: the network's firewall
/// transaction alone (`rules::add_network_firewall` on the fake host, the
/// firewall engine's own rollback on failure, the removal plan on
/// success), without the driver's journal, status file and dnsmasq I/O.
fn measure_firewall(root: &Path, backend: Backend, seconds: f64) -> Result<(u64, f64), String> {
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
    while t0.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..256 {
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
    Ok((n, starts as f64 / spent(t0, c0).0))
}

/// Runs the benchmark; returns whether it ran (the figure is printed, the
/// 10,000/s target is reported, not enforced).
pub fn run(seconds: f64) -> bool {
    if cfg!(debug_assertions) {
        let mut c = crate::cargo();
        c.args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "xtask",
            "--",
            "bench",
            "--seconds",
            &seconds.to_string(),
        ]);
        return crate::step("bench (release build)", c);
    }
    let root = crate::workspace_root();
    let mut ok = true;
    for backend in [Backend::Nftables, Backend::Iptables] {
        match measure(&root, backend, seconds) {
            Ok(r) => {
                println!(
                    "bench {backend}: {:.0} fault-injected network starts per CPU-second ({:.0}/s wall clock) (nat-default, {} commands per start, failure at each command in turn, rollback included); {:.0} clean start+destroy per CPU-second; one thread",
                    r.faulted_per_sec, r.faulted_per_wall_sec, r.commands_per_start, r.clean_per_sec
                );
                if r.faulted_per_sec < 10_000.0 {
                    println!("bench {backend}: below the 10,000 starts/s target");
                }
            }
            Err(e) => {
                eprintln!("bench {backend}: {e}");
                ok = false;
            }
        }
        match measure_firewall(&root, backend, seconds / 2.0) {
            Ok((n, rate)) => println!(
                "bench {backend}: {rate:.0} fault-injected firewall transactions per CPU-second (nat-default rules only, {n} commands, engine rollback; no driver journal/status/dnsmasq)"
            ),
            Err(e) => {
                eprintln!("bench {backend} (firewall only): {e}");
                ok = false;
            }
        }
    }
    ok
}
