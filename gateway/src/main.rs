//! The gateway binary: a placeholder until the gateway issue lands.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("gateway: not implemented yet (see the gateway issue)");
    std::process::exit(1);
}
