//! The `local` volume driver, as Docker's: each volume is a directory
//! `<root>/volumes/<name>/_data`; with options (`type`, `device`, `o`) the
//! volume is a mount(2) of that filesystem, which the host mounts on `_data`
//! while containers use it (tmpfs, a bind of a host directory with
//! `o=bind`, nfs, ...). The options live in `opts.json` beside `_data`.
//!
//! Creation and removal are atomic renames: a volume is either complete
//! (directory, `_data`, options) or not visible at all.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_model::drivers::{DriverError, DriverResult, VolumeCapabilities, VolumeDriver};
use berth_model::volume::{Scope, VolumeCreateRequest, VolumeInfo};
use berth_model::{MountPlan, MountSpec};
use serde::{Deserialize, Serialize};

/// The driver's name.
pub const NAME: &str = "local";
/// The directory inside a volume's directory that holds (or is the mount
/// point of) its data. Docker's name, so the layout is familiar.
pub const DATA_DIR: &str = "_data";
const OPTS_FILE: &str = "opts.json";
/// Prefixes of the driver's own scratch entries in the volumes directory;
/// a name starting with `.` can never be a volume (names start alphanumeric).
const TMP_PREFIX: &str = ".tmp-";
const TRASH_PREFIX: &str = ".trash-";

/// Options Docker's local driver accepts.
const VALID_OPTS: &[&str] = &["type", "o", "device", "size"];
/// Options that only make sense together (Docker's `mandatoryOpts`).
const MANDATORY_OPTS: &[(&str, &[&str])] = &[
    ("device", &["type"]),
    ("type", &["device"]),
    ("o", &["device", "type"]),
];

/// A volume's mount options as stored in `opts.json` (Docker's field names).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
struct OptsConfig {
    mount_type: String,
    mount_opts: String,
    mount_device: String,
}

impl OptsConfig {
    fn from_options(opts: &BTreeMap<String, String>) -> OptsConfig {
        let get = |k: &str| opts.get(k).cloned().unwrap_or_default();
        OptsConfig {
            mount_type: get("type"),
            mount_opts: get("o"),
            mount_device: get("device"),
        }
    }

    fn needs_mount(&self) -> bool {
        !self.mount_type.is_empty() || !self.mount_device.is_empty()
    }
}

/// The `local` volume driver rooted at `<root>/volumes`.
pub struct LocalDriver {
    dir: PathBuf,
    /// Callers (container IDs) that have each volume mounted now; orders
    /// create, remove and mount against each other too.
    active: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> DriverError {
    let context = context.into();
    move |e| DriverError::io(context, e)
}

/// Checks a volume name the way Docker's local driver does; the name
/// becomes a directory name, so nothing that could leave the volumes
/// directory gets through.
pub fn validate_name(name: &str) -> DriverResult<()> {
    if name.len() == 1 {
        return Err(DriverError::InvalidArgument(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        ));
    }
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(DriverError::InvalidArgument(format!(
            "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

/// go-units' `RAMInBytes`: `64m`, `1.5G`, `100kb`, `512` (binary multiples).
pub fn parse_ram_size(s: &str) -> Option<i64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        "p" => 1024.0f64.powi(5),
        _ => return None,
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return None;
    }
    Some(bytes as i64)
}

/// Validates `--opt`s like Docker's local driver (same messages).
pub fn validate_options(opts: &BTreeMap<String, String>) -> DriverResult<()> {
    for key in opts.keys() {
        if !VALID_OPTS.contains(&key.as_str()) {
            return Err(DriverError::InvalidArgument(format!(
                "invalid option: {key:?}"
            )));
        }
    }
    if let Some(size) = opts.get("size") {
        let n = parse_ram_size(size)
            .ok_or_else(|| DriverError::InvalidArgument(format!("invalid size: '{size}'")))?;
        if n > 0 {
            // Docker needs project quotas (xfs/ext4 prjquota) for this; use
            // `--opt type=tmpfs --opt device=tmpfs --opt o=size=...` for a size-limited volume.
            return Err(DriverError::InvalidArgument(
                "quota size requested but no quota support".into(),
            ));
        }
    }
    for (opt, required) in MANDATORY_OPTS {
        if opts.contains_key(*opt) {
            for r in *required {
                if !opts.contains_key(*r) {
                    return Err(DriverError::InvalidArgument(format!(
                        "missing required option: {r:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether `o` asks for a bind mount of `device` (Docker: `type=none,o=bind`).
fn is_bind(mount_opts: &str) -> bool {
    mount_opts.split(',').any(|w| w == "bind" || w == "rbind")
}

/// The plan that gives a volume with options its data, mounted on `data`.
fn plan_for(opts: &OptsConfig, data: &Path) -> DriverResult<MountSpec> {
    if !opts.needs_mount() {
        return Ok(MountSpec::Bind {
            source: data.to_path_buf(),
            readonly: false,
        });
    }
    if opts.mount_device.is_empty() {
        return Err(DriverError::InvalidArgument(
            "missing device in volume options".into(),
        ));
    }
    if is_bind(&opts.mount_opts) {
        if !opts.mount_device.starts_with('/') {
            return Err(DriverError::InvalidArgument(format!(
                "failed to mount local volume: bind device {:?} must be an absolute host path",
                opts.mount_device
            )));
        }
        let readonly = opts.mount_opts.split(',').any(|w| w == "ro");
        return Ok(MountSpec::Bind {
            source: PathBuf::from(&opts.mount_device),
            readonly,
        });
    }
    if opts.mount_type == "tmpfs" {
        return Ok(MountSpec::Tmpfs {
            options: opts.mount_opts.clone(),
        });
    }
    Ok(MountSpec::Filesystem {
        fstype: opts.mount_type.clone(),
        device: opts.mount_device.clone(),
        options: opts.mount_opts.clone(),
    })
}

/// RFC 3339 (UTC, seconds) of a Unix time, as Docker prints `CreatedAt`.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A name for a scratch entry that no other call of this process (or a
/// crashed earlier one) uses.
fn scratch_name(prefix: &str, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}{name}-{}-{nanos}", std::process::id())
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl LocalDriver {
    /// The driver for data root `root` (volumes in `<root>/volumes`, created
    /// mode 0701 like Docker's). Removes scratch entries a crash left.
    pub fn new(root: &Path) -> DriverResult<LocalDriver> {
        let dir = root.join("volumes");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o701)
            .create(&dir)
            .map_err(io_ctx(format!(
                "creating the volumes directory {}",
                dir.display()
            )))?;
        let entries = fs::read_dir(&dir).map_err(io_ctx(format!("reading {}", dir.display())))?;
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) || name.starts_with(TRASH_PREFIX) {
                let path = e.path();
                if let Err(err) = fs::remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), error = %err, "removing a half-created or half-removed volume");
                }
            }
        }
        Ok(LocalDriver {
            dir,
            active: Mutex::new(BTreeMap::new()),
        })
    }

    /// The directory holding volume `name`.
    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where volume `name`'s data is (or is mounted).
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join(DATA_DIR)
    }

    fn exists(&self, name: &str) -> bool {
        self.data_path(name).is_dir()
    }

    fn require(&self, name: &str) -> DriverResult<()> {
        validate_name(name)?;
        if !self.exists(name) {
            return Err(DriverError::NotFound("no such volume".into()));
        }
        Ok(())
    }

    fn read_opts(&self, name: &str) -> DriverResult<OptsConfig> {
        let path = self.volume_dir(name).join(OPTS_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                DriverError::io(
                    format!("reading the options of volume {name} ({})", path.display()),
                    io::Error::other(e),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OptsConfig::default()),
            Err(e) => Err(DriverError::io(format!("reading {}", path.display()), e)),
        }
    }

    fn info(&self, name: &str) -> VolumeInfo {
        let created_at = fs::metadata(self.volume_dir(name))
            .ok()
            .map(|m| rfc3339(m.ctime()));
        VolumeInfo {
            name: name.to_string(),
            mountpoint: Some(self.data_path(name)),
            created_at,
            status: BTreeMap::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeSet<String>>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds the volume in a scratch directory and renames it into place.
    fn create_atomically(&self, name: &str, opts: &OptsConfig) -> DriverResult<()> {
        let tmp = self.dir.join(scratch_name(TMP_PREFIX, name));
        let result = (|| -> io::Result<()> {
            let mut b = fs::DirBuilder::new();
            b.mode(0o755);
            b.create(&tmp)?;
            b.create(tmp.join(DATA_DIR))?;
            if opts.needs_mount() {
                let json = serde_json::to_vec(opts).map_err(io::Error::other)?;
                let mut f = fs::File::create(tmp.join(OPTS_FILE))?;
                f.write_all(&json)?;
                f.sync_all()?;
            }
            fsync_dir(&tmp)?;
            fs::rename(&tmp, self.volume_dir(name))?;
            fsync_dir(&self.dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) {
                return Err(DriverError::Conflict(format!(
                    "volume already exists under {}",
                    self.volume_dir(name).display()
                )));
            }
            return Err(DriverError::io(
                format!("creating volume {name} in {}", self.dir.display()),
                e,
            ));
        }
        Ok(())
    }
}

impl VolumeDriver for LocalDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> VolumeCapabilities {
        VolumeCapabilities {
            scope: Scope::Local,
        }
    }

    fn create(&self, request: &VolumeCreateRequest) -> DriverResult<VolumeInfo> {
        validate_name(&request.name)?;
        validate_options(&request.options)?;
        let opts = OptsConfig::from_options(&request.options);
        // Checked now rather than at the first mount: a bind of a relative path can never work.
        if opts.needs_mount() && is_bind(&opts.mount_opts) {
            plan_for(&opts, &self.data_path(&request.name))?;
        }
        let _g = self.lock();
        // Docker returns an existing volume as it is.
        if !self.exists(&request.name) {
            self.create_atomically(&request.name, &opts)?;
        }
        Ok(self.info(&request.name))
    }

    fn remove(&self, name: &str) -> DriverResult<()> {
        self.require(name)?;
        let active = self.lock();
        let data = self.data_path(name);
        if active.get(name).is_some_and(|c| !c.is_empty()) || berth_runtime::mount::is_mount_point(&data) {
            return Err(DriverError::Conflict("volume has active mounts".into()));
        }
        // Out of sight first, so a crash never leaves half a volume visible.
        let trash = self.dir.join(scratch_name(TRASH_PREFIX, name));
        fs::rename(self.volume_dir(name), &trash)
            .map_err(io_ctx(format!("removing volume {name}")))?;
        drop(active);
        if let Err(e) = fs::remove_dir_all(&trash) {
            // The volume is gone; its bytes go at the next daemon start.
            tracing::warn!(path = %trash.display(), error = %e, "deleting the data of a removed volume");
        }
        Ok(())
    }

    fn mount(&self, name: &str, caller_id: &str) -> DriverResult<MountPlan> {
        self.require(name)?;
        let mut active = self.lock();
        let spec = plan_for(&self.read_opts(name)?, &self.data_path(name))?;
        active
            .entry(name.to_string())
            .or_default()
            .insert(caller_id.to_string());
        Ok(MountPlan { spec })
    }

    fn unmount(&self, name: &str, caller_id: &str) -> DriverResult<()> {
        let mut active = self.lock();
        if let Some(callers) = active.get_mut(name) {
            callers.remove(caller_id);
            if callers.is_empty() {
                active.remove(name);
            }
        }
        Ok(())
    }

    fn path(&self, name: &str) -> DriverResult<Option<PathBuf>> {
        self.require(name)?;
        Ok(Some(self.data_path(name)))
    }

    fn get(&self, name: &str) -> DriverResult<VolumeInfo> {
        self.require(name)?;
        Ok(self.info(name))
    }

    fn list(&self) -> DriverResult<Vec<VolumeInfo>> {
        let entries =
            fs::read_dir(&self.dir).map_err(io_ctx(format!("reading {}", self.dir.display())))?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if validate_name(&name).is_ok() && self.exists(&name) {
                out.push(self.info(&name));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(name: &str, pairs: &[(&str, &str)]) -> VolumeCreateRequest {
        VolumeCreateRequest {
            name: name.into(),
            options: opts(pairs),
        }
    }

    #[test]
    fn names_like_docker() {
        for ok in ["ab", "a1", "db-data", "x.y_z", "0abc", &"a".repeat(64)] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let err = validate_name("a").expect_err("too short");
        assert!(err.to_string().contains("too short"), "{err}");
        for bad in [
            "",
            "-ab",
            ".ab",
            "_ab",
            "a/b",
            "..",
            "a b",
            "ab/../../etc",
            "é1",
        ] {
            let err = validate_name(bad).expect_err(bad);
            if bad.len() > 1 {
                assert!(
                    err.to_string()
                        .contains("includes invalid characters for a local volume name"),
                    "{bad}: {err}"
                );
            }
        }
    }

    #[test]
    fn options_like_docker() {
        validate_options(&opts(&[])).expect("none");
        validate_options(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=64m,uid=1000"),
        ]))
        .expect("tmpfs");
        let e = validate_options(&opts(&[("foo", "bar")])).expect_err("unknown");
        assert_eq!(e.to_string(), "invalid option: \"foo\"");
        let e = validate_options(&opts(&[("type", "tmpfs")])).expect_err("no device");
        assert_eq!(e.to_string(), "missing required option: \"device\"");
        let e = validate_options(&opts(&[("device", "/x")])).expect_err("no type");
        assert_eq!(e.to_string(), "missing required option: \"type\"");
        let e = validate_options(&opts(&[("o", "bind")])).expect_err("o alone");
        assert!(e.to_string().starts_with("missing required option"), "{e}");
        let e = validate_options(&opts(&[("size", "10m")])).expect_err("quota");
        assert_eq!(e.to_string(), "quota size requested but no quota support");
        let e = validate_options(&opts(&[("size", "ten")])).expect_err("bad size");
        assert_eq!(e.to_string(), "invalid size: 'ten'");
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(parse_ram_size("64m"), Some(64 << 20));
        assert_eq!(parse_ram_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_ram_size("100kb"), Some(100 << 10));
        assert_eq!(parse_ram_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_ram_size("512"), Some(512));
        assert_eq!(parse_ram_size("x"), None);
        assert_eq!(parse_ram_size("1q"), None);
        assert_eq!(parse_ram_size(""), None);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(berth_runtime::mount::unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(berth_runtime::mount::unescape_mountinfo("/plain"), b"/plain");
        assert_eq!(berth_runtime::mount::unescape_mountinfo("/end\\"), b"/end\\");
    }

    #[test]
    fn create_list_mount_remove() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = LocalDriver::new(tmp.path()).expect("driver");
        let info = d.create(&req("data", &[])).expect("create");
        let data = tmp.path().join("volumes/data/_data");
        assert_eq!(info.mountpoint.as_deref(), Some(data.as_path()));
        assert!(data.is_dir());
        assert!(info.created_at.as_deref().is_some_and(|c| c.ends_with('Z')));
        fs::write(data.join("f"), b"x").expect("write");
        // Creating again returns the same volume, data intact.
        d.create(&req("data", &[])).expect("again");
        assert!(data.join("f").exists());
        assert_eq!(d.path("data").expect("path"), Some(data.clone()));
        assert_eq!(
            d.list()
                .expect("list")
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            vec!["data"]
        );

        let plan = d.mount("data", "c1").expect("mount");
        assert_eq!(
            plan.spec,
            MountSpec::Bind {
                source: data.clone(),
                readonly: false
            }
        );
        d.mount("data", "c2").expect("second user");
        let err = d.remove("data").expect_err("in use");
        assert!(matches!(err, DriverError::Conflict(_)), "{err}");
        d.unmount("data", "c1").expect("unmount c1");
        assert!(d.remove("data").is_err(), "c2 still has it");
        d.unmount("data", "c2").expect("unmount c2");
        d.unmount("data", "c2").expect("unmount is idempotent");
        d.remove("data").expect("remove");
        assert!(!tmp.path().join("volumes/data").exists());
        assert!(matches!(d.get("data"), Err(DriverError::NotFound(_))));
        assert!(matches!(d.remove("data"), Err(DriverError::NotFound(_))));
        assert!(d.list().expect("list").is_empty());
        // No scratch entries left behind.
        assert_eq!(
            fs::read_dir(tmp.path().join("volumes"))
                .expect("dir")
                .count(),
            0
        );
    }

    #[test]
    fn options_become_plans_and_persist() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = LocalDriver::new(tmp.path()).expect("driver");
        d.create(&req(
            "t1",
            &[
                ("type", "tmpfs"),
                ("device", "tmpfs"),
                ("o", "size=1m,uid=1000"),
            ],
        ))
        .expect("tmpfs");
        assert_eq!(
            d.mount("t1", "c").expect("plan").spec,
            MountSpec::Tmpfs {
                options: "size=1m,uid=1000".into()
            }
        );
        let host = tmp.path().join("src");
        fs::create_dir(&host).expect("mkdir");
        let hp = host.to_string_lossy().to_string();
        d.create(&req(
            "b1",
            &[("type", "none"), ("device", &hp), ("o", "bind,ro")],
        ))
        .expect("bind");
        assert_eq!(
            d.mount("b1", "c").expect("plan").spec,
            MountSpec::Bind {
                source: host.clone(),
                readonly: true
            }
        );
        d.create(&req(
            "n1",
            &[
                ("type", "nfs"),
                ("device", ":/export"),
                ("o", "addr=10.0.0.1"),
            ],
        ))
        .expect("nfs");
        assert_eq!(
            d.mount("n1", "c").expect("plan").spec,
            MountSpec::Filesystem {
                fstype: "nfs".into(),
                device: ":/export".into(),
                options: "addr=10.0.0.1".into()
            }
        );
        // A fresh driver on the same root reads the options back.
        let d2 = LocalDriver::new(tmp.path()).expect("driver again");
        assert_eq!(
            d2.mount("t1", "c").expect("plan").spec,
            MountSpec::Tmpfs {
                options: "size=1m,uid=1000".into()
            }
        );
        let e = d
            .create(&req(
                "b2",
                &[("type", "none"), ("device", "rel/dir"), ("o", "bind")],
            ))
            .expect_err("relative bind");
        assert!(e.to_string().contains("absolute"), "{e}");
        assert!(
            !tmp.path().join("volumes/b2").exists(),
            "a refused volume leaves nothing"
        );
        let e = d
            .create(&req("bad", &[("nope", "1")]))
            .expect_err("bad option");
        assert!(matches!(e, DriverError::InvalidArgument(_)));
        assert!(!tmp.path().join("volumes/bad").exists());
        let e = d.create(&req("../x", &[])).expect_err("bad name");
        assert!(matches!(e, DriverError::InvalidArgument(_)));
    }

    #[test]
    fn scratch_left_by_a_crash_is_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vols = tmp.path().join("volumes");
        fs::create_dir_all(vols.join(".tmp-x-1-2/_data")).expect("mkdir");
        fs::create_dir_all(vols.join(".trash-y-1-2/_data")).expect("mkdir");
        fs::create_dir_all(vols.join("keep/_data")).expect("mkdir");
        let d = LocalDriver::new(tmp.path()).expect("driver");
        let names: Vec<String> = fs::read_dir(&vols)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["keep".to_string()]);
        assert_eq!(d.list().expect("list").len(), 1);
    }
}
