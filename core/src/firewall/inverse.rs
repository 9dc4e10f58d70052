//! The inverse of a firewall command that created something: the ONE
//! derivation, used by the engine's auto-rollback ([`super::apply`]) and by
//! the driver's write-ahead journal (`driver::journal`, which adds its own
//! policy on top: private chains are kept, only nft rules are undone).
//!
//! | created | inverse |
//! |---|---|
//! | `iptables -w ... --insert/-I/--append/-A ...` | same with `--delete` |
//! | `nft [-ae] insert/add/create rule FAM TABLE CHAIN ...` echoing `# handle N` | `nft delete rule FAM TABLE CHAIN handle N` |
//! | `nft ... add chain FAM TABLE CHAIN` / `add table FAM TABLE` | `nft delete chain FAM TABLE handle N` / `nft delete table FAM handle N` |

/// iptables arguments that create a rule (replaced by `--delete` in the
/// inverse).
pub fn is_iptables_create(arg: &str) -> bool {
    matches!(arg, "--insert" | "-I" | "--append" | "-A")
}

fn is_nft_create(arg: &str) -> bool {
    matches!(arg, "insert" | "add" | "create")
}

/// The inverse of an iptables-family command, given and returned without
/// its binary: every creating option replaced by `--delete`; `None` when it
/// has none.
pub fn iptables_delete(args: &[String]) -> Option<Vec<String>> {
    if !args.iter().any(|a| is_iptables_create(a)) {
        return None;
    }
    Some(
        args.iter()
            .map(|a| {
                if is_iptables_create(a) {
                    "--delete".to_string()
                } else {
                    a.clone()
                }
            })
            .collect(),
    )
}

/// For nft arguments (without the binary): the index of the verb when they
/// create a rule, chain or table (so `-ae` must be given and an inverse
/// derived from the handle nft echoes), else `None`. Leading options are
/// skipped, but never the last argument.
pub fn nft_creation(args: &[String]) -> Option<usize> {
    if args.len() <= 1 {
        return None;
    }
    let mut i = 0;
    while i < args.len() - 1 && args[i].starts_with('-') {
        i += 1;
    }
    (i + 1 < args.len()
        && is_nft_create(&args[i])
        && matches!(args[i + 1].as_str(), "rule" | "chain" | "table"))
    .then_some(i)
}

/// The inverse of the nft creation `args` (without the binary) whose verb
/// is at `args[verb]` ([`nft_creation`]) and whose echo gave `handle`, also
/// without the binary: `delete OBJECT FAMILY [TABLE [CHAIN]] handle N` (the
/// table for a rule or a chain, the chain for a rule only — libvirt's
/// choice). Arguments past the end are absent in libvirt's NULL-terminated
/// list; they are skipped.
pub fn nft_delete(args: &[String], verb: usize, handle: &str) -> Vec<String> {
    let object = args.get(verb + 1).map(String::as_str).unwrap_or("");
    let mut inverse = Vec::with_capacity(7);
    inverse.push("delete".to_string());
    inverse.push(object.to_string());
    let mut push = |idx: usize| {
        if let Some(a) = args.get(idx) {
            inverse.push(a.clone());
        }
    };
    push(verb + 2);
    if object == "rule" || object == "chain" {
        push(verb + 3);
    }
    if object == "rule" {
        push(verb + 4);
    }
    inverse.push("handle".to_string());
    inverse.push(handle.to_string());
    inverse
}

const HANDLE_MARK: &str = "# handle ";

/// The first `# handle ` in `stdout` with the digits after it (`# handle
/// 12`), if it has digits. Most commands print nothing: a byte search for
/// '#' is cheaper than a substring searcher.
pub fn nft_handle_echo(stdout: &str) -> Option<&str> {
    let start = stdout
        .match_indices('#')
        .map(|(i, _)| i)
        .find(|&i| stdout[i..].starts_with(HANDLE_MARK))?;
    let digits = stdout[start + HANDLE_MARK.len()..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    (digits > 0).then(|| &stdout[start..start + HANDLE_MARK.len() + digits])
}

/// The digits right after the first `# handle ` in `stdout`, if any.
pub fn parse_nft_handle(stdout: &str) -> Option<&str> {
    nft_handle_echo(stdout).map(|echo| &echo[HANDLE_MARK.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn iptables_every_creating_option_becomes_delete() {
        assert_eq!(
            iptables_delete(&v(&["-w", "--table", "nat", "-A", "X", "-j", "RETURN"])),
            Some(v(&[
                "-w", "--table", "nat", "--delete", "X", "-j", "RETURN"
            ]))
        );
        assert_eq!(
            iptables_delete(&v(&["-w", "--insert", "X", "--comment", "-I"])),
            Some(v(&["-w", "--delete", "X", "--comment", "--delete"]))
        );
        assert_eq!(iptables_delete(&v(&["-w", "--list-rules"])), None);
    }

    #[test]
    fn nft_creations_and_their_inverses() {
        let args = v(&["insert", "rule", "ip", "t", "c", "counter", "accept"]);
        let k = nft_creation(&args).unwrap();
        assert_eq!(
            nft_delete(&args, k, "7"),
            v(&["delete", "rule", "ip", "t", "c", "handle", "7"])
        );
        let args = v(&["-ae", "add", "chain", "ip", "t", "c"]);
        let k = nft_creation(&args).unwrap();
        assert_eq!(k, 1);
        assert_eq!(
            nft_delete(&args, k, "3"),
            v(&["delete", "chain", "ip", "t", "handle", "3"])
        );
        let args = v(&["add", "table", "ip"]);
        assert_eq!(
            nft_delete(&args, 0, "1"),
            v(&["delete", "table", "ip", "handle", "1"])
        );
        assert_eq!(nft_creation(&v(&["list", "table", "ip", "t"])), None);
        assert_eq!(nft_creation(&v(&["add", "set", "ip", "t", "s"])), None);
        assert_eq!(nft_creation(&v(&["-a", "-e"])), None);
        assert_eq!(nft_creation(&v(&["add"])), None);
    }
}
