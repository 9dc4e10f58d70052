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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtnet_core::driver::{modes, Driver, DriverConfig};
use virtnet_core::firewall::{parse_stream, Backend};
use virtnet_core::netxml::{self, FormatFlags, MacAddr, Uuid};
use virtnet_core::rules::ChainInitState;
use virtnet_core::runner::{Cmd, Runner};
use virtnet_core::status;
use virtnet_fake::record::{parse_log, LogEntry};
use virtnet_fake::{FakeHost, HostState};

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
            let entries = parse_log(&read(&log)?).map_err(|e| format!("{}: {e}", log.display()))?;
            let mut in_start = false;
            let mut stream = Vec::new();
            for e in entries {
                match e {
                    LogEntry::Step(s) => in_start = s.starts_with("net-start"),
                    LogEntry::Command {
                        argv,
                        output,
                        faked_success,
                        ..
                    } if in_start => {
                        // What changed the host: successful commands (the
                        // capture's faked tc csum success included).
                        if output.status == 0 || faked_success {
                            stream.push(argv);
                        }
                    }
                    LogEntry::Command { .. } => {}
                }
            }
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
    let st = status::parse_status(&old.status, &old.source).map_err(|e| e.to_string())?;
    let def = &st.def;
    let name = def.name.clone();
    let br = def
        .bridge_name()
        .map(str::to_string)
        .ok_or_else(|| format!("{}: status file without a bridge", old.source.display()))?;
    let dir = crate::props::scratch_dir()?;
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
    std::fs::write(&spath, &old.status).map_err(|e| format!("{}: {e}", spath.display()))?;

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

/// What [`run`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// release -> (release states, checks passed, checks run).
    pub per_release: BTreeMap<String, (usize, usize, usize)>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn checks(&self) -> usize {
        self.per_release.values().map(|v| v.2).sum()
    }
    pub fn passed(&self) -> usize {
        self.per_release.values().map(|v| v.1).sum()
    }
}

/// The libvirt capture sets taken over.
pub const LIBVIRT_RELEASES: [&str; 2] = ["libvirt-9.0.0", "libvirt-11.3.0"];

/// Every release state x {iptables, nftables}, on the fake host.
pub fn run(root: &Path) -> Result<Report, String> {
    let mut sets = Vec::new();
    for r in our_releases(root)? {
        sets.push((r.clone(), load_ours(root, &r)?));
    }
    for r in LIBVIRT_RELEASES {
        sets.push((r.to_string(), load_libvirt(root, r)?));
    }
    let mut rep = Report::default();
    for (release, states) in sets {
        if states.is_empty() {
            rep.failures.push(format!(
                "{release}: no release states (start stream + status file) found"
            ));
        }
        let entry = rep.per_release.entry(release.clone()).or_default();
        entry.0 = states.len();
        for old in &states {
            for to in [Backend::Iptables, Backend::Nftables] {
                entry.2 += 1;
                match check(old, to) {
                    Ok(()) => entry.1 += 1,
                    Err(e) => rep.failures.push(format!(
                        "{release} {} ({} -> {to}): {e}",
                        old.case, old.backend
                    )),
                }
            }
        }
    }
    Ok(rep)
}

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
    let name = d2
        .define(&netxml::format(&def, FormatFlags::INACTIVE))
        .map_err(|e| format!("define: {e}"))?
        .name;
    if d2.start(&name).is_err() {
        return Ok(None);
    }
    read(&dir2.path().join("state").join(format!("{name}.xml"))).map(Some)
}
