//! Image bodies: list (`GET /images/json`), inspect, history, remove and
//! prune, and podman's image mount.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::null_as_default;

/// Docker's `ImageSummary` (`GET /images/json`, `system df`). Members are in
/// the order berth has always sent them (alphabetical, as `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageSummary {
    /// Containers using the image; -1 when not counted.
    #[serde(default = "unknown")]
    pub containers: i64,
    /// Seconds since the epoch.
    pub created: i64,
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "ParentId")]
    pub parent_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub repo_digests: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub repo_tags: Vec<String>,
    /// Bytes shared with other images; -1 when not computed.
    #[serde(default = "unknown")]
    pub shared_size: i64,
    pub size: u64,
    /// Before API 1.44 only: the same as `Size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
}

fn unknown() -> i64 {
    -1
}

/// Docker's `ImageInspect` (`GET /images/{name}/json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageInspect {
    pub architecture: String,
    pub author: String,
    pub comment: String,
    pub config: ImageConfig,
    /// Before API 1.45 only (moby#47430): the container the image was committed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Before API 1.45 only: that container's config, zero-valued for images
    /// made by `import` or `load` of an image without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_config: Option<ImageConfig>,
    /// RFC 3339; `null` when the image's config has no `created`.
    pub created: Option<String>,
    pub docker_version: String,
    pub graph_driver: GraphDriver,
    #[serde(rename = "Id")]
    pub id: String,
    pub metadata: ImageMetadata,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    pub parent: String,
    #[serde(deserialize_with = "null_as_default")]
    pub repo_digests: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub repo_tags: Vec<String>,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Before API 1.44 only: the same as `Size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
}

/// `ImageInspect.Config`: Docker's container config shape, filled from the
/// image's OCI config. `null` where the image does not set a member;
/// the optional members are left out then.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    pub attach_stderr: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub cmd: Option<Vec<String>>,
    pub domainname: String,
    pub entrypoint: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    pub hostname: String,
    pub image: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub on_build: Option<Vec<String>>,
    pub open_stdin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    pub stdin_once: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    pub tty: bool,
    pub user: String,
    pub volumes: Option<BTreeMap<String, Value>>,
    pub working_dir: String,
}

/// `GraphDriver`: the storage driver; berth has no per-image data to show.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GraphDriver {
    pub data: Option<BTreeMap<String, String>>,
    pub name: String,
}

/// `RootFS`: the layers' diff IDs, base first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RootFs {
    #[serde(deserialize_with = "null_as_default")]
    pub layers: Vec<String>,
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `Metadata`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageMetadata {
    pub last_tag_time: String,
}

/// One entry of `GET /images/{name}/history`. Members are in the order
/// berth has always sent them (alphabetical, as `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HistoryEntry {
    pub comment: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub created_by: String,
    /// The layer's image ID, or `<missing>`.
    #[serde(rename = "Id")]
    pub id: String,
    pub size: u64,
    /// `null` when no tag names this entry.
    pub tags: Option<Vec<String>>,
}

/// One entry of `DELETE /images/{name}` and of `ImagesDeleted`: exactly one
/// of the members is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageDeleteResponseItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untagged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

/// `POST /images/prune`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImagePruneResponse {
    /// `null` when nothing was removed, as Docker sends.
    pub images_deleted: Option<Vec<ImageDeleteResponseItem>>,
    pub space_reclaimed: u64,
}

/// `POST /images/{name}/mount` (podman's): where the rootfs is mounted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageMountResponse {
    pub path: String,
}

/// One entry of `GET /images/search`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ImageSearchResponseItem {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub is_official: bool,
    /// Deprecated by Docker (always false on Docker Hub since 2023), still sent.
    #[serde(default)]
    pub is_automated: bool,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub star_count: u64,
}

/// `GET /distribution/{name}/json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct DistributionInspect {
    #[serde(rename = "Descriptor")]
    pub descriptor: Descriptor,
    #[serde(rename = "Platforms", default)]
    pub platforms: Vec<DistributionPlatform>,
}

/// An OCI descriptor as the API spells it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A platform of `DistributionInspect`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct DistributionPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

/// The `aux` member of a push's stream, once per tag pushed (Docker's `PushResult`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PushResult {
    pub tag: String,
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's size in bytes.
    pub size: u64,
}
