//! The dnsmasq binary libvirt runs and its version check.

use std::path::{Path, PathBuf};

use super::DnsmasqError;
use virtnet_runner::{Cmd, Runner};

/// Oldest dnsmasq libvirt 11.3.0 accepts (major, minor).
pub const MIN_VERSION: (u64, u64) = (2, 67);

/// dnsmasq version `major.minor.micro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DnsmasqVersion {
    pub major: u64,
    pub minor: u64,
    pub micro: u64,
}

/// What libvirt knows about the dnsmasq it runs: its path and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqCaps {
    /// Absolute path (`argv[0]` of the daemon command).
    pub binary: String,
    pub version: DnsmasqVersion,
}

impl DnsmasqCaps {
    /// Capabilities from the output of `BINARY --version`, with libvirt's
    /// checks: the output must start with `Dnsmasq version `, then (after
    /// skipping non-digits) `MAJOR[.MINOR[.MICRO]]`, at least 2.67.
    pub fn from_version_output(binary: &str, output: &str) -> Result<Self, DnsmasqError> {
        let unparsable = || DnsmasqError::VersionUnparsable {
            binary: binary.to_string(),
            first_line: output.split('\n').next().unwrap_or("").to_string(),
        };
        let rest = output
            .strip_prefix("Dnsmasq version ")
            .ok_or_else(unparsable)?;
        let rest = rest.trim_start_matches(|c: char| !c.is_ascii_digit());
        let version = parse_version(rest).ok_or_else(unparsable)?;
        if (version.major, version.minor) < MIN_VERSION {
            return Err(DnsmasqError::VersionTooOld {
                major: version.major,
                minor: version.minor,
            });
        }
        Ok(DnsmasqCaps {
            binary: binary.to_string(),
            version,
        })
    }

    /// Run `BINARY --version` through `runner` and check the answer.
    pub fn probe(runner: &dyn Runner, binary: &str) -> Result<Self, DnsmasqError> {
        let out = runner.run(&Cmd::new([binary, "--version"])).map_err(|e| {
            DnsmasqError::VersionCommand {
                binary: binary.to_string(),
                reason: e.to_string(),
            }
        })?;
        if !out.success() {
            return Err(DnsmasqError::VersionCommand {
                binary: binary.to_string(),
                reason: format!("exit status {}: {}", out.status, out.stderr.trim_end()),
            });
        }
        DnsmasqCaps::from_version_output(binary, &out.stdout)
    }

    /// The capabilities libvirt's networkxml2conf test fakes:
    /// `/usr/sbin/dnsmasq` printing `Dnsmasq version 2.67`.
    pub fn libvirt_test() -> Self {
        DnsmasqCaps {
            binary: "/usr/sbin/dnsmasq".to_string(),
            version: DnsmasqVersion {
                major: 2,
                minor: 67,
                micro: 0,
            },
        }
    }
}

/// `MAJOR[.MINOR[.MICRO]]` followed by anything (libvirt's
/// virStringParseVersion with missing parts allowed); minor and micro at
/// most 999.
fn parse_version(s: &str) -> Option<DnsmasqVersion> {
    fn number(s: &str) -> Option<(u64, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if end == 0 {
            return None;
        }
        let n = s[..end].parse::<u64>().ok()?;
        Some((n, &s[end..]))
    }
    let (major, mut rest) = number(s)?;
    let mut minor = 0;
    let mut micro = 0;
    if let Some(r) = rest.strip_prefix('.') {
        (minor, rest) = number(r)?;
        if let Some(r) = rest.strip_prefix('.') {
            (micro, _) = number(r)?;
        }
    }
    if major > u64::from(u32::MAX) / 1_000_000 || minor > 999 || micro > 999 {
        return None;
    }
    Some(DnsmasqVersion {
        major,
        minor,
        micro,
    })
}

/// The first `dnsmasq` executable in the directories of `path_var` (a
/// `$PATH`-style list), as libvirt's virFindFileInPath finds it.
pub fn find_binary(path_var: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join("dnsmasq"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_test_caps_equal_parsed_fake_output() {
        let c = DnsmasqCaps::from_version_output("/usr/sbin/dnsmasq", "Dnsmasq version 2.67\n");
        assert_eq!(c, Ok(DnsmasqCaps::libvirt_test()));
    }

    #[test]
    fn real_banner_parses() {
        let out = "Dnsmasq version 2.90  Copyright (c) 2000-2024 Simon Kelley\nCompile time options: IPv6\n";
        let c = DnsmasqCaps::from_version_output("/usr/sbin/dnsmasq", out);
        assert_eq!(
            c.map(|c| c.version),
            Ok(DnsmasqVersion {
                major: 2,
                minor: 90,
                micro: 0
            })
        );
        let c = DnsmasqCaps::from_version_output("d", "Dnsmasq version v2.89.3test\n");
        assert_eq!(
            c.map(|c| c.version),
            Ok(DnsmasqVersion {
                major: 2,
                minor: 89,
                micro: 3
            })
        );
    }

    #[test]
    fn version_errors() {
        assert_eq!(
            DnsmasqCaps::from_version_output("/x/dnsmasq", "Dnsmasq version 2.66\n")
                .map_err(|e| e.to_string()),
            Err("dnsmasq version >= 2.67 required but 2.66 found".to_string())
        );
        assert_eq!(
            DnsmasqCaps::from_version_output("/x/dnsmasq", "dnsmasq 2.90\nmore\n")
                .map_err(|e| e.to_string()),
            Err("cannot parse /x/dnsmasq version number in 'dnsmasq 2.90'".to_string())
        );
        assert!(DnsmasqCaps::from_version_output("d", "Dnsmasq version \n").is_err());
        assert!(DnsmasqCaps::from_version_output("d", "Dnsmasq version 2.\n").is_err());
        assert!(DnsmasqCaps::from_version_output("d", "Dnsmasq version 2.1000\n").is_err());
        // Missing minor is 0: 3 >= 2.67.
        assert!(DnsmasqCaps::from_version_output("d", "Dnsmasq version 3\n").is_ok());
    }

    #[test]
    fn finds_first_executable_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let (Ok(a), Ok(b)) = (tempfile::tempdir(), tempfile::tempdir()) else {
            panic!("tempdir");
        };
        let pa = a.path().join("dnsmasq");
        let pb = b.path().join("dnsmasq");
        std::fs::write(&pa, "").unwrap();
        std::fs::write(&pb, "").unwrap();
        std::fs::set_permissions(&pb, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        // a's copy is not executable, so b's is found.
        assert_eq!(find_binary(&path), Some(pb.clone()));
        std::fs::set_permissions(&pa, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_binary(&path), Some(pa));
    }
}
