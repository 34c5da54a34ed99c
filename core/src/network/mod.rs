//! Networks: the networks service (create, inspect, list, remove, prune,
//! connect), IPAM, network namespaces, the plan executor, the embedded DNS,
//! published ports and each container's sandbox (ARCHITECTURE §5).
//!
//! Drivers decide, the host executes: a `NetworkDriver` returns a
//! `NetworkPlan`, `executor` applies it with netlink and nftables. In-tree
//! drivers (registered by the binary) and plugins go through the same path.

pub mod dns;
pub mod executor;
pub mod firewall;
pub mod ipam;
mod mode;
pub mod netns;
pub mod ports;
mod ops;
mod sandbox;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use berth_model::network::{Ipam, NetworkRecord};

use crate::catalog::ContainerCatalog;
use firewall::Firewall;
use crate::drivers::Drivers;
use crate::store::Store;
use ops::NetworkState;

pub use mode::{parse_network_mode, NetnsMode, NetworkMode};

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

/// The networks service: network records and IPAM (the store's
/// `networks` table, which only it writes), the drivers' plans and their
/// executor, published ports, the embedded DNS, and each container's
/// sandbox (`sandbox.rs`). The containers service calls it at create,
/// start, exit, removal and for `network connect`/`disconnect`.
pub struct NetworkService {
    store: Arc<Store>,
    /// Links, `container:` modes, who is attached; each container's directory.
    containers: ContainerCatalog,
    drivers: Arc<Drivers>,
    /// `--run`: network namespaces live in `<run>/netns`.
    run: PathBuf,
    state: NetworkState,
    /// Where published ports' and networks' NAT and filter rules go.
    firewall: Arc<dyn Firewall>,
    /// The `Arc` this service lives in, for the embedded DNS's lookups.
    me: Weak<NetworkService>,
}

impl NetworkService {
    pub(crate) fn new(store: Arc<Store>, containers: ContainerCatalog, drivers: Arc<Drivers>, run: PathBuf) -> Arc<Self> {
        Arc::new_cyclic(|me| NetworkService {
            store,
            containers,
            drivers,
            run,
            state: Default::default(),
            firewall: Arc::new(firewall::Nftables),
            me: me.clone(),
        })
    }
}
