//! DHCP leases: the file libvirt's leases helper keeps per bridge, and the
//! helper's logic (`virtnet-leaseshelper`, run by dnsmasq as its
//! `--dhcp-script`).
//!
//! dnsmasq runs with `--leasefile-ro`: it keeps no lease file of its own and
//! instead calls its script with `add|old|del MAC-or-DUID IP [HOSTNAME]` on
//! every lease change (details in environment variables `DNSMASQ_*`), and
//! with `init` when it starts, expecting the saved leases on stdout in its
//! lease-file format. As in libvirt, the leases of the network on bridge `B`
//! live in `DNSMASQ_DIR/B.status`: a JSON array of objects with the keys
//! `iaid`, `ip-address`, `mac-address`, `hostname`, `client-id`,
//! `server-duid`, `expiry-time` (seconds since the epoch; 0 = never), in that
//! order, written by rename, mode 0644, so that libvirt's own helper and
//! `virsh net-dhcp-leases` read virtnet's file and the other way round.
//! Formatting is serde_json's pretty printer (two-space indent, `"key":
//! value`), as json-c's pretty printer that libvirt uses, except that an empty
//! array is `[]`.
//!
//! Behaviour kept from libvirt's helper: the interface comes from
//! `DNSMASQ_INTERFACE`, else `VIR_BRIDGE_NAME` (dnsmasq does not name it
//! for `init` and for `del` of leases that expired while it was down); an
//! IPv6 lease (`DNSMASQ_IAID` set) takes its MAC from `DNSMASQ_MAC` and
//! its client id from the second argument, and is not stored without a MAC;
//! `add`/`old` replace the lease of the same IP address, `del` removes it;
//! a lease without a hostname keeps `DNSMASQ_OLD_HOSTNAME`; leases of IPv6
//! without `server-duid` get the server's. Expired leases stay in the file
//! (dnsmasq deletes them) and are hidden when listed, as libvirt does.
//!
//! Beyond libvirt: concurrent helpers of one directory are serialised by an
//! `flock` on `DNSMASQ_DIR/.leaseshelper.lock` (libvirt: one pid file for the
//! whole host), and a file that is not valid JSON is an error that names it
//! and is not overwritten (libvirt rewrites it, dropping every lease).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest leases file read (libvirt: 32 MiB).
pub const MAX_FILE_SIZE: u64 = 32 * 1024 * 1024;

/// Environment variable with the directory of the leases files, set by the
/// driver for dnsmasq (and so for its script); libvirt's helper has it
/// compiled in (`/var/lib/libvirt/dnsmasq`), which is also the default here.
pub const DIR_ENV: &str = "VIRTNET_LEASES_DIR";

/// libvirt's directory of dnsmasq files, the default of [`DIR_ENV`].
pub const DEFAULT_DIR: &str = "/var/lib/libvirt/dnsmasq";

/// One lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iaid: Option<String>,
    #[serde(rename = "ip-address")]
    pub ip_address: String,
    #[serde(
        rename = "mac-address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(rename = "client-id", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(
        rename = "server-duid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub server_duid: Option<String>,
    #[serde(rename = "expiry-time")]
    pub expiry_time: i64,
}

impl Lease {
    pub fn is_ipv6(&self) -> bool {
        self.ip_address.contains(':')
    }

    /// Whether the lease has expired at `now` (0 never expires).
    pub fn expired(&self, now: i64) -> bool {
        self.expiry_time > 0 && self.expiry_time < now
    }
}

/// What went wrong with a leases file or a helper call.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_FILE_SIZE} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}:{line}:{column}: invalid leases file: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// `DIR/BRIDGE.status`.
pub fn file_path(dir: &Path, bridge: &str) -> PathBuf {
    dir.join(format!("{bridge}.status"))
}

/// The leases in `path`; a missing or empty file has none.
pub fn read_file(path: &Path) -> Result<Vec<Lease>, LeaseError> {
    let io = |source| LeaseError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > MAX_FILE_SIZE {
        return Err(LeaseError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    parse(path, &text)
}

/// Parses a leases file's text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Lease>, LeaseError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| LeaseError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// The file's text for `leases`.
pub fn render(leases: &[Lease]) -> String {
    // Serialising plain strings and integers cannot fail.
    let mut s = serde_json::to_string_pretty(leases).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// What dnsmasq told its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Add,
    Old,
    Del,
    Init,
}

/// One call of the script: its arguments and the `DNSMASQ_*`/`VIR_*`
/// environment variables it reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub args: Vec<String>,
    pub iaid: Option<String>,
    pub client_id: Option<String>,
    pub interface: Option<String>,
    pub supplied_hostname: Option<String>,
    pub old_hostname: Option<String>,
    pub mac: Option<String>,
    pub server_duid: Option<String>,
    pub lease_expires: Option<String>,
    pub bridge: Option<String>,
}

impl Event {
    /// The event from the process's arguments (without argv\[0\]) and
    /// environment lookup `env`.
    pub fn from_env(args: Vec<String>, env: impl Fn(&str) -> Option<String>) -> Event {
        Event {
            args,
            iaid: env("DNSMASQ_IAID"),
            client_id: env("DNSMASQ_CLIENT_ID"),
            interface: env("DNSMASQ_INTERFACE"),
            supplied_hostname: env("DNSMASQ_SUPPLIED_HOSTNAME"),
            old_hostname: env("DNSMASQ_OLD_HOSTNAME"),
            mac: env("DNSMASQ_MAC"),
            server_duid: env("DNSMASQ_SERVER_DUID"),
            lease_expires: env("DNSMASQ_LEASE_EXPIRES"),
            bridge: env(super::BRIDGE_ENV),
        }
    }

    /// The action and the interface whose file it concerns.
    pub fn action(&self) -> Result<(Action, String), LeaseError> {
        let n = self.args.len();
        if n != 1 && n != 3 && n != 4 {
            return Err(LeaseError::Usage(format!(
                "expected ACTION [MAC IP [HOSTNAME]] (as dnsmasq's --dhcp-script), got {n} arguments"
            )));
        }
        let interface = self
            .interface
            .clone()
            .or_else(|| self.bridge.clone())
            .ok_or_else(|| LeaseError::Usage("interface not set".into()))?;
        if interface.is_empty() || interface.contains('/') || interface.starts_with('.') {
            return Err(LeaseError::Usage(format!(
                "interface '{interface}' is not a valid interface name"
            )));
        }
        let action = match self.args[0].as_str() {
            "add" => Action::Add,
            "old" => Action::Old,
            "del" => Action::Del,
            "init" => Action::Init,
            other => return Err(LeaseError::Usage(format!("Unsupported action: {other}"))),
        };
        if action != Action::Init && n == 1 {
            return Err(LeaseError::Usage(format!(
                "action {} needs MAC and IP arguments",
                self.args[0]
            )));
        }
        Ok((action, interface))
    }

    /// The lease an `add`/`old` creates (`None`: an IPv6 lease without a
    /// MAC, which is not stored).
    fn new_lease(&self) -> Result<Option<Lease>, LeaseError> {
        let (mac, client_id) = if self.iaid.is_some() {
            (self.mac.clone(), self.args.get(1).cloned())
        } else {
            (self.args.get(1).cloned(), self.client_id.clone())
        };
        let Some(mac) = mac else { return Ok(None) };
        let hostname = self
            .args
            .get(3)
            .cloned()
            .or_else(|| self.supplied_hostname.clone())
            .or_else(|| self.old_hostname.clone());
        let expiry_time = match &self.lease_expires {
            None => 0,
            Some(t) => t.trim().parse::<i64>().map_err(|_| {
                LeaseError::Usage(format!(
                    "Unable to convert lease expiry time to long long: {t}"
                ))
            })?,
        };
        Ok(Some(Lease {
            iaid: self.iaid.clone(),
            ip_address: self.args.get(2).cloned().unwrap_or_default(),
            mac_address: Some(mac),
            hostname,
            client_id,
            server_duid: self.server_duid.clone(),
            expiry_time,
        }))
    }
}

/// The result of applying an event to the stored leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The leases to store, or `None` when the file is left as it is.
    pub store: Option<Vec<Lease>>,
    /// What to print on stdout (`init`: dnsmasq's lease-file format).
    pub stdout: String,
}

/// Applies `event` (action already checked) to the leases read from the
/// file, the way libvirt's helper does.
pub fn apply(action: &Action, event: &Event, old: Vec<Lease>) -> Result<Applied, LeaseError> {
    let mut server_duid = event.server_duid.clone();
    let new = match action {
        Action::Add | Action::Old => event.new_lease()?,
        _ => None,
    };
    // add/old of a lease that cannot be stored changes nothing (libvirt).
    let delete_ip = match action {
        Action::Add | Action::Old if new.is_some() => event.args.get(2).cloned(),
        Action::Del => event.args.get(2).cloned(),
        _ => None,
    };
    let mut kept = Vec::with_capacity(old.len() + 1);
    for mut lease in old {
        if delete_ip.as_deref() == Some(lease.ip_address.as_str()) {
            continue;
        }
        if lease.is_ipv6() {
            match (&lease.server_duid, &server_duid) {
                (Some(d), None) => server_duid = Some(d.clone()),
                (None, Some(d)) => lease.server_duid = Some(d.clone()),
                _ => {}
            }
        }
        kept.push(lease);
    }
    match action {
        Action::Init => Ok(Applied {
            stdout: init_output(&kept, server_duid.as_deref()),
            store: None,
        }),
        Action::Add | Action::Old => {
            if new.is_none() {
                return Ok(Applied {
                    store: None,
                    stdout: String::new(),
                });
            }
            kept.extend(new);
            Ok(Applied {
                store: Some(kept),
                stdout: String::new(),
            })
        }
        Action::Del => Ok(Applied {
            store: Some(kept),
            stdout: String::new(),
        }),
    }
}

/// dnsmasq's lease-file format for `init`: IPv4 leases as `EXPIRY MAC IP
/// HOSTNAME CLIENTID`, then, when there is a server DUID, `duid DUID` and
/// the IPv6 leases as `EXPIRY IAID IP HOSTNAME CLIENTDUID` (`*` for an
/// unknown hostname or client id).
pub fn init_output(leases: &[Lease], server_duid: Option<&str>) -> String {
    let star = |s: &Option<String>| s.clone().unwrap_or_else(|| "*".into());
    let mut out = String::new();
    for l in leases.iter().filter(|l| !l.is_ipv6()) {
        let _ = writeln!(
            out,
            "{} {} {} {} {}",
            l.expiry_time,
            star(&l.mac_address),
            l.ip_address,
            star(&l.hostname),
            star(&l.client_id)
        );
    }
    if let Some(duid) = server_duid {
        let _ = writeln!(out, "duid {duid}");
        for l in leases.iter().filter(|l| l.is_ipv6()) {
            let _ = writeln!(
                out,
                "{} {} {} {} {}",
                l.expiry_time,
                star(&l.iaid),
                l.ip_address,
                star(&l.hostname),
                star(&l.client_id)
            );
        }
    }
    out
}

/// The file name of virtnet's leases helper, installed next to `virtnet`
/// and `virtnetd`.
pub const HELPER_NAME: &str = "virtnet-leaseshelper";

/// The `--dhcp-script` for a real host: virtnet's helper next to the running
/// executable; else libvirt's helper where installed; else `true` from
/// `PATH` (dnsmasq refuses to start without a runnable script), in which
/// case leases are not recorded.
pub fn default_helper() -> String {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let ours = dir.join(HELPER_NAME);
        if ours.is_file() {
            return ours.to_string_lossy().into_owned();
        }
    }
    let libvirt = super::LIBVIRT_LEASES_HELPER;
    if Path::new(libvirt).exists() {
        return libvirt.to_string();
    }
    virtnet_runner::find_in_path("true")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| libvirt.to_string())
}

/// One call of the helper: takes the directory's lock, applies `event` to
/// `DIR/INTERFACE.status` and writes it back (mode 0644, by rename) when
/// it changed; returns what to print on stdout.
pub fn run_helper(dir: &Path, event: &Event) -> Result<String, LeaseError> {
    let (action, interface) = event.action()?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LeaseError::Io { path, source }
    };
    crate::store::create_dir_all_mode(dir, crate::store::STATE_DIR_MODE).map_err(io(dir))?;
    let lock_path = dir.join(".leaseshelper.lock");
    let lock = crate::store::open_lock_file(&lock_path).map_err(io(&lock_path))?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| LeaseError::Io {
            path: lock_path.clone(),
            source: std::io::Error::from(e),
        })
        .and_then(|_guard| {
            let path = file_path(dir, &interface);
            let old = read_file(&path)?;
            let applied = apply(&action, event, old)?;
            if let Some(leases) = &applied.store {
                crate::store::atomic_write_mode(
                    &path,
                    render(leases).as_bytes(),
                    crate::store::SHARED_FILE_MODE,
                )
                .map_err(io(&path))?;
            }
            Ok(applied.stdout)
        })
}

/// Normalises a MAC address for comparison (`virMacAddrCompare`: six hex
/// bytes, case-insensitive); `None` when `s` is not one.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        out[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(args: &[&str]) -> Event {
        Event {
            args: args.iter().map(|s| s.to_string()).collect(),
            bridge: Some("virbr0".into()),
            ..Event::default()
        }
    }

    fn run(event: &Event, old: Vec<Lease>) -> Applied {
        let (action, iface) = event.action().unwrap();
        assert_eq!(iface, "virbr0");
        apply(&action, event, old).unwrap()
    }

    #[test]
    fn add_replaces_the_same_ip_and_del_removes_it() {
        let mut add = ev(&["add", "52:54:00:aa:bb:cc", "192.168.122.10", "vm1"]);
        add.lease_expires = Some("1700000000 ".into());
        add.client_id = Some("01:52:54:00:aa:bb:cc".into());
        let a = run(&add, vec![]);
        let leases = a.store.unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].expiry_time, 1_700_000_000);
        assert_eq!(leases[0].hostname.as_deref(), Some("vm1"));
        let text = render(&leases);
        assert_eq!(
            text,
            "[\n  {\n    \"ip-address\": \"192.168.122.10\",\n    \"mac-address\": \"52:54:00:aa:bb:cc\",\n    \"hostname\": \"vm1\",\n    \"client-id\": \"01:52:54:00:aa:bb:cc\",\n    \"expiry-time\": 1700000000\n  }\n]\n"
        );
        assert_eq!(parse(Path::new("f"), &text).unwrap(), leases);
        // "old" of the same IP with another MAC replaces it.
        let old = ev(&["old", "52:54:00:00:00:01", "192.168.122.10"]);
        let b = run(&old, leases.clone()).store.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].mac_address.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(b[0].expiry_time, 0);
        let del = ev(&["del", "52:54:00:00:00:01", "192.168.122.10"]);
        assert_eq!(run(&del, b).store.unwrap(), vec![]);
    }

    #[test]
    fn init_prints_dnsmasq_lease_lines_v4_then_v6() {
        let v4 = Lease {
            iaid: None,
            ip_address: "10.0.0.5".into(),
            mac_address: Some("52:54:00:01:02:03".into()),
            hostname: None,
            client_id: None,
            server_duid: None,
            expiry_time: 42,
        };
        let v6 = Lease {
            iaid: Some("1234".into()),
            ip_address: "2001:db8::5".into(),
            mac_address: Some("52:54:00:01:02:03".into()),
            hostname: Some("g".into()),
            client_id: Some("00:01:00:01".into()),
            server_duid: Some("00:01:00:01:aa".into()),
            expiry_time: 43,
        };
        let a = run(&ev(&["init"]), vec![v6.clone(), v4]);
        assert_eq!(a.store, None);
        assert_eq!(
            a.stdout,
            "42 52:54:00:01:02:03 10.0.0.5 * *\nduid 00:01:00:01:aa\n43 1234 2001:db8::5 g 00:01:00:01\n"
        );
    }

    #[test]
    fn ipv6_lease_takes_mac_from_env_and_is_skipped_without_one() {
        let mut e = ev(&["add", "00:01:00:01:dd", "2001:db8::9"]);
        e.iaid = Some("7".into());
        e.server_duid = Some("00:01:srv".into());
        assert_eq!(run(&e, vec![]).store, None);
        e.mac = Some("52:54:00:00:00:09".into());
        let l = run(&e, vec![]).store.unwrap();
        assert_eq!(l[0].client_id.as_deref(), Some("00:01:00:01:dd"));
        assert_eq!(l[0].mac_address.as_deref(), Some("52:54:00:00:00:09"));
        assert_eq!(l[0].server_duid.as_deref(), Some("00:01:srv"));
    }

    #[test]
    fn bad_calls_are_refused() {
        let mut e = ev(&["add", "x"]);
        assert!(e.action().is_err());
        e = ev(&["frob", "a", "b"]);
        assert!(e
            .action()
            .unwrap_err()
            .to_string()
            .contains("Unsupported action: frob"));
        e = ev(&["add", "a", "b"]);
        e.bridge = None;
        assert!(e
            .action()
            .unwrap_err()
            .to_string()
            .contains("interface not set"));
        e.interface = Some("../etc".into());
        assert!(e.action().is_err());
        let mut e = ev(&["add", "52:54:00:00:00:01", "10.0.0.1"]);
        e.lease_expires = Some("soon".into());
        let (a, _) = e.action().unwrap();
        assert!(apply(&a, &e, vec![]).is_err());
        let err = parse(Path::new("/x/virbr0.status"), "[{\"ip-address\": 1}]").unwrap_err();
        assert!(err.to_string().starts_with("/x/virbr0.status:1:"), "{err}");
    }

    #[test]
    fn helper_keeps_the_file_across_calls() {
        let dir = tempfile::tempdir().unwrap();
        let mut add = ev(&["add", "52:54:00:aa:bb:cc", "192.168.122.10"]);
        add.interface = Some("virbr7".into());
        assert_eq!(run_helper(dir.path(), &add).unwrap(), "");
        let path = file_path(dir.path(), "virbr7");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let mut init = ev(&["init"]);
        init.bridge = Some("virbr7".into());
        assert_eq!(
            run_helper(dir.path(), &init).unwrap(),
            "0 52:54:00:aa:bb:cc 192.168.122.10 * *\n"
        );
        // A corrupt file is reported with its position and left alone.
        std::fs::write(&path, "[{").unwrap();
        let e = run_helper(dir.path(), &add).unwrap_err().to_string();
        assert!(e.contains("virbr7.status:1:"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[{");
    }

    #[test]
    fn macs_compare_case_insensitively() {
        assert_eq!(
            parse_mac("52:54:00:AA:bb:0c"),
            parse_mac("52:54:00:aa:BB:0C")
        );
        assert!(parse_mac("52:54:00:aa:bb").is_none());
        assert!(parse_mac("52:54:00:aa:bb:zz").is_none());
    }
}
