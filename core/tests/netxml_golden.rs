//! Data-driven tests of the network XML parser/formatter against libvirt
//! 11.3.0's own test data (golden/upstream/libvirt-11.3.0/tests).

use std::path::{Path, PathBuf};

use virtnet_core::netxml::{self, FormatFlags};

fn tests_dir() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/libvirt-11.3.0/tests"
    ))
    .to_path_buf()
}

fn xml_files(sub: &str) -> Vec<PathBuf> {
    let dir = tests_dir().join(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    v.sort();
    v
}

/// Read a test file, following the symlink stubs in the data (plain files
/// whose whole content is a relative path such as
/// `../networkxml2confdata/leasetime-hours.xml`).
fn read_case(p: &Path) -> String {
    let mut path = p.to_path_buf();
    for _ in 0..4 {
        let s =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let t = s.trim();
        if !t.starts_with('<') && t.ends_with(".xml") && !t.contains('\n') {
            path = path.parent().expect("parent").join(t);
            continue;
        }
        return s;
    }
    panic!("{}: symlink stub chain too long", p.display());
}

/// Cases libvirt's networkxml2xmltest expects to fail parsing.
const MUST_FAIL: &[&str] = &[
    "routed-network-no-dns-extra-elements",
    "open-network-with-forward-dev",
    "hostdev-duplicate",
    "passthrough-duplicate",
];

/// The libvirt message each must-fail case is rejected with, and the line.
const MUST_FAIL_MESSAGES: &[(&str, &str, usize)] = &[
    (
        "routed-network-no-dns-extra-elements",
        "Extra data in disabled network 'local'",
        7,
    ),
    (
        "open-network-with-forward-dev",
        "forward dev not allowed for network 'open' with forward mode='open'",
        6,
    ),
    (
        "hostdev-duplicate",
        "PCI device '0000:03:00.3' can only be listed once in network hostdev",
        8,
    ),
    (
        "passthrough-duplicate",
        "interface 'eth3' can only be listed once in network passthrough-duplicate",
        8,
    ),
];

#[test]
fn conf_and_firewall_inputs_parse() {
    let mut n = 0;
    for sub in ["networkxml2confdata", "networkxml2firewalldata"] {
        for p in xml_files(sub) {
            let xml = read_case(&p);
            if let Err(e) = netxml::parse(&xml) {
                panic!("{}: {e}", p.display());
            }
            n += 1;
        }
    }
    println!("parsed {n} conf/firewall inputs");
    assert!(n >= 38, "expected at least 38 inputs, found {n}");
}

#[test]
fn xml2xml_inputs_parse_or_fail_as_libvirt() {
    let mut ok = 0;
    let mut failed = 0;
    for p in xml_files("networkxml2xmlin") {
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let xml = read_case(&p);
        let res = netxml::parse(&xml);
        if MUST_FAIL.contains(&stem.as_str()) {
            let e = res.expect_err(&stem);
            println!("{stem}: rejected as expected: {e}");
            let (_, msg, line) = MUST_FAIL_MESSAGES
                .iter()
                .find(|(n, _, _)| *n == stem)
                .unwrap_or_else(|| panic!("{stem}: no expected message"));
            assert_eq!(e.kind, netxml::ErrorKind::Invalid, "{stem}");
            assert_eq!(&e.message, msg, "{stem}");
            assert_eq!(e.line(), Some(*line), "{stem}");
            failed += 1;
        } else {
            if let Err(e) = res {
                panic!("{stem}: {e}");
            }
            ok += 1;
        }
    }
    println!("xml2xml inputs: {ok} parsed, {failed} rejected");
    assert_eq!(failed, MUST_FAIL.len());
    assert!(ok >= 43, "expected at least 43 parsable inputs, found {ok}");
}

/// Cases libvirt's networkxml2xmltest formats with VIR_NETWORK_XML_INACTIVE.
const INACTIVE: &[&str] = &["passthrough-pf", "hostdev-pf", "hostdev-pf-driver-model"];

fn flags_for(stem: &str) -> netxml::FormatFlags {
    if INACTIVE.contains(&stem) {
        netxml::FormatFlags::INACTIVE
    } else {
        netxml::FormatFlags::LIVE
    }
}

fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

#[test]
fn xml2xml_formats_byte_for_byte() {
    let outdir = tests_dir().join("networkxml2xmlout");
    let mut checked = 0;
    let mut failures = Vec::new();
    for p in xml_files("networkxml2xmlin") {
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let out = outdir.join(format!("{stem}.xml"));
        if MUST_FAIL.contains(&stem.as_str()) {
            assert!(!out.exists(), "{stem}: must-fail case has an output file");
            continue;
        }
        let expected = read_case(&out);
        let def = netxml::parse(&read_case(&p)).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let actual = netxml::format(&def, flags_for(&stem));
        if actual != expected {
            failures.push(format!("{stem}:\n{}", diff(&expected, &actual)));
        }
        // The output is a fixed point: parsing and formatting it again gives it back.
        let again = netxml::parse(&expected).unwrap_or_else(|e| panic!("{stem} (output): {e}"));
        let actual2 = netxml::format(&again, flags_for(&stem));
        if actual2 != expected {
            failures.push(format!(
                "{stem} (re-format of output):\n{}",
                diff(&expected, &actual2)
            ));
        }
        checked += 1;
    }
    println!("xml2xml: {checked} cases formatted and compared");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 43, "expected 43 xml2xml cases with an output file");
}

#[test]
fn metadata_is_copied_and_sanitized_like_libvirt() {
    let xml = "<network xmlns:out='http://out/'>\n  <name>m</name>\n  <uuid>81ff0d90-c91e-6742-64da-4a736edb9a8e</uuid>\n  <metadata>\n    <plain>dropped: no namespace</plain>\n    <out:a x=\"1\">\n      <out:b>caf\u{e9} &amp; co</out:b>\n    </out:a>\n    <c:c xmlns:c='http://c/'><c:d/><c:e/></c:c>\n    <out:again>dropped: namespace repeated</out:again>\n  </metadata>\n</network>\n";
    let def = netxml::parse(xml).expect("parse");
    let expected = "<network>\n  <name>m</name>\n  <uuid>81ff0d90-c91e-6742-64da-4a736edb9a8e</uuid>\n  <metadata xmlns:out=\"http://out/\">\n    <out:a x=\"1\">\n      <out:b>caf&#xE9; &amp; co</out:b>\n    </out:a>\n    <c:c xmlns:c=\"http://c/\">\n      <c:d/>\n      <c:e/>\n    </c:c>\n  </metadata>\n  <bridge stp='on' delay='0'/>\n</network>\n";
    assert_eq!(netxml::format(&def, netxml::FormatFlags::LIVE), expected);

    // Embedded one level deeper (status file), the formatted parts move.
    let nested = netxml::format_indented(&def, netxml::FormatFlags::LIVE, 2);
    assert!(
        nested.starts_with("  <network>\n    <name>m</name>\n"),
        "{nested}"
    );
    assert!(
        nested.contains(
            "    <metadata xmlns:out=\"http://out/\">\n      <out:a x=\"1\">\n      <out:b>"
        ),
        "{nested}"
    );
    assert!(nested.contains("      <c:c xmlns:c=\"http://c/\">\n        <c:d/>\n        <c:e/>\n      </c:c>\n    </metadata>\n"), "{nested}");
    assert!(nested.ends_with("  </network>\n"));

    // Metadata with no element child is dropped; with only namespace-less
    // children it is kept empty.
    let d = netxml::parse("<network><name>m</name><metadata>text only</metadata></network>")
        .expect("parse");
    assert!(d.metadata.is_none());
    let d =
        netxml::parse("<network><name>m</name><metadata><x/></metadata></network>").expect("parse");
    assert!(netxml::format(&d, netxml::FormatFlags::LIVE).contains("\n  <metadata/>\n"));
}

/// Every capture directory of a real libvirt daemon run
/// (golden/upstream/captures/libvirt-*/CASE/RUN/) with the user's input
/// (network.xml), what `virsh net-dumpxml --inactive` printed after define
/// (defined.xml), what it printed while running (running.xml) and status files.
fn capture_dirs() -> Vec<PathBuf> {
    let base = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/captures"
    ));
    let mut dirs = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            }
        }
        if d.join("network.xml").exists()
            && d.join("defined.xml").exists()
            && d.join("running.xml").exists()
        {
            dirs.push(d);
        }
    }
    dirs.sort();
    dirs
}

/// A host that hands out the bridge name and MAC libvirt chose in a capture.
struct CapturedHost {
    mac: [u8; 3],
}

impl netxml::DefineContext for CapturedHost {
    fn bridge_in_use(&self, _: &str, _: &str) -> bool {
        false
    }
    fn netdev_exists(&self, _: &str) -> bool {
        false
    }
    fn pci_is_virtual_function(&self, _: &netxml::PciAddress) -> Result<bool, String> {
        Ok(true)
    }
    fn random_mac_suffix(&self) -> [u8; 3] {
        self.mac
    }
}

#[test]
fn real_libvirt_captures_define_run_and_status() {
    let mut checked = 0;
    let mut status_checked = 0;
    let mut skipped_failed_start = 0;
    let mut failures = Vec::new();
    for dir in capture_dirs() {
        let name = dir.display().to_string();
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}"))
        };
        let (input, defined, running) = (
            read("network.xml"),
            read("defined.xml"),
            read("running.xml"),
        );

        // 1. define: parse + validate (bridge/MAC allocation) + inactive format.
        let defined_def =
            netxml::parse(&defined).unwrap_or_else(|e| panic!("{name}/defined.xml: {e}"));
        let mac = defined_def
            .mac
            .map(|m| [m.0[3], m.0[4], m.0[5]])
            .unwrap_or_default();
        let mut def = netxml::parse(&input).unwrap_or_else(|e| panic!("{name}/network.xml: {e}"));
        netxml::validate_for_define(&mut def, &CapturedHost { mac })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        def.uuid = defined_def.uuid; // libvirt generated a random one
                                     // The capture harness pointed <tftp root> at a directory of its own
                                     // before defining; take the path it used.
        for (ip, dip) in def.ips.iter_mut().zip(&defined_def.ips) {
            if ip.tftp_root.is_some() {
                ip.tftp_root.clone_from(&dip.tftp_root);
            }
        }
        let got = netxml::format(&def, FormatFlags::INACTIVE);
        if got != defined {
            failures.push(format!("{name} define:\n{}", diff(&defined, &got)));
        }

        // 2. start: the live form adds what the firewall code filled in
        // (only where the start succeeded).
        let steps = std::fs::read_to_string(dir.join("steps.log")).unwrap_or_default();
        if steps
            .lines()
            .any(|l| l.starts_with("net-start rc=") && l != "net-start rc=0")
        {
            skipped_failed_start += 1;
            checked += 1;
            continue;
        }
        let mut live = defined_def.clone();
        let ipv4 = live.ipv4_ips().next().is_some();
        let any_ip = !live.ips.is_empty();
        if let Some(nat) = live.nat_mut() {
            if ipv4 || (nat.ipv6 == Some(true) && any_ip) {
                nat.fill_default_port_range();
            }
        }
        let got = netxml::format(&live, FormatFlags::LIVE);
        if got != running {
            failures.push(format!("{name} running:\n{}", diff(&running, &got)));
        }
        let again = netxml::parse(&running).unwrap_or_else(|e| panic!("{name}/running.xml: {e}"));
        assert_eq!(
            netxml::format(&again, FormatFlags::LIVE),
            running,
            "{name}: running.xml round trip"
        );

        // 3. status files embed the live definition indented by 2.
        let mut statuses: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        statuses.retain(|p| p.to_string_lossy().ends_with(".status.xml"));
        for st in statuses {
            let text = std::fs::read_to_string(&st).expect("status");
            let (Some(a), Some(b)) = (text.find("  <network"), text.find("  </network>\n")) else {
                continue;
            };
            let block = &text[a..b + "  </network>\n".len()];
            let inner: String = block
                .lines()
                .map(|l| l.strip_prefix("  ").unwrap_or(l))
                .map(|l| format!("{l}\n"))
                .collect();
            let sdef = netxml::parse(&inner).unwrap_or_else(|e| panic!("{}: {e}", st.display()));
            let got = netxml::format_indented(&sdef, FormatFlags::LIVE, 2);
            if got != block {
                failures.push(format!("{}:\n{}", st.display(), diff(block, &got)));
            }
            status_checked += 1;
        }
        checked += 1;
    }
    println!(
        "captures: {checked} define cases ({skipped_failed_start} without a successful start), {status_checked} status files"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 80, "expected the captured runs, found {checked}");
    assert!(status_checked >= 80);
}

/// libvirt's net-update test outputs are libvirt-formatted documents, so
/// they must format back to themselves. One of them (a NAT network with
/// several forward interfaces, reachable only through net-update) is
/// rejected by libvirt's own parser too.
#[test]
fn update_outputs_are_fixed_points() {
    let mut checked = 0;
    for p in xml_files("networkxml2xmlupdateout") {
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let xml = read_case(&p);
        match netxml::parse(&xml) {
            Ok(def) => {
                let got = netxml::format(&def, FormatFlags::LIVE);
                assert!(got == xml, "{stem}:\n{}", diff(&xml, &got));
            }
            Err(e) => {
                assert_eq!(stem, "nat-network-forward-ifaces", "{stem}: {e}");
                assert!(e
                    .message
                    .starts_with("multiple forwarding interfaces specified for network 'default'"));
            }
        }
        checked += 1;
    }
    println!("update outputs: {checked} documents");
    assert!(checked >= 20);
}
