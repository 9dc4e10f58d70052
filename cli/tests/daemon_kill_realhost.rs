//! `virtnetd --host real` SIGKILLed under load (issue 15, item 4), in a
//! throw-away network namespace held by `testkit::Netns` (the daemon is
//! started in it with `nsenter`, so the namespace outlives each daemon).
//!
//! 16 client threads, each with a network of its own (NAT + DHCP: bridge,
//! iptables rules, a dnsmasq), define, start and destroy it in a loop over
//! the JSON-lines protocol; at a random moment (after a random number of
//! successful calls, seeded: the seed is printed,
//! `VIRTNET_DAEMON_KILL_SEED=N` replays it) the daemon gets SIGKILL. Then
//! a new daemon starts on the same directories (journal recovery +
//! reconcile), every network is destroyed through it, and:
//! - no dnsmasq runs in the namespace (waited for at most 10 s: dnsmasq
//!   exits asynchronously after its SIGTERM);
//! - the state directory holds no status file, no journal, no pid file;
//! - the namespace has no link but `lo`, and the firewall (iptables-save,
//!   ip6tables-save, nft ruleset, normalised) is exactly what one
//!   uninterrupted start + destroy left: libvirt's private chains.
//!
//! 20 rounds (`VIRTNET_DAEMON_KILL_ROUNDS`). The iptables backend: the
//! nftables one needs tc's act_csum, which the reference kernel lacks.

mod virtnetd_support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use virtnet_conformance::host::normalise_ruleset;
use virtnet_daemon::{Client, SocketKind};
use virtnet_runner::Runner;
use virtnet_testkit::Netns;
use virtnetd_support::{Proc, VIRTNETD};

const CLIENTS: usize = 16;

fn net_xml(i: usize) -> String {
    format!(
        "<network>
  <name>load{i}</name>
  <forward mode='nat'/>
  <bridge name='vnload{i}' stp='off' delay='0'/>
  <ip address='10.77.{i}.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.{i}.2' end='10.77.{i}.254'/>
    </dhcp>
  </ip>
</network>
"
    )
}

/// SplitMix64: a seeded sequence of kill moments (no dependency for it).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Env {
    ns: Netns,
    root: PathBuf,
}

impl Env {
    fn sock(&self) -> PathBuf {
        SocketKind::ReadWrite.path_in(&self.root.join("run"))
    }

    fn spawn_daemon(&self, round: usize) -> Proc {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{}/ns/net", self.ns.pid()))
            .arg("--")
            .arg(VIRTNETD)
            .args(["--host", "real", "--log-level", "info"])
            .arg("--config-dir")
            .arg(self.root.join("etc"))
            .arg("--state-dir")
            .arg(self.root.join("state"))
            .arg("--runtime-dir")
            .arg(self.root.join("run"));
        cmd.env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES");
        Proc::spawn(cmd, self.root.join(format!("virtnetd.{round}.log")))
    }

    /// A client of the daemon `p` (retried while it starts and reconciles).
    fn connect(&self, p: &mut Proc) -> Client {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(mut c) = Client::connect(self.sock()) {
                c.set_timeout(Some(Duration::from_secs(120))).unwrap();
                if c.call("net.list", json!({})).is_ok() {
                    return c;
                }
            }
            if let Some(st) = p.wait_exit(Duration::from_millis(0)) {
                panic!("virtnetd exited ({st}):\n{}", p.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "virtnetd did not answer:\n{}",
                p.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn netns_link(&self) -> String {
        std::fs::read_link(format!("/proc/{}/ns/net", self.ns.pid()))
            .unwrap()
            .display()
            .to_string()
    }

    /// dnsmasq processes in the namespace: `pid cmdline`.
    fn dnsmasq(&self) -> Vec<String> {
        let me = self.netns_link();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let ns = std::fs::read_link(e.path().join("ns/net"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if comm.trim() == "dnsmasq" && ns == me {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                out.push(format!(
                    "{pid} {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                ));
            }
        }
        out
    }

    fn run(&self, argv: &[&str]) -> String {
        let o = self.ns.run_argv_checked(argv).unwrap();
        o.stdout
    }

    /// The firewall of the namespace, normalised.
    fn firewall(&self) -> String {
        let mut s = String::new();
        for argv in [
            &["iptables-save"][..],
            &["ip6tables-save"],
            &["nft", "list", "ruleset"],
        ] {
            s.push_str(&format!("## {}\n", argv[0]));
            s.push_str(&normalise_ruleset(&self.run(argv)));
        }
        s
    }

    /// Files of the state directory that belong to a network (status
    /// files, journals, pid files, stop markers).
    fn network_state_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join("state"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "driver.lock" && n != "autostarted" && n != "dnsmasq")
            .collect();
        v.sort();
        v
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Whatever happened, no dnsmasq of this test outlives it.
        for line in self.dnsmasq() {
            if let Some(pid) = line.split(' ').next().and_then(|p| p.parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Destroys and undefines every network through `c`.
fn destroy_all(c: &mut Client) -> Result<(), String> {
    let list = c.call("net.list", json!({})).map_err(|e| e.to_string())?;
    for n in list.as_array().cloned().unwrap_or_default() {
        let name = n["name"].as_str().unwrap_or_default().to_string();
        if n["active"] == json!(true) {
            c.call("net.destroy", json!({ "name": name }))
                .map_err(|e| format!("destroy {name}: {e}"))?;
        }
        if n["persistent"] == json!(true) {
            c.call("net.undefine", json!({ "name": name }))
                .map_err(|e| format!("undefine {name}: {e}"))?;
        }
    }
    Ok(())
}

/// One client's loop: define, start, destroy (undefine every third turn)
/// until the connection fails. Counts the calls that succeeded.
fn client_loop(sock: PathBuf, i: usize, ok: Arc<AtomicUsize>) {
    let Ok(mut c) = Client::connect(&sock) else {
        return;
    };
    let _ = c.set_timeout(Some(Duration::from_secs(60)));
    let xml = net_xml(i);
    let name = format!("load{i}");
    for turn in 0.. {
        let calls: Vec<(&str, serde_json::Value)> = vec![
            ("net.define", json!({ "xml": xml })),
            ("net.start", json!({ "name": name })),
            ("net.destroy", json!({ "name": name })),
        ];
        for (m, p) in calls {
            match c.call(m, p) {
                Ok(_) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.remote().is_some() => {
                    // e.g. already active (after a restart)
                    if m == "net.start" {
                        eprintln!("client {i}: {m}: {e}");
                    }
                }
                Err(_) => return, // the daemon is gone
            }
        }
        if turn % 3 == 2 {
            match c.call("net.undefine", json!({ "name": name })) {
                Ok(_) | Err(virtnet_daemon::ClientError::Remote(_)) => {}
                Err(_) => return,
            }
        }
    }
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            None => return,
            Some(why) if Instant::now() >= deadline => panic!("{what}: {why}"),
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn daemon_killed_under_load_leaks_nothing() {
    if let Some(why) = virtnet_testkit::cannot_make_netns(&[
        "nsenter",
        "iptables",
        "iptables-save",
        "ip6tables-save",
        "nft",
        "ip",
        "dnsmasq",
    ]) {
        virtnet_testkit::skip(&why);
        return;
    }
    let rounds: usize = std::env::var("VIRTNET_DAEMON_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("VIRTNET_DAEMON_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("daemon kill test: seed {seed} (VIRTNET_DAEMON_KILL_SEED={seed} replays the kill moments), {rounds} rounds");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = Env {
        ns: Netns::new().unwrap(),
        root: tmp.path().to_path_buf(),
    };
    std::fs::create_dir_all(env.root.join("etc")).unwrap();
    std::fs::write(
        env.root.join("etc/network.conf"),
        "firewall_backend = \"iptables\"\n",
    )
    .unwrap();
    let t0 = Instant::now();
    // The reference: one uninterrupted start + destroy (private chains).
    let mut daemon = env.spawn_daemon(0);
    {
        let mut c = env.connect(&mut daemon);
        c.call("net.define", json!({ "xml": net_xml(0) })).unwrap();
        c.call("net.start", json!({ "name": "load0" })).unwrap();
        assert!(env.run(&["ip", "-br", "link"]).contains("vnload0"));
        destroy_all(&mut c).unwrap();
    }
    wait_until(
        "dnsmasq after the reference destroy",
        Duration::from_secs(10),
        || {
            let d = env.dnsmasq();
            (!d.is_empty()).then(|| format!("{d:?}"))
        },
    );
    let want_fw = env.firewall();
    assert!(want_fw.contains(":LIBVIRT_FWO"), "{want_fw}");
    let mut calls_total = 0;
    let mut active_at_kill = Vec::new();
    for round in 1..=rounds {
        let ok = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (sock, ok) = (env.sock(), ok.clone());
                std::thread::spawn(move || client_loop(sock, i, ok))
            })
            .collect();
        // Kill at a random moment: once the clients made a random number
        // of successful calls (8 to 48), plus 0 to 99 ms; at most 60 s in.
        let target = 8 + (rng.next() % 41) as usize;
        let extra = Duration::from_millis(rng.next() % 100);
        let t = Instant::now();
        while ok.load(Ordering::Relaxed) < target && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(extra);
        let after = t.elapsed();
        let bridges = env
            .run(&["ip", "-br", "link"])
            .lines()
            .filter(|l| l.starts_with("vnload"))
            .count();
        active_at_kill.push((bridges, env.dnsmasq().len()));
        daemon.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = daemon.wait_exit(Duration::from_secs(10));
        for c in clients {
            c.join().unwrap();
        }
        calls_total += ok.load(Ordering::Relaxed);
        // Restart: journal recovery and reconcile, then destroy all.
        let t_restart = Instant::now();
        daemon = env.spawn_daemon(round);
        let mut c = env.connect(&mut daemon);
        let restart = t_restart.elapsed();
        if let Err(e) = destroy_all(&mut c) {
            panic!(
                "round {round} (killed {} ms in): {e}\n{}",
                after.as_millis(),
                daemon.stderr()
            );
        }
        drop(c);
        let ctx = || {
            format!(
                "round {round} (seed {seed}, killed {} ms in)",
                after.as_millis()
            )
        };
        wait_until(
            &format!("{}: dnsmasq left", ctx()),
            Duration::from_secs(10),
            || {
                let d = env.dnsmasq();
                (!d.is_empty()).then(|| format!("{d:#?}"))
            },
        );
        let files = env.network_state_files();
        assert!(files.is_empty(), "{}: state files left: {files:?}", ctx());
        let links: Vec<String> = env
            .run(&["ip", "-br", "link"])
            .lines()
            .filter(|l| !l.starts_with("lo "))
            .map(str::to_string)
            .collect();
        assert!(links.is_empty(), "{}: links left: {links:?}", ctx());
        println!(
            "round {round}: killed {} ms in after {target} calls, {:?} (bridges, dnsmasq) up; \
             restart + reconcile {:.1} s, then destroy all and checks {:.1} s",
            after.as_millis(),
            active_at_kill.last().unwrap(),
            restart.as_secs_f64(),
            (t_restart.elapsed() - restart).as_secs_f64()
        );
        let fw = env.firewall();
        assert_eq!(
            want_fw,
            fw,
            "{}: the firewall differs from the private chains alone",
            ctx()
        );
    }
    println!(
        "daemon kill test: {rounds} rounds, {calls_total} successful calls of {CLIENTS} clients, \
         (bridges, dnsmasq processes) at the kills: {active_at_kill:?}; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
