//! The engine's network operations and the container hooks.

use crate::container::Filters;
use crate::engine::{Engine, EngineResult};
use crate::model::container::ContainerRecord;
use crate::model::network::{EndpointSettings, NetworkingConfig};
use crate::runtime::spec::NetnsMode;

use super::{NetworkCreate, NetworkDetails};

/// Live network state the engine holds: the embedded DNS, the port
/// publisher (proxies), per-network IPAM locks.
#[derive(Default)]
pub struct NetworkState {}

impl Engine {
    pub(crate) fn create_network_impl(&self, _request: NetworkCreate) -> EngineResult<String> {
        todo!("network issue")
    }

    pub(crate) fn find_network_impl(&self, _id_or_name: &str) -> EngineResult<NetworkDetails> {
        todo!("network issue")
    }

    pub(crate) fn list_networks_impl(&self, _filters: &Filters) -> EngineResult<Vec<NetworkDetails>> {
        todo!("network issue")
    }

    pub(crate) fn remove_network_impl(&self, _id_or_name: &str) -> EngineResult<()> {
        todo!("network issue")
    }

    pub(crate) fn prune_networks_impl(&self, _filters: &Filters) -> EngineResult<Vec<String>> {
        todo!("network issue")
    }

    pub(crate) fn connect_network_impl(&self, _network: &str, _container: &str, _settings: EndpointSettings) -> EngineResult<()> {
        todo!("network issue")
    }

    pub(crate) fn disconnect_network_impl(&self, _network: &str, _container: &str, _force: bool) -> EngineResult<()> {
        todo!("network issue")
    }

    /// At daemon start, before containers are re-adopted: the predefined
    /// networks `bridge` (berth0, 172.17.0.0/16), `host` and `none` exist,
    /// and the default bridge's link and NAT are in place.
    pub(crate) fn init_networks(&self) -> EngineResult<()> {
        Ok(())
    }

    /// At create: resolves `HostConfig.NetworkMode` (default `bridge`) and
    /// `NetworkingConfig` into `record.networks`, validating what Docker
    /// validates (unknown network, `--ip` outside a user-defined subnet,
    /// aliases or links where they are not allowed, `-p` with host mode).
    /// Returns warnings. Writes nothing.
    pub(crate) fn plan_container_networks(
        &self,
        _record: &mut ContainerRecord,
        _networking: &NetworkingConfig,
    ) -> EngineResult<Vec<String>> {
        Ok(Vec::new())
    }

    /// At start, before the spec is built: the container's namespace
    /// (`<run>/netns/<id>`), an address per network, the drivers' join plans,
    /// published ports, DNS, `/etc/hosts` and `resolv.conf`. Fills the runtime
    /// fields of `record` (networks, ports, sandbox_key). All or nothing: on
    /// error everything it did is undone.
    pub(crate) fn setup_container_network(&self, record: &mut ContainerRecord) -> EngineResult<NetnsMode> {
        use crate::container::NetworkMode;
        use crate::model::container::Status;
        Ok(match crate::container::parse_network_mode(&record.host_config.network_mode)?.0 {
            NetworkMode::None => NetnsMode::New,
            NetworkMode::Host => NetnsMode::Host,
            NetworkMode::Container(other) => {
                let o = self.lookup_container(&other)?;
                if !matches!(o.state.status, Status::Running | Status::Paused) || o.state.pid <= 0 {
                    return Err(crate::engine::EngineError::Conflict(format!(
                        "cannot join network namespace of a non running container: {}",
                        o.id
                    )));
                }
                NetnsMode::Join(std::path::PathBuf::from(format!("/proc/{}/ns/net", o.state.pid)))
            }
        })
    }

    /// After the container's process is gone (exit, failed start, removal):
    /// undoes `setup_container_network` and clears the runtime fields.
    /// Idempotent; logs what it cannot undo.
    pub(crate) fn teardown_container_network(&self, _record: &mut ContainerRecord) {}

    /// At daemon start, for a container still running: re-opens its DNS
    /// sockets and port proxies (kernel state survived the daemon).
    pub(crate) fn readopt_container_network(&self, _record: &ContainerRecord) {}
}
