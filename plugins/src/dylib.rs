//! The dylib host: a native library exporting `berth_plugin_descriptor`
//! (`berth_sdk::abi`) as a plugin backend.
//!
//! A dylib is trusted native code running in the daemon: the host checks
//! what it can — the ABI major version before any other call, the kinds
//! against the manifest, a deadline on every call — and the SDK's glue
//! catches panics at the boundary.
//!
//! This module must never call into a library whose `abi_major` it has not
//! checked, and never unload one: code of it may still run on a thread that
//! missed its deadline, and Rust libraries register thread-local destructors
//! that would dangle. Loaded libraries are leaked on purpose.
//!
//! Deadlines: each call runs on a worker thread; the caller waits at most
//! `timeout_ms`. A call that misses it is reported as a plugin error and its
//! thread is left to finish (or hang) on its own — native code cannot be
//! interrupted safely. Idle workers are reused; a stuck one never is.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use berth_model::drivers::{DriverError, DriverResult};
use berth_sdk::abi::{self, Answer, Buffer, Descriptor, InitConfig};
use serde_json::Value;

use crate::backend::{driver_error, human, Backend, LoadStats};
use crate::manifest::{Kind, Manifest};
use crate::PluginError;

/// The functions of a library's descriptor, copied out once checked. The
/// library is never unloaded, so they stay valid for the process.
#[derive(Clone, Copy)]
struct Table {
    init: unsafe extern "C" fn(*const u8, usize, *mut Buffer) -> *mut c_void,
    call: unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize, *mut Buffer) -> i32,
    free: unsafe extern "C" fn(Buffer),
    /// Only libraries of ABI 0.2 and later have it.
    call_stream: Option<unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize, *mut abi::Stream, *mut Buffer) -> i32>,
}

/// Opens the library at `path` and checks its ABI version and kinds; calls
/// nothing in it but `berth_plugin_descriptor`.
fn open(name: &str, path: &Path, manifest: &Manifest) -> Result<Table, PluginError> {
    // SAFETY: loading runs the library's initialisers. A dylib plugin is
    // trusted native code by definition (its installer accepted that);
    // nothing the host can check comes before this point.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| PluginError::InvalidArgument(format!("plugin {name}: cannot load {}: {e}", path.display())))?;
    let desc: *const Descriptor = {
        // SAFETY: the symbol's type is fixed by the ABI (`abi::DESCRIPTOR_SYMBOL`).
        let symbol = unsafe { lib.get::<unsafe extern "C" fn() -> *const Descriptor>(abi::DESCRIPTOR_SYMBOL) }
            .map_err(|_| PluginError::InvalidArgument(format!("plugin {name}: {} is not a berth plugin (no berth_plugin_descriptor)", path.display())))?;
        // SAFETY: a function without arguments returning a pointer the ABI says lives as long as the library.
        unsafe { symbol() }
    };
    // Never dlclose (see the module docs): the descriptor and code stay valid for the process.
    std::mem::forget(lib);
    if desc.is_null() {
        return Err(PluginError::InvalidArgument(format!("plugin {name}: berth_plugin_descriptor returned null")));
    }
    // The fields are read one by one through the pointer, never as a whole
    // `&Descriptor`: a library of an older minor version has a shorter one.
    // SAFETY: non-null; the ABI guarantees the two version fields lead the
    // struct in every version.
    let (major, minor) = unsafe { (std::ptr::addr_of!((*desc).abi_major).read(), std::ptr::addr_of!((*desc).abi_minor).read()) };
    if major != abi::ABI_MAJOR {
        return Err(PluginError::InvalidArgument(format!(
            "plugin {name}: dylib ABI {major}.{minor}, this berth speaks {}.x; rebuild it against this berth's berth-sdk (ABI {}.{})",
            abi::ABI_MAJOR,
            abi::ABI_MAJOR,
            abi::ABI_MINOR
        )));
    }
    // SAFETY: same major version: every version of it starts with these
    // fields, laid out as we compiled them; `call_stream` is read only from
    // libraries whose minor version has it.
    let (kinds, table) = unsafe {
        (
            std::ptr::addr_of!((*desc).kinds).read(),
            Table {
                init: std::ptr::addr_of!((*desc).init).read(),
                call: std::ptr::addr_of!((*desc).call).read(),
                free: std::ptr::addr_of!((*desc).free).read(),
                call_stream: (minor >= 2).then(|| std::ptr::addr_of!((*desc).call_stream).read()),
            },
        )
    };
    for kind in &manifest.kinds {
        let bit = match kind {
            Kind::Volume => abi::KIND_VOLUME,
            Kind::Network => abi::KIND_NETWORK,
            Kind::Storage => abi::KIND_STORAGE,
        };
        if kinds & bit == 0 {
            return Err(PluginError::InvalidArgument(format!(
                "plugin {name}: plugin.toml says kinds includes {kind}, but the library does not provide it"
            )));
        }
        if *kind == Kind::Storage && table.call_stream.is_none() {
            return Err(PluginError::InvalidArgument(format!(
                "plugin {name}: dylib ABI {major}.{minor} cannot carry a storage driver (ABI 0.2 added it); rebuild it against this berth's berth-sdk (ABI {}.{})",
                abi::ABI_MAJOR,
                abi::ABI_MINOR
            )));
        }
    }
    Ok(table)
}

/// Checks a library at install without creating a driver.
pub fn validate(name: &str, path: &Path, manifest: &Manifest) -> Result<(), PluginError> {
    open(name, path, manifest).map(drop)
}

/// The driver handle `init` returned. The SDK's drivers are `Send + Sync`,
/// so the handle may be used from any thread.
#[derive(Clone, Copy)]
struct Handle(*mut c_void);
// SAFETY: see above; the glue's handle is a `Box<impl Send + Sync>`.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// A loaded dylib plugin.
pub struct DylibPlugin {
    inner: Arc<Inner>,
    pool: Arc<Pool>,
    timeout: Duration,
}

struct Inner {
    name: String,
    table: Table,
    handle: Handle,
}

impl DylibPlugin {
    /// Loads `path` (the library), checks it and creates its driver with
    /// `data_dir` and `settings`, under the manifest's deadline.
    pub fn load(
        name: &str,
        path: &Path,
        data_dir: &Path,
        manifest: &Manifest,
        settings: &BTreeMap<String, String>,
    ) -> Result<(DylibPlugin, LoadStats), PluginError> {
        let started = Instant::now();
        let table = open(name, path, manifest)?;
        let config = InitConfig { data_dir: data_dir.to_string_lossy().into_owned(), settings: settings.clone() };
        let config = serde_json::to_vec(&config).map_err(|e| PluginError::Internal(format!("plugin {name}: init config: {e}")))?;
        let pool = Arc::new(Pool::default());
        let timeout = Duration::from_millis(manifest.limits.timeout_ms);
        let owner = name.to_string();
        let made = pool.run(timeout, move || {
            let mut out = Buffer::empty();
            // SAFETY: `config` outlives the call; `out` is ours to receive into.
            let handle = unsafe { (table.init)(config.as_ptr(), config.len(), &mut out) };
            // SAFETY: `out` was written by this library (or is still empty).
            let text = unsafe { take(&table, out) };
            (Handle(handle), text)
        });
        let (handle, text) = made.map_err(|timed_out| match timed_out {
            true => PluginError::Internal(format!("plugin {owner}: init did not answer within {}", human(timeout))),
            false => PluginError::Internal(format!("plugin {owner}: init could not run: no call thread")),
        })?;
        if handle.0.is_null() {
            let why = match serde_json::from_slice::<Answer>(&text) {
                Ok(Answer::Err(e)) => e.to_string(),
                _ => String::from_utf8_lossy(&text).into_owned(),
            };
            return Err(PluginError::InvalidArgument(format!("plugin {owner}: init failed: {why}")));
        }
        let plugin = DylibPlugin { inner: Arc::new(Inner { name: owner.clone(), table, handle }), pool, timeout };
        Ok((plugin, LoadStats { plugin: owner, duration: started.elapsed(), from_cache: false }))
    }

    fn plugin_error(&self, message: String) -> DriverError {
        DriverError::Plugin { plugin: self.inner.name.clone(), message }
    }
}

/// Copies a buffer the library wrote and frees it with the library's `free`.
///
/// # Safety
/// `out` must be empty or written by the library of `table`, and not freed yet.
unsafe fn take(table: &Table, out: Buffer) -> Vec<u8> {
    if out.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the library wrote `len` bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec();
    // SAFETY: handed back to the allocator that made it, once.
    unsafe { (table.free)(out) };
    bytes
}

impl Backend for DylibPlugin {
    fn call(&self, method: &str, args: Value) -> DriverResult<Value> {
        let input = serde_json::to_vec(&args).map_err(|e| self.plugin_error(format!("cannot encode {method} arguments: {e}")))?;
        let inner = self.inner.clone();
        let m = method.to_string();
        let answer = self.pool.run(self.timeout, move || {
            let mut out = Buffer::empty();
            // SAFETY: the handle came from this library's `init` and the
            // library is never unloaded; the buffers outlive the call.
            let status = unsafe { (inner.table.call)(inner.handle.0, m.as_ptr(), m.len(), input.as_ptr(), input.len(), &mut out) };
            // SAFETY: `out` was written by this library (or is still empty).
            (status, unsafe { take(&inner.table, out) })
        });
        let (status, bytes) = match answer {
            Ok(a) => a,
            Err(true) => return Err(self.plugin_error(format!("did not answer within {} ({method})", human(self.timeout)))),
            Err(false) => return Err(self.plugin_error(format!("{method} could not run: no call thread"))),
        };
        self.decode(method, status, &bytes)
    }
}

impl DylibPlugin {
    /// Maps a call's status and answer document to its value or error.
    fn decode(&self, method: &str, status: i32, bytes: &[u8]) -> DriverResult<Value> {
        let decoded = serde_json::from_slice::<Answer>(bytes);
        match (status, decoded) {
            (abi::STATUS_OK, Ok(Answer::Ok(v))) => Ok(v),
            (abi::STATUS_ERR, Ok(Answer::Err(e))) => {
                let (kind, message) = sdk_error(e);
                Err(driver_error(&self.inner.name, kind, message))
            }
            (abi::STATUS_PANIC, decoded) => {
                let message = match decoded {
                    Ok(Answer::Err(e)) => sdk_error(e).1,
                    _ => String::from_utf8_lossy(bytes).into_owned(),
                };
                let message = message.strip_prefix("plugin panicked: ").unwrap_or(&message).to_string();
                Err(self.plugin_error(format!("panicked in {method}: {message}")))
            }
            (abi::STATUS_OK | abi::STATUS_ERR, Err(e)) => Err(self.plugin_error(format!("answered {method} with malformed JSON: {e}"))),
            (status, _) => Err(self.plugin_error(format!("answered {method} with status {status} and a document that does not match it"))),
        }
    }
}

/// The stream a storage call carries: the layer tar the plugin reads, or the
/// sink it writes the layer to.
pub enum Payload<'a> {
    None,
    Read(&'a mut dyn Read),
    Write(&'a mut dyn Write),
}

/// What `abi::Stream::ctx` points at during one `call_streaming`.
struct StreamState<'a> {
    payload: Payload<'a>,
    /// The host side's own failure (a layer that fails its digest, a full
    /// disk), reported in preference to what the plugin makes of it.
    error: Option<std::io::Error>,
}

impl DylibPlugin {
    /// One call on the caller's thread, without a deadline, with `payload`
    /// lent as the call's stream: how storage drivers are called (see
    /// `berth_sdk::abi`). A panic in the plugin is still caught by its glue.
    pub fn call_streaming(&self, method: &str, args: Value, payload: Payload<'_>) -> DriverResult<Value> {
        let Some(call_stream) = self.inner.table.call_stream else {
            return Err(self.plugin_error(format!("{method}: the library's ABI is older than 0.2 and has no streaming calls")));
        };
        let input = serde_json::to_vec(&args).map_err(|e| self.plugin_error(format!("cannot encode {method} arguments: {e}")))?;
        let mut state = StreamState { payload, error: None };
        let mut stream = abi::Stream { ctx: std::ptr::addr_of_mut!(state).cast(), read: stream_read, write: stream_write };
        let mut out = Buffer::empty();
        // SAFETY: the handle came from this library's `init`; the stream and
        // its state, the method and the input outlive the call, which returns
        // before we touch `state` again.
        let status = unsafe {
            call_stream(self.inner.handle.0, method.as_ptr(), method.len(), input.as_ptr(), input.len(), &mut stream, &mut out)
        };
        // SAFETY: `out` was written by this library (or is still empty).
        let bytes = unsafe { take(&self.inner.table, out) };
        if let Some(e) = state.error.take() {
            return Err(DriverError::io(format!("{method} (plugin {}): the layer stream failed", self.inner.name), e));
        }
        self.decode(method, status, &bytes)
    }
}

/// `abi::Stream::read` over `Payload::Read`.
unsafe extern "C" fn stream_read(ctx: *mut c_void, buf: *mut u8, cap: usize) -> isize {
    // SAFETY: `ctx` is the `StreamState` of the `call_streaming` running on this thread.
    let state = unsafe { &mut *ctx.cast::<StreamState>() };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut state.payload {
        Payload::Read(reader) if !buf.is_null() => {
            // SAFETY: the plugin lends `cap` writable bytes at `buf` for this call.
            let buf = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
            loop {
                match reader.read(buf) {
                    Ok(n) => break Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            }
        }
        Payload::Read(_) => Err(std::io::Error::other("the plugin passed a null buffer to read into")),
        _ => Err(std::io::Error::other("the plugin read from a call that has no input stream")),
    }));
    let outcome = result.unwrap_or_else(|_| Err(std::io::Error::other("reading the layer panicked")));
    match outcome.map(isize::try_from) {
        Ok(Ok(n)) => n,
        Ok(Err(_)) => -1,
        Err(e) => {
            state.error.get_or_insert(e);
            -1
        }
    }
}

/// `abi::Stream::write` over `Payload::Write`.
unsafe extern "C" fn stream_write(ctx: *mut c_void, buf: *const u8, len: usize) -> isize {
    // SAFETY: `ctx` is the `StreamState` of the `call_streaming` running on this thread.
    let state = unsafe { &mut *ctx.cast::<StreamState>() };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut state.payload {
        Payload::Write(_) if len == 0 => Ok(()),
        Payload::Write(writer) if !buf.is_null() => {
            // SAFETY: the plugin lends `len` readable bytes at `buf` for this call.
            writer.write_all(unsafe { std::slice::from_raw_parts(buf, len) })
        }
        Payload::Write(_) => Err(std::io::Error::other("the plugin passed a null buffer to write")),
        _ => Err(std::io::Error::other("the plugin wrote to a call that has no output stream")),
    }));
    match result.unwrap_or_else(|_| Err(std::io::Error::other("writing the layer panicked"))) {
        Ok(()) => 0,
        Err(e) => {
            state.error.get_or_insert(e);
            -1
        }
    }
}

fn sdk_error(e: DriverError) -> (&'static str, String) {
    (e.kind(), e.message())
}

type Job = Box<dyn FnOnce() + Send>;

/// Worker threads for calls with a deadline. An idle worker's sender waits
/// in `idle`; a caller takes one (or starts a thread), sends the job, waits
/// for the answer and puts the sender back. A worker that misses a
/// deadline is never put back: when it finishes, its channel is closed and
/// it exits.
#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<(u64, mpsc::Sender<Job>)>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Idle workers kept per plugin.
const MAX_IDLE: usize = 8;
/// An idle worker exits after this long without work.
const IDLE_EXIT: Duration = Duration::from_secs(60);
/// How long a caller waiting for an answer, and a worker waiting for its next
/// job, poll before they sleep. Waking a sleeping thread costs tens of
/// microseconds on a virtual machine with idle cores, several times a
/// typical driver call; polling this long catches most answers, and calls
/// that come in bursts, awake.
const SPIN: Duration = Duration::from_micros(50);

/// `rx.recv_timeout(timeout)`, polling for `SPIN` before it sleeps.
fn recv_spinning<T>(rx: &mpsc::Receiver<T>, timeout: Duration) -> Result<T, mpsc::RecvTimeoutError> {
    let started = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvTimeoutError::Disconnected),
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < SPIN.min(timeout) => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Empty) => return rx.recv_timeout(timeout.saturating_sub(started.elapsed())),
        }
    }
}

impl Pool {
    /// Runs `f` on a worker; `Err(true)` if it did not finish within
    /// `timeout`, `Err(false)` if no worker could run it.
    fn run<R: Send + 'static>(self: &Arc<Pool>, timeout: Duration, f: impl FnOnce() -> R + Send + 'static) -> Result<R, bool> {
        let (reply_tx, reply_rx) = mpsc::sync_channel::<R>(1);
        let mut job: Job = Box::new(move || {
            let _ = reply_tx.send(f());
        });
        let worker = loop {
            let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match taken {
                Some((id, tx)) => match tx.send(job) {
                    Ok(()) => break Some((id, tx)),
                    // It exited between our pop and send; the job comes back.
                    Err(mpsc::SendError(j)) => job = j,
                },
                None => break self.spawn(job),
            }
        };
        let answer = recv_spinning(&reply_rx, timeout).map_err(|e| e == mpsc::RecvTimeoutError::Timeout);
        if let (Ok(_), Some(worker)) = (&answer, worker) {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(worker);
            }
        }
        answer
    }

    /// A new worker already running `job`; `None` if no thread could be made
    /// (the job is then dropped and the caller sees no answer).
    fn spawn(self: &Arc<Pool>, job: Job) -> Option<(u64, mpsc::Sender<Job>)> {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Job>();
        let pool: Weak<Pool> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("berth-dylib-call".into()).spawn(move || {
            job();
            loop {
                match recv_spinning(&rx, IDLE_EXIT) {
                    Ok(job) => job(),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        // Leave only if no caller holds our sender: under the
                        // lock, either we remove it from `idle` (nobody can
                        // send any more) or a caller took it and will send.
                        let Some(pool) = pool.upgrade() else { return };
                        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(i) = idle.iter().position(|(w, _)| *w == id) {
                            idle.remove(i);
                            return;
                        }
                    }
                }
            }
        });
        match spawned {
            Ok(_) => Some((id, tx)),
            Err(e) => {
                tracing::error!("cannot start a plugin call thread: {e}");
                None
            }
        }
    }
}
