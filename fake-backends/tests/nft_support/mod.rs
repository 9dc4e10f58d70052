//! Helpers shared by the nft simulator tests: reading libvirt's golden
//! streams and the real-daemon command logs, and normalising volatile text.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/upstream")
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Split one line into words the way a POSIX shell would (single quotes,
/// double quotes, backslash escapes); no expansions.
pub fn split_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            ' ' | '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Commands of a libvirt test stream (`*.nftables`): one argv element (or an
/// option with its value) per line, continued with ` \`.
pub fn parse_stream(text: &str) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(l) = line.strip_suffix(" \\") {
            cur.push_str(l);
            cur.push(' ');
        } else {
            cur.push_str(line);
            if !cur.trim().is_empty() {
                cmds.push(split_words(&cur));
            }
            cur.clear();
        }
    }
    cmds
}

/// One command of a captured `commands.log` with what the real tool did.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub argv: Vec<String>,
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
    /// The `#### step` the command belongs to.
    pub step: String,
    pub line: usize,
}

pub fn parse_commands_log(text: &str) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    let mut step = String::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(s) = line.strip_prefix("#### ") {
            step = s.to_string();
        } else if let Some(rc) = line.strip_prefix("# rc=") {
            if let Some(last) = out.last_mut() {
                last.rc = rc.trim().parse().unwrap_or(-1);
            }
        } else if let Some(s) = line.strip_prefix("#>") {
            if let Some(last) = out.last_mut() {
                last.stdout.push_str(s.strip_prefix(' ').unwrap_or(s));
                last.stdout.push('\n');
            }
        } else if let Some(s) = line.strip_prefix("#!") {
            if let Some(last) = out.last_mut() {
                last.stderr.push_str(s.strip_prefix(' ').unwrap_or(s));
                last.stderr.push('\n');
            }
        } else if line.starts_with('#') || line.trim().is_empty() {
            // other annotations (FAKED-SUCCESS ...)
        } else {
            out.push(LogEntry {
                argv: split_words(line),
                rc: 0,
                stdout: String::new(),
                stderr: String::new(),
                step: step.clone(),
                line: n + 1,
            });
        }
    }
    out
}

/// Replace every `counter packets N bytes M` by zeros: captures saw traffic.
pub fn zero_counters(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let mut l = line.to_string();
        let mut from = 0;
        while let Some(i) = l[from..].find("counter packets ") {
            let start = from + i + "counter packets ".len();
            let rest = &l[start..];
            let n1 = rest.chars().take_while(char::is_ascii_digit).count();
            let after = &rest[n1..];
            if let Some(after_b) = after.strip_prefix(" bytes ") {
                let n2 = after_b.chars().take_while(char::is_ascii_digit).count();
                let tail = after_b[n2..].to_string();
                l = format!("{}0 bytes 0{}", &l[..start], tail);
            }
            from = start;
        }
        out.push_str(&l);
    }
    out
}

/// Replace the pid of `# new generation N by process PID (nft)`; with
/// `keep_generation == false` the generation number too.
pub fn normalize_generation(s: &str, keep_generation: bool) -> String {
    s.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("# new generation ") {
                let gen = rest.split(' ').next().unwrap_or("");
                if keep_generation {
                    format!("# new generation {gen} by process PID (nft)\n")
                } else {
                    "# new generation GEN by process PID (nft)\n".to_string()
                }
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

#[test]
fn split_words_handles_libvirt_quoting() {
    assert_eq!(
        split_words(r"nft add chain ip t f \{\ type\ nat\;\ \} related\,established \!="),
        vec![
            "nft",
            "add",
            "chain",
            "ip",
            "t",
            "f",
            "{ type nat; }",
            "related,established",
            "!="
        ]
    );
    assert_eq!(
        split_words("-ae insert '{ a; }' '!='"),
        vec!["-ae", "insert", "{ a; }", "!="]
    );
    assert_eq!(
        zero_counters("x counter packets 1 bytes 40 return\n"),
        "x counter packets 0 bytes 0 return\n"
    );
}
