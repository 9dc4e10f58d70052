//! The tracer against the kernel (issue 16 item 5): golden cases × both
//! backends started by the driver on the simulator and in a fresh network
//! namespace, every flow of `realtraffic::default_flows` traced and sent
//! for real, identical outcomes and NAT results required. The nftables
//! backend runs with a `tc` wrapper when the kernel lacks act_csum (the
//! DHCP checksum filter is then absent on the kernel only; the tracer does
//! not model tc). `VIRTNET_TRAFFIC_CASES=a,b` picks the cases (`all`: every
//! golden case with a guest; default: [`DEFAULT_CASES`]);
//! `VIRTNET_TRAFFIC_STRIDE=n` takes every n-th of them. Prints every flow's
//! two outcomes; "skipped: <why>" without root or the tools.

use virtnet_conformance::cases::expectation;
use virtnet_conformance::checks::XFAIL_QOS;
use virtnet_conformance::host::{write_tc_csum_wrapper, RealFactory, REAL_TOOLS};
use virtnet_conformance::realtraffic::{differential, guests_of};
use virtnet_conformance::{golden_root, load_cases, HostFactory};
use virtnet_core::firewall::Backend;
use virtnet_testkit::lab::LAB_TOOLS;

/// The cases of a default run (CI): NAT with IPv4 and IPv6, an isolated
/// network, a routed one, SNAT to an address range (~40 s each on 2 cores).
const DEFAULT_CASES: &[&str] = &["nat-ipv6", "isolated", "route-default", "nat-snat-range"];

/// The matrix baseline's foreign rules less firewalld's table: with the
/// bridge in no zone of its, that table rejects every new forwarded
/// connection and every guest → host packet but ssh and ICMP, so the
/// flows would mostly compare two rejections; without it they exercise
/// libvirt's own rules. (The matrix's `traffic` operation runs with it.)
/// Docker's iptables chains and nftables table stay.
const NO_FIREWALLD: &[&str] = &["nft", "delete", "table", "inet", "firewalld"];

#[test]
fn tracer_and_kernel_agree_on_every_flow() {
    let mut tools: Vec<&str> = REAL_TOOLS.iter().map(|(t, _)| *t).collect();
    tools.extend_from_slice(LAB_TOOLS);
    if let Some(why) = virtnet_testkit::cannot_run(&tools) {
        virtnet_testkit::skip(&why);
        return;
    }
    let wrap = tempfile::tempdir().unwrap();
    let mut factory = RealFactory::new(None).unwrap();
    let csum = factory.has_act_csum();
    if !csum {
        write_tc_csum_wrapper(wrap.path()).unwrap();
        // The only test of this binary: nothing else reads PATH meanwhile.
        let path = format!(
            "{}:{}",
            wrap.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        std::env::set_var("PATH", path);
        factory = factory.assume_act_csum();
    }
    let g = golden_root();
    let only: Option<Vec<String>> = match std::env::var("VIRTNET_TRAFFIC_CASES").as_deref() {
        Ok("all") => None,
        Ok(list) => Some(list.split(',').map(String::from).collect()),
        Err(_) => Some(DEFAULT_CASES.iter().map(|s| s.to_string()).collect()),
    };
    let stride: usize = std::env::var("VIRTNET_TRAFFIC_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let cases: Vec<_> = load_cases(&g)
        .unwrap()
        .into_iter()
        .filter(|c| match &only {
            Some(o) => o.contains(&c.name),
            None => true,
        })
        .filter(|c| c.def.bridge_name().is_some() && !guests_of(&c.def).is_empty())
        .step_by(stride.max(1))
        .collect();
    assert!(!cases.is_empty());
    let mut flows = 0;
    let mut differ = Vec::new();
    let mut errors = Vec::new();
    let mut xfail = 0;
    for case in &cases {
        for backend in [Backend::Iptables, Backend::Nftables] {
            // A QoS case on a kernel without libvirt's QoS tc modules: its
            // start fails on the kernel as libvirt's does (the matrix's
            // expected failure); there is nothing to compare.
            let qos = expectation(&g, "unreleased", &case.name, backend)
                .map(|e| e.needs_qos_modules())
                .unwrap_or(false);
            if qos && !factory.has_qos_modules() {
                println!("{}/{backend}: not compared: {XFAIL_QOS}", case.name);
                xfail += 1;
                continue;
            }
            let factory = &factory;
            let res = std::thread::scope(|s| {
                s.spawn(|| differential(factory, case, backend, &[NO_FIREWALLD.to_vec()], None))
                    .join()
                    .unwrap()
            });
            match res {
                Ok(rs) => {
                    for r in rs {
                        flows += 1;
                        print!("{}/{backend}: {r}", case.name);
                        if r.agree.is_err() {
                            differ.push(format!("{}/{backend}: {r}", case.name));
                        }
                    }
                }
                // An error case (the driver refuses the definition on both).
                Err(e) if e.starts_with("fake: define") || e.starts_with("fake: start") => {
                    println!("{}/{backend}: not started: {e}", case.name)
                }
                Err(e) => errors.push(format!("{}/{backend}: {e}", case.name)),
            }
        }
    }
    println!(
        "{} cases, {flows} flows compared, {} differ, {} errors, {xfail} not compared for lack of QoS tc modules (act_csum: {csum})",
        cases.len(),
        differ.len(),
        errors.len()
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(flows > 0);
}
