//! berth-sdk: what plugin authors depend on.
//!
//! Implement `VolumeDriver` (a storage backend) or `NetworkDriver`, call one
//! macro — `export_volume_driver!(MyType)` or `export_network_driver!(MyType)` —
//! and the same source builds as a `wasm32-wasip2` component (the worlds in
//! `wit/plugin.wit`) or as a native `cdylib` (the ABI in `abi`). Check it with
//! the conformance kit (`conformance`) in your own tests.
//!
//! A native library may instead provide the daemon's `StorageDriver` (image
//! layers and container root filesystems, Docker's graphdriver) with
//! `export_storage_driver!(MyType)`; that kind has no WASM form.
//!
//! A driver may be created afresh for every call (the WASM host runs each
//! call in a new instance), so it keeps its state in its data dir
//! (`PluginContext::data_dir`), never only in memory.

pub mod abi;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod component;
#[cfg(not(target_arch = "wasm32"))]
pub mod conformance;
pub mod dispatch;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod native;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The engine's model (`berth-model`): the documents a driver exchanges with
/// the host are the engine's own types, so the two cannot drift apart. Paths
/// in them are in the plugin's own view: under `/data` for a WASM plugin,
/// under `PluginContext::data_dir` for a dylib.
pub use berth_model as model;
pub use berth_model::drivers::{Change, ChangeKind, DriverError, DriverResult, NetworkCapabilities, VolumeCapabilities};
pub use berth_model::network::{
    EndpointCreateRequest, EndpointInfo, FirewallRule, IpamPool, JoinRequest, LinkKind, NetAction, Netns, NetworkCreateRequest, NetworkPlan,
};
pub use berth_model::volume::{Scope, VolumeCreateRequest, VolumeInfo};
pub use berth_model::{MountPlan, MountSpec};

/// What the host gives a driver when it is created.
#[derive(Clone, Debug, Default)]
pub struct PluginContext {
    /// The plugin's own directory: `/data` inside a WASM plugin, the real
    /// host path for a dylib. Mount plans name paths under it.
    pub data_dir: PathBuf,
    /// Settings: `plugin.toml` defaults, changed by `berth plugin set`.
    pub settings: BTreeMap<String, String>,
}

/// A storage backend (Docker's VolumeDriver protocol), author side.
pub trait VolumeDriver: Send + Sync + 'static {
    /// Makes the driver for one call or one library lifetime.
    fn new(ctx: PluginContext) -> DriverResult<Self>
    where
        Self: Sized;
    /// `VolumeDriver.Capabilities`.
    fn capabilities(&self) -> VolumeCapabilities {
        VolumeCapabilities::default()
    }
    /// `VolumeDriver.Create`: makes the volume (Docker: creating an existing name again is not an error).
    fn create(&self, request: VolumeCreateRequest) -> DriverResult<VolumeInfo>;
    /// `VolumeDriver.Remove`: deletes the volume and its data (the engine checks it is unused).
    fn remove(&self, name: &str) -> DriverResult<()>;
    /// The mount that gives container `caller_id` the volume; a bind source lies under the data dir.
    fn mount(&self, name: &str, caller_id: &str) -> DriverResult<MountPlan>;
    /// `VolumeDriver.Unmount`: container `caller_id` no longer uses the volume.
    fn unmount(&self, name: &str, caller_id: &str) -> DriverResult<()>;
    /// Where the volume's data is (under the data dir), if anywhere.
    fn path(&self, name: &str) -> DriverResult<Option<String>>;
    /// `VolumeDriver.Get`: one volume, `NotFound` if the driver has none of that name.
    fn get(&self, name: &str) -> DriverResult<VolumeInfo>;
    /// Every volume the driver has, including ones made without berth.
    fn list(&self) -> DriverResult<Vec<VolumeInfo>>;
}

/// A network driver (libnetwork's CNM remote driver), author side. Calls that
/// change the host return plans; the host checks and executes them.
pub trait NetworkDriver: Send + Sync + 'static {
    /// Makes the driver for one call or one library lifetime.
    fn new(ctx: PluginContext) -> DriverResult<Self>
    where
        Self: Sized;
    /// `GetCapabilities`.
    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities::default()
    }
    /// `CreateNetwork`: the plan that sets the network up on the host (host namespace only).
    fn create_network(&self, request: NetworkCreateRequest) -> DriverResult<NetworkPlan>;
    /// `DeleteNetwork`: the plan that undoes `create_network`.
    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan>;
    /// `CreateEndpoint`: records the endpoint (in the data dir) and says its addresses.
    fn create_endpoint(&self, request: EndpointCreateRequest) -> DriverResult<EndpointInfo>;
    /// `DeleteEndpoint`: forgets the endpoint.
    fn delete_endpoint(&self, network_id: &str, endpoint_id: &str) -> DriverResult<()>;
    /// `Join`: the plan that puts the endpoint into the sandbox as `interface_name`.
    fn join(&self, request: JoinRequest) -> DriverResult<NetworkPlan>;
    /// `Leave`: the plan that removes what `join` left on the host.
    fn leave(&self, network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan>;
}

/// A storage driver (Docker's graphdriver), author side: image layers on a
/// parent chain and the writable layers of containers. Native only — it runs
/// in the daemon on every image pull and container start — and chosen with
/// `berth daemon --storage-driver <plugin>`. Layer IDs are the engine's names
/// (letters, digits, `-`, `_`, `.`); the layers live under the data dir.
pub trait StorageDriver: Send + Sync + 'static {
    /// Makes the driver once per library lifetime (and once per check at install).
    fn new(ctx: PluginContext) -> DriverResult<Self>
    where
        Self: Sized;
    /// Key/value pairs `berth info` shows under the driver's name.
    fn status(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// An empty image layer `id` on `parent` (`Conflict` if `id` exists);
    /// `apply_diff` fills it.
    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()>;
    /// A container's writable layer `id` on `parent` (Docker's
    /// `CreateReadWrite`); by default the same as `create`.
    fn create_read_write(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        self.create(id, parent)
    }
    /// Unpacks an uncompressed OCI layer tar into the new layer `id`,
    /// honouring whiteouts (`.wh.NAME` deletes NAME, `.wh..wh..opq` hides the
    /// parent's contents of its directory). Answers the bytes of file content written.
    fn apply_diff(&self, id: &str, diff: &mut dyn std::io::Read) -> DriverResult<u64>;
    /// The mount that shows layer `id` merged over its parents; writable for
    /// a container's layer. Sources lie under the data dir.
    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan>;
    /// Writes layer `id`'s changes against its parent as an OCI layer tar
    /// (deletions as `.wh.` entries).
    fn export_diff(&self, id: &str, out: &mut dyn std::io::Write) -> DriverResult<()>;
    /// What layer `id` adds, changes and deletes against its parent.
    fn changes(&self, id: &str) -> DriverResult<Vec<Change>>;
    /// Bytes of content in layer `id` alone.
    fn usage(&self, id: &str) -> DriverResult<u64>;
    /// Whether layer `id` exists.
    fn exists(&self, id: &str) -> DriverResult<bool>;
    /// Deletes layer `id` (`NotFound` if there is none; the engine removes children first).
    fn remove(&self, id: &str) -> DriverResult<()>;
    /// Every layer present, complete or not, so the engine can reconcile after a crash.
    fn list(&self) -> DriverResult<Vec<String>>;
}

/// Severity of a line sent to the daemon's log with `log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Writes a line to the daemon's log (a component) or to stderr (a dylib, whose stderr is the daemon's).
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    component::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{}] {message}", format!("{level:?}").to_lowercase());
}

/// Exports a `VolumeDriver` type: the `volume-plugin` world on wasm32, the
/// `berth_plugin_descriptor` dylib symbol elsewhere. Use it once per crate.
#[macro_export]
macro_rules! export_volume_driver {
    ($driver:ty) => {
        /// The dylib entry point the berth host looks up (`abi::DESCRIPTOR_SYMBOL`).
        #[cfg(not(target_arch = "wasm32"))]
        #[unsafe(no_mangle)]
        pub extern "C" fn berth_plugin_descriptor() -> *const $crate::abi::Descriptor {
            static DESCRIPTOR: $crate::abi::Descriptor =
                $crate::native::descriptor::<$crate::native::AsVolume<$driver>>();
            &DESCRIPTOR
        }
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type BerthVolumeExport = $crate::component::VolumeComponent<$driver>;
            $crate::__export_volume_plugin_impl!(BerthVolumeExport with_types_in $crate::component::volume_world);
        };
    };
}

/// Exports a `StorageDriver` type as the `berth_plugin_descriptor` dylib
/// symbol. Storage drivers are native only. Use it once per crate.
#[macro_export]
macro_rules! export_storage_driver {
    ($driver:ty) => {
        /// The dylib entry point the berth host looks up (`abi::DESCRIPTOR_SYMBOL`).
        #[cfg(not(target_arch = "wasm32"))]
        #[unsafe(no_mangle)]
        pub extern "C" fn berth_plugin_descriptor() -> *const $crate::abi::Descriptor {
            static DESCRIPTOR: $crate::abi::Descriptor =
                $crate::native::descriptor::<$crate::native::AsStorage<$driver>>();
            &DESCRIPTOR
        }
        #[cfg(target_arch = "wasm32")]
        compile_error!("a berth storage driver is a native library: build it without --target wasm32-wasip2");
    };
}

/// Exports a `NetworkDriver` type: the `network-plugin` world on wasm32, the
/// `berth_plugin_descriptor` dylib symbol elsewhere. Use it once per crate.
#[macro_export]
macro_rules! export_network_driver {
    ($driver:ty) => {
        /// The dylib entry point the berth host looks up (`abi::DESCRIPTOR_SYMBOL`).
        #[cfg(not(target_arch = "wasm32"))]
        #[unsafe(no_mangle)]
        pub extern "C" fn berth_plugin_descriptor() -> *const $crate::abi::Descriptor {
            static DESCRIPTOR: $crate::abi::Descriptor =
                $crate::native::descriptor::<$crate::native::AsNetwork<$driver>>();
            &DESCRIPTOR
        }
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type BerthNetworkExport = $crate::component::NetworkComponent<$driver>;
            $crate::__export_network_plugin_impl!(BerthNetworkExport with_types_in $crate::component::network_world);
        };
    };
}
