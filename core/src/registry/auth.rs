//! Authentication to registries: answering a `401`'s `WWW-Authenticate`
//! challenge (`Bearer realm=…,service=…,scope=…` with a token from the
//! realm, or `Basic`), caching tokens, and `docker login`'s check.
//!
//! Credentials travel with each operation (`Access`), never in the client:
//! the client is shared by every pull, so the token cache is keyed by the
//! credentials' fingerprint too, and one user's token never serves another
//! user's request. Authorization goes only to the registry's own host, never
//! along a redirect to blob storage elsewhere.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_model::AuthConfig;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Response, StatusCode, Uri};
use sha2::{Digest as _, Sha256};

use super::{error_detail, read_limited, Outgoing, RegistryClient, RegistryError, CONNECT_TIMEOUT, IDLE_TIMEOUT};

/// A token lives at least this long when the token service says less (or
/// nothing): Docker's `minimumTokenLifetimeSeconds`.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The OAuth2 client ID berth's token requests name (Docker's CLI sends `docker`).
const OAUTH_CLIENT_ID: &str = "berth";
/// Token answers larger than this are refused.
const MAX_TOKEN_ANSWER_BYTES: usize = 1 << 20;

/// Who asks, and for what: one operation's credentials and the repository
/// scope its requests need.
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    /// The user's credentials; `None` is anonymous.
    pub credentials: Option<&'a AuthConfig>,
    /// The repository (`library/busybox`); `None` for the registry itself (`/v2/`, login).
    pub repository: Option<&'a str>,
    /// Whether pushing too (`pull,push`), not only pulling.
    pub push: bool,
}

impl<'a> Access<'a> {
    /// Pulling from `repository`.
    pub fn pull(repository: &'a str, credentials: Option<&'a AuthConfig>) -> Self {
        Access { credentials, repository: Some(repository), push: false }
    }

    /// Pushing to (and pulling from) `repository`.
    pub fn push(repository: &'a str, credentials: Option<&'a AuthConfig>) -> Self {
        Access { credentials, repository: Some(repository), push: true }
    }

    /// The token scope: `repository:team/app:pull[,push]`.
    fn scope(&self) -> Option<String> {
        let actions = if self.push { "pull,push" } else { "pull" };
        self.repository.map(|r| format!("repository:{r}:{actions}"))
    }

    /// A fingerprint of the credentials (zeros when anonymous), so cached
    /// tokens are found only by whoever got them.
    fn identity(&self) -> [u8; 32] {
        let Some(c) = self.credentials.filter(|c| !c.is_anonymous()) else { return [0; 32] };
        let (user, pass) = c.username_password().unwrap_or_default();
        let mut h = Sha256::new();
        for part in [&user, &pass, &c.identitytoken, &c.registrytoken] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }
}

/// Where a cached authorization is valid: registry host, scope, credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    authority: String,
    scope: Option<String>,
    identity: [u8; 32],
}

struct Cached {
    authorization: HeaderValue,
    expires: Option<Instant>,
}

/// Authorizations (bearer tokens, basic credentials) the client got, until they expire.
#[derive(Default)]
pub(super) struct AuthCache {
    entries: Mutex<HashMap<CacheKey, Cached>>,
}

impl AuthCache {
    fn get(&self, key: &CacheKey) -> Option<HeaderValue> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        entries.retain(|_, c| c.expires.is_none_or(|e| e > now));
        entries.get(key).map(|c| c.authorization.clone())
    }

    fn put(&self, key: CacheKey, authorization: HeaderValue, lifetime: Option<Duration>) {
        let expires = lifetime.map(|l| Instant::now() + l);
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Cached { authorization, expires });
    }

    fn forget(&self, key: &CacheKey) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// One challenge of a `WWW-Authenticate` header: its scheme (lowercase) and
/// parameters (names lowercase, quoted values unescaped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses a `WWW-Authenticate` value (RFC 7235): one or more challenges,
/// each a scheme then `name=value` or `name="quoted, value"` parameters.
/// What cannot be read ends the parse; the challenges read so far are kept.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let bytes = header.as_bytes();
    let mut pos = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b);
    let skip = |pos: &mut usize, also_commas: bool| {
        while *pos < bytes.len() && (bytes[*pos] == b' ' || bytes[*pos] == b'\t' || (also_commas && bytes[*pos] == b',')) {
            *pos += 1;
        }
    };
    let token = |pos: &mut usize| {
        let start = *pos;
        while *pos < bytes.len() && is_token(bytes[*pos]) {
            *pos += 1;
        }
        &header[start..*pos]
    };
    loop {
        skip(&mut pos, true);
        let scheme = token(&mut pos);
        if scheme.is_empty() {
            break;
        }
        let mut challenge = Challenge { scheme: scheme.to_ascii_lowercase(), params: HashMap::new() };
        loop {
            skip(&mut pos, true);
            let before = pos;
            let name = token(&mut pos);
            skip(&mut pos, false);
            if name.is_empty() || pos >= bytes.len() || bytes[pos] != b'=' {
                // Not a parameter: the next challenge's scheme.
                pos = before;
                break;
            }
            pos += 1;
            skip(&mut pos, false);
            let value = if bytes.get(pos) == Some(&b'"') {
                pos += 1;
                let mut value = String::new();
                let mut chars = header[pos..].char_indices();
                let mut closed = false;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            pos += i + 1;
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    pos = bytes.len();
                }
                value
            } else {
                token(&mut pos).to_string()
            };
            challenge.params.insert(name.to_ascii_lowercase(), value);
        }
        // Each round reads a non-empty scheme, so the parse always moves on.
        out.push(challenge);
    }
    out
}

/// A token service's answer (Docker's and OAuth2's field names).
#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: u64,
    /// Given at login when asked for (`offline_token=true`): Docker's identity token.
    #[serde(default)]
    refresh_token: String,
}

impl TokenAnswer {
    fn lifetime(&self) -> Duration {
        Duration::from_secs(self.expires_in).max(MIN_TOKEN_LIFETIME)
    }
}

/// `user:password` as a `Basic` authorization.
fn basic(user: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| RegistryError::Invalid("the username or password holds characters an HTTP header cannot".into()))
}

fn bearer(token: &str) -> Result<HeaderValue, RegistryError> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| RegistryError::Invalid("the registry's token service answered a token an HTTP header cannot hold".into()))
}

/// `host:port` of a URL, which authorizations are cached under.
fn authority_of(url: &str) -> Result<String, RegistryError> {
    let uri: Uri = url.parse().map_err(|e| RegistryError::Invalid(format!("invalid registry URL {url:?}: {e}")))?;
    Ok(uri.authority().map(|a| a.to_string()).unwrap_or_default())
}

/// Percent-encodes a query value.
fn query_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RegistryClient {
    /// GETs `url` as `access`: with the cached authorization for it if
    /// there is one; a `401` is answered (a token fetched, or basic
    /// credentials) and the request sent once more. The answer is returned
    /// whatever its status; a `401` that stays is the caller's to word.
    pub(super) async fn send_authorized(
        &self,
        url: &str,
        accept: Option<&str>,
        access: &Access<'_>,
    ) -> Result<Response<Incoming>, RegistryError> {
        let headers: Vec<(header::HeaderName, String)> = accept.map(|a| (header::ACCEPT, a.to_string())).into_iter().collect();
        self.send_authorized_with(url, &headers, access).await
    }

    /// `send_authorized` with any headers (a download's `Range`).
    pub(super) async fn send_authorized_with(
        &self,
        url: &str,
        headers: &[(header::HeaderName, String)],
        access: &Access<'_>,
    ) -> Result<Response<Incoming>, RegistryError> {
        let outgoing = |authorization: Option<&HeaderValue>| Outgoing { headers: headers.to_vec(), body: None, authorization: authorization.cloned() };
        let key = CacheKey { authority: authority_of(url)?, scope: access.scope(), identity: access.identity() };
        let cached = self.preset_authorization(access).or_else(|| self.auth_cache.get(&key));
        let resp = self.send(Method::GET, url, outgoing(cached.as_ref())).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // An expired or revoked token: forget it and ask for a new one.
        if cached.is_some() {
            self.auth_cache.forget(&key);
        }
        let challenges = challenges_of(&resp);
        let Some(fresh) = self.answer(url, &challenges, access, &key, false).await? else { return Ok(resp) };
        drop(resp);
        self.send(Method::GET, url, outgoing(Some(&fresh.authorization))).await
    }

    /// The authorization for `access` to the registry at `base_url`
    /// (`http://host:port`), got before any request of the operation is
    /// sent: what a request whose body cannot be sent twice (an upload)
    /// needs. Asks `/v2/` for the registry's challenge unless a cached
    /// authorization is still valid; `None` when the registry wants none.
    pub async fn authorize(&self, base_url: &str, access: &Access<'_>) -> Result<Option<HeaderValue>, RegistryError> {
        let url = format!("{base_url}/v2/");
        let key = CacheKey { authority: authority_of(&url)?, scope: access.scope(), identity: access.identity() };
        if let Some(a) = self.preset_authorization(access).or_else(|| self.auth_cache.get(&key)) {
            return Ok(Some(a));
        }
        let resp = self.send(Method::GET, &url, Outgoing::default()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        let challenges = challenges_of(&resp);
        drop(resp);
        Ok(self.answer(&url, &challenges, access, &key, false).await?.map(|a| a.authorization))
    }

    /// `docker login`: checks `credentials` against the registry `server`
    /// (a host, or a URL as `docker login` takes it) by asking its `/v2/`,
    /// following the token flow. Returns the identity token (OAuth2 refresh
    /// token) the token service handed out, which the client keeps instead
    /// of the password, as Docker does. Blocking.
    pub fn login(&self, server: &str, credentials: &AuthConfig) -> Result<Option<String>, RegistryError> {
        let host = berth_model::auth::auth_key_hostname(server);
        let host = if host == "index.docker.io" { berth_model::reference::DEFAULT_REGISTRY } else { host };
        let access = Access { credentials: Some(credentials), repository: None, push: false };
        self.runtime.block_on(async {
            let base = if host == berth_model::reference::DEFAULT_REGISTRY {
                format!("https://{}", super::DOCKER_HUB_API)
            } else {
                self.base_of(host).await?
            };
            let url = format!("{base}/v2/");
            let key = CacheKey { authority: authority_of(&url)?, scope: None, identity: access.identity() };
            let mut resp = self.send(Method::GET, &url, Outgoing::get(None, self.preset_authorization(&access).as_ref())).await?;
            let mut identity_token = None;
            if resp.status() == StatusCode::UNAUTHORIZED {
                let challenges = challenges_of(&resp);
                drop(resp);
                let Some(answered) = self.answer(&url, &challenges, &access, &key, true).await? else {
                    return Err(RegistryError::LoginFailed { url: url.clone(), status: StatusCode::UNAUTHORIZED });
                };
                identity_token = answered.refresh_token;
                resp = self.send(Method::GET, &url, Outgoing::get(None, Some(&answered.authorization))).await?;
            }
            match resp.status() {
                StatusCode::OK => Ok(identity_token),
                status => Err(RegistryError::LoginFailed { url: url.clone(), status }),
            }
        })
    }

    /// A bearer token the user gave as it is (`registrytoken`), which needs no challenge.
    fn preset_authorization(&self, access: &Access<'_>) -> Option<HeaderValue> {
        access.credentials.filter(|c| !c.registrytoken.is_empty()).and_then(|c| bearer(&c.registrytoken).ok())
    }

    /// Meets one of `challenges` (Bearer preferred, then Basic) for
    /// `access`, caching the authorization under `key`; `None` when no
    /// challenge is one berth can answer. `offline` asks the token service
    /// for a refresh token too (login).
    async fn answer(
        &self,
        url: &str,
        challenges: &[Challenge],
        access: &Access<'_>,
        key: &CacheKey,
        offline: bool,
    ) -> Result<Option<Answered>, RegistryError> {
        let credentials = access.credentials.and_then(AuthConfig::username_password);
        if let Some(challenge) = challenges.iter().find(|c| c.scheme == "bearer") {
            let answer = self.fetch_token(url, challenge, access, credentials.as_ref(), offline).await?;
            let authorization = bearer(&answer.token)?;
            self.auth_cache.put(key.clone(), authorization.clone(), Some(answer.lifetime()));
            let refresh_token = Some(answer.refresh_token).filter(|t| !t.is_empty());
            return Ok(Some(Answered { authorization, refresh_token }));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some((user, password)) = credentials else {
                return Err(RegistryError::NoBasicAuthCredentials { url: url.to_string() });
            };
            let authorization = basic(&user, &password)?;
            self.auth_cache.put(key.clone(), authorization.clone(), None);
            return Ok(Some(Answered { authorization, refresh_token: None }));
        }
        Ok(None)
    }

    /// Gets a token at the challenge's realm: with an identity token, the
    /// OAuth2 form `POST realm` (`grant_type=refresh_token`); otherwise
    /// `GET realm?service=…&scope=…`, with basic credentials when there are
    /// some (and `account=`, as Docker sends it), anonymously otherwise.
    async fn fetch_token(
        &self,
        url: &str,
        challenge: &Challenge,
        access: &Access<'_>,
        credentials: Option<&(String, String)>,
        offline: bool,
    ) -> Result<TokenAnswer, RegistryError> {
        let realm = challenge.params.get("realm").filter(|r| !r.is_empty()).ok_or_else(|| {
            RegistryError::Invalid(format!("Get \"{url}\": the registry's Bearer challenge names no realm to get a token from"))
        })?;
        let mut query: Vec<String> = Vec::new();
        if let Some(service) = challenge.params.get("service") {
            query.push(format!("service={}", query_value(service)));
        }
        let mut scopes: Vec<String> = challenge.params.get("scope").map(|s| s.split(' ').map(str::to_string).collect()).unwrap_or_default();
        if let Some(s) = access.scope().filter(|s| !scopes.contains(s)) {
            scopes.push(s);
        }
        query.extend(scopes.iter().filter(|s| !s.is_empty()).map(|s| format!("scope={}", query_value(s))));
        if let Some(refresh_token) = access.credentials.map(|c| &c.identitytoken).filter(|t| !t.is_empty()) {
            query.push(format!("grant_type=refresh_token&client_id={OAUTH_CLIENT_ID}&access_type=offline"));
            query.push(format!("refresh_token={}", query_value(refresh_token)));
            let (status, body) = self.post_form(realm, query.join("&")).await?;
            return token_answer(url, realm, status, &body);
        }
        if offline {
            query.push(format!("offline_token=true&client_id={OAUTH_CLIENT_ID}"));
        }
        let authorization = match credentials {
            Some((user, password)) => {
                query.push(format!("account={}", query_value(user)));
                Some(basic(user, password)?)
            }
            None => None,
        };
        let separator = if realm.contains('?') { '&' } else { '?' };
        let token_url = if query.is_empty() { realm.clone() } else { format!("{realm}{separator}{}", query.join("&")) };
        let resp = self.send(Method::GET, &token_url, Outgoing::get(Some("application/json"), authorization.as_ref())).await?;
        let status = resp.status();
        let body = read_limited(resp, &token_url, MAX_TOKEN_ANSWER_BYTES).await?;
        token_answer(url, realm, status, &body)
    }

    /// One form `POST` (the OAuth2 token request), through `send` like every
    /// request, so a token service on HTTPS is reached with the same TLS rules.
    async fn post_form(&self, url: &str, form: String) -> Result<(StatusCode, Vec<u8>), RegistryError> {
        let body = Full::new(Bytes::from(form)).map_err(|never| match never {}).boxed();
        let outgoing = Outgoing {
            headers: vec![(header::CONTENT_TYPE, "application/x-www-form-urlencoded".to_string())],
            body: Some(body),
            authorization: None,
        };
        let resp = tokio::time::timeout(IDLE_TIMEOUT + CONNECT_TIMEOUT, self.send(Method::POST, url, outgoing))
            .await
            .map_err(|_| RegistryError::Stalled { what: format!("POST {url}") })??;
        let status = resp.status();
        Ok((status, read_limited(resp, url, MAX_TOKEN_ANSWER_BYTES).await?))
    }
}

/// What a meeting of a challenge gave: the authorization, and at login a
/// refresh token (Docker's identity token) when the token service gave one.
struct Answered {
    authorization: HeaderValue,
    refresh_token: Option<String>,
}

/// Reads a token service's answer; the `url` named in errors is the
/// registry's, which is the request the user made (dockerd names it too).
fn token_answer(url: &str, realm: &str, status: StatusCode, body: &[u8]) -> Result<TokenAnswer, RegistryError> {
    if !status.is_success() {
        let detail = error_detail(body);
        let detail = if detail.is_empty() { status.to_string() } else { detail };
        return Err(RegistryError::TokenRefused { url: url.to_string(), detail });
    }
    let mut answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| {
        RegistryError::Invalid(format!("Get \"{url}\": the token service at {realm} answered what is not a token ({e})"))
    })?;
    if answer.token.is_empty() {
        answer.token = std::mem::take(&mut answer.access_token);
    }
    if answer.token.is_empty() {
        return Err(RegistryError::Invalid(format!("Get \"{url}\": the token service at {realm} answered no token")));
    }
    Ok(answer)
}

impl RegistryClient {
}

/// Every challenge of a `401`'s `WWW-Authenticate` headers.
fn challenges_of(resp: &Response<Incoming>) -> Vec<Challenge> {
    resp.headers().get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).flat_map(parse_challenges).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(String, String)> {
        let mut p: Vec<_> = c.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        p.sort();
        p
    }

    #[test]
    fn a_bearer_challenge_is_read_with_quoted_commas() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(
            params(&c[0]),
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
                ("service".into(), "registry.example".into()),
            ]
        );
    }

    #[test]
    fn several_challenges_tokens_and_escapes() {
        let c = parse_challenges(r#"Basic realm="Registry \"Realm\"", Bearer realm=http://x/t , service = reg,error="insufficient_scope""#);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "Registry \"Realm\"");
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].params["realm"], "http://x/t");
        assert_eq!(c[1].params["service"], "reg");
        assert_eq!(c[1].params["error"], "insufficient_scope");
        assert_eq!(parse_challenges("Basic").len(), 1);
        assert_eq!(parse_challenges("").len(), 0);
        // Broken input ends the parse without a panic.
        let c = parse_challenges(r#"Bearer realm="unterminated"#);
        assert_eq!(c[0].params["realm"], "unterminated");
        assert!(parse_challenges("\"\"\",,,===").len() <= 1);
    }

    #[test]
    fn cached_tokens_belong_to_their_credentials_and_scope() {
        let alice = AuthConfig { username: "alice".into(), password: "a".into(), ..Default::default() };
        let bob = AuthConfig { username: "bob".into(), password: "b".into(), ..Default::default() };
        let cache = AuthCache::default();
        let key = |access: Access<'_>| CacheKey { authority: "r:5000".into(), scope: access.scope(), identity: access.identity() };
        cache.put(key(Access::pull("team/app", Some(&alice))), HeaderValue::from_static("Bearer alice"), Some(MIN_TOKEN_LIFETIME));
        assert_eq!(cache.get(&key(Access::pull("team/app", Some(&alice)))), Some(HeaderValue::from_static("Bearer alice")));
        assert_eq!(cache.get(&key(Access::pull("team/app", Some(&bob)))), None, "another user's token is not shared");
        assert_eq!(cache.get(&key(Access::pull("team/app", None))), None, "nor given to anonymous pulls");
        assert_eq!(cache.get(&key(Access::push("team/app", Some(&alice)))), None, "a pull token does not push");
        cache.put(key(Access::pull("x", None)), HeaderValue::from_static("Bearer old"), Some(Duration::ZERO));
        assert_eq!(cache.get(&key(Access::pull("x", None))), None, "expired tokens are not used");
        assert_eq!(Access::push("team/app", None).scope().as_deref(), Some("repository:team/app:pull,push"));
    }

    /// A server answering each connection with the next of `answers` (then
    /// closing it); returns the requests it read, head only.
    fn serve(answers: Vec<String>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut answers = answers.into_iter();
            while let Some(answer) = answers.next() {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                // The client's HTTPS probe of a loopback registry (a TLS record starts with 0x16):
                // answered as a plain HTTP server would, with plain text, and not counted.
                if reader.fill_buf().map(|b| b.first() == Some(&0x16)).unwrap_or(false) {
                    let _ = reader.get_mut().write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                    answers = std::iter::once(answer).chain(answers).collect::<Vec<_>>().into_iter();
                    continue;
                }
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                seen.push(head);
                let _ = reader.get_mut().write_all(answer.as_bytes());
            }
            seen
        });
        (port, handle)
    }

    #[test]
    fn credentials_go_to_the_registry_and_not_along_a_redirect_elsewhere() {
        let (storage, storage_seen) = serve(vec!["HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nblob".into()]);
        let (registry, registry_seen) = serve(vec![
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{storage}/blob\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        ]);
        let client = RegistryClient::new(crate::registry::RegistryConfig::default()).unwrap();
        let image = berth_model::ImageRef::parse(&format!("127.0.0.1:{registry}/app")).unwrap();
        let digest: berth_model::Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let alice = AuthConfig { username: "alice".into(), password: "secret".into(), ..Default::default() };
        let mut sink = Vec::new();
        client.fetch_blob(&image, &digest, Some(&alice), &mut sink).unwrap();
        assert_eq!(sink, b"blob");
        let registry_seen = registry_seen.join().unwrap();
        assert!(!registry_seen[0].to_lowercase().contains("authorization:"), "sent before asked: {}", registry_seen[0]);
        assert!(registry_seen[1].contains("Basic YWxpY2U6c2VjcmV0"), "the challenge was not answered: {}", registry_seen[1]);
        let storage_seen = storage_seen.join().unwrap();
        assert!(!storage_seen[0].to_lowercase().contains("authorization:"), "credentials leaked to storage: {}", storage_seen[0]);

        // Without credentials, a Basic challenge is dockerd's error.
        let (registry, _) = serve(vec![
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        ]);
        let image = berth_model::ImageRef::parse(&format!("127.0.0.1:{registry}/app")).unwrap();
        let err = client.fetch_manifest(&image, "1", None).unwrap_err().to_string();
        assert_eq!(err, format!("Get \"http://127.0.0.1:{registry}/v2/app/manifests/1\": no basic auth credentials"));
    }
}
