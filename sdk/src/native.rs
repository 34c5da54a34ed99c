//! The dylib glue behind `export_*!` on native targets: the `Descriptor`
//! functions for one driver type. It is the only code that touches raw
//! pointers, and it never lets a panic or bad input cross the C boundary.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use serde_json::Value;

use crate::abi::{self, Answer, Buffer, Descriptor, InitConfig};
use crate::dispatch::{self, NoStream, Stream};
use crate::{DriverError, DriverResult, NetworkDriver, PluginContext, StorageDriver, VolumeDriver};

/// One driver kind as the glue serves it.
pub trait Served: Send + Sync + 'static + Sized {
    /// `abi::KIND_*` bit.
    const KIND: u32;
    /// Builds the driver from the host's `InitConfig`.
    fn make(ctx: PluginContext) -> DriverResult<Self>;
    /// Runs one call; `stream` is the host's (`call_stream`) or `NoStream`.
    fn serve(&self, method: &str, args: Vec<Value>, stream: &mut dyn Stream) -> DriverResult<Value>;
}

/// A volume driver served over the ABI.
pub struct AsVolume<T>(T);
/// A network driver served over the ABI.
pub struct AsNetwork<T>(T);
/// A storage driver served over the ABI.
pub struct AsStorage<T>(T);

impl<T: VolumeDriver> Served for AsVolume<T> {
    const KIND: u32 = abi::KIND_VOLUME;
    fn make(ctx: PluginContext) -> DriverResult<Self> {
        T::new(ctx).map(AsVolume)
    }
    fn serve(&self, method: &str, args: Vec<Value>, _: &mut dyn Stream) -> DriverResult<Value> {
        dispatch::volume(&self.0, method, args)
    }
}

impl<T: NetworkDriver> Served for AsNetwork<T> {
    const KIND: u32 = abi::KIND_NETWORK;
    fn make(ctx: PluginContext) -> DriverResult<Self> {
        T::new(ctx).map(AsNetwork)
    }
    fn serve(&self, method: &str, args: Vec<Value>, _: &mut dyn Stream) -> DriverResult<Value> {
        dispatch::network(&self.0, method, args)
    }
}

impl<T: StorageDriver> Served for AsStorage<T> {
    const KIND: u32 = abi::KIND_STORAGE;
    fn make(ctx: PluginContext) -> DriverResult<Self> {
        T::new(ctx).map(AsStorage)
    }
    fn serve(&self, method: &str, args: Vec<Value>, stream: &mut dyn Stream) -> DriverResult<Value> {
        dispatch::storage(&self.0, method, args, stream)
    }
}

/// The descriptor of a library serving `S`; `export_*!` puts it in a static.
pub const fn descriptor<S: Served>() -> Descriptor {
    Descriptor {
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        kinds: S::KIND,
        init: init::<S>,
        call: call::<S>,
        free,
        call_stream: call_stream::<S>,
    }
}

unsafe extern "C" fn init<S: Served>(config: *const u8, config_len: usize, out: *mut Buffer) -> *mut c_void {
    let made = catch_unwind(|| {
        // SAFETY: the host passes `config_len` readable bytes at `config`.
        let bytes = unsafe { bytes(config, config_len) }?;
        let config: InitConfig =
            serde_json::from_slice(bytes).map_err(|e| DriverError::InvalidArgument(format!("bad init config: {e}")))?;
        S::make(PluginContext { data_dir: PathBuf::from(config.data_dir), settings: config.settings })
    });
    let error = match made {
        Ok(Ok(driver)) => return Box::into_raw(Box::new(driver)).cast(),
        Ok(Err(e)) => e,
        Err(panic) => panicked(panic),
    };
    // SAFETY: `out` is null or a writable Buffer the host owns.
    unsafe { answer(out, &Answer::Err(error)) };
    std::ptr::null_mut()
}

unsafe extern "C" fn call<S: Served>(
    handle: *mut c_void,
    method: *const u8,
    method_len: usize,
    input: *const u8,
    input_len: usize,
    out: *mut Buffer,
) -> i32 {
    // SAFETY: passed through from the host, which keeps `call`'s contract.
    unsafe { call_with::<S>(handle, method, method_len, input, input_len, &mut NoStream, out) }
}

unsafe extern "C" fn call_stream<S: Served>(
    handle: *mut c_void,
    method: *const u8,
    method_len: usize,
    input: *const u8,
    input_len: usize,
    stream: *mut abi::Stream,
    out: *mut Buffer,
) -> i32 {
    // SAFETY: a non-null stream is the host's, valid for this call.
    match unsafe { stream.as_ref() } {
        // SAFETY: as for `call`.
        Some(stream) => unsafe { call_with::<S>(handle, method, method_len, input, input_len, &mut HostStream(stream), out) },
        // SAFETY: as for `call`.
        None => unsafe { call_with::<S>(handle, method, method_len, input, input_len, &mut NoStream, out) },
    }
}

/// The host's `abi::Stream` as `Read + Write`.
struct HostStream<'a>(&'a abi::Stream);

impl std::io::Read for HostStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: the host's function, its context, and a buffer of `buf.len()` writable bytes.
        let n = unsafe { (self.0.read)(self.0.ctx, buf.as_mut_ptr(), buf.len()) };
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= buf.len())
            .ok_or_else(|| std::io::Error::other("the host could not read the layer stream"))
    }
}

impl std::io::Write for HostStream<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: the host's function, its context, and `buf.len()` readable bytes.
        match unsafe { (self.0.write)(self.0.ctx, buf.as_ptr(), buf.len()) } {
            0 => Ok(buf.len()),
            _ => Err(std::io::Error::other("the host could not take the layer stream")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

unsafe fn call_with<S: Served>(
    handle: *mut c_void,
    method: *const u8,
    method_len: usize,
    input: *const u8,
    input_len: usize,
    stream: &mut dyn Stream,
    out: *mut Buffer,
) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a non-null handle is what `init::<S>` returned and the
        // host keeps it alive for as long as it calls.
        let driver = unsafe { handle.cast::<S>().as_ref() }
            .ok_or_else(|| DriverError::Failed("no driver: init did not succeed".into()))?;
        // SAFETY: the host passes the lengths of the buffers it passes.
        let (method, input) = unsafe { (bytes(method, method_len)?, bytes(input, input_len)?) };
        let method =
            std::str::from_utf8(method).map_err(|_| DriverError::InvalidArgument("method name is not UTF-8".into()))?;
        let args: Vec<Value> = if input.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(input)
                .map_err(|e| DriverError::InvalidArgument(format!("{method}: arguments are not a JSON array: {e}")))?
        };
        driver.serve(method, args, stream)
    }));
    let (status, doc) = match outcome {
        Ok(Ok(value)) => (abi::STATUS_OK, Answer::Ok(value)),
        Ok(Err(e)) => (abi::STATUS_ERR, Answer::Err(e)),
        Err(panic) => (abi::STATUS_PANIC, Answer::Err(panicked(panic))),
    };
    // SAFETY: `out` is null or a writable Buffer the host owns.
    unsafe { answer(out, &doc) };
    status
}

unsafe extern "C" fn free(buffer: Buffer) {
    // SAFETY: the host only hands back buffers this library wrote.
    unsafe { buffer.free() }
}

/// Reads `len` bytes at `ptr`; null with a length is a host bug, not UB.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> DriverResult<&'a [u8]> {
    match (ptr.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(DriverError::InvalidArgument("null buffer with a length".into())),
        // SAFETY: the caller promises `len` readable bytes at `ptr`.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

unsafe fn answer(out: *mut Buffer, doc: &Answer) {
    if out.is_null() {
        return;
    }
    // An Answer of plain JSON values always encodes; an empty buffer makes the host report it.
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    // SAFETY: checked non-null; the host gave us a Buffer to fill (its old contents are not ours to free).
    unsafe { out.write(Buffer::from_vec(bytes)) };
}

fn panicked(panic: Box<dyn Any + Send>) -> DriverError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    DriverError::Failed(format!("plugin panicked: {message}"))
}
