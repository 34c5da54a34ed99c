//! `docker push`: a local image's blobs and manifest to a registry.
//!
//! Per layer, in parallel (`max-concurrent-uploads`, 5 as dockerd's): the
//! blob to send is the layer's compressed blob, or, for a layer the store
//! holds uncompressed (`load` of a plain archive, `import`, `commit`), a
//! gzip of it made on every core once and kept in the content store, its
//! digest remembered (table `compressed_layers`) so the next push of it
//! compresses nothing. The registry is asked first (HEAD) and a blob it has
//! is skipped; a blob known to be in another repository of the same
//! registry (table `blob_repositories`, filled by pushes and pulls) is
//! mounted from there; the rest is uploaded, streamed from its file. The
//! config goes next and the manifest last, so the registry never names an
//! image whose blobs it does not have. The config is sent as it is stored,
//! so the image pulled back has the same ID.
//!
//! Manifests are Docker's schema 2, as dockerd pushes them, unless a layer
//! is zstd (which schema 2 cannot name: then OCI). An image that came with
//! a manifest of its own (pulled, or loaded from an OCI layout) whose blobs
//! are all here is pushed with that manifest's very bytes, so its digest is
//! the same on every registry it goes to.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use berth_model::{AuthConfig, Digest, ImageRef, LayerRecord};
use serde_json::json;

use crate::error::{EngineError, EngineResult};
use crate::registry::{descriptor_digest, parse_manifest, Manifest, RegistryClient, UploadStart, DOCKER_CONFIG, DOCKER_LAYER_GZIP};
use crate::store::DefinitionTable;
use super::compressed::{self, CompressedLayer};
use super::content::BlobPin;
use super::ops::parse_config;
use super::parallel_gzip::{gzip_parallel, PUSH_LEVEL};
use super::{ImageError, ImageService};

/// Bytes between two `Pushing` reports of one blob.
const REPORT_EVERY: u64 = 512 << 10;
/// Repositories remembered per blob (most recent first): enough to find one to mount from.
const REPOSITORIES_PER_BLOB: usize = 8;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// What a push reports, in the order Docker's progress stream has it.
#[derive(Clone, Debug)]
pub enum PushProgress {
    /// `The push refers to repository [localhost:5000/app]` (the full name).
    RefersTo { repository: String },
    /// A step of one layer, named by its diff ID (dockerd's short ID of a pushed layer).
    Layer { diff_id: Digest, step: PushStep },
    /// One tag is pushed: `<tag>: digest: <manifest digest> size: <manifest bytes>`.
    Pushed { tag: String, digest: Digest, size: u64 },
}

/// A layer's steps (Docker's status words in the API's spelling).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushStep {
    Preparing,
    /// Queued behind `max-concurrent-uploads` others.
    Waiting,
    Pushing { current: u64, total: u64 },
    Pushed,
    /// The registry has the blob (`Layer already exists`).
    AlreadyExists,
    /// Mounted from another repository of the registry (`Mounted from team/base`).
    MountedFrom(String),
}

/// How a layer's blob is found before it is sent.
#[derive(Clone, Debug)]
enum LayerBlob {
    /// A compressed blob in the content store, sent as it is.
    Stored { digest: Digest, size: u64, media_type: String },
    /// The layer's uncompressed tar (blob `tar`): sent gzip'd.
    Uncompressed { tar: Digest },
}

/// A blob ready to send, pinned while it is sent.
struct ReadyBlob {
    digest: Digest,
    size: u64,
    media_type: String,
    _pin: BlobPin,
}

/// A layer's blob as the manifest names it.
#[derive(Clone, Debug)]
struct SentBlob {
    digest: Digest,
    size: u64,
    media_type: String,
}

/// Events the upload threads send to the pushing thread.
enum Upload {
    Step(usize, PushStep),
    Done(usize, EngineResult<SentBlob>),
}

/// `registry/repository` as blob sources are kept: `localhost:5000/team/app`.
fn repository_key(image: &ImageRef) -> String {
    format!("{}/{}", image.registry(), image.repository())
}

impl ImageService {
    /// `docker push`: `reference`'s tag, or with no tag (`push -a`) every
    /// tag of its repository, as `auth` (anonymously when `None`). Returns
    /// nothing: the progress says it all.
    pub fn push(&self, reference: &ImageRef, auth: Option<&AuthConfig>, progress: &mut dyn FnMut(PushProgress)) -> EngineResult<()> {
        let repository = ImageRef { name: reference.name.clone(), tag: None, digest: None };
        progress(PushProgress::RefersTo { repository: format!("{}/{}", repository.registry(), repository.repository()) });
        if reference.digest.is_some() {
            return Err(EngineError::InvalidArgument(format!(
                "cannot push {reference}: a digest reference names what the registry has already; push a tag"
            )));
        }
        let prefix = format!("{}:", repository.name);
        let mut tags: Vec<(String, Digest)> = self
            .store
            .read()?
            .tags()?
            .into_iter()
            .filter_map(|(key, id)| key.strip_prefix(&prefix).filter(|t| !t.contains('/')).map(|t| (t.to_string(), id)))
            .collect();
        if tags.is_empty() {
            return Err(EngineError::NotFound(format!("An image does not exist locally with the tag: {}", repository.name)));
        }
        if let Some(tag) = &reference.tag {
            tags.retain(|(t, _)| t == tag);
            if tags.is_empty() {
                return Err(EngineError::NotFound(format!("tag does not exist: {}:{tag}", repository.name)));
            }
        }
        let registry = self.registry()?;
        registry.ping(&repository)?;
        for (tag, id) in tags {
            let image = ImageRef { tag: Some(tag), ..repository.clone() };
            self.push_tag(registry, &image, &id, auth, progress)?;
        }
        Ok(())
    }

    /// Pushes image `id` as `image` (which has a tag).
    fn push_tag(
        &self,
        registry: &RegistryClient,
        image: &ImageRef,
        id: &Digest,
        auth: Option<&AuthConfig>,
        progress: &mut dyn FnMut(PushProgress),
    ) -> EngineResult<()> {
        let tag = image.tag.clone().unwrap_or_default();
        let record = self.record_of(id)?.ok_or_else(|| EngineError::NotFound(format!("No such image: {id}")))?;
        let _config_pin = self.content.pin(id);
        let config = self.content.read(id)?;
        let (_, diff_ids) = parse_config(&config, &format!("image {}", image))?;
        let stored = self.stored_manifest(&record.manifest, id, diff_ids.len());
        let blobs: Vec<LayerBlob> = match &stored {
            Some((_, _, layers)) => layers.clone(),
            None => {
                let tx = self.store.read()?;
                record
                    .layers
                    .iter()
                    .map(|chain| {
                        let layer = tx.layer(chain)?.ok_or_else(|| {
                            EngineError::Internal(format!("image {id} names layer {chain}, which the store does not have"))
                        })?;
                        self.layer_blob(&layer)
                    })
                    .collect::<EngineResult<_>>()?
            }
        };
        if blobs.len() != diff_ids.len() {
            return Err(ImageError::Invalid(format!(
                "image {id}: the config lists {} layers but the image has {}",
                diff_ids.len(),
                blobs.len()
            ))
            .into());
        }
        // A layer that occurs twice is sent once (its short ID is one line for the docker CLI too).
        let mut unique: Vec<usize> = Vec::new();
        for i in 0..blobs.len() {
            if !unique.iter().any(|&u| diff_ids[u] == diff_ids[i]) {
                unique.push(i);
            }
        }
        // Docker lists the top layer first.
        unique.reverse();
        let uploads = registry.config().max_concurrent_uploads.max(1);
        for (k, &i) in unique.iter().enumerate() {
            progress(PushProgress::Layer { diff_id: diff_ids[i].clone(), step: PushStep::Preparing });
            if k >= uploads {
                progress(PushProgress::Layer { diff_id: diff_ids[i].clone(), step: PushStep::Waiting });
            }
        }

        let failed = AtomicBool::new(false);
        let next = AtomicUsize::new(0);
        let (events, received) = mpsc::channel::<Upload>();
        let mut sent: Vec<Option<SentBlob>> = vec![None; blobs.len()];
        let result = std::thread::scope(|scope| -> EngineResult<()> {
            for _ in 0..uploads.min(unique.len()) {
                let events = events.clone();
                let (next, failed, unique, blobs, diff_ids) = (&next, &failed, &unique, &blobs, &diff_ids);
                scope.spawn(move || loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= unique.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = unique[k];
                    let mut report = |step| {
                        let _ = events.send(Upload::Step(i, step));
                    };
                    let done = self.push_layer(registry, image, &diff_ids[i], &blobs[i], auth, &mut report);
                    if done.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    let _ = events.send(Upload::Done(i, done));
                });
            }
            drop(events);
            let mut first_error = None;
            for event in received.iter() {
                match event {
                    Upload::Step(i, step) => progress(PushProgress::Layer { diff_id: diff_ids[i].clone(), step }),
                    Upload::Done(i, Ok(blob)) => sent[i] = Some(blob),
                    Upload::Done(_, Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        result?;
        let layers: Vec<SentBlob> = (0..blobs.len())
            .map(|i| {
                let first = unique.iter().copied().find(|&u| diff_ids[u] == diff_ids[i]).unwrap_or(i);
                sent[first].clone().ok_or_else(|| EngineError::Internal(format!("layer {} was not pushed", diff_ids[i])))
            })
            .collect::<EngineResult<_>>()?;

        if !registry.blob_exists(image, id, auth)? {
            match registry.start_upload(image, None, auth)? {
                UploadStart::Session(location) => {
                    registry.upload_blob(image, &location, id, config.len() as u64, self.content.open_blob(id)?, auth, &mut |_| {})?
                }
                UploadStart::Mounted => {}
            }
        }
        let (manifest, media_type) = match stored {
            Some((bytes, media_type, _)) => (bytes, media_type),
            None => build_manifest(id, config.len() as u64, &layers)?,
        };
        let digest = registry.put_manifest(image, &tag, &media_type, &manifest, auth)?;
        let mut pushed: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
        pushed.push(id.clone());
        self.remember_repository(image, &pushed)?;
        self.add_repo_digest(id, &image.with_digest(&digest))?;
        progress(PushProgress::Pushed { tag, digest, size: manifest.len() as u64 });
        Ok(())
    }

    /// The manifest image `id` came with, if it can be pushed as it is: an
    /// image manifest of this config whose blobs are all here. Returns its
    /// bytes, media type and layer blobs.
    fn stored_manifest(&self, manifest: &Option<Digest>, id: &Digest, layers: usize) -> Option<(Vec<u8>, String, Vec<LayerBlob>)> {
        let digest = manifest.as_ref()?;
        let bytes = self.content.read(digest).ok()?;
        let Ok(Manifest::Image(m)) = parse_manifest(&bytes, None, &format!("manifest {digest}")) else { return None };
        if descriptor_digest(m.config(), "").ok()? != *id || m.layers().len() != layers {
            return None;
        }
        let mut blobs = Vec::new();
        for l in m.layers() {
            let digest = descriptor_digest(l, "").ok()?;
            let media_type = l.media_type().to_string();
            // An uncompressed layer would go out uncompressed: build a manifest with a gzip of it instead.
            if !self.content.exists(&digest) || media_type == OCI_LAYER_TAR {
                return None;
            }
            blobs.push(LayerBlob::Stored { digest, size: l.size(), media_type });
        }
        let media_type = match m.media_type() {
            Some(t) => t.to_string(),
            None if m.config().media_type().to_string() == DOCKER_CONFIG => DOCKER_MANIFEST.to_string(),
            None => OCI_MANIFEST.to_string(),
        };
        Some((bytes, media_type, blobs))
    }

    /// The blob layer `layer` is pushed from.
    fn layer_blob(&self, layer: &LayerRecord) -> EngineResult<LayerBlob> {
        let (blob, media_type) = layer.blob.clone().ok_or_else(|| {
            ImageError::Invalid(format!(
                "layer {} has no stored blob, so it cannot be pushed; remove the image and load or pull it again",
                layer.diff_id
            ))
        })?;
        if !self.content.exists(&blob) {
            return Err(ImageError::BlobNotFound(blob).into());
        }
        if media_type == OCI_LAYER_TAR {
            return Ok(LayerBlob::Uncompressed { tar: blob });
        }
        let size = self.content.size(&blob)?;
        Ok(LayerBlob::Stored { digest: blob, size, media_type })
    }

    /// One layer: its blob made ready, then skipped, mounted or uploaded.
    fn push_layer(
        &self,
        registry: &RegistryClient,
        image: &ImageRef,
        diff_id: &Digest,
        blob: &LayerBlob,
        auth: Option<&AuthConfig>,
        report: &mut dyn FnMut(PushStep),
    ) -> EngineResult<SentBlob> {
        let ready = self.ready_blob(diff_id, blob)?;
        let sent = SentBlob { digest: ready.digest.clone(), size: ready.size, media_type: ready.media_type.clone() };
        if registry.blob_exists(image, &ready.digest, auth)? {
            report(PushStep::AlreadyExists);
            return Ok(sent);
        }
        let here = repository_key(image);
        let from = self.repositories_of(&ready.digest)?.into_iter().find_map(|r| {
            let path = r.strip_prefix(&format!("{}/", image.registry()))?.to_string();
            (r != here).then_some(path)
        });
        let location = match registry.start_upload(image, from.as_deref().map(|f| (&ready.digest, f)), auth)? {
            UploadStart::Mounted => {
                report(PushStep::MountedFrom(from.unwrap_or_default()));
                return Ok(sent);
            }
            UploadStart::Session(location) => location,
        };
        let file = self.content.open_blob(&ready.digest)?;
        let total = ready.size;
        let mut reported = 0u64;
        registry.upload_blob(image, &location, &ready.digest, total, file, auth, &mut |current| {
            if current - reported >= REPORT_EVERY || current == total {
                reported = current;
                report(PushStep::Pushing { current, total });
            }
        })?;
        report(PushStep::Pushed);
        Ok(sent)
    }

    /// The blob to send for a layer: as stored, or its gzip form (made now
    /// unless a push made it before).
    fn ready_blob(&self, diff_id: &Digest, blob: &LayerBlob) -> EngineResult<ReadyBlob> {
        let tar = match blob {
            LayerBlob::Stored { digest, size, media_type } => {
                let pin = self.content.pin(digest);
                if !self.content.exists(digest) {
                    return Err(ImageError::BlobNotFound(digest.clone()).into());
                }
                return Ok(ReadyBlob { digest: digest.clone(), size: *size, media_type: media_type.clone(), _pin: pin });
            }
            LayerBlob::Uncompressed { tar } => tar,
        };
        if let Some(c) = compressed::remembered(&self.store.read()?, diff_id)? {
            let pin = self.content.pin(&c.digest);
            if self.content.exists(&c.digest) {
                return Ok(ReadyBlob { digest: c.digest, size: c.size, media_type: c.media_type, _pin: pin });
            }
        }
        // The tar is checked against its digest as it is read: a damaged blob is not sent.
        let mut input = self.content.open_verified(tar)?;
        let what = format!("the gzip of layer {diff_id}");
        let mut writer = self.content.writer(&what, None, None)?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        gzip_parallel(&mut input, &mut writer, threads, PUSH_LEVEL).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                EngineError::Image(ImageError::Invalid(format!("compressing layer {diff_id}: {e}")))
            } else {
                EngineError::io(format!("compressing layer {diff_id} into the content store"), e)
            }
        })?;
        let (pin, size) = writer.commit()?;
        let c = CompressedLayer { digest: pin.digest().clone(), size, media_type: OCI_LAYER_GZIP.to_string() };
        {
            // Under the gc lock, so the gc sees the blob pinned or remembered.
            let _gc = self.gc_lock.lock().unwrap_or_else(|e| e.into_inner());
            let tx = self.store.write()?;
            compressed::remember(&tx, diff_id, &c)?;
            tx.commit()?;
        }
        Ok(ReadyBlob { digest: c.digest, size, media_type: c.media_type, _pin: pin })
    }

    /// The gzip a push made of layer `diff_id`, if one was made.
    pub(super) fn compressed_form(&self, diff_id: &Digest) -> EngineResult<Option<Digest>> {
        Ok(compressed::remembered(&self.store.read()?, diff_id)?.map(|c| c.digest))
    }

    /// The repositories (`registry/path`) blob `digest` is known to be in, most recent first.
    fn repositories_of(&self, digest: &Digest) -> EngineResult<Vec<String>> {
        let json = self.store.read()?.definition(DefinitionTable::BlobRepositories, &digest.to_string())?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default())
    }

    /// Records that `image`'s repository has `blobs` (pushed there or pulled
    /// from there), so a push to another repository of its registry can mount them.
    pub(super) fn remember_repository(&self, image: &ImageRef, blobs: &[Digest]) -> EngineResult<()> {
        let here = repository_key(image);
        let tx = self.store.write()?;
        for digest in blobs {
            let key = digest.to_string();
            let mut known: Vec<String> =
                tx.definition(DefinitionTable::BlobRepositories, &key)?.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default();
            if known.first() == Some(&here) {
                continue;
            }
            known.retain(|r| r != &here);
            known.insert(0, here.clone());
            known.truncate(REPOSITORIES_PER_BLOB);
            let json = serde_json::to_string(&known).map_err(|e| EngineError::Internal(format!("encoding repositories: {e}")))?;
            tx.put_definition(DefinitionTable::BlobRepositories, &key, &json)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds `name@digest` to image `id`'s `RepoDigests`, replacing an older one of the same repository.
    fn add_repo_digest(&self, id: &Digest, repo_digest: &str) -> EngineResult<()> {
        let tx = self.store.write()?;
        let Some(mut record) = tx.image(id)? else { return Ok(()) };
        let name = repo_digest.split('@').next().unwrap_or(repo_digest);
        let before = record.repo_digests.clone();
        record.repo_digests.retain(|d| d.split('@').next() != Some(name));
        record.repo_digests.push(repo_digest.to_string());
        if record.repo_digests != before {
            tx.put_image(&record)?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// The manifest for config `config` and `layers`: Docker's schema 2, or
/// OCI's when a layer is zstd. Returns its bytes and media type.
fn build_manifest(config: &Digest, config_size: u64, layers: &[SentBlob]) -> EngineResult<(Vec<u8>, String)> {
    let oci = layers.iter().any(|l| l.media_type == OCI_LAYER_ZSTD);
    let layer_type = |l: &SentBlob| -> EngineResult<&'static str> {
        Ok(match (oci, l.media_type.as_str()) {
            (false, DOCKER_LAYER_GZIP | OCI_LAYER_GZIP) => DOCKER_LAYER_GZIP,
            (true, DOCKER_LAYER_GZIP | OCI_LAYER_GZIP) => OCI_LAYER_GZIP,
            (true, OCI_LAYER_ZSTD) => OCI_LAYER_ZSTD,
            (_, other) => {
                return Err(ImageError::Unsupported(format!("layer blob {} is {other}, which berth does not push", l.digest)).into())
            }
        })
    };
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| Ok(json!({"mediaType": layer_type(l)?, "size": l.size, "digest": l.digest.to_string()})))
        .collect::<EngineResult<_>>()?;
    let (media_type, config_type) = if oci { (OCI_MANIFEST, OCI_CONFIG) } else { (DOCKER_MANIFEST, DOCKER_CONFIG) };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "size": config_size, "digest": config.to_string()},
        "layers": layers,
    });
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| EngineError::Internal(format!("encoding a manifest: {e}")))?;
    Ok((bytes, media_type.to_string()))
}
