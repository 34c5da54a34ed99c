//! Writing images out: `docker save`'s archive (as Docker 20.10 writes it)
//! and the OCI image layout.
//!
//! Layer tars must hash to the config's diff IDs, so they are never rebuilt
//! from the unpacked files: each layer's original blob is streamed out of the
//! content store (decompressed for docker-archive), and every byte is checked
//! against its digest on the way.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

use berth_model::{Digest, ImageRef, LayerRecord};
use serde_json::{json, Value};

use crate::error::EngineError;
use super::compress::decompressed;
use super::content::ContentStore;
use super::ImageError;
use super::unpack::pipeline;

/// One image to write.
pub(crate) struct SaveImage {
    pub id: Digest,
    /// Raw config JSON (hashes to `id`).
    pub config: Vec<u8>,
    /// `name:tag` references to record in the archive.
    pub tags: Vec<String>,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// The manifest the image came with, if it is still in the content store.
    pub manifest: Option<Vec<u8>>,
}

fn out_err(e: io::Error) -> EngineError {
    EngineError::io("writing the archive", e)
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<(), EngineError> {
    let mut h = header(bytes.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, path, bytes).map_err(out_err)
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<(), EngineError> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut h, path, io::empty()).map_err(out_err)
}

/// Streams `reader` as the entry `path` of `size` bytes; a read error
/// (a digest or size mismatch from a verifying reader) fails the save.
fn add_stream<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    reader: &mut dyn Read,
) -> Result<(), EngineError> {
    let mut h = header(size, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, path, reader).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData {
            EngineError::Image(ImageError::Invalid(format!("saving {path}: {e}")))
        } else {
            out_err(e)
        }
    })
}

/// Writes the uncompressed tar of `layer` as entry `path`: decompressed on
/// one thread, hashed on another, written on this one, then checked against
/// the layer's diff ID and size (so a damaged blob fails the save).
fn add_layer_tar<W: Write>(
    tar: &mut tar::Builder<W>,
    content: &ContentStore,
    path: &str,
    layer: &LayerRecord,
) -> Result<(), EngineError> {
    let (blob, _) = layer.blob.as_ref().ok_or_else(|| {
        EngineError::Image(ImageError::Invalid(format!(
            "layer {} has no stored blob, so its tar cannot be reproduced; remove the image and load it again",
            layer.diff_id
        )))
    })?;
    let file = content.open_blob(blob)?;
    let (_, reader) = decompressed(&format!("layer blob {blob}"), file)?;
    let (written, hashed) = pipeline(Box::new(reader), true, |r| add_stream(tar, path, layer.tar_size, r));
    written?;
    let (diff_id, size) = hashed.map_err(|e| {
        EngineError::Image(ImageError::Invalid(format!("saving {path}: layer blob {blob} cannot be decompressed: {e}")))
    })?;
    if size != layer.tar_size {
        return Err(EngineError::Image(ImageError::SizeMismatch {
            what: format!("saving {path}: layer {}", layer.diff_id),
            expected: layer.tar_size,
            actual: size,
        }));
    }
    if diff_id != layer.diff_id {
        return Err(EngineError::Image(ImageError::DigestMismatch {
            what: format!("saving {path}: layer blob {blob} decompressed"),
            expected: layer.diff_id.clone(),
            actual: diff_id,
        }));
    }
    Ok(())
}

/// Docker's legacy v1 IDs for an image's layer directories: lower layers'
/// depend on their chain only (so images sharing them share directories),
/// the top one also on the image.
fn v1_ids(image: &SaveImage) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, l) in image.layers.iter().enumerate() {
        let parent = out.last().cloned().unwrap_or_default();
        let seed = if i + 1 == image.layers.len() {
            format!("{parent} {} {}", l.chain_id, image.id)
        } else {
            format!("{parent} {}", l.chain_id)
        };
        out.push(Digest::of(seed.as_bytes()).hex().to_string());
    }
    out
}

/// Writes `images` as `docker save` (20.10) does: `<v1 id>/{VERSION,json,layer.tar}`,
/// `<config hex>.json`, `manifest.json` and `repositories`.
pub(crate) fn write_docker_archive(
    content: &ContentStore,
    images: &[SaveImage],
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    let mut tar = tar::Builder::new(out);
    let mut written_dirs: HashSet<String> = HashSet::new();
    // diff ID -> path of the first copy, so a second copy becomes a symlink as Docker writes it.
    let mut tar_paths: HashMap<Digest, String> = HashMap::new();
    let mut manifest = Vec::new();
    let mut repositories: serde_json::Map<String, Value> = serde_json::Map::new();
    for image in images {
        let ids = v1_ids(image);
        let config: Value = serde_json::from_slice(&image.config)
            .map_err(|e| EngineError::Image(ImageError::Invalid(format!("config of image {}: {e}", image.id))))?;
        let mut layer_paths = Vec::new();
        for (i, (layer, v1)) in image.layers.iter().zip(&ids).enumerate() {
            let path = format!("{v1}/layer.tar");
            layer_paths.push(path.clone());
            if !written_dirs.insert(v1.clone()) {
                continue;
            }
            add_dir(&mut tar, &format!("{v1}/"))?;
            add_bytes(&mut tar, &format!("{v1}/VERSION"), b"1.0")?;
            let parent = if i > 0 { Some(ids[i - 1].clone()) } else { None };
            let mut json = if i + 1 == image.layers.len() {
                let mut top = config.clone();
                if let Some(m) = top.as_object_mut() {
                    m.remove("history");
                    m.remove("rootfs");
                }
                top
            } else {
                json!({ "created": "0001-01-01T00:00:00Z", "container_config": { "Cmd": null } })
            };
            if let Some(m) = json.as_object_mut() {
                m.insert("id".into(), Value::String(v1.clone()));
                if let Some(p) = parent {
                    m.insert("parent".into(), Value::String(p));
                }
            }
            add_bytes(&mut tar, &format!("{v1}/json"), json.to_string().as_bytes())?;
            match tar_paths.get(&layer.diff_id) {
                Some(first) => {
                    let mut h = header(0, 0o644, tar::EntryType::Symlink);
                    tar.append_link(&mut h, &path, format!("../{first}")).map_err(out_err)?;
                }
                None => {
                    add_layer_tar(&mut tar, content, &path, layer)?;
                    tar_paths.insert(layer.diff_id.clone(), path.clone());
                }
            }
        }
        let config_path = format!("{}.json", image.id.hex());
        if written_dirs.insert(config_path.clone()) {
            add_bytes(&mut tar, &config_path, &image.config)?;
        }
        manifest.push(json!({
            "Config": config_path,
            "RepoTags": if image.tags.is_empty() { Value::Null } else { json!(image.tags) },
            "Layers": layer_paths,
        }));
        if let Some(top) = ids.last() {
            for t in &image.tags {
                if let Some((name, tag)) = t.rsplit_once(':') {
                    let repo = repositories.entry(name.to_string()).or_insert_with(|| json!({}));
                    if let Some(m) = repo.as_object_mut() {
                        m.insert(tag.to_string(), Value::String(top.clone()));
                    }
                }
            }
        }
    }
    add_bytes(&mut tar, "manifest.json", Value::Array(manifest).to_string().as_bytes())?;
    if !repositories.is_empty() {
        add_bytes(&mut tar, "repositories", Value::Object(repositories).to_string().as_bytes())?;
    }
    tar.into_inner().map_err(out_err)?.flush().map_err(out_err)
}

/// `docker.io/library/busybox:latest` for `busybox:latest`: the fully
/// qualified name containerd and Docker 25+ write in an index.
pub(crate) fn qualified(name_tag: &str) -> String {
    let Ok(r) = ImageRef::parse(name_tag) else { return name_tag.to_string() };
    let first = r.name.split('/').next().unwrap_or("");
    let has_registry = r.name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let name = if has_registry {
        r.name.clone()
    } else if r.name.contains('/') {
        format!("docker.io/{}", r.name)
    } else {
        format!("docker.io/library/{}", r.name)
    };
    match r.tag {
        Some(t) => format!("{name}:{t}"),
        None => name,
    }
}

/// The manifest to write for `image`: the one it came with when it still
/// describes exactly the blobs we have, else a new OCI manifest.
fn manifest_for(content: &ContentStore, image: &SaveImage) -> Result<(Vec<u8>, String), EngineError> {
    let mut layers = Vec::new();
    for l in &image.layers {
        let (blob, media_type) = l.blob.clone().ok_or_else(|| {
            EngineError::Image(ImageError::Invalid(format!(
                "layer {} has no stored blob, so it cannot be saved",
                l.diff_id
            )))
        })?;
        let size = content.size(&blob)?;
        layers.push(json!({ "mediaType": media_type, "digest": blob.to_string(), "size": size }));
    }
    if let Some(orig) = &image.manifest {
        if let Ok(v) = serde_json::from_slice::<Value>(orig) {
            let same_config = v["config"]["digest"].as_str() == Some(image.id.to_string().as_str());
            let orig_layers: Vec<Option<&str>> =
                v["layers"].as_array().map(|a| a.iter().map(|l| l["digest"].as_str()).collect()).unwrap_or_default();
            let ours: Vec<Option<&str>> = layers.iter().map(|l| l["digest"].as_str()).collect();
            if same_config && orig_layers == ours {
                let mt = v["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json").to_string();
                return Ok((orig.clone(), mt));
            }
        }
    }
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": image.id.to_string(),
            "size": image.config.len(),
        },
        "layers": layers,
    });
    Ok((m.to_string().into_bytes(), "application/vnd.oci.image.manifest.v1+json".into()))
}

/// Writes `images` as an OCI image layout (plus Docker 25's `manifest.json`,
/// so older loaders read it too).
pub(crate) fn write_oci_layout(
    content: &ContentStore,
    images: &[SaveImage],
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    let mut tar = tar::Builder::new(out);
    let mut written: HashSet<Digest> = HashSet::new();
    let mut index = Vec::new();
    let mut docker_manifest = Vec::new();
    add_dir(&mut tar, "blobs/")?;
    add_dir(&mut tar, "blobs/sha256/")?;
    for image in images {
        let mut layer_paths = Vec::new();
        for l in &image.layers {
            let Some((blob, _)) = &l.blob else {
                return Err(EngineError::Image(ImageError::Invalid(format!(
                    "layer {} has no stored blob, so it cannot be saved",
                    l.diff_id
                ))));
            };
            let path = format!("blobs/sha256/{}", blob.hex());
            layer_paths.push(path.clone());
            if written.insert(blob.clone()) {
                let mut reader = content.open_verified(blob)?;
                let size = content.size(blob)?;
                add_stream(&mut tar, &path, size, &mut reader)?;
            }
        }
        if written.insert(image.id.clone()) {
            add_bytes(&mut tar, &format!("blobs/sha256/{}", image.id.hex()), &image.config)?;
        }
        let (manifest, media_type) = manifest_for(content, image)?;
        let mdigest = Digest::of(&manifest);
        if written.insert(mdigest.clone()) {
            add_bytes(&mut tar, &format!("blobs/sha256/{}", mdigest.hex()), &manifest)?;
        }
        let desc = |annotations: Option<Value>| {
            let mut d = json!({ "mediaType": media_type, "digest": mdigest.to_string(), "size": manifest.len() });
            if let (Some(a), Some(m)) = (annotations, d.as_object_mut()) {
                m.insert("annotations".into(), a);
            }
            d
        };
        if image.tags.is_empty() {
            index.push(desc(None));
        }
        for t in &image.tags {
            let tag = t.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
            index.push(desc(Some(json!({
                "io.containerd.image.name": qualified(t),
                "org.opencontainers.image.ref.name": tag,
            }))));
        }
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", image.id.hex()),
            "RepoTags": if image.tags.is_empty() { Value::Null } else { json!(image.tags) },
            "Layers": layer_paths,
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    });
    add_bytes(&mut tar, "index.json", index.to_string().as_bytes())?;
    add_bytes(&mut tar, "manifest.json", Value::Array(docker_manifest).to_string().as_bytes())?;
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.into_inner().map_err(out_err)?.flush().map_err(out_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_qualified_like_containerd_does() {
        assert_eq!(qualified("busybox:latest"), "docker.io/library/busybox:latest");
        assert_eq!(qualified("me/app:1"), "docker.io/me/app:1");
        assert_eq!(qualified("localhost:5000/app:1"), "localhost:5000/app:1");
    }
}
