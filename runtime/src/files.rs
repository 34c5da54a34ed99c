//! Files replaced whole: a reader, or the next daemon after a crash, sees the
//! old content or the new one, never a mix. Every file berth rewrites (state,
//! specs, a container's `/etc/hosts`, a plugin's manifest) goes through here.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How far `replace` goes before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Renamed into place only: for files rewritten before every use (an OCI
    /// spec), where a crash costs no more than writing them again, and an
    /// fsync would cost every container start.
    Renamed,
    /// The file and its directory are fsync'd: the new content survives a crash.
    Synced,
}

/// Replaces `path` with `bytes`. The temp file beside it is created
/// exclusively with `mode` (less the umask) under a name no concurrent writer
/// shares, then renamed over `path`; it is removed if anything fails.
pub fn replace(path: &Path, bytes: &[u8], mode: u32, durability: Durability) -> io::Result<()> {
    write_and_rename(path, bytes, mode, durability)?;
    if durability == Durability::Synced {
        std::fs::File::open(parent(path))?.sync_all()?;
    }
    Ok(())
}

/// Replaces several files of one directory, each as `replace` does, with
/// one fsync of the directory for all of them (a container's `hostname`,
/// `hosts` and `resolv.conf` are written on every create).
pub fn replace_in(dir: &Path, files: &[(&str, &[u8])], mode: u32, durability: Durability) -> io::Result<()> {
    for (name, bytes) in files {
        write_and_rename(&dir.join(name), bytes, mode, durability)?;
    }
    if durability == Durability::Synced {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The file's part of a replacement: temp file, write, fsync if asked, rename.
fn write_and_rename(path: &Path, bytes: &[u8], mode: u32, durability: Durability) -> io::Result<()> {
    let tmp = temp_name(path, parent(path))?;
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        if durability == Durability::Synced {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.<name>.<pid>-<n>.tmp` beside the file: hidden, and unique per writer.
fn temp_name(path: &Path, dir: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", path.display())))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    Ok(dir.join(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_replacement_leaves_the_new_content_with_its_mode_and_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        replace(&path, b"one", 0o600, Durability::Synced).expect("write");
        assert_eq!(mode(&path), 0o600);
        replace(&path, b"two", 0o640, Durability::Renamed).expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        // The umask may take bits away, never add them.
        assert_eq!(mode(&path) & 0o600, 0o600);
        assert_eq!(mode(&path) & !0o640, 0, "{:o}", mode(&path));
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn several_files_of_one_directory_are_replaced_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        replace_in(dir.path(), &[("hosts", b"h".as_slice()), ("hostname", b"n".as_slice())], 0o644, Durability::Synced).expect("write");
        assert_eq!(std::fs::read(dir.path().join("hosts")).expect("read"), b"h");
        assert_eq!(std::fs::read(dir.path().join("hostname")).expect("read"), b"n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 2, "no temp file left");
    }

    #[test]
    fn a_failed_replacement_keeps_the_old_file_and_removes_its_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).expect("a directory where the file should go");
        assert!(replace(&path, b"x", 0o600, Durability::Synced).is_err());
        assert!(path.is_dir());
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
