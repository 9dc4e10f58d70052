//! libvirt's dry-run rendering of commands (`virCommandToStringBuf` with
//! `virBufferEscapeShell`), used for golden files and error messages, and a
//! parser that turns a golden file back into argument vectors.
//!
//! Golden format (linebreak mode): arguments are separated by a space; a
//! line break, written ` \` + newline, goes before every argument that starts
//! with `-`, and before every other argument unless an option was seen
//! earlier in the command and the previous argument or any later one starts
//! with `-`. Each command ends with a newline.

use std::borrow::Cow;

use crate::Cmd;

/// Characters that make [`escape_shell`] quote its argument.
const SHELL_SPECIAL: &[char] = &[
    '\r', '\t', '\n', ' ', '!', '"', '#', '$', '&', '\'', '(', ')', '*', ';', '<', '>', '?', '[',
    '\\', ']', '^', '`', '{', '|', '}', '~',
];

/// Quotes `s` for a POSIX shell exactly like libvirt: `''` for the empty
/// string, unchanged when it has no special character, else wrapped in single
/// quotes with each `'` written as `'\''`.
pub fn escape_shell(s: &str) -> Cow<'_, str> {
    if s.is_empty() {
        return Cow::Borrowed("''");
    }
    if !s.contains(SHELL_SPECIAL) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\'");
        }
        out.push(c);
    }
    out.push('\'');
    Cow::Owned(out)
}

/// How [`render_argv`] lays a command out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Golden-file layout: ` \` + newline between argument groups.
    pub linebreaks: bool,
    /// Print only the basename of `argv[0]`.
    pub strip_path: bool,
}

impl RenderOptions {
    /// The layout of libvirt's networkxml2firewalldata files.
    pub const GOLDEN: RenderOptions = RenderOptions {
        linebreaks: true,
        strip_path: true,
    };
    /// One line, program as given (libvirt's error messages and
    /// virfirewalltest expectations).
    pub const ONE_LINE: RenderOptions = RenderOptions {
        linebreaks: false,
        strip_path: false,
    };
}

/// `g_path_get_basename` semantics.
fn basename(path: &str) -> &str {
    if path.is_empty() {
        return ".";
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    match trimmed.rfind('/') {
        Some(pos) => &trimmed[pos + 1..],
        None => trimmed,
    }
}

/// Renders one argument vector (`argv[0]` = program) without a trailing
/// newline. An empty argv renders as "".
pub fn render_argv<S: AsRef<str>>(argv: &[S], opts: RenderOptions) -> String {
    let mut out = String::new();
    let Some((program, args)) = argv.split_first() else {
        return out;
    };
    let program = program.as_ref();
    let program = if opts.strip_path {
        basename(program)
    } else {
        program
    };
    out.push_str(&escape_shell(program));
    let is_opt = |s: &S| s.as_ref().starts_with('-');
    let mut had_option = false;
    for (i, arg) in args.iter().enumerate() {
        out.push(' ');
        if opts.linebreaks {
            let mut linebreak = true;
            if !is_opt(arg) {
                // `i` indexes `args`; the previous argument is args[i-1] or,
                // for the first argument, the program (which can only be an
                // "option" if it starts with '-', as in libvirt).
                let prev_is_opt = if i == 0 {
                    program.starts_with('-')
                } else {
                    is_opt(&args[i - 1])
                };
                if had_option && (prev_is_opt || args[i..].iter().any(is_opt)) {
                    linebreak = false;
                }
            } else {
                had_option = true;
            }
            if linebreak {
                out.push_str("\\\n");
            }
        }
        out.push_str(&escape_shell(arg.as_ref()));
    }
    out
}

/// Renders commands in execution order, each followed by a newline (libvirt's
/// dry-run buffer). Stdin is not part of the rendering.
pub fn render_stream<'a, I>(cmds: I, opts: RenderOptions) -> String
where
    I: IntoIterator<Item = &'a Cmd>,
{
    let mut out = String::new();
    for cmd in cmds {
        out.push_str(&render_argv(&cmd.argv, opts));
        out.push('\n');
    }
    out
}

/// A golden stream that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoldenParseError {
    #[error("line {line}: unterminated single quote")]
    UnterminatedQuote { line: usize },
    #[error("line {line}: a line of a command has no argument")]
    EmptyLine { line: usize },
    #[error("line {line}: the stream ends inside a command (last line ends with ' \\')")]
    DanglingContinuation { line: usize },
    #[error("line {line}: unexpected character {found:?} at column {column}")]
    Unexpected {
        line: usize,
        column: usize,
        found: char,
    },
}

impl GoldenParseError {
    /// The 1-based line the problem is on.
    pub fn line(&self) -> usize {
        match self {
            GoldenParseError::UnterminatedQuote { line }
            | GoldenParseError::EmptyLine { line }
            | GoldenParseError::DanglingContinuation { line }
            | GoldenParseError::Unexpected { line, .. } => *line,
        }
    }
}

/// Splits one line into shell words as [`escape_shell`] writes them: bare
/// words, `'...'` quoted parts and `\'` between quoted parts, separated by
/// single spaces.
fn split_words(line: &str, lineno: usize) -> Result<Vec<String>, GoldenParseError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        match c {
            ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                let mut closed = false;
                for (_, q) in chars.by_ref() {
                    if q == '\'' {
                        closed = true;
                        break;
                    }
                    cur.push(q);
                }
                if !closed {
                    return Err(GoldenParseError::UnterminatedQuote { line: lineno });
                }
            }
            '\\' => match chars.next() {
                Some((_, esc)) => {
                    in_word = true;
                    cur.push(esc);
                }
                None => {
                    return Err(GoldenParseError::Unexpected {
                        line: lineno,
                        column: line[..pos].chars().count() + 1,
                        found: c,
                    })
                }
            },
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parses a golden stream (either layout) back into argument vectors, one per
/// command. A command continues while its line ends with ` \`. Blank lines
/// between commands are ignored (an empty file has no command).
pub fn parse_stream(text: &str) -> Result<Vec<Vec<String>>, GoldenParseError> {
    let mut cmds = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut last_line = 0;
    for (idx, line) in text.split('\n').enumerate() {
        let lineno = idx + 1;
        last_line = lineno;
        let (body, continues) = match line.strip_suffix(" \\") {
            Some(body) => (body, true),
            None => (line, false),
        };
        if body.is_empty() && current.is_none() && !continues {
            continue;
        }
        let words = split_words(body, lineno)?;
        if words.is_empty() {
            return Err(GoldenParseError::EmptyLine { line: lineno });
        }
        current.get_or_insert_with(Vec::new).extend(words);
        if !continues {
            if let Some(cmd) = current.take() {
                cmds.push(cmd);
            }
        }
    }
    if current.is_some() {
        return Err(GoldenParseError::DanglingContinuation { line: last_line });
    }
    Ok(cmds)
}
