//! `macvlan`: each endpoint is a macvlan link on the parent interface
//! (`-o parent=IF`), moved into the container with its own MAC and address.
//! `-o macvlan_mode=bridge|private|vepa|passthru` (default `bridge`).
//! `parent=eth0.10` makes the 802.1q sub-interface `eth0.10` of `eth0` (VLAN
//! 10) with the network and deletes it with the network — that needs the
//! kernel's 8021q support; without it the executor says so and nothing is
//! left behind. As in Docker, the host cannot reach the containers through
//! the parent itself; other machines on the parent's segment can.

use std::collections::BTreeMap;
use std::sync::Mutex;

use berth_model::drivers::{DriverError, DriverResult, NetworkCapabilities, NetworkDriver};
use berth_model::network::{
    EndpointCreateRequest, EndpointInfo, JoinRequest, LinkKind, NetAction, Netns, NetworkCreateRequest, NetworkPlan,
};

use super::{interface_exists, link_name, mtu_option, split_cidr};

#[derive(Clone, Debug)]
struct Net {
    parent: String,
    mode: String,
    /// The 802.1q sub-interface this network made (deleted with it).
    vlan: Option<String>,
    gateway: Option<String>,
    internal: bool,
    mtu: Option<u32>,
}

#[derive(Clone, Debug)]
struct Endpoint {
    network_id: String,
    address: String,
    mac: String,
    /// Name inside the container once joined.
    interface: Option<String>,
}

#[derive(Default)]
struct State {
    networks: BTreeMap<String, Net>,
    endpoints: BTreeMap<String, Endpoint>,
}

/// The `macvlan` driver.
#[derive(Default)]
pub struct MacvlanDriver {
    state: Mutex<State>,
}

impl MacvlanDriver {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `eth0.10` as (`eth0`, 10).
fn vlan_of(parent: &str) -> DriverResult<Option<(String, u16)>> {
    let Some((base, id)) = parent.rsplit_once('.') else {
        return Ok(None);
    };
    let id: u16 = id.parse().map_err(|_| {
        DriverError::InvalidArgument(format!("invalid parent {parent:?}: the VLAN ID after the dot must be a number"))
    })?;
    if base.is_empty() || !(1..=4094).contains(&id) {
        return Err(DriverError::InvalidArgument(format!(
            "invalid parent {parent:?}: expected INTERFACE.VLAN with a VLAN ID from 1 to 4094"
        )));
    }
    Ok(Some((base.to_string(), id)))
}

impl NetworkDriver for MacvlanDriver {
    fn name(&self) -> &str {
        "macvlan"
    }

    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities::default()
    }

    fn create_network(&self, request: &NetworkCreateRequest) -> DriverResult<NetworkPlan> {
        for k in request.options.keys() {
            if !matches!(k.as_str(), "parent" | "macvlan_mode" | "com.docker.network.driver.mtu") {
                return Err(DriverError::InvalidArgument(format!(
                    "unknown macvlan option {k:?}: use parent, macvlan_mode or com.docker.network.driver.mtu"
                )));
            }
        }
        let parent = request.options.get("parent").filter(|p| !p.is_empty()).cloned().ok_or_else(|| {
            DriverError::InvalidArgument(
                "berth's macvlan driver needs a parent interface: -o parent=IFACE (or IFACE.VLAN)".into(),
            )
        })?;
        let mode = request.options.get("macvlan_mode").cloned().unwrap_or_else(|| "bridge".into());
        if !matches!(mode.as_str(), "bridge" | "private" | "vepa" | "passthru") {
            return Err(DriverError::InvalidArgument(format!(
                "macvlan mode '{mode}' is not valid: use bridge, private, vepa or passthru"
            )));
        }
        let pool = request.ipv4.first().ok_or_else(|| {
            DriverError::InvalidArgument("the macvlan driver needs an IPv4 subnet (IPAM gave none)".into())
        })?;
        split_cidr(&pool.subnet)?;
        let mtu = mtu_option(&request.options)?;
        let mut actions = Vec::new();
        let mut st = self.state();
        let vlan = match vlan_of(&parent)? {
            Some((base, id)) => {
                if !interface_exists(&base) {
                    return Err(DriverError::InvalidArgument(format!(
                        "-o parent interface was not found on the host: {base}"
                    )));
                }
                // Another macvlan network may share the sub-interface; only its maker deletes it.
                let shared =
                    st.networks.iter().any(|(id, n)| n.vlan.as_deref() == Some(&parent) && id != &request.network_id);
                if !shared {
                    actions.push(NetAction::CreateLink {
                        name: parent.clone(),
                        link: LinkKind::Vlan { parent: base, id },
                        ns: Netns::Host,
                        mtu: None,
                        mac_address: None,
                    });
                    actions.push(NetAction::SetUp { link: parent.clone(), ns: Netns::Host });
                }
                (!shared).then(|| parent.clone())
            }
            None => {
                if !interface_exists(&parent) {
                    return Err(DriverError::InvalidArgument(format!(
                        "-o parent interface was not found on the host: {parent}"
                    )));
                }
                None
            }
        };
        st.networks.insert(
            request.network_id.clone(),
            Net {
                parent,
                mode,
                vlan,
                gateway: pool.gateway.clone().filter(|g| !g.is_empty()),
                internal: request.internal,
                mtu,
            },
        );
        Ok(NetworkPlan { actions })
    }

    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan> {
        let mut st = self.state();
        let Some(net) = st.networks.remove(network_id) else {
            return Ok(NetworkPlan::default());
        };
        st.endpoints.retain(|_, e| e.network_id != network_id);
        let mut actions = Vec::new();
        if let Some(v) = net.vlan {
            actions.push(NetAction::DeleteLink { name: v, ns: Netns::Host });
        }
        Ok(NetworkPlan { actions })
    }

    fn create_endpoint(&self, request: &EndpointCreateRequest) -> DriverResult<EndpointInfo> {
        let mut st = self.state();
        if !st.networks.contains_key(&request.network_id) {
            return Err(DriverError::NotFound(format!("network {} not found", request.network_id)));
        }
        let (address, mac) = super::endpoint_address_and_mac(request, "macvlan")?;
        st.endpoints.insert(
            request.endpoint_id.clone(),
            Endpoint {
                network_id: request.network_id.clone(),
                address: address.clone(),
                mac: mac.clone(),
                interface: None,
            },
        );
        Ok(EndpointInfo { address: Some(address), address_v6: None, mac_address: Some(mac) })
    }

    fn delete_endpoint(&self, _network_id: &str, endpoint_id: &str) -> DriverResult<()> {
        self.state().endpoints.remove(endpoint_id);
        Ok(())
    }

    fn join(&self, request: &JoinRequest) -> DriverResult<NetworkPlan> {
        let mut st = self.state();
        let ep = st
            .endpoints
            .get(&request.endpoint_id)
            .cloned()
            .ok_or_else(|| DriverError::NotFound(format!("endpoint {} not found", request.endpoint_id)))?;
        let net = st
            .networks
            .get(&ep.network_id)
            .cloned()
            .ok_or_else(|| DriverError::NotFound(format!("network {} not found", ep.network_id)))?;
        let tmp = link_name("mv", &request.endpoint_id);
        let ifname = request.interface_name.clone();
        let mut actions = vec![
            NetAction::CreateLink {
                name: tmp.clone(),
                link: LinkKind::Macvlan { parent: net.parent.clone(), mode: net.mode.clone() },
                ns: Netns::Host,
                mtu: net.mtu,
                mac_address: Some(ep.mac.clone()),
            },
            NetAction::MoveToSandbox { name: tmp, rename_to: ifname.clone() },
            NetAction::AddAddress { link: ifname.clone(), address: ep.address.clone(), ns: Netns::Sandbox },
            NetAction::SetUp { link: ifname.clone(), ns: Netns::Sandbox },
        ];
        if let (false, Some(gw)) = (net.internal, &net.gateway) {
            actions.push(NetAction::AddRoute {
                destination: "default".into(),
                gateway: Some(gw.clone()),
                link: Some(ifname.clone()),
                ns: Netns::Sandbox,
            });
        }
        if let Some(e) = st.endpoints.get_mut(&request.endpoint_id) {
            e.interface = Some(ifname);
        }
        Ok(NetworkPlan { actions })
    }

    fn leave(&self, _network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan> {
        // The link lives in the container's namespace and dies with it; a
        // running container (disconnect) loses it here.
        let mut st = self.state();
        let iface = st.endpoints.get_mut(endpoint_id).and_then(|e| e.interface.take());
        Ok(NetworkPlan {
            actions: iface.map(|name| NetAction::DeleteLink { name, ns: Netns::Sandbox }).into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::network::IpamPool;

    fn req(parent: &str, mode: Option<&str>) -> NetworkCreateRequest {
        let mut options = BTreeMap::new();
        options.insert("parent".to_string(), parent.to_string());
        if let Some(m) = mode {
            options.insert("macvlan_mode".to_string(), m.to_string());
        }
        NetworkCreateRequest {
            network_id: "m".repeat(64),
            name: "mv".into(),
            ipv4: vec![IpamPool { subnet: "10.5.0.0/24".into(), ip_range: None, gateway: Some("10.5.0.1".into()) }],
            ipv6: vec![],
            options,
            internal: false,
        }
    }

    #[test]
    fn options_are_checked() {
        let d = MacvlanDriver::default();
        assert!(d.create_network(&req("lo", Some("sideways"))).unwrap_err().to_string().contains("not valid"));
        let e = d.create_network(&req("nosuch9", None)).unwrap_err().to_string();
        assert_eq!(e, "-o parent interface was not found on the host: nosuch9");
        assert!(d.create_network(&req("lo.5000", None)).is_err());
        // A VLAN parent on an existing interface plans the sub-interface.
        let p = d.create_network(&req("lo.10", None)).unwrap();
        assert!(
            matches!(&p.actions[0], NetAction::CreateLink { name, link: LinkKind::Vlan { parent, id: 10 }, .. } if name == "lo.10" && parent == "lo")
        );
        let del = d.delete_network(&"m".repeat(64)).unwrap();
        assert_eq!(del.actions, vec![NetAction::DeleteLink { name: "lo.10".into(), ns: Netns::Host }]);
    }

    #[test]
    fn join_moves_a_macvlan_into_the_container() {
        let d = MacvlanDriver::default();
        d.create_network(&req("lo", Some("private"))).unwrap();
        d.create_endpoint(&EndpointCreateRequest {
            network_id: "m".repeat(64),
            endpoint_id: "ep0123456789".into(),
            address: Some("10.5.0.2/24".into()),
            ..Default::default()
        })
        .unwrap();
        let j = d
            .join(&JoinRequest {
                network_id: "m".repeat(64),
                endpoint_id: "ep0123456789".into(),
                sandbox_key: "/x".into(),
                interface_name: "eth0".into(),
                options: Default::default(),
            })
            .unwrap();
        assert!(
            matches!(&j.actions[0], NetAction::CreateLink { link: LinkKind::Macvlan { mode, .. }, mac_address: Some(m), .. } if mode == "private" && m == "02:42:0a:05:00:02")
        );
        let l = d.leave(&"m".repeat(64), "ep0123456789").unwrap();
        assert_eq!(l.actions, vec![NetAction::DeleteLink { name: "eth0".into(), ns: Netns::Sandbox }]);
    }
}
