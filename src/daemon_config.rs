//! The daemon's configuration file, in Docker's `daemon.json` format for the
//! keys berth supports (`/etc/berth/daemon.json`, or `--config-file`).
//!
//! As with dockerd, a key berth does not know is refused by name (a typo must
//! not be silently ignored), and a setting given both as a flag and in the
//! file is refused too. The file's directory also holds `certs.d/` (each
//! registry's certificates), as `/etc/docker/certs.d` sits beside Docker's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_core::registry::config::{parse_mirror, InsecureRegistry};
use berth_core::registry::RegistryConfig;
use serde::Deserialize;

/// Where the daemon looks for its configuration unless told otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

/// The file's keys berth supports, with Docker's names and meaning.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct DaemonFile {
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    hosts: Option<Vec<String>>,
    storage_driver: Option<String>,
    log_level: Option<String>,
    debug: Option<bool>,
    insecure_registries: Option<Vec<String>>,
    registry_mirrors: Option<Vec<String>>,
    max_concurrent_downloads: Option<usize>,
    max_concurrent_uploads: Option<usize>,
    max_download_attempts: Option<usize>,
}

/// The keys of `DaemonFile`, for refusing the others by name.
const KEYS: &[&str] = &[
    "data-root",
    "exec-root",
    "hosts",
    "storage-driver",
    "log-level",
    "debug",
    "insecure-registries",
    "registry-mirrors",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "max-download-attempts",
];

/// What the daemon's flags said (None / empty: not given).
#[derive(Debug, Default)]
pub struct DaemonFlags {
    pub host: Option<String>,
    pub root: Option<PathBuf>,
    pub run: Option<PathBuf>,
    pub storage_driver: Option<String>,
    pub log_level: Option<String>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub max_concurrent_downloads: Option<usize>,
    pub max_concurrent_uploads: Option<usize>,
    pub max_download_attempts: Option<usize>,
    /// `--config-file`, when given: then the file must exist.
    pub config_file: Option<PathBuf>,
}

/// The daemon's settings: the flags and the file together.
#[derive(Debug)]
pub struct DaemonSettings {
    pub host: Option<String>,
    pub root: Option<PathBuf>,
    pub run: Option<PathBuf>,
    pub storage_driver: Option<String>,
    pub log_level: Option<String>,
    pub registries: RegistryConfig,
}

impl DaemonFlags {
    /// Reads the configuration file (the default one may be absent) and
    /// combines it with the flags.
    pub fn settle(self) -> Result<DaemonSettings> {
        let path = self.config_file.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let file = match std::fs::read(&path) {
            Ok(bytes) => parse_file(&bytes).with_context(|| unable(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.config_file.is_none() => DaemonFile::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read the configuration file {}", path.display())),
        };
        let certs_dir = path.parent().unwrap_or(Path::new("/")).join("certs.d");
        self.combine(file, certs_dir).with_context(|| unable(&path))
    }

    fn combine(self, file: DaemonFile, certs_dir: PathBuf) -> Result<DaemonSettings> {
        let mut conflicts = Vec::new();
        let host = match file.hosts.as_deref() {
            None => None,
            Some([]) => None,
            Some([one]) => Some(one.clone()),
            Some(many) => bail!("\"hosts\" lists {} sockets; berth serves its API on one: {}", many.len(), many.join(", ")),
        };
        let host = pick(&mut conflicts, "hosts", self.host, host);
        let root = pick(&mut conflicts, "data-root", self.root, file.data_root);
        let run = pick(&mut conflicts, "exec-root", self.run, file.exec_root);
        let storage_driver = pick(&mut conflicts, "storage-driver", self.storage_driver, file.storage_driver);
        let file_level = file.log_level.or(file.debug.filter(|d| *d).map(|_| "debug".to_string()));
        let log_level = pick(&mut conflicts, "log-level", self.log_level, file_level);
        let insecure = pick_list(&mut conflicts, "insecure-registries", self.insecure_registries, file.insecure_registries);
        let mirrors = pick_list(&mut conflicts, "registry-mirrors", self.registry_mirrors, file.registry_mirrors);
        let downloads = pick(&mut conflicts, "max-concurrent-downloads", self.max_concurrent_downloads, file.max_concurrent_downloads);
        let uploads = pick(&mut conflicts, "max-concurrent-uploads", self.max_concurrent_uploads, file.max_concurrent_uploads);
        let attempts = pick(&mut conflicts, "max-download-attempts", self.max_download_attempts, file.max_download_attempts);
        if !conflicts.is_empty() {
            bail!("the following directives are specified both as a flag and in the configuration file: {}", conflicts.join(", "));
        }

        let defaults = RegistryConfig::default();
        let registries = RegistryConfig {
            insecure: insecure.iter().map(|s| s.parse::<InsecureRegistry>()).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?,
            mirrors: mirrors.iter().map(|m| parse_mirror(m)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?,
            certs_dir,
            max_concurrent_downloads: positive("max-concurrent-downloads", downloads, defaults.max_concurrent_downloads)?,
            max_concurrent_uploads: positive("max-concurrent-uploads", uploads, defaults.max_concurrent_uploads)?,
            max_download_attempts: positive("max-download-attempts", attempts, defaults.max_download_attempts)?,
        };
        Ok(DaemonSettings { host, root, run, storage_driver, log_level, registries })
    }
}

fn unable(path: &Path) -> String {
    format!("unable to configure the daemon with file {}", path.display())
}

/// The file's JSON: unknown keys are named (all of them), then the types checked.
fn parse_file(bytes: &[u8]) -> Result<DaemonFile> {
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(bytes).context("the file is not a JSON object of settings")?;
    let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !KEYS.contains(k)).collect();
    if !unknown.is_empty() {
        bail!("the following directives don't match any configuration option berth supports: {}", unknown.join(", "));
    }
    let object = serde_json::Value::Object(map.into_iter().collect());
    serde_json::from_value(object).context("a setting has the wrong type")
}

/// A flag's value or the file's; both given is a conflict, named as dockerd names it.
fn pick<T: std::fmt::Debug>(conflicts: &mut Vec<String>, key: &str, flag: Option<T>, file: Option<T>) -> Option<T> {
    match (flag, file) {
        (Some(flag), Some(file)) => {
            conflicts.push(format!("{key}: (from flag: {flag:?}, from file: {file:?})"));
            Some(flag)
        }
        (flag, file) => flag.or(file),
    }
}

fn pick_list(conflicts: &mut Vec<String>, key: &str, flag: Vec<String>, file: Option<Vec<String>>) -> Vec<String> {
    let flag = if flag.is_empty() { None } else { Some(flag) };
    pick(conflicts, key, flag, file).unwrap_or_default()
}

fn positive(key: &str, value: Option<usize>, default: usize) -> Result<usize> {
    match value {
        Some(0) => bail!("{key} must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(json: &str, flags: DaemonFlags) -> Result<DaemonSettings> {
        let file = parse_file(json.as_bytes())?;
        flags.combine(file, PathBuf::from("/etc/x/certs.d"))
    }

    #[test]
    fn the_file_gives_settings_and_certs_d_sits_beside_it() {
        let s = settle(
            r#"{"data-root": "/srv/berth", "insecure-registries": ["192.0.2.1:5000", "10.0.0.0/8"],
                "registry-mirrors": ["https://mirror.example/"], "max-concurrent-downloads": 6, "debug": true}"#,
            DaemonFlags::default(),
        )
        .unwrap();
        assert_eq!(s.root, Some(PathBuf::from("/srv/berth")));
        assert_eq!(s.log_level.as_deref(), Some("debug"));
        assert_eq!(s.registries.mirrors, vec!["https://mirror.example"]);
        assert!(s.registries.is_insecure("192.0.2.1:5000") && s.registries.is_insecure("10.9.9.9:443"));
        assert_eq!((s.registries.max_concurrent_downloads, s.registries.max_concurrent_uploads), (6, 5));
        assert_eq!(s.registries.certs_dir, PathBuf::from("/etc/x/certs.d"));
    }

    #[test]
    fn unknown_keys_conflicts_and_bad_values_are_refused_by_name() {
        let err = settle(r#"{"insecure-registry": ["x"], "graph": "/x"}"#, DaemonFlags::default()).unwrap_err();
        assert!(format!("{err:#}").contains("don't match any configuration option berth supports: graph, insecure-registry"), "{err:#}");
        let flags = DaemonFlags { storage_driver: Some("vfs".into()), ..Default::default() };
        let err = settle(r#"{"storage-driver": "overlay"}"#, flags).unwrap_err();
        assert!(
            err.to_string().contains(r#"specified both as a flag and in the configuration file: storage-driver: (from flag: "vfs", from file: "overlay")"#),
            "{err}"
        );
        assert!(settle(r#"{"max-concurrent-uploads": "5"}"#, DaemonFlags::default()).is_err());
        assert!(settle(r#"{"max-download-attempts": 0}"#, DaemonFlags::default()).unwrap_err().to_string().contains("at least 1"));
        assert!(settle(r#"{"registry-mirrors": ["mirror.example"]}"#, DaemonFlags::default()).unwrap_err().to_string().contains("scheme"));
        assert!(settle(r#"{"insecure-registries": ["http://x"]}"#, DaemonFlags::default()).unwrap_err().to_string().contains("'://'"));
        assert!(settle("[1]", DaemonFlags::default()).is_err());
    }
}
