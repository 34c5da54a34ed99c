//! Registry credentials as Docker passes them around: the `AuthConfig` of
//! `POST /auth`'s body, of the `X-Registry-Auth` header (base64url JSON) and
//! of a `config.json` entry. Here so the engine, the API and the CLI share
//! one type; it holds secrets, so it never prints them (`Debug` hides them).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The key under which Docker Hub's credentials are stored and sent
/// (`docker login` without a server), as the docker CLI names it.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Docker's `AuthConfig`: what a user authenticates to a registry with.
/// Field names are the API's (all lowercase).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `base64(username:password)`, config.json's form; used when `username` is empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    /// Deprecated by Docker, still sent by old clients; ignored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    /// An OAuth2 refresh token, exchanged at the registry's token service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    /// A bearer token sent to the registry as it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registrytoken: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs and panics.
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .field("has_password", &(!self.password.is_empty() || !self.auth.is_empty()))
            .field("has_identitytoken", &!self.identitytoken.is_empty())
            .field("has_registrytoken", &!self.registrytoken.is_empty())
            .finish()
    }
}

impl AuthConfig {
    /// Username and password, from the fields or else from `auth`; `None`
    /// when neither names a user.
    pub fn username_password(&self) -> Option<(String, String)> {
        if !self.username.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(self.auth.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        (!user.is_empty()).then(|| (user.to_string(), pass.to_string()))
    }

    /// Whether this carries nothing to authenticate with (an anonymous pull).
    pub fn is_anonymous(&self) -> bool {
        self.username_password().is_none() && self.identitytoken.is_empty() && self.registrytoken.is_empty()
    }

    /// Decodes an `X-Registry-Auth` header as dockerd does, leniently: a
    /// value that is not base64 of an `AuthConfig` JSON means no credentials
    /// (dockerd pulls anonymously then), never an error. Clients differ in
    /// padding and alphabet, so both base64 alphabets are accepted, padded or not.
    pub fn from_registry_auth_header(value: &str) -> Option<AuthConfig> {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let trimmed = value.trim().trim_end_matches('=');
        if trimmed.is_empty() {
            return None;
        }
        let json = URL_SAFE_NO_PAD.decode(trimmed).or_else(|_| STANDARD_NO_PAD.decode(trimmed)).ok()?;
        let config: AuthConfig = serde_json::from_slice(&json).ok()?;
        (!config.is_anonymous()).then_some(config)
    }

    /// The `X-Registry-Auth` header's value for these credentials
    /// (base64url of the JSON, as the docker CLI sends it).
    pub fn to_registry_auth_header(&self) -> String {
        // Serialising a struct of strings cannot fail; an empty object would mean "anonymous".
        let json = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }
}

/// The key credentials of `registry` (an image reference's registry host,
/// `docker.io` for Docker Hub) are stored and looked up under.
pub fn auth_key_of_registry(registry: &str) -> String {
    match registry {
        crate::reference::DEFAULT_REGISTRY | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_AUTH_KEY.to_string(),
        other => other.to_string(),
    }
}

/// A stored key or `docker login` argument as a bare host (`https://host:5000/v2/` → `host:5000`),
/// which is how the docker CLI matches them.
pub fn auth_key_hostname(key: &str) -> &str {
    let rest = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_decoded_leniently_as_dockerd_does() {
        let config = AuthConfig { username: "alice".into(), password: "s3cret?>".into(), ..Default::default() };
        let header = config.to_registry_auth_header();
        assert_eq!(AuthConfig::from_registry_auth_header(&header), Some(config.clone()));
        // docker-py pads, other clients do not; standard base64 is accepted too.
        assert_eq!(AuthConfig::from_registry_auth_header(header.trim_end_matches('=')), Some(config.clone()));
        let standard = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&config).unwrap());
        assert_eq!(AuthConfig::from_registry_auth_header(&standard), Some(config));
        assert_eq!(AuthConfig::from_registry_auth_header("!!!notbase64"), None);
        assert_eq!(AuthConfig::from_registry_auth_header(&base64::engine::general_purpose::URL_SAFE.encode(b"{}")), None);
        assert_eq!(AuthConfig::from_registry_auth_header(&base64::engine::general_purpose::URL_SAFE.encode(b"[1]")), None);
    }

    #[test]
    fn config_json_auth_holds_user_and_password() {
        let config: AuthConfig = serde_json::from_str(r#"{"auth":"YWxpY2U6c2VjOnJldA=="}"#).unwrap();
        assert_eq!(config.username_password(), Some(("alice".into(), "sec:ret".into())));
        assert!(AuthConfig::default().is_anonymous());
        assert!(!format!("{config:?}").contains("YWxp"), "Debug hides secrets");
    }

    #[test]
    fn keys_are_dockers() {
        assert_eq!(auth_key_of_registry("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(auth_key_of_registry("localhost:5000"), "localhost:5000");
        assert_eq!(auth_key_hostname("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(auth_key_hostname("http://localhost:5000/v2/"), "localhost:5000");
        assert_eq!(auth_key_hostname("localhost:5000"), "localhost:5000");
    }
}
