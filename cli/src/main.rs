//! `virtnet`: command-line front end.
fn main() {
    eprintln!("virtnet: no commands yet");
    std::process::exit(2);
}
