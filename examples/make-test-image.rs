//! Writes one of the end-to-end tests' images as an archive `berth load` reads.
//!
//! `cargo run --example make-test-image -- VARIANT OUT.tar`; `scripts/run` uses it
//! for the busybox image. The builder itself lives in tests/common/images.rs.

#[path = "../tests/common/images.rs"]
mod images;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [variant, out] = args.as_slice() else {
        eprintln!("usage: make-test-image VARIANT OUT.tar\nvariants: {}", images::VARIANTS.join(", "));
        return ExitCode::from(2);
    };
    match images::write_variant(variant, Path::new(out)) {
        Ok(()) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-test-image: cannot write {variant} to {out}: {e}");
            ExitCode::FAILURE
        }
    }
}
