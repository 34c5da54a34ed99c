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
use serde::Deserialize;
use serde_json::{json, Value};

use super::images::Params;
use super::{ApiError, AppState};

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
pub fn network_json(d: &NetworkDetails, containers: bool) -> Value {
    let r = &d.record;
    let ipam = ipam_json(&r.ipam);
    let members: serde_json::Map<String, Value> = if containers {
        d.containers
            .iter()
            .map(|(id, c)| {
                (
                    id.clone(),
                    json!({
                        "Name": c.name,
                        "EndpointID": c.endpoint_id,
                        "MacAddress": c.mac_address,
                        "IPv4Address": c.ipv4_address,
                        "IPv6Address": c.ipv6_address,
                    }),
                )
            })
            .collect()
    } else {
        serde_json::Map::new()
    };
    json!({
        "Name": r.name,
        "Id": r.id,
        "Created": r.created,
        "Scope": if r.scope.is_empty() { "local" } else { r.scope.as_str() },
        "Driver": r.driver,
        "EnableIPv4": true,
        "EnableIPv6": r.enable_ipv6,
        "IPAM": ipam,
        "Internal": r.internal,
        "Attachable": r.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": members,
        "Options": r.options,
        "Labels": r.labels,
    })
}

/// `IPAM` as Docker shows it: `Driver` never empty, each `Config` entry with
/// only the members that are set.
fn ipam_json(ipam: &Ipam) -> Value {
    let driver = if ipam.driver.is_empty() { "default" } else { ipam.driver.as_str() };
    json!({ "Driver": driver, "Options": ipam.options, "Config": ipam.config })
}

async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let filters = Params::parse(q.as_deref()).filters(LIST_FILTERS)?.into_inner();
    let list = state.blocking(move |e| e.list_networks(&filters)).await?;
    Ok(Json(Value::Array(list.iter().map(|d| network_json(d, false)).collect())))
}

async fn inspect(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let d = state.blocking(move |e| e.find_network(&id)).await?;
    Ok(Json(network_json(&d, true)))
}

/// One `IPAM.Config[]` entry of a create request.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfigBody {
    subnet: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    gateway: Option<String>,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    driver: Option<String>,
    config: Option<Vec<IpamConfigBody>>,
    options: Option<BTreeMap<String, String>>,
}

/// Docker's `NetworkCreateRequest`. Every member may be `null` (docker-py
/// sends that for anything unset).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    scope: Option<String>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    internal: Option<bool>,
    attachable: Option<bool>,
    ingress: Option<bool>,
    config_only: Option<bool>,
    config_from: Option<Value>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
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
fn network_create(b: CreateBody) -> Result<NetworkCreate, ApiError> {
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
        || b.config_from
            .as_ref()
            .is_some_and(|v| v.get("Network").and_then(Value::as_str).is_some_and(|s| !s.is_empty()))
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
    let id = state.blocking(move |e| e.create_network(request)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": id, "Warning": "" }))).into_response())
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.blocking(move |e| e.remove_network(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let filters = Params::parse(q.as_deref()).filters(PRUNE_FILTERS)?.into_inner();
    let names = state.blocking(move |e| e.prune_networks(&filters)).await?;
    Ok(Json(json!({ "NetworksDeleted": names })))
}

/// Removes `null` members everywhere below `v`, so every field falls back
/// to its default (clients send `"MacAddress": null` and the like).
pub fn strip_nulls_deep(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(strip_nulls_deep);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls_deep),
        _ => {}
    }
}

/// Parses one `EndpointSettings` object of a request (connect, create).
pub fn endpoint_settings(mut v: Value) -> Result<EndpointSettings, ApiError> {
    strip_nulls_deep(&mut v);
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid endpoint settings: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: Option<String>,
    endpoint_config: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DisconnectBody {
    container: Option<String>,
    force: Option<bool>,
}

async fn connect(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> Result<Response, ApiError> {
    let b: ConnectBody = json_body(body).await?;
    let container =
        b.container.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("Container is required"))?;
    let settings = match b.endpoint_config {
        Some(v) => endpoint_settings(v)?,
        None => EndpointSettings::default(),
    };
    state.blocking(move |e| e.connect_network(&id, &container, settings)).await?;
    Ok(StatusCode::OK.into_response())
}

async fn disconnect(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> Result<Response, ApiError> {
    let b: DisconnectBody = json_body(body).await?;
    let container =
        b.container.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("Container is required"))?;
    let force = b.force.unwrap_or(false);
    state.blocking(move |e| e.disconnect_network(&id, &container, force)).await?;
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
fn endpoint_json(e: &EndpointSettings) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        // API 1.48+: the gateway priority; berth does not rank gateways.
        m.insert("GwPriority".into(), json!(0));
    }
    v
}

/// `NetworkSettings.Networks` of a container: what it asked for on each
/// network and, while it runs, what it got. A `container:` mode container
/// has none of its own (Docker shows `{}`).
pub fn container_networks(record: &ContainerRecord) -> Value {
    let mode = display_network_mode(&record.host_config.network_mode);
    if mode.starts_with("container:") {
        return json!({});
    }
    if record.networks.is_empty() {
        // Records from before networks existed have no endpoint entries.
        return json!({ mode: endpoint_json(&EndpointSettings::default()) });
    }
    Value::Object(record.networks.iter().map(|(name, e)| (name.clone(), endpoint_json(e))).collect())
}

/// `NetworkSettings.Ports`: the published ports of a running container
/// (`null` for a port exposed but not published), `{}` otherwise.
fn ports_json(record: &ContainerRecord) -> Value {
    serde_json::to_value(&record.ports).unwrap_or_else(|_| json!({}))
}

/// Docker's `NetworkSettings` of `inspect`. The top-level address fields
/// are the deprecated mirror of the default `bridge` network's endpoint,
/// empty on every other network, as in Docker.
pub fn container_network_settings(record: &ContainerRecord) -> Value {
    let bridge = record.networks.get("bridge").cloned().unwrap_or_default();
    let sandbox_id = record.sandbox_key.rsplit('/').next().unwrap_or("").to_string();
    json!({
        "Bridge": "",
        "SandboxID": sandbox_id,
        "SandboxKey": record.sandbox_key,
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports_json(record),
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": bridge.endpoint_id,
        "Gateway": bridge.gateway,
        "GlobalIPv6Address": bridge.global_ipv6_address,
        "GlobalIPv6PrefixLen": bridge.global_ipv6_prefix_len,
        "IPAddress": bridge.ip_address,
        "IPPrefixLen": bridge.ip_prefix_len,
        "IPv6Gateway": bridge.ipv6_gateway,
        "MacAddress": bridge.mac_address,
        "Networks": container_networks(record),
    })
}

/// `Ports` of a `ps` entry: one `{IP, PrivatePort, PublicPort, Type}` per
/// host binding, `{PrivatePort, Type}` for a port exposed but not published.
pub fn summary_ports(record: &ContainerRecord) -> Value {
    let mut out = Vec::new();
    for (key, bindings) in &record.ports {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(private) = port.parse::<u16>() else { continue };
        match bindings {
            Some(list) if !list.is_empty() => {
                for b in list {
                    let ip = if b.host_ip.is_empty() { "0.0.0.0" } else { b.host_ip.as_str() };
                    match b.host_port.parse::<u16>() {
                        Ok(public) => {
                            out.push(json!({ "IP": ip, "PrivatePort": private, "PublicPort": public, "Type": proto }))
                        }
                        Err(_) => out.push(json!({ "PrivatePort": private, "Type": proto })),
                    }
                }
            }
            _ => out.push(json!({ "PrivatePort": private, "Type": proto })),
        }
    }
    Value::Array(out)
}

/// The request's `NetworkingConfig` (`null` members allowed anywhere).
/// The docker CLI sends the endpoint of a container created without
/// `--network` under the key `default` (with `NetworkMode: "default"`);
/// that is the default `bridge` network, so the key is renamed to it.
pub fn networking_config(v: Option<Value>, network_mode: &str) -> Result<NetworkingConfig, ApiError> {
    let Some(mut v) = v else { return Ok(NetworkingConfig::default()) };
    strip_nulls_deep(&mut v);
    let mut cfg: NetworkingConfig =
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid NetworkingConfig: {e}")))?;
    if matches!(network_mode, "" | "default") && !cfg.endpoints_config.contains_key("bridge") {
        if let Some(ep) = cfg.endpoints_config.remove("default") {
            cfg.endpoints_config.insert("bridge".to_string(), ep);
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::network::{IpamConfigEntry, NetworkRecord};
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
        let v = network_json(&details(), true);
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
        assert_eq!(network_json(&details(), false)["Containers"], json!({}));
    }

    #[test]
    fn create_requests_from_the_docker_cli_translate() {
        let b: CreateBody = serde_json::from_str(
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
            let b: CreateBody = serde_json::from_str(body).unwrap();
            assert!(network_create(b).is_err(), "{body}");
        }
    }

    #[test]
    fn endpoint_settings_accept_nulls() {
        let s = endpoint_settings(
            json!({"IPAMConfig": {"IPv4Address": "172.72.0.9"}, "Aliases": ["svc"], "MacAddress": null, "Links": null}),
        )
        .unwrap();
        assert_eq!(s.ipam_config.unwrap().ipv4_address, "172.72.0.9");
        assert_eq!(s.aliases, Some(vec!["svc".to_string()]));
    }

    #[test]
    fn the_docker_clis_default_endpoint_is_the_bridge_networks() {
        let body = json!({"EndpointsConfig": {"default": {"IPAMConfig": null, "Links": null, "MacAddress": "", "GwPriority": 0}}});
        let cfg = networking_config(Some(body.clone()), "default").unwrap();
        assert_eq!(cfg.endpoints_config.keys().collect::<Vec<_>>(), vec!["bridge"]);
        // A user-defined network named "default" is left alone when it is the mode.
        let cfg = networking_config(Some(body), "n1").unwrap();
        assert_eq!(cfg.endpoints_config.keys().collect::<Vec<_>>(), vec!["default"]);
        assert!(networking_config(None, "").unwrap().endpoints_config.is_empty());
    }
}
