//! berth-core: the engine, as services.
//!
//! `image`, `volume`, `network` and `container` are the services; each owns
//! its state and its store tables and takes the services it needs as handles
//! (containers takes images, networks and volumes). Below them, shared by
//! all: `error`, `events`, `catalog` (the read side of the containers
//! table), `store`, `config`, `filters`, `drivers`; `registry`, the
//! distribution client the images service pulls with. Above them, `Engine`:
//! the façade the API calls, built from the services. The model and the
//! driver traits are `berth-model`; the runtime and the shim `berth-runtime`.

pub mod catalog;
pub mod config;
pub mod container;
pub mod drivers;
pub mod engine;
pub mod error;
pub mod events;
pub mod filters;
mod ids;
pub mod image;
pub mod network;
pub mod registry;
pub mod store;
pub mod volume;

pub use config::EngineConfig;
pub use engine::Engine;
pub use error::{EngineError, EngineResult, ErrorKind};
