//! The embedded DNS server (hickory-proto): sockets at 127.0.0.11:53 inside
//! each container's namespace on a user-defined network; answers container
//! names, short IDs and aliases (round-robin), forwards the rest.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use super::NetError;

/// The address containers on user-defined networks use as their nameserver.
pub const DNS_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// What the DNS server asks the engine: the IPv4 addresses that `name`
/// (a container name, short or full ID, or alias; without a trailing dot,
/// lowercase) has for the container `asking` — only containers sharing a
/// user-defined network with it count. Empty when the name is not a container.
pub trait NameLookup: Send + Sync {
    fn lookup(&self, asking_container: &str, name: &str) -> Vec<Ipv4Addr>;
}

/// The embedded DNS server: one UDP and one TCP socket per attached
/// container, opened inside its namespace, served on the daemon's runtime.
pub struct DnsServer {}

impl DnsServer {
    /// A server answering from `lookup` and forwarding other names to
    /// `upstream` (the host's resolvers; empty means answer SERVFAIL at once).
    pub fn new(_lookup: Arc<dyn NameLookup>, _upstream: Vec<SocketAddr>) -> DnsServer {
        todo!("network issue: dns")
    }

    /// Starts answering inside the namespace at `netns` for `container_id`.
    /// Replaces an earlier attach of the same container.
    pub fn attach(&self, _container_id: &str, _netns: &Path) -> Result<(), NetError> {
        todo!("network issue: dns")
    }

    /// Stops answering for `container_id` and closes its sockets.
    pub fn detach(&self, _container_id: &str) {
        todo!("network issue: dns")
    }
}
