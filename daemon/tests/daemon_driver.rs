//! `DriverService` on a simulated host: every method with its documented
//! params, results and error codes; bad params; and 32 concurrent clients
//! starting and destroying networks, checked for lost or duplicated rules
//! against the same networks started one after another.

mod daemon_common;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use daemon_common::*;
use serde_json::{json, Value};
use virtnet_core::driver::{Driver, DriverConfig};
use virtnet_core::firewall::Backend;
use virtnet_daemon::driver_codes as codes;
use virtnet_daemon::driver_service::info_from_json;
use virtnet_daemon::{
    CallContext, DriverService, ErrorCode, RpcError, Service, SocketKind, NET_METHODS,
};
use virtnet_fake::FakeHost;
use virtnet_runner::Runner;
use virtnet_testkit::{CmdMatcher, FaultPlan, FaultRunner};

struct Env {
    dir: tempfile::TempDir,
    host: Arc<FakeHost>,
    /// The driver's door to the host, with the faults a test sets.
    faults: Arc<FaultRunner>,
    svc: Arc<DriverService>,
}

fn env(backend: Backend) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(FakeHost::new());
    let faults = Arc::new(FaultRunner::new(host.clone()));
    let cfg = DriverConfig::new(
        dir.path().join("config"),
        dir.path().join("state"),
        faults.clone() as Arc<dyn Runner>,
    )
    .with_backend(backend);
    let driver = Arc::new(Driver::open(cfg).unwrap());
    Env {
        dir,
        host,
        faults,
        svc: Arc::new(DriverService::new(driver)),
    }
}

fn has_link(h: &FakeHost, name: &str) -> bool {
    h.state().ip.links.iter().any(|l| l.name == name)
}

fn ctx() -> CallContext {
    CallContext {
        client_id: 1,
        socket: SocketKind::ReadWrite,
        peer: None,
    }
}

fn call(svc: &DriverService, method: &str, params: Value) -> Result<Value, RpcError> {
    svc.call(&ctx(), method, params)
}

fn code(r: Result<Value, RpcError>) -> i64 {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.code,
    }
}

#[test]
fn every_method_with_documented_results() {
    let e = env(Backend::Nftables);
    let s = &*e.svc;
    assert_eq!(s.methods(), NET_METHODS);
    let xml = net_xml(0);
    let r = call(s, "net.define", json!({ "xml": xml })).unwrap();
    assert_eq!(r["name"], "cnet0");
    let uuid = r["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 36, "{r}");

    let info = call(s, "net.info", json!({"name": "cnet0"})).unwrap();
    assert_eq!(
        info,
        json!({"name": "cnet0", "uuid": uuid, "active": false, "persistent": true,
               "autostart": false, "bridge": "vnbr0", "firewall_backend": null,
               "title": null})
    );
    // By UUID: as a "name" (virsh's lookup) or as a "uuid" only.
    assert_eq!(call(s, "net.info", json!({ "name": uuid })).unwrap(), info);
    assert_eq!(call(s, "net.info", json!({ "uuid": uuid })).unwrap(), info);
    assert_eq!(
        call(s, "net.start", json!({"name": "cnet0"})).unwrap(),
        json!({"name": "cnet0"})
    );
    let info = info_from_json(&call(s, "net.info", json!({"name": "cnet0"})).unwrap()).unwrap();
    assert!(info.active);
    assert_eq!(info.firewall_backend, Some(Backend::Nftables));
    assert!(has_link(&e.host, "vnbr0"));

    let list = call(s, "net.list", json!({})).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "cnet0");
    assert_eq!(list[0]["active"], true);
    // libvirt's flags: 1 inactive, 2 active, 8 transient.
    assert_eq!(call(s, "net.list", json!({"flags": 1})).unwrap(), json!([]));
    assert_eq!(call(s, "net.list", json!({"flags": 2})).unwrap(), list);
    assert_eq!(call(s, "net.list", json!({"flags": 8})).unwrap(), json!([]));

    // A transient network, by UUID everywhere.
    let t = call(s, "net.create", json!({"xml": net_xml(1)})).unwrap();
    assert_eq!(t["name"], "cnet1");
    let tu = t["uuid"].as_str().unwrap().to_string();
    let ti = call(s, "net.info", json!({ "name": tu })).unwrap();
    assert_eq!(
        (ti["active"].clone(), ti["persistent"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        call(s, "net.list", json!({"flags": 8})).unwrap()[0]["name"],
        "cnet1"
    );
    // Reload, check and repair.
    let r = call(s, "net.reload", json!({})).unwrap();
    assert_eq!(
        r,
        json!({"reloaded": ["cnet0", "cnet1"], "autostarted": [], "problems": []})
    );
    let c = call(s, "net.check", json!({})).unwrap();
    assert_eq!(c["networks"].as_array().unwrap().len(), 2, "{c}");
    assert_eq!(c["private_chains"], json!([]), "{c}");
    assert!(c["networks"][0]["checked"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["networks"][0]["drift"], json!([]), "{c}");
    let r = call(s, "net.repair", json!({ "name": tu })).unwrap();
    assert_eq!(r["before"], r["after"], "{r}");
    assert_eq!(r["after"]["networks"][0]["name"], "cnet1", "{r}");
    assert_eq!(
        call(s, "net.destroy", json!({ "name": tu })).unwrap(),
        json!({"name": "cnet1"})
    );
    let err = call(s, "net.info", json!({ "uuid": tu })).unwrap_err();
    assert_eq!(err.code, codes::NOT_FOUND);
    assert_eq!(
        err.message,
        format!("Network not found: no network with matching uuid '{tu}'")
    );

    let live = call(s, "net.dumpxml", json!({"name": "cnet0"})).unwrap();
    let inactive = call(s, "net.dumpxml", json!({"name": "cnet0", "inactive": true})).unwrap();
    let (live, inactive) = (
        live["xml"].as_str().unwrap(),
        inactive["xml"].as_str().unwrap(),
    );
    // The live definition has the NAT port range the start filled in.
    assert!(live.contains("<port start='1024' end='65535'/>"), "{live}");
    assert!(!inactive.contains("<port "), "{inactive}");
    assert_eq!(
        inactive,
        e.svc.driver().dumpxml("cnet0", true).unwrap(),
        "same text as the driver"
    );

    assert_eq!(
        call(s, "net.autostart", json!({"name": "cnet0", "enable": true})).unwrap(),
        json!({"name": "cnet0", "autostart": true})
    );
    assert!(e.dir.path().join("config/autostart/cnet0.xml").exists());
    assert_eq!(
        call(s, "net.info", json!({"name": "cnet0"})).unwrap()["autostart"],
        true
    );
    call(
        s,
        "net.autostart",
        json!({"name": "cnet0", "enable": false}),
    )
    .unwrap();
    assert!(!e.dir.path().join("config/autostart/cnet0.xml").exists());

    assert_eq!(
        call(s, "net.destroy", json!({"name": "cnet0"})).unwrap(),
        json!({"name": "cnet0"})
    );
    assert!(!has_link(&e.host, "vnbr0"));
    assert_eq!(
        call(s, "net.undefine", json!({"name": "cnet0"})).unwrap(),
        json!({"name": "cnet0"})
    );
    assert_eq!(call(s, "net.list", json!({})).unwrap(), json!([]));
}

#[test]
fn driver_errors_have_their_codes_and_messages() {
    let e = env(Backend::Iptables);
    let s = &*e.svc;
    let err = call(s, "net.start", json!({"name": "nope"})).unwrap_err();
    assert_eq!(err.code, codes::NOT_FOUND);
    assert_eq!(
        err.message,
        "Network not found: no network with matching name 'nope'"
    );
    for (m, p) in [
        ("net.destroy", json!({"name": "nope"})),
        ("net.undefine", json!({"name": "nope"})),
        ("net.info", json!({"name": "nope"})),
        ("net.dumpxml", json!({"name": "nope"})),
        ("net.autostart", json!({"name": "nope", "enable": true})),
    ] {
        assert_eq!(code(call(s, m, p)), codes::NOT_FOUND, "{m}");
    }

    call(s, "net.define", json!({"xml": net_xml(4)})).unwrap();
    call(s, "net.start", json!({"name": "cnet4"})).unwrap();
    let err = call(s, "net.start", json!({"name": "cnet4"})).unwrap_err();
    assert_eq!(err.code, codes::ALREADY_ACTIVE);
    assert_eq!(err.message, "network is already active");
    call(s, "net.destroy", json!({"name": "cnet4"})).unwrap();
    let err = call(s, "net.destroy", json!({"name": "cnet4"})).unwrap_err();
    assert_eq!(err.code, codes::NOT_ACTIVE);
    assert!(err.message.contains("'cnet4' is not active"), "{err:?}");

    // Malformed and invalid definitions: position in the message.
    let err = call(s, "net.define", json!({"xml": "<network><name>x</name"})).unwrap_err();
    assert_eq!(err.code, codes::INVALID_DEFINITION, "{err:?}");
    let err = call(s, "net.define", json!({"xml": "<network/>"})).unwrap_err();
    assert_eq!(err.code, codes::INVALID_DEFINITION, "{err:?}");
    assert!(err.message.contains("name"), "{err:?}");

    // Same name, another UUID; same UUID, another name.
    let uuid = call(s, "net.info", json!({"name": "cnet4"})).unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let other_uuid = net_xml(4).replace(
        "<name>cnet4</name>",
        "<name>cnet4</name><uuid>11111111-2222-3333-4444-555555555555</uuid>",
    );
    let err = call(s, "net.define", json!({ "xml": other_uuid })).unwrap_err();
    assert_eq!(err.code, codes::ALREADY_EXISTS, "{err:?}");
    let same_uuid = net_xml(6).replace(
        "<name>cnet6</name>",
        &format!("<name>cnet6</name><uuid>{uuid}</uuid>"),
    );
    let err = call(s, "net.define", json!({ "xml": same_uuid })).unwrap_err();
    assert_eq!(err.code, codes::ALREADY_EXISTS, "{err:?}");

    // Transient: active, then undefined.
    call(s, "net.start", json!({"name": "cnet4"})).unwrap();
    call(s, "net.undefine", json!({"name": "cnet4"})).unwrap();
    let info = call(s, "net.info", json!({"name": "cnet4"})).unwrap();
    assert_eq!(
        (info["active"].clone(), info["persistent"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        code(call(s, "net.undefine", json!({"name": "cnet4"}))),
        codes::TRANSIENT
    );
    assert_eq!(
        code(call(
            s,
            "net.autostart",
            json!({"name": "cnet4", "enable": true})
        )),
        codes::TRANSIENT
    );
    call(s, "net.destroy", json!({"name": "cnet4"})).unwrap();
    assert_eq!(call(s, "net.list", json!({})).unwrap(), json!([]));

    // A failing host command: start fails, everything undone, code 104.
    call(s, "net.define", json!({"xml": net_xml(8)})).unwrap();
    let before = e.host.state();
    e.faults.set_plan(FaultPlan::none().fail_matching(
        CmdMatcher::program("iptables").containing("MASQUERADE"),
        1,
        "iptables: simulated failure",
        None,
    ));
    let err = call(s, "net.start", json!({"name": "cnet8"})).unwrap_err();
    assert_eq!(err.code, codes::OPERATION_FAILED, "{err:?}");
    e.faults.set_plan(FaultPlan::none());
    assert_same_objects(
        "after failed start",
        &before,
        e.dir.path(),
        &e.host.state(),
        e.dir.path(),
    );
    let codes_seen: BTreeSet<i64> = codes::ALL.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes_seen.len(), codes::ALL.len(), "codes are distinct");
    assert!(codes_seen.iter().all(|c| *c >= 100));
}

#[test]
fn bad_params_are_invalid_params() {
    let e = env(Backend::Nftables);
    let s = &*e.svc;
    let cases = [
        ("net.define", json!({})),
        ("net.define", json!({"xml": 5})),
        ("net.define", json!({"xml": "<network/>", "extra": 1})),
        ("net.start", json!({})),
        ("net.start", json!({"name": ""})),
        ("net.start", json!({"name": ["a"]})),
        ("net.destroy", json!({"name": null})),
        ("net.undefine", json!({"nam": "x"})),
        ("net.autostart", json!({"name": "x"})),
        ("net.autostart", json!({"name": "x", "enable": "yes"})),
        ("net.list", json!({"all": true})),
        ("net.info", json!({"name": 1})),
        ("net.dumpxml", json!({"name": "x", "inactive": 1})),
    ];
    for (m, p) in cases {
        let err = call(s, m, p.clone()).unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::InvalidParams.code(),
            "{m} {p}: {err:?}"
        );
        assert!(err.message.starts_with(m), "{m} {p}: {err:?}");
    }
    assert_eq!(
        code(call(s, "net.frobnicate", json!({}))),
        ErrorCode::MethodNotFound.code()
    );
    // Nothing changed.
    assert_eq!(call(s, "net.list", json!({})).unwrap(), json!([]));
}

/// Runs `clients` threads against one service: each defines its own
/// network, starts and destroys it `rounds` times and leaves it started
/// when its number is even; meanwhile 4 more threads start and destroy one
/// shared network. Then checks the host against the sequential reference,
/// destroys everything concurrently and checks again.
fn concurrent_clients(backend: Backend, clients: usize, rounds: usize) {
    let e = env(backend);
    call(&e.svc, "net.define", json!({"xml": net_xml(200)})).unwrap();
    let barrier = Arc::new(Barrier::new(clients + 4));
    let mut threads = Vec::new();
    for i in 0..clients {
        let (svc, barrier) = (e.svc.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            let name = net_name(i);
            let r = call(&svc, "net.define", json!({"xml": net_xml(i)})).unwrap();
            assert_eq!(r["name"], name.as_str());
            for _ in 0..rounds {
                call(&svc, "net.start", json!({ "name": name })).unwrap();
                let info = call(&svc, "net.info", json!({ "name": name })).unwrap();
                assert_eq!(info["active"], true, "{info}");
                call(&svc, "net.destroy", json!({ "name": name })).unwrap();
            }
            if i % 2 == 0 {
                call(&svc, "net.start", json!({ "name": name })).unwrap();
            }
        }));
    }
    for t in 0..4 {
        let (svc, barrier) = (e.svc.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            let name = net_name(200);
            for k in 0..rounds * 2 {
                let m = if (k + t) % 2 == 0 {
                    "net.start"
                } else {
                    "net.destroy"
                };
                match call(&svc, m, json!({ "name": name })) {
                    Ok(_) => {}
                    Err(e) if e.code == codes::ALREADY_ACTIVE || e.code == codes::NOT_ACTIVE => {}
                    Err(e) => panic!("{m} {name}: {e:?}"),
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(e.svc.locks().held(), 0);
    // The private chains were set up once, by whichever start came first.
    let setup_queries = e
        .host
        .records()
        .iter()
        .filter(|r| {
            let a = &r.cmd.argv;
            a.iter().any(|x| x == "--list-rules")
                || a.windows(2).any(|w| w[0] == "list" && w[1] == "table")
        })
        .count();
    let want = match backend {
        Backend::Iptables => 6, // filter, nat, mangle x IPv4, IPv6
        _ => 2,                 // ip and ip6 libvirt_network
    };
    assert_eq!(setup_queries, want, "private chain setup queries");

    let list: Vec<_> = call(&e.svc, "net.list", json!({}))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| info_from_json(v).unwrap())
        .collect();
    assert_eq!(list.len(), clients + 1);
    let bridges: BTreeSet<_> = list.iter().map(|n| n.bridge.clone().unwrap()).collect();
    assert_eq!(
        bridges.len(),
        list.len(),
        "every network has its own bridge: {list:?}"
    );
    let started: Vec<String> = list
        .iter()
        .filter(|n| n.active)
        .map(|n| n.name.clone())
        .collect();
    for i in (0..clients).step_by(2) {
        assert!(started.contains(&net_name(i)), "{} active", net_name(i));
    }
    // The complete definitions (allocated bridges and MACs included).
    let xmls: Vec<String> = list
        .iter()
        .map(|n| {
            call(
                &e.svc,
                "net.dumpxml",
                json!({"name": n.name, "inactive": true}),
            )
            .unwrap()["xml"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for n in list.iter().filter(|n| n.active) {
        let st = e.svc.driver().status(&n.name).unwrap();
        assert!(
            st.fw_removal.is_some(),
            "{}: status has a removal plan",
            n.name
        );
        assert_eq!(n.firewall_backend, Some(backend));
    }
    let ref_dir = tempfile::tempdir().unwrap();
    let reference = sequential_reference(backend, &xmls, &started, ref_dir.path());
    assert_same_objects(
        &format!("{backend}: {clients} concurrent clients"),
        &reference,
        ref_dir.path(),
        &e.host.state(),
        e.dir.path(),
    );

    // Destroy everything concurrently: exactly the chains remain.
    let threads: Vec<_> = started
        .iter()
        .map(|n| {
            let (svc, n) = (e.svc.clone(), n.clone());
            std::thread::spawn(move || call(&svc, "net.destroy", json!({ "name": n })).unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ref_dir = tempfile::tempdir().unwrap();
    let reference = sequential_reference(backend, &xmls, &[], ref_dir.path());
    assert_same_objects(
        &format!("{backend}: after concurrent destroy"),
        &reference,
        ref_dir.path(),
        &e.host.state(),
        e.dir.path(),
    );
    assert!(e.svc.driver().pending_journals().is_empty());
}

/// The checker itself: a lost rule and a duplicated rule are both seen.
#[test]
fn checker_sees_lost_and_duplicated_rules() {
    let e = env(Backend::Iptables);
    call(&e.svc, "net.define", json!({"xml": net_xml(0)})).unwrap();
    call(&e.svc, "net.start", json!({"name": "cnet0"})).unwrap();
    let good = e.host.state();
    let root = e.dir.path();
    assert_same_objects("same", &good, root, &good, root);
    let rule = ["iptables", "-t", "nat", "-S", "LIBVIRT_PRT"];
    let listed = e.host.exec(&rule, None).unwrap().stdout;
    let masq = listed
        .lines()
        .find(|l| l.contains("MASQUERADE"))
        .expect("a MASQUERADE rule")
        .to_string();
    let mut argv: Vec<&str> = vec!["iptables", "-t", "nat"];
    argv.extend(masq.split_whitespace());
    assert_eq!(e.host.exec(&argv, None).unwrap().status, 0, "{argv:?}");
    let dup = objects_diff(&objects(&good, &[root]), &objects(&e.host.state(), &[root]));
    assert!(
        dup.starts_with("extra (2, expected 1): iptables|nat|-A LIBVIRT_PRT"),
        "{dup}"
    );
    argv[3] = "-D";
    for _ in 0..2 {
        assert_eq!(e.host.exec(&argv, None).unwrap().status, 0, "{argv:?}");
    }
    let lost = objects_diff(&objects(&good, &[root]), &objects(&e.host.state(), &[root]));
    assert!(
        lost.starts_with("lost (0 of 1): iptables|nat|-A LIBVIRT_PRT"),
        "{lost}"
    );
}

#[test]
fn thirty_two_clients_nftables() {
    concurrent_clients(Backend::Nftables, 32, 3);
}

#[test]
fn thirty_two_clients_iptables() {
    concurrent_clients(Backend::Iptables, 32, 3);
}

/// A hostile definition is refused quickly, with libxml2's depth limit
/// (more than 256 nested elements), instead of exhausting the daemon's
/// memory; 256 levels are still accepted (unknown elements are ignored).
#[test]
fn deep_nesting_is_refused_at_libxml2s_limit() {
    let e = env(Backend::Nftables);
    let nested = |depth: usize| {
        format!(
            "<network><name>deep</name>{}{}</network>",
            "<a>".repeat(depth - 1),
            "</a>".repeat(depth - 1)
        )
    };
    let t0 = std::time::Instant::now();
    let err = call(&e.svc, "net.define", json!({"xml": nested(200_000)})).unwrap_err();
    assert_eq!(err.code, codes::INVALID_DEFINITION);
    assert!(
        err.message
            .ends_with("Excessive depth in document: 256 use XML_PARSE_HUGE option"),
        "{err:?}"
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    let err = call(&e.svc, "net.define", json!({"xml": nested(258)})).unwrap_err();
    assert_eq!(err.code, codes::INVALID_DEFINITION, "{err:?}");
    let ok = call(&e.svc, "net.define", json!({"xml": nested(257)})).unwrap();
    assert_eq!(ok["name"], "deep");
}

/// A simulated host whose `ip link add ... BRIDGE` blocks until released.
struct GatedHost {
    host: FakeHost,
    bridge: String,
    entered: std::sync::mpsc::SyncSender<()>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Runner for GatedHost {
    fn run(
        &self,
        cmd: &virtnet_runner::Cmd,
    ) -> Result<virtnet_runner::Output, virtnet_runner::RunError> {
        let a = &cmd.argv;
        if a.len() > 4 && a[1] == "link" && a[2] == "add" && a[4] == self.bridge {
            let _ = self.entered.send(());
            let _ = self.release.lock().unwrap().recv();
        }
        self.host.run(cmd)
    }
}

/// While a start of network A is inside a host command, another call on A
/// waits for it, and calls on network B go through.
#[test]
fn one_network_serialised_others_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let host = Arc::new(GatedHost {
        host: FakeHost::new(),
        bridge: "vnbr0".into(),
        entered: entered_tx,
        release: std::sync::Mutex::new(release_rx),
    });
    let cfg = DriverConfig::new(
        dir.path().join("config"),
        dir.path().join("state"),
        host.clone() as Arc<dyn Runner>,
    )
    .with_backend(Backend::Nftables);
    let svc = Arc::new(DriverService::new(Arc::new(Driver::open(cfg).unwrap())));
    call(&svc, "net.define", json!({"xml": net_xml(0)})).unwrap();
    call(&svc, "net.define", json!({"xml": net_xml(2)})).unwrap();

    let s = svc.clone();
    let start_a = std::thread::spawn(move || call(&s, "net.start", json!({"name": "cnet0"})));
    entered_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("start of cnet0 reached ip link add");
    assert!(svc.locks().is_locked(&"cnet0".to_string()));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let s = svc.clone();
    let info_a = std::thread::spawn(move || {
        let r = call(&s, "net.info", json!({"name": "cnet0"}));
        done_tx.send(()).unwrap();
        r
    });
    // Network B starts, is listed and destroyed while A is held.
    call(&svc, "net.start", json!({"name": "cnet2"})).unwrap();
    assert_eq!(
        call(&svc, "net.info", json!({"name": "cnet2"})).unwrap()["active"],
        true
    );
    assert_eq!(
        call(&svc, "net.list", json!({}))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    call(&svc, "net.destroy", json!({"name": "cnet2"})).unwrap();
    // ... and the call on A is still waiting.
    assert!(
        done_rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "net.info cnet0 must wait for the start"
    );
    release_tx.send(()).unwrap();
    start_a.join().unwrap().unwrap();
    let info = info_a.join().unwrap().unwrap();
    assert_eq!(
        info["active"], true,
        "the waiting read saw the finished start"
    );
    assert_eq!(svc.locks().held(), 0);
}
