//! `docker pull`: an image from a registry into the content store and the
//! storage driver, registered only when all of it is in place.
//!
//! The manifest (a platform's, picked from a list or index) and the config
//! come first: the config's diff IDs say which layers are here already.
//! The missing layer blobs are then fetched in parallel, each streamed
//! into the content store's verifying writer, while this thread unpacks
//! layer i as soon as blobs 0..=i are in. Progress comes back here over a
//! channel, so the caller's `progress` is only ever called on its thread.
//!
//! Blobs are downloaded into the content store's ingest area, where what
//! came before a dropped connection, a cancel or a daemon kill stays: the
//! download (this one's next attempt, or the next pull's) continues with a
//! `Range` request, and the digest is checked over the whole blob. A layer
//! is unpacked while its blob downloads (`live.rs`), its end waiting for
//! the blob's digest check.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use berth_model::{AuthConfig, Digest, ImageRef, LayerRecord, Platform};

use crate::error::{EngineError, EngineResult};
use crate::registry::{
    check_layers, descriptor_digest, pick_platform, BlobStart, Manifest, RangeSink, RegistryClient, RegistryError,
};
use super::archive::LayerSource;
use super::content::{BlobPin, Resumed};
use super::live::LiveBlob;
use super::ops::{parse_config, ChainStep};
use super::{ImageError, ImageService};

/// Seconds before retry n (1-based) are n times this: short, since a retry
/// costs only the bytes not yet here.
const RETRY_DELAY_STEP: u64 = 1;
/// Bytes between two `Downloading` reports of one blob.
const REPORT_EVERY: u64 = 512 << 10;

/// What a pull reports, in the order Docker's progress stream has it.
#[derive(Clone, Debug)]
pub enum PullProgress {
    /// The manifest is resolved: `Pulling from <repository>`, about the tag
    /// or digest asked for.
    PullingFrom { repository: String, reference: String },
    /// A step of one layer, named by its blob's digest.
    Layer { blob: Digest, step: LayerStep },
}

/// A layer's steps (Docker's status words in the API's spelling).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerStep {
    /// The layer is here already; nothing is fetched.
    AlreadyExists,
    /// It will be fetched (`Pulling fs layer`).
    Queued,
    Downloading { current: u64, total: u64 },
    /// The connection failed; the download continues in this many seconds
    /// (counting down, a step a second, as Docker's `Retrying in N seconds`).
    Retrying { seconds: u64 },
    /// All bytes are in; the digest is being checked.
    Verifying,
    DownloadComplete,
    Extracting { total: u64 },
    PullComplete,
}

/// What a pull ends with.
#[derive(Clone, Debug)]
pub struct PullOutcome {
    pub id: Digest,
    /// The digest of the manifest (or list) the reference resolved to.
    pub manifest_digest: Digest,
    /// `name:tag` or `name@digest`, as Docker's `Status:` line names it.
    pub reference: String,
    /// Whether the reference now names an image it did not name before
    /// (`Downloaded newer image`), or was up to date.
    pub updated: bool,
}

/// Events the download threads send to the pulling thread.
enum Fetch {
    Step(usize, LayerStep),
    Done(usize, EngineResult<BlobPin>),
}

/// A blob download's destination: the content store's writer, which also
/// reports progress and stops when the pull was abandoned.
struct ReportingSink<'a> {
    writer: super::content::BlobWriter,
    abandoned: &'a AtomicBool,
    /// The unpacker reading along, woken at each write.
    live: Option<&'a LiveBlob>,
    total: u64,
    reported: u64,
    report: &'a mut dyn FnMut(LayerStep),
}

impl Write for ReportingSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Err(io::Error::other("the pull was abandoned"));
        }
        let n = self.writer.write(buf)?;
        if let Some(live) = self.live {
            live.wrote();
        }
        let current = self.writer.written();
        if current - self.reported >= REPORT_EVERY || current == self.total {
            self.reported = current;
            (self.report)(LayerStep::Downloading { current, total: self.total });
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl RangeSink for ReportingSink<'_> {
    fn start_over(&mut self) -> io::Result<()> {
        self.reported = 0;
        self.writer.start_over()
    }
}

impl ImageService {
    /// The registry client, made on first use (it starts a runtime).
    pub(super) fn registry(&self) -> EngineResult<&RegistryClient> {
        if let Some(c) = self.registry.get() {
            return Ok(c);
        }
        let client = RegistryClient::new(self.registry_config.clone())?;
        // Two first pulls at once may both build one; the loser's is dropped.
        let _ = self.registry.set(client);
        self.registry.get().ok_or_else(|| EngineError::Internal("the registry client was not kept".into()))
    }

    /// `docker pull`: `reference` (a missing tag is `latest`) for `platform`
    /// (the host's when `None`), as `auth` (the user's credentials for the
    /// image's registry; anonymous when `None`). Nothing is registered unless
    /// all of it is in place, and a failure leaves no blob or layer it brought.
    pub fn pull(
        &self,
        reference: &ImageRef,
        platform: Option<&Platform>,
        auth: Option<&AuthConfig>,
        progress: &mut dyn FnMut(PullProgress),
    ) -> EngineResult<PullOutcome> {
        self.pull_until(reference, platform, auth, &AtomicBool::new(false), progress)
    }

    /// `pull`, given up soon after `cancelled` is set (the client went away):
    /// downloads stop where they are, their partial blobs kept for the next pull.
    pub fn pull_until(
        &self,
        reference: &ImageRef,
        platform: Option<&Platform>,
        auth: Option<&AuthConfig>,
        cancelled: &AtomicBool,
        progress: &mut dyn FnMut(PullProgress),
    ) -> EngineResult<PullOutcome> {
        let image = reference.clone().with_default_tag();
        let registry = self.registry()?;
        let mut pins: Vec<BlobPin> = Vec::new();
        let mut brought: Vec<Digest> = Vec::new();
        let result = self.pull_into(registry, &image, auth, platform, cancelled, progress, &mut pins, &mut brought);
        // Whatever no image kept (all of it after a failure) goes; pins first.
        drop(pins);
        self.gc_blobs(Some(&brought))?;
        result
    }

    fn pull_into(
        &self,
        registry: &RegistryClient,
        image: &ImageRef,
        auth: Option<&AuthConfig>,
        platform: Option<&Platform>,
        abandoned: &AtomicBool,
        progress: &mut dyn FnMut(PullProgress),
        pins: &mut Vec<BlobPin>,
        brought: &mut Vec<Digest>,
    ) -> EngineResult<PullOutcome> {
        let asked = image.tag_or_digest();
        let top = registry.fetch_manifest(image, &asked, auth)?;
        let fetched = match &top.manifest {
            Manifest::Image(_) => top.clone(),
            Manifest::Index(index) => {
                let wanted = platform.cloned().unwrap_or_else(Platform::host);
                let entry = pick_platform(index, &wanted)?;
                let digest = descriptor_digest(entry, &format!("manifest list of {image}"))?;
                registry.fetch_manifest(image, &digest.to_string(), auth)?
            }
        };
        let whence = format!("{}@{}", image.name, fetched.digest);
        let Manifest::Image(manifest) = &fetched.manifest else {
            return Err(RegistryError::Unsupported(format!("{whence}: a manifest list names another list; berth does not follow nested lists"))
                .into());
        };
        check_layers(manifest, &whence)?;
        progress(PullProgress::PullingFrom { repository: image.repository(), reference: asked });

        pins.push(self.content.put(&format!("manifest {whence}"), &fetched.bytes, Some(&fetched.digest))?);
        brought.push(fetched.digest.clone());
        let config_digest = descriptor_digest(manifest.config(), &whence)?;
        brought.push(config_digest.clone());
        pins.push(self.fetch_unless_present(registry, image, auth, &config_digest, manifest.config().size(), abandoned, &mut |_| {})?);
        let config = self.content.read(&config_digest)?;
        let (parsed, diff_ids) = parse_config(&config, &whence)?;
        if let (Some(wanted), Manifest::Image(_)) = (platform, &top.manifest) {
            let (os, arch, variant) = (parsed.os().to_string(), parsed.architecture().to_string(), parsed.variant().clone());
            if !wanted.matches(&os, &arch, variant.as_deref()) {
                let actual = Platform { os, architecture: arch, variant };
                return Err(EngineError::NotFound(format!(
                    "image with reference {image} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
                )));
            }
        }
        let blobs: Vec<(Digest, u64)> = manifest
            .layers()
            .iter()
            .map(|l| descriptor_digest(l, &whence).map(|d| (d, l.size())))
            .collect::<Result<_, _>>()?;
        if diff_ids.len() != blobs.len() {
            return Err(ImageError::Invalid(format!(
                "{whence}: the config lists {} layers (rootfs.diff_ids) but the manifest has {}",
                diff_ids.len(),
                blobs.len()
            ))
            .into());
        }
        brought.extend(blobs.iter().map(|(d, _)| d.clone()));
        let mut chain: Vec<Digest> = Vec::new();
        for d in &diff_ids {
            chain.push(LayerRecord::chain_id_of(chain.last(), d));
        }
        let _claims = self.claims.claim_all(&chain);
        let present: Vec<bool> = {
            let tx = self.store.read()?;
            chain.iter().map(|c| tx.layer(c).map(|l| l.is_some())).collect::<Result<_, _>>()?
        };
        // Layers here already need nothing; blobs here already need no fetch.
        let mut ready: Vec<bool> = Vec::new();
        let mut to_fetch: Vec<usize> = Vec::new();
        for (i, (blob, _)) in blobs.iter().enumerate() {
            if present[i] {
                progress(PullProgress::Layer { blob: blob.clone(), step: LayerStep::AlreadyExists });
                ready.push(true);
            } else if self.content.exists(blob) {
                pins.push(self.content.pin(blob));
                progress(PullProgress::Layer { blob: blob.clone(), step: LayerStep::DownloadComplete });
                ready.push(true);
            } else {
                progress(PullProgress::Layer { blob: blob.clone(), step: LayerStep::Queued });
                to_fetch.push(i);
                ready.push(false);
            }
        }
        // Each blob to fetch is unpacked as it downloads.
        let lives: Vec<Option<Arc<LiveBlob>>> = ready.iter().map(|r| (!r).then(Arc::default)).collect();
        let sources: Vec<LayerSource> = blobs
            .iter()
            .zip(&lives)
            .map(|((d, _), live)| LayerSource { blob: d.clone(), path: format!("{}@{d}", image.name), live: live.clone() })
            .collect();

        let next = AtomicUsize::new(0);
        let (events, received) = mpsc::channel::<Fetch>();
        let layers = std::thread::scope(|scope| {
            for _ in 0..registry.config().max_concurrent_downloads.max(1).min(to_fetch.len()) {
                let events = events.clone();
                let (next, to_fetch, blobs, lives) = (&next, &to_fetch, &blobs, &lives);
                scope.spawn(move || loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= to_fetch.len() || abandoned.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = to_fetch[k];
                    let (blob, size) = &blobs[i];
                    let mut report = |step| {
                        let _ = events.send(Fetch::Step(i, step));
                    };
                    let live = lives[i].as_deref();
                    let fetched = self.fetch_blob(registry, image, auth, blob, *size, abandoned, live, &mut report);
                    if let Some(live) = live {
                        live.finish(fetched.as_ref().map(drop).map_err(|e| e.to_string()));
                    }
                    let failed = fetched.is_err();
                    let _ = events.send(Fetch::Done(i, fetched));
                    // After the send: the others' `Cancelled` must not arrive before this error.
                    if failed {
                        abandoned.store(true, Ordering::Relaxed);
                    }
                });
            }
            drop(events);
            let handle = |event: Fetch, progress: &mut dyn FnMut(PullProgress), pins: &mut Vec<BlobPin>, ready: &mut [bool]| {
                match event {
                    Fetch::Step(i, step) => progress(PullProgress::Layer { blob: blobs[i].0.clone(), step }),
                    Fetch::Done(i, Ok(pin)) => {
                        pins.push(pin);
                        ready[i] = true;
                    }
                    Fetch::Done(_, Err(e)) => return Err(e),
                }
                Ok(())
            };
            let unpacked = self.unpack_chain(&chain, &diff_ids, &sources, &mut |step| {
                let i = match step {
                    ChainStep::Unpacking(i) | ChainStep::Done(i) => i,
                };
                // Pass on what the downloads said meanwhile; wait if blob i is not in yet.
                while let Ok(event) = received.try_recv() {
                    handle(event, progress, pins, &mut ready)?;
                }
                // Blob i can be unpacked once it is in, or as it comes once its download has begun.
                let streaming = |i: usize| lives[i].as_ref().is_some_and(|l| l.attached());
                while !ready[i] && !streaming(i) {
                    match received.recv_timeout(Duration::from_millis(20)) {
                        Ok(event) => handle(event, progress, pins, &mut ready)?,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            return Err(EngineError::Internal("a layer download ended without a result".into()))
                        }
                    }
                }
                let blob = blobs[i].0.clone();
                match step {
                    ChainStep::Unpacking(_) => {
                        progress(PullProgress::Layer { blob, step: LayerStep::Extracting { total: blobs[i].1 } })
                    }
                    ChainStep::Done(_) if !present[i] => progress(PullProgress::Layer { blob, step: LayerStep::PullComplete }),
                    ChainStep::Done(_) => {}
                }
                Ok(())
            });
            if unpacked.is_err() {
                abandoned.store(true, Ordering::Relaxed);
            }
            // The downloads still running stop at their next chunk; their pins are kept until the gc.
            // What they said while a layer unpacked is passed on too (retries before a failure).
            let mut failed = None;
            for event in received.iter() {
                match event {
                    Fetch::Step(i, step) => progress(PullProgress::Layer { blob: blobs[i].0.clone(), step }),
                    Fetch::Done(_, Ok(pin)) => pins.push(pin),
                    Fetch::Done(_, Err(e)) if failed.is_none() => failed = Some(e),
                    Fetch::Done(_, Err(_)) => {}
                }
            }
            // An unpack that read a blob as it came ends only after its download succeeded;
            // this is the check that every download did.
            match (unpacked, failed) {
                (Ok(layers), Some(e)) => {
                    self.discard_new_layers(&layers);
                    Err(e)
                }
                // An unpack that failed because its download did: the download's error says why.
                (Err(_), Some(e)) if !matches!(e, EngineError::Registry(RegistryError::Cancelled { .. })) => Err(e),
                (unpacked, _) => unpacked,
            }
        })?;

        let tags: Vec<String> = if image.digest.is_none() { image.tagged().into_iter().collect() } else { vec![] };
        let repo_digest = image.with_digest(&top.digest);
        let id = config_digest;
        let updated = {
            let tx = self.store.read()?;
            match tags.first() {
                Some(t) => tx.tag(t)?.as_ref() != Some(&id),
                None => !tx.image(&id)?.is_some_and(|r| r.repo_digests.contains(&repo_digest)),
            }
        };
        let registered = self.register(&id, &layers, &tags, Some(&fetched.digest), std::slice::from_ref(&repo_digest));
        if registered.is_err() {
            self.discard_new_layers(&layers);
        }
        registered?;
        // A push of these blobs to another repository of this registry can mount them from here.
        let mut blobs_here: Vec<Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
        blobs_here.push(id.clone());
        self.remember_repository(image, &blobs_here)?;
        Ok(PullOutcome { id, manifest_digest: top.digest, reference: image.to_string(), updated })
    }

    /// Pins blob `digest`, fetching it first if it is not here.
    fn fetch_unless_present(
        &self,
        registry: &RegistryClient,
        image: &ImageRef,
        auth: Option<&AuthConfig>,
        digest: &Digest,
        size: u64,
        abandoned: &AtomicBool,
        report: &mut dyn FnMut(LayerStep),
    ) -> EngineResult<BlobPin> {
        let pin = self.content.pin(digest);
        if self.content.exists(digest) {
            return Ok(pin);
        }
        drop(pin);
        self.fetch_blob(registry, image, auth, digest, size, abandoned, None, report)
    }

    /// Streams blob `digest` (`size` bytes) into the content store, which
    /// refuses it unless its bytes hash to `digest`. Continues what an
    /// earlier download left in the ingest area, and retries a failed
    /// connection from where it broke, up to the daemon's `max-download-attempts` tries.
    fn fetch_blob(
        &self,
        registry: &RegistryClient,
        image: &ImageRef,
        auth: Option<&AuthConfig>,
        digest: &Digest,
        size: u64,
        abandoned: &AtomicBool,
        live: Option<&LiveBlob>,
        report: &mut dyn FnMut(LayerStep),
    ) -> EngineResult<BlobPin> {
        let what = format!("blob {digest} of {}", image.name);
        let writer = match self.content.resume_writer(&what, digest, size, &|| abandoned.load(Ordering::Relaxed))? {
            Resumed::Writing(writer) => writer,
            // Another pull brought it while this one waited.
            Resumed::Present(pin) => {
                report(LayerStep::DownloadComplete);
                return Ok(pin);
            }
            Resumed::Stopped => return Err(RegistryError::Cancelled { what }.into()),
        };
        if let Some(live) = live {
            live.attach(writer.reopen().map_err(|e| ImageError::io(format!("reopening the download of {what}"), e))?);
        }
        let mut sink = ReportingSink { writer, abandoned, live, total: size, reported: 0, report };
        let mut attempt = 1;
        while sink.writer.written() < size {
            let from = sink.writer.written();
            if from > 0 {
                tracing::info!(%digest, from, size, attempt, "continuing a blob download");
                (sink.report)(LayerStep::Downloading { current: from, total: size });
            }
            match registry.fetch_blob_range(image, digest, from, auth, &mut sink, abandoned) {
                Ok(BlobStart::FromZero) if from > 0 => {
                    tracing::info!(%digest, from, "the registry ignored Range: the blob was fetched from byte zero");
                    break;
                }
                Ok(_) => break,
                Err(e) if e.is_transient() && attempt < registry.config().max_download_attempts => {
                    tracing::warn!(%digest, attempt, have = sink.writer.written(), error = %e, "blob download failed; retrying");
                    for seconds in (1..=attempt as u64 * RETRY_DELAY_STEP).rev() {
                        if abandoned.load(Ordering::Relaxed) {
                            return Err(RegistryError::Cancelled { what }.into());
                        }
                        (sink.report)(LayerStep::Retrying { seconds });
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        (sink.report)(LayerStep::Verifying);
        let (pin, _) = sink.writer.commit()?;
        (sink.report)(LayerStep::DownloadComplete);
        Ok(pin)
    }
}
