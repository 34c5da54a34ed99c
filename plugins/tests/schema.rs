//! The documents that cross the plugin boundary: the SDK's types and the
//! core's model types must produce the same JSON, both ways, or a plugin
//! and the host would silently disagree on a field.

use std::collections::BTreeMap;
use std::fmt::Debug;

use berth_core::drivers as cd;
use berth_core::model as cm;
use berth_core::model::network as cn;
use berth_core::model::volume as cv;
use berth_sdk as sdk;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `a` (one side) encodes to the same JSON as its twin `b` (other side),
/// and each decodes from the other's JSON back to itself.
fn same<A, B>(a: A, b: B)
where
    A: Serialize + DeserializeOwned + PartialEq + Debug,
    B: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let ja = serde_json::to_value(&a).expect("encode sdk");
    let jb = serde_json::to_value(&b).expect("encode core");
    assert_eq!(ja, jb, "JSON differs for {a:?} / {b:?}");
    let b2: B = serde_json::from_value(ja.clone()).expect("core decodes sdk JSON");
    assert_eq!(b2, b);
    let a2: A = serde_json::from_value(jb).expect("sdk decodes core JSON");
    assert_eq!(a2, a);
}

fn opts() -> BTreeMap<String, String> {
    BTreeMap::from([("size".to_string(), "10m".to_string()), ("from".to_string(), "base".to_string())])
}

#[test]
fn volume_documents_match() {
    same(
        sdk::VolumeCreateRequest { name: "v1".into(), options: opts() },
        cv::VolumeCreateRequest { name: "v1".into(), options: opts() },
    );
    same(
        sdk::VolumeInfo {
            name: "v1".into(),
            mountpoint: Some("/data/volumes/v1".into()),
            created_at: Some("2024-01-02T03:04:05Z".into()),
            status: opts(),
        },
        cv::VolumeInfo {
            name: "v1".into(),
            mountpoint: Some("/data/volumes/v1".into()),
            created_at: Some("2024-01-02T03:04:05Z".into()),
            status: opts(),
        },
    );
    same(sdk::VolumeInfo { name: "bare".into(), ..Default::default() }, cv::VolumeInfo { name: "bare".into(), ..Default::default() });
    same(sdk::VolumeCapabilities { scope: sdk::Scope::Global }, cd::VolumeCapabilities { scope: cv::Scope::Global });
    same(sdk::VolumeCapabilities::default(), cd::VolumeCapabilities::default());
    same(
        sdk::NetworkCapabilities { scope: sdk::Scope::Local, connectivity_scope: sdk::Scope::Global },
        cd::NetworkCapabilities { scope: cv::Scope::Local, connectivity_scope: cv::Scope::Global },
    );
}

#[test]
fn mount_plans_match() {
    let specs = [
        (sdk::MountSpec::Bind { source: "/data/v".into(), readonly: true }, cm::MountSpec::Bind { source: "/data/v".into(), readonly: true }),
        (sdk::MountSpec::Tmpfs { options: "size=1m,mode=1777".into() }, cm::MountSpec::Tmpfs { options: "size=1m,mode=1777".into() }),
        (
            sdk::MountSpec::Overlay { lower: vec!["/data/l1".into(), "/data/l2".into()], upper: Some("/data/u".into()), work: Some("/data/w".into()) },
            cm::MountSpec::Overlay { lower: vec!["/data/l1".into(), "/data/l2".into()], upper: Some("/data/u".into()), work: Some("/data/w".into()) },
        ),
        (sdk::MountSpec::Overlay { lower: vec!["/data/l".into()], upper: None, work: None }, cm::MountSpec::Overlay { lower: vec!["/data/l".into()], upper: None, work: None }),
        (
            sdk::MountSpec::Filesystem { fstype: "ext4".into(), device: "/dev/vdb".into(), options: "noatime".into() },
            cm::MountSpec::Filesystem { fstype: "ext4".into(), device: "/dev/vdb".into(), options: "noatime".into() },
        ),
    ];
    for (a, b) in specs {
        same(sdk::MountPlan { spec: a }, cm::MountPlan { spec: b });
    }
}

#[test]
fn storage_changes_match() {
    for (a, b) in [
        (sdk::ChangeKind::Modified, cd::ChangeKind::Modified),
        (sdk::ChangeKind::Added, cd::ChangeKind::Added),
        (sdk::ChangeKind::Deleted, cd::ChangeKind::Deleted),
    ] {
        same(sdk::Change { path: "/etc/hosts".into(), kind: a }, cd::Change { path: "/etc/hosts".into(), kind: b });
    }
}

#[test]
fn network_requests_match() {
    let pool = |g: Option<&str>| (
        sdk::IpamPool { subnet: "172.30.0.0/16".into(), ip_range: Some("172.30.1.0/24".into()), gateway: g.map(Into::into) },
        cn::IpamPool { subnet: "172.30.0.0/16".into(), ip_range: Some("172.30.1.0/24".into()), gateway: g.map(Into::into) },
    );
    let (p4a, p4b) = pool(Some("172.30.0.1"));
    let (p6a, p6b) = pool(None);
    same(
        sdk::NetworkCreateRequest { network_id: "n".repeat(64), name: "iso".into(), ipv4: vec![p4a], ipv6: vec![p6a], options: opts(), internal: true },
        cn::NetworkCreateRequest { network_id: "n".repeat(64), name: "iso".into(), ipv4: vec![p4b], ipv6: vec![p6b], options: opts(), internal: true },
    );
    same(
        sdk::EndpointCreateRequest {
            network_id: "n".into(),
            endpoint_id: "e".into(),
            address: Some("172.30.0.2/16".into()),
            address_v6: None,
            mac_address: Some("02:42:ac:1e:00:02".into()),
            options: opts(),
        },
        cn::EndpointCreateRequest {
            network_id: "n".into(),
            endpoint_id: "e".into(),
            address: Some("172.30.0.2/16".into()),
            address_v6: None,
            mac_address: Some("02:42:ac:1e:00:02".into()),
            options: opts(),
        },
    );
    same(
        sdk::EndpointInfo { address: Some("172.30.0.2/16".into()), address_v6: Some("fd00::2/64".into()), mac_address: None },
        cn::EndpointInfo { address: Some("172.30.0.2/16".into()), address_v6: Some("fd00::2/64".into()), mac_address: None },
    );
    same(
        sdk::JoinRequest { network_id: "n".into(), endpoint_id: "e".into(), sandbox_key: "/run/berth/netns/c".into(), interface_name: "eth0".into(), options: opts() },
        cn::JoinRequest { network_id: "n".into(), endpoint_id: "e".into(), sandbox_key: "/run/berth/netns/c".into(), interface_name: "eth0".into(), options: opts() },
    );
}

#[test]
fn network_plans_match() {
    use cn::{FirewallRule as CF, LinkKind as CL, NetAction as CA, Netns as CN};
    use sdk::{FirewallRule as SF, LinkKind as SL, NetAction as SA, Netns as SN};
    let links = [
        (SL::Bridge, CL::Bridge),
        (SL::Veth { peer: "vp".into() }, CL::Veth { peer: "vp".into() }),
        (SL::Macvlan { parent: "eth0".into(), mode: "bridge".into() }, CL::Macvlan { parent: "eth0".into(), mode: "bridge".into() }),
        (SL::Ipvlan { parent: "eth0".into(), mode: "l2".into() }, CL::Ipvlan { parent: "eth0".into(), mode: "l2".into() }),
        (SL::Vlan { parent: "eth0".into(), id: 42 }, CL::Vlan { parent: "eth0".into(), id: 42 }),
        (
            SL::Vxlan { vni: 7, remote: Some("10.0.0.9".into()), dev: Some("eth0".into()), port: Some(4789) },
            CL::Vxlan { vni: 7, remote: Some("10.0.0.9".parse().expect("ip")), dev: Some("eth0".into()), port: Some(4789) },
        ),
        (SL::Vxlan { vni: 8, remote: None, dev: None, port: None }, CL::Vxlan { vni: 8, remote: None, dev: None, port: None }),
    ];
    let rules = [
        (SF::Masquerade { source: "10.1.0.0/16".into(), out_not: Some("br0".into()) }, CF::Masquerade { source: "10.1.0.0/16".into(), out_not: Some("br0".into()) }),
        (
            SF::PortForward { proto: "tcp".into(), host_ip: None, host_port: 8080, container_ip: "10.1.0.2".into(), container_port: 80 },
            CF::PortForward { proto: "tcp".into(), host_ip: None, host_port: 8080, container_ip: "10.1.0.2".into(), container_port: 80 },
        ),
        (SF::Isolate { from_iface: "br0".into(), to_iface: "br1".into() }, CF::Isolate { from_iface: "br0".into(), to_iface: "br1".into() }),
    ];
    let (mut sa, mut ca) = (Vec::new(), Vec::new());
    for (i, (s, c)) in links.into_iter().enumerate() {
        let (sns, cns) = if i % 2 == 0 { (SN::Host, CN::Host) } else { (SN::Sandbox, CN::Sandbox) };
        sa.push(SA::CreateLink { name: format!("l{i}"), link: s, ns: sns, mtu: Some(1400), mac_address: None });
        ca.push(CA::CreateLink { name: format!("l{i}"), link: c, ns: cns, mtu: Some(1400), mac_address: None });
    }
    for (s, c) in rules {
        sa.push(SA::AddFirewallRule { rule: s.clone() });
        ca.push(CA::AddFirewallRule { rule: c.clone() });
        sa.push(SA::DeleteFirewallRule { rule: s });
        ca.push(CA::DeleteFirewallRule { rule: c });
    }
    sa.extend([
        SA::DeleteLink { name: "l0".into(), ns: SN::Host },
        SA::MoveToSandbox { name: "vp".into(), rename_to: "eth0".into() },
        SA::SetMaster { name: "v".into(), master: "br0".into() },
        SA::AddAddress { link: "eth0".into(), address: "10.1.0.2/16".into(), ns: SN::Sandbox },
        SA::SetUp { link: "eth0".into(), ns: SN::Sandbox },
        SA::AddRoute { destination: "0.0.0.0/0".into(), gateway: Some("10.1.0.1".into()), link: None, ns: SN::Sandbox },
        SA::AddRoute { destination: "10.2.0.0/16".into(), gateway: None, link: Some("eth0".into()), ns: SN::Sandbox },
        SA::Sysctl { key: "net.ipv4.ip_forward".into(), value: "1".into(), ns: SN::Host },
    ]);
    ca.extend([
        CA::DeleteLink { name: "l0".into(), ns: CN::Host },
        CA::MoveToSandbox { name: "vp".into(), rename_to: "eth0".into() },
        CA::SetMaster { name: "v".into(), master: "br0".into() },
        CA::AddAddress { link: "eth0".into(), address: "10.1.0.2/16".into(), ns: CN::Sandbox },
        CA::SetUp { link: "eth0".into(), ns: CN::Sandbox },
        CA::AddRoute { destination: "0.0.0.0/0".into(), gateway: Some("10.1.0.1".into()), link: None, ns: CN::Sandbox },
        CA::AddRoute { destination: "10.2.0.0/16".into(), gateway: None, link: Some("eth0".into()), ns: CN::Sandbox },
        CA::Sysctl { key: "net.ipv4.ip_forward".into(), value: "1".into(), ns: CN::Host },
    ]);
    same(sdk::NetworkPlan { actions: sa }, cn::NetworkPlan { actions: ca });
    same(sdk::NetworkPlan::default(), cn::NetworkPlan::default());
}
