//! The hosts on the SDK's example plugins, as `scripts/build-plugins` lays
//! them out (`$CARGO_TARGET_DIR/plugins/<name>-wasm|-dylib`): snapvol
//! through both hosts, misbehave's trap / loop / oom / bad plan, the
//! wrong-contract component, the precompile cache, per-call overhead and
//! the SDK's conformance kit through the host's adapters.
//!
//! The test runs `scripts/build-plugins` first (not in a `--release` test
//! run, and not with BERTH_TEST_NO_BUILD_PLUGINS=1: then it uses what is
//! there). When the plugins cannot be had it says so loudly and skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use berth_core::drivers::Drivers;
use berth_model::drivers::{DriverError, NetworkDriver, VolumeDriver};
use berth_model::volume::VolumeCreateRequest;
use berth_model::MountSpec;
use berth_plugins::dylib::DylibPlugin;
use berth_plugins::wasm::WasmPlugin;
use berth_plugins::{Backend, InstallOptions, PluginManager};
use berth_sdk as sdk;
use berth_sdk::conformance::{ConformanceNetwork, ConformanceVolume, VolumeKit};
use serde_json::json;

/// `<target>/plugins`, built once per test process; a test fails when they
/// cannot be had.
fn built_plugins() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
        let out = target.join("plugins");
        // The script builds in the release profile. Cargo keeps a profile's
        // build-dir lock while its tests run, so a release test run calling
        // it would wait for itself forever: there, use what is built.
        let nested_ok = cfg!(debug_assertions);
        if std::env::var_os("BERTH_TEST_NO_BUILD_PLUGINS").is_none() && nested_ok {
            let status = Command::new(workspace.join("scripts/build-plugins")).current_dir(&workspace).env("CARGO_TARGET_DIR", &target).status();
            match status {
                Ok(s) if s.success() => {}
                other => eprintln!("\n!!!!! scripts/build-plugins failed ({other:?}); using whatever is in {} !!!!!\n", out.display()),
            }
        }
        let wanted = ["snapvol-wasm", "snapvol-dylib", "misbehave-wasm", "misbehave-dylib", "wrongcontract-wasm", "isonet-wasm", "isonet-dylib"];
        let missing: Vec<&str> = wanted.iter().copied().filter(|w| !out.join(w).join("plugin.toml").is_file()).collect();
        if !missing.is_empty() {
            panic!("SDK example plugins missing in {}: {missing:?} (run scripts/build-plugins; scripts/test does)", out.display());
        }
        out.canonicalize().ok()
    })
    .as_deref()
}

fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).expect("tar");
    b.into_inner().expect("tar")
}

struct Host {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    manager: PluginManager,
    drivers: Drivers,
}

fn host() -> Host {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("plugins");
    let manager = PluginManager::open(root.clone(), berth_plugins::DataLimit::Ignore).expect("open");
    Host { _tmp: tmp, root, manager, drivers: Drivers::default() }
}

impl Host {
    fn install(&self, built: &str, opts: InstallOptions) -> Result<berth_plugins::PluginInfo, berth_plugins::PluginError> {
        let dir = built_plugins().expect("checked by the caller").join(built);
        self.manager.install(&mut &tar_of(&dir)[..], &opts, &self.drivers)
    }
    fn volume(&self, name: &str) -> Arc<dyn VolumeDriver> {
        self.drivers.volume.get(name).expect("registered")
    }
}

fn grant() -> InstallOptions {
    InstallOptions { grant_all_permissions: true, ..Default::default() }
}

fn req(name: &str) -> VolumeCreateRequest {
    VolumeCreateRequest { name: name.into(), options: Default::default() }
}

/// create / mount / list / path / get / remove through a host, and the
/// mount's per-call time.
fn snapvol_round(d: &dyn VolumeDriver, data_dir: &Path, label: &str) {
    let info = d.create(&req("v1")).expect("create");
    assert_eq!(info.name, "v1");
    let plan = d.mount("v1", "c1").expect("mount");
    let MountSpec::Bind { source, .. } = &plan.spec else { panic!("snapvol mounts binds: {plan:?}") };
    assert!(source.starts_with(data_dir), "{} outside {}", source.display(), data_dir.display());
    assert!(source.is_dir(), "{} is not a dir", source.display());
    assert!(d.list().expect("list").iter().any(|v| v.name == "v1"));
    assert!(d.path("v1").expect("path").is_some_and(|p| p.starts_with(data_dir)));
    assert_eq!(d.get("v1").expect("get").name, "v1");
    assert!(matches!(d.get("nope"), Err(DriverError::NotFound(_))));
    d.unmount("v1", "c1").expect("unmount");

    // Warm up, then time the call the engine makes for every container start.
    let n = 300;
    for _ in 0..10 {
        d.mount("v1", "c1").expect("mount");
    }
    let started = Instant::now();
    for _ in 0..n {
        d.mount("v1", "c1").expect("mount");
    }
    let per_call = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{label}: mount per call {per_call:.1} µs (includes instantiate/dispatch, JSON, plan check)");

    // More threads at once than the host keeps warm instances for.
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..10 {
                    let name = format!("t{t}-{i}");
                    d.create(&req(&name)).expect("parallel create");
                    d.mount(&name, "c").expect("parallel mount");
                }
            });
        }
    });
    assert_eq!(d.list().expect("list").len(), 81);
    d.remove("v1").expect("remove");
    assert!(matches!(d.get("v1"), Err(DriverError::NotFound(_))));
}

#[test]
fn snapvol_through_the_wasm_host() {
    let Some(_) = built_plugins() else { return };
    let h = host();
    let info = h.install("snapvol-wasm", grant()).expect("install");
    assert!(info.enabled);
    let data = info.dir.join("data").canonicalize().expect("data dir");
    snapvol_round(&*h.volume("snapvol"), &data, "wasm snapvol");
    let (raw, _) = WasmPlugin::load("snapvol", &info.dir, &info.manifest, &info.settings).expect("load");
    bare_call_overhead(&raw, "wasm snapvol");
}

#[test]
fn many_loaded_plugins_called_once_each_leave_pool_slots_for_new_calls() {
    let Some(_) = built_plugins() else { return };
    let h = host();
    let info = h.install("snapvol-wasm", grant()).expect("install");
    // Each load is a plugin of its own to the runtime; each keeps the
    // instance of its one call warm. More of them than the runtime has
    // instance slots: a new call must still find a slot.
    let mut loaded = Vec::new();
    for i in 0..150 {
        let (plugin, _) = WasmPlugin::load("snapvol", &info.dir, &info.manifest, &info.settings).expect("load");
        plugin.call("volume-driver.capabilities", json!([])).unwrap_or_else(|e| panic!("call on load {i}: {e}"));
        loaded.push(plugin);
    }
    let first = &loaded[0];
    first.call("volume-driver.capabilities", json!([])).expect("the first plugin still answers");
}

/// Instantiate (or dispatch) + call + drop with no work in the plugin and
/// no adapter: the host's own cost per call.
fn bare_call_overhead(backend: &dyn Backend, label: &str) {
    let n = 300;
    for _ in 0..10 {
        backend.call("volume-driver.capabilities", json!([])).expect("capabilities");
    }
    let started = Instant::now();
    for _ in 0..n {
        backend.call("volume-driver.capabilities", json!([])).expect("capabilities");
    }
    println!("{label}: bare call (capabilities) {:.1} µs", started.elapsed().as_secs_f64() * 1e6 / n as f64);
}

#[test]
fn snapvol_through_the_dylib_host() {
    let Some(_) = built_plugins() else { return };
    let h = host();
    let info = h.install("snapvol-dylib", grant()).expect("install");
    let data = info.dir.join("data").canonicalize().expect("data dir");
    snapvol_round(&*h.volume("snapvol-native"), &data, "dylib snapvol");
    let lib = info.dir.join("cache").join(format!("lib-{}.so", &info.id[..16]));
    let (raw, _) = DylibPlugin::load("snapvol-native", &lib, &data, &info.manifest, &info.settings).expect("load");
    bare_call_overhead(&raw, "dylib snapvol");
}

#[test]
fn precompiled_cache_is_used_and_rebuilt_when_stale() {
    let Some(_) = built_plugins() else { return };
    let h = host();
    let info = h.install("snapvol-wasm", InstallOptions { disable: true, ..grant() }).expect("install");
    let uncached = h.manager.last_load().expect("install compiles");
    assert!(!uncached.from_cache);
    h.manager.enable("snapvol", &h.drivers).expect("enable");
    let cached = h.manager.last_load().expect("enable loads");
    assert!(cached.from_cache, "{cached:?}");
    println!("wasm snapvol load: uncached (compile) {:?}, cached (precompiled) {:?}", uncached.duration, cached.duration);

    // A torn or foreign cache file is recompiled and rewritten.
    let cache = info.dir.join("cache");
    let cwasm: Vec<PathBuf> = std::fs::read_dir(&cache).expect("cache").flatten().map(|e| e.path()).collect();
    assert_eq!(cwasm.len(), 1, "{cwasm:?}");
    // Replaced by rename, as anything touching the cache must: the loaded
    // component maps the old file, and truncating it in place would fault.
    let tmp = cache.join("garbage.tmp");
    std::fs::write(&tmp, b"not a precompiled component").expect("write garbage");
    std::fs::rename(&tmp, &cwasm[0]).expect("replace");
    h.manager.disable("snapvol", &h.drivers).expect("disable");
    h.manager.enable("snapvol", &h.drivers).expect("enable with a bad cache");
    assert!(!h.manager.last_load().expect("load").from_cache);
    h.manager.disable("snapvol", &h.drivers).expect("disable");
    h.manager.enable("snapvol", &h.drivers).expect("enable");
    assert!(h.manager.last_load().expect("load").from_cache);
    h.volume("snapvol").create(&req("after")).expect("works");
}

#[test]
fn misbehaving_wasm_plugin_gets_clear_errors_and_keeps_serving() {
    let Some(_) = built_plugins() else { return };
    let h = host();
    h.install("misbehave-wasm", grant()).expect("install");
    let d = h.volume("misbehave");
    let still_serves = |n: &str| {
        let info = d.create(&req(n)).unwrap_or_else(|e| panic!("create {n} after a misbehaviour: {e}"));
        assert_eq!(info.name, n);
    };

    let e = d.create(&req("trap")).expect_err("trap").to_string();
    assert!(e.starts_with("plugin misbehave: trapped in volume-driver.create"), "{e}");
    assert!(e.contains("trap requested"), "the guest's panic message is shown: {e}");
    still_serves("ok1");

    let started = Instant::now();
    let e = d.create(&req("loop")).expect_err("loop").to_string();
    let took = started.elapsed();
    assert_eq!(e, "plugin misbehave: did not answer within 2s (volume-driver.create)");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(3), "cut after {took:?}");
    println!("wasm misbehave loop cut after {took:?}");
    still_serves("ok2");

    let e = d.create(&req("oom")).expect_err("oom").to_string();
    assert_eq!(e, "plugin misbehave: exceeded its memory limit of 32 MiB (volume-driver.create)");
    still_serves("ok3");

    still_serves("badplan");
    let e = d.mount("badplan", "c1").expect_err("badplan").to_string();
    assert_eq!(e, "plugin misbehave: mount plan refused: bind source /etc is outside the plugin's data dir");
    still_serves("ok4");
    assert!(d.mount("ok4", "c1").is_ok());
}

#[test]
fn misbehaving_dylib_plugin_gets_clear_errors() {
    let Some(_) = built_plugins() else { return };
    let h = host();
    h.install("misbehave-dylib", grant()).expect("install");
    let d = h.volume("misbehave-native");
    let e = d.create(&req("trap")).expect_err("trap").to_string();
    assert_eq!(e, "plugin misbehave-native: panicked in volume-driver.create: misbehave: trap requested");
    d.create(&req("ok1")).expect("still serves");
    d.create(&req("badplan")).expect("create");
    let e = d.mount("badplan", "c1").expect_err("badplan").to_string();
    assert_eq!(e, "plugin misbehave-native: mount plan refused: bind source /etc is outside the plugin's data dir");
    // No loop/oom here: native code cannot be stopped, only abandoned
    // (the deadline is covered by the C fixture in dylib_host.rs).
}

#[test]
fn wrong_contract_component_is_refused_at_install() {
    let Some(_) = built_plugins() else { return };
    let h = host();
    let e = h.install("wrongcontract-wasm", grant()).expect_err("wrong contract").to_string();
    assert_eq!(e, "plugin wrongcontract: built for berth:plugin@1.0.0, this berth speaks berth:plugin@0.x; rebuild it against berth-sdk 0.1");
    assert_eq!(std::fs::read_dir(&h.root).expect("ls").count(), 0, "a refused install leaves nothing");
}

/// A host adapter as the conformance kit sees a driver.
struct ViaHost<D: ?Sized>(Arc<D>);

impl ConformanceVolume for ViaHost<dyn VolumeDriver> {
    fn capabilities(&self) -> sdk::DriverResult<sdk::VolumeCapabilities> {
        Ok(self.0.capabilities())
    }
    fn create(&self, request: sdk::VolumeCreateRequest) -> sdk::DriverResult<sdk::VolumeInfo> {
        self.0.create(&request)
    }
    fn remove(&self, name: &str) -> sdk::DriverResult<()> {
        self.0.remove(name)
    }
    fn mount(&self, name: &str, caller_id: &str) -> sdk::DriverResult<sdk::MountPlan> {
        self.0.mount(name, caller_id)
    }
    fn unmount(&self, name: &str, caller_id: &str) -> sdk::DriverResult<()> {
        self.0.unmount(name, caller_id)
    }
    fn path(&self, name: &str) -> sdk::DriverResult<Option<String>> {
        self.0.path(name).map(|p| p.map(|p| p.display().to_string()))
    }
    fn get(&self, name: &str) -> sdk::DriverResult<sdk::VolumeInfo> {
        self.0.get(name)
    }
    fn list(&self) -> sdk::DriverResult<Vec<sdk::VolumeInfo>> {
        self.0.list()
    }
}

impl ConformanceNetwork for ViaHost<dyn NetworkDriver> {
    fn capabilities(&self) -> sdk::DriverResult<sdk::NetworkCapabilities> {
        Ok(self.0.capabilities())
    }
    fn create_network(&self, request: sdk::NetworkCreateRequest) -> sdk::DriverResult<sdk::NetworkPlan> {
        self.0.create_network(&request)
    }
    fn delete_network(&self, network_id: &str) -> sdk::DriverResult<sdk::NetworkPlan> {
        self.0.delete_network(network_id)
    }
    fn create_endpoint(&self, request: sdk::EndpointCreateRequest) -> sdk::DriverResult<sdk::EndpointInfo> {
        self.0.create_endpoint(&request)
    }
    fn delete_endpoint(&self, network_id: &str, endpoint_id: &str) -> sdk::DriverResult<()> {
        self.0.delete_endpoint(network_id, endpoint_id)
    }
    fn join(&self, request: sdk::JoinRequest) -> sdk::DriverResult<sdk::NetworkPlan> {
        self.0.join(&request)
    }
    fn leave(&self, network_id: &str, endpoint_id: &str) -> sdk::DriverResult<sdk::NetworkPlan> {
        self.0.leave(network_id, endpoint_id)
    }
}

#[test]
fn conformance_kit_through_the_adapters() {
    let Some(_) = built_plugins() else { return };
    let h = host();
    for (built, name) in [("snapvol-wasm", "snapvol"), ("snapvol-dylib", "snapvol-native")] {
        let info = h.install(built, grant()).expect("install");
        // Through the adapters every path is a host path in the data dir.
        let data = info.dir.join("data").canonicalize().expect("data dir");
        match VolumeKit::new(&data).run(&ViaHost(h.volume(name))) {
            Ok(report) => println!("conformance {built}: {} checks passed", report.passed.len()),
            Err(f) => panic!("{built}: {f}"),
        }
    }
    for (built, name) in [("isonet-wasm", "isonet"), ("isonet-dylib", "isonet-native")] {
        h.install(built, grant()).expect("install");
        let d = h.drivers.network.get(name).expect("registered");
        match berth_sdk::conformance::check_network_driver(&ViaHost(d)) {
            Ok(report) => println!("conformance {built}: {} checks passed", report.passed.len()),
            Err(f) => panic!("{built}: {f}"),
        }
    }
}
