//! The WASM host: wasmtime components as plugin backends.
//!
//! One `Engine` per process (component model, epoch interruption, a thread
//! ticking the epoch every `TICK`). A component is compiled once, at install,
//! and cached next to the plugin (`cache/<key>.cwasm`); later loads map the
//! cache. An instance lives in its own `Store` with a memory cap, an epoch
//! deadline armed afresh for every call, and a WASI context whose only
//! filesystem is the plugin's data dir at `/data`: no environment, no
//! arguments, no sockets, stdout and stderr captured into the daemon's log.
//! An instance whose call returned (an answer or a driver error) is kept warm
//! for the next call, up to `WARM_PER_KIND` per plugin and kind and `WARM_TOTAL`
//! in all (an idle instance holds a pool slot); one whose call trapped,
//! timed out or hit its memory cap is dropped, so a failure leaves nothing
//! behind. Instantiating costs tens of microseconds (a pool slot's memory
//! reset, the data-dir preopen, the guest's start-up); a warm call costs a few.
//!
//! This module must never give a component anything beyond that context,
//! never let a guest failure escape as a panic or a hang of the caller, and
//! never deserialize a `.cwasm` it did not write itself (`Component::deserialize_file`
//! runs native code from it: the install path refuses tars that carry `cache/`).
//!
//! Calls must not run on an async runtime's worker thread: the WASI host
//! blocks on tokio internally. The engine calls drivers from `spawn_blocking`.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_model::drivers::{DriverError, DriverResult};
use berth_runtime::files::{self, Durability};
use serde_json::Value;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::backend::{driver_error, human, Backend, LoadStats};
use crate::check::GUEST_DATA_DIR;
use crate::manifest::{Kind, Manifest};
use crate::PluginError;

mod bindings {
    pub mod volume {
        wasmtime::component::bindgen!({ path: "../sdk/wit", world: "volume-plugin" });
    }
    pub mod network {
        wasmtime::component::bindgen!({
            path: "../sdk/wit",
            world: "network-plugin",
            // One set of host types for both worlds, so one linker serves both.
            with: {
                "berth:plugin/types": super::volume::berth::plugin::types,
                "berth:plugin/host": super::volume::berth::plugin::host,
            },
        });
    }
}

use bindings::network::{NetworkPlugin, NetworkPluginPre};
use bindings::volume::berth::plugin::host::{self, Level};
use bindings::volume::berth::plugin::types::DriverError as WitDriverError;
use bindings::volume::{VolumePlugin, VolumePluginPre};

/// The contract this host speaks: the package version of `sdk/wit/plugin.wit`.
pub const CONTRACT_PACKAGE: &str = "berth:plugin";
pub const CONTRACT_VERSION: (u32, u32, u32) = (0, 1, 0);

/// Calls that can run at once across all WASM plugins (instance pool slots);
/// a call beyond that fails at once rather than waiting.
const POOL_SLOTS: u32 = 128;
/// How often the epoch advances; deadlines are counted in these.
const TICK: Duration = Duration::from_millis(10);
/// Bytes of a guest's stdout+stderr kept per call for the log.
const OUTPUT_CAPTURE: usize = 64 * 1024;
/// Bytes of one `host.log` message kept.
const LOG_MESSAGE_MAX: usize = 4096;
/// Idle instances kept per plugin and kind: enough for the calls that
/// overlap on a small host, few enough that idle plugins leave pool slots
/// (and their memory) to busy ones.
const WARM_PER_KIND: usize = 4;
/// Idle instances kept across all plugins: each holds a pool slot, so
/// without this bound some 32 installed plugins, each called once, would
/// leave no slot for a new call. Half the pool stays free for calls.
const WARM_TOTAL: usize = POOL_SLOTS as usize / 2;

/// The process-wide engine and the linker with the host's imports.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<CallState>,
    /// Instances kept warm now, across all plugins (at most `WARM_TOTAL`).
    warm: AtomicUsize,
}

static RUNTIME: OnceLock<Result<WasmRuntime, String>> = OnceLock::new();

impl WasmRuntime {
    /// The engine, made on first use with its epoch thread.
    pub fn global() -> Result<&'static WasmRuntime, PluginError> {
        RUNTIME.get_or_init(WasmRuntime::new).as_ref().map_err(|e| PluginError::Internal(e.clone()))
    }

    fn new() -> Result<WasmRuntime, String> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Every call instantiates afresh; the pool keeps instance slots and
        // their memory mappings alive between calls, so a call does not pay
        // for mapping and faulting in a new linear memory (most of its cost).
        // A slot's memory may grow to the wasm32 maximum; each plugin's own
        // cap is enforced per call by `StoreLimits`.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * 8)
            .total_memories(POOL_SLOTS * 2)
            .total_tables(POOL_SLOTS * 8)
            .max_memory_size(4 << 30);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| format!("cannot start the WebAssembly engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| format!("cannot link WASI: {e}"))?;
        // Both worlds import the same `host` (bindgen `with`), so adding the
        // volume world's imports links the network world too.
        VolumePlugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s).map_err(|e| format!("cannot link the host interface: {e}"))?;
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("berth-wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                ticker.increment_epoch();
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        Ok(WasmRuntime { engine, linker, warm: AtomicUsize::new(0) })
    }

    /// Key of a precompiled component: the wasmtime version and engine
    /// settings (`precompile_compatibility_hash`) plus the component's bytes.
    fn cache_key(&self, bytes: &[u8]) -> String {
        struct ShaHasher(Sha256);
        impl Hasher for ShaHasher {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
        }
        let mut h = ShaHasher(Sha256::new());
        h.write(b"berth-plugins cwasm v1\0");
        self.engine.precompile_compatibility_hash().hash(&mut h);
        h.write(&Sha256::digest(bytes));
        hex::encode(h.0.finalize())
    }

    /// The compiled component for `entry`, from `cache_dir` when the key
    /// matches, else compiled and written there (stale entries removed).
    fn component(&self, name: &str, entry: &Path, cache_dir: &Path) -> Result<(Component, bool), PluginError> {
        let bytes = std::fs::read(entry).map_err(|e| PluginError::io(format!("plugin {name}: cannot read {}", entry.display()), e))?;
        let key = self.cache_key(&bytes);
        let cached = cache_dir.join(format!("{key}.cwasm"));
        if cached.is_file() {
            // SAFETY: only this module writes `<plugin dir>/cache` (installs
            // refuse tars carrying it, the guest only sees `data/`), and the
            // key pins the engine that wrote it. A stale or foreign file
            // fails wasmtime's own header checks and is recompiled below.
            // The file is mapped, not read: it must only ever be replaced by
            // rename (`write_atomic`), never rewritten in place, or a loaded
            // component would fault on its truncated pages.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => tracing::warn!(plugin = name, "precompiled {} unusable, recompiling: {e}", cached.display()),
            }
        }
        let component = Component::new(&self.engine, &bytes)
            .map_err(|e| PluginError::InvalidArgument(format!("plugin {name}: {} is not a valid WebAssembly component: {e}", entry.display())))?;
        let serialized = component.serialize().map_err(|e| PluginError::Internal(format!("plugin {name}: cannot serialize the compiled component: {e}")))?;
        std::fs::create_dir_all(cache_dir).map_err(|e| PluginError::io(format!("cannot create {}", cache_dir.display()), e))?;
        if let Ok(entries) = std::fs::read_dir(cache_dir) {
            for stale in entries.flatten() {
                if stale.path().extension().is_some_and(|x| x == "cwasm") && stale.path() != cached {
                    let _ = std::fs::remove_file(stale.path());
                }
            }
        }
        files::replace(&cached, &serialized, 0o644, Durability::Synced)
            .map_err(|e| PluginError::io(format!("cannot write {}", cached.display()), e))?;
        Ok((component, false))
    }
}

/// Checks the component's `berth:plugin` interfaces: same contract (major,
/// and minor while the major is 0, as semver treats 0.x), and an export for
/// every kind the manifest declares.
fn check_contract(engine: &Engine, name: &str, component: &Component, manifest: &Manifest) -> Result<(), PluginError> {
    let (major, minor, _) = CONTRACT_VERSION;
    let ty = component.component_type();
    let mut exported = Vec::new();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).chain(ty.imports(engine).map(|(n, _)| n.to_string())).collect();
    for full in &names {
        let Some(rest) = full.strip_prefix(&format!("{CONTRACT_PACKAGE}/")) else { continue };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
        let (theirs_major, theirs_minor) = (parts.next().flatten(), parts.next().flatten());
        let compatible = theirs_major == Some(major) && (major != 0 || theirs_minor == Some(minor));
        if !compatible {
            let ours = if theirs_major == Some(major) { format!("{major}.{minor}.x") } else { format!("{major}.x") };
            let shown = if version.is_empty() { "an unversioned berth:plugin".to_string() } else { format!("berth:plugin@{version}") };
            return Err(PluginError::InvalidArgument(format!(
                "plugin {name}: built for {shown}, this berth speaks berth:plugin@{ours}; rebuild it against berth-sdk {major}.{minor}"
            )));
        }
        if ty.get_export(engine, full).is_some() {
            exported.push(iface.to_string());
        }
    }
    for kind in &manifest.kinds {
        let iface = match kind {
            Kind::Volume => "volume-driver",
            Kind::Network => "network-driver",
            // `Manifest::validate` refuses it first; a component has no storage world.
            Kind::Storage => {
                return Err(PluginError::InvalidArgument(format!("plugin {name}: a storage driver must be a native library, not a component")))
            }
        };
        if !exported.iter().any(|e| e == iface) {
            return Err(PluginError::InvalidArgument(format!(
                "plugin {name}: plugin.toml says kinds includes {kind}, but the component does not export {CONTRACT_PACKAGE}/{iface}"
            )));
        }
    }
    Ok(())
}

/// Per-call store data.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    plugin: Arc<Shared>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl host::Host for CallState {
    fn log(&mut self, level: Level, mut message: String) {
        let plugin = self.plugin.name.as_str();
        if message.len() > LOG_MESSAGE_MAX {
            let mut end = LOG_MESSAGE_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        match level {
            Level::Error => tracing::error!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
        }
    }

    fn settings(&mut self) -> Vec<(String, String)> {
        self.plugin.settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl bindings::volume::berth::plugin::types::Host for CallState {}

/// A memory cap that remembers it was hit, so the error can say so
/// (wasmtime's own `StoreLimits` only says "forcing trap").
struct Limiter {
    max_bytes: usize,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            // An error (not `Ok(false)`) traps at once: a guest allocator
            // would otherwise turn a failed grow into an abort with less to say.
            wasmtime::bail!("memory limit reached");
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold references, not data; a million is far beyond any driver.
        Ok(desired <= 1 << 20)
    }
}

/// A guest's stdout and stderr: the first `OUTPUT_CAPTURE` bytes are kept
/// for the log, the rest dropped. Writes never fail, because a Rust guest
/// panics when printing fails and a chatty plugin must not become a
/// trapping one (wasmtime's `MemoryOutputPipe` traps when full).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// What was written since the last `take`, emptying the buffer.
    fn take(&self) -> String {
        let kept = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        String::from_utf8(kept).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI p3 uses this; this host links p2.
        StdoutStream::async_stream(&std::io::empty())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = OUTPUT_CAPTURE.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(OUTPUT_CAPTURE)
    }
}

/// What the host imports need to know about the plugin.
struct Shared {
    name: String,
    settings: BTreeMap<String, String>,
}

/// An instance with its store, between calls.
struct Warm<I> {
    store: Store<CallState>,
    exports: I,
    output: Capture,
}

/// One kind of a plugin: how to instantiate it, and its idle instances.
struct KindPool<P, I> {
    pre: P,
    idle: Mutex<Vec<Warm<I>>>,
    /// The runtime's count of warm instances, which this pool's are part of.
    warm_total: &'static AtomicUsize,
}

impl<P, I> KindPool<P, I> {
    fn new(pre: P, runtime: &'static WasmRuntime) -> Self {
        KindPool { pre, idle: Mutex::new(Vec::new()), warm_total: &runtime.warm }
    }

    fn take_idle(&self) -> Option<Warm<I>> {
        let warm = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        self.warm_total.fetch_sub(1, Ordering::Relaxed);
        Some(warm)
    }

    /// Keeps `warm` for the next call if this kind and the whole runtime
    /// are below their bounds; otherwise it is dropped and its slot freed.
    fn put_back(&self, warm: Warm<I>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < WARM_PER_KIND && self.warm_total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < WARM_TOTAL).then_some(n + 1)).is_ok() {
            idle.push(warm);
        }
    }
}

impl<P, I> Drop for KindPool<P, I> {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner());
        self.warm_total.fetch_sub(idle.len(), Ordering::Relaxed);
    }
}

/// A loaded WASM plugin: linked, with warm instances per kind.
pub struct WasmPlugin {
    runtime: &'static WasmRuntime,
    shared: Arc<Shared>,
    data_dir: PathBuf,
    timeout: Duration,
    memory_mib: u64,
    volume: Option<KindPool<VolumePluginPre<CallState>, VolumePlugin>>,
    network: Option<KindPool<NetworkPluginPre<CallState>, NetworkPlugin>>,
}

impl WasmPlugin {
    /// Loads the plugin in `dir` (compiling it, or mapping the cache),
    /// checks its contract and links it. `name` is its driver name.
    pub fn load(name: &str, dir: &Path, manifest: &Manifest, settings: &BTreeMap<String, String>) -> Result<(WasmPlugin, LoadStats), PluginError> {
        let started = Instant::now();
        let runtime = WasmRuntime::global()?;
        let (component, from_cache) = runtime.component(name, &dir.join(&manifest.entry), &dir.join("cache"))?;
        check_contract(&runtime.engine, name, &component, manifest)?;
        let pre: InstancePre<CallState> = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::InvalidArgument(format!("plugin {name}: imports something berth does not offer: {e}")))?;
        let link_error = |e: wasmtime::Error| PluginError::InvalidArgument(format!("plugin {name}: {e}"));
        let volume = if manifest.has_kind(Kind::Volume) { Some(KindPool::new(VolumePluginPre::new(pre.clone()).map_err(link_error)?, runtime)) } else { None };
        let network = if manifest.has_kind(Kind::Network) { Some(KindPool::new(NetworkPluginPre::new(pre).map_err(link_error)?, runtime)) } else { None };
        let plugin = WasmPlugin {
            runtime,
            shared: Arc::new(Shared { name: name.to_string(), settings: settings.clone() }),
            data_dir: dir.join("data"),
            timeout: Duration::from_millis(manifest.limits.timeout_ms),
            memory_mib: manifest.limits.memory_mib,
            volume,
            network,
        };
        let stats = LoadStats { plugin: name.to_string(), duration: started.elapsed(), from_cache };
        Ok((plugin, stats))
    }

    fn plugin_error(&self, message: String) -> DriverError {
        DriverError::Plugin { plugin: self.shared.name.clone(), message }
    }

    /// A store for one instance: memory cap, WASI with `/data` only.
    fn store(&self, output: &Capture) -> DriverResult<Store<CallState>> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(true)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(output.clone())
            .stderr(output.clone());
        wasi.preopened_dir(&self.data_dir, GUEST_DATA_DIR, FsPerms::ReadWrite)
            .map_err(|e| self.plugin_error(format!("cannot open its data dir {}: {e}", self.data_dir.display())))?;
        let state = CallState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter { max_bytes: usize::try_from(self.memory_mib << 20).unwrap_or(usize::MAX), hit: false },
            plugin: self.shared.clone(),
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        Ok(store)
    }

    /// Runs `f` on a warm instance of `pool` (or a new one) under a fresh
    /// deadline, keeps the instance warm if the guest came back, and turns
    /// every guest failure into `DriverError::Plugin` with words a user can
    /// act on.
    fn run<P, I, R>(
        &self,
        method: &str,
        pool: &KindPool<P, I>,
        instantiate: impl FnOnce(&P, &mut Store<CallState>) -> wasmtime::Result<I>,
        f: impl FnOnce(&I, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> DriverResult<R> {
        // +1: the tick in flight when the call starts may land at once.
        let ticks = self.timeout.as_millis().div_ceil(TICK.as_millis()) as u64 + 1;
        let mut warm = match pool.take_idle() {
            Some(warm) => warm,
            None => {
                let output = Capture::default();
                let mut store = self.store(&output)?;
                // The deadline covers the guest's start-up too.
                store.set_epoch_deadline(ticks);
                match instantiate(&pool.pre, &mut store) {
                    Ok(exports) => Warm { store, exports, output },
                    Err(e) => return Err(self.guest_failure(&format!("start-up for {method}"), &store, &self.log_output(&output), e)),
                }
            }
        };
        warm.store.set_epoch_deadline(ticks);
        let result = f(&warm.exports, &mut warm.store);
        let text = self.log_output(&warm.output);
        match result {
            Ok(answer) => {
                pool.put_back(warm);
                Ok(answer)
            }
            // A guest that failed here is never entered again: the instance
            // and its memory go with `warm`.
            Err(e) => Err(self.guest_failure(method, &warm.store, &text, e)),
        }
    }

    /// The guest's output since the last call, sent to the log and returned.
    fn log_output(&self, output: &Capture) -> String {
        let text = output.take();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(plugin = %self.shared.name, "{line}");
        }
        text
    }

    fn guest_failure(&self, method: &str, store: &Store<CallState>, text: &str, e: wasmtime::Error) -> DriverError {
        let message = if store.data().limiter.hit {
            format!("exceeded its memory limit of {} MiB ({method})", self.memory_mib)
        } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            format!("did not answer within {} ({method})", human(self.timeout))
        } else if let Some(trap) = e.downcast_ref::<Trap>() {
            match guest_panic(text) {
                Some(why) => format!("trapped in {method} ({trap}): {why}"),
                None => format!("trapped in {method}: {trap}"),
            }
        } else {
            format!("failed in {method}: {e}")
        };
        self.plugin_error(message)
    }

    fn volume(&self) -> DriverResult<&KindPool<VolumePluginPre<CallState>, VolumePlugin>> {
        self.volume.as_ref().ok_or_else(|| self.plugin_error("does not provide a volume driver".into()))
    }

    fn network(&self) -> DriverResult<&KindPool<NetworkPluginPre<CallState>, NetworkPlugin>> {
        self.network.as_ref().ok_or_else(|| self.plugin_error("does not provide a network driver".into()))
    }

    /// A `json` answer parsed, or a plugin error saying it was not JSON.
    fn parse(&self, method: &str, text: &str) -> DriverResult<Value> {
        serde_json::from_str(text).map_err(|e| self.plugin_error(format!("answered {method} with malformed JSON: {e}")))
    }

    fn wit_error(&self, e: WitDriverError) -> DriverError {
        let plugin = &self.shared.name;
        match e {
            WitDriverError::NotFound(m) => driver_error(plugin, "not_found", m),
            WitDriverError::Conflict(m) => driver_error(plugin, "conflict", m),
            WitDriverError::InvalidArgument(m) => driver_error(plugin, "invalid_argument", m),
            WitDriverError::Unsupported(m) => driver_error(plugin, "unsupported", m),
            WitDriverError::Failed(m) => driver_error(plugin, "failed", m),
        }
    }

    fn json_result(&self, method: &str, r: Result<String, WitDriverError>) -> DriverResult<Value> {
        self.parse(method, &r.map_err(|e| self.wit_error(e))?)
    }

    fn unit_result(&self, r: Result<(), WitDriverError>) -> DriverResult<Value> {
        r.map(|()| Value::Null).map_err(|e| self.wit_error(e))
    }
}

/// Argument `i` of a call: a string, or a `json` argument re-encoded.
struct Args<'a> {
    method: &'a str,
    plugin: &'a str,
    args: Vec<Value>,
}

impl Args<'_> {
    fn string(&self, i: usize) -> DriverResult<String> {
        match self.args.get(i) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(self.bad(i)),
        }
    }

    fn json(&self, i: usize) -> DriverResult<String> {
        self.args.get(i).map(|v| v.to_string()).ok_or_else(|| self.bad(i))
    }

    fn bad(&self, i: usize) -> DriverError {
        // The adapters build these arrays, so this is a host bug, not the plugin's.
        DriverError::InvalidArgument(format!("{} (plugin {}): argument {i} missing or of the wrong type", self.method, self.plugin))
    }
}

impl Backend for WasmPlugin {
    fn call(&self, method: &str, args: Value) -> DriverResult<Value> {
        let args = Args {
            method,
            plugin: &self.shared.name,
            args: match args {
                Value::Array(a) => a,
                Value::Null => Vec::new(),
                other => vec![other],
            },
        };
        macro_rules! vol {
            (|$d:ident, $s:ident| $body:expr) => {{
                self.run(method, self.volume()?, |pre, s| pre.instantiate(s), |inst, $s| {
                    let $d = inst.berth_plugin_volume_driver();
                    $body
                })
            }};
        }
        macro_rules! net {
            (|$d:ident, $s:ident| $body:expr) => {{
                self.run(method, self.network()?, |pre, s| pre.instantiate(s), |inst, $s| {
                    let $d = inst.berth_plugin_network_driver();
                    $body
                })
            }};
        }
        match method {
            "volume-driver.capabilities" => {
                let text = vol!(|d, s| d.call_capabilities(s))?;
                self.parse(method, &text)
            }
            "volume-driver.create" => {
                let req = args.json(0)?;
                self.json_result(method, vol!(|d, s| d.call_create(s, &req))?)
            }
            "volume-driver.remove" => {
                let name = args.string(0)?;
                self.unit_result(vol!(|d, s| d.call_remove(s, &name))?)
            }
            "volume-driver.mount" => {
                let (name, caller) = (args.string(0)?, args.string(1)?);
                self.json_result(method, vol!(|d, s| d.call_mount(s, &name, &caller))?)
            }
            "volume-driver.unmount" => {
                let (name, caller) = (args.string(0)?, args.string(1)?);
                self.unit_result(vol!(|d, s| d.call_unmount(s, &name, &caller))?)
            }
            "volume-driver.path" => {
                let name = args.string(0)?;
                let path = vol!(|d, s| d.call_path(s, &name))?.map_err(|e| self.wit_error(e))?;
                Ok(path.map(Value::String).unwrap_or(Value::Null))
            }
            "volume-driver.get" => {
                let name = args.string(0)?;
                self.json_result(method, vol!(|d, s| d.call_get(s, &name))?)
            }
            "volume-driver.list" => self.json_result(method, vol!(|d, s| d.call_list(s))?),
            "network-driver.capabilities" => {
                let text = net!(|d, s| d.call_capabilities(s))?;
                self.parse(method, &text)
            }
            "network-driver.create-network" => {
                let req = args.json(0)?;
                self.json_result(method, net!(|d, s| d.call_create_network(s, &req))?)
            }
            "network-driver.delete-network" => {
                let id = args.string(0)?;
                self.json_result(method, net!(|d, s| d.call_delete_network(s, &id))?)
            }
            "network-driver.create-endpoint" => {
                let req = args.json(0)?;
                self.json_result(method, net!(|d, s| d.call_create_endpoint(s, &req))?)
            }
            "network-driver.delete-endpoint" => {
                let (net, ep) = (args.string(0)?, args.string(1)?);
                self.unit_result(net!(|d, s| d.call_delete_endpoint(s, &net, &ep))?)
            }
            "network-driver.join" => {
                let req = args.json(0)?;
                self.json_result(method, net!(|d, s| d.call_join(s, &req))?)
            }
            "network-driver.leave" => {
                let (net, ep) = (args.string(0)?, args.string(1)?);
                self.json_result(method, net!(|d, s| d.call_leave(s, &net, &ep))?)
            }
            _ => Err(self.plugin_error(format!("berth has no method {method}"))),
        }
    }
}

/// What a Rust guest said when it panicked: std prints
/// `thread '..' panicked at FILE:LINE:COL:` then the message, then a
/// `note:` line, to stderr before the `unreachable` trap.
fn guest_panic(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let at = lines.iter().rposition(|l| l.contains("panicked at"))?;
    let message: Vec<&str> = lines[at + 1..].iter().copied().take_while(|l| !l.starts_with("note:") && !l.starts_with("stack backtrace")).collect();
    if message.is_empty() {
        // Older std: `panicked at 'message', file:line:col`.
        return Some(lines[at].to_string());
    }
    Some(message.join(" "))
}

// Calls come from many threads at once.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<WasmPlugin>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_panic_messages_are_found() {
        let out = "hello\nthread '<unnamed>' panicked at src/lib.rs:40:23:\nmisbehave: trap requested\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(guest_panic(out).as_deref(), Some("misbehave: trap requested"));
        assert_eq!(guest_panic("just chatter\n"), None);
        assert_eq!(human(Duration::from_millis(2000)), "2s");
        assert_eq!(human(Duration::from_millis(2500)), "2500ms");
    }

    #[test]
    fn output_capture_never_fails_and_keeps_a_prefix() {
        let c = Capture::default();
        let mut stream = c.p2_stream();
        for _ in 0..100 {
            stream.write(bytes::Bytes::from(vec![b'x'; 4096])).expect("never fails");
        }
        assert_eq!(c.take().len(), OUTPUT_CAPTURE);
        assert_eq!(c.take(), "", "take empties the buffer for the next call");
    }
}
