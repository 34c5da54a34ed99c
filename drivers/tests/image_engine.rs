//! The engine's image operations over the real storage drivers: a
//! docker-archive with a whiteout and an opaque directory loads into vfs and
//! overlay layers with OCI semantics, saves, and loads again with the same
//! IDs; a layer that climbs out with `..` is refused and leaves nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::drivers::Drivers;
use berth_model::drivers::StorageDriver;
use berth_core::image::ArchiveFormat;
use berth_core::ErrorKind;
use berth_model::{Digest, MountSpec};
use berth_core::{Engine, EngineConfig};

fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        match data {
            Some(d) => {
                h.set_size(d.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mtime(1_700_000_000);
                b.append_data(&mut h, path, *d).unwrap();
            }
            None => {
                h.set_size(0);
                h.set_mode(0o755);
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mtime(1_700_000_000);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A tar whose one entry is named `name` verbatim (the tar crate's builder refuses `..`).
fn raw_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

fn archive(layers: &[Vec<u8>], tag: &str) -> (Vec<u8>, Digest) {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let id = Digest::of(&config);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("layer{i}/layer.tar");
        files.insert(p.clone(), l.clone());
        paths.push(p);
    }
    files.insert(format!("{}.json", id.hex()), config);
    let manifest = serde_json::json!([{"Config": format!("{}.json", id.hex()), "RepoTags": [tag], "Layers": paths}]);
    files.insert("manifest.json".into(), manifest.to_string().into_bytes());
    let entries: Vec<(&str, Option<&[u8]>)> = files.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))).collect();
    (tar_of(&entries), id)
}

fn open(dir: &Path, driver: &str) -> (Arc<Engine>, Arc<dyn StorageDriver>) {
    let storage = berth_drivers::storage::select(&dir.join("root"), Some(driver)).unwrap();
    let engine = Engine::open(
        EngineConfig::new(dir.join("root"), dir.join("run")),
        storage.clone(),
        Drivers::default(),
    )
    .unwrap();
    (engine, storage)
}

fn multi_layer() -> Vec<Vec<u8>> {
    let base = tar_of(&[
        ("etc/", None),
        ("etc/gone", Some(b"deleted above")),
        ("etc/kept", Some(b"kept")),
        ("opq/", None),
        ("opq/lower", Some(b"hidden by the opaque dir")),
    ]);
    let top = tar_of(&[
        ("etc/.wh.gone", Some(b"")),
        ("opq/", None),
        ("opq/.wh..wh..opq", Some(b"")),
        ("opq/upper", Some(b"new")),
    ]);
    vec![base, top]
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn vfs_layers_show_whiteouts_and_opaque_dirs_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, storage) = open(dir.path(), "vfs");
    let (tar, id) = archive(&multi_layer(), "multi:1");
    assert_eq!(engine.images().load(&mut &tar[..], &mut |_| {}).unwrap(), vec!["Loaded image: multi:1"]);
    let d = engine.images().find("multi:1").unwrap();
    assert_eq!(d.record.id, id);
    let top = d.record.layers.last().unwrap().hex().to_string();
    let MountSpec::Bind { source, .. } = storage.mount_plan(&top, false).unwrap().spec else { panic!("vfs binds") };
    assert_eq!(files_under(&source), vec!["etc", "etc/kept", "opq", "opq/upper"]);

    let mut saved = Vec::new();
    engine.images().save(&["multi:1".into()], ArchiveFormat::DockerArchive, &mut saved).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let (fresh, _) = open(dir2.path(), "overlay");
    fresh.images().load(&mut &saved[..], &mut |_| {}).unwrap();
    let again = fresh.images().find("multi:1").unwrap();
    assert_eq!(again.record.id, id);
    assert_eq!(again.diff_ids, d.diff_ids);
    assert_eq!(again.record.layers, d.record.layers);
}

#[test]
fn a_breakout_layer_is_refused_and_leaves_no_layer() {
    for driver in ["vfs", "overlay"] {
        let dir = tempfile::tempdir().unwrap();
        let (engine, storage) = open(dir.path(), driver);
        let good = tar_of(&[("ok", Some(b"fine"))]);
        let bad = raw_tar("../../escape", b"out");
        let (tar, _) = archive(&[good, bad], "evil:1");
        let e = engine.images().load(&mut &tar[..], &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{driver}: {e}");
        assert!(e.to_string().contains("escape"), "{driver}: {e}");
        assert!(engine.images().list().unwrap().is_empty());
        assert!(storage.list().unwrap().is_empty(), "{driver}: {:?}", storage.list().unwrap());
        let escaped: PathBuf = dir.path().join("escape");
        assert!(!escaped.exists() && !dir.path().parent().unwrap().join("escape").exists());
    }
}
