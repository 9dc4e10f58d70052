//! The capture `commands.log`, as the core integration tests replay it:
//! sections (`#### step`) of commands with the outputs libvirt saw. The
//! format has one reader, `virtnet_fake::record::parse_log`; this groups its
//! entries by section and gives a command the capture wrapper made succeed
//! (`# FAKED-SUCCESS`) the status libvirt saw, 0.

#![allow(dead_code)]

use virtnet_fake::record::LogEntry;

/// One logged command with what it printed and the status libvirt saw.
#[derive(Debug, Clone)]
pub struct Entry {
    pub argv: Vec<String>,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The sections (`#### name`) of a commands.log, in order (commands
/// before the first marker are not in any section). Panics on a malformed
/// log: the captures are the tests' own data.
pub fn parse_log(text: &str) -> Vec<(String, Vec<Entry>)> {
    let entries = virtnet_fake::record::parse_log(text)
        .unwrap_or_else(|e| panic!("malformed commands.log: {e}"));
    let mut sections: Vec<(String, Vec<Entry>)> = Vec::new();
    for e in entries {
        match e {
            LogEntry::Step(name) => sections.push((name, Vec::new())),
            LogEntry::Command {
                argv,
                output,
                faked_success,
                ..
            } => {
                if let Some((_, list)) = sections.last_mut() {
                    list.push(Entry {
                        argv,
                        status: if faked_success { 0 } else { output.status },
                        stdout: output.stdout,
                        stderr: output.stderr,
                    });
                }
            }
        }
    }
    sections
}
