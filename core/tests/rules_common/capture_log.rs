//! The capture `commands.log` format (`#### step`, commands with
//! backslash-escaped words, `#>` stdout, `#!` stderr, `# rc=N`,
//! `# FAKED-SUCCESS`), as the core tests read it. One file, included by the
//! `rules_*` integration tests (through `rules_common`) and by the firewall
//! unit tests (`src/firewall/tests/captures.rs`, by `#[path]`).

#![allow(dead_code)]

/// One logged command with what it printed and the status libvirt saw.
#[derive(Debug, Clone)]
pub struct Entry {
    pub argv: Vec<String>,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Splits a logged command line (backslash-escaped words) into its argv.
pub fn split_logged(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The sections (`#### name`) of a commands.log, in order.
pub fn parse_log(text: &str) -> Vec<(String, Vec<Entry>)> {
    let mut sections: Vec<(String, Vec<Entry>)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("#### ") {
            sections.push((name.to_string(), Vec::new()));
            continue;
        }
        let Some((_, entries)) = sections.last_mut() else {
            continue;
        };
        if let Some(out) = line.strip_prefix("#> ").or(line.strip_prefix("#>")) {
            if let Some(e) = entries.last_mut() {
                e.stdout.push_str(out);
                e.stdout.push('\n');
            }
        } else if let Some(err) = line.strip_prefix("#! ").or(line.strip_prefix("#!")) {
            if let Some(e) = entries.last_mut() {
                e.stderr.push_str(err);
                e.stderr.push('\n');
            }
        } else if let Some(rc) = line.strip_prefix("# rc=") {
            if let Some(e) = entries.last_mut() {
                e.status = rc.trim().parse().expect("numeric rc");
            }
        } else if line.starts_with("# FAKED-SUCCESS") {
            if let Some(e) = entries.last_mut() {
                e.status = 0;
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            entries.push(Entry {
                argv: split_logged(line),
                status: 0,
                stdout: String::new(),
                stderr: String::new(),
            });
        }
    }
    sections
}
