//! Set-up shared by the `virtnet` command-line tests (`mod common;` in each
//! test file): the arguments that put `virtnet` on a simulated host kept in
//! a test's directory, the `network.conf` choosing a firewall backend, and
//! the directory and script runner of the tests that drive the real host
//! inside a fresh network namespace.
//!
//! Each test crate uses only some of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::Path;

use assert_cmd::Command;

/// `virtnet` on a simulated host kept under `dir`: the host in
/// `dir/host.json`, the configuration in `dir/cfg`, the state in `dir/run`.
pub fn virtnet(dir: &Path) -> Command {
    on_fake_host(Command::cargo_bin("virtnet").unwrap(), dir)
}

/// `cmd` (a `virtnet` the caller prepared, e.g. with its own environment)
/// given the simulated-host arguments of [`virtnet`].
pub fn on_fake_host(mut cmd: Command, dir: &Path) -> Command {
    cmd.arg("--host")
        .arg(format!("fake:{}", dir.join("host.json").display()))
        .arg("--config-dir")
        .arg(dir.join("cfg"))
        .arg("--state-dir")
        .arg(dir.join("run"));
    cmd
}

/// Writes `dir/cfg/network.conf` (creating `dir/cfg`) choosing the firewall
/// `backend`, as libvirt's `firewall_backend = "..."` line.
pub fn set_firewall_backend(dir: &Path, backend: &str) {
    std::fs::create_dir_all(dir.join("cfg")).unwrap();
    std::fs::write(
        dir.join("cfg/network.conf"),
        format!("firewall_backend = \"{backend}\"\n"),
    )
    .unwrap();
}

/// The directory of a real-host test: mode 0755 (the real dnsmasq, which
/// drops its privileges, reads its files below it) and the iptables backend
/// chosen in `cfg/network.conf`.
pub fn real_host_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    set_firewall_backend(dir.path(), "iptables");
    dir
}

/// Runs the shell `script` in a fresh network namespace and returns its
/// output; the script must exit 0 (its stderr and `more` are shown when it
/// does not).
pub fn sh_in_fresh_netns(script: &str, more: impl FnOnce() -> String) -> std::process::Output {
    let out = virtnet_testkit::command_in_fresh_netns("sh")
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        more()
    );
    out
}
