//! `cargo xtask`: the project's only build script.
fn main() {
    eprintln!("xtask: no subcommands yet");
    std::process::exit(2);
}
