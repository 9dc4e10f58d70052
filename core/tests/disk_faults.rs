//! A full or failing disk under the state directory (issue 15, item 3),
//! starting networks on the simulated host (no real network is touched):
//!
//! * a full tmpfs (64 KiB, in a private mount namespace: the test runs
//!   itself again under `unshare -m`): the journal cannot be written, the
//!   start is refused before any command runs;
//! * a tmpfs with room for the journal but not for the status file: the
//!   status write after a successful firewall setup fails and the start is
//!   rolled back;
//! * the same tmpfs read-only: refused before any command runs;
//! * without a namespace: a journal that is a link to `/dev/full` (every
//!   write fails with ENOSPC), and a status file whose every temporary
//!   name is a link to `/dev/full`.
//!
//! Every time: a clear error naming the file, and nothing of the network
//! left on the host, in the state directory or among dnsmasq's files.

mod driver_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use driver_common::*;
use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_fake::FakeHost;

/// A NAT network with DHCP and `hosts` static hosts (a large status
/// file, a small journal).
fn net(hosts: usize) -> String {
    let mut x = String::from(
        "<network><name>big</name><uuid>0f1e2d3c-0000-4000-8000-00000000b16b</uuid>\
         <forward mode='nat'/><bridge name='vbbig'/>\
         <ip address='10.20.0.1' netmask='255.255.0.0'><dhcp>\
         <range start='10.20.0.2' end='10.20.0.254'/>",
    );
    for i in 0..hosts {
        x.push_str(&format!(
            "<host mac='52:54:00:00:{:02x}:{:02x}' name='h{i}' ip='10.20.{}.{}'/>",
            i / 256,
            i % 256,
            1 + i / 250,
            1 + i % 250
        ));
    }
    x.push_str("</dhcp></ip></network>");
    x
}

/// Everything of network `big` that may be left behind.
fn leftovers(host: &FakeHost, cfg: &DriverConfig) -> Vec<String> {
    let mut left = traces_of(&host.state(), "vbbig", "10.20.");
    for dir in [&cfg.state_dir, &cfg.dnsmasq_dir] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains("big") {
                left.push(e.path().display().to_string());
            }
        }
    }
    left
}

fn driver(dir: &Path, host: &Arc<FakeHost>) -> (Driver, DriverConfig) {
    let cfg = DriverConfig::under(dir, host.clone()).with_backend(Backend::Nftables);
    (Driver::open(cfg.clone()).unwrap(), cfg)
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = [0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
}

fn mount_tmpfs(dir: &Path, size: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs on {}", dir.display());
}

const IN_NS: &str = "VIRTNET_TEST_IN_MOUNT_NS";

/// Runs test `name` of this binary again in a private mount namespace;
/// true when this is that run.
fn in_mount_namespace(name: &str) -> bool {
    if std::env::var_os(IN_NS).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let probe = Command::new("unshare").args(["-m", "true"]).output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        let why = format!("skipped: cannot make a mount namespace (unshare -m): {probe:?}");
        assert!(std::env::var_os("VIRTNET_REQUIRE_REAL").is_none(), "{why}");
        eprintln!("{why}");
        return false;
    }
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_NS, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "in the mount namespace:\n{text}");
    assert!(text.contains("1 passed"), "{text}");
    false
}

#[test]
fn full_tmpfs_refuses_the_start_before_any_change() {
    if !in_mount_namespace("full_tmpfs_refuses_the_start_before_any_change") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    mount_tmpfs(&mnt, "64k");
    let host = Arc::new(FakeHost::new());
    let (d, cfg) = driver(&mnt, &host);
    d.define(&net(2)).unwrap();
    fill(&mnt.join("filler"));
    host.take_records();
    let before = host.state();
    let e = d.start("big").unwrap_err().to_string();
    assert!(
        e.contains("big.journal") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    assert!(host.take_records().is_empty(), "a command ran");
    assert_same_host(&before, &host.state(), "full disk");
    assert_eq!(leftovers(&host, &cfg), Vec::<String>::new());
    assert!(!d.info("big").unwrap().active);

    // The same file system read-only (the driver's files closed first, as
    // remount requires): refused the same way, before any command.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    drop(d);
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    let d = Driver::open(cfg.clone()).unwrap();
    let e = d.start("big").unwrap_err().to_string();
    assert!(e.contains("Read-only file system"), "{e}");
    assert!(host.take_records().is_empty(), "a command ran");
    assert_same_host(&before, &host.state(), "read-only");
    assert_eq!(leftovers(&host, &cfg), Vec::<String>::new());
}

#[test]
fn status_write_failing_after_the_firewall_rolls_the_start_back() {
    if !in_mount_namespace("status_write_failing_after_the_firewall_rolls_the_start_back") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    mount_tmpfs(&mnt, "512k");
    let host = Arc::new(FakeHost::new());
    // Definitions and dnsmasq's files elsewhere: on the tmpfs, only the
    // journal, dnsmasq's pid file and the status file.
    let mut cfg = DriverConfig::under(&mnt, host.clone()).with_backend(Backend::Nftables);
    cfg.config_dir = tmp.path().join("config");
    cfg.dnsmasq_dir = tmp.path().join("dnsmasq");
    let d = Driver::open(cfg.clone()).unwrap();
    d.define(&net(1500)).unwrap();
    // Warm up (private chains, kept), so "before" is what a destroy leaves.
    d.start("big").unwrap();
    let status_size = std::fs::metadata(cfg.state_dir.join("big.xml"))
        .unwrap()
        .len();
    assert!(status_size > 64 * 1024, "status only {status_size} bytes");
    d.destroy("big").unwrap();
    let before = host.state();
    // Room for 32 KiB: the journal and the pid file, not the status file.
    let filler = mnt.join("filler");
    fill(&filler);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 32 * 1024).unwrap();
    drop(f);
    host.take_records();
    let e = d.start("big").unwrap_err().to_string();
    assert!(
        e.contains("big.xml") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(!e.contains("journal"), "the journal was written: {e}");
    // The firewall was set up before the status write failed.
    let ran: Vec<String> = host
        .take_records()
        .iter()
        .map(|r| r.cmd.argv.join(" "))
        .collect();
    assert!(
        ran.iter().any(|c| c.contains("nft") && c.contains("vbbig")),
        "{ran:?}"
    );
    assert!(ran.iter().any(|c| c.contains("dnsmasq")), "{ran:?}");
    assert_same_host(&before, &host.state(), "status write failed");
    assert_eq!(leftovers(&host, &cfg), Vec::<String>::new());
    assert!(!d.info("big").unwrap().active);
    // With room again, the network starts.
    std::fs::remove_file(&filler).unwrap();
    d.start("big").unwrap();
    d.destroy("big").unwrap();
}

fn small_env() -> (tempfile::TempDir, Arc<FakeHost>, Driver, DriverConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let host = Arc::new(FakeHost::new());
    let (d, cfg) = driver(tmp.path(), &host);
    d.define(&net(2)).unwrap();
    (tmp, host, d, cfg)
}

#[test]
fn a_journal_on_dev_full_refuses_the_start_before_any_change() {
    let (_tmp, host, d, cfg) = small_env();
    let journal: PathBuf = cfg.state_dir.join("big.journal");
    std::os::unix::fs::symlink("/dev/full", &journal).unwrap();
    host.take_records();
    let before = host.state();
    let e = d.start("big").unwrap_err().to_string();
    assert!(
        e.contains("big.journal") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    assert!(host.take_records().is_empty(), "a command ran");
    assert_same_host(&before, &host.state(), "journal on /dev/full");
    assert_eq!(leftovers(&host, &cfg), Vec::<String>::new());
    assert!(Path::new("/dev/full").exists());
}

#[test]
fn a_status_file_that_cannot_be_written_rolls_the_start_back() {
    let (_tmp, host, d, cfg) = small_env();
    let before = host.state();
    // The status file is written through a fresh temporary file beside it
    // (`O_EXCL | O_NOFOLLOW`, then renamed): every temporary name it may
    // take is a link to /dev/full, so it cannot be written.
    let names: Vec<PathBuf> = (0..16)
        .map(|k| {
            let mut n = format!(".big.xml.tmp{}", std::process::id());
            if k > 0 {
                n.push_str(&format!(".{k}"));
            }
            cfg.state_dir.join(n)
        })
        .collect();
    for n in &names {
        std::os::unix::fs::symlink("/dev/full", n).unwrap();
    }
    host.take_records();
    let e = d.start("big").unwrap_err().to_string();
    assert!(e.contains("big.xml"), "{e}");
    let ran = host.take_records();
    assert!(ran.iter().any(|r| r.cmd.argv.join(" ").contains("dnsmasq")));
    for n in &names {
        std::fs::remove_file(n).unwrap();
    }
    let after = host.state();
    assert_eq!(before.ip.links, after.ip.links);
    assert!(after.procs.procs.is_empty(), "dnsmasq left running");
    assert_eq!(leftovers(&host, &cfg), Vec::<String>::new());
    assert!(!d.info("big").unwrap().active);
    d.start("big").unwrap();
}
