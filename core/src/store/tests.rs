use std::path::{Path, PathBuf};

use super::*;

fn captures() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/captures"
    ))
    .to_path_buf()
}

/// Every `*.status.xml` under the captures of a release.
fn status_files(release: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![captures().join(release)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".status.xml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn libvirt_11_3_0_status_files_round_trip_byte_for_byte() {
    let files = status_files("libvirt-11.3.0");
    assert!(files.len() > 50, "found only {} status files", files.len());
    let mut with_plan = 0;
    for p in &files {
        let text = fs::read_to_string(p).unwrap();
        let st = parse_status(&text, p).unwrap_or_else(|e| panic!("{e}"));
        if st.fw_removal.is_some() {
            with_plan += 1;
            assert!(text.contains(&format!(
                "<firewall name='fwRemoval' backend='{}'>",
                st.removal_backend().unwrap()
            )));
        }
        assert_eq!(format_status(&st), text, "{}", p.display());
    }
    assert!(with_plan > 50, "{with_plan}");
}

#[test]
fn libvirt_9_0_0_status_files_have_no_plan_and_round_trip() {
    let files = status_files("libvirt-9.0.0");
    assert!(files.len() > 10, "found only {} status files", files.len());
    for p in &files {
        let text = fs::read_to_string(p).unwrap();
        let st = parse_status(&text, p).unwrap_or_else(|e| panic!("{e}"));
        assert!(st.fw_removal.is_none());
        assert!(st.has_status_root);
        assert_eq!(format_status(&st), text, "{}", p.display());
    }
}

#[test]
fn bare_network_status_file_is_accepted() {
    let text = "<network>\n  <name>n1</name>\n  <uuid>acc0d35a-07ed-4108-a893-65000321c14b</uuid>\n</network>\n";
    let st = parse_status(text, Path::new("n1.xml")).unwrap();
    assert!(!st.has_status_root);
    assert_eq!(st.def.name, "n1");
}

#[test]
fn broken_status_files_name_the_file_and_the_problem() {
    let p = Path::new("/state/x.xml");
    for (doc, want) in [
        ("<foo/>", "expected root element"),
        ("<networkstatus>\n  <class_id bitmap='0-2'/>\n</networkstatus>", "no <network>"),
        ("<networkstatus><network><name>x</name>", "not closed"),
        (
            "<networkstatus>\n<network><name>x</name></network>\n<firewall name='fwRemoval' backend='bogus'/>\n</networkstatus>",
            "invalid <firewall>",
        ),
        ("<networkstatus>\n<floor sum='x'/>\n<network><name>x</name></network></networkstatus>", "invalid floor sum"),
    ] {
        let e = parse_status(doc, p).unwrap_err().to_string();
        assert!(e.starts_with("/state/x.xml"), "{e}");
        assert!(e.contains(want), "{doc}: {e}");
    }
}

#[test]
fn status_parts_are_elements_not_text_that_looks_like_them() {
    // A comment that mentions tags, an escaped taint flag, a <network>
    // that is not a child of the root: read as XML, not by substring.
    let doc = "<networkstatus>\n  <!-- <network><name>nope</name></network> <class_id bitmap='9'/> -->\n  <class_id bitmap='0-2'/>\n  <taint flag='a&amp;b'/>\n  <other><network/></other>\n  <network>\n    <name>x</name>\n  </network>\n</networkstatus>";
    let st = parse_status(doc, Path::new("x.xml")).unwrap();
    assert_eq!(st.def.name, "x");
    assert_eq!(st.class_id, "0-2");
    assert_eq!(st.taints, vec!["a&b".to_string()]);
    assert!(format_status(&st).contains("<taint flag='a&amp;b'/>"));
}

#[test]
fn firewall_with_another_name_is_ignored() {
    let doc = "<networkstatus>\n<network><name>x</name></network>\n<firewall name='other' backend='iptables'>\n<group><action layer='ipv4'><args><item>-L</item></args></action></group>\n</firewall>\n</networkstatus>";
    assert!(parse_status(doc, Path::new("x.xml"))
        .unwrap()
        .fw_removal
        .is_none());
}

#[test]
fn stores_write_atomically_and_check_names() {
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(
        captures().join("libvirt-11.3.0/nat-default/nftables/1-after-start.status.xml"),
    )
    .unwrap();
    let st = parse_status(&text, Path::new("default.xml")).unwrap();
    let store = StatusStore::new(dir.path());
    store.save(&st).unwrap();
    let written = fs::read_to_string(dir.path().join("default.xml")).unwrap();
    assert_eq!(written, text);
    let meta = fs::metadata(dir.path().join("default.xml")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    let back = store.load("default").unwrap().unwrap();
    assert_eq!(format_status(&back), text);
    // A file whose name does not match the network is refused.
    fs::copy(dir.path().join("default.xml"), dir.path().join("other.xml")).unwrap();
    let all = store.load_all();
    assert_eq!(all.len(), 2);
    let e = all[1].1.as_ref().unwrap_err().to_string();
    assert!(e.contains("does not match network name 'default'"), "{e}");
    store.remove("default").unwrap();
    store.remove("default").unwrap();
    assert!(store.load("default").unwrap().is_none());
}

#[test]
fn config_store_and_autostart_links() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        fs::read_to_string(captures().join("libvirt-11.3.0/nat-default/iptables/defined.xml"))
            .unwrap();
    let def = netxml::parse(&text).unwrap();
    let cs = ConfigStore::new(dir.path());
    cs.save(&def).unwrap();
    let saved = fs::read_to_string(cs.path("default")).unwrap();
    assert!(saved.starts_with("<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE."));
    assert!(saved.contains("  virsh net-edit default\n"));
    assert!(saved.ends_with(&text), "{saved}");
    assert_eq!(ConfigStore::load_file(&cs.path("default")).unwrap(), def);
    assert!(!cs.is_autostart("default"));
    cs.set_autostart("default", true).unwrap();
    assert!(cs.is_autostart("default"));
    let target = fs::read_link(cs.autostart_link("default")).unwrap();
    assert!(target.is_absolute());
    cs.set_autostart("default", false).unwrap();
    cs.set_autostart("default", false).unwrap();
    assert!(!cs.is_autostart("default"));
}

#[test]
fn header_uses_uuid_for_unsafe_names() {
    let mut def = netxml::parse(
        "<network><name>a b</name><uuid>acc0d35a-07ed-4108-a893-65000321c14b</uuid></network>",
    )
    .unwrap();
    assert!(
        warning_header(&def).contains("  virsh net-edit acc0d35a-07ed-4108-a893-65000321c14b\n")
    );
    def.name = "ok".into();
    assert!(warning_header(&def).contains("  virsh net-edit ok\n"));
}

#[test]
fn network_conf_settings_and_errors() {
    let p = Path::new("/etc/virtnet/network.conf");
    let ok = |t: &str| parse_network_conf(t, p).unwrap().firewall_backend;
    assert_eq!(ok(""), None);
    assert_eq!(ok("# comment\n#firewall_backend = \"nftables\"\n"), None);
    assert_eq!(
        ok("firewall_backend = \"iptables\"\n"),
        Some(Backend::Iptables)
    );
    assert_eq!(
        ok("firewall_backend='nftables' # why\n"),
        Some(Backend::Nftables)
    );
    assert_eq!(ok("firewall_backend = \"none\""), Some(Backend::None));
    assert_eq!(ok("other = [ \"a\",\n \"b\" ]\nnum = 3\n"), None);
    for (t, line, col, want) in [
        ("\n\nfirewall_backend = \"ebtables\"\n", 3, 20, "unrecognized firewall_backend = 'ebtables' set in network driver config file /etc/virtnet/network.conf"),
        ("firewall_backend = nftables\n", 1, 20, "expecting a value"),
        ("  firewall_backend=3\n", 1, 20, "must be a string"),
        ("x\n", 1, 1, "expecting '='"),
        ("  9x = 1\n", 1, 3, "invalid setting name"),
        ("a = \"unterminated\n", 1, 5, "unterminated string"),
    ] {
        let e = parse_network_conf(t, p).unwrap_err();
        assert_eq!((e.line, e.column), (line, col), "{t}");
        assert!(e.message.contains(want), "{t}: {e}");
        assert!(
            e.to_string().starts_with(&format!("/etc/virtnet/network.conf:{line}:{col}: ")),
            "{e}"
        );
    }
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_symlink_planted_at_the_temporary_name_is_not_written_through() {
    let d = tempfile::tempdir().unwrap();
    let victim = d.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let target = d.path().join("net.xml");
    // The first temporary name atomic_write tries, and a dangling link at
    // the second one: neither may be opened.
    let tmp0 = d.path().join(format!(".net.xml.tmp{}", std::process::id()));
    let tmp1 = d
        .path()
        .join(format!(".net.xml.tmp{}.1", std::process::id()));
    let nowhere = d.path().join("created-through-link");
    std::os::unix::fs::symlink(&victim, &tmp0).unwrap();
    std::os::unix::fs::symlink(&nowhere, &tmp1).unwrap();
    atomic_write(&target, b"new").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"new");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(
        !nowhere.exists(),
        "a file was created through a dangling link"
    );
    // The planted links are not ours: left alone, still links.
    assert!(fs::symlink_metadata(&tmp0)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(&tmp1)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!fs::symlink_metadata(&target)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(mode_of(&target), 0o600);
}

#[test]
fn every_temporary_name_taken_is_an_error_not_a_write_through() {
    let d = tempfile::tempdir().unwrap();
    let victim = d.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let target = d.path().join("s.xml");
    for k in 0..super::TEMP_NAME_TRIES {
        let suffix = if k == 0 {
            String::new()
        } else {
            format!(".{k}")
        };
        let tmp = d
            .path()
            .join(format!(".s.xml.tmp{}{suffix}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    }
    let e = atomic_write(&target, b"new").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(!target.exists());
}

#[test]
fn files_and_directories_get_their_modes() {
    let d = tempfile::tempdir().unwrap();
    let shared = d.path().join("a/b/hosts");
    atomic_write_mode(&shared, b"x", SHARED_FILE_MODE).unwrap();
    assert_eq!(mode_of(&shared), 0o644);
    assert_eq!(mode_of(&d.path().join("a/b")), 0o755);
    assert_eq!(mode_of(&d.path().join("a")), 0o755);
    // Rewriting keeps the requested mode, whatever the file had.
    atomic_write(&shared, b"y").unwrap();
    assert_eq!(mode_of(&shared), 0o600);

    let priv_dir = d.path().join("etc/virtnet");
    create_dir_all_mode(&priv_dir, PRIVATE_DIR_MODE).unwrap();
    assert_eq!(mode_of(&priv_dir), 0o700);
    assert_eq!(mode_of(&d.path().join("etc")), 0o755);
    // An existing directory is left as it is.
    fs::set_permissions(&priv_dir, fs::Permissions::from_mode(0o750)).unwrap();
    create_dir_all_mode(&priv_dir, PRIVATE_DIR_MODE).unwrap();
    assert_eq!(mode_of(&priv_dir), 0o750);
    // A file in the way is an error.
    let e = create_dir_all_mode(&shared.join("sub"), STATE_DIR_MODE).unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("not a directory"),
        "{e}"
    );

    // Config store: a fresh config directory is private.
    let cfg = ConfigStore::new(d.path().join("cfg/networks"));
    let def = netxml::parse(
        "<network><name>n1</name><uuid>acc0d35a-07ed-4108-a893-65000321c14b</uuid></network>",
    )
    .unwrap();
    cfg.save(&def).unwrap();
    assert_eq!(mode_of(&d.path().join("cfg/networks")), 0o700);
    assert_eq!(mode_of(&cfg.path("n1")), 0o600);
    cfg.set_autostart("n1", true).unwrap();
    assert_eq!(mode_of(&cfg.autostart_dir()), 0o700);
}

#[test]
fn lock_files_are_private_and_never_followed() {
    let d = tempfile::tempdir().unwrap();
    let lock = d.path().join("driver.lock");
    // A lock file an earlier version left world-readable is made private.
    fs::write(&lock, b"").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    open_lock_file(&lock).unwrap();
    assert_eq!(mode_of(&lock), 0o600);
    fs::remove_file(&lock).unwrap();
    open_lock_file(&lock).unwrap();
    assert_eq!(mode_of(&lock), 0o600);
    // A symbolic link at the lock's name is refused (ELOOP), not followed.
    let other = d.path().join("other.lock");
    std::os::unix::fs::symlink(d.path().join("elsewhere"), &other).unwrap();
    assert!(open_lock_file(&other).is_err());
    assert!(!d.path().join("elsewhere").exists());
}

#[test]
fn status_file_errors_read_file_line_column() {
    let p = Path::new("/state/x.xml");
    let e = parse_status(
        "<networkstatus>\n<floor sum='x'/>\n<network><name>x</name></network></networkstatus>",
        p,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "/state/x.xml:2:1: invalid floor sum 'x'");
    let e = parse_status("\n<foo/>", p).unwrap_err().to_string();
    assert!(
        e.starts_with("/state/x.xml:2:1: expected root element"),
        "{e}"
    );
    // A definition error inside the status file: the position in the file.
    let e = parse_status(
        "<networkstatus>\n  <network>\n    <name>x</name>\n    <bogus attr='1'>\n  </network>\n</networkstatus>",
        p,
    )
    .unwrap_err()
    .to_string();
    let rest = e
        .strip_prefix("/state/x.xml:")
        .unwrap_or_else(|| panic!("{e}"));
    let (line, rest) = rest.split_once(':').unwrap();
    let (col, rest) = rest.split_once(": ").unwrap();
    assert!(line.parse::<usize>().unwrap() >= 2, "{e}");
    assert!(col.parse::<usize>().is_ok(), "{e}");
    assert!(rest.starts_with("invalid network definition: "), "{e}");
}

#[test]
fn temporary_names_and_their_writers() {
    assert_eq!(temp_writer(".load0.xml.tmp31274"), Some(31274));
    assert_eq!(temp_writer(".net.xml.tmp12.3"), Some(12));
    assert_eq!(temp_writer(".a.tmp.b.tmp7"), Some(7));
    for other in [
        "load0.xml",
        "load0.xml.tmp5",
        ".tmp5",
        ".x.tmp",
        ".x.tmp5.",
        ".x.tmp5.k",
        ".x.tmpabc",
        ".x.tmp0",
        ".x.tmp-1",
    ] {
        assert_eq!(temp_writer(other), None, "{other}");
    }
}

#[test]
fn temporary_files_of_dead_writers_are_removed_and_no_others() {
    let d = tempfile::tempdir().unwrap();
    // A pid that is surely gone: a child that has been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let me = std::process::id();
    let stale = d.path().join(format!(".load0.xml.tmp{dead}"));
    let stale_k = d.path().join(format!(".s.xml.tmp{dead}.2"));
    let live = d.path().join(format!(".load1.xml.tmp{me}"));
    let plain = d.path().join("load0.xml");
    let dir_named = d.path().join(format!(".dir.tmp{dead}"));
    for p in [&stale, &stale_k, &live, &plain] {
        std::fs::write(p, "x").unwrap();
    }
    std::fs::create_dir(&dir_named).unwrap();
    let mut removed = remove_stale_temps(d.path());
    removed.sort();
    let mut want = vec![stale.clone(), stale_k.clone()];
    want.sort();
    assert_eq!(removed, want);
    assert!(!stale.exists() && !stale_k.exists());
    assert!(
        live.exists(),
        "a write of a live process may be in progress"
    );
    assert!(plain.exists() && dir_named.exists());
    assert!(remove_stale_temps(&d.path().join("missing")).is_empty());
}
