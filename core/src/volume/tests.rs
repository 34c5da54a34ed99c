//! Engine-level volume tests that need no root: the volume commands,
//! resolving a container's mounts at create (and undoing it), in-use
//! refusals, anonymous volume removal, copy-up and `-v` host dirs at start.
//! A directory-backed test driver stands in for `local` (core never
//! depends on berth-drivers); the storage driver's plan is a plain bind,
//! so nothing here mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_model::container::{ContainerConfig, HostConfig, MountRequest};
use berth_model::drivers::{DriverError, DriverResult, VolumeCapabilities, VolumeDriver};
use berth_model::volume::{VolumeCreateRequest, VolumeInfo};
use berth_model::{Digest, MountPlan, MountSpec};
use serde_json::json;

use crate::filters::Filters;
use crate::drivers::Drivers;
use crate::engine::Engine;
use crate::config::EngineConfig;
use crate::error::ErrorKind;
use crate::image::tests::{tar_of, DirDriver};
use super::{VolumeCreate, ANONYMOUS_LABEL};

/// Volumes as plain directories; remembers its callers like `local`.
struct TestVolumes {
    name: String,
    root: PathBuf,
    callers: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Volumes whose name starts with `tmp` are a 1 MiB tmpfs the host mounts.
    tmpfs: bool,
    /// When set, the next `remove` says it started and waits to be released.
    held: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl TestVolumes {
    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl VolumeDriver for TestVolumes {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> VolumeCapabilities {
        VolumeCapabilities::default()
    }
    fn create(&self, r: &VolumeCreateRequest) -> DriverResult<VolumeInfo> {
        if r.options.contains_key("bad") {
            return Err(DriverError::InvalidArgument(
                "invalid option: \"bad\"".into(),
            ));
        }
        fs::create_dir_all(self.dir(&r.name)).map_err(|e| DriverError::io("create", e))?;
        self.get(&r.name)
    }
    fn remove(&self, name: &str) -> DriverResult<()> {
        let held = self.held.lock().unwrap().take();
        if let Some((entered, release)) = held {
            entered.send(()).unwrap();
            release.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        }
        if self
            .callers
            .lock()
            .unwrap()
            .get(name)
            .is_some_and(|c| !c.is_empty())
        {
            return Err(DriverError::Conflict("volume has active mounts".into()));
        }
        fs::remove_dir_all(self.dir(name)).map_err(|e| DriverError::io("remove", e))
    }
    fn mount(&self, name: &str, caller: &str) -> DriverResult<MountPlan> {
        self.callers
            .lock()
            .unwrap()
            .entry(name.into())
            .or_default()
            .insert(caller.into());
        if self.tmpfs && name.starts_with("tmp") {
            return Ok(MountPlan {
                spec: MountSpec::Tmpfs {
                    options: "size=1m,mode=755".into(),
                },
            });
        }
        Ok(MountPlan {
            spec: MountSpec::Bind {
                source: self.dir(name),
                readonly: false,
            },
        })
    }
    fn unmount(&self, name: &str, caller: &str) -> DriverResult<()> {
        if let Some(c) = self.callers.lock().unwrap().get_mut(name) {
            c.remove(caller);
        }
        Ok(())
    }
    fn path(&self, name: &str) -> DriverResult<Option<PathBuf>> {
        self.get(name).map(|i| i.mountpoint)
    }
    fn get(&self, name: &str) -> DriverResult<VolumeInfo> {
        if !self.dir(name).is_dir() {
            return Err(DriverError::NotFound("no such volume".into()));
        }
        Ok(VolumeInfo {
            name: name.into(),
            mountpoint: Some(self.dir(name)),
            created_at: None,
            status: BTreeMap::new(),
        })
    }
    fn list(&self) -> DriverResult<Vec<VolumeInfo>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(|e| DriverError::io("list", e))? {
            let name = e
                .map_err(|e| DriverError::io("list", e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            out.push(self.get(&name)?);
        }
        Ok(out)
    }
}

struct Env {
    dir: tempfile::TempDir,
    local: Arc<TestVolumes>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("layers")).expect("layers");
        fs::create_dir_all(dir.path().join("vols/local")).expect("vols");
        fs::create_dir_all(dir.path().join("vols/other")).expect("vols");
        let local = Arc::new(TestVolumes {
            name: "local".into(),
            root: dir.path().join("vols/local"),
            callers: Default::default(),
            tmpfs: true,
            held: Mutex::new(None),
        });
        Env { dir, local }
    }
    fn open(&self) -> Arc<Engine> {
        let drivers = Drivers::default();
        drivers.volume.register("local", self.local.clone());
        let other = TestVolumes {
            name: "other".into(),
            root: self.dir.path().join("vols/other"),
            callers: Default::default(),
            tmpfs: false,
            held: Mutex::new(None),
        };
        drivers.volume.register("other", Arc::new(other));
        let storage = Arc::new(DirDriver {
            root: self.dir.path().join("layers"),
        });
        let config = EngineConfig::new(self.dir.path().join("root"), self.dir.path().join("run"));
        Engine::open(config, storage, drivers).expect("engine")
    }
    fn volume_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.local.root)
            .expect("dir")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
    fn host(&self, p: &str) -> PathBuf {
        self.dir.path().join("host").join(p)
    }
}

/// An image `box` with `/data/hello` (mode 0640, owner 1000) and `VOLUME /data`.
fn load_box(engine: &Engine) {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(body.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, body).expect("tar");
    };
    add("bin/sh", tar::EntryType::Regular, 0o755, b"#!");
    add("data/", tar::EntryType::Directory, 0o750, b"");
    add(
        "data/hello",
        tar::EntryType::Regular,
        0o640,
        b"from the image",
    );
    add("etc/conf/", tar::EntryType::Directory, 0o755, b"");
    add("etc/conf/a", tar::EntryType::Regular, 0o644, b"a");
    let layer = b.into_inner().expect("tar");
    let diff_id = Digest::of(&layer);
    let cfg = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Volumes": {"/data": {}}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    })
    .to_string()
    .into_bytes();
    let id = Digest::of(&cfg);
    let manifest = json!([{"Config": format!("{}.json", id.hex()), "RepoTags": ["box:latest"], "Layers": ["l/layer.tar"]}]);
    let files: Vec<(String, Vec<u8>)> = vec![
        ("l/layer.tar".into(), layer),
        (format!("{}.json", id.hex()), cfg),
        ("manifest.json".into(), manifest.to_string().into_bytes()),
    ];
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    engine
        .images().load(&mut &tar_of(&entries)[..], &mut |_| {})
        .expect("load");
}

fn cfg() -> ContainerConfig {
    ContainerConfig {
        image: "box".into(),
        cmd: Some(vec!["sh".into()]),
        ..Default::default()
    }
}

fn binds(b: &[&str]) -> HostConfig {
    HostConfig {
        binds: Some(b.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn mount(v: serde_json::Value) -> MountRequest {
    serde_json::from_value(v).expect("mount")
}

fn create(engine: &Engine, name: &str, labels: &[(&str, &str)]) -> super::VolumeDetails {
    engine
        .volumes().create(VolumeCreate {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
        .expect("create volume")
}

fn names(engine: &Engine, filters: &[(&str, &str)]) -> Vec<String> {
    let mut f = Filters::new();
    for (k, v) in filters {
        f.entry(k.to_string()).or_default().push(v.to_string());
    }
    engine
        .volumes().list(&f, false)
        .expect("list")
        .volumes
        .into_iter()
        .map(|v| v.record.name)
        .collect()
}

#[test]
fn a_driver_slow_to_remove_holds_up_only_that_volume() {
    let env = Env::new();
    let engine = env.open();
    create(&engine, "slowvol", &[]);
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    *env.local.held.lock().unwrap() = Some((entered_tx, release_rx));
    let remover = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.volumes().remove("slowvol", false))
    };
    entered.recv_timeout(std::time::Duration::from_secs(10)).expect("the remove reached the driver");
    // Meanwhile other volumes are made and pruned; the one being removed is its remover's.
    create(&engine, "other", &[]);
    let (pruned, _) = engine.volumes().prune(&Filters::new(), true).expect("prune");
    assert_eq!(pruned, vec!["other".to_string()]);
    release.send(()).unwrap();
    remover.join().unwrap().expect("the slow remove succeeds");
    assert!(engine.volumes().list(&Filters::new(), false).expect("ls").volumes.is_empty());
}

#[test]
fn volume_commands_like_docker() {
    let env = Env::new();
    let engine = env.open();
    let v = create(&engine, "data", &[("team", "db")]);
    assert_eq!(
        (v.record.driver.as_str(), v.record.anonymous),
        ("local", false)
    );
    assert_eq!(v.mountpoint, env.local.dir("data").display().to_string());
    assert!(
        v.record.created_at.ends_with('Z'),
        "{}",
        v.record.created_at
    );
    // Creating it again returns it; another driver for the same name is a conflict.
    assert_eq!(
        create(&engine, "data", &[])
            .record
            .labels
            .get("team")
            .map(String::as_str),
        Some("db")
    );
    let err = engine
        .volumes().create(VolumeCreate {
            name: "data".into(),
            driver: "other".into(),
            ..Default::default()
        })
        .expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "create data: driver 'local' already has volume 'data': volume name must be unique"
    );
    let err = engine
        .volumes().create(VolumeCreate {
            name: "a b".into(),
            ..Default::default()
        })
        .expect_err("name");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string()
            .starts_with("create a b: \"a b\" includes invalid characters"),
        "{err}"
    );
    let err = engine
        .volumes().create(VolumeCreate {
            name: "x1".into(),
            driver: "nope".into(),
            ..Default::default()
        })
        .expect_err("driver");
    assert_eq!(
        err.to_string(),
        "error looking up volume plugin nope: plugin \"nope\" not found"
    );
    let opts = [("bad".to_string(), "1".to_string())].into_iter().collect();
    let err = engine
        .volumes().create(VolumeCreate {
            name: "x2".into(),
            driver_opts: opts,
            ..Default::default()
        })
        .expect_err("opt");
    assert_eq!(
        (err.kind(), err.to_string()),
        (
            ErrorKind::InvalidArgument,
            "create x2: invalid option: \"bad\"".to_string()
        )
    );
    let unnamed = engine
        .volumes().create(VolumeCreate::default())
        .expect("random name");
    assert_eq!(unnamed.record.name.len(), 64);
    assert!(
        !unnamed.record.anonymous,
        "`volume create` without a name is not anonymous"
    );

    create(&engine, "logs", &[("team", "web")]);
    assert_eq!(names(&engine, &[]).len(), 3);
    assert_eq!(names(&engine, &[("label", "team=db")]), vec!["data"]);
    assert_eq!(names(&engine, &[("label", "team")]), vec!["data", "logs"]);
    assert_eq!(names(&engine, &[("name", "og")]), vec!["logs"]);
    assert_eq!(names(&engine, &[("driver", "other")]), Vec::<String>::new());
    assert_eq!(names(&engine, &[("dangling", "true")]).len(), 3);
    let mut bad = Filters::new();
    bad.insert("colour".into(), vec!["red".into()]);
    assert_eq!(
        engine
            .volumes().list(&bad, false)
            .expect_err("filter")
            .to_string(),
        "invalid filter 'colour'"
    );

    fs::write(env.local.dir("logs").join("f"), b"12345").expect("write");
    let sized = engine.volumes().list(&Filters::new(), true).expect("sizes");
    assert_eq!(
        sized
            .volumes
            .iter()
            .find(|v| v.record.name == "logs")
            .and_then(|v| v.size),
        Some(5)
    );

    let err = engine.volumes().find("nope", false).expect_err("missing");
    assert_eq!(
        (err.kind(), err.to_string()),
        (ErrorKind::NotFound, "get nope: no such volume".to_string())
    );
    assert_eq!(
        engine
            .volumes().remove("nope", false)
            .expect_err("missing")
            .to_string(),
        "get nope: no such volume"
    );
    engine
        .volumes().remove("nope", true)
        .expect("-f ignores a missing volume");
    engine.volumes().remove("logs", false).expect("rm");
    assert!(!env.local.dir("logs").exists());
    assert_eq!(names(&engine, &[]).len(), 2);

    // A volume the driver has but the store does not is adopted by ls.
    fs::create_dir(env.local.dir("byhand")).expect("mkdir");
    assert!(names(&engine, &[]).contains(&"byhand".to_string()));
    engine.volumes().find("byhand", false).expect("adopted");
}

#[test]
fn create_resolves_mounts_like_docker_inspect() {
    let env = Env::new();
    let engine = env.open();
    load_box(&engine);
    let hc = HostConfig {
        binds: Some(vec![
            "named:/srv/named:ro".into(),
            format!("{}:/srv/bind", env.host("b").display()),
        ]),
        mounts: Some(vec![
            mount(json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576}})),
            mount(
                json!({"Type": "volume", "Source": "viamount", "Target": "/srv/m", "VolumeOptions": {"NoCopy": true}}),
            ),
        ]),
        tmpfs: Some(
            [("/run/x".to_string(), "size=1m".to_string())]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    };
    let mut c = cfg();
    c.volumes = Some(
        [("/anon".to_string(), Default::default())]
            .into_iter()
            .collect(),
    );
    let (rec, _) = engine.containers().create(Some("c1"), c, hc, Default::default()).expect("create");
    let by_dest: BTreeMap<&str, &berth_model::volume::MountPoint> = rec
        .mounts
        .iter()
        .map(|m| (m.destination.as_str(), m))
        .collect();
    assert_eq!(
        by_dest.keys().copied().collect::<Vec<_>>(),
        vec!["/anon", "/data", "/srv/bind", "/srv/m", "/srv/named", "/t"]
    );
    let named = by_dest["/srv/named"];
    assert_eq!(
        (
            named.kind.as_str(),
            named.name.as_str(),
            named.driver.as_str()
        ),
        ("volume", "named", "local")
    );
    assert_eq!(
        (named.mode.as_str(), named.rw, named.propagation.as_str()),
        ("ro", false, "")
    );
    assert_eq!(named.source, env.local.dir("named").display().to_string());
    let bind = by_dest["/srv/bind"];
    assert_eq!(
        (
            bind.kind.as_str(),
            bind.mode.as_str(),
            bind.rw,
            bind.propagation.as_str()
        ),
        ("bind", "", true, "rprivate")
    );
    assert!(
        !env.host("b").exists(),
        "a -v host dir is made at start, as Docker does"
    );
    let m = by_dest["/srv/m"];
    assert_eq!((m.mode.as_str(), m.no_copy), ("z", true));
    for anon in ["/anon", "/data"] {
        let a = by_dest[anon];
        assert_eq!(
            (a.kind.as_str(), a.name.len(), a.mode.as_str(), a.rw),
            ("volume", 64, "", true)
        );
        let v = engine.volumes().find(&a.name, false).expect("anonymous volume");
        assert!(v.record.anonymous && v.record.labels.contains_key(ANONYMOUS_LABEL));
        assert_eq!(v.used_by, vec![rec.id.to_string()]);
    }
    assert_eq!(by_dest["/t"].tmpfs_options, "size=1m");
    assert!(
        !by_dest.contains_key("/run/x"),
        "--tmpfs is not a mount point in Docker's inspect"
    );
    assert!(!engine.volumes().find("named", false).expect("named").record.anonymous);

    // In use: named and anonymous volumes cannot be removed or pruned.
    let err = engine.volumes().remove("named", false).expect_err("in use");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!("remove named: volume is in use - [{}]", rec.id)
    );
    assert!(engine
        .volumes().prune(&Filters::new(), true)
        .expect("prune")
        .0
        .is_empty());
    assert_eq!(
        names(&engine, &[("dangling", "true")]),
        Vec::<String>::new()
    );

    // `rm -v`: anonymous volumes go, named ones stay.
    let anon_names: Vec<String> = ["/anon", "/data"]
        .iter()
        .map(|d| by_dest[d].name.clone())
        .collect();
    engine.containers().remove("c1", false, true).expect("rm -v");
    for n in &anon_names {
        assert_eq!(
            engine.volumes().find(n, false).expect_err("gone").kind(),
            ErrorKind::NotFound
        );
        assert!(!env.local.dir(n).exists());
    }
    assert_eq!(env.volume_dirs(), vec!["named", "viamount"]);
    engine.volumes().remove("named", false).expect("unused now");

    // Without -v anonymous volumes stay; prune takes them (and named ones only with all).
    let (rec, _) = engine
        .containers().create(None, cfg(), binds(&["keep:/k"]), Default::default())
        .expect("create");
    let anon = rec
        .mounts
        .iter()
        .find(|m| m.destination == "/data")
        .expect("image volume")
        .name
        .clone();
    engine
        .containers().remove(rec.id.as_str(), false, false)
        .expect("rm");
    assert!(engine.volumes().find(&anon, false).is_ok());
    let (pruned, _) = engine.volumes().prune(&Filters::new(), false).expect("prune");
    assert_eq!(pruned, vec![anon]);
    let mut f = Filters::new();
    f.insert("label!".into(), vec!["nothing".into()]);
    let (pruned, _) = engine.volumes().prune(&f, true).expect("prune -a");
    assert_eq!(pruned, vec!["keep".to_string(), "viamount".to_string()]);
    assert!(env.volume_dirs().is_empty());
}

#[test]
fn bad_mounts_fail_like_docker_and_leave_no_volume() {
    let env = Env::new();
    let engine = env.open();
    load_box(&engine);
    let fail = |hc: HostConfig| {
        engine
            .containers().create(None, cfg(), hc, Default::default())
            .expect_err("must fail")
    };
    let err = fail(binds(&["v1:/a", "v2:/a"]));
    assert_eq!(
        (err.kind(), err.to_string()),
        (
            ErrorKind::InvalidArgument,
            "Duplicate mount point: /a".to_string()
        )
    );
    let err = fail(HostConfig {
        binds: Some(vec!["v3:/b".into()]),
        tmpfs: Some([("/b".to_string(), String::new())].into_iter().collect()),
        ..Default::default()
    });
    assert_eq!(err.to_string(), "Duplicate mount point: /b");
    let missing = env.host("missing");
    let err = fail(HostConfig {
        binds: Some(vec!["v4:/c".into()]),
        mounts: Some(vec![mount(
            json!({"Type": "bind", "Source": missing, "Target": "/m"}),
        )]),
        ..Default::default()
    });
    assert_eq!(
        err.to_string(),
        format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {}",
            missing.display()
        )
    );
    assert!(!missing.exists(), "--mount never makes a bind source");
    let err = fail(binds(&["v5:/d:bogus"]));
    assert_eq!(err.to_string(), "invalid mode: bogus");
    let err = fail(HostConfig {
        volumes_from: Some(vec!["ghost".into()]),
        ..Default::default()
    });
    assert_eq!(
        (err.kind(), err.to_string()),
        (ErrorKind::NotFound, "No such container: ghost".to_string())
    );
    // A create that fails after the mounts were planned (a name conflict) undoes them too.
    engine
        .containers().create(Some("taken"), cfg(), HostConfig::default(), Default::default())
        .expect("first");
    let before = env.volume_dirs();
    let err = engine
        .containers().create(Some("taken"), cfg(), binds(&["late:/late"]), Default::default())
        .expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        env.volume_dirs(),
        before,
        "no volume of a failed create is left"
    );
    assert!(
        names(&engine, &[])
            .iter()
            .all(|n| !n.starts_with('v') && n != "late"),
        "{:?}",
        names(&engine, &[])
    );
}

#[test]
fn volumes_from_chains_and_modes() {
    let env = Env::new();
    let engine = env.open();
    load_box(&engine);
    let hostdir = env.host("h");
    let (src, _) = engine
        .containers().create(
            Some("store"),
            cfg(),
            binds(&["shared:/shared", &format!("{}:/h:ro", hostdir.display())]), Default::default())
        .expect("source");
    let hc = HostConfig {
        volumes_from: Some(vec!["store:ro".into()]),
        ..Default::default()
    };
    let (mid, _) = engine
        .containers().create(Some("mid"), cfg(), hc, Default::default())
        .expect("volumes-from");
    let hc = HostConfig {
        volumes_from: Some(vec!["mid".into()]),
        ..Default::default()
    };
    let (end, _) = engine
        .containers().create(Some("end"), cfg(), hc, Default::default())
        .expect("chain");
    for rec in [&mid, &end] {
        assert_eq!(rec.mounts.len(), src.mounts.len(), "{:?}", rec.mounts);
        for m in &rec.mounts {
            let orig = src
                .mounts
                .iter()
                .find(|o| o.destination == m.destination)
                .expect("same paths");
            assert_eq!(
                (m.name.as_str(), m.source.as_str(), m.kind.as_str()),
                (orig.name.as_str(), orig.source.as_str(), orig.kind.as_str())
            );
            assert!(!m.rw, "{} is read-only through :ro", m.destination);
            assert!(m.mode.is_empty());
        }
    }
    // The image's /data of `store` is shared, so `mid` makes no anonymous volume of its own.
    let data = |r: &berth_model::container::ContainerRecord| {
        r.mounts
            .iter()
            .find(|m| m.destination == "/data")
            .map(|m| m.name.clone())
    };
    assert_eq!(data(&mid), data(&src));
    let err = engine
        .volumes().remove("shared", false)
        .expect_err("in use by three");
    for id in [&src.id, &mid.id, &end.id] {
        assert!(err.to_string().contains(id.as_str()), "{err}");
    }
    // rm -v of a borrower keeps the owner's anonymous volume.
    engine.containers().remove("end", false, true).expect("rm end");
    assert!(engine.volumes().find(&data(&src).expect("anon"), false).is_ok());
    assert_eq!(
        engine
            .containers().create(
                None,
                cfg(),
                HostConfig {
                    volumes_from: Some(vec!["mid:rshared".into()]),
                    ..Default::default()
                }, Default::default())
            .expect_err("propagation")
            .to_string(),
        "cannot use propagation properties while importing volumes from data container"
    );
}

#[test]
fn start_mounts_copy_up_and_counts() {
    let env = Env::new();
    let engine = env.open();
    load_box(&engine);
    let hostdir = env.host("made/by/v");
    let hc = HostConfig {
        binds: Some(vec![
            "filled:/data".into(),
            format!("{}:/etc/conf", hostdir.display()),
        ]),
        mounts: Some(vec![mount(
            json!({"Type": "volume", "Source": "empty", "Target": "/etc/conf/x",
            "VolumeOptions": {"NoCopy": true}}),
        )]),
        tmpfs: Some(
            [("/run/t".to_string(), "size=1m".to_string())]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    };
    let (rec, _) = engine
        .containers().create(Some("c0"), cfg(), hc, Default::default())
        .expect("create");
    // The test storage driver unpacks without owners; give the layer's files theirs.
    let layer = env.dir.path().join("layers").join(rec.rw_layer.as_str());
    for p in ["data", "data/hello"] {
        std::os::unix::fs::lchown(layer.join(p), Some(1000), Some(1000))
            .expect("chown (tests run as root)");
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(layer.join("data"), fs::Permissions::from_mode(0o750)).expect("chmod");
    let points = engine.volumes().mount_container_volumes(&rec).expect("mount");
    let dests: Vec<&str> = points.iter().map(|m| m.destination.as_str()).collect();
    assert_eq!(dests.len(), 4);
    assert!(
        dests.iter().position(|d| *d == "/etc/conf")
            < dests.iter().position(|d| *d == "/etc/conf/x"),
        "parents first: {dests:?}"
    );
    let filled = env.local.dir("filled");
    assert_eq!(
        fs::read(filled.join("hello")).expect("copied up"),
        b"from the image"
    );
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(filled.join("hello")).expect("md");
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o640, 1000));
    let root = fs::metadata(&filled).expect("root");
    assert_eq!(
        (root.mode() & 0o7777, root.uid()),
        (0o750, 1000),
        "the volume root takes the image dir's owner and mode"
    );
    assert!(hostdir.is_dir(), "-v made the missing host dir");
    assert!(
        fs::read_dir(&hostdir).expect("dir").next().is_none(),
        "a bind hides the image's files and gets none"
    );
    assert!(
        fs::read_dir(env.local.dir("empty"))
            .expect("dir")
            .next()
            .is_none(),
        "nocopy"
    );
    let t = points
        .iter()
        .find(|m| m.destination == "/run/t")
        .expect("--tmpfs");
    assert_eq!(
        (t.kind.as_str(), t.tmpfs_options.as_str()),
        ("tmpfs", "size=1m")
    );
    assert_eq!(
        points
            .iter()
            .find(|m| m.destination == "/data")
            .map(|m| m.source.clone()),
        Some(filled.display().to_string())
    );
    assert!(env
        .local
        .callers
        .lock()
        .unwrap()
        .get("filled")
        .is_some_and(|c| c.contains(rec.id.as_str())));

    // A non-empty volume is never copied into again.
    fs::remove_file(filled.join("hello")).expect("rm");
    fs::write(filled.join("mine"), b"x").expect("write");
    engine.volumes().unmount_container_volumes(&rec);
    engine.volumes().unmount_container_volumes(&rec);
    assert!(env
        .local
        .callers
        .lock()
        .unwrap()
        .get("filled")
        .is_none_or(|c| c.is_empty()));
    engine.volumes().mount_container_volumes(&rec).expect("mount again");
    assert!(!filled.join("hello").exists());
    engine.volumes().unmount_container_volumes(&rec);

    // A --mount bind whose source vanished after create fails the start; nothing stays counted.
    let gone = env.host("gone");
    fs::create_dir_all(&gone).expect("mkdir");
    let hc = HostConfig {
        binds: Some(vec!["counted:/counted".into()]),
        mounts: Some(vec![mount(
            json!({"Type": "bind", "Source": gone, "Target": "/zz/deep"}),
        )]),
        ..Default::default()
    };
    let (rec2, _) = engine.containers().create(None, cfg(), hc, Default::default()).expect("create");
    fs::remove_dir(&gone).expect("rmdir");
    let err = engine
        .volumes().mount_container_volumes(&rec2)
        .expect_err("missing source");
    assert!(
        err.to_string().contains("bind source path does not exist"),
        "{err}"
    );
    assert!(
        env.local
            .callers
            .lock()
            .unwrap()
            .get("counted")
            .is_none_or(|c| c.is_empty()),
        "all or nothing"
    );
}

#[test]
fn copy_up_does_not_follow_symlinks_out_of_the_rootfs() {
    let env = Env::new();
    let engine = env.open();
    load_box(&engine);
    let (rec, _) = engine
        .containers().create(None, cfg(), binds(&["esc:/escape"]), Default::default())
        .expect("create");
    // The container's layer has /escape -> a host directory with a secret.
    let secret = env.host("secret");
    fs::create_dir_all(&secret).expect("mkdir");
    fs::write(secret.join("key"), b"s3cret").expect("write");
    let layer = env.dir.path().join("layers").join(rec.rw_layer.as_str());
    std::os::unix::fs::symlink(&secret, layer.join("escape")).expect("symlink");
    engine.volumes().mount_container_volumes(&rec).expect("mount");
    assert!(
        !env.local.dir("esc").join("key").exists(),
        "copy-up read outside the container's filesystem"
    );
    assert!(Path::new(&secret).join("key").exists());
}

/// Runs `f` on a thread with a mount namespace of its own (so its mounts
/// never reach the host), or prints why it is skipped.
fn in_private_mount_ns(name: &str, f: impl FnOnce() + Send + 'static) {
    let name = name.to_string();
    std::thread::spawn(move || {
        use nix::mount::{mount, MsFlags};
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
            eprintln!("skipping {name}: cannot make a private mount namespace ({e}); needs root");
            return;
        }
        if let Err(e) = mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            eprintln!("skipping {name}: cannot make / private in the test's mount namespace ({e})");
            return;
        }
        f();
    })
    .join()
    .expect("test thread panicked");
}

#[test]
fn host_mounts_are_counted_per_container_and_swept_after_a_crash() {
    in_private_mount_ns("host mount counting", host_mounts_counted);
}

fn host_mounts_counted() {
    let env = Env::new();
    let engine = env.open();
    load_box(&engine);
    let (a, _) = engine
        .containers().create(None, cfg(), binds(&["tmpv:/t"]), Default::default())
        .expect("a");
    let (b, _) = engine
        .containers().create(None, cfg(), binds(&["tmpv:/t"]), Default::default())
        .expect("b");
    let point = env.local.dir("tmpv");
    let mounted = || berth_runtime::mount::is_mount_point(&point);
    let pa = engine.volumes().mount_container_volumes(&a).expect("mount a");
    assert!(
        mounted(),
        "the tmpfs plan is mounted on the volume's directory"
    );
    assert_eq!(
        pa.iter()
            .find(|m| m.destination == "/t")
            .map(|m| m.source.clone()),
        Some(point.display().to_string())
    );
    fs::write(point.join("shared"), b"x").expect("write into the tmpfs");
    engine.volumes().mount_container_volumes(&b).expect("mount b");
    engine.volumes().unmount_container_volumes(&a);
    assert!(mounted(), "b still uses it");
    assert!(point.join("shared").exists(), "one tmpfs for both users");
    assert_eq!(
        engine
            .volumes().remove("tmpv", false)
            .expect_err("in use")
            .kind(),
        ErrorKind::Conflict
    );
    engine.volumes().unmount_container_volumes(&b);
    assert!(!mounted(), "the last user gone, the host mount goes");
    engine.volumes().unmount_container_volumes(&b);

    // A daemon that died with the volume mounted: the next one takes the mount down.
    engine.volumes().mount_container_volumes(&a).expect("mount a again");
    assert!(mounted());
    drop(engine);
    let engine = env.open();
    assert!(
        !mounted(),
        "no running container uses it: unmounted at start"
    );
    engine
        .containers().remove(a.id.as_str(), false, false)
        .expect("rm a");
    engine
        .containers().remove(b.id.as_str(), false, false)
        .expect("rm b");
    engine.volumes().remove("tmpv", false).expect("rm volume");
}
