//! Plugin bodies: `GET /plugins` and `GET /plugins/{name}/json`, Docker's
//! `Plugin` object plus a `Berth` section with what Docker has no member
//! for, and `POST /plugins/{name}/set`. Members are in the order berth has
//! always sent them (alphabetical, as `json!` wrote them).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::null_as_default;

/// Docker's `Plugin` object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Plugin {
    pub berth: PluginBerth,
    pub config: PluginConfig,
    pub enabled: bool,
    #[serde(rename = "Id")]
    pub id: String,
    pub name: String,
    /// Always empty: berth plugins are not pulled from a registry.
    pub plugin_reference: String,
    pub settings: PluginSettings,
}

/// What berth knows of a plugin beyond Docker's members: its manifest's
/// runtime, contract, limits and permissions, and where it is installed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginBerth {
    /// The `berth:plugin` contract version, `MAJOR.MINOR`.
    pub contract: String,
    pub dir: String,
    pub entry: String,
    /// The manifest's `[limits]`, as the plugin manager reports them.
    pub limits: Value,
    /// The manifest's `[permissions]`, as the plugin manager reports them.
    pub permissions: Value,
    /// `wasm` or `dylib`.
    pub runtime: String,
    pub version: String,
}

/// `Settings`: the current values (`Env`, `KEY=VALUE`); berth plugins take
/// no mounts, args or devices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginSettings {
    #[serde(deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub devices: Vec<Value>,
    #[serde(deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub mounts: Vec<Value>,
}

/// `Config`: the plugin's description and the settings it declares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginConfig {
    pub args: PluginArgs,
    pub description: String,
    pub docker_version: String,
    pub documentation: String,
    #[serde(deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    /// The settings `plugin set` may change, with their defaults.
    #[serde(deserialize_with = "null_as_default")]
    pub env: Vec<PluginEnv>,
    pub interface: PluginInterface,
    pub ipc_host: bool,
    pub linux: PluginLinux,
    #[serde(deserialize_with = "null_as_default")]
    pub mounts: Vec<Value>,
    pub network: PluginNetwork,
    pub pid_host: bool,
    pub propagated_mount: String,
    pub user: PluginUser,
    pub work_dir: String,
}

/// `Config.Args`: berth plugins take none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginArgs {
    pub description: String,
    pub name: String,
    pub settable: Option<Vec<String>>,
    pub value: Option<Vec<String>>,
}

/// One declared setting (`Config.Env`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginEnv {
    pub description: String,
    pub name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub settable: Vec<String>,
    /// The default value.
    pub value: String,
}

/// `Config.Interface`: which Docker plugin protocols the plugin's drivers speak.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginInterface {
    pub protocol_scheme: String,
    pub socket: String,
    /// `docker.volumedriver/1.0`, `docker.networkdriver/1.0`, ...
    #[serde(deserialize_with = "null_as_default")]
    pub types: Vec<String>,
}

/// `Config.Linux`: berth plugins get no capabilities or devices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginLinux {
    pub allow_all_devices: bool,
    pub capabilities: Option<Vec<String>>,
    pub devices: Option<Vec<Value>>,
}

/// `Config.Network`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginNetwork {
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `Config.User`: always `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUser {}

/// `POST /plugins/{name}/set`: the settings to change, `KEY=VALUE` each,
/// as a bare JSON list (Docker's body has no object around it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PluginSetRequest(pub Vec<String>);
