//! The SDK's own tests: the JSON the host relies on, the dispatcher, and
//! small drivers with switchable flaws showing that each promise the
//! conformance kit checks can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::conformance::{check_network_driver, check_storage_driver, check_volume_driver, Failures};
use crate::*;

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("plain data encodes")
}

#[test]
fn documents_have_the_engines_json_shape() {
    let bind = MountPlan { spec: MountSpec::Bind { source: "/data/x".into(), readonly: false } };
    assert_eq!(
        serde_json::to_string(&bind).unwrap(),
        r#"{"spec":{"type":"bind","source":"/data/x","readonly":false}}"#
    );
    assert_eq!(to_json(&DriverError::NotFound("no v".into())), json!({"kind": "not_found", "message": "no v"}));
    assert_eq!(
        to_json(&VolumeInfo { name: "v".into(), ..Default::default() }),
        json!({"name": "v", "mountpoint": null, "created_at": null, "status": {}})
    );
    let veth = NetAction::CreateLink {
        name: "vi1".into(),
        link: LinkKind::Veth { peer: "vp1".into() },
        ns: Netns::Host,
        mtu: None,
        mac_address: None,
    };
    assert_eq!(
        to_json(&veth),
        json!({"op": "create_link", "name": "vi1", "link": {"kind": "veth", "peer": "vp1"}, "ns": "host", "mtu": null, "mac_address": null})
    );
    assert_eq!(
        to_json(&NetAction::AddFirewallRule {
            rule: FirewallRule::Isolate { from_iface: "a".into(), to_iface: "b".into() }
        }),
        json!({"op": "add_firewall_rule", "rule": {"rule": "isolate", "from_iface": "a", "to_iface": "b"}})
    );
    assert_eq!(to_json(&VolumeCapabilities::default()), json!({"scope": "local"}));
    assert_eq!(to_json(&abi::Answer::Ok(Value::Null)), json!({"ok": null}));
    assert_eq!(
        to_json(&abi::Answer::Err(DriverError::Failed("boom".into()))),
        json!({"err": {"kind": "failed", "message": "boom"}})
    );
}

/// Ways the test volume driver can break the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    None,
    MountsEtc,
    RecreateWipesData,
    RemoveKeepsVolume,
    AcceptsAnyName,
    UnknownIsFailed,
    IgnoresOptions,
}

/// A directory-per-volume driver, good unless given a flaw.
struct DirVolumes {
    root: PathBuf,
    flaw: Flaw,
}

impl DirVolumes {
    /// One directory per name, always inside `root`: even the flaw that
    /// accepts any name (`..`, `/abs`) must not reach the host's files.
    fn dir(&self, name: &str) -> PathBuf {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        self.root.join(format!("v-{hex}"))
    }
    fn existing(&self, name: &str) -> DriverResult<PathBuf> {
        let dir = self.dir(name);
        match (dir.is_dir(), self.flaw) {
            (true, _) => Ok(dir),
            (false, Flaw::UnknownIsFailed) => Err(DriverError::Failed("oops".into())),
            (false, _) => Err(DriverError::NotFound(format!("no volume {name}"))),
        }
    }
    fn info(&self, name: &str) -> VolumeInfo {
        VolumeInfo { name: name.into(), mountpoint: Some(self.dir(name)), ..Default::default() }
    }
}

impl VolumeDriver for DirVolumes {
    fn new(ctx: PluginContext) -> DriverResult<Self> {
        let flaw = match ctx.settings.get("flaw").map(String::as_str) {
            Some("mounts-etc") => Flaw::MountsEtc,
            _ => Flaw::None,
        };
        Ok(DirVolumes { root: ctx.data_dir, flaw })
    }
    fn create(&self, r: VolumeCreateRequest) -> DriverResult<VolumeInfo> {
        let valid = r.name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && r.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid && self.flaw != Flaw::AcceptsAnyName {
            return Err(DriverError::InvalidArgument(format!("bad name {:?}", r.name)));
        }
        if let Some(key) = r.options.keys().next().filter(|_| self.flaw != Flaw::IgnoresOptions) {
            return Err(DriverError::InvalidArgument(format!("unknown option {key}")));
        }
        if self.flaw == Flaw::RecreateWipesData {
            let _ = std::fs::remove_dir_all(self.dir(&r.name));
        }
        std::fs::create_dir_all(self.dir(&r.name)).map_err(|e| DriverError::io("create", e))?;
        Ok(self.info(&r.name))
    }
    fn remove(&self, name: &str) -> DriverResult<()> {
        let dir = self.existing(name)?;
        if self.flaw == Flaw::RemoveKeepsVolume {
            return Ok(());
        }
        std::fs::remove_dir_all(dir).map_err(|e| DriverError::io("remove", e))
    }
    fn mount(&self, name: &str, _caller: &str) -> DriverResult<MountPlan> {
        let dir = self.existing(name)?;
        let source = if self.flaw == Flaw::MountsEtc { "/etc".into() } else { dir.display().to_string() };
        Ok(MountPlan { spec: MountSpec::Bind { source: source.into(), readonly: false } })
    }
    fn unmount(&self, name: &str, _caller: &str) -> DriverResult<()> {
        self.existing(name).map(drop)
    }
    fn path(&self, name: &str) -> DriverResult<Option<String>> {
        Ok(Some(self.existing(name)?.display().to_string()))
    }
    fn get(&self, name: &str) -> DriverResult<VolumeInfo> {
        self.existing(name).map(|_| self.info(name))
    }
    fn list(&self) -> DriverResult<Vec<VolumeInfo>> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| DriverError::io("list", e))?;
        let decode = |dir: String| -> Option<String> {
            let hex = dir.strip_prefix("v-")?;
            let bytes: Option<Vec<u8>> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
            String::from_utf8(bytes?).ok()
        };
        Ok(entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter_map(decode).map(|n| self.info(&n)).collect())
    }
}

fn failed_checks(result: Result<conformance::Report, Failures>) -> Vec<String> {
    match result {
        Ok(_) => Vec::new(),
        Err(f) => f.failed.into_iter().map(|f| f.check).collect(),
    }
}

fn volume_kit(flaw: Flaw) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    failed_checks(check_volume_driver(&DirVolumes { root: dir.path().into(), flaw }, dir.path()))
}

#[test]
fn the_volume_kit_passes_a_good_driver_and_fails_each_flaw() {
    assert_eq!(volume_kit(Flaw::None), Vec::<String>::new());
    let cases = [
        (Flaw::MountsEtc, "mount gives a valid plan"),
        (Flaw::RecreateWipesData, "creating the same name again is idempotent or Conflict, and loses nothing"),
        (Flaw::RemoveKeepsVolume, "get after remove is NotFound"),
        (Flaw::AcceptsAnyName, "names that are not Docker volume names are InvalidArgument"),
        (Flaw::UnknownIsFailed, "get of an unknown volume is NotFound"),
        (Flaw::IgnoresOptions, "an unknown option is InvalidArgument and creates nothing"),
    ];
    for (flaw, check) in cases {
        let failed = volume_kit(flaw);
        assert!(failed.iter().any(|c| c == check), "{flaw:?} should fail {check:?}, failed {failed:?}");
    }
}

#[test]
fn the_kit_reports_what_failed_and_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = PluginContext { data_dir: dir.path().into(), settings: [("flaw".into(), "mounts-etc".into())].into() };
    let fresh = conformance::FreshEachCall::<DirVolumes>::new(ctx);
    let failures = check_volume_driver(&fresh, dir.path()).expect_err("mounting /etc is refused");
    let text = failures.to_string();
    assert!(text.contains("mount gives a valid plan") && text.contains("\"/etc\" is not under the data dir"), "{text}");
}

#[test]
fn plans_outside_the_data_dir_are_invalid() {
    let root = Path::new("/data");
    let bind = |source: &str| MountPlan { spec: MountSpec::Bind { source: source.into(), readonly: false } };
    assert!(conformance::check_mount_plan(&bind("/data/volumes/a/_data"), root).is_ok());
    for bad in ["/data", "/data/../etc", "/data/a/./b", "data/a", "/etc", "/database"] {
        assert!(conformance::check_mount_plan(&bind(bad), root).is_err(), "{bad}");
    }
}

/// Ways the test network driver can break the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NetFlaw {
    None,
    LongNames,
    SandboxStepInCreate,
    LeaveForgetsVeth,
    KeepsBridge,
    WrongInterfaceName,
}

/// A bridge driver keeping endpoints in memory (fine for direct tests).
struct Bridges {
    flaw: NetFlaw,
    endpoints: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Bridges {
    fn bridge(&self, network_id: &str) -> String {
        let len = if self.flaw == NetFlaw::LongNames { 16 } else { 12 };
        format!("tb{}", &network_id[..len.min(network_id.len())])
    }
}

impl NetworkDriver for Bridges {
    fn new(_ctx: PluginContext) -> DriverResult<Self> {
        Ok(Bridges { flaw: NetFlaw::None, endpoints: Default::default() })
    }
    fn create_network(&self, r: NetworkCreateRequest) -> DriverResult<NetworkPlan> {
        let name = self.bridge(&r.network_id);
        let mut actions = vec![
            NetAction::CreateLink {
                name: name.clone(),
                link: LinkKind::Bridge,
                ns: Netns::Host,
                mtu: None,
                mac_address: None,
            },
            NetAction::SetUp { link: name.clone(), ns: Netns::Host },
        ];
        if self.flaw == NetFlaw::SandboxStepInCreate {
            actions.push(NetAction::SetUp { link: "lo".into(), ns: Netns::Sandbox });
        }
        Ok(NetworkPlan { actions })
    }
    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan> {
        let mut plan = NetworkPlan::default();
        if self.flaw != NetFlaw::KeepsBridge {
            plan.actions.push(NetAction::DeleteLink { name: self.bridge(network_id), ns: Netns::Host });
        }
        Ok(plan)
    }
    fn create_endpoint(&self, r: EndpointCreateRequest) -> DriverResult<EndpointInfo> {
        let address = r.address.ok_or_else(|| DriverError::InvalidArgument("no address".into()))?;
        let (ip, _) = address.split_once('/').ok_or_else(|| DriverError::InvalidArgument("no prefix".into()))?;
        ip.parse::<std::net::IpAddr>().map_err(|e| DriverError::InvalidArgument(e.to_string()))?;
        let mut endpoints = self.endpoints.lock().map_err(|_| DriverError::Failed("poisoned".into()))?;
        endpoints.insert(r.endpoint_id, address.clone());
        Ok(EndpointInfo { address: Some(address), ..Default::default() })
    }
    fn delete_endpoint(&self, _network_id: &str, endpoint_id: &str) -> DriverResult<()> {
        self.endpoints.lock().map_err(|_| DriverError::Failed("poisoned".into()))?.remove(endpoint_id);
        Ok(())
    }
    fn join(&self, r: JoinRequest) -> DriverResult<NetworkPlan> {
        let endpoints = self.endpoints.lock().map_err(|_| DriverError::Failed("poisoned".into()))?;
        let address = endpoints.get(&r.endpoint_id).ok_or_else(|| DriverError::NotFound("no endpoint".into()))?;
        let (host, peer) = (format!("th{}", &r.endpoint_id[..11]), format!("tp{}", &r.endpoint_id[..11]));
        let inside = if self.flaw == NetFlaw::WrongInterfaceName { "eth0".to_string() } else { r.interface_name };
        Ok(NetworkPlan {
            actions: vec![
                NetAction::CreateLink {
                    name: host.clone(),
                    link: LinkKind::Veth { peer: peer.clone() },
                    ns: Netns::Host,
                    mtu: None,
                    mac_address: None,
                },
                NetAction::SetMaster { name: host.clone(), master: self.bridge(&r.network_id) },
                NetAction::SetUp { link: host, ns: Netns::Host },
                NetAction::MoveToSandbox { name: peer, rename_to: inside.clone() },
                NetAction::AddAddress { link: inside.clone(), address: address.clone(), ns: Netns::Sandbox },
                NetAction::SetUp { link: inside, ns: Netns::Sandbox },
            ],
        })
    }
    fn leave(&self, _network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan> {
        let mut plan = NetworkPlan::default();
        if self.flaw != NetFlaw::LeaveForgetsVeth {
            plan.actions.push(NetAction::DeleteLink { name: format!("th{}", &endpoint_id[..11]), ns: Netns::Host });
        }
        Ok(plan)
    }
}

#[test]
fn the_network_kit_passes_a_good_driver_and_fails_each_flaw() {
    let kit = |flaw| failed_checks(check_network_driver(&Bridges { flaw, endpoints: Default::default() }));
    assert_eq!(kit(NetFlaw::None), Vec::<String>::new());
    let cases = [
        (NetFlaw::LongNames, "create-network gives a valid host-only plan"),
        (NetFlaw::SandboxStepInCreate, "create-network gives a valid host-only plan"),
        (NetFlaw::LeaveForgetsVeth, "leave removes every link join left on the host"),
        (NetFlaw::WrongInterfaceName, "join moves a link into the sandbox as the requested name, with the address"),
    ];
    for (flaw, check) in cases {
        let failed = kit(flaw);
        assert!(failed.iter().any(|c| c == check), "{flaw:?} should fail {check:?}, failed {failed:?}");
    }
    assert!(kit(NetFlaw::KeepsBridge).iter().any(|c| c.starts_with("delete-network")));
}

#[test]
fn the_dispatcher_refuses_bad_calls_without_panicking() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = DirVolumes { root: dir.path().into(), flaw: Flaw::None };
    let call = |method: &str, args: Value| {
        let args = match args {
            Value::Array(a) => a,
            other => vec![other],
        };
        dispatch::volume(&d, method, args)
    };
    assert!(matches!(call("volume-driver.nope", json!([])), Err(DriverError::Unsupported(_))));
    assert!(matches!(call("volume-driver.get", json!([])), Err(DriverError::InvalidArgument(_))));
    assert!(matches!(call("volume-driver.get", json!([1])), Err(DriverError::InvalidArgument(_))));
    assert!(matches!(call("volume-driver.list", json!(["extra"])), Err(DriverError::InvalidArgument(_))));
    assert!(matches!(call("volume-driver.create", json!([{"name": "v"}])), Err(DriverError::InvalidArgument(_))));
    let created = call("volume-driver.create", json!([{"name": "v", "options": {}}])).expect("create");
    assert_eq!(created["name"], "v");
    assert_eq!(call("volume-driver.remove", json!(["v"])).expect("remove"), Value::Null);
    assert_eq!(call("volume-driver.capabilities", json!([])).expect("caps"), json!({"scope": "local"}));
}

/// Panics on `get`, to show the dylib glue turns a panic into `STATUS_PANIC`.
struct Panicky;

impl VolumeDriver for Panicky {
    fn new(ctx: PluginContext) -> DriverResult<Self> {
        match ctx.data_dir.as_os_str().is_empty() {
            true => Err(DriverError::InvalidArgument("no data dir".into())),
            false => Ok(Panicky),
        }
    }
    fn create(&self, r: VolumeCreateRequest) -> DriverResult<VolumeInfo> {
        Ok(VolumeInfo { name: r.name, ..Default::default() })
    }
    fn remove(&self, _: &str) -> DriverResult<()> {
        Err(DriverError::NotFound("none".into()))
    }
    fn mount(&self, _: &str, _: &str) -> DriverResult<MountPlan> {
        Err(DriverError::NotFound("none".into()))
    }
    fn unmount(&self, _: &str, _: &str) -> DriverResult<()> {
        Ok(())
    }
    fn path(&self, _: &str) -> DriverResult<Option<String>> {
        Ok(None)
    }
    fn get(&self, name: &str) -> DriverResult<VolumeInfo> {
        panic!("get {name} is not implemented")
    }
    fn list(&self) -> DriverResult<Vec<VolumeInfo>> {
        Ok(Vec::new())
    }
}

#[test]
fn the_dylib_glue_answers_errors_and_catches_panics() {
    let d = native::descriptor::<native::AsVolume<Panicky>>();
    assert_eq!((d.abi_major, d.kinds), (abi::ABI_MAJOR, abi::KIND_VOLUME));
    let take = |buf: abi::Buffer| -> Value {
        // SAFETY: the glue filled `buf` from a Vec of this same library.
        let v =
            serde_json::from_slice(unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }).expect("answer is JSON");
        unsafe { (d.free)(buf) };
        v
    };
    let init = |config: &[u8]| {
        let mut out = abi::Buffer::empty();
        let handle = unsafe { (d.init)(config.as_ptr(), config.len(), &mut out) };
        (handle, out)
    };
    let (handle, out) = init(br#"{"data_dir":"","settings":{}}"#);
    assert!(handle.is_null());
    assert_eq!(take(out)["err"]["kind"], "invalid_argument");
    let (handle, out) = init(b"not json");
    assert!(handle.is_null() && take(out)["err"]["message"].as_str().unwrap_or("").contains("init config"));
    let (handle, _) = init(br#"{"data_dir":"/tmp/x","settings":{}}"#);
    assert!(!handle.is_null());
    let call = |method: &str, input: &str| {
        let mut out = abi::Buffer::empty();
        let status = unsafe { (d.call)(handle, method.as_ptr(), method.len(), input.as_ptr(), input.len(), &mut out) };
        (status, take(out))
    };
    assert_eq!(call("volume-driver.create", r#"[{"name":"v","options":{}}]"#).1["ok"]["name"], "v");
    assert_eq!(
        call("volume-driver.remove", r#"["v"]"#),
        (abi::STATUS_ERR, json!({"err": {"kind": "not_found", "message": "none"}}))
    );
    let (status, answer) = call("volume-driver.get", r#"["v"]"#);
    assert_eq!(status, abi::STATUS_PANIC);
    assert!(answer["err"]["message"].as_str().unwrap_or("").contains("get v is not implemented"), "{answer}");
    assert_eq!(call("volume-driver.list", "").0, abi::STATUS_OK, "the driver still serves after a panic");
}

/// Ways the test storage driver can break the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoreFlaw {
    None,
    IgnoresWhiteouts,
    ExistsAlways,
    RecreateIsFine,
    /// A writable layer's mount is its parent's own tree, as a driver that
    /// shared files with image layers and never copied them would give.
    SharesParentTree,
}

/// Full-copy layers under `layers/<id>`, each parent named in `parents/<id>`;
/// good unless given a flaw. Std only: it reads tars with the kit's reader.
struct CopyLayers {
    root: PathBuf,
    flaw: StoreFlaw,
}

/// What a path is, compared by content.
#[derive(PartialEq)]
enum Item {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

fn item(path: &Path) -> std::io::Result<Option<Item>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(match meta {
        m if m.is_dir() => Item::Dir,
        m if m.file_type().is_symlink() => Item::Link(std::fs::read_link(path)?),
        _ => Item::File(std::fs::read(path)?),
    }))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        match item(&src)? {
            Some(Item::Dir) => copy_tree(&src, &dst)?,
            Some(Item::Link(target)) => std::os::unix::fs::symlink(target, &dst)?,
            Some(Item::File(_)) => drop(std::fs::copy(&src, &dst)?),
            None => {}
        }
    }
    Ok(())
}

/// Changes of `new` against `old`, each directory before its contents.
fn diff_trees(new: &Path, old: Option<&Path>, rel: &str, out: &mut Vec<Change>) -> std::io::Result<()> {
    let mut names = std::collections::BTreeSet::new();
    for dir in std::iter::once(new).chain(old) {
        for entry in std::fs::read_dir(dir)? {
            names.insert(entry?.file_name());
        }
    }
    for name in names {
        let path = format!("{rel}/{}", name.to_string_lossy());
        let (n, o) = (item(&new.join(&name))?, old.map(|o| item(&o.join(&name))).transpose()?.flatten());
        let kind = match (&n, &o) {
            (Some(_), None) => ChangeKind::Added,
            (None, Some(_)) => ChangeKind::Deleted,
            (Some(a), Some(b)) if a != b => ChangeKind::Modified,
            _ => ChangeKind::Added,
        };
        if n.is_none() || o.is_none() || n != o {
            out.push(Change { path: path.clone(), kind });
        }
        if n == Some(Item::Dir) {
            let old_dir = old.map(|o| o.join(&name)).filter(|_| o == Some(Item::Dir));
            diff_trees(&new.join(&name), old_dir.as_deref(), &path, out)?;
        }
    }
    Ok(())
}

fn store_io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> DriverError {
    move |e| DriverError::io(what, e)
}

impl CopyLayers {
    fn new_in(root: &Path, flaw: StoreFlaw) -> Self {
        for sub in ["layers", "parents"] {
            std::fs::create_dir_all(root.join(sub)).expect("driver dirs");
        }
        CopyLayers { root: root.into(), flaw }
    }
    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("layers").join(id)
    }
    fn existing(&self, id: &str) -> DriverResult<PathBuf> {
        let valid = !id.is_empty()
            && !id.starts_with('.')
            && id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(DriverError::InvalidArgument(format!("bad layer id {id:?}")));
        }
        match self.dir(id).is_dir() {
            true => Ok(self.dir(id)),
            false => Err(DriverError::NotFound(format!("no layer {id}"))),
        }
    }
    fn parent(&self, id: &str) -> Option<PathBuf> {
        let parent = std::fs::read_to_string(self.root.join("parents").join(id)).ok()?;
        Some(self.dir(parent.trim())).filter(|_| !parent.trim().is_empty())
    }
    fn diff(&self, id: &str) -> DriverResult<(PathBuf, Vec<Change>)> {
        let dir = self.existing(id)?;
        let mut out = Vec::new();
        diff_trees(&dir, self.parent(id).as_deref(), "", &mut out).map_err(store_io("diff"))?;
        Ok((dir, out))
    }
}

impl StorageDriver for CopyLayers {
    fn new(ctx: PluginContext) -> DriverResult<Self> {
        Ok(CopyLayers::new_in(&ctx.data_dir, StoreFlaw::None))
    }
    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        match self.existing(id) {
            Ok(_) if self.flaw == StoreFlaw::RecreateIsFine => return Ok(()),
            Ok(_) => return Err(DriverError::Conflict(format!("layer {id} exists"))),
            Err(DriverError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        match parent {
            Some(p) => copy_tree(&self.existing(p)?, &self.dir(id)).map_err(store_io("copy"))?,
            None => std::fs::create_dir(self.dir(id)).map_err(store_io("create"))?,
        }
        std::fs::write(self.root.join("parents").join(id), parent.unwrap_or("")).map_err(store_io("parent"))
    }
    fn apply_diff(&self, id: &str, diff: &mut dyn std::io::Read) -> DriverResult<u64> {
        let dir = self.existing(id)?;
        let mut bytes = Vec::new();
        diff.read_to_end(&mut bytes).map_err(store_io("read"))?;
        let entries = conformance::read_tar(&bytes).map_err(DriverError::InvalidArgument)?;
        let mut written = 0;
        for e in entries {
            if e.path.split('/').any(|c| c == "..") {
                return Err(DriverError::InvalidArgument(format!("{} climbs out", e.path)));
            }
            let (parent, name) = e.path.rsplit_once('/').unwrap_or(("", &e.path));
            let path = dir.join(&e.path);
            let _ = std::fs::create_dir_all(dir.join(parent));
            if let Some(hidden) = name.strip_prefix(".wh.") {
                if self.flaw != StoreFlaw::IgnoresWhiteouts {
                    let target = dir.join(parent).join(hidden);
                    let _ = std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target));
                }
                continue;
            }
            if e.kind != b'5' {
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
            match e.kind {
                b'5' => std::fs::create_dir_all(&path).map_err(store_io(&e.path))?,
                b'2' => std::os::unix::fs::symlink(&e.link, &path).map_err(store_io(&e.path))?,
                _ => {
                    std::fs::write(&path, &e.data).map_err(store_io(&e.path))?;
                    written += e.data.len() as u64;
                }
            }
        }
        Ok(written)
    }
    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan> {
        let mut dir = self.existing(id)?;
        if writable && self.flaw == StoreFlaw::SharesParentTree {
            dir = self.parent(id).unwrap_or(dir);
        }
        Ok(MountPlan { spec: MountSpec::Bind { source: dir, readonly: !writable } })
    }
    fn export_diff(&self, id: &str, out: &mut dyn std::io::Write) -> DriverResult<()> {
        let (dir, changes) = self.diff(id)?;
        let mut tar = conformance::Ustar::new(0, 0);
        for c in changes {
            let rel = c.path.trim_start_matches('/');
            let added = match (c.kind, item(&dir.join(rel)).map_err(store_io(rel))?) {
                (ChangeKind::Deleted, _) | (_, None) => {
                    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
                    tar.file(&format!("{parent}/.wh.{name}"), 0o644, b"")
                }
                (_, Some(Item::Dir)) => tar.dir(rel, 0o755),
                (_, Some(Item::File(data))) => tar.file(rel, 0o644, &data),
                (_, Some(Item::Link(target))) => tar.symlink(rel, &target.display().to_string()),
            };
            added.map_err(DriverError::Failed)?;
        }
        out.write_all(&tar.finish()).map_err(store_io("export"))
    }
    fn changes(&self, id: &str) -> DriverResult<Vec<Change>> {
        self.diff(id).map(|(_, changes)| changes)
    }
    fn usage(&self, id: &str) -> DriverResult<u64> {
        let (dir, changes) = self.diff(id)?;
        let size = |c: &Change| std::fs::symlink_metadata(dir.join(c.path.trim_start_matches('/'))).map(|m| m.len());
        Ok(changes.iter().filter(|c| c.kind != ChangeKind::Deleted).filter_map(|c| size(c).ok()).sum())
    }
    fn exists(&self, id: &str) -> DriverResult<bool> {
        Ok(self.flaw == StoreFlaw::ExistsAlways || self.existing(id).is_ok())
    }
    fn remove(&self, id: &str) -> DriverResult<()> {
        std::fs::remove_dir_all(self.existing(id)?).map_err(store_io("remove"))?;
        let _ = std::fs::remove_file(self.root.join("parents").join(id));
        Ok(())
    }
    fn list(&self) -> DriverResult<Vec<String>> {
        let entries = std::fs::read_dir(self.root.join("layers")).map_err(store_io("list"))?;
        Ok(entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
    }
}

fn storage_kit(flaw: StoreFlaw) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    failed_checks(check_storage_driver(&CopyLayers::new_in(dir.path(), flaw), dir.path()))
}

#[test]
fn the_storage_kit_passes_a_good_driver_and_fails_each_flaw() {
    assert_eq!(storage_kit(StoreFlaw::None), Vec::<String>::new());
    let cases = [
        (StoreFlaw::IgnoresWhiteouts, "a child layer shows its parent with its own diff applied"),
        (StoreFlaw::IgnoresWhiteouts, "changes of a child are exactly its additions, modifications and deletions"),
        (StoreFlaw::ExistsAlways, "exists of an unknown layer is false"),
        (StoreFlaw::RecreateIsFine, "create of an existing id is Conflict"),
        (StoreFlaw::SharesParentTree, "writing through the writable layer changes no image layer"),
    ];
    for (flaw, check) in cases {
        let failed = storage_kit(flaw);
        assert!(failed.iter().any(|c| c == check), "{flaw:?} should fail {check:?}, failed {failed:?}");
    }
}

#[test]
fn the_storage_kit_says_which_promise_broke_and_how() {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = CopyLayers::new_in(dir.path(), StoreFlaw::IgnoresWhiteouts);
    let text = check_storage_driver(&driver, dir.path()).expect_err("whiteouts are ignored").to_string();
    assert!(
        text.contains("a child layer shows its parent with its own diff applied")
            && text.contains("/etc/gone is a file holding \"whited out by the child\\n\", want missing"),
        "{text}"
    );
    // The kit cleans up after itself even when checks fail.
    assert_eq!(driver.list().expect("list"), Vec::<String>::new());
}

#[test]
fn the_kits_tar_writer_and_reader_agree() {
    let mut tar = conformance::Ustar::new(1000, 1000);
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
    tar.dir("etc", 0o755).expect("dir");
    tar.file(&long, 0o600, b"data").expect("long name in the prefix field");
    tar.symlink("etc/l", "../x").expect("symlink");
    assert!(tar.file(&"x".repeat(300), 0o600, b"").is_err(), "no prefix split fits");
    let entries = conformance::read_tar(&tar.finish()).expect("reads back");
    let got: Vec<_> = entries.iter().map(|e| (e.path.as_str(), e.kind, e.data.as_slice(), e.link.as_str())).collect();
    assert_eq!(got, [("etc", b'5', &b""[..], ""), (long.as_str(), b'0', &b"data"[..], ""), ("etc/l", b'2', &b""[..], "../x")]);
    let mut bad = conformance::Ustar::new(0, 0);
    bad.file("f", 0o644, b"x").expect("file");
    let mut bytes = bad.finish();
    bytes[0] = b'g';
    assert!(conformance::read_tar(&bytes).expect_err("bad checksum").contains("checksum"));
}

