//! The core's driver traits on top of a plugin backend (WASM or dylib).
//!
//! Both hosts speak the same seam, `Backend::call`, with the dylib ABI's
//! method names and argument arrays, so the adapters, the JSON decoding and
//! the plan checks exist once. An adapter must never return a plan or a path
//! that did not pass `check::Grant`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use berth_model::drivers::{
    Change, DriverError, DriverResult, NetworkCapabilities, NetworkDriver, StorageDriver, VolumeCapabilities, VolumeDriver,
};
use berth_model::network::{EndpointCreateRequest, EndpointInfo, JoinRequest, NetworkCreateRequest, NetworkPlan};
use berth_model::volume::{VolumeCreateRequest, VolumeInfo};
use berth_model::MountPlan;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::backend::Backend;
use crate::check::Grant;
use crate::dylib::{DylibPlugin, Payload};

/// What the adapters share: the backend, the grant and the name.
struct Inner {
    name: String,
    backend: Arc<dyn Backend>,
    grant: Arc<Grant>,
}

impl Inner {
    fn call<T: DeserializeOwned>(&self, method: &str, args: Value) -> DriverResult<T> {
        let value = self.backend.call(method, args)?;
        serde_json::from_value(value).map_err(|e| DriverError::Plugin {
            plugin: self.grant.plugin.clone(),
            message: format!("answered {method} with a malformed document: {e}"),
        })
    }
}

/// A plugin's volume driver.
pub struct PluginVolumeDriver {
    inner: Inner,
    capabilities: OnceLock<VolumeCapabilities>,
}

impl PluginVolumeDriver {
    /// `name` is the driver name (the plugin's name or alias).
    pub fn new(name: &str, backend: Arc<dyn Backend>, grant: Arc<Grant>) -> PluginVolumeDriver {
        PluginVolumeDriver { inner: Inner { name: name.to_string(), backend, grant }, capabilities: OnceLock::new() }
    }
}

impl VolumeDriver for PluginVolumeDriver {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn confined(&self) -> bool {
        true
    }

    fn capabilities(&self) -> VolumeCapabilities {
        if let Some(c) = self.capabilities.get() {
            return c.clone();
        }
        // The trait cannot fail here: a plugin that cannot say is local-scoped,
        // and we ask again next time rather than caching a guess.
        match self.inner.call::<VolumeCapabilities>("volume-driver.capabilities", json!([])) {
            Ok(c) => self.capabilities.get_or_init(|| c).clone(),
            Err(e) => {
                tracing::warn!(plugin = %self.inner.name, "capabilities: {e}");
                VolumeCapabilities::default()
            }
        }
    }

    fn create(&self, request: &VolumeCreateRequest) -> DriverResult<VolumeInfo> {
        let info = self.inner.call("volume-driver.create", json!([request]))?;
        self.inner.grant.check_volume_info(info)
    }

    fn remove(&self, name: &str) -> DriverResult<()> {
        self.inner.call::<Value>("volume-driver.remove", json!([name])).map(drop)
    }

    fn mount(&self, name: &str, caller_id: &str) -> DriverResult<MountPlan> {
        let plan = self.inner.call("volume-driver.mount", json!([name, caller_id]))?;
        self.inner.grant.check_mount(plan)
    }

    fn unmount(&self, name: &str, caller_id: &str) -> DriverResult<()> {
        self.inner.call::<Value>("volume-driver.unmount", json!([name, caller_id])).map(drop)
    }

    fn path(&self, name: &str) -> DriverResult<Option<PathBuf>> {
        let path: Option<PathBuf> = self.inner.call("volume-driver.path", json!([name]))?;
        path.map(|p| self.inner.grant.check_path(&p, "volume path")).transpose()
    }

    fn get(&self, name: &str) -> DriverResult<VolumeInfo> {
        let info = self.inner.call("volume-driver.get", json!([name]))?;
        self.inner.grant.check_volume_info(info)
    }

    fn list(&self) -> DriverResult<Vec<VolumeInfo>> {
        let infos: Vec<VolumeInfo> = self.inner.call("volume-driver.list", json!([]))?;
        infos.into_iter().map(|i| self.inner.grant.check_volume_info(i)).collect()
    }
}

/// A plugin's network driver.
pub struct PluginNetworkDriver {
    inner: Inner,
    capabilities: OnceLock<NetworkCapabilities>,
}

impl PluginNetworkDriver {
    /// `name` is the driver name (the plugin's name or alias).
    pub fn new(name: &str, backend: Arc<dyn Backend>, grant: Arc<Grant>) -> PluginNetworkDriver {
        PluginNetworkDriver { inner: Inner { name: name.to_string(), backend, grant }, capabilities: OnceLock::new() }
    }

    fn plan(&self, method: &str, args: Value) -> DriverResult<NetworkPlan> {
        let plan = self.inner.call(method, args)?;
        self.inner.grant.check_network_plan(&plan)?;
        Ok(plan)
    }
}

impl NetworkDriver for PluginNetworkDriver {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn confined(&self) -> bool {
        true
    }

    fn capabilities(&self) -> NetworkCapabilities {
        if let Some(c) = self.capabilities.get() {
            return c.clone();
        }
        match self.inner.call::<NetworkCapabilities>("network-driver.capabilities", json!([])) {
            Ok(c) => self.capabilities.get_or_init(|| c).clone(),
            Err(e) => {
                tracing::warn!(plugin = %self.inner.name, "capabilities: {e}");
                NetworkCapabilities::default()
            }
        }
    }

    fn create_network(&self, request: &NetworkCreateRequest) -> DriverResult<NetworkPlan> {
        self.plan("network-driver.create-network", json!([request]))
    }

    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan> {
        self.plan("network-driver.delete-network", json!([network_id]))
    }

    fn create_endpoint(&self, request: &EndpointCreateRequest) -> DriverResult<EndpointInfo> {
        self.inner.call("network-driver.create-endpoint", json!([request]))
    }

    fn delete_endpoint(&self, network_id: &str, endpoint_id: &str) -> DriverResult<()> {
        self.inner.call::<Value>("network-driver.delete-endpoint", json!([network_id, endpoint_id])).map(drop)
    }

    fn join(&self, request: &JoinRequest) -> DriverResult<NetworkPlan> {
        self.plan("network-driver.join", json!([request]))
    }

    fn leave(&self, network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan> {
        self.plan("network-driver.leave", json!([network_id, endpoint_id]))
    }
}

/// A dylib plugin's storage (graph) driver. Unlike volume and network calls,
/// storage calls run on the caller's thread without a deadline (layers take
/// as long as their size) and carry the layer tar as a stream; see
/// `berth_sdk::abi`.
pub struct PluginStorageDriver {
    name: String,
    plugin: Arc<DylibPlugin>,
    grant: Arc<Grant>,
}

impl PluginStorageDriver {
    /// `name` is the driver name (the plugin's name or alias).
    pub fn new(name: &str, plugin: Arc<DylibPlugin>, grant: Arc<Grant>) -> PluginStorageDriver {
        PluginStorageDriver { name: name.to_string(), plugin, grant }
    }

    fn call<T: DeserializeOwned>(&self, method: &str, args: Value, payload: Payload<'_>) -> DriverResult<T> {
        let value = self.plugin.call_streaming(method, args, payload)?;
        serde_json::from_value(value).map_err(|e| DriverError::Plugin {
            plugin: self.name.clone(),
            message: format!("answered {method} with a malformed document: {e}"),
        })
    }
}

impl StorageDriver for PluginStorageDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> Vec<(String, String)> {
        match self.call("storage-driver.status", json!([]), Payload::None) {
            Ok(status) => status,
            Err(e) => vec![("Status".to_string(), format!("the plugin did not say: {e}"))],
        }
    }

    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        self.call::<Value>("storage-driver.create", json!([id, parent]), Payload::None).map(drop)
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        self.call::<Value>("storage-driver.create-read-write", json!([id, parent]), Payload::None).map(drop)
    }

    fn apply_diff(&self, id: &str, diff: &mut dyn Read) -> DriverResult<u64> {
        self.call("storage-driver.apply-diff", json!([id]), Payload::Read(diff))
    }

    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan> {
        let plan = self.call("storage-driver.mount-plan", json!([id, writable]), Payload::None)?;
        self.grant.check_mount(plan)
    }

    fn export_diff(&self, id: &str, out: &mut dyn Write) -> DriverResult<()> {
        self.call::<Value>("storage-driver.export-diff", json!([id]), Payload::Write(out)).map(drop)
    }

    fn changes(&self, id: &str) -> DriverResult<Vec<Change>> {
        self.call("storage-driver.changes", json!([id]), Payload::None)
    }

    fn usage(&self, id: &str) -> DriverResult<u64> {
        self.call("storage-driver.usage", json!([id]), Payload::None)
    }

    fn exists(&self, id: &str) -> bool {
        // The trait cannot fail here; a driver that cannot answer has no usable layer.
        self.call("storage-driver.exists", json!([id]), Payload::None).unwrap_or_else(|e| {
            tracing::warn!(plugin = %self.name, layer = id, "exists: {e}");
            false
        })
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        self.call::<Value>("storage-driver.remove", json!([id]), Payload::None).map(drop)
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        self.call("storage-driver.list", json!([]), Payload::None)
    }
}
