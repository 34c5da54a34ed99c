//! `berth shim <state_dir>`: the per-container monitor process (ARCHITECTURE
//! §3). Dispatched before the CLI parser runs, so the shim starts without
//! building the whole command tree and stays small; everything it does lives
//! in `berth_core::shim::run`.

use std::path::Path;
use std::process::ExitCode;

/// Runs the shim if the command line is `berth shim <state_dir>`; `None` for any other command.
pub fn dispatch() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "shim" {
        return None;
    }
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: berth shim <state_dir>");
        return Some(ExitCode::from(125));
    };
    match berth_core::shim::run(Path::new(&dir)) {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("berth shim: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}
