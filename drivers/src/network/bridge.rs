//! `bridge`: a Linux bridge per network (`berth0` for the default network,
//! `br-<id12>` or `-o com.docker.network.bridge.name` for user-defined ones)
//! with the gateway address on it; a veth pair per endpoint, host side on
//! the bridge, container side renamed `eth0`, `eth1`, ... with its address,
//! Docker's MAC (02:42 + the address) and a default route via the gateway.
//! Non-internal networks masquerade outbound traffic; traffic between two
//! bridges is dropped (Docker's network isolation).
//!
//! The driver keeps what it learned from `create_network` and
//! `create_endpoint` in memory; the engine calls `create_network` again for
//! every stored network when the daemon starts, which re-applies the plan
//! (the executor adopts an existing bridge) and restores that memory.
//! Endpoint link names derive from the endpoint ID, so `leave` needs no memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use berth_model::drivers::{DriverError, DriverResult, NetworkCapabilities, NetworkDriver};
use berth_model::network::{
    EndpointCreateRequest, EndpointInfo, FirewallRule, JoinRequest, LinkKind, NetAction, Netns, NetworkCreateRequest,
    NetworkPlan,
};

use super::{link_name, mtu_option, split_cidr};

/// `-o` key naming the bridge.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
/// `-o` key marking the default bridge network.
pub const DEFAULT_BRIDGE_OPTION: &str = "com.docker.network.bridge.default_bridge";
/// `-o` key turning masquerade off.
pub const MASQUERADE_OPTION: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "berth0";

#[derive(Clone, Debug)]
struct Net {
    bridge: String,
    subnet: String,
    gateway: Option<String>,
    internal: bool,
    masquerade: bool,
    mtu: Option<u32>,
}

#[derive(Clone, Debug)]
struct Endpoint {
    network_id: String,
    address: String,
    mac: String,
}

#[derive(Default)]
struct State {
    networks: BTreeMap<String, Net>,
    endpoints: BTreeMap<String, Endpoint>,
}

/// The `bridge` driver.
#[derive(Default)]
pub struct BridgeDriver {
    state: Mutex<State>,
}

impl BridgeDriver {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn host_link(endpoint_id: &str) -> String {
    link_name("veth", endpoint_id)
}

fn container_link(endpoint_id: &str) -> String {
    link_name("vc", endpoint_id)
}

fn masquerade(net: &Net) -> FirewallRule {
    FirewallRule::Masquerade { source: net.subnet.clone(), out_not: Some(net.bridge.clone()) }
}

fn isolation(a: &str, b: &str) -> [FirewallRule; 2] {
    [
        FirewallRule::Isolate { from_iface: a.to_string(), to_iface: b.to_string() },
        FirewallRule::Isolate { from_iface: b.to_string(), to_iface: a.to_string() },
    ]
}

impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &str {
        "bridge"
    }

    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities::default()
    }

    fn create_network(&self, request: &NetworkCreateRequest) -> DriverResult<NetworkPlan> {
        let pool = request.ipv4.first().ok_or_else(|| {
            DriverError::InvalidArgument("the bridge driver needs an IPv4 subnet (IPAM gave none)".into())
        })?;
        let (net_ip, prefix) = split_cidr(&pool.subnet)?;
        let default = request.options.get(DEFAULT_BRIDGE_OPTION).is_some_and(|v| v == "true");
        let bridge = match request.options.get(BRIDGE_NAME_OPTION).filter(|n| !n.is_empty()) {
            Some(n) => n.clone(),
            None if default => DEFAULT_BRIDGE.to_string(),
            None => format!("br-{}", &request.network_id[..12.min(request.network_id.len())]),
        };
        if bridge.len() > 15 || bridge.contains(['/', ' ', ':']) {
            return Err(DriverError::InvalidArgument(format!(
                "invalid bridge name {bridge:?} ({BRIDGE_NAME_OPTION}): at most 15 characters, no '/', ' ' or ':'"
            )));
        }
        let masquerade_on = match request.options.get(MASQUERADE_OPTION).map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => {
                return Err(DriverError::InvalidArgument(format!(
                    "invalid value {v:?} for {MASQUERADE_OPTION}: expected true or false"
                )))
            }
        };
        let net = Net {
            bridge: bridge.clone(),
            subnet: format!("{net_ip}/{prefix}"),

            gateway: pool.gateway.clone().filter(|g| !g.is_empty()),
            internal: request.internal,
            masquerade: masquerade_on && !request.internal,
            mtu: mtu_option(&request.options)?,
        };
        let mut st = self.state();
        if let Some((_, other)) =
            st.networks.iter().find(|(id, n)| n.bridge == bridge && id.as_str() != request.network_id)
        {
            return Err(DriverError::Conflict(format!(
                "bridge name {bridge} is already in use by network with subnet {}",
                other.subnet
            )));
        }
        let mut actions = vec![NetAction::CreateLink {
            name: bridge.clone(),
            link: LinkKind::Bridge,
            ns: Netns::Host,
            mtu: net.mtu,
            mac_address: None,
        }];
        if let Some(gw) = &net.gateway {
            actions.push(NetAction::AddAddress {
                link: bridge.clone(),
                address: format!("{gw}/{prefix}"),
                ns: Netns::Host,
            });
        }
        actions.push(NetAction::SetUp { link: bridge.clone(), ns: Netns::Host });
        if !net.internal {
            actions.push(NetAction::Sysctl { key: "net.ipv4.ip_forward".into(), value: "1".into(), ns: Netns::Host });
        }
        if net.masquerade {
            actions.push(NetAction::AddFirewallRule { rule: masquerade(&net) });
        }
        for (id, other) in &st.networks {
            if id != &request.network_id {
                for rule in isolation(&bridge, &other.bridge) {
                    actions.push(NetAction::AddFirewallRule { rule });
                }
            }
        }
        st.networks.insert(request.network_id.clone(), net);
        Ok(NetworkPlan { actions })
    }

    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan> {
        let mut st = self.state();
        let Some(net) = st.networks.remove(network_id) else {
            return Ok(NetworkPlan::default());
        };
        st.endpoints.retain(|_, e| e.network_id != network_id);
        let mut actions = Vec::new();
        if net.masquerade {
            actions.push(NetAction::DeleteFirewallRule { rule: masquerade(&net) });
        }
        for other in st.networks.values() {
            for rule in isolation(&net.bridge, &other.bridge) {
                actions.push(NetAction::DeleteFirewallRule { rule });
            }
        }
        actions.push(NetAction::DeleteLink { name: net.bridge.clone(), ns: Netns::Host });
        Ok(NetworkPlan { actions })
    }

    fn create_endpoint(&self, request: &EndpointCreateRequest) -> DriverResult<EndpointInfo> {
        let mut st = self.state();
        if !st.networks.contains_key(&request.network_id) {
            return Err(DriverError::NotFound(format!("network {} not found", request.network_id)));
        }
        let (address, mac) = super::endpoint_address_and_mac(request, "bridge")?;
        st.endpoints.insert(
            request.endpoint_id.clone(),
            Endpoint { network_id: request.network_id.clone(), address: address.clone(), mac: mac.clone() },
        );
        Ok(EndpointInfo { address: Some(address), address_v6: None, mac_address: Some(mac) })
    }

    fn delete_endpoint(&self, _network_id: &str, endpoint_id: &str) -> DriverResult<()> {
        self.state().endpoints.remove(endpoint_id);
        Ok(())
    }

    fn join(&self, request: &JoinRequest) -> DriverResult<NetworkPlan> {
        let st = self.state();
        let ep = st
            .endpoints
            .get(&request.endpoint_id)
            .ok_or_else(|| DriverError::NotFound(format!("endpoint {} not found", request.endpoint_id)))?;
        let net = st
            .networks
            .get(&ep.network_id)
            .ok_or_else(|| DriverError::NotFound(format!("network {} not found", ep.network_id)))?;
        let host = host_link(&request.endpoint_id);
        let peer = container_link(&request.endpoint_id);
        let ifname = request.interface_name.clone();
        let mut actions = vec![
            // The container end is created with the endpoint's MAC and moved.
            NetAction::CreateLink {
                name: peer.clone(),
                link: LinkKind::Veth { peer: host.clone() },
                ns: Netns::Host,
                mtu: net.mtu,
                mac_address: Some(ep.mac.clone()),
            },
            NetAction::SetMaster { name: host.clone(), master: net.bridge.clone() },
            NetAction::SetUp { link: host.clone(), ns: Netns::Host },
            NetAction::MoveToSandbox { name: peer, rename_to: ifname.clone() },
            NetAction::AddAddress { link: ifname.clone(), address: ep.address.clone(), ns: Netns::Sandbox },
            NetAction::SetUp { link: ifname.clone(), ns: Netns::Sandbox },
        ];
        if let (false, Some(gw)) = (net.internal, &net.gateway) {
            actions.push(NetAction::AddRoute {
                destination: "default".into(),
                gateway: Some(gw.clone()),
                link: Some(ifname),
                ns: Netns::Sandbox,
            });
        }
        Ok(NetworkPlan { actions })
    }

    fn leave(&self, _network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan> {
        // Deleting the host end deletes the pair, wherever the other end is.
        Ok(NetworkPlan { actions: vec![NetAction::DeleteLink { name: host_link(endpoint_id), ns: Netns::Host }] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::network::IpamPool;

    fn create(
        d: &BridgeDriver,
        id: &str,
        subnet: &str,
        gw: &str,
        opts: &[(&str, &str)],
        internal: bool,
    ) -> DriverResult<NetworkPlan> {
        d.create_network(&NetworkCreateRequest {
            network_id: id.into(),
            name: id.into(),
            ipv4: vec![IpamPool { subnet: subnet.into(), ip_range: None, gateway: Some(gw.into()) }],
            ipv6: vec![],
            options: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            internal,
        })
    }

    #[test]
    fn default_bridge_plan() {
        let d = BridgeDriver::default();
        let p = create(&d, &"a".repeat(64), "172.17.0.0/16", "172.17.0.1", &[(DEFAULT_BRIDGE_OPTION, "true")], false)
            .unwrap();
        assert!(
            matches!(&p.actions[0], NetAction::CreateLink { name, link: LinkKind::Bridge, .. } if name == "berth0")
        );
        assert!(p.actions.contains(&NetAction::AddAddress {
            link: "berth0".into(),
            address: "172.17.0.1/16".into(),
            ns: Netns::Host
        }));
        assert!(p.actions.contains(&NetAction::AddFirewallRule {
            rule: FirewallRule::Masquerade { source: "172.17.0.0/16".into(), out_not: Some("berth0".into()) }
        }));
        // A second network is isolated from the first, both ways; internal ones do not masquerade.
        let id2 = "b".repeat(64);
        let p = create(&d, &id2, "172.18.0.0/16", "172.18.0.1", &[], true).unwrap();
        assert!(matches!(&p.actions[0], NetAction::CreateLink { name, .. } if name == "br-bbbbbbbbbbbb"));
        assert!(!p
            .actions
            .iter()
            .any(|a| matches!(a, NetAction::AddFirewallRule { rule: FirewallRule::Masquerade { .. } })));
        let isolates = p
            .actions
            .iter()
            .filter(|a| matches!(a, NetAction::AddFirewallRule { rule: FirewallRule::Isolate { .. } }))
            .count();
        assert_eq!(isolates, 2);
        // Same bridge name twice is refused.
        let e = create(&d, &"c".repeat(64), "172.19.0.0/16", "172.19.0.1", &[(BRIDGE_NAME_OPTION, "berth0")], false)
            .unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        let e = create(
            &d,
            &"c".repeat(64),
            "172.19.0.0/16",
            "172.19.0.1",
            &[("com.docker.network.driver.mtu", "9")],
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid MTU"), "{e}");

        // Endpoints: Docker's MAC, veth into the sandbox, route via the gateway unless internal.
        let info = d
            .create_endpoint(&EndpointCreateRequest {
                network_id: "a".repeat(64),
                endpoint_id: "e1e1e1e1e1e1e1e1".into(),
                address: Some("172.17.0.2/16".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(info.mac_address.as_deref(), Some("02:42:ac:11:00:02"));
        let j = d
            .join(&JoinRequest {
                network_id: "a".repeat(64),
                endpoint_id: "e1e1e1e1e1e1e1e1".into(),
                sandbox_key: "/run/x".into(),
                interface_name: "eth0".into(),
                options: Default::default(),
            })
            .unwrap();
        assert!(j
            .actions
            .iter()
            .any(|a| matches!(a, NetAction::AddRoute { gateway: Some(g), .. } if g == "172.17.0.1")));
        assert!(j.actions.contains(&NetAction::SetMaster { name: "vethe1e1e1e1e1e".into(), master: "berth0".into() }));
        let l = d.leave(&"a".repeat(64), "e1e1e1e1e1e1e1e1").unwrap();
        assert_eq!(l.actions, vec![NetAction::DeleteLink { name: "vethe1e1e1e1e1e".into(), ns: Netns::Host }]);
        let del = d.delete_network(&id2).unwrap();
        assert!(matches!(del.actions.last(), Some(NetAction::DeleteLink { name, .. }) if name == "br-bbbbbbbbbbbb"));
    }
}
