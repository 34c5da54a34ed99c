//! How the daemon reaches registries: which may use plain HTTP, where each
//! one's certificates are, Docker Hub's mirrors, and how many transfers run
//! at once. The daemon fills it from its flags and `daemon.json`.

use std::net::IpAddr;
use std::path::PathBuf;

use berth_model::Subnet;

/// Blobs fetched at once, as dockerd's `max-concurrent-downloads` default.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 3;
/// Blobs pushed at once, as dockerd's `max-concurrent-uploads` default.
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 5;
/// Tries of one blob download, as dockerd's `max-download-attempts` default.
pub const DEFAULT_MAX_DOWNLOAD_ATTEMPTS: usize = 5;
/// Where per-registry certificates live unless the config file is elsewhere.
pub const DEFAULT_CERTS_DIR: &str = "/etc/berth/certs.d";

/// The registry settings of the daemon.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Registries that may be reached over plain HTTP, or over HTTPS without
    /// verifying the certificate (`--insecure-registry`). Loopback registries
    /// always may, as with Docker.
    pub insecure: Vec<InsecureRegistry>,
    /// Mirrors of Docker Hub (`--registry-mirror`), tried in order before it:
    /// base URLs such as `https://mirror.example` or `http://127.0.0.1:5000`.
    pub mirrors: Vec<String>,
    /// `certs.d`: `<dir>/<host[:port]>/` holds a registry's CAs (`*.crt`) and
    /// client certificate pairs (`x.cert` + `x.key`), as Docker reads them.
    pub certs_dir: PathBuf,
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
    pub max_download_attempts: usize,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            max_concurrent_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
            max_concurrent_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
            max_download_attempts: DEFAULT_MAX_DOWNLOAD_ATTEMPTS,
        }
    }
}

/// One `--insecure-registry` entry: a `host[:port]` or an IPv4 CIDR whose
/// addresses (given as the registry's host) are all insecure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsecureRegistry {
    Host(String),
    Cidr(Subnet),
}

impl std::str::FromStr for InsecureRegistry {
    type Err = String;

    fn from_str(s: &str) -> Result<InsecureRegistry, String> {
        let s = s.trim();
        if s.contains("://") {
            return Err(format!("insecure registry {s} should not contain '://'"));
        }
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(format!("insecure registry {s:?} is not a host[:port] or CIDR"));
        }
        if s.contains('/') {
            return Subnet::parse(s)
                .map(|net| InsecureRegistry::Cidr(net.masked()))
                .ok_or_else(|| format!("insecure registry {s} is not a valid IPv4 CIDR (such as 10.0.0.0/8)"));
        }
        Ok(InsecureRegistry::Host(s.to_ascii_lowercase()))
    }
}

impl RegistryConfig {
    /// Whether `registry` (`host[:port]`) may be reached over plain HTTP and
    /// unverified HTTPS: loopback always, others when listed.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        let ip = host.parse::<IpAddr>().ok();
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        let registry = registry.to_ascii_lowercase();
        self.insecure.iter().any(|entry| match entry {
            InsecureRegistry::Host(h) => *h == registry || *h == host,
            InsecureRegistry::Cidr(net) => matches!(ip, Some(IpAddr::V4(v4)) if net.contains(v4)),
        })
    }
}

/// Checks a mirror's URL as dockerd does: http(s), a host, nothing after the path.
pub fn parse_mirror(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| format!("invalid mirror: unsupported scheme in {url:?}: use http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("invalid mirror: no host in {url:?}"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("invalid mirror: query or fragment not allowed in {url:?}"));
    }
    Ok(trimmed.to_string())
}

/// The host of `host[:port]` (brackets of an IPv6 address removed).
pub(crate) fn host_of(registry: &str) -> &str {
    match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => registry.rsplit_once(':').map(|(h, _)| h).unwrap_or(registry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_are_insecure() {
        let mut config = RegistryConfig::default();
        assert!(config.is_insecure("localhost:5000") && config.is_insecure("127.0.0.1:5000") && config.is_insecure("[::1]:5000"));
        assert!(!config.is_insecure("192.0.2.1:5000"));
        config.insecure = vec!["192.0.2.1:5000".parse().unwrap(), "10.1.0.0/16".parse().unwrap(), "reg.example".parse().unwrap()];
        assert!(config.is_insecure("192.0.2.1:5000") && !config.is_insecure("192.0.2.1:5001"));
        assert!(config.is_insecure("10.1.2.3:443") && !config.is_insecure("10.2.0.1"));
        assert!(config.is_insecure("reg.example:5000") && config.is_insecure("REG.example"));
        assert!("http://x".parse::<InsecureRegistry>().unwrap_err().contains("'://'"));
    }

    #[test]
    fn mirrors_are_http_urls() {
        assert_eq!(parse_mirror("https://mirror.example/").unwrap(), "https://mirror.example");
        assert!(parse_mirror("mirror.example").unwrap_err().contains("unsupported scheme"));
        assert!(parse_mirror("https://").is_err());
    }
}
