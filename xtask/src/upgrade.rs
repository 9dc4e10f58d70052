//! `cargo xtask upgrade-check [--real]`: every frozen release (ours under
//! golden/releases, and libvirt 9.0.0 / 11.3.0 from their captures) taken
//! over by the current driver, for both backends; see
//! `virtnet_conformance::upgrade`.

use std::path::Path;

pub fn run(root: &Path, real: bool) -> Result<String, String> {
    if real {
        return Err(
            "upgrade-check --real is not supported yet: it needs the conformance \
                    runner's namespace re-exec, which has not landed; the check runs on the \
                    fake host only (`cargo xtask upgrade-check`)"
                .to_string(),
        );
    }
    let rep = virtnet_conformance::upgrade::run(root)?;
    for (release, (states, passed, checks)) in &rep.per_release {
        eprintln!(
            "xtask: upgrade-check {release}: {states} release states x 2 backends: {passed}/{checks} passed"
        );
    }
    if rep.failures.is_empty() {
        Ok(format!(
            "upgrade-check: {} checks passed over {} releases (fake host)",
            rep.checks(),
            rep.per_release.len()
        ))
    } else {
        Err(format!(
            "upgrade-check: {} of {} checks failed:\n{}",
            rep.failures.len(),
            rep.checks(),
            rep.failures.join("\n\n")
        ))
    }
}
