use std::os::unix::fs::{symlink, PermissionsExt};

use berth_sdk::abi::{self, Buffer};
use berth_sdk::conformance::{check_volume_driver, FreshEachCall};
use serde_json::{json, Value};

use super::*;

fn driver(dir: &Path) -> Snapvol {
    Snapvol::new(PluginContext { data_dir: dir.into(), settings: Default::default() }).expect("new")
}

fn create(d: &Snapvol, name: &str, options: &[(&str, &str)]) -> DriverResult<VolumeInfo> {
    let options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    d.create(VolumeCreateRequest { name: name.into(), options })
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn passes_the_conformance_kit_directly_and_rebuilt_for_every_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Err(f) = check_volume_driver(&driver(dir.path()), dir.path()) {
        panic!("{f}");
    }
    let fresh =
        FreshEachCall::<Snapvol>::new(PluginContext { data_dir: dir.path().into(), settings: Default::default() });
    if let Err(f) = check_volume_driver(&fresh, dir.path()) {
        panic!("{f}");
    }
}

#[test]
fn from_copies_the_other_volume_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = driver(dir.path());
    create(&d, "orig", &[]).expect("create orig");
    let data = dir.path().join("volumes/orig/_data");
    fs::create_dir(data.join("secret")).expect("mkdir");
    fs::write(data.join("secret/key"), "k").expect("write");
    fs::write(data.join("run.sh"), "#!/bin/sh").expect("write");
    fs::set_permissions(data.join("run.sh"), fs::Permissions::from_mode(0o751)).expect("chmod");
    fs::set_permissions(data.join("secret"), fs::Permissions::from_mode(0o700)).expect("chmod");
    symlink("/etc/passwd", data.join("passwd")).expect("symlink");
    symlink("secret/key", data.join("key")).expect("symlink");
    // Tests run as root (the sandboxed suite does); elsewhere the owner check is skipped.
    let root = std::os::unix::fs::lchown(data.join("run.sh"), Some(1234), Some(4321)).is_ok();

    let info = create(&d, "copy", &[("from", "orig")]).expect("create copy");
    assert_eq!(info.status.get("from").map(String::as_str), Some("orig"));
    fs::write(data.join("secret/key"), "changed later").expect("write");

    let copy = dir.path().join("volumes/copy/_data");
    assert_eq!(fs::read_to_string(copy.join("secret/key")).expect("read"), "k");
    assert_eq!((mode(&copy.join("run.sh")), mode(&copy.join("secret"))), (0o751, 0o700));
    if root {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(copy.join("run.sh")).expect("stat");
        assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
    }
    assert_eq!(fs::read_link(copy.join("passwd")).expect("readlink"), Path::new("/etc/passwd"));
    assert_eq!(fs::read_link(copy.join("key")).expect("readlink"), Path::new("secret/key"));
}

#[test]
fn bad_requests_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = driver(dir.path());
    let e = create(&d, "v1", &[("size", "1g")]).expect_err("unknown option");
    assert!(matches!(&e, DriverError::InvalidArgument(m) if m.contains("\"size\"")), "{e:?}");
    let e = create(&d, "v1", &[("from", "nothing")]).expect_err("missing source");
    assert!(matches!(&e, DriverError::InvalidArgument(m) if m.contains("nothing")), "{e:?}");
    for bad in ["a", "_a", "a b", "a/b", "..", "é1"] {
        assert!(matches!(create(&d, bad, &[]), Err(DriverError::InvalidArgument(_))), "{bad}");
    }
    assert!(d.list().expect("list").is_empty());
}

#[test]
fn list_shows_hand_made_volumes_but_not_half_made_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = driver(dir.path());
    fs::create_dir_all(dir.path().join("volumes/byhand/_data")).expect("mkdir");
    fs::create_dir_all(dir.path().join("volumes/.new-x-1/_data")).expect("mkdir");
    fs::write(dir.path().join("volumes/notadir"), "").expect("write");
    symlink("/etc", dir.path().join("volumes/escape")).expect("symlink");
    let names: Vec<_> = d.list().expect("list").into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["byhand"]);
    assert!(matches!(d.mount("escape", "c"), Err(DriverError::NotFound(_))));
    let plan = d.mount("byhand", "c").expect("mount");
    let source = dir.path().join("volumes/byhand/_data");
    assert_eq!(plan, MountPlan { spec: MountSpec::Bind { source, readonly: false } });
}

#[test]
fn created_at_is_rfc3339() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(951_827_696)), "2000-02-29T12:34:56Z");
}

/// The host's view of the dylib: the exported descriptor, called like `dlsym` would.
#[test]
fn the_dylib_entry_point_round_trips_and_survives_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    // SAFETY: the descriptor is a static of this library.
    let d = unsafe { &*berth_plugin_descriptor() };
    assert_eq!((d.abi_major, d.abi_minor, d.kinds), (abi::ABI_MAJOR, abi::ABI_MINOR, abi::KIND_VOLUME));
    let take = |out: Buffer| -> Value {
        // SAFETY: `out` was filled by the glue; it is read once and freed by the library.
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
    let call = |method: &str, input: Value| {
        let (input, mut out) = (input.to_string(), Buffer::empty());
        let status = unsafe { (d.call)(handle, method.as_ptr(), method.len(), input.as_ptr(), input.len(), &mut out) };
        (status, take(out))
    };

    let (status, created) = call("volume-driver.create", json!([{"name": "v1", "options": {}}]));
    assert_eq!((status, &created["ok"]["name"]), (abi::STATUS_OK, &json!("v1")));
    let (status, plan) = call("volume-driver.mount", json!(["v1", "c1"]));
    let source = format!("{}/volumes/v1/_data", dir.path().display());
    assert_eq!(
        (status, plan),
        (abi::STATUS_OK, json!({"ok": {"spec": {"type": "bind", "source": source, "readonly": false}}}))
    );
    let (status, err) = call("volume-driver.get", json!(["nope"]));
    assert_eq!((status, &err["err"]["kind"]), (abi::STATUS_ERR, &json!("not_found")));

    let (status, err) = call("volume-driver.create", json!(["not a request"]));
    assert_eq!((status, &err["err"]["kind"]), (abi::STATUS_ERR, &json!("invalid_argument")));
    let (status, err) = call("volume-driver.create", json!([{"name": "panic-in-test", "options": {}}]));
    assert_eq!(status, abi::STATUS_PANIC);
    assert!(err["err"]["message"].as_str().is_some_and(|m| m.contains("asked to panic")), "{err}");

    let (status, listed) = call("volume-driver.list", json!([]));
    assert_eq!((status, listed["ok"].as_array().map(Vec::len)), (abi::STATUS_OK, Some(1)), "still serving");
}
