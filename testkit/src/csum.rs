//! The in-process half of the act_csum workaround of real-kernel runs.
//!
//! This machine's kernel lacks the tc `act_csum` action, so libvirt's DHCP
//! checksum filter (`tc filter add … action csum ip and udp`) cannot be
//! added. Real-kernel runs that assume it anyway (`--csum-workaround`)
//! put a `tc` wrapper first on `PATH` that turns the failure of exactly
//! that filter into success (`virtnet_conformance::host::tc_csum_wrapper_script`),
//! as the libvirt captures did. The real runner also sends the batched
//! layout's and libvirt's checksum filter from its own process
//! (`virtnet_runner::tc`), where no wrapper can see it: [`CsumWorkaround`]
//! does the same there, with the same rule and message. Harness code only:
//! the driver never fakes a result.

use virtnet_runner::{Cmd, Output, RunError, Runner};

/// What the wrapper prints for a faked success.
pub const FAKED: &str = "virtnet-conformance: kernel lacks act_csum; faked success";

/// `inner`, except that [`Runner::run_direct`] of a `tc` command whose
/// failing part adds a filter with `action csum` succeeds: a single
/// command whole, a `tc -batch -` from the line after the failing one on
/// (tc stops at that line; the lines before it took effect). Processes
/// ([`Runner::run`]) are the `PATH` wrapper's.
pub struct CsumWorkaround<R>(pub R);

/// A line (tc words) that adds a filter with the csum action.
fn adds_csum_filter(words: &[&str]) -> bool {
    words.first() == Some(&"filter")
        && words.get(1) == Some(&"add")
        && words.windows(2).any(|w| w == ["action", "csum"])
}

impl<R: Runner> CsumWorkaround<R> {
    fn tc_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let out = self.0.run_direct(cmd)?;
        if out.success() {
            return Ok(out);
        }
        let args: Vec<&str> = cmd.argv[1..].iter().map(String::as_str).collect();
        if args != ["-batch", "-"] {
            if adds_csum_filter(&args) {
                return Ok(Output {
                    status: 0,
                    stdout: out.stdout,
                    stderr: format!("{}{FAKED}\n", out.stderr),
                });
            }
            return Ok(out);
        }
        let input = cmd.stdin.as_deref().unwrap_or("");
        let failed = virtnet_runner::tc::failed_batch_line(&out.stderr);
        let lines: Vec<&str> = input.lines().collect();
        let Some(n) = failed.filter(|n| *n >= 1 && *n <= lines.len()) else {
            return Ok(out);
        };
        if !adds_csum_filter(&lines[n - 1].split_whitespace().collect::<Vec<_>>()) {
            return Ok(out);
        }
        let rest: String = lines[n..].iter().map(|l| format!("{l}\n")).collect();
        let before = format!("{}{FAKED}\n", out.stderr);
        if rest.trim().is_empty() {
            return Ok(Output {
                status: 0,
                stdout: out.stdout,
                stderr: before,
            });
        }
        let mut next = self.tc_direct(&Cmd::new(["tc", "-batch", "-"]).with_stdin(rest))?;
        next.stderr = before + &next.stderr;
        Ok(next)
    }
}

impl<R: Runner> Runner for CsumWorkaround<R> {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.0.run(cmd)
    }
    fn has_program(&self, name: &str) -> bool {
        self.0.has_program(name)
    }
    fn is_zombie(&self, pid: &str) -> bool {
        self.0.is_zombie(pid)
    }
    fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
        if cmd.program() == "tc" {
            self.tc_direct(cmd)
        } else {
            self.0.run_direct(cmd)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Fails the csum filter line of any tc batch, as the kernel does.
    struct NoActCsum(Mutex<Vec<String>>);
    impl Runner for NoActCsum {
        fn run(&self, _: &Cmd) -> Result<Output, RunError> {
            unreachable!("processes are the wrapper's")
        }
        fn run_direct(&self, cmd: &Cmd) -> Result<Output, RunError> {
            self.0
                .lock()
                .unwrap()
                .push(cmd.stdin.clone().unwrap_or_else(|| cmd.argv.join(" ")));
            let fail = |s: String| Output {
                status: 1,
                stdout: String::new(),
                stderr: s,
            };
            if cmd.argv.len() == 3 {
                for (k, l) in cmd.stdin.as_deref().unwrap_or("").lines().enumerate() {
                    if l.contains("action csum") || l.contains("bad") {
                        return Ok(fail(format!(
                            "Error: Failed to load TC action module.\nCommand failed -:{}\n",
                            k + 1
                        )));
                    }
                }
                return Ok(Output::ok(""));
            }
            Ok(fail("Error: Failed to load TC action module.\n".into()))
        }
    }

    #[test]
    fn only_the_csum_filter_is_faked() {
        let r = CsumWorkaround(NoActCsum(Mutex::new(Vec::new())));
        let batch = |s: &str| Cmd::new(["tc", "-batch", "-"]).with_stdin(s);
        let q = "qdisc add dev b root handle 1: htb default 2\n";
        let f = "filter add dev b prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp\n";
        let out = r.run_direct(&batch(&format!("{q}{f}"))).unwrap();
        assert!(
            out.success() && out.stderr.ends_with(&format!("{FAKED}\n")),
            "{out:?}"
        );
        // The line after the filter still runs; a failure there is kept.
        let out = r.run_direct(&batch(&format!("{q}{f}qdisc bad\n"))).unwrap();
        assert_eq!(out.status, 1, "{out:?}");
        assert_eq!(r.0 .0.lock().unwrap().last().unwrap(), "qdisc bad\n");
        // Another failing line is not faked.
        let out = r.run_direct(&batch("qdisc bad\n")).unwrap();
        assert_eq!(out.status, 1);
        // A single command: the filter's add only.
        let argv = |s: &str| Cmd::new(std::iter::once("tc").chain(s.split_whitespace()));
        assert!(r.run_direct(&argv(f)).unwrap().success());
        let del = f.replace(" add ", " del ");
        assert_eq!(r.run_direct(&argv(&del)).unwrap().status, 1);
    }
}
