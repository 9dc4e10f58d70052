//! Socket activation against an environment map and descriptors placed at a
//! private range (libvirt's virsystemdtest.c activation cases, C.3's edge
//! cases, and the old by-address fallback).
//!
//! Each test uses its own descriptor range so the tests can run in parallel.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use virtnet_daemon::activation::{
    Activation, ActivationError, ListenAddr, NameSource, SocketSpec, ENV_LISTEN_FDNAMES,
    ENV_LISTEN_FDS, ENV_LISTEN_PID,
};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn is_open(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

fn is_cloexec(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD)
        .map(|b| FdFlag::from_bits_truncate(b).contains(FdFlag::FD_CLOEXEC))
        .unwrap_or(false)
}

/// Move `fds` to `base`, `base+1`, ... (which must be free); the originals are closed.
fn place(fds: Vec<OwnedFd>, base: RawFd) {
    for (i, fd) in fds.into_iter().enumerate() {
        let target = base + i as RawFd;
        assert!(!is_open(target), "fd {target} is already in use");
        // dup2 gives a descriptor without CLOEXEC, like an exec'd child gets.
        nix::unistd::dup2(fd.as_raw_fd(), target).unwrap();
    }
}

fn close_range(base: RawFd, n: RawFd) {
    for fd in base..base + n {
        if is_open(fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}

fn unix_listener(dir: &std::path::Path, name: &str) -> (OwnedFd, std::path::PathBuf) {
    let path = dir.join(name);
    let l = UnixListener::bind(&path).unwrap();
    (OwnedFd::from(l), path)
}

/// TCP listening sockets on localhost with one ephemeral port: IPv4, plus
/// IPv6 on the same port when the host has ::1 (as libvirt's test does).
fn tcp_listeners() -> (Vec<OwnedFd>, u16) {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    let mut out = vec![OwnedFd::from(v4)];
    if let Ok(v6) = TcpListener::bind(("::1", port)) {
        out.push(OwnedFd::from(v6));
    }
    (out, port)
}

fn pid() -> u32 {
    std::process::id()
}

#[test]
fn no_listen_pid_means_no_activation() {
    // libvirt "Test activation empty".
    let mut e = env(&[(ENV_LISTEN_FDS, "3"), (ENV_LISTEN_FDNAMES, "a:b:c")]);
    let before = e.clone();
    assert!(Activation::from_env_at(&mut e, pid(), 700, &[])
        .unwrap()
        .is_none());
    assert_eq!(e, before);
    let mut empty = BTreeMap::new();
    assert!(Activation::from_env(&mut empty, pid(), &[])
        .unwrap()
        .is_none());
}

#[test]
fn malformed_or_foreign_pid_leaves_env_untouched() {
    let me = pid();
    for bad in [
        "",
        "abc",
        "12x",
        "12 ",
        "0x10",
        "-",
        "99999999999999999999999",
        &(me + 1).to_string(),
        "1",
    ] {
        let mut e = env(&[(ENV_LISTEN_PID, bad), (ENV_LISTEN_FDS, "1")]);
        let before = e.clone();
        let r = Activation::from_env_at(&mut e, me, 710, &[]).unwrap();
        assert!(r.is_none(), "LISTEN_PID={bad:?}");
        assert_eq!(e, before, "env must be untouched for LISTEN_PID={bad:?}");
    }
}

#[test]
fn malformed_or_missing_fds_leaves_env_untouched() {
    let me = pid().to_string();
    for bad in [
        None,
        Some(""),
        Some("x"),
        Some("1x"),
        Some("4294967296"),
        Some("-4294967296"),
    ] {
        let mut e = env(&[(ENV_LISTEN_PID, &me)]);
        if let Some(b) = bad {
            e.insert(ENV_LISTEN_FDS.into(), b.into());
        }
        let before = e.clone();
        assert!(
            Activation::from_env_at(&mut e, pid(), 720, &[])
                .unwrap()
                .is_none(),
            "LISTEN_FDS={bad:?}"
        );
        assert_eq!(e, before, "LISTEN_FDS={bad:?}");
    }
}

#[test]
fn zero_fds_unsets_pid_and_fds_only() {
    let me = pid().to_string();
    for zero in ["0", " 0", "+0", "-0"] {
        let mut e = env(&[
            (ENV_LISTEN_PID, &me),
            (ENV_LISTEN_FDS, zero),
            (ENV_LISTEN_FDNAMES, ""),
            ("OTHER", "x"),
        ]);
        assert!(Activation::from_env_at(&mut e, pid(), 730, &[])
            .unwrap()
            .is_none());
        assert_eq!(
            e,
            env(&[(ENV_LISTEN_FDNAMES, ""), ("OTHER", "x")]),
            "LISTEN_FDS={zero:?}"
        );
    }
}

#[test]
fn pid_is_compared_as_pid_t_with_strtoull_parsing() {
    // Leading blanks and '+' are accepted, and the value is truncated to
    // 32 bits before comparison, as `(pid_t)procid != getpid()` does.
    let me = pid();
    for ok in [
        format!("  {me}"),
        format!("+{me}"),
        (u64::from(me) + (1u64 << 32)).to_string(),
    ] {
        let mut e = env(&[(ENV_LISTEN_PID, &ok), (ENV_LISTEN_FDS, "0")]);
        assert!(Activation::from_env_at(&mut e, me, 740, &[])
            .unwrap()
            .is_none());
        assert!(
            e.is_empty(),
            "LISTEN_PID={ok:?} must be accepted (vars unset)"
        );
    }
}

#[test]
fn libvirt_activation_names() {
    // libvirt "Test activation names": a UNIX socket then 1 or 2 TCP sockets.
    let base = 750;
    let dir = tempfile::tempdir().unwrap();
    let (unix, _) = unix_listener(dir.path(), "virsystemdtest.sock");
    let (ip, _) = tcp_listeners();
    let nip = ip.len();
    let mut fds = vec![unix];
    fds.extend(ip);
    place(fds, base);
    let mut names = vec!["demo-unix.socket"];
    names.extend(vec!["demo-ip.socket"; nip]);
    let names = names.join(":");
    let mut e = env(&[
        (ENV_LISTEN_PID, &pid().to_string()),
        (ENV_LISTEN_FDS, &(1 + nip).to_string()),
        (ENV_LISTEN_FDNAMES, &names),
    ]);
    let mut act = Activation::from_env_at(&mut e, pid(), base, &[])
        .unwrap()
        .expect("activation object");
    // Only LISTEN_FDNAMES stays.
    assert_eq!(e, env(&[(ENV_LISTEN_FDNAMES, &names)]));
    assert_eq!(act.source(), NameSource::FdNames);
    assert_eq!(act.count(), 1 + nip);
    for fd in base..base + 1 + nip as RawFd {
        assert!(is_cloexec(fd), "fd {fd} must be close-on-exec");
    }
    assert!(matches!(
        act.complete(),
        Err(ActivationError::Unclaimed { .. })
    ));
    assert!(act.has_name("demo-unix.socket"));
    let u = act.claim("demo-unix.socket");
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].as_raw_fd(), base);
    let i = act.claim("demo-ip.socket");
    assert_eq!(i.len(), nip);
    assert_eq!(
        i.iter().map(AsRawFd::as_raw_fd).collect::<Vec<_>>(),
        (base + 1..base + 1 + nip as RawFd).collect::<Vec<_>>()
    );
    assert!(act.claim("demo-ip-alt.socket").is_empty());
    assert!(!act.has_name("demo-unix.socket"));
    act.complete().unwrap();
    drop((u, i));
    assert!(!is_open(base), "claimed descriptors close when dropped");
}

#[test]
fn activation_addrs_fallback_matches_names() {
    // Old libvirt "Test activation addrs": same sockets, LISTEN_FDNAMES unset,
    // named by address (IPv6 matches the TCP entry by port).
    let base = 770;
    let dir = tempfile::tempdir().unwrap();
    let (unix, path) = unix_listener(dir.path(), "virsystemdtest.sock");
    let (ip, port) = tcp_listeners();
    let nip = ip.len();
    let mut fds = vec![unix];
    fds.extend(ip);
    place(fds, base);
    let specs = [
        SocketSpec::new("demo-unix.socket", ListenAddr::Unix(path)),
        SocketSpec::new("demo-ip.socket", ListenAddr::Tcp(port)),
    ];
    let mut e = env(&[
        (ENV_LISTEN_PID, &pid().to_string()),
        (ENV_LISTEN_FDS, &(1 + nip).to_string()),
    ]);
    let mut act = Activation::from_env_at(&mut e, pid(), base, &specs)
        .unwrap()
        .expect("activation object");
    assert_eq!(act.source(), NameSource::Addresses);
    assert!(e.is_empty());
    assert!(act.complete().is_err());
    assert_eq!(act.claim("demo-unix.socket").len(), 1);
    assert_eq!(act.claim("demo-ip.socket").len(), nip);
    assert!(act.claim("demo-ip-alt.socket").is_empty());
    act.complete().unwrap();
}

#[test]
fn name_count_mismatch_closes_every_fd() {
    let base = 790;
    let dir = tempfile::tempdir().unwrap();
    let fds = (0..3)
        .map(|i| unix_listener(dir.path(), &format!("s{i}")).0)
        .collect();
    place(fds, base);
    let mut e = env(&[
        (ENV_LISTEN_PID, &pid().to_string()),
        (ENV_LISTEN_FDS, "3"),
        (ENV_LISTEN_FDNAMES, "a:b"),
    ]);
    let err = Activation::from_env_at(&mut e, pid(), base, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ActivationError::NameCountMismatch {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("Expecting 3 FD names but got 2"),
        "{err}"
    );
    assert!(err.falls_back_to_traditional());
    for fd in base..base + 3 {
        assert!(!is_open(fd), "fd {fd} must be closed");
    }
    assert_eq!(e, env(&[(ENV_LISTEN_FDNAMES, "a:b")]));
}

#[test]
fn empty_fdnames_is_zero_names() {
    // g_strsplit("") gives no pieces: one fd, zero names.
    let base = 800;
    let dir = tempfile::tempdir().unwrap();
    place(vec![unix_listener(dir.path(), "s").0], base);
    let mut e = env(&[
        (ENV_LISTEN_PID, &pid().to_string()),
        (ENV_LISTEN_FDS, "1"),
        (ENV_LISTEN_FDNAMES, ""),
    ]);
    let err = Activation::from_env_at(&mut e, pid(), base, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ActivationError::NameCountMismatch {
                expected: 1,
                got: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!is_open(base));
}

#[test]
fn empty_pieces_are_names_and_duplicates_group() {
    let base = 810;
    let dir = tempfile::tempdir().unwrap();
    let fds = (0..4)
        .map(|i| unix_listener(dir.path(), &format!("s{i}")).0)
        .collect();
    place(fds, base);
    let mut e = env(&[
        (ENV_LISTEN_PID, &pid().to_string()),
        (ENV_LISTEN_FDS, "4"),
        (ENV_LISTEN_FDNAMES, "x::x:y"),
    ]);
    let mut act = Activation::from_env_at(&mut e, pid(), base, &[])
        .unwrap()
        .unwrap();
    let mut unclaimed = act.unclaimed();
    unclaimed.sort();
    assert_eq!(unclaimed, vec!["", "x", "y"]);
    let x: Vec<RawFd> = act.claim("x").iter().map(AsRawFd::as_raw_fd).collect();
    assert_eq!(x, vec![base, base + 2]);
    let err = act.complete().unwrap_err();
    assert_eq!(
        err.to_string(),
        "Some activation file descriptors are unclaimed: , y"
    );
    assert!(!err.falls_back_to_traditional());
    drop(act);
    for fd in [base + 1, base + 3] {
        assert!(!is_open(fd), "unclaimed fd {fd} is closed with the object");
    }
}

#[test]
fn missing_names_without_fallback_is_libvirt_error() {
    let base = 830;
    let dir = tempfile::tempdir().unwrap();
    place(vec![unix_listener(dir.path(), "s").0], base);
    let mut e = env(&[(ENV_LISTEN_PID, &pid().to_string()), (ENV_LISTEN_FDS, "1")]);
    let err = Activation::from_env_at(&mut e, pid(), base, &[]).unwrap_err();
    assert!(matches!(err, ActivationError::MissingNames { count: 1 }));
    assert!(err.to_string().contains("Missing LISTEN_FDNAMES"));
    assert!(err.falls_back_to_traditional());
    assert!(
        e.is_empty(),
        "LISTEN_PID/LISTEN_FDS are unset before names are read"
    );
    // As in libvirt, the descriptor stays open, close-on-exec.
    assert!(is_cloexec(base));
    close_range(base, 1);
}

#[test]
fn fallback_with_unknown_address_fails_and_closes() {
    let base = 840;
    let dir = tempfile::tempdir().unwrap();
    let (a, pa) = unix_listener(dir.path(), "known");
    let (b, pb) = unix_listener(dir.path(), "stranger");
    place(vec![a, b], base);
    let specs = [SocketSpec::new("known.socket", ListenAddr::Unix(pa))];
    let mut e = env(&[(ENV_LISTEN_PID, &pid().to_string()), (ENV_LISTEN_FDS, "2")]);
    let err = Activation::from_env_at(&mut e, pid(), base, &specs).unwrap_err();
    match &err {
        ActivationError::Unidentified { fd, bound, .. } => {
            assert_eq!(*fd, base + 1);
            assert!(bound.contains(&pb.display().to_string()), "{bound}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.falls_back_to_traditional());
    assert!(!is_open(base) && !is_open(base + 1));
}

#[test]
fn fallback_rejects_non_socket_families() {
    // A datagram UNIX socket still has a UNIX address; a pipe has none.
    let base = 850;
    let (r, _w) = nix::unistd::pipe().unwrap();
    place(vec![r], base);
    let specs = [SocketSpec::new("x.socket", ListenAddr::Tcp(1))];
    let mut e = env(&[(ENV_LISTEN_PID, &pid().to_string()), (ENV_LISTEN_FDS, "1")]);
    let err = Activation::from_env_at(&mut e, pid(), base, &specs).unwrap_err();
    assert!(
        matches!(err, ActivationError::SockName { fd, .. } if fd == base),
        "{err:?}"
    );
    assert!(!is_open(base));

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dgram");
    let d = UnixDatagram::bind(&p).unwrap();
    place(vec![OwnedFd::from(d)], base);
    let specs = [SocketSpec::new("d.socket", ListenAddr::Unix(p))];
    let mut e = env(&[(ENV_LISTEN_PID, &pid().to_string()), (ENV_LISTEN_FDS, "1")]);
    let mut act = Activation::from_env_at(&mut e, pid(), base, &specs)
        .unwrap()
        .unwrap();
    assert_eq!(act.claim("d.socket").len(), 1);
}

#[test]
fn closed_descriptor_is_an_error() {
    let base = 860;
    let dir = tempfile::tempdir().unwrap();
    place(vec![unix_listener(dir.path(), "s").0], base);
    assert!(!is_open(base + 1));
    let mut e = env(&[
        (ENV_LISTEN_PID, &pid().to_string()),
        (ENV_LISTEN_FDS, "2"),
        (ENV_LISTEN_FDNAMES, "a:b"),
    ]);
    let err = Activation::from_env_at(&mut e, pid(), base, &[]).unwrap_err();
    assert!(
        matches!(err, ActivationError::FdNotOpen { fd, count: 2 } if fd == base + 1),
        "{err:?}"
    );
    assert!(!is_open(base), "the open one is closed too");
}

#[test]
fn huge_fd_counts_are_refused() {
    // "-1" is UINT_MAX for virStrToLong_ui.
    for n in ["-1", "4294967295", "2147483648", "100000000"] {
        let mut e = env(&[(ENV_LISTEN_PID, &pid().to_string()), (ENV_LISTEN_FDS, n)]);
        let err = Activation::from_env_at(&mut e, pid(), 870, &[]).unwrap_err();
        assert!(
            matches!(err, ActivationError::TooManyFds { .. }),
            "{n}: {err:?}"
        );
        assert!(!err.falls_back_to_traditional());
    }
}
