//! Issue 14 item 6, on the real kernel and file system: the modes of what
//! the driver writes do not depend on the umask, dnsmasq's hosts files are
//! readable by the user dnsmasq drops to, and no other user can take
//! `driver.lock` (which would stop every later driver from recovering
//! journals and virtnetd from starting).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const NET: &str = "<network>\n  <name>hostile</name>\n  <bridge name='virbr9'/>\n  <forward/>\n  \
<dns>\n    <host ip='192.168.99.7'><hostname>web</hostname></host>\n  </dns>\n  \
<ip address='192.168.99.1' netmask='255.255.255.0'>\n    <dhcp>\n      \
<range start='192.168.99.2' end='192.168.99.254'/>\n      \
<host mac='52:54:00:00:00:07' name='web' ip='192.168.99.7'/>\n    </dhcp>\n  </ip>\n</network>\n";

fn virtnet_bin() -> String {
    assert_cmd::cargo::cargo_bin("virtnet")
        .to_string_lossy()
        .into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `virtnet ARGS` on the simulated host in `d`, under umask `umask`.
fn virtnet_with_umask(d: &Path, umask: &str, args: &str) {
    let script = format!(
        "umask {umask} && exec '{bin}' --host fake:'{d}/host.json' --config-dir '{d}/cfg' \
         --state-dir '{d}/run' {args}",
        bin = virtnet_bin(),
        d = d.display()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn modes_do_not_depend_on_the_umask() {
    for umask in ["077", "000"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("net.xml"), NET).unwrap();
        virtnet_with_umask(d, umask, &format!("net-define '{}/net.xml'", d.display()));
        virtnet_with_umask(d, umask, "net-start hostile");
        virtnet_with_umask(d, umask, "net-autostart hostile");
        let want: &[(&str, u32)] = &[
            ("cfg", 0o700),
            ("cfg/hostile.xml", 0o600),
            ("cfg/autostart", 0o700),
            ("run", 0o755),
            ("run/driver.lock", 0o600),
            ("run/hostile.xml", 0o600),
            ("run/dnsmasq", 0o755),
            ("run/dnsmasq/hostile.conf", 0o600),
            ("run/dnsmasq/hostile.hostsfile", 0o644),
            ("run/dnsmasq/hostile.addnhosts", 0o644),
        ];
        for (p, m) in want {
            assert_eq!(
                mode(&d.join(p)),
                *m,
                "umask {umask}: {p} has mode {:o}, want {m:o}",
                mode(&d.join(p))
            );
        }
        // The hosts files are not empty: they are what dnsmasq must read.
        let hosts = std::fs::read_to_string(d.join("run/dnsmasq/hostile.hostsfile")).unwrap();
        assert!(hosts.contains("52:54:00:00:00:07"), "{hosts}");
        let addn = std::fs::read_to_string(d.join("run/dnsmasq/hostile.addnhosts")).unwrap();
        assert!(addn.contains("web"), "{addn}");
        virtnet_with_umask(d, umask, "net-destroy hostile");
    }
}

/// `flock -n -x PATH true` as uid/gid 65534 (nobody); true if it got the lock.
fn nobody_can_flock(path: &Path) -> (bool, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "flock",
            "-n",
            "-x",
        ])
        .arg(path)
        .arg("true")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn another_user_cannot_take_the_driver_lock() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Let nobody reach the state directory (tempdir makes its root 0700).
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A lock file left world-readable by an earlier version is made private.
    std::fs::create_dir(d.join("run")).unwrap();
    std::fs::write(d.join("run/driver.lock"), b"").unwrap();
    std::fs::set_permissions(
        d.join("run/driver.lock"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // The control: a world-readable file in the same directory can be
    // locked by nobody (so the check below can fail).
    let control = d.join("run/control.lock");
    std::fs::write(&control, b"").unwrap();
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = nobody_can_flock(&control);
    assert!(ok, "control: nobody could not lock a 0644 file: {err}");

    virtnet_with_umask(d, "000", "net-list");
    assert_eq!(mode(&d.join("run/driver.lock")), 0o600);
    let (ok, err) = nobody_can_flock(&d.join("run/driver.lock"));
    assert!(!ok, "nobody took driver.lock");
    assert!(err.contains("Permission denied"), "{err}");

    // A lock file owned by another user is refused, and said so.
    std::fs::remove_file(d.join("run/driver.lock")).unwrap();
    std::fs::write(d.join("run/driver.lock"), b"").unwrap();
    nix::unistd::chown(
        &d.join("run/driver.lock"),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let out = Command::new(virtnet_bin())
        .arg("--host")
        .arg(format!("fake:{}/host.json", d.display()))
        .arg("--config-dir")
        .arg(d.join("cfg"))
        .arg("--state-dir")
        .arg(d.join("run"))
        .arg("net-list")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("driver.lock") && stderr.contains("owned by uid 65534"),
        "{stderr}"
    );
}
