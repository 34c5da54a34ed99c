//! One dispatcher per driver kind: a method name as the ABI spells it
//! (`volume-driver.create`) and the arguments as a JSON array in WIT order
//! in, the answer as a JSON value out. The component glue and the dylib glue
//! both go through here, so a driver answers the same whichever host loads
//! it. Nothing here may panic on bad input: it becomes `InvalidArgument`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use std::io::{Read, Write};

use crate::{DriverError, DriverResult, NetworkDriver, StorageDriver, VolumeDriver};

/// The `volume-driver` methods, in WIT order.
pub const VOLUME_METHODS: &[&str] = &[
    "volume-driver.capabilities",
    "volume-driver.create",
    "volume-driver.remove",
    "volume-driver.mount",
    "volume-driver.unmount",
    "volume-driver.path",
    "volume-driver.get",
    "volume-driver.list",
];

/// The `network-driver` methods, in WIT order.
pub const NETWORK_METHODS: &[&str] = &[
    "network-driver.capabilities",
    "network-driver.create-network",
    "network-driver.delete-network",
    "network-driver.create-endpoint",
    "network-driver.delete-endpoint",
    "network-driver.join",
    "network-driver.leave",
];

/// The `storage-driver` methods. `apply-diff` reads and `export-diff` writes
/// the call's stream (`abi::Descriptor::call_stream`).
pub const STORAGE_METHODS: &[&str] = &[
    "storage-driver.status",
    "storage-driver.create",
    "storage-driver.create-read-write",
    "storage-driver.apply-diff",
    "storage-driver.mount-plan",
    "storage-driver.export-diff",
    "storage-driver.changes",
    "storage-driver.usage",
    "storage-driver.exists",
    "storage-driver.remove",
    "storage-driver.list",
];

/// The byte stream of a storage call: the layer tar in or out.
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// The stream of a call that came without one (`Descriptor::call`).
pub struct NoStream;

impl Read for NoStream {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("this call has no stream; the host must use call_stream"))
    }
}

impl Write for NoStream {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("this call has no stream; the host must use call_stream"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs one `storage-driver` call on `driver`; `stream` carries the layer tar.
pub fn storage(driver: &dyn StorageDriver, method: &str, args: Vec<Value>, stream: &mut dyn Stream) -> DriverResult<Value> {
    let mut a = Args::new(method, args);
    match method {
        "storage-driver.status" => {
            a.done()?;
            json(driver.status())
        }
        "storage-driver.create" => {
            let (id, parent): (String, Option<String>) = (a.next()?, a.next()?);
            a.done()?;
            json(driver.create(&id, parent.as_deref())?)
        }
        "storage-driver.create-read-write" => {
            let (id, parent): (String, Option<String>) = (a.next()?, a.next()?);
            a.done()?;
            json(driver.create_read_write(&id, parent.as_deref())?)
        }
        "storage-driver.apply-diff" => {
            let id: String = a.next()?;
            a.done()?;
            json(driver.apply_diff(&id, stream)?)
        }
        "storage-driver.mount-plan" => {
            let (id, writable): (String, bool) = (a.next()?, a.next()?);
            a.done()?;
            json(driver.mount_plan(&id, writable)?)
        }
        "storage-driver.export-diff" => {
            let id: String = a.next()?;
            a.done()?;
            driver.export_diff(&id, stream)?;
            stream.flush().map_err(|e| DriverError::io("cannot flush the layer stream", e))?;
            json(())
        }
        "storage-driver.changes" => {
            let id: String = a.next()?;
            a.done()?;
            json(driver.changes(&id)?)
        }
        "storage-driver.usage" => {
            let id: String = a.next()?;
            a.done()?;
            json(driver.usage(&id)?)
        }
        "storage-driver.exists" => {
            let id: String = a.next()?;
            a.done()?;
            json(driver.exists(&id)?)
        }
        "storage-driver.remove" => {
            let id: String = a.next()?;
            a.done()?;
            json(driver.remove(&id)?)
        }
        "storage-driver.list" => {
            a.done()?;
            json(driver.list()?)
        }
        _ => Err(unknown(method)),
    }
}

/// Runs one `volume-driver` call on `driver`.
pub fn volume(driver: &dyn VolumeDriver, method: &str, args: Vec<Value>) -> DriverResult<Value> {
    let mut a = Args::new(method, args);
    match method {
        "volume-driver.capabilities" => {
            a.done()?;
            json(driver.capabilities())
        }
        "volume-driver.create" => {
            let request = a.next()?;
            a.done()?;
            json(driver.create(request)?)
        }
        "volume-driver.remove" => {
            let name: String = a.next()?;
            a.done()?;
            json(driver.remove(&name)?)
        }
        "volume-driver.mount" => {
            let (name, caller): (String, String) = (a.next()?, a.next()?);
            a.done()?;
            json(driver.mount(&name, &caller)?)
        }
        "volume-driver.unmount" => {
            let (name, caller): (String, String) = (a.next()?, a.next()?);
            a.done()?;
            json(driver.unmount(&name, &caller)?)
        }
        "volume-driver.path" => {
            let name: String = a.next()?;
            a.done()?;
            json(driver.path(&name)?)
        }
        "volume-driver.get" => {
            let name: String = a.next()?;
            a.done()?;
            json(driver.get(&name)?)
        }
        "volume-driver.list" => {
            a.done()?;
            json(driver.list()?)
        }
        _ => Err(unknown(method)),
    }
}

/// Runs one `network-driver` call on `driver`.
pub fn network(driver: &dyn NetworkDriver, method: &str, args: Vec<Value>) -> DriverResult<Value> {
    let mut a = Args::new(method, args);
    match method {
        "network-driver.capabilities" => {
            a.done()?;
            json(driver.capabilities())
        }
        "network-driver.create-network" => {
            let request = a.next()?;
            a.done()?;
            json(driver.create_network(request)?)
        }
        "network-driver.delete-network" => {
            let id: String = a.next()?;
            a.done()?;
            json(driver.delete_network(&id)?)
        }
        "network-driver.create-endpoint" => {
            let request = a.next()?;
            a.done()?;
            json(driver.create_endpoint(request)?)
        }
        "network-driver.delete-endpoint" => {
            let (network, endpoint): (String, String) = (a.next()?, a.next()?);
            a.done()?;
            json(driver.delete_endpoint(&network, &endpoint)?)
        }
        "network-driver.join" => {
            let request = a.next()?;
            a.done()?;
            json(driver.join(request)?)
        }
        "network-driver.leave" => {
            let (network, endpoint): (String, String) = (a.next()?, a.next()?);
            a.done()?;
            json(driver.leave(&network, &endpoint)?)
        }
        _ => Err(unknown(method)),
    }
}

fn unknown(method: &str) -> DriverError {
    DriverError::Unsupported(format!("unknown method {method:?}"))
}

fn json<T: Serialize>(value: T) -> DriverResult<Value> {
    serde_json::to_value(value).map_err(|e| DriverError::Failed(format!("cannot encode the answer: {e}")))
}

/// The positional arguments of one call, taken in order.
struct Args<'a> {
    method: &'a str,
    values: std::vec::IntoIter<Value>,
    taken: usize,
}

impl<'a> Args<'a> {
    fn new(method: &'a str, values: Vec<Value>) -> Self {
        Args { method, values: values.into_iter(), taken: 0 }
    }

    fn next<T: DeserializeOwned>(&mut self) -> DriverResult<T> {
        let (method, i) = (self.method, self.taken);
        self.taken += 1;
        let value = self
            .values
            .next()
            .ok_or_else(|| DriverError::InvalidArgument(format!("{method}: argument {i} is missing")))?;
        serde_json::from_value(value).map_err(|e| DriverError::InvalidArgument(format!("{method}: argument {i}: {e}")))
    }

    fn done(&mut self) -> DriverResult<()> {
        match self.values.len() {
            0 => Ok(()),
            n => Err(DriverError::InvalidArgument(format!(
                "{}: {n} argument(s) too many (expected {})",
                self.method, self.taken
            ))),
        }
    }
}
