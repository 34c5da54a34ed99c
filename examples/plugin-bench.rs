//! The plugin benchmark (`benches/plugin.sh` runs it): per-call cost of a
//! volume driver's `Mount` through the WASM host and the dylib host, next to
//! the in-tree `local` driver, and plugin load time with and without the
//! precompiled cache. One run, the drivers alternating round by round.
//!
//! `cargo run --release --example plugin-bench -- PLUGINS_DIR [CALLS] [ROUNDS]`
//! with PLUGINS_DIR the `target/plugins` that `scripts/build-plugins` fills.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::drivers::Drivers;
use berth_model::drivers::VolumeDriver;
use berth_model::volume::VolumeCreateRequest;
use berth_plugins::{InstallOptions, PluginManager};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args().nth(n).and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A plugin dir as the tar `plugin install` sends.
fn pack(dir: &Path) -> Result<Vec<u8>, String> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).map_err(|e| format!("packing {}: {e}", dir.display()))?;
    b.into_inner().map_err(|e| format!("packing {}: {e}", dir.display()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Mean time of one `mount` + `unmount` pair over `calls` pairs.
fn per_call(driver: &dyn VolumeDriver, calls: u32) -> Result<Duration, String> {
    let started = Instant::now();
    for i in 0..calls {
        let caller = format!("c{i}");
        driver.mount("bench", &caller).map_err(|e| format!("{} mount: {e}", driver.name()))?;
        driver.unmount("bench", &caller).map_err(|e| format!("{} unmount: {e}", driver.name()))?;
    }
    Ok(started.elapsed() / (2 * calls))
}

fn run() -> Result<(), String> {
    let plugins_dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: plugin-bench PLUGINS_DIR [CALLS] [ROUNDS]")?);
    let calls: u32 = arg(2, 500);
    let rounds: usize = arg(3, 7);
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let drivers = Drivers::default();
    let local = berth_drivers::volume::LocalDriver::new(tmp.path()).map_err(|e| format!("local driver: {e}"))?;
    drivers.volume.register("local", Arc::new(local));
    let manager = PluginManager::open(tmp.path().join("plugins"), berth_plugins::DataLimit::Ignore).map_err(|e| e.to_string())?;
    let opts = InstallOptions { grant_all_permissions: true, ..Default::default() };
    for name in ["snapvol-wasm", "snapvol-dylib"] {
        let tar = pack(&plugins_dir.join(name))?;
        manager.install(&mut tar.as_slice(), &opts, &drivers).map_err(|e| format!("install {name}: {e}"))?;
    }
    let names = ["local", "snapvol", "snapvol-native"];
    let mut all: Vec<Arc<dyn VolumeDriver>> = Vec::new();
    for n in names {
        let d = drivers.volume.get(n).ok_or(format!("driver {n} is not registered"))?;
        d.create(&VolumeCreateRequest { name: "bench".into(), options: Default::default() })
            .map_err(|e| format!("{n} create: {e}"))?;
        all.push(d);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); all.len()];
    for _ in 0..rounds {
        for (i, d) in all.iter().enumerate() {
            times[i].push(per_call(d.as_ref(), calls)?);
        }
    }
    println!("per call (mount or unmount; median of {rounds} rounds of {calls} mount+unmount pairs):");
    let base = median(times[0].clone());
    for (n, t) in names.iter().zip(times) {
        let m = median(t);
        println!(
            "  {n:<16} {:>9.1} µs   +{:>8.1} µs over local   {:>6.1}x",
            m.as_secs_f64() * 1e6,
            (m.as_secs_f64() - base.as_secs_f64()) * 1e6,
            m.as_secs_f64() / base.as_secs_f64()
        );
    }

    // Load: enable after disable reads the precompiled component; with the
    // cache dir gone, enable compiles it again.
    let (mut cached, mut uncached) = (Vec::new(), Vec::new());
    let cache = tmp.path().join("plugins/snapvol/cache");
    for _ in 0..rounds {
        for from_cache in [true, false] {
            manager.disable("snapvol", &drivers).map_err(|e| e.to_string())?;
            if !from_cache {
                std::fs::remove_dir_all(&cache).map_err(|e| format!("removing {}: {e}", cache.display()))?;
            }
            manager.enable("snapvol", &drivers).map_err(|e| e.to_string())?;
            let stats = manager.last_load().ok_or("no load recorded")?;
            if stats.from_cache != from_cache {
                return Err(format!("expected a load with from_cache={from_cache}, got {stats:?}"));
            }
            if from_cache { &mut cached } else { &mut uncached }.push(stats.duration);
        }
    }
    let (c, u) = (median(cached), median(uncached));
    println!("WASM plugin load (median of {rounds}):");
    println!("  from the precompiled cache {:>9.2} ms", c.as_secs_f64() * 1e3);
    println!("  compiling the component    {:>9.2} ms   ({:.0}x the cached load)", u.as_secs_f64() * 1e3, u.as_secs_f64() / c.as_secs_f64());
    Ok(())
}
