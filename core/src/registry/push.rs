//! What a push asks of a registry (the distribution spec's "push" section):
//! does it have a blob (HEAD), mount one from another repository, upload one
//! (POST a session, then one monolithic PUT streaming the file), and PUT the
//! manifest, last.
//!
//! Blob bytes are streamed from their file in the content store in chunks;
//! a layer is never in memory whole. Registry 2.8, Docker Hub, GHCR and
//! Harbor all take a monolithic PUT, so berth does not split uploads into
//! PATCH chunks.

use std::fs::File;
use std::io::{self, Read};

use berth_model::{AuthConfig, Digest, ImageRef};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{header, Method, Response, StatusCode};

use super::{error_detail, read_limited, Access, resolve_location, Outgoing, RegistryClient, RegistryError, DOCKER_HUB_API, IDLE_TIMEOUT};

/// Docker's media type of an image config, as dockerd pushes it.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's media type of a gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Bytes per chunk of an upload's body.
const UPLOAD_CHUNK: usize = 1 << 20;
/// Bytes of a registry's error answer worth reading.
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// How the registry answered the start of an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadStart {
    /// The blob was mounted from the other repository: nothing to send.
    Mounted,
    /// Send the bytes to this URL (the upload session's `Location`).
    Session(String),
}

impl RegistryClient {
    /// Where `image` is pushed to: its registry (Docker Hub's API host for
    /// `docker.io`; mirrors are for pulls only), over HTTPS unless insecure.
    async fn push_base(&self, image: &ImageRef) -> Result<String, RegistryError> {
        match image.registry() {
            berth_model::reference::DEFAULT_REGISTRY => Ok(format!("https://{DOCKER_HUB_API}")),
            registry => self.base_of(registry).await,
        }
    }

    /// `push_base` and the authorization to push to `image`'s repository as
    /// `auth`, got before the request: an upload's body cannot be sent twice.
    async fn push_access(&self, image: &ImageRef, auth: Option<&AuthConfig>) -> Result<(String, Option<HeaderValue>), RegistryError> {
        let base = self.push_base(image).await?;
        let repository = image.repository();
        let authorization = self.authorize(&base, &Access::push(&repository, auth)).await?;
        Ok((base, authorization))
    }

    /// `GET /v2/`: whether the registry answers at all, before anything is
    /// sent (dockerd does the same, and words an unreachable registry the same).
    pub fn ping(&self, image: &ImageRef) -> Result<(), RegistryError> {
        self.runtime.block_on(async {
            let url = format!("{}/v2/", self.push_base(image).await?);
            let resp = self.send(Method::GET, &url, Outgoing::default()).await?;
            match resp.status() {
                // 401: the registry is there and wants credentials, which the requests that follow carry.
                StatusCode::OK | StatusCode::UNAUTHORIZED => Ok(()),
                status => Err(status_error(resp, &url, status, format!("reaching the registry of {}", image.name)).await),
            }
        })
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: whether `image`'s repository has the blob.
    pub fn blob_exists(&self, image: &ImageRef, digest: &Digest, auth: Option<&AuthConfig>) -> Result<bool, RegistryError> {
        self.runtime.block_on(async {
            let (base, authorization) = self.push_access(image, auth).await?;
            let url = format!("{base}/v2/{}/blobs/{digest}", image.repository());
            let resp = self.send(Method::HEAD, &url, Outgoing { authorization, ..Outgoing::default() }).await?;
            match resp.status() {
                StatusCode::OK => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                status => Err(status_error(resp, &url, status, format!("checking for blob {digest} in {}", image.name)).await),
            }
        })
    }

    /// `POST /v2/<repo>/blobs/uploads/`, asking to mount `digest` from
    /// repository `from` (of the same registry) when given. A registry that
    /// cannot mount (the blob is not there, or not readable) opens a session.
    pub fn start_upload(
        &self,
        image: &ImageRef,
        mount: Option<(&Digest, &str)>,
        auth: Option<&AuthConfig>,
    ) -> Result<UploadStart, RegistryError> {
        let what = format!("starting an upload to {}", image.name);
        self.runtime.block_on(async {
            let (base, authorization) = self.push_access(image, auth).await?;
            let mut url = format!("{base}/v2/{}/blobs/uploads/", image.repository());
            if let Some((digest, from)) = mount {
                url.push_str(&format!("?mount={digest}&from={from}"));
            }
            let outgoing = Outgoing { headers: vec![(header::CONTENT_LENGTH, "0".to_string())], body: None, authorization };
            let resp = self.send(Method::POST, &url, outgoing).await?;
            match resp.status() {
                StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
                StatusCode::ACCEPTED => Ok(UploadStart::Session(session_location(&resp, &url, &what)?)),
                status => Err(status_error(resp, &url, status, what).await),
            }
        })
    }

    /// Sends `file` (`size` bytes hashing to `digest`) to an upload session
    /// in one PUT, streamed in chunks; `sent` hears the bytes sent so far.
    #[allow(clippy::too_many_arguments)] // one upload: where, what, and who sends it
    pub fn upload_blob(
        &self,
        image: &ImageRef,
        location: &str,
        digest: &Digest,
        size: u64,
        mut file: File,
        auth: Option<&AuthConfig>,
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), RegistryError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let what = format!("uploading blob {digest}");
        self.runtime.block_on(async {
            let (_, authorization) = self.push_access(image, auth).await?;
            let (chunks, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(4);
            let frames = futures_util::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|f| (f, r)) });
            let outgoing = Outgoing {
                headers: vec![
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (header::CONTENT_LENGTH, size.to_string()),
                ],
                body: Some(BodyExt::boxed(StreamBody::new(frames))),
                authorization,
            };
            let request = self.send(Method::PUT, &url, outgoing);
            tokio::pin!(request);
            // The feeder owns the channel's sending end: when it is done the body ends.
            // This thread reads the file (a blocking read here stalls only the
            // caller's own thread, which `block_on` runs on); the connection
            // takes chunks from the channel on the runtime's workers.
            let what_fed = what.clone();
            let feed = async move {
                let what = what_fed;
                let mut total = 0u64;
                loop {
                    let mut buf = vec![0u8; UPLOAD_CHUNK];
                    let n = match file.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(RegistryError::Sink { what: format!("{what}: reading it"), source: e }),
                    };
                    if n == 0 {
                        return Ok(());
                    }
                    buf.truncate(n);
                    // The registry stopped reading: give up after the idle time, as for downloads.
                    match tokio::time::timeout(IDLE_TIMEOUT, chunks.send(Ok(Frame::data(Bytes::from(buf))))).await {
                        Ok(Ok(())) => {}
                        // The connection ended early; the request's answer says why.
                        Ok(Err(_)) => return Ok(()),
                        Err(_) => return Err(RegistryError::Stalled { what: what.clone() }),
                    }
                    total += n as u64;
                    sent(total);
                }
            };
            let resp = tokio::select! {
                resp = &mut request => resp?,
                fed = feed => {
                    fed?;
                    tokio::time::timeout(IDLE_TIMEOUT, request)
                        .await
                        .map_err(|_| RegistryError::Stalled { what: what.clone() })??
                }
            };
            match resp.status() {
                StatusCode::CREATED => Ok(()),
                status => Err(status_error(resp, &url, status, what).await),
            }
        })
    }

    /// `PUT /v2/<repo>/manifests/<reference>`: `bytes` as `media_type`.
    /// Returns the manifest's digest, checked against the registry's.
    pub fn put_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        auth: Option<&AuthConfig>,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        let what = format!("pushing the manifest of {}:{reference}", image.name);
        self.runtime.block_on(async {
            let (base, authorization) = self.push_access(image, auth).await?;
            let url = format!("{base}/v2/{}/manifests/{reference}", image.repository());
            let body = http_body_util::Full::new(Bytes::copy_from_slice(bytes)).map_err(|never| match never {});
            let outgoing = Outgoing {
                headers: vec![
                    (header::CONTENT_TYPE, media_type.to_string()),
                    (header::CONTENT_LENGTH, bytes.len().to_string()),
                ],
                body: Some(BodyExt::boxed(body)),
                authorization,
            };
            let resp = tokio::time::timeout(IDLE_TIMEOUT, self.send(Method::PUT, &url, outgoing))
                .await
                .map_err(|_| RegistryError::Stalled { what: what.clone() })??;
            match resp.status() {
                StatusCode::CREATED | StatusCode::OK => {}
                status => return Err(status_error(resp, &url, status, what).await),
            }
            let answered = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok());
            match answered.map(str::parse::<Digest>) {
                Some(Ok(theirs)) if theirs != digest => {
                    Err(RegistryError::DigestMismatch { what: format!("{what}: the registry's digest"), expected: digest, actual: theirs })
                }
                _ => Ok(digest),
            }
        })
    }
}

/// An upload session's URL: the answer's `Location`, absolute.
fn session_location(resp: &Response<Incoming>, url: &str, what: &str) -> Result<String, RegistryError> {
    let location = resp.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).ok_or_else(|| {
        RegistryError::Invalid(format!("{what}: the registry opened an upload session without a Location"))
    })?;
    let uri = url.parse().map_err(|e| RegistryError::Invalid(format!("invalid registry URL {url:?}: {e}")))?;
    Ok(resolve_location(&uri, location))
}

/// An unexpected answer as an error, with the registry's own words.
async fn status_error(resp: Response<Incoming>, url: &str, status: StatusCode, what: String) -> RegistryError {
    let detail = error_detail(&read_limited(resp, url, ERROR_BODY_LIMIT).await.unwrap_or_default());
    RegistryError::Status { what, status, detail }
}
