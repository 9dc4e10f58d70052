//! The real `virsh` (Debian's libvirt-clients, a client nobody here wrote)
//! against the real virtnetd on a simulated host, through libvirt's remote
//! protocol (`daemon/src/rpc`):
//!
//! - every `net-*` verb: exit status and output as virsh prints them
//!   against libvirt's network daemon, and the same exit status and final
//!   host as embedded `virtnet` running the same operations;
//! - lifecycle events reach `virsh net-event`, also for changes made
//!   through the JSON protocol on the same socket;
//! - the read-only socket serves reads and refuses every write with
//!   libvirt's error;
//! - bad packets get libvirt's error reply or a closed connection, never a
//!   crash or a hang of other clients;
//! - 32 concurrent virsh clients give the same host as running the same
//!   commands one by one.
//!
//! Every test prints `skipped: …` and passes when virsh is not installed
//! (CI installs it, `.ci/run`).

#[path = "../../daemon/tests/daemon_common/mod.rs"]
mod daemon_common;
mod virtnetd_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon_common::*;
use serde_json::json;
use virtnet_core::firewall::Backend;
use virtnet_daemon::SocketKind;
use virtnet_fake::HostState;
use virtnetd_support::*;

fn virsh_path() -> Option<PathBuf> {
    virtnet_runner::find_in_path("virsh")
}

macro_rules! require_virsh {
    () => {
        if virsh_path().is_none() {
            eprintln!("skipped: virsh not installed (Debian package libvirt-clients)");
            return;
        }
    };
}

/// virtnetd with its own sockets plus libvirt's names (`--libvirt-sockets`).
struct Daemon {
    dirs: Dirs,
    proc_: Proc,
}

impl Daemon {
    fn start() -> Daemon {
        let dirs = Dirs::new();
        let mut proc_ = spawn_daemon(&dirs, &["--libvirt-sockets"], &[]);
        let admin = dirs.runtime().join("virtnetworkd-admin-sock");
        wait_for_path(&admin, &mut proc_);
        connect(&dirs.sock(SocketKind::Admin));
        Daemon { dirs, proc_ }
    }

    fn rw(&self) -> PathBuf {
        self.dirs.runtime().join("virtnetworkd-sock")
    }

    fn ro(&self) -> PathBuf {
        self.dirs.runtime().join("virtnetworkd-sock-ro")
    }

    fn host(&self) -> HostState {
        HostState::load_file(&self.dirs.root().join("host")).unwrap()
    }

    fn alive(&mut self) -> bool {
        self.proc_.wait_exit(Duration::from_millis(0)).is_none()
    }

    fn status(&self) -> serde_json::Value {
        connect(&self.dirs.sock(SocketKind::Admin))
            .call("daemon.status", json!({}))
            .unwrap()
    }
}

fn uri(sock: &Path) -> String {
    format!("network:///system?socket={}", sock.display())
}

fn virsh_cmd(home: &Path, sock: &Path, read_only: bool, args: &[&str]) -> Command {
    let mut c = Command::new(virsh_path().unwrap());
    if read_only {
        c.arg("-r");
    }
    c.arg("-c").arg(uri(sock)).args(args);
    c.env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_RUNTIME_DIR", home)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("VIRSH_DEFAULT_CONNECT_URI")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    c
}

/// `virsh -c URI ARGS` → (exit status, stdout, stderr).
fn virsh(home: &Path, sock: &Path, read_only: bool, args: &[&str]) -> (i32, String, String) {
    outcome(virsh_cmd(home, sock, read_only, args).output().unwrap())
}

const WEB_UUID: &str = "5d2a3c1e-0000-4000-8000-000000000001";

/// What virsh prints for `net-list` (libvirt's table: columns padded to
/// the widest entry, a dash line two wider than the header, a blank line
/// after the table).
fn net_list_table(rows: &[(&str, &str, &str, &str)]) -> String {
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let ws = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(5);
    let header = format!(
        " {:<w$}   {:<ws$}   {:<9}   {}",
        "Name", "State", "Autostart", "Persistent"
    );
    let mut out = format!("{header}\n{}\n", "-".repeat(header.len() + 2));
    for r in rows {
        out.push_str(&format!(
            " {:<w$}   {:<ws$}   {:<9}   {}\n",
            r.0, r.1, r.2, r.3
        ));
    }
    out.push('\n');
    out
}

struct Step {
    virsh: Vec<String>,
    /// The same operation with embedded `virtnet`, when it has the verb.
    virtnet: Option<Vec<String>>,
    code: i32,
    /// Exact stdout, when given.
    stdout: Option<String>,
    /// Lines stderr must equal (virsh's `error: …` lines), when given.
    stderr: Option<String>,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn step(virsh: &[&str], virtnet: Option<&[&str]>, code: i32) -> Step {
    Step {
        virsh: s(virsh),
        virtnet: virtnet.map(s),
        code,
        stdout: None,
        stderr: None,
    }
}

impl Step {
    fn out(mut self, o: &str) -> Step {
        self.stdout = Some(o.to_string());
        self
    }
    fn err(mut self, e: &str) -> Step {
        self.stderr = Some(e.to_string());
        self
    }
}

#[test]
fn every_net_verb_through_virsh_matches_libvirt_formats_and_embedded_virtnet() {
    require_virsh!();
    let mut d = Daemon::start();
    let files = tempfile::tempdir().unwrap();
    let home = files.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let xml = write_web_xml(files.path());
    let xml_s = xml.display().to_string();
    let x = xml_s.as_str();
    let update_host = "<host mac='52:54:00:00:00:05' ip='192.168.140.5'/>";
    let steps = vec![
        step(&["net-list", "--all"], Some(&["net-list"]), 0).out(&net_list_table(&[])),
        step(&["net-define", x], Some(&["net-define", x]), 0)
            .out(&format!("Network web defined from {x}\n\n")),
        step(&["net-list", "--all"], None, 0)
            .out(&net_list_table(&[("web", "inactive", "no", "yes")])),
        step(&["net-list"], None, 0).out(&net_list_table(&[])),
        step(&["net-list", "--inactive", "--name"], None, 0).out("web\n\n"),
        step(&["net-list", "--all", "--uuid"], None, 0).out(&format!("{WEB_UUID}\n\n")),
        step(&["net-list", "--all", "--transient"], None, 0).out(&net_list_table(&[])),
        step(&["net-uuid", "web"], None, 0).out(&format!("{WEB_UUID}\n\n")),
        step(&["net-name", WEB_UUID], None, 0).out("web\n\n"),
        step(&["net-dumpxml", "web"], Some(&["net-dumpxml", "web"]), 0),
        step(&["net-start", "web"], Some(&["net-start", "web"]), 0)
            .out("Network web started\n\n"),
        step(&["net-start", "web"], Some(&["net-start", "web"]), 1).err(
            "error: Failed to start network web\nerror: Requested operation is not valid: network is already active\n",
        ),
        step(&["net-info", "web"], None, 0).out(&format!(
            "Name:           web\nUUID:           {WEB_UUID}\nActive:         yes\nPersistent:     yes\nAutostart:      no\nBridge:         vbweb\n\n"
        )),
        step(&["net-dumpxml", "web"], Some(&["net-dumpxml", "web"]), 0),
        step(
            &["net-dumpxml", "--inactive", "web"],
            Some(&["net-dumpxml", "--inactive", "web"]),
            0,
        ),
        step(&["net-list"], None, 0)
            .out(&net_list_table(&[("web", "active", "no", "yes")])),
        step(&["net-autostart", "web"], Some(&["net-autostart", "web"]), 0)
            .out("Network web marked as autostarted\n\n"),
        step(&["net-list", "--autostart", "--name"], None, 0).out("web\n\n"),
        step(&["net-list", "--no-autostart", "--name"], None, 0).out("\n"),
        step(
            &["net-autostart", "--disable", "web"],
            Some(&["net-autostart", "--disable", "web"]),
            0,
        )
        .out("Network web unmarked as autostarted\n\n"),
        step(
            &["net-update", "web", "add", "ip-dhcp-host", update_host],
            Some(&["net-update", "web", "add", "ip-dhcp-host", update_host]),
            0,
        )
        .out("Updated network web live state\n"),
        // The host is in the definition now: the same add is refused.
        step(&["net-update", "web", "add", "ip-dhcp-host", update_host], None, 1),
        // No lease yet: virsh's empty table, as `virtnet net-dhcp-leases`.
        step(&["net-dhcp-leases", "web"], Some(&["net-dhcp-leases", "web"]), 0),
        step(&["net-dhcp-leases", "nosuch"], Some(&["net-dhcp-leases", "nosuch"]), 1),
        // web is running: a transient network of the same name is refused.
        step(&["net-create", x], Some(&["net-create", x]), 1),
        step(&["net-destroy", "web"], Some(&["net-destroy", "web"]), 0)
            .out("Network web destroyed\n\n"),
        step(&["net-destroy", "web"], Some(&["net-destroy", "web"]), 1).err(
            "error: Failed to destroy network web\nerror: Requested operation is not valid: network 'web' is not active\n",
        ),
        step(&["net-start", "web"], Some(&["net-start", "web"]), 0),
        step(&["net-undefine", "web"], Some(&["net-undefine", "web"]), 0)
            .out("Network web has been undefined\n\n"),
        step(&["net-list", "--all", "--transient"], None, 0)
            .out(&net_list_table(&[("web", "active", "no", "no")])),
        step(&["net-autostart", "web"], Some(&["net-autostart", "web"]), 1).err(
            "error: failed to mark network web as autostarted\nerror: Requested operation is not valid: cannot set autostart for transient network\n",
        ),
        step(&["net-undefine", "web"], Some(&["net-undefine", "web"]), 1),
        step(&["net-destroy", "web"], Some(&["net-destroy", "web"]), 0),
        step(&["net-info", "web"], Some(&["net-info", "web"]), 1).err(
            "error: failed to get network 'web'\nerror: Network not found: no network with matching name 'web'\n",
        ),
        step(&["net-name", WEB_UUID], None, 1).err(&format!(
            "error: failed to get network '{WEB_UUID}'\nerror: Network not found: no network with matching uuid '{WEB_UUID}'\n"
        )),
        // A transient network: created running, gone after its destroy.
        step(&["net-create", x], Some(&["net-create", x]), 0)
            .out(&format!("Network web created from {x}\n\n")),
        step(&["net-list", "--transient", "--name"], None, 0).out("web\n\n"),
        step(&["net-destroy", "web"], Some(&["net-destroy", "web"]), 0),
        step(&["net-list", "--all", "--name"], None, 0).out("\n"),
        step(&["net-define", x], Some(&["net-define", x]), 0),
        step(&["net-start", "web"], Some(&["net-start", "web"]), 0),
    ];

    let emb = tempfile::tempdir().unwrap();
    for st in &steps {
        let args: Vec<&str> = st.virsh.iter().map(String::as_str).collect();
        let (code, out, err) = virsh(&home, &d.rw(), false, &args);
        assert_eq!(
            code, st.code,
            "virsh {args:?}: stdout {out:?} stderr {err:?}"
        );
        if let Some(o) = &st.stdout {
            assert_eq!(&out, o, "virsh {args:?} stdout");
        }
        if let Some(e) = &st.stderr {
            assert_eq!(&err, e, "virsh {args:?} stderr");
        }
        if let Some(v) = &st.virtnet {
            let a: Vec<&str> = v.iter().map(String::as_str).collect();
            let (vcode, vout, _) = run_embedded(emb.path(), &a);
            assert_eq!(vcode, code, "virtnet {v:?} vs virsh {args:?}");
            if v[0] == "net-dumpxml" {
                // virsh prints the daemon's XML and a blank line.
                assert_eq!(out, format!("{vout}\n"), "virsh {args:?} vs virtnet");
            }
            if v[0] == "net-dhcp-leases" && code == 0 {
                // virtnet prints virsh's table (virsh ends with a blank line).
                assert_eq!(out.trim_end(), vout.trim_end(), "virsh {args:?} vs virtnet");
            }
        }
    }
    // A lease (written by the leases helper dnsmasq runs, in both state
    // directories): virsh prints it as virtnet does, also filtered by MAC.
    for state_dir in [d.dirs.root().join("state"), emb.path().join("state")] {
        let h = Command::new(env!("CARGO_BIN_EXE_virtnet-leaseshelper"))
            .env_clear()
            .env("DNSMASQ_INTERFACE", "vbweb")
            .env("DNSMASQ_LEASE_EXPIRES", "4102444800")
            .env("VIRTNET_LEASES_DIR", state_dir.join("dnsmasq"))
            .args(["add", "52:54:00:12:34:56", "192.168.140.50", "guest1"])
            .output()
            .unwrap();
        assert!(h.status.success(), "{}", String::from_utf8_lossy(&h.stderr));
    }
    for extra in [
        &[][..],
        &["--mac", "52:54:00:12:34:56"][..],
        &["--mac", "52:54:00:99:99:99"][..],
    ] {
        let mut a = vec!["net-dhcp-leases", "web"];
        a.extend_from_slice(extra);
        let mut vs = virsh_cmd(&home, &d.rw(), false, &a);
        let out = vs.env("TZ", "UTC").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = embedded_cmd(emb.path())
            .args(&a)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let vout = String::from_utf8_lossy(&v.stdout).into_owned();
        assert_eq!(out.trim_end(), vout.trim_end(), "virsh {a:?} vs virtnet");
        assert_eq!(
            out.contains("192.168.140.50/24"),
            extra.len() < 2 || extra[1].ends_with("56"),
            "{out}"
        );
    }

    // The same final host as embedded virtnet, and the daemon is fine.
    let emb_host = HostState::load_file(&emb.path().join("host")).unwrap();
    assert_same_objects_roots(
        "virsh through virtnetd vs embedded virtnet",
        &emb_host,
        &d.host(),
        &[d.dirs.root(), emb.path()],
    );
    assert!(d.host().ip.links.iter().any(|l| l.name == "vbweb"));
    // libvirt's connection calls.
    let (code, out, _) = virsh(&home, &d.rw(), false, &["uri"]);
    assert_eq!(
        (code, out.as_str()),
        (0, format!("{}\n\n", uri(&d.rw())).as_str())
    );
    let (code, _, err) = virsh(&home, &d.rw(), false, &["version"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "this function is not supported by the connection driver: virConnectGetVersion"
        ),
        "{err}"
    );
    // virtnetd's own socket name speaks libvirt's protocol too.
    let own = d.dirs.sock(SocketKind::ReadWrite);
    let (code, out, _) = virsh(&home, &own, false, &["net-list", "--name"]);
    assert_eq!((code, out.as_str()), (0, "web\n\n"));
    assert!(d.alive());
}

/// Wait (bounded) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lifecycle_events_reach_virsh_net_event_from_either_protocol() {
    require_virsh!();
    let d = Daemon::start();
    let files = tempfile::tempdir().unwrap();
    let home = files.path().to_path_buf();
    let out_file = files.path().join("events.out");
    let ev = virsh_cmd(
        &home,
        &d.rw(),
        false,
        &[
            "net-event",
            "--loop",
            "--timeout",
            "60",
            "--event",
            "lifecycle",
        ],
    );
    // stdout and stderr both go to `out_file` (killed on drop).
    let ev = Proc::spawn(ev, out_file.clone());
    // One-shot, limited to "web": returns after web's first event.
    let one = virsh_cmd(
        &home,
        &d.rw(),
        false,
        &[
            "net-event",
            "--network",
            "web",
            "--event",
            "lifecycle",
            "--timeout",
            "60",
        ],
    );
    wait_until("the first registration", || {
        d.status()["driver"]["event_subscribers"] == 1
    });
    // `--network web` must find web: define it first, through JSON.
    connect(&d.dirs.sock(SocketKind::ReadWrite))
        .call("net.define", json!({"xml": WEB_XML}))
        .unwrap();
    let mut one = one;
    let one = one.stdout(Stdio::piped()).spawn().unwrap();
    wait_until("the second registration", || {
        d.status()["driver"]["event_subscribers"] == 2
    });
    let r = |a: &[&str]| virsh(&home, &d.rw(), false, a);
    assert_eq!(r(&["net-start", "web"]).0, 0);
    assert_eq!(r(&["net-destroy", "web"]).0, 0);
    assert_eq!(r(&["net-undefine", "web"]).0, 0);
    let one = one.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&one.stdout),
        "event 'lifecycle' for network web: Started\nevents received: 1\n\n"
    );
    assert!(one.status.success());
    let expected = "event 'lifecycle' for network web: Defined\n\
                    event 'lifecycle' for network web: Started\n\
                    event 'lifecycle' for network web: Stopped\n\
                    event 'lifecycle' for network web: Undefined\n";
    wait_until("four events", || {
        std::fs::read_to_string(&out_file).unwrap_or_default() == expected
    });
    ev.signal(nix::sys::signal::Signal::SIGINT);
    let mut ev = ev;
    ev.wait_exit(Duration::from_secs(20)).unwrap();
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        format!("{expected}event loop interrupted\nevents received: 4\n\n")
    );
    // Connections gone: so are their subscriptions.
    wait_until("no subscriber", || {
        d.status()["driver"]["event_subscribers"] == 0
    });
}

#[test]
fn read_only_socket_serves_reads_and_refuses_every_write_with_libvirts_error() {
    require_virsh!();
    let d = Daemon::start();
    let files = tempfile::tempdir().unwrap();
    let home = files.path().to_path_buf();
    let xml = write_web_xml(files.path());
    let x = xml.display().to_string();
    assert_eq!(virsh(&home, &d.rw(), false, &["net-define", &x]).0, 0);
    for ro_flag in [true, false] {
        let r = |a: &[&str]| virsh(&home, &d.ro(), ro_flag, a);
        let (code, out, _) = r(&["net-list", "--all", "--name"]);
        assert_eq!((code, out.as_str()), (0, "web\n\n"));
        let (code, out, _) = r(&["net-dumpxml", "web"]);
        assert_eq!(code, 0);
        assert!(out.contains("<name>web</name>"), "{out}");
        assert_eq!(r(&["net-info", "web"]).0, 0);
        for (args, function) in [
            (vec!["net-define", x.as_str()], "virNetworkDefineXML"),
            (vec!["net-start", "web"], "virNetworkCreate"),
            (vec!["net-destroy", "web"], "virNetworkDestroy"),
            (vec!["net-undefine", "web"], "virNetworkUndefine"),
            (vec!["net-autostart", "web"], "virNetworkSetAutostart"),
            (vec!["net-create", x.as_str()], "virNetworkCreateXML"),
            (
                vec![
                    "net-update",
                    "web",
                    "delete",
                    "ip-dhcp-host",
                    "<host mac='52:54:00:00:00:05'/>",
                ],
                "virNetworkUpdate",
            ),
        ] {
            let (code, _, err) = r(&args);
            assert_eq!(code, 1, "{args:?}");
            // Without -r the daemon refuses; with -r libvirt's client
            // library refuses before sending, with the same message.
            assert!(
                err.contains(&format!(
                    "error: operation forbidden: read only access prevents {function}"
                )),
                "{args:?} (-r {ro_flag}): {err}"
            );
        }
    }
    let (_, out, _) = virsh(&home, &d.rw(), false, &["net-list", "--all"]);
    assert_eq!(out, net_list_table(&[("web", "inactive", "no", "yes")]));
}

// ---- raw packets ----------------------------------------------------------

fn packet(prog: u32, vers: u32, proc_: i32, serial: u32, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(28 + body.len() as u32).to_be_bytes());
    for w in [prog, vers, proc_ as u32, 0, serial, 0] {
        p.extend_from_slice(&w.to_be_bytes());
    }
    p.extend_from_slice(body);
    p
}

const REMOTE: u32 = 0x2000_8086;

fn xdr_string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b.resize(b.len().div_ceil(4) * 4, 0);
    b
}

/// Read one reply: (procedure, serial, status, body).
fn read_reply(s: &mut UnixStream) -> (i32, u32, u32, Vec<u8>) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let len = u32::from_be_bytes(len) as usize;
    let mut rest = vec![0u8; len - 4];
    s.read_exact(&mut rest).unwrap();
    let w = |i: usize| u32::from_be_bytes(rest[i * 4..i * 4 + 4].try_into().unwrap());
    (w(2) as i32, w(4), w(5), rest[24..].to_vec())
}

/// The (code, message) of an error body.
fn error_of(body: &[u8]) -> (i32, String) {
    let code = i32::from_be_bytes(body[0..4].try_into().unwrap());
    assert_eq!(&body[8..12], &[0, 0, 0, 1], "message present");
    let n = u32::from_be_bytes(body[12..16].try_into().unwrap()) as usize;
    (code, String::from_utf8(body[16..16 + n].to_vec()).unwrap())
}

fn opened(sock: &Path) -> UnixStream {
    let mut s = connect_stream(sock);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut body = vec![0, 0, 0, 1];
    body.extend(xdr_string("network:///system"));
    body.extend([0, 0, 0, 0]);
    s.write_all(&packet(REMOTE, 1, 1, 1, &body)).unwrap();
    let (proc_, serial, status, _) = read_reply(&mut s);
    assert_eq!((proc_, serial, status), (1, 1, 0));
    s
}

fn closed_by_daemon(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn bad_packets_get_libvirt_errors_or_a_closed_connection_never_a_hang() {
    require_virsh!();
    let mut d = Daemon::start();
    let home = tempfile::tempdir().unwrap();
    let rw = d.rw();

    // A client that announces a packet and stops mid-way holds nobody up.
    let mut stalled = connect_stream(&rw);
    stalled.write_all(&[0, 0, 0x10, 0, 0x20, 0, 0x80]).unwrap();
    // One announcing the largest packet libvirt allows (above our limit).
    let mut huge = connect_stream(&rw);
    huge.write_all(&33_554_432u32.to_be_bytes()).unwrap();
    assert!(
        closed_by_daemon(&mut huge),
        "oversized packet: connection closed"
    );
    let (code, out, _) = virsh(home.path(), &rw, false, &["net-list", "--all", "--name"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "\n"),
        "virsh while a client stalls"
    );

    // Length below the header: closed.
    for len in [0u32, 4, 27] {
        let mut s = opened(&rw);
        s.write_all(&len.to_be_bytes()).unwrap();
        assert!(closed_by_daemon(&mut s), "length {len}");
    }

    let mut s = opened(&rw);
    let mut expect_error = |p: Vec<u8>, serial: u32, code: i32, msg: &str| {
        s.write_all(&p).unwrap();
        let (_, sr, status, body) = read_reply(&mut s);
        assert_eq!((sr, status), (serial, 1), "{msg}");
        assert_eq!(error_of(&body), (code, msg.to_string()));
    };
    // Unknown program, version, procedure.
    expect_error(
        packet(0x1234, 1, 1, 2, &[]),
        2,
        39,
        &format!("Cannot find program {} version 1", 0x1234),
    );
    expect_error(
        packet(REMOTE, 7, 46, 3, &[]),
        3,
        39,
        &format!("Cannot find program {} version 7", REMOTE as i32),
    );
    expect_error(
        packet(REMOTE, 1, 9999, 4, &[]),
        4,
        39,
        "unknown procedure: 9999",
    );
    expect_error(
        packet(REMOTE, 1, -5, 5, &[]),
        5,
        39,
        "unknown procedure: -5",
    );
    // Truncated XDR: lookup by name with a string cut short, and no body.
    let mut cut = xdr_string("web");
    cut.truncate(5);
    expect_error(
        packet(REMOTE, 1, 46, 6, &cut),
        6,
        39,
        "Unable to decode message payload",
    );
    expect_error(
        packet(REMOTE, 1, 47, 7, &[1, 2, 3]),
        7,
        39,
        "Unable to decode message payload",
    );
    // A string longer than libvirt's limit (4 MiB), claimed in a tiny body.
    expect_error(
        packet(
            REMOTE,
            1,
            46,
            8,
            &[0xff, 0xff, 0xff, 0x00, b'a', b'b', b'c', b'd'],
        ),
        8,
        39,
        "Unable to decode message payload",
    );
    // Not UTF-8.
    expect_error(
        packet(REMOTE, 1, 46, 9, &[0, 0, 0, 2, 0xff, 0xfe, 0, 0]),
        9,
        39,
        "Unable to decode message payload",
    );
    // After all that the connection still works: lookup of a missing network.
    expect_error(
        packet(REMOTE, 1, 46, 10, &xdr_string("nosuch")),
        10,
        43,
        "Network not found: no network with matching name 'nosuch'",
    );
    // Keepalive: a PING (type MESSAGE) is answered with a PONG.
    let mut ping = packet(0x6b65_6570, 1, 1, 0, &[]);
    ping[16..20].copy_from_slice(&2u32.to_be_bytes());
    s.write_all(&ping).unwrap();
    let (proc_, _, status, body) = read_reply(&mut s);
    assert_eq!((proc_, status, body.len()), (2, 0, 0));

    // A client that sends half a packet and closes.
    let mut half = connect_stream(&rw);
    half.write_all(&packet(REMOTE, 1, 46, 1, &xdr_string("x"))[..10])
        .unwrap();
    drop(half);
    // Procedures before CONNECT_OPEN are refused.
    let mut fresh = connect_stream(&rw);
    fresh
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    fresh.write_all(&packet(REMOTE, 1, 52, 1, &[])).unwrap();
    let (_, _, status, body) = read_reply(&mut fresh);
    assert_eq!(status, 1);
    assert_eq!(
        error_of(&body),
        (1, "internal error: connection not open".into())
    );

    let (code, _, _) = virsh(home.path(), &rw, false, &["net-list"]);
    assert_eq!(code, 0);
    // Every connection that ends is gone from the daemon (its threads
    // finished): only the status query's own connection is left.
    drop((s, fresh, stalled));
    wait_until("every connection to end", || d.status()["clients"] == 1);
    assert!(d.alive(), "daemon alive:\n{}", d.proc_.stderr());
}

#[test]
fn thirty_two_concurrent_virsh_clients_give_the_sequential_host() {
    require_virsh!();
    let d = Daemon::start();
    let files = tempfile::tempdir().unwrap();
    let home = files.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let clients = 32;
    let mut xmls = Vec::new();
    for i in 0..clients {
        let p = files.path().join(format!("n{i}.xml"));
        std::fs::write(&p, net_xml(i)).unwrap();
        xmls.push((p, net_xml(i)));
    }
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (rw, home, path) = (d.rw(), home.clone(), xmls[i].0.clone());
            std::thread::spawn(move || {
                let name = net_name(i);
                let p = path.display().to_string();
                let run = |a: &[&str]| {
                    let r = virsh(&home, &rw, false, a);
                    assert_eq!(r.0, 0, "virsh {a:?}: {}", r.2);
                };
                run(&["net-define", &p]);
                run(&["net-start", &name]);
                run(&["net-destroy", &name]);
                if i % 2 == 0 {
                    run(&["net-start", &name]);
                }
                if i % 4 == 0 {
                    run(&["net-autostart", &name]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let started: Vec<String> = (0..clients).filter(|i| i % 2 == 0).map(net_name).collect();
    let (code, out, _) = virsh(&home, &d.ro(), true, &["net-list", "--name"]);
    assert_eq!(code, 0);
    let mut listed: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    listed.sort();
    let mut want: Vec<&str> = started.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(listed, want);
    let (_, out, _) = virsh(
        &home,
        &d.ro(),
        true,
        &["net-list", "--all", "--autostart", "--name"],
    );
    assert_eq!(out.lines().filter(|l| !l.is_empty()).count(), clients / 4);
    // The reference gets the definitions as the daemon completed them
    // (generated MAC addresses).
    let xml_texts: Vec<String> = (0..clients)
        .map(|i| {
            let (code, out, err) = virsh(
                &home,
                &d.ro(),
                true,
                &["net-dumpxml", "--inactive", &net_name(i)],
            );
            assert_eq!(code, 0, "{err}");
            out
        })
        .collect();
    let ref_dir = tempfile::tempdir().unwrap();
    let reference = sequential_reference(Backend::Nftables, &xml_texts, &started, ref_dir.path());
    assert_same_objects(
        "32 virsh clients through virtnetd",
        &reference,
        ref_dir.path(),
        &d.host(),
        d.dirs.root(),
    );
}
