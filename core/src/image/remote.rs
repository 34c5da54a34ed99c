//! Looking at a registry without pulling: `GET /distribution/{name}/json`
//! (a reference's descriptor and platforms) and `docker search`.

use berth_model::{AuthConfig, Digest, ImageRef, Platform};

use crate::error::{EngineError, EngineResult};
use crate::registry::{descriptor_digest, Manifest, RegistryError, SearchResult, MAX_SEARCH_LIMIT};
use super::ops::parse_config;
use super::ImageService;

/// Largest image config read to learn a single manifest's platform.
const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// What a registry says a reference is.
#[derive(Clone, Debug)]
pub struct DistributionInfo {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Every platform of a list; the one of a single manifest (from its config).
    pub platforms: Vec<Platform>,
}

/// `docker search` filters, as dockerd reads them.
#[derive(Clone, Debug, Default)]
pub struct SearchFilter {
    pub min_stars: Option<u64>,
    pub is_official: Option<bool>,
    pub is_automated: Option<bool>,
}

impl ImageService {
    /// The descriptor and platforms `reference` (a missing tag is `latest`)
    /// names on its registry, asked as `auth` (anonymously when `None`).
    pub fn distribution_inspect(&self, reference: &ImageRef, auth: Option<&AuthConfig>) -> EngineResult<DistributionInfo> {
        let image = reference.clone().with_default_tag();
        let registry = self.registry()?;
        let top = registry.fetch_manifest(&image, &image.tag_or_digest(), auth)?;
        let platforms = match &top.manifest {
            Manifest::Index(index) => index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| Platform {
                    os: p.os().to_string(),
                    architecture: p.architecture().to_string(),
                    variant: p.variant().clone(),
                })
                .collect(),
            Manifest::Image(manifest) => {
                let whence = format!("{}@{}", image.name, top.digest);
                let config = manifest.config();
                if config.size() > MAX_CONFIG_BYTES {
                    return Err(RegistryError::Invalid(format!("{whence}: the image config is {} bytes; berth reads at most {MAX_CONFIG_BYTES}", config.size())).into());
                }
                let digest = descriptor_digest(config, &whence)?;
                let mut bytes = Vec::new();
                registry.fetch_blob(&image, &digest, auth, &mut bytes)?;
                if Digest::of(&bytes) != digest {
                    return Err(RegistryError::DigestMismatch { what: format!("config of {whence}"), expected: digest, actual: Digest::of(&bytes) }.into());
                }
                let (parsed, _) = parse_config(&bytes, &whence)?;
                vec![Platform { os: parsed.os().to_string(), architecture: parsed.architecture().to_string(), variant: parsed.variant().clone() }]
            }
        };
        Ok(DistributionInfo { media_type: top.media_type, digest: top.digest, size: top.bytes.len() as u64, platforms })
    }

    /// The tags `reference`'s repository has on its registry (`docker pull -a`), sorted.
    pub fn remote_tags(&self, reference: &ImageRef, auth: Option<&AuthConfig>) -> EngineResult<Vec<String>> {
        let mut tags = self.registry()?.list_tags(reference, auth)?;
        if tags.is_empty() {
            return Err(EngineError::NotFound(format!("repository {} has no tags on its registry", reference.name)));
        }
        tags.sort();
        Ok(tags)
    }

    /// `docker search TERM`: a term whose first part names a registry
    /// (`localhost:5000/app`) searches that registry for the rest; any other
    /// searches Docker Hub. `limit` is 1..=100 (default 25).
    pub fn search(&self, term: &str, limit: Option<u32>, filter: &SearchFilter) -> EngineResult<Vec<SearchResult>> {
        let limit = limit.unwrap_or(25);
        if limit == 0 || limit > MAX_SEARCH_LIMIT {
            return Err(EngineError::InvalidArgument(format!("Limit {limit} is outside the range of [1, {MAX_SEARCH_LIMIT}]")));
        }
        if term.trim().is_empty() {
            return Err(EngineError::InvalidArgument("a search term is required".into()));
        }
        let (registry, query) = match term.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
            _ => (berth_model::reference::DEFAULT_REGISTRY, term),
        };
        let found = self.registry()?.search(registry, query, limit)?;
        Ok(found
            .into_iter()
            .filter(|r| filter.min_stars.is_none_or(|n| r.star_count >= n))
            .filter(|r| filter.is_official.is_none_or(|o| r.is_official == o))
            .filter(|r| filter.is_automated.is_none_or(|a| r.is_automated == a))
            .collect())
    }
}
