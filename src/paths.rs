//! Where the daemon and the CLI find each other: the default `--root`, `--run`
//! and socket, and the parsing of `-H unix://PATH`. Shared by both sides so a
//! CLI started with the same flags always talks to the daemon it would start.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Default persistent state directory (`--root`).
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// Default runtime state directory (`--run`).
pub const DEFAULT_RUN: &str = "/run/berth";
/// File name of the API socket inside the run directory.
pub const SOCKET_NAME: &str = "berth.sock";

/// The global location flags, resolved to concrete paths.
#[derive(Clone, Debug)]
pub struct Locations {
    /// `--root`, as given (None: the daemon's default).
    pub root: Option<PathBuf>,
    /// `--run`, resolved.
    pub run: PathBuf,
    /// The API socket path.
    pub socket: PathBuf,
    /// Whether `-H` was given (then it is passed on to an autostarted daemon).
    pub host_given: bool,
}

impl Locations {
    /// Resolves `-H`, `--root` and `--run`: the socket defaults to `<run>/berth.sock`.
    pub fn resolve(host: Option<&str>, root: Option<&Path>, run: Option<&Path>) -> Result<Locations> {
        let run = run.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_RUN));
        let socket = match host {
            Some(h) => parse_host(h)?,
            None => run.join(SOCKET_NAME),
        };
        Ok(Locations { root: root.map(Path::to_path_buf), run, socket, host_given: host.is_some() })
    }

    /// The root directory the daemon uses.
    pub fn root_or_default(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    /// `unix://<socket>`, for messages and for `-H`.
    pub fn host_url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// Parses a `-H`/`BERTH_HOST` value. Only unix sockets are supported: the API
/// has no authentication, so it is never offered on a TCP port.
pub fn parse_host(host: &str) -> Result<PathBuf> {
    let path = if let Some(p) = host.strip_prefix("unix://") {
        p
    } else if host.starts_with('/') {
        host
    } else if let Some((scheme, _)) = host.split_once("://") {
        bail!("invalid host {host:?}: berth serves its API only on unix sockets, not {scheme}://; use unix:///path/to/berth.sock");
    } else {
        bail!("invalid host {host:?}: expected unix:///path/to/berth.sock");
    };
    if path.is_empty() || !path.starts_with('/') {
        bail!("invalid host {host:?}: the socket path must be absolute, as in unix:///run/berth/berth.sock");
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_defaults_to_the_run_directory() {
        let l = Locations::resolve(None, None, Some(Path::new("/tmp/r"))).unwrap();
        assert_eq!(l.socket, PathBuf::from("/tmp/r/berth.sock"));
        assert_eq!(l.host_url(), "unix:///tmp/r/berth.sock");
        assert_eq!(l.root_or_default(), PathBuf::from("/var/lib/berth"));
    }

    #[test]
    fn hosts_other_than_unix_sockets_are_refused() {
        assert_eq!(parse_host("unix:///x/y.sock").unwrap(), PathBuf::from("/x/y.sock"));
        assert_eq!(parse_host("/x/y.sock").unwrap(), PathBuf::from("/x/y.sock"));
        assert!(parse_host("tcp://127.0.0.1:2375").unwrap_err().to_string().contains("only on unix sockets"));
        assert!(parse_host("unix://relative").is_err());
        assert!(parse_host("unix://").is_err());
    }
}
