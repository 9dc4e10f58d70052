//! The real virtnetd without activation: its own sockets and their modes,
//! admin methods through the client, read-only refusals, malformed and
//! oversized requests, many concurrent clients, signals, idle timeout,
//! sd_notify, command-line errors.

mod virtnetd_support;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use virtnet_daemon::{ErrorCode, SocketKind, NET_METHODS};
use virtnetd_support::*;

fn started(extra: &[&str]) -> (Dirs, Proc) {
    let dirs = Dirs::new();
    let mut p = spawn_daemon(&dirs, extra, &[]);
    wait_for_path(&dirs.sock(SocketKind::Admin), &mut p);
    (dirs, p)
}

#[test]
fn own_sockets_with_modes_and_admin_methods() {
    let (dirs, mut p) = started(&[]);
    for kind in SocketKind::ALL {
        let meta = std::fs::metadata(dirs.sock(kind)).unwrap();
        assert!(meta.file_type().is_socket(), "{kind}");
        assert_eq!(meta.permissions().mode() & 0o777, kind.mode(), "{kind}");
    }
    assert_eq!(
        SocketKind::ALL.map(|k| (k.file_name(), k.mode())),
        [
            ("virtnetd-sock", 0o600),
            ("virtnetd-sock-ro", 0o666),
            ("virtnetd-admin-sock", 0o600)
        ]
    );
    let mut admin = connect(&dirs.sock(SocketKind::Admin));
    let st = admin.call("daemon.status", json!({})).unwrap();
    assert_eq!(st["activated"], false);
    // Served only once the directories and the driver are set up.
    for d in ["etc", "state"] {
        assert!(dirs.root().join(d).is_dir(), "{d} created");
    }
    assert!(
        dirs.root().join("host").is_file(),
        "fake host state file saved"
    );
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["pid"], p.pid());
    assert_eq!(st["clients"], 1);
    assert_eq!(st["log_level"], "debug");
    assert_eq!(st["idle_timeout_seconds"], Value::Null);
    let paths: Vec<&str> = st["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    let want: Vec<String> = SocketKind::ALL
        .iter()
        .map(|&k| dirs.sock(k).display().to_string())
        .collect();
    assert_eq!(paths, want);

    let r = admin
        .call("daemon.set-log-level", json!({"level": "warn"}))
        .unwrap();
    assert_eq!(r, json!({"previous": "debug", "level": "warn"}));
    assert_eq!(
        admin.call("daemon.status", json!({})).unwrap()["log_level"],
        "warn"
    );
    let e = admin
        .call(
            "daemon.set-log-level",
            json!({"level": "virtnet_core=nonsense"}),
        )
        .unwrap_err();
    assert_eq!(e.remote().unwrap().kind(), Some(ErrorCode::InvalidParams));

    p.signal(Signal::SIGTERM);
    let st = p
        .wait_exit(Duration::from_secs(10))
        .expect("exit on SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", p.stderr());
    for kind in SocketKind::ALL {
        assert!(!dirs.sock(kind).exists(), "{kind} socket removed on exit");
    }
}

#[test]
fn driver_methods_and_read_only_refusals() {
    let (dirs, _p) = started(&[]);
    let mut ro = connect(&dirs.sock(SocketKind::ReadOnly));
    let mut rw = connect(&dirs.sock(SocketKind::ReadWrite));
    for m in NET_METHODS {
        let params = match m.name {
            "net.list" | "net.reload" => json!({}),
            "net.define" => json!({"xml": "<network><name>default</name></network>"}),
            // Refused by the driver (an invalid address), not by the socket.
            "net.create" => {
                json!({"xml": "<network><name>t</name><ip address='300.1.1.1'/></network>"})
            }
            "net.update" => json!({
                "name": "nosuch", "command": "add", "section": "ip-dhcp-host",
                "xml": "<host mac='52:54:00:00:00:01' ip='10.0.0.2'/>"
            }),
            "net.autostart" => json!({"name": "nosuch", "enable": true}),
            _ => json!({"name": "nosuch"}),
        };
        let e = ro.call(m.name, params.clone());
        if m.read_only {
            // Served (net.list) or answered by the driver (not found).
            match e {
                Ok(v) => assert!(v.is_array(), "{}: {v}", m.name),
                Err(e) => assert_eq!(
                    e.remote().unwrap().code,
                    virtnet_daemon::driver_codes::NOT_FOUND,
                    "{} on ro",
                    m.name
                ),
            }
        } else {
            assert_eq!(
                e.unwrap_err().remote().unwrap().kind(),
                Some(ErrorCode::ReadOnly),
                "{} on ro",
                m.name
            );
        }
        // The read-write socket passes everything to the driver.
        match rw.call(m.name, params) {
            Ok(_) => assert!(
                matches!(m.name, "net.list" | "net.define" | "net.reload"),
                "{}",
                m.name
            ),
            Err(e) => assert!(
                e.remote().unwrap().code >= 100,
                "{} on rw: driver error expected, got {e}",
                m.name
            ),
        }
    }
    let e = rw.call("daemon.status", json!({})).unwrap_err();
    assert_eq!(e.remote().unwrap().kind(), Some(ErrorCode::WrongSocket));
    let mut admin = connect(&dirs.sock(SocketKind::Admin));
    let e = admin.call("net.list", json!({})).unwrap_err();
    assert_eq!(e.remote().unwrap().kind(), Some(ErrorCode::WrongSocket));
}

#[test]
fn malformed_and_oversized_requests() {
    let (dirs, mut p) = started(&[]);
    let mut c = connect(&dirs.sock(SocketKind::Admin));
    c.send_raw(b"this is not json\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.result.unwrap_err().kind(), Some(ErrorCode::ParseError));
    c.send_raw(b"{\"id\": 3, \"params\": {}}\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.id, json!(3));
    assert_eq!(
        r.result.unwrap_err().kind(),
        Some(ErrorCode::InvalidRequest)
    );
    let mut big = vec![b'x'; (1 << 20) + 1];
    big.push(b'\n');
    c.send_raw(&big).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(
        r.result.unwrap_err().kind(),
        Some(ErrorCode::RequestTooLarge)
    );
    // Same connection, still served; the daemon is alive.
    let st = c.call("daemon.status", json!({})).unwrap();
    assert_eq!(st["clients"], 1);
    assert!(p.wait_exit(Duration::from_millis(0)).is_none());
}

#[test]
fn many_concurrent_clients() {
    let (dirs, _p) = started(&[]);
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let kind = SocketKind::ALL[i % 3];
            let path = dirs.sock(kind);
            std::thread::spawn(move || {
                let mut c = connect(&path);
                for _ in 0..20 {
                    let r = match kind {
                        SocketKind::Admin => c.call("daemon.status", json!({})).map(|_| ()),
                        _ => match c.call("net.info", json!({"name": "n"})) {
                            Err(e)
                                if e.remote().map(|r| r.code)
                                    == Some(virtnet_daemon::driver_codes::NOT_FOUND) =>
                            {
                                Ok(())
                            }
                            other => panic!("unexpected {other:?}"),
                        },
                    };
                    r.unwrap();
                }
                c
            })
        })
        .collect();
    let clients: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut admin = connect(&dirs.sock(SocketKind::Admin));
    let st = admin.call("daemon.status", json!({})).unwrap();
    assert_eq!(st["clients"], clients.len() + 1);
}

#[test]
fn exits_on_sigint() {
    let (dirs, mut p) = started(&[]);
    let _c = connect(&dirs.sock(SocketKind::ReadOnly));
    p.signal(Signal::SIGINT);
    let st = p
        .wait_exit(Duration::from_secs(10))
        .expect("exit on SIGINT");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn sighup_does_not_stop_the_daemon() {
    let (dirs, mut p) = started(&[]);
    p.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        p.wait_exit(Duration::from_millis(0)).is_none(),
        "{}",
        p.stderr()
    );
    let mut c = connect(&dirs.sock(SocketKind::Admin));
    c.call("daemon.status", json!({})).unwrap();
    // SIGHUP reloads every active network's firewall, as libvirt's does.
    assert!(p.stderr().contains("reload"), "{}", p.stderr());
}

#[test]
fn idle_timeout_exits_only_when_idle() {
    let (dirs, mut p) = started(&["--timeout", "1"]);
    let t0 = Instant::now();
    {
        let mut c = connect(&dirs.sock(SocketKind::ReadOnly));
        std::thread::sleep(Duration::from_millis(1800));
        assert!(
            p.wait_exit(Duration::from_millis(0)).is_none(),
            "must not exit with a client connected"
        );
        let _ = c.call("net.list", json!({}));
    }
    let st = p.wait_exit(Duration::from_secs(10)).expect("idle exit");
    assert_eq!(st.code(), Some(0));
    assert!(
        t0.elapsed() >= Duration::from_millis(2600),
        "{:?}",
        t0.elapsed()
    );
    assert!(p.stderr().contains("idle for 1s"), "{}", p.stderr());
}

#[test]
fn sd_notify_ready_and_stopping() {
    let name = format!("virtnet-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = UnixDatagram::bind_addr(&addr).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let dirs = Dirs::new();
    let mut p = spawn_daemon(&dirs, &[], &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    // READY is sent once the sockets are being served.
    let mut c = connect(&dirs.sock(SocketKind::Admin));
    c.call("daemon.status", json!({})).unwrap();
    p.signal(Signal::SIGTERM);
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(
        p.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn command_line_errors() {
    let dirs = Dirs::new();
    let run = |args: Vec<String>| {
        let out = Command::new(VIRTNETD)
            .args(args)
            .env_remove("LISTEN_PID")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(dirs.args(&["--timeout", "0"]));
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(vec!["--host".into(), "qemu".into()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("expected fake:PATH or real"), "{err}");
    let (code, err) = run(dirs.args(&["--log-level", "=bad=filter="]));
    assert_eq!(code, Some(2), "{err}");
    // Runtime dir that cannot be created: status 5.
    let file = dirs.root().join("file");
    std::fs::write(&file, b"").unwrap();
    let mut args = dirs.args(&[]);
    let i = args.iter().position(|a| a == "--runtime-dir").unwrap();
    args[i + 1] = file.join("run").display().to_string();
    let (code, err) = run(args);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("cannot create runtime directory"), "{err}");
    let out = Command::new(VIRTNETD).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--host",
        "--config-dir",
        "--state-dir",
        "--runtime-dir",
        "--timeout",
        "--log-level",
        "virtnetd-sock-ro",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}

#[test]
fn client_timeout_and_read_only_limit_options() {
    use std::io::{Read, Write};
    let (dirs, mut p) = started(&["--client-timeout", "1", "--max-ro-clients", "2"]);
    // Half a request, then nothing: closed by the daemon.
    let mut half =
        std::os::unix::net::UnixStream::connect(dirs.sock(SocketKind::ReadOnly)).unwrap();
    half.write_all(br#"{"id":1,"meth"#).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 64];
    match half.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("half-line client not closed: {other:?}"),
    }
    // Read-only clients beyond the limit are refused; read-write still served.
    let mut ro: Vec<_> = (0..4)
        .map(|_| connect(&dirs.sock(SocketKind::ReadOnly)))
        .collect();
    let refused = ro
        .iter_mut()
        .map(|c| c.call("net.list", json!({})).is_err())
        .filter(|&e| e)
        .count();
    assert_eq!(refused, 2);
    let mut rw = connect(&dirs.sock(SocketKind::ReadWrite));
    rw.call("net.list", json!({})).unwrap();
    assert!(p.wait_exit(Duration::from_millis(0)).is_none());
    let help = Command::new(assert_cmd::cargo::cargo_bin("virtnetd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for opt in ["--client-timeout", "--max-clients", "--max-ro-clients"] {
        assert!(help.contains(opt), "{opt} missing from --help");
    }
}
