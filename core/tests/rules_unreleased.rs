//! `golden/releases/unreleased` matches what HEAD emits for every
//! `golden/cases` input (the same comparison as `cargo xtask golden
//! --check`, so plain `cargo test` catches drift too). Re-bless with
//! `cargo xtask golden --bless` after an intended change.

mod rules_common;

use std::collections::BTreeMap;

use rules_common::{cases, golden, read};
use virtnet_core::rules::golden::case_files;

#[test]
fn unreleased_golden_matches_head() {
    let dir = golden().join("cases");
    let out = golden().join("releases/unreleased");
    let names = cases(&dir);
    assert!(names.len() >= 30, "only {} cases", names.len());
    let mut problems = Vec::new();
    for case in &names {
        let want: BTreeMap<String, String> = case_files(&read(&dir.join(format!("{case}.xml"))))
            .unwrap_or_else(|e| panic!("{case}: {e}"))
            .into_iter()
            .collect();
        let mut have = BTreeMap::new();
        for e in std::fs::read_dir(out.join(case))
            .unwrap_or_else(|e| panic!("unreleased/{case}: {e}"))
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            // Status files come from the driver on the fake host (`cargo
            // xtask golden` writes and checks them), not from `case_files`.
            if name.ends_with(".status.xml") {
                continue;
            }
            have.insert(name, read(&e.path()));
        }
        if want != have {
            problems.push(case.clone());
        }
    }
    assert!(
        problems.is_empty(),
        "differ (run cargo xtask golden --check for diffs): {problems:?}"
    );
}
