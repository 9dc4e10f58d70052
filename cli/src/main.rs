//! `virtnet`: command-line front end.
#[allow(dead_code)] // used once `--connect` is wired (activation branch provides it)
mod client;

fn main() {
    eprintln!("virtnet: no commands yet");
    std::process::exit(2);
}
