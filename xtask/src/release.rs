//! `cargo xtask release cut VERSION`: freeze `golden/releases/unreleased/`
//! as `golden/releases/VERSION/` (start streams, removal plans and status
//! files per case and backend). Refuses when VERSION is not a valid
//! version, when it exists already, or when the unreleased set is stale
//! (`cargo xtask golden --check` fails). Frozen directories are never
//! rewritten by any task (architecture invariant 6).
//!
//! Frozen means checked, not only promised: `cut` writes
//! `golden/releases/VERSION/SHA256SUMS` (the `sha256sum` format, one line
//! per file, sorted by path), and [`verify_frozen`] — run by `cargo xtask
//! golden --check`, hence by CI — recomputes it for every frozen release and
//! compares the manifest's own digest with the one pinned in [`PINNED`]. An
//! edited, added or removed file fails the check, and so does an edited
//! manifest: changing a release after the fact needs a visible change to
//! this source file, which review refuses.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The manifest file of a frozen release.
pub const MANIFEST: &str = "SHA256SUMS";

/// `(release, sha256 of its SHA256SUMS)`, one entry per frozen release of
/// ours; `cut` prints the line to add here.
pub const PINNED: &[(&str, &str)] = &[
    (
        "0.1.0",
        "ff1469f8b3826bc7b0385796e4f8924766d9eb05995c13384bf802ff07298548",
    ),
    (
        "0.2.0",
        "7349bb2d1cd1ae5e24b10c71501cc60d7de2c6aab7e0c4a5e329d393c306be16",
    ),
];

use crate::golden;

/// `MAJOR.MINOR.PATCH` with an optional `-PRERELEASE` of dot-separated
/// alphanumeric/hyphen identifiers (semver 2.0 without build metadata);
/// numbers without leading zeros.
pub fn valid_version(v: &str) -> bool {
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    let num_ok = |n: &str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'))
    };
    if nums.len() != 3 || !nums.iter().all(|n| num_ok(n)) {
        return false;
    }
    match pre {
        None => true,
        Some(p) => p
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<usize, String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut n = 0;
    let rd = std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in rd {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            n += copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .map_err(|e| format!("cannot copy {} to {}: {e}", src.display(), dst.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn collect_files(
    base: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in rd {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        if kind.is_dir() {
            collect_files(base, &path, out)?;
            continue;
        }
        let rel = path
            .strip_prefix(base)
            .map_err(|_| format!("{} is outside {}", path.display(), base.display()))?
            .to_string_lossy()
            .into_owned();
        if rel == MANIFEST {
            continue;
        }
        if !kind.is_file() {
            return Err(format!("{}: not a regular file", path.display()));
        }
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        out.insert(rel, bytes);
    }
    Ok(())
}

/// The `SHA256SUMS` text of a release directory as it is on disk now.
pub fn manifest(dir: &Path) -> Result<String, String> {
    let mut files = BTreeMap::new();
    collect_files(dir, dir, &mut files)?;
    Ok(files
        .iter()
        .map(|(path, bytes)| format!("{}  {path}\n", hex(&Sha256::digest(bytes))))
        .collect())
}

/// The digest of a manifest text, as pinned in [`PINNED`].
pub fn manifest_digest(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Checks every frozen release under `root/golden/releases` against its
/// `SHA256SUMS` and that manifest against `pinned`; `Ok` names the releases
/// checked, `Err` says what changed.
pub fn verify_frozen(root: &Path, pinned: &[(&str, &str)]) -> Result<String, String> {
    let releases = root.join("golden/releases");
    let mut names: Vec<String> = std::fs::read_dir(&releases)
        .map_err(|e| format!("cannot read {}: {e}", releases.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "unreleased" && !n.starts_with('.'))
        .collect();
    names.sort();
    let mut problems = Vec::new();
    for name in &names {
        let dir = releases.join(name);
        let saved_path = dir.join(MANIFEST);
        let saved = match std::fs::read_to_string(&saved_path) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{}: {e}", saved_path.display()));
                continue;
            }
        };
        match pinned.iter().find(|(r, _)| r == name) {
            None => problems.push(format!(
                "golden/releases/{name} is not pinned: add (\"{name}\", \"{}\") to PINNED in xtask/src/release.rs",
                manifest_digest(&saved)
            )),
            Some((_, want)) if *want != manifest_digest(&saved) => problems.push(format!(
                "golden/releases/{name}/{MANIFEST} was changed (sha256 {} instead of the pinned {want}); a frozen release is never rewritten",
                manifest_digest(&saved)
            )),
            Some(_) => {}
        }
        let now = manifest(&dir)?;
        if now != saved {
            let diff = similar::TextDiff::from_lines(&saved, &now)
                .unified_diff()
                .header(&format!("{name}/{MANIFEST}"), &format!("{name} on disk"))
                .to_string();
            problems.push(format!(
                "golden/releases/{name} differs from its {MANIFEST} (a frozen release is never rewritten):\n{diff}"
            ));
        }
    }
    for (r, _) in pinned {
        if !names.iter().any(|n| n == r) {
            problems.push(format!("golden/releases/{r} is pinned but missing"));
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "frozen releases intact: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    } else {
        Err(problems.join("\n"))
    }
}

/// Freezes the unreleased golden set as `version`.
pub fn cut(root: &Path, version: &str) -> Result<String, String> {
    if !valid_version(version) {
        return Err(format!(
            "release cut: '{version}' is not a valid version (MAJOR.MINOR.PATCH[-PRERELEASE], e.g. 0.2.0 or 1.0.0-rc.1)"
        ));
    }
    let releases = root.join("golden/releases");
    let target = releases.join(version);
    if target.exists() {
        return Err(format!(
            "release cut: {} exists; a frozen release is never rewritten",
            target.display()
        ));
    }
    golden::check(root).map_err(|problems| {
        format!(
            "release cut: golden/releases/unreleased is stale (run `cargo xtask golden --bless` and review):\n{problems}"
        )
    })?;
    let source = releases.join("unreleased");
    // Copy next to the target, then rename: a half-written release
    // directory never exists under its final name.
    let tmp = releases.join(format!(".{version}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .map_err(|e| format!("cannot clear {}: {e}", tmp.display()))?;
    }
    let files = copy_dir(&source, &tmp)?;
    let sums = manifest(&tmp)?;
    std::fs::write(tmp.join(MANIFEST), &sums)
        .map_err(|e| format!("cannot write {}: {e}", tmp.join(MANIFEST).display()))?;
    std::fs::rename(&tmp, &target).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            target.display()
        )
    })?;
    let cases = std::fs::read_dir(&target)
        .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0);
    Ok(format!(
        "release cut: froze {cases} cases ({files} files) into golden/releases/{version}\n\
         release cut: now pin it: add (\"{version}\", \"{}\") to PINNED in xtask/src/release.rs and commit both",
        manifest_digest(&sums)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch workspace with the real golden cases and unreleased set.
    fn scratch() -> std::path::PathBuf {
        scratch_named("release")
    }

    fn scratch_named(name: &str) -> std::path::PathBuf {
        let real = crate::workspace_root();
        let root = std::env::temp_dir().join(format!("virtnet-{name}-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        copy_dir(&real.join("golden/cases"), &root.join("golden/cases")).unwrap();
        copy_dir(
            &real.join("golden/releases/unreleased"),
            &root.join("golden/releases/unreleased"),
        )
        .unwrap();
        root
    }

    #[test]
    fn cut_freezes_refuses_existing_invalid_and_stale() {
        let root = scratch();
        let cases = std::fs::read_dir(root.join("golden/cases"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "xml"))
            })
            .count();
        assert!(cases > 30, "{cases} cases");
        let msg = cut(&root, "0.1.0").unwrap();
        assert!(msg.contains(&format!("froze {cases} cases")), "{msg}");
        let frozen = root.join("golden/releases/0.1.0/nat-default");
        for f in [
            "iptables.start",
            "nftables.removal.xml",
            "nftables.status.xml",
            "iptables.status.xml",
        ] {
            let (a, b) = (
                std::fs::read_to_string(frozen.join(f)).unwrap(),
                std::fs::read_to_string(
                    root.join("golden/releases/unreleased/nat-default").join(f),
                )
                .unwrap(),
            );
            assert_eq!(a, b, "{f}");
        }
        let e = cut(&root, "0.1.0").unwrap_err();
        assert!(e.contains("exists"), "{e}");
        let e = cut(&root, "0.1").unwrap_err();
        assert!(e.contains("not a valid version"), "{e}");
        // Stale: a blessed file no longer matches what HEAD emits.
        let f = root.join("golden/releases/unreleased/nat-default/iptables.start");
        std::fs::write(&f, "iptables \\\n-w\n").unwrap();
        let e = cut(&root, "0.2.0").unwrap_err();
        assert!(
            e.contains("stale") && e.contains("nat-default/iptables.start"),
            "{e}"
        );
        assert!(!root.join("golden/releases/0.2.0").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn frozen_release_changes_are_caught() {
        let root = scratch_named("frozen");
        let msg = cut(&root, "0.1.0").unwrap();
        let digest = manifest_digest(
            &std::fs::read_to_string(root.join("golden/releases/0.1.0").join(MANIFEST)).unwrap(),
        );
        assert!(msg.contains(&digest), "{msg}");
        let pinned = [("0.1.0", digest.as_str())];
        verify_frozen(&root, &pinned).unwrap();
        // Not pinned: refused, naming the line to add.
        let e = verify_frozen(&root, &[]).unwrap_err();
        assert!(e.contains("not pinned") && e.contains(&digest), "{e}");
        // A frozen file edited.
        let f = root.join("golden/releases/0.1.0/nat-default/nftables.start");
        let orig = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, format!("{orig}# edited\n")).unwrap();
        let e = verify_frozen(&root, &pinned).unwrap_err();
        assert!(e.contains("nat-default/nftables.start"), "{e}");
        // ... and the manifest regenerated to match: the pin catches it.
        let sums = manifest(&root.join("golden/releases/0.1.0")).unwrap();
        std::fs::write(root.join("golden/releases/0.1.0").join(MANIFEST), sums).unwrap();
        let e = verify_frozen(&root, &pinned).unwrap_err();
        assert!(e.contains("was changed"), "{e}");
        std::fs::write(&f, orig).unwrap();
        // A file added, then a file removed.
        let (sums_path, extra) = (
            root.join("golden/releases/0.1.0").join(MANIFEST),
            root.join("golden/releases/0.1.0/nat-default/extra"),
        );
        let saved = manifest(&root.join("golden/releases/0.1.0")).unwrap();
        std::fs::write(&sums_path, &saved).unwrap();
        let pinned2 = [("0.1.0", manifest_digest(&saved))];
        let pinned2: Vec<(&str, &str)> = pinned2.iter().map(|(a, b)| (*a, b.as_str())).collect();
        verify_frozen(&root, &pinned2).unwrap();
        std::fs::write(&extra, "x").unwrap();
        assert!(verify_frozen(&root, &pinned2).unwrap_err().contains("+"));
        std::fs::remove_file(&extra).unwrap();
        std::fs::remove_file(root.join("golden/releases/0.1.0/isolated/iptables.start")).unwrap();
        let e = verify_frozen(&root, &pinned2).unwrap_err();
        assert!(e.contains("isolated/iptables.start"), "{e}");
        // Pinned but gone.
        std::fs::remove_dir_all(root.join("golden/releases/0.1.0")).unwrap();
        assert!(verify_frozen(&root, &pinned2)
            .unwrap_err()
            .contains("missing"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn versions() {
        for ok in ["0.1.0", "1.0.0", "10.20.30", "1.0.0-rc.1", "0.2.0-alpha-2"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in [
            "",
            "1",
            "1.0",
            "1.0.0.0",
            "01.0.0",
            "1.0.0-",
            "1.0.0-a..b",
            "v1.0.0",
            "unreleased",
            "1.0.0+b",
            "../x",
        ] {
            assert!(!valid_version(bad), "{bad}");
        }
    }
}
