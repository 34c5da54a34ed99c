//! Platforms (`os/arch[/variant]`), as `--platform` takes them and image
//! indexes list them, with Go's names for architectures (`amd64`, `arm64`).

use std::fmt;
use std::str::FromStr;

/// Why a string is not a platform.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {0:?}: expected os/arch[/variant], such as linux/amd64 or linux/arm/v7")]
pub struct PlatformError(pub String);

/// An image's or host's platform.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// The host's architecture in Go's (and so the image specs') spelling.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        a => a,
    }
}

impl Platform {
    /// The platform containers run on here: linux and the host's architecture.
    pub fn host() -> Platform {
        Platform { os: "linux".into(), architecture: host_arch().into(), variant: None }
    }

    /// Whether an image for `os`/`architecture`/`variant` runs on this
    /// platform. A platform naming no variant takes any; arm64's only
    /// variant, v8, is the same as none (as containerd's matcher has it).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let norm = |arch: &str, v: Option<&str>| -> Option<String> {
            match (arch, v) {
                (_, None) | (_, Some("")) => None,
                ("arm64", Some("v8")) => None,
                (_, Some(v)) => Some(v.to_string()),
            }
        };
        self.os == os
            && self.architecture == architecture
            && (self.variant.is_none() || norm(&self.architecture, self.variant.as_deref()) == norm(architecture, variant))
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => {
                Ok(Platform { os: os.to_ascii_lowercase(), architecture: arch.to_ascii_lowercase(), variant: None })
            }
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: Some(v.to_ascii_lowercase()),
            }),
            _ => Err(PlatformError(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(p.matches("linux", "arm64", None));
        assert!(!p.matches("linux", "amd64", None));
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(v7.matches("linux", "arm", Some("v7")));
        assert!(!v7.matches("linux", "arm", Some("v6")));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }
}
