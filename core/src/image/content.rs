//! The content store: blobs by sha256 under `<root>/blobs/sha256/`.

/// Content-addressed blobs, verified on write.
pub struct ContentStore {}
