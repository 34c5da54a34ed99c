//! Images: the content store (sha256 blobs), image formats (docker-archive,
//! OCI layout), import, load and save.

mod content;

pub use content::ContentStore;

use crate::engine::ErrorKind;

/// Errors of image handling.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Invalid(String),
}

impl ImageError {
    /// The status class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Invalid(_) => ErrorKind::InvalidArgument,
        }
    }
}
