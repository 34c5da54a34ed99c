//! The conformance kit: runs a driver through the contract and says which
//! promises it breaks. Run it (a) on an author's own type in its `#[test]`s
//! — every `VolumeDriver`/`NetworkDriver`/`StorageDriver` is a
//! `ConformanceVolume`/`ConformanceNetwork`/`ConformanceStorage`, and
//! `FreshEachCall` rebuilds a volume or network driver for every call the
//! way the WASM host does — and (b) on a plugin loaded by the host: the host
//! wraps a loaded component or dylib in an adapter that implements the
//! object-safe traits below and hands it to the same functions.
//!
//! The kit only calls the driver; it never executes a plan (it never
//! mounts: it reads a storage driver's bind and overlay sources as plain
//! directories). It creates its own uniquely named objects and removes them,
//! so it can run against a data dir that holds other volumes or layers.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::*;

/// A volume driver as the kit sees it: `VolumeDriver` minus `new`, every call
/// fallible (a loaded plugin can trap or time out on any call). Object safe.
pub trait ConformanceVolume {
    /// `volume-driver.capabilities`.
    fn capabilities(&self) -> DriverResult<VolumeCapabilities>;
    /// `volume-driver.create`.
    fn create(&self, request: VolumeCreateRequest) -> DriverResult<VolumeInfo>;
    /// `volume-driver.remove`.
    fn remove(&self, name: &str) -> DriverResult<()>;
    /// `volume-driver.mount`, the plan exactly as the driver returned it.
    fn mount(&self, name: &str, caller_id: &str) -> DriverResult<MountPlan>;
    /// `volume-driver.unmount`.
    fn unmount(&self, name: &str, caller_id: &str) -> DriverResult<()>;
    /// `volume-driver.path`.
    fn path(&self, name: &str) -> DriverResult<Option<String>>;
    /// `volume-driver.get`.
    fn get(&self, name: &str) -> DriverResult<VolumeInfo>;
    /// `volume-driver.list`.
    fn list(&self) -> DriverResult<Vec<VolumeInfo>>;
}

/// A network driver as the kit sees it: `NetworkDriver` minus `new`, every
/// call fallible. Object safe.
pub trait ConformanceNetwork {
    /// `network-driver.capabilities`.
    fn capabilities(&self) -> DriverResult<NetworkCapabilities>;
    /// `network-driver.create-network`.
    fn create_network(&self, request: NetworkCreateRequest) -> DriverResult<NetworkPlan>;
    /// `network-driver.delete-network`.
    fn delete_network(&self, network_id: &str) -> DriverResult<NetworkPlan>;
    /// `network-driver.create-endpoint`.
    fn create_endpoint(&self, request: EndpointCreateRequest) -> DriverResult<EndpointInfo>;
    /// `network-driver.delete-endpoint`.
    fn delete_endpoint(&self, network_id: &str, endpoint_id: &str) -> DriverResult<()>;
    /// `network-driver.join`.
    fn join(&self, request: JoinRequest) -> DriverResult<NetworkPlan>;
    /// `network-driver.leave`.
    fn leave(&self, network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan>;
}

/// A storage driver as the kit sees it: `StorageDriver` minus `new`, every
/// call fallible. Object safe.
pub trait ConformanceStorage {
    /// `storage-driver.status`.
    fn status(&self) -> DriverResult<Vec<(String, String)>>;
    /// `storage-driver.create`.
    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()>;
    /// `storage-driver.create-read-write`.
    fn create_read_write(&self, id: &str, parent: Option<&str>) -> DriverResult<()>;
    /// `storage-driver.apply-diff`: reads the layer tar from `diff`.
    fn apply_diff(&self, id: &str, diff: &mut dyn Read) -> DriverResult<u64>;
    /// `storage-driver.mount-plan`, the plan exactly as the driver returned it.
    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan>;
    /// `storage-driver.export-diff`: writes the layer tar to `out`.
    fn export_diff(&self, id: &str, out: &mut dyn Write) -> DriverResult<()>;
    /// `storage-driver.changes`.
    fn changes(&self, id: &str) -> DriverResult<Vec<Change>>;
    /// `storage-driver.usage`.
    fn usage(&self, id: &str) -> DriverResult<u64>;
    /// `storage-driver.exists`.
    fn exists(&self, id: &str) -> DriverResult<bool>;
    /// `storage-driver.remove`.
    fn remove(&self, id: &str) -> DriverResult<()>;
    /// `storage-driver.list`.
    fn list(&self) -> DriverResult<Vec<String>>;
}

impl<T: StorageDriver + ?Sized> ConformanceStorage for T {
    fn status(&self) -> DriverResult<Vec<(String, String)>> {
        Ok(StorageDriver::status(self))
    }
    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        StorageDriver::create(self, id, parent)
    }
    fn create_read_write(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        StorageDriver::create_read_write(self, id, parent)
    }
    fn apply_diff(&self, id: &str, diff: &mut dyn Read) -> DriverResult<u64> {
        StorageDriver::apply_diff(self, id, diff)
    }
    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan> {
        StorageDriver::mount_plan(self, id, writable)
    }
    fn export_diff(&self, id: &str, out: &mut dyn Write) -> DriverResult<()> {
        StorageDriver::export_diff(self, id, out)
    }
    fn changes(&self, id: &str) -> DriverResult<Vec<Change>> {
        StorageDriver::changes(self, id)
    }
    fn usage(&self, id: &str) -> DriverResult<u64> {
        StorageDriver::usage(self, id)
    }
    fn exists(&self, id: &str) -> DriverResult<bool> {
        StorageDriver::exists(self, id)
    }
    fn remove(&self, id: &str) -> DriverResult<()> {
        StorageDriver::remove(self, id)
    }
    fn list(&self) -> DriverResult<Vec<String>> {
        StorageDriver::list(self)
    }
}

/// The methods of both kit traits, each calling `$driver` (rebuilt per call if it is `T::new(...)?`).
macro_rules! delegate {
    (volume, $s:ident => $driver:expr) => {
        fn capabilities(&$s) -> DriverResult<VolumeCapabilities> {
            Ok(VolumeDriver::capabilities(&$driver))
        }
        fn create(&$s, request: VolumeCreateRequest) -> DriverResult<VolumeInfo> {
            VolumeDriver::create(&$driver, request)
        }
        fn remove(&$s, name: &str) -> DriverResult<()> {
            VolumeDriver::remove(&$driver, name)
        }
        fn mount(&$s, name: &str, caller_id: &str) -> DriverResult<MountPlan> {
            VolumeDriver::mount(&$driver, name, caller_id)
        }
        fn unmount(&$s, name: &str, caller_id: &str) -> DriverResult<()> {
            VolumeDriver::unmount(&$driver, name, caller_id)
        }
        fn path(&$s, name: &str) -> DriverResult<Option<String>> {
            VolumeDriver::path(&$driver, name)
        }
        fn get(&$s, name: &str) -> DriverResult<VolumeInfo> {
            VolumeDriver::get(&$driver, name)
        }
        fn list(&$s) -> DriverResult<Vec<VolumeInfo>> {
            VolumeDriver::list(&$driver)
        }
    };
    (network, $s:ident => $driver:expr) => {
        fn capabilities(&$s) -> DriverResult<NetworkCapabilities> {
            Ok(NetworkDriver::capabilities(&$driver))
        }
        fn create_network(&$s, request: NetworkCreateRequest) -> DriverResult<NetworkPlan> {
            NetworkDriver::create_network(&$driver, request)
        }
        fn delete_network(&$s, network_id: &str) -> DriverResult<NetworkPlan> {
            NetworkDriver::delete_network(&$driver, network_id)
        }
        fn create_endpoint(&$s, request: EndpointCreateRequest) -> DriverResult<EndpointInfo> {
            NetworkDriver::create_endpoint(&$driver, request)
        }
        fn delete_endpoint(&$s, network_id: &str, endpoint_id: &str) -> DriverResult<()> {
            NetworkDriver::delete_endpoint(&$driver, network_id, endpoint_id)
        }
        fn join(&$s, request: JoinRequest) -> DriverResult<NetworkPlan> {
            NetworkDriver::join(&$driver, request)
        }
        fn leave(&$s, network_id: &str, endpoint_id: &str) -> DriverResult<NetworkPlan> {
            NetworkDriver::leave(&$driver, network_id, endpoint_id)
        }
    };
}

impl<T: VolumeDriver + ?Sized> ConformanceVolume for T {
    delegate!(volume, self => *self);
}

impl<T: NetworkDriver + ?Sized> ConformanceNetwork for T {
    delegate!(network, self => *self);
}

/// A driver type rebuilt with `T::new` for every call, as the WASM host
/// runs it: a driver that keeps state only in memory fails the kit this way.
pub struct FreshEachCall<T> {
    ctx: PluginContext,
    driver: PhantomData<fn() -> T>,
}

impl<T> FreshEachCall<T> {
    /// Each call builds `T` from a clone of `ctx`.
    pub fn new(ctx: PluginContext) -> Self {
        FreshEachCall { ctx, driver: PhantomData }
    }
}

impl<T: VolumeDriver> ConformanceVolume for FreshEachCall<T> {
    delegate!(volume, self => T::new(self.ctx.clone())?);
}

impl<T: NetworkDriver> ConformanceNetwork for FreshEachCall<T> {
    delegate!(network, self => T::new(self.ctx.clone())?);
}

/// The checks a driver passed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Names of the passed checks, in the order they ran.
    pub passed: Vec<String>,
}

/// One broken promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The check's name.
    pub check: String,
    /// What the driver did instead.
    pub problem: String,
}

/// The checks a driver failed (and the ones it passed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// Every failed check.
    pub failed: Vec<Failure>,
    /// Names of the passed checks.
    pub passed: Vec<String>,
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} conformance check(s) failed ({} passed):", self.failed.len(), self.passed.len())?;
        for failure in &self.failed {
            writeln!(f, "  - {}: {}", failure.check, failure.problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for Failures {}

/// Runs the volume checks on `driver`, whose data dir is `data_dir` both in
/// its plans and on this machine (a driver built directly, or a dylib).
pub fn check_volume_driver(driver: &dyn ConformanceVolume, data_dir: &Path) -> Result<Report, Failures> {
    VolumeKit::new(data_dir).run(driver)
}

/// Runs the network checks on `driver`.
pub fn check_network_driver(driver: &dyn ConformanceNetwork) -> Result<Report, Failures> {
    let mut run = Run::default();
    network_checks(driver, &mut run, &unique("kit"));
    run.finish()
}

/// Runs the storage checks on `driver`, whose data dir is `data_dir` both in
/// its plans and on this machine (a driver built directly, or a dylib).
/// The kit reads the trees its plans name but never mounts them.
pub fn check_storage_driver(driver: &dyn ConformanceStorage, data_dir: &Path) -> Result<Report, Failures> {
    let mut run = Run::default();
    storage::checks(driver, data_dir, &mut run, &unique("kit"));
    run.finish()
}

/// The volume checks, for drivers whose plans name another view of the data dir.
#[derive(Clone, Debug)]
pub struct VolumeKit {
    /// The data dir as the driver's plans and paths name it (`/data` for a component).
    pub data_dir: PathBuf,
    /// The same dir as this process reaches it; enables the checks that a
    /// volume's data survives a second create and goes with `remove`.
    pub local_data_dir: Option<PathBuf>,
}

impl VolumeKit {
    /// A kit for a driver whose plans name `data_dir` as this process sees it.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        VolumeKit { local_data_dir: Some(data_dir.clone()), data_dir }
    }

    /// A kit for a component: plans name `/data`, which is `local` here (if known).
    pub fn component(local: Option<PathBuf>) -> Self {
        VolumeKit { data_dir: PathBuf::from("/data"), local_data_dir: local }
    }

    /// Runs every volume check on `driver`.
    pub fn run(&self, driver: &dyn ConformanceVolume) -> Result<Report, Failures> {
        let mut run = Run::default();
        self.checks(driver, &mut run, &unique("kit"));
        run.finish()
    }

    /// The plan's path as this process reaches it.
    fn local(&self, planned: &Path) -> Option<PathBuf> {
        let rest = planned.strip_prefix(&self.data_dir).ok()?;
        Some(self.local_data_dir.as_ref()?.join(rest))
    }

    fn checks(&self, d: &dyn ConformanceVolume, run: &mut Run, prefix: &str) {
        let name = format!("{prefix}-vol");
        let missing = format!("{prefix}-missing");
        let caller = "c0ffee".repeat(10) + "c0ff";

        run.check("capabilities answer", || d.capabilities().map(drop).map_err(said));
        run.check("get of an unknown volume is NotFound", || is(d.get(&missing), NOT_FOUND));
        run.check("remove of an unknown volume is NotFound", || is(d.remove(&missing), NOT_FOUND));
        run.check("mount of an unknown volume is NotFound", || is(d.mount(&missing, &caller), NOT_FOUND));
        run.check("path of an unknown volume is NotFound", || is(d.path(&missing), NOT_FOUND));
        run.check("names that are not Docker volume names are InvalidArgument", || {
            let mut problems = Vec::new();
            for bad in ["", ".", "..", "../escape", "a/b", "/abs", "-dash", "a\nb"] {
                // A driver that wrongly accepted the name is never asked to
                // remove it: one that accepts `..` may well remove its parent.
                let got = d.create(VolumeCreateRequest { name: bad.into(), options: Default::default() });
                if let Err(p) = is(got, INVALID) {
                    problems.push(format!("{bad:?}: {p}"));
                }
            }
            joined(problems)
        });
        run.check("an unknown option is InvalidArgument and creates nothing", || {
            let options = [("berth-conformance-no-such-option".to_string(), "1".to_string())].into();
            let bogus = format!("{prefix}-opt");
            let got = d.create(VolumeCreateRequest { name: bogus.clone(), options });
            let leftover = d.get(&bogus).is_ok();
            if leftover {
                let _ = d.remove(&bogus);
            }
            is(got, INVALID)?;
            if leftover {
                return Err("the refused volume exists anyway".into());
            }
            Ok(())
        });

        let created = run.check("create answers with the volume", || {
            let info =
                d.create(VolumeCreateRequest { name: name.clone(), options: Default::default() }).map_err(said)?;
            same_name(&info, &name)?;
            self.mountpoint_ok(&info)
        });
        if !created {
            return;
        }
        run.check("get finds the created volume", || {
            let info = d.get(&name).map_err(said)?;
            same_name(&info, &name)?;
            self.mountpoint_ok(&info)
        });
        run.check("list holds the created volume once", || {
            let all = d.list().map_err(said)?;
            match all.iter().filter(|v| v.name == name).count() {
                1 => Ok(()),
                n => Err(format!("listed {n} times")),
            }
        });
        run.check("path lies under the data dir", || match d.path(&name).map_err(said)? {
            Some(p) => under(Path::new(&p), &self.data_dir),
            None => Ok(()),
        });
        let mut plan = None;
        run.check("mount gives a valid plan", || {
            let p = d.mount(&name, &caller).map_err(said)?;
            check_mount_plan(&p, &self.data_dir)?;
            plan = Some(p);
            Ok(())
        });
        let bind = match plan {
            Some(MountPlan { spec: MountSpec::Bind { source, .. } }) => self.local(&source),
            _ => None,
        };
        let marker = bind.as_ref().map(|dir| dir.join("berth-conformance-marker"));
        if let Some(marker) = &marker {
            run.check("the mount source is a directory this process can write", || {
                std::fs::write(marker, b"kept").map_err(|e| format!("{}: {e}", marker.display()))
            });
        }
        run.check("creating the same name again is idempotent or Conflict, and loses nothing", || {
            match d.create(VolumeCreateRequest { name: name.clone(), options: Default::default() }) {
                Ok(info) => same_name(&info, &name)?,
                Err(DriverError::Conflict(_)) => {}
                Err(e) => return Err(format!("{} (want success or Conflict)", said(e))),
            }
            d.get(&name).map_err(|e| format!("get afterwards: {}", said(e)))?;
            match &marker {
                Some(m) if std::fs::read(m).ok().as_deref() != Some(b"kept".as_slice()) => {
                    Err(format!("{} is gone: the volume's data was lost", m.display()))
                }
                _ => Ok(()),
            }
        });
        run.check("a second caller gets a valid plan too", || {
            check_mount_plan(&d.mount(&name, "second-caller").map_err(said)?, &self.data_dir)
        });
        run.check("unmount succeeds for each caller", || {
            d.unmount(&name, &caller).map_err(said)?;
            d.unmount(&name, "second-caller").map_err(said)
        });
        run.check("remove succeeds", || d.remove(&name).map_err(said));
        run.check("get after remove is NotFound", || is(d.get(&name), NOT_FOUND));
        run.check("mount after remove is NotFound", || is(d.mount(&name, &caller), NOT_FOUND));
        run.check("list after remove does not hold it", || {
            match d.list().map_err(said)?.iter().any(|v| v.name == name) {
                true => Err("still listed".into()),
                false => Ok(()),
            }
        });
        if let Some(dir) = &bind {
            run.check("remove deletes the volume's data", || match dir.exists() {
                true => Err(format!("{} still exists", dir.display())),
                false => Ok(()),
            });
        }
    }

    fn mountpoint_ok(&self, info: &VolumeInfo) -> Result<(), String> {
        match &info.mountpoint {
            Some(p) => under(p, &self.data_dir).map_err(|e| format!("mountpoint: {e}")),
            None => Ok(()),
        }
    }
}

/// Checks one mount plan: every path absolute, without `.`/`..`, strictly under `data_dir`.
pub fn check_mount_plan(plan: &MountPlan, data_dir: &Path) -> Result<(), String> {
    match &plan.spec {
        MountSpec::Bind { source, .. } => under(source, data_dir),
        MountSpec::Overlay { lower, upper, work } => {
            if lower.is_empty() {
                return Err("overlay without lower dirs".into());
            }
            if upper.is_some() != work.is_some() {
                return Err("overlay upper and work go together".into());
            }
            lower.iter().chain(upper).chain(work).try_for_each(|p| under(p, data_dir))
        }
        MountSpec::Tmpfs { .. } => Ok(()),
        MountSpec::Filesystem { fstype, .. } if fstype.is_empty() => Err("filesystem without a type".into()),
        MountSpec::Filesystem { .. } => Ok(()),
    }
}

/// Which call a network plan answers; each may do different things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanOf {
    /// create-network or delete-network: host namespace only.
    Network,
    /// join or leave: may also act in the sandbox.
    Endpoint,
}

/// Checks one network plan on its own: names fit the kernel, addresses
/// parse, sandbox steps only where a sandbox exists and only on links moved
/// there (or `lo`).
pub fn check_network_plan(plan: &NetworkPlan, of: PlanOf) -> Result<(), String> {
    let mut in_sandbox: BTreeSet<&str> = ["lo"].into();
    for (i, action) in plan.actions.iter().enumerate() {
        let step = |e: String| format!("step {i} ({}): {e}", op_name(action));
        let sandbox = |ns: &Netns, link: &str| match (ns, of) {
            (Netns::Host, _) => Ok(()),
            (Netns::Sandbox, PlanOf::Network) => Err("a sandbox step outside join/leave".to_string()),
            (Netns::Sandbox, PlanOf::Endpoint) if !in_sandbox.contains(link) => {
                Err(format!("{link:?} is not in the sandbox (move it there first)"))
            }
            (Netns::Sandbox, PlanOf::Endpoint) => Ok(()),
        };
        match action {
            NetAction::CreateLink { name, link, ns, mtu, mac_address } => {
                ifname(name).map_err(step)?;
                if *ns == Netns::Sandbox {
                    return Err(step("links are created on the host and moved".into()));
                }
                if let Some(m) = mac_address {
                    mac(m).map_err(step)?;
                }
                if matches!(mtu, Some(m) if *m < 68) {
                    return Err(step("mtu below 68".into()));
                }
                match link {
                    LinkKind::Bridge => Ok(()),
                    LinkKind::Veth { peer } => ifname(peer),
                    LinkKind::Macvlan { parent, .. } | LinkKind::Ipvlan { parent, .. } => ifname(parent),
                    LinkKind::Vlan { parent, id } if *id == 0 || *id > 4094 => {
                        ifname(parent).and(Err(format!("vlan id {id} out of 1..=4094")))
                    }
                    LinkKind::Vlan { parent, .. } => ifname(parent),
                    // `remote` is an address by its type: a plan with a bad one does not decode.
                    LinkKind::Vxlan { dev, .. } => dev.iter().try_for_each(|d| ifname(d)),
                }
                .map_err(step)?;
            }
            NetAction::DeleteLink { name, ns } => ifname(name).and_then(|_| sandbox(ns, name)).map_err(step)?,
            NetAction::MoveToSandbox { name, rename_to } => {
                if of == PlanOf::Network {
                    return Err(step("a sandbox step outside join/leave".into()));
                }
                ifname(name).and_then(|_| ifname(rename_to)).map_err(step)?;
                in_sandbox.insert(rename_to);
            }
            NetAction::SetMaster { name, master } => ifname(name).and_then(|_| ifname(master)).map_err(step)?,
            NetAction::AddAddress { link, address, ns } => {
                ifname(link).and_then(|_| cidr(address)).and_then(|_| sandbox(ns, link)).map_err(step)?
            }
            NetAction::SetUp { link, ns } => ifname(link).and_then(|_| sandbox(ns, link)).map_err(step)?,
            NetAction::AddRoute { destination, gateway, link, ns } => {
                if destination != "default" {
                    cidr(destination).map_err(step)?;
                }
                gateway.iter().try_for_each(|g| ip(g).map(drop)).map_err(step)?;
                if gateway.is_none() && link.is_none() {
                    return Err(step("a route needs a gateway or a link".into()));
                }
                match link {
                    Some(l) => ifname(l).and_then(|_| sandbox(ns, l)).map_err(step)?,
                    None => sandbox(ns, "lo").map_err(step)?,
                }
            }
            NetAction::Sysctl { key, value, ns } => {
                let bad = key.is_empty()
                    || value.is_empty()
                    || key.split(['.', '/']).any(|part| part.is_empty() || part == "..");
                if bad {
                    return Err(step(format!("bad sysctl {key:?}={value:?}")));
                }
                if *ns == Netns::Sandbox && of == PlanOf::Network {
                    return Err(step("a sandbox step outside join/leave".into()));
                }
            }
            NetAction::AddFirewallRule { rule } | NetAction::DeleteFirewallRule { rule } => {
                firewall_rule(rule).map_err(step)?
            }
        }
    }
    Ok(())
}

fn network_checks(d: &dyn ConformanceNetwork, run: &mut Run, prefix: &str) {
    // Ids as the engine makes them: 64 hex digits, distinct in their first 12.
    let hex = |seed: &str| {
        let digits: String = seed.bytes().map(|b| format!("{:02x}", b)).collect();
        format!("{:0<64}", &digits[..digits.len().min(64)])
    };
    let (net_a, net_b) = (hex(&format!("a{prefix}")), hex(&format!("b{prefix}")));
    let (ep_a, ep_missing) = (hex(&format!("ea{prefix}")), hex(&format!("ez{prefix}")));
    let net = |id: &str, subnet: &str, gateway: &str| NetworkCreateRequest {
        network_id: id.into(),
        name: format!("kit-{}", &id[..8]),
        ipv4: vec![IpamPool { subnet: subnet.into(), ip_range: None, gateway: Some(gateway.into()) }],
        ..Default::default()
    };
    let endpoint = |address: &str| EndpointCreateRequest {
        network_id: net_a.clone(),
        endpoint_id: ep_a.clone(),
        address: Some(address.into()),
        mac_address: Some("02:42:0a:e7:00:02".into()),
        ..Default::default()
    };
    let join = |endpoint_id: &str| JoinRequest {
        network_id: net_a.clone(),
        endpoint_id: endpoint_id.into(),
        sandbox_key: "/run/berth/netns/conformance".into(),
        interface_name: "eth7".into(),
        options: Default::default(),
    };

    run.check("capabilities answer", || d.capabilities().map(drop).map_err(said));
    let mut plan_a = None;
    let created = run.check("create-network gives a valid host-only plan", || {
        let p = d.create_network(net(&net_a, "10.231.0.0/24", "10.231.0.1")).map_err(said)?;
        check_network_plan(&p, PlanOf::Network)?;
        plan_a = Some(p);
        Ok(())
    });
    let Some(plan_a) = plan_a.filter(|_| created) else { return };
    let mut plan_b = None;
    run.check("a second network's links do not clash with the first's", || {
        let p = d.create_network(net(&net_b, "10.232.0.0/24", "10.232.0.1")).map_err(said)?;
        check_network_plan(&p, PlanOf::Network)?;
        let clash: Vec<_> = created_links(&p).intersection(&created_links(&plan_a)).cloned().collect();
        plan_b = Some(p);
        match clash.is_empty() {
            true => Ok(()),
            false => Err(format!("both create {clash:?}")),
        }
    });
    run.check("create-endpoint with an address that does not parse is InvalidArgument", || {
        is(d.create_endpoint(endpoint("10.231.0.300/24")), INVALID)
    });
    let mut address = None;
    let made = run.check("create-endpoint keeps the address the engine chose", || {
        let info = d.create_endpoint(endpoint("10.231.0.2/24")).map_err(said)?;
        match info.address.as_deref() {
            None | Some("10.231.0.2/24") => {}
            Some(other) => return Err(format!("answered {other}, asked for 10.231.0.2/24")),
        }
        info.address_v6.iter().try_for_each(|a| cidr(a))?;
        info.mac_address.iter().try_for_each(|m| mac(m))?;
        address = Some(info.address.unwrap_or_else(|| "10.231.0.2/24".into()));
        Ok(())
    });
    run.check("join of an unknown endpoint is NotFound", || is(d.join(join(&ep_missing)), NOT_FOUND));
    let mut joined_plan = None;
    if made {
        run.check("join moves a link into the sandbox as the requested name, with the address", || {
            let p = d.join(join(&ep_a)).map_err(said)?;
            check_network_plan(&p, PlanOf::Endpoint)?;
            let moved = p.actions.iter().find_map(|a| match a {
                NetAction::MoveToSandbox { name, rename_to } if rename_to == "eth7" => Some(name.clone()),
                _ => None,
            });
            let moved = moved.ok_or("no MoveToSandbox renaming a link to eth7")?;
            if !created_links(&p).contains(&moved) {
                return Err(format!("moves {moved:?}, which the plan did not create"));
            }
            let configured = NetAction::AddAddress {
                link: "eth7".into(),
                address: address.clone().unwrap_or_default(),
                ns: Netns::Sandbox,
            };
            if !p.actions.contains(&configured) {
                return Err(format!("no {configured:?}"));
            }
            joined_plan = Some(p);
            Ok(())
        });
    }
    if let Some(joined) = &joined_plan {
        run.check("leave removes every link join left on the host", || {
            let p = d.leave(&net_a, &ep_a).map_err(said)?;
            check_network_plan(&p, PlanOf::Endpoint)?;
            let left = host_links_after(joined);
            let deleted = deleted_links(&p, Netns::Host);
            let kept: Vec<_> = left
                .iter()
                .filter(|(name, peer)| !deleted.contains(name) && !peer.as_ref().is_some_and(|p| deleted.contains(p)))
                .map(|(name, _)| name.clone())
                .collect();
            match kept.is_empty() {
                true => Ok(()),
                false => Err(format!("leaves {kept:?} on the host")),
            }
        });
    }
    if made {
        run.check("delete-endpoint succeeds", || d.delete_endpoint(&net_a, &ep_a).map_err(said));
    }
    for (id, plan) in [(&net_a, Some(&plan_a)), (&net_b, plan_b.as_ref())] {
        let Some(plan) = plan else { continue };
        run.check(&format!("delete-network {} undoes create-network", &id[..12]), || {
            let p = d.delete_network(id).map_err(said)?;
            check_network_plan(&p, PlanOf::Network)?;
            let deleted = deleted_links(&p, Netns::Host);
            let kept: Vec<_> = created_links(plan).into_iter().filter(|l| !deleted.contains(l)).collect();
            if !kept.is_empty() {
                return Err(format!("does not delete {kept:?}"));
            }
            for action in &plan.actions {
                if let NetAction::AddFirewallRule { rule } = action {
                    if !p.actions.contains(&NetAction::DeleteFirewallRule { rule: rule.clone() }) {
                        return Err(format!("keeps firewall rule {rule:?}"));
                    }
                }
            }
            Ok(())
        });
    }
}

/// Every link a plan creates (both ends of a veth).
fn created_links(plan: &NetworkPlan) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for action in &plan.actions {
        if let NetAction::CreateLink { name, link, .. } = action {
            out.insert(name.clone());
            if let LinkKind::Veth { peer } = link {
                out.insert(peer.clone());
            }
        }
    }
    out
}

/// Links a plan leaves in the host namespace, each with its veth peer.
fn host_links_after(plan: &NetworkPlan) -> Vec<(String, Option<String>)> {
    let moved: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            NetAction::MoveToSandbox { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for action in &plan.actions {
        if let NetAction::CreateLink { name, link, .. } = action {
            let on_host = |n: &str| !moved.contains(n);
            match link {
                // Deleting either end of a veth deletes both, but only an end still on the host can be named.
                LinkKind::Veth { peer } => {
                    let both = on_host(name) && on_host(peer);
                    if on_host(peer) {
                        out.push((peer.clone(), both.then(|| name.clone())));
                    }
                    if on_host(name) {
                        out.push((name.clone(), both.then(|| peer.clone())));
                    }
                }
                _ if on_host(name) => out.push((name.clone(), None)),
                _ => {}
            }
        }
    }
    out
}

fn deleted_links(plan: &NetworkPlan, in_ns: Netns) -> BTreeSet<String> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            NetAction::DeleteLink { name, ns } if *ns == in_ns => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn op_name(action: &NetAction) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_string))
        .unwrap_or_default()
}

/// A kernel interface name: 1 to 15 bytes, no `/`, whitespace or `:`.
fn ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    match ok {
        true => Ok(()),
        false => Err(format!("{name:?} is not a valid interface name (1..=15 bytes)")),
    }
}

fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an IP address"))
}

fn cidr(text: &str) -> Result<(), String> {
    let (addr, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} is not ADDRESS/PREFIX"))?;
    let max = if ip(addr)?.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(()),
        _ => Err(format!("{text:?} has a bad prefix length")),
    }
}

fn mac(text: &str) -> Result<(), String> {
    let parts: Vec<_> = text.split(':').collect();
    match parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok()) {
        true => Ok(()),
        false => Err(format!("{text:?} is not a MAC address")),
    }
}

fn firewall_rule(rule: &FirewallRule) -> Result<(), String> {
    match rule {
        FirewallRule::Masquerade { source, out_not } => {
            cidr(source)?;
            out_not.iter().try_for_each(|o| ifname(o))
        }
        FirewallRule::PortForward { proto, host_ip, container_ip, .. } => {
            if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
                return Err(format!("unknown protocol {proto:?}"));
            }
            host_ip.iter().try_for_each(|h| ip(h).map(drop))?;
            ip(container_ip).map(drop)
        }
        FirewallRule::Isolate { from_iface, to_iface } => ifname(from_iface).and_then(|_| ifname(to_iface)),
    }
}

/// `path` is absolute, has no `.`/`..` parts and lies strictly under `root`.
fn under(p: &Path, root: &Path) -> Result<(), String> {
    let path = p.to_string_lossy();
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
        return Err(format!("{path:?} is not an absolute path without . or .."));
    }
    // `components` drops a `/./` and a trailing `/.`; the raw text must not hide one either.
    if path.split('/').any(|part| part == "." || part == "..") {
        return Err(format!("{path:?} has . or .. in it"));
    }
    match p.strip_prefix(root) {
        Ok(rest) if rest.components().next().is_some() => Ok(()),
        _ => Err(format!("{path:?} is not under the data dir {}", root.display())),
    }
}

fn same_name(info: &VolumeInfo, name: &str) -> Result<(), String> {
    match info.name == name {
        true => Ok(()),
        false => Err(format!("answered for {:?}, asked for {name:?}", info.name)),
    }
}

const NOT_FOUND: DriverError = DriverError::NotFound(String::new());
const INVALID: DriverError = DriverError::InvalidArgument(String::new());
const CONFLICT: DriverError = DriverError::Conflict(String::new());

/// The call failed with the same kind of error as `want`.
fn is<T: fmt::Debug>(got: DriverResult<T>, want: DriverError) -> Result<(), String> {
    let kind = |e: &DriverError| serde_json::to_value(e).ok().and_then(|v| v.get("kind").cloned());
    match got {
        Err(e) if std::mem::discriminant(&e) == std::mem::discriminant(&want) => Ok(()),
        Err(e) => Err(format!("got {e:?}, want {:?}", kind(&want).unwrap_or_default())),
        Ok(v) => Err(format!("succeeded ({v:?}), want {:?}", kind(&want).unwrap_or_default())),
    }
}

fn said(e: DriverError) -> String {
    format!("driver said {e:?}")
}

fn joined(problems: Vec<String>) -> Result<(), String> {
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    }
}

/// A name no earlier run (or anything made by hand) uses.
fn unique(stem: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{stem}{}x{nanos:08x}", std::process::id())
}

#[derive(Default)]
struct Run {
    report: Failures,
}

impl Run {
    /// Records one check; true when it passed.
    fn check(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) -> bool {
        match f() {
            Ok(()) => {
                self.report.passed.push(name.to_string());
                true
            }
            Err(problem) => {
                self.report.failed.push(Failure { check: name.to_string(), problem });
                false
            }
        }
    }

    fn finish(self) -> Result<Report, Failures> {
        match self.report.failed.is_empty() {
            true => Ok(Report { passed: self.report.passed }),
            false => Err(self.report),
        }
    }
}


/// The storage checks and the small tar reader and writer they need (the
/// SDK stays free of a tar dependency).
mod storage {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    /// The kit's base layer, as (path, content) of its regular files.
    const BASE_FILES: &[(&str, &[u8])] = &[
        ("etc/hostname", b"kit-base\n"),
        ("etc/keep", b"kept\n"),
        ("etc/gone", b"whited out by the child\n"),
        ("etc/changed", b"before\n"),
        ("var/data", b"v\n"),
    ];
    /// The child's new file and its new content of `etc/changed`.
    const ADDED: (&str, &[u8]) = ("etc/added", b"added by the child\n");
    const CHANGED: (&str, &[u8]) = ("etc/changed", b"after the child\n");
    /// What the kit writes through the writable layer's mount source.
    const WRITTEN: &[u8] = b"written in the container\n";

    /// What a path in a layer's tree is, as the kit compares it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Node {
        File(Vec<u8>),
        Dir,
        Symlink(String),
        Other,
        Missing,
    }

    /// A layer's tree as its mount plan shows it, read without mounting.
    enum View {
        /// One directory (a bind source).
        Bind(PathBuf),
        /// Overlay dirs, top-most first (upper, then the lowers).
        Layers(Vec<PathBuf>),
    }

    impl View {
        fn of(plan: &MountPlan) -> Option<View> {
            match &plan.spec {
                MountSpec::Bind { source, .. } => Some(View::Bind(PathBuf::from(source))),
                MountSpec::Overlay { lower, upper, .. } => {
                    Some(View::Layers(upper.iter().chain(lower).map(PathBuf::from).collect()))
                }
                _ => None,
            }
        }

        fn get(&self, rel: &str) -> Node {
            match self {
                View::Bind(dir) => node(&dir.join(rel)),
                // Overlay's rule: the top-most dir that has the path decides; a
                // 0/0 character device there is a whiteout.
                View::Layers(dirs) => {
                    for dir in dirs {
                        let path = dir.join(rel);
                        match std::fs::symlink_metadata(&path) {
                            Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => return Node::Missing,
                            Ok(_) => return node(&path),
                            Err(_) => continue,
                        }
                    }
                    Node::Missing
                }
            }
        }

        /// The directory a write through the mount would change, if it is one plain dir.
        fn bind_source(&self) -> Option<&Path> {
            match self {
                View::Bind(dir) => Some(dir),
                View::Layers(_) => None,
            }
        }
    }

    fn node(path: &Path) -> Node {
        match std::fs::symlink_metadata(path) {
            Err(_) => Node::Missing,
            Ok(m) if m.is_dir() => Node::Dir,
            Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(path) {
                Ok(target) => Node::Symlink(target.display().to_string()),
                Err(_) => Node::Other,
            },
            Ok(m) if m.is_file() => std::fs::read(path).map(Node::File).unwrap_or(Node::Other),
            Ok(_) => Node::Other,
        }
    }

    /// Each `(path, want)` is what `view` shows at `path`.
    fn expect(view: &View, wants: &[(&str, Node)]) -> Result<(), String> {
        let mut problems = Vec::new();
        for (path, want) in wants {
            let got = view.get(path);
            if &got != want {
                problems.push(format!("/{path} is {}, want {}", shown(&got), shown(want)));
            }
        }
        joined(problems)
    }

    fn shown(n: &Node) -> String {
        match n {
            Node::File(data) => format!("a file holding {:?}", String::from_utf8_lossy(data)),
            Node::Dir => "a directory".into(),
            Node::Symlink(t) => format!("a symlink to {t:?}"),
            Node::Other => "something else (unreadable or a special file)".into(),
            Node::Missing => "missing".into(),
        }
    }

    fn file(data: &[u8]) -> Node {
        Node::File(data.to_vec())
    }

    /// The base layer's tree, and what the child leaves of it.
    fn base_view() -> Vec<(&'static str, Node)> {
        let mut wants: Vec<_> = BASE_FILES.iter().map(|(p, d)| (*p, file(d))).collect();
        wants.push(("etc", Node::Dir));
        wants.push(("etc/link", Node::Symlink("keep".into())));
        wants.push((ADDED.0, Node::Missing));
        wants
    }

    fn child_view() -> Vec<(&'static str, Node)> {
        let mut wants = base_view();
        for (path, want) in wants.iter_mut() {
            match *path {
                "etc/gone" => *want = Node::Missing,
                p if p == CHANGED.0 => *want = file(CHANGED.1),
                p if p == ADDED.0 => *want = file(ADDED.1),
                _ => {}
            }
        }
        wants
    }

    fn base_tar(uid: u64, gid: u64) -> Result<Vec<u8>, String> {
        let mut tar = Ustar::new(uid, gid);
        tar.dir("etc", 0o755)?;
        for (path, data) in &BASE_FILES[..4] {
            tar.file(path, 0o644, data)?;
        }
        tar.symlink("etc/link", "keep")?;
        tar.dir("var", 0o755)?;
        tar.file(BASE_FILES[4].0, 0o600, BASE_FILES[4].1)?;
        Ok(tar.finish())
    }

    fn child_tar(uid: u64, gid: u64) -> Result<Vec<u8>, String> {
        let mut tar = Ustar::new(uid, gid);
        tar.file(ADDED.0, 0o644, ADDED.1)?;
        tar.file(CHANGED.0, 0o644, CHANGED.1)?;
        tar.file("etc/.wh.gone", 0o644, b"")?;
        Ok(tar.finish())
    }

    /// Whether a plan gives a writable tree, if the kit can tell.
    fn writable(plan: &MountPlan) -> Option<bool> {
        match &plan.spec {
            MountSpec::Bind { readonly, .. } => Some(!readonly),
            MountSpec::Overlay { upper, .. } => Some(upper.is_some()),
            _ => None,
        }
    }

    fn change_set(changes: Vec<Change>) -> BTreeMap<String, ChangeKind> {
        changes.into_iter().map(|c| (c.path, c.kind)).collect()
    }

    /// `got` holds exactly `want`, plus `Modified` entries for the directories in `dirs`.
    fn same_changes(got: Vec<Change>, want: &[(&str, ChangeKind)], dirs: &[&str]) -> Result<(), String> {
        let mut problems = Vec::new();
        let relative: Vec<_> = got.iter().filter(|c| !c.path.starts_with('/')).map(|c| c.path.clone()).collect();
        if !relative.is_empty() {
            problems.push(format!("paths must be absolute: {relative:?}"));
        }
        let got = change_set(got);
        for (path, kind) in want {
            match got.get(*path) {
                Some(k) if k == kind => {}
                Some(k) => problems.push(format!("{path} is {k:?}, want {kind:?}")),
                None => problems.push(format!("{path} ({kind:?}) is missing")),
            }
        }
        for (path, kind) in &got {
            let wanted = want.iter().any(|(p, _)| p == path);
            let dir_touched = *kind == ChangeKind::Modified && dirs.contains(&path.as_str());
            if !wanted && !dir_touched {
                problems.push(format!("{path} ({kind:?}) is not a change of this layer"));
            }
        }
        joined(problems)
    }

    pub(super) fn checks(d: &dyn ConformanceStorage, data_dir: &Path, run: &mut Run, prefix: &str) {
        let [base, child, rw, copy, orphan, missing] =
            ["base", "child", "rw", "copy", "orphan", "missing"].map(|s| format!("{prefix}-{s}"));
        // Entries owned by whoever owns the data dir: a driver run by a user
        // who is not root can still give its files that owner.
        let (uid, gid) =
            std::fs::metadata(data_dir).map(|m| (u64::from(m.uid()), u64::from(m.gid()))).unwrap_or((0, 0));

        run.check("status answers", || d.status().map(drop).map_err(said));
        run.check("exists of an unknown layer is false", || match d.exists(&missing) {
            Ok(false) => Ok(()),
            Ok(true) => Err(format!("says {missing} exists")),
            Err(e) => Err(said(e)),
        });
        run.check("remove of an unknown layer is NotFound", || is(d.remove(&missing), NOT_FOUND));
        run.check("create on a missing parent is NotFound and creates nothing", || {
            let got = d.create(&orphan, Some(&missing));
            let leftover = d.exists(&orphan).unwrap_or(false);
            if leftover {
                let _ = d.remove(&orphan);
            }
            is(got, NOT_FOUND)?;
            match leftover {
                true => Err(format!("{orphan} exists anyway")),
                false => Ok(()),
            }
        });
        run.check("layer ids that are not plain names are InvalidArgument", || {
            let mut problems = Vec::new();
            for bad in ["", ".", "..", "../escape", "a/b", "/abs", "a\nb"] {
                // A driver that wrongly accepted the id is never asked to
                // remove it: one that accepts `..` may well remove its parent.
                if let Err(p) = is(d.create(bad, None), INVALID) {
                    problems.push(format!("{bad:?}: {p}"));
                }
            }
            joined(problems)
        });

        let created = run.check("create makes a base layer that exists", || {
            d.create(&base, None).map_err(said)?;
            match d.exists(&base).map_err(said)? {
                true => Ok(()),
                false => Err(format!("exists({base}) is false after create")),
            }
        });
        if !created {
            let _ = d.remove(&base);
            return;
        }
        run.check("create of an existing id is Conflict", || is(d.create(&base, None), CONFLICT));
        run.check("apply_diff unpacks a layer and answers its content bytes", || {
            let tar = base_tar(uid, gid)?;
            let want: u64 = BASE_FILES.iter().map(|(_, data)| data.len() as u64).sum();
            match d.apply_diff(&base, &mut tar.as_slice()).map_err(said)? {
                n if n == want => Ok(()),
                n => Err(format!("answered {n} bytes; the tar holds {want} bytes of file content")),
            }
        });
        // Made and fine are apart: a layer created by a check that failed later is still removed.
        let (mut made_child, mut made_copy) = (false, false);
        let has_child = run.check("a child layer takes a diff that adds, modifies and whites out", || {
            d.create(&child, Some(&base)).map_err(|e| format!("create: {}", said(e)))?;
            made_child = true;
            let tar = child_tar(uid, gid)?;
            let want = (ADDED.1.len() + CHANGED.1.len()) as u64;
            match d.apply_diff(&child, &mut tar.as_slice()).map_err(|e| format!("apply_diff: {}", said(e)))? {
                n if n == want => Ok(()),
                n => Err(format!("apply_diff answered {n} bytes; the tar holds {want} bytes of file content")),
            }
        });
        let has_rw = has_child
            && run.check("a writable layer is created on the child", || d.create_read_write(&rw, Some(&child)).map_err(said));

        let mut views: BTreeMap<&str, View> = BTreeMap::new();
        let asked: Vec<(&str, bool)> = [(base.as_str(), false), (child.as_str(), false), (rw.as_str(), true)]
            .into_iter()
            .filter(|(id, _)| *id == base || (*id == child && has_child) || (*id == rw && has_rw))
            .collect();
        run.check("mount plans lie under the data dir, and one asked writable is writable", || {
            let mut problems = Vec::new();
            for (id, want_writable) in &asked {
                let plan = match d.mount_plan(id, *want_writable) {
                    Ok(plan) => plan,
                    Err(e) => {
                        problems.push(format!("{id}: {}", said(e)));
                        continue;
                    }
                };
                if let Err(p) = check_mount_plan(&plan, data_dir) {
                    problems.push(format!("{id}: {p}"));
                    continue;
                }
                // The contract promises a writable tree for a container's
                // layer; what an image layer's plan allows is the driver's choice.
                if *want_writable && writable(&plan) == Some(false) {
                    problems.push(format!("{id}: asked for a writable mount, the plan is read-only"));
                }
                if let Some(view) = View::of(&plan) {
                    views.insert(id, view);
                }
            }
            joined(problems)
        });
        if let Some(view) = views.get(base.as_str()) {
            run.check("the base layer holds its tar's tree, unchanged by its child", || expect(view, &base_view()));
        }
        if let Some(view) = views.get(child.as_str()) {
            run.check("a child layer shows its parent with its own diff applied", || expect(view, &child_view()));
        }
        if let Some(view) = views.get(rw.as_str()) {
            run.check("a writable layer shows the image layers below it", || expect(view, &child_view()));
        }
        let rw_source = views.get(rw.as_str()).and_then(View::bind_source).map(Path::to_path_buf);
        let mut wrote = false;
        if let Some(source) = &rw_source {
            wrote = run.check("writing through the writable layer changes no image layer", || {
                // What a container does: open the existing file and rewrite it in place.
                let keep = source.join("etc/keep");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&keep)
                    .map_err(|e| format!("cannot open {} for writing: {e}", keep.display()))?;
                f.write_all(WRITTEN).map_err(|e| format!("cannot write {}: {e}", keep.display()))?;
                drop(f);
                let mut problems = Vec::new();
                for id in [base.as_str(), child.as_str()] {
                    if let Some(view) = views.get(id) {
                        if let Err(p) = expect(view, &[("etc/keep", file(b"kept\n"))]) {
                            problems.push(format!("layer {id}: {p}"));
                        }
                    }
                }
                joined(problems)
            });
        }

        run.check("changes of a layer without a parent lists its whole tree as Added", || {
            let mut want: Vec<(String, ChangeKind)> =
                BASE_FILES.iter().map(|(p, _)| (format!("/{p}"), ChangeKind::Added)).collect();
            for p in ["/etc", "/etc/link", "/var"] {
                want.push((p.to_string(), ChangeKind::Added));
            }
            let want: Vec<(&str, ChangeKind)> = want.iter().map(|(p, k)| (p.as_str(), *k)).collect();
            same_changes(d.changes(&base).map_err(said)?, &want, &[])
        });
        let child_changes = [
            ("/etc/added", ChangeKind::Added),
            ("/etc/changed", ChangeKind::Modified),
            ("/etc/gone", ChangeKind::Deleted),
        ];
        let mut exported = None;
        if has_child {
            run.check("changes of a child are exactly its additions, modifications and deletions", || {
                same_changes(d.changes(&child).map_err(said)?, &child_changes, &["/etc"])
            });
            run.check("export_diff writes the added and modified files and a whiteout for the deleted one", || {
                let mut out = Vec::new();
                d.export_diff(&child, &mut out).map_err(said)?;
                let entries = read_tar(&out)?;
                let find = |p: &str| entries.iter().find(|e| e.path == p);
                let mut problems = Vec::new();
                for (path, data) in [ADDED, CHANGED] {
                    match find(path) {
                        Some(e) if e.is_file() && e.data == data => {}
                        Some(e) => problems.push(format!(
                            "{path} is type {:?} holding {:?}, want a file holding {:?}",
                            e.kind as char,
                            String::from_utf8_lossy(&e.data),
                            String::from_utf8_lossy(data)
                        )),
                        None => problems.push(format!("{path} is missing")),
                    }
                }
                if find("etc/.wh.gone").is_none() {
                    problems.push("the whiteout etc/.wh.gone is missing".into());
                }
                let expected = [ADDED.0, CHANGED.0, "etc/.wh.gone", "etc"];
                for e in &entries {
                    if !expected.contains(&e.path.as_str()) {
                        problems.push(format!("{} is not a change of the layer", e.path));
                    }
                }
                exported = Some(out);
                joined(problems)
            });
        }
        if let Some(tar) = &exported {
            run.check("apply_diff of an exported layer onto a new child of its parent reproduces it", || {
                d.create(&copy, Some(&base)).map_err(|e| format!("create: {}", said(e)))?;
                made_copy = true;
                d.apply_diff(&copy, &mut tar.as_slice()).map_err(|e| format!("apply_diff: {}", said(e)))?;
                let (want, got) = (d.changes(&child).map_err(said)?, d.changes(&copy).map_err(said)?);
                let (want, got) = (change_set(want), change_set(got));
                if want != got {
                    return Err(format!("changes of the copy are {got:?}, of the original {want:?}"));
                }
                match d.mount_plan(&copy, false).ok().as_ref().and_then(View::of) {
                    Some(view) => expect(&view, &child_view()),
                    None => Ok(()),
                }
            });
        }
        if wrote {
            run.check("changes of a writable layer show what was written through it", || {
                same_changes(d.changes(&rw).map_err(said)?, &[("/etc/keep", ChangeKind::Modified)], &["/etc"])
            });
        }
        if has_child {
            run.check("usage of a layer counts at least its own content", || {
                let least = (ADDED.1.len() + CHANGED.1.len()) as u64;
                match d.usage(&child).map_err(said)? {
                    n if n >= least => Ok(()),
                    n => Err(format!("usage of {child} is {n}; it added or rewrote {least} bytes")),
                }
            });
        }

        let made: Vec<&str> = [(rw.as_str(), has_rw), (copy.as_str(), made_copy), (child.as_str(), made_child)]
            .into_iter()
            .filter_map(|(id, made)| made.then_some(id))
            .chain([base.as_str()])
            .collect();
        run.check("list holds every created layer once", || {
            let all = d.list().map_err(said)?;
            let wrong: Vec<_> = made
                .iter()
                .map(|id| (id, all.iter().filter(|l| l == id).count()))
                .filter(|(_, n)| *n != 1)
                .map(|(id, n)| format!("{id} listed {n} times"))
                .collect();
            joined(wrong)
        });
        let removed = run.check("remove, children first, removes every layer", || {
            let mut problems = Vec::new();
            for id in &made {
                if let Err(e) = d.remove(id) {
                    problems.push(format!("{id}: {}", said(e)));
                }
            }
            joined(problems)
        });
        if !removed {
            return;
        }
        run.check("removed layers neither exist nor list", || {
            let all = d.list().map_err(said)?;
            let mut problems = Vec::new();
            for id in &made {
                if d.exists(id).map_err(said)? {
                    problems.push(format!("{id} still exists"));
                }
                if all.iter().any(|l| l == id) {
                    problems.push(format!("{id} is still listed"));
                }
            }
            joined(problems)
        });
        run.check("remove deletes the layers' trees", || {
            let left: Vec<_> = views
                .values()
                .filter_map(View::bind_source)
                .filter(|dir| std::fs::symlink_metadata(dir).is_ok())
                .map(|dir| dir.display().to_string())
                .collect();
            match left.is_empty() {
                true => Ok(()),
                false => Err(format!("still there: {left:?}")),
            }
        });
    }

    /// A tiny ustar writer: short names, files, directories and symlinks.
    pub(crate) struct Ustar {
        out: Vec<u8>,
        uid: u64,
        gid: u64,
    }

    /// The mtime of everything the kit writes: a fixed date, so two runs give the same tar.
    const MTIME: u64 = 1_700_000_000;

    impl Ustar {
        pub(crate) fn new(uid: u64, gid: u64) -> Self {
            Ustar { out: Vec::new(), uid, gid }
        }

        pub(crate) fn dir(&mut self, path: &str, mode: u32) -> Result<(), String> {
            self.entry(&format!("{}/", path.trim_end_matches('/')), mode, b'5', b"", "")
        }

        pub(crate) fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), String> {
            self.entry(path, mode, b'0', data, "")
        }

        pub(crate) fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
            self.entry(path, 0o777, b'2', b"", target)
        }

        fn entry(&mut self, path: &str, mode: u32, kind: u8, data: &[u8], link: &str) -> Result<(), String> {
            let mut h = [0u8; 512];
            // Names over 100 bytes go in the prefix field, split at a `/`.
            let (prefix, name) = match path.len() {
                0..=100 => ("", path),
                _ => path
                    .char_indices()
                    .filter(|(i, c)| *c == '/' && *i <= 155 && path.len() - i - 1 <= 100)
                    .map(|(i, _)| (&path[..i], &path[i + 1..]))
                    .next()
                    .ok_or_else(|| format!("{path:?} is too long for a ustar header"))?,
            };
            if link.len() > 100 {
                return Err(format!("symlink target {link:?} is too long for a ustar header"));
            }
            h[..name.len()].copy_from_slice(name.as_bytes());
            octal(&mut h[100..108], u64::from(mode))?;
            octal(&mut h[108..116], self.uid)?;
            octal(&mut h[116..124], self.gid)?;
            octal(&mut h[124..136], data.len() as u64)?;
            octal(&mut h[136..148], MTIME)?;
            h[156] = kind;
            h[157..157 + link.len()].copy_from_slice(link.as_bytes());
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
            // The checksum is computed with its own field as spaces.
            h[148..156].copy_from_slice(b"        ");
            let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
            octal(&mut h[148..155], sum)?;
            h[155] = b' ';
            self.out.extend_from_slice(&h);
            self.out.extend_from_slice(data);
            self.out.resize(self.out.len().div_ceil(512) * 512, 0);
            Ok(())
        }

        /// The archive with its end marker (two zero blocks).
        pub(crate) fn finish(mut self) -> Vec<u8> {
            self.out.resize(self.out.len() + 1024, 0);
            self.out
        }
    }

    /// Writes `value` as zero-padded octal digits and a NUL, filling `field`.
    fn octal(field: &mut [u8], value: u64) -> Result<(), String> {
        let digits = format!("{value:0width$o}", width = field.len() - 1);
        if digits.len() >= field.len() {
            return Err(format!("{value} does not fit a {}-byte tar field", field.len()));
        }
        field[..digits.len()].copy_from_slice(digits.as_bytes());
        field[digits.len()] = 0;
        Ok(())
    }

    /// One member of a tar the kit read.
    #[derive(Clone, Debug)]
    pub(crate) struct TarEntry {
        /// Without a leading `/` or `./` and without a trailing `/`.
        pub(crate) path: String,
        /// The typeflag byte (`0` or NUL file, `5` dir, `2` symlink, `1` hard link, ...).
        pub(crate) kind: u8,
        pub(crate) data: Vec<u8>,
        /// The target of a symlink or hard link.
        #[cfg_attr(not(test), allow(dead_code))] // the kit compares content only; the SDK's test driver unpacks links
        pub(crate) link: String,
    }

    impl TarEntry {
        pub(crate) fn is_file(&self) -> bool {
            matches!(self.kind, b'0' | 0 | b'7')
        }
    }

    /// Reads a whole tar: ustar, GNU long names and PAX `path`/`linkpath`
    /// records, with every header's checksum checked.
    pub(crate) fn read_tar(bytes: &[u8]) -> Result<Vec<TarEntry>, String> {
        let mut out = Vec::new();
        let (mut long_name, mut long_link): (Option<String>, Option<String>) = (None, None);
        let mut at = 0;
        while let Some(h) = bytes.get(at..at + 512) {
            if h.iter().all(|b| *b == 0) {
                return Ok(out);
            }
            let sum: u64 = h.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) }).sum();
            if number(&h[148..156])? != sum {
                return Err(format!("the header at byte {at} has a bad checksum"));
            }
            let size = usize::try_from(number(&h[124..136])?).map_err(|_| "an entry is too large".to_string())?;
            let data = bytes
                .get(at + 512..at + 512 + size)
                .ok_or_else(|| format!("the tar ends inside the entry at byte {at}"))?
                .to_vec();
            at += 512 + size.div_ceil(512) * 512;
            let text = |b: &[u8]| String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(b)).into_owned();
            match h[156] {
                b'L' => long_name = Some(text(&data)),
                b'K' => long_link = Some(text(&data)),
                b'x' => {
                    for (key, value) in pax_records(&data)? {
                        match key.as_str() {
                            "path" => long_name = Some(value),
                            "linkpath" => long_link = Some(value),
                            _ => {}
                        }
                    }
                }
                b'g' => {}
                kind => {
                    let mut path = text(&h[..100]);
                    let prefix = text(&h[345..500]);
                    // Only POSIX ustar has a prefix field; GNU keeps times there.
                    if h[257..263] == *b"ustar\0" && !prefix.is_empty() {
                        path = format!("{prefix}/{path}");
                    }
                    let path = long_name.take().unwrap_or(path);
                    let link = long_link.take().unwrap_or_else(|| text(&h[157..257]));
                    out.push(TarEntry { path: clean(&path), kind, data, link });
                }
            }
        }
        Err("the tar has no end-of-archive marker".into())
    }

    fn clean(path: &str) -> String {
        let mut p = path.trim_end_matches('/');
        loop {
            match p.strip_prefix("./").or_else(|| p.strip_prefix('/')) {
                Some(rest) => p = rest,
                None => return p.to_string(),
            }
        }
    }

    /// A numeric header field: octal text, or GNU base-256 when the high bit is set.
    fn number(field: &[u8]) -> Result<u64, String> {
        if field.first().is_some_and(|b| b & 0x80 != 0) {
            let mut n: u64 = u64::from(field[0] & 0x7f);
            for b in &field[1..] {
                n = n.checked_mul(256).ok_or("a base-256 number overflows")? | u64::from(*b);
            }
            return Ok(n);
        }
        let digits: String =
            field.iter().map(|b| *b as char).filter(|c| !matches!(c, ' ' | '\0')).collect();
        match digits.is_empty() {
            true => Ok(0),
            false => u64::from_str_radix(&digits, 8).map_err(|_| format!("{digits:?} is not an octal number")),
        }
    }

    /// PAX records: `LEN KEY=VALUE\n` each, LEN counting the whole record.
    fn pax_records(mut data: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        while !data.is_empty() && data[0] != 0 {
            let space = data.iter().position(|b| *b == b' ').ok_or("a PAX record without a length")?;
            let len: usize = std::str::from_utf8(&data[..space])
                .ok()
                .and_then(|l| l.parse().ok())
                .ok_or("a PAX record with a bad length")?;
            let record = data.get(space + 1..len).ok_or("a PAX record longer than its header")?;
            let record = record.strip_suffix(b"\n").unwrap_or(record);
            let eq = record.iter().position(|b| *b == b'=').ok_or("a PAX record without `=`")?;
            out.push((
                String::from_utf8_lossy(&record[..eq]).into_owned(),
                String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
            ));
            data = &data[len..];
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) use storage::{read_tar, Ustar};
