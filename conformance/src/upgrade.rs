//! Upgrade regression (`cargo xtask upgrade-check`): every earlier
//! release must be cleanly taken over by the current driver.
//!
//! A *release state* is what a release leaves on a host after it started
//! one network: its firewall start stream and its status file. They come
//! from
//!
//! * virtnet's own frozen releases, `golden/releases/<release>/<case>/`
//!   (`B.start`, `B.status.xml`; `unreleased` is HEAD's and is checked too);
//! * real libvirt 9.0.0 and 11.3.0 daemons,
//!   `golden/upstream/captures/libvirt-<v>/<case>/<backend>/` (the
//!   `net-start` step of `commands.log`, `1-after-start.status.xml`).
//!
//! For every release state and both configured backends (the same one and
//! a backend switch) [`check`] — the one upgrade check, used by
//! `cargo xtask upgrade-check` (fake and `--real`) and by the matrix's
//! `upgrade:*` scenarios — brings a fresh host of any [`HostFactory`]
//! (the fake, or the real kernel in a fresh network namespace of the
//! worker thread) with foreign software (Docker's iptables rules,
//! firewalld's nft table) to that state — bridge created, private chains
//! present, the stream replayed, the status file installed — starts the
//! current driver (open + reconcile, i.e. a daemon start), and asserts on
//! canonical snapshots that
//!
//! 1. the firewall (nft, iptables, ip6tables, tc) equals, line by line
//!    and in order, what a fresh start by the current driver gives on the
//!    same kind of host, apart from what libvirt keeps on purpose (the
//!    private chains of the backend the old release used stay) and, after
//!    a switch away from nftables, the root qdisc, which libvirt leaves to
//!    the bridge's deletion;
//! 2. the status file the driver saved equals the fresh start's (handles
//!    masked);
//! 3. destroy then leaves the host as it was before the old release ran,
//!    apart from what libvirt keeps on purpose, foreign objects included.
//!
//! On a kernel without act_csum the nftables release states and
//! take-overs by nftables are expected failures. [`plan`] selects the
//! checks (`--filter`, `--backend`, `--stride`), [`run_on`] runs them on
//! worker threads.
//!
//! Limits: the old release's host is recreated from its firewall stream
//! plus the bridge (no addresses, no dnsmasq), so only the firewall and
//! the status file are compared with a fresh start; dnsmasq processes are
//! compared by the destroy check only. A table that is exactly the old
//! backend's private-chain setup is put back to the baseline's before the
//! firewalls are compared in order.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtnet_core::driver::{modes, Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{self, FormatFlags, MacAddr, NetworkDef, Uuid};
use virtnet_core::rules::batched::Layout;
use virtnet_core::store;
use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Runner};

use crate::cases::{layout_suffix, mask_handles, parse_stream_stdin, UpgradeSource};
use crate::checks::{
    fail, fail_diff, nothing_left, run_parallel, verdict_of, CheckResult, Failure, Stop, Verdict,
    XFAIL_ACT_CSUM, XFAIL_QOS,
};
use crate::host::{HostError, HostFactory, Snapshot, TestHost, FIREWALL_SECTIONS};

/// What a release left on a host after starting one network.
#[derive(Debug, Clone)]
pub struct ReleaseState {
    /// `unreleased`, `0.1.0`, `libvirt-11.3.0`, ...
    pub release: String,
    pub case: String,
    /// The backend the release used.
    pub backend: Backend,
    /// The firewall layout it used (libvirt's for libvirt captures).
    pub layout: Layout,
    /// Firewall commands of the start, in order (with their standard
    /// input: the batched layout's batches).
    pub stream: Vec<Cmd>,
    /// The stream sets up the private chains itself (libvirt captures of a
    /// fresh daemon); else they are created first, as they existed when
    /// the stream was recorded.
    pub stream_has_chains: bool,
    /// The status file the release wrote.
    pub status: String,
    /// Where it came from (for messages).
    pub source: PathBuf,
}

/// Releases frozen under `golden/releases` (including `unreleased`).
pub fn our_releases(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join("golden/releases");
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    out.sort();
    Ok(out)
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The release states of one of our releases: per case, backend and
/// layout with both a start stream and a status file (a release frozen
/// before a layout existed simply has no files for it).
pub fn load_ours(root: &Path, release: &str) -> Result<Vec<ReleaseState>, String> {
    let golden = root.join("golden");
    let mut out = Vec::new();
    for case in case_dirs(&golden.join("releases").join(release))? {
        for layout in Layout::ALL {
            for backend in [Backend::Iptables, Backend::Nftables] {
                out.extend(our_state(&golden, release, &case, backend, layout)?);
            }
        }
    }
    Ok(out)
}

/// The names of the case directories under `dir`, sorted.
fn case_dirs(dir: &Path) -> Result<Vec<String>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cases: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    cases.sort();
    Ok(cases)
}

/// What our `release` left for `case` with `backend` and `layout`
/// (`golden/releases/<release>/<case>/<backend>.{start,status.xml}`, or
/// `<backend>-batched.*`), if it froze both files.
fn our_state(
    golden: &Path,
    release: &str,
    case: &str,
    backend: Backend,
    layout: Layout,
) -> Result<Option<ReleaseState>, String> {
    let cdir = golden.join("releases").join(release).join(case);
    let b = format!("{}{}", backend.as_str(), layout_suffix(layout));
    let (start, status) = (
        cdir.join(format!("{b}.start")),
        cdir.join(format!("{b}.status.xml")),
    );
    if !start.exists() || !status.exists() {
        return Ok(None);
    }
    let stream =
        parse_stream_stdin(&read(&start)?).map_err(|e| format!("{}: {e}", start.display()))?;
    Ok(Some(ReleaseState {
        release: release.to_string(),
        case: case.to_string(),
        backend,
        layout,
        stream,
        stream_has_chains: false,
        status: read(&status)?,
        source: cdir,
    }))
}

/// The release states of a libvirt capture set
/// (`golden/upstream/captures/<release>`): the plain per-backend runs.
pub fn load_libvirt(root: &Path, release: &str) -> Result<Vec<ReleaseState>, String> {
    let dir = root.join("golden/upstream/captures").join(release);
    let mut out = Vec::new();
    for case in case_dirs(&dir)? {
        for backend in [Backend::Iptables, Backend::Nftables] {
            let run = dir.join(&case).join(backend.as_str());
            if run.join("commands.log").exists() {
                out.push(libvirt_state(&run, release, &case, backend)?);
            }
        }
    }
    Ok(out)
}

/// What a libvirt daemon left in the capture run `run`
/// (`.../<release>/<case>/<backend>/`): the successful commands of its
/// `net-start` and the status file it wrote.
fn libvirt_state(
    run: &Path,
    release: &str,
    case: &str,
    backend: Backend,
) -> Result<ReleaseState, String> {
    let log = run.join("commands.log");
    let stream = crate::cases::capture_start_stream(&read(&log)?)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    if stream.is_empty() {
        return Err(format!("{}: no net-start commands", log.display()));
    }
    Ok(ReleaseState {
        release: release.to_string(),
        case: case.to_string(),
        backend,
        layout: Layout::Libvirt,
        stream: stream.into_iter().map(Cmd::new).collect(),
        stream_has_chains: true,
        status: read(&run.join("1-after-start.status.xml"))?,
        source: run.to_path_buf(),
    })
}

/// The release state of the matrix's upgrade source `src` for `case`
/// (`golden`: the `golden/` directory).
pub fn source_state(
    golden: &Path,
    case: &str,
    src: &UpgradeSource,
) -> Result<ReleaseState, String> {
    match src {
        UpgradeSource::Frozen {
            release,
            backend,
            layout,
        } => our_state(golden, release, case, *backend, *layout)?.ok_or_else(|| {
            format!("{release}/{case}: no {backend} ({layout} layout) start stream and status file")
        }),
        UpgradeSource::Libvirt {
            version,
            backend,
            dir,
        } => libvirt_state(dir, &format!("libvirt-{version}"), case, *backend),
    }
}

fn driver_config(
    dir: &Path,
    host: &Arc<FakeHost>,
    backend: Backend,
    layout: Layout,
) -> DriverConfig {
    let mut c = DriverConfig::new(
        dir.join("config"),
        dir.join("state"),
        host.clone() as Arc<dyn Runner>,
    )
    .with_backend(backend)
    .with_layout(layout);
    c.dnsmasq_binary = Some("/usr/sbin/dnsmasq".into());
    c
}

/// The libvirt capture sets taken over.
pub const LIBVIRT_RELEASES: [&str; 2] = ["libvirt-9.0.0", "libvirt-11.3.0"];

/// FNV-1a of `seed`, its offset basis varied by `salt`.
fn fnv1a(seed: &str, salt: u8) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ u64::from(salt);
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The status file the current driver writes after starting `xml` with
/// `backend` on a fresh fake host, for the golden set (`B.status.xml`).
/// The UUID and, for bridge networks, the MAC are derived from `ids` (the
/// case name) when the definition has none, so the file is reproducible.
/// `Ok(None)` when the network cannot start (the case has `B.error`).
pub fn fresh_status_file(xml: &str, backend: Backend, ids: &str) -> Result<Option<String>, String> {
    fresh_status_file_in(xml, backend, Layout::Libvirt, ids)
}

/// [`fresh_status_file`] with the firewall layout `layout`
/// (`B-batched.status.xml` for the batched layout).
pub fn fresh_status_file_in(
    xml: &str,
    backend: Backend,
    layout: Layout,
    ids: &str,
) -> Result<Option<String>, String> {
    let dir = crate::props::scratch_dir()?;
    let host = Arc::new(FakeHost::new());
    let d = Driver::open(driver_config(dir.path(), &host, backend, layout))
        .map_err(|e| e.to_string())?;
    let mut def = d.define(xml).map_err(|e| format!("define: {e}"))?;
    let given = netxml::parse(xml).map_err(|e| e.to_string())?;
    if !given.uuid_specified {
        let (a, b) = (fnv1a(ids, 1).to_be_bytes(), fnv1a(ids, 2).to_be_bytes());
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&a);
        u[8..].copy_from_slice(&b);
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        def.uuid = Uuid(u);
    }
    if def.mac.is_some() && given.mac.is_none() {
        let h = fnv1a(ids, 3).to_be_bytes();
        def.mac = Some(MacAddr([0x52, 0x54, 0x00, h[0], h[1], h[2]]));
    }
    let dir2 = crate::props::scratch_dir()?;
    let host2 = Arc::new(FakeHost::new());
    let d2 = Driver::open(driver_config(dir2.path(), &host2, backend, layout))
        .map_err(|e| e.to_string())?;
    // The fake dnsmasq, like the real one, refuses a TFTP root that does not
    // exist: start with a scratch root, then write the case's own root back
    // into the status file (it is data, the same on every machine).
    let inactive = netxml::format(&def, FormatFlags::INACTIVE);
    let mut roots: Vec<String> = def
        .ips
        .iter()
        .filter_map(|ip| ip.tftp_root.clone())
        .collect();
    roots.sort();
    roots.dedup();
    if roots.len() > 1 {
        return Err(format!(
            "{ids}: more than one TFTP root ({}) cannot be restored in the status file",
            roots.join(", ")
        ));
    }
    let tftp = dir2.path().join("tftproot");
    std::fs::create_dir_all(&tftp).map_err(|e| format!("{}: {e}", tftp.display()))?;
    let name = d2
        .define(&crate::cases::localise_xml(&inactive, &tftp))
        .map_err(|e| format!("define: {e}"))?
        .name;
    if d2.start(&name).is_err() {
        return Ok(None);
    }
    let status = read(&dir2.path().join("state").join(format!("{name}.xml")))?;
    Ok(Some(match roots.first() {
        Some(orig) => {
            let local = tftp.to_string_lossy();
            status
                .replace(&format!("root='{local}'"), &format!("root='{orig}'"))
                .replace(&format!("root=\"{local}\""), &format!("root=\"{orig}\""))
        }
        None => status,
    }))
}

// ----------------------------------------------------------------------
// on any host (fake or real kernel): `cargo xtask upgrade-check --real`

/// The id of one check, what `--filter` matches:
/// `release/case/old-backend->new-backend` between libvirt layouts, a
/// batched side written `backend-batched` (e.g.
/// `unreleased/nat-default/nftables-batched->iptables`).
pub fn check_id(old: &ReleaseState, to: Backend) -> String {
    check_id_in(old, to, Layout::Libvirt)
}

/// [`check_id`] of a take-over into the layout `to_layout`.
pub fn check_id_in(old: &ReleaseState, to: Backend, to_layout: Layout) -> String {
    format!(
        "{}/{}/{}{}->{to}{}",
        old.release,
        old.case,
        old.backend,
        layout_suffix(old.layout),
        layout_suffix(to_layout)
    )
}

/// Every release state of every release (ours, then the libvirt captures),
/// in a stable order.
pub fn all_states(root: &Path) -> Result<Vec<ReleaseState>, String> {
    let mut out = Vec::new();
    for r in our_releases(root)? {
        out.extend(load_ours(root, &r)?);
    }
    for r in LIBVIRT_RELEASES {
        out.extend(load_libvirt(root, r)?);
    }
    Ok(out)
}

/// One check of [`run_on`]'s plan.
#[derive(Debug, Clone)]
pub struct PlannedCheck {
    pub state: ReleaseState,
    pub to: Backend,
    /// The layout of the current driver.
    pub to_layout: Layout,
}

impl PlannedCheck {
    pub fn id(&self) -> String {
        check_id_in(&self.state, self.to, self.to_layout)
    }
}

/// The checks of `states` x `backends` whose id contains one of `filters`
/// (all when empty), then about one in `stride` of them (1 = all), picked
/// by a hash of the id: a plain every-N-th would, with the checks listed
/// per state and backend, keep only take-overs by one backend.
/// (The current driver in libvirt's layout; [`plan_in`] for layouts.)
pub fn plan(
    states: &[ReleaseState],
    backends: &[Backend],
    filters: &[String],
    stride: usize,
) -> Vec<PlannedCheck> {
    plan_in(states, backends, &[Layout::Libvirt], filters, stride)
}

/// [`plan`] with the current driver in each of `layouts`: every release
/// state (of any layout) × `backends` × `layouts`, so a state of one
/// layout taken over into the other is a layout switch.
pub fn plan_in(
    states: &[ReleaseState],
    backends: &[Backend],
    layouts: &[Layout],
    filters: &[String],
    stride: usize,
) -> Vec<PlannedCheck> {
    let all: Vec<PlannedCheck> = states
        .iter()
        .flat_map(|s| {
            layouts.iter().flat_map(move |l| {
                backends.iter().map(move |to| PlannedCheck {
                    state: s.clone(),
                    to: *to,
                    to_layout: *l,
                })
            })
        })
        .filter(|c| {
            let id = c.id();
            filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
        })
        .collect();
    let stride = stride.max(1) as u64;
    all.into_iter()
        .filter(|c| stride == 1 || (fnv1a(&c.id(), 0) >> 32).is_multiple_of(stride))
        .collect()
}

/// A finished check of [`run_on`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckOutcome {
    pub id: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub seconds: f64,
}

/// A fresh host of `factory` with the foreign software every check starts
/// from (Docker's iptables rules, firewalld's nft table), the devices the
/// definition expects (uplinks) and, for host-managed modes, the admin's
/// bridge. Returns the host and its baseline.
fn host_stage(
    factory: &dyn HostFactory,
    def: &virtnet_core::netxml::NetworkDef,
    host_bridge: Option<&str>,
) -> Result<(Box<dyn TestHost>, Snapshot), HostError> {
    let mut devs = crate::cases::uplinks(def);
    if let Some(hb) = host_bridge {
        devs.push(hb.to_string());
    }
    devs.sort();
    devs.dedup();
    // Prepared once per device list on the fake (see
    // `HostFactory::fresh_prepared`).
    let key = format!(
        "upgrade docker-iptables+firewalld; devices {}",
        devs.join(" ")
    );
    factory.fresh_prepared(&key, &|r| {
        let seed = |e: virtnet_fake::seed::SeedError| HostError::Other(e.to_string());
        virtnet_fake::seed::seed_docker_iptables(r).map_err(seed)?;
        virtnet_fake::seed::seed_firewalld_nft(r).map_err(seed)?;
        for (i, dev) in devs.iter().enumerate() {
            r.run_argv_checked(&["ip", "link", "add", dev, "type", "bridge"])?;
            let mac = format!("02:00:00:00:00:{:02x}", i + 1);
            r.run_argv_checked(&["ip", "link", "set", "dev", dev, "address", &mac])?;
        }
        Ok(())
    })
}

fn host_driver(
    factory: &dyn HostFactory,
    dir: &Path,
    runner: Arc<dyn Runner>,
    backend: Backend,
    layout: Layout,
) -> Result<Driver, String> {
    let tools = factory.driver_tools();
    let mut c = DriverConfig::new(dir.join("config"), dir.join("state"), runner)
        .with_backend(backend)
        .with_layout(layout);
    c.dnsmasq_binary = Some(tools.dnsmasq_binary);
    c.leases_helper = tools.leases_helper;
    Driver::open(c).map_err(|e| format!("driver open: {e}"))
}

/// The top-level blocks of a ruleset text, each as its lines: `table ...
/// {` to its closing `}` (`nft list ruleset`), `*table` to `COMMIT`
/// (`iptables-save`).
fn blocks(text: &str, end: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    for l in text.lines() {
        cur.push(l.to_string());
        if l == end {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The firewall sections of `snap` without what the old release's backend
/// keeps on purpose: a table (nft, iptables, ip6tables) exactly as the
/// private-chain setup of `kept` left it, and unlike the baseline's table
/// of that name, is put back to the baseline's (or dropped when the
/// baseline has none). With `drop_qdisc_of`, the tc lines of that device
/// are dropped (libvirt leaves the root qdisc a switch away from nftables
/// leaves to the bridge's deletion).
fn firewall_without_kept(
    snap: &Snapshot,
    kept: &Snapshot,
    baseline: &Snapshot,
    drop_qdisc_of: Option<&str>,
) -> Snapshot {
    let mut out = snap.only(FIREWALL_SECTIONS);
    for (sec, end) in [
        ("nft", "}"),
        ("iptables", "COMMIT"),
        ("ip6tables", "COMMIT"),
    ] {
        let base_blocks = blocks(baseline.section(sec), end);
        let kept_blocks = blocks(kept.section(sec), end);
        let text: String = blocks(snap.section(sec), end)
            .into_iter()
            .flat_map(|b| {
                let header = b.first().cloned().unwrap_or_default();
                let base = base_blocks.iter().find(|x| x.first() == Some(&header));
                if kept_blocks.contains(&b) && base != Some(&b) {
                    base.cloned().unwrap_or_default()
                } else {
                    b
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        out.sections.insert(sec.into(), text);
    }
    if let Some(dev) = drop_qdisc_of {
        let pat = format!("dev {dev} ");
        let pre = format!("filter {dev}:");
        let text: String = snap
            .section("tc")
            .lines()
            .filter(|l| !l.contains(&pat) && !l.starts_with(&pre))
            .map(|l| format!("{l}\n"))
            .collect();
        out.sections.insert("tc".into(), text);
    }
    out
}

/// The baseline of a fresh host with the private chains of `backends` set
/// up (what libvirt keeps on purpose after a destroy), firewall sections.
/// (The caller leaves out backends that never set them up: a network
/// without firewall rules does not.)
fn host_kept(
    factory: &dyn HostFactory,
    def: &virtnet_core::netxml::NetworkDef,
    host_bridge: Option<&str>,
    kept: &[(Backend, Layout)],
) -> Result<Snapshot, HostError> {
    let (host, _) = host_stage(factory, def, host_bridge)?;
    crate::kept::kept_snapshot_in(&*host, kept)
}

/// [`check`] as a [`CheckOutcome`].
pub fn check_on(factory: &dyn HostFactory, old: &ReleaseState, to: Backend) -> CheckOutcome {
    check_on_in(factory, old, to, Layout::Libvirt)
}

/// [`check_in`] as a [`CheckOutcome`].
pub fn check_on_in(
    factory: &dyn HostFactory,
    old: &ReleaseState,
    to: Backend,
    to_layout: Layout,
) -> CheckOutcome {
    let started = std::time::Instant::now();
    let verdict = verdict_of(check_in(factory, old, to, to_layout));
    CheckOutcome {
        id: check_id_in(old, to, to_layout),
        verdict,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The one upgrade check, on any host (`factory`: the fake, or the real
/// kernel in a fresh network namespace of the calling thread per host):
/// `old` taken over by the current driver configured with `to`. The
/// firewall after the take-over equals a fresh start's (nft tables,
/// iptables-save and tc text, in order, apart from what the old backend
/// keeps on purpose), the saved status file equals a fresh start's
/// (handles masked), and destroy leaves the baseline apart from what is
/// kept on purpose. On a kernel without act_csum a release state whose
/// stream needs the csum filter, or a take-over by nftables (whose reload
/// adds it), is an expected failure, as it is for libvirt.
pub fn check(factory: &dyn HostFactory, old: &ReleaseState, to: Backend) -> CheckResult<()> {
    check_in(factory, old, to, Layout::Libvirt)
}

/// [`check`] with the current driver in the firewall layout `to_layout`:
/// with `old` of the other layout, a layout switch (the saved plan removes
/// what the old layout added, then the new layout adds its rules; the
/// fresh start it is compared with is of the new layout).
pub fn check_in(
    factory: &dyn HostFactory,
    old: &ReleaseState,
    to: Backend,
    to_layout: Layout,
) -> CheckResult<()> {
    let dir = crate::props::scratch_dir().map_err(Failure::new)?;
    // dnsmasq writes its pid file as root and may then drop privileges.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    }
    // The TFTP root of a libvirt status file existed on the capture
    // machine only; a real dnsmasq (restarted by reconcile) refuses a
    // missing one. The fresh start uses the same definition, so the same
    // path.
    let tftp = dir.path().join("tftproot");
    std::fs::create_dir_all(&tftp).map_err(|e| Failure::new(format!("{}: {e}", tftp.display())))?;
    let status_text = crate::cases::localise_xml(&old.status, &tftp);
    let def = store::parse_status(&status_text, &old.source)
        .map_err(|e| Failure::new(e.to_string()))?
        .def;
    let Some(bridge) = def.bridge_name().map(str::to_string) else {
        return fail(format!(
            "{}: status file without a bridge",
            old.source.display()
        ));
    };
    // Host-managed modes (bridge, macvtap, hostdev) use the admin's
    // bridge: it exists before and after; virtual modes own theirs.
    let own_bridge = modes::ops_for(def.forward_mode()).reload_firewall;
    let net = Network {
        def: &def,
        bridge: &bridge,
        host_bridge: (!own_bridge).then_some(bridge.as_str()),
        to_layout,
    };
    let taken = take_over(factory, old, to, &net, &status_text, &dir.path().join("up"))?;
    let fresh = fresh_start(factory, to, &net, &dir.path().join("fresh"))?;
    if fresh.baseline.only(FIREWALL_SECTIONS) != taken.baseline.only(FIREWALL_SECTIONS) {
        return fail("two fresh hosts have different baselines");
    }
    compare(factory, old, to, &net, &taken, &fresh)
}

/// The network of a release state.
struct Network<'a> {
    def: &'a NetworkDef,
    bridge: &'a str,
    /// The admin's bridge of a host-managed mode (else the network owns
    /// its bridge).
    host_bridge: Option<&'a str>,
    /// The layout of the current driver.
    to_layout: Layout,
}

/// Host snapshots and status file of one run of the current driver.
struct Run {
    baseline: Snapshot,
    /// After the take-over (or the fresh start).
    started: Snapshot,
    status: String,
    /// After the destroy that followed (the take-over only).
    destroyed: Snapshot,
}

/// A fresh host brought to the state `old` left it in (bridge, private
/// chains, its start stream, its status file in `dir/state`), then taken
/// over by the current driver with `to` (open + reconcile: a daemon
/// start), then the network destroyed.
fn take_over(
    factory: &dyn HostFactory,
    old: &ReleaseState,
    to: Backend,
    net: &Network,
    status_text: &str,
    dir: &Path,
) -> CheckResult<Run> {
    let lacks_csum = !factory.has_act_csum();
    // A network with <bandwidth> on a kernel without sch_sfq, cls_fw or
    // act_police: its QoS cannot exist here, and the take-over's reconcile
    // (which puts back QoS that is gone) fails as libvirt's start would.
    if net.def.bandwidth.is_some() && !factory.has_qos_modules() {
        return Err(Stop::Xfail(XFAIL_QOS.into()));
    }
    let (host, baseline) = host_stage(factory, net.def, net.host_bridge)?;
    let runner = host.runner();
    if net.host_bridge.is_none() {
        let mac = net.def.mac.map(|m| m.to_string());
        let mut add = vec!["ip", "link", "add", "name", net.bridge];
        if let Some(mac) = &mac {
            add.extend(["address", mac.as_str()]);
        }
        add.extend(["type", "bridge"]);
        runner.run_argv_checked(&add)?;
        runner.run_argv_checked(&["ip", "link", "set", "dev", net.bridge, "up"])?;
    }
    if !old.stream_has_chains {
        crate::kept::set_up_kept_in(&*runner, &[(old.backend, old.layout)])
            .map_err(Failure::new)?;
    }
    for cmd in &old.stream {
        if let Err(e) = runner.run_checked(cmd) {
            if lacks_csum && crate::cases::adds_csum_filter(cmd) {
                return Err(Stop::Xfail(format!(
                    "expected failure: kernel lacks act_csum, so the {} state (its DHCP checksum filter) cannot exist here",
                    old.backend
                )));
            }
            return fail(format!(
                "replaying the {} start stream: {}",
                old.release,
                HostError::from(e)
            ));
        }
    }
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| Failure::new(format!("{}: {e}", state_dir.display())))?;
    let status_path = state_dir.join(format!("{}.xml", net.def.name));
    std::fs::write(&status_path, status_text)
        .map_err(|e| Failure::new(format!("{}: {e}", status_path.display())))?;

    let driver =
        host_driver(factory, dir, runner.clone(), to, net.to_layout).map_err(Failure::new)?;
    if !driver.reports().is_empty() {
        return fail(format!("driver open reported: {:?}", driver.reports()));
    }
    let report = driver.reconcile();
    let problem = match &report {
        Ok(r) => r.problems.join("; "),
        Err(e) => e.to_string(),
    };
    if lacks_csum && to == Backend::Nftables && problem.contains("action csum") {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let report = report.map_err(|e| Failure::new(format!("reconcile: {e}")))?;
    let reloaded: &[String] = if net.host_bridge.is_none() {
        std::slice::from_ref(&net.def.name)
    } else {
        &[]
    };
    if report.reloaded != reloaded || !report.problems.is_empty() {
        return fail(format!("reconcile: {report:?}"));
    }
    let started = host.snapshot()?;
    let status = read(&status_path).map_err(Failure::new)?;
    driver
        .destroy(&net.def.name)
        .map_err(|e| Failure::new(format!("destroy: {e}")))?;
    let destroyed = host.snapshot()?;
    Ok(Run {
        baseline,
        started,
        status,
        destroyed,
    })
}

/// A fresh start of the network by the current driver with `to` on a
/// fresh host (driver state in `dir`).
fn fresh_start(
    factory: &dyn HostFactory,
    to: Backend,
    net: &Network,
    dir: &Path,
) -> CheckResult<Run> {
    let (host, baseline) = host_stage(factory, net.def, net.host_bridge)?;
    let driver =
        host_driver(factory, dir, host.runner(), to, net.to_layout).map_err(Failure::new)?;
    let name = driver
        .define(&netxml::format(net.def, FormatFlags::INACTIVE))
        .map_err(|e| Failure::new(format!("define (fresh): {e}")))?
        .name;
    driver
        .start(&name)
        .map_err(|e| Failure::new(format!("fresh start with {to}: {e}")))?;
    let started = host.snapshot()?;
    let status = read(&dir.join("state").join(format!("{name}.xml"))).map_err(Failure::new)?;
    Ok(Run {
        baseline,
        destroyed: started.clone(),
        started,
        status,
    })
}

/// The three assertions of [`check`] on the take-over's and the fresh
/// start's runs.
fn compare(
    factory: &dyn HostFactory,
    old: &ReleaseState,
    to: Backend,
    net: &Network,
    taken: &Run,
    fresh: &Run,
) -> CheckResult<()> {
    // The old release's chains: set up by its stream, or before it (they
    // existed when the stream was recorded); the current driver sets up
    // its own only for a network with firewall rules.
    let has_rules = virtnet_core::rules::has_firewall_rules(net.def);
    let old_chains: Vec<(Backend, Layout)> = (has_rules || !old.stream_has_chains)
        .then_some((old.backend, old.layout))
        .into_iter()
        .collect();
    let mut both = old_chains.clone();
    if has_rules {
        both.push((to, net.to_layout));
    }
    let kept_old = host_kept(factory, net.def, net.host_bridge, &old_chains)?;
    let kept_both = host_kept(factory, net.def, net.host_bridge, &both)?;

    let leaves_qdisc =
        (old.backend == Backend::Nftables && to != Backend::Nftables).then_some(net.bridge);
    let got = firewall_without_kept(&taken.started, &kept_old, &taken.baseline, leaves_qdisc);
    let want = firewall_without_kept(&fresh.started, &kept_old, &taken.baseline, leaves_qdisc);
    if got != want {
        return fail_diff(
            format!(
                "firewall after the take-over of {} ({}) differs from a fresh start with {to}",
                old.release, old.backend
            ),
            want.diff(&got, "fresh start", "after upgrade"),
        );
    }
    let (ours, theirs) = (mask_handles(&taken.status), mask_handles(&fresh.status));
    if ours != theirs {
        return fail_diff(
            "status file after the upgrade differs from a fresh start's",
            virtnet_fake::diff_text(&theirs, &ours, "fresh start", "after upgrade"),
        );
    }
    nothing_left(
        &taken.baseline,
        &taken.destroyed,
        &kept_both,
        "destroy after upgrade",
    )?;
    Ok(())
}

/// Runs `checks` on `jobs` threads (each real host is a fresh network
/// namespace of its worker thread); `progress(outcome, done, total)` as
/// each finishes. Outcomes in the order of `checks`.
pub fn run_on(
    factory: &dyn HostFactory,
    checks: &[PlannedCheck],
    jobs: usize,
    progress: &(dyn Fn(&CheckOutcome, usize, usize) + Sync),
) -> Vec<CheckOutcome> {
    run_checks(checks, jobs, progress, &|c: &PlannedCheck| {
        check_on_in(factory, &c.state, c.to, c.to_layout)
    })
}

/// Runs `one` for each of `checks` on `jobs` threads, a panic becoming a
/// failure; `progress(outcome, done, total)` as each finishes. Outcomes
/// in the order of `checks`.
pub fn run_checks(
    checks: &[PlannedCheck],
    jobs: usize,
    progress: &(dyn Fn(&CheckOutcome, usize, usize) + Sync),
    one: &(dyn Fn(&PlannedCheck) -> CheckOutcome + Sync),
) -> Vec<CheckOutcome> {
    let order: Vec<usize> = (0..checks.len()).collect();
    let on_panic = |i: usize, message: String| CheckOutcome {
        id: checks[i].id(),
        verdict: Verdict::Fail {
            message: format!("panicked: {message}"),
            diff: String::new(),
        },
        seconds: 0.0,
    };
    run_parallel(
        &order,
        checks.len(),
        jobs,
        &|i| Some(one(&checks[i])),
        &on_panic,
        progress,
    )
}
