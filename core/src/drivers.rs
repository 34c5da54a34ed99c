//! The three driver traits and the registry that finds a driver by name.
//!
//! They mirror the protocols Docker's own plugins speak (graphdriver,
//! VolumeDriver, libnetwork's remote driver) so a Docker user recognises them.
//! Drivers decide, the host executes: anything that mounts or configures the
//! network comes back as a plan (`MountPlan`, `NetworkPlan`) for the core's
//! executor. Calls are synchronous; the engine runs them off its async threads
//! and under a deadline, so a slow driver stalls only the requests that use it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::model::network::{EndpointCreateRequest, EndpointInfo, JoinRequest, NetworkCreateRequest, NetworkPlan};
use crate::model::volume::{Scope, VolumeCreateRequest, VolumeInfo};
use crate::model::MountPlan;

/// Errors a driver reports; the API maps them to Docker's status codes.
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
}

impl DriverError {
    /// An I/O error with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DriverError::Io { context: context.into(), source }
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

/// Drivers of one kind by name. In-tree drivers and plugins register here alike.
pub struct Registry<D: ?Sized> {
    drivers: RwLock<BTreeMap<String, Arc<D>>>,
}

impl<D: ?Sized> Default for Registry<D> {
    fn default() -> Self {
        Registry { drivers: RwLock::new(BTreeMap::new()) }
    }
}

impl<D: ?Sized> Registry<D> {
    /// Adds or replaces the driver called `name`.
    pub fn register(&self, name: &str, driver: Arc<D>) {
        self.drivers.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), driver);
    }

    /// Removes the driver called `name`, returning it.
    pub fn unregister(&self, name: &str) -> Option<Arc<D>> {
        self.drivers.write().unwrap_or_else(|e| e.into_inner()).remove(name)
    }

    /// The driver called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<D>> {
        self.drivers.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Names of all registered drivers, sorted.
    pub fn names(&self) -> Vec<String> {
        self.drivers.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }
}

/// The registries of all three kinds.
#[derive(Default)]
pub struct Drivers {
    pub volume: Registry<dyn VolumeDriver>,
    pub network: Registry<dyn NetworkDriver>,
}
