//! The conformance kit: runs a driver through the contract and says which
//! promises it breaks. Run it (a) on an author's own type in its `#[test]`s
//! — every `VolumeDriver`/`NetworkDriver` is a `ConformanceVolume`/
//! `ConformanceNetwork`, and `FreshEachCall` rebuilds the driver for every
//! call the way the WASM host does — and (b) on a plugin loaded by the host:
//! the host wraps a loaded component or dylib in an adapter that implements
//! the object-safe traits below and hands it to the same functions.
//!
//! The kit only calls the driver; it never executes a plan. It creates its
//! own uniquely named objects and removes them, so it can run against a
//! data dir that holds other volumes.

use std::collections::BTreeSet;
use std::fmt;
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
    fn local(&self, planned: &str) -> Option<PathBuf> {
        let rest = Path::new(planned).strip_prefix(&self.data_dir).ok()?;
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
            Some(p) => under(&p, &self.data_dir),
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
                    LinkKind::Vxlan { remote, dev, .. } => {
                        remote.iter().try_for_each(|r| ip(r).map(drop))?;
                        dev.iter().try_for_each(|d| ifname(d))
                    }
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
fn under(path: &str, root: &Path) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
        return Err(format!("{path:?} is not an absolute path without . or .."));
    }
    // `components` drops a trailing `/.`; the raw text must not hide one either.
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
