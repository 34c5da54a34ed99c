//! The SDK's own tests: the JSON the host relies on, the dispatcher, and a
//! small driver with switchable flaws showing that each promise the
//! conformance kit checks can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::conformance::{check_network_driver, check_volume_driver, Failures};
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
        VolumeInfo { name: name.into(), mountpoint: Some(self.dir(name).display().to_string()), ..Default::default() }
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
        Ok(MountPlan { spec: MountSpec::Bind { source, readonly: false } })
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
