//! Engine-level container tests that need no root: create's checks and
//! clean-up, names, lookups, listing, rename, remove, and images in use.
//! (Starting containers needs namespaces: the e2e tests in `tests/` do that.)

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use berth_model::Digest;
use berth_model::container::{ContainerConfig, HostConfig, RestartPolicy, Status};
use serde_json::json;

use crate::drivers::Drivers;
use crate::engine::Engine;
use crate::config::EngineConfig;
use crate::error::ErrorKind;
use crate::image::tests::{tar_of, DirDriver};
use super::ListOptions;

/// A one-layer docker archive tagged `tag`, whose config has `config`.
fn archive(tag: &str, config: serde_json::Value) -> Vec<u8> {
    let layer = tar_of(&[("bin/sh", b"#!")]);
    let diff_id = Digest::of(&layer);
    let cfg = json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    })
    .to_string()
    .into_bytes();
    let id = Digest::of(&cfg);
    let manifest = json!([{"Config": format!("{}.json", id.hex()), "RepoTags": [tag], "Layers": ["l/layer.tar"]}]);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("l/layer.tar".into(), layer);
    files.insert(format!("{}.json", id.hex()), cfg);
    files.insert("manifest.json".into(), manifest.to_string().into_bytes());
    let entries: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    tar_of(&entries)
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        fs::create_dir_all(env.layers()).unwrap();
        env
    }
    fn layers(&self) -> PathBuf {
        self.dir.path().join("layers")
    }
    fn open(&self) -> Arc<Engine> {
        let storage = Arc::new(DirDriver { root: self.layers() });
        let config = EngineConfig::new(self.dir.path().join("root"), self.dir.path().join("run"));
        Engine::open(config, storage, Drivers::default()).unwrap()
    }
    fn container_dirs(&self) -> Vec<String> {
        match fs::read_dir(self.dir.path().join("root/containers")) {
            Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => vec![],
        }
    }
    fn layer_count(&self) -> usize {
        fs::read_dir(self.layers()).unwrap().count()
    }
}

fn load(engine: &Engine, tag: &str, config: serde_json::Value) {
    engine.images().load(&mut &archive(tag, config)[..], &mut |_| {}).unwrap();
}

fn cfg(image: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        image: image.into(),
        cmd: (!cmd.is_empty()).then(|| cmd.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

#[test]
fn create_stores_a_merged_config_and_the_containers_files() {
    let env = Env::new();
    let engine = env.open();
    load(&engine, "box:latest", json!({"Cmd": ["sh"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w"}));
    let mut c = cfg("box", &["echo", "hi"]);
    c.env = Some(vec!["A=2".into()]);
    let (rec, warnings) = engine.containers().create(Some("web"), c, HostConfig::default(), Default::default()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!((rec.path.as_str(), rec.args.clone()), ("echo", vec!["hi".to_string()]));
    assert_eq!(rec.config.env, Some(vec!["PATH=/bin".into(), "A=2".into()]));
    assert_eq!(rec.config.working_dir, "/w");
    assert_eq!(rec.config.hostname, rec.id.short());
    assert_eq!(rec.host_config.network_mode, "bridge", "the default network");
    assert!(rec.networks.contains_key("bridge"), "{:?}", rec.networks);
    assert_eq!(rec.host_config.restart_policy.name, "no");
    assert_eq!(rec.state.status, Status::Created);
    let dir = env.dir.path().join("root/containers").join(rec.id.as_str());
    assert_eq!(fs::read_to_string(dir.join("hostname")).unwrap(), format!("{}\n", rec.id.short()));
    assert!(fs::read_to_string(dir.join("hosts")).unwrap().starts_with("127.0.0.1\tlocalhost"));
    assert!(fs::read_to_string(dir.join("resolv.conf")).unwrap().contains("nameserver"));
    assert!(env.layers().join(rec.id.as_str()).is_dir(), "the writable layer exists");

    // A second create gets a generated name.
    let (other, warnings) = engine.containers().create(None, cfg("box", &[]), HostConfig::default(), Default::default()).unwrap();
    assert!(warnings.is_empty());
    assert!(super::validate_name(&other.name).is_ok() && other.name.contains('_'), "{}", other.name);
    assert_eq!(other.path, "sh", "the image's Cmd");
}

#[test]
fn bad_creates_fail_clearly_and_leave_nothing() {
    let env = Env::new();
    let engine = env.open();
    load(&engine, "box:latest", json!({}));
    let layers = env.layer_count();
    let err = engine.containers().create(None, cfg("nosuch", &["true"]), HostConfig::default(), Default::default()).unwrap_err();
    assert_eq!((err.kind(), err.to_string()), (ErrorKind::NotFound, "No such image: nosuch:latest".to_string()));
    let err = engine.containers().create(None, cfg("box", &[]), HostConfig::default(), Default::default()).unwrap_err();
    assert_eq!((err.kind(), err.to_string()), (ErrorKind::InvalidArgument, "no command specified".to_string()));
    let err = engine
        .containers().create(None, cfg("box", &["true"]), HostConfig { memory: 1 << 20, ..Default::default() }, Default::default())
        .unwrap_err();
    assert_eq!(err.to_string(), "Minimum memory limit allowed is 6MB");
    let rm_with_restart = HostConfig {
        auto_remove: true,
        restart_policy: RestartPolicy { name: "always".into(), maximum_retry_count: 0 },
        ..Default::default()
    };
    assert!(engine.containers().create(None, cfg("box", &["true"]), rm_with_restart, Default::default()).is_err());
    let err = engine.containers().create(Some("-bad"), cfg("box", &["true"]), HostConfig::default(), Default::default()).unwrap_err();
    assert!(err.to_string().starts_with("Invalid container name (-bad)"), "{err}");

    // A duplicate name: Docker's conflict, naming the holder; the loser's layer and dir are gone.
    let (first, _) = engine.containers().create(Some("web"), cfg("box", &["true"]), HostConfig::default(), Default::default()).unwrap();
    let err = engine.containers().create(Some("/web"), cfg("box", &["true"]), HostConfig::default(), Default::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!(
            "Conflict. The container name \"/web\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
            first.id
        )
    );
    assert_eq!(env.container_dirs(), vec![first.id.to_string()]);
    assert_eq!(env.layer_count(), layers + 1, "only the first container's layer was added");
}

#[test]
fn lookups_listing_rename_and_remove() {
    let env = Env::new();
    let engine = env.open();
    load(&engine, "box:latest", json!({"Cmd": ["sh"]}));
    let mut labelled = cfg("box", &[]);
    labelled.labels = Some([("tier".to_string(), "web".to_string())].into());
    let (a, _) = engine.containers().create(Some("alpha"), labelled, HostConfig::default(), Default::default()).unwrap();
    let (b, _) = engine.containers().create(Some("beta"), cfg("box", &[]), HostConfig::default(), Default::default()).unwrap();
    assert_eq!(engine.containers().find("alpha").unwrap().record.id, a.id);
    assert_eq!(engine.containers().find("/beta").unwrap().record.id, b.id);
    assert_eq!(engine.containers().find(&a.id.as_str()[..10]).unwrap().record.id, a.id);
    let err = engine.containers().find("nope").unwrap_err();
    assert_eq!((err.kind(), err.to_string()), (ErrorKind::NotFound, "No such container: nope".to_string()));

    // `ps` shows running ones only; `-a`, filters and `-n` see the created ones.
    assert!(engine.containers().list(&ListOptions::default()).unwrap().is_empty());
    let all = engine.containers().list(&ListOptions { all: true, ..Default::default() }).unwrap();
    assert_eq!(all.len(), 2);
    let mut filters = super::Filters::new();
    filters.insert("label".into(), vec!["tier=web".into()]);
    let web = engine.containers().list(&ListOptions { all: true, filters, ..Default::default() }).unwrap();
    assert_eq!(web.iter().map(|d| d.record.name.clone()).collect::<Vec<_>>(), vec!["alpha"]);
    let last = engine.containers().list(&ListOptions { limit: Some(1), ..Default::default() }).unwrap();
    assert_eq!(last.len(), 1);
    let mut bad = super::Filters::new();
    bad.insert("colour".into(), vec!["red".into()]);
    assert!(engine.containers().list(&ListOptions { all: true, filters: bad, ..Default::default() }).is_err());

    engine.containers().rename("alpha", "gamma").unwrap();
    assert_eq!(engine.containers().find("gamma").unwrap().record.id, a.id);
    assert_eq!(engine.containers().rename("gamma", "beta").unwrap_err().kind(), ErrorKind::Conflict);

    // An image in use cannot go; a stopped container's image can be untagged with force.
    let err = engine.images().remove("box", false, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .starts_with("conflict: unable to remove repository reference \"box:latest\" (must force) - container "),
        "{err}"
    );

    // The writable layers survive a restart of the engine (recover knows them).
    drop(engine);
    let engine = env.open();
    assert!(env.layers().join(a.id.as_str()).is_dir() && env.layers().join(b.id.as_str()).is_dir());

    // A waiter for removal hears of it.
    let waiter = engine.containers().wait("beta", super::WaitCondition::Removed).unwrap();
    engine.containers().remove("gamma", false, false).unwrap();
    engine.containers().remove("beta", false, false).unwrap();
    assert_eq!(waiter.recv().status_code, 0);
    assert!(env.container_dirs().is_empty());
    assert!(!env.layers().join(a.id.as_str()).exists() && !env.layers().join(b.id.as_str()).exists());
    assert!(engine.containers().list(&ListOptions { all: true, ..Default::default() }).unwrap().is_empty());
    // Now the image can go.
    engine.images().remove("box", false, false).unwrap();
}

#[test]
fn not_running_containers_refuse_running_operations() {
    let env = Env::new();
    let engine = env.open();
    load(&engine, "box:latest", json!({"Cmd": ["sh"]}));
    let (c, _) = engine.containers().create(Some("idle"), cfg("box", &[]), HostConfig::default(), Default::default()).unwrap();
    let not_running = format!("Container {} is not running", c.id);
    assert_eq!(engine.containers().kill("idle", "KILL").unwrap_err().to_string(), not_running);
    assert_eq!(engine.containers().pause("idle").unwrap_err().to_string(), not_running);
    assert_eq!(engine.containers().unpause("idle").unwrap_err().kind(), ErrorKind::Conflict);
    let err =
        engine.containers().create_exec("idle", super::ExecConfig { cmd: vec!["ls".into()], ..Default::default() }).unwrap_err();
    assert_eq!((err.kind(), err.to_string()), (ErrorKind::Conflict, format!("container {} is not running", c.id)));
    assert!(!engine.containers().stop("idle", None, None).unwrap(), "stopping a stopped container is a no-op");
    // `wait` on a container that is not running answers at once.
    assert_eq!(engine.containers().wait("idle", super::WaitCondition::NotRunning).unwrap().recv().status_code, 0);
    assert_eq!(engine.containers().kill("idle", "NOPE").unwrap_err().to_string(), "Invalid signal: NOPE");
}
