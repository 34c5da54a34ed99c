//! Listing what a registry has: `docker search` (the registry's
//! `GET /v1/search`, which Docker Hub's index serves and the distribution
//! registry does not — dockerd then says `Unexpected status code 404`, as
//! berth does) and a repository's tags (`docker pull -a`).

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use berth_model::{AuthConfig, ImageRef};

use super::{error_detail, Access, read_limited, resolve_location, Outgoing, RegistryClient, RegistryError};

/// dockerd's bounds of `limit`.
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// The index Docker Hub's search is served from.
const DOCKER_HUB_INDEX: &str = "https://index.docker.io";
/// Largest search answer read.
const MAX_SEARCH_BYTES: usize = 4 << 20;

/// One repository found (the fields of the registry's answer and of the API's).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SearchResult {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

#[derive(Deserialize)]
struct SearchAnswer {
    #[serde(default)]
    results: Vec<SearchResult>,
}

impl RegistryClient {
    /// Searches `registry` (`host[:port]`, or `docker.io`) for `query`, at most `limit` results.
    pub fn search(&self, registry: &str, query: &str, limit: u32) -> Result<Vec<SearchResult>, RegistryError> {
        self.runtime.block_on(async {
            let base = if registry == berth_model::reference::DEFAULT_REGISTRY {
                DOCKER_HUB_INDEX.to_string()
            } else {
                self.base_of(registry).await?
            };
            let url = format!("{base}/v1/search?q={}&n={limit}", query_escape(query));
            let resp = self.send(Method::GET, &url, Outgoing::get(Some("application/json"), None)).await?;
            let status = resp.status();
            let body = read_limited(resp, &url, MAX_SEARCH_BYTES).await?;
            if status != StatusCode::OK {
                return Err(RegistryError::Status {
                    what: format!("searching {registry}"),
                    status,
                    detail: format!("Unexpected status code {}", status.as_u16()),
                });
            }
            let answer: SearchAnswer = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::Invalid(format!("searching {registry}: the answer is not a search result: {e}")))?;
            Ok(answer.results)
        })
    }
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Pages of a tag list followed at most (a registry pages by `n`, 100 by default).
const MAX_TAG_PAGES: usize = 1000;

impl RegistryClient {
    /// Every tag of `image`'s repository, following the registry's `Link: <…>; rel="next"` pages.
    pub fn list_tags(&self, image: &ImageRef, credentials: Option<&AuthConfig>) -> Result<Vec<String>, RegistryError> {
        let repository = image.repository();
        self.runtime.block_on(async {
            let base = self.blob_base(image).await?;
            let mut url = format!("{base}/v2/{}/tags/list", image.repository());
            let mut tags = Vec::new();
            for _ in 0..MAX_TAG_PAGES {
                let resp = self.send_authorized(&url, Some("application/json"), &Access::pull(&repository, credentials)).await?;
                let status = resp.status();
                let next = resp
                    .headers()
                    .get(hyper::header::LINK)
                    .and_then(|l| l.to_str().ok())
                    .and_then(next_link)
                    .map(|path| resolve_location(&url.parse().unwrap_or_default(), &path));
                let body = read_limited(resp, &url, MAX_SEARCH_BYTES).await?;
                if status == StatusCode::NOT_FOUND {
                    return Err(RegistryError::ManifestUnknown { reference: image.name.clone(), detail: error_detail(&body) });
                }
                if status != StatusCode::OK {
                    return Err(RegistryError::Status { what: format!("listing the tags of {}", image.name), status, detail: error_detail(&body) });
                }
                let page: TagList = serde_json::from_slice(&body)
                    .map_err(|e| RegistryError::Invalid(format!("listing the tags of {}: not a tag list: {e}", image.name)))?;
                tags.extend(page.tags.unwrap_or_default());
                match next {
                    Some(n) => url = n,
                    None => return Ok(tags),
                }
            }
            Err(RegistryError::Invalid(format!("listing the tags of {}: more than {MAX_TAG_PAGES} pages", image.name)))
        })
    }
}

/// The target of a `Link` header's `rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part[start..].find('>')? + start;
        Some(part[start..end].to_string())
    })
}

/// A query string value, percent-encoded (RFC 3986's unreserved bytes pass).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_escaped() {
        assert_eq!(query_escape("team/app db"), "team%2Fapp%20db");
        assert_eq!(query_escape("a-b_c.d~"), "a-b_c.d~");
    }

    #[test]
    fn tag_pages_follow_the_next_link() {
        assert_eq!(next_link(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#).as_deref(), Some("/v2/app/tags/list?last=b&n=2"));
        assert_eq!(next_link(r#"<x>; rel="prev""#), None);
    }
}
