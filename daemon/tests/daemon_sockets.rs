//! Turning activation descriptors into the daemon's listeners: names claimed,
//! descriptors checked (listening UNIX stream sockets only), leftovers fatal
//! with exit status 6; and the daemon's own sockets.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg};
use virtnet_daemon::activation::{Activation, ListenAddr};
use virtnet_daemon::sockets::{
    bind_own_sockets, listeners_from_activation, socket_specs, StartupError,
};
use virtnet_daemon::{acquire_listeners, ListenMode, SocketKind, EXIT_ACTIVATION};

fn is_open(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

fn place(fds: Vec<OwnedFd>, base: RawFd) {
    for (i, fd) in fds.into_iter().enumerate() {
        let target = base + i as RawFd;
        assert!(!is_open(target), "fd {target} in use");
        nix::unistd::dup2(fd.as_raw_fd(), target).unwrap();
    }
}

fn activation(base: RawFd, n: usize, names: Option<&str>, dir: &Path) -> Activation {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("LISTEN_PID".into(), std::process::id().to_string());
    env.insert("LISTEN_FDS".into(), n.to_string());
    if let Some(n) = names {
        env.insert("LISTEN_FDNAMES".into(), n.into());
    }
    Activation::from_env_at(&mut env, std::process::id(), base, &socket_specs(dir))
        .unwrap()
        .expect("activation")
}

fn unix(dir: &Path, name: &str) -> OwnedFd {
    OwnedFd::from(UnixListener::bind(dir.join(name)).unwrap())
}

#[test]
fn all_three_named() {
    let base = 600;
    let d = tempfile::tempdir().unwrap();
    place(
        vec![
            unix(d.path(), "a"),
            unix(d.path(), "b"),
            unix(d.path(), "c"),
        ],
        base,
    );
    let mut act = activation(
        base,
        3,
        Some("virtnetd-admin.socket:virtnetd.socket:virtnetd-ro.socket"),
        d.path(),
    );
    let ls = listeners_from_activation(&mut act).unwrap();
    let got: Vec<(SocketKind, String, bool)> = ls
        .iter()
        .map(|l| {
            (
                l.kind,
                l.path
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                l.activated && !l.unlink_on_close,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (SocketKind::ReadWrite, "b".into(), true),
            (SocketKind::ReadOnly, "c".into(), true),
            (SocketKind::Admin, "a".into(), true),
        ]
    );
}

#[test]
fn absent_service_is_just_absent() {
    let base = 610;
    let d = tempfile::tempdir().unwrap();
    place(vec![unix(d.path(), "a")], base);
    let mut act = activation(base, 1, Some("virtnetd-ro.socket"), d.path());
    let ls = listeners_from_activation(&mut act).unwrap();
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].kind, SocketKind::ReadOnly);
}

#[test]
fn fallback_by_path_in_runtime_dir() {
    let base = 620;
    let d = tempfile::tempdir().unwrap();
    place(
        vec![
            unix(d.path(), "virtnetd-sock-ro"),
            unix(d.path(), "virtnetd-sock"),
        ],
        base,
    );
    let mut act = activation(base, 2, None, d.path());
    let ls = listeners_from_activation(&mut act).unwrap();
    let kinds: Vec<SocketKind> = ls.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, vec![SocketKind::ReadWrite, SocketKind::ReadOnly]);
    let specs = socket_specs(d.path());
    assert_eq!(
        specs[2].addr,
        ListenAddr::Unix(d.path().join("virtnetd-admin-sock"))
    );
}

#[test]
fn unclaimed_name_is_fatal_with_status_6() {
    let base = 630;
    let d = tempfile::tempdir().unwrap();
    place(vec![unix(d.path(), "a"), unix(d.path(), "b")], base);
    let mut act = activation(base, 2, Some("virtnetd.socket:libvirtd.socket"), d.path());
    let err = listeners_from_activation(&mut act).unwrap_err();
    assert_eq!(err.exit_code(), EXIT_ACTIVATION);
    assert_eq!(EXIT_ACTIVATION, 6);
    assert!(
        err.to_string().contains("unclaimed: libvirtd.socket"),
        "{err}"
    );
}

#[test]
fn unusable_descriptors_are_fatal() {
    let d = tempfile::tempdir().unwrap();
    // TCP socket under our name.
    let base = 640;
    place(
        vec![OwnedFd::from(TcpListener::bind("127.0.0.1:0").unwrap())],
        base,
    );
    let mut act = activation(base, 1, Some("virtnetd.socket"), d.path());
    let err = listeners_from_activation(&mut act).unwrap_err();
    assert!(
        matches!(err, StartupError::BadActivationFd { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("IP socket"), "{err}");
    assert_eq!(err.exit_code(), 6);

    // Datagram socket.
    let base = 645;
    place(
        vec![OwnedFd::from(
            UnixDatagram::bind(d.path().join("dg")).unwrap(),
        )],
        base,
    );
    let mut act = activation(base, 1, Some("virtnetd.socket"), d.path());
    let err = listeners_from_activation(&mut act).unwrap_err();
    assert!(err.to_string().contains("not a stream"), "{err}");

    // Stream socket that is not listening.
    let base = 650;
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    place(vec![OwnedFd::from(a)], base);
    let mut act = activation(base, 1, Some("virtnetd-admin.socket"), d.path());
    let err = listeners_from_activation(&mut act).unwrap_err();
    assert!(err.to_string().contains("not listening"), "{err}");
}

#[test]
fn nothing_to_serve_is_fatal() {
    let base = 660;
    let d = tempfile::tempdir().unwrap();
    place(vec![unix(d.path(), "a")], base);
    let mut act = activation(base, 1, Some("virtnetd.socket"), d.path());
    act.claim("virtnetd.socket");
    let err = listeners_from_activation(&mut act).unwrap_err();
    assert!(matches!(err, StartupError::NothingToServe));
}

#[test]
fn own_sockets_replace_stale_files_and_have_modes() {
    let d = tempfile::tempdir().unwrap();
    let rt = d.path().join("run/virtnet");
    std::fs::create_dir_all(&rt).unwrap();
    std::fs::write(rt.join("virtnetd-sock"), b"stale").unwrap();
    let ls = bind_own_sockets(&rt).unwrap();
    assert_eq!(ls.len(), 3);
    for l in &ls {
        let p = l.path.as_ref().unwrap();
        assert_eq!(p, &l.kind.path_in(&rt));
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, l.kind.mode());
        assert!(!l.activated && l.unlink_on_close);
    }
    assert_eq!(
        [
            SocketKind::ReadWrite,
            SocketKind::ReadOnly,
            SocketKind::Admin
        ]
        .map(|k| k.mode()),
        [0o600, 0o666, 0o600]
    );
}

#[test]
fn own_sockets_fail_clearly() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let err = bind_own_sockets(&file).unwrap_err();
    assert!(matches!(err, StartupError::RuntimeDir { .. }), "{err:?}");
    assert_eq!(err.exit_code(), virtnet_daemon::EXIT_SOCKETS);
    assert!(err.to_string().contains("not-a-dir"));
}

#[test]
fn acquire_without_activation_binds_own() {
    let d = tempfile::tempdir().unwrap();
    // LISTEN_PID for another process: traditional mode.
    let mut env: BTreeMap<String, String> = [("LISTEN_PID", "1"), ("LISTEN_FDS", "3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (ls, mode) = acquire_listeners(&mut env, std::process::id(), d.path()).unwrap();
    assert_eq!(mode, ListenMode::Own);
    assert_eq!(ls.len(), 3);
    assert_eq!(env.len(), 2, "foreign activation env is left alone");
}
