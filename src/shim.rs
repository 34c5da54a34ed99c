//! The per-container monitor process (ARCHITECTURE §3), started by the daemon
//! as `berth-shim <state_dir>`: a binary of its own (src/shim_main.rs) that
//! links only the shim and the runtime, so an idle shim stays small. `berth
//! shim <state_dir>` runs the same code from the big binary (dispatched
//! before the CLI parser), for a daemon whose directory has no `berth-shim`.
//! Everything the shim does lives in `berth_runtime::shim::run`.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// Runs the shim if the command line is `berth shim <state_dir>`; `None` for any other command.
#[allow(dead_code)] // used by the `berth` binary, not by `berth-shim`
pub fn dispatch() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "shim" {
        return None;
    }
    Some(main(args))
}

/// The shim's main, given the arguments after the program (or `shim`) name.
pub fn main(mut args: impl Iterator<Item = OsString>) -> ExitCode {
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: berth-shim <state_dir>");
        return ExitCode::from(125);
    };
    match berth_runtime::shim::run(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth shim: {e}");
            ExitCode::FAILURE
        }
    }
}
