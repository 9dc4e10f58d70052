//! [`NsHandle`]: a network namespace held by an open file descriptor, and
//! running code or commands inside it from a helper thread (`setns(2)`), so
//! the calling thread's own namespace never changes.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};

/// A network namespace, alive as long as this handle (or a process or
/// socket in it) is. Dropping the last reference removes the namespace and
/// every device in it (a veth's peer in another namespace goes with it).
#[derive(Debug)]
pub struct NsHandle {
    fd: OwnedFd,
    /// A name for messages (`guest0`, `outside`, `host`).
    pub name: String,
}

fn open_thread_ns() -> Result<OwnedFd, String> {
    std::fs::File::open("/proc/thread-self/ns/net")
        .map(OwnedFd::from)
        .map_err(|e| format!("/proc/thread-self/ns/net: {e}"))
}

impl NsHandle {
    /// The calling thread's namespace.
    pub fn current(name: &str) -> Result<NsHandle, String> {
        Ok(NsHandle {
            fd: open_thread_ns()?,
            name: name.to_string(),
        })
    }

    /// A new, empty namespace (made on a helper thread that exits at once;
    /// the descriptor keeps it). Its loopback is brought up.
    pub fn new_empty(name: &str) -> Result<NsHandle, String> {
        let fd = std::thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
            open_thread_ns()
        })
        .join()
        .map_err(|_| "namespace thread panicked".to_string())??;
        let ns = NsHandle {
            fd,
            name: name.to_string(),
        };
        ns.cmd(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A path naming this namespace for `ip ... netns PATH`
    /// (`/proc/PID/fd/N`, valid while the handle lives).
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    /// Runs `f` on a helper thread inside this namespace; its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&self.fd, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns into {}: {e}", self.name))?;
                Ok(f())
            })
            .join()
            .map_err(|_| format!("thread in namespace {} panicked", self.name))?
        })
    }

    /// Runs `argv` in this namespace, which must succeed; its stdout.
    pub fn cmd(&self, argv: &[&str]) -> Result<String, String> {
        let out = self.output(argv, Duration::from_secs(20))?;
        if out.0 != 0 {
            return Err(format!(
                "`{}` in {} failed ({}): {}",
                argv.join(" "),
                self.name,
                out.0,
                out.2.trim_end()
            ));
        }
        Ok(out.1)
    }

    /// Runs `argv` in this namespace: (exit status, stdout, stderr). A
    /// process still running after `limit` is killed (status -1).
    pub fn output(&self, argv: &[&str], limit: Duration) -> Result<(i32, String, String), String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.run(move || run_bounded(&argv, limit))?
    }
}

/// Runs `argv` (here), killing it after `limit`.
fn run_bounded(argv: &[String], limit: Duration) -> Result<(i32, String, String), String> {
    let shown = argv.join(" ");
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    // Read the pipes on their own threads so a chatty child never blocks.
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let ro = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = so.as_mut() {
            let _ = std::io::Read::read_to_string(p, &mut s);
        }
        s
    });
    let re = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = se.as_mut() {
            let _ = std::io::Read::read_to_string(p, &mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code().unwrap_or(-1),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for `{shown}`: {e}"));
            }
        }
    };
    let stdout = ro.join().unwrap_or_default();
    let stderr = re.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_namespace_is_not_the_callers_and_dies_with_its_handle() {
        if let Some(why) = crate::cannot_run(&["ip"]) {
            crate::skip(&why);
            return;
        }
        let me = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let ns = NsHandle::new_empty("t").unwrap();
        let inside = ns
            .run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
            .unwrap();
        assert_ne!(inside, me);
        ns.cmd(&["ip", "link", "add", "vnlabt0", "type", "bridge"])
            .unwrap();
        assert!(ns.cmd(&["ip", "-br", "link"]).unwrap().contains("vnlabt0"));
        // Not here.
        let (st, _, _) = run_bounded(
            &["ip".into(), "link".into(), "show".into(), "vnlabt0".into()],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_ne!(st, 0);
        assert_eq!(std::fs::read_link("/proc/thread-self/ns/net").unwrap(), me);
    }

    #[test]
    fn a_hanging_command_is_killed() {
        if let Some(why) = crate::cannot_run(&["sleep"]) {
            crate::skip(&why);
            return;
        }
        let ns = NsHandle::current("here").unwrap();
        // Killed (-1), not its own exit status 0 after 30 s.
        let (st, _, _) = ns
            .output(&["sleep", "30"], Duration::from_millis(200))
            .unwrap();
        assert_eq!(st, -1);
    }
}
