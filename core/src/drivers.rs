//! The registries that find a driver by name. The driver traits themselves
//! are in `berth_model::drivers`, where plugins see them too.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use berth_model::drivers::{NetworkDriver, VolumeDriver};

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
