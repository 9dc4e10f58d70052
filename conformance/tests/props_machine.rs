//! State-machine property test of the driver on the fake host: random
//! sequences of define / undefine / start (with random faults) / destroy /
//! daemon restart / backend switch / upgrade from a release without removal
//! plans / crash at any command (before it or after its effect) / failing
//! state-directory writes (journal, status, dnsmasq files: ENOSPC, EIO,
//! EROFS) / a second driver on the same state directory while the first is
//! mid-operation, over three random networks and random foreign software.
//! After every step the machine checks its invariants (`props::machine`):
//! every object of ours on the host is accounted for by a status file (each
//! active network's objects present exactly once, none of an inactive
//! network) or is kept on purpose (`kept.rs`), the status files match the
//! host, foreign objects are untouched.
//!
//! A failure prints the minimal sequence, the trace of what each step did
//! and the host dump; proptest saves the seed in
//! `props_machine.proptest-regressions`. Case counts: 64 by default,
//! 2000 with `VIRTNET_DEEP=1`, or `PROPTEST_CASES`.

mod props_common;

use props_common::*;
use proptest::prelude::*;
use virtnet_conformance::props::machine::{Machine, Op};

const NETS: usize = 3;

fn verdict(e: String) -> TestCaseError {
    if e.starts_with(virtnet_conformance::props::machine::REJECT) {
        TestCaseError::reject(e)
    } else {
        TestCaseError::fail(e)
    }
}

proptest! {
    #![proptest_config(config(virtnet_conformance::props::MACHINE_CASES.0, virtnet_conformance::props::MACHINE_CASES.1))]

    #[test]
    fn any_sequence_keeps_the_invariants(
        specs in prop::collection::vec(net_spec(), NETS),
        backend in backend(),
        foreign in foreign(),
        ops in prop::collection::vec(op(NETS), 1..30),
    ) {
        let mut m = Machine::new(specs, backend, foreign).map_err(TestCaseError::fail)?;
        m.check().map_err(verdict)?;
        for op in &ops {
            m.step(op).map_err(verdict)?;
        }
    }
}

/// A fixed sequence that goes through every kind of operation, so the
/// default run always covers them all whatever the random cases pick.
#[test]
fn every_operation_kind_once() {
    use virtnet_conformance::props::machine::{
        ConcOp, CrashIn, Foreign, StartFault, WriteErrno, WriteIn, WriteTarget,
    };
    use virtnet_conformance::props::spec::{Mode, Nat, NetSpec, V4, V6};
    use virtnet_core::firewall::Backend;
    let base = NetSpec {
        mode: Mode::Nat,
        v4: Some(V4 {
            prefix: 24,
            dhcp: 1,
            tftp: false,
        }),
        v4_second: false,
        v6: Some(V6 {
            prefix: 64,
            dhcp: true,
        }),
        nat: Nat::default(),
        forward_dev: false,
        route: true,
        mtu: None,
        stp: true,
        delay: 0,
        dns_off: false,
        domain: true,
    };
    let mut route = base.clone();
    route.mode = Mode::Route;
    let mut isolated = base.clone();
    isolated.mode = Mode::Isolated;
    let foreign = Foreign {
        docker_iptables: true,
        docker_nft: true,
        firewalld_nft: true,
    };
    for backend in [Backend::Iptables, Backend::Nftables] {
        let mut m = Machine::new(
            vec![base.clone(), route.clone(), isolated.clone()],
            backend,
            foreign,
        )
        .unwrap();
        let ops = [
            Op::Define(0),
            Op::Define(1),
            Op::Define(2),
            Op::Start(0, None),
            Op::Start(
                1,
                Some(StartFault::Nth {
                    index: 20,
                    status: 1,
                }),
            ),
            Op::Start(1, None),
            Op::Upgrade {
                switch_backend: false,
            },
            Op::Restart {
                switch_backend: true,
            },
            Op::Upgrade {
                switch_backend: true,
            },
            Op::Upgrade {
                switch_backend: true,
            },
            Op::Crash {
                during: CrashIn::Start(2),
                after: 25,
            },
            Op::Crash {
                during: CrashIn::Destroy(0),
                after: 3,
            },
            Op::Crash {
                during: CrashIn::Restart {
                    switch_backend: true,
                },
                after: 10,
            },
            Op::CrashAfterEffect {
                during: CrashIn::Start(1),
                index: 30,
            },
            Op::CrashAfterEffect {
                during: CrashIn::Restart {
                    switch_backend: true,
                },
                index: 12,
            },
            Op::WriteFails {
                during: WriteIn::Start(2),
                target: WriteTarget::Journal,
                errno: WriteErrno::NoSpace,
                after: 6,
            },
            Op::WriteFails {
                during: WriteIn::Start(2),
                target: WriteTarget::Status,
                errno: WriteErrno::Io,
                after: 0,
            },
            Op::WriteFails {
                during: WriteIn::Start(2),
                target: WriteTarget::Dnsmasq,
                errno: WriteErrno::ReadOnly,
                after: 1,
            },
            Op::WriteFails {
                during: WriteIn::Restart {
                    switch_backend: true,
                },
                target: WriteTarget::Journal,
                errno: WriteErrno::NoSpace,
                after: 3,
            },
            Op::Concurrent {
                first: ConcOp::Start(2),
                pause_at: 12,
                second: ConcOp::Destroy(1),
            },
            Op::Concurrent {
                first: ConcOp::Destroy(2),
                pause_at: 2,
                second: ConcOp::Start(2),
            },
            Op::Undefine(1),
            Op::Destroy(1),
            Op::Destroy(0),
            Op::Destroy(2),
            Op::Start(
                0,
                Some(StartFault::Program {
                    program: "dnsmasq",
                    status: 2,
                }),
            ),
        ];
        for op in &ops {
            if let Err(e) = m.step(op) {
                panic!("{backend}: {e}");
            }
        }
    }
}
