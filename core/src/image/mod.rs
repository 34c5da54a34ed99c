//! Images: the content store (sha256 blobs), image formats (docker-archive,
//! OCI layout), import, load and save.
//!
//! Nothing here makes an image visible before all of it is on disk: blobs are
//! verified before they are kept, layers are unpacked before the one store
//! transaction that registers the image, and a failure removes what it made.

mod archive;
mod compress;
mod config;
mod content;
mod ops;
mod save;
mod unpack;

#[cfg(test)]
pub(crate) mod tests;

pub use compress::{detect_compression, Compression};
pub use config::apply_changes;
pub use content::{BlobPin, BlobWriter, ContentStore, VerifyingReader};
pub(crate) use ops::LayerClaims;

use crate::engine::ErrorKind;
use berth_model::Digest;

/// Errors of image handling.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The input is not a valid image archive, manifest or config.
    #[error("{0}")]
    Invalid(String),
    /// Content does not hash to the digest that names it.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    /// Content is shorter or longer than its descriptor or tar header says.
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual} (truncated or corrupt input?)")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    /// The input tar ended or broke in the middle.
    #[error("truncated or corrupt archive {context}: {source}")]
    Truncated {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A format, media type or instruction berth does not handle.
    #[error("{0}")]
    Unsupported(String),
    /// A blob the image needs is not in the content store.
    #[error("blob {0} is missing from the content store")]
    BlobNotFound(Digest),
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// The status class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Invalid(_)
            | ImageError::DigestMismatch { .. }
            | ImageError::SizeMismatch { .. }
            | ImageError::Truncated { .. }
            | ImageError::Unsupported(_) => ErrorKind::InvalidArgument,
            ImageError::BlobNotFound(_) | ImageError::Io { .. } => ErrorKind::Internal,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io { context: context.into(), source }
    }
}
