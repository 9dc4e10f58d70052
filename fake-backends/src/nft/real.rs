//! Running command sequences against the real `nft` (and other real tools)
//! in ONE throw-away network namespace, for differential tests of the
//! simulator.
//!
//! All commands of a sequence run in the same fresh namespace created with
//! `unshare -n`, one after the other, through a generated `sh` script in
//! which every argument is single-quoted (no expansion of any argument);
//! each command's stdout, stderr and exit status are captured into files and
//! read back. Nothing outside the new namespace is touched.
//!
//! When the namespace cannot be created (not root, no `unshare`) or `nft`
//! is missing, the functions return [`Skip`] saying why, so a test can print
//! `skipped: <why>` instead of silently passing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use virtnet_runner::Output;

/// Why a real-host run could not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

/// One command for [`run_real_sequence`]: the full argv (program first) and
/// the optional standard input.
pub type RealCmd = (Vec<String>, Option<String>);

/// Run `nft ARGS` for every `(ARGS, stdin)` in one fresh network namespace.
pub fn run_real_nft_sequence(cmds: &[(Vec<String>, Option<String>)]) -> Result<Vec<Output>, Skip> {
    let full: Vec<RealCmd> = cmds
        .iter()
        .map(|(args, stdin)| {
            let mut argv = vec!["nft".to_string()];
            argv.extend(args.iter().cloned());
            (argv, stdin.clone())
        })
        .collect();
    run_real_sequence(&full)
}

/// Run arbitrary commands (e.g. `ip link add virbr0 type dummy` before the
/// nft commands) in one fresh network namespace; one [`Output`] per command.
pub fn run_real_sequence(cmds: &[RealCmd]) -> Result<Vec<Output>, Skip> {
    check_available()?;
    let dir = WorkDir::new().map_err(|e| Skip(format!("cannot create a work directory: {e}")))?;
    let mut script = String::from("cd \"$1\" || exit 99\n");
    for (i, (argv, stdin)) in cmds.iter().enumerate() {
        if argv.is_empty() {
            return Err(Skip(format!("command #{i} is empty")));
        }
        let input = match stdin {
            Some(text) => {
                let name = format!("{i}.in");
                std::fs::write(dir.path.join(&name), text)
                    .map_err(|e| Skip(format!("cannot write {name}: {e}")))?;
                name
            }
            None => "/dev/null".to_string(),
        };
        let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        script.push_str(&format!(
            "{} <{} >{i}.out 2>{i}.err; echo $? >{i}.rc\n",
            words.join(" "),
            quote(&input)
        ));
    }
    let script_path = dir.path.join("run.sh");
    std::fs::write(&script_path, script).map_err(|e| Skip(format!("cannot write script: {e}")))?;
    let status = Command::new("unshare")
        .arg("-n")
        .arg("--")
        .arg("sh")
        .arg(&script_path)
        .arg(&dir.path)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Skip(format!("cannot run unshare: {e}")))?;
    if !status.status.success() {
        return Err(Skip(format!(
            "unshare -n failed: {}",
            String::from_utf8_lossy(&status.stderr).trim()
        )));
    }
    let mut outs = Vec::with_capacity(cmds.len());
    for i in 0..cmds.len() {
        let read = |ext: &str| {
            std::fs::read(dir.path.join(format!("{i}.{ext}")))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| Skip(format!("missing result {i}.{ext}: {e}")))
        };
        let rc = read("rc")?;
        outs.push(Output {
            status: rc.trim().parse().unwrap_or(-1),
            stdout: read("out")?,
            stderr: read("err")?,
        });
    }
    Ok(outs)
}

/// Single-quote a word for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn check_available() -> Result<(), Skip> {
    let ns = Command::new("unshare")
        .args(["-n", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Skip(format!("unshare not available: {e}")))?;
    if !ns.status.success() {
        return Err(Skip(format!(
            "cannot create a network namespace (root needed): {}",
            String::from_utf8_lossy(&ns.stderr).trim()
        )));
    }
    let nft = Command::new("nft")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| Skip(format!("nft not available: {e}")))?;
    if !nft.success() {
        return Err(Skip("nft --version failed".to_string()));
    }
    Ok(())
}

/// A temporary directory removed on drop.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn new() -> std::io::Result<WorkDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "virtnet-real-nft-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos
        ));
        std::fs::create_dir(&path)?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new(&self.path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_words_intact() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(
            Skip("no root".into()).to_string(),
            "skipped: no root".to_string()
        );
    }
}
