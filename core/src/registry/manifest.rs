//! Manifests as registries serve them: Docker's v2 schema 2 manifest and
//! manifest list, the OCI manifest and index (oci-spec's types serve all
//! four, their shapes being the same), and picking a platform from a list.

use berth_model::{Digest, Platform};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::RegistryError;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's schema 1, signed: gone from Docker Hub and refused by dockerd since 2023.
const DOCKER_SCHEMA1: &[&str] =
    &["application/vnd.docker.distribution.manifest.v1+prettyjws", "application/vnd.docker.distribution.manifest.v1+json"];

/// The `Accept` header of a manifest request: every kind berth reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json";

/// Layer media types berth unpacks (compression is detected from the bytes).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
];

/// A manifest as fetched: its bytes (whose digest names it) and what they are.
#[derive(Clone, Debug)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

impl Manifest {
    /// The `mediaType` the manifest declares itself.
    pub fn media_type(&self) -> Option<String> {
        match self {
            Manifest::Image(m) => m.media_type().as_ref().map(|t| t.to_string()),
            Manifest::Index(i) => i.media_type().as_ref().map(|t| t.to_string()),
        }
    }
}

/// Reads manifest `bytes` served with `content_type` (the header; the body's
/// own `mediaType` wins when present, as some registries serve plain JSON).
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>, whence: &str) -> Result<Manifest, RegistryError> {
    let invalid = |e: String| RegistryError::Invalid(format!("{whence}: invalid manifest: {e}"));
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let declared = value.get("mediaType").and_then(|m| m.as_str()).map(str::to_string);
    let header = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
    let kind = declared.or(header).unwrap_or_default();
    let is_index = match kind.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => false,
        DOCKER_MANIFEST_LIST | OCI_INDEX => true,
        k if DOCKER_SCHEMA1.contains(&k) => {
            return Err(RegistryError::Unsupported(format!(
                "{whence}: the image is in Docker's schema 1 format ({k}), which berth does not pull (nor does Docker since 2023); \
                 push it again with a current client"
            )))
        }
        // Served as application/json or the like: the members tell.
        _ if value.get("manifests").is_some() => true,
        _ if value.get("config").is_some() && value.get("layers").is_some() => false,
        other => {
            return Err(RegistryError::Unsupported(format!(
                "{whence}: unsupported manifest media type {other:?}: berth reads {MANIFEST_ACCEPT}"
            )))
        }
    };
    if is_index {
        serde_json::from_value(value).map(Manifest::Index).map_err(|e| invalid(e.to_string()))
    } else {
        serde_json::from_value(value).map(Manifest::Image).map_err(|e| invalid(e.to_string()))
    }
}

/// The descriptor's digest in berth's type.
pub fn descriptor_digest(d: &Descriptor, whence: &str) -> Result<Digest, RegistryError> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|e| RegistryError::Invalid(format!("{whence}: descriptor digest {}: {e}", d.digest())))
}

/// Checks that every layer of `manifest` is a kind berth can unpack.
pub fn check_layers(manifest: &ImageManifest, whence: &str) -> Result<(), RegistryError> {
    for layer in manifest.layers() {
        let t = layer.media_type().to_string();
        if !LAYER_TYPES.contains(&t.as_str()) {
            return Err(RegistryError::Unsupported(format!(
                "{whence}: layer {} has media type {t:?}, which berth cannot unpack (it reads {})",
                layer.digest(),
                LAYER_TYPES.join(", ")
            )));
        }
    }
    Ok(())
}

/// The entry of `index` for `wanted`: the first whose platform matches.
/// Without a match, the error lists the platforms the index has.
pub fn pick_platform<'a>(index: &'a ImageIndex, wanted: &Platform) -> Result<&'a Descriptor, RegistryError> {
    let platform_of = |d: &Descriptor| {
        d.platform().as_ref().map(|p| (p.os().to_string(), p.architecture().to_string(), p.variant().clone()))
    };
    for entry in index.manifests() {
        if let Some((os, arch, variant)) = platform_of(entry) {
            if wanted.matches(&os, &arch, variant.as_deref()) {
                return Ok(entry);
            }
        }
    }
    let available: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(platform_of)
        .map(|(os, arch, v)| Platform { os, architecture: arch, variant: v }.to_string())
        .collect();
    Err(RegistryError::NoMatchingPlatform {
        wanted: wanted.to_string(),
        available: if available.is_empty() { "no platforms".to_string() } else { available.join(", ") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": Digest::of(format!("m{i}").as_bytes()).to_string(),
                    "size": 100,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).unwrap()
    }

    #[test]
    fn an_index_picks_the_wanted_platform_or_names_those_it_has() {
        let bytes = index(&[("linux", "amd64", None), ("linux", "arm64", Some("v8")), ("linux", "arm", Some("v7"))]);
        let Manifest::Index(idx) = parse_manifest(&bytes, None, "test").unwrap() else { panic!("not an index") };
        let amd64 = pick_platform(&idx, &"linux/amd64".parse().unwrap()).unwrap();
        assert_eq!(amd64.digest().to_string(), Digest::of(b"m0").to_string());
        let arm64 = pick_platform(&idx, &"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm64.digest().to_string(), Digest::of(b"m1").to_string());
        let err = pick_platform(&idx, &"linux/s390x".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("linux/s390x") && err.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"), "{err}");
    }

    #[test]
    fn manifests_are_told_apart_by_media_type_or_members() {
        let config = Digest::of(b"config").to_string();
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 6},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": config, "size": 6}],
        });
        let Manifest::Image(img) = parse_manifest(&serde_json::to_vec(&m).unwrap(), None, "test").unwrap() else {
            panic!("not an image manifest")
        };
        check_layers(&img, "test").unwrap();
        let mut foreign = m.clone();
        foreign["layers"][0]["mediaType"] = serde_json::json!("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip");
        let Manifest::Image(img) = parse_manifest(&serde_json::to_vec(&foreign).unwrap(), None, "test").unwrap() else {
            panic!("not an image manifest")
        };
        assert!(check_layers(&img, "test").unwrap_err().to_string().contains("foreign"));
        let v1 = br#"{"schemaVersion": 1, "name": "x"}"#;
        let err = parse_manifest(v1, Some("application/vnd.docker.distribution.manifest.v1+prettyjws"), "test").unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        assert!(parse_manifest(b"not json", None, "test").is_err());
    }
}
