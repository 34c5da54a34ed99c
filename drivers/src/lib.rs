//! berth-drivers: the in-tree drivers, one file each. They implement the core's
//! traits and never reach into the engine's store.

pub mod network;
pub mod storage;
pub mod volume;
