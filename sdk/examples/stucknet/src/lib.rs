//! stucknet: a network plugin for the host's tests, the network-side peer
//! of `misbehave`. Its networks carry nothing (every plan is empty: no
//! links, so it needs no permission), and it hangs where a network's
//! `-o stuck=<call>` says: `join`, `leave` or `delete` write
//! `<data>/stuck-<call>` (so a test knows the call arrived) and spin until
//! the call's deadline ends them. A test uses it to show that a network plugin
//! stuck in a call holds up only the requests that use that network.
//!
//! What `-o stuck` said is kept at create in `<data>/networks/<id>`: every
//! call may run in a fresh instance.

use std::fs;
use std::path::PathBuf;

use berth_sdk::*;

/// The stucknet driver.
pub struct Stucknet {
    data: PathBuf,
}

/// The calls `-o stuck=` may name.
const STUCK_CALLS: [&str; 3] = ["join", "leave", "delete"];

impl NetworkDriver for Stucknet {
    fn new(ctx: PluginContext) -> DriverResult<Self> {
        let networks = ctx.data_dir.join("networks");
        fs::create_dir_all(&networks).map_err(|e| DriverError::io(networks.display(), e))?;
        Ok(Stucknet { data: ctx.data_dir })
    }

    fn create_network(&self, request: NetworkCreateRequest) -> DriverResult<NetworkPlan> {
        let stuck = request.options.get("stuck").cloned().unwrap_or_default();
        if !stuck.is_empty() && !STUCK_CALLS.contains(&stuck.as_str()) {
            return Err(DriverError::InvalidArgument(format!("stuck={stuck:?}: want one of {STUCK_CALLS:?}")));
        }
        let file = self.network_file(&request.network_id)?;
        fs::write(&file, stuck).map_err(|e| DriverError::io(file.display(), e))?;
        Ok(NetworkPlan::default())
    }

    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan> {
        self.maybe_stuck(network_id, "delete")?;
        let file = self.network_file(network_id)?;
        fs::remove_file(&file).map_err(|e| DriverError::io(file.display(), e))?;
        Ok(NetworkPlan::default())
    }

    fn create_endpoint(&self, request: EndpointCreateRequest) -> DriverResult<EndpointInfo> {
        self.maybe_stuck(&request.network_id, "")?;
        Ok(EndpointInfo { address: request.address, address_v6: None, mac_address: None })
    }

    fn delete_endpoint(&self, _network_id: &str, _endpoint_id: &str) -> DriverResult<()> {
        Ok(())
    }

    fn join(&self, request: JoinRequest) -> DriverResult<NetworkPlan> {
        self.maybe_stuck(&request.network_id, "join")?;
        Ok(NetworkPlan::default())
    }

    fn leave(&self, network_id: &str, _endpoint_id: &str) -> DriverResult<NetworkPlan> {
        self.maybe_stuck(network_id, "leave")?;
        Ok(NetworkPlan::default())
    }
}

impl Stucknet {
    fn network_file(&self, network_id: &str) -> DriverResult<PathBuf> {
        match !network_id.is_empty() && network_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            true => Ok(self.data.join("networks").join(network_id)),
            false => Err(DriverError::InvalidArgument(format!("bad network id {network_id:?}"))),
        }
    }

    /// NotFound for an unknown network; spins if the network is stuck in `call`.
    fn maybe_stuck(&self, network_id: &str, call: &str) -> DriverResult<()> {
        let file = self.network_file(network_id)?;
        let stuck = fs::read_to_string(&file).map_err(|_| DriverError::NotFound(format!("no network {network_id}")))?;
        if !call.is_empty() && stuck == call {
            let marker = self.data.join(format!("stuck-{call}"));
            fs::write(&marker, network_id).map_err(|e| DriverError::io(marker.display(), e))?;
            spin();
        }
        Ok(())
    }
}

/// Burns the call's time; `black_box` keeps the loop from being optimised into a trap.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

export_network_driver!(Stucknet);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_remember_where_they_are_stuck() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = Stucknet::new(PluginContext { data_dir: dir.path().into(), settings: Default::default() }).expect("new");
        let create = |id: &str, stuck: &str| {
            d.create_network(NetworkCreateRequest {
                network_id: id.into(),
                options: [("stuck".to_string(), stuck.to_string())].into(),
                ..Default::default()
            })
        };
        assert!(matches!(create("n1", "forever"), Err(DriverError::InvalidArgument(_))));
        assert!(matches!(create("../x", ""), Err(DriverError::InvalidArgument(_))));
        create("n1", "").expect("create");
        create("n2", "join").expect("create stuck");
        let join = JoinRequest { network_id: "n1".into(), endpoint_id: "e1".into(), ..Default::default() };
        assert_eq!(d.join(join).expect("join").actions, []);
        assert!(matches!(d.leave("n3", "e1"), Err(DriverError::NotFound(_))));
        // n2 is stuck in join only: the rest of its calls answer.
        d.leave("n2", "e1").expect("leave");
        d.delete_network("n2").expect("delete");
        d.delete_network("n1").expect("delete");
        assert!(matches!(d.delete_network("n1"), Err(DriverError::NotFound(_))));
    }
}
