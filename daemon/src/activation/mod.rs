//! systemd socket activation (`LISTEN_PID` / `LISTEN_FDS` / `LISTEN_FDNAMES`)
//! with libvirt's semantics, plus [`notify`] (`sd_notify` by hand).
//!
//! # Why this is written by hand
//!
//! Crates such as `listenfd`, `sd-notify` or `libsystemd` implement systemd's
//! own `sd_listen_fds_with_names()` contract, which differs from libvirt's in
//! exactly the places a libvirt-compatible daemon must match: libvirt parses
//! the numbers with `strtoull` semantics (leading blanks, a sign, `-1` wrapping
//! to `UINT_MAX`, the pid truncated to `pid_t`), leaves `LISTEN_FDNAMES` in the
//! environment while unsetting only `LISTEN_PID` and `LISTEN_FDS`, splits the
//! names with `g_strsplit` (an empty string is *zero* names), closes every
//! passed descriptor when the name count is wrong, groups descriptors that
//! share a name, and has a claim/complete protocol whose "unclaimed" failure is
//! a daemon startup error. None of them offers the by-address fallback of older
//! libvirt either. So the logic is here, over `nix`/`libc`, with the
//! environment and the current pid as *inputs* ([`Environment`], `pid`) so
//! every case is unit-testable without touching the process environment.
//!
//! # Outcome of [`Activation::from_env`]
//!
//! | situation | result |
//! |---|---|
//! | no / malformed / foreign `LISTEN_PID`, missing / malformed `LISTEN_FDS` | `Ok(None)`, environment untouched |
//! | `LISTEN_FDS=0` | `Ok(None)`, `LISTEN_PID` and `LISTEN_FDS` removed |
//! | N ≥ 1, names present and N of them | `Ok(Some(_))`, descriptors grouped by name |
//! | N ≥ 1, name count ≠ N | `Err(NameCountMismatch)`, all N descriptors closed |
//! | N ≥ 1, `LISTEN_FDNAMES` unset, fallback table given | descriptors named by what they are bound to (getsockname) |
//! | N ≥ 1, `LISTEN_FDNAMES` unset, empty fallback table | `Err(MissingNames)`, descriptors left open (close-on-exec) |
//!
//! libvirt reports the two name errors and then carries on *without*
//! activation (it binds its own sockets); [`ActivationError::falls_back_to_traditional`]
//! tells the caller which errors have that meaning. Every other error is a
//! startup failure.

pub mod notify;

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{getsockname, SockaddrLike, SockaddrStorage};

/// First descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Environment variable names of the protocol.
pub const ENV_LISTEN_PID: &str = "LISTEN_PID";
pub const ENV_LISTEN_FDS: &str = "LISTEN_FDS";
pub const ENV_LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";

/// The environment the activation protocol reads and edits.
///
/// [`ProcessEnv`] is the real process environment; a `BTreeMap<String, String>`
/// is the test double.
pub trait Environment {
    /// The value of `name`, or `None` when unset (or not valid UTF-8, which
    /// none of the protocol's values can legitimately be).
    fn var(&self, name: &str) -> Option<String>;
    /// Remove `name` from the environment.
    fn remove(&mut self, name: &str);
}

/// The real process environment.
///
/// Removing variables from the process environment is only sound while no
/// other thread reads the environment: call [`Activation::from_env`] with it
/// first thing in `main`, before any thread is started.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn remove(&mut self, name: &str) {
        std::env::remove_var(name);
    }
}

impl Environment for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
    fn remove(&mut self, name: &str) {
        BTreeMap::remove(self, name);
    }
}

impl Environment for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
    fn remove(&mut self, name: &str) {
        std::collections::HashMap::remove(self, name);
    }
}

/// What a socket the daemon is configured for is bound to; used to name
/// descriptors when `LISTEN_FDNAMES` is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A UNIX stream socket at this path.
    Unix(PathBuf),
    /// A TCP socket on this local port (IPv4 or IPv6: old libvirt matched
    /// both families by port alone).
    Tcp(u16),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Tcp(port) => write!(f, "tcp port {port}"),
        }
    }
}

/// One socket the daemon is configured for: the activation name it claims
/// and the address it would have in traditional mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSpec {
    pub name: String,
    pub addr: ListenAddr,
}

impl SocketSpec {
    pub fn new(name: impl Into<String>, addr: ListenAddr) -> Self {
        SocketSpec {
            name: name.into(),
            addr,
        }
    }
}

/// How the descriptors got their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// From `LISTEN_FDNAMES`.
    FdNames,
    /// `LISTEN_FDNAMES` was absent: from the address each descriptor is bound
    /// to, matched against the configured [`SocketSpec`]s.
    Addresses,
}

/// Errors of the activation protocol. Messages say what and where.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` is larger than any descriptor this process can have
    /// (libvirt fails on values above `INT_MAX`; we refuse anything past the
    /// open-file limit instead of probing billions of descriptors).
    #[error("LISTEN_FDS={value} from systemd socket activation is too large (this process can have at most {limit} descriptors)")]
    TooManyFds { value: u64, limit: u64 },
    /// One of the N passed descriptors is not open.
    #[error(
        "systemd socket activation passed {count} descriptors (LISTEN_FDS) but fd {fd} is not open"
    )]
    FdNotOpen { fd: RawFd, count: usize },
    /// `LISTEN_FDNAMES` is absent and the daemon has no address table to fall back on.
    #[error(
        "Missing LISTEN_FDNAMES env from systemd socket activation ({count} descriptors passed)"
    )]
    MissingNames { count: usize },
    /// The number of `:`-separated names differs from `LISTEN_FDS`.
    #[error("Expecting {expected} FD names but got {got} (LISTEN_FDNAMES={names:?}); all passed descriptors were closed")]
    NameCountMismatch {
        expected: usize,
        got: usize,
        names: String,
    },
    /// getsockname() failed on a passed descriptor (address fallback).
    #[error("Unable to get local socket name of activation fd {fd}: {source}")]
    SockName { fd: RawFd, source: nix::Error },
    /// A passed descriptor is neither a UNIX nor an IP socket (address fallback).
    #[error("Unexpected socket family {family} of activation fd {fd}")]
    UnexpectedFamily { fd: RawFd, family: i32 },
    /// No configured socket is bound where this descriptor is (address fallback).
    #[error("Cannot find name for activation fd {fd} bound to {bound}: LISTEN_FDNAMES is unset and no configured socket matches (configured: {configured})")]
    Unidentified {
        fd: RawFd,
        bound: String,
        configured: String,
    },
    /// After every service claimed its names, some descriptors are left.
    #[error("Some activation file descriptors are unclaimed: {}", .names.join(", "))]
    Unclaimed { names: Vec<String> },
}

impl ActivationError {
    /// True for the errors after which libvirt logs the error and runs in
    /// traditional mode (binds its own sockets) instead of failing startup:
    /// a missing `LISTEN_FDNAMES` and a wrong name count.
    pub fn falls_back_to_traditional(&self) -> bool {
        matches!(
            self,
            ActivationError::MissingNames { .. } | ActivationError::NameCountMismatch { .. }
        )
    }
}

/// Descriptors passed by systemd, grouped by name, waiting to be claimed.
///
/// Unclaimed descriptors are closed when the object is dropped.
#[derive(Debug)]
pub struct Activation {
    groups: BTreeMap<String, Vec<OwnedFd>>,
    source: NameSource,
    count: usize,
}

impl Activation {
    /// Read the activation environment (descriptors from
    /// [`LISTEN_FDS_START`]). `pid` is the current process id
    /// (`std::process::id()` in the daemon). `fallback` names descriptors by
    /// address when `LISTEN_FDNAMES` is absent; pass `&[]` for libvirt 11's
    /// strict behaviour.
    pub fn from_env(
        env: &mut dyn Environment,
        pid: u32,
        fallback: &[SocketSpec],
    ) -> Result<Option<Activation>, ActivationError> {
        Self::from_env_at(env, pid, LISTEN_FDS_START, fallback)
    }

    /// [`Activation::from_env`] with the first descriptor as a parameter
    /// (tests place sockets at a free range instead of 3, 4, 5).
    pub fn from_env_at(
        env: &mut dyn Environment,
        pid: u32,
        first_fd: RawFd,
        fallback: &[SocketSpec],
    ) -> Result<Option<Activation>, ActivationError> {
        let Some(nfds) = listen_fds(env, pid) else {
            return Ok(None);
        };
        let limit = open_file_limit();
        let last = first_fd as u64 + nfds as u64;
        if nfds as u64 > i32::MAX as u64 || last > limit {
            return Err(ActivationError::TooManyFds {
                value: nfds as u64,
                limit,
            });
        }
        let count = nfds as usize;
        if count == 0 {
            tracing::debug!("LISTEN_FDS=0: no activation descriptors");
            return Ok(None);
        }
        let raw: Vec<RawFd> = (0..count).map(|i| first_fd + i as RawFd).collect();

        // Close-on-exec for every passed descriptor (failure is only a warning
        // in libvirt; a closed descriptor is an error here because it cannot
        // be owned).
        let mut missing = None;
        for &fd in &raw {
            match fcntl(fd, FcntlArg::F_GETFD) {
                Ok(bits) => {
                    let flags = FdFlag::from_bits_truncate(bits) | FdFlag::FD_CLOEXEC;
                    if let Err(e) = fcntl(fd, FcntlArg::F_SETFD(flags)) {
                        tracing::warn!("couldn't disable inheritance of passed fd {fd}: {e}");
                    }
                }
                Err(_) => {
                    missing.get_or_insert(fd);
                }
            }
        }
        if let Some(fd) = missing {
            close_open(&raw);
            return Err(ActivationError::FdNotOpen { fd, count });
        }

        let names = match env.var(ENV_LISTEN_FDNAMES) {
            Some(names) => {
                let pieces = split_names(&names);
                if pieces.len() != count {
                    close_open(&raw);
                    return Err(ActivationError::NameCountMismatch {
                        expected: count,
                        got: pieces.len(),
                        names,
                    });
                }
                (pieces, NameSource::FdNames)
            }
            None if fallback.is_empty() => return Err(ActivationError::MissingNames { count }),
            None => match names_by_address(&raw, fallback) {
                Ok(n) => (n, NameSource::Addresses),
                Err(e) => {
                    close_open(&raw);
                    return Err(e);
                }
            },
        };

        let mut groups: BTreeMap<String, Vec<OwnedFd>> = BTreeMap::new();
        for (name, fd) in names.0.into_iter().zip(raw) {
            // SAFETY: fd was passed to us by the activation protocol, is open
            // (checked above with F_GETFD) and nothing else in this process
            // owns it: ownership is taken exactly once, here. No safe API
            // exists for this: a descriptor inherited by number has no owner
            // until one is made from the raw number.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            groups.entry(name).or_default().push(owned);
        }
        tracing::debug!(count, source = ?names.1, "activation descriptors received");
        Ok(Some(Activation {
            groups,
            source: names.1,
            count,
        }))
    }

    /// Whether an unclaimed group with exactly this name exists.
    pub fn has_name(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// Take the descriptors named `name` (in passing order); empty when absent.
    pub fn claim(&mut self, name: &str) -> Vec<OwnedFd> {
        self.groups.remove(name).unwrap_or_default()
    }

    /// Names not yet claimed.
    pub fn unclaimed(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Fails when any descriptor is still unclaimed.
    pub fn complete(&self) -> Result<(), ActivationError> {
        if self.groups.is_empty() {
            Ok(())
        } else {
            Err(ActivationError::Unclaimed {
                names: self.unclaimed(),
            })
        }
    }

    /// How the descriptors were named.
    pub fn source(&self) -> NameSource {
        self.source
    }

    /// Number of descriptors originally passed.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// Step 1 of the protocol: `Some(N)` when `LISTEN_PID` is ours and
/// `LISTEN_FDS` parses (then both variables are removed), `None` otherwise.
fn listen_fds(env: &mut dyn Environment, pid: u32) -> Option<u32> {
    let Some(pidstr) = env.var(ENV_LISTEN_PID) else {
        tracing::debug!("no LISTEN_PID: not socket activated");
        return None;
    };
    let Some(procid) = parse_ull(&pidstr) else {
        tracing::debug!("malformed LISTEN_PID {pidstr:?}: not socket activated");
        return None;
    };
    // libvirt compares `(pid_t)procid` with getpid(): truncation to 32 bits.
    if procid as i32 != pid as i32 {
        tracing::debug!("LISTEN_PID {pidstr} is not for us ({pid}): not socket activated");
        return None;
    }
    let Some(fdstr) = env.var(ENV_LISTEN_FDS) else {
        tracing::debug!("no LISTEN_FDS: not socket activated");
        return None;
    };
    let Some(nfds) = parse_ui(&fdstr) else {
        tracing::debug!("malformed LISTEN_FDS {fdstr:?}: not socket activated");
        return None;
    };
    env.remove(ENV_LISTEN_PID);
    env.remove(ENV_LISTEN_FDS);
    Some(nfds)
}

/// `g_ascii_strtoull(s, &end, 10)`: (value, negative sign seen, rest) or
/// `None` when no digit was consumed or on overflow (ERANGE).
fn strtoull(s: &str) -> Option<(u64, bool, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for b in t[..digits].bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((v, neg, &t[digits..]))
}

/// libvirt's `virStrToLong_ull` (base 10, no end pointer): the whole string
/// must be consumed; a minus sign negates with wrap-around.
fn parse_ull(s: &str) -> Option<u64> {
    let (mag, neg, rest) = strtoull(s)?;
    if !rest.is_empty() {
        return None;
    }
    Some(if neg { mag.wrapping_neg() } else { mag })
}

/// libvirt's `virStrToLong_ui`: like [`parse_ull`] but the value must fit an
/// unsigned int, where `-N` is accepted for N ≤ UINT_MAX (so `-1` is UINT_MAX).
fn parse_ui(s: &str) -> Option<u32> {
    let (mag, neg, rest) = strtoull(s)?;
    if !rest.is_empty() {
        return None;
    }
    let mut val = if neg { mag.wrapping_neg() } else { mag };
    if neg {
        if mag > u64::from(u32::MAX) {
            return None;
        }
        val &= u64::from(u32::MAX);
    }
    u32::try_from(val).ok()
}

/// `g_strsplit(names, ":", 0)`: a plain split, except that the empty string
/// gives no pieces at all.
fn split_names(names: &str) -> Vec<String> {
    if names.is_empty() {
        Vec::new()
    } else {
        names.split(':').map(str::to_owned).collect()
    }
}

fn open_file_limit() -> u64 {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != libc::RLIM_INFINITY => soft,
        _ => i32::MAX as u64,
    }
}

fn close_open(fds: &[RawFd]) {
    for &fd in fds {
        if fcntl(fd, FcntlArg::F_GETFD).is_ok() {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// What a descriptor is bound to, as far as naming is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    Unix(Option<PathBuf>),
    Ip(u16),
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            BoundAddr::Unix(None) => write!(f, "an unnamed or abstract UNIX socket"),
            BoundAddr::Ip(port) => write!(f, "IP port {port}"),
        }
    }
}

/// getsockname() of `fd`, reduced to what naming needs.
pub fn bound_addr(fd: RawFd) -> Result<BoundAddr, ActivationError> {
    let ss: SockaddrStorage =
        getsockname(fd).map_err(|source| ActivationError::SockName { fd, source })?;
    if let Some(un) = ss.as_unix_addr() {
        return Ok(BoundAddr::Unix(un.path().map(Path::to_path_buf)));
    }
    if let Some(v4) = ss.as_sockaddr_in() {
        return Ok(BoundAddr::Ip(v4.port()));
    }
    if let Some(v6) = ss.as_sockaddr_in6() {
        return Ok(BoundAddr::Ip(v6.port()));
    }
    Err(ActivationError::UnexpectedFamily {
        fd,
        family: ss.family().map(|f| f as i32).unwrap_or(-1),
    })
}

/// Old libvirt's fallback: name each descriptor after the first configured
/// socket of the same kind bound to the same path (UNIX) or port (IP).
fn names_by_address(fds: &[RawFd], specs: &[SocketSpec]) -> Result<Vec<String>, ActivationError> {
    let mut names = Vec::with_capacity(fds.len());
    for &fd in fds {
        let bound = bound_addr(fd)?;
        let found = specs.iter().find(|s| match (&s.addr, &bound) {
            (ListenAddr::Unix(p), BoundAddr::Unix(Some(q))) => p == q,
            (ListenAddr::Tcp(p), BoundAddr::Ip(q)) => p == q,
            _ => false,
        });
        match found {
            Some(spec) => names.push(spec.name.clone()),
            None => {
                return Err(ActivationError::Unidentified {
                    fd,
                    bound: bound.to_string(),
                    configured: specs
                        .iter()
                        .map(|s| format!("{}={}", s.name, s.addr))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }
    Ok(names)
}

/// Raw descriptor numbers of owned descriptors (for logging).
pub fn raw_fds(fds: &[OwnedFd]) -> Vec<RawFd> {
    fds.iter().map(AsRawFd::as_raw_fd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoull_semantics() {
        assert_eq!(parse_ull("42"), Some(42));
        assert_eq!(parse_ull("  \t42"), Some(42));
        assert_eq!(parse_ull("+42"), Some(42));
        assert_eq!(parse_ull("-1"), Some(u64::MAX));
        assert_eq!(parse_ull("42 "), None);
        assert_eq!(parse_ull("42x"), None);
        assert_eq!(parse_ull(""), None);
        assert_eq!(parse_ull("-"), None);
        assert_eq!(parse_ull("0x10"), None);
        assert_eq!(parse_ull("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_ull("18446744073709551616"), None);
    }

    #[test]
    fn strtoui_semantics() {
        assert_eq!(parse_ui("3"), Some(3));
        assert_eq!(parse_ui(" 3"), Some(3));
        assert_eq!(parse_ui("-1"), Some(u32::MAX));
        assert_eq!(parse_ui("-0"), Some(0));
        assert_eq!(parse_ui("-4294967295"), Some(1));
        assert_eq!(parse_ui("-4294967296"), None);
        assert_eq!(parse_ui("4294967295"), Some(u32::MAX));
        assert_eq!(parse_ui("4294967296"), None);
        assert_eq!(parse_ui("3 "), None);
        assert_eq!(parse_ui("three"), None);
    }

    #[test]
    fn g_strsplit_semantics() {
        assert_eq!(split_names(""), Vec::<String>::new());
        assert_eq!(split_names("a"), vec!["a"]);
        assert_eq!(split_names("a::b"), vec!["a", "", "b"]);
        assert_eq!(split_names(":"), vec!["", ""]);
    }
}
