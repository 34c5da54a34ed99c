//! The metadata store on redb. One writer: the daemon.

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store: {0}")]
    Database(String),
}

/// The metadata store.
pub struct Store {}
