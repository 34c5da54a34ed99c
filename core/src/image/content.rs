//! The content store: blobs by sha256 under `<root>/blobs/sha256/<hex>`.
//!
//! Every blob is written to a temp file under `<root>/blobs/ingest/`, hashed
//! while it is written, size-checked, fsync'd and only then renamed into
//! place, so a blob under `sha256/` always has the bytes its name says. A blob
//! whose bytes do not match what the caller expected is never kept.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_model::Digest;
use sha2::{Digest as _, Sha256};

use super::ImageError;

/// Content-addressed blobs, verified on write.
pub struct ContentStore {
    root: PathBuf,
    /// Blobs an operation in flight still needs; removal skips them so a
    /// concurrent `rmi` cannot delete a blob a `load` has just written.
    pins: Arc<Mutex<HashMap<Digest, usize>>>,
}

/// Keeps a blob from being removed by `ContentStore::delete_unpinned` while alive.
pub struct BlobPin {
    pins: Arc<Mutex<HashMap<Digest, usize>>>,
    digest: Digest,
}

impl Drop for BlobPin {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pins.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.digest);
            }
        }
    }
}

impl ContentStore {
    /// Opens (creating if needed) the content store under `root` (the engine's `--root`).
    pub fn open(root: &Path) -> Result<ContentStore, ImageError> {
        let store = ContentStore { root: root.join("blobs"), pins: Arc::default() };
        for dir in [store.root.join("sha256"), store.root.join("ingest")] {
            fs::create_dir_all(&dir).map_err(|e| ImageError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(store)
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    /// Whether the blob `digest` is present.
    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Size in bytes of the blob `digest`.
    pub fn size(&self, digest: &Digest) -> Result<u64, ImageError> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::BlobNotFound(digest.clone())),
            Err(e) => Err(ImageError::io(format!("reading blob {digest}"), e)),
        }
    }

    /// Starts writing a blob. `expected` digest and size are checked at `commit`.
    pub fn writer(&self, what: &str, expected: Option<&Digest>, size: Option<u64>) -> Result<BlobWriter, ImageError> {
        let dir = self.root.join("ingest");
        let file = tempfile::Builder::new()
            .prefix("ingest-")
            .tempfile_in(&dir)
            .map_err(|e| ImageError::io(format!("creating a temp file in {}", dir.display()), e))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            written: 0,
            what: what.to_string(),
            expected: expected.cloned(),
            size,
            blobs: self.root.join("sha256"),
            pins: self.pins.clone(),
        })
    }

    /// Copies `reader` to a new blob (see `writer`); returns its pinned digest and size.
    pub fn ingest(
        &self,
        what: &str,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<(BlobPin, u64), ImageError> {
        let mut w = self.writer(what, expected, size)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io(format!("reading {what}"), e)),
            };
            w.write_all(&buf[..n]).map_err(|e| ImageError::io(format!("writing {what} to the content store"), e))?;
        }
        w.commit()
    }

    /// Stores `bytes` as a blob; returns its pinned digest.
    pub fn put(&self, what: &str, bytes: &[u8], expected: Option<&Digest>) -> Result<BlobPin, ImageError> {
        let mut w = self.writer(what, expected, Some(bytes.len() as u64))?;
        w.write_all(bytes).map_err(|e| ImageError::io(format!("writing {what} to the content store"), e))?;
        Ok(w.commit()?.0)
    }

    /// Opens blob `digest` for reading (unverified: callers that stream it
    /// out wrap it in a `VerifyingReader`).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ImageError> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::BlobNotFound(digest.clone())),
            Err(e) => Err(ImageError::io(format!("opening blob {digest}"), e)),
        }
    }

    /// Reads a (small) blob whole and checks its digest.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::io(format!("reading blob {digest}"), e))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {} in the content store", self.path(digest).display()),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Opens blob `digest` as a reader that fails at its end if the bytes do
    /// not hash to `digest` or their count is not the blob's size.
    pub fn open_verified(&self, digest: &Digest) -> Result<VerifyingReader<File>, ImageError> {
        let file = self.open_blob(digest)?;
        let size = file.metadata().map_err(|e| ImageError::io(format!("reading blob {digest}"), e))?.len();
        Ok(VerifyingReader::new(file, format!("blob {digest}"), digest.clone(), size))
    }

    /// Pins `digest` so `delete_unpinned` leaves it alone while the pin lives.
    pub fn pin(&self, digest: &Digest) -> BlobPin {
        pin(&self.pins, digest)
    }

    /// Deletes blob `digest` unless it is pinned; a missing blob is not an error.
    /// Returns whether it was deleted.
    pub fn delete_unpinned(&self, digest: &Digest) -> Result<bool, ImageError> {
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if pins.contains_key(digest) {
            return Ok(false);
        }
        // The lock is held across the unlink so a writer cannot pin and
        // rename the same digest in between.
        match fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ImageError::io(format!("deleting blob {digest}"), e)),
        }
    }

    /// Every blob present.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let dir = self.root.join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))? {
            let entry = entry.map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?;
            // Anything not named by a valid digest is not a blob of ours; leave it.
            if let Some(d) = entry.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes leftovers of interrupted writes under `blobs/ingest/`. Only
    /// safe when no write is in flight (at engine start). Returns how many.
    pub fn clear_ingest(&self) -> Result<usize, ImageError> {
        let dir = self.root.join("ingest");
        let mut n = 0;
        for entry in fs::read_dir(&dir).map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))? {
            let entry = entry.map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?;
            let path = entry.path();
            let res = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            res.map_err(|e| ImageError::io(format!("removing {}", path.display()), e))?;
            n += 1;
        }
        Ok(n)
    }
}

fn pin(pins: &Arc<Mutex<HashMap<Digest, usize>>>, digest: &Digest) -> BlobPin {
    *pins.lock().unwrap_or_else(|e| e.into_inner()).entry(digest.clone()).or_insert(0) += 1;
    BlobPin { pins: pins.clone(), digest: digest.clone() }
}

impl BlobPin {
    /// The pinned blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// A blob being written; dropped without `commit`, its temp file is deleted.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
    what: String,
    expected: Option<Digest>,
    size: Option<u64>,
    blobs: PathBuf,
    pins: Arc<Mutex<HashMap<Digest, usize>>>,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks size and digest, fsyncs and moves the blob into place. On any
    /// mismatch the temp file is deleted and nothing is kept.
    pub fn commit(self) -> Result<(BlobPin, u64), ImageError> {
        let BlobWriter { file, hasher, written, what, expected, size, blobs, pins } = self;
        if let Some(size) = size {
            if size != written {
                return Err(ImageError::SizeMismatch { what, expected: size, actual: written });
            }
        }
        let actual = Digest::from_hasher(hasher);
        if let Some(expected) = expected {
            if expected != actual {
                return Err(ImageError::DigestMismatch { what, expected, actual });
            }
        }
        file.as_file().sync_all().map_err(|e| ImageError::io(format!("syncing {what}"), e))?;
        // Pin before the rename so no removal can slip in between.
        let guard = pin(&pins, &actual);
        let dest = blobs.join(actual.hex());
        file.persist(&dest).map_err(|e| ImageError::io(format!("moving {what} to {}", dest.display()), e.error))?;
        // The rename is durable only once the directory is synced; a record
        // committed after this may name the blob.
        File::open(&blobs)
            .and_then(|d| d.sync_all())
            .map_err(|e| ImageError::io(format!("syncing {}", blobs.display()), e))?;
        Ok((guard, written))
    }
}

/// A reader that checks, when its input ends, that exactly `size` bytes
/// hashing to `digest` went through; otherwise that last read is an error.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    what: String,
    digest: Digest,
    size: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which must yield `size` bytes hashing to `digest`.
    pub fn new(inner: R, what: String, digest: Digest, size: u64) -> Self {
        VerifyingReader { inner, hasher: Sha256::new(), read: 0, what, digest, size }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if self.read != self.size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: expected {} bytes, found {}", self.what, self.size, self.read),
                ));
            }
            let actual = Digest::from_hasher(self.hasher.clone());
            if actual != self.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: content digest is {actual}, expected {}", self.what, self.digest),
                ));
            }
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: more than the expected {} bytes", self.what, self.size),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest_count(store: &ContentStore) -> usize {
        fs::read_dir(store.root.join("ingest")).unwrap().count()
    }

    #[test]
    fn a_blob_is_stored_under_its_digest_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let pin = store.put("test blob", b"hello", None).unwrap();
        let d = pin.digest().clone();
        assert_eq!(d, Digest::of(b"hello"));
        assert!(store.exists(&d));
        assert_eq!(store.read(&d).unwrap(), b"hello");
        assert_eq!(store.list().unwrap(), vec![d.clone()]);
        assert!(!store.delete_unpinned(&d).unwrap(), "a pinned blob must not be deleted");
        drop(pin);
        assert!(store.delete_unpinned(&d).unwrap());
        assert!(!store.exists(&d));
        assert_eq!(ingest_count(&store), 0);
    }

    #[test]
    fn a_blob_with_the_wrong_digest_is_rejected_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let wrong = Digest::of(b"something else");
        let err = store.put("layer blobs/sha256/x", b"hello", Some(&wrong)).err().expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains(&wrong.to_string()) && msg.contains(&Digest::of(b"hello").to_string()), "{msg}");
        assert!(matches!(err, ImageError::DigestMismatch { .. }));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(ingest_count(&store), 0, "the temp file must be deleted");
    }

    #[test]
    fn a_short_blob_is_rejected_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let err = store.ingest("entry a/layer.tar", &mut &b"abc"[..], None, Some(10)).err().expect("must fail");
        assert!(matches!(err, ImageError::SizeMismatch { expected: 10, actual: 3, .. }), "{err}");
        assert!(store.list().unwrap().is_empty());
        assert_eq!(ingest_count(&store), 0);
    }

    #[test]
    fn verifying_reader_fails_on_tampered_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = store.put("b", b"original", None).unwrap().digest().clone();
        fs::write(store.path(&d), b"tampered").unwrap();
        let mut out = Vec::new();
        let err = store.open_verified(&d).unwrap().read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
        assert!(store.read(&d).is_err());
    }

    #[test]
    fn clear_ingest_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        fs::write(store.root.join("ingest/ingest-leftover"), b"x").unwrap();
        assert_eq!(store.clear_ingest().unwrap(), 1);
        assert_eq!(ingest_count(&store), 0);
    }
}
