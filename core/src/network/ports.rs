//! Published ports: kernel NAT rules (nftables, via the executor) plus a
//! userland proxy so `127.0.0.1:hostPort` works too.

use std::net::{IpAddr, Ipv4Addr};

use super::NetError;
use crate::model::network::FirewallRule;

/// One published port, as asked (`host_port` 0: pick a free one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRequest {
    /// `tcp` or `udp`.
    pub proto: String,
    /// `None`: every address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

/// One published port as set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedPort {
    pub proto: String,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// Parses Docker's `-p` forms: `80`, `8080:80`, `127.0.0.1:8080:80`,
/// `127.0.0.1::80`, `8000-8001:80-81`, each with `/tcp` or `/udp`.
/// Errors say what is wrong with which value.
pub fn parse_publish(_spec: &str) -> Result<Vec<PortRequest>, NetError> {
    todo!("network issue: ports")
}

/// The NAT rules (DNAT from the host port, plus hairpin/masquerade for
/// loopback) that publish `port`; the executor applies them.
pub fn nat_rules(_port: &PublishedPort) -> Vec<FirewallRule> {
    todo!("network issue: ports")
}

/// Userland proxies and port reservations of running containers.
#[derive(Default)]
pub struct PortPublisher {}

impl PortPublisher {
    /// Binds every requested host port (reserving it; a taken port is
    /// `NetError::PortInUse` with Docker's message and nothing stays bound),
    /// picks free ports for `host_port` 0, and starts a proxy per port to
    /// `container_ip`. Returns what was published.
    pub fn publish(&self, _container_id: &str, _container_ip: Ipv4Addr, _ports: &[PortRequest]) -> Result<Vec<PublishedPort>, NetError> {
        todo!("network issue: ports")
    }

    /// Re-creates the proxies of a running container after a daemon restart.
    pub fn readopt(&self, _container_id: &str, _ports: &[PublishedPort]) -> Result<(), NetError> {
        todo!("network issue: ports")
    }

    /// Stops the container's proxies and frees its ports.
    pub fn unpublish(&self, _container_id: &str) {
        todo!("network issue: ports")
    }
}
