//! Helpers of the plugin tests: the example plugins `scripts/build-plugins`
//! lays out under `target/plugins/`, copies of them with an edited
//! `plugin.toml`, and installing them into a sandbox's daemon.

use std::fs;
use std::path::{Path, PathBuf};

use super::Sandbox;

/// The ready-to-install plugin dir `target/plugins/<name>` (e.g. `snapvol-wasm`).
pub fn built_plugin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("plugins").join(name);
    assert!(
        dir.join("plugin.toml").is_file(),
        "{} is missing: run scripts/build-plugins first (scripts/test does)",
        dir.display()
    );
    dir
}

/// A copy of built plugin `name` in the sandbox's files, with `edit` applied
/// to its `plugin.toml` text.
pub fn edited_plugin(sb: &Sandbox, name: &str, copy: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let from = built_plugin(name);
    let to = sb.file(copy);
    fs::create_dir_all(&to).expect("creating the plugin copy");
    for entry in fs::read_dir(&from).expect("reading the built plugin") {
        let entry = entry.expect("reading the built plugin");
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copying the built plugin");
        }
    }
    let manifest = fs::read_to_string(to.join("plugin.toml")).expect("reading plugin.toml");
    fs::write(to.join("plugin.toml"), edit(manifest)).expect("writing plugin.toml");
    to
}

/// `berth plugin install --grant-all-permissions DIR [extra...]`.
pub fn install(sb: &Sandbox, dir: &Path, extra: &[&str]) -> String {
    let dir = dir.display().to_string();
    let mut args = vec!["plugin", "install", "--grant-all-permissions"];
    args.extend_from_slice(extra);
    args.push(&dir);
    sb.berth_ok(&args)
}
