//! Random identifiers: container, exec and volume IDs, MAC addresses.

use std::io::Read;

use crate::error::{EngineError, EngineResult};

/// `n` bytes from the kernel's random source.
pub(crate) fn random_bytes(n: usize) -> EngineResult<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut f = std::fs::File::open("/dev/urandom").map_err(|e| EngineError::io("opening /dev/urandom", e))?;
    f.read_exact(&mut buf).map_err(|e| EngineError::io("reading /dev/urandom", e))?;
    Ok(buf)
}
