//! What both plugin hosts (`wasm`, `dylib`) give the rest of the crate: one
//! way of calling into a plugin, the mapping of its errors, and what loading
//! it cost. The adapters and the manager build on this and never on a host's
//! own types, so the hosts do not depend on them.

use std::time::Duration;

use berth_model::drivers::{DriverError, DriverResult};
use serde_json::Value;

/// One way of calling into a plugin.
pub trait Backend: Send + Sync {
    /// Calls `method` (`<interface>.<function>` with the WIT's names, e.g.
    /// `volume-driver.mount`) with `args`, a JSON array of the function's
    /// arguments in WIT order (a `json` argument embedded as a value).
    /// Answers the function's value (`null` for nothing); a driver error of
    /// the plugin comes back mapped to `DriverError`, a failure of the plugin
    /// itself as `DriverError::Plugin`.
    fn call(&self, method: &str, args: Value) -> DriverResult<Value>;
}

/// Maps a plugin's `driver-error` (kind + message) to the core's error.
pub(crate) fn driver_error(plugin: &str, kind: &str, message: String) -> DriverError {
    match kind {
        "not_found" | "not-found" => DriverError::NotFound(message),
        "conflict" => DriverError::Conflict(message),
        "invalid_argument" | "invalid-argument" => DriverError::InvalidArgument(message),
        "unsupported" => DriverError::Unsupported(message),
        // `failed` and anything a newer plugin might invent.
        _ => DriverError::Plugin { plugin: plugin.to_string(), message },
    }
}

/// How long loading a plugin took, and whether a WASM component came from
/// the precompiled cache (for the benchmark).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadStats {
    pub plugin: String,
    pub duration: Duration,
    pub from_cache: bool,
}

/// `5s`, `2500ms`.
pub(crate) fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
