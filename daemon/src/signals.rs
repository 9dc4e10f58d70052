//! SIGTERM / SIGINT / SIGHUP → a byte on the server's wake-up pipe.
//!
//! The handler only reads a `OnceLock` (an atomic load) and calls
//! `write(2)` (async-signal-safe), saving and restoring `errno`; the server's accept loop turns the byte into
//! a clean shutdown (SIGTERM, SIGINT) or a log line (SIGHUP).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{
    sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};

const SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in SIGNALS {
        set.add(sig);
    }
    set
}

/// Hold SIGTERM, SIGINT and SIGHUP pending (calling thread) until
/// [`install_signal_handlers`] runs, so a signal that arrives while the
/// sockets are being set up is handled cleanly instead of killing the
/// process. Call first thing in `main`, before any thread exists.
pub fn block_signals() -> Result<(), nix::Error> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signal_set()), None)
}

use super::server::ShutdownHandle;

/// The descriptor the handler writes to: a duplicate of the wake-up pipe's
/// write end, kept open for the life of the process (a later
/// [`install_signal_handlers`] points the same descriptor number at its
/// server's pipe with `dup3`).
static WAKE_FD: OnceLock<OwnedFd> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    let Some(fd) = WAKE_FD.get() else {
        return;
    };
    // errno is thread-local; write(2) is async-signal-safe.
    let saved = Errno::last_raw();
    let _ = nix::unistd::write(fd, &[sig as u8]);
    Errno::set_raw(saved);
}

/// Route SIGTERM, SIGINT and SIGHUP to `handle`'s server, then unblock them
/// (see [`block_signals`]; pending ones are delivered now). The write end of
/// the server's wake-up pipe is duplicated and kept open for the life of the
/// process.
pub fn install_signal_handlers(handle: &ShutdownHandle) -> Result<(), nix::Error> {
    let dup = handle
        .wake_fd()
        .try_clone()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    if let Err(dup) = WAKE_FD.set(dup) {
        if let Some(fd) = WAKE_FD.get() {
            // Atomically repoint the handler's descriptor at this pipe.
            nix::unistd::dup3(dup.as_raw_fd(), fd.as_raw_fd(), OFlag::O_CLOEXEC)?;
        }
    }
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in SIGNALS {
        // SAFETY: nix marks sigaction unsafe because the handler runs
        // asynchronously, in the middle of any code; no safe API installs a
        // handler. on_signal only does async-signal-safe things (above).
        unsafe { sigaction(sig, &action) }?;
    }
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signal_set()), None)
}
