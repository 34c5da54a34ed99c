//! Runtime primitives: the built-in OCI runtime (namespaces, rootfs,
//! pivot_root, /dev, masked paths, capabilities, rlimits, user), cgroups v1/v2,
//! the OCI spec builder, external runtimes (runc/crun), and the mount executor.
//!
//! The dangerous sequence lives in one ordered function (`linux`); nothing
//! here knows about the metadata store or the API.
//!
//! - `spec`: Docker's config + host config + image config -> OCI `Spec`.
//! - `linux`: the built-in runtime (`create`/`Created::start`/`exec`), with
//!   `rootfs` (mounts, /dev, pivot_root, masked paths), `caps`, `user`
//!   (passwd/group resolution) and `sync` (the typed parent/child channel).
//! - `seccomp`: Docker's profile format, the default profile, loading a filter.
//! - `cgroups`: one container's cgroup on v1, v2 or hybrid hosts.
//! - `external`: runc/crun driven through their CLI on the same spec.
//! - `mount`: the executor of drivers' mount plans.

pub mod caps;
pub mod cgroups;
pub mod external;
pub mod linux;
pub mod mount;
mod rootfs;
pub mod seccomp;
pub mod spec;
mod sync;
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
    /// The container process reported an error before exec (e.g. command not found).
    #[error("{0}")]
    Container(String),
    /// An external OCI runtime failed.
    #[error("{runtime}: {message}")]
    External { runtime: String, message: String },
}
