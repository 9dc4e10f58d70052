//! libvirt's "Test activation names" exactly as virsystemdtest.c runs it: the
//! sockets really are descriptors 3, 4 (and 5), found through the real
//! LISTEN_FDS_START. Like libvirt, the case is skipped when 3, 4 or 5 is
//! already open in the test process. One test only in this binary, so no
//! other test thread opens descriptors meanwhile.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use nix::fcntl::{fcntl, FcntlArg};
use virtnet_daemon::activation::{Activation, LISTEN_FDS_START};

fn is_open(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

#[test]
fn activation_names_at_fd_3() {
    if (3..=5).any(is_open) {
        eprintln!("skipped: descriptors 3-5 are not all free in this test process");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Created in this order they get 3, 4 (, 5).
    let unix = UnixListener::bind(dir.path().join("virsystemdtest.sock")).unwrap();
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    let v6 = TcpListener::bind(("::1", port)).ok();
    let nip = 1 + usize::from(v6.is_some());
    assert_eq!(unix.as_raw_fd(), LISTEN_FDS_START);
    assert_eq!(v4.as_raw_fd(), LISTEN_FDS_START + 1);
    // Hand ownership to the activation object (as systemd would).
    std::mem::forget(unix);
    std::mem::forget(v4);
    if let Some(v6) = v6 {
        assert_eq!(v6.as_raw_fd(), LISTEN_FDS_START + 2);
        std::mem::forget(v6);
    }
    let names = format!("demo-unix.socket{}", ":demo-ip.socket".repeat(nip));
    let mut env: BTreeMap<String, String> = [
        ("LISTEN_PID", std::process::id().to_string()),
        ("LISTEN_FDS", (1 + nip).to_string()),
        ("LISTEN_FDNAMES", names),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let mut act = Activation::from_env(&mut env, std::process::id(), &[])
        .unwrap()
        .expect("activation object");
    assert!(act.complete().is_err(), "unclaimed before claiming");
    let u: Vec<OwnedFd> = act.claim("demo-unix.socket");
    assert_eq!(u.len(), 1);
    assert_eq!(act.claim("demo-ip.socket").len(), nip);
    assert_eq!(act.claim("demo-ip-alt.socket").len(), 0);
    act.complete().unwrap();
}
