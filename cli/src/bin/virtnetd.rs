//! `virtnetd`: the daemon.
fn main() {
    eprintln!("virtnetd: not implemented yet");
    std::process::exit(2);
}
