//! The trace of every command a [`crate::FakeHost`] ran, and the two text
//! forms it can be rendered in:
//!
//! * libvirt's golden test format (`networkxml2firewalldata/*.iptables`,
//!   `*.args`): arguments broken over lines with ` \` continuations, shell
//!   quoting of special characters ([`render_golden`]);
//! * the capture log format (`captures/.../commands.log`): one command per
//!   line, then `# rc=N` when non-zero, `#> ` stdout lines and `#! ` stderr
//!   lines ([`render_log`]).
//!
//! Parsers for both formats ([`parse_golden`], [`parse_log`]) let tests
//! replay libvirt's own data through the simulator.
//!
//! The golden format itself has one implementation,
//! `virtnet_runner::render`; the functions here delegate to it.

use serde::{Deserialize, Serialize};
use virtnet_runner::{Cmd, Output};

/// What happened to one command. (Injected failures and crashes are not
/// the simulator's: `virtnet_testkit::FaultRunner` logs them around it.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The simulator ran it.
    Ran { output: Output },
    /// The argv was empty: `run` returned `RunError::Empty`.
    Empty,
}

impl Outcome {
    /// The output the caller saw, if any.
    pub fn output(&self) -> Option<&Output> {
        match self {
            Outcome::Ran { output } => Some(output),
            Outcome::Empty => None,
        }
    }
}

/// One recorded command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 1-based position among all commands given to this host.
    pub index: u64,
    pub cmd: Cmd,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Shell-escape one argument as libvirt's `virBufferEscapeShell` does
/// (the one implementation lives in `virtnet_runner::render`).
pub fn shell_escape(arg: &str) -> String {
    virtnet_runner::render::escape_shell(arg).into_owned()
}

/// Render one argv in libvirt's multi-line golden format (no trailing
/// newline). The program is reduced to its basename.
pub fn render_argv(argv: &[String]) -> String {
    virtnet_runner::render::render_argv(argv, virtnet_runner::render::RenderOptions::GOLDEN)
}

/// Render commands in the golden format, one after the other, each ending
/// with a newline (the content of a libvirt `.iptables`/`.args` file).
pub fn render_golden<'a>(cmds: impl IntoIterator<Item = &'a Cmd>) -> String {
    virtnet_runner::render::render_stream(cmds, virtnet_runner::render::RenderOptions::GOLDEN)
}

/// Render records in the capture log format.
pub fn render_log(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        let line: Vec<String> = r.cmd.argv.iter().map(|a| shell_escape(a)).collect();
        out.push_str(&line.join(" "));
        out.push('\n');
        match &r.outcome {
            Outcome::Ran { output } => {
                if output.status != 0 {
                    out.push_str(&format!("# rc={}\n", output.status));
                }
                for l in output.stdout.lines() {
                    out.push_str(&format!("#> {l}\n"));
                }
                for l in output.stderr.lines() {
                    out.push_str(&format!("#! {l}\n"));
                }
            }
            Outcome::Empty => out.push_str("# EMPTY command\n"),
        }
    }
    out
}

/// Error from the parsers, with the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Split one line into words with POSIX shell quoting rules (single quotes,
/// double quotes, backslash escapes). Used for both formats.
pub fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                have = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                have = true;
                match chars.next() {
                    Some(x) => cur.push(x),
                    None => return Err("trailing backslash".into()),
                }
            }
            ' ' | '\t' => {
                if have {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            x => {
                have = true;
                cur.push(x);
            }
        }
    }
    if have {
        words.push(cur);
    }
    Ok(words)
}

/// Parse a golden-format file into argv lists (delegates to
/// `virtnet_runner::render::parse_stream`).
pub fn parse_golden(text: &str) -> Result<Vec<Vec<String>>, ParseError> {
    virtnet_runner::render::parse_stream(text).map_err(|e| ParseError {
        line: e.line(),
        reason: e.to_string(),
    })
}

/// One entry of a capture `commands.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// A `#### step` marker.
    Step(String),
    /// A command with the result the real host gave.
    Command {
        line: usize,
        argv: Vec<String>,
        output: Output,
        /// The capture wrapper replaced a failure with success
        /// (`# FAKED-SUCCESS`): `output` is what the real tool printed.
        faked_success: bool,
    },
}

/// Parse a capture `commands.log`.
pub fn parse_log(text: &str) -> Result<Vec<LogEntry>, ParseError> {
    let mut out: Vec<LogEntry> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        if let Some(step) = raw.strip_prefix("#### ") {
            out.push(LogEntry::Step(step.to_string()));
            continue;
        }
        let last = out.iter_mut().rev().find_map(|e| match e {
            LogEntry::Command {
                output,
                faked_success,
                ..
            } => Some((output, faked_success)),
            LogEntry::Step(_) => None,
        });
        if let Some(rest) = raw.strip_prefix("#>") {
            let Some((o, _)) = last else {
                return Err(ParseError {
                    line: n + 1,
                    reason: "output before any command".into(),
                });
            };
            o.stdout.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            o.stdout.push('\n');
        } else if let Some(rest) = raw.strip_prefix("#!") {
            let Some((o, _)) = last else {
                return Err(ParseError {
                    line: n + 1,
                    reason: "output before any command".into(),
                });
            };
            o.stderr.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            o.stderr.push('\n');
        } else if let Some(rc) = raw.strip_prefix("# rc=") {
            let Some((o, _)) = last else {
                return Err(ParseError {
                    line: n + 1,
                    reason: "rc before any command".into(),
                });
            };
            o.status = rc.trim().parse().map_err(|_| ParseError {
                line: n + 1,
                reason: format!("bad rc `{rc}`"),
            })?;
        } else if raw.starts_with("# FAKED-SUCCESS") {
            if let Some((_, f)) = last {
                *f = true;
            }
        } else if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        } else {
            let argv = shell_words(raw).map_err(|reason| ParseError {
                line: n + 1,
                reason,
            })?;
            out.push(LogEntry::Command {
                line: n + 1,
                argv,
                output: Output::default(),
                faked_success: false,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn golden_rendering_matches_libvirt_shapes() {
        let argv = v(&[
            "iptables",
            "-w",
            "--table",
            "nat",
            "--insert",
            "LIBVIRT_PRT",
            "--source",
            "192.168.122.0/24",
            "!",
            "--destination",
            "192.168.122.0/24",
            "--jump",
            "MASQUERADE",
        ]);
        assert_eq!(
            render_argv(&argv),
            "iptables \\\n-w \\\n--table nat \\\n--insert LIBVIRT_PRT \\\n--source 192.168.122.0/24 '!' \\\n--destination 192.168.122.0/24 \\\n--jump MASQUERADE"
        );
        let tc = v(&["tc", "qdisc", "add", "dev", "virbr0"]);
        assert_eq!(render_argv(&tc), "tc \\\nqdisc \\\nadd \\\ndev \\\nvirbr0");
        let nft = v(&["nft", "-ae", "insert", "rule", "ip"]);
        assert_eq!(render_argv(&nft), "nft \\\n-ae insert \\\nrule \\\nip");
    }

    #[test]
    fn golden_round_trip() {
        let cmds = vec![
            Cmd::new(["iptables", "-w", "--source", "a b", "!", "-p", "udp"]),
            Cmd::new(["nft", "-ae", "insert", "{ x; }", "!="]),
        ];
        let text = render_golden(&cmds);
        let back = parse_golden(&text).unwrap();
        assert_eq!(back, vec![cmds[0].argv.to_vec(), cmds[1].argv.to_vec()]);
    }

    #[test]
    fn log_parse() {
        let text = "#### net-start\niptables -w -D X \\! -s 1 --ctstate ESTABLISHED\\,RELATED\n# rc=1\n#! iptables: Bad rule.\n#> out\n";
        let e = parse_log(text).unwrap();
        assert_eq!(e[0], LogEntry::Step("net-start".into()));
        match &e[1] {
            LogEntry::Command { argv, output, .. } => {
                assert_eq!(argv[4], "!");
                assert_eq!(argv[8], "ESTABLISHED,RELATED");
                assert_eq!(output.status, 1);
                assert_eq!(output.stderr, "iptables: Bad rule.\n");
                assert_eq!(output.stdout, "out\n");
            }
            other => panic!("{other:?}"),
        }
    }
}
