//! SIGTERM / SIGINT / SIGHUP → a byte on the server's wake-up pipe.
//!
//! The handler only loads an atomic and calls `write(2)` (async-signal-safe),
//! saving and restoring `errno`; the server's accept loop turns the byte into
//! a clean shutdown (SIGTERM, SIGINT) or a log line (SIGHUP).

use std::sync::atomic::{AtomicI32, Ordering};

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

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: errno is thread-local; __errno_location and write are
    // async-signal-safe; the buffer lives on this stack frame.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = sig as u8;
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// Route SIGTERM, SIGINT and SIGHUP to `handle`'s server, then unblock them
/// (see [`block_signals`]; pending ones are delivered now). The write end of
/// the server's wake-up pipe is duplicated and kept open for the life of the
/// process.
pub fn install_signal_handlers(handle: &ShutdownHandle) -> Result<(), nix::Error> {
    let fd = nix::fcntl::fcntl(handle.raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    let old = WAKE_FD.swap(fd, Ordering::SeqCst);
    if old >= 0 {
        let _ = nix::unistd::close(old);
    }
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in SIGNALS {
        // SAFETY: the handler is async-signal-safe (see on_signal).
        unsafe { sigaction(sig, &action) }?;
    }
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signal_set()), None)
}
