//! berth-plugins: the plugin host. WebAssembly components (`wasm`) and native
//! dylibs (`dylib`) become volume and network drivers of `berth-model`'s traits
//! (`adapter`) — and a dylib may become the daemon's storage driver — their plans checked against the grant in `plugin.toml`
//! (`check`, `manifest`) before the engine executes anything; `manager`
//! installs, enables and loads them.
//!
//! This crate must never execute a plan itself, and never hand the engine a
//! plan it has not checked: the engine trusts what comes out of an adapter
//! as much as what comes out of an in-tree driver.

pub mod adapter;
pub mod backend;
pub mod check;
pub mod dylib;
pub mod manager;
pub mod manifest;
pub mod quota;
pub mod wasm;

pub use adapter::{PluginNetworkDriver, PluginStorageDriver, PluginVolumeDriver};
pub use backend::{Backend, LoadStats};
pub use manager::{read_manifest_from_dir, read_manifest_from_tar, InstallOptions, PluginInfo, PluginManager};
pub use manifest::{Kind, Manifest, Runtime};
pub use quota::DataLimit;

/// Errors of plugin management; the messages are what users see. The API
/// maps them to 404, 409, 400 and 500.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Internal(String),
}

impl PluginError {
    /// An I/O failure with what was being done.
    pub(crate) fn io(context: impl std::fmt::Display, e: std::io::Error) -> PluginError {
        PluginError::Internal(format!("{context}: {e}"))
    }
}
