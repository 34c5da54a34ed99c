//! The distribution client: what berth asks of registries (the OCI
//! distribution protocol, which Docker's registry speaks), over HTTP.
//!
//! Calls block: the client owns a small tokio runtime of its own, so the
//! images service stays blocking and testable. Every request goes through
//! `RegistryClient::send`; authentication (a 401's `WWW-Authenticate`
//! challenge, tokens, the operation's credentials) wraps it in `auth.rs`.
//!
//! Registries are reached as Docker reaches them: HTTPS, verified with the
//! system's CAs and the registry's own from `certs.d` (`tls.rs`); a registry
//! that is insecure (loopback, or declared with `--insecure-registry`) is
//! tried over HTTPS without verification first and over plain HTTP when
//! that fails. Docker Hub's mirrors are tried before Docker Hub.

mod auth;
pub mod config;
mod manifest;
mod push;
mod range;
mod search;
mod tls;

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::Duration;

use berth_model::{AuthConfig, Digest, ImageRef};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::{header, Method, Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use auth::{parse_challenges, Access, Challenge};
pub use config::RegistryConfig;
pub use search::{SearchResult, MAX_SEARCH_LIMIT};
pub use push::{UploadStart, DOCKER_CONFIG, DOCKER_LAYER_GZIP};
pub use manifest::{check_layers, descriptor_digest, parse_manifest, pick_platform, Manifest, MANIFEST_ACCEPT};
pub use range::{BlobStart, RangeSink};

/// What berth calls itself to registries.
const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));
/// Docker Hub's API host: `docker.io` is only the name's registry.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Manifests larger than this are refused (dockerd's limit too).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// How long finding out whether an insecure registry speaks HTTPS may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may send nothing before it is given up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects followed per request (blob downloads redirect to storage).
const MAX_REDIRECTS: usize = 5;

/// Failures talking to a registry. Messages are what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The TLS set-up for a registry is wrong (its `certs.d` files).
    #[error("{0}")]
    Tls(String),
    #[error("Get \"{url}\": {message}")]
    Unreachable { url: String, message: String },
    /// A request other than a GET that got no answer, worded as dockerd words it.
    #[error("{method} \"{url}\": {message}")]
    Failed { method: String, url: String, message: String },
    #[error("manifest for {reference} not found: {detail}")]
    ManifestUnknown { reference: String, detail: String },
    /// The registry wants basic credentials and the operation has none (dockerd's words).
    #[error("Get \"{url}\": no basic auth credentials")]
    NoBasicAuthCredentials { url: String },
    /// The registry's token service refused the credentials (or anonymous access).
    #[error("Get \"{url}\": {detail}")]
    TokenRefused { url: String, detail: String },
    /// Authenticated (or anonymous) and still refused: dockerd's words for a pull.
    #[error("pull access denied for {name}, repository does not exist or may require 'docker login': {detail}")]
    PullAccessDenied { name: String, detail: String },
    /// `docker login` with credentials the registry refuses (dockerd's words).
    #[error("login attempt to {url} failed with status: {} {}", status.as_u16(), status.canonical_reason().unwrap_or(""))]
    LoginFailed { url: String, status: StatusCode },
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
    /// What the registry said it is (its `Content-Type`, else the body's `mediaType`).
    pub media_type: String,
    pub manifest: Manifest,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// The client of every registry berth talks to.
pub struct RegistryClient {
    runtime: tokio::runtime::Runtime,
    config: RegistryConfig,
    /// One client per `host[:port]`: each has its own TLS settings.
    clients: Mutex<HashMap<String, HttpClient>>,
    /// `scheme://host[:port]` of each registry: found once for insecure ones.
    bases: Mutex<HashMap<String, String>>,
    /// Where a Docker Hub repository's manifest came from (a mirror or Docker
    /// Hub): its blobs are fetched from the same place.
    sources: Mutex<HashMap<String, String>>,
    /// Tokens and credentials got for registries, per host, scope and user.
    auth_cache: auth::AuthCache,
}

impl RegistryClient {
    pub fn new(config: RegistryConfig) -> Result<RegistryClient, RegistryError> {
        // Two workers drive the connections; the callers' threads (one per
        // parallel download) do the reading and writing in `block_on`.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-registry")
            .enable_io()
            .enable_time()
            .build()
            .map_err(RegistryError::Runtime)?;
        Ok(RegistryClient {
            runtime,
            config,
            clients: Mutex::default(),
            bases: Mutex::default(),
            sources: Mutex::default(),
            auth_cache: auth::AuthCache::default(),
        })
    }

    /// The settings the client was made with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The HTTP client for `authority` (`host[:port]`), made on first use with
    /// that registry's TLS settings.
    fn client_for(&self, authority: &str) -> Result<HttpClient, RegistryError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(authority) {
            return Ok(c.clone());
        }
        let verify = !self.config.is_insecure(authority);
        let tls = tls::client_config(authority, &self.config.certs_dir, verify)?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = {
            let _in = self.runtime.enter();
            Client::builder(TokioExecutor::new()).build(connector)
        };
        clients.insert(authority.to_string(), client.clone());
        Ok(client)
    }

    /// The base URLs to try for `image`, in order: Docker Hub's mirrors and
    /// Docker Hub, or the one registry (its scheme found out when insecure).
    async fn bases(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let registry = image.registry();
        if registry == berth_model::reference::DEFAULT_REGISTRY {
            let mut bases = self.config.mirrors.clone();
            bases.push(format!("https://{DOCKER_HUB_API}"));
            return Ok(bases);
        }
        Ok(vec![self.base_of(registry).await?])
    }

    /// The base URL of `registry`: HTTPS, unless it is insecure and does not speak it.
    async fn base_of(&self, registry: &str) -> Result<String, RegistryError> {
        if !self.config.is_insecure(registry) {
            return Ok(format!("https://{registry}"));
        }
        if let Some(base) = self.bases.lock().unwrap_or_else(|p| p.into_inner()).get(registry) {
            return Ok(base.clone());
        }
        // Docker's order for insecure registries: HTTPS (unverified), then HTTP.
        let https = format!("https://{registry}");
        let client = self.client_for(registry)?;
        let probe = Request::get(format!("{https}/v2/"))
            .header(header::USER_AGENT, USER_AGENT)
            .body(empty_body())
            .map_err(|e| RegistryError::Invalid(format!("building a request for {https}/v2/: {e}")))?;
        let speaks_https = matches!(tokio::time::timeout(PROBE_TIMEOUT, client.request(probe)).await, Ok(Ok(_)));
        let base = if speaks_https { https } else { format!("http://{registry}") };
        tracing::debug!(registry, base, "registry endpoint");
        self.bases.lock().unwrap_or_else(|p| p.into_inner()).insert(registry.to_string(), base.clone());
        Ok(base)
    }

    /// The base URL `image`'s blobs come from: where its manifest came from.
    async fn blob_base(&self, image: &ImageRef) -> Result<String, RegistryError> {
        if let Some(base) = self.sources.lock().unwrap_or_else(|p| p.into_inner()).get(&image.full_name()) {
            return Ok(base.clone());
        }
        let bases = self.bases(image).await?;
        bases.into_iter().next_back().ok_or_else(|| RegistryError::Invalid(format!("no registry to reach for {image}")))
    }

    /// Fetches the manifest `reference` (a tag or digest) of `image`'s
    /// repository, as `credentials` (anonymously when `None`). When
    /// `reference` is a digest, the bytes must hash to it.
    pub fn fetch_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        credentials: Option<&AuthConfig>,
    ) -> Result<FetchedManifest, RegistryError> {
        let shown = if reference.contains(':') { format!("{}@{reference}", image.name) } else { format!("{}:{reference}", image.name) };
        let (bytes, content_type) = self.runtime.block_on(async {
            let bases = self.bases(image).await?;
            let last = bases.len().saturating_sub(1);
            for (i, base) in bases.iter().enumerate() {
                match self.fetch_manifest_from(base, image, reference, &shown, credentials).await {
                    Ok(found) => {
                        self.sources.lock().unwrap_or_else(|p| p.into_inner()).insert(image.full_name(), base.clone());
                        return Ok(found);
                    }
                    // A mirror that fails is skipped, as dockerd does; the last word is Docker Hub's.
                    Err(e) if i < last => tracing::warn!(mirror = %base, "mirror failed, trying the next: {e}"),
                    Err(e) => return Err(e),
                }
            }
            Err(RegistryError::Invalid(format!("no registry to reach for {shown}")))
        })?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>() {
            if expected != digest {
                return Err(RegistryError::DigestMismatch { what: format!("manifest of {shown}"), expected, actual: digest });
            }
        }
        let manifest = parse_manifest(&bytes, content_type.as_deref(), &format!("manifest of {shown}"))?;
        let media_type = content_type
            .map(|c| c.split(';').next().unwrap_or(&c).trim().to_string())
            .filter(|c| c.starts_with("application/vnd."))
            .or_else(|| manifest.media_type())
            .unwrap_or_default();
        Ok(FetchedManifest { bytes, digest, media_type, manifest })
    }

    /// One manifest GET at `base`: the bytes and their media type.
    async fn fetch_manifest_from(
        &self,
        base: &str,
        image: &ImageRef,
        reference: &str,
        shown: &str,
        credentials: Option<&AuthConfig>,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let repository = image.repository();
        let url = format!("{base}/v2/{repository}/manifests/{reference}");
        {
            let resp = self.send_authorized(&url, Some(MANIFEST_ACCEPT), &Access::pull(&repository, credentials)).await?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    let detail = error_detail(&read_limited(resp, &url, 64 << 10).await.unwrap_or_default());
                    return Err(RegistryError::PullAccessDenied { name: image.name.clone(), detail });
                }
                StatusCode::NOT_FOUND => {
                    let detail = error_detail(read_limited(resp, &url, 64 << 10).await.unwrap_or_default().as_slice());
                    return Err(RegistryError::ManifestUnknown { reference: shown.to_string(), detail });
                }
                status => {
                    let detail = error_detail(&read_limited(resp, &url, 64 << 10).await.unwrap_or_default());
                    return Err(RegistryError::Status { what: format!("fetching the manifest of {shown}"), status, detail });
                }
            }
            let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
            Ok((read_limited(resp, &url, MAX_MANIFEST_BYTES).await?, content_type))
        }
    }

    /// Streams blob `digest` of `image`'s repository into `sink`, chunk by
    /// chunk as it arrives; returns the bytes written. Checking the digest is
    /// the sink's business (the content store's writer does it).
    pub fn fetch_blob(
        &self,
        image: &ImageRef,
        digest: &Digest,
        credentials: Option<&AuthConfig>,
        sink: &mut dyn Write,
    ) -> Result<u64, RegistryError> {
        let repository = image.repository();
        let what = format!("blob {digest} of {}", image.name);
        self.runtime.block_on(async {
            let url = format!("{}/v2/{repository}/blobs/{digest}", self.blob_base(image).await?);
            let resp = self.send_authorized(&url, None, &Access::pull(&repository, credentials)).await?;
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

    /// One request, following redirects when it has no body (a body is
    /// streamed once and cannot be sent again). The single place requests
    /// leave from, where authentication will answer a 401's challenge and
    /// retry. A request with a body has no deadline here: it may take as long
    /// as its bytes take, and the caller watches that they keep flowing.
    async fn send(&self, method: Method, url: &str, outgoing: Outgoing) -> Result<Response<Incoming>, RegistryError> {
        let Outgoing { headers, mut body, authorization } = outgoing;
        let first_authority = url.parse::<Uri>().ok().and_then(|u| u.authority().cloned());
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let uri: Uri = url.parse().map_err(|e| RegistryError::Invalid(format!("invalid registry URL {url:?}: {e}")))?;
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let client = self.client_for(&authority)?;
            let mut req = Request::builder().method(method.clone()).uri(uri.clone()).header(header::USER_AGENT, USER_AGENT);
            for (name, value) in &headers {
                req = req.header(name, value);
            }
            // Credentials go to the registry only, never along a redirect elsewhere (blob storage).
            if let Some(a) = authorization.as_ref().filter(|_| uri.authority() == first_authority.as_ref()) {
                req = req.header(header::AUTHORIZATION, a);
            }
            let has_body = body.is_some();
            let req = req
                .body(body.take().unwrap_or_else(empty_body))
                .map_err(|e| RegistryError::Invalid(format!("building a request for {url}: {e}")))?;
            let failed = |e: hyper_util::client::legacy::Error| match self.unreachable(&url, &authority, &e) {
                RegistryError::Unreachable { url, message } if method != Method::GET => {
                    RegistryError::Failed { method: go_method(&method), url, message }
                }
                other => other,
            };
            let resp = if has_body {
                client.request(req).await.map_err(failed)?
            } else {
                tokio::time::timeout(IDLE_TIMEOUT + CONNECT_TIMEOUT, client.request(req))
                    .await
                    .map_err(|_| RegistryError::Stalled { what: format!("{method} {url}") })?
                    .map_err(failed)?
            };
            if !resp.status().is_redirection() || has_body || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let location = resp.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).ok_or_else(|| {
                RegistryError::Invalid(format!("{method} {url}: the registry redirected ({}) without a Location", resp.status()))
            })?;
            url = resolve_location(&uri, location);
        }
        Err(RegistryError::Invalid(format!("{method} {url}: more than {MAX_REDIRECTS} redirects")))
    }

    /// A failed request in Docker's words: `Get "<url>": <why>`, a TLS failure explained.
    fn unreachable(&self, url: &str, authority: &str, e: &(dyn std::error::Error + 'static)) -> RegistryError {
        let message = tls::explain_failure(e, authority, &self.config.certs_dir).unwrap_or_else(|| error_chain(e));
        RegistryError::Unreachable { url: url.to_string(), message }
    }
}

/// A request body: streamed, so a layer is never held in memory whole.
pub type RequestBody = BoxBody<Bytes, io::Error>;

/// The body of a request that has none.
fn empty_body() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// What a request carries besides its method and URL.
#[derive(Default)]
pub(crate) struct Outgoing {
    pub headers: Vec<(header::HeaderName, String)>,
    pub body: Option<RequestBody>,
    /// `Authorization`, for the first URL's host only.
    pub authorization: Option<HeaderValue>,
}

impl Outgoing {
    /// A GET's headers: `Accept` when given, `Authorization` when given.
    pub(crate) fn get(accept: Option<&str>, authorization: Option<&HeaderValue>) -> Outgoing {
        Outgoing {
            headers: accept.map(|a| vec![(header::ACCEPT, a.to_string())]).unwrap_or_default(),
            body: None,
            authorization: authorization.cloned(),
        }
    }
}

/// A method as Go's HTTP client names it in errors (`Put "http://…": …`), as dockerd reports them.
fn go_method(method: &Method) -> String {
    let upper = method.as_str();
    let mut out = upper[..1].to_string();
    out.push_str(&upper[1..].to_lowercase());
    out
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
    fn secure_registries_are_https_and_insecure_ones_found_out() {
        let client = RegistryClient::new(RegistryConfig::default()).unwrap();
        let base = |name: &str| client.runtime.block_on(client.bases(&ImageRef::parse(name).unwrap())).unwrap();
        assert_eq!(base("registry.example:443/app"), vec!["https://registry.example:443"]);
        assert_eq!(base("busybox"), vec![format!("https://{DOCKER_HUB_API}")]);
        // Nothing listens on this loopback port: not HTTPS, so plain HTTP.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert_eq!(base(&format!("127.0.0.1:{port}/app")), vec![format!("http://127.0.0.1:{port}")]);
        let mirrored = RegistryClient::new(RegistryConfig { mirrors: vec!["http://127.0.0.1:1".into()], ..Default::default() }).unwrap();
        let bases = mirrored.runtime.block_on(mirrored.bases(&ImageRef::parse("busybox").unwrap())).unwrap();
        assert_eq!(bases, vec!["http://127.0.0.1:1".to_string(), format!("https://{DOCKER_HUB_API}")]);
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
        let client = RegistryClient::new(RegistryConfig::default()).unwrap();
        let image = ImageRef::parse(&format!("127.0.0.1:{port}/test/box:1")).unwrap();
        let err = client.fetch_manifest(&image, "1", None).unwrap_err().to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}/v2/test/box/manifests/1")) && err.contains("refused"), "{err}");
    }
}
