//! `Engine`: the one façade the API calls, built from the services.
//!
//! It opens the metadata store and builds the images, volumes, networks and
//! containers services in the order they depend on each other; the API
//! reaches each through its accessor (`engine.containers().start(id)`).
//! Service methods block; the API layer calls them from `spawn_blocking` so
//! no request stalls the async threads.

use std::sync::Arc;

use berth_model::drivers::StorageDriver;

use crate::catalog::ContainerCatalog;
use crate::config::EngineConfig;
use crate::container::ContainerService;
use crate::drivers::Drivers;
use crate::error::{EngineError, EngineResult};
use crate::image::ImageService;
use crate::network::NetworkService;
use crate::store::Store;
use crate::volume::VolumeService;

/// The engine.
pub struct Engine {
    config: EngineConfig,
    storage: Arc<dyn StorageDriver>,
    drivers: Arc<Drivers>,
    images: Arc<ImageService>,
    volumes: Arc<VolumeService>,
    networks: Arc<NetworkService>,
    containers: Arc<ContainerService>,
}

impl Engine {
    /// Opens (creating if needed) the engine's state under `config.root`,
    /// recovers what an interrupted daemon left, and re-adopts the
    /// containers that were running (their shims outlive a daemon).
    pub fn open(config: EngineConfig, storage: Arc<dyn StorageDriver>, drivers: Drivers) -> EngineResult<Arc<Engine>> {
        for dir in [&config.root, &config.run] {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        }
        let store = Arc::new(Store::open(&config.root.join("berth.redb"))?);
        let drivers = Arc::new(drivers);
        let catalog = ContainerCatalog::new(Arc::clone(&store), &config.root);
        let images = Arc::new(ImageService::open(
            &config.root,
            config.run.clone(),
            Arc::clone(&store),
            Arc::clone(&storage),
            catalog.clone(),
            config.registries.clone(),
        )?);
        let volumes = Arc::new(VolumeService::new(
            Arc::clone(&store),
            catalog.clone(),
            Arc::clone(&drivers),
            Arc::clone(&storage),
            config.run.clone(),
        ));
        let networks = NetworkService::new(Arc::clone(&store), catalog.clone(), Arc::clone(&drivers), config.run.clone());
        networks.init_networks()?;
        let containers = ContainerService::open(
            config.clone(),
            store,
            catalog,
            Arc::clone(&storage),
            Arc::clone(&images),
            Arc::clone(&networks),
            Arc::clone(&volumes),
        )?;
        // Last: by now every service has made its directories.
        config.restrict_state_dirs()?;
        Ok(Arc::new(Engine { config, storage, drivers, images, volumes, networks, containers }))
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The storage driver in use.
    pub fn storage(&self) -> &Arc<dyn StorageDriver> {
        &self.storage
    }

    /// The volume and network driver registries.
    pub fn drivers(&self) -> &Drivers {
        &self.drivers
    }

    /// Images: load, save, import, tag, inspect, history, rmi, prune, mount.
    pub fn images(&self) -> &ImageService {
        &self.images
    }

    /// Volumes: create, inspect, ls, rm, prune.
    pub fn volumes(&self) -> &VolumeService {
        &self.volumes
    }

    /// Networks: create, inspect, ls, rm, prune.
    pub fn networks(&self) -> &NetworkService {
        &self.networks
    }

    /// Containers: their whole life, exec, logs, events, `network connect`.
    pub fn containers(&self) -> &ContainerService {
        &self.containers
    }
}
