//! A container's network mode, as `HostConfig.NetworkMode` asks for it and
//! as the runtime gets it.

use std::path::PathBuf;

use crate::error::{EngineError, EngineResult};

/// Which network a container's `NetworkMode` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    None,
    Host,
    /// `container:<name|id>`.
    Container(String),
    /// A network by name or ID: `bridge` (the default) or a user-defined one.
    Network(String),
}

/// Parses `NetworkMode`; empty and `default` mean the `bridge` network.
/// Whether a named network exists is checked at create.
pub fn parse_network_mode(mode: &str) -> EngineResult<NetworkMode> {
    match mode {
        "" | "default" | "bridge" => Ok(NetworkMode::Network("bridge".into())),
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        m => match m.strip_prefix("container:") {
            Some(c) if !c.is_empty() => Ok(NetworkMode::Container(c.to_string())),
            Some(_) => Err(EngineError::InvalidArgument("invalid container format container:<name|id>".into())),
            None => Ok(NetworkMode::Network(m.to_string())),
        },
    }
}

/// Which network namespace a container gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsMode {
    /// A new, empty namespace (`--network none`, and bridge networks later).
    New,
    /// The host's (`--network host`).
    Host,
    /// Join the namespace at this path (`container:<x>` or a prepared one).
    Join(PathBuf),
}
