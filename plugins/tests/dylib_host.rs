//! The dylib host and the manager, on a tiny C plugin compiled at test time
//! (`fixtures/cplugin.c`): ABI check, deadline, error mapping, plan checks,
//! install/enable/disable/set/remove and what they leave on disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_core::drivers::Drivers;
use berth_model::drivers::DriverError;
use berth_model::volume::VolumeCreateRequest;
use berth_plugins::{InstallOptions, PluginError, PluginManager};

const MANIFEST: &str = r#"name = "cplug"
version = "0.1.0"
kinds = ["volume"]
runtime = "dylib"
entry = "libcplug.so"
contract = "0.1"
[limits]
timeout_ms = 1000
[permissions]
mounts = ["bind"]
[settings]
mode = "fast"
"#;

/// A plugin dir with the C fixture compiled for ABI `abi`.
fn plugin_dir(tmp: &Path, abi: u32) -> PathBuf {
    plugin_dir_with(tmp, abi, 1, MANIFEST)
}

/// The C fixture compiled for ABI `abi` with descriptor kinds `kinds`, beside `manifest`.
fn plugin_dir_with(tmp: &Path, abi: u32, kinds: u32, manifest: &str) -> PathBuf {
    let dir = tmp.join(format!("src-{abi}-{kinds}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cplugin.c");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", &format!("-DABI_MAJOR={abi}"), &format!("-DKINDS={kinds}"), "-o"])
        .arg(dir.join("libcplug.so"))
        .arg(&src)
        .status()
        .expect("run cc (a C compiler is needed for the dylib tests)");
    assert!(status.success(), "cc failed");
    std::fs::write(dir.join("plugin.toml"), manifest).expect("write manifest");
    dir
}

fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).expect("tar");
    b.into_inner().expect("tar")
}

fn grant() -> InstallOptions {
    InstallOptions { grant_all_permissions: true, ..Default::default() }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).expect("ls").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn req(name: &str) -> VolumeCreateRequest {
    VolumeCreateRequest { name: name.into(), options: Default::default() }
}

#[test]
fn another_dylib_abi_is_refused_at_install_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = plugin_dir(tmp.path(), 99);
    let root = tmp.path().join("plugins");
    let m = PluginManager::open(root.clone(), berth_plugins::DataLimit::Ignore).expect("open");
    let drivers = Drivers::default();
    let e = m.install(&mut &tar_of(&src)[..], &grant(), &drivers).expect_err("ABI 99");
    assert!(matches!(e, PluginError::InvalidArgument(_)), "{e:?}");
    assert_eq!(e.to_string(), "plugin cplug: dylib ABI 99.0, this berth speaks 0.x; rebuild it against this berth's berth-sdk (ABI 0.2)");
    assert!(entries(&root).is_empty(), "left behind: {:?}", entries(&root));
    assert!(drivers.volume.get("cplug").is_none());
}

#[test]
fn a_storage_driver_needs_the_streaming_abi() {
    // The fixture's descriptor is ABI 0.0: shorter than today's, without
    // `call_stream`. The host must refuse it as a storage driver, reading
    // nothing past the fields that version has.
    let tmp = tempfile::tempdir().expect("tempdir");
    let manifest = MANIFEST.replace("kinds = [\"volume\"]", "kinds = [\"storage\"]");
    let src = plugin_dir_with(tmp.path(), 0, 4, &manifest);
    let root = tmp.path().join("plugins");
    let m = PluginManager::open(root.clone(), berth_plugins::DataLimit::Ignore).expect("open");
    let drivers = Drivers::default();
    let e = m.install(&mut &tar_of(&src)[..], &grant(), &drivers).expect_err("ABI 0.0 storage");
    assert_eq!(
        e.to_string(),
        "plugin cplug: dylib ABI 0.0 cannot carry a storage driver (ABI 0.2 added it); rebuild it against this berth's berth-sdk (ABI 0.2)"
    );
    assert!(entries(&root).is_empty(), "left behind: {:?}", entries(&root));
    // A library that does not provide the kind its manifest names is refused too.
    let src = plugin_dir_with(tmp.path(), 0, 1, &manifest);
    let e = m.install(&mut &tar_of(&src)[..], &grant(), &drivers).expect_err("volume library as storage");
    assert_eq!(e.to_string(), "plugin cplug: plugin.toml says kinds includes storage, but the library does not provide it");
}

#[test]
fn dylib_calls_have_a_deadline_and_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = plugin_dir(tmp.path(), 0);
    let m = PluginManager::open(tmp.path().join("plugins"), berth_plugins::DataLimit::Ignore).expect("open");
    let drivers = Drivers::default();
    m.install(&mut &tar_of(&src)[..], &grant(), &drivers).expect("install");
    let d = drivers.volume.get("cplug").expect("registered");
    assert_eq!(d.name(), "cplug");
    assert_eq!(d.create(&req("ok")).expect("create").name, "ok");

    let started = Instant::now();
    let e = d.create(&req("hang")).expect_err("deadline");
    let took = started.elapsed();
    assert_eq!(e.to_string(), "plugin cplug: did not answer within 1s (volume-driver.create)");
    assert!(took < Duration::from_millis(1500), "cut after {took:?}");
    // The stuck call keeps its thread; the plugin keeps serving on others.
    assert_eq!(d.create(&req("ok")).expect("after a timeout").name, "ok");

    let e = d.create(&req("garbage")).expect_err("bad JSON").to_string();
    assert!(e.starts_with("plugin cplug: answered volume-driver.create with malformed JSON"), "{e}");
    let e = d.create(&req("panic")).expect_err("panic").to_string();
    assert_eq!(e, "plugin cplug: panicked in volume-driver.create: boom");
    assert!(matches!(d.remove("x"), Err(DriverError::NotFound(m)) if m == "no such volume"));
    let e = d.mount("ok", "c1").expect_err("bind of /etc").to_string();
    assert_eq!(e, "plugin cplug: mount plan refused: bind source /etc is outside the plugin's data dir");

    // Many threads at once.
    std::thread::scope(|s| {
        for i in 0..8 {
            let d = d.clone();
            s.spawn(move || {
                for _ in 0..50 {
                    assert_eq!(d.create(&req(&format!("ok{i}"))).expect("parallel").name, "ok");
                }
            });
        }
    });

    let n = 2000;
    let started = Instant::now();
    for _ in 0..n {
        d.create(&req("ok")).expect("bench");
    }
    println!("dylib per-call overhead (create, C fixture): {:.1} µs", started.elapsed().as_secs_f64() * 1e6 / n as f64);
}

#[test]
fn manager_lifecycle() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = plugin_dir(tmp.path(), 0);
    let root = tmp.path().join("plugins");
    let m = PluginManager::open(root.clone(), berth_plugins::DataLimit::Ignore).expect("open");
    let drivers = Drivers::default();

    // Permissions must be granted; nothing is left behind when they are not.
    let e = m.install(&mut &tar_of(&src)[..], &InstallOptions::default(), &drivers).expect_err("no grant");
    assert_eq!(
        e.to_string(),
        "plugin cplug asks for permissions (native=[runs unsandboxed inside the daemon], mounts=[bind]); install it with --grant-all-permissions"
    );
    assert!(entries(&root).is_empty());

    let info = m.install(&mut &tar_of(&src)[..], &InstallOptions { disable: true, ..grant() }, &drivers).expect("install disabled");
    assert_eq!(info.id.len(), 64);
    assert!(!info.enabled && drivers.volume.get("cplug").is_none());
    assert_eq!(entries(&root), vec!["cplug"]);
    assert_eq!(entries(&info.dir), vec!["cache", "data", "libcplug.so", "plugin.toml", "state.json"]);

    let e = m.install(&mut &tar_of(&src)[..], &grant(), &drivers).expect_err("twice");
    assert!(matches!(&e, PluginError::Conflict(m) if m == "plugin cplug is already installed"), "{e:?}");
    let alias = m.install(&mut &tar_of(&src)[..], &InstallOptions { alias: Some("cplug2".into()), ..grant() }, &drivers).expect("alias");
    assert_eq!(alias.name, "cplug2");
    assert_eq!(drivers.volume.get("cplug2").expect("alias registered").name(), "cplug2");
    let e = m.install(&mut &tar_of(&src)[..], &InstallOptions { alias: Some("Bad".into()), ..grant() }, &drivers).expect_err("bad alias");
    assert!(e.to_string().starts_with("alias: "), "{e}");

    // Settings: declared keys only, only while disabled.
    m.set("cplug", &[("mode".into(), "safe".into())]).expect("set");
    let e = m.set("cplug", &[("colour".into(), "red".into())]).expect_err("unknown key");
    assert!(matches!(&e, PluginError::InvalidArgument(m) if m.contains("\"colour\"")), "{e:?}");
    let e = m.set("cplug2", &[("mode".into(), "x".into())]).expect_err("enabled");
    assert!(matches!(e, PluginError::Conflict(_)));

    // Lookup by ID prefix; both share an ID (same files), so a prefix is ambiguous.
    let e = m.get(&info.id[..12]).expect_err("ambiguous");
    assert!(matches!(e, PluginError::InvalidArgument(_)));
    assert!(matches!(m.get("nope"), Err(PluginError::NotFound(_))));

    m.enable("cplug", &drivers).expect("enable");
    assert!(matches!(m.enable("cplug", &drivers), Err(PluginError::Conflict(_))));
    assert!(drivers.volume.get("cplug").is_some());
    let e = m.remove("cplug", false, &drivers).expect_err("enabled");
    assert!(matches!(&e, PluginError::Conflict(m) if m.starts_with("plugin cplug is enabled")), "{e:?}");
    m.disable("cplug", &drivers).expect("disable");
    assert!(drivers.volume.get("cplug").is_none());
    m.enable("cplug", &drivers).expect("enable again");

    // A plugin may not take over a driver someone else registered.
    let e = m.install(&mut &tar_of(&src)[..], &InstallOptions { alias: Some("cplug3".into()), ..grant() }, &drivers);
    assert!(e.is_ok());
    m.remove("cplug3", true, &drivers).expect("force remove");
    assert!(drivers.volume.get("cplug3").is_none());

    // A restart: state comes back from disk, enabled plugins load.
    drop(m);
    let m = PluginManager::open(root.clone(), berth_plugins::DataLimit::Ignore).expect("reopen");
    let drivers = Drivers::default();
    assert!(m.load_enabled(&drivers).is_empty());
    let info = m.get("cplug").expect("get");
    assert!(info.enabled);
    assert_eq!(info.settings.get("mode").map(String::as_str), Some("safe"));
    assert!(drivers.volume.get("cplug").is_some() && drivers.volume.get("cplug2").is_some());
    assert_eq!(m.list().len(), 2);

    m.remove("cplug2", true, &drivers).expect("remove");
    m.disable("cplug", &drivers).expect("disable");
    m.remove("cplug", false, &drivers).expect("remove disabled");
    assert!(entries(&root).is_empty());
    assert!(m.list().is_empty());
}

#[test]
fn leftover_staging_is_swept_and_broken_plugins_are_warnings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("plugins");
    std::fs::create_dir_all(root.join(".staging-123/tree")).expect("mkdir");
    std::fs::create_dir_all(root.join("broken")).expect("mkdir");
    let m = PluginManager::open(root.clone(), berth_plugins::DataLimit::Ignore).expect("open");
    assert_eq!(entries(&root), vec!["broken"]);
    let warnings = m.load_enabled(&Drivers::default());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("plugin broken: "), "{warnings:?}");
}

#[test]
fn an_in_tree_driver_name_is_not_taken_over() {
    struct Local;
    impl berth_model::drivers::VolumeDriver for Local {
        fn name(&self) -> &str {
            "local"
        }
        fn capabilities(&self) -> berth_model::drivers::VolumeCapabilities {
            Default::default()
        }
        fn create(&self, _: &VolumeCreateRequest) -> berth_model::drivers::DriverResult<berth_model::volume::VolumeInfo> {
            Err(DriverError::Unsupported("test".into()))
        }
        fn remove(&self, _: &str) -> berth_model::drivers::DriverResult<()> {
            Ok(())
        }
        fn mount(&self, _: &str, _: &str) -> berth_model::drivers::DriverResult<berth_model::MountPlan> {
            Err(DriverError::Unsupported("test".into()))
        }
        fn unmount(&self, _: &str, _: &str) -> berth_model::drivers::DriverResult<()> {
            Ok(())
        }
        fn path(&self, _: &str) -> berth_model::drivers::DriverResult<Option<PathBuf>> {
            Ok(None)
        }
        fn get(&self, _: &str) -> berth_model::drivers::DriverResult<berth_model::volume::VolumeInfo> {
            Err(DriverError::NotFound("test".into()))
        }
        fn list(&self) -> berth_model::drivers::DriverResult<Vec<berth_model::volume::VolumeInfo>> {
            Ok(Vec::new())
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = plugin_dir(tmp.path(), 0);
    let m = PluginManager::open(tmp.path().join("plugins"), berth_plugins::DataLimit::Ignore).expect("open");
    let drivers = Drivers::default();
    drivers.volume.register("local", std::sync::Arc::new(Local));
    let e = m.install(&mut &tar_of(&src)[..], &InstallOptions { alias: Some("local".into()), ..grant() }, &drivers).expect_err("taken");
    assert!(matches!(&e, PluginError::Conflict(m) if m.contains("a volume driver named local exists already")), "{e:?}");
    assert_eq!(drivers.volume.get("local").expect("still there").name(), "local");
}
