//! libvirt's own golden files, reproduced byte for byte from their XML:
//! every 11.3.0 `networkxml2firewalldata` stream (both backends, plus the
//! two base streams) and every 9.0.0 `.args` stream (with 9.0.0's add
//! transaction), using libvirt's test-harness semantics (executor answering
//! `# handle 5309` to `-ae` commands, empty output otherwise; the base
//! stream stripped when it is a prefix).

mod rules_common;

use std::path::PathBuf;

use rstest::rstest;
use rules_common::{cases, fw11, fw9, read};
use virtnet_core::firewall::{Backend, RecordingRunner, RenderOptions};
use virtnet_core::netxml;
use virtnet_core::rules::{self, ChainInitState};

/// The stream libvirt's 11.3.0 harness prints for one case and backend
/// (private chains set up in this "process" first, as for a test run alone).
fn stream_11(xml: &str, backend: Backend) -> Result<String, String> {
    let mut def = netxml::parse(xml).map_err(|e| e.to_string())?;
    let runner = RecordingRunner::new();
    let mut chains = ChainInitState::new();
    rules::add_network_firewall(&mut def, backend, &runner, &mut chains)
        .map_err(|e| e.to_string())?;
    Ok(runner.rendered(RenderOptions::GOLDEN))
}

fn base_11(backend: Backend) -> String {
    let runner = RecordingRunner::new();
    let mut chains = ChainInitState::new();
    chains.setup(backend, &runner, false).expect("setup");
    assert_eq!(chains.errors(), (None, None));
    runner.rendered(RenderOptions::GOLDEN)
}

fn strip_base<'a>(actual: &'a str, base: &str) -> &'a str {
    actual.strip_prefix(base).unwrap_or(actual)
}

#[rstest]
#[case::iptables(Backend::Iptables)]
#[case::nftables(Backend::Nftables)]
fn base_streams_match_libvirt_11(#[case] backend: Backend) {
    let expected = read(&fw11().join(format!("base.{backend}")));
    assert_eq!(base_11(backend), expected, "base.{backend}");
}

/// Every 11.3.0 case (`CASE.xml` beside `CASE-linux.BACKEND`), each backend:
/// one test each, generated from the files.
#[rstest]
fn streams_match_libvirt_11(
    #[files("../golden/upstream/libvirt-11.3.0/tests/networkxml2firewalldata/*.xml")]
    xml_path: PathBuf,
    #[values(Backend::Iptables, Backend::Nftables)] backend: Backend,
) {
    let dir = fw11();
    let case = xml_path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("case name");
    let base = read(&dir.join(format!("base.{backend}")));
    let expected = read(&dir.join(format!("{case}-linux.{backend}")));
    let actual = stream_11(&read(&xml_path), backend).unwrap_or_else(|e| panic!("{case}: {e}"));
    // The full stream starts with the base (chains first) when run alone.
    let actual = strip_base(&actual, &base);
    assert!(
        actual == expected,
        "{case}-linux.{backend} differs:\n{}",
        similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("expected", "actual")
    );
}

/// The full stream of a fresh process starts with the base stream.
#[test]
fn fresh_process_stream_starts_with_base() {
    let dir = fw11();
    let xml = read(&dir.join("nat-default.xml"));
    for (backend, ext) in [
        (Backend::Iptables, "iptables"),
        (Backend::Nftables, "nftables"),
    ] {
        let base = read(&dir.join(format!("base.{ext}")));
        let full = stream_11(&xml, backend).expect("stream");
        assert!(full.starts_with(&base), "{ext}");
        assert!(full.len() > base.len(), "{ext}");
    }
}

/// A second network in the same process gets no private-chain setup.
#[test]
fn chains_are_set_up_once_per_process() {
    let dir = fw11();
    let runner = RecordingRunner::new();
    let mut chains = ChainInitState::new();
    let mut a = netxml::parse(&read(&dir.join("nat-default.xml"))).expect("parse");
    rules::add_network_firewall(&mut a, Backend::Iptables, &runner, &mut chains).expect("add");
    runner.clear();
    let mut b = netxml::parse(&read(&dir.join("route-default.xml"))).expect("parse");
    // Other backend: libvirt's chainInitDone is shared between backends.
    rules::add_network_firewall(&mut b, Backend::Nftables, &runner, &mut chains).expect("add");
    assert_eq!(
        runner.rendered(RenderOptions::GOLDEN),
        read(&dir.join("route-default-linux.nftables"))
    );
}

/// libvirt 9.0.0: private chains + 9.0.0's add transaction, iptables only.
#[test]
fn args_streams_match_libvirt_9() {
    let dir = fw9();
    let base = read(&dir.join("base.args"));
    let mut n = 0;
    let mut failures = Vec::new();
    for case in cases(&dir) {
        let xml = read(&dir.join(format!("{case}.xml")));
        let expected = read(&dir.join(format!("{case}-linux.args")));
        let mut def = netxml::parse(&xml).expect("parse");
        let runner = RecordingRunner::new();
        let mut chains = ChainInitState::new();
        chains
            .setup(Backend::Iptables, &runner, false)
            .expect("setup");
        assert_eq!(runner.rendered(RenderOptions::GOLDEN), base, "base.args");
        let mut fw = rules::libvirt9_network_rules(&mut def).expect("rules");
        fw.apply(&runner).expect("apply");
        let all = runner.rendered(RenderOptions::GOLDEN);
        let actual = strip_base(&all, &base);
        if actual != expected {
            failures.push(format!(
                "{case}-linux.args differs:\n{}",
                similar::TextDiff::from_lines(expected.as_str(), actual)
                    .unified_diff()
                    .header("expected", "actual")
            ));
        }
        n += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(n, 7);
}

/// The 11.3.0 iptables streams of the seven shared cases equal 9.0.0's.
#[test]
fn iptables_11_equals_args_9_for_shared_cases() {
    let mut n = 0;
    for case in cases(&fw9()) {
        let xml = read(&fw9().join(format!("{case}.xml")));
        let s = stream_11(&xml, Backend::Iptables).expect("stream");
        let base = read(&fw9().join("base.args"));
        assert_eq!(
            strip_base(&s, &base),
            read(&fw9().join(format!("{case}-linux.args"))),
            "{case}"
        );
        n += 1;
    }
    assert_eq!(n, 7);
}
