//! `host`: the container shares the daemon's network namespace. There is
//! nothing to create; the engine runs such containers without a namespace.

use berth_core::drivers::{DriverResult, NetworkCapabilities, NetworkDriver};
use berth_core::model::network::{EndpointCreateRequest, EndpointInfo, JoinRequest, NetworkCreateRequest, NetworkPlan};

/// The `host` driver.
pub struct HostDriver;

impl NetworkDriver for HostDriver {
    fn name(&self) -> &str {
        "host"
    }

    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities::default()
    }

    fn create_network(&self, _request: &NetworkCreateRequest) -> DriverResult<NetworkPlan> {
        Ok(NetworkPlan::default())
    }

    fn delete_network(&self, _network_id: &str) -> DriverResult<NetworkPlan> {
        Ok(NetworkPlan::default())
    }

    fn create_endpoint(&self, _request: &EndpointCreateRequest) -> DriverResult<EndpointInfo> {
        Ok(EndpointInfo::default())
    }

    fn delete_endpoint(&self, _network_id: &str, _endpoint_id: &str) -> DriverResult<()> {
        Ok(())
    }

    fn join(&self, _request: &JoinRequest) -> DriverResult<NetworkPlan> {
        Ok(NetworkPlan::default())
    }

    fn leave(&self, _network_id: &str, _endpoint_id: &str) -> DriverResult<NetworkPlan> {
        Ok(NetworkPlan::default())
    }
}
