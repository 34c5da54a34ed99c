//! Where the engine keeps its state, as the daemon's flags give it.

use std::path::PathBuf;

use crate::error::{EngineError, EngineResult};
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

/// Mode of the directories directly under `--root` and `--run`: the owner
/// (root) and its group may enter, others not. What is inside — layers with
/// setuid programs, containers' logs and root filesystems — must not be
/// reachable by local users without access to the socket (CVE-2021-41091;
/// dockerd 20.10.9 made `containers/` and `overlay2/` 0710 for it).
const PRIVATE_DIR_MODE: u32 = 0o710;
/// `volumes/`: entered by path only (as dockerd's 0701), never listed.
const VOLUMES_DIR_MODE: u32 = 0o701;
/// Files directly under `--root` (the metadata store).
const PRIVATE_FILE_MODE: u32 = 0o600;

impl EngineConfig {
    /// Makes every directory and file directly under `--root` and `--run`
    /// private to root (see `PRIVATE_DIR_MODE`), also those an older berth
    /// made world-readable. `--root` and `--run` themselves stay as the
    /// operator made them; the socket keeps its own mode.
    pub fn restrict_state_dirs(&self) -> EngineResult<()> {
        use std::os::unix::fs::PermissionsExt;
        for (dir, is_root) in [(&self.root, true), (&self.run, false)] {
            let entries = std::fs::read_dir(dir).map_err(|e| EngineError::io(format!("reading {}", dir.display()), e))?;
            for entry in entries {
                let entry = entry.map_err(|e| EngineError::io(format!("reading {}", dir.display()), e))?;
                let Ok(kind) = entry.file_type() else { continue };
                let mode = if kind.is_dir() {
                    if is_root && entry.file_name() == "volumes" { VOLUMES_DIR_MODE } else { PRIVATE_DIR_MODE }
                } else if kind.is_file() && is_root {
                    PRIVATE_FILE_MODE
                } else {
                    continue; // the socket, lock and pid files keep their modes
                };
                let path = entry.path();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| EngineError::io(format!("restricting {}", path.display()), e))?;
            }
        }
        Ok(())
    }

    /// A configuration with `root` and `run`, spawning shims from the running executable.
    pub fn new(root: PathBuf, run: PathBuf) -> EngineConfig {
        // Without /proc/self/exe the shim is looked up on $PATH as `berth`.
        let berth_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("berth"));
        EngineConfig { root, run, berth_exe, registries: RegistryConfig::default() }
    }
}
