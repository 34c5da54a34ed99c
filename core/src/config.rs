//! Where the engine keeps its state, as the daemon's flags give it.

use std::path::PathBuf;

use crate::registry::RegistryConfig;

/// Where the engine keeps its state.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Persistent state (`--root`, default `/var/lib/berth`).
    pub root: PathBuf,
    /// Runtime state (`--run`, default `/run/berth`).
    pub run: PathBuf,
    /// The berth binary, started as `berth shim` for each container.
    pub berth_exe: PathBuf,
    /// How registries are reached (`--insecure-registry`, mirrors, certs.d, limits).
    pub registries: RegistryConfig,
}

impl EngineConfig {
    /// A configuration with `root` and `run`, spawning shims from the running executable.
    pub fn new(root: PathBuf, run: PathBuf) -> EngineConfig {
        // Without /proc/self/exe the shim is looked up on $PATH as `berth`.
        let berth_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("berth"));
        EngineConfig { root, run, berth_exe, registries: RegistryConfig::default() }
    }
}
