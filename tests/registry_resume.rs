//! Downloads that break: a proxy in front of the real registry (Debian's
//! `docker-registry`, in the sandbox) cuts, pauses, corrupts or ignores
//! `Range` on one large incompressible layer while counting the bytes it
//! serves; berth continues what it has with `Range` (within a pull, after a
//! failed pull, after SIGKILL of the daemon, after a cancelled pull) and
//! never keeps or lists what is incomplete or wrong. Then registries that
//! misbehave in ways a real one cannot: a small fake one in the sandbox.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::images::{self, sha256_digest, Entry, TestImage};
use common::netns::{in_netns, in_netns_of};
use common::registry::{push, skopeo, Registry, PORT};
use common::{poll_until, wait_child, Sandbox};

/// Where the proxy listens, in the sandbox's namespace.
const PROXY_PORT: u16 = 5001;
/// Where the fake registry listens.
const FAKE_PORT: u16 = 5002;
/// The large layer's file: random, so gzip cannot shrink it.
const BIG_FILE_BYTES: usize = 6 << 20;

/// What the proxy does to responses for the watched blob, by the blob's byte offsets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Policy {
    Pass,
    /// Closes the next response once the download reaches this offset; then `Pass`.
    CutOnceAt(u64),
    /// Closes every response at this offset, and closes new requests at once.
    DownFrom(u64),
    /// Sends up to this offset and then nothing, until the client leaves.
    PauseAt(u64),
    /// Drops the request's `Range` (the registry answers 200, whole).
    IgnoreRange,
    /// Flips the byte at this offset.
    CorruptAt(u64),
}

/// One request for the watched blob, as the proxy saw it.
#[derive(Clone, Debug, Default)]
struct Served {
    /// Which request (the proxy counts them), so a late update finds its own entry.
    id: usize,
    range: Option<String>,
    status: u16,
    /// Where the body started in the blob (the `Range` asked, when answered with 206).
    start: u64,
    /// Body bytes sent to berth.
    bytes: u64,
    /// The client closed the connection while the proxy held it (a pause).
    client_left: bool,
}

#[derive(Default)]
struct ProxyState {
    policy: Option<Policy>,
    requests: usize,
    served: Vec<Served>,
    /// The offset a paused response stopped at, once it did.
    paused_at: Option<u64>,
}

/// A proxy in the sandbox on `PROXY_PORT` in front of the registry; watches `blob`.
struct Proxy {
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    fn start(sb: &Sandbox, blob: &str) -> Proxy {
        let state = Arc::new(Mutex::new(ProxyState { policy: Some(Policy::Pass), ..Default::default() }));
        let listener = in_netns(sb, || TcpListener::bind(("127.0.0.1", PROXY_PORT)).expect("binding the proxy"));
        let holder = sb.holder_pid();
        let (watched, shared) = (format!("/blobs/{blob}"), state.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (watched, state) = (watched.clone(), shared.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(client, holder, &watched, &state);
                });
            }
        });
        Proxy { state }
    }

    fn set(&self, policy: Policy) {
        let mut state = self.state.lock().unwrap();
        state.policy = Some(policy);
        state.paused_at = None;
    }

    /// The watched blob's requests since the last call.
    fn take_served(&self) -> Vec<Served> {
        std::mem::take(&mut self.state.lock().unwrap().served)
    }

    fn paused_at(&self) -> Option<u64> {
        self.state.lock().unwrap().paused_at
    }

    fn client_left(&self) -> bool {
        self.state.lock().unwrap().served.iter().any(|s| s.client_left)
    }
}

impl ProxyState {
    /// Records a request for the watched blob; returns its id.
    fn record(&mut self, served: Served) -> usize {
        self.requests += 1;
        self.served.push(Served { id: self.requests, ..served });
        self.requests
    }

    /// The entry of request `id`, unless it was taken meanwhile.
    fn entry(&mut self, id: usize) -> Option<&mut Served> {
        self.served.iter_mut().find(|s| s.id == id)
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Reads up to the end of an HTTP head; returns the head and any bytes after it.
fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(end) = head_end(&buf) {
            return Ok((String::from_utf8_lossy(&buf[..end]).into_owned(), buf[end..].to_vec()));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Proxies one request (GETs and HEADs only, which is all a pull sends), with `Connection: close`.
fn proxy_one(mut client: TcpStream, holder: i32, watched: &str, state: &Mutex<ProxyState>) -> std::io::Result<()> {
    let (head, _) = read_head(&mut client)?;
    let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let watching = target.ends_with(watched);
    let policy = if watching { state.lock().unwrap().policy.unwrap_or(Policy::Pass) } else { Policy::Pass };
    let range = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("range")).map(|(_, v)| v.trim().to_string()));
    if let Policy::DownFrom(_) = policy {
        if watching && state.lock().unwrap().served.iter().map(|s| s.start + s.bytes).max().is_some() {
            state.lock().unwrap().record(Served { range, ..Default::default() });
            return client.shutdown(Shutdown::Both);
        }
    }
    let mut forwarded = String::new();
    for line in head.trim_end().lines() {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if name == "connection" || (name == "range" && policy == Policy::IgnoreRange) {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut upstream = in_netns_of(holder, || TcpStream::connect(("127.0.0.1", PORT)))?;
    upstream.write_all(forwarded.as_bytes())?;
    let (resp_head, mut pending) = read_head(&mut upstream)?;
    client.write_all(resp_head.as_bytes())?;
    let status: u16 = resp_head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if !watching || !target.contains("/blobs/") {
        client.write_all(&pending)?;
        std::io::copy(&mut upstream, &mut client)?;
        return Ok(());
    }
    let start = match (status, &range) {
        (206, Some(r)) => r.trim_start_matches("bytes=").split('-').next().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    };
    let id = state.lock().unwrap().record(Served { range, status, start, ..Default::default() });
    let stop_at = match policy {
        Policy::CutOnceAt(n) | Policy::DownFrom(n) | Policy::PauseAt(n) => Some(n),
        _ => None,
    };
    if let Policy::CutOnceAt(_) = policy {
        state.lock().unwrap().policy = Some(Policy::Pass);
    }
    let mut offset = start;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let mut data = if pending.is_empty() {
            let n = upstream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            chunk[..n].to_vec()
        } else {
            std::mem::take(&mut pending)
        };
        if let Some(stop) = stop_at {
            if offset + data.len() as u64 >= stop {
                data.truncate(stop.saturating_sub(offset) as usize);
            }
        }
        if let Policy::CorruptAt(at) = policy {
            if (offset..offset + data.len() as u64).contains(&at) {
                data[(at - offset) as usize] ^= 0xff;
            }
        }
        client.write_all(&data)?;
        offset += data.len() as u64;
        if let Some(entry) = state.lock().unwrap().entry(id) {
            entry.bytes += data.len() as u64;
        }
        if stop_at == Some(offset) {
            break;
        }
    }
    if let Policy::PauseAt(_) = policy {
        state.lock().unwrap().paused_at = Some(offset);
        // Hold the connection, sending nothing, until berth closes it.
        client.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut byte = [0u8; 1];
        loop {
            match client.read(&mut byte) {
                Ok(0) => break,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                _ => break,
            }
        }
        if let Some(entry) = state.lock().unwrap().entry(id) {
            entry.client_left = true;
        }
    }
    client.shutdown(Shutdown::Both)
}

/// Bytes no compressor can shrink (xorshift, seeded).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An image whose one layer is a large random file; pushed as `test/big:1`.
/// Returns the image, its layer blob's digest and size.
fn push_big(sb: &Sandbox) -> (TestImage, String, u64) {
    let layer = images::layer(&[Entry::dir("data", 0o755), Entry::file("data/random", 0o644, random_bytes(BIG_FILE_BYTES, 0x5eed))]);
    let img = TestImage::new(vec![layer], "big");
    push(sb, &img, "test/big:1");
    let raw = skopeo(sb, &format!("inspect --raw --tls-verify=false docker://localhost:{PORT}/test/big:1"));
    let manifest: serde_json::Value = serde_json::from_str(&raw).expect("the registry's manifest is JSON");
    let layer = &manifest["layers"][0];
    let (digest, size) = (layer["digest"].as_str().unwrap().to_string(), layer["size"].as_u64().unwrap());
    assert!(size > BIG_FILE_BYTES as u64, "the layer is incompressible ({size} bytes)");
    (img, digest, size)
}

fn partial_path(sb: &Sandbox, digest: &str) -> PathBuf {
    sb.root.join("ingest").join(&digest["sha256:".len()..])
}

fn partial_len(sb: &Sandbox, digest: &str) -> Option<u64> {
    fs::metadata(partial_path(sb, digest)).ok().map(|m| m.len())
}

fn blob_kept(sb: &Sandbox, digest: &str) -> bool {
    sb.root.join("blobs/sha256").join(&digest["sha256:".len()..]).exists()
}

/// The one request of a resumed download: it asked from `have` on, was answered 206, and carried only the rest.
fn assert_resumed(served: &[Served], have: u64, size: u64) {
    let [resumed] = served else { panic!("one request for the blob expected, the proxy saw {served:?}") };
    assert_eq!(resumed.range.as_deref(), Some(format!("bytes={have}-").as_str()), "{served:?}");
    assert_eq!(resumed.status, 206, "{served:?}");
    let missing = size - have;
    assert!(resumed.bytes as f64 <= missing as f64 * 1.05, "served {} bytes for {missing} missing: {served:?}", resumed.bytes);
}

fn listed(sb: &Sandbox) -> bool {
    sb.berth_ok(&["images"]).contains("test/big")
}

#[test]
fn a_dropped_download_is_retried_with_range_and_a_failed_pull_is_continued_by_the_next() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let (img, blob, size) = push_big(&sb);
    let proxy = Proxy::start(&sb, &blob);
    let name = format!("localhost:{PROXY_PORT}/test/big:1");

    // Within one pull: the connection drops halfway, the retry asks for the rest.
    proxy.set(Policy::CutOnceAt(size / 2));
    let out = sb.berth_ok(&["pull", &name]);
    assert!(out.contains("Retrying in 1 second") && out.contains("Pull complete"), "{out}");
    let served = proxy.take_served();
    assert_eq!(served.len(), 2, "{served:?}");
    assert_eq!((served[0].range.as_deref(), served[0].bytes), (None, size / 2), "{served:?}");
    assert_resumed(&served[1..], size / 2, size);
    assert_eq!(sb.inspect(&name)["Id"], img.id(), "the resumed layer is the pushed one");
    assert_eq!(partial_len(&sb, &blob), None, "a complete download leaves nothing in the ingest area");

    // A pull that fails for good keeps its bytes; the next one fetches only the rest.
    sb.berth_ok(&["rmi", &name]);
    assert!(!blob_kept(&sb, &blob), "rmi removes the layer's blob, so the next pull downloads it");
    proxy.set(Policy::DownFrom(size / 3));
    let out = sb.berth_fails(&["pull", &name]);
    assert!(out.stderr.contains(&blob) && out.stdout.contains("Retrying in 4 seconds"), "{}", out.describe());
    assert!(!listed(&sb), "a failed pull lists no image");
    assert!(!blob_kept(&sb, &blob));
    let have = partial_len(&sb, &blob).expect("the partial download is kept");
    assert_eq!(have, size / 3);
    proxy.take_served();
    proxy.set(Policy::Pass);
    sb.berth_ok(&["pull", &name]);
    assert_resumed(&proxy.take_served(), have, size);
    assert_eq!(sb.inspect(&name)["Id"], img.id());
    assert_eq!(partial_len(&sb, &blob), None);
}

#[test]
fn a_pull_killed_with_the_daemon_or_cancelled_by_its_client_continues_where_it_stopped() {
    let mut sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let (img, blob, size) = push_big(&sb);
    let proxy = Proxy::start(&sb, &blob);
    let name = format!("localhost:{PROXY_PORT}/test/big:1");

    // SIGKILL of the daemon a third of the way in.
    proxy.set(Policy::PauseAt(size / 3));
    let mut client = sb.berth_spawn(&["pull", &name], &sb.file("pull1.log"));
    poll_until(Duration::from_secs(30), "the download to reach a third", || {
        proxy.paused_at().is_some() && partial_len(&sb, &blob) == Some(size / 3)
    });
    sb.kill9();
    wait_child(&mut client, Duration::from_secs(10));
    poll_until(Duration::from_secs(10), "the proxy to see the killed daemon's connection close", || proxy.client_left());
    sb.restart();
    assert!(!listed(&sb), "a killed pull lists no image");
    assert_eq!(partial_len(&sb, &blob), Some(size / 3), "the restarted daemon keeps the partial download");

    // The next pull continues; its client goes away two thirds in: the daemon stops downloading and stays up.
    proxy.take_served();
    proxy.set(Policy::PauseAt(2 * size / 3));
    let mut client = sb.berth_spawn(&["pull", &name], &sb.file("pull2.log"));
    poll_until(Duration::from_secs(30), "the download to reach two thirds", || {
        proxy.paused_at().is_some() && partial_len(&sb, &blob) == Some(2 * size / 3)
    });
    client.kill().expect("killing the berth pull client");
    client.wait().expect("reaping the client");
    poll_until(Duration::from_secs(10), "the daemon to drop the download of a cancelled pull", || proxy.client_left());
    let served = proxy.take_served();
    assert_eq!(served[0].range.as_deref(), Some(format!("bytes={}-", size / 3).as_str()), "{served:?}");
    sb.berth_ok(&["version"]);
    assert!(!listed(&sb), "a cancelled pull lists no image");
    assert_eq!(partial_len(&sb, &blob), Some(2 * size / 3));

    proxy.set(Policy::Pass);
    let out = sb.berth_ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_resumed(&proxy.take_served(), 2 * size / 3, size);
    assert_eq!(sb.inspect(&name)["Id"], img.id());
}

#[test]
fn a_registry_ignoring_range_is_read_from_zero_and_corrupt_bytes_are_refused_and_not_kept() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let (img, blob, size) = push_big(&sb);
    let proxy = Proxy::start(&sb, &blob);
    let name = format!("localhost:{PROXY_PORT}/test/big:1");

    // Half a download left by a cancelled pull.
    proxy.set(Policy::PauseAt(size / 2));
    let mut client = sb.berth_spawn(&["pull", &name], &sb.file("pull.log"));
    poll_until(Duration::from_secs(30), "the download to reach half", || partial_len(&sb, &blob) == Some(size / 2));
    client.kill().expect("killing the berth pull client");
    client.wait().expect("reaping the client");
    poll_until(Duration::from_secs(10), "the daemon to drop the download", || proxy.client_left());
    proxy.take_served();

    proxy.set(Policy::IgnoreRange);
    sb.berth_ok(&["pull", &name]);
    let served = proxy.take_served();
    let [whole] = served.as_slice() else { panic!("{served:?}") };
    let asked = format!("bytes={}-", size / 2);
    assert_eq!((whole.range.as_deref(), whole.status, whole.bytes), (Some(asked.as_str()), 200, size), "asked for the rest, got all: {served:?}");
    assert_eq!(sb.inspect(&name)["Id"], img.id());
    sb.berth_ok(&["rmi", &name]);

    // One flipped byte: refused, named, and neither stored nor kept to resume.
    proxy.set(Policy::CorruptAt(size / 3));
    let out = sb.berth_fails(&["pull", &name]);
    assert!(out.stderr.contains("digest mismatch") && out.stderr.contains(&blob), "{}", out.describe());
    assert!(!blob_kept(&sb, &blob) && partial_len(&sb, &blob).is_none(), "wrong bytes are not kept");
    assert!(!listed(&sb));
    sb.berth_ok(&["version"]);
    proxy.take_served();
    proxy.set(Policy::Pass);
    sb.berth_ok(&["pull", &name]);
    let served = proxy.take_served();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!((served[0].range.as_deref(), served[0].bytes), (None, size), "after wrong bytes, from zero: {served:?}");
}

/// What the fake registry's never-ending blob saw.
#[derive(Default)]
struct Stalled {
    requested: bool,
    client_left: bool,
}

/// A registry that misbehaves, on `FAKE_PORT` in the sandbox: answers by path.
fn start_fake_registry(sb: &Sandbox) -> Arc<Mutex<Stalled>> {
    let diff_id = sha256_digest(b"never sent");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let config_digest = sha256_digest(&config);
    let huge_digest = sha256_digest(b"ten gigabytes that never come");
    let huge = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": huge_digest, "size": 10u64 << 30}],
    }))
    .unwrap();
    let stalled = Arc::new(Mutex::new(Stalled::default()));
    let listener = in_netns(sb, || TcpListener::bind(("127.0.0.1", FAKE_PORT)).expect("binding the fake registry"));
    let seen = stalled.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let (config, huge, config_digest, huge_digest, seen) =
                (config.clone(), huge.clone(), config_digest.clone(), huge_digest.clone(), seen.clone());
            std::thread::spawn(move || {
                let Ok((head, _)) = read_head(&mut conn) else { return };
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let answer = |conn: &mut TcpStream, status: &str, content_type: &str, body: &[u8]| {
                    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(body));
                };
                const V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
                match path.as_str() {
                    "/v2/bad/garbage/manifests/1" => answer(&mut conn, "200 OK", V2, b"{\"schemaVersion\": 2, \"layers\": [<html>"),
                    "/v2/bad/strange/manifests/1" => {
                        answer(&mut conn, "200 OK", "application/vnd.example.strange+json", br#"{"schemaVersion": 2, "strange": true}"#)
                    }
                    "/v2/bad/huge/manifests/1" => answer(&mut conn, "200 OK", V2, &huge),
                    p if p == format!("/v2/bad/huge/blobs/{config_digest}") => {
                        answer(&mut conn, "200 OK", "application/octet-stream", &config)
                    }
                    p if p == format!("/v2/bad/huge/blobs/{huge_digest}") => {
                        seen.lock().unwrap().requested = true;
                        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 10u64 << 30);
                        let _ = conn.write_all(head.as_bytes());
                        // Nothing more, ever: wait for the client to give up.
                        let mut byte = [0u8; 1];
                        while !matches!(conn.read(&mut byte), Ok(0) | Err(_)) {}
                        seen.lock().unwrap().client_left = true;
                    }
                    _ => answer(
                        &mut conn,
                        "404 Not Found",
                        "application/json",
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                    ),
                }
            });
        }
    });
    stalled
}

fn blobs(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(sb.root.join("blobs/sha256"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_misbehaving_registry_gives_a_specific_error_and_leaves_nothing_half_made() {
    let sb = Sandbox::start();
    let stalled = start_fake_registry(&sb);
    let fake = format!("localhost:{FAKE_PORT}");
    let (images_before, blobs_before) = (sb.image_ids(), blobs(&sb));

    let expectations = [
        ("localhost:5999/bad/nothing:1".to_string(), "connection refused"),
        (format!("{fake}/bad/missing:1"), "manifest for localhost:5002/bad/missing:1 not found: manifest unknown: manifest unknown"),
        (format!("{fake}/bad/garbage:1"), "invalid manifest"),
        (format!("{fake}/bad/strange:1"), "unsupported manifest media type \"application/vnd.example.strange+json\""),
    ];
    for (name, expected) in &expectations {
        let out = sb.berth_fails(&["pull", name]);
        assert!(out.stderr.to_lowercase().contains(&expected.to_lowercase()), "pull {name}: {}", out.describe());
    }

    // A layer that never comes: the client gives up (Ctrl-C), and the daemon stops downloading at once.
    let mut client = sb.berth_spawn(&["pull", &format!("{fake}/bad/huge:1")], &sb.file("huge.log"));
    poll_until(Duration::from_secs(20), "the pull to ask for the huge layer", || stalled.lock().unwrap().requested);
    let log = fs::read_to_string(sb.file("huge.log")).unwrap_or_default();
    assert!(log.contains("Pulling fs layer"), "{log}");
    client.kill().expect("killing the berth pull client");
    client.wait().expect("reaping the client");
    poll_until(Duration::from_secs(10), "the daemon to close the stalled download", || stalled.lock().unwrap().client_left);

    sb.berth_ok(&["version"]);
    assert_eq!(sb.image_ids(), images_before, "no image from a failed pull");
    // The pull's clean-up runs once its downloads have stopped.
    poll_until(Duration::from_secs(10), "the cancelled pull's config blob to be removed", || blobs(&sb) == blobs_before);
    let ingest: Vec<_> = fs::read_dir(sb.root.join("ingest")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(ingest.is_empty(), "a download that got no byte leaves no partial file: {ingest:?}");
}
