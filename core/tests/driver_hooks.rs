//! The network hook on the fake host (see `virtnet_core::driver::hooks`):
//! where it runs among the driver's commands, its arguments and stdin, what
//! a failure does at each point, and that without a hook file nothing
//! changes in the command stream.
//!
//! The hook files exist for real (an executable file in a temporary
//! directory, as the driver checks); the runner below answers for them
//! (records the call, exits with the status the test chose) and passes
//! every other command to the simulated host.

mod driver_common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use driver_common::*;
use virtnet_core::driver::{Driver, DriverError, UpdateFlags};
use virtnet_core::firewall::Backend;
use virtnet_core::netxml::{UpdateCommand as C, UpdateSection as S};
use virtnet_fake::FakeHost;
use virtnet_runner::{Cmd, Output, RunError, Runner};

const NET: &str = "<network>\n  <name>hooked</name>\n  <uuid>0f4f5f0e-4f41-4a5e-9a53-2d9f2b2f0a11</uuid>\n  <forward mode='nat'/>\n  <bridge name='virbr7'/>\n  <mac address='52:54:00:07:07:07'/>\n  <ip address='192.168.77.1' netmask='255.255.255.0'>\n    <dhcp>\n      <range start='192.168.77.2' end='192.168.77.100'/>\n    </dhcp>\n  </ip>\n</network>\n";

/// One command as the test sees it: a hook call (its argv and stdin) or a
/// host command (its argv).
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Hook(Vec<String>, String),
    Host(String),
}

/// The simulated host, with the hook scripts of `dir` answered here.
struct HookHost {
    host: Arc<FakeHost>,
    dir: PathBuf,
    seen: Mutex<Vec<Seen>>,
    /// (operation, exit status, stderr) to fail with.
    fail: Mutex<Vec<(String, i32, String)>>,
}

impl Runner for HookHost {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        if Path::new(&cmd.argv[0]).starts_with(&self.dir) {
            self.seen.lock().unwrap().push(Seen::Hook(
                cmd.argv.to_vec(),
                cmd.stdin.clone().unwrap_or_default(),
            ));
            let op = cmd.argv.get(2).cloned().unwrap_or_default();
            for (o, status, stderr) in self.fail.lock().unwrap().iter() {
                if *o == op {
                    return Ok(Output::failed(*status, stderr.clone()));
                }
            }
            return Ok(Output::ok(""));
        }
        self.seen
            .lock()
            .unwrap()
            .push(Seen::Host(cmd.argv.join(" ")));
        self.host.run(cmd)
    }
}

struct T {
    env: Env,
    hooks: tempfile::TempDir,
    runner: Arc<HookHost>,
}

impl T {
    fn new() -> T {
        let env = Env::new();
        let hooks = tempfile::tempdir().unwrap();
        let runner = Arc::new(HookHost {
            host: env.host.clone(),
            dir: hooks.path().to_path_buf(),
            seen: Mutex::new(Vec::new()),
            fail: Mutex::new(Vec::new()),
        });
        T { env, hooks, runner }
    }

    fn script(&self, rel: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.hooks.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.to_string_lossy().to_string()
    }

    fn driver(&self, with_hooks: bool) -> Driver {
        let mut cfg = virtnet_core::driver::DriverConfig::under(
            self.env.dir.path(),
            self.runner.clone() as Arc<dyn Runner>,
        )
        .with_backend(Backend::Iptables);
        if with_hooks {
            cfg.hooks_dir = Some(self.hooks.path().to_path_buf());
        }
        Driver::open(cfg).unwrap()
    }

    fn fail_at(&self, op: &str, status: i32, stderr: &str) {
        self.runner
            .fail
            .lock()
            .unwrap()
            .push((op.into(), status, stderr.into()));
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.runner.seen.lock().unwrap())
    }
}

/// The commands seen, the test's temporary directory replaced by `DIR`.
fn normalized(t: &T) -> Vec<Seen> {
    let dir = t.env.dir.path().to_string_lossy().to_string();
    t.take()
        .into_iter()
        .map(|s| match s {
            Seen::Host(c) => Seen::Host(c.replace(&dir, "DIR")),
            hook => hook,
        })
        .collect()
}

fn hooks_of(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Hook(argv, _) => Some(argv[1..].join(" ")),
            Seen::Host(_) => None,
        })
        .collect()
}

fn host_cmds(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Host(c) => Some(c.clone()),
            Seen::Hook(..) => None,
        })
        .collect()
}

#[test]
fn hooks_run_at_libvirts_points_with_its_arguments_and_the_xml_on_stdin() {
    let t = T::new();
    let path = t.script("network", 0o755);
    let d = t.driver(true);
    d.define(NET).unwrap();
    t.take();

    d.start("hooked").unwrap();
    let seen = t.take();
    assert_eq!(
        hooks_of(&seen),
        ["hooked start begin -", "hooked started begin -"]
    );
    // `start begin` before any host command, `started begin` after the
    // last one (dnsmasq runs).
    assert!(matches!(&seen[0], Seen::Hook(a, _) if a[0] == path && a[2] == "start"));
    assert!(matches!(seen.last().unwrap(), Seen::Hook(a, _) if a[2] == "started"));
    assert!(host_cmds(&seen).iter().any(|c| c.contains("dnsmasq")));
    let Seen::Hook(argv, stdin) = &seen[0] else {
        unreachable!()
    };
    assert_eq!(argv.len(), 5, "{argv:?}");
    assert_eq!(argv[4], "-");
    // Before the start: the definition as it is then (libvirt fills the
    // NAT port range in later, while adding the rules).
    assert!(
        stdin.starts_with("<hookData>\n  <network>\n    <name>hooked</name>\n")
            && stdin.ends_with("  </network>\n</hookData>")
            && !stdin.contains("<port start"),
        "{stdin}"
    );
    // After it: the live definition, libvirt's format indented by two, in
    // <hookData>, no newline at the end.
    let Seen::Hook(_, stdin) = seen.last().unwrap() else {
        unreachable!()
    };
    let live = d.dumpxml("hooked", false).unwrap();
    assert!(live.contains("<port start='1024' end='65535'/>"), "{live}");
    let indented: String = live.lines().map(|l| format!("  {l}\n")).collect();
    assert_eq!(*stdin, format!("<hookData>\n{indented}</hookData>"));

    d.update(
        "hooked",
        C::AddLast,
        S::IpDhcpHost,
        -1,
        "<host mac='52:54:00:00:00:42' ip='192.168.77.42'/>",
        UpdateFlags::CURRENT,
    )
    .unwrap();
    let seen = t.take();
    assert_eq!(hooks_of(&seen), ["hooked updated begin -"]);
    assert!(matches!(seen.last().unwrap(), Seen::Hook(..)));
    let Seen::Hook(_, stdin) = seen.last().unwrap() else {
        unreachable!()
    };
    assert!(
        stdin.contains("<host mac='52:54:00:00:00:42' ip='192.168.77.42'/>"),
        "the updated definition: {stdin}"
    );

    d.destroy("hooked").unwrap();
    let seen = t.take();
    assert_eq!(hooks_of(&seen), ["hooked stopped end -"]);
    assert!(matches!(seen.last().unwrap(), Seen::Hook(..)));
    assert!(host_cmds(&seen).len() > 3);
}

#[test]
fn a_failing_start_begin_hook_aborts_the_start_before_anything_is_made() {
    let t = T::new();
    let path = t.script("network", 0o700);
    let d = t.driver(true);
    d.define(NET).unwrap();
    let before = t.env.state();
    t.take();
    t.fail_at("start", 3, "no way\n");

    let e = d.start("hooked").unwrap_err();
    assert!(matches!(e, DriverError::Hook(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "Hook script execution failed: internal error: Child process ({path} hooked start begin -) unexpected exit status 3: no way"
        )
    );
    let seen = t.take();
    // No host command at all; libvirt's shutdown of the failed start runs
    // the `stopped` hook.
    assert_eq!(host_cmds(&seen), Vec::<String>::new());
    assert_eq!(
        hooks_of(&seen),
        ["hooked start begin -", "hooked stopped end -"]
    );
    assert_same_host(&before, &t.env.state(), "after the refused start");
    assert!(!d.info("hooked").unwrap().active);
    assert!(!t.env.state_dir().join("hooked.xml").exists());
    assert!(!t.env.state_dir().join("hooked.journal").exists());

    // A hook that succeeds again: the start goes through.
    t.runner.fail.lock().unwrap().clear();
    d.start("hooked").unwrap();
    assert!(d.info("hooked").unwrap().active);
    d.destroy("hooked").unwrap();
    assert_eq!(
        traces_of(&t.env.state(), "virbr7", "192.168.77."),
        Vec::<String>::new()
    );
}

#[test]
fn a_failing_started_hook_undoes_the_start_and_other_failures_are_as_libvirt() {
    let t = T::new();
    t.script("network", 0o755);
    let d = t.driver(true);
    d.define(NET).unwrap();
    t.take();

    t.fail_at("started", 1, "");
    let e = d.start("hooked").unwrap_err();
    assert!(
        e.to_string()
            .ends_with("hooked started begin -) unexpected exit status 1"),
        "{e}"
    );
    let seen = t.take();
    assert_eq!(
        hooks_of(&seen),
        [
            "hooked start begin -",
            "hooked started begin -",
            "hooked stopped end -"
        ]
    );
    assert_eq!(
        traces_of(&t.env.state(), "virbr7", "192.168.77."),
        Vec::<String>::new()
    );
    assert!(t.env.state().procs.procs.is_empty());
    assert!(!t.env.state_dir().join("hooked.xml").exists());

    // `stopped` failing is ignored: destroy succeeds.
    t.runner.fail.lock().unwrap().clear();
    t.fail_at("stopped", 1, "");
    d.start("hooked").unwrap();
    d.destroy("hooked").unwrap();
    assert_eq!(
        traces_of(&t.env.state(), "virbr7", "192.168.77."),
        Vec::<String>::new()
    );
    assert!(!d.info("hooked").unwrap().active);

    // `updated` failing fails the update, which stays made (libvirt).
    t.fail_at("updated", 2, "bad");
    let e = d
        .update(
            "hooked",
            C::AddLast,
            S::IpDhcpHost,
            -1,
            "<host mac='52:54:00:00:00:43' ip='192.168.77.43'/>",
            UpdateFlags::CONFIG,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("updated begin -) unexpected exit status 2: bad"),
        "{e}"
    );
    assert!(d.dumpxml("hooked", true).unwrap().contains("192.168.77.43"));
}

#[test]
fn without_a_runnable_hook_the_stream_is_unchanged() {
    // Reference: no hook directory configured at all.
    let reference = {
        let t = T::new();
        let d = t.driver(false);
        d.define(NET).unwrap();
        d.start("hooked").unwrap();
        d.destroy("hooked").unwrap();
        normalized(&t)
    };
    assert!(hooks_of(&reference).is_empty());
    // A hook directory that is empty, and one whose hook is not executable
    // (libvirt: a non-executable hook is no hook), or a directory.
    for setup in [
        (|_: &T| {}) as fn(&T),
        |t: &T| {
            t.script("network", 0o644);
        },
        |t: &T| {
            std::fs::create_dir_all(t.hooks.path().join("network")).unwrap();
            t.script("network.d/x", 0o600);
        },
    ] {
        let t = T::new();
        setup(&t);
        let d = t.driver(true);
        d.define(NET).unwrap();
        d.start("hooked").unwrap();
        d.destroy("hooked").unwrap();
        assert_eq!(normalized(&t), reference);
    }
}

#[test]
fn network_d_scripts_run_after_the_hook_in_name_order() {
    let t = T::new();
    let main = t.script("network", 0o755);
    let b = t.script("network.d/20-b", 0o755);
    let a = t.script("network.d/10-a", 0o755);
    t.script("network.d/15-not-executable", 0o644);
    let d = t.driver(true);
    d.define(NET).unwrap();
    t.take();
    d.start("hooked").unwrap();
    let seen = t.take();
    let scripts: Vec<String> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Hook(argv, _) if argv[2] == "start" => Some(argv[0].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(scripts, [main, a, b]);
    d.destroy("hooked").unwrap();
}
