//! Issue 14: what `virtnet xml validate` and `virtnet net-define` print for
//! hostile input — `FILE:LINE:COL: message (at ELEMENT/@ATTRIBUTE)`, exit
//! status 1, nothing defined, the simulated host unchanged.

mod common;

use assert_cmd::Command;
use common::virtnet;
use predicates::prelude::*;

const CASES: &[(&str, &str, &str)] = &[
    (
        "dev.xml",
        "<network>\n  <name>n</name>\n  <forward mode='nat' dev='eth0 ; flush ruleset'/>\n  <ip address='10.9.0.1' prefix='24'/>\n</network>\n",
        "dev.xml:3:23: invalid interface name 'eth0 ; flush ruleset' in <forward dev>: an interface name cannot contain a space (at /network/forward[1]/@dev)",
    ),
    (
        "hidden.xml",
        "<network>\n  <name>.hidden</name>\n</network>\n",
        "hidden.xml:2:3: invalid network name '.hidden': it must not start with '.' (at /network/name[1])",
    ),
    (
        "charref.xml",
        "<network>\n  <name>n</name>\n  <domain name='a&#1;b'/>\n</network>\n",
        "charref.xml:3:11: invalid XML character U+0001 (xmlParseCharRef: invalid xmlChar value 1) in attribute 'name'",
    ),
    (
        "txt.xml",
        "<network>\n  <name>n</name>\n  <dns>\n    <txt name='a' value='x&quot;y'/>\n  </dns>\n</network>\n",
        "txt.xml:4:19: <txt value> 'x\\\"y' cannot be written to dnsmasq's configuration",
    ),
];

#[test]
fn xml_validate_names_file_line_column_element_and_attribute() {
    let dir = tempfile::tempdir().unwrap();
    for (file, xml, want) in CASES {
        let p = dir.path().join(file);
        std::fs::write(&p, xml).unwrap();
        Command::cargo_bin("virtnet")
            .unwrap()
            .args(["xml", "validate"])
            .arg(&p)
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::contains(*want));
    }
}

#[test]
fn net_define_refuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A host file with something in it, to compare before and after.
    std::fs::write(
        d.join("ok.xml"),
        "<network><name>ok</name><forward mode='nat'/><ip address='10.8.0.1' prefix='24'/></network>",
    )
    .unwrap();
    virtnet(d)
        .arg("net-define")
        .arg(d.join("ok.xml"))
        .assert()
        .success();
    virtnet(d).args(["net-start", "ok"]).assert().success();
    let host_before = std::fs::read(d.join("host.json")).unwrap();
    let cfg_before: Vec<_> = std::fs::read_dir(d.join("cfg"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    for (file, xml, want) in CASES {
        let p = d.join(file);
        std::fs::write(&p, xml).unwrap();
        virtnet(d)
            .arg("net-define")
            .arg(&p)
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::contains(*want));
    }
    assert_eq!(std::fs::read(d.join("host.json")).unwrap(), host_before);
    let cfg_after: Vec<_> = std::fs::read_dir(d.join("cfg"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(cfg_after, cfg_before);
    virtnet(d)
        .arg("net-list")
        .assert()
        .success()
        .stdout(predicate::str::contains("ok").and(predicate::str::contains("hidden").not()));
}
