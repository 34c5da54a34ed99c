//! The three driver traits and the errors they report.
//!
//! They mirror the protocols Docker's own plugins speak (graphdriver,
//! VolumeDriver, libnetwork's remote driver) so a Docker user recognises them.
//! Drivers decide, the host executes: anything that mounts or configures the
//! network comes back as a plan (`MountPlan`, `NetworkPlan`) for the engine's
//! executor. Calls are synchronous; the engine runs them off its async threads
//! and under a deadline, so a slow driver stalls only the requests that use it.

use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::network::{EndpointCreateRequest, EndpointInfo, JoinRequest, NetworkCreateRequest, NetworkPlan};
use crate::volume::{Scope, VolumeCreateRequest, VolumeInfo};
use crate::MountPlan;

/// Errors a driver reports; the API maps them to Docker's status codes.
///
/// Across the plugin boundary (the WIT `driver-error`, the dylib ABI's JSON)
/// an error travels as `{"kind": "not_found", "message": "..."}`; `Io` and
/// `Plugin` travel as `failed`, and the host turns a plugin's `failed` into
/// `Plugin` naming the plugin.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// 404: the driver has no such object.
    #[error("{0}")]
    NotFound(String),
    /// 409: the object exists already, or is in use.
    #[error("{0}")]
    Conflict(String),
    /// 400: the request is malformed or its options are wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// The driver cannot do this on this host.
    #[error("{0}")]
    Unsupported(String),
    /// A filesystem or kernel call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A plugin failed: trapped, timed out, ran out of memory or answered nonsense.
    #[error("plugin {plugin}: {message}")]
    Plugin { plugin: String, message: String },
    /// Anything else that failed inside a driver (a plugin's own `failed`).
    #[error("{0}")]
    Failed(String),
}

impl DriverError {
    /// An I/O error with what was being done when it happened.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        DriverError::Io { context: context.to_string(), source }
    }

    /// The wire name of the error's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            DriverError::NotFound(_) => "not_found",
            DriverError::Conflict(_) => "conflict",
            DriverError::InvalidArgument(_) => "invalid_argument",
            DriverError::Unsupported(_) => "unsupported",
            DriverError::Io { .. } | DriverError::Plugin { .. } | DriverError::Failed(_) => "failed",
        }
    }

    /// The words of the error, as they travel beside its `kind`.
    pub fn message(&self) -> String {
        match self {
            DriverError::NotFound(m)
            | DriverError::Conflict(m)
            | DriverError::InvalidArgument(m)
            | DriverError::Unsupported(m)
            | DriverError::Failed(m) => m.clone(),
            other => other.to_string(),
        }
    }
}

/// The wire form of a `DriverError`.
#[derive(Serialize, Deserialize)]
struct WireError {
    kind: String,
    message: String,
}

impl Serialize for DriverError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireError { kind: self.kind().to_string(), message: self.message() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DriverError {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let WireError { kind, message } = WireError::deserialize(deserializer)?;
        Ok(match kind.as_str() {
            "not_found" => DriverError::NotFound(message),
            "conflict" => DriverError::Conflict(message),
            "invalid_argument" => DriverError::InvalidArgument(message),
            "unsupported" => DriverError::Unsupported(message),
            _ => DriverError::Failed(message),
        })
    }
}

/// Result of a driver call.
pub type DriverResult<T> = Result<T, DriverError>;

/// How one path differs between a layer and its parent (`docker diff`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

/// One entry of `docker diff`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Change {
    /// Absolute path inside the container, e.g. `/etc/hosts`.
    pub path: String,
    pub kind: ChangeKind,
}

/// The storage driver (Docker's graphdriver): layers on a parent chain and the
/// container root filesystems made of them. Layer IDs are the driver's own
/// names (`LayerRecord::storage_id`).
pub trait StorageDriver: Send + Sync {
    /// The driver's name, shown by `info` as `Driver`.
    fn name(&self) -> &str;

    /// Key/value pairs for `info`'s `DriverStatus`.
    fn status(&self) -> Vec<(String, String)>;

    /// graphdriver `Create`: an empty layer `id` on `parent`, for an image
    /// layer (`apply_diff` follows).
    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()>;

    /// graphdriver `CreateReadWrite`: a container's writable layer `id` on
    /// `parent`. Drivers whose layers are all alike need not override it;
    /// one that shares files between image layers makes them its own here.
    fn create_read_write(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        self.create(id, parent)
    }

    /// graphdriver `ApplyDiff`: unpack an uncompressed OCI layer tar into the
    /// (empty) layer `id`, converting OCI whiteouts to the driver's form.
    /// Returns the bytes of file content written.
    fn apply_diff(&self, id: &str, diff: &mut dyn Read) -> DriverResult<u64>;

    /// graphdriver `Get`: the mount that shows layer `id` merged over its parents.
    /// A layer made by `create` for a container is writable; image layers are not.
    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan>;

    /// graphdriver `Diff`: write layer `id`'s changes against its parent as an
    /// OCI layer tar (whiteouts converted back to `.wh.` entries).
    fn export_diff(&self, id: &str, out: &mut dyn Write) -> DriverResult<()>;

    /// graphdriver `Changes`: what layer `id` adds, changes and deletes.
    fn changes(&self, id: &str) -> DriverResult<Vec<Change>>;

    /// graphdriver `DiffSize`: bytes of content in layer `id` alone.
    fn usage(&self, id: &str) -> DriverResult<u64>;

    /// graphdriver `Exists`.
    fn exists(&self, id: &str) -> bool;

    /// graphdriver `Remove`: delete layer `id` (it must not be mounted).
    fn remove(&self, id: &str) -> DriverResult<()>;

    /// The IDs of every layer present, complete or not, so the engine can
    /// reconcile its store with the driver after a crash.
    fn list(&self) -> DriverResult<Vec<String>>;
}

/// What a volume driver can do (`VolumeDriver.Capabilities`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeCapabilities {
    pub scope: Scope,
}

/// A volume driver (Docker's VolumeDriver protocol). Third-party storage
/// backends are volume drivers.
pub trait VolumeDriver: Send + Sync {
    /// The driver's name (`-d NAME`).
    fn name(&self) -> &str;

    /// Whether someone other than the engine controls the paths of its
    /// plans (plugins): the engine then mounts them itself, without
    /// following symlinks, rather than handing a path to the container.
    fn confined(&self) -> bool {
        false
    }

    /// `VolumeDriver.Capabilities`.
    fn capabilities(&self) -> VolumeCapabilities;

    /// `VolumeDriver.Create`: make volume `name` with the given options.
    fn create(&self, request: &VolumeCreateRequest) -> DriverResult<VolumeInfo>;

    /// `VolumeDriver.Remove`.
    fn remove(&self, name: &str) -> DriverResult<()>;

    /// `VolumeDriver.Mount`: the mount that gives container `caller_id` the
    /// volume's data. The host performs it.
    fn mount(&self, name: &str, caller_id: &str) -> DriverResult<MountPlan>;

    /// `VolumeDriver.Unmount`: container `caller_id` no longer uses the volume.
    fn unmount(&self, name: &str, caller_id: &str) -> DriverResult<()>;

    /// `VolumeDriver.Path`: where the volume's data is on the host, if anywhere.
    fn path(&self, name: &str) -> DriverResult<Option<PathBuf>>;

    /// `VolumeDriver.Get`.
    fn get(&self, name: &str) -> DriverResult<VolumeInfo>;

    /// `VolumeDriver.List`: every volume the driver has, including ones it
    /// made without berth.
    fn list(&self) -> DriverResult<Vec<VolumeInfo>>;
}

/// What a network driver can do (libnetwork `GetCapabilities`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkCapabilities {
    pub scope: Scope,
    pub connectivity_scope: Scope,
}

/// A network driver (libnetwork's CNM remote driver protocol). Every call that
/// changes the host returns a plan.
pub trait NetworkDriver: Send + Sync {
    /// The driver's name (`-d NAME`).
    fn name(&self) -> &str;

    /// Whether its plans may act only on the host links its own plans
    /// created (plugins); in-tree drivers are trusted with every link.
    fn confined(&self) -> bool {
        false
    }

    /// `GetCapabilities`.
    fn capabilities(&self) -> NetworkCapabilities;

    /// `CreateNetwork`: validate options and IPAM data; the plan sets up shared
    /// state such as a bridge.
    fn create_network(&self, request: &NetworkCreateRequest) -> DriverResult<NetworkPlan>;

    /// `DeleteNetwork`: the plan removes what `create_network` made.
    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan>;

    /// `CreateEndpoint`: accept (or fill in) the endpoint's addresses and MAC.
    fn create_endpoint(&self, request: &EndpointCreateRequest) -> DriverResult<EndpointInfo>;

    /// `DeleteEndpoint`.
    fn delete_endpoint(&self, network_id: &str, endpoint_id: &str) -> DriverResult<()>;

    /// `Join`: the plan puts the endpoint's interface into the sandbox.
    fn join(&self, request: &JoinRequest) -> DriverResult<NetworkPlan>;

    /// `Leave`: the plan takes it out again.
    fn leave(&self, network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan>;
}
