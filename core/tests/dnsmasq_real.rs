//! The real dnsmasq runs with what we generate: every networkxml2conf case
//! (but the one with made-up `<dnsmasq:options>`) is started in a throw-away
//! network namespace (`unshare -n`) with its bridge and addresses, and must
//! come up and write its pid file. Skipped (with a message) when not root or
//! when `unshare`/`dnsmasq` are missing.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use virtnet_core::dnsmasq::{self, DnsmasqOptions};
use virtnet_core::netxml;

const CONFDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../golden/upstream/libvirt-11.3.0/tests/networkxml2confdata"
);

/// Bring up the bridge and addresses, then become dnsmasq (in the new
/// namespace). $1 bridge, $2 conf file, $3.. addresses (CIDR).
const SCRIPT: &str = r#"set -e
br="$1"; conf="$2"; shift 2
ip link set lo up
ip link add "$br" type bridge
ip link set "$br" up
for a in "$@"; do ip addr add "$a" dev "$br" nodad 2>/dev/null || ip addr add "$a" dev "$br"; done
exec dnsmasq --keep-in-foreground --log-facility=- --conf-file="$conf" --leasefile-ro
"#;

#[test]
fn real_dnsmasq_starts_with_every_generated_configuration() {
    if let Some(why) = virtnet_testkit::cannot_run(&["unshare", "dnsmasq"]) {
        virtnet_testkit::skip(&why);
        return;
    }
    let mut started = 0;
    let mut paths: Vec<_> = std::fs::read_dir(CONFDATA)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .filter(|p| !p.ends_with("dnsmasq-options.xml"))
        .collect();
    paths.sort();
    for xml in &paths {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        // dnsmasq drops privileges before it reads the hosts files.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut def = netxml::parse(&std::fs::read_to_string(xml).unwrap()).unwrap();
        for ip in &mut def.ips {
            if ip.tftp_root.is_some() {
                ip.tftp_root = Some(d.clone());
            }
        }
        let files =
            dnsmasq::conf_contents(&def, &DnsmasqOptions::virtnet(&d, Some(d.clone()))).unwrap();
        for (path, text) in files.files() {
            std::fs::write(path, text).unwrap();
        }
        let addrs: Vec<String> = def
            .ips
            .iter()
            .map(|ip| format!("{}/{}", ip.address, ip.prefix().unwrap()))
            .collect();
        let mut child = virtnet_testkit::command_in_fresh_netns("sh")
            .args(["-c", SCRIPT, "sh"])
            .arg(def.bridge_name().unwrap())
            .arg(&files.paths.conf)
            .args(&addrs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut log = Vec::new();
        let mut up = false;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    up |= l.contains("started, version");
                    log.push(l);
                    if up {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // Give a failing start the chance to exit before we look.
        std::thread::sleep(Duration::from_millis(300));
        while let Ok(l) = rx.try_recv() {
            log.push(l);
        }
        let still_running = matches!(child.try_wait(), Ok(None));
        let pid_text =
            std::fs::read_to_string(files.paths.pid_file.as_deref().unwrap()).unwrap_or_default();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            up && still_running,
            "{}: dnsmasq did not come up:\n{}",
            xml.display(),
            log.join("\n")
        );
        assert_eq!(pid_text.trim(), child.id().to_string(), "{}", xml.display());
        started += 1;
    }
    assert_eq!(started, 26);
}
