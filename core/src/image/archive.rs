//! Reading image archives (`docker save` tars and OCI image layouts) from a
//! stream that cannot seek.
//!
//! The files an archive needs first (manifest.json, index.json) may come last,
//! so every entry is spooled as it streams by: small metadata files into
//! memory, everything else into the content store, where a blob whose path
//! names its digest (`blobs/sha256/<hex>`) must hash to it. Then the
//! manifests are resolved against what was spooled.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};

use berth_model::{Digest, ImageRef};
use serde::Deserialize;

use super::content::{BlobPin, ContentStore};
use super::ImageError;
use super::Progress;

/// Largest metadata file (manifest.json, a config, ...) kept in memory.
const MAX_METADATA: u64 = 16 << 20;

/// What one archive held, by normalised path.
pub(crate) struct Spooled {
    /// Small metadata files, in memory.
    files: HashMap<String, Vec<u8>>,
    /// Other regular files, in the content store (pinned while this lives).
    blobs: HashMap<String, BlobPin>,
    /// Symbolic and hard links: path -> normalised target path.
    links: HashMap<String, String>,
}

/// Normalises an archive path: no leading `./` or `/`, no `.` or empty
/// components; `..` pops (and may not climb out of the archive).
fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn is_metadata(path: &str) -> bool {
    matches!(path, "manifest.json" | "repositories" | "index.json" | "oci-layout")
        || path.ends_with(".json")
        || path.ends_with("/json")
        || path.ends_with("/VERSION")
}

/// Counts input bytes and reports them as `Progress::Reading`.
struct Counting<'a, 'p> {
    inner: &'a mut dyn Read,
    bytes: u64,
    reported: u64,
    total: Option<u64>,
    progress: &'p mut dyn FnMut(Progress),
}

impl Read for Counting<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes - self.reported >= 4 << 20 || (n == 0 && self.bytes != self.reported) {
            self.reported = self.bytes;
            (self.progress)(Progress::Reading { bytes: self.bytes, total: self.total });
        }
        Ok(n)
    }
}

/// Reads the (decompressed) archive tar `input` to its end, spooling every entry.
pub(crate) fn spool(
    input: &mut dyn Read,
    content: &ContentStore,
    progress: &mut dyn FnMut(Progress),
) -> Result<Spooled, ImageError> {
    let counting = Counting { inner: input, bytes: 0, reported: 0, total: None, progress };
    let mut archive = tar::Archive::new(counting);
    let mut spooled = Spooled { files: HashMap::new(), blobs: HashMap::new(), links: HashMap::new() };
    let mut last = String::from("the start");
    let entries = archive.entries().map_err(|e| ImageError::Truncated { context: "at its start".into(), source: e })?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ImageError::Truncated { context: format!("after entry {last:?}"), source: e })?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        last = raw.clone();
        let Some(path) = normalise(&raw) else {
            return Err(ImageError::Invalid(format!("archive entry {raw:?} climbs out of the archive with '..'")));
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .ok_or_else(|| ImageError::Invalid(format!("archive link {raw:?} has no target")))?;
            // Symlinks are relative to their directory; hard links to the archive root.
            let joined = if kind.is_symlink() && !target.starts_with('/') {
                match path.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{target}"),
                    None => target.clone(),
                }
            } else {
                target.clone()
            };
            let resolved = normalise(&joined).ok_or_else(|| {
                ImageError::Invalid(format!("archive link {raw:?} -> {target:?} points outside the archive"))
            })?;
            spooled.links.insert(path, resolved);
            continue;
        }
        if !kind.is_file() && kind != tar::EntryType::Continuous {
            continue; // directories and anything else carry nothing an image needs
        }
        let size =
            entry.header().size().map_err(|e| ImageError::Invalid(format!("archive entry {raw:?}: bad size: {e}")))?;
        if is_metadata(&path) && size <= MAX_METADATA && !path.starts_with("blobs/") {
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| ImageError::Truncated { context: format!("in entry {raw:?}"), source: e })?;
            if buf.len() as u64 != size {
                return Err(ImageError::Truncated {
                    context: format!("in entry {raw:?}"),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("expected {size} bytes, got {}", buf.len()),
                    ),
                });
            }
            spooled.files.insert(path, buf);
            continue;
        }
        // `blobs/<alg>/<hex>` names its content's digest: check it while writing.
        let expected =
            match path.strip_prefix("blobs/sha256/") {
                Some(hex) => Some(Digest::from_hex(hex).map_err(|_| {
                    ImageError::Invalid(format!("archive entry {raw:?} is not named by a sha256 digest"))
                })?),
                None if path.starts_with("blobs/") && path.matches('/').count() == 2 => {
                    return Err(ImageError::Unsupported(format!(
                        "archive entry {raw:?}: only sha256 digests are supported"
                    )));
                }
                None => None,
            };
        let pin = spool_entry(content, &mut entry, &raw, expected.as_ref(), size)?;
        spooled.blobs.insert(path, pin);
    }
    Ok(spooled)
}

/// Copies one archive entry into the content store. Read errors and short
/// entries are the input's fault (`Truncated`); write errors are the store's.
fn spool_entry(
    content: &ContentStore,
    entry: &mut dyn Read,
    raw: &str,
    expected: Option<&Digest>,
    size: u64,
) -> Result<BlobPin, ImageError> {
    let what = format!("archive entry {raw:?}");
    let mut w = content.writer(&what, expected, Some(size))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::Truncated { context: format!("in entry {raw:?}"), source: e }),
        };
        io::Write::write_all(&mut w, &buf[..n])
            .map_err(|e| ImageError::io(format!("writing {what} to the content store"), e))?;
    }
    if w.written() != size {
        return Err(ImageError::Truncated {
            context: format!("in entry {raw:?}"),
            source: io::Error::new(io::ErrorKind::UnexpectedEof, format!("expected {size} bytes, got {}", w.written())),
        });
    }
    Ok(w.commit()?.0)
}

/// Where an archive file's bytes are.
pub(crate) enum Located<'a> {
    Memory(&'a [u8]),
    Blob(&'a Digest),
}

impl Spooled {
    fn resolve<'a>(&'a self, path: &'a str) -> Result<String, ImageError> {
        let mut p =
            normalise(path).ok_or_else(|| ImageError::Invalid(format!("path {path:?} climbs out of the archive")))?;
        for _ in 0..32 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => return Ok(p),
            }
        }
        Err(ImageError::Invalid(format!("archive path {path:?}: too many levels of links")))
    }

    /// Digests of every blob spooled to the content store.
    pub(crate) fn blob_digests(&self) -> Vec<Digest> {
        self.blobs.values().map(|p| p.digest().clone()).collect()
    }

    /// Whether the archive has a file at `path`.
    pub(crate) fn has(&self, path: &str) -> bool {
        self.resolve(path).map(|p| self.files.contains_key(&p) || self.blobs.contains_key(&p)).unwrap_or(false)
    }

    /// Where the file at `path` is.
    pub(crate) fn locate(&self, path: &str) -> Result<Located<'_>, ImageError> {
        let p = self.resolve(path)?;
        if let Some(b) = self.files.get(&p) {
            return Ok(Located::Memory(b));
        }
        if let Some(pin) = self.blobs.get(&p) {
            return Ok(Located::Blob(pin.digest()));
        }
        Err(ImageError::Invalid(format!("the archive has no file {path:?}")))
    }

    /// The whole content of the (small) file at `path`.
    pub(crate) fn bytes(&self, content: &ContentStore, path: &str) -> Result<Vec<u8>, ImageError> {
        match self.locate(path)? {
            Located::Memory(b) => Ok(b.to_vec()),
            Located::Blob(d) => {
                if content.size(d)? > MAX_METADATA {
                    return Err(ImageError::Invalid(format!("archive file {path:?} is too large for a JSON document")));
                }
                content.read(d)
            }
        }
    }

    /// The content-store digest of the blob at `path` (a layer), storing it
    /// first if it was small enough to be kept in memory.
    pub(crate) fn blob(&self, content: &ContentStore, path: &str) -> Result<(Digest, Option<BlobPin>), ImageError> {
        match self.locate(path)? {
            Located::Blob(d) => Ok((d.clone(), None)),
            Located::Memory(b) => {
                let pin = content.put(&format!("archive file {path:?}"), b, None)?;
                Ok((pin.digest().clone(), Some(pin)))
            }
        }
    }
}

/// One layer of an image to load.
pub(crate) struct LayerSource {
    /// Blob in the content store (compressed or not).
    pub blob: Digest,
    /// Where it was in the archive, for errors.
    pub path: String,
    /// For a pull: the blob while it downloads, to unpack as it arrives.
    pub live: Option<std::sync::Arc<super::live::LiveBlob>>,
}

/// One image an archive holds.
pub(crate) struct ImageSource {
    /// Raw config JSON; the image ID is its digest.
    pub config: Vec<u8>,
    pub layers: Vec<LayerSource>,
    /// `name:tag` references, normalised.
    pub tags: Vec<String>,
    /// The manifest it came with (OCI layout), already in the content store.
    pub manifest: Option<Digest>,
    /// Pins of blobs this image needs that were stored while resolving.
    pub _pins: Vec<BlobPin>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    // A manifest has these instead.
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const MANIFEST_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
/// Layer media types berth unpacks (compression is detected from the bytes).
const LAYER_TYPES: [&str; 10] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// A `name:tag` from a reference an archive names; `latest` when it has no tag.
fn normalise_tag(r: &str, whence: &str) -> Result<String, ImageError> {
    let parsed = ImageRef::parse(r).map_err(|e| ImageError::Invalid(format!("{whence}: {e}")))?;
    parsed
        .with_default_tag()
        .tagged()
        .ok_or_else(|| ImageError::Invalid(format!("{whence}: reference {r:?} names a digest, not a tag")))
}

fn parse_desc_digest(d: &Descriptor, whence: &str) -> Result<Digest, ImageError> {
    d.digest.parse().map_err(|e| ImageError::Invalid(format!("{whence}: {e}")))
}

impl Spooled {
    /// The images the archive holds: docker-archive when it has a manifest.json
    /// (Docker 25+ saves carry both), else OCI image layout.
    pub(crate) fn images(&self, content: &ContentStore) -> Result<Vec<ImageSource>, ImageError> {
        if self.has("manifest.json") {
            self.docker_images(content)
        } else if self.has("index.json") {
            self.oci_images(content)
        } else if self.has("repositories") {
            Err(ImageError::Unsupported(
                "the archive has a 'repositories' file but no manifest.json: it is a pre-1.10 Docker archive, which berth does not load".into(),
            ))
        } else {
            Err(ImageError::Invalid(
                "not an image archive: it has neither manifest.json (docker save) nor index.json (OCI image layout)"
                    .into(),
            ))
        }
    }

    fn docker_images(&self, content: &ContentStore) -> Result<Vec<ImageSource>, ImageError> {
        let raw = self.bytes(content, "manifest.json")?;
        let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&raw)
            .map_err(|e| ImageError::Invalid(format!("manifest.json in the archive is invalid: {e}")))?;
        let mut out = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let whence = format!("manifest.json entry {i}");
            let config = self
                .bytes(content, &e.config)
                .map_err(|err| ImageError::Invalid(format!("{whence}: config {:?}: {err}", e.config)))?;
            // `<hex>.json` and `blobs/sha256/<hex>` name the config's digest.
            let base = e.config.rsplit('/').next().unwrap_or(&e.config);
            if let Ok(named) = Digest::from_hex(base.strip_suffix(".json").unwrap_or(base)) {
                let actual = Digest::of(&config);
                if actual != named {
                    return Err(ImageError::DigestMismatch {
                        what: format!("config {:?} in the archive", e.config),
                        expected: named,
                        actual,
                    });
                }
            }
            let mut pins = Vec::new();
            let mut layers = Vec::new();
            for l in &e.layers {
                let (blob, pin) = self
                    .blob(content, l)
                    .map_err(|err| ImageError::Invalid(format!("{whence}: layer {l:?}: {err}")))?;
                pins.extend(pin);
                layers.push(LayerSource { blob, path: l.clone(), live: None });
            }
            let tags = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| normalise_tag(t, &whence))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(ImageSource { config, layers, tags, manifest: None, _pins: pins });
        }
        Ok(out)
    }

    fn oci_blob(&self, content: &ContentStore, d: &Descriptor, whence: &str) -> Result<(Digest, Vec<u8>), ImageError> {
        let digest = parse_desc_digest(d, whence)?;
        let path = format!("blobs/sha256/{}", digest.hex());
        if !self.has(&path) {
            return Err(ImageError::Invalid(format!("{whence}: blob {digest} is not in the archive (no {path})")));
        }
        let bytes = self.bytes(content, &path)?;
        if d.size >= 0 && bytes.len() as u64 != d.size as u64 {
            return Err(ImageError::SizeMismatch {
                what: format!("{whence}: blob {digest}"),
                expected: d.size as u64,
                actual: bytes.len() as u64,
            });
        }
        Ok((digest, bytes))
    }

    fn oci_images(&self, content: &ContentStore) -> Result<Vec<ImageSource>, ImageError> {
        if let Ok(layout) = self.bytes(content, "oci-layout") {
            let v: serde_json::Value = serde_json::from_slice(&layout)
                .map_err(|e| ImageError::Invalid(format!("oci-layout in the archive is invalid: {e}")))?;
            if let Some(ver) = v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
                if !ver.starts_with("1.") {
                    return Err(ImageError::Unsupported(format!(
                        "OCI image layout version {ver} is not supported (1.x is)"
                    )));
                }
            }
        }
        let raw = self.bytes(content, "index.json")?;
        let index: IndexJson = serde_json::from_slice(&raw)
            .map_err(|e| ImageError::Invalid(format!("index.json in the archive is invalid: {e}")))?;
        let mut out = Vec::new();
        for (i, top) in index.manifests.unwrap_or_default().iter().enumerate() {
            let whence = format!("index.json manifest {i} ({})", top.digest);
            let tag = image_name(top).map(|n| normalise_tag(&n, &whence)).transpose()?;
            let (digest, manifest) = self.resolve_manifest(content, top, &whence, 0)?;
            let mut img = self.oci_image(content, &digest, &manifest, &whence)?;
            img.tags.extend(tag);
            // An index that names one image several times (one per tag) loads it once.
            if let Some(prev) = out.iter_mut().find(|p: &&mut ImageSource| p.config == img.config) {
                for t in img.tags {
                    if !prev.tags.contains(&t) {
                        prev.tags.push(t);
                    }
                }
            } else {
                out.push(img);
            }
        }
        if out.is_empty() {
            return Err(ImageError::Invalid("index.json in the archive lists no images".into()));
        }
        Ok(out)
    }

    /// Follows nested indexes to the manifest for the host's platform.
    fn resolve_manifest(
        &self,
        content: &ContentStore,
        d: &Descriptor,
        whence: &str,
        depth: u32,
    ) -> Result<(Digest, IndexJson), ImageError> {
        if depth > 4 {
            return Err(ImageError::Invalid(format!("{whence}: indexes nested too deeply")));
        }
        let (digest, bytes) = self.oci_blob(content, d, whence)?;
        let doc: IndexJson = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Invalid(format!("{whence}: manifest {digest} is invalid: {e}")))?;
        let mt = d.media_type.clone().or(doc.media_type.clone()).unwrap_or_default();
        let is_index = INDEX_TYPES.contains(&mt.as_str()) || (doc.manifests.is_some() && doc.config.is_none());
        if !is_index {
            if !mt.is_empty() && !MANIFEST_TYPES.contains(&mt.as_str()) {
                return Err(ImageError::Unsupported(format!("{whence}: unsupported manifest media type {mt:?}")));
            }
            return Ok((digest, doc));
        }
        let manifests = doc.manifests.unwrap_or_default();
        let host = berth_model::Platform::host();
        // Archives often carry only the host's platform of a multi-platform
        // index: prefer a manifest that is both for this host and present.
        let present = |m: &&Descriptor| self.has(&format!("blobs/sha256/{}", m.digest.trim_start_matches("sha256:")));
        let for_host = |m: &&Descriptor| m.platform.as_ref().is_some_and(|p| p.os == host.os && p.architecture == host.architecture);
        let pick = manifests
            .iter()
            .find(|m| for_host(m) && present(m))
            .or_else(|| if manifests.len() == 1 { manifests.first() } else { None })
            .or_else(|| manifests.iter().find(for_host))
            .or_else(|| manifests.iter().find(present));
        let Some(pick) = pick else {
            return Err(ImageError::Invalid(format!("{whence}: index {digest} has no manifest for {host}")));
        };
        self.resolve_manifest(content, pick, &format!("{whence} -> {}", pick.digest), depth + 1)
    }

    fn oci_image(
        &self,
        content: &ContentStore,
        digest: &Digest,
        m: &IndexJson,
        whence: &str,
    ) -> Result<ImageSource, ImageError> {
        let cfg = m
            .config
            .as_ref()
            .ok_or_else(|| ImageError::Invalid(format!("{whence}: manifest {digest} has no config")))?;
        let (_, config) = self.oci_blob(content, cfg, &format!("{whence}: config"))?;
        let mut layers = Vec::new();
        for (i, l) in m.layers.clone().unwrap_or_default().iter().enumerate() {
            let lw = format!("{whence}: layer {i}");
            let mt = l.media_type.clone().unwrap_or_default();
            if !LAYER_TYPES.contains(&mt.as_str()) {
                return Err(ImageError::Unsupported(format!("{lw}: unsupported layer media type {mt:?}")));
            }
            let d = parse_desc_digest(l, &lw)?;
            let path = format!("blobs/sha256/{}", d.hex());
            let (blob, _) = self.blob(content, &path).map_err(|e| ImageError::Invalid(format!("{lw}: {e}")))?;
            let size = content.size(&blob)?;
            if l.size >= 0 && size != l.size as u64 {
                return Err(ImageError::SizeMismatch {
                    what: format!("{lw}: blob {d}"),
                    expected: l.size as u64,
                    actual: size,
                });
            }
            layers.push(LayerSource { blob, path, live: None });
        }
        Ok(ImageSource { config, layers, tags: Vec::new(), manifest: Some(digest.clone()), _pins: Vec::new() })
    }
}

/// The image name an index entry carries, as Docker and containerd write it.
fn image_name(d: &Descriptor) -> Option<String> {
    let a = d.annotations.as_ref()?;
    if let Some(n) = a.get("io.containerd.image.name") {
        return Some(n.clone());
    }
    // `org.opencontainers.image.ref.name` is often only a tag ("latest"), which
    // names no repository; Docker loads such an image untagged.
    a.get("org.opencontainers.image.ref.name").filter(|n| n.contains(':') || n.contains('/')).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_may_not_climb_out() {
        assert_eq!(normalise("./a/./b//c").as_deref(), Some("a/b/c"));
        assert_eq!(normalise("a/../b").as_deref(), Some("b"));
        assert_eq!(normalise("../x"), None);
    }

    #[test]
    fn tags_are_normalised_with_latest() {
        assert_eq!(normalise_tag("docker.io/library/busybox", "t").unwrap(), "busybox:latest");
        assert_eq!(normalise_tag("busybox:1.36", "t").unwrap(), "busybox:1.36");
        assert!(normalise_tag("Bad", "t").is_err());
    }
}
