//! Unpacking a layer blob into the storage driver, pipelined across cores.
//!
//! Three stages run at once: a reader thread reads the blob and decompresses
//! it into 1 MiB chunks, the calling thread feeds them to the storage driver
//! (which writes the files), and a hasher thread computes the diff ID over
//! the same chunks once the driver is done with each. Chunks go round a
//! bounded ring, so memory stays small and no stage waits on an allocation.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use berth_model::Digest;
use berth_model::drivers::{DriverError, StorageDriver};
use sha2::{Digest as _, Sha256};

use crate::error::EngineError;
use super::compress::{decompressed, Compression};
use super::content::ContentStore;
use super::ImageError;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 8;

/// What unpacking one layer produced.
#[derive(Clone, Debug)]
pub(crate) struct Unpacked {
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Length of the uncompressed tar.
    pub tar_size: u64,
    /// Bytes of file content the driver wrote.
    pub size: u64,
}

type Filled = Result<(Vec<u8>, usize), io::Error>;

/// Hands the producer's chunks to a `Read` consumer and each finished chunk on to the hasher.
struct ChunkReader {
    rx: Receiver<Filled>,
    hash: SyncSender<(Vec<u8>, usize)>,
    cur: Option<(Vec<u8>, usize)>,
    pos: usize,
    done: bool,
    /// The producer's error, kept whole for the report (the consumer gets a copy).
    error: Option<io::Error>,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((buf, len)) = &self.cur {
                if self.pos < *len {
                    let n = out.len().min(len - self.pos);
                    out[..n].copy_from_slice(&buf[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
                if let Some(chunk) = self.cur.take() {
                    // The hasher only stops when we drop its sender.
                    let _ = self.hash.send(chunk);
                }
            }
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = Some(chunk);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    self.error = Some(e);
                    self.done = true;
                    return Err(copy);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
    }
}

/// Runs `consume` over `source`, read and hashed on other threads. Returns
/// `consume`'s result and either the error reading `source` hit or the digest
/// and length of what it yielded (all of it when `consume` succeeded: the
/// rest is drained; only a prefix when it failed).
/// (Hashing only when `hash` is set; without it the digest is that of nothing.)
pub(crate) fn pipeline<T, E>(
    source: Box<dyn Read + Send + '_>,
    hash: bool,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, E>,
) -> (Result<T, E>, Result<(Digest, u64), io::Error>) {
    let (full_tx, full_rx) = sync_channel::<Filled>(DEPTH);
    let (hash_tx, hash_rx) = sync_channel::<(Vec<u8>, usize)>(DEPTH);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(DEPTH * 3);
    thread::scope(|s| {
        let mut source = source;
        s.spawn(move || loop {
            let mut buf = free_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            let mut len = 0;
            while len < CHUNK {
                match source.read(&mut buf[len..]) {
                    Ok(0) => break,
                    Ok(n) => len += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        return;
                    }
                }
            }
            if len == 0 || full_tx.send(Ok((buf, len))).is_err() {
                return; // end of input, or the consumer gave up
            }
            if len < CHUNK {
                return;
            }
        });
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            let mut total = 0u64;
            for (buf, len) in hash_rx {
                if hash {
                    h.update(&buf[..len]);
                }
                total += len as u64;
                let _ = free_tx.try_send(buf);
            }
            (Digest::from_hasher(h), total)
        });
        let mut reader = ChunkReader { rx: full_rx, hash: hash_tx, cur: None, pos: 0, done: false, error: None };
        let result = consume(&mut reader);
        // The tar reader stops at the end-of-archive blocks; the diff ID covers
        // every byte, so read the rest (usually a few KiB of padding).
        let mut drained = if result.is_ok() { io::copy(&mut reader, &mut io::sink()).map(|_| ()) } else { Ok(()) };
        if let Some(e) = reader.error.take() {
            drained = Err(e);
        }
        drop(reader);
        let hashed = match hasher.join() {
            Ok(h) => h,
            Err(_) => (Digest::of(b""), 0),
        };
        (result, drained.map(|()| hashed))
    })
}

/// Unpacks layer blob `blob` (gzip, zstd or plain tar) into a new storage
/// layer `id` on `parent`, checking the uncompressed digest against
/// `expected_diff_id` when given. On any failure the layer is removed again.
pub(crate) fn unpack_layer(
    content: &ContentStore,
    storage: &dyn StorageDriver,
    blob: &Digest,
    what: &str,
    id: &str,
    parent: Option<&str>,
    expected_diff_id: Option<&Digest>,
) -> Result<Unpacked, EngineError> {
    let file = content.open_blob(blob)?;
    unpack_layer_from(file, storage, blob, what, id, parent, expected_diff_id)
}

/// `unpack_layer` reading the blob's bytes from `source` (for a pull, the
/// blob as it downloads: see `live.rs`).
pub(crate) fn unpack_layer_from<R: Read + Send>(
    source: R,
    storage: &dyn StorageDriver,
    blob: &Digest,
    what: &str,
    id: &str,
    parent: Option<&str>,
    expected_diff_id: Option<&Digest>,
) -> Result<Unpacked, EngineError> {
    let (kind, reader) = decompressed(what, source)?;
    // An uncompressed blob is its own diff: the content store checked its
    // digest when it was written, so hashing it again would only cost time.
    let known = (kind == Compression::None).then_some(blob).filter(|b| expected_diff_id == Some(*b));
    storage.create(id, parent).map_err(|e| driver_context(what, e))?;
    let (applied, hashed) = pipeline(Box::new(reader), known.is_none(), |r| storage.apply_diff(id, r));
    let hashed = hashed.map(|(d, n)| (known.cloned().unwrap_or(d), n));
    let outcome = match (applied, hashed) {
        // A broken stream explains a driver error better than the driver's symptom.
        (_, Err(e)) => Err(EngineError::Image(ImageError::Invalid(format!(
            "{what}: cannot decompress ({kind:?}): {e} (truncated or corrupt layer)"
        )))),
        (Err(e), _) => Err(apply_error(what, e)),
        (Ok(size), Ok((diff_id, tar_size))) => match expected_diff_id {
            Some(expected) if expected != &diff_id => Err(EngineError::Image(ImageError::DigestMismatch {
                what: format!("{what}: uncompressed content (the config's diff_id)"),
                expected: expected.clone(),
                actual: diff_id,
            })),
            _ => Ok(Unpacked { diff_id, tar_size, size }),
        },
    };
    if outcome.is_err() {
        if let Err(e) = storage.remove(id) {
            tracing::warn!(layer = id, error = %e, "removing a layer that failed to unpack");
        }
    }
    outcome
}

/// A driver's failure to apply a stream that decompressed without error.
/// An I/O error that carries no errno did not come from the kernel: it is the
/// tar parser rejecting the bytes (a header checksum mismatch, a size field
/// that is not octal, ...), so the layer is bad input (400), not a host fault.
fn apply_error(what: &str, e: DriverError) -> EngineError {
    match e {
        DriverError::Io { context, source } if source.raw_os_error().is_none() => {
            EngineError::Image(ImageError::Invalid(format!("{what}: not a valid tar archive: {context}: {source}")))
        }
        other => driver_context(what, other),
    }
}

/// A driver error with which layer it concerned.
pub(crate) fn driver_context(what: &str, e: DriverError) -> EngineError {
    match e {
        DriverError::InvalidArgument(m) => EngineError::InvalidArgument(format!("{what}: {m}")),
        DriverError::Io { context, source } => EngineError::io(format!("{what}: {context}"), source),
        other => EngineError::Driver(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_hashes_everything_even_what_the_consumer_left() {
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        let (got, hashed) = pipeline(Box::new(io::Cursor::new(data.clone())), true, |r| {
            let mut first = vec![0u8; CHUNK + 5];
            r.read_exact(&mut first).map(|()| first)
        });
        assert_eq!(got.unwrap(), data[..CHUNK + 5].to_vec());
        let (d, n) = hashed.unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(d, Digest::of(&data));
    }

    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt deflate stream"));
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_layer_with_a_corrupt_tar_header_is_bad_input_naming_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(&dir.path().join("content")).unwrap();
        let driver = crate::image::tests::DirDriver { root: dir.path().join("layers") };
        let mut tar = crate::image::tests::tar_of(&[("a", b"one"), ("b", b"two")]);
        // The second header's checksum field (offset 148) no longer matches.
        tar[1024 + 148..1024 + 156].copy_from_slice(b"0000000\0");
        let pin = content.put("test layer", &tar, None).unwrap();
        let what = "layer blobs/sha256/abc (sha256:def)";
        let err = unpack_layer(&content, &driver, pin.digest(), what, "l1", None, None).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(what), "{err}");
        assert!(!driver.exists("l1"), "the failed layer is removed");
        // A kernel error (a full disk) stays a host fault.
        let io = apply_error(what, DriverError::io("writing", io::Error::from_raw_os_error(libc::ENOSPC)));
        assert_eq!(io.kind(), crate::error::ErrorKind::Internal);
    }

    #[test]
    fn a_source_error_reaches_consumer_and_result() {
        let (got, hashed) = pipeline(Box::new(Failing(CHUNK * 2)), true, |r| io::copy(r, &mut io::sink()));
        assert!(got.is_err());
        assert!(hashed.unwrap_err().to_string().contains("corrupt deflate"));
    }
}
