use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use berth_sdk::abi::{self, Buffer};
use berth_sdk::conformance::check_storage_driver;
use serde_json::{json, Value};

use super::*;

const MTIME: u64 = 1_600_000_000;

/// A layer tar built with the `tar` crate, every entry with full metadata.
struct Tar(tar::Builder<Vec<u8>>);

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(MTIME);
    h.set_size(0);
    h
}

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(tar::EntryType::Directory, mode, 0, 0);
        self.0.append_data(&mut h, path, io::empty()).expect("dir entry");
        self
    }
    fn file(self, path: &str, data: &str) -> Self {
        self.file_as(path, 0o644, (0, 0), data)
    }
    fn file_as(mut self, path: &str, mode: u32, (uid, gid): (u64, u64), data: &str) -> Self {
        let mut h = header(tar::EntryType::Regular, mode, uid, gid);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data.as_bytes()).expect("file entry");
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 1234, 4321);
        self.0.append_link(&mut h, path, target).expect("symlink entry");
        self
    }
    fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0, 0);
        self.0.append_link(&mut h, path, target).expect("hard link entry");
        self
    }
    fn node(mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut h = header(kind, 0o666, 0, 0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.0.append_data(&mut h, path, io::empty()).expect("node entry");
        self
    }
    /// An entry whose name and link are written byte for byte, unchecked, as a hostile tar would be.
    fn raw(mut self, name: &str, kind: tar::EntryType, link: &str, data: &str) -> Self {
        let mut h = header(kind, 0o644, 0, 0);
        h.set_size(data.len() as u64);
        let gnu = h.as_gnu_mut().expect("a GNU header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.0.append(&h, data.as_bytes()).expect("raw entry");
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

fn driver(dir: &Path) -> Linkvfs {
    Linkvfs::new(PluginContext { data_dir: dir.into(), settings: Default::default() }).expect("new")
}

fn apply(d: &Linkvfs, id: &str, tar: Tar) -> DriverResult<u64> {
    d.apply_diff(id, &mut tar.bytes().as_slice())
}

fn tree(data: &Path, id: &str) -> PathBuf {
    data.join("layers").join(id).join("root")
}

fn stat(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn text(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> =
        fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn changes(d: &Linkvfs, id: &str) -> Vec<(String, ChangeKind)> {
    d.changes(id).expect("changes").into_iter().map(|c| (c.path, c.kind)).collect()
}

/// `base`: files, a hard link pair, a symlink, a device, a fifo and a dir
/// that `child` makes opaque; `child`: a change, an addition, whiteouts.
fn base_and_child(d: &Linkvfs) {
    d.create("base", None).expect("create base");
    let base = Tar::new()
        .dir("etc", 0o755)
        .file("etc/passwd", "root\n")
        .file("etc/hosts", "h\n")
        .file_as("etc/motd", 0o640, (1234, 4321), "hi\n")
        .dir("bin", 0o755)
        .file_as("bin/sh", 0o4755, (0, 0), "sh")
        .hardlink("bin/ash", "bin/sh")
        .symlink("link", "etc/hosts")
        .node("dev/null", tar::EntryType::Char, 1, 3)
        .node("run/fifo", tar::EntryType::Fifo, 0, 0)
        .dir("opq", 0o755)
        .file("opq/a", "a")
        .file("opq/sub/b", "b");
    assert_eq!(apply(d, "base", base).expect("apply base"), 5 + 2 + 3 + 2 + 1 + 1);
    d.create("child", Some("base")).expect("create child");
    let child = Tar::new()
        .file("etc/hosts", "child\n")
        .file("etc/.wh.motd", "")
        .file("new", "n")
        .file("opq/c", "c")
        .file("opq/.wh..wh..opq", "")
        .file("opq/d", "d");
    assert_eq!(apply(d, "child", child).expect("apply child"), 6 + 1 + 1 + 1);
}

#[test]
fn passes_the_conformance_kit() {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Err(f) = check_storage_driver(&driver(dir.path()), dir.path()) {
        panic!("{f}");
    }
}

#[test]
fn layers_share_unchanged_files_as_hard_links_and_unpack_every_entry_kind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = driver(dir.path());
    base_and_child(&d);
    let (base, child) = (tree(dir.path(), "base"), tree(dir.path(), "child"));

    // The base: metadata, the tar's own hard link, symlink, device, fifo.
    let motd = stat(&base.join("etc/motd"));
    assert_eq!((motd.mode() & 0o7777, motd.uid(), motd.gid(), motd.mtime()), (0o640, 1234, 4321, MTIME as i64));
    assert_eq!(stat(&base.join("bin/sh")).mode() & 0o7777, 0o4755, "set-id bits survive the chown");
    assert_eq!(stat(&base.join("bin/ash")).ino(), stat(&base.join("bin/sh")).ino());
    let link = stat(&base.join("link"));
    assert!(link.file_type().is_symlink());
    assert_eq!((link.uid(), fs::read_link(base.join("link")).expect("readlink")), (1234, PathBuf::from("etc/hosts")));
    let null = stat(&base.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!((libc::major(null.rdev()), libc::minor(null.rdev())), (1, 3));
    assert!(stat(&base.join("run/fifo")).file_type().is_fifo());
    assert_eq!(stat(&base.join("etc")).mtime(), MTIME as i64, "directory times are set after their contents");

    // The point of linkvfs: what the child does not change is the parent's inode.
    for same in ["etc/passwd", "bin/sh", "bin/ash", "link", "dev/null", "run/fifo"] {
        assert_eq!(stat(&child.join(same)).ino(), stat(&base.join(same)).ino(), "{same} is shared");
    }
    assert_ne!(stat(&child.join("etc/hosts")).ino(), stat(&base.join("etc/hosts")).ino());
    assert_ne!(stat(&child.join("etc")).ino(), stat(&base.join("etc")).ino(), "directories are the layer's own");
    assert_eq!((text(&child.join("etc/hosts")), text(&base.join("etc/hosts"))), ("child\n".into(), "h\n".into()));
    // Whiteouts and the opaque dir act on the child only; its own opq/c, written before the marker, stays.
    assert!(!child.join("etc/motd").exists() && base.join("etc/motd").exists());
    assert_eq!(names(&child.join("opq")), ["c", "d"]);
    assert_eq!(names(&base.join("opq")), ["a", "sub"]);
    assert_eq!(text(&child.join("new")), "n");

    // A third layer changes a shared file and deletes a shared symlink.
    d.create("third", Some("child")).expect("create third");
    apply(&d, "third", Tar::new().file("etc/passwd", "third\n").file(".wh.link", "")).expect("apply third");
    let third = tree(dir.path(), "third");
    assert_eq!(text(&third.join("etc/passwd")), "third\n");
    assert_eq!((text(&child.join("etc/passwd")), text(&base.join("etc/passwd"))), ("root\n".into(), "root\n".into()));
    assert!(fs::symlink_metadata(third.join("link")).is_err() && stat(&child.join("link")).file_type().is_symlink());
    assert_eq!(stat(&third.join("etc/hosts")).ino(), stat(&child.join("etc/hosts")).ino());
}

#[test]
fn a_writable_layer_never_writes_through_to_an_image_layer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = driver(dir.path());
    base_and_child(&d);
    d.create("rw", Some("child")).expect("create rw");
    let (child, rw) = (tree(dir.path(), "child"), tree(dir.path(), "rw"));
    assert_eq!(stat(&rw.join("etc/hosts")).ino(), stat(&child.join("etc/hosts")).ino(), "linked until mounted");

    let plan = d.mount_plan("rw", true).expect("writable plan");
    assert_eq!(plan, MountPlan { spec: MountSpec::Bind { source: rw.clone(), readonly: false } });
    assert!(dir.path().join("layers/rw/private").is_file() && !dir.path().join("layers/rw/work").exists());
    for path in ["etc/hosts", "etc/passwd", "bin/sh", "link", "dev/null", "run/fifo"] {
        let (mine, theirs) = (stat(&rw.join(path)), stat(&child.join(path)));
        assert_ne!(mine.ino(), theirs.ino(), "{path} is a copy now");
        let meta = |m: &fs::Metadata| (m.mode(), m.uid(), m.gid(), m.size(), m.mtime(), m.mtime_nsec(), m.rdev());
        assert_eq!(meta(&mine), meta(&theirs), "{path} kept its metadata");
    }
    assert_eq!(stat(&rw.join("bin/ash")).ino(), stat(&rw.join("bin/sh")).ino(), "names of one inode stay one inode");
    assert_eq!(stat(&rw.join("etc")).mtime(), stat(&child.join("etc")).mtime(), "directory times are put back");
    assert_eq!(changes(&d, "rw"), []);

    // What a container does, through the bind mount.
    fs::write(rw.join("etc/hosts"), "container\n").expect("write");
    fs::set_permissions(rw.join("bin/sh"), fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::lchown(rw.join("link"), Some(7), Some(7)).expect("lchown");
    assert_eq!(text(&child.join("etc/hosts")), "child\n");
    assert_eq!(text(&tree(dir.path(), "base").join("etc/hosts")), "h\n");
    assert_eq!(stat(&child.join("bin/sh")).mode() & 0o7777, 0o4755);
    assert_eq!(stat(&child.join("link")).uid(), 1234);
    use ChangeKind::*;
    let want = ["/bin", "/bin/ash", "/bin/sh", "/etc", "/etc/hosts", "/link"].map(|p| (p.to_string(), Modified));
    assert_eq!(changes(&d, "rw"), want);

    // Mounting again copies nothing more; a layer made on a writable one copies instead of linking.
    d.mount_plan("rw", true).expect("second writable plan");
    d.create("snap", Some("rw")).expect("create on rw");
    let snap = tree(dir.path(), "snap");
    assert_ne!(stat(&snap.join("etc/passwd")).ino(), stat(&rw.join("etc/passwd")).ino());
    assert_eq!(stat(&snap.join("bin/ash")).ino(), stat(&snap.join("bin/sh")).ino());
    assert_eq!(text(&snap.join("etc/hosts")), "container\n");
    let image = d.mount_plan("child", false).expect("image plan");
    assert_eq!(image, MountPlan { spec: MountSpec::Bind { source: child.clone(), readonly: true } });
    assert!(!dir.path().join("layers/child/private").exists());
}

#[test]
fn a_container_layer_is_its_own_from_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = driver(dir.path());
    base_and_child(&d);
    d.create_read_write("rw", Some("child")).expect("create_read_write");
    assert!(dir.path().join("layers/rw/private").is_file(), "marked private at creation");
    let (child, rw) = (tree(dir.path(), "child"), tree(dir.path(), "rw"));
    for path in ["etc/hosts", "etc/passwd", "bin/sh", "link", "dev/null", "run/fifo"] {
        assert_ne!(stat(&rw.join(path)).ino(), stat(&child.join(path)).ino(), "{path} is a copy");
    }
    assert_eq!(stat(&rw.join("bin/ash")).ino(), stat(&rw.join("bin/sh")).ino(), "names of one inode stay one inode");
    assert_eq!(changes(&d, "rw"), []);
    d.mount_plan("rw", true).expect("writable plan");
    assert!(!dir.path().join("layers/rw/work").exists(), "the first writable mount has nothing left to copy");
    fs::write(rw.join("etc/hosts"), "container\n").expect("write");
    assert_eq!(text(&child.join("etc/hosts")), "child\n");
}

/// Every path under `a` is under `b` with the same type, owner, mode and
/// content (non-directories also the same mtime), and nothing more is in `b`.
fn same_tree(a: &Path, b: &Path) {
    let (na, nb) = (names(a), names(b));
    assert_eq!(na, nb, "entries of {} and {}", a.display(), b.display());
    for name in na {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (stat(&pa), stat(&pb));
        assert_eq!((ma.mode(), ma.uid(), ma.gid(), ma.rdev()), (mb.mode(), mb.uid(), mb.gid(), mb.rdev()), "{}", pa.display());
        if ma.is_dir() {
            same_tree(&pa, &pb);
            continue;
        }
        assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "{}", pa.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).expect("readlink"), fs::read_link(&pb).expect("readlink"));
        } else if ma.is_file() {
            assert_eq!(fs::read(&pa).expect("read"), fs::read(&pb).expect("read"), "{}", pa.display());
        }
    }
}

#[test]
fn changes_and_export_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = driver(dir.path());
    base_and_child(&d);
    use ChangeKind::*;
    let want = [
        ("/etc", Modified),
        ("/etc/hosts", Modified),
        ("/etc/motd", Deleted),
        ("/new", Added),
        ("/opq", Modified),
        ("/opq/a", Deleted),
        ("/opq/c", Added),
        ("/opq/d", Added),
        ("/opq/sub", Deleted),
    ];
    assert_eq!(changes(&d, "child"), want.map(|(p, k)| (p.to_string(), k)));
    assert!(changes(&d, "base").iter().all(|(_, k)| *k == Added), "no parent: everything is added");
    assert_eq!(changes(&d, "base").len(), 16);

    let mut exported = Vec::new();
    d.export_diff("child", &mut exported).expect("export");
    let mut archive = tar::Archive::new(exported.as_slice());
    let mut paths: Vec<String> = archive
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").display().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, ["etc/", "etc/.wh.motd", "etc/hosts", "new", "opq/", "opq/.wh.a", "opq/.wh.sub", "opq/c", "opq/d"]);
    d.create("copy", Some("base")).expect("create copy");
    d.apply_diff("copy", &mut exported.as_slice()).expect("apply the export");
    assert_eq!(changes(&d, "copy"), changes(&d, "child"));
    same_tree(&tree(dir.path(), "child"), &tree(dir.path(), "copy"));

    // A container's changes: new files with nanosecond mtimes, a long name, a deletion, a new hard link pair.
    d.create("rw", Some("child")).expect("create rw");
    d.mount_plan("rw", true).expect("writable");
    let rw = tree(dir.path(), "rw");
    let deep = rw.join("srv").join("n".repeat(120)).join("f".repeat(150));
    fs::create_dir_all(deep.parent().expect("parent")).expect("mkdir");
    fs::write(&deep, "deep").expect("write");
    fs::hard_link(&deep, rw.join("srv/alias")).expect("link");
    fs::remove_file(rw.join("etc/passwd")).expect("rm");
    std::os::unix::fs::symlink("/nowhere/at/all", rw.join("dangling")).expect("symlink");
    let mut exported = Vec::new();
    d.export_diff("rw", &mut exported).expect("export rw");
    d.create("commit", Some("child")).expect("create commit");
    d.apply_diff("commit", &mut exported.as_slice()).expect("apply the commit");
    assert_eq!(changes(&d, "commit"), changes(&d, "rw"));
    let commit = tree(dir.path(), "commit");
    for (a, b) in [(&rw, &commit)] {
        for sub in ["srv", "etc"] {
            same_tree(&a.join(sub), &b.join(sub));
        }
        assert_eq!(fs::read_link(b.join("dangling")).expect("readlink"), PathBuf::from("/nowhere/at/all"));
    }
    let deep_copy = commit.join("srv").join("n".repeat(120)).join("f".repeat(150));
    assert_eq!(stat(&deep_copy).ino(), stat(&commit.join("srv/alias")).ino(), "a hard link pair stays a pair");
}

#[test]
fn hostile_tars_are_refused_and_write_nothing_outside_the_layer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    fs::write(outside.path().join("secret"), "s").expect("write");
    let out = outside.path().display().to_string();
    let d = driver(dir.path());
    use tar::EntryType as T;
    let cases: Vec<(&str, Tar)> = vec![
        ("dotdot", Tar::new().raw("../escape", T::Regular, "", "x")),
        ("absolute-dotdot", Tar::new().raw("/../../escape", T::Regular, "", "x")),
        ("inner-dotdot", Tar::new().raw("a/../../escape", T::Regular, "", "x")),
        ("root-link", Tar::new().symlink("link", "/").raw("link/escape", T::Regular, "", "x")),
        ("outside-link", Tar::new().symlink("etc", &out).raw("etc/escape", T::Regular, "", "x")),
        ("outside-dir-entry", Tar::new().symlink("etc", &out).raw("etc/escape/", T::Directory, "", "")),
        ("hardlink-dotdot", Tar::new().raw("h", T::Link, "../../etc/passwd", "")),
        ("hardlink-through-link", Tar::new().symlink("etc", &out).raw("h", T::Link, "etc/secret", "")),
        ("whiteout-through-link", Tar::new().symlink("etc", &out).raw("etc/.wh.secret", T::Regular, "", "")),
        ("opaque-through-link", Tar::new().symlink("etc", &out).raw("etc/.wh..wh..opq", T::Regular, "", "")),
    ];
    for (id, tar) in cases {
        d.create(id, None).expect("create");
        match apply(&d, id, tar) {
            Err(DriverError::InvalidArgument(m)) => assert!(m.contains(id) || m.contains("layer"), "{id}: {m}"),
            other => panic!("{id}: {other:?}, want InvalidArgument"),
        }
        assert_eq!(names(outside.path()), ["secret"], "{id}");
        assert_eq!(text(&outside.path().join("secret")), "s", "{id}");
        assert!(!tree(dir.path(), id).join("h").exists(), "{id}");
    }
    let mut found = Vec::new();
    let mut todo = vec![dir.path().to_path_buf()];
    while let Some(p) = todo.pop() {
        for e in fs::read_dir(&p).expect("read_dir").flatten() {
            if e.file_name() == "escape" {
                found.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
    }
    assert_eq!(found, Vec::<PathBuf>::new());
    // A symlink as the last component is replaced, never written through.
    d.create("replaced", None).expect("create");
    let secret = format!("{out}/secret");
    let tar = Tar::new().symlink("passwd", &secret).file("passwd", "pwned").symlink("shadow", &secret).hardlink("shadow", "passwd");
    apply(&d, "replaced", tar).expect("replacing symlinks is fine");
    assert_eq!(text(&outside.path().join("secret")), "s");
    let replaced = tree(dir.path(), "replaced");
    assert_eq!((text(&replaced.join("passwd")), text(&replaced.join("shadow"))), ("pwned".into(), "pwned".into()));
    let e = apply(&d, "root-link", Tar::new().raw("link/x", T::Regular, "", "x")).expect_err("refused");
    assert!(e.to_string().contains("\"link\" is a symlink") || e.to_string().contains("link is a symlink"), "{e}");
}

#[test]
fn ids_conflicts_missing_parents_list_and_remove() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layers = dir.path().join("layers");
    fs::create_dir_all(layers.join(".new-x-1/root")).expect("leftover staging");
    fs::create_dir_all(layers.join(".del-y-2/root")).expect("leftover removal");
    fs::create_dir_all(layers.join("half")).expect("a half-made layer");
    let d = driver(dir.path());
    assert_eq!(names(&layers), ["half"], "new deletes what a crash left");
    assert_eq!(d.list().expect("list"), ["half"]);
    assert!(d.exists("half").expect("exists"));
    let e = d.mount_plan("half", true).expect_err("incomplete");
    assert!(matches!(&e, DriverError::Failed(m) if m.contains("incomplete")), "{e:?}");
    d.remove("half").expect("remove a half-made layer");

    d.create("a", None).expect("create a");
    d.create("b", Some("a")).expect("create b");
    assert!(matches!(d.create("a", None), Err(DriverError::Conflict(_))));
    let e = d.create("c", Some("nope")).expect_err("missing parent");
    assert!(matches!(&e, DriverError::NotFound(m) if m.contains("nope") && m.contains("c")), "{e:?}");
    for bad in ["", ".", "..", "../x", "a/b", ".hidden", &"x".repeat(201), "sp ace"] {
        assert!(matches!(d.create(bad, None), Err(DriverError::InvalidArgument(_))), "{bad:?}");
        assert!(matches!(d.remove(bad), Err(DriverError::InvalidArgument(_))), "{bad:?}");
    }
    assert!(matches!(d.create("c", Some("../a")), Err(DriverError::InvalidArgument(_))));
    assert_eq!(names(&layers), ["a", "b"], "refused creates leave nothing");
    assert_eq!(d.list().expect("list"), ["a", "b"]);
    assert_eq!(d.status(), [("Layers".to_string(), "2".to_string())]);
    assert!(matches!(d.remove("zz"), Err(DriverError::NotFound(_))));
    assert!(!d.exists("zz").expect("exists"));
    d.remove("b").expect("remove b");
    d.remove("a").expect("remove a");
    assert_eq!(d.list().expect("list"), Vec::<String>::new());
    assert_eq!(names(&layers), Vec::<String>::new());
    assert!(matches!(d.mount_plan("a", false), Err(DriverError::NotFound(_))));
}

#[test]
fn usage_counts_only_what_the_layer_does_not_share() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = driver(dir.path());
    base_and_child(&d);
    assert_eq!(d.usage("base").expect("usage"), 5 + 2 + 3 + 2 + 1 + 1, "bin/ash is bin/sh: counted once");
    assert_eq!(d.usage("child").expect("usage"), 6 + 1 + 1 + 1);
    d.create("rw", Some("child")).expect("create rw");
    assert_eq!(d.usage("rw").expect("usage"), 0, "a new layer costs nothing");
    d.mount_plan("rw", true).expect("writable");
    assert_eq!(d.usage("rw").expect("usage"), 5 + 6 + 2 + 1 + 1 + 1, "a mounted writable layer owns copies");
}

/// What the host lends for a `call_stream`: a tar to read and a buffer to write.
struct HostStream {
    input: io::Cursor<Vec<u8>>,
    output: Vec<u8>,
}

unsafe extern "C" fn host_read(ctx: *mut std::ffi::c_void, buf: *mut u8, cap: usize) -> isize {
    // SAFETY: ctx is the test's HostStream and buf has cap writable bytes, for this call.
    let (stream, buf) = unsafe { (&mut *ctx.cast::<HostStream>(), std::slice::from_raw_parts_mut(buf, cap)) };
    stream.input.read(buf).map_or(-1, |n| n as isize)
}

unsafe extern "C" fn host_write(ctx: *mut std::ffi::c_void, buf: *const u8, len: usize) -> isize {
    // SAFETY: ctx is the test's HostStream and buf has len readable bytes, for this call.
    let (stream, buf) = unsafe { (&mut *ctx.cast::<HostStream>(), std::slice::from_raw_parts(buf, len)) };
    stream.output.extend_from_slice(buf);
    0
}

/// The host's view of the dylib: the exported descriptor, called as the plugin host does.
#[test]
fn the_dylib_entry_point_serves_storage_calls_with_a_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    // SAFETY: the descriptor is a static of this library.
    let d = unsafe { &*berth_plugin_descriptor() };
    assert_eq!((d.abi_major, d.abi_minor, d.kinds), (abi::ABI_MAJOR, abi::ABI_MINOR, abi::KIND_STORAGE));
    let take = |out: Buffer| -> Value {
        // SAFETY: the glue filled `out`; it is read once and freed by the library.
        let v = serde_json::from_slice(unsafe { std::slice::from_raw_parts(out.ptr, out.len) }).expect("JSON");
        unsafe { (d.free)(out) };
        v
    };
    let config =
        serde_json::to_vec(&abi::InitConfig { data_dir: dir.path().display().to_string(), ..Default::default() })
            .expect("config");
    let mut out = Buffer::empty();
    let handle = unsafe { (d.init)(config.as_ptr(), config.len(), &mut out) };
    assert!(!handle.is_null());
    let mut host = HostStream { input: io::Cursor::new(Vec::new()), output: Vec::new() };
    let call = |host: &mut HostStream, method: &str, args: Value, tar: Option<Vec<u8>>| {
        let (args, mut out) = (args.to_string(), Buffer::empty());
        host.input = io::Cursor::new(tar.unwrap_or_default());
        let mut stream = abi::Stream { ctx: (host as *mut HostStream).cast(), read: host_read, write: host_write };
        let status = unsafe {
            (d.call_stream)(handle, method.as_ptr(), method.len(), args.as_ptr(), args.len(), &mut stream, &mut out)
        };
        (status, take(out))
    };
    assert_eq!(call(&mut host, "storage-driver.create", json!(["l1", null]), None), (abi::STATUS_OK, json!({"ok": null})));
    let tar = Tar::new().dir("etc", 0o755).file("etc/hostname", "plugin\n").bytes();
    assert_eq!(call(&mut host, "storage-driver.apply-diff", json!(["l1"]), Some(tar)), (abi::STATUS_OK, json!({"ok": 7})));
    assert_eq!(call(&mut host, "storage-driver.export-diff", json!(["l1"]), None).0, abi::STATUS_OK);
    let exported = std::mem::take(&mut host.output);
    let mut archive = tar::Archive::new(exported.as_slice());
    let mut entries = archive.entries().expect("entries");
    let mut hostname = entries.nth(1).expect("a second entry").expect("entry");
    let mut content = String::new();
    hostname.read_to_string(&mut content).expect("read");
    assert_eq!((hostname.path().expect("path").display().to_string(), content), ("etc/hostname".into(), "plugin\n".into()));
    let (status, answer) = call(&mut host, "storage-driver.changes", json!(["l1"]), None);
    assert_eq!((status, &answer["ok"][1]), (abi::STATUS_OK, &json!({"path": "/etc/hostname", "kind": "Added"})));
    let (status, answer) = call(&mut host, "storage-driver.create", json!(["l1", null]), None);
    assert_eq!((status, &answer["err"]["kind"]), (abi::STATUS_ERR, &json!("conflict")));

    // Without a stream, apply-diff fails; it does not hang or crash.
    let (args, mut out) = (json!(["l1"]).to_string(), Buffer::empty());
    let method = "storage-driver.apply-diff";
    let status = unsafe { (d.call)(handle, method.as_ptr(), method.len(), args.as_ptr(), args.len(), &mut out) };
    let answer = take(out);
    assert_eq!(status, abi::STATUS_ERR, "{answer}");
    assert!(answer["err"]["message"].as_str().is_some_and(|m| m.contains("call_stream")), "{answer}");
}
