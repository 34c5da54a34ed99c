//! Docker's hijacked streams: `attach` and `exec start`. The client asks for
//! `Upgrade: tcp`; the answer is `101 UPGRADED`, and from then on the
//! connection carries raw bytes both ways — the client's stdin to the
//! container, its output back (8-byte frames unless there is a tty). Clients
//! that do not ask for the upgrade get a plain `200` with the output as body.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_core::container::{Attachment, ExecConfig, LogsOptions, StreamKind};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::images::Params;
use super::{ApiError, AppState};
use crate::apitypes::containers::{ExecCreateRequest, ExecInspect, ExecProcessConfig, ExecStartRequest, IdResponse};

/// Docker's 8-byte frame header: stream type, three zeros, big-endian length.
pub fn frame(kind: StreamKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `?h=&w=` of the resize endpoints.
pub fn size_params(params: &Params) -> Result<(u16, u16), ApiError> {
    let num = |k: &str| -> Result<u16, ApiError> {
        let v = params.get(k).unwrap_or("");
        v.parse().map_err(|_| ApiError::bad_request(format!("invalid resize parameter {k}={v:?}: expected a number")))
    };
    Ok((num("h")?, num("w")?))
}

fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Whether the client asked to upgrade the connection.
fn wants_upgrade(req: &Request) -> bool {
    req.headers().get(header::UPGRADE).is_some()
}

/// Runs on a blocking thread after the output ended and before the client's
/// connection is closed (an exec waits there until its exit code is recorded).
type BeforeClose = Box<dyn FnOnce() + Send>;

/// Copies both ways until the container's output ends. The client's EOF on
/// stdin half-closes the container side, so `echo hi | run -i cat` ends.
async fn pump<C>(client: C, attachment: Attachment, prefix: Vec<u8>, before_close: Option<BeforeClose>)
where
    C: AsyncRead + AsyncWrite + Send + 'static,
{
    let Attachment { stream, .. } = attachment;
    if let Err(e) = stream.set_nonblocking(true) {
        tracing::warn!(error = %e, "cannot make the attach stream non-blocking");
        return;
    }
    let stream = match tokio::net::UnixStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register the attach stream");
            return;
        }
    };
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = stream.into_split();
    if !prefix.is_empty() && cw.write_all(&prefix).await.is_err() {
        return;
    }
    let input = async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
    };
    let output = async move {
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
        let _ = cw.flush().await;
        if let Some(f) = before_close {
            let _ = tokio::task::spawn_blocking(f).await;
        }
        let _ = cw.shutdown().await;
    };
    tokio::pin!(input, output);
    let mut input_done = false;
    loop {
        tokio::select! {
            _ = &mut output => break,
            _ = &mut input, if !input_done => input_done = true,
        }
    }
}

/// Answers a hijack request with `attachment`: `101` and the upgraded
/// connection when asked for, else a `200` streaming the output.
fn hijacked(mut req: Request, attachment: Attachment, prefix: Vec<u8>, before_close: Option<BeforeClose>) -> Response {
    let ct = content_type(attachment.tty);
    if wants_upgrade(&req) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => pump(TokioIo::new(upgraded), attachment, prefix, before_close).await,
                Err(e) => tracing::warn!(error = %e, "the client did not complete the connection upgrade"),
            }
        });
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        return resp;
    }
    // No upgrade: output only, as the body.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let Attachment { stream, .. } = attachment;
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        if !prefix.is_empty() && tx.blocking_send(Ok(Bytes::from(prefix))).is_err() {
            return;
        }
        let mut stream = stream;
        // Nothing will be written: tell the container side its stdin is done.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

/// `POST /containers/{id}/attach?stream&stdin&stdout&stderr&logs`.
pub async fn attach(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery, req: Request) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let (stdin, stdout, stderr) = (params.flag("stdin"), params.flag("stdout"), params.flag("stderr"));
    let (logs, stream) = (params.flag("logs"), params.flag("stream"));
    if !logs && !stream {
        return Err(ApiError::bad_request("at least one of logs or stream must be set"));
    }
    let (attachment, prefix) = state
        .blocking(move |e| {
            let mut prefix = Vec::new();
            let d = e.containers().find(&id)?;
            if logs {
                // Past output first, in the stream's own format.
                let opts = LogsOptions { stdout, stderr, ..Default::default() };
                for entry in e.containers().logs(&id, &opts)? {
                    let entry = entry.map_err(|err| berth_core::EngineError::io("reading the container's log", err))?;
                    if d.record.config.tty {
                        prefix.extend_from_slice(&entry.bytes);
                    } else {
                        prefix.extend_from_slice(&frame(entry.stream, &entry.bytes));
                    }
                }
            }
            let attachment = if stream { Some(e.containers().attach(&id, stdin, stdout, stderr)?) } else { None };
            Ok((attachment, prefix))
        })
        .await?;
    match attachment {
        Some(a) => Ok(hijacked(req, a, prefix, None)),
        None => Ok(([(header::CONTENT_TYPE, "application/vnd.docker.multiplexed-stream")], prefix).into_response()),
    }
}

/// `POST /containers/{id}/exec`.
pub async fn exec_create(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    let request: ExecCreateRequest =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?;
    if request.cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let config = exec_config(request);
    let exec_id = state.blocking(move |e| e.containers().create_exec(&id, config)).await?;
    Ok((StatusCode::CREATED, Json(IdResponse { id: exec_id })).into_response())
}

fn exec_config(request: ExecCreateRequest) -> ExecConfig {
    ExecConfig {
        attach_stdin: request.attach_stdin,
        attach_stdout: request.attach_stdout,
        attach_stderr: request.attach_stderr,
        detach_keys: request.detach_keys,
        tty: request.tty,
        env: request.env,
        cmd: request.cmd,
        privileged: request.privileged,
        user: request.user,
        working_dir: request.working_dir,
    }
}

/// `POST /exec/{id}/start`.
pub async fn exec_start(State(state): State<AppState>, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    let start: ExecStartRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ExecStartRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?
    };
    let detach = start.detach;
    // Applied as soon as the exec runs, so its first output already has the client's size.
    let console_size = start.console_size.filter(|[h, w]| *h > 0 && *w > 0);
    let exec_id = id.clone();
    let result = state
        .blocking(move |e| {
            let attachment = e.containers().start_exec(&exec_id, detach)?;
            if let (Some(a), Some([h, w])) = (&attachment, console_size) {
                if a.tty {
                    // Best effort: the client resizes again on its own anyway.
                    if let Err(err) = e.containers().resize_exec(&exec_id, h, w) {
                        tracing::debug!(error = %err, "initial exec resize failed");
                    }
                }
            }
            Ok(attachment)
        })
        .await;
    let req = Request::from_parts(parts, Body::empty());
    match result {
        Ok(Some(a)) => {
            // The client reads the exit code right after the stream closes
            // (`docker exec` inspects once), so close only once it is recorded.
            let engine = state.engine.clone();
            let wait_exit: BeforeClose = Box::new(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while std::time::Instant::now() < deadline {
                    match engine.containers().inspect_exec(&id) {
                        Ok(d) if d.running => std::thread::sleep(std::time::Duration::from_millis(10)),
                        _ => break,
                    }
                }
            });
            Ok(hijacked(req, a, Vec::new(), Some(wait_exit)))
        }
        Ok(None) => Ok(StatusCode::OK.into_response()),
        // An exec that exists but could not run (command not found, not
        // executable): like Docker, the stream is still upgraded and carries
        // the message; the client then reads the exit code (126/127) from
        // `exec inspect`.
        Err(err) if !detach && err.status != StatusCode::NOT_FOUND && wants_upgrade(&req) => {
            let tty = state.blocking(move |e| e.containers().inspect_exec(&id)).await.map(|d| d.config.tty).unwrap_or(false);
            Ok(hijacked_message(req, tty, format!("{}\r\n", err.message)))
        }
        Err(err) => Err(err),
    }
}

/// Upgrades the connection, writes `message` on the stdout stream and closes it.
fn hijacked_message(mut req: Request, tty: bool, message: String) -> Response {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let bytes = if tty { message.into_bytes() } else { frame(StreamKind::Stdout, message.as_bytes()) };
        let _ = io.write_all(&bytes).await;
        let _ = io.shutdown().await;
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(tty)));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

/// `GET /exec/{id}/json`.
pub async fn exec_inspect(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ExecInspect>, ApiError> {
    let d = state.blocking(move |e| e.containers().inspect_exec(&id)).await?;
    let (entrypoint, arguments) = match d.config.cmd.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    Ok(Json(ExecInspect {
        can_remove: false,
        container_id: d.container_id,
        detach_keys: d.config.detach_keys,
        exit_code: d.exit_code,
        id: d.id,
        open_stderr: d.config.attach_stderr,
        open_stdin: d.config.attach_stdin,
        open_stdout: d.config.attach_stdout,
        pid: d.pid,
        process_config: ExecProcessConfig {
            arguments,
            entrypoint,
            privileged: d.config.privileged,
            tty: d.config.tty,
            user: d.config.user,
        },
        running: d.running,
    }))
}

/// `POST /exec/{id}/resize`.
pub async fn exec_resize(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (h, w) = size_params(&Params::parse(q.as_deref()))?;
    state.blocking(move |e| e.containers().resize_exec(&id, h, w)).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_stream_and_length() {
        assert_eq!(frame(StreamKind::Stderr, b"hi\n"), vec![2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
    }

    #[test]
    fn exec_bodies_of_the_docker_cli_are_read() {
        let create: ExecCreateRequest = serde_json::from_str(
            r#"{"User":"","Privileged":false,"Tty":true,"ConsoleSize":null,"AttachStdin":true,"AttachStderr":true,
                "AttachStdout":true,"Detach":false,"DetachKeys":"","Env":["A=1"],"WorkingDir":"/srv","Cmd":["sh"]}"#,
        )
        .unwrap();
        let config = exec_config(create);
        assert!(config.tty && config.attach_stdin && config.attach_stdout && config.attach_stderr);
        assert_eq!(config.cmd, ["sh"]);
        assert_eq!(config.env, Some(vec!["A=1".to_string()]));
        assert_eq!(config.working_dir, "/srv");
        let start: ExecStartRequest = serde_json::from_str(r#"{"Detach":false,"Tty":true,"ConsoleSize":[24,80]}"#).unwrap();
        assert_eq!(start, ExecStartRequest { detach: false, tty: true, console_size: Some([24, 80]) });
    }
}
