//! What the differential tests share: a throw-away network namespace to run
//! the real tools in, and the checks that decide whether they can run (both
//! from `virtnet_testkit::netns`, the one copy).
#![allow(dead_code)]

use virtnet_runner::Output;
pub use virtnet_testkit::netns::{cannot_run, other_version};

/// A throw-away network namespace (`virtnet_testkit::Netns`) with the
/// argv-of-strings calls the differential tests use.
pub struct Netns(virtnet_testkit::Netns);

impl Netns {
    pub fn new() -> Result<Netns, String> {
        virtnet_testkit::Netns::new().map(Netns)
    }

    /// Runs `argv` in the namespace (a spawn failure is exit status -1).
    pub fn run(&self, argv: &[String]) -> Output {
        self.0.run_words(argv)
    }

    /// Runs `argv` in the namespace with `stdin` as its standard input.
    pub fn run_with_stdin(&self, argv: &[String], stdin: Option<&str>) -> Output {
        self.0.run_words_with_stdin(argv, stdin)
    }

    /// Runs a command line (shell words) in the namespace.
    pub fn sh(&self, line: &str) -> Output {
        self.run(&words(line))
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
