//! [`Ctx`]: everything a scenario body needs — fresh staged hosts, drivers
//! on them, the golden expectations computed on separate fresh hosts — and
//! the checks the bodies share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig, DriverError};
use virtnet_core::firewall::Backend;
use virtnet_core::rules;
use virtnet_core::rules::batched::Layout;
use virtnet_runner::Runner;

use crate::cases::{self, Case, Expectation};
use crate::checks::{
    fail, fail_diff, nothing_left, CheckResult, Failure, Stop, XFAIL_ACT_CSUM, XFAIL_QOS,
};
use crate::host::{HostError, HostFactory, Snapshot, TestHost, FIREWALL_SECTIONS};

/// Everything a scenario body needs.
pub struct Ctx<'a> {
    pub factory: &'a dyn HostFactory,
    pub golden: &'a Path,
    pub case: &'a Case,
    /// The firewall layout every driver of the scenario is configured
    /// with, and whose golden files (`B.*` or `B-batched.*`) are the
    /// expectations.
    pub layout: Layout,
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

pub(super) fn seed_err(e: virtnet_fake::seed::SeedError) -> HostError {
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
            layout: Layout::Libvirt,
            dir,
            seq: std::cell::Cell::new(0),
            xml,
        })
    }

    /// The same context with the firewall layout `layout`.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// `(backend, this layout)` for each of `backends`: what
    /// [`crate::kept::set_up_kept_in`] takes.
    pub(super) fn kept_pairs(&self, backends: &[Backend]) -> Vec<(Backend, Layout)> {
        backends.iter().map(|b| (*b, self.layout)).collect()
    }

    /// A fresh host with the baseline applied: foreign rules and uplinks.
    pub fn stage(&self) -> Result<Stage, HostError> {
        self.stage_for(&self.case.def)
    }

    pub(super) fn stage_for(
        &self,
        def: &virtnet_core::netxml::NetworkDef,
    ) -> Result<Stage, HostError> {
        self.stage_seeded(def, "docker+firewalld", &|r| {
            virtnet_fake::seed::seed_docker_iptables(r).map_err(seed_err)?;
            virtnet_fake::seed::seed_docker_nft(r).map_err(seed_err)?;
            virtnet_fake::seed::seed_firewalld_nft(r).map_err(seed_err)
        })
    }

    /// A fresh host with the foreign rules `seed` puts there, and the
    /// uplinks of `def`. `seed_key` names what `seed` does (the factory
    /// may reuse a host prepared with the same key and uplinks: see
    /// [`HostFactory::fresh_prepared`]).
    pub(super) fn stage_seeded(
        &self,
        def: &virtnet_core::netxml::NetworkDef,
        seed_key: &str,
        seed: &dyn Fn(&dyn Runner) -> Result<(), HostError>,
    ) -> Result<Stage, HostError> {
        let uplinks = cases::uplinks(def);
        let key = format!("stage {seed_key}; uplinks {}", uplinks.join(" "));
        let (host, baseline) = self.factory.fresh_prepared(&key, &|r| {
            seed(r)?;
            for (i, dev) in uplinks.iter().enumerate() {
                r.run_argv_checked(&["ip", "link", "add", dev, "type", "bridge"])?;
                let mac = format!("02:00:00:00:00:{:02x}", i + 1);
                r.run_argv_checked(&["ip", "link", "set", "dev", dev, "address", &mac])?;
            }
            Ok(())
        })?;
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
        .with_backend(backend)
        .with_layout(self.layout);
        cfg.dnsmasq_binary = Some(tools.dnsmasq_binary);
        cfg.leases_helper = tools.leases_helper;
        Driver::open(cfg)
    }

    pub(super) fn define(&self, stage: &Stage, backend: Backend) -> Result<String, Failure> {
        let d = self
            .driver(stage, None, backend)
            .map_err(|e| Failure::new(format!("driver open: {e}")))?;
        d.define(&self.xml)
            .map(|def| def.name)
            .map_err(|e| Failure::new(format!("define: {e}")))
    }

    pub(super) fn status_path(&self, stage: &Stage) -> PathBuf {
        stage.state_dir.join(format!("{}.xml", self.case.def.name))
    }

    pub(super) fn expectation(&self, backend: Backend) -> Result<Expectation, Failure> {
        cases::expectation_in(
            self.golden,
            cases::UNRELEASED,
            &self.case.name,
            backend,
            self.layout,
        )
        .map_err(|e| Failure::new(format!("golden data: {e}")))
    }

    /// Would the start of this case with `backend` fail on this kernel for
    /// want of act_csum?
    pub(super) fn lacks_csum(&self, backend: Backend) -> Result<bool, Failure> {
        Ok(!self.factory.has_act_csum() && self.expectation(backend)?.needs_act_csum())
    }

    /// Would the start of this case with `backend` fail on this kernel for
    /// want of the tc modules QoS needs (sch_sfq, cls_fw, act_police)?
    pub(super) fn lacks_qos(&self, backend: Backend) -> Result<bool, Failure> {
        Ok(!self.factory.has_qos_modules() && self.expectation(backend)?.needs_qos_modules())
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
    /// private chains of `chains_of` (then of `backend`; for the batched
    /// layout what it keeps instead, see [`crate::kept`]), the bridge, and
    /// the commands of `golden/releases/unreleased/<case>/<backend>.start`
    /// (`<backend>-batched.start`, with their standard input) applied. Firewall sections only. `Ok(None)`: the stream cannot be
    /// applied on this kernel (act_csum).
    pub(super) fn expected_start(
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
            crate::kept::set_up_kept_in(&*r, &self.kept_pairs(&backends))
                .map_err(HostError::Other)?;
        }
        let br = self.case.bridge();
        if !br.is_empty() && stage.host.snapshot()?.section("links").find(&br).is_none() {
            r.run_argv_checked(&["ip", "link", "add", &br, "type", "bridge"])?;
            // Up, like the driver leaves it (an up device shows its default qdisc).
            r.run_argv_checked(&["ip", "link", "set", "dev", &br, "up"])?;
        }
        for cmd in &stream {
            let argv = &cmd.argv;
            let out = r.run(cmd).map_err(|e| {
                HostError::Other(format!("golden command `{}`: {e}", argv.join(" ")))
            })?;
            if !out.success() {
                let is_query = argv.iter().any(|a| a == "show" || a == "list");
                if cases::adds_csum_filter(cmd) && !self.factory.has_act_csum() {
                    return Ok(None);
                }
                if cases::is_qos_module_command(argv) && !self.factory.has_qos_modules() {
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
    pub(super) fn check_nothing_left(
        &self,
        before: &Snapshot,
        after: &Snapshot,
        kept: &Snapshot,
        what: &str,
    ) -> Result<(), Failure> {
        nothing_left(before, after, kept, what)
    }

    pub(super) fn check_status_removal(
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

    pub(super) fn compare(
        &self,
        expected: &Snapshot,
        actual: &Snapshot,
        what: &str,
    ) -> Result<(), Failure> {
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
    pub(super) fn start_checked(
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
        if self.lacks_qos(backend)? {
            let e = match r {
                Ok(()) => return fail("start succeeded on a kernel without the QoS tc modules"),
                Err(e) => e,
            };
            let msg = e.to_string();
            if !(msg.contains(" sfq ") || msg.contains(" fw ") || msg.contains(" police ")) {
                return fail(format!(
                    "start failed, but not for the QoS tc modules: {msg}"
                ));
            }
            let after = stage.host.snapshot()?;
            let kept = self.kept(&[backend])?;
            self.check_nothing_left(&stage.baseline, &after, &kept, "failed start (QoS)")?;
            if self.status_path(stage).exists() {
                return fail("failed start left a status file");
            }
            return Err(Stop::Xfail(XFAIL_QOS.into()));
        }
        r.map_err(|e| Stop::Fail(Failure::new(format!("start: {e}"))))
    }
}

impl Ctx<'_> {
    /// [`Ctx::kept`] for another definition (upgrade sources).
    pub(super) fn kept_for(
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
        crate::kept::kept_snapshot_in(&*stage.host, &self.kept_pairs(backends))
    }
}
