//! berth-runtime: what runs a container on the host. The built-in OCI
//! runtime (namespaces, rootfs, pivot_root, /dev, masked paths, capabilities,
//! rlimits, user), cgroups v1/v2, seccomp, external runtimes (runc/crun), the
//! mount executor, deferred deletion, and the per-container shim with its
//! protocol. The `berth-shim` binary links this crate and `berth-model` only.
//!
//! The dangerous sequence lives in one ordered function (`linux`); nothing
//! here knows about the metadata store, the engine or the API. Turning a
//! container record into an OCI spec is the engine's (`berth_core::container::spec`).
//!
//! - `oci`: the annotations berth puts in a spec for this runtime to read.
//! - `linux`: the built-in runtime (`create`/`Created::start`/`exec`), with
//!   `rootfs` (mounts, /dev, pivot_root, masked paths), `caps`, `user`
//!   (passwd/group resolution) and `sync` (the typed parent/child channel).
//! - `seccomp`: Docker's profile format, the default profile, loading a filter.
//! - `cgroups`: one container's cgroup on v1, v2 or hybrid hosts.
//! - `external`: runc/crun driven through their CLI on the same spec.
//! - `mount`: the executor of drivers' mount plans.
//! - `trash`: deferred deletion of layers and containers' dirs.
//! - `files`: files replaced whole (temp, fsync, rename); `clock`: Docker's timestamps.
//! - `shim`: one process per running container, and the daemon's client of it.

pub mod caps;
pub mod cgroups;
pub mod clock;
pub mod external;
pub mod files;
pub mod linux;
pub mod mount;
pub mod oci;
mod rootfs;
pub mod seccomp;
pub mod shim;
mod sync;
pub mod trash;
pub mod user;

/// Errors of the runtime. Messages name the step and the object that failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container's configuration cannot work (bad user, bad ulimit, ...): a 400.
    #[error("{0}")]
    InvalidConfig(String),
    /// A kernel call failed during the named step.
    #[error("{step}: {source}")]
    Sys {
        step: String,
        #[source]
        source: std::io::Error,
    },
    /// The user's command cannot run: not found (exit code 127) or not
    /// executable (126), the codes Docker records and the shell uses.
    #[error("{message}")]
    Command { message: String, exit_code: i32 },
    /// The container process reported another error before exec.
    #[error("{0}")]
    Container(String),
    /// An external OCI runtime failed.
    #[error("{runtime}: {message}")]
    External { runtime: String, message: String },
}

impl RuntimeError {
    /// 127 or 126 when the user's command cannot run; `None` for any other failure.
    pub fn command_exit_code(&self) -> Option<i32> {
        match self {
            RuntimeError::Command { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }
}
