//! berth-core: the engine.
//!
//! Model types, the three driver traits, the content store and image index,
//! the metadata store, the runtime primitives and the `Engine` façade that the
//! API calls. This crate depends on no other crate of ours; drivers and plugin
//! hosts depend on it, never the other way round.

pub mod container;
pub mod drivers;
pub mod engine;
pub mod image;
pub mod network;
pub mod model;
pub mod runtime;
pub mod shim;
pub mod store;
pub mod trash;
pub mod volume;

pub use engine::{Engine, EngineConfig, EngineError};
