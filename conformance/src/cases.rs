//! The data the matrix is built from: the project's golden cases
//! (`golden/cases/*.xml`), their expectations in
//! `golden/releases/unreleased/<case>/`, and the upgrade sources (frozen
//! releases `golden/releases/<release>/` and real libvirt daemon captures
//! `golden/upstream/captures/libvirt-<v>/<case>/<backend>/`).

use std::path::{Path, PathBuf};

use virtnet_core::firewall::render::parse_stream;
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{ForwardDevice, ForwardMode, NetworkDef};
use virtnet_core::rules::batched::Layout;
use virtnet_core::rules::golden::load_case;
use virtnet_fake::record::{parse_log, LogEntry};
use virtnet_runner::Cmd;

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
        stream: Vec<Cmd>,
        removal: Option<String>,
    },
    /// The start fails with this message (`B.error`).
    Error(String),
}

impl Expectation {
    /// Does the stream need the tc `act_csum` kernel action?
    pub fn needs_act_csum(&self) -> bool {
        match self {
            Expectation::Start { stream, .. } => stream.iter().any(adds_csum_filter),
            Expectation::Error(_) => false,
        }
    }

    /// Does the stream need the tc modules of libvirt's QoS (sch_sfq,
    /// cls_fw, act_police)?
    pub fn needs_qos_modules(&self) -> bool {
        match self {
            Expectation::Start { stream, .. } => {
                stream.iter().any(|c| is_qos_module_command(&c.argv))
            }
            Expectation::Error(_) => false,
        }
    }
}

/// A `tc` command that adds libvirt's DHCP checksum filter (`action
/// csum`, which needs the kernel's act_csum): in its argv, or as a line of
/// a `tc -batch -` (the batched layout's start).
pub fn adds_csum_filter(cmd: &Cmd) -> bool {
    cmd.program() == "tc"
        && (cmd.argv.iter().any(|a| a == "csum")
            || cmd
                .stdin
                .as_deref()
                .is_some_and(|s| s.lines().any(|l| l.contains(" action csum"))))
}

/// A `tc` command of libvirt's QoS stream that needs sch_sfq, cls_fw or
/// act_police.
pub fn is_qos_module_command(argv: &[String]) -> bool {
    argv.first().is_some_and(|p| p == "tc")
        && argv
            .iter()
            .any(|a| a == "sfq" || a == "fw" || a == "police")
}

/// The expectation of `case` with `backend` in `release` (libvirt's
/// layout: `B.start`, `B.removal.xml`, `B.error`).
pub fn expectation(
    golden: &Path,
    release: &str,
    case: &str,
    backend: Backend,
) -> Result<Expectation, DataError> {
    expectation_in(golden, release, case, backend, Layout::Libvirt)
}

/// The suffix of a layout's golden files after the backend: `""` for
/// libvirt's layout (`B.start`), `"-batched"` for the batched one
/// (`B-batched.start`).
pub fn layout_suffix(layout: Layout) -> &'static str {
    match layout {
        Layout::Libvirt => "",
        Layout::Batched => "-batched",
    }
}

/// The expectation of `case` with `backend` and `layout` in `release`.
pub fn expectation_in(
    golden: &Path,
    release: &str,
    case: &str,
    backend: Backend,
    layout: Layout,
) -> Result<Expectation, DataError> {
    let dir = golden.join("releases").join(release).join(case);
    let b = format!("{}{}", backend.as_str(), layout_suffix(layout));
    let err = dir.join(format!("{b}.error"));
    if err.exists() {
        return Ok(Expectation::Error(read(&err)?.trim_end().to_string()));
    }
    let start = dir.join(format!("{b}.start"));
    let text = read(&start)?;
    let mut stream = parse_stream_stdin(&text).map_err(|reason| DataError::Invalid {
        path: start.clone(),
        reason,
    })?;
    // The QoS stream (`B.qos.start`, the same for both layouts) runs after
    // the firewall's, on the same bridge: the expected host has both.
    let qos = dir.join(format!("{}.qos.start", backend.as_str()));
    if qos.exists() {
        let text = read(&qos)?;
        stream.extend(
            parse_stream_stdin(&text).map_err(|reason| DataError::Invalid {
                path: qos.clone(),
                reason,
            })?,
        );
    }
    let rem = dir.join(format!("{b}.removal.xml"));
    let removal = if rem.exists() {
        Some(read(&rem)?)
    } else {
        None
    };
    Ok(Expectation::Start { stream, removal })
}

/// Parses a golden start stream (libvirt's format), where a command may be
/// followed by its standard input, each line prefixed with `  | ` (the
/// batched layout's `nft -f -` and `iptables-restore --noflush`, see
/// `virtnet_core::rules::golden`).
pub fn parse_stream_stdin(text: &str) -> Result<Vec<Cmd>, String> {
    let mut out: Vec<Cmd> = Vec::new();
    let mut chunk = String::new();
    let mut stdin: Option<String> = None;
    let flush = |out: &mut Vec<Cmd>, chunk: &mut String, stdin: &mut Option<String>| {
        let cmds = parse_stream(chunk).map_err(|e| e.to_string())?;
        chunk.clear();
        let n = cmds.len();
        for (i, argv) in cmds.into_iter().enumerate() {
            let mut c = Cmd::new(argv);
            if i + 1 == n {
                if let Some(s) = stdin.take() {
                    c = c.with_stdin(s);
                }
            }
            out.push(c);
        }
        if stdin.is_some() {
            return Err("standard input (`  | `) without a command before it".to_string());
        }
        Ok::<(), String>(())
    };
    for line in text.split('\n') {
        if let Some(input) = line.strip_prefix("  | ").or((line == "  |").then_some("")) {
            let s = stdin.get_or_insert_with(String::new);
            s.push_str(input);
            s.push('\n');
        } else {
            if stdin.is_some() {
                flush(&mut out, &mut chunk, &mut stdin)?;
            }
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    flush(&mut out, &mut chunk, &mut stdin)?;
    Ok(out)
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
    /// A frozen virtnet release: `golden/releases/<release>/<case>/`
    /// (`B.*` or, for the batched layout, `B-batched.*`).
    Frozen {
        release: String,
        backend: Backend,
        layout: Layout,
    },
    /// A real libvirt daemon's capture: the firewall commands of its
    /// `net-start` and the status file it wrote.
    Libvirt {
        version: String,
        backend: Backend,
        dir: PathBuf,
    },
}

impl UpgradeSource {
    /// `virtnet-<release>/<backend>` (`<backend>-batched` for the batched
    /// layout) or `libvirt-<version>/<backend>`.
    pub fn label(&self) -> String {
        match self {
            UpgradeSource::Frozen {
                release,
                backend,
                layout,
            } => format!("virtnet-{release}/{backend}{}", layout_suffix(*layout)),
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
/// release that has the case (one source per backend and layout it starts
/// with: a release frozen before the batched layout has no `B-batched.*`
/// files) and whose files are not byte for byte those of the same state
/// in an earlier release (that take-over would be the same check again), and
/// each libvirt capture of the case (`<backend>/` runs only: restarts and
/// the no-tc-workaround run are other scenarios). This is the hook the
/// release upgrade check reuses.
pub fn upgrade_sources(golden: &Path, case: &str) -> Vec<UpgradeSource> {
    let mut out = Vec::new();
    // The frozen files of each (layout, backend) state already taken, to
    // leave out a later release's state that is byte for byte the same:
    // its take-over would be the very same check again (a release that
    // adds a layout keeps the other one's states unchanged).
    type Files = Vec<Option<Vec<u8>>>;
    let mut seen: Vec<(Layout, Backend, Files)> = Vec::new();
    for release in frozen_releases(golden) {
        for layout in Layout::ALL {
            for backend in [Backend::Iptables, Backend::Nftables] {
                let dir = golden.join("releases").join(&release).join(case);
                let b = format!("{backend}{}", layout_suffix(layout));
                if dir.join(format!("{b}.start")).exists() {
                    let files: Files = ["start", "removal.xml", "status.xml"]
                        .iter()
                        .map(|ext| std::fs::read(dir.join(format!("{b}.{ext}"))).ok())
                        .collect();
                    if seen
                        .iter()
                        .any(|(l, be, f)| *l == layout && *be == backend && *f == files)
                    {
                        continue;
                    }
                    seen.push((layout, backend, files));
                    out.push(UpgradeSource::Frozen {
                        release: release.clone(),
                        backend,
                        layout,
                    });
                }
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
    fn batched_streams_keep_their_stdin() {
        let text = "tc \\\nqdisc \\\nshow\nnft \\\n-f \\\n-\n  | add chain ip t c\n  | flush chain ip t c\niptables \\\n-L\n";
        let s = parse_stream_stdin(text).unwrap();
        let argv: Vec<Vec<String>> = s.iter().map(|c| c.argv.to_vec()).collect();
        assert_eq!(
            argv,
            vec![
                vec!["tc".to_string(), "qdisc".into(), "show".into()],
                vec!["nft".to_string(), "-f".into(), "-".into()],
                vec!["iptables".to_string(), "-L".into()],
            ]
        );
        assert_eq!(s[0].stdin, None);
        assert_eq!(
            s[1].stdin.as_deref(),
            Some("add chain ip t c\nflush chain ip t c\n")
        );
        assert_eq!(s[2].stdin, None);
        assert!(parse_stream_stdin("  | orphan\n").is_err());
    }

    #[test]
    fn the_csum_filter_is_found_in_argv_and_in_a_tc_batch() {
        let filter = "filter add dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp";
        let argv: Vec<&str> = std::iter::once("tc").chain(filter.split(' ')).collect();
        assert!(adds_csum_filter(&Cmd::new(argv)));
        let batch = |input: &str| Cmd::new(["tc", "-batch", "-"]).with_stdin(input);
        assert!(adds_csum_filter(&batch(&format!(
            "qdisc add dev virbr0 root handle 1: htb default 2\n{filter}\n"
        ))));
        assert!(!adds_csum_filter(&batch(
            "qdisc add dev virbr0 root handle 1: htb default 2\n"
        )));
        assert!(!adds_csum_filter(
            &Cmd::new(["nft", "-f", "-"]).with_stdin(filter)
        ));
    }

    #[test]
    fn every_case_has_batched_expectations() {
        let g = golden_root();
        for c in load_cases(&g).unwrap() {
            for b in [Backend::Iptables, Backend::Nftables] {
                let e = expectation_in(&g, UNRELEASED, &c.name, b, Layout::Batched).unwrap();
                if let Expectation::Start { stream, .. } = e {
                    // Every batch carries its input.
                    for cmd in &stream {
                        let batch = cmd.argv.iter().any(|a| a == "--noflush")
                            || (cmd.program() == "nft" && cmd.argv.iter().any(|a| a == "-f"))
                            || (cmd.program() == "tc" && cmd.argv.iter().any(|a| a == "-batch"));
                        assert_eq!(batch, cmd.stdin.is_some(), "{}: {:?}", c.name, cmd.argv);
                    }
                }
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

    /// A state a later release froze byte for byte as an earlier one is
    /// not a second upgrade source; a new one (a new layout, a changed
    /// stream, a new case) is. Two releases made in a temporary golden
    /// root from today's expectations.
    #[test]
    fn a_release_state_equal_to_an_earlier_one_is_one_source() {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path();
        let from = golden_root().join("releases/unreleased");
        let copy = |rel: &str, case: &str, only_libvirt: bool| {
            let to = g.join("releases").join(rel).join(case);
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(from.join(case)).unwrap() {
                let f = f.unwrap();
                let name = f.file_name().to_string_lossy().into_owned();
                if only_libvirt && name.contains("-batched") {
                    continue;
                }
                std::fs::copy(f.path(), to.join(&name)).unwrap();
            }
        };
        // 0.0.1: the libvirt layout of nat-default; 0.0.2: both layouts
        // of nat-default and nat-bandwidth (new since 0.0.1).
        copy("0.0.1", "nat-default", true);
        copy("0.0.2", "nat-default", false);
        copy("0.0.2", "nat-bandwidth", false);
        let labels = |case: &str| -> Vec<String> {
            upgrade_sources(g, case)
                .iter()
                .map(UpgradeSource::label)
                .collect()
        };
        assert_eq!(
            labels("nat-default"),
            [
                "virtnet-0.0.1/iptables",
                "virtnet-0.0.1/nftables",
                "virtnet-0.0.2/iptables-batched",
                "virtnet-0.0.2/nftables-batched",
            ]
        );
        assert_eq!(
            labels("nat-bandwidth"),
            [
                "virtnet-0.0.2/iptables",
                "virtnet-0.0.2/nftables",
                "virtnet-0.0.2/iptables-batched",
                "virtnet-0.0.2/nftables-batched",
            ]
        );
        // A state whose stream changed is a source of its own again.
        let start = g.join("releases/0.0.2/nat-default/iptables.start");
        let mut text = std::fs::read_to_string(&start).unwrap();
        text.push_str("# changed\n");
        std::fs::write(&start, text).unwrap();
        assert!(labels("nat-default").contains(&"virtnet-0.0.2/iptables".to_string()));
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
