//! The real virtnetd with the network driver on a simulated host
//! (`--host fake:FILE`), started by real socket activation
//! (systemd-socket-activate, named sockets), driven through the `virtnet
//! --connect` binary and raw sockets:
//!
//! - every net-* command through the daemon prints exactly what embedded
//!   mode prints (same exit status, stdout and stderr);
//! - the read-only socket serves the read methods and refuses every write
//!   method with a clear error and a non-zero exit;
//! - the admin commands work on the admin socket only;
//! - bad requests (malformed JSON, unknown method, wrong params, oversized,
//!   deeply nested XML) get error responses and never cost the connection
//!   or the daemon;
//! - reconcile runs before READY=1 and does what `virtnet reconcile` does;
//! - 32 clients starting and destroying networks concurrently leave no lost
//!   or duplicated rules.

#[path = "../../daemon/tests/daemon_common/mod.rs"]
mod daemon_common;
#[macro_use]
mod virtnetd_support;

use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use daemon_common::*;
use serde_json::{json, Value};
use virtnet_core::firewall::Backend;
use virtnet_daemon::driver_codes as codes;
use virtnet_daemon::{ErrorCode, NET_METHODS};
use virtnet_fake::HostState;
use virtnetd_support::*;

/// A virtnetd under systemd-socket-activate with the three named sockets
/// in `ROOT/listen/{rw,ro,admin}`.
struct Daemon {
    dirs: Dirs,
    proc_: Proc,
    rw: PathBuf,
    ro: PathBuf,
    admin: PathBuf,
}

impl Daemon {
    fn start(dirs: Dirs, setenv: &[&str]) -> Daemon {
        let l = dirs.root().join("listen");
        std::fs::create_dir_all(&l).unwrap();
        let (rw, ro, admin) = (l.join("rw"), l.join("ro"), l.join("admin"));
        let mut proc_ = spawn_activated(
            &dirs,
            &[rw.clone(), ro.clone(), admin.clone()],
            Some(ACTIVATION_NAMES),
            setenv,
            &[],
        );
        wait_for_path(&admin, &mut proc_);
        let mut c = connect(&admin);
        let st = c.call("daemon.status", json!({})).unwrap();
        assert_eq!(st["activated"], true, "{st}");
        Daemon {
            dirs,
            proc_,
            rw,
            ro,
            admin,
        }
    }

    fn host_file(&self) -> PathBuf {
        self.dirs.root().join("host")
    }

    fn host(&self) -> HostState {
        HostState::load_file(&self.host_file()).unwrap()
    }

    fn alive(&mut self) -> bool {
        self.proc_.wait_exit(Duration::from_millis(0)).is_none()
    }
}

fn uri(p: &Path) -> String {
    format!("unix:{}", p.display())
}

fn connected(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let u = uri(sock);
    let mut a = vec!["--connect", u.as_str()];
    a.extend_from_slice(args);
    virtnet(&a)
}

fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stderr: {}", r.2);
    r.1
}

const HOST7: &str = "<host mac='52:54:00:00:00:07' name='g' ip='192.168.140.7'/>";

/// The command sequence both modes run: every net-* command and its
/// options, successes and failures.
fn script(xml: &str, bad: &str) -> Vec<Vec<String>> {
    let lines: &[&[&str]] = &[
        &["net-list"],
        &["net-define", xml],
        &["net-define", bad],
        &["net-define", "/nonexistent/net.xml"],
        &["net-list"],
        &["net-list", "--json"],
        &["net-info", "web"],
        &["net-info", "--json", "web"],
        &["net-dumpxml", "web"],
        &["net-destroy", "web"],
        &["net-start", "web"],
        &["net-start", "web"],
        &["net-update", "web", "add", "ip-dhcp-host", HOST7],
        &["net-update", "web", "add", "ip-dhcp-host", HOST7],
        &["net-update", "web", "add-first", "ip-dhcp-host", bad],
        &[
            "net-update",
            "web",
            "modify",
            "ip-dhcp-range",
            "<range start='192.168.140.2' end='192.168.140.254'/>",
        ],
        &[
            "net-update",
            "web",
            "add",
            "dns-txt",
            "<txt name='t' value='v'/>",
            "--config",
        ],
        &[
            "net-update",
            "web",
            "delete",
            "ip-dhcp-host",
            "<host name='g'/>",
            "--live",
            "--config",
        ],
        &["net-update", "web", "insert", "ip-dhcp-host", HOST7],
        &[
            "net-update",
            "web",
            "add",
            "ip-dhcp-host",
            HOST7,
            "--parent-index",
            "2",
        ],
        &["net-info", "web"],
        &["net-dhcp-leases", "web"],
        &["net-dhcp-leases", "--json", "web"],
        &["net-dhcp-leases", "--mac", "zz", "web"],
        &["net-dhcp-leases", "nosuch"],
        &["net-dumpxml", "web"],
        &["net-dumpxml", "--inactive", "web"],
        &["net-autostart", "web"],
        &["net-list"],
        &["net-autostart", "--disable", "web"],
        &["net-undefine", "web"],
        &[
            "net-update",
            "web",
            "add",
            "dns-txt",
            "<txt name='u' value='v'/>",
            "--config",
        ],
        &["net-info", "--json", "web"],
        &["net-autostart", "web"],
        &["net-undefine", "web"],
        &["net-destroy", "web"],
        &["net-info", "web"],
        &["net-start", "nosuch"],
        &["net-list", "--json"],
        &["net-list", "--all"],
        &["net-list", "--all", "--json"],
        &["net-create", xml],
        &["net-create", xml],
        &["net-list", "--transient", "--name"],
        &["net-uuid", "web"],
        &["net-name", "not-a-uuid"],
        &["net-name", "00000000-0000-4000-8000-00000000000z"],
        &["net-name", "00000000-0000-4000-8000-0000000000ff"],
        &["check"],
        &["check", "web"],
        &["check", "--json"],
        &["check", "--repair"],
        &["reload"],
        &["net-info", "--json", "web"],
        &["net-destroy", "web"],
        &["net-list", "--all"],
        &["check", "web"],
    ];
    lines
        .iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[test]
fn every_command_through_the_daemon_prints_what_embedded_mode_prints() {
    require_activate!();
    let d = Daemon::start(Dirs::new(), &[]);
    let files = tempfile::tempdir().unwrap();
    let xml = write_web_xml(files.path());
    let bad = files.path().join("bad.xml");
    std::fs::write(
        &bad,
        "<network>\n  <name>b</name>\n  <ip address='300.1.1.1'/>\n</network>\n",
    )
    .unwrap();
    let steps = script(&xml.display().to_string(), &bad.display().to_string());

    let emb = tempfile::tempdir().unwrap();
    for step in &steps {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        let remote = connected(&d.rw, &args);
        let embedded = run_embedded(emb.path(), &args);
        assert_eq!(remote, embedded, "virtnet {args:?}: daemon vs embedded");
    }
    // The script did what it says (spot checks of the shared output).
    let r = connected(&d.rw, &["net-define", &xml.display().to_string()]);
    assert_eq!(r.1, format!("Network web defined from {}\n", xml.display()));
    ok(connected(&d.rw, &["net-start", "web"]));
    assert_eq!(
        ok(connected(
            &d.rw,
            &["net-update", "web", "add", "ip-dhcp-host", HOST7]
        )),
        "Updated network web live state\n"
    );
    let (code, _, err) = connected(
        &d.ro,
        &["net-update", "web", "delete", "ip-dhcp-host", HOST7],
    );
    assert_ne!(code, 0, "the read-only socket refuses net-update: {err}");
    let (code, _, err) = connected(&d.rw, &["net-update", "web", "add", "ip-dhcp-host", HOST7]);
    assert_eq!(code, 1);
    assert!(
        err.contains("there is an existing dhcp host entry in network 'web'"),
        "{err}"
    );
    let info: Value =
        serde_json::from_str(&ok(connected(&d.ro, &["net-info", "--json", "web"]))).unwrap();
    assert_eq!(info["active"], true);
    assert_eq!(info["bridge"], "vbweb");
    assert_eq!(info["firewall_backend"], "nftables");
    // The daemon saved the simulated host: the bridge and its rules are in the file.
    let h = d.host();
    assert!(h.ip.links.iter().any(|l| l.name == "vbweb"));
    assert!(h
        .dump_section(virtnet_fake::Section::Nft)
        .contains("192.168.140.0/24"));
    let (code, _, err) = connected(&d.rw, &["net-define", &bad.display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("error: {}:", bad.display())),
        "{err}"
    );
    let (code, _, err) = connected(&d.rw, &["reconcile"]);
    assert_eq!(code, 1);
    assert!(err.contains("not available with --connect"), "{err}");
    ok(connected(&d.rw, &["net-destroy", "web"]));
}

#[test]
fn read_only_socket_serves_reads_and_refuses_every_write() {
    require_activate!();
    let d = Daemon::start(Dirs::new(), &[]);
    let files = tempfile::tempdir().unwrap();
    let xml = write_web_xml(files.path());
    let x = xml.display().to_string();
    ok(connected(&d.rw, &["net-define", &x]));
    ok(connected(&d.rw, &["net-start", "web"]));
    let before = std::fs::read(d.host_file()).unwrap();

    let writes: &[(&str, &[&str])] = &[
        ("net.define", &["net-define", &x]),
        ("net.undefine", &["net-undefine", "web"]),
        ("net.start", &["net-start", "web"]),
        ("net.destroy", &["net-destroy", "web"]),
        ("net.autostart", &["net-autostart", "web"]),
        ("net.autostart", &["net-autostart", "--disable", "web"]),
        ("net.create", &["net-create", &x]),
        ("net.reload", &["reload"]),
        ("net.repair", &["check", "--repair"]),
        (
            "net.update",
            &[
                "net-update",
                "web",
                "add",
                "dns-txt",
                "<txt name='r' value='o'/>",
            ],
        ),
    ];
    for (method, args) in writes {
        let (code, out, err) = connected(&d.ro, args);
        assert_eq!(code, 1, "{args:?} on the read-only socket");
        assert_eq!(out, "");
        assert_eq!(
            err,
            format!(
                "error: virtnetd: {method} changes state and is not allowed on the read-only socket\n"
            ),
            "{args:?}"
        );
    }
    // Every write method of the table is covered.
    for m in NET_METHODS.iter().filter(|m| !m.read_only) {
        assert!(writes.iter().any(|(w, _)| w == &m.name), "{}", m.name);
    }
    // Nothing changed; reads work and agree with the read-write socket.
    assert_eq!(std::fs::read(d.host_file()).unwrap(), before);
    for args in [
        &["net-list"][..],
        &["net-list", "--json"],
        &["net-info", "web"],
        &["net-info", "--json", "web"],
        &["net-dumpxml", "web"],
        &["net-dumpxml", "--inactive", "web"],
    ] {
        let ro = connected(&d.ro, args);
        assert_eq!(ro.0, 0, "{args:?}: {}", ro.2);
        assert_eq!(ro, connected(&d.rw, args), "{args:?}");
    }
    let table = ok(connected(&d.ro, &["net-list"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(" web ") && l.contains(" active ")),
        "{table}"
    );

    // Admin commands: on the admin socket only.
    let st: Value = serde_json::from_str(&ok(connected(&d.admin, &["daemon-status"]))).unwrap();
    assert_eq!(st["activated"], true);
    assert_eq!(st["log_level"], "debug");
    assert_eq!(
        st["driver"],
        json!({"backend": "nftables", "networks": 1, "active": 1, "busy_networks": 0, "event_subscribers": 0})
    );
    assert_eq!(
        ok(connected(&d.admin, &["daemon-log-level", "info"])),
        "Log level changed from debug to info\n"
    );
    let (code, _, err) = connected(&d.admin, &["daemon-log-level", "=bad="]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = connected(&d.rw, &["daemon-status"]);
    assert_eq!(code, 1);
    assert!(err.contains("only available on the admin socket"), "{err}");
    let (code, _, err) = connected(&d.admin, &["net-list"]);
    assert_eq!(code, 1);
    assert!(err.contains("not available on the admin socket"), "{err}");
    let (code, _, err) = virtnet(&["daemon-status"]);
    assert_eq!(code, 1);
    assert!(err.contains("need --connect"), "{err}");
    ok(connected(&d.rw, &["net-destroy", "web"]));
}

/// Raw protocol client: one line out, one line back.
struct Raw {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Raw {
    fn new(p: &Path) -> Raw {
        let s = UnixStream::connect(p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }
    fn send(&mut self, bytes: &[u8]) -> Value {
        self.w.write_all(bytes).unwrap();
        self.w.write_all(b"\n").unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "one response line, got {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
    fn error_code(&mut self, bytes: &[u8]) -> i64 {
        let v = self.send(bytes);
        v["error"]["code"].as_i64().unwrap_or_else(|| {
            panic!(
                "expected an error for {:?}: {v}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )
        })
    }
}

#[test]
fn bad_requests_never_cost_the_connection_or_the_daemon() {
    require_activate!();
    let mut d = Daemon::start(Dirs::new(), &[]);
    let mut c = Raw::new(&d.rw);
    let parse = ErrorCode::ParseError.code();
    let invalid = ErrorCode::InvalidRequest.code();
    let params = ErrorCode::InvalidParams.code();
    let unknown = ErrorCode::MethodNotFound.code();
    let cases: Vec<(Vec<u8>, i64)> = vec![
        (b"this is not json".to_vec(), parse),
        (b"{\"id\": 1, \"method\": \"net.list\"".to_vec(), parse),
        (b"\xff\xfe\x00garbage".to_vec(), parse),
        (b"[1, 2, 3]".to_vec(), invalid),
        (b"42".to_vec(), invalid),
        (br#"{"id": 2}"#.to_vec(), invalid),
        (br#"{"id": 3, "method": 7}"#.to_vec(), invalid),
        (br#"{"id": 4, "method": "net.list", "params": [1]}"#.to_vec(), invalid),
        (br#"{"id": 5, "method": "net.bogus", "params": {}}"#.to_vec(), unknown),
        (br#"{"id": 6, "method": "", "params": {}}"#.to_vec(), unknown),
        (br#"{"id": 7, "method": "net.define", "params": {}}"#.to_vec(), params),
        (br#"{"id": 8, "method": "net.define", "params": {"xml": 1}}"#.to_vec(), params),
        (br#"{"id": 9, "method": "net.start", "params": {"name": 1}}"#.to_vec(), params),
        (br#"{"id": 10, "method": "net.start", "params": {"name": ""}}"#.to_vec(), params),
        (br#"{"id": 11, "method": "net.destroy", "params": {}}"#.to_vec(), params),
        (br#"{"id": 12, "method": "net.undefine", "params": {"name": "x", "force": true}}"#.to_vec(), params),
        (br#"{"id": 13, "method": "net.autostart", "params": {"name": "x"}}"#.to_vec(), params),
        (br#"{"id": 14, "method": "net.autostart", "params": {"name": "x", "enable": 1}}"#.to_vec(), params),
        (br#"{"id": 15, "method": "net.list", "params": {"x": 1}}"#.to_vec(), params),
        (br#"{"id": 16, "method": "net.info", "params": {"name": null}}"#.to_vec(), params),
        (br#"{"id": 161, "method": "net.dhcp_leases", "params": {"name": "web", "mac": 5}}"#.to_vec(), params),
        (br#"{"id": 162, "method": "net.update", "params": {"name": "web", "command": "add", "section": "dns-txt", "xml": 5}}"#.to_vec(), params),
        (br#"{"id": 163, "method": "net.update", "params": {"name": "web", "command": "add", "section": "nope", "xml": "<txt/>"}}"#.to_vec(), params),
        (br#"{"id": 17, "method": "net.dumpxml", "params": {"name": "x", "inactive": "yes"}}"#.to_vec(), params),
        (br#"{"id": 18, "method": "net.info", "params": {"name": "../../etc/passwd"}}"#.to_vec(), codes::NOT_FOUND),
        (br#"{"id": 19, "method": "net.define", "params": {"xml": "<network><name>a/b</name></network>"}}"#.to_vec(), codes::INVALID_DEFINITION),
        (br#"{"id": 20, "method": "net.define", "params": {"xml": ""}}"#.to_vec(), codes::INVALID_DEFINITION),
        (br#"{"id": 21, "method": "net.define", "params": {"xml": "<!DOCTYPE x [<!ENTITY a 'aaaa'>]><network><name>&a;</name></network>"}}"#.to_vec(), codes::INVALID_DEFINITION),
        (br#"{"id": 22, "method": "net.create", "params": {"file": "x.xml"}}"#.to_vec(), params),
        (br#"{"id": 23, "method": "net.reload", "params": {"all": true}}"#.to_vec(), params),
        (br#"{"id": 24, "method": "net.check", "params": {"name": 1}}"#.to_vec(), params),
        (br#"{"id": 25, "method": "net.repair", "params": {"repair": true}}"#.to_vec(), params),
        (br#"{"id": 26, "method": "net.info", "params": {"name": "x", "uuid": "y"}}"#.to_vec(), params),
        (br#"{"id": 27, "method": "net.list", "params": {"flags": 64}}"#.to_vec(), params),
        (br#"{"id": 28, "method": "net.info", "params": {"uuid": "nope"}}"#.to_vec(), codes::INVALID_ARGUMENT),
        (br#"{"id": 29, "method": "net.info", "params": {"uuid": "00000000-0000-4000-8000-0000000000ff"}}"#.to_vec(), codes::NOT_FOUND),
        (br#"{"id": 30, "method": "net.create", "params": {"xml": "<network/>"}}"#.to_vec(), codes::INVALID_DEFINITION),
    ];
    for (line, want) in &cases {
        assert_eq!(
            c.error_code(line),
            *want,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // Every method got a wrong-params case.
    for m in NET_METHODS {
        let needle = format!("\"method\": \"{}\"", m.name);
        assert!(
            cases
                .iter()
                .any(|(l, w)| *w == params && String::from_utf8_lossy(l).contains(&needle)),
            "{}",
            m.name
        );
    }
    // Oversized: over the 1 MiB limit, answered, connection kept.
    let mut big = br#"{"id": 30, "method": "net.define", "params": {"xml": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    big.extend(br#""}}"#);
    assert_eq!(c.error_code(&big), ErrorCode::RequestTooLarge.code());
    // Under the limit but pathological XML: deep nesting, many attributes.
    let deep = format!(
        "<network><name>deep</name>{}{}</network>",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    let req =
        serde_json::to_vec(&json!({"id": 31, "method": "net.define", "params": {"xml": deep}}))
            .unwrap();
    let v = c.send(&req);
    assert_eq!(v["id"], 31, "{v}");
    let attrs: String = (0..20_000).map(|i| format!(" a{i}='{i}'")).collect();
    let wide = format!("<network{attrs}><name>wide</name></network>");
    let req =
        serde_json::to_vec(&json!({"id": 32, "method": "net.define", "params": {"xml": wide}}))
            .unwrap();
    let v = c.send(&req);
    assert_eq!(v["id"], 32, "{v}");
    // Empty lines are ignored or answered, never fatal; the connection and
    // the daemon are fine.
    let v = c.send(br#"{"id": 40, "method": "net.list", "params": null}"#);
    assert_eq!(v["id"], 40);
    assert!(v["result"].is_array(), "{v}");
    assert!(d.alive(), "daemon alive:\n{}", d.proc_.stderr());
    let st = connect(&d.admin).call("daemon.status", json!({})).unwrap();
    assert_eq!(st["pid"], d.proc_.pid());
}

#[test]
fn reconcile_runs_before_ready_and_matches_embedded_reconcile() {
    require_activate!();
    let dirs = Dirs::new();
    let root = dirs.root().to_path_buf();
    let files = tempfile::tempdir().unwrap();
    // Prepared in embedded mode: "web" active with nftables rules, "auto"
    // defined and marked autostart.
    let xml = write_web_xml(files.path());
    let auto = files.path().join("auto.xml");
    std::fs::write(&auto, net_xml(7).replace("cnet7", "auto")).unwrap();
    let emb = |args: &[&str]| ok(run_embedded(&root, args));
    emb(&["net-define", &xml.display().to_string()]);
    emb(&["net-define", &auto.display().to_string()]);
    emb(&["net-start", "web"]);
    emb(&["net-autostart", "auto"]);
    // The daemon's next start finds network.conf switched to iptables.
    std::fs::write(
        root.join("etc/network.conf"),
        "firewall_backend = \"iptables\"\n",
    )
    .unwrap();
    // The same starting point, reconciled in embedded mode for reference.
    let copy = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", root.display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(st.success());
    // Autostart links point at absolute config paths: re-point the copy's.
    let link = copy.path().join("etc/autostart/auto.xml");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(copy.path().join("etc/auto.xml"), &link).unwrap();
    let r = run_embedded(copy.path(), &["reconcile"]);
    assert_eq!(r.0, 0, "{}", r.2);
    assert!(
        r.1.contains("Network web: firewall reloaded"),
        "{}{}",
        r.1,
        r.2
    );
    assert!(r.1.contains("Network auto: autostarted"), "{}{}", r.1, r.2);
    let reference = HostState::load_file(&copy.path().join("host")).unwrap();

    let name = format!("virtnet-test-reconcile-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = UnixDatagram::bind_addr(&addr).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let notify = format!("NOTIFY_SOCKET=@{name}");
    let l = root.join("listen");
    std::fs::create_dir_all(&l).unwrap();
    let socks = [l.join("rw"), l.join("ro"), l.join("admin")];
    let mut p = spawn_activated(&dirs, &socks, Some(ACTIVATION_NAMES), &[&notify], &[]);
    // systemd-socket-activate runs the daemon at the first connection.
    wait_for_path(&socks[2], &mut p);
    let _first = connect_stream(&socks[2]);
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    // At READY=1 the host is already reconciled (read before any client).
    let at_ready = HostState::load_file(&root.join("host")).unwrap();
    assert_same_objects_roots(
        "daemon reconcile vs virtnet reconcile",
        &reference,
        &at_ready,
        &[copy.path(), &root],
    );
    // Only libvirt's own nft tables: the dump also shows the tables
    // iptables-nft wrote (where web's rules now are).
    let nft = at_ready.dump_section(virtnet_fake::Section::Nft);
    let ours: String = nft
        .split("\ntable ")
        .filter(|t| {
            let t = t.strip_prefix("table ").unwrap_or(t);
            t.starts_with("ip libvirt_network ") || t.starts_with("ip6 libvirt_network ")
        })
        .collect();
    assert!(
        nft.contains("libvirt_network") && !ours.contains("192.168.140.0/24"),
        "nft rules of web removed:\n{nft}"
    );
    let ipt = at_ready.dump_section(virtnet_fake::Section::Iptables);
    assert!(
        ipt.contains("192.168.140.0/24"),
        "iptables rules of web added:\n{ipt}"
    );
    for (n, backend) in [("web", "iptables"), ("auto", "iptables")] {
        let info: Value =
            serde_json::from_str(&ok(connected(&socks[1], &["net-info", "--json", n]))).unwrap();
        assert_eq!(info["active"], true, "{n}");
        assert_eq!(info["firewall_backend"], backend, "{n}");
    }
}

/// 32 clients, each on its own connection to the real daemon, define,
/// start and destroy their networks (three rounds, even ones stay up)
/// while 4 more start and destroy one shared network; the host file the
/// daemon saved then holds exactly what the same networks started one
/// after another leave, and after a concurrent destroy of everything,
/// exactly what they leave when stopped.
#[test]
fn thirty_two_concurrent_clients_leave_no_lost_or_duplicated_rules() {
    require_activate!();
    let d = Daemon::start(Dirs::new(), &[]);
    let clients = 32;
    let shared = 200;
    connect(&d.rw)
        .call("net.define", json!({"xml": net_xml(shared)}))
        .unwrap();
    let barrier = Arc::new(Barrier::new(clients + 4));
    let mut threads = Vec::new();
    for i in 0..clients {
        let (path, barrier) = (d.rw.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = connect(&path);
            barrier.wait();
            let name = net_name(i);
            c.call("net.define", json!({"xml": net_xml(i)})).unwrap();
            for _ in 0..3 {
                c.call("net.start", json!({ "name": name })).unwrap();
                let info = c.call("net.info", json!({ "name": name })).unwrap();
                assert_eq!(info["active"], true);
                c.call("net.destroy", json!({ "name": name })).unwrap();
            }
            if i % 2 == 0 {
                c.call("net.start", json!({ "name": name })).unwrap();
            }
        }));
    }
    for t in 0..4 {
        let (path, barrier) = (d.rw.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = connect(&path);
            barrier.wait();
            let name = net_name(shared);
            for k in 0..6 {
                let m = if (k + t) % 2 == 0 {
                    "net.start"
                } else {
                    "net.destroy"
                };
                match c.call(m, json!({ "name": name })) {
                    Ok(_) => {}
                    Err(e) => {
                        let code = e.remote().map(|r| r.code);
                        assert!(
                            code == Some(codes::ALREADY_ACTIVE) || code == Some(codes::NOT_ACTIVE),
                            "{m}: {e}"
                        );
                    }
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let mut c = connect(&d.ro);
    let list = c.call("net.list", json!({})).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), clients + 1);
    let started: Vec<String> = list
        .iter()
        .filter(|n| n["active"] == true)
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    let xmls: Vec<String> = list
        .iter()
        .map(|n| {
            c.call("net.dumpxml", json!({"name": n["name"], "inactive": true}))
                .unwrap()["xml"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let root = d.dirs.root().to_path_buf();
    let ref_dir = tempfile::tempdir().unwrap();
    let reference = sequential_reference(Backend::Nftables, &xmls, &started, ref_dir.path());
    assert_same_objects(
        "32 clients through virtnetd",
        &reference,
        ref_dir.path(),
        &d.host(),
        &root,
    );

    let threads: Vec<_> = started
        .iter()
        .map(|n| {
            let (path, n) = (d.rw.clone(), n.clone());
            std::thread::spawn(move || {
                connect(&path)
                    .call("net.destroy", json!({ "name": n }))
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ref_dir = tempfile::tempdir().unwrap();
    let reference = sequential_reference(Backend::Nftables, &xmls, &[], ref_dir.path());
    assert_same_objects(
        "after concurrent destroy through virtnetd",
        &reference,
        ref_dir.path(),
        &d.host(),
        &root,
    );
    let st = connect(&d.admin).call("daemon.status", json!({})).unwrap();
    assert_eq!(st["pid"], d.proc_.pid());
}

/// Startup problems of the driver are reported and exit with status 3
/// (configuration) before any socket is served.
#[test]
fn driver_startup_errors_exit_with_status_3() {
    let run = |dirs: &Dirs| {
        let out = Command::new(VIRTNETD)
            .args(dirs.args(&[]))
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A corrupt simulated host state file.
    let dirs = Dirs::new();
    std::fs::write(dirs.root().join("host"), "{ not a state file").unwrap();
    let (code, err) = run(&dirs);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("virtnetd: fake host:"), "{err}");
    assert!(
        err.contains(&dirs.root().join("host").display().to_string()),
        "{err}"
    );
    // The state file path is a directory.
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.root().join("host")).unwrap();
    let (code, err) = run(&dirs);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("is a directory"), "{err}");
    // An invalid network.conf: file and line named.
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.root().join("etc")).unwrap();
    std::fs::write(
        dirs.root().join("etc/network.conf"),
        "# comment\nfirewall_backend = \"pf\"\n",
    )
    .unwrap();
    let (code, err) = run(&dirs);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("cannot open the network driver"), "{err}");
    assert!(err.contains("network.conf"), "{err}");
    for kind in virtnet_daemon::SocketKind::ALL {
        assert!(!dirs.sock(kind).exists(), "no {kind} socket served");
    }
}

/// One daemon per state directory: a second virtnetd on the same state
/// directory (other sockets) exits 1 naming the lock, the first one keeps
/// serving.
#[test]
fn second_daemon_on_the_same_state_dir_refuses_to_start() {
    let dirs = Dirs::new();
    let mut first = spawn_daemon(&dirs, &[], &[]);
    wait_for_path(&dirs.sock(virtnet_daemon::SocketKind::Admin), &mut first);
    let mut c = connect(&dirs.sock(virtnet_daemon::SocketKind::ReadOnly));
    c.call("net.list", json!({})).unwrap();
    let mut args = dirs.args(&[]);
    let i = args.iter().position(|a| a == "--runtime-dir").unwrap();
    args[i + 1] = dirs.root().join("run2").display().to_string();
    let i = args.iter().position(|a| a == "--host").unwrap();
    args[i + 1] = format!("fake:{}", dirs.root().join("host2").display());
    let out = Command::new(VIRTNETD)
        .args(&args)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("driver.lock is held by another virtnetd"),
        "{err}"
    );
    assert!(!dirs.root().join("run2/virtnetd-sock").exists());
    assert_eq!(c.call("net.list", json!({})).unwrap(), json!([]));
}

/// SIGHUP makes virtnetd do libvirt's reload: a definition put into the
/// config directory by hand (and marked autostart) is read and started;
/// `virtnet reload` through the socket does the same and reports it; the
/// drift check and repair work through the daemon.
#[test]
fn sighup_reloads_like_libvirt() {
    require_activate!();
    let mut d = Daemon::start(Dirs::new(), &[]);
    let etc = d.dirs.root().join("etc");
    std::fs::create_dir_all(etc.join("autostart")).unwrap();
    std::fs::write(etc.join("web.xml"), WEB_XML).unwrap();
    std::os::unix::fs::symlink(etc.join("web.xml"), etc.join("autostart/web.xml")).unwrap();
    assert_eq!(ok(connected(&d.rw, &["net-list", "--all", "--name"])), "\n");
    d.proc_.signal(nix::sys::signal::Signal::SIGHUP);
    // The reload runs on its own thread: wait (bounded) for its effect.
    let mut listed = String::new();
    for _ in 0..200 {
        listed = ok(connected(&d.rw, &["net-list", "--name"]));
        if listed == "web\n\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        listed, "web\n\n",
        "SIGHUP did not start the autostart network"
    );
    assert!(d.alive());
    let r = ok(connected(&d.rw, &["reload"]));
    assert_eq!(r, "Network web: firewall reloaded\n");
    let c = ok(connected(&d.ro, &["check", "web"]));
    assert!(c.starts_with("Network web (nftables): "), "{c}");
    assert!(c.contains("none drifted"), "{c}");
    assert_eq!(ok(connected(&d.rw, &["check", "--repair"])), c);
    ok(connected(&d.rw, &["net-destroy", "web"]));
}
