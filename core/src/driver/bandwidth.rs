//! Network QoS: a network's `<bandwidth>` applied to its bridge with `tc`,
//! as libvirt 11.3.0's `virNetDevBandwidthSet` / `virNetDevBandwidthClear`
//! (src/util/virnetdevbandwidth.c) do it, argument for argument.
//!
//! libvirt calls the setter on the bridge as the last step of starting a
//! virtual network (isolated, nat, route, open: after dnsmasq) and of a
//! `forward mode='bridge'` network with a bridge name, with the flags
//! "hierarchical class" and "directions swapped" (the bridge's transmit
//! side is the guests' inbound). Its error path and both shutdowns clear
//! (`tc qdisc del dev BR root`, `tc qdisc del dev BR ingress`, failures
//! ignored) when the definition has a `<bandwidth>`.
//!
//! The stream, for `<inbound average=A [peak=P] [burst=B]/>` (the bridge's
//! transmit side, when A is non-zero):
//!
//! ```text
//! tc qdisc show dev BR handle 1:          (output "qdisc ... 1: ..." = already there)
//! tc qdisc add dev BR root handle 1: htb default 2          (unless already there)
//! tc class add dev BR parent 1: classid 1:1 htb rate Akbps ceil P|Akbps quantum Q
//! tc class add dev BR parent 1:1 classid 1:2 htb rate Akbps [ceil Pkbps] [burst Bkb] quantum Q
//! tc qdisc add dev BR parent 1:2 handle 2: sfq perturb 10
//! tc filter add dev BR parent 1:0 protocol all prio 1 handle 1 fw flowid 1
//! ```
//!
//! and for `<outbound average=A [burst=B]/>` (the bridge's receive side):
//!
//! ```text
//! tc qdisc add dev BR ingress
//! tc filter add dev BR parent ffff: protocol all u32 match u32 0 0 police rate Akbps burst B|min(A,4194303)kb mtu 64kb drop flowid :1
//! ```
//!
//! Q is libvirt's "optimal quantum": `A * 1024 / 8 / 1500`, at least 1 and
//! at most `u32::MAX`. Without the "hierarchical" flag (libvirt's own unit
//! test) the root qdisc's default is 1, the one class is `1:1` under `1:`
//! and sfq hangs under `1:1`; with "clear all" the two deletes run first.
//!
//! `floor` is refused in a network definition (libvirt parses network
//! bandwidth with floor disallowed); floors of guest ports
//! (`networkPlugBandwidth`, classes `1:3`...) belong to port management,
//! which virtnet does not do.

use virtnet_runner::{Cmd, Runner};

use super::modes::run_ignore;
use super::DriverError;
use crate::netxml::{Bandwidth, BandwidthRate};

/// libvirt's `VIR_NETDEV_BANDWIDTH_SET_*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetFlags {
    /// `HIERARCHICAL_CLASS`: class 1:1 caps the total, 1:2 takes the rest.
    pub hierarchical_class: bool,
    /// `DIR_SWAPPED`: inbound is set on the device's transmit side.
    pub dir_swapped: bool,
    /// `CLEAR_ALL`: delete root and ingress qdiscs first.
    pub clear_all: bool,
}

impl SetFlags {
    /// What the network driver passes for a bridge.
    pub const NETWORK: SetFlags = SetFlags {
        hierarchical_class: true,
        dir_swapped: true,
        clear_all: false,
    };
}

fn tc(args: &[&str]) -> Cmd {
    Cmd::new(std::iter::once("tc").chain(args.iter().copied()))
}

/// `virNetDevBandwidthCmdAddOptimalQuantum`.
fn quantum(rate: &BandwidthRate) -> String {
    let r2q = (u128::from(rate.average) * 1024 / 8 / 1500).clamp(1, u128::from(u32::MAX));
    r2q.to_string()
}

/// `virNetDevBandwidthClear`: both deletes run, their failures ignored.
pub fn clear(runner: &dyn Runner, ifname: &str) -> Result<(), DriverError> {
    run_ignore(runner, tc(&["qdisc", "del", "dev", ifname, "root"]))?;
    run_ignore(runner, tc(&["qdisc", "del", "dev", ifname, "ingress"]))
}

/// `virNetDevBandwidthSet(ifname, bandwidth, flags)`: nothing without a
/// bandwidth; a command that fails stops the stream with libvirt's
/// "Child process" error (the caller clears).
pub fn set(
    runner: &dyn Runner,
    ifname: &str,
    bandwidth: Option<&Bandwidth>,
    flags: SetFlags,
) -> Result<(), DriverError> {
    let Some(bw) = bandwidth else {
        return Ok(());
    };
    let (rx, tx) = if flags.dir_swapped {
        (bw.outbound.as_ref(), bw.inbound.as_ref())
    } else {
        (bw.inbound.as_ref(), bw.outbound.as_ref())
    };
    if flags.clear_all {
        clear(runner, ifname)?;
    }
    if let Some(tx) = tx.filter(|t| t.average != 0) {
        let average = format!("{}kbps", tx.average);
        let peak = (tx.peak != 0).then(|| format!("{}kbps", tx.peak));
        let burst = (tx.burst != 0).then(|| format!("{}kb", tx.burst));
        let q = quantum(tx);
        let h = flags.hierarchical_class;
        add_tx_filter_parent_qdisc(runner, ifname, h)?;
        if h {
            let ceil = peak.as_deref().unwrap_or(&average);
            runner.run_checked(&tc(&[
                "class", "add", "dev", ifname, "parent", "1:", "classid", "1:1", "htb", "rate",
                &average, "ceil", ceil, "quantum", &q,
            ]))?;
        }
        let mut args = vec![
            "class",
            "add",
            "dev",
            ifname,
            "parent",
            if h { "1:1" } else { "1:" },
            "classid",
            if h { "1:2" } else { "1:1" },
            "htb",
            "rate",
            &average,
        ];
        if let Some(p) = peak.as_deref() {
            args.extend(["ceil", p]);
        }
        if let Some(b) = burst.as_deref() {
            args.extend(["burst", b]);
        }
        args.extend(["quantum", &q]);
        runner.run_checked(&tc(&args))?;
        runner.run_checked(&tc(&[
            "qdisc",
            "add",
            "dev",
            ifname,
            "parent",
            if h { "1:2" } else { "1:1" },
            "handle",
            "2:",
            "sfq",
            "perturb",
            "10",
        ]))?;
        runner.run_checked(&tc(&[
            "filter", "add", "dev", ifname, "parent", "1:0", "protocol", "all", "prio", "1",
            "handle", "1", "fw", "flowid", "1",
        ]))?;
    }
    if let Some(rx) = rx {
        let average = format!("{}kbps", rx.average);
        // tc keeps a burst in bytes as a u32: at most u32::MAX / 1024 KiB.
        let burst = if rx.burst != 0 {
            format!("{}kb", rx.burst)
        } else {
            format!("{}kb", rx.average.min(u64::from(u32::MAX / 1024)))
        };
        runner.run_checked(&tc(&["qdisc", "add", "dev", ifname, "ingress"]))?;
        runner.run_checked(&tc(&[
            "filter", "add", "dev", ifname, "parent", "ffff:", "protocol", "all", "u32", "match",
            "u32", "0", "0", "police", "rate", &average, "burst", &burst, "mtu", "64kb", "drop",
            "flowid", ":1",
        ]))?;
    }
    Ok(())
}

/// `virNetDevBandWidthAddTxFilterParentQdisc`: the root htb qdisc 1:,
/// unless `tc qdisc show dev IF handle 1:` shows one (the nftables
/// backend's checksum fix may have added it).
fn add_tx_filter_parent_qdisc(
    runner: &dyn Runner,
    ifname: &str,
    hierarchical: bool,
) -> Result<(), DriverError> {
    let out = runner.run_checked(&tc(&["qdisc", "show", "dev", ifname, "handle", "1:"]))?;
    if out.stdout.contains("qdisc") && out.stdout.contains(" 1: ") {
        return Ok(());
    }
    runner.run_checked(&tc(&[
        "qdisc",
        "add",
        "dev",
        ifname,
        "root",
        "handle",
        "1:",
        "htb",
        "default",
        if hierarchical { "2" } else { "1" },
    ]))?;
    Ok(())
}

/// Set at start; on failure libvirt's error path clears before the rest of
/// the start is undone.
pub fn start(runner: &dyn Runner, bridge: &str, bw: Option<&Bandwidth>) -> Result<(), DriverError> {
    match set(runner, bridge, bw, SetFlags::NETWORK) {
        Ok(()) => Ok(()),
        Err(e) if e.is_crash() => Err(e),
        Err(e) => {
            if bw.is_some() {
                clear(runner, bridge)?;
            }
            Err(e)
        }
    }
}

/// Whether the QoS of `bw` is on `bridge`: class 1:2 with its qdisc and the
/// fw filter (inbound), a filter on the ingress qdisc (outbound).
fn present(runner: &dyn Runner, bridge: &str, bw: &Bandwidth) -> Result<bool, DriverError> {
    let text = |args: &[&str]| -> Result<String, DriverError> {
        match runner.run(&tc(args)) {
            Ok(o) if o.success() => Ok(o.stdout),
            Ok(_) => Ok(String::new()),
            Err(e) => Err(DriverError::from_run(e)),
        }
    };
    if bw.inbound.is_some_and(|r| r.average != 0) {
        let classes = text(&["class", "show", "dev", bridge])?;
        let qdiscs = text(&["qdisc", "show", "dev", bridge])?;
        let filters = text(&["filter", "show", "dev", bridge, "parent", "1:"])?;
        if !classes.contains("class htb 1:2 ")
            || !qdiscs.contains(" 2: parent 1:2 ")
            || !filters.contains(" pref 1 fw ")
        {
            return Ok(false);
        }
    }
    if bw.outbound.is_some() && text(&["filter", "show", "dev", bridge, "ingress"])?.is_empty() {
        return Ok(false);
    }
    Ok(true)
}

/// At daemon start (reconcile) for an active network: when its QoS is not
/// (entirely) on the bridge — a destroy interrupted after its clear, a
/// person's `tc qdisc del` — clear and set it again. Beyond libvirt, whose
/// restart never re-applies bandwidth (the network would run without its
/// QoS). Returns whether it was re-applied. The firewall reload that
/// follows puts back the nftables backend's checksum filter the clear took
/// with the root qdisc.
pub fn refresh(
    runner: &dyn Runner,
    bridge: &str,
    bw: Option<&Bandwidth>,
) -> Result<bool, DriverError> {
    let Some(b) = bw else {
        return Ok(false);
    };
    if present(runner, bridge, b)? {
        return Ok(false);
    }
    clear(runner, bridge)?;
    start(runner, bridge, bw)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    //! libvirt 11.3.0's tests/virnetdevbandwidthtest.c: its tc cases (flags
    //! DIR_SWAPPED | CLEAR_ALL, device eth0, `qdisc show` printing nothing),
    //! the expected streams copied from that file as data.
    use super::*;
    use crate::firewall::{RecordingRunner, RenderOptions};

    fn rate(average: u64, peak: u64, floor: u64, burst: u64) -> BandwidthRate {
        BandwidthRate {
            average,
            peak,
            floor,
            burst,
        }
    }

    fn stream(bw: Option<&Bandwidth>, flags: SetFlags) -> String {
        let r = RecordingRunner::new();
        set(&r, "eth0", bw, flags).expect("set");
        r.rendered(RenderOptions::ONE_LINE)
    }

    const LIBVIRT_FLAGS: SetFlags = SetFlags {
        hierarchical_class: false,
        dir_swapped: true,
        clear_all: true,
    };

    #[test]
    fn libvirt_unit_test_cases() {
        // DO_TEST_SET(NULL, NULL) and "<bandwidth/>" (parsed as no bandwidth).
        assert_eq!(stream(None, LIBVIRT_FLAGS), "");
        let cases: [(Bandwidth, &str); 4] = [
            (
                Bandwidth {
                    inbound: Some(rate(1024, 0, 0, 0)),
                    outbound: None,
                },
                "tc qdisc del dev eth0 root\n\
                 tc qdisc del dev eth0 ingress\n\
                 tc qdisc show dev eth0 handle 1:\n\
                 tc qdisc add dev eth0 root handle 1: htb default 1\n\
                 tc class add dev eth0 parent 1: classid 1:1 htb rate 1024kbps quantum 87\n\
                 tc qdisc add dev eth0 parent 1:1 handle 2: sfq perturb 10\n\
                 tc filter add dev eth0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1\n",
            ),
            (
                Bandwidth {
                    inbound: None,
                    outbound: Some(rate(1024, 0, 0, 0)),
                },
                "tc qdisc del dev eth0 root\n\
                 tc qdisc del dev eth0 ingress\n\
                 tc qdisc add dev eth0 ingress\n\
                 tc filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 \
                 police rate 1024kbps burst 1024kb mtu 64kb drop flowid :1\n",
            ),
            (
                Bandwidth {
                    inbound: Some(rate(1, 2, 3, 4)),
                    outbound: Some(rate(5, 6, 0, 7)),
                },
                "tc qdisc del dev eth0 root\n\
                 tc qdisc del dev eth0 ingress\n\
                 tc qdisc show dev eth0 handle 1:\n\
                 tc qdisc add dev eth0 root handle 1: htb default 1\n\
                 tc class add dev eth0 parent 1: classid 1:1 htb rate 1kbps ceil 2kbps burst 4kb quantum 1\n\
                 tc qdisc add dev eth0 parent 1:1 handle 2: sfq perturb 10\n\
                 tc filter add dev eth0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1\n\
                 tc qdisc add dev eth0 ingress\n\
                 tc filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 \
                 police rate 5kbps burst 7kb mtu 64kb drop flowid :1\n",
            ),
            (
                Bandwidth {
                    inbound: Some(rate(4294967295, 0, 0, 0)),
                    outbound: Some(rate(4294967295, 0, 0, 0)),
                },
                "tc qdisc del dev eth0 root\n\
                 tc qdisc del dev eth0 ingress\n\
                 tc qdisc show dev eth0 handle 1:\n\
                 tc qdisc add dev eth0 root handle 1: htb default 1\n\
                 tc class add dev eth0 parent 1: classid 1:1 htb rate 4294967295kbps quantum 366503875\n\
                 tc qdisc add dev eth0 parent 1:1 handle 2: sfq perturb 10\n\
                 tc filter add dev eth0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1\n\
                 tc qdisc add dev eth0 ingress\n\
                 tc filter add dev eth0 parent ffff: protocol all u32 match \
                 u32 0 0 police rate 4294967295kbps burst 4194303kb mtu 64kb \
                 drop flowid :1\n",
            ),
        ];
        for (bw, want) in cases {
            assert_eq!(stream(Some(&bw), LIBVIRT_FLAGS), want, "{bw:?}");
        }
    }

    #[test]
    fn network_flags_use_the_hierarchical_classes() {
        let bw = Bandwidth {
            inbound: Some(rate(1000, 5000, 0, 1024)),
            outbound: Some(rate(128, 0, 0, 0)),
        };
        assert_eq!(
            stream(Some(&bw), SetFlags::NETWORK),
            "tc qdisc show dev eth0 handle 1:\n\
             tc qdisc add dev eth0 root handle 1: htb default 2\n\
             tc class add dev eth0 parent 1: classid 1:1 htb rate 1000kbps ceil 5000kbps quantum 85\n\
             tc class add dev eth0 parent 1:1 classid 1:2 htb rate 1000kbps ceil 5000kbps burst 1024kb quantum 85\n\
             tc qdisc add dev eth0 parent 1:2 handle 2: sfq perturb 10\n\
             tc filter add dev eth0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1\n\
             tc qdisc add dev eth0 ingress\n\
             tc filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 police rate 128kbps burst 128kb mtu 64kb drop flowid :1\n"
        );
    }

    #[test]
    fn an_existing_root_qdisc_is_kept() {
        let r = RecordingRunner::new();
        r.stdout_when(
            crate::firewall::Matcher::contains(["qdisc", "show"]),
            "qdisc htb 1: root refcnt 2 r2q 10 default 0x2 direct_packets_stat 0 direct_qlen 1000\n",
        );
        let bw = Bandwidth {
            inbound: Some(rate(10, 0, 0, 0)),
            outbound: None,
        };
        set(&r, "virbr0", Some(&bw), SetFlags::NETWORK).unwrap();
        let text = r.rendered(RenderOptions::ONE_LINE);
        assert!(!text.contains("root handle 1:"), "{text}");
        assert!(
            text.contains("classid 1:2 htb rate 10kbps quantum 1\n"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_step_is_cleared_by_start() {
        let r = RecordingRunner::new();
        r.fail_when(
            crate::firewall::Matcher::contains(["sfq"]),
            2,
            "Error: Specified qdisc kind is unknown.\n",
        );
        let bw = Bandwidth {
            inbound: Some(rate(10, 0, 0, 0)),
            outbound: Some(rate(10, 0, 0, 0)),
        };
        let e = start(&r, "virbr0", Some(&bw)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Child process (tc qdisc add dev virbr0 parent 1:2 handle 2: sfq perturb 10) \
             unexpected exit status 2: Error: Specified qdisc kind is unknown."
        );
        let text = r.rendered(RenderOptions::ONE_LINE);
        assert!(
            text.ends_with(
                "sfq perturb 10\ntc qdisc del dev virbr0 root\ntc qdisc del dev virbr0 ingress\n"
            ),
            "{text}"
        );
    }
}
