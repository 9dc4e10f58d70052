//! What [`crate::nft`] and [`crate::tc`] share: a netlink socket of the
//! calling thread's namespace that gives up waiting for the kernel's
//! answers after [`ANSWER_TIMEOUT`], and a first sequence number.

use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::socket::{
    setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// How long the kernel's answers are waited for (they come at once; this
/// only bounds a kernel that never answers).
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A netlink socket of `protocol`, with the answer timeout set.
pub(crate) fn socket_for(protocol: SockProtocol) -> Result<OwnedFd, String> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        protocol,
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    let timeout = TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)
        .map_err(|e| format!("netlink socket: {e}"))?;
    Ok(fd)
}

/// A first sequence number (the clock's seconds, as the tools take).
pub(crate) fn first_seq() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}
