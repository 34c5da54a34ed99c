//! Volume bodies: `GET /volumes[/{name}]`, `POST /volumes/create`,
//! `POST /volumes/prune` (and the `Volumes` of `GET /system/df`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::null_as_default;

/// Docker's `Volume` object. Members are in the order berth has always
/// sent them (alphabetical, as `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Volume {
    /// RFC 3339.
    pub created_at: String,
    pub driver: String,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    pub mountpoint: String,
    pub name: String,
    /// Driver options (`--opt`); `null` when there are none, as Docker sends.
    pub options: Option<BTreeMap<String, String>>,
    /// Always `local`: berth has no cluster volumes.
    pub scope: String,
    /// The driver's status map; absent when the driver reports none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<BTreeMap<String, Value>>,
    /// Only when the size was computed (`system df`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_data: Option<VolumeUsageData>,
}

/// `Volume.UsageData`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeUsageData {
    /// How many containers use the volume; -1 when unknown.
    pub ref_count: i64,
    /// Bytes of content; -1 when unknown.
    pub size: i64,
}

/// `GET /volumes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeListResponse {
    #[serde(deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
    #[serde(deserialize_with = "null_as_default")]
    pub warnings: Vec<String>,
}

/// `POST /volumes/create`. Every member may be `null` (docker-py sends
/// that for anything unset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeCreateRequest {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// `POST /volumes/prune`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumePruneResponse {
    pub space_reclaimed: u64,
    /// `null` when nothing was removed, as Docker sends.
    pub volumes_deleted: Option<Vec<String>>,
}
