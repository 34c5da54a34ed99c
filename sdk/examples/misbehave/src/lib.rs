//! misbehave: a volume plugin for the host's tests. It is a plain working
//! driver (volumes are dirs under `<data>/v/`) except when asked to break,
//! by volume name or by `-o misbehave=<how>` on create:
//!
//! - `trap`: `create` panics (a trap in a component);
//! - `loop`: `create` spins forever (the call's deadline must end it);
//! - `oom`: `create` allocates without bound (the memory cap must end it);
//! - `badplan`: `mount` returns a bind of `/etc`, outside the data dir;
//! - `hang`: `mount` writes `<data>/stuck` and spins; while that file
//!   exists `list` spins too (a plugin that looks stuck); `remove hang`
//!   deletes the marker.
//!
//! Everything else behaves, so a test can check the plugin still serves
//! after each misbehaviour.

use std::fs;
use std::path::PathBuf;

use berth_sdk::*;

/// The misbehave driver.
pub struct Misbehave {
    data: PathBuf,
}

impl VolumeDriver for Misbehave {
    fn new(ctx: PluginContext) -> DriverResult<Self> {
        let volumes = ctx.data_dir.join("v");
        fs::create_dir_all(&volumes).map_err(|e| DriverError::io(volumes.display(), e))?;
        Ok(Misbehave { data: ctx.data_dir })
    }

    fn create(&self, request: VolumeCreateRequest) -> DriverResult<VolumeInfo> {
        valid_name(&request.name)?;
        if let Some(key) = request.options.keys().find(|k| *k != "misbehave") {
            return Err(DriverError::InvalidArgument(format!("unknown option {key:?} (misbehave knows: misbehave)")));
        }
        let how = request.options.get("misbehave").map(String::as_str).unwrap_or(&request.name);
        match how {
            "trap" => panic!("misbehave: trap requested"),
            "loop" => spin(),
            "oom" => hog(),
            _ => {}
        }
        let dir = self.dir(&request.name);
        fs::create_dir_all(&dir).map_err(|e| DriverError::io(dir.display(), e))?;
        self.get(&request.name)
    }

    fn remove(&self, name: &str) -> DriverResult<()> {
        let dir = self.existing(name)?;
        if name == "hang" {
            let _ = fs::remove_file(self.data.join("stuck"));
        }
        fs::remove_dir_all(&dir).map_err(|e| DriverError::io(dir.display(), e))
    }

    fn mount(&self, name: &str, _caller_id: &str) -> DriverResult<MountPlan> {
        let dir = self.existing(name)?;
        let source = match name {
            "badplan" => PathBuf::from("/etc"),
            "hang" => {
                let marker = self.data.join("stuck");
                fs::write(&marker, b"mount of hang is spinning").map_err(|e| DriverError::io(marker.display(), e))?;
                spin()
            }
            _ => dir.clone(),
        };
        Ok(MountPlan { spec: MountSpec::Bind { source, readonly: false } })
    }

    fn unmount(&self, name: &str, _caller_id: &str) -> DriverResult<()> {
        self.existing(name).map(drop)
    }

    fn path(&self, name: &str) -> DriverResult<Option<String>> {
        Ok(Some(self.existing(name)?.display().to_string()))
    }

    fn get(&self, name: &str) -> DriverResult<VolumeInfo> {
        let dir = self.existing(name)?;
        Ok(VolumeInfo { name: name.into(), mountpoint: Some(dir), ..Default::default() })
    }

    fn list(&self) -> DriverResult<Vec<VolumeInfo>> {
        if self.data.join("stuck").exists() {
            spin();
        }
        let volumes = self.data.join("v");
        let entries = fs::read_dir(&volumes).map_err(|e| DriverError::io(volumes.display(), e))?;
        let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        names.sort();
        Ok(names.iter().filter_map(|n| self.get(n).ok()).collect())
    }
}

impl Misbehave {
    fn dir(&self, name: &str) -> PathBuf {
        self.data.join("v").join(name)
    }
    fn existing(&self, name: &str) -> DriverResult<PathBuf> {
        let dir = self.dir(name);
        match valid_name(name).is_ok() && dir.is_dir() {
            true => Ok(dir),
            false => Err(DriverError::NotFound(format!("no volume named {name:?}"))),
        }
    }
}

fn valid_name(name: &str) -> DriverResult<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(DriverError::InvalidArgument(format!("invalid volume name {name:?}"))),
    }
}

/// Burns the call's time; `black_box` keeps the loop from being optimised into a trap.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Takes memory a MiB at a time, touching every page, until something stops it.
fn hog() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

export_volume_driver!(Misbehave);

#[cfg(test)]
mod tests {
    use berth_sdk::conformance::{check_mount_plan, check_volume_driver};

    use super::*;

    #[test]
    fn behaves_unless_asked_not_to() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d =
            Misbehave::new(PluginContext { data_dir: dir.path().into(), settings: Default::default() }).expect("new");
        if let Err(f) = check_volume_driver(&d, dir.path()) {
            panic!("{f}");
        }
        d.create(VolumeCreateRequest { name: "badplan".into(), options: Default::default() }).expect("create");
        let plan = d.mount("badplan", "c").expect("mount");
        assert!(check_mount_plan(&plan, dir.path()).is_err());
        let trap = std::panic::catch_unwind(|| {
            d.create(VolumeCreateRequest { name: "x1".into(), options: [("misbehave".into(), "trap".into())].into() })
        });
        assert!(trap.is_err());
        assert_eq!(d.list().expect("list").len(), 1, "still serving");
    }
}
