//! The plan executor: applies a driver's `NetworkPlan` with netlink
//! (rtnetlink) in the host's and the sandbox's namespaces, and firewall rules
//! as nftables transactions. In-tree drivers and plugins use it alike.
//!
//! All or nothing: every step that changed something records how to undo
//! it; when a step fails, the steps already applied are undone in reverse
//! order and the error says which step failed. A successful `apply` hands
//! back the undo list (`Applied`) so the caller can roll the plan back when
//! something after it fails.
//!
//! Idempotence where re-applying is normal (the default bridge at every
//! daemon start): a bridge, VLAN or VXLAN link that exists already, an
//! address or a route that is there already, are accepted and not undone —
//! they were not ours to remove.
//!
//! "The host" is the namespace of the thread calling `apply` (the daemon's,
//! or a test's private one); "the sandbox" is the namespace file passed in.
//! Netlink sockets belong to the namespace they are opened in, so the
//! sandbox's socket is opened on a thread inside it and then used from here.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_model::Subnet;
use berth_model::network::{FirewallRule, LinkKind, NetAction, Netns, NetworkPlan};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, IpVlanMode, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::firewall::Firewall;
use super::NetError;

/// Who a plan comes from, which decides the host links it may act on.
///
/// A plugin's plans are checked against its `plugin.toml` grant before they
/// get here (link kinds, parents, sysctls, firewall); what the grant cannot
/// say — which of the host's existing links a step names — is checked here,
/// against the links themselves: every link a plan creates in the host
/// namespace is tagged with the alias `berth:<owner>`, and a confined plan
/// may delete, address, set up, enslave, move or route through only links
/// with its own tag or links it creates itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authority<'a> {
    /// The engine and the in-tree drivers: every host link.
    Trusted { owner: &'a str },
    /// A plugin's driver: only the host links of `owner`.
    Confined { owner: &'a str },
}

impl Authority<'_> {
    fn owner(&self) -> &str {
        match self {
            Authority::Trusted { owner } | Authority::Confined { owner } => owner,
        }
    }
}

/// The alias (`ip link` shows it) of the host links `owner`'s plans create.
pub fn owner_alias(owner: &str) -> String {
    format!("berth:{owner}")
}

/// How to undo one applied step.
#[derive(Debug)]
enum Undo {
    DeleteLink { name: String, ns: Netns },
    NoMaster { name: String },
    DeleteAddress { link: String, ip: IpAddr, prefix: u8, ns: Netns },
    SetDown { link: String, ns: Netns },
    DeleteRoute { destination: (Ipv4Addr, u8), gateway: Option<Ipv4Addr>, link: Option<String>, ns: Netns },
    Sysctl { path: PathBuf, value: String, ns: Netns },
    Firewall { add: Vec<FirewallRule>, delete: Vec<FirewallRule> },
}

/// A plan that was applied, with how to take it back.
#[must_use = "an applied plan is either kept (`keep`) or rolled back (`undo`)"]
pub struct Applied {
    undo: Vec<Undo>,
    sandbox: Option<PathBuf>,
    firewall: Arc<dyn Firewall>,
}

impl Applied {
    /// Keeps what the plan did.
    pub fn keep(self) {}

    /// Rolls the plan back (best effort, in reverse order; failures are logged).
    pub fn undo(self) {
        if self.undo.is_empty() {
            return;
        }
        let sandbox = self.sandbox.clone();
        match Conn::new(sandbox.as_deref()) {
            Ok(mut conn) => {
                conn.firewall = Some(self.firewall);
                conn.undo_all(self.undo)
            }
            Err(e) => tracing::warn!(error = %e, "cannot roll back a network plan"),
        }
    }
}

/// Applies `plan` on behalf of `by`, its firewall steps through `firewall`.
/// `sandbox` is the namespace file of the container the plan's `Sandbox`
/// steps act in.
pub fn apply(
    plan: &NetworkPlan,
    sandbox: Option<&Path>,
    by: Authority<'_>,
    firewall: &Arc<dyn Firewall>,
) -> Result<Applied, NetError> {
    validate(plan, sandbox)?;
    let applied = |undo| Applied { undo, sandbox: sandbox.map(Path::to_path_buf), firewall: Arc::clone(firewall) };
    if plan.actions.is_empty() {
        return Ok(applied(Vec::new()));
    }
    let mut conn = Conn::new(sandbox)?;
    conn.alias = Some(owner_alias(by.owner()));
    conn.firewall = Some(Arc::clone(firewall));
    if let Authority::Confined { owner } = by {
        conn.check_confined(plan, owner)?;
    }
    let mut undo = Vec::new();
    let mut i = 0;
    while i < plan.actions.len() {
        // Consecutive firewall steps go to nft as one transaction.
        let mut add = Vec::new();
        let mut delete = Vec::new();
        let mut j = i;
        while let Some(a) = plan.actions.get(j) {
            match a {
                NetAction::AddFirewallRule { rule } => add.push(rule.clone()),
                NetAction::DeleteFirewallRule { rule } => delete.push(rule.clone()),
                _ => break,
            }
            j += 1;
        }
        let result = if j > i {
            let r = firewall
                .apply(&add, &delete)
                .map(|()| undo.push(Undo::Firewall { add: delete.clone(), delete: add.clone() }));
            let step = i;
            i = j;
            r.map_err(|e| (step, e))
        } else {
            let step = i;
            i += 1;
            conn.step(&plan.actions[step], &mut undo).map_err(|e| (step, e))
        };
        if let Err((step, e)) = result {
            conn.undo_all(undo);
            return Err(with_step(e, step, &plan.actions[step]));
        }
    }
    Ok(applied(undo))
}

/// Says which step of the plan failed.
fn with_step(e: NetError, step: usize, action: &NetAction) -> NetError {
    let what = describe(action);
    match e {
        NetError::Netlink { context, message } => {
            NetError::Netlink { context: format!("step {} ({what}): {context}", step + 1), message }
        }
        other => other,
    }
}

fn describe(action: &NetAction) -> String {
    match action {
        NetAction::CreateLink { name, link, .. } => {
            format!("create {} link {name}", kind_name(link))
        }
        NetAction::DeleteLink { name, .. } => format!("delete link {name}"),
        NetAction::MoveToSandbox { name, rename_to } => {
            format!("move {name} into the container as {rename_to}")
        }
        NetAction::SetMaster { name, master } => format!("attach {name} to {master}"),
        NetAction::AddAddress { link, address, .. } => format!("add {address} to {link}"),
        NetAction::SetUp { link, .. } => format!("set {link} up"),
        NetAction::AddRoute { destination, .. } => format!("add route {destination}"),
        NetAction::Sysctl { key, value, .. } => format!("set {key}={value}"),
        NetAction::AddFirewallRule { .. } => "add firewall rules".into(),
        NetAction::DeleteFirewallRule { .. } => "delete firewall rules".into(),
    }
}

fn kind_name(link: &LinkKind) -> &'static str {
    match link {
        LinkKind::Bridge => "bridge",
        LinkKind::Veth { .. } => "veth",
        LinkKind::Macvlan { .. } => "macvlan",
        LinkKind::Ipvlan { .. } => "ipvlan",
        LinkKind::Vlan { .. } => "vlan",
        LinkKind::Vxlan { .. } => "vxlan",
    }
}

/// Checks what can be checked before touching anything: names, addresses,
/// sysctl keys, and that sandbox steps have a sandbox.
fn validate(plan: &NetworkPlan, sandbox: Option<&Path>) -> Result<(), NetError> {
    let bad = |m: String| Err(NetError::Invalid(format!("invalid network plan: {m}")));
    let name_ok = |n: &str| !n.is_empty() && n.len() <= 15 && !n.contains(['/', ' ', ':']) && n != "." && n != "..";
    for a in &plan.actions {
        let ns = match a {
            NetAction::CreateLink { ns, .. }
            | NetAction::DeleteLink { ns, .. }
            | NetAction::AddAddress { ns, .. }
            | NetAction::SetUp { ns, .. }
            | NetAction::AddRoute { ns, .. }
            | NetAction::Sysctl { ns, .. } => Some(*ns),
            NetAction::MoveToSandbox { .. } => Some(Netns::Sandbox),
            _ => None,
        };
        if ns == Some(Netns::Sandbox) && sandbox.is_none() {
            return bad(format!("{} acts in a container namespace, and this plan has none", describe(a)));
        }
        match a {
            NetAction::CreateLink { name, link, mac_address, .. } => {
                if !name_ok(name) {
                    return bad(format!("link name {name:?} (1-15 characters, no '/', ' ' or ':')"));
                }
                if let LinkKind::Veth { peer } = link {
                    if !name_ok(peer) {
                        return bad(format!("veth peer name {peer:?}"));
                    }
                }
                if let Some(m) = mac_address {
                    parse_mac(m)?;
                }
            }
            NetAction::MoveToSandbox { rename_to, .. } if !name_ok(rename_to) => {
                return bad(format!("interface name {rename_to:?}"));
            }
            NetAction::AddAddress { address, .. } => {
                parse_cidr(address)?;
            }
            NetAction::AddRoute { destination, gateway, .. } => {
                parse_destination(destination)?;
                if let Some(g) = gateway {
                    g.parse::<Ipv4Addr>().map_err(|_| NetError::Invalid(format!("invalid route gateway {g:?}")))?;
                }
            }
            NetAction::Sysctl { key, .. } => {
                sysctl_path(key)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(mac: &str) -> Result<Vec<u8>, NetError> {
    let bytes: Vec<u8> = mac.split(':').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    if bytes.len() != 6 || mac.split(':').count() != 6 {
        return Err(NetError::Invalid(format!(
            "invalid MAC address {mac:?}: expected six hex bytes like 02:42:ac:11:00:02"
        )));
    }
    Ok(bytes)
}

/// `a.b.c.d/len` (IPv4).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), NetError> {
    let err = || NetError::Invalid(format!("invalid address {s:?}: expected IPv4 CIDR like 172.18.0.2/16"));
    let cidr = Subnet::parse(s).ok_or_else(err)?;
    Ok((cidr.addr, cidr.prefix))
}

fn parse_destination(s: &str) -> Result<(Ipv4Addr, u8), NetError> {
    if s == "default" {
        Ok((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        parse_cidr(s)
    }
}

/// `/proc/sys/...` of a `net.*` sysctl key (dots or slashes as separators).
fn sysctl_path(key: &str) -> Result<PathBuf, NetError> {
    let rel = if key.contains('/') { key.to_string() } else { key.replace('.', "/") };
    if !rel.starts_with("net/") || rel.split('/').any(|p| p.is_empty() || p == "..") {
        return Err(NetError::Invalid(format!("invalid sysctl {key:?}: only net.* keys may be set by a network plan")));
    }
    Ok(Path::new("/proc/sys").join(rel))
}

fn nl_err(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let context = context.into();
    move |e| NetError::Netlink { context, message: netlink_message(&e) }
}

/// The kernel's errno of a netlink error, if it is one.
fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn netlink_message(e: &rtnetlink::Error) -> String {
    match errno_of(e) {
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => e.to_string(),
    }
}

/// The netlink conversations of one `apply`: the host's, and the sandbox's once needed.
struct Conn {
    rt: tokio::runtime::Runtime,
    host: Handle,
    sandbox_path: Option<PathBuf>,
    sandbox: Option<Handle>,
    /// The alias of the links this plan creates in the host namespace.
    alias: Option<String>,
    /// Where firewall steps go; only connections that apply or undo plans have one.
    firewall: Option<Arc<dyn Firewall>>,
}

impl Conn {
    fn new(sandbox: Option<&Path>) -> Result<Conn, NetError> {
        let rt = super::netns::runtime()?;
        let host = rt.block_on(async {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| NetError::io("opening a netlink socket", e))?;
            tokio::spawn(conn);
            Ok::<_, NetError>(handle)
        })?;
        Ok(Conn { rt, host, sandbox_path: sandbox.map(Path::to_path_buf), sandbox: None, alias: None, firewall: None })
    }

    fn firewall(&self) -> Result<Arc<dyn Firewall>, NetError> {
        self.firewall.clone().ok_or_else(|| NetError::Firewall("no firewall for this plan".into()))
    }

    fn handle(&mut self, ns: Netns) -> Result<Handle, NetError> {
        match ns {
            Netns::Host => Ok(self.host.clone()),
            Netns::Sandbox => {
                if let Some(h) = &self.sandbox {
                    return Ok(h.clone());
                }
                let path = self
                    .sandbox_path
                    .clone()
                    .ok_or_else(|| NetError::Invalid("a container namespace step without a container".into()))?;
                let fd = super::netns::netlink_socket(Some(&path))?;
                let h = self.rt.block_on(async move {
                    // SAFETY: `fd` is an open netlink socket we own; TokioSocket takes it over.
                    let sock = unsafe { rtnetlink::sys::TokioSocket::from_raw_fd(fd.into_raw_fd()) };
                    let (conn, handle, _) = rtnetlink::from_socket(sock);
                    tokio::spawn(conn);
                    handle
                });
                self.sandbox = Some(h.clone());
                Ok(h)
            }
        }
    }

    /// Link `name` in `ns` as netlink describes it, `None` if there is none.
    fn link(&mut self, name: &str, ns: Netns) -> Result<Option<LinkMessage>, NetError> {
        let h = self.handle(ns)?;
        let name = name.to_string();
        self.rt.block_on(async move {
            let mut s = h.link().get().match_name(name.clone()).execute();
            match s.try_next().await {
                Ok(found) => Ok(found),
                Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
                Err(e) => Err(nl_err(format!("looking up link {name}"))(e)),
            }
        })
    }

    fn index(&mut self, name: &str, ns: Netns) -> Result<Option<u32>, NetError> {
        Ok(self.link(name, ns)?.map(|m| m.header.index))
    }

    fn must_index(&mut self, name: &str, ns: Netns) -> Result<u32, NetError> {
        self.index(name, ns)?.ok_or_else(|| NetError::Netlink {
            context: format!("link {name}"),
            message: format!("no such interface in the {} namespace", ns_word(ns)),
        })
    }

    /// The kind (`bridge`, `veth`, ...) of link `name`, if it exists.
    fn link_kind(&mut self, name: &str, ns: Netns) -> Result<Option<String>, NetError> {
        Ok(self.link(name, ns)?.map(|m| kind_of(&m)))
    }

    /// The alias of link `name` in `ns` (it stays with a link moved into a
    /// container), `None` if it has none or does not exist.
    fn alias_of(&mut self, name: &str, ns: Netns) -> Result<Option<String>, NetError> {
        Ok(self.link(name, ns)?.and_then(|m| {
            m.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfAlias(alias) => Some(alias),
                _ => None,
            })
        }))
    }

    /// Refuses a plugin's plan that names a link, in the host or in the
    /// container, that neither it nor this plan created (see `Authority`).
    /// Nothing has been applied yet.
    fn check_confined(&mut self, plan: &NetworkPlan, owner: &str) -> Result<(), NetError> {
        let ours = owner_alias(owner);
        let mut made: std::collections::HashSet<(&str, Netns)> = std::collections::HashSet::new();
        let refuse = |action: &NetAction, why: String| {
            NetError::Invalid(format!("plugin {owner}: refused ({}): {why}", describe(action)))
        };
        for action in &plan.actions {
            let named: Vec<(&str, Netns)> = match action {
                NetAction::CreateLink { name, link, ns, .. } => {
                    // Creating a shared link adopts one that exists (see
                    // `create_link`): a plugin may adopt only its own.
                    let names = match link {
                        LinkKind::Veth { peer } => vec![name.as_str(), peer.as_str()],
                        _ => vec![name.as_str()],
                    };
                    for n in names {
                        let exists = !made.contains(&(n, *ns)) && self.index(n, *ns)?.is_some();
                        if exists && self.alias_of(n, *ns)?.as_deref() != Some(ours.as_str()) {
                            let why = format!("{} link {n} exists and was not created by this plugin", ns_word(*ns));
                            return Err(refuse(action, why));
                        }
                        made.insert((n, *ns));
                    }
                    continue;
                }
                NetAction::MoveToSandbox { name, rename_to } => {
                    // The link must be the plugin's; in the container it is its own under the new name.
                    if !made.contains(&(name.as_str(), Netns::Host)) && self.alias_of(name, Netns::Host)?.as_deref() != Some(ours.as_str()) {
                        return Err(refuse(action, format!("host link {name} was not created by this plugin")));
                    }
                    made.insert((rename_to, Netns::Sandbox));
                    continue;
                }
                NetAction::DeleteLink { name, ns } | NetAction::AddAddress { link: name, ns, .. } | NetAction::SetUp { link: name, ns } => {
                    vec![(name, *ns)]
                }
                NetAction::SetMaster { name, master } => vec![(name, Netns::Host), (master, Netns::Host)],
                NetAction::AddRoute { link: Some(link), ns, .. } => vec![(link, *ns)],
                // A container's default route through a gateway is its network's to set.
                NetAction::AddRoute { link: None, ns: Netns::Sandbox, .. } => continue,
                NetAction::AddRoute { link: None, ns: Netns::Host, .. } => {
                    return Err(refuse(action, "a route in the host namespace must go through a link the plugin created".into()));
                }
                _ => continue,
            };
            for (name, ns) in named {
                if made.contains(&(name, ns)) || self.alias_of(name, ns)?.as_deref() == Some(ours.as_str()) {
                    continue;
                }
                return Err(refuse(action, format!("{} link {name} was not created by this plugin", ns_word(ns))));
            }
        }
        Ok(())
    }

    /// Tags a link just created in the host namespace with this plan's owner.
    fn tag(&mut self, name: &str) -> Result<(), NetError> {
        let Some(alias) = self.alias.clone() else { return Ok(()) };
        let idx = self.must_index(name, Netns::Host)?;
        let h = self.host.clone();
        let mut msg = LinkUnspec::new_with_index(idx).build();
        msg.attributes.push(LinkAttribute::IfAlias(alias));
        self.rt
            .block_on(async move { h.link().set(msg).execute().await })
            .map_err(nl_err(format!("tagging link {name} with its owner")))
    }

    fn step(&mut self, action: &NetAction, undo: &mut Vec<Undo>) -> Result<(), NetError> {
        match action {
            NetAction::CreateLink { name, link, ns, mtu, mac_address } => {
                self.create_link(name, link, *ns, *mtu, mac_address.as_deref(), undo)
            }
            NetAction::DeleteLink { name, ns } => self.delete_link(name, *ns),
            NetAction::MoveToSandbox { name, rename_to } => {
                let idx = self.must_index(name, Netns::Host)?;
                let path =
                    self.sandbox_path.clone().ok_or_else(|| NetError::Invalid("no container namespace".into()))?;
                let fd: OwnedFd = super::netns::open(&path)?;
                let h = self.host.clone();
                let msg = LinkUnspec::new_with_index(idx).setns_by_fd(fd.as_raw_fd()).build();
                self.rt
                    .block_on(async move { h.link().set(msg).execute().await })
                    .map_err(nl_err(format!("moving {name} into {}", path.display())))?;
                drop(fd);
                // From here the link lives in the sandbox under its old name.
                undo.push(Undo::DeleteLink { name: name.clone(), ns: Netns::Sandbox });
                if name != rename_to {
                    let idx = self.must_index(name, Netns::Sandbox)?;
                    let h = self.handle(Netns::Sandbox)?;
                    let msg = LinkUnspec::new_with_index(idx).name(rename_to.clone()).build();
                    self.rt
                        .block_on(async move { h.link().set(msg).execute().await })
                        .map_err(nl_err(format!("renaming {name} to {rename_to} in the container")))?;
                    undo.pop();
                    undo.push(Undo::DeleteLink { name: rename_to.clone(), ns: Netns::Sandbox });
                }
                Ok(())
            }
            NetAction::SetMaster { name, master } => {
                let idx = self.must_index(name, Netns::Host)?;
                let m = self.must_index(master, Netns::Host)?;
                let h = self.host.clone();
                let msg = LinkUnspec::new_with_index(idx).controller(m).build();
                self.rt
                    .block_on(async move { h.link().set(msg).execute().await })
                    .map_err(nl_err(format!("attaching {name} to {master}")))?;
                undo.push(Undo::NoMaster { name: name.clone() });
                Ok(())
            }
            NetAction::AddAddress { link, address, ns } => {
                let (ip, prefix) = parse_cidr(address)?;
                let idx = self.must_index(link, *ns)?;
                let h = self.handle(*ns)?;
                let r = self.rt.block_on(async move { h.address().add(idx, IpAddr::V4(ip), prefix).execute().await });
                match r {
                    Ok(()) => {
                        undo.push(Undo::DeleteAddress { link: link.clone(), ip: IpAddr::V4(ip), prefix, ns: *ns });
                        Ok(())
                    }
                    Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(()),
                    Err(e) => Err(nl_err(format!("adding {address} to {link}"))(e)),
                }
            }
            NetAction::SetUp { link, ns } => {
                let idx = self.must_index(link, *ns)?;
                let h = self.handle(*ns)?;
                let msg = LinkUnspec::new_with_index(idx).up().build();
                self.rt
                    .block_on(async move { h.link().set(msg).execute().await })
                    .map_err(nl_err(format!("setting {link} up")))?;
                undo.push(Undo::SetDown { link: link.clone(), ns: *ns });
                Ok(())
            }
            NetAction::AddRoute { destination, gateway, link, ns } => {
                let dest = parse_destination(destination)?;
                let gw = gateway
                    .as_deref()
                    .map(|g| g.parse::<Ipv4Addr>())
                    .transpose()
                    .map_err(|_| NetError::Invalid(format!("invalid route gateway {gateway:?}")))?;
                let added = self.route(true, dest, gw, link.as_deref(), *ns)?;
                if added {
                    undo.push(Undo::DeleteRoute { destination: dest, gateway: gw, link: link.clone(), ns: *ns });
                }
                Ok(())
            }
            NetAction::Sysctl { key, value, ns } => {
                let path = sysctl_path(key)?;
                let old = self.sysctl(&path, Some(value), *ns)?;
                if old.trim() != value.trim() {
                    undo.push(Undo::Sysctl { path, value: old, ns: *ns });
                }
                Ok(())
            }
            NetAction::AddFirewallRule { rule } => {
                self.firewall()?.apply(std::slice::from_ref(rule), &[])?;
                undo.push(Undo::Firewall { add: vec![], delete: vec![rule.clone()] });
                Ok(())
            }
            NetAction::DeleteFirewallRule { rule } => {
                self.firewall()?.apply(&[], std::slice::from_ref(rule))?;
                undo.push(Undo::Firewall { add: vec![rule.clone()], delete: vec![] });
                Ok(())
            }
        }
    }

    fn create_link(
        &mut self,
        name: &str,
        link: &LinkKind,
        ns: Netns,
        mtu: Option<u32>,
        mac: Option<&str>,
        undo: &mut Vec<Undo>,
    ) -> Result<(), NetError> {
        let parent_index = |me: &mut Conn, parent: &str| -> Result<u32, NetError> {
            me.index(parent, ns)?.ok_or_else(|| {
                NetError::Invalid(format!("parent interface {parent} was not found in the {} namespace", ns_word(ns)))
            })
        };
        let mut msg: LinkMessage = match link {
            LinkKind::Bridge => rtnetlink::LinkBridge::new(name).build(),
            LinkKind::Veth { peer } => rtnetlink::LinkVeth::new(name, peer).build(),
            LinkKind::Macvlan { parent, mode } => {
                let mode = match mode.as_str() {
                    "" | "bridge" => MacVlanMode::Bridge,
                    "private" => MacVlanMode::Private,
                    "vepa" => MacVlanMode::Vepa,
                    "passthru" => MacVlanMode::Passthrough,
                    m => {
                        return Err(NetError::Invalid(format!(
                            "invalid macvlan mode {m:?}: use bridge, private, vepa or passthru"
                        )))
                    }
                };
                let p = parent_index(self, parent)?;
                rtnetlink::LinkMacVlan::new(name, p, mode).build()
            }
            LinkKind::Ipvlan { parent, mode } => {
                let mode = match mode.as_str() {
                    "" | "l2" => IpVlanMode::L2,
                    "l3" => IpVlanMode::L3,
                    "l3s" => IpVlanMode::L3S,
                    m => return Err(NetError::Invalid(format!("invalid ipvlan mode {m:?}: use l2, l3 or l3s"))),
                };
                let p = parent_index(self, parent)?;
                rtnetlink::LinkIpVlan::new(name, p, mode).build()
            }
            LinkKind::Vlan { parent, id } => {
                let p = parent_index(self, parent)?;
                rtnetlink::LinkVlan::new(name, p, *id).build()
            }
            LinkKind::Vxlan { vni, remote, dev, port } => {
                let mut b = rtnetlink::LinkVxlan::new(name, *vni);
                match remote {
                    Some(IpAddr::V4(r)) => b = b.remote(*r),
                    Some(IpAddr::V6(r)) => b = b.remote6(*r),
                    None => {}
                }
                if let Some(d) = dev {
                    let p = parent_index(self, d)?;
                    b = b.dev(p);
                }
                b = b.port(port.unwrap_or(4789));
                b.build()
            }
        };
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(m) = mac {
            msg.attributes.push(LinkAttribute::Address(parse_mac(m)?));
        }
        let h = self.handle(ns)?;
        let r = self.rt.block_on(async move { h.link().add(msg).execute().await });
        match r {
            Ok(()) => {
                undo.push(Undo::DeleteLink { name: name.to_string(), ns });
                if ns == Netns::Host {
                    self.tag(name)?;
                    if let LinkKind::Veth { peer } = link {
                        self.tag(peer)?;
                    }
                }
                // The MTU attribute sets only the named end; a peer left at
                // 1500 drops the larger frames of the other end silently.
                if let (LinkKind::Veth { peer }, Some(m)) = (link, mtu) {
                    let idx = self.must_index(peer, ns)?;
                    let h = self.handle(ns)?;
                    let msg = LinkUnspec::new_with_index(idx).mtu(m).build();
                    self.rt
                        .block_on(async move { h.link().set(msg).execute().await })
                        .map_err(nl_err(format!("setting the MTU of {peer} to {m}")))?;
                }
                Ok(())
            }
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => {
                // Shared links (a network's bridge) survive daemon restarts: adopt one of the same kind.
                let want = kind_name(link);
                let have = self.link_kind(name, ns)?;
                let shared = matches!(link, LinkKind::Bridge | LinkKind::Vlan { .. } | LinkKind::Vxlan { .. });
                if shared && have.as_deref() == Some(want) {
                    if let Some(m) = mtu {
                        let idx = self.must_index(name, ns)?;
                        let h = self.handle(ns)?;
                        let msg = LinkUnspec::new_with_index(idx).mtu(m).build();
                        self.rt
                            .block_on(async move { h.link().set(msg).execute().await })
                            .map_err(nl_err(format!("setting the MTU of {name} to {m}")))?;
                    }
                    return Ok(());
                }
                Err(NetError::Netlink {
                    context: format!("creating {want} link {name}"),
                    message: format!(
                        "an interface with that name exists already{}",
                        have.map(|k| format!(" (a {k} link)")).unwrap_or_default()
                    ),
                })
            }
            Err(e) if errno_of(&e) == Some(libc::EOPNOTSUPP) => {
                let module = match link {
                    LinkKind::Vlan { .. } => " (802.1q VLAN support, module 8021q)",
                    LinkKind::Ipvlan { .. } => " (module ipvlan)",
                    LinkKind::Vxlan { .. } => " (module vxlan)",
                    LinkKind::Macvlan { .. } => " (module macvlan)",
                    LinkKind::Bridge => " (module bridge)",
                    LinkKind::Veth { .. } => " (module veth)",
                };
                // Not a transient failure: the host lacks the feature, so it is the request that cannot be met.
                Err(NetError::Invalid(format!(
                    "this kernel does not support {} links{module}: cannot create {name} (the kernel says \"Unknown device type\")",
                    kind_name(link)
                )))
            }
            Err(e) => Err(nl_err(format!("creating {} link {name}", kind_name(link)))(e)),
        }
    }

    /// Deletes link `name`; a missing link is not an error.
    fn delete_link(&mut self, name: &str, ns: Netns) -> Result<(), NetError> {
        let Some(idx) = self.index(name, ns)? else {
            return Ok(());
        };
        let h = self.handle(ns)?;
        match self.rt.block_on(async move { h.link().del(idx).execute().await }) {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(nl_err(format!("deleting link {name}"))(e)),
        }
    }

    /// Adds (or deletes) a route; returns whether it changed anything.
    fn route(
        &mut self,
        add: bool,
        dest: (Ipv4Addr, u8),
        gw: Option<Ipv4Addr>,
        link: Option<&str>,
        ns: Netns,
    ) -> Result<bool, NetError> {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dest.0, dest.1);
        if let Some(g) = gw {
            b = b.gateway(g);
        }
        if let Some(l) = link {
            match self.index(l, ns)? {
                Some(i) => b = b.output_interface(i),
                None if !add => return Ok(false),
                None => {
                    return Err(NetError::Netlink {
                        context: format!("adding a route via {l}"),
                        message: "no such interface".into(),
                    })
                }
            }
        }
        if gw.is_none() {
            b = b.scope(rtnetlink::packet_route::route::RouteScope::Link);
        }
        let msg = b.build();
        let h = self.handle(ns)?;
        let r = self.rt.block_on(async move {
            if add {
                h.route().add(msg).execute().await
            } else {
                h.route().del(msg).execute().await
            }
        });
        match r {
            Ok(()) => Ok(true),
            Err(e) if add && errno_of(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) if !add && matches!(errno_of(&e), Some(libc::ESRCH) | Some(libc::ENODEV)) => Ok(false),
            Err(e) => Err(nl_err(format!(
                "{} route {}/{}{}",
                if add { "adding" } else { "deleting" },
                dest.0,
                dest.1,
                gw.map(|g| format!(" via {g}")).unwrap_or_default()
            ))(e)),
        }
    }

    /// Writes `value` (if given) to the sysctl at `path`; returns the old value.
    fn sysctl(&mut self, path: &Path, value: Option<&str>, ns: Netns) -> Result<String, NetError> {
        let path = path.to_path_buf();
        let value = value.map(str::to_string);
        let work = move || -> Result<String, NetError> {
            let old =
                std::fs::read_to_string(&path).map_err(|e| NetError::io(format!("reading {}", path.display()), e))?;
            if let Some(v) = value {
                if old.trim() != v.trim() {
                    std::fs::write(&path, v.as_bytes())
                        .map_err(|e| NetError::io(format!("writing {v} to {}", path.display()), e))?;
                }
            }
            Ok(old.trim().to_string())
        };
        match ns {
            Netns::Host => work(),
            Netns::Sandbox => {
                let p = self.sandbox_path.clone().ok_or_else(|| NetError::Invalid("no container namespace".into()))?;
                super::netns::run_in(&p, work)
            }
        }
    }

    fn undo_all(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            if let Err(e) = self.undo_one(&u) {
                tracing::warn!(step = ?u, error = %e, "rolling back a network step");
            }
        }
    }

    fn undo_one(&mut self, u: &Undo) -> Result<(), NetError> {
        match u {
            Undo::DeleteLink { name, ns } => self.delete_link(name, *ns),
            Undo::NoMaster { name } => {
                let Some(idx) = self.index(name, Netns::Host)? else {
                    return Ok(());
                };
                let h = self.host.clone();
                let msg = LinkUnspec::new_with_index(idx).nocontroller().build();
                self.rt.block_on(async move { h.link().set(msg).execute().await }).map_err(nl_err("detaching"))
            }
            Undo::DeleteAddress { link, ip, prefix, ns } => {
                let Some(idx) = self.index(link, *ns)? else {
                    return Ok(());
                };
                let h = self.handle(*ns)?;
                let (ip, prefix) = (*ip, *prefix);
                self.rt.block_on(async move {
                    let mut s = h.address().get().set_link_index_filter(idx).execute();
                    while let Some(m) = s.try_next().await.map_err(nl_err("listing addresses"))? {
                        let has = m.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(x) if *x == ip));
                        if has && m.header.prefix_len == prefix {
                            return h
                                .address()
                                .del(m)
                                .execute()
                                .await
                                .map_err(nl_err(format!("deleting {ip}/{prefix}")));
                        }
                    }
                    Ok(())
                })
            }
            Undo::SetDown { link, ns } => {
                let Some(idx) = self.index(link, *ns)? else {
                    return Ok(());
                };
                let h = self.handle(*ns)?;
                let msg = LinkUnspec::new_with_index(idx).down().build();
                self.rt
                    .block_on(async move { h.link().set(msg).execute().await })
                    .map_err(nl_err(format!("setting {link} down")))
            }
            Undo::DeleteRoute { destination, gateway, link, ns } => {
                self.route(false, *destination, *gateway, link.as_deref(), *ns).map(|_| ())
            }
            Undo::Sysctl { path, value, ns } => self.sysctl(path, Some(value), *ns).map(|_| ()),
            Undo::Firewall { add, delete } => self.firewall()?.apply(add, delete),
        }
    }
}

fn ns_word(ns: Netns) -> &'static str {
    match ns {
        Netns::Host => "host",
        Netns::Sandbox => "container's",
    }
}

/// The `kind` of a link message (`bridge`, `veth`, ...), or `device`.
fn kind_of(m: &LinkMessage) -> String {
    for a in &m.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos {
                if let LinkInfo::Kind(k) = i {
                    return match k {
                        InfoKind::Bridge => "bridge".into(),
                        InfoKind::Veth => "veth".into(),
                        InfoKind::MacVlan => "macvlan".into(),
                        InfoKind::IpVlan => "ipvlan".into(),
                        InfoKind::Vlan => "vlan".into(),
                        InfoKind::Vxlan => "vxlan".into(),
                        other => other.to_string(),
                    };
                }
            }
        }
    }
    let _ = InfoData::Bridge(Vec::new());
    "device".into()
}

/// The IPv4 addresses (CIDR) of link `name` in the namespace at `sandbox`
/// (`None`: the caller's), for tests and diagnostics.
pub fn addresses(name: &str, sandbox: Option<&Path>) -> Result<Vec<String>, NetError> {
    let mut conn = Conn::new(sandbox)?;
    let ns = if sandbox.is_some() { Netns::Sandbox } else { Netns::Host };
    let Some(idx) = conn.index(name, ns)? else {
        return Ok(Vec::new());
    };
    let h = conn.handle(ns)?;
    conn.rt.block_on(async move {
        let mut out = Vec::new();
        let mut s = h.address().get().set_link_index_filter(idx).execute();
        while let Some(m) = s.try_next().await.map_err(nl_err("listing addresses"))? {
            for a in &m.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = a {
                    out.push(format!("{ip}/{}", m.header.prefix_len));
                }
            }
        }
        Ok(out)
    })
}

/// Whether link `name` exists in the namespace at `sandbox` (`None`: the caller's).
pub fn link_exists(name: &str, sandbox: Option<&Path>) -> Result<bool, NetError> {
    let mut conn = Conn::new(sandbox)?;
    let ns = if sandbox.is_some() { Netns::Sandbox } else { Netns::Host };
    Ok(conn.index(name, ns)?.is_some())
}

/// Deletes the links whose hardware address is `mac` in the namespace at
/// `sandbox`; returns their names. How the engine takes back an endpoint's
/// interface that its driver's `leave` did not remove (a driver that lost
/// its memory of the name in a daemon restart, say), as libnetwork's sandbox
/// removes the interfaces it moved in.
pub fn delete_links_with_mac(mac: &str, sandbox: &Path) -> Result<Vec<String>, NetError> {
    let wanted = parse_mac(mac)?;
    let mut conn = Conn::new(Some(sandbox))?;
    let h = conn.handle(Netns::Sandbox)?;
    conn.rt.block_on(async move {
        let mut found = Vec::new();
        let mut s = h.link().get().execute();
        while let Some(m) = s.try_next().await.map_err(nl_err("listing links"))? {
            let mut name = None;
            let mut matches = false;
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Address(a) => matches = *a == wanted,
                    _ => {}
                }
            }
            if matches {
                found.push((m.header.index, name.unwrap_or_else(|| format!("#{}", m.header.index))));
            }
        }
        let mut deleted = Vec::new();
        for (idx, name) in found {
            match h.link().del(idx).execute().await {
                Ok(()) => deleted.push(name),
                Err(e) if errno_of(&e) == Some(libc::ENODEV) => {}
                Err(e) => return Err(nl_err(format!("deleting link {name}"))(e)),
            }
        }
        Ok(deleted)
    })
}

#[cfg(test)]
mod tests {
    use super::super::netns::{self, tests::sandboxed};
    use super::*;

    fn plan(actions: Vec<NetAction>) -> NetworkPlan {
        NetworkPlan { actions }
    }

    /// The host's firewall, as the networks service uses it.
    fn nft() -> Arc<dyn Firewall> {
        Arc::new(super::super::firewall::Nftables)
    }

    fn link(name: &str, kind: LinkKind) -> NetAction {
        NetAction::CreateLink { name: name.into(), link: kind, ns: Netns::Host, mtu: None, mac_address: None }
    }

    #[test]
    fn a_confined_plan_acts_only_on_links_its_owner_created() {
        sandboxed("executor confinement", || {
            let mut conn = Conn::new(None).unwrap();
            // A link someone else made (the host's, or an in-tree driver's).
            apply(&plan(vec![link("hostbr0", LinkKind::Bridge)]), None, Authority::Trusted { owner: "bridge" }, &nft()).unwrap().keep();
            assert_eq!(conn.alias_of("hostbr0", Netns::Host).unwrap().as_deref(), Some("berth:bridge"));
            let plug = Authority::Confined { owner: "plug" };
            let own = plan(vec![
                link("plugbr0", LinkKind::Bridge),
                link("plugv0", LinkKind::Veth { peer: "plugp0".into() }),
                NetAction::SetMaster { name: "plugv0".into(), master: "plugbr0".into() },
                NetAction::AddAddress { link: "plugbr0".into(), address: "10.77.0.1/24".into(), ns: Netns::Host },
                NetAction::SetUp { link: "plugbr0".into(), ns: Netns::Host },
                NetAction::AddRoute { destination: "10.78.0.0/24".into(), gateway: None, link: Some("plugbr0".into()), ns: Netns::Host },
            ]);
            apply(&own, None, plug, &nft()).unwrap().keep();
            for name in ["plugbr0", "plugv0", "plugp0"] {
                assert_eq!(conn.alias_of(name, Netns::Host).unwrap().as_deref(), Some("berth:plug"), "{name} is tagged");
            }
            let refused = [
                NetAction::DeleteLink { name: "hostbr0".into(), ns: Netns::Host },
                NetAction::DeleteLink { name: "lo".into(), ns: Netns::Host },
                NetAction::SetMaster { name: "plugv0".into(), master: "hostbr0".into() },
                NetAction::AddAddress { link: "lo".into(), address: "10.79.0.1/24".into(), ns: Netns::Host },
                NetAction::SetUp { link: "hostbr0".into(), ns: Netns::Host },
                NetAction::AddRoute { destination: "default".into(), gateway: Some("10.77.0.2".into()), link: None, ns: Netns::Host },
                NetAction::AddRoute { destination: "10.80.0.0/24".into(), gateway: None, link: Some("hostbr0".into()), ns: Netns::Host },
                // Creating a shared link adopts an existing one: not someone else's.
                link("hostbr0", LinkKind::Bridge),
            ];
            for action in refused {
                // The refused step comes after one that would change something: nothing may change.
                let p = plan(vec![link("plugbr9", LinkKind::Bridge), action.clone()]);
                let e = apply(&p, None, plug, &nft()).err().unwrap_or_else(|| panic!("{action:?} must be refused")).to_string();
                assert!(e.contains("plugin plug: refused") && e.contains("not created by this plugin") || e.contains("must go through a link"), "{action:?}: {e}");
                assert!(conn.index("plugbr9", Netns::Host).unwrap().is_none(), "{action:?}: nothing was applied");
            }
            assert!(conn.index("hostbr0", Netns::Host).unwrap().is_some());

            // In a container: its own interface, and nothing else there.
            let dir = tempfile::tempdir().unwrap();
            netns::prepare_dir(dir.path()).unwrap();
            let sb = netns::netns_path(dir.path(), "c1");
            netns::create(&sb).unwrap();
            let trusted_join = plan(vec![
                link("tv0", LinkKind::Veth { peer: "tp0".into() }),
                NetAction::MoveToSandbox { name: "tp0".into(), rename_to: "eth0".into() },
            ]);
            apply(&trusted_join, Some(&sb), Authority::Trusted { owner: "bridge" }, &nft()).unwrap().keep();
            let join = plan(vec![
                link("plugv1", LinkKind::Veth { peer: "plugp1".into() }),
                NetAction::MoveToSandbox { name: "plugp1".into(), rename_to: "eth1".into() },
                NetAction::AddAddress { link: "eth1".into(), address: "10.77.0.2/24".into(), ns: Netns::Sandbox },
                NetAction::SetUp { link: "eth1".into(), ns: Netns::Sandbox },
                NetAction::AddRoute { destination: "default".into(), gateway: Some("10.77.0.1".into()), link: None, ns: Netns::Sandbox },
            ]);
            apply(&join, Some(&sb), plug, &nft()).unwrap().keep();
            for action in [
                NetAction::DeleteLink { name: "eth0".into(), ns: Netns::Sandbox },
                NetAction::AddAddress { link: "lo".into(), address: "10.79.0.1/8".into(), ns: Netns::Sandbox },
                NetAction::MoveToSandbox { name: "tv0".into(), rename_to: "eth9".into() },
            ] {
                let e = apply(&plan(vec![action.clone()]), Some(&sb), plug, &nft()).err().unwrap_or_else(|| panic!("{action:?} must be refused"));
                assert!(e.to_string().contains("was not created by this plugin"), "{action:?}: {e}");
            }
            apply(&plan(vec![NetAction::DeleteLink { name: "eth1".into(), ns: Netns::Sandbox }]), Some(&sb), plug, &nft()).unwrap().keep();

            // Its own links it may remove.
            let gone = plan(vec![
                NetAction::DeleteLink { name: "plugv0".into(), ns: Netns::Host },
                NetAction::DeleteLink { name: "plugbr0".into(), ns: Netns::Host },
            ]);
            apply(&gone, None, plug, &nft()).unwrap().keep();
            assert!(conn.index("plugbr0", Netns::Host).unwrap().is_none());
        });
    }

    #[test]
    fn a_bridge_and_a_veth_into_a_container() {
        sandboxed("executor bridge+veth", || {
            let dir = tempfile::tempdir().unwrap();
            netns::prepare_dir(dir.path()).unwrap();
            let sb = netns::netns_path(dir.path(), "c1");
            netns::create(&sb).unwrap();
            let bridge = plan(vec![
                NetAction::CreateLink {
                    name: "tbr0".into(),
                    link: LinkKind::Bridge,
                    ns: Netns::Host,
                    mtu: None,
                    mac_address: None,
                },
                NetAction::AddAddress { link: "tbr0".into(), address: "10.9.0.1/24".into(), ns: Netns::Host },
                NetAction::SetUp { link: "tbr0".into(), ns: Netns::Host },
            ]);
            apply(&bridge, None, Authority::Trusted { owner: "test" }, &nft()).unwrap().keep();
            // Re-applying adopts the bridge and its address.
            apply(&bridge, None, Authority::Trusted { owner: "test" }, &nft()).unwrap().keep();
            assert_eq!(addresses("tbr0", None).unwrap(), vec!["10.9.0.1/24".to_string()]);
            let join = plan(vec![
                NetAction::CreateLink {
                    name: "tvp1".into(),
                    link: LinkKind::Veth { peer: "tveth1".into() },
                    ns: Netns::Host,
                    mtu: Some(9000),
                    mac_address: Some("02:42:0a:09:00:02".into()),
                },
                NetAction::SetMaster { name: "tveth1".into(), master: "tbr0".into() },
                NetAction::SetUp { link: "tveth1".into(), ns: Netns::Host },
                NetAction::MoveToSandbox { name: "tvp1".into(), rename_to: "eth0".into() },
                NetAction::AddAddress { link: "eth0".into(), address: "10.9.0.2/24".into(), ns: Netns::Sandbox },
                NetAction::SetUp { link: "eth0".into(), ns: Netns::Sandbox },
                NetAction::AddRoute {
                    destination: "default".into(),
                    gateway: Some("10.9.0.1".into()),
                    link: Some("eth0".into()),
                    ns: Netns::Sandbox,
                },
            ]);
            let applied = apply(&join, Some(&sb), Authority::Trusted { owner: "test" }, &nft()).unwrap();
            assert_eq!(addresses("eth0", Some(&sb)).unwrap(), vec!["10.9.0.2/24".to_string()]);
            assert!(link_exists("tveth1", None).unwrap() && !link_exists("tvp1", None).unwrap());
            // Both ends carry the MTU (this thread's netns is the child's).
            let out = std::process::Command::new("ip").args(["-o", "link", "show", "tveth1"]).output().unwrap();
            let shown = String::from_utf8_lossy(&out.stdout);
            assert!(shown.contains("mtu 9000"), "host end of the veth: {shown}");
            applied.undo();
            assert!(!link_exists("tveth1", None).unwrap(), "undo removes the veth pair");
            assert!(!link_exists("eth0", Some(&sb)).unwrap());
            netns::remove(&sb).unwrap();
        });
    }

    #[test]
    fn a_failing_step_undoes_the_earlier_ones() {
        sandboxed("executor rollback", || {
            let p = plan(vec![
                NetAction::CreateLink {
                    name: "tbr1".into(),
                    link: LinkKind::Bridge,
                    ns: Netns::Host,
                    mtu: Some(1400),
                    mac_address: None,
                },
                NetAction::AddAddress { link: "tbr1".into(), address: "10.8.0.1/24".into(), ns: Netns::Host },
                NetAction::SetMaster { name: "nosuch0".into(), master: "tbr1".into() },
            ]);
            let err = apply(&p, None, Authority::Trusted { owner: "test" }, &nft()).err().expect("must fail");
            assert!(err.to_string().contains("step 3") && err.to_string().contains("nosuch0"), "{err}");
            assert!(!link_exists("tbr1", None).unwrap(), "the bridge of the failed plan is gone");
        });
    }

    #[test]
    fn vlan_needs_kernel_support_and_says_so() {
        sandboxed("executor vlan", || {
            let p = plan(vec![
                NetAction::CreateLink {
                    name: "tdum0".into(),
                    link: LinkKind::Bridge,
                    ns: Netns::Host,
                    mtu: None,
                    mac_address: None,
                },
                NetAction::CreateLink {
                    name: "tdum0.10".into(),
                    link: LinkKind::Vlan { parent: "tdum0".into(), id: 10 },
                    ns: Netns::Host,
                    mtu: None,
                    mac_address: None,
                },
            ]);
            match apply(&p, None, Authority::Trusted { owner: "test" }, &nft()) {
                Ok(a) => a.undo(),
                Err(e) => assert!(e.to_string().contains("does not support vlan links"), "{e}"),
            }
            assert!(!link_exists("tdum0", None).unwrap());
        });
    }

    #[test]
    fn bad_plans_are_refused_before_anything_runs() {
        let p = plan(vec![NetAction::AddAddress {
            link: "eth0".into(),
            address: "10.0.0.1/24".into(),
            ns: Netns::Sandbox,
        }]);
        assert!(apply(&p, None, Authority::Trusted { owner: "test" }, &nft()).err().unwrap().to_string().contains("container namespace"));
        let p = plan(vec![NetAction::Sysctl { key: "kernel.panic".into(), value: "1".into(), ns: Netns::Host }]);
        assert!(apply(&p, None, Authority::Trusted { owner: "test" }, &nft()).err().unwrap().to_string().contains("only net.*"));
        assert!(parse_cidr("10.0.0.1/33").is_err() && parse_mac("02:42:ac:11:00").is_err());
    }
}
