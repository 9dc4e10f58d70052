//! Tokens of the nft command language, with the source positions that error
//! messages point at.
//!
//! The real `nft` joins its argv with single spaces into one buffer (a "line")
//! or reads a file (`-f -`), then scans it. Error messages quote the line and
//! put carets under the offending token, so every token remembers its line and
//! byte columns.

/// What kind of token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A bare word: keyword, identifier, number, address, range …
    Word,
    /// A double-quoted string (text without the quotes).
    Quoted,
    LBrace,
    RBrace,
    Semi,
    Comma,
    /// `!=`
    Ne,
    /// `==`
    EqEq,
    /// End of a line (also the implicit end of a command-line buffer).
    Newline,
    /// End of the whole input.
    Eof,
}

/// A token with its place in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tok {
    pub kind: Kind,
    pub text: String,
    /// Index of the line in [`Source::lines`] (0-based).
    pub line: usize,
    /// Byte column of the first character (0-based).
    pub col: usize,
    /// Length in bytes (at least 1 for carets).
    pub len: usize,
}

impl Tok {
    pub fn is_word(&self, w: &str) -> bool {
        self.kind == Kind::Word && self.text == w
    }
    pub fn loc(&self) -> Loc {
        Loc {
            line: self.line,
            col: self.col,
            len: self.len.max(1),
        }
    }
    pub fn is_end(&self) -> bool {
        matches!(self.kind, Kind::Newline | Kind::Eof | Kind::Semi)
    }
}

/// A span in the input, used to print `^^^` under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Loc {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Loc {
    /// The span from `self` to the end of `other` (same line assumed).
    pub fn to(self, other: Loc) -> Loc {
        if other.line != self.line || other.col + other.len < self.col {
            return self;
        }
        Loc {
            line: self.line,
            col: self.col,
            len: other.col + other.len - self.col,
        }
    }
}

/// The input as nft sees it.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub lines: Vec<String>,
    /// `Some("/dev/stdin")` for `-f -`: messages then carry a
    /// `FILE:LINE:COL-COL: ` prefix.
    pub file: Option<String>,
}

impl Source {
    pub fn from_args(args: &[String]) -> Source {
        Source {
            lines: vec![args.join(" ")],
            file: None,
        }
    }
    pub fn from_file(name: &str, text: &str) -> Source {
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        if text.ends_with('\n') {
            lines.pop();
        }
        Source {
            lines,
            file: Some(name.to_string()),
        }
    }

    /// Render an error the way nft's `erec_print` does.
    pub fn error(&self, loc: Loc, msg: &str) -> String {
        self.error2(loc, None, msg)
    }

    /// Render an error with a secondary location (marked with `~`), as nft
    /// does for errors that involve two statements.
    pub fn error2(&self, loc: Loc, secondary: Option<Loc>, msg: &str) -> String {
        let mut out = String::new();
        if let Some(file) = &self.file {
            let first = loc.col + 1;
            let last = loc.col + loc.len.max(1);
            out.push_str(&format!("{}:{}:{}-{}: ", file, loc.line + 1, first, last));
        }
        out.push_str("Error: ");
        out.push_str(msg);
        out.push('\n');
        let line = self.lines.get(loc.line).map(String::as_str).unwrap_or("");
        out.push_str(line);
        out.push('\n');
        let bytes = line.as_bytes();
        let end = loc.col + loc.len.max(1);
        let mut marks: Vec<char> = (0..end)
            .map(|i| {
                if bytes.get(i) == Some(&b'\t') {
                    '\t'
                } else {
                    ' '
                }
            })
            .collect();
        if let Some(sec) = secondary.filter(|s| s.line == loc.line) {
            let send = sec.col + sec.len.max(1);
            if marks.len() < send {
                marks.resize(send, ' ');
            }
            for m in marks.iter_mut().take(send).skip(sec.col) {
                *m = '~';
            }
        }
        for m in marks.iter_mut().take(end).skip(loc.col) {
            *m = '^';
        }
        let text: String = marks.into_iter().collect();
        out.push_str(text.trim_end_matches(' '));
        out.push('\n');
        out
    }
}

fn is_word_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace() || matches!(b, b'{' | b'}' | b';' | b',' | b'"' | b'#' | b'=' | b'!'))
}

/// Scan the whole source into tokens. Quoted strings that do not end on their
/// line yield an `Err` with the location of the opening quote.
pub(crate) fn tokenize(src: &Source) -> Result<Vec<Tok>, (Loc, String)> {
    let mut toks = Vec::new();
    for (ln, line) in src.lines.iter().enumerate() {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b' ' || c == b'\t' || c == b'\r' {
                i += 1;
                continue;
            }
            if c == b'#' {
                break; // comment to end of line
            }
            let start = i;
            let (kind, text, end) = match c {
                b'{' => (Kind::LBrace, "{".to_string(), i + 1),
                b'}' => (Kind::RBrace, "}".to_string(), i + 1),
                b';' => (Kind::Semi, ";".to_string(), i + 1),
                b',' => (Kind::Comma, ",".to_string(), i + 1),
                b'!' if b.get(i + 1) == Some(&b'=') => (Kind::Ne, "!=".to_string(), i + 2),
                b'=' if b.get(i + 1) == Some(&b'=') => (Kind::EqEq, "==".to_string(), i + 2),
                b'"' => {
                    let mut j = i + 1;
                    while j < b.len() && b[j] != b'"' {
                        j += 1;
                    }
                    if j >= b.len() {
                        return Err((
                            Loc {
                                line: ln,
                                col: i,
                                len: b.len() - i,
                            },
                            "unterminated quoted string".to_string(),
                        ));
                    }
                    (Kind::Quoted, line[i + 1..j].to_string(), j + 1)
                }
                b'!' | b'=' => (Kind::Word, (c as char).to_string(), i + 1),
                _ => {
                    let mut j = i;
                    while j < b.len() && is_word_byte(b[j]) {
                        j += 1;
                    }
                    (Kind::Word, line[i..j].to_string(), j)
                }
            };
            toks.push(Tok {
                kind,
                text,
                line: ln,
                col: start,
                len: end - start,
            });
            i = end;
        }
        toks.push(Tok {
            kind: Kind::Newline,
            text: String::new(),
            line: ln,
            col: b.len(),
            len: 1,
        });
    }
    let (line, col) = match src.lines.last() {
        Some(l) => (src.lines.len() - 1, l.len()),
        None => (0, 0),
    };
    toks.push(Tok {
        kind: Kind::Eof,
        text: String::new(),
        line,
        col,
        len: 1,
    });
    Ok(toks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_punctuation() {
        let src = Source::from_args(&[
            "add".into(),
            "chain".into(),
            "{ type nat hook postrouting priority 100; }".into(),
            "!=".into(),
            "related,established".into(),
        ]);
        let t = tokenize(&src).unwrap();
        let kinds: Vec<_> = t
            .iter()
            .map(|t| (t.kind.clone(), t.text.as_str()))
            .collect();
        assert_eq!(kinds[2], (Kind::LBrace, "{"));
        assert!(kinds.contains(&(Kind::Semi, ";")));
        assert!(kinds.contains(&(Kind::Ne, "!=")));
        assert!(kinds.contains(&(Kind::Comma, ",")));
        assert_eq!(t.last().unwrap().kind, Kind::Eof);
    }

    #[test]
    fn caret_rendering() {
        let src = Source::from_args(&["list".into(), "table".into(), "ip".into(), "x".into()]);
        let e = src.error(
            Loc {
                line: 0,
                col: 14,
                len: 1,
            },
            "No such file or directory",
        );
        assert_eq!(
            e,
            "Error: No such file or directory\nlist table ip x\n              ^\n"
        );
    }
}
