//! A layer blob read while it is still being downloaded, so a pull unpacks
//! as the bytes arrive instead of after the last one (one layer's fetch
//! overlaps its own decompression and unpack, not only the next layer's).
//!
//! The download hands over its partial file (`attach`); the reader reads it
//! at its own offset (`pread`, so the writer's appends are unaffected, and
//! the rename into the content store at commit changes nothing for an open
//! file). The reader's end comes only after the download has committed, that
//! is after the whole blob's digest was checked: a layer unpacked from bytes
//! that turn out wrong fails with the download's error and is discarded.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a reader that caught up waits before looking again (the writer also wakes it).
const CATCH_UP_WAIT: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    /// The partial file, once the download has opened it.
    file: Option<Arc<File>>,
    /// `Some(Ok)`: committed, verified; `Some(Err)`: the download failed.
    finished: Option<Result<(), String>>,
}

/// One layer blob's download as its unpacker sees it.
#[derive(Default)]
pub struct LiveBlob {
    state: Mutex<State>,
    changed: Condvar,
}

impl LiveBlob {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The download has its partial file open (a duplicate of its descriptor).
    pub fn attach(&self, file: File) {
        self.lock().file = Some(Arc::new(file));
        self.changed.notify_all();
    }

    /// More bytes are in the file.
    pub fn wrote(&self) {
        self.changed.notify_all();
    }

    /// The download ended: committed (verified), or failed with this message.
    pub fn finish(&self, outcome: Result<(), String>) {
        let mut state = self.lock();
        if state.finished.is_none() {
            state.finished = Some(outcome);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Whether the download has attached its file (a reader can start).
    pub fn attached(&self) -> bool {
        self.lock().file.is_some()
    }

    /// A reader from byte zero, if the download has attached its file.
    pub fn reader(self: &Arc<Self>) -> Option<LiveReader> {
        let file = self.lock().file.clone()?;
        Some(LiveReader { blob: self.clone(), file, offset: 0 })
    }
}

/// Reads a blob being downloaded; blocks at the bytes not yet written and
/// ends only once the download has committed the blob.
pub struct LiveReader {
    blob: Arc<LiveBlob>,
    file: Arc<File>,
    offset: u64,
}

impl Read for LiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.file.read_at(buf, self.offset)?;
            if n > 0 {
                self.offset += n as u64;
                return Ok(n);
            }
            let state = self.blob.lock();
            match &state.finished {
                Some(Err(message)) => return Err(io::Error::other(message.clone())),
                // Committed: whatever is past the offset now was there before the commit.
                Some(Ok(())) => {
                    drop(state);
                    let n = self.file.read_at(buf, self.offset)?;
                    self.offset += n as u64;
                    return Ok(n);
                }
                None => {
                    let _ = self.blob.changed.wait_timeout(state, CATCH_UP_WAIT);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_reader_follows_the_download_and_ends_only_when_it_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        let mut writer = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&path).unwrap();
        let live = Arc::new(LiveBlob::default());
        assert!(live.reader().is_none(), "no reader before the download opened its file");
        live.attach(writer.try_clone().unwrap());
        let mut reader = live.reader().unwrap();
        let following = std::thread::spawn(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).map(|_| all)
        });
        for chunk in [&b"first "[..], b"second ", b"third"] {
            writer.write_all(chunk).unwrap();
            live.wrote();
            std::thread::sleep(Duration::from_millis(30));
        }
        live.finish(Ok(()));
        assert_eq!(following.join().unwrap().unwrap(), b"first second third");

        let failed = Arc::new(LiveBlob::default());
        failed.attach(File::open(&path).unwrap());
        let mut reader = failed.reader().unwrap();
        failed.finish(Err("blob x: digest mismatch".into()));
        let mut all = Vec::new();
        let err = reader.read_to_end(&mut all).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
    }
}
