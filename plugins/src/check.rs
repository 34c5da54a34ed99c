//! Plan checks: the trusted side that holds a plugin to its grant.
//!
//! Every path and every plan a plugin answers goes through here before the
//! engine sees it. This module must never widen a grant (no defaults that
//! allow, no "close enough" matches), and it must never return a path that
//! it has not confined to the plugin's data dir after resolving symlinks.
//! It only inspects and rewrites plans; executing them is the core's job.

use std::path::{Component, Path, PathBuf};

use berth_model::drivers::{DriverError, DriverResult};
use berth_model::network::{FirewallRule, LinkKind, NetAction, NetworkPlan};
use berth_model::volume::VolumeInfo;
use berth_model::{MountPlan, MountSpec};

use crate::manifest::{LinkPermission, MountPermission, Permissions};

/// Where a WASM plugin sees its data dir (the WASI preopen).
pub const GUEST_DATA_DIR: &str = "/data";

/// How a plugin names paths in its answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathView {
    /// A WASM guest: paths under `/data`, translated to the data dir on the host.
    Guest,
    /// A dylib: real host paths, which must lie in the data dir.
    Host,
}

/// What one plugin may do, and where its data dir is.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The plugin's name, for error messages.
    pub plugin: String,
    pub permissions: Permissions,
    /// `<plugin dir>/data` on the host.
    pub data_dir: PathBuf,
    pub view: PathView,
}

impl Grant {
    fn refuse(&self, what: &str, message: String) -> DriverError {
        DriverError::Plugin { plugin: self.plugin.clone(), message: format!("{what} refused: {message}") }
    }

    /// Checks a mount plan and returns it with every path translated to the
    /// host and resolved, so the executor mounts exactly what was checked.
    pub fn check_mount(&self, plan: MountPlan) -> DriverResult<MountPlan> {
        let refuse = |m: String| self.refuse("mount plan", m);
        let needs = |p: MountPermission, what: &str| {
            if self.permissions.mounts.contains(&p) {
                Ok(())
            } else {
                Err(refuse(format!("{what} needs permission mounts={p}")))
            }
        };
        let spec = match plan.spec {
            MountSpec::Bind { source, readonly } => {
                needs(MountPermission::Bind, "a bind mount")?;
                MountSpec::Bind { source: self.confine(&source, "bind source").map_err(refuse)?, readonly }
            }
            MountSpec::Tmpfs { options } => {
                needs(MountPermission::Tmpfs, "a tmpfs mount")?;
                check_mount_options(&options).map_err(refuse)?;
                MountSpec::Tmpfs { options }
            }
            MountSpec::Overlay { lower, upper, work } => {
                needs(MountPermission::Overlay, "an overlay mount")?;
                let lower = lower.iter().map(|p| self.confine(p, "overlay lower dir")).collect::<Result<Vec<_>, _>>().map_err(refuse)?;
                let upper = upper.map(|p| self.confine(&p, "overlay upper dir")).transpose().map_err(refuse)?;
                let work = work.map(|p| self.confine(&p, "overlay work dir")).transpose().map_err(refuse)?;
                MountSpec::Overlay { lower, upper, work }
            }
            MountSpec::Filesystem { fstype, device, options } => {
                needs(MountPermission::Filesystem, "a filesystem mount")?;
                // A bind dressed up as a filesystem would skip the data-dir check.
                if matches!(fstype.as_str(), "bind" | "rbind" | "none" | "") {
                    return Err(refuse(format!("filesystem type {fstype:?} is not allowed; use a bind plan")));
                }
                check_mount_options(&options).map_err(refuse)?;
                MountSpec::Filesystem { fstype, device, options }
            }
        };
        Ok(MountPlan { spec })
    }

    /// Translates a path a plugin answered (`VolumeDriver.Path`, a volume's
    /// mountpoint) to the host, confined to the data dir.
    pub fn check_path(&self, path: &Path, what: &str) -> DriverResult<PathBuf> {
        self.confine(path, what).map_err(|m| self.refuse(what, m))
    }

    /// A `VolumeInfo` with its mountpoint translated and confined.
    pub fn check_volume_info(&self, mut info: VolumeInfo) -> DriverResult<VolumeInfo> {
        if let Some(mp) = info.mountpoint.take() {
            info.mountpoint = Some(self.check_path(&mp, "volume mountpoint")?);
        }
        Ok(info)
    }

    /// The host path for `path` in the plugin's view, which must lie in the
    /// data dir both as written and after resolving symlinks.
    fn confine(&self, path: &Path, what: &str) -> Result<PathBuf, String> {
        let shown = path.display();
        if !path.is_absolute() {
            return Err(format!("{what} {shown} is not an absolute path"));
        }
        // `..` could climb out after translation; there is no honest use for it.
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!("{what} {shown} contains '..'"));
        }
        let outside = || format!("{what} {shown} is outside the plugin's data dir");
        let rest: PathBuf = match self.view {
            PathView::Guest => path.strip_prefix(GUEST_DATA_DIR).map_err(|_| outside())?.to_path_buf(),
            PathView::Host => path.strip_prefix(&self.data_dir).map_err(|_| outside())?.to_path_buf(),
        };
        let root = std::fs::canonicalize(&self.data_dir).map_err(|e| format!("the plugin's data dir {}: {e}", self.data_dir.display()))?;
        let resolved = resolve(&root.join(&rest)).map_err(|e| format!("{what} {shown}: {e}"))?;
        if !resolved.starts_with(&root) {
            return Err(format!("{what} {shown} resolves to {}, outside the plugin's data dir", resolved.display()));
        }
        Ok(resolved)
    }

    /// Checks every step of a network plan against the grant.
    pub fn check_network_plan(&self, plan: &NetworkPlan) -> DriverResult<()> {
        let p = &self.permissions;
        let refuse = |m: String| self.refuse("network plan", m);
        let parent_ok = |what: &str, parent: &str| {
            if p.parents.iter().any(|x| x == parent) {
                Ok(())
            } else {
                Err(refuse(format!("{what} on {parent} needs permission parents={parent}")))
            }
        };
        for action in &plan.actions {
            match action {
                NetAction::CreateLink { link, .. } => {
                    let (perm, parent) = match link {
                        LinkKind::Bridge => (LinkPermission::Bridge, None),
                        LinkKind::Veth { .. } => (LinkPermission::Veth, None),
                        LinkKind::Macvlan { parent, .. } => (LinkPermission::Macvlan, Some(parent.as_str())),
                        LinkKind::Ipvlan { parent, .. } => (LinkPermission::Ipvlan, Some(parent.as_str())),
                        LinkKind::Vlan { parent, .. } => (LinkPermission::Vlan, Some(parent.as_str())),
                        LinkKind::Vxlan { dev, .. } => (LinkPermission::Vxlan, dev.as_deref()),
                    };
                    // "a macvlan", "an ipvlan".
                    let a = if perm == LinkPermission::Ipvlan { "an" } else { "a" };
                    if !p.links.contains(&perm) {
                        return Err(refuse(format!("creating {a} {perm} link needs permission links={perm}")));
                    }
                    if let Some(parent) = parent {
                        parent_ok(&format!("{a} {perm} link"), parent)?;
                    }
                }
                NetAction::Sysctl { key, .. } => {
                    if !p.sysctls.iter().any(|pat| sysctl_matches(pat, key)) {
                        return Err(refuse(format!("setting sysctl {key} needs permission sysctls={key}")));
                    }
                }
                NetAction::AddFirewallRule { rule } | NetAction::DeleteFirewallRule { rule } => {
                    if !p.firewall {
                        let what = match rule {
                            FirewallRule::Masquerade { .. } => "a masquerade rule",
                            FirewallRule::PortForward { .. } => "a port forward",
                            FirewallRule::Isolate { .. } => "an isolation rule",
                        };
                        return Err(refuse(format!("{what} needs permission firewall=true")));
                    }
                }
                // Addresses, routes, moves and deletions act on links by name:
                // the executor confines them to the host links the plugin's
                // own plans created (`Authority::Confined`, `confined()` of
                // the adapter). What a plugin may create, and on which
                // parents, is the grant.
                NetAction::DeleteLink { .. }
                | NetAction::MoveToSandbox { .. }
                | NetAction::SetMaster { .. }
                | NetAction::AddAddress { .. }
                | NetAction::SetUp { .. }
                | NetAction::AddRoute { .. } => {}
            }
        }
        Ok(())
    }
}

/// Mount options that would act on something other than the new mount.
fn check_mount_options(options: &str) -> Result<(), String> {
    for opt in options.split(',') {
        if matches!(opt.trim(), "remount" | "bind" | "rbind" | "move") {
            return Err(format!("mount option {opt:?} is not allowed"));
        }
    }
    Ok(())
}

/// Resolves symlinks of the longest existing prefix of `path` and appends
/// the rest, so a path that does not exist yet still gets checked. The input
/// has no `..` components, so the appended rest cannot climb.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(mut real) => {
                for part in rest.iter().rev() {
                    real.push(part);
                }
                return Ok(real);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(|n| n.to_os_string()) else { return Err(e) };
                rest.push(name);
                if !existing.pop() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// `pattern` is a sysctl key where a `*` component matches any one component.
pub fn sysctl_matches(pattern: &str, key: &str) -> bool {
    let (mut p, mut k) = (pattern.split('.'), key.split('.'));
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == "*" || a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::network::Netns;

    fn grant(view: PathView, dir: &Path, permissions: Permissions) -> Grant {
        Grant { plugin: "misbehave".into(), permissions, data_dir: dir.to_path_buf(), view }
    }

    fn bind(source: &str) -> MountPlan {
        MountPlan { spec: MountSpec::Bind { source: source.into(), readonly: false } }
    }

    fn perms() -> Permissions {
        Permissions { mounts: vec![MountPermission::Bind], ..Default::default() }
    }

    #[test]
    fn guest_bind_sources_are_translated_and_confined() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("vols/a")).expect("mkdir");
        let g = grant(PathView::Guest, &data, perms());
        let real = std::fs::canonicalize(&data).expect("canon");
        let plan = g.check_mount(bind("/data/vols/a")).expect("inside");
        assert_eq!(plan.spec, MountSpec::Bind { source: real.join("vols/a"), readonly: false });
        // Not existing yet is fine: the executor will fail on it, not escape.
        g.check_mount(bind("/data/vols/new")).expect("missing but inside");
        g.check_mount(bind("/data")).expect("the data dir itself");

        let e = g.check_mount(bind("/etc")).expect_err("outside").to_string();
        assert_eq!(e, "plugin misbehave: mount plan refused: bind source /etc is outside the plugin's data dir");
        let e = g.check_mount(bind("/data/../etc")).expect_err("dotdot").to_string();
        assert!(e.contains("contains '..'"), "{e}");
        let e = g.check_mount(bind("/database")).expect_err("prefix trick").to_string();
        assert!(e.contains("outside"), "{e}");
        let e = g.check_mount(bind("data/x")).expect_err("relative").to_string();
        assert!(e.contains("not an absolute path"), "{e}");

        std::os::unix::fs::symlink("/etc", data.join("vols/evil")).expect("symlink");
        let e = g.check_mount(bind("/data/vols/evil")).expect_err("symlink out").to_string();
        assert!(e.contains("resolves to /etc"), "{e}");
        let e = g.check_mount(bind("/data/vols/evil/x/y")).expect_err("symlink out, deeper").to_string();
        assert!(e.contains("resolves to /etc/x/y"), "{e}");
    }

    #[test]
    fn host_view_paths_must_be_in_the_data_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("v")).expect("mkdir");
        let g = grant(PathView::Host, &data, perms());
        g.check_mount(bind(&data.join("v").to_string_lossy())).expect("inside");
        assert!(g.check_mount(bind("/data/v")).is_err());
        assert!(g.check_mount(bind(&tmp.path().to_string_lossy())).is_err());
        let info = VolumeInfo { name: "v".into(), mountpoint: Some("/etc".into()), ..Default::default() };
        let e = g.check_volume_info(info).expect_err("mountpoint outside").to_string();
        assert!(e.contains("volume mountpoint refused"), "{e}");
    }

    #[test]
    fn mount_types_need_their_permission() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let g = grant(PathView::Guest, tmp.path(), perms());
        let e = g.check_mount(MountPlan { spec: MountSpec::Tmpfs { options: "size=1m".into() } }).expect_err("tmpfs").to_string();
        assert_eq!(e, "plugin misbehave: mount plan refused: a tmpfs mount needs permission mounts=tmpfs");
        let fs = MountPlan { spec: MountSpec::Filesystem { fstype: "ext4".into(), device: "/dev/sda".into(), options: String::new() } };
        assert!(g.check_mount(fs.clone()).expect_err("fs").to_string().contains("mounts=filesystem"));
        let all = Permissions { mounts: vec![MountPermission::Tmpfs, MountPermission::Filesystem], ..Default::default() };
        let g = grant(PathView::Guest, tmp.path(), all);
        g.check_mount(fs).expect("granted");
        let remount = MountPlan { spec: MountSpec::Tmpfs { options: "remount,size=1m".into() } };
        assert!(g.check_mount(remount).is_err());
        let disguised = MountPlan { spec: MountSpec::Filesystem { fstype: "none".into(), device: "/etc".into(), options: "bind".into() } };
        assert!(g.check_mount(disguised).is_err());
    }

    #[test]
    fn network_plans_need_their_permissions() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = Permissions {
            links: vec![LinkPermission::Bridge, LinkPermission::Veth, LinkPermission::Macvlan],
            parents: vec!["eth0".into()],
            sysctls: vec!["net.ipv4.ip_forward".into(), "net.ipv6.conf.*.disable_ipv6".into()],
            ..Default::default()
        };
        let g = Grant { plugin: "isonet".into(), ..grant(PathView::Guest, tmp.path(), p) };
        let link = |link: LinkKind| NetworkPlan {
            actions: vec![NetAction::CreateLink { name: "x".into(), link, ns: Netns::Host, mtu: None, mac_address: None }],
        };
        g.check_network_plan(&link(LinkKind::Bridge)).expect("bridge");
        g.check_network_plan(&link(LinkKind::Macvlan { parent: "eth0".into(), mode: "bridge".into() })).expect("macvlan on eth0");
        let e = g.check_network_plan(&link(LinkKind::Macvlan { parent: "eth1".into(), mode: "bridge".into() })).expect_err("eth1");
        assert_eq!(e.to_string(), "plugin isonet: network plan refused: a macvlan link on eth1 needs permission parents=eth1");
        let e = g.check_network_plan(&link(LinkKind::Ipvlan { parent: "eth0".into(), mode: "l2".into() })).expect_err("ipvlan");
        assert_eq!(e.to_string(), "plugin isonet: network plan refused: creating an ipvlan link needs permission links=ipvlan");
        let sysctl = |key: &str| NetworkPlan { actions: vec![NetAction::Sysctl { key: key.into(), value: "1".into(), ns: Netns::Host }] };
        g.check_network_plan(&sysctl("net.ipv4.ip_forward")).expect("granted sysctl");
        g.check_network_plan(&sysctl("net.ipv6.conf.eth0.disable_ipv6")).expect("pattern");
        assert!(g.check_network_plan(&sysctl("kernel.core_pattern")).expect_err("sysctl").to_string().contains("sysctls=kernel.core_pattern"));
        let fw = NetworkPlan {
            actions: vec![NetAction::AddFirewallRule { rule: FirewallRule::Masquerade { source: "10.0.0.0/8".into(), out_not: None } }],
        };
        assert!(g.check_network_plan(&fw).expect_err("firewall").to_string().contains("firewall=true"));
    }
}
