//! The daemon server in-process, behind a small in-memory test service:
//! protocol errors, access control, admin methods, concurrency, per-key
//! locking, idle timeout and shutdown.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use virtnet_daemon::{
    CallContext, Client, ClientError, ErrorCode, ExitReason, KeyedLocks, Listener, LogControl,
    MethodInfo, RpcError, Server, ServerConfig, ServerError, Service, ShutdownHandle, SocketKind,
};

/// In-memory networks: enough of a driver to exercise the server.
#[derive(Default)]
struct MemNet {
    nets: Mutex<BTreeMap<String, bool>>,
    locks: KeyedLocks<String>,
    active_per_key: Mutex<BTreeMap<String, usize>>,
    max_per_key: AtomicUsize,
    active: AtomicUsize,
    max_active: AtomicUsize,
    busy: AtomicBool,
}

const MEM_METHODS: &[MethodInfo] = &[
    MethodInfo::read_write("net.define"),
    MethodInfo::read_write("net.start"),
    MethodInfo::read_only("net.list"),
    MethodInfo::read_only("net.info"),
    MethodInfo::read_only("test.panic"),
];

fn name_param(params: &Value) -> Result<String, RpcError> {
    match params.get("name") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(RpcError::invalid_params(
            "param \"name\" (string) is required",
        )),
    }
}

impl Service for MemNet {
    fn methods(&self) -> &[MethodInfo] {
        MEM_METHODS
    }

    fn call(&self, _ctx: &CallContext, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            "net.define" => {
                let name = name_param(&params)?;
                self.nets
                    .lock()
                    .unwrap()
                    .entry(name.clone())
                    .or_insert(false);
                Ok(json!({"name": name}))
            }
            "net.start" => {
                let name = name_param(&params)?;
                let sleep = params.get("sleep_ms").and_then(Value::as_u64).unwrap_or(0);
                let _guard = self.locks.lock(name.clone());
                let now_key = {
                    let mut m = self.active_per_key.lock().unwrap();
                    let c = m.entry(name.clone()).or_insert(0);
                    *c += 1;
                    *c
                };
                self.max_per_key.fetch_max(now_key, Ordering::SeqCst);
                let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_active.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(sleep));
                self.active.fetch_sub(1, Ordering::SeqCst);
                *self.active_per_key.lock().unwrap().get_mut(&name).unwrap() -= 1;
                let mut nets = self.nets.lock().unwrap();
                match nets.get_mut(&name) {
                    Some(a) => {
                        *a = true;
                        Ok(json!({"name": name, "active": true}))
                    }
                    None => Err(RpcError::new(100, format!("network {name:?} not found"))),
                }
            }
            "net.list" => Ok(json!(self.nets.lock().unwrap().keys().collect::<Vec<_>>())),
            "net.info" => {
                let name = name_param(&params)?;
                let nets = self.nets.lock().unwrap();
                match nets.get(&name) {
                    Some(a) => Ok(json!({"name": name, "active": a})),
                    None => Err(RpcError::new(100, format!("network {name:?} not found"))),
                }
            }
            "test.panic" => panic!("test service panics on purpose"),
            other => Err(RpcError::method_not_found(other)),
        }
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }
}

struct TestLog(Mutex<String>);
impl LogControl for TestLog {
    fn level(&self) -> String {
        self.0.lock().unwrap().clone()
    }
    fn set_level(&self, level: &str) -> Result<String, String> {
        if ["error", "warn", "info", "debug", "trace"].contains(&level) {
            *self.0.lock().unwrap() = level.into();
            Ok(level.into())
        } else {
            Err(format!("invalid log level {level:?}"))
        }
    }
}

struct Running {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<ExitReason, ServerError>>>,
    service: Arc<MemNet>,
}

impl Running {
    fn path(&self, kind: SocketKind) -> PathBuf {
        kind.path_in(&self.dir)
    }
    fn client(&self, kind: SocketKind) -> Client {
        let c = Client::connect(self.path(kind)).unwrap();
        c.set_timeout(Some(Duration::from_secs(20))).unwrap();
        c
    }
    fn stop(mut self) -> ExitReason {
        self.handle.shutdown();
        self.thread.take().unwrap().join().unwrap().unwrap()
    }
    fn wait_exit(&mut self, within: Duration) -> Option<ExitReason> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.thread.as_ref().unwrap().is_finished() {
                return Some(self.thread.take().unwrap().join().unwrap().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

/// Listeners bound by the test; everything world-accessible so that the
/// server's own peer check is what refuses non-root clients.
fn start(config: ServerConfig) -> Running {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let listeners = SocketKind::ALL
        .iter()
        .map(|&k| {
            let p = k.path_in(&dir);
            let l = UnixListener::bind(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
            Listener::new(k, l)
        })
        .collect();
    let service = Arc::new(MemNet::default());
    let server = Server::new(config, listeners, service.clone()).unwrap();
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());
    Running {
        _dir: tmp,
        dir,
        handle,
        thread: Some(thread),
        service,
    }
}

fn code(e: ClientError) -> Option<ErrorCode> {
    match e {
        ClientError::Remote(r) => r.kind(),
        other => panic!("expected a daemon error, got {other:?}"),
    }
}

#[test]
fn admin_status_and_log_level() {
    let log = Arc::new(TestLog(Mutex::new("info".into())));
    let r = start(ServerConfig {
        log_control: Some(log.clone()),
        version: "9.9.9-test".into(),
        ..ServerConfig::default()
    });
    let _other = r.client(SocketKind::ReadOnly);
    let mut admin = r.client(SocketKind::Admin);
    let st = admin.call("daemon.status", json!({})).unwrap();
    assert_eq!(st["version"], "9.9.9-test");
    assert_eq!(st["clients"], 2);
    assert_eq!(st["client_list"].as_array().unwrap().len(), 2);
    assert_eq!(st["activated"], false);
    assert_eq!(st["log_level"], "info");
    assert!(st["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let names: Vec<&str> = st["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "virtnetd.socket",
            "virtnetd-ro.socket",
            "virtnetd-admin.socket"
        ]
    );

    let res = admin
        .call("daemon.set-log-level", json!({"level": "debug"}))
        .unwrap();
    assert_eq!(res, json!({"previous": "info", "level": "debug"}));
    assert_eq!(log.level(), "debug");
    let e = admin
        .call("daemon.set-log-level", json!({"level": "loud"}))
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::InvalidParams));
    let e = admin.call("daemon.set-log-level", json!({})).unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::InvalidParams));
    let e = admin
        .call("daemon.set-log-level", json!({"level": 3}))
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::InvalidParams));
    let e = admin.call("daemon.nonexistent", json!({})).unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::MethodNotFound));
    // The admin socket serves only daemon.* methods.
    let e = admin.call("net.list", json!({})).unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::WrongSocket));
    assert_eq!(r.stop(), ExitReason::Requested);
}

#[test]
fn admin_methods_only_on_admin_socket() {
    let r = start(ServerConfig::default());
    for kind in [SocketKind::ReadWrite, SocketKind::ReadOnly] {
        let mut c = r.client(kind);
        for m in ["daemon.status", "daemon.set-log-level"] {
            let e = c.call(m, json!({"level": "debug"})).unwrap_err();
            assert_eq!(code(e), Some(ErrorCode::WrongSocket), "{m} on {kind}");
        }
    }
}

#[test]
fn no_log_control_is_a_clear_error() {
    let r = start(ServerConfig::default());
    let mut admin = r.client(SocketKind::Admin);
    let e = admin
        .call("daemon.set-log-level", json!({"level": "debug"}))
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::OperationFailed));
    assert_eq!(
        admin.call("daemon.status", json!({})).unwrap()["log_level"],
        Value::Null
    );
}

#[test]
fn read_only_socket_refuses_changes() {
    let r = start(ServerConfig::default());
    let mut rw = r.client(SocketKind::ReadWrite);
    rw.call("net.define", json!({"name": "default"})).unwrap();
    let mut ro = r.client(SocketKind::ReadOnly);
    for (m, p) in [
        ("net.define", json!({"name": "x"})),
        ("net.start", json!({"name": "default"})),
    ] {
        let e = ro.call(m, p).unwrap_err();
        assert_eq!(code(e), Some(ErrorCode::ReadOnly), "{m}");
    }
    // Nothing changed, and reading works on the same connection.
    assert_eq!(ro.call("net.list", json!({})).unwrap(), json!(["default"]));
    assert_eq!(
        ro.call("net.info", json!({"name": "default"})).unwrap(),
        json!({"name": "default", "active": false})
    );
    // Unknown methods are unknown everywhere (not "read-only").
    let e = ro.call("net.frobnicate", json!({})).unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::MethodNotFound));
}

#[test]
fn protocol_errors_keep_the_connection() {
    let r = start(ServerConfig::default());
    let mut c = r.client(SocketKind::ReadWrite);
    let cases: &[(&[u8], Value, ErrorCode)] = &[
        (b"{not json\n", Value::Null, ErrorCode::ParseError),
        (b"[1,2,3]\n", Value::Null, ErrorCode::InvalidRequest),
        (br#"{"id":5}"#, json!(5), ErrorCode::InvalidRequest),
        (
            br#"{"id":"s","method":7}"#,
            json!("s"),
            ErrorCode::InvalidRequest,
        ),
        (
            br#"{"id":6,"method":"net.info","params":"x"}"#,
            json!(6),
            ErrorCode::InvalidRequest,
        ),
        (
            br#"{"id":7,"method":"net.info"}"#,
            json!(7),
            ErrorCode::InvalidParams,
        ),
        (
            br#"{"id":8,"method":"nope","params":{}}"#,
            json!(8),
            ErrorCode::MethodNotFound,
        ),
        (
            br#"{"id":9,"method":"test.panic","params":{}}"#,
            json!(9),
            ErrorCode::Internal,
        ),
    ];
    for (line, id, want) in cases {
        let mut bytes = line.to_vec();
        if bytes.last() != Some(&b'\n') {
            bytes.push(b'\n');
        }
        c.send_raw(&bytes).unwrap();
        let resp = c.read_response().unwrap();
        assert_eq!(&resp.id, id, "{}", String::from_utf8_lossy(line));
        assert_eq!(
            resp.result.unwrap_err().kind(),
            Some(*want),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // Blank lines are ignored; the connection still works.
    c.send_raw(b"\n  \n").unwrap();
    c.call("net.define", json!({"name": "n"})).unwrap();
    assert_eq!(c.call("net.list", json!(null)).unwrap(), json!(["n"]));
    // A driver error code passes through untouched.
    let e = c.call("net.start", json!({"name": "absent"})).unwrap_err();
    assert_eq!(e.remote().unwrap().code, 100);
}

#[test]
fn oversized_request_is_refused_and_connection_survives() {
    let r = start(ServerConfig::default());
    let mut c = r.client(SocketKind::ReadWrite);
    // 2 MiB inside a syntactically valid request.
    let big = format!(
        "{{\"id\":1,\"method\":\"net.define\",\"params\":{{\"name\":\"{}\"}}}}\n",
        "a".repeat(2 << 20)
    );
    c.send_raw(big.as_bytes()).unwrap();
    let resp = c.read_response().unwrap();
    assert_eq!(resp.id, Value::Null);
    let err = resp.result.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorCode::RequestTooLarge));
    assert!(err.message.contains("1048576"), "{}", err.message);
    // Right at the limit is still fine (the name is then simply long).
    let name = "b".repeat(1000);
    c.call("net.define", json!({"name": name})).unwrap();
    assert_eq!(c.call("net.list", json!({})).unwrap(), json!([name]));
}

#[test]
fn smaller_limit_is_configurable() {
    let r = start(ServerConfig {
        max_request_bytes: 64,
        ..ServerConfig::default()
    });
    let mut c = r.client(SocketKind::ReadWrite);
    let e = c
        .call("net.define", json!({"name": "x".repeat(100)}))
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::RequestTooLarge));
    c.call("net.define", json!({"name": "short"})).unwrap();
}

#[test]
fn many_concurrent_clients() {
    let r = start(ServerConfig::default());
    let path = r.path(SocketKind::ReadWrite);
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&path).unwrap();
                c.set_timeout(Some(Duration::from_secs(30))).unwrap();
                for i in 0..25 {
                    let name = format!("t{t}-n{i}");
                    let res = c.call("net.define", json!({"name": name})).unwrap();
                    assert_eq!(res, json!({"name": name}));
                    let info = c.call("net.info", json!({"name": name})).unwrap();
                    assert_eq!(info["name"], name);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = r.client(SocketKind::ReadOnly);
    assert_eq!(
        c.call("net.list", json!({}))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        32 * 25
    );
}

#[test]
fn same_network_serialised_different_networks_parallel() {
    let r = start(ServerConfig::default());
    let path = r.path(SocketKind::ReadWrite);
    let mut c = r.client(SocketKind::ReadWrite);
    for i in 0..6 {
        c.call("net.define", json!({"name": format!("n{i}")}))
            .unwrap();
    }
    c.call("net.define", json!({"name": "shared"})).unwrap();
    let run = |names: Vec<String>| {
        let threads: Vec<_> = names
            .into_iter()
            .map(|name| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut c = Client::connect(&path).unwrap();
                    c.call("net.start", json!({"name": name, "sleep_ms": 150}))
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    // Six starts of one network: never two at once.
    let t0 = Instant::now();
    run(vec!["shared".to_string(); 6]);
    assert_eq!(r.service.max_per_key.load(Ordering::SeqCst), 1);
    assert!(t0.elapsed() >= Duration::from_millis(6 * 150 - 50));
    // Six different networks: they overlap.
    r.service.max_active.store(0, Ordering::SeqCst);
    run((0..6).map(|i| format!("n{i}")).collect());
    assert_eq!(r.service.max_per_key.load(Ordering::SeqCst), 1);
    assert!(
        r.service.max_active.load(Ordering::SeqCst) >= 2,
        "different networks must run in parallel"
    );
}

#[test]
fn keyed_locks_direct() {
    let locks: KeyedLocks<&str> = KeyedLocks::new();
    let a = locks.lock("a");
    assert!(locks.try_lock("a").is_none());
    let b = locks.try_lock("b").expect("other keys are free");
    assert_eq!(locks.held(), 2);
    assert!(locks.is_locked(&"a"));
    drop(a);
    assert!(!locks.is_locked(&"a"));
    assert_eq!(b.key(), &"b");
    drop(b);
    assert_eq!(locks.held(), 0);

    // A waiter wakes when the holder releases.
    let locks = Arc::new(KeyedLocks::<String>::new());
    let g = locks.lock("k".into());
    let l2 = locks.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let _g = l2.lock("k".into());
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(g);
    assert!(waiter.join().unwrap() >= Duration::from_millis(90));
}

/// Connect from a thread whose credentials (Linux credentials are per
/// thread; the raw syscall changes only this one) are uid/gid 65534.
fn as_nobody<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: raw setresgid/setresuid on the calling thread only. Not
        // nix::unistd::setresuid: glibc's wrapper (which nix calls) changes
        // every thread of the process, the test harness's included.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
        }
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn peer_check_on_rw_and_admin_sockets() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to switch a thread to another uid");
        return;
    }
    let r = start(ServerConfig::default());
    for kind in [SocketKind::ReadWrite, SocketKind::Admin] {
        let path = r.path(kind);
        let err = as_nobody(move || {
            let mut c = Client::connect(&path).unwrap();
            c.call("net.list", json!({})).unwrap_err()
        });
        let remote = err.remote().expect("daemon refusal");
        assert_eq!(remote.kind(), Some(ErrorCode::AccessDenied), "{kind}");
        assert!(remote.message.contains("uid 65534"), "{}", remote.message);
    }
    // The read-only socket accepts anyone, for read-only methods.
    let path = r.path(SocketKind::ReadOnly);
    let (list, start) = as_nobody(move || {
        let mut c = Client::connect(&path).unwrap();
        (
            c.call("net.list", json!({})),
            c.call("net.define", json!({"name": "x"})),
        )
    });
    assert_eq!(list.unwrap(), json!([]));
    assert_eq!(code(start.unwrap_err()), Some(ErrorCode::ReadOnly));
    // Root is let in.
    let mut c = r.client(SocketKind::ReadWrite);
    c.call("net.define", json!({"name": "x"})).unwrap();
}

#[test]
fn daemon_uid_is_allowed() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let r = start(ServerConfig {
        daemon_uid: 65534,
        ..ServerConfig::default()
    });
    let path = r.path(SocketKind::ReadWrite);
    let res = as_nobody(move || {
        let mut c = Client::connect(&path).unwrap();
        c.call("net.define", json!({"name": "mine"}))
    });
    assert_eq!(res.unwrap(), json!({"name": "mine"}));
}

#[test]
fn client_limit() {
    let r = start(ServerConfig {
        max_clients: 1,
        max_ro_clients: 1,
        ..ServerConfig::default()
    });
    let mut a = r.client(SocketKind::ReadWrite);
    let mut b = r.client(SocketKind::ReadOnly);
    a.call("net.list", json!({})).unwrap();
    b.call("net.list", json!({})).unwrap();
    let mut c = r.client(SocketKind::ReadOnly);
    let e = c.call("net.list", json!({})).unwrap_err();
    assert!(
        e.to_string()
            .contains("too many read-only clients (limit 1)"),
        "{e}"
    );
    assert_eq!(code(e), Some(ErrorCode::TooManyClients));
    let mut c = r.client(SocketKind::Admin);
    assert_eq!(
        code(c.call("daemon.status", json!({})).unwrap_err()),
        Some(ErrorCode::TooManyClients)
    );
    drop(a);
    // The slot frees up once the server sees the disconnect.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = r.client(SocketKind::ReadWrite);
        match d.call("net.list", json!({})) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(code(e), Some(ErrorCode::TooManyClients));
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    }
}

#[test]
fn read_only_clients_cannot_use_up_the_other_sockets() {
    let r = start(ServerConfig {
        max_clients: 2,
        max_ro_clients: 3,
        ..ServerConfig::default()
    });
    // Far more read-only connections than either limit, all held open.
    let mut ro: Vec<Client> = (0..12).map(|_| r.client(SocketKind::ReadOnly)).collect();
    let mut served = 0;
    let mut refused = 0;
    for c in &mut ro {
        match c.call("net.list", json!({})) {
            Ok(_) => served += 1,
            Err(e) => {
                assert_eq!(code(e), Some(ErrorCode::TooManyClients));
                refused += 1;
            }
        }
    }
    assert_eq!((served, refused), (3, 9));
    // The read-write and admin sockets still have their slots.
    let mut rw = r.client(SocketKind::ReadWrite);
    assert_eq!(
        rw.call("net.define", json!({"name": "n"})).unwrap(),
        json!({"name": "n"})
    );
    let mut admin = r.client(SocketKind::Admin);
    let st = admin.call("daemon.status", json!({})).unwrap();
    assert_eq!(st["clients"], json!(5), "{st}");
}

/// Reads until EOF or error; `Ok(bytes)` when the server closed the
/// connection, `Err` when even `within` was not enough.
fn read_until_closed(s: &mut UnixStream, within: Duration) -> Result<Vec<u8>, String> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
            Err(e) => return Err(format!("connection still open after {within:?}: {e}")),
        }
    }
}

#[test]
fn a_half_line_client_is_closed_after_the_client_timeout() {
    let r = start(ServerConfig {
        client_timeout: Some(Duration::from_millis(500)),
        ..ServerConfig::default()
    });
    let mut half = UnixStream::connect(r.path(SocketKind::ReadOnly)).unwrap();
    half.write_all(br#"{"id":1,"method":"net.li"#).unwrap();
    let got = read_until_closed(&mut half, Duration::from_secs(30)).unwrap();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));

    // A request trickled in a byte at a time is bounded by the same
    // deadline (counted for the whole line, not per byte).
    let mut slow = UnixStream::connect(r.path(SocketKind::ReadWrite)).unwrap();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in br#"{"id":2,"method":"net.list","params":{"pad":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}"#.iter().cycle().take(3000) {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    read_until_closed(&mut slow, Duration::from_secs(30)).unwrap();
    trickle.join().unwrap();

    // An idle connection is closed too, and the server serves on.
    let mut idle = UnixStream::connect(r.path(SocketKind::ReadOnly)).unwrap();
    read_until_closed(&mut idle, Duration::from_secs(30)).unwrap();
    let mut c = r.client(SocketKind::ReadOnly);
    c.call("net.list", json!({})).unwrap();
}

#[test]
fn a_complete_request_before_the_client_timeout_is_served() {
    let r = start(ServerConfig {
        client_timeout: Some(Duration::from_secs(20)),
        ..ServerConfig::default()
    });
    let mut s = UnixStream::connect(r.path(SocketKind::ReadOnly)).unwrap();
    s.write_all(br#"{"id":1,"method":"net."#).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"list\"}\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"{\"id\":1,\"result\":[]}\n");
}

#[test]
fn deeply_nested_json_is_a_parse_error_not_a_crash() {
    let r = start(ServerConfig::default());
    let mut s = UnixStream::connect(r.path(SocketKind::ReadOnly)).unwrap();
    let depth = 400_000;
    let mut line = "[".repeat(depth).into_bytes();
    line.extend_from_slice("]".repeat(depth).as_bytes());
    line.push(b'\n');
    s.write_all(&line).unwrap();
    s.write_all(b"{\"id\":2,\"method\":\"net.list\"}\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.iter().filter(|&&b| b == b'\n').count() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    let mut lines = text.lines();
    let first: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(first["error"]["code"], json!(ErrorCode::ParseError.code()));
    assert!(
        first["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{first}"
    );
    assert_eq!(lines.next().unwrap(), r#"{"id":2,"result":[]}"#);
}

#[test]
fn idle_timeout_waits_for_clients_and_work() {
    let mut r = start(ServerConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..ServerConfig::default()
    });
    let c = r.client(SocketKind::ReadOnly);
    assert!(
        r.wait_exit(Duration::from_millis(800)).is_none(),
        "client connected"
    );
    drop(c);
    r.service.busy.store(true, Ordering::SeqCst);
    assert!(
        r.wait_exit(Duration::from_millis(800)).is_none(),
        "service busy"
    );
    r.service.busy.store(false, Ordering::SeqCst);
    let t = Instant::now();
    assert_eq!(
        r.wait_exit(Duration::from_secs(5)),
        Some(ExitReason::IdleTimeout)
    );
    // Idle time counts from the end of the busy period (checked every
    // quarter of the timeout).
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn shutdown_closes_clients_and_removes_own_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let listeners = virtnet_daemon::sockets::bind_own_sockets(tmp.path()).unwrap();
    for kind in SocketKind::ALL {
        let meta = std::fs::metadata(kind.path_in(tmp.path())).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, kind.mode(), "{kind}");
    }
    let stopping_seen = Arc::new(Mutex::new(Vec::new()));
    let seen = stopping_seen.clone();
    let config = ServerConfig {
        on_stopping: Some(Arc::new(move |r| seen.lock().unwrap().push(r))),
        ..ServerConfig::default()
    };
    let server = Server::new(config, listeners, Arc::new(MemNet::default())).unwrap();
    let handle = server.shutdown_handle();
    let t = std::thread::spawn(move || server.run());
    let mut c = Client::connect(SocketKind::ReadWrite.path_in(tmp.path())).unwrap();
    c.call("net.list", json!({})).unwrap();
    // A raw connection with a half-written request.
    let mut raw = UnixStream::connect(SocketKind::ReadOnly.path_in(tmp.path())).unwrap();
    raw.write_all(b"{\"id\":1,").unwrap();
    handle.shutdown();
    assert_eq!(t.join().unwrap().unwrap(), ExitReason::Requested);
    assert_eq!(*stopping_seen.lock().unwrap(), vec![ExitReason::Requested]);
    assert!(matches!(
        c.call("net.list", json!({})),
        Err(ClientError::Closed { .. } | ClientError::Io { .. })
    ));
    let mut buf = Vec::new();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(raw.read_to_end(&mut buf).unwrap_or(0), 0);
    for kind in SocketKind::ALL {
        assert!(!kind.path_in(tmp.path()).exists(), "{kind} socket removed");
    }
}

#[test]
fn server_needs_listeners() {
    assert!(matches!(
        Server::new(ServerConfig::default(), vec![], Arc::new(MemNet::default())),
        Err(ServerError::NoListeners)
    ));
}
