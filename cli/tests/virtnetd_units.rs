//! The systemd unit files in systemd/ agree with what the daemon claims:
//! one socket unit per socket kind, named as the daemon's activation name,
//! FileDescriptorName= equal to it, the default path and mode of the daemon's
//! own sockets, Service=virtnetd.service; and the service runs virtnetd as a
//! notify service bound to its main socket.

use std::collections::BTreeMap;
use std::path::Path;

use virtnet_daemon::SocketKind;

type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn unit(name: &str) -> Unit {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out: Unit = BTreeMap::new();
    let mut section = String::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}:{}: not key=value: {line}", n + 1));
        assert!(
            !section.is_empty(),
            "{name}:{}: key outside a section",
            n + 1
        );
        out.entry(section.clone())
            .or_default()
            .entry(k.to_owned())
            .or_default()
            .push(v.to_owned());
    }
    out
}

fn one<'a>(u: &'a Unit, section: &str, key: &str) -> &'a str {
    let v = &u[section][key];
    assert_eq!(v.len(), 1, "[{section}] {key} set {} times", v.len());
    &v[0]
}

fn all<'a>(u: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    u.get(section)
        .and_then(|s| s.get(key))
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn socket_units_match_the_daemon() {
    let runtime = Path::new("/run/virtnet");
    for kind in SocketKind::ALL {
        let name = kind.activation_name();
        let u = unit(name);
        assert_eq!(one(&u, "Socket", "FileDescriptorName"), name);
        assert_eq!(
            one(&u, "Socket", "ListenStream"),
            kind.path_in(runtime).display().to_string()
        );
        assert_eq!(
            one(&u, "Socket", "SocketMode"),
            format!("{:04o}", kind.mode())
        );
        assert_eq!(one(&u, "Socket", "Service"), "virtnetd.service");
        assert_eq!(one(&u, "Socket", "RemoveOnStop"), "yes");
        assert_eq!(all(&u, "Install", "WantedBy"), ["sockets.target"]);
        // Each socket unit installs the other two.
        let mut also: Vec<&str> = all(&u, "Install", "Also");
        also.sort();
        let mut others: Vec<&str> = SocketKind::ALL
            .iter()
            .filter(|&&k| k != kind)
            .map(|k| k.activation_name())
            .collect();
        others.sort();
        assert_eq!(also, others, "{name}");
        if kind != SocketKind::ReadWrite {
            assert_eq!(all(&u, "Unit", "BindsTo"), ["virtnetd.socket"], "{name}");
        }
    }
}

#[test]
fn service_unit() {
    let u = unit("virtnetd.service");
    assert_eq!(one(&u, "Service", "Type"), "notify");
    let exec = one(&u, "Service", "ExecStart");
    assert!(exec.starts_with("/usr/sbin/virtnetd "), "{exec}");
    assert_eq!(one(&u, "Service", "KillMode"), "process");
    assert_eq!(all(&u, "Unit", "BindsTo"), ["virtnetd.socket"]);
    let after = all(&u, "Unit", "After");
    let wants = all(&u, "Unit", "Wants");
    for kind in SocketKind::ALL {
        assert!(
            after.contains(&kind.activation_name()),
            "After={}",
            kind.activation_name()
        );
    }
    assert_eq!(wants, ["virtnetd-ro.socket", "virtnetd-admin.socket"]);
    assert_eq!(
        all(&u, "Install", "Also"),
        [
            "virtnetd.socket",
            "virtnetd-ro.socket",
            "virtnetd-admin.socket"
        ]
    );
}
