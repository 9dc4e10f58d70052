//! Shared helpers of the driver tests: a fake host, temporary config and
//! state directories, and the networks of the golden data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_fake::{FakeHost, HostState, Section};

pub fn golden(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden")).join(rel)
}

pub fn read_golden(rel: &str) -> String {
    std::fs::read_to_string(golden(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A libvirt test network (tests/networkxml2xmlin/NAME.xml).
pub fn libvirt_net(name: &str) -> String {
    read_golden(&format!(
        "upstream/libvirt-11.3.0/tests/networkxml2xmlin/{name}.xml"
    ))
}

/// The network.xml of a real-daemon capture case.
pub fn capture_net(case: &str) -> String {
    read_golden(&format!(
        "upstream/captures/libvirt-11.3.0/{case}/iptables/network.xml"
    ))
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub host: Arc<FakeHost>,
    /// What drivers run commands through: the host behind a fault plan
    /// (none unless a test sets one).
    pub faults: Arc<virtnet_testkit::FaultRunner>,
}

impl Env {
    pub fn new() -> Env {
        let host = Arc::new(FakeHost::new());
        Env {
            dir: tempfile::tempdir().unwrap(),
            faults: Arc::new(virtnet_testkit::FaultRunner::new(host.clone())),
            host,
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn cfg(&self) -> DriverConfig {
        DriverConfig::under(
            self.dir.path(),
            self.faults.clone() as Arc<dyn virtnet_runner::Runner>,
        )
    }

    /// A driver (a daemon process) with a fixed backend.
    pub fn driver(&self, backend: Backend) -> Driver {
        Driver::open(self.cfg().with_backend(backend)).unwrap()
    }

    /// A driver reading network.conf.
    pub fn driver_from_conf(&self) -> Driver {
        Driver::open(self.cfg()).unwrap()
    }

    pub fn write_conf(&self, text: &str) {
        std::fs::create_dir_all(self.config_dir()).unwrap();
        std::fs::write(self.config_dir().join("network.conf"), text).unwrap();
    }

    pub fn state(&self) -> HostState {
        self.host.state()
    }
}

/// The dump of every section, for equality checks with readable diffs.
pub fn dump(s: &HostState) -> String {
    Section::ALL
        .iter()
        .map(|sec| format!("### {}\n{}", sec.name(), s.dump_section(*sec)))
        .collect()
}

pub fn assert_same_host(expected: &HostState, actual: &HostState, what: &str) {
    let (a, b) = (dump(expected), dump(actual));
    if a != b {
        panic!(
            "{what}: host differs\n{}",
            virtnet_fake::diff_text(&a, &b, "expected", "actual")
        );
    }
}

/// Does anything of network bridge `br` remain on the host (a rule naming
/// it, the link, a tc object, a dnsmasq process for it)?
pub fn traces_of(host: &HostState, br: &str, subnet: &str) -> Vec<String> {
    dump(host)
        .lines()
        .filter(|l| l.contains(br) || (!subnet.is_empty() && l.contains(subnet)))
        .map(str::to_string)
        .collect()
}

/// The network XML with every `<tftp root='...'>` pointing at a directory
/// that exists (created under `dir`).
pub fn with_existing_tftp_root(xml: &str, dir: &std::path::Path) -> String {
    let root = dir.join("tftproot");
    std::fs::create_dir_all(&root).unwrap();
    let mut out = String::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<tftp root=") {
        let start = i + "<tftp root=".len();
        let quote = &rest[start..start + 1];
        let end = rest[start + 1..].find(quote).unwrap() + start + 1;
        out.push_str(&rest[..start + 1]);
        out.push_str(&root.to_string_lossy());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
