//! Real host: the network hook is a real shell script, run by the driver
//! with the real tools in a fresh network namespace of a test thread
//! (iptables backend, an isolated network without DHCP, so no dnsmasq).
//! The script appends its arguments and stdin to a file; a second run with
//! a script that exits 1 at `start begin` shows the start refused with
//! libvirt's error and nothing of the network on the host.
//!
//! Prints "skipped: ..." when not root or a tool is missing.

use std::sync::Arc;

use virtnet_core::driver::{Driver, DriverConfig, DriverError};
use virtnet_core::firewall::Backend;
use virtnet_runner::{RealRunner, Runner};

const NET: &str = "<network>
  <name>hk</name>
  <bridge name='vnhk0'/>
  <ip address='192.168.232.1' netmask='255.255.255.0'/>
</network>
";

const SCRIPT: &str = "#!/bin/sh
log=\"$(dirname \"$0\")/log\"
echo \"ARGS $*\" >> \"$log\"
cat >> \"$log\"
echo >> \"$log\"
if [ \"$2\" = start ] && [ -e \"$(dirname \"$0\")/refuse\" ]; then
  echo 'refused by the hook' >&2
  exit 1
fi
exit 0
";

#[test]
fn a_shell_script_hook_sees_libvirts_calls_and_can_refuse_a_start() {
    if let Some(why) = virtnet_testkit::cannot_run(&["iptables", "ip", "sh"]) {
        virtnet_testkit::skip(&why);
        return;
    }
    let r = std::thread::spawn(|| {
        virtnet_testkit::netns::enter_fresh_thread_netns().map_err(|e| format!("unshare: {e}"))?;
        inner();
        Ok::<(), String>(())
    })
    .join();
    match r {
        Ok(Ok(())) => {}
        Ok(Err(why)) => virtnet_testkit::skip(&why),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn link_exists() -> bool {
    RealRunner::new()
        .run_argv(&["ip", "link", "show", "dev", "vnhk0"])
        .map(|o| o.status == 0)
        .unwrap_or(false)
}

fn inner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let script = hooks.join("network");
    std::fs::write(&script, SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = DriverConfig::new(
        dir.path().join("cfg"),
        dir.path().join("run"),
        Arc::new(RealRunner::new()) as Arc<dyn Runner>,
    )
    .with_backend(Backend::Iptables);
    cfg.hooks_dir = Some(hooks.clone());
    let d = Driver::open(cfg).unwrap();
    d.define(NET).unwrap();
    d.start("hk").unwrap();
    assert!(link_exists());
    d.destroy("hk").unwrap();
    assert!(!link_exists());

    let log = std::fs::read_to_string(hooks.join("log")).unwrap();
    let args: Vec<&str> = log.lines().filter(|l| l.starts_with("ARGS ")).collect();
    assert_eq!(
        args,
        [
            "ARGS hk start begin -",
            "ARGS hk started begin -",
            "ARGS hk stopped end -"
        ],
        "{log}"
    );
    // Each stdin is the <hookData> document (no newline of its own: the
    // script's echo ends it).
    assert_eq!(
        log.matches("<hookData>\n  <network>\n    <name>hk</name>")
            .count(),
        3,
        "{log}"
    );
    assert_eq!(
        log.matches("  </network>\n</hookData>\n").count(),
        3,
        "{log}"
    );

    // A hook refusing the start: libvirt's error, nothing on the host.
    std::fs::remove_file(hooks.join("log")).unwrap();
    std::fs::write(hooks.join("refuse"), "").unwrap();
    let e = d.start("hk").unwrap_err();
    assert!(matches!(e, DriverError::Hook(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "Hook script execution failed: internal error: Child process ({} hk start begin -) unexpected exit status 1: refused by the hook",
            script.display()
        )
    );
    assert!(!link_exists());
    let rules = RealRunner::new()
        .run_argv(&["iptables-save"])
        .map(|o| o.stdout)
        .unwrap_or_default();
    assert!(!rules.contains("vnhk0"), "{rules}");
    assert!(!dir.path().join("run/hk.xml").exists());
    let log = std::fs::read_to_string(hooks.join("log")).unwrap();
    let args: Vec<&str> = log.lines().filter(|l| l.starts_with("ARGS ")).collect();
    assert_eq!(
        args,
        ["ARGS hk start begin -", "ARGS hk stopped end -"],
        "{log}"
    );
    assert!(!d.info("hk").unwrap().active);
}
