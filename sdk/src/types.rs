//! The documents that cross the plugin boundary, as JSON (the WIT's `json`
//! values and the dylib ABI's payloads). Their JSON is exactly the JSON of the
//! engine's own model types (`berth_core::model`); the plugin host's tests
//! check that, so a plugin and the host never disagree on a field.
//!
//! Paths are strings in the plugin's own view: under `/data` for a WASM
//! plugin, under `PluginContext::data_dir` for a dylib.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether a driver's objects are visible on this host only or cluster-wide.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Local,
    Global,
}

/// `VolumeDriver.Capabilities`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeCapabilities {
    pub scope: Scope,
}

/// `VolumeDriver.Create`: a new volume with the driver's options (`--opt`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeCreateRequest {
    pub name: String,
    pub options: BTreeMap<String, String>,
}

/// `VolumeDriver.Get`/`List` answer for one volume.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    /// Where the volume's data is, in the plugin's view, if the driver says.
    pub mountpoint: Option<String>,
    /// RFC 3339 creation time, if the driver knows it.
    pub created_at: Option<String>,
    /// Driver-specific status shown by `volume inspect` (`Status`).
    pub status: BTreeMap<String, String>,
}

/// One filesystem the host should mount for a container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountSpec {
    /// Overlay: read-only lower dirs (top-most first) and, when writable, an upper/work pair.
    Overlay { lower: Vec<String>, upper: Option<String>, work: Option<String> },
    /// A bind mount of a directory the plugin owns (under its data dir).
    Bind { source: String, readonly: bool },
    /// A tmpfs with mount(2) data options such as `size=64m,mode=1777`.
    Tmpfs { options: String },
    /// Any other mount(2) call.
    Filesystem { fstype: String, device: String, options: String },
}

/// What a volume driver returns for `mount`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountPlan {
    pub spec: MountSpec,
}

/// How one path differs between a layer and its parent (`docker diff`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
}

/// One entry of a storage driver's `changes`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Change {
    /// Absolute path inside the layer, e.g. `/etc/hosts`.
    pub path: String,
    pub kind: ChangeKind,
}

/// What a network driver can do (libnetwork `GetCapabilities`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkCapabilities {
    pub scope: Scope,
    pub connectivity_scope: Scope,
}

/// One IPAM pool of a network (`--subnet`, `--ip-range`, `--gateway`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpamPool {
    /// CIDR, e.g. `172.18.0.0/16`.
    pub subnet: String,
    pub ip_range: Option<String>,
    /// Gateway address (no prefix).
    pub gateway: Option<String>,
}

/// `CreateNetwork`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkCreateRequest {
    pub network_id: String,
    pub name: String,
    pub ipv4: Vec<IpamPool>,
    pub ipv6: Vec<IpamPool>,
    /// Driver options (`-o key=value`).
    pub options: BTreeMap<String, String>,
    pub internal: bool,
}

/// `CreateEndpoint`: the addresses the host's IPAM chose.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointCreateRequest {
    pub network_id: String,
    pub endpoint_id: String,
    /// Address with prefix, e.g. `172.18.0.2/16`.
    pub address: Option<String>,
    pub address_v6: Option<String>,
    pub mac_address: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// What the driver says about an endpoint it created.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointInfo {
    pub address: Option<String>,
    pub address_v6: Option<String>,
    pub mac_address: Option<String>,
}

/// `Join`: put the endpoint into a container's network namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinRequest {
    pub network_id: String,
    pub endpoint_id: String,
    /// The sandbox's namespace path (informational; plan steps say `Sandbox`).
    pub sandbox_key: String,
    /// Interface name inside the sandbox (`eth0`, `eth1`, ...).
    pub interface_name: String,
    pub options: BTreeMap<String, String>,
}

/// Which network namespace a plan step acts in.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Netns {
    /// The engine's own namespace.
    Host,
    /// The container's namespace of the request.
    Sandbox,
}

/// The kinds of link a plan may create; each is a permission (`links` in `plugin.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkKind {
    Bridge,
    Veth { peer: String },
    Macvlan { parent: String, mode: String },
    Ipvlan { parent: String, mode: String },
    Vlan { parent: String, id: u16 },
    Vxlan { vni: u32, remote: Option<String>, dev: Option<String>, port: Option<u16> },
}

/// A NAT or filter rule (`firewall` permission).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum FirewallRule {
    Masquerade { source: String, out_not: Option<String> },
    PortForward { proto: String, host_ip: Option<String>, host_port: u16, container_ip: String, container_port: u16 },
    Isolate { from_iface: String, to_iface: String },
}

/// One step of a network plan.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NetAction {
    CreateLink { name: String, link: LinkKind, ns: Netns, mtu: Option<u32>, mac_address: Option<String> },
    DeleteLink { name: String, ns: Netns },
    /// Move a link from the host into the sandbox, renaming it there.
    MoveToSandbox { name: String, rename_to: String },
    /// Attach a link to a bridge (both in the host namespace).
    SetMaster { name: String, master: String },
    /// Add `address` (CIDR form) to a link.
    AddAddress { link: String, address: String, ns: Netns },
    SetUp { link: String, ns: Netns },
    /// A route; `gateway: None` is a link-scope route through `link`.
    AddRoute { destination: String, gateway: Option<String>, link: Option<String>, ns: Netns },
    /// A sysctl (`sysctls` permission).
    Sysctl { key: String, value: String, ns: Netns },
    AddFirewallRule { rule: FirewallRule },
    DeleteFirewallRule { rule: FirewallRule },
}

/// What a network driver returns: steps the host executes in order, all or nothing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkPlan {
    pub actions: Vec<NetAction>,
}

/// A driver's failure, as the WIT `driver-error` and the dylib ABI carry it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum DriverError {
    /// 404: no such volume, network or endpoint.
    #[error("{0}")]
    NotFound(String),
    /// 409: exists already, or in use.
    #[error("{0}")]
    Conflict(String),
    /// 400: bad options or request.
    #[error("{0}")]
    InvalidArgument(String),
    /// The driver cannot do this here.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else that failed inside the plugin.
    #[error("{0}")]
    Failed(String),
}

impl DriverError {
    /// A failed filesystem call, with what was being done.
    pub fn io(context: impl std::fmt::Display, e: std::io::Error) -> Self {
        DriverError::Failed(format!("{context}: {e}"))
    }
}

/// Result of a driver call.
pub type DriverResult<T> = Result<T, DriverError>;
