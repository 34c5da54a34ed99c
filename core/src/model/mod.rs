//! Serde model types shared by the engine, the drivers and the API layer.
//!
//! Values here are parsed once at the edge (`Digest`, `ImageRef`) and valid
//! afterwards; nothing in this module touches the disk or the kernel.

pub mod container;
pub mod digest;
pub mod image;
pub mod mount;
pub mod network;
pub mod reference;
pub mod volume;

pub use digest::{Digest, DigestError};
pub use image::{ImageRecord, LayerRecord};
pub use mount::{MountPlan, MountSpec};
pub use reference::{ImageRef, ReferenceError};
