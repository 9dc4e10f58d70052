//! What the differential tests share: a throw-away network namespace to run
//! the real tools in, and the checks that decide whether they can run.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

use virtnet_runner::{Cmd, Output, RealRunner, Runner};

/// A throw-away network namespace held open by a `sleep` started with
/// `unshare -n`; commands enter it with `nsenter`. Dropped = the holder is
/// killed (by its pid).
pub struct Netns {
    holder: Child,
}

impl Netns {
    pub fn new() -> Result<Netns, String> {
        let holder = Command::new("unshare")
            .args(["-n", "--", "sleep", "900"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let ns = Netns { holder };
        // Wait until the holder has entered its own namespace.
        let me = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        for _ in 0..300 {
            if let Ok(l) = std::fs::read_link(format!("/proc/{}/ns/net", ns.holder.id())) {
                if l != me {
                    return Ok(ns);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err("unshare -n did not create a namespace".into())
    }

    /// Runs `argv` in the namespace (a spawn failure is exit status -1).
    pub fn run(&self, argv: &[String]) -> Output {
        self.run_with_stdin(argv, None)
    }

    /// Runs `argv` in the namespace with `stdin` as its standard input.
    pub fn run_with_stdin(&self, argv: &[String], stdin: Option<&str>) -> Output {
        let mut full: Vec<String> = ["nsenter", "-t", &self.holder.id().to_string(), "-n", "--"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        full.extend(argv.iter().cloned());
        RealRunner::new()
            .run(&Cmd {
                argv: full.into(),
                stdin: stdin.map(str::to_string),
            })
            .unwrap_or_else(|e| Output::failed(-1, e.to_string()))
    }

    /// Runs a command line (shell words) in the namespace.
    pub fn sh(&self, line: &str) -> Output {
        self.run(&words(line))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A command line split into words as a shell would.
pub fn words(line: &str) -> Vec<String> {
    virtnet_fake::record::shell_words(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Text without its `#` comment lines.
pub fn strip_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Why the real tools cannot run here: not root, or one of `tools` is not
/// on PATH; `None` when they can.
pub fn cannot_run(tools: &[&str]) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for tool in tools {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|d| std::path::Path::new(d).join(tool).exists());
        if !found {
            return Some(format!("{tool} not found on PATH"));
        }
    }
    None
}

/// Why `tool VERSION_FLAG` does not print `want` (the version the simulator
/// models); `None` when it does.
pub fn other_version(tool: &str, flag: &str, want: &str) -> Option<String> {
    let v = Command::new(tool).arg(flag).output().ok()?;
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    (!v.contains(want))
        .then(|| format!("the simulator models {tool} {want}, host has {}", v.trim()))
}
