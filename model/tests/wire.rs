//! The JSON that crosses the plugin boundary (the WIT's `json` values and
//! the dylib ABI's payloads), pinned field by field. A plugin written in any
//! language sends and reads exactly these documents, so a change here is a
//! change of the plugin contract: it needs a new contract version.

use std::collections::BTreeMap;
use std::fmt::Debug;

use berth_model::drivers::{Change, ChangeKind, DriverError, NetworkCapabilities, VolumeCapabilities};
use berth_model::network::{
    EndpointCreateRequest, EndpointInfo, FirewallRule, IpamPool, JoinRequest, LinkKind, NetAction, Netns, NetworkCreateRequest, NetworkPlan,
};
use berth_model::volume::{Scope, VolumeCreateRequest, VolumeInfo};
use berth_model::{MountPlan, MountSpec};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// `value` encodes to `wire`, and `wire` decodes back to `value`.
fn pinned<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T, wire: Value) {
    let encoded = serde_json::to_value(&value).expect("encode");
    assert_eq!(encoded, wire, "the wire form of {value:?} changed");
    let decoded: T = serde_json::from_value(wire).expect("decode");
    assert_eq!(decoded, value);
}

fn opts() -> BTreeMap<String, String> {
    BTreeMap::from([("size".to_string(), "10m".to_string())])
}

#[test]
fn volume_documents() {
    pinned(VolumeCreateRequest { name: "v1".into(), options: opts() }, json!({"name": "v1", "options": {"size": "10m"}}));
    pinned(
        VolumeInfo {
            name: "v1".into(),
            mountpoint: Some("/data/volumes/v1".into()),
            created_at: Some("2024-01-02T03:04:05Z".into()),
            status: opts(),
        },
        json!({"name": "v1", "mountpoint": "/data/volumes/v1", "created_at": "2024-01-02T03:04:05Z", "status": {"size": "10m"}}),
    );
    pinned(
        VolumeInfo { name: "bare".into(), ..Default::default() },
        json!({"name": "bare", "mountpoint": null, "created_at": null, "status": {}}),
    );
    pinned(VolumeCapabilities { scope: Scope::Global }, json!({"scope": "global"}));
    pinned(
        NetworkCapabilities { scope: Scope::Local, connectivity_scope: Scope::Global },
        json!({"scope": "local", "connectivity_scope": "global"}),
    );
}

#[test]
fn mount_plans() {
    pinned(
        MountPlan { spec: MountSpec::Bind { source: "/data/v".into(), readonly: true } },
        json!({"spec": {"type": "bind", "source": "/data/v", "readonly": true}}),
    );
    pinned(
        MountPlan { spec: MountSpec::Tmpfs { options: "size=1m".into() } },
        json!({"spec": {"type": "tmpfs", "options": "size=1m"}}),
    );
    pinned(
        MountPlan { spec: MountSpec::Overlay { lower: vec!["/data/l1".into(), "/data/l2".into()], upper: Some("/data/u".into()), work: None } },
        json!({"spec": {"type": "overlay", "lower": ["/data/l1", "/data/l2"], "upper": "/data/u", "work": null}}),
    );
    pinned(
        MountPlan { spec: MountSpec::Filesystem { fstype: "ext4".into(), device: "/dev/vdb".into(), options: "noatime".into() } },
        json!({"spec": {"type": "filesystem", "fstype": "ext4", "device": "/dev/vdb", "options": "noatime"}}),
    );
}

#[test]
fn storage_changes() {
    for (kind, name) in [(ChangeKind::Modified, "Modified"), (ChangeKind::Added, "Added"), (ChangeKind::Deleted, "Deleted")] {
        pinned(Change { path: "/etc/hosts".into(), kind }, json!({"path": "/etc/hosts", "kind": name}));
    }
}

#[test]
fn network_requests() {
    pinned(
        NetworkCreateRequest {
            network_id: "n1".into(),
            name: "iso".into(),
            ipv4: vec![IpamPool { subnet: "172.30.0.0/16".into(), ip_range: Some("172.30.1.0/24".into()), gateway: Some("172.30.0.1".into()) }],
            ipv6: vec![],
            options: opts(),
            internal: true,
        },
        json!({
            "network_id": "n1", "name": "iso",
            "ipv4": [{"subnet": "172.30.0.0/16", "ip_range": "172.30.1.0/24", "gateway": "172.30.0.1"}],
            "ipv6": [], "options": {"size": "10m"}, "internal": true
        }),
    );
    pinned(
        EndpointCreateRequest {
            network_id: "n".into(),
            endpoint_id: "e".into(),
            address: Some("172.30.0.2/16".into()),
            address_v6: None,
            mac_address: Some("02:42:ac:1e:00:02".into()),
            options: BTreeMap::new(),
        },
        json!({"network_id": "n", "endpoint_id": "e", "address": "172.30.0.2/16", "address_v6": null, "mac_address": "02:42:ac:1e:00:02", "options": {}}),
    );
    pinned(
        EndpointInfo { address: Some("172.30.0.2/16".into()), address_v6: Some("fd00::2/64".into()), mac_address: None },
        json!({"address": "172.30.0.2/16", "address_v6": "fd00::2/64", "mac_address": null}),
    );
    pinned(
        JoinRequest { network_id: "n".into(), endpoint_id: "e".into(), sandbox_key: "/run/berth/netns/c".into(), interface_name: "eth0".into(), options: BTreeMap::new() },
        json!({"network_id": "n", "endpoint_id": "e", "sandbox_key": "/run/berth/netns/c", "interface_name": "eth0", "options": {}}),
    );
}

#[test]
fn network_plans() {
    let plan = NetworkPlan {
        actions: vec![
            NetAction::CreateLink { name: "br0".into(), link: LinkKind::Bridge, ns: Netns::Host, mtu: Some(1400), mac_address: None },
            NetAction::CreateLink { name: "v0".into(), link: LinkKind::Veth { peer: "vp".into() }, ns: Netns::Host, mtu: None, mac_address: None },
            NetAction::CreateLink {
                name: "m0".into(),
                link: LinkKind::Macvlan { parent: "eth0".into(), mode: "bridge".into() },
                ns: Netns::Sandbox,
                mtu: None,
                mac_address: Some("02:00:00:00:00:01".into()),
            },
            NetAction::CreateLink { name: "i0".into(), link: LinkKind::Ipvlan { parent: "eth0".into(), mode: "l2".into() }, ns: Netns::Host, mtu: None, mac_address: None },
            NetAction::CreateLink { name: "vl".into(), link: LinkKind::Vlan { parent: "eth0".into(), id: 42 }, ns: Netns::Host, mtu: None, mac_address: None },
            NetAction::CreateLink {
                name: "vx".into(),
                link: LinkKind::Vxlan { vni: 7, remote: Some("10.0.0.9".parse().expect("ip")), dev: Some("eth0".into()), port: Some(4789) },
                ns: Netns::Host,
                mtu: None,
                mac_address: None,
            },
            NetAction::DeleteLink { name: "l0".into(), ns: Netns::Host },
            NetAction::MoveToSandbox { name: "vp".into(), rename_to: "eth0".into() },
            NetAction::SetMaster { name: "v0".into(), master: "br0".into() },
            NetAction::AddAddress { link: "eth0".into(), address: "10.1.0.2/16".into(), ns: Netns::Sandbox },
            NetAction::SetUp { link: "eth0".into(), ns: Netns::Sandbox },
            NetAction::AddRoute { destination: "0.0.0.0/0".into(), gateway: Some("10.1.0.1".into()), link: None, ns: Netns::Sandbox },
            NetAction::Sysctl { key: "net.ipv4.ip_forward".into(), value: "1".into(), ns: Netns::Host },
            NetAction::AddFirewallRule { rule: FirewallRule::Masquerade { source: "10.1.0.0/16".into(), out_not: Some("br0".into()) } },
            NetAction::AddFirewallRule {
                rule: FirewallRule::PortForward { proto: "tcp".into(), host_ip: None, host_port: 8080, container_ip: "10.1.0.2".into(), container_port: 80 },
            },
            NetAction::DeleteFirewallRule { rule: FirewallRule::Isolate { from_iface: "br0".into(), to_iface: "br1".into() } },
        ],
    };
    pinned(
        plan,
        json!({"actions": [
            {"op": "create_link", "name": "br0", "link": {"kind": "bridge"}, "ns": "host", "mtu": 1400, "mac_address": null},
            {"op": "create_link", "name": "v0", "link": {"kind": "veth", "peer": "vp"}, "ns": "host", "mtu": null, "mac_address": null},
            {"op": "create_link", "name": "m0", "link": {"kind": "macvlan", "parent": "eth0", "mode": "bridge"}, "ns": "sandbox", "mtu": null, "mac_address": "02:00:00:00:00:01"},
            {"op": "create_link", "name": "i0", "link": {"kind": "ipvlan", "parent": "eth0", "mode": "l2"}, "ns": "host", "mtu": null, "mac_address": null},
            {"op": "create_link", "name": "vl", "link": {"kind": "vlan", "parent": "eth0", "id": 42}, "ns": "host", "mtu": null, "mac_address": null},
            {"op": "create_link", "name": "vx", "link": {"kind": "vxlan", "vni": 7, "remote": "10.0.0.9", "dev": "eth0", "port": 4789}, "ns": "host", "mtu": null, "mac_address": null},
            {"op": "delete_link", "name": "l0", "ns": "host"},
            {"op": "move_to_sandbox", "name": "vp", "rename_to": "eth0"},
            {"op": "set_master", "name": "v0", "master": "br0"},
            {"op": "add_address", "link": "eth0", "address": "10.1.0.2/16", "ns": "sandbox"},
            {"op": "set_up", "link": "eth0", "ns": "sandbox"},
            {"op": "add_route", "destination": "0.0.0.0/0", "gateway": "10.1.0.1", "link": null, "ns": "sandbox"},
            {"op": "sysctl", "key": "net.ipv4.ip_forward", "value": "1", "ns": "host"},
            {"op": "add_firewall_rule", "rule": {"rule": "masquerade", "source": "10.1.0.0/16", "out_not": "br0"}},
            {"op": "add_firewall_rule", "rule": {"rule": "port_forward", "proto": "tcp", "host_ip": null, "host_port": 8080, "container_ip": "10.1.0.2", "container_port": 80}},
            {"op": "delete_firewall_rule", "rule": {"rule": "isolate", "from_iface": "br0", "to_iface": "br1"}}
        ]}),
    );
    pinned(NetworkPlan::default(), json!({"actions": []}));
}

#[test]
fn driver_errors_travel_as_kind_and_message() {
    let cases = [
        (DriverError::NotFound("no volume v".into()), json!({"kind": "not_found", "message": "no volume v"})),
        (DriverError::Conflict("in use".into()), json!({"kind": "conflict", "message": "in use"})),
        (DriverError::InvalidArgument("bad size".into()), json!({"kind": "invalid_argument", "message": "bad size"})),
        (DriverError::Unsupported("no".into()), json!({"kind": "unsupported", "message": "no"})),
        (DriverError::Failed("disk".into()), json!({"kind": "failed", "message": "disk"})),
    ];
    for (error, wire) in cases {
        assert_eq!(serde_json::to_value(&error).expect("encode"), wire);
        let back: DriverError = serde_json::from_value(wire).expect("decode");
        assert_eq!(back.kind(), error.kind());
        assert_eq!(back.to_string(), error.to_string());
    }
    // The engine's own kinds leave a plugin as `failed`, with their words.
    let io = DriverError::io("reading /data/v", std::io::Error::from_raw_os_error(2));
    assert_eq!(serde_json::to_value(&io).expect("encode")["kind"], "failed");
    assert!(serde_json::to_value(&io).expect("encode")["message"].as_str().is_some_and(|m| m.starts_with("reading /data/v: ")));
    // A kind this side does not know (a newer plugin) is read as `failed`.
    let newer: DriverError = serde_json::from_value(json!({"kind": "quota", "message": "full"})).expect("decode");
    assert!(matches!(newer, DriverError::Failed(ref m) if m == "full"), "{newer:?}");
}
