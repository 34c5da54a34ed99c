//! Table `compressed_layers` (by diff ID): the gzip a push made of a layer
//! the store holds uncompressed, so a second push compresses nothing. The
//! push writes it; the gc keeps a remembered blob while a layer with that
//! diff ID exists.

use berth_model::Digest;

use crate::error::{EngineError, EngineResult};
use crate::store::{DefinitionTable, ReadTxn, WriteTxn};

/// A compressed form of a layer.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct CompressedLayer {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// The compressed form remembered for layer `diff_id`, if any.
pub(super) fn remembered(tx: &ReadTxn, diff_id: &Digest) -> EngineResult<Option<CompressedLayer>> {
    let json = tx.definition(DefinitionTable::CompressedLayers, &diff_id.to_string())?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Remembers `layer` as the compressed form of `diff_id`.
pub(super) fn remember(tx: &WriteTxn, diff_id: &Digest, layer: &CompressedLayer) -> EngineResult<()> {
    let json = serde_json::to_string(layer).map_err(|e| EngineError::Internal(format!("encoding a compressed layer: {e}")))?;
    tx.put_definition(DefinitionTable::CompressedLayers, &diff_id.to_string(), &json)?;
    Ok(())
}

/// Compressed blobs that a layer still present was pushed as (the gc keeps them).
pub(super) fn blobs_in_use(tx: &ReadTxn) -> EngineResult<Vec<Digest>> {
    let diff_ids: std::collections::HashSet<String> = tx.layers()?.into_iter().map(|l| l.diff_id.to_string()).collect();
    let mut out = Vec::new();
    for (diff_id, json) in tx.definitions(DefinitionTable::CompressedLayers)? {
        if diff_ids.contains(&diff_id) {
            if let Ok(c) = serde_json::from_str::<CompressedLayer>(&json) {
                out.push(c.digest);
            }
        }
    }
    Ok(out)
}
