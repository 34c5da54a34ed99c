//! Docker's `json-file` log format: one JSON object per line,
//! `{"log":"...","stream":"stdout","time":"RFC3339Nano"}`, with rotation
//! (`<log>.1`, `<log>.2`, ...). The shim writes it; `logs` reads it.
//!
//! # Writing (the shim)
//! [`Writer::open`] then [`Writer::write`] for every chunk read from the
//! container. Chunks are split at `'\n'` like Docker's log copier: each
//! complete line (with its `\n`) is one entry; a line without `\n` waits for
//! more data and is written as a partial entry (no `\n`) once it exceeds
//! 16 KiB or when the stream ends ([`Writer::finish`]). With `max_size`, the
//! file is rotated before an entry is written once it has reached the size:
//! `<log>` becomes `<log>.1`, `<log>.1` becomes `<log>.2`, ... up to
//! `<log>.<max_files-1>`; with `max_files` 1 the file is truncated instead.
//!
//! # Reading (`docker logs`)
//! [`read`] walks the entries oldest-first across the rotated files and
//! hands each one to a sink closure, which returns `false` to stop early
//! (e.g. the client went away):
//! ```no_run
//! # use berth_runtime::shim::jsonlog::{read, ReadConfig};
//! # let path = std::path::Path::new("/x-json.log");
//! let config = ReadConfig { tail: Some(10), follow: true, ..Default::default() };
//! read(path, &config, &mut || true /* container still running? */, &mut |entry| {
//!     print!("{}", entry.log);
//!     true // keep going
//! })?;
//! # Ok::<(), berth_runtime::shim::jsonlog::LogError>(())
//! ```
//! - `tail: Some(n)` returns only the last `n` entries (read backwards from
//!   the end, not by scanning everything); `Some(0)` returns none.
//! - `since`/`until` drop entries older than `since` and stop at the first
//!   entry newer than `until` (applied after `tail`, as Docker does).
//! - `follow` keeps polling (every 100 ms) for new entries after the end,
//!   following rotation and truncation, until `is_running()` returns `false`
//!   (then whatever is already written is still delivered) or the sink says stop.
//!
//! It must never hold the whole log in memory: reading streams entry by entry.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A line longer than this without `\n` is written as a partial entry (Docker's 16 KiB).
const MAX_PARTIAL: usize = 16 * 1024;
/// How often `follow` looks for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Errors writing or reading a json-file log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation on the log failed.
    #[error("log {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io { path: path.to_path_buf(), op, source }
}

/// Which output stream an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One log entry as stored on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The text, including its trailing `\n` unless it was a partial line.
    pub log: String,
    pub stream: Stream,
    /// When the shim read it (UTC).
    pub time: DateTime<Utc>,
}

/// Docker's RFC3339Nano with a fixed 9-digit fraction, in UTC.
pub fn format_time(t: &DateTime<Utc>) -> String {
    crate::clock::rfc3339(t)
}

/// An entry's line as read from disk, before its time is parsed.
#[derive(Deserialize)]
struct EntryIn {
    log: String,
    stream: Stream,
    time: String,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    log: &'a str,
    stream: Stream,
    time: String,
}

/// Appends entries to a json-file log, rotating it by size.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
    /// Per stream (stdout, stderr): bytes of a line not yet ended by `\n`.
    partial: [Vec<u8>; 2],
}

/// A container's log is its own: what it prints may be secret (as dockerd, 0640).
const LOG_MODE: u32 = 0o640;

impl Writer {
    /// Opens (creating or appending to) the log at `path`.
    pub fn open(path: &Path, max_size: Option<u64>, max_files: u32) -> Result<Writer, LogError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_MODE)
            .open(path)
            .map_err(io_err(path, "open"))?;
        let size = file.metadata().map_err(io_err(path, "stat"))?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Logs `data` read from `stream`: every complete line becomes an entry,
    /// the rest waits for more (or is flushed as a partial entry past 16 KiB).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), LogError> {
        let i = stream.index();
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl + 1);
            rest = tail;
            if self.partial[i].is_empty() {
                self.entry(stream, line)?;
            } else {
                let mut buf = std::mem::take(&mut self.partial[i]);
                buf.extend_from_slice(line);
                self.entry(stream, &buf)?;
            }
        }
        self.partial[i].extend_from_slice(rest);
        while self.partial[i].len() >= MAX_PARTIAL {
            let buf: Vec<u8> = self.partial[i].drain(..MAX_PARTIAL).collect();
            self.entry(stream, &buf)?;
        }
        Ok(())
    }

    /// Writes out what is left of a line on `stream` (the stream ended).
    pub fn finish(&mut self, stream: Stream) -> Result<(), LogError> {
        let i = stream.index();
        if !self.partial[i].is_empty() {
            let buf = std::mem::take(&mut self.partial[i]);
            self.entry(stream, &buf)?;
        }
        Ok(())
    }

    fn entry(&mut self, stream: Stream, line: &[u8]) -> Result<(), LogError> {
        if let Some(max) = self.max_size {
            if self.size >= max {
                self.rotate()?;
            }
        }
        let text = String::from_utf8_lossy(line);
        let out = EntryOut { log: &text, stream, time: format_time(&Utc::now()) };
        let mut json = match serde_json::to_vec(&out) {
            Ok(json) => json,
            // Serialising a str and a timestamp cannot fail; keep going without the entry if it did.
            Err(_) => return Ok(()),
        };
        json.push(b'\n');
        self.file.write_all(&json).map_err(io_err(&self.path, "write"))?;
        self.size += json.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        if self.max_files <= 1 {
            self.file.set_len(0).map_err(io_err(&self.path, "truncate"))?;
            self.size = 0;
            return Ok(());
        }
        let last = self.max_files - 1;
        let oldest = rotated(&self.path, last);
        match std::fs::remove_file(&oldest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&oldest, "remove")(e)),
        }
        for n in (1..last).rev() {
            let from = rotated(&self.path, n);
            match std::fs::rename(&from, rotated(&self.path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&from, "rename")(e)),
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1)).map_err(io_err(&self.path, "rename"))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_MODE)
            .open(&self.path)
            .map_err(io_err(&self.path, "open"))?;
        self.size = 0;
        Ok(())
    }
}

/// `<log>.<n>`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// What `read` returns (`docker logs` options).
#[derive(Clone, Debug, Default)]
pub struct ReadConfig {
    /// Drop entries older than this.
    pub since: Option<DateTime<Utc>>,
    /// Stop at the first entry newer than this.
    pub until: Option<DateTime<Utc>>,
    /// Only the last N entries.
    pub tail: Option<usize>,
    /// Keep waiting for new entries while the container runs.
    pub follow: bool,
}

/// Where `read` is: decides on each entry whether to deliver, skip or stop.
struct Filter<'a> {
    config: &'a ReadConfig,
    sink: &'a mut dyn FnMut(Entry) -> bool,
}

impl Filter<'_> {
    /// Feeds one raw line; returns `false` to stop reading.
    fn line(&mut self, raw: &[u8]) -> bool {
        // A torn or foreign line (e.g. a crash mid-write) is skipped, as Docker does.
        let Ok(raw) = serde_json::from_slice::<EntryIn>(raw) else { return true };
        let Ok(time) = DateTime::parse_from_rfc3339(&raw.time) else { return true };
        let entry = Entry { log: raw.log, stream: raw.stream, time: time.with_timezone(&Utc) };
        if let Some(since) = self.config.since {
            if entry.time < since {
                return true;
            }
        }
        if let Some(until) = self.config.until {
            if entry.time > until {
                return false;
            }
        }
        (self.sink)(entry)
    }
}

/// Reads the log at `path` (and its rotated files) as described in the
/// module docs, delivering entries oldest-first to `sink` until it returns
/// `false`, the end is reached, or — with `follow` — `is_running()` is false.
pub fn read(
    path: &Path,
    config: &ReadConfig,
    is_running: &mut dyn FnMut() -> bool,
    sink: &mut dyn FnMut(Entry) -> bool,
) -> Result<(), LogError> {
    let mut filter = Filter { config, sink };
    // The current file is opened first: everything before its length now is
    // "existing", everything after is followed.
    let mut current = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    let mut n = 1;
    while rotated(path, n).exists() {
        files.push(rotated(path, n));
        n += 1;
    }
    files.reverse(); // oldest first
    let mut offset: u64 = 0;
    if let Some(cur) = current.as_mut() {
        let len = cur.metadata().map_err(io_err(path, "stat"))?.len();
        let end = last_newline_end(cur, len).map_err(io_err(path, "read"))?;
        let go_on = match config.tail {
            Some(n) => tail(&files, cur, path, end, n, &mut filter)?,
            None => {
                let mut go_on = true;
                for f in &files {
                    let mut file = match File::open(f) {
                        Ok(file) => file,
                        // Rotated away while we read: its entries are gone.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_err(f, "open")(e)),
                    };
                    if !scan(&mut file, f, 0, u64::MAX, &mut filter)?.1 {
                        go_on = false;
                        break;
                    }
                }
                go_on && scan(cur, path, 0, end, &mut filter)?.1
            }
        };
        if !go_on {
            return Ok(());
        }
        offset = end;
    }
    if !config.follow {
        return Ok(());
    }
    follow(path, current, offset, is_running, &mut filter)
}

/// Length of the prefix of `file` (of length `len`) ending at its last `\n`.
fn last_newline_end(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Delivers the complete lines of `file` between `from` and `to`; returns
/// the offset after the last complete line read and whether to go on.
fn scan(file: &mut File, path: &Path, from: u64, to: u64, filter: &mut Filter<'_>) -> Result<(u64, bool), LogError> {
    file.seek(SeekFrom::Start(from)).map_err(io_err(path, "seek"))?;
    let mut pos = from;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    while pos + (pending.len() as u64) < to {
        let want = (to - pos - pending.len() as u64).min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want]).map_err(io_err(path, "read"))?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            let line_len;
            let go_on = if pending.is_empty() {
                line_len = i + 1;
                filter.line(&chunk[..i])
            } else {
                pending.extend_from_slice(&chunk[..i]);
                line_len = pending.len() + 1;
                let ok = filter.line(&pending);
                pending.clear();
                ok
            };
            pos += line_len as u64;
            chunk = &chunk[i + 1..];
            if !go_on {
                return Ok((pos, false));
            }
        }
        pending.extend_from_slice(chunk);
    }
    Ok((pos, true))
}

/// Delivers the last `n` entries: reads backwards from `end` of the current
/// file, then from the ends of older files, only as far as needed.
fn tail(
    older: &[PathBuf],
    current: &mut File,
    path: &Path,
    end: u64,
    n: usize,
    filter: &mut Filter<'_>,
) -> Result<bool, LogError> {
    if n == 0 {
        return Ok(true);
    }
    // (file index in `older` or None for current, start offset) of where reading begins.
    let mut need = n;
    let mut starts: Vec<(Option<usize>, u64)> = Vec::new();
    let found = find_tail_start(current, end, need).map_err(io_err(path, "read"))?;
    starts.push((None, found.0));
    need -= found.1;
    let mut opened: Vec<Option<File>> = older.iter().map(|_| None).collect();
    let mut idx = older.len();
    while need > 0 && idx > 0 {
        idx -= 1;
        let mut f = match File::open(&older[idx]) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&older[idx], "open")(e)),
        };
        let len = f.metadata().map_err(io_err(&older[idx], "stat"))?.len();
        let fend = last_newline_end(&mut f, len).map_err(io_err(&older[idx], "read"))?;
        let found = find_tail_start(&mut f, fend, need).map_err(io_err(&older[idx], "read"))?;
        starts.push((Some(idx), found.0));
        need -= found.1;
        opened[idx] = Some(f);
    }
    for (which, start) in starts.into_iter().rev() {
        let go_on = match which {
            Some(i) => match opened[i].as_mut() {
                Some(f) => scan(f, &older[i], start, u64::MAX, filter)?.1,
                None => true,
            },
            None => scan(current, path, start, end, filter)?.1,
        };
        if !go_on {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Finds where the last `n` lines before `end` begin; returns that offset
/// and how many lines there are from it (fewer than `n` if the file is short).
fn find_tail_start(file: &mut File, end: u64, n: usize) -> io::Result<(u64, usize)> {
    if end == 0 {
        return Ok((0, 0));
    }
    // `end` is just after a '\n'; count newlines before it, skipping that one.
    let mut count = 0usize;
    let mut pos = end - 1;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, &b) in chunk.iter().enumerate().rev() {
            if b == b'\n' {
                count += 1;
                if count == n {
                    return Ok((start + i as u64 + 1, n));
                }
            }
        }
        pos = start;
    }
    Ok((0, count + 1))
}

/// Polls the log for new lines after `offset` of `current`, following rotation.
fn follow(
    path: &Path,
    mut current: Option<File>,
    mut offset: u64,
    is_running: &mut dyn FnMut() -> bool,
    filter: &mut Filter<'_>,
) -> Result<(), LogError> {
    loop {
        // Asked before reading so that lines written just before the exit are still delivered.
        let running = is_running();
        if let Some(cur) = current.as_mut() {
            let (pos, go_on) = scan(cur, path, offset, u64::MAX, filter)?;
            if !go_on {
                return Ok(());
            }
            offset = pos;
        }
        // Rotated (a new file at `path`) or truncated (max-file 1)?
        match std::fs::metadata(path) {
            Ok(meta) => {
                let same = match current.as_ref() {
                    Some(cur) => match cur.metadata() {
                        Ok(m) => m.ino() == meta.ino() && m.dev() == meta.dev(),
                        Err(_) => false,
                    },
                    None => false,
                };
                if !same {
                    // Finish the old file: the writer may have added to it
                    // between the read above and its rotation.
                    if let Some(cur) = current.as_mut() {
                        if !scan(cur, path, offset, u64::MAX, filter)?.1 {
                            return Ok(());
                        }
                    }
                    match File::open(path) {
                        Ok(f) => {
                            current = Some(f);
                            offset = 0;
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(path, "open")(e)),
                    }
                } else if meta.len() < offset {
                    offset = 0;
                    continue;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path, "stat")(e)),
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn collect(path: &Path, config: &ReadConfig) -> Vec<Entry> {
        let mut out = Vec::new();
        read(path, config, &mut || false, &mut |e| {
            out.push(e);
            true
        })
        .expect("read log");
        out
    }

    fn texts(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(|e| e.log.clone()).collect()
    }

    #[test]
    fn writes_docker_json_lines_split_at_newlines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, None, 1).expect("open");
        w.write(Stream::Stdout, b"hello\nwor").expect("write");
        w.write(Stream::Stderr, b"oops\n").expect("write");
        w.write(Stream::Stdout, b"ld\n\"q\"\tend").expect("write");
        w.finish(Stream::Stdout).expect("finish");
        let raw = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = raw.lines().collect();
        assert_eq!(lines.len(), 4, "{raw}");
        assert!(lines[0].starts_with(r#"{"log":"hello\n","stream":"stdout","time":""#), "{}", lines[0]);
        assert!(lines[1].starts_with(r#"{"log":"oops\n","stream":"stderr","#), "{}", lines[1]);
        assert!(lines[2].starts_with(r#"{"log":"world\n","#), "{}", lines[2]);
        assert!(lines[3].starts_with(r#"{"log":"\"q\"\tend","#), "{}", lines[3]);
        // Time: RFC3339 with 9 fractional digits, UTC.
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        let t = v["time"].as_str().expect("time");
        assert_eq!(t.len(), "2026-11-23T07:30:39.123456789Z".len(), "{t}");
        assert!(t.ends_with('Z') && DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    }

    #[test]
    fn long_lines_are_flushed_as_partial_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, None, 1).expect("open");
        let big = vec![b'x'; MAX_PARTIAL + 10];
        w.write(Stream::Stdout, &big).expect("write");
        w.write(Stream::Stdout, b"\n").expect("write");
        let got = collect(&path, &ReadConfig::default());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].log.len(), MAX_PARTIAL);
        assert!(!got[0].log.ends_with('\n'));
        assert_eq!(got[1].log, format!("{}\n", "x".repeat(10)));
    }

    #[test]
    fn rotates_into_numbered_files_and_reads_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, Some(200), 3).expect("open");
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes()).expect("write");
        }
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "max-file 3 keeps two rotated files");
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let len = std::fs::metadata(&p).expect("stat").len();
            assert!(len < 200 + 120, "{} is {len} bytes", p.display());
        }
        let got = texts(&collect(&path, &ReadConfig::default()));
        assert_eq!(got.last().map(String::as_str), Some("line 19\n"));
        let nums: Vec<usize> =
            got.iter().map(|l| l.trim_start_matches("line ").trim_end().parse().expect("num")).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert!(nums[0] > 0, "the oldest lines were rotated away");
    }

    #[test]
    fn max_file_one_truncates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, Some(150), 1).expect("open");
        for i in 0..10 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes()).expect("write");
        }
        assert!(!rotated(&path, 1).exists());
        assert!(std::fs::metadata(&path).expect("stat").len() < 300);
        let got = texts(&collect(&path, &ReadConfig::default()));
        assert_eq!(got.last().map(String::as_str), Some("line 9\n"));
    }

    #[test]
    fn tail_reads_the_last_entries_across_rotated_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, Some(300), 5).expect("open");
        for i in 0..30 {
            w.write(Stream::Stdout, format!("l{i}\n").as_bytes()).expect("write");
        }
        // A line being written (no newline yet) is not an entry.
        std::fs::OpenOptions::new().append(true).open(&path).expect("open").write_all(b"{\"log\":").expect("w");
        let all = texts(&collect(&path, &ReadConfig::default()));
        for n in [0usize, 1, 2, 5, 9, 12, 1000] {
            let got = texts(&collect(&path, &ReadConfig { tail: Some(n), ..Default::default() }));
            let want: Vec<String> = all[all.len().saturating_sub(n)..].to_vec();
            assert_eq!(got, want, "tail {n}");
        }
    }

    #[test]
    fn since_and_until_filter_by_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let mut f = File::create(&path).expect("create");
        for (i, t) in ["2024-01-01T00:00:01.000000000Z", "2024-01-01T00:00:02.000000000Z", "2024-01-01T00:00:03.000000000Z"]
            .iter()
            .enumerate()
        {
            writeln!(f, r#"{{"log":"{i}\n","stream":"stdout","time":"{t}"}}"#).expect("write");
        }
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
        let since = ReadConfig { since: Some(at("2024-01-01T00:00:02Z")), ..Default::default() };
        assert_eq!(texts(&collect(&path, &since)), vec!["1\n", "2\n"]);
        let until = ReadConfig { until: Some(at("2024-01-01T00:00:02Z")), ..Default::default() };
        assert_eq!(texts(&collect(&path, &until)), vec!["0\n", "1\n"]);
        let tail_since = ReadConfig { tail: Some(1), since: Some(at("2024-01-01T00:00:02Z")), ..Default::default() };
        assert_eq!(texts(&collect(&path, &tail_since)), vec!["2\n"]);
    }

    #[test]
    fn follow_delivers_new_entries_across_rotation_until_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, Some(100), 2).expect("open");
        w.write(Stream::Stdout, b"first\n").expect("write");
        let running = Arc::new(AtomicBool::new(true));
        let reader = {
            let path = path.clone();
            let running = running.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let config = ReadConfig { follow: true, tail: Some(1), ..Default::default() };
                read(&path, &config, &mut || running.load(Ordering::SeqCst), &mut |e| {
                    got.push(e.log);
                    true
                })
                .expect("follow");
                got
            })
        };
        std::thread::sleep(Duration::from_millis(250));
        // Slow enough that the follower sees each file before it is rotated again.
        for i in 0..6 {
            w.write(Stream::Stderr, format!("more {i} padding padding\n").as_bytes()).expect("write");
            std::thread::sleep(Duration::from_millis(250));
        }
        running.store(false, Ordering::SeqCst);
        let got = reader.join().expect("reader thread");
        let mut want = vec!["first\n".to_string()];
        want.extend((0..6).map(|i| format!("more {i} padding padding\n")));
        assert_eq!(got, want);
    }

    #[test]
    fn sink_can_stop_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, None, 1).expect("open");
        w.write(Stream::Stdout, b"a\nb\nc\n").expect("write");
        let mut got = Vec::new();
        read(&path, &ReadConfig { follow: true, ..Default::default() }, &mut || true, &mut |e| {
            got.push(e.log);
            got.len() < 2
        })
        .expect("read");
        assert_eq!(got, vec!["a\n", "b\n"]);
    }
}
