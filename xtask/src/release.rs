//! `cargo xtask release cut VERSION`: freeze `golden/releases/unreleased/`
//! as `golden/releases/VERSION/` (start streams, removal plans and status
//! files per case and backend). Refuses when VERSION is not a valid
//! version, when it exists already, or when the unreleased set is stale
//! (`cargo xtask golden --check` fails). Frozen directories are never
//! rewritten by any task (architecture invariant 6).

use std::path::Path;

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
    golden::run(root, golden::Mode::Check).map_err(|problems| {
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
        "release cut: froze {cases} cases ({files} files) into golden/releases/{version}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch workspace with the real golden cases and unreleased set.
    fn scratch() -> std::path::PathBuf {
        let real = crate::workspace_root();
        let root =
            std::env::temp_dir().join(format!("virtnet-release-test-{}", std::process::id()));
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
        let msg = cut(&root, "0.1.0").unwrap();
        assert!(msg.contains("froze 34 cases"), "{msg}");
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
