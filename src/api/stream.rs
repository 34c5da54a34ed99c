//! Bridges between async HTTP bodies and the engine's blocking `Read`/`Write`,
//! so image archives pass through in chunks and are never held whole.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use berth_core::{Engine, EngineError};
use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{ApiError, AppState};
use crate::apitypes::system::JsonMessage;

/// A blocking reader over a request body. Must be created on the runtime.
pub fn body_reader(body: Body) -> impl Read + Send + 'static {
    let stream = body.into_data_stream().map_err(io::Error::other);
    SyncIoBridge::new(StreamReader::new(stream))
}

/// Size of the chunks a streamed response is cut into.
const CHUNK: usize = 256 * 1024;

/// A `Write` that hands chunks to the response body; it blocks when the client
/// reads slower than the engine writes, so memory stays bounded.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client closed the connection"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// Runs `produce` on a blocking thread and streams what it writes as the
/// response body. An error before the first chunk becomes a proper error
/// status; a later one aborts the body, so the client sees a truncated
/// transfer rather than a silently short archive.
pub async fn streamed<F>(state: &AppState, content_type: &'static str, produce: F) -> Result<Response, ApiError>
where
    F: FnOnce(&Engine, &mut dyn Write) -> Result<(), EngineError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(4);
    let engine = state.engine.clone();
    let err_tx = tx.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) };
        let result = produce(&engine, &mut w).and_then(|()| w.flush().map_err(|e| EngineError::io("sending the archive", e)));
        if let Err(e) = &result {
            // Seen by the body stream only if it has started; otherwise the caller reports it.
            let _ = err_tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        result
    });
    // Wait for the first chunk, or for the producer to finish without one.
    let first = rx.recv().await;
    let body = match first {
        Some(Ok(chunk)) => {
            tokio::spawn(async move {
                match task.await {
                    Ok(Err(e)) => tracing::warn!(error = %e, "streamed response failed after it started"),
                    Err(e) => tracing::error!(error = %e, "streaming task panicked"),
                    Ok(Ok(())) => {}
                }
            });
            let head = futures_util::stream::iter([Ok(chunk)]);
            Body::from_stream(head.chain(ReceiverStream::new(rx)))
        }
        // The producer failed before writing anything (its error is also in the
        // channel), or finished with no output: the task's result says which.
        Some(Err(_)) | None => match task.await {
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(ApiError::internal(format!("engine call failed: {e}"))),
            Ok(Ok(())) => Body::empty(),
        },
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

use futures_util::StreamExt as _;

/// Runs `produce` on a blocking thread and streams the JSON messages it emits,
/// one per line, as Docker's progress streams do. An error before the first
/// message becomes an error status; a later one is sent as Docker's
/// `{"errorDetail": ..., "error": ...}` line, which the docker CLI reports.
pub async fn json_lines<F>(state: &AppState, produce: F) -> Result<Response, ApiError>
where
    F: FnOnce(&Engine, &mut dyn FnMut(JsonMessage)) -> Result<(), EngineError> + Send + 'static,
{
    json_lines_until_gone(state, move |engine, emit, _| produce(engine, emit)).await
}

/// Sets its flag when dropped: carried by a response body, it says the
/// body is gone (sent whole, or the client closed the connection).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `json_lines` for work worth stopping when nobody waits for it (a pull):
/// `produce` also gets a flag set once the client has gone away.
pub async fn json_lines_until_gone<F>(state: &AppState, produce: F) -> Result<Response, ApiError>
where
    F: FnOnce(&Engine, &mut dyn FnMut(JsonMessage), &AtomicBool) -> Result<(), EngineError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(64);
    let engine = state.engine.clone();
    let gone = Arc::new(AtomicBool::new(false));
    let body_guard = SetOnDrop(gone.clone());
    let task = tokio::task::spawn_blocking(move || {
        let mut sent = false;
        let mut emit = |message: JsonMessage| {
            sent = true;
            let mut line = serde_json::to_vec(&message).unwrap_or_default();
            line.extend_from_slice(b"\r\n");
            // A closed channel means the client left; the engine finishes its work regardless.
            let _ = tx.blocking_send(Ok(Bytes::from(line)));
        };
        let result = produce(&engine, &mut emit, &gone);
        if let (Err(e), true) = (&result, sent) {
            let mut line = serde_json::to_vec(&JsonMessage::error(e.to_string())).unwrap_or_default();
            line.extend_from_slice(b"\r\n");
            let _ = tx.blocking_send(Ok(Bytes::from(line)));
        }
        (result, sent)
    });
    // Every emitted line (an error line included) is in the channel before the
    // task ends, so "no first line" means the task failed or finished silently.
    let body = match rx.recv().await {
        Some(line) => {
            tokio::spawn(async move {
                match task.await {
                    Ok((Err(e), _)) => tracing::warn!(error = %e, "streamed operation failed"),
                    Err(e) => tracing::error!(error = %e, "streamed operation panicked"),
                    Ok((Ok(()), _)) => {}
                }
            });
            Body::from_stream(futures_util::stream::iter([line]).chain(ReceiverStream::new(rx)).map(move |line| {
                let _carried = &body_guard;
                line
            }))
        }
        None => match task.await {
            Ok((Err(e), _)) => return Err(e.into()),
            Err(e) => return Err(ApiError::internal(format!("engine call failed: {e}"))),
            Ok((Ok(()), _)) => Body::empty(),
        },
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// Reads and discards the rest of a request body. Called when an operation
/// fails before it consumed its input: a client still uploading would
/// otherwise get a broken pipe instead of the error message.
pub fn drain(reader: &mut dyn Read) {
    let _ = io::copy(reader, &mut io::sink());
}
