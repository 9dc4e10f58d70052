//! The data the matrix is built from: the project's golden cases
//! (`golden/cases/*.xml`), their expectations in
//! `golden/releases/unreleased/<case>/`, and the upgrade sources (frozen
//! releases `golden/releases/<release>/` and real libvirt daemon captures
//! `golden/upstream/captures/libvirt-<v>/<case>/<backend>/`).

use std::path::{Path, PathBuf};

use virtnet_core::firewall::render::parse_stream;
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{ForwardDevice, ForwardMode, NetworkDef};
use virtnet_core::rules::golden::load_case;
use virtnet_fake::record::{parse_log, LogEntry};

/// Errors reading the golden data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| DataError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The repository's `golden/` directory (next to this crate).
pub fn golden_root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden")).to_path_buf()
}

/// The release whose expectations the matrix checks.
pub const UNRELEASED: &str = "unreleased";

/// One network of the matrix.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The input XML as given to `net-define`.
    pub xml: String,
    /// The definition after define-time validation on an empty host.
    pub def: NetworkDef,
}

impl Case {
    pub fn bridge(&self) -> String {
        self.def.bridge_name().unwrap_or("").to_string()
    }
}

/// Devices a definition expects on the host (forward devices, interface
/// pool, the host bridge of `<forward mode='bridge'>`): the scenarios create
/// them as bridges in the baseline.
pub fn uplinks(def: &NetworkDef) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(fwd) = &def.forward {
        for i in &fwd.ifs {
            if let ForwardDevice::Netdev(n) = &i.device {
                out.push(n.clone());
            }
        }
        for pf in &fwd.pfs {
            out.push(pf.dev.clone());
        }
        if fwd.mode == ForwardMode::Bridge {
            if let Some(b) = def.bridge_name() {
                out.push(b.to_string());
            }
        }
    }
    if let Some(d) = def.forward_dev() {
        out.push(d.to_string());
    }
    out.sort();
    out.dedup();
    out
}

/// Rewrites paths in a definition that must exist on the host (the TFTP
/// root) to `tftp_root`.
pub fn localise_xml(xml: &str, tftp_root: &Path) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find("<tftp") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find('>').map(|e| e + 1).unwrap_or(tail.len());
        let elem = &tail[..end];
        let mut new = elem.to_string();
        for q in ['\'', '"'] {
            let key = format!("root={q}");
            if let Some(s) = new.find(&key) {
                let vs = s + key.len();
                if let Some(ve) = new[vs..].find(q) {
                    new.replace_range(vs..vs + ve, &tftp_root.to_string_lossy());
                }
            }
        }
        out.push_str(&new);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// All cases of `golden/cases`, sorted by name.
pub fn load_cases(golden: &Path) -> Result<Vec<Case>, DataError> {
    let dir = golden.join("cases");
    let rd = std::fs::read_dir(&dir).map_err(|e| DataError::Read {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let xml = read(&p)?;
        let def = load_case(&xml).map_err(|e| DataError::Invalid {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        out.push(Case { name, xml, def });
    }
    Ok(out)
}

/// What a start of a case with a backend must do, from
/// `golden/releases/<release>/<case>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The start succeeds: the firewall commands it runs (`B.start`, on a
    /// host whose private chains exist) and the removal plan it saves
    /// (`B.removal.xml`, `None` when nothing is saved).
    Start {
        stream: Vec<Vec<String>>,
        removal: Option<String>,
    },
    /// The start fails with this message (`B.error`).
    Error(String),
}

impl Expectation {
    /// Does the stream need the tc `act_csum` kernel action?
    pub fn needs_act_csum(&self) -> bool {
        match self {
            Expectation::Start { stream, .. } => stream
                .iter()
                .any(|c| c.first().is_some_and(|p| p == "tc") && c.iter().any(|a| a == "csum")),
            Expectation::Error(_) => false,
        }
    }

    /// Does the stream need the tc modules of libvirt's QoS (sch_sfq,
    /// cls_fw, act_police)?
    pub fn needs_qos_modules(&self) -> bool {
        match self {
            Expectation::Start { stream, .. } => stream.iter().any(|c| is_qos_module_command(c)),
            Expectation::Error(_) => false,
        }
    }
}

/// A `tc` command of libvirt's QoS stream that needs sch_sfq, cls_fw or
/// act_police.
pub fn is_qos_module_command(argv: &[String]) -> bool {
    argv.first().is_some_and(|p| p == "tc")
        && argv
            .iter()
            .any(|a| a == "sfq" || a == "fw" || a == "police")
}

/// The expectation of `case` with `backend` in `release`.
pub fn expectation(
    golden: &Path,
    release: &str,
    case: &str,
    backend: Backend,
) -> Result<Expectation, DataError> {
    let dir = golden.join("releases").join(release).join(case);
    let b = backend.as_str();
    let err = dir.join(format!("{b}.error"));
    if err.exists() {
        return Ok(Expectation::Error(read(&err)?.trim_end().to_string()));
    }
    let start = dir.join(format!("{b}.start"));
    let text = read(&start)?;
    let mut stream = parse_stream(&text).map_err(|e| DataError::Invalid {
        path: start.clone(),
        reason: e.to_string(),
    })?;
    // The QoS stream (`B.qos.start`) runs after the firewall's, on the same
    // bridge: the expected host has both.
    let qos = dir.join(format!("{b}.qos.start"));
    if qos.exists() {
        let text = read(&qos)?;
        stream.extend(parse_stream(&text).map_err(|e| DataError::Invalid {
            path: qos.clone(),
            reason: e.to_string(),
        })?);
    }
    let rem = dir.join(format!("{b}.removal.xml"));
    let removal = if rem.exists() {
        Some(read(&rem)?)
    } else {
        None
    };
    Ok(Expectation::Start { stream, removal })
}

/// A removal-plan XML with nft handle numbers masked (the numbers depend on
/// what else the host has), lines trimmed.
pub fn mask_handles(xml: &str) -> String {
    let mut out = Vec::new();
    let mut after_handle = false;
    for l in xml.lines() {
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        if after_handle && t.starts_with("<item>") {
            out.push("<item>N</item>".to_string());
        } else {
            out.push(t.to_string());
        }
        after_handle = t == "<item>handle</item>";
    }
    out.join("\n")
}

/// Where a network that a scenario upgrades from was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeSource {
    /// A frozen virtnet release: `golden/releases/<release>/<case>/`.
    Frozen { release: String, backend: Backend },
    /// A real libvirt daemon's capture: the firewall commands of its
    /// `net-start` and the status file it wrote.
    Libvirt {
        version: String,
        backend: Backend,
        dir: PathBuf,
    },
}

impl UpgradeSource {
    /// `virtnet-<release>/<backend>` or `libvirt-<version>/<backend>`.
    pub fn label(&self) -> String {
        match self {
            UpgradeSource::Frozen { release, backend } => format!("virtnet-{release}/{backend}"),
            UpgradeSource::Libvirt {
                version, backend, ..
            } => format!("libvirt-{version}/{backend}"),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            UpgradeSource::Frozen { backend, .. } | UpgradeSource::Libvirt { backend, .. } => {
                *backend
            }
        }
    }
}

/// Frozen release directories (`golden/releases/*` except `unreleased`),
/// sorted.
pub fn frozen_releases(golden: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(golden.join("releases"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n != UNRELEASED)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Libvirt versions with captures (`golden/upstream/captures/libvirt-*`).
pub fn libvirt_capture_versions(golden: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(golden.join("upstream/captures"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("libvirt-"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Every state a network of `case` can be upgraded from: each frozen
/// release that has the case (one source per backend it starts with), and
/// each libvirt capture of the case (`<backend>/` runs only: restarts and
/// the no-tc-workaround run are other scenarios). This is the hook the
/// release upgrade check reuses.
pub fn upgrade_sources(golden: &Path, case: &str) -> Vec<UpgradeSource> {
    let mut out = Vec::new();
    for release in frozen_releases(golden) {
        for backend in [Backend::Iptables, Backend::Nftables] {
            let dir = golden.join("releases").join(&release).join(case);
            if dir.join(format!("{backend}.start")).exists() {
                out.push(UpgradeSource::Frozen {
                    release: release.clone(),
                    backend,
                });
            }
        }
    }
    for version in libvirt_capture_versions(golden) {
        for backend in [Backend::Iptables, Backend::Nftables] {
            let dir = golden
                .join("upstream/captures")
                .join(format!("libvirt-{version}"))
                .join(case)
                .join(backend.as_str());
            if dir.join("commands.log").exists() && dir.join("1-after-start.status.xml").exists() {
                out.push(UpgradeSource::Libvirt {
                    version: version.clone(),
                    backend,
                    dir,
                });
            }
        }
    }
    out
}

/// The commands of a capture's `net-start` step that changed the host:
/// those that succeeded, and those the capture wrapper made succeed
/// (`# FAKED-SUCCESS`: the tc csum filter on a kernel without act_csum),
/// in order. The one reading of a libvirt start stream (upgrade-check and
/// the matrix's upgrade scenarios).
pub fn capture_start_stream(log: &str) -> Result<Vec<Vec<String>>, String> {
    let mut in_start = false;
    let mut stream = Vec::new();
    for e in parse_log(log).map_err(|e| e.to_string())? {
        match e {
            LogEntry::Step(s) => in_start = s.starts_with("net-start"),
            LogEntry::Command {
                argv,
                output,
                faked_success,
                ..
            } if in_start => {
                if output.status == 0 || faked_success {
                    stream.push(argv);
                }
            }
            LogEntry::Command { .. } => {}
        }
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_loads_and_has_expectations() {
        let g = golden_root();
        let cases = load_cases(&g).unwrap();
        assert!(cases.len() >= 30, "{}", cases.len());
        for c in &cases {
            for b in [Backend::Iptables, Backend::Nftables] {
                expectation(&g, UNRELEASED, &c.name, b).unwrap();
            }
        }
    }

    #[test]
    fn masks_handles_only() {
        let x = "<item>delete</item>\n<item>handle</item>\n<item>17</item>\n<item>9</item>";
        assert_eq!(
            mask_handles(x),
            "<item>delete</item>\n<item>handle</item>\n<item>N</item>\n<item>9</item>"
        );
    }

    #[test]
    fn tftp_root_is_localised() {
        let x = "<ip><tftp root='/srv/tftp'/></ip>";
        assert_eq!(
            localise_xml(x, Path::new("/tmp/t")),
            "<ip><tftp root='/tmp/t'/></ip>"
        );
    }

    #[test]
    fn libvirt_captures_are_upgrade_sources() {
        let s = upgrade_sources(&golden_root(), "nat-default");
        let labels: Vec<String> = s.iter().map(UpgradeSource::label).collect();
        assert!(
            labels.contains(&"libvirt-11.3.0/nftables".to_string()),
            "{labels:?}"
        );
        assert!(
            labels.contains(&"libvirt-9.0.0/iptables".to_string()),
            "{labels:?}"
        );
        // No libvirt capture of `open`: only our frozen releases, if any.
        let open = upgrade_sources(&golden_root(), "open");
        assert!(
            open.iter()
                .all(|s| matches!(s, UpgradeSource::Frozen { .. })),
            "{open:?}"
        );
    }
}
