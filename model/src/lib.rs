//! berth-model: the minimal core.
//!
//! The three driver traits (`StorageDriver`, `VolumeDriver`, `NetworkDriver`),
//! the requests and plans they exchange, `DriverError`, and the plain serde
//! model of containers, images, networks and volumes. Values here are parsed
//! once at the edge (`Digest`, `ImageRef`, `ContainerId`) and valid afterwards.
//!
//! Nothing here touches the kernel or needs an async runtime: the crate builds
//! for `wasm32-wasip2`, so the engine, the in-tree drivers and plugins (through
//! `berth-sdk`, which re-exports it) share one vocabulary.

pub mod auth;
pub mod container;
pub mod digest;
pub mod drivers;
pub mod image;
pub mod mount;
pub mod network;
pub mod platform;
pub mod reference;
pub mod subnet;
pub mod volume;

pub use auth::AuthConfig;
pub use digest::{Digest, DigestError};
pub use drivers::{DriverError, DriverResult};
pub use image::{ImageRecord, LayerRecord};
pub use mount::{MountPlan, MountSpec};
pub use platform::Platform;
pub use reference::{ImageRef, ReferenceError};
pub use subnet::Subnet;
