//! Processes the real runner spawns start with a clean signal state: no
//! blocked signals and default dispositions, whatever the calling thread has
//! (virtnetd blocks SIGTERM/SIGINT/SIGHUP in its threads for its self-pipe;
//! a dnsmasq that inherited the block would ignore the SIGTERM of a destroy).

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use virtnet_runner::{Cmd, RealRunner, Runner};

/// The hexadecimal mask of one `/proc/self/status` line of the child.
fn child_mask(field: &str) -> u64 {
    let out = RealRunner::new()
        .run(&Cmd::new(["grep", field, "/proc/self/status"]))
        .expect("grep runs");
    let hex = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no {field} line in {:?}", out.stdout));
    u64::from_str_radix(hex, 16).expect("hex mask")
}

#[test]
fn children_start_with_no_blocked_and_no_ignored_signals() {
    // Run in a thread of its own: the mask is per thread.
    std::thread::spawn(|| {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        set.thread_block().expect("block");
        // SAFETY of the call: SIG_IGN installs no handler code.
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        let old = unsafe { sigaction(Signal::SIGUSR2, &ignore) }.expect("ignore SIGUSR2");
        let blocked = child_mask("SigBlk");
        let ignored = child_mask("SigIgn");
        unsafe { sigaction(Signal::SIGUSR2, &old) }.expect("restore SIGUSR2");
        set.thread_unblock().expect("unblock");
        assert_eq!(
            blocked, 0,
            "the child inherited blocked signals: {blocked:#x}"
        );
        let usr2 = 1u64 << (Signal::SIGUSR2 as i32 - 1);
        assert_eq!(
            ignored & usr2,
            0,
            "the child inherited an ignored SIGUSR2: {ignored:#x}"
        );
    })
    .join()
    .expect("thread");
}
