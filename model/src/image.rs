//! Image and layer records as the metadata store keeps them.

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// One image known to the engine. Its identity is the digest of its config blob,
/// which lives in the content store; this record is the index entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image ID: digest of the config JSON.
    pub id: Digest,
    /// `name:tag` references pointing at this image, in the order they were added.
    pub repo_tags: Vec<String>,
    /// `name@digest` references (manifest digests) known for this image.
    pub repo_digests: Vec<String>,
    /// Layer chain IDs from the base layer to the top one.
    pub layers: Vec<Digest>,
    /// Digest of the manifest the image came with, if it came with one.
    pub manifest: Option<Digest>,
    /// Sum of the unpacked sizes of the image's layers, in bytes.
    pub size: u64,
    /// When this image was added to this engine (RFC 3339).
    pub added_at: String,
}

/// One unpacked layer in the storage driver, shared by every image that has
/// the same chain of diffs below and including it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Chain ID: identity of this layer *and* all layers below it
    /// (`sha256(parent_chain_id + " " + diff_id)`, OCI image spec).
    pub chain_id: Digest,
    /// Digest of this layer's uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Chain ID of the layer below, if any.
    pub parent: Option<Digest>,
    /// The storage driver's name for this layer (its directory).
    pub storage_id: String,
    /// Bytes of file content the layer adds, as unpacked.
    pub size: u64,
    /// Length of the uncompressed layer tar (the bytes `diff_id` hashes),
    /// needed up front for the tar header when the layer is saved.
    #[serde(default)]
    pub tar_size: u64,
    /// Compressed blob this layer was unpacked from, with its media type, if kept.
    pub blob: Option<(Digest, String)>,
}

impl LayerRecord {
    /// Chain ID of a layer with `diff_id` on top of `parent` (OCI image spec, "ChainID").
    pub fn chain_id_of(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
        match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
        }
    }
}
