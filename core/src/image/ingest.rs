//! The ingest area (`<root>/ingest/`): blobs being downloaded, one partial
//! file per digest (`<root>/ingest/<hex>`), kept when a connection drops, a
//! pull is cancelled or the daemon is killed, so the next pull that needs
//! the blob continues it from where it stopped (HTTP `Range`).
//!
//! A partial file is only ever appended to by the one download that holds
//! its digest's claim (two pulls of the same blob take turns; the second
//! usually finds the blob complete). It never becomes a blob unless all of
//! its bytes hash to its name (`BlobWriter::commit`); wrong bytes are
//! deleted, and files nobody resumed for `STALE_AFTER` go at start-up.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use berth_model::Digest;

use super::ImageError;

/// Partial downloads untouched for this long are removed at start-up: the
/// image they were for is likely not wanted any more.
pub const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a download waiting for another one's claim checks whether it should stop.
const CLAIM_POLL: Duration = Duration::from_millis(200);

/// Digests whose partial file a download is writing.
type Busy = Arc<(Mutex<HashSet<Digest>>, Condvar)>;

/// The ingest area of one `--root`.
pub struct Partials {
    dir: PathBuf,
    busy: Busy,
}

/// The right to write one digest's partial file; released when dropped.
pub struct Claim {
    busy: Busy,
    digest: Digest,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let (set, freed) = &*self.busy;
        set.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.digest);
        freed.notify_all();
    }
}

/// One digest's partial file, open for appending, with its claim. Left
/// behind when dropped, unless it is empty: a download that got no byte
/// leaves nothing to resume.
pub struct PartialFile {
    pub(super) file: File,
    path: PathBuf,
    /// Moved into place or deleted already.
    finished: bool,
    _claim: Claim,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.finished && self.file.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Partials {
    pub fn new(dir: PathBuf) -> Partials {
        Partials { dir, busy: Arc::default() }
    }

    /// `<root>/ingest`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `digest`'s partial download lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Claims `digest`, waiting while another download holds it; `None` when
    /// `stop` says to give up while waiting.
    pub fn claim(&self, digest: &Digest, stop: &dyn Fn() -> bool) -> Option<Claim> {
        let (set, freed) = &*self.busy;
        let mut held = set.lock().unwrap_or_else(|e| e.into_inner());
        while held.contains(digest) {
            if stop() {
                return None;
            }
            held = freed.wait_timeout(held, CLAIM_POLL).unwrap_or_else(|e| e.into_inner()).0;
        }
        held.insert(digest.clone());
        Some(Claim { busy: self.busy.clone(), digest: digest.clone() })
    }

    /// Opens (creating if needed) the partial file of `claim`'s digest for appending.
    pub fn open(&self, claim: Claim) -> Result<PartialFile, ImageError> {
        let path = self.path(&claim.digest);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| ImageError::io(format!("opening the partial download {}", path.display()), e))?;
        Ok(PartialFile { file, path, finished: false, _claim: claim })
    }

    /// Removes partial files that can never be resumed usefully: untouched
    /// for `max_age`, not named by a digest, or of a blob the store has
    /// (`present`). Only at start-up, when no download holds a claim.
    pub fn remove_stale(&self, max_age: Duration, present: &dyn Fn(&Digest) -> bool) -> Result<usize, ImageError> {
        let listing = |e| ImageError::io(format!("listing {}", self.dir.display()), e);
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(listing)? {
            let entry = entry.map_err(listing)?;
            let digest = entry.file_name().to_str().and_then(|n| Digest::from_hex(n).ok());
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            let old = modified.is_some_and(|m| now.duration_since(m).unwrap_or_default() > max_age);
            if digest.as_ref().is_some_and(|d| !present(d)) && !old {
                continue;
            }
            let path = entry.path();
            let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            gone.map_err(|e| ImageError::io(format!("removing the stale partial download {}", path.display()), e))?;
            removed += 1;
        }
        Ok(removed)
    }
}

impl PartialFile {
    /// Bytes already downloaded.
    pub fn len(&self) -> Result<u64, ImageError> {
        self.file.metadata().map(|m| m.len()).map_err(|e| ImageError::io(format!("reading {}", self.path.display()), e))
    }

    /// Empties the file (the server ignored `Range`, or the bytes were of no use).
    pub fn truncate(&self) -> io::Result<()> {
        self.file.set_len(0)
    }

    /// Deletes the file: its bytes are wrong and must not be resumed.
    pub fn discard(mut self) {
        self.finished = true;
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a partial download with wrong bytes");
        }
    }

    /// Moves the complete, verified file to `dest` (the blob's place).
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.finished = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_digest_is_claimed_by_one_download_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let partials = Arc::new(Partials::new(dir.path().to_path_buf()));
        let d = Digest::of(b"blob");
        let first = partials.claim(&d, &|| false).unwrap();
        let stop = AtomicBool::new(true);
        assert!(partials.claim(&d, &|| stop.load(Ordering::Relaxed)).is_none(), "a held claim makes the second wait");
        let waiter = {
            let (partials, d) = (partials.clone(), d.clone());
            std::thread::spawn(move || partials.claim(&d, &|| false).is_some())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        assert!(waiter.join().unwrap(), "the waiter gets the claim once it is released");
    }

    #[test]
    fn stale_and_foreign_partials_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let partials = Partials::new(dir.path().to_path_buf());
        let fresh = Digest::of(b"fresh");
        let complete = Digest::of(b"complete");
        fs::write(partials.path(&fresh), b"part").unwrap();
        fs::write(partials.path(&complete), b"part").unwrap();
        fs::write(dir.path().join("not-a-digest"), b"x").unwrap();
        assert_eq!(partials.remove_stale(STALE_AFTER, &|d| d == &complete).unwrap(), 2);
        assert!(partials.path(&fresh).exists() && !partials.path(&complete).exists());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(partials.remove_stale(Duration::ZERO, &|_| false).unwrap(), 1, "anything older than the limit goes");
    }
}
