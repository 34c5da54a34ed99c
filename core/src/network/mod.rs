//! Networks: IPAM, network namespaces, the plan executor, the embedded DNS,
//! published ports, and the engine's network operations (ARCHITECTURE §4).
//!
//! Drivers decide, the host executes: a `NetworkDriver` returns a
//! `NetworkPlan`, `executor` applies it with netlink and nftables. In-tree
//! drivers (registered by the binary) and plugins go through the same path.

pub mod dns;
pub mod executor;
pub mod firewall;
pub mod ipam;
pub mod netns;
pub mod ports;
mod ops;
mod sandbox;

use std::collections::BTreeMap;

use crate::container::Filters;
use crate::engine::{Engine, EngineResult};
use berth_model::network::{EndpointSettings, Ipam, NetworkRecord};

pub use ops::NetworkState;

/// Errors of the network machinery below the engine (netlink, nftables,
/// namespaces, sockets). The engine wraps them with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request failed.
    #[error("netlink: {context}: {message}")]
    Netlink { context: String, message: String },
    /// `nft` refused or failed a transaction.
    #[error("nftables: {0}")]
    Firewall(String),
    /// A host port is taken (Docker: "Bind for 0.0.0.0:80 failed: port is already allocated").
    #[error("{0}")]
    PortInUse(String),
    /// The plan or request is invalid (bad CIDR, unknown link, ...).
    #[error("{0}")]
    Invalid(String),
    /// No address left in a pool.
    #[error("{0}")]
    Exhausted(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl NetError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NetError::Io { context: context.into(), source }
    }
}

/// `POST /networks/create` (Docker's `NetworkCreateRequest`).
#[derive(Clone, Debug, Default)]
pub struct NetworkCreate {
    pub name: String,
    /// Empty means `bridge`.
    pub driver: String,
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// One container on a network, as `network inspect` lists it under `Containers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkContainer {
    pub name: String,
    pub endpoint_id: String,
    pub mac_address: String,
    /// CIDR form, e.g. `172.18.0.2/16`.
    pub ipv4_address: String,
    pub ipv6_address: String,
}

/// A network with what inspect adds to the stored record.
#[derive(Clone, Debug)]
pub struct NetworkDetails {
    pub record: NetworkRecord,
    /// Running containers on it, by container ID.
    pub containers: BTreeMap<String, NetworkContainer>,
}

impl Engine {
    /// `docker network create`: validates the name, driver, options and IPAM
    /// data (ip-range and gateway inside the subnet, no overlap with another
    /// network or a host route), picks a subnet from the pool when none is
    /// given, has the driver set it up. Returns the new network's ID.
    pub fn create_network(&self, request: NetworkCreate) -> EngineResult<String> {
        self.create_network_impl(request)
    }

    /// Finds a network by full ID, unique ID prefix or name.
    pub fn find_network(&self, id_or_name: &str) -> EngineResult<NetworkDetails> {
        self.find_network_impl(id_or_name)
    }

    /// `docker network ls` with Docker's filters (`driver`, `id`, `label`,
    /// `name`, `scope`, `type`, `dangling`).
    pub fn list_networks(&self, filters: &Filters) -> EngineResult<Vec<NetworkDetails>> {
        self.list_networks_impl(filters)
    }

    /// `docker network rm`: refuses predefined networks and networks with
    /// containers attached (Docker's messages).
    pub fn remove_network(&self, id_or_name: &str) -> EngineResult<()> {
        self.remove_network_impl(id_or_name)
    }

    /// `docker network prune`: removes unused user-defined networks; returns their names.
    pub fn prune_networks(&self, filters: &Filters) -> EngineResult<Vec<String>> {
        self.prune_networks_impl(filters)
    }

    /// `docker network connect`: attaches a container (running or not); a
    /// running one gets the interface at once. Refused for `host`, `none`
    /// and `container:` modes with Docker's message.
    pub fn connect_network(&self, network: &str, container: &str, settings: EndpointSettings) -> EngineResult<()> {
        self.connect_network_impl(network, container, settings)
    }

    /// `docker network disconnect [-f]`.
    pub fn disconnect_network(&self, network: &str, container: &str, force: bool) -> EngineResult<()> {
        self.disconnect_network_impl(network, container, force)
    }
}
