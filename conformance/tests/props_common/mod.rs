//! Strategies shared by the property tests.
#![allow(dead_code)]

use proptest::prelude::*;
use virtnet_conformance::props::machine::{
    ConcOp, CrashIn, Foreign, Machine, Op, StartFault, WriteErrno, WriteIn, WriteTarget,
    FAULT_PROGRAMS,
};
use virtnet_conformance::props::spec::{Mode, Nat, NetSpec, V4, V6};
use virtnet_conformance::props::view;
use virtnet_core::firewall::Backend;

pub fn config(default_cases: u32, deep_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: virtnet_conformance::props::cases(default_cases, deep_cases),
        // Shrinking replays whole driver runs; keep it bounded.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

pub fn mode() -> impl Strategy<Value = Mode> {
    // Virtual modes are where the work is; weight them.
    prop_oneof![
        4 => Just(Mode::Nat),
        2 => Just(Mode::Isolated),
        2 => Just(Mode::Route),
        1 => Just(Mode::Open),
        1 => prop::sample::select(&Mode::ALL[4..]),
    ]
}

pub fn v4() -> impl Strategy<Value = V4> {
    (
        prop::sample::select(vec![24u8, 25, 16]),
        0u8..4,
        any::<bool>(),
    )
        .prop_map(|(prefix, dhcp, tftp)| V4 { prefix, dhcp, tftp })
}

pub fn v6() -> impl Strategy<Value = V6> {
    (prop::sample::select(vec![64u8, 112]), any::<bool>()).prop_map(|(prefix, dhcp)| V6 {
        prefix,
        dhcp: dhcp && prefix == 64,
    })
}

pub fn nat() -> impl Strategy<Value = Nat> {
    (
        prop::option::of((any::<u16>(), any::<u16>())),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(ports, address, ipv6)| Nat {
            ports,
            address,
            ipv6,
        })
}

/// A random valid network definition (any mode, any option).
pub fn net_spec() -> impl Strategy<Value = NetSpec> {
    (
        mode(),
        prop::option::weighted(0.85, v4()),
        any::<bool>(),
        prop::option::weighted(0.4, v6()),
        nat(),
        (any::<bool>(), any::<bool>()),
        prop::option::weighted(0.2, 1280u16..9000),
        (any::<bool>(), 0u8..3),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                mode,
                v4,
                v4_second,
                v6,
                nat,
                (forward_dev, route),
                mtu,
                (stp, delay),
                (dns_off, domain),
            )| {
                // nat needs an IPv4 address, route some address.
                let v4 = match (mode, v4, &v6) {
                    (Mode::Nat, None, _) | (Mode::Route, None, None) => Some(V4 {
                        prefix: 24,
                        dhcp: 1,
                        tftp: false,
                    }),
                    (_, v4, _) => v4,
                };
                let has_v4 = v4.is_some();
                NetSpec {
                    mode,
                    v4,
                    v4_second: v4_second && has_v4,
                    v6,
                    nat,
                    forward_dev,
                    route: route && has_v4,
                    mtu,
                    stp,
                    delay,
                    dns_off,
                    domain,
                }
            },
        )
}

pub fn backend() -> impl Strategy<Value = Backend> {
    prop_oneof![Just(Backend::Iptables), Just(Backend::Nftables)]
}

pub fn foreign() -> impl Strategy<Value = Foreign> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c)| Foreign {
        docker_iptables: a,
        docker_nft: b,
        firewalld_nft: c,
    })
}

/// A failure of one command of a start.
pub fn start_fault() -> impl Strategy<Value = StartFault> {
    prop_oneof![
        4 => (1u16..90, 1u8..5).prop_map(|(index, status)| StartFault::Nth { index, status }),
        1 => (prop::sample::select(FAULT_PROGRAMS.to_vec()), 1u8..5)
            .prop_map(|(program, status)| StartFault::Program { program, status }),
    ]
}

/// One operation on `nets` networks.
pub fn op(nets: usize) -> impl Strategy<Value = Op> {
    let n = 0..nets;
    prop_oneof![
        3 => n.clone().prop_map(Op::Define),
        1 => n.clone().prop_map(Op::Undefine),
        5 => (n.clone(), prop::option::weighted(0.3, start_fault())).prop_map(|(n, f)| Op::Start(n, f)),
        3 => n.clone().prop_map(Op::Destroy),
        2 => any::<bool>().prop_map(|switch_backend| Op::Restart { switch_backend }),
        1 => any::<bool>().prop_map(|switch_backend| Op::Upgrade { switch_backend }),
        2 => (
            prop_oneof![
                n.clone().prop_map(CrashIn::Start),
                n.clone().prop_map(CrashIn::Destroy),
                any::<bool>().prop_map(|switch_backend| CrashIn::Restart { switch_backend }),
            ],
            0u16..80
        )
            .prop_map(|(during, after)| Op::Crash { during, after }),
        2 => (
            prop_oneof![
                n.clone().prop_map(CrashIn::Start),
                n.clone().prop_map(CrashIn::Destroy),
                any::<bool>().prop_map(|switch_backend| CrashIn::Restart { switch_backend }),
            ],
            1u16..80
        )
            .prop_map(|(during, index)| Op::CrashAfterEffect { during, index }),
        1 => (
            prop_oneof![
                n.clone().prop_map(WriteIn::Start),
                any::<bool>().prop_map(|switch_backend| WriteIn::Restart { switch_backend }),
            ],
            prop_oneof![
                Just(WriteTarget::Journal),
                Just(WriteTarget::Status),
                Just(WriteTarget::Dnsmasq),
            ],
            prop_oneof![
                Just(WriteErrno::NoSpace),
                Just(WriteErrno::Io),
                Just(WriteErrno::ReadOnly),
            ],
            0u8..40,
        )
            .prop_map(|(during, target, errno, after)| Op::WriteFails {
                during,
                target,
                errno,
                after,
            }),
        2 => (conc_op(nets), 1u16..60, conc_op(nets))
            .prop_map(|(first, pause_at, second)| Op::Concurrent {
                first,
                pause_at,
                second,
            }),
    ]
}

/// An operation of one driver of [`Op::Concurrent`].
pub fn conc_op(nets: usize) -> impl Strategy<Value = ConcOp> {
    let n = 0..nets;
    prop_oneof![
        1 => n.clone().prop_map(ConcOp::Define),
        3 => n.clone().prop_map(ConcOp::Start),
        1 => n.prop_map(ConcOp::Destroy),
    ]
}

/// The body of props_start's properties (and of the rollback mutant):
/// runs [another network active], define, start with `fault`; the
/// machine checks rollback (or, if the start succeeded, destroy) and all
/// invariants after each step.
pub fn run_start(
    spec: NetSpec,
    other: Option<NetSpec>,
    backend: Backend,
    foreign: Foreign,
    fault: Option<StartFault>,
) -> Result<(), String> {
    let has_other = other.is_some();
    let mut specs = vec![spec];
    specs.extend(other);
    let mut m = Machine::new(specs, backend, foreign)?;
    if has_other {
        m.step(&Op::Define(1))?;
        m.step(&Op::Start(1, None))?;
    }
    m.step(&Op::Define(0))?;
    let before = m.host.state();
    m.step(&Op::Start(0, fault.clone()))?;
    if fault.is_none() {
        m.step(&Op::Destroy(0))?;
    } else if m.active()?.contains("net0") {
        return Err("a start with a fault left the network active".into());
    }
    view::same_apart_from_kept(&before, &m.host.state())
}
