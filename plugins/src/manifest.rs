//! `plugin.toml`: what a plugin is, what it runs, and what it may do.
//!
//! This module only parses and validates; it must never touch the plugin's
//! code, and it must never accept a field it does not know (`deny_unknown_fields`
//! everywhere): a misspelt permission silently ignored would be a grant the
//! user never saw.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::PluginError;

/// The manifest's file name inside a plugin directory.
pub const MANIFEST_FILE: &str = "plugin.toml";
/// The plugin's state (enabled, settings) beside its manifest.
pub(crate) const STATE_FILE: &str = "state.json";
/// Precompiled components.
pub(crate) const CACHE_DIR: &str = "cache";
/// The plugin's own data dir.
pub(crate) const DATA_DIR: &str = "data";
/// Names in a plugin dir that berth writes itself; a plugin archive may not carry them.
pub(crate) const RESERVED: &[&str] = &[MANIFEST_FILE, STATE_FILE, CACHE_DIR, DATA_DIR, crate::quota::IMAGE_FILE];

/// Default per-call deadline.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Default memory cap of a WASM instance.
pub const DEFAULT_MEMORY_MIB: u64 = 64;

/// A parsed and validated `plugin.toml`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[a-z0-9][a-z0-9_.-]*`; also the driver name unless installed with an alias.
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Which drivers it provides.
    pub kinds: Vec<Kind>,
    pub runtime: Runtime,
    /// The code: a file name in the plugin directory.
    pub entry: String,
    /// The `berth:plugin` contract version it was built for, `MAJOR.MINOR`.
    pub contract: String,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub permissions: Permissions,
    /// Defaults of the settings `berth plugin set` may change.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// A driver kind a plugin provides.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Volume,
    Network,
    /// The daemon's storage (graph) driver; dylibs only.
    Storage,
}

/// How the entry runs.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// A `wasm32-wasip2` component, sandboxed.
    Wasm,
    /// A native shared library: trusted code.
    Dylib,
}

/// Per-call limits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Deadline of one call.
    pub timeout_ms: u64,
    /// Memory cap of one WASM instance (each linear memory).
    pub memory_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout_ms: DEFAULT_TIMEOUT_MS, memory_mib: DEFAULT_MEMORY_MIB }
    }
}

/// Mount types a volume plugin's plans may use.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MountPermission {
    Bind,
    Tmpfs,
    Overlay,
    Filesystem,
}

/// Link kinds a network plugin's plans may create.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum LinkPermission {
    Bridge,
    Veth,
    Macvlan,
    Ipvlan,
    Vlan,
    Vxlan,
}

/// What a plugin's plans may do. Absent means not allowed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Permissions {
    pub mounts: Vec<MountPermission>,
    pub links: Vec<LinkPermission>,
    /// Host interfaces it may use as a macvlan/ipvlan/vlan parent or vxlan device.
    pub parents: Vec<String>,
    /// Sysctl keys it may set; `*` matches within one dotted component.
    pub sysctls: Vec<String>,
    /// NAT and filter rules.
    pub firewall: bool,
    /// Size of its data dir: the daemon makes the dir a filesystem of this
    /// size (`quota`); without it the data dir shares the host's disk.
    pub data_mib: Option<u64>,
}

impl fmt::Display for MountPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MountPermission::Bind => "bind",
            MountPermission::Tmpfs => "tmpfs",
            MountPermission::Overlay => "overlay",
            MountPermission::Filesystem => "filesystem",
        })
    }
}

impl fmt::Display for LinkPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkPermission::Bridge => "bridge",
            LinkPermission::Veth => "veth",
            LinkPermission::Macvlan => "macvlan",
            LinkPermission::Ipvlan => "ipvlan",
            LinkPermission::Vlan => "vlan",
            LinkPermission::Vxlan => "vxlan",
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Volume => "volume",
            Kind::Network => "network",
            Kind::Storage => "storage",
        })
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Runtime::Wasm => "wasm",
            Runtime::Dylib => "dylib",
        })
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

impl Manifest {
    /// Parses and validates `plugin.toml` text. Errors name the line and field.
    pub fn parse(text: &str) -> Result<Manifest, PluginError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            // One line for API answers: toml's own Display draws a multi-line snippet.
            let line = e.span().map(|s| text.as_bytes()[..s.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1);
            match line {
                Some(line) => PluginError::InvalidArgument(format!("{MANIFEST_FILE} line {line}: {}", e.message().trim())),
                None => PluginError::InvalidArgument(format!("{MANIFEST_FILE}: {}", e.message().trim())),
            }
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Reads and validates `<dir>/plugin.toml` (checks the entry file exists too).
    pub fn read_dir(dir: &Path) -> Result<Manifest, PluginError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PluginError::InvalidArgument(format!("{} has no {MANIFEST_FILE}", dir.display())),
            _ => PluginError::InvalidArgument(format!("cannot read {}: {e}", path.display())),
        })?;
        let manifest = Manifest::parse(&text)?;
        let entry = dir.join(&manifest.entry);
        match std::fs::symlink_metadata(&entry) {
            Ok(m) if m.file_type().is_file() => Ok(manifest),
            Ok(_) => Err(invalid("entry", format!("{} is not a regular file", manifest.entry))),
            Err(_) => Err(invalid("entry", format!("{} is missing from the plugin", manifest.entry))),
        }
    }

    /// Checks what serde cannot: name syntax, entry file name, contract
    /// syntax, sane limits.
    pub fn validate(&self) -> Result<(), PluginError> {
        check_name(&self.name).map_err(|m| invalid("name", m))?;
        if self.version.trim().is_empty() {
            return Err(invalid("version", "must not be empty".into()));
        }
        if self.kinds.is_empty() {
            return Err(invalid("kinds", "must name at least one of volume, network, storage".into()));
        }
        let mut kinds = self.kinds.clone();
        kinds.sort();
        kinds.dedup();
        if kinds.len() != self.kinds.len() {
            return Err(invalid("kinds", "lists a kind twice".into()));
        }
        if self.has_kind(Kind::Storage) && self.runtime != Runtime::Dylib {
            // Every layer of every image and container goes through the
            // storage driver, with no deadline: that is trusted code's job.
            return Err(invalid(
                "kinds",
                "a storage driver must be a native library (runtime = \"dylib\"); WebAssembly plugins may provide volume and network drivers".into(),
            ));
        }
        check_entry(&self.entry).map_err(|m| invalid("entry", m))?;
        self.contract_version()?;
        if !(1..=600_000).contains(&self.limits.timeout_ms) {
            return Err(invalid("limits.timeout_ms", "must be between 1 and 600000".into()));
        }
        if !(1..=65536).contains(&self.limits.memory_mib) {
            return Err(invalid("limits.memory_mib", "must be between 1 and 65536".into()));
        }
        if let Some(mib) = self.permissions.data_mib {
            if !(8..=1 << 20).contains(&mib) {
                return Err(invalid("permissions.data_mib", format!("{mib} MiB: must be between 8 (the smallest filesystem berth makes) and 1048576")));
            }
        }
        for p in &self.permissions.parents {
            // Interface names: at most 15 bytes, no '/' and no whitespace (see dev_valid_name in Linux).
            if p.is_empty() || p.len() > 15 || p.contains(['/', ':']) || p.chars().any(char::is_whitespace) || p == "." || p == ".." {
                return Err(invalid("permissions.parents", format!("{p:?} is not an interface name")));
            }
        }
        for s in &self.permissions.sysctls {
            if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*')) {
                return Err(invalid("permissions.sysctls", format!("{s:?} is not a sysctl key")));
            }
        }
        for k in self.settings.keys() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
                return Err(invalid("settings", format!("key {k:?} may only use letters, digits, '_', '-' and '.'")));
            }
        }
        Ok(())
    }

    /// `contract` as `(major, minor)`.
    pub fn contract_version(&self) -> Result<(u32, u32), PluginError> {
        let bad = || invalid("contract", format!("{:?} is not MAJOR.MINOR (e.g. \"0.1\")", self.contract));
        let (major, minor) = self.contract.split_once('.').ok_or_else(bad)?;
        Ok((major.parse().map_err(|_| bad())?, minor.parse().map_err(|_| bad())?))
    }

    /// Whether it provides drivers of `kind`.
    pub fn has_kind(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// Whether installing it needs `--grant-all-permissions`. The data dir
    /// alone is not a privilege: every plugin gets one. Native code is: a
    /// dylib runs unsandboxed inside the daemon.
    pub fn asks_permissions(&self) -> bool {
        let p = &self.permissions;
        self.runtime == Runtime::Dylib
            || !p.mounts.is_empty() || !p.links.is_empty() || !p.parents.is_empty() || !p.sysctls.is_empty() || p.firewall
    }

    /// The grant as human lines, one per permission, for the install prompt:
    /// `mounts: [bind, tmpfs]`. Empty when it asks nothing.
    pub fn permission_lines(&self) -> Vec<String> {
        let p = &self.permissions;
        let mut lines = Vec::new();
        if self.runtime == Runtime::Dylib {
            lines.push("native: [runs unsandboxed inside the daemon]".to_string());
        }
        if !p.mounts.is_empty() {
            lines.push(format!("mounts: [{}]", join(&p.mounts)));
        }
        if !p.links.is_empty() {
            lines.push(format!("links: [{}]", join(&p.links)));
        }
        if !p.parents.is_empty() {
            lines.push(format!("parents: [{}]", join(&p.parents)));
        }
        if !p.sysctls.is_empty() {
            lines.push(format!("sysctls: [{}]", join(&p.sysctls)));
        }
        if p.firewall {
            lines.push("firewall: [nat and filter rules]".to_string());
        }
        if let Some(mib) = p.data_mib {
            lines.push(format!("data: [{mib} MiB]"));
        }
        lines
    }

    /// Docker's install prompt: `Plugin "x" is requesting the following
    /// privileges:` followed by ` - mounts: [bind]` lines.
    pub fn permission_prompt(&self) -> String {
        let mut out = format!("Plugin \"{}\" is requesting the following privileges:", self.name);
        for line in self.permission_lines() {
            out.push_str("\n - ");
            out.push_str(&line);
        }
        out
    }

    /// The grant on one line: `mounts=[bind], links=[bridge, veth]`.
    pub fn permission_summary(&self) -> String {
        self.permission_lines()
            .iter()
            .filter(|l| !l.starts_with("data:"))
            .map(|l| l.replacen(": ", "=", 1))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn invalid(field: &str, message: String) -> PluginError {
    PluginError::InvalidArgument(format!("{MANIFEST_FILE}: {field}: {message}"))
}

/// Checks a plugin or alias name: `[a-z0-9][a-z0-9_.-]*`, at most 64 bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok {
        return Err(format!("{name:?} is invalid: use [a-z0-9][a-z0-9_.-]*"));
    }
    if name.len() > 64 {
        return Err(format!("{name:?} is longer than 64 characters"));
    }
    Ok(())
}

/// The entry is a plain file name next to `plugin.toml`; the names the host
/// itself writes in a plugin dir are reserved.
fn check_entry(entry: &str) -> Result<(), String> {
    if entry.is_empty() || entry.contains('/') || entry.contains('\0') || entry.starts_with('.') {
        return Err(format!("{entry:?} must be a file name in the plugin directory"));
    }
    if RESERVED.contains(&entry) {
        return Err(format!("{entry:?} is a name berth uses itself"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "snapvol"
version = "0.1.0"
description = "snapshots"
kinds = ["volume"]
runtime = "wasm"
entry = "plugin.wasm"
contract = "0.1"
[limits]
timeout_ms = 2000
[permissions]
mounts = ["bind"]
data_mib = 1024
[settings]
compress = "no"
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD).expect("parse");
        assert_eq!(m.name, "snapvol");
        assert_eq!(m.kinds, vec![Kind::Volume]);
        assert_eq!(m.runtime, Runtime::Wasm);
        assert_eq!(m.limits.timeout_ms, 2000);
        assert_eq!(m.limits.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(m.permissions.mounts, vec![MountPermission::Bind]);
        assert_eq!(m.contract_version().ok(), Some((0, 1)));
        assert!(m.asks_permissions());
        assert_eq!(m.permission_lines(), vec!["mounts: [bind]".to_string(), "data: [1024 MiB]".to_string()]);
        assert_eq!(m.permission_summary(), "mounts=[bind]");
        assert!(m.permission_prompt().starts_with("Plugin \"snapvol\" is requesting the following privileges:\n - mounts: [bind]"));
    }

    #[test]
    fn unknown_fields_are_refused_by_name_and_line() {
        let text = GOOD.replace("[permissions]\n", "[permissions]\nnetwork = [\"host\"]\n");
        let e = Manifest::parse(&text).expect_err("unknown field").to_string();
        assert!(e.contains("network") && e.contains("line 12"), "{e}");
        let e = Manifest::parse(&format!("{GOOD}\n[extra]\n")).expect_err("unknown table").to_string();
        assert!(e.contains("extra"), "{e}");
        let e = Manifest::parse(&GOOD.replace("mounts = [\"bind\"]", "mounts = [\"proc\"]")).expect_err("bad mount").to_string();
        assert!(e.contains("proc") && e.contains("line 12"), "{e}");
    }

    #[test]
    fn bad_names_and_entries_are_refused() {
        for bad in ["Snap", "-x", "", "a b", "a/b", ".x"] {
            let e = Manifest::parse(&GOOD.replace("\"snapvol\"", &format!("{bad:?}"))).expect_err(bad).to_string();
            assert!(e.contains("name"), "{e}");
        }
        for bad in ["../x.wasm", "/etc/passwd", "state.json", ".hidden", ""] {
            let e = Manifest::parse(&GOOD.replace("\"plugin.wasm\"", &format!("{bad:?}"))).expect_err(bad).to_string();
            assert!(e.contains("entry"), "{e}");
        }
        let e = Manifest::parse(&GOOD.replace("kinds = [\"volume\"]", "kinds = []")).expect_err("no kinds").to_string();
        assert!(e.contains("kinds"), "{e}");
        let e = Manifest::parse(&GOOD.replace("\"0.1\"", "\"one\"")).expect_err("contract").to_string();
        assert!(e.contains("contract"), "{e}");
        let e = Manifest::parse(&GOOD.replace("entry = \"plugin.wasm\"\n", "")).expect_err("no entry").to_string();
        assert!(e.contains("entry"), "{e}");
    }

    #[test]
    fn a_storage_driver_must_be_a_dylib() {
        let storage = GOOD.replace("kinds = [\"volume\"]", "kinds = [\"storage\"]");
        let e = Manifest::parse(&storage).expect_err("wasm storage").to_string();
        assert!(e.contains("kinds") && e.contains("native library"), "{e}");
        let m = Manifest::parse(&storage.replace("runtime = \"wasm\"", "runtime = \"dylib\"")).expect("dylib storage");
        assert_eq!(m.kinds, vec![Kind::Storage]);
    }

    #[test]
    fn missing_entry_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(MANIFEST_FILE), GOOD).expect("write");
        let e = Manifest::read_dir(dir.path()).expect_err("missing entry").to_string();
        assert!(e.contains("plugin.wasm is missing"), "{e}");
        std::fs::write(dir.path().join("plugin.wasm"), b"\0asm").expect("write");
        assert!(Manifest::read_dir(dir.path()).is_ok());
    }

    #[test]
    fn no_permissions_means_nothing_asked() {
        let text = GOOD.replace("[permissions]\nmounts = [\"bind\"]\ndata_mib = 1024\n", "");
        let m = Manifest::parse(&text).expect("parse");
        assert!(!m.asks_permissions());
        assert!(m.permission_lines().is_empty());
        // Native code always asks.
        let m = Manifest::parse(&text.replace("\"wasm\"", "\"dylib\"")).expect("parse");
        assert!(m.asks_permissions());
        assert_eq!(m.permission_summary(), "native=[runs unsandboxed inside the daemon]");
    }
}
