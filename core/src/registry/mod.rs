//! The distribution client: what berth asks of registries (the OCI
//! distribution protocol, which Docker's registry speaks), over HTTP.
//!
//! Calls block: the client owns a small tokio runtime of its own, so the
//! images service stays blocking and testable. Every request goes through
//! `RegistryClient::send`, the one place where authentication (a 401's
//! `WWW-Authenticate` challenge, credentials) and TLS will be added.
//! Today it speaks plain HTTP to loopback registries only (`localhost`,
//! `127.0.0.0/8`, `::1`, which Docker also reaches over HTTP), anonymously.

mod manifest;
mod range;

use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use berth_model::{Digest, ImageRef};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use manifest::{check_layers, descriptor_digest, parse_manifest, pick_platform, Manifest, MANIFEST_ACCEPT};
pub use range::{BlobStart, RangeSink};

/// Docker Hub's API host: `docker.io` is only the name's registry.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Manifests larger than this are refused (dockerd's limit too).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may send nothing before it is given up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects followed per request (blob downloads redirect to storage).
const MAX_REDIRECTS: usize = 5;

/// Failures talking to a registry. Messages are what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "cannot pull {image} from {registry}: berth reaches registries over plain HTTP on this host only \
         (localhost, 127.0.0.0/8, ::1) for now; HTTPS registries come with TLS support"
    )]
    HttpsNotSupported { image: String, registry: String },
    #[error("Get \"{url}\": {message}")]
    Unreachable { url: String, message: String },
    #[error("manifest for {reference} not found: {detail}")]
    ManifestUnknown { reference: String, detail: String },
    #[error("blob {digest} of {repository} not found on the registry: {detail}")]
    BlobUnknown { repository: String, digest: Digest, detail: String },
    #[error("{what}: the registry answered {status}: {detail}")]
    Status { what: String, status: StatusCode, detail: String },
    #[error("no matching manifest for {wanted} in the manifest list entries (it has {available}); choose one with --platform")]
    NoMatchingPlatform { wanted: String, available: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("{what}: the registry sent nothing for {}s; giving up", IDLE_TIMEOUT.as_secs())]
    Stalled { what: String },
    /// The pull was abandoned (its client went away, or another part of it failed).
    #[error("{what}: download stopped: the pull was cancelled")]
    Cancelled { what: String },
    /// Where the bytes went refused them (disk full, or the pull was abandoned).
    #[error("{what}: {source}")]
    Sink {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("starting the registry client: {0}")]
    Runtime(io::Error),
}

/// A manifest as the registry served it.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    /// The bytes, exactly: their digest names the manifest.
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub manifest: Manifest,
}

/// The client of every registry berth talks to.
pub struct RegistryClient {
    runtime: tokio::runtime::Runtime,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl RegistryClient {
    pub fn new() -> Result<RegistryClient, RegistryError> {
        // Two workers drive the connections; the callers' threads (one per
        // parallel download) do the reading and writing in `block_on`.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-registry")
            .enable_io()
            .enable_time()
            .build()
            .map_err(RegistryError::Runtime)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let http = {
            let _in = runtime.enter();
            Client::builder(TokioExecutor::new()).build(connector)
        };
        Ok(RegistryClient { runtime, http })
    }

    /// Fetches the manifest `reference` (a tag or digest) of `image`'s
    /// repository. When `reference` is a digest, the bytes must hash to it.
    pub fn fetch_manifest(&self, image: &ImageRef, reference: &str) -> Result<FetchedManifest, RegistryError> {
        let url = format!("{}/v2/{}/manifests/{reference}", base_url(image)?, image.repository());
        let shown = if reference.contains(':') { format!("{}@{reference}", image.name) } else { format!("{}:{reference}", image.name) };
        let (bytes, content_type) = self.runtime.block_on(async {
            let resp = self.send(&url, Some(MANIFEST_ACCEPT), None).await?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => {
                    let detail = error_detail(read_limited(resp, &url, 64 << 10).await.unwrap_or_default().as_slice());
                    return Err(RegistryError::ManifestUnknown { reference: shown.clone(), detail });
                }
                status => {
                    let detail = error_detail(&read_limited(resp, &url, 64 << 10).await.unwrap_or_default());
                    return Err(RegistryError::Status { what: format!("fetching the manifest of {shown}"), status, detail });
                }
            }
            let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
            Ok((read_limited(resp, &url, MAX_MANIFEST_BYTES).await?, content_type))
        })?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>() {
            if expected != digest {
                return Err(RegistryError::DigestMismatch { what: format!("manifest of {shown}"), expected, actual: digest });
            }
        }
        let manifest = parse_manifest(&bytes, content_type.as_deref(), &format!("manifest of {shown}"))?;
        Ok(FetchedManifest { bytes, digest, manifest })
    }

    /// Streams blob `digest` of `image`'s repository into `sink`, chunk by
    /// chunk as it arrives; returns the bytes written. Checking the digest is
    /// the sink's business (the content store's writer does it).
    pub fn fetch_blob(&self, image: &ImageRef, digest: &Digest, sink: &mut dyn Write) -> Result<u64, RegistryError> {
        let repository = image.repository();
        let url = format!("{}/v2/{repository}/blobs/{digest}", base_url(image)?);
        let what = format!("blob {digest} of {}", image.name);
        self.runtime.block_on(async {
            let resp = self.send(&url, None, None).await?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => {
                    let detail = error_detail(&read_limited(resp, &url, 64 << 10).await.unwrap_or_default());
                    return Err(RegistryError::BlobUnknown { repository, digest: digest.clone(), detail });
                }
                status => {
                    let detail = error_detail(&read_limited(resp, &url, 64 << 10).await.unwrap_or_default());
                    return Err(RegistryError::Status { what: format!("fetching {what}"), status, detail });
                }
            }
            let mut body = resp.into_body();
            let mut written = 0u64;
            loop {
                let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
                    .await
                    .map_err(|_| RegistryError::Stalled { what: what.clone() })?;
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| RegistryError::Unreachable { url: url.clone(), message: error_chain(&e) })?;
                if let Some(data) = frame.data_ref() {
                    sink.write_all(data).map_err(|source| RegistryError::Sink { what: what.clone(), source })?;
                    written += data.len() as u64;
                }
            }
            Ok(written)
        })
    }

    /// One GET, following redirects. The single place requests leave from,
    /// where authentication will answer a 401's challenge and retry.
    /// `range_from` asks for the bytes from that offset on (`Range`).
    async fn send(&self, url: &str, accept: Option<&str>, range_from: Option<u64>) -> Result<Response<Incoming>, RegistryError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let uri: Uri = url.parse().map_err(|e| RegistryError::Invalid(format!("invalid registry URL {url:?}: {e}")))?;
            if uri.scheme_str() != Some("http") {
                return Err(RegistryError::HttpsNotSupported {
                    image: url.clone(),
                    registry: uri.authority().map(|a| a.to_string()).unwrap_or_else(|| url.clone()),
                });
            }
            let mut req = Request::get(uri.clone()).header(header::USER_AGENT, concat!("berth/", env!("CARGO_PKG_VERSION")));
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            if let Some(from) = range_from {
                req = req.header(header::RANGE, format!("bytes={from}-"));
            }
            let req = req.body(Empty::new()).map_err(|e| RegistryError::Invalid(format!("building a request for {url}: {e}")))?;
            let resp = tokio::time::timeout(IDLE_TIMEOUT + CONNECT_TIMEOUT, self.http.request(req))
                .await
                .map_err(|_| RegistryError::Stalled { what: format!("GET {url}") })?
                .map_err(|e| RegistryError::Unreachable { url: url.clone(), message: error_chain(&e) })?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let location = resp.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).ok_or_else(|| {
                RegistryError::Invalid(format!("GET {url}: the registry redirected ({}) without a Location", resp.status()))
            })?;
            url = resolve_location(&uri, location);
        }
        Err(RegistryError::Invalid(format!("GET {url}: more than {MAX_REDIRECTS} redirects")))
    }
}

/// The API's base URL of `image`'s registry.
fn base_url(image: &ImageRef) -> Result<String, RegistryError> {
    let registry = image.registry();
    let host = if registry == berth_model::reference::DEFAULT_REGISTRY { DOCKER_HUB_API } else { registry };
    let bare = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    let loopback = bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(RegistryError::HttpsNotSupported { image: image.to_string(), registry: registry.to_string() });
    }
    Ok(format!("http://{host}"))
}

/// A redirect's target: absolute, or a path on the same host.
fn resolve_location(from: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme = from.scheme_str().unwrap_or("http");
    let authority = from.authority().map(|a| a.as_str()).unwrap_or("");
    format!("{scheme}://{authority}{location}")
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
async fn read_limited(resp: Response<Incoming>, url: &str, limit: usize) -> Result<Vec<u8>, RegistryError> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| RegistryError::Stalled { what: format!("GET {url}") })?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| RegistryError::Unreachable { url: url.to_string(), message: error_chain(&e) })?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > limit {
                return Err(RegistryError::Invalid(format!("GET {url}: the answer is larger than {limit} bytes")));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// A registry's error body (`{"errors": [{"code", "message"}]}`) as Docker
/// prints it: `manifest unknown: manifest unknown`.
fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code.replace('_', " ").to_lowercase(), e.message))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string(),
    }
}

/// An error with its causes, which is where the useful part of a connection error is.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_reached_over_http() {
        let url = |name: &str| base_url(&ImageRef::parse(name).unwrap());
        assert_eq!(url("localhost:5000/app").unwrap(), "http://localhost:5000");
        assert_eq!(url("127.0.0.1:5000/app").unwrap(), "http://127.0.0.1:5000");
        assert_eq!(url("[::1]:5000/app").unwrap(), "http://[::1]:5000");
        assert_eq!(url("localhost/app").unwrap(), "http://localhost");
        let err = url("busybox").unwrap_err().to_string();
        assert!(err.contains("cannot pull busybox from docker.io") && err.contains("HTTPS"), "{err}");
        assert!(url("registry.example:443/app").is_err());
    }

    #[test]
    fn registry_errors_read_as_docker_prints_them() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        assert_eq!(error_detail(body), "manifest unknown: manifest unknown");
        assert_eq!(error_detail(b"404 page not found\n"), "404 page not found");
    }

    #[test]
    fn an_unreachable_registry_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = RegistryClient::new().unwrap();
        let image = ImageRef::parse(&format!("127.0.0.1:{port}/test/box:1")).unwrap();
        let err = client.fetch_manifest(&image, "1").unwrap_err().to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}/v2/test/box/manifests/1")) && err.contains("refused"), "{err}");
    }
}
