//! The component glue behind `export_*!` on wasm32: the WIT worlds'
//! bindings and their `Guest` implementations for any driver type. Every
//! export builds the driver afresh (the host may run each call in a new
//! instance) and goes through the shared JSON dispatcher.

use std::marker::PhantomData;

use serde_json::Value;

use crate::{dispatch, DriverError, NetworkDriver, PluginContext, VolumeDriver};

/// Bindings of the `volume-plugin` world (and of `host` and `types`, shared with the network world).
pub mod volume_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "berth:plugin/volume-plugin",
        pub_export_macro: true,
        export_macro_name: "__berth_export_volume_world",
        type_section_suffix: "berth-volume",
    });
}

/// Bindings of the `network-plugin` world.
pub mod network_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "berth:plugin/network-plugin",
        pub_export_macro: true,
        export_macro_name: "__berth_export_network_world",
        type_section_suffix: "berth-network",
        with: {
            "berth:plugin/types@0.1.0": crate::component::volume_world::berth::plugin::types,
            "berth:plugin/host@0.1.0": crate::component::volume_world::berth::plugin::host,
        },
    });
}

use volume_world::berth::plugin::host;
use volume_world::berth::plugin::types::DriverError as WitError;

/// The `volume-driver` export for driver type `T`.
pub struct VolumeComponent<T>(PhantomData<T>);
/// The `network-driver` export for driver type `T`.
pub struct NetworkComponent<T>(PhantomData<T>);

/// Sends one line to the daemon's log.
pub fn log(level: crate::LogLevel, message: &str) {
    let level = match level {
        crate::LogLevel::Error => host::Level::Error,
        crate::LogLevel::Warn => host::Level::Warn,
        crate::LogLevel::Info => host::Level::Info,
        crate::LogLevel::Debug => host::Level::Debug,
    };
    host::log(level, message);
}

fn context() -> PluginContext {
    PluginContext { data_dir: "/data".into(), settings: host::settings().into_iter().collect() }
}

fn wit_error(e: DriverError) -> WitError {
    match e {
        DriverError::NotFound(m) => WitError::NotFound(m),
        DriverError::Conflict(m) => WitError::Conflict(m),
        DriverError::InvalidArgument(m) => WitError::InvalidArgument(m),
        DriverError::Unsupported(m) => WitError::Unsupported(m),
        DriverError::Failed(m) => WitError::Failed(m),
        other @ (DriverError::Io { .. } | DriverError::Plugin { .. }) => WitError::Failed(other.to_string()),
    }
}

/// A `json` argument: the WIT carries it as a string, the dispatcher as a value.
fn doc(text: &str) -> Result<Value, WitError> {
    serde_json::from_str(text).map_err(|e| WitError::InvalidArgument(format!("request is not JSON: {e}")))
}

fn volume<T: VolumeDriver>(method: &str, args: Vec<Value>) -> Result<Value, WitError> {
    let driver = T::new(context()).map_err(wit_error)?;
    dispatch::volume(&driver, method, args).map_err(wit_error)
}

fn network<T: NetworkDriver>(method: &str, args: Vec<Value>) -> Result<Value, WitError> {
    let driver = T::new(context()).map_err(wit_error)?;
    dispatch::network(&driver, method, args).map_err(wit_error)
}

fn unit(_: Value) {}

fn optional_string(v: Value) -> Result<Option<String>, WitError> {
    serde_json::from_value(v).map_err(|e| WitError::Failed(format!("bad path answer: {e}")))
}

fn text(v: Value) -> String {
    v.to_string()
}

impl<T: VolumeDriver> volume_world::exports::berth::plugin::volume_driver::Guest for VolumeComponent<T> {
    fn capabilities() -> String {
        // The WIT gives capabilities no error: a driver that cannot even be built reports the defaults.
        volume::<T>("volume-driver.capabilities", vec![])
            .map(text)
            .unwrap_or_else(|_| text(serde_json::json!(crate::VolumeCapabilities::default())))
    }
    fn create(request: String) -> Result<String, WitError> {
        volume::<T>("volume-driver.create", vec![doc(&request)?]).map(text)
    }
    fn remove(name: String) -> Result<(), WitError> {
        volume::<T>("volume-driver.remove", vec![name.into()]).map(unit)
    }
    fn mount(name: String, caller_id: String) -> Result<String, WitError> {
        volume::<T>("volume-driver.mount", vec![name.into(), caller_id.into()]).map(text)
    }
    fn unmount(name: String, caller_id: String) -> Result<(), WitError> {
        volume::<T>("volume-driver.unmount", vec![name.into(), caller_id.into()]).map(unit)
    }
    fn path(name: String) -> Result<Option<String>, WitError> {
        volume::<T>("volume-driver.path", vec![name.into()]).and_then(optional_string)
    }
    fn get(name: String) -> Result<String, WitError> {
        volume::<T>("volume-driver.get", vec![name.into()]).map(text)
    }
    fn list() -> Result<String, WitError> {
        volume::<T>("volume-driver.list", vec![]).map(text)
    }
}

impl<T: NetworkDriver> network_world::exports::berth::plugin::network_driver::Guest for NetworkComponent<T> {
    fn capabilities() -> String {
        network::<T>("network-driver.capabilities", vec![])
            .map(text)
            .unwrap_or_else(|_| text(serde_json::json!(crate::NetworkCapabilities::default())))
    }
    fn create_network(request: String) -> Result<String, WitError> {
        network::<T>("network-driver.create-network", vec![doc(&request)?]).map(text)
    }
    fn delete_network(network_id: String) -> Result<String, WitError> {
        network::<T>("network-driver.delete-network", vec![network_id.into()]).map(text)
    }
    fn create_endpoint(request: String) -> Result<String, WitError> {
        network::<T>("network-driver.create-endpoint", vec![doc(&request)?]).map(text)
    }
    fn delete_endpoint(network_id: String, endpoint_id: String) -> Result<(), WitError> {
        network::<T>("network-driver.delete-endpoint", vec![network_id.into(), endpoint_id.into()]).map(unit)
    }
    fn join(request: String) -> Result<String, WitError> {
        network::<T>("network-driver.join", vec![doc(&request)?]).map(text)
    }
    fn leave(network_id: String, endpoint_id: String) -> Result<String, WitError> {
        network::<T>("network-driver.leave", vec![network_id.into(), endpoint_id.into()]).map(text)
    }
}
