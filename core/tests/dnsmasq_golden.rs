//! libvirt 11.3.0's networkxml2conf cases and the real daemon captures,
//! reproduced byte for byte.

use std::fs;
use std::path::{Path, PathBuf};

use virtnet_core::dnsmasq::{self, ConfHeader, DnsmasqOptions};
use virtnet_core::netxml;

const CONFDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../golden/upstream/libvirt-11.3.0/tests/networkxml2confdata"
);
const CAPTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../golden/upstream/captures/libvirt-11.3.0"
);

/// Number of cases libvirt's networkxml2conftest.c runs.
const CONFDATA_CASES: usize = 27;

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(CONFDATA)
        .unwrap_or_else(|e| panic!("{CONFDATA}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    v.sort();
    v
}

fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

#[test]
fn networkxml2conf_cases_match_byte_for_byte() {
    let cases = cases();
    assert_eq!(cases.len(), CONFDATA_CASES, "case count in {CONFDATA}");
    let mut failures = Vec::new();
    let mut with_hosts = 0;
    for xml_path in &cases {
        let name = xml_path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        // The harness parses without validation.
        let def = match netxml::parse(&read(xml_path)) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        let files = match dnsmasq::conf_contents(&def, &DnsmasqOptions::libvirt_test()) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let want_conf = read(&xml_path.with_extension("conf"));
        if files.conf != want_conf {
            failures.push(format!("{name}.conf:\n{}", diff(&want_conf, &files.conf)));
        }
        let hosts_path = xml_path.with_extension("hostsfile");
        if hosts_path.exists() {
            with_hosts += 1;
            let want = read(&hosts_path);
            if files.hostsfile != want {
                failures.push(format!(
                    "{name}.hostsfile:\n{}",
                    diff(&want, &files.hostsfile)
                ));
            }
        } else if !files.hostsfile.is_empty() {
            failures.push(format!(
                "{name}: unexpected host lines {:?}",
                files.hostsfile
            ));
        }
        // The configuration names the hosts files exactly when we say so.
        assert_eq!(
            files.conf.contains("\ndhcp-hostsfile="),
            files.hostsfile().is_some(),
            "{name}"
        );
        assert_eq!(
            files.conf.contains("\naddn-hosts="),
            files.addnhosts().is_some(),
            "{name}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(with_hosts, 14, "cases with a .hostsfile");
}

/// Directories of captures that have a conf after start, with the
/// definition the daemon ran (running.xml).
fn captures() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for case in fs::read_dir(CAPTURES).unwrap_or_else(|e| panic!("{CAPTURES}: {e}")) {
        let Ok(case) = case else { continue };
        if !case.path().is_dir() {
            continue;
        }
        for run in fs::read_dir(case.path()).into_iter().flatten().flatten() {
            if run.path().join("1-after-start.dnsmasq.conf").exists() {
                v.push(run.path());
            }
        }
    }
    v.sort();
    v
}

#[test]
fn real_daemon_captures_match() {
    let runs = captures();
    assert_eq!(runs.len(), 66, "captures with 1-after-start.dnsmasq.conf");
    let mut failures = Vec::new();
    for run in &runs {
        let label = run
            .strip_prefix(CAPTURES)
            .unwrap_or(run)
            .display()
            .to_string();
        let def = match netxml::parse(&read(&run.join("running.xml"))) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{label}: parse: {e}"));
                continue;
            }
        };
        assert!(dnsmasq::needs_dnsmasq(&def), "{label}");
        let files = match dnsmasq::conf_contents(&def, &DnsmasqOptions::libvirt_daemon()) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                continue;
            }
        };
        let want = read(&run.join("1-after-start.dnsmasq.conf"));
        if files.conf != want {
            failures.push(format!("{label}:\n{}", diff(&want, &files.conf)));
        }
        // A restarted daemon does not rewrite the conf (refresh); where the
        // capture has it, it is unchanged.
        let after = run.join("3-after-restart.dnsmasq.conf");
        if after.exists() && read(&after) != want {
            failures.push(format!("{label}: conf changed across daemon restart"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} captures differ:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
}

#[test]
fn virtnet_header_only_changes_comment_lines() {
    for xml_path in cases() {
        let def = netxml::parse(&read(&xml_path)).unwrap_or_else(|e| panic!("{e}"));
        let lib = dnsmasq::conf_contents(&def, &DnsmasqOptions::libvirt_test()).unwrap();
        let mut o = DnsmasqOptions::libvirt_test();
        o.header = ConfHeader::Virtnet;
        let ours = dnsmasq::conf_contents(&def, &o).unwrap();
        let strip = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with("##"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&lib.conf), strip(&ours.conf));
        assert!(ours.conf.contains("virtnet"));
        assert!(!ours.conf.contains("virsh"));
        assert!(ours.conf.contains(&format!("network {}\n", def.name)));
    }
}
