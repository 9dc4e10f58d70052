//! `cargo xtask upgrade-check` end to end: the fake host, and `--real` (the
//! re-execution in new namespaces included) for one release state; the
//! real one prints "skipped: <why>" without root or the tools.

use std::process::Command;

fn xtask(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fake_host_one_release_state() {
    let (code, out, err) = xtask(&["upgrade-check", "--filter", "libvirt-11.3.0/nat-default/"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("(fake host, ")
            // 2 old backends x 2 new backends x 2 new layouts.
            && out.contains("8 checks passed, 0 failed (+0 expected failures)"),
        "{out}\n{err}"
    );
}

#[test]
fn nothing_selected_is_not_a_pass() {
    let (code, _, err) = xtask(&["upgrade-check", "--filter", "no-such-check"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn real_host_one_release_state_in_new_namespaces() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: not root");
        return;
    }
    let missing = virtnet_conformance::host::missing_tools();
    if !missing.is_empty() {
        println!("skipped: missing tools: {missing:?}");
        return;
    }
    let (code, out, err) = xtask(&[
        "upgrade-check",
        "--real",
        "--filter",
        "libvirt-9.0.0/nat-default/iptables->iptables",
        "--layout",
        "libvirt",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("re-executing inside new"), "{err}");
    assert!(
        out.contains("(real host, ")
            && out.contains("1 checks passed, 0 failed (+0 expected failures)"),
        "{out}\n{err}"
    );
    // The nftables state cannot exist on a kernel without act_csum: an
    // expected failure with its reason, not a pass and not a failure.
    let (code, out, err) = xtask(&[
        "upgrade-check",
        "--real",
        "--filter",
        "libvirt-11.3.0/nat-default/nftables->iptables",
        "--layout",
        "libvirt",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    if err.contains("kernel lacks the tc act_csum action") {
        assert!(
            out.contains("0 checks passed, 0 failed (+1 expected failures)"),
            "{out}\n{err}"
        );
        assert!(
            err.contains("xfail: expected failure: kernel lacks act_csum"),
            "{err}"
        );
    } else {
        assert!(out.contains("1 checks passed, 0 failed"), "{out}\n{err}");
    }
}
