//! Names that reach commands or file names: interface names (the kernel's
//! `dev_valid_name()` plus the characters nft and the shell-free argv
//! still give a meaning to) and network names (which become file names).
//!
//! These are virtnet's refusals at parse time, so a definition, a config
//! file or a status file holding such a name is refused wherever it comes
//! from (define, load at daemon start, load of a status file), and no
//! command is ever built from it. libvirt checks neither: see README,
//! "Where virtnet is stricter than libvirt".

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
pub const IFNAME_MAX: usize = 15;

/// Why `name` cannot be an interface name, or `Ok`.
///
/// Kernel rule (`dev_valid_name()`): 1 to 15 bytes, not `.` or `..`, no
/// `/`, `:` or whitespace. virtnet's stricter rule, because the name
/// becomes a word of `nft` (and `iptables`, `ip`, `tc`) commands: no control
/// character, no `#`, `;`, `{`, `}`, `'`, `"` or `` ` ``, `\`, `$`.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Err("an interface name cannot be '.' or '..'".into());
    }
    if let Some(c) = name.chars().find(|c| bad_ifname_char(*c)) {
        return Err(format!(
            "an interface name cannot contain {}",
            describe_char(c)
        ));
    }
    if name.len() > IFNAME_MAX {
        return Err(format!(
            "an interface name has at most {IFNAME_MAX} bytes, this one has {}",
            name.len()
        ));
    }
    Ok(())
}

fn bad_ifname_char(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '/' | ':' | '#' | ';' | '{' | '}' | '\'' | '"' | '`' | '\\' | '$'
        )
}

/// Why `name` cannot be a network name (beyond libvirt's own `/` and
/// newline checks), or `Ok`: it must not start with `.` (`.`, `..` and
/// hidden files: the config file would never be found again) and must not
/// contain a control character (C0, DEL, C1; a CR cannot survive the XML
/// line-end normalization of the config file).
pub fn check_network_name(name: &str) -> Result<(), String> {
    if name.starts_with('.') {
        return Err(format!(
            "invalid network name '{}': it must not start with '.'",
            name.escape_debug()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("invalid char in name: {}", describe_char(c)));
    }
    Ok(())
}

/// `a space`, `';'`, `U+000D` ...
fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        c if c.is_whitespace() || c.is_control() => format!("U+{:04X}", u32::from(c)),
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for ok in [
            "eth0",
            "virbr0",
            "a",
            "enp0s31f6",
            "br-1.100",
            "x_y@z",
            "123456789012345",
            "virbr%d",
            "wlp2s0-ä",
        ] {
            assert_eq!(check_interface_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "eth0 ; flush ruleset",
            "a/b",
            "a:b",
            "a\tb",
            "a\nb",
            "a#b",
            "a;b",
            "a{",
            "}",
            "a'b",
            "a\"b",
            "a\u{7f}",
            "a\u{85}",
            "a\u{a0}",
            "$x",
            "a`b",
        ] {
            assert!(check_interface_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_interface_name("eth0 ; flush ruleset").unwrap_err(),
            "an interface name cannot contain a space"
        );
        assert_eq!(
            check_interface_name("1234567890123456").unwrap_err(),
            "an interface name has at most 15 bytes, this one has 16"
        );
    }

    #[test]
    fn network_names() {
        for ok in ["default", "a.b", "a..", "x y", "ü"] {
            assert_eq!(check_network_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            ".", "..", ".hidden", "a\rb", "a\tb", "a\u{7f}", "a\u{9b}", "a\nb",
        ] {
            assert!(check_network_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_network_name("a\rb").unwrap_err(),
            "invalid char in name: U+000D"
        );
    }
}
