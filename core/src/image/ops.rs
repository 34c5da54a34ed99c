//! The engine's image operations: load, import, save, tag, find, list,
//! history, remove, prune, disk usage and image mounts.
//!
//! Ordering rules that keep the store consistent through crashes:
//! blobs are on disk before any record names them, layers are unpacked
//! before the one transaction that registers an image, and records are
//! deleted before the files they name (a crash in between leaves files
//! that `recover` removes at the next start).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use berth_model::{Digest, ImageRecord, ImageRef, LayerRecord, Platform};
use serde_json::Map;

use crate::error::{EngineError, EngineResult};
use crate::store::{ReadTxn, WriteTxn};
use super::archive::{self, ImageSource, LayerSource};
use super::{ArchiveFormat, HistoryEntry, ImageDeleteItem, ImageDetails, ImageDiskUsage, ImageService, ImportOptions, Progress};
use super::compress::{decompressed, detect_compression, Compression};
use super::config::{apply_changes, import_config};
use super::content::BlobPin;
use super::ImageError;
use super::save::{self, SaveImage};
use super::unpack::{driver_context, unpack_layer, unpack_layer_from};

/// Layers (by chain ID) an operation is creating, reusing or removing.
/// Whoever holds a chain ID is the only one that may create or delete that
/// layer, so a `load` never builds on a layer an `rmi` is deleting.
#[derive(Default)]
pub(crate) struct LayerClaims {
    held: Mutex<HashSet<Digest>>,
    freed: Condvar,
}

/// Chain IDs held until dropped.
pub(crate) struct ClaimGuard<'a> {
    claims: &'a LayerClaims,
    ids: Vec<Digest>,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.claims.held.lock().unwrap_or_else(|e| e.into_inner());
        for id in &self.ids {
            held.remove(id);
        }
        self.claims.freed.notify_all();
    }
}

impl LayerClaims {
    /// Waits until none of `ids` is held, then holds them all (all at once,
    /// so two operations can never deadlock on each other's halves).
    pub(crate) fn claim_all(&self, ids: &[Digest]) -> ClaimGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while ids.iter().any(|i| held.contains(i)) {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        let mut unique: Vec<Digest> = Vec::new();
        for i in ids {
            if held.insert(i.clone()) {
                unique.push(i.clone());
            }
        }
        ClaimGuard { claims: self, ids: unique }
    }

    /// Holds `id` if nobody does.
    pub(crate) fn try_claim(&self, id: &Digest) -> Option<ClaimGuard<'_>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(id.clone()) {
            return None;
        }
        Some(ClaimGuard { claims: self, ids: vec![id.clone()] })
    }
}

/// Where `unpack_chain` is in a chain, for its caller's `step`.
pub(super) enum ChainStep {
    /// Layer `i` is about to be unpacked; its blob must be in the content store.
    Unpacking(usize),
    /// Layer `i` is in place (unpacked now, or it was there already).
    Done(usize),
}

/// The config's `rootfs.diff_ids`, parsed.
pub(super) fn parse_config(bytes: &[u8], whence: &str) -> Result<(oci_spec::image::ImageConfiguration, Vec<Digest>), EngineError> {
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Image(ImageError::Invalid(format!("{whence}: invalid image config: {e}"))))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse::<Digest>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EngineError::Image(ImageError::Invalid(format!("{whence}: config rootfs.diff_ids: {e}"))))?;
    Ok((config, diff_ids))
}

/// The OCI media type for a layer blob compressed as `kind`.
fn layer_media_type(kind: Compression) -> &'static str {
    match kind {
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    }
}

/// Every blob some image still needs: configs, manifests, layer blobs.
fn referenced_blobs(tx: &ReadTxn) -> EngineResult<HashSet<Digest>> {
    let mut set = HashSet::new();
    for img in tx.images()? {
        set.insert(img.id.clone());
        set.extend(img.manifest.clone());
    }
    for l in tx.layers()? {
        if let Some((d, _)) = l.blob {
            set.insert(d);
        }
    }
    set.extend(super::compressed::blobs_in_use(tx)?);
    Ok(set)
}

/// Points `name_tag` at `id` inside `tx`, taking it off whichever image had
/// it (which is left dangling if that was its last tag, as Docker does).
/// Returns that other image's ID.
fn move_tag(tx: &WriteTxn, record: &mut ImageRecord, name_tag: &str) -> EngineResult<Option<Digest>> {
    let mut moved = None;
    if let Some(old) = tx.tag(name_tag)? {
        if old != record.id {
            if let Some(mut prev) = tx.image(&old)? {
                prev.repo_tags.retain(|t| t != name_tag);
                tx.put_image(&prev)?;
            }
            moved = Some(old);
        }
    }
    tx.set_tag(name_tag, &record.id)?;
    if !record.repo_tags.iter().any(|t| t == name_tag) {
        record.repo_tags.push(name_tag.to_string());
    }
    Ok(moved)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How a name given to `rmi` and friends matched an image.
enum Matched {
    /// By `name:tag` (normalised).
    Tag(String),
    /// By `name@digest`.
    Digest(String),
    /// By full ID or ID prefix.
    Id,
}

impl ImageService {
    /// Start-up recovery: drop interrupted writes, layers no image uses,
    /// storage layers the store does not know (a load killed mid-unpack),
    /// and blobs no image needs.
    pub(crate) fn recover(&self) -> EngineResult<()> {
        let n = self.content.clear_ingest()?;
        if n > 0 {
            tracing::info!(count = n, "removed interrupted blob writes");
        }
        let n = self.content.remove_stale_partials()?;
        if n > 0 {
            tracing::info!(count = n, "removed partial downloads that will not be resumed");
        }
        // Layer records no image references (an rmi cut short between its transactions).
        let tx = self.store.write()?;
        let used: HashSet<Digest> = tx.images()?.into_iter().flat_map(|i| i.layers).collect();
        let mut known: HashSet<String> = HashSet::new();
        for l in tx.layers()? {
            if used.contains(&l.chain_id) {
                known.insert(l.storage_id.clone());
            } else {
                tracing::info!(layer = %l.chain_id, "removing a layer no image uses");
                tx.delete_layer(&l.chain_id)?;
            }
        }
        // Containers' writable layers are known too.
        for c in self.containers.all()? {
            known.insert(c.rw_layer.clone());
        }
        tx.commit()?;
        // Storage layers without a record (an interrupted load, or a create
        // or rm cut short): nothing names them.
        for id in self.storage.list()? {
            if !known.contains(&id) {
                tracing::info!(layer = %id, "removing a storage layer the store does not reference (interrupted load or removal)");
                self.storage.remove(&id).map_err(|e| driver_context(&format!("removing orphan layer {id}"), e))?;
            }
        }
        for (chain, storage_id) in self.store.read()?.layers()?.into_iter().map(|l| (l.chain_id, l.storage_id)) {
            if !self.storage.exists(&storage_id) {
                tracing::warn!(layer = %chain, storage_id, "layer recorded in the store is missing from the storage driver");
            }
        }
        self.gc_blobs(None)?;
        Ok(())
    }

    /// Deletes unreferenced blobs: all of them, or only those in `only`.
    pub(crate) fn gc_blobs(&self, only: Option<&[Digest]>) -> EngineResult<u64> {
        let _gc = self.gc_lock.lock().unwrap_or_else(|e| e.into_inner());
        let referenced = referenced_blobs(&self.store.read()?)?;
        let candidates = match only {
            Some(list) => list.to_vec(),
            None => self.content.list()?,
        };
        let mut freed = 0;
        for d in candidates {
            if referenced.contains(&d) {
                continue;
            }
            let size = self.content.size(&d).unwrap_or(0);
            if self.content.delete_unpinned(&d)? {
                freed += size;
            }
        }
        Ok(freed)
    }

    // ---- lookups ----

    /// Resolves a reference, ID or ID prefix to an image ID.
    fn resolve(&self, tx: &ReadTxn, name: &str) -> EngineResult<(Digest, Matched)> {
        let not_found = |shown: &str| EngineError::NotFound(format!("No such image: {shown}"));
        let id_part = name.strip_prefix("sha256:");
        if let Some(hex) = id_part {
            if !is_hex(hex) {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid image ID {name:?}: expected sha256: and hex digits"
                )));
            }
        }
        if let Some(hex) = id_part.or_else(|| (name.len() == 64 && is_hex(name)).then_some(name)) {
            return self.by_prefix(tx, hex).and_then(|o| o.ok_or_else(|| not_found(name))).map(|d| (d, Matched::Id));
        }
        let parsed = ImageRef::parse(name).map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        if let Some(d) = &parsed.digest {
            let key = format!("{}@{d}", parsed.name);
            if let Some(img) = tx.images()?.into_iter().find(|i| i.repo_digests.contains(&key)) {
                return Ok((img.id, Matched::Digest(key)));
            }
            return Err(not_found(name));
        }
        let parsed = parsed.with_default_tag();
        let tagged = parsed.tagged().unwrap_or_else(|| name.to_string());
        if let Some(id) = tx.tag(&tagged)? {
            return Ok((id, Matched::Tag(tagged)));
        }
        if is_hex(name) {
            if let Some(id) = self.by_prefix(tx, name)? {
                return Ok((id, Matched::Id));
            }
        }
        Err(not_found(&tagged))
    }

    fn by_prefix(&self, tx: &ReadTxn, hex: &str) -> EngineResult<Option<Digest>> {
        let matches: Vec<Digest> =
            tx.images()?.into_iter().map(|i| i.id).filter(|id| id.hex().starts_with(hex)).collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.into_iter().next()),
            n => Err(EngineError::InvalidArgument(format!(
                "image ID prefix {hex:?} is ambiguous: it matches {n} images; give more characters"
            ))),
        }
    }

    fn record(&self, tx: &ReadTxn, id: &Digest) -> EngineResult<ImageRecord> {
        tx.image(id)?.ok_or_else(|| EngineError::NotFound(format!("No such image: {id}")))
    }

    /// The stored record of image `id`, if there is one.
    pub(crate) fn record_of(&self, id: &Digest) -> EngineResult<Option<ImageRecord>> {
        Ok(self.store.read()?.image(id)?)
    }

    /// The storage driver's ID of layer `chain_id`, if the layer is stored.
    pub(crate) fn layer_storage_id(&self, chain_id: &Digest) -> EngineResult<Option<String>> {
        Ok(self.store.read()?.layer(chain_id)?.map(|l| l.storage_id))
    }

    /// The image with its parsed config.
    pub(crate) fn details(&self, record: ImageRecord) -> EngineResult<ImageDetails> {
        let bytes = self.content.read(&record.id)?;
        let (config, diff_ids) = parse_config(&bytes, &format!("image {}", record.id))?;
        let containers = self.containers_using(&record.id) as u64;
        // Valid JSON already (parse_config read it): a member of the wrong type is simply not shown.
        let docker = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(ImageDetails { record, config, diff_ids, parent: None, containers, docker })
    }

    /// How many containers use image `id` (`rmi` refuses, `prune` skips them).
    pub(crate) fn containers_using(&self, id: &Digest) -> usize {
        self.users_of(id).map(|u| u.len()).unwrap_or(0)
    }

    /// The containers created from image `id`, with whether each is running.
    fn users_of(&self, id: &Digest) -> EngineResult<Vec<(String, bool)>> {
        Ok(self
            .containers
            .all()?
            .into_iter()
            .filter(|c| c.image == *id)
            .map(|c| {
                let running = c.state.is_active();
                (c.id.to_string(), running)
            })
            .collect())
    }

    /// Finds an image by reference, full or short ID (`sha256:` optional), or ID prefix.
    pub fn find(&self, name: &str) -> EngineResult<ImageDetails> {
        let tx = self.store.read()?;
        let (id, _) = self.resolve(&tx, name)?;
        let record = self.record(&tx, &id)?;
        drop(tx);
        self.details(record)
    }

    /// All images, newest first.
    pub fn list(&self) -> EngineResult<Vec<ImageDetails>> {
        let records = self.store.read()?.images()?;
        // One damaged image must not hide all the others: it is logged and left
        // out (it can still be removed by ID, which needs no config).
        let mut out: Vec<ImageDetails> = records
            .into_iter()
            .filter_map(|r| {
                let id = r.id.clone();
                self.details(r).map_err(|e| tracing::error!(image = %id, error = %e, "image cannot be listed")).ok()
            })
            .collect();
        // Newest first by the config's creation time, then by when it was added here.
        out.sort_by(|a, b| {
            let ca = a.config.created().clone().unwrap_or_default();
            let cb = b.config.created().clone().unwrap_or_default();
            let ta = chrono::DateTime::parse_from_rfc3339(&ca).ok();
            let tb = chrono::DateTime::parse_from_rfc3339(&cb).ok();
            tb.cmp(&ta)
                .then_with(|| b.record.added_at.cmp(&a.record.added_at))
                .then_with(|| a.record.id.cmp(&b.record.id))
        });
        Ok(out)
    }

    /// `docker history`: the config's history, newest first, with layer sizes
    /// and the image ID on the entry that made the top layer.
    pub fn history(&self, name: &str) -> EngineResult<Vec<HistoryEntry>> {
        let details = self.find(name)?;
        let tx = self.store.read()?;
        let sizes: Vec<u64> = details
            .record
            .layers
            .iter()
            .map(|c| tx.layer(c).map(|l| l.map(|l| l.size).unwrap_or(0)))
            .collect::<Result<_, _>>()?;
        let mut entries = Vec::new();
        let history = details.config.history().clone().unwrap_or_default();
        let mut layer = 0;
        if history.is_empty() {
            // No history recorded: one line per layer, so the sizes still show.
            for s in &sizes {
                entries.push(HistoryEntry {
                    id: None,
                    created: details.config.created().clone(),
                    created_by: String::new(),
                    size: *s,
                    comment: String::new(),
                    tags: vec![],
                    empty_layer: false,
                });
            }
        }
        for h in history {
            let empty = h.empty_layer().unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = sizes.get(layer).copied().unwrap_or(0);
                layer += 1;
                s
            };
            entries.push(HistoryEntry {
                id: None,
                created: h.created().clone(),
                created_by: h.created_by().clone().unwrap_or_default(),
                size,
                comment: h.comment().clone().unwrap_or_default(),
                tags: vec![],
                empty_layer: empty,
            });
        }
        entries.reverse();
        if let Some(top) = entries.first_mut() {
            top.id = Some(details.record.id.clone());
            top.tags = details.record.repo_tags.clone();
        }
        Ok(entries)
    }

    // ---- load ----

    /// `docker load`: a docker-archive or OCI-layout tar (detected), possibly
    /// compressed. Returns the messages Docker prints
    /// (`Loaded image: name:tag` / `Loaded image ID: sha256:...`).
    pub fn load(
        &self,
        input: &mut dyn Read,
        progress: &mut dyn FnMut(Progress),
    ) -> EngineResult<Vec<String>> {
        let (_, mut input) = decompressed("the input", input)?;
        let t0 = std::time::Instant::now();
        let spooled = archive::spool(&mut input, &self.content, progress)?;
        tracing::debug!(elapsed = ?t0.elapsed(), "load: archive spooled");
        drop(input);
        let sources = spooled.images(&self.content);
        let mut candidates = spooled.blob_digests();
        let sources = match sources {
            Ok(s) => s,
            Err(e) => {
                drop(spooled);
                self.gc_blobs(Some(&candidates))?;
                return Err(e.into());
            }
        };
        // Configs of docker archives are stored while loading; a failure drops them too.
        candidates.extend(sources.iter().map(|s| Digest::of(&s.config)));
        let mut messages = Vec::new();
        let mut result = Ok(());
        for src in sources {
            match self.load_one(src, progress) {
                Ok(lines) => {
                    for l in lines {
                        progress(Progress::Message(l.clone()));
                        messages.push(l);
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Blobs of the archive no image kept (indexes, duplicates, or all of
        // them after a failure) go; the pins must be dropped first.
        drop(spooled);
        self.gc_blobs(Some(&candidates))?;
        result.map(|()| messages)
    }

    fn load_one(&self, src: ImageSource, progress: &mut dyn FnMut(Progress)) -> EngineResult<Vec<String>> {
        let id = Digest::of(&src.config);
        let whence = format!("image {id}");
        let (_, diff_ids) = parse_config(&src.config, &whence)?;
        if diff_ids.len() != src.layers.len() {
            return Err(EngineError::Image(ImageError::Invalid(format!(
                "{whence}: the config lists {} layers (rootfs.diff_ids) but the manifest has {}",
                diff_ids.len(),
                src.layers.len()
            ))));
        }
        let _config_pin = self.content.put(&format!("config of {whence}"), &src.config, Some(&id))?;
        let mut chain = Vec::new();
        for d in &diff_ids {
            chain.push(LayerRecord::chain_id_of(chain.last(), d));
        }
        let _claims = self.claims.claim_all(&chain);
        let layers = self.unpack_chain(&chain, &diff_ids, &src.layers, &mut |step| {
            if let ChainStep::Done(i) = step {
                progress(Progress::LayerDone { diff_id: diff_ids[i].clone() });
            }
            Ok(())
        })?;
        // Everything is on disk: register image, layers and tags at once.
        let registered = self.register(&id, &layers, &src.tags, src.manifest.as_ref(), &[]);
        if registered.is_err() {
            self.discard_new_layers(&layers);
        }
        let (record, moved) = registered?;
        // What `docker load` prints when a tag moves off another image.
        let mut lines: Vec<String> = moved
            .iter()
            .map(|(t, old)| format!("The image {t} already exists, renaming the old one with ID {old} to empty string"))
            .collect();
        lines.extend(src.tags.iter().map(|t| format!("Loaded image: {t}")));
        if src.tags.is_empty() {
            lines.push(format!("Loaded image ID: {}", record.id));
        }
        Ok(lines)
    }

    /// Unpacks every layer of `chain` that is not there yet (the caller holds
    /// the claims), from the blobs `sources` names. `step` hears of each
    /// layer before it is unpacked (a pull waits there for its blob) and
    /// when it is done; its error stops the unpack. Returns the layer records
    /// with whether each is new; on failure the new ones are removed again.
    pub(super) fn unpack_chain(
        &self,
        chain: &[Digest],
        diff_ids: &[Digest],
        sources: &[LayerSource],
        step: &mut dyn FnMut(ChainStep) -> EngineResult<()>,
    ) -> EngineResult<Vec<(LayerRecord, bool)>> {
        let mut out: Vec<(LayerRecord, bool)> = Vec::new();
        // Read once: no snapshot is held open through a long unpack.
        let present = {
            let tx = self.store.read()?;
            chain.iter().map(|c| tx.layer(c)).collect::<Result<Vec<_>, _>>()?
        };
        for (i, ((chain_id, diff_id), existing)) in chain.iter().zip(diff_ids).zip(present).enumerate() {
            let source = &sources[i];
            let parent = out.last().map(|(l, _)| l);
            if let Some(mut existing) = existing {
                // Keep a blob for save if the existing layer lost or never had
                // one (a pull does not fetch the blobs of layers it has).
                let lost = existing.blob.as_ref().is_none_or(|(d, _)| !self.content.exists(d));
                if lost && self.content.exists(&source.blob) {
                    let kind = self.blob_compression(&source.blob)?;
                    existing.blob = Some((source.blob.clone(), layer_media_type(kind).to_string()));
                }
                out.push((existing, false));
                if let Err(e) = step(ChainStep::Done(i)) {
                    self.discard_new_layers(&out);
                    return Err(e);
                }
                continue;
            }
            if let Err(e) = step(ChainStep::Unpacking(i)) {
                self.discard_new_layers(&out);
                return Err(e);
            }
            let storage_id = chain_id.hex().to_string();
            let what = format!("layer {} ({})", source.path, diff_id);
            // A leftover of an interrupted removal under the same name goes first.
            if self.storage.exists(&storage_id) {
                if let Err(e) = self.storage.remove(&storage_id) {
                    self.discard_new_layers(&out);
                    return Err(driver_context(&what, e));
                }
            }
            let parent_storage = parent.map(|p| p.storage_id.clone());
            let t0 = std::time::Instant::now();
            // A pull's blob still downloading is unpacked as its bytes arrive.
            let bytes: Result<Box<dyn std::io::Read + Send>, EngineError> =
                match source.live.as_ref().and_then(|live| live.reader()) {
                    Some(live) => Ok(Box::new(live)),
                    None => self.content.open_blob(&source.blob).map(|f| Box::new(f) as _).map_err(EngineError::from),
                };
            let unpacked = bytes.and_then(|bytes| {
                let storage = self.storage.as_ref();
                unpack_layer_from(bytes, storage, &source.blob, &what, &storage_id, parent_storage.as_deref(), Some(diff_id))
            });
            tracing::debug!(layer = %chain_id, elapsed = ?t0.elapsed(), "load: layer unpacked");
            match unpacked {
                Ok(u) => {
                    let kind = self.blob_compression(&source.blob)?;
                    out.push((
                        LayerRecord {
                            chain_id: chain_id.clone(),
                            diff_id: diff_id.clone(),
                            parent: parent.map(|p| p.chain_id.clone()),
                            storage_id,
                            size: u.size,
                            tar_size: u.tar_size,
                            blob: Some((source.blob.clone(), layer_media_type(kind).to_string())),
                        },
                        true,
                    ));
                    if let Err(e) = step(ChainStep::Done(i)) {
                        self.discard_new_layers(&out);
                        return Err(e);
                    }
                }
                Err(e) => {
                    self.discard_new_layers(&out);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn blob_compression(&self, blob: &Digest) -> EngineResult<Compression> {
        let mut head = [0u8; 6];
        let mut f = self.content.open_blob(blob)?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(EngineError::io(format!("reading blob {blob}"), e)),
            }
        }
        Ok(detect_compression(&head[..n]))
    }

    /// Removes the storage layers this operation created (they have no records).
    pub(super) fn discard_new_layers(&self, layers: &[(LayerRecord, bool)]) {
        for (l, new) in layers.iter().rev() {
            if *new {
                if let Err(e) = self.storage.remove(&l.storage_id) {
                    tracing::warn!(layer = %l.chain_id, error = %e, "removing a layer of a failed operation; the next start removes it");
                }
            }
        }
    }

    /// One transaction: the layer records, the image record, its tags and
    /// repository digests (`name@sha256:…`, what a pull adds). Returns the
    /// record and the tags taken off other images (with their IDs).
    pub(super) fn register(
        &self,
        id: &Digest,
        layers: &[(LayerRecord, bool)],
        tags: &[String],
        manifest: Option<&Digest>,
        repo_digests: &[String],
    ) -> EngineResult<(ImageRecord, Vec<(String, Digest)>)> {
        let _gc = self.gc_lock.lock().unwrap_or_else(|e| e.into_inner());
        let tx = self.store.write()?;
        for (l, _) in layers {
            tx.put_layer(l)?;
        }
        let mut record = match tx.image(id)? {
            Some(existing) => existing,
            None => ImageRecord {
                id: id.clone(),
                repo_tags: vec![],
                repo_digests: vec![],
                layers: layers.iter().map(|(l, _)| l.chain_id.clone()).collect(),
                manifest: None,
                size: layers.iter().map(|(l, _)| l.size).sum(),
                added_at: berth_runtime::clock::now_rfc3339(),
            },
        };
        if let Some(m) = manifest {
            if self.content.exists(m) {
                record.manifest = Some(m.clone());
            }
        }
        for d in repo_digests {
            if !record.repo_digests.contains(d) {
                record.repo_digests.push(d.clone());
            }
        }
        let mut moved = Vec::new();
        for t in tags {
            if let Some(old) = move_tag(&tx, &mut record, t)? {
                moved.push((t.clone(), old));
            }
        }
        tx.put_image(&record)?;
        tx.commit()?;
        Ok((record, moved))
    }

    // ---- import ----

    /// `docker import`: a root filesystem tar (possibly compressed) as a one-layer image.
    pub fn import(
        &self,
        input: &mut dyn Read,
        options: &ImportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> EngineResult<ImageDetails> {
        // Check what can be checked before reading a possibly large input.
        let target = match &options.reference {
            Some(r) => {
                if r.digest.is_some() {
                    return Err(EngineError::InvalidArgument(format!(
                        "cannot import to {r}: a reference with a digest cannot be a tag"
                    )));
                }
                r.clone().with_default_tag().tagged()
            }
            None => None,
        };
        let mut container_config = Map::new();
        apply_changes(&mut container_config, &options.changes)?;
        let platform = match &options.platform {
            None => Platform::host(),
            Some(p) => p.parse::<Platform>().map_err(|e| EngineError::InvalidArgument(e.to_string()))?,
        };
        let Platform { os, architecture: arch, variant } = platform;

        // Keep the input as it came (the layer's blob), hashing it on the way.
        let mut writer = self.content.writer("the imported tar", None, None)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut reported = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(EngineError::Image(ImageError::Truncated {
                        context: "reading the imported tar".into(),
                        source: e,
                    }))
                }
            };
            writer
                .write_all(&buf[..n])
                .map_err(|e| EngineError::io("writing the imported tar to the content store", e))?;
            if writer.written() - reported >= 4 << 20 {
                reported = writer.written();
                progress(Progress::Reading { bytes: reported, total: None });
            }
        }
        if writer.written() == 0 {
            return Err(EngineError::InvalidArgument("the imported tar is empty".into()));
        }
        progress(Progress::Reading { bytes: writer.written(), total: None });
        let (blob_pin, _) = writer.commit()?;
        let blob = blob_pin.digest().clone();
        let kind = self.blob_compression(&blob)?;

        // The diff ID (and so the chain ID) is known only after decompressing,
        // so the layer is unpacked under a name of its own first.
        let storage_id = format!(
            "import-{}",
            Digest::of(format!("{blob} {} {}", berth_runtime::clock::now_rfc3339(), std::process::id()).as_bytes()).short()
        );
        let unpacked =
            unpack_layer(&self.content, self.storage.as_ref(), &blob, "the imported tar", &storage_id, None, None);
        let u = match unpacked {
            Ok(u) => u,
            Err(e) => {
                drop(blob_pin);
                self.gc_blobs(Some(&[blob]))?;
                return Err(e);
            }
        };
        progress(Progress::LayerDone { diff_id: u.diff_id.clone() });
        let chain_id = u.diff_id.clone();
        let _claim = self.claims.claim_all(std::slice::from_ref(&chain_id));
        let existing = self.store.read()?.layer(&chain_id)?;
        let layer = match existing {
            Some(mut l) => {
                // The same tar is there already: keep that layer, drop ours.
                if let Err(e) = self.storage.remove(&storage_id) {
                    tracing::warn!(layer = storage_id, error = %e, "removing a duplicate imported layer; the next start removes it");
                }
                if l.blob.as_ref().is_none_or(|(d, _)| !self.content.exists(d)) {
                    l.blob = Some((blob.clone(), layer_media_type(kind).to_string()));
                }
                (l, false)
            }
            None => (
                LayerRecord {
                    chain_id: chain_id.clone(),
                    diff_id: u.diff_id.clone(),
                    parent: None,
                    storage_id: storage_id.clone(),
                    size: u.size,
                    tar_size: u.tar_size,
                    blob: Some((blob.clone(), layer_media_type(kind).to_string())),
                },
                true,
            ),
        };
        let comment =
            options.message.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| "Imported from -".to_string());
        let config =
            import_config(&os, &arch, variant.as_deref(), container_config, &u.diff_id, &berth_runtime::clock::now_rfc3339(), &comment);
        let id = Digest::of(&config);
        let registered = self
            .content
            .put("config of the imported image", &config, Some(&id))
            .map_err(EngineError::from)
            .and_then(|_pin| self.register(&id, std::slice::from_ref(&layer), target.as_slice(), None, &[]));
        let record = match registered {
            Ok((r, _)) => r,
            Err(e) => {
                self.discard_new_layers(std::slice::from_ref(&layer));
                drop(blob_pin);
                self.gc_blobs(Some(&[blob, id]))?;
                return Err(e);
            }
        };
        drop(blob_pin);
        // A duplicate import may have brought a blob the existing layer does not use.
        self.gc_blobs(Some(&[blob]))?;
        self.details(record)
    }

    // ---- commit (a container's writable layer becomes an image) ----

    /// `docker commit`: `write_diff` writes the container's changes as an
    /// uncompressed layer tar; it becomes a new layer on top of image `base`,
    /// with a config whose `config` is `container_config` and whose history
    /// gains one entry. Registered (and tagged with `tag`) in one transaction.
    pub(crate) fn commit_layer(
        &self,
        base: &Digest,
        write_diff: &mut dyn FnMut(&mut dyn Write) -> EngineResult<()>,
        container_config: Map<String, serde_json::Value>,
        history: serde_json::Value,
        author: &str,
        tag: Option<String>,
    ) -> EngineResult<Digest> {
        let base_record = self.record(&self.store.read()?, base)?;
        let base_config = self.content.read(base)?;
        let mut config: serde_json::Value = serde_json::from_slice(&base_config)
            .map_err(|e| EngineError::Image(ImageError::Invalid(format!("image {base}: invalid config: {e}"))))?;
        let mut writer = self.content.writer("the committed layer", None, None)?;
        write_diff(&mut writer)?;
        let (blob_pin, _) = writer.commit()?;
        let blob = blob_pin.digest().clone();
        // The blob is the uncompressed tar: its digest is the diff ID.
        let diff_id = blob.clone();
        let parent = base_record.layers.last().cloned();
        let chain_id = LayerRecord::chain_id_of(parent.as_ref(), &diff_id);
        let mut chain = base_record.layers.clone();
        chain.push(chain_id.clone());
        let _claims = self.claims.claim_all(&chain);
        let tx = self.store.read()?;
        let mut layers: Vec<(LayerRecord, bool)> = Vec::new();
        for c in &base_record.layers {
            let l = tx.layer(c)?.ok_or_else(|| {
                EngineError::Image(ImageError::Invalid(format!("image {base}: layer {c} is missing from the store")))
            })?;
            layers.push((l, false));
        }
        let existing = tx.layer(&chain_id)?;
        drop(tx);
        let top = match existing {
            Some(l) => (l, false),
            None => {
                let storage_id = chain_id.hex().to_string();
                if self.storage.exists(&storage_id) {
                    self.storage.remove(&storage_id).map_err(|e| driver_context("a leftover committed layer", e))?;
                }
                let parent_storage = layers.last().map(|(l, _)| l.storage_id.clone());
                let unpacked = unpack_layer(
                    &self.content,
                    self.storage.as_ref(),
                    &blob,
                    "the committed layer",
                    &storage_id,
                    parent_storage.as_deref(),
                    Some(&diff_id),
                );
                let u = match unpacked {
                    Ok(u) => u,
                    Err(e) => {
                        drop(blob_pin);
                        self.gc_blobs(Some(&[blob]))?;
                        return Err(e);
                    }
                };
                (
                    LayerRecord {
                        chain_id: chain_id.clone(),
                        diff_id: diff_id.clone(),
                        parent: parent.clone(),
                        storage_id,
                        size: u.size,
                        tar_size: u.tar_size,
                        blob: Some((blob.clone(), layer_media_type(Compression::None).to_string())),
                    },
                    true,
                )
            }
        };
        layers.push(top);
        let now = berth_runtime::clock::now_rfc3339();
        if let Some(obj) = config.as_object_mut() {
            obj.insert("config".into(), serde_json::Value::Object(container_config));
            obj.insert("created".into(), serde_json::Value::String(now));
            if !author.is_empty() {
                obj.insert("author".into(), serde_json::Value::String(author.to_string()));
            } else {
                obj.remove("author");
            }
            obj.remove("container_config");
            obj.remove("container");
            let hist = obj.entry("history").or_insert_with(|| serde_json::Value::Array(vec![]));
            if let Some(a) = hist.as_array_mut() {
                a.push(history);
            }
            let rootfs = obj.entry("rootfs").or_insert_with(|| serde_json::json!({"type": "layers", "diff_ids": []}));
            if let Some(ids) = rootfs.get_mut("diff_ids").and_then(|d| d.as_array_mut()) {
                ids.push(serde_json::Value::String(diff_id.to_string()));
            }
        }
        let bytes = serde_json::to_vec(&config)
            .map_err(|e| EngineError::Image(ImageError::Invalid(format!("encoding the committed config: {e}"))))?;
        let id = Digest::of(&bytes);
        let tags: Vec<String> = tag.into_iter().collect();
        let registered = self
            .content
            .put("config of the committed image", &bytes, Some(&id))
            .map_err(EngineError::from)
            .and_then(|_pin| self.register(&id, &layers, &tags, None, &[]));
        if let Err(e) = registered {
            self.discard_new_layers(&layers);
            drop(blob_pin);
            self.gc_blobs(Some(&[blob, id]))?;
            return Err(e);
        }
        drop(blob_pin);
        // An identical layer existed already: our blob may be unused.
        self.gc_blobs(Some(&[blob]))?;
        Ok(id)
    }

    // ---- tag ----

    /// `docker tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &ImageRef) -> EngineResult<()> {
        if target.digest.is_some() {
            return Err(EngineError::InvalidArgument(format!(
                "refusing to create a tag with a digest reference: {target}"
            )));
        }
        let tagged = target.clone().with_default_tag().tagged().unwrap_or_default();
        let (id, _) = self.resolve(&self.store.read()?, source)?;
        let tx = self.store.write()?;
        let mut record = tx.image(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such image: {source}")))?;
        move_tag(&tx, &mut record, &tagged)?;
        tx.put_image(&record)?;
        tx.commit()?;
        Ok(())
    }

    // ---- save ----

    /// `docker save`: the named images (references or IDs) as one archive.
    pub fn save(
        &self,
        names: &[String],
        format: ArchiveFormat,
        out: &mut dyn Write,
    ) -> EngineResult<()> {
        if names.is_empty() {
            return Err(EngineError::InvalidArgument("no images given to save".into()));
        }
        let tx = self.store.read()?;
        // Image ID -> tags to record, in the order names were given.
        let mut order: Vec<Digest> = Vec::new();
        let mut tags: HashMap<Digest, Vec<String>> = HashMap::new();
        let mut add = |id: Digest, tag: Option<String>| {
            let entry = tags.entry(id.clone()).or_insert_with(|| {
                order.push(id);
                Vec::new()
            });
            if let Some(t) = tag {
                if !entry.contains(&t) {
                    entry.push(t);
                }
            }
        };
        for name in names {
            // A repository name alone saves every tag of it, as Docker does.
            if let Ok(r) = ImageRef::parse(name) {
                if r.tag.is_none() && r.digest.is_none() && !(name.len() == 64 && is_hex(name)) {
                    let prefix = format!("{}:", r.name);
                    let all: Vec<(String, Digest)> =
                        tx.tags()?.into_iter().filter(|(t, _)| t.starts_with(&prefix)).collect();
                    if !all.is_empty() {
                        for (t, id) in all {
                            add(id, Some(t));
                        }
                        continue;
                    }
                }
            }
            let (id, matched) = self.resolve(&tx, name)?;
            add(id, if let Matched::Tag(t) = matched { Some(t) } else { None });
        }
        let mut images = Vec::new();
        let mut pins: Vec<BlobPin> = Vec::new();
        for id in order {
            let record = self.record(&tx, &id)?;
            pins.push(self.content.pin(&id));
            let config = self.content.read(&id)?;
            let mut layers = Vec::new();
            for c in &record.layers {
                let l = tx.layer(c)?.ok_or_else(|| {
                    EngineError::Image(ImageError::Invalid(format!("image {id}: layer {c} is missing from the store")))
                })?;
                if let Some((b, _)) = &l.blob {
                    pins.push(self.content.pin(b));
                }
                layers.push(l);
            }
            let manifest = match &record.manifest {
                Some(m) => self.content.read(m).ok(),
                None => None,
            };
            images.push(SaveImage {
                id: id.clone(),
                config,
                tags: tags.remove(&id).unwrap_or_default(),
                layers,
                manifest,
            });
        }
        drop(tx);
        match format {
            ArchiveFormat::DockerArchive => save::write_docker_archive(&self.content, &images, out),
            ArchiveFormat::OciLayout => save::write_oci_layout(&self.content, &images, out),
        }
    }

    // ---- remove ----

    /// `docker rmi`: untag or delete, as Docker decides it (see `ImageDeleteItem`).
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        _no_prune: bool,
    ) -> EngineResult<Vec<ImageDeleteItem>> {
        // `no_prune` keeps untagged parent images in Docker; berth records no
        // parent images (every image is self-contained), so there is nothing to keep.
        let (id, matched) = self.resolve(&self.store.read()?, name)?;
        let mut items = Vec::new();
        let tx = self.store.write()?;
        let mut record = self.record_in(&tx, &id)?;
        match &matched {
            Matched::Tag(t) | Matched::Digest(t) => {
                // As Docker: removing a repository's last tag also removes its
                // digest references (a pull's `name@sha256:…`).
                let mut digests_gone: Vec<String> = Vec::new();
                if let Matched::Tag(_) = &matched {
                    let repo = t.rsplit_once(':').map(|(n, _)| n).unwrap_or(t);
                    let tag_left = record.repo_tags.iter().any(|x| x != t && x.rsplit_once(':').map(|(n, _)| n) == Some(repo));
                    if !tag_left {
                        digests_gone = record
                            .repo_digests
                            .iter()
                            .filter(|d| d.split_once('@').map(|(n, _)| n) == Some(repo))
                            .cloned()
                            .collect();
                    }
                }
                let others = record.repo_tags.iter().filter(|x| *x != t).count()
                    + record.repo_digests.iter().filter(|x| *x != t && !digests_gone.contains(x)).count();
                if others > 0 {
                    record.repo_tags.retain(|x| x != t);
                    record.repo_digests.retain(|x| x != t && !digests_gone.contains(x));
                    tx.delete_tag(t)?;
                    tx.put_image(&record)?;
                    tx.commit()?;
                    let mut items = vec![ImageDeleteItem::Untagged(t.clone())];
                    items.extend(digests_gone.into_iter().map(ImageDeleteItem::Untagged));
                    return Ok(items);
                }
            }
            Matched::Id => {
                let repos: HashSet<&str> =
                    record.repo_tags.iter().filter_map(|t| t.rsplit_once(':').map(|(n, _)| n)).collect();
                if repos.len() > 1 && !force {
                    return Err(EngineError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        id.short()
                    )));
                }
            }
        }
        let mount = self.image_mount_target(&id);
        if berth_runtime::mount::is_mount_point(&mount) {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is mounted at {}; unmount it first",
                    id.short(),
                    mount.display()
                )));
            }
            berth_runtime::mount::unmount(&mount).map_err(|e| {
                EngineError::io(format!("unmounting image {}", id.short()), io::Error::other(e.to_string()))
            })?;
            let _ = fs::remove_dir(&mount);
        }
        let users = self.users_of(&id)?;
        if let Some((c, _)) = users.iter().find(|(_, running)| *running) {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                id.short(),
                &c[..12]
            )));
        }
        if let Some((c, _)) = users.first() {
            if !force {
                return Err(EngineError::Conflict(match &matched {
                    Matched::Tag(t) | Matched::Digest(t) => format!(
                        "conflict: unable to remove repository reference \"{t}\" (must force) - container {} is using its referenced image {}",
                        &c[..12],
                        id.short()
                    ),
                    Matched::Id => format!(
                        "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                        id.short(),
                        &c[..12]
                    ),
                }));
            }
            // Forced while stopped containers use it: untag only, as Docker
            // does; the image stays (dangling) until they are gone.
            for t in &record.repo_tags {
                tx.delete_tag(t)?;
                items.push(ImageDeleteItem::Untagged(t.clone()));
            }
            for d in &record.repo_digests {
                items.push(ImageDeleteItem::Untagged(d.clone()));
            }
            record.repo_tags.clear();
            record.repo_digests.clear();
            tx.put_image(&record)?;
            tx.commit()?;
            return Ok(items);
        }
        for t in &record.repo_tags {
            tx.delete_tag(t)?;
            items.push(ImageDeleteItem::Untagged(t.clone()));
        }
        for d in &record.repo_digests {
            items.push(ImageDeleteItem::Untagged(d.clone()));
        }
        tx.delete_image(&id)?;
        tx.commit()?;
        items.push(ImageDeleteItem::Deleted(id.clone()));
        let (removed, _) = self.remove_unused_layers(&record.layers)?;
        items.extend(removed.into_iter().map(ImageDeleteItem::Deleted));
        let mut blobs = vec![id];
        blobs.extend(record.manifest.clone());
        self.gc_blobs(Some(&blobs))?;
        Ok(items)
    }

    fn record_in(&self, tx: &WriteTxn, id: &Digest) -> EngineResult<ImageRecord> {
        tx.image(id)?.ok_or_else(|| EngineError::NotFound(format!("No such image: {id}")))
    }

    /// Removes those of `chain` (top last) no image uses any more, top first,
    /// skipping any another operation holds. Returns their chain IDs and bytes.
    fn remove_unused_layers(&self, chain: &[Digest]) -> EngineResult<(Vec<Digest>, u64)> {
        let mut removed = Vec::new();
        let mut bytes = 0;
        let mut blobs = Vec::new();
        for c in chain.iter().rev() {
            let Some(_claim) = self.claims.try_claim(c) else { continue };
            let tx = self.store.write()?;
            if tx.images()?.iter().any(|i| i.layers.contains(c)) {
                continue;
            }
            let Some(layer) = tx.layer(c)? else { continue };
            tx.delete_layer(c)?;
            tx.commit()?;
            // The record is gone first: a crash now leaves a directory that
            // the next start removes.
            self.storage.remove(&layer.storage_id).map_err(|e| driver_context(&format!("removing layer {c}"), e))?;
            bytes += layer.size;
            blobs.extend(layer.blob.map(|(d, _)| d));
            blobs.extend(self.compressed_form(&layer.diff_id)?);
            removed.push(c.clone());
        }
        self.gc_blobs(Some(&blobs))?;
        Ok((removed, bytes))
    }

    /// `docker image prune`: dangling images, or with `all` every unused one.
    /// Returns what was deleted and the bytes reclaimed.
    pub fn prune(&self, all: bool) -> EngineResult<(Vec<ImageDeleteItem>, u64)> {
        let candidates: Vec<ImageRecord> = self
            .store
            .read()?
            .images()?
            .into_iter()
            .filter(|i| {
                (all || i.repo_tags.is_empty())
                    && self.containers_using(&i.id) == 0
                    && !berth_runtime::mount::is_mount_point(&self.image_mount_target(&i.id))
            })
            .collect();
        let mut items = Vec::new();
        let mut reclaimed = 0;
        for img in candidates {
            let before: HashMap<Digest, u64> =
                self.store.read()?.layers()?.into_iter().map(|l| (l.chain_id, l.size)).collect();
            match self.remove(&img.id.to_string(), true, false) {
                Ok(removed) => {
                    for item in &removed {
                        if let ImageDeleteItem::Deleted(d) = item {
                            reclaimed += before.get(d).copied().unwrap_or(0);
                        }
                    }
                    items.extend(removed);
                }
                // Removed meanwhile by someone else: nothing to prune.
                Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((items, reclaimed))
    }

    /// `docker system df` for images.
    pub fn disk_usage(&self) -> EngineResult<ImageDiskUsage> {
        let images = self.list()?;
        let layers: HashMap<Digest, u64> =
            self.store.read()?.layers()?.into_iter().map(|l| (l.chain_id, l.size)).collect();
        let mut users: HashMap<&Digest, usize> = HashMap::new();
        for i in &images {
            for c in &i.record.layers {
                *users.entry(c).or_default() += 1;
            }
        }
        let shared: Vec<u64> = images
            .iter()
            .map(|i| {
                i.record
                    .layers
                    .iter()
                    .filter(|c| users.get(c).copied().unwrap_or(0) > 1)
                    .map(|c| layers.get(c).copied().unwrap_or(0))
                    .sum()
            })
            .collect();
        let layers_size = layers.values().sum();
        Ok(ImageDiskUsage { images: images.into_iter().zip(shared).collect(), layers_size })
    }

    // ---- image mounts ----

    fn image_mount_target(&self, id: &Digest) -> PathBuf {
        self.run.join("image-mounts").join(id.hex())
    }

    /// `podman image mount`: mounts the image's root filesystem read-only and
    /// returns where; mounting an already mounted image returns the same path.
    pub fn mount(&self, name: &str) -> EngineResult<PathBuf> {
        let _m = self.mount_lock.lock().unwrap_or_else(|e| e.into_inner());
        let tx = self.store.read()?;
        let (id, _) = self.resolve(&tx, name)?;
        let record = self.record(&tx, &id)?;
        let top = record
            .layers
            .last()
            .ok_or_else(|| EngineError::InvalidArgument(format!("image {} has no layers to mount", id.short())))?;
        let layer = tx.layer(top)?.ok_or_else(|| {
            EngineError::Image(ImageError::Invalid(format!("image {id}: layer {top} is missing from the store")))
        })?;
        drop(tx);
        let target = self.image_mount_target(&id);
        if berth_runtime::mount::is_mount_point(&target) {
            return Ok(target);
        }
        fs::create_dir_all(&target).map_err(|e| EngineError::io(format!("creating {}", target.display()), e))?;
        let plan =
            self.storage.mount_plan(&layer.storage_id, false).map_err(|e| driver_context(&format!("image {id}"), e))?;
        berth_runtime::mount::mount(&plan.spec, &target)
            .map_err(|e| EngineError::io(format!("mounting image {}", id.short()), io::Error::other(e.to_string())))?;
        Ok(target)
    }

    /// Undoes `mount_image`.
    pub fn unmount(&self, name: &str) -> EngineResult<()> {
        let _m = self.mount_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (id, _) = self.resolve(&self.store.read()?, name)?;
        let target = self.image_mount_target(&id);
        if !berth_runtime::mount::is_mount_point(&target) {
            return Err(EngineError::InvalidArgument(format!("image {} is not mounted", id.short())));
        }
        berth_runtime::mount::unmount(&target).map_err(|e| {
            EngineError::io(format!("unmounting image {}", id.short()), io::Error::other(e.to_string()))
        })?;
        if let Err(e) = fs::remove_dir(&target) {
            tracing::warn!(path = %target.display(), error = %e, "removing an image mount point");
        }
        Ok(())
    }
}
