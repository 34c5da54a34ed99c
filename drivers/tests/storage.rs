//! Storage driver tests: layers applied, mounted, compared and exported.
//!
//! They mount filesystems, so they run as root inside a private mount
//! namespace: `unshare --mount --propagation private --fork cargo test -p berth-drivers`.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_model::drivers::{ChangeKind, DriverError, StorageDriver};
use berth_runtime::mount::{mount, unmount};
use berth_drivers::storage::{self, OverlayDriver, VfsDriver};

// ---------- building layer tars ----------

/// A layer tar built entry by entry, with raw names so tests can write the
/// hostile paths (`../..`, absolute) a careful builder refuses.
struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

#[derive(Clone)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta { mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, xattrs: Vec::new() }
    }
}

fn meta(mode: u32) -> Meta {
    Meta { mode, ..Meta::default() }
}

impl LayerTar {
    fn new() -> Self {
        LayerTar { b: tar::Builder::new(Vec::new()) }
    }

    fn raw(&mut self, name: &str, kind: tar::EntryType, m: &Meta, data: &[u8], link: Option<&str>, dev: Option<(u32, u32)>) {
        if !m.xattrs.is_empty() {
            let pax: Vec<(String, Vec<u8>)> =
                m.xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone())).collect();
            self.b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).expect("pax");
        }
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname = [0; 100];
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_mode(m.mode);
        h.set_uid(m.uid);
        h.set_gid(m.gid);
        h.set_mtime(m.mtime);
        h.set_size(data.len() as u64);
        if let Some((major, minor)) = dev {
            h.set_device_major(major).expect("major");
            h.set_device_minor(minor).expect("minor");
        }
        h.set_cksum();
        self.b.append(&h, data).expect("append");
    }

    fn dir(&mut self, name: &str, m: Meta) -> &mut Self {
        self.raw(name, tar::EntryType::Directory, &m, b"", None, None);
        self
    }
    fn file(&mut self, name: &str, data: &[u8], m: Meta) -> &mut Self {
        self.raw(name, tar::EntryType::Regular, &m, data, None, None);
        self
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Symlink, &meta(0o777), b"", Some(target), None);
        self
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Link, &meta(0o644), b"", Some(target), None);
        self
    }
    fn node(&mut self, name: &str, kind: tar::EntryType, dev: (u32, u32), m: Meta) -> &mut Self {
        self.raw(name, kind, &m, b"", None, Some(dev));
        self
    }
    fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish tar")
    }
}

// ---------- looking at trees ----------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Not for directories: adding or deleting entries moves their mtime.
    mtime: Option<i64>,
    rdev: u64,
    content: Vec<u8>,
    link: Option<PathBuf>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every path below `root` with its type, mode, owner, content and xattrs.
fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        let md = std::fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            'f'
        };
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(&path) {
            for n in names {
                let n = n.to_string_lossy().into_owned();
                if let Ok(Some(v)) = xattr::get(&path, &n) {
                    xattrs.insert(n, v);
                }
            }
        }
        let node = Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: if kind == 'd' { None } else { Some(md.mtime()) },
            rdev: md.rdev(),
            content: if kind == 'f' { std::fs::read(&path).expect("read") } else { Vec::new() },
            link: if kind == 'l' { Some(std::fs::read_link(&path).expect("readlink")) } else { None },
            xattrs,
        };
        let rel = path.strip_prefix(root).expect("prefix").to_string_lossy().into_owned();
        out.insert(rel, node);
        if kind == 'd' {
            walk(root, &path, out);
        }
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "storage tests mount filesystems: run as root inside `unshare --mount`");
}

/// Mounts layer `id` read-only (or writable) at `target` and returns what it shows.
fn mounted_tree(driver: &dyn StorageDriver, id: &str, target: &Path) -> BTreeMap<String, Node> {
    let plan = driver.mount_plan(id, false).expect("mount plan");
    std::fs::create_dir_all(target).expect("mkdir target");
    mount(&plan.spec, target).expect("mount");
    let tree = snapshot(target);
    unmount(target).expect("unmount");
    tree
}

// ---------- the three-layer image of the issue ----------

fn base_layer() -> Vec<u8> {
    let mut t = LayerTar::new();
    t.dir("bin/", meta(0o755))
        .file("bin/sh", b"#!shell", meta(0o755))
        .dir("etc/", meta(0o755))
        .file("etc/passwd", b"root:x:0:0\n", meta(0o644))
        .file("etc/owned", b"owned by 1000", Meta { uid: 1000, gid: 1001, mode: 0o640, ..Meta::default() })
        .dir("tmp/", meta(0o1777))
        .symlink("bin/ls", "sh");
    t.finish()
}

fn layer2() -> Vec<u8> {
    let mut t = LayerTar::new();
    t.dir("data/", meta(0o755))
        .file("data/a", b"aaa", meta(0o644))
        .file("data/b", b"bbb", meta(0o600))
        .dir("opq/", meta(0o755))
        .file("opq/x", b"xxx", meta(0o644))
        .dir("opq/sub/", meta(0o755))
        .file("opq/sub/deep", b"deep", meta(0o644));
    t.finish()
}

/// A whiteout's time in `layer3`, which the overlay layer keeps on its device.
const WHITEOUT_MTIME: u64 = 1_600_000_000;

fn layer3() -> Vec<u8> {
    let mut t = LayerTar::new();
    t.dir("data/", meta(0o755))
        .file("data/.wh.a", b"", Meta { mtime: WHITEOUT_MTIME, ..meta(0o600) })
        .dir("opq/", meta(0o755))
        .file("opq/.wh..wh..opq", b"", meta(0o600))
        .file("opq/y", b"yyy", meta(0o644))
        .file("etc/passwd", b"root:x:0:0\nuser:x:1:1\n", meta(0o644));
    t.finish()
}

fn build_image(driver: &dyn StorageDriver) {
    driver.create("l1", None).expect("create l1");
    driver.apply_diff("l1", &mut Cursor::new(base_layer())).expect("apply l1");
    driver.create("l2", Some("l1")).expect("create l2");
    driver.apply_diff("l2", &mut Cursor::new(layer2())).expect("apply l2");
    driver.create("l3", Some("l2")).expect("create l3");
    driver.apply_diff("l3", &mut Cursor::new(layer3())).expect("apply l3");
}

fn check_image_tree(tree: &BTreeMap<String, Node>) {
    assert!(!tree.contains_key("data/a"), "whited-out data/a is visible");
    assert_eq!(tree["data/b"].content, b"bbb");
    let opq: Vec<&String> = tree.keys().filter(|k| k.starts_with("opq/")).collect();
    assert_eq!(opq, vec!["opq/y"], "opaque dir shows lower entries");
    assert_eq!(tree["etc/passwd"].content, b"root:x:0:0\nuser:x:1:1\n");
    assert_eq!((tree["etc/owned"].uid, tree["etc/owned"].gid, tree["etc/owned"].mode), (1000, 1001, 0o640));
    assert_eq!(tree["tmp"].mode, 0o1777);
    assert_eq!(tree["bin/ls"].link.as_deref(), Some(Path::new("sh")));
}

#[test]
fn multi_layer_image_overlay_and_vfs_give_the_same_tree() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let overlay = OverlayDriver::new(&tmp.path().join("root")).expect("overlay driver");
    let vfs = VfsDriver::new(&tmp.path().join("root")).expect("vfs driver");
    build_image(&overlay);
    build_image(&vfs);

    let o = mounted_tree(&overlay, "l3", &tmp.path().join("mnt-overlay"));
    let v = mounted_tree(&vfs, "l3", &tmp.path().join("mnt-vfs"));
    check_image_tree(&o);
    check_image_tree(&v);
    assert_eq!(o, v, "overlay and vfs trees differ");

    // The overlay layer stores whiteouts as 0/0 char devices and the opaque xattr.
    let diff = tmp.path().join("root/overlay/l3/diff");
    let wh = std::fs::symlink_metadata(diff.join("data/a")).expect("whiteout exists");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(xattr::get(diff.join("opq"), "trusted.overlay.opaque").expect("xattr").as_deref(), Some(&b"y"[..]));

    let mut ids = overlay.list().expect("list");
    ids.sort();
    assert_eq!(ids, vec!["l1", "l2", "l3"]);
    assert_eq!(vfs.list().expect("list"), vec!["l1", "l2", "l3"]);
}

#[test]
fn writable_container_layer_changes_and_export() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let overlay = OverlayDriver::new(&root).expect("overlay driver");
    let vfs = VfsDriver::new(&root).expect("vfs driver");
    for driver in [&overlay as &dyn StorageDriver, &vfs] {
        build_image(driver);
        driver.create("c", Some("l3")).expect("create container layer");
        let target = tmp.path().join(format!("mnt-{}", driver.name()));
        std::fs::create_dir_all(&target).expect("mkdir");
        let plan = driver.mount_plan("c", true).expect("plan");
        mount(&plan.spec, &target).expect("mount rw");
        std::fs::write(target.join("new"), b"new file").expect("write new");
        std::fs::remove_file(target.join("data/b")).expect("rm data/b");
        std::fs::write(target.join("etc/passwd"), b"changed").expect("modify");
        std::fs::remove_dir_all(target.join("opq")).expect("rm opq");
        std::fs::create_dir(target.join("opq")).expect("mkdir opq");
        std::fs::write(target.join("opq/z"), b"zzz").expect("write opq/z");
        let merged = snapshot(&target);
        unmount(&target).expect("unmount");

        let changes = driver.changes("c").expect("changes");
        let has = |p: &str, k: ChangeKind| changes.iter().any(|c| c.path == p && c.kind == k);
        assert!(has("/new", ChangeKind::Added), "{}: {changes:?}", driver.name());
        assert!(has("/data/b", ChangeKind::Deleted), "{}: {changes:?}", driver.name());
        assert!(has("/etc/passwd", ChangeKind::Modified), "{}: {changes:?}", driver.name());
        assert!(has("/opq/z", ChangeKind::Added), "{}: {changes:?}", driver.name());
        assert!(!changes.iter().any(|c| c.path == "/bin/sh"), "{}: unchanged file listed", driver.name());
        assert!(driver.usage("c").expect("usage") >= 8 + 7 + 3);

        // Commit: export the container layer and apply it as a new image layer.
        let mut tar = Vec::new();
        driver.export_diff("c", &mut tar).expect("export");
        driver.create("committed", Some("l3")).expect("create committed");
        driver.apply_diff("committed", &mut Cursor::new(tar)).expect("apply committed");
        let again = mounted_tree(driver, "committed", &tmp.path().join(format!("mnt2-{}", driver.name())));
        let strip = |t: &BTreeMap<String, Node>| -> BTreeMap<String, Node> {
            t.iter().map(|(k, v)| (k.clone(), Node { mtime: None, ..v.clone() })).collect()
        };
        assert_eq!(strip(&again), strip(&merged), "{}: committed tree differs from the container's", driver.name());
        assert!(!again.contains_key("data/b") && !again.contains_key("opq/y") && again.contains_key("opq/z"));
    }
}

#[test]
fn export_then_apply_reproduces_image_layers_with_whiteouts() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let overlay = OverlayDriver::new(&root).expect("overlay driver");
    let vfs = VfsDriver::new(&root).expect("vfs driver");
    for driver in [&overlay as &dyn StorageDriver, &vfs] {
        build_image(driver);
        let mut tar1 = Vec::new();
        driver.export_diff("l3", &mut tar1).expect("export");
        driver.create("l3b", Some("l2")).expect("create");
        driver.apply_diff("l3b", &mut Cursor::new(tar1.clone())).expect("apply exported");
        let mut tar2 = Vec::new();
        driver.export_diff("l3b", &mut tar2).expect("export again");
        assert_eq!(tar1, tar2, "{}: export is not reproducible", driver.name());

        let entries: Vec<(String, u64)> = tar::Archive::new(Cursor::new(&tar1))
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (e.path().expect("path").to_string_lossy().into_owned(), e.header().mtime().expect("mtime"))
            })
            .collect();
        let whiteout = entries.iter().find(|(n, _)| n == "data/.wh.a");
        assert!(whiteout.is_some(), "{}: {entries:?}", driver.name());
        if driver.name() == "overlay" {
            assert_eq!(whiteout.map(|w| w.1), Some(WHITEOUT_MTIME), "overlay: the whiteout's time is not the layer's");
        }
        let a = mounted_tree(driver, "l3", &tmp.path().join("a"));
        let b = mounted_tree(driver, "l3b", &tmp.path().join("b"));
        assert_eq!(a, b, "{}: re-applied layer shows a different tree", driver.name());
    }
    // Overlay keeps the opaque marker itself; vfs turns it into deletions.
    let mut tar = Vec::new();
    overlay.export_diff("l3", &mut tar).expect("export");
    let names: Vec<String> = tar::Archive::new(Cursor::new(&tar))
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "opq/.wh..wh..opq"), "{names:?}");
    let diff_a = snapshot(&root.join("overlay/l3/diff"));
    let diff_b = snapshot(&root.join("overlay/l3b/diff"));
    assert_eq!(diff_a, diff_b, "overlay diff dirs differ after export/apply");
}

#[test]
fn overlay_mounts_120_layers() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    // A long root path makes the absolute lower paths alone exceed a page.
    let root = tmp.path().join("a-rather-long-directory-name-to-make-paths-long").join("root");
    let driver = OverlayDriver::new(&root).expect("overlay driver");
    let mut parent: Option<String> = None;
    for i in 0..120 {
        let id = format!("layer-{i:03}-with-a-long-identifier-0123456789abcdef0123456789abcdef");
        driver.create(&id, parent.as_deref()).expect("create");
        let mut t = LayerTar::new();
        t.file(&format!("f{i:03}"), format!("{i}").as_bytes(), meta(0o644)).file("top", format!("{i}").as_bytes(), meta(0o644));
        driver.apply_diff(&id, &mut Cursor::new(t.finish())).expect("apply");
        parent = Some(id);
    }
    let top = parent.expect("top layer");
    let plan = driver.mount_plan(&top, false).expect("plan");
    let tree = mounted_tree(&driver, &top, &tmp.path().join("mnt"));
    assert_eq!(tree.len(), 121, "expected 120 files plus `top`");
    assert_eq!(tree["top"].content, b"119");
    assert_eq!(tree["f000"].content, b"0");
    match plan.spec {
        berth_model::MountSpec::Overlay { lower, .. } => {
            assert_eq!(lower.len(), 120);
            let total: usize = lower.iter().map(|p| p.as_os_str().len() + 1).sum();
            assert!(total > 4096, "test should exceed one page of options ({total} bytes)");
        }
        other => panic!("expected an overlay plan, got {other:?}"),
    }
    // And a writable container layer on top of all of them.
    driver.create("container", Some(&top)).expect("create container");
    let target = tmp.path().join("rw");
    std::fs::create_dir_all(&target).expect("mkdir");
    mount(&driver.mount_plan("container", true).expect("plan").spec, &target).expect("mount rw");
    std::fs::write(target.join("written"), b"w").expect("write");
    unmount(&target).expect("unmount");
    assert!(root.join("overlay/container/diff/written").exists());
}

// ---------- hostile tars ----------

/// A layer root nested in a sentinel dir; anything written outside the layer
/// shows up in the sentinel.
struct Sandbox {
    _tmp: tempfile::TempDir,
    sentinel: PathBuf,
    driver: Arc<dyn StorageDriver>,
}

impl Sandbox {
    fn new(name: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sentinel = tmp.path().join("sentinel");
        let root = sentinel.join("a").join("b").join("root");
        let driver = storage::select(&root, Some(name)).expect("driver");
        Sandbox { _tmp: tmp, sentinel, driver }
    }

    /// Files outside the driver's root.
    fn outside(&self) -> Vec<String> {
        // A refused layer goes to the driver's trash; the reaper deleting it
        // while we walk would pull entries from under the walk.
        berth_runtime::trash::flush();
        let mut out = Vec::new();
        for (rel, _) in snapshot(&self.sentinel) {
            if !rel.starts_with("a/b/root") && rel != "a" && rel != "a/b" {
                out.push(rel);
            }
        }
        out
    }

    fn layer_dir(&self, id: &str) -> PathBuf {
        let root = self.sentinel.join("a/b/root");
        match self.driver.name() {
            "overlay" => root.join("overlay").join(id).join("diff"),
            _ => root.join("vfs/dir").join(id),
        }
    }
}

#[test]
fn breakout_is_rejected_and_nothing_written_outside() {
    require_root();
    for name in ["overlay", "vfs"] {
        let sb = Sandbox::new(name);
        sb.driver.create("x", None).expect("create");
        let mut t = LayerTar::new();
        t.file("ok", b"fine", meta(0o644)).file("../../escape", b"evil", meta(0o644));
        let err = sb.driver.apply_diff("x", &mut Cursor::new(t.finish())).expect_err("breakout accepted");
        assert!(matches!(err, DriverError::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("../../escape"), "error does not name the entry: {err}");
        assert!(err.to_string().contains("breakout"), "{err}");
        assert_eq!(sb.outside(), Vec::<String>::new(), "{name}: something was written outside the layer");

        // A hard link whose target climbs out is rejected too.
        sb.driver.create("y", None).expect("create");
        let mut t = LayerTar::new();
        t.hardlink("passwd", "../../../../../../etc/passwd");
        let err = sb.driver.apply_diff("y", &mut Cursor::new(t.finish())).expect_err("hard link breakout accepted");
        assert!(err.to_string().contains("passwd"), "{err}");
        assert_eq!(sb.outside(), Vec::<String>::new());
    }
}

#[test]
fn absolute_paths_and_symlinks_stay_inside_the_layer() {
    require_root();
    let host_marker = format!("berth-storage-test-{}", std::process::id());
    for name in ["overlay", "vfs"] {
        let sb = Sandbox::new(name);
        sb.driver.create("x", None).expect("create");
        let mut t = LayerTar::new();
        t.file("/abs/file", b"absolute", meta(0o644))
            .symlink("tmp", "/tmp")
            .file(&format!("tmp/{host_marker}"), b"through symlink", meta(0o644))
            .file(&format!("tmp/sub/{host_marker}"), b"through symlink, new parent", meta(0o644))
            .symlink("up", "../../../../../..")
            .file(&format!("up/{host_marker}-up"), b"climbing symlink", meta(0o644))
            .symlink("abs-etc", "/etc")
            .hardlink("hl", "abs-etc/../abs/file")
            .symlink("vartmp", "/var/tmp")
            .file(&format!("vartmp/{host_marker}"), b"through a dangling symlink", meta(0o644));
        sb.driver.apply_diff("x", &mut Cursor::new(t.finish())).expect("apply");
        let dir = sb.layer_dir("x");
        assert_eq!(std::fs::read(dir.join("abs/file")).expect("abs/file inside"), b"absolute");
        assert_eq!(std::fs::read(dir.join("tmp").join(&host_marker)).expect("tmp/x inside"), b"through symlink");
        assert!(dir.join("tmp/sub").join(&host_marker).exists());
        assert!(dir.join(format!("{host_marker}-up")).exists(), "climbing symlink should resolve to the layer root");
        assert!(!Path::new("/tmp").join(&host_marker).exists(), "{name}: wrote through the symlink into host /tmp");
        assert!(!Path::new("/tmp/sub").join(&host_marker).exists());
        assert!(!Path::new("/").join(format!("{host_marker}-up")).exists());
        // `tmp -> /tmp` points at itself inside the layer, so it became the layer's own dir.
        assert!(std::fs::symlink_metadata(dir.join("tmp")).expect("tmp").is_dir());
        // Other symlinks stay symlinks; what is written through them lands where they point, inside.
        assert_eq!(std::fs::read_link(dir.join("vartmp")).expect("symlink kept"), Path::new("/var/tmp"));
        assert!(std::fs::symlink_metadata(dir.join("var/tmp").join(&host_marker)).expect("var/tmp/x inside").is_file());
        assert!(!Path::new("/var/tmp").join(&host_marker).exists(), "{name}: wrote into host /var/tmp");
        assert_eq!(std::fs::metadata(dir.join("hl")).expect("hl").ino(), std::fs::metadata(dir.join("abs/file")).expect("f").ino());
        assert_eq!(sb.outside(), Vec::<String>::new());
    }
}

#[test]
fn metadata_is_preserved() {
    require_root();
    let security_value = b"berth-test".to_vec();
    for name in ["overlay", "vfs"] {
        let sb = Sandbox::new(name);
        sb.driver.create("x", None).expect("create");
        let mut t = LayerTar::new();
        t.dir("d/", Meta { mode: 0o2750, uid: 7, gid: 8, mtime: 1_500_000_000, ..Meta::default() })
            .file("d/suid", b"#!", Meta { mode: 0o4755, uid: 1234, gid: 5678, mtime: 1_234_567_890, ..Meta::default() })
            .hardlink("d/suid-link", "d/suid")
            .node("dev/null", tar::EntryType::Char, (1, 3), meta(0o666))
            .node("dev/loop9", tar::EntryType::Block, (7, 9), meta(0o660))
            .node("fifo", tar::EntryType::Fifo, (0, 0), meta(0o600))
            .file(
                "x",
                b"xattrs",
                Meta {
                    xattrs: vec![
                        ("user.berth".into(), b"hello".to_vec()),
                        ("security.berth".into(), security_value.clone()),
                    ],
                    ..Meta::default()
                },
            )
            .dir("d/", Meta { mode: 0o2750, uid: 7, gid: 8, mtime: 1_500_000_000, ..Meta::default() });
        let bytes = sb.driver.apply_diff("x", &mut Cursor::new(t.finish())).expect("apply");
        assert_eq!(bytes, 2 + 6);
        // Check via a second layer too (vfs copies it, overlay stacks it).
        sb.driver.create("y", Some("x")).expect("create child");
        for id in ["x", "y"] {
            let target = sb.sentinel.join("a/b/root").join(format!("mnt-{id}"));
            let tree = mounted_tree(sb.driver.as_ref(), id, &target);
            let suid = &tree["d/suid"];
            assert_eq!((suid.mode, suid.uid, suid.gid, suid.mtime), (0o4755, 1234, 5678, Some(1_234_567_890)), "{name}/{id}");
            let d = &tree["d"];
            assert_eq!((d.mode, d.uid, d.gid), (0o2750, 7, 8), "{name}/{id}");
            assert_eq!((tree["dev/null"].kind, tree["dev/null"].rdev), ('c', libc::makedev(1, 3)), "{name}/{id}");
            assert_eq!((tree["dev/loop9"].kind, tree["dev/loop9"].rdev), ('b', libc::makedev(7, 9)), "{name}/{id}");
            assert_eq!(tree["fifo"].kind, 'p');
            assert_eq!(tree["x"].xattrs.get("user.berth").map(Vec::as_slice), Some(&b"hello"[..]), "{name}/{id}");
            assert_eq!(tree["x"].xattrs.get("security.berth"), Some(&security_value), "{name}/{id}");
        }
        let dir = sb.layer_dir("x");
        let a = std::fs::symlink_metadata(dir.join("d/suid")).expect("suid");
        let b = std::fs::symlink_metadata(dir.join("d/suid-link")).expect("link");
        assert_eq!(a.ino(), b.ino(), "{name}: hard link became a copy");
        assert_eq!(std::fs::symlink_metadata(dir.join("d")).expect("d").mtime(), 1_500_000_000, "{name}: dir mtime");
        if name == "vfs" {
            // The full copy keeps the hard link a hard link.
            let y = sb.layer_dir("y");
            let a = std::fs::symlink_metadata(y.join("d/suid")).expect("suid");
            let b = std::fs::symlink_metadata(y.join("d/suid-link")).expect("link");
            assert_eq!(a.ino(), b.ino(), "vfs copy broke the hard link");
            assert_eq!(a.nlink(), 2);
        }
    }
}

#[test]
fn truncated_tar_is_an_error_naming_the_entry() {
    require_root();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut t = LayerTar::new();
    t.file("first", b"1", meta(0o644)).file("big-file", &big, meta(0o644)).file("last", b"2", meta(0o644));
    let full = t.finish();
    for name in ["overlay", "vfs"] {
        let sb = Sandbox::new(name);
        sb.driver.create("cut", None).expect("create");
        let err = sb.driver.apply_diff("cut", &mut Cursor::new(full[..100_000].to_vec())).expect_err("truncated accepted");
        assert!(err.to_string().contains("big-file"), "{name}: {err}");
        assert!(err.to_string().contains("truncated"), "{name}: {err}");

        // Cut exactly after the last entry's data: the end-of-archive marker is missing.
        let end = full.len() - 1024 - (full.len() - 1024) % 512;
        let mut cut = full[..end].to_vec();
        while cut.ends_with(&[0u8; 512]) {
            cut.truncate(cut.len() - 512);
        }
        sb.driver.create("cut2", None).expect("create");
        let err = sb.driver.apply_diff("cut2", &mut Cursor::new(cut)).expect_err("missing end marker accepted");
        assert!(err.to_string().contains("truncated"), "{name}: {err}");

        // Cut inside the second entry's header.
        sb.driver.create("cut3", None).expect("create");
        let err = sb.driver.apply_diff("cut3", &mut Cursor::new(full[..512 + 512 + 100].to_vec())).expect_err("cut header accepted");
        assert!(err.to_string().contains("truncated") && err.to_string().contains("first"), "{name}: {err}");

        sb.driver.create("whole", None).expect("create");
        assert_eq!(sb.driver.apply_diff("whole", &mut Cursor::new(full.clone())).expect("whole tar"), 200_002);
    }
}

#[test]
fn select_names_drivers_and_defaults_to_overlay() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = storage::select(tmp.path(), Some("aufs")).err().expect("unknown driver accepted");
    let msg = err.to_string();
    assert!(msg.contains("aufs") && msg.contains("overlay") && msg.contains("vfs"), "{msg}");
    assert_eq!(storage::select(tmp.path(), None).expect("default").name(), "overlay");
    assert_eq!(storage::select(tmp.path(), Some("vfs")).expect("vfs").name(), "vfs");
}

#[test]
fn removed_layers_go_through_the_trash_and_list_never_shows_it() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let overlay_trash = root.join("overlay/.trash");
    let vfs_trash = root.join("vfs/.trash");
    // What a daemon killed before its reaper finished leaves: swept when the driver opens.
    for trash in [&overlay_trash, &vfs_trash] {
        std::fs::create_dir_all(trash.join("old-layer/diff/etc")).expect("mkdir");
        std::fs::write(trash.join("old-layer/diff/etc/passwd"), b"root").expect("write");
    }
    let overlay = OverlayDriver::new(&root).expect("overlay driver");
    let vfs = VfsDriver::new(&root).expect("vfs driver");
    for (driver, trash) in [(&overlay as &dyn StorageDriver, &overlay_trash), (&vfs, &vfs_trash)] {
        let name = driver.name();
        build_image(driver);
        driver.create("c", Some("l3")).expect("create container layer");
        driver.remove("c").expect("remove");
        // Gone at once, whether or not the reaper has deleted the files yet.
        assert!(!driver.exists("c"), "{name}: removed layer still exists");
        assert!(matches!(driver.remove("c"), Err(DriverError::NotFound(_))), "{name}: second remove");
        // An entry the reaper has not reached is never listed.
        std::fs::create_dir_all(trash.join("pending/diff")).expect("mkdir");
        assert_eq!(driver.list().expect("list"), vec!["l1", "l2", "l3"], "{name}");
        // The same ID can be used again right away.
        driver.create("c", Some("l3")).expect("re-create");
        driver.remove("c").expect("remove again");
        driver.remove("l3").expect("remove an image layer with files");
        std::fs::remove_dir_all(trash.join("pending")).expect("rm pending");
    }
    berth_runtime::trash::flush();
    for trash in [&overlay_trash, &vfs_trash] {
        let left: Vec<_> = std::fs::read_dir(trash).expect("trash dir").flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "{} not emptied: {left:?}", trash.display());
    }
    assert!(!root.join("vfs/parents/l3").exists(), "the vfs parent record went too");
    assert_eq!(overlay.list().expect("list"), vec!["l1", "l2"]);
}

#[test]
fn layer_ids_are_checked_and_removal_cleans_up() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let driver = OverlayDriver::new(tmp.path()).expect("overlay");
    assert!(matches!(driver.create("../x", None), Err(DriverError::InvalidArgument(_))));
    assert!(matches!(driver.create("a", Some("missing")), Err(DriverError::NotFound(_))));
    driver.create("a", None).expect("create");
    assert!(matches!(driver.create("a", None), Err(DriverError::Conflict(_))));
    let link = std::fs::read_to_string(tmp.path().join("overlay/a/link")).expect("link file");
    assert_eq!(link.len(), 26);
    assert!(link.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    assert!(tmp.path().join("overlay/l").join(&link).join(".").exists());
    driver.remove("a").expect("remove");
    assert!(!driver.exists("a"));
    assert!(std::fs::symlink_metadata(tmp.path().join("overlay/l").join(&link)).is_err());
    assert!(matches!(driver.remove("a"), Err(DriverError::NotFound(_))));
}
