//! Output that never panics, and error text that cannot hide anything.
//!
//! `print!`/`println!` panic when standard output is a closed pipe
//! (`virtnet xml format F | true`: Rust ignores SIGPIPE, so the write fails
//! with EPIPE) and `eprintln!` panics likewise on a closed standard error.
//! Every line the binaries print goes through [`print()`] and [`err_line`]
//! instead: a reader that went away ends the process quietly, a full disk
//! is reported once.
//!
//! Error lines are shown with their control characters escaped
//! ([`escape_controls`]: ESC as `\x1b`, CR as `\r`, ...), so a network name
//! or attribute value carrying terminal escapes or a carriage return cannot
//! rewrite what the terminal shows; values put into messages here (file
//! names, names from the command line) are escaped with [`escape_value`],
//! which escapes line breaks too.
//!
//! Errors that point into a file all read `FILE:LINE:COL: message`
//! ([`file_error`], [`join_location`]).

// Not every binary uses every helper.
#![allow(dead_code)]

use std::io::{self, Write};
use std::path::Path;

/// Writes `text` to standard output. A reader that went away (EPIPE) ends
/// the process quietly with status 0: what was still to be printed was
/// not wanted. Any other write error (e.g. `> /dev/full`) is reported and
/// the process exits with status 1.
pub fn print(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        err_line(&format!("error: cannot write output: {e}"));
        std::process::exit(1);
    }
}

/// Writes `text` and a line break to standard error, control characters
/// other than line breaks escaped. A failing standard error is ignored
/// (there is nowhere left to report it).
pub fn err_line(text: &str) {
    let mut s = escape_controls(text);
    s.push('\n');
    let _ = io::stderr().lock().write_all(s.as_bytes());
}

fn push_escaped(c: char, out: &mut String) {
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
    }
}

/// `s` with every control character (C0, DEL, C1) except `\n` and `\t`
/// escaped: `\x1b`, `\r`, `\x7f`, `\u{9b}`.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            push_escaped(c, &mut out);
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` with every control character escaped, line breaks and tabs
/// included: for one value (a name, a path) inside a message.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            push_escaped(c, &mut out);
        } else {
            out.push(c);
        }
    }
    out
}

/// A path for a message: lossy UTF-8, control characters escaped.
pub fn path_text(p: &Path) -> String {
    escape_value(&p.to_string_lossy())
}

/// `FILE:LINE:COL: message`, or `FILE: message` when the position is not
/// known.
pub fn file_error(file: &str, pos: Option<(usize, usize)>, message: &str) -> String {
    match pos {
        Some((l, c)) => format!("{file}:{l}:{c}: {message}"),
        None => format!("{file}: {message}"),
    }
}

/// `message` of the form `LINE:COL: rest` (how definition errors read
/// without their file, e.g. from the driver or the daemon) becomes
/// `FILE:LINE:COL: rest`; any other message `FILE: message`.
pub fn join_location(file: &str, message: &str) -> String {
    let pos = (|| {
        let (l, rest) = message.split_once(':')?;
        let (c, rest) = rest.split_once(": ")?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(l) && digits(c)).then_some((l, c, rest))
    })();
    match pos {
        Some((l, c, rest)) => format!("{file}:{l}:{c}: {rest}"),
        None => format!("{file}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            escape_controls("a\x1b[2Jb\rc\nd\te\u{7f}\u{9b}"),
            "a\\x1b[2Jb\\rc\nd\te\\x7f\\u{9b}"
        );
        assert_eq!(escape_value("x\ny\tz\r"), "x\\ny\\tz\\r");
        assert_eq!(escape_controls("plain é"), "plain é");
    }

    #[test]
    fn locations_join_the_file() {
        assert_eq!(join_location("f.xml", "3:7: bad"), "f.xml:3:7: bad");
        assert_eq!(join_location("f.xml", "no position"), "f.xml: no position");
        assert_eq!(join_location("f.xml", "a:b: c"), "f.xml: a:b: c");
        assert_eq!(file_error("f", Some((1, 2)), "m"), "f:1:2: m".to_string());
        assert_eq!(file_error("f", None, "m"), "f: m".to_string());
    }
}
