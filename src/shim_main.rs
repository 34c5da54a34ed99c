//! `berth-shim <state_dir>`: the shim as a binary of its own. It links no
//! CLI, no HTTP server and no async runtime, so its code, relocations and
//! heap stay a fraction of the `berth` binary's (the shim lives as long as
//! its container, one per container).

#[path = "shim.rs"]
mod shim;

fn main() -> std::process::ExitCode {
    shim::main(std::env::args_os().skip(1))
}
