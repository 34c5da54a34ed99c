//! The engine's errors, where the services' failures meet: every service
//! returns `EngineError`, and the API maps its `ErrorKind` to a status code.
//! This module imports no service, so every service can import it.

use berth_model::Digest;
use berth_model::drivers::DriverError;
use berth_runtime::trash::TrashError;

use crate::registry::RegistryError;

/// What kind of failure an `EngineError` is, for the API's status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400
    InvalidArgument,
    /// 404
    NotFound,
    /// 409
    Conflict,
    /// 403: allowed for no one (libnetwork's "forbidden" errors).
    Forbidden,
    /// 500
    Internal,
}

/// Errors of engine operations. Messages are what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// Docker's 403: e.g. removing a predefined network, overlapping pools.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::RuntimeError),
    #[error(transparent)]
    Shim(#[from] berth_runtime::shim::ShimError),
    /// Something failed inside the engine; the message says what.
    #[error("{0}")]
    Internal(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// The status class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NotFound(_) | EngineError::Driver(DriverError::NotFound(_)) => ErrorKind::NotFound,
            EngineError::Conflict(_) | EngineError::Driver(DriverError::Conflict(_)) => ErrorKind::Conflict,
            EngineError::Forbidden(_) => ErrorKind::Forbidden,
            EngineError::InvalidArgument(_) | EngineError::Driver(DriverError::InvalidArgument(_)) => {
                ErrorKind::InvalidArgument
            }
            EngineError::Image(e) => e.kind(),
            EngineError::Registry(e) => registry_kind(e),
            EngineError::Runtime(berth_runtime::RuntimeError::InvalidConfig(_)) => ErrorKind::InvalidArgument,
            // The user's command cannot run (not found, not executable): Docker's 400.
            e if e.command_exit_code().is_some() => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        }
    }

    /// 127 or 126 when the user's command cannot run; `None` for any other failure.
    pub fn command_exit_code(&self) -> Option<i32> {
        match self {
            EngineError::Runtime(e) => e.command_exit_code(),
            EngineError::Shim(e) => e.command_exit_code(),
            _ => None,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io { context: context.into(), source }
    }
}

impl From<TrashError> for EngineError {
    fn from(e: TrashError) -> Self {
        match e {
            TrashError::Io { context, source } => EngineError::Io { context, source },
            TrashError::MountPoint(_) => EngineError::Conflict(e.to_string()),
        }
    }
}

/// The status class of a registry's failure (the registry client, below
/// this module, does not know the API's classes).
fn registry_kind(e: &RegistryError) -> ErrorKind {
    match e {
        // dockerd answers a pull it may not make 404 too ("pull access denied ... may require 'docker login'").
        RegistryError::ManifestUnknown { .. }
        | RegistryError::BlobUnknown { .. }
        | RegistryError::NoMatchingPlatform { .. }
        | RegistryError::PullAccessDenied { .. } => ErrorKind::NotFound,
        RegistryError::Unsupported(_) => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

/// Result of an engine call.
pub type EngineResult<T> = Result<T, EngineError>;

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

/// A driver error with what was being done, keeping its status class.
pub(crate) fn driver_error(what: &str, e: DriverError) -> EngineError {
    match e {
        DriverError::InvalidArgument(m) => EngineError::InvalidArgument(format!("{what}: {m}")),
        DriverError::Io { context, source } => EngineError::io(format!("{what}: {context}"), source),
        DriverError::Unsupported(m) => EngineError::InvalidArgument(format!("{what}: {m}")),
        other => EngineError::Driver(other),
    }
}
