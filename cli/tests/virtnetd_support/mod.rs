//! Helpers for the tests that run the real `virtnetd` binary.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use virtnet_daemon::{Client, SocketKind};

pub const VIRTNETD: &str = env!("CARGO_BIN_EXE_virtnetd");
/// The client the daemon tests drive virtnetd with (`--connect`).
pub const VIRTNET: &str = env!("CARGO_BIN_EXE_virtnet");
pub const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";
/// The `--fdname=` of the three sockets as virtnetd's socket units name
/// them (read-write, read-only, admin).
pub const ACTIVATION_NAMES: &str = "virtnetd.socket:virtnetd-ro.socket:virtnetd-admin.socket";

/// Prints `skipped: …` and returns from the test when
/// systemd-socket-activate is not installed (needs `#[macro_use]` on the
/// `mod virtnetd_support;` and `use virtnetd_support::*;`).
#[allow(unused_macros)]
macro_rules! require_activate {
    () => {
        if !has_socket_activate() {
            eprintln!("skipped: {SOCKET_ACTIVATE} not installed");
            return;
        }
    };
}

/// A daemon's directories.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        Dirs {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }
    pub fn runtime(&self) -> PathBuf {
        self.root().join("run")
    }
    pub fn sock(&self, kind: SocketKind) -> PathBuf {
        kind.path_in(&self.runtime())
    }
    /// `virtnetd` arguments for these directories plus `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--host".into(),
            format!("fake:{}", self.root().join("host").display()),
            "--config-dir".into(),
            self.root().join("etc").display().to_string(),
            "--state-dir".into(),
            self.root().join("state").display().to_string(),
            "--runtime-dir".into(),
            self.runtime().display().to_string(),
            "--log-level".into(),
            "debug".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }
}

/// A spawned process whose stderr is captured to a file; killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        Proc {
            child: cmd.spawn().unwrap(),
            log,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Wait up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.status = Some(st);
                return self.status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `virtnetd` run directly (own sockets).
pub fn spawn_daemon(dirs: &Dirs, extra: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(VIRTNETD);
    cmd.args(dirs.args(extra));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES");
    Proc::spawn(cmd, dirs.root().join("virtnetd.log"))
}

/// `virtnetd` under `systemd-socket-activate` listening on `listen` paths
/// with optional `--fdname=` and extra `-E` settings.
pub fn spawn_activated(
    dirs: &Dirs,
    listen: &[PathBuf],
    fdnames: Option<&str>,
    setenv: &[&str],
    extra: &[&str],
) -> Proc {
    let mut cmd = Command::new(SOCKET_ACTIVATE);
    for p in listen {
        cmd.arg("-l").arg(p);
    }
    if let Some(n) = fdnames {
        cmd.arg(format!("--fdname={n}"));
    }
    for e in setenv {
        cmd.arg("-E").arg(e);
    }
    cmd.arg(VIRTNETD).args(dirs.args(extra));
    cmd.env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES");
    Proc::spawn(cmd, dirs.root().join("activate.log"))
}

/// Wait until `path` exists (socket bound).
pub fn wait_for_path(path: &Path, proc_: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        if let Some(st) = proc_.wait_exit(Duration::from_millis(0)) {
            panic!(
                "process exited ({st}) before {} appeared:\n{}",
                path.display(),
                proc_.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared:\n{}",
            path.display(),
            proc_.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connect (retrying while the daemon starts up).
pub fn connect(path: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(path) {
            Ok(c) => {
                c.set_timeout(Some(Duration::from_secs(20))).unwrap();
                return c;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    }
}

/// A raw connection to a socket that may exist before it listens (the path
/// appears at bind(2), connections are refused until listen(2)): retried
/// while refused, for at most 20 s.
pub fn connect_stream(path: &Path) -> std::os::unix::net::UnixStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot connect to {}: {e}", path.display()),
        }
    }
}

pub fn has_socket_activate() -> bool {
    Path::new(SOCKET_ACTIVATE).exists()
}

/// A finished process as (exit status, stdout, stderr); the status is -1
/// when a signal ended it.
pub fn outcome(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `virtnet` embedded (no daemon) on the simulated host laid out as a
/// daemon's directories are ([`Dirs::args`]) under `root`: the host in
/// `root/host`, the configuration in `root/etc`, the state in `root/state`.
pub fn embedded_cmd(root: &Path) -> Command {
    let mut c = Command::new(VIRTNET);
    c.arg("--host")
        .arg(format!("fake:{}", root.join("host").display()))
        .arg("--config-dir")
        .arg(root.join("etc"))
        .arg("--state-dir")
        .arg(root.join("state"));
    c
}

/// [`embedded_cmd`] `ARGS` → (exit status, stdout, stderr).
pub fn run_embedded(root: &Path, args: &[&str]) -> (i32, String, String) {
    outcome(embedded_cmd(root).args(args).output().unwrap())
}

/// `virtnet ARGS` → (exit status, stdout, stderr).
pub fn virtnet(args: &[&str]) -> (i32, String, String) {
    outcome(Command::new(VIRTNET).args(args).output().unwrap())
}

/// The NAT network with DHCP that the tests driving virtnetd through a
/// client define, start and query (name `web`, bridge `vbweb`).
pub const WEB_XML: &str = "<network>
  <name>web</name>
  <uuid>5d2a3c1e-0000-4000-8000-000000000001</uuid>
  <forward mode='nat'/>
  <bridge name='vbweb' stp='on' delay='0'/>
  <mac address='52:54:00:0a:0b:0c'/>
  <ip address='192.168.140.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.140.2' end='192.168.140.254'/>
    </dhcp>
  </ip>
</network>
";

/// Writes [`WEB_XML`] to `dir/web.xml` and returns that path.
pub fn write_web_xml(dir: &Path) -> PathBuf {
    let xml = dir.join("web.xml");
    std::fs::write(&xml, WEB_XML).unwrap();
    xml
}
