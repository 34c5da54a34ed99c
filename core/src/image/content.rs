//! The content store: blobs by sha256 under `<root>/blobs/sha256/<hex>`.
//!
//! Every blob is written to a temp file under `<root>/blobs/ingest/`, hashed
//! while it is written, size-checked, fsync'd and only then renamed into
//! place, so a blob under `sha256/` always has the bytes its name says. A blob
//! whose bytes do not match what the caller expected is never kept.
//!
//! Downloads write instead to `<root>/ingest/<hex>` (see `ingest.rs`), a
//! partial file that outlives a dropped connection, a cancelled pull and a
//! killed daemon, so the next pull continues it with an HTTP Range request.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_model::Digest;
use sha2::{Digest as _, Sha256};

use super::ingest::{PartialFile, Partials, STALE_AFTER};
use super::ImageError;

/// Content-addressed blobs, verified on write.
pub struct ContentStore {
    root: PathBuf,
    /// Partial downloads, resumable (`<root>/ingest/`).
    partials: Partials,
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
        let store = ContentStore { root: root.join("blobs"), partials: Partials::new(root.join("ingest")), pins: Arc::default() };
        for dir in [store.root.join("sha256"), store.root.join("ingest"), store.partials.dir().to_path_buf()] {
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
            file: Destination::Temp(file),
            hasher: Sha256::new(),
            written: 0,
            what: what.to_string(),
            expected: expected.cloned(),
            size,
            blobs: self.root.join("sha256"),
            pins: self.pins.clone(),
        })
    }

    /// Starts or continues downloading blob `digest` (`size` bytes) in the
    /// ingest area: the writer appends to what an earlier, interrupted
    /// download left (its bytes already hashed, `written()` says how many),
    /// and is kept when dropped uncommitted. Waits while another download
    /// writes the same digest; finds the blob present if that one finished.
    pub fn resume_writer(&self, what: &str, digest: &Digest, size: u64, stop: &dyn Fn() -> bool) -> Result<Resumed, ImageError> {
        let Some(claim) = self.partials.claim(digest, stop) else { return Ok(Resumed::Stopped) };
        let pin = self.pin(digest);
        if self.exists(digest) {
            // Bytes left beside a complete blob (it came by `load` meanwhile) are of no use.
            let _ = fs::remove_file(self.partials.path(digest));
            return Ok(Resumed::Present(pin));
        }
        drop(pin);
        let partial = self.partials.open(claim)?;
        let mut have = partial.len()?;
        let mut hasher = Sha256::new();
        if have > size {
            // Not a prefix of this blob: start over.
            partial.truncate().map_err(|e| ImageError::io(format!("emptying the partial download of {what}"), e))?;
            have = 0;
        } else if have > 0 {
            let prefix = &partial.file;
            io::copy(&mut prefix.take(have), &mut HashWriter(&mut hasher))
                .map_err(|e| ImageError::io(format!("reading the partial download of {what}"), e))?;
        }
        Ok(Resumed::Writing(BlobWriter {
            file: Destination::Partial(partial),
            hasher,
            written: have,
            what: what.to_string(),
            expected: Some(digest.clone()),
            size: Some(size),
            blobs: self.root.join("sha256"),
            pins: self.pins.clone(),
        }))
    }

    /// Removes partial downloads that will not be resumed (see `Partials::remove_stale`).
    /// Only safe when no download is in flight (at engine start). Returns how many.
    pub fn remove_stale_partials(&self) -> Result<usize, ImageError> {
        self.partials.remove_stale(STALE_AFTER, &|d| self.exists(d))
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

/// Where a `BlobWriter`'s bytes go until `commit` moves them into place.
enum Destination {
    /// A temp file, deleted when the writer is dropped uncommitted.
    Temp(tempfile::NamedTempFile),
    /// A download's partial file, kept when the writer is dropped (to be
    /// resumed) and deleted only when its bytes turn out wrong.
    Partial(PartialFile),
}

impl Destination {
    fn file(&self) -> &File {
        match self {
            Destination::Temp(t) => t.as_file(),
            Destination::Partial(p) => &p.file,
        }
    }
}

/// What `ContentStore::resume_writer` found.
pub enum Resumed {
    /// The blob is in the store already (pinned): nothing to download.
    Present(BlobPin),
    /// A writer positioned after the bytes already downloaded.
    Writing(BlobWriter),
    /// The caller's `stop` said to give up while another download held the digest.
    Stopped,
}

/// Feeds what is written to a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blob being written; dropped without `commit`, its temp file is deleted
/// (a download's partial file is kept, see `ContentStore::resume_writer`).
pub struct BlobWriter {
    file: Destination,
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
        let n = (&mut &*self.file.file()).write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&mut &*self.file.file()).flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Another descriptor of the file being written, for a reader that
    /// follows the download (see `live.rs`).
    pub fn reopen(&self) -> io::Result<File> {
        self.file.file().try_clone()
    }

    /// Throws away what was written and starts again from byte zero (a
    /// server that ignores `Range` sends the whole blob).
    pub fn start_over(&mut self) -> io::Result<()> {
        match &self.file {
            Destination::Temp(t) => {
                t.as_file().set_len(0)?;
                io::Seek::rewind(&mut t.as_file())?;
            }
            // Opened for appending: the next write lands at the new end, zero.
            Destination::Partial(p) => p.truncate()?,
        }
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Checks size and digest, fsyncs and moves the blob into place. On any
    /// mismatch the temp file is deleted and nothing is kept.
    pub fn commit(self) -> Result<(BlobPin, u64), ImageError> {
        let BlobWriter { file, hasher, written, what, expected, size, blobs, pins } = self;
        let wrong = match (size, expected) {
            (Some(size), _) if size != written => Some(ImageError::SizeMismatch { what: what.clone(), expected: size, actual: written }),
            (_, Some(expected)) => {
                let actual = Digest::from_hasher(hasher.clone());
                (expected != actual).then(|| ImageError::DigestMismatch { what: what.clone(), expected, actual })
            }
            _ => None,
        };
        if let Some(wrong) = wrong {
            // Wrong bytes are never resumed: the next try starts from zero.
            if let Destination::Partial(partial) = file {
                partial.discard();
            }
            return Err(wrong);
        }
        let actual = Digest::from_hasher(hasher);
        file.file().sync_all().map_err(|e| ImageError::io(format!("syncing {what}"), e))?;
        // Pin before the rename so no removal can slip in between.
        let guard = pin(&pins, &actual);
        let dest = blobs.join(actual.hex());
        match file {
            Destination::Temp(t) => t.persist(&dest).map(drop).map_err(|e| e.error),
            Destination::Partial(p) => p.persist(&dest),
        }
        .map_err(|e| ImageError::io(format!("moving {what} to {}", dest.display()), e))?;
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

    fn resume(store: &ContentStore, blob: &[u8]) -> BlobWriter {
        match store.resume_writer("test blob", &Digest::of(blob), blob.len() as u64, &|| false).unwrap() {
            Resumed::Writing(w) => w,
            _ => panic!("expected a writer"),
        }
    }

    #[test]
    fn a_download_dropped_halfway_is_continued_and_verified_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let blob = b"0123456789abcdef";
        let mut first = resume(&store, blob);
        first.write_all(&blob[..6]).unwrap();
        drop(first);
        let partial = dir.path().join("ingest").join(Digest::of(blob).hex());
        assert_eq!(fs::read(&partial).unwrap(), &blob[..6], "the partial download is kept");
        let mut second = resume(&store, blob);
        assert_eq!(second.written(), 6);
        second.write_all(&blob[6..]).unwrap();
        let (pin, size) = second.commit().unwrap();
        assert_eq!((pin.digest(), size), (&Digest::of(blob), 16));
        assert_eq!(store.read(&Digest::of(blob)).unwrap(), blob);
        assert!(!partial.exists());
        assert!(matches!(store.resume_writer("b", &Digest::of(blob), 16, &|| false).unwrap(), Resumed::Present(_)));
    }

    #[test]
    fn a_partial_download_with_wrong_bytes_is_deleted_and_an_empty_one_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let blob = b"the right bytes";
        let partial = dir.path().join("ingest").join(Digest::of(blob).hex());
        drop(resume(&store, blob));
        assert!(!partial.exists(), "a download that got nothing leaves nothing");
        let mut w = resume(&store, blob);
        w.write_all(b"the wrong bytes").unwrap();
        let err = w.commit().err().expect("wrong bytes must be refused");
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!partial.exists() && !store.exists(&Digest::of(blob)));
        let mut w = resume(&store, blob);
        w.write_all(b"junk").unwrap();
        w.start_over().unwrap();
        w.write_all(blob).unwrap();
        assert!(w.commit().is_ok(), "starting over forgets the bytes before");
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
