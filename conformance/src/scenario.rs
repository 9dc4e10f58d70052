//! The scenarios: one body per operation, written against [`HostFactory`] /
//! [`TestHost`], run unchanged on the fake and on the real host.
//!
//! Every scenario starts from a *baseline* host: foreign rules (Docker's
//! iptables and nftables rulesets, firewalld's table) and the uplink devices
//! the case names. Every check compares whole canonical snapshots, so the
//! foreign rules are checked to be untouched by every step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtnet_core::driver::{Driver, DriverConfig, DriverError};
use virtnet_core::firewall::Backend;
use virtnet_core::rules;
use virtnet_runner::{Cmd, Runner};

use crate::cases::{self, Case, Expectation, UpgradeSource};
use crate::checks::{
    fail, fail_diff, nothing_left, verdict_of, CheckResult, Failure, Stop, Verdict, XFAIL_ACT_CSUM,
};
use crate::host::{HostError, HostFactory, Snapshot, TestHost, FIREWALL_SECTIONS};
use virtnet_testkit::{FaultPlan, FaultRunner};

/// stderr of an injected failure.
pub const INJECTED_STDERR: &str = "virtnet-conformance: injected failure\n";

/// The operations of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Start: host = golden expectation, status fwRemoval = golden plan.
    Start,
    /// Start + destroy: host = baseline + what is kept on purpose.
    Destroy,
    /// Start, driver reopen + reconcile: same state, rules exactly once.
    Restart,
    /// Start with the backend, restart with the other: old rules gone, new
    /// rules present; destroy leaves nothing.
    Switch,
    /// Upgrade from a network another release started.
    Upgrade(UpgradeSource),
    /// Failure of command k of a start, for every k.
    FailEach,
    /// Crash after command k of a start, for every k, then restart.
    CrashEach,
}

impl Op {
    pub fn label(&self) -> String {
        match self {
            Op::Start => "start".into(),
            Op::Destroy => "destroy".into(),
            Op::Restart => "restart".into(),
            Op::Switch => "switch".into(),
            Op::Upgrade(s) => format!("upgrade:{}", s.label()),
            Op::FailEach => "fail-each".into(),
            Op::CrashEach => "crash-each".into(),
        }
    }

    /// Column name in summaries (upgrade sources grouped by origin).
    pub fn column(&self) -> String {
        match self {
            Op::Upgrade(UpgradeSource::Frozen { release, .. }) => format!("up:{release}"),
            Op::Upgrade(UpgradeSource::Libvirt { version, .. }) => format!("up:libvirt-{version}"),
            o => o.label(),
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub case: String,
    pub backend: Backend,
    pub op: Op,
}

impl Scenario {
    /// `case/backend/op`, what `--filter` matches.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.case, self.backend, self.op.label())
    }
}

/// A finished scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub verdict: Verdict,
    pub duration: Duration,
    /// Sub-steps checked (k values of fail-each / crash-each, else 1).
    pub steps: u64,
}

/// Everything a scenario body needs.
pub struct Ctx<'a> {
    pub factory: &'a dyn HostFactory,
    pub golden: &'a Path,
    pub case: &'a Case,
    dir: tempfile::TempDir,
    seq: std::cell::Cell<u32>,
    xml: String,
}

/// A host with a baseline, plus a driver state (config/state dirs).
pub struct Stage {
    pub host: Box<dyn TestHost>,
    pub baseline: Snapshot,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
}

fn seed_err(e: virtnet_fake::seed::SeedError) -> HostError {
    HostError::Other(e.to_string())
}

impl<'a> Ctx<'a> {
    pub fn new(
        factory: &'a dyn HostFactory,
        golden: &'a Path,
        case: &'a Case,
    ) -> Result<Ctx<'a>, HostError> {
        // tmpfs when there is one: the driver fsyncs every status and
        // journal write, which dominates the run time on a disk.
        let shm = Path::new("/dev/shm");
        let mut b = tempfile::Builder::new();
        b.prefix("virtnet-conformance-");
        let dir = if shm.is_dir() {
            b.tempdir_in(shm).or_else(|_| b.tempdir())
        } else {
            b.tempdir()
        };
        let dir = dir.map_err(|e| HostError::Other(format!("temporary directory: {e}")))?;
        // dnsmasq writes its pid file as root and may then drop privileges.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        let tftp = dir.path().join("tftproot");
        std::fs::create_dir_all(&tftp).map_err(|e| HostError::Other(e.to_string()))?;
        let xml = cases::localise_xml(&case.xml, &tftp);
        Ok(Ctx {
            factory,
            golden,
            case,
            dir,
            seq: std::cell::Cell::new(0),
            xml,
        })
    }

    /// A fresh host with the baseline applied: foreign rules and uplinks.
    pub fn stage(&self) -> Result<Stage, HostError> {
        self.stage_for(&self.case.def)
    }

    fn stage_for(&self, def: &virtnet_core::netxml::NetworkDef) -> Result<Stage, HostError> {
        let host = self.factory.fresh()?;
        let r = host.runner();
        let r: &dyn Runner = &*r;
        virtnet_fake::seed::seed_docker_iptables(r).map_err(seed_err)?;
        virtnet_fake::seed::seed_docker_nft(r).map_err(seed_err)?;
        virtnet_fake::seed::seed_firewalld_nft(r).map_err(seed_err)?;
        for (i, dev) in cases::uplinks(def).iter().enumerate() {
            r.run_argv_checked(&["ip", "link", "add", dev, "type", "bridge"])?;
            let mac = format!("02:00:00:00:00:{:02x}", i + 1);
            r.run_argv_checked(&["ip", "link", "set", "dev", dev, "address", &mac])?;
        }
        let baseline = host.snapshot()?;
        let n = self.seq.get() + 1;
        self.seq.set(n);
        let base = self.dir.path().join(format!("run{n}"));
        Ok(Stage {
            host,
            baseline,
            config_dir: base.join("config"),
            state_dir: base.join("state"),
        })
    }

    /// A driver on the stage's host (or on `runner`).
    pub fn driver(
        &self,
        stage: &Stage,
        runner: Option<Arc<dyn Runner>>,
        backend: Backend,
    ) -> Result<Driver, DriverError> {
        let tools = self.factory.driver_tools();
        let mut cfg = DriverConfig::new(
            &stage.config_dir,
            &stage.state_dir,
            runner.unwrap_or_else(|| stage.host.runner()),
        )
        .with_backend(backend);
        cfg.dnsmasq_binary = Some(tools.dnsmasq_binary);
        cfg.leases_helper = tools.leases_helper;
        Driver::open(cfg)
    }

    fn define(&self, stage: &Stage, backend: Backend) -> Result<String, Failure> {
        let d = self
            .driver(stage, None, backend)
            .map_err(|e| Failure::new(format!("driver open: {e}")))?;
        d.define(&self.xml)
            .map(|def| def.name)
            .map_err(|e| Failure::new(format!("define: {e}")))
    }

    fn status_path(&self, stage: &Stage) -> PathBuf {
        stage.state_dir.join(format!("{}.xml", self.case.def.name))
    }

    fn expectation(&self, backend: Backend) -> Result<Expectation, Failure> {
        cases::expectation(self.golden, cases::UNRELEASED, &self.case.name, backend)
            .map_err(|e| Failure::new(format!("golden data: {e}")))
    }

    /// Would the start of this case with `backend` fail on this kernel for
    /// want of act_csum?
    fn lacks_csum(&self, backend: Backend) -> Result<bool, Failure> {
        Ok(!self.factory.has_act_csum() && self.expectation(backend)?.needs_act_csum())
    }

    // ------------------------------------------------------------------
    // expectations computed on separate fresh hosts

    /// What libvirt keeps on purpose after a destroy, as a snapshot: the
    /// baseline's firewall sections plus what
    /// [`crate::kept::set_up_kept`] (the one definition of "kept")
    /// adds for `backends` — for a network with firewall rules (one without
    /// never sets the private chains up).
    pub fn kept(&self, backends: &[Backend]) -> Result<Snapshot, HostError> {
        self.kept_for(&self.case.def, backends)
    }

    /// The golden expectation of a start with `backend`: the baseline, the
    /// private chains of `chains_of` (then of `backend`), the bridge, and the
    /// commands of `golden/releases/unreleased/<case>/<backend>.start`
    /// applied. Firewall sections only. `Ok(None)`: the stream cannot be
    /// applied on this kernel (act_csum).
    fn expected_start(
        &self,
        backend: Backend,
        chains_of: &[Backend],
    ) -> Result<Option<Snapshot>, Failure> {
        let Expectation::Start { stream, .. } = self.expectation(backend)? else {
            return fail("expected_start of an error case");
        };
        let stage = self.stage()?;
        let r = stage.host.runner();
        if rules::has_firewall_rules(&self.case.def) {
            let mut backends = chains_of.to_vec();
            backends.push(backend);
            crate::kept::set_up_kept(&*r, &backends).map_err(HostError::Other)?;
        }
        let br = self.case.bridge();
        if !br.is_empty() && stage.host.snapshot()?.section("links").find(&br).is_none() {
            r.run_argv_checked(&["ip", "link", "add", &br, "type", "bridge"])?;
            // Up, like the driver leaves it (an up device shows its default qdisc).
            r.run_argv_checked(&["ip", "link", "set", "dev", &br, "up"])?;
        }
        for argv in &stream {
            let out = r
                .run(&Cmd::new(argv.iter().map(String::as_str)))
                .map_err(|e| {
                    HostError::Other(format!("golden command `{}`: {e}", argv.join(" ")))
                })?;
            if !out.success() {
                let is_query = argv.iter().any(|a| a == "show" || a == "list");
                if argv.iter().any(|a| a == "csum") && !self.factory.has_act_csum() {
                    return Ok(None);
                }
                if !is_query {
                    return fail(format!(
                        "golden command `{}` fails on this host: {}",
                        argv.join(" "),
                        out.stderr.trim_end()
                    ));
                }
            }
        }
        Ok(Some(stage.host.snapshot()?.only(FIREWALL_SECTIONS)))
    }

    // ------------------------------------------------------------------
    // checks

    /// Nothing of ours left: see [`nothing_left`].
    fn check_nothing_left(
        &self,
        before: &Snapshot,
        after: &Snapshot,
        kept: &Snapshot,
        what: &str,
    ) -> Result<(), Failure> {
        nothing_left(before, after, kept, what)
    }

    fn check_status_removal(
        &self,
        d: &Driver,
        name: &str,
        backend: Backend,
        expected: &Option<String>,
        what: &str,
    ) -> Result<(), Failure> {
        let Some(st) = d.status(name) else {
            return fail(format!("{what}: network not active"));
        };
        let ours = st.fw_removal.as_ref().map(|fw| fw.format_xml(2));
        match (expected, &ours) {
            (None, None) => Ok(()),
            (Some(e), Some(o)) => {
                if st.removal_backend() != Some(backend) {
                    return fail(format!(
                        "{what}: fwRemoval backend {:?}, expected {backend}",
                        st.removal_backend()
                    ));
                }
                let (e, o) = (cases::mask_handles(e), cases::mask_handles(o));
                if e != o {
                    return fail_diff(
                        format!("{what}: status fwRemoval differs from golden removal.xml (handles masked)"),
                        virtnet_fake::diff_text(&e, &o, "golden", "status"),
                    );
                }
                Ok(())
            }
            (e, o) => fail(format!(
                "{what}: fwRemoval {} but golden {}",
                if o.is_some() { "saved" } else { "absent" },
                if e.is_some() { "has one" } else { "has none" }
            )),
        }
    }

    fn compare(&self, expected: &Snapshot, actual: &Snapshot, what: &str) -> Result<(), Failure> {
        if expected != actual {
            return fail_diff(
                format!("{what}: host differs from the expectation"),
                expected.diff(actual, "expected", "actual"),
            );
        }
        Ok(())
    }

    /// Starts the network on a staged host; on a kernel without act_csum
    /// when the stream needs it, checks the start fails like libvirt's and
    /// leaves the host as before (modulo kept chains), then stops with
    /// Xfail.
    fn start_checked(
        &self,
        stage: &Stage,
        d: &Driver,
        name: &str,
        backend: Backend,
    ) -> CheckResult<()> {
        let r = d.start(name);
        if self.lacks_csum(backend)? {
            let e = match r {
                Ok(()) => return fail("start succeeded on a kernel without act_csum"),
                Err(e) => e,
            };
            let msg = e.to_string();
            if !msg.contains("action csum") {
                return fail(format!("start failed, but not for act_csum: {msg}"));
            }
            let after = stage.host.snapshot()?;
            let kept = self.kept(&[backend])?;
            // `kept` replaced this thread's host on the real kernel: the
            // snapshot above was taken first.
            self.check_nothing_left(&stage.baseline, &after, &kept, "failed start (act_csum)")?;
            if self.status_path(stage).exists() {
                return fail("failed start left a status file");
            }
            return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
        }
        r.map_err(|e| Stop::Fail(Failure::new(format!("start: {e}"))))
    }
}

fn driver_step<T>(r: Result<T, DriverError>, what: &str) -> Result<T, Failure> {
    r.map_err(|e| Failure::new(format!("{what}: {e}")))
}

/// Knobs of a scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioOptions {
    /// fail-each / crash-each inject at every `fault_stride`-th command
    /// (always including the first and the last); 1 = every command.
    pub fault_stride: u64,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        ScenarioOptions { fault_stride: 1 }
    }
}

/// The k values of a fault scenario: `first..=n` every `stride`, plus `n`.
fn fault_points(first: u64, n: u64, stride: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (first..=n).step_by(stride.max(1) as usize).collect();
    if v.last() != Some(&n) && n >= first {
        v.push(n);
    }
    v
}

/// Runs one scenario on hosts of `factory`, faults at every command.
pub fn run_scenario(
    factory: &dyn HostFactory,
    golden: &Path,
    case: &Case,
    scenario: &Scenario,
) -> Outcome {
    run_scenario_with(factory, golden, case, scenario, &ScenarioOptions::default())
}

/// Runs one scenario on hosts of `factory` with options.
pub fn run_scenario_with(
    factory: &dyn HostFactory,
    golden: &Path,
    case: &Case,
    scenario: &Scenario,
    opts: &ScenarioOptions,
) -> Outcome {
    let t0 = Instant::now();
    let mut steps = 1;
    let verdict = match Ctx::new(factory, golden, case) {
        Err(e) => Verdict::Fail {
            message: format!("host: {e}"),
            diff: String::new(),
        },
        Ok(ctx) => {
            let r = match &scenario.op {
                Op::Start => op_start(&ctx, scenario.backend),
                Op::Destroy => op_destroy(&ctx, scenario.backend),
                Op::Restart => op_restart(&ctx, scenario.backend),
                Op::Switch => op_switch(&ctx, scenario.backend),
                Op::Upgrade(src) => op_upgrade(&ctx, src, scenario.backend),
                Op::FailEach => op_fail_each(&ctx, scenario.backend, opts.fault_stride).map(|n| {
                    steps = n;
                }),
                Op::CrashEach => {
                    op_crash_each(&ctx, scenario.backend, opts.fault_stride).map(|n| {
                        steps = n;
                    })
                }
            };
            verdict_of(r)
        }
    };
    Outcome {
        scenario: scenario.clone(),
        verdict,
        duration: t0.elapsed(),
        steps,
    }
}

/// The operations that apply to a case with a backend.
pub fn ops_for(golden: &Path, case: &Case, backend: Backend) -> Vec<Op> {
    let exp = cases::expectation(golden, cases::UNRELEASED, &case.name, backend);
    if matches!(exp, Ok(Expectation::Error(_))) {
        return vec![Op::Start, Op::FailEach];
    }
    let mut ops = vec![Op::Start, Op::Destroy, Op::Restart];
    let other = backend.other();
    if matches!(
        cases::expectation(golden, cases::UNRELEASED, &case.name, other),
        Ok(Expectation::Start { .. })
    ) {
        ops.push(Op::Switch);
    }
    for src in cases::upgrade_sources(golden, &case.name) {
        ops.push(Op::Upgrade(src));
    }
    ops.push(Op::FailEach);
    ops.push(Op::CrashEach);
    ops
}

// ----------------------------------------------------------------------
// operation bodies

fn op_start(ctx: &Ctx, backend: Backend) -> CheckResult<()> {
    let exp = ctx.expectation(backend)?;
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, backend)?;
    let d = driver_step(ctx.driver(&stage, None, backend), "driver open")?;
    match &exp {
        Expectation::Error(msg) => {
            let e = match d.start(&name) {
                Ok(()) => {
                    return fail(format!("start succeeded; golden says it fails with: {msg}"))
                }
                Err(e) => e.to_string(),
            };
            if e.trim() != msg.trim() {
                return fail(format!("start failed with `{e}`, golden says `{msg}`"));
            }
            if ctx.status_path(&stage).exists() {
                return fail("failed start left a status file");
            }
            let after = stage.host.snapshot()?;
            let kept = ctx.kept(&[backend])?;
            ctx.check_nothing_left(&stage.baseline, &after, &kept, "failed start")?;
            Ok(())
        }
        Expectation::Start { removal, .. } => {
            ctx.start_checked(&stage, &d, &name, backend)?;
            let after = stage.host.snapshot()?;
            ctx.check_status_removal(&d, &name, backend, removal, "after start")?;
            if !ctx.status_path(&stage).exists() {
                return fail("no status file after start");
            }
            let br = ctx.case.bridge();
            if !after.section("links").contains(&br) {
                return fail_diff(
                    format!("bridge {br} missing after start"),
                    after.section("links").to_string(),
                );
            }
            let want_dnsmasq = virtnet_core::dnsmasq::needs_dnsmasq(&ctx.case.def);
            let has_dnsmasq = after.section("processes").contains("dnsmasq");
            if want_dnsmasq != has_dnsmasq {
                return fail_diff(
                    format!("dnsmasq running: {has_dnsmasq}, expected {want_dnsmasq}"),
                    after.section("processes").to_string(),
                );
            }
            let snap_fw = after.only(FIREWALL_SECTIONS);
            drop(d);
            drop(stage);
            let Some(expected) = ctx.expected_start(backend, &[])? else {
                return fail("golden stream needs act_csum, but the start succeeded");
            };
            ctx.compare(&expected, &snap_fw, "after start")?;
            Ok(())
        }
    }
}

fn op_destroy(ctx: &Ctx, backend: Backend) -> CheckResult<()> {
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, backend)?;
    let d = driver_step(ctx.driver(&stage, None, backend), "driver open")?;
    ctx.start_checked(&stage, &d, &name, backend)?;
    let started = stage.host.snapshot()?;
    driver_step(d.destroy(&name), "destroy")?;
    let after = stage.host.snapshot()?;
    if ctx.status_path(&stage).exists() {
        return fail("status file left after destroy");
    }
    let baseline = stage.baseline.clone();
    drop(d);
    drop(stage);
    // Destroy = baseline + kept private chains; forwarding sysctls stay as
    // the start set them (libvirt never turns forwarding off).
    let kept = ctx.kept(&[backend])?;
    let mut expected = baseline.clone();
    for (k, v) in kept.sections {
        expected.sections.insert(k, v);
    }
    let expected = expected.with_section("sysctl", started.section("sysctl"));
    ctx.compare(&expected, &after, "after destroy")?;
    Ok(())
}

fn op_restart(ctx: &Ctx, backend: Backend) -> CheckResult<()> {
    let Expectation::Start { removal, .. } = ctx.expectation(backend)? else {
        return fail("restart of an error case");
    };
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, backend)?;
    let d = driver_step(ctx.driver(&stage, None, backend), "driver open")?;
    ctx.start_checked(&stage, &d, &name, backend)?;
    let started = stage.host.snapshot()?;
    drop(d);
    let d2 = driver_step(ctx.driver(&stage, None, backend), "driver reopen")?;
    let rep = driver_step(d2.reconcile(), "reconcile")?;
    if !rep.problems.is_empty() {
        return fail(format!("reconcile problems: {:?}", rep.problems));
    }
    if rules::has_firewall_rules(&ctx.case.def) && !rep.reloaded.contains(&name) {
        return fail(format!("reconcile did not reload {name}: {rep:?}"));
    }
    let after = stage.host.snapshot()?;
    ctx.compare(
        &started,
        &after,
        "after restart (rules exactly once, as after start)",
    )?;
    ctx.check_status_removal(&d2, &name, backend, &removal, "after restart")?;
    Ok(())
}

fn op_switch(ctx: &Ctx, from: Backend) -> CheckResult<()> {
    let to = from.other();
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, from)?;
    let d = driver_step(ctx.driver(&stage, None, from), "driver open")?;
    ctx.start_checked(&stage, &d, &name, from)?;
    drop(d);
    let d2 = driver_step(ctx.driver(&stage, None, to), "driver reopen")?;
    let rep = d2.reconcile();
    if ctx.lacks_csum(to)? {
        // The reload with nftables fails at the csum filter, as libvirt's.
        let msg = match &rep {
            Ok(r) => r.problems.join("; "),
            Err(e) => e.to_string(),
        };
        if !msg.contains("action csum") {
            return fail(format!("switch to {to} on a kernel without act_csum: expected the csum failure, got `{msg}`"));
        }
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let rep = driver_step(rep, "reconcile")?;
    if !rep.problems.is_empty() {
        return fail(format!("reconcile problems: {:?}", rep.problems));
    }
    let Expectation::Start { removal, .. } = ctx.expectation(to)? else {
        return fail("switch to an error case");
    };
    ctx.check_status_removal(&d2, &name, to, &removal, "after switch")?;
    let switched = stage.host.snapshot()?;
    driver_step(d2.destroy(&name), "destroy after switch")?;
    let destroyed = stage.host.snapshot()?;
    let baseline = stage.baseline.clone();
    drop(d2);
    drop(stage);
    // Old rules gone, new rules present: the rulesets equal the baseline
    // with both backends' private chains and the golden rules of `to`.
    // The tc root qdisc of the nftables backend is left to the bridge's
    // deletion (libvirt does the same), so tc is checked for filters only.
    let Some(expected) = ctx.expected_start(to, &[from])? else {
        return fail("golden stream needs act_csum");
    };
    let rulesets = ["nft", "iptables", "ip6tables"];
    ctx.compare(
        &expected.only(&rulesets),
        &switched.only(&rulesets),
        &format!("after switch {from}->{to}"),
    )?;
    if to == Backend::Iptables
        && switched
            .section("tc")
            .lines()
            .any(|l| l.starts_with("filter ") || l.contains("csum"))
    {
        return fail_diff(
            "nftables tc filter left after switch to iptables",
            switched.section("tc").to_string(),
        );
    }
    let kept = ctx.kept(&[from, to])?;
    ctx.check_nothing_left(
        &baseline,
        &destroyed.with_section("processes", baseline.section("processes")),
        &kept,
        "destroy after switch",
    )?;
    if !destroyed.section("processes").is_empty() {
        return fail_diff(
            "dnsmasq left after destroy",
            destroyed.section("processes").to_string(),
        );
    }
    Ok(())
}

/// Start `k`-th-command failures: returns the number of k checked.
fn op_fail_each(ctx: &Ctx, backend: Backend, stride: u64) -> CheckResult<u64> {
    let exp = ctx.expectation(backend)?;
    if ctx.lacks_csum(backend)? {
        // Every start fails at the csum filter anyway; the real check is
        // that this failure leaves the host as before (start scenario).
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let n = start_command_count(ctx, backend)?;
    let kept = ctx.kept(&[backend])?;
    let mut tolerated = 0;
    let points = fault_points(1, n, stride);
    for &k in &points {
        let what = format!("failing command #{k} of {n}");
        let stage = ctx.stage()?;
        let name = ctx.define(&stage, backend)?;
        let faults = Arc::new(
            FaultRunner::new(stage.host.runner()).with_plan(FaultPlan::none().fail_nth(
                k,
                1,
                INJECTED_STDERR,
            )),
        );
        let d = driver_step(
            ctx.driver(&stage, Some(faults.clone() as Arc<dyn Runner>), backend),
            "driver open",
        )?;
        // define changes nothing on the host: the baseline is the state before the start.
        let before = stage.baseline.clone();
        match d.start(&name) {
            Err(e) => {
                if e.is_crash() {
                    return fail(format!("{what}: reported as crash: {e}"));
                }
                // A start that should succeed must fail because of the
                // injected failure, and say so — unless the failed command
                // was private-chain setup, whose error libvirt only reports
                // for a network of that family: then a later command fails
                // for want of the chain, as in libvirt.
                let injected = faults.injected().unwrap_or_default();
                if matches!(exp, Expectation::Start { .. })
                    && !e.to_string().contains(INJECTED_STDERR.trim())
                    && !failure_is_tolerated(&injected)
                {
                    return fail(format!("{what}: start failed for another reason: {e}"));
                }
                if ctx.status_path(&stage).exists() || !d.pending_journals().is_empty() {
                    return fail(format!("{what}: status file or journal left"));
                }
                let after = stage.host.snapshot()?;
                if before.section("sysctl") != after.section("sysctl") {
                    return fail_diff(
                        format!("{what}: sysctls not restored"),
                        before.diff(&after, "before", "after"),
                    );
                }
                ctx.check_nothing_left(&before, &after, &kept, &what)?;
            }
            Ok(()) => {
                // Tolerated failures: private-chain listings (taken for
                // "nothing there") and libvirt's ignore-errors groups.
                tolerated += 1;
                let argv = faults.injected().unwrap_or_default();
                if !failure_is_tolerated(&argv) {
                    return fail(format!(
                        "{what}: start succeeded although `{}` failed",
                        argv.join(" ")
                    ));
                }
                driver_step(
                    d.destroy(&name),
                    &format!("{what}: destroy after tolerated failure"),
                )?;
                let after = stage.host.snapshot()?;
                ctx.check_nothing_left(
                    &before,
                    &after.with_section("sysctl", before.section("sysctl")),
                    &kept,
                    &format!("{what} (tolerated), then destroy"),
                )?;
            }
        }
    }
    if tolerated >= points.len() as u64 && n > 0 {
        return fail(format!(
            "none of {} command failures failed the start",
            points.len()
        ));
    }
    Ok(points.len() as u64)
}

/// Failures libvirt lets a start survive: the private-chain setup (its
/// errors are saved, and only matter to networks of that address family),
/// the ignore-errors CHECKSUM rule of the iptables backend, and the read of
/// the host's route table for the route-collision check (libvirt skips the
/// check when `/proc/net/route` cannot be read; virtnet reads the table with
/// `ip -4 route show`).
pub fn failure_is_tolerated(argv: &[String]) -> bool {
    let has = |w: &str| argv.iter().any(|a| a == w);
    let prog = argv.first().map(String::as_str).unwrap_or("");
    match prog {
        "ip" => argv[1..] == ["-4", "route", "show"],
        "iptables" | "ip6tables" => {
            has("--list-rules")
                || has("CHECKSUM")
                || (has("--new-chain") && argv.iter().any(|a| a.starts_with("LIBVIRT_")))
                || (has("--jump")
                    && argv.iter().any(|a| a.starts_with("LIBVIRT_"))
                    && ["INPUT", "OUTPUT", "FORWARD", "POSTROUTING"]
                        .iter()
                        .any(|c| has(c)))
        }
        "nft" => {
            has("libvirt_network")
                && ((has("list") && has("table"))
                    || (has("add") && (has("table") || has("chain")))
                    || (has("insert") && has("forward") && has("jump")))
        }
        _ => false,
    }
}

/// Commands a start gives the host before it succeeds or fails on its own
/// (on a fresh staged host). For a start that fails by itself, the undo
/// commands that follow its failure (from the first `ip link del` of the
/// bridge) are not counted: a failure of the undo itself is a double fault,
/// outside this scenario.
fn start_command_count(ctx: &Ctx, backend: Backend) -> CheckResult<u64> {
    let stage = ctx.stage()?;
    let name = ctx.define(&stage, backend)?;
    let faults = Arc::new(FaultRunner::new(stage.host.runner()));
    let d = driver_step(
        ctx.driver(&stage, Some(faults.clone() as Arc<dyn Runner>), backend),
        "driver open",
    )?;
    let ok = d.start(&name).is_ok();
    let n = faults.command_count();
    if ok {
        return Ok(n);
    }
    let br = ctx.case.bridge();
    let undo_at = faults.commands().iter().position(|a| {
        a.len() >= 4 && a[0] == "ip" && a[1] == "link" && a[2] == "del" && a[3] == br
    });
    Ok(undo_at.map(|i| i as u64).unwrap_or(n))
}

/// Crash after `k` commands of a start for every k, then recover + driver
/// reopen + reconcile: nothing of ours remains that no status file
/// accounts for, and an active network has its rules exactly once.
fn op_crash_each(ctx: &Ctx, backend: Backend, stride: u64) -> CheckResult<u64> {
    if ctx.lacks_csum(backend)? {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let n = start_command_count(ctx, backend)?;
    let kept = ctx.kept(&[backend])?;
    let Some(expected) = ctx.expected_start(backend, &[])? else {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    };
    let points = fault_points(0, n, stride);
    for &k in &points {
        let what = format!("crash after command {k} of {n}");
        let stage = ctx.stage()?;
        let name = ctx.define(&stage, backend)?;
        // define changes nothing on the host: the baseline is the state before the start.
        let before = stage.baseline.clone();
        let faults = Arc::new(
            FaultRunner::new(stage.host.runner()).with_plan(FaultPlan::none().crash_after(k)),
        );
        let d = driver_step(
            ctx.driver(&stage, Some(faults as Arc<dyn Runner>), backend),
            "driver open",
        )?;
        let r = d.start(&name);
        drop(d);
        match r {
            Err(e) if !e.is_crash() => {
                return fail(format!("{what}: start failed without a crash: {e}"));
            }
            Ok(()) if k < n => {
                return fail(format!("{what}: start succeeded"));
            }
            _ => {}
        }
        // Recover: a new daemon on the same host.
        let d2 = driver_step(
            ctx.driver(&stage, None, backend),
            &format!("{what}: driver reopen"),
        )?;
        if !d2.pending_journals().is_empty() {
            return fail(format!("{what}: journal left after reopen"));
        }
        driver_step(d2.reconcile(), &format!("{what}: reconcile"))?;
        let active = d2.info(&name).map(|i| i.active).unwrap_or(false);
        if active {
            let now = stage.host.snapshot()?.only(FIREWALL_SECTIONS);
            ctx.compare(
                &expected,
                &now,
                &format!("{what}: active after recovery, rules exactly once"),
            )?;
            driver_step(d2.destroy(&name), &format!("{what}: destroy"))?;
        }
        let after = stage.host.snapshot()?;
        ctx.check_nothing_left(
            &before,
            &after,
            &kept,
            &format!(
                "{what}: after recovery{}",
                if active { " and destroy" } else { "" }
            ),
        )?;
    }
    Ok(points.len() as u64)
}

// ----------------------------------------------------------------------
// upgrade

/// Upgrade: a network started by `src` is taken over by this release with
/// `to` configured: the upgrade check ([`crate::upgrade::check`], the same
/// one `cargo xtask upgrade-check` runs on every release state).
fn op_upgrade(ctx: &Ctx, src: &UpgradeSource, to: Backend) -> CheckResult<()> {
    let state = crate::upgrade::source_state(ctx.golden, &ctx.case.name, src)
        .map_err(|e| Failure::new(format!("golden data: {e}")))?;
    crate::upgrade::check(ctx.factory, &state, to)
}

impl Ctx<'_> {
    /// [`Ctx::kept`] for another definition (upgrade sources).
    fn kept_for(
        &self,
        def: &virtnet_core::netxml::NetworkDef,
        backends: &[Backend],
    ) -> Result<Snapshot, HostError> {
        let stage = self.stage_for(def)?;
        // A network without firewall rules never sets the private chains up.
        let backends = if rules::has_firewall_rules(def) {
            backends
        } else {
            &[]
        };
        crate::kept::kept_snapshot(&*stage.host, backends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_points_cover_first_and_last() {
        assert_eq!(fault_points(1, 5, 1), vec![1, 2, 3, 4, 5]);
        assert_eq!(fault_points(1, 10, 4), vec![1, 5, 9, 10]);
        assert_eq!(fault_points(0, 8, 4), vec![0, 4, 8]);
        assert_eq!(fault_points(1, 0, 1), Vec::<u64>::new());
    }

    #[test]
    fn tolerated_failures_are_private_chain_setup_and_checksum_only() {
        let t = |s: &str| failure_is_tolerated(&s.split(' ').map(String::from).collect::<Vec<_>>());
        assert!(t("iptables -w --table filter --list-rules"));
        assert!(t("ip6tables -w --table filter --new-chain LIBVIRT_FWI"));
        assert!(t(
            "iptables -w --table filter --insert FORWARD --jump LIBVIRT_FWX"
        ));
        assert!(t("iptables -w --table mangle --insert LIBVIRT_PRT --out-interface virbr0 --protocol udp --destination-port 68 --jump CHECKSUM --checksum-fill"));
        assert!(t("nft add table ip6 libvirt_network"));
        assert!(t("nft list table ip libvirt_network"));
        assert!(!t("iptables -w --table filter --insert LIBVIRT_INP --in-interface virbr0 --protocol udp --destination-port 67 --jump ACCEPT"));
        assert!(!t(
            "nft -ae insert rule ip libvirt_network guest_output iif virbr0 counter reject"
        ));
        assert!(!t("ip link add name virbr0 type bridge"));
        assert!(t("ip -4 route show"));
        assert!(!t("ip -4 route add 10.0.0.0/24 dev virbr0"));
        assert!(!t("tc filter add dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp"));
    }
}
