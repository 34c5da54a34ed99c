//! Engine-level image tests: real archives built in the test, loaded into a
//! real (if simple) storage driver that unpacks into temp directories.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_model::drivers::{Change, DriverError, DriverResult, StorageDriver};
use berth_model::{Digest, MountPlan, MountSpec};
use serde_json::json;

use crate::drivers::Drivers;
use crate::engine::Engine;
use crate::config::EngineConfig;
use crate::error::ErrorKind;
use super::{ArchiveFormat, ImageDeleteItem, ImportOptions};

/// A storage driver for tests: each layer is a directory holding a full
/// copy of its parent plus its own diff (like vfs), unpacked with the tar crate.
pub(crate) struct DirDriver {
    pub(crate) root: PathBuf,
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        let t = e.file_type()?;
        if t.is_dir() {
            fs::create_dir_all(&to)?;
            copy_dir(&e.path(), &to)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path())?, &to)?;
        } else {
            fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

impl StorageDriver for DirDriver {
    fn name(&self) -> &str {
        "testdir"
    }
    fn status(&self) -> Vec<(String, String)> {
        vec![]
    }
    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        let dir = self.root.join(id);
        if dir.exists() {
            return Err(DriverError::Conflict(format!("layer {id} exists")));
        }
        fs::create_dir_all(&dir).map_err(|e| DriverError::io("create", e))?;
        if let Some(p) = parent {
            copy_dir(&self.root.join(p), &dir).map_err(|e| DriverError::io("copy parent", e))?;
        }
        Ok(())
    }
    fn apply_diff(&self, id: &str, diff: &mut dyn Read) -> DriverResult<u64> {
        let dir = self.root.join(id);
        let mut ar = tar::Archive::new(diff);
        let mut size = 0;
        for entry in ar.entries().map_err(|e| DriverError::io("tar", e))? {
            let mut entry = entry.map_err(|e| DriverError::io("tar", e))?;
            let path = entry.path().map_err(|e| DriverError::io("tar", e))?.into_owned();
            if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(DriverError::InvalidArgument(format!("invalid tar entry {}: breakout", path.display())));
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(victim) = name.strip_prefix(".wh.") {
                let target = dir.join(path.parent().unwrap_or(Path::new(""))).join(victim);
                let _ = fs::remove_file(&target).or_else(|_| fs::remove_dir_all(&target));
                continue;
            }
            size += entry.header().size().unwrap_or(0);
            entry.unpack_in(&dir).map_err(|e| DriverError::io("unpack", e))?;
        }
        Ok(size)
    }
    fn mount_plan(&self, id: &str, _writable: bool) -> DriverResult<MountPlan> {
        Ok(MountPlan { spec: MountSpec::Bind { source: self.root.join(id), readonly: true } })
    }
    fn export_diff(&self, _id: &str, _out: &mut dyn Write) -> DriverResult<()> {
        Err(DriverError::Unsupported("test driver".into()))
    }
    fn changes(&self, _id: &str) -> DriverResult<Vec<Change>> {
        Err(DriverError::Unsupported("test driver".into()))
    }
    fn usage(&self, _id: &str) -> DriverResult<u64> {
        Ok(0)
    }
    fn exists(&self, id: &str) -> bool {
        self.root.join(id).is_dir()
    }
    fn remove(&self, id: &str) -> DriverResult<()> {
        match fs::remove_dir_all(self.root.join(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::io("remove", e)),
        }
    }
    fn list(&self) -> DriverResult<Vec<String>> {
        Ok(fs::read_dir(&self.root)
            .map_err(|e| DriverError::io("list", e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect())
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }
    fn layers_dir(&self) -> PathBuf {
        self.dir.path().join("layers")
    }
    fn open(&self) -> Arc<Engine> {
        fs::create_dir_all(self.layers_dir()).unwrap();
        let storage = Arc::new(DirDriver { root: self.layers_dir() });
        Engine::open(
            EngineConfig::new(self.dir.path().join("root"), self.dir.path().join("run")),
            storage,
            Drivers::default(),
        )
        .unwrap()
    }
    fn storage_layers(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.layers_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
    fn blobs(&self) -> usize {
        fs::read_dir(self.dir.path().join("root/blobs/sha256")).unwrap().count()
    }
    fn ingest(&self) -> usize {
        fs::read_dir(self.dir.path().join("root/blobs/ingest")).unwrap().count()
    }
}

/// A tar of regular files, as layers and archives in tests are built.
pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A config for layers with these diff IDs.
fn config_for(diff_ids: &[Digest], created: &str) -> Vec<u8> {
    let history: Vec<_> = diff_ids
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"created": created, "created_by": format!("step {i}")}))
        .collect();
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        "history": history,
    })
    .to_string()
    .into_bytes()
}

/// A docker-archive (20.10 layout) with the given layer blobs (tar or gzip tar).
fn docker_archive(layers: &[Vec<u8>], diff_ids: &[Digest], tags: &[&str], created: &str) -> (Vec<u8>, Digest) {
    let config = config_for(diff_ids, created);
    let id = Digest::of(&config);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("{:064x}/layer.tar", i + 1);
        files.insert(p.clone(), l.clone());
        paths.push(p);
    }
    files.insert(format!("{}.json", id.hex()), config);
    files.insert(
        "manifest.json".into(),
        json!([{"Config": format!("{}.json", id.hex()), "RepoTags": tags, "Layers": paths}]).to_string().into_bytes(),
    );
    let entries: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    (tar_of(&entries), id)
}

fn two_layers() -> (Vec<Vec<u8>>, Vec<Digest>) {
    let l1 = tar_of(&[("bin/sh", b"#!shell"), ("etc/hostname", b"base")]);
    let l2 = tar_of(&[("etc/hostname", b"top"), ("bin/.wh.sh", b"")]);
    let d = vec![Digest::of(&l1), Digest::of(&l2)];
    (vec![gzip(&l1), l2], d)
}

fn noprogress() -> impl FnMut(super::Progress) {
    |_| {}
}

#[test]
fn load_registers_image_layers_and_tags_and_unpacks_the_files() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (archive, id) = docker_archive(&layers, &diffs, &["test/app:1"], "2024-01-01T00:00:00Z");
    let lines = engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    assert_eq!(lines, vec!["Loaded image: test/app:1".to_string()]);
    let d = engine.images().find("test/app:1").unwrap();
    assert_eq!(d.record.id, id);
    assert_eq!(d.diff_ids, diffs);
    assert_eq!(d.record.layers.len(), 2);
    let top = env.layers_dir().join(d.record.layers[1].hex());
    assert_eq!(fs::read(top.join("etc/hostname")).unwrap(), b"top");
    assert!(!top.join("bin/sh").exists(), "whiteout applied");
    assert_eq!(env.ingest(), 0);
    // Loading again is idempotent and reuses the layers.
    let again = engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    assert_eq!(again, lines);
    assert_eq!(engine.images().list().unwrap().len(), 1);
    assert_eq!(env.storage_layers().len(), 2);
}

#[test]
fn lookups_by_reference_id_and_prefix() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (archive, id) = docker_archive(&layers, &diffs, &["busybox:latest"], "2024-01-01T00:00:00Z");
    engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        &id.to_string(),
        id.hex(),
        &id.hex()[..12],
        &format!("sha256:{}", &id.hex()[..8]),
    ] {
        assert_eq!(engine.images().find(name).unwrap().record.id, id, "{name}");
    }
    let e = engine.images().find("nothere").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "No such image: nothere:latest");
    assert_eq!(engine.images().find("busybox:other").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn an_ambiguous_id_prefix_is_an_error() {
    let env = Env::new();
    let engine = env.open();
    let layer = tar_of(&[("a", b"a")]);
    let mut ids = Vec::new();
    // 17 distinct images: two must share their first hex digit.
    for i in 0..17 {
        let opts = ImportOptions { changes: vec![format!("ENV N={i}")], ..Default::default() };
        ids.push(engine.images().import(&mut &layer[..], &opts, &mut noprogress()).unwrap().record.id);
    }
    let first =
        ids.iter().map(|d| &d.hex()[..1]).find(|p| ids.iter().filter(|d| d.hex().starts_with(*p)).count() > 1).unwrap();
    let e = engine.images().find(first).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("ambiguous"), "{e}");
    // All 17 share one layer.
    assert_eq!(env.storage_layers().len(), 1);
}

#[test]
fn a_wrong_diff_id_fails_the_load_and_leaves_nothing() {
    let env = Env::new();
    let engine = env.open();
    let (layers, mut diffs) = two_layers();
    diffs[1] = Digest::of(b"not this");
    let (archive, _) = docker_archive(&layers, &diffs, &["bad:1"], "2024-01-01T00:00:00Z");
    let e = engine.images().load(&mut &archive[..], &mut noprogress()).unwrap_err();
    assert!(e.to_string().contains("diff_id") && e.to_string().contains(&diffs[1].to_string()), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(engine.images().list().unwrap().is_empty());
    assert!(env.storage_layers().is_empty(), "no orphan layers: {:?}", env.storage_layers());
    assert_eq!(env.blobs(), 0);
    assert_eq!(env.ingest(), 0);
}

#[test]
fn a_truncated_archive_fails_clearly_and_leaves_nothing() {
    let env = Env::new();
    let engine = env.open();
    let big = tar_of(&[("big", &vec![7u8; 200_000])]);
    let d = Digest::of(&big);
    let (archive, _) = docker_archive(&[big], &[d], &["trunc:1"], "2024-01-01T00:00:00Z");
    for cut in [archive.len() / 2, 700, archive.len() - 2048] {
        let e = engine.images().load(&mut &archive[..cut], &mut noprogress()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "cut at {cut}: {e}");
        assert!(engine.images().list().unwrap().is_empty());
        assert!(env.storage_layers().is_empty());
        assert_eq!(env.blobs(), 0, "cut at {cut}");
        assert_eq!(env.ingest(), 0);
    }
    let e = engine.images().load(&mut &archive[..archive.len() / 2], &mut noprogress()).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn docker_archive_and_oci_round_trips_keep_ids_and_diff_ids() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (archive, id) = docker_archive(&layers, &diffs, &["round:trip"], "2024-01-01T00:00:00Z");
    engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    for format in [ArchiveFormat::DockerArchive, ArchiveFormat::OciLayout] {
        let mut out = Vec::new();
        engine.images().save(&["round:trip".to_string()], format, &mut out).unwrap();
        let env2 = Env::new();
        let fresh = env2.open();
        let lines = fresh.images().load(&mut &out[..], &mut noprogress()).unwrap();
        assert_eq!(lines, vec!["Loaded image: round:trip".to_string()], "{format:?}");
        let d = fresh.images().find("round:trip").unwrap();
        assert_eq!(d.record.id, id, "{format:?}");
        assert_eq!(d.diff_ids, diffs, "{format:?}");
        // And again from the second engine, gzip-compressed as a whole.
        let mut again = Vec::new();
        fresh.images().save(&[id.to_string()], format, &mut again).unwrap();
        let env3 = Env::new();
        let third = env3.open();
        let lines = third.images().load(&mut &gzip(&again)[..], &mut noprogress()).unwrap();
        assert_eq!(lines, vec![format!("Loaded image ID: {id}")], "saved by ID: untagged");
    }
    // The docker archive has Docker's files.
    let mut out = Vec::new();
    engine.images().save(&["round".to_string()], ArchiveFormat::DockerArchive, &mut out).unwrap();
    let mut names: Vec<String> = tar::Archive::new(&out[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"manifest.json".to_string()) && names.contains(&"repositories".to_string()));
    assert!(names.contains(&format!("{}.json", id.hex())));
    assert_eq!(names.iter().filter(|n| n.ends_with("/layer.tar")).count(), 2);
    assert_eq!(names.iter().filter(|n| n.ends_with("/VERSION")).count(), 2);
}

/// An OCI layout whose index names the image; `corrupt` swaps a layer blob's bytes.
fn oci_layout(corrupt: bool) -> (Vec<u8>, Digest) {
    let l1 = tar_of(&[("hello", b"world")]);
    let blob = gzip(&l1);
    let config = config_for(&[Digest::of(&l1)], "2024-02-02T00:00:00Z");
    let id = Digest::of(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": id.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest::of(&blob).to_string(), "size": blob.len()}],
    })
    .to_string()
    .into_bytes();
    let md = Digest::of(&manifest);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": manifest.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/ocitest:v1", "org.opencontainers.image.ref.name": "v1"}}]})
    .to_string()
    .into_bytes();
    let blob_path = format!("blobs/sha256/{}", Digest::of(&blob).hex());
    let stored_blob = if corrupt { gzip(b"other bytes") } else { blob.clone() };
    let files: Vec<(String, Vec<u8>)> = vec![
        (blob_path, stored_blob),
        (format!("blobs/sha256/{}", id.hex()), config),
        (format!("blobs/sha256/{}", md.hex()), manifest),
        ("index.json".into(), index),
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ];
    let entries: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    (tar_of(&entries), id)
}

#[test]
fn oci_layout_loads_with_its_name_and_rejects_a_blob_with_the_wrong_digest() {
    let env = Env::new();
    let engine = env.open();
    let (good, id) = oci_layout(false);
    assert_eq!(
        engine.images().load(&mut &good[..], &mut noprogress()).unwrap(),
        vec!["Loaded image: ocitest:v1".to_string()]
    );
    let d = engine.images().find("ocitest:v1").unwrap();
    assert_eq!(d.record.id, id);
    assert!(d.record.manifest.is_some());

    let env2 = Env::new();
    let engine2 = env2.open();
    let (bad, _) = oci_layout(true);
    let e = engine2.images().load(&mut &bad[..], &mut noprogress()).unwrap_err();
    assert!(e.to_string().contains("digest mismatch") && e.to_string().contains("blobs/sha256/"), "{e}");
    assert!(engine2.images().list().unwrap().is_empty());
    assert_eq!(env2.blobs(), 0);
    assert_eq!(env2.ingest(), 0);
}

#[test]
fn rmi_follows_dockers_rules() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (archive, id) = docker_archive(&layers, &diffs, &["one:latest"], "2024-01-01T00:00:00Z");
    engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    engine.images().tag("one", &"two:x".parse().unwrap()).unwrap();
    assert_eq!(engine.images().find(id.hex()).unwrap().record.repo_tags, vec!["one:latest", "two:x"]);
    // By ID with tags in two repositories: refused without force.
    let e = engine.images().remove(&id.hex()[..12], false, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(
        e.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            id.short()
        )
    );
    // By a reference while another remains: untag only.
    assert_eq!(engine.images().remove("two:x", false, false).unwrap(), vec![ImageDeleteItem::Untagged("two:x".into())]);
    assert_eq!(env.storage_layers().len(), 2);
    // The last reference: untag and delete, layers and blobs too.
    let items = engine.images().remove("one", false, false).unwrap();
    assert_eq!(items[0], ImageDeleteItem::Untagged("one:latest".into()));
    assert_eq!(items[1], ImageDeleteItem::Deleted(id.clone()));
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(env.storage_layers().is_empty());
    assert_eq!(env.blobs(), 0);
    assert_eq!(engine.images().find(id.hex()).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn a_moved_tag_leaves_a_dangling_image_that_prune_removes() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (a, id_a) = docker_archive(&layers, &diffs, &["app:latest"], "2024-01-01T00:00:00Z");
    let (b, id_b) = docker_archive(&layers[..1], &diffs[..1], &["app:latest"], "2024-03-01T00:00:00Z");
    engine.images().load(&mut &a[..], &mut noprogress()).unwrap();
    assert_eq!(
        engine.images().load(&mut &b[..], &mut noprogress()).unwrap(),
        vec![
            format!("The image app:latest already exists, renaming the old one with ID {id_a} to empty string"),
            "Loaded image: app:latest".to_string()
        ]
    );
    let list = engine.images().list().unwrap();
    assert_eq!(
        list.iter().map(|d| d.record.id.clone()).collect::<Vec<_>>(),
        vec![id_b.clone(), id_a.clone()],
        "newest first"
    );
    assert!(list[1].record.repo_tags.is_empty(), "the old image is dangling");
    let usage = engine.images().disk_usage().unwrap();
    assert!(usage.images.iter().all(|(_, shared)| *shared > 0), "the base layer is shared");
    let (items, reclaimed) = engine.images().prune(false).unwrap();
    assert!(items.contains(&ImageDeleteItem::Deleted(id_a)));
    assert!(reclaimed > 0);
    assert_eq!(env.storage_layers().len(), 1, "the shared base layer stays");
    assert_eq!(engine.images().find("app").unwrap().record.id, id_b);
}

#[test]
fn import_applies_changes_and_records_history() {
    let env = Env::new();
    let engine = env.open();
    let rootfs = gzip(&tar_of(&[("bin/busybox", b"\x7fELF...")]));
    let opts = ImportOptions {
        reference: Some("imported:v1".parse().unwrap()),
        changes: vec![r#"CMD ["/bin/sh"]"#.into(), "ENV PATH=/bin".into(), "WORKDIR /root".into()],
        ..Default::default()
    };
    let d = engine.images().import(&mut &rootfs[..], &opts, &mut noprogress()).unwrap();
    assert_eq!(d.record.repo_tags, vec!["imported:v1"]);
    let c = d.config.config().clone().unwrap();
    assert_eq!(c.cmd().clone().unwrap(), vec!["/bin/sh"]);
    assert_eq!(c.working_dir().clone().unwrap(), "/root");
    let h = engine.images().history("imported:v1").unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].comment, "Imported from -");
    assert_eq!(h[0].id.as_ref(), Some(&d.record.id));
    assert_eq!(h[0].size, 7);
    let e = engine
        .images().import(
            &mut &rootfs[..],
            &ImportOptions { changes: vec!["BOGUS x".into()], ..Default::default() },
            &mut noprogress(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // The imported image saves and loads with the same ID.
    let mut out = Vec::new();
    engine.images().save(&["imported:v1".into()], ArchiveFormat::DockerArchive, &mut out).unwrap();
    let env2 = Env::new();
    let fresh = env2.open();
    fresh.images().load(&mut &out[..], &mut noprogress()).unwrap();
    assert_eq!(fresh.images().find("imported:v1").unwrap().record.id, d.record.id);
}

#[test]
fn history_is_newest_first_with_missing_ids_below_the_top() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (archive, id) = docker_archive(&layers, &diffs, &["hist:1"], "2024-01-01T00:00:00Z");
    engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    let h = engine.images().history("hist:1").unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].id.as_ref(), Some(&id));
    assert_eq!(h[0].created_by, "step 1");
    assert_eq!(h[0].tags, vec!["hist:1"]);
    assert_eq!(h[1].id, None);
    assert_eq!(h[1].created_by, "step 0");
    assert_eq!(h[1].size, 11, "bin/sh (7) + etc/hostname (4)");
}

#[test]
fn open_recovers_from_an_interrupted_load() {
    let env = Env::new();
    let (layers, diffs) = two_layers();
    let (archive, id) = docker_archive(&layers, &diffs, &["keep:1"], "2024-01-01T00:00:00Z");
    {
        let engine = env.open();
        engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    }
    // What a SIGKILL mid-load leaves: a half-written blob and a layer with no record.
    fs::write(env.dir.path().join("root/blobs/ingest/ingest-x"), b"partial").unwrap();
    fs::create_dir_all(env.layers_dir().join("deadbeef/usr")).unwrap();
    fs::write(env.dir.path().join("root/blobs/sha256").join(Digest::of(b"orphan").hex()), b"orphan").unwrap();
    let engine = env.open();
    assert_eq!(env.ingest(), 0);
    assert_eq!(env.storage_layers().len(), 2, "{:?}", env.storage_layers());
    assert!(!env.layers_dir().join("deadbeef").exists());
    assert!(!env.dir.path().join("root/blobs/sha256").join(Digest::of(b"orphan").hex()).exists());
    assert_eq!(engine.images().find("keep:1").unwrap().record.id, id);
    // And it still saves (the blobs it needs survived the collection).
    let mut out = Vec::new();
    engine.images().save(&["keep:1".into()], ArchiveFormat::DockerArchive, &mut out).unwrap();
}

#[test]
fn concurrent_loads_and_removals_keep_the_store_consistent() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (archive, id) = docker_archive(&layers, &diffs, &["race:1"], "2024-01-01T00:00:00Z");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
                    // Removal may find it gone already, removed by another thread.
                    match engine.images().remove("race:1", false, false) {
                        Ok(_) => {}
                        Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{e}"),
                    }
                }
            });
        }
    });
    // Whatever interleaving happened, a final load gives a whole image.
    engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    let d = engine.images().find("race:1").unwrap();
    assert_eq!(d.record.id, id);
    assert_eq!(env.storage_layers().len(), 2, "{:?}", env.storage_layers());
    for c in &d.record.layers {
        assert!(env.layers_dir().join(c.hex()).is_dir());
    }
    let mut out = Vec::new();
    engine.images().save(&["race:1".into()], ArchiveFormat::DockerArchive, &mut out).unwrap();
    assert_eq!(env.ingest(), 0);
}

#[test]
fn saving_two_images_that_share_a_layer_writes_it_once_and_loads_both() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (a, id_a) = docker_archive(&layers, &diffs, &["pair:a"], "2024-01-01T00:00:00Z");
    let (b, id_b) = docker_archive(&layers[..1], &diffs[..1], &["pair:b"], "2024-02-01T00:00:00Z");
    engine.images().load(&mut &a[..], &mut noprogress()).unwrap();
    engine.images().load(&mut &b[..], &mut noprogress()).unwrap();
    for format in [ArchiveFormat::DockerArchive, ArchiveFormat::OciLayout] {
        let mut out = Vec::new();
        // A repository name alone saves all its tags.
        engine.images().save(&["pair".into()], format, &mut out).unwrap();
        let files: Vec<String> = tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type().is_file())
            .map(|e| e.path().unwrap().to_string_lossy().into_owned())
            .collect();
        let unique: std::collections::HashSet<&String> = files.iter().collect();
        assert_eq!(unique.len(), files.len(), "{format:?}: no file twice: {files:?}");
        let (layer_files, expected) = match format {
            ArchiveFormat::DockerArchive => (files.iter().filter(|f| f.ends_with("/layer.tar")).count(), 2),
            // Two layers, two configs, two manifests.
            ArchiveFormat::OciLayout => (files.iter().filter(|f| f.starts_with("blobs/sha256/")).count(), 6),
        };
        assert_eq!(layer_files, expected, "{format:?}: the shared base layer is written once: {files:?}");
        let env2 = Env::new();
        let fresh = env2.open();
        let mut lines = fresh.images().load(&mut &out[..], &mut noprogress()).unwrap();
        lines.sort();
        assert_eq!(lines, vec!["Loaded image: pair:a", "Loaded image: pair:b"], "{format:?}");
        assert_eq!(fresh.images().find("pair:a").unwrap().record.id, id_a);
        assert_eq!(fresh.images().find("pair:b").unwrap().record.id, id_b);
        assert_eq!(env2.storage_layers().len(), 2, "{format:?}");
    }
}

#[test]
fn save_fails_when_a_stored_layer_blob_was_damaged() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (archive, _) = docker_archive(&layers, &diffs, &["damaged:1"], "2024-01-01T00:00:00Z");
    engine.images().load(&mut &archive[..], &mut noprogress()).unwrap();
    // The base layer's blob is the gzip one: replace its bytes behind the store's back.
    let blob = Digest::of(&layers[0]);
    let path = env.dir.path().join("root/blobs/sha256").join(blob.hex());
    fs::write(&path, gzip(&tar_of(&[("bin/sh", b"tampered")]))).unwrap();
    for format in [ArchiveFormat::DockerArchive, ArchiveFormat::OciLayout] {
        let e = engine.images().save(&["damaged:1".into()], format, &mut Vec::new()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mismatch") || msg.contains("expected"), "{format:?}: {msg}");
    }
}

// ---- pull, from a registry served by the test ----

/// A registry of fixed answers: path -> (content type, body), over HTTP/1.1
/// with one request per connection. Counts the blob requests it served.
struct FakeRegistry {
    port: u16,
    blob_requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeRegistry {
    fn serve(routes: BTreeMap<String, (&'static str, Vec<u8>)>) -> FakeRegistry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let blob_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = blob_requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                if path.contains("/blobs/") {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let (status, ctype, body) = match routes.get(&path) {
                    Some((t, b)) => ("200 OK", *t, b.clone()),
                    None => (
                        "404 Not Found",
                        "application/json",
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
                    ),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            }
        });
        FakeRegistry { port, blob_requests }
    }
}

/// A repository `test/app` with tag `1`: a docker v2 manifest over `layers`
/// (blobs as served) whose config is for `diff_ids`. Returns the routes,
/// the manifest's digest and the image ID.
fn repository(layers: &[Vec<u8>], diff_ids: &[Digest]) -> (BTreeMap<String, (&'static str, Vec<u8>)>, Digest, Digest) {
    let config = config_for(diff_ids, "2024-01-01T00:00:00Z");
    let id = Digest::of(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": id.to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "digest": Digest::of(l).to_string(),
            "size": l.len(),
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let manifest_digest = Digest::of(&manifest);
    let mut routes = BTreeMap::new();
    let manifest_type = "application/vnd.docker.distribution.manifest.v2+json";
    routes.insert("/v2/test/app/manifests/1".to_string(), (manifest_type, manifest.clone()));
    routes.insert(format!("/v2/test/app/manifests/{manifest_digest}"), (manifest_type, manifest));
    routes.insert(format!("/v2/test/app/blobs/{id}"), ("application/octet-stream", config));
    for l in layers {
        routes.insert(format!("/v2/test/app/blobs/{}", Digest::of(l)), ("application/octet-stream", l.clone()));
    }
    (routes, manifest_digest, id)
}

#[test]
fn pull_fetches_unpacks_and_registers_with_its_repo_digest_then_is_up_to_date() {
    use super::{LayerStep, PullProgress};
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (routes, manifest_digest, id) = repository(&layers, &diffs);
    let registry = FakeRegistry::serve(routes);
    let name = format!("127.0.0.1:{}/test/app", registry.port);
    let reference: berth_model::ImageRef = format!("{name}:1").parse().unwrap();
    let mut seen = Vec::new();
    let outcome = engine.images().pull(&reference, None, None, &mut |p| seen.push(p)).unwrap();
    assert!(outcome.updated);
    assert_eq!((outcome.id.clone(), outcome.manifest_digest.clone()), (id.clone(), manifest_digest.clone()));
    let d = engine.images().find(&format!("{name}:1")).unwrap();
    assert_eq!(d.record.id, id);
    assert_eq!(d.record.repo_digests, vec![format!("{name}@{manifest_digest}")]);
    assert_eq!(engine.images().find(&format!("{name}@{manifest_digest}")).unwrap().record.id, id);
    let top = env.layers_dir().join(d.record.layers[1].hex());
    assert_eq!(fs::read(top.join("etc/hostname")).unwrap(), b"top");
    assert!(matches!(&seen[0], PullProgress::PullingFrom { repository, reference } if repository == "test/app" && reference == "1"));
    for blob in layers.iter().map(|l| Digest::of(l)) {
        let steps: Vec<LayerStep> = seen
            .iter()
            .filter_map(|p| match p {
                PullProgress::Layer { blob: b, step } if *b == blob => Some(step.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(steps.first(), Some(&LayerStep::Queued), "{steps:?}");
        assert!(steps.contains(&LayerStep::DownloadComplete), "{steps:?}");
        assert_eq!(steps.last(), Some(&LayerStep::PullComplete), "{steps:?}");
    }
    assert_eq!(registry.blob_requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(env.ingest(), 0);

    // Again: nothing is fetched but the manifest, and the layers are there already.
    let mut again = Vec::new();
    let outcome = engine.images().pull(&reference, None, None, &mut |p| again.push(p)).unwrap();
    assert!(!outcome.updated);
    assert_eq!(registry.blob_requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(again.iter().any(|p| matches!(p, PullProgress::Layer { step: LayerStep::AlreadyExists, .. })));
    assert_eq!(engine.images().list().unwrap().len(), 1);
}

#[test]
fn a_pulled_blob_with_the_wrong_bytes_is_refused_and_nothing_stays() {
    let env = Env::new();
    let engine = env.open();
    let (layers, diffs) = two_layers();
    let (mut routes, _, _) = repository(&layers, &diffs);
    // The second layer's bytes no longer hash to the digest that names them.
    let path = format!("/v2/test/app/blobs/{}", Digest::of(&layers[1]));
    routes.get_mut(&path).unwrap().1[0] ^= 0xff;
    let registry = FakeRegistry::serve(routes);
    let reference: berth_model::ImageRef = format!("127.0.0.1:{}/test/app:1", registry.port).parse().unwrap();
    let err = engine.images().pull(&reference, None, None, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("digest mismatch") && err.to_string().contains(&Digest::of(&layers[1]).to_string()), "{err}");
    assert!(engine.images().list().unwrap().is_empty());
    assert_eq!(env.blobs(), 0, "no blob of a failed pull is kept");
    assert_eq!(env.ingest(), 0);
    assert!(env.storage_layers().is_empty(), "no layer of a failed pull is kept: {:?}", env.storage_layers());

    let missing: berth_model::ImageRef = format!("127.0.0.1:{}/test/app:nope", registry.port).parse().unwrap();
    let err = engine.images().pull(&missing, None, None, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        format!("manifest for 127.0.0.1:{}/test/app:nope not found: manifest unknown: manifest unknown", registry.port)
    );
}
