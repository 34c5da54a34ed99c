//! berth-drivers: the in-tree drivers, one file each. They implement the
//! traits of `berth-model`, use the host primitives of `berth-runtime`
//! (mounts, deferred deletion), and never reach into the engine or its store.

pub mod network;
pub mod storage;
pub mod volume;
