//! Network driver request types and the network plan (libnetwork's CNM remote
//! driver protocol, with the one berth twist: drivers return plans).
//!
//! A plan is data — links, addresses, routes, firewall rules — that the core's
//! executor checks against the driver's permissions and applies with netlink.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One IPAM pool of a network (`--subnet`, `--ip-range`, `--gateway`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpamPool {
    /// CIDR, e.g. `172.18.0.0/16`.
    pub subnet: String,
    /// Sub-range containers are allocated from, if narrower than the subnet.
    pub ip_range: Option<String>,
    /// Gateway address (no prefix).
    pub gateway: Option<String>,
}

/// `NetworkDriver.CreateNetwork`.
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

/// `NetworkDriver.CreateEndpoint`: addresses already chosen by IPAM.
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

/// `NetworkDriver.Join`: put the endpoint into a container's network namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinRequest {
    pub network_id: String,
    pub endpoint_id: String,
    /// Path of the sandbox's network namespace (`<run>/netns/<id>`).
    pub sandbox_key: String,
    /// Interface name the endpoint gets inside the sandbox (`eth0`, `eth1`, ...).
    pub interface_name: String,
    pub options: BTreeMap<String, String>,
}

/// Which network namespace a plan step acts in.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Netns {
    /// The engine's own namespace (the host, or the test sandbox).
    Host,
    /// The container's namespace named in the request.
    Sandbox,
}

/// The kinds of link a plan may create; each is a permission a plugin can be granted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkKind {
    Bridge,
    Veth { peer: String },
    Macvlan { parent: String, mode: String },
    Ipvlan { parent: String, mode: String },
    Vlan { parent: String, id: u16 },
    Vxlan { vni: u32, remote: Option<IpAddr>, dev: Option<String>, port: Option<u16> },
}

/// A NAT or filter rule, as data. The executor turns it into one nftables transaction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum FirewallRule {
    /// Masquerade traffic from `source` leaving through any interface but `out_not`.
    Masquerade { source: String, out_not: Option<String> },
    /// DNAT `host_ip:host_port/proto` to `container_ip:container_port`.
    PortForward { proto: String, host_ip: Option<String>, host_port: u16, container_ip: String, container_port: u16 },
    /// Drop traffic between two interfaces (network isolation).
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
    /// A sysctl the driver needs, e.g. `net.ipv4.ip_forward=1` (host) or
    /// `net.ipv6.conf.eth0.disable_ipv6=1` (sandbox).
    Sysctl { key: String, value: String, ns: Netns },
    AddFirewallRule { rule: FirewallRule },
    DeleteFirewallRule { rule: FirewallRule },
}

/// What a network driver returns for a request: steps the host executes in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkPlan {
    pub actions: Vec<NetAction>,
}

/// Docker's `IPAM.Config[]` entry as `network inspect` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfigEntry {
    pub subnet: String,
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// Docker's `IPAM` object of a network.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    /// Always `default` for in-tree IPAM.
    pub driver: String,
    pub options: Option<BTreeMap<String, String>>,
    pub config: Vec<IpamConfigEntry>,
}

/// A network as the metadata store keeps it (Docker's network resource
/// without the live `Containers` map, which inspect adds).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkRecord {
    pub name: String,
    /// 64 hex characters.
    pub id: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    /// `local`.
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    /// Driver options (`-o`).
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Docker's `EndpointIPAMConfig` (`--ip`, `--ip6`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address", skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address", skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
}

/// Docker's `EndpointSettings`: what the user asked for a container on one
/// network (on create/connect) and, once started, what it got.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    /// `--link` entries, `name:alias`.
    pub links: Option<Vec<String>>,
    /// `--network-alias` names.
    pub aliases: Option<Vec<String>>,
    pub mac_address: String,
    #[serde(rename = "DriverOpts")]
    pub driver_opts: Option<BTreeMap<String, String>>,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    /// Names the embedded DNS answers for this endpoint (API 1.44+).
    #[serde(rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
}

/// `NetworkingConfig` of `POST /containers/create`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    pub endpoints_config: BTreeMap<String, EndpointSettings>,
}

/// One host binding of a published port (`HostConfig.PortBindings` and
/// `NetworkSettings.Ports` values).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// Empty means every address (`0.0.0.0`).
    pub host_ip: String,
    /// Empty or `0` means a free port chosen by the engine.
    pub host_port: String,
}

/// `"80/tcp" -> bindings`, as Docker keys them. `None` (JSON `null`) in
/// `NetworkSettings.Ports` means exposed but not published.
pub type PortMap = BTreeMap<String, Option<Vec<PortBinding>>>;
