//! The CLI's HTTP client of the daemon's API over its unix socket, and the
//! autostart that launches a daemon when nothing answers there.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::apitypes::system::ErrorResponse;
use crate::paths::Locations;
use crate::version::MAX_API_VERSION;

/// A request body: empty, bytes, or a stream (an image archive).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// An empty request body.
pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

/// An error the daemon answered; printed the way the docker CLI prints it.
#[derive(Debug)]
pub struct DaemonError {
    /// The daemon's `message`.
    pub message: String,
    /// The HTTP status it came with.
    pub status: u16,
}

/// The `message` of an error answer, or its text.
fn error_message(bytes: &[u8]) -> String {
    match serde_json::from_slice::<ErrorResponse>(bytes) {
        Ok(answer) => answer.message,
        Err(_) => String::from_utf8_lossy(bytes).trim().to_string(),
    }
}

/// A JSON request body.
fn json_body(v: &Value) -> Body {
    http_body_util::Full::new(Bytes::from(v.to_string())).map_err(|never| match never {}).boxed_unsync()
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for DaemonError {}

/// A client of one daemon.
#[derive(Clone)]
pub struct Client {
    loc: Locations,
}

/// How to start a daemon if none answers.
pub struct Autostart<'a> {
    /// Never start one (`--no-autostart`).
    pub disabled: bool,
    /// `--log-level` to pass on.
    pub log_level: &'a str,
}

impl Client {
    /// Connects to the daemon at `loc`, starting one first if none answers.
    pub async fn connect(loc: Locations, autostart: Autostart<'_>) -> Result<Client> {
        if UnixStream::connect(&loc.socket).await.is_ok() {
            return Ok(Client { loc });
        }
        if autostart.disabled {
            bail!(
                "Cannot connect to the berth daemon at {}: nothing answers there (and --no-autostart keeps berth from starting one). Is the berth daemon running?",
                loc.host_url()
            );
        }
        start_daemon(&loc, autostart.log_level).await?;
        Ok(Client { loc })
    }

    /// Opens a connection and sends one request; `upgrade` asks for Docker's hijacked stream.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
        upgrade: bool,
        extra_headers: &[(&str, String)],
    ) -> Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.loc.socket).await.with_context(|| {
            format!("Cannot connect to the berth daemon at {}. Is the berth daemon running?", self.loc.host_url())
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("cannot talk HTTP to the daemon")?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("connection to the daemon ended: {e}");
            }
        });
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/v{MAX_API_VERSION}{path}"))
            .header("host", "berth")
            .header("user-agent", concat!("berth-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if upgrade {
            req = req.header("connection", "Upgrade").header("upgrade", "tcp");
        }
        for (name, value) in extra_headers {
            req = req.header(*name, value);
        }
        let req = req.body(body).context("cannot build the request")?;
        sender.send_request(req).await.context("the daemon did not answer the request")
    }

    /// Sends one request to `/v1.50<path>` and returns the response, whatever its status.
    pub async fn send(&self, method: Method, path: &str, body: Body, content_type: Option<&str>) -> Result<Response<Incoming>> {
        self.request(method, path, body, content_type, false, &[]).await
    }

    /// `POST`s a hijacking request without a body (attach) and returns the
    /// upgraded connection: the container's stdio, both ways.
    pub async fn hijack(&self, path: &str) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        self.hijack_with(path, empty(), None).await
    }

    /// `hijack` with a typed JSON body (exec start).
    pub async fn hijack_json<B: Serialize>(&self, path: &str, body: &B) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let body = serde_json::to_value(body).context("encoding the request body")?;
        self.hijack_with(path, json_body(&body), Some("application/json")).await
    }

    async fn hijack_with(&self, path: &str, body: Body, content_type: Option<&str>) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let resp = self.request(Method::POST, path, body, content_type, true, &[]).await?;
        if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = hyper::upgrade::on(resp).await.context("the daemon did not complete the stream upgrade")?;
            return Ok(TokioIo::new(upgraded));
        }
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if status.is_success() {
            bail!("the daemon answered {status} without upgrading the connection to a stream");
        }
        Err(DaemonError { message: error_message(&bytes), status: status.as_u16() }.into())
    }

    /// Sends a request and turns an error status into a `DaemonError`.
    pub async fn call(&self, method: Method, path: &str, body: Body, content_type: Option<&str>) -> Result<Response<Incoming>> {
        self.call_with_headers(method, path, body, content_type, &[]).await
    }

    /// `call` with more request headers (`X-Registry-Auth`).
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
        headers: &[(&str, String)],
    ) -> Result<Response<Incoming>> {
        let resp = self.request(method, path, body, content_type, false, headers).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Err(DaemonError { message: error_message(&bytes), status: status.as_u16() }.into())
    }

    /// A request whose answer is JSON.
    pub async fn json(&self, method: Method, path: &str) -> Result<Value> {
        let resp = self.call(method, path, empty(), None).await?;
        let bytes = resp.into_body().collect().await.context("reading the daemon's answer")?.to_bytes();
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the daemon's answer is not JSON")
    }

    /// `GET` a JSON document.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path).await
    }

    /// A request whose answer is one of the API's typed bodies.
    pub async fn typed<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        let resp = self.call(method, path, empty(), None).await?;
        read_typed(resp).await
    }

    /// `GET` one of the API's typed bodies.
    pub async fn get_typed<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.typed(Method::GET, path).await
    }

    /// `POST`s a typed JSON body to a route whose answer says nothing
    /// beyond its status (connect, disconnect, ...).
    pub async fn post_ignoring_answer<B: Serialize>(&self, path: &str, body: &B) -> Result<()> {
        let body = serde_json::to_value(body).context("encoding the request body")?;
        self.call(Method::POST, path, json_body(&body), Some("application/json")).await?;
        Ok(())
    }

    /// `POST`s a typed JSON body and reads a typed answer.
    pub async fn post_typed<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let body = serde_json::to_value(body).context("encoding the request body")?;
        let resp = self.call(Method::POST, path, json_body(&body), Some("application/json")).await?;
        read_typed(resp).await
    }
}

/// Reads a typed answer.
async fn read_typed<T: DeserializeOwned>(resp: Response<Incoming>) -> Result<T> {
    let bytes = resp.into_body().collect().await.context("reading the daemon's answer")?.to_bytes();
    serde_json::from_slice(&bytes).context("the daemon's answer is not the JSON the API describes")
}

/// `inspect` of several objects: GETs `path(name)` for each, prints what
/// was found (with `format`), then the errors, as docker does.
pub async fn inspect_each(
    client: &Client,
    names: &[String],
    format: Option<&str>,
    path: impl Fn(&str) -> String,
) -> Result<std::process::ExitCode> {
    let format = format.map(super::format::Format::parse).transpose()?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match client.get(&path(name)).await {
            Ok(v) => found.push(v),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    super::format::print_inspected(found, &errors, format.as_ref())
}

/// A verb on several objects (`rm`, `stop`, `start`, ...): `method
/// path(name)` for each, printing each name done, then the errors, as
/// docker does; the status is 1 if any failed. With `ignore_missing`, an
/// object the daemon does not know counts as done and is not printed
/// (`network rm -f`).
pub async fn each(
    client: &Client,
    names: &[String],
    method: Method,
    ignore_missing: bool,
    path: impl Fn(&str) -> String,
) -> Result<std::process::ExitCode> {
    let mut errors = Vec::new();
    for name in names {
        match client.call(method.clone(), &path(name), empty(), None).await {
            Ok(_) => println!("{name}"),
            Err(e) if ignore_missing && e.downcast_ref::<DaemonError>().is_some_and(|d| d.status == 404) => {}
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!("{}", errors.join("\n"));
        Ok(std::process::ExitCode::FAILURE)
    }
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The last lines of the daemon's log, to explain why it did not start.
fn log_tail(path: &std::path::Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Starts `berth daemon` detached (its own session, output to `<run>/berth.log`)
/// and waits up to 10 s for its socket to answer.
async fn start_daemon(loc: &Locations, log_level: &str) -> Result<()> {
    std::fs::create_dir_all(&loc.run)
        .with_context(|| format!("cannot start a daemon: cannot create its run directory {}", loc.run.display()))?;
    let log_path = loc.run.join("berth.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot start a daemon: cannot open its log {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the berth executable to start a daemon")?;
    let mut cmd = Command::new(exe);
    cmd.arg("daemon").arg("--run").arg(&loc.run).arg("--log-level").arg(log_level);
    if let Some(root) = &loc.root {
        cmd.arg("--root").arg(root);
    }
    if loc.host_given {
        cmd.arg("--host").arg(loc.host_url());
    }
    cmd.env_remove("BERTH_HOST").stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our
    // session so it outlives this command and its terminal.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().context("cannot start the berth daemon")?;
    eprintln!("Started a berth daemon (pid {}); its log is {}", child.id(), log_path.display());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exited_at: Option<Instant> = None;
    loop {
        if UnixStream::connect(&loc.socket).await.is_ok() {
            return Ok(());
        }
        if exited_at.is_none() {
            if let Ok(Some(_)) = child.try_wait() {
                // It may have lost a race with another daemon starting: give that one a moment.
                exited_at = Some(Instant::now());
            }
        }
        let gave_up = exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2));
        if gave_up || Instant::now() > deadline {
            let mut tail = String::new();
            if let Ok(f) = std::fs::File::open(&log_path) {
                let mut r = BufReader::new(f);
                let _ = r.seek(SeekFrom::Start(log_start));
                for line in r.lines().map_while(Result::ok) {
                    tail.push_str(&line);
                    tail.push('\n');
                }
            }
            if tail.is_empty() {
                tail = log_tail(&log_path);
            }
            let why = if exited_at.is_some() { "exited" } else { "did not answer within 10 s" };
            return Err(anyhow!(
                "the berth daemon started for {} {why}; its log {} says:\n{}",
                loc.host_url(),
                log_path.display(),
                tail.trim_end()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("busybox:latest"), "busybox%3Alatest");
        assert_eq!(enc(r#"CMD ["sh"]"#), "CMD%20%5B%22sh%22%5D");
        assert_eq!(enc("a/b-c_d.e~"), "a%2Fb-c_d.e~");
    }
}
