//! What this build of berth is, as `version` and `/version` report it.

/// berth's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit the binary was built from.
pub const GIT_COMMIT: &str = env!("BERTH_GIT_COMMIT");
/// The compiler that built it (Docker reports its Go version here).
pub const RUSTC_VERSION: &str = env!("BERTH_RUSTC_VERSION");
/// When it was built (RFC 3339).
pub const BUILD_TIME: &str = env!("BERTH_BUILD_TIME");
/// Newest Docker Engine API version served (what the docker 28.2 CLI speaks).
pub const MAX_API_VERSION: &str = "1.50";
/// Oldest Docker Engine API version served.
pub const MIN_API_VERSION: &str = "1.24";

/// The architecture in Go's naming (`amd64`, `arm64`), as Docker reports it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

/// An API version as (major, minor), for comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// Parses `1.43`; a bare `1` is `1.0`.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (major, minor) = match s.split_once('.') {
            Some((a, b)) => (a, b),
            None => (s, "0"),
        };
        if major.is_empty() || minor.is_empty() {
            return None;
        }
        Some(ApiVersion(major.parse().ok()?, minor.parse().ok()?))
    }

    /// The newest version served.
    pub fn max() -> ApiVersion {
        ApiVersion::parse(MAX_API_VERSION).unwrap_or(ApiVersion(1, 50))
    }

    /// The oldest version served.
    pub fn min() -> ApiVersion {
        ApiVersion::parse(MIN_API_VERSION).unwrap_or(ApiVersion(1, 24))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_numerically_not_as_strings() {
        assert!(ApiVersion::parse("1.9").unwrap() < ApiVersion::parse("1.24").unwrap());
        assert!(ApiVersion::parse("1.50").unwrap() > ApiVersion::parse("1.5").unwrap());
        assert_eq!(ApiVersion::parse("1"), Some(ApiVersion(1, 0)));
        assert_eq!(ApiVersion::parse("1."), None);
        assert_eq!(ApiVersion::parse("x.2"), None);
        assert_eq!(ApiVersion::max().to_string(), "1.50");
    }
}
