//! Build script: records what `berth version` reports about the build
//! (git commit, compiler, build time), as Docker reports its Go version and commit.

use std::process::Command;

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = output_of(&rustc, &["--version"]).unwrap_or_else(|| "rustc (unknown version)".to_string());
    let commit = output_of("git", &["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    let built = chrono_free_now();
    println!("cargo:rustc-env=BERTH_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=BERTH_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=BERTH_BUILD_TIME={built}");
    // Re-run when the commit changes, not on every build.
    println!("cargo:rerun-if-changed=src/build.rs");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

/// The current UTC time as RFC 3339, without pulling a date crate into the build script.
fn chrono_free_now() -> String {
    output_of("date", &["-u", "+%Y-%m-%dT%H:%M:%S.000000000+00:00"]).unwrap_or_else(|| "unknown".to_string())
}
