//! `cargo xtask golden --bless | --check`: the project's own golden cases.
//!
//! Inputs are `golden/cases/<case>.xml`; the expected outputs live in
//! `golden/releases/unreleased/<case>/` (see
//! `virtnet_core::rules::golden` for the file set, plus `B.status.xml`, the
//! status file the driver writes after starting the case with backend `B`
//! on the fake host, see `virtnet_conformance::upgrade::fresh_status_file`).
//! `--bless` rewrites that
//! directory from what HEAD emits (removing stale files); `--check` compares
//! and fails, with a diff, on any difference, missing or extra file. Frozen
//! release directories are never touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use virtnet_conformance::upgrade::fresh_status_file_in;
use virtnet_core::firewall::Backend;
use virtnet_core::rules::batched::Layout;
use virtnet_core::rules::golden::case_files;

/// What `golden` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bless,
    Check,
}

fn cases_dir(root: &Path) -> PathBuf {
    root.join("golden/cases")
}

fn unreleased_dir(root: &Path) -> PathBuf {
    root.join("golden/releases/unreleased")
}

/// `case name -> (file name -> content)` as HEAD emits them.
fn expected(root: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let dir = cases_dir(root);
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        let Some(case) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".xml"))
            .map(str::to_string)
        else {
            continue;
        };
        let xml = match std::fs::read_to_string(&path) {
            Ok(x) => x,
            Err(e) => {
                errors.push(format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        match case_files(&xml) {
            Ok(files) => {
                let mut files: BTreeMap<String, String> = files.into_iter().collect();
                // The status file the driver writes after a start on the
                // fake host (what `upgrade-check` installs for this release).
                for (backend, layout, suffix) in [
                    (Backend::Iptables, Layout::Libvirt, ""),
                    (Backend::Nftables, Layout::Libvirt, ""),
                    (Backend::Iptables, Layout::Batched, "-batched"),
                    (Backend::Nftables, Layout::Batched, "-batched"),
                ] {
                    match fresh_status_file_in(&xml, backend, layout, &case) {
                        Ok(Some(st)) => {
                            files.insert(format!("{}{suffix}.status.xml", backend.as_str()), st);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            errors.push(format!("{}: {backend} status file: {e}", path.display()))
                        }
                    }
                }
                out.insert(case, files);
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    if out.is_empty() {
        return Err(format!("no case inputs (*.xml) in {}", dir.display()));
    }
    Ok(out)
}

/// The files currently under `unreleased/`: case -> file -> content.
fn actual(root: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let dir = unreleased_dir(root);
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let case = entry.file_name().to_string_lossy().to_string();
        let path = entry.path();
        let mut files = BTreeMap::new();
        if path.is_dir() {
            let inner = std::fs::read_dir(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for f in inner {
                let f = f.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let content = std::fs::read_to_string(f.path())
                    .map_err(|e| format!("cannot read {}: {e}", f.path().display()))?;
                files.insert(f.file_name().to_string_lossy().to_string(), content);
            }
        }
        out.insert(case, files);
    }
    Ok(out)
}

pub fn check(root: &Path) -> Result<usize, String> {
    let want = expected(root)?;
    let have = actual(root)?;
    let mut problems = Vec::new();
    for (case, files) in &want {
        let Some(got) = have.get(case) else {
            problems.push(format!("missing case directory unreleased/{case}/"));
            continue;
        };
        for (name, content) in files {
            match got.get(name) {
                None => problems.push(format!("missing file unreleased/{case}/{name}")),
                Some(g) if g != content => problems.push(format!(
                    "unreleased/{case}/{name} differs from what HEAD emits:\n{}",
                    similar::TextDiff::from_lines(g.as_str(), content.as_str())
                        .unified_diff()
                        .header("golden (blessed)", "HEAD")
                )),
                Some(_) => {}
            }
        }
        for name in got.keys().filter(|n| !files.contains_key(*n)) {
            problems.push(format!("extra file unreleased/{case}/{name}"));
        }
    }
    for case in have.keys().filter(|c| !want.contains_key(*c)) {
        problems.push(format!(
            "extra entry unreleased/{case} (no golden/cases/{case}.xml)"
        ));
    }
    if problems.is_empty() {
        Ok(want.len())
    } else {
        Err(problems.join("\n"))
    }
}

fn bless(root: &Path) -> Result<usize, String> {
    let want = expected(root)?;
    let dir = unreleased_dir(root);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    for (case, files) in &want {
        let cdir = dir.join(case);
        std::fs::create_dir_all(&cdir)
            .map_err(|e| format!("cannot create {}: {e}", cdir.display()))?;
        for (name, content) in files {
            let p = cdir.join(name);
            std::fs::write(&p, content)
                .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        }
    }
    Ok(want.len())
}

/// Runs `golden` in `mode` on the workspace at `root`; `Err` carries the
/// report of what is wrong.
pub fn run(root: &Path, mode: Mode) -> Result<String, String> {
    match mode {
        Mode::Check => {
            let frozen = crate::release::verify_frozen(root, crate::release::PINNED)
                .map_err(|e| format!("golden: {e}"))?;
            check(root)
                .map(|n| format!("golden: {n} cases match golden/releases/unreleased; {frozen}"))
        }
        Mode::Bless => bless(root)
            .map(|n| format!("golden: blessed {n} cases into golden/releases/unreleased")),
    }
}
