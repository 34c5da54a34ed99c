//! Blob downloads that continue where an earlier one stopped: `Range:
//! bytes=<from>-`, taken up when the registry answers `206` with the
//! matching `Content-Range`, and from zero when it answers `200` (a server
//! that ignores `Range` is allowed to). Whether the bytes are right is the
//! sink's business: it hashes the whole blob, the earlier part included.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_model::{AuthConfig, Digest, ImageRef};
use http_body_util::BodyExt;
use hyper::{header, StatusCode};

use super::{error_chain, error_detail, read_limited, Access, RegistryClient, RegistryError, IDLE_TIMEOUT};

/// How often a download waiting for bytes checks whether it was told to stop.
const STOP_POLL: Duration = Duration::from_millis(250);

/// Where a resumable download's bytes go.
pub trait RangeSink: Write {
    /// Drops what the sink holds: the server sends the blob from byte zero.
    fn start_over(&mut self) -> io::Result<()>;
}

/// Where the registry's answer started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobStart {
    /// At the offset asked for (`206 Partial Content`).
    Resumed,
    /// At byte zero: the sink was emptied first.
    FromZero,
}

impl RegistryClient {
    /// Streams blob `digest` of `image`'s repository into `sink` from byte
    /// `from` on (all of it when `from` is 0), chunk by chunk as it arrives.
    /// Returns where the registry started. Stops with `Cancelled` soon after
    /// `stop` is set, even while the registry sends nothing.
    pub fn fetch_blob_range(
        &self,
        image: &ImageRef,
        digest: &Digest,
        from: u64,
        credentials: Option<&AuthConfig>,
        sink: &mut dyn RangeSink,
        stop: &AtomicBool,
    ) -> Result<BlobStart, RegistryError> {
        let repository = image.repository();
        let what = format!("blob {digest} of {}", image.name);
        let sink_error = |source| RegistryError::Sink { what: what.clone(), source };
        let access = Access::pull(&repository, credentials);
        self.runtime.block_on(async {
            let url = format!("{}/v2/{repository}/blobs/{digest}", self.blob_base(image).await?);
            let range = [(header::RANGE, format!("bytes={from}-"))];
            let mut resp = self.send_authorized_with(&url, if from > 0 { &range } else { &[] }, &access).await?;
            let mut start = BlobStart::Resumed;
            if from > 0 && !(resp.status() == StatusCode::PARTIAL_CONTENT && content_range_start(&resp) == Some(from)) {
                if matches!(resp.status(), StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE) {
                    // A range other than the one asked for, or none the server can give: ask for all of it.
                    tracing::info!(%digest, status = %resp.status(), "the registry did not continue at byte {from}; fetching the blob whole");
                    resp = self.send_authorized_with(&url, &[], &access).await?;
                }
                start = BlobStart::FromZero;
            }
            match resp.status() {
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => {}
                StatusCode::NOT_FOUND => {
                    let detail = error_detail(&read_limited(resp, &url, 64 << 10).await.unwrap_or_default());
                    return Err(RegistryError::BlobUnknown { repository: repository.clone(), digest: digest.clone(), detail });
                }
                status => {
                    let detail = error_detail(&read_limited(resp, &url, 64 << 10).await.unwrap_or_default());
                    return Err(RegistryError::Status { what: format!("fetching {what}"), status, detail });
                }
            }
            if start == BlobStart::FromZero {
                sink.start_over().map_err(sink_error)?;
            }
            let mut body = resp.into_body();
            let mut idle = Duration::ZERO;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Err(RegistryError::Cancelled { what: what.clone() });
                }
                // Waiting in short ticks is how a stop is noticed while nothing arrives;
                // dropping a `frame()` future loses nothing.
                let Ok(frame) = tokio::time::timeout(STOP_POLL, body.frame()).await else {
                    idle += STOP_POLL;
                    if idle >= IDLE_TIMEOUT {
                        return Err(RegistryError::Stalled { what: what.clone() });
                    }
                    continue;
                };
                idle = Duration::ZERO;
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| RegistryError::Unreachable { url: url.clone(), message: error_chain(&e) })?;
                if let Some(data) = frame.data_ref() {
                    sink.write_all(data).map_err(sink_error)?;
                }
            }
            Ok(start)
        })
    }
}

impl RegistryError {
    /// Whether trying the same request again may succeed: the connection
    /// failed or stalled, or the registry had a passing server-side failure.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Stalled { .. } => true,
            RegistryError::Status { status, .. } => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
            _ => false,
        }
    }
}

/// The first byte of a `206`'s `Content-Range: bytes <start>-<end>/<total>`.
fn content_range_start<B>(resp: &hyper::Response<B>) -> Option<u64> {
    let value = resp.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (unit, range) = value.trim().split_once(' ')?;
    if unit != "bytes" {
        return None;
    }
    range.split_once('-')?.0.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(value: &str) -> hyper::Response<()> {
        hyper::Response::builder().status(206).header(header::CONTENT_RANGE, value).body(()).unwrap()
    }

    #[test]
    fn a_content_range_says_where_the_bytes_start() {
        assert_eq!(content_range_start(&with_range("bytes 1000-1999/2000")), Some(1000));
        assert_eq!(content_range_start(&with_range("bytes 0-9/*")), Some(0));
        assert_eq!(content_range_start(&with_range("items 0-9/10")), None);
        assert_eq!(content_range_start(&with_range("bytes */2000")), None);
        assert_eq!(content_range_start(&hyper::Response::new(())), None);
    }

    #[test]
    fn connection_failures_and_server_errors_are_retried_and_a_missing_blob_is_not() {
        let unreachable = RegistryError::Unreachable { url: "u".into(), message: "reset".into() };
        let busy = RegistryError::Status { what: "w".into(), status: StatusCode::SERVICE_UNAVAILABLE, detail: String::new() };
        let denied = RegistryError::Status { what: "w".into(), status: StatusCode::FORBIDDEN, detail: String::new() };
        let missing = RegistryError::BlobUnknown { repository: "r".into(), digest: Digest::of(b"x"), detail: String::new() };
        assert!(unreachable.is_transient() && busy.is_transient());
        assert!(!denied.is_transient() && !missing.is_transient());
    }
}
