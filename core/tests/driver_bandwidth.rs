//! QoS on the fake host: a network's `<bandwidth>` is applied at start as
//! libvirt 11.3.0's networkStartNetworkVirtual / networkStartNetworkBridge
//! do it (the tc stream last, after dnsmasq), shows in `tc qdisc/class
//! show`, is cleared at destroy; a failing step clears and undoes the whole
//! start; the status file keeps `<bandwidth>` byte for byte.

mod driver_common;

use driver_common::*;
use virtnet_core::firewall::Backend;
use virtnet_runner::{Cmd, Runner};

const NAT: &str = "<network>
  <name>qos</name>
  <forward mode='nat'/>
  <bridge name='virbr7'/>
  <bandwidth>
    <inbound average='1000' peak='5000' burst='1024'/>
    <outbound average='128'/>
  </bandwidth>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.0.2' end='10.77.0.254'/>
    </dhcp>
  </ip>
</network>
";

fn tc_cmds(env: &Env) -> Vec<String> {
    env.host
        .take_records()
        .iter()
        .map(|r| r.cmd.argv.join(" "))
        .filter(|c| c.starts_with("tc ") || c.contains("dnsmasq "))
        .collect()
}

fn run(env: &Env, line: &str) -> String {
    let out = env
        .host
        .run(&Cmd::new(line.split(' ')))
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    out.stdout
}

/// The network-wide stream, in libvirt's order, after dnsmasq; the classes
/// and qdiscs are on the bridge; destroy clears them (root first, then
/// ingress) before dnsmasq is stopped.
#[test]
fn start_applies_libvirts_stream_and_destroy_clears_it() {
    for backend in [Backend::Iptables, Backend::Nftables] {
        let env = Env::new();
        let d = env.driver(backend);
        d.define(NAT).unwrap();
        env.host.take_records();
        d.start("qos").unwrap();
        let cmds = tc_cmds(&env);
        let dnsmasq = cmds
            .iter()
            .rposition(|c| c.contains("dnsmasq "))
            .expect("dnsmasq started");
        let qos: Vec<&str> = cmds[dnsmasq + 1..].iter().map(String::as_str).collect();
        let mut want = vec!["tc qdisc show dev virbr7 handle 1:"];
        // The nftables backend's checksum fix added the root qdisc already.
        if backend == Backend::Iptables {
            want.push("tc qdisc add dev virbr7 root handle 1: htb default 2");
        }
        want.extend([
            "tc class add dev virbr7 parent 1: classid 1:1 htb rate 1000kbps ceil 5000kbps quantum 85",
            "tc class add dev virbr7 parent 1:1 classid 1:2 htb rate 1000kbps ceil 5000kbps burst 1024kb quantum 85",
            "tc qdisc add dev virbr7 parent 1:2 handle 2: sfq perturb 10",
            "tc filter add dev virbr7 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
            "tc qdisc add dev virbr7 ingress",
            "tc filter add dev virbr7 parent ffff: protocol all u32 match u32 0 0 police rate 128kbps burst 128kb mtu 64kb drop flowid :1",
        ]);
        assert_eq!(qos, want, "{backend:?}");
        let qdiscs = run(&env, "tc qdisc show dev virbr7");
        assert!(
            qdiscs.contains("qdisc htb 1: root refcnt 2 r2q 10 default 0x2"),
            "{qdiscs}"
        );
        assert!(qdiscs.contains("qdisc sfq 2: parent 1:2 "), "{qdiscs}");
        assert!(
            qdiscs.contains("qdisc ingress ffff: parent ffff:fff1"),
            "{qdiscs}"
        );
        let classes = run(&env, "tc class show dev virbr7");
        assert!(
            classes.contains("class htb 1:1 root rate 8Mbit ceil 40Mbit "),
            "{classes}"
        );
        assert!(
            classes.contains("class htb 1:2 parent 1:1 prio 0 rate 8Mbit ceil 40Mbit burst 1Mb "),
            "{classes}"
        );
        // The status file keeps the definition's <bandwidth> as formatted.
        let status = std::fs::read_to_string(env.state_dir().join("qos.xml")).unwrap();
        assert!(
            status.contains(
                "    <bandwidth>\n      <inbound average='1000' peak='5000' burst='1024'/>\n      <outbound average='128'/>\n    </bandwidth>\n"
            ),
            "{status}"
        );
        env.host.take_records();
        d.destroy("qos").unwrap();
        let cmds = tc_cmds(&env);
        assert_eq!(
            &cmds[..2],
            [
                "tc qdisc del dev virbr7 root",
                "tc qdisc del dev virbr7 ingress"
            ],
            "{backend:?}: {cmds:?}"
        );
        assert!(traces_of(&env.state(), "virbr7", "10.77.0").is_empty());
        // A restarted driver reads the status back with its bandwidth.
        d.start("qos").unwrap();
        drop(d);
        let d = env.driver(backend);
        let st = d.status("qos").expect("active after restart");
        let bw = st.def.bandwidth.expect("bandwidth kept");
        assert_eq!(bw.inbound.unwrap().peak, 5000);
        d.destroy("qos").unwrap();
        assert!(traces_of(&env.state(), "virbr7", "10.77.0").is_empty());
    }
}

/// On a kernel without sch_sfq (the reference kernel), the start fails with
/// libvirt's message for the failed command, the qdiscs are cleared and
/// everything else the start did is undone.
#[test]
fn a_failing_tc_step_clears_and_undoes_the_start() {
    for backend in [Backend::Iptables, Backend::Nftables] {
        let env = Env::new();
        let d = env.driver(backend);
        d.define(NAT).unwrap();
        env.host.set_tc_qos_modules_missing(true);
        let before = env.state();
        env.host.take_records();
        let e = d.start("qos").unwrap_err().to_string();
        assert_eq!(
            e,
            "Child process (tc qdisc add dev virbr7 parent 1:2 handle 2: sfq perturb 10) unexpected exit status 2: Error: Specified qdisc kind is unknown."
        );
        let cmds = tc_cmds(&env);
        let sfq = cmds.iter().position(|c| c.contains(" sfq ")).unwrap();
        assert_eq!(
            cmds[sfq + 1..sfq + 3],
            [
                "tc qdisc del dev virbr7 root",
                "tc qdisc del dev virbr7 ingress"
            ]
        );
        // Nothing of the network is left (the private chains stay, as
        // libvirt keeps them).
        let left = traces_of(&env.state(), "virbr7", "10.77.0");
        assert!(left.is_empty(), "{backend:?}: left {left:#?}");
        assert_eq!(before.tc, env.state().tc, "{backend:?}");
        assert!(env.state().procs.procs.is_empty(), "dnsmasq left");
        assert!(!d.info("qos").unwrap().active);
        assert!(d.pending_journals().is_empty());
    }
}

/// forward mode='bridge' with a host bridge: the bandwidth goes on that
/// bridge, destroy clears it and the bridge stays.
#[test]
fn bridge_mode_sets_and_clears_bandwidth_on_the_host_bridge() {
    let env = Env::new();
    run(&env, "ip link add br-host type bridge");
    let before = env.state();
    let d = env.driver(Backend::Nftables);
    d.define(
        "<network><name>hb</name><forward mode='bridge'/><bridge name='br-host'/>\
         <bandwidth><inbound average='100'/></bandwidth></network>",
    )
    .unwrap();
    env.host.take_records();
    d.start("hb").unwrap();
    let cmds = tc_cmds(&env);
    assert_eq!(
        cmds,
        [
            "tc qdisc show dev br-host handle 1:",
            "tc qdisc add dev br-host root handle 1: htb default 2",
            "tc class add dev br-host parent 1: classid 1:1 htb rate 100kbps ceil 100kbps quantum 8",
            "tc class add dev br-host parent 1:1 classid 1:2 htb rate 100kbps quantum 8",
            "tc qdisc add dev br-host parent 1:2 handle 2: sfq perturb 10",
            "tc filter add dev br-host parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
        ]
    );
    assert!(run(&env, "tc class show dev br-host").contains("class htb 1:2 parent 1:1"));
    env.host.take_records();
    d.destroy("hb").unwrap();
    assert_eq!(
        tc_cmds(&env),
        [
            "tc qdisc del dev br-host root",
            "tc qdisc del dev br-host ingress"
        ]
    );
    assert_same_host(&before, &env.state(), "bridge mode after destroy");
}

/// What libvirt refuses stays refused: floor in a network definition,
/// bandwidth in a mode that cannot have it.
#[test]
fn libvirts_refusals_stay() {
    let env = Env::new();
    let d = env.driver(Backend::Iptables);
    let e = d
        .define("<network><name>f</name><bandwidth><inbound average='10' floor='5'/></bandwidth></network>")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("floor attribute is not supported for this config"),
        "{e}"
    );
    let e = d
        .define("<network><name>v</name><forward mode='vepa'><interface dev='eth0'/></forward><bandwidth><inbound average='10'/></bandwidth></network>")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "Unsupported network-wide <bandwidth> element in network v with forward mode='vepa'"
        ),
        "{e}"
    );
    assert!(d.list().is_empty());
}

/// A crash anywhere in a backend switch's reload, then a restart: the
/// network keeps its QoS.
#[test]
fn a_crashed_switch_keeps_the_qos() {
    use virtnet_testkit::FaultPlan;
    for k in 0..60 {
        let env = Env::new();
        let d = env.driver(Backend::Iptables);
        d.define(NAT).unwrap();
        d.start("qos").unwrap();
        drop(d);
        let before =
            run(&env, "tc class show dev virbr7") + &run(&env, "tc filter show dev virbr7 ingress");
        env.faults.reset_counter();
        env.faults.set_plan(FaultPlan::none().crash_after(k));
        env.host.take_records();
        let r: Result<(), virtnet_core::driver::DriverError> =
            match virtnet_core::driver::Driver::open(env.cfg().with_backend(Backend::Nftables)) {
                Ok(d) => d.reconcile().map(|_| ()),
                Err(e) => Err(e),
            };
        env.faults.recover();
        let d = env.driver(Backend::Nftables);
        d.reconcile().unwrap();
        drop(d);
        let log: Vec<String> = env
            .host
            .take_records()
            .iter()
            .map(|r| r.cmd.argv.join(" "))
            .filter(|c| c.starts_with("tc "))
            .collect();
        let after =
            run(&env, "tc class show dev virbr7") + &run(&env, "tc filter show dev virbr7 ingress");
        assert_eq!(after, before, "k={k} {log:#?}");
        if r.is_ok() {
            break;
        }
    }
}
