//! `export_diff`: a layer's changes as an OCI layer tar. Added and modified
//! paths carry their full metadata (owner, mode, mtime with nanoseconds and
//! xattrs in PAX records, device numbers); deletions become `.wh.NAME`;
//! names of one inode after the first become hard links. GNU headers take
//! names of any length. `unpack` of the result onto a fresh child of the same
//! parent rebuilds the layer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use berth_sdk::ChangeKind;

use crate::at::{self, errno, file_type, Dir};
use crate::tree::{join, walk, Changes};

/// Writes `changes` of the tree at `root` to `out` as a tar. A path that
/// vanished since the changes were listed (a running container) is left out.
pub fn export(root: &Dir, changes: &Changes, out: &mut dyn Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    // Changes come grouped by directory: keep the last one open.
    let mut open: Option<(Vec<u8>, Dir)> = None;
    for (rel, kind) in changes {
        let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&rel[..0], &rel[..]),
        };
        if *kind == ChangeKind::Deleted {
            whiteout(&mut builder, parent, name)?;
            continue;
        }
        if open.as_ref().is_none_or(|(p, _)| p != parent) {
            let comps: Vec<&[u8]> = parent.split(|b| *b == b'/').filter(|c| !c.is_empty()).collect();
            open = match walk(root, &comps) {
                Ok(dir) => Some((parent.to_vec(), dir)),
                Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => None,
                Err(e) => return Err(e),
            };
        }
        let Some((_, dir)) = &open else { continue };
        let Some(st) = dir.stat_if_any(name)? else { continue };
        add(&mut builder, dir, name, &st, rel, &mut links)?;
    }
    builder.finish()
}

fn whiteout(builder: &mut tar::Builder<&mut dyn Write>, parent: &[u8], name: &[u8]) -> io::Result<()> {
    let mut marker = b".wh.".to_vec();
    marker.extend_from_slice(name);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    // Every numeric field filled: strict readers refuse blank ones.
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(0);
    builder.append_data(&mut header, OsStr::from_bytes(&join(parent, &marker)), io::empty())
}

fn add(
    builder: &mut tar::Builder<&mut dyn Write>,
    dir: &Dir,
    name: &[u8],
    st: &libc::stat,
    rel: &[u8],
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> io::Result<()> {
    let ftype = file_type(st.st_mode);
    let path = OsStr::from_bytes(rel);
    let mut header = tar::Header::new_gnu();
    header.set_mode(st.st_mode & 0o7777);
    header.set_uid(u64::from(st.st_uid));
    header.set_gid(u64::from(st.st_gid));
    header.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    header.set_size(0);
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if st.st_mtime_nsec != 0 && st.st_mtime >= 0 {
        pax.push(("mtime".into(), format!("{}.{:09}", st.st_mtime, st.st_mtime_nsec).into_bytes()));
    }

    if ftype != libc::S_IFDIR && st.st_nlink > 1 {
        if let Some(first) = links.get(&(st.st_dev, st.st_ino)) {
            header.set_entry_type(tar::EntryType::Link);
            return builder.append_link(&mut header, path, OsStr::from_bytes(first));
        }
        links.insert((st.st_dev, st.st_ino), rel.to_vec());
    }
    let with_pax = |builder: &mut tar::Builder<&mut dyn Write>, pax: &[(String, Vec<u8>)]| match pax.is_empty() {
        true => Ok(()),
        false => builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))),
    };
    match ftype {
        libc::S_IFDIR => {
            let sub = dir.sub(name)?;
            pax.extend(at::xattrs(sub.fd())?.into_iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)));
            with_pax(builder, &pax)?;
            header.set_entry_type(tar::EntryType::Directory);
            let mut p = rel.to_vec();
            p.push(b'/');
            builder.append_data(&mut header, OsStr::from_bytes(&p), io::empty())
        }
        libc::S_IFREG => {
            let file = dir.open_file(name)?;
            pax.extend(at::xattrs(file.as_raw_fd())?.into_iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)));
            with_pax(builder, &pax)?;
            let size = u64::try_from(st.st_size).unwrap_or(0);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            // Exactly `size` bytes even if a running container changes the
            // file meanwhile: the header must not lie about what follows.
            let data = file.take(size).chain(io::repeat(0)).take(size);
            builder.append_data(&mut header, path, data)
        }
        libc::S_IFLNK => {
            let target = dir.readlink(name)?;
            with_pax(builder, &pax)?;
            header.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut header, path, OsStr::from_bytes(&target))
        }
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
            with_pax(builder, &pax)?;
            header.set_entry_type(match ftype {
                libc::S_IFCHR => tar::EntryType::Char,
                libc::S_IFBLK => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            if ftype != libc::S_IFIFO {
                header.set_device_major(libc::major(st.st_rdev))?;
                header.set_device_minor(libc::minor(st.st_rdev))?;
            }
            builder.append_data(&mut header, path, io::empty())
        }
        // Sockets are not layer content (Docker and tar leave them out).
        _ => Ok(()),
    }
}
