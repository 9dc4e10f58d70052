//! `virtnet net-dhcp-leases` and `virtnet-leaseshelper`: on the simulated
//! host (the helper run by hand, as dnsmasq would), and on the real host: a
//! real DHCP client (busybox `udhcpc`) in a guest namespace gets a lease from
//! the real dnsmasq, which runs the real helper, and the lease is listed.

mod common;

use std::path::Path;

use assert_cmd::Command;

const NET: &str = "<network>\n  <name>default</name>\n  <bridge name=\"virbr0\"/>\n  <forward/>\n  <ip address=\"192.168.122.1\" netmask=\"255.255.255.0\">\n    <dhcp>\n      <range start=\"192.168.122.2\" end=\"192.168.122.254\"/>\n    </dhcp>\n  </ip>\n</network>\n";

/// `virtnet` on the simulated host under `dir`, expiry times in UTC.
fn virtnet(dir: &Path) -> Command {
    let mut c = common::virtnet(dir);
    c.env("TZ", "UTC");
    c
}

fn helper(dir: &Path, args: &[&str], expires: &str) -> std::process::Output {
    Command::cargo_bin("virtnet-leaseshelper")
        .unwrap()
        .env_clear()
        .env("DNSMASQ_INTERFACE", "virbr0")
        .env("DNSMASQ_LEASE_EXPIRES", expires)
        .env("VIRTNET_LEASES_DIR", dir.join("run/dnsmasq"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn leases_table_json_mac_filter_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("net.xml"), NET).unwrap();
    virtnet(d)
        .arg("net-define")
        .arg(d.join("net.xml"))
        .assert()
        .success();
    virtnet(d).args(["net-start", "default"]).assert().success();
    // Empty: the header only.
    let out = virtnet(d)
        .args(["net-dhcp-leases", "default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The rule: every column's width + 3 (11+11+8+10+8+17 + 6*3 = 83).
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            " Expiry Time   MAC address   Protocol   IP address   Hostname   Client ID or DUID\n{}\n\n",
            "-".repeat(83)
        )
    );
    let h = helper(
        d,
        &["add", "52:54:00:12:34:56", "192.168.122.50", "guest1"],
        "4102444800",
    );
    assert!(h.status.success(), "{}", String::from_utf8_lossy(&h.stderr));
    let h = helper(
        d,
        &["add", "52:54:00:00:00:01", "192.168.122.51"],
        "4102444800",
    );
    assert!(h.status.success());
    let out = virtnet(d)
        .args(["net-dhcp-leases", "default"])
        .output()
        .unwrap();
    // 19+17+8+17+8+17 + 6*3 = 104.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            " Expiry Time           MAC address         Protocol   IP address          Hostname   Client ID or DUID
{}
 \
             2100-01-01 00:00:00   52:54:00:00:00:01   ipv4       192.168.122.51/24   -          -
 \
             2100-01-01 00:00:00   52:54:00:12:34:56   ipv4       192.168.122.50/24   guest1     -

",
            "-".repeat(104)
        )
    );
    let out = virtnet(d)
        .args([
            "net-dhcp-leases",
            "default",
            "--mac",
            "52:54:00:12:34:56",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["hostname"], "guest1");
    assert_eq!(v[0]["prefix"], 24);
    // The helper's init prints them for dnsmasq.
    let h = helper(d, &["init"], "");
    assert_eq!(
        String::from_utf8_lossy(&h.stdout),
        "4102444800 52:54:00:12:34:56 192.168.122.50 guest1 *\n4102444800 52:54:00:00:00:01 192.168.122.51 * *\n"
    );
    // Errors: bad MAC, unknown network, bad helper calls.
    let out = virtnet(d)
        .args(["net-dhcp-leases", "default", "--mac", "zz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: Failed to get leases info for default\nerror: invalid MAC address: zz\n"
    );
    let out = virtnet(d)
        .args(["net-dhcp-leases", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no network with matching name 'nope'"));
    let h = helper(d, &["frob", "a", "b"], "");
    assert_eq!(h.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&h.stderr).contains("Unsupported action: frob"));
    // A hostname with terminal escapes is shown escaped.
    let h = helper(
        d,
        &[
            "add",
            "52:54:00:00:00:02",
            "192.168.122.52",
            "x\u{1b}]0;pwn\u{7}",
        ],
        "0",
    );
    assert!(h.status.success());
    let out = virtnet(d)
        .args(["net-dhcp-leases", "default"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("x\\x1b]0;pwn\\x07"), "{text}");
    assert!(!text.contains('\u{1b}'));
}

/// The real thing, in a fresh network namespace: dnsmasq started by
/// `virtnet --host real` runs `virtnet-leaseshelper`; busybox's udhcpc in a
/// guest namespace (a veth on the bridge) gets a lease; net-dhcp-leases
/// lists it with the guest's MAC and hostname.
#[test]
fn a_real_dhcp_client_gets_a_lease_that_is_listed() {
    let tools = ["unshare", "nsenter", "ip", "iptables", "dnsmasq", "udhcpc"];
    if let Some(why) = virtnet_testkit::cannot_make_netns(&tools) {
        virtnet_testkit::skip(&why);
        return;
    }
    let dir = common::real_host_dir();
    let d = dir.path();
    std::fs::write(
        d.join("net.xml"),
        "<network><name>lz</name><bridge name='vtl0'/><forward/>\
         <ip address='10.77.0.1' netmask='255.255.255.0'><dhcp>\
         <range start='10.77.0.10' end='10.77.0.20'/></dhcp></ip></network>",
    )
    .unwrap();
    let exe = assert_cmd::cargo::cargo_bin("virtnet");
    let script = format!(
        "set -e\n\
         G=''\n\
         trap 'kill -9 $(cat {d}/run/dnsmasq/lz.pid 2>/dev/null) $G 2>/dev/null || true' EXIT\n\
         V='{exe} --host real --config-dir {d}/cfg --state-dir {d}/run'\n\
         $V net-define {d}/net.xml >/dev/null\n$V net-start lz >/dev/null\n\
         unshare -n sleep 120 & G=$!\n\
         sleep 0.2\n\
         ip link add vnet0 type veth peer name vguest address 52:54:00:77:00:05\n\
         ip link set vguest netns $G\n\
         ip link set vnet0 master vtl0 up\n\
         nsenter -t $G -n ip link set vguest up\n\
         # STP: the new port forwards only after the bridge's forward delay.\n\
         for i in $(seq 1 100); do\n\
           [ \"$(cat /sys/class/net/vnet0/brport/state)\" = 3 ] && break; sleep 0.1\n\
         done\n\
         nsenter -t $G -n udhcpc -i vguest -n -q -f -t 10 -T 1 -x hostname:guest77 -s /bin/true >{d}/udhcpc.log 2>&1\n\
         TZ=UTC $V net-dhcp-leases lz > {d}/leases\n\
         cat {d}/run/dnsmasq/vtl0.status > {d}/status-file\n\
         $V net-destroy lz >/dev/null\n",
        exe = exe.display(),
        d = d.display(),
    );
    let udhcpc_log = || std::fs::read_to_string(d.join("udhcpc.log")).unwrap_or_default();
    common::sh_in_fresh_netns(&script, || format!("\nudhcpc: {}", udhcpc_log()));
    let log = udhcpc_log();
    let leases = std::fs::read_to_string(d.join("leases")).unwrap();
    let row = leases
        .lines()
        .find(|l| l.contains("52:54:00:77:00:05"))
        .unwrap_or_else(|| panic!("no lease for the guest:\n{leases}\nudhcpc: {log}"));
    assert!(row.contains(" ipv4 "), "{row}");
    assert!(row.contains(" guest77 "), "{row}");
    let ip = row.split_whitespace().nth(4).unwrap();
    assert!(ip.starts_with("10.77.0.") && ip.ends_with("/24"), "{row}");
    let status = std::fs::read_to_string(d.join("status-file")).unwrap();
    assert!(
        status.contains("\"mac-address\": \"52:54:00:77:00:05\""),
        "{status}"
    );
    assert!(status.contains("\"expiry-time\": "), "{status}");
}
