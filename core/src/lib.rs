//! berth-core: the engine.
//!
//! The content store and image index, the metadata store, the runtime
//! primitives and the `Engine` façade that the API calls. The model and the
//! driver traits are `berth-model`, the one crate of ours this one depends on;
//! drivers and plugin hosts depend on it, never the other way round.

pub mod container;
pub mod drivers;
pub mod engine;
pub mod image;
pub mod network;
pub mod store;
pub mod volume;

pub use engine::{Engine, EngineConfig, EngineError};
