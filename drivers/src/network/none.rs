//! The drivers with nothing to set up: `null` (Docker's driver of the `none`
//! network: the container gets a namespace with only `lo`) and `host` (the
//! container shares the daemon's namespace; the engine runs it without one).
//! Both exist so `network ls` and `inspect` show the predefined networks with
//! a driver, as Docker does.

use berth_model::drivers::{DriverResult, NetworkCapabilities, NetworkDriver};
use berth_model::network::{EndpointCreateRequest, EndpointInfo, JoinRequest, NetworkCreateRequest, NetworkPlan};

/// A driver whose every call is a no-op, under the name it is registered as.
pub struct InertDriver(pub &'static str);

impl NetworkDriver for InertDriver {
    fn name(&self) -> &str {
        self.0
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
