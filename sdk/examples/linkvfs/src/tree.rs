//! Whole-tree work: building a layer from its parent, giving a writable
//! layer inodes of its own, and comparing a layer with its parent.
//! Every walk goes directory by directory through `Dir`, so none follows a
//! symlink, and entries that vanish mid-walk (a running container deleting
//! files in its own layer) are skipped rather than fail the call.

use std::collections::{HashMap, HashSet};
use std::io;

use berth_sdk::ChangeKind;

use crate::at::{self, copy_inode, errno, file_type, Dir, Meta};

/// A path relative to a layer root, components joined by `/`.
pub type Rel = Vec<u8>;

/// `rel/name`.
pub fn join(rel: &[u8], name: &[u8]) -> Rel {
    let mut path = rel.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// The directory `comps` below `root`, opened one component at a time.
pub fn walk(root: &Dir, comps: &[&[u8]]) -> io::Result<Dir> {
    let mut dir = root.again()?;
    for c in comps {
        dir = dir.sub(c)?;
    }
    Ok(dir)
}

/// Fills the empty directory `to` with the tree of `from`. Directories are
/// made anew with `from`'s metadata (a layer changes its own directories'
/// entries); everything else becomes a hard link to `from`'s inode, or a
/// copy when `copy` is set or the inode has all the links its filesystem
/// allows. Copies keep the hard links between names inside the tree.
pub fn build_from(from: &Dir, to: &Dir, copy: bool) -> io::Result<()> {
    let mut copies = HashMap::new();
    fill(from, to, to, b"", copy, &mut copies)?;
    to.set_meta(&Meta::of(&from.stat(b"")?), &at::xattrs(from.fd())?, "the layer root")
}

fn fill(
    from: &Dir,
    to: &Dir,
    root: &Dir,
    rel: &[u8],
    copy: bool,
    copies: &mut HashMap<(u64, u64), Rel>,
) -> io::Result<()> {
    for name in from.entries()? {
        let Some(st) = from.stat_if_any(&name)? else { continue };
        let path = join(rel, &name);
        if file_type(st.st_mode) == libc::S_IFDIR {
            to.mkdir(&name, 0o700)?;
            let (src, dst) = (from.sub(&name)?, to.sub(&name)?);
            fill(&src, &dst, root, &path, copy, copies)?;
            // Last: filling the directory moved its times.
            dst.set_meta(&Meta::of(&st), &at::xattrs(src.fd())?, "a directory")?;
            continue;
        }
        if !copy {
            match from.link(&name, to, &name) {
                Ok(()) => continue,
                Err(e) if errno(&e) == libc::EMLINK => {}
                Err(e) => return Err(e),
            }
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = copies.get(&key) {
            // A multi-component name relative to the new tree, which is
            // still the driver's private staging dir: nothing else changes it.
            root.link(first, to, &name)?;
            continue;
        }
        copy_inode(from, &name, &st, to, &name)?;
        if st.st_nlink > 1 {
            copies.insert(key, path);
        }
    }
    Ok(())
}

/// One inode of a tree and every name it has there.
struct Inode {
    st: libc::stat,
    /// (parent directory components, name).
    names: Vec<(Vec<Vec<u8>>, Vec<u8>)>,
}

/// Gives every non-directory of the tree at `root` an inode of its own: an
/// inode with more links than names in the tree is shared with another
/// layer, so it is copied into `work` (same filesystem) and the copy renamed
/// over each of its names here — each name switches atomically, and names
/// that were one inode stay one inode. Directory times are put back after,
/// so the tree looks exactly as before. Answers how many inodes it copied.
/// Run it again after a crash: inodes already copied have no outside links.
pub fn make_private(root: &Dir, work: &Dir) -> io::Result<usize> {
    let mut inodes: HashMap<(u64, u64), Inode> = HashMap::new();
    collect(root, &mut Vec::new(), &mut inodes)?;
    let mut shared: Vec<Inode> =
        inodes.into_values().filter(|i| i.st.st_nlink as usize > i.names.len()).collect();
    shared.sort_by(|a, b| a.names.cmp(&b.names));
    let mut touched: HashMap<Vec<Vec<u8>>, libc::stat> = HashMap::new();
    // Sorted by name, consecutive inodes mostly share a directory: keep the
    // last one open rather than walking to it again for every file.
    let mut last: Option<(Vec<Vec<u8>>, Dir)> = None;
    for inode in &shared {
        let Some((dir, name)) = inode.names.first() else { continue };
        let parent = open_cached(&mut last, root, dir)?;
        copy_inode(parent, name, &inode.st, work, b"copy")?;
        for (dir, name) in &inode.names {
            let parent = open_cached(&mut last, root, dir)?;
            if !touched.contains_key(dir) {
                touched.insert(dir.clone(), parent.stat(b"")?);
            }
            work.link(b"copy", work, b"link")?;
            work.rename(b"link", parent, name)?;
        }
        work.unlink(b"copy")?;
    }
    for (dir, st) in touched {
        let parent = walk(root, &dir.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        let meta = Meta::of(&st);
        parent.set_times(b"", meta.atime, meta.mtime)?;
    }
    Ok(shared.len())
}

/// The directory `dir` below `root`, reusing `last` when it is the same one.
fn open_cached<'a>(last: &'a mut Option<(Vec<Vec<u8>>, Dir)>, root: &Dir, dir: &[Vec<u8>]) -> io::Result<&'a Dir> {
    if last.as_ref().is_none_or(|(path, _)| path.as_slice() != dir) {
        let d = walk(root, &dir.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        *last = Some((dir.to_vec(), d));
    }
    match last {
        Some((_, d)) => Ok(d),
        None => Err(io::Error::other("no directory open")),
    }
}

fn collect(dir: &Dir, comps: &mut Vec<Vec<u8>>, inodes: &mut HashMap<(u64, u64), Inode>) -> io::Result<()> {
    for name in dir.entries()? {
        let Some(st) = dir.stat_if_any(&name)? else { continue };
        if file_type(st.st_mode) == libc::S_IFDIR {
            comps.push(name.clone());
            collect(&dir.sub(&name)?, comps, inodes)?;
            comps.pop();
            continue;
        }
        let inode = inodes.entry((st.st_dev, st.st_ino)).or_insert_with(|| Inode { st, names: Vec::new() });
        inode.names.push((comps.clone(), name));
    }
    Ok(())
}

/// What a layer changes against its parent, in walk order (each directory
/// before its contents), relative paths.
pub type Changes = Vec<(Rel, ChangeKind)>;

/// Compares the tree `new` with `old` (None: an empty tree) as Docker's
/// naive differ does: paths only in `new` are added (with everything below
/// them), paths only in `old` deleted (a directory once, not its contents),
/// paths in both with another inode and other metadata modified.
/// Directories compare owner and mode only, and a directory with a change
/// inside is listed as modified before it.
pub fn changes(new: &Dir, old: Option<&Dir>) -> io::Result<Changes> {
    let mut out = Vec::new();
    compare(new, old, b"", true, &mut out)?;
    Ok(out)
}

fn compare(new: &Dir, old: Option<&Dir>, rel: &[u8], listed: bool, out: &mut Changes) -> io::Result<()> {
    let start = out.len();
    let mut names: Vec<Vec<u8>> = new.entries()?;
    if let Some(old) = old {
        names.extend(old.entries()?);
    }
    names.sort();
    names.dedup();
    for name in names {
        let path = join(rel, &name);
        let ns = new.stat_if_any(&name)?;
        let os = match old {
            Some(old) => old.stat_if_any(&name)?,
            None => None,
        };
        let (ns, changed) = match (ns, os, old) {
            (None, None, _) => continue,
            (None, Some(_), _) => {
                out.push((path, ChangeKind::Deleted));
                continue;
            }
            (Some(ns), None, _) => {
                out.push((path.clone(), ChangeKind::Added));
                (ns, true)
            }
            (Some(ns), Some(os), Some(old)) => {
                let changed = differs(new, old, &name, &ns, &os)?;
                if changed {
                    out.push((path.clone(), ChangeKind::Modified));
                }
                (ns, changed)
            }
            (Some(_), Some(_), None) => continue,
        };
        if file_type(ns.st_mode) != libc::S_IFDIR {
            continue;
        }
        let Some(sub) = vanished_ok(new.sub(&name))? else { continue };
        let old_sub = match (old, os.map(|s| file_type(s.st_mode))) {
            (Some(old), Some(libc::S_IFDIR)) => vanished_ok(old.sub(&name))?,
            _ => None,
        };
        compare(&sub, old_sub.as_ref(), &path, changed, out)?;
    }
    if out.len() > start && !listed {
        out.insert(start, (rel.to_vec(), ChangeKind::Modified));
    }
    Ok(())
}

/// Docker's `statDifferent`, after the one test only linkvfs can make: the
/// same inode is the same file. Size and mtime do not count for directories.
fn differs(new: &Dir, old: &Dir, name: &[u8], ns: &libc::stat, os: &libc::stat) -> io::Result<bool> {
    let ftype = file_type(ns.st_mode);
    if ftype != libc::S_IFDIR && (ns.st_dev, ns.st_ino) == (os.st_dev, os.st_ino) {
        return Ok(false);
    }
    if (ns.st_mode, ns.st_uid, ns.st_gid, ns.st_rdev) != (os.st_mode, os.st_uid, os.st_gid, os.st_rdev) {
        return Ok(true);
    }
    if ftype == libc::S_IFDIR {
        return Ok(false);
    }
    if (ns.st_size, ns.st_mtime, ns.st_mtime_nsec) != (os.st_size, os.st_mtime, os.st_mtime_nsec) {
        return Ok(true);
    }
    if ftype == libc::S_IFLNK {
        return Ok(new.readlink(name)? != old.readlink(name)?);
    }
    Ok(false)
}

/// None for an entry that went away (or was replaced by a symlink) since it was listed.
fn vanished_ok(opened: io::Result<Dir>) -> io::Result<Option<Dir>> {
    match opened {
        Ok(dir) => Ok(Some(dir)),
        Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Bytes of the regular files of `new` that are not `old`'s inode at the
/// same path: what the layer costs on its own. Each inode counts once.
pub fn own_bytes(new: &Dir, old: Option<&Dir>) -> io::Result<u64> {
    own(new, old, &mut HashSet::new())
}

fn own(new: &Dir, old: Option<&Dir>, seen: &mut HashSet<(u64, u64)>) -> io::Result<u64> {
    let mut total = 0;
    for name in new.entries()? {
        let Some(st) = new.stat_if_any(&name)? else { continue };
        let os = match old {
            Some(old) => old.stat_if_any(&name)?,
            None => None,
        };
        match file_type(st.st_mode) {
            libc::S_IFDIR => {
                let Some(sub) = vanished_ok(new.sub(&name))? else { continue };
                let old_sub = match (old, os.map(|s| file_type(s.st_mode))) {
                    (Some(old), Some(libc::S_IFDIR)) => vanished_ok(old.sub(&name))?,
                    _ => None,
                };
                total += own(&sub, old_sub.as_ref(), seen)?;
            }
            libc::S_IFREG => {
                let shared = os.is_some_and(|os| (os.st_dev, os.st_ino) == (st.st_dev, st.st_ino));
                if !shared && seen.insert((st.st_dev, st.st_ino)) {
                    total += u64::try_from(st.st_size).unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    Ok(total)
}
