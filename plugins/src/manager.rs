//! Installed plugins: install from a tar, enable/disable, remove, settings,
//! and loading the enabled ones into the driver registries at start.
//!
//! On disk, `<root>/plugins/<name>/` holds `plugin.toml`, the entry,
//! `state.json` (id, enabled, settings), `data/` (the plugin's own files)
//! and `cache/` (what berth derives: precompiled components, the dylib copy
//! it loads). Installs are staged in `.staging-*` and renamed into place,
//! removals renamed to `.removing-*` first; `open` sweeps both.
//!
//! This module must never leave a half-installed plugin visible, never write
//! a file in place (temp, fsync, rename), never unpack a tar entry that could
//! land outside the staging dir (no absolute paths, no `..`, no links at all),
//! and never let a plugin's driver replace a driver it does not own.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_core::drivers::Drivers;
use berth_model::drivers::StorageDriver;
use berth_runtime::files::{self, Durability};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::adapter::{PluginNetworkDriver, PluginStorageDriver, PluginVolumeDriver};
use crate::backend::{Backend, LoadStats};
use crate::check::{Grant, PathView};
use crate::dylib::{self, DylibPlugin};
use crate::manifest::{check_name, Kind, Manifest, Runtime, CACHE_DIR, DATA_DIR, MANIFEST_FILE, STATE_FILE};
use crate::quota::{self, DataLimit, IMAGE_FILE};
use crate::wasm::{WasmPlugin, CONTRACT_VERSION};
use crate::PluginError;

const STAGING_PREFIX: &str = ".staging-";
const REMOVING_PREFIX: &str = ".removing-";

/// A plugin archive may not be bigger than this, unpacked.
const MAX_ARCHIVE_BYTES: u64 = 1 << 30;
/// ... nor hold more entries than this.
const MAX_ARCHIVE_ENTRIES: usize = 10_000;

/// `berth plugin install` options.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    /// Install under this name (the driver name) instead of the manifest's.
    pub alias: Option<String>,
    /// The user accepted the permissions the manifest asks for.
    pub grant_all_permissions: bool,
    /// Install without enabling.
    pub disable: bool,
}

/// An installed plugin, as `plugin ls` and `plugin inspect` show it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PluginInfo {
    /// 64 hex: sha256 of `plugin.toml` followed by the entry file.
    pub id: String,
    /// The name it is installed (and its drivers registered) under.
    pub name: String,
    pub manifest: Manifest,
    pub enabled: bool,
    /// Current settings: the manifest's defaults, changed by `plugin set`.
    pub settings: BTreeMap<String, String>,
    /// `<root>/plugins/<name>`.
    pub dir: PathBuf,
}

/// `state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    id: String,
    enabled: bool,
    settings: BTreeMap<String, String>,
}

struct Entry {
    info: PluginInfo,
    /// Its drivers are in the registries (so a driver of that name is ours).
    registered: bool,
    /// Its storage driver, loaded while registered. The daemon picks it (or
    /// not) at start; there is no registry of storage drivers.
    storage: Option<Arc<dyn StorageDriver>>,
}

/// The installed plugins. Send + Sync; one lock orders every change.
pub struct PluginManager {
    dir: PathBuf,
    data_limit: DataLimit,
    plugins: Mutex<BTreeMap<String, Entry>>,
    /// Problems found by `open`, reported by `load_enabled`.
    broken: Mutex<Vec<String>>,
    last_load: Mutex<Option<LoadStats>>,
    /// The plugin the daemon runs as its storage driver: it may be neither
    /// disabled nor removed while the daemon runs.
    daemon_storage: Mutex<Option<String>>,
}

// The daemon shares one manager between its request threads.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<PluginManager>();
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PluginManager {
    /// `dir` = <root>/plugins. Creates it. Cleans leftover staging dirs.
    /// `data_limit` says whether `permissions.data_mib` gets a filesystem of
    /// that size (`quota`): the daemon's choice; tests outside a mount
    /// namespace pass `Ignore`.
    pub fn open(dir: PathBuf, data_limit: DataLimit) -> Result<PluginManager, PluginError> {
        fs::create_dir_all(&dir).map_err(|e| PluginError::io(format!("cannot create {}", dir.display()), e))?;
        let mut plugins = BTreeMap::new();
        let mut broken = Vec::new();
        let listing = fs::read_dir(&dir).map_err(|e| PluginError::io(format!("cannot read {}", dir.display()), e))?;
        for entry in listing {
            let entry = entry.map_err(|e| PluginError::io(format!("cannot read {}", dir.display()), e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else { continue };
            let path = entry.path();
            if name.starts_with(STAGING_PREFIX) || name.starts_with(REMOVING_PREFIX) {
                // An install or a removal that did not finish: never visible, now gone.
                if let Err(e) = fs::remove_dir_all(&path) {
                    tracing::warn!("cannot clean {}: {e}", path.display());
                }
                continue;
            }
            if name.starts_with('.') || !path.is_dir() {
                continue;
            }
            match read_installed(name, &path) {
                Ok(info) => {
                    plugins.insert(name.to_string(), Entry { info, registered: false, storage: None });
                }
                Err(e) => {
                    tracing::warn!("plugin {name}: {e}");
                    broken.push(format!("plugin {name}: {e}"));
                }
            }
        }
        Ok(PluginManager {
            dir,
            data_limit,
            plugins: Mutex::new(plugins),
            broken: Mutex::new(broken),
            last_load: Mutex::new(None),
            daemon_storage: Mutex::new(None),
        })
    }

    /// At daemon start, before the engine opens: load every enabled plugin
    /// and register its drivers. One plugin failing is logged and returned
    /// as a warning string, never fatal.
    pub fn load_enabled(&self, drivers: &Drivers) -> Vec<String> {
        let mut warnings = std::mem::take(&mut *lock(&self.broken));
        let mut plugins = lock(&self.plugins);
        for entry in plugins.values_mut() {
            if !entry.info.enabled || entry.registered {
                continue;
            }
            if let Err(e) = self.register(entry, drivers) {
                tracing::warn!("{e}");
                warnings.push(e.to_string());
            }
        }
        warnings
    }

    /// At daemon start, for `--storage-driver NAME` when NAME is no in-tree
    /// driver: the storage driver of the enabled plugin NAME, which from now
    /// on may be neither disabled nor removed.
    pub fn storage_driver(&self, name: &str, drivers: &Drivers) -> Result<Arc<dyn StorageDriver>, PluginError> {
        let mut plugins = lock(&self.plugins);
        let entry = plugins.get_mut(name).ok_or_else(|| {
            PluginError::NotFound(format!("no storage driver named {name:?}: it is not in-tree and no plugin of that name is installed"))
        })?;
        if !entry.info.manifest.has_kind(Kind::Storage) {
            let kinds = entry.info.manifest.kinds.iter().map(Kind::to_string).collect::<Vec<_>>().join(", ");
            return Err(PluginError::InvalidArgument(format!("plugin {name} provides {kinds} drivers, not a storage driver")));
        }
        if !entry.info.enabled {
            return Err(PluginError::Conflict(format!(
                "plugin {name} is disabled: start the daemon with another storage driver, run `berth plugin enable {name}`, then restart it with --storage-driver {name}"
            )));
        }
        if !entry.registered {
            // It failed to load with the others; this says why.
            self.register(entry, drivers)?;
        }
        let storage = entry.storage.clone().ok_or_else(|| PluginError::Internal(format!("plugin {name}: storage driver not loaded")))?;
        *lock(&self.daemon_storage) = Some(name.to_string());
        Ok(storage)
    }

    /// Refuses to take away the daemon's storage driver.
    fn check_not_daemon_storage(&self, name: &str, what: &str) -> Result<(), PluginError> {
        if lock(&self.daemon_storage).as_deref() == Some(name) {
            return Err(PluginError::Conflict(format!(
                "plugin {name} is the daemon's storage driver; restart the daemon with another --storage-driver before you {what} it"
            )));
        }
        Ok(())
    }

    /// Install from a tar stream of a plugin directory (its files at the top,
    /// or in one top-level directory). Staged, validated (manifest, entry,
    /// ABI/contract version, precompiled for WASM), then renamed into place:
    /// a failed install leaves nothing. Enables and registers unless
    /// `opts.disable`.
    pub fn install(&self, tar: &mut dyn Read, opts: &InstallOptions, drivers: &Drivers) -> Result<PluginInfo, PluginError> {
        let staging = Staging::new(&self.dir)?;
        let root = unpack(tar, &staging.path.join("tree"))?;
        let manifest = Manifest::read_dir(&root)?;
        let name = match &opts.alias {
            Some(alias) => {
                check_name(alias).map_err(|m| PluginError::InvalidArgument(format!("alias: {m}")))?;
                alias.clone()
            }
            None => manifest.name.clone(),
        };
        // Cheap refusals first; checked again under the lock at the end.
        self.check_free(&lock(&self.plugins), &name, &manifest, drivers)?;
        if manifest.asks_permissions() && !opts.grant_all_permissions {
            return Err(PluginError::InvalidArgument(format!(
                "plugin {name} asks for permissions ({}); install it with --grant-all-permissions",
                manifest.permission_summary()
            )));
        }
        check_contract_field(&name, &manifest)?;
        let id = plugin_id(&root, &manifest)?;
        for sub in [DATA_DIR, CACHE_DIR] {
            fs::create_dir_all(root.join(sub)).map_err(|e| PluginError::io(format!("cannot create {sub}/"), e))?;
        }
        if let (DataLimit::Enforce, Some(mib)) = (self.data_limit, manifest.permissions.data_mib) {
            quota::create_image(&root.join(IMAGE_FILE), mib)?;
        }
        // Load the code once here, so a plugin that cannot run is refused
        // now rather than at enable (and a WASM component gets precompiled).
        match manifest.runtime {
            Runtime::Wasm => {
                let (_, stats) = WasmPlugin::load(&name, &root, &manifest, &manifest.settings)?;
                *lock(&self.last_load) = Some(stats);
            }
            Runtime::Dylib => dylib::validate(&name, &dylib_copy(&root, &manifest, &id)?, &manifest)?,
        }
        let state = State { id: id.clone(), enabled: false, settings: manifest.settings.clone() };
        write_state(&root, &state)?;
        sync_tree(&root)?;

        let mut plugins = lock(&self.plugins);
        self.check_free(&plugins, &name, &manifest, drivers)?;
        let dir = self.dir.join(&name);
        fs::rename(&root, &dir).map_err(|e| PluginError::io(format!("cannot move the plugin into {}", dir.display()), e))?;
        sync_dir(&self.dir)?;
        let info = PluginInfo { id, name: name.clone(), manifest, enabled: false, settings: state.settings, dir };
        plugins.insert(name.clone(), Entry { info, registered: false, storage: None });
        if !opts.disable {
            if let Err(e) = self.enable_locked(&mut plugins, &name, drivers) {
                // Leave nothing: the install failed.
                if let Some(entry) = plugins.remove(&name) {
                    let _ = self.delete_dir(&entry.info.dir);
                }
                return Err(e);
            }
        }
        plugins.get(&name).map(|e| e.info.clone()).ok_or_else(|| PluginError::Internal(format!("plugin {name} vanished during install")))
    }

    /// Every installed plugin, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        lock(&self.plugins).values().map(|e| e.info.clone()).collect()
    }

    /// By name or ID prefix.
    pub fn get(&self, name: &str) -> Result<PluginInfo, PluginError> {
        let plugins = lock(&self.plugins);
        resolve(&plugins, name).map(|n| plugins[&n].info.clone())
    }

    /// Enables a disabled plugin: loads it and registers its drivers.
    pub fn enable(&self, name: &str, drivers: &Drivers) -> Result<(), PluginError> {
        let mut plugins = lock(&self.plugins);
        let name = resolve(&plugins, name)?;
        self.enable_locked(&mut plugins, &name, drivers)
    }

    /// Unregisters its drivers (usage checks are the caller's job).
    pub fn disable(&self, name: &str, drivers: &Drivers) -> Result<(), PluginError> {
        let mut plugins = lock(&self.plugins);
        let name = resolve(&plugins, name)?;
        let entry = plugins.get_mut(&name).ok_or_else(|| not_found(&name))?;
        if !entry.info.enabled {
            return Err(PluginError::Conflict(format!("plugin {name} is already disabled")));
        }
        self.check_not_daemon_storage(&name, "disable")?;
        let mut state = self.state_of(&entry.info);
        state.enabled = false;
        write_state(&entry.info.dir, &state)?;
        entry.info.enabled = false;
        unregister(entry, drivers);
        Ok(())
    }

    /// Removes a plugin and its data. Refuses an enabled plugin unless `force`.
    pub fn remove(&self, name: &str, force: bool, drivers: &Drivers) -> Result<(), PluginError> {
        let mut plugins = lock(&self.plugins);
        let name = resolve(&plugins, name)?;
        let entry = plugins.get_mut(&name).ok_or_else(|| not_found(&name))?;
        if entry.info.enabled && !force {
            return Err(PluginError::Conflict(format!("plugin {name} is enabled; disable it first or use --force")));
        }
        self.check_not_daemon_storage(&name, "remove")?;
        unregister(entry, drivers);
        let dir = entry.info.dir.clone();
        quota::unmount(&dir.join(DATA_DIR))?;
        plugins.remove(&name);
        self.delete_dir(&dir)
    }

    /// `plugin set NAME key=value...`: only keys declared in `[settings]`;
    /// refused while enabled (Docker's rule); persisted.
    pub fn set(&self, name: &str, values: &[(String, String)]) -> Result<(), PluginError> {
        let mut plugins = lock(&self.plugins);
        let name = resolve(&plugins, name)?;
        let entry = plugins.get_mut(&name).ok_or_else(|| not_found(&name))?;
        if entry.info.enabled {
            return Err(PluginError::Conflict(format!("plugin {name} is enabled; disable it before changing its settings")));
        }
        let mut settings = entry.info.settings.clone();
        for (key, value) in values {
            if !entry.info.manifest.settings.contains_key(key) {
                let known = entry.info.manifest.settings.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(PluginError::InvalidArgument(format!("plugin {name} has no setting {key:?} (it has: {known})")));
            }
            settings.insert(key.clone(), value.clone());
        }
        let mut state = self.state_of(&entry.info);
        state.settings = settings.clone();
        write_state(&entry.info.dir, &state)?;
        entry.info.settings = settings;
        Ok(())
    }

    /// How long the last load took and whether it came from the precompiled cache.
    pub fn last_load(&self) -> Option<LoadStats> {
        lock(&self.last_load).clone()
    }

    fn state_of(&self, info: &PluginInfo) -> State {
        State { id: info.id.clone(), enabled: info.enabled, settings: info.settings.clone() }
    }

    fn enable_locked(&self, plugins: &mut BTreeMap<String, Entry>, name: &str, drivers: &Drivers) -> Result<(), PluginError> {
        let entry = plugins.get_mut(name).ok_or_else(|| not_found(name))?;
        if entry.info.enabled {
            return Err(PluginError::Conflict(format!("plugin {name} is already enabled")));
        }
        self.register(entry, drivers)?;
        let mut state = self.state_of(&entry.info);
        state.enabled = true;
        if let Err(e) = write_state(&entry.info.dir, &state) {
            unregister(entry, drivers);
            return Err(e);
        }
        entry.info.enabled = true;
        Ok(())
    }

    /// Loads the plugin's code and registers one driver per kind.
    fn register(&self, entry: &mut Entry, drivers: &Drivers) -> Result<(), PluginError> {
        let info = &entry.info;
        let name = info.name.as_str();
        for kind in &info.manifest.kinds {
            if !entry.registered && driver_taken(drivers, *kind, name) {
                return Err(PluginError::Conflict(format!("plugin {name}: a {kind} driver named {name} exists already")));
            }
        }
        let data_dir = info.dir.join(DATA_DIR);
        fs::create_dir_all(&data_dir).map_err(|e| PluginError::io(format!("plugin {name}: cannot create {}", data_dir.display()), e))?;
        let image = info.dir.join(IMAGE_FILE);
        if self.data_limit == DataLimit::Enforce && image.exists() {
            quota::ensure_mounted(&image, &data_dir).map_err(|e| PluginError::Internal(format!("plugin {name}: {e}")))?;
        } else if let Some(mib) = info.manifest.permissions.data_mib {
            // Installed without a limit (by a manager that ignored it): say so, once per load.
            tracing::warn!(plugin = name, "data_mib = {mib} is not enforced: the plugin was installed without a data filesystem");
        }
        let (backend, native, view, stats): (Arc<dyn Backend>, Option<Arc<DylibPlugin>>, PathView, LoadStats) =
            match info.manifest.runtime {
                Runtime::Wasm => {
                    let (plugin, stats) = WasmPlugin::load(name, &info.dir, &info.manifest, &info.settings)?;
                    (Arc::new(plugin), None, PathView::Guest, stats)
                }
                Runtime::Dylib => {
                    let path = dylib_copy(&info.dir, &info.manifest, &info.id)?;
                    let (plugin, stats) = DylibPlugin::load(name, &path, &data_dir, &info.manifest, &info.settings)?;
                    let plugin = Arc::new(plugin);
                    (plugin.clone(), Some(plugin), PathView::Host, stats)
                }
            };
        tracing::info!(plugin = name, runtime = %info.manifest.runtime, from_cache = stats.from_cache, "loaded in {:?}", stats.duration);
        *lock(&self.last_load) = Some(stats);
        let grant = Arc::new(Grant { plugin: name.to_string(), permissions: info.manifest.permissions.clone(), data_dir, view });
        let mut storage: Option<Arc<dyn StorageDriver>> = None;
        for kind in &info.manifest.kinds {
            match kind {
                Kind::Volume => drivers.volume.register(name, Arc::new(PluginVolumeDriver::new(name, backend.clone(), grant.clone()))),
                Kind::Network => drivers.network.register(name, Arc::new(PluginNetworkDriver::new(name, backend.clone(), grant.clone()))),
                Kind::Storage => {
                    // `Manifest::validate` keeps storage to dylibs.
                    let native = native.clone().ok_or_else(|| PluginError::Internal(format!("plugin {name}: a storage driver must be a dylib")))?;
                    storage = Some(Arc::new(PluginStorageDriver::new(name, native, grant.clone())));
                }
            }
        }
        entry.storage = storage;
        entry.registered = true;
        Ok(())
    }

    /// Refuses a name that is installed already or names a driver someone else registered.
    fn check_free(&self, plugins: &BTreeMap<String, Entry>, name: &str, manifest: &Manifest, drivers: &Drivers) -> Result<(), PluginError> {
        if plugins.contains_key(name) || self.dir.join(name).exists() {
            return Err(PluginError::Conflict(format!("plugin {name} is already installed")));
        }
        for kind in &manifest.kinds {
            if driver_taken(drivers, *kind, name) {
                return Err(PluginError::Conflict(format!(
                    "a {kind} driver named {name} exists already; install the plugin with --alias NAME"
                )));
            }
        }
        Ok(())
    }

    /// Removes a plugin dir: renamed aside first, so a crash halfway leaves
    /// a `.removing-*` that `open` sweeps rather than a broken plugin.
    fn delete_dir(&self, dir: &Path) -> Result<(), PluginError> {
        let aside = self.dir.join(format!("{REMOVING_PREFIX}{}", unique()));
        fs::rename(dir, &aside).map_err(|e| PluginError::io(format!("cannot remove {}", dir.display()), e))?;
        sync_dir(&self.dir)?;
        fs::remove_dir_all(&aside).map_err(|e| PluginError::io(format!("cannot remove {}", aside.display()), e))
    }
}

fn driver_taken(drivers: &Drivers, kind: Kind, name: &str) -> bool {
    match kind {
        Kind::Volume => drivers.volume.get(name).is_some(),
        Kind::Network => drivers.network.get(name).is_some(),
        // Not in a registry: `--storage-driver` names the plugin itself.
        Kind::Storage => false,
    }
}

fn unregister(entry: &mut Entry, drivers: &Drivers) {
    if !entry.registered {
        return;
    }
    for kind in &entry.info.manifest.kinds {
        match kind {
            Kind::Volume => drop(drivers.volume.unregister(&entry.info.name)),
            Kind::Network => drop(drivers.network.unregister(&entry.info.name)),
            Kind::Storage => entry.storage = None,
        }
    }
    entry.registered = false;
}

fn not_found(name: &str) -> PluginError {
    PluginError::NotFound(format!("plugin {name} is not installed"))
}

/// A name, or a unique prefix of an ID.
fn resolve(plugins: &BTreeMap<String, Entry>, name: &str) -> Result<String, PluginError> {
    if plugins.contains_key(name) {
        return Ok(name.to_string());
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(not_found(name));
    }
    let matches: Vec<&String> = plugins.iter().filter(|(_, e)| e.info.id.starts_with(name)).map(|(n, _)| n).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(not_found(name)),
        many => Err(PluginError::InvalidArgument(format!(
            "{name} matches several plugins ({}); use a longer ID or the name",
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The manifest's `contract` must be one this berth speaks.
fn check_contract_field(name: &str, manifest: &Manifest) -> Result<(), PluginError> {
    let (major, minor) = manifest.contract_version()?;
    let (ours_major, ours_minor, _) = CONTRACT_VERSION;
    if major != ours_major || (major == 0 && minor != ours_minor) {
        return Err(PluginError::InvalidArgument(format!(
            "plugin {name}: built for berth:plugin@{major}.{minor} (plugin.toml contract), this berth speaks berth:plugin@{ours_major}.{ours_minor}; rebuild it against berth-sdk {ours_major}.{ours_minor}"
        )));
    }
    Ok(())
}

/// sha256 of `plugin.toml` followed by the entry.
fn plugin_id(root: &Path, manifest: &Manifest) -> Result<String, PluginError> {
    let mut h = Sha256::new();
    for file in [root.join(MANIFEST_FILE), root.join(&manifest.entry)] {
        let mut f = fs::File::open(&file).map_err(|e| PluginError::io(format!("cannot read {}", file.display()), e))?;
        std::io::copy(&mut f, &mut HashWriter(&mut h)).map_err(|e| PluginError::io(format!("cannot read {}", file.display()), e))?;
    }
    Ok(hex::encode(h.finalize()))
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The copy of a dylib entry that berth loads: `cache/lib-<id>.so`. The
/// dynamic loader matches already-loaded libraries by path, and berth never
/// unloads one, so loading a reinstalled plugin from its old path could
/// return the old code; a path named by content cannot.
fn dylib_copy(dir: &Path, manifest: &Manifest, id: &str) -> Result<PathBuf, PluginError> {
    let short = id.get(..16).unwrap_or(id);
    let path = dir.join(CACHE_DIR).join(format!("lib-{short}.so"));
    if !path.is_file() {
        let bytes = fs::read(dir.join(&manifest.entry)).map_err(|e| PluginError::io(format!("cannot read {}", manifest.entry), e))?;
        fs::create_dir_all(dir.join(CACHE_DIR)).map_err(|e| PluginError::io("cannot create cache/", e))?;
        write_atomic(&path, &bytes)?;
    }
    Ok(path)
}

fn read_installed(name: &str, dir: &Path) -> Result<PluginInfo, PluginError> {
    check_name(name).map_err(PluginError::InvalidArgument)?;
    let manifest = Manifest::read_dir(dir)?;
    let path = dir.join(STATE_FILE);
    let text = fs::read(&path).map_err(|e| PluginError::io(format!("cannot read {}", path.display()), e))?;
    let state: State = serde_json::from_slice(&text).map_err(|e| PluginError::Internal(format!("{}: {e}", path.display())))?;
    Ok(PluginInfo { id: state.id, name: name.to_string(), manifest, enabled: state.enabled, settings: state.settings, dir: dir.to_path_buf() })
}

fn write_state(dir: &Path, state: &State) -> Result<(), PluginError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| PluginError::Internal(format!("cannot encode {STATE_FILE}: {e}")))?;
    write_atomic(&dir.join(STATE_FILE), &bytes)
}

/// A process-unique suffix for temp and staging names.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Replaces `path` whole, synced (a plugin's state must survive a crash).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    files::replace(path, bytes, 0o644, Durability::Synced).map_err(|e| PluginError::io(format!("cannot write {}", path.display()), e))
}

fn sync_dir(dir: &Path) -> Result<(), PluginError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| PluginError::io(format!("cannot sync {}", dir.display()), e))
}

/// fsyncs every file and directory under `root`, so the rename that
/// publishes it publishes complete contents.
fn sync_tree(root: &Path) -> Result<(), PluginError> {
    let listing = fs::read_dir(root).map_err(|e| PluginError::io(format!("cannot read {}", root.display()), e))?;
    for entry in listing {
        let entry = entry.map_err(|e| PluginError::io(format!("cannot read {}", root.display()), e))?;
        let kind = entry.file_type().map_err(|e| PluginError::io(format!("cannot stat {}", entry.path().display()), e))?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            fs::File::open(entry.path()).and_then(|f| f.sync_all()).map_err(|e| PluginError::io(format!("cannot sync {}", entry.path().display()), e))?;
        }
    }
    sync_dir(root)
}

/// A staging dir removed on drop: whatever fails, a failed install leaves nothing.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(plugins_dir: &Path) -> Result<Staging, PluginError> {
        let path = plugins_dir.join(format!("{STAGING_PREFIX}{}", unique()));
        fs::create_dir(&path).map_err(|e| PluginError::io(format!("cannot create {}", path.display()), e))?;
        Ok(Staging { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot clean {}: {e}", self.path.display());
            }
        }
    }
}

fn bad_tar(message: String) -> PluginError {
    PluginError::InvalidArgument(format!("plugin archive: {message}"))
}

/// The path of a tar entry as plain relative components; refuses absolute
/// paths and `..`. `./` components are dropped.
fn safe_relative(path: &Path) -> Result<PathBuf, PluginError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad_tar(format!("{} climbs out with '..'", path.display()))),
            Component::RootDir | Component::Prefix(_) => return Err(bad_tar(format!("{} is an absolute path", path.display()))),
        }
    }
    Ok(out)
}

/// Unpacks a plugin tar into `dest` (which must not exist) and returns the
/// plugin's root in it: `dest` itself, or its one top-level directory.
/// Only regular files and directories are accepted; modes are reduced to
/// 0755/0644 (no setuid, no device files, no links of any kind).
fn unpack(reader: &mut dyn Read, dest: &Path) -> Result<PathBuf, PluginError> {
    fs::create_dir(dest).map_err(|e| PluginError::io(format!("cannot create {}", dest.display()), e))?;
    let mut archive = tar::Archive::new(reader);
    let (mut total, mut count) = (0u64, 0usize);
    let entries = archive.entries().map_err(|e| bad_tar(format!("cannot read: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_tar(format!("cannot read: {e}")))?;
        count += 1;
        if count > MAX_ARCHIVE_ENTRIES {
            return Err(bad_tar(format!("more than {MAX_ARCHIVE_ENTRIES} entries")));
        }
        let raw = entry.path().map_err(|e| bad_tar(format!("bad entry name: {e}")))?.into_owned();
        let rel = safe_relative(&raw)?;
        let kind = entry.header().entry_type();
        let target = dest.join(&rel);
        use tar::EntryType as T;
        match kind {
            T::XGlobalHeader => continue,
            T::Directory => {
                if rel.as_os_str().is_empty() {
                    continue;
                }
                fs::create_dir_all(&target).map_err(|e| PluginError::io(format!("cannot unpack {}", raw.display()), e))?;
            }
            T::Regular | T::Continuous => {
                if rel.as_os_str().is_empty() {
                    return Err(bad_tar(format!("{} is a file without a name", raw.display())));
                }
                total = total.saturating_add(entry.size());
                if total > MAX_ARCHIVE_BYTES {
                    return Err(bad_tar(format!("more than {} MiB unpacked", MAX_ARCHIVE_BYTES >> 20)));
                }
                let mode = entry.header().mode().unwrap_or(0o644);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(|e| PluginError::io(format!("cannot unpack {}", raw.display()), e))?;
                }
                // create_new: an entry twice, or a file over a directory, is refused.
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|e| bad_tar(format!("cannot unpack {}: {e}", raw.display())))?;
                std::io::copy(&mut entry, &mut file).map_err(|e| bad_tar(format!("cannot unpack {}: {e}", raw.display())))?;
                use std::os::unix::fs::PermissionsExt;
                let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| PluginError::io(format!("cannot unpack {}", raw.display()), e))?;
            }
            T::Symlink | T::Link => {
                return Err(bad_tar(format!("{} is a link; plugin archives may only hold files and directories", raw.display())));
            }
            other => return Err(bad_tar(format!("{} is a {other:?} entry; plugin archives may only hold files and directories", raw.display()))),
        }
    }
    let root = plugin_root(dest, |p| p.join(MANIFEST_FILE).is_file(), |p| {
        fs::read_dir(p).map(|it| it.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    })?;
    for reserved in [STATE_FILE, CACHE_DIR] {
        if fs::symlink_metadata(root.join(reserved)).is_ok() {
            return Err(bad_tar(format!("it carries {reserved}, which berth writes itself")));
        }
    }
    if let Ok(m) = fs::symlink_metadata(root.join(DATA_DIR)) {
        if !m.is_dir() {
            return Err(bad_tar(format!("{DATA_DIR} must be a directory")));
        }
    }
    Ok(root)
}

/// The plugin's root: `top` if it has `plugin.toml`, else its only entry if
/// that is a directory that has one.
fn plugin_root(top: &Path, has_manifest: impl Fn(&Path) -> bool, list: impl Fn(&Path) -> Vec<PathBuf>) -> Result<PathBuf, PluginError> {
    if has_manifest(top) {
        return Ok(top.to_path_buf());
    }
    match list(top).as_slice() {
        [only] if has_manifest(only) => Ok(only.clone()),
        _ => Err(bad_tar(format!("no {MANIFEST_FILE} at its top or in its one top-level directory"))),
    }
}

/// The manifest of a plugin directory, validated (the CLI's install prompt).
pub fn read_manifest_from_dir(path: &Path) -> Result<Manifest, PluginError> {
    Manifest::read_dir(path)
}

/// The manifest in a plugin tar, validated, without unpacking it (the CLI's
/// install prompt for a given `.tar`). The same path rules as `install`.
pub fn read_manifest_from_tar(bytes: &[u8]) -> Result<Manifest, PluginError> {
    let mut archive = tar::Archive::new(bytes);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut manifests: BTreeMap<PathBuf, String> = BTreeMap::new();
    let entries = archive.entries().map_err(|e| bad_tar(format!("cannot read: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_tar(format!("cannot read: {e}")))?;
        let raw = entry.path().map_err(|e| bad_tar(format!("bad entry name: {e}")))?.into_owned();
        let rel = safe_relative(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if rel.file_name().is_some_and(|n| n == MANIFEST_FILE) && rel.components().count() <= 2 {
                    let mut text = String::new();
                    entry.by_ref().take(1 << 20).read_to_string(&mut text).map_err(|e| bad_tar(format!("cannot read {}: {e}", raw.display())))?;
                    manifests.insert(rel.parent().map(Path::to_path_buf).unwrap_or_default(), text);
                }
                files.push(rel);
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(bad_tar(format!("{} is a link; plugin archives may only hold files and directories", raw.display())));
            }
            _ => {}
        }
    }
    let tops: std::collections::BTreeSet<PathBuf> =
        files.iter().filter_map(|f| f.components().next()).map(|c| PathBuf::from(c.as_os_str())).collect();
    let root = plugin_root(Path::new(""), |p| manifests.contains_key(p), |_| tops.iter().cloned().collect())?;
    let manifest = Manifest::parse(manifests.get(&root).map(String::as_str).unwrap_or_default())?;
    if !files.contains(&root.join(&manifest.entry)) {
        return Err(PluginError::InvalidArgument(format!("{MANIFEST_FILE}: entry: {} is missing from the plugin", manifest.entry)));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(link) = link {
                h.set_link_name(link).expect("link name");
            }
            // set_path refuses `..`; write the raw name like a hostile tar would.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    const MANIFEST: &[u8] = b"name = \"p\"\nversion = \"1\"\nkinds = [\"volume\"]\nruntime = \"wasm\"\nentry = \"plugin.wasm\"\ncontract = \"0.1\"\n";

    fn unpack_err(bytes: &[u8]) -> String {
        let tmp = tempfile::tempdir().expect("tempdir");
        unpack(&mut &bytes[..], &tmp.path().join("t")).expect_err("must refuse").to_string()
    }

    #[test]
    fn tar_paths_are_confined() {
        let f = tar::EntryType::Regular;
        let e = unpack_err(&tar_of(&[("../evil", f, b"x", None)]));
        assert!(e.contains("'..'"), "{e}");
        let e = unpack_err(&tar_of(&[("/etc/evil", f, b"x", None)]));
        assert!(e.contains("absolute"), "{e}");
        let e = unpack_err(&tar_of(&[("plugin.toml", f, MANIFEST, None), ("l", tar::EntryType::Symlink, b"", Some("/etc"))]));
        assert!(e.contains("is a link"), "{e}");
        let e = unpack_err(&tar_of(&[("h", tar::EntryType::Link, b"", Some("plugin.toml"))]));
        assert!(e.contains("is a link"), "{e}");
        let e = unpack_err(&tar_of(&[("dev", tar::EntryType::Char, b"", None)]));
        assert!(e.contains("only hold files"), "{e}");
        let e = unpack_err(&tar_of(&[("plugin.toml", f, MANIFEST, None), ("cache/x.cwasm", f, b"x", None)]));
        assert!(e.contains("cache"), "{e}");
        let e = unpack_err(&tar_of(&[("a", f, b"x", None), ("a", f, b"y", None)]));
        assert!(e.contains("cannot unpack a"), "{e}");
        let e = unpack_err(&tar_of(&[("x", f, b"x", None)]));
        assert!(e.contains("no plugin.toml"), "{e}");
    }

    #[test]
    fn tar_root_may_be_one_directory() {
        let f = tar::EntryType::Regular;
        let bytes = tar_of(&[("./snap/plugin.toml", f, MANIFEST, None), ("./snap/plugin.wasm", f, b"\0asm", None)]);
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = unpack(&mut &bytes[..], &tmp.path().join("t")).expect("unpack");
        assert_eq!(root, tmp.path().join("t/snap"));
        assert_eq!(read_manifest_from_tar(&bytes).expect("manifest").name, "p");
        let flat = tar_of(&[("plugin.toml", f, MANIFEST, None), ("plugin.wasm", f, b"\0asm", None)]);
        assert_eq!(read_manifest_from_tar(&flat).expect("manifest").entry, "plugin.wasm");
        let missing = tar_of(&[("plugin.toml", f, MANIFEST, None)]);
        assert!(read_manifest_from_tar(&missing).expect_err("no entry").to_string().contains("missing"));
        let linked = tar_of(&[("plugin.toml", f, MANIFEST, None), ("plugin.wasm", tar::EntryType::Symlink, b"", Some("/bin/sh"))]);
        assert!(read_manifest_from_tar(&linked).expect_err("link").to_string().contains("is a link"));
    }
}
