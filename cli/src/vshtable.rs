//! virsh's tables (`vshTable`): a header row, a rule of dashes, then the
//! rows; every cell is preceded by one space and padded to its column's
//! width plus two spaces (not after the last cell); the rule is each
//! column's width plus three dashes. Control characters (and a backslash
//! followed by `x`) are shown as `\xNN`, as virsh does, so a hostname a DHCP
//! client chose cannot write terminal escapes. Widths count characters
//! (virsh counts display columns; they differ only for wide or zero-width
//! characters).

/// A cell as virsh shows it, and its width.
fn encode(s: &str) -> (String, usize) {
    let mut out = String::with_capacity(s.len());
    let mut width = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if (c == '\\' && chars.peek() == Some(&'x')) || c.is_ascii_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
            width += 4;
        } else if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
                width += 4;
            }
        } else {
            out.push(c);
            width += 1;
        }
    }
    (out, width)
}

/// Renders `header` and `rows` as virsh's `vshTablePrintToStdout` does
/// (`header` false: virsh `--quiet`, rows only).
pub fn render(columns: &[&str], rows: &[Vec<String>], header: bool) -> String {
    let encoded_head: Vec<(String, usize)> = columns.iter().map(|c| encode(c)).collect();
    let encoded: Vec<Vec<(String, usize)>> = rows
        .iter()
        .map(|r| r.iter().map(|c| encode(c)).collect())
        .collect();
    let mut max = vec![0usize; columns.len()];
    let all = encoded.iter().chain(header.then_some(&encoded_head));
    for row in all {
        for (i, (_, w)) in row.iter().enumerate().take(columns.len()) {
            max[i] = max[i].max(*w);
        }
    }
    let line = |row: &[(String, usize)], out: &mut String| {
        for (i, (text, w)) in row.iter().enumerate() {
            out.push(' ');
            out.push_str(text);
            if i + 1 < row.len() {
                out.extend(std::iter::repeat_n(' ', max[i] - w + 2));
            }
        }
        out.push('\n');
    };
    let mut out = String::new();
    if header {
        line(&encoded_head, &mut out);
        for m in &max {
            out.extend(std::iter::repeat_n('-', m + 3));
        }
        out.push('\n');
    }
    for row in &encoded {
        line(row, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_like_virsh() {
        let t = render(
            &["Name", "State"],
            &[vec!["default".into(), "active".into()]],
            true,
        );
        assert_eq!(
            t,
            " Name      State\n-------------------\n default   active\n"
        );
        assert_eq!(render(&["Name", "State"], &[], false), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        let t = render(&["A"], &[vec!["a\x1b[2Jb\\x".into()]], false);
        assert_eq!(t, " a\\x1b[2Jb\\x5cx\n");
    }
}
