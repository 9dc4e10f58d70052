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
//! a backend switch) [`check`] brings a fresh fake host with foreign
//! software (Docker's iptables rules, firewalld's nft table) to that state
//! — bridge created, private chains present, the stream replayed, the
//! status file installed — starts the current driver (open + reconcile,
//! i.e. a daemon start), and asserts
//!
//! 1. the firewall (nft, iptables, ip6tables, tc) equals, object by object
//!    and in order, what a fresh start by the current driver gives on the
//!    same kind of host, apart from what libvirt keeps on purpose (the
//!    private chains of the backend the old release used stay) and, after
//!    a switch away from nftables, the root qdisc, which libvirt leaves to
//!    the bridge's deletion;
//! 2. the status file the driver saved equals the fresh start's;
//! 3. destroy then leaves the host as it was before the old release ran,
//!    apart from what libvirt keeps on purpose
//!    ([`crate::props::view::kept_on_purpose`]), foreign objects included.
//!
//! [`check_on`] is the same check on any host (the real kernel with
//! `--real`: every host a fresh network namespace of the worker thread),
//! on canonical snapshots; on a kernel without act_csum the nftables
//! release states and take-overs by nftables are expected failures.
//! [`plan`] selects the checks (`--filter`, `--backend`, `--stride`),
//! [`run_checks`] runs them on worker threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtnet_core::driver::{modes, Driver, DriverConfig};
use virtnet_core::firewall::{parse_stream, Backend};
use virtnet_core::netxml::{self, FormatFlags, MacAddr, Uuid};
use virtnet_core::rules::ChainInitState;
use virtnet_core::store;
use virtnet_fake::{FakeHost, HostState};
use virtnet_runner::{Cmd, Runner};

use crate::checks::{
    fail, fail_diff, nothing_left, verdict_of, Failure, Stop, Verdict, XFAIL_ACT_CSUM,
};
use crate::host::{HostError, HostFactory, Snapshot, TestHost, FIREWALL_SECTIONS};
use crate::props::view::{self, Item};

/// What a release left on a host after starting one network.
#[derive(Debug, Clone)]
pub struct ReleaseState {
    /// `unreleased`, `0.1.0`, `libvirt-11.3.0`, ...
    pub release: String,
    pub case: String,
    /// The backend the release used.
    pub backend: Backend,
    /// Firewall commands of the start, in order.
    pub stream: Vec<Vec<String>>,
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

/// The release states of one of our releases: per case and backend with
/// both a start stream and a status file.
pub fn load_ours(root: &Path, release: &str) -> Result<Vec<ReleaseState>, String> {
    let dir = root.join("golden/releases").join(release);
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cases: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut out = Vec::new();
    for cdir in cases {
        let case = cdir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for backend in [Backend::Iptables, Backend::Nftables] {
            let b = backend.as_str();
            let (start, st) = (
                cdir.join(format!("{b}.start")),
                cdir.join(format!("{b}.status.xml")),
            );
            if !start.exists() || !st.exists() {
                continue;
            }
            let stream =
                parse_stream(&read(&start)?).map_err(|e| format!("{}: {e}", start.display()))?;
            out.push(ReleaseState {
                release: release.to_string(),
                case: case.clone(),
                backend,
                stream,
                stream_has_chains: false,
                status: read(&st)?,
                source: cdir.clone(),
            });
        }
    }
    Ok(out)
}

/// The release states of a libvirt capture set
/// (`golden/upstream/captures/<release>`): the plain per-backend runs.
pub fn load_libvirt(root: &Path, release: &str) -> Result<Vec<ReleaseState>, String> {
    let dir = root.join("golden/upstream/captures").join(release);
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cases: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut out = Vec::new();
    for cdir in cases {
        let case = cdir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for backend in [Backend::Iptables, Backend::Nftables] {
            let run = cdir.join(backend.as_str());
            let log = run.join("commands.log");
            if !log.exists() {
                continue;
            }
            let stream = crate::cases::capture_start_stream(&read(&log)?)
                .map_err(|e| format!("{}: {e}", log.display()))?;
            if stream.is_empty() {
                return Err(format!("{}: no net-start commands", log.display()));
            }
            out.push(ReleaseState {
                release: release.to_string(),
                case: case.clone(),
                backend,
                stream,
                stream_has_chains: true,
                status: read(&run.join("1-after-start.status.xml"))?,
                source: run,
            });
        }
    }
    Ok(out)
}

/// A fake host with the foreign software every check starts from.
fn seeded_host() -> Result<Arc<FakeHost>, String> {
    let host = Arc::new(FakeHost::new());
    virtnet_fake::seed::seed_docker_iptables(&*host).map_err(|e| e.to_string())?;
    virtnet_fake::seed::seed_firewalld_nft(&*host).map_err(|e| e.to_string())?;
    Ok(host)
}

fn driver_config(dir: &Path, host: &Arc<FakeHost>, backend: Backend) -> DriverConfig {
    let mut c = DriverConfig::new(
        dir.join("config"),
        dir.join("state"),
        host.clone() as Arc<dyn Runner>,
    )
    .with_backend(backend);
    c.dnsmasq_binary = Some("/usr/sbin/dnsmasq".into());
    c
}

fn run_ok(host: &FakeHost, argv: &[String]) -> Result<(), String> {
    let out = host
        .run(&Cmd::new(argv.iter().cloned()))
        .map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
    if !out.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            out.stderr.trim_end()
        ));
    }
    Ok(())
}

fn firewall(items: &[Item]) -> Vec<Item> {
    items
        .iter()
        .filter(|i| {
            matches!(
                i,
                Item::NftTable { .. }
                    | Item::NftChain { .. }
                    | Item::NftRule { .. }
                    | Item::NftSet { .. }
                    | Item::XtTable { .. }
                    | Item::XtChain { .. }
                    | Item::XtRule { .. }
                    | Item::TcQdisc { .. }
                    | Item::TcFilter { .. }
            )
        })
        .cloned()
        .collect()
}

/// nft rule handles in a status file's removal plan replaced by `N`: the
/// kernel never reuses a handle, so a network whose rules were reloaded
/// has other handles than a fresh start (the plan's match with the host
/// is checked by the destroy that follows).
fn mask_handles(status: &str) -> String {
    let mut out = String::new();
    let mut after_handle = false;
    for line in status.split_inclusive('\n') {
        let t = line.trim();
        if after_handle && t.starts_with("<item>") && t.ends_with("</item>") {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(indent);
            out.push_str("<item>N</item>");
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
        after_handle = t == "<item>handle</item>";
    }
    out
}

/// A fresh start of `def` by the current driver with `backend` on a
/// seeded host (with the host bridge `host_bridge`, if any): (host state,
/// status file text).
fn fresh_start(
    xml: &str,
    backend: Backend,
    host_bridge: Option<&str>,
) -> Result<(HostState, String), String> {
    let dir = crate::props::scratch_dir()?;
    let host = seeded_host()?;
    if let Some(br) = host_bridge {
        run_ok(
            &host,
            &["ip", "link", "add", "name", br, "type", "bridge"].map(String::from),
        )?;
    }
    let d = Driver::open(driver_config(dir.path(), &host, backend)).map_err(|e| e.to_string())?;
    let name = d.define(xml).map_err(|e| format!("define: {e}"))?.name;
    d.start(&name)
        .map_err(|e| format!("fresh start with {backend}: {e}"))?;
    let st = read(&dir.path().join("state").join(format!("{name}.xml")))?;
    Ok((host.state(), st))
}

/// One upgrade check: `old` taken over by the current driver configured
/// with `to`. `Err` says what differs.
pub fn check(old: &ReleaseState, to: Backend) -> Result<(), String> {
    // The TFTP root a status file names existed where that release ran;
    // dnsmasq (the fake's too) refuses a missing one: use a scratch root.
    let dir = crate::props::scratch_dir()?;
    let tftp = dir.path().join("tftproot");
    std::fs::create_dir_all(&tftp).map_err(|e| format!("{}: {e}", tftp.display()))?;
    let status_text = crate::cases::localise_xml(&old.status, &tftp);
    let st = store::parse_status(&status_text, &old.source).map_err(|e| e.to_string())?;
    let def = &st.def;
    let name = def.name.clone();
    let br = def
        .bridge_name()
        .map(str::to_string)
        .ok_or_else(|| format!("{}: status file without a bridge", old.source.display()))?;
    let host = seeded_host()?;
    // Host-managed modes (bridge, macvtap, hostdev) use the admin's
    // bridge: it exists before and after; virtual modes own theirs.
    let own_bridge = modes::ops_for(def.forward_mode()).reload_firewall;
    let host_bridge = (!own_bridge).then_some(br.as_str());
    if let Some(hb) = host_bridge {
        run_ok(
            &host,
            &["ip", "link", "add", "name", hb, "type", "bridge"].map(String::from),
        )?;
    }
    let baseline = host.state();

    // The host as the old release left it.
    let mut add = vec![
        "ip".to_string(),
        "link".into(),
        "add".into(),
        "name".into(),
        br.clone(),
    ];
    if let Some(mac) = def.mac {
        add.extend(["address".to_string(), mac.to_string()]);
    }
    add.extend(["type".to_string(), "bridge".into()]);
    if own_bridge {
        run_ok(&host, &add)?;
        run_ok(
            &host,
            &["ip", "link", "set", "dev", &br, "up"].map(String::from),
        )?;
    }
    if !old.stream_has_chains {
        ChainInitState::new()
            .setup(old.backend, &*host, false)
            .map_err(|e| format!("private chains: {e}"))?;
    }
    for argv in &old.stream {
        run_ok(&host, argv)
            .map_err(|e| format!("replaying the {} start stream: {e}", old.release))?;
    }
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let spath = state_dir.join(format!("{name}.xml"));
    std::fs::write(&spath, &status_text).map_err(|e| format!("{}: {e}", spath.display()))?;

    // The current daemon starts.
    let d = Driver::open(driver_config(dir.path(), &host, to))
        .map_err(|e| format!("driver open: {e}"))?;
    if !d.reports().is_empty() {
        return Err(format!("driver open reported: {:?}", d.reports()));
    }
    let rep = d.reconcile().map_err(|e| format!("reconcile: {e}"))?;
    let reloaded: &[String] = if own_bridge {
        std::slice::from_ref(&name)
    } else {
        &[]
    };
    if rep.reloaded != reloaded || !rep.problems.is_empty() {
        return Err(format!("reconcile: {rep:?}"));
    }

    // 1. Same firewall as a fresh start by the current driver.
    let (fresh_state, fresh_status) =
        fresh_start(&netxml::format(def, FormatFlags::INACTIVE), to, host_bridge)?;
    let (got, want) = (
        firewall(&view::items(&host.state())),
        firewall(&view::items(&fresh_state)),
    );
    let leaves_qdisc = old.backend == Backend::Nftables && to != Backend::Nftables;
    let cmp = |items: &[Item]| -> Vec<Item> {
        view::without_kept(items)
            .into_iter()
            .filter(|i| !(leaves_qdisc && matches!(i, Item::TcQdisc { .. })))
            .collect()
    };
    if cmp(&got) != cmp(&want) {
        return Err(format!(
            "firewall after the upgrade differs from a fresh start:\n{}",
            view::diff(&cmp(&want), &cmp(&got))
        ));
    }
    let lost = view::missing(&view::kept(&want), &view::kept(&got));
    if !lost.is_empty() {
        return Err(format!(
            "private chains of a fresh start missing after the upgrade: {lost:?}"
        ));
    }
    // 2. Same status file.
    let ours = mask_handles(&read(&spath)?);
    let fresh_status = mask_handles(&fresh_status);
    if ours != fresh_status {
        return Err(format!(
            "status file after the upgrade differs from a fresh start's:\n{}",
            virtnet_fake::diff_text(&fresh_status, &ours, "fresh start", "after upgrade")
        ));
    }
    // 3. Destroy leaves the baseline.
    d.destroy(&name).map_err(|e| format!("destroy: {e}"))?;
    view::same_apart_from_kept(&baseline, &host.state()).map_err(|e| format!("after destroy: {e}"))
}

/// The libvirt capture sets taken over.
pub const LIBVIRT_RELEASES: [&str; 2] = ["libvirt-9.0.0", "libvirt-11.3.0"];

fn fnv(seed: &str, salt: u8) -> u64 {
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
    let dir = crate::props::scratch_dir()?;
    let host = Arc::new(FakeHost::new());
    let d = Driver::open(driver_config(dir.path(), &host, backend)).map_err(|e| e.to_string())?;
    let mut def = d.define(xml).map_err(|e| format!("define: {e}"))?;
    if !netxml::parse(xml)
        .map_err(|e| e.to_string())?
        .uuid_specified
    {
        let (a, b) = (fnv(ids, 1).to_be_bytes(), fnv(ids, 2).to_be_bytes());
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&a);
        u[8..].copy_from_slice(&b);
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        def.uuid = Uuid(u);
    }
    if def.mac.is_some() && !xml.contains("<mac ") {
        let h = fnv(ids, 3).to_be_bytes();
        def.mac = Some(MacAddr([0x52, 0x54, 0x00, h[0], h[1], h[2]]));
    }
    let dir2 = crate::props::scratch_dir()?;
    let host2 = Arc::new(FakeHost::new());
    let d2 =
        Driver::open(driver_config(dir2.path(), &host2, backend)).map_err(|e| e.to_string())?;
    // The fake dnsmasq, like the real one, refuses a TFTP root that does not
    // exist: start with a scratch root, then write the case's own root back
    // into the status file (it is data, the same on every machine).
    let inactive = netxml::format(&def, FormatFlags::INACTIVE);
    let roots = crate::cases::tftp_roots(&inactive);
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
/// `release/case/old-backend->new-backend`.
pub fn check_id(old: &ReleaseState, to: Backend) -> String {
    format!("{}/{}/{}->{to}", old.release, old.case, old.backend)
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
}

impl PlannedCheck {
    pub fn id(&self) -> String {
        check_id(&self.state, self.to)
    }
}

/// The checks of `states` x `backends` whose id contains one of `filters`
/// (all when empty), then about one in `stride` of them (1 = all), picked
/// by a hash of the id: a plain every-N-th would, with the checks listed
/// per state and backend, keep only take-overs by one backend.
pub fn plan(
    states: &[ReleaseState],
    backends: &[Backend],
    filters: &[String],
    stride: usize,
) -> Vec<PlannedCheck> {
    let all: Vec<PlannedCheck> = states
        .iter()
        .flat_map(|s| {
            backends.iter().map(|to| PlannedCheck {
                state: s.clone(),
                to: *to,
            })
        })
        .filter(|c| {
            let id = c.id();
            filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
        })
        .collect();
    let stride = stride.max(1) as u64;
    all.into_iter()
        .filter(|c| stride == 1 || (fnv(&c.id(), 0) >> 32).is_multiple_of(stride))
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

fn host_run_ok(r: &dyn Runner, argv: &[String]) -> Result<(), HostError> {
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    crate::host::run_text(r, &words).map(|_| ())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
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
    let host = factory.fresh()?;
    let r = host.runner();
    let seed = |e: virtnet_fake::seed::SeedError| HostError::Other(e.to_string());
    virtnet_fake::seed::seed_docker_iptables(&*r).map_err(seed)?;
    virtnet_fake::seed::seed_firewalld_nft(&*r).map_err(seed)?;
    let mut devs = crate::cases::uplinks(def);
    if let Some(hb) = host_bridge {
        devs.push(hb.to_string());
    }
    devs.sort();
    devs.dedup();
    for (i, dev) in devs.iter().enumerate() {
        host_run_ok(&*r, &strs(&["ip", "link", "add", dev, "type", "bridge"]))?;
        let mac = format!("02:00:00:00:00:{:02x}", i + 1);
        host_run_ok(
            &*r,
            &strs(&["ip", "link", "set", "dev", dev, "address", &mac]),
        )?;
    }
    let baseline = host.snapshot()?;
    Ok((host, baseline))
}

fn host_driver(
    factory: &dyn HostFactory,
    dir: &Path,
    runner: Arc<dyn Runner>,
    backend: Backend,
) -> Result<Driver, String> {
    let tools = factory.driver_tools();
    let mut c =
        DriverConfig::new(dir.join("config"), dir.join("state"), runner).with_backend(backend);
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
    backends: &[Backend],
) -> Result<Snapshot, HostError> {
    let (host, _) = host_stage(factory, def, host_bridge)?;
    let r = host.runner();
    view::set_up_kept(&*r, backends).map_err(HostError::Other)?;
    Ok(host.snapshot()?.only(FIREWALL_SECTIONS))
}

/// [`check`] on any host (`factory`: the fake, or the real kernel in a
/// fresh network namespace of the calling thread per host). The same
/// three assertions on canonical snapshots instead of the fake's objects:
/// the firewall after the take-over equals a fresh start's (nft tables,
/// iptables-save and tc text, in order, apart from what the old backend
/// keeps on purpose), the saved status file equals a fresh start's
/// (handles masked), and destroy leaves the baseline apart from the kept
/// private chains. On a kernel without act_csum a release state whose
/// stream needs the csum filter, or a take-over by nftables (whose reload
/// adds it), is an expected failure, as it is for libvirt.
pub fn check_on(factory: &dyn HostFactory, old: &ReleaseState, to: Backend) -> CheckOutcome {
    let t0 = std::time::Instant::now();
    let verdict = verdict_of(check_on_inner(factory, old, to));
    CheckOutcome {
        id: check_id(old, to),
        verdict,
        seconds: t0.elapsed().as_secs_f64(),
    }
}

fn check_on_inner(factory: &dyn HostFactory, old: &ReleaseState, to: Backend) -> Result<(), Stop> {
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
    let st =
        store::parse_status(&status_text, &old.source).map_err(|e| Failure::new(e.to_string()))?;
    let def = &st.def;
    let name = def.name.clone();
    let Some(br) = def.bridge_name().map(str::to_string) else {
        return fail(format!(
            "{}: status file without a bridge",
            old.source.display()
        ));
    };
    let own_bridge = modes::ops_for(def.forward_mode()).reload_firewall;
    let host_bridge = (!own_bridge).then_some(br.as_str());
    let lacks_csum = !factory.has_act_csum();

    // 1. The host as the old release left it.
    let (host, baseline) = host_stage(factory, def, host_bridge)?;
    let r = host.runner();
    if own_bridge {
        let mut add = strs(&["ip", "link", "add", "name", &br]);
        if let Some(mac) = def.mac {
            add.extend(["address".to_string(), mac.to_string()]);
        }
        add.extend(strs(&["type", "bridge"]));
        host_run_ok(&*r, &add)?;
        host_run_ok(&*r, &strs(&["ip", "link", "set", "dev", &br, "up"]))?;
    }
    if !old.stream_has_chains {
        ChainInitState::new()
            .setup(old.backend, &*r, false)
            .map_err(|e| Failure::new(format!("private chains: {e}")))?;
    }
    for argv in &old.stream {
        if let Err(e) = host_run_ok(&*r, argv) {
            if lacks_csum && argv.iter().any(|a| a == "csum") {
                return Err(Stop::Xfail(format!(
                    "expected failure: kernel lacks act_csum, so the {} state (its DHCP checksum filter) cannot exist here",
                    old.backend
                )));
            }
            return fail(format!("replaying the {} start stream: {e}", old.release));
        }
    }
    let state_dir = dir.path().join("up/state");
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| Failure::new(format!("{}: {e}", state_dir.display())))?;
    let spath = state_dir.join(format!("{name}.xml"));
    std::fs::write(&spath, &status_text)
        .map_err(|e| Failure::new(format!("{}: {e}", spath.display())))?;

    // 2. The current daemon starts: open + reconcile.
    let d = host_driver(factory, &dir.path().join("up"), r.clone(), to).map_err(Failure::new)?;
    if !d.reports().is_empty() {
        return fail(format!("driver open reported: {:?}", d.reports()));
    }
    let rep = d.reconcile();
    let problem = match &rep {
        Ok(r) => r.problems.join("; "),
        Err(e) => e.to_string(),
    };
    if lacks_csum && to == Backend::Nftables && problem.contains("action csum") {
        return Err(Stop::Xfail(XFAIL_ACT_CSUM.into()));
    }
    let rep = rep.map_err(|e| Failure::new(format!("reconcile: {e}")))?;
    let reloaded: &[String] = if own_bridge {
        std::slice::from_ref(&name)
    } else {
        &[]
    };
    if rep.reloaded != reloaded || !rep.problems.is_empty() {
        return fail(format!("reconcile: {rep:?}"));
    }
    let upgraded = host.snapshot()?;
    let upgraded_status = read(&spath).map_err(Failure::new)?;
    d.destroy(&name)
        .map_err(|e| Failure::new(format!("destroy: {e}")))?;
    let destroyed = host.snapshot()?;
    drop(d);
    drop(host);

    // 3. A fresh start by the current driver on a fresh host.
    let (fhost, fbase) = host_stage(factory, def, host_bridge)?;
    let fd = host_driver(factory, &dir.path().join("fresh"), fhost.runner(), to)
        .map_err(Failure::new)?;
    let fname = fd
        .define(&netxml::format(def, FormatFlags::INACTIVE))
        .map_err(|e| Failure::new(format!("define (fresh): {e}")))?
        .name;
    fd.start(&fname)
        .map_err(|e| Failure::new(format!("fresh start with {to}: {e}")))?;
    let fresh = fhost.snapshot()?;
    let fresh_status =
        read(&dir.path().join("fresh/state").join(format!("{fname}.xml"))).map_err(Failure::new)?;
    drop(fd);
    drop(fhost);
    if fbase.only(FIREWALL_SECTIONS) != baseline.only(FIREWALL_SECTIONS) {
        return fail("two fresh hosts have different baselines");
    }
    // The old release's chains: set up by its stream, or before it (they
    // existed when the stream was recorded); the current driver sets up
    // its own only for a network with firewall rules.
    let has_rules = virtnet_core::rules::has_firewall_rules(def);
    let old_chains: Vec<Backend> = (has_rules || !old.stream_has_chains)
        .then_some(old.backend)
        .into_iter()
        .collect();
    let mut both = old_chains.clone();
    if has_rules {
        both.push(to);
    }
    let kept_old = host_kept(factory, def, host_bridge, &old_chains)?;
    let kept_both = host_kept(factory, def, host_bridge, &both)?;

    let leaves_qdisc =
        (old.backend == Backend::Nftables && to != Backend::Nftables).then_some(br.as_str());
    let got = firewall_without_kept(&upgraded, &kept_old, &baseline, leaves_qdisc);
    let want = firewall_without_kept(&fresh, &kept_old, &baseline, leaves_qdisc);
    if got != want {
        return fail_diff(
            format!(
                "firewall after the take-over of {} ({}) differs from a fresh start with {to}",
                old.release, old.backend
            ),
            want.diff(&got, "fresh start", "after upgrade"),
        );
    }
    let (ours, theirs) = (mask_handles(&upgraded_status), mask_handles(&fresh_status));
    if ours != theirs {
        return fail_diff(
            "status file after the upgrade differs from a fresh start's",
            virtnet_fake::diff_text(&theirs, &ours, "fresh start", "after upgrade"),
        );
    }
    nothing_left(&baseline, &destroyed, &kept_both, "destroy after upgrade")?;
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
        check_on(factory, &c.state, c.to)
    })
}

/// [`check`] (the fake host's objects) as a [`CheckOutcome`].
pub fn check_fake(c: &PlannedCheck) -> CheckOutcome {
    let t0 = std::time::Instant::now();
    let verdict = match check(&c.state, c.to) {
        Ok(()) => Verdict::Pass,
        Err(message) => Verdict::Fail {
            message,
            diff: String::new(),
        },
    };
    CheckOutcome {
        id: c.id(),
        verdict,
        seconds: t0.elapsed().as_secs_f64(),
    }
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<CheckOutcome>>> =
        std::sync::Mutex::new(vec![None; checks.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(c) = checks.get(i) else { break };
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(c)))
                    .unwrap_or_else(|p| CheckOutcome {
                        id: c.id(),
                        verdict: Verdict::Fail {
                            message: format!(
                                "panicked: {}",
                                p.downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default()
                            ),
                            diff: String::new(),
                        },
                        seconds: 0.0,
                    });
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                progress(&out, n, checks.len());
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(out);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}
