//! A small token service for `auth: token` registries, written for the
//! tests: an HTTP server thread that enters the sandbox's network namespace
//! and answers `GET /token?service=…&scope=…` with a JWT signed (RS256, by
//! `openssl`) with a key whose self-signed certificate the registry trusts
//! (`rootcertbundle`); the certificate rides in the JWT's `x5c` header.
//!
//! Policy: `alice:secret` gets every action asked for; anyone else without
//! credentials gets `pull` on `public/*` only; wrong credentials get a 401.
//! A login (`offline_token=true`) gets a refresh token too, which the OAuth2
//! form `POST` (`grant_type=refresh_token`) takes instead of the password.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::Sandbox;

/// The issuer's port inside the sandbox (the registry has 5000).
pub const ISSUER_PORT: u16 = 5001;
pub const SERVICE: &str = "berth-test-registry";
pub const ISSUER: &str = "berth-test-issuer";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";
/// The refresh token (Docker's identity token) alice gets at login.
pub const REFRESH_TOKEN: &str = "refresh-alice";
/// The registry accepts tokens up to 60 s past their `exp` (distribution's
/// `Leeway`); the issuer takes it off, so a token really lasts `lifetime`.
const REGISTRY_LEEWAY_SECS: u64 = 60;

/// One token request as the issuer saw it.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The user of the request's basic credentials (None: anonymous).
    pub user: Option<String>,
    pub scopes: Vec<String>,
    pub granted: bool,
    /// Whether it was the OAuth2 `POST` with a refresh token.
    pub refresh: bool,
}

/// The running issuer; its thread ends with the test process.
pub struct TokenIssuer {
    pub cert: PathBuf,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenIssuer {
    /// Makes the signing key and certificate in the sandbox's files and
    /// starts serving on 127.0.0.1:ISSUER_PORT in its network namespace.
    /// Tokens last `lifetime_secs` at the registry while the answer's
    /// `expires_in` says `expires_in`: a longer `expires_in` makes clients
    /// keep a token the registry already refuses (the refresh-on-401 case).
    pub fn start(sb: &Sandbox, lifetime_secs: u64, expires_in: u64) -> TokenIssuer {
        let key = sb.file("issuer-key.pem");
        let cert = sb.file("issuer-cert.pem");
        let der = sb.file("issuer-cert.der");
        openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=berth-test-issuer", "-keyout"], &[&key], &["-out"], &cert);
        openssl(&["x509", "-outform", "DER", "-in"], &[&cert], &["-out"], &der);
        let cert_der = std::fs::read(&der).expect("reading the issuer's DER certificate");
        let requests: Arc<Mutex<Vec<TokenRequest>>> = Arc::default();
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", sb.holder_pid())).expect("opening the sandbox's netns");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let seen = requests.clone();
        std::thread::spawn(move || {
            // This thread alone moves into the sandbox's network namespace.
            let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns into the sandbox's netns: {}", std::io::Error::last_os_error());
            let listener = TcpListener::bind(("127.0.0.1", ISSUER_PORT)).expect("binding the token issuer");
            ready_tx.send(()).expect("signalling the issuer is up");
            for stream in listener.incoming().flatten() {
                serve(stream, &key, &cert_der, lifetime_secs, expires_in, &seen);
            }
        });
        ready_rx.recv().expect("the token issuer did not start");
        TokenIssuer { cert, requests }
    }

    /// The registry config's `auth:` section for this issuer.
    pub fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{ISSUER_PORT}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.cert.display()
        )
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn openssl(args: &[&str], input: &[&Path], more: &[&str], output: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .args(input)
        .args(more)
        .arg(output)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl (install it with scripts/ensure-deps)");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `%XX` and `+` decoded.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(stream: TcpStream, key: &Path, cert_der: &[u8], lifetime: u64, expires_in: u64, seen: &Mutex<Vec<TokenRequest>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut basic: Option<(String, String)> = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("authorization") {
                let encoded = value.trim().strip_prefix("Basic ").unwrap_or("");
                let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
                let text = String::from_utf8_lossy(&decoded).into_owned();
                basic = text.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()));
            }
        }
    }
    let refresh = request_line.starts_with("POST ");
    let mut form = vec![0u8; content_length];
    if refresh && std::io::Read::read_exact(&mut reader, &mut form).is_err() {
        return;
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = if refresh { String::from_utf8_lossy(&form).into_owned() } else { target.split_once('?').map(|(_, q)| q).unwrap_or("").to_string() };
    let param = |name: &str| query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| unescape(v));
    if refresh {
        // The OAuth2 form: a valid refresh token stands for alice's password.
        let valid = param("grant_type").as_deref() == Some("refresh_token") && param("refresh_token").as_deref() == Some(REFRESH_TOKEN);
        basic = valid.then(|| (USER.to_string(), PASSWORD.to_string())).or(Some((String::new(), String::new())));
    }
    let offline = param("offline_token").as_deref() == Some("true");
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .flat_map(|(_, v)| unescape(v).split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let user = basic.as_ref().map(|(u, _)| u.clone());
    let stream = reader.get_mut();
    if let Some((u, p)) = &basic {
        if u != USER || p != PASSWORD {
            seen.lock().unwrap_or_else(|e| e.into_inner()).push(TokenRequest { user, scopes, granted: false, refresh });
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        }
    }
    // Grant: alice everything asked; anonymous pull of public/* only.
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| basic.is_some() || (*a == "pull" && name.starts_with("public/")))
                .collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut counter = seen.lock().unwrap_or_else(|e| e.into_inner());
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)]});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": SERVICE,
        "exp": now + lifetime - REGISTRY_LEEWAY_SECS,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("token-{}", counter.len()),
        "access": access,
    });
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running openssl to sign a token");
    child.stdin.take().expect("openssl's stdin").write_all(signing_input.as_bytes()).expect("feeding openssl");
    let signed = child.wait_with_output().expect("openssl signing");
    assert!(signed.status.success(), "openssl could not sign the token");
    let token = format!("{signing_input}.{}", b64url(&signed.stdout));
    counter.push(TokenRequest { user, scopes, granted: true, refresh });
    drop(counter);
    let mut body = serde_json::json!({"expires_in": expires_in});
    // OAuth2 answers say access_token, Docker's token service token: the client takes either.
    body[if refresh { "access_token" } else { "token" }] = serde_json::json!(token);
    if offline && basic.is_some() {
        body["refresh_token"] = serde_json::json!(REFRESH_TOKEN);
    }
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
