//! Image references (`[registry/]path[:tag][@digest]`), parsed and normalised
//! the way the docker CLI shows them: `docker.io/library/busybox` is `busybox`.

use std::fmt;
use std::str::FromStr;

use super::digest::Digest;

/// Why a string is not a valid image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: {0:?} is empty")]
    Empty(String),
    #[error("invalid reference format: repository name {0:?} must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format: {0:?} (repository names are lowercase letters, digits and separators '.', '_', '__', '-' between path components joined by '/')")]
    BadName(String),
    #[error("invalid reference format: tag {0:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")]
    BadTag(String),
    #[error("invalid reference format: {0}")]
    BadDigest(#[from] super::digest::DigestError),
}

/// The default tag given to a reference that names none.
pub const DEFAULT_TAG: &str = "latest";

/// The registry a name without a registry host is on (Docker Hub).
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed image reference in its familiar (docker CLI) form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Familiar repository name: `busybox`, `myorg/app`, `localhost:5000/app`.
    pub name: String,
    /// Tag, if the reference named one.
    pub tag: Option<String>,
    /// Digest, if the reference named one.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// The reference with `latest` filled in when it names neither tag nor digest.
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `name:tag`, the key under which tags are stored (None without a tag).
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{}", self.name, t))
    }

    /// The registry the image is on, as Docker names it: `docker.io` for
    /// familiar names (`busybox`, `myorg/app`), otherwise the host given
    /// (`localhost:5000`, `registry.example:443`).
    pub fn registry(&self) -> &str {
        self.split_registry().0
    }

    /// The repository's path on its registry: `library/busybox` for
    /// `busybox`, `team/app` for `localhost:5000/team/app`.
    pub fn repository(&self) -> String {
        match self.split_registry() {
            (DEFAULT_REGISTRY, path) if !path.contains('/') => format!("library/{path}"),
            (_, path) => path.to_string(),
        }
    }

    /// What the registry is asked for: the digest if there is one, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The name with its registry and repository spelled out, as the docker
    /// CLI prints it after a pull: `docker.io/library/busybox:latest`.
    pub fn full_name(&self) -> String {
        let mut out = format!("{}/{}", self.registry(), self.repository());
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(&d.to_string());
        }
        out
    }

    /// `name@digest`, Docker's `RepoDigests` entry.
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name)
    }

    /// (registry, path on it). The familiar name keeps a registry host only
    /// when it is not Docker Hub's, so its first component is one exactly
    /// when it looks like a host (see `looks_like_registry`).
    fn split_registry(&self) -> (&str, &str) {
        match self.name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => (first, rest),
            _ => (DEFAULT_REGISTRY, &self.name),
        }
    }

    /// Whether a string looks like a reference rather than an ID prefix
    /// is decided by the caller; this parses only.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        s.parse()
    }
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok || i == start {
            return false;
        }
    }
    true
}

fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty(s.to_string()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::BadTag(t.to_string()));
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty(s.to_string()));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = if parts.len() > 1 && looks_like_registry(parts[0]) { Some(parts.remove(0)) } else { None };
        for p in &parts {
            if !valid_path_component(p) {
                if p.chars().any(|c| c.is_ascii_uppercase()) {
                    return Err(ReferenceError::Uppercase(name.to_string()));
                }
                return Err(ReferenceError::BadName(s.to_string()));
            }
        }
        let familiar = match registry {
            Some("docker.io") | Some("index.docker.io") | Some("registry-1.docker.io") => {
                if parts.len() == 2 && parts[0] == "library" {
                    parts[1].to_string()
                } else {
                    parts.join("/")
                }
            }
            Some(r) => format!("{}/{}", r, parts.join("/")),
            None => parts.join("/"),
        };
        Ok(ImageRef { name: familiar, tag: tag.map(str::to_string), digest })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_are_normalised() {
        let r: ImageRef = "docker.io/library/busybox:1.36".parse().unwrap();
        assert_eq!(r.name, "busybox");
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        let r: ImageRef = "localhost:5000/team/app".parse().unwrap();
        assert_eq!(r.name, "localhost:5000/team/app");
        assert_eq!(r.tag, None);
        assert_eq!(r.with_default_tag().tagged().unwrap(), "localhost:5000/team/app:latest");
    }

    #[test]
    fn registry_and_repository_follow_dockers_normalisation() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let table: Vec<(String, &str, &str, &str, String)> = vec![
            ("busybox".into(), "busybox", "docker.io", "library/busybox", "latest".into()),
            ("busybox:1.36".into(), "busybox", "docker.io", "library/busybox", "1.36".into()),
            ("docker.io/library/busybox".into(), "busybox", "docker.io", "library/busybox", "latest".into()),
            ("index.docker.io/myorg/app:2".into(), "myorg/app", "docker.io", "myorg/app", "2".into()),
            ("myorg/app".into(), "myorg/app", "docker.io", "myorg/app", "latest".into()),
            ("localhost:5000/app:1".into(), "localhost:5000/app", "localhost:5000", "app", "1".into()),
            ("localhost/app".into(), "localhost/app", "localhost", "app", "latest".into()),
            ("127.0.0.1:5000/test/box".into(), "127.0.0.1:5000/test/box", "127.0.0.1:5000", "test/box", "latest".into()),
            (
                format!("host.example:443/team/app@{digest}"),
                "host.example:443/team/app",
                "host.example:443",
                "team/app",
                digest.clone(),
            ),
            (format!("quay.io/team/app:v1@{digest}"), "quay.io/team/app", "quay.io", "team/app", digest.clone()),
        ];
        for (input, name, registry, repository, asked) in table {
            let r = ImageRef::parse(&input).unwrap().with_default_tag();
            assert_eq!(r.name, name, "{input}");
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.tag_or_digest(), asked, "{input}");
            assert!(r.full_name().starts_with(&format!("{registry}/{repository}")), "{input}");
        }
    }

    #[test]
    fn bad_references_are_refused() {
        assert!(matches!("Busybox".parse::<ImageRef>(), Err(ReferenceError::Uppercase(_))));
        assert!("busy box".parse::<ImageRef>().is_err());
        assert!("a:b:c".parse::<ImageRef>().is_err());
        assert!("a:-bad".parse::<ImageRef>().is_err());
        assert!("".parse::<ImageRef>().is_err());
    }
}
