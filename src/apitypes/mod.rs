//! The Docker Engine API bodies berth serves, as serde structs: the server
//! (`api/`) builds its replies from them and the CLI (`cli/`) reads the
//! replies back into them, and the other way round for the request bodies
//! the CLI sends, so both sides agree on one spelling of each field. Names and shapes follow moby's `api/swagger.yaml` and, first of
//! all, what berth has always put on the wire: the docker CLI, docker-py
//! and docker-compose read these bodies.
//!
//! Members are declared in the order berth has always sent them:
//! alphabetical for the bodies that `json!` used to build (serde_json sorts
//! an object's keys), the engine's own order for events. Berth's model
//! types nested inside (`Config`, `HostConfig`, `State`, endpoint settings,
//! `IPAM`) keep their declaration order; `json!` used to sort those too.
//! No client reads members by position.
//!
//! Every struct is liberal on input (`#[serde(default)]`, `null` read as
//! the default where Docker may send one) so the CLI never fails on a
//! member the server leaves out. Translating engine records into these
//! types is the server's job and lives in `api/`; this module holds no
//! engine logic.

pub mod auth;
pub mod containers;
pub mod filters;
pub mod images;
pub mod networks;
pub mod plugins;
pub mod system;
pub mod volumes;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Reads `null` as the type's default: Docker's Go encoder writes `null`
/// for a nil map or slice, where berth's types want an empty one.
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads a member in which any `null`, however deep, stands for the
/// default of its field: the value is read whole, its `null`s dropped,
/// then read as `T`. Clients send `"MacAddress": null` and the like in
/// endpoint settings, where berth's model types want a string.
pub fn nulls_stripped<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let Some(mut value) = Option::<Value>::deserialize(deserializer)? else { return Ok(None) };
    strip_nulls_deep(&mut value);
    serde_json::from_value(value).map(Some).map_err(serde::de::Error::custom)
}

/// Removes `null` members everywhere below `v`, so every field falls back
/// to its default.
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
