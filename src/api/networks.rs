//! Network routes: list, inspect, create, remove, prune, connect and
//! disconnect, with Docker's JSON on both sides. The engine decides (IPAM,
//! drivers, validation); this module translates.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_model::container::ContainerRecord;
use berth_model::network::{EndpointSettings, Ipam, NetworkingConfig};
use berth_core::network::{NetworkCreate, NetworkDetails};

use super::images::Params;
use super::{ApiError, AppState};
use crate::apitypes::networks::{
    ConfigReference, Network, NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse,
    NetworkDisconnectRequest, NetworkMember, NetworkPruneResponse,
};
use crate::apitypes::containers::{EndpointResource, NetworkSettings, Port};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

/// Filters `GET /networks` accepts (Docker's list).
const LIST_FILTERS: &[&str] = &["driver", "id", "label", "name", "scope", "type", "dangling"];
/// Filters `POST /networks/prune` accepts.
const PRUNE_FILTERS: &[&str] = &["until", "label", "label!"];

/// Docker's network resource (`GET /networks/{id}`); `containers` is false
/// for the list, which Docker answers with an empty `Containers` map.
pub fn network(d: &NetworkDetails, containers: bool) -> Network {
    let r = &d.record;
    let members = if containers {
        d.containers
            .iter()
            .map(|(id, c)| {
                let member = NetworkMember {
                    endpoint_id: c.endpoint_id.clone(),
                    ipv4_address: c.ipv4_address.clone(),
                    ipv6_address: c.ipv6_address.clone(),
                    mac_address: c.mac_address.clone(),
                    name: c.name.clone(),
                };
                (id.clone(), member)
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    Network {
        attachable: r.attachable,
        config_from: ConfigReference::default(),
        config_only: false,
        containers: members,
        created: r.created.clone(),
        driver: r.driver.clone(),
        enable_ipv4: true,
        enable_ipv6: r.enable_ipv6,
        ipam: ipam(&r.ipam),
        id: r.id.clone(),
        ingress: false,
        internal: r.internal,
        labels: r.labels.clone(),
        name: r.name.clone(),
        options: r.options.clone(),
        scope: if r.scope.is_empty() { "local".to_string() } else { r.scope.clone() },
    }
}

/// `IPAM` as Docker shows it: `Driver` never empty, each `Config` entry with
/// only the members that are set.
fn ipam(ipam: &Ipam) -> Ipam {
    let driver = if ipam.driver.is_empty() { "default" } else { ipam.driver.as_str() };
    Ipam { driver: driver.to_string(), ..ipam.clone() }
}

async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Vec<Network>>, ApiError> {
    let filters = Params::parse(q.as_deref()).filters(LIST_FILTERS)?.into_inner();
    let list = state.blocking(move |e| e.networks().list(&filters)).await?;
    Ok(Json(list.iter().map(|d| network(d, false)).collect()))
}

async fn inspect(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Network>, ApiError> {
    let d = state.blocking(move |e| e.networks().find(&id)).await?;
    Ok(Json(network(&d, true)))
}

/// Reads a small JSON body; an empty body is `T::default()`.
async fn json_body<T: serde::de::DeserializeOwned + Default>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

/// Turns a create request into the engine's `NetworkCreate`, refusing what
/// berth does not do (swarm scope, ingress, config-only networks) with
/// Docker-like messages rather than ignoring it.
fn network_create(b: NetworkCreateRequest) -> Result<NetworkCreate, ApiError> {
    let name = b.name.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("network name must not be empty"));
    }
    match b.scope.as_deref() {
        None | Some("") | Some("local") => {}
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "invalid scope {s:?}: berth has no swarm, only \"local\" networks exist"
            )))
        }
    }
    if b.ingress.unwrap_or(false) {
        return Err(ApiError::bad_request("ingress networks need swarm mode, which berth does not have"));
    }
    if b.config_only.unwrap_or(false)
        || b.config_from.as_ref().is_some_and(|from| !from.network.is_empty())
    {
        return Err(ApiError::bad_request(
            "config-only networks (--config-only, --config-from) are not supported by berth",
        ));
    }
    let ipam_body = b.ipam.unwrap_or_default();
    let mut config = Vec::new();
    for c in ipam_body.config.unwrap_or_default() {
        if c.auxiliary_addresses.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(ApiError::bad_request("auxiliary addresses (--aux-address) are not supported by berth"));
        }
        config.push(berth_model::network::IpamConfigEntry {
            subnet: c.subnet.unwrap_or_default(),
            ip_range: c.ip_range.unwrap_or_default(),
            gateway: c.gateway.unwrap_or_default(),
        });
    }
    let ipam = Ipam { driver: ipam_body.driver.unwrap_or_default(), options: ipam_body.options, config };
    Ok(NetworkCreate {
        name,
        driver: b.driver.unwrap_or_default(),
        ipam,
        internal: b.internal.unwrap_or(false),
        attachable: b.attachable.unwrap_or(false),
        enable_ipv6: b.enable_ipv6.unwrap_or(false),
        options: b.options.unwrap_or_default(),
        labels: b.labels.unwrap_or_default(),
    })
}

async fn create(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let request = network_create(json_body(body).await?)?;
    let id = state.blocking(move |e| e.networks().create(request)).await?;
    Ok((StatusCode::CREATED, Json(NetworkCreateResponse { id, warning: String::new() })).into_response())
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.blocking(move |e| e.networks().remove(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<NetworkPruneResponse>, ApiError> {
    let filters = Params::parse(q.as_deref()).filters(PRUNE_FILTERS)?.into_inner();
    let names = state.blocking(move |e| e.networks().prune(&filters)).await?;
    Ok(Json(NetworkPruneResponse { networks_deleted: names }))
}

async fn connect(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> Result<Response, ApiError> {
    let b: NetworkConnectRequest = json_body(body).await?;
    let container =
        b.container.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("Container is required"))?;
    let settings = b.endpoint_config.unwrap_or_default();
    state.blocking(move |e| e.containers().connect_network(&id, &container, settings)).await?;
    Ok(StatusCode::OK.into_response())
}

async fn disconnect(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> Result<Response, ApiError> {
    let b: NetworkDisconnectRequest = json_body(body).await?;
    let container =
        b.container.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("Container is required"))?;
    let force = b.force.unwrap_or(false);
    state.blocking(move |e| e.containers().disconnect_network(&id, &container, force)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `HostConfig.NetworkMode` as Docker (API 1.44+) shows it: a container
/// created without one is on the default `bridge` network.
pub fn display_network_mode(mode: &str) -> String {
    match mode {
        "" | "default" => "bridge".to_string(),
        m => m.to_string(),
    }
}

/// One network's `EndpointSettings` as Docker shows them under `Networks`.
fn endpoint_resource(e: &EndpointSettings) -> EndpointResource {
    // API 1.48+: the gateway priority; berth does not rank gateways.
    EndpointResource { settings: e.clone(), gw_priority: 0 }
}

/// `NetworkSettings.Networks` of a container: what it asked for on each
/// network and, while it runs, what it got. A `container:` mode container
/// has none of its own (Docker shows `{}`).
pub fn container_networks(record: &ContainerRecord) -> BTreeMap<String, EndpointResource> {
    let mode = display_network_mode(&record.host_config.network_mode);
    if mode.starts_with("container:") {
        return BTreeMap::new();
    }
    if record.networks.is_empty() {
        // Records from before networks existed have no endpoint entries.
        return BTreeMap::from([(mode, endpoint_resource(&EndpointSettings::default()))]);
    }
    record.networks.iter().map(|(name, e)| (name.clone(), endpoint_resource(e))).collect()
}

/// Docker's `NetworkSettings` of `inspect`. The top-level address fields
/// are the deprecated mirror of the default `bridge` network's endpoint,
/// empty on every other network, as in Docker. `Ports` holds the published
/// ports of a running container (`null` for a port exposed but not
/// published), `{}` otherwise.
pub fn container_network_settings(record: &ContainerRecord) -> NetworkSettings {
    let bridge = record.networks.get("bridge").cloned().unwrap_or_default();
    let sandbox_id = record.sandbox_key.rsplit('/').next().unwrap_or("").to_string();
    NetworkSettings {
        bridge: String::new(),
        endpoint_id: bridge.endpoint_id,
        gateway: bridge.gateway,
        global_ipv6_address: bridge.global_ipv6_address,
        global_ipv6_prefix_len: bridge.global_ipv6_prefix_len,
        hairpin_mode: false,
        ip_address: bridge.ip_address,
        ip_prefix_len: bridge.ip_prefix_len,
        ipv6_gateway: bridge.ipv6_gateway,
        link_local_ipv6_address: String::new(),
        link_local_ipv6_prefix_len: 0,
        mac_address: bridge.mac_address,
        networks: container_networks(record),
        ports: record.ports.clone(),
        sandbox_id,
        sandbox_key: record.sandbox_key.clone(),
        secondary_ip_addresses: None,
        secondary_ipv6_addresses: None,
    }
}

/// `Ports` of a `ps` entry: one `{IP, PrivatePort, PublicPort, Type}` per
/// host binding, `{PrivatePort, Type}` for a port exposed but not published.
pub fn summary_ports(record: &ContainerRecord) -> Vec<Port> {
    let mut out = Vec::new();
    for (key, bindings) in &record.ports {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(private) = port.parse::<u16>() else { continue };
        let unpublished = Port { ip: None, private_port: private, public_port: None, kind: proto.to_string() };
        match bindings {
            Some(list) if !list.is_empty() => {
                for b in list {
                    let ip = if b.host_ip.is_empty() { "0.0.0.0" } else { b.host_ip.as_str() };
                    match b.host_port.parse::<u16>() {
                        Ok(public) => out.push(Port {
                            ip: Some(ip.to_string()),
                            public_port: Some(public),
                            ..unpublished.clone()
                        }),
                        Err(_) => out.push(unpublished.clone()),
                    }
                }
            }
            _ => out.push(unpublished),
        }
    }
    out
}

/// The request's `NetworkingConfig` (its `null`s were dropped when it was
/// read, see `ContainerCreateRequest`). The docker CLI sends the endpoint of a container created without
/// `--network` under the key `default` (with `NetworkMode: "default"`);
/// that is the default `bridge` network, so the key is renamed to it.
pub fn networking_config(cfg: Option<NetworkingConfig>, network_mode: &str) -> NetworkingConfig {
    let Some(mut cfg) = cfg else { return NetworkingConfig::default() };
    if matches!(network_mode, "" | "default") && !cfg.endpoints_config.contains_key("bridge") {
        if let Some(ep) = cfg.endpoints_config.remove("default") {
            cfg.endpoints_config.insert("bridge".to_string(), ep);
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::network::{IpamConfigEntry, NetworkRecord};
    use serde_json::json;

    use crate::apitypes::containers::ContainerCreateRequest;
    use berth_core::network::NetworkContainer;

    fn details() -> NetworkDetails {
        let mut containers = BTreeMap::new();
        containers.insert(
            "c".repeat(64),
            NetworkContainer {
                name: "web".into(),
                endpoint_id: "e".repeat(64),
                mac_address: "02:42:ac:48:00:02".into(),
                ipv4_address: "172.72.0.2/16".into(),
                ipv6_address: String::new(),
            },
        );
        NetworkDetails {
            record: NetworkRecord {
                name: "n1".into(),
                id: "a".repeat(64),
                created: "2026-11-23T09:00:00.000000000Z".into(),
                scope: "local".into(),
                driver: "bridge".into(),
                ipam: Ipam {
                    driver: "default".into(),
                    options: Some(BTreeMap::new()),
                    config: vec![IpamConfigEntry {
                        subnet: "172.72.0.0/16".into(),
                        ip_range: "172.72.0.0/24".into(),
                        gateway: "172.72.0.1".into(),
                    }],
                },
                ..Default::default()
            },
            containers,
        }
    }

    #[test]
    fn inspect_json_has_dockers_members() {
        let v = serde_json::to_value(network(&details(), true)).unwrap();
        for key in [
            "Name",
            "Id",
            "Created",
            "Scope",
            "Driver",
            "EnableIPv6",
            "IPAM",
            "Internal",
            "Attachable",
            "Ingress",
            "ConfigFrom",
            "ConfigOnly",
            "Containers",
            "Options",
            "Labels",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(
            v["IPAM"]["Config"][0],
            json!({"Subnet": "172.72.0.0/16", "IPRange": "172.72.0.0/24", "Gateway": "172.72.0.1"})
        );
        assert_eq!(v["IPAM"]["Driver"], "default");
        let c = &v["Containers"]["c".repeat(64)];
        assert_eq!(c["Name"], "web");
        assert_eq!(c["IPv4Address"], "172.72.0.2/16");
        assert_eq!(c["MacAddress"], "02:42:ac:48:00:02");
        assert_eq!(v["ConfigFrom"], json!({"Network": ""}));
        // The list leaves the members out, as Docker does.
        assert_eq!(serde_json::to_value(network(&details(), false)).unwrap()["Containers"], json!({}));
    }

    #[test]
    fn create_requests_from_the_docker_cli_translate() {
        let b: NetworkCreateRequest = serde_json::from_str(
            r#"{"Name":"n1","Driver":"bridge","Scope":"","EnableIPv6":null,"IPAM":{"Driver":"default","Config":[{"Subnet":"172.72.0.0/16","IPRange":"172.72.0.0/24","Gateway":"172.72.0.1"}],"Options":{}},"Internal":true,"Attachable":false,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{"com.docker.network.bridge.name":"br-x"},"Labels":{"a":"b"}}"#,
        )
        .unwrap();
        let r = network_create(b).unwrap();
        assert_eq!(r.name, "n1");
        assert!(r.internal && !r.enable_ipv6);
        assert_eq!(r.ipam.config[0].ip_range, "172.72.0.0/24");
        assert_eq!(r.options["com.docker.network.bridge.name"], "br-x");
        assert_eq!(r.labels["a"], "b");
    }

    #[test]
    fn create_refuses_what_berth_does_not_do() {
        for body in [
            r#"{"Name":""}"#,
            r#"{"Name":"x","Scope":"swarm"}"#,
            r#"{"Name":"x","Ingress":true}"#,
            r#"{"Name":"x","ConfigOnly":true}"#,
            r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.0.0.0/24","AuxiliaryAddresses":{"a":"10.0.0.5"}}]}}"#,
        ] {
            let b: NetworkCreateRequest = serde_json::from_str(body).unwrap();
            assert!(network_create(b).is_err(), "{body}");
        }
    }

    #[test]
    fn endpoint_settings_accept_nulls() {
        let b: NetworkConnectRequest = serde_json::from_value(json!({"Container": "web", "EndpointConfig":
            {"IPAMConfig": {"IPv4Address": "172.72.0.9"}, "Aliases": ["svc"], "MacAddress": null, "Links": null}}))
        .unwrap();
        let s = b.endpoint_config.unwrap();
        assert_eq!(s.ipam_config.unwrap().ipv4_address, "172.72.0.9");
        assert_eq!(s.aliases, Some(vec!["svc".to_string()]));
    }

    #[test]
    fn the_docker_clis_default_endpoint_is_the_bridge_networks() {
        let body = json!({"EndpointsConfig": {"default": {"IPAMConfig": null, "Links": null, "MacAddress": "", "GwPriority": 0}}});
        let request: ContainerCreateRequest =
            serde_json::from_value(json!({"Image": "busybox", "NetworkingConfig": body})).unwrap();
        let body = request.networking_config;
        let cfg = networking_config(body.clone(), "default");
        assert_eq!(cfg.endpoints_config.keys().collect::<Vec<_>>(), vec!["bridge"]);
        // A user-defined network named "default" is left alone when it is the mode.
        let cfg = networking_config(body, "n1");
        assert_eq!(cfg.endpoints_config.keys().collect::<Vec<_>>(), vec!["default"]);
        assert!(networking_config(None, "").endpoints_config.is_empty());
    }
}
