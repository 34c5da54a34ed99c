//! The native (dylib) ABI: one exported symbol, `berth_plugin_descriptor`,
//! returns a `#[repr(C)]` `Descriptor` with the ABI version, the kinds the
//! library provides and its function table. The host checks `abi_major`
//! before any other call. Only `#[repr(C)]` values and bytes cross the
//! boundary: requests and answers are the JSON documents of `crate::types`,
//! the same ones the WASM contract carries.
//!
//! Calls (`Descriptor::call`):
//! - `method` is `<interface>.<function>` with the WIT's names, e.g.
//!   `volume-driver.create`, `network-driver.join`;
//! - `input` is a JSON array of the function's arguments in WIT order
//!   (a `json` argument is embedded as a JSON value, not as a string);
//! - the answer written to `out` is `{"ok": VALUE}` (`null` for `()`) or
//!   `{"err": {"kind": "not_found", "message": "..."}}`; the return value is
//!   `STATUS_OK`, `STATUS_ERR` (a driver error in `out`) or `STATUS_PANIC`
//!   (the glue caught a panic; `out` holds its message as `{"err": ...}`).
//!
//! The host frees every buffer the plugin wrote with `Descriptor::free`.
//!
//! Storage drivers (`KIND_STORAGE`, ABI 0.2) move layer tars, which can be
//! gigabytes: `Descriptor::call_stream` is `call` plus a `Stream` the host
//! lends for that one call — `storage-driver.apply-diff` reads the layer from
//! it, `storage-driver.export-diff` writes the layer to it. The host makes
//! storage calls on its own thread, without a deadline: a layer takes as long
//! as its size, and the stream borrows the caller's reader or writer.

use std::ffi::c_void;

/// Name of the exported function returning `*const Descriptor`.
pub const DESCRIPTOR_SYMBOL: &[u8] = b"berth_plugin_descriptor\0";

/// Version of this ABI. A host refuses a library whose `abi_major` differs.
pub const ABI_MAJOR: u32 = 0;
/// Additions that keep older hosts working bump the minor version.
/// 0.2 added `KIND_STORAGE` and `Descriptor::call_stream`.
pub const ABI_MINOR: u32 = 2;

/// `Descriptor::kinds` bits.
pub const KIND_VOLUME: u32 = 1;
pub const KIND_NETWORK: u32 = 2;
/// A storage (graph) driver; native libraries only, since ABI 0.2.
pub const KIND_STORAGE: u32 = 4;

/// `Descriptor::call` results.
pub const STATUS_OK: i32 = 0;
pub const STATUS_ERR: i32 = 1;
pub const STATUS_PANIC: i32 = 2;

/// Bytes owned by the plugin, handed to the host; freed with `Descriptor::free`.
#[repr(C)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buffer {
    /// An empty buffer (nothing to free).
    pub const fn empty() -> Buffer {
        Buffer { ptr: std::ptr::null_mut(), len: 0, cap: 0 }
    }

    /// Hands `bytes` over; the receiver frees them with `Buffer::free`.
    pub fn from_vec(bytes: Vec<u8>) -> Buffer {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Buffer { ptr: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity() }
    }

    /// Frees a buffer made by `from_vec` in this same library.
    ///
    /// # Safety
    /// `self` must come from `Buffer::from_vec` of the same allocator and not be freed twice.
    pub unsafe fn free(self) {
        if !self.ptr.is_null() {
            drop(Vec::from_raw_parts(self.ptr, self.len, self.cap));
        }
    }
}

/// What `berth_plugin_descriptor` returns. Lives as long as the library.
#[repr(C)]
pub struct Descriptor {
    pub abi_major: u32,
    pub abi_minor: u32,
    /// `KIND_*` bits.
    pub kinds: u32,
    /// Creates the driver. `config` is a JSON `InitConfig`. Returns a handle
    /// for `call`, or null with an error message in `out`.
    pub init: unsafe extern "C" fn(config: *const u8, config_len: usize, out: *mut Buffer) -> *mut c_void,
    /// One driver call (see the module docs).
    pub call: unsafe extern "C" fn(
        handle: *mut c_void,
        method: *const u8,
        method_len: usize,
        input: *const u8,
        input_len: usize,
        out: *mut Buffer,
    ) -> i32,
    /// Frees a buffer this library wrote.
    pub free: unsafe extern "C" fn(buffer: Buffer),
    /// `call` with a byte stream lent for this call (ABI 0.2; read it only
    /// when `abi_minor >= 2`). Libraries without storage answer `unsupported`.
    pub call_stream: unsafe extern "C" fn(
        handle: *mut c_void,
        method: *const u8,
        method_len: usize,
        input: *const u8,
        input_len: usize,
        stream: *mut Stream,
        out: *mut Buffer,
    ) -> i32,
}

/// A byte stream the host lends for one `call_stream`. The plugin must not
/// keep it past the call. Both functions may be called from the calling
/// thread only.
#[repr(C)]
pub struct Stream {
    /// The host's state, passed back to `read` and `write`.
    pub ctx: *mut c_void,
    /// Reads up to `cap` bytes into `buf`: the count, 0 at the end, -1 on an
    /// error (the host keeps the error and reports it for the call).
    pub read: unsafe extern "C" fn(ctx: *mut c_void, buf: *mut u8, cap: usize) -> isize,
    /// Writes all `len` bytes of `buf`: 0, or -1 on an error.
    pub write: unsafe extern "C" fn(ctx: *mut c_void, buf: *const u8, len: usize) -> isize,
}

/// The JSON document `Descriptor::init` receives.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InitConfig {
    /// The plugin's own data dir on the host.
    pub data_dir: String,
    /// Settings: `plugin.toml` defaults, changed by `berth plugin set`.
    pub settings: std::collections::BTreeMap<String, String>,
}

/// The JSON document a call (or a failed `init`) writes to `out`:
/// `{"ok": VALUE}` or `{"err": {"kind": ..., "message": ...}}`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Ok(serde_json::Value),
    Err(crate::DriverError),
}
