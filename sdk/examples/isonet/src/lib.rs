//! isonet: a berth network plugin for isolated networks. Each network is a
//! bridge `ib-<network id[..12]>` with no address of its own: containers on
//! it reach each other and nothing else (no gateway, no NAT, no firewall
//! rules, hence no permission beyond `links = ["bridge", "veth"]`).
//!
//! Every call may run in a fresh instance, so what `join` needs later is
//! written at `create_endpoint` to `<data>/endpoints/<id>.json`; networks
//! are recorded in `<data>/networks/<id>` so endpoints on unknown networks
//! are refused.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_sdk::*;
use serde::{Deserialize, Serialize};

/// The isonet driver.
pub struct Isonet {
    data: PathBuf,
}

/// What `join` needs to know about an endpoint.
#[derive(Serialize, Deserialize)]
struct Endpoint {
    network_id: String,
    address: String,
}

impl NetworkDriver for Isonet {
    fn new(ctx: PluginContext) -> DriverResult<Self> {
        for dir in ["networks", "endpoints"] {
            let path = ctx.data_dir.join(dir);
            fs::create_dir_all(&path).map_err(|e| DriverError::io(path.display(), e))?;
        }
        Ok(Isonet { data: ctx.data_dir })
    }

    fn create_network(&self, request: NetworkCreateRequest) -> DriverResult<NetworkPlan> {
        let bridge = bridge_name(&request.network_id)?;
        write_atomic(&self.network_file(&request.network_id), bridge.as_bytes())?;
        Ok(NetworkPlan {
            actions: vec![
                NetAction::CreateLink {
                    name: bridge.clone(),
                    link: LinkKind::Bridge,
                    ns: Netns::Host,
                    mtu: None,
                    mac_address: None,
                },
                NetAction::SetUp { link: bridge, ns: Netns::Host },
            ],
        })
    }

    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan> {
        let bridge = bridge_name(network_id)?;
        let file = self.network_file(network_id);
        match fs::remove_file(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DriverError::NotFound(format!("no network {network_id}")));
            }
            other => other.map_err(|e| DriverError::io(file.display(), e))?,
        }
        // Deleting the bridge detaches whatever veths are still on it.
        Ok(NetworkPlan { actions: vec![NetAction::DeleteLink { name: bridge, ns: Netns::Host }] })
    }

    fn create_endpoint(&self, request: EndpointCreateRequest) -> DriverResult<EndpointInfo> {
        veth_names(&request.endpoint_id)?;
        let address = request
            .address
            .ok_or_else(|| DriverError::InvalidArgument("isonet needs an IPv4 address for every endpoint".into()))?;
        check_cidr(&address)?;
        if !self.network_file(&request.network_id).exists() {
            return Err(DriverError::NotFound(format!("no network {}", request.network_id)));
        }
        let record = Endpoint { network_id: request.network_id, address: address.clone() };
        let bytes = serde_json::to_vec(&record).map_err(|e| DriverError::Failed(e.to_string()))?;
        write_atomic(&self.endpoint_file(&request.endpoint_id), &bytes)?;
        // The MAC is the kernel's choice: the plans set none.
        Ok(EndpointInfo { address: Some(address), address_v6: None, mac_address: None })
    }

    fn delete_endpoint(&self, _network_id: &str, endpoint_id: &str) -> DriverResult<()> {
        veth_names(endpoint_id)?;
        match fs::remove_file(self.endpoint_file(endpoint_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DriverError::io("deleting endpoint", e)),
            _ => Ok(()),
        }
    }

    fn join(&self, request: JoinRequest) -> DriverResult<NetworkPlan> {
        let (host, peer) = veth_names(&request.endpoint_id)?;
        let file = self.endpoint_file(&request.endpoint_id);
        let bytes =
            fs::read(&file).map_err(|_| DriverError::NotFound(format!("no endpoint {}", request.endpoint_id)))?;
        let endpoint: Endpoint =
            serde_json::from_slice(&bytes).map_err(|e| DriverError::Failed(format!("{}: {e}", file.display())))?;
        let bridge = bridge_name(&endpoint.network_id)?;
        let inside = request.interface_name;
        if inside.is_empty() || inside.len() > 15 || inside.contains('/') {
            return Err(DriverError::InvalidArgument(format!("bad interface name {inside:?}")));
        }
        Ok(NetworkPlan {
            actions: vec![
                NetAction::CreateLink {
                    name: host.clone(),
                    link: LinkKind::Veth { peer: peer.clone() },
                    ns: Netns::Host,
                    mtu: None,
                    mac_address: None,
                },
                NetAction::SetMaster { name: host.clone(), master: bridge },
                NetAction::SetUp { link: host, ns: Netns::Host },
                NetAction::MoveToSandbox { name: peer, rename_to: inside.clone() },
                NetAction::AddAddress { link: inside.clone(), address: endpoint.address, ns: Netns::Sandbox },
                NetAction::SetUp { link: inside, ns: Netns::Sandbox },
            ],
        })
    }

    fn leave(&self, _network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan> {
        // Deleting the host end deletes the pair, wherever the other end is.
        let (host, _) = veth_names(endpoint_id)?;
        Ok(NetworkPlan { actions: vec![NetAction::DeleteLink { name: host, ns: Netns::Host }] })
    }
}

impl Isonet {
    fn network_file(&self, network_id: &str) -> PathBuf {
        self.data.join("networks").join(network_id)
    }
    fn endpoint_file(&self, endpoint_id: &str) -> PathBuf {
        self.data.join("endpoints").join(format!("{endpoint_id}.json"))
    }
}

/// Ids name links and files: only ASCII letters and digits, long enough to shorten.
fn id_prefix(id: &str, len: usize) -> DriverResult<&str> {
    match id.len() >= len && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        true => Ok(&id[..len]),
        false => Err(DriverError::InvalidArgument(format!("bad id {id:?}: want {len}+ ASCII letters or digits"))),
    }
}

/// `ib-` and 12 characters of the network id: 15, the kernel's limit.
fn bridge_name(network_id: &str) -> DriverResult<String> {
    Ok(format!("ib-{}", id_prefix(network_id, 12)?))
}

/// The host end `vi…` and the container end `vp…` of an endpoint's veth pair.
fn veth_names(endpoint_id: &str) -> DriverResult<(String, String)> {
    let short = id_prefix(endpoint_id, 11)?;
    Ok((format!("vi{short}"), format!("vp{short}")))
}

fn check_cidr(text: &str) -> DriverResult<()> {
    let bad = || DriverError::InvalidArgument(format!("bad address {text:?}: want ADDRESS/PREFIX"));
    let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
    let max = if ip.parse::<IpAddr>().map_err(|_| bad())?.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(()),
        _ => Err(bad()),
    }
}

/// Temp file and rename: a crash never leaves a half-written record.
fn write_atomic(path: &Path, bytes: &[u8]) -> DriverResult<()> {
    let temp = path.with_extension("tmp");
    fs::write(&temp, bytes).and_then(|()| fs::rename(&temp, path)).map_err(|e| DriverError::io(path.display(), e))
}

export_network_driver!(Isonet);

#[cfg(test)]
mod tests {
    use berth_sdk::conformance::{check_network_driver, FreshEachCall};

    use super::*;

    fn ctx(dir: &Path) -> PluginContext {
        PluginContext { data_dir: dir.into(), settings: Default::default() }
    }

    #[test]
    fn passes_the_conformance_kit_rebuilt_for_every_call() {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Err(f) = check_network_driver(&FreshEachCall::<Isonet>::new(ctx(dir.path()))) {
            panic!("{f}");
        }
    }

    #[test]
    fn plans_are_the_isolated_bridge() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = Isonet::new(ctx(dir.path())).expect("new");
        let (net, ep) = ("0123456789abcdef".repeat(4), "fedcba9876543210".repeat(4));
        let created =
            d.create_network(NetworkCreateRequest { network_id: net.clone(), ..Default::default() }).expect("create");
        assert_eq!(
            created.actions,
            [
                NetAction::CreateLink {
                    name: "ib-0123456789ab".into(),
                    link: LinkKind::Bridge,
                    ns: Netns::Host,
                    mtu: None,
                    mac_address: None
                },
                NetAction::SetUp { link: "ib-0123456789ab".into(), ns: Netns::Host },
            ]
        );
        let endpoint = |address: Option<&str>| EndpointCreateRequest {
            network_id: net.clone(),
            endpoint_id: ep.clone(),
            address: address.map(str::to_string),
            ..Default::default()
        };
        assert!(matches!(d.create_endpoint(endpoint(None)), Err(DriverError::InvalidArgument(_))));
        d.create_endpoint(endpoint(Some("10.9.0.5/24"))).expect("endpoint");
        let join = |interface_name: &str| JoinRequest {
            network_id: net.clone(),
            endpoint_id: ep.clone(),
            interface_name: interface_name.into(),
            ..Default::default()
        };
        let joined = Isonet::new(ctx(dir.path())).and_then(|fresh| fresh.join(join("eth1"))).expect("join");
        assert_eq!(
            joined.actions,
            [
                NetAction::CreateLink {
                    name: "vifedcba98765".into(),
                    link: LinkKind::Veth { peer: "vpfedcba98765".into() },
                    ns: Netns::Host,
                    mtu: None,
                    mac_address: None
                },
                NetAction::SetMaster { name: "vifedcba98765".into(), master: "ib-0123456789ab".into() },
                NetAction::SetUp { link: "vifedcba98765".into(), ns: Netns::Host },
                NetAction::MoveToSandbox { name: "vpfedcba98765".into(), rename_to: "eth1".into() },
                NetAction::AddAddress { link: "eth1".into(), address: "10.9.0.5/24".into(), ns: Netns::Sandbox },
                NetAction::SetUp { link: "eth1".into(), ns: Netns::Sandbox },
            ]
        );
        assert!(matches!(d.join(join("a-name-far-too-long")), Err(DriverError::InvalidArgument(_))));
        assert_eq!(
            d.leave(&net, &ep).expect("leave").actions,
            [NetAction::DeleteLink { name: "vifedcba98765".into(), ns: Netns::Host }]
        );
        assert!(matches!(
            d.create_network(NetworkCreateRequest { network_id: "../../etc/x".into(), ..Default::default() }),
            Err(DriverError::InvalidArgument(_))
        ));
        d.delete_network(&net).expect("delete");
        assert!(matches!(d.delete_network(&net), Err(DriverError::NotFound(_))));
    }
}
