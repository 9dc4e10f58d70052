//! `cargo xtask`: the project's only build script.
//!
//! Subcommands are thin: each one runs cargo or the project's own libraries
//! and reports what it did (`cargo xtask --help`):
//!
//! * `ci` — `cargo fmt --all -- --check` (unless `--no-fmt`), `cargo clippy
//!   --workspace --all-targets -- -D warnings`, `cargo test --workspace`, the
//!   golden check, the conformance matrix on the fake host and, where
//!   namespaces and the real tools are available, `--real` (with a fault
//!   stride) and `--real --backend nftables --csum-workaround`, then the
//!   upgrade check on the fake host and, where possible, `--real` and
//!   `--real --csum-workaround --stride 2`; reports go to
//!   `target/conformance/`;
//! * `conformance` ([`conformance`]), `upgrade-check` ([`upgrade`]), both
//!   with `--real` through [`realns`];
//! * `golden --bless | --check` ([`golden`]), `release cut VERSION`
//!   ([`release`]);
//! * `props [--deep | --mutant drop-last-undo|record-after-effect|ignore-lock]`
//!   — the property tests (deep: release build, `VIRTNET_DEEP=1`); a mutant
//!   runs `conformance/examples/mutant_<name>.rs`, which must fail;
//! * `bench` ([`mod@bench`]) and `bench-parse` ([`bench_parse`]) — measurements
//!   that assert nothing.

/// The allocator of the fake runs made in this process (conformance, bench):
/// the simulated host allocates many small strings per command, which
/// glibc's malloc serves slowly once its small-block caches fill up.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

mod bench;
mod bench_parse;
mod bench_real;
mod conformance;
mod golden;
mod realns;
mod release;
mod upgrade;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "virtnet's build and test tasks",
    version
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run everything CI runs: formatting check, clippy (warnings are
    /// errors), the whole test suite
    /// (unit, golden, property and, when possible, real-host tests).
    Ci {
        /// Skip the `cargo fmt --check` step.
        #[arg(long)]
        no_fmt: bool,
    },
    /// The scenario matrix (golden cases x backends x operations) on the
    /// fake host, or with --real on the real kernel in new namespaces.
    Conformance(conformance::ConformanceArgs),
    /// Project-owned golden cases (golden/cases -> golden/releases/unreleased).
    #[command(group(clap::ArgGroup::new("mode").required(true).args(["bless", "check"])))]
    Golden {
        /// Rewrite golden/releases/unreleased from what HEAD emits.
        #[arg(long)]
        bless: bool,
        /// Compare; fail with a diff on any difference, missing or extra file.
        #[arg(long)]
        check: bool,
    },
    /// Property tests (conformance/tests/props_*.rs); --deep runs many more
    /// cases (nightly) in a release build.
    Props {
        #[arg(long)]
        deep: bool,
        /// Instead, prove the properties can fail: run a property with a
        /// deliberately broken driver (`drop-last-undo`: the undo of a
        /// failed start skips its last step, against the rollback
        /// property; `record-after-effect`: the journal records a creation
        /// after its command instead of its intent before, against the
        /// state machine with crashes after a command's effect) and print
        /// the seed and the minimal failing case; exits non-zero when the
        /// property fails, as it must. `VIRTNET_MUTANT_SEED=<64 hex>`
        /// reproduces a run. `ignore-lock`: a driver that does not hold the
        /// driver lock changes the state directory without it, against the
        /// state machine with a second concurrent driver.
        #[arg(long, value_name = "MUTATION", value_parser = ["drop-last-undo", "record-after-effect", "ignore-lock"])]
        mutant: Option<String>,
    },
    /// Golden releases.
    Release {
        #[command(subcommand)]
        cmd: ReleaseCmd,
    },
    /// Every frozen release (ours, libvirt 9.0.0 and 11.3.0) taken over by
    /// the current driver, both backends, on the fake host, or with --real
    /// on the real kernel in new namespaces.
    UpgradeCheck(upgrade::UpgradeArgs),
    /// Network XML parse + validate time on 80,000-element definitions of
    /// several kinds (release build; prints figures, asserts nothing).
    BenchParse {
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        /// Measure with this build even when it is unoptimised.
        #[arg(long)]
        this_build: bool,
    },
    /// Fault-injected network starts per second on the fake host (release build).
    Bench {
        /// Seconds to measure.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Run exactly this many iterations of each loop instead of a time
        /// budget (a fixed amount of work, for `perf stat` comparisons).
        #[arg(long)]
        iterations: Option<u64>,
        /// Run only the fault-injected driver starts (skip the clean
        /// start+destroy and firewall-only loops; for profiling).
        #[arg(long)]
        faulted_only: bool,
        /// Split the fault-injected loop into this many rounds per backend,
        /// alternating between the backends; the median round is reported
        /// and judged against the target (a shared machine's speed drifts).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// On the real kernel in new namespaces: start --networks NAT
        /// networks one after another per --layout and time each start,
        /// its firewall part, a daemon restart and the destroy of all
        /// (`bench_real`).
        #[arg(long)]
        real: bool,
        /// With --real: how many networks.
        #[arg(long, default_value_t = 100)]
        networks: usize,
        /// With --real: libvirt, batched or both (side by side).
        #[arg(long, default_value = "both")]
        layout: String,
        /// With --real: iptables or nftables.
        #[arg(long, default_value = "nftables")]
        backend: String,
        /// With --real: never raise fs.inotify.max_user_instances (a run
        /// that needs more than it allows stops and says so).
        #[arg(long)]
        no_raise_inotify: bool,
        /// With --real: time only the starts of the libvirt layout (its
        /// restart and destroy cost O(N) per command; its networks go with
        /// the run's namespaces).
        #[arg(long)]
        libvirt_starts_only: bool,
        /// With --real: NAT networks with `<dns enable='no'/>` and no
        /// `<dhcp>`, so no dnsmasq runs: the firewall's and the driver's
        /// cost without the dnsmasq fleet's (every dnsmasq wakes on every
        /// address change of the host and re-reads all addresses).
        #[arg(long)]
        no_dnsmasq: bool,
    },
}

#[derive(Subcommand)]
enum ReleaseCmd {
    /// Freeze golden/releases/unreleased as golden/releases/VERSION.
    Cut { version: String },
}

fn workspace_root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// Runs one step, printing what it runs; returns whether it succeeded.
fn step(name: &str, mut cmd: Command) -> bool {
    eprintln!("xtask: == {name}: {:?}", cmd);
    match cmd.status() {
        Ok(s) if s.success() => true,
        Ok(s) => {
            eprintln!("xtask: {name} failed ({s})");
            false
        }
        Err(e) => {
            eprintln!("xtask: cannot run {name}: {e}");
            false
        }
    }
}

/// Fault stride of `conformance --real` in CI. Measured 2026-12-07 on the
/// 2-core machine (fresh-clone `.ci/run`): at stride 4 the run took 730 s
/// and the whole CI ~62 min, over its 60-minute budget; at 8 the fault
/// scenarios run about half their crash points (always the first and the
/// last command; the fake host runs every one). CI took 55.5 min at 8
/// (stop 22); 16 makes room for release 0.2.0's scenarios and the
/// opt-level-1 build of the fake matrix's crates (not re-measured as a
/// whole: the margin is kept on purpose).
const REAL_STRIDE: u64 = 16;

/// The case × backend pairs whose traffic operations CI runs with real
/// packets (the whole real traffic matrix takes ~50 min on 2 cores): NAT
/// with DHCP on both backends and a routed network (39 scenarios, ~7 min).
/// The baseline `traffic` operation of every case passes on the kernel too
/// (66 scenarios, ~21 min: too long for CI; see README).
const TRAFFIC_REAL_CASES: &[&str] = &[
    "nat-default/iptables",
    "nat-default/nftables",
    "route-default/iptables",
];

/// The cases whose every operation CI runs with the batched layout on the
/// real kernel (both backends, with the captures' tc wrapper; fault stride
/// REAL_STRIDE, traffic and crash-each:destroy left out as in the libvirt
/// layout's run): a NAT network with DHCP (16 scenarios per backend;
/// measured: 347 s of scenario time for the iptables backend on one job
/// of a heavily loaded 2-core machine).
const BATCHED_REAL_CASES: &[&str] = &["nat-default"];

/// The case × backend pairs whose traffic operations CI also runs in the
/// batched layout with real packets (8 scenarios; nat-default/nftables
/// measured: 87 s on 2 jobs, all passed).
const BATCHED_TRAFFIC_REAL: &[&str] = &["nat-default/iptables"];

/// Fault stride of `conformance --real --backend nftables --csum-workaround`
/// in CI: the second real run of the nftables scenarios, the first being
/// expected failures on a kernel without act_csum. At every 8th command
/// this run took 651 s on 2 cores (2026-12-07), which with the other
/// steps put CI over its 60 minutes; every 16th (always the first and the
/// last command) keeps it within; the fake host checks every command of
/// both backends. 32 since release 0.2.0 (see REAL_STRIDE).
const CSUM_STRIDE: u64 = 32;

/// Fault stride of the CI step running `crash-each:destroy` and
/// `crash-each:destroy:after-effect` on the kernel (both backends, with
/// the `--csum-workaround`): a destroy crashes at every
/// `DESTROY_STRIDE` (3) × this-th command, always the first and the last
/// (the first: dnsmasq's stop marker written, SIGTERM not sent; the
/// after-effect variant's first: SIGTERM sent); at 16 a destroy of up to
/// 48 commands crashes at its first and last command only (the fake host
/// checks every 3rd command of every destroy, `--exhaustive` every one).
/// Measured 2026-12-07 on the 2-core machine shared with other work (load
/// 10-15), 132 scenarios, all passing: 11.5 min wall, 3.9 CPU-min; at the
/// strides of the other real runs (4 for both backends, 8 for nftables with
/// the workaround) 6.8 + 3.5 min wall, 5.2 CPU-min.
/// On all 36 cases the step took 283 s in the fresh-clone CI run of
/// 2026-12-07 (132 passed, 8 QoS expected failures); CI runs it on
/// [`DESTROY_REAL_CASES`] (the modes with a dnsmasq to stop, IPv6, no
/// DHCP, QoS), all cases with `VIRTNET_CI_REAL_DESTROY=all`.
const DESTROY_REAL_STRIDE: u64 = 16;

/// The cases of the `crash-each:destroy` CI step (see
/// [`DESTROY_REAL_STRIDE`]).
const DESTROY_REAL_CASES: &[&str] = &[
    "nat-default",
    "isolated",
    "route-default",
    "open",
    "nat-ipv6",
    "nat-no-dhcp",
    "dhcp-host-only",
    "nat-bandwidth",
];

/// Check stride of `upgrade-check --real --csum-workaround` in CI.
/// (stride 2: 319 s for 692 checks in the CI run of 2026-12-07; with
/// release 0.1.0 back there were 956 checks at stride 4; release 0.2.0
/// brings 1,516, and 8 runs fewer than before, for CI's margin; the fake
/// host runs every one).
const UPGRADE_REAL_STRIDE: usize = 8;

/// Check stride of the plain `upgrade-check --real` in CI (every check
/// took 332 s for 692 checks on 2026-12-07, most of them act_csum expected
/// failures; 956 with release 0.1.0 at stride 2, 1,516 with 0.2.0 at 4).
const UPGRADE_REAL_STRIDE_PLAIN: usize = 4;

fn ci(no_fmt: bool) -> ExitCode {
    let mut ok = true;
    if !no_fmt {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        ok &= step("format check", fmt);
    }
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    ok &= step("clippy", clippy);
    let mut test = cargo();
    test.args(["test", "--workspace", "--no-fail-fast"]);
    // cli/tests/kill_realhost.rs: every 8th command in CI (every command
    // takes ~12 min; see README, Reliability).
    if std::env::var_os("VIRTNET_KILL_STRIDE").is_none() {
        test.env("VIRTNET_KILL_STRIDE", "8");
    }
    ok &= step("tests", test);
    eprintln!("xtask: == golden check");
    ok &= report(golden::run(&workspace_root(), golden::Mode::Check));
    let golden_dir = workspace_root().join("golden");
    let reports = |host: &str| {
        let dir = workspace_root().join("target/conformance");
        vec![
            format!("junit:{}/{host}.junit.xml", dir.display()),
            format!("html:{}/{host}.html", dir.display()),
        ]
    };
    eprintln!("xtask: == conformance (fake host)");
    let mut fake = conformance::ConformanceArgs::fake();
    fake.report = reports("fake");
    ok &= conformance::run_code(&fake, &golden_dir) == 0;
    match conformance::real_unavailable() {
        None => {
            eprintln!("xtask: == conformance --real (real kernel, new namespaces)");
            let mut real = conformance::ConformanceArgs::fake();
            real.real = true;
            real.report = reports("real");
            // Every REAL_STRIDE-th command for the fault scenarios keeps CI
            // within its time budget on 2 cores (the fake checks every one).
            real.fault_stride = REAL_STRIDE;
            // Real packets take seconds per scenario (guests get DHCP
            // leases, STP waits): the traffic operations run below on a
            // subset of cases.
            // crash-each:destroy runs in a step of its own below.
            // The take-over of release 0.2.0's batched states into the
            // libvirt layout (140 scenarios) runs on the fake for every
            // case, on the kernel in the batched step below (nat-default,
            // every source) and in `upgrade-check --real`.
            real.exclude = vec![
                "/traffic".into(),
                "/crash-each:destroy".into(),
                "/upgrade:virtnet-0.2.0/iptables-batched".into(),
                "/upgrade:virtnet-0.2.0/nftables-batched".into(),
            ];
            real.layout = "libvirt".into();
            ok &= conformance::run_code(&real, &golden_dir) == 0;
            // The batched layout on the kernel: every operation of
            // BATCHED_REAL_CASES (both backends); all cases with
            // VIRTNET_CI_REAL_BATCHED=all.
            let all_batched = std::env::var("VIRTNET_CI_REAL_BATCHED").as_deref() == Ok("all");
            eprintln!(
                "xtask: == conformance --real --layout batched ({})",
                if all_batched {
                    "all cases".to_string()
                } else {
                    format!("{BATCHED_REAL_CASES:?}; VIRTNET_CI_REAL_BATCHED=all for every case")
                }
            );
            let mut batched = conformance::ConformanceArgs::fake();
            batched.real = true;
            batched.layout = "batched".into();
            batched.csum_workaround = true;
            batched.report = reports("real-batched");
            batched.fault_stride = REAL_STRIDE;
            batched.exclude = vec!["/traffic".into(), "/crash-each:destroy".into()];
            if !all_batched {
                batched.filter = BATCHED_REAL_CASES.iter().map(|c| format!("{c}/")).collect();
            }
            ok &= conformance::run_code(&batched, &golden_dir) == 0;
            // On a kernel without act_csum most nftables scenarios above are
            // expected failures; run them again with the captures' tc
            // wrapper so the nftables backend is exercised on the kernel too.
            eprintln!(
                "xtask: == conformance --real --backend nftables --csum-workaround --fault-stride {CSUM_STRIDE}"
            );
            let mut nft = conformance::ConformanceArgs::fake();
            nft.real = true;
            nft.backend = "nftables".into();
            nft.csum_workaround = true;
            nft.report = reports("real-nft-csum-workaround");
            nft.fault_stride = CSUM_STRIDE;
            // Its time is mostly per scenario, not per fault point (476
            // scenarios took 649 s at stride 32 on 2026-12-07): the
            // take-overs of our own frozen releases (66, the same states
            // as 0.2.0's libvirt layout) are left to the fake (every one)
            // and to `upgrade-check --real --csum-workaround` (sampled);
            // libvirt's captures stay.
            nft.exclude = vec![
                "/traffic".into(),
                "/crash-each:destroy".into(),
                "/upgrade:virtnet-0.1.0/".into(),
                "/upgrade:virtnet-0.2.0/iptables-batched".into(),
                "/upgrade:virtnet-0.2.0/nftables-batched".into(),
            ];
            nft.layout = "libvirt".into();
            ok &= conformance::run_code(&nft, &golden_dir) == 0;
            // A crash in a destroy, recovered on the kernel (issue 15), both
            // backends, at fewer points than the other fault scenarios.
            eprintln!(
                "xtask: == conformance --real --csum-workaround --filter /crash-each:destroy --fault-stride {DESTROY_REAL_STRIDE}"
            );
            let mut destroy = conformance::ConformanceArgs::fake();
            destroy.real = true;
            destroy.csum_workaround = true;
            destroy.report = reports("real-crash-destroy");
            destroy.fault_stride = DESTROY_REAL_STRIDE;
            destroy.filter = if std::env::var("VIRTNET_CI_REAL_DESTROY").as_deref() == Ok("all") {
                vec!["/crash-each:destroy".into()]
            } else {
                DESTROY_REAL_CASES
                    .iter()
                    .flat_map(|c| {
                        ["iptables", "nftables"].map(|b| format!("{c}/{b}/crash-each:destroy"))
                    })
                    .collect()
            };
            destroy.layout = "libvirt".into();
            ok &= conformance::run_code(&destroy, &golden_dir) == 0;
            // Traffic with real packets: every variant (foreign rules,
            // restart, switch, upgrades) of TRAFFIC_REAL_CASES.
            eprintln!("xtask: == conformance --real, traffic of {TRAFFIC_REAL_CASES:?}");
            let mut traffic = conformance::ConformanceArgs::fake();
            traffic.real = true;
            traffic.csum_workaround = true;
            traffic.report = reports("real-traffic");
            // And the batched layout's real packets on BATCHED_TRAFFIC_REAL
            // (every traffic variant): the same documented outcomes (issue
            // 17 item 3); all of TRAFFIC_REAL_CASES with
            // VIRTNET_CI_REAL_BATCHED=all.
            traffic.filter = TRAFFIC_REAL_CASES
                .iter()
                .map(|c| format!("{c}/traffic"))
                .collect();
            if all_batched {
                traffic.filter.extend(
                    TRAFFIC_REAL_CASES
                        .iter()
                        .map(|c| format!("{c}/batched/traffic")),
                );
            } else {
                traffic.filter.extend(
                    BATCHED_TRAFFIC_REAL
                        .iter()
                        .map(|c| format!("{c}/batched/traffic")),
                );
            }
            // Release 0.2.0's batched states taken over by the libvirt
            // layout (ids `case/B/traffic:upgrade:virtnet-0.2.0/…`; the
            // batched layout's `case/B/batched/…` stay): every case on the
            // fake, nat-default's on the kernel in the batched step.
            traffic.exclude = vec![
                "iptables/traffic:upgrade:virtnet-0.2.0/".into(),
                "nftables/traffic:upgrade:virtnet-0.2.0/".into(),
            ];
            ok &= conformance::run_code(&traffic, &golden_dir) == 0;
        }
        Some(why) => eprintln!("xtask: == conformance --real skipped: {why}"),
    }
    eprintln!("xtask: == upgrade check (fake host)");
    ok &= upgrade::run(&workspace_root(), &upgrade::UpgradeArgs::fake()) == 0;
    match conformance::real_unavailable() {
        None => {
            // Every UPGRADE_REAL_STRIDE_PLAIN-th check on the kernel: the nftables
            // ones are expected failures on a kernel without act_csum...
            eprintln!("xtask: == upgrade-check --real");
            let mut real = upgrade::UpgradeArgs::fake();
            real.real = true;
            real.stride = UPGRADE_REAL_STRIDE_PLAIN;
            ok &= upgrade::run(&workspace_root(), &real) == 0;
            // ...so they run again with the tc wrapper; every
            // UPGRADE_REAL_STRIDE-th check keeps CI within its budget
            // (all 198: ~245 s; the fake runs every one).
            eprintln!(
                "xtask: == upgrade-check --real --csum-workaround --stride {UPGRADE_REAL_STRIDE}"
            );
            real.csum_workaround = true;
            real.stride = UPGRADE_REAL_STRIDE;
            ok &= upgrade::run(&workspace_root(), &real) == 0;
        }
        Some(why) => eprintln!("xtask: == upgrade-check --real skipped: {why}"),
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints a task's report; returns whether it succeeded.
fn report(result: Result<String, String>) -> bool {
    match result {
        Ok(msg) => {
            eprintln!("xtask: {msg}");
            true
        }
        Err(msg) => {
            eprintln!("xtask: {msg}");
            false
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.task {
        Task::Ci { no_fmt } => ci(no_fmt),
        Task::Conformance(args) => conformance::run(&args, &workspace_root().join("golden")),
        Task::Golden { bless, check: _ } => {
            let mode = if bless {
                golden::Mode::Bless
            } else {
                golden::Mode::Check
            };
            exit(report(golden::run(&workspace_root(), mode)))
        }
        Task::Props {
            mutant: Some(m), ..
        } => {
            // Only conformance's tests and examples are built with the hook
            // (its dev-dependency feature `sabotage`).
            let (example, property) = match m.as_str() {
                "record-after-effect" => ("mutant_record_after_effect", "state-machine"),
                "ignore-lock" => ("mutant_ignore_lock", "state-machine"),
                _ => ("mutant_drop_last_undo", "rollback"),
            };
            let mut demo = cargo();
            demo.args([
                "run",
                "-q",
                "-p",
                "virtnet-conformance",
                "--example",
                example,
            ]);
            eprintln!("xtask: props --mutant {m}: the {property} property must fail and print its seed and minimal case");
            eprintln!("xtask: == mutant property run: {demo:?}");
            match demo.status().map(|s| s.code()) {
                Ok(Some(1)) => eprintln!("xtask: props --mutant {m}: the property caught the mutation (above: seed and minimal case)"),
                Ok(Some(3)) => eprintln!("xtask: props --mutant {m}: the property did NOT catch the mutation"),
                other => eprintln!("xtask: props --mutant {m}: could not run the demonstration ({other:?})"),
            }
            // Non-zero either way a person should look: the property
            // failed (as it must) or, worse, it did not.
            ExitCode::FAILURE
        }
        Task::Props { deep, .. } => {
            let mut test = cargo();
            test.args(["test", "-p", "virtnet-conformance"]);
            if deep {
                test.arg("--release").env("VIRTNET_DEEP", "1");
            }
            test.args(["--test", "props_start", "--test", "props_machine"]);
            let pick = |(d, deep_n): (u32, u32)| {
                std::env::var("PROPTEST_CASES")
                    .ok()
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .unwrap_or(if deep { deep_n } else { d })
            };
            eprintln!(
                "xtask: props: {} cases per start property (2 properties), {} operation sequences",
                pick(virtnet_conformance::props::START_CASES),
                pick(virtnet_conformance::props::MACHINE_CASES)
            );
            exit(step("property tests", test))
        }
        Task::Release {
            cmd: ReleaseCmd::Cut { version },
        } => exit(report(release::cut(&workspace_root(), &version))),
        Task::UpgradeCheck(args) => ExitCode::from(upgrade::run(&workspace_root(), &args)),
        Task::Bench {
            real: true,
            json,
            networks,
            layout,
            backend,
            no_raise_inotify,
            libvirt_starts_only,
            no_dnsmasq,
            ..
        } => {
            use virtnet_core::rules::batched::Layout;
            let layouts = match layout.as_str() {
                "both" => vec![Layout::Libvirt, Layout::Batched],
                l => match l.parse::<Layout>() {
                    Ok(l) => vec![l],
                    Err(e) => {
                        eprintln!("bench --real: --layout: {e} (or both)");
                        std::process::exit(2);
                    }
                },
            };
            let backend = match backend.parse::<virtnet_core::firewall::Backend>() {
                Ok(
                    b @ (virtnet_core::firewall::Backend::Iptables
                    | virtnet_core::firewall::Backend::Nftables),
                ) => b,
                _ => {
                    eprintln!(
                        "bench --real: --backend must be iptables or nftables, not '{backend}'"
                    );
                    std::process::exit(2);
                }
            };
            if networks == 0 {
                eprintln!("bench --real: --networks must be at least 1");
                std::process::exit(2);
            }
            std::process::exit(i32::from(bench_real::run(&bench_real::RealBenchArgs {
                networks,
                layouts,
                backend,
                json,
                raise_inotify: !no_raise_inotify,
                libvirt_starts_only,
                dnsmasq: !no_dnsmasq,
            })))
        }
        Task::Bench {
            seconds,
            json,
            iterations,
            faulted_only,
            rounds,
            ..
        } => exit(bench::run(seconds, json, iterations, faulted_only, rounds)),
        Task::BenchParse { json, this_build } => exit(bench_parse::run(json, this_build)),
    }
}
