//! snapvol: a berth volume plugin whose volumes can start as a point-in-time
//! copy of another volume (`berth volume create -d snapvol -o from=OTHER new`).
//!
//! Layout in the data dir: `volumes/<name>/_data` (the data) and
//! `volumes/<name>/volume.json` (created_at, options). A volume is made in a
//! hidden temp dir and renamed into place, so a half-made one is never
//! listed; any directory with a volume name shows up, even one made by hand.
//! The same code runs as a component (data dir `/data`) and as a dylib;
//! only the dylib's copies keep owners, modes and absolute symlinks, which WASI
//! cannot create (a component refuses such a copy with `Unsupported`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_sdk::*;
use serde::{Deserialize, Serialize};

/// The snapvol driver: volumes under `<data>/volumes`.
pub struct Snapvol {
    volumes: PathBuf,
}

/// What `volume.json` holds.
#[derive(Serialize, Deserialize, Default)]
struct Meta {
    created_at: Option<String>,
    options: BTreeMap<String, String>,
}

impl VolumeDriver for Snapvol {
    fn new(ctx: PluginContext) -> DriverResult<Self> {
        let volumes = ctx.data_dir.join("volumes");
        fs::create_dir_all(&volumes).map_err(|e| DriverError::io(volumes.display(), e))?;
        Ok(Snapvol { volumes })
    }

    fn create(&self, request: VolumeCreateRequest) -> DriverResult<VolumeInfo> {
        // Lets the tests show a panic stays inside the dylib glue.
        #[cfg(test)]
        if request.name == "panic-in-test" {
            panic!("asked to panic");
        }
        valid_name(&request.name)?;
        if let Some(key) = request.options.keys().find(|k| *k != "from") {
            return Err(DriverError::InvalidArgument(format!("unknown option {key:?} (snapvol knows: from)")));
        }
        let source = match request.options.get("from") {
            Some(from) => {
                valid_name(from).map_err(|e| DriverError::InvalidArgument(format!("from: {e}")))?;
                self.existing(from)
                    .map_err(|_| DriverError::InvalidArgument(format!("from: no volume named {from:?} to copy")))?;
                Some(self.data(from)?)
            }
            None => None,
        };
        // Docker's semantics: creating an existing name again is fine and changes nothing.
        if self.existing(&request.name).is_ok() {
            return self.get(&request.name);
        }
        let staging = self.volumes.join(format!(".new-{}-{}", request.name, nonce()));
        let made = self.stage(&staging, source.as_deref(), &request.options);
        let placed = made.and_then(|()| fs::rename(&staging, self.volumes.join(&request.name)));
        if let Err(e) = placed {
            let _ = fs::remove_dir_all(&staging);
            // Lost a race with another create of the same name: theirs stands.
            if self.existing(&request.name).is_ok() {
                return self.get(&request.name);
            }
            if e.kind() == io::ErrorKind::Unsupported {
                return Err(DriverError::Unsupported(format!("creating volume {}: {e}", request.name)));
            }
            return Err(DriverError::io(format!("creating volume {}", request.name), e));
        }
        self.get(&request.name)
    }

    fn remove(&self, name: &str) -> DriverResult<()> {
        let dir = self.existing(name)?;
        // Out of the listing first, then deleted: a crash halfway leaves only a hidden dir.
        let doomed = self.volumes.join(format!(".del-{name}-{}", nonce()));
        fs::rename(&dir, &doomed).map_err(|e| DriverError::io(format!("removing volume {name}"), e))?;
        fs::remove_dir_all(&doomed).map_err(|e| DriverError::io(format!("removing volume {name}"), e))
    }

    fn mount(&self, name: &str, _caller_id: &str) -> DriverResult<MountPlan> {
        let data = self.data(name)?;
        Ok(MountPlan { spec: MountSpec::Bind { source: data, readonly: false } })
    }

    fn unmount(&self, name: &str, _caller_id: &str) -> DriverResult<()> {
        self.existing(name).map(drop)
    }

    fn path(&self, name: &str) -> DriverResult<Option<String>> {
        Ok(Some(self.data(name)?.display().to_string()))
    }

    fn get(&self, name: &str) -> DriverResult<VolumeInfo> {
        let dir = self.existing(name)?;
        // A volume made by hand has no volume.json; it is still a volume.
        let meta: Meta = fs::read(dir.join("volume.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Ok(VolumeInfo {
            name: name.to_string(),
            mountpoint: Some(dir.join("_data")),
            created_at: meta.created_at,
            status: meta.options,
        })
    }

    fn list(&self) -> DriverResult<Vec<VolumeInfo>> {
        let entries = fs::read_dir(&self.volumes).map_err(|e| DriverError::io(self.volumes.display(), e))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n).is_ok())
            .collect();
        names.sort();
        // A volume removed between read_dir and get is simply not listed.
        Ok(names.iter().filter_map(|n| self.get(n).ok()).collect())
    }
}

impl Snapvol {
    /// The volume's directory, if it is one (a symlink is not: it could point anywhere).
    fn existing(&self, name: &str) -> DriverResult<PathBuf> {
        valid_name(name).map_err(|_| DriverError::NotFound(format!("no volume named {name:?}")))?;
        let dir = self.volumes.join(name);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(dir),
            _ => Err(DriverError::NotFound(format!("no volume named {name:?}"))),
        }
    }

    /// The volume's data dir, made if someone created the volume by hand without it.
    fn data(&self, name: &str) -> DriverResult<PathBuf> {
        let data = self.existing(name)?.join("_data");
        fs::create_dir_all(&data).map_err(|e| DriverError::io(data.display(), e))?;
        Ok(data)
    }

    /// Fills a new volume's staging dir: `_data` (a copy of `source`, if any) and `volume.json`.
    fn stage(&self, staging: &Path, source: Option<&Path>, options: &BTreeMap<String, String>) -> io::Result<()> {
        fs::create_dir(staging)?;
        match source {
            Some(from) => copy_tree(from, &staging.join("_data"))?,
            None => fs::create_dir(staging.join("_data"))?,
        }
        let meta = Meta { created_at: Some(rfc3339(SystemTime::now())), options: options.clone() };
        fs::write(staging.join("volume.json"), serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?)
    }
}

/// Docker's volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_name(name: &str) -> DriverResult<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest: Vec<char> = chars.collect();
    if first_ok && !rest.is_empty() && rest.iter().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c)) {
        Ok(())
    } else {
        Err(DriverError::InvalidArgument(format!(
            "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is allowed"
        )))
    }
}

/// Copies a tree: directories, files with their owners and modes, symlinks as symlinks
/// (never followed, so a link cannot pull outside data into the copy).
/// Sockets, fifos and devices are skipped. Under WASI there is no chmod
/// (new files get the host's default modes) and no absolute symlink.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            #[allow(deprecated)] // the one symlink call both unix and wasi have
            fs::read_link(&src).and_then(|target| fs::soft_link(target, &dst)).map_err(|e| {
                // WASI can neither read nor make absolute symlinks: say so rather than copy part of the volume.
                match cfg!(target_os = "wasi") && e.kind() == io::ErrorKind::PermissionDenied {
                    true => io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "{}: a WebAssembly plugin cannot copy this (absolute?) symlink; the native snapvol can",
                            src.display()
                        ),
                    ),
                    false => e,
                }
            })?;
            keep_owner_and_mode(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)?;
            keep_owner_and_mode(&src, &dst)?;
        }
    }
    // Last, so a read-only source dir does not stop its own copy being filled.
    keep_owner_and_mode(from, to)
}

/// Gives `dst` the owner and mode of `src` where the platform can: a
/// container user must own its files in the copy as in the original. The
/// owner goes first because chown clears set-id bits, which the mode restores.
fn keep_owner_and_mode(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())) {
            // A daemon that is not root cannot give files away; its copies stay its own.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            other => other?,
        }
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    match fs::set_permissions(dst, meta.permissions()) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        other => other,
    }
}

/// A name part no other staging dir of this or another instance uses.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// `2024-05-01T12:34:56Z`: RFC 3339 in UTC without a date crate.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

export_volume_driver!(Snapvol);

#[cfg(test)]
mod tests;
